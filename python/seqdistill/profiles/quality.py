"""What a profile store holds, in numbers: length, loops and items named from outside the history.

Printed after ``seqdistill profiles generate`` and by ``seqdistill profiles stats``; the same
figures chose the small-model decoding defaults (docs/profiles.md).

Definitions (each has a hand-made test in tests/test_profiles_decoding.py):

* **Words** of a text: its maximal runs of letters and digits, lowercased (``\\w+`` without ``_``).
* **Loop.** A text *loops* when some block of ``p`` words (``1 <= p <= max_period``) occurs at
  least three times back to back and the run covers at least ``min_words`` words: in word terms,
  a stretch ``w[s : s + L]`` with ``w[i] == w[i + p]`` for every ``i`` in it, ``L >= 3p`` and
  ``L >= min_words`` (defaults 50 and 12), where every number counts as the same word (a
  numbered list "1. X; 2. X; 3. X" repeats X; so does a list of years). "Comedy, Drama, Comedy,
  Drama, ..." over twelve words loops; a sentence said twice does not. The **loop rate** is the
  share of ok profiles that loop.
* **Named items.** The title of an item is matched in a profile as a sequence of words, after
  dropping a trailing ``(year)`` and moving a trailing article to the front (``Matrix, The`` ->
  ``the matrix``). Titles shorter than ``min_title_chars`` (8) characters (words joined by one
  space) are not looked for: "Heat" or "Big" are ordinary words. Matches are taken left to right,
  the longest title first, and a title of the user's own training history wins a tie, so "The
  Godfather: Part II" in the history is not also a mention of "The Godfather". A profile
  **names an outside item** when one of the matched titles belongs to no item of the user's
  training history. Invented titles that are in no catalogue cannot be seen this way, so the
  share is a lower bound on invention.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

_WORD = re.compile(r"[^\W_]+")
_YEAR = re.compile(r"\s*\(\s*\d{4}\s*\)\s*$")
_TRAILING_ARTICLE = re.compile(r"^(.*),\s*(the|a|an|les|la|le|il|el|das|der|die)\s*$", re.IGNORECASE)


def words(text: str) -> list[str]:
    """The lowercased words of ``text`` (see the module doc)."""
    return _WORD.findall(text.lower())


def longest_loop(text: str, max_period: int = 50) -> tuple[int, int]:
    """``(period, length)`` in words of the longest stretch that repeats one block at least three
    times back to back; ``(0, 0)`` when there is none."""
    w = ["#" if x.isdigit() else x for x in words(text)]  # "1. X 2. X 3. X" repeats X
    best = (0, 0)
    for p in range(1, min(max_period, len(w) // 3) + 1):
        run = 0
        for i in range(len(w) - p):
            run = run + 1 if w[i] == w[i + p] else 0
            length = run + p
            if run >= 2 * p and length > best[1]:
                best = (p, length)
    return best


def loops(text: str, min_words: int = 12, max_period: int = 50) -> bool:
    """Whether ``text`` loops: a block repeated three times or more, covering ``min_words`` words."""
    return longest_loop(text, max_period)[1] >= min_words


def title_key(title: str) -> tuple[str, ...]:
    """The words a title is looked for by: no trailing ``(year)``, a trailing article moved first."""
    t = _YEAR.sub("", str(title)).strip()
    m = _TRAILING_ARTICLE.match(t)
    if m:
        t = f"{m.group(2)} {m.group(1)}"
    return tuple(words(t))


class TitleIndex:
    """Catalogue titles by their first word, for matching words of a profile (see module doc)."""

    def __init__(self, titles: Sequence[str | None], min_title_chars: int = 8) -> None:
        self.keys: list[tuple[str, ...]] = [title_key(t) if t else () for t in titles]
        self.by_first: dict[str, list[tuple[tuple[str, ...], list[int]]]] = {}
        groups: dict[tuple[str, ...], list[int]] = {}
        for item, key in enumerate(self.keys):
            if key and len(" ".join(key)) >= min_title_chars:
                groups.setdefault(key, []).append(item)
        for key, items in groups.items():
            self.by_first.setdefault(key[0], []).append((key, items))
        for cands in self.by_first.values():
            cands.sort(key=lambda c: -len(c[0]))

    def mentions(self, text: str, history: Iterable[int]) -> tuple[set[int], set[int]]:
        """``(history items named, outside titles named)``: item ids of the history whose title
        occurs, and one item id per outside title that occurs."""
        own = {int(i) for i in history}
        w = words(text)
        inside: set[int] = set()
        outside: set[int] = set()
        i = 0
        while i < len(w):
            match = None
            for key, items in self.by_first.get(w[i], ()):
                if match is not None and len(key) < len(match[0]):
                    break
                if tuple(w[i : i + len(key)]) == key:
                    mine = [x for x in items if x in own]
                    if match is None or (mine and not match[1]):
                        match = (key, mine, items)
            if match is None:
                i += 1
                continue
            key, mine, items = match
            if mine:
                inside.update(mine)
            else:
                outside.add(items[0])
            i += len(key)
        return inside, outside


@dataclass
class StoreStats:
    """Figures of one store (ok profiles only, except the counts)."""

    n_ok: int
    n_error: int
    tokens_mean: float
    tokens_median: float
    tokens_p90: float
    words_mean: float
    hit_max_new_tokens: float | None  # share of profiles whose generation ran to max_new_tokens
    loop_rate: float
    names_outside_item: float | None  # None without titles
    names_history_item: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def lines(self) -> list[str]:
        """A short human-readable summary."""
        pct = lambda x: "n/a" if x is None else f"{100 * x:.1f}%"  # noqa: E731
        return [
            f"profiles: {self.n_ok} ok, {self.n_error} error",
            f"tokens per profile: mean {self.tokens_mean:.1f}, median {self.tokens_median:.0f}, "
            f"p90 {self.tokens_p90:.0f}; ran to max_new_tokens: {pct(self.hit_max_new_tokens)}",
            f"loop rate: {pct(self.loop_rate)} (a block of words repeated 3+ times over 12+ words)",
            f"naming an item outside the user's history: {pct(self.names_outside_item)}; "
            f"naming a history item: {pct(self.names_history_item)}",
        ]


def item_titles(ds: Any) -> list[str | None] | None:
    """Title of every dense item (index 0 unused), or None when the dataset has no titles."""
    meta = getattr(ds, "item_meta", None)
    if meta is None or "title" not in meta.columns:
        return None
    titles: list[str | None] = [None] * (int(ds.n_items) + 1)
    for item, t in zip(meta["item"].to_list(), meta["title"].to_list()):
        if item is not None and 0 < item < len(titles) and t:
            titles[item] = str(t)
    return titles


def text_stats(
    texts: Sequence[str],
    completion_tokens: Sequence[int],
    *,
    histories: Sequence[Iterable[int]] | None = None,
    titles: Sequence[str | None] | None = None,
    max_new_tokens: int | None = None,
    n_error: int = 0,
    min_title_chars: int = 8,
) -> StoreStats:
    """The figures of ``texts`` (with their users' training items in ``histories`` and the
    catalogue ``titles`` for the named-item shares)."""
    n = len(texts)
    tok = np.asarray(completion_tokens, dtype=np.float64) if n else np.zeros(1)
    looped = [loops(t) for t in texts]
    outside = inside = None
    if titles is not None and histories is not None and n:
        index = TitleIndex(titles, min_title_chars)
        found = [index.mentions(t, h) for t, h in zip(texts, histories)]
        inside = float(np.mean([bool(a) for a, _ in found]))
        outside = float(np.mean([bool(b) for _, b in found]))
    hit = None if max_new_tokens is None or not n else float(np.mean(tok >= max_new_tokens))
    return StoreStats(
        n_ok=n,
        n_error=int(n_error),
        tokens_mean=float(tok.mean()) if n else 0.0,
        tokens_median=float(np.median(tok)) if n else 0.0,
        tokens_p90=float(np.quantile(tok, 0.9)) if n else 0.0,
        words_mean=float(np.mean([len(words(t)) for t in texts])) if n else 0.0,
        hit_max_new_tokens=hit,
        loop_rate=float(np.mean(looped)) if n else 0.0,
        names_outside_item=outside,
        names_history_item=inside,
    )


def store_stats(store: Any, ds: Any | None = None, min_title_chars: int = 8) -> StoreStats:
    """The figures of a :class:`~seqdistill.profiles.store.ProfileStore` (``ds``: its dataset, for
    the named-item shares; checked to be the store's)."""
    table = store.table()
    ok = table.filter(table["status"] == "ok")
    users = ok["user"].to_list()
    histories = titles = None
    if ds is not None:
        store.check_dataset(ds)
        titles = item_titles(ds)
        offsets, train_end = np.asarray(ds.offsets), np.asarray(ds.train_end)
        histories = [np.asarray(ds.items[offsets[u] : offsets[u] + train_end[u]]).tolist() for u in users]
    gen = store.meta.get("generation") if isinstance(store.meta.get("generation"), dict) else {}
    return text_stats(
        ok["profile"].to_list(),
        ok["completion_tokens"].to_list(),
        histories=histories,
        titles=titles,
        max_new_tokens=gen.get("max_new_tokens"),
        n_error=table.height - ok.height,
        min_title_chars=min_title_chars,
    )
