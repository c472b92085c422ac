"""S models of one architecture as one model: each parameter of the S models stacked into one (S, *shape) leaf,
every layer applied to a batch *flattened over the models*.

A stacked model is a copy of one of the S models whose ``Linear`` and ``Conv2d`` layers are replaced by layers
that hold the stacked parameters and apply model i's weights to rows i * B to (i + 1) * B of their input (S * B,
...). Every other module must act on each sample alone (ReLU, max-pooling, flattening; ``stacking_problem``
checks), so the models' own forward code, the mapping layers' included, runs unchanged on the stacked batch, and
so does code written for one model's batch: ``input_gradients`` and ``rrr_forward`` (sample i's gradient is that
of its own model, since the models share nothing), the alignment losses, ``parameters_of``.

Why not ``torch.vmap`` over ``torch.func.functional_call``: vmap turns a convolution with stacked weights into
one grouped convolution, which on CPU is slower than S ordinary ones (measured: 92 against 75 ms for 30 models'
16->32-channel 3x3 layer, fwd+bwd, batch 32) and sums in another order (results differ from ``train``'s in the
last bits, which Adam can amplify). Here a convolution runs model by model on CPU, with the very kernels and
shapes ``train`` uses, and as one grouped convolution on other devices (GPUs, where one kernel beats S small
ones); linear layers run as one batched matrix product (``baddbmm``), which on CPU gives the same numbers as S
``F.linear`` calls.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from explearn.models import MAPPINGS
from explearn.models.base import ExplainableNet

#: Parameter-free modules that act on each sample alone, the same in train and eval mode: they run unchanged on
#: a batch flattened over the models. Dropout (random numbers per call) and batch normalisation (statistics over
#: the batch, running statistics) are not among them.
PER_SAMPLE_MODULES: tuple[type[nn.Module], ...] = (
    nn.Sequential, nn.ReLU, nn.LeakyReLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.MaxPool2d, nn.AvgPool2d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Identity, ExplainableNet,
    *(MAPPINGS.get(name) for name in MAPPINGS.names()),  # their forward is per-sample code around Linear/Conv2d
)
#: Layers with parameters that have a stacked counterpart.
STACKABLE_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d)


def stacking_problem(model: nn.Module) -> str | None:
    """Why S copies of ``model`` cannot be trained as one stacked model, or None when they can."""
    for name, module in model.named_modules():
        buffers = [b for b, _ in module.named_buffers(recurse=False)]
        if buffers:
            return (f"its {type(module).__name__} {name} keeps buffers updated in training ({', '.join(buffers)}), "
                    "which the vectorised trainer does not carry per model")
    for name, module in model.named_modules():
        if type(module) not in PER_SAMPLE_MODULES + STACKABLE_LAYERS:
            return (f"its module {name or '(root)'} is a {type(module).__name__}, not one of the layers the "
                    "vectorised trainer can stack or knows to act on each sample alone "
                    "(explearn.vectorized.stacked.PER_SAMPLE_MODULES, STACKABLE_LAYERS)")
        if type(module) not in STACKABLE_LAYERS and any(True for _ in module.parameters(recurse=False)):
            return f"its module {name or '(root)'} ({type(module).__name__}) holds parameters of its own"
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    if frozen:
        return f"it has frozen parameters ({', '.join(frozen[:3])}), which the vectorised trainer does not handle"
    return None


class _StackedLinearFunction(torch.autograd.Function):
    """y = x W^T + b per model: one ``baddbmm`` (on CPU the same numbers as ``F.linear`` per model), with the
    weight's gradient computed directly in the weight's layout, (S, out, in), as g^T x. Autograd's own backward
    of baddbmm gives x^T g, a transposed view that would need a copy (slow for large stacked weights) before the
    optimiser and the norm that ``train`` logs. The backward is written with differentiable ops, so double
    backprop (RRR's penalty) goes through it.

    Shape: x (S, N, in), weight (S, out, in), bias (S, out) or None -> (S, N, out)
    """

    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        w = weight.transpose(1, 2)
        return torch.bmm(x, w) if bias is None else torch.baddbmm(bias.unsqueeze(1), x, w)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
        x, weight, bias = inputs
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        grad_w = torch.bmm(grad.transpose(1, 2), x) if ctx.needs_input_grad[1] else None
        grad_b = grad.sum(1) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


class StackedLinear(nn.Module):
    """S linear layers. Shape: (S * B, ..., in) -> (S * B, ..., out); weight (S, out, in), bias (S, out)."""

    def __init__(self, weight: nn.Parameter, bias: nn.Parameter | None) -> None:
        super().__init__()
        self.n_models = weight.shape[0]
        self.weight = weight
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = x.reshape(self.n_models, -1, x.shape[-1])  # (S, B * ..., in)
        out = _StackedLinearFunction.apply(xs, self.weight, self.bias)
        return out.reshape(*x.shape[:-1], out.shape[-1])


class StackedConv2d(nn.Module):
    """S 2-D convolutions with the settings of ``template``. Shape: (S * B, C, H, W) -> (S * B, O, H', W');
    weight (S, O, C / groups, kh, kw), bias (S, O).

    On CPU the models run one after the other (the same kernels and results as one model alone, and faster than
    a grouped convolution there); elsewhere as one convolution with S times the groups.
    """

    #: True: one grouped convolution, False: one per model, None: grouped except on CPU
    grouped: bool | None = None

    def __init__(self, template: nn.Conv2d, weight: nn.Parameter, bias: nn.Parameter | None) -> None:
        super().__init__()
        if template.padding_mode != "zeros":
            raise NotImplementedError("stacked convolutions support padding_mode='zeros' only")
        self.n_models = weight.shape[0]
        self.weight = weight
        self.bias = bias
        self.stride, self.padding, self.dilation, self.groups = (template.stride, template.padding,
                                                                 template.dilation, template.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.n_models
        grouped = x.device.type != "cpu" if self.grouped is None else self.grouped
        if n == 1 or not grouped:
            biases = self.bias.unbind(0) if self.bias is not None else [None] * n
            return _join([F.conv2d(xi, wi, bi, self.stride, self.padding, self.dilation, self.groups)
                          for xi, wi, bi in zip(x.chunk(n), self.weight.unbind(0), biases)])
        b, c, h, w = x.shape[0] // n, *x.shape[1:]
        grouped = x.view(n, b, c, h, w).transpose(0, 1).reshape(b, n * c, h, w)  # model i's channels: block i
        out = F.conv2d(grouped, self.weight.flatten(0, 1), None if self.bias is None else self.bias.flatten(),
                       self.stride, self.padding, self.dilation, self.groups * n)
        return out.view(b, n, -1, *out.shape[2:]).transpose(0, 1).flatten(0, 1)


def _join(parts: list[torch.Tensor]) -> torch.Tensor:
    """torch.cat(parts) (along dim 0, in the parts' memory layout, e.g. channels-last), built with torch.stack.

    The same numbers; the difference is in the graph: cat's backward slices the gradient, and differentiating a
    slice again (double backprop, as RRR's penalty does) allocates a zero tensor of the whole batch per model,
    S^2 work; stack's backward is unbind, whose own backward is one stack.
    """
    first = parts[0]
    if len(parts) == 1:
        return first
    order = [0, *sorted(range(1, first.dim()), key=lambda d: -first.stride(d))]  # outermost first, as laid out
    joined = torch.stack([p.permute(order) for p in parts]).flatten(0, 1)  # contiguous in that order
    return joined.permute([order.index(d) for d in range(first.dim())])


def stack_models(models: Sequence[nn.Module], device: torch.device) -> nn.Module:
    """One model that runs all of ``models`` (of one architecture) on batches flattened over them.

    Returns a copy of ``models[0]`` whose linear and convolution layers hold the stacked parameters (new leaf
    ``nn.Parameter``s of shape (S, *shape) on ``device``, under the same names as in each model), so
    ``named_parameters()`` and ``parameters_of(net, part)`` list the stacked parameters.
    """
    net = copy.deepcopy(models[0]).to(device)
    for name, module in list(net.named_modules()):
        if not isinstance(module, STACKABLE_LAYERS):
            continue
        own = [m.get_submodule(name) for m in models]
        stacked = {kind: None if getattr(module, kind) is None else nn.Parameter(
            _stack_like([getattr(o, kind).detach().to(device) for o in own])) for kind in ("weight", "bias")}
        layer = (StackedLinear(stacked["weight"], stacked["bias"]) if isinstance(module, nn.Linear)
                 else StackedConv2d(module, stacked["weight"], stacked["bias"]))
        parent, _, child = name.rpartition(".")
        setattr(net.get_submodule(parent) if parent else net, child, layer)
    return net


def _stack_like(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """torch.stack, each slice with the strides of the stacked tensors (e.g. channels-last convolution weights, as
    ``train`` uses them: the layout decides which kernel runs, and so the last bits of the results)."""
    first = tensors[0]
    out = torch.empty_strided((len(tensors), *first.shape), (first.numel(), *first.stride()), dtype=first.dtype,
                              device=first.device)
    for slot, t in zip(out, tensors):
        slot.copy_(t)
    return out


def model_state(params: dict[str, torch.Tensor], index: int) -> dict[str, torch.Tensor]:
    """Model ``index``'s parameters from stacked ones (name -> (S, ...)), as one model's state dict (copies)."""
    return {name: p[index].detach().clone() for name, p in params.items()}


def repeat_for_models(x: torch.Tensor, n_models: int) -> torch.Tensor:
    """The same inputs for every model, flattened: (B, ...) -> (S * B, ...)."""
    return x.unsqueeze(0).expand(n_models, *x.shape).flatten(0, 1)
