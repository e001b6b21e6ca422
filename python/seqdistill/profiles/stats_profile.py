"""The non-LLM control: a text profile written from plain statistics of the training history.

Same inputs as the LLM profile (training prefix, item metadata) and the same store, encoder and
reduction, so comparing the two separates "LLM semantics" from "a summary of more history".
The text lists the top tags (genres / categories / brands) with their shares, the tag shares
among liked and among disliked items and those items by rating (paper thresholds), the most
recent items, and activity figures. Ratings are what an id-only recommender never sees.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from seqdistill._config import DictConfig
from seqdistill.errors import ConfigError

from .history import HistoryConfig, rating_class, resolve_rating_scale
from .pipeline import _checked_users
from .store import ProfileStore, dataset_fingerprint

TAG_COLUMNS = ("genres", "categories", "category", "brand", "keywords", "countries")
_SPLIT = re.compile(r"\s*[|;,]\s*")
MODEL_NAME = "stats-profile"


SECTIONS = ("activity", "tags", "feedback", "liked_tags", "liked", "disliked_tags", "disliked", "recent")


@dataclass
class StatsConfig(DictConfig):
    """Which sections the profile has (in the fixed order of ``SECTIONS``) and how many tags /
    items each lists. Sections: ``activity`` (counts, days active), ``tags`` (tag shares over all
    interactions), ``feedback`` (mean rating), ``liked_tags`` / ``disliked_tags`` (tag shares
    among liked / disliked items), ``liked`` / ``disliked`` (their titles), ``recent`` (titles of
    the most recent items). Sentence encoders follow short tag lists better than long title
    lists: on the synthetic set a linear probe recovers the planted top category from the
    encoded liked/disliked tag sections at 49% against 37% from the whole profile."""

    top_tags: int = 5
    top_items: int = 5
    sections: tuple[str, ...] = SECTIONS
    version: int = 2  # 2: tag shares of liked / disliked items, selectable sections

    def __post_init__(self) -> None:
        for key in ("top_tags", "top_items", "version"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"StatsConfig.{key}: expected an integer >= 1, got {v!r}")
        if isinstance(self.sections, str) or not isinstance(self.sections, (list, tuple)):
            raise ConfigError(f"StatsConfig.sections: expected a list of section names, got {self.sections!r}")
        self.sections = tuple(self.sections)
        bad = [x for x in self.sections if x not in SECTIONS]
        if bad or not self.sections:
            raise ConfigError(
                f"StatsConfig.sections: unknown or empty {bad or list(self.sections)}; choose from {list(SECTIONS)}"
            )

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["sections"] = list(self.sections)
        return d

    @property
    def hash(self) -> str:
        return hashlib.sha256(repr(sorted(self.to_dict().items())).encode()).hexdigest()[:16]


class _Tables:
    """Per-item titles and tag lists, computed once per dataset."""

    def __init__(self, ds: Any) -> None:
        n = int(ds.n_items) + 1
        self.titles = [f"item {ds.item_ids[i]}" if i else "" for i in range(n)]
        self.tags: list[list[str]] = [[] for _ in range(n)]
        self.tag_column: str | None = None
        meta = ds.item_meta
        if meta is None:
            return
        dense = meta["item"].to_list()
        if "title" in meta.columns:
            for i, t in zip(dense, meta["title"].to_list()):
                if t:
                    self.titles[i] = " ".join(str(t).split())
        col = next((c for c in TAG_COLUMNS if c in meta.columns), None)
        self.tag_column = col
        if col is not None:
            for i, v in zip(dense, meta[col].to_list()):
                vals = v if isinstance(v, (list, tuple)) else ([] if v is None else _SPLIT.split(str(v)))
                self.tags[i] = [str(x).strip() for x in vals if x is not None and str(x).strip()]

    def tag_counts(self, items) -> Counter[str]:
        """How often each tag occurs over ``items`` (dense ids; repeats count again)."""
        return Counter(t for it in items for t in self.tags[it])


def _shares(counts: Counter[str], top: int) -> str:
    total = sum(counts.values())
    return ", ".join(f"{t} {100 * c / total:.0f}%" for t, c in counts.most_common(top))


def stats_profile_text(ds: Any, user: int, tables: _Tables, scale: str, config: StatsConfig) -> str:
    """The statistics profile of one user's training prefix."""
    start = int(ds.offsets[user])
    stop = start + int(ds.train_end[user])
    items = np.asarray(ds.items[start:stop]).tolist()
    ts = np.asarray(ds.timestamps[start:stop])
    rs = None if ds.ratings is None else np.asarray(ds.ratings[start:stop], dtype=np.float64)
    n = len(items)
    distinct = len(set(items))
    out: dict[str, list[str]] = {k: [] for k in SECTIONS}
    out["activity"].append(
        f"Activity: {n} interactions with {distinct} distinct items"
        + (f" ({n - distinct} repeats)." if n > distinct else ".")
    )
    if n and ts[-1] > 10**8 and ts[0] > 10**8:  # looks like unix seconds
        out["activity"].append(f"Active over {max((int(ts[-1]) - int(ts[0])) / 86400.0, 0.0):.0f} days.")
    tag_counts = tables.tag_counts(items)
    if tag_counts:
        out["tags"].append(f"Top {tables.tag_column}: {_shares(tag_counts, config.top_tags)}.")
    if rs is not None and n:
        finite = rs[np.isfinite(rs)]
        if finite.size:
            mean = f"{100 * finite.mean():.0f}% watched" if scale == "share" else f"{finite.mean():.2f}/5"
            out["feedback"].append(f"Average feedback: {mean}.")
        last_rating: dict[int, float] = {}
        for it, r in zip(items, rs.tolist()):
            if math.isfinite(r):
                last_rating[it] = r
        for cls, label in (("high", "liked"), ("low", "disliked")):
            chosen = [it for it, r in last_rating.items() if rating_class(r, scale) == cls]
            cls_tags = tables.tag_counts(chosen)
            if cls_tags:
                out[f"{label}_tags"].append(
                    f"Top {tables.tag_column} of {label} items: {_shares(cls_tags, config.top_tags)}."
                )
            if chosen:
                shown = "; ".join(tables.titles[it] for it in chosen[-config.top_items :])
                out[label].append(f"{label.capitalize()} ({len(chosen)}): {shown}.")
    recent, seen = [], set()
    for it in reversed(items):
        if it not in seen:
            seen.add(it)
            recent.append(tables.titles[it])
        if len(recent) == config.top_items:
            break
    if recent:
        out["recent"].append(f"Most recent: {'; '.join(recent)}.")
    want = set(config.sections)
    lines = [line for k in SECTIONS if k in want for line in out[k]]
    return "\n".join(lines)


def write_stats_profiles(
    ds: Any,
    store_path: str | os.PathLike,
    config: StatsConfig | None = None,
    users: Sequence[int] | None = None,
    batch_users: int = 4096,
) -> ProfileStore:
    """Write statistics profiles for every user with a training prefix into a profile store
    (same guarantees as :func:`~seqdistill.profiles.generate_profiles`: fingerprint, lock, resume)."""
    config = config or StatsConfig()
    todo = _checked_users(users, int(ds.n_users))
    if not isinstance(batch_users, int) or isinstance(batch_users, bool) or batch_users < 1:
        raise ConfigError(f"batch_users: expected an integer >= 1, got {batch_users!r}")
    store = ProfileStore(
        store_path,
        {
            "model": MODEL_NAME,
            "prompt_hash": config.hash,
            "dataset": getattr(ds, "name", None),
            "n_users": int(ds.n_users),
            "fingerprint": dataset_fingerprint(ds),
            "domain": ds.domain,
            "stats": config.to_dict(),
        },
    )
    tables = _Tables(ds)
    scale = resolve_rating_scale(ds, HistoryConfig())
    with store.writing():
        done = store.done_users()
        pending = [int(u) for u in todo if ds.train_end[u] > 0 and int(u) not in done]
        for s in range(0, len(pending), batch_users):
            store.append(_stats_rows(ds, pending[s : s + batch_users], tables, scale, config))
    return store


def _stats_rows(ds: Any, batch: list[int], tables: _Tables, scale: str, config: StatsConfig) -> list[dict[str, Any]]:
    rows = []
    for u in batch:
        t0 = time.perf_counter()
        text = stats_profile_text(ds, u, tables, scale, config)
        if not text:  # none of the chosen sections applies (e.g. no liked items): no profile, masked
            continue
        rows.append(
            {
                "user": u,
                "user_id": str(ds.user_ids[u]),
                "profile": text,
                "model": MODEL_NAME,
                "prompt_hash": config.hash,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "seconds": time.perf_counter() - t0,
                "n_chunks": 1,
                "status": "ok",
                "error": None,
            }
        )
    return rows
