"""The one helper for input gradients: differentiable (for training losses) or not (for evaluation)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from explearn.models.base import logits as model_logits

Target = Literal["sum_log_prob", "predicted", "label"]


def input_gradients(model: nn.Module, x: torch.Tensor, target: Target = "sum_log_prob",
                    y: torch.Tensor | None = None, create_graph: bool = False) -> torch.Tensor:
    """Gradient of a log-probability with respect to the input.

    Args:
        model: a three-part explearn model.
        x: the inputs.
        target: what is differentiated: ``sum_log_prob`` = sum_k log p_k(x) (Ross et al. 2017, used by RRR),
            ``predicted`` = log p of the predicted class (saliency), ``label`` = log p of ``y``.
        y: labels, required for ``target="label"``.
        create_graph: keep the graph so that a loss built on the gradient trains the weights (double backprop).

    Returns:
        dlogp/dx, detached unless ``create_graph``.

    Shape:
        x: (B, C, H, W) -> (B, C, H, W)
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        return log_prob_gradients(model_logits(model, x), x, target, y, create_graph)


def log_prob_gradients(logits: torch.Tensor, x: torch.Tensor, target: Target = "sum_log_prob",
                       y: torch.Tensor | None = None, create_graph: bool = False) -> torch.Tensor:
    """``input_gradients`` from an existing forward pass, so that a method takes its cross-entropy and its input
    gradient from one forward (BatchNorm statistics then advance once per batch, dropout draws one mask).

    Args:
        logits: the model's logits on ``x``, computed with ``x.requires_grad`` (and grad mode) on.
        x: the inputs, a tensor that requires grad and produced ``logits``.
        target, y, create_graph: as for ``input_gradients``.

    Returns:
        dlogp/dx, detached unless ``create_graph``.

    Shape:
        logits (B, K), x (B, C, H, W) -> (B, C, H, W)
    """
    with torch.enable_grad():
        log_p = F.log_softmax(logits, dim=1)
        if target == "sum_log_prob":
            out = log_p.sum()
        elif target == "predicted":
            out = log_p.gather(1, log_p.argmax(1, keepdim=True)).sum()
        elif target == "label":
            if y is None:
                raise ValueError("input_gradients(target='label') needs y")
            out = log_p.gather(1, y.view(-1, 1)).sum()
        else:
            raise ValueError(f"unknown gradient target {target!r}")
        (grad,) = torch.autograd.grad(out, x, create_graph=create_graph)
    return grad if create_graph else grad.detach()
