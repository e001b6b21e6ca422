"""BERT4Rec: bidirectional encoder trained to recover randomly masked items.

The mask token is ``n_items + 1``. Every sequence with at least one real item gets at
least one masked position. At inference the history (``max_len - 1`` items) is followed
by the mask token and the scores at that last position rank the next item. Scores have
``n_items + 1`` columns (column 0 = ``-inf``), so neither padding nor the mask token is
ever ranked.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import ModelOutput, SequentialRecommender

__all__ = ["BERT4Rec", "mask_windows"]


def mask_windows(
    windows: Tensor, mask_prob: float, mask_token: int, mask_last_prob: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Replace each real item with ``mask_token`` with probability ``mask_prob``; in rows
    where nothing was drawn, mask one uniformly chosen real position. With probability
    ``mask_last_prob`` a row instead masks only its last position (the inference setting,
    as in the BERT4Rec paper). Returns ``(inputs, masked)``, ``masked [B, L]`` True at the
    masked positions."""
    real = windows != 0
    masked = (torch.rand(windows.shape, device=windows.device) < mask_prob) & real
    if mask_last_prob > 0:
        last_only = torch.rand(windows.shape[0], device=windows.device) < mask_last_prob
        masked[last_only] = False
        masked[:, -1] |= last_only & real[:, -1]
    need = real.any(dim=1) & ~masked.any(dim=1)
    if need.any():
        # one random real position per row: argmax of random keys over real positions
        keys = torch.rand(windows.shape, device=windows.device).masked_fill(~real, -1.0)
        pick = keys.argmax(dim=1)
        rows = need.nonzero(as_tuple=True)[0]
        masked[rows, pick[rows]] = True
    return windows.masked_fill(masked, mask_token), masked


class BERT4Rec(SequentialRecommender):
    """Bidirectional transformer recommender with a masked-item objective."""

    kind = "bert4rec"
    causal = False
    n_special = 1

    @property
    def mask_token(self) -> int:
        return self.config.n_items + 1

    @property
    def train_length(self) -> int:
        return self.config.max_len

    @property
    def input_length(self) -> int:
        return self.config.max_len - 1

    def training_loss(self, windows: Tensor) -> tuple[Tensor, ModelOutput]:
        """Masked-item loss on ``windows [B, max_len]``."""
        inputs, masked = mask_windows(windows, self.config.mask_prob, self.mask_token, self.config.mask_last_prob)
        final, blocks = self.encode(inputs)
        loss = self.item_loss(final[masked], windows[masked])
        return loss, ModelOutput(inputs=inputs, real_mask=inputs != 0, hidden=final, hidden_states=tuple(blocks))

    def with_mask_token(self, windows: Tensor) -> Tensor:
        """Append the mask token to ``max_len - 1`` history items (older items dropped)."""
        hist = windows[:, -(self.config.max_len - 1) :]
        tok = torch.full((hist.shape[0], 1), self.mask_token, dtype=hist.dtype, device=hist.device)
        return torch.cat([hist, tok], dim=1)

    def next_item_hidden(self, windows: Tensor) -> Tensor:
        """Hidden state at the appended mask position (its scores rank the next item)."""
        return self.forward(self.with_mask_token(windows))[:, -1]
