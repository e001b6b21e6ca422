"""Interaction tables: reading, column mapping and validation.

An interactions table has the canonical columns ``user_id``, ``item_id``, ``timestamp`` (Int64)
and optionally ``rating`` (Float32). Ids stay raw (Int64 or String) until
:func:`seqdistill.data.prepare` encodes them.

What a file may hold, and what is refused (every refusal is a :class:`~seqdistill.errors.DataError`
whose one-line message names the file, the column, the row — counted from 0, header not counted —
and the value):

* **Ids** (user and item columns). Text files (CSV/TSV) are read with every column as a string,
  so no id is ever inferred as a float. String ids are stripped of leading and trailing
  whitespace — ``' 1'`` and ``'1'`` are one user — then refused when empty, null, NaN-like
  (``nan``, any case, with an optional sign), holding a control character (Unicode category Cc:
  ``\\x00``-``\\x1f``, ``\\x7f`` and the C1 controls ``\\x80``-``\\x9f``: a damaged or binary file,
  or text decoded with the wrong code page), an invisible format character (Unicode category Cf:
  zero-width spaces, direction marks, a byte-order mark inside the file — two ids that print the
  same would be two users) or a line or paragraph separator (U+2028, U+2029: a line break inside an
  id). Whitespace around an id (Unicode ``White_Space``, which includes ``\\x85``, U+2028 and U+2029)
  is stripped, not refused. When reading a file, a column whose every id is a
  canonical decimal integer (``0`` or ``-?[1-9][0-9]*``, fitting int64) becomes Int64; anything
  else stays String, so ``'01'`` and ``'1'`` stay two ids and ids beyond 2^63 stay exact strings.
  Parquet/JSONL integer columns become Int64 (values outside int64 become exact strings); float
  columns are accepted only when every value is finite and whole (→ Int64); other types are refused.
* **Timestamps**: integers (seconds), whole floats, dates, datetimes, or strings. Strings are
  integers or dates/date-times in one format (``timestamp_format``, a strftime pattern, or inferred;
  ``Z`` and ``+02:00`` zones are read; dates before 1970 are negative seconds). A
  ``timestamp_format`` that gives no date (no year: ``%Y``, ``%y``, ``%G``, ``%g``, and no whole
  date: ``%F``, ``%D``, ``%x``, ``%v``, ``%c``, ``%+``, ``%s``) is refused: polars would put every
  timestamp in the year 1. Integers beyond int64 are refused as such. Timestamps are stored as whole
  seconds (floored), and equal seconds keep the table's order — except when datetimes or date-time
  strings carry sub-second parts (``00:00:07.700``): then the rows of one user within one second are
  put in order of the full time (to the microsecond for text, in the column's own unit for a
  Datetime column), rows at the same full time keeping the table's order. Those rows trade places
  among themselves in the table :func:`read_interactions` / :func:`normalize_interactions` return;
  every other row stays where it is, and row numbers in messages are always the table's own.
  Without sub-second parts nothing moves. ``prepare`` leaves the table as it is and hands the
  full times to the Rust core, which orders each user's rows by them as it groups them. When some rows do not parse, the error blames
  the first row that does not fit the format most rows use, naming its value and that format.
  Reading a file warns (:class:`~seqdistill.errors.SeqdistillWarning`) when integer timestamps span
  two epoch units (seconds from 1973 on are 10^8..10^11, milliseconds 10^11..10^14, ...), which
  would order a user's interactions wrongly.
* **Ratings**: numeric and finite as float32 (``1e40`` is refused). A rating column that was asked for but is missing is an error
  listing the file's columns.
* **Files**: an empty file, a header without rows, ragged rows, an unclosed quote, invalid UTF-8, a
  binary file read as text (a NUL byte in its first 64 KiB; a gzip, zip, parquet or UTF-16 file is
  named as such), a damaged or truncated gzip file (``.csv.gz``; inside a sound one, the line and
  byte are those of the decompressed text), lines ending in a bare CR, a
  header naming a column that is read twice, one column given for two roles (users = items), a
  damaged parquet file, malformed JSON lines (NaN and Infinity are not JSON; a key twice in one
  object is ambiguous), a folder, FIFO or device where a file is expected, a symbolic link that
  leads nowhere and a missing path are refused by name. A UTF-8 byte-order mark is read past (CSV,
  TSV, JSON lines). Arguments of the wrong kind (``columns`` not a mapping, a separator that is not
  one byte) are DataErrors too. Operating-system errors (permissions, I/O) propagate as
  :class:`OSError`.

:func:`read_items` reads an item metadata file with the same id policy; an id on two rows is
refused naming both rows (which row holds cannot be told).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import io
import json
import math
import os
import re
import stat
import sys
import tempfile
import threading
import unicodedata
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, NamedTuple

import numpy as np
import polars as pl

from seqdistill import _io, core
from seqdistill._io import loads_json
from seqdistill.errors import DataError, SeqdistillWarning

__all__ = [
    "COLUMNS",
    "DOMAINS",
    "DataError",
    "REQUIRED",
    "RawDataset",
    "normalize_interactions",
    "read_interactions",
    "read_items",
]

COLUMNS = ("user_id", "item_id", "timestamp", "rating")
REQUIRED = ("user_id", "item_id", "timestamp")
DOMAINS = ("products", "movies", "sessions", "generic")

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_FLOAT32_MAX = 3.4028234663852886e38
_CANONICAL_INT = r"^(0|-?[1-9][0-9]*)$"


@dataclass
class RawDataset:
    """Raw interactions plus item metadata, as a loader returns them (ids not yet encoded)."""

    name: str
    interactions: pl.DataFrame
    items: pl.DataFrame | None = None
    domain: str = "generic"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.domain not in DOMAINS:
            raise DataError(f"{self.name}: domain must be one of {DOMAINS}, got {self.domain!r}")


# ------------------------------------------------------------------------------ reading files
_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


def _format_of(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in ("csv", "tsv", "parquet", "jsonl"):
            raise DataError(f"{path}: unknown format {fmt!r}; expected 'csv', 'tsv', 'parquet' or 'jsonl'")
        return fmt
    suffixes = [s for s in path.suffixes if s != ".gz"]
    if suffixes and suffixes[-1].lower() in _FORMATS:
        return _FORMATS[suffixes[-1].lower()]
    raise DataError(
        f"{path}: cannot tell the format from the name; name the file .csv, .tsv, .parquet or .jsonl "
        "(or pass format='csv'|'tsv'|'parquet'|'jsonl')"
    )


def _check_file(path: Path) -> None:
    """A non-empty regular file, or a DataError saying what is there instead (never opened: a
    FIFO would block the reader)."""
    if not path.exists():
        link = " (a symbolic link that leads nowhere: dangling, or a loop)" if path.is_symlink() else ""
        raise DataError(f"{path}: no such file{link}")
    mode = path.stat().st_mode
    if stat.S_ISDIR(mode):
        raise DataError(f"{path}: is a folder, not a file")
    if not stat.S_ISREG(mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a device or socket"
        raise DataError(f"{path}: not a regular file ({kind}); save the data to a file first")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")


def _check_arguments(columns: object, separator: object, timestamp_format: object, source: str) -> None:
    """Arguments that reach the reader from ``-o KEY=VALUE`` as well as from Python."""
    if columns is not None and not isinstance(columns, Mapping):
        raise DataError(f"{source}: columns must map canonical names to column names, got {_show(columns)}")
    for canonical, col in (columns or {}).items():
        if not isinstance(col, str):
            raise DataError(f"{source}: columns[{canonical!r}] must be a column name, got {_show(col)}")
    if separator is not None and (not isinstance(separator, str) or len(separator.encode("utf-8")) != 1):
        raise DataError(f"{source}: separator must be one single-byte character, got {_show(separator)}")
    if timestamp_format is not None and not isinstance(timestamp_format, str):
        raise DataError(f"{source}: timestamp_format must be a strftime pattern, got {_show(timestamp_format)}")
    if timestamp_format is not None and _dateless(timestamp_format):
        raise DataError(
            f"{source}: timestamp_format (--timestamp-format) {timestamp_format!r} gives no date: it has no year "
            "(%Y, %y, %G, %g) and no whole date (%F, %D, %x, %v, %c, %+, %s), so every timestamp would fall in "
            "the year 1"
        )


# A strftime directive as chrono (polars) reads it: ``%``, optional padding flag (``-``, ``_``, ``0``,
# ``^``, ``#``), ``:`` or ``.`` and a width (``%:z``, ``%.3f``, ``%6f``), then the letter; ``%%`` is a
# literal percent sign (its letter ``%`` names no part of a date).
_DIRECTIVE = re.compile(r"%[-_0^#]?[:.]*[0-9]*(.)", re.DOTALL)
# Directives that give the year: a year itself, or a whole date (``%s``: seconds since the epoch).
# polars fills a missing year with 1 (and a missing month or day with 1: ``%Y-%m`` is a month).
_DATED = frozenset("YyGgFDxvc+s")
# Every directive chrono knows; a format with another one (``%Q``) parses no value at all and is
# refused row by row as a format that does not match.
_KNOWN = frozenset("YCyqmbBhdeaAwuUWGgVjDxFvHkIlPpMSfRTXrZzcs+tn%")


def _dateless(fmt: str) -> bool:
    """Whether ``fmt``, all of whose directives chrono knows, gives no year."""
    letters = set(_DIRECTIVE.findall(fmt))
    return letters <= _KNOWN and not letters & _DATED


_TASK_ID = re.compile(r"\bId\(\d+\), ")


@contextlib.contextmanager
def _translated(path: Path, fmt: str, explain: Callable[[], str | None] = lambda: None) -> Iterator[None]:
    """The one place where a reader library's exception becomes a :class:`DataError` naming the
    file; ``explain`` may look closer (e.g. find the ragged row) and return a better reason.
    What the library writes to the process's stderr meanwhile is held back (see
    :func:`_native_stderr_held`) and dropped when its error becomes ours."""
    held = _Held()
    try:
        with _native_stderr_held(held):
            yield
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, UnicodeDecodeError) as e:
        try:
            reason = explain()
        except (OSError, ValueError, csv.Error):  # looking closer failed: keep the library's reason
            reason = None
        reason = reason or (str(e).strip().splitlines() or [type(e).__name__])[0]
        # A panic inside one of polars' async tasks names the task ("JoinError::Panic(Id(7), ..."),
        # a number that changes from run to run: the same file gives the same message without it.
        reason = _TASK_ID.sub("", reason)
        raise DataError(f"{path}: cannot read as {fmt}: {reason}") from None
    except OSError as e:
        # polars reports a damaged compressed stream as a bare OSError (no errno, no file name:
        # "unexpected end of file", "corrupt deflate stream"); a real OS error (permission, I/O)
        # carries its errno or its own class, and propagates as it is.
        if type(e) is not OSError or e.errno is not None or _gzip_damage(path) is None:
            held.replay()
            raise
        reason = " ".join(str(e).split()) or "damaged stream"
        raise DataError(f"{path}: cannot read as {fmt}: damaged or truncated gzip ({reason})") from None
    except BaseException:
        held.replay()
        raise


class _Held:
    """Bytes written to file descriptor 2 while a reader ran and raised."""

    def __init__(self) -> None:
        self.data = b""

    def replay(self) -> None:
        """Writes them after all (the exception was not the reader's own error)."""
        data, self.data = self.data, b""
        with contextlib.suppress(OSError):
            os.write(2, data)


_HOLDING = threading.Lock()


@contextlib.contextmanager
def _native_stderr_held(held: _Held) -> Iterator[None]:
    """File descriptor 2 goes to a temporary file while the block runs; what landed there is
    written back afterwards, or, when the block raises, kept in ``held`` for the caller, who
    drops it when the exception is a reader's error it reports in one line of its own, and
    replays it otherwise. polars prints a panic's message (with RUST_BACKTRACE set, a whole
    backtrace) to the process's stderr before the panic reaches Python as an exception: a damaged
    file made the CLI print 6-20 lines before its one-line error. Python's ``sys.stderr`` writes
    to the same descriptor and is held too. One hold at a time: a block entered while another
    thread holds runs without one."""
    if not _HOLDING.acquire(blocking=False):
        yield
        return
    try:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no descriptor 2 (an embedding host)
            yield
            return
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield
            except BaseException:
                _restore(saved, tmp, held)
                raise
            _restore(saved, tmp, held)
            held.replay()
    finally:
        _HOLDING.release()


@contextlib.contextmanager
def quiet_polars() -> Iterator[None]:
    """A polars call on a user's file whose exception the caller turns into a message of its
    own: what polars writes to stderr meanwhile is written afterwards when the call succeeds, and
    dropped when it raises (see :func:`_native_stderr_held`)."""
    with _native_stderr_held(_Held()):
        yield


def _restore(saved: int, tmp: IO[bytes], held: _Held) -> None:
    """Descriptor 2 back from ``saved``; what the hold caught goes to ``held``."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
    tmp.seek(0)
    held.data = tmp.read()


def _gzip_damage(path: Path) -> str | None:
    """Why a gzip file (told by its first bytes, as polars tells it) cannot be decompressed to its
    end, or None when it can, is not gzip, or cannot be read (the caller's error stands then)."""
    try:
        with open(path, "rb") as f:
            if f.read(2) != b"\x1f\x8b":
                return None
        with gzip.open(path, "rb") as g:
            while g.read(1 << 20):
                pass
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:  # BadGzipFile is an OSError: caught first
        return " ".join(str(e).split()) or type(e).__name__
    except OSError:
        return None
    return None


def _explain_csv(path: Path, sep: str) -> str | None:
    """Why polars refused a text file: invalid UTF-8 (line and byte) or a row with too many fields."""
    if _gzip_damage(path) is not None:
        return None  # the caller names the damage
    bad = _first_invalid_utf8(path)
    if bad is not None:
        return bad
    with io.TextIOWrapper(_open_bytes(path), encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=sep)
        header = next(reader, [])
        start, last = reader.line_num + 1, None
        for i, row in enumerate(reader):
            if len(row) > len(header):
                return f"row {i} has {len(row)} fields; the header has {len(header)}"
            last, start = (start, row), reader.line_num + 1
    if last is not None and last[1] and "\n" in last[1][-1]:  # the last row ran to the end of the file
        return f"a quote opened at line {last[0]} is never closed"
    return None


def _open_bytes(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed when it is gzip (told by its first bytes, as polars tells
    it): the explanations below then read what the parser read, lines and bytes counted in the
    decompressed text."""
    with open(path, "rb") as f:
        is_gzip = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if is_gzip else open(path, "rb")


def _first_invalid_utf8(path: Path) -> str | None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    line, offset = 1, 0
    with _open_bytes(path) as f:
        while chunk := f.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as e:
                at = line + chunk.count(b"\n", 0, e.start)
                return f"invalid UTF-8 at line {at} (byte {offset + e.start})"
            line += chunk.count(b"\n")
            offset += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return f"invalid UTF-8 at the end of the file (byte {offset})"
    return None


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value; write null or a number")


def _explain_jsonl(path: Path) -> str | None:
    """The first line that is not UTF-8, not JSON (``NaN`` and ``Infinity`` are not, though
    Python reads them) or not a JSON object."""
    damage = _gzip_damage(path)
    if damage is not None:
        return f"damaged or truncated gzip ({damage})"
    bad = _first_invalid_utf8(path)
    if bad is not None:
        return bad
    with io.TextIOWrapper(_open_bytes(path), encoding="utf-8-sig") as f:
        for n, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                obj = loads_json(text, parse_constant=_not_json)
            except json.JSONDecodeError as e:
                return f"line {n} is not valid JSON ({e.msg})"
            except ValueError as e:
                return f"line {n} is not valid JSON ({e})"
            if not isinstance(obj, dict):
                return f"line {n} is not a JSON object"
    return None


def _duplicate_json_keys(path: Path, data: bytes, wanted: Mapping[str, str], rows: int) -> None:
    """Refuse an object naming a column we read twice (``{"user_id": 1, "user_id": 3}``): readers
    disagree on which value wins. A cheap count finds candidates; the lines are then parsed."""
    for col in dict.fromkeys(wanted.values()):
        key = re.compile(rb'"' + re.escape(json.dumps(col)[1:-1].encode()) + rb'"\s*:')
        if len(key.findall(data)) <= rows:
            continue
        for n, line in enumerate(data.decode("utf-8").splitlines(), start=1):
            if len(key.findall(line.encode())) < 2:
                continue
            pairs = json.loads(line, object_pairs_hook=lambda kv: kv)
            if isinstance(pairs, list) and sum(k == col for k, _ in pairs) > 1:
                raise DataError(f"{path}: line {n} has the key {col!r} twice; which value is meant cannot be told")


def _columns(path: Path, have: list[str], wanted: Mapping[str, str], shown: list[str] | None = None) -> list[str]:
    """The file's columns to read: every wanted one (a missing one is an error listing the
    file's columns, ``shown`` as written when given), plus ``rating`` when the file has it and
    it was not mapped."""
    for canonical, col in wanted.items():
        if col not in have:
            names = shown or have
            hint = ""
            if names and all(re.fullmatch(r"[-+]?[0-9][0-9.eE:/ TZ+-]*", n.strip()) for n in names):
                hint = "; the first line looks like data: is the header row missing?"
            raise DataError(f"{path}: missing column {col!r} (for {canonical}); the file has {names}{hint}")
    cols = list(dict.fromkeys(wanted.values()))
    if "rating" not in wanted and "rating" in have and "rating" not in cols:
        cols.append("rating")
    return cols


_SNIFF = 1 << 16  # bytes of a text file looked at for a NUL (a binary file given as text)


def _check_text(path: Path, fmt: str) -> None:
    """A text file holds no NUL byte: one in its first bytes means a binary file (parquet, a
    spreadsheet, a compressed file without .gz) whose bytes would otherwise become column names."""
    if path.suffix == ".gz":
        return
    with open(path, "rb") as f:
        head = f.read(_SNIFF)
    at = head.find(b"\x00")
    if at < 0:
        return
    line = head.count(b"\n", 0, at) + 1
    kind = next((hint for magic, hint in _MAGIC if head.startswith(magic)), "")
    raise DataError(f"{path}: not a {fmt} text file: NUL byte at line {line} (byte {at}){kind}")


_MAGIC = (
    (b"PAR1", " (it starts like a parquet file: name it .parquet)"),
    (b"\x1f\x8b", " (it starts like a gzip file: name it .csv.gz or .tsv.gz)"),
    (b"PK\x03\x04", " (it starts like a zip archive: unzip it first)"),
    (b"\xff\xfe", " (it starts like UTF-16 text: save it as UTF-8)"),
    (b"\xfe\xff", " (it starts like UTF-16 text: save it as UTF-8)"),
)


def _raw_header(path: Path, sep: str) -> list[str]:
    """The first row of a text file as written (polars renames repeated names)."""
    if path.suffix == ".gz":
        return []
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        return next(csv.reader(f, delimiter=sep), [])


def _duplicate_header(path: Path, names: list[str], wanted: Mapping[str, str]) -> None:
    """Refuse a header naming a column we read twice: which one was meant cannot be told (polars
    would silently read the first and rename the other)."""
    for col in dict.fromkeys(wanted.values()):
        at = [i for i, name in enumerate(names) if name == col]
        if len(at) > 1:
            raise DataError(f"{path}: the header has column {col!r} {len(at)} times (fields {at}); rename all but one")


def _read_text(path: Path, sep: str, has_header: bool, wanted: Mapping[str, str]) -> pl.DataFrame:
    """CSV/TSV with every column read as a string (types are decided by the policy above)."""
    fmt = "TSV" if sep == "\t" else "CSV"
    _check_text(path, fmt)
    with _translated(path, fmt, lambda: _explain_csv(path, sep)):
        head = pl.read_csv(path, separator=sep, has_header=has_header, n_rows=0, infer_schema=False).columns
    raw = _raw_header(path, sep) if has_header else []
    if any("\r" in h for h in head):
        raise DataError(
            f"{path}: lines end with a bare CR (carriage return, old Mac style); convert the line ends to LF or CRLF"
        )
    if has_header and any("_duplicated_" in h for h in head):  # how polars renames a repeated name
        _duplicate_header(path, raw, wanted)
    cols = _columns(path, head, wanted, raw or None)
    with _translated(path, fmt, lambda: _explain_csv(path, sep)):
        return pl.read_csv(path, separator=sep, has_header=has_header, columns=cols, infer_schema=False)


def _read_parquet(path: Path, wanted: Mapping[str, str]) -> pl.DataFrame:
    _io.check_parquet(path, list(wanted.values()))
    try:
        with _translated(path, "parquet"):
            have = list(pl.read_parquet_schema(path))
        cols = _columns(path, have, wanted)
        with _translated(path, "parquet"):
            return pl.read_parquet(path, columns=cols)
    except DataError as e:
        if _ZONE_REFUSED not in str(e):
            raise
        return _read_parquet_zoned(path, wanted, e)


# What polars' error says when a file's Arrow schema holds a time zone it does not know (a fixed
# offset such as '+05:30', which pandas writes for offset-aware datetimes, or an unknown name).
_ZONE_REFUSED = "unable to parse time zone"
_FIXED_OFFSET = re.compile(r"[+-]\d{2}(:?\d{2})?|Z")


def _read_parquet_zoned(path: Path, wanted: Mapping[str, str], refused: DataError) -> pl.DataFrame:
    """A parquet file whose timestamp column polars refuses for its time zone. Parquet stores
    such times as UTC instants (the zone only says how to show them), so a fixed offset is read
    with pyarrow and the column handed on in UTC — the same instants; any other zone polars does
    not know is an error naming the column and the zone. Columns not wanted are not read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception:  # noqa: BLE001 — pyarrow cannot read it either: polars' reason stands
        raise refused from None
    cols = _columns(path, schema.names, wanted)
    zoned = {}
    for c in cols:
        t = schema.field(c).type
        if pa.types.is_timestamp(t) and t.tz is not None:
            if not _FIXED_OFFSET.fullmatch(t.tz):
                raise DataError(
                    f"{path}: column {c!r} holds times in the time zone {t.tz!r}, which polars does not know "
                    "(it reads IANA names such as 'Europe/Berlin', 'UTC' and fixed offsets); write it in UTC"
                )
            zoned[c] = pa.timestamp(t.unit, tz="UTC")
    # (No zoned column wanted: the zone polars refused is in a column not read.)
    try:
        table = pq.read_table(path, columns=cols)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: cannot read as parquet: {str(e).strip().splitlines()[0]}") from None
    table = table.cast(pa.schema([pa.field(f.name, zoned.get(f.name, f.type)) for f in table.schema]))
    return pl.from_arrow(table)  # type: ignore[return-value]


def _ndjson(path: Path) -> tuple[pl.DataFrame, bytes]:
    """A JSON lines file read whole (polars reads it whole too), past a UTF-8 byte-order mark."""
    data = path.read_bytes()
    body = data[3:] if data.startswith(codecs.BOM_UTF8) else data
    with _translated(path, "JSON lines", lambda: _explain_jsonl(path)):
        return pl.read_ndjson(io.BytesIO(body), infer_schema_length=None), body


def _read_jsonl(path: Path, wanted: Mapping[str, str]) -> pl.DataFrame:
    df, data = _ndjson(path)
    cols = _columns(path, df.columns, wanted)
    _duplicate_json_keys(path, data, wanted, df.height)
    return df.select(cols)


def _read_table(
    path: Path, fmt: str, wanted: Mapping[str, str], separator: str | None, has_header: bool
) -> pl.DataFrame:
    """One reader per format, each translating its library's errors in one place."""
    _check_file(path)
    if fmt in ("csv", "tsv"):
        df = _read_text(path, separator or ("\t" if fmt == "tsv" else ","), has_header, wanted)
    elif fmt == "parquet":
        df = _read_parquet(path, wanted)
    else:
        df = _read_jsonl(path, wanted)
    if df.height == 0:
        raise DataError(f"{path}: no rows (the file has a header or schema and no data)")
    return df


def _mapping(columns: Mapping[str, str] | None, source: str) -> dict[str, str]:
    """Canonical name → the table's column name; ``rating`` only when asked for."""
    mapping = {c: c for c in REQUIRED}
    for canonical, src in (columns or {}).items():
        if canonical not in COLUMNS:
            raise DataError(f"{source}: unknown canonical column {canonical!r}; expected one of {COLUMNS}")
        mapping[canonical] = src
    seen: dict[str, str] = {}
    for canonical, src in mapping.items():  # one column read as two (e.g. users = items) is never meant
        if src in seen:
            raise DataError(
                f"{source}: column {src!r} is given for both {seen[src]} and {canonical}; each needs its own column"
            )
        seen[src] = canonical
    return mapping


def read_interactions(
    path: str | Path,
    columns: Mapping[str, str] | None = None,
    *,
    format: str | None = None,
    separator: str | None = None,
    has_header: bool = True,
    timestamp_format: str | None = None,
) -> pl.DataFrame:
    """Reads an interactions file and returns a validated table with the canonical columns.

    ``columns`` maps canonical names to the file's names, e.g.
    ``{"user_id": "userId", "item_id": "movieId", "timestamp": "timestamp", "rating": "rating"}``;
    canonical names not mapped are looked up under their own name. ``rating`` is optional: it is
    read when mapped (then it must exist) or when the file has a column named ``rating``.
    See the module doc for the id, timestamp and rating policy.
    """
    path = Path(path)
    _check_arguments(columns, separator, timestamp_format, str(path))
    _check_file(path)
    fmt = _format_of(path, format)
    mapping = _mapping(columns, str(path))
    df = _read_table(path, fmt, mapping, separator, has_header)
    out, order = _normalized(df, mapping, str(path), timestamp_format, True)
    if not df.schema[mapping["timestamp"]].is_temporal():  # a typed datetime carries its unit
        _warn_mixed_units(out.get_column("timestamp"), mapping["timestamp"], str(path))  # rows as in the file
    return out if order is None else _reordered(out, order)


def read_items(
    path: str | Path,
    id_column: str = "item_id",
    *,
    format: str | None = None,
    separator: str | None = None,
) -> pl.DataFrame:
    """Reads an item metadata file (csv/tsv/parquet/jsonl) keyed by ``id_column``, which is
    renamed to ``item_id`` and follows the id policy of the module doc (the other columns keep
    their inferred types)."""
    path = Path(path)
    _check_arguments({"item_id": id_column}, separator, None, str(path))
    _check_file(path)
    fmt = _format_of(path, format)
    if fmt in ("csv", "tsv"):
        sep = separator or ("\t" if fmt == "tsv" else ",")
        _check_text(path, fmt.upper())
        _duplicate_header(path, _raw_header(path, sep), {"item_id": id_column})
        with _translated(path, fmt.upper(), lambda: _explain_csv(path, sep)):
            df = pl.read_csv(path, separator=sep, schema_overrides={id_column: pl.String}, infer_schema_length=10000)
    elif fmt == "parquet":
        _io.check_parquet(path)
        with _translated(path, "parquet"):
            df = pl.read_parquet(path)
    else:
        df, data = _ndjson(path)
        _duplicate_json_keys(path, data, {"item_id": id_column}, df.height)
    _columns(path, df.columns, {"item_id": id_column})
    if id_column != "item_id" and "item_id" in df.columns:
        raise DataError(f"{path}: has both {id_column!r} (the id column) and 'item_id'; rename one of them")
    ids = _id_series(df.get_column(id_column), id_column, "item_id", str(path), infer_integers=True)
    rows = _first(ids.is_duplicated())
    if rows is not None:  # two rows of metadata for one item: which one holds cannot be told
        again = int((ids == ids[rows]).arg_true()[1])
        raise DataError(
            f"{path}: {_where(id_column, 'item_id')} has the duplicated id {_show(ids[rows])} at rows {rows} and {again}"
        )
    return df.with_columns(ids.alias(id_column)).rename({id_column: "item_id"})


# ------------------------------------------------------------------------------ validation
def normalize_interactions(
    df: pl.DataFrame,
    columns: Mapping[str, str] | None = None,
    *,
    source: str = "interactions",
    timestamp_format: str | None = None,
    infer_integer_ids: bool = False,
) -> pl.DataFrame:
    """Maps, checks and casts a table to the canonical interaction columns (see module doc).

    ``rating`` is kept when mapped in ``columns`` (then it must exist) or when the table has a
    ``rating`` column. ``infer_integer_ids`` turns String id columns whose every value is a
    canonical integer into Int64, as :func:`read_interactions` does for files.
    """
    out, order = _normalized(df, columns, source, timestamp_format, infer_integer_ids)
    return out if order is None else _reordered(out, order)


#: A string column as the core reads it (see :func:`string_buffers`).
StringBuffers = core.StringColumn


def _normalized(
    df: pl.DataFrame,
    columns: Mapping[str, str] | None,
    source: str,
    timestamp_format: str | None,
    infer_integer_ids: bool,
) -> tuple[pl.DataFrame, np.ndarray | None]:
    """The checked table with the rows still in the table's order (so that what is said about a
    row afterwards names the row the user wrote), and the order to put them in when sub-second
    times reorder some rows (see :func:`_within_second_order`; None: no row moves)."""
    out, _, fine = normalize_for_core(df, columns, source, timestamp_format, infer_integer_ids)
    order = _within_second_order(out.get_column("user_id"), out.get_column("timestamp"), fine.values) if fine else None
    return out, order


def normalize_for_core(
    df: pl.DataFrame,
    columns: Mapping[str, str] | None = None,
    source: str = "interactions",
    timestamp_format: str | None = None,
    infer_integer_ids: bool = False,
    defer_id_text: bool = False,
) -> tuple[pl.DataFrame, dict[str, StringBuffers], _Fine | None]:
    """The checked table in the table's own row order (``timestamp``: whole seconds), the Arrow
    buffers of its unchanged String id columns, and the full-precision times when some timestamp
    has a sub-second part (None otherwise). ``prepare`` hands the full times to the core
    (``ts_per_second``), which orders each user's rows by them while it groups them — no reorder
    of the table, no extra pass.

    ``defer_id_text`` (``prepare``, whose core call checks the distinct values of string ids
    while it encodes them): String id columns are handed on as they are, every one with its
    buffers, their text not checked here; the caller must hand the core's checks of them
    (``PreparedLog.user_id_check``) to :func:`id_text_refused`, and call again without deferring
    when it says so."""
    _check_arguments(columns, None, timestamp_format, source)
    if not isinstance(df, pl.DataFrame):
        raise DataError(f"{source}: expected a polars DataFrame of interactions, got {_kind_of(df)}")
    mapping = _mapping(columns, source)
    if "rating" not in mapping and "rating" in df.columns and "rating" not in mapping.values():
        mapping["rating"] = "rating"
    for canonical, col in mapping.items():
        if col not in df.columns:
            raise DataError(f"{source}: missing column {col!r} (for {canonical}); it has {df.columns}")
    out = df.select([pl.col(mapping[c]).alias(c) for c in COLUMNS if c in mapping])
    cols, buffers = [], {}
    for c in ("user_id", "item_id"):
        ids, buf = _id_series_buffers(
            out.get_column(c), mapping[c], c, source, infer_integers=infer_integer_ids, defer_text=defer_id_text
        )
        cols.append(ids.alias(c))
        if buf is not None:
            buffers[c] = buf
    seconds, fine = _timestamp_series(out.get_column("timestamp"), mapping["timestamp"], source, timestamp_format)
    cols.append(seconds)
    if "rating" in mapping:
        cols.append(_rating_series(out.get_column("rating"), mapping["rating"], source))
    return out.with_columns(cols), buffers, fine


# Tables of other libraries, by the top-level module of their class: how to hand them over.
_CONVERSIONS = {"pandas": "polars.from_pandas(df)", "pyarrow": "polars.from_arrow(table)"}


def _kind_of(obj: object) -> str:
    """What a table that is not a polars DataFrame is, for the error: its module and class (a bare
    'DataFrame' reads as the type asked for), and how to convert it where polars can."""
    if obj is None:
        return "None"
    t = type(obj)
    top = t.__module__.split(".")[0]
    kind = f"a {top}.{t.__name__}" if top != "builtins" else f"a {t.__name__}"
    hint = _CONVERSIONS.get(top)
    return f"{kind} (convert it with {hint})" if hint else kind


def _reordered(df: pl.DataFrame, order: np.ndarray) -> pl.DataFrame:
    return df.select(pl.all().gather(pl.Series(order)))


def _within_second_order(users: pl.Series, seconds: pl.Series, fine: pl.Series) -> np.ndarray | None:
    """The row order that puts the rows of each user and whole second in order of ``fine`` (the
    full-precision time; stable: equal times keep the table's order), each group of rows in the
    places its rows held, so every other row stays where it is (the core then orders each user's
    rows by whole seconds, stably); None when no row moves.

    Cheap where it can be: a table already in time order moves nothing (one pass); otherwise one
    stable sort by the full time finds the rows that share their second with another row (in
    time order those are runs), of which a hash of (user, second) keeps the rows that may share
    it with a row of the same user; only those — a few in a typical log — are grouped and sorted.
    Measured at 5M shuffled rows (50k users) with millisecond times: 0.76 s (5.1 s with every row
    sorted by (user, second) and by (user, time)). Only the tables this module returns pay it:
    ``prepare`` hands the full times to the core instead (:func:`normalize_for_core`; 0.19 s
    against 0.18 s for whole seconds on the same log)."""
    f = fine.to_numpy()
    n = len(f)
    if n < 2 or bool((f[1:] >= f[:-1]).all()):
        return None
    by_time = pl.DataFrame({"f": fine}).with_row_index("r").sort("f", maintain_order=True).get_column("r").to_numpy()
    sec = seconds.to_numpy()[by_time]
    same = np.zeros(n, dtype=bool)
    eq = sec[1:] == sec[:-1]
    same[1:] |= eq
    same[:-1] |= eq
    # A superset of the rows whose (user, second) has another row; a row alone in its (user,
    # second) keeps its place in both sorts below.
    cand = np.sort(by_time[same])
    if len(cand):  # of those, the rows whose (user, second) hash is shared (collisions only add rows)
        key = users.gather(pl.Series(cand)).hash(7).to_numpy() ^ (
            seconds.to_numpy()[cand].astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        )
        ordered = np.sort(key)
        shared = ordered[1:][ordered[1:] == ordered[:-1]]
        cand = cand[np.isin(key, shared)]
    if len(cand) == 0:
        return None
    idx = pl.Series(cand)
    frame = pl.DataFrame({"u": users.gather(idx), "s": seconds.gather(idx), "f": fine.gather(idx), "r": idx})
    # Sorted by (user, full time), the groups come in the order sorting by (user, second) gives
    # them, each as long: row j of one sort takes the place of row j of the other.
    places = frame.sort(["u", "s"], maintain_order=True).get_column("r").to_numpy()
    rows = frame.sort(["u", "f"], maintain_order=True).get_column("r").to_numpy()
    if np.array_equal(places, rows):
        return None
    order = np.arange(n, dtype=np.int64)
    order[places] = rows
    return order


def _where(col: str, canonical: str) -> str:
    return f"column {col!r}" if col == canonical else f"column {col!r} ({canonical})"


def _show(value: Any) -> str:
    """A value for a one-line message: its repr, on one line, at most 80 characters."""
    if isinstance(value, pl.Series):
        value = value.to_list()
    text = " ".join(repr(value).split())
    return text if len(text) <= 80 else text[:77] + "..."


def _first_value(s: pl.Series) -> str:
    return _show(s[0]) if len(s) else "none: no rows"


def _first(mask: pl.Series) -> int | None:
    """Index of the first True in ``mask`` (nulls count as False), or None."""
    mask = mask.fill_null(False)
    return int(mask.arg_true()[0]) if mask.any() else None


def _refuse_nulls(s: pl.Series, col: str, canonical: str, source: str, hint: str = "") -> None:
    row = _first(s.is_null())
    if row is not None:
        raise DataError(f"{source}: {_where(col, canonical)} is null at row {row}{hint}")


def _id_series(s: pl.Series, col: str, canonical: str, source: str, *, infer_integers: bool) -> pl.Series:
    """Apply the id policy of the module doc to one id column."""
    return _id_series_buffers(s, col, canonical, source, infer_integers=infer_integers)[0]


def _id_series_buffers(
    s: pl.Series, col: str, canonical: str, source: str, *, infer_integers: bool, defer_text: bool = False
) -> tuple[pl.Series, StringBuffers | None]:
    """:func:`_id_series`, and the Arrow buffers of the result when it is a String column the
    checks converted (None otherwise). ``defer_text``: a String column comes back as it is, with
    its buffers, its text unchecked (see :func:`normalize_for_core`)."""
    _refuse_nulls(s, col, canonical, source)
    if s.dtype == pl.Null:  # no values at all (an empty table of untyped columns)
        return s.cast(pl.Int64), None
    if isinstance(s.dtype, (pl.Categorical, pl.Enum)):
        s = s.cast(pl.String)
    if s.dtype == pl.String:
        if defer_text and not infer_integers:
            return s, string_buffers(s)
        return _string_ids(s, col, canonical, source, infer_integers)
    if s.dtype.is_integer():
        if s.dtype == pl.Int64 or (s.min() >= _INT64_MIN and s.max() <= _INT64_MAX):  # type: ignore[operator]
            return s.cast(pl.Int64), None
        return s.cast(pl.String), None  # exact decimal text of ids beyond int64
    if s.dtype.is_float():
        bad = ~s.is_finite() | (s != s.floor()) | (s < _INT64_MIN) | (s >= 2.0**63)
        row = _first(bad)
        if row is not None:
            raise DataError(
                f"{source}: {_where(col, canonical)} has id {_show(s[row])} at row {row}; "
                "float ids must be finite whole numbers"
            )
        return s.cast(pl.Int64), None
    raise DataError(
        f"{source}: {_where(col, canonical)} has type {s.dtype} (first value {_first_value(s)}); "
        "ids must be integers or strings"
    )


def string_buffers(s: pl.Series) -> core.StringColumn:
    """A string column as the core reads it, without a copy where polars allows: its own
    ``string_view`` chunks (:class:`~seqdistill.core.StringViews`, each chunk exported on its own:
    exporting the whole column would first join them, a copy of every view), else Arrow
    ``(offsets int64, data uint8)`` buffers in ``large_string`` layout (a converted copy).

    Measured at 20M rows of 6-8 byte ids on the 2-core machine: the views are handed over in
    ~0.1 ms; the ``large_string`` conversion took 0.28 s per column and as much fresh memory."""
    import pyarrow as pa

    views = _string_views(s, pa)
    if views is not None:
        return views
    arr = s.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_string())
    _, off_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(off_buf, dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    return offsets, data


def _string_views(s: pl.Series, pa: Any) -> core.StringViews | None:
    """The column's ``string_view`` chunks in place, or None where this polars or pyarrow does
    not export them (older versions) or a chunk holds nulls (the checks refuse those first)."""
    newest = getattr(getattr(pl, "CompatLevel", None), "newest", None)
    if newest is None or not hasattr(pa, "string_view"):
        return None
    chunks = []
    for part in s.get_chunks():
        arr = part.to_arrow(compat_level=newest())
        if isinstance(arr, pa.ChunkedArray):
            if arr.num_chunks != 1:
                return None
            arr = arr.chunk(0)
        if arr.type != pa.string_view() or arr.null_count:
            return None
        bufs = arr.buffers()
        n, at = len(arr), arr.offset
        v = np.frombuffer(bufs[1], dtype=np.uint8)[16 * at : 16 * (at + n)] if n else np.zeros(0, np.uint8)
        data = tuple(np.frombuffer(b, dtype=np.uint8) if b is not None else np.zeros(0, np.uint8) for b in bufs[2:])
        chunks.append((v, data))
    return core.StringViews(tuple(chunks))


def _string_ids(
    s: pl.Series, col: str, canonical: str, source: str, infer_integers: bool
) -> tuple[pl.Series, StringBuffers | None]:
    # One pass in the core answers the questions below for every value (seen stripped) at once;
    # only the rows with non-ASCII characters go through the Unicode check of their own. The
    # buffers it read are handed on with the column when the column comes out unchanged.
    buffers = string_buffers(s)
    text = core.check_id_text(buffers)
    if infer_integers and text.int_like:  # fast path: every value parses (none padded, empty, NaN-like)
        as_int = s.cast(pl.Int64, strict=False)
        if as_int.null_count() == 0:
            return (as_int, None) if _all_canonical(s) else (s, buffers)
    if text.padded:
        s, buffers = s.str.strip_chars(), None
    row = text.first_empty
    if row is not None:
        raise DataError(f"{source}: {_where(col, canonical)} has an empty id at row {row}")
    # The core found the ASCII controls; the rows holding any non-ASCII character (the only ones
    # that can hold a C1 control, a format character or a line/paragraph separator) are looked
    # at here, with one regular expression unless one of them holds such a character.
    wide = pl.Series(text.non_ascii.astype(np.int64))
    odd = s.gather(wide) if len(wide) else None
    if odd is not None and not odd.str.contains(_ODD_NON_ASCII).any():
        odd = None

    def first_with(pattern: str) -> int | None:
        hit = _first(odd.str.contains(pattern)) if odd is not None else None
        return int(wide[hit]) if hit is not None else None

    rows = [r for r in (text.first_control, first_with(r"\p{Cc}")) if r is not None]
    if rows:
        row = min(rows)
        raise DataError(
            f"{source}: {_where(col, canonical)} has the id {_show(s[row])} at row {row}, which holds a "
            "control character (a damaged or binary file?)"
        )
    row = first_with(r"\p{Cf}")
    if row is not None:
        char = next(c for c in s[row] if unicodedata.category(c) == "Cf")
        raise DataError(
            f"{source}: {_where(col, canonical)} has the id {_show(s[row])} at row {row}, which holds the "
            f"invisible character U+{ord(char):04X} ({unicodedata.name(char, 'format character').lower()}); "
            "ids that print the same would be different users or items — remove it"
        )
    row = first_with(r"[\p{Zl}\p{Zp}]")
    if row is not None:
        char = next(c for c in s[row] if unicodedata.category(c) in ("Zl", "Zp"))
        raise DataError(
            f"{source}: {_where(col, canonical)} has the id {_show(s[row])} at row {row}, which holds the "
            f"{unicodedata.name(char).lower()} U+{ord(char):04X} (a line break inside an id) — remove it"
        )
    row = text.first_nan_like
    if row is not None:
        raise DataError(
            f"{source}: {_where(col, canonical)} has the NaN-like id {_show(s[row])} at row {row}; ids must not be NaN"
        )
    if infer_integers and text.int_like:
        as_int = s.cast(pl.Int64, strict=False)
        if as_int.null_count() == 0 and _all_canonical(s):
            return as_int, None
    return s, buffers


def id_text_refused(s: pl.Series, text: core.IdTextCheck) -> bool:
    """Whether the id checks of a String id column (:func:`_string_ids`, ids not read as
    integers) would refuse it or change it, given ``check_id_text`` of its distinct values (rows:
    the first row of each). The answers of the core's check are about one value at a time, so
    they hold for the column; the rows holding non-ASCII values are checked here as there."""
    if text.padded or text.first_empty is not None or text.first_control is not None:
        return True
    if text.first_nan_like is not None:
        return True
    if len(text.non_ascii) == 0:
        return False
    return bool(s.gather(pl.Series(text.non_ascii.astype(np.int64))).str.contains(_ODD_NON_ASCII).any())


# Characters refused in an id that only non-ASCII rows can hold: C1 controls (U+0080-U+009F; Cc
# also covers the ASCII controls the core finds), format characters, line and paragraph separators.
_ODD_NON_ASCII = r"[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]"


def _all_canonical(s: pl.Series) -> bool:
    """Whether every value of ``s`` (each one a valid integer) is written canonically: no sign
    ``+``, no leading zero, no ``-0`` (the same test as the pattern ``0|-?[1-9][0-9]*``)."""
    odd = s.str.starts_with("+") | s.str.starts_with("-0") | (s.str.starts_with("0") & (s.str.len_bytes() > 1))
    return not odd.any()


# ------------------------------------------------------------------------------ timestamps
# Formats tried, in this order, to find the one most rows of a failing string column use.
_TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%#z",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%d.%m.%Y",
    "%d/%m/%Y",
    "%m/%d/%Y",
    "%Y/%m/%d %H:%M:%S",
    "%d/%m/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M:%S",
)
_ISO = tuple(f for f in _TIME_FORMATS if f.startswith("%Y-%m-%d") and "z" not in f)
_INTEGER = "integer seconds"
_SAMPLE = 2000


# Epoch values from 1973-03 to 5138 in seconds, milliseconds, microseconds and nanoseconds.
_UNITS = (("seconds", 10**8), ("milliseconds", 10**11), ("microseconds", 10**14), ("nanoseconds", 10**17))


def _warn_mixed_units(t: pl.Series, col: str, source: str) -> None:
    """Warn when integer timestamps span two epoch units (e.g. seconds and milliseconds): the
    order of a user's interactions would then be silently wrong."""
    if t.len() == 0 or t.max() < _UNITS[1][1]:  # type: ignore[operator]
        return
    found = []
    for i, (unit, low) in enumerate(_UNITS):
        high = _UNITS[i + 1][1] if i + 1 < len(_UNITS) else None
        row = _first((t >= low) & (t < high) if high is not None else t >= low)
        if row is not None:
            found.append((unit, row))
    if len(found) > 1:
        (u1, r1), (u2, r2) = found[0], found[-1]
        warnings.warn(
            f"{source}: {_where(col, 'timestamp')} mixes epoch units: {t[r1]} at row {r1} reads as "
            f"{u1}, {t[r2]} at row {r2} as {u2}; the order of interactions is wrong unless every "
            "timestamp uses one unit",
            SeqdistillWarning,
            stacklevel=3,
        )


#: Epoch counts per second in polars' datetime units.
_PER_SECOND = {"ms": 10**3, "us": 10**6, "ns": 10**9}
#: Text timestamps are parsed to the microsecond (a wider range than nanoseconds: 1677..2262).
_TEXT_UNIT: Final = "us"


#: Whole epoch seconds, and the full-precision epoch count when some value has a sub-second part.
class _Fine(NamedTuple):
    """Full-precision epoch counts, ``per_second`` to the second."""

    values: pl.Series
    per_second: int


_Times = tuple[pl.Series, _Fine | None]


def _whole_seconds(fine: pl.Series, per: int) -> _Times:
    """The whole epoch seconds of ``fine`` (an epoch count, ``per`` to the second; floored, as
    ``dt.epoch("s")`` does), and ``fine`` itself when some value has a sub-second part: only then
    can two rows of one second be out of order (None otherwise: the seconds say it all)."""
    seconds = (fine // per).alias("timestamp")
    return seconds, (_Fine(fine, per) if (fine % per != 0).any() else None)


def _warn_float32_seconds(s: pl.Series, col: str, source: str) -> None:
    """float32 holds whole numbers exactly only up to 2**24: epoch seconds of today (~1.7e9) reach
    us already rounded to steps of 128 s, which reorders a user's interactions and merges times."""
    if s.dtype != pl.Float32:
        return
    big = s.abs().max()
    if isinstance(big, float) and math.isfinite(big) and big > 2**24:
        step = 2 ** (math.floor(math.log2(big)) - 23)
        warnings.warn(
            f"{source}: {_where(col, 'timestamp')} is float32, which holds whole seconds exactly only up "
            f"to 2**24: values near {big:.0f} were rounded to steps of {step} s before seqdistill read them "
            "(store timestamps as int64 or float64)",
            SeqdistillWarning,
            stacklevel=4,
        )


def _timestamp_series(s: pl.Series, col: str, source: str, fmt: str | None) -> _Times:
    _refuse_nulls(s, col, "timestamp", source)
    if s.dtype == pl.Null:  # no values at all (an empty table of untyped columns)
        return s.cast(pl.Int64).alias("timestamp"), None
    if s.dtype.is_integer():
        as_int = s.cast(pl.Int64, strict=False)  # null where a value does not fit int64
        row = _first(as_int.is_null())
        if row is not None:
            raise DataError(
                f"{source}: {_where(col, 'timestamp')} has value {_show(s[row])} at row {row}, beyond int64"
            )
        return as_int.alias("timestamp"), None
    if s.dtype.is_float():
        _warn_float32_seconds(s, col, source)
        return _float_seconds(s, col, source), None
    if s.dtype == pl.Date:
        return s.cast(pl.Datetime("ms")).dt.epoch("s").alias("timestamp"), None
    if isinstance(s.dtype, pl.Datetime):
        unit = s.dtype.time_unit or "us"
        return _whole_seconds(s.dt.epoch(unit), _PER_SECOND[unit])
    if s.dtype == pl.String:
        as_int = s.cast(pl.Int64, strict=False) if fmt is None else None  # fast path: integer seconds
        if as_int is not None and as_int.null_count() == 0:
            return as_int.alias("timestamp"), None
        seconds, fine = _string_times(s.str.strip_chars(), col, source, fmt)
        return seconds.alias("timestamp"), fine
    raise DataError(
        f"{source}: {_where(col, 'timestamp')} has unsupported type {s.dtype} (first value {_first_value(s)})"
    )


def _float_seconds(s: pl.Series, col: str, source: str, text: pl.Series | None = None) -> pl.Series:
    """Whole float seconds as Int64; ``text`` is the column as written (for the message)."""
    shown = s if text is None else text
    row = _first(~s.is_finite() | (s != s.floor()))
    if row is not None:
        raise DataError(f"{source}: {_where(col, 'timestamp')} has non-integer value {_show(shown[row])} at row {row}")
    row = _first((s < _INT64_MIN) | (s >= 2.0**63))
    if row is not None:
        raise DataError(
            f"{source}: {_where(col, 'timestamp')} has value {_show(shown[row])} at row {row}, beyond int64"
        )
    return s.cast(pl.Int64).alias("timestamp")


def _parse(s: pl.Series, fmt: str, *, iso_family: bool = False) -> pl.Series:
    """Epoch microseconds of ``s`` read with one format (null where a value does not fit it; the
    pseudo-format ``_INTEGER`` gives integer seconds). With ``iso_family`` an ISO date or date-time
    format also accepts the other ISO dates and date-times (a column mixing ``2021-03-04`` and
    ``2021-03-05 10:00:00`` is common and parses as before)."""
    if fmt == _INTEGER:
        return s.cast(pl.Int64, strict=False)
    out = s.str.to_datetime(format=fmt, strict=False, time_unit=_TEXT_UNIT).dt.epoch(_TEXT_UNIT)
    if iso_family and fmt in _ISO:
        for other in _ISO:
            out = out.fill_null(
                s.str.to_datetime(format=other, strict=False, time_unit=_TEXT_UNIT).dt.epoch(_TEXT_UNIT)
            )
    return out


def _inferred(s: pl.Series) -> pl.Series:
    """Epoch microseconds with the date or date-time format polars infers from the first values
    (dates fill what date-times leave; a zone-aware column, ``Z`` or ``+02:00``, works too)."""
    out = pl.Series(s.name, [None] * len(s), dtype=pl.Int64)
    for parse in (
        lambda: s.str.to_datetime(strict=False, time_unit=_TEXT_UNIT),
        lambda: s.str.to_date(strict=False).cast(pl.Datetime(_TEXT_UNIT)),
    ):
        try:
            out = out.fill_null(parse().dt.epoch(_TEXT_UNIT))
        except pl.exceptions.PolarsError:  # no format fits the first values: nothing parses this way
            continue
        if not out.null_count():
            break
    return out


def _string_times(s: pl.Series, col: str, source: str, fmt: str | None) -> _Times:
    where = f"{source}: {_where(col, 'timestamp')}"
    row = _first(s.str.len_bytes() == 0)
    if row is not None:
        raise DataError(f"{where} is empty at row {row}")
    per = _PER_SECOND[_TEXT_UNIT]
    if fmt is not None:
        parsed = s.str.to_datetime(format=fmt, strict=False, time_unit=_TEXT_UNIT)
        row = _first(parsed.is_null())
        if row is not None:
            raise DataError(f"{where} has value {_show(s[row])} at row {row}, which does not match the format {fmt!r}")
        return _whole_seconds(parsed.dt.epoch(_TEXT_UNIT), per)
    as_int = s.cast(pl.Int64, strict=False)
    if as_int.null_count() == 0:
        return as_int, None
    row = _first(as_int.is_null() & s.str.contains(r"^[-+]?[0-9]+$"))
    if row is not None:  # digits only, yet not an int64: say so rather than "non-integer"
        raise DataError(f"{where} has value {_show(s[row])} at row {row}, beyond int64")
    as_float = s.cast(pl.Float64, strict=False)
    if as_float.null_count() == 0:
        return _float_seconds(as_float, col, source, s), None
    numeric = _day_month_format(s, where)
    if numeric is not None:
        return _whole_seconds(_parse(s, numeric), per)
    inferred = _inferred(s)
    if inferred.null_count() == 0:
        return _whole_seconds(inferred, per)
    return _blame_time_format(s, where, inferred)


# Numeric dates with the day and month in either order ("03/04/2021", with or without a time).
_NUMERIC_DATE = re.compile(r"\d{1,2}([/.-])\d{1,2}\1\d{4}( \d{1,2}:\d{2}(:\d{2})?)?")


def _day_month_format(s: pl.Series, where: str) -> str | None:
    """The format of a column of numeric dates whose day and month may come in either order
    (``03/04/2021``, the first value deciding the separator and the time part): the one order
    every value fits, or an error when both fit every value and read some differently — polars'
    inference guessed day-first there, and one more row with a day above 12 flipped every row to
    month-first. None when the column is not such dates or fits neither order (the usual blame
    then names the row)."""
    m = _NUMERIC_DATE.fullmatch(s[0])
    if m is None:
        return None
    sep, time = m.group(1), "" if m.group(2) is None else " %H:%M:%S" if m.group(3) else " %H:%M"
    day_first, month_first = f"%d{sep}%m{sep}%Y{time}", f"%m{sep}%d{sep}%Y{time}"
    a, b = _parse(s, day_first), _parse(s, month_first)
    if a.null_count() == 0 and b.null_count() == 0:
        row = _first(a != b)
        if row is not None:
            raise DataError(
                f"{where} has dates that read as day-month and as month-day alike (row {row}: "
                f"{_show(s[row])}); pass timestamp_format (--timestamp-format), e.g. {day_first!r} or {month_first!r}"
            )
    return day_first if a.null_count() == 0 else month_first if b.null_count() == 0 else None


def _blame_time_format(s: pl.Series, where: str, inferred: pl.Series) -> _Times:
    """Parse with the format most rows use; raise naming the first row that does not fit it
    (with no known format fitting any row, the first row the inferred format does not parse)."""
    step = max(1, len(s) // _SAMPLE)
    sample = s.gather_every(step)
    counts = {f: len(sample) - _parse(sample, f).null_count() for f in (_INTEGER, *_TIME_FORMATS)}
    best = max(counts, key=counts.__getitem__)  # the first of equals, in the order above
    if counts[best] == 0:
        row = _first(inferred.is_null()) or 0
        raise DataError(
            f"{where} has unparsable value {_show(s[row])} at row {row}; pass timestamp_format "
            "(--timestamp-format) with its strftime pattern"
        )
    parsed = _parse(s, best, iso_family=True)
    row = _first(parsed.is_null())
    if row is None:
        return (parsed, None) if best == _INTEGER else _whole_seconds(parsed, _PER_SECOND[_TEXT_UNIT])
    raise DataError(
        f"{where} has value {_show(s[row])} at row {row}, which does not match the format {best!r} that most rows use"
    )


def _rating_series(s: pl.Series, col: str, source: str) -> pl.Series:
    _refuse_nulls(s, col, "rating", source, "; fill or drop it explicitly")
    if s.dtype == pl.String and s.cast(pl.Float32, strict=False).null_count():
        s = s.str.strip_chars()  # only when some value does not parse as it is
    if not (s.dtype == pl.String or s.dtype.is_numeric() or s.dtype == pl.Boolean):
        raise DataError(f"{source}: {_where(col, 'rating')} has unsupported type {s.dtype} (first value {_show(s[0])})")
    wide = s.cast(pl.Float64, strict=False)
    row = _first(wide.is_null() | ~wide.is_finite())
    if row is not None:
        raise DataError(
            f"{source}: {_where(col, 'rating')} has non-numeric value {_show(s[row])} at row {row}; ratings must be finite numbers"
        )
    row = _first(wide.abs() > _FLOAT32_MAX)
    if row is not None:
        raise DataError(
            f"{source}: {_where(col, 'rating')} has value {_show(s[row])} at row {row}, beyond the float32 range "
            "ratings are stored in"
        )
    return wide.cast(pl.Float32).alias("rating")
