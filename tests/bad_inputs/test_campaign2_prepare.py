"""Third campaign, ``seqdistill prepare``: files the earlier rounds did not try (binary files
under a text name, line ends, quotes, invisible characters, timestamps beyond int64, JSON that
Python reads and polars does not, parquet row groups), inputs that are not regular files, and
output folders reached in odd ways. Each refused case asserts exit 2, one line naming the file,
column, row or value, and an unchanged workspace; each accepted case checks the result against
a plain-Python reading of the same file."""

from __future__ import annotations

import builtins
import errno
import gzip
import io
import json
import os
import zipfile
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from ._campaign2 import accepted

H = "user_id,item_id,timestamp\n"
OK = "1,10,1\n1,11,2\n2,10,3\n2,11,4\n"
HR = "user_id,item_id,timestamp,rating\n"


def pq(row_group_size: int | None = None, **cols: object) -> Callable[[Path], None]:
    return lambda p: pl.DataFrame(cols, strict=False).write_parquet(p, row_group_size=row_group_size)


def zipped(p: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("log.csv", H + OK)
    p.write_bytes(buf.getvalue())


# (id, file name, content or writer, extra arguments, strings the message must name)
CASES = [
    # -- text files that are not what their name says
    ("csv-is-gzip", "bad.csv", gzip.compress((H + OK).encode()), [], ["bad.csv", "gzip", ".csv.gz"]),
    ("csv-is-zip", "bad.csv", zipped, [], ["bad.csv", "zip"]),
    ("csv-is-utf16", "bad.csv", (H + OK).encode("utf-16"), [], ["bad.csv", "UTF-16"]),
    ("csv-cr-line-ends", "bad.csv", (H + OK).replace("\n", "\r"), [], ["bad.csv", "CR"]),
    ("csv-only-blank-lines", "bad.csv", "\n\n\n", [], ["bad.csv", "empty"]),
    # -- headers
    ("csv-no-header", "bad.csv", OK, [], ["bad.csv", "missing column 'user_id'", "header"]),
    (
        "csv-bom-then-duplicate-column",
        "bad.csv",
        "\ufeffuser_id,user_id,item_id,timestamp\n1,1,10,1\n",
        [],
        ["bad.csv", "column 'user_id' 2 times"],
    ),
    (
        "csv-header-other-case",
        "bad.csv",
        "User_Id,item_id,timestamp\n" + OK,
        [],
        ["missing column 'user_id'", "'User_Id'"],
    ),
    ("csv-header-empty-name", "bad.csv", "user_id,,timestamp\n1,10,1\n", [], ["missing column 'item_id'", "''"]),
    # -- quotes
    ("csv-unclosed-quote", "bad.csv", H + '1,10,1\n1,"11,2\n2,10,3\n', [], ["bad.csv", "quote", "line 3"]),
    (
        "csv-newline-inside-quoted-id",
        "bad.csv",
        H + '1,10,1\n"1\n2",11,2\n',
        [],
        ["'user_id'", "'1\\n2'", "row 1", "control character"],
    ),
    # -- ids that look like other ids
    (
        "csv-zero-width-space-in-id",
        "bad.csv",
        H + "1,10,1\n1\u200b,11,2\n",
        [],
        ["'user_id'", "row 1", "invisible", "U+200B"],
    ),
    (
        "csv-right-to-left-mark-in-item",
        "bad.csv",
        H + "1,10,1\n1,\u200f11,2\n",
        [],
        ["'item_id'", "row 1", "invisible", "U+200F"],
    ),
    ("csv-bom-inside-id", "bad.csv", H + "1,10,1\n\ufeff2,11,2\n", [], ["'user_id'", "row 1", "U+FEFF"]),
    ("csv-nan-among-huge-ids", "bad.csv", H + f"{2**200},10,1\nNaN,11,2\n", [], ["'user_id'", "'NaN'", "row 1"]),
    # -- timestamps
    (
        "csv-time-beyond-int64",
        "bad.csv",
        H + f"1,10,{2**70}\n1,11,5\n",
        [],
        ["'timestamp'", str(2**70), "row 0", "int64"],
    ),
    (
        "csv-time-below-int64",
        "bad.csv",
        H + f"1,10,5\n1,11,-{2**64}\n",
        [],
        ["'timestamp'", f"-{2**64}", "row 1", "int64"],
    ),
    (
        "csv-time-NaT",
        "bad.csv",
        H + "1,10,NaT\n1,11,2021-01-01\n1,12,2021-01-02\n",
        [],
        ["'NaT'", "row 0", "'%Y-%m-%d'"],
    ),
    (
        "csv-time-february-29",
        "bad.csv",
        H + "1,10,2021-02-27\n1,11,2021-02-29\n1,12,2021-03-01\n",
        [],
        ["'2021-02-29'", "row 1", "'%Y-%m-%d'"],
    ),
    (
        "csv-time-zone-on-one-row",
        "bad.csv",
        H + "1,10,2021-01-01T00:00:00Z\n1,11,2021-01-02T00:00:00\n1,12,2021-01-03T00:00:00\n",
        [],
        ["'2021-01-01T00:00:00Z'", "row 0"],
    ),
    ("csv-time-inf", "bad.csv", H + "1,10,inf\n1,11,5\n", [], ["'timestamp'", "inf", "row 0"]),
    (
        "csv-time-format-bad-directive",
        "log.csv",
        None,
        ["--timestamp-format", "%Q"],
        ["'timestamp'", "'%Q'", "row 0"],
    ),
    # -- ratings
    (
        "csv-rating-beyond-float32",
        "bad.csv",
        HR + "1,10,1,4\n1,11,2,1e40\n",
        [],
        ["'rating'", "'1e40'", "row 1", "float32"],
    ),
    ("csv-rating-nan", "bad.csv", HR + "1,10,1,nan\n", [], ["'rating'", "'nan'", "row 0"]),
    ("csv-rating-decimal-comma", "bad.csv", HR + '1,10,1,"4,5"\n', [], ["'rating'", "'4,5'", "row 0"]),
    ("csv-rating-word-true", "bad.csv", HR + "1,10,1,true\n", [], ["'rating'", "'true'", "row 0"]),
    # -- parquet
    (
        "parquet-null-in-second-row-group",
        "bad.parquet",
        pq(2, user_id=[1, 1, 2, 2, None, 3], item_id=[1, 2, 1, 2, 1, 2], timestamp=list(range(6))),
        [],
        ["'user_id'", "null at row 4"],
    ),
    (
        "parquet-nan-rating-in-last-row-group",
        "bad.parquet",
        pq(
            2,
            user_id=[1, 1, 2, 2, 3],
            item_id=[1, 2, 1, 2, 1],
            timestamp=list(range(5)),
            rating=[1, 2, 3, 4, float("nan")],
        ),
        [],
        ["'rating'", "nan", "row 4"],
    ),
    (
        "parquet-duration-time",
        "bad.parquet",
        pq(user_id=[1], item_id=[1], timestamp=pl.Series([1]).cast(pl.Duration("ms"))),
        [],
        ["'timestamp'", "Duration"],
    ),
    (
        "parquet-time-of-day",
        "bad.parquet",
        pq(user_id=[1], item_id=[1], timestamp=pl.Series(["10:00:00"]).str.to_time()),
        [],
        ["'timestamp'", "Time"],
    ),
    (
        "parquet-binary-id",
        "bad.parquet",
        pq(user_id=pl.Series([b"a", b"b"]), item_id=[1, 2], timestamp=[1, 2]),
        [],
        ["'user_id'", "Binary"],
    ),
    (
        "parquet-decimal-id",
        "bad.parquet",
        pq(user_id=pl.Series([1, 2]).cast(pl.Decimal(10, 0)), item_id=[1, 2], timestamp=[1, 2]),
        [],
        ["'user_id'", "Decimal"],
    ),
    (
        "parquet-null-time",
        "bad.parquet",
        pq(user_id=[1, 1], item_id=[1, 2], timestamp=pl.Series([None, "1961-01-01"]).str.to_date()),
        [],
        ["'timestamp'", "null at row 0"],
    ),
    (
        "parquet-garbage-time-string",
        "bad.parquet",
        pq(user_id=[1, 1, 1], item_id=[1, 2, 3], timestamp=["2021-01-01", "2021-01-02", "soon"]),
        [],
        ["'timestamp'", "'soon'", "row 2"],
    ),
    ("parquet-magic-only", "bad.parquet", b"PAR1", [], ["bad.parquet", "parquet"]),
    (
        "parquet-struct-rating",
        "bad.parquet",
        pq(user_id=[1], item_id=[1], timestamp=[1], rating=[{"a": 1}]),
        [],
        ["'rating'", "Struct"],
    ),
    # -- JSON lines
    (
        "jsonl-NaN-literal",
        "bad.jsonl",
        '{"user_id":1,"item_id":2,"timestamp":1}\n{"user_id":1,"item_id":3,"timestamp":NaN}\n',
        [],
        ["bad.jsonl", "line 2", "NaN"],
    ),
    (
        "jsonl-Infinity-literal",
        "bad.jsonl",
        '{"user_id":1,"item_id":2,"timestamp":1,"rating":Infinity}\n',
        [],
        ["bad.jsonl", "line 1", "Infinity"],
    ),
    (
        "jsonl-invalid-utf8",
        "bad.jsonl",
        b'{"user_id":"a","item_id":2,"timestamp":1}\n{"user_id":"\xff","item_id":2,"timestamp":2}\n',
        [],
        ["bad.jsonl", "UTF-8", "line 2"],
    ),
    (
        "jsonl-duplicate-key",
        "bad.jsonl",
        '{"user_id":1,"item_id":2,"timestamp":1}\n{"user_id":1,"user_id":3,"item_id":2,"timestamp":2}\n',
        [],
        ["bad.jsonl", "line 2", "'user_id' twice"],
    ),
    (
        "jsonl-missing-key-on-a-later-line",
        "bad.jsonl",
        '{"user_id":1,"item_id":2,"timestamp":1}\n{"user_id":1,"timestamp":2}\n',
        [],
        ["'item_id'", "null at row 1"],
    ),
    ("jsonl-list-time", "bad.jsonl", '{"user_id":1,"item_id":2,"timestamp":[1]}\n', [], ["'timestamp'", "List"]),
    ("jsonl-bool-id", "bad.jsonl", '{"user_id":true,"item_id":2,"timestamp":1}\n', [], ["'user_id'", "Boolean"]),
    # -- paths that are not regular files
    ("folder-without-suffix", "sub", lambda p: p.mkdir(), [], ["sub", "is a folder"]),
    ("fifo", "pipe.csv", lambda p: os.mkfifo(p), [], ["pipe.csv", "not a regular file"]),
    ("symlink-loop", "loop.csv", lambda p: p.symlink_to(p), [], ["loop.csv", "symbolic link"]),
    (
        "dangling-symlink",
        "gone.csv",
        lambda p: p.symlink_to(p.with_name("nothing.csv")),
        [],
        ["gone.csv", "no such file"],
    ),
    ("character-device", "/dev/null", None, ["--timestamp-format", "%s"], ["/dev/null"]),
]


@pytest.mark.parametrize("name, content, extra, names", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_interactions_file(ws: Path, refused, name, content, extra, names) -> None:
    path = ws / name
    if callable(content):
        content(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    r = refused("prepare", name, "--out", "out", "--k-core", "1", *extra, names=tuple(names))
    assert ".sdtmp" not in r.err and "_duplicated_" not in r.err
    assert not (ws / "out").exists()


def test_unreadable_file(ws: Path, refused, monkeypatch) -> None:
    """What chmod 000 gives a user who is not root: the first open of the file is refused."""
    real = builtins.open

    def guarded(file, *a, **k):
        if str(file).endswith("secret.csv"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real(file, *a, **k)

    (ws / "secret.csv").write_text(H + OK)
    monkeypatch.setattr(builtins, "open", guarded)
    refused("prepare", "secret.csv", "--out", "out", "--k-core", "1", names=("secret.csv", "permission denied"))


def test_empty_input_path(ws: Path, refused) -> None:
    refused("prepare", "", "--out", "out", "--k-core", "1", names=("is a folder",))


# ------------------------------------------------------------------ files read as what they hold
def _read(path: Path) -> pl.DataFrame:
    from seqdistill.data import read_interactions

    return read_interactions(path)


def test_leading_zeros_in_parquet_row_groups_stay_distinct(ws: Path, run) -> None:
    """String ids split over row groups: ``'01'`` and ``'1'`` are two users, as they are two strings."""
    users = ["01", "1", "01", "1", "2", "2"]
    pq(2, user_id=users, item_id=[1, 2, 2, 1, 1, 2], timestamp=list(range(6)))(ws / "z.parquet")
    assert _read(ws / "z.parquet")["user_id"].to_list() == users
    accepted(ws, run, "prepare", "z.parquet", "--out", "out", "--k-core", "1", "--valid", "none", "--quantile", "0.5")
    from seqdistill.data import PreparedDataset

    assert sorted(PreparedDataset.load(ws / "out").user_ids.to_list()) == ["01", "1", "2"]


def test_time_zone_aware_parquet_is_utc_seconds(ws: Path) -> None:
    stamps = [datetime(2021, 1, 1, 9, tzinfo=UTC), datetime(2021, 6, 1, 23, 30, tzinfo=UTC)]
    s = pl.Series(stamps).dt.convert_time_zone("Asia/Kolkata")
    pq(user_id=[1, 1], item_id=[1, 2], timestamp=s)(ws / "tz.parquet")
    assert _read(ws / "tz.parquet")["timestamp"].to_list() == [int(t.timestamp()) for t in stamps]


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_dates_before_1970_are_negative_seconds(ws: Path, kind: str) -> None:
    days = [date(1950, 3, 1), date(1969, 12, 31), date(1901, 1, 1)]
    expected = [int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()) for d in days]
    if kind == "csv":
        (ws / "old.csv").write_text(H + "".join(f"1,{i},{d.isoformat()}\n" for i, d in enumerate(days)))
    else:
        pq(user_id=[1, 1, 1], item_id=[0, 1, 2], timestamp=days)(ws / "old.parquet")
    assert _read(ws / f"old.{kind}")["timestamp"].to_list() == expected


def test_huge_json_integer_ids_stay_exact(ws: Path) -> None:
    big = 2**70
    (ws / "big.jsonl").write_text(
        f'{{"user_id":{big},"item_id":1,"timestamp":1}}\n{{"user_id":1,"item_id":2,"timestamp":2}}\n'
    )
    assert _read(ws / "big.jsonl")["user_id"].to_list() == [str(big), "1"]


def test_a_byte_order_mark_in_json_lines_is_read(ws: Path) -> None:
    rows = [{"user_id": "a", "item_id": 1, "timestamp": 5}, {"user_id": "b", "item_id": 2, "timestamp": 6}]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (ws / "plain.jsonl").write_text(text)
    (ws / "bom.jsonl").write_text("\ufeff" + text)
    assert _read(ws / "bom.jsonl").equals(_read(ws / "plain.jsonl"))


def test_all_rows_at_one_time_is_refused_naming_the_split(ws: Path, refused) -> None:
    (ws / "flat.csv").write_text(H + "".join(f"{u},{i},7\n" for u in (1, 2, 3) for i in (10, 11)))
    refused("prepare", "flat.csv", "--out", "out", "--k-core", "1", names=("flat", "training part is empty"))


# ------------------------------------------------------------------ output folders
def test_dataset_holding_a_users_file_is_not_replaced(ws: Path, run, refused) -> None:
    """A note dropped into a prepared dataset is not seqdistill's: --overwrite must not delete it."""
    assert run("prepare", "log.csv", "--out", "out", "--k-core", "1").code == 0
    (ws / "out" / "notes.txt").write_text("mine")
    refused("prepare", "log.csv", "--out", "out", "--k-core", "2", "--overwrite", names=("out", "notes.txt"))
    assert (ws / "out" / "notes.txt").read_text() == "mine"


def test_out_in_a_folder_that_cannot_hold_one(ws: Path, refused) -> None:
    r = refused("prepare", "log.csv", "--out", "/proc/seqdistill-out", "--k-core", "1", names=("/proc/seqdistill-out",))
    assert ".sdtmp" not in r.err


def test_out_with_a_trailing_slash(ws: Path, run) -> None:
    accepted(ws, run, "prepare", "log.csv", "--out", "out/", "--k-core", "1")
    assert (ws / "out" / "manifest.json").is_file()


def test_out_below_a_link_to_a_users_folder(ws: Path, run) -> None:
    """A new folder inside the user's folder, reached through a link: made there, nothing else touched."""
    (ws / "mine").mkdir()
    (ws / "mine" / "notes.txt").write_text("mine")
    (ws / "link").symlink_to(ws / "mine")
    accepted(ws, run, "prepare", "log.csv", "--out", "link/out", "--k-core", "1", may_change=("mine/out",))
    assert sorted(p.name for p in (ws / "mine").iterdir()) == ["notes.txt", "out"]


def test_out_next_to_the_input(ws: Path, run) -> None:
    (ws / "data").mkdir()
    (ws / "log.csv").rename(ws / "data" / "log.csv")
    accepted(ws, run, "prepare", "data/log.csv", "--out", "data/out", "--k-core", "1", may_change=("data/out",))


def test_out_is_a_fifo(ws: Path, refused) -> None:
    os.mkfifo(ws / "pipe")
    refused("prepare", "log.csv", "--out", "pipe", "--k-core", "1", names=("--out pipe", "not a folder"))


def test_out_is_a_link_to_the_inputs_folder(ws: Path, refused) -> None:
    (ws / "here").symlink_to(ws)
    refused("prepare", "log.csv", "--out", "here", "--k-core", "1", "--overwrite", names=("--out here",))


# ------------------------------------------------------------------ options
OPTIONS = [
    ("k-core-items-remove-everything", ["--k-core", "1", "4"], ["nothing left after k-core", "k_item=4"]),
    ("k-core-beyond-u32", ["--k-core", str(2**40)], ["k_core", str(2**40)]),
    ("quantile-above-one-by-a-hair", ["--quantile", "1.0000001"], ["--quantile", "'1.0000001'"]),
    ("quantile-negative", ["--quantile", "-0.2"], ["--quantile", "'-0.2'"]),
    ("valid-quantile-infinite", ["--valid-quantile", "inf"], ["--valid-quantile", "'inf'"]),
    ("valid-quantile-word", ["--valid-quantile", "half"], ["--valid-quantile", "'half'"]),
    ("quantile-so-small-nothing-trains", ["--quantile", "1e-300"], ["training part is empty"]),
]


@pytest.mark.parametrize("extra, names", [c[1:] for c in OPTIONS], ids=[c[0] for c in OPTIONS])
def test_bad_option(ws: Path, refused, extra, names) -> None:
    refused(
        "prepare",
        "log.csv",
        "--out",
        "out",
        *(["--k-core", "1"] if "--k-core" not in extra else []),
        *extra,
        names=tuple(names),
    )
    assert not (ws / "out").exists()


ITEMS = [
    ("items-duplicate-header", "i.csv", "item_id,item_id\n10,11\n", ["i.csv", "column 'item_id' 2 times"]),
    ("items-jsonl-nan", "i.jsonl", '{"item_id":10}\n{"item_id":NaN}\n', ["i.jsonl", "line 2", "NaN"]),
    ("items-fifo", "i.csv", lambda p: os.mkfifo(p), ["i.csv", "not a regular file"]),
    ("items-gzip-named-csv", "i.csv", gzip.compress(b"item_id\n10\n"), ["i.csv", "gzip"]),
    ("items-bool-ids", "i.parquet", pq(item_id=[True]), ["i.parquet", "'item_id'", "Boolean"]),
    ("items-zero-width-id", "i.csv", "item_id,title\n10,a\n1\u200b1,b\n", ["i.csv", "'item_id'", "row 1", "U+200B"]),
]


@pytest.mark.parametrize("name, content, names", [c[1:] for c in ITEMS], ids=[c[0] for c in ITEMS])
def test_bad_items_file(ws: Path, refused, name, content, names) -> None:
    path = ws / name
    if callable(content):
        content(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    refused("prepare", "log.csv", "--out", "out", "--k-core", "1", "--items", name, names=tuple(names))


def test_items_file_with_an_id_on_two_rows(ws: Path, refused) -> None:
    """The log given as its own metadata: item 10 is on rows 0, 3 and 6; the file is named."""
    refused(
        "prepare",
        "log.csv",
        "--out",
        "out",
        "--k-core",
        "1",
        "--items",
        "log.csv",
        names=("log.csv", "'item_id'", "duplicated", "10", "rows 0 and 3"),
    )


def test_ids_that_look_like_numbers_stay_as_written(ws: Path) -> None:
    """'1e3', '1000', '01', '1', '-5' and 'true' are six ids: not every one is a canonical
    integer, so all stay strings, exactly as written (stripped)."""
    raw = ["1e3", "1000", "01", "1", "-5", "true", " 1000"]
    (ws / "look.csv").write_text(H + "".join(f"{u},{i},{i}\n" for i, u in enumerate(raw)))
    got = _read(ws / "look.csv")["user_id"]
    assert got.dtype == pl.String and got.to_list() == [u.strip() for u in raw]
    assert got.n_unique() == 6
