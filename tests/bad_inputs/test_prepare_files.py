"""``seqdistill prepare`` on malformed interaction files: CSV, TSV, parquet and JSON lines."""

from __future__ import annotations

from pathlib import Path
from collections.abc import Callable

import polars as pl
import pytest

H = "user_id,item_id,timestamp\n"
OK = "1,10,1\n1,11,2\n2,10,3\n2,11,4\n"


def parquet(**cols: object) -> Callable[[Path], None]:
    return lambda p: pl.DataFrame(cols).write_parquet(p)


def damaged_parquet(p: Path) -> None:
    pl.DataFrame({"user_id": [1, 2] * 50, "item_id": [3, 4] * 50, "timestamp": list(range(100))}).write_parquet(p)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def folder(p: Path) -> None:
    p.mkdir()


# (id, file name, content or writer, extra arguments, strings the message must name)
CASES = [
    # -- text files
    ("csv-empty", "bad.csv", b"", [], ["bad.csv", "empty"]),
    ("csv-header-only", "bad.csv", H, [], ["bad.csv", "no rows"]),
    ("csv-ragged-long", "bad.csv", H + "1,10,1\n1,11,2,9\n", [], ["bad.csv", "row 1 has 4 fields", "header has 3"]),
    ("csv-ragged-short", "bad.csv", H + "1,10,1\n1,11\n", [], ["bad.csv", "'timestamp'", "null at row 1"]),
    ("csv-invalid-utf8", "bad.csv", H.encode() + b"1,10,1\n2,\xff\xfe,2\n", [], ["bad.csv", "UTF-8", "line 3"]),
    ("csv-nan-user", "bad.csv", H + "1,10,1\nnan,11,2\n", [], ["bad.csv", "'user_id'", "'nan'", "row 1"]),
    ("csv-NaN-item", "bad.csv", H + "1,10,1\n1,NaN,2\n", [], ["'item_id'", "'NaN'", "row 1"]),
    ("csv-minus-nan", "bad.csv", H + "-nan,10,1\n", [], ["'user_id'", "'-nan'", "row 0"]),
    ("csv-quoted-empty-id", "bad.csv", H + '1,10,1\n"",11,2\n', [], ["'user_id'", "empty id", "row 1"]),
    ("csv-blank-id", "bad.csv", H + "1,10,1\n1,11,2\n   ,12,3\n", [], ["'user_id'", "empty id", "row 2"]),
    ("csv-missing-item", "bad.csv", H + "1,,1\n", [], ["'item_id'", "null at row 0"]),
    ("csv-missing-user-col", "log.csv", None, ["--user-col", "userId"], ["log.csv", "missing column 'userId'", "'user_id'"]),
    ("csv-missing-time-col", "log.csv", None, ["--time-col", "when"], ["log.csv", "missing column 'when'"]),
    ("csv-missing-rating-col", "log.csv", None, ["--rating-col", "score"], ["log.csv", "'score'", "rating", "'timestamp'"]),
    ("csv-rating-word", "bad.csv", "user_id,item_id,timestamp,rating\n1,10,1,4\n1,11,2,4\n1,12,3,five\n", [],
     ["'rating'", "'five'", "row 2"]),
    ("csv-rating-inf", "bad.csv", "user_id,item_id,timestamp,rating\n1,10,1,inf\n", [], ["'rating'", "'inf'", "row 0"]),
    ("csv-rating-empty", "bad.csv", "user_id,item_id,timestamp,rating\n1,10,1,4\n1,11,2,\n", [],
     ["'rating'", "null at row 1"]),
    ("csv-time-word", "bad.csv", H + OK + "3,10,5\nabc,10,6\n3,11,abc\n", [], ["'timestamp'", "'abc'", "row 6", "integer"]),
    ("csv-time-odd-first-row", "bad.csv",
     H + "1,10,03/01/2021\n1,11,2021-01-02\n2,10,2021-01-03\n2,11,2021-01-04\n", [],
     ["'timestamp'", "'03/01/2021'", "row 0", "'%Y-%m-%d'"]),
    ("csv-time-odd-middle-row", "bad.csv",
     H + "1,10,2021-01-01 10:00:00\n1,11,2021-01-02 11:00:00\n2,10,Jan 3 2021\n2,11,2021-01-04 09:30:00\n", [],
     ["'Jan 3 2021'", "row 2", "'%Y-%m-%d %H:%M:%S'"]),
    ("csv-time-format-mismatch", "bad.csv", H + "1,10,03/01/2021\n1,11,2021-01-02\n", ["--timestamp-format", "%d/%m/%Y"],
     ["'2021-01-02'", "row 1", "'%d/%m/%Y'"]),
    ("csv-time-fraction", "bad.csv", H + "1,10,1.0\n1,11,4.5\n", [], ["'timestamp'", "4.5", "row 1"]),
    ("csv-time-empty", "bad.csv", H + "1,10,1\n1,11,\n", [], ["'timestamp'", "null at row 1"]),
    ("tsv-ragged", "bad.tsv", "user_id\titem_id\ttimestamp\n1\t10\t1\n1\t11\t2\t7\t8\n", [], ["bad.tsv", "row 1 has 5 fields"]),
    ("tsv-nan-id", "bad.tsv", "user_id\titem_id\ttimestamp\n1\tnan\t1\n", [], ["bad.tsv", "'item_id'", "'nan'"]),
    ("unknown-extension", "log.txt", H + OK, [], ["log.txt", "format"]),
    ("folder-named-like-a-file", "dir.csv", folder, [], ["dir.csv", "is a folder"]),
    ("no-such-file", "absent.csv", None, [], ["absent.csv", "no such file"]),
    # -- parquet
    ("parquet-damaged", "bad.parquet", damaged_parquet, [], ["bad.parquet", "parquet"]),
    ("parquet-not-parquet", "bad.parquet", b"user_id,item_id\n1,2\n", [], ["bad.parquet", "parquet"]),
    ("parquet-empty-file", "bad.parquet", b"", [], ["bad.parquet", "empty"]),
    ("parquet-zero-rows", "bad.parquet", lambda p: pl.DataFrame(
        schema={"user_id": pl.Int64, "item_id": pl.Int64, "timestamp": pl.Int64}).write_parquet(p), [],
     ["bad.parquet", "no rows"]),
    ("parquet-fractional-id", "bad.parquet", parquet(user_id=[1.0, 2.5], item_id=[1, 2], timestamp=[1, 2]), [],
     ["'user_id'", "2.5", "row 1"]),
    ("parquet-nan-id", "bad.parquet", parquet(user_id=[1, 2], item_id=[float("nan"), 1.0], timestamp=[1, 2]), [],
     ["'item_id'", "nan", "row 0"]),
    ("parquet-bool-id", "bad.parquet", parquet(user_id=[True, False], item_id=[1, 2], timestamp=[1, 2]), [],
     ["'user_id'", "Boolean"]),
    ("parquet-list-id", "bad.parquet", parquet(user_id=[[1], [2]], item_id=[1, 2], timestamp=[1, 2]), [],
     ["'user_id'", "List"]),
    ("parquet-null-id", "bad.parquet", parquet(user_id=[1, None], item_id=[1, 2], timestamp=[1, 2]), [],
     ["'user_id'", "null at row 1"]),
    ("parquet-missing-column", "bad.parquet", parquet(user=[1], item_id=[1], timestamp=[1]), [],
     ["bad.parquet", "missing column 'user_id'", "'user'"]),
    ("parquet-bool-time", "bad.parquet", parquet(user_id=[1], item_id=[1], timestamp=[True]), [],
     ["'timestamp'", "Boolean"]),
    ("parquet-string-rating", "bad.parquet", parquet(user_id=[1, 1], item_id=[1, 2], timestamp=[1, 2], rating=["4", "x"]),
     [], ["'rating'", "'x'", "row 1"]),
    ("parquet-huge-time", "bad.parquet", parquet(user_id=[1], item_id=[1], timestamp=pl.Series([2**64 - 1], dtype=pl.UInt64)),
     [], ["'timestamp'", "beyond int64"]),
    # -- JSON lines
    ("jsonl-broken-line", "bad.jsonl", '{"user_id":1,"item_id":2,"timestamp":1}\n{"user_id":2,\n', [],
     ["bad.jsonl", "line 2", "not valid JSON"]),
    ("jsonl-array-line", "bad.jsonl", "[1, 2, 3]\n", [], ["bad.jsonl", "line 1", "not a JSON object"]),
    ("jsonl-empty", "bad.jsonl", b"", [], ["bad.jsonl", "empty"]),
    ("jsonl-fractional-id", "bad.jsonl", '{"user_id":1.5,"item_id":2,"timestamp":1}\n', [], ["'user_id'", "1.5", "row 0"]),
    ("jsonl-null-id", "bad.jsonl", '{"user_id":1,"item_id":2,"timestamp":1}\n{"user_id":null,"item_id":2,"timestamp":2}\n',
     [], ["'user_id'", "null at row 1"]),
    ("jsonl-nan-string-id", "bad.jsonl", '{"user_id":"NAN","item_id":2,"timestamp":1}\n', [], ["'user_id'", "'NAN'"]),
    ("jsonl-missing-column", "bad.jsonl", '{"user_id":1,"item_id":2}\n', [], ["bad.jsonl", "missing column 'timestamp'"]),
    ("jsonl-object-id", "bad.jsonl", '{"user_id":{"a":1},"item_id":2,"timestamp":1}\n', [], ["'user_id'", "Struct"]),
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
    refused("prepare", name, "--out", "out", "--k-core", "1", *extra, names=tuple(names))
    assert not (ws / "out").exists()
