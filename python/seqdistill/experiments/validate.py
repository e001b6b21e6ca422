"""Complete validation of an :class:`~seqdistill.experiments.ExperimentConfig`, before any work.

Three layers, in order, each refusal one line naming the file, the ``[section] key`` and the value:

1. types, key by key, from the type hints of the library's config classes (``True`` is not an
   integer here, ``"0.5"`` is not a number, NaN and infinities are refused);
2. ranges, by the library's own classes (``SplitConfig``, ``ModelConfig``, ``TrainConfig``,
   ``DistillConfig``, ``SyntheticConfig``) plus the experiment's own keys (seeds, ``k_core``,
   ``eval_ks``, controls, grid values);
3. relations between sections: the distilled ``block`` exists in the model, the distillation
   stage fits in the training run, the ``stats`` control is not the main source already.

:func:`check_runnable` adds what depends on the machine (files named by the config, the device).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqdistill._checks import SEED_LIMIT, THREAD_LIMIT, describe, field_hints, matches, show, unknown_keys
from seqdistill.errors import ConfigError

from .options import CONTROLS, GRID_KEYS

if TYPE_CHECKING:
    from .config import ExperimentConfig

__all__ = ["check_device", "check_runnable", "check_table", "validate_config"]

_K_CORE_LIMIT = 2**32  # the core counts rows per user and item in 32 bits
# A top-k cut-off above this ranks nothing more in any catalogue a run can hold, and every
# cut-off is a buffer of k slots per ranked row (a k of 10^11 aborted the process after training).
_CUTOFF_LIMIT = 100_000


def _key(section: str, key: str) -> str:
    return f"[{section}] {key}" if section else key


def check_table(where: str, section: str, d: Any, cls: type, *, finite: bool = True) -> None:
    """``d`` is a table of fields of the dataclass ``cls``, each value of its field's type."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: [{section}] must be a table, got {show(d)}")
    extra = unknown_keys(d, cls)
    if extra:
        raise ConfigError(f"{where}: [{section}] unknown key(s) {extra}; known: {sorted(field_hints(cls))}")
    hints = field_hints(cls)
    for k, v in d.items():
        if not matches(v, hints[k], finite=finite):
            raise ConfigError(f"{where}: {_key(section, k)} = {show(v)}: expected {describe(hints[k])}")


_CLASS_KEY = re.compile(r"^[A-Z]\w*\.(\w+): ")  # "TrainConfig.lr: ..." as the library classes say it
_CLASS_PREFIX = re.compile(r"^[A-Z]\w*\.\w+: ")


def _ranges(where: str, section: str, build: Callable[[], Any]) -> Any:
    """Run a library constructor; its ValueError/TypeError becomes a ConfigError naming the file
    and the ``[section] key`` (a leading ``Class.key:`` is put the way the TOML file says it)."""
    try:
        return build()
    except (TypeError, ValueError) as e:
        said = _CLASS_KEY.sub(r"\1: ", str(e))
        raise ConfigError(f"{where}: [{section}] {said}") from None


def _int_list(where: str, key: str, value: list[Any], *, low: int, high: int | None = None) -> None:
    """A non-empty list of distinct integers in ``[low, high)``."""
    if not value:
        raise ConfigError(f"{where}: {key} = {show(value)}: must not be empty")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}: {key} = {show(value)}: values must be distinct")
    for v in value:
        if v < low or (high is not None and v >= high):
            top = f" and < {high}" if high is not None else ""
            raise ConfigError(f"{where}: {key} = {show(value)}: {v} is out of range (must be >= {low}{top})")


def _paths(where: str, section: str, values: dict[str, Any]) -> None:
    """Path keys that are set must name something: an empty string would mean the current folder."""
    for key, value in values.items():
        if isinstance(value, str) and not value.strip():
            raise ConfigError(f"{where}: [{section}] {key} = {show(value)}: an empty path; leave the key out instead")


# ----------------------------------------------------------------------------- sections
def _top_level(cfg: ExperimentConfig, where: str) -> None:
    hints = field_hints(type(cfg))
    for key in ("name", "seeds", "controls", "k_core", "eval_ks", "split", "model", "train", "workers"):
        value = getattr(cfg, key)
        if not matches(value, hints[key]):
            label = key if key not in ("split", "model", "train") else f"[{key}]"
            raise ConfigError(f"{where}: {label} = {show(value)}: expected {describe(hints[key])}")
    _int_list(where, "seeds", cfg.seeds, low=0, high=SEED_LIMIT)
    _int_list(where, "eval_ks", cfg.eval_ks, low=1, high=_CUTOFF_LIMIT + 1)
    if 10 not in cfg.eval_ks:
        raise ConfigError(f"{where}: eval_ks = {show(cfg.eval_ks)}: must contain 10 (the report's metric)")
    if not 1 <= cfg.workers <= THREAD_LIMIT:
        raise ConfigError(f"{where}: workers = {show(cfg.workers)}: must be from 1 to {THREAD_LIMIT}")
    if len(cfg.k_core) != 2 or any(k < 1 or k >= _K_CORE_LIMIT for k in cfg.k_core):
        raise ConfigError(
            f"{where}: k_core = {show(cfg.k_core)}: must be [k_user, k_item], two integers >= 1 and < {_K_CORE_LIMIT}"
        )
    if len(set(cfg.controls)) != len(cfg.controls):
        raise ConfigError(f"{where}: controls = {show(cfg.controls)}: values must be distinct")
    for c in cfg.controls:
        if c not in CONTROLS:
            raise ConfigError(
                f"{where}: controls = {show(cfg.controls)}: unknown control {c!r}; known: {list(CONTROLS)}"
            )


def _dataset(cfg: ExperimentConfig, where: str) -> None:
    from seqdistill import datasets

    spec = cfg.dataset
    check_table(where, "dataset", {k: getattr(spec, k) for k in ("name", "path", "kwargs")}, type(spec))
    _paths(where, "dataset", {"path": spec.path})
    known = sorted(info.name for info in datasets.list_datasets()) + ["prepared"]
    if spec.registry_name not in known:
        raise ConfigError(f"{where}: [dataset] name = {show(spec.name)}: unknown dataset; known: {known}")
    if spec.registry_name == "prepared":
        if spec.path is None:
            raise ConfigError(f"{where}: [dataset] path: name = 'prepared' needs path = a prepared dataset folder")
        if spec.kwargs:
            raise ConfigError(f"{where}: [dataset.kwargs] = {show(spec.kwargs)}: a prepared dataset takes no kwargs")
    elif spec.registry_name == "synthetic":
        from seqdistill.data.synthetic import SyntheticConfig

        check_table(where, "dataset.kwargs", spec.kwargs, SyntheticConfig)
        _ranges(where, "dataset.kwargs", lambda: SyntheticConfig.from_dict(spec.kwargs).validate())
    else:
        options = datasets.loader_options(spec.registry_name)
        for k, v in spec.kwargs.items():  # the loaders take files, locales, flags: plain values only
            if k not in options:
                raise ConfigError(
                    f"{where}: [dataset.kwargs] unknown key {k!r} for dataset "
                    f"{spec.registry_name!r}; known: {sorted(options)}"
                )
            if not matches(v, str | int | float | bool | list[str]):
                raise ConfigError(f"{where}: [dataset.kwargs] {k} = {show(v)}: expected a string, number or true/false")


def _library_sections(cfg: ExperimentConfig, where: str) -> None:
    from seqdistill.data import SplitConfig
    from seqdistill.models import ModelConfig
    from seqdistill.training import TrainConfig

    if "n_items" in cfg.model:
        raise ConfigError(f"{where}: [model] n_items = {show(cfg.model['n_items'])}: taken from the data; remove it")
    for section, cls in (("split", SplitConfig), ("model", ModelConfig), ("train", TrainConfig)):
        check_table(where, section, getattr(cfg, section), cls)
    _ranges(where, "split", lambda: SplitConfig.from_dict(cfg.split))
    _ranges(where, "model", lambda: ModelConfig.from_dict({**cfg.model, "n_items": 1}))
    train = _ranges(where, "train", lambda: TrainConfig.from_dict(cfg.train))
    for k in train.valid_ks:
        if k > _CUTOFF_LIMIT:
            raise ConfigError(
                f"{where}: [train] valid_ks = {show(list(train.valid_ks))}: {k} is out of range (must be <= {_CUTOFF_LIMIT})"
            )


def _profiles(cfg: ExperimentConfig, where: str) -> None:
    spec = cfg.profiles
    check_table(where, "profiles", {f.name: getattr(spec, f.name) for f in fields(spec)}, type(spec))
    spec.validate(where)
    _paths(where, "profiles", {k: getattr(spec, k) for k in ("store", "targets", "mask", "encoder")})
    for key, needs in (("store", "llm"), ("targets", "targets"), ("mask", "targets")):
        value = getattr(spec, key)
        if value is not None and spec.source != needs:  # set but unused: the run would silently ignore it
            raise ConfigError(
                f"{where}: [profiles] {key} = {show(value)}: used only with source = {needs!r} "
                f"(source is {spec.source!r}); remove it or set source = {needs!r}"
            )
    if not 0 <= spec.seed < SEED_LIMIT:
        raise ConfigError(f"{where}: [profiles] seed = {spec.seed}: must be >= 0 and < {SEED_LIMIT}")
    if "stats" in cfg.controls and spec.source == "stats":
        raise ConfigError(
            f"{where}: controls = {show(cfg.controls)}: 'stats' is the main source already; "
            "use it with [profiles] source = 'llm'"
        )


def _distill(cfg: ExperimentConfig, where: str) -> None:
    from seqdistill.training.distill import DistillConfig

    base, grid = cfg.distill.base, cfg.distill.grid
    check_table(where, "distill", base, DistillConfig)
    _ranges(where, "distill", lambda: DistillConfig.from_dict(base))
    if not isinstance(grid, dict):
        raise ConfigError(f"{where}: [distill.grid] must be a table, got {show(grid)}")
    hints = field_hints(DistillConfig)
    for k, values in grid.items():
        if k not in GRID_KEYS:
            raise ConfigError(f"{where}: [distill.grid] unknown key {k!r}; known: {list(GRID_KEYS)}")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: [distill.grid] {k} = {show(values)}: must be a non-empty list")
        for v in values:
            if v is None or not matches(v, hints[k]):
                raise ConfigError(
                    f"{where}: [distill.grid] {k} = {show(values)}: {show(v)} is not "
                    f"{describe(hints[k]).replace(' (or nothing)', '')}"
                )
            try:
                DistillConfig.from_dict({**base, k: v})
            except (TypeError, ValueError) as e:
                said = _CLASS_PREFIX.sub("", str(e))
                raise ConfigError(f"{where}: [distill.grid] {k} = {show(values)}: {show(v)}: {said}") from None
        if len(set(values)) != len(values):
            raise ConfigError(f"{where}: [distill.grid] {k} = {show(values)}: values must be distinct")


# ------------------------------------------------------------------------ relations
def _block_problem(distill: dict[str, Any], model: Any) -> str | None:
    """Why ``distill``'s block is not one of ``model``'s blocks (the library's ``check_block``), or None."""
    from seqdistill.training.distill import DistillConfig, check_block

    try:
        check_block(DistillConfig.from_dict(distill), model)
    except ValueError as e:
        return _CLASS_PREFIX.sub("", str(e))
    return None


def _stage_problem(epochs: int | None, train_epochs: int) -> str | None:
    """Why a distillation stage of ``epochs`` cannot run in ``train_epochs`` epochs, or None."""
    if epochs is None:
        return None
    if epochs < 1:
        return "the distillation stage needs at least 1 epoch (leave epochs out to distil for the whole run)"
    if epochs > train_epochs:
        return f"longer than training ([train] epochs = {train_epochs}); leave epochs out to distil for the whole run"
    return None


def _relations(cfg: ExperimentConfig, where: str) -> None:
    from seqdistill.models import ModelConfig
    from seqdistill.training import TrainConfig

    model = ModelConfig.from_dict({**cfg.model, "n_items": 1})
    train_epochs = TrainConfig.from_dict(cfg.train).epochs
    base, grid = cfg.distill.base, cfg.distill.grid
    checks = [
        ("[distill]", "block", base.get("block", -1), _block_problem(base, model)),
        ("[distill]", "epochs", base.get("epochs"), _stage_problem(base.get("epochs"), train_epochs)),
    ]
    checks += [
        ("[distill.grid]", "block", v, _block_problem({**base, "block": v}, model)) for v in grid.get("block", [])
    ]
    checks += [("[distill.grid]", "epochs", v, _stage_problem(v, train_epochs)) for v in grid.get("epochs", [])]
    for label, key, value, why in checks:
        if why:
            raise ConfigError(f"{where}: {label} {key} = {show(value)}: {why}")


def validate_config(cfg: ExperimentConfig, where: str) -> None:
    """Every check that needs nothing but the config (see the module doc); ConfigError on the first."""
    _top_level(cfg, where)
    _dataset(cfg, where)
    _library_sections(cfg, where)
    _profiles(cfg, where)
    _distill(cfg, where)
    _relations(cfg, where)


# ------------------------------------------------------------------ this machine
def check_device(device: str) -> str | None:
    """Why torch cannot train on ``device`` here, or None (``"auto"`` always works)."""
    import torch

    if device == "auto":
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        return "not a device name (use 'auto', 'cpu', 'cuda' or 'cuda:N')"
    if dev.type == "cpu":
        return None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return "CUDA is not available on this machine"
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            return f"this machine has {n} CUDA device(s)"
        return None
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        return None if mps is not None and mps.is_available() else "MPS is not available on this machine"
    return f"device type {dev.type!r} is not supported (use 'auto', 'cpu' or 'cuda')"


def _exists(where: str, key: str, value: str | None, kind: str) -> None:
    if value is None:
        return
    p = Path(value)
    ok = p.is_dir() if kind == "folder" else p.is_file()
    if not ok:
        raise ConfigError(f"{where}: {key} = {show(value)}: no such {kind}")


def check_runnable(cfg: ExperimentConfig, where: str, *, profiles: bool = True) -> None:
    """What depends on this machine: the device, and the files and folders the config names
    (``[profiles]`` ones only with ``profiles``)."""
    from seqdistill import datasets

    device = cfg.train.get("device", "auto")
    why = check_device(device)
    if why:
        raise ConfigError(f"{where}: [train] device = {show(device)}: {why}")
    spec = cfg.dataset
    needs = {info.name: info for info in datasets.list_datasets()}
    if spec.registry_name == "prepared":
        folder = Path(spec.path)
        if not (folder / "manifest.json").is_file():
            what = "no such folder" if not folder.exists() else ("a file" if not folder.is_dir() else "a folder")
            raise ConfigError(
                f"{where}: [dataset] path = {show(spec.path)}: not a prepared dataset ({what} without "
                "manifest.json); write one with 'seqdistill prepare'"
            )
    elif spec.path is None and needs[spec.registry_name].needs_path:
        raise ConfigError(
            f"{where}: [dataset] path: dataset {spec.registry_name!r} is read from files you "
            f"download; set path ({needs[spec.registry_name].source})"
        )
    elif spec.path is not None and not Path(spec.path).exists():
        raise ConfigError(f"{where}: [dataset] path = {show(spec.path)}: no such file or folder")
    pr = cfg.profiles
    if not profiles:
        return
    if pr.source == "llm" and pr.store is None:
        raise ConfigError(f"{where}: [profiles] store: source = 'llm' needs store = a profile store folder")
    if pr.source == "targets" and pr.targets is None:
        raise ConfigError(f"{where}: [profiles] targets: source = 'targets' needs targets = a .npy file")
    if pr.source == "llm":
        _exists(where, "[profiles] store", pr.store, "folder")
    if pr.source == "targets":
        _exists(where, "[profiles] targets", pr.targets, "file")
        _exists(where, "[profiles] mask", pr.mask, "file")
    _exists(where, "[profiles] encoder", pr.encoder, "folder")
