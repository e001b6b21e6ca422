"""Checking values against the type hints of a dataclass, for configs read from TOML and records
read from JSON. Python's own ``isinstance`` is too lenient for both: ``True`` is an ``int``, and a
TOML string where a number goes would only fail deep inside torch. Every refusal names the key
and the value; the caller adds the file and the section.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import fields
from typing import Any, Literal, Union

__all__ = ["describe", "field_hints", "matches", "show", "unknown_keys"]


def show(value: Any, limit: int = 60) -> str:
    """``repr(value)`` on one line, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def field_hints(cls: type) -> dict[str, Any]:
    """``{field name: resolved type hint}`` of a dataclass (string annotations evaluated)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in fields(cls)}


def unknown_keys(d: dict[str, Any], cls: type) -> list[str]:
    """Keys of ``d`` that are not fields of the dataclass ``cls``, sorted."""
    known = {f.name for f in fields(cls)}
    return sorted(str(k) for k in d if k not in known)


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType)


def matches(value: Any, hint: Any, *, finite: bool = True) -> bool:
    """Whether ``value`` is of type ``hint`` as a config reader means it: ``bool`` is not an
    ``int``, an ``int`` is a ``float``, a list stands for a tuple, and (with ``finite``) a float
    must not be NaN or infinite."""
    if hint is Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    if _is_union(hint):
        return any(matches(value, h, finite=finite) for h in typing.get_args(hint))
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return any(type(value) is type(a) and value == a for a in args)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok and (not finite or math.isfinite(value))
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        item = args[0] if args else Any
        return all(matches(v, item, finite=finite) for v in value)
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            return False
        item = args[1] if len(args) == 2 else Any
        return all(isinstance(k, str) and matches(v, item, finite=finite) for k, v in value.items())
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def describe(hint: Any) -> str:
    """Words for a type hint, for error messages: ``int | None`` -> ``an integer (or nothing)``."""
    if _is_union(hint):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        text = " or ".join(describe(a) for a in args)
        return text + " (or nothing)" if len(args) < len(typing.get_args(hint)) else text
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(show(a) for a in args)
    if origin in (list, tuple):
        return f"a list of {_plural(args[0]) if args else 'values'}"
    if hint is dict or origin is dict:
        return "a table"
    return {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}.get(
        hint, getattr(hint, "__name__", str(hint)))


def _plural(hint: Any) -> str:
    return {bool: "booleans", int: "integers", float: "finite numbers", str: "strings"}.get(hint, describe(hint))
