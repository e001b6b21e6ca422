"""User history as text, from the training prefix only.

Each user's training prefix ``items[offsets[u] : offsets[u] + train_end[u]]`` becomes one line per
distinct item, in time order of the item's *last* interaction. A repeated item is written once
with ``times: n`` and its last rating. The line carries the user's feedback first (stars, or the
share watched for ratings in [0, 1]) and then the item's metadata columns chosen per domain.

Token budgets use a tokenizer's counts when one is given (``count_tokens``), otherwise the
estimate ``ceil(len(text) / chars_per_token)`` with 4 characters per token (English text in BPE
vocabularies is 3.5-4.5 characters per token; the estimate errs on the long side for prose).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seqdistill._config import DictConfig
from seqdistill.errors import ConfigError, DataError

# Metadata columns per domain, in the order they are written; columns not present are skipped.
DOMAIN_FIELDS: dict[str, tuple[str, ...]] = {
    "products": ("title", "brand", "categories", "category", "price", "description"),
    "movies": ("title", "year", "genres", "countries", "directors", "director", "keywords", "description"),
    "sessions": ("title", "brand", "price", "color", "size", "model", "material", "description"),
    "generic": (),  # every metadata column
}
DOMAINS = tuple(DOMAIN_FIELDS)
STYLES = ("full", "compact")
COMPACT_TAGS = ("genres", "categories", "category", "brand")  # the first present is a compact line's tag
HIGH_STARS, LOW_STARS = 4.0, 2.0  # >= 4 stars is liked, <= 2 stars disliked
HIGH_SHARE, LOW_SHARE = 0.8, 0.5  # > 80 % watched is liked, < 50 % disliked

TokenCounter = Callable[[Sequence[str]], list[int]]


@dataclass
class HistoryConfig(DictConfig):
    """How a history becomes text.

    max_tokens: budget for the history text (None: only the model's context limits it).
    overflow: "chunk" (split into halves recursively, profile each, merge) or "truncate" (keep the
    most recent lines that fit). chars_per_token: estimate used without a tokenizer.
    max_field_chars: each metadata value is cut to this many characters (descriptions).
    rating_scale: "auto" (ratings within [0, 1] are watch shares, else stars), "stars", "share".
    fields: metadata columns to write (None: the domain's default list).
    style: "full" (every chosen column, ``- [rated 4/5] Title; year: ...``, with the five-point
    prompts) or "compact" (``- Title (1995) | Comedy, Drama | 4/5``: title, year and the tag column
    only, with the short four-line prompts ``compact_<domain>.txt`` — what a 135M model can follow).
    max_items: keep only this many most recent distinct items (None: all).
    """

    max_tokens: int | None = None
    overflow: str = "chunk"
    chars_per_token: float = 4.0
    max_field_chars: int = 200
    rating_scale: str = "auto"
    fields: list[str] | None = None
    style: str = "full"
    max_items: int | None = None

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ConfigError(f"HistoryConfig.style: expected one of {STYLES}, got {self.style!r}")
        if self.max_items is not None and (not _is_int(self.max_items) or self.max_items < 1):
            raise ConfigError(f"HistoryConfig.max_items: expected an integer >= 1 or None, got {self.max_items!r}")
        if self.max_tokens is not None and (not _is_int(self.max_tokens) or self.max_tokens < 1):
            raise ConfigError(f"HistoryConfig.max_tokens: expected an integer >= 1 or None, got {self.max_tokens!r}")
        if self.overflow not in ("chunk", "truncate"):
            raise ConfigError(f"HistoryConfig.overflow: expected 'chunk' or 'truncate', got {self.overflow!r}")
        if self.rating_scale not in ("auto", "stars", "share"):
            raise ConfigError(f"HistoryConfig.rating_scale: expected auto/stars/share, got {self.rating_scale!r}")
        cpt = self.chars_per_token
        if not isinstance(cpt, (int, float)) or isinstance(cpt, bool) or not 0 < cpt < math.inf:
            raise ConfigError(f"HistoryConfig.chars_per_token: expected a finite number > 0, got {cpt!r}")
        if not _is_int(self.max_field_chars) or self.max_field_chars < 1:
            raise ConfigError(f"HistoryConfig.max_field_chars: expected an integer >= 1, got {self.max_field_chars!r}")
        if self.fields is not None and (
            isinstance(self.fields, str) or not all(isinstance(f, str) for f in self.fields)
        ):
            raise ConfigError(f"HistoryConfig.fields: expected a list of column names or None, got {self.fields!r}")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def estimate_tokens(texts: Sequence[str], chars_per_token: float = 4.0) -> list[int]:
    """Token counts estimated from character counts (rounded up)."""
    return [math.ceil(len(t) / chars_per_token) for t in texts]


def resolve_rating_scale(ds: Any, config: HistoryConfig) -> str:
    """'stars', 'share' or 'none' for this dataset."""
    if ds.ratings is None:
        return "none"
    if config.rating_scale != "auto":
        return config.rating_scale
    r = np.asarray(ds.ratings)
    r = r[np.isfinite(r)]
    return "share" if r.size and float(r.min()) >= 0.0 and float(r.max()) <= 1.0 else "stars"


def rating_class(value: float | None, scale: str) -> str:
    """'high', 'low', 'mid' or 'none' using the paper's thresholds (>=4 / <=2 stars; >80 % / <50 %)."""
    if value is None or scale == "none" or not math.isfinite(value):
        return "none"
    if scale == "share":
        return "high" if value > HIGH_SHARE else "low" if value < LOW_SHARE else "mid"
    return "high" if value >= HIGH_STARS else "low" if value <= LOW_STARS else "mid"


def format_rating(value: float | None, scale: str) -> str:
    if value is None or scale == "none" or not math.isfinite(value):
        return ""
    if scale == "share":
        return f"watched {round(100 * value)}%"
    return f"rated {value:g}/5"


class ItemTexts:
    """Metadata text of every dense item, computed once per dataset."""

    def __init__(self, ds: Any, config: HistoryConfig | None = None) -> None:
        self.config = config or HistoryConfig()
        n = int(ds.n_items) + 1
        self.texts: list[str] = [""] * n
        self.columns: list[str] = []
        meta = ds.item_meta
        if meta is None:
            return
        if "item" not in meta.columns:
            raise DataError(f"item_meta: missing the dense 'item' column (columns: {meta.columns})")
        if self.config.style == "compact":
            self._compact(meta, n)
            return
        wanted = self.config.fields
        if wanted is None:
            default = DOMAIN_FIELDS.get(ds.domain, ())
            cols = [c for c in default if c in meta.columns]
            if not cols:  # generic domain, or none of the expected names: use every column
                cols = [c for c in meta.columns if c not in ("item", "item_id")]
        else:
            missing = [c for c in wanted if c not in meta.columns]
            if missing:
                raise ConfigError(f"item_meta: HistoryConfig.fields names missing columns {missing}")
            cols = list(wanted)
        self.columns = cols
        dense = meta["item"].to_list()
        values = {c: meta[c].to_list() for c in cols}
        cut = self.config.max_field_chars
        for row, item in enumerate(dense):
            if item is None or not (0 < item < n):
                raise DataError(f"item_meta: column 'item' has value {item!r} in row {row}, outside 1..{n - 1}")
            parts = []
            for c in cols:
                text = _value_text(values[c][row])
                if not text:
                    continue
                if len(text) > cut:
                    text = text[: cut - 1].rstrip() + "…"
                parts.append(text if c == "title" else f"{c}: {text}")
            self.texts[item] = "; ".join(parts)

    def _compact(self, meta: Any, n: int) -> None:
        """``Title (year) | tags`` per item: the few fields a small model can use."""
        tag = next((c for c in COMPACT_TAGS if c in meta.columns), None)
        self.columns = [c for c in ("title", "year", tag) if c is not None and c in meta.columns]
        cut = min(self.config.max_field_chars, 80)
        get = {c: meta[c].to_list() for c in self.columns}
        for row, item in enumerate(meta["item"].to_list()):
            if item is None or not (0 < item < n):
                raise DataError(f"item_meta: column 'item' has value {item!r} in row {row}, outside 1..{n - 1}")
            title, year, tags = (_value_text(get[c][row])[:cut] if c in get else "" for c in ("title", "year", tag))
            head = title + (f" ({year})" if year and year not in title else "")
            self.texts[item] = " | ".join(x for x in (head.strip(), tags) if x)

    def __getitem__(self, item: int) -> str:
        return self.texts[item]


def _value_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_value_text(x) for x in v if x is not None)
    return " ".join(str(v).split())


@dataclass
class UserHistory:
    """One user's training history as text lines, oldest first."""

    user: int
    lines: list[str]
    n_interactions: int
    n_dropped: int = 0  # lines left out by the "truncate" budget
    ratings: list[float | None] = field(default_factory=list)  # last rating per line

    def text(self, lines: Sequence[str] | None = None) -> str:
        return "\n".join(self.lines if lines is None else lines)


def user_history(ds: Any, user: int, item_texts: ItemTexts, scale: str) -> UserHistory:
    """The training prefix of ``user`` as one line per distinct item (time order of last use)."""
    start = int(ds.offsets[user])
    stop = start + int(ds.train_end[user])
    if stop > int(ds.offsets[user + 1]):
        raise DataError(f"train_end[{user}] = {ds.train_end[user]} exceeds the user's log length")
    items = np.asarray(ds.items[start:stop])
    ratings = None if ds.ratings is None else np.asarray(ds.ratings[start:stop], dtype=np.float64)
    last: dict[int, int] = {}
    count: dict[int, int] = {}
    for pos, it in enumerate(items.tolist()):
        last[it] = pos
        count[it] = count.get(it, 0) + 1
    order = sorted(last, key=last.__getitem__)
    keep = item_texts.config.max_items
    dropped = max(len(order) - keep, 0) if keep is not None else 0
    compact = item_texts.config.style == "compact"
    lines, rs = [], []
    for it in order[dropped:]:
        r = None if ratings is None else float(ratings[last[it]])
        if r is not None and not math.isfinite(r):
            r = None
        text = item_texts[it] or f"item {ds.item_ids[it]}"
        if compact:
            lines.append("- " + " | ".join(x for x in (text, _compact_rating(r, scale), _times(count[it])) if x))
        else:
            head = format_rating(r, scale)
            times = f" (times: {count[it]})" if count[it] > 1 else ""
            lines.append(f"- {'[' + head + '] ' if head else ''}{text}{times}")
        rs.append(r)
    return UserHistory(user=user, lines=lines, n_interactions=len(items), n_dropped=dropped, ratings=rs)


def _compact_rating(value: float | None, scale: str) -> str:
    """``4/5`` or ``85%`` (empty without a rating)."""
    if value is None or scale == "none" or not math.isfinite(value):
        return ""
    return f"{round(100 * value)}%" if scale == "share" else f"{value:g}/5"


def _times(n: int) -> str:
    return f"x{n}" if n > 1 else ""


def keep_recent(lines: Sequence[str], counts: Sequence[int], budget: int) -> int:
    """Index of the first line kept so that the most recent lines fit ``budget`` tokens
    (each line costs its count plus one for the newline). At least one line is kept."""
    total, start = 0, len(lines)
    while start > 0 and total + counts[start - 1] + 1 <= budget:
        total += counts[start - 1] + 1
        start -= 1
    return min(start, max(len(lines) - 1, 0))


def split_halves(counts: Sequence[int], budget: int, lo: int = 0, hi: int | None = None) -> list[tuple[int, int]]:
    """Split lines ``[lo, hi)`` into halves recursively until each part fits ``budget`` tokens;
    returns (start, stop) ranges in order. A single line over budget stays on its own."""
    hi = len(counts) if hi is None else hi
    cost = sum(counts[lo:hi]) + (hi - lo)
    if cost <= budget or hi - lo <= 1:
        return [(lo, hi)]
    mid = (lo + hi) // 2
    return split_halves(counts, budget, lo, mid) + split_halves(counts, budget, mid, hi)
