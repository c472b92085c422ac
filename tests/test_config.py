from dataclasses import dataclass
from typing import Literal

import pytest

from explearn.config import config_hash, from_dict, parse_assignments, setting
from explearn.errors import ConfigError
from explearn.registry import Registry


@dataclass(frozen=True)
class Opts:
    lr: float = setting(0.1, "rate")
    steps: int = setting(3, "steps")
    kind: Literal["a", "b"] = setting("a", "kind")
    sizes: tuple[int, ...] | None = setting(None, "sizes")
    flag: bool = setting(False, "flag")


def test_strings_are_parsed_into_field_types():
    opts = from_dict(Opts, {"lr": "0.5", "steps": "7", "kind": "b", "sizes": "3,4", "flag": "true"}, "here")
    assert opts == Opts(0.5, 7, "b", (3, 4), True)


def test_unknown_key_names_the_key_and_suggests():
    with pytest.raises(ConfigError, match=r"unknown setting 'lrr' \(did you mean 'lr'\?\) for here"):
        from_dict(Opts, {"lrr": 1}, "here")


@pytest.mark.parametrize("values, message", [
    ({"steps": "three"}, "setting 'steps': expected an integer"),
    ({"lr": "nan"}, "NaN"),
    ({"kind": "c"}, "'c' is not one of 'a', 'b'"),
    ({"flag": "maybe"}, "expected true or false"),
    ({"steps": 2.5}, "expected an integer"),
])
def test_wrong_values_are_named(values, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Opts, values, "here")


def test_parse_assignments_rejects_missing_equals():
    assert parse_assignments(["a=1", "b = x"], "--hp") == {"a": "1", "b": "x"}
    with pytest.raises(ConfigError, match="--hp: expected KEY=VALUE, got 'lr'"):
        parse_assignments(["lr"], "--hp")


def test_registry_suggests_close_names():
    reg: Registry = Registry("method")
    reg.register("two_stage")(1)
    assert reg.get("two_stage") == 1
    with pytest.raises(ConfigError, match="unknown method 'two_stag'; did you mean 'two_stage'"):
        reg.get("two_stag")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("two_stage")(2)


def test_config_hash_ignores_key_order_and_sees_values():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
