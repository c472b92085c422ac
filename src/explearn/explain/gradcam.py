"""Differentiable Grad-CAM (Selvaraju et al., ICCV 2017) on the feature map the classifier sees, m(f(x)), and the
resizing helpers that put Grad-CAM maps and explanation masks on a common grid.

Grad-CAM of class k: weights w_c = spatial mean of d logit_k / dA_c, map = relu(sum_c w_c A_c), with A = m(f(x))
the input of the classifier c. With ``create_graph=True`` the map stays differentiable in the weights, so a loss
on it (RRR-G, HINT) trains the network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from explearn.errors import ConfigError
from explearn.models.base import classify, eval_mode

#: added to the per-sample maximum in ``normalize_cam`` (an all-zero map stays zero instead of NaN)
CAM_EPS = 1e-8


def check_feature_map(mapped: torch.Tensor, who: str = "Grad-CAM",
                      advice: str = "or a method without Grad-CAM (e.g. 'rrr')") -> None:
    """Raise a ConfigError unless ``mapped`` is a feature map (B, C, h, w), naming the model's feature shape, who
    needs it (``who``) and what else to use (``advice``, after "use a convolutional model such as 'small_cnn',")."""
    if mapped.dim() != 4:
        raise ConfigError(
            f"{who} needs a spatial feature map (B, C, h, w) at the classifier's input m(f(x)), but this model's "
            f"features have shape {tuple(mapped.shape[1:])} per sample (a vector model such as 'mlp'?); use a "
            f"convolutional model such as 'small_cnn', {advice}"
        )


@torch.no_grad()
def has_feature_map(model: nn.Module, data) -> bool:
    """Whether the model's m(f(x)) is a spatial feature map (B, C, h, w), so that Grad-CAM applies; read from one
    image of ``data`` (an ``ExplanationDataset``) in eval mode."""
    if len(data) == 0:
        return False
    with eval_mode(model):
        return model.mapping(model.features(data.x[:1])).dim() == 4


def grad_cam_from(mapped: torch.Tensor, logits: torch.Tensor, target: torch.Tensor,
                  create_graph: bool = False) -> torch.Tensor:
    """Grad-CAM from an existing forward pass (so that a method can share it with its cross-entropy).

    Args:
        mapped: A = m(f(x)), part of the graph that produced ``logits``.
        logits: c(A).
        target: the class whose logit is explained, one per sample.
        create_graph: keep the graph so that a loss on the map trains the weights; else the map is detached.

    Returns:
        relu(sum_c w_c A_c) with w_c = mean over positions of d logit_target / dA_c.

    Shape:
        mapped (B, C, h, w), logits (B, K), target (B,) -> (B, h, w)
    """
    check_feature_map(mapped)
    with torch.enable_grad():
        score = logits.gather(1, target.view(-1, 1).long()).sum()  # samples are independent: sum = per-sample grads
        (grad,) = torch.autograd.grad(score, mapped, create_graph=create_graph)
        weights = grad.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        cam = F.relu((weights * mapped).sum(1))  # (B, h, w)
    return cam if create_graph else cam.detach()


def mapped_forward(model: nn.Module, x: torch.Tensor, **context: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A = m(f(x)) and the logits c(A), with A in the graph even when f and m have no trainable parameters (so
    that Grad-CAM can differentiate w.r.t. it); one forward for a method's cross-entropy and its Grad-CAM term.

    Raises:
        ConfigError: if A is not a feature map (B, C, h, w), or the classifier modifies A in place.

    Shape:
        x (B, C_in, H, W) -> A (B, C, h, w), logits (B, K)
    """
    mapped = model.mapping(model.features(x))
    check_feature_map(mapped, **context)  # context: who needs the map and what else to use (check_feature_map)
    if not mapped.requires_grad:  # frozen f and m and a plain input: differentiate w.r.t. A alone
        mapped = mapped.detach().requires_grad_(True)
    return mapped, classify(model, mapped)


def grad_cam(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None,
             create_graph: bool = False) -> torch.Tensor:
    """Grad-CAM of a three-part model on the mapped feature map m(f(x)).

    Args:
        model: a three-part explearn model whose m(f(x)) is a feature map (B, C, h, w).
        x: the inputs.
        target: the class explained for each sample (e.g. the labels); None = the predicted class.
        create_graph: differentiable in the weights (for training losses).

    Returns:
        The non-negative, unnormalised map (``normalize_cam`` rescales it to [0, 1]).

    Raises:
        ConfigError: if m(f(x)) is not a feature map (B, C, h, w), e.g. for an MLP.

    Shape:
        x (B, C_in, H, W), target (B,) -> (B, h, w)
    """
    with torch.enable_grad():
        mapped, logits = mapped_forward(model, x)
        if target is None:
            target = logits.argmax(1)
        return grad_cam_from(mapped, logits, target, create_graph=create_graph)


def normalize_cam(cam: torch.Tensor, eps: float = CAM_EPS) -> torch.Tensor:
    """Each sample's map divided by its maximum (+ eps): values in [0, 1]; an all-zero map stays zero.

    Shape:
        (B, h, w) -> (B, h, w)
    """
    return cam / (cam.amax(dim=(-2, -1), keepdim=True) + eps)


def reduce_channels(mask: torch.Tensor) -> torch.Tensor:
    """A mask with one or several channels as one map: the maximum over channels (a pixel counts if any of its
    channels does). Shape: (B, 1|C, H, W) -> (B, H, W)."""
    return mask.amax(dim=1)


def upsample_map(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of maps to ``size`` (the input's height and width); values stay within the range of
    the inputs. Shape: (B, h, w) -> (B, H, W)."""
    return F.interpolate(maps.unsqueeze(1), size=tuple(size), mode="bilinear", align_corners=False).squeeze(1)


def downsample_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A mask reduced over channels (max) and adaptive-average-pooled to ``size`` (the feature map's): each cell
    holds the share of its input pixels that are in the mask. Shape: (B, 1|C, H, W) -> (B, h, w)."""
    return F.adaptive_avg_pool2d(reduce_channels(mask).unsqueeze(1), tuple(size)).squeeze(1)
