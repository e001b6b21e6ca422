"""A plain PyTorch training loop over :class:`~seqdistill.data.sequences.TrainWindows`.

AdamW, gradient clipping, bf16 autocast on CUDA only, validation each epoch through
:func:`seqdistill.evaluation.evaluate`, early stopping that restores the best epoch, a checkpoint
after every epoch (a folder swapped in atomically, no pickle; see :mod:`.checkpoint`) that
``fit(resume=True)`` continues from, and a per-epoch history JSON. Randomness is re-seeded from
:func:`~seqdistill.data.sequences.epoch_seed` at the start of every epoch (the same seed that orders
the epoch's windows), so a resumed run repeats exactly what an uninterrupted one would have done.

A loss that becomes NaN or infinite stops training at once with a
:class:`~seqdistill.errors.TrainingError` naming the epoch, the batch and the term; the last
checkpoint (the previous epoch's) is left as it was.

Extra loss terms (e.g. profile distillation) plug in through ``extra_losses``; the trainer knows
nothing about what they compute. See :class:`~seqdistill.training.terms.LossTerm`.

Inside a process group (``torchrun``, or ``TrainConfig.nproc`` through
:func:`seqdistill.training.run.train_run`) the same loop trains with DistributedDataParallel: each
rank takes its rows of every global batch, losses and validation metrics are reduced over the
global batch, rank 0 alone writes; see :mod:`.distributed` for what equals a one-process run.
One process runs the code it always ran.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from seqdistill._io import clean_stale, write_json
from seqdistill.errors import ConfigError, TrainingError

from . import distributed
from .checkpoint import CHECKPOINT_DIR, TrainState, join_optimizer_state, read_checkpoint, write_checkpoint
from .config import TrainConfig
from .terms import BatchOutput, LossTerm

__all__ = ["BatchOutput", "LossTerm", "Trainer", "item_counts", "resolve_device", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU. A device this machine does not have is a
    :class:`~seqdistill.errors.ConfigError` naming it (before any work, not a torch traceback)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"TrainConfig.device: {device!r} asked for, but CUDA is not available here "
                f"(torch {torch.__version__}); use 'auto' or 'cpu'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"TrainConfig.device: {device!r} asked for, but this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            f"TrainConfig.device: {device!r} asked for, but MPS is not available here; use 'auto' or 'cpu'"
        )
    return dev


def item_counts(ds) -> np.ndarray:
    """Interactions per dense item (index 0 = padding = 0) over the training prefixes only."""
    lengths = np.diff(ds.offsets)
    pos = np.arange(len(ds.items)) - np.repeat(ds.offsets[:-1], lengths)
    train = pos < np.repeat(ds.train_end, lengths)
    return np.bincount(ds.items[train], minlength=ds.n_items + 1)


def _cpu_state(model: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _term_name(i: int, term: Any) -> str:
    return f"extra loss term {i} ({type(term).__name__})"


class Trainer:
    """Trains ``model`` on ``ds``'s training prefixes.

    ``run_dir`` (optional) receives ``checkpoint/`` (after every epoch), ``history.json`` (after
    every epoch) and the final best model in ``model/``. ``fit(resume=True)`` continues from
    ``checkpoint/`` when it exists. The model, the dataset, the device and every extra loss
    term (through its optional ``check(model, ds)``) are checked here, before any work.
    """

    def __init__(
        self,
        model,
        ds,
        config: TrainConfig | None = None,
        run_dir: str | os.PathLike | None = None,
        extra_losses: Sequence[LossTerm] = (),
    ) -> None:
        self.config = config or TrainConfig()
        if model.config.n_items != ds.n_items:
            raise ConfigError(
                f"ModelConfig.n_items: model has {model.config.n_items}, dataset {ds.name!r} has {ds.n_items}"
            )
        self.model, self.ds = model, ds
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.extra_losses = list(extra_losses)
        for term in self.extra_losses:
            check = getattr(term, "check", None)
            if callable(check):
                check(model, ds)
        self.dist = distributed.context()
        device = distributed.device_for(self.config.device, self.dist) if self.dist.active else self.config.device
        self.device = resolve_device(device)
        self.state = TrainState()
        self._ddp: distributed.DDPStep | None = None
        if self.dist.active:  # a world larger than the batch or the data, refused before any work
            distributed.check_run(self._windows().n_samples, self.config.batch_size, self.dist, model)
        self._best_state: dict[str, Tensor] | None = None
        self._saved_epoch: int | None = None  # the epoch the checkpoint on disk holds

    # the bookkeeping, readable as before
    @property
    def history(self) -> list[dict[str, Any]]:
        return self.state.history

    @property
    def best_epoch(self) -> int | None:
        return self.state.best_epoch

    @property
    def best_score(self) -> float:
        return self.state.best_score

    # ------------------------------------------------------------------- fit
    def fit(self, resume: bool = False) -> list[dict[str, Any]]:
        """Train for up to ``config.epochs`` epochs; returns the per-epoch history.

        At the end the model holds the weights of the best validation epoch (the last epoch
        when the dataset has no validation targets).
        """
        cfg = self.config
        optimizer = self._prepare()
        start = self._resume(optimizer) if resume else 0
        windows = self._windows()
        if self.dist.active:
            self._ddp = distributed.DDPStep(self.model, self.device)
        validate = cfg.validate and len(self.ds.targets("valid")[0]) > 0
        for epoch in range(start, cfg.epochs):
            if self.state.stopped:
                break
            row = self._train_epoch(epoch, windows, optimizer)
            score = self._validate(row) if validate else math.nan
            self._track_best(epoch, score, validate)
            row.update(best_epoch=self.state.best_epoch, stopped=self.state.stopped)
            self.state.history.append(row)
            self._save_checkpoint(epoch, optimizer)
            self._show(row)
        self._finish()
        return self.history

    def _windows(self):
        from seqdistill.data.sequences import TrainWindows

        cfg = self.config
        return TrainWindows(self.ds, self.model.train_length, cfg.batch_size, stride=cfg.stride, seed=cfg.seed)

    def _prepare(self) -> torch.optim.Optimizer:
        """Put the model on the device with its id map and popularity; a fresh optimizer."""
        model = self.model
        if self.run_dir is not None and self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            clean_stale(self.run_dir)
        if model.item_ids is None:
            model.set_item_ids(self.ds.item_ids)
        model.to(self.device)
        if model.config.loss == "sampled" and model.config.negatives == "popularity":
            model.set_item_popularity(item_counts(self.ds))
        return torch.optim.AdamW(model.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)

    # ----------------------------------------------------------------- epoch
    def _train_epoch(self, epoch: int, windows, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """One pass over the seeded window order of ``epoch``; the history row's training part."""
        from seqdistill.data.sequences import epoch_seed

        seed_everything(distributed.rank_seed(epoch_seed(self.config.seed, epoch), self.dist.rank))
        self.model.train()
        t0, n_samples, sums, n_batches = time.perf_counter(), 0, {}, 0
        batches = self._progress(windows.epoch(epoch), len(windows), epoch)
        for b, (users, win) in enumerate(batches):
            n_samples += len(users)  # the global batch
            if self._ddp is not None:
                users, win = distributed.shard(users, win, self.dist)
            logs = self._train_step(epoch, b, len(windows), users, win, optimizer)
            n_batches += 1
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
            if self._shows:
                rate = n_samples / max(time.perf_counter() - t0, 1e-9)
                batches.set_postfix(loss=f"{logs['loss']:.4f}", samples_s=f"{rate:.0f}")
        seconds = time.perf_counter() - t0
        row: dict[str, Any] = {"epoch": epoch, **{k: v / max(n_batches, 1) for k, v in sums.items()}}
        row.update(seconds=seconds, samples_per_s=n_samples / max(seconds, 1e-9), n_samples=n_samples)
        return row

    def _progress(self, batches: Iterable, total: int, epoch: int):
        if not self._shows:
            return batches
        from tqdm.auto import tqdm

        return tqdm(batches, total=total, desc=f"epoch {epoch}", unit="batch", leave=False)

    def _train_step(
        self,
        epoch: int,
        batch: int,
        n_batches: int,
        users: np.ndarray,
        win: np.ndarray,
        optimizer: torch.optim.Optimizer,
    ) -> dict[str, float]:
        """Forward, the finiteness check, backward, clip, step. Returns the batch's log values."""
        cfg = self.config
        w = torch.from_numpy(win).to(self.device, non_blocking=True)
        use_amp = cfg.amp and self.device.type == "cuda"
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=use_amp):
            total, main, logs, stages = self._batch_losses(epoch, users, w)
        total_v, main_v = total.item(), main.item()
        finite = math.isfinite(total_v) and math.isfinite(main_v)
        if finite and len(stages) > 2:  # an earlier term's total, replaced by a later one
            finite = bool(torch.isfinite(torch.stack([t.detach().float() for _, t in stages])).all())
        if not finite:
            raise self._non_finite(epoch, batch, n_batches, stages)
        optimizer.zero_grad(set_to_none=True)
        if self._ddp is None:
            total.backward()
        else:  # DDP averages over the ranks; each rank's part is of the global mean
            (total * self.dist.world_size).backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        optimizer.step()
        return {"loss": total_v, "main_loss": main_v, **logs}

    def _batch_losses(
        self, epoch: int, users: np.ndarray, w: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, float], list[tuple[str, Tensor]]]:
        """The model's loss, then each extra term in turn. Returns ``(total, main, logs,
        stages)``; ``stages`` names every loss computed, in order, for the finiteness check."""
        if self._ddp is None:
            main, model_out = self.model.training_loss(w)
        else:
            main, model_out = distributed.global_mean_loss(self._ddp, w)
        total, logs, stages = main, {}, [("the model's loss", main)]
        if not self.extra_losses:
            return total, main, logs, stages
        ddp = {} if self._ddp is None else {"batch_sum": self._ddp.batch_sum}
        out = BatchOutput.of(
            model_out,
            users=torch.from_numpy(users).to(self.device),
            windows=w,
            main_loss=main,
            loss=main,
            epoch=epoch,
            model=self.model,
            **ddp,
        )
        for i, term in enumerate(self.extra_losses):
            new_total, term_logs = term(replace(out, loss=total))
            if new_total is not None:
                total = new_total
                stages.append((_term_name(i, term), new_total))
            for k, v in term_logs.items():
                logs[k] = float(v.detach().item() if isinstance(v, Tensor) else v)
        return total, main, logs, stages

    def _non_finite(self, epoch: int, batch: int, n_batches: int, stages: list[tuple[str, Tensor]]) -> TrainingError:
        """The error for a NaN/inf loss: which loss first went non-finite, and where to resume."""
        name, value = next(((n, t) for n, t in stages if not torch.isfinite(t.detach()).all()), stages[-1])
        if self.run_dir is None:
            resume = "no checkpoint (no run_dir)"
        elif self._saved_epoch is None:
            resume = "no checkpoint yet (a resumed run starts afresh)"
        else:
            resume = f"resume from {self.run_dir / CHECKPOINT_DIR} (end of epoch {self._saved_epoch})"
        return TrainingError(
            f"non-finite loss at epoch {epoch}, batch {batch} of {n_batches}: {name} is "
            f"{float(value.detach().float())}; training stopped, nothing of this epoch was saved; {resume}"
        )

    # ------------------------------------------------------- validation / stopping
    def _validate(self, row: dict[str, Any]) -> float:
        """Validation metrics into ``row``; returns the score early stopping watches."""
        from seqdistill.evaluation import evaluate

        cfg = self.config
        options = dict(ks=cfg.valid_ks, batch_size=cfg.eval_batch_size, filter_seen=cfg.valid_filter_seen)
        if self._ddp is None:
            means = evaluate(self.model, self.ds, "valid", **options).means
        else:
            means = distributed.evaluate_means(self.model, self.ds, "valid", self.dist, **options)
        row.update({f"valid_{k}": v for k, v in means.items()})
        return means[cfg.valid_metric]

    def _track_best(self, epoch: int, score: float, validated: bool) -> None:
        """Keep the best epoch's weights; stop after ``patience`` epochs without improvement
        (never before ``min_epochs``). Without validation the last epoch is the best."""
        st, cfg = self.state, self.config
        if not validated or st.best_epoch is None or score > st.best_score:
            st.best_score, st.best_epoch, st.bad_epochs = score, epoch, 0
            self._best_state = _cpu_state(self.model)
            return
        st.bad_epochs += 1
        if cfg.patience is not None and st.bad_epochs >= cfg.patience and epoch + 1 >= cfg.min_epochs:
            st.stopped = True

    # -------------------------------------------------------------- checkpoints
    def _save_checkpoint(self, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        if self.run_dir is None:
            return
        if self.dist.is_main:  # under DDP every rank holds the same weights and state
            write_checkpoint(
                self.run_dir, epoch, self.state, self.model, self._best_state, optimizer, self.config.to_dict()
            )
            write_json(self.run_dir / "history.json", self.history)
        self._saved_epoch = epoch

    def _resume(self, optimizer: torch.optim.Optimizer) -> int:
        """Restore everything from the checkpoint; returns the next epoch to run (0 if none)."""
        if self.run_dir is None:
            raise ConfigError("Trainer.fit(resume=True) needs a run_dir")
        run_dir = self.run_dir
        ck = distributed.main_first(lambda: read_checkpoint(run_dir, self.model), self.dist)
        if ck is None:
            return 0
        self.model.load_state_dict(ck.model)
        optimizer.load_state_dict(
            join_optimizer_state(ck.optimizer["meta"], ck.optimizer["tensors"], optimizer.state_dict())
        )
        self.state, self._best_state, self._saved_epoch = ck.state, ck.best, ck.epoch
        return ck.epoch + 1

    @property
    def _shows(self) -> bool:
        """Progress bars and per-epoch lines: asked for, and this is rank 0."""
        return self.config.progress and self.dist.is_main

    def _show(self, row: dict[str, Any]) -> None:
        if self._shows:
            shown = {k: round(v, 4) for k, v in row.items() if isinstance(v, float)}
            print(f"epoch {row['epoch']}: {shown}", flush=True)

    def _finish(self) -> None:
        """Load the best epoch's weights; write the final history and ``run_dir/model/``."""
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)
        if self.run_dir is not None and self.dist.is_main:
            write_json(self.run_dir / "history.json", self.history)
            self.model.save(self.run_dir / "model", overwrite=True)
        self._ddp = None
        distributed.barrier(self.dist)  # the model is written before any rank returns
