"""The teacher side: user history text, prompts, LLM profiles, encoding and reduced targets.

Heavy libraries (torch, transformers, sentence-transformers, umap) are imported only when a
backend, encoder or UMAP reducer is created.
"""

from .encode import EncoderConfig, TextEncoder, encode_store
from .history import HistoryConfig, ItemTexts, UserHistory, user_history
from .llm import GenerationConfig, GenerationResult, LLMBackend, OpenAIBackend, TransformersBackend
from .pipeline import generate_profiles
from .probe import ProbeConfig, ProbeResult, probe
from .prompts import PromptSet, load_prompts
from .quality import StoreStats, store_stats, text_stats
from .reduce import PCA, ReduceConfig, reduce_targets
from .smollm import converted_path as smollm_path
from .stats_profile import StatsConfig, stats_profile_text, write_stats_profiles
from .store import ProfileStore

__all__ = [
    "EncoderConfig",
    "GenerationConfig",
    "GenerationResult",
    "HistoryConfig",
    "ItemTexts",
    "LLMBackend",
    "OpenAIBackend",
    "PCA",
    "ProbeConfig",
    "ProbeResult",
    "ProfileStore",
    "PromptSet",
    "ReduceConfig",
    "StatsConfig",
    "StoreStats",
    "TextEncoder",
    "TransformersBackend",
    "UserHistory",
    "encode_store",
    "generate_profiles",
    "load_prompts",
    "probe",
    "reduce_targets",
    "smollm_path",
    "stats_profile_text",
    "store_stats",
    "text_stats",
    "user_history",
    "write_stats_profiles",
]
