"""Ids are read as what they are (issue #12, class 3): the policy of
``seqdistill.data.interactions`` checked against a plain-Python statement of it, plus the
cases that once went wrong (a NaN turning every id into a float, ' 1' and '1' as two users)."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqdistill.data import DataError, PreparedDataset, read_interactions

CANONICAL = re.compile(r"0|-?[1-9][0-9]*")


# Unicode White_Space: what is stripped around an id (Python's str.strip would also strip
# \x1c-\x1f, which are controls to the policy).
WHITE_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)
# What is refused inside an id, in the order the checks look: (kind, Unicode categories).
REFUSED_INSIDE = [("control character", {"Cc"}), ("invisible", {"Cf"}), ("separator", {"Zl", "Zp"})]


def reference_ids(raw: list[str]) -> list[int] | list[str] | tuple[str, int]:
    """The documented policy, in plain Python: refused, as (kind, first row of that kind): an
    empty field (read as null), then, stripped of Unicode whitespace, an empty id, a control
    character (ASCII or C1), an invisible format character, a line or paragraph separator, then a
    NaN-like id; all canonical integers within int64 -> ints; else the stripped strings."""
    if "" in raw:
        return "is null", raw.index("")
    ids = [s.strip(WHITE_SPACE) for s in raw]
    checks = [("empty id", lambda s: s == "")]
    checks += [
        (kind, lambda s, cats=cats: any(unicodedata.category(c) in cats for c in s)) for kind, cats in REFUSED_INSIDE
    ]
    checks += [("NaN-like id", lambda s: s.lower() in ("nan", "+nan", "-nan"))]
    for kind, bad in checks:
        rows = [r for r, s in enumerate(ids) if bad(s)]
        if rows:
            return kind, rows[0]
    if all(CANONICAL.fullmatch(s) and -(2**63) <= int(s) < 2**63 for s in ids):
        return [int(s) for s in ids]
    return ids


pad = st.sampled_from(["", " ", "  ", "\t", "\x85", "\u2028", "\u3000 "])
core = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.integers(0, 999).map(lambda n: f"0{n}"),
    st.sampled_from(["0", "-0", "+1", "1.0", "1e3", "nan", "NaN", "a", "u-7", "x y", ""]),
    st.text(alphabet="abcxyz0123456789_-", min_size=1, max_size=6),
    # Controls (ASCII, C1: NEL inside an id), invisible and separator characters inside an id.
    st.sampled_from(["u\x85v", "\x80", "a\x9fb", "a\x01", "x\u200by", "a\u2028b", "a\u2029b", "é\x1c"]),
)
raw_id = st.tuples(pad, core, pad).map("".join)


@settings(max_examples=60, deadline=None)
@given(st.lists(raw_id, min_size=1, max_size=12))
def test_csv_ids_follow_the_policy(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("ids") / "log.csv"
    path.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},i,{t}\n" for t, u in enumerate(raw)))
    expected = reference_ids(raw)
    if isinstance(expected, tuple):
        kind, row = expected
        with pytest.raises(DataError, match=r"log\.csv: column 'user_id' (is null|has)") as e:
            read_interactions(path)
        message = str(e.value)
        assert kind in message and f"at row {row}" in message, (raw, message)
        return
    got = read_interactions(path).get_column("user_id")
    assert got.to_list() == expected
    assert got.dtype == (pl.Int64 if isinstance(expected[0], int) else pl.String)


def prepare_cli(run, *argv: str) -> PreparedDataset:
    r = run("prepare", *argv, "--out", "out", "--k-core", "1", "--valid", "none", "--quantile", "0.5")
    assert r.code == 0, r.err
    return PreparedDataset.load("out")


def test_whitespace_is_stripped_so_padded_ids_are_one_user(ws: Path, run) -> None:
    (ws / "pad.csv").write_text("user_id,item_id,timestamp\n 1,a,1\n1 ,b,2\n1,a,3\n2,b,4\n")
    ds = prepare_cli(run, "pad.csv")
    assert ds.user_ids.to_list() == [1, 2]
    assert ds.lengths.tolist() == [3, 1]


def test_leading_zeros_keep_ids_apart(ws: Path, run) -> None:
    (ws / "zeros.csv").write_text("user_id,item_id,timestamp\n01,a,1\n1,b,2\n1,a,3\n")
    ds = prepare_cli(run, "zeros.csv")
    assert ds.user_ids.to_list() == ["01", "1"]
    assert ds.lengths.tolist() == [1, 2]


def test_ids_beyond_int64_stay_exact(ws: Path, run) -> None:
    big = [str(2**64), str(2**63), str(2**63 - 1)]
    rows = [f"{u},{item},{t + 10 * later}\n" for t, u in enumerate(big) for later, item in enumerate("ab")]
    (ws / "big.csv").write_text("user_id,item_id,timestamp\n" + "".join(rows))
    ds = prepare_cli(run, "big.csv")
    assert sorted(ds.user_ids.to_list()) == sorted(big)


def test_one_nan_does_not_turn_ids_into_floats(ws: Path, run) -> None:
    pairs = [(1, 10), (2, 11), ("NaN", 12), (10, 10), (1, 11), (2, 12), ("NaN", 10), (10, 11)]
    rows = "".join(f"{u},{i},{t}\n" for t, (u, i) in enumerate(pairs))
    (ws / "nan.csv").write_text("user_id,item_id,timestamp\n" + rows)
    r = run("prepare", "nan.csv", "--out", "out", "--k-core", "1")
    assert r.code == 2 and "'NaN' at row 2" in r.err and not (ws / "out").exists()
    (ws / "nan.csv").write_text("user_id,item_id,timestamp\n" + rows.replace("NaN", "3"))
    assert prepare_cli(run, "nan.csv").user_ids.to_list() == [1, 2, 3, 10]


def test_binary_formats(tmp_path: Path) -> None:
    p = tmp_path / "log.parquet"
    pl.DataFrame(
        {"user_id": pl.Series([2**64 - 1, 5], dtype=pl.UInt64), "item_id": [3.0, 4.0], "timestamp": [1, 2]}
    ).write_parquet(p)
    df = read_interactions(p)
    assert df["user_id"].to_list() == [str(2**64 - 1), "5"] and df["item_id"].to_list() == [3, 4]
    j = tmp_path / "log.jsonl"
    j.write_text(
        '{"user_id": " u1 ", "item_id": "7", "timestamp": "2021-01-02"}\n'
        '{"user_id": "u2", "item_id": "8", "timestamp": "2021-01-03"}\n'
    )
    df = read_interactions(j)
    assert df["user_id"].to_list() == ["u1", "u2"] and df["item_id"].to_list() == [7, 8]
    assert df["timestamp"].to_list() == [1609545600, 1609632000]


@settings(max_examples=30, deadline=None)
@given(st.integers(3, 30), st.data())
def test_mixed_timestamps_blame_the_odd_row(tmp_path_factory, n, data):
    k = data.draw(st.integers(0, n - 1))
    stamps = [f"2021-01-{d + 1:02d}" if d != k else f"{d + 1:02d}/01/2021" for d in range(n)]
    path = tmp_path_factory.mktemp("ts") / "log.csv"
    path.write_text("user_id,item_id,timestamp\n" + "".join(f"1,{d},{s}\n" for d, s in enumerate(stamps)))
    with pytest.raises(DataError, match=rf"'{stamps[k]}' at row {k}, which does not match the format '%Y-%m-%d'"):
        read_interactions(path)


def test_dates_and_date_times_mix_as_before(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\n1,a,2021-01-02 00:00:10\n1,b,2021-01-03\n1,c,1/4/2021\n")
    with pytest.raises(DataError, match=r"'1/4/2021' at row 2"):
        read_interactions(path)
    path.write_text("user_id,item_id,timestamp\n1,a,2021-01-02\n1,b,2021-01-03 00:00:10\n")
    assert read_interactions(path)["timestamp"].to_list() == [1609545600, 1609632010]
