"""The trainer's checkpoint: a folder of safetensors files and one JSON file, never a pickle.

``run_dir/checkpoint/`` holds

- ``model.safetensors``: the weights after the last finished epoch;
- ``best.safetensors``: the weights of the best validation epoch so far (absent before the first);
- ``optimizer.safetensors``: every tensor of ``optimizer.state_dict()["state"]``, keyed
  ``"<param index>.<name>"`` (e.g. ``"3.exp_avg"``);
- ``state.json``: the counters (epoch, best epoch and score, epochs without improvement, stopped),
  the history, both configs and the rest of the optimizer state (``param_groups`` and any number
  in the per-parameter state).

The folder is written whole under a temporary name and swapped in (:func:`seqdistill._io.atomic_dir`),
so a crash leaves the previous epoch's checkpoint or this one. Reading it runs no code: tensors come
from safetensors, everything else from JSON. A ``checkpoint.pt`` left by an older seqdistill (a
pickle) is refused, never opened.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from seqdistill._checks import _is_int, _is_real
from seqdistill._io import atomic_dir, loads_json, recover_dir, write_json
from seqdistill.errors import ConfigError, DataError, TrainingError
from seqdistill.models.base import read_weights

__all__ = ["CHECKPOINT_DIR", "LEGACY_CHECKPOINT", "Checkpoint", "TrainState", "read_checkpoint", "write_checkpoint"]

CHECKPOINT_DIR = "checkpoint"
LEGACY_CHECKPOINT = "checkpoint.pt"
FORMAT = "seqdistill-checkpoint-1"
_STATE, _MODEL, _BEST, _OPTIM = "state.json", "model.safetensors", "best.safetensors", "optimizer.safetensors"


@dataclass
class TrainState:
    """The trainer's bookkeeping between epochs (everything a resumed run needs besides tensors)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best_score: float = -math.inf
    bad_epochs: int = 0
    stopped: bool = False


@dataclass
class Checkpoint:
    """What :func:`read_checkpoint` returns: the last finished ``epoch`` and all that resumes it."""

    epoch: int
    state: TrainState
    model: dict[str, Tensor]
    best: dict[str, Tensor] | None
    optimizer: dict[str, Any]
    train_config: dict[str, Any]
    model_config: dict[str, Any]


def is_checkpoint_dir(folder: Path) -> bool:
    """True when ``folder`` holds a trainer checkpoint and nothing else."""
    names = {p.name for p in folder.iterdir()}
    if _STATE not in names or not names <= {_STATE, _MODEL, _BEST, _OPTIM}:
        return False
    try:
        return loads_json((folder / _STATE).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


# ------------------------------------------------------------------------- optimizer
def split_optimizer_state(sd: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``optimizer.state_dict()`` as (tensors for safetensors, the rest as JSON-ready values)."""
    tensors: dict[str, Tensor] = {}
    state: dict[str, dict[str, Any]] = {}
    for pid, entries in sd["state"].items():
        state[str(pid)] = {}
        for name, v in entries.items():
            if isinstance(v, Tensor):
                key = f"{pid}.{name}"
                tensors[key] = v.detach().to("cpu").contiguous()
                state[str(pid)][name] = {"tensor": key}
            elif v is None or isinstance(v, (bool, int, float)):
                state[str(pid)][name] = {"value": v}
            else:
                raise TrainingError(f"optimizer state {pid}.{name}: cannot store a {type(v).__name__} in a checkpoint")
    return tensors, {"param_groups": sd["param_groups"], "state": state}


def join_optimizer_state(meta: dict[str, Any], tensors: dict[str, Tensor], current: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`split_optimizer_state`. ``current`` (the live optimizer's state dict)
    tells which group entries are tuples (JSON stores them as lists, e.g. ``betas``)."""
    state = {
        int(pid): {name: tensors[e["tensor"]] if "tensor" in e else e["value"] for name, e in entries.items()}
        for pid, entries in meta["state"].items()
    }
    groups = []
    for saved, live in zip(meta["param_groups"], current["param_groups"]):
        groups.append(
            {k: tuple(v) if isinstance(live.get(k), tuple) and isinstance(v, list) else v for k, v in saved.items()}
        )
    return {"state": state, "param_groups": groups}


# ------------------------------------------------------------------------- write / read
def write_checkpoint(
    run_dir: Path,
    epoch: int,
    state: TrainState,
    model: torch.nn.Module,
    best: dict[str, Tensor] | None,
    optimizer: torch.optim.Optimizer,
    train_config: dict[str, Any],
) -> Path:
    """Write ``run_dir/checkpoint/`` for the finished ``epoch`` (replacing the previous one)."""
    from safetensors.torch import save_file

    opt_tensors, opt_meta = split_optimizer_state(optimizer.state_dict())
    meta = {
        "format": FORMAT,
        "epoch": epoch,
        "best_epoch": state.best_epoch,
        "best_score": state.best_score,
        "bad_epochs": state.bad_epochs,
        "stopped": state.stopped,
        "history": state.history,
        "train_config": train_config,
        "model_config": model.config.to_dict(),
        "optimizer": opt_meta,
    }
    weights = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    folder = run_dir / CHECKPOINT_DIR
    with atomic_dir(folder, is_ours=is_checkpoint_dir, what="trainer checkpoint", overwrite=True) as tmp:
        save_file(weights, str(tmp / _MODEL))
        if best is not None:
            save_file({k: v.contiguous() for k, v in best.items()}, str(tmp / _BEST))
        save_file(opt_tensors, str(tmp / _OPTIM))
        write_json(tmp / _STATE, meta)
    return folder


def _read_tensors(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0]})") from None


def read_checkpoint(run_dir: Path, model: torch.nn.Module) -> Checkpoint | None:
    """The checkpoint in ``run_dir`` (None when there is none), checked against ``model``.

    Refuses a legacy ``checkpoint.pt`` (a pickle) and a checkpoint of another model config.
    """
    folder = run_dir / CHECKPOINT_DIR
    recover_dir(folder)
    if not folder.is_dir():
        legacy = run_dir / LEGACY_CHECKPOINT
        if legacy.exists():
            raise TrainingError(
                f"{legacy}: a checkpoint in the old pickle format, which seqdistill no longer "
                "reads (a pickle can run code); remove it to start this run afresh"
            )
        return None
    try:
        return _read(folder, model)
    except DataError as e:
        # Every damage below leaves the run unresumable; the checkpoint is the run's own, so
        # removing it is the way to start the run afresh (its settings stay in run.json).
        raise DataError(f"{e}; this run cannot resume from it: remove {folder} to start the run afresh") from None


def _state_problem(meta: dict[str, Any]) -> str | None:
    """What is impossible in a checkpoint's bookkeeping (a hand-edited or foreign file), else None.
    ``epoch`` is the last finished epoch, counted from 0: it must lie within the run's epochs, and
    the best epoch, the epochs without improvement and the history within the epochs run."""
    epoch, cfg = meta["epoch"], meta["train_config"]
    if not isinstance(cfg, dict):
        return f"train_config is {type(cfg).__name__}, not a table"
    if not _is_int(epoch) or epoch < 0:
        return f"epoch {epoch!r:.40} is not an epoch number"
    epochs = cfg.get("epochs")
    if _is_int(epochs) and epoch >= epochs:
        return f"epoch {epoch} (counted from 0) is beyond the run's {epochs} epochs"
    best = meta["best_epoch"]
    if best is not None and (not _is_int(best) or not 0 <= best <= epoch):
        return f"best_epoch {best!r:.40} is not an epoch from 0 to {epoch}"
    bad = meta["bad_epochs"]
    if not _is_int(bad) or not 0 <= bad <= epoch + 1:
        return f"bad_epochs {bad!r:.40} is not a count from 0 to {epoch + 1}"
    score = meta["best_score"]
    if score is not None and not _is_real(score):
        return f"best_score {score!r:.40} is not a number"
    if not isinstance(meta["stopped"], bool):
        return f"stopped {meta['stopped']!r:.40} is not true or false"
    if not isinstance(meta["history"], list) or len(meta["history"]) > epoch + 1:
        return f"history is not a list of at most {epoch + 1} epochs"
    return None


def _read(folder: Path, model: torch.nn.Module) -> Checkpoint:
    try:
        meta = loads_json((folder / _STATE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{folder / _STATE}: unreadable checkpoint state ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(
            f"{folder / _STATE}: not a seqdistill checkpoint (format {meta.get('format')!r})"
            if isinstance(meta, dict)
            else f"{folder / _STATE}: not a seqdistill checkpoint"
        )
    missing = sorted(
        {
            "epoch",
            "history",
            "best_epoch",
            "best_score",
            "bad_epochs",
            "stopped",
            "train_config",
            "model_config",
            "optimizer",
        }
        - set(meta)
    )
    if missing:
        raise DataError(f"{folder / _STATE}: damaged checkpoint state, missing {missing}")
    problem = _state_problem(meta)
    if problem:
        raise DataError(f"{folder / _STATE}: damaged checkpoint state: {problem}")
    if meta["model_config"] != model.config.to_dict():
        raise ConfigError(
            f"{folder}: checkpoint model config {meta['model_config']} differs from {model.config.to_dict()}"
        )
    expected = model.state_dict()
    best = read_weights(folder / _BEST, expected) if (folder / _BEST).is_file() else None
    state = TrainState(
        history=meta["history"],
        best_epoch=meta["best_epoch"],
        best_score=meta["best_score"],
        bad_epochs=meta["bad_epochs"],
        stopped=meta["stopped"],
    )
    return Checkpoint(
        epoch=int(meta["epoch"]),
        state=state,
        model=read_weights(folder / _MODEL, expected),
        best=best,
        optimizer={"meta": meta["optimizer"], "tensors": _read_tensors(folder / _OPTIM)},
        train_config=meta["train_config"],
        model_config=meta["model_config"],
    )
