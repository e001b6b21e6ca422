"""Append-only, resumable profile store: a folder of parquet parts plus ``meta.json``.

Each batch of finished users is written as one new part (``part-000042.parquet``) under a
temporary name and renamed, so a crash loses at most the batch in flight and never leaves a
half-written file. A user's latest row wins: ``status == "ok"`` users are done and never redone;
``status == "error"`` users are retried on the next run. ``meta.json`` pins the model and prompt
hash: resuming with different ones is refused instead of mixing profiles.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

import polars as pl

SCHEMA: dict[str, Any] = {
    "user": pl.Int64, "user_id": pl.String, "profile": pl.String, "model": pl.String,
    "prompt_hash": pl.String, "prompt_tokens": pl.Int64, "completion_tokens": pl.Int64,
    "seconds": pl.Float64, "n_chunks": pl.Int64, "status": pl.String, "error": pl.String,
    "written_at": pl.Float64,
}
_PART = re.compile(r"^part-(\d{6})\.parquet$")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


class ProfileStore:
    """A profile store folder. ``meta`` (model, prompt hash, dataset, settings) is fixed at creation."""

    def __init__(self, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(f"{self.path}: a profile store is a folder, found a file")
        meta_path = self.path / "meta.json"
        if meta_path.is_file():
            self.meta = json.loads(meta_path.read_text())
            if meta is not None:
                for key in ("model", "prompt_hash", "dataset", "n_users"):
                    if key in meta and key in self.meta and meta[key] != self.meta[key]:
                        raise ValueError(
                            f"{meta_path}: store was made with {key}={self.meta[key]!r}, this run has "
                            f"{key}={meta[key]!r}; use a new store path")
        elif meta is not None:
            self.path.mkdir(parents=True, exist_ok=True)
            self.meta = dict(meta)
            atomic_write_json(meta_path, self.meta)
        else:
            raise FileNotFoundError(f"{meta_path}: no profile store here")

    def parts(self) -> list[Path]:
        return sorted(p for p in self.path.iterdir() if _PART.match(p.name))

    def rows(self) -> pl.DataFrame:
        """Every row ever appended, in append order."""
        parts = self.parts()
        if not parts:
            return pl.DataFrame(schema=SCHEMA)
        return pl.concat([pl.read_parquet(p) for p in parts], how="vertical")

    def table(self, ok_only: bool = False) -> pl.DataFrame:
        """The latest row per user, sorted by dense user id."""
        latest = self.rows().unique("user", keep="last", maintain_order=True).sort("user")
        return latest.filter(pl.col("status") == "ok") if ok_only else latest

    def done_users(self) -> set[int]:
        t = self.table(ok_only=True)
        return set(t["user"].to_list())

    def append(self, rows: Iterable[dict[str, Any]]) -> Path | None:
        """Write ``rows`` as one new part; returns its path (None when there are no rows)."""
        rows = list(rows)
        if not rows:
            return None
        now = time.time()
        for r in rows:
            missing = set(SCHEMA) - set(r) - {"written_at"}
            if missing:
                raise ValueError(f"{self.path}: row for user {r.get('user')!r} lacks {sorted(missing)}")
            r.setdefault("written_at", now)
        df = pl.DataFrame(rows, schema=SCHEMA)
        parts = self.parts()
        seq = int(_PART.match(parts[-1].name).group(1)) + 1 if parts else 0
        target = self.path / f"part-{seq:06d}.parquet"
        fd, tmp = tempfile.mkstemp(prefix=".part-", suffix=".parquet", dir=self.path)
        os.close(fd)
        try:
            df.write_parquet(tmp)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return target

    def export(self, path: str | os.PathLike) -> Path:
        """Write the latest ok row per user to one parquet file (atomically)."""
        out = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
        os.close(fd)
        try:
            self.table(ok_only=True).write_parquet(tmp)
            os.replace(tmp, out)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return out
