"""The three-part model contract: features f -> mapping m -> classifier c, and helpers that run it.

Any ``nn.Module`` with ``features``, ``mapping`` and ``classifier`` submodules works with every method. explearn
always computes ``classifier(mapping(features(x)))`` itself, so a user model's own ``forward`` is not used.
"""

from __future__ import annotations

import contextlib
import operator
from typing import Iterator, NamedTuple

import torch
from torch import fx, nn

from explearn.errors import ConfigError

PARTS = ("features", "mapping", "classifier")


class ExplainableNet(nn.Module):
    """Glue for a model given as three parts; ``forward(x) = classifier(mapping(features(x)))``."""

    def __init__(self, features: nn.Module, mapping: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.mapping = mapping
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.mapping(self.features(x)))


class Outputs(NamedTuple):
    """Intermediate results of one pass. Shape: features and mapped (B, ...), logits (B, K)."""

    features: torch.Tensor
    mapped: torch.Tensor
    logits: torch.Tensor


def check_model(model: nn.Module) -> nn.Module:
    """Raise a clear error unless ``model`` has the three parts as ``nn.Module`` attributes; turn its in-place
    operations into out-of-place ones (``disable_inplace``).

    Raises:
        ConfigError: a part is missing.
    """
    missing = [p for p in PARTS if not isinstance(getattr(model, p, None), nn.Module)]
    if missing:
        raise ConfigError(
            f"model {type(model).__name__} lacks the submodule(s) {', '.join(missing)}; explearn models need "
            "`features` (f), `mapping` (m) and `classifier` (c) so that the prediction is c(m(f(x))). "
            "Wrap your parts with explearn.models.ExplainableNet(features, mapping, classifier)."
        )
    return disable_inplace(model)


#: in-place functions a traced graph may call, and their out-of-place versions
_INPLACE_OPERATORS = {operator.iadd: operator.add, operator.isub: operator.sub, operator.imul: operator.mul,
                      operator.itruediv: operator.truediv, operator.ifloordiv: operator.floordiv,
                      operator.imod: operator.mod, operator.ipow: operator.pow, operator.iand: operator.and_,
                      operator.ior: operator.or_, operator.ixor: operator.xor}


def disable_inplace(model: nn.Module) -> nn.Module:
    """Make every in-place operation of ``model`` that explearn can see out of place, and return ``model``.

    Why: a network often starts its classifier with ``nn.ReLU(inplace=True)`` (torchvision's ResNets do so right
    after each block). Split there, the classifier overwrites m(f(x)) in place, so Grad-CAM is computed on the
    rectified map and the alignment losses see corrupted features (jacobgil/pytorch-grad-cam#147). The outputs of
    the network do not change; only memory use grows a little.

    What is changed: the ``inplace`` flag of every submodule that has one (ReLU, ReLU6, LeakyReLU, ELU, SELU,
    CELU, SiLU, Hardtanh, Hardswish, Mish, Dropout, ...); in ``torch.fx`` graphs (models split by
    ``from_backbone``), calls with ``inplace=True``, tensor methods such as ``x.relu_()`` or ``x.add_(y)`` and
    augmented assignments (``x += y``). In-place code inside a submodule's own ``forward`` cannot be rewritten;
    ``run_parts`` and ``mapped_forward`` detect when it modifies m(f(x)) and raise an error.
    """
    for module in model.modules():
        if isinstance(getattr(module, "inplace", None), bool):
            module.inplace = False
        if isinstance(module, fx.GraphModule):
            _out_of_place_graph(module)
    return model


def _out_of_place_graph(gm: fx.GraphModule) -> None:
    if out_of_place(gm.graph):
        gm.graph.lint()
        gm.recompile()


def out_of_place(graph: fx.Graph) -> bool:
    """Rewrite the in-place calls of a traced graph as out-of-place ones; returns whether anything changed.

    An in-place call changes its first argument, which later nodes may still read (``x.relu_()`` without
    assignment, whose result a dead-code pass would otherwise drop): those later reads are redirected to the
    call's result, so the graph computes what it did before.
    """
    order = {node: k for k, node in enumerate(graph.nodes)}
    changed = False
    for node in list(graph.nodes):
        if node.kwargs.get("inplace") is True:
            node.kwargs = {**node.kwargs, "inplace": False}
        elif node.op == "call_function" and node.target in _INPLACE_OPERATORS:
            node.target = _INPLACE_OPERATORS[node.target]
        elif (node.op == "call_method" and node.target.endswith("_") and not node.target.endswith("__")
              and hasattr(torch.Tensor, node.target[:-1])):
            node.target = node.target[:-1]
        else:
            continue
        changed = True
        mutated = node.args[0] if node.args else None
        if isinstance(mutated, fx.Node):
            for user in list(mutated.users):
                if order[user] > order[node]:
                    user.replace_input_with(mutated, node)
    return changed


def classify(model: nn.Module, mapped: torch.Tensor) -> torch.Tensor:
    """c(A) for a feature map A = m(f(x)) that the caller keeps (Grad-CAM, the alignment losses), checking that c
    left A unchanged.

    Raises:
        ConfigError: c modified A in place (in-place code in a submodule's own ``forward``, which
            ``disable_inplace`` cannot rewrite).
    """
    if mapped.is_inference():  # predictions under inference_mode: no version counter, and nothing to corrupt
        return model.classifier(mapped)
    version = mapped._version
    out = model.classifier(mapped)
    if mapped._version != version:
        raise ConfigError(
            f"the classifier c of {type(model).__name__} modifies its input m(f(x)) in place (e.g. x.relu_() or "
            "`x += ...` in a forward method), which corrupts Grad-CAM and the alignment losses computed on "
            "m(f(x)); make that operation out of place (x = x.relu()), or end f at a later layer"
        )
    return out


def run_parts(model: nn.Module, x: torch.Tensor) -> Outputs:
    """f(x), m(f(x)) and c(m(f(x))) in one pass.

    Raises:
        ConfigError: the classifier modifies m(f(x)) in place (``classify``).
    """
    z = model.features(x)
    zm = model.mapping(z)
    return Outputs(z, zm, classify(model, zm))


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """c(m(f(x))), checking that c leaves m(f(x)) unchanged (``classify``: autograd would otherwise stop later
    with "modified by an inplace operation"). Shape: (B, C, H, W) -> (B, K).

    Raises:
        ConfigError: the classifier modifies m(f(x)) in place.
    """
    return classify(model, model.mapping(model.features(x)))


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode for the block and restore each submodule's previous mode after."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, mode in modes:
            m.train(mode)


def parameters_of(model: nn.Module, part: str) -> list[nn.Parameter]:
    """The trainable parameters of one part ("features", "mapping" or "classifier")."""
    return [p for p in getattr(model, part).parameters() if p.requires_grad]
