"""Explanation metrics: how much of a model's attribution lies inside the explanation mask (alignment), and how
often it lands on a confounder (the wrong-reason score)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from explearn.datasets.base import ExplanationDataset
from explearn.explain.gradcam import grad_cam, reduce_channels, upsample_map
from explearn.explain.gradients import input_gradients
from explearn.models.base import eval_mode

#: The attribution method behind ``explanation_alignment``, named in every result.
ATTRIBUTION = "input_gradient(log p_predicted)"
#: The attribution behind ``*/align_gradcam`` (models with a feature map at m(f(x)) only).
GRADCAM_ATTRIBUTION = "Grad-CAM(predicted class) on m(f(x)), bilinear to the image; mask: max over channels"
#: The attribution behind ``wrong_reason_score``: the same gradient, its absolute value summed over channels and
#: divided by each image's maximum.
WRONG_SCORE_ATTRIBUTION = "|input_gradient(log p_predicted)| summed over channels, / per-image max"


def mask_mass_share(attribution: torch.Tensor, mask: torch.Tensor, empty: float = float("nan")) -> torch.Tensor:
    """Share of absolute attribution mass inside the mask (relevance mass accuracy), per sample.

    Soft masks weight each feature by their value. A sample with zero attribution everywhere gets ``empty``: NaN
    by default (the mean leaves it out), 0 for Grad-CAM, whose map is zero everywhere on many images of a model
    that learnt to switch it off, which must not raise its score (``alignment_estimate``).

    Shape:
        attribution (B, C, H, W), mask (B, 1 or C, H, W) -> (B,)
    """
    mass = attribution.abs()
    inside = (mass * mask).flatten(1).sum(1)
    total = mass.flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(1e-30), torch.full_like(total, empty))


#: Final attribution metrics read at most this many images of a split (its first ones with a mask, in the split's
#: order, which is random for the generated datasets): an input-gradient pass over 2000 test images cost about as
#: much as 4.6 training epochs of the default run (issue 13). The estimate's 95 % interval is reported beside it.
ATTRIBUTION_SAMPLES = 500


@dataclass(frozen=True)
class Estimate:
    """A metric estimated on ``n`` images, with a 95 % confidence interval for its value on the whole split (NaN
    when it cannot be computed; equal to the mean when the whole split was read)."""

    mean: float
    ci_low: float
    ci_high: float
    n: int
    of: int  # images with the mask in the split


@torch.no_grad()
def explanation_alignment(model: nn.Module, data: ExplanationDataset, batch_size: int = 256,
                          limit: int | None = None) -> float:
    """Mean share of |input gradient| mass inside the mask, over the samples of ``data`` that have a mask (the first
    ``limit`` of them when given).

    The attribution is the input gradient of the predicted class's log-probability (``ATTRIBUTION``).
    Returns NaN when no sample has a mask.
    """
    return alignment_estimate(model, data, batch_size, limit).mean


@torch.no_grad()
def alignment_estimate(model: nn.Module, data: ExplanationDataset, batch_size: int = 256,
                       limit: int | None = ATTRIBUTION_SAMPLES, attribution: str = "input_gradient") -> Estimate:
    """``explanation_alignment`` on the first ``limit`` images with a mask, with a 95 % interval for the mean over
    all of them: Student's t over the images read, with the finite-population correction (0 width when every
    image was read), kept within [0, 1].

    Args:
        attribution: ``input_gradient`` (|d log p_predicted / dx|, ``ATTRIBUTION``) or ``gradcam`` (Grad-CAM of
            the predicted class on m(f(x)), Selvaraju et al. 2017, upsampled bilinearly to the image; its mass is
            compared with the mask reduced over channels by their maximum: ``GRADCAM_ATTRIBUTION``; an image whose
            map is zero everywhere counts as share 0, so every image read counts).

    Raises:
        ConfigError: ``gradcam`` on a model without a feature map at m(f(x)) (e.g. an MLP).
        ValueError: another ``attribution``.
    """
    if attribution not in ("input_gradient", "gradcam"):
        raise ValueError(f"alignment_estimate: attribution must be 'input_gradient' or 'gradcam', got {attribution!r}")
    idx = data.has_mask.nonzero().flatten()
    total = len(idx)
    idx = idx[:limit] if limit is not None else idx
    if len(idx) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, total)
    shares = []
    with eval_mode(model):
        for start in range(0, len(idx), batch_size):
            b = idx[start:start + batch_size]
            if attribution == "gradcam":
                mask = reduce_channels(data.mask[b]).unsqueeze(1)
                cam = upsample_map(grad_cam(model, data.x[b]), tuple(mask.shape[-2:]))
                shares.append(mask_mass_share(cam.unsqueeze(1), mask, empty=0.0))  # a zero map: nothing inside
            else:
                shares.append(mask_mass_share(input_gradients(model, data.x[b], target="predicted"), data.mask[b]))
    values = torch.cat(shares).double()
    values = values[~torch.isnan(values)]
    return _mean_interval(values, total)


def _mean_interval(values: torch.Tensor, population: int) -> Estimate:
    n = len(values)
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, population)
    mean = float(values.mean())
    if n < 2 or n >= population:
        return Estimate(mean, mean, mean, n, population)
    from scipy import stats

    sem = float(values.std()) / math.sqrt(n) * math.sqrt((population - n) / (population - 1))
    half = float(stats.t.ppf(0.975, n - 1)) * sem
    return Estimate(mean, max(0.0, mean - half), min(1.0, mean + half), n, population)


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
def wrong_reason_score(model: nn.Module, data: ExplanationDataset, batch_size: int = 256,
                       limit: int | None = None) -> float:
    """Wrong-reason score (lower is better): over the samples of ``data`` with a wrong-reason mask, the share of
    wrong-mask pixels whose normalised attribution exceeds the dataset mean of the normalised attribution.

    The attribution is ``WRONG_SCORE_ATTRIBUTION``: |input gradient of the predicted class's log-probability|,
    summed over channels, divided by each image's maximum; the threshold is its mean over every pixel of every
    image with a wrong-reason mask. A model that ignores the confounder scores near 0; one whose attribution sits
    on it scores near 1. Only explicit wrong-reason masks count (no conversion from right-reason masks). Returns
    NaN when no sample has a wrong-reason mask.
    """
    return wrong_score_estimate(model, data, batch_size, limit).mean


#: bootstrap resamples of images for the interval of a wrong-reason score read on a subsample (fixed seed)
WRONG_SCORE_RESAMPLES = 200


@torch.no_grad()
def wrong_score_estimate(model: nn.Module, data: ExplanationDataset, batch_size: int = 256,
                         limit: int | None = ATTRIBUTION_SAMPLES) -> Estimate:
    """``wrong_reason_score`` on the first ``limit`` images with a wrong-reason mask, with a 95 % percentile
    bootstrap interval over those images (``WRONG_SCORE_RESAMPLES`` resamples, seed 0, the threshold held at the
    images' own mean attribution, so that a resample needs only each image's two sums); the score alone when every
    image was read."""
    idx = data.has_wrong_mask.nonzero().flatten()
    total = len(idx)
    idx = idx[:limit] if limit is not None else idx
    if len(idx) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, total)
    maps = []
    with eval_mode(model):
        for start in range(0, len(idx), batch_size):
            maps.append(normalized_attribution(model, data.x[idx[start:start + batch_size]]))
    attribution, wrong = torch.cat(maps), data.wrong_mask[idx]
    score = wrong_score_from(attribution, wrong)
    if len(idx) >= total or len(idx) < 2:
        return Estimate(score, score, score, len(idx), total)
    w = wrong.amax(dim=1).double()  # as wrong_score_from: (N, H, W)
    above = (attribution > attribution.mean()).double()
    inside, mass = (w * above).flatten(1).sum(1), w.flatten(1).sum(1)  # per image: (N,), (N,)
    pick = torch.randint(len(idx), (WRONG_SCORE_RESAMPLES, len(idx)), generator=torch.Generator().manual_seed(0))
    draws = inside[pick].sum(1) / mass[pick].sum(1)
    draws = draws[~torch.isnan(draws)]
    if len(draws) == 0:
        return Estimate(score, float("nan"), float("nan"), len(idx), total)
    return Estimate(score, float(torch.quantile(draws, 0.025)), float(torch.quantile(draws, 0.975)), len(idx), total)
