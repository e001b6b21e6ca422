"""Pool per-position hidden states ``[B, L, d]`` into one vector per sequence.

Only REAL positions count (``mask [B, L]`` True where the input token is a real
item): padding never contributes, so a short history is not shrunk towards zero.
A row without any real position pools to the zero vector (never NaN).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["exp_recency", "masked_mean", "pool"]


def masked_mean(hidden: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``hidden`` over the positions where ``mask`` is True."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    count = m.sum(dim=1).clamp_min(1.0)
    return (hidden * m).sum(dim=1) / count


def exp_recency(hidden: Tensor, mask: Tensor, gamma: float = 0.1) -> Tensor:
    """Recency-weighted sum: weights ``softmax(gamma * t)`` over the real positions.

    ``t`` is the rank of a real position among the row's real positions (1 = oldest),
    exactly the paper's ``exp(gamma t) / sum_j exp(gamma j)`` over the real part of the
    window; padding gets weight 0.
    """
    dtype = torch.promote_types(hidden.dtype, torch.float32)
    t = torch.cumsum(mask.to(dtype), dim=1) * float(gamma)
    logits = t.masked_fill(~mask, float("-inf"))
    any_real = mask.any(dim=1, keepdim=True)
    logits = torch.where(any_real, logits, torch.zeros_like(logits))
    w = torch.softmax(logits, dim=1) * any_real
    return (hidden * w.to(hidden.dtype).unsqueeze(-1)).sum(dim=1)


def pool(hidden: Tensor, mask: Tensor, method: str = "mean", gamma: float = 0.1) -> Tensor:
    """Dispatch to :func:`masked_mean` (``"mean"``) or :func:`exp_recency` (``"exp"``)."""
    if method == "mean":
        return masked_mean(hidden, mask)
    if method in ("exp", "exponential"):
        return exp_recency(hidden, mask, gamma)
    raise ValueError(f"pool: unknown method {method!r} (expected 'mean' or 'exp')")
