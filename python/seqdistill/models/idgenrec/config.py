"""IDGenRec settings: one small dataclass, checked completely on construction.

Defaults are those of Tan et al. (SIGIR 2024) as their released training command runs them: three
alternation rounds, each one ID-generator epoch (learning rate 1e-8, batch 12) then ten
recommender epochs (learning rate 1e-3, batch 64), the generator first; histories of the last 20
items; IDs decoded by diverse beam search with 10 groups of one beam, a diversity penalty stepped
by 0.1 and at most ``min_length + 10`` tokens; item text cut at 256 tokens. The paper uses
``t5-small`` for both models; without a checkpoint (``model_name_or_path = None``) both are a
randomly initialised T5 of the size given here (tests use a tiny one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from seqdistill._checks import at_least, bad, check_fields, in_range, one_of
from seqdistill._config import DictConfig

__all__ = ["FIRST", "MISSING_TEXT", "IDGenRecConfig"]

#: Which model an alternation round trains first ("id": the generator, as the paper's runs).
FIRST = ("id", "rec")
#: What an item without metadata text gets: refused ("error") or its raw id as text ("item_id").
MISSING_TEXT = ("error", "item_id")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass
class IDGenRecConfig(DictConfig):
    """Every IDGenRec setting (see the module doc for where the defaults come from).

    Model: ``model_name_or_path`` names a local T5 checkpoint folder (``save_pretrained`` layout:
    ``config.json``, weights and tokenizer files) used for both the ID generator and the
    recommender; ``None`` builds a random T5 of ``d_model`` / ``num_layers`` / ``num_heads`` /
    ``d_ff`` over a word tokenizer learnt from the catalogue (at most ``vocab_size`` words).

    IDs: ``id_beams`` diverse candidates per item and attempt, ``diversity_step`` the penalty
    increment between attempts, ``max_id_tokens`` extra tokens over ``min_length`` (which grows by
    ``max_id_tokens`` after ``attempts_per_length`` attempts, ``length_rounds`` times); an item
    still colliding then gets the lowest numeric suffix that makes its ID unique. ``no_repeat``
    (not in the paper) keeps a token from appearing twice in one ID.

    Training: ``rounds`` alternations of ``id_epochs`` (generator, ``id_lr``, ``id_batch_size``)
    and ``rec_epochs`` (recommender, ``rec_lr``, ``rec_batch_size``), ``first`` deciding the order;
    AdamW with ``weight_decay``, a linear schedule with ``warmup`` of the steps, clipping at
    ``grad_clip``. ``max_his`` history items form the input. ``num_beams`` (0: the largest
    evaluated cut-off) is the width of the constrained beam search that ranks items.
    """

    model_name_or_path: str | None = None
    d_model: int = 512
    num_layers: int = 6
    num_heads: int = 8
    d_ff: int = 2048
    dropout: float = 0.1
    vocab_size: int = 32000
    max_text_tokens: int = 256
    missing_text: str = "error"
    id_beams: int = 10
    diversity_step: float = 0.1
    attempts_per_length: int = 9
    max_id_tokens: int = 10
    length_rounds: int = 1
    no_repeat: bool = True
    max_his: int = 20
    rounds: int = 3
    first: str = "id"
    id_epochs: int = 1
    rec_epochs: int = 10
    id_lr: float = 1e-8
    rec_lr: float = 1e-3
    id_batch_size: int = 12
    rec_batch_size: int = 64
    weight_decay: float = 0.01
    warmup: float = 0.05
    grad_clip: float = 1.0
    num_beams: int = 0
    eval_batch_size: int = 64
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        check_fields(self)
        for key in ("d_model", "num_layers", "num_heads", "d_ff", "max_text_tokens", "id_beams"):
            at_least(self, key, 1)
        for key in ("attempts_per_length", "max_id_tokens", "max_his", "rounds"):
            at_least(self, key, 1)
        for key in ("id_batch_size", "rec_batch_size", "eval_batch_size"):
            at_least(self, key, 1)
        for key in ("length_rounds", "id_epochs", "rec_epochs", "num_beams", "seed", "weight_decay", "grad_clip"):
            at_least(self, key, 0)
        at_least(self, "vocab_size", 16)
        at_least(self, "diversity_step", 0.0, strict=True)
        at_least(self, "id_lr", 0.0, strict=True)
        at_least(self, "rec_lr", 0.0, strict=True)
        in_range(self, "dropout", 0.0, 1.0, high_open=True)
        in_range(self, "warmup", 0.0, 1.0, high_open=True)
        one_of(self, "first", FIRST)
        one_of(self, "missing_text", MISSING_TEXT)
        if self.d_model % self.num_heads:
            raise bad(self, "d_model", f"a multiple of num_heads={self.num_heads}")
        if not _DEVICE.match(self.device):
            raise bad(self, "device", "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
        if self.model_name_or_path is not None and not self.model_name_or_path.strip():
            raise bad(self, "model_name_or_path", "a checkpoint folder or nothing")

    def beams_for(self, ks: list[int] | tuple[int, ...]) -> int:
        """The beam width used to rank for cut-offs ``ks``: ``num_beams``, or ``max(ks)`` when 0."""
        return self.num_beams or max(ks)
