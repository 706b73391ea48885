"""Typed schema checking for recipe sections: one checker for every section of every recipe.

A section's schema is a dataclass whose field annotations say what each key holds (``int``, ``float``, ``bool``,
``str``, ``list[int]``, ``dict[str, Any]``, ``Literal[...]``, ``X | None``, ``Any``). :func:`parse_section`
turns a mapping into that dataclass, and every error names the dotted key (``train.lr``), says what was expected
and what was given. Floats must be finite (``.nan`` and ``.inf`` are refused), bools are not ints, ints are
accepted where a float is expected, and PyYAML's ``3e-4`` (read as a string by YAML 1.1) is read as a number.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from xmodal.errors import ConfigError

T = TypeVar("T")


def _describe(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        return f"a list of {_describe(inner)}"
    if origin is dict or tp is dict:
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _number(value: Any) -> Any:
    if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            return value
    return value


def check_value(key: str, value: Any, tp: Any) -> Any:
    """``value`` checked against the type ``tp`` (converted where lossless: int -> float); ConfigError names
    ``key``."""
    if tp is Any or tp is object:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return check_value(key, value, option)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_describe(tp)}, got {value!r}")
    if value is None:
        raise ConfigError(f"{key}: must be set ({_describe(tp)}), got null")
    if origin is typing.Literal:
        if value not in typing.get_args(tp) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected {_describe(tp)}, got {value!r}")
        return value
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected {_describe(tp)}, got {value!r}")
        return [check_value(f"{key}[{i}]", v, inner) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        value = _number(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{key}: schema type {tp!r} is not supported by the recipe checker")  # a schema bug


def parse_section(cls: type[T], section: Any, name: str) -> T:
    """The dataclass ``cls`` from the mapping ``section`` (None: all defaults); unknown keys and values of the
    wrong type raise ConfigError naming ``name.key``."""
    section = {} if section is None else section
    if not isinstance(section, Mapping):
        raise ConfigError(f"{name}: expected a mapping of settings, got {section!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {}
    for key, value in section.items():
        if key not in known:
            raise ConfigError(f"{name}.{key}: unknown setting; known settings are {', '.join(sorted(known))}")
        values[key] = check_value(f"{name}.{key}", value, hints[key])
    return cls(**values)


def check_keywords(name: str, settings: Mapping[str, Any], hints: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``settings`` against ``{key: type}`` (e.g. a builder's keyword annotations): unknown keys and bad
    values raise ConfigError naming ``name.key``."""
    out = {}
    for key, value in settings.items():
        if key not in hints:
            known = ", ".join(sorted(hints)) or "none"
            raise ConfigError(f"{name}.{key}: unknown setting; known settings are {known}")
        out[key] = check_value(f"{name}.{key}", value, hints[key])
    return out
