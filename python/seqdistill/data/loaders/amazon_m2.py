"""Amazon-M2 (KDD Cup 2023, Jin et al.): multilingual shopping sessions.

`sessions_train.csv`: prev_items, next_item, locale. prev_items is a numpy-style list literal,
e.g. "['B09W9FND7K' 'B09JSPLN1M']" -- items separated by whitespace (no commas) and, for long
sessions, line breaks inside the quoted CSV field.
`products_train.csv`: id, locale, title, price, brand, color, size, model, material, desc.

A session is a user; its sequence is prev_items followed by next_item. The data have no
timestamps, so time is derived: timestamp = session_index x L + position, where session_index is
the session's row in the file (before any locale filter), position its place in the session, and
L the longest session length in the file. Sessions thus never overlap in time and file order is
the only notion of time, so a global temporal split cuts the file into earlier and later sessions.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ._common import DataError, PathLike, cast_column, dedupe_items, make_raw, read_csv_strings, require_columns

_TOKEN = r"'[^']*'|\"[^\"]*\""
PRODUCT_COLUMNS = ["title", "price", "brand", "color", "size", "model", "material", "desc"]


def parse_item_lists(s: pl.Series, name: str) -> pl.Series:
    """Parse numpy-style list literals ("['A' 'B']", possibly with line breaks) into List[str].

    Anything other than quoted tokens, whitespace and the enclosing brackets is an error that
    names the file, the record and the value."""
    rest = s.str.replace_all(_TOKEN, "").str.replace_all(r"\s", "")
    bad = (rest != "[]") | s.is_null()
    if bad.any():
        i = int(bad.arg_true()[0])
        raise DataError(
            f"{name}: column 'prev_items', record {i + 1}: value {s[i]!r} is not a list literal like \"['A' 'B']\""
        )
    tokens = s.str.extract_all(_TOKEN).list.eval(pl.element().str.slice(1, pl.element().str.len_chars() - 2))
    return tokens


def read_sessions(path: PathLike, locale: str | list[str] | None = None) -> tuple[pl.DataFrame, int]:
    """Read sessions_train.csv into canonical interactions (one user per session).

    Returns (interactions, L) with L the time stride per session (see module docstring)."""
    path = Path(path)
    name = str(path)
    df = read_csv_strings(path, name)
    require_columns(df, ["prev_items", "next_item", "locale"], name)
    df = cast_column(df, "next_item", pl.String, name, unit="record", first_line=1, allow_null=False)
    prev = parse_item_lists(df["prev_items"], name)
    df = df.with_columns(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("user_id"),
        pl.concat_list(prev, pl.col("next_item")).alias("seq"),
    )
    stride = int(df["seq"].list.len().max() or 1)
    if locale is not None:
        wanted = [locale] if isinstance(locale, str) else list(locale)
        df = df.filter(pl.col("locale").is_in(wanted))
    inter = (
        df.select("user_id", "seq")
        .with_columns(pl.int_ranges(0, pl.col("seq").list.len(), dtype=pl.Int64).alias("pos"))
        .explode("seq", "pos")
        .select(
            "user_id",
            pl.col("seq").alias("item_id"),
            (pl.col("user_id") * stride + pl.col("pos")).alias("timestamp"),
        )
    )
    return inter, stride


def read_products(path: PathLike, locale: str | list[str] | None = None) -> pl.DataFrame:
    """Read products_train.csv into an item table keyed by `item_id` (the product id).

    The same id can be listed in several locales; with a locale filter only those rows are
    kept, and in any case the first row per id (file order) wins."""
    path = Path(path)
    name = str(path)
    df = read_csv_strings(path, name)
    require_columns(df, ["id", "locale", "title"], name)
    df = cast_column(df, "id", pl.String, name, unit="record", first_line=1, allow_null=False)
    if "price" in df.columns:
        df = cast_column(df, "price", pl.Float64, name, unit="record", first_line=1)
    if locale is not None:
        wanted = [locale] if isinstance(locale, str) else list(locale)
        df = df.filter(pl.col("locale").is_in(wanted))
    cols = ["locale"] + [c for c in PRODUCT_COLUMNS if c in df.columns]
    text = [c for c in cols if df.schema[c] == pl.String]
    df = df.select(pl.col("id").alias("item_id"), *cols).with_columns(
        [pl.when(pl.col(c).str.strip_chars() == "").then(None).otherwise(pl.col(c)).alias(c) for c in text]
    )
    return dedupe_items(df)


def load_amazon_m2(folder: PathLike, locale: str | list[str] | None = None, name: str = "amazon-m2"):
    """Load Amazon-M2 from a folder with sessions_train.csv and (optionally) products_train.csv.

    `locale` (e.g. "UK" or ["DE", "JP"]) keeps only sessions and products of those locales."""
    folder = Path(folder)
    spath, ppath = folder / "sessions_train.csv", folder / "products_train.csv"
    inter, stride = read_sessions(spath, locale)
    items = read_products(ppath, locale) if ppath.exists() else None
    extra = {
        "source_files": [str(spath)] + ([str(ppath)] if items is not None else []),
        "locale": locale,
        "time": f"timestamp = session_row * {stride} + position (no timestamps in the data)",
        "session_stride": stride,
    }
    return make_raw(name, inter, items, "sessions", extra)
