"""Explanation metrics: how much of a model's attribution lies inside the explanation mask (alignment), and how
often it lands on a confounder (the wrong-reason score)."""

from __future__ import annotations

import torch
from torch import nn

from explearn.datasets.base import ExplanationDataset
from explearn.explain.gradients import input_gradients
from explearn.models.base import eval_mode

#: The attribution method behind ``explanation_alignment``, named in every result.
ATTRIBUTION = "input_gradient(log p_predicted)"
#: The attribution behind ``wrong_reason_score``: the same gradient, its absolute value summed over channels and
#: divided by each image's maximum.
WRONG_SCORE_ATTRIBUTION = "|input_gradient(log p_predicted)| summed over channels, / per-image max"


def mask_mass_share(attribution: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Share of absolute attribution mass inside the mask (relevance mass accuracy), per sample.

    Soft masks weight each feature by their value. A sample with zero attribution everywhere gets NaN.

    Shape:
        attribution (B, C, H, W), mask (B, 1 or C, H, W) -> (B,)
    """
    mass = attribution.abs()
    inside = (mass * mask).flatten(1).sum(1)
    total = mass.flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(1e-30), torch.full_like(total, float("nan")))


@torch.no_grad()
def explanation_alignment(model: nn.Module, data: ExplanationDataset, batch_size: int = 256) -> float:
    """Mean share of |input gradient| mass inside the mask, over the samples of ``data`` that have a mask.

    The attribution is the input gradient of the predicted class's log-probability (``ATTRIBUTION``).
    Returns NaN when no sample has a mask.
    """
    idx = data.has_mask.nonzero().flatten()
    if len(idx) == 0:
        return float("nan")
    shares = []
    with eval_mode(model):
        for start in range(0, len(idx), batch_size):
            b = idx[start:start + batch_size]
            grad = input_gradients(model, data.x[b], target="predicted")
            shares.append(mask_mass_share(grad, data.mask[b]))
    return float(torch.nanmean(torch.cat(shares)))


def normalized_attribution(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """|d log p_predicted / dx| summed over channels, divided by each image's maximum: values in [0, 1] (an image
    with zero gradient everywhere gets zeros). Shape: (B, C, H, W) -> (B, H, W)."""
    a = input_gradients(model, x, target="predicted").abs().sum(1)
    return a / a.amax(dim=(1, 2), keepdim=True).clamp_min(1e-30)


def wrong_score_from(attribution: torch.Tensor, wrong: torch.Tensor) -> float:
    """The wrong-reason score of normalised attributions: the share of wrong-mask pixels whose attribution is above
    the mean attribution over all pixels of all the images (soft masks weight each pixel by their value; several
    mask channels are reduced by their maximum). NaN when the masks are empty.

    Shape:
        attribution (N, H, W) in [0, 1], wrong (N, 1|C, H, W)
    """
    w = wrong.amax(dim=1)  # (N, H, W)
    total = w.sum()
    if float(total) <= 0:
        return float("nan")
    above = (attribution > attribution.mean()).to(w.dtype)
    return float((w * above).sum() / total)


@torch.no_grad()
def wrong_reason_score(model: nn.Module, data: ExplanationDataset, batch_size: int = 256) -> float:
    """Wrong-reason score (lower is better): over the samples of ``data`` with a wrong-reason mask, the share of
    wrong-mask pixels whose normalised attribution exceeds the dataset mean of the normalised attribution.

    The attribution is ``WRONG_SCORE_ATTRIBUTION``: |input gradient of the predicted class's log-probability|,
    summed over channels, divided by each image's maximum; the threshold is its mean over every pixel of every
    image with a wrong-reason mask. A model that ignores the confounder scores near 0; one whose attribution sits
    on it scores near 1. Only explicit wrong-reason masks count (no conversion from right-reason masks). Returns
    NaN when no sample has a wrong-reason mask.
    """
    idx = data.has_wrong_mask.nonzero().flatten()
    if len(idx) == 0:
        return float("nan")
    maps = []
    with eval_mode(model):
        for start in range(0, len(idx), batch_size):
            maps.append(normalized_attribution(model, data.x[idx[start:start + batch_size]]))
    return wrong_score_from(torch.cat(maps), data.wrong_mask[idx])
