"""One base for the small configuration dataclasses: ``to_dict`` / ``from_dict`` round trips,
with unknown keys refused by name instead of silently dropped."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, TypeVar

T = TypeVar("T", bound="DictConfig")


class DictConfig:
    """Mixin for ``@dataclass`` configs."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/TOML-serialisable)."""
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], d: dict[str, Any]) -> T:
        """Inverse of :meth:`to_dict`; a key that is not a field is an error naming it."""
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{cls.__name__}.from_dict: unknown keys {unknown}; known keys are {sorted(known)}")
        return cls(**d)
