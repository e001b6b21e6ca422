"""Training settings (a small dataclass that round-trips to dict/JSON)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any
from seqdistill._config import DictConfig

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig(DictConfig):
    """Optimiser, schedule and bookkeeping settings of :class:`~seqdistill.training.Trainer`.

    Defaults follow the paper: AdamW (torch's default weight decay 0.01), gradient clipping at
    0.5, no learning-rate schedule. ``min_epochs``: early stopping cannot end the run before
    that many epochs (e.g. the end of a distillation stage, during which validation may dip).
    ``stride`` sets how training windows tile each user's prefix (``None``: every transition
    once; a stride of at least the prefix length keeps one window per user, its most recent
    ``max_len + 1`` items, as in Klenitskiy & Vasilev's protocol).
    ``patience=None`` disables early stopping (the best
    validation epoch is still restored). ``amp`` turns on bf16 autocast on CUDA only.
    """

    epochs: int = 30
    batch_size: int = 256
    lr: float = 5e-4
    weight_decay: float = 0.01
    grad_clip: float | None = 0.5
    stride: int | None = None  # TrainWindows stride (None: length - 1)
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:1" ...
    amp: bool = True
    patience: int | None = 5
    min_epochs: int = 0  # early stopping never ends a run before this many epochs
    validate: bool = True  # False: no per-epoch validation (the last epoch is kept)
    valid_metric: str = "ndcg@10"
    valid_ks: tuple[int, ...] = (10,)
    valid_filter_seen: bool = False  # remove the user's seen items when ranking for validation
    eval_batch_size: int = 1024
    progress: bool = True

    def __post_init__(self) -> None:
        self.valid_ks = tuple(int(k) for k in self.valid_ks)
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"TrainConfig: epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if self.lr <= 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        metric, _, k = self.valid_metric.partition("@")
        if metric not in ("ndcg", "recall", "hit_rate", "mrr") or not k.isdigit():
            raise ValueError(f"TrainConfig.valid_metric must look like 'ndcg@10', got {self.valid_metric!r}")
        if int(k) not in self.valid_ks:
            self.valid_ks = tuple(sorted(set(self.valid_ks) | {int(k)}))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["valid_ks"] = list(self.valid_ks)
        return d

