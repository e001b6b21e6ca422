"""``IDGenRec``: the ID generator and the recommender, two T5 models sharing one tokenizer.

- The generator reads an item's text (its metadata, :class:`~seqdistill.profiles.history.ItemTexts`)
  and writes a short textual ID (:mod:`.ids`); :meth:`IDGenRec.assign_ids` gives every item a
  unique one.
- The recommender reads a user's last ``max_his`` item IDs (each followed by the separator token)
  and writes the next item's ID; :meth:`IDGenRec.rank` decodes it by constrained beam search over
  the prefix tree of all IDs (:mod:`.search`), so every output is a real item.

Item ids are the dense ids of a :class:`~seqdistill.data.PreparedDataset` (1..n_items);
``item_ids`` maps them to raw ids for serving. A saved model folder holds ``idgenrec.json``
(settings, tokenizer, raw ids, every item's ID), ``generator.safetensors`` and
``recommender.safetensors`` (and ``tokenizer/`` for a pretrained checkpoint's tokenizer); nothing
in it is unpickled when read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqdistill._io import atomic_dir, loads_json, recover_dir, write_json
from seqdistill.errors import ConfigError, DataError
from seqdistill.models.base import set_item_ids_from

from .config import IDGenRecConfig
from .ids import IdAssignment, assign_ids
from .search import IDTrie, constrained_beam_search
from .tokenizer import HFTokenizer, Tokenizer, WordTokenizer, tokenizer_from_dict

__all__ = ["IDGenRec", "item_texts"]

META_FILE = "idgenrec.json"
GEN_FILE = "generator.safetensors"
REC_FILE = "recommender.safetensors"
TOK_DIR = "tokenizer"
FORMAT = 1
_NAMES = frozenset({META_FILE, GEN_FILE, REC_FILE, TOK_DIR})


def item_texts(ds: Any, missing: str = "error") -> list[str]:
    """Metadata text of every dense item (entry 0 empty) of a prepared dataset.

    An item without text is a :class:`~seqdistill.errors.DataError` naming it
    (``missing="error"``), or gets its raw id as text (``missing="item_id"``). A dataset without
    items is refused."""
    from seqdistill.profiles.history import ItemTexts

    if ds.n_items < 1:
        raise DataError(f"IDGenRec: dataset {ds.name!r} has no items (an empty catalogue)")
    texts = ItemTexts(ds).texts
    for item in range(1, ds.n_items + 1):
        if texts[item].strip():
            continue
        raw = ds.item_ids[item]
        if missing == "item_id":
            texts[item] = str(raw)
            continue
        where = "has no item metadata" if ds.item_meta is None else f"item {raw!r} (dense {item}) has no text"
        raise DataError(
            f"IDGenRec: dataset {ds.name!r} {where}; IDs are generated from item text "
            "(set missing_text = 'item_id' to use raw ids as text)"
        )
    return texts


def _t5_config(cfg: IDGenRecConfig, tok: Tokenizer):
    from transformers import T5Config

    return T5Config(
        vocab_size=tok.vocab_size,
        d_model=cfg.d_model,
        d_kv=cfg.d_model // cfg.num_heads,
        d_ff=cfg.d_ff,
        num_layers=cfg.num_layers,
        num_decoder_layers=cfg.num_layers,
        num_heads=cfg.num_heads,
        dropout_rate=cfg.dropout,
        pad_token_id=tok.pad_id,
        eos_token_id=tok.eos_id,
        decoder_start_token_id=tok.pad_id,
    )


def _pretrained(path: str):
    """A T5 from a local checkpoint folder (safetensors only), or a one-line ConfigError."""
    from transformers import T5ForConditionalGeneration

    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(
            f"IDGenRecConfig.model_name_or_path: {path!r} is not a checkpoint folder on this machine "
            "(there is no model hub here; download t5-small with save_pretrained and give its folder)"
        )
    try:
        return T5ForConditionalGeneration.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"IDGenRecConfig.model_name_or_path: {path!r}: not a T5 safetensors checkpoint ({first})"
        ) from None


class IDGenRec:
    """ID generator + recommender (see the module doc). Build with :meth:`create`."""

    def __init__(self, config: IDGenRecConfig, tokenizer: Tokenizer, generator, recommender, texts: list[str]) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.generator = generator
        self.recommender = recommender
        self.texts = texts
        self.item_ids: list[Any] = [None] + list(range(1, len(texts)))
        self.keys: list[tuple[int, ...]] = [()] * len(texts)
        self.trie: IDTrie | None = None
        self.last_assignment: IdAssignment | None = None

    # ------------------------------------------------------------------ building
    @classmethod
    def create(cls, config: IDGenRecConfig, texts: Sequence[str], item_ids: Sequence[Any] | None = None) -> IDGenRec:
        """Models and tokenizer for a catalogue: ``texts[item]`` for items ``1..n`` (entry 0 is
        padding), raw ids alike. Random T5s over a word tokenizer learnt from ``texts``, or the
        checkpoint of ``config.model_name_or_path`` (both models start from it). IDs are not
        assigned yet (:meth:`assign_ids`)."""
        texts = list(texts)
        if len(texts) < 2:
            raise DataError("IDGenRec: the catalogue is empty (no items 1..n)")
        empty = [i for i in range(1, len(texts)) if not str(texts[i]).strip()]
        if empty:
            raise DataError(f"IDGenRec: item {empty[0]} has no text ({len(empty)} items without text)")
        if config.model_name_or_path is None:
            from transformers import T5ForConditionalGeneration

            tok: Tokenizer = WordTokenizer.fit(texts[1:], config.vocab_size)
            t5 = _t5_config(config, tok)
            gen, rec = T5ForConditionalGeneration(t5), T5ForConditionalGeneration(t5)
        else:
            gen = _pretrained(config.model_name_or_path)
            rec = _pretrained(config.model_name_or_path)
            tok = HFTokenizer(config.model_name_or_path)
        model = cls(config, tok, gen, rec, texts)
        if item_ids is not None:
            model.set_item_ids(item_ids)
        return model

    def set_item_ids(self, item_ids: Sequence[Any]) -> None:
        """Raw id of every dense item (entry 0 = padding) for :meth:`recommend`."""
        ids = list(item_ids.to_list() if hasattr(item_ids, "to_list") else item_ids)
        if len(ids) != len(self.texts):
            raise DataError(
                f"IDGenRec.set_item_ids: expected {len(self.texts)} ids (entry 0 = padding), got {len(ids)}"
            )
        self.item_ids = [None] + [x.item() if isinstance(x, np.generic) else x for x in ids[1:]]

    @property
    def n_items(self) -> int:
        return len(self.texts) - 1

    @property
    def device(self) -> torch.device:
        return next(self.recommender.parameters()).device

    def to(self, device: str | torch.device) -> IDGenRec:
        self.generator.to(device)
        self.recommender.to(device)
        return self

    def assign_ids(self) -> IdAssignment:
        """Generate every item's ID with the generator (unique; see :mod:`.ids`) and rebuild the tree."""
        c = self.config
        was = self.generator.training
        self.generator.eval()
        try:
            res = assign_ids(
                self.generator,
                self.tokenizer,
                self.texts,
                groups=c.id_beams,
                step=c.diversity_step,
                attempts_per_length=c.attempts_per_length,
                max_id_tokens=c.max_id_tokens,
                length_rounds=c.length_rounds,
                max_text=c.max_text_tokens,
                batch_size=c.eval_batch_size,
                no_repeat=c.no_repeat,
            )
        finally:
            self.generator.train(was)
        self.set_keys(res.keys)
        self.last_assignment = res
        return res

    def set_keys(self, keys: Sequence[Sequence[int]]) -> None:
        """Use ``keys[item]`` (token ids) as the items' IDs; they must be distinct and non-empty."""
        keys = [tuple(int(t) for t in k) for k in keys]
        if len(keys) != len(self.texts):
            raise DataError(f"IDGenRec: expected {len(self.texts)} IDs (entry 0 = padding), got {len(keys)}")
        self.trie = IDTrie(keys, self.tokenizer.eos_id)  # refuses empty or repeated IDs
        self.keys = keys

    def id_text(self, item: int) -> str:
        """The textual ID of dense ``item``."""
        return self.tokenizer.decode(self.keys[item])

    # ------------------------------------------------------------------ inputs
    def history_tokens(self, history: Sequence[int]) -> list[int]:
        """The recommender's input for a history of dense items (oldest first): the last
        ``max_his`` IDs, each followed by the separator, then the end token."""
        out: list[int] = []
        for item in list(history)[-self.config.max_his :]:
            out += [*self.keys[int(item)], self.tokenizer.sep_id]
        return out + [self.tokenizer.eos_id]

    def batch(self, histories: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ``(input_ids, attention_mask)`` of ``histories`` on the model's device."""
        rows = [self.history_tokens(h) for h in histories]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return ids.to(self.device), mask.to(self.device)

    def labels(self, items: Sequence[int]) -> torch.Tensor:
        """Decoder targets: each item's ID and the end token, padded with -100 (ignored)."""
        rows = [[*self.keys[int(i)], self.tokenizer.eos_id] for i in items]
        out = torch.full((len(rows), max(len(r) for r in rows)), -100, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r)
        return out.to(self.device)

    # ------------------------------------------------------------------ ranking
    def rank(
        self, histories: Sequence[Sequence[int]], beams: int, seen: Sequence[Sequence[int]] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``beams`` dense items (and their beam scores) after each history; -1 where fewer
        items are reachable. ``seen[row]``: items never returned for that row."""
        if self.trie is None:
            raise ConfigError("IDGenRec: no item IDs yet; call assign_ids() (or fit) first")
        if beams < 1:
            raise ConfigError(f"IDGenRec: beams must be >= 1, got {beams}")
        items, scores = [], []
        was = self.recommender.training
        self.recommender.eval()
        try:
            bs = self.config.eval_batch_size
            for s in range(0, len(histories), bs):
                ids, mask = self.batch(histories[s : s + bs])
                part_seen = None if seen is None else seen[s : s + bs]
                it, sc = constrained_beam_search(
                    self.recommender, ids, mask, self.trie, beams, self.tokenizer.pad_id, part_seen
                )
                items.append(it)
                scores.append(sc)
        finally:
            self.recommender.train(was)
        if not items:
            return np.zeros((0, beams), dtype=np.int64), np.zeros((0, beams))
        return np.concatenate(items), np.concatenate(scores)

    def recommend(
        self, histories: Sequence[Sequence], k: int = 10, filter_seen: bool = True, raw: bool = True
    ) -> list[list]:
        """Top-``k`` next items per history (raw ids in and out with ``raw``; unknown raw ids are
        dropped). ``k`` must lie in 1..n_items (a beam cannot be wider than the catalogue)."""
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.n_items:
            raise ConfigError(f"IDGenRec.recommend: k must be an integer from 1 to n_items = {self.n_items}, got {k!r}")
        lookup = {x: i for i, x in enumerate(self.item_ids) if i}
        dense = []
        for row, h in enumerate(histories):
            if raw:
                dense.append([lookup[x] for x in h if x in lookup])
                continue
            bad = [x for x in h if not (isinstance(x, (int, np.integer)) and 1 <= int(x) <= self.n_items)]
            if bad:
                raise DataError(f"IDGenRec.recommend: history {row} has dense ids outside 1..{self.n_items}: {bad[:3]}")
            dense.append([int(x) for x in h])
        items, _ = self.rank(dense, k, dense if filter_seen else None)
        return [[self.item_ids[j] if raw else int(j) for j in row if j > 0] for row in items]

    # ------------------------------------------------------------------ save / load
    def save(self, folder: str | os.PathLike, *, overwrite: bool = True) -> Path:
        """Write the model folder (see the module doc) atomically; a folder holding anything
        else is refused (:class:`~seqdistill.errors.OutputError`)."""
        from safetensors.torch import save_model

        folder = Path(folder)
        meta = {
            "format": FORMAT,
            "config": self.config.to_dict(),
            "t5": self.recommender.config.to_dict(),
            "t5_generator": self.generator.config.to_dict(),
            "tokenizer": self.tokenizer.to_dict(),
            "item_ids": self.item_ids,
            "texts": self.texts,
            "ids": [list(k) for k in self.keys],
        }
        with atomic_dir(
            folder,
            is_ours=_is_model_folder,
            what="IDGenRec model folder",
            overwrite=overwrite,
            known=_NAMES.__contains__,
        ) as tmp:
            save_model(self.generator, str(tmp / GEN_FILE))
            save_model(self.recommender, str(tmp / REC_FILE))
            if isinstance(self.tokenizer, HFTokenizer):
                self.tokenizer.tok.save_pretrained(str(tmp / TOK_DIR))
            write_json(tmp / META_FILE, meta)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, map_location: str | torch.device = "cpu") -> IDGenRec:
        """Rebuild a model written by :meth:`save`; a missing or foreign folder is a one-line error."""
        from transformers import T5Config, T5ForConditionalGeneration

        folder = Path(folder)
        if not (folder / META_FILE).is_file():
            raise DataError(f"{folder}: not an IDGenRec model folder (no {META_FILE})")
        recover_dir(folder)
        meta = _read_meta(folder / META_FILE)
        try:
            config = IDGenRecConfig.from_dict(meta["config"])
            t5s = [T5Config.from_dict(meta[k]) for k in ("t5_generator", "t5")]
        except (TypeError, ValueError, KeyError) as e:
            raise DataError(f"{folder / META_FILE}: settings unreadable ({e})") from None
        tok = tokenizer_from_dict(meta["tokenizer"], folder / TOK_DIR, str(folder / META_FILE))
        gen, rec = (T5ForConditionalGeneration(c) for c in t5s)
        for net, name in ((gen, GEN_FILE), (rec, REC_FILE)):
            _load_weights(net, folder / name)
        model = cls(config, tok, gen, rec, list(meta["texts"]))
        set_item_ids_from(model, meta["item_ids"], folder / META_FILE)
        model.set_keys(meta["ids"])
        return model.to(map_location)


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = loads_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{path}: not readable JSON ({e.__class__.__name__})") from None
    need = ("format", "config", "t5", "t5_generator", "tokenizer", "item_ids", "texts", "ids")
    if not isinstance(meta, dict) or any(k not in meta for k in need):
        raise DataError(f"{path}: not an IDGenRec model description (needs keys {list(need)})")
    if meta["format"] != FORMAT:
        raise DataError(f"{path}: format {meta['format']!r} is not {FORMAT}, the one this version reads")
    if not (isinstance(meta["texts"], list) and isinstance(meta["ids"], list) and isinstance(meta["item_ids"], list)):
        raise DataError(f"{path}: texts, ids and item_ids must be lists")
    return meta


def _load_weights(net, path: Path) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    if not path.is_file():
        raise DataError(f"{path}: missing; the IDGenRec model folder is incomplete")
    try:
        load_model(net, str(path), strict=True, device="cpu")
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{path}: weights do not fit the model ({first[:200]})") from None


def _is_model_folder(folder: Path) -> bool:
    names = {p.name for p in folder.iterdir()}
    return META_FILE in names and names <= _NAMES
