"""A tiny PreparedDataset-shaped object for the profile tests (and a check of its shape against
the real ``seqdistill.data.prepare`` once that exists)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pytest


@dataclass
class ToyDataset:
    """The attributes of ``seqdistill.data.PreparedDataset`` that the profile side reads."""

    n_users: int
    n_items: int
    user_ids: pl.Series
    item_ids: pl.Series
    offsets: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    ratings: np.ndarray | None
    train_end: np.ndarray
    item_meta: pl.DataFrame | None
    domain: str = "movies"
    name: str = "toy"
    manifest: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """Who is in the dataset and where their training ends (as PreparedDataset.fingerprint)."""
        h = hashlib.sha256(repr((self.user_ids.to_list(), self.item_ids.to_list())).encode())
        h.update(np.asarray(self.train_end, dtype=np.int64).tobytes())
        h.update(np.diff(self.offsets).astype(np.int64).tobytes())
        return h.hexdigest()[:32]


def toy_dataset(
    logs: list[list[tuple[int, int, float | None]]],
    meta: dict[str, list] | None,
    train_end: list[int],
    domain: str = "movies",
    n_items: int | None = None,
) -> ToyDataset:
    """logs[u] = [(dense item >= 1, timestamp, rating), ...] in time order; meta columns are
    lists indexed by dense item - 1 (item ids are ``"i<item>"``, user ids ``"u<user>"``)."""
    n_items = n_items or max(it for log in logs for it, _, _ in log)
    lengths = [len(x) for x in logs]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = np.array([it for log in logs for it, _, _ in log], dtype=np.int64)
    ts = np.array([t for log in logs for _, t, _ in log], dtype=np.int64)
    rs = [r for log in logs for _, _, r in log]
    ratings = None if all(r is None for r in rs) else np.array(rs, dtype=np.float32)
    item_meta = None
    if meta is not None:
        item_meta = pl.DataFrame(
            {
                "item": np.arange(1, n_items + 1, dtype=np.int64),
                "item_id": [f"i{i}" for i in range(1, n_items + 1)],
                **meta,
            }
        )
    return ToyDataset(
        len(logs),
        n_items,
        pl.Series("user_id", [f"u{u}" for u in range(len(logs))]),
        pl.Series("item_id", [None] + [f"i{i}" for i in range(1, n_items + 1)]),
        offsets,
        items,
        ts,
        ratings,
        np.array(train_end, dtype=np.int64),
        item_meta,
        domain,
    )


def movie_dataset(n_users: int = 6, seed: int = 0, length: tuple[int, int] = (6, 12)) -> ToyDataset:
    """Random movie logs over 12 titled films with genres and years; the last 2 items are held out."""
    rng = np.random.default_rng(seed)
    titles = [f"Film {chr(65 + i)}" for i in range(12)]
    genres = ["Comedy|Drama", "Horror", "Sci-Fi|Action", "Drama", "Animation|Comedy", "Thriller"] * 2
    years = [1990 + i for i in range(12)]
    logs, ends = [], []
    for _ in range(n_users):
        n = int(rng.integers(*length))
        its = rng.integers(1, 13, size=n)
        logs.append([(int(i), 1000 + 10 * k, float(rng.integers(1, 6))) for k, i in enumerate(its)])
        ends.append(n - 2)
    return toy_dataset(logs, {"title": titles, "genres": genres, "year": years}, ends, "movies", 12)


def test_toy_dataset_matches_contract():
    ds = movie_dataset()
    assert ds.offsets[-1] == len(ds.items) == len(ds.timestamps) == len(ds.ratings)
    assert ds.item_ids[0] is None and ds.items.min() >= 1
    assert (ds.train_end <= np.diff(ds.offsets)).all()


def test_real_prepared_dataset_gives_training_prefix_histories(tmp_path):
    data = pytest.importorskip("seqdistill.data")
    if not hasattr(data, "prepare"):
        pytest.skip("seqdistill.data.prepare not written yet")
    from seqdistill.profiles.history import HistoryConfig, ItemTexts, resolve_rating_scale, user_history
    from seqdistill.profiles.stats_profile import write_stats_profiles

    rows = [(u, f"m{(u + k) % 6}", 100 * k + u, float(1 + (u + k) % 5)) for u in range(4) for k in range(8)]
    log = pl.DataFrame(
        rows,
        schema={"user_id": pl.Int64, "item_id": pl.String, "timestamp": pl.Int64, "rating": pl.Float32},
        orient="row",
    )
    items = pl.DataFrame(
        {
            "item_id": [f"m{i}" for i in range(6)],
            "title": [f"Movie {i}" for i in range(6)],
            "genres": ["Comedy", "Drama"] * 3,
        }
    )
    ds = data.prepare(log, items, k_core=None, name="tiny", domain="movies")
    ds = data.PreparedDataset.load(ds.save(tmp_path / "ds"))
    texts, scale = ItemTexts(ds), resolve_rating_scale(ds, HistoryConfig())
    for u in range(ds.n_users):
        raw_u = ds.user_ids[u]
        prefix = log.filter(pl.col("user_id") == raw_u).sort("timestamp").head(int(ds.train_end[u]))
        lines = user_history(ds, u, texts, scale).lines
        assert len(lines) == prefix["item_id"].n_unique()
        last = prefix.unique("item_id", keep="last").sort("timestamp")
        for line, (item, rating) in zip(lines, last.select("item_id", "rating").iter_rows()):
            assert line.startswith(f"- [rated {rating:g}/5] Movie {item[1:]}")
    store = write_stats_profiles(ds, tmp_path / "stats")
    expected = [str(ds.user_ids[u]) for u in range(ds.n_users) if ds.train_end[u] > 0]
    assert store.table()["user_id"].to_list() == expected and len(expected) > 0
