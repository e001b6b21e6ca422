"""Training one model on several processes: PyTorch's DistributedDataParallel (DDP), gloo on the
CPU, NCCL on GPUs, launched by ``torchrun`` or by :func:`launch` (``TrainConfig.nproc``).

The :class:`~seqdistill.training.Trainer` switches to DDP by itself inside a process group
(:func:`context`); one process runs exactly the code it always ran. What a run on W processes
computes, and why it equals a one-process run with the same ``batch_size`` and seed:

- **Batches.** ``batch_size`` is the *global* batch. Every rank draws the same seeded window
  order (``TrainWindows``), so every rank knows the whole global batch; rank ``r`` trains its rows
  ``[r·n // W, (r+1)·n // W)`` (:func:`shard`). A short last batch is split the same way; a rank
  may get no row at all, and still takes part in every collective.
- **The loss.** The models' losses are means over positions (SASRec: the real next-item
  positions of the batch, BERT4Rec: the masked positions), and a rank's share of them varies. The
  per-rank mean is turned back into the global mean exactly: ``Σ_r mean_r · n_r / Σ_r n_r``
  (:func:`global_mean_loss`), with :class:`BatchSum` making each all-reduced sum carry the global
  value on every rank and only that rank's gradient; the trainer back-propagates ``W · loss`` and
  DDP averages over the W ranks, so the gradient is the global batch's.
- **Distillation.** β = L_model / L_distill, L_distill and the profiled share are computed over
  the global batch (the term sums through ``BatchOutput.batch_sum``), so the term means what it
  means in one process; every rank sees the same β and the same decision to skip a batch
  without profiles.
- **Randomness.** Rank 0 draws from the epoch's seed as one process does; rank ``r`` from
  :func:`rank_seed`. Dropout masks, BERT4Rec's masked positions and sampled negatives are drawn
  per rank, so with them a run on W ranks is a different (equally distributed) draw from a
  one-process run; without them (``dropout = 0``, BERT4Rec ``mask_last_prob = 1``, a full or
  chunked loss) the runs agree to float32 rounding (``tests/test_ddp.py``).
- **Validation.** The validation rows are split into contiguous ranges; each rank ranks its own
  and the per-row metrics are summed into one full-length array on every rank (a row's value plus
  zeros: exact), so the means — and early stopping — are bit for bit those of one process and
  identical on every rank.
- **Checkpoints.** Rank 0 writes them (``seqdistill._io``); every rank reads them. The weights
  are the plain model's, so a run resumes on any number of processes (2 → 1 after a kill -9 is
  tested).
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from seqdistill import _io
from seqdistill.errors import ConfigError, SeqdistillError

from .config import BACKENDS

__all__ = [
    "BACKENDS",
    "BatchSum",
    "DistContext",
    "context",
    "evaluate_means",
    "global_mean_loss",
    "init_from_env",
    "launch",
    "rank_seed",
    "shard",
]

_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its ``rank`` among ``world_size`` processes (one process: 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """True when the run is split over more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0


def context() -> DistContext:
    """This process's place in the default process group (one process when there is none)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return DistContext()
    rank = dist.get_rank()
    return DistContext(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", rank)))


def pick_backend(backend: str, device: str) -> str:
    """``"auto"``: NCCL when the run trains on CUDA, else gloo. NCCL without CUDA, or for a CPU
    run, is a ConfigError."""
    if backend not in BACKENDS:
        raise ConfigError(f"TrainConfig.backend: expected one of {list(BACKENDS)}, got {backend!r}")
    cuda = torch.cuda.is_available() and device != "cpu" and device != "mps"
    if backend == "auto":
        return "nccl" if cuda else "gloo"
    if backend == "nccl" and not cuda:
        raise ConfigError(
            f"TrainConfig.backend: 'nccl' needs CUDA devices (device {device!r}, CUDA available: "
            f"{torch.cuda.is_available()}); use 'gloo' or 'auto'"
        )
    return backend


def _env_int(name: str) -> int | None:
    text = os.environ.get(name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"environment variable {name}={text!r}: expected an integer (set by torchrun)") from None


def init_from_env(backend: str = "auto", device: str = "auto") -> DistContext:
    """Join the process group ``torchrun`` describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``MASTER_ADDR``, ``MASTER_PORT``). Nothing to do when already joined or when the environment
    names no group (``WORLD_SIZE`` unset or 1): then this is one process."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return context()
    world, rank = _env_int("WORLD_SIZE"), _env_int("RANK")
    if world is None or world <= 1:
        return DistContext()
    if rank is None or not 0 <= rank < world:
        raise ConfigError(f"environment: RANK={os.environ.get('RANK')!r} with WORLD_SIZE={world}")
    name = pick_backend(backend, device)
    if "TORCHELASTIC_RUN_ID" in os.environ:
        # A rank torchrun started dies with its agent: after a kill -9 of torchrun the ranks
        # would otherwise train on (their peers are alive) and write into the run folder while
        # a rerun resumes it.
        die_with_parent(os.getppid())
    if name == "nccl":
        torch.cuda.set_device(_env_int("LOCAL_RANK") or 0)
    dist.init_process_group(name, init_method="env://", rank=rank, world_size=world)
    return context()


def device_for(device: str, ctx: DistContext) -> str:
    """The device of one rank: CUDA device ``LOCAL_RANK`` when the run trains on CUDA (``"auto"``
    or ``"cuda"``), else what was asked. One rank per GPU: ``"cuda:N"`` is refused under DDP."""
    if device.startswith("cuda:"):
        raise ConfigError(
            f"TrainConfig.device: {device!r} under {ctx.world_size} processes; each process takes "
            "CUDA device LOCAL_RANK: use 'cuda' or 'auto'"
        )
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        return f"cuda:{ctx.local_rank}"
    return "cpu" if device == "auto" else device


def rank_seed(seed: int, rank: int) -> int:
    """The seed rank ``rank`` draws from in an epoch whose one-process seed is ``seed`` (rank 0:
    ``seed`` itself, so a one-process run is unchanged)."""
    return seed if rank == 0 else (seed ^ ((rank * 0x9E3779B97F4A7C15) & _MASK64)) & _MASK64


def shard_bounds(n: int, ctx: DistContext) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of ``n`` that rank ``ctx.rank`` takes (contiguous, sizes differ by at most 1)."""
    return ctx.rank * n // ctx.world_size, (ctx.rank + 1) * n // ctx.world_size


def shard(users: np.ndarray, windows: np.ndarray, ctx: DistContext) -> tuple[np.ndarray, np.ndarray]:
    """This rank's rows of one global batch."""
    lo, hi = shard_bounds(len(users), ctx)
    return users[lo:hi], windows[lo:hi]


def check_run(n_windows: int, batch_size: int, ctx: DistContext, model) -> None:
    """Refuse, before any work, a world larger than the global batch or than the training data,
    and a model whose loss cannot be reduced over the global batch."""
    _positions_counter(model)
    if batch_size < ctx.world_size:
        raise ConfigError(
            f"TrainConfig.batch_size: {batch_size} is the global batch, smaller than the "
            f"{ctx.world_size} processes; give every process at least one row"
        )
    if n_windows < ctx.world_size:
        raise ConfigError(
            f"training data: {n_windows} training window(s) for {ctx.world_size} processes; train on fewer processes"
        )


# ------------------------------------------------------------------------------ the loss
class BatchSum:
    """Sum of a per-rank quantity over the global batch.

    The result's value is the global sum (the same on every rank, all-reduced); its gradient is
    this rank's own (``total + (x - x.detach())``), so that DDP's average of ``W · loss`` over
    the ranks is the gradient of the global loss. In one process the trainer passes no
    BatchSum and terms sum as they always did."""

    def __call__(self, x: Tensor) -> Tensor:
        total = x.detach().clone()
        torch.distributed.all_reduce(total)
        return total + (x - x.detach()) if x.requires_grad else total


def _positions_counter(model) -> Callable[[Tensor, Any], int]:
    """How many positions the model's loss is a mean over, for one batch (a model may define
    ``loss_positions(windows, out)``; SASRec and BERT4Rec are known here)."""
    own = getattr(model, "loss_positions", None)
    if callable(own):
        return lambda w, out: int(own(w, out))
    from seqdistill.models.bert4rec import BERT4Rec
    from seqdistill.models.sasrec import SASRec

    if isinstance(model, SASRec):
        return lambda w, out: int(((w[:, :-1] != 0) & (w[:, 1:] != 0)).sum())
    if isinstance(model, BERT4Rec):
        return lambda w, out: int((out.inputs == model.mask_token).sum())
    raise ConfigError(
        f"DDP training: model kind {model.config.kind!r} does not say over how many positions its "
        "loss is a mean (define loss_positions(windows, out)); train it on one process"
    )


class _TrainingLoss(nn.Module):
    """The model's ``training_loss`` as a ``forward``, which is what DDP wraps and hooks."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, windows: Tensor):
        return self.model.training_loss(windows)


class DDPStep:
    """The DDP-wrapped training loss of one model, built once per ``fit``."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        from torch.nn.parallel import DistributedDataParallel

        self.model = model
        self.count = _positions_counter(model)
        ids = [device.index if device.index is not None else 0] if device.type == "cuda" else None
        self.ddp = DistributedDataParallel(_TrainingLoss(model), device_ids=ids)
        self.batch_sum = BatchSum()


def global_mean_loss(step: DDPStep, windows: Tensor) -> tuple[Tensor, Any]:
    """The model's loss over the global batch (value: the global mean on every rank; gradient:
    this rank's part of it) and this rank's model output."""
    main, out = step.ddp(windows)
    n = float(step.count(windows, out))
    total_n = step.batch_sum(torch.tensor(n, dtype=torch.float32, device=main.device))
    return step.batch_sum(main.float() * n) / total_n.clamp_min(1.0), out


# ------------------------------------------------------------------------------ evaluation
class _TargetRows:
    """``ds`` as :func:`~seqdistill.evaluation.evaluate` reads it, with the ``part`` targets cut
    to rows ``[lo, hi)``."""

    def __init__(self, ds, part: str, lo: int, hi: int) -> None:
        self._ds, self._part, self._lo, self._hi = ds, part, lo, hi

    def targets(self, part: str):
        users, positions = self._ds.targets(part)
        if part != self._part:
            return users, positions
        return users[self._lo : self._hi], positions[self._lo : self._hi]

    def __getattr__(self, name: str):
        return getattr(self._ds, name)


def _comm_device() -> torch.device:
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def evaluate_means(model, ds, part: str, ctx: DistContext, **kwargs: Any) -> dict[str, float]:
    """:func:`~seqdistill.evaluation.evaluate`'s means over every ``part`` row, each rank ranking
    its own contiguous range; the per-row values are summed into full arrays (exact), so the
    means are those of one process, on every rank. Fewer rows than ranks: every rank ranks all."""
    from seqdistill.evaluation import _means, evaluate

    n = len(ds.targets(part)[0])
    lo, hi = shard_bounds(n, ctx) if n >= ctx.world_size else (0, n)
    res = evaluate(model, _TargetRows(ds, part, lo, hi), part, **kwargs)
    if n < ctx.world_size:
        return res.means
    keys = sorted(res.per_row)
    buf = torch.zeros((len(keys), n), dtype=torch.float64)
    for i, key in enumerate(keys):
        buf[i, lo:hi] = torch.from_numpy(np.asarray(res.per_row[key], dtype=np.float64))
    buf = buf.to(_comm_device())
    torch.distributed.all_reduce(buf)
    full = buf.cpu().numpy()
    per_row = {key: full[i].astype(np.asarray(res.per_row[key]).dtype) for i, key in enumerate(keys)}
    return _means(per_row, n)


# ------------------------------------------------------------------------------ coordination
def barrier(ctx: DistContext) -> None:
    """Wait for every rank (nothing to wait for in one process)."""
    if ctx.active:
        torch.distributed.barrier()


def main_first(fn: Callable[[], Any], ctx: DistContext) -> Any:
    """``fn()`` on rank 0, then on the other ranks (e.g. reading a checkpoint that rank 0 may
    repair first); in one process simply ``fn()``."""
    if not ctx.active:
        return fn()
    result = fn() if ctx.is_main else None
    barrier(ctx)
    return result if ctx.is_main else fn()


def main_decides(fn: Callable[[], Any], ctx: DistContext) -> tuple[Any, bool]:
    """``fn()`` on rank 0 only, once every rank got here (e.g. rank 0 writes into a folder the
    others have just checked); every rank learns whether it returned something other than None.
    Returns ``(rank 0's value or None, flag)``."""
    barrier(ctx)
    value = fn() if ctx.is_main else None
    if not ctx.active:
        return value, value is not None
    flag = torch.tensor([int(value is not None)], device=_comm_device())
    torch.distributed.broadcast(flag, 0)
    return value, bool(flag.item())


# ------------------------------------------------------------------------------ launching
def die_with_parent(parent: int) -> None:
    """Make this (spawned) process die when its parent dies, even by SIGKILL (Linux's
    ``PR_SET_PDEATHSIG``), so that no orphan trains on and writes into a folder a rerun resumes.
    Exits at once when the parent is already gone; elsewhere than Linux a no-op."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def _entry(
    index: int, fn: Callable[..., Any], args: tuple, nproc: int, folder: str, backend: str, threads: int, parent: int
) -> None:
    """One spawned process: join the group (a file store in ``folder``), run ``fn(*args)``; a
    SeqdistillError is written to ``folder/error-<rank>.json`` for :func:`launch` to raise."""
    die_with_parent(parent)
    os.environ.update(RANK=str(index), WORLD_SIZE=str(nproc), LOCAL_RANK=str(index))
    torch.set_num_threads(threads)
    if backend == "nccl":
        torch.cuda.set_device(index)
    dist = torch.distributed
    dist.init_process_group(backend, init_method=f"file://{folder}/store", rank=index, world_size=nproc)
    try:
        fn(*args)
    except SeqdistillError as e:
        _io.write_json(Path(folder) / f"error-{index}.json", {"type": type(e).__name__, "message": str(e)})
        raise SystemExit(2) from None
    finally:
        dist.destroy_process_group()


def _raise_child_error(folder: Path, failure: BaseException) -> None:
    """Raise the SeqdistillError a spawned rank reported (the lowest rank's), else a TrainingError."""
    from seqdistill import errors

    for path in sorted(folder.glob("error-*.json"), key=lambda p: int(p.stem.split("-")[1])):
        d = _io.loads_json(path.read_text(encoding="utf-8"))
        cls = getattr(errors, d.get("type", ""), None)
        cls = cls if isinstance(cls, type) and issubclass(cls, SeqdistillError) else errors.TrainingError
        raise cls(d["message"])
    raise errors.TrainingError(f"a training process failed: {' '.join(str(failure).split())[:300]}") from None


def launch(
    fn: Callable[..., Any],
    nproc: int,
    *args: Any,
    backend: str = "auto",
    device: str = "auto",
    threads: int | None = None,
) -> None:
    """Run ``fn(*args)`` in ``nproc`` new processes joined in one process group (the Python-API
    counterpart of ``torchrun``). ``fn`` must be importable (a module-level function); its
    return value is dropped — it writes its results (e.g. a run folder). Each process gets
    ``threads`` CPU threads (default: ``torch.get_num_threads() // nproc``, at least 1). A SeqdistillError in any
    process is raised here with its message; any other failure is a TrainingError."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ConfigError(f"TrainConfig.nproc: expected an integer >= 1, got {nproc!r}")
    name = pick_backend(backend, device)
    if name == "nccl" and nproc > torch.cuda.device_count():
        raise ConfigError(f"TrainConfig.nproc: {nproc} processes on NCCL, but {torch.cuda.device_count()} GPU(s)")
    threads = max(1, torch.get_num_threads() // nproc) if threads is None else threads
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="seqdistill-ddp-") as tmp:
        try:
            mp.start_processes(
                _entry,
                args=(fn, args, nproc, tmp, name, threads, os.getpid()),
                nprocs=nproc,
                join=True,
                start_method="spawn",
            )
        except mp.ProcessRaisedException as e:
            _raise_child_error(Path(tmp), e)
        except mp.ProcessExitedException as e:
            _raise_child_error(Path(tmp), e)
