"""Reading distillation targets from files: a ``targets.npy`` of ``[n_users, dim]`` numbers and an
optional ``targets_mask.npy`` of ``n_users`` booleans (True where the user has a profile), or a
folder written by ``seqdistill profiles reduce`` that holds both.

Shared by the experiment runner (``[profiles] source = "targets"``) and ``seqdistill train
--profiles``, so both accept and refuse the same files with the same words. Nothing is unpickled.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from seqdistill import _io
from seqdistill.errors import DataError

__all__ = ["MASK_FILE", "TARGETS_FILE", "load_profile_vectors", "read_targets"]

TARGETS_FILE = "targets.npy"
MASK_FILE = "targets_mask.npy"


def _read_npy(path: str | os.PathLike, key: str) -> np.ndarray:
    return _io.read_npy(path, key)


def read_targets(
    targets: str | os.PathLike,
    mask: str | os.PathLike | None,
    n_users: int,
    dim: int,
    *,
    keys: tuple[str, str] = ("targets", "mask"),
) -> tuple[np.ndarray, np.ndarray]:
    """``targets`` (float32 ``[n_users, dim]``) and ``mask`` (bool ``[n_users]``; all True when
    ``mask`` is None), checked: shape, numeric type, finite rows where the mask is set, a boolean
    (or 0/1) mask. ``keys`` name the two inputs in messages (a config key or a flag)."""
    t_key, m_key = keys
    values = _read_npy(targets, t_key)
    if values.shape != (n_users, dim) or values.dtype.kind not in "fiu":
        raise DataError(
            f"{targets}: {t_key}: expected numbers of shape ({n_users}, {dim}) "
            f"(users x model hidden), got {values.dtype} {values.shape}"
        )
    values = values.astype(np.float32)
    flags = np.ones(len(values), bool)
    if mask is not None:
        flags = _read_npy(mask, m_key)
        if flags.shape != (n_users,) or not (
            flags.dtype == bool or (flags.dtype.kind in "iu" and np.isin(flags, (0, 1)).all())
        ):
            raise DataError(f"{mask}: {m_key}: expected {n_users} booleans, got {flags.dtype} {flags.shape}")
        flags = flags.astype(bool)
        if not flags.any():
            raise DataError(
                f"{mask}: {m_key}: no user is marked as having a profile (all {n_users} entries false); "
                "nothing would be distilled"
            )
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1) & flags)
    if len(bad):
        raise DataError(f"{targets}: {t_key}: row {bad[0]} holds NaN or infinity")
    return values, flags


def load_profile_vectors(
    path: str | os.PathLike, n_users: int, dim: int, mask: str | os.PathLike | None = None, *, flag: str = "--profiles"
) -> tuple[np.ndarray, np.ndarray]:
    """Targets and mask from ``path``: a folder written by ``profiles reduce`` (its
    ``targets.npy`` and ``targets_mask.npy``) or one ``.npy`` file of targets, with ``mask`` an
    optional ``.npy`` of booleans (every user has a profile when it is absent)."""
    p = Path(path)
    if p.is_dir():
        if mask is not None:
            raise DataError(f"{flag} {path}: a folder brings its own {MASK_FILE}; give a mask only with a .npy file")
        for name in (TARGETS_FILE, MASK_FILE):
            if not (p / name).is_file():
                raise DataError(f"{flag} {path}: no {name} in the folder (expected the output of 'profiles reduce')")
        return read_targets(p / TARGETS_FILE, p / MASK_FILE, n_users, dim, keys=(flag, flag))
    if not p.exists():
        raise DataError(f"{flag} {path}: no such file or folder")
    return read_targets(p, mask, n_users, dim, keys=(flag, flag + "-mask"))
