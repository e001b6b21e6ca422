"""``PreparedDataset``: an encoded, filtered and split interaction log, and its folder on disk.

Folder layout (``format_version`` 1)::

    manifest.json        name, domain, split, filter, k_core, stats, audit (SplitAudit.to_dict()), format_version
    log.parquet          user (int32), item (int64, 1..n_items), timestamp (int64)[, rating (float32)]
                         in CSR order: users ascending, each user's rows chronological
    users.parquet        user (0..n_users-1), user_id (raw), train_end
    items.parquet        item (0..n_items), item_id (raw; row 0 is the padding item, null)
    targets_valid.parquet, targets_test.parquet   user, position
    item_meta.parquet    optional item metadata keyed by dense item

``save`` builds the folder under a temporary name and swaps it in (:func:`seqdistill._io.atomic_dir`);
it refuses a folder that is not a prepared dataset, or one that also holds files ``save`` does not
write, and replaces a prepared dataset (unless ``overwrite=False``). ``load`` repairs an interrupted save and checks that the files agree with each other.

:class:`SplitAudit` is the record of what the filter removed and what the split holds (written by
``prepare``, saved in the manifest, read back by ``load``; datasets prepared before it existed
have none).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from seqdistill import _io, core
from seqdistill._checks import _is_int, _is_real, is_finite
from seqdistill.errors import DataError

__all__ = [
    "FORMAT_VERSION",
    "FilterRound",
    "PartCounts",
    "PreparedDataset",
    "SplitAudit",
    "fingerprints_match",
    "is_dataset_folder",
]

FORMAT_VERSION = 1
_FILES = ("log.parquet", "users.parquet", "items.parquet", "targets_valid.parquet", "targets_test.parquet")
#: Every name :meth:`PreparedDataset.save` may write; a dataset folder holding anything else (a
#: user's note dropped into it) is never replaced, since replacing it would delete that file.
DATASET_FILES = frozenset({*_FILES, "manifest.json", "item_meta.parquet"})


def is_dataset_file(name: str) -> bool:
    """Whether ``name`` is a file :meth:`PreparedDataset.save` writes."""
    return name in DATASET_FILES


def is_dataset_folder(folder: str | Path) -> bool:
    """True when ``folder`` holds a prepared dataset (a seqdistill manifest)."""
    mf = Path(folder) / "manifest.json"
    if not mf.is_file():
        return False
    try:
        return "format_version" in _io.loads_json(mf.read_text())
    except (OSError, ValueError):
        return False


# ------------------------------------------------------------------------------ the audit
@dataclass(frozen=True)
class PartCounts:
    """Users with a row in a part of the split, and its rows (for valid and test: targets)."""

    users: int
    rows: int


@dataclass(frozen=True)
class FilterRound:
    """What one round of the filter removed: the users and items whose last row went in it, and
    its rows (those whose user or item was removed in it, the earlier removal counting)."""

    round: int
    users: int
    items: int
    rows: int


_LOO_NOTE = (
    "n/a: leave-one-out has no cutoff time; each user's last rows are held out whenever they happened, "
    "so other users' training rows can be later"
)


@dataclass(frozen=True)
class SplitAudit:
    """What ``prepare`` did to a log and what its split holds: the filter and each of its rounds,
    the cutoffs, users and rows per part, and the counts that show a leak or a cold start.

    * ``filter``: ``"kcore"`` (iterative; users with >= ``k_user`` rows, items with >= ``k_item``)
      or ``"compat"`` (one pass on the input's counts, strictly more than ``k_user`` / ``k_item``);
      ``filter_rounds`` lists every round that removed something.
    * ``test_cutoff`` / ``valid_cutoff``: the split's threshold timestamps (None without one).
    * ``train``: users with a training row and the training rows; ``valid`` / ``test``: distinct
      users with a target and the targets.
    * ``train_rows_at_or_after_test_cutoff`` (and ``..._valid_cutoff``): training rows dated at or
      after the cutoff, counted on the saved log — 0 for the global temporal split; None for
      leave-one-out, which has no cutoff (see :meth:`report`).
    * ``test_users_without_train``: test users with no training row (their input is test-period
      history only); ``test_targets_unseen_item``: test targets whose item never occurs in the
      training part, ``test_items_unseen`` those items.
    """

    split: str
    filter: str
    k_user: int
    k_item: int
    rows_in: int
    users_in: int
    items_in: int
    filter_rounds: tuple[FilterRound, ...]
    test_cutoff: float | None
    valid_cutoff: float | None
    train: PartCounts
    valid: PartCounts
    test: PartCounts
    train_rows_at_or_after_test_cutoff: int | None
    train_rows_at_or_after_valid_cutoff: int | None
    test_users_without_train: int
    test_targets_unseen_item: int
    test_items_unseen: int

    @property
    def filter_rule(self) -> str:
        """The filter in words."""
        if self.filter == "compat":
            return (
                f"single pass (the seed paper's released code): users with more than {self.k_user} rows and items "
                f"with more than {self.k_item} rows, both counted once on the input; a row stays when both pass"
            )
        return (
            f"iterative k-core: users with at least {self.k_user} rows and items with at least {self.k_item}, "
            "repeated until nothing changes"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``filter_rule`` added for readers; :meth:`from_dict` reads it back)."""
        d = asdict(self)
        d["filter_rounds"] = [asdict(r) for r in self.filter_rounds]
        d["filter_rule"] = self.filter_rule
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = "audit") -> SplitAudit:
        """The record of :meth:`to_dict`; :class:`~seqdistill.errors.DataError` naming ``where``
        and the key when a key is missing or has the wrong type."""
        if not isinstance(d, dict):
            raise DataError(f"{where}: expected an object, got {type(d).__name__}")
        unknown = set(d) - {f.name for f in fields(cls)} - {"filter_rule"}
        if unknown:
            raise DataError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in d:
                raise DataError(f"{where}: missing key {f.name!r}")
            values[f.name] = _field(d[f.name], str(f.type), f"{where}.{f.name}")
        for key, known in (("split", core.SPLIT_KINDS), ("filter", core.FILTERS)):
            if values[key] not in known:
                raise DataError(f"{where}.{key}: must be one of {known}, got {values[key]!r}")
        return cls(**values)

    def report(self) -> list[str]:
        """The audit as lines of text (``seqdistill prepare`` and ``datasets describe`` print it)."""
        lines = [
            f"split audit ({self.split})",
            f"  filter: {self.filter} — {self.filter_rule}",
            f"  input: {self.rows_in:,} rows, {self.users_in:,} users, {self.items_in:,} items",
        ]
        lines += _rounds_report(self.filter_rounds)
        for name, cut in (("test", self.test_cutoff), ("valid", self.valid_cutoff)):
            lines.append(f"  {name} cutoff: {_when(cut)}")
        lines.append(f"  {'part':<6}{'users':>12}{'rows':>14}")
        for name, part, what in (
            ("train", self.train, ""),
            ("valid", self.valid, "  (targets)"),
            ("test", self.test, "  (targets)"),
        ):
            lines.append(f"  {name:<6}{part.users:>12,}{part.rows:>14,}{what}")
        for name, n in (
            ("test", self.train_rows_at_or_after_test_cutoff),
            ("valid", self.train_rows_at_or_after_valid_cutoff),
        ):
            if n is not None:
                lines.append(f"  train rows at or after the {name} cutoff: {n:,}")
            elif self.split == "leave_one_out" and name == "test":
                lines.append(f"  train rows at or after the test cutoff: {_LOO_NOTE}")
        lines.append(f"  test users with no training history: {self.test_users_without_train:,}")
        lines.append(
            f"  test targets whose item never occurs in training: {self.test_targets_unseen_item:,} "
            f"({self.test_items_unseen:,} items)"
        )
        return lines


_SHOWN_ROUNDS = (10, 5)  # the first and the last rounds printed when there are many


def _rounds_report(rounds: tuple[FilterRound, ...]) -> list[str]:
    if not rounds:
        return ["  filter rounds: none removed anything"]
    total = [sum(getattr(r, k) for r in rounds) for k in ("users", "items", "rows")]
    lines = [f"  filter removed {total[0]:,} users, {total[1]:,} items, {total[2]:,} rows in {len(rounds)} round(s):"]
    head, tail = _SHOWN_ROUNDS
    shown = list(rounds) if len(rounds) <= head + tail else [*rounds[:head], None, *rounds[-tail:]]
    for r in shown:
        if r is None:
            lines.append(f"    ... {len(rounds) - head - tail} more rounds (all of them in manifest.json) ...")
        else:
            lines.append(f"    round {r.round}: {r.users:,} users, {r.items:,} items, {r.rows:,} rows")
    return lines


def _when(t: float | None) -> str:
    """A cutoff, with its UTC date when it reads as epoch seconds (1973 to 5138)."""
    if t is None:
        return "none"
    text = f"{int(t)}" if t == int(t) else f"{t:.15g}"
    if 1e8 <= t < 1e11:
        text += f" ({datetime.fromtimestamp(t, tz=UTC):%Y-%m-%d %H:%M:%S} UTC)"
    return text


def _field(value: Any, kind: str, where: str) -> Any:
    """One audit value checked against its annotation (as text: ``from __future__`` annotations)."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if value is None and "None" in kind:
        return None
    if kind.startswith("int"):
        if is_int and value >= 0:
            return value
        raise DataError(f"{where}: expected a count (an integer >= 0), got {value!r}")
    if kind.startswith("float"):
        if (is_int or isinstance(value, float)) and is_finite(value):
            return float(value)
        raise DataError(f"{where}: expected a finite number or null, got {value!r}")
    if kind == "str":
        if isinstance(value, str):
            return value
        raise DataError(f"{where}: expected a string, got {value!r}")
    if kind == "PartCounts":
        return PartCounts(**_counts(value, ("users", "rows"), where))
    if kind == "tuple[FilterRound, ...]":
        if not isinstance(value, list):
            raise DataError(f"{where}: expected a list of rounds, got {type(value).__name__}")
        return tuple(
            FilterRound(**_counts(r, ("round", "users", "items", "rows"), f"{where}[{j}]")) for j, r in enumerate(value)
        )
    raise AssertionError(f"no reader for {kind}")  # pragma: no cover - a field added without a reader


def _counts(value: Any, keys: tuple[str, ...], where: str) -> dict[str, int]:
    if not isinstance(value, dict) or set(value) != set(keys):
        raise DataError(f"{where}: expected an object with keys {list(keys)}, got {value!r}")
    return {k: _field(value[k], "int", f"{where}.{k}") for k in keys}


_FP_PREFIX = "v2-"


def fingerprints_match(recorded: str, current: str) -> bool:
    """Whether a recorded dataset fingerprint is that of the dataset with ``current``
    (:meth:`PreparedDataset.fingerprint`). Both full: equal. One of them in the shorter form of
    earlier versions (ids, prefix lengths and thresholds only): that part equal."""
    if recorded.startswith(_FP_PREFIX) and current.startswith(_FP_PREFIX):
        return recorded == current

    def who(f: str) -> str:
        return f[len(_FP_PREFIX) :].split("-")[0] if f.startswith(_FP_PREFIX) else f

    return who(recorded) == who(current)


# ----------------------------------------------------------------------------- the dataset
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
    #: What the filter removed and what the split holds (None for datasets prepared without it).
    audit: SplitAudit | None = None

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
        """A hash of the dataset's content: ``v2-<who>-<what>``. ``<who>`` (the fingerprint of
        earlier versions) covers the raw user and item ids, every user's training prefix length
        and length, and the split thresholds: two datasets that share it give profiles the same
        meaning per user. ``<what>`` covers each interaction's item, timestamp and rating, so a
        dataset with the same users but other interactions differs too. Compare fingerprints with
        :func:`fingerprints_match`, which also accepts the shorter form that runs and stores of
        earlier versions recorded (checking ``<who>`` only)."""
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
        c = hashlib.blake2b(digest_size=16)
        for a in (self.items, self.timestamps, self.ratings):
            if a is None:
                c.update(b"none")
            else:
                arr = np.ascontiguousarray(a)
                c.update(f"{arr.dtype.str}{arr.shape}".encode())
                c.update(memoryview(arr).cast("B"))
        return f"{_FP_PREFIX}{h.hexdigest()}-{c.hexdigest()}"

    # ----------------------------------------------------------------------------------- I/O
    def save(self, folder: str | Path, overwrite: bool = True) -> Path:
        """Write the dataset to ``folder`` atomically (a temporary sibling, then a rename).

        ``folder`` may be absent or empty. A folder holding a prepared dataset is replaced
        (``overwrite=False`` refuses that too, as ``seqdistill prepare`` does without
        ``--overwrite``); any other non-empty folder is refused
        (:class:`~seqdistill.errors.OutputError`) and left untouched.
        """
        folder = Path(folder)
        with _io.atomic_dir(
            folder, is_ours=is_dataset_folder, what="prepared dataset", overwrite=overwrite, known=is_dataset_file
        ) as tmp:
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
            if self.audit is not None:
                manifest["audit"] = self.audit.to_dict()
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
            manifest = _io.loads_json(mf.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise DataError(f"{mf}: unreadable manifest ({e})") from None
        if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
            got = manifest.get("format_version") if isinstance(manifest, dict) else manifest
            raise DataError(f"{mf}: format_version {got!r}, expected {FORMAT_VERSION}")
        for key in ("name", "domain"):
            if not isinstance(manifest.get(key), str):
                raise DataError(f"{mf}: missing or non-string {key!r}")
        problem = _manifest_problem(manifest)
        if problem:
            raise DataError(f"{mf}: {problem}")
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
            inside = np.flatnonzero(tp < train_end[tu]) if len(tu) else np.zeros(0, np.int64)
            if len(inside):
                r = int(inside[0])
                raise DataError(
                    f"{path}: row {r}: position {tp[r]} of user {tu[r]} lies inside the user's training prefix "
                    f"(train_end {train_end[tu[r]]} in users.parquet): the target would be trained on"
                )
            targets[part] = (tu, tp)
        ts_col = log.get_column("timestamp").to_numpy().astype(np.int64)
        if len(ts_col) > 1:
            back = np.diff(ts_col) < 0
            back[offsets[1:-1][(offsets[1:-1] > 0) & (offsets[1:-1] < len(ts_col))] - 1] = False  # a new user
            if back.any():
                r = int(np.flatnonzero(back)[0]) + 1
                raise DataError(
                    f"{folder / 'log.parquet'}: row {r}: timestamp {ts_col[r]} is earlier than the row before it "
                    f"({ts_col[r - 1]}) of the same user; each user's rows must be in time order"
                )
        for file, col, ids in (("users.parquet", "user_id", users), ("items.parquet", "item_id", items)):
            series = ids.get_column(col)
            if series.n_unique() != len(series):
                dup = series.filter(series.is_duplicated()).head(1).to_list()[0]
                raise DataError(f"{folder / file}: column {col!r} holds {dup!r} twice; raw ids must be unique")
        stats = manifest.get("stats", {})
        for key, have in (("users", n_users), ("items", n_items), ("interactions", len(item_col))):
            if key in stats and stats[key] != have:
                raise DataError(f"{mf}: stats.{key} = {stats[key]!r} but the files hold {have}")
        audit = _check_audit(manifest, mf, train_end, len(item_col), targets)
        meta_path = folder / "item_meta.parquet"
        return cls(
            name=manifest["name"],
            domain=manifest["domain"],
            user_ids=users.get_column("user_id"),
            item_ids=items.get_column("item_id"),
            offsets=offsets,
            items=item_col,
            timestamps=ts_col,
            ratings=_ratings(log, folder / "log.parquet"),
            train_end=train_end,
            valid_targets=targets["valid"],
            test_targets=targets["test"],
            item_meta=_read(meta_path, {}) if meta_path.exists() else None,
            manifest=manifest,
            audit=audit,
        )


def _manifest_problem(manifest: dict[str, Any]) -> str | None:
    """What a prepared dataset's manifest says that prepare could not have written (a hand edit,
    a foreign file), else None: the domain, the split settings (those ``SplitConfig`` accepts) and
    the k-core thresholds are read back by training, experiments and reports."""
    from seqdistill.data.interactions import DOMAINS

    if manifest["domain"] not in DOMAINS:
        return f"domain {manifest['domain']!r} is not one of {list(DOMAINS)}"
    split = manifest.get("split", {})
    if not isinstance(split, dict):
        return f"split is {type(split).__name__}, not a table of split settings"
    for key, allowed in (("kind", core.SPLIT_KINDS), ("target", core.TARGETS), ("valid", core.VALID_MODES)):
        if key in split and split[key] not in allowed:
            return f"split {key} {split[key]!r:.80} is not one of {list(allowed)}"
    for key in ("quantile", "valid_quantile"):
        if key in split and not (_is_real(split[key]) and 0 < split[key] < 1):
            return f"split {key} {split[key]!r:.80} is not a number in (0, 1)"
    if split.get("threshold") is not None and not (_is_real(split["threshold"]) and is_finite(split["threshold"])):
        return f"split threshold {split['threshold']!r:.80} is not a finite timestamp"
    k = manifest.get("k_core")
    if k is not None and not (isinstance(k, list) and len(k) == 2 and all(_is_int(x) and x >= 0 for x in k)):
        return f"k_core {k!r:.80} is not [k_user, k_item], two counts"
    return None


def _ratings(log: pl.DataFrame, path: Path) -> np.ndarray | None:
    """The log's ratings as float32, refused when one is not a finite number (prepare never
    writes NaN or infinity; a model or a report reading them would silently average NaN)."""
    if "rating" not in log.columns:
        return None
    try:
        r = log.get_column("rating").to_numpy().astype(np.float32)
    except (TypeError, ValueError, pl.exceptions.PolarsError) as e:
        raise DataError(f"{path}: column 'rating' is not numeric ({e})") from None
    bad = np.flatnonzero(~np.isfinite(r))
    if len(bad):
        raise DataError(f"{path}: column 'rating', row {int(bad[0])}: {r[bad[0]]} is not a finite rating")
    return r


def _check_audit(
    manifest: dict[str, Any],
    mf: Path,
    train_end: np.ndarray,
    rows: int,
    targets: dict[str, tuple[np.ndarray, np.ndarray]],
) -> SplitAudit | None:
    """The manifest's audit, refused when it does not describe the files beside it."""
    if "audit" not in manifest:
        return None
    audit = SplitAudit.from_dict(manifest["audit"], f"{mf}: audit")
    kept = audit.rows_in - sum(r.rows for r in audit.filter_rounds)
    checks = [
        ("rows_in minus the rows the filter rounds removed", kept, rows),
        ("train.rows", audit.train.rows, int(train_end.sum())),
        ("train.users", audit.train.users, int(np.count_nonzero(train_end))),
        ("valid.rows", audit.valid.rows, len(targets["valid"][0])),
        ("test.rows", audit.test.rows, len(targets["test"][0])),
    ]
    for what, said, have in checks:
        if said != have:
            raise DataError(f"{mf}: audit {what} = {said} but the files hold {have}")
    return audit


def _read(path: Path, columns: dict[str, str | None]) -> pl.DataFrame:
    """A parquet file of the dataset, with the columns it must have (``"int"``: an integer type)."""
    _io.check_parquet(path)
    from seqdistill.data.interactions import quiet_polars  # (as DOMAINS above)

    try:
        with quiet_polars():
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
