"""The preprocessing bench's baselines compute what `prepare` computes.

benches/preprocess.py times seqdistill against polars, polars+numpy and DuckDB pipelines and
reports ratios only where the results agree element by element; these tests run the same
candidates on small logs whose timestamps tie often (file order must decide) and whose k-core needs
several rounds, with integer and string ids, and compare every array with ours.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

BENCH = Path(__file__).resolve().parent.parent / "benches" / "preprocess.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_preprocess", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_preprocess"] = mod
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("bench_preprocess", None)


def _log(seed: int, strings: bool, wide_time: bool = False) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n, n_users = 200_000, 6_000
    # Lognormal user activity (many users below k) and Zipf items: the 5-core drops users and
    # items and needs several rounds.
    w = rng.lognormal(0.0, 1.5, n_users)
    users = rng.choice(n_users, size=n, p=w / w.sum()) * 7 + 1_000_003
    items = (rng.zipf(1.6, n) % 9_000) * 13 + 500
    ts = rng.integers(1_000, 2_000, n)  # many equal timestamps within a user
    if wide_time:  # user * span would overflow int64: the one-key sorts must fall back
        ts = ts * 4_000_000_000_000
    df = pl.DataFrame({"user_id": users, "item_id": items, "timestamp": ts})
    if strings:
        df = df.with_columns(
            user_id="u" + pl.col("user_id").cast(pl.String), item_id="i" + pl.col("item_id").cast(pl.String)
        )
    return df


def _candidates() -> list[str]:
    spec = importlib.util.spec_from_file_location("bench_preprocess_names", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return [c for c in mod.CANDIDATES if c != "seqdistill"]


CANDIDATES = _candidates()


@pytest.mark.parametrize(
    ("seed", "strings", "wide_time"), [(0, False, False), (1, True, False), (2, False, True), (3, True, True)]
)
@pytest.mark.parametrize("candidate", CANDIDATES)
def test_baseline_equals_prepare(bench, candidate: str, seed: int, strings: bool, wide_time: bool) -> None:
    if candidate.startswith("duckdb"):
        pytest.importorskip("duckdb")
    df = _log(seed, strings, wide_time)
    ours = bench.ours(df)
    theirs = bench.CANDIDATES[candidate](df)
    assert ours["_rounds"] >= 2
    assert theirs["_rounds"] == ours["_rounds"]
    for key in bench.KEYS:
        a, b = np.asarray(ours[key]), np.asarray(theirs[key])
        if a.dtype.kind not in "USO":
            a, b = a.astype(np.int64), b.astype(np.int64)
        else:
            a, b = a.astype(str), b.astype(str)
        assert a.shape == b.shape, key
        assert np.array_equal(a, b), key


def test_the_logs_exercise_ties_dying_users_and_the_sort_fallback(bench) -> None:
    # The logs above must exercise file order among equal timestamps, users and items dying in
    # the k-core, and a sort key that would overflow, or the tests prove less.
    df = _log(0, False)
    dup = df.group_by(["user_id", "timestamp"]).len().filter(pl.col("len") > 1).height
    assert dup > 100
    ours = bench.ours(df)
    assert 0 < len(ours["user_ids"]) < df.get_column("user_id").n_unique()
    assert 0 < len(ours["item_ids"]) < df.get_column("item_id").n_unique()
    wide = _log(2, False, wide_time=True).get_column("timestamp")
    assert not bench._key_fits(len(ours["user_ids"]), int(wide.max()) - int(wide.min()) + 1)


def test_other_column_types_are_refused_not_mismeasured(bench) -> None:
    df = _log(0, False).with_columns(pl.col("user_id").cast(pl.Int32))
    with pytest.raises(SystemExit, match="Int64 or String"):
        bench.check_schema(df)
    bench.check_schema(_log(0, True))
