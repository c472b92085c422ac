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
    except Exception as err:  # noqa: BLE001 - the user's module fails while it is imported (SyntaxError, ...)
        raise ConfigError(f"--backbone {spec}: importing module {module_name!r} raised {_where(err)}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"--backbone {spec}: module {module_name!r} has no function {attr!r}")
    return fn


def _where(err: BaseException) -> str:
    """``TypeError: message (mymodels.py, line 12)``: an exception of the user's code and where it was raised."""
    import traceback

    frames = traceback.extract_tb(err.__traceback__)
    if isinstance(err, SyntaxError) and err.filename:
        at = f" ({os.path.basename(err.filename)}, line {err.lineno})"
    else:
        at = f" ({os.path.basename(frames[-1].filename)}, line {frames[-1].lineno})" if frames else ""
    return f"{type(err).__name__}: {err}{at}"


def backbone_model(spec: str, n_classes: int, feature_layer: str, input_shape: tuple[int, ...],
                   mapping: str = "conv1x1", output: int | str | None = None) -> tuple[ExplainableNet, dict[str, Any]]:
    """Build ``FUNCTION(n_classes)`` and split it after ``feature_layer`` (``output``: where its logits are, for
    a network that returns more, see ``from_parts``); also returns the description a checkpoint stores
    (``{"name": "backbone", "factory", "feature_layer", "mapping", "output"}``).

    Raises:
        ConfigError: as ``import_factory`` and ``from_backbone``, or when the function does not return a module.
    """
    fn = import_factory(spec)
    try:
        net = fn(n_classes)
    except Exception as err:  # noqa: BLE001 - the user's function: a wrong signature, a bug, a missing file ...
        raise ConfigError(f"--backbone {spec}: calling {spec.partition(':')[2]}(n_classes={n_classes}) raised "
                          f"{_where(err)}; the function must take the number of classes and return an nn.Module"
                          ) from None
    if not isinstance(net, nn.Module):
        raise ConfigError(f"--backbone {spec}: the function returned {type(net).__name__}, not an nn.Module")
    model = from_backbone(net, feature_layer, input_shape, mapping, output)
    return model, {"name": "backbone", "factory": spec, "feature_layer": feature_layer, "mapping": mapping,
                   "output": output, "class": type(net).__name__}
