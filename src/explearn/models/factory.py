"""A user's own network named on the command line as ``MODULE:FUNCTION`` (``explearn fit --backbone``), split at a
named layer with ``from_backbone``. The function is imported only when the user names it; a checkpoint records the
name but never imports it by itself."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Callable

from torch import nn

from explearn.errors import ConfigError
from explearn.models.backbone import from_backbone
from explearn.models.base import ExplainableNet


def import_factory(spec: str) -> Callable[..., nn.Module]:
    """The function named by ``"package.module:function"``; the current folder is importable (for a local
    ``mymodels.py``).

    Raises:
        ConfigError: a malformed name, a module that cannot be imported, or a missing or non-callable attribute.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"--backbone: expected MODULE:FUNCTION (e.g. mymodels:build), got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"--backbone {spec}: cannot import module {module_name!r} ({err})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"--backbone {spec}: module {module_name!r} has no function {attr!r}")
    return fn


def backbone_model(spec: str, n_classes: int, feature_layer: str, input_shape: tuple[int, ...],
                   mapping: str = "conv1x1", output: int | str | None = None) -> tuple[ExplainableNet, dict[str, Any]]:
    """Build ``FUNCTION(n_classes)`` and split it after ``feature_layer`` (``output``: where its logits are, for
    a network that returns more, see ``from_parts``); also returns the description a checkpoint stores
    (``{"name": "backbone", "factory", "feature_layer", "mapping", "output"}``).

    Raises:
        ConfigError: as ``import_factory`` and ``from_backbone``, or when the function does not return a module.
    """
    net = import_factory(spec)(n_classes)
    if not isinstance(net, nn.Module):
        raise ConfigError(f"--backbone {spec}: the function returned {type(net).__name__}, not an nn.Module")
    model = from_backbone(net, feature_layer, input_shape, mapping, output)
    return model, {"name": "backbone", "factory": spec, "feature_layer": feature_layer, "mapping": mapping,
                   "output": output, "class": type(net).__name__}
