"""Training windows, evaluation inputs and seen-item sets over a :class:`PreparedDataset`.

All heavy lifting happens in the Rust core (GIL released); this module only slices batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from seqdistill import core
from seqdistill.data.dataset import PreparedDataset

_GOLDEN = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1


def epoch_seed(seed: int, epoch: int) -> int:
    """One 64-bit shuffle seed per (seed, epoch); different epochs get unrelated orders."""
    return ((seed * _GOLDEN) ^ (epoch + 1) * 0xBF58476D1CE4E5B9) & _MASK64


class TrainWindows:
    """Seeded, shuffled mini-batches of left-padded sliding windows over training prefixes.

    Each user's training prefix of length ``L`` is cut into windows of ``length`` items ending at
    ``L, L - stride, …`` (see ``core.training_windows``). With the default ``stride = length - 1``
    a causal model that predicts ``window[1:]`` from ``window[:-1]`` sees every training
    transition exactly once per epoch, so long histories are not thrown away.
    """

    def __init__(
        self,
        ds: PreparedDataset,
        length: int,
        batch_size: int,
        stride: int | None = None,
        seed: int = 0,
        min_len: int = 2,
        drop_last: bool = False,
    ) -> None:
        if length < 1 or batch_size < 1:
            raise ValueError(f"length and batch_size must be positive, got {length}, {batch_size}")
        self.ds, self.length, self.batch_size = ds, length, batch_size
        self.stride = stride if stride is not None else max(1, length - 1)
        self.seed, self.drop_last = seed, drop_last
        self.users, self.ends = core.training_windows(ds.train_end, length, self.stride, min_len)

    @property
    def n_samples(self) -> int:
        return len(self.users)

    def __len__(self) -> int:
        n, b = self.n_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def epoch(self, epoch: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yields ``(users int64[B], windows int64[B, length])`` in a seeded order for ``epoch``."""
        perm = core.permutation(self.n_samples, epoch_seed(self.seed, epoch))
        for b in range(len(self)):
            idx = perm[b * self.batch_size : (b + 1) * self.batch_size]
            users = self.users[idx]
            yield users, core.gather_windows(self.ds.offsets, self.ds.items, users, self.ends[idx], self.length)


@dataclass
class EvalInputs:
    """Rows to score: one per target. ``windows`` holds each row's history before its target."""

    users: np.ndarray
    positions: np.ndarray
    windows: np.ndarray
    targets: np.ndarray
    seen_offsets: np.ndarray
    seen_items: np.ndarray

    def __len__(self) -> int:
        return len(self.users)


def eval_inputs(ds: PreparedDataset, part: str, max_len: int) -> EvalInputs:
    """Left-padded input windows, target items and seen-item sets for the ``part`` targets."""
    users, positions = ds.targets(part)
    windows = core.gather_windows(ds.offsets, ds.items, users, positions, max_len)
    targets = ds.items[ds.offsets[users] + positions]
    seen_offsets, seen = core.seen_items(ds.offsets, ds.items, users, positions)
    return EvalInputs(users, positions, windows, targets, seen_offsets, seen)
