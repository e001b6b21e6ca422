"""Type stubs for the compiled Rust core (rust/src/bindings.rs)."""

from typing import Any

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]

__version__: str

def encode_i64(values: I64) -> tuple[npt.NDArray[np.uint32], I64]: ...
def encode_str(offsets: I64, data: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint64]]: ...
def kcore(
    users: npt.NDArray[np.uint32], items: npt.NDArray[np.uint32], n_users: int, n_items: int, k_user: int, k_item: int
) -> dict[str, Any]: ...
def sort_by_user_time(
    users: npt.NDArray[np.uint32], timestamps: I64, n_users: int
) -> tuple[npt.NDArray[np.uint32], I64]: ...
def global_temporal_split(
    offsets: I64,
    timestamps: I64,
    quantile: float = 0.8,
    target: str = "last",
    valid: str = "time",
    valid_quantile: float = 0.8,
    threshold: float | None = None,
) -> dict[str, Any]: ...
def leave_one_out_split(offsets: I64) -> dict[str, Any]: ...
def training_windows(train_end: I64, length: int, stride: int, min_len: int = 2) -> tuple[I64, I64]: ...
def gather_windows(offsets: I64, items: I64, users: I64, ends: I64, length: int) -> I64: ...
def permutation(n: int, seed: int) -> I64: ...
def seen_items(offsets: I64, items: I64, users: I64, ends: I64) -> tuple[I64, I64]: ...
def topk_metrics(
    scores: npt.NDArray[np.float32],
    ks: list[int],
    gt_offsets: I64,
    gt_items: I64,
    seen_offsets: I64 | None = None,
    seen_items: I64 | None = None,
    min_item: int = 0,
) -> dict[str, npt.NDArray[Any]]: ...
def topk_metrics_from_ids(topk: I64, ks: list[int], gt_offsets: I64, gt_items: I64) -> dict[str, npt.NDArray[np.float64]]: ...
