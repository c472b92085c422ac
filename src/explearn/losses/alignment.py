"""Feature misalignment losses: compare the features the classifier sees with those of the reasons alone.

A loss has three pluggable parts, each a registry: the *axis* that groups a feature map into vectors (the whole
flattened map, each channel over space, or each position over channels), the *normalisation* applied to each
vector (softmax by default, as in the paper), and the *divergence* between the two normalised vectors (KL by
default). Registering a new normalisation or divergence makes it available to every method and study.

The paper's loss is ``KL(softmax(f(x')) || softmax(m(f(x))))``: the target (features of the masked input) comes
first, the prediction second. ``alignment_loss(pred, target)`` follows that convention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F

from explearn.config import check
from explearn.errors import ConfigError
from explearn.registry import Registry

_TINY = 1e-30  # floor for log() of probabilities that are not given in log space


class Normalized(NamedTuple):
    """A normalised vector and, when the normalisation yields a probability distribution, its logarithm
    (computed stably, e.g. by log_softmax) or None when it does not. Shape: (B, G, K) each."""

    values: torch.Tensor
    log_values: torch.Tensor | None
    is_distribution: bool
    #: (H, W) of the feature map when each vector is one channel over the positions (axis 'spatial'), else None;
    #: divergences with a ground metric (Wasserstein) place the K = H * W entries on this grid
    grid: tuple[int, int] | None = None


@dataclass(frozen=True)
class Divergence:
    """A registered divergence: ``fn(pred, target) -> (B, G)``, and whether it needs probability distributions."""

    fn: Callable[[Normalized, Normalized], torch.Tensor]
    needs_distribution: bool
    description: str
    #: the axes the divergence is defined on (None: every axis)
    axes: tuple[str, ...] | None = None


AXES: Registry = Registry("feature axis")
NORMALIZATIONS: Registry = Registry("normalisation")
DIVERGENCES: Registry = Registry("alignment loss")


# --- axes: (B, C, H, W) -> (B, G, K), one vector of K numbers per group ------------------------------------------


@AXES.register("flat")
def _flat(z: torch.Tensor) -> torch.Tensor:
    """The whole feature map as one vector: (B, 1, C*H*W)."""
    return z.reshape(z.shape[0], 1, -1)


@AXES.register("spatial")
def _spatial(z: torch.Tensor) -> torch.Tensor:
    """Each channel over the positions: (B, C, H*W)."""
    _need_map(z, "spatial")
    return z.flatten(2)


@AXES.register("channel")
def _channel(z: torch.Tensor) -> torch.Tensor:
    """Each position over the channels: (B, H*W, C)."""
    _need_map(z, "channel")
    return z.flatten(2).transpose(1, 2)


def _need_map(z: torch.Tensor, axis: str) -> None:
    if z.dim() != 4:
        raise ConfigError(f"axis {axis!r} needs feature maps of shape (B, C, H, W), got {tuple(z.shape)}; use 'flat'")


# --- normalisations: along the last dimension ---------------------------------------------------------------------


@NORMALIZATIONS.register("softmax")
def _softmax(v: torch.Tensor) -> Normalized:
    """softmax: a probability distribution; the paper's choice."""
    log = F.log_softmax(v, dim=-1)
    return Normalized(log.exp(), log, True)


@NORMALIZATIONS.register("l2")
def _l2(v: torch.Tensor) -> Normalized:
    """Division by the Euclidean norm (unit vectors)."""
    return Normalized(F.normalize(v, dim=-1, eps=1e-12), None, False)


@NORMALIZATIONS.register("minmax")
def _minmax(v: torch.Tensor) -> Normalized:
    """Rescaled to [0, 1] by the vector's own minimum and maximum (constant vectors become 0)."""
    lo = v.amin(-1, keepdim=True)
    span = v.amax(-1, keepdim=True) - lo
    return Normalized((v - lo) / span.clamp_min(1e-12), None, False)


@NORMALIZATIONS.register("none")
def _none(v: torch.Tensor) -> Normalized:
    """The raw features."""
    return Normalized(v, None, False)


# --- divergences: (B, G, K) x (B, G, K) -> (B, G) -----------------------------------------------------------------


def _log(n: Normalized) -> torch.Tensor:
    return n.log_values if n.log_values is not None else torch.log(n.values.clamp_min(_TINY))


def _kl(pred: Normalized, target: Normalized) -> torch.Tensor:
    t = target.values
    return (t * (_log(target) - _log(pred))).sum(-1)


def _js(pred: Normalized, target: Normalized) -> torch.Tensor:
    mid = 0.5 * (pred.values + target.values)
    log_mid = torch.log(mid.clamp_min(_TINY))
    kl_p = (pred.values * (_log(pred) - log_mid)).sum(-1)
    kl_t = (target.values * (_log(target) - log_mid)).sum(-1)
    return 0.5 * (kl_p + kl_t)


def _l2dist(pred: Normalized, target: Normalized) -> torch.Tensor:
    return (pred.values - target.values).pow(2).sum(-1)


def _l1dist(pred: Normalized, target: Normalized) -> torch.Tensor:
    return (pred.values - target.values).abs().sum(-1)


def _cosine(pred: Normalized, target: Normalized) -> torch.Tensor:
    # half the squared distance of the unit vectors: 1 - cos for non-zero vectors, and 0 (not 1) for two zero
    # vectors, which are equal
    u = F.normalize(pred.values, dim=-1, eps=1e-12)
    v = F.normalize(target.values, dim=-1, eps=1e-12)
    return 0.5 * (u - v).pow(2).sum(-1)


def _sliced_wasserstein(pred: Normalized, target: Normalized, projections: int = 16) -> torch.Tensor:
    """Sliced Wasserstein-2 (squared) between distributions over the positions of the feature grid.

    Ground metric: Euclidean distance between positions, the grid scaled so that its longer side spans [0, 1].
    The positions are projected on ``projections`` directions evenly spaced in [0, pi) (a fixed quadrature of the
    sliced integral, so training stays deterministic); on each direction the exact 1-D Wasserstein distance comes
    from POT's ``ot.wasserstein_1d`` (differentiable in the weights), and the result is their mean.
    """
    import ot  # POT, Python Optimal Transport

    if pred.grid is None:
        raise ConfigError("alignment loss 'wasserstein' needs distributions over positions: use axis='spatial'")
    h, w = pred.grid
    a, b = pred.values, target.values  # (B, G, K)
    batch, groups, k = a.shape
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    pos = torch.stack([ys, xs], -1).reshape(k, 2).to(a) / max(h - 1, w - 1, 1)
    angles = torch.arange(projections, dtype=a.dtype, device=a.device) * (math.pi / projections)
    proj = pos @ torch.stack([angles.cos(), angles.sin()])  # (K, P)
    proj, order = proj.sort(0)  # the same positions for both sides: sort once, not in every 1-D problem
    n = batch * groups

    def columns(t: torch.Tensor) -> torch.Tensor:  # (K, n * P): one 1-D problem per column, positions sorted
        spread = t.reshape(n, k).T[:, :, None].expand(k, n, projections)
        return spread.gather(0, order[:, None, :].expand(k, n, projections)).reshape(k, n * projections)

    values = proj[:, None, :].expand(k, n, projections).reshape(k, n * projections)
    cost = ot.wasserstein_1d(values, values, columns(a), columns(b), p=2, require_sort=False)
    return cost.reshape(batch, groups, projections).mean(-1)


DIVERGENCES.register("kl")(Divergence(_kl, True, "KL(target || prediction); the paper's loss"))
DIVERGENCES.register("js")(Divergence(_js, True, "Jensen-Shannon divergence (symmetric, bounded by log 2)"))
DIVERGENCES.register("l2")(Divergence(_l2dist, False, "squared Euclidean distance"))
DIVERGENCES.register("l1")(Divergence(_l1dist, False, "L1 distance"))
DIVERGENCES.register("cosine")(Divergence(_cosine, False, "1 - cosine similarity (0 between two zero vectors)"))
DIVERGENCES.register("wasserstein")(Divergence(
    _sliced_wasserstein, True,
    "sliced Wasserstein-2 over the feature grid (Euclidean ground metric, POT); needs axis 'spatial'", ("spatial",),
))


# --- the loss -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlignmentLoss:
    """A feature misalignment loss: divergence(normalise(group(target)), normalise(group(pred))).

    Args:
        loss: a registered divergence ("kl", "js", "l2", "l1", "cosine", "wasserstein").
        normalization: a registered normalisation ("softmax", "l2", "minmax", "none").
        axis: how the feature map is grouped into vectors ("flat", "spatial", "channel").

    Raises:
        ConfigError: an unknown name, or a divergence between distributions with a normalisation that does not
            produce distributions (e.g. KL on raw features).
    """

    loss: str = "kl"
    normalization: str = "softmax"
    axis: str = "flat"

    def __post_init__(self) -> None:
        div = DIVERGENCES.get(self.loss)
        AXES.get(self.axis)
        norm = NORMALIZATIONS.get(self.normalization)
        if div.needs_distribution:
            probe = norm(torch.zeros(1, 1, 2))
            check(probe.is_distribution, "alignment loss",
                  f"{self.loss!r} compares probability distributions, but normalisation {self.normalization!r} "
                  "does not produce them; use normalization='softmax' or a loss such as 'l2'")
        if div.axes is not None:
            check(self.axis in div.axes, "alignment loss",
                  f"{self.loss!r} is defined on axis {' or '.join(map(repr, div.axes))}, not {self.axis!r}")

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean loss over samples and groups.

        Shape:
            pred, target: (B, C, H, W) (or (B, D) with axis 'flat') -> scalar
        """
        if pred.shape != target.shape:
            raise ConfigError(f"alignment loss: prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        return self.per_sample(pred, target).mean()

    def per_sample(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of each sample, averaged over its groups. Shape: (B,)."""
        group, norm = AXES.get(self.axis), NORMALIZATIONS.get(self.normalization)
        p, t = norm(group(pred)), norm(group(target))
        if self.axis == "spatial":
            grid = tuple(pred.shape[2:])
            p, t = p._replace(grid=grid), t._replace(grid=grid)
        return DIVERGENCES.get(self.loss).fn(p, t).mean(-1)


def alignment_loss(pred: torch.Tensor, target: torch.Tensor, loss: str = "kl", normalization: str = "softmax",
                   axis: str = "flat") -> torch.Tensor:
    """Functional form of ``AlignmentLoss(loss, normalization, axis)(pred, target)``."""
    return AlignmentLoss(loss, normalization, axis)(pred, target)
