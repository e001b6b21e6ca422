"""IDGenRec's training checkpoint: resume an interrupted :func:`~.train.fit_idgenrec` where it stopped.

``run_dir/idgenrec-checkpoint/`` is written whole (:func:`seqdistill._io.atomic_dir`) after every
finished step of the schedule (an epoch of either model, or a regeneration of the IDs):

- ``model/``: the model folder :meth:`IDGenRec.save` writes (weights, tokenizer, every item's ID);
- ``optim_id.safetensors`` / ``optim_rec.safetensors``: the two AdamW states' tensors;
- ``rng.safetensors``: torch's random state;
- ``state.json``: steps done, the history, the settings and dataset fingerprint it belongs to, the
  rest of the optimizer and schedule states and numpy's generator state.

Nothing is unpickled when it is read. A checkpoint of other settings or another dataset is refused
(:class:`~seqdistill.errors.ConfigError`), never silently continued.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqdistill._io import atomic_dir, loads_json, recover_dir, write_json
from seqdistill.errors import ConfigError, DataError

__all__ = ["CHECKPOINT_DIR", "read_state", "write_state"]

CHECKPOINT_DIR = "idgenrec-checkpoint"
FORMAT = "seqdistill-idgenrec-checkpoint-1"
_STATE, _MODEL, _RNG = "state.json", "model", "rng.safetensors"
_OPTIM = {"id": "optim_id.safetensors", "rec": "optim_rec.safetensors"}
_NAMES = frozenset({_STATE, _MODEL, _RNG, *_OPTIM.values()})


def _is_checkpoint(folder: Path) -> bool:
    names = {p.name for p in folder.iterdir()}
    if _STATE not in names or not names <= _NAMES:
        return False
    try:
        return loads_json((folder / _STATE).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def write_state(
    run_dir: Path, model, done: int, history: list, optims: dict[str, tuple], rng: np.random.Generator, fingerprint: str
) -> Path:
    """Write the checkpoint after ``done`` schedule steps (replacing the previous one)."""
    from safetensors.torch import save_file

    from seqdistill.training.checkpoint import split_optimizer_state

    meta: dict[str, Any] = {
        "format": FORMAT,
        "done": done,
        "history": history,
        "config": model.config.to_dict(),
        "fingerprint": fingerprint,
        "numpy_rng": rng.bit_generator.state,
        "optim": {},
        "sched": {},
    }
    folder = Path(run_dir) / CHECKPOINT_DIR
    with atomic_dir(folder, is_ours=_is_checkpoint, what="IDGenRec checkpoint", overwrite=True) as tmp:
        model.save(tmp / _MODEL)
        for name, (opt, sched) in optims.items():
            tensors, meta["optim"][name] = split_optimizer_state(opt.state_dict())
            save_file(tensors, str(tmp / _OPTIM[name]))
            meta["sched"][name] = {k: v for k, v in sched.state_dict().items() if k != "lr_lambdas"}
        save_file({"torch": torch.get_rng_state()}, str(tmp / _RNG))
        write_json(tmp / _STATE, meta)
    return folder


def _same_data(recorded: Any, fingerprint: str) -> bool:
    from seqdistill.data.dataset import fingerprints_match

    return isinstance(recorded, str) and fingerprints_match(recorded, fingerprint)


def read_state(run_dir: Path, config, fingerprint: str) -> dict[str, Any] | None:
    """The checkpoint's state (``None`` when there is none): ``done``, ``history``, the loaded
    ``model`` and the raw optimizer / schedule / random states for :func:`restore`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .model import IDGenRec

    folder = Path(run_dir) / CHECKPOINT_DIR
    recover_dir(folder)
    if not (folder / _STATE).is_file():
        return None
    try:
        meta = loads_json((folder / _STATE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(
            f"{folder / _STATE}: unreadable ({e.__class__.__name__}); remove {folder} to start over"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(f"{folder / _STATE}: not an IDGenRec checkpoint; remove {folder} to start over")
    if meta.get("config") != config.to_dict() or not _same_data(meta.get("fingerprint"), fingerprint):
        raise ConfigError(
            f"{folder}: a checkpoint of other IDGenRec settings or another dataset; remove it to start over"
        )
    try:
        tensors = {name: load_file(str(folder / f)) for name, f in _OPTIM.items()}
        rng = load_file(str(folder / _RNG))["torch"]
    except (SafetensorError, OSError, ValueError, KeyError) as e:
        raise DataError(f"{folder}: checkpoint tensors unreadable ({str(e).splitlines()[0]})") from None
    return {**meta, "model": IDGenRec.load(folder / _MODEL), "optim_tensors": tensors, "torch_rng": rng}


def restore(state: dict[str, Any], optims: dict[str, tuple], rng: np.random.Generator) -> None:
    """Put the saved optimizer, schedule and random states into the live objects."""
    from seqdistill.training.checkpoint import join_optimizer_state

    for name, (opt, sched) in optims.items():
        opt.load_state_dict(join_optimizer_state(state["optim"][name], state["optim_tensors"][name], opt.state_dict()))
        sched.load_state_dict({**sched.state_dict(), **state["sched"][name]})
    rng.bit_generator.state = state["numpy_rng"]
    torch.set_rng_state(state["torch_rng"])
