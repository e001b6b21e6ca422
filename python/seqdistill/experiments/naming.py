"""Run and variant names that are safe as file and folder names.

A run's name becomes ``runs/<run>.json`` and ``work/<run>/``: it must never climb out of those
folders, whatever a grid value holds. Names are built from :func:`slug` (only ``[A-Za-z0-9._-]``,
no ``..``, starting with a letter or digit, at most :data:`MAX_LEN` characters); where two different
settings slug to the same name, each gets a short hash of its settings appended.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

__all__ = ["MAX_LEN", "RUN_NAME", "is_run_name", "run_name", "settings_hash", "slug", "unique_names"]

MAX_LEN = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# what run_name produces: a slug, "__seed", a non-negative integer
RUN_NAME = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_LEN - 1}}}__seed[0-9]{{1,20}}$")


def slug(text: str) -> str:
    """``text`` reduced to ``[A-Za-z0-9._-]``: other runs of characters become ``-``, ``..``
    becomes ``.``, it starts with a letter or digit, at most :data:`MAX_LEN` characters; never empty."""
    s = _UNSAFE.sub("-", str(text))
    while ".." in s:
        s = s.replace("..", ".")
    s = s.lstrip("._-")[:MAX_LEN].rstrip(".-")
    return s or "x"


def settings_hash(settings: Any) -> str:
    """8 hex digits of a SHA-256 over the canonical JSON of ``settings``."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def unique_names(wanted: list[tuple[str, Any]]) -> list[str]:
    """Slugs of the wanted names, made unique: every name whose slug is shared by entries with
    different settings gets ``-<settings_hash>`` (the slug cut so the result fits MAX_LEN)."""
    slugs = [slug(name) for name, _ in wanted]
    out = []
    for s, (_, settings) in zip(slugs, wanted):
        clash = {settings_hash(x) for t, (_, x) in zip(slugs, wanted) if t == s}
        if len(clash) > 1:
            h = settings_hash(settings)
            s = f"{s[: MAX_LEN - len(h) - 1].rstrip('.-')}-{h}"
        out.append(s)
    return out


def run_name(variant: str, seed: int) -> str:
    """``<variant>__seed<seed>``; the variant is slugged again, so the result is always safe."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"run_name: seed must be a non-negative integer, got {seed!r}")
    return f"{slug(variant)}__seed{seed}"


def is_run_name(name: str) -> bool:
    """Whether ``name`` has the shape :func:`run_name` gives (used before removing a work folder)."""
    return bool(RUN_NAME.match(name)) and ".." not in name
