"""Attributions for evaluation by name, computed with captum (Kokhlikyan et al. 2020), beside explearn's own input
gradient; and the share of each one's mass inside the explanation masks. Not differentiable in the weights:
training losses use ``explain.gradients`` and ``explain.gradcam``.

captum's conventions, which every attribution here follows: ``forward_func`` returns logits (B, K) and ``target``
picks one column per sample, so the explained score is the *logit* of the target class (explearn's own
``input_gradient`` differentiates its log-probability instead); baselines live in the space the model reads, after
any normalisation (a zero baseline of a normalised image is the mean colour of the normalisation, not black).
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import torch
from torch import nn

from explearn.config import check
from explearn.datasets.base import ExplanationDataset
from explearn.explain.attribution import mask_mass_share
from explearn.explain.gradcam import check_feature_map, reduce_channels
from explearn.explain.gradients import input_gradients
from explearn.models.base import eval_mode, logits
from explearn.registry import Registry

#: (model, x, target or None = the predicted class) -> attribution, detached. Shape: x (B, C, H, W), target (B,)
#: -> (B, C, H, W), or (B, H, W) for a map computed on features and upsampled to the input (gradcam).
AttributionFn = Callable[[nn.Module, torch.Tensor, torch.Tensor | None], torch.Tensor]

#: the attributions offered for evaluation (``alignment_under``, ``explearn explain --attribution``), by name
EVALUATION_ATTRIBUTIONS: Registry[AttributionFn] = Registry("attribution")

#: saliency reports |d logit / dx| (Simonyan et al. 2014 take the magnitude; captum's default)
SALIENCY_ABS = True
#: integrated gradients: straight path from an all-zero baseline, captum's default 50 Gauss-Legendre steps, and at
#: most this many interpolated images per forward pass (bounds memory: a batch of B images is B * 50 images)
IG_STEPS = 50
IG_METHOD = "gausslegendre"
IG_INTERNAL_BATCH = 256
#: occlusion: a window of ceil(side / OCCLUSION_DIVISIONS) pixels over every channel (4x4 on 32x32, 28x28 on
#: 224x224), moved by half a window: (2 * OCCLUSION_DIVISIONS - 1)^2 = 225 positions whatever the image size, when
#: 16 divides its sides; occluded pixels are set to 0; ``OCCLUSION_PER_EVAL`` occluded copies of each image per
#: forward pass
OCCLUSION_DIVISIONS = 8
OCCLUSION_PER_EVAL = 16


def _registered(name: str) -> Callable[[AttributionFn], AttributionFn]:
    """Register an attribution under ``name``, run in eval mode (each submodule's mode restored after) and with
    gradients on (callers such as ``alignment_under`` run under ``torch.no_grad``)."""

    def add(fn: AttributionFn) -> AttributionFn:
        @functools.wraps(fn)
        def attribution(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
            with eval_mode(model), torch.enable_grad():
                return fn(model, x.detach(), target).detach()

        return EVALUATION_ATTRIBUTIONS.register(name)(attribution)

    return add


def _logits_forward(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The forward function captum calls: the three-part model's logits c(m(f(x))), (B, C, H, W) -> (B, K)."""
    return lambda x: logits(model, x)


def _explained(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """``target`` as captum takes it (int64, (B,)), the predicted class where it is None."""
    if target is None:
        with torch.no_grad():
            return logits(model, x).argmax(1)
    return target.to(device=x.device, dtype=torch.long).view(-1)


def _leaf(x: torch.Tensor) -> torch.Tensor:
    """A leaf copy of ``x`` that requires grad, so captum neither warns nor changes the caller's tensor."""
    return x.detach().requires_grad_(True)


@_registered("saliency")
def saliency(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """|d logit_target / dx| per input feature: captum Saliency, abs=True (Simonyan et al. 2014).

    The gradient of the target's logit, not of its log-probability (unlike ``input_gradient``), taken in absolute
    value as Simonyan et al. do (captum's default; they then take the maximum over channels, left to the caller).

    Args:
        model: a three-part explearn model (run in eval mode).
        x: the inputs, as the model reads them.
        target: the explained class of each sample; None = the predicted class.

    Returns:
        The absolute gradient, detached.

    Raises:
        ConfigError: the classifier modifies m(f(x)) in place.

    Shape:
        x (B, C, H, W), target (B,) -> (B, C, H, W)
    """
    from captum.attr import Saliency

    return Saliency(_logits_forward(model)).attribute(_leaf(x), target=_explained(model, x, target), abs=SALIENCY_ABS)


@_registered("input_x_gradient")
def input_x_gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """x * d logit_target / dx, signed: captum InputXGradient (Shrikumar et al. 2016).

    Args:
        model: a three-part explearn model (run in eval mode).
        x: the inputs, as the model reads them (normalised images: the product is taken there).
        target: the explained class of each sample; None = the predicted class.

    Returns:
        The signed product, detached.

    Raises:
        ConfigError: the classifier modifies m(f(x)) in place.

    Shape:
        x (B, C, H, W), target (B,) -> (B, C, H, W)
    """
    from captum.attr import InputXGradient

    return InputXGradient(_logits_forward(model)).attribute(_leaf(x), target=_explained(model, x, target))


@_registered("integrated_gradients")
def integrated_gradients(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """(x - x0) * the mean of d logit_target / dx on the straight path from x0 = 0 to x, signed: captum
    IntegratedGradients, 50 steps (Sundararajan et al. 2017).

    ``IG_STEPS`` (50) Gauss-Legendre points, at most ``IG_INTERNAL_BATCH`` interpolated images per forward pass.
    Completeness: the attributions of an image sum to logit_target(x) - logit_target(x0), up to the quadrature's
    error (captum's convergence delta). x0 = 0 in the space the model reads: for normalised images, the mean colour.

    Args:
        model: a three-part explearn model (run in eval mode).
        x: the inputs, as the model reads them.
        target: the explained class of each sample; None = the predicted class.

    Returns:
        The signed attributions, detached.

    Raises:
        ConfigError: the classifier modifies m(f(x)) in place.

    Shape:
        x (B, C, H, W), target (B,) -> (B, C, H, W)
    """
    from captum.attr import IntegratedGradients

    return IntegratedGradients(_logits_forward(model)).attribute(
        x, baselines=torch.zeros_like(x), target=_explained(model, x, target), n_steps=IG_STEPS, method=IG_METHOD,
        internal_batch_size=IG_INTERNAL_BATCH)


def occlusion_window(height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The occlusion window and stride for an image of ``height`` x ``width`` pixels: ceil(side / 8) pixels, moved by
    half of that (at least 1): ((4, 4), (2, 2)) at 32x32."""
    window = (math.ceil(height / OCCLUSION_DIVISIONS), math.ceil(width / OCCLUSION_DIVISIONS))
    return window, (max(1, window[0] // 2), max(1, window[1] // 2))


@_registered("occlusion")
def occlusion(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """logit_target(x) - logit_target(x with a window set to 0), averaged over the windows covering each pixel,
    signed: captum Occlusion, window 1/8 of each side, stride half of it (Zeiler and Fergus 2014).

    Equal across channels: the window spans every channel and ``occlusion_window`` pixels (1/8 of each side,
    stride half a window; the last windows are clipped at the border, so every pixel is covered). Forward passes
    only, no gradient: one per window position (15 x 15 = 225 when 16 divides each side, 64 at 8x8), run on
    ``OCCLUSION_PER_EVAL`` occluded copies of each image at a time.

    Args:
        model: a three-part explearn model (run in eval mode).
        x: the inputs, as the model reads them (0 is the occluding value there).
        target: the explained class of each sample; None = the predicted class.

    Returns:
        The signed attributions in ``x``'s dtype, detached; float32-precise even for float64 inputs (captum divides
        by the window counts in float32).

    Raises:
        ConfigError: the classifier modifies m(f(x)) in place.

    Shape:
        x (B, C, H, W), target (B,) -> (B, C, H, W)
    """
    from captum.attr import Occlusion

    (wh, ww), (sh, sw) = occlusion_window(*x.shape[2:])
    c = x.shape[1]
    with torch.no_grad():
        out = Occlusion(_logits_forward(model)).attribute(
            x, sliding_window_shapes=(c, wh, ww), strides=(c, sh, sw), baselines=0,
            target=_explained(model, x, target), perturbations_per_eval=OCCLUSION_PER_EVAL)
    return out.to(x.dtype)  # captum divides by the window counts in float32, whatever the input's dtype


@_registered("gradcam")
def gradcam(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Grad-CAM of the target's logit on m(f(x)), rectified and upsampled bilinearly to the input: captum
    LayerGradCam (Selvaraju et al. 2017).

    On A = m(f(x)), the classifier's input: relu(sum_c w_c A_c) with w_c the spatial mean of d logit_target / dA_c;
    captum LayerGradCam on ``model.mapping`` with relu_attributions=True, then LayerAttribution.interpolate. captum
    averages the layer gradient over every dimension after the channel one (the spatial mean of Grad-CAM),
    and neither rectifies (unless relu_attributions=True) nor upsamples by itself. The map before upsampling is
    explearn's ``grad_cam``; the upsampling is ``upsample_map``'s (bilinear, align_corners=False).

    Args:
        model: a three-part explearn model whose m(f(x)) is a feature map (B, C', h, w).
        x: the inputs, as the model reads them.
        target: the explained class of each sample; None = the predicted class.

    Returns:
        The non-negative map, detached.

    Raises:
        ConfigError: m(f(x)) is not a feature map (B, C', h, w), e.g. for an MLP; the classifier modifies it in
            place.

    Shape:
        x (B, C, H, W), target (B,) -> (B, H, W)
    """
    from captum.attr import LayerAttribution, LayerGradCam

    with torch.no_grad():  # one image tells whether there is a map to explain
        check_feature_map(model.mapping(model.features(x[:1])), who="the attribution 'gradcam'",
                          advice="or another attribution (e.g. 'input_gradient', 'integrated_gradients')")
    cam = LayerGradCam(_logits_forward(model), model.mapping).attribute(
        x, target=_explained(model, x, target), relu_attributions=True)  # (B, 1, h, w)
    return LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="bilinear").squeeze(1)


@_registered("input_gradient")
def input_gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """d log p_target / dx, signed: explearn's own input_gradients, the align metric's attribution for the
    predicted class.

    ``ATTRIBUTION`` when the target is the predicted class: the saliency of Simonyan et al. 2014 taken on the
    log-probability instead of the logit.

    Args:
        model: a three-part explearn model (run in eval mode).
        x: the inputs, as the model reads them.
        target: the explained class of each sample; None = the predicted class (``target="predicted"``).

    Returns:
        The signed gradient, detached.

    Raises:
        ConfigError: the classifier modifies m(f(x)) in place.

    Shape:
        x (B, C, H, W), target (B,) -> (B, C, H, W)
    """
    if target is None:
        return input_gradients(model, x, target="predicted")
    return input_gradients(model, x, target="label", y=_explained(model, x, target))


def attribution_summary(name: str) -> str:
    """What the attribution ``name`` computes, in one sentence: the first paragraph of its docstring, on one line.

    Raises:
        ConfigError: an unknown name, with the closest known ones.
    """
    doc = EVALUATION_ATTRIBUTIONS.get(name).__doc__ or name
    return " ".join(doc.strip().split("\n\n")[0].split())


def pixel_magnitude(attribution: torch.Tensor) -> torch.Tensor:
    """Non-negative attribution per pixel: |a| summed over channels, or |a| of a map already per pixel.

    Shape:
        (B, C, H, W) or (B, H, W) -> (B, H, W)
    """
    return attribution.abs().sum(1) if attribution.dim() == 4 else attribution.abs()


def mass_share_of(attribution: torch.Tensor, mask: torch.Tensor, empty: float = float("nan")) -> torch.Tensor:
    """``mask_mass_share`` of an attribution per input feature or per pixel: a per-pixel map (B, H, W) is compared
    with the mask reduced over its channels (max), so that a mask of C channels does not count a pixel C times.

    Shape:
        attribution (B, C, H, W) or (B, H, W), mask (B, 1 or C, H, W) -> (B,)
    """
    if attribution.dim() == 3:
        return mask_mass_share(attribution.unsqueeze(1), reduce_channels(mask).unsqueeze(1), empty)
    return mask_mass_share(attribution, mask, empty)


@torch.no_grad()
def alignment_under(model: nn.Module, data: ExplanationDataset, attribution: str, limit: int | None = None,
                    batch_size: int = 64) -> float:
    """Mean share of absolute attribution mass inside the mask, the attribution named by ``attribution``, over the
    samples of ``data`` that have a mask (the first ``limit`` of them when given), the predicted class explained:
    ``explanation_alignment`` under another attribution (equal to it for ``input_gradient``).

    Args:
        model: a three-part explearn model (run in eval mode; its modes are restored after).
        data: images with masks.
        attribution: a name of ``EVALUATION_ATTRIBUTIONS``.
        limit: read at most this many images with a mask.
        batch_size: images per attribution call (integrated gradients runs 50 times as many through the model, in
            chunks of ``IG_INTERNAL_BATCH``; occlusion ``OCCLUSION_PER_EVAL`` times as many).

    Returns:
        The mean over the samples whose attribution is not zero everywhere (for ``gradcam``, over every sample: a
        map that is zero everywhere counts as 0); NaN when no sample has a mask.

    Raises:
        ConfigError: an unknown attribution name (with the closest known ones); gradcam on a model without a
            feature map at m(f(x)); a ``limit`` or ``batch_size`` below 1.

    Shape:
        data.x (N, C, H, W), data.mask (N, 1 or C, H, W)
    """
    compute = EVALUATION_ATTRIBUTIONS.get(attribution)
    check(limit is None or (isinstance(limit, int) and limit >= 1), "alignment_under",
          f"limit must be a positive number of images or None, got {limit!r}")
    check(isinstance(batch_size, int) and batch_size >= 1, "alignment_under",
          f"batch_size must be a positive integer, got {batch_size!r}")
    empty = 0.0 if attribution == "gradcam" else float("nan")  # a zero Grad-CAM map: 0 inside (*/align_gradcam)
    idx = data.has_mask.nonzero().flatten()
    idx = idx[:limit] if limit is not None else idx
    if len(idx) == 0:
        return float("nan")
    shares = []
    with eval_mode(model):
        for start in range(0, len(idx), batch_size):
            b = idx[start:start + batch_size]
            shares.append(mass_share_of(compute(model, data.x[b], None), data.mask[b], empty))
    values = torch.cat(shares).double()
    values = values[~torch.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")
