"""MTS Kion (Petrov et al., 2022): implicit movie/series views with watch share.

`interactions.csv`: user_id, item_id, last_watch_dt (YYYY-MM-DD), total_dur, watched_pct.
`items.csv`: item_id, content_type, title, title_orig, release_year, genres, countries, for_kids,
age_rating, studios, directors, actors, description, keywords (quoted fields may hold commas
and newlines).

`rating` is `watched_pct` (a share 0..100, Float32). Time has day resolution: timestamp =
days since 1970-01-01 x 86400 (Int64 seconds). Many views share a day; the data contract sorts
stably by time, so ties keep the file order of interactions.csv.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import polars as pl

from ._common import (
    DataError,
    PathLike,
    cast_column,
    dedupe_items,
    interactions_frame,
    make_raw,
    read_csv_strings,
    require_columns,
)

INTERACTION_COLUMNS = ["user_id", "item_id", "last_watch_dt", "total_dur", "watched_pct"]
ITEM_TEXT_COLUMNS = [
    "content_type",
    "title",
    "title_orig",
    "genres",
    "countries",
    "age_rating",
    "studios",
    "directors",
    "actors",
    "description",
    "keywords",
]
NullPolicy = Literal["zero", "drop", "keep"]


def read_interactions_csv(path: PathLike, null_watched_pct: NullPolicy = "zero") -> tuple[pl.DataFrame, int]:
    """Read Kion interactions as canonical columns; returns (table, number of null watched_pct).

    `null_watched_pct`: "zero" sets a missing share to 0, "drop" removes those rows, "keep"
    leaves a null rating."""
    if null_watched_pct not in ("zero", "drop", "keep"):
        raise DataError(f"null_watched_pct must be 'zero', 'drop' or 'keep', got {null_watched_pct!r}")
    path = Path(path)
    name = str(path)
    df = read_csv_strings(path, name)
    require_columns(df, ["user_id", "item_id", "last_watch_dt", "watched_pct"], name)
    df = cast_column(df, "user_id", pl.Int64, name, allow_null=False)
    df = cast_column(df, "item_id", pl.Int64, name, allow_null=False)
    df = cast_column(df, "last_watch_dt", pl.Date, name, allow_null=False)
    df = cast_column(df, "watched_pct", pl.Float32, name)
    pct = df["watched_pct"]
    out_of_range = (pct < 0) | (pct > 100)
    if out_of_range.any():
        i = int(out_of_range.arg_true()[0])
        raise DataError(f"{name}: column 'watched_pct', line {i + 2}: value {pct[i]} is outside 0..100")
    n_null = int(pct.null_count())
    if null_watched_pct == "zero":
        df = df.with_columns(pl.col("watched_pct").fill_null(0.0))
    elif null_watched_pct == "drop":
        df = df.filter(pl.col("watched_pct").is_not_null())
    ts = df["last_watch_dt"].cast(pl.Int64) * 86400  # Date is days since the epoch
    return interactions_frame(df["user_id"], df["item_id"], ts, df["watched_pct"]), n_null


def read_items_csv(path: PathLike) -> pl.DataFrame:
    """Read Kion items.csv into an item table keyed by `item_id` (release_year as Int64)."""
    path = Path(path)
    name = str(path)
    df = read_csv_strings(path, name)
    require_columns(df, ["item_id", "title"], name)
    df = cast_column(df, "item_id", pl.Int64, name, unit="record", allow_null=False)
    if "release_year" in df.columns:  # written as 2005.0
        df = cast_column(df, "release_year", pl.Float64, name, unit="record")
        df = df.with_columns(pl.col("release_year").cast(pl.Int64))
    if "for_kids" in df.columns:
        df = cast_column(df, "for_kids", pl.Float64, name, unit="record")
        df = df.with_columns(pl.col("for_kids").cast(pl.Boolean))
    keep = ["item_id", "release_year", "for_kids"] + ITEM_TEXT_COLUMNS
    df = df.select([c for c in keep if c in df.columns])
    text = [c for c in ITEM_TEXT_COLUMNS if c in df.columns]
    df = df.with_columns(pl.col(text).str.strip_chars()).with_columns(
        [pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c)).alias(c) for c in text]
    )
    return dedupe_items(df)


def load_kion(folder: PathLike, null_watched_pct: NullPolicy = "zero", name: str = "kion"):
    """Load MTS Kion from a folder holding interactions.csv and (optionally) items.csv."""
    folder = Path(folder)
    ipath = folder / "interactions.csv"
    inter, n_null = read_interactions_csv(ipath, null_watched_pct)
    mpath = folder / "items.csv"
    items = read_items_csv(mpath) if mpath.exists() else None
    extra = {
        "source_files": [str(ipath)] + ([str(mpath)] if items is not None else []),
        "null_watched_pct": {"count": n_null, "policy": null_watched_pct},
        "timestamp_resolution": "day (ties keep file order)",
    }
    return make_raw(name, inter, items, "movies", extra)
