"""The ID generator's decoding: item text in, a short textual ID out, unique over the catalogue.

Candidates come from diverse beam search with ``groups`` groups of one beam each (Vijayakumar et
al.'s Hamming diversity, as IDGenRec runs it): at every step the groups choose in turn, each
penalised by ``penalty`` for every earlier group that chose the same token at that step. Group 0
is therefore the plain greedy ID; later groups move away from it. Special tokens (padding, the
history separator, unknown words) are never generated, and the end token not before
``min_len`` tokens. With ``no_repeat`` (our addition, on by default) no token appears twice in an
ID: a repeated word tells items apart no better than one, and a randomly initialised generator
otherwise repeats one word up to the length limit.

Collision handling (:func:`assign_ids`), as the paper describes it: items are taken in catalogue
order; an item gets its first candidate that no earlier item holds. Items left without one are
decoded again with the penalty raised by ``diversity_step``; after ``attempts_per_length``
attempts the minimum length grows by ``max_id_tokens`` and the penalty starts over, at most
``length_rounds`` times. The released code can loop forever on a catalogue of identical titles;
here an item still colliding then takes its first candidate followed by the lowest number (written
digit by digit) that makes it unique, so the assignment always ends with every ID distinct.

An ID is compared as the token ids of its normalised text (``id_words``), the sequence the
recommender reads and the prefix tree holds, so two IDs are distinct exactly when the model can
tell them apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .tokenizer import Tokenizer, id_words

__all__ = ["IdAssignment", "assign_ids", "diverse_candidates", "text_inputs"]


def text_inputs(
    tok: Tokenizer, texts: Sequence[str], max_tokens: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``(input_ids, attention_mask)`` of ``texts`` (cut at ``max_tokens``, then the end token)."""
    rows = [tok.encode(t)[: max_tokens - 1] + [tok.eos_id] for t in texts]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tok.pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    return ids.to(device), (ids != tok.pad_id).long().to(device)


def _banned(tok: Tokenizer, vocab: int) -> list[int]:
    out = {tok.pad_id, tok.sep_id}
    unk = getattr(tok, "unk_id", None)
    if unk is not None:
        out.add(unk)
    return sorted(t for t in out if 0 <= t < vocab and t != tok.eos_id)


@torch.no_grad()
def diverse_candidates(
    gen,
    tok: Tokenizer,
    texts: Sequence[str],
    groups: int,
    penalty: float,
    min_len: int,
    max_len: int,
    max_text: int,
    no_repeat: bool = True,
) -> list[list[list[int]]]:
    """``groups`` candidate token lists per text (group order, end token removed); with
    ``no_repeat`` a token appears at most once in an ID."""
    dev = next(gen.parameters()).device
    ids, mask = text_inputs(tok, texts, max_text, dev)
    n = len(texts)
    enc = gen.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    enc, mask = enc.repeat_interleave(groups, 0), mask.repeat_interleave(groups, 0)
    seqs = torch.full((n * groups, 1), tok.pad_id, dtype=torch.long, device=dev)  # decoder start
    done = torch.zeros(n * groups, dtype=torch.bool, device=dev)
    vocab = gen.config.vocab_size
    banned = torch.tensor(_banned(tok, vocab), dtype=torch.long, device=dev)
    used = torch.zeros(n * groups, out_width(gen, vocab), dtype=torch.bool, device=dev)
    for step in range(max_len):
        out = gen(encoder_outputs=(enc,), attention_mask=mask, decoder_input_ids=seqs, use_cache=False)
        logits = out.logits[:, -1].float()
        if no_repeat:
            logits = logits.masked_fill(used, -torch.inf)
        logp = torch.log_softmax(logits, -1).view(n, groups, -1)
        logp[..., banned] = -torch.inf
        if step < min_len:
            logp[..., tok.eos_id] = -torch.inf
        chosen = torch.empty(n, groups, dtype=torch.long, device=dev)
        counts = torch.zeros(n, logp.shape[-1], device=dev)
        for g in range(groups):
            pick = (logp[:, g] - penalty * counts).argmax(-1)
            chosen[:, g] = pick
            counts[torch.arange(n, device=dev), pick] += 1
        nxt = chosen.view(-1).masked_fill(done, tok.pad_id)
        used[torch.arange(n * groups, device=dev), nxt] = True
        seqs = torch.cat([seqs, nxt[:, None]], 1)
        done |= nxt == tok.eos_id
        if bool(done.all()):
            break
    out_lists = []
    for r in range(n):
        cands = []
        for g in range(groups):
            row = seqs[r * groups + g, 1:].tolist()
            cands.append([t for t in row if t not in (tok.pad_id, tok.eos_id)])
        out_lists.append(cands)
    return out_lists


def out_width(gen, vocab: int) -> int:
    """Width of the generator's output layer (a checkpoint may pad it past the vocabulary)."""
    head = gen.get_output_embeddings()
    return int(head.weight.shape[0]) if head is not None else vocab


def canonical(tok: Tokenizer, tokens: Sequence[int]) -> tuple[int, ...]:
    """The token ids of a generated ID's normalised text (empty when it has no word)."""
    return tuple(tok.encode(id_words(tok.decode(tokens))))


@dataclass
class IdAssignment:
    """Each item's ID tokens (entry 0 empty) and how it was found."""

    keys: list[tuple[int, ...]]
    attempts: int  # decoding passes over the (shrinking) set of colliding items
    suffixed: int  # items that needed a numeric suffix


def _suffixed(tok: Tokenizer, base: tuple[int, ...], taken: set[tuple[int, ...]]) -> tuple[int, ...]:
    n = 2
    while True:
        key = base + tuple(tok.encode(" ".join(str(n))))
        if key not in taken:
            return key
        n += 1


def assign_ids(
    gen,
    tok: Tokenizer,
    texts: Sequence[str],
    *,
    groups: int,
    step: float,
    attempts_per_length: int,
    max_id_tokens: int,
    length_rounds: int,
    max_text: int,
    batch_size: int,
    no_repeat: bool = True,
) -> IdAssignment:
    """Unique IDs for items ``1..len(texts) - 1`` (``texts[0]`` is padding); see the module doc."""
    n = len(texts)
    keys: list[tuple[int, ...]] = [()] * n
    first: dict[int, tuple[int, ...]] = {}
    taken: set[tuple[int, ...]] = set()
    pending = list(range(1, n))
    attempts, penalty, min_len = 0, step, 1
    while pending and attempts < attempts_per_length * (length_rounds + 1):
        left = []
        for s in range(0, len(pending), batch_size):
            part = pending[s : s + batch_size]
            cands = diverse_candidates(
                gen,
                tok,
                [texts[i] for i in part],
                groups,
                penalty,
                min_len,
                min_len + max_id_tokens,
                max_text,
                no_repeat,
            )
            for item, cs in zip(part, cands):
                keyed = [k for k in (canonical(tok, c) for c in cs) if k]
                first.setdefault(item, keyed[0] if keyed else ())
                free = next((k for k in keyed if k not in taken), None)
                if free is None:
                    left.append(item)
                else:
                    keys[item] = free
                    taken.add(free)
        pending, attempts, penalty = left, attempts + 1, penalty + step
        if attempts % attempts_per_length == 0:
            min_len, penalty = min_len + max_id_tokens, step
    for item in pending:
        keys[item] = _suffixed(tok, first.get(item) or (), taken)
        taken.add(keys[item])
    return IdAssignment(keys, attempts, len(pending))
