"""The record of one finished run, shared by the runner (which writes ``runs/<run>.json``) and
the report (which reads it back). Reading refuses a file with a missing or unknown key, or a value
of the wrong type, naming the file: a record is never read by guessing.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from seqdistill import _io
from seqdistill._checks import describe, field_hints, matches, show, unknown_keys
from seqdistill.errors import DataError

__all__ = ["DatasetSummary", "RunRecord", "Timing", "KINDS"]

KINDS = ("vanilla", "distill", "shuffled", "stats", "idgenrec")
_PLAIN_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
T = TypeVar("T")


def _build(cls: type[T], d: Any, source: str, where: str = "") -> T:
    """``cls(**d)`` after checking that ``d`` has exactly the fields of ``cls``, each of its type."""
    at = f"{source}: {where + ' ' if where else ''}"
    if not isinstance(d, dict):
        raise DataError(f"{at}expected a JSON object, got {show(d)}")
    extra, missing = unknown_keys(d, cls), sorted(f.name for f in fields(cls) if f.name not in d)
    if extra or missing:
        raise DataError(
            f"{at}not a {cls.__name__} (unknown keys {extra}, missing keys {missing}); "
            "was it written by this version of seqdistill?"
        )
    for key, hint in field_hints(cls).items():
        if isinstance(hint, type) and hint in _NESTED:
            continue
        if not matches(d[key], hint, finite=False):
            raise DataError(f"{at}{key} = {show(d[key])}: expected {describe(hint)}")
    return cls(**{k: _build(h, d[k], source, k) if h in _NESTED else d[k] for k, h in field_hints(cls).items()})


@dataclass(frozen=True)
class DatasetSummary:
    """The prepared dataset a run used: sizes, test rows, manifest and fingerprint."""

    name: str
    n_users: int
    n_items: int
    test_rows: int
    fingerprint: str
    manifest: dict[str, Any]

    @classmethod
    def of(cls, ds: Any, test_rows: int) -> DatasetSummary:
        """The summary of a prepared dataset whose test part had ``test_rows`` rows."""
        return cls(
            name=ds.name,
            n_users=int(ds.n_users),
            n_items=int(ds.n_items),
            test_rows=int(test_rows),
            fingerprint=ds.fingerprint(),
            manifest=ds.manifest,
        )


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds: training (per epoch, validation excluded; total) and test inference."""

    train_seconds_per_epoch: float | None
    train_seconds_total: float
    epochs_run: int
    test_inference_seconds: float

    @classmethod
    def of(cls, epoch_seconds: list[float], total: float, epochs_run: int, inference: float) -> Timing:
        """From the seconds of each training epoch (their mean; None when no epoch ran)."""
        per_epoch = float(sum(epoch_seconds) / len(epoch_seconds)) if epoch_seconds else None
        return cls(per_epoch, float(total), int(epochs_run), float(inference))


_NESTED = (DatasetSummary, Timing)


@dataclass(frozen=True)
class RunRecord:
    """One finished run (``runs/<run>.json``); its presence means the run is complete.

    ``settings`` is everything the result depends on (see
    :func:`~seqdistill.experiments.plan.plan_runs`): a resumed experiment compares it with what
    it would run now. ``per_row`` names the ``.npy`` files beside the JSON that hold each test
    row's metric (plain file names in the same folder). ``history`` is the trainer's per-epoch
    log; ``valid`` the best epoch's validation metrics; ``test`` the test means.
    """

    run: str
    variant: str
    kind: str
    seed: int
    settings: dict[str, Any]
    distill: dict[str, Any]
    distill_trained: bool
    model: dict[str, Any]
    train: dict[str, Any]
    profiles: dict[str, Any]
    dataset: DatasetSummary
    history: list[dict[str, Any]]
    best_epoch: int | None
    valid: dict[str, float]
    test: dict[str, float]
    per_row: dict[str, str]
    timing: Timing
    device: str
    torch_threads: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (nested records as objects)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["dataset"] = {f.name: getattr(self.dataset, f.name) for f in fields(DatasetSummary)}
        out["timing"] = {f.name: getattr(self.timing, f.name) for f in fields(Timing)}
        return out

    @classmethod
    def from_dict(cls, d: Any, source: str = "run record") -> RunRecord:
        """Inverse of :meth:`to_dict`; refuses missing or unknown keys and wrong types, naming
        ``source`` (the file) and the key."""
        rec = _build(cls, d, source)
        if rec.kind not in KINDS:
            raise DataError(f"{source}: kind = {show(rec.kind)}: expected one of {KINDS}")
        for metric, name in rec.per_row.items():
            if not _PLAIN_FILE.match(name) or ".." in name or not name.endswith(".npy"):
                raise DataError(
                    f"{source}: per_row {metric} = {show(name)}: expected a .npy file name in the same folder"
                )
        return rec

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> RunRecord:
        """Read ``runs/<run>.json``; a DataError naming the file when it is not a run record."""
        path = Path(path)
        try:
            d = _io.loads_json(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{path}: not a readable run record ({e.__class__.__name__}: {e})") from None
        rec = cls.from_dict(d, str(path))
        if rec.run != path.stem:
            raise DataError(f"{path}: run = {show(rec.run)} does not match the file name")
        return rec

    def write(self, path: str | os.PathLike) -> Path:
        """Write the JSON atomically (``seqdistill._io``)."""
        return _io.write_json(path, self.to_dict())
