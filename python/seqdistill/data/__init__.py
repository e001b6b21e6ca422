"""Interaction data: reading, validation, preparation (encode → k-core → split) and sequences."""

from seqdistill.data.dataset import FilterRound, PartCounts, PreparedDataset, SplitAudit
from seqdistill.data.interactions import COLUMNS, DataError, RawDataset, normalize_interactions, read_interactions
from seqdistill.data.prepare import SplitConfig, encode_column, prepare

__all__ = [
    "COLUMNS",
    "DataError",
    "FilterRound",
    "PartCounts",
    "PreparedDataset",
    "RawDataset",
    "SplitAudit",
    "SplitConfig",
    "encode_column",
    "normalize_interactions",
    "prepare",
    "read_interactions",
]
