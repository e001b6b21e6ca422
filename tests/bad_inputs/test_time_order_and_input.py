"""Fourth bad-input campaign on reading interactions: sub-second timestamps (stored as whole
seconds, yet a user's rows within one second must come out in order of the full time), a
``--timestamp-format`` that gives no date, a damaged or truncated ``.csv.gz``, and C1 control
characters or line/paragraph separators inside an id. Orders are checked against a plain-Python
reference (each user's events sorted by the full-precision time, stably)."""

from __future__ import annotations

import errno
import gzip
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import seqdistill
from seqdistill.data import DataError, PreparedDataset, SplitConfig, normalize_interactions, read_interactions
from seqdistill.data.interactions import read_items

from ._campaign2 import accepted

H = "user_id,item_id,timestamp\n"
LOO = SplitConfig(kind="leave_one_out")
EPOCH = datetime(1970, 1, 1)


# ------------------------------------------------------------------------ sub-second timestamps
def micros(t: datetime) -> int:
    """Epoch microseconds of a naive UTC datetime, exactly (integer arithmetic)."""
    return (t - EPOCH) // timedelta(microseconds=1)


def reference_logs(rows: list[tuple[str, str, int]]) -> dict[str, list[tuple[str, int]]]:
    """Each user's (item, whole seconds) in order of the full time (microseconds), stable."""
    by_user: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for user, item, us in sorted(rows, key=lambda r: (r[0], r[2])):  # sorted() is stable
        by_user[user].append((item, us // 10**6))  # floor: 07.300 before 1970 is second -1
    return dict(by_user)


def logs_of(ds: PreparedDataset) -> dict[str, list[tuple[str, int]]]:
    items = ds.item_ids.to_list()
    out = {}
    for k, user in enumerate(ds.user_ids.to_list()):
        a, b = int(ds.offsets[k]), int(ds.offsets[k + 1])
        out[str(user)] = [(items[i], int(t)) for i, t in zip(ds.items[a:b].tolist(), ds.timestamps[a:b].tolist())]
    return out


def reference_table_order(rows: list[tuple[str, str, int]]) -> list[str]:
    """The items of the table as ``read_interactions`` returns it: the rows of one user and one
    whole second trade places among themselves, in order of the full time (stably); every other
    row keeps its place."""
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    for r, (user, _, us) in enumerate(rows):
        groups[(user, us // 10**6)].append(r)
    out = [""] * len(rows)
    for places in groups.values():
        for place, r in zip(places, sorted(places, key=lambda r: rows[r][2])):
            out[place] = rows[r][1]
    return out


BASES = [datetime(2021, 1, 1, 0, 0, 7), datetime(1969, 12, 31, 23, 59, 58)]
# Offsets in 0.1 s steps over three seconds: many rows share a second, some the full time.
event = st.tuples(st.sampled_from(["u", "v", "w"]), st.integers(0, 30))


def log_rows(base: datetime, events: list[tuple[str, int]], step_us: int) -> list[tuple[str, str, int]]:
    """(user, item, epoch microseconds); every row its own item, and a user ``z`` with three
    whole-second rows so that leave-one-out has a training part."""
    rows = [(u, f"i{r}", micros(base) + k * step_us) for r, (u, k) in enumerate(events)]
    rows += [("z", f"z{k}", micros(base) + 10**6 * (100 + k)) for k in range(3)]
    return rows


@pytest.mark.parametrize("seed", range(4))
def test_a_larger_shuffled_log_keeps_every_other_row_in_place(seed: int) -> None:
    """Thousands of rows over many users and seconds (rows share seconds across users far more
    often than within one; the search for the rows that move narrows by time, then by a hash of
    user and second): the table order and each user's log against the references."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = 3000
    users = [f"u{x}" for x in rng.integers(0, 40, n)]
    us = (micros(BASES[seed % 2]) + rng.integers(0, 200, n) * 10**6 + rng.integers(0, 4, n) * 250_000).tolist()
    rows = [(u, f"i{r}", t) for r, (u, t) in enumerate(zip(users, us))]
    df = pl.DataFrame(
        {
            "user_id": users,
            "item_id": [i for _, i, _ in rows],
            "timestamp": pl.Series(us).cast(pl.Datetime("us")),
        }
    )
    assert normalize_interactions(df)["item_id"].to_list() == reference_table_order(rows)
    ds = seqdistill.prepare(df, k_core=None, split=LOO)
    assert logs_of(ds) == reference_logs(rows)


@settings(max_examples=40, deadline=None)
@given(
    base=st.sampled_from(BASES),
    events=st.lists(event, min_size=1, max_size=25),
    unit=st.sampled_from(["ms", "us", "ns"]),
)
def test_datetime_column_orders_each_users_rows_by_the_full_time(base, events, unit):
    rows = log_rows(base, events, 100_000)
    df = pl.DataFrame(
        {
            "user_id": [u for u, _, _ in rows],
            "item_id": [i for _, i, _ in rows],
            "timestamp": pl.Series([us for _, _, us in rows]).cast(pl.Datetime("us")).cast(pl.Datetime(unit)),
        }
    )
    ds = seqdistill.prepare(df, k_core=None, split=LOO)
    assert logs_of(ds) == reference_logs(rows)
    out = normalize_interactions(df)
    assert out["item_id"].to_list() == reference_table_order(rows)
    by_item = {i: us // 10**6 for _, i, us in rows}
    assert out["timestamp"].to_list() == [by_item[i] for i in out["item_id"].to_list()]


@settings(max_examples=25, deadline=None)
@given(
    base=st.sampled_from(BASES),
    events=st.lists(event, min_size=1, max_size=25),
    digits=st.sampled_from([1, 3, 6]),
)
def test_csv_text_orders_each_users_rows_by_the_full_time(tmp_path_factory, base, events, digits):
    rows = log_rows(base, events, 100_000)

    def text(us: int) -> str:
        t = EPOCH + timedelta(microseconds=us)
        return t.strftime("%Y-%m-%d %H:%M:%S.%f")[: 20 + digits]

    path = tmp_path_factory.mktemp("sub") / "log.csv"
    path.write_text(H + "".join(f"{u},{i},{text(us)}\n" for u, i, us in rows))
    df = read_interactions(path)
    assert df["item_id"].to_list() == reference_table_order(rows)
    by_item = {i: us // 10**6 for _, i, us in rows}
    assert df["timestamp"].to_list() == [by_item[i] for i in df["item_id"].to_list()]
    assert logs_of(seqdistill.prepare(df, k_core=None, split=LOO)) == reference_logs(rows)


def test_the_reported_case_through_the_command_line(ws: Path, run) -> None:
    """Two rows of one user at 00:00:07.700 and 00:00:07.300, in that order in the file."""
    (ws / "sub.csv").write_text(
        H + "u,a,2021-01-01 00:00:07.700\nu,b,2021-01-01 00:00:07.300\nu,c,2021-01-01 00:00:05\n"
        "v,a,2021-01-01 00:00:07.900\nv,b,2021-01-01 00:00:07.900\nv,c,2021-01-01 00:00:07.100\n"
    )
    accepted(ws, run, "prepare", "sub.csv", "--out", "out", "--k-core", "1", "--split", "leave_one_out")
    ds = PreparedDataset.load(ws / "out")
    t0 = 1609459200  # 2021-01-01 00:00:00 UTC
    assert logs_of(ds) == {
        "u": [("c", t0 + 5), ("b", t0 + 7), ("a", t0 + 7)],
        "v": [("c", t0 + 7), ("a", t0 + 7), ("b", t0 + 7)],  # a and b tie at full precision: file order
    }


def test_a_zoned_datetime_column_is_ordered_in_its_own_unit() -> None:
    berlin = [datetime(2021, 6, 1, 12, 0, 7, us) for us in (700_000, 300_000, 0, 300_001)]
    df = pl.DataFrame(
        {
            "user_id": ["u", "u", "u", "u"],
            "item_id": ["a", "b", "c", "d"],
            "timestamp": pl.Series(berlin).dt.replace_time_zone("Europe/Berlin"),
        }
    )
    ds = seqdistill.prepare(df, k_core=None, split=LOO)
    t = int(datetime(2021, 6, 1, 10, 0, 7, tzinfo=UTC).timestamp())  # 12:00 in Berlin is 10:00 UTC
    assert logs_of(ds) == {"u": [("c", t), ("b", t), ("d", t), ("a", t)]}


def test_without_sub_second_parts_nothing_moves() -> None:
    """Whole seconds, out of order in the table: the table comes back in its own order (the core
    orders by seconds, equal seconds in table order)."""
    stamps = [datetime(2021, 1, 1, 0, 0, s) for s in (9, 7, 7, 8)]
    df = pl.DataFrame({"user_id": ["u", "u", "u", "u"], "item_id": ["a", "b", "c", "d"], "timestamp": stamps})
    out = normalize_interactions(df)
    assert out["item_id"].to_list() == ["a", "b", "c", "d"]
    assert out["timestamp"].to_list() == [1609459209, 1609459207, 1609459207, 1609459208]


def test_rows_named_in_messages_are_the_files_rows(tmp_path: Path) -> None:
    """Rows that would trade places (0 and 1) come before a bad rating at row 1: the message
    names the file's row 1 and its value."""
    path = tmp_path / "log.csv"
    path.write_text(
        "user_id,item_id,timestamp,rating\n"
        "u,a,2021-01-01 00:00:07.700,1\nu,b,2021-01-01 00:00:07.300,five\nu,c,2021-01-01 00:00:07.500,2\n"
    )
    with pytest.raises(DataError, match=r"log\.csv: column 'rating' has non-numeric value 'five' at row 1"):
        read_interactions(path)


# ------------------------------------------------------------------ a timestamp format without a date
NO_DATE = ["%H:%M", "x", "%H:%M:%S%.f", "%T", "%d.%m", "%m/%d %H:%M", "%%Y-%m-%d", "%j"]


@pytest.mark.parametrize("fmt", NO_DATE)
def test_a_format_without_a_date_is_refused(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "log.csv"
    path.write_text(H + "u,a,10:30\nu,b,x\n")
    want = re.escape(f"log.csv: timestamp_format (--timestamp-format) {fmt!r} gives no date")
    with pytest.raises(DataError, match=want) as e:
        read_interactions(path, timestamp_format=fmt)
    assert "\n" not in str(e.value)
    df = pl.DataFrame({"user_id": ["u"], "item_id": ["a"], "timestamp": ["10:30"]})
    with pytest.raises(DataError, match=r"^mine: timestamp_format \(--timestamp-format\)"):
        normalize_interactions(df, source="mine", timestamp_format=fmt)


def test_the_command_line_names_the_flag_and_the_format(ws: Path, refused) -> None:
    (ws / "clock.csv").write_text(H + "u,a,10:30\nu,b,10:31\n")
    refused(
        "prepare", "clock.csv", "--out", "out", "--timestamp-format", "%H:%M",
        names=("clock.csv", "--timestamp-format", "'%H:%M'", "no date"),
    )  # fmt: skip


@pytest.mark.parametrize(
    "fmt, value, seconds",
    [
        ("%Y-%m-%d %H:%M", "2021-01-02 03:04", 1609545600 + 3 * 3600 + 4 * 60),
        ("%s", "1600000000", 1600000000),
        ("%F", "2021-01-02", 1609545600),
        ("%d/%m/%y", "02/01/21", 1609545600),
        ("%-d.%-m.%Y", "2.1.2021", 1609545600),
        ("%Y%m%d", "20210102", 1609545600),
        ("%Y-%m", "2021-01", 1609459200),  # a month: day 1
        ("%b %d %Y %%", "Jan 02 2021 %", 1609545600),
    ],
)
def test_formats_with_a_date_still_read(tmp_path: Path, fmt: str, value: str, seconds: int) -> None:
    path = tmp_path / "log.csv"
    path.write_text(H + f"u,a,{value}\n")
    assert read_interactions(path, timestamp_format=fmt)["timestamp"].to_list() == [seconds]


# ------------------------------------------------------------------------ a damaged .csv.gz
BODY = b"user_id,item_id,timestamp\n" + b"u,a,1\n" * 500


def test_a_truncated_gzip_is_a_data_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.csv.gz"
    path.write_bytes(gzip.compress(BODY)[:-30])
    with pytest.raises(DataError) as e:
        read_interactions(path)
    assert str(e.value) == f"{path}: cannot read as CSV: damaged or truncated gzip (unexpected end of file)"
    with pytest.raises(DataError, match=r"a\.csv\.gz: cannot read as CSV: damaged or truncated gzip"):
        read_items(path, "item_id")


@pytest.mark.parametrize(
    "name, damage, reason",
    [
        ("t.tsv.gz", lambda z: z[: len(z) // 2], "unexpected end of file"),
        ("crc.csv.gz", lambda z: z[:-8] + b"\0\0\0\0" + z[-4:], "checksum"),
        ("mid.csv.gz", lambda z: z[:20] + b"\xff" * 10 + z[30:], "corrupt deflate stream"),
        ("l.jsonl.gz", lambda z: z[:-30], "Compressed file ended"),
    ],
)
def test_other_damaged_gzips(tmp_path: Path, name, damage, reason) -> None:
    body = BODY.replace(b",", b"\t") if name.endswith(".tsv.gz") else BODY
    if name.endswith(".jsonl.gz"):
        body = b'{"user_id": "u", "item_id": "a", "timestamp": 1}\n' * 300
    (tmp_path / name).write_bytes(damage(gzip.compress(body)))
    with pytest.raises(
        DataError, match=rf"{re.escape(name)}: cannot read as .*: damaged or truncated gzip \(.*{reason}"
    ):
        read_interactions(tmp_path / name)


def test_the_command_line_names_the_damaged_gzip(ws: Path, refused) -> None:
    (ws / "a.csv.gz").write_bytes(gzip.compress(BODY)[:-30])
    refused("prepare", "a.csv.gz", "--out", "out", names=("a.csv.gz", "damaged or truncated gzip"))


@pytest.mark.parametrize(
    "raised",
    [
        PermissionError(errno.EACCES, "Permission denied"),
        OSError(errno.EIO, "Input/output error"),
        PermissionError("Permission denied (os error 13)"),  # polars' own: the class says it
    ],
    ids=["eacces", "eio", "polars-permission"],
)
def test_real_os_errors_are_not_taken_for_damage(tmp_path: Path, monkeypatch, raised) -> None:
    """A damaged gzip is only blamed for a bare OSError it really explains; an OS error keeps
    its class and errno (the command line reports those as the OS problem, naming the path)."""
    path = tmp_path / "a.csv.gz"
    path.write_bytes(gzip.compress(BODY)[:-30])

    def read_csv(*args, **kwargs):
        raise raised

    monkeypatch.setattr(pl, "read_csv", read_csv)
    with pytest.raises(type(raised)) as e:
        read_interactions(path)
    assert e.value is raised


def test_a_bare_os_error_on_a_sound_gzip_propagates(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "a.csv.gz"
    path.write_bytes(gzip.compress(BODY))
    raised = OSError("unexpected end of file")

    def read_csv(*args, **kwargs):
        raise raised

    monkeypatch.setattr(pl, "read_csv", read_csv)
    with pytest.raises(OSError) as e:
        read_interactions(path)
    assert e.value is raised


# ------------------------------------------------------------ C1 controls and separators in ids
@pytest.mark.parametrize(
    "bad, words",
    [
        ("u\u0085v", ["control character"]),
        ("\u0080", ["control character"]),
        ("a\u009fb", ["control character"]),
        ("a\u2028b", ["line separator U+2028", "line break"]),
        ("a\u2029b", ["paragraph separator U+2029", "line break"]),
    ],
)
def test_c1_controls_and_separators_inside_an_id_are_refused(tmp_path: Path, bad: str, words: list[str]) -> None:
    path = tmp_path / "log.csv"
    path.write_text(H + f"u,a,1\nu,{bad},2\nv,a,3\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        read_interactions(path)
    message = str(e.value)
    for want in [f"{path}: column 'item_id'", f"id {bad!r} at row 1", *words]:
        assert want in message, (want, message)
    df = pl.DataFrame({"user_id": ["u", "v", bad], "item_id": ["a", "a", "b"], "timestamp": [1, 2, 3]})
    with pytest.raises(DataError, match=rf"^log: column 'user_id' has the id {re.escape(repr(bad))} at row 2"):
        seqdistill.prepare(df, name="log", k_core=None)


def test_the_command_line_refuses_a_nel_inside_an_id(ws: Path, refused) -> None:
    (ws / "nel.csv").write_text(H + "1,10,1\nu\u0085v,11,2\n", encoding="utf-8")
    refused("prepare", "nel.csv", "--out", "out", names=("nel.csv", "'user_id'", "row 1", "control character"))


def test_unicode_whitespace_around_an_id_is_still_stripped(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(H + "\u0085u,a,1\nu\u2028,b,2\n\u2029u\u0085,c,3\nu,d,4\n", encoding="utf-8")
    assert read_interactions(path)["user_id"].to_list() == ["u", "u", "u", "u"]


@pytest.mark.parametrize(
    "value, kind",
    [
        ("u\u0085v", "control character"),
        ("b\u0085", "whitespace around it"),
        ("\u0080", "control character"),
        ("a\tb", "control character"),
        ("a\u2028b", "line or paragraph separator"),
        ("\u2029", "empty id"),
        ("x\u200by", "invisible format character"),
        ("x\u200b\u2028y", "invisible format character"),  # as in memory: Cf before separators
    ],
)
def test_the_spark_engine_says_what_memory_says(value: str, kind: str) -> None:
    """``_why`` (Python, no Spark needed) names the same problem as the in-memory check for the
    ids its Java patterns flag (the patterns themselves run in tests/test_spark.py)."""
    from seqdistill.spark._input import _why

    assert kind in _why(value)
