"""The contract every training method follows, and the pieces methods share.

A method owns its optimisers and everything stage-specific; the training loop only calls ``update(batch)``
once per batch, ``end_epoch()`` after each epoch and ``predict(x)`` to evaluate (the DomainBed contract).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from explearn.config import check, setting
from explearn.models.base import check_model, eval_mode, logits
from explearn.registry import Registry

METHODS: Registry = Registry("method")


@dataclass(frozen=True)
class Batch:
    """One minibatch. Shape: x (B, C, H, W), y (B,), mask and wrong_mask (B, 1 or C, H, W), has_mask and
    has_wrong_mask (B,). ``mask`` holds right reasons, ``wrong_mask`` wrong reasons (None: no sample has one);
    methods read them through ``right_reasons`` / ``wrong_reasons``."""

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor
    has_mask: torch.Tensor
    wrong_mask: torch.Tensor | None = None
    has_wrong_mask: torch.Tensor | None = None


def right_reasons(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-reason masks and which samples have one: the right-reason mask where given, else the complement of
    the wrong-reason mask (everything but the confounder). Shape: (B, 1|C, H, W), (B,)."""
    return _reasons(batch.mask, batch.has_mask, batch.wrong_mask, batch.has_wrong_mask)


def wrong_reasons(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Wrong-reason masks and which samples have one: the wrong-reason mask where given, else the complement of
    the right-reason mask (everything but the reason). Shape: (B, 1|C, H, W), (B,)."""
    if batch.wrong_mask is None:
        return 1.0 - batch.mask, batch.has_mask
    return _reasons(batch.wrong_mask, batch.has_wrong_mask, batch.mask, batch.has_mask)


def _reasons(own: torch.Tensor, has_own: torch.Tensor, other: torch.Tensor | None,
             has_other: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    if other is None or has_other is None or not bool((has_other & ~has_own).any()):
        return own, has_own
    convert = (has_other & ~has_own)[:, None, None, None]
    return torch.where(convert, 1.0 - other, own), has_own | has_other


@dataclass(frozen=True)
class OptimHParams:
    """Optimiser settings shared by every method."""

    lr: float = setting(1e-3, "learning rate of the label loss (eta1 in the paper)")
    optimizer: Literal["adam", "sgd"] = setting("adam", "optimiser of every stage (SGD uses momentum 0.9)")
    weight_decay: float = setting(0.0, "L2 weight decay")

    def __post_init__(self) -> None:
        check(self.lr > 0, "method settings", f"lr must be positive, got {self.lr}")
        check(self.weight_decay >= 0, "method settings", f"weight_decay must be >= 0, got {self.weight_decay}")
        for key in ("lr", "weight_decay"):  # the optimisers multiply float32 weights by them
            check_float32(getattr(self, key), key)


#: the largest float32: a learning rate or weight decay beyond it cannot be applied to float32 weights
FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def check_float32(value: float, key: str, where: str = "method settings") -> None:
    """Raise a ConfigError unless ``value`` fits a float32 (the optimisers' arithmetic on float32 weights)."""
    check(abs(value) <= FLOAT32_MAX, where, f"{key} = {value:g} is beyond the float32 range (about 3.4e38) the "
                                            "weights are stored in; no optimiser step can use it")


class Method:
    """Base class: a model, its optimisers, and one training step per batch.

    Subclasses set ``HParams`` (a dataclass of documented settings) and implement ``update``.

    Args:
        model: a three-part model (features, mapping, classifier); the method trains it in place.
        hparams: an instance of the subclass's ``HParams``.
        batches_per_epoch: how many ``update`` calls make an epoch (schedules may need it).
    """

    HParams: ClassVar[type] = OptimHParams
    #: True if the method uses explanation masks (and so needs some training samples to have one).
    uses_masks: ClassVar[bool] = False

    def __init__(self, model: nn.Module, hparams: OptimHParams, batches_per_epoch: int) -> None:
        self.model = check_model(model)
        self.hparams = hparams
        self.batches_per_epoch = batches_per_epoch

    def update(self, batch: Batch) -> dict[str, float]:
        """Train on one batch; return scalar logs keyed like ``ce`` or ``align_loss``."""
        raise NotImplementedError

    def end_epoch(self) -> dict[str, float]:
        """Called after the last batch of each epoch; returns logs (default: none)."""
        return {}

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the model in eval mode. Shape: (B, C, H, W) -> (B, K)."""
        with eval_mode(self.model):
            return logits(self.model, x)

    def make_optimizer(self, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        hp = self.hparams
        if hp.optimizer == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=hp.weight_decay)
        return torch.optim.Adam(params, lr=lr, weight_decay=hp.weight_decay)


def masked_input(x: torch.Tensor, mask: torch.Tensor, fill: float) -> torch.Tensor:
    """x' = x * e + fill * (1 - e): the input reduced to its reasons. Shape: x (B, C, H, W), mask (B, 1|C, H, W)."""
    return x * mask + fill * (1.0 - mask)


def label_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of logits (B, K) against labels (B,): the label loss of every method (a pure function of
    the logits, so that the seed-vectorised trainer, ``explearn.vectorized``, computes it the same way)."""
    return F.cross_entropy(logits, y)


def cross_entropy(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Mean cross-entropy of the model on the batch's labels."""
    return label_loss(logits(model, batch.x), batch.y)


def grad_norm(params: list[nn.Parameter]) -> float:
    """Euclidean norm of the gradients currently stored in ``params`` (0 where there is none)."""
    norms = [p.grad.detach().norm() for p in params if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


def step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, params: list[nn.Parameter]) -> float:
    """zero_grad, backward, step; returns the gradient norm over ``params`` before the step. Only the gradients of
    ``params`` are computed (an input that requires grad, as in RRR, gets none)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward(inputs=params)
    norm = grad_norm(params)
    optimizer.step()
    return norm
