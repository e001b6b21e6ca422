"""Top-k recommendations for many users at once, as a table of raw ids (``seqdistill recommend``).

:func:`recommend` takes a trained model and either

- ``users``: raw user ids of a prepared dataset; each user's history is their whole log in the
  dataset (training, validation and test parts, oldest first), or
- ``histories``: an interactions table (``user_id``, ``item_id``, ``timestamp``; e.g. from
  :func:`seqdistill.data.read_interactions`) for users the model need not have seen. Each user's
  rows are ordered by timestamp (equal timestamps keep the table's order); item ids the model's
  catalogue does not hold are dropped, with one warning giving their count.

The model reads the most recent ``input_length`` items of a history; with ``filter_seen`` (the
default) every item of the whole history is removed from the candidates. Selection is the
evaluation's (:func:`seqdistill.evaluation.topk_ids`): higher score first, equal scores to the
lower dense item id, NaN last; padding and BERT4Rec's mask token are never candidates.

The result has one row per (user, rank): ``user_id`` (raw), ``item_id`` (raw, from the model's
catalogue), ``rank`` (1 = best) and ``score`` (the model's float32 score). Users come in the order
they were given (``users``: duplicates once; ``histories``: order of first appearance). A user with
fewer than ``k`` candidates gets fewer rows; a user left with no candidate at all — every item of
their history unknown to the model, or every item of the catalogue seen — gets one row whose
``item_id``, ``rank`` and ``score`` are null, and one warning counts those users.
"""

from __future__ import annotations

import numbers
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from seqdistill import core
from seqdistill.errors import ConfigError, DataError, SeqdistillWarning

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

__all__ = ["catalogue", "output_format", "read_user_ids", "recommend", "write_table"]

_CANONICAL_INT = r"^(0|-?[1-9][0-9]*)$"
#: Bytes of int64 selection keys one scored block may take (rows are sized to the catalogue).
BLOCK_BYTES = 1 << 27


# ------------------------------------------------------------------------------ ids
def catalogue(model) -> pl.Series:
    """The model's raw item ids (index = dense item; entry 0, padding, is null), Int64 when every
    id is an integer, else String."""
    ids = model.item_ids
    if ids is None:
        raise DataError("recommend: the model has no raw item id map (it was never trained on a dataset)")
    real = ids[1:]
    dtype = pl.Int64 if all(isinstance(x, int) and not isinstance(x, bool) for x in real) else pl.String
    return pl.Series("item_id", [None, *(x if dtype == pl.Int64 else str(x) for x in real)], dtype=dtype)


def _as_id_type(ids: pl.Series, dtype: pl.DataType) -> pl.Series:
    """``ids`` in the catalogue's id type: integers as their decimal text for a String catalogue;
    for an Int64 catalogue, text that is not a canonical integer becomes null (it cannot match)."""
    if ids.dtype == dtype:
        return ids
    if dtype == pl.String:
        return ids.cast(pl.String)
    text = ids.cast(pl.String)
    canonical = text.str.contains(_CANONICAL_INT)
    return pl.select(pl.when(canonical).then(text.cast(pl.Int64, strict=False))).to_series().alias(ids.name)


def _lookup(ids: pl.Series, table: pl.Series) -> np.ndarray:
    """Position of every value of ``ids`` in ``table`` (-1 where absent), in ``ids``' order."""
    keys = pl.DataFrame({"key": _as_id_type(ids, table.dtype).alias("key")})
    where = pl.DataFrame({"key": table.alias("key"), "at": np.arange(len(table), dtype=np.int64)}).drop_nulls("key")
    found = keys.join(where, on="key", how="left", maintain_order="left")
    return found.get_column("at").fill_null(-1).to_numpy()


# ------------------------------------------------------------------------------ ranking
def _rank(
    model, offsets: np.ndarray, items: np.ndarray, k: int, filter_seen: bool, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` dense ids (-1 = empty slot) and their scores for each CSR history, a block of
    rows at a time (windows, scores and selection keys sized to the catalogue)."""
    import torch

    from seqdistill.evaluation import model_outputs, topk_ids

    n = len(offsets) - 1
    rows, ends = np.arange(n, dtype=np.int64), np.diff(offsets)
    block = max(16, min(1024, BLOCK_BYTES // (8 * (model.config.n_items + 1))))
    ids = np.full((n, k), -1, dtype=np.int64)
    scores = np.full((n, k), np.nan, dtype=np.float32)
    for lo in range(0, n, block):
        part, stop = rows[lo : lo + block], ends[lo : lo + block]
        windows = core.gather_windows(offsets, items, part, stop, model.input_length)
        s = model_outputs(model, torch.from_numpy(windows).to(device), None)
        seen_rows = seen_cols = None
        if filter_seen:
            seen_offsets, seen = core.seen_items(offsets, items, part, stop)
            seen_rows = torch.from_numpy(np.repeat(np.arange(len(part)), np.diff(seen_offsets))).to(s.device)
            seen_cols = torch.from_numpy(seen).to(s.device)
        top = topk_ids(s, k, min_item=1, seen_rows=seen_rows, seen_cols=seen_cols)
        ids[lo : lo + block] = top.cpu().numpy()
        scores[lo : lo + block] = s.gather(1, top.clamp_min(0)).float().cpu().numpy()
    scores[ids < 0] = np.nan
    return ids, scores


def _table(user_ids: pl.Series, ids: np.ndarray, scores: np.ndarray, items: pl.Series) -> pl.DataFrame:
    """Long format: one row per (user, rank); a user without any candidate keeps one null row."""
    keep = ids >= 0
    keep[~keep.any(axis=1), 0] = True  # the one row of a user with no recommendation
    row, col = np.nonzero(keep)
    dense = ids[row, col]
    df = pl.DataFrame(
        {
            "user_id": user_ids.gather(row),
            "item_id": items.gather(np.maximum(dense, 0)),  # entry 0 (padding) is null
            "rank": pl.Series(col + 1, dtype=pl.Int32),
            "score": pl.Series(scores[row, col], dtype=pl.Float32),
        }
    )
    found = pl.col("item_id").is_not_null()
    return df.with_columns(pl.when(found).then(pl.col("rank")), pl.when(found).then(pl.col("score")))


def _warn_empty(user_ids: pl.Series, ids: np.ndarray, why: str) -> None:
    empty = np.flatnonzero(~(ids >= 0).any(axis=1))
    if len(empty):
        warnings.warn(
            f"{len(empty)} user(s) have no recommendation ({why}), e.g. user {user_ids[int(empty[0])]!r}; "
            "each gets one row with a null item_id",
            SeqdistillWarning,
            stacklevel=3,
        )


# ------------------------------------------------------------------------------ inputs
def _dataset_histories(ds, users: Iterable[Any], source: str) -> tuple[pl.Series, np.ndarray, np.ndarray]:
    """Raw user ids (each once, in the order given) and the CSR of their whole logs in ``ds``."""
    given = users if isinstance(users, pl.Series) else pl.Series("user_id", list(users), strict=False)
    if given.len() == 0:
        raise DataError(f"{source}: no user ids")
    dense = _lookup(given, ds.user_ids)
    missing = np.flatnonzero(dense < 0)
    if len(missing):
        raise DataError(
            f"{source}: row {int(missing[0])}: user id {given[int(missing[0])]!r} is not a user of dataset "
            f"{ds.name!r} ({len(missing)} of {given.len()} rows name unknown users); give new users' "
            "interactions with --histories instead"
        )
    _, first = np.unique(dense, return_index=True)
    dense = dense[np.sort(first)]
    lengths = ds.lengths[dense]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    pos = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], lengths)
    items = ds.items[np.repeat(ds.offsets[dense], lengths) + pos]
    return ds.user_ids.gather(dense), offsets, items


def _given_histories(
    histories: pl.DataFrame, items: pl.Series, source: str
) -> tuple[pl.Series, np.ndarray, np.ndarray]:
    """Raw user ids (order of first appearance) and the CSR of their known items by time."""
    from seqdistill.data import normalize_interactions

    df = normalize_interactions(histories, source=source, infer_integer_ids=True)
    if df.height == 0:
        raise DataError(f"{source}: no rows")
    df = df.select("user_id", "item_id", "timestamp").with_row_index("_row")
    first = df.group_by("user_id", maintain_order=True).agg(pl.col("_row").first().alias("_first"))
    users = first.get_column("user_id")
    df = df.join(first.with_row_index("_user"), on="user_id", how="left").sort(["_user", "timestamp", "_row"])
    dense = _lookup(df.get_column("item_id"), items)
    unknown = dense < 1
    if unknown.any():
        example = df.get_column("item_id")[int(np.flatnonzero(unknown)[0])]
        warnings.warn(
            f"{source}: {int(unknown.sum())} of {df.height} rows name an item the model does not know "
            f"(e.g. {example!r}); they are left out of the histories",
            SeqdistillWarning,
            stacklevel=3,
        )
    user = df.get_column("_user").to_numpy()[~unknown]
    counts = np.bincount(user, minlength=len(users))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return users, offsets, dense[~unknown].astype(np.int64)


def recommend(
    model,
    dataset=None,
    *,
    users: Iterable[Any] | None = None,
    histories: pl.DataFrame | None = None,
    k: int = 10,
    filter_seen: bool = True,
    device: str | None = None,
    source: str | None = None,
) -> pl.DataFrame:
    """The top-``k`` items of each user as a table (see the module doc).

    Exactly one of ``users`` (raw user ids of ``dataset``, a PreparedDataset the model was
    trained on) or ``histories`` (a table of ``user_id``, ``item_id``, ``timestamp``) is given.
    ``source`` names the input in messages (a file name); ``device`` defaults to the model's.
    """
    import torch

    if (users is None) == (histories is None):
        raise ConfigError("recommend: give exactly one of users= or histories=")
    if not isinstance(k, numbers.Integral) or isinstance(k, (bool, np.bool_)) or k < 1:
        raise ConfigError(f"recommend: k must be an integer >= 1, got {k!r}")
    k = int(k)
    if isinstance(users, (str, bytes)):  # iterating it would take every character for a user id
        raise ConfigError(f"recommend: users= takes a list of raw user ids, got the single string {users!r:.80}")
    items = catalogue(model)
    # At most the whole catalogue is ranked (a larger k gives fewer rows, as when seen items are
    # filtered): the result buffers are sized by k, so an absurd k must not size them.
    k = min(k, max(len(items) - 1, 1))
    if users is not None:
        if dataset is None:
            raise ConfigError("recommend: users= needs the dataset the model was trained on")
        if catalogue(model).to_list() != dataset.item_ids.to_list():
            raise DataError(f"recommend: the model's item catalogue is not that of dataset {dataset.name!r}")
        user_ids, offsets, seq = _dataset_histories(dataset, users, source or "users")
        why = "every item of the catalogue is in their history"
    else:
        user_ids, offsets, seq = _given_histories(histories, items, source or "histories")
        why = "no item of their history is known to the model, or they have seen every item"
    dev = torch.device(device) if device is not None else model.device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ids, scores = _rank(model.to(dev), offsets, seq, k, filter_seen, dev)
    finally:
        model.train(was_training)
    ids[np.diff(offsets) == 0] = -1  # no known item: nothing to recommend from
    _warn_empty(user_ids, ids, why)
    return _table(user_ids, ids, scores, items)


# ------------------------------------------------------------------------------ files
_TABLES = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def read_user_ids(path: str | os.PathLike, column: str = "user_id") -> pl.Series:
    """Raw user ids from a file: ``.txt`` holds one id per line (no header; blank lines skipped);
    ``.csv``/``.tsv``/``.parquet``/``.jsonl`` a table with the id ``column``. Ids follow the
    interaction files' id policy (:mod:`seqdistill.data.interactions`): stripped, never empty or
    NaN-like, Int64 when every one is a canonical integer."""
    from seqdistill.data import interactions as io

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".txt":
        io._check_file(p)
        try:
            lines = p.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError as e:
            raise DataError(f"{p}: not UTF-8 text (byte {e.start})") from None
        ids = pl.Series(column, [line for line in (x.strip() for x in lines) if line], dtype=pl.String)
        if ids.len() == 0:
            raise DataError(f"{p}: no user ids (only blank lines)")
    elif suffix in _TABLES:
        ids = io._read_table(p, _TABLES[suffix], {"user_id": column}, None, True).get_column(column)
    else:
        raise DataError(
            f"{p}: cannot tell the format from the name; name the file .txt (one id per line), "
            ".csv, .tsv, .parquet or .jsonl"
        )
    return io._id_series(ids, column, "user_id", str(p), infer_integers=True).alias("user_id")


def write_table(df: pl.DataFrame, path: str | os.PathLike, fmt: str) -> Path:
    """Write ``df`` as ``fmt`` (csv, parquet or jsonl) to ``path``, atomically."""
    from seqdistill import _io

    if fmt == "parquet":
        return _io.write_parquet(path, df)
    with _io.atomic_file(path, "wb") as f:
        if fmt == "csv":
            df.write_csv(f)
        elif fmt == "jsonl":
            df.write_ndjson(f)
        else:
            raise ConfigError(f"write_table: unknown format {fmt!r}; expected 'csv', 'parquet' or 'jsonl'")
    return Path(path)


def output_format(path: str | os.PathLike, fmt: str | None) -> str:
    """``fmt``, or the format named by ``path``'s extension (``.csv``, ``.parquet``/``.pq``,
    ``.jsonl``/``.ndjson``); a ConfigError when neither says."""
    found = _TABLES.get(Path(path).suffix.lower())
    if fmt is not None:
        if found in ("csv", "parquet", "jsonl") and found != fmt:  # a .parquet holding JSON lines misleads every reader
            raise ConfigError(f"{path}: the extension says {found}, the format asked for is {fmt}; make them agree")
        return fmt
    if found not in ("csv", "parquet", "jsonl"):
        raise ConfigError(
            f"{path}: cannot tell the output format from the extension; name it .csv, .parquet or "
            ".jsonl, or pass --format"
        )
    return found
