"""``seqdistill.spark``: :func:`seqdistill.prepare`'s preprocessing on Apache Spark, for logs that do
not fit one machine's memory (extra ``[spark]``: pyspark, and Java 17).

:func:`prepare` takes a Spark DataFrame or parquet path(s) with the canonical columns and the same
``k_core`` / ``filter`` / :class:`~seqdistill.data.SplitConfig` arguments as
:func:`seqdistill.prepare`, and returns (and with ``out``, writes) the same
:class:`~seqdistill.data.PreparedDataset`: equal arrays, equal fingerprint. The steps (see
docs/spark.md for the jobs each costs and what is shuffled):

1. input: map and check the columns; one job counts rows, users, items and bad values;
2. filter: k-core rounds to the fixpoint, or compat's one pass (:mod:`._kcore`);
3. dense item ids in sorted raw order (:func:`._sequences.encode_items`); users need none;
4. the thresholds: the exact numpy-linear quantile by count-then-select (:mod:`._quantile`);
5. per user: range-partitioned by user, sorted by (user, time, input position), and split by the
   core's kernels in ``mapInArrow`` (:func:`._sequences.sequences`); the driver gathers the
   per-user rows (it holds the final dataset: about 20 bytes a kept row, 30 with ratings) and
   counts the audit with numpy.

The output folder is checked before any Spark work and written atomically by
:meth:`PreparedDataset.save` (through :mod:`seqdistill._io`).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from seqdistill import _io
from seqdistill.data.dataset import (
    FilterRound,
    PartCounts,
    PreparedDataset,
    SplitAudit,
    is_dataset_file,
    is_dataset_folder,
)
from seqdistill.data.prepare import FILTERS, SplitConfig, _k_core, _name_and_domain
from seqdistill.errors import DataError, SeqdistillWarning
from seqdistill.spark._session import JobMeter, StepCost, require_spark, session

__all__ = ["JobMeter", "StepCost", "prepare", "session"]


def prepare(
    data: Any,
    out: str | Path | None = None,
    *,
    k_core: int | tuple[int, int] | None = (5, 5),
    split: SplitConfig | None = None,
    name: str | None = None,
    domain: str | None = None,
    filter: str = "kcore",
    columns: Mapping[str, str] | None = None,
    spark: Any = None,
    master: str | None = None,
    partitions: int | None = None,
    overwrite: bool = True,
    meter: JobMeter | None = None,
) -> PreparedDataset:
    """Encodes, filters and splits ``data`` on Spark exactly as :func:`seqdistill.prepare` does.

    ``data``: a Spark DataFrame or a parquet file/folder path, with ``user_id``, ``item_id``
    (integers or strings), ``timestamp`` (integers) and optionally ``rating`` — or other names
    mapped by ``columns`` (``{"user_id": "uid", ...}``). Ties in time keep the input order (a
    DataFrame's own order; for files, sorted path then row). ``out``: write the dataset there
    (absent, empty, or a prepared dataset with ``overwrite``), checked before any work.
    ``spark``: the session to use (default: the active one, else a new one on ``master``,
    default ``local[2]``). ``partitions``: range partitions of the per-user step (default
    ``spark.sql.shuffle.partitions``). ``meter``: a :class:`JobMeter` that records each step's
    Spark jobs and shuffle bytes (the stats carry a summary either way).

    Raises :class:`~seqdistill.errors.DataError` for a bad log (missing column, wrong type, null
    or empty id) naming the column and row, and when nothing survives the filter or the split
    leaves no training part; :class:`~seqdistill.errors.OutputError` for an ``out`` it may not
    replace; :class:`~seqdistill.errors.ConfigError` when pyspark or Java is missing.
    """
    started = time.perf_counter()
    split = split or SplitConfig()
    if not isinstance(split, SplitConfig):
        raise DataError(f"split must be a SplitConfig, got {type(split).__name__}")
    default = Path(str(data)).stem if isinstance(data, (str, Path)) else "dataset"
    name, domain = _name_and_domain(name or default, domain, None)  # as load reads them back
    if not isinstance(filter, str) or filter not in FILTERS:
        raise DataError(f"{name}: filter must be one of {FILTERS}, got {filter!r}")
    k_user, k_item = _k_core(k_core, name, filter)
    if out is not None:
        _io.check_replaceable(out, is_dataset_folder, "prepared dataset", overwrite, known=is_dataset_file)
    require_spark()
    spark = spark or session(master)
    meter = meter or JobMeter(spark)
    run = _Run(spark, meter, name, split, partitions)
    ds = run.prepare(data, columns, filter, (k_user, k_item), domain, started)
    if out is not None:
        ds.save(out, overwrite=overwrite)
    return ds


class _Run:
    """One preparation: the session, its meter, and the steps in order."""

    def __init__(self, spark: Any, meter: JobMeter, name: str, split: SplitConfig, partitions: int | None) -> None:
        self.spark, self.meter, self.name, self.split = spark, meter, name, split
        self.parts = int(partitions or spark.conf.get("spark.sql.shuffle.partitions"))

    def prepare(
        self, data: Any, columns: Any, filter: str, ks: tuple[int, int], domain: str, started: float
    ) -> PreparedDataset:
        from seqdistill.spark._input import load
        from seqdistill.spark._kcore import filter_rows

        with self.meter.step("input"):
            inp = load(self.spark, data, columns, self.name)
        try:
            kept = filter_rows(inp.df, inp.rows, filter, ks[0], ks[1], self.meter)
            if kept.rows == 0:
                raise DataError(
                    f"{self.name}: nothing left after {'k-core' if filter == 'kcore' else 'the compat filter'} with "
                    f"k_user={ks[0]}, k_item={ks[1]} "
                    f"({inp.rows} rows, {kept.users_in} users, {kept.items_in} items before the filter)"
                )
            arrays, user_ids, item_ids, thresholds = self._sequences(kept, inp.has_rating)
        finally:
            inp.df.unpersist()
        return self._dataset(arrays, user_ids, item_ids, thresholds, inp, kept, filter, ks, domain, started)

    def _sequences(self, kept: Any, with_rating: bool) -> tuple[dict[str, Any], pl.Series, pl.Series, tuple]:
        from seqdistill.spark._sequences import collect, sequences

        rows, items, plan = self.rows(kept, with_rating)
        with self.meter.step("sequences"):
            users, arrays = collect(sequences(rows, self.parts, plan, with_rating), with_rating)
        user_ids = pl.Series("user_id", pl.from_arrow(users))
        uniq = pl.Series("item_id", pl.from_arrow(items))
        item_ids = pl.concat([pl.Series("item_id", [None], dtype=uniq.dtype), uniq])
        return arrays, _ids(user_ids), _ids(item_ids), (plan.test_threshold, plan.valid_threshold)

    def rows(self, kept: Any, with_rating: bool) -> tuple[Any, Any, Any]:
        """The per-user step's input: the kept rows with dense item ids (``user_id``, ``i``,
        ``timestamp``[, ``rating``], ``_row``), the sorted item ids, and the split plan."""
        from seqdistill.spark._sequences import SplitPlan, encode_items

        with self.meter.step("encode"):
            icodes, items = encode_items(kept.df, self.parts)
        with self.meter.step("thresholds"):
            t_test, t_valid = self._thresholds(kept)
        plan = SplitPlan(self.split.kind, self.split.target, self.split.valid, t_test, t_valid)
        extra = ["rating"] if with_rating else []
        rows = kept.df.join(icodes, "item_id").select("user_id", "i", "timestamp", *extra, "_row")
        return rows, items, plan

    def _thresholds(self, kept: Any) -> tuple[float, float]:
        """The test and validation thresholds (NaN: none), exact (see :mod:`._quantile`). A log
        of at most ``COLLECT_LIMIT`` rows has its timestamps collected once instead."""
        from pyspark.sql import functions as F

        from seqdistill.spark._quantile import COLLECT_LIMIT, interpolate, quantile

        sp = self.split
        if sp.kind == "leave_one_out":
            return math.nan, math.nan
        if kept.rows <= COLLECT_LIMIT:
            ts = np.sort(kept.df.select("timestamp").toArrow().column(0).to_numpy())
            t_test = sp.threshold
            if t_test is None:
                t_test = interpolate(len(ts), sp.quantile, lambda lo, hi: (ts[lo], ts[hi]))
            train = ts[ts.astype(np.float64) < float(t_test)]
            n_train = len(train)
        else:
            t_test = sp.threshold
            if t_test is None:
                t_test = quantile(kept.df, "timestamp", kept.rows, sp.quantile)
            train = kept.df.where(F.col("timestamp").cast("double") < F.lit(t_test))
            n_train = train.count() if sp.valid == "time" else -1
        t_test = float(t_test)
        if sp.valid != "time":
            return t_test, math.nan
        if n_train == 0:
            raise DataError(f"{self.name}: the training part is empty: nothing before the test threshold")
        if isinstance(train, np.ndarray):
            return t_test, interpolate(n_train, sp.valid_quantile, lambda lo, hi: (train[lo], train[hi]))
        return t_test, quantile(train, "timestamp", n_train, sp.valid_quantile)

    def _dataset(
        self,
        a: dict[str, Any],
        user_ids: pl.Series,
        item_ids: pl.Series,
        thresholds: tuple[float, float],
        inp: Any,
        kept: Any,
        filter: str,
        ks: tuple[int, int],
        domain: str,
        started: float,
    ) -> PreparedDataset:
        name, split = self.name, self.split
        train_end = a["train_end"]
        if int(train_end.sum()) == 0:
            raise DataError(f"{name}: the training part is empty with split {split.to_dict()}")
        if len(a["test_users"]) == 0:
            warnings.warn(
                f"{name}: the split {split.to_dict()} gives no test targets (no user has an interaction at or after "
                "the test threshold with an earlier one before it); this dataset cannot be evaluated — lower the "
                "quantile or check the timestamps",
                SeqdistillWarning,
                stacklevel=3,
            )
        t0 = time.perf_counter()
        audit = _audit(a, thresholds, len(item_ids) - 1, split.kind, filter, ks, inp, kept)
        self.meter.steps.append(StepCost("audit", seconds=time.perf_counter() - t0))
        n_users, n_items, n = len(user_ids), len(item_ids) - 1, len(a["items"])
        stats = {
            "rows_in": inp.rows,
            "users": n_users,
            "items": n_items,
            "interactions": n,
            "avg_length": n / n_users,
            "density": n / (n_users * n_items),
            "kcore": {
                "filter": filter,
                "k_user": ks[0],
                "k_item": ks[1],
                "rounds": len(kept.removed),
                "rows_dropped": inp.rows - kept.rows,
            },
            "train_interactions": int(train_end.sum()),
            "valid_targets": len(a["valid_users"]),
            "test_targets": len(a["test_users"]),
            "test_threshold": _finite(thresholds[0]),
            "valid_threshold": _finite(thresholds[1]),
            "stages": {s.step: round(s.seconds, 4) for s in self.meter.steps if not s.step.startswith("kcore")}
            | {"kcore": round(self.meter.total("kcore").seconds, 4)},
            "seconds": round(time.perf_counter() - started, 3),
            "engine": "spark",
            "spark": _spark_stats(self.meter, self.spark),
        }
        manifest = {
            "name": name,
            "domain": domain,
            "split": split.to_dict(),
            "filter": filter,
            "k_core": list(ks),
            "stats": stats,
            "audit": audit.to_dict(),
        }
        return PreparedDataset(
            name=name,
            domain=domain,
            user_ids=user_ids,
            item_ids=item_ids,
            offsets=a["offsets"],
            items=a["items"],
            timestamps=a["timestamps"],
            ratings=a["ratings"],
            train_end=train_end,
            valid_targets=(a["valid_users"], a["valid_pos"]),
            test_targets=(a["test_users"], a["test_pos"]),
            manifest=manifest,
            audit=audit,
        )


def _ids(s: pl.Series) -> pl.Series:
    """Ids as the in-memory path types them: Int64 or String."""
    return s.cast(pl.String) if s.dtype in (pl.String, pl.Utf8, pl.Categorical) else s.cast(pl.Int64)


def _finite(x: float) -> float | None:
    return None if x != x else float(x)


def _spark_stats(meter: JobMeter, spark: Any) -> dict[str, Any]:
    rounds = [s.to_dict() for s in meter.steps if s.step.startswith("kcore round")]
    total = meter.total("")
    return {
        "master": spark.sparkContext.master,
        "default_parallelism": spark.sparkContext.defaultParallelism,
        "jobs": total.jobs,
        "shuffle_write_bytes": total.shuffle_write_bytes,
        "kcore_rounds": rounds,
        "steps": [s.to_dict() for s in meter.steps if not s.step.startswith("kcore round")],
    }


def _audit(
    a: dict[str, Any],
    thresholds: tuple[float, float],
    n_items: int,
    kind: str,
    filter: str,
    ks: tuple[int, int],
    inp: Any,
    kept: Any,
) -> SplitAudit:
    """The split audit, counted as the core's ``audit.rs`` does, on the gathered arrays."""
    offsets, ts, items, train_end = a["offsets"], a["timestamps"], a["items"], a["train_end"]
    lengths = np.diff(offsets)
    pos = np.arange(len(items), dtype=np.int64) - np.repeat(offsets[:-1], lengths)
    in_train = pos < np.repeat(train_end, lengths)
    train_ts = ts[in_train].astype(np.float64)

    def after(cut: float) -> int | None:
        return None if cut != cut else int(np.count_nonzero(~(train_ts < cut)))

    seen = np.zeros(n_items + 1, dtype=bool)
    seen[items[in_train]] = True
    tu, tp = a["test_users"], a["test_pos"]
    target_items = items[offsets[tu] + tp]
    unseen = ~seen[target_items]
    test_users = np.unique(tu)
    return SplitAudit(
        split=kind,
        filter=filter,
        k_user=ks[0],
        k_item=ks[1],
        rows_in=inp.rows,
        users_in=kept.users_in,
        items_in=kept.items_in,
        filter_rounds=tuple(FilterRound(j + 1, u, i, r) for j, (u, i, r) in enumerate(kept.removed)),
        test_cutoff=_finite(thresholds[0]),
        valid_cutoff=_finite(thresholds[1]),
        train=PartCounts(int(np.count_nonzero(train_end)), int(train_end.sum())),
        valid=PartCounts(len(np.unique(a["valid_users"])), len(a["valid_users"])),
        test=PartCounts(len(test_users), len(tu)),
        train_rows_at_or_after_test_cutoff=after(thresholds[0]),
        train_rows_at_or_after_valid_cutoff=after(thresholds[1]),
        test_users_without_train=int(np.count_nonzero(train_end[test_users] == 0)),
        test_targets_unseen_item=int(np.count_nonzero(unseen)),
        test_items_unseen=len(np.unique(target_items[unseen])),
    )
