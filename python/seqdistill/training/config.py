"""Training settings (a small dataclass that round-trips to dict/JSON), checked completely on
construction: a bad type or range is a one-line :class:`~seqdistill.errors.ConfigError` naming the
key and the value, before any work starts."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from seqdistill._checks import at_least, bad, check_fields, check_seed, one_of
from seqdistill._config import DictConfig
from seqdistill.errors import ConfigError

__all__ = ["BACKENDS", "VALID_METRICS", "TrainConfig"]

VALID_METRICS = ("ndcg", "recall", "hit_rate", "mrr")
BACKENDS = ("auto", "gloo", "nccl")  # torch.distributed backends (auto: NCCL on CUDA, else gloo)
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass
class TrainConfig(DictConfig):
    """Optimiser, schedule and bookkeeping settings of :class:`~seqdistill.training.Trainer`.

    Defaults follow the paper: AdamW (torch's default weight decay 0.01), gradient clipping at
    0.5, no learning-rate schedule. ``min_epochs``: early stopping cannot end the run before
    that many epochs (e.g. the end of a distillation stage, during which validation may dip).
    ``stride`` sets how training windows tile each user's prefix (``None``: every transition
    once; a stride of at least the prefix length keeps one window per user, its most recent
    ``max_len + 1`` items, as in Klenitskiy & Vasilev's protocol).
    ``patience=None`` disables early stopping (the best validation epoch is still restored).
    ``grad_clip`` ``None`` or 0 disables clipping. ``amp`` turns on bf16 autocast on CUDA only.
    ``device``: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``; whether this machine
    has it is checked when the trainer is built (:func:`~seqdistill.training.resolve_device`).
    ``nproc``: processes that train the run together with DistributedDataParallel when it is
    started by :func:`~seqdistill.training.run.train_run` (``seqdistill train --nproc``);
    ``batch_size`` stays the global batch. Under ``torchrun`` the launcher's world size rules
    instead. ``backend``: ``"auto"`` (NCCL on CUDA, gloo on the CPU), ``"gloo"`` or ``"nccl"``.
    Neither changes what a run computes beyond float rounding and per-process random draws
    (:mod:`~seqdistill.training.distributed`), so a run resumes on another number of processes.
    """

    epochs: int = 30
    batch_size: int = 256
    lr: float = 5e-4
    weight_decay: float = 0.01
    grad_clip: float | None = 0.5
    stride: int | None = None  # TrainWindows stride (None: length - 1)
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:1" | "mps"
    amp: bool = True
    patience: int | None = 5
    min_epochs: int = 0  # early stopping never ends a run before this many epochs
    validate: bool = True  # False: no per-epoch validation (the last epoch is kept)
    valid_metric: str = "ndcg@10"
    valid_ks: tuple[int, ...] = (10,)
    valid_filter_seen: bool = False  # remove the user's seen items when ranking for validation
    eval_batch_size: int = 1024
    progress: bool = True
    nproc: int = 1  # DDP processes started by train_run (torchrun sets its own)
    backend: str = "auto"  # "auto" | "gloo" | "nccl"

    def __post_init__(self) -> None:
        check_fields(self)
        for key in ("epochs", "batch_size", "eval_batch_size", "stride", "patience", "nproc"):
            at_least(self, key, 1)
        at_least(self, "lr", 0.0, strict=True)
        for key in ("weight_decay", "grad_clip", "min_epochs"):
            at_least(self, key, 0)
        check_seed(self)
        if self.min_epochs > self.epochs:
            raise bad(self, "min_epochs", f"at most epochs={self.epochs}")
        one_of(self, "backend", BACKENDS)
        if self.batch_size < self.nproc:
            raise bad(self, "batch_size", f"at least nproc={self.nproc} (the global batch, split over the processes)")
        if not _DEVICE.match(self.device):
            raise bad(self, "device", "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
        if not self.valid_ks or any(k < 1 for k in self.valid_ks):
            raise bad(self, "valid_ks", "a non-empty list of cut-offs >= 1")
        metric, _, k = self.valid_metric.partition("@")
        if metric not in VALID_METRICS or not k.isdigit() or int(k) < 1:
            raise ConfigError(
                f"TrainConfig.valid_metric: expected '<metric>@<k>' with metric in "
                f"{list(VALID_METRICS)} and k >= 1 (e.g. 'ndcg@10'), got {self.valid_metric!r}"
            )
        if int(k) not in self.valid_ks:
            self.valid_ks = tuple(sorted(set(self.valid_ks) | {int(k)}))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["valid_ks"] = list(self.valid_ks)
        return d
