"""``prepare``: encode ids, k-core filter, order chronologically and split — the Rust core does
the work, this module orchestrates it and keeps the result as a :class:`PreparedDataset`."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import polars as pl

from seqdistill import core
from seqdistill.data.dataset import PreparedDataset
from seqdistill.data.interactions import DataError, RawDataset, normalize_interactions
from seqdistill._config import DictConfig

SPLITS = ("global_temporal", "leave_one_out")
FORMAT_VERSION = 1


@dataclass
class SplitConfig(DictConfig):
    """How to split a prepared log.

    ``kind``: ``"global_temporal"`` (one threshold at ``quantile`` of all timestamps, the paper's
    protocol) or ``"leave_one_out"``. ``target``: which interactions at or after the threshold are
    test targets — ``"last"`` (default), ``"first"`` or ``"all"``. ``valid``: ``"time"`` (the same
    rule again on the training part at ``valid_quantile`` of its timestamps; default),
    ``"last_item"`` (each training user's last training item) or ``"none"``. ``threshold``: an
    explicit test threshold timestamp instead of the quantile. Leave-one-out ignores the others.
    """

    kind: str = "global_temporal"
    quantile: float = 0.8
    target: str = "last"
    valid: str = "time"
    valid_quantile: float = 0.8
    threshold: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in SPLITS:
            raise DataError(f"split kind must be one of {SPLITS}, got {self.kind!r}")
        for name in ("quantile", "valid_quantile"):
            q = getattr(self, name)
            if not (0.0 < q < 1.0):
                raise DataError(f"split {name} must be in (0, 1), got {q!r}")
        if self.target not in ("last", "first", "all"):
            raise DataError(f"split target must be 'last', 'first' or 'all', got {self.target!r}")
        if self.valid not in ("time", "last_item", "none"):
            raise DataError(f"split valid must be 'time', 'last_item' or 'none', got {self.valid!r}")


def encode_column(s: pl.Series) -> tuple[np.ndarray, pl.Series]:
    """Dense codes (uint32, sorted raw order) and the distinct raw values, through the Rust core."""
    if s.dtype == pl.Int64:
        codes, uniques = core.encode_i64(s.to_numpy())
        return codes, pl.Series(s.name, uniques)
    if s.dtype == pl.String:
        arr = s.to_arrow()
        if hasattr(arr, "combine_chunks"):
            arr = arr.combine_chunks()
        import pyarrow as pa

        arr = arr.cast(pa.large_string())
        _, off_buf, data_buf = arr.buffers()
        offsets = np.frombuffer(off_buf, dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
        data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
        codes, first = core.encode_str(offsets, data)
        return codes, s.gather(first.astype(np.int64))
    raise DataError(f"column {s.name!r}: ids must be Int64 or String, got {s.dtype}")


def prepare(
    data: RawDataset | pl.DataFrame,
    items: pl.DataFrame | None = None,
    *,
    k_core: int | tuple[int, int] | None = (5, 5),
    split: SplitConfig | None = None,
    name: str | None = None,
    domain: str | None = None,
) -> PreparedDataset:
    """Encodes, filters (iterative k-core) and splits an interaction log.

    ``data`` is a :class:`RawDataset` or a table with the canonical columns. ``k_core`` is
    ``(k_user, k_item)``, one int for both, or None for no filter.
    """
    started = time.perf_counter()
    split = split or SplitConfig()
    if isinstance(data, RawDataset):
        raw = data
        df, items = raw.interactions, raw.items if items is None else items
        name, domain = name or raw.name, domain or raw.domain
    else:
        df = data
    name, domain = name or "dataset", domain or "generic"
    df = normalize_interactions(df, source=name)
    if df.height == 0:
        raise DataError(f"{name}: the interaction table is empty")
    k_user, k_item = (k_core, k_core) if isinstance(k_core, int) else (k_core or (1, 1))
    if k_user < 1 or k_item < 1:
        raise DataError(f"{name}: k_core values must be >= 1, got {(k_user, k_item)}")

    ucodes, uniq_users = encode_column(df.get_column("user_id"))
    icodes, uniq_items = encode_column(df.get_column("item_id"))
    kc = core.kcore(ucodes, icodes, len(uniq_users), len(uniq_items), k_user, k_item)
    if kc.n_users == 0:
        raise DataError(
            f"{name}: nothing left after k-core with k_user={k_user}, k_item={k_item} "
            f"({df.height} rows, {len(uniq_users)} users, {len(uniq_items)} items before the filter)"
        )
    if kc.rows_dropped:
        rows = np.flatnonzero(kc.keep)
        ucodes = kc.user_map[ucodes[rows]].astype(np.uint32)
        icodes = kc.item_map[icodes[rows]].astype(np.uint32)
    else:
        rows = None
    user_ids = uniq_users.filter(pl.Series(kc.user_map >= 0))
    item_ids = pl.concat([pl.Series("item_id", [None], dtype=uniq_items.dtype), uniq_items.filter(pl.Series(kc.item_map >= 0)).alias("item_id")])
    del uniq_users, uniq_items

    ts = df.get_column("timestamp").to_numpy()
    if rows is not None:
        ts = ts[rows]
    ts = np.ascontiguousarray(ts, dtype=np.int64)
    order, offsets = core.sort_by_user_time(ucodes, ts, kc.n_users)
    del ucodes
    items_csr = icodes[order].astype(np.int64)
    items_csr += 1
    del icodes
    ts = ts[order]
    ratings = None
    if "rating" in df.columns:
        r = df.get_column("rating").to_numpy()
        ratings = (r[rows] if rows is not None else r)[order].astype(np.float32)
    del order, rows

    if split.kind == "leave_one_out":
        sp = core.leave_one_out_split(offsets)
    else:
        sp = core.global_temporal_split(
            offsets, ts, quantile=split.quantile, target=split.target, valid=split.valid,
            valid_quantile=split.valid_quantile, threshold=split.threshold,
        )
    train_end = sp.train_end
    if int(train_end.sum()) == 0:
        raise DataError(f"{name}: the training part is empty with split {split.to_dict()}")

    item_meta = _align_items(items, item_ids, name) if items is not None else None
    n_users, n_items, n = len(offsets) - 1, len(item_ids) - 1, len(items_csr)
    stats = {
        "rows_in": df.height,
        "users": n_users,
        "items": n_items,
        "interactions": n,
        "avg_length": n / n_users,
        "density": n / (n_users * n_items),
        "kcore": {"k_user": k_user, "k_item": k_item, "rounds": kc.rounds, "rows_dropped": kc.rows_dropped},
        "train_interactions": int(train_end.sum()),
        "valid_targets": len(sp.valid_users),
        "test_targets": len(sp.test_users),
        "test_threshold": _finite(sp.test_threshold),
        "valid_threshold": _finite(sp.valid_threshold),
        "seconds": round(time.perf_counter() - started, 3),
    }
    manifest = {"name": name, "domain": domain, "split": split.to_dict(), "k_core": [k_user, k_item], "stats": stats}
    return PreparedDataset(
        name=name, domain=domain, user_ids=user_ids.alias("user_id"), item_ids=item_ids, offsets=offsets,
        items=items_csr, timestamps=ts, ratings=ratings, train_end=train_end,
        valid_targets=(sp.valid_users, sp.valid_pos), test_targets=(sp.test_users, sp.test_pos),
        item_meta=item_meta, manifest=manifest,
    )


def _finite(x: float) -> float | None:
    return None if x != x else float(x)


def _align_items(items: pl.DataFrame, item_ids: pl.Series, source: str) -> pl.DataFrame:
    """Item metadata keyed by dense id: one row per dense item 1..n (metadata null where absent)."""
    if "item_id" not in items.columns:
        raise DataError(f"{source}: the item metadata table has no 'item_id' column (columns: {items.columns})")
    dup = items.get_column("item_id").is_duplicated()
    if dup.any():
        v = items.get_column("item_id").filter(dup)[0]
        raise DataError(f"{source}: item metadata column 'item_id' has duplicated value {v!r}")
    meta = items
    if meta.schema["item_id"] != item_ids.dtype:
        meta = meta.with_columns(pl.col("item_id").cast(item_ids.dtype, strict=False))
    keys = pl.DataFrame({"item": np.arange(1, len(item_ids), dtype=np.int64), "item_id": item_ids[1:]})
    return keys.join(meta, on="item_id", how="left")
