"""IDGenRec (Tan et al., SIGIR 2024), the paper's LLM-based baseline: textual item IDs generated
from item text by one T5, a second T5 that writes the next item's ID from a user's history, beam
search constrained to real IDs, and the two trained in turn. See docs/idgenrec.md."""

from .config import IDGenRecConfig
from .evaluate import evaluate_idgenrec
from .model import IDGenRec, item_texts
from .search import IDTrie, constrained_beam_search
from .tokenizer import WordTokenizer
from .train import fit_idgenrec

__all__ = [
    "IDGenRec",
    "IDGenRecConfig",
    "IDTrie",
    "WordTokenizer",
    "constrained_beam_search",
    "evaluate_idgenrec",
    "fit_idgenrec",
    "item_texts",
]
