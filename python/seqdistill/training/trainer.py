"""A plain PyTorch training loop over :class:`~seqdistill.data.sequences.TrainWindows`.

AdamW, gradient clipping, bf16 autocast on CUDA only, validation each epoch through
:func:`seqdistill.evaluation.evaluate`, early stopping that restores the best epoch, a checkpoint
after every epoch (atomic write) that ``fit(resume=True)`` continues from, and a per-epoch
history JSON. Randomness is re-seeded from ``(seed, epoch)`` at the start of every epoch, so a
resumed run repeats exactly what an uninterrupted one would have done.

Extra loss terms (e.g. profile distillation) plug in through ``extra_losses``; the trainer knows
nothing about what they compute. See :class:`LossTerm`.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import torch
from torch import Tensor

from .config import TrainConfig

__all__ = ["Trainer", "LossTerm", "seed_everything", "resolve_device", "item_counts"]


class LossTerm(Protocol):
    """An extra training objective.

    Called once per batch with ``out``, a dict holding ``users`` and ``windows`` (LongTensors on
    the device), ``inputs`` (tokens the encoder saw), ``real_mask`` ([B, L] bool), ``hidden``
    (final [B, L, d]), ``hidden_states`` (per-block list of [B, L, d]), ``main_loss`` (the
    model's own loss), ``loss`` (the running total so far: the main loss, or what an earlier
    term returned), ``epoch`` and ``model``.

    Returns ``(total, logs)``: ``total`` is the NEW total loss to optimise (the term decides how
    to combine, e.g. ``alpha * beta * L_distill + (1 - alpha) * out["main_loss"]``), or None to
    leave the total unchanged (e.g. after the distillation epochs). ``logs`` maps names to
    floats (or 0-d tensors); their per-epoch means are recorded in the history.
    """

    def __call__(self, out: dict[str, Any]) -> tuple[Tensor | None, dict[str, float]]: ...


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def item_counts(ds) -> np.ndarray:
    """Interactions per dense item (index 0 = padding = 0) over the training prefixes only."""
    lengths = np.diff(ds.offsets)
    pos = np.arange(len(ds.items)) - np.repeat(ds.offsets[:-1], lengths)
    train = pos < np.repeat(ds.train_end, lengths)
    return np.bincount(ds.items[train], minlength=ds.n_items + 1)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_json(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def _cpu_state(model: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class Trainer:
    """Trains ``model`` on ``ds``'s training prefixes.

    ``run_dir`` (optional) receives ``checkpoint.pt`` (after every epoch), ``history.json``
    (after every epoch) and the final best model in ``model/``. ``fit(resume=True)`` continues
    from ``checkpoint.pt`` when it exists.
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
            raise ValueError(f"Trainer: model has n_items={model.config.n_items}, dataset {ds.name!r} has {ds.n_items}")
        self.model, self.ds = model, ds
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.extra_losses = list(extra_losses)
        self.device = resolve_device(self.config.device)
        self.history: list[dict[str, Any]] = []
        self.best_epoch: int | None = None
        self.best_score = -math.inf
        self._best_state: dict[str, Tensor] | None = None
        self._bad_epochs = 0
        self._stopped = False

    # ---------------------------------------------------------------- helpers
    def _epoch_seed(self, epoch: int) -> int:
        return (self.config.seed * 1_000_003 + epoch * 7919 + 17) % 2**62

    def _has_valid(self) -> bool:
        return len(self.ds.targets("valid")[0]) > 0

    def _checkpoint_path(self) -> Path | None:
        return self.run_dir / "checkpoint.pt" if self.run_dir is not None else None

    def _save_checkpoint(self, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        path = self._checkpoint_path()
        if path is None:
            return
        state = {
            "epoch": epoch,
            "model": _cpu_state(self.model),
            "optimizer": optimizer.state_dict(),
            "history": self.history,
            "best_state": self._best_state,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "bad_epochs": self._bad_epochs,
            "stopped": self._stopped,
            "train_config": self.config.to_dict(),
            "model_config": self.model.config.to_dict(),
        }
        _atomic_torch_save(state, path)
        _atomic_json(self.history, self.run_dir / "history.json")

    def _load_checkpoint(self, optimizer: torch.optim.Optimizer) -> int:
        """Restore state from the checkpoint; returns the next epoch to run (0 if none)."""
        path = self._checkpoint_path()
        if path is None:
            raise ValueError("Trainer.fit(resume=True) needs a run_dir")
        if not path.exists():
            return 0
        ck = torch.load(path, map_location="cpu", weights_only=False)
        if ck["model_config"] != self.model.config.to_dict():
            raise ValueError(f"{path}: checkpoint model config {ck['model_config']} differs from {self.model.config.to_dict()}")
        self.model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        self.history = ck["history"]
        self._best_state, self.best_score = ck["best_state"], ck["best_score"]
        self.best_epoch, self._bad_epochs, self._stopped = ck["best_epoch"], ck["bad_epochs"], ck["stopped"]
        return int(ck["epoch"]) + 1

    # ------------------------------------------------------------------- fit
    def fit(self, resume: bool = False) -> list[dict[str, Any]]:
        """Train for up to ``config.epochs`` epochs; returns the per-epoch history.

        At the end the model holds the weights of the best validation epoch (the last epoch
        when the dataset has no validation targets).
        """
        from seqdistill.data.sequences import TrainWindows
        from seqdistill.evaluation import evaluate

        cfg, model = self.config, self.model
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        if model.item_ids is None:
            model.set_item_ids(self.ds.item_ids)
        model.to(self.device)
        if model.config.loss == "sampled" and model.config.negatives == "popularity":
            model.set_item_popularity(item_counts(self.ds))
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        start = self._load_checkpoint(optimizer) if resume else 0
        windows = TrainWindows(self.ds, model.train_length, cfg.batch_size, stride=cfg.stride, seed=cfg.seed)
        use_amp = cfg.amp and self.device.type == "cuda"
        has_valid = cfg.validate and self._has_valid()

        for epoch in range(start, cfg.epochs):
            if self._stopped:
                break
            seed_everything(self._epoch_seed(epoch))
            model.train()
            t0, n_samples, sums, n_batches = time.perf_counter(), 0, {}, 0
            batches = windows.epoch(epoch)
            if cfg.progress:
                from tqdm.auto import tqdm

                batches = tqdm(batches, total=len(windows), desc=f"epoch {epoch}", unit="batch", leave=False)
            for users, win in batches:
                w = torch.from_numpy(win).to(self.device, non_blocking=True)
                with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=use_amp):
                    main, out = model.training_loss(w)
                    total = main
                    logs: dict[str, float] = {}
                    if self.extra_losses:
                        out.update(users=torch.from_numpy(users).to(self.device), windows=w, main_loss=main, epoch=epoch, model=model)
                        for term in self.extra_losses:
                            out["loss"] = total
                            new_total, term_logs = term(out)
                            if new_total is not None:
                                total = new_total
                            for k, v in term_logs.items():
                                logs[k] = float(v.detach().item() if isinstance(v, Tensor) else v)
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                n_batches += 1
                n_samples += len(users)
                for k, v in {"loss": total.item(), "main_loss": main.item(), **logs}.items():
                    sums[k] = sums.get(k, 0.0) + v
                if cfg.progress:
                    rate = n_samples / max(time.perf_counter() - t0, 1e-9)
                    batches.set_postfix(loss=f"{total.item():.4f}", samples_s=f"{rate:.0f}")
            seconds = time.perf_counter() - t0
            row: dict[str, Any] = {"epoch": epoch, **{k: v / max(n_batches, 1) for k, v in sums.items()}}
            row.update(seconds=seconds, samples_per_s=n_samples / max(seconds, 1e-9), n_samples=n_samples)
            if has_valid:
                res = evaluate(model, self.ds, "valid", ks=cfg.valid_ks, batch_size=cfg.eval_batch_size,
                               filter_seen=cfg.valid_filter_seen)
                row.update({f"valid_{k}": v for k, v in res.means.items()})
                score = res.means[cfg.valid_metric]
            else:
                score = math.nan  # no validation targets: the last epoch is kept
            if not has_valid or self.best_epoch is None or score > self.best_score:
                self.best_score, self.best_epoch, self._bad_epochs = score, epoch, 0
                self._best_state = _cpu_state(model)
            else:
                self._bad_epochs += 1
                if has_valid and cfg.patience is not None and self._bad_epochs >= cfg.patience and epoch + 1 >= cfg.min_epochs:
                    self._stopped = True
            row.update(best_epoch=self.best_epoch, stopped=self._stopped)
            self.history.append(row)
            self._save_checkpoint(epoch, optimizer)
            if cfg.progress:
                shown = {k: round(v, 4) for k, v in row.items() if isinstance(v, float)}
                print(f"epoch {epoch}: {shown}", flush=True)

        if self._best_state is not None:
            model.load_state_dict(self._best_state)
        if self.run_dir is not None:
            _atomic_json(self.history, self.run_dir / "history.json")
            model.save(self.run_dir / "model")
        return self.history
