"""The string-id checks answered by one pass in the core (``core.check_id_text``) decide exactly
as the per-question polars expressions they replaced: a plain polars reference of those checks
below, against ``_string_ids`` on random columns of awkward characters (hypothesis)."""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from seqdistill import core
from seqdistill.data.interactions import _string_ids, string_buffers
from seqdistill.errors import DataError

# Digits, signs, letters, ASCII and Unicode whitespace, control characters (ASCII and C1: NEL is
# White_Space too), invisible format characters (Cf), line/paragraph separators (White_Space too),
# other non-ASCII letters.
ALPHABET = "0123+-ab \t\n\x0b\x00\x1f\x7f\x80\x85\x9f\u00a0\u3000\u2028\u2029\u200b\ufeff\u00ad\u2066éж"
TOKENS = st.one_of(
    st.text(alphabet=ALPHABET, max_size=5),
    st.sampled_from(["nan", "-NaN", " +nAn\u3000", "nana", "007", "-0", "+5", "12"]),
)


def reference(s: pl.Series, infer_integers: bool) -> pl.Series:
    """The checks as separate polars expressions over every value (messages as the module's)."""

    def first(mask: pl.Series) -> int | None:
        mask = mask.fill_null(False)
        return int(mask.arg_true()[0]) if mask.any() else None

    def canonical(x: pl.Series) -> bool:
        odd = x.str.starts_with("+") | x.str.starts_with("-0") | (x.str.starts_with("0") & (x.str.len_bytes() > 1))
        return not odd.any()

    if infer_integers:
        as_int = s.cast(pl.Int64, strict=False)
        if as_int.null_count() == 0:
            return as_int if canonical(s) else s
    s = s.str.strip_chars()
    if (row := first(s.str.len_bytes() == 0)) is not None:
        raise DataError(f"empty {row}")
    if (row := first(s.str.contains(r"[\x00-\x1f\x7f-\x9f]"))) is not None:
        raise DataError(f"control {row}")
    if (row := first(s.str.contains(r"\p{Cf}"))) is not None:
        char = next(c for c in s[row] if unicodedata.category(c) == "Cf")
        raise DataError(f"format {row} U+{ord(char):04X}")
    if (row := first(s.str.contains("[\u2028\u2029]"))) is not None:
        char = next(c for c in s[row] if c in "\u2028\u2029")
        raise DataError(f"separator {row} U+{ord(char):04X}")
    short = (s.str.len_bytes() <= 4).arg_true()
    hits = s.gather(short).str.to_lowercase().is_in(core.NAN_LIKE_IDS)
    if hits.any():
        raise DataError(f"nan {int(short[int(hits.arg_true()[0])])}")
    if infer_integers:
        as_int = s.cast(pl.Int64, strict=False)
        if as_int.null_count() == 0 and canonical(s):
            return as_int
    return s


def decode(col: core.StringColumn) -> list[str]:
    """Every value of a string column the core would read, decoded here byte by byte from the
    Arrow spec (``large_string`` offsets, or ``string_view`` views and buffers)."""
    if not isinstance(col, core.StringViews):
        offsets, data = col
        raw = bytes(data)
        return [raw[a:z].decode() for a, z in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)]
    out = []
    for views, bufs in col.chunks:
        v = bytes(views)
        for r in range(len(v) // 16):
            n = int.from_bytes(v[16 * r : 16 * r + 4], "little")
            if n <= 12:
                out.append(v[16 * r + 4 : 16 * r + 4 + n].decode())
            else:
                b = int.from_bytes(v[16 * r + 8 : 16 * r + 12], "little")
                at = int.from_bytes(v[16 * r + 12 : 16 * r + 16], "little")
                out.append(bytes(bufs[b])[at : at + n].decode())
    return out


def test_polars_columns_are_read_as_their_own_views():
    """polars hands its string_view chunks over in place, one per chunk; a sliced column and
    long values (in the data buffers) decode to the same values."""
    long = [f"item-with-a-long-name-{i}" for i in range(50)]
    s = pl.concat([pl.Series("u", ["a", "bb", *long]), pl.Series("u", ["é", "", "x" * 13])], rechunk=False)
    for col in (s, s.slice(3, 50), s.slice(0, 0)):
        got = string_buffers(col)
        assert isinstance(got, core.StringViews)
        assert len(got) == len(col)
        assert decode(got) == col.to_list()


def kind_and_row(message: str) -> tuple[str, int, str]:
    """(kind, row, character) of either implementation's message."""
    for kind, words in [
        ("empty", "empty id"),
        ("control", "control character"),
        ("format", "invisible"),
        ("separator", "separator U+"),
        ("nan", "NaN-like"),
    ]:
        if kind in message.split()[0] or words in message:
            row = (
                int(message.split("at row ")[1].split()[0].rstrip(",;"))
                if "at row " in message
                else int(message.split()[1])
            )
            char = message.split("U+")[1][:4] if "U+" in message else ""
            return kind, row, char
    raise AssertionError(message)


@settings(max_examples=400, deadline=None)
@given(values=st.lists(TOKENS, min_size=1, max_size=12), infer=st.booleans(), chunks=st.integers(1, 3))
@example(values=["0\u2028"], infer=True, chunks=1)  # an integer padded with Unicode whitespace (CI found it)
@example(values=["a", "u\x85v", "b\x01"], infer=False, chunks=1)  # a C1 control before an ASCII one
@example(values=["\x85u", "a\u2028b", "c\u2029"], infer=False, chunks=2)  # stripped NEL; a separator inside
def test_same_decision_as_the_per_question_reference(values, infer, chunks):
    s = pl.concat(
        [
            pl.Series("u", part, dtype=pl.String)
            for part in np.array_split(np.array(values, dtype=object), chunks)
            if len(part)
        ]
    )
    try:
        want = reference(s, infer)
    except DataError as e:
        with pytest.raises(DataError) as got:
            _string_ids(s, "u", "user_id", "src", infer)
        assert kind_and_row(str(got.value)) == kind_and_row(str(e)), (values, str(got.value), str(e))
        return
    got, buffers = _string_ids(s, "u", "user_id", "src", infer)
    assert got.dtype == want.dtype
    assert got.to_list() == want.to_list()
    # The buffers handed on (for the core to read without converting again) are the result's own.
    if got.dtype == pl.String:
        if buffers is not None:
            assert decode(buffers) == decode(string_buffers(got)) == got.to_list()
        else:
            assert got.to_list() != s.to_list()  # only a changed column comes without buffers
    else:
        assert buffers is None


@settings(max_examples=200, deadline=None)
@given(values=st.lists(TOKENS, max_size=12))
def test_core_pass_against_python(values):
    s = pl.Series("u", values, dtype=pl.String)
    t = core.check_id_text(string_buffers(s))
    stripped = s.str.strip_chars().to_list()
    assert t.first_empty == next((i for i, v in enumerate(stripped) if v == ""), None)
    ctrl = next((i for i, v in enumerate(stripped) if any(ord(c) < 0x20 or ord(c) == 0x7F for c in v)), None)
    assert t.first_control == ctrl
    assert t.padded == (stripped != values)
    nan_like = next((i for i, v in enumerate(stripped) if v.lower() in core.NAN_LIKE_IDS), None)
    assert t.first_nan_like == nan_like
    assert t.non_ascii.tolist() == [i for i, v in enumerate(values) if not v.isascii()]
    if values and not t.int_like:  # then some value cannot be an integer
        assert s.cast(pl.Int64, strict=False).null_count() > 0


@pytest.mark.filterwarnings("ignore::seqdistill.errors.SeqdistillWarning")  # LOO on tiny logs
@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(TOKENS, min_size=1, max_size=12),
    column=st.sampled_from(["user_id", "item_id"]),
    chunks=st.integers(1, 3),
)
@example(values=["a", " a", "b"], column="user_id", chunks=1)  # trimmed: two rows of one id
@example(values=["\u00e9", "x\u200by", "\u00e9"], column="item_id", chunks=2)  # non-ASCII, then an invisible one
def test_prepare_checks_string_ids_as_the_row_by_row_checks(values, column, chunks):
    """``prepare`` checks the text of string ids on their distinct values, in the core, while it
    encodes them (no pass over every row in Python): it refuses the same row for the same reason
    as the per-question reference, and where that trims the ids, gives the dataset of the
    trimmed column."""
    import seqdistill as sd
    from seqdistill.data import SplitConfig

    n = len(values)
    s = pl.concat(
        [
            pl.Series(column, part, dtype=pl.String)
            for part in np.array_split(np.array(values, dtype=object), chunks)
            if len(part)
        ],
        rechunk=False,
    )
    other = "item_id" if column == "user_id" else "user_id"
    df = pl.DataFrame({column: s, other: [f"o{i % 3}" for i in range(n)], "timestamp": list(range(n))})
    split = SplitConfig(kind="leave_one_out")
    try:
        want = reference(s, infer_integers=False)
    except DataError as e:
        with pytest.raises(DataError) as got:
            sd.prepare(df, k_core=None, split=split)
        message = str(got.value)
        assert message.startswith(f"dataset: column '{column}'"), message
        assert kind_and_row(message.split(": ", 1)[1]) == kind_and_row(str(e)), (values, message, str(e))
        return
    try:
        expected = sd.prepare(df.with_columns(want.alias(column)), k_core=None, split=split)
    except DataError as e:  # e.g. no training part: the same refusal
        with pytest.raises(DataError, match=re.escape(str(e))):
            sd.prepare(df, k_core=None, split=split)
        return
    got = sd.prepare(df, k_core=None, split=split)
    assert got.user_ids.to_list() == expected.user_ids.to_list()
    assert got.item_ids.to_list() == expected.item_ids.to_list()
    for name in ("offsets", "items", "timestamps", "train_end"):
        assert np.array_equal(getattr(got, name), getattr(expected, name)), name


def test_prepare_names_the_id_before_a_later_columns_error():
    """The id checks run before the timestamps' (the table's column order): with string ids checked
    by the core, a table holding a bad id and a bad timestamp still gets the id's error."""
    import seqdistill as sd

    df = pl.DataFrame({"user_id": ["u1", "u\u200b", "u2"], "item_id": ["a", "b", "a"], "timestamp": ["1", "2", "x"]})
    with pytest.raises(DataError, match=r"column 'user_id' has the id 'u\\u200b' at row 1"):
        sd.prepare(df, k_core=None)
    # Without the bad id, the timestamp's own error.
    with pytest.raises(DataError, match=r"column 'timestamp' has value 'x' at row 2"):
        sd.prepare(df.with_columns(user_id=pl.Series(["u1", "u3", "u2"])), k_core=None)
