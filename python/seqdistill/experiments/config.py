"""Experiment configuration: one TOML file names the dataset, split, model, trainer, profile
targets, distillation grid, seeds and controls of a paper-style comparison.

    [dataset]            name = "synthetic" | "ml-1m" | "beauty" | ... | "prepared"; path; [dataset.kwargs]
    [split]              SplitConfig fields
    [model]              ModelConfig fields (n_items is filled from the data)
    [train]              TrainConfig fields (seed is replaced by each run's seed)
    [profiles]           source = "stats" | "llm" | "targets"; store / targets / mask; reduce; seed
    [distill]            DistillConfig fields (the base point); [distill.grid] lists that vary
    seeds, controls, k_core, eval_ks, name at the top level

Everything round-trips: ``ExperimentConfig.from_dict(cfg.to_dict()) == cfg``.
"""
from __future__ import annotations

import copy
import itertools
import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError", "DatasetSpec", "ProfilesSpec", "DistillSpec", "ExperimentConfig",
    "load_config", "load_preset", "list_presets", "GRID_KEYS", "CONTROLS",
]

GRID_KEYS = ("alpha", "dynamic_beta", "block", "pooling", "gamma", "epochs", "loss")
CONTROLS = ("shuffled", "stats")
SOURCES = ("stats", "llm", "targets")
_SHORT = {"alpha": "a", "dynamic_beta": "b", "block": "blk", "pooling": "pool", "gamma": "g", "epochs": "ep", "loss": "loss"}


class ConfigError(ValueError):
    """A bad experiment configuration: the message names the source file and the key."""


def _check_keys(d: dict[str, Any], cls: type, where: str) -> None:
    known = {f.name for f in fields(cls)}
    extra = set(d) - known
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {sorted(extra)}; known: {sorted(known)}")


@dataclass
class DatasetSpec:
    """Which data: a registered dataset (``seqdistill.datasets.load(name, path, **kwargs)``) or
    ``name = "prepared"`` with ``path`` a folder written by ``PreparedDataset.save``."""

    name: str = "synthetic"
    path: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def registry_name(self) -> str:
        """The name in ``seqdistill.datasets`` (aliases such as ``movielens_1m`` resolved)."""
        n = self.name.lower().replace("_", "-")
        aliases = {"movielens-1m": "ml-1m", "ml1m": "ml-1m", "movielens-20m": "ml-20m", "ml20m": "ml-20m",
                   "movielens-100k": "ml-100k", "ml100k": "ml-100k", "m2": "amazon-m2"}
        return aliases.get(n, n)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kwargs": dict(self.kwargs)}
        if self.path is not None:
            d["path"] = self.path
        return d


@dataclass
class ProfilesSpec:
    """Where the distillation targets come from.

    ``source``: ``"stats"`` (non-LLM statistics profiles written here, encoded, reduced),
    ``"llm"`` (``store``: a profile store from ``seqdistill profiles generate`` for the same
    prepared dataset), or ``"targets"`` (``targets``: a float32 [n_users, hidden] .npy, ``mask``:
    an optional bool [n_users] .npy). ``reduce``: ``"pca"`` or ``"umap"`` to the model's hidden
    size; ``seed`` fixes UMAP and the shuffled control; ``encoder``: a sentence-transformers
    folder (default: the installed all-MiniLM-L6-v2). ``stats_sections``: the sections of the
    statistics profiles (``seqdistill.profiles.stats_profile.SECTIONS``; default all)."""

    source: str = "stats"
    stats_sections: list[str] | None = None
    store: str | None = None
    targets: str | None = None
    mask: str | None = None
    reduce: str = "pca"
    seed: int = 0
    encoder: str | None = None

    def validate(self, where: str) -> None:
        if self.source not in SOURCES:
            raise ConfigError(f"{where}: [profiles] source must be one of {SOURCES}, got {self.source!r}")
        if self.reduce not in ("pca", "umap"):
            raise ConfigError(f"{where}: [profiles] reduce must be 'pca' or 'umap', got {self.reduce!r}")
        try:
            self.stats_config()
        except ValueError as e:
            raise ConfigError(f"{where}: [profiles] stats_sections: {e}") from e

    def stats_config(self):
        """The StatsConfig of the statistics profiles (source "stats" and the stats control)."""
        from seqdistill.profiles.stats_profile import StatsConfig

        return StatsConfig() if self.stats_sections is None else StatsConfig(sections=tuple(self.stats_sections))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass
class DistillSpec:
    """The base DistillConfig (as a dict) and the grid: for each key in GRID_KEYS, the list of
    values to try. Grid points are the Cartesian product, in the order the keys were given."""

    base: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)

    def validate(self, where: str) -> None:
        from seqdistill.training.distill import DistillConfig

        try:
            DistillConfig.from_dict(self.base)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: [distill] {e}") from e
        for k, v in self.grid.items():
            if k not in GRID_KEYS:
                raise ConfigError(f"{where}: [distill.grid] unknown key {k!r}; known: {list(GRID_KEYS)}")
            if not isinstance(v, list) or not v:
                raise ConfigError(f"{where}: [distill.grid] {k} must be a non-empty list, got {v!r}")
        for point in self.points():
            try:
                DistillConfig.from_dict(point[1])
            except (TypeError, ValueError) as e:
                raise ConfigError(f"{where}: [distill.grid] point {point[0]}: {e}") from e

    def points(self) -> list[tuple[str, dict[str, Any]]]:
        """``(variant name, DistillConfig dict)`` for every grid point (one point without a grid)."""
        keys = list(self.grid)
        out = []
        for values in itertools.product(*(self.grid[k] for k in keys)):
            cfg = {**self.base, **dict(zip(keys, values))}
            name = "distill" + "".join(f"_{_SHORT[k]}{_fmt(v)}" for k, v in zip(keys, values))
            out.append((name, cfg))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**copy.deepcopy(self.base), "grid": copy.deepcopy(self.grid)}


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    return str(v)


@dataclass
class ExperimentConfig:
    """A whole comparison: vanilla vs every distilled grid point vs the controls, over seeds."""

    name: str = "experiment"
    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    split: dict[str, Any] = field(default_factory=dict)
    k_core: list[int] = field(default_factory=lambda: [5, 5])
    model: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    profiles: ProfilesSpec = field(default_factory=ProfilesSpec)
    distill: DistillSpec = field(default_factory=DistillSpec)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    controls: list[str] = field(default_factory=lambda: ["shuffled"])
    eval_ks: list[int] = field(default_factory=lambda: [5, 10, 20])

    def validate(self, where: str = "experiment config") -> "ExperimentConfig":
        """Check every section with the library's own config classes; raises ConfigError."""
        from seqdistill.data import SplitConfig
        from seqdistill.models import ModelConfig
        from seqdistill.training import TrainConfig

        for section, fn in (("split", lambda: SplitConfig.from_dict(self.split)),
                            ("model", lambda: ModelConfig.from_dict({**self.model, "n_items": 1})),
                            ("train", lambda: TrainConfig.from_dict(self.train))):
            try:
                fn()
            except (TypeError, ValueError) as e:
                raise ConfigError(f"{where}: [{section}] {e}") from e
        if "n_items" in self.model:
            raise ConfigError(f"{where}: [model] n_items is taken from the data; remove it")
        self.profiles.validate(where)
        self.distill.validate(where)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or not all(isinstance(s, int) for s in self.seeds):
            raise ConfigError(f"{where}: seeds must be a non-empty list of distinct integers, got {self.seeds!r}")
        for c in self.controls:
            if c not in CONTROLS:
                raise ConfigError(f"{where}: controls: unknown control {c!r}; known: {list(CONTROLS)}")
        if "stats" in self.controls and self.profiles.source == "stats":
            raise ConfigError(f"{where}: controls: 'stats' is the main source already; use it with source='llm'")
        if len(self.k_core) != 2 or any(int(k) < 1 for k in self.k_core):
            raise ConfigError(f"{where}: k_core must be [k_user, k_item] >= 1, got {self.k_core!r}")
        if 10 not in self.eval_ks:
            raise ConfigError(f"{where}: eval_ks must contain 10 (the report's metric), got {self.eval_ks!r}")
        return self

    def variants(self) -> list[tuple[str, str, dict[str, Any] | None]]:
        """``(variant, kind, DistillConfig dict or None)``: vanilla, the grid points, the controls
        (controls use the base DistillConfig)."""
        out: list[tuple[str, str, dict[str, Any] | None]] = [("vanilla", "vanilla", None)]
        out += [(n, "distill", c) for n, c in self.distill.points()]
        out += [(f"control_{c}", c, dict(self.distill.base)) for c in self.controls]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "dataset": self.dataset.to_dict(), "split": dict(self.split),
            "k_core": list(self.k_core), "model": dict(self.model), "train": dict(self.train),
            "profiles": self.profiles.to_dict(), "distill": self.distill.to_dict(), "seeds": list(self.seeds),
            "controls": list(self.controls), "eval_ks": list(self.eval_ks),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "experiment config") -> "ExperimentConfig":
        """Build and validate; ``where`` (e.g. the file name) prefixes every error."""
        d = copy.deepcopy(d)
        _check_keys(d, cls, where)
        ds = d.pop("dataset", {})
        _check_keys(ds, DatasetSpec, f"{where}: [dataset]")
        pr = d.pop("profiles", {})
        _check_keys(pr, ProfilesSpec, f"{where}: [profiles]")
        di = d.pop("distill", {})
        grid = di.pop("grid", {})
        cfg = cls(dataset=DatasetSpec(**ds), profiles=ProfilesSpec(**pr), distill=DistillSpec(di, grid), **d)
        cfg.k_core = [int(k) for k in cfg.k_core]
        return cfg.validate(where)

    @classmethod
    def from_toml(cls, path: str | Path) -> "ExperimentConfig":
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from e
        return cls.from_dict(data, where=str(path))

    def to_toml(self) -> str:
        """TOML text that ``from_toml`` reads back to an equal config."""
        return _dump_toml(self.to_dict())


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise ConfigError(f"cannot write {v!r} ({type(v).__name__}) to TOML")


def _dump_toml(d: dict[str, Any], prefix: str = "") -> str:
    lines = [f"{k} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, dict) and v is not None]
    for k, v in d.items():
        if isinstance(v, dict):
            lines.append(f"\n[{prefix}{k}]")
            lines.append(_dump_toml(v, f"{prefix}{k}.").strip("\n"))
    return "\n".join(x for x in lines if x) + "\n"


def load_config(path_or_name: str | Path) -> ExperimentConfig:
    """A TOML file path, or the name of a packaged preset (see :func:`list_presets`)."""
    p = Path(path_or_name)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise ConfigError(f"{p}: no such config file")
        return ExperimentConfig.from_toml(p)
    return load_preset(str(path_or_name))


def list_presets() -> list[str]:
    """Names of the packaged presets (``presets/<name>.toml``)."""
    folder = resources.files("seqdistill.experiments") / "presets"
    return sorted(f.name[:-5] for f in folder.iterdir() if f.name.endswith(".toml"))


def load_preset(name: str) -> ExperimentConfig:
    """A packaged preset: beauty, ml20m, kion, amazon_m2 (the paper's settings), ml1m, synthetic."""
    f = resources.files("seqdistill.experiments") / "presets" / f"{name}.toml"
    if not f.is_file():
        raise ConfigError(f"unknown preset {name!r}; known: {list_presets()}")
    try:
        data = tomllib.loads(f.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"preset {name}: not valid TOML: {e}") from e
    return ExperimentConfig.from_dict(data, where=f"preset {name}")
