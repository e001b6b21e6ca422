"""Amazon Beauty (McAuley et al., 2014/2015 crawl): ratings or reviews plus product metadata.

Accepted interaction files (plain or `.gz`):
  * `ratings_Beauty.csv` -- no header, columns user,item,rating,timestamp;
  * `reviews_Beauty[_5].json` -- one record per line with reviewerID, asin, overall,
    unixReviewTime (strict JSON; Python-literal lines are accepted too).
Metadata `meta_Beauty.json[.gz]`: one Python-literal dict per line (single quotes, so not JSON),
parsed with `ast.literal_eval` (never `eval`). Fields used: asin, title, description,
categories (list of category paths), brand, price, salesRank ({category: rank}).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import polars as pl

from seqdistill._io import loads_json

from ._common import (
    DataError,
    PathLike,
    cast_column,
    dedupe_items,
    interactions_frame,
    make_raw,
    open_text,
    read_csv_strings,
)

RATINGS_NAMES = ("ratings_Beauty.csv", "ratings_Beauty.csv.gz")
REVIEWS_NAMES = (
    "reviews_Beauty_5.json.gz",
    "reviews_Beauty_5.json",
    "reviews_Beauty.json.gz",
    "reviews_Beauty.json",
)
META_NAMES = ("meta_Beauty.json.gz", "meta_Beauty.json")
_ASIN = re.compile(r"""['"]asin['"]\s*:\s*['"]([^'"]*)['"]""")
ITEM_COLUMNS = {
    "item_id": pl.String,
    "title": pl.String,
    "description": pl.String,
    "categories": pl.String,
    "brand": pl.String,
    "price": pl.Float64,
    "sales_rank": pl.Int64,
    "sales_rank_category": pl.String,
}


def _find(folder: Path, names: tuple[str, ...]) -> Path | None:
    for n in names:
        if (folder / n).exists():
            return folder / n
    return None


def _is_json_lines(path: Path) -> bool:
    name = path.name.removesuffix(".gz")
    return name.endswith((".json", ".jsonl", ".ndjson"))


def _parse_line(line: str, path: Path, lineno: int) -> dict:
    """Parse one record: strict JSON first, else a Python literal (safely)."""
    try:
        rec = loads_json(line)
    except ValueError:
        try:
            rec = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
            raise DataError(
                f"{path}: line {lineno}: not a JSON object or Python-literal dict ({type(e).__name__}: {e})"
            ) from None
    if not isinstance(rec, dict):
        raise DataError(f"{path}: line {lineno}: expected a dict record, got {type(rec).__name__}")
    return rec


def read_ratings_csv(path: PathLike) -> pl.DataFrame:
    """Read the header-less ratings CSV (user,item,rating,timestamp) as canonical interactions."""
    path = Path(path)
    df = read_csv_strings(path, str(path), has_header=False)
    if df.width != 4:
        raise DataError(f"{path}: expected 4 columns (user,item,rating,timestamp) without a header, found {df.width}")
    df.columns = ["user_id", "item_id", "rating", "timestamp"]
    for col in ("user_id", "item_id"):
        df = cast_column(df, col, pl.String, str(path), first_line=1, allow_null=False)
    df = cast_column(df, "rating", pl.Float32, str(path), first_line=1, allow_null=False)
    df = cast_column(df, "timestamp", pl.Int64, str(path), first_line=1, allow_null=False)
    return interactions_frame(df["user_id"], df["item_id"], df["timestamp"], df["rating"])


_FLOAT32_MAX = 3.4028234663852886e38


def _review_field(v, key: str, path: Path, lineno: int):
    """A review field's value, checked for the column it fills: ids are strings, the time a whole
    number of seconds that fits int64, the rating a finite number that fits float32."""
    where = f"{path}: line {lineno}: field {key!r}"
    if key in ("reviewerID", "asin"):
        if not isinstance(v, str):
            raise DataError(f"{where} must be a string id, got {v!r:.80}")
    elif key == "unixReviewTime":
        if isinstance(v, bool) or not isinstance(v, int):
            raise DataError(f"{where} must be a whole number of seconds, got {v!r:.80}")
        if not -(2**63) <= v < 2**63:
            raise DataError(f"{where}: {v} seconds is outside the int64 range")
    elif isinstance(v, bool) or not isinstance(v, (int, float)):
        raise DataError(f"{where} must be a number, got {v!r:.80}")
    elif not abs(v) <= _FLOAT32_MAX:  # also NaN, and ints too large for any float
        raise DataError(f"{where}: {v!r:.80} is not a finite number a float32 rating can hold")
    return v


def read_reviews_json(path: PathLike) -> pl.DataFrame:
    """Read review records (reviewerID, asin, overall, unixReviewTime) as canonical interactions."""
    path = Path(path)
    fields = {"reviewerID": "user_id", "asin": "item_id", "overall": "rating", "unixReviewTime": "timestamp"}
    cols: dict[str, list] = {v: [] for v in fields.values()}
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            rec = _parse_line(line, path, lineno)
            for key, col in fields.items():
                if key not in rec or rec[key] is None:
                    raise DataError(f"{path}: line {lineno}: record has no field {key!r}")
                cols[col].append(_review_field(rec[key], key, path, lineno))
    try:
        df = pl.DataFrame(
            {
                "user_id": pl.Series(cols["user_id"], dtype=pl.String),
                "item_id": pl.Series(cols["item_id"], dtype=pl.String),
                "timestamp": pl.Series(cols["timestamp"], dtype=pl.Int64, strict=True),
                "rating": pl.Series(cols["rating"], dtype=pl.Float32, strict=True),
            }
        )
    except (TypeError, pl.exceptions.PolarsError):
        # find the offending value to name it
        for col in ("timestamp", "rating"):
            for i, v in enumerate(cols[col]):
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise DataError(f"{path}: record {i + 1}: field {col!r} has non-numeric value {v!r}") from None
        raise
    return df


def _category_text(cats) -> str | None:
    """Category paths (list of lists) -> 'A > B > C; D > E'."""
    if not cats:
        return None
    paths = []
    for p in cats:
        if isinstance(p, (list, tuple)):
            paths.append(" > ".join(str(x) for x in p))
        else:
            paths.append(str(p))
    return "; ".join(paths) or None


def _price(v, path: Path, lineno: int) -> float | None:
    if v is None or v == "":
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        raise DataError(f"{path}: line {lineno}: field 'price' has non-numeric value {v!r}") from None


def _text_field(v, key: str, path: Path, lineno: int) -> str | None:
    if v is not None and not isinstance(v, str):
        raise DataError(f"{path}: line {lineno}: field {key!r} must be text, got {v!r:.80}")
    return v


def _categories(v, path: Path, lineno: int):
    if v is not None and not isinstance(v, (list, tuple)):
        raise DataError(f"{path}: line {lineno}: field 'categories' must be a list of category paths, got {v!r:.80}")
    return v


def read_meta(path: PathLike, keep: set[str] | None = None) -> pl.DataFrame:
    """Read `meta_Beauty.json[.gz]` (Python-literal dicts, one per line) into an item table.

    When `keep` is given, lines whose asin is not in it are skipped before parsing (the
    full metadata file is ~10x larger than a 5-core log's catalogue)."""
    path = Path(path)
    rows: dict[str, list] = {k: [] for k in ITEM_COLUMNS}
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            if keep is not None:
                m = _ASIN.search(line)
                if m is not None and m.group(1) not in keep:
                    continue
            rec = _parse_line(line, path, lineno)
            asin = rec.get("asin")
            if not asin:
                raise DataError(f"{path}: line {lineno}: record has no 'asin'")
            if not isinstance(asin, str):
                raise DataError(f"{path}: line {lineno}: field 'asin' must be a string id, got {asin!r:.80}")
            rank = rec.get("salesRank") or {}
            if not isinstance(rank, dict):
                raise DataError(
                    f"{path}: line {lineno}: field 'salesRank' must be a {{category: rank}} dict, got {rank!r:.80}"
                )
            rank_cat, rank_val = next(iter(rank.items())) if rank else (None, None)
            if rank_val is not None and (isinstance(rank_val, bool) or not isinstance(rank_val, int)):
                raise DataError(f"{path}: line {lineno}: field 'salesRank' has a non-integer rank {rank_val!r:.80}")
            if rank_val is not None and not -(2**63) <= rank_val < 2**63:
                raise DataError(f"{path}: line {lineno}: field 'salesRank': rank {rank_val} is outside the int64 range")
            desc = rec.get("description")
            rows["item_id"].append(asin)
            rows["title"].append(_text_field(rec.get("title"), "title", path, lineno))
            rows["description"].append(desc if isinstance(desc, str) and desc.strip() else None)
            rows["categories"].append(_category_text(_categories(rec.get("categories"), path, lineno)))
            rows["brand"].append(_text_field(rec.get("brand") or None, "brand", path, lineno))
            rows["price"].append(_price(rec.get("price"), path, lineno))
            rows["sales_rank"].append(rank_val)
            rows["sales_rank_category"].append(None if rank_cat is None else str(rank_cat))
    items = pl.DataFrame({k: pl.Series(v, dtype=ITEM_COLUMNS[k]) for k, v in rows.items()})
    return dedupe_items(items)


def load_beauty(path_or_folder: PathLike, meta: PathLike | bool | None = None, name: str = "beauty"):
    """Load Amazon Beauty as a `RawDataset` (domain "products").

    `path_or_folder`: a ratings CSV, a reviews JSON-lines file, or a folder holding one of
    them (ratings_Beauty.csv preferred, then reviews_Beauty_5.json.gz, reviews_Beauty.json.gz).
    `meta`: the metadata file; None looks for meta_Beauty.json[.gz] beside the interactions,
    False skips metadata (items is then None)."""
    p = Path(path_or_folder)
    if p.is_dir():
        found = _find(p, RATINGS_NAMES) or _find(p, REVIEWS_NAMES)
        if found is None:
            raise FileNotFoundError(
                f"{p}: no Beauty interactions file; expected one of {RATINGS_NAMES + REVIEWS_NAMES}"
            )
        p, folder = found, p
    else:
        folder = p.parent
    inter = read_reviews_json(p) if _is_json_lines(p) else read_ratings_csv(p)
    if meta is None or meta is True:
        found_meta = _find(folder, META_NAMES)
        if found_meta is None and meta is True:
            raise FileNotFoundError(f"{folder}: no Beauty metadata file; expected one of {META_NAMES}")
        meta = found_meta or False
    items = None
    if meta is not False:
        items = read_meta(Path(meta), keep=set(inter["item_id"].unique().to_list()))
    return make_raw(name, inter, items, "products", {"source_files": [str(p)] + ([str(meta)] if meta else [])})
