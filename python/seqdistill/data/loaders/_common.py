"""Helpers shared by the source loaders: opening (gzipped) text, strict casts with clear errors,
column checks, and building the `RawDataset` of the data contract."""
from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import IO, Any

import polars as pl

from seqdistill.data.interactions import DataError, RawDataset

PathLike = str | Path


def open_text(path: PathLike, encoding: str = "utf-8") -> IO[str]:
    """Open a text file for reading, transparently decompressing `.gz` files."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding, newline="")
    return open(path, encoding=encoding, newline="")


def read_bytes(path: PathLike) -> bytes:
    """Read a whole file as bytes, decompressing `.gz` files."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as f:
            return f.read()
    return path.read_bytes()


def read_csv_strings(source: PathLike | bytes, name: str, **kwargs: Any) -> pl.DataFrame:
    """Read a CSV with every column as a string (casts happen later, with clear errors).

    `name` is the file name used in error messages."""
    data = source
    if not isinstance(source, bytes):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file")
        data = read_bytes(path) if path.suffix == ".gz" else path
    try:
        return pl.read_csv(data, infer_schema=False, **kwargs)
    except pl.exceptions.PolarsError as e:  # malformed quoting, ragged rows, ...
        raise DataError(f"{name}: cannot read as CSV: {e}") from e


def require_columns(df: pl.DataFrame, needed: list[str], name: str) -> None:
    """Raise a ValueError naming the file and every missing column."""
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(
            f"{name}: missing column(s) {missing}; the file has columns {df.columns}"
        )


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
    `allow_null` is False) raises a ValueError naming the file, column, line and value.

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
        raise DataError(
            f"{name}: column {column!r}, {unit} {i + first_line}: {what} is not a valid {dtype}"
        )
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
    return RawDataset(
        name=name, interactions=interactions, items=items, domain=domain, extra=dict(extra or {})
    )


def dedupe_items(items: pl.DataFrame) -> pl.DataFrame:
    """Keep the first row per raw `item_id` (file order), so the table is keyed by `item_id`."""
    return items.unique(subset="item_id", keep="first", maintain_order=True)
