"""The metrics the paper reports: accuracy (overall, balanced, per class, minority class), pairwise agreement
across models, stability across seeds and convergence. Explanation alignment lives in ``explearn.explain``."""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import torch


def accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    """Share of correct predictions. Shape: pred, y (N,)."""
    return float((pred == y).float().mean())


def per_class_accuracy(pred: torch.Tensor, y: torch.Tensor, n_classes: int) -> list[float]:
    """Accuracy within each true class (recall); NaN for a class with no samples."""
    out = []
    for k in range(n_classes):
        sel = y == k
        out.append(float((pred[sel] == k).float().mean()) if bool(sel.any()) else float("nan"))
    return out


def balanced_accuracy(pred: torch.Tensor, y: torch.Tensor, n_classes: int) -> float:
    """Mean of the per-class accuracies over the classes present in ``y``."""
    values = [v for v in per_class_accuracy(pred, y, n_classes) if not math.isnan(v)]
    return sum(values) / len(values)


def minority_class(train_counts: Sequence[int]) -> int:
    """The class with the fewest training samples (the lowest index on ties)."""
    return min(range(len(train_counts)), key=lambda k: (train_counts[k], k))


def pairwise_agreement(predictions: Sequence[torch.Tensor]) -> float:
    """Mean, over all pairs of models, of the share of points on which the two predict the same class.

    Args:
        predictions: one (N,) tensor of predicted classes per model, all on the same N points.

    Raises:
        ValueError: fewer than two models, or prediction vectors of different lengths.
    """
    if len(predictions) < 2:
        raise ValueError(f"pairwise agreement needs at least 2 models, got {len(predictions)}")
    n = len(predictions[0])
    if any(len(p) != n for p in predictions):
        raise ValueError("pairwise agreement: every model must predict the same points")
    stacked = torch.stack([torch.as_tensor(p) for p in predictions])
    pairs = itertools.combinations(range(len(predictions)), 2)
    return float(torch.tensor([(stacked[i] == stacked[j]).float().mean() for i, j in pairs]).mean())


def stability(values: Sequence[float]) -> float:
    """Standard deviation across runs (seeds), with Bessel's correction; NaN for fewer than two runs."""
    if len(values) < 2:
        return float("nan")
    return float(torch.tensor(list(values), dtype=torch.float64).std(unbiased=True))


def epochs_to_fraction(curve: Sequence[float], fraction: float = 0.95) -> int | None:
    """Convergence: the first epoch (index into ``curve``) whose value reaches ``fraction`` times the final value.

    ``curve[0]`` is usually the value before training (epoch 0). None for an empty curve.
    """
    if not curve:
        return None
    goal = fraction * curve[-1]
    return next(i for i, v in enumerate(curve) if v >= goal)
