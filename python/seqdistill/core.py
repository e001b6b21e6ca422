"""The one door to the compiled Rust core (``seqdistill._core``).

Every other module calls the core through the functions here; nothing else imports ``_core``.
Arguments are converted to the layout the core reads (C-contiguous, the right dtype) once, here;
results are typed records, and errors are the classes of :mod:`seqdistill.errors`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import numpy.typing as npt

from seqdistill import _core

__all__ = [
    "KCoreResult",
    "SplitResult",
    "TopkMetrics",
    "Target",
    "Valid",
    "METRICS",
    "core_version",
    "encode_i64",
    "encode_str",
    "gather_windows",
    "global_temporal_split",
    "kcore",
    "leave_one_out_split",
    "permutation",
    "seen_items",
    "sort_by_user_time",
    "topk_metrics",
    "topk_metrics_from_ids",
    "training_windows",
]

I64 = npt.NDArray[np.int64]
Target = Literal["last", "first", "all"]
Valid = Literal["time", "last_item", "none"]
METRICS = ("ndcg", "recall", "hit_rate", "mrr")


def core_version() -> str:
    return str(_core.__version__)


def _i64(a: npt.ArrayLike) -> I64:
    return np.ascontiguousarray(a, dtype=np.int64)


def _u32(a: npt.ArrayLike) -> npt.NDArray[np.uint32]:
    return np.ascontiguousarray(a, dtype=np.uint32)


# ------------------------------------------------------------------------------------ records
@dataclass(frozen=True)
class KCoreResult:
    """Outcome of the iterative k-core: ``keep`` per row, old → new dense code maps (-1 = dropped)."""

    keep: npt.NDArray[np.bool_]
    user_map: I64
    item_map: I64
    n_users: int
    n_items: int
    rounds: int
    rows_dropped: int


@dataclass(frozen=True)
class SplitResult:
    """A split over the chronological CSR: per-user training prefix lengths and ``(user, position)``
    targets; thresholds are NaN where the split has none."""

    train_end: I64
    valid_users: I64
    valid_pos: I64
    test_users: I64
    test_pos: I64
    test_threshold: float
    valid_threshold: float


@dataclass(frozen=True)
class TopkMetrics:
    """Per-row metrics of a block of rows at each ``k``, and each row's top ``max(ks)`` ids
    (-1 where fewer candidates). ``result["ndcg@10"]`` is the per-row NDCG@10."""

    ks: tuple[int, ...]
    topk: I64 | None
    ndcg: npt.NDArray[np.float64]  # [len(ks), rows]
    recall: npt.NDArray[np.float64]
    hit_rate: npt.NDArray[np.float64]
    mrr: npt.NDArray[np.float64]

    def __getitem__(self, key: str) -> npt.NDArray[np.float64]:
        name, _, k = key.partition("@")
        if name not in METRICS or not k.isdigit() or int(k) not in self.ks:
            raise KeyError(f"{key!r}: expected one of {self.keys()}")
        return getattr(self, name)[self.ks.index(int(k))]

    def keys(self) -> list[str]:
        return [f"{m}@{k}" for m in METRICS for k in self.ks]


def _metrics(d: dict, ks: Sequence[int], topk: I64 | None) -> TopkMetrics:
    ks = tuple(int(k) for k in ks)
    stack = {m: np.stack([d[f"{m}@{k}"] for k in ks]) if ks else np.zeros((0, 0)) for m in METRICS}
    return TopkMetrics(ks=ks, topk=topk, **stack)


# ------------------------------------------------------------------------------------ ids
def encode_i64(values: npt.ArrayLike) -> tuple[npt.NDArray[np.uint32], I64]:
    """Dense codes (sorted raw order) and the sorted distinct values."""
    return _core.encode_i64(_i64(values))


def encode_str(offsets: npt.ArrayLike, data: npt.ArrayLike) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint64]]:
    """Dense codes of UTF-8 strings in Arrow layout and, per code, the first row holding it."""
    return _core.encode_str(_i64(offsets), np.ascontiguousarray(data, dtype=np.uint8))


# ----------------------------------------------------------------------------- k-core, split
def kcore(users: npt.ArrayLike, items: npt.ArrayLike, n_users: int, n_items: int, k_user: int, k_item: int) -> KCoreResult:
    d = _core.kcore(_u32(users), _u32(items), n_users, n_items, k_user, k_item)
    return KCoreResult(**d)


def sort_by_user_time(users: npt.ArrayLike, timestamps: npt.ArrayLike, n_users: int) -> tuple[npt.NDArray[np.uint32], I64]:
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
    d = _core.global_temporal_split(_i64(offsets), _i64(timestamps), quantile, target, valid, valid_quantile, threshold)
    return SplitResult(**d)


def leave_one_out_split(offsets: npt.ArrayLike) -> SplitResult:
    return SplitResult(**_core.leave_one_out_split(_i64(offsets)))


# ------------------------------------------------------------------------------- sequences
def training_windows(train_end: npt.ArrayLike, length: int, stride: int, min_len: int = 2) -> tuple[I64, I64]:
    """``(users, ends)`` of the sliding training windows over each user's training prefix."""
    return _core.training_windows(_i64(train_end), length, stride, min_len)


def gather_windows(offsets: npt.ArrayLike, items: npt.ArrayLike, users: npt.ArrayLike, ends: npt.ArrayLike, length: int) -> I64:
    """Left-padded windows ``[rows, length]`` of each row's items before ``ends``."""
    return _core.gather_windows(_i64(offsets), _i64(items), _i64(users), _i64(ends), length)


def permutation(n: int, seed: int) -> I64:
    """A seeded, portable permutation of ``0..n``."""
    return _core.permutation(n, seed)


def seen_items(offsets: npt.ArrayLike, items: npt.ArrayLike, users: npt.ArrayLike, ends: npt.ArrayLike) -> tuple[I64, I64]:
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
    ranked.
    """
    so = None if seen_offsets is None else _i64(seen_offsets)
    si = None if seen_items is None else _i64(seen_items)
    d = _core.topk_metrics(scores, [int(k) for k in ks], _i64(gt_offsets), _i64(gt_items), so, si, min_item=min_item)
    return _metrics(d, ks, d["topk"])


def topk_metrics_from_ids(topk: npt.ArrayLike, ks: Sequence[int], gt_offsets: npt.ArrayLike, gt_items: npt.ArrayLike) -> TopkMetrics:
    """Metrics from precomputed top-k ids ``[rows, k]`` (-1 = empty slot), e.g. from ``torch.topk``."""
    t = _i64(topk)
    d = _core.topk_metrics_from_ids(t, [int(k) for k in ks], _i64(gt_offsets), _i64(gt_items))
    return _metrics(d, ks, t)
