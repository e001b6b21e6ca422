"""Experiment configuration: one TOML file names the dataset, split, model, trainer, profile
targets, distillation grid, seeds and controls of a paper-style comparison.

    [dataset]            name = "synthetic" | "ml-1m" | "beauty" | ... | "prepared"; path; [dataset.kwargs]
    [split]              SplitConfig fields
    [model]              ModelConfig fields (n_items is filled from the data)
    [train]              TrainConfig fields (seed is replaced by each run's seed)
    [profiles]           source = "stats" | "llm" | "targets"; store / targets / mask; reduce; seed
    [distill]            DistillConfig fields (the base point); [distill.grid] lists that vary
    seeds, controls, k_core, eval_ks, name, workers at the top level

Everything round-trips: ``ExperimentConfig.from_dict(cfg.to_dict()) == cfg``. Every key is
checked (type, range, the relations between sections) by :mod:`seqdistill.experiments.validate`
before any work; each refusal is a :class:`~seqdistill.errors.ConfigError` naming the file, the
``[section] key`` and the value.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import stat
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from seqdistill._checks import show, unknown_keys
from seqdistill._presets import list_presets, preset_file
from seqdistill.errors import ConfigError

from .idgenrec_run import check_section as check_idgenrec
from .naming import unique_names

__all__ = [
    "ConfigError",
    "DatasetSpec",
    "ProfilesSpec",
    "DistillSpec",
    "ExperimentConfig",
    "load_config",
    "load_preset",
    "list_presets",
    "GRID_KEYS",
    "CONTROLS",
]

from .options import CONTROLS, GRID_KEYS, SOURCES

_SHORT = {
    "alpha": "a",
    "dynamic_beta": "b",
    "block": "blk",
    "pooling": "pool",
    "gamma": "g",
    "epochs": "ep",
    "loss": "loss",
}
_DATASET_ALIASES = {
    "movielens-1m": "ml-1m",
    "ml1m": "ml-1m",
    "movielens-20m": "ml-20m",
    "ml20m": "ml-20m",
    "movielens-100k": "ml-100k",
    "ml100k": "ml-100k",
    "m2": "amazon-m2",
}


def _table(d: Any, where: str, section: str, cls: type) -> dict[str, Any]:
    """``d`` if it is a table whose keys are all fields of ``cls``; else a ConfigError."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: [{section}] must be a table, got {show(d)}")
    extra = unknown_keys(d, cls)
    if extra:
        known = sorted(f.name for f in fields(cls))
        raise ConfigError(f"{where}: [{section}] unknown key(s) {extra}; known: {known}")
    return d


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
        n = str(self.name).lower().replace("_", "-")
        return _DATASET_ALIASES.get(n, n)

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
        """Check the values that need no other section (see :mod:`.validate` for the rest)."""
        if self.source not in SOURCES:
            raise ConfigError(f"{where}: [profiles] source = {show(self.source)}: must be one of {SOURCES}")
        if self.reduce not in ("pca", "umap"):
            raise ConfigError(f"{where}: [profiles] reduce = {show(self.reduce)}: must be 'pca' or 'umap'")
        try:
            self.stats_config()
        except ValueError as e:
            raise ConfigError(f"{where}: [profiles] stats_sections = {show(self.stats_sections)}: {e}") from None

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

    def points(self) -> list[tuple[str, dict[str, Any]]]:
        """``(variant name, DistillConfig dict)`` for every grid point (one point without a grid).

        Names are ``distill_<key><value>...`` made safe and unique by
        :func:`~seqdistill.experiments.naming.unique_names`: a value can never steer a run's
        files out of the experiment folder."""
        keys = list(self.grid)
        wanted = []
        for values in itertools.product(*(self.grid[k] for k in keys)):
            cfg = {**self.base, **dict(zip(keys, values))}
            wanted.append(("distill" + "".join(f"_{_SHORT.get(k, k)}{_fmt(v)}" for k, v in zip(keys, values)), cfg))
        return list(zip(unique_names(wanted), (cfg for _, cfg in wanted)))

    def to_dict(self) -> dict[str, Any]:
        return {**copy.deepcopy(self.base), "grid": copy.deepcopy(self.grid)}


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    return str(v)


@dataclass
class ExperimentConfig:
    """A whole comparison: vanilla vs every distilled grid point vs the controls, over seeds.

    ``origin`` (not a field: it takes no part in equality or in ``to_dict``) is where the config
    came from, e.g. the TOML file; every error names it."""

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
    idgenrec: dict[str, Any] | None = None  # [idgenrec]: IDGenRecConfig keys; adds the IDGenRec variant
    workers: int = 1  # runs trained at once, each in its own process (changes no result)

    origin = "experiment config"
    #: The top-level keys the config's table set (``from_dict``/``from_toml``); not a field either.
    given = frozenset[str]()

    def validate(self, where: str | None = None) -> ExperimentConfig:
        """Check every key: types, ranges, the relations between sections (``block`` against
        ``n_blocks``, the distillation stage against the training length, ...). Raises
        :class:`ConfigError` naming ``where`` (default: :attr:`origin`), the key and the value.
        Machine-dependent checks (files, device) are :meth:`check_runnable`."""
        from .validate import validate_config

        if where is not None:
            self.origin = where
        validate_config(self, self.origin)
        check_idgenrec(self, self.origin)
        return self

    def check_runnable(self, profiles: bool = True) -> None:
        """Check what depends on this machine: the device is there, the files the config names
        exist (those of ``[profiles]`` only with ``profiles``: a store may be written after the
        dataset is prepared). Raises :class:`ConfigError`; ``run_experiment`` calls it first."""
        from .validate import check_runnable

        check_runnable(self, self.origin, profiles=profiles)
        check_idgenrec(self, self.origin, machine=True)

    def variants(self) -> list[tuple[str, str, dict[str, Any] | None]]:
        """``(variant, kind, DistillConfig dict or None)``: vanilla, the grid points, the controls
        (controls use the base DistillConfig)."""
        out: list[tuple[str, str, dict[str, Any] | None]] = [("vanilla", "vanilla", None)]
        out += [(n, "distill", c) for n, c in self.distill.points()]
        out += [(f"control_{c}", c, dict(self.distill.base)) for c in self.controls]
        if self.idgenrec is not None:
            out.append(("idgenrec", "idgenrec", None))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dataset": self.dataset.to_dict(),
            "split": dict(self.split),
            "k_core": list(self.k_core),
            "model": dict(self.model),
            "train": dict(self.train),
            "profiles": self.profiles.to_dict(),
            "distill": self.distill.to_dict(),
            "seeds": list(self.seeds),
            "controls": list(self.controls),
            "eval_ks": list(self.eval_ks),
            **({} if self.idgenrec is None else {"idgenrec": dict(self.idgenrec)}),
            **({} if self.workers == 1 else {"workers": self.workers}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "experiment config") -> ExperimentConfig:
        """Build and validate; ``where`` (e.g. the file name) prefixes every error."""
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: expected a table of settings, got {show(d)}")
        d = copy.deepcopy(d)
        extra = unknown_keys(d, cls)
        if extra:
            raise ConfigError(f"{where}: unknown key(s) {extra}; known: {sorted(f.name for f in fields(cls))}")
        ds = _table(d.pop("dataset", {}), where, "dataset", DatasetSpec)
        pr = _table(d.pop("profiles", {}), where, "profiles", ProfilesSpec)
        di = d.pop("distill", {})
        if not isinstance(di, dict):
            raise ConfigError(f"{where}: [distill] must be a table, got {show(di)}")
        grid = di.pop("grid", {})
        cfg = cls(dataset=DatasetSpec(**ds), profiles=ProfilesSpec(**pr), distill=DistillSpec(di, grid), **d)
        cfg.given = frozenset(d)
        return cfg.validate(where)

    @classmethod
    def from_toml(cls, path: str | Path) -> ExperimentConfig:
        path = Path(path)
        try:
            raw = path.read_bytes()
            text = raw.decode("utf-8-sig")  # a byte-order mark (Windows editors) is not content
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}{_line_of(e, text)}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: {_not_utf8(raw, e)}") from None
        except OSError as e:
            raise ConfigError(f"{path}: cannot read the config file ({e.__class__.__name__}: {e})") from None
        except RecursionError:
            raise ConfigError(f"{path}: not valid TOML: nested too deeply to read") from None
        if not data:  # an empty (or comments-only) file is a mistake, not "every default"
            raise ConfigError(
                f"{path}: the config file sets nothing; for the defaults use the preset 'synthetic' "
                "or write at least a [dataset] table"
            )
        try:
            cfg = cls.from_dict(data, where=str(path))
        except RecursionError:  # arrays or tables nested deeper than the checks can follow
            raise ConfigError(f"{path}: a setting is nested too deeply to read") from None
        if "dataset" not in data:  # every other table has defaults; the data is the user's to name
            raise ConfigError(
                f"{path}: no [dataset] table; name the data the experiment runs on (e.g. [dataset] "
                'name = "ml-1m", or name = "prepared" with path = a prepared dataset folder)'
            )
        return cfg

    def to_toml(self) -> str:
        """TOML text that ``from_toml`` reads back to an equal config."""
        return _dump_toml(self.to_dict())


def _line_of(e: tomllib.TOMLDecodeError, text: str) -> str:
    """``: line N is '...'`` for a TOML error that names a line (tomllib does not say the key)."""
    m = re.search(r"at line (\d+)", str(e))
    lines = text.splitlines()
    if not m or not 1 <= int(m[1]) <= len(lines):
        return ""
    return f" — line {m[1]} is {show(lines[int(m[1]) - 1].strip(), 80)}"


def _not_utf8(raw: bytes, e: UnicodeDecodeError) -> str:
    utf16 = raw.startswith((b"\xff\xfe", b"\xfe\xff"))
    kind = " (it starts like UTF-16)" if utf16 else ""
    line = raw[: e.start].count(b"\n") + 1
    return f"not UTF-8 text{kind}: byte 0x{raw[e.start]:02x} at line {line}; save the config as UTF-8"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        # a JSON string is a TOML basic string: quotes, backslashes and control characters escaped
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
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
    if p.suffix == ".toml" or p.exists() or p.is_symlink():
        _check_config_file(p)
        return ExperimentConfig.from_toml(p)
    return load_preset(str(path_or_name))


def _check_config_file(p: Path) -> None:
    """A regular file, or a ConfigError saying what is there instead (a FIFO is never opened)."""
    if not p.exists():
        link = " (a symbolic link that leads nowhere: dangling, or a loop)" if p.is_symlink() else ""
        raise ConfigError(f"{p}: no such config file{link}")
    if p.is_dir():
        raise ConfigError(f"{p}: is a folder, not a config file")
    if not stat.S_ISREG(p.stat().st_mode):
        raise ConfigError(f"{p}: not a regular file (a FIFO or device); give the config as a .toml file")


def load_preset(name: str) -> ExperimentConfig:
    """A packaged preset: beauty, ml20m, kion, amazon_m2 (the paper's settings), ml1m, synthetic."""
    if name not in list_presets():
        raise ConfigError(f"{name}: not a config file nor a preset; presets: {list_presets()}")
    f = preset_file(name)
    try:
        data = tomllib.loads(f.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"preset {name}: not valid TOML: {e}") from None
    return ExperimentConfig.from_dict(data, where=f"preset {name}")
