"""One base for the small configuration dataclasses: ``to_dict`` / ``from_dict`` round trips,
with every mistake in the dict a :class:`~seqdistill.errors.ConfigError` naming the class, the
key and the value — an unknown key (never silently dropped), a missing required key, a value of
the wrong type (checked against the field's type hint before the class is built, so a string
where a number goes never reaches a comparison as a ``TypeError``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, asdict, fields
from typing import Any, TypeVar

from seqdistill._checks import check_values, show
from seqdistill.errors import ConfigError

T = TypeVar("T", bound="DictConfig")

_SHOWN = 3  # unknown keys whose values a message shows


class DictConfig:
    """Mixin for ``@dataclass`` configs."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/TOML-serialisable)."""
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], d: Mapping[str, Any]) -> T:
        """Inverse of :meth:`to_dict`; see the module doc for what is refused."""
        name = cls.__name__
        if not isinstance(d, Mapping):
            raise ConfigError(f"{name}.from_dict: expected a table of settings (a dict), got {show(d)}")
        known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted((k for k in d if k not in known), key=str)
        if unknown:
            given = ", ".join(f"{k} = {show(d[k], 40)}" for k in unknown[:_SHOWN])
            raise ConfigError(
                f"{name}.from_dict: unknown keys {[str(k) for k in unknown]} ({given}); known keys are {sorted(known)}"
            )
        missing = sorted(
            k for k, f in known.items() if k not in d and f.default is MISSING and f.default_factory is MISSING
        )
        if missing:
            raise ConfigError(f"{name}.from_dict: missing required keys {missing}")
        check_values(cls, d)
        return cls(**d)
