"""Helpers shared by the source loaders: opening (gzipped) text, strict casts with clear errors,
column checks, and building the `RawDataset` of the data contract.

Reading follows :mod:`seqdistill.data.interactions`: a missing path, a folder where a file is
expected, an empty file, invalid UTF-8 and malformed CSV are :class:`~seqdistill.errors.DataError`
naming the file (and the line where it can be found); operating-system errors stay `OSError`."""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import polars as pl

from seqdistill.data.interactions import RawDataset, _check_file, _explain_csv, _translated
from seqdistill.errors import DataError

__all__ = [
    "DataError",
    "PathLike",
    "cast_column",
    "dedupe_items",
    "interactions_frame",
    "make_raw",
    "open_text",
    "read_bytes",
    "read_csv_strings",
    "require_columns",
]

PathLike = str | Path


class _Text:
    """A text file read line by line whose decoding errors become a DataError naming the file
    and the line (the loaders iterate over lines; nothing else is needed)."""

    def __init__(self, path: Path, raw: IO[str]) -> None:
        self._path, self._raw, self._line = path, raw, 0

    def __enter__(self) -> _Text:
        return self

    def __exit__(self, *exc: object) -> None:
        self._raw.close()

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        try:
            line = next(self._raw)
        except UnicodeDecodeError as e:
            raise DataError(f"{self._path}: invalid {e.encoding} at line {self._line + 1}") from None
        except (gzip.BadGzipFile, EOFError, zlib.error) as e:  # a damaged or truncated .gz
            raise DataError(f"{self._path}: not a readable gzip file ({e})") from None
        self._line += 1
        return line

    def read(self) -> str:
        return "".join(self)

    def close(self) -> None:
        self._raw.close()


def open_text(path: PathLike, encoding: str = "utf-8") -> _Text:
    """Open a text file for reading line by line, transparently decompressing `.gz` files."""
    path = Path(path)
    _check_file(path)
    if path.suffix == ".gz":
        raw: IO[str] = io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding, newline="")
    else:
        raw = open(path, encoding=encoding, newline="")
    return _Text(path, raw)


def read_bytes(path: PathLike) -> bytes:
    """Read a whole file as bytes, decompressing `.gz` files (a damaged archive is a DataError)."""
    path = Path(path)
    _check_file(path)
    if path.suffix == ".gz":
        try:
            with gzip.open(path, "rb") as f:
                return f.read()
        except (gzip.BadGzipFile, EOFError) as e:
            raise DataError(f"{path}: not a readable gzip file ({e})") from None
    return path.read_bytes()


def read_csv_strings(source: PathLike | bytes, name: str, **kwargs: Any) -> pl.DataFrame:
    """Read a CSV with every column as a string (casts happen later, with clear errors).

    `name` is the file name used in error messages."""
    data: Path | bytes
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        _check_file(path)
        data = read_bytes(path) if path.suffix == ".gz" else path
    explain = (lambda: None) if isinstance(data, bytes) else (lambda: _explain_csv(data, kwargs.get("separator", ",")))
    with _translated(Path(name), "CSV", explain):  # malformed quoting, ragged rows, invalid UTF-8, ...
        return pl.read_csv(data, infer_schema=False, **kwargs)


def require_columns(df: pl.DataFrame, needed: list[str], name: str) -> None:
    """Raise a DataError naming the file and every missing column."""
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(f"{name}: missing column(s) {missing}; the file has columns {df.columns}")


def cast_column(
    df: pl.DataFrame,
    column: str,
    dtype: pl.DataType | type[pl.DataType],
    name: str,
    *,
    first_line: int = 2,
    unit: str = "line",
    allow_null: bool = True,
) -> pl.DataFrame:
    """Cast a string column to `dtype`; a value that does not convert (or a null when
    `allow_null` is False) raises a DataError naming the file, column, line and value.

    `first_line` is the line (or record) number of the first data row in the file."""
    s = df[column]
    if s.dtype == pl.String:
        s = s.str.strip_chars()
        s = s.set(s == "", None)  # an empty field is a missing value
    if dtype == pl.Date and s.dtype == pl.String:
        out = s.str.to_date("%Y-%m-%d", strict=False)
    else:
        out = s.cast(dtype, strict=False)
    bad = out.is_null() & s.is_not_null()
    if not allow_null:
        bad = bad | out.is_null()
    if bad.any():
        i = int(bad.arg_true()[0])
        value = s[i]
        what = "a missing value" if value is None else f"value {value!r}"
        raise DataError(f"{name}: column {column!r}, {unit} {i + first_line}: {what} is not a valid {dtype}")
    return df.with_columns(out.alias(column))


def interactions_frame(
    user_id: pl.Series, item_id: pl.Series, timestamp: pl.Series, rating: pl.Series | None = None
) -> pl.DataFrame:
    """Assemble the canonical interactions table (`user_id`, `item_id`, `timestamp` Int64,
    optional `rating` Float32), in the given (file) order."""
    cols = [user_id.alias("user_id"), item_id.alias("item_id"), timestamp.cast(pl.Int64).alias("timestamp")]
    if rating is not None:
        cols.append(rating.cast(pl.Float32).alias("rating"))
    return pl.DataFrame(cols)


def make_raw(
    name: str,
    interactions: pl.DataFrame,
    items: pl.DataFrame | None,
    domain: str,
    extra: dict | None = None,
):
    """Build the data contract's `RawDataset`."""
    return RawDataset(name=name, interactions=interactions, items=items, domain=domain, extra=dict(extra or {}))


def dedupe_items(items: pl.DataFrame) -> pl.DataFrame:
    """Keep the first row per raw `item_id` (file order), so the table is keyed by `item_id`."""
    return items.unique(subset="item_id", keep="first", maintain_order=True)
