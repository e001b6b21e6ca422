"""Type stubs for the compiled Rust core (rust/src/bindings.rs), checked against the binary by
``python -m mypy.stubtest seqdistill._core`` in scripts/test.sh. Import the core through
``seqdistill.core``, not directly."""

from typing import final

import numpy as np
import numpy.typing as npt

_I64 = npt.NDArray[np.int64]
_F64 = npt.NDArray[np.float64]
_U32 = npt.NDArray[np.uint32]

__all__ = [
    "KCoreResult",
    "METRICS",
    "PreparedLog",
    "SPLIT_KINDS",
    "SplitResult",
    "TARGETS",
    "TopkMetrics",
    "VALID_MODES",
    "__version__",
    "encode_i64",
    "encode_str",
    "gather_windows",
    "global_temporal_split",
    "kcore",
    "leave_one_out_split",
    "permutation",
    "prepare_log",
    "seen_items",
    "sort_by_user_time",
    "topk_metrics",
    "topk_metrics_from_ids",
    "training_windows",
]
__version__: str
TARGETS: tuple[str, ...]
VALID_MODES: tuple[str, ...]
SPLIT_KINDS: tuple[str, ...]
METRICS: tuple[str, ...]

@final
class KCoreResult:
    @property
    def keep(self) -> npt.NDArray[np.bool_]: ...
    @property
    def user_map(self) -> _I64: ...
    @property
    def item_map(self) -> _I64: ...
    @property
    def n_users(self) -> int: ...
    @property
    def n_items(self) -> int: ...
    @property
    def rounds(self) -> int: ...
    @property
    def rows_dropped(self) -> int: ...

@final
class SplitResult:
    @property
    def train_end(self) -> _I64: ...
    @property
    def valid_users(self) -> _I64: ...
    @property
    def valid_pos(self) -> _I64: ...
    @property
    def test_users(self) -> _I64: ...
    @property
    def test_pos(self) -> _I64: ...
    @property
    def test_threshold(self) -> float: ...
    @property
    def valid_threshold(self) -> float: ...

@final
class PreparedLog:
    @property
    def user_values(self) -> _I64 | None: ...
    @property
    def user_first_rows(self) -> npt.NDArray[np.uint64] | None: ...
    @property
    def item_values(self) -> _I64 | None: ...
    @property
    def item_first_rows(self) -> npt.NDArray[np.uint64] | None: ...
    @property
    def offsets(self) -> _I64: ...
    @property
    def items(self) -> _I64: ...
    @property
    def timestamps(self) -> _I64: ...
    @property
    def ratings(self) -> npt.NDArray[np.float32] | None: ...
    @property
    def split(self) -> SplitResult | None: ...
    @property
    def users_before(self) -> int: ...
    @property
    def items_before(self) -> int: ...
    @property
    def kcore_rounds(self) -> int: ...
    @property
    def rows_dropped(self) -> int: ...
    @property
    def stages(self) -> list[tuple[str, float]]: ...

@final
class TopkMetrics:
    def __new__(
        cls, *, ks: list[int], topk: _I64 | None, ndcg: _F64, recall: _F64, hit_rate: _F64, mrr: _F64
    ) -> TopkMetrics: ...
    @property
    def ks(self) -> tuple[int, ...]: ...
    @property
    def topk(self) -> _I64 | None: ...
    @property
    def ndcg(self) -> _F64: ...
    @property
    def recall(self) -> _F64: ...
    @property
    def hit_rate(self) -> _F64: ...
    @property
    def mrr(self) -> _F64: ...
    def keys(self) -> list[str]: ...
    def __getitem__(self, key: str, /) -> _F64: ...

def encode_i64(values: _I64) -> tuple[_U32, _I64]: ...
def encode_str(offsets: _I64, data: npt.NDArray[np.uint8]) -> tuple[_U32, npt.NDArray[np.uint64]]: ...
def prepare_log(
    users: list[_I64] | tuple[_I64, npt.NDArray[np.uint8]],
    items: list[_I64] | tuple[_I64, npt.NDArray[np.uint8]],
    timestamps: list[_I64],
    ratings: list[npt.NDArray[np.float32]] | None = None,
    *,
    k_user: int = 1,
    k_item: int = 1,
    split: str = "global_temporal",
    quantile: float = 0.8,
    threshold: float | None = None,
    target: str = "last",
    valid: str = "time",
    valid_quantile: float = 0.8,
) -> PreparedLog: ...
def kcore(users: _U32, items: _U32, n_users: int, n_items: int, k_user: int, k_item: int) -> KCoreResult: ...
def sort_by_user_time(users: _U32, timestamps: _I64, n_users: int) -> tuple[_U32, _I64]: ...
def global_temporal_split(
    offsets: _I64,
    timestamps: _I64,
    quantile: float = 0.8,
    target: str = "last",
    valid: str = "time",
    valid_quantile: float = 0.8,
    threshold: float | None = None,
) -> SplitResult: ...
def leave_one_out_split(offsets: _I64) -> SplitResult: ...
def training_windows(train_end: _I64, length: int, stride: int, min_len: int = 2) -> tuple[_I64, _I64]: ...
def gather_windows(offsets: _I64, items: _I64, users: _I64, ends: _I64, length: int) -> _I64: ...
def permutation(n: int, seed: int) -> _I64: ...
def seen_items(offsets: _I64, items: _I64, users: _I64, ends: _I64) -> tuple[_I64, _I64]: ...
def topk_metrics(
    scores: npt.NDArray[np.float32],
    ks: list[int],
    gt_offsets: _I64,
    gt_items: _I64,
    seen_offsets: _I64 | None = None,
    seen_items: _I64 | None = None,
    min_item: int = 0,
) -> TopkMetrics: ...
def topk_metrics_from_ids(topk: _I64, ks: list[int], gt_offsets: _I64, gt_items: _I64) -> TopkMetrics: ...
