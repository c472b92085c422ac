"""The methods that train S models at once: each the stacked counterpart of a method in ``explearn.methods``,
built from that method's own loss functions, with the same steps in the same order.

A stacked method gets batches flattened over the models (``StackedBatch``: rows i * B to (i + 1) * B are model
i's batch), computes each model's loss as a vector (S,), and minimises their sum (see ``optim``). Its logs are
(S,) tensors, turned into floats once per epoch by the trainer.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from explearn.methods.base import OptimHParams, label_loss
from explearn.methods.rrr import RRR, RRRHParams, rrr_forward, rrr_objective
from explearn.methods.standard import Standard
from explearn.methods.two_stage import (AlternationSchedule, TwoStage, TwoStageHParams, TwoStageNoMapping,
                                        alignment_target)
from explearn.models.base import classify, parameters_of
from explearn.registry import Registry
from explearn.vectorized.optim import StackedOptimizer, make_stacked_optimizer

#: method name -> its stacked counterpart
STACKED_METHODS: Registry = Registry("vectorised method")


@dataclass(frozen=True)
class StackedBatch:
    """One step's batches of all S models, gathered on demand from per-sample tensors of the training data.

    Fields (``get``): ``x`` images, ``y`` labels, ``right`` / ``has_right`` the right-reason masks and flags
    (``methods.base.right_reasons``), ``wrong`` / ``has_wrong`` the wrong-reason ones (``wrong_reasons``), all
    computed once per training set (they are per-sample, so equal to what the methods compute per batch).
    A field comes flattened over the models: (S * B, ...), model i's batch in rows i * B to (i + 1) * B.

    Args:
        data: field name -> tensor over all training samples (on the device).
        index: (S * B,) rows of ``data``, model-major.
        n_models: S.
        any_right: (S,) bool on the CPU: which models' batches have a right-reason mask (no device sync).
        all_right: whether every sample of every batch has one.
    """

    data: dict[str, torch.Tensor]
    index: torch.Tensor
    n_models: int
    any_right: torch.Tensor
    all_right: bool

    def get(self, name: str) -> torch.Tensor:
        """One field of the batch, (S * B, ...) (images and masks in channels-last layout, as ``train`` has them)."""
        out = self.data[name][self.index]
        return out.contiguous(memory_format=torch.channels_last) if out.dim() == 4 else out

    def per_model(self, t: torch.Tensor) -> torch.Tensor:
        """(S * B, ...) -> (S, B, ...)."""
        return t.unflatten(0, (self.n_models, -1))


@dataclass
class BlockLogs:
    """The logs of a block of steps that a model may or may not take (stage 2): per model, the mean over the
    steps it took, and no entry for a model that took none (as ``TwoStage._flush``). ``steps``: (logs, active)
    per step, logs of shape (S,) and active (S,) bool on the CPU."""

    steps: list[tuple[dict[str, torch.Tensor], torch.Tensor]]


def per_model(fn: Callable[..., Any], *args: torch.Tensor) -> Any:
    """``fn`` on each model's slice of ``args`` (each (S, ...)), results stacked (S, ...); tuples of results
    become tuples of stacked tensors. On CPU a loop over the models, so that each model's numbers come from the
    same arithmetic as in ``train`` (vmap's batched reductions sum in another order); elsewhere ``torch.vmap``
    (one kernel for all models instead of S)."""
    if args[0].device.type != "cpu" and len(args[0]) > 1:
        return torch.vmap(fn)(*args)
    out = [fn(*slices) for slices in zip(*args)]
    if isinstance(out[0], tuple):
        return tuple(torch.stack(parts) for parts in zip(*out))
    return torch.stack(out)


#: What one update returns: plain logs (every model has each key) and blocks, merged in order.
UpdateLogs = list["dict[str, torch.Tensor] | BlockLogs"]


class StackedMethod:
    """Base: S models as one stacked model, the method's settings, and ``update`` / ``end_epoch``.

    Args:
        net: the stacked models (``stacked.stack_models``).
        hparams: the method's settings (shared by every model).
        batches_per_epoch: as for ``Method``.
        n_models: S.
    """

    method_cls: ClassVar[type]

    def __init__(self, net: nn.Module, hparams: OptimHParams, batches_per_epoch: int, n_models: int) -> None:
        self.net = net
        self.hparams = hparams
        self.batches_per_epoch = batches_per_epoch
        self.n_models = n_models
        self.params = [p for p in net.parameters() if p.requires_grad]

    def update(self, batch: StackedBatch) -> UpdateLogs:
        raise NotImplementedError

    def end_epoch(self) -> UpdateLogs:
        return []

    def make_optimizer(self, params: list[torch.Tensor], lr: float) -> StackedOptimizer:
        return make_stacked_optimizer(self.hparams.optimizer, params, lr, self.hparams.weight_decay, self.n_models)

    def label_losses(self, batch: StackedBatch) -> torch.Tensor:
        """Each model's mean cross-entropy on its batch, (S,)."""
        logits = batch.per_model(self.net(batch.get("x")))  # (S, B, K)
        return per_model(label_loss, logits, batch.per_model(batch.get("y")))


@STACKED_METHODS.register("standard")
class StackedStandard(StackedMethod):
    """``Standard``: cross-entropy on all parameters."""

    method_cls = Standard

    def __init__(self, net: nn.Module, hparams: OptimHParams, batches_per_epoch: int, n_models: int) -> None:
        super().__init__(net, hparams, batches_per_epoch, n_models)
        self.optimizer = self.make_optimizer(self.params, hparams.lr)

    def update(self, batch: StackedBatch) -> UpdateLogs:
        ce = self.label_losses(batch)
        norm = self.optimizer.minimize(ce.sum())
        return [{"ce": ce.detach(), "grad_norm": norm}]


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


@STACKED_METHODS.register("rrr")
class StackedRRR(StackedMethod):
    """``RRR``: cross-entropy plus lam times the input-gradient penalty on the wrong reasons, by double backprop.

    The input gradient of the flattened batch comes from one ``autograd.grad`` of the summed log-probabilities of
    all models (``rrr_forward`` on the stacked model): sample i's gradient is that of its own model.
    """

    method_cls = RRR

    def __init__(self, net: nn.Module, hparams: RRRHParams, batches_per_epoch: int, n_models: int) -> None:
        super().__init__(net, hparams, batches_per_epoch, n_models)
        self.optimizer = self.make_optimizer(self.params, hparams.lr)

    def update(self, batch: StackedBatch) -> UpdateLogs:
        logits, penalty = rrr_forward(self.net, batch.get("x"), batch.get("wrong"))  # one forward, as ``RRR``
        ce = per_model(label_loss, batch.per_model(logits), batch.per_model(batch.get("y")))  # (S,)
        penalty = batch.per_model(penalty)  # (S, B)
        objective = functools.partial(rrr_objective, lam=self.hparams.lam)
        loss, penalty = per_model(objective, ce, penalty, batch.per_model(batch.get("has_wrong")))
        norm = self.optimizer.minimize(loss.sum())
        return [{"ce": ce.detach(), "rrr_penalty": penalty.detach(), "grad_norm": norm}]
