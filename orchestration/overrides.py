"""Overrides of frozen config dataclasses by dotted path, rejecting unknown keys with the valid ones."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from core.train import TrainConfig


def _parse(value: str) -> Any:
    """A command-line value as JSON when it parses (numbers, booleans, lists), else the string itself."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def apply_overrides(config: Any, overrides: Mapping[str, Any]) -> Any:
    """A copy of `config` with each `a.b.c` path set; a string value is read as JSON when it can be."""
    for path, value in overrides.items():
        config = _set(config, path.split("."), _parse(value) if isinstance(value, str) else value, path)
    return config


def _set(config: Any, keys: list[str], value: Any, path: str) -> Any:
    if not dataclasses.is_dataclass(config):
        raise ValueError(f"cannot set {path!r}: {type(config).__name__} has no fields")
    names = [f.name for f in dataclasses.fields(config)]
    if keys[0] not in names:
        raise ValueError(f"unknown setting {path!r} of {type(config).__name__}; valid: {', '.join(names)}")
    if len(keys) > 1:
        value = _set(getattr(config, keys[0]), keys[1:], value, path)
    elif isinstance(getattr(config, keys[0]), tuple) and isinstance(value, list):
        value = tuple(value)
    return dataclasses.replace(config, **{keys[0]: value})


def with_training(config: Any, **fields: Any) -> Any:
    """A copy of `config` with `fields` set in every TrainConfig it holds, at any depth."""
    if isinstance(config, TrainConfig):
        return dataclasses.replace(config, **fields)
    if not dataclasses.is_dataclass(config):
        return config
    changed = {f.name: with_training(getattr(config, f.name), **fields) for f in dataclasses.fields(config)}
    return dataclasses.replace(config, **{k: v for k, v in changed.items() if v is not getattr(config, k)})
