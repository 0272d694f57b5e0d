"""Typed construction: a dataclass from parsed JSON, every field checked against its annotation."""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Union

from .errors import ManifestError


# ---- typed construction -----------------------------------------------------------------------------
def _build(cls: type, data: Any, where: str):
    """``cls(**data)`` with every field checked against its annotation; one line on any problem."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ManifestError(f"'{where}' must be an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ManifestError(f"unknown field(s) in '{where}': {', '.join(unknown)}")
    missing = [name for name, f in fields.items()
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and name not in data]  # type: ignore[misc]
    if missing:
        raise ManifestError(f"missing field(s) in '{where}': {', '.join(missing)}")
    hints = typing.get_type_hints(cls)
    return cls(**{name: _convert(value, hints[name], f"{where}.{name}" if where != "manifest" else name)
                  for name, value in data.items()})


def _convert(value: Any, hint: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        problems = []
        for option in options:
            try:
                return _convert(value, option, where)
            except ManifestError as exc:
                problems.append(exc)
        raise problems[0]
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ManifestError(f"'{where}' must be a list, got {type(value).__name__}")
        return [_convert(item, args[0], f"{where}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ManifestError(f"'{where}' must be an object, got {type(value).__name__}")
        return {k: _convert(v, args[1], f"{where}.{k}") for k, v in value.items()}
    scalar = _SCALARS.get(hint)
    if scalar is None:
        raise ManifestError(f"'{where}': unsupported type {hint}")
    accepts, name = scalar
    if not accepts(value):
        raise ManifestError(f"'{where}' must be {name}, got {type(value).__name__} {str(value)[:40]!r}")
    return float(value) if hint is float else value


_SCALARS = {
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number"),
    float: (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    str: (lambda v: isinstance(v, str), "a string"),
    bool: (lambda v: isinstance(v, bool), "true or false"),
}
