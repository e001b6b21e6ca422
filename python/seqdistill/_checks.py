"""Type and range checks for configurations and records, run before any work starts.

One reading of a dataclass's type hints serves every reader of settings and records:

* the config dataclasses check (and normalise) their own fields on construction
  (:func:`check_fields`), and :meth:`DictConfig.from_dict <seqdistill._config.DictConfig.from_dict>`
  checks a dict before building one (:func:`check_values`): ``Class.key: expected ..., got value``;
* the experiment runner checks TOML sections and run records key by key (:func:`matches`,
  :func:`describe`, :func:`unknown_keys`) and adds the file and the ``[section]`` itself.

Python's own ``isinstance`` is too lenient for a config: ``True`` is an ``int``, and a string
where a number goes would only fail deep inside torch. So here ``bool`` is not an integer,
``2.5`` and ``2.0`` are not integers, an integer is a float (stored as one), a list stands for a
tuple, and NaN or infinity is refused where a float goes (records may allow them: ``finite=False``).
numpy scalars count as the Python numbers they hold. A hint these checks do not know (a class of
the package, a callable) is left to the dataclass's own ``__post_init__``.

The range helpers (:func:`at_least`, :func:`in_range`, :func:`one_of`) raise the same one-line
:class:`~seqdistill.errors.ConfigError`: ``Class.key: what was expected, got value``.
"""

from __future__ import annotations

import functools
import math
import numbers
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any, Literal, Union

from seqdistill.errors import ConfigError

__all__ = [
    "at_least",
    "bad",
    "check_fields",
    "check_values",
    "describe",
    "field_hints",
    "in_range",
    "matches",
    "one_of",
    "show",
    "unknown_keys",
]


# ------------------------------------------------------------------------------ showing values
def show(value: Any, limit: int = 60) -> str:
    """``repr(value)`` on one line, cut to ``limit`` characters (the TOML and record readers)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show_typed(value: Any) -> str:
    """A value in a config error: as written, with its type unless it is an int, float or str
    (``True (bool)``, ``[0] (list)``); tuples are shown as the lists they arrive as."""
    if isinstance(value, tuple):
        value = list(value)
    kind = type(value).__name__
    text = show(value, 80)
    return text if kind in ("int", "float", "str") else f"{text} ({kind})"


_UNSET: Any = object()


def bad(obj: Any, key: str, expected: str, value: Any = _UNSET) -> ConfigError:
    """The error for ``obj.key`` (``obj`` an instance, or a class with ``value`` given):
    ``Class.key: expected ..., got <value>``."""
    value = getattr(obj, key) if value is _UNSET else value
    name = obj.__name__ if isinstance(obj, type) else type(obj).__name__
    return ConfigError(f"{name}.{key}: expected {expected}, got {_show_typed(value)}")


# ------------------------------------------------------------------------------ type hints
@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in fields(cls)}


def field_hints(cls: type) -> dict[str, Any]:
    """``{field name: resolved type hint}`` of a dataclass (string annotations evaluated)."""
    return dict(_hints(cls))


def unknown_keys(d: Mapping[Any, Any], cls: type) -> list[str]:
    """Keys of ``d`` that are not fields of the dataclass ``cls``, sorted."""
    known = {f.name for f in fields(cls)}
    return sorted(str(k) for k in d if k not in known)


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType)


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool) or type(v).__name__ == "bool_"


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not _is_bool(v)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not _is_bool(v)


def is_finite(v: Any) -> bool:
    """Not NaN or infinite, and not an integer too large for a float (``math.isfinite(10**400)``
    raises OverflowError instead of answering; JSON and TOML hold any integer)."""
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def matches(value: Any, hint: Any, *, finite: bool = True) -> bool:
    """Whether ``value`` is of type ``hint`` as a config reader means it (see the module doc)."""
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
        return _is_int(value)
    if hint is float:
        return _is_real(value) and (not finite or is_finite(value))
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


def describe(hint: Any, *, none: str = " (or nothing)") -> str:
    """Words for a type hint, for error messages: ``int | None`` -> ``an integer (or nothing)``
    (TOML has no null); ``none=" or None"`` words it for Python callers."""
    if _is_union(hint):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        text = " or ".join(describe(a) for a in args)
        return text + none if len(args) < len(typing.get_args(hint)) else text
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(show(a) for a in args)
    if origin in (list, tuple):
        return f"a list of {_plural(args[0]) if args else 'values'}"
    if hint is dict or origin is dict:
        return "a table"
    return {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


def _plural(hint: Any) -> str:
    return {bool: "booleans", int: "integers", float: "finite numbers", str: "strings"}.get(hint, describe(hint))


_PLAIN = (bool, int, float, str, type(None))


def _plain(hint: Any) -> bool:
    """A hint built only from plain values (the ones :func:`matches` decides without a class of ours)."""
    if hint is Any or hint in _PLAIN or hint is dict:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return True
    if _is_union(hint) or origin in (list, tuple, dict):
        return all(a is Ellipsis or _plain(a) for a in args)
    return False


def _normalised(value: Any, hint: Any) -> Any:
    """What a config stores for a value that :func:`matches` ``hint``: Python numbers (an int
    where a float goes becomes a float), tuples where tuples go."""
    if value is None or isinstance(value, bool):
        return value
    if _is_union(hint):
        kinds = [a for a in typing.get_args(hint) if a is not type(None)]
        return _normalised(value, kinds[0]) if len(kinds) == 1 else value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is int:
        return int(value)
    if hint is float:
        return float(value)
    if origin is tuple and isinstance(value, (list, tuple)):
        item = args[0] if args and (len(args) == 1 or args[1] is Ellipsis) else Any
        return tuple(_normalised(v, item) for v in value)
    return value


# ------------------------------------------------------------------------------ configs
def _checked(cls: type, key: str, value: Any, hint: Any) -> Any:
    if not matches(value, hint):
        raise bad(cls, key, describe(hint, none=" or None"), value)
    return _normalised(value, hint)


def check_values(cls: type, d: Mapping[str, Any]) -> None:
    """The values of ``d`` (keys already known to be fields of ``cls``) against their fields'
    hints, before ``cls(**d)`` runs: ConfigError ``Class.key: expected ..., got value``."""
    hints = _hints(cls)
    for key, value in d.items():
        if key in hints and _plain(hints[key]):
            _checked(cls, key, value, hints[key])


def check_fields(obj: Any) -> None:
    """Check (and normalise in place) every field of the dataclass ``obj`` against its hint."""
    for key, hint in _hints(type(obj)).items():
        if not _plain(hint):
            continue
        value = getattr(obj, key)
        new = _checked(type(obj), key, value, hint)
        if new is not value:
            object.__setattr__(obj, key, new)


# ------------------------------------------------------------------------------ ranges
#: Seeds are integers in ``[0, SEED_LIMIT)``: numpy's legacy seeding (UMAP's ``random_state``) and
#: the shuffled control's generator take at most 32 bits, torch's ``manual_seed`` 64.
SEED_LIMIT = 2**32

#: The most CPU threads or worker processes one command or call starts (``--threads``,
#: ``--workers``, an experiment's ``workers``, an evaluation's scoring threads): far beyond any
#: machine's cores, far below the counts at which the operating system refuses to start threads
#: (a refusal that libraries report with a crash, not an error).
THREAD_LIMIT = 1024


def check_seed(obj: Any, key: str = "seed") -> None:
    """``obj.key`` must be an integer in ``[0, SEED_LIMIT)``."""
    v = getattr(obj, key)
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < SEED_LIMIT:
        raise bad(obj, key, f"an integer >= 0 and < 2**32 ({SEED_LIMIT})")


def seed_arg(where: str, seed: Any) -> int:
    """A seed passed as a function argument: an integer (Python or numpy) in ``[0, SEED_LIMIT)``,
    returned as ``int``; anything else is a ConfigError naming ``where``, never a TypeError from
    the conversion."""
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and 0 <= int(seed) < SEED_LIMIT:
        return int(seed)
    raise ConfigError(f"{where}: seed must be an integer >= 0 and < 2**32 ({SEED_LIMIT}), got {_show_typed(seed)}")


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
