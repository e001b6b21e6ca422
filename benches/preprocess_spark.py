"""Preprocessing on Apache Spark (``seqdistill.spark.prepare``, ``local[2]``) side by side with the
in-memory Rust core on the same parquet file, and the per-user step two ways.

The same steps as ``benches/preprocess.py`` (iterative k-core with k = 5 to the fixpoint, dense
ids, the numpy-linear 0.8 quantile threshold, per-user chronological sequences, training prefix
and last-item test target), on the same generated logs (its ``synthetic_log`` / ``data_file``).
The in-memory core runs in a fresh worker process of that bench (file read included); Spark runs
in this process, from the parquet file, and its result is compared element by element.

Reported per case: seconds, rows/s per core, peak memory of the Python driver (the gathered
arrays and the dataset) and of the Spark JVM (in ``local`` mode the driver and the executors are
one JVM; its heap is ``--driver-memory``), Spark jobs, stages and shuffle bytes per k-core round
and per step (from the status tracker and the JVM's status store; no REST, no UI), and with
``--per-user`` the per-user step as the package runs it (range partition by user, sort, the core's
split kernels in ``mapInArrow``) against a Spark SQL version (``collect_list`` + ``sort_array`` +
array functions) on the same checkpointed input.

    python benches/preprocess_spark.py --case 1m [--case ml20m] [--per-user] [--json out.json]

Needs the ``[spark]`` extra and Java 17. Run one bench at a time (``pgrep -f benches/``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import PeakMemory, machine, write_json  # noqa: E402
from preprocess import CASES, K, Q, data_file, run_worker, same  # noqa: E402


class TreeMemory:
    """Peak resident memory of a process and its descendants (the Spark JVM and its Python
    workers), sampled every ``interval`` seconds from /proc."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()

    def _tree_rss(self) -> int:
        parent: dict[int, int] = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
                except OSError:
                    continue
        tree, frontier = {self.pid}, [self.pid]
        while frontier:
            p = frontier.pop()
            kids = [c for c, pp in parent.items() if pp == p and c not in tree]
            tree.update(kids)
            frontier += kids
        total = 0
        for p in tree:
            try:
                with open(f"/proc/{p}/statm") as f:
                    total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            except OSError:
                continue
        return total

    def __enter__(self) -> TreeMemory:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._tree_rss())
            time.sleep(self.interval)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def arrays_of(ds: Any) -> dict[str, np.ndarray]:
    tu, tp = ds.targets("test")
    return {
        "user_ids": ds.user_ids.to_numpy(),
        "item_ids": ds.item_ids[1:].to_numpy(),
        "offsets": ds.offsets,
        "items": ds.items,
        "train_end": ds.train_end,
        "test_users": tu,
        "test_pos": tp,
    }


def per_user_sql(rows: Any, parts: int, t_test: float) -> Any:
    """The per-user step in Spark SQL (global temporal split, last target, no validation): the
    rows of each user gathered and sorted as structs, then array functions."""
    from pyspark.sql import functions as F

    events = F.sort_array(F.collect_list(F.struct("timestamp", "_row", "i"))).alias("ev")
    g = rows.repartitionByRange(parts, "user_id").groupBy("user_id").agg(events)
    ts = F.transform("ev", lambda e: e["timestamp"])
    n = F.size("ev")
    train = F.size(F.filter(ts, lambda t: t.cast("double") < F.lit(t_test)))
    none = F.array().cast("array<long>")
    test = F.when(n > F.greatest(train, F.lit(1)), F.array((n - 1).cast("long"))).otherwise(none)
    return g.select(
        "user_id",
        F.transform("ev", lambda e: e["i"]).alias("items"),
        ts.alias("ts"),
        train.cast("long").alias("train_end"),
        none.alias("valid_pos"),
        test.alias("test_pos"),
    ).sortWithinPartitions("user_id")


def compare_per_user(spark: Any, path: Path, parts: int) -> dict[str, Any]:
    """Both per-user variants on the same checkpointed input; their arrays must agree."""
    from seqdistill.data import SplitConfig
    from seqdistill.spark import JobMeter, _Run
    from seqdistill.spark._input import load
    from seqdistill.spark._kcore import filter_rows
    from seqdistill.spark._sequences import collect, sequences

    meter = JobMeter(spark)
    run = _Run(spark, meter, "bench", SplitConfig(quantile=Q, valid="none", target="last"), parts)
    inp = load(spark, str(path), None, "bench")
    kept = filter_rows(inp.df, inp.rows, "kcore", K, K, meter)
    rows, _, plan = run.rows(kept, False)
    rows = rows.localCheckpoint()
    out: dict[str, Any] = {}
    results = {}
    for name, make in (
        ("mapInArrow + core kernels", lambda: sequences(rows, parts, plan, False)),
        ("Spark SQL arrays", lambda: per_user_sql(rows, parts, plan.test_threshold)),
    ):
        with meter.step(name):
            t0 = time.perf_counter()
            results[name] = collect(make(), False)[1]
            out[name] = round(time.perf_counter() - t0, 3)
        print(f"  per-user step, {name}: {out[name]:.2f}s", flush=True)
    a, b = results.values()
    out["same_result"] = all(np.array_equal(a[k], b[k]) for k in ("offsets", "items", "train_end", "test_pos"))
    out["steps"] = [s.to_dict() for s in meter.steps if s.step in results]
    inp.df.unpersist()
    return out


def bench_case(case: str, args: argparse.Namespace, spark: Any) -> dict[str, Any]:
    from seqdistill import spark as sds
    from seqdistill.data import SplitConfig

    path = data_file(case, Path(args.data_dir))
    rows_in = CASES[case][0]
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "core.npz"
        core = run_worker("seqdistill", path, "parquet", "pl.read_parquet", npz)
        reference = dict(np.load(npz))
    print(f"  in-memory core: {core['seconds']:.2f}s, peak +{core['peak_bytes'] / 2**30:.2f} GiB", flush=True)
    cores = spark.sparkContext.defaultParallelism if args.cores is None else args.cores
    meter = sds.JobMeter(spark)
    jvm_pid = spark.sparkContext._gateway.proc.pid
    with warnings.catch_warnings(), PeakMemory() as py_mem, TreeMemory(jvm_pid) as jvm_mem:
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        ds = sds.prepare(
            str(path),
            k_core=K,
            split=SplitConfig(quantile=Q, valid="none", target="last"),
            spark=spark,
            meter=meter,
            partitions=args.partitions,
        )
        secs = time.perf_counter() - t0
    ok = same(reference, arrays_of(ds))
    sp = ds.stats["spark"]
    rounds = sp["kcore_rounds"]
    print(
        f"  spark {spark.sparkContext.master}: {secs:.1f}s ({rows_in / secs / cores:,.0f} rows/s per core), "
        f"same {ok}, {sp['jobs']} jobs, {len(rounds)} k-core rounds "
        f"(jobs {[r['jobs'] for r in rounds]}, shuffle MiB {[round(r['shuffle_write_bytes'] / 2**20, 1) for r in rounds]}), "
        f"python driver peak +{py_mem.peak / 2**30:.2f} GiB, JVM tree peak {jvm_mem.peak / 2**30:.2f} GiB",
        flush=True,
    )
    row = {
        "case": f"{case} {rows_in:,} rows, parquet",
        "ours_s": round(secs, 3),
        "baseline": "seqdistill in-memory core (parquet read included)",
        "baseline_s": round(core["seconds"], 4),
        "ratio": round(secs / core["seconds"], 2),
        "same_result": bool(ok),
        "master": spark.sparkContext.master,
        "cores": cores,
        "rows_per_s_per_core": round(rows_in / secs / cores),
        "driver_python_peak_gib": round(py_mem.peak / 2**30, 3),
        "jvm_tree_peak_gib": round(jvm_mem.peak / 2**30, 3),
        "driver_memory": spark.conf.get("spark.driver.memory", None),
        "baseline_peak_gib": round(core["peak_bytes"] / 2**30, 3),
        "input_gib": round(path.stat().st_size / 2**30, 3),
        "spark_jobs": sp["jobs"],
        "shuffle_write_bytes": sp["shuffle_write_bytes"],
        "kcore_rounds": rounds,
        "steps": sp["steps"],
        "kept_rows": ds.n_interactions,
    }
    if args.per_user:
        row["per_user"] = compare_per_user(
            spark, path, args.partitions or int(spark.conf.get("spark.sql.shuffle.partitions"))
        )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", action="append", choices=sorted(CASES), help="default: 1m")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--driver-memory", default="6g")
    ap.add_argument("--partitions", type=int, default=None, help="shuffle partitions (default: 2 x cores)")
    ap.add_argument("--cores", type=int, default=None, help="cores for rows/s per core (default: Spark's parallelism)")
    ap.add_argument("--per-user", action="store_true", help="also time the per-user step two ways")
    ap.add_argument("--data-dir", default="bench-results/data")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from seqdistill.spark import session

    print(f"machine: {machine()}", flush=True)
    n_cores = int(args.master[len("local[") : -1]) if args.master.startswith("local[") else None
    parts = str(args.partitions or 2 * (n_cores or 2))
    spark = session(
        args.master,
        driver_memory=args.driver_memory,
        conf={"spark.sql.shuffle.partitions": parts, "spark.default.parallelism": str(n_cores or 2)},
    )
    rows = []
    for case in args.case or ["1m"]:
        print(f"{case} [{args.master}]", flush=True)
        rows.append(bench_case(case, args, spark))
        print(json.dumps({k: v for k, v in rows[-1].items() if k not in ("steps", "kcore_rounds")}), flush=True)
    write_json(args.json, "preprocess_spark", rows)
    spark.stop()


if __name__ == "__main__":
    main()
