"""The verdict rules (docs/verdicts.md) on hand-made numbers."""

import math

import numpy as np
import pytest
from scipy import stats

from explearn.verdicts import (H_MIN, Comparison, Headroom, decide, headroom_and_share, holm, paired_test)


def test_headroom_and_share_by_hand():
    lower, upper, method = [0.50, 0.60, 0.55], [0.80, 0.90, 0.85], [0.65, 0.75, 0.70]
    head, share = headroom_and_share(lower, upper, method)
    assert head.mean == pytest.approx(0.30) and head.informative
    assert (head.ci_low, head.ci_high) == pytest.approx((0.30, 0.30))  # every seed gains 0.30
    assert share.mean == pytest.approx(0.5) and (share.ci_low, share.ci_high) == pytest.approx((0.5, 0.5))


def test_share_is_a_ratio_of_means_resampled_together():
    lower, upper, method = [0.5, 0.5, 0.6, 0.4], [0.9, 0.7, 0.9, 0.8], [0.7, 0.5, 0.9, 0.5]
    head, share = headroom_and_share(lower, upper, method, resamples=4000)
    assert head.mean == pytest.approx((0.4 + 0.2 + 0.3 + 0.4) / 4)
    assert share.mean == pytest.approx((0.2 + 0.0 + 0.3 + 0.1) / (0.4 + 0.2 + 0.3 + 0.4))
    assert share.ci_low < share.mean < share.ci_high
    # the same resamples by hand: seed indices drawn once, lower, upper and method of a seed taken together
    idx = np.random.default_rng(0).integers(0, 4, size=(4000, 4))
    lo, up, m = (np.asarray(v)[idx].mean(1) for v in (lower, upper, method))
    assert (share.ci_low, share.ci_high) == pytest.approx(tuple(np.percentile((m - lo) / (up - lo), [2.5, 97.5])))


def test_paired_resampling_keeps_a_constant_gain_exact_across_very_different_seeds():
    lower = [0.1, 0.5, 0.9, 0.3]
    head, share = headroom_and_share(lower, [v + 0.2 for v in lower], [v + 0.1 for v in lower])
    assert (head.ci_low, head.ci_high) == pytest.approx((0.2, 0.2))  # unpaired resampling would spread widely
    assert (share.ci_low, share.mean, share.ci_high) == pytest.approx((0.5, 0.5, 0.5))


def test_no_share_below_the_minimum_headroom():
    head, share = headroom_and_share([0.70, 0.72, 0.71], [0.71, 0.71, 0.73], [0.9, 0.9, 0.9])
    assert head.mean == pytest.approx(0.02 / 3) and not head.informative and head.ci_low <= H_MIN
    assert share.mean is None and share.ci_low is None
    with pytest.raises(ValueError, match="one value per seed"):
        headroom_and_share([0.5], [0.6, 0.7])


def test_paired_test_matches_scipy_and_the_hand_formulas():
    d = [0.01, 0.03, 0.02, 0.04, 0.00]
    t = paired_test(d, delta=0.02)
    assert t.mean == pytest.approx(0.02) and t.sd == pytest.approx(math.sqrt(0.00025))
    assert t.p_diff == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue)
    p_low = stats.ttest_1samp(d, -0.02, alternative="greater").pvalue
    p_high = stats.ttest_1samp(d, 0.02, alternative="less").pvalue
    assert t.p_equiv == pytest.approx(max(p_low, p_high))  # the mean sits on the margin: not equivalent
    se = math.sqrt(0.00025 / 5)
    assert t.ci95 == pytest.approx((0.02 - stats.t.ppf(0.975, 4) * se, 0.02 + stats.t.ppf(0.975, 4) * se))
    assert t.mde == pytest.approx((stats.t.ppf(0.975, 4) + stats.t.ppf(0.8, 4)) * se)


def test_paired_test_degenerate_cases():
    assert paired_test([0.01, 0.01, 0.01]).p_diff == 0.0 and paired_test([0.01, 0.01]).p_equiv == 0.0
    assert paired_test([0.0, 0.0]).p_diff == 1.0
    one = paired_test([0.3])
    assert one.p_diff == 1.0 and one.mde == math.inf


def test_holm_by_hand():
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    out = holm([0.2, math.nan, 0.01])
    assert out[0] == pytest.approx(0.2) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)


def test_verdicts_follow_the_rules_in_order():
    good = Headroom(0.2, 0.15, 0.25, True)
    helps = Comparison(paired_test([0.10, 0.12, 0.08, 0.11, 0.09]), headroom=good, paper_difference=0.147)
    hurts_reliance = Comparison(paired_test([0.10, 0.12, 0.08, 0.11, 0.09]), higher_is_better=False, headroom=good)
    equivalent = Comparison(paired_test([0.001, -0.002, 0.0, 0.002, -0.001]), headroom=good,
                            paper_difference=0.001)
    unclear = Comparison(paired_test([0.05, -0.04, 0.03, -0.02, 0.01]), headroom=good)
    flat = Comparison(paired_test([0.10, 0.12, 0.08, 0.11, 0.09]), uninformative=True)
    no_room = Comparison(paired_test([0.10, 0.12, 0.08, 0.11, 0.09]), headroom=Headroom(0.03, -0.01, 0.07, False))
    decide([helps, hurts_reliance, equivalent, unclear, flat, no_room])
    assert helps.verdict == "helps" and helps.notes == ["paper's effect excluded"]  # 0.147 > its CI
    assert hurts_reliance.verdict == "hurts"  # a higher reliance is worse
    assert equivalent.verdict == "equivalent" and equivalent.notes == []
    assert unclear.verdict.startswith("inconclusive (detectable: ")
    assert float(unclear.verdict.split(": ")[1].rstrip(")")) == pytest.approx(unclear.test.mde, abs=5e-4)
    assert flat.verdict == "protocol uninformative" and no_room.verdict == "setting cannot tell"


def test_holm_can_turn_a_lone_significant_result_inconclusive():
    d = [0.02, 0.05, 0.01, 0.04, 0.03, 0.00, 0.05, 0.02]  # p about 0.003 alone
    alone = decide([Comparison(paired_test(d))])[0]
    crowd = decide([Comparison(paired_test(d))] + [Comparison(paired_test([0.3, -0.3, 0.2, -0.2]))] * 30)[0]
    assert alone.verdict == "helps" and crowd.test.p_diff * 31 > 0.05
    assert crowd.verdict != "helps"
