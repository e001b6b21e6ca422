"""The distillation term (paper §2): pull a pooled hidden state of block k toward a frozen
profile vector, for the first ``epochs`` epochs, then step aside.

Plugged into :class:`~seqdistill.training.Trainer` through ``extra_losses``; the trainer knows
nothing about profiles. During the distillation stage the total loss is

    α · β · L_distill + (1 − α) · L_model,   β = detach(L_model / L_distill) if dynamic else 1,

with α scaled by the share of the batch's users that have a profile (``coverage="share"``).

Afterwards (and always with ``train=False``) the term only *measures* L_distill under
``no_grad`` so the history can show how far the representation drifts (the paper's Figure 3).

Avoids the released code's traps: the target is frozen (no trainable projection on the teacher
side), pooling counts real positions only, and users without a profile are masked out of the
term instead of being given their own hidden state as a target.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from seqdistill._checks import at_least, bad, check_fields, in_range, one_of
from seqdistill._config import DictConfig
from seqdistill.errors import ConfigError, DataError
from seqdistill.models.pooling import pool

from .terms import BatchOutput

if TYPE_CHECKING:  # pragma: no cover - typing only
    from seqdistill.models import ModelConfig

__all__ = ["DistillConfig", "DistillationTerm", "check_block", "distill_loss", "standardize_targets"]


@dataclass
class DistillConfig(DictConfig):
    """Settings of the distillation term.

    ``alpha``: weight of the term; ``dynamic_beta``: per-batch rescaling β = L_model / L_distill
    (detached); ``block``: which transformer block to pool (Python index, -1 = last);
    ``pooling``: ``"mean"`` or ``"exp"`` (recency weights softmax(γ·t) over real positions);
    ``loss``: ``"mse"`` or ``"cosine"`` (1 − cos); ``epochs``: length of the distillation stage
    (``None``: the whole run); ``standardize``: z-score each target dimension over the users with
    a profile before training (a fixed affine map fitted once, so the target stays frozen). UMAP
    and PCA outputs have an arbitrary scale — PCA of unit-norm sentence embeddings is ~0.1 per
    dimension — and pulling a hidden state toward such small vectors shrinks it instead of
    teaching it; standardised targets live on the scale of layer-normalised hidden states.
    ``coverage``: how a batch in which only some users have a profile is weighted. ``"share"``
    (default) uses α·s with s the share of the batch's rows that have a profile: the distillation
    part then equals the mean over all rows of a per-user term that is zero for users without a
    profile, so a lone profiled user does not receive the whole batch's distillation budget, and
    the cross-entropy weight is 1 − α·s for every row of the batch; ``"batch"`` applies α to the whole batch whenever any row has a
    profile (the paper's formula, which assumes every user has one). With full coverage both are
    the same.

    Every field is checked on construction (types, ranges, NaN refused); whether ``block`` exists
    in the model is checked against its ModelConfig by :func:`check_block`, which the trainer runs
    (through :meth:`DistillationTerm.check`) before training.
    """

    alpha: float = 0.4
    dynamic_beta: bool = True
    block: int = -1
    pooling: str = "mean"
    gamma: float = 0.1
    loss: str = "mse"
    epochs: int | None = None
    standardize: bool = True
    coverage: str = "share"

    def __post_init__(self) -> None:
        check_fields(self)  # types; NaN / inf refused (gamma = nan among them)
        in_range(self, "alpha", 0.0, 1.0)
        one_of(self, "pooling", ("mean", "exp"))
        one_of(self, "loss", ("mse", "cosine"))
        one_of(self, "coverage", ("share", "batch"))
        at_least(self, "epochs", 0)


def check_block(distill: DistillConfig, model: ModelConfig) -> None:
    """``distill.block`` must name one of the model's blocks (``-n_blocks .. n_blocks - 1``)."""
    n = model.n_blocks
    if not -n <= distill.block < n:
        raise bad(distill, "block", f"a block of ModelConfig.n_blocks={n} (an index in {-n}..{n - 1})")


def _same(x: Tensor) -> Tensor:
    return x


def distill_loss(
    pooled: Tensor, target: Tensor, weight: Tensor, kind: str = "mse", batch_sum: Callable[[Tensor], Tensor] = _same
) -> Tensor:
    """Mean over the rows with ``weight`` 1 of the per-row MSE (mean over dims) or 1 − cosine;
    numerator and denominator summed through ``batch_sum`` (over the global batch under DDP)."""
    if kind == "mse":
        per_row = ((pooled - target) ** 2).mean(dim=-1)
    else:
        per_row = 1.0 - torch.nn.functional.cosine_similarity(pooled, target, dim=-1)
    return batch_sum((per_row * weight).sum()) / batch_sum(weight.sum()).clamp_min(1.0)


def standardize_targets(targets: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-dimension z-scores, with mean and std taken over the rows where ``mask`` is True."""
    rows = targets[mask].astype(np.float64)
    mean, std = rows.mean(axis=0), rows.std(axis=0)
    return ((targets - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


class DistillationTerm:
    """A :class:`~seqdistill.training.LossTerm` distilling frozen per-user targets.

    ``targets``: float32 ``[n_users, d]`` aligned to dense user ids; ``mask``: bool ``[n_users]``,
    True where the user has a profile. ``train=False`` makes a measuring-only term (for the
    vanilla run's curve).
    """

    def __init__(
        self, targets: np.ndarray, mask: np.ndarray | None, config: DistillConfig | None = None, train: bool = True
    ) -> None:
        targets = np.asarray(targets, dtype=np.float32)
        if targets.ndim != 2:
            raise DataError(f"DistillationTerm: targets must be [n_users, d], got shape {targets.shape}")
        mask = np.ones(len(targets), bool) if mask is None else np.asarray(mask, bool)
        if mask.shape != (len(targets),):
            raise DataError(f"DistillationTerm: mask must have shape ({len(targets)},), got {mask.shape}")
        bad_rows = np.flatnonzero(mask & ~np.isfinite(targets).all(axis=1))
        if len(bad_rows):
            r = int(bad_rows[0])
            c = int(np.flatnonzero(~np.isfinite(targets[r]))[0])
            raise DataError(
                f"DistillationTerm: target row {r} (a user with a profile), column {c} is "
                f"{targets[r, c]}; {len(bad_rows)} profiled row(s) are not finite"
            )
        self.config = config or DistillConfig()
        self.train = train
        if self.config.standardize and mask.any():
            targets = standardize_targets(targets, mask)
        self._targets = torch.from_numpy(np.where(mask[:, None], targets, 0.0).astype(np.float32))
        self._mask = torch.from_numpy(mask.astype(np.float32))

    def check(self, model, ds) -> None:
        """Before training: the block exists in ``model``, the target size is its hidden size and
        there is one target row per user of ``ds``."""
        check_block(self.config, model.config)
        if self._targets.shape[1] != model.config.hidden:
            raise ConfigError(
                f"DistillationTerm: profile target size {self._targets.shape[1]} != "
                f"ModelConfig.hidden {model.config.hidden}"
            )
        if self._targets.shape[0] != ds.n_users:
            raise DataError(
                f"DistillationTerm: {self._targets.shape[0]} target rows, dataset {ds.name!r} has {ds.n_users} users"
            )

    def active(self, epoch: int) -> bool:
        """True while the term is trained on (the distillation stage)."""
        return self.train and (self.config.epochs is None or epoch < self.config.epochs)

    def __call__(self, out: BatchOutput) -> tuple[Tensor | None, dict[str, float]]:
        cfg = self.config
        hidden = out.hidden_states[cfg.block]
        if hidden.shape[-1] != self._targets.shape[1]:
            raise ValueError(
                f"DistillationTerm: model hidden size {hidden.shape[-1]} != profile target size {self._targets.shape[1]}"
            )
        if self._targets.device != hidden.device:
            self._targets, self._mask = self._targets.to(hidden.device), self._mask.to(hidden.device)
        target, weight = self._targets[out.users], self._mask[out.users]
        active = self.active(int(out.epoch))
        with torch.set_grad_enabled(active and torch.is_grad_enabled()):
            pooled = pool(hidden.float(), out.real_mask, cfg.pooling, cfg.gamma)
            ld = distill_loss(pooled, target, weight, cfg.loss, out.batch_sum)
        logs = {"distill_loss": float(ld.detach()), "distill_active": float(active)}
        profiled = float(out.batch_sum(weight.sum()))  # over the global batch under DDP
        if not active or profiled == 0:
            return None, logs
        main = out.main_loss
        beta = (main.detach() / ld.detach().clamp_min(1e-12)) if cfg.dynamic_beta else torch.ones((), device=ld.device)
        rows = float(out.batch_sum(torch.tensor(float(weight.numel()), device=weight.device)))
        alpha = cfg.alpha * (profiled / rows if cfg.coverage == "share" else 1.0)
        logs["beta"] = float(beta)
        logs["alpha_eff"] = alpha
        return alpha * beta * ld + (1.0 - alpha) * main, logs
