"""Explanation alignment: how much of a model's attribution lies inside the explanation mask."""

from __future__ import annotations

import torch
from torch import nn

from explearn.datasets.base import ExplanationDataset
from explearn.explain.gradients import input_gradients
from explearn.models.base import eval_mode

#: The attribution method behind ``explanation_alignment``, named in every result.
ATTRIBUTION = "input_gradient(log p_predicted)"


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
