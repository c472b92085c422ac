"""The three-part model contract: features f -> mapping m -> classifier c, and helpers that run it.

Any ``nn.Module`` with ``features``, ``mapping`` and ``classifier`` submodules works with every method. explearn
always computes ``classifier(mapping(features(x)))`` itself, so a user model's own ``forward`` is not used.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, NamedTuple

import torch
from torch import nn

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
    """Raise a clear error unless ``model`` has the three parts as ``nn.Module`` attributes."""
    missing = [p for p in PARTS if not isinstance(getattr(model, p, None), nn.Module)]
    if missing:
        raise ConfigError(
            f"model {type(model).__name__} lacks the submodule(s) {', '.join(missing)}; explearn models need "
            "`features` (f), `mapping` (m) and `classifier` (c) so that the prediction is c(m(f(x))). "
            "Wrap your parts with explearn.models.ExplainableNet(features, mapping, classifier)."
        )
    return model


def run_parts(model: nn.Module, x: torch.Tensor) -> Outputs:
    """f(x), m(f(x)) and c(m(f(x))) in one pass."""
    z = model.features(x)
    zm = model.mapping(z)
    return Outputs(z, zm, model.classifier(zm))


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """c(m(f(x))). Shape: (B, C, H, W) -> (B, K)."""
    return model.classifier(model.mapping(model.features(x)))


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
