"""The metrics the paper reports: accuracy (overall, balanced, per class, minority class), pairwise agreement
across models, stability across seeds and convergence, and the range each metric's values can take (for
confidence intervals). Explanation alignment lives in ``explearn.explain``."""

from __future__ import annotations

import itertools
import math
import re
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


def minority_class(train_counts: Sequence[int]) -> int | None:
    """The class with the fewest training samples (of the classes that have any), or None when no single class has
    the fewest.

    "Minority class" is only defined for imbalanced training data: on balanced classes (or when two classes tie
    for the fewest samples) there is no minority, so no minority-class accuracy is reported rather than the
    accuracy of an arbitrary class. Per-class accuracies (``acc_class{k}``) are always reported.

    Args:
        train_counts: number of training samples per class, indexed by class.
    """
    present = [count for count in train_counts if count > 0]  # a class without training samples is absent, not rare
    if len(present) < 2:
        return None
    fewest = min(present)
    smallest = [k for k, count in enumerate(train_counts) if count == fewest]
    return smallest[0] if len(smallest) == 1 else None


def confidence(logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """How confident a model's predictions are, beside its accuracy: ``ce`` the mean cross-entropy (nats),
    ``max_prob`` the mean largest softmax probability (1/K for uniform predictions), and ``margin`` the mean logit
    margin, the true class's logit minus the largest other logit (positive where the prediction is right, near 0
    for near-uniform predictions). Separates a confidence collapse (RRR's penalty on d/dx sum_k log p_k vanishes at
    uniform predictions, Ross et al. 2017) from a model that is right for the right reasons.
    Shape: logits (N, K), y (N,)."""
    logp = torch.log_softmax(logits.float(), dim=1)
    true = logits.gather(1, y[:, None])[:, 0]
    others = logits.scatter(1, y[:, None], float("-inf")).max(dim=1).values
    return {"ce": float(-logp.gather(1, y[:, None]).mean()), "max_prob": float(logp.exp().max(dim=1).values.mean()),
            "margin": float((true - others).float().mean())}


def shortcut_metrics(metrics: dict[str, float], aligned: str, swapped: str, n_classes: int) -> dict[str, float]:
    """Reliance on a shortcut, measured without attributions, from the accuracies on two evaluation splits of the
    same images that differ only in the shortcut: ``aligned`` (the shortcut agrees with each label) and ``swapped``
    (it points to another class).

    - ``shortcut/reliance`` = acc(aligned) - acc(swapped), in [-1, 1]: 0 for a model that ignores the shortcut,
      near 1 for one that follows it whenever it is present (the "decoy reliance gap" of Decoy-MNIST studies).
    - ``shortcut/worst_group_acc``: the lowest accuracy over the groups (class, shortcut agrees or not), i.e. over
      the per-class accuracies of both splits (Sagawa et al. 2020, "Distributionally robust neural networks",
      worst-group accuracy); classes absent from a split are left out.

    Args:
        metrics: final metrics keyed ``split/metric``, holding ``{aligned}/acc``, ``{swapped}/acc`` and their
            ``acc_class{k}``.
        aligned, swapped: the two split names (``Splits.info["shortcut_splits"]``).
        n_classes: number of classes.
    """
    groups = [metrics[f"{split}/acc_class{k}"] for split in (aligned, swapped) for k in range(n_classes)]
    groups = [g for g in groups if not math.isnan(g)]
    return {"shortcut/reliance": metrics[f"{aligned}/acc"] - metrics[f"{swapped}/acc"],
            "shortcut/worst_group_acc": min(groups)}


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


#: metric names (the part after the last "/") that are shares of points or of attribution mass: always in [0, 1].
#: Any name with an "acc" word (``acc``, ``balanced_acc``, ``minority_acc``, ``acc_class3``) is an accuracy too.
SHARES = {"agreement", "align", "wrong_score"}
#: metric keys that count epochs of training (matched on any "/"-separated part): from 0 (the value before
#: training, ``epochs_to_fraction``) to the number of epochs trained
EPOCH_COUNTS = re.compile(r"^(epochs_to_\w+|selected_epoch)$")
#: metric keys that are norms or durations: never negative (matched on any "/"-separated part)
NON_NEGATIVE = re.compile(r"^(grad_\w+|time)$")


def metric_bounds(metric: str, epochs: int | None = None) -> tuple[float, float]:
    """The values a metric can take, as (lowest, highest); (-inf, inf) for a metric not known to be bounded.

    Accuracies of every kind, alignment, the wrong-reason score and pairwise agreement lie in [0, 1] (the rule
    reads the metric's name after the split, so ``test_spurious/acc`` or a new ``*/acc_top2`` are covered);
    ``shortcut/reliance`` in [-1, 1]; ``max_prob`` in [0, 1]; ``ce`` in [0, inf); epoch counts (``epochs_to_95``,
    ``selected_epoch``) in [0, epochs], or [0, inf) when ``epochs`` is not given; gradient norms and times in
    [0, inf). Confidence intervals of a mean are kept inside these bounds
    (``explearn.results.ci95``): the mean of bounded values lies within the same bounds.

    Args:
        metric: a metric key such as ``test/acc``, ``agreement``, ``epochs_to_95`` or ``grad_stage1/mean``.
        epochs: the number of epochs the runs trained (the spec's ``epochs``), if known.
    """
    parts = metric.split(":", 1)[-1].split("/")  # a protocol's copy ("oracle:test/acc") has the same range
    name = parts[-1]
    if name in ("reliance",):  # a difference of two accuracies
        return -1.0, 1.0
    if name in ("max_prob", "all_tied"):
        return 0.0, 1.0
    if name == "ce":
        return 0.0, math.inf
    if name in SHARES or "acc" in name.split("_"):
        return 0.0, 1.0
    if any(EPOCH_COUNTS.match(part) for part in parts):
        return 0.0, math.inf if epochs is None else float(epochs)
    if any(NON_NEGATIVE.match(part) for part in parts):
        return 0.0, math.inf
    return -math.inf, math.inf


def difference_bounds(metric: str, epochs: int | None = None) -> tuple[float, float]:
    """The values a difference of two values of ``metric`` can take: [low - high, high - low] of
    ``metric_bounds(metric, epochs)``, so [-1, 1] for a metric in [0, 1], [-epochs, epochs] for an epoch count
    of runs that trained ``epochs`` epochs, and (-inf, inf) for one that is only bounded below."""
    low, high = metric_bounds(metric, epochs)
    return low - high, high - low
