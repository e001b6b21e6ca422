"""``PreparedDataset``: an encoded, filtered and split interaction log, and its folder on disk.

Folder layout (``format_version`` 1)::

    manifest.json        name, domain, split, k_core, stats, format_version
    log.parquet          user (int32), item (int64, 1..n_items), timestamp (int64)[, rating (float32)]
                         in CSR order: users ascending, each user's rows chronological
    users.parquet        user (0..n_users-1), user_id (raw), train_end
    items.parquet        item (0..n_items), item_id (raw; row 0 is the padding item, null)
    targets_valid.parquet, targets_test.parquet   user, position
    item_meta.parquet    optional item metadata keyed by dense item

``save`` builds the folder under a temporary name and swaps it in (:func:`seqdistill._io.atomic_dir`);
it refuses a folder that is not a prepared dataset and replaces a prepared dataset (unless
``overwrite=False``). ``load`` repairs an interrupted save and checks that the files agree with each other.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from seqdistill import _io
from seqdistill.errors import DataError

__all__ = ["FORMAT_VERSION", "PreparedDataset", "is_dataset_folder"]

FORMAT_VERSION = 1
_FILES = ("log.parquet", "users.parquet", "items.parquet", "targets_valid.parquet", "targets_test.parquet")


def is_dataset_folder(folder: str | Path) -> bool:
    """True when ``folder`` holds a prepared dataset (a seqdistill manifest)."""
    mf = Path(folder) / "manifest.json"
    if not mf.is_file():
        return False
    try:
        return "format_version" in json.loads(mf.read_text())
    except (OSError, ValueError):
        return False


@dataclass
class PreparedDataset:
    """An encoded, filtered and split interaction log (see the module doc and docs/architecture.md)."""

    name: str
    domain: str
    user_ids: pl.Series
    item_ids: pl.Series
    offsets: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    ratings: np.ndarray | None
    train_end: np.ndarray
    valid_targets: tuple[np.ndarray, np.ndarray]
    test_targets: tuple[np.ndarray, np.ndarray]
    item_meta: pl.DataFrame | None = None
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_items(self) -> int:
        """Number of real items; dense item ids are 1..n_items (0 is padding)."""
        return len(self.item_ids) - 1

    @property
    def n_interactions(self) -> int:
        return len(self.items)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def targets(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        """``(users, positions)`` of the validation or test targets."""
        if part == "valid":
            return self.valid_targets
        if part == "test":
            return self.test_targets
        raise ValueError(f"part must be 'valid' or 'test', got {part!r}")

    def history(self, user: int, end: int | None = None) -> np.ndarray:
        """Dense item ids of ``user``'s log before position ``end`` (default: training prefix)."""
        start = int(self.offsets[user])
        stop = start + int(self.train_end[user] if end is None else end)
        return self.items[start:stop]

    def user_column(self) -> np.ndarray:
        """Dense user id of every log row (CSR order)."""
        return np.repeat(np.arange(self.n_users, dtype=np.int64), self.lengths)

    @property
    def stats(self) -> dict[str, Any]:
        return self.manifest.get("stats", {})

    def fingerprint(self) -> str:
        """A hash of who is in this dataset and where their training ends: the raw user and item
        ids, every user's training prefix length and the split thresholds. Two datasets with the
        same fingerprint give profiles the same meaning (profile stores record it)."""
        h = hashlib.blake2b(digest_size=16)
        for s in (self.user_ids, self.item_ids):
            h.update(str(s.dtype).encode())
            if s.dtype == pl.String:
                h.update("\0".join("\1" if v is None else v for v in s.to_list()).encode("utf-8"))
            else:
                h.update(np.ascontiguousarray(s.fill_null(0).to_numpy(), dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(self.train_end, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(self.lengths, dtype=np.int64).tobytes())
        h.update(repr((self.stats.get("test_threshold"), self.stats.get("valid_threshold"))).encode())
        return h.hexdigest()

    # ----------------------------------------------------------------------------------- I/O
    def save(self, folder: str | Path, overwrite: bool = True) -> Path:
        """Write the dataset to ``folder`` atomically (a temporary sibling, then a rename).

        ``folder`` may be absent or empty. A folder holding a prepared dataset is replaced
        (``overwrite=False`` refuses that too, as ``seqdistill prepare`` does without
        ``--overwrite``); any other non-empty folder is refused
        (:class:`~seqdistill.errors.OutputError`) and left untouched.
        """
        folder = Path(folder)
        with _io.atomic_dir(folder, is_ours=is_dataset_folder, what="prepared dataset", overwrite=overwrite) as tmp:
            log = {"user": self.user_column().astype(np.int32), "item": self.items, "timestamp": self.timestamps}
            if self.ratings is not None:
                log["rating"] = self.ratings
            pl.DataFrame(log).write_parquet(tmp / "log.parquet")
            pl.DataFrame(
                {"user": np.arange(self.n_users, dtype=np.int64), "user_id": self.user_ids, "train_end": self.train_end}
            ).write_parquet(tmp / "users.parquet")
            items = pl.DataFrame({"item": np.arange(self.n_items + 1, dtype=np.int64), "item_id": self.item_ids})
            items.write_parquet(tmp / "items.parquet")
            if self.item_meta is not None:
                self.item_meta.write_parquet(tmp / "item_meta.parquet")
            for part in ("valid", "test"):
                u, p = self.targets(part)
                pl.DataFrame({"user": u, "position": p}).write_parquet(tmp / f"targets_{part}.parquet")
            manifest = dict(self.manifest, name=self.name, domain=self.domain, format_version=FORMAT_VERSION)
            _io.write_json(tmp / "manifest.json", manifest, indent=2)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> PreparedDataset:
        """Read a folder written by :meth:`save`; raises :class:`~seqdistill.errors.DataError`
        naming the file when the folder is not a dataset or its files disagree."""
        folder = Path(folder)
        _io.recover_dir(folder)
        if folder.exists() and not folder.is_dir():
            raise DataError(f"{folder}: is a file, not a prepared dataset folder")
        if not folder.is_dir():
            raise DataError(f"{folder}: no such folder (expected a prepared dataset)")
        mf = folder / "manifest.json"
        if not mf.is_file():
            raise DataError(f"{folder}: not a prepared dataset (no manifest.json)")
        try:
            manifest = json.loads(mf.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise DataError(f"{mf}: unreadable manifest ({e})") from None
        if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
            got = manifest.get("format_version") if isinstance(manifest, dict) else manifest
            raise DataError(f"{mf}: format_version {got!r}, expected {FORMAT_VERSION}")
        for key in ("name", "domain"):
            if not isinstance(manifest.get(key), str):
                raise DataError(f"{mf}: missing or non-string {key!r}")
        missing = [f for f in _FILES if not (folder / f).is_file()]
        if missing:
            raise DataError(f"{folder}: incomplete prepared dataset, missing {missing}")
        log = _read(folder / "log.parquet", {"user": "int", "item": "int", "timestamp": "int"})
        users = _read(folder / "users.parquet", {"user": "int", "user_id": None, "train_end": "int"})
        items = _read(folder / "items.parquet", {"item": "int", "item_id": None})
        n_users, n_items = users.height, items.height - 1
        ucol = log.get_column("user").to_numpy()
        if len(ucol) and (np.any(np.diff(ucol) < 0) or ucol[0] < 0 or ucol[-1] >= n_users):
            raise DataError(
                f"{folder / 'log.parquet'}: column 'user' is not sorted within 0..{n_users - 1} "
                "(the file does not match users.parquet)"
            )
        counts = np.bincount(ucol, minlength=n_users) if n_users else np.zeros(0, np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        item_col = log.get_column("item").to_numpy().astype(np.int64)
        if len(item_col) and (item_col.min() < 1 or item_col.max() > n_items):
            raise DataError(
                f"{folder / 'log.parquet'}: column 'item' has values outside 1..{n_items} "
                "(the file does not match items.parquet)"
            )
        train_end = users.get_column("train_end").to_numpy().astype(np.int64)
        if np.any(train_end < 0) or np.any(train_end > counts):
            u = int(np.flatnonzero((train_end < 0) | (train_end > counts))[0])
            raise DataError(
                f"{folder / 'users.parquet'}: train_end of user {u} is {train_end[u]}, "
                f"but the user has {counts[u]} rows in log.parquet"
            )
        targets = {}
        for part in ("valid", "test"):
            path = folder / f"targets_{part}.parquet"
            t = _read(path, {"user": "int", "position": "int"})
            tu = t.get_column("user").to_numpy().astype(np.int64)
            tp = t.get_column("position").to_numpy().astype(np.int64)
            if len(tu) and (tu.min() < 0 or tu.max() >= n_users):
                raise DataError(f"{path}: column 'user' has values outside 0..{n_users - 1}")
            if len(tu) and (np.any(tp < 1) or np.any(tp >= counts[tu])):
                r = int(np.flatnonzero((tp < 1) | (tp >= counts[tu]))[0])
                raise DataError(f"{path}: row {r}: position {tp[r]} is outside 1..{counts[tu[r]] - 1} for user {tu[r]}")
            targets[part] = (tu, tp)
        stats = manifest.get("stats", {})
        for key, have in (("users", n_users), ("items", n_items), ("interactions", len(item_col))):
            if key in stats and stats[key] != have:
                raise DataError(f"{mf}: stats.{key} = {stats[key]} but the files hold {have}")
        meta_path = folder / "item_meta.parquet"
        return cls(
            name=manifest["name"],
            domain=manifest["domain"],
            user_ids=users.get_column("user_id"),
            item_ids=items.get_column("item_id"),
            offsets=offsets,
            items=item_col,
            timestamps=log.get_column("timestamp").to_numpy().astype(np.int64),
            ratings=log.get_column("rating").to_numpy().astype(np.float32) if "rating" in log.columns else None,
            train_end=train_end,
            valid_targets=targets["valid"],
            test_targets=targets["test"],
            item_meta=_read(meta_path, {}) if meta_path.exists() else None,
            manifest=manifest,
        )


def _read(path: Path, columns: dict[str, str | None]) -> pl.DataFrame:
    """A parquet file of the dataset, with the columns it must have (``"int"``: an integer type)."""
    try:
        df = pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as e:
        raise DataError(
            f"{path}: unreadable parquet file ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from None
    for col, kind in columns.items():
        if col not in df.columns:
            raise DataError(f"{path}: missing column {col!r} (has {df.columns})")
        if kind == "int" and not df.schema[col].is_integer():
            raise DataError(f"{path}: column {col!r} has type {df.schema[col]}, expected integers")
        if kind == "int" and df.get_column(col).null_count():
            raise DataError(f"{path}: column {col!r} has nulls")
    return df
