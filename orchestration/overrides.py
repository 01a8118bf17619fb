"""Overrides of frozen config dataclasses by dotted path, rejecting unknown keys with the valid ones.

Every value is converted to its field's type hint (a command line and a YAML file give strings and numbers)
and the config's own validation runs on it, so a bad value fails here, naming the key, not in a trial.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

import yaml

from core.train import TrainConfig

NOUNS = {bool: "boolean (true or false)", int: "integer", float: "float", str: "string"}
BOOLEANS = {"true": True, "false": False}
NONE_WORDS = ("null", "none")  # how a file or a command line can say None besides JSON's null


class Mismatch(Exception):
    """A value that does not fit a type hint; `expected` describes the hint."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


def parse_value(text: str) -> Any:
    """A command-line value: JSON (numbers like 1e-3, lists, null), else YAML flow ([sst2, imdb]), else the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, list | dict) else text


def apply_overrides(config: Any, overrides: Mapping[str, Any]) -> Any:
    """A copy of `config` with each `a.b.c` path set; a string value is read as `parse_value` reads it, then every
    value is converted to its field's type; a wrong type or a value the config rejects raises, naming the path."""
    for path, value in overrides.items():
        config = _set(config, path.split("."), parse_value(value) if isinstance(value, str) else value, path)
    return config


def _set(config: Any, keys: list[str], value: Any, path: str) -> Any:
    if not dataclasses.is_dataclass(config):
        raise ValueError(f"cannot set {path!r}: {type(config).__name__} has no fields")
    names = [f.name for f in dataclasses.fields(config)]
    if keys[0] not in names:
        raise ValueError(f"unknown setting {path!r} of {type(config).__name__}; valid: {', '.join(names)}")
    current = getattr(config, keys[0])
    if len(keys) > 1:
        new = _set(current, keys[1:], value, path)
    elif dataclasses.is_dataclass(current) and isinstance(value, Mapping):  # a whole nested config as a mapping
        new = current
        for name, item in value.items():
            new = _set(new, str(name).split("."), item, f"{path}.{name}")
    else:
        new = convert(value, field_types(type(config))[keys[0]], path)
    try:
        return dataclasses.replace(config, **{keys[0]: new})
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}={value!r}: {err}") from None


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """The resolved type hint of each field of a dataclass."""
    return typing.get_type_hints(cls)


def convert(value: Any, hint: Any, key: str) -> Any:
    """`value` as the type `hint` names (float, int, bool, str, X | None, tuples, Literal, mappings, dataclasses);
    one that does not fit raises ValueError naming the key, the value and the expected type."""
    try:
        return _as(value, hint)
    except Mismatch as err:
        raise ValueError(f"{key}: expected {err.expected}, got {value!r}") from None


def _as(value: Any, hint: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in sorted(args, key=lambda a: a is not type(None)):  # None first: "null" is never a string here
            try:
                return _as(value, arg)
            except Mismatch:
                pass
        raise Mismatch(" or ".join(_describe(a) for a in args))
    if hint is type(None):
        if value is None or (isinstance(value, str) and value.strip().lower() in NONE_WORDS):
            return None
        raise Mismatch("null")
    if origin is Literal:
        for choice in args:
            if value == choice and type(value) is type(choice):
                return choice
        raise Mismatch(_describe(hint))
    if origin is tuple:
        items = list(value) if isinstance(value, list | tuple) else [value]  # `datasets=imdb`: a one-item tuple
        kinds = [args[0]] * len(items) if len(args) == 2 and args[1] is Ellipsis else list(args)
        try:
            return tuple(_as(item, kind) for item, kind in zip(items, kinds, strict=True))
        except (Mismatch, ValueError):  # ValueError: a length other than the hint's
            raise Mismatch(_describe(hint)) from None
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        if isinstance(value, Mapping):
            return value
        raise Mismatch(_describe(hint))
    if hint in NOUNS:
        return _scalar(value, hint)
    if isinstance(hint, type) and not isinstance(value, hint):
        raise Mismatch(_describe(hint))
    return value


def _scalar(value: Any, hint: type) -> Any:
    """A bool, int, float or str from a value of that type, a number, or its text."""
    text = value.strip() if isinstance(value, str) else None
    if hint is bool:
        if isinstance(value, bool):
            return value
        if text is not None and text.lower() in BOOLEANS:
            return BOOLEANS[text.lower()]
    elif isinstance(value, bool):  # True is an int to Python, never a number or a name to a config
        pass
    elif hint is int:
        if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
            return int(value)
        if text is not None and text.lstrip("+-").isdigit():
            return int(text)
    elif hint is float:
        if isinstance(value, int | float):
            return float(value)
        if text is not None:
            try:
                return float(text)  # YAML reads 1e-4 (no dot) as a string
            except ValueError:
                pass
    elif isinstance(value, str):
        return value
    elif isinstance(value, int | float):  # `--set name=2024`
        return str(value)
    raise Mismatch(_describe(hint))


def _describe(hint: Any) -> str:
    """The type a hint names, in words: `a float`, `a list of integers`, `one of 'row', 'map'`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in NOUNS:
        noun = NOUNS[hint]
        return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"
    if hint is type(None):
        return "null"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return f"one of {', '.join(repr(a) for a in args)}"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {NOUNS[args[0]].split()[0]}s" if args[0] in NOUNS else f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} items ({', '.join(_describe(a) for a in args)})"
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        return "a mapping"
    return f"a {getattr(hint, '__name__', hint)}"


def with_training(config: Any, **fields: Any) -> Any:
    """A copy of `config` with `fields` set in every TrainConfig it holds, at any depth."""
    if isinstance(config, TrainConfig):
        return dataclasses.replace(config, **fields)
    if not dataclasses.is_dataclass(config):
        return config
    changed = {f.name: with_training(getattr(config, f.name), **fields) for f in dataclasses.fields(config)}
    return dataclasses.replace(config, **{k: v for k, v in changed.items() if v is not getattr(config, k)})
