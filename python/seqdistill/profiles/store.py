"""Append-only, resumable profile store: a folder of parquet parts plus ``meta.json``.

Each batch of finished users is written as one new part (``part-000042.parquet``) through
:mod:`seqdistill._io` (temporary name, fsync, rename), so a crash loses at most the batch in
flight. A user's latest row wins: ``status == "ok"`` users are done and never redone;
``status == "error"`` users are retried on the next run.

What the store guards against:

* **Another dataset or model.** ``meta.json`` pins the model, the prompt hash, the dataset's name,
  size and fingerprint (:meth:`seqdistill.data.PreparedDataset.fingerprint`: raw ids, training
  cutoffs, thresholds). Resuming with any of them changed is a :class:`~seqdistill.errors.StoreError`.
  A store written before fingerprints existed is accepted once with a warning and then records
  the fingerprint of the dataset that resumed it.
* **Two writers.** A writing session (:meth:`ProfileStore.writing`; every ``append`` takes one)
  holds an exclusive, non-blocking ``flock`` on ``<store>/.lock``; a second process is refused
  with the first one's pid. Part numbers are allocated under the lock.
* **Damaged files.** A part that cannot be read (torn by a crash or a full disk) is named in a
  warning and moved aside to ``part-NNNNNN.parquet.torn``; its users are no longer done, so the
  next run profiles them again. A folder with parts but no ``meta.json`` is an error, never a new
  store. Temporaries of dead writers are removed when the store is opened.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import polars as pl

from seqdistill import _io
from seqdistill.data.dataset import fingerprints_match
from seqdistill.data.interactions import quiet_polars
from seqdistill.errors import OutputError, SeqdistillWarning, StoreError

SCHEMA: dict[str, Any] = {
    "user": pl.Int64,
    "user_id": pl.String,
    "profile": pl.String,
    "model": pl.String,
    "prompt_hash": pl.String,
    "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64,
    "seconds": pl.Float64,
    "n_chunks": pl.Int64,
    "status": pl.String,
    "error": pl.String,
    "written_at": pl.Float64,
}
META = "meta.json"
LOCK = ".lock"
_PART = re.compile(r"^part-(\d{6})\.parquet$")
_TORN = re.compile(r"^part-(\d{6})\.parquet\.torn(?:-\d+)?$")  # unreadable parts moved aside
_OLD_TMP = re.compile(r"^\.(?:part-.+\.parquet|meta\.json\..+)$")  # temporaries of seqdistill before _io
CHECKED_KEYS = ("model", "prompt_hash", "dataset", "n_users")
SETTINGS_KEYS = ("generation", "history")  # compared setting by setting, see _check_settings


def _setting_defaults(section: str) -> dict[str, Any]:
    """What a store written before a setting existed used: the config class's default."""
    if section == "generation":
        from .llm import GenerationConfig

        return GenerationConfig().to_dict()
    from .history import HistoryConfig

    return HistoryConfig().to_dict()


def dataset_fingerprint(ds: Any) -> str | None:
    """``ds.fingerprint()`` when the dataset has one (``PreparedDataset`` does), else None."""
    fingerprint = getattr(ds, "fingerprint", None)
    return str(fingerprint()) if callable(fingerprint) else None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


class ProfileStore:
    """A profile store folder. ``meta`` (model, prompt hash, dataset, settings) is fixed at creation.

    ``ProfileStore(path)`` opens an existing store for reading; ``ProfileStore(path, meta)``
    creates it (the folder must be absent or empty) or resumes it (``meta`` must agree).
    """

    def __init__(self, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None
        self._lock_depth = 0
        if meta is not None and not isinstance(meta, dict):
            raise StoreError(f"{self.path}: the store's meta must be a dict of settings, got {type(meta).__name__}")
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"{self.path}: a profile store is a folder, found a file")
        meta_path = self.path / META
        if meta is None:
            if not meta_path.is_file():
                self._refuse_without_meta(creating=False)
            self.meta = self._read_meta()
            self._check_parts()
            _io.clean_stale(self.path)
            return
        if not meta_path.is_file():  # refuse a foreign folder before putting a lock file into it
            self._refuse_without_meta(creating=True)
        self.path.mkdir(parents=True, exist_ok=True)
        with self.writing():  # create-or-check under the lock: two creators cannot race
            if meta_path.is_file():
                self.meta = self._read_meta()
                self._check_meta(dict(meta))
            else:
                self._refuse_without_meta(creating=True)
                self.meta = dict(meta)
                self._write_meta()

    # ------------------------------------------------------------------------------ meta
    def _read_meta(self) -> dict[str, Any]:
        meta_path = self.path / META
        try:
            meta = _io.loads_json(meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise StoreError(f"{meta_path}: cannot read the store's meta.json ({_first_line(e)})") from None
        if not isinstance(meta, dict):
            raise StoreError(f"{meta_path}: expected a JSON object, found {type(meta).__name__}")
        return meta

    def _write_meta(self) -> None:
        _io.write_json(self.path / META, self.meta, indent=2, sort_keys=True)

    def _check_meta(self, meta: dict[str, Any]) -> None:
        """Refuse a resume whose dataset, model or prompts differ from the store's."""
        meta_path = self.path / META
        self._refuse_other_dataset(meta.get("fingerprint"))
        for key in CHECKED_KEYS:
            if key in meta and key in self.meta and meta[key] != self.meta[key]:
                raise StoreError(
                    f"{meta_path}: store was made with {key}={self.meta[key]!r}, this run has "
                    f"{key}={meta[key]!r}; use a new store path"
                )
        self._check_settings(meta)
        self._note_unchecked(meta.get("fingerprint"), adopt=True)

    def _check_settings(self, meta: dict[str, Any]) -> None:
        """Refuse a resume whose decoding or history settings differ from the store's: profiles of
        one store are made one way. A setting the store does not record (written before it
        existed) counts as that setting's default, which is how those profiles were made."""
        for section in SETTINGS_KEYS:
            old, new = self.meta.get(section), meta.get(section)
            if not isinstance(old, dict) or not isinstance(new, dict):
                continue
            defaults = _setting_defaults(section)
            for key in sorted(set(old) | set(new), key=str):
                was, now = old.get(key, defaults.get(key)), new.get(key, defaults.get(key))
                if was != now:
                    raise StoreError(
                        f"{self.path / META}: store was made with {section}.{key}={was!r}, this run has "
                        f"{section}.{key}={now!r}; use the store's setting or a new store path"
                    )

    def _refuse_other_dataset(self, new: str | None) -> None:
        old = self.meta.get("fingerprint")
        if new is not None and old is not None and not fingerprints_match(old, new):
            raise StoreError(
                f"{self.path}: store belongs to the dataset with fingerprint {old}, this dataset has "
                f"fingerprint {new}; use a new store path for this dataset (or the dataset the store was made for)"
            )

    def _note_unchecked(self, new: str | None, adopt: bool) -> None:
        """Warn when one side has no fingerprint; with ``adopt`` a legacy store records ``new``."""
        old = self.meta.get("fingerprint")
        if new is not None and old is None:
            warnings.warn(
                f"{self.path}: store has no dataset fingerprint (written before fingerprints); "
                f"assuming it belongs to this dataset{' and recording ' + new if adopt else ''}",
                SeqdistillWarning,
                stacklevel=4,
            )
            if adopt:
                self.meta["fingerprint"] = new
                self._write_meta()
        elif new is None and old is not None:
            warnings.warn(
                f"{self.path}: the dataset has no fingerprint(), so the store cannot check that it belongs to it",
                SeqdistillWarning,
                stacklevel=4,
            )

    def check_dataset(self, ds: Any) -> None:
        """Raise :class:`StoreError` unless the store was made for ``ds`` (size and fingerprint).

        For readers of an existing store (training with its profiles); a legacy store without a
        fingerprint is accepted with a warning (and not modified).
        """
        n = self.meta.get("n_users")
        if n is not None and n != int(ds.n_users):
            raise StoreError(
                f"{self.path}: store has n_users={n}, the dataset has {int(ds.n_users)}; "
                "generate the profiles for this dataset"
            )
        new = dataset_fingerprint(ds)
        self._refuse_other_dataset(new)
        self._note_unchecked(new, adopt=False)

    def _refuse_without_meta(self, creating: bool) -> None:
        """No meta.json: fine to create in an absent or empty folder, an error anywhere else."""
        names = sorted(p.name for p in self.path.iterdir()) if self.path.is_dir() else []
        parts = [n for n in names if _PART.match(n) or _TORN.match(n)]
        if parts:
            raise StoreError(
                f"{self.path}: meta.json is missing but the folder holds {len(parts)} profile part(s) "
                f"(e.g. {parts[0]}); restore meta.json, or move the parts away to start a new store"
            )
        others = [n for n in names if n != LOCK and not _OLD_TMP.match(n) and _io.TMP_TAG not in n]
        if not creating:
            raise StoreError(
                f"{self.path}: no profile store here (no {META}); create one with 'seqdistill profiles generate'"
            )
        if others:
            raise StoreError(
                f"{self.path}: folder exists and is not a profile store (no {META}; holds "
                f"{others[0]!r}); choose a new or empty folder"
            )

    # ------------------------------------------------------------------------------ lock
    @contextlib.contextmanager
    def writing(self) -> Iterator[ProfileStore]:
        """Hold the store's exclusive lock for a writing session (re-entrant in this object).

        A second process (or a second ``ProfileStore`` on the same folder) is refused with
        :class:`StoreError` naming the holder's pid. The first acquisition also tidies the
        folder: temporaries of dead writers go, unreadable parts are moved aside.
        """
        self._acquire()
        try:
            yield self
        finally:
            self._release()

    def _acquire(self) -> None:
        if self._lock_depth:
            self._lock_depth += 1
            return
        lock_path = self.path / LOCK
        # The lock file is never replaced (a rename would give two writers two inodes to lock),
        # so it is the one file here not written through _io; it only holds the holder's pid.
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreError(f"{lock_path}: cannot open the store's lock file ({_first_line(e)})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StoreError(
                    f"{self.path}: store is in use by pid {holder} (another process is writing "
                    "profiles to it); wait for it to finish or use another store path"
                ) from None
            raise StoreError(f"{lock_path}: cannot lock the store ({_first_line(e)})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._lock_fd, self._lock_depth = fd, 1
        try:
            self._tidy()
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        self._lock_depth -= 1
        if self._lock_depth == 0 and self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            os.close(fd)  # closing the descriptor releases the flock

    def _tidy(self) -> None:
        """Under the lock: drop temporaries of dead or older writers, move unreadable parts aside."""
        for p in self.path.iterdir():
            if _OLD_TMP.match(p.name):
                with contextlib.suppress(OSError):
                    p.unlink()
        _io.clean_stale(self.path)
        self._check_parts()

    # ------------------------------------------------------------------------------ parts
    def parts(self) -> list[Path]:
        return sorted(p for p in self.path.iterdir() if _PART.match(p.name))

    def _check_parts(self) -> None:
        """Read each part's footer (cheap): a torn file has none."""
        for p in self.parts():
            try:
                _io.check_parquet(p)  # damage polars' reader aborts the process on
                with quiet_polars():
                    schema = pl.read_parquet_schema(p)
            except Exception as e:  # noqa: BLE001 - any failure to read means the part is damaged
                self._set_aside(p, e)
                continue
            self._check_schema(p, dict(schema))

    def _check_schema(self, part: Path, schema: dict[str, Any]) -> None:
        if schema != SCHEMA:
            raise StoreError(
                f"{part}: columns {list(schema)} with types {[str(t) for t in schema.values()]} "
                f"are not a profile part's {list(SCHEMA)}; move the file out of the store"
            )

    def _set_aside(self, part: Path, err: BaseException) -> None:
        """Move an unreadable part to ``<name>.torn`` (under the lock) so its users are redone."""
        reason = _first_line(err)
        if not part.exists():  # another reader moved it already
            return
        try:
            with self.writing():
                if not part.exists():  # taking the lock tidied the folder: already moved and named
                    return
                dest = part.with_name(part.name + ".torn")
                k = 1
                while dest.exists():
                    dest, k = part.with_name(f"{part.name}.torn-{k}"), k + 1
                os.replace(part, dest)
                _io.fsync_dir(self.path)
        except StoreError:  # another process holds the lock: just skip the part this time
            warnings.warn(
                f"{part}: unreadable part ({reason}); skipped (the store is in use, so it is left "
                "in place); its users count as not done",
                SeqdistillWarning,
                stacklevel=3,
            )
            return
        warnings.warn(
            f"{part}: unreadable part ({reason}); moved aside to {dest.name}; its users will be "
            "profiled again on resume",
            SeqdistillWarning,
            stacklevel=3,
        )

    def _read_part(self, part: Path) -> pl.DataFrame | None:
        try:
            with quiet_polars():
                df = pl.read_parquet(part)
        except FileNotFoundError:
            return None  # moved aside by another reader meanwhile
        except Exception as e:  # noqa: BLE001 - a footer can survive damage further in
            self._set_aside(part, e)
            return None
        self._check_schema(part, dict(df.schema))
        return df

    def _next_seq(self) -> int:
        """One more than every part number in use, including parts moved aside."""
        seqs = [int(m.group(1)) for p in self.path.iterdir() if (m := _PART.match(p.name) or _TORN.match(p.name))]
        return max(seqs) + 1 if seqs else 0

    # ------------------------------------------------------------------------------ reading
    def rows(self) -> pl.DataFrame:
        """Every row ever appended, in append order (unreadable parts are set aside, see above)."""
        frames = [df for p in self.parts() if (df := self._read_part(p)) is not None]
        if not frames:
            return pl.DataFrame(schema=SCHEMA)
        return pl.concat(frames, how="vertical")

    def table(self, ok_only: bool = False) -> pl.DataFrame:
        """The latest row per user, sorted by dense user id."""
        latest = self.rows().unique("user", keep="last", maintain_order=True).sort("user")
        return latest.filter(pl.col("status") == "ok") if ok_only else latest

    def done_users(self) -> set[int]:
        t = self.table(ok_only=True)
        return set(t["user"].to_list())

    # ------------------------------------------------------------------------------ writing
    def append(self, rows: Iterable[dict[str, Any]]) -> Path | None:
        """Write ``rows`` as one new part; returns its path (None when there are no rows)."""
        rows = list(rows)
        if not rows:
            return None
        now = time.time()
        for r in rows:
            missing = set(SCHEMA) - set(r) - {"written_at"}
            if missing:
                raise StoreError(f"{self.path}: row for user {r.get('user')!r} lacks {sorted(missing)}")
            r.setdefault("written_at", now)
        df = pl.DataFrame(rows, schema=SCHEMA)
        with self.writing():
            target = self.path / f"part-{self._next_seq():06d}.parquet"
            _io.write_parquet(target, df)
        return target

    def export(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the latest ok row per user to one parquet file (atomically). An existing file
        is replaced only with ``overwrite=True`` (OutputError otherwise), a folder never; nothing
        inside the store itself."""
        out = Path(path)
        if out.is_dir():
            raise OutputError(f"{out}: is a folder; export writes one parquet file")
        if out.resolve().is_relative_to(self.path.resolve()):
            raise OutputError(f"{out}: lies inside the profile store {self.path}; export to a file outside it")
        if (out.exists() or out.is_symlink()) and not overwrite:
            raise OutputError(f"{out}: exists; pass overwrite=True to replace it")
        return _io.write_parquet(out, self.table(ok_only=True))
