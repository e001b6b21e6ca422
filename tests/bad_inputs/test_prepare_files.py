"""``seqdistill prepare`` on malformed interaction files: CSV, TSV, parquet and JSON lines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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
    (
        "csv-missing-user-col",
        "log.csv",
        None,
        ["--user-col", "userId"],
        ["log.csv", "missing column 'userId'", "'user_id'"],
    ),
    ("csv-missing-time-col", "log.csv", None, ["--time-col", "when"], ["log.csv", "missing column 'when'"]),
    (
        "csv-missing-rating-col",
        "log.csv",
        None,
        ["--rating-col", "score"],
        ["log.csv", "'score'", "rating", "'timestamp'"],
    ),
    (
        "csv-rating-word",
        "bad.csv",
        "user_id,item_id,timestamp,rating\n1,10,1,4\n1,11,2,4\n1,12,3,five\n",
        [],
        ["'rating'", "'five'", "row 2"],
    ),
    ("csv-rating-inf", "bad.csv", "user_id,item_id,timestamp,rating\n1,10,1,inf\n", [], ["'rating'", "'inf'", "row 0"]),
    (
        "csv-rating-empty",
        "bad.csv",
        "user_id,item_id,timestamp,rating\n1,10,1,4\n1,11,2,\n",
        [],
        ["'rating'", "null at row 1"],
    ),
    (
        "csv-time-word",
        "bad.csv",
        H + OK + "3,10,5\nabc,10,6\n3,11,abc\n",
        [],
        ["'timestamp'", "'abc'", "row 6", "integer"],
    ),
    (
        "csv-time-odd-first-row",
        "bad.csv",
        H + "1,10,03/01/2021\n1,11,2021-01-02\n2,10,2021-01-03\n2,11,2021-01-04\n",
        [],
        ["'timestamp'", "'03/01/2021'", "row 0", "'%Y-%m-%d'"],
    ),
    (
        "csv-time-odd-middle-row",
        "bad.csv",
        H + "1,10,2021-01-01 10:00:00\n1,11,2021-01-02 11:00:00\n2,10,Jan 3 2021\n2,11,2021-01-04 09:30:00\n",
        [],
        ["'Jan 3 2021'", "row 2", "'%Y-%m-%d %H:%M:%S'"],
    ),
    (
        "csv-time-format-mismatch",
        "bad.csv",
        H + "1,10,03/01/2021\n1,11,2021-01-02\n",
        ["--timestamp-format", "%d/%m/%Y"],
        ["'2021-01-02'", "row 1", "'%d/%m/%Y'"],
    ),
    ("csv-time-fraction", "bad.csv", H + "1,10,1.0\n1,11,4.5\n", [], ["'timestamp'", "4.5", "row 1"]),
    ("csv-time-empty", "bad.csv", H + "1,10,1\n1,11,\n", [], ["'timestamp'", "null at row 1"]),
    (
        "tsv-ragged",
        "bad.tsv",
        "user_id\titem_id\ttimestamp\n1\t10\t1\n1\t11\t2\t7\t8\n",
        [],
        ["bad.tsv", "row 1 has 5 fields"],
    ),
    ("tsv-nan-id", "bad.tsv", "user_id\titem_id\ttimestamp\n1\tnan\t1\n", [], ["bad.tsv", "'item_id'", "'nan'"]),
    ("unknown-extension", "log.txt", H + OK, [], ["log.txt", "format"]),
    ("folder-named-like-a-file", "dir.csv", folder, [], ["dir.csv", "is a folder"]),
    ("no-such-file", "absent.csv", None, [], ["absent.csv", "no such file"]),
    # -- text files, second round (separators, headers, binary content)
    (
        "csv-tab-separated",
        "bad.csv",
        H.replace(",", "\t") + OK.replace(",", "\t"),
        [],
        ["bad.csv", "missing column 'user_id'", "user_id\\titem_id"],
    ),
    (
        "csv-semicolons",
        "bad.csv",
        H.replace(",", ";") + OK.replace(",", ";"),
        [],
        ["bad.csv", "missing column 'user_id'", "user_id;item_id;timestamp"],
    ),
    (
        "csv-header-spaces",
        "bad.csv",
        "user_id, item_id, timestamp\n" + OK,
        [],
        ["missing column 'item_id'", "' item_id'"],
    ),
    (
        "csv-duplicate-column",
        "bad.csv",
        "user_id,item_id,timestamp,user_id\n" + OK.replace("\n", ",9\n"),
        [],
        ["bad.csv", "column 'user_id' 2 times", "fields [0, 3]"],
    ),
    ("csv-blank-line-inside", "bad.csv", H + "1,10,1\n\n1,11,2\n", [], ["'user_id'", "null at row 1"]),
    ("csv-nul-byte", "bad.csv", (H + "1,10,1\n1\x00,11,2\n").encode(), [], ["bad.csv", "NUL byte at line 3"]),
    (
        "csv-is-parquet",
        "bad.csv",
        lambda p: pl.DataFrame({"user_id": [1], "item_id": [2], "timestamp": [3]}).write_parquet(p),
        [],
        ["bad.csv", "NUL byte", "parquet file"],
    ),
    (
        "csv-control-char-id",
        "bad.csv",
        H + "1,10,1\nu\x01,11,2\n",
        [],
        ["'user_id'", "'u\\x01'", "row 1", "control character"],
    ),
    ("csv-escape-in-item", "bad.csv", H + "1,10,1\n1,\x1b[0m,2\n", [], ["'item_id'", "row 1", "control character"]),
    (
        "tsv-duplicate-time",
        "bad.tsv",
        "user_id\titem_id\ttimestamp\ttimestamp\n1\t10\t1\t2\n",
        [],
        ["bad.tsv", "column 'timestamp' 2 times"],
    ),
    (
        "json-extension",
        "bad.json",
        '[{"user_id": 1, "item_id": 2, "timestamp": 1}]',
        [],
        ["bad.json", "name the file .csv, .tsv, .parquet or .jsonl"],
    ),
    (
        "time-zone-garbage",
        "bad.csv",
        H + "1,10,2021-01-01T00:00:00Z\n1,11,2021-01-02T00:00:00+25:00\n",
        [],
        ["'timestamp'", "'2021-01-02T00:00:00+25:00'", "row 1"],
    ),
    # -- parquet
    ("parquet-damaged", "bad.parquet", damaged_parquet, [], ["bad.parquet", "parquet"]),
    ("parquet-not-parquet", "bad.parquet", b"user_id,item_id\n1,2\n", [], ["bad.parquet", "parquet"]),
    ("parquet-empty-file", "bad.parquet", b"", [], ["bad.parquet", "empty"]),
    (
        "parquet-zero-rows",
        "bad.parquet",
        lambda p: pl.DataFrame(schema={"user_id": pl.Int64, "item_id": pl.Int64, "timestamp": pl.Int64}).write_parquet(
            p
        ),
        [],
        ["bad.parquet", "no rows"],
    ),
    (
        "parquet-fractional-id",
        "bad.parquet",
        parquet(user_id=[1.0, 2.5], item_id=[1, 2], timestamp=[1, 2]),
        [],
        ["'user_id'", "2.5", "row 1"],
    ),
    (
        "parquet-nan-id",
        "bad.parquet",
        parquet(user_id=[1, 2], item_id=[float("nan"), 1.0], timestamp=[1, 2]),
        [],
        ["'item_id'", "nan", "row 0"],
    ),
    (
        "parquet-bool-id",
        "bad.parquet",
        parquet(user_id=[True, False], item_id=[1, 2], timestamp=[1, 2]),
        [],
        ["'user_id'", "Boolean"],
    ),
    (
        "parquet-list-id",
        "bad.parquet",
        parquet(user_id=[[1], [2]], item_id=[1, 2], timestamp=[1, 2]),
        [],
        ["'user_id'", "List"],
    ),
    (
        "parquet-null-id",
        "bad.parquet",
        parquet(user_id=[1, None], item_id=[1, 2], timestamp=[1, 2]),
        [],
        ["'user_id'", "null at row 1"],
    ),
    (
        "parquet-missing-column",
        "bad.parquet",
        parquet(user=[1], item_id=[1], timestamp=[1]),
        [],
        ["bad.parquet", "missing column 'user_id'", "'user'"],
    ),
    (
        "parquet-bool-time",
        "bad.parquet",
        parquet(user_id=[1], item_id=[1], timestamp=[True]),
        [],
        ["'timestamp'", "Boolean"],
    ),
    (
        "parquet-string-rating",
        "bad.parquet",
        parquet(user_id=[1, 1], item_id=[1, 2], timestamp=[1, 2], rating=["4", "x"]),
        [],
        ["'rating'", "'x'", "row 1"],
    ),
    (
        "parquet-huge-time",
        "bad.parquet",
        parquet(user_id=[1], item_id=[1], timestamp=pl.Series([2**64 - 1], dtype=pl.UInt64)),
        [],
        ["'timestamp'", "beyond int64"],
    ),
    # -- JSON lines
    (
        "jsonl-broken-line",
        "bad.jsonl",
        '{"user_id":1,"item_id":2,"timestamp":1}\n{"user_id":2,\n',
        [],
        ["bad.jsonl", "line 2", "not valid JSON"],
    ),
    ("jsonl-array-line", "bad.jsonl", "[1, 2, 3]\n", [], ["bad.jsonl", "line 1", "not a JSON object"]),
    ("jsonl-empty", "bad.jsonl", b"", [], ["bad.jsonl", "empty"]),
    (
        "jsonl-fractional-id",
        "bad.jsonl",
        '{"user_id":1.5,"item_id":2,"timestamp":1}\n',
        [],
        ["'user_id'", "1.5", "row 0"],
    ),
    (
        "jsonl-null-id",
        "bad.jsonl",
        '{"user_id":1,"item_id":2,"timestamp":1}\n{"user_id":null,"item_id":2,"timestamp":2}\n',
        [],
        ["'user_id'", "null at row 1"],
    ),
    ("jsonl-nan-string-id", "bad.jsonl", '{"user_id":"NAN","item_id":2,"timestamp":1}\n', [], ["'user_id'", "'NAN'"]),
    (
        "jsonl-missing-column",
        "bad.jsonl",
        '{"user_id":1,"item_id":2}\n',
        [],
        ["bad.jsonl", "missing column 'timestamp'"],
    ),
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


# ------------------------------------------------------------------ files that are fine as they are
def _prepared(ws: Path, run, name: str, *extra: str):
    from seqdistill.data import PreparedDataset

    r = run("prepare", name, "--out", "out", "--k-core", "1", *extra)
    assert r.code == 0 and "Traceback" not in r.err, r.err
    return PreparedDataset.load(ws / "out"), r


@pytest.mark.parametrize(
    "name, content",
    [
        ("bom.csv", "\ufeff" + H + OK),
        ("crlf.csv", (H + OK).replace("\n", "\r\n")),
        ("données — ünïcode.csv", H + OK),
        ("upper.CSV", H + OK),
    ],
    ids=["byte-order-mark", "crlf", "unicode-name", "upper-case-suffix"],
)
def test_text_variants_read_like_the_plain_file(ws: Path, run, name, content) -> None:
    from seqdistill.data import read_interactions

    (ws / "plain.csv").write_text(H + OK)
    (ws / name).write_bytes(content.encode("utf-8"))
    plain = read_interactions(ws / "plain.csv")
    assert read_interactions(ws / name).equals(plain)
    ds, _ = _prepared(ws, run, name)
    assert (ds.n_users, ds.n_interactions) == (2, 4)


def test_time_zones_are_read_as_python_reads_them(ws: Path, run) -> None:
    from datetime import datetime

    from seqdistill.data import read_interactions

    stamps = ["2021-01-01T00:00:00Z", "2021-01-02T00:00:00+02:00", "2021-01-03T10:30:00-05:30", "2021-01-04T00:00:00Z"]
    (ws / "tz.csv").write_text(H + "".join(f"{u},{10 + k},{t}\n" for k, (u, t) in enumerate(zip([1, 1, 2, 2], stamps))))
    got = read_interactions(ws / "tz.csv")["timestamp"].to_list()
    assert got == [int(datetime.fromisoformat(t).timestamp()) for t in stamps]
    _prepared(ws, run, "tz.csv")


def test_mixed_epoch_units_are_read_and_warned_about(ws: Path, run) -> None:
    (ws / "units.csv").write_text(H + "1,10,1600000000\n1,11,1600000001000\n2,10,1600000002\n2,11,1600000003\n")
    ds, r = _prepared(ws, run, "units.csv")
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "seqdistill prepare: warning: units.csv: column 'timestamp' "
        "mixes epoch units: 1600000000 at row 0 reads as seconds, "
        "1600000001000 at row 1 as milliseconds"
    ), r.err
    (ws / "one.csv").write_text(H + "1,10,1600000000000\n1,11,1600000001000\n2,10,1600000002000\n2,11,1600000003000\n")
    assert run("prepare", "one.csv", "--out", "o2", "--k-core", "1").err == ""  # milliseconds only: no warning


def test_gzip_csv_is_read(ws: Path, run) -> None:
    import gzip

    (ws / "log.csv.gz").write_bytes(gzip.compress((H + OK).encode()))
    ds, _ = _prepared(ws, run, "log.csv.gz")
    assert ds.n_interactions == 4
