"""Preprocessing at scale: seqdistill's Rust pipeline vs an idiomatic polars implementation.

Both run in this process on the same synthetic log (Zipf-like item popularity, lognormal user
lengths, shuffled rows): encode ids → iterative 5-core → global temporal split (0.8 quantile,
last-item targets, no validation carve) → per-user chronological sequences (CSR). The results are
compared element by element; seconds, peak memory above the input and the ratio are printed.

    python benches/preprocess.py --rows 20000000 [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).parent))
from _common import PeakMemory, machine, write_json  # noqa: E402

import seqdistill as sd  # noqa: E402
from seqdistill.data import SplitConfig  # noqa: E402


def synthetic_log(rows: int, seed: int = 0) -> pl.DataFrame:
    """~138k users and ~27k items at 20M rows (scaled linearly), as in ML-20M's shape."""
    rng = np.random.default_rng(seed)
    n_users = max(10, int(138_000 * rows / 20_000_000))
    n_items = max(10, int(27_000 * rows / 20_000_000))
    lengths = rng.lognormal(mean=0.0, sigma=1.0, size=n_users)
    lengths = np.maximum(1, np.round(lengths / lengths.sum() * rows)).astype(np.int64)
    diff = rows - lengths.sum()
    lengths[np.argmax(lengths)] += diff
    users = np.repeat(np.arange(n_users, dtype=np.int64) * 7 + 1_000_003, lengths)
    ranks = np.arange(1, n_items + 1, dtype=np.float64)
    cdf = np.cumsum(1.0 / (ranks + 5.0) ** 1.05)
    cdf /= cdf[-1]
    items = np.searchsorted(cdf, rng.random(rows)).astype(np.int64) * 13 + 500
    ts = rng.integers(1_000_000_000, 1_500_000_000, rows, dtype=np.int64)
    perm = rng.permutation(rows)
    return pl.DataFrame({"user_id": users[perm], "item_id": items[perm], "timestamp": ts[perm]})


def ours(df: pl.DataFrame, k: int):
    ds = sd.prepare(df, k_core=k, split=SplitConfig(valid="none", target="last"))
    test_users, test_pos = ds.targets("test")
    return {
        "user_ids": ds.user_ids.to_numpy(),
        "item_ids": ds.item_ids[1:].to_numpy(),
        "offsets": ds.offsets,
        "items": ds.items,
        "train_end": ds.train_end,
        "test_users": test_users,
        "test_pos": test_pos,
        "rounds": ds.stats["kcore"]["rounds"],
    }


def polars_baseline(df: pl.DataFrame, k: int):
    """The same steps written the way a polars user would."""
    lf = df.lazy().with_row_index("row")
    rounds = 0
    cur = lf.collect()
    while True:
        nxt = cur.filter((pl.len().over("user_id") >= k) & (pl.len().over("item_id") >= k))
        if nxt.height == cur.height:
            break
        cur, rounds = nxt, rounds + 1
    thr = cur.get_column("timestamp").quantile(0.8, interpolation="linear")
    enc = (
        cur.lazy()
        .with_columns(
            (pl.col("user_id").rank("dense") - 1).cast(pl.Int64).alias("user"),
            pl.col("item_id").rank("dense").cast(pl.Int64).alias("item"),
        )
        .sort(["user", "timestamp", "row"])
        .with_columns(pl.int_range(pl.len()).over("user").alias("pos"))
        .collect()
    )
    per_user = (
        enc.lazy()
        .group_by("user", maintain_order=True)
        .agg(
            pl.len().alias("n"),
            (pl.col("timestamp") < thr).sum().alias("train_end"),
            pl.col("pos").filter((pl.col("timestamp") >= thr) & (pl.col("pos") >= 1)).last().alias("test_pos"),
        )
        .collect()
    )
    user_ids = enc.group_by("user").agg(pl.col("user_id").first()).sort("user").get_column("user_id").to_numpy()
    item_ids = enc.group_by("item").agg(pl.col("item_id").first()).sort("item").get_column("item_id").to_numpy()
    n = per_user.get_column("n").to_numpy()
    test = per_user.filter(pl.col("test_pos").is_not_null())
    return {
        "user_ids": user_ids,
        "item_ids": item_ids,
        "offsets": np.concatenate([[0], np.cumsum(n)]),
        "items": enc.get_column("item").to_numpy(),
        "train_end": per_user.get_column("train_end").to_numpy(),
        "test_users": test.get_column("user").to_numpy(),
        "test_pos": test.get_column("test_pos").to_numpy(),
        "rounds": rounds,
    }


def same(a: dict, b: dict) -> bool:
    ok = True
    for key in a:
        if key == "rounds":
            continue
        if not np.array_equal(np.asarray(a[key], dtype=np.int64), np.asarray(b[key], dtype=np.int64)):
            print(f"  mismatch in {key}")
            ok = False
    return ok


def timed(fn, *args):
    gc.collect()
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        out = fn(*args)
        secs = time.perf_counter() - t0
    return out, secs, mem.peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-baseline", action="store_true", help="time seqdistill only (e.g. at 100M rows)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    print(f"machine: {machine()}")
    t0 = time.perf_counter()
    df = synthetic_log(args.rows, args.seed)
    input_bytes = df.estimated_size()
    print(f"generated {df.height:,} rows in {time.perf_counter() - t0:.1f}s; input columns {input_bytes / 2**30:.2f} GiB")

    a, secs_a, mem_a = timed(ours, df, args.k)
    print(f"seqdistill: {secs_a:7.2f}s  peak +{mem_a / 2**30:.2f} GiB ({mem_a / input_bytes:.2f}x input)  kcore rounds {a['rounds']}  "
          f"users {len(a['user_ids']):,} items {len(a['item_ids']):,} rows {len(a['items']):,}")
    row = {"case": f"prepare {args.rows:,} rows", "ours_s": round(secs_a, 3), "ours_peak_gib": round(mem_a / 2**30, 3),
           "input_gib": round(input_bytes / 2**30, 3), "baseline": "polars", "baseline_s": None, "ratio": None, "same_result": None}
    if not args.skip_baseline:
        b, secs_b, mem_b = timed(polars_baseline, df, args.k)
        ok = same(a, b)
        print(f"polars:     {secs_b:7.2f}s  peak +{mem_b / 2**30:.2f} GiB ({mem_b / input_bytes:.2f}x input)  kcore rounds {b['rounds']}")
        print(f"ratio (polars / seqdistill): {secs_b / secs_a:.2f}x   same result: {ok}")
        row.update(baseline_s=round(secs_b, 3), ratio=round(secs_b / secs_a, 3), same_result=ok, baseline_peak_gib=round(mem_b / 2**30, 3))
    write_json(args.json, "preprocess", [row])


if __name__ == "__main__":
    main()
