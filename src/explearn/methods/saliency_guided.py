"""Saliency guided training (Ismail, Corrada Bravo and Feizi, "Improving Deep Learning Interpretability by
Saliency Guided Training", NeurIPS 2021): cross-entropy plus the KL divergence between the outputs on an input and
on a copy whose least salient pixels are replaced by random values. Label-only: it reads no explanation masks."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from explearn.config import check, setting
from explearn.explain.gradients import input_gradients
from explearn.methods.base import METHODS, Batch, Method, OptimHParams, label_loss, step
from explearn.models.base import eval_mode, logits


@dataclass(frozen=True)
class SaliencyGuidedHParams(OptimHParams):
    """Settings of saliency guided training.

    Defaults from the authors' code (github.com/ayaabdelsalam91/saliency_guided_training), whose only published
    image configuration is MNIST: ``mask_fraction`` 0.5 is the README's MNIST command
    (``--featuresDroped 0.5 --RandomMasking``; train_MNIST.py's argparse default is 0.1), and ``lam`` 1 is the
    code's loss, ``loss = Modelloss + KLloss`` without a weight (Scripts/interpretable.py, lines 101-117).
    ``abs_saliency`` False is the code's default (``--abs`` off): the gradient is sorted with its sign.
    """

    lam: float = setting(1.0, "weight of the KL term in CE + lam * KL(p(x) || p(x masked))")
    mask_fraction: float = setting(0.5, "fraction of pixels, the least salient, replaced by random values")
    abs_saliency: bool = setting(False, "sort pixels by |saliency| instead of the signed gradient (--abs)")

    def __post_init__(self) -> None:
        super().__post_init__()
        where = "method 'saliency_guided'"
        check(self.lam >= 0, where, f"lam must be >= 0, got {self.lam}")
        check(0 < self.mask_fraction < 1, where, f"mask_fraction must lie in (0, 1), got {self.mask_fraction}")


def saliency_map(model: nn.Module, x: torch.Tensor, y: torch.Tensor, absolute: bool = False) -> torch.Tensor:
    """Per-pixel saliency: d log p_y(x) / dx with the model in eval mode, averaged over channels, detached.

    The authors' code takes captum's ``Saliency(model).attribute(x, y, abs=False).mean(1)`` in eval mode on a
    network whose output is ``log_softmax`` (Scripts/interpretable.py, lines 64-71; Scripts/cnn.py), i.e. the
    gradient of the label's log-probability; ``absolute`` takes |.| of the channel mean (their ``--abs``).

    Shape:
        x (B, C, H, W), y (B,) -> (B, 1, H, W)

    Raises:
        ConfigError: the classifier modifies m(f(x)) in place (``models.base.logits``).
    """
    with eval_mode(model):
        grad = input_gradients(model, x, target="label", y=y)
    saliency = grad.mean(1, keepdim=True)
    return saliency.abs() if absolute else saliency


def masked_count(fraction: float, n_pixels: int) -> int:
    """k = max(1, int(fraction * n_pixels)), the number of pixels replaced (Helper.get_SingleMask, line 70).

    Raises:
        ValueError: ``fraction`` outside (0, 1).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    return max(1, int(fraction * n_pixels))


def saliency_mask_input(x: torch.Tensor, saliency: torch.Tensor, fraction: float,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """M_k(S(grad), x): x with its k least salient pixels replaced by random values (Ismail et al. 2021,
    Algorithm 1, "masked input"; the authors' Helper.get_SingleMask and fill_SingleMask with maskType
    "randomMask", Scripts/Helper.py lines 66-96).

    Pixels are ranked by ``saliency`` averaged over its channels, ascending (the signed value: pass |saliency| to
    rank by magnitude); ties go to the earlier pixel in raster order. Every channel of a chosen pixel is replaced
    by an independent draw from U[min, max) of that channel of that image. k = ``masked_count(fraction, H * W)``.

    Args:
        x: the inputs (not modified; the result carries x's graph on the pixels it keeps).
        saliency: the saliency of each input feature or pixel.
        fraction: the share of pixels to replace, in (0, 1).
        generator: the source of the random values; None draws from torch's global generator, which
            ``torch.manual_seed`` (and so ``train``'s run seed) fixes. It must live on x's device.

    Returns:
        The masked inputs.

    Shape:
        x (B, C, H, W), saliency (B, 1 or C, H, W) -> (B, C, H, W)

    Raises:
        ValueError: ``fraction`` outside (0, 1), or ``saliency`` of another batch size or image size than x.
    """
    b, _, h, w = x.shape
    if saliency.dim() != 4 or saliency.shape[0] != b or saliency.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"saliency of shape {tuple(saliency.shape)} does not fit inputs of shape {tuple(x.shape)}")
    k = masked_count(fraction, h * w)
    per_pixel = saliency.mean(1).flatten(1)  # (B, H*W)
    lowest = torch.argsort(per_pixel, dim=1, stable=True)[:, :k]  # (B, k)
    chosen = torch.zeros_like(per_pixel, dtype=torch.bool).scatter_(1, lowest, True).view(b, 1, h, w)
    flat = x.detach().flatten(2)  # (B, C, H*W)
    low, high = flat.amin(2)[..., None, None], flat.amax(2)[..., None, None]  # (B, C, 1, 1)
    noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return torch.where(chosen, low + (high - low) * noise, x)


def saliency_kl(logits: torch.Tensor, masked_logits: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(softmax(logits) || softmax(masked_logits)) = sum_k p_k (log p_k - log q_k), differentiable in
    both arguments (Ismail et al. 2021, Algorithm 1's D_KL(f(X) || f(X~)); the authors' code:
    ``KLDivLoss(log_target=True, reduction="batchmean")(masked_out, out)`` on log-softmax outputs, neither
    detached, Scripts/interpretable.py line 109 and train_MNIST.py line 91). Its batch mean is "batchmean".

    Shape:
        logits (B, K), masked_logits (B, K) -> (B,)
    """
    log_p = F.log_softmax(logits, dim=1)
    log_q = F.log_softmax(masked_logits, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(1)


@contextlib.contextmanager
def buffers_kept(model: nn.Module) -> Iterator[None]:
    """Run the block on copies of every buffer of ``model`` (BatchNorm running statistics and their counters) and
    put the originals back after it, so that a forward inside the block leaves no trace in them.

    Copies rather than an in-place restore: a train-mode BatchNorm saves its running statistics for the backward
    pass, and writing the old values back into them would fail that pass of the forwards before the block.
    """
    owners = [(module, name, buf) for module in model.modules()
              for name, buf in module.named_buffers(recurse=False) if buf is not None]
    for module, name, buf in owners:
        setattr(module, name, buf.clone())
    try:
        yield
    finally:
        for module, name, buf in owners:
            setattr(module, name, buf)


@METHODS.register("saliency_guided")
class SaliencyGuided(Method):
    """Saliency guided training (Ismail, Corrada Bravo and Feizi, NeurIPS 2021, Algorithm 1): per batch,
    x~ = x with the ``mask_fraction`` least salient pixels (gradient of log p_y, eval mode, channel mean) replaced
    by uniform values within each image's channel range, then one step on
    CE(f(x), y) + lam * mean_i KL(softmax(f(x_i)) || softmax(f(x~_i))), all parameters, gradients through both
    outputs, x~ detached. It reads no explanation masks.

    It is an interpretability regulariser, not a shortcut remedy: it keeps the most salient features, and when the
    model relies on a shortcut those are the shortcut, which the KL term then teaches the model to rely on alone.
    explearn includes it as the "attention sharpening without annotations" comparison: what sharper saliency buys
    when nobody says where the model should look.

    Forwards: f(x) is the batch's one train-mode forward (BatchNorm statistics advance once, on x); f(x~) also runs
    in train mode, as in the authors' code (Scripts/interpretable.py line 95), on copies of every buffer
    (``buffers_kept``), so BatchNorm normalises x~ by its own batch statistics but its running statistics see x
    alone; dropout draws a second mask there. The saliency takes a third, eval-mode forward and backward. The
    random values come from torch's global generator, which ``train`` seeds with the run seed.

    Raises:
        ConfigError: the model's classifier modifies m(f(x)) in place (``models.base.logits``).
    """

    HParams = SaliencyGuidedHParams
    uses_masks = False

    def __init__(self, model: nn.Module, hparams: SaliencyGuidedHParams, batches_per_epoch: int) -> None:
        super().__init__(model, hparams, batches_per_epoch)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = self.make_optimizer(self.params, hparams.lr)

    def masked_batch(self, batch: Batch) -> torch.Tensor:
        """x~ for the batch on the current model, detached. Shape: -> (B, C, H, W)."""
        hp = self.hparams
        saliency = saliency_map(self.model, batch.x, batch.y, hp.abs_saliency)
        return saliency_mask_input(batch.x.detach(), saliency, hp.mask_fraction).detach()

    def update(self, batch: Batch) -> dict[str, float]:
        masked = self.masked_batch(batch)
        out = logits(self.model, batch.x)  # (B, K), the batch's train-mode forward
        with buffers_kept(self.model):
            masked_out = logits(self.model, masked)  # (B, K)
        ce = label_loss(out, batch.y)
        kl = saliency_kl(out, masked_out).mean()
        norm = step(self.optimizer, ce + self.hparams.lam * kl, self.params)
        return {"ce": ce.item(), "saliency_kl": kl.item(), "grad_norm": norm}
