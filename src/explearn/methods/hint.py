"""HINT, Human Importance-aware Network Tuning (Selvaraju et al., "Taking a HINT: Leveraging Explanations to Make
Vision and Language Models More Grounded", ICCV 2019): cross-entropy plus a reward for Grad-CAM maps that match
the right-reason masks, as a mean squared error between the two."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from explearn.config import check, setting
from explearn.explain.gradcam import normalize_cam, reduce_channels, upsample_map
from explearn.methods.base import METHODS, Batch, OptimHParams, right_reasons
from explearn.methods.rrr_gradcam import GradCAMTerm


@dataclass(frozen=True)
class HINTHParams(OptimHParams):
    """Settings of HINT.

    ``lam`` = 1 by default, from the scale of the terms at initialisation on the triangle benchmark (small_cnn
    defaults, 32x32 images, 3 seeds): the MSE between the normalised, upsampled Grad-CAM map and the mask is
    0.14-0.20 (the triangle covers about 3 % of the image), the cross-entropy 0.66-0.74, and the MSE's gradient
    norm is 3-9 times the cross-entropy's. lam = 1 keeps the term's value under the cross-entropy while its
    gradient is of the same order; a much larger weight lets the MSE dominate before the classifier has learnt
    anything (in a 2-seed, 20-epoch check at 500 samples: validation accuracy 0.78 at lam 0.3, 0.80 at 1, 0.78 at
    3, 0.77 at 10, label-only 0.75).
    """

    lam: float = setting(1.0, "weight of the Grad-CAM/mask mean squared error in CE + lam * MSE")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.lam >= 0, "method 'hint'", f"lam must be >= 0, got {self.lam}")


def hint_loss(cam: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Per-sample mean over input pixels of (upsampled normalised cam - R)^2, R the right-reason mask reduced
    over channels (max).

    Shape:
        cam (B, h, w) unnormalised Grad-CAM, right (B, 1|C, H, W) -> (B,)
    """
    r = reduce_channels(right)
    up = upsample_map(normalize_cam(cam), tuple(r.shape[-2:]))
    return (up - r).pow(2).flatten(1).mean(1)


@METHODS.register("hint")
class HINT(GradCAMTerm):
    """HINT (Selvaraju et al. 2019): CE + lam * mean over samples with a right-reason mask R of
    MSE(upsample(normalised Grad-CAM of the true class), R), Grad-CAM on m(f(x)) and differentiable in the
    weights; R is the complement of the wrong-reason mask where only that is given."""

    HParams = HINTHParams
    log_key = "hint_loss"

    def reasons(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return right_reasons(batch)

    def term(self, cam: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return hint_loss(cam, mask)
