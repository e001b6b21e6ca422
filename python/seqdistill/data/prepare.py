"""``prepare``: encode ids, filter (k-core, or the seed code's single pass), order chronologically,
split, and audit the split.

The work is one call into the Rust core (:func:`seqdistill.core.prepare_log`), which reads the
id, timestamp and rating columns in place (polars hands int64/float32 columns without nulls to
numpy without a copy; string ids go as Arrow offsets + bytes). This module checks the arguments,
turns the result into a :class:`PreparedDataset` with its :class:`SplitAudit` and names the
dataset in every error.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from seqdistill import _io, core
from seqdistill._checks import is_finite, show
from seqdistill._config import DictConfig
from seqdistill.data.dataset import FilterRound, PartCounts, PreparedDataset, SplitAudit
from seqdistill.data.interactions import (
    _CANONICAL_INT,
    _UNITS,
    DOMAINS,
    RawDataset,
    StringBuffers,
    _check_arguments,
    _check_file,
    _id_series,
    _mapping,
    _warn_mixed_units,
    id_text_refused,
    normalize_for_core,
    quiet_polars,
    read_interactions,
    string_buffers,
)
from seqdistill.errors import DataError, SeqdistillWarning

__all__ = ["FILTERS", "SPLITS", "SplitConfig", "encode_column", "prepare"]

SPLITS = core.SPLIT_KINDS
#: ``"kcore"`` (iterative, >= k) and ``"compat"`` (the seed paper's released code: one pass, > k).
FILTERS = core.FILTERS


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


@dataclass
class SplitConfig(DictConfig):
    """How to split a prepared log.

    ``kind``: ``"global_temporal"`` (one threshold at ``quantile`` of all timestamps, the paper's
    protocol) or ``"leave_one_out"``. ``target``: which interactions at or after the threshold are
    test targets — ``"last"`` (default), ``"first"`` or ``"all"``. ``valid``: ``"time"`` (the same
    rule again on the training part at ``valid_quantile`` of its timestamps; default),
    ``"last_item"`` (each training user's last training item) or ``"none"``. ``threshold``: an
    explicit test threshold timestamp instead of the quantile. Leave-one-out ignores the others.
    The option names come from the Rust core (``seqdistill.core.TARGETS`` etc.).
    """

    kind: str = "global_temporal"
    quantile: float = 0.8
    target: str = "last"
    valid: str = "time"
    valid_quantile: float = 0.8
    threshold: float | None = None

    def __post_init__(self) -> None:
        for name, allowed in (("kind", core.SPLIT_KINDS), ("target", core.TARGETS), ("valid", core.VALID_MODES)):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in allowed:
                raise DataError(f"split {name} must be one of {allowed}, got {show(value, 80)}")
        for name in ("quantile", "valid_quantile"):
            q = getattr(self, name)
            if not _is_number(q) or not (0.0 < q < 1.0):
                raise DataError(f"split {name} must be in (0, 1), got {show(q, 80)}")
        if self.threshold is not None and not (_is_number(self.threshold) and is_finite(self.threshold)):
            raise DataError(
                f"split threshold must be a finite number (a timestamp) or None, got {show(self.threshold, 80)}"
            )


def _name_and_domain(name: Any, domain: Any, data: Any) -> tuple[str, str]:
    """The dataset's name and domain (the arguments, else the RawDataset's, else the defaults) as
    :meth:`PreparedDataset.load` reads them back: the name a string (any string: the manifest
    holds it as JSON), the domain one of ``DOMAINS`` (as :class:`RawDataset` and ``--domain``
    require). A DataError naming the argument otherwise."""
    for arg, value in (("name", name), ("domain", domain)):
        if value is not None and not isinstance(value, str):
            raise DataError(f"prepare: {arg} must be a string, got {show(value, 80)} ({type(value).__name__})")
    if isinstance(data, RawDataset):
        name, domain = name or data.name, domain or data.domain
    name, domain = name or "dataset", domain or "generic"
    if not isinstance(name, str):  # RawDataset.name
        raise DataError(f"prepare: RawDataset.name must be a string, got {show(name, 80)} ({type(name).__name__})")
    if domain not in DOMAINS:
        raise DataError(f"{name}: prepare: domain must be one of {DOMAINS}, got {show(domain, 80)}")
    return name, domain


def _k_core(k_core: int | tuple[int, int] | list[int] | None, name: str, filter: str) -> tuple[int, int]:
    """``(k_user, k_item)``: minimum counts for the k-core (>= 1), thresholds a count must exceed
    for compat (>= 0). None keeps every row."""
    low = 0 if filter == "compat" else 1
    if k_core is None:
        return low, low
    ks = (k_core, k_core) if not isinstance(k_core, (tuple, list)) else tuple(k_core)
    if len(ks) != 2 or not all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in ks):
        raise DataError(f"{name}: k_core must be an int or (k_user, k_item) ints, got {k_core!r}")
    if min(ks) < low or max(ks) > 2**32 - 1:
        raise DataError(
            f"{name}: k_core values must be in {low}..2^32-1 with filter={filter!r}, got {tuple(int(k) for k in ks)}"
        )
    return int(ks[0]), int(ks[1])


def _chunks(s: pl.Series) -> list[np.ndarray]:
    """The column's chunks as numpy views (no copy: polars hands out a null-free numeric chunk
    in place; a 20M-row parquet read comes as ~160 chunks, and joining them costs a pass and
    as much fresh memory as the column)."""
    return [c.to_numpy() for c in s.get_chunks()]


def _id_column(s: pl.Series, buffers: StringBuffers | None = None) -> core.IdColumn:
    """The column as the core reads it: int64 chunks in place, or Arrow string buffers (``buffers``
    when the checks already made them)."""
    if s.dtype == pl.Int64:
        return _chunks(s)
    if s.dtype == pl.String:
        return buffers if buffers is not None else string_buffers(s)
    raise DataError(f"column {s.name!r}: ids must be Int64 or String, got {s.dtype}")


def _raw_ids(s: pl.Series, values: np.ndarray | None, first_rows: np.ndarray | None, name: str) -> pl.Series:
    if values is not None:
        return pl.Series(name, values, dtype=pl.Int64)
    return s.gather(first_rows.astype(np.int64)).alias(name)


def encode_column(s: pl.Series) -> tuple[np.ndarray, pl.Series]:
    """Dense codes (uint32, sorted raw order) and the distinct raw values, through the Rust core."""
    col = _id_column(s)
    if isinstance(col, (tuple, core.StringViews)):
        codes, first = core.encode_str(col)
        return codes, s.gather(first.astype(np.int64))
    codes, uniques = core.encode_i64(np.concatenate(col) if len(col) != 1 else col[0])
    return codes, pl.Series(s.name, uniques)


def prepare(
    data: RawDataset | pl.DataFrame | str | os.PathLike[str],
    items: pl.DataFrame | None = None,
    *,
    columns: Mapping[str, str] | None = None,
    k_core: int | tuple[int, int] | None = (5, 5),
    split: SplitConfig | None = None,
    name: str | None = None,
    domain: str | None = None,
    filter: str = "kcore",
) -> PreparedDataset:
    """Encodes, filters and splits an interaction log, and audits the split.

    ``data`` is a :class:`RawDataset`, a table with the canonical columns, or the path of an
    interactions file (csv/tsv/parquet/jsonl, read as :func:`read_interactions` reads it; the
    dataset is named after the file unless ``name`` is given). ``columns`` maps canonical names to
    the table's or the file's column names (as :func:`read_interactions` takes it). A parquet
    file with integer or string ids and integer or datetime timestamps (and no rating column) is read by
    the Rust core itself, straight into the pipeline: its dictionary-encoded id pages are encoded
    without materializing a raw id column (``stats["stages"]["read+encode"]``); any other file
    (and one whose string ids are mostly stored without a dictionary: polars reads those faster)
    goes through :func:`read_interactions` — the same result either way. ``k_core`` is
    ``(k_user, k_item)``, one int for both, or None for no filter. ``filter``: ``"kcore"`` (the
    iterative core: users with at least ``k_user`` rows and items with at least ``k_item``, until
    nothing changes) or ``"compat"`` (the seed paper's released code: users with *more than*
    ``k_user`` rows and items with more than ``k_item``, both counted once on the input, one pass;
    to line up with its tables). The result's ``audit`` (:class:`SplitAudit`, saved in the
    manifest) records the filter's rounds and what each part of the split holds. Raises
    :class:`~seqdistill.errors.DataError` naming the dataset when the log is empty, when nothing
    survives the filter, when the split leaves no training part, and when item metadata matches
    none of the log's items; warns (:class:`~seqdistill.errors.SeqdistillWarning`) when the split
    leaves no test target.
    """
    started = time.perf_counter()
    split = split or SplitConfig()
    if not isinstance(split, SplitConfig):
        raise DataError(f"split must be a SplitConfig, got {type(split).__name__}")
    path = Path(data) if isinstance(data, (str, os.PathLike)) else None
    if isinstance(data, RawDataset):
        df, items = data.interactions, data.items if items is None else items
    else:
        df = data
    name, domain = _name_and_domain(name if name is not None or path is None else path.stem, domain, data)
    if not isinstance(filter, str) or filter not in FILTERS:
        raise DataError(f"{name}: filter must be one of {FILTERS}, got {filter!r}")
    k_user, k_item = _k_core(k_core, name, filter)
    options: dict[str, Any] = {
        "filter": filter,
        "k_user": k_user,
        "k_item": k_item,
        "split": split.kind,
        "quantile": split.quantile,
        "threshold": split.threshold,
        "target": split.target,
        "valid": split.valid,
        "valid_quantile": split.valid_quantile,
    }
    log = None
    if path is not None:
        log = _from_parquet(path, columns, name, options)
        if log is None:
            df = read_interactions(path, columns)
            columns = None  # the table now has the canonical names
    if log is not None:
        rows_in = len(log.items) + log.rows_dropped
        user_ids = _core_ids(log.user_values, log.user_text, "user_id")
        uniq_items = _core_ids(log.item_values, log.item_text, "item_id")
    else:
        # String ids are checked by the core on their distinct values as it encodes them (a pass
        # over every row here cost ~0.04 s per column at 20M rows); where those checks find ids
        # the checks here would refuse or trim, the table is checked again row by row (which
        # names the row, or trims) and prepared again.
        table = df
        df, log = _prepare_table(table, columns, name, options, defer_id_text=True)
        if any(
            id_text_refused(df.get_column(c), check)
            for c, check in (("user_id", log.user_id_check), ("item_id", log.item_id_check))
            if check is not None
        ):
            df, log = _prepare_table(table, columns, name, options)
        rows_in = df.height
        user_ids = _raw_ids(df.get_column("user_id"), log.user_values, log.user_first_rows, "user_id")
        uniq_items = _raw_ids(df.get_column("item_id"), log.item_values, log.item_first_rows, "item_id")
    sp = log.split
    if sp is None:
        raise DataError(
            f"{name}: nothing left after {'k-core' if filter == 'kcore' else 'the compat filter'} with "
            f"k_user={k_user}, k_item={k_item} "
            f"({rows_in} rows, {log.users_before} users, {log.items_before} items before the filter)"
        )
    train_end = sp.train_end
    if int(train_end.sum()) == 0:
        raise DataError(f"{name}: the training part is empty with split {split.to_dict()}")
    if len(sp.test_users) == 0:
        warnings.warn(
            f"{name}: the split {split.to_dict()} gives no test targets (no user has an interaction at or after "
            "the test threshold with an earlier one before it); this dataset cannot be evaluated — lower the "
            "quantile or check the timestamps",
            SeqdistillWarning,
            stacklevel=2,
        )
    item_ids = pl.concat([pl.Series("item_id", [None], dtype=uniq_items.dtype), uniq_items])
    item_meta = _align_items(items, item_ids, name) if items is not None else None
    n_users, n_items, n = len(log.offsets) - 1, len(item_ids) - 1, len(log.items)
    stats = {
        "rows_in": rows_in,
        "users": n_users,
        "items": n_items,
        "interactions": n,
        "avg_length": n / n_users,
        "density": n / (n_users * n_items),
        "kcore": {
            "filter": filter,
            "k_user": k_user,
            "k_item": k_item,
            "rounds": log.kcore_rounds,
            "rows_dropped": log.rows_dropped,
        },
        "train_interactions": int(train_end.sum()),
        "valid_targets": len(sp.valid_users),
        "test_targets": len(sp.test_users),
        "test_threshold": _finite(sp.test_threshold),
        "valid_threshold": _finite(sp.valid_threshold),
        "stages": {stage: round(sec, 4) for stage, sec in log.stages},
        "seconds": round(time.perf_counter() - started, 3),
    }
    audit = _audit(log, split.kind, filter, (k_user, k_item), rows_in)
    manifest = {
        "name": name,
        "domain": domain,
        "split": split.to_dict(),
        "filter": filter,
        "k_core": [k_user, k_item],
        "stats": stats,
        "audit": audit.to_dict(),
    }
    return PreparedDataset(
        name=name,
        domain=domain,
        user_ids=user_ids,
        item_ids=item_ids,
        offsets=log.offsets,
        items=log.items,
        timestamps=log.timestamps,
        ratings=log.ratings,
        train_end=train_end,
        valid_targets=(sp.valid_users, sp.valid_pos),
        test_targets=(sp.test_users, sp.test_pos),
        item_meta=item_meta,
        manifest=manifest,
        audit=audit,
    )


#: Column types the core's parquet reader takes: integer ids (not UInt64: its values may
#: exceed int64, which the slow path keeps as exact strings) or strings, integer or datetime
#: timestamps. (The core leaves string ids that the id checks would trim, refuse or read as
#: integers to read_interactions.)
_PARQUET_INTS = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32)
_PARQUET_IDS = (*_PARQUET_INTS, pl.String)


def _prepare_table(
    df: pl.DataFrame,
    columns: Mapping[str, str] | None,
    name: str,
    options: dict[str, Any],
    *,
    defer_id_text: bool = False,
) -> tuple[pl.DataFrame, core.PreparedLog]:
    """The checked table (see :func:`normalize_for_core`) and the core's pipeline over it."""
    try:
        checked, buffers, fine = normalize_for_core(df, columns, source=name, defer_id_text=defer_id_text)
    except DataError:
        if not defer_id_text:
            raise
        # A later column's error: the ids, checked first row by row, may hold the table's first.
        try:
            normalize_for_core(df, columns, source=name)
        except DataError as first:
            raise first from None
        raise
    df = checked
    if df.height == 0:
        raise DataError(f"{name}: the interaction table is empty")
    ratings = _chunks(df.get_column("rating")) if "rating" in df.columns else None
    try:
        log = core.prepare_log(
            _id_column(df.get_column("user_id"), buffers.get("user_id")),
            _id_column(df.get_column("item_id"), buffers.get("item_id")),
            _chunks(df.get_column("timestamp") if fine is None else fine.values),
            ratings,
            ts_per_second=1 if fine is None else fine.per_second,
            **options,
        )
    except DataError as e:
        raise DataError(f"{name}: {e}") from None
    return df, log


def _core_ids(values: np.ndarray | None, text: tuple[np.ndarray, np.ndarray] | None, name: str) -> pl.Series:
    """The raw ids the core's parquet reader returns: int64 values, or strings as Arrow buffers."""
    if text is None:
        return pl.Series(name, values, dtype=pl.Int64)
    import pyarrow as pa  # a dependency; imported here, where a parquet file of strings was read

    offsets, data = text
    arr = pa.Array.from_buffers(pa.large_string(), len(offsets) - 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    return pl.Series(name, arr, dtype=pl.String)


#: Whether ``prepare(path)`` has the core read string ids that the file stores mostly without a
#: dictionary (a writer gives up on its dictionary when there are many distinct ids). No: polars'
#: read, then the in-memory pipeline, is faster there (fresh processes: 1.51-1.55 s against
#: 1.87-1.92 s at 20M rows of such string ids; 0.60-0.62 against 0.75-0.79 s at the 3.65M-row
#: M2 shape, whose 616k user ids are stored so), where on dictionary-encoded files the core's
#: reader is (20M rows: 1.18 against 1.40 s). Tests set it to check that reader on such files.
_CORE_READS_PLAIN_STRINGS = False


def _from_parquet(
    path: Path, columns: Mapping[str, str] | None, name: str, options: dict[str, Any]
) -> core.PreparedLog | None:
    """The pipeline's result with the file read by the Rust core (see :func:`prepare`), or None
    when the file is not one it reads — not parquet, a rating column, other column types, an
    encoding or codec it does not know, damage, a null — and :func:`read_interactions` must
    read it (and name whatever is wrong). Damage polars' reader aborts the process on (see
    :func:`seqdistill.core.check_parquet`) is a :class:`DataError` here instead."""
    _check_arguments(columns, None, None, str(path))
    if path.suffix.lower() not in (".parquet", ".pq"):
        return None
    _check_file(path)
    mapping = _mapping(columns, str(path))
    _io.check_parquet(path, list(mapping.values()))
    try:
        with quiet_polars():
            schema = pl.read_parquet_schema(path)
    except (Exception, pl.exceptions.PanicException):  # noqa: BLE001 — polars panics on some schemas
        return None  # (an unknown time zone): read_interactions reads the file and names what is wrong
    if "rating" in mapping or "rating" in schema or any(c not in schema for c in mapping.values()):
        return None
    ts = schema[mapping["timestamp"]]

    def id_ok(dtype: pl.DataType) -> bool:  # Categorical/Enum: strings in the file (Arrow dictionaries)
        return dtype in _PARQUET_IDS or isinstance(dtype, (pl.Categorical, pl.Enum))

    if not all(id_ok(schema[mapping[c]]) for c in ("user_id", "item_id")) or not (
        ts in _PARQUET_INTS or (isinstance(ts, pl.Datetime) and ts.time_unit in ("ms", "us", "ns"))
    ):
        return None
    try:
        log, _why, ts_range, per_second = core.prepare_parquet(
            path,
            mapping["user_id"],
            mapping["item_id"],
            mapping["timestamp"],
            plain_strings=_CORE_READS_PLAIN_STRINGS,
            **options,
        )
    except DataError as e:
        # The file's own damage names the file (as read_interactions' errors do); the rest is the
        # dataset's (e.g. nothing survives the k-core).
        where = path if str(e).startswith("cannot read as parquet") else name
        raise DataError(f"{where}: {e}") from None
    if log is not None and not _reads_as_polars(schema, mapping, log, per_second):
        return None
    if log is not None and per_second == 1 and ts_range is not None and _may_mix_units(*ts_range):
        col = mapping["timestamp"]
        _warn_mixed_units(pl.read_parquet(path, columns=[col]).to_series(), col, str(path))
    return log


_TICKS_PER_SECOND = {"ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _reads_as_polars(
    schema: Mapping[str, pl.DataType], mapping: Mapping[str, str], log: core.PreparedLog, per_second: int
) -> bool:
    """Whether the core read the columns as the types polars reads them as. The core follows the
    parquet schema; polars follows the Arrow schema a writer may store beside it, and a file whose
    two schemas disagree (an integer column the Arrow schema calls a datetime) is read by polars,
    as :func:`read_interactions` reads it."""
    ts = schema[mapping["timestamp"]]
    ticks = _TICKS_PER_SECOND[ts.time_unit] if isinstance(ts, pl.Datetime) else 1
    text = tuple(schema[mapping[c]] not in _PARQUET_INTS for c in ("user_id", "item_id"))
    return per_second == ticks and text == (log.user_text is not None, log.item_text is not None)


def _may_mix_units(lo: int, hi: int) -> bool:
    """Whether integer timestamps from ``lo`` to ``hi`` may span two epoch units (then the
    column itself is looked at, as :func:`read_interactions` does)."""
    bands = [low for _, low in _UNITS]
    top = max((b for b in bands if hi >= b), default=None)
    return top is not None and top >= _UNITS[1][1] and lo < top


def _audit(log: core.PreparedLog, kind: str, filter: str, ks: tuple[int, int], rows_in: int) -> SplitAudit:
    """The typed audit from the core's counts (``log.kcore_removed``, ``log.audit``)."""
    a, sp, removed = log.audit, log.split, log.kcore_removed
    assert a is not None and sp is not None  # both come with a split
    rounds = zip(removed.users.tolist(), removed.items.tolist(), removed.rows.tolist())
    return SplitAudit(
        split=kind,
        filter=filter,
        k_user=ks[0],
        k_item=ks[1],
        rows_in=rows_in,
        users_in=log.users_before,
        items_in=log.items_before,
        filter_rounds=tuple(FilterRound(j + 1, u, i, r) for j, (u, i, r) in enumerate(rounds)),
        test_cutoff=_finite(sp.test_threshold),
        valid_cutoff=_finite(sp.valid_threshold),
        train=PartCounts(a.train_users, a.train_rows),
        valid=PartCounts(a.valid_users, a.valid_rows),
        test=PartCounts(a.test_users, a.test_rows),
        train_rows_at_or_after_test_cutoff=a.train_at_or_after_test_cutoff,
        train_rows_at_or_after_valid_cutoff=a.train_at_or_after_valid_cutoff,
        test_users_without_train=a.test_users_without_train,
        test_targets_unseen_item=a.test_targets_unseen_item,
        test_items_unseen=a.test_items_unseen,
    )


def _finite(x: float) -> float | None:
    return None if x != x else float(x)


def _align_items(items: pl.DataFrame, item_ids: pl.Series, source: str) -> pl.DataFrame:
    """Item metadata keyed by dense id: one row per dense item 1..n (metadata null where absent).

    The metadata's ids follow the id policy of the log's (``_id_series``: null, NaN, fractional,
    empty or invisible-character ids refused naming the row; strings stripped) and then match
    the log's ids exactly (:func:`_meta_ids_as`): ``'01'`` is never item ``1``."""
    if not isinstance(items, pl.DataFrame):
        raise DataError(f"{source}: item metadata must be a polars DataFrame, got {type(items).__name__}")
    if "item_id" not in items.columns:
        raise DataError(f"{source}: the item metadata table has no 'item_id' column (columns: {items.columns})")
    ids = _id_series(
        items.get_column("item_id"), "item_id", "item_id", f"{source}: item metadata", infer_integers=False
    )
    dup = _first_true(ids.is_duplicated())
    if dup is not None:
        again = int((ids == ids[dup]).arg_true()[1])
        raise DataError(
            f"{source}: item metadata: column 'item_id' has the duplicated id {show(ids[dup], 80)} at rows {dup} "
            f"and {again}"
        )
    meta = items.with_columns(_meta_ids_as(ids, item_ids.dtype).alias("item_id"))
    keys = pl.DataFrame({"item": np.arange(1, len(item_ids), dtype=np.int64), "item_id": item_ids[1:]})
    matched = keys.join(meta.select("item_id"), on="item_id", how="semi").height
    if matched == 0:
        example = f"such as {show(ids[0], 40)}" if len(ids) else "(no rows)"
        raise DataError(
            f"{source}: the item metadata matches none of the log's {keys.height} items (metadata ids "
            f"{ids.dtype} {example}, log ids {item_ids.dtype} such as {show(item_ids[1], 40)}); check the id column"
        )
    return keys.join(meta, on="item_id", how="left")


def _first_true(mask: pl.Series) -> int | None:
    return int(mask.arg_true()[0]) if mask.any() else None


def _meta_ids_as(ids: pl.Series, dtype: pl.DataType) -> pl.Series:
    """Metadata ids (after the id policy: Int64, or String stripped of surrounding spaces) in the
    log's id type, where one id is exactly the other: an integer is the String log id written as
    its decimal text; a String id is an Int64 log id only when it is that integer written
    canonically (``'11'``, not ``'011'``, ``'+11'`` or ``'11.0'``); any other id matches no item
    and becomes null. ``seqdistill prepare --items`` compares them the same way."""
    if ids.dtype == dtype:
        return ids
    if dtype == pl.String:
        return ids.cast(pl.String)
    both = pl.DataFrame({"ok": ids.str.contains(_CANONICAL_INT), "id": ids.cast(pl.Int64, strict=False)})
    return both.select(pl.when(pl.col("ok")).then(pl.col("id"))).to_series().alias(ids.name)
