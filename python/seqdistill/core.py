"""The one door to the compiled Rust core (``seqdistill._core``).

Every other module calls the core through the functions here; nothing else imports ``_core``.
Arguments are converted to the layout the core reads (C-contiguous, the right dtype) once, here.
Results are the core's frozen classes (:class:`KCoreResult`, :class:`KCoreRounds`,
:class:`SplitResult`, :class:`AuditCounts`, :class:`PreparedLog`, :class:`TopkMetrics`, :class:`TopkStream`,
:class:`IdTextCheck`), and errors are the classes of
:mod:`seqdistill.errors` (the core raises :class:`~seqdistill.errors.CoreError` for arguments it
refuses and :class:`~seqdistill.errors.DataError` for a log it cannot prepare).

The filter, split and metric option names are declared once, in Rust (``FILTERS``, ``TARGETS``,
``VALID_MODES``, ``SPLIT_KINDS``, ``METRICS``); the ``Literal`` types below mirror them for type checkers and a
test keeps the two equal.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from seqdistill import _core
from seqdistill._core import (
    AuditCounts,
    IdTextCheck,
    KCoreResult,
    KCoreRounds,
    PreparedLog,
    SplitResult,
    TopkMetrics,
    TopkStream,
)

__all__ = [
    "AuditCounts",
    "FILTERS",
    "Filter",
    "IdColumn",
    "IdTextCheck",
    "KCoreResult",
    "KCoreRounds",
    "MAX_K",
    "METRICS",
    "NAN_LIKE_IDS",
    "ParquetOutcome",
    "PreparedLog",
    "SPLIT_KINDS",
    "SplitKind",
    "SplitResult",
    "StringColumn",
    "StringViews",
    "TARGETS",
    "Target",
    "TopkMetrics",
    "TopkStream",
    "VALID_MODES",
    "Valid",
    "check_id_text",
    "core_version",
    "encode_i64",
    "encode_str",
    "gather_windows",
    "huge_pages",
    "global_temporal_split",
    "kcore",
    "leave_one_out_split",
    "permutation",
    "prepare_log",
    "prepare_parquet",
    "check_parquet",
    "seen_items",
    "sort_by_user_time",
    "topk_metrics",
    "topk_metrics_from_ids",
    "training_windows",
]

I64 = npt.NDArray[np.int64]
Target = Literal["last", "first", "all"]
Valid = Literal["time", "last_item", "none"]
SplitKind = Literal["global_temporal", "leave_one_out"]
Filter = Literal["kcore", "compat"]
#: What :func:`prepare_parquet` returns: the log, or None and the reason the file was not read;
#: the timestamps' (min, max) and their counts per second.
ParquetOutcome = tuple[PreparedLog | None, str | None, tuple[int, int] | None, int]
FILTERS: tuple[str, ...] = _core.FILTERS
TARGETS: tuple[str, ...] = _core.TARGETS
VALID_MODES: tuple[str, ...] = _core.VALID_MODES
SPLIT_KINDS: tuple[str, ...] = _core.SPLIT_KINDS
METRICS: tuple[str, ...] = _core.METRICS
#: Largest cut-off k the metric functions accept.
MAX_K: int = _core.MAX_K
#: Id values refused as NaN-like (compared trimmed and case-insensitively; ``check_id_text``
#: reports the first one).
NAN_LIKE_IDS: tuple[str, ...] = _core.NAN_LIKE_IDS


@dataclass(frozen=True)
class StringViews:
    """A UTF-8 column in Arrow's ``string_view`` layout (polars' own), read by the core in place.

    ``chunks``: per chunk, its views (uint8, 16 bytes per row: the length, then the value itself
    when it has at most 12 bytes, else its first 4 bytes, a buffer index and an offset) and its
    data buffers (uint8 arrays). The core checks every view against its buffers before reading
    it (a view pointing outside them is a :class:`~seqdistill.errors.CoreError` naming the row).
    """

    chunks: tuple[tuple[npt.NDArray[np.uint8], tuple[npt.NDArray[np.uint8], ...]], ...]

    def __len__(self) -> int:
        return sum(len(v) // 16 for v, _ in self.chunks)


#: A string column: Arrow ``large_string`` buffers ``(offsets int64, data uint8)``, or
#: :class:`StringViews`.
StringColumn = tuple[I64, npt.NDArray[np.uint8]] | StringViews
#: An id column: int64 values (one array, or a list of chunks read in place), or UTF-8 strings
#: (:data:`StringColumn`).
IdColumn = I64 | list[I64] | StringColumn
#: A numeric column: one array, or a list of chunks (e.g. polars' chunks of a parquet read).
Chunks = npt.ArrayLike | list[npt.ArrayLike]


def core_version() -> str:
    return str(_core.__version__)


def huge_pages() -> bool:
    """Whether the core's large buffers ask for transparent huge pages: yes unless
    ``SEQDISTILL_HUGE_PAGES=0``, or the machine is a VM whose balloon device reports free memory
    to its host (there a fresh huge page's first touch waits for the host; ``=1`` asks anyway).
    Decided once per process, at the first call or the first large buffer: set the variable
    before."""
    return bool(_core.huge_pages())


def _i64(a: npt.ArrayLike) -> I64:
    return np.ascontiguousarray(a, dtype=np.int64)


def _u32(a: npt.ArrayLike) -> npt.NDArray[np.uint32]:
    return np.ascontiguousarray(a, dtype=np.uint32)


# ------------------------------------------------------------------------------------ ids
def encode_i64(values: npt.ArrayLike) -> tuple[npt.NDArray[np.uint32], I64]:
    """Dense codes (sorted raw order) and the sorted distinct values."""
    return _core.encode_i64(_i64(values))


def _u8(a: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    return np.ascontiguousarray(a, dtype=np.uint8)


def _views(col: StringViews) -> StringViews:
    return StringViews(tuple((_u8(v), tuple(_u8(b) for b in bufs)) for v, bufs in col.chunks))


def encode_str(col: StringColumn) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint64]]:
    """Dense codes of UTF-8 strings (sorted by bytes) and, per code, the first row holding it."""
    if isinstance(col, StringViews):
        return _core.encode_str_views(_views(col))
    return _core.encode_str(_i64(col[0]), _u8(col[1]))


def check_id_text(col: StringColumn) -> IdTextCheck:
    """One pass over UTF-8 string ids, each seen trimmed of whitespace: the first empty value,
    the first holding a control character, whether any is padded, whether all could be
    integers, and the rows holding non-ASCII characters (see ``IdTextCheck``)."""
    if isinstance(col, StringViews):
        return _core.check_id_views(_views(col))
    return _core.check_id_text(_i64(col[0]), _u8(col[1]))


# ----------------------------------------------------------------------------- the pipeline
def _chunks(col: Chunks, dtype: type) -> list[np.ndarray]:
    parts = col if isinstance(col, list) else [col]
    return [np.ascontiguousarray(c, dtype=dtype) for c in parts]


def prepare_log(
    users: IdColumn,
    items: IdColumn,
    timestamps: Chunks,
    ratings: Chunks | None = None,
    *,
    filter: Filter = "kcore",
    k_user: int = 1,
    k_item: int = 1,
    split: SplitKind = "global_temporal",
    quantile: float = 0.8,
    threshold: float | None = None,
    target: Target = "last",
    valid: Valid = "time",
    valid_quantile: float = 0.8,
    ts_per_second: int = 1,
) -> PreparedLog:
    """Encode → filter → per-user chronological CSR → split → audit, in one Rust call.

    ``timestamps`` are seconds, or counted ``ts_per_second`` to the second (e.g. 1000 for
    milliseconds): then each user's rows are ordered by the full times (stable) and stored as
    whole seconds (floored), so the split, the audit and ``result.timestamps`` see seconds.

    ``filter="kcore"``: the iterative k-core, users with at least ``k_user`` rows and items with
    at least ``k_item``; ``filter="compat"``: one pass, as the seed paper's released code, keeping
    the rows whose user has more than ``k_user`` rows and whose item more than ``k_item``, both
    counted on the input. ``result.kcore_removed`` says what each round removed and
    ``result.audit`` counts the split's parts (see ``rust/src/audit.rs``). Arrays already in the core's layout (C-contiguous int64 / float32, as polars hands out the
    chunks of a column without nulls) are read in place, chunk by chunk: no copy, no fresh
    memory. ``result.split`` is None when nothing survives the k-core.
    """

    def ids(col: IdColumn) -> IdColumn:
        if isinstance(col, StringViews):
            return _views(col)
        if isinstance(col, tuple):
            return (_i64(col[0]), _u8(col[1]))
        return _chunks(col, np.int64)

    r = None if ratings is None else _chunks(ratings, np.float32)
    return _core.prepare_log(
        ids(users),
        ids(items),
        _chunks(timestamps, np.int64),
        r,
        filter=filter,
        k_user=k_user,
        k_item=k_item,
        split=split,
        quantile=quantile,
        threshold=threshold,
        target=target,
        valid=valid,
        valid_quantile=valid_quantile,
        ts_per_second=ts_per_second,
    )


def prepare_parquet(
    path: str | os.PathLike[str],
    user: str,
    item: str,
    timestamp: str,
    *,
    filter: Filter = "kcore",
    k_user: int = 1,
    k_item: int = 1,
    split: SplitKind = "global_temporal",
    quantile: float = 0.8,
    threshold: float | None = None,
    target: Target = "last",
    valid: Valid = "time",
    valid_quantile: float = 0.8,
    plain_strings: bool = True,
) -> ParquetOutcome:
    """:func:`prepare_log` on the columns ``user``, ``item`` and ``timestamp`` of a parquet file
    that the core reads itself (``rust/src/parquet_log.rs``): integer columns, plain or
    dictionary-encoded (ids are encoded from the row groups' dictionaries), timestamps as integer
    seconds or a parquet ``Timestamp`` (ms/us/ns: each user's rows ordered by the full time,
    stored as whole seconds). Returns ``(log, None, (min, max) timestamp, counts per second)``,
    or ``(None, reason, None, 0)`` when the file holds what this reader does not take (another
    column type, encoding or codec, damage, a null; with ``plain_strings=False``, string ids
    stored mostly without a dictionary, which polars reads faster): then read it another way. Raises
    :class:`~seqdistill.errors.DataError` for damage polars' reader would abort the process on
    (see :func:`check_parquet`)."""
    return _core.prepare_parquet(
        os.fspath(path),
        user,
        item,
        timestamp,
        filter=filter,
        k_user=k_user,
        k_item=k_item,
        split=split,
        quantile=quantile,
        threshold=threshold,
        target=target,
        valid=valid,
        valid_quantile=valid_quantile,
        plain_strings=plain_strings,
    )


def check_parquet(path: str | os.PathLike[str], columns: Sequence[str] | None = None) -> None:
    """Raises :class:`~seqdistill.errors.DataError` when a parquet file holds damage polars'
    reader aborts the process on: a footer whose lists claim more elements than it has bytes (or
    a schema element more children than the schema has elements), or, in the chunks of the
    top-level ``columns`` (every column when None; chunks taken by position, as readers take
    them), a page claiming a negative number of values, a dictionary page claiming more than
    2^24 values and more than its bytes hold, or a chunk and its row group both claiming far
    more values than the chunk's pages hold. Anything else — other damage, a file that is not
    parquet — passes, for the reader to describe. Reads the
    footer and the page headers only (no page is decompressed); run it before handing a file
    someone gave you to polars."""
    _core.check_parquet(os.fspath(path), None if columns is None else list(columns))


# ----------------------------------------------------------------------------- k-core, split
def kcore(
    users: npt.ArrayLike, items: npt.ArrayLike, n_users: int, n_items: int, k_user: int, k_item: int
) -> KCoreResult:
    """Row-level iterative k-core over dense codes."""
    return _core.kcore(_u32(users), _u32(items), n_users, n_items, k_user, k_item)


def sort_by_user_time(
    users: npt.ArrayLike, timestamps: npt.ArrayLike, n_users: int
) -> tuple[npt.NDArray[np.uint32], I64]:
    """Stable order of rows by (user, timestamp) and the per-user offsets."""
    return _core.sort_by_user_time(_u32(users), _i64(timestamps), n_users)


def global_temporal_split(
    offsets: npt.ArrayLike,
    timestamps: npt.ArrayLike,
    quantile: float = 0.8,
    target: Target = "last",
    valid: Valid = "time",
    valid_quantile: float = 0.8,
    threshold: float | None = None,
) -> SplitResult:
    """The global temporal split over a chronological CSR (see docs/architecture.md)."""
    return _core.global_temporal_split(
        _i64(offsets), _i64(timestamps), quantile, target, valid, valid_quantile, threshold
    )


def leave_one_out_split(offsets: npt.ArrayLike) -> SplitResult:
    return _core.leave_one_out_split(_i64(offsets))


# ------------------------------------------------------------------------------- sequences
def training_windows(train_end: npt.ArrayLike, length: int, stride: int, min_len: int = 2) -> tuple[I64, I64]:
    """``(users, ends)`` of the sliding training windows over each user's training prefix."""
    return _core.training_windows(_i64(train_end), length, stride, min_len)


def gather_windows(
    offsets: npt.ArrayLike, items: npt.ArrayLike, users: npt.ArrayLike, ends: npt.ArrayLike, length: int
) -> I64:
    """Left-padded windows ``[rows, length]`` of each row's items before ``ends``."""
    return _core.gather_windows(_i64(offsets), _i64(items), _i64(users), _i64(ends), length)


def permutation(n: int, seed: int) -> I64:
    """A seeded, portable permutation of ``0..n``."""
    return _core.permutation(n, seed)


def seen_items(
    offsets: npt.ArrayLike, items: npt.ArrayLike, users: npt.ArrayLike, ends: npt.ArrayLike
) -> tuple[I64, I64]:
    """Distinct items of each row's input as CSR ``(offsets, items)``."""
    return _core.seen_items(_i64(offsets), _i64(items), _i64(users), _i64(ends))


# --------------------------------------------------------------------------------- metrics
def topk_metrics(
    scores: npt.NDArray[np.float32],
    ks: Sequence[int],
    gt_offsets: npt.ArrayLike,
    gt_items: npt.ArrayLike,
    seen_offsets: npt.ArrayLike | None = None,
    seen_items: npt.ArrayLike | None = None,
    min_item: int = 0,
) -> TopkMetrics:
    """Top-k ids and per-row NDCG/Recall/HitRate/MRR at each k of a float32 score block.

    ``scores`` must already be a C-contiguous float32 matrix (it is not copied). Ties go to the
    lower id; NaN ranks below -inf; items below ``min_item`` and each row's seen items are never
    ranked. ``result["ndcg@10"]`` is the per-row NDCG@10, ``result.topk`` the ranked ids.
    """
    so = None if seen_offsets is None else _i64(seen_offsets)
    si = None if seen_items is None else _i64(seen_items)
    return _core.topk_metrics(scores, [int(k) for k in ks], _i64(gt_offsets), _i64(gt_items), so, si, min_item=min_item)


def topk_metrics_from_ids(
    topk: npt.ArrayLike, ks: Sequence[int], gt_offsets: npt.ArrayLike, gt_items: npt.ArrayLike
) -> TopkMetrics:
    """Metrics from precomputed top-k ids ``[rows, k]`` (-1 = empty slot), e.g. from ``torch.topk``."""
    return _core.topk_metrics_from_ids(_i64(topk), [int(k) for k in ks], _i64(gt_offsets), _i64(gt_items))
