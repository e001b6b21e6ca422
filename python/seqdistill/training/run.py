"""A training run folder: one model trained on one prepared dataset (``seqdistill train``).

Layout of ``run_dir``::

    run.json        RunInfo: the settings, the seed, the dataset path and fingerprint
                    (``dataset_fingerprint``), the best epoch, its validation score, the version;
                    written (atomically) before training with ``status = "training"`` and again at
                    the end with ``status = "complete"``
    checkpoint/     the trainer's checkpoint after every epoch (``fit(resume=True)`` continues it)
    history.json    one row per epoch (losses, validation metrics, seconds)
    model/          the best epoch's model (``seqdistill.models.load_model`` reads it)

A folder is a run folder when its ``run.json`` says so (:func:`is_run_folder`). Any other folder
that is not empty is never written into, except one that holds nothing but the run's inputs (so
``runs/x`` may hold its dataset in ``runs/x/dataset``); the run never writes over an input. Training the same settings into a run folder resumes it (or,
when complete, does nothing); other settings are refused unless ``overwrite``, which removes only
what a run writes (the four names above) before starting afresh.

:func:`build_trainer` (seed, model, distillation term, trainer) is shared with the experiment runner.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seqdistill import _io
from seqdistill.data.dataset import fingerprints_match
from seqdistill.errors import ConfigError, DataError, OutputError, SeqdistillWarning

if TYPE_CHECKING:  # pragma: no cover - typing only
    from seqdistill.data import PreparedDataset
    from seqdistill.models import ModelConfig

    from .config import TrainConfig
    from .distill import DistillConfig

__all__ = [
    "RUN_FILE",
    "RUN_FORMAT",
    "RunInfo",
    "build_trainer",
    "check_run_dir",
    "is_run_folder",
    "load_run",
    "train_run",
]

RUN_FILE = "run.json"
RUN_FORMAT = "seqdistill-run-1"
MODEL_DIR = "model"
_WRITTEN = ("checkpoint", "history.json", MODEL_DIR)  # what the trainer writes besides run.json
# TrainConfig fields that change how a run is executed, not what it computes: not compared on resume
_EXECUTION = ("progress", "device", "nproc", "backend")


#: The JSON types of run.json's fields, checked when it is read (a hand-edited or damaged record
#: is a DataError naming the field, not a TypeError later).
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "dataset": (str,),
    "dataset_fingerprint": (str,),
    "seed": (int,),
    "model": (dict,),
    "train": (dict,),
    "distill": (dict, type(None)),
    "profiles": (dict, type(None)),
    "status": (str,),
    "best_epoch": (int, type(None)),
    "valid_metric": (str, type(None)),
    "valid_score": (int, float, type(None)),
    "epochs_run": (int,),
    "stopped_early": (bool,),
    "device": (str, type(None)),
    "torch_threads": (int, type(None)),
    "seqdistill_version": (str,),
}


@dataclass
class RunInfo:
    """What ``run.json`` holds. ``settings()`` is the part a resumed run must share."""

    dataset: str
    dataset_fingerprint: str
    seed: int
    model: dict[str, Any]
    train: dict[str, Any]
    distill: dict[str, Any] | None = None
    profiles: dict[str, Any] | None = None  # path, mask, sha256 of the targets, users with a profile
    status: str = "training"  # "training" | "complete"
    best_epoch: int | None = None
    valid_metric: str | None = None
    valid_score: float | None = None  # None when the dataset has no validation targets
    epochs_run: int = 0
    stopped_early: bool = False
    device: str | None = None
    torch_threads: int | None = None
    seqdistill_version: str = ""
    format: str = RUN_FORMAT

    def settings(self) -> dict[str, Any]:
        """Everything that decides the trained weights (paths, device and threads excluded)."""
        train = {k: v for k, v in self.train.items() if k not in _EXECUTION}
        profiles = None if self.profiles is None else self.profiles.get("sha256")
        return {
            "dataset_fingerprint": self.dataset_fingerprint,
            "seed": self.seed,
            "model": self.model,
            "train": train,
            "distill": self.distill,
            "profiles": profiles,
        }

    def write(self, run_dir: str | os.PathLike) -> Path:
        return _io.write_json(Path(run_dir) / RUN_FILE, asdict(self), indent=2)

    @classmethod
    def read(cls, run_dir: str | os.PathLike) -> RunInfo:
        """``run_dir/run.json``; a DataError naming it when it is missing, damaged or foreign."""
        path = Path(run_dir) / RUN_FILE
        if not path.is_file():
            raise DataError(f"{run_dir}: not a training run folder (no {RUN_FILE}; written by 'seqdistill train')")
        try:
            d = _io.loads_json(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise DataError(f"{path}: unreadable ({e.__class__.__name__}: {' '.join(str(e).split())})") from None
        if not isinstance(d, dict) or d.get("format") != RUN_FORMAT:
            got = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise DataError(f"{path}: not a seqdistill run record (format {got!r}, expected {RUN_FORMAT!r})")
        known = set(cls.__dataclass_fields__)
        missing = sorted({"dataset", "dataset_fingerprint", "seed", "model", "train"} - set(d))
        if missing:
            raise DataError(f"{path}: damaged run record, missing {missing}")
        for key, kinds in _FIELD_TYPES.items():
            v = d.get(key)
            if key in d and not (isinstance(v, kinds) and not (isinstance(v, bool) and bool not in kinds)):
                names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
                raise DataError(f"{path}: damaged run record, {key!r} must be {names}, got {v!r:.80}")
        if d.get("status", "training") not in ("training", "complete"):
            raise DataError(
                f'{path}: damaged run record, \'status\' must be "training" or "complete", got {d["status"]!r:.80}'
            )
        return cls(**{k: v for k, v in d.items() if k in known})

    def check_dataset(self, ds, where: str | os.PathLike) -> None:
        """Refuse a dataset other than the one the run was trained on (by fingerprint)."""
        fp = ds.fingerprint()
        if not fingerprints_match(self.dataset_fingerprint, fp):
            raise DataError(
                f"{where}: not the dataset this run was trained on (fingerprint {fp}, the run's "
                f"{RUN_FILE} has {self.dataset_fingerprint} from {self.dataset})"
            )


# ------------------------------------------------------------------------------ the folder
def is_run_folder(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds a ``run.json`` written by :func:`train_run`."""
    path = Path(folder) / RUN_FILE
    if not path.is_file():
        return False
    try:
        d = _io.loads_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(d, dict) and d.get("format") == RUN_FORMAT


def check_run_dir(run_dir: str | os.PathLike, inputs: Mapping[str, str | os.PathLike] | None = None) -> None:
    """Refuse, before any work, a ``run_dir`` that is a file, is or lies inside an input (``{what:
    path}``), holds an input where the run writes (``checkpoint``, ``model``, ``history.json``), or
    is a non-empty folder that is not a run folder. A folder holding only the inputs (e.g.
    ``runs/x`` with the dataset in ``runs/x/dataset``) may become a run folder. Raises OutputError."""
    out = Path(run_dir)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise OutputError(f"{run_dir}: exists and is not a folder; choose a new or empty folder for the run")
    target = out.resolve()
    held = set()
    for what, path in (inputs or {}).items():
        where = _io.overlap(target, path)
        if where in ("is", "lies inside"):
            raise OutputError(f"{run_dir}: {where} the {what} {path}; write the run to another folder")
        if where == "holds":
            top = target / Path(path).resolve().relative_to(target).parts[0]
            if top.name in (*_WRITTEN, RUN_FILE):
                raise OutputError(f"{run_dir}: holds the {what} {path} where the run writes {top.name}")
            held.add(top)
    others = [p for p in out.iterdir() if target / p.name not in held] if out.is_dir() else []
    if others and not is_run_folder(out):
        raise OutputError(
            f"{run_dir}: folder exists and is not a training run folder (no seqdistill {RUN_FILE}); "
            "refusing to write into it — choose a new or empty folder"
        )


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every leaf that differs (dotted keys)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def _clear(run_dir: Path) -> None:
    """Remove what a run writes (checkpoint, history, model) and nothing else."""
    from seqdistill.models.base import is_model_folder

    from .checkpoint import is_checkpoint_dir

    for name, is_ours in (("checkpoint", is_checkpoint_dir), (MODEL_DIR, is_model_folder)):
        folder = run_dir / name
        _io.recover_dir(folder)
        if folder.is_dir() and not folder.is_symlink():
            if not is_ours(folder):
                raise OutputError(f"{folder}: holds files seqdistill did not write; refusing to remove it")
            shutil.rmtree(folder)
        elif folder.exists() or folder.is_symlink():
            raise OutputError(f"{folder}: not a folder seqdistill wrote; refusing to remove it")
    hist = run_dir / "history.json"
    if hist.is_file() and not hist.is_symlink():
        hist.unlink()
    _io.fsync_dir(run_dir)


def _checkpoint_epoch(run_dir: Path) -> int | None:
    """The last finished epoch of the checkpoint (for the progress line only; the trainer reads
    and checks the checkpoint itself)."""
    try:
        return int(_io.loads_json((run_dir / "checkpoint" / "state.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ------------------------------------------------------------------------------ training
def build_trainer(
    ds: PreparedDataset,
    model: ModelConfig,
    train: TrainConfig,
    *,
    run_dir: str | os.PathLike | None = None,
    targets: tuple[np.ndarray, np.ndarray] | None = None,
    distill: DistillConfig | None = None,
    distill_trained: bool = True,
):
    """Seed everything with ``train.seed``, build the model of ``model`` (a ModelConfig), add a
    distillation term when ``targets`` (``(targets, mask)``) are given (``distill_trained=False``:
    it only measures), and return the :class:`~seqdistill.training.Trainer`."""
    from seqdistill.models import build_model

    from .distill import DistillationTerm
    from .trainer import Trainer, seed_everything

    seed_everything(train.seed)
    net = build_model(model)
    terms = [] if targets is None else [DistillationTerm(*targets, distill, train=distill_trained)]
    return Trainer(net, ds, config=train, extra_losses=terms, run_dir=run_dir)


def _profiles(
    profiles: str | os.PathLike, mask: str | os.PathLike | None, ds: PreparedDataset, dim: int
) -> tuple[tuple[np.ndarray, np.ndarray], dict[str, Any]]:
    """Targets, mask and their record (paths, a hash of the values, users with a profile)."""
    from seqdistill.profiles.targets import load_profile_vectors

    targets, flags = load_profile_vectors(profiles, ds.n_users, dim, mask)
    digest = hashlib.sha256(targets.tobytes() + flags.tobytes()).hexdigest()
    record = {
        "path": str(Path(profiles).resolve()),
        "mask": None if mask is None else str(Path(mask).resolve()),
        "sha256": digest,
        "with_profile": int(flags.sum()),
    }
    return (targets, flags), record


def _start(run_dir: Path, info: RunInfo, overwrite: bool) -> RunInfo | None:
    """Compare with a run already in ``run_dir``: the finished run when it is the same and
    complete (nothing to do), else None after ``run.json`` is (re)written for this run."""
    if is_run_folder(run_dir):
        old = RunInfo.read(run_dir)
        was, now = old.settings(), info.settings()
        if fingerprints_match(was["dataset_fingerprint"], now["dataset_fingerprint"]):
            was["dataset_fingerprint"] = now["dataset_fingerprint"]  # a run of an earlier version: same data
        diff = _differences(was, now)
        if not diff:
            if old.status == "complete" and (run_dir / MODEL_DIR).is_dir():
                return old
        elif not overwrite:
            shown = "; ".join(diff[:4]) + (f"; ... ({len(diff)} differences)" if len(diff) > 4 else "")
            raise ConfigError(
                f"{run_dir}: holds a run with other settings ({shown}); use another --out, or pass "
                "--overwrite to replace it"
            )
        else:
            _clear(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    info.write(run_dir)
    return None


def train_run(
    dataset: str | os.PathLike,
    run_dir: str | os.PathLike,
    model: Mapping[str, Any],
    train: TrainConfig,
    *,
    profiles: str | os.PathLike | None = None,
    profiles_mask: str | os.PathLike | None = None,
    distill: DistillConfig | None = None,
    overwrite: bool = False,
) -> RunInfo:
    """Train a model on the prepared dataset in ``dataset`` into ``run_dir`` (see the module doc).

    ``model``: ModelConfig settings without ``n_items`` (taken from the dataset); ``train``: a
    TrainConfig; ``profiles`` (a ``profiles reduce`` folder or a targets ``.npy``, with an optional
    ``profiles_mask``) adds the distillation term of ``distill`` (a DistillConfig, default
    settings when None). Everything is checked before ``run_dir`` is touched. Returns the
    finished run's :class:`RunInfo`. ``train.nproc > 1`` trains in that many new processes with
    DDP (:func:`~seqdistill.training.distributed.launch`); inside a process group (``torchrun``)
    every rank calls this and rank 0 alone writes the folder.
    """
    from seqdistill.data import PreparedDataset
    from seqdistill.models import ModelConfig

    from . import distributed
    from .distill import DistillConfig

    ctx = distributed.context()
    if train.nproc > 1 and not ctx.active:
        args = (dataset, run_dir, dict(model), train, profiles, profiles_mask, distill, overwrite)
        distributed.launch(_train_rank, train.nproc, *args, backend=train.backend, device=train.device)
        return RunInfo.read(run_dir)
    out = Path(run_dir)
    inputs = {"dataset": dataset, "profile vectors": profiles, "profile mask": profiles_mask}
    check_run_dir(out, {what: path for what, path in inputs.items() if path is not None})
    ds = PreparedDataset.load(dataset)
    mcfg = ModelConfig.from_dict({**model, "n_items": ds.n_items})
    targets = record = None
    if profiles is not None:
        distill = distill or DistillConfig()
        targets, record = _profiles(profiles, profiles_mask, ds, mcfg.hidden)
    elif distill is not None or profiles_mask is not None:
        raise ConfigError("distillation settings given without profile vectors (--profiles)")
    info = _new_info(dataset, ds, mcfg, train, distill, record)
    trainer = build_trainer(ds, mcfg, train, run_dir=out, targets=targets, distill=distill)  # checks all
    done, finished = distributed.main_decides(lambda: _start(out, info, overwrite), ctx)  # rank 0 writes
    if finished:
        done = done or RunInfo.read(out)
        if train.progress and ctx.is_main:
            print(f"{out}: already trained with these settings (best epoch {done.best_epoch}); nothing to do")
        return done
    validated = train.validate and len(ds.targets("valid")[0]) > 0
    if not validated and ctx.is_main:
        warnings.warn(
            f"{dataset}: no validation targets (prepared with --valid none, or too few users), so no "
            f"early stopping: all {train.epochs} epochs run and the last epoch's model is kept",
            SeqdistillWarning,
            stacklevel=2,
        )
    if train.progress and ctx.is_main:
        _announce(out, ds, mcfg, train, trainer, validated)
    trainer.fit(resume=True)
    score = trainer.best_score if validated else None
    info.valid_score = None if score is None or not math.isfinite(score) else float(score)
    info.best_epoch, info.epochs_run = trainer.best_epoch, len(trainer.history)
    info.stopped_early = trainer.state.stopped
    info.device, info.status = str(trainer.device), "complete"
    if ctx.is_main:
        info.write(out)
    distributed.barrier(ctx)  # run.json says complete before any rank returns
    return info


def _train_rank(*args: Any) -> None:
    """One process of a DDP run started by :func:`train_run` (``train.nproc > 1``)."""
    dataset, run_dir, model, train, profiles, profiles_mask, distill, overwrite = args
    train_run(
        dataset,
        run_dir,
        model,
        train,
        profiles=profiles,
        profiles_mask=profiles_mask,
        distill=distill,
        overwrite=overwrite,
    )


def _new_info(
    dataset: str | os.PathLike,
    ds: PreparedDataset,
    mcfg: ModelConfig,
    train: TrainConfig,
    distill: DistillConfig | None,
    profiles: dict[str, Any] | None,
) -> RunInfo:
    """The record of a run about to start (status ``training``)."""
    import torch

    import seqdistill

    return RunInfo(
        dataset=str(Path(dataset).resolve()),
        dataset_fingerprint=ds.fingerprint(),
        seed=train.seed,
        model=mcfg.to_dict(),
        train=train.to_dict(),
        distill=None if distill is None else distill.to_dict(),
        profiles=profiles,
        valid_metric=train.valid_metric,
        torch_threads=torch.get_num_threads(),
        seqdistill_version=seqdistill.__version__,
    )


def _announce(out: Path, ds, mcfg, train, trainer, validated: bool) -> None:
    stopping = (
        f"early stopping on valid {train.valid_metric} (patience {train.patience})"
        if validated and train.patience
        else ("best valid epoch kept" if validated else "no validation")
    )
    print(
        f"training {mcfg.kind} on {ds.name} ({ds.n_users} users, {ds.n_items} items) on {trainer.device}: "
        f"up to {train.epochs} epochs, {stopping} -> {out}",
        flush=True,
    )
    epoch = _checkpoint_epoch(out)
    if epoch is not None:
        print(f"resuming after epoch {epoch} from {out / 'checkpoint'}", flush=True)


def load_run(run_dir: str | os.PathLike, map_location: str = "cpu"):
    """``(RunInfo, model)`` of a complete run folder; a DataError when it is not one or the
    training has not finished (no ``model/`` yet)."""
    from seqdistill.models import load_model

    info = RunInfo.read(run_dir)
    folder = Path(run_dir) / MODEL_DIR
    if info.status != "complete" or not folder.is_dir():
        raise DataError(
            f"{run_dir}: training has not finished (run 'seqdistill train' with the same settings again to resume it)"
        )
    return info, load_model(folder, map_location)
