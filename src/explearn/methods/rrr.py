"""Right for the Right Reasons (RRR, "GradReg" in the paper; Ross, Hughes and Doshi-Velez, IJCAI 2017):
cross-entropy plus a penalty on input gradients that fall on the wrong reasons."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from explearn.config import check, setting
from explearn.explain.gradients import log_prob_gradients
from explearn.methods.base import METHODS, Batch, Method, OptimHParams, label_loss, step, wrong_reasons
from explearn.methods.stacking import STACKED_METHODS, StackedBatch, StackedMethod, UpdateLogs, per_model
from explearn.models.base import logits


@dataclass(frozen=True)
class RRRHParams(OptimHParams):
    """Settings of RRR."""

    lam: float = setting(100.0, "weight of the input-gradient penalty")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.lam >= 0, "method 'rrr'", f"lam must be >= 0, got {self.lam}")


def rrr_penalty(model: nn.Module, x: torch.Tensor, wrong: torch.Tensor) -> torch.Tensor:
    """Per-sample sum over input features of (W * d/dx sum_k log p_k)^2, differentiable in the weights.

    Args:
        wrong: the wrong-reason mask W (1 where the model must not look), e.g. 1 - right-reason mask.

    Shape:
        x (B, C, H, W), wrong (B, 1 or C, H, W) -> (B,)
    """
    return rrr_forward(model, x, wrong)[1]


def rrr_forward(model: nn.Module, x: torch.Tensor, wrong: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward of the model on x: its logits and ``rrr_penalty``'s per-sample penalty from them, so that the
    cross-entropy and the penalty share the forward (train-mode BatchNorm statistics advance once per batch,
    dropout draws one mask for both).

    Shape:
        x (B, C, H, W), wrong (B, 1 or C, H, W) -> logits (B, K), penalty (B,)
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = logits(model, x)
        grad = log_prob_gradients(out, x, target="sum_log_prob", create_graph=True)
    return out, input_gradient_penalty(grad, wrong)


def input_gradient_penalty(grad: torch.Tensor, wrong: torch.Tensor) -> torch.Tensor:
    """Per-sample sum of (W * grad)^2 (Ross et al. 2017, eq. 1's second term without lambda).

    Shape:
        grad (B, C, H, W), wrong (B, 1 or C, H, W) -> (B,)
    """
    return (wrong * grad).pow(2).flatten(1).sum(1)


def rrr_objective(ce: torch.Tensor, penalty: torch.Tensor, has: torch.Tensor,
                  lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """RRR's loss from the cross-entropy and the per-sample penalties: CE + lam * (sum of the penalties of the
    samples with a mask) / batch size. Returns (loss, mean penalty).

    Shape:
        ce scalar, penalty (B,) (``rrr_penalty``), has (B,) bool -> two scalars
    """
    penalty = (penalty * has).sum() / penalty.shape[0]  # samples without a mask: no penalty
    return ce + lam * penalty, penalty


@METHODS.register("rrr")
class RRR(Method):
    """CE + lam * mean over samples with a mask of sum(W * d/dx sum_k log p_k)^2 (Ross et al. 2017), W the
    wrong-reason mask (the complement of the right-reason mask e where only e is given)."""

    HParams = RRRHParams
    uses_masks = True

    def __init__(self, model: nn.Module, hparams: RRRHParams, batches_per_epoch: int) -> None:
        super().__init__(model, hparams, batches_per_epoch)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = self.make_optimizer(self.params, hparams.lr)

    def update(self, batch: Batch) -> dict[str, float]:
        wrong, has = wrong_reasons(batch)
        out, per_sample = rrr_forward(self.model, batch.x, wrong)  # one forward for both terms
        ce = label_loss(out, batch.y)
        loss, penalty = rrr_objective(ce, per_sample, has, self.hparams.lam)
        norm = step(self.optimizer, loss, self.params)
        return {"ce": ce.item(), "rrr_penalty": penalty.item(), "grad_norm": norm}


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
