"""The loss-term protocol: what the trainer hands an extra loss term, and what it gets back.

A term (e.g. :class:`~seqdistill.training.distill.DistillationTerm`) is called once per batch with
a :class:`BatchOutput` and returns ``(total, logs)``. The trainer knows nothing about what a term
computes; a term knows the batch only through this one frozen record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Protocol

from torch import Tensor

from seqdistill.models.base import ModelOutput

__all__ = ["BatchOutput", "LossTerm"]


def _own_batch(x: Tensor) -> Tensor:
    """``BatchOutput.batch_sum`` in one process: the batch is the whole batch."""
    return x


@dataclass(frozen=True)
class BatchOutput(ModelOutput):
    """One training batch as a loss term sees it.

    From the model (:class:`~seqdistill.models.ModelOutput`): ``inputs`` (tokens the encoder saw),
    ``real_mask [B, L]`` (True where ``inputs`` is not padding), ``hidden [B, L, d]`` (final hidden
    states), ``hidden_states`` (each block's output, ``n_blocks`` tensors ``[B, L, d]``).
    From the trainer: ``users [B]`` and ``windows [B, train_length]`` (LongTensors on the device),
    ``main_loss`` (the model's own loss), ``loss`` (the running total: the main loss, or what the
    previous term returned), ``epoch`` (0-based) and ``model``.
    ``batch_sum``: the sum of a per-batch quantity over the global batch: the identity in one
    process; under DDP an all-reduce whose value is the global sum and whose gradient is this
    rank's part (:class:`~seqdistill.training.distributed.BatchSum`). A term that averages over
    the batch sums its numerator and denominator through it to mean the same on any number of
    processes. It must: under DDP the trainer back-propagates ``world_size × total`` (DDP then
    averages), which is right for global quantities and weighs a per-rank mean ``world_size``
    times.
    """

    users: Tensor
    windows: Tensor
    main_loss: Tensor
    loss: Tensor
    epoch: int
    model: Any
    batch_sum: Callable[[Tensor], Tensor] = _own_batch

    @classmethod
    def of(cls, out: ModelOutput, **trainer_fields: Any) -> BatchOutput:
        """The model's ``out`` completed with the trainer's fields (tensors are shared, not copied)."""
        return cls(**{f.name: getattr(out, f.name) for f in fields(ModelOutput)}, **trainer_fields)


class LossTerm(Protocol):
    """An extra training objective.

    ``term(out) -> (total, logs)``: ``total`` is the NEW total loss to optimise (the term decides
    how to combine, e.g. ``alpha * beta * L_distill + (1 - alpha) * out.main_loss``), or None to
    leave the total unchanged (e.g. after the distillation epochs). ``logs`` maps names to floats
    (or 0-d tensors); their per-epoch means are recorded in the history.

    A term may also define ``check(model, ds)``; the trainer calls it once before any work, so a
    term that does not fit the model or the dataset is refused before training starts.
    """

    def __call__(self, out: BatchOutput) -> tuple[Tensor | None, dict[str, float]]: ...
