"""Frozen config dataclasses built from config.yaml sections by their field names."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")

#: The field types whose config values are cast (YAML may write 3 for 3.0); others pass as they are.
_CASTS = {int: int, float: float}


def _cast(kind: Any, value: Any) -> Any:
    """`value` as a field of type `kind`: int and float cast, tuples of them element-wise."""
    if kind in _CASTS:
        return _CASTS[kind](value)
    if typing.get_origin(kind) is tuple:
        args = typing.get_args(kind)
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[float, ...]
            return tuple(_cast(args[0], v) for v in value)
        return tuple(_cast(a, v) for a, v in zip(args, value, strict=True))  # tuple[float, float]
    return value


def from_sections(cls: type[T], *sections: Mapping[str, Any]) -> T:
    """An instance of dataclass `cls`, each field from the first section that has its name.

    Keys that are not fields are ignored; a field no section has takes its default (KeyError
    naming it if it has none).
    """
    kinds = typing.get_type_hints(cls)
    values = {}
    for field in dataclasses.fields(cls):
        section = next((s for s in sections if field.name in s), None)
        if section is not None:
            values[field.name] = _cast(kinds[field.name], section[field.name])
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise KeyError(field.name)
    return cls(**values)
