"""The packaged experiment presets (``experiments/presets/<name>.toml``), found without importing
:mod:`seqdistill.experiments`: the CLI lists them in its help, which every command builds."""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable

__all__ = ["list_presets", "preset_file"]


def _folder() -> Traversable:
    return resources.files("seqdistill") / "experiments" / "presets"


def list_presets() -> list[str]:
    """Names of the packaged presets."""
    return sorted(f.name[:-5] for f in _folder().iterdir() if f.name.endswith(".toml"))


def preset_file(name: str) -> Traversable:
    """The TOML file of the preset ``name`` (one of :func:`list_presets`)."""
    return _folder() / f"{name}.toml"
