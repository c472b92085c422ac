"""The paper's method and its "no mapping layer" ablation (Tao and Shokri, "Machine Learning from Explanations",
arXiv 2507.04788).

Stage 1 minimises the cross-entropy over all parameters (learning rate eta1). Stage 2 minimises the feature
misalignment loss ``KL(softmax(f(x')) || softmax(m(f(x))))`` with x' = x * e(x), the target detached, over the
mapping layer m alone (learning rate eta2). The two stages alternate: every batch gets one stage-1 step, and the
stage-2 steps for a block of batches follow that block's stage-1 steps (blocks of 1 batch, k batches, or an epoch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import nn

from explearn.config import check, setting
from explearn.losses.alignment import AlignmentLoss
from explearn.methods.base import (METHODS, Batch, Method, OptimHParams, check_float32, cross_entropy, label_loss,
                                   masked_input, right_reasons, step)
from explearn.methods.stacking import (STACKED_METHODS, BlockLogs, StackedBatch, StackedMethod, UpdateLogs,
                                       per_model)
from explearn.models.base import classify, eval_mode, parameters_of
from explearn.models.mapping import IdentityMapping


@dataclass(frozen=True)
class AlignmentHParams(OptimHParams):
    """Settings of the feature misalignment loss, shared by the two-stage method and joint optimisation."""

    loss: str = setting("kl", "divergence between target and prediction features (explearn list: losses)")
    normalization: str = setting("softmax", "normalisation of each feature vector before the loss")
    axis: str = setting("flat", "softmax axis: flat (whole map), spatial (per channel), channel (per position)")
    fill: float = setting(0.0, "value of the masked-out pixels in x' = x * e + fill * (1 - e)")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.alignment()  # unknown names and invalid combinations fail at construction

    def alignment(self) -> AlignmentLoss:
        return AlignmentLoss(self.loss, self.normalization, self.axis)


@dataclass(frozen=True)
class AlternationHParams(AlignmentHParams):
    """Settings of the two stages' alternation, shared by the two-stage method and its "no mapping layer"
    ablation."""

    lr_ratio: float = setting(1.0, "eta2 / eta1: learning rate of stage 2 relative to stage 1")
    schedule: Literal["batch", "steps", "epoch"] = setting(
        "batch", "alternation: after every batch, after every `schedule_steps` batches, or after every epoch"
    )
    schedule_steps: int = setting(1, "block length in batches when schedule='steps'")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.lr_ratio > 0, "method 'two_stage'", f"lr_ratio must be positive, got {self.lr_ratio}")
        check_float32(self.lr * self.lr_ratio, "lr * lr_ratio (stage 2's learning rate)", "method 'two_stage'")
        check(self.schedule_steps >= 1, "method 'two_stage'", f"schedule_steps must be >= 1, got {self.schedule_steps}")


@dataclass(frozen=True)
class TwoStageHParams(AlternationHParams):
    """Settings of the two-stage method.

    ``order`` is explearn's choice where the paper only says the stages alternate: within each batch, stage 1 then
    stage 2 (each computes f on x), or stage 2 then stage 1 sharing one forward of f(x): stage 2 uses it
    detached (so only m learns), stage 1 keeps its graph and sees m as stage 2 left it. Both are the paper's
    alternation (each batch, stage 2 changes only m, stage 1 changes everything); the second costs one forward
    of f less per batch. With f in train mode for that shared forward, a model with BatchNorm or dropout gives
    stage 2 train-mode features (the target f(x') is always computed in eval mode).
    """

    order: Literal["stage1_first", "stage2_first"] = setting(
        "stage1_first", "within a batch (schedule=batch): stage1_first, or stage2_first sharing one forward of f(x)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.order == "stage1_first" or self.schedule == "batch", "method 'two_stage'",
              f"order={self.order!r} shares one forward of f(x) between the stages of a batch, so it needs "
              f"schedule='batch', got schedule={self.schedule!r}")


@dataclass(frozen=True)
class AlternationSchedule:
    """Which stage runs at each optimisation step of an epoch.

    Batches are taken in blocks of ``block``; each block gets its stage-1 steps (one per batch) and then its
    stage-2 steps (one per batch, on the same batches). A block never spans two epochs.
    """

    block: int
    batches_per_epoch: int

    @classmethod
    def from_hparams(cls, hp: AlternationHParams, batches_per_epoch: int) -> "AlternationSchedule":
        block = {"batch": 1, "steps": hp.schedule_steps, "epoch": batches_per_epoch}[hp.schedule]
        return cls(min(block, batches_per_epoch), batches_per_epoch)

    def order(self) -> list[tuple[int, int]]:
        """(stage, batch index within the epoch) of every step of one epoch, in order."""
        steps: list[tuple[int, int]] = []
        for start in range(0, self.batches_per_epoch, self.block):
            block = range(start, min(start + self.block, self.batches_per_epoch))
            steps += [(1, b) for b in block] + [(2, b) for b in block]
        return steps

    def phase(self, step: int) -> int:
        """The stage (1 or 2) of global optimisation step ``step`` (two steps per batch)."""
        return self.order()[step % (2 * self.batches_per_epoch)][0]

    def flush_after(self, batch_index: int) -> bool:
        """Whether the stage-2 steps of the current block run after the batch ``batch_index`` (within an epoch)."""
        return (batch_index + 1) % self.block == 0 or batch_index + 1 == self.batches_per_epoch


def alignment_target(model: nn.Module, x: torch.Tensor, mask: torch.Tensor, fill: float) -> torch.Tensor:
    """Stage 2's target: f(x') with x' = x * e + fill * (1 - e), the features of the reasons alone, in eval mode
    (no BN updates) and without gradient. Shape: x (B, C, H, W), mask (B, 1|C, H, W) -> f's output (B, ...)."""
    with torch.no_grad(), eval_mode(model):
        return model.features(masked_input(x, mask, fill))


def mapped_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Stage 2's prediction: m(f(x)) with gradients reaching m only (f in eval mode, without gradient)."""
    with torch.no_grad(), eval_mode(model.features):
        z = model.features(x)
    return model.mapping(z)


def own_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Stage 2's prediction without a mapping layer: f(x), with gradients reaching f, in eval mode like the target
    f(x'): BatchNorm statistics advance once per batch (in stage 1), dropout draws no mask, and both sides of the
    loss see the same f. Shape: x (B, C, H, W) -> f's output (B, ...)."""
    with eval_mode(model.features):
        return model.features(x)


@METHODS.register("two_stage")
class TwoStage(Method):
    """The paper's two-stage method: cross-entropy on f, m, c; then feature misalignment on m alone."""

    HParams = TwoStageHParams
    uses_masks = True
    #: which part stage 2 trains
    stage_two_part = "mapping"
    #: stage 2's prediction as a function of (model, x); gradients reach ``stage_two_part`` only
    stage_two_features = staticmethod(mapped_features)

    def __init__(self, model: nn.Module, hparams: AlternationHParams, batches_per_epoch: int) -> None:
        super().__init__(model, hparams, batches_per_epoch)
        self.align = hparams.alignment()
        self.schedule = AlternationSchedule.from_hparams(hparams, batches_per_epoch)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.stage_two_params = parameters_of(model, self.stage_two_part)
        self.optimizer = self.make_optimizer(self.params, hparams.lr)
        self.stage_two_optimizer = (
            self.make_optimizer(self.stage_two_params, hparams.lr * hparams.lr_ratio) if self.stage_two_params else None
        )
        self._pending: list[Batch] = []
        self._batch_index = 0

    def update(self, batch: Batch) -> dict[str, float]:
        if getattr(self.hparams, "order", "stage1_first") == "stage2_first":
            return self.shared_step(batch)
        logs = self.stage_one(batch)
        self._pending.append(batch)
        if self.schedule.flush_after(self._batch_index):
            logs.update(self._flush())
        self._batch_index += 1
        return logs

    def end_epoch(self) -> dict[str, float]:
        logs = self._flush()  # a shorter last epoch (never with the built-in loop) still gets its stage 2
        self._batch_index = 0
        return logs

    def stage_one(self, batch: Batch) -> dict[str, float]:
        """One cross-entropy step on all parameters."""
        loss = cross_entropy(self.model, batch)
        norm = step(self.optimizer, loss, self.params)
        return {"ce": loss.item(), "grad_norm_stage1": norm}

    def shared_step(self, batch: Batch) -> dict[str, float]:
        """``order="stage2_first"``: one forward of f(x) in train mode; stage 2 on it detached (m alone learns),
        then stage 1 on m(f(x)) with the updated m, backpropagating through the same forward of f."""
        z = self.model.features(batch.x)
        logs = self.stage_two(batch, features=z.detach())
        loss = label_loss(classify(self.model, self.model.mapping(z)), batch.y)
        norm = step(self.optimizer, loss, self.params)
        return {"ce": loss.item(), "grad_norm_stage1": norm, **logs}

    def stage_two(self, batch: Batch, features: torch.Tensor | None = None) -> dict[str, float]:
        """One misalignment step on the samples of ``batch`` that have a mask; skipped if none has.

        Args:
            features: f(x) of the whole batch, detached, when the caller computed it (``shared_step``); else
                stage 2 computes its prediction itself (``stage_two_features``).
        """
        right, keep = right_reasons(batch)
        if self.stage_two_optimizer is None or not bool(keep.any()):
            return {}
        x, mask = batch.x[keep], right[keep]
        target = alignment_target(self.model, x, mask, self.hparams.fill)
        prediction = self.stage_two_prediction(x) if features is None else self.model.mapping(features[keep])
        loss = self.align(prediction, target)
        norm = step(self.stage_two_optimizer, loss, self.stage_two_params)
        return {"align_loss": loss.item(), "grad_norm_stage2": norm}

    def stage_two_prediction(self, x: torch.Tensor) -> torch.Tensor:
        """Stage 2's prediction on this model, m(f(x)) with gradients reaching m only (``stage_two_features``)."""
        return self.stage_two_features(self.model, x)

    def _flush(self) -> dict[str, float]:
        logs = [self.stage_two(b) for b in self._pending]
        self._pending = []
        logs = [entry for entry in logs if entry]
        return {k: sum(entry[k] for entry in logs) / len(logs) for k in logs[0]} if logs else {}


@METHODS.register("two_stage_no_mapping")
class TwoStageNoMapping(TwoStage):
    """The paper's "no mapping layer" ablation: the mapping layer is removed (m = identity) and stage 2 updates
    the feature extractor f instead, with loss KL(softmax(f(x')) || softmax(f(x)))."""

    HParams = AlternationHParams  # no `order`: stage 2 changes f, so the stages cannot share a forward of f(x)
    stage_two_part = "features"
    stage_two_features = staticmethod(own_features)

    def __init__(self, model: nn.Module, hparams: AlternationHParams, batches_per_epoch: int) -> None:
        model.mapping = IdentityMapping()
        super().__init__(model, hparams, batches_per_epoch)


@STACKED_METHODS.register("two_stage")
class StackedTwoStage(StackedMethod):
    """``TwoStage``: stage 1 cross-entropy on all parameters, stage 2 misalignment on the mapping layer, in
    ``AlternationSchedule``'s order; each stage with its own optimiser."""

    method_cls = TwoStage

    def __init__(self, net: nn.Module, hparams: TwoStageHParams, batches_per_epoch: int, n_models: int) -> None:
        super().__init__(net, hparams, batches_per_epoch, n_models)
        self.align = hparams.alignment()
        self.schedule = AlternationSchedule.from_hparams(hparams, batches_per_epoch)
        self.optimizer = self.make_optimizer(self.params, hparams.lr)
        stage_two_params = parameters_of(net, self.method_cls.stage_two_part)
        self.stage_two_optimizer = (self.make_optimizer(stage_two_params, hparams.lr * hparams.lr_ratio)
                                    if stage_two_params else None)
        self.prediction: Callable = self.method_cls.stage_two_features
        self._pending: list[StackedBatch] = []
        self._batch_index = 0

    def update(self, batch: StackedBatch) -> UpdateLogs:
        if getattr(self.hparams, "order", "stage1_first") == "stage2_first":
            return self.shared_step(batch)
        ce = self.label_losses(batch)
        norm = self.optimizer.minimize(ce.sum())
        logs: UpdateLogs = [{"ce": ce.detach(), "grad_norm_stage1": norm}]
        self._pending.append(batch)
        if self.schedule.flush_after(self._batch_index):
            logs += self._flush()
        self._batch_index += 1
        return logs

    def end_epoch(self) -> UpdateLogs:
        logs = self._flush()
        self._batch_index = 0
        return logs

    def shared_step(self, batch: StackedBatch) -> UpdateLogs:
        """``TwoStage.shared_step``: one forward of f(x) for both stages, stage 2 first on it detached."""
        z = self.net.features(batch.get("x"))
        step_two = self.stage_two(batch, features=z.detach())
        logits = batch.per_model(classify(self.net, self.net.mapping(z)))  # (S, B, K)
        ce = per_model(label_loss, logits, batch.per_model(batch.get("y")))
        norm = self.optimizer.minimize(ce.sum())
        logs: UpdateLogs = [{"ce": ce.detach(), "grad_norm_stage1": norm}]
        return logs + ([BlockLogs([step_two])] if step_two is not None else [])

    def stage_two(self, batch: StackedBatch,
                  features: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor] | None:
        """One misalignment step of every model whose batch has a mask (``TwoStage.stage_two``); None if none has.

        A model's loss is the mean over the samples with a mask, as ``TwoStage`` computes it on ``x[keep]``.
        ``features``: f(x) of the flattened batch, detached (``shared_step``).
        """
        if self.stage_two_optimizer is None or not bool(batch.any_right.any()):
            return None
        x, right, keep = batch.get("x"), batch.get("right"), batch.get("has_right")
        target = alignment_target(self.net, x, right, self.hparams.fill)
        prediction = self.prediction(self.net, x) if features is None else self.net.mapping(features)
        per_sample = batch.per_model(self.align.per_sample(prediction, target))  # (S, B)
        if batch.all_right:
            loss = per_model(torch.mean, per_sample)
        else:  # the mean over the samples with a mask (0 for a model without any: it does not step)
            keep = batch.per_model(keep)
            if per_sample.device.type == "cpu":  # as TwoStage: the mean of the kept samples' losses
                loss = torch.stack([values[kept].mean() if any_ else values.new_zeros(())
                                    for values, kept, any_ in zip(per_sample, keep, batch.any_right.tolist())])
            else:
                loss = torch.where(keep, per_sample, 0.0).sum(1) / keep.sum(1).clamp_min(1)
        active = None if bool(batch.any_right.all()) else batch.any_right
        norm = self.stage_two_optimizer.minimize(loss.sum(), active)
        return {"align_loss": loss.detach(), "grad_norm_stage2": norm}, batch.any_right

    def _flush(self) -> UpdateLogs:
        steps = [s for s in (self.stage_two(b) for b in self._pending) if s is not None]
        self._pending = []
        return [BlockLogs(steps)] if steps else []


@STACKED_METHODS.register("two_stage_no_mapping")
class StackedTwoStageNoMapping(StackedTwoStage):
    """``TwoStageNoMapping``: stage 2 trains the feature extractor (the models come without a mapping layer)."""

    method_cls = TwoStageNoMapping
