"""What the stacked (seed-vectorised) form of a method is built from: S models trained at once, each the stacked
counterpart of a method, written in the method's own file beside it (``standard.py``, ``two_stage.py``, ``rrr.py``)
from its own loss functions, with the same steps in the same order; ``explearn.vectorized.train_many`` drives them.

A stacked method gets batches flattened over the models (``StackedBatch``: rows i * B to (i + 1) * B are model
i's batch), computes each model's loss as a vector (S,), and minimises their sum (see ``optim``). Its logs are
(S,) tensors, turned into floats once per epoch by the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from explearn.methods.base import OptimHParams, label_loss
from explearn.methods.stacked_optim import StackedOptimizer, make_stacked_optimizer
from explearn.registry import Registry

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
    if _vmap(args[0]):
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


def _vmap(first: torch.Tensor) -> bool:
    """Whether ``per_model`` uses ``torch.vmap``: off the CPU, for more than one model (a test turns it on)."""
    return first.device.type != "cpu" and len(first) > 1
