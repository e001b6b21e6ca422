"""Shared test setup: one torch thread (2-5x faster than two on the 2-core CI machines)."""

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # torch is an optional extra
    pass
