"""seqdistill: distil LLM-written user profiles into sequential recommenders.

The top level stays light (numpy + polars): models, training and the profile pipeline live in
sub-packages that import torch and transformers only when used.
"""

from seqdistill.data import PreparedDataset, RawDataset, SplitConfig, prepare, read_interactions

__version__ = "0.1.0"

__all__ = ["PreparedDataset", "RawDataset", "SplitConfig", "prepare", "read_interactions", "__version__"]
