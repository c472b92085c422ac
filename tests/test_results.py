import math

import pandas as pd
import pytest
from scipy import stats

from explearn.results import aggregate, ci95, paired_differences


def runs_frame():
    rows = []
    for seed, (a, b) in enumerate([(0.70, 0.80), (0.72, 0.78), (0.68, 0.83)]):
        rows.append({"experiment": "e", "setting": "s", "method": "standard", "seed": seed, "role": "eval", "test/acc": a})
        rows.append({"experiment": "e", "setting": "s", "method": "two_stage", "seed": seed, "role": "eval", "test/acc": b})
    rows.append({"experiment": "e", "setting": "s", "method": "two_stage", "seed": 9, "role": "search", "test/acc": 0.0})
    return pd.DataFrame(rows)


def test_ci95_is_the_student_t_interval():
    values = [0.70, 0.72, 0.68]
    lo, hi = ci95(values)
    half = stats.t.ppf(0.975, 2) * stats.tstd(values) / math.sqrt(3)
    assert (lo, hi) == pytest.approx((0.70 - half, 0.70 + half))
    assert all(math.isnan(v) for v in ci95([0.5]))


def test_aggregate_uses_evaluation_runs_only():
    agg = aggregate(runs_frame(), ["test/acc"]).set_index("method")
    assert agg.loc["two_stage", "n"] == 3  # the search run is left out
    assert agg.loc["two_stage", "mean"] == pytest.approx((0.80 + 0.78 + 0.83) / 3)
    assert agg.loc["standard", "std"] == pytest.approx(0.02)


def test_paired_differences_pair_by_seed():
    diff = paired_differences(runs_frame(), "standard", ["test/acc"]).iloc[0]
    assert diff["method"] == "two_stage" and diff["n"] == 3
    assert diff["mean"] == pytest.approx((0.10 + 0.06 + 0.15) / 3)
    assert (diff["ci_low"], diff["ci_high"]) == pytest.approx(ci95([0.10, 0.06, 0.15]))


def test_agreement_difference_has_a_bootstrap_interval():
    import numpy as np

    from explearn.results import Results, agreement_differences

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 200)
    rows, predictions = [], {}
    for seed in range(6):
        for method, pred in (("two_stage", truth), ("standard", rng.integers(0, 2, 200))):
            run_id = f"{method}{seed}"
            rows.append({"experiment": "c", "setting": "s", "method": method, "seed": seed, "role": "eval", "run_id": run_id})
            predictions[run_id] = {"test": pred.tolist()}
    results = Results(pd.DataFrame(rows), pd.DataFrame(), predictions, {}, {})
    diff = agreement_differences(results, "standard").iloc[0]
    # identical models agree on everything, independent coin flips on about half
    assert diff["n"] == 6 and diff["mean"] == pytest.approx(0.5, abs=0.05)
    assert 0.4 < diff["ci_low"] < diff["mean"] < diff["ci_high"] < 0.6


def test_reference_differences_pair_variants_of_the_same_method_scenario_and_seed():
    from explearn.results import reference_differences

    rows = []
    values = {("A, paper", "two_stage"): [0.80, 0.78, 0.83], ("A, soft", "two_stage"): [0.70, 0.75, 0.73],
              ("B, paper", "two_stage"): [0.60, 0.61, 0.62], ("B, soft", "two_stage"): [0.70, 0.70, 0.70],
              ("A, paper", "standard"): [0.5, 0.5, 0.5]}
    for (setting, method), accs in values.items():
        for seed, acc in enumerate(accs):
            rows.append({"experiment": "masks", "setting": setting, "method": method, "seed": seed, "role": "eval",
                         "test/acc": acc})
    parts = {f"{p}, {v}": {"point": p, "variant": v} for p in "AB" for v in ("paper", "soft")}
    diff = reference_differences(pd.DataFrame(rows), "masks", "paper", parts, ["test/acc"]).set_index("setting")
    assert sorted(diff.index) == ["A, soft", "B, soft"]  # the reference itself and standard (no variant) are not rows
    assert diff.loc["A, soft", "mean"] == pytest.approx((-0.10 - 0.03 - 0.10) / 3)
    assert (diff.loc["A, soft", "ci_low"], diff.loc["A, soft", "ci_high"]) == pytest.approx(ci95([-0.10, -0.03, -0.10]))
    assert diff.loc["B, soft", "mean"] == pytest.approx((0.10 + 0.09 + 0.08) / 3)  # paired within scenario B only
    assert set(diff["baseline"]) == {"paper (reference)"}
