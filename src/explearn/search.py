"""Hyperparameter selection on the validation split: candidates from a grid, the best by mean validation score."""

from __future__ import annotations

import itertools
import json
import math
from typing import Any, Mapping, Sequence


def candidates(grid: Mapping[str, Sequence[Any]], fixed: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in grid order; keys already ``fixed`` are not searched.

    An empty grid gives one candidate, the empty dict (the method's defaults).
    """
    fixed = fixed or {}
    keys = [k for k in grid if k not in fixed]
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def candidate_key(candidate: Mapping[str, Any]) -> str:
    """A stable text key for a candidate (for tables and dicts)."""
    return json.dumps(dict(candidate), sort_keys=True)


def choose(scores: Mapping[str, Sequence[float]]) -> tuple[str, float]:
    """The candidate key with the highest mean score, and that mean; the first in order on ties.

    Args:
        scores: candidate key -> validation scores of its runs (one per search seed). Candidates whose runs all
            failed (no scores) or whose scores are NaN cannot win.

    Raises:
        ValueError: no candidate has a score.
    """
    best_key, best = None, -math.inf
    for key, values in scores.items():
        values = [v for v in values if not math.isnan(v)]
        if not values:
            continue
        mean = sum(values) / len(values)
        if mean > best:
            best_key, best = key, mean
    if best_key is None:
        raise ValueError("no search candidate has a validation score")
    return best_key, best


def choose_lexicographic(scores: Mapping[str, Sequence[float]], reliances: Mapping[str, Sequence[float]],
                         delta: float) -> tuple[str, float]:
    """The ``explanation`` protocol's hyperparameter rule (``explearn.selection``): among the candidates whose
    mean score is within ``delta`` of the best mean, the one with the lowest mean reliance; ties go to the
    higher score, then to the first in order. Returns the key and its mean score.

    Raises:
        ValueError: no candidate has a score and a reliance.
    """
    means = {}
    for key, values in scores.items():
        pairs = [(v, r) for v, r in zip(values, reliances.get(key, [])) if not (math.isnan(v) or math.isnan(r))]
        if pairs:
            means[key] = (sum(v for v, _ in pairs) / len(pairs), sum(r for _, r in pairs) / len(pairs))
    if not means:
        raise ValueError("no search candidate has a validation score and a reliance")
    best = max(score for score, _ in means.values())
    window = [(reliance, -score, order, key) for order, (key, (score, reliance)) in enumerate(means.items())
              if score >= best - delta - 1e-6]  # float32 accuracies: the edge of the window, not rounding
    _, neg_score, _, key = min(window)
    return key, -neg_score
