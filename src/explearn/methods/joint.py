"""Joint optimisation, the paper's other ablation (Tao and Shokri 2025, appendix C): cross-entropy plus lambda
times the feature misalignment loss, summed and minimised over all parameters with one optimiser."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from explearn.config import check, setting
from explearn.methods.base import METHODS, Batch, Method, masked_input, right_reasons, step
from explearn.methods.two_stage import AlignmentHParams
from explearn.models.base import eval_mode, run_parts


@dataclass(frozen=True)
class JointHParams(AlignmentHParams):
    """Settings of joint optimisation."""

    lam: float = setting(1.0, "weight of the misalignment loss in CE + lam * misalignment")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.lam >= 0, "method 'joint'", f"lam must be >= 0, got {self.lam}")


@METHODS.register("joint")
class Joint(Method):
    """CE(c(m(f(x))), y) + lam * KL(softmax(f(x')) || softmax(m(f(x)))) over all parameters; target detached."""

    HParams = JointHParams
    uses_masks = True

    def __init__(self, model: nn.Module, hparams: JointHParams, batches_per_epoch: int) -> None:
        super().__init__(model, hparams, batches_per_epoch)
        self.align = hparams.alignment()
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = self.make_optimizer(self.params, hparams.lr)

    def update(self, batch: Batch) -> dict[str, float]:
        out = run_parts(self.model, batch.x)
        ce = F.cross_entropy(out.logits, batch.y)
        loss, logs = ce, {"ce": ce.item()}
        right, keep = right_reasons(batch)
        if bool(keep.any()):
            with torch.no_grad(), eval_mode(self.model):
                target = self.model.features(masked_input(batch.x[keep], right[keep], self.hparams.fill))
            align = self.align(out.mapped[keep], target)
            loss = ce + self.hparams.lam * align
            logs["align_loss"] = align.item()
        logs["grad_norm"] = step(self.optimizer, loss, self.params)
        return logs
