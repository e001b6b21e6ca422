"""Interaction tables: reading, column mapping and validation.

An interactions table has the canonical columns ``user_id``, ``item_id``, ``timestamp`` (Int64)
and optionally ``rating`` (Float32). Ids stay in their raw type (Int64 or String) until
:func:`seqdistill.data.prepare` encodes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import polars as pl

COLUMNS = ("user_id", "item_id", "timestamp", "rating")
REQUIRED = ("user_id", "item_id", "timestamp")
DOMAINS = ("products", "movies", "sessions", "generic")


class DataError(ValueError):
    """Bad input: the message names the source, the column and the offending value."""


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


_FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def _format_of(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        return fmt
    suffixes = [s for s in path.suffixes if s != ".gz"]
    if suffixes and suffixes[-1] in _FORMATS:
        return _FORMATS[suffixes[-1]]
    raise DataError(f"{path}: cannot tell the format from the name; pass format='csv'|'tsv'|'parquet'|'jsonl'")


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
    canonical names not mapped are looked up under their own name. ``rating`` is optional.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    fmt = _format_of(path, format)
    if fmt in ("csv", "tsv"):
        sep = separator or ("\t" if fmt == "tsv" else ",")
        df = pl.read_csv(path, separator=sep, has_header=has_header, infer_schema_length=10000, try_parse_dates=False)
    elif fmt == "parquet":
        df = pl.read_parquet(path)
    elif fmt == "jsonl":
        df = pl.read_ndjson(path)
    else:
        raise DataError(f"{path}: unknown format {fmt!r}")
    return normalize_interactions(df, columns, source=str(path), timestamp_format=timestamp_format)


def normalize_interactions(
    df: pl.DataFrame,
    columns: Mapping[str, str] | None = None,
    *,
    source: str = "interactions",
    timestamp_format: str | None = None,
) -> pl.DataFrame:
    """Maps, checks and casts a table to the canonical interaction columns (see module doc)."""
    mapping = {c: c for c in COLUMNS}
    for canonical, src in (columns or {}).items():
        if canonical not in COLUMNS:
            raise DataError(f"{source}: unknown canonical column {canonical!r}; expected one of {COLUMNS}")
        mapping[canonical] = src
    for canonical in REQUIRED:
        if mapping[canonical] not in df.columns:
            raise DataError(
                f"{source}: missing column {mapping[canonical]!r} (for {canonical}); the file has {df.columns}"
            )
    has_rating = mapping["rating"] in df.columns
    keep = [c for c in COLUMNS if c in REQUIRED or has_rating]
    out = df.select([pl.col(mapping[c]).alias(c) for c in keep])
    out = out.with_columns(
        _id_column(out, "user_id", mapping, source),
        _id_column(out, "item_id", mapping, source),
        _timestamp_column(out, mapping, source, timestamp_format),
    )
    if has_rating:
        out = out.with_columns(_rating_column(out, mapping, source))
    return out


def _first_null(df: pl.DataFrame, col: str) -> int | None:
    nulls = df.get_column(col).is_null()
    if nulls.any():
        return int(nulls.arg_true()[0])
    return None


def _id_column(df: pl.DataFrame, col: str, mapping: Mapping[str, str], source: str) -> pl.Series:
    row = _first_null(df, col)
    if row is not None:
        raise DataError(f"{source}: column {mapping[col]!r} ({col}) is null at row {row}")
    s = df.get_column(col)
    if s.dtype == pl.String:
        return s
    if s.dtype.is_integer():
        if s.dtype == pl.UInt64 and len(s) and s.max() > 2**63 - 1:
            return s.cast(pl.String)
        return s.cast(pl.Int64)
    return s.cast(pl.String)


def _timestamp_column(df: pl.DataFrame, mapping: Mapping[str, str], source: str, fmt: str | None) -> pl.Series:
    col = mapping["timestamp"]
    row = _first_null(df, "timestamp")
    if row is not None:
        raise DataError(f"{source}: column {col!r} (timestamp) is null at row {row}")
    s = df.get_column("timestamp")
    if s.dtype.is_integer():
        return s.cast(pl.Int64)
    if s.dtype.is_float():
        bad = ~s.is_finite() | (s != s.floor())
        if bad.any():
            i = int(bad.arg_true()[0])
            raise DataError(f"{source}: column {col!r} (timestamp) has non-integer value {s[i]!r} at row {i}")
        return s.cast(pl.Int64)
    if s.dtype == pl.Date:
        return s.cast(pl.Datetime("ms")).dt.epoch("s")
    if isinstance(s.dtype, pl.Datetime):
        return s.dt.epoch("s")
    if s.dtype == pl.String:
        if fmt is None:
            as_int = s.str.strip_chars().cast(pl.Int64, strict=False)
            if as_int.null_count() == 0:
                return as_int
            parsed = s.str.to_datetime(strict=False, time_unit="ms")
            parsed = parsed.fill_null(s.str.to_date(strict=False).cast(pl.Datetime("ms")))
        else:
            parsed = s.str.to_datetime(format=fmt, strict=False, time_unit="ms")
        bad = parsed.is_null()
        if bad.any():
            i = int(bad.arg_true()[0])
            raise DataError(f"{source}: column {col!r} (timestamp) has unparsable value {s[i]!r} at row {i}")
        return parsed.dt.epoch("s")
    raise DataError(f"{source}: column {col!r} (timestamp) has unsupported type {s.dtype}")


def _rating_column(df: pl.DataFrame, mapping: Mapping[str, str], source: str) -> pl.Series:
    col = mapping["rating"]
    s = df.get_column("rating")
    row = _first_null(df, "rating")
    if row is not None:
        raise DataError(f"{source}: column {col!r} (rating) is null at row {row}; fill or drop it explicitly")
    cast = s.cast(pl.Float32, strict=False)
    bad = cast.is_null() | cast.is_nan()
    if bad.any():
        i = int(bad.arg_true()[0])
        raise DataError(f"{source}: column {col!r} (rating) has non-numeric value {s[i]!r} at row {i}")
    return cast
