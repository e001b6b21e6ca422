"""The filter on Spark: the iterative k-core to its fixpoint, or the compat filter's one pass.

A round is the in-memory core's round (``rust/src/kcore.rs``): count every user's and item's rows
on the current log, drop every row whose user or item is below its threshold, repeat until a
round drops nothing. Per round: two aggregations (rows per user, rows per item; only partial
counts are shuffled) kept as small cached tables, one tiny summary job over each (ids,
rows, ids failing), then two left-semi joins of the rows with the passing ids (broadcast by
adaptive execution when they fit ``spark.sql.autoBroadcastJoinThreshold``; otherwise the rows
are shuffled by user and by item) and a local checkpoint of the survivors, so that the next
round reads them and not a growing lineage. What a round removed — users and items whose last
row went in it, and its rows, as the core counts them — is the difference between the counts
before and after it. The Spark jobs and shuffle bytes of each round are measured by
:class:`~seqdistill.spark._session.JobMeter` and reported in the stats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from seqdistill.spark._session import JobMeter

__all__ = ["Filtered", "filter_rows"]


@dataclass
class Filtered:
    """The surviving rows (checkpointed), their counts, the input's distinct users and items
    (read off the first round's counts), and what each round removed: (users, items, rows)."""

    df: Any
    rows: int
    users: int = 0
    items: int = 0
    users_in: int = 0
    items_in: int = 0
    removed: list[tuple[int, int, int]] = field(default_factory=list)


def _distinct(df: Any) -> tuple[int, int]:
    from pyspark.sql import functions as F

    r = df.agg(F.count_distinct("user_id").alias("u"), F.count_distinct("item_id").alias("i")).first()
    return int(r["u"]), int(r["i"])


def _node_counts(df: Any, col: str) -> Any:
    """Rows per id of ``col`` (partial counts are what is shuffled), cached: small, and read
    twice (the summary, then the join)."""
    from pyspark.sql import functions as F

    return df.groupBy(col).agg(F.count(F.lit(1)).alias("n")).cache()


def _summary(counts: Any, k: int, strict: bool) -> tuple[int, int, int]:
    """``(ids, rows, failing)``: ids with a row, their rows, and those failing the threshold."""
    from pyspark.sql import functions as F

    fails = F.col("n") <= k if strict else F.col("n") < k
    r = counts.agg(
        F.count(F.lit(1)).alias("ids"), F.sum("n").alias("rows"), F.sum(fails.cast("long")).alias("fail")
    ).first()
    return int(r["ids"]), int(r["rows"] or 0), int(r["fail"] or 0)


def _keep(df: Any, uc: Any, ic: Any, k_user: int, k_item: int, strict: bool) -> Any:
    """Rows of ``df`` whose user and item pass (left-semi joins with the passing ids), checkpointed."""
    from pyspark.sql import functions as F

    def passing(counts: Any, col: str, k: int) -> Any:
        return counts.where(F.col("n") > k if strict else F.col("n") >= k).select(col)

    kept = df.join(passing(uc, "user_id", k_user), "user_id", "left_semi")
    return kept.join(passing(ic, "item_id", k_item), "item_id", "left_semi").localCheckpoint()


def filter_rows(df: Any, rows: int, filter: str, k_user: int, k_item: int, meter: JobMeter) -> Filtered:
    """The k-core (``filter="kcore"``: counts >= k, to the fixpoint) or the compat filter (one
    pass, counts > k on the input) of ``df`` (``rows`` rows).

    Round r counts rows per user and per item on the current log; when no node fails, the log is
    the fixpoint (that last check costs the counting half of a round); otherwise the failing
    nodes' rows go and what the round removed is read from the next round's counts."""
    out = Filtered(df, rows)
    strict = filter == "compat"
    if (strict and k_user == 0 and k_item == 0) or (not strict and k_user <= 1 and k_item <= 1):
        with meter.step("distinct users and items"):  # every node with a row passes
            out.users, out.items = out.users_in, out.items_in = _distinct(df)
        return out
    done, r = False, 0
    while not done:
        r += 1
        with meter.step(f"kcore round {r}"):
            uc, ic = _node_counts(out.df, "user_id"), _node_counts(out.df, "item_id")
            (u, n, fail_u), (i, _, fail_i) = _summary(uc, k_user, strict), _summary(ic, k_item, strict)
            if r == 1:
                out.users, out.items = out.users_in, out.items_in = u, i
            else:  # the counts after the previous round: what it removed
                out.removed.append((out.users - u, out.items - i, out.rows - n))
                out.users, out.items, out.rows = u, i, n
            done = fail_u + fail_i == 0 or n == 0 or (strict and out.df is not df)
            if not done:
                out.df = _keep(out.df, uc, ic, k_user, k_item, strict)
            uc.unpersist()
            ic.unpersist()
    return out
