"""The prefix tree of item IDs and the constrained beam search over it.

Every item's ID is a token sequence followed by the end token; the tree holds them all, so a
decoder step may only choose a token that continues at least one real ID, and choosing the end
token at a node names exactly one item. Beam search over the tree therefore returns real items
only, each at most once, scored by the sum of its tokens' log-probabilities (end token included).

Seen items are removed the way :mod:`seqdistill.evaluation` removes them with
``filter_seen=True``: they are never candidates. Here that means a branch whose every item is
seen by the row is closed for that row (each node counts the items below it; a row subtracts its
seen items along their paths), so the beam is spent on items that can be ranked.

The search keeps the ``beams`` best hypotheses per row, finished or not; it ends when all of a
row's kept hypotheses are finished (a finished score can only be beaten by an unfinished one
above it, and extending lowers a score). Results are ordered by score, ties to the lower item id.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from seqdistill.errors import ConfigError, DataError

__all__ = ["IDTrie", "constrained_beam_search"]


@dataclass
class _Node:
    children: dict[int, int] = field(default_factory=dict)  # token -> node index
    count: int = 0  # items below this node
    item: int = 0  # the item an end-token leaf names (0 elsewhere)


class IDTrie:
    """Prefix tree over ``ids[item]`` (token tuples; index 0 unused) ending with ``eos``."""

    def __init__(self, ids: Sequence[Sequence[int] | None], eos: int) -> None:
        self.eos = eos
        self.nodes: list[_Node] = [_Node()]
        self._arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.paths: list[list[int]] = [[] for _ in ids]  # node indices below the root, per item
        for item, tokens in enumerate(ids):
            if item == 0:
                continue
            if not tokens:
                raise DataError(f"IDTrie: item {item} has an empty ID")
            if eos in tokens:
                raise DataError(f"IDTrie: the ID of item {item} contains the end token {eos}")
            self._insert(item, [*tokens, eos])

    def _insert(self, item: int, tokens: list[int]) -> None:
        node, path = 0, []
        self.nodes[0].count += 1
        for t in tokens:
            nxt = self.nodes[node].children.get(t)
            if nxt is None:
                nxt = len(self.nodes)
                self.nodes[node].children[t] = nxt
                self.nodes.append(_Node())
            node = nxt
            self.nodes[node].count += 1
            path.append(node)
        if self.nodes[node].item:
            raise DataError(f"IDTrie: items {self.nodes[node].item} and {item} have the same ID")
        self.nodes[node].item = item
        self.paths[item] = path

    @property
    def n_items(self) -> int:
        return self.nodes[0].count

    def blocked(self, seen: Sequence[int]) -> dict[int, int]:
        """Per node, how many of the distinct ``seen`` items lie below it (root included)."""
        out: dict[int, int] = {}
        for item in set(int(s) for s in seen):
            if 0 < item < len(self.paths):
                out[0] = out.get(0, 0) + 1
                for n in self.paths[item]:
                    out[n] = out.get(n, 0) + 1
        return out

    def allowed(self, node: int, blocked: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """``(tokens, children)`` below ``node`` that still lead to an unblocked item."""
        arrays = self._arrays.get(node)
        if arrays is None:
            kids = self.nodes[node].children
            arrays = (np.fromiter(kids.keys(), np.int64, len(kids)), np.fromiter(kids.values(), np.int64, len(kids)))
            self._arrays[node] = arrays
        if not blocked:
            return arrays
        toks, kids = arrays
        open_ = [self.nodes[c].count > blocked.get(c, 0) for c in kids.tolist()]
        return toks[open_], kids[open_]


@dataclass
class _Hyp:
    row: int
    tokens: list[int]
    node: int
    score: float
    item: int = 0  # set when finished
    slot: int = 0  # the row of the last decoder pass whose output extended this hypothesis


class _Decoder:
    """Incremental T5 decoding for a changing set of hypotheses: the encoder states are computed
    once per row, the decoder's keys and values (self- and cross-attention) are cached and, before
    each step, gathered to the hypotheses being extended (as Hugging Face's beam search does)."""

    def __init__(self, model, input_ids: torch.Tensor, attention_mask: torch.Tensor, start: int) -> None:
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        self.model, self.start, self.mask = model, start, attention_mask
        self.enc = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        self.cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        self.first = True
        # transformers >= 5.2x names the argument (and the output field) ``cache``; 4.x ``past_key_values``
        params = inspect.signature(model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"

    def step(self, hyps: list[_Hyp]) -> torch.Tensor:
        """Log-probabilities ``[len(hyps), vocab]`` of each hypothesis's next token."""
        dev = self.mask.device
        rows = torch.tensor([h.row for h in hyps], device=dev)
        if not self.first:
            self.cache.reorder_cache(torch.tensor([h.slot for h in hyps], device=dev))
        last = [h.tokens[-1] if h.tokens else self.start for h in hyps]
        # after the first step the cross-attention keys and values come from the cache and the
        # encoder states are not read again: a broadcast view stands in for a gathered copy
        enc = self.enc[rows] if self.first else self.enc[:1].expand(len(hyps), -1, -1)
        out = self.model(
            encoder_outputs=(enc,),
            attention_mask=self.mask[rows],
            decoder_input_ids=torch.tensor(last, device=dev)[:, None],
            use_cache=True,
            **{self.cache_arg: self.cache},
        )
        self.cache, self.first = getattr(out, self.cache_arg), False
        return torch.log_softmax(out.logits[:, -1].float(), dim=-1)


@torch.no_grad()
def constrained_beam_search(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    trie: IDTrie,
    beams: int,
    start_token: int,
    seen: Sequence[Sequence[int]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``beams`` items per row of a T5 ``model`` over ``input_ids [rows, S]``.

    Returns ``(items [rows, beams] int64, scores [rows, beams] float64)``: dense item ids in
    score order (ties to the lower id), -1 / ``-inf`` where a row has fewer reachable items.
    ``seen[row]`` lists items never to return for that row.
    """
    if beams < 1:
        raise ConfigError(f"constrained_beam_search: beams must be >= 1, got {beams}")
    rows = input_ids.shape[0]
    dec = _Decoder(model, input_ids, attention_mask, start_token)
    blocked = [trie.blocked(seen[r]) if seen is not None else {} for r in range(rows)]
    pool: list[list[_Hyp]] = [[_Hyp(r, [], 0, 0.0)] for r in range(rows)]
    while True:
        live = [h for p in pool for h in p if not h.item]
        if not live:
            break
        logp = dec.step(live).cpu().numpy()
        grown: list[list[_Hyp]] = [[h for h in p if h.item] for p in pool]
        for slot, (h, lp) in enumerate(zip(live, logp)):
            toks, kids = trie.allowed(h.node, blocked[h.row])
            scores = h.score + lp[toks].astype(np.float64)
            if len(toks) > beams:  # no more than ``beams`` of one parent can be kept
                keep = np.argpartition(-scores, beams - 1)[:beams]
                toks, kids, scores = toks[keep], kids[keep], scores[keep]
            for t, child, sc in zip(toks.tolist(), kids.tolist(), scores.tolist()):
                item = trie.nodes[child].item if t == trie.eos else 0
                grown[h.row].append(_Hyp(h.row, [*h.tokens, t], child, sc, item, slot))
        pool = [sorted(g, key=_order)[:beams] for g in grown]
    items = np.full((rows, beams), -1, dtype=np.int64)
    scores = np.full((rows, beams), -np.inf)
    for r, p in enumerate(pool):
        for j, h in enumerate(sorted(p, key=_order)):
            items[r, j], scores[r, j] = h.item, h.score
    return items, scores


def _order(h: _Hyp) -> tuple[float, int, int]:
    """Higher score first; among equal scores finished before unfinished, then the lower item."""
    return (-h.score, 0 if h.item else 1, h.item)
