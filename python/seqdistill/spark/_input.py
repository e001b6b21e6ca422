"""The input of the Spark engine: a DataFrame or parquet path(s) → the canonical columns, checked.

Columns after :func:`load`: ``user_id`` and ``item_id`` (long, or string), ``timestamp`` (long),
``rating`` (float, optional) and ``_row``, a sortable key of each row's place in the input: the
tie order of equal timestamps. For parquet paths it is ``(file rank, row index in the file)``
with the files in sorted path order (the order a folder of parts is read in memory); for a
DataFrame it is ``monotonically_increasing_id()`` (partition, then row within the partition:
the DataFrame's own order). Bad input is refused in one line naming the column, row and value,
as :func:`seqdistill.data.normalize_interactions` does for the in-memory path.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from seqdistill import core
from seqdistill.errors import DataError

__all__ = ["Input", "load"]

_ID_COLS = ("user_id", "item_id")
#: Bits of the row index inside ``_row`` for parquet input (2^40 rows per file).
_ROW_BITS = 40


class Input:
    """The checked input (``df``, cached), whether it has ratings, and its rows."""

    def __init__(self, df: Any, has_rating: bool, rows: int) -> None:
        self.df, self.has_rating, self.rows = df, has_rating, rows


def _where(col: str, canonical: str) -> str:
    return f"column {col!r}" if col == canonical else f"column {col!r} ({canonical})"


def _read(spark: Any, data: Any, name: str) -> tuple[Any, bool]:
    """The table and whether it came from parquet files (then with the file and row columns)."""
    from pyspark.sql import DataFrame

    if isinstance(data, DataFrame):
        return data, False
    if not isinstance(data, (str, Path)):
        raise DataError(f"{name}: expected a Spark DataFrame or a parquet path, got {type(data).__name__}")
    path = str(data)
    if "://" not in path and not Path(path).exists():
        raise DataError(f"{name}: {path}: no such file or folder")
    try:
        df = spark.read.parquet(path)
    except Exception as e:  # Spark's AnalysisException / Py4JJavaError: name the file, one line
        first = " ".join(str(e).split())[:200]
        raise DataError(f"{name}: {path}: not readable as parquet ({first})") from None
    return df.select("*", "_metadata.file_path", "_metadata.row_index"), True


def _row_key(df: Any, from_files: bool) -> Any:
    from pyspark.sql import functions as F

    if not from_files:
        return df.withColumn("_row", F.monotonically_increasing_id())
    files = sorted(r[0] for r in df.select("file_path").distinct().collect())
    ranks = df.sparkSession.createDataFrame([(f, j) for j, f in enumerate(files)], "file_path string, _file long")
    key = F.shiftleft(F.col("_file"), _ROW_BITS) + F.col("row_index")
    return df.join(F.broadcast(ranks), "file_path").withColumn("_row", key).drop("file_path", "row_index", "_file")


def _cast(df: Any, col: str, canonical: str, name: str) -> Any:
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    kind = df.schema[col].dataType
    if canonical in _ID_COLS and isinstance(kind, T.StringType):
        return F.col(col).alias(canonical)
    if canonical != "rating" and isinstance(kind, T.IntegralType):
        return F.col(col).cast("long").alias(canonical)
    if canonical == "rating" and isinstance(kind, T.NumericType):
        return F.col(col).cast("float").alias(canonical)
    wanted = {
        "user_id": "integers or strings",
        "item_id": "integers or strings",
        "timestamp": "integers (epoch seconds or any integer clock)",
        "rating": "numbers",
    }[canonical]
    raise DataError(f"{name}: {_where(col, canonical)} has type {kind.simpleString()}; {canonical} must be {wanted}")


def load(spark: Any, data: Any, columns: Mapping[str, str] | None, name: str) -> Input:
    """Read, map, type-check and null-check the input; one Spark job counts the rows and the bad
    values (a second finds the first bad row when there is one)."""
    from pyspark.sql import functions as F

    df, from_files = _read(spark, data, name)
    mapping = {c: c for c in ("user_id", "item_id", "timestamp")}
    mapping.update(columns or {})
    if "rating" not in mapping and "rating" in df.columns:
        mapping["rating"] = "rating"
    for canonical, col in mapping.items():
        if col not in df.columns or col in ("file_path", "row_index", "_row"):
            shown = [c for c in df.columns if not (from_files and c in ("file_path", "row_index"))]
            raise DataError(f"{name}: missing column {col!r} (for {canonical}); it has {shown}")
    df = _row_key(df, from_files)
    order = [c for c in ("user_id", "item_id", "timestamp", "rating") if c in mapping]
    df = df.select(*[_cast(df, mapping[c], c, name) for c in order], "_row")
    bad = {c: F.col(c).isNull() for c in order if c != "rating"}
    for c in _ID_COLS:
        if dict(df.dtypes)[c] == "string":
            bad[c] = bad[c] | _odd_string(F.col(c))
    counts = df.agg(
        F.count(F.lit(1)).alias("rows"),
        *[F.sum(b.cast("long")).alias(f"bad_{c}") for c, b in bad.items()],
    ).first()
    for c, cond in bad.items():
        if counts[f"bad_{c}"]:
            _refuse(df, c, mapping[c], cond, name)
    if counts["rows"] == 0:
        raise DataError(f"{name}: the interaction table is empty")
    cached = df.persist()
    return Input(cached, "rating" in mapping, int(counts["rows"]))


#: Java regular expressions (Unicode classes: ``\s`` is White_Space, as Rust's ``str::trim``).
_PADDED = r"(?U)^\s|\s$"
_CONTROL = r"[\x00-\x1f\x7f-\x9f]"  # Unicode category Cc: ASCII and C1 controls
_FORMAT = r"\p{Cf}"
_SEPARATOR = r"[\p{Zl}\p{Zp}]"  # U+2028, U+2029
#: Unicode White_Space, what Rust's ``str::trim`` strips (Python's ``str.strip`` also strips
#: ``\x1c``-``\x1f``, which are controls to the in-memory check).
_WHITE_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)


def _odd_string(c: Any) -> Any:
    """Ids the in-memory path would strip or refuse (empty, padded, control or invisible format
    characters, line or paragraph separators, NaN-like: see seqdistill.data.interactions). Spark
    takes ids as written, so it refuses them all rather than differ from the in-memory result."""
    from pyspark.sql import functions as F

    return (
        (F.length(c) == 0)
        | c.rlike(_PADDED)
        | c.rlike(_CONTROL)
        | c.rlike(_FORMAT)
        | c.rlike(_SEPARATOR)
        | F.lower(c).isin(*core.NAN_LIKE_IDS)
    )


def _why(value: str) -> str:
    """What is wrong with a string id that :func:`_odd_string` flagged (checked in Python), in
    the in-memory check's order: a control character inside the stripped id first."""
    inner = value.strip(_WHITE_SPACE)
    if any(unicodedata.category(c) == "Cc" for c in inner):
        return f"has the id {value!r}, which holds a control character (a damaged or binary file?)"
    if inner == "":
        return f"has an empty id {value!r}"
    if value != inner:
        return f"has the id {value!r} with whitespace around it (strip the ids before the Spark engine)"
    if value.lower() in core.NAN_LIKE_IDS:
        return f"has the NaN-like id {value!r}; ids must not be NaN"
    if any(unicodedata.category(c) == "Cf" for c in value):
        return f"has the id {value!r}, which holds an invisible format character; remove it"
    return f"has the id {value!r}, which holds a line or paragraph separator (a line break inside an id); remove it"


def _refuse(df: Any, canonical: str, col: str, cond: Any, name: str) -> None:
    """The first row (0-based, in input order) that fails ``cond``, named in one line."""
    from pyspark.sql import functions as F

    first = df.where(cond).orderBy("_row").select("_row", canonical).first()
    row = df.where(F.col("_row") < first["_row"]).count()
    value = first[canonical]
    what = "is null" if value is None else _why(value)
    raise DataError(f"{name}: {_where(col, canonical)} {what} at row {row}")
