"""The Spark engine (``seqdistill.spark``) against the in-memory core on ``local[2]``: the same
PreparedDataset element by element (arrays, raw ids, split, audit, fingerprint) on generated logs
with ties, repeated pairs, string ids (non-ASCII ones too), users wholly before or after the test
threshold and a k-core that needs many rounds; the exact quantile's narrowing path against
numpy's; bad input refused in one line.

CI runs these (``scripts/install.sh`` installs the ``[spark]`` extra and Java): a missing pyspark or
Java fails the module. Set ``SEQDISTILL_SKIP_SPARK=1`` to skip it deliberately.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest

if os.environ.get("SEQDISTILL_SKIP_SPARK") == "1":
    pytest.skip("SEQDISTILL_SKIP_SPARK=1", allow_module_level=True)

import pyspark  # noqa: E402,F401  (a missing extra fails the module: CI must run these tests)

import seqdistill as sd  # noqa: E402
from seqdistill import spark as sds  # noqa: E402
from seqdistill.data import PreparedDataset, SplitConfig  # noqa: E402
from seqdistill.errors import DataError, OutputError  # noqa: E402
from seqdistill.spark._quantile import select_ranks  # noqa: E402


@pytest.fixture(scope="module")
def spark():
    s = sds.session("local[2]", conf={"spark.sql.shuffle.partitions": "4"})
    yield s
    s.stop()


# ------------------------------------------------------------------------------ generated logs
def chain(n_links: int, users: list, items: list, t0: int) -> list[tuple]:
    """A path user0-item0-user1-item1-...: with k = 2 the k-core peels it one node per end and
    round, so it needs about ``n_links`` rounds."""
    rows = []
    for j in range(n_links):
        rows.append((users[j], items[j], t0 + 2 * j))
        rows.append((users[j], items[j + 1], t0 + 2 * j + 1))
    return rows


def mixed_log(seed: int, string_ids: bool) -> pl.DataFrame:
    """A dense core with coarse timestamps (ties) and repeated (user, item) pairs, users whose rows
    all fall before or all after the 0.8 quantile, and a long chain for the k-core to peel."""
    rng = np.random.default_rng(seed)
    rows: list[tuple] = []
    for u in range(30):
        for _ in range(int(rng.integers(3, 14))):
            rows.append((u, int(rng.integers(0, 18)), int(rng.integers(100, 130))))  # ties
        rows.append(rows[-1])  # a repeated pair at the same time
    for u in range(30, 34):  # wholly before the threshold
        rows += [(u, int(i), int(t)) for i, t in zip(rng.integers(0, 18, 4), rng.integers(0, 5, 4))]
    for u in range(34, 38):  # wholly after it
        rows += [(u, int(i), int(t)) for i, t in zip(rng.integers(0, 18, 4), rng.integers(500, 505, 4))]
    rows += chain(7, list(range(100, 108)), list(range(100, 109)), 110)
    order = rng.permutation(len(rows))
    users, items, ts = (np.array([rows[j][c] for j in order]) for c in range(3))
    if string_ids:  # non-ASCII, mixed-case and digit-leading ids: sorted by UTF-8 bytes
        names = ["é", "Z", "a", "ß", "10", "9", "日本", "A"]
        u = pl.Series([f"{names[x % 8]}{x}" for x in users])
        i = pl.Series([f"{names[(x * 3) % 8]}-{x}" for x in items])
    else:  # spread-out, negative and large integers
        u = pl.Series(users.astype(np.int64) * 7_919 - 100_000, dtype=pl.Int64)
        i = pl.Series(items.astype(np.int64) * -(2**40) + 3, dtype=pl.Int64)
    rating = (np.arange(len(rows)) % 11).astype(np.float32) / 2
    return pl.DataFrame({"user_id": u, "item_id": i, "timestamp": ts.astype(np.int64), "rating": rating})


def assert_same(a: PreparedDataset, b: PreparedDataset) -> None:
    assert b.user_ids.dtype == a.user_ids.dtype and b.item_ids.dtype == a.item_ids.dtype
    assert b.user_ids.to_list() == a.user_ids.to_list()
    assert b.item_ids.to_list() == a.item_ids.to_list()
    for key in ("offsets", "items", "timestamps", "train_end"):
        np.testing.assert_array_equal(getattr(b, key), getattr(a, key), err_msg=key)
        assert getattr(b, key).dtype == getattr(a, key).dtype, key
    if a.ratings is None:
        assert b.ratings is None
    else:
        np.testing.assert_array_equal(b.ratings, a.ratings)
    for part in ("valid", "test"):
        for x, y in zip(b.targets(part), a.targets(part)):
            np.testing.assert_array_equal(x, y, err_msg=part)
    assert b.audit == a.audit
    for key in ("users", "items", "interactions", "test_threshold", "valid_threshold", "kcore"):
        assert b.stats[key] == a.stats[key], key
    assert b.fingerprint() == a.fingerprint()


def both(spark, df: pl.DataFrame, **kw) -> tuple[PreparedDataset, PreparedDataset]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mem = sd.prepare(df, **kw)
        dist = sds.prepare(spark.createDataFrame(df.to_arrow()), spark=spark, **kw)
    return mem, dist


# ------------------------------------------------------------------------------- equal results
def test_string_ids_ties_and_a_many_round_kcore_equal_the_core(spark, tmp_path):
    df = mixed_log(1, string_ids=True)
    split = SplitConfig(target="all", valid="time", quantile=0.8, valid_quantile=0.7)
    mem, dist = both(spark, df, k_core=2, split=split)
    assert mem.stats["kcore"]["rounds"] >= 4  # the chain is peeled over many rounds
    assert mem.audit.test_users_without_train > 0  # users wholly after the threshold
    assert_same(mem, dist)
    rounds = dist.stats["spark"]["kcore_rounds"]
    assert len(rounds) == mem.stats["kcore"]["rounds"] + 1  # the last round finds the fixpoint
    assert all(r["jobs"] > 0 for r in rounds)
    # written atomically, loaded back equal (the fingerprint is the in-memory one)
    dist.save(tmp_path / "ds")
    assert_same(mem, PreparedDataset.load(tmp_path / "ds"))


def test_integer_ids_from_parquet_parts_equal_the_core(spark, tmp_path):
    """Two parquet files in a folder: ties keep file order, then row order, as reading them in
    sorted order and concatenating does in memory."""
    df = mixed_log(2, string_ids=False)
    folder = tmp_path / "log"
    folder.mkdir()
    half = df.height // 2
    df[half:].write_parquet(folder / "part-1.parquet")  # written first, sorted second
    df[:half].write_parquet(folder / "part-0.parquet")
    split = SplitConfig(target="first", valid="last_item", quantile=0.75)
    mem = sd.prepare(df, k_core=(3, 2), split=split)
    out = tmp_path / "ds"
    dist = sds.prepare(str(folder), out, k_core=(3, 2), split=split, spark=spark, name="log")
    assert_same(mem, dist)
    assert_same(mem, PreparedDataset.load(out))


def test_leave_one_out_with_the_compat_filter_equals_the_core(spark):
    mem, dist = both(
        spark, mixed_log(3, string_ids=False), k_core=(2, 3), filter="compat", split=SplitConfig("leave_one_out")
    )
    assert mem.stats["kcore"]["rounds"] == 1
    assert_same(mem, dist)


def test_an_explicit_threshold_without_validation_equals_the_core(spark):
    df = mixed_log(4, string_ids=True).drop("rating")
    mem, dist = both(spark, df, k_core=None, split=SplitConfig(threshold=120, valid="none", target="last"))
    assert mem.ratings is None
    assert_same(mem, dist)


# --------------------------------------------------------------------------- the exact quantile
def test_rank_selection_by_narrowing_equals_sorting(spark):
    """The histogram path (forced with 4 buckets and a collect limit of 3) on duplicates, a wide
    span beyond a long's difference, and a single value."""
    rng = np.random.default_rng(5)
    shapes = [
        rng.integers(-50, 50, 200),
        np.where(rng.random(300) < 0.9, 7, rng.integers(-3, 30, 300)),
        np.array([-(2**63), 2**63 - 1, 0, -1, 1, 5, 5]),
        np.full(9, 42),
    ]
    for values in shapes:
        df = spark.createDataFrame(pl.DataFrame({"t": values.astype(np.int64)}).to_arrow())
        s = np.sort(values)
        for lo in (len(s) // 3, len(s) - 2):
            got = select_ranks(df, "t", lo, lo + 1, buckets=4, limit=3)
            assert got == (int(s[lo]), int(s[lo + 1]))


# ------------------------------------------------------------------------------------ bad input
def test_bad_input_is_one_line_naming_column_and_row(spark, tmp_path):
    good = pl.DataFrame({"user_id": [1, 2, 3, 4], "item_id": ["a", "b", "c", "d"], "timestamp": [1, 2, 3, 4]})
    cases = [
        (good.drop("item_id"), r"missing column 'item_id'"),
        (good.with_columns(pl.col("timestamp").cast(pl.String)), r"column 'timestamp' has type string"),
        (good.with_columns(pl.col("timestamp").cast(pl.Float64)), r"column 'timestamp' has type double"),
        (good.with_columns(pl.Series("rating", ["5", "4", "3", "2"])), r"column 'rating' has type string"),
        (good.with_columns(pl.col("user_id").cast(pl.Float64)), r"column 'user_id' has type double"),
        (good.with_columns(pl.Series("user_id", [1, 2, None, 4])), r"column 'user_id' is null at row 2$"),
        (
            good.with_columns(pl.Series("item_id", ["a", "b", "c", " "])),
            r"column 'item_id' has an empty id ' ' at row 3$",
        ),
        # Ids the in-memory path would strip or refuse are refused (never a different result).
        (
            good.with_columns(pl.Series("item_id", ["a", " b", "c", "d"])),
            r"'item_id' has the id ' b' with whitespace.* at row 1$",
        ),
        (good.with_columns(pl.Series("item_id", ["a", "b", "c\u3000", "d"])), r"with whitespace .* at row 2$"),
        (good.with_columns(pl.Series("item_id", ["a", "b\x01", "c", "d"])), r"control character.* at row 1$"),
        (good.with_columns(pl.Series("item_id", ["a", "b", "c\tx", "d"])), r"control character.* at row 2$"),
        # C1 controls (NEL inside an id) and line/paragraph separators, as in memory (campaign 3).
        (good.with_columns(pl.Series("item_id", ["a", "b", "u\u0085v", "d"])), r"control character.* at row 2$"),
        (good.with_columns(pl.Series("item_id", ["a", "b\u0085", "c", "d"])), r"with whitespace .* at row 1$"),
        (
            good.with_columns(pl.Series("item_id", ["a", "u\u2028v", "c", "d"])),
            r"line or paragraph separator.* at row 1$",
        ),
        (
            good.with_columns(pl.Series("item_id", ["u\u2029v", "b", "c", "d"])),
            r"line or paragraph separator.* at row 0$",
        ),
        (
            good.with_columns(pl.Series("item_id", ["a", "b", "c", "d\u200b"])),
            r"invisible format character.* at row 3$",
        ),
        (good.with_columns(pl.Series("item_id", ["a", "NaN", "c", "d"])), r"NaN-like id 'NaN'.* at row 1$"),
    ]
    for df, message in cases:
        with pytest.raises(DataError, match=message) as e:
            sds.prepare(spark.createDataFrame(df.to_arrow()), spark=spark, k_core=None)
        assert "\n" not in str(e.value)
    with pytest.raises(DataError, match=r"no such file"):
        sds.prepare(str(tmp_path / "missing.parquet"), spark=spark)
    with pytest.raises(DataError, match=r"missing column 'uid' \(for user_id\)"):
        sds.prepare(spark.createDataFrame(good.to_arrow()), spark=spark, columns={"user_id": "uid"})


def test_an_output_folder_holding_a_users_file_is_refused_before_any_work(spark, tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not a prepared dataset"):
        sds.prepare(str(tmp_path / "missing.parquet"), out, spark=spark)
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_cli_engine_spark_writes_the_same_dataset(spark, tmp_path, capsys):
    from seqdistill.cli import main

    df = mixed_log(6, string_ids=False)
    path = tmp_path / "log.parquet"
    df.write_parquet(path)
    out = tmp_path / "ds"
    rc = main(["prepare", str(path), "--out", str(out), "--engine", "spark", "--master", "local[2]", "--k-core", "2"])
    assert rc == 0, capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mem = sd.prepare(df, k_core=2, name="log")
    assert_same(mem, PreparedDataset.load(out))
    rc = main(["prepare", str(path), "--out", str(tmp_path / "x"), "--engine", "spark", "--time-col", "when"])
    err = capsys.readouterr().err
    assert rc == 2 and "missing column 'when'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not Path(tmp_path / "x").exists()
    for extra, message in ((["--items", str(path)], "--items is not supported"), (["--master", "local[1]"], None)):
        engine = [] if message is None else ["--engine", "spark"]
        rc = main(["prepare", str(path), "--out", str(tmp_path / "y"), *engine, *extra])
        err = capsys.readouterr().err
        assert rc == 2 and (message or "--master is an option of --engine spark") in err, err
        assert "Traceback" not in err and not Path(tmp_path / "y").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"domain": "bogus"}, "domain must be one of"), ({"name": 5}, "name must be a string")],
)
def test_name_and_domain_are_checked_as_the_in_memory_prepare_checks_them(kwargs, message, tmp_path):
    """Before any Spark work (no session is asked for): the same refusal as seqdistill.prepare."""
    with pytest.raises(DataError, match=message):
        sds.prepare(tmp_path / "log.parquet", k_core=None, **kwargs)
    with pytest.raises(DataError, match=message):
        sd.prepare(pl.DataFrame({"user_id": [1], "item_id": [1], "timestamp": [1]}), k_core=None, **kwargs)
