"""Tokenizers for IDGenRec: a word tokenizer learnt from the catalogue, or a checkpoint's own.

Both expose the same small interface (:class:`Tokenizer`): ``encode(text) -> list[int]`` without
special tokens, ``decode(ids) -> str``, ``pad_id`` (also T5's decoder start), ``eos_id``,
``sep_id`` (between the items of a history) and ``vocab_size``.

:class:`WordTokenizer` is what a run without pretrained weights uses (there is no Hugging Face Hub
on our machines, so no T5 sentencepiece model can be fetched): lower-cased ``\\w+`` words, the
most frequent ``vocab_size`` of the catalogue text, plus the ten digits (collision suffixes are
written with them) and an unknown-word token. An ID is a sequence of words, so every generated ID
decodes to text and encodes back to the same token ids (the property the prefix tree needs).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from seqdistill.errors import ConfigError, DataError

__all__ = ["HFTokenizer", "Tokenizer", "WordTokenizer", "id_words"]

_WORD = re.compile(r"\w+")
_SPECIAL = ("<pad>", "</s>", "<unk>", "<sep>")
_DIGITS = tuple("0123456789")


def id_words(text: str) -> str:
    """The normal form of an ID's text: its ``\\w+`` words joined by single spaces."""
    return " ".join(_WORD.findall(text))


class Tokenizer(Protocol):
    """What IDGenRec needs of a tokenizer."""

    pad_id: int
    eos_id: int
    sep_id: int
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


class WordTokenizer:
    """Lower-cased word tokens over a fixed vocabulary (see the module doc)."""

    def __init__(self, words: Sequence[str]) -> None:
        vocab = list(_SPECIAL) + [w for w in words if w not in _SPECIAL]
        if len(set(vocab)) != len(vocab):
            raise DataError("WordTokenizer: the vocabulary lists a word twice")
        self.words = vocab
        self.index = {w: i for i, w in enumerate(vocab)}
        self.pad_id, self.eos_id, self.unk_id, self.sep_id = 0, 1, 2, 3
        self.vocab_size = len(vocab)

    @classmethod
    def fit(cls, texts: Iterable[str], vocab_size: int) -> WordTokenizer:
        """The ``vocab_size`` most frequent words of ``texts`` (ties by first appearance), the
        digits and the special tokens."""
        counts: Counter[str] = Counter()
        for t in texts:
            counts.update(w.lower() for w in _WORD.findall(t))
        room = max(0, vocab_size - len(_SPECIAL) - len(_DIGITS))
        words = [w for w, _ in counts.most_common() if w not in _DIGITS][:room]
        return cls(list(_DIGITS) + words)

    def encode(self, text: str) -> list[int]:
        return [self.index.get(w.lower(), self.unk_id) for w in _WORD.findall(text)]

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(self.words[i] for i in ids if i >= len(_SPECIAL) and i < self.vocab_size)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "word", "words": self.words[len(_SPECIAL) :]}


class HFTokenizer:
    """A checkpoint's tokenizer (``AutoTokenizer.from_pretrained(folder)``, offline) behind the
    same interface; the history separator is the checkpoint's ``;`` token."""

    def __init__(self, folder: str | Path) -> None:
        from transformers import AutoTokenizer

        try:
            self.tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"model_name_or_path {str(folder)!r}: no usable tokenizer there ({first})") from None
        if self.tok.pad_token_id is None or self.tok.eos_token_id is None:
            raise ConfigError(f"model_name_or_path {str(folder)!r}: the tokenizer has no pad or eos token")
        self.pad_id, self.eos_id = int(self.tok.pad_token_id), int(self.tok.eos_token_id)
        self.unk_id = self.tok.unk_token_id  # never generated in an ID
        sep = self.encode(";")  # sentencepiece may give a bare word-start piece first: take the ";" piece
        self.sep_id = sep[-1] if sep else self.eos_id
        self.vocab_size = len(self.tok)

    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=True)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "pretrained"}


def tokenizer_from_dict(d: Any, folder: Path, where: str) -> Tokenizer:
    """The tokenizer a saved model folder describes (``where`` names the file in errors)."""
    if isinstance(d, dict) and d.get("kind") == "word" and isinstance(d.get("words"), list):
        if not all(isinstance(w, str) for w in d["words"]):
            raise DataError(f"{where}: tokenizer words must be strings")
        return WordTokenizer(d["words"])
    if isinstance(d, dict) and d.get("kind") == "pretrained":
        return HFTokenizer(folder)
    raise DataError(f"{where}: 'tokenizer' is not a tokenizer description written by IDGenRec.save")
