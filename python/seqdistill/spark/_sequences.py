"""Dense ids and per-user chronological sequences with their split, on Spark.

Dense item ids (:func:`encode_items`): the surviving distinct items, range-partitioned and sorted
(Spark orders longs as signed numbers and strings by their UTF-8 bytes, as the core does), are
collected once (the dataset keeps them) with their partition numbers; an item's dense id is its
partition's start plus its index inside the partition. Nothing goes through one task.

Per user (:func:`sequences`): the rows, with their dense item ids, are range-partitioned by raw
user id and sorted within each partition by ``(user, timestamp, input position)`` — the core's
stable order. Users need no encoding: collected in partition order, the per-user rows come in
sorted user order, so a row's position is the user's dense id (checked on the driver).
Each partition holds whole users in order, and a ``mapInArrow`` function runs the core's own
split kernels on it (:func:`seqdistill.core.global_temporal_split` with the global thresholds
computed beforehand, or :func:`seqdistill.core.leave_one_out_split`) and emits one row per user:
its items, timestamps, ratings, training length and target positions. (A Spark SQL version of the
same step — ``collect_list`` + ``sort_array`` + array functions — is measured against it by
``benches/preprocess_spark.py``; see docs/spark.md for which won.)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from seqdistill import core

__all__ = ["SplitPlan", "collect", "encode_items", "sequences", "split_users"]


def _ascending(ids: Any) -> bool:
    """Whether a pyarrow array is strictly ascending (strings: by UTF-8 bytes, as Spark sorts)."""
    import pyarrow.compute as pc

    if len(ids) < 2:
        return True
    return bool(pc.all(pc.less(ids.slice(0, len(ids) - 1), ids.slice(1))).as_py())


def encode_items(df: Any, parts: int) -> tuple[Any, Any]:
    """``(codes, ids)``: a DataFrame ``(item_id, i)`` with dense ids ``1..n`` in sorted id order,
    and the sorted distinct ids as a pyarrow array (collected: the dataset keeps them)."""
    from pyspark.sql import functions as F

    d = df.select("item_id").distinct().repartitionByRange(parts, "item_id").sortWithinPartitions("item_id")
    d = d.localCheckpoint()
    pid = F.spark_partition_id()
    table = d.select("item_id", pid.alias("p")).toArrow()
    ids = table.column("item_id").combine_chunks()
    if not _ascending(ids):  # partitions came back out of order: a bug, not the user's input
        raise AssertionError("distinct item ids were not collected in sorted order")
    sizes = np.bincount(table.column("p").to_numpy(), minlength=d.rdd.getNumPartitions())
    starts = np.concatenate([[1], 1 + np.cumsum(sizes)[:-1]])
    local = F.monotonically_increasing_id() - F.shiftleft(pid.cast("long"), 33)
    start = F.element_at(F.array(*[F.lit(int(x)) for x in starts]), pid + 1)
    return d.select("item_id", (start + local).alias("i")), ids


@dataclass(frozen=True)
class SplitPlan:
    """The split, with its global thresholds already computed (NaN: none)."""

    kind: str
    target: str
    valid: str
    test_threshold: float
    valid_threshold: float


def _csr(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def split_users(offsets: np.ndarray, ts: np.ndarray, plan: SplitPlan) -> tuple[np.ndarray, ...]:
    """``(train_end, valid_users, valid_pos, test_users, test_pos)`` of whole users (a CSR over
    their chronological rows), by the core's kernels at the plan's global thresholds."""
    if plan.kind == "leave_one_out":
        s = core.leave_one_out_split(offsets)
        return s.train_end, s.valid_users, s.valid_pos, s.test_users, s.test_pos
    s = core.global_temporal_split(offsets, ts, target=plan.target, valid="none", threshold=plan.test_threshold)
    train_len = s.train_end
    if plan.valid == "none":
        return train_len, np.zeros(0, np.int64), np.zeros(0, np.int64), s.test_users, s.test_pos
    if plan.valid == "last_item":
        has = train_len >= 2
        vu = np.flatnonzero(has).astype(np.int64)
        return train_len - has, vu, train_len[vu] - 1, s.test_users, s.test_pos
    # "time": the same rule again on the training prefixes, at the validation threshold
    lengths = np.diff(offsets)
    pos = np.arange(len(ts), dtype=np.int64) - np.repeat(offsets[:-1], lengths)
    train_ts = ts[pos < np.repeat(train_len, lengths)]
    v = core.global_temporal_split(
        _csr(train_len), train_ts, target=plan.target, valid="none", threshold=plan.valid_threshold
    )
    return v.train_end, v.test_users, v.test_pos, s.test_users, s.test_pos


def _lists(values: np.ndarray, offsets: np.ndarray) -> Any:
    import pyarrow as pa

    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))


def _per_partition(plan: SplitPlan, with_rating: bool) -> Any:
    """The ``mapInArrow`` function: sorted rows of whole users in, one row per user out."""

    def run(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa
        import pyarrow.compute as pc

        table = pa.Table.from_batches(list(batches))
        n = table.num_rows
        if n == 0:
            return
        users = table.column("user_id").combine_chunks()
        change = pc.not_equal(users.slice(0, n - 1), users.slice(1)).to_numpy(zero_copy_only=False)
        first = np.concatenate([[0], np.flatnonzero(change) + 1]).astype(np.int64)
        offsets = np.concatenate([first, [n]]).astype(np.int64)
        ts = table.column("timestamp").to_numpy().astype(np.int64, copy=False)
        train_end, vu, vp, tu, tp = split_users(offsets, ts, plan)
        k = len(first)
        cols = {
            "user_id": users.take(pa.array(first)),
            "items": _lists(table.column("i").to_numpy(), offsets),
            "ts": _lists(ts, offsets),
        }
        if with_rating:
            cols["ratings"] = _lists(table.column("rating").to_numpy(), offsets)
        cols["train_end"] = pa.array(np.asarray(train_end, dtype=np.int64))
        cols["valid_pos"] = _lists(np.asarray(vp, np.int64), _csr(np.bincount(vu, minlength=k)))
        cols["test_pos"] = _lists(np.asarray(tp, np.int64), _csr(np.bincount(tu, minlength=k)))
        yield from pa.Table.from_pydict(cols).to_batches()

    return run


def _schema(user_type: str, with_rating: bool) -> str:
    rating = "ratings array<float>, " if with_rating else ""
    return (
        f"user_id {user_type}, items array<long>, ts array<long>, {rating}train_end long, "
        "valid_pos array<long>, test_pos array<long>"
    )


def sequences(rows: Any, parts: int, plan: SplitPlan, with_rating: bool) -> Any:
    """One row per user, in sorted raw user id order when collected (the row's position is the
    user's dense id). ``rows`` has ``user_id`` (raw), ``i`` (dense item), ``timestamp``, ``_row``
    and optionally ``rating``."""
    ordered = rows.repartitionByRange(parts, "user_id").sortWithinPartitions("user_id", "timestamp", "_row")
    user_type = dict(rows.dtypes)["user_id"]
    return ordered.mapInArrow(_per_partition(plan, with_rating), _schema(user_type, with_rating))


def collect(per_user: Any, with_rating: bool) -> tuple[Any, dict[str, np.ndarray]]:
    """The per-user rows gathered on the driver: the sorted user ids, and the dataset's arrays
    (CSR order)."""
    import pyarrow.compute as pc

    t = per_user.toArrow()
    ids = t.column("user_id").combine_chunks()
    if not _ascending(ids):  # partitions came back out of order: a bug, not the user's input
        raise AssertionError("per-user rows were not collected in sorted user order")

    def flat(name: str, dtype: Any) -> np.ndarray:
        return pc.list_flatten(t.column(name)).to_numpy().astype(dtype, copy=False)

    def lens(name: str) -> np.ndarray:
        return pc.list_value_length(t.column(name)).to_numpy().astype(np.int64)

    out = {
        "offsets": _csr(lens("items")),
        "items": flat("items", np.int64),
        "timestamps": flat("ts", np.int64),
        "ratings": flat("ratings", np.float32) if with_rating else None,
        "train_end": t.column("train_end").to_numpy().astype(np.int64),
    }
    users = np.arange(len(ids), dtype=np.int64)
    for part in ("valid", "test"):
        out[f"{part}_users"] = np.repeat(users, lens(f"{part}_pos"))
        out[f"{part}_pos"] = flat(f"{part}_pos", np.int64)
    return ids, out
