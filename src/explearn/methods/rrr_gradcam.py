"""RRR-G, right for the right reasons on Grad-CAM (Schramowski et al., "Making deep neural networks right for the
right scientific reasons by interacting with their explanations", Nature Machine Intelligence 2020): cross-entropy
plus a penalty on the normalised Grad-CAM map of the true class inside the wrong-reason mask."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from explearn.config import check, setting
from explearn.explain.gradcam import downsample_mask, grad_cam_from, mapped_forward, normalize_cam
from explearn.methods.base import METHODS, Batch, Method, OptimHParams, step, wrong_reasons


class GradCAMTerm(Method):
    """Shared by the Grad-CAM methods: cross-entropy + ``lam`` * a per-sample term on the true class's Grad-CAM
    map and a mask, averaged over the samples that have the mask. Subclasses name the mask (``reasons``), the
    term (``term``) and its log key (``log_key``)."""

    uses_masks = True
    log_key = ""

    def __init__(self, model: nn.Module, hparams: OptimHParams, batches_per_epoch: int) -> None:
        super().__init__(model, hparams, batches_per_epoch)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = self.make_optimizer(self.params, hparams.lr)

    def reasons(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def term(self, cam: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def update(self, batch: Batch) -> dict[str, float]:
        mapped, logits = mapped_forward(self.model, batch.x)  # one forward for the cross-entropy and Grad-CAM
        ce = F.cross_entropy(logits, batch.y)
        loss, logs = ce, {"ce": ce.item()}
        mask, has = self.reasons(batch)
        if bool(has.any()):
            cam = grad_cam_from(mapped, logits, batch.y, create_graph=True)
            value = self.term(cam[has], mask[has]).mean()  # samples without a mask: no term
            loss = ce + self.hparams.lam * value
            logs[self.log_key] = value.item()
        logs["grad_norm"] = step(self.optimizer, loss, self.params)
        return logs


@dataclass(frozen=True)
class RRRGradCAMHParams(OptimHParams):
    """Settings of RRR-G.

    ``lam`` = 0.1 by default, from the scale of the terms at initialisation on the triangle benchmark (small_cnn
    defaults, 32x32 images, 4x4 feature map, 3 seeds): the penalty is 1.9-3.2 per sample (the normalised map peaks
    at 1 and W covers about 97 % of the image), the cross-entropy 0.66-0.74, and the penalty's gradient norm is
    50-150 times the cross-entropy's. lam = 0.1 puts lam * penalty at 0.2-0.3, just under the cross-entropy (the
    balance that works for RRR, METHOD.md section 3); lam = 10 lets the penalty dominate (in a 2-seed, 20-epoch
    check at 500 samples: validation accuracy 0.81 at lam 0.1, 0.75 at 1, 0.60 at 10, label-only 0.75). The
    penalty sums over the map's cells, so a larger map (f ending earlier) wants a smaller ``lam``.
    """

    lam: float = setting(0.1, "weight of the Grad-CAM penalty in CE + lam * sum((W_down * cam)^2)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.lam >= 0, "method 'rrr_gradcam'", f"lam must be >= 0, got {self.lam}")


def gradcam_penalty(cam: torch.Tensor, wrong: torch.Tensor) -> torch.Tensor:
    """Per-sample sum over the map's cells of (W_down * normalised cam)^2, W_down the wrong-reason mask reduced
    over channels (max) and average-pooled to the map's size.

    Shape:
        cam (B, h, w) unnormalised Grad-CAM, wrong (B, 1|C, H, W) -> (B,)
    """
    w = downsample_mask(wrong, tuple(cam.shape[-2:]))
    return (w * normalize_cam(cam)).pow(2).flatten(1).sum(1)


@METHODS.register("rrr_gradcam")
class RRRGradCAM(GradCAMTerm):
    """RRR-G (Schramowski et al. 2020): CE + lam * mean over samples with a wrong-reason mask of
    sum((W_down * normalised Grad-CAM of the true class)^2), Grad-CAM on m(f(x)) and differentiable in the
    weights; W is the complement of the right-reason mask where only that is given.

    Caveat: the penalty is also 0 when the map is 0 everywhere (relu of a negative weighted sum), and training
    finds that route. On triangles (300 samples, 6 epochs, seed 0) the true class's map is 0 on every cell for
    50 % of the training images at lam 0.1 and for 100 % at lam 1 (0 % after label-only training), so a low
    ``gradcam_penalty`` does not show that the model looks at the right reasons."""

    HParams = RRRGradCAMHParams
    log_key = "gradcam_penalty"

    def reasons(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return wrong_reasons(batch)

    def term(self, cam: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return gradcam_penalty(cam, mask)
