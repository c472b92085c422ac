"""Label-only training: cross-entropy on the whole model. The baseline every method is compared with."""

from __future__ import annotations

from torch import nn

from explearn.methods.base import METHODS, Batch, Method, OptimHParams, cross_entropy, step
from explearn.methods.stacking import STACKED_METHODS, StackedBatch, StackedMethod, UpdateLogs


@METHODS.register("standard")
class Standard(Method):
    """Cross-entropy only (empirical risk minimisation); ignores the explanation masks."""

    HParams = OptimHParams

    def __init__(self, model: nn.Module, hparams: OptimHParams, batches_per_epoch: int) -> None:
        super().__init__(model, hparams, batches_per_epoch)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = self.make_optimizer(self.params, hparams.lr)

    def update(self, batch: Batch) -> dict[str, float]:
        loss = cross_entropy(self.model, batch)
        norm = step(self.optimizer, loss, self.params)
        return {"ce": loss.item(), "grad_norm": norm}


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
