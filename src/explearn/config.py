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
import types
import typing
from typing import Any, Literal, Mapping, TypeVar, Union, get_args, get_origin

from explearn.errors import ConfigError

T = TypeVar("T")


def setting(default: Any, help: str) -> Any:
    """A dataclass field with a default and a one-line help text (shown by ``explearn list``)."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use an immutable default (tuple) for a setting")
    return dataclasses.field(default=default, metadata={"help": help})


def fields_help(cls: type) -> list[tuple[str, str, Any, str]]:
    """(name, type, default, help) of every field of a settings dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    return [
        (f.name, _type_name(hints[f.name]), f.default, f.metadata.get("help", ""))
        for f in dataclasses.fields(cls)
    ]


def from_dict(cls: type[T], values: Mapping[str, Any] | None, where: str) -> T:
    """Build the settings dataclass ``cls`` from ``values``, checking keys and types.

    Strings are parsed into the field's type, so ``{"lr": "0.01"}`` (from the command line) works.

    Args:
        cls: a dataclass whose fields all have defaults.
        values: the user's settings; missing keys keep their defaults.
        where: what these settings belong to, for messages ("method 'two_stage'").

    Raises:
        ConfigError: an unknown key (with the closest known names), a wrong type or an invalid choice.
    """
    values = dict(values or {})
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in values if k not in known]
    if unknown:
        msgs = []
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=2, cutoff=0.5)
            hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
            msgs.append(f"{key!r}{hint}")
        raise ConfigError(
            f"unknown setting {', '.join(msgs)} for {where}; known settings: {', '.join(known)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {key: _coerce(value, hints[key], f"{where}: setting {key!r}") for key, value in values.items()}
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


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            if type(None) in args:
                return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
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
        return tuple(_coerce(v, t, where) for v, t in zip(value, item_types))
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
            raise ConfigError(f"{where}: NaN is not a valid value")
        return out
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value
