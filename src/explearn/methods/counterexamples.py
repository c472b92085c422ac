"""Counterexamples (Teso and Kersting, "Explanatory Interactive Machine Learning", AIES 2019): data augmentation
instead of a gradient penalty. Each sample with a wrong-reason mask gets copies whose wrong-reason pixels are
replaced by random noise, with the same label, so that the confounder stops predicting the label."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from explearn.config import check, setting
from explearn.methods.base import METHODS, Batch, Method, OptimHParams, step, wrong_reasons
from explearn.models.base import logits


@dataclass(frozen=True)
class CounterexamplesHParams(OptimHParams):
    """Settings of counterexample augmentation. There is no loss weight: the copies enter the cross-entropy like
    the originals, so ``copies`` sets their share of the batch."""

    copies: int = setting(1, "noisy copies of each sample with a wrong-reason mask added to its batch")
    noise_range: tuple[float, float] = setting((0.0, 1.0), "[low, high] of the uniform noise on wrong-reason pixels")

    def __post_init__(self) -> None:
        super().__post_init__()
        where = "method 'counterexamples'"
        check(self.copies >= 1, where, f"copies must be >= 1, got {self.copies}")
        low, high = self.noise_range
        check(low <= high, where, f"noise_range must be (low, high) with low <= high, got {self.noise_range}")


def counterexamples(x: torch.Tensor, wrong: torch.Tensor, low: float = 0.0, high: float = 1.0,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """x with its wrong-reason pixels replaced by uniform noise in [low, high]: x * (1 - W) + W * noise (a soft
    mask blends). A one-channel mask applies to every channel; each channel gets its own noise.

    Shape:
        x (B, C, H, W), wrong (B, 1|C, H, W) -> (B, C, H, W)
    """
    noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * (high - low) + low
    return x * (1.0 - wrong) + wrong * noise


@METHODS.register("counterexamples")
class Counterexamples(Method):
    """Counterexamples (Teso and Kersting 2019): cross-entropy on the batch together with ``copies`` copies of
    each of its samples that have a wrong-reason mask W, their W pixels replaced by uniform noise, same label;
    W is the complement of the right-reason mask where only that is given. No gradient penalty.

    The noise is drawn from torch's global generator, which ``train`` seeds with the run seed."""

    HParams = CounterexamplesHParams
    uses_masks = True

    def __init__(self, model: nn.Module, hparams: CounterexamplesHParams, batches_per_epoch: int) -> None:
        super().__init__(model, hparams, batches_per_epoch)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = self.make_optimizer(self.params, hparams.lr)

    def augment(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch followed by ``copies`` noisy copies of its samples with a wrong-reason mask (copy by copy).

        Shape:
            -> x (B + copies * n_W, C, H, W), y (B + copies * n_W,)
        """
        wrong, has = wrong_reasons(batch)
        if not bool(has.any()):
            return batch.x, batch.y
        low, high = self.hparams.noise_range
        x, w = batch.x[has], wrong[has]
        copies = [counterexamples(x, w, low, high) for _ in range(self.hparams.copies)]
        y = batch.y[has].repeat(self.hparams.copies)
        return torch.cat([batch.x, *copies]), torch.cat([batch.y, y])

    def update(self, batch: Batch) -> dict[str, float]:
        x, y = self.augment(batch)
        per_sample = F.cross_entropy(logits(self.model, x), y, reduction="none")
        loss = per_sample.mean()  # the mean over originals and copies together
        logs = {"ce": loss.item(), "counterexamples": float(len(y) - len(batch.y))}
        if len(y) > len(batch.y):  # how well the copies, whose confounder is noise, are classified
            logs["ce_counterexamples"] = per_sample[len(batch.y):].mean().item()
        logs["grad_norm"] = step(self.optimizer, loss, self.params)
        return logs
