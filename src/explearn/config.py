"""Typed settings: dataclasses built from dicts or ``key=value`` strings, with every mistake named.

Each method, dataset and model declares its options as a dataclass whose fields carry a ``help`` text
(``setting(default, "help")``). ``from_dict`` builds one from user input: an unknown key, a value of the wrong
type or a choice outside a ``Literal`` stops with a message naming the key and where it came from.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import numbers
import types
import typing
from typing import Any, Literal, Mapping, TypeVar, Union, get_args, get_origin

from explearn.errors import ConfigError

T = TypeVar("T")


def setting(default: Any, help: str, allow_inf: bool = False) -> Any:
    """A dataclass field with a default and a one-line help text (shown by ``explearn list``).

    A float setting refuses NaN and +-inf unless ``allow_inf`` (then +-inf is a valid value, e.g. "no limit");
    NaN is never a valid setting.
    """
    if isinstance(default, (list, dict, set)):
        raise TypeError("use an immutable default (tuple) for a setting")
    return dataclasses.field(default=default, metadata={"help": help, "allow_inf": allow_inf})


def fields_help(cls: type) -> list[tuple[str, str, Any, str]]:
    """(name, type, default, help) of every field of a settings dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    return [
        (f.name, _type_name(hints[f.name]), f.default, f.metadata.get("help", ""))
        for f in dataclasses.fields(cls)
    ]


def from_dict(cls: type[T], values: Mapping[str, Any] | None, where: str,
              elsewhere: Mapping[str, str] | None = None) -> T:
    """Build the settings dataclass ``cls`` from ``values``, checking keys and types.

    Strings are parsed into the field's type, so ``{"lr": "0.01"}`` (from the command line) works.

    Args:
        cls: a dataclass whose fields all have defaults.
        values: the user's settings; missing keys keep their defaults.
        where: what these settings belong to, for messages ("method 'two_stage'").
        elsewhere: keys that belong to another group of settings -> where they go (said instead of a guess).

    Raises:
        ConfigError: an unknown key (with the closest known names), a wrong type, an invalid choice, or a float that
            is NaN or infinite (unless its setting allows infinity).
    """
    values = dict(values or {})
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in values if k not in known]
    if unknown:
        msgs = []
        for key in unknown:
            if elsewhere and key in elsewhere:
                msgs.append(f"{key!r} ({elsewhere[key]})")
                continue
            close = difflib.get_close_matches(key, known, n=2, cutoff=0.5)
            hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
            msgs.append(f"{key!r}{hint}")
        raise ConfigError(
            f"unknown setting {', '.join(msgs)} for {where}; known settings: {', '.join(known)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {key: _coerce(value, hints[key], f"{where}: setting {key!r}", known[key].metadata.get("allow_inf", False))
              for key, value in values.items()}
    return cls(**kwargs)


def to_dict(obj: Any) -> dict[str, Any]:
    """A settings dataclass as a plain JSON-ready dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(obj)))


def parse_assignments(items: list[str] | None, where: str) -> dict[str, str]:
    """Parse ``["lr=0.01", "schedule=epoch"]`` into ``{"lr": "0.01", ...}``; values are typed later."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{where}: expected KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


#: the largest seed: torch's generators take 64-bit seeds but wrap at 2^63 (2^63 seeds like 0)
MAX_SEED = 2**63 - 1


def check_seed(seed: Any, where: str) -> int:
    """``seed`` as a seed: an integer in [0, 2^63 - 1] (numpy's generators refuse negative seeds, torch's would
    accept them, and wrap larger ones: seed 2^63 draws what seed 0 draws), so the rule is checked here, once, for
    every seed explearn takes. Numpy integers become ``int``.

    Raises:
        ConfigError: naming ``where`` (e.g. ``--data-seed``), for a negative or too large number, a float or a
            non-number.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{where}: a seed must be an integer from 0 to 2^63 - 1, got {seed!r}")
    return int(seed)


def json_ready(value: Any, where: str = "value") -> Any:
    """``value`` with what ``json.dumps`` cannot write converted: numpy scalars, 0-d arrays and 0-d tensors become
    Python numbers (``.item()``), tuples become lists; dicts and lists are converted item by item.

    Raises:
        TypeError: anything else (an n-d array, a tensor, a Path, an object), naming its key path, e.g.
            ``metrics['test/acc']: numpy.ndarray is not JSON-serialisable``.
    """
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not (key is None or isinstance(key, (str, int, float, bool))):
                raise TypeError(f"{where}: key {key!r} ({_qualname(key)}) is not JSON-serialisable")
            out[key] = json_ready(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [json_ready(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):  # numpy scalar, 0-d array/tensor
        return json_ready(value.item(), where)
    raise TypeError(f"{where}: {_qualname(value)} is not JSON-serialisable (store a number, string, list or dict)")


def _qualname(value: Any) -> str:
    cls = type(value)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__.split('.')[0]}.{cls.__qualname__}"


def config_hash(config: Mapping[str, Any], length: int = 12) -> str:
    """A stable short hash of a JSON-ready config: equal configs give equal ids across machines."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def check(condition: bool, where: str, message: str) -> None:
    """Raise ``ConfigError(f"{where}: {message}")`` unless ``condition`` holds (for range checks)."""
    if not condition:
        raise ConfigError(f"{where}: {message}")


# --- coercion -------------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin is tuple:
        return f"tuple[{', '.join(_type_name(a) if a is not Ellipsis else '...' for a in get_args(tp))}]"
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str, allow_inf: bool = False) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            if type(None) in args:
                return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where, allow_inf)
            except ConfigError as err:
                errors.append(str(err))
        if len(errors) == 1:  # float | None and the like: the one type's own message says more
            raise ConfigError(errors[0])
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = get_args(tp)
        for choice in choices:
            if value == choice or (isinstance(value, str) and str(choice) == value):
                return choice
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, choices))}{hint}")
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a sequence, got {value!r}")
        args = get_args(tp)
        item_types = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(item_types) != len(value):
            raise ConfigError(f"{where}: expected {len(item_types)} items, got {len(value)}")
        return tuple(_coerce(v, t, where, allow_inf) for v, t in zip(value, item_types))
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if math.isnan(out):
            raise ConfigError(f"{where}: NaN is not a valid value; give a number")
        if math.isinf(out) and not allow_inf:
            raise ConfigError(f"{where}: {value!r} is not a finite number; give a finite value")
        return out
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value
