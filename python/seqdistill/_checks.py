"""Type and range checks for the configuration dataclasses, run before any work starts.

:func:`check_fields` reads each field's annotation (``int``, ``float``, ``str``, ``bool``,
``tuple[int, ...]``, each optionally ``| None``) and refuses a value of another type: a string
where a number goes, ``True`` where an integer goes (``bool`` is an ``int`` in Python, so it is
refused explicitly), ``2.5`` or ``2.0`` where an integer goes, NaN or infinity anywhere. Integers
are accepted where a float goes and stored as floats; lists are accepted for tuples.

The range helpers (:func:`at_least`, :func:`in_range`, :func:`one_of`) raise the same one-line
:class:`~seqdistill.errors.ConfigError`: ``Class.key: what was expected, got value``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from dataclasses import fields
from typing import Any

from seqdistill.errors import ConfigError

__all__ = ["at_least", "bad", "check_fields", "in_range", "one_of"]


def bad(obj: Any, key: str, expected: str, value: Any | None = None) -> ConfigError:
    """The error for ``obj.key``: ``Class.key: expected ..., got <value>``."""
    value = getattr(obj, key) if value is None else value
    return ConfigError(f"{type(obj).__name__}.{key}: expected {expected}, got {_show(value)}")


def _show(value: Any) -> str:
    if isinstance(value, tuple):  # configs arrive as lists (TOML, JSON); show them as written
        value = list(value)
    text = repr(value)
    text = text if len(text) <= 80 else text[:77] + "..."
    kind = type(value).__name__
    return text if kind in ("int", "float", "str") else f"{text} ({kind})"


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and type(v).__name__ != "bool_"


def _is_real(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, numbers.Real)) and not isinstance(v, bool) and type(v).__name__ != "bool_"


_EXPECTED = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
             "tuple[int, ...]": "a list of integers"}


def _coerce(obj: Any, key: str, value: Any, ann: str, optional: bool) -> Any:
    """``value`` checked against one annotation term; returns the value to store."""
    expected = _EXPECTED.get(ann, ann) + (" or None" if optional else "")
    if ann == "int":
        ok = _is_int(value)
    elif ann == "float":
        ok = _is_real(value)
        if ok and not math.isfinite(float(value)):
            raise bad(obj, key, "a finite number" + (" or None" if optional else ""), value)
    elif ann == "bool":
        ok = isinstance(value, bool)
    elif ann == "str":
        ok = isinstance(value, str)
    elif ann == "tuple[int, ...]":
        ok = isinstance(value, (list, tuple)) and all(_is_int(v) for v in value)
    else:
        return value  # an annotation this checker does not know: left to the class
    if not ok:
        raise bad(obj, key, expected, value)
    if ann == "int":
        return int(value)
    if ann == "float":
        return float(value)
    if ann == "tuple[int, ...]":
        return tuple(int(v) for v in value)
    return value


def check_fields(obj: Any) -> None:
    """Check (and normalise in place) every field of the dataclass ``obj`` against its annotation."""
    for f in fields(obj):
        ann = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        terms = [t.strip() for t in ann.split("|")]
        kinds = [t for t in terms if t != "None"]
        optional = "None" in terms
        value = getattr(obj, f.name)
        if len(kinds) != 1 or (value is None and optional):
            continue
        if value is None:
            raise bad(obj, f.name, _EXPECTED.get(kinds[0], kinds[0]), value)
        new = _coerce(obj, f.name, value, kinds[0], optional)
        if new is not value:
            object.__setattr__(obj, f.name, new)


def at_least(obj: Any, key: str, low: float, *, strict: bool = False) -> None:
    """``obj.key`` (when not None) must be ``>= low`` (``> low`` when ``strict``)."""
    v = getattr(obj, key)
    if v is not None and (v <= low if strict else v < low):
        raise bad(obj, key, f"a value {'>' if strict else '>='} {low}")


def in_range(obj: Any, key: str, low: float, high: float, *, high_open: bool = False) -> None:
    """``low <= obj.key <= high`` (``< high`` when ``high_open``)."""
    v = getattr(obj, key)
    if not (low <= v < high if high_open else low <= v <= high):
        raise bad(obj, key, f"a value in [{low}, {high}{')' if high_open else ']'}")


def one_of(obj: Any, key: str, choices: Iterable[str]) -> None:
    """``obj.key`` must be one of ``choices``."""
    choices = tuple(choices)
    if getattr(obj, key) not in choices:
        raise bad(obj, key, f"one of {list(choices)}")
