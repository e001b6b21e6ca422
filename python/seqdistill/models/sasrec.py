"""SASRec: causal self-attention over the history, next-item cross-entropy at every position.

The objective follows the paper's baseline (SASRec with cross-entropy over the whole
catalogue, not the original binary loss with one negative); ``loss="chunked"`` gives the
same value without materialising batch x length x items logits, ``loss="sampled"`` a
sampled softmax with log-q correction.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from .base import ModelConfig, SequentialRecommender

__all__ = ["SASRec"]


class SASRec(SequentialRecommender):
    """Causal transformer recommender. Training windows have length ``max_len + 1``:
    inputs ``windows[:, :-1]``, targets ``windows[:, 1:]``; a position counts when both
    its input and its target are real items."""

    causal = True

    def __init__(self, config: ModelConfig) -> None:
        if config.kind != "sasrec":
            raise ValueError(f"SASRec: config.kind is {config.kind!r}, expected 'sasrec'")
        super().__init__(config)

    @property
    def train_length(self) -> int:
        """Length of the training windows this model consumes."""
        return self.config.max_len + 1

    def training_loss(self, windows: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """Next-item loss over all positions of ``windows [B, max_len + 1]``."""
        inputs, targets = windows[:, :-1], windows[:, 1:]
        final, blocks = self.encode(inputs)
        real = inputs != 0
        valid = real & (targets != 0)
        loss = self.item_loss(final[valid], targets[valid])
        return loss, {"inputs": inputs, "real_mask": real, "hidden": final, "hidden_states": blocks}
