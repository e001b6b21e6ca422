"""prepare(): the whole Rust pipeline against an independent polars/Python reference, plus the
error messages and the on-disk round trip."""

from __future__ import annotations

import gzip
import json
import re

import numpy as np
import polars as pl
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import seqdistill as sd
from seqdistill.data import DataError, SplitConfig, read_interactions
from seqdistill.data.interactions import normalize_interactions
from seqdistill.data.sequences import TrainWindows, eval_inputs
from seqdistill.errors import ConfigError


def reference_prepare(df: pl.DataFrame, k: int, q: float):
    """Iterative k-core in polars, then per-user stable chronological logs and the test threshold."""
    df = df.with_row_index("row")
    while True:
        before = df.height
        df = df.filter(pl.len().over("user_id") >= k)
        df = df.filter(pl.len().over("item_id") >= k)
        if df.height == before:
            break
    users = sorted(df.get_column("user_id").unique().to_list())
    items = sorted(df.get_column("item_id").unique().to_list())
    df = df.sort(["user_id", "timestamp", "row"])
    logs = {u: g.get_column("item_id").to_list() for (u,), g in df.group_by(["user_id"], maintain_order=True)}
    thr = float(np.quantile(df.get_column("timestamp").to_numpy().astype(float), q)) if df.height else None
    return users, items, logs, thr


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 12), st.sampled_from(list("abcdefgh")), st.integers(0, 20)), min_size=1, max_size=150
    ),
    st.integers(1, 4),
)
def test_prepare_matches_polars_reference(rows, k):
    df = pl.DataFrame(
        {"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows], "timestamp": [r[2] for r in rows]}
    )
    users, items, logs, thr = reference_prepare(df, k, 0.8)
    if not users:
        with pytest.raises(DataError, match="nothing left after k-core"):
            sd.prepare(df, k_core=k, split=SplitConfig(valid="none"))
        return
    try:
        ds = sd.prepare(df, k_core=k, split=SplitConfig(valid="none"))
    except DataError as e:
        assert "training part is empty" in str(e)
        return
    assert ds.user_ids.to_list() == users
    assert ds.item_ids.to_list() == [None] + items
    for u, raw in enumerate(users):
        got = [ds.item_ids[int(i)] for i in ds.items[ds.offsets[u] : ds.offsets[u + 1]]]
        assert got == logs[raw]
    assert ds.stats["test_threshold"] == pytest.approx(thr)
    assert (ds.items >= 1).all() and (ds.items <= ds.n_items).all()


@pytest.mark.parametrize("shape", ["uniform", "few_distinct", "skewed", "subsecond"])
@pytest.mark.parametrize("q", [0.8, 0.37, 0.999])
def test_the_threshold_of_a_large_log_is_numpys_quantile(shape, q):
    # From 65,536 rows the core gathers the quantile while it groups the rows (a sampled bracket,
    # counted per bucket): checked against numpy on the timestamps the dataset keeps.
    rng = np.random.default_rng(7)
    n = 90_000
    ts = {
        "uniform": rng.integers(0, 10**9, n),
        "few_distinct": rng.integers(0, 4, n) * 1000,
        "skewed": (rng.pareto(0.7, n) * 1000).astype(np.int64),
        "subsecond": rng.integers(0, 10**12, n),
    }[shape]
    df = pl.DataFrame({"user_id": rng.integers(0, 3000, n), "item_id": rng.integers(0, 500, n), "timestamp": ts})
    if shape == "subsecond":
        df = df.with_columns(pl.col("timestamp").cast(pl.Datetime("ms")))
    ds = sd.prepare(df, k_core=3, split=SplitConfig(valid="none", quantile=q))
    kept = ds.timestamps
    assert len(kept) > 65_536
    assert ds.stats["test_threshold"] == float(np.quantile(kept.astype(np.float64), q))
    assert ds.stats["test_threshold"] == float(np.quantile(kept, q))


def prepared_as_the_reference(df: pl.DataFrame, k: int, rng: np.random.Generator):
    """``prepare(df)`` checked against :func:`reference_prepare` on a large log: the ids, the item
    sequences of 300 sampled users, the threshold and the rows the k-core dropped."""
    users, items, logs, thr = reference_prepare(df, k, 0.8)
    ds = sd.prepare(df, k_core=k, split=SplitConfig(valid="none"))
    assert ds.user_ids.to_list() == users
    assert ds.item_ids.to_list() == [None] + items
    raw_items = ds.item_ids.to_list()
    for u in rng.choice(len(users), 300, replace=False):
        assert [raw_items[i] for i in ds.items[ds.offsets[u] : ds.offsets[u + 1]]] == logs[users[u]]
    assert ds.stats["test_threshold"] == pytest.approx(thr)
    assert ds.stats["kcore"]["rows_dropped"] == df.height - len(ds.items)
    return ds, users, items


@pytest.mark.parametrize("spread", [1, 3, 40])
def test_a_large_log_with_dense_or_sparse_ids_matches_the_reference(spread):
    # From a quarter of the rows, integer ids are coded by their offset in their range: kept as
    # offsets when dense (spread 1), turned into ranks when sparse; either way the same dataset.
    rng = np.random.default_rng(spread)
    n = 100_000
    df = pl.DataFrame(
        {
            "user_id": 10**6 + rng.integers(0, 4000, n) * spread,
            "item_id": -500 + rng.zipf(1.3, n).clip(max=3000) * spread,
            "timestamp": rng.integers(0, 50_000, n),
        }
    )
    ds, users, items = prepared_as_the_reference(df, 4, rng)
    audit = ds.manifest["audit"]
    assert (audit["users_in"], audit["items_in"]) == (df["user_id"].n_unique(), df["item_id"].n_unique())
    removed = [(r["users"], r["items"]) for r in audit["filter_rounds"]]
    assert sum(u for u, _ in removed) == audit["users_in"] - len(users)
    assert sum(i for _, i in removed) == audit["items_in"] - len(items)


@pytest.mark.parametrize("kinds", [("str", "str"), ("str", "int"), ("int", "long")])
def test_a_large_log_with_string_ids_matches_the_reference(kinds):
    # String ids of several row blocks go through the core's hash encoding into the same block of
    # codes as integer ids (short ones read from their views, long ones from the data buffers).
    rng = np.random.default_rng(7)
    n = 150_000
    users = rng.integers(0, 5000, n)
    items = rng.zipf(1.3, n).clip(max=4000)
    label = {
        "int": lambda v: v,
        "str": lambda v: [f"u{x}" for x in v],  # lengths 2-5: text order is not number order
        "long": lambda v: [f"an-item-name-longer-than-twelve-{x}" for x in v],
    }
    df = pl.DataFrame(
        {"user_id": label[kinds[0]](users), "item_id": label[kinds[1]](items), "timestamp": rng.integers(0, 9_000, n)}
    )
    prepared_as_the_reference(df, 4, rng)


def test_one_user_duplicates_and_equal_timestamps_keep_row_order():
    df = pl.DataFrame({"user_id": [7] * 6, "item_id": [3, 1, 3, 2, 1, 9], "timestamp": [5, 5, 5, 1, 9, 9]})
    ds = sd.prepare(df, k_core=None, split=SplitConfig(valid="none", quantile=0.5))
    raw = [ds.item_ids[int(i)] for i in ds.items]
    assert raw == [2, 3, 1, 3, 1, 9]
    assert ds.n_users == 1 and ds.n_items == 4


def test_string_ids_and_metadata_alignment():
    df = pl.DataFrame({"user_id": ["u2", "u1", "u1", "u2"], "item_id": ["é", "b", "é", "b"], "timestamp": [1, 2, 3, 4]})
    meta = pl.DataFrame({"item_id": ["b", "z", "é"], "title": ["Bee", "Zed", "Eh"]})
    ds = sd.prepare(
        sd.RawDataset("toy", df, meta, domain="products"), k_core=None, split=SplitConfig(valid="none", quantile=0.5)
    )
    assert ds.item_ids.to_list() == [None, "b", "é"]
    assert ds.item_meta.select("item", "title").rows() == [(1, "Bee"), (2, "Eh")]
    assert ds.domain == "products"


def test_windows_and_eval_inputs_follow_the_split():
    rng = np.random.default_rng(0)
    n = 3000
    df = pl.DataFrame(
        {"user_id": rng.integers(0, 60, n), "item_id": rng.integers(0, 40, n), "timestamp": rng.integers(0, 10**5, n)}
    )
    ds = sd.prepare(df, k_core=3)
    tw = TrainWindows(ds, length=8, batch_size=32, seed=3)
    seen_pairs = 0
    for users, win in tw.epoch(0):
        for u, w in zip(users, win):
            hist = ds.history(int(u)).tolist()
            real = [x for x in w.tolist() if x]
            # Each window is a contiguous piece of the training prefix.
            assert any(hist[i : i + len(real)] == real for i in range(len(hist) - len(real) + 1))
            seen_pairs += max(0, len(real) - 1)
    assert seen_pairs == int(np.maximum(ds.train_end - 1, 0).sum())
    ei = eval_inputs(ds, "test", 10)
    for j in range(len(ei)):
        u, p = int(ei.users[j]), int(ei.positions[j])
        log = ds.items[ds.offsets[u] : ds.offsets[u + 1]]
        assert ei.targets[j] == log[p]
        assert [x for x in ei.windows[j] if x] == log[:p][-10:].tolist()
        # Test targets are at or after the threshold; training stops before the validation one.
        assert ds.timestamps[ds.offsets[u] + p] >= ds.stats["test_threshold"]
        assert ds.train_end[u] <= p


def test_save_load_round_trip(tmp_path):
    df = pl.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2, 2],
            "item_id": [5, 6, 5, 6, 5, 6],
            "timestamp": [1, 2, 3, 4, 5, 6],
            "rating": [1.0, 2, 3, 4, 5, 4],
        }
    )
    ds = sd.prepare(df, k_core=None, split=SplitConfig(valid="last_item", quantile=0.5))
    out = ds.save(tmp_path / "ds")
    back = sd.PreparedDataset.load(out)
    for attr in ("offsets", "items", "timestamps", "ratings", "train_end"):
        np.testing.assert_array_equal(getattr(back, attr), getattr(ds, attr))
    for part in ("valid", "test"):
        for a, b in zip(back.targets(part), ds.targets(part)):
            np.testing.assert_array_equal(a, b)
    assert back.item_ids.to_list() == ds.item_ids.to_list()
    assert json.loads((out / "manifest.json").read_text())["split"]["valid"] == "last_item"
    ds.save(out)  # overwriting an existing folder is atomic too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_errors_name_file_column_and_value(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text("u,i,t\n1,2,2020-01-01\n1,3,notadate\n")
    with pytest.raises(DataError, match=r"log\.csv.*'t'.*'notadate'.*row 1"):
        read_interactions(p, {"user_id": "u", "item_id": "i", "timestamp": "t"})
    p.write_text("u,i,t\n1,,5\n")
    with pytest.raises(DataError, match=r"log\.csv.*'i'.*null at row 0"):
        read_interactions(p, {"user_id": "u", "item_id": "i", "timestamp": "t"})
    with pytest.raises(DataError, match=r"log\.csv.*missing column 'user'"):
        read_interactions(p, {"user_id": "user", "item_id": "i", "timestamp": "t"})
    with pytest.raises(DataError, match="quantile must be in"):
        SplitConfig(quantile=1.0)
    with pytest.raises(DataError, match="empty"):
        sd.prepare(
            pl.DataFrame(
                {"user_id": [], "item_id": [], "timestamp": []},
                schema={"user_id": pl.Int64, "item_id": pl.Int64, "timestamp": pl.Int64},
            )
        )


@pytest.mark.parametrize(
    ("name", "body", "message"),
    [
        ("log.jsonl.gz", b'{"u": 1, "i": 2, "t": 3}\n{"u": 1, "i": 3, "t": 4\n', r"line 2 is not valid JSON"),
        ("log.jsonl.gz", b'{"u": 1, "i": 2, "t": 3}\n[1, 2, 3]\n', r"line 2 is not a JSON object"),
        ("log.csv.gz", b"u,i,t\n1,2,3\n1,\xff\xfe,4\n", r"invalid UTF-8 at line 3 \(byte 14\)"),
        ("log.csv.gz", b"u,i,t\n1,2,3\n1,3,4,5,6\n", r"row 1 has 5 fields; the header has 3"),
    ],
)
def test_a_sound_gzip_with_bad_text_is_explained_by_its_decompressed_lines(tmp_path, name, body, message):
    # The explanation reads what the parser read: the decompressed text, not the gzip bytes.
    p = tmp_path / name
    p.write_bytes(gzip.compress(body))
    with pytest.raises(DataError, match=rf"{name}: cannot read as .*{message}"):
        read_interactions(p, {"user_id": "u", "item_id": "i", "timestamp": "t"})


@pytest.mark.parametrize("zone", ["+05:30", "+0530", "-03:00", "+05", "Z"])
def test_parquet_times_with_a_fixed_offset_zone_are_read_as_their_instants(tmp_path, zone):
    # pandas writes offset-aware datetimes with a fixed-offset zone, which polars refuses to
    # parse (it panicked: "unable to parse time zone"); parquet stores the UTC instants.
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    n = 400
    instants = rng.integers(1_500_000_000, 1_600_000_000, n) * 1_000_000  # microseconds since the epoch
    users, items = rng.integers(0, 20, n), rng.integers(0, 15, n)
    table = pa.table(
        {
            "user_id": users,
            "item_id": items,
            "timestamp": pa.array(instants, type=pa.timestamp("us", tz=zone)),
            "note": pa.array(instants, type=pa.timestamp("us", tz="Mars/Olympus")),  # not read
        }
    )
    path = tmp_path / "events.parquet"
    pq.write_table(table, path)
    seconds = pl.DataFrame({"user_id": users, "item_id": items, "timestamp": instants // 1_000_000})
    got = read_interactions(path)
    assert got.select(["user_id", "item_id", "timestamp"]).equals(seconds)
    want = sd.prepare(seconds, k_core=2, split=SplitConfig(valid="none"))
    for ds in (
        sd.prepare(path, k_core=2, split=SplitConfig(valid="none")),
        sd.prepare(got, k_core=2, split=SplitConfig(valid="none")),
    ):
        for attr in ("offsets", "items", "timestamps", "train_end"):
            np.testing.assert_array_equal(getattr(ds, attr), getattr(want, attr))


def test_parquet_times_in_a_zone_polars_does_not_know_name_the_column_and_zone(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {"user_id": [1, 1], "item_id": [1, 2], "when": pa.array([0, 10**6], type=pa.timestamp("us", tz="Mars/Olympus"))}
    )
    path = tmp_path / "events.parquet"
    pq.write_table(table, path)
    message = f"{path}: column 'when' holds times in the time zone 'Mars/Olympus', which polars does not know"
    for read in (
        lambda: read_interactions(path, {"timestamp": "when"}),
        lambda: sd.prepare(path, columns={"timestamp": "when"}, k_core=1),
    ):
        with pytest.raises(DataError, match=re.escape(message)):
            read()


def test_a_table_of_another_library_is_named_with_its_conversion():
    import pandas as pd
    import pyarrow as pa

    cols = {"user_id": [1, 1], "item_id": [1, 2], "timestamp": [1, 2]}
    for table, said in (
        (pd.DataFrame(cols), "got a pandas.DataFrame (convert it with polars.from_pandas(df))"),
        (pa.table(cols), "got a pyarrow.Table (convert it with polars.from_arrow(table))"),
        (None, "got None"),
    ):
        with pytest.raises(DataError, match=re.escape(f"expected a polars DataFrame of interactions, {said}")):
            sd.prepare(table, k_core=1)


@pytest.mark.parametrize(
    ("values", "want"),
    [
        (["13/04/2021", "01/02/2021"], ["2021-04-13 00:00", "2021-02-01 00:00"]),  # a day above 12: day-first
        (["04/13/2021", "01/02/2021"], ["2021-04-13 00:00", "2021-01-02 00:00"]),  # a month-first column
        (["03/04/2021 10:00", "12/25/2021 11:30"], ["2021-03-04 10:00", "2021-12-25 11:30"]),
        (["05-05-2021", "07-07-2021"], ["2021-05-05 00:00", "2021-07-07 00:00"]),  # both orders read alike
        (["03/04/2021", "05/06/2021"], "row 0: '03/04/2021'"),
        (["01.01.2021 10:00:00", "01.01.2021 10:00:00", "02.03.2021 00:00:00"], "row 2: '02.03.2021 00:00:00'"),
    ],
)
def test_numeric_dates_are_read_in_the_one_order_that_fits_or_refused_when_both_do(values, want):
    # polars' inference read "03/04/2021" day-first, and one more row "12/25/2021" flipped every
    # row to month-first: an ambiguous column is refused, an unambiguous one read in its order.
    df = pl.DataFrame({"user_id": [1] * len(values), "item_id": list(range(len(values))), "timestamp": values})
    if isinstance(want, str):
        with pytest.raises(DataError, match=re.escape(f"read as day-month and as month-day alike ({want})")):
            normalize_interactions(df)
        return
    got = normalize_interactions(df).get_column("timestamp")
    assert got.to_list() == [int(pl.Series([w]).str.to_datetime("%Y-%m-%d %H:%M").dt.epoch("s")[0]) for w in want]


def test_read_interactions_parses_dates_and_formats(tmp_path):
    p = tmp_path / "log.tsv"
    p.write_text("user\titem\twhen\tscore\na\tx\t2021-03-04\t4\nb\ty\t2021-03-05 10:00:00\t5\n")
    df = read_interactions(p, {"user_id": "user", "item_id": "item", "timestamp": "when", "rating": "score"})
    assert df.columns == ["user_id", "item_id", "timestamp", "rating"]
    assert df.get_column("timestamp").to_list() == [1614816000, 1614938400]
    assert df.schema["rating"] == pl.Float32
    pq = tmp_path / "log.parquet"
    df.write_parquet(pq)
    assert read_interactions(pq).equals(df)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 9), st.integers(0, 9), st.integers(0, 30), st.floats(0, 5)), min_size=1, max_size=120
    ),
    st.lists(st.integers(1, 40), min_size=1, max_size=6),
    st.sampled_from(["int", "str"]),
)
def test_chunked_columns_give_the_same_dataset(rows, cuts, id_kind):
    """polars hands a column read from parquet as many chunks; the core reads them in place and
    must give exactly what one contiguous column gives."""
    ids = (lambda x: x) if id_kind == "int" else (lambda x: f"u{x}")
    df = pl.DataFrame(
        {
            "user_id": [ids(r[0]) for r in rows],
            "item_id": [r[1] for r in rows],
            "timestamp": [r[2] for r in rows],
            "rating": [r[3] for r in rows],
        },
        schema_overrides={"rating": pl.Float32},
    )
    pieces, at = [], 0
    for c in cuts:
        if at >= df.height:
            break
        pieces.append(df.slice(at, c))
        at += c
    if at < df.height:
        pieces.append(df.slice(at))
    chunked = pl.concat(pieces, rechunk=False)
    # polars may merge pieces it finds identical (2.1 does for two equal one-row frames): such an
    # example is not a chunked column, so it is not this test's case.
    assume(chunked.n_chunks("all")[2] == len(pieces))
    split = SplitConfig(valid="last_item", quantile=0.5)
    try:
        want = sd.prepare(df.rechunk(), k_core=2, split=split)
    except DataError as e:
        with pytest.raises(DataError, match=re.escape(str(e))):
            sd.prepare(chunked, k_core=2, split=split)
        return
    got = sd.prepare(chunked, k_core=2, split=split)
    for attr in ("offsets", "items", "timestamps", "ratings", "train_end"):
        np.testing.assert_array_equal(getattr(got, attr), getattr(want, attr))
    for part in ("valid", "test"):
        for a, b in zip(got.targets(part), want.targets(part)):
            np.testing.assert_array_equal(a, b)
    assert got.user_ids.to_list() == want.user_ids.to_list()
    assert got.item_ids.to_list() == want.item_ids.to_list()


# ------------------------------------------------------------------------- bad arguments of the API
TINY = {"user_id": [1, 1, 2, 2], "item_id": [1, 2, 1, 2], "timestamp": [1, 2, 3, 4]}
LOO = SplitConfig(kind="leave_one_out")


@pytest.mark.parametrize("threshold", [10**400, -(10**400)], ids=["1e400", "-1e400"])
def test_a_threshold_no_float_holds_is_refused_naming_the_field(threshold):
    """``math.isfinite(10**400)`` raises OverflowError: the package's own error instead."""
    with pytest.raises(
        DataError, match=r"^split threshold must be a finite number \(a timestamp\) or None, got -?1000"
    ):
        SplitConfig(threshold=threshold)
    with pytest.raises(ConfigError, match=r"^SplitConfig\.threshold: expected a finite number or None, got -?1000"):
        SplitConfig.from_dict({"threshold": threshold})
    assert SplitConfig(threshold=10**300).threshold == 10**300  # large, but a float holds it


def test_the_dataset_name_must_be_a_string_load_reads_back(tmp_path):
    df = pl.DataFrame(TINY)
    for bad in (123, 0, b"toy", ["toy"]):
        with pytest.raises(DataError, match=rf"^prepare: name must be a string, got .* \({type(bad).__name__}\)$"):
            sd.prepare(df, k_core=None, split=LOO, name=bad)
    with pytest.raises(DataError, match=r"^prepare: RawDataset\.name must be a string, got 123 \(int\)$"):
        sd.prepare(sd.RawDataset(123, df), k_core=None, split=LOO)
    # load takes any string back: prepare gives exactly those
    ds = sd.prepare(df, k_core=None, split=LOO, name="my log/2024\n")
    assert sd.PreparedDataset.load(ds.save(tmp_path / "d")).name == "my log/2024\n"
    assert sd.prepare(df, k_core=None, split=LOO, name="").name == "dataset"  # empty: the default, as before


def test_the_domain_must_be_one_of_the_domains():
    df = pl.DataFrame(TINY)
    with pytest.raises(DataError, match=r"^dataset: prepare: domain must be one of \('products', .*\), got 'bogus'$"):
        sd.prepare(df, k_core=None, split=LOO, domain="bogus")
    with pytest.raises(DataError, match=r"^toy: prepare: domain must be one of .*, got 'Movies'$"):
        sd.prepare(sd.RawDataset("toy", df, domain="movies"), k_core=None, split=LOO, domain="Movies")
    with pytest.raises(DataError, match=r"^prepare: domain must be a string, got 7 \(int\)$"):
        sd.prepare(df, k_core=None, split=LOO, domain=7)
    assert sd.prepare(df, k_core=None, split=LOO, domain="sessions").domain == "sessions"


def test_metadata_ids_match_the_log_ids_exactly():
    """'01' is not item 1 (the id policy: '01' and '1' are two ids); '2' is item 2 (the text of
    the integer 2, as `seqdistill prepare --items` matches it); an integer is a string log's id
    written in decimal."""
    df = pl.DataFrame(TINY)
    meta = pl.DataFrame({"item_id": ["01", "2"], "title": ["zero-one", "two"]})
    ds = sd.prepare(df, meta, k_core=None, split=LOO)
    assert ds.item_meta.rows() == [(1, 1, None), (2, 2, "two")]
    for odd in (["01", "+2"], ["1.0", " 02"]):
        with pytest.raises(DataError, match=r"^dataset: the item metadata matches none of the log's 2 items"):
            sd.prepare(df, pl.DataFrame({"item_id": odd}), k_core=None, split=LOO)
    text_log = df.with_columns(pl.col("item_id").cast(pl.String))
    ds = sd.prepare(text_log, pl.DataFrame({"item_id": [2, 7], "title": ["two", "seven"]}), k_core=None, split=LOO)
    assert ds.item_meta.rows() == [(1, "1", None), (2, "2", "two")]
    ds = sd.prepare(df, pl.DataFrame({"item_id": [2.0, 1.0], "title": ["two", "one"]}), k_core=None, split=LOO)
    assert ds.item_meta.rows() == [(1, 1, "one"), (2, 2, "two")]


@pytest.mark.parametrize(
    "ids, message",
    [
        ([1.0, float("nan")], r"column 'item_id' has id nan at row 1; float ids must be finite whole numbers"),
        ([1.0, 2.5], r"column 'item_id' has id 2\.5 at row 1; float ids must be finite whole numbers"),
        ([2, None], r"column 'item_id' is null at row 1"),
        (["1", "nan"], r"column 'item_id' has the NaN-like id 'nan' at row 1"),
        (["1", ""], r"column 'item_id' has an empty id at row 1"),
        (["2", " 2"], r"column 'item_id' has the duplicated id '2' at rows 0 and 1"),
    ],
)
def test_bad_metadata_ids_are_refused_naming_the_row(ids, message):
    meta = pl.DataFrame({"item_id": ids, "t": ["a", "b"]}, strict=False)
    with pytest.raises(DataError, match=rf"^dataset: item metadata: {message}"):
        sd.prepare(pl.DataFrame(TINY), meta, k_core=None, split=LOO)


def test_a_manifest_number_no_float_holds_is_a_data_error(tmp_path):
    """JSON holds any integer; ``math.isfinite`` on one beyond a float's range raises OverflowError."""
    out = sd.prepare(pl.DataFrame(TINY), k_core=None, split=SplitConfig(quantile=0.5, valid="none")).save(
        tmp_path / "d"
    )
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["audit"]["test_cutoff"] = 10**400
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"manifest\.json.*test_cutoff: expected a finite number or null, got 1000"):
        sd.PreparedDataset.load(out)
