"""Preprocessing at scale: seqdistill's fused Rust pipeline vs the fastest polars and DuckDB
pipelines we could write for the same steps.

Steps (all pipelines): iterative k-core to the fixpoint (simultaneous rounds) → dense ids in
sorted raw order (items from 1) → the global temporal threshold (numpy-linear 0.8 quantile) →
per-user chronological sequences (CSR; equal timestamps keep file order) → per-user training
prefix length and the last-item test target. The results are compared element by element.

Every candidate runs in a fresh worker process (the same for all: `python benches/preprocess.py
--worker ...`) on the same parquet file, so peak memory is its own; the parent compares the
arrays and prints medians, ratios and our per-stage breakdown.

Sources: ``memory`` times the pipeline on a DataFrame already in memory (the file is read
before the clock starts); ``parquet`` times file → result, read included (each candidate with its
fastest reader; seqdistill also as ``prepare(path)``, its Rust core reading the file itself).

    python benches/preprocess.py --case ml20m [--case m2 --case 100m] [--repeats 3] [--json out.json]

String ids: ``--case ml20m-str`` / ``--case m2-str`` (the same logs with ids ``u1000003`` /
``i500``).

Needs ``pip install -e .[bench]`` (duckdb). Data files are generated once under
``bench-results/data/`` (not committed).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).parent))
from _common import PeakMemory, machine, write_json  # noqa: E402

K = 5
Q = 0.8
KEYS = ("user_ids", "item_ids", "offsets", "items", "train_end", "test_users", "test_pos")

# rows, users, items: ML-20M-like, Amazon-M2-like (many users and items, short sequences), and big.
CASES = {
    "ml20m": (20_000_000, 138_000, 27_000),
    "m2": (3_651_542, 616_502, 334_060),
    "100m": (100_000_000, 5_000_000, 1_000_000),
    "1m": (1_000_000, 6_900, 1_350),
}
# The same logs with string ids ("u1000003", "i500"): the Arrow-strings path of every pipeline.
STRING_CASES = {"ml20m-str": "ml20m", "m2-str": "m2", "1m-str": "1m"}  # 1m-str: a quick check
SHAPES = {**CASES, **{name: CASES[base] for name, base in STRING_CASES.items()}}


# ------------------------------------------------------------------------------------ data
def synthetic_log(rows: int, n_users: int, n_items: int, seed: int = 0) -> pl.DataFrame:
    """Zipf-like item popularity, lognormal user lengths, timestamps uniform over ~16 years,
    rows shuffled; ids are spread-out integers (not 0..n)."""
    rng = np.random.default_rng(seed)
    weights = rng.lognormal(mean=0.0, sigma=1.0, size=n_users)
    lengths = 1 + rng.multinomial(rows - n_users, weights / weights.sum())  # every user has a row
    users = np.repeat(np.arange(n_users, dtype=np.int64) * 7 + 1_000_003, lengths)
    cdf = np.cumsum(1.0 / (np.arange(1, n_items + 1, dtype=np.float64) + 5.0) ** 1.05)
    cdf /= cdf[-1]
    items = np.searchsorted(cdf, rng.random(rows)).astype(np.int64) * 13 + 500
    ts = rng.integers(1_000_000_000, 1_500_000_000, rows, dtype=np.int64)
    perm = rng.permutation(rows)
    return pl.DataFrame({"user_id": users[perm], "item_id": items[perm], "timestamp": ts[perm]})


def data_file(case: str, folder: Path) -> Path:
    path = folder / f"{case}.parquet"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        if case in STRING_CASES:
            df = pl.read_parquet(data_file(STRING_CASES[case], folder)).with_columns(
                user_id="u" + pl.col("user_id").cast(pl.String), item_id="i" + pl.col("item_id").cast(pl.String)
            )
        else:
            df = synthetic_log(*CASES[case])
        tmp = path.with_suffix(".tmp.parquet")
        df.write_parquet(tmp)
        os.replace(tmp, path)
        print(f"generated {path} ({df.height:,} rows) in {time.perf_counter() - t0:.0f}s", flush=True)
    return path


# ------------------------------------------------------------------------------ candidates
def ours(df: pl.DataFrame) -> dict[str, Any]:
    import seqdistill as sd
    from seqdistill.data import SplitConfig

    ds = sd.prepare(df, k_core=K, split=SplitConfig(quantile=Q, valid="none", target="last"))
    tu, tp = ds.targets("test")
    return {
        "user_ids": ds.user_ids.to_numpy(),
        "item_ids": ds.item_ids[1:].to_numpy(),
        "offsets": ds.offsets,
        "items": ds.items,
        "train_end": ds.train_end,
        "test_users": tu,
        "test_pos": tp,
        "_rounds": ds.stats["kcore"]["rounds"],
        "_stages": ds.stats["stages"],
    }


def _kcore_polars(cur: pl.DataFrame, how: str) -> tuple[pl.DataFrame, int]:
    """Simultaneous rounds: counts on the current log, keep rows whose user and item both pass."""
    rounds = 0
    while True:
        keep_u = cur.group_by("user_id").len().filter(pl.col("len") >= K).get_column("user_id")
        keep_i = cur.group_by("item_id").len().filter(pl.col("len") >= K).get_column("item_id")
        if how == "is_in":
            nxt = cur.filter(pl.col("user_id").is_in(keep_u.implode()) & pl.col("item_id").is_in(keep_i.implode()))
        else:  # semi-joins that keep the left order
            nxt = cur.join(keep_u.to_frame(), on="user_id", how="semi", maintain_order="left").join(
                keep_i.to_frame(), on="item_id", how="semi", maintain_order="left"
            )
        if nxt.height == cur.height:
            return cur, rounds
        cur, rounds = nxt, rounds + 1


def _per_user_result(enc: pl.DataFrame, users: pl.Series, items: pl.Series, thr: float, rounds: int) -> dict[str, Any]:
    """The polars pipelines' common tail: per-user counts, training prefix and test target on the
    log already sorted by (user, time), as the arrays every candidate returns."""
    per_user = enc.group_by("user", maintain_order=True).agg(
        n=pl.len(), train_end=(pl.col("timestamp") < thr).sum(), last_ts=pl.col("timestamp").last()
    )
    n = per_user.get_column("n").to_numpy()
    test = per_user.filter((pl.col("last_ts") >= thr) & (pl.col("n") >= 2))
    return {
        "user_ids": users.to_numpy(),
        "item_ids": items.to_numpy(),
        "offsets": np.concatenate([[0], np.cumsum(n)]),
        "items": enc.get_column("item").to_numpy(),
        "train_end": per_user.get_column("train_end").to_numpy(),
        "test_users": test.get_column("user").to_numpy(),
        "test_pos": test.get_column("n").to_numpy() - 1,
        "_rounds": rounds,
    }


def _polars_rest(cur: pl.DataFrame, rounds: int, sort_key: str) -> dict[str, Any]:
    users = cur.get_column("user_id").unique().sort()
    items = cur.get_column("item_id").unique().sort()
    thr = cur.get_column("timestamp").quantile(Q, interpolation="linear")
    enc = cur.join(
        pl.DataFrame({"user_id": users, "user": np.arange(len(users), dtype=np.int64)}),
        on="user_id",
        how="left",
        maintain_order="left",
    ).join(
        pl.DataFrame({"item_id": items, "item": np.arange(1, len(items) + 1, dtype=np.int64)}),
        on="item_id",
        how="left",
        maintain_order="left",
    )
    if sort_key == "combined":  # one int64 key: user * span + (timestamp - min), stable sort
        t0, span = (
            enc.get_column("timestamp").min(),
            enc.get_column("timestamp").max() - enc.get_column("timestamp").min() + 1,
        )
        if _key_fits(len(users), span):
            enc = enc.sort(pl.col("user") * span + (pl.col("timestamp") - t0), maintain_order=True)
        else:
            enc = enc.sort(["user", "timestamp"], maintain_order=True)
    else:
        enc = enc.sort(["user", "timestamp"], maintain_order=True)
    return _per_user_result(enc, users, items, thr, rounds)


def _key_fits(n_users: int, span: int) -> bool:
    """Whether the one-key sort's int64 key user * span + time offset cannot overflow (else the
    pipelines sort on the two columns)."""
    return n_users * span < 2**62


SUPPORTED = "Int64 or String user_id/item_id and an Int64 timestamp"


def check_schema(df: pl.DataFrame) -> None:
    """The baselines handle the columns of the bench's logs only (prepare also converts datetimes,
    floats, categoricals and other integer widths); anything else is refused, not mis-measured."""
    ok = df.schema.get("timestamp") == pl.Int64 and all(
        df.schema.get(c) in (pl.Int64, pl.String) for c in ("user_id", "item_id")
    )
    if not ok:
        raise SystemExit(f"the bench baselines need {SUPPORTED}; got {dict(df.schema)}")


def _kcore_counts(df: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, int]:
    """Simultaneous k-core rounds: per round one group_by count per column (both queries in one
    `collect_all` on the streaming engine) and an `is_in` filter. The counts are kept unfiltered:
    that every id passes is read off them, with no `n_unique` pass over the log. Returns the
    surviving log, the final per-user and per-item counts, and the number of filtering rounds."""
    cur, rounds = df, 0
    while True:
        cu, ci = pl.collect_all(
            [cur.lazy().group_by("user_id").len(), cur.lazy().group_by("item_id").len()], engine="streaming"
        )
        keep_u = cu.filter(pl.col("len") >= K)
        keep_i = ci.filter(pl.col("len") >= K)
        if keep_u.height == cu.height and keep_i.height == ci.height:
            return cur, cu, ci, rounds
        cur = (
            cur.lazy()
            .filter(
                pl.col("user_id").is_in(keep_u.get_column("user_id").implode())
                & pl.col("item_id").is_in(keep_i.get_column("item_id").implode())
            )
            .collect()
        )
        rounds += 1


def polars_lazy(df: pl.DataFrame) -> dict[str, Any]:
    """Lazy queries on the streaming engine where it measured faster: k-core by group_by + is_in
    per round, codes by replace_strict on the sorted uniques, one stable sort on a single int64
    key (user * span + time offset), per-user aggregates in that order."""
    cur, cu, ci, rounds = _kcore_counts(df)
    users, items = cu.get_column("user_id").sort(), ci.get_column("item_id").sort()
    ts = cur.get_column("timestamp")
    t0, span = ts.min(), ts.max() - ts.min() + 1
    thr = ts.quantile(Q, interpolation="linear")
    key = [pl.col("user") * span + (pl.col("timestamp") - t0)] if _key_fits(len(users), span) else ["user", "timestamp"]
    enc = (
        cur.lazy()
        .select(
            user=pl.col("user_id").replace_strict(users, np.arange(len(users), dtype=np.int64), return_dtype=pl.Int64),
            item=pl.col("item_id").replace_strict(
                items, np.arange(1, len(items) + 1, dtype=np.int64), return_dtype=pl.Int64
            ),
            timestamp=pl.col("timestamp"),
        )
        .sort(key, maintain_order=True)
        .collect(engine="streaming")
    )
    return _per_user_result(enc, users, items, thr, rounds)


def _dense(col: pl.Series, keys: pl.Series, first: int) -> np.ndarray:
    """Each value's rank among the sorted unique `keys`, plus `first`: a numpy lookup table when
    the ids are integers spread over at most 64 times their number (plus 1M), else a left join
    that keeps the column's order."""
    codes = np.arange(first, first + len(keys), dtype=np.int64)
    if col.dtype.is_integer() and len(keys):
        k = keys.to_numpy().astype(np.int64)
        lo, hi = int(k[0]), int(k[-1])
        if hi - lo < 64 * len(k) + (1 << 20):
            lut = np.empty(hi - lo + 1, dtype=np.int64)
            lut[k - lo] = codes
            return lut[col.to_numpy().astype(np.int64) - lo]
    joined = pl.DataFrame({"id": col}).join(
        pl.DataFrame({"id": keys, "code": codes}), on="id", how="left", maintain_order="left"
    )
    return joined.get_column("code").to_numpy()


def _sort_by_user_time(
    ukey: np.ndarray, n_keys: int, ts: np.ndarray, t0: int, span: int, items: np.ndarray
) -> pl.DataFrame:
    """(item, ts) ordered by user key then time, equal times in row order: one stable streaming
    sort on ukey * span + time offset, or on the two columns where that key could overflow."""
    if _key_fits(n_keys, span):
        frame, by = pl.DataFrame({"k": ukey * span + (ts - t0), "item": items, "ts": ts}), ["k"]
    else:
        frame, by = pl.DataFrame({"k": ukey, "item": items, "ts": ts}), ["k", "ts"]
    return frame.lazy().sort(by, maintain_order=True).collect(engine="streaming")


def _threshold_and_span(ts: np.ndarray) -> tuple[float, int, int]:
    """The global threshold (numpy-linear quantile), the earliest timestamp and the span (an
    empty log has no quantile: np.quantile raises, as every candidate's threshold does)."""
    thr = float(np.quantile(ts, Q))
    t0 = int(ts.min())
    return thr, t0, int(ts.max()) - t0 + 1


def _sorted_result(srt: pl.DataFrame, n: np.ndarray, users: Any, items: Any, thr: float, rounds: int) -> dict[str, Any]:
    """The numpy pipelines' common tail: on (item, ts) sorted by user then time and the users'
    lengths `n`, the offsets, training prefixes (`np.add.reduceat`), and the last-item targets."""
    ts_s = srt.get_column("ts").to_numpy()
    offsets = np.concatenate([[0], np.cumsum(n)])
    train_end = np.add.reduceat((ts_s < thr).astype(np.int64), offsets[:-1]) if len(n) else n
    test = (ts_s[offsets[1:] - 1] >= thr) & (n >= 2)
    return {
        "user_ids": np.asarray(users),
        "item_ids": np.asarray(items),
        "offsets": offsets,
        "items": srt.get_column("item").to_numpy(),
        "train_end": train_end,
        "test_users": np.flatnonzero(test),
        "test_pos": n[test] - 1,
        "_rounds": rounds,
    }


def _codes_of_all(col: pl.Series) -> tuple[np.ndarray, np.ndarray | pl.Series]:
    """Every row's rank among the column's distinct values (sorted), and those values: for
    integers spread over at most 64× their rows (plus 1M), a presence bitmap, its cumulative
    sum as the lookup table; else the sorted uniques and a join."""
    if col.dtype.is_integer() and len(col):
        v = col.to_numpy().astype(np.int64)
        lo, hi = int(v.min()), int(v.max())
        if hi - lo < 64 * len(v) + (1 << 20):
            present = np.zeros(hi - lo + 1, dtype=bool)
            present[v - lo] = True
            rank = np.cumsum(present, dtype=np.int64) - 1
            return rank[v - lo], np.flatnonzero(present) + lo
    keys = col.unique().sort()
    return _dense(col, keys, 0), keys


def polars_numpy_codes_first(df: pl.DataFrame) -> dict[str, Any]:
    """Codes first, then the k-core on them in numpy — what our core does, written with numpy:
    user and item codes over all rows (`_codes_of_all`), each round two `np.bincount` and a
    boolean gather of the three columns; surviving ids renumbered through the counts; then the
    threshold, the stable streaming sort and the per-user tail of `polars_numpy`."""
    u, ukeys = _codes_of_all(df.get_column("user_id"))
    i, ikeys = _codes_of_all(df.get_column("item_id"))
    ts = df.get_column("timestamp").to_numpy()
    uc, ic = np.bincount(u, minlength=len(ukeys)), np.bincount(i, minlength=len(ikeys))
    rounds = 0
    while True:
        ok_u, ok_i = uc >= K, ic >= K
        if not (((uc > 0) & ~ok_u).any() or ((ic > 0) & ~ok_i).any()):
            break
        keep = ok_u[u] & ok_i[i]
        u, i, ts = u[keep], i[keep], ts[keep]
        uc, ic = np.bincount(u, minlength=len(ukeys)), np.bincount(i, minlength=len(ikeys))
        rounds += 1
    live_u, live_i = uc > 0, ic > 0
    ucode = np.cumsum(live_u, dtype=np.int64) - 1
    icode = np.cumsum(live_i, dtype=np.int64)  # items from 1
    n = uc[live_u].astype(np.int64)
    users = ukeys[live_u] if isinstance(ukeys, np.ndarray) else ukeys.filter(pl.Series(live_u))
    items = ikeys[live_i] if isinstance(ikeys, np.ndarray) else ikeys.filter(pl.Series(live_i))
    thr, t0, span = _threshold_and_span(ts)
    srt = _sort_by_user_time(ucode[u], len(n), ts, t0, span, icode[i])
    return _sorted_result(srt, n, users, items, thr, rounds)


def polars_numpy(df: pl.DataFrame) -> dict[str, Any]:
    """The fastest we could write with polars and numpy together (each step timed against its
    alternatives on the 20M-row log, 2 cores, polars 2.1): k-core by `_kcore_counts`; item codes
    by a numpy lookup table (`_dense`: 0.18 s a column vs join 0.63 s, replace_strict 1.2 s,
    dense rank 3.5 s); the threshold by `np.quantile` (0.4 s vs polars 0.7 s); one stable
    streaming sort of (key, item, time) on the int64 key (raw user id - min) * span + time offset
    — sorted raw ids are the users' codes, so users need no codes (1.7 s vs eager 2.2 s, numpy
    stable argsort 5.7 s, a two-column sort 14 s); per-user lengths from the k-core counts,
    training prefixes by `np.add.reduceat`, last timestamps by indexing the sorted column."""
    cur, cu, ci, rounds = _kcore_counts(df)
    cu = cu.sort("user_id")
    users, items = cu.get_column("user_id"), ci.get_column("item_id").sort()
    n = cu.get_column("len").to_numpy().astype(np.int64)
    ts = cur.get_column("timestamp").to_numpy()
    thr, t0, span = _threshold_and_span(ts)
    uid = cur.get_column("user_id")
    if uid.dtype.is_integer() and len(users) and _key_fits(int(users[-1]) - int(users[0]) + 1, span):
        ukey = uid.to_numpy().astype(np.int64) - int(users[0])
    else:
        ukey = _dense(uid, users, 0)
    n_keys = int(ukey.max(initial=0)) + 1
    srt = _sort_by_user_time(ukey, n_keys, ts, t0, span, _dense(cur.get_column("item_id"), items, 1))
    return _sorted_result(srt, n, users, items, thr, rounds)


def polars_isin(df: pl.DataFrame) -> dict[str, Any]:
    return _polars_rest(*_kcore_polars(df, "is_in"), "columns")


def polars_isin_combined(df: pl.DataFrame) -> dict[str, Any]:
    return _polars_rest(*_kcore_polars(df, "is_in"), "combined")


def polars_semijoin(df: pl.DataFrame) -> dict[str, Any]:
    return _polars_rest(*_kcore_polars(df, "semi"), "combined")


def polars_window(df: pl.DataFrame) -> dict[str, Any]:
    """The pipeline the issue's reporter timed (our first bench): k-core rounds filtering on
    per-group lengths computed by window functions, codes by dense rank, one sort on (user, time,
    row), per-user aggregates. Kept as a candidate because on an idle machine it can beat the
    rest."""
    cur, rounds = df.with_row_index("row"), 0
    while True:
        nxt = cur.filter((pl.len().over("user_id") >= K) & (pl.len().over("item_id") >= K))
        if nxt.height == cur.height:
            break
        cur, rounds = nxt, rounds + 1
    thr = cur.get_column("timestamp").quantile(Q, interpolation="linear")
    enc = (
        cur.lazy()
        .with_columns(
            user=(pl.col("user_id").rank("dense") - 1).cast(pl.Int64),
            item=pl.col("item_id").rank("dense").cast(pl.Int64),
        )
        .sort(["user", "timestamp", "row"])
        .collect()
    )
    users, items = enc.get_column("user_id").unique().sort(), enc.get_column("item_id").unique().sort()
    return _per_user_result(enc, users, items, thr, rounds)


def duckdb_sql(source: Any) -> dict[str, Any]:
    """The same steps in DuckDB SQL (a row number keeps file order for equal timestamps). Each k-core
    round first collects the ids below k (two small GROUP BY ... HAVING tables) and copies the
    log only when some exist, through ANTI JOINs on them (the final "nothing dies" round costs
    two aggregates, not a 20M-row copy: 14.6 s → 5.8 s at 20M rows against WHERE ... IN
    (SELECT ... HAVING count(*) >= k) every round). Users need no code table: sorted raw ids are
    their codes, so the log is ordered by (user_id, timestamp, rowid) and the per-user
    aggregates are grouped by user_id."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"PRAGMA threads={os.cpu_count()}")
    # One copy into DuckDB's storage, with the row number that orders equal timestamps: polars'
    # row index for a frame (handed over as plain Arrow strings: string views made DuckDB's
    # in-memory string case slower than reading the file), the file's row number for parquet.
    if isinstance(source, pl.DataFrame):
        con.register("src", source.with_row_index("row").to_arrow(compat_level=pl.CompatLevel.oldest()))
        con.execute("CREATE TABLE cur AS SELECT row, user_id, item_id, timestamp FROM src")
    else:
        con.execute(
            "CREATE TABLE cur AS SELECT file_row_number AS row, user_id, item_id, timestamp "
            f"FROM read_parquet('{source}', file_row_number = true)"
        )
    rounds = 0
    while True:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE bad_u AS SELECT user_id FROM cur GROUP BY user_id HAVING count(*) < {K}"
        )
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE bad_i AS SELECT item_id FROM cur GROUP BY item_id HAVING count(*) < {K}"
        )
        if con.execute("SELECT (SELECT count(*) FROM bad_u) + (SELECT count(*) FROM bad_i)").fetchone()[0] == 0:
            break
        con.execute(
            "CREATE OR REPLACE TABLE nxt AS SELECT * FROM cur ANTI JOIN bad_u USING (user_id) ANTI JOIN bad_i USING (item_id)"
        )
        con.execute("DROP TABLE cur")
        con.execute("ALTER TABLE nxt RENAME TO cur")
        rounds += 1
    thr = con.execute(f"SELECT quantile_cont(timestamp, {Q}) FROM cur").fetchone()[0]
    con.execute(
        "CREATE TABLE i AS SELECT item_id, row_number() OVER (ORDER BY item_id) AS item FROM (SELECT DISTINCT item_id FROM cur)"
    )
    seq = con.execute(
        "SELECT i.item FROM cur c JOIN i USING (item_id) ORDER BY c.user_id, c.timestamp, c.row"
    ).fetchnumpy()
    per = con.execute(
        f"""SELECT user_id, count(*) AS n, count(*) FILTER (WHERE timestamp < {thr}) AS train_end,
            max(timestamp) AS last_ts FROM cur GROUP BY user_id ORDER BY user_id"""
    ).fetchnumpy()
    items = con.execute("SELECT item_id FROM i ORDER BY item").fetchnumpy()["item_id"]
    n = np.asarray(per["n"], dtype=np.int64)
    test = (np.asarray(per["last_ts"]) >= thr) & (n >= 2)
    return {
        "user_ids": np.asarray(per["user_id"]),
        "item_ids": items,
        "offsets": np.concatenate([[0], np.cumsum(n)]),
        "items": np.asarray(seq["item"]),
        "train_end": np.asarray(per["train_end"], dtype=np.int64),
        "test_users": np.flatnonzero(test),
        "test_pos": n[test] - 1,
        "_rounds": rounds,
    }


def read_polars(path: Path) -> pl.DataFrame:
    return pl.read_parquet(path)


def read_pyarrow(path: Path) -> pl.DataFrame:
    import pyarrow.parquet as pq

    return pl.from_arrow(pq.read_table(path))  # type: ignore[return-value]


def read_nothing(path: Path) -> Path:
    """seqdistill only: ``prepare(path)``, the Rust core reading the file itself (but for files whose
    string ids are mostly stored without a dictionary, which ``prepare`` reads through polars)."""
    return path


READERS: dict[str, Callable[[Path], Any]] = {
    "pl.read_parquet": read_polars,
    "pyarrow.parquet": read_pyarrow,
    "core reads the file": read_nothing,
}
CANDIDATES: dict[str, Callable[[Any], dict[str, Any]]] = {
    "seqdistill": ours,
    "polars+numpy: codes first, bincount k-core, streaming one-key sort": polars_numpy_codes_first,
    "polars+numpy: lookup-table codes, streaming one-key sort": polars_numpy,
    "polars: lazy, streaming sort": polars_lazy,
    "polars: is_in k-core, column sort": polars_isin,
    "polars: is_in k-core, one-key sort": polars_isin_combined,
    "polars: semi-join k-core, one-key sort": polars_semijoin,
    "polars: window-function k-core, dense rank": polars_window,
    "duckdb: SQL": duckdb_sql,
}


# ----------------------------------------------------------------------------------- worker
def worker(candidate: str, path: Path, source: str, reader: str, out: Path | None) -> None:
    """One timed run in this (fresh) process; prints a JSON line."""
    import duckdb  # noqa: F401

    import seqdistill  # noqa: F401  (import cost is not timed for anyone)

    fn = CANDIDATES[candidate]
    read = READERS[reader]
    check_schema(pl.DataFrame(schema=pl.read_parquet_schema(path)))
    if source == "memory":
        df = read(path)
        gc.collect()
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            res = fn(df)
            secs = time.perf_counter() - t0
        input_bytes = df.estimated_size()
    else:
        gc.collect()
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            res = fn(path) if candidate.startswith("duckdb") else fn(read(path))
            secs = time.perf_counter() - t0
        input_bytes = path.stat().st_size
    if out is not None:
        # String ids as fixed-width unicode (never object arrays, which np.load would unpickle).
        arrays = {k: np.asarray(res[k]) for k in KEYS}
        np.savez(out, **{k: a.astype(str) if a.dtype == object else a for k, a in arrays.items()})
    print(
        json.dumps(
            {
                "seconds": secs,
                "peak_bytes": mem.peak,
                "input_bytes": input_bytes,
                "rounds": res["_rounds"],
                "stages": res.get("_stages"),
            }
        ),
        flush=True,
    )


def run_worker(candidate: str, path: Path, source: str, reader: str, out: Path | None) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", candidate, "--data", str(path), "--source", source, "--reader", reader]
    if out is not None:
        cmd += ["--out", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{candidate} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    ok = True
    for key in KEYS:
        x, y = np.asarray(a[key]), np.asarray(b[key])
        if x.dtype.kind not in "US":  # ids as text stay text; the rest compare as int64
            x, y = x.astype(np.int64), y.astype(np.int64)
        if x.shape != y.shape or not np.array_equal(x, y):
            print(f"    mismatch in {key}", flush=True)
            ok = False
    return ok


def bench_case(case: str, source: str, candidates: list[str], repeats: int, data_dir: Path) -> list[dict[str, Any]]:
    path = data_file(case, data_dir)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        results: dict[str, dict[str, Any]] = {}
        reference = None
        pairs: list[tuple[str, str]] = []
        for cand in candidates:
            if source == "memory" or cand.startswith("duckdb"):
                readers = ["pl.read_parquet"]
            else:  # each candidate with every reader it can take; the fastest counts
                readers = [r for r in READERS if cand == "seqdistill" or r != "core reads the file"]
            pairs += [(cand, reader) for reader in readers]
        # Round robin: every candidate's r-th run comes before anyone's (r+1)-th, so that all see
        # the machine's slow and fast phases alike (on these VMs the first processes after a pause
        # fault their fresh memory in slowly; run back to back, the first candidate took them all).
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {p: [] for p in pairs}
        same_as_ours: dict[tuple[str, str], bool] = {}
        for r in range(repeats):
            for k, pair in enumerate(pairs):
                out = Path(tmp) / f"{k}.npz" if r == 0 else None
                runs[pair].append(run_worker(pair[0], path, source, pair[1], out))
                if out is not None:
                    arrays = dict(np.load(out))
                    if reference is None:
                        reference = arrays
                    same_as_ours[pair] = same(reference, arrays)
        for cand in candidates:
            best: dict[str, Any] | None = None
            for pair in [p for p in pairs if p[0] == cand]:
                reader, rs, ok = pair[1], runs[pair], same_as_ours[pair]
                med = statistics.median(x["seconds"] for x in rs)
                entry = {
                    "candidate": cand,
                    "reader": (
                        ("duckdb read_parquet" if cand.startswith("duckdb") else reader)
                        if source == "parquet"
                        else None
                    ),
                    "seconds": med,
                    "all_seconds": [round(x["seconds"], 3) for x in rs],
                    "peak_bytes": max(x["peak_bytes"] for x in rs),
                    "input_bytes": rs[0]["input_bytes"],
                    "rounds": rs[0]["rounds"],
                    # the stages of the median run (the one the table's time is)
                    "stages": sorted(rs, key=lambda x: x["seconds"])[len(rs) // 2]["stages"],
                    "same_result": ok,
                }
                name = cand + (f" ({entry['reader']})" if entry["reader"] else "")
                print(
                    f"  {name:55s} {med:8.3f}s  {[round(x['seconds'], 2) for x in rs]}  peak +{entry['peak_bytes'] / 2**30:.2f} GiB "
                    f"({entry['peak_bytes'] / entry['input_bytes']:.2f}x input)  rounds {entry['rounds']}  same {ok}",
                    flush=True,
                )
                if best is None or med < best["seconds"]:
                    best = entry
            assert best is not None
            results[cand] = best
        ours_r = results["seqdistill"]
        if ours_r["stages"]:
            print("  seqdistill stages: " + ", ".join(f"{k} {v:.3f}s" for k, v in ours_r["stages"].items()), flush=True)
        for family in ("polars", "duckdb"):
            fam = [r for c, r in results.items() if c.startswith(family)]
            if not fam:
                continue
            b = min(fam, key=lambda r: r["seconds"])
            ratio = b["seconds"] / ours_r["seconds"]
            label = b["candidate"] + (f" ({b['reader']})" if b["reader"] else "")
            print(
                f"  => {case} [{source}] fastest {family}: {label} {b['seconds']:.3f}s; seqdistill {ours_r['seconds']:.3f}s; "
                f"ratio {ratio:.2f}x",
                flush=True,
            )
            rows.append(
                {
                    "case": f"{case} {SHAPES[case][0]:,} rows, {source}",
                    "ours_s": round(ours_r["seconds"], 4),
                    "ours_all_s": ours_r["all_seconds"],
                    "ours_reader": ours_r["reader"],
                    "baseline": label,
                    "baseline_s": round(b["seconds"], 4),
                    "baseline_all_s": b["all_seconds"],
                    "ratio": round(ratio, 3),
                    "same_result": bool(ours_r["same_result"] and b["same_result"]),
                    "ours_peak_gib": round(ours_r["peak_bytes"] / 2**30, 3),
                    "baseline_peak_gib": round(b["peak_bytes"] / 2**30, 3),
                    "input_gib": round(ours_r["input_bytes"] / 2**30, 3),
                    "stages": ours_r["stages"],
                    "all_candidates": {c: round(r["seconds"], 4) for c, r in results.items()},
                }
            )
        if len(results) == 1:
            rows.append(
                {
                    "case": f"{case} {SHAPES[case][0]:,} rows, {source}",
                    "ours_s": round(ours_r["seconds"], 4),
                    "baseline": None,
                    "baseline_s": None,
                    "ratio": None,
                    "same_result": None,
                    "ours_peak_gib": round(ours_r["peak_bytes"] / 2**30, 3),
                    "input_gib": round(ours_r["input_bytes"] / 2**30, 3),
                    "stages": ours_r["stages"],
                }
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", action="append", choices=sorted(SHAPES), help="default: ml20m and m2")
    ap.add_argument("--source", action="append", choices=["memory", "parquet"], help="default: both")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only-ours", action="store_true", help="seqdistill alone (e.g. at 100M rows)")
    ap.add_argument("--candidates", nargs="+", help="subset of: " + ", ".join(CANDIDATES))
    ap.add_argument("--data-dir", default="bench-results/data")
    ap.add_argument("--json", default=None)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--reader", default="pl.read_parquet", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(
            args.worker,
            Path(args.data),
            args.source[0] if args.source else "memory",
            args.reader,
            Path(args.out) if args.out else None,
        )
        return
    print(f"machine: {machine()}", flush=True)
    cands = ["seqdistill"] if args.only_ours else (args.candidates or list(CANDIDATES))
    if "seqdistill" not in cands:
        cands = ["seqdistill", *cands]
    rows = []
    for case in args.case or ["ml20m", "m2"]:
        for source in args.source or ["memory", "parquet"]:
            print(f"{case} [{source}]", flush=True)
            rows += bench_case(case, source, cands, args.repeats, Path(args.data_dir))
    write_json(
        args.json,
        "preprocess",
        rows,
        command=" ".join(["python", "benches/preprocess.py", *sys.argv[1:]]),
        candidates=cands,
    )


if __name__ == "__main__":
    main()
