"""``prepare(path)`` on parquet files the Rust core reads itself (rust/src/parquet_log.rs),
checked against ``prepare(pl.read_parquet(path))`` — polars' reader and the in-memory pipeline —
on random logs written by polars and by pyarrow with every layout a writer may choose:
dictionary or plain pages, a dictionary abandoned mid-chunk, page versions 1 and 2, several
pages per chunk, many row groups, each codec, 32- and 64-bit and unsigned integers, datetime
timestamps. Files the core does not read (other types or codecs, a rating column, nulls,
damage) must give what the polars path gives, errors included."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _parquet_thrift import (
    BINARY,
    DATA_PAGE,
    DATA_PAGE_V2,
    DICTIONARY_PAGE,
    I32,
    I64,
    LIST,
    STRUCT,
    List,
    Page,
    ParquetFile,
    Struct,
    uvarint,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import seqdistill as sd
from seqdistill import core
from seqdistill.data import SplitConfig
from seqdistill.errors import DataError, SeqdistillWarning

prepare_module = importlib.import_module("seqdistill.data.prepare")  # the module (`prepare` is also its function)

SPLIT = SplitConfig(quantile=0.7, valid="time", valid_quantile=0.5, target="last")


def random_log(rng: np.random.Generator, rows: int, users: int, items: int, id_lo: int) -> pl.DataFrame:
    """Ids spread from ``id_lo`` (negative too), popular items, many equal timestamps."""
    u = rng.integers(0, users, rows) * 3 + id_lo
    it = np.minimum(rng.zipf(1.3, rows), items) * 7 + id_lo
    t = rng.integers(1_000_000_000, 1_000_000_000 + rows // 2 + 2, rows)
    return pl.DataFrame({"user_id": u, "item_id": it, "timestamp": t})


def same_dataset(a: sd.PreparedDataset, b: sd.PreparedDataset) -> None:
    for f in ("offsets", "items", "timestamps", "train_end"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    for part in ("valid", "test"):
        for x, y in zip(a.targets(part), b.targets(part), strict=True):
            np.testing.assert_array_equal(x, y)
    assert a.user_ids.to_list() == b.user_ids.to_list()
    assert a.item_ids.to_list() == b.item_ids.to_list()
    assert a.manifest["audit"] == b.manifest["audit"]
    drop = ("stages", "seconds")
    assert {k: v for k, v in a.stats.items() if k not in drop} == {k: v for k, v in b.stats.items() if k not in drop}


def same_outcome_as_polars(path: Path) -> None:
    """prepare(path) gives what prepare(read_interactions(path)) gives: the same dataset, or the
    same error (class and message)."""
    try:
        want = sd.read_interactions(path)
    except DataError as e:
        with pytest.raises(type(e)) as got:
            sd.prepare(path, k_core=1, split=SPLIT)
        assert str(got.value) == str(e)
    else:
        same_dataset(sd.prepare(path, k_core=1, split=SPLIT), sd.prepare(want, k_core=1, split=SPLIT))


def mostly_plain_strings(path: Path) -> bool:
    """Whether a string id column of the file holds at least half its rows in chunks with no
    dictionary-encoded page (as pyarrow reads the footer)."""
    meta = pq.ParquetFile(path).metadata
    names = [meta.schema.column(j).name for j in range(meta.num_columns)]
    for name in ("user_id", "item_id"):
        if name not in names or meta.schema.column(names.index(name)).physical_type != "BYTE_ARRAY":
            continue
        j = names.index(name)
        chunks = [meta.row_group(g).column(j) for g in range(meta.num_row_groups)]
        dictionary = ("PLAIN_DICTIONARY", "RLE_DICTIONARY")
        plain = sum(c.num_values for c in chunks if not any(e in dictionary for e in c.encodings))
        if 2 * plain >= meta.num_rows:
            return True
    return False


def check(path: Path, k: int = 2, fast: bool = True, **kw: object) -> sd.PreparedDataset:
    """prepare(path) equals prepare on the file as read_interactions (polars) reads it; ``fast``:
    the core can read it — and then does, unless its string ids are mostly stored without a
    dictionary, which ``prepare(path)`` leaves to polars (the core's reading of them is checked
    too)."""
    want = sd.prepare(sd.read_interactions(path), k_core=k, split=SPLIT, name="log", **kw)  # type: ignore[arg-type]
    got = sd.prepare(path, k_core=k, split=SPLIT, name="log", **kw)  # type: ignore[arg-type]
    same_dataset(got, want)
    plain = fast and mostly_plain_strings(path)
    assert ("read+encode" in got.stats["stages"]) is (fast and not plain), got.stats["stages"]
    if plain:
        with mock.patch.object(prepare_module, "_CORE_READS_PLAIN_STRINGS", True):
            core_read = sd.prepare(path, k_core=k, split=SPLIT, name="log", **kw)  # type: ignore[arg-type]
        same_dataset(core_read, want)
        assert "read+encode" in core_read.stats["stages"], core_read.stats["stages"]
    return got


LAYOUTS = st.fixed_dictionaries(
    {
        "writer": st.sampled_from(["polars", "pyarrow"]),
        "compression": st.sampled_from(["zstd", "snappy", "lz4", "none"]),
        "row_group": st.sampled_from([7, 100, 1000, 100_000]),
        "dictionary": st.booleans(),
        "page_version": st.sampled_from(["1.0", "2.0"]),
        "page_size": st.sampled_from([64, 1 << 20]),  # 64 bytes: many pages per chunk
        "dict_limit": st.sampled_from([64, 1 << 20]),  # 64 bytes: the writer gives up on its dictionary
        "id_type": st.sampled_from([pl.Int64, pl.Int32, pl.UInt32, pl.Int16, pl.String]),
        "ts_type": st.sampled_from(["int64", "int32", "ms", "us", "ns"]),
    }
)


def write(df: pl.DataFrame, path: Path, lay: dict) -> None:
    if lay["id_type"] == pl.String:  # text ids ("u-40", "i23"): sorted by bytes, not by value
        ids = [(c[0] + pl.col(c).cast(pl.String)).alias(c) for c in ("user_id", "item_id")]
    else:
        ids = [pl.col(c).cast(lay["id_type"]) for c in ("user_id", "item_id")]
    ts = {"int64": pl.col("timestamp"), "int32": pl.col("timestamp").cast(pl.Int32)}.get(
        lay["ts_type"], (pl.col("timestamp") * 1000 + pl.int_range(pl.len()) % 1000).cast(pl.Datetime("ms"))
    )
    if lay["ts_type"] in ("us", "ns"):
        ts = ts.cast(pl.Datetime(lay["ts_type"]))
    df = df.with_columns(*ids, ts)
    codec = lay["compression"]
    if lay["writer"] == "polars":
        codec = "uncompressed" if codec == "none" else codec
        df.write_parquet(path, compression=codec, row_group_size=lay["row_group"], data_page_size=lay["page_size"])
    else:
        pq.write_table(
            df.to_arrow(),
            path,
            compression=codec,
            row_group_size=lay["row_group"],
            use_dictionary=lay["dictionary"],
            data_page_version=lay["page_version"],
            data_page_size=lay["page_size"],
            dictionary_pagesize_limit=lay["dict_limit"],
        )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(1, 2000),
    users=st.integers(1, 60),
    items=st.integers(1, 200),
    id_lo=st.sampled_from([0, 1, -40, 30_000]),
    lay=LAYOUTS,
)
def test_core_reader_matches_polars(
    tmp_path: Path, seed: int, rows: int, users: int, items: int, id_lo: int, lay: dict
):
    if lay["id_type"] == pl.UInt32:
        id_lo = abs(id_lo)
    df = random_log(np.random.default_rng(seed), rows, users, items, id_lo)
    path = tmp_path / f"log-{seed}.parquet"
    write(df, path, lay)
    try:
        check(path)
    except DataError as e:  # both paths refuse the same logs (nothing left, no training part)
        with pytest.raises(DataError) as slow:
            sd.prepare(sd.read_interactions(path), k_core=2, split=SPLIT, name="log")
        assert str(slow.value) == str(e)


def test_many_row_groups_and_pages_hand_checked(tmp_path: Path):
    """Three users over row groups of 2 rows, one data page per value: the CSR by hand."""
    df = pl.DataFrame(
        {
            "u": [30, 10, 30, 20, 10, 30, 20],
            "i": [5, 6, 5, 7, 5, 6, 7],
            "t": [3, 1, 1, 2, 2, 2, 1],
        }
    )
    path = tmp_path / "tiny.parquet"
    pq.write_table(df.to_arrow(), path, row_group_size=2, data_page_size=1, use_dictionary=["u"])
    ds = sd.prepare(
        path,
        columns={"user_id": "u", "item_id": "i", "timestamp": "t"},
        k_core=1,
        split=SplitConfig(kind="leave_one_out"),
    )
    assert "read+encode" in ds.stats["stages"]
    assert ds.name == "tiny"
    assert ds.user_ids.to_list() == [10, 20, 30]
    assert ds.item_ids.to_list() == [None, 5, 6, 7]
    # user 10: (6@1, 5@2); user 20: (7@1, 7@2); user 30: (5@1, 6@2, 5@3) — ties keep file order
    assert ds.offsets.tolist() == [0, 2, 4, 7]
    assert ds.items.tolist() == [2, 1, 3, 3, 1, 2, 1]
    assert ds.timestamps.tolist() == [1, 2, 1, 2, 1, 2, 3]


def test_subsecond_datetimes_order_within_the_second(tmp_path: Path):
    """Datetime rows of one user within one second are ordered by the full time, then floored."""
    t = pl.Series([1_500, 1_200, 2_000, 1_999, 5_000], dtype=pl.Int64).cast(pl.Datetime("ms"))
    df = pl.DataFrame({"user_id": [1, 1, 1, 1, 1], "item_id": [10, 11, 12, 13, 14], "timestamp": t})
    path = tmp_path / "ms.parquet"
    df.write_parquet(path)
    ds = sd.prepare(path, k_core=1, split=SplitConfig(kind="leave_one_out"))
    assert "read+encode" in ds.stats["stages"]
    assert (ds.item_ids.gather(ds.items)).to_list() == [11, 10, 13, 12, 14]
    assert ds.timestamps.tolist() == [1, 1, 1, 2, 5]


@pytest.mark.parametrize("column", ["user_id", "item_id", "timestamp"])
@pytest.mark.parametrize("page_version", ["1.0", "2.0"])
def test_null_is_named_like_the_polars_path(tmp_path: Path, column: str, page_version: str):
    df = random_log(np.random.default_rng(3), 500, 20, 30, 0)
    df = df.with_columns(pl.when(pl.int_range(pl.len()) == 321).then(None).otherwise(pl.col(column)).alias(column))
    path = tmp_path / "nulls.parquet"
    pq.write_table(df.to_arrow(), path, row_group_size=100, data_page_version=page_version)
    with pytest.raises(DataError) as e:
        sd.prepare(path, k_core=1)
    assert str(e.value) == f"{path}: column {column!r} is null at row 321"


def test_files_the_core_does_not_read_give_the_polars_result(tmp_path: Path):
    df = random_log(np.random.default_rng(5), 2000, 40, 80, 0)
    cases = {
        "integer strings": df.with_columns(pl.col("user_id").cast(pl.String)),
        "rating": df.with_columns(rating=pl.lit(4.0)),
        "uint64": df.with_columns(pl.col("item_id").cast(pl.UInt64)),
        "float ids": df.with_columns(pl.col("item_id").cast(pl.Float64)),
        "dates": df.with_columns((pl.col("timestamp") - 1_000_000_000).cast(pl.Int32).cast(pl.Date)),
    }
    for name, frame in cases.items():
        path = tmp_path / f"{name}.parquet"
        frame.write_parquet(path)
        check(path, fast=False)
    cat = tmp_path / "categorical.parquet"  # dictionary-encoded strings: read by the core
    df.with_columns(("u" + pl.col("user_id").cast(pl.String)).cast(pl.Categorical).alias("user_id")).write_parquet(cat)
    check(cat)
    gz = tmp_path / "gzip.parquet"
    df.write_parquet(gz, compression="gzip")
    check(gz, fast=False)  # a codec the core is built without
    int96 = tmp_path / "int96.parquet"
    t = df.with_columns(pl.from_epoch("timestamp", time_unit="s").cast(pl.Datetime("us")))
    pq.write_table(t.to_arrow(), int96, use_deprecated_int96_timestamps=True)
    check(int96, fast=False)


@pytest.mark.parametrize(
    ("ids", "fast"),
    [
        (["a", "b", "c"], True),
        (["item 1", "item-2", "Z"], True),
        (["12", "7", "-3"], False),  # every id an integer: read_interactions makes the column Int64
        (["a", " b", "c"], False),  # padded: trimmed by the id checks
        (["a", "é", "c"], False),  # non-ASCII: checked with Unicode tables in Python
        (["a", "", "c"], False),  # empty: refused
        (["a", "NaN", "c"], False),  # NaN-like: refused
    ],
)
def test_string_ids_the_checks_would_change_take_the_polars_path(tmp_path: Path, ids: list[str], fast: bool):
    rng = np.random.default_rng(9)
    n = 300
    df = pl.DataFrame(
        {
            "user_id": [f"user{k}" for k in rng.integers(0, 20, n)],
            "item_id": [ids[k % 3] for k in range(n)],
            "timestamp": rng.integers(0, 10_000, n) + 1_600_000_000,
        }
    )
    path = tmp_path / "s.parquet"
    df.write_parquet(path, row_group_size=64)
    try:
        sd.read_interactions(path)
    except DataError as refused:  # refused ids: prepare(path) says what read_interactions says
        assert not fast
        with pytest.raises(DataError) as got:
            sd.prepare(path, k_core=1, split=SPLIT)
        assert str(got.value) == str(refused)
        return
    check(path, k=1, fast=fast)


def test_unused_dictionary_values_are_no_users_or_items(tmp_path: Path):
    """pyarrow writes an Arrow dictionary as it is: a category no row uses sits in the parquet
    dictionary page, and must not count as a user or item (users_before, the audit)."""
    rng = np.random.default_rng(10)
    n = 400
    users = pa.DictionaryArray.from_arrays(
        pa.array(rng.integers(0, 20, n), pa.int32()), pa.array([f"u{k}" for k in range(25)])
    )  # u20..u24 unused
    items = pa.DictionaryArray.from_arrays(
        pa.array(rng.integers(0, 30, n), pa.int32()), pa.array([f"i{k}" for k in range(40)])
    )
    t = pa.table({"user_id": users, "item_id": items, "timestamp": pa.array(rng.integers(0, 5000, n) + 10**9)})
    path = tmp_path / "dict.parquet"
    pq.write_table(t, path, row_group_size=150)
    check(path, k=1)  # users_before, items_before and the audit as the polars path has them
    log = core.prepare_parquet(path, "user_id", "item_id", "timestamp")[0]
    assert (log.users_before, log.items_before) == (20, 30)


def test_unused_text_entry_does_not_hide_integer_ids(tmp_path: Path):
    """Used ids "1", "2" are integers to read_interactions; an unused "abc" in the dictionary
    must not make them text (the id checks look at the strings rows use)."""
    u = pa.DictionaryArray.from_arrays(pa.array([0, 0, 1, 1], pa.int32()), pa.array(["1", "2", "abc"]))
    t = pa.table({"user_id": u, "item_id": [1, 2, 1, 2], "timestamp": [10, 20, 30, 40]})
    path = tmp_path / "u.parquet"
    pq.write_table(t, path, store_schema=False)
    check(path, k=1, fast=False)
    assert sd.prepare(path, k_core=1, split=SPLIT).user_ids.to_list() == [1, 2]


def test_declared_integer_width_is_applied_as_polars_does(tmp_path: Path):
    """A non-conforming INTEGER(8) column holding 300: both readers give 44 (300 as int8)."""
    schema = pa.schema([("user_id", pa.int32()), ("item_id", pa.int8()), ("timestamp", pa.int64())])
    t = pa.table({"user_id": [1, 1, 2, 2], "item_id": [5, 6, 5, 6], "timestamp": [1, 2, 3, 4]}, schema=schema)
    path = tmp_path / "w.parquet"
    pq.write_table(t, path, use_dictionary=False, compression="none")
    data = bytearray(path.read_bytes())
    at = data.find((5).to_bytes(4, "little") + (6).to_bytes(4, "little"))
    assert at > 0
    data[at : at + 4] = (300).to_bytes(4, "little")  # the first item id: 300 in an int8 column
    path.write_bytes(bytes(data))
    ds = check(path, k=1)
    assert sorted(ds.item_ids.drop_nulls().to_list()) == [5, 6, 44]


def test_timezone_polars_cannot_parse_is_a_data_error(tmp_path: Path):
    t = pa.table(
        {
            "user_id": [1, 1, 2, 2],
            "item_id": [1, 2, 1, 2],
            "timestamp": pa.array([1000, 2000, 3000, 4000], pa.timestamp("ms", tz="+05:45")),
        }
    )
    path = tmp_path / "tz.parquet"
    pq.write_table(t, path)
    same_outcome_as_polars(path)


def test_damaged_file_is_named(tmp_path: Path):
    df = random_log(np.random.default_rng(6), 5000, 40, 80, 0)
    path = tmp_path / "log.parquet"
    df.write_parquet(path, row_group_size=1000)
    data = bytearray(path.read_bytes())
    for at in (len(data) // 3, len(data) // 2):  # scribble over pages (not the footer)
        data[at : at + 200] = bytes(range(200))
    path.write_bytes(bytes(data))
    assert core.prepare_parquet(path, "user_id", "item_id", "timestamp")[0] is None
    with pytest.raises(DataError, match=str(path)):
        sd.prepare(path, k_core=1)
    half = tmp_path / "half.parquet"
    half.write_bytes(path.read_bytes()[: len(data) // 2])
    with pytest.raises(DataError, match=f"{half}: cannot read as parquet"):
        sd.prepare(half)


def test_core_reports_why_it_does_not_read(tmp_path: Path):
    df = random_log(np.random.default_rng(7), 100, 5, 9, 0)
    path = tmp_path / "s.parquet"
    df.with_columns(pl.col("item_id").cast(pl.Float64)).write_parquet(path)
    log, why, rng, per = core.prepare_parquet(path, "user_id", "item_id", "timestamp")
    assert log is None and "item_id" in why and rng is None and per == 0
    ok = tmp_path / "ok.parquet"
    df.write_parquet(ok)
    log, why, rng, per = core.prepare_parquet(ok, "user_id", "item_id", "timestamp")
    assert why is None and per == 1
    assert rng == (df["timestamp"].min(), df["timestamp"].max())


def test_mixed_epoch_units_warn_as_read_interactions_does(tmp_path: Path):
    df = pl.DataFrame(
        {"user_id": [1, 1, 2, 2], "item_id": [1, 2, 1, 2], "timestamp": [1_600_000_000, 1_600_000_001_000, 5, 6]}
    )
    path = tmp_path / "mixed.parquet"
    df.write_parquet(path)
    with pytest.warns(SeqdistillWarning, match="mixes epoch units") as got:
        sd.prepare(path, k_core=1, split=SplitConfig(kind="leave_one_out"))
    with pytest.warns(SeqdistillWarning, match="mixes epoch units") as want:
        sd.read_interactions(path)
    assert str(got[0].message) == str(want[0].message)
    single = tmp_path / "ms.parquet"
    df.with_columns(pl.Series("timestamp", [1_600_000_000_000, 1_600_000_001_000, 5, 6])).write_parquet(single)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SeqdistillWarning)
        sd.prepare(single, k_core=1, split=SplitConfig(kind="leave_one_out"))


def test_other_formats_and_mapped_columns_take_the_file_path(tmp_path: Path):
    df = random_log(np.random.default_rng(8), 800, 30, 40, 0).rename({"user_id": "userId", "item_id": "movieId"})
    csv = tmp_path / "log.csv"
    df.write_csv(csv)
    pqt = tmp_path / "log.parquet"
    df.write_parquet(pqt)
    cols = {"user_id": "userId", "item_id": "movieId"}
    a = sd.prepare(csv, columns=cols, k_core=2, split=SPLIT)
    b = sd.prepare(pqt, columns=cols, k_core=2, split=SPLIT)
    assert "read+encode" in b.stats["stages"] and "read+encode" not in a.stats["stages"]
    same_dataset(a, b)
    with pytest.raises(DataError, match="missing column 'user_id'"):
        sd.prepare(pqt)
    with pytest.raises(DataError, match="no such file"):
        sd.prepare(tmp_path / "absent.parquet")


# Damaged headers (tests/_parquet_thrift.py rewrites them): the core must decline such a file
# before allocating anything sized from the damaged field, and prepare(path) must give what
# read_interactions gives. The core runs in a child process under an address-space limit, so
# that a regression fails the test (an abort, or memory the child must not have used) instead
# of taking the machine's memory.

_LIMITED = """
import json, resource, sys, time
path, limit, compare = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import seqdistill as sd
from seqdistill import core
from seqdistill.data import SplitConfig
from seqdistill.errors import DataError

def peaks():  # MiB: resident and virtual
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    vm = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmPeak:")) / 1024
    return rss, vm

(rss, vm), t = peaks(), time.perf_counter()
try:
    log, why, _, _ = core.prepare_parquet(path, "user_id", "item_id", "timestamp")
except DataError as e:  # damage polars' reader aborts on
    log, why = None, f"DataError: {e}"
seconds, (rss_after, vm_after) = time.perf_counter() - t, peaks()
out = {"read": log is not None, "why": why, "seconds": seconds, "grew_mib": rss_after - rss, "vm_grew_mib": vm_after - vm}
split = SplitConfig(kind="leave_one_out")

def outcome(make):
    try:
        ds = make()
    except Exception as e:  # noqa: BLE001
        return [type(e).__name__, str(e)]
    return [ds.offsets.tolist(), ds.items.tolist(), ds.timestamps.tolist(), ds.user_ids.to_list(),
            ds.item_ids.to_list(), ds.manifest["audit"]]

if compare:
    out["prepare"] = outcome(lambda: sd.prepare(path, k_core=1, split=split, name="log"))
    out["polars"] = outcome(lambda: sd.prepare(sd.read_interactions(path), k_core=1, split=split, name="log"))
print(json.dumps(out))
"""


def _limited(path: Path, compare: bool, limit_gib: float = 3) -> dict:
    """``core.prepare_parquet(path)`` in a child limited to ``limit_gib`` of address space (and a
    few threads and malloc arenas, so that its size does not depend on the machine's cores):
    whether it read the file, why not, its seconds and how much its peak RSS and peak virtual
    size grew; with ``compare``, also the outcomes of ``prepare(path)`` and
    ``prepare(read_interactions(path))``."""
    package_root = str(Path(sd.__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")]),
        "POLARS_MAX_THREADS": "2",
        "RAYON_NUM_THREADS": "2",
        "MALLOC_ARENA_MAX": "2",
    }
    limit = str(int(limit_gib * 2**30))
    run = subprocess.run(
        [sys.executable, "-c", _LIMITED, str(path), limit, "1" if compare else "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, f"child died ({run.returncode}): {run.stderr[-2000:]}"
    return json.loads(run.stdout.splitlines()[-1])


def _small_log(path: Path, strings: bool = False, required: bool = False, **write: object) -> None:
    """60 rows, 8 users, 12 items, dictionary-encoded by pyarrow (``required``: columns declared
    non-nullable, so pages carry no definition levels)."""
    rng = np.random.default_rng(12)
    users, items = rng.integers(1, 9, 60), rng.integers(1, 13, 60)
    t = pa.table(
        {
            "user_id": [f"u{u}" for u in users] if strings else users,
            "item_id": items,
            "timestamp": rng.integers(1_600_000_000, 1_600_100_000, 60),
        }
    )
    if required:
        t = t.cast(pa.schema([pa.field(f.name, f.type, nullable=False) for f in t.schema]))
    pq.write_table(t, path, **write)  # type: ignore[arg-type]


def _declined_quietly(got: dict, column: str) -> None:
    assert not got["read"] and column in got["why"], got
    assert got["grew_mib"] < 256, got  # a 2**27-value dictionary is 1 GiB of int64
    assert got["vm_grew_mib"] < 768, got  # reserved, even if never touched
    assert got["seconds"] < 5, got


@pytest.mark.parametrize("num_values", [2**31 - 1, 2**27])
@pytest.mark.parametrize(("column", "strings"), [("user_id", False), ("timestamp", False), ("user_id", True)])
def test_dictionary_page_claiming_more_values_than_it_holds(
    tmp_path: Path, column: str, strings: bool, num_values: int
):
    """A dictionary page header's num_values of 2**31-1 made the core allocate 8 bytes each
    (16 GiB: an abort) before finding the page too short; it must decline at once. polars reads
    such a file (it does not trust num_values either), so prepare(path) must give its result;
    that is compared at 2**27 only: at 2**31-1 polars itself reserves 16 GiB, beyond the limit."""
    src, path = tmp_path / "src.parquet", tmp_path / "log.parquet"
    _small_log(src, strings=strings, compression="none")
    f = ParquetFile.open(src)
    dictionary = f.chunk_pages(column)[0]
    assert dictionary.kind == DICTIONARY_PAGE
    dictionary.sub().set_v(1, I32, num_values)
    f.write(path)
    got = _limited(path, compare=num_values < 2**31 - 1)
    _declined_quietly(got, column)
    if "polars" in got:
        assert got["prepare"] == got["polars"]


@pytest.mark.parametrize("num_rows", [0, 59, 61])
def test_footer_row_count_disagreeing_with_the_row_group(tmp_path: Path, num_rows: int):
    """FileMetaData.num_rows says 0 (or one off) while the row group holds 60 rows: the core
    read the row groups' 60 where read_interactions says "no rows"; prepare(path) must fail as
    read_interactions does."""
    src, path = tmp_path / "src.parquet", tmp_path / "log.parquet"
    _small_log(src)
    f = ParquetFile.open(src)
    f.meta.set_v(3, I64, num_rows)
    f.write(path)
    log, why, _, _ = core.prepare_parquet(path, "user_id", "item_id", "timestamp")
    assert log is None and "row count" in why
    same_outcome_as_polars(path)


@pytest.mark.parametrize("size", [2**31 - 1, 2**24 + 1])
@pytest.mark.parametrize("keep_totals", [True, False])
@pytest.mark.parametrize("page", ["dictionary", "data"])
def test_page_claiming_a_larger_uncompressed_size(tmp_path: Path, size: int, keep_totals: bool, page: str):
    """A snappy page header's uncompressed_page_size of 2**31-1: the parquet crate allocated and
    zeroed 2 GiB for the page, and the page came back padded with zeros, so the core read a file
    read_interactions refuses. The core must decline before the crate allocates, whether the
    column chunk's total_uncompressed_size still has the true size (``keep_totals``: a damaged
    header) or agrees with the header. The outcomes are compared at 2**24+1 (polars reserves the
    claimed size too, and 2 GiB does not fit the limit)."""
    src, path = tmp_path / "src.parquet", tmp_path / "log.parquet"
    _small_log(src, compression="snappy")
    f = ParquetFile.open(src)
    pages = f.chunk_pages("user_id")
    damaged = pages[0] if page == "dictionary" else pages[1]
    assert damaged.kind == (DICTIONARY_PAGE if page == "dictionary" else DATA_PAGE)
    damaged.header.set_v(2, I32, size)
    f.write(path, keep_uncompressed_totals=keep_totals)
    got = _limited(path, compare=size < 2**31 - 1)
    _declined_quietly(got, "user_id")
    if "polars" in got:  # (polars 2.1 refuses the dictionary page, reads the zero-padded data page)
        assert got["prepare"] == got["polars"]


def test_an_index_page_inside_a_column_chunk_is_declined(tmp_path: Path):
    """An INDEX_PAGE (a page type the format reserves; no writer writes one) inside a column
    chunk: the parquet crate skipped it and the core read the file, where polars refuses it. The
    core must decline, so that prepare(path) fails as read_interactions does."""
    src, path = tmp_path / "src.parquet", tmp_path / "log.parquet"
    _small_log(src, compression="none")
    f = ParquetFile.open(src)
    header = Struct()
    header.set_v(1, I32, 1)  # INDEX_PAGE
    header.set_v(2, I32, 3)
    header.set_v(3, I32, 3)
    header.set_v(6, STRUCT, Struct())
    pages = f.chunk_pages("item_id")
    pages.insert(1, Page(header, b"abc"))
    f.write(path)
    log, why, _, _ = core.prepare_parquet(path, "user_id", "item_id", "timestamp")
    assert log is None and "item_id" in why and "index page" in why
    same_outcome_as_polars(path)  # (a polars that reads past the page: the same dataset)


@pytest.mark.parametrize("stored", ["timestamp[ms]", "int64 timestamp, datetime file"])
def test_a_stored_arrow_schema_that_disagrees_is_read_as_polars_reads_it(tmp_path: Path, stored: str):
    """Writers may store an Arrow schema beside the parquet one, and polars follows it: an INT64
    column it calls timestamp[ms] is read as milliseconds. The core follows the parquet types; when
    the two disagree, prepare(path) must give what read_interactions gives (it gave raw integers
    as seconds)."""
    rng = np.random.default_rng(3)
    n = 60
    ints = pa.array(rng.integers(1_600_000_000, 1_600_100_000, n))
    dates = pa.array(rng.integers(1_600_000_000, 1_600_100_000, n) * 1000, pa.timestamp("ms"))
    base = {"user_id": rng.integers(1, 9, n), "item_id": rng.integers(1, 13, n)}
    donor, target = (dates, ints) if stored == "timestamp[ms]" else (ints, dates)
    pq.write_table(pa.table({**base, "timestamp": donor}), tmp_path / "donor.parquet")
    pq.write_table(pa.table({**base, "timestamp": target}), tmp_path / "target.parquet")
    f, schema_of = ParquetFile.open(tmp_path / "target.parquet"), ParquetFile.open(tmp_path / "donor.parquet")
    f.meta[5] = schema_of.meta[5]  # FileMetaData.key_value_metadata: the ARROW:schema entry
    path = tmp_path / "log.parquet"
    f.write(path)
    polars_reads = sd.read_interactions(path)
    same_dataset(sd.prepare(path, k_core=1, split=SPLIT), sd.prepare(polars_reads, k_core=1, split=SPLIT))


def test_datetimes_far_in_the_future_are_no_mix_of_epoch_units(tmp_path: Path):
    """A typed datetime column carries its unit: 9999-12-31 sentinels beside 2020 dates are
    seconds in the milliseconds band, not a second unit; neither path warns (read_interactions
    did, prepare(path) did not)."""
    rng = np.random.default_rng(4)
    n = 40
    us = rng.integers(1_600_000_000, 1_600_100_000, n) * 1_000_000
    us[::7] = 253_402_214_400 * 1_000_000  # 9999-12-31
    t = pa.table(
        {
            "user_id": rng.integers(1, 5, n),
            "item_id": rng.integers(1, 7, n),
            "timestamp": pa.array(us, pa.timestamp("us")),
        }
    )
    path = tmp_path / "log.parquet"
    pq.write_table(t, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        want = sd.prepare(sd.read_interactions(path), k_core=1, split=SPLIT)
        same_dataset(sd.prepare(path, k_core=1, split=SPLIT), want)


@pytest.mark.parametrize("off_by", [-8, -1, 1, 8])
def test_an_uncompressed_v2_page_whose_size_is_off_is_declined(tmp_path: Path, off_by: int):
    """pyarrow writes v2 dictionary-index pages uncompressed (is_compressed false) in snappy
    chunks; such a page whose header's uncompressed size is off by a few bytes was read by the
    core, while polars refuses the file. prepare(path) must do what read_interactions does."""
    src, path = tmp_path / "src.parquet", tmp_path / "log.parquet"
    _small_log(src, compression="snappy", data_page_version="2.0")
    f = ParquetFile.open(src)
    raw = [p for p in f.chunk_pages("item_id") if p.kind == DATA_PAGE_V2 and p.sub().get_v(7) is False]
    assert raw, "pyarrow wrote no uncompressed v2 page"
    raw[0].header.set_v(2, I32, raw[0].header.get_v(2) + off_by)
    f.write(path)
    log, why, _, _ = core.prepare_parquet(path, "user_id", "item_id", "timestamp")
    assert log is None and "item_id" in why
    same_outcome_as_polars(path)


def _huge_footer_count(src: Path, path: Path, damage: str) -> None:
    """``src`` with a root schema element claiming 2**31-1 children, or its schema list claiming
    2**31-1 elements, written to ``path``."""
    if damage == "num_children":
        f = ParquetFile.open(src)
        f.meta.get_v(2).items[0].set_v(5, I32, 2**31 - 1)
        f.write(path)
    else:
        data = src.read_bytes()
        n = int.from_bytes(data[-8:-4], "little")
        footer = data[-8 - n : -8]
        # FileMetaData: field 1 (version, i32), then field 2 (schema): a list of 4 structs.
        at = footer.index(b"\x19\x4c")
        footer = footer[: at + 1] + b"\xfc" + uvarint(2**31 - 1) + footer[at + 2 :]
        path.write_bytes(data[: -8 - n] + footer + len(footer).to_bytes(4, "little") + b"PAR1")


@pytest.mark.parametrize("damage", ["num_children", "schema list length"])
def test_a_footer_claiming_huge_counts_is_refused_before_the_crate_allocates(tmp_path: Path, damage: str):
    """The parquet crate sizes vectors from the footer's counts: a root schema element claiming
    2**31-1 children, or a schema list claiming 2**31-1 elements, made it allocate 16 GiB and more
    (an abort). The core must refuse the file first, as damage, and not hand it on (see the entry
    point tests below)."""
    src, path = tmp_path / "src.parquet", tmp_path / "log.parquet"
    _small_log(src)
    _huge_footer_count(src, path, damage)
    got = _limited(path, compare=False)
    assert not got["read"] and got["why"].startswith(
        "DataError: cannot read as parquet: a damaged file: a damaged footer"
    )
    assert got["grew_mib"] < 256 and got["vm_grew_mib"] < 768 and got["seconds"] < 5, got


@pytest.mark.parametrize("framing", ["hadoop", "raw block"])
@pytest.mark.parametrize("page_version", ["1.0", "2.0"])
def test_legacy_lz4_pages_are_read_as_pyarrow_reads_them(tmp_path: Path, framing: str, page_version: str):
    """The LZ4 codec (not LZ4_RAW) as parquet-mr writes it, each page's block after Hadoop's
    two big-endian sizes, and as older parquet-cpp wrote it, a bare block: the core decompresses
    both itself and must give the dataset pyarrow's reader gives (and the LZ4_RAW original)."""
    src, path = tmp_path / "src.parquet", tmp_path / "log.parquet"
    _small_log(src, compression="lz4", data_page_version=page_version, data_page_size=64)
    f = ParquetFile.open(src)
    framed = 0
    for rg, cols in zip(f.row_groups(), f.pages, strict=True):
        for cc, pages in zip(rg.get_v(1).items, cols, strict=True):
            assert cc.get_v(3).get_v(4) == 7  # LZ4_RAW as written
            cc.get_v(3).set_v(4, I32, 5)  # LZ4
            for p in pages if framing == "hadoop" else []:
                levels = 0
                if p.kind == DATA_PAGE_V2:
                    if p.sub().get_v(7) is False:
                        continue  # values stored uncompressed
                    levels = p.sub().get_v(5) + p.sub().get_v(6)
                block = p.body[levels:]
                size = p.header.get_v(2) - levels
                p.body = p.body[:levels] + size.to_bytes(4, "big") + len(block).to_bytes(4, "big") + block
                framed += 1
    assert framing == "raw block" or framed >= 3
    f.write(path)
    log, why, _, _ = core.prepare_parquet(path, "user_id", "item_id", "timestamp")
    assert why is None and log is not None
    got = sd.prepare(path, k_core=1, split=SPLIT)
    assert "read+encode" in got.stats["stages"]
    same_dataset(got, sd.prepare(pl.from_arrow(pq.read_table(path)), k_core=1, split=SPLIT))
    same_dataset(got, sd.prepare(src, k_core=1, split=SPLIT))


@pytest.mark.parametrize("off_by", [-3, 5])
def test_a_compressed_page_giving_another_size_than_its_header_is_declined(tmp_path: Path, off_by: int):
    """An LZ4_RAW page's header claiming a few bytes more or less than its block gives (LZ4
    stores no size to check beforehand): the core declines it (the page is neither padded nor
    cut), and prepare(path) does what read_interactions does."""
    src, path = tmp_path / "src.parquet", tmp_path / "log.parquet"
    _small_log(src, compression="lz4")
    f = ParquetFile.open(src)
    page = f.chunk_pages("timestamp")[-1]
    assert page.kind == DATA_PAGE
    page.header.set_v(2, I32, page.header.get_v(2) + off_by)
    f.write(path)
    log, why, _, _ = core.prepare_parquet(path, "user_id", "item_id", "timestamp")
    assert log is None and "timestamp" in why, why
    same_outcome_as_polars(path)


# Damage found by bad-input campaign 8 against the core's own page reader (commit 8eccceb).
HEADER_DAMAGE = {
    # name: (write options, required columns, edit of the first data page's own header)
    "v1 repetition level encoding missing": ({"compression": "zstd"}, False, lambda h: h.pop(4)),
    "v1 definition level encoding missing": ({"compression": "snappy"}, True, lambda h: h.pop(3)),
    "v2 num_nulls missing": ({"compression": "snappy", "data_page_version": "2.0"}, False, lambda h: h.pop(2)),
    "v2 num_rows missing": ({"compression": "none", "data_page_version": "2.0"}, False, lambda h: h.pop(3)),
    "v2 level length missing": ({"compression": "zstd", "data_page_version": "2.0"}, False, lambda h: h.pop(6)),
    "v2 is_compressed as an i32": (
        {"compression": "none", "data_page_version": "2.0"},
        False,
        lambda h: h.set_v(7, I32, 0),
    ),
}


@pytest.mark.parametrize("damage", [*HEADER_DAMAGE, "crc as binary"])
def test_a_page_header_lacking_a_required_field_is_declined(tmp_path: Path, damage: str):
    """parquet.thrift requires these fields (and types); polars' Thrift reader refuses a header
    without them, while the core's reader took defaults (levels of 0 bytes, no nulls) and read
    the file. The core must decline, and prepare(path) must fail as read_interactions does."""
    src, path = tmp_path / "src.parquet", tmp_path / "log.parquet"
    write, required, edit = HEADER_DAMAGE.get(damage, ({"compression": "zstd"}, False, None))
    _small_log(src, required=required, **write)
    f = ParquetFile.open(src)
    pages = f.chunk_pages("user_id")
    if edit is None:
        for p in pages:
            p.header.set_v(4, BINARY, b"abcd")  # PageHeader.crc is an i32
    else:
        edit(next(p for p in pages if p.kind in (DATA_PAGE, DATA_PAGE_V2)).sub())
    f.write(path)
    log, why, _, _ = core.prepare_parquet(path, "user_id", "item_id", "timestamp")
    assert log is None and "user_id" in why, why
    same_outcome_as_polars(path)


@pytest.mark.parametrize(("codec", "column"), [("snappy", "timestamp"), ("zstd", "user_id"), ("snappy", "item_id")])
def test_a_forged_size_the_codec_agrees_with_is_declined_without_allocating(tmp_path: Path, codec: str, column: str):
    """A data page whose header and whose codec's own stored size (snappy's length, a zstd
    frame's content size) both claim 2**31-1 bytes: the core sized a 2 GiB zeroed buffer per
    page (two such columns aborted the process under a 4 GiB limit) before finding the data
    short. A few hundred stored bytes cannot expand that far; it must decline at once."""
    src, path = tmp_path / "src.parquet", tmp_path / "log.parquet"
    _small_log(src, compression=codec)
    f = ParquetFile.open(src)
    big = 2**31 - 1
    page = [p for p in f.chunk_pages(column) if p.kind == DATA_PAGE][-1]
    if codec == "snappy":
        stored = page.body
        while stored[0] & 0x80:
            stored = stored[1:]
        page.body = uvarint(big) + stored[1:]  # snappy's own length says 2**31-1 too
    else:  # a zstd frame of one raw block whose content size says 2**31-1
        raw = pa.Codec("zstd").decompress(page.body, decompressed_size=page.header.get_v(2)).to_pybytes()
        frame = b"\x28\xb5\x2f\xfd" + bytes([0x80, 0x58]) + big.to_bytes(4, "little")
        page.body = frame + (1 | (len(raw) << 3)).to_bytes(3, "little") + raw
    page.header.set_v(2, I32, big)
    f.write(path)
    got = _limited(path, compare=False)
    _declined_quietly(got, column)
    assert got["grew_mib"] < 64 and got["vm_grew_mib"] < 256, got


@pytest.mark.parametrize("page_version", ["1.0", "2.0"])
def test_a_column_chunk_claiming_fewer_values_than_rows_is_declined(tmp_path: Path, page_version: str):
    """ColumnMetaData.num_values 50 below the row group's rows: polars stops taking pages at
    that count and fails; the core read every page and returned the whole log."""
    src, path = tmp_path / "src.parquet", tmp_path / "log.parquet"
    _small_log(src, compression="zstd", data_page_version=page_version, data_page_size=128, write_batch_size=8)
    f = ParquetFile.open(src)
    meta = f.row_groups()[0].get_v(1).items[f.column("user_id")].get_v(3)
    meta.set_v(5, I64, meta.get_v(5) - 50)
    f.write(path)
    log, why, _, _ = core.prepare_parquet(path, "user_id", "item_id", "timestamp")
    assert log is None and "user_id" in why, why
    with pytest.raises(DataError) as got:
        sd.read_interactions(path)
    # polars panics in one of its tasks; the message must not carry the task's number (it changes
    # from run to run, and the two paths would give two messages).
    assert "Id(" not in str(got.value), got.value
    same_outcome_as_polars(path)


@pytest.mark.parametrize(("column", "codec"), [("user_id", "none"), ("timestamp", "zstd"), ("user_id", "snappy")])
def test_a_v2_page_with_a_negative_null_count_does_not_hide_its_null(tmp_path: Path, column: str, codec: str):
    """A null at row 40 in a v2 page whose num_nulls says -1: the core looked at the definition
    levels only for a positive count, decoded the page as if it held no null (the bit-packing's
    padding standing in for the missing value) and returned a dataset shifted by a row, where
    read_interactions names the null."""
    src, path = tmp_path / "src.parquet", tmp_path / "log.parquet"
    rng = np.random.default_rng(3)
    cols = {
        "user_id": rng.integers(1, 20, 300),
        "item_id": rng.integers(1, 30, 300),
        "timestamp": rng.integers(1_600_000_000, 1_600_000_300, 300),
    }
    values: list[int | None] = list(cols[column])
    values[40] = None
    pq.write_table(
        pa.table({**cols, column: pa.array(values, pa.int64())}), src, compression=codec, data_page_version="2.0"
    )
    f = ParquetFile.open(src)
    page = next(p for p in f.chunk_pages(column) if p.kind == DATA_PAGE_V2 and p.sub().get_v(2) > 0)
    page.sub().set_v(2, I32, -1)
    f.write(path)
    log, _, _, _ = core.prepare_parquet(path, "user_id", "item_id", "timestamp")
    assert log is None
    with pytest.raises(DataError, match=f"{column}.*null at row 40|null at row 40"):
        sd.prepare(path, k_core=1, split=SPLIT)
    same_outcome_as_polars(path)


_PREPARE_IN_A_CHILD = """
import sys
import seqdistill as sd
from seqdistill.errors import DataError
try:
    sd.prepare(sys.argv[1], k_core=1)
except DataError as e:
    print("DataError:", e)
"""


@pytest.mark.parametrize("page_version", ["1.0", "2.0"])
@pytest.mark.parametrize("column", ["user_id", "timestamp"])
def test_a_page_claiming_negative_values_is_a_data_error_not_an_abort(tmp_path: Path, page_version: str, column: str):
    """A data page whose header claims -1 values: the core declined it, prepare(path) handed the
    file to polars, and polars' reader aborted the process ("memory allocation of
    2305843009213693952 bytes failed"). prepare(path) must report the damage itself."""
    src, path = tmp_path / "src.parquet", tmp_path / "log.parquet"
    _small_log(src, compression="zstd", data_page_version=page_version)
    f = ParquetFile.open(src)
    page = next(p for p in f.chunk_pages(column) if p.kind in (DATA_PAGE, DATA_PAGE_V2))
    page.sub().set_v(1, I32, -1)
    f.write(path)
    with pytest.raises(DataError, match=rf"{column}.*-1 values"):
        core.prepare_parquet(path, "user_id", "item_id", "timestamp")
    package_root = str(Path(sd.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, "-c", _PREPARE_IN_A_CHILD, str(path)], capture_output=True, text=True, env=env, timeout=120
    )
    assert run.returncode == 0, f"the process died ({run.returncode}): {run.stderr[-500:]}"
    assert run.stdout.startswith(f"DataError: {path}: cannot read as parquet: a damaged file: column"), run.stdout
    assert f'"{column}"' in run.stdout and "-1 values" in run.stdout, run.stdout


_ENTRY_IN_A_CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # as a user's container might
import seqdistill as sd
from seqdistill.data.interactions import read_items
from seqdistill.errors import DataError
entry, path = sys.argv[1], sys.argv[2]
calls = {
    "prepare(path)": lambda: sd.prepare(path, k_core=1),
    "read_interactions": lambda: sd.read_interactions(path),
    "read_items": lambda: read_items(path, id_column="item_id"),
}
try:
    calls[entry]()
except DataError as e:
    print("DataError:", e)
else:
    print("read")
"""


def _entry_in_a_child(entry: str, path: Path) -> str:
    package_root = str(Path(sd.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, "-c", _ENTRY_IN_A_CHILD, entry, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, f"{entry}: the process died ({run.returncode}): {run.stderr[-500:]}"
    return run.stdout.strip()


def _polars_abort_damage(src: Path, path: Path, damage: str) -> str:
    """``src`` with ``damage`` done to its ``item_id`` column (or footer), written to ``path``;
    returns the start of the message the file must be refused with."""
    if damage in ("num_children", "schema list length"):
        _huge_footer_count(src, path, damage)
        return "a damaged file: a damaged footer"
    f = ParquetFile.open(src)
    data = [p for p in f.chunk_pages("item_id") if p.kind in (DATA_PAGE, DATA_PAGE_V2)]
    want = 'a damaged file: column "item_id": a page claiming -1 values'
    if damage == "negative page count":
        data[0].sub().set_v(1, I32, -1)
    elif damage == "negative count after a damaged page":
        # An earlier header's uncompressed size off by one: the strict page walk stopped there.
        assert len(data) > 1
        data[0].header.set_v(2, I32, data[0].header.get_v(2) + 1)
        data[-1].sub().set_v(1, I32, -1)
    elif damage == "negative count, column_orders one short":
        # A footer the parquet crate refuses and polars reads.
        f.meta.get_v(7).items.pop()
        data[0].sub().set_v(1, I32, -1)
    elif damage == "negative count in a chunk naming another column":
        # Readers take a row group's chunks by position: the chunk's own path_in_schema must not
        # hide it from the check of the column polars reads it as.
        data[0].sub().set_v(1, I32, -1)
        f.row_groups()[0].get_v(1).items[f.column("item_id")].get_v(3).set_v(3, LIST, List(BINARY, [b"nosuch"]))
    elif damage == "dictionary claiming 2**31-1 values":
        next(p for p in f.chunk_pages("item_id") if p.kind == DICTIONARY_PAGE).sub().set_v(1, I32, 2**31 - 1)
        want = 'a damaged file: column "item_id": a dictionary page claiming 2147483647 values'
    elif damage == "3e9 rows in every count":
        rows = 3_000_000_000
        for rg in f.row_groups():
            rg.set_v(3, I64, rows)
            for cc in rg.get_v(1).items:
                cc.get_v(3).set_v(5, I64, rows)
        f.meta.set_v(3, I64, rows * len(f.row_groups()))
        want = 'a damaged file: column "'  # the first column checked
    elif damage == "4e9 rows in the footer only":
        # The core's reader sized its blocks from this (an abort); polars names the damage.
        rows = 4_000_000_000 // len(f.row_groups())  # 4e9 in all: under the 2^32 the core indexes
        for rg in f.row_groups():
            rg.set_v(3, I64, rows)
        f.meta.set_v(3, I64, rows * len(f.row_groups()))
        want = ""
    f.write(path, keep_uncompressed_totals=True)
    return want


_ABORT_DAMAGE = [
    "negative page count",
    "negative count after a damaged page",
    "negative count, column_orders one short",
    "negative count in a chunk naming another column",
    "dictionary claiming 2**31-1 values",
    "3e9 rows in every count",
    "4e9 rows in the footer only",
    "num_children",
    "schema list length",
]


@pytest.mark.parametrize("entry", ["prepare(path)", "read_interactions", "read_items"])
@pytest.mark.parametrize("damage", _ABORT_DAMAGE)
def test_damage_polars_aborts_on_is_a_data_error_at_every_entry(tmp_path: Path, entry: str, damage: str):
    """Every entry point that hands a user's parquet file to polars checks it first. Under a 4 GiB
    address-space limit polars' reader aborted the process (SIGABRT) on: a page claiming -1
    values (also hidden behind an earlier page header the strict walk stopped at, or behind a
    footer the parquet crate refuses); a dictionary page claiming 2**31-1 values; row groups
    and column chunks all claiming 3e9 rows of a 60-row file; and prepare(path) in the core's
    own reader, on row groups claiming 4e9 rows (bad-input campaigns 8 and 9).
    A footer list claiming 2**31-1 elements is refused as damage too, before polars or the
    parquet crate size anything from it (the crate allocated 16 GiB for it; the polars
    installed here refuses those two footers as "out of spec"). Each entry must raise a
    DataError naming the file, and read an undamaged copy."""
    src, path = tmp_path / "src.parquet", tmp_path / "log.parquet"
    # Plain pages for a column of several data pages; dictionaries for the dictionary's damage.
    write = {
        "compression": "zstd",
        "data_page_size": 64,
        "write_batch_size": 8,
        "use_dictionary": "dictionary" in damage,
    }
    if entry == "read_items":  # an item table: unique ids, three columns as in the log
        n = 120
        table = {"item_id": np.arange(1, n + 1), "title": [f"t{i}" for i in range(n)], "year": np.full(n, 1999)}
        pq.write_table(pa.table(table), src, row_group_size=60, **write)
    else:
        _small_log(src, row_group_size=30, **write)
    assert _entry_in_a_child(entry, src) == "read"
    want = _polars_abort_damage(src, path, damage)
    got = _entry_in_a_child(entry, path)
    assert got.startswith(f"DataError: {path}: cannot read as parquet: {want}"), got


def test_a_row_group_listing_another_columns_chunk_in_its_place_is_not_read_as_that_column(tmp_path: Path):
    """The parquet crate takes a row group's column chunks by position. A footer whose second
    row group lists the item chunk where the user chunk belongs (and the other way round) had
    the core decode one column as the other (bad-input campaign 9: a text column read as
    integer ids, a silently wrong dataset). The core must hand such a file on, and prepare(path)
    give what prepare(read_interactions(path)) gives."""
    src, path = tmp_path / "src.parquet", tmp_path / "log.parquet"
    _small_log(src, row_group_size=30)
    f = ParquetFile.open(src)
    u, i = f.column("user_id"), f.column("item_id")
    chunks, pages = f.row_groups()[1].get_v(1).items, f.pages[1]
    chunks[u], chunks[i] = chunks[i], chunks[u]
    pages[u], pages[i] = pages[i], pages[u]
    f.write(path)
    log, why, _, _ = core.prepare_parquet(path, "user_id", "item_id", "timestamp")
    assert log is None and "another column's chunk" in why, why
    same_outcome_as_polars(path)


def test_check_parquet_looks_only_at_the_columns_asked_for(tmp_path: Path):
    """A negative page count in a column nobody reads is not refused (polars skips the chunk);
    other damage passes the check (polars names it); a file that is not parquet passes too."""
    src, path = tmp_path / "src.parquet", tmp_path / "log.parquet"
    _small_log(src)
    f = ParquetFile.open(src)
    page = next(p for p in f.chunk_pages("timestamp") if p.kind in (DATA_PAGE, DATA_PAGE_V2))
    page.sub().set_v(1, I32, -1)
    f.write(path)
    core.check_parquet(path, ["user_id", "item_id"])
    core.check_parquet(path, [])
    with pytest.raises(DataError, match='column "timestamp": a page claiming -1 values'):
        core.check_parquet(path, ["timestamp"])
    with pytest.raises(DataError, match='column "timestamp"'):
        core.check_parquet(path)
    (tmp_path / "text.parquet").write_text("user_id,item_id\n1,2\n")
    core.check_parquet(tmp_path / "text.parquet")
    data = src.read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2] + data[-8:])  # footer length beyond
    core.check_parquet(tmp_path / "cut.parquet")


def test_a_polars_panic_leaves_one_line_on_the_clis_stderr(tmp_path: Path):
    """A column chunk claiming 0 values: polars' reader panics, and Rust's panic hook printed the
    panic (with RUST_BACKTRACE set, a whole backtrace) to stderr before the panic reached Python
    as the exception the CLI reports in one line (bad-input campaign 9: 6-20 lines before it).
    What polars writes to stderr during a read that fails is held back and dropped."""
    src, path = tmp_path / "src.parquet", tmp_path / "log.parquet"
    _small_log(src)
    f = ParquetFile.open(src)
    f.row_groups()[0].get_v(1).items[f.column("item_id")].get_v(3).set_v(5, I64, 0)
    f.write(path)
    package_root = str(Path(sd.__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "RUST_BACKTRACE": "1",
        "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")]),
    }
    cli = [
        sys.executable,
        "-m",
        "seqdistill.cli",
        "prepare",
        str(path),
        "--out",
        str(tmp_path / "out"),
        "--k-core",
        "1",
    ]
    run = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=300)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1, run.stderr[-3000:]
    assert lines[0].startswith(f"seqdistill prepare: error: {path}: cannot read as parquet:"), lines
    assert not (tmp_path / "out").exists()


def test_plain_string_ids_go_to_polars_unless_asked(tmp_path: Path):
    """String user ids stored without a dictionary: prepare(path) reads the file through polars
    (the same dataset as the core's reading, which it does when asked); asked not to, the core
    declines and names the column. Stored with one, the core reads them."""
    df = random_log(np.random.default_rng(7), 400, 40, 30, 0).with_columns(
        ("u" + pl.col("user_id").cast(pl.String)).alias("user_id"),
        ("i" + pl.col("item_id").cast(pl.String)).alias("item_id"),
    )
    plain, dictionary = tmp_path / "plain.parquet", tmp_path / "dictionary.parquet"
    pq.write_table(df.to_arrow(), plain, use_dictionary=["item_id"], row_group_size=100)
    pq.write_table(df.to_arrow(), dictionary, use_dictionary=True, row_group_size=100)
    assert mostly_plain_strings(plain) and not mostly_plain_strings(dictionary)
    log, why, _, _ = core.prepare_parquet(plain, "user_id", "item_id", "timestamp", plain_strings=False)
    assert log is None and why is not None and '"user_id"' in why and "without a dictionary" in why, why
    assert core.prepare_parquet(plain, "user_id", "item_id", "timestamp")[0] is not None
    assert core.prepare_parquet(dictionary, "user_id", "item_id", "timestamp", plain_strings=False)[0] is not None
    got = check(plain)  # through polars, and the same through the core when asked
    assert "read+encode" not in got.stats["stages"]
    assert "read+encode" in check(dictionary).stats["stages"]
