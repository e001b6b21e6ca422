"""Shared transformer encoder, configuration, scoring, recommending and save/load.

Both models (:class:`~seqdistill.models.SASRec`, :class:`~seqdistill.models.BERT4Rec`)
are a stack of pre-LN transformer blocks over item + learned position embeddings,
with the item embedding table tied to the output layer. They differ in the attention
pattern (causal vs bidirectional) and the training objective.

Token ids: 0 is padding, items are ``1..n_items``; BERT4Rec adds a mask token
``n_items + 1``. Scores always have ``n_items + 1`` columns and column 0 is ``-inf``,
so neither padding nor the mask token can ever be ranked.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqdistill._checks import at_least, check_fields, in_range, one_of
from seqdistill._config import DictConfig
from seqdistill._io import atomic_dir, loads_json, recover_dir, write_json
from seqdistill.errors import ConfigError, DataError

from .losses import chunked_ce, full_ce, sample_negatives, sampled_softmax_ce
from .registry import canonical_kind, model_class

__all__ = ["ModelConfig", "ModelOutput", "SequentialRecommender", "build_model", "load_model"]

LOSSES = ("full", "chunked", "sampled")
NEGATIVES = ("uniform", "popularity")

# A saved model folder: exactly these files (weights.pt only in folders of the old format).
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
LEGACY_WEIGHTS = "weights.pt"
MODEL_FORMAT = 2


@dataclass
class ModelConfig(DictConfig):
    """Architecture and training-objective settings of a sequential recommender.

    Every field is checked on construction (type, range, ``hidden`` divisible by ``n_heads``);
    a bad value raises :class:`~seqdistill.errors.ConfigError` naming the key and the value.
    ``kind`` is a kind or an alias from :mod:`seqdistill.models.registry`, stored canonical.
    """

    kind: str = "sasrec"  # a registered kind: "sasrec" | "bert4rec"
    n_items: int = 0  # dense items are 1..n_items
    max_len: int = 50
    hidden: int = 64
    n_blocks: int = 2
    n_heads: int = 2
    dropout: float = 0.2
    ffn_mult: int = 4
    mask_prob: float = 0.2  # BERT4Rec only: share of real positions masked
    mask_last_prob: float = 0.1  # BERT4Rec only: share of rows that mask only the last item
    loss: str = "full"  # "full" | "chunked" | "sampled"
    loss_chunk: int = 8192  # items per chunk for loss="chunked"
    n_negatives: int = 256  # loss="sampled"
    negatives: str = "uniform"  # "uniform" | "popularity"

    def __post_init__(self) -> None:
        check_fields(self)
        self.kind = canonical_kind(self.kind)
        one_of(self, "loss", LOSSES)
        one_of(self, "negatives", NEGATIVES)
        at_least(self, "n_items", 1)
        at_least(self, "max_len", 2)
        for key in ("hidden", "n_blocks", "n_heads", "ffn_mult", "loss_chunk", "n_negatives"):
            at_least(self, key, 1)
        in_range(self, "dropout", 0.0, 1.0, high_open=True)
        in_range(self, "mask_prob", 0.0, 1.0)
        in_range(self, "mask_last_prob", 0.0, 1.0)
        if self.hidden % self.n_heads:
            raise ConfigError(f"ModelConfig.hidden: {self.hidden} is not divisible by n_heads={self.n_heads}")

    def n_parameters(self, n_special: int = 0) -> int:
        """Parameters of the encoder this config builds (``n_special`` extra token rows, e.g.
        BERT4Rec's mask token): embeddings, ``n_blocks`` pre-LN blocks, the final LayerNorm."""
        d, f = self.hidden, self.ffn_mult
        embeddings = (self.n_items + 1 + n_special) * d + self.max_len * d
        # LayerNorms 2 x 2d, qkv 3d^2 + 3d, proj d^2 + d, FFN 2fd^2 + fd + d.
        block = (4 + 2 * f) * d * d + (9 + f) * d
        return embeddings + self.n_blocks * block + 2 * d


@dataclass(frozen=True)
class ModelOutput:
    """What one training step of a model exposes besides its loss (for extra loss terms).

    ``inputs [B, L]``: the tokens the encoder saw (BERT4Rec: with mask tokens); ``real_mask
    [B, L]``: True where ``inputs`` is not padding; ``hidden [B, L, d]``: the final hidden states;
    ``hidden_states``: the output of each block, ``n_blocks`` tensors ``[B, L, d]``.
    """

    inputs: Tensor
    real_mask: Tensor
    hidden: Tensor
    hidden_states: tuple[Tensor, ...]


def _physical_memory() -> int | None:
    """Bytes of physical memory, where the OS says (None elsewhere)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _check_fits(n_parameters: int) -> None:
    """Refuses a model whose float32 weights alone exceed this machine's memory, before building
    it: with millions of blocks the build would otherwise grind for minutes block by block before
    running out of memory. (Training needs ~4x the weights; that is left to the allocator.)"""
    need, have = 4 * n_parameters, _physical_memory()
    if have is not None and need > have:
        raise MemoryError(
            f"Unable to allocate {need} bytes for the model's {n_parameters:,} float32 parameters "
            f"(this machine has {have} bytes)"
        )


class _Block(nn.Module):
    """Pre-LN transformer block: x + Attn(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, d: int, heads: int, dropout: float, ffn_mult: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, ffn_mult * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_mult * d, d))
        self.drop = nn.Dropout(dropout)
        self.p_attn = dropout

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        B, L, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, L, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.p_attn if self.training else 0.0
        )
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(B, L, d)))
        return x + self.drop(self.ffn(self.ln2(x)))


class SequentialRecommender(nn.Module):
    """Base class: encoder, scoring, recommending, save/load. Subclasses set the objective.

    Public interface (identical for both models):

    - ``encode(windows) -> (final [B, L, d], per-block list of [B, L, d])`` in one pass;
    - ``forward(windows)`` -> final hidden, ``hidden_states(windows)`` -> per-block list;
    - ``score(hidden [B, d]) -> [B, n_items + 1]`` logits (column 0 is ``-inf``);
    - ``next_item_scores(windows [B, input_length]) -> [B, n_items + 1]``;
    - ``training_loss(windows) -> (loss, ModelOutput)``;
    - ``recommend(histories, k, filter_seen=True)`` -> raw item ids;
    - ``save(folder)`` / ``SequentialRecommender.load(folder)``.

    A subclass sets ``kind`` (its name in :mod:`seqdistill.models.registry`) and registers there.
    """

    kind: str = ""  # the registry name of the subclass
    causal: bool = True
    n_special: int = 0  # extra token rows after the items (BERT4Rec: the mask token)

    def __init__(self, config: ModelConfig) -> None:
        if self.kind and config.kind != self.kind:
            raise ConfigError(f"{type(self).__name__}: ModelConfig.kind is {config.kind!r}, expected {self.kind!r}")
        super().__init__()
        self.config = config
        _check_fits(config.n_parameters(self.n_special))
        d = config.hidden
        self.item_emb = nn.Embedding(config.n_items + 1 + self.n_special, d, padding_idx=0)
        self.pos_emb = nn.Embedding(config.max_len, d)
        self.emb_drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            _Block(d, config.n_heads, config.dropout, config.ffn_mult) for _ in range(config.n_blocks)
        )
        self.final_ln = nn.LayerNorm(d)
        # Sampling weights for popularity negatives (set by the trainer from training counts).
        self.register_buffer("item_popularity", torch.ones(config.n_items), persistent=False)
        self.item_ids: list | None = None  # raw id of every dense item, entry 0 None
        self._raw_to_dense: dict | None = None
        self.reset_parameters()

    # ----------------------------------------------------------------- setup
    def reset_parameters(self) -> None:
        """Truncated-normal(0.02) embeddings and linear weights, zero biases, zero padding row."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def set_item_ids(self, item_ids: Sequence | Any) -> None:
        """Store the raw id map (index = dense item, entry 0 = padding/None) for serving."""
        ids = item_ids.to_list() if hasattr(item_ids, "to_list") else list(item_ids)
        if len(ids) != self.config.n_items + 1:
            raise ValueError(
                f"set_item_ids: expected {self.config.n_items + 1} ids (entry 0 = padding), got {len(ids)}"
            )
        ids = [None if i == 0 else (x.item() if isinstance(x, np.generic) else x) for i, x in enumerate(ids)]
        self.item_ids = ids
        self._raw_to_dense = {x: i for i, x in enumerate(ids) if i > 0}

    def set_item_popularity(self, counts: np.ndarray | Tensor) -> None:
        """Sampling weights for ``negatives="popularity"``: counts of items 1..n_items (or 0..n_items)."""
        c = torch.as_tensor(np.asarray(counts), dtype=torch.float32)
        if c.shape[0] == self.config.n_items + 1:
            c = c[1:]
        if c.shape[0] != self.config.n_items:
            raise ValueError(f"set_item_popularity: expected {self.config.n_items} counts, got {c.shape[0]}")
        self.item_popularity = c.to(self.item_emb.weight.device)

    @property
    def device(self) -> torch.device:
        return self.item_emb.weight.device

    @property
    def input_length(self) -> int:
        """Window length that :meth:`next_item_scores` expects."""
        return self.config.max_len

    # --------------------------------------------------------------- encoder
    def _attn_mask(self, real: Tensor) -> Tensor:
        """Boolean [B, 1, L, L] mask (True = may attend). Padding keys are hidden from every
        query; every query may attend to itself, so no row is empty (no NaN)."""
        B, L = real.shape
        eye = torch.eye(L, dtype=torch.bool, device=real.device)
        allowed = real[:, None, :].expand(B, L, L) | eye
        if self.causal:
            allowed = allowed & torch.ones(L, L, dtype=torch.bool, device=real.device).tril()
        return allowed[:, None]

    def encode(self, windows: Tensor) -> tuple[Tensor, list[Tensor]]:
        """One pass over ``windows [B, L]`` (left-padded token ids).

        Returns ``(final, blocks)``: ``final`` is the last block after the final LayerNorm,
        ``blocks[k]`` the output of block ``k`` (before the final LayerNorm). Padding
        positions are zero in both.
        """
        B, L = windows.shape
        if L > self.config.max_len:
            raise ValueError(f"encode: window length {L} exceeds max_len={self.config.max_len}")
        real = windows != 0
        keep = real.unsqueeze(-1).to(self.item_emb.weight.dtype)
        # positions are aligned to the right end of the max_len frame, so a history gets the
        # same position embeddings whatever the window length (left padding is free)
        pos = torch.arange(self.config.max_len - L, self.config.max_len, device=windows.device)
        x = self.item_emb(windows) * math.sqrt(self.config.hidden) + self.pos_emb(pos)[None]
        x = self.emb_drop(x) * keep
        mask = self._attn_mask(real)
        blocks: list[Tensor] = []
        for blk in self.blocks:
            x = blk(x, mask) * keep
            blocks.append(x)
        return self.final_ln(x) * keep, blocks

    def forward(self, windows: Tensor) -> Tensor:
        """Final hidden states ``[B, L, d]``."""
        return self.encode(windows)[0]

    def hidden_states(self, windows: Tensor) -> list[Tensor]:
        """Per-block outputs, a list of ``n_blocks`` tensors ``[B, L, d]`` (one forward)."""
        return self.encode(windows)[1]

    # ---------------------------------------------------------------- scores
    @property
    def output_weight(self) -> Tensor:
        """Tied output table for items ``1..n_items`` (row ``j`` is item ``j + 1``)."""
        return self.item_emb.weight[1 : self.config.n_items + 1]

    def score(self, hidden: Tensor) -> Tensor:
        """Logits ``[B, n_items + 1]`` of ``hidden [B, d]``; column 0 (padding) is ``-inf``."""
        s = hidden @ self.item_emb.weight[: self.config.n_items + 1].t()
        s = s.float()
        s[:, 0] = float("-inf")
        return s

    def next_item_hidden(self, windows: Tensor) -> Tensor:
        """Query vectors ``[B, d]`` of left-padded histories ``[B, input_length]``: the hidden
        state whose product with the item table gives :meth:`next_item_scores` (evaluation
        scores this product itself, block by block)."""
        return self.forward(windows)[:, -1]

    def next_item_scores(self, windows: Tensor) -> Tensor:
        """Scores of the next item after each left-padded history ``[B, input_length]``."""
        return self.score(self.next_item_hidden(windows))

    def item_loss(self, hidden: Tensor, targets: Tensor) -> Tensor:
        """Loss of the configured kind for ``hidden [N, d]`` and dense item ``targets [N]`` (>= 1)."""
        w, t, c = self.output_weight, targets - 1, self.config
        if c.loss == "full":
            return full_ce(hidden, w, t)
        if c.loss == "chunked":
            return chunked_ce(hidden, w, t, c.loss_chunk)
        probs = self.item_popularity if c.negatives == "popularity" else None
        neg, log_q = sample_negatives(c.n_negatives, c.n_items, probs, device=hidden.device)
        return sampled_softmax_ce(hidden, w, t, neg, log_q)

    def training_loss(self, windows: Tensor) -> tuple[Tensor, ModelOutput]:
        """Main objective on a batch of training windows. Returns ``(loss, out)``; ``out`` is
        what extra loss terms see of the step (see :class:`ModelOutput`)."""
        raise NotImplementedError

    # ------------------------------------------------------------- serving
    def _dense_histories(self, histories: Sequence[Sequence], raw: bool, unknown: str) -> list[list[int]]:
        out = []
        for row, h in enumerate(histories):
            if raw:
                if self._raw_to_dense is None:
                    raise ValueError("recommend: model has no raw item id map; call set_item_ids or pass raw=False")
                dense = []
                for x in h:
                    x = x.item() if isinstance(x, np.generic) else x
                    j = self._raw_to_dense.get(x)
                    if j is None:
                        if unknown == "raise":
                            raise KeyError(f"recommend: history {row} has unknown raw item id {x!r}")
                        continue
                    dense.append(j)
            else:
                dense = [int(x) for x in h]
                bad = [x for x in dense if not 1 <= x <= self.config.n_items]
                if bad:
                    raise ValueError(
                        f"recommend: history {row} has dense item ids out of 1..{self.config.n_items}: {bad[:5]}"
                    )
            out.append(dense)
        return out

    @torch.no_grad()
    def recommend(
        self,
        histories: Sequence[Sequence],
        k: int = 10,
        filter_seen: bool = True,
        raw: bool = True,
        unknown: str = "drop",
        batch_size: int = 512,
    ) -> list[list]:
        """Top-``k`` next items for each history (oldest first).

        ``raw=True``: histories and results are raw item ids (through the stored id map);
        raw ids not in the catalogue are dropped (``unknown="drop"``) or raise
        (``unknown="raise"``). ``raw=False``: dense ids ``1..n_items`` in and out.
        ``filter_seen`` removes the history's items from the candidates.
        """
        if unknown not in ("drop", "raise"):
            raise ValueError(f"recommend: unknown must be 'drop' or 'raise', got {unknown!r}")
        dense = self._dense_histories(histories, raw, unknown)
        was_training = self.training
        self.eval()
        L, results = self.input_length, []
        try:
            for s in range(0, len(dense), batch_size):
                part = dense[s : s + batch_size]
                win = np.zeros((len(part), L), dtype=np.int64)
                for i, h in enumerate(part):
                    tail = h[-L:]
                    if tail:
                        win[i, L - len(tail) :] = tail
                scores = self.next_item_scores(torch.from_numpy(win).to(self.device))
                if filter_seen:
                    for i, h in enumerate(part):
                        if h:
                            scores[i, torch.tensor(h, device=scores.device)] = float("-inf")
                kk = min(k, self.config.n_items)
                val, idx = torch.topk(scores, kk, dim=1)
                for v, r in zip(val.cpu().numpy(), idx.cpu().numpy()):
                    ids = [int(j) for j, x in zip(r, v) if x > float("-inf")]
                    results.append([self.item_ids[j] for j in ids] if raw else ids)
        finally:
            self.train(was_training)
        return results

    # ------------------------------------------------------------ save/load
    def save(self, folder: str | os.PathLike, *, overwrite: bool = True) -> Path:
        """Write the model folder: ``config.json`` (format, config, raw id map) and
        ``model.safetensors`` (the weights; a format that cannot run code when read).

        The folder is built under a temporary name and swapped in whole. An existing model folder
        (one holding only what this method writes) is replaced unless ``overwrite=False``; any
        other non-empty folder is refused (:class:`~seqdistill.errors.OutputError`), so nothing
        seqdistill did not write is ever deleted. The folder is all that serving needs.
        """
        from safetensors.torch import save_file

        folder = Path(folder)
        meta = {
            "format": MODEL_FORMAT,
            "config": self.config.to_dict(),
            "item_ids": self.item_ids,
            "weights": WEIGHTS_FILE,
        }
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        with atomic_dir(folder, is_ours=is_model_folder, what="seqdistill model folder", overwrite=overwrite) as tmp:
            save_file(state, str(tmp / WEIGHTS_FILE))
            write_json(tmp / CONFIG_FILE, meta)
        return folder

    @staticmethod
    def load(folder: str | os.PathLike, map_location: str | torch.device = "cpu") -> SequentialRecommender:
        """Rebuild a model saved by :meth:`save` (its class from the config's ``kind``)."""
        return load_model(folder, map_location)


def is_model_folder(folder: Path) -> bool:
    """True when ``folder`` holds a model written by :meth:`SequentialRecommender.save` and
    nothing else (so replacing it deletes nothing seqdistill did not write)."""
    names = {p.name for p in folder.iterdir()}
    if CONFIG_FILE not in names or not names <= {CONFIG_FILE, WEIGHTS_FILE, LEGACY_WEIGHTS}:
        return False
    try:
        meta = loads_json((folder / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "config" in meta and "format" in meta


def build_model(config: ModelConfig) -> SequentialRecommender:
    """Instantiate the model class registered under ``config.kind``."""
    return model_class(config.kind)(config)


def _read_meta(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"load_model: {path} not found (not a model folder written by save)")
    try:
        meta = loads_json(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise DataError(f"{path}: has no 'config' entry; not a model folder written by save")
    fmt = meta.get("format", MODEL_FORMAT)
    if isinstance(fmt, bool) or not isinstance(fmt, int) or not 1 <= fmt <= MODEL_FORMAT:
        raise DataError(
            f"{path}: 'format' {fmt!r:.40} is not a model format this seqdistill reads (1 to {MODEL_FORMAT})"
        )
    return meta


def read_weights(path: Path, expected: dict[str, Tensor]) -> dict[str, Tensor]:
    """Tensors of the safetensors file ``path``, checked to have exactly the names, shapes and
    dtypes of ``expected`` (a state dict); any difference is a one-line DataError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0]})") from None
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or extra:
        raise DataError(f"{path}: tensors do not fit the model (missing {missing[:3]}, unexpected {extra[:3]})")
    for k, v in expected.items():
        if state[k].shape != v.shape or state[k].dtype != v.dtype:
            raise DataError(
                f"{path}: tensor {k!r} is {tuple(state[k].shape)} {state[k].dtype}, "
                f"the model needs {tuple(v.shape)} {v.dtype}"
            )
        if state[k].is_floating_point() and not bool(torch.isfinite(state[k]).all()):
            raise DataError(
                f"{path}: tensor {k!r} holds NaN or infinite values (a diverged or damaged model); "
                "its scores would rank nothing"
            )
    return state


def load_model(folder: str | os.PathLike, map_location: str | torch.device = "cpu") -> SequentialRecommender:
    """Load a model folder written by :meth:`SequentialRecommender.save`.

    Never unpickles: weights come from ``model.safetensors``. A folder of the old format
    (``weights.pt``, a pickle) is refused with a :class:`~seqdistill.errors.DataError`;
    ``docs/models.md`` shows how to convert one you trust.
    """
    folder = Path(folder)
    recover_dir(folder)
    meta = _read_meta(folder)
    try:
        config = ModelConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{folder / CONFIG_FILE}: {e}") from None
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        if (folder / LEGACY_WEIGHTS).exists():
            raise DataError(
                f"{folder / LEGACY_WEIGHTS}: model weights in the old pickle format, which seqdistill "
                "no longer reads (a pickle can run code); convert it if you trust it (docs/models.md)"
            )
        raise DataError(f"{weights}: missing; the model folder is incomplete")
    model = build_model(config)
    model.load_state_dict(read_weights(weights, model.state_dict()))
    if meta.get("item_ids") is not None:
        set_item_ids_from(model, meta["item_ids"], folder / CONFIG_FILE)
    return model.to(map_location)


def set_item_ids_from(model: Any, ids: Any, path: Path) -> None:
    """``model.set_item_ids`` with the raw item ids stored in a model folder's ``path``; ids that
    cannot be the model's (not a list of hashable values, or not one per item) are a DataError
    naming the file."""
    if not isinstance(ids, list):
        raise DataError(f"{path}: 'item_ids' must be a list of raw item ids, got {type(ids).__name__}")
    try:
        model.set_item_ids(ids)
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: 'item_ids' does not fit this model ({' '.join(str(e).split())[:200]})") from None
