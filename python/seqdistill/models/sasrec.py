"""SASRec: causal self-attention over the history, next-item cross-entropy at every position.

The objective follows the paper's baseline (SASRec with cross-entropy over the whole
catalogue, not the original binary loss with one negative); ``loss="chunked"`` gives the
same value without materialising batch x length x items logits, ``loss="sampled"`` a
sampled softmax with log-q correction.
"""

from __future__ import annotations

from torch import Tensor

from .base import ModelOutput, SequentialRecommender

__all__ = ["SASRec"]


class SASRec(SequentialRecommender):
    """Causal transformer recommender. Training windows have length ``max_len + 1``:
    inputs ``windows[:, :-1]``, targets ``windows[:, 1:]``; a position counts when both
    its input and its target are real items."""

    kind = "sasrec"
    causal = True

    @property
    def train_length(self) -> int:
        """Length of the training windows this model consumes."""
        return self.config.max_len + 1

    def training_loss(self, windows: Tensor) -> tuple[Tensor, ModelOutput]:
        """Next-item loss over all positions of ``windows [B, max_len + 1]``."""
        inputs, targets = windows[:, :-1], windows[:, 1:]
        final, blocks = self.encode(inputs)
        real = inputs != 0
        valid = real & (targets != 0)
        loss = self.item_loss(final[valid], targets[valid])
        return loss, ModelOutput(inputs=inputs, real_mask=real, hidden=final, hidden_states=tuple(blocks))
