"""The verdict rules of ``docs/verdicts.md`` as functions: headroom and share closed from the controls, paired tests
with Holm's correction, and the verdict of each comparison ("helps", "hurts", "equivalent", "inconclusive",
"setting cannot tell", "protocol uninformative"). Pure statistics on per-seed numbers; the reports call them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import stats

#: smallest effect size of interest in accuracies, alignment and wrong-reason scores (docs/verdicts.md)
DELTA = 0.02
#: the same for shortcut reliance, a difference of two accuracies
DELTA_RELIANCE = 0.05
#: minimum headroom: below this lower 95 % bound, the setting cannot tell
H_MIN = 0.05
#: family-wise level of each verdict table
ALPHA = 0.05
#: bootstrap resamples of headroom and share closed, and their seed
BOOTSTRAP = 10_000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Headroom:
    """What the controls leave to gain: ``mean`` of (upper - lower) over seeds with its 95 % percentile bootstrap
    interval, and whether its lower bound exceeds ``H_MIN`` (``informative``)."""

    mean: float
    ci_low: float
    ci_high: float
    informative: bool


@dataclass(frozen=True)
class Share:
    """The share of the headroom a method closes, mean(m - lower) / mean(upper - lower), with its 95 % paired
    bootstrap interval (not clipped); None values where the headroom is not informative."""

    mean: float | None
    ci_low: float | None
    ci_high: float | None


def headroom_and_share(lower: Sequence[float], upper: Sequence[float], method: Sequence[float] | None = None,
                       resamples: int = BOOTSTRAP, seed: int = BOOTSTRAP_SEED) -> tuple[Headroom, Share | None]:
    """Headroom of a setting and the share a method closes (docs/verdicts.md, "Headroom and share closed").

    The bootstrap resamples seeds: each resample draws n seed indices with replacement and takes lower, upper and
    the method of the same seeds together (paired). Percentile intervals.

    Args:
        lower, upper: the controls' primary metric per seed (``standard``, and ``standard`` without the problem).
        method: the method's metric on the same seeds, or None for the headroom alone.
        resamples, seed: bootstrap size and random seed.

    Returns:
        (Headroom, Share or None); the share's values are None unless the headroom is informative.

    Raises:
        ValueError: the sequences differ in length or are empty.
    """
    lo, up = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    m = None if method is None else np.asarray(method, dtype=float)
    if len(lo) == 0 or len(lo) != len(up) or (m is not None and len(m) != len(lo)):
        raise ValueError(f"lower, upper and method need one value per seed each, got {len(lo)}, {len(up)}"
                         f"{'' if m is None else f', {len(m)}'}")
    idx = np.random.default_rng(seed).integers(0, len(lo), size=(resamples, len(lo)))
    gap = (up - lo)[idx].mean(1)
    head = Headroom(float((up - lo).mean()), *(float(v) for v in np.percentile(gap, [2.5, 97.5])), False)
    head = Headroom(head.mean, head.ci_low, head.ci_high, head.ci_low > H_MIN)
    if m is None:
        return head, None
    if not head.informative:
        return head, Share(None, None, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = (m - lo)[idx].mean(1) / gap
    shares = shares[np.isfinite(shares)]
    low, high = np.percentile(shares, [2.5, 97.5])
    return head, Share(float((m - lo).mean() / (up - lo).mean()), float(low), float(high))


@dataclass(frozen=True)
class PairedTest:
    """A paired difference (method - baseline per seed) and its tests: ``p_diff`` two-sided t test against 0,
    ``p_equiv`` the larger p of the two one-sided tests against -delta and +delta (TOST), 95 % and 90 % t
    intervals, and ``mde``, the minimum detectable effect at 80 % power."""

    n: int
    mean: float
    sd: float
    p_diff: float
    p_equiv: float
    ci95: tuple[float, float]
    ci90: tuple[float, float]
    mde: float


def paired_test(differences: Sequence[float], delta: float = DELTA) -> PairedTest:
    """Student's t tests of a mean paired difference with n - 1 degrees of freedom.

    With zero spread the tests are decided exactly (p = 0 for a difference that is not 0, or outside +-delta for
    equivalence; p = 1 otherwise). One seed gives p = 1 for both tests and infinite intervals.

    Raises:
        ValueError: no differences.
    """
    d = np.asarray(differences, dtype=float)
    n = len(d)
    if n == 0:
        raise ValueError("paired_test needs at least one difference")
    mean = float(d.mean())
    if n == 1:
        return PairedTest(1, mean, math.nan, 1.0, 1.0, (-math.inf, math.inf), (-math.inf, math.inf), math.inf)
    sd = float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    df = n - 1
    if se == 0:
        p_diff = 0.0 if mean != 0 else 1.0
        p_equiv = 0.0 if -delta < mean < delta else 1.0
    else:
        p_diff = float(2 * stats.t.sf(abs(mean) / se, df))
        p_equiv = float(max(stats.t.sf((mean + delta) / se, df), stats.t.cdf((mean - delta) / se, df)))
    t95, t90 = stats.t.ppf(0.975, df), stats.t.ppf(0.95, df)
    mde = float((stats.t.ppf(0.975, df) + stats.t.ppf(0.80, df)) * se)
    return PairedTest(n, mean, sd, p_diff, p_equiv, (mean - t95 * se, mean + t95 * se),
                      (mean - t90 * se, mean + t90 * se), mde)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979), in the input order: the i-th smallest p times (m - i + 1),
    made monotone, capped at 1. NaN p-values stay NaN and do not count in m."""
    p = np.asarray(pvalues, dtype=float)
    ok = np.flatnonzero(~np.isnan(p))
    out = np.full(len(p), math.nan)
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


@dataclass
class Comparison:
    """One cell of a verdict table: a method against the baseline in one setting under one protocol."""

    test: PairedTest
    higher_is_better: bool = True
    uninformative: bool = False
    headroom: Headroom | None = None
    paper_difference: float | None = None
    verdict: str = ""
    notes: list[str] = field(default_factory=list)


def decide(table: list[Comparison], alpha: float = ALPHA) -> list[Comparison]:
    """Give every comparison of one table its verdict, in the order of docs/verdicts.md: protocol uninformative;
    setting cannot tell (headroom not informative); helps / hurts (Holm-adjusted p < alpha, by the sign of the
    mean and ``higher_is_better``); equivalent (Holm-adjusted TOST p < alpha); else inconclusive, with the minimum detectable effect.
    Holm's correction runs over the comparisons that reach step 3, separately for the difference and the
    equivalence tests. Adds the note "paper's effect excluded" where the paper's difference lies outside the
    95 % interval. Returns the same list."""
    live = [c for c in table if not c.uninformative and not (c.headroom is not None and not c.headroom.informative)]
    p_diff = holm([c.test.p_diff for c in live])
    p_equiv = holm([c.test.p_equiv for c in live])
    adjusted = {id(c): (pd, pe) for c, pd, pe in zip(live, p_diff, p_equiv)}
    for c in table:
        c.notes = []
        if c.uninformative:
            c.verdict = "protocol uninformative"
        elif c.headroom is not None and not c.headroom.informative:
            c.verdict = "setting cannot tell"
        else:
            pd, pe = adjusted[id(c)]
            if pd < alpha:
                c.verdict = "helps" if (c.test.mean > 0) == c.higher_is_better else "hurts"
            elif pe < alpha:
                c.verdict = "equivalent"
            else:
                c.verdict = f"inconclusive (detectable: {c.test.mde:.3f})"
        low, high = c.test.ci95
        if c.paper_difference is not None and not low <= c.paper_difference <= high:
            c.notes.append("paper's effect excluded")
    return table
