"""Adam and SGD over stacked parameters (S models in one (S, ...) tensor), with a step count per model.

Both algorithms are elementwise: every number of a parameter is updated from its own gradient and state alone,
with scalars (learning rate, betas, bias corrections) that depend only on the step count. So one update of the
stacked tensor is, slice by slice, each model's own update, as long as each model's gradient is its own. The
caller makes sure of that by differentiating the *sum* of the models' losses: model i's loss depends only on
slice i, so d(sum_j loss_j)/d(theta_i) = d(loss_i)/d(theta_i).

The formulas are those of ``torch.optim.Adam`` / ``torch.optim.SGD`` (single-tensor path, the one PyTorch takes on
CPU), op for op, so on CPU each slice gets bit-identical updates to a per-model ``torch.optim`` optimiser
(``tests/test_vectorized.py`` checks this); they run as ``torch._foreach_*`` ops, a few fused kernels on a GPU. What ``torch.optim`` cannot do over one stacked tensor is skip a model:
its step count is one number per tensor. Stage 2 of the two-stage method skips a batch without any explanation
mask (``TwoStage.stage_two``), which with partial masks happens to some models and not others; here the step
count is per model and ``step(..., active=...)`` leaves the inactive models untouched.
"""

from __future__ import annotations

from typing import Sequence

import torch


def per_model_grad_norm(grads: Sequence[torch.Tensor | None], n_models: int) -> torch.Tensor:
    """Euclidean norm of each model's gradient over all its parameters: ``methods.base.grad_norm`` per model, with
    its arithmetic (the norm of each parameter's gradient, then the norm of those norms).

    Shape:
        grads: (S, ...) each (None: no gradient) -> (S,)
    """
    given = [g.detach() for g in grads if g is not None]
    if not given:
        return torch.zeros(n_models)
    # _foreach_norm: one call for all (model, parameter) slices, each normed exactly as Tensor.norm() does
    norms = torch.stack(torch._foreach_norm([s for g in given for s in g.unbind(0)]))  # parameter-major
    per_model = norms.view(len(given), n_models).t().contiguous().unbind(0)  # S vectors of P norms
    return torch.stack(torch._foreach_norm(list(per_model)))


class StackedOptimizer:
    """Base: stacked parameters, per-model step counts, and ``minimize(loss)`` = backward, norms, step.

    Args:
        params: leaf tensors of shape (S, ...) (requires_grad).
        lr: learning rate.
        weight_decay: L2 penalty added to the gradient (``torch.optim``'s ``weight_decay``).
        n_models: S.
    """

    def __init__(self, params: Sequence[torch.Tensor], lr: float, weight_decay: float, n_models: int) -> None:
        self.params = list(params)
        self.lr = lr
        self.weight_decay = weight_decay
        self.n_models = n_models
        self.steps = [0] * n_models  # steps taken by each model
        self.state: list[dict[str, torch.Tensor]] = [{} for _ in self.params]

    def minimize(self, loss: torch.Tensor, active: torch.Tensor | None = None) -> torch.Tensor:
        """Differentiate ``loss`` (the sum of the models' losses) and step; returns each model's gradient norm
        before the step, shape (S,). ``active`` (S,) bool on the CPU: the models that step (None: all)."""
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        # in the parameters' memory layout, as .grad would be (the layout decides the order of the norm's sums)
        grads = tuple(g if g is None or g.stride() == p.stride() else torch.empty_like(p).copy_(g)
                      for g, p in zip(grads, self.params))
        norms = per_model_grad_norm(grads, self.n_models)
        self.step(grads, active)
        return norms

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor | None], active: torch.Tensor | None = None) -> None:
        """One update of every parameter that has a gradient; models not ``active`` keep parameters and state."""
        idle = [] if active is None else [i for i, a in enumerate(active.tolist()) if not a]
        if len(idle) == self.n_models:
            return
        self.steps = [s if i in idle else s + 1 for i, s in enumerate(self.steps)]
        steps = [max(s, 1) for s in self.steps]  # an idle model's update is computed, then undone
        live = [(p, g, state) for p, g, state in zip(self.params, grads, self.state) if g is not None]
        if not live:  # like torch.optim: a parameter without a gradient is not updated
            return
        for p, _, state in live:
            if not state:
                self._init_state(p, state)
        params, grads_, states = (list(t) for t in zip(*live))
        if not idle:
            self._update(params, grads_, states, steps)
            return
        rows = torch.tensor(idle, dtype=torch.long, device=params[0].device)
        saved = [{name: t.index_select(0, rows) for name, t in [("param", p), *state.items()]}
                 for p, state in zip(params, states)]
        self._update(params, grads_, states, steps)
        for p, state, old in zip(params, states, saved):
            p.index_copy_(0, rows, old.pop("param"))
            for name, t in old.items():
                state[name].index_copy_(0, rows, t)

    def _init_state(self, p: torch.Tensor, state: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def _update(self, params: list[torch.Tensor], grads: list[torch.Tensor], states: list[dict[str, torch.Tensor]],
                steps: list[int]) -> None:
        """Update ``params`` in place; ``steps``: each model's step count, this step included (idle models: any).

        With one step count for all models (the usual case) the update runs as ``torch._foreach_*`` ops: on CPU
        they apply the single-tensor ops one tensor after the other (torch.optim's arithmetic exactly), on a GPU
        as a few fused kernels for all parameters.
        """
        raise NotImplementedError

    def _per_model(self, values: list[float], like: torch.Tensor) -> torch.Tensor:
        """One scalar per model as a tensor (S, 1, ..., 1) in ``like``'s dtype: a Python scalar is rounded to the
        tensor's dtype by the kernels too, so the arithmetic is the same as with one scalar."""
        return torch.tensor(values, dtype=like.dtype, device=like.device).view(-1, *[1] * (like.dim() - 1))


class StackedAdam(StackedOptimizer):
    """``torch.optim.Adam`` (betas 0.9, 0.999, eps 1e-8, L2 weight decay added to the gradient) per model."""

    betas = (0.9, 0.999)
    eps = 1e-8

    def _init_state(self, p: torch.Tensor, state: dict[str, torch.Tensor]) -> None:
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _update(self, params: list[torch.Tensor], grads: list[torch.Tensor], states: list[dict[str, torch.Tensor]],
                steps: list[int]) -> None:
        beta1, beta2 = self.betas
        exp_avgs = [state["exp_avg"] for state in states]
        exp_avg_sqs = [state["exp_avg_sq"] for state in states]
        if self.weight_decay != 0:
            grads = torch._foreach_add(grads, params, alpha=self.weight_decay)
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
        if len(set(steps)) == 1:  # torch.optim.Adam's own expressions
            step = float(steps[0])
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            step_size = self.lr / bias_correction1
            denom = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_div_(denom, bias_correction2**0.5)
            torch._foreach_add_(denom, self.eps)
            torch._foreach_addcdiv_(params, exp_avgs, denom, value=-step_size)
            return
        # models at different steps: the same expressions with one scalar per model
        neg_step_size = [-(self.lr / (1 - beta1 ** float(s))) for s in steps]
        bias_correction2_sqrt = [(1 - beta2 ** float(s)) ** 0.5 for s in steps]
        for p, exp_avg, exp_avg_sq in zip(params, exp_avgs, exp_avg_sqs):
            denom = (exp_avg_sq.sqrt() / self._per_model(bias_correction2_sqrt, p)).add_(self.eps)
            p.addcdiv_(exp_avg * self._per_model(neg_step_size, p), denom)  # = p + (-step_size * exp_avg) / denom


class StackedSGD(StackedOptimizer):
    """``torch.optim.SGD`` with momentum 0.9 (no dampening, no Nesterov) and L2 weight decay, per model."""

    momentum = 0.9

    def _init_state(self, p: torch.Tensor, state: dict[str, torch.Tensor]) -> None:
        state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _update(self, params: list[torch.Tensor], grads: list[torch.Tensor], states: list[dict[str, torch.Tensor]],
                steps: list[int]) -> None:
        bufs = [state["momentum_buffer"] for state in states]
        if self.weight_decay != 0:
            grads = torch._foreach_add(grads, params, alpha=self.weight_decay)
        first = [s == 1 for s in steps]
        if all(first):  # torch.optim.SGD: the first momentum buffer is the gradient itself
            torch._foreach_copy_(bufs, grads)
        elif not any(first):
            torch._foreach_mul_(bufs, self.momentum)
            torch._foreach_add_(bufs, grads, alpha=1)
        else:
            for buf, g in zip(bufs, grads):
                mask = torch.tensor(first, device=buf.device).view(-1, *[1] * (buf.dim() - 1))
                buf.copy_(torch.where(mask, g, buf.mul(self.momentum).add_(g)))
        torch._foreach_add_(params, bufs, alpha=-self.lr)


def make_stacked_optimizer(kind: str, params: Sequence[torch.Tensor], lr: float, weight_decay: float,
                           n_models: int) -> StackedOptimizer:
    """The stacked counterpart of ``Method.make_optimizer``: ``adam`` or ``sgd`` (momentum 0.9)."""
    cls = StackedSGD if kind == "sgd" else StackedAdam
    return cls(params, lr, weight_decay, n_models)
