"""The exact numpy-linear quantile of a long column on Spark (no ``approxQuantile``).

The in-memory core's rule (``rust/src/split.rs``): with ``n`` values and ``h = (n - 1) * q``, the
values at ranks ``floor(h)`` and ``ceil(h)`` of the sorted column, ``x_lo + (h - lo) * (x_hi - x_lo)``
in double precision. The two values are found by count-then-select, never by sorting the column:
a log of at most 2^20 rows is collected and selected on the driver; else one job reads the
minimum and maximum, one counts the values in 2^16 equal-width buckets
(collected: at most 65,536 small rows), and the bucket holding the ranks is either collected and
selected on the driver (at most 2^20 values) or narrowed again. Bucket arithmetic is exact
(integer division; in ``decimal(20,0)`` when the span of the values exceeds a long).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["interpolate", "quantile", "select_ranks"]

BUCKETS = 1 << 16
COLLECT_LIMIT = 1 << 20


def interpolate(n: int, q: float, pick: Any) -> float:
    """The numpy-linear quantile from ``pick(lo, hi)`` (the values at those ranks), as the core."""
    h = float(n - 1) * q
    lo = math.floor(h)
    hi = min(math.ceil(h), n - 1)
    x_lo, x_hi = pick(lo, hi)
    return float(x_lo) + (h - float(lo)) * (float(x_hi) - float(x_lo))


def quantile(df: Any, col: str, n: int, q: float) -> float:
    """The exact numpy-linear ``q`` quantile of ``df[col]`` (``n`` rows, n > 0)."""
    return interpolate(n, q, lambda lo, hi: select_ranks(df, col, lo, hi, n))


def _pick(df: Any, col: str, r_lo: int, r_hi: int) -> tuple[int, int]:
    """Collects ``df[col]`` (few values) and selects the two ranks on the driver."""
    vals = np.sort(df.select(col).toArrow().column(0).to_numpy())
    return int(vals[r_lo]), int(vals[r_hi])


def _histogram(df: Any, col: str, base: int, span: int, width: int) -> dict[int, int]:
    """Counts of the values in ``[base, base + span]`` per bucket ``(value - base) div width``,
    exactly: in longs while the span fits one, else in ``decimal(20,0)``."""
    from pyspark.sql import functions as F

    kind = "long" if span < 2**63 else "decimal(20,0)"
    delta = F.col(col).cast(kind) - F.lit(base).cast(kind)
    rows = (
        df.where(F.col(col).between(base, base + span))
        .select(delta.alias("_d"))
        .groupBy(F.expr(f"_d div {width}").alias("b"))
        .agg(F.count(F.lit(1)).alias("n"))
        .collect()
    )
    return {int(r["b"]): int(r["n"]) for r in rows}


def _locate(hist: dict[int, int], r_lo: int, r_hi: int) -> tuple[int, int, int]:
    """``(b_lo, b_hi, before)``: the buckets holding ranks ``r_lo`` and ``r_hi``, and the values
    in the buckets before ``b_lo``."""
    b_lo, before, cum = -1, 0, 0
    for b in sorted(hist):
        if b_lo < 0 and cum + hist[b] > r_lo:
            b_lo, before = b, cum
        if cum + hist[b] > r_hi:
            return b_lo, b, before
        cum += hist[b]
    raise AssertionError(f"ranks {r_lo}, {r_hi} beyond the {cum} values counted")


def select_ranks(
    df: Any, col: str, lo: int, hi: int, n: int | None = None, buckets: int = BUCKETS, limit: int = COLLECT_LIMIT
) -> tuple[int, int]:
    """The values at 0-based ranks ``lo`` and ``hi`` (``hi`` is ``lo`` or ``lo + 1``) of ``df[col]``
    (``n`` values, when known: at most ``limit`` are simply collected)."""
    from pyspark.sql import functions as F

    if n is not None and n <= limit:
        return _pick(df, col, lo, hi)
    mm = df.agg(F.min(col).alias("a"), F.max(col).alias("b")).first()
    base, span = int(mm["a"]), int(mm["b"]) - int(mm["a"])
    while span > 0:  # invariant: the ranks count the values in [base, base + span]
        width = span // buckets + 1
        hist = _histogram(df, col, base, span, width)
        b_lo, b_hi, before = _locate(hist, lo, hi)
        start = base + min(b_lo * width, span)
        end = base + min(b_hi * width + width - 1, span)
        if b_lo == b_hi and hist[b_lo] > limit:  # one crowded bucket: narrow to it
            base, span, lo, hi = start, end - start, lo - before, hi - before
            continue
        if b_lo != b_hi and hist[b_lo] + hist[b_hi] > limit:
            # rank lo is the last value of bucket b_lo and rank hi the first of bucket b_hi
            lo_end, hi_start = base + min(b_lo * width + width - 1, span), base + min(b_hi * width, span)
            r = df.agg(
                F.max(F.when(F.col(col).between(start, lo_end), F.col(col))).alias("x"),
                F.min(F.when(F.col(col).between(hi_start, end), F.col(col))).alias("y"),
            ).first()
            return int(r["x"]), int(r["y"])
        return _pick(df.where(F.col(col).between(start, end)), col, lo - before, hi - before)
    return base, base
