"""Type stubs for the compiled Rust core (rust/src/bindings.rs), checked against the binary by
``python -m mypy.stubtest seqdistill._core`` in scripts/test.sh. Import the core through
``seqdistill.core``, not directly."""

from collections.abc import Sequence
from typing import Protocol, final

import numpy as np
import numpy.typing as npt

_I64 = npt.NDArray[np.int64]
_F64 = npt.NDArray[np.float64]
_U32 = npt.NDArray[np.uint32]

class _Views(Protocol):
    """A string_view column (seqdistill.core.StringViews): per chunk, views and data buffers."""

    @property
    def chunks(self) -> Sequence[tuple[npt.NDArray[np.uint8], Sequence[npt.NDArray[np.uint8]]]]: ...

__all__ = [
    "AuditCounts",
    "FILTERS",
    "IdTextCheck",
    "KCoreResult",
    "KCoreRounds",
    "MAX_K",
    "METRICS",
    "NAN_LIKE_IDS",
    "PreparedLog",
    "SPLIT_KINDS",
    "SplitResult",
    "TARGETS",
    "TopkMetrics",
    "TopkStream",
    "VALID_MODES",
    "__version__",
    "check_id_text",
    "huge_pages",
    "check_id_views",
    "encode_i64",
    "encode_str",
    "encode_str_views",
    "gather_windows",
    "global_temporal_split",
    "kcore",
    "leave_one_out_split",
    "permutation",
    "prepare_log",
    "prepare_parquet",
    "check_parquet",
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
FILTERS: tuple[str, ...]
METRICS: tuple[str, ...]
MAX_K: int
NAN_LIKE_IDS: tuple[str, ...]

@final
class KCoreRounds:
    """What each round of a filter removed: one entry per round."""

    @property
    def users(self) -> _I64: ...
    @property
    def items(self) -> _I64: ...
    @property
    def rows(self) -> _I64: ...
    def __len__(self) -> int: ...

@final
class AuditCounts:
    """The split audit's counts (rust/src/audit.rs)."""

    @property
    def train_users(self) -> int: ...
    @property
    def train_rows(self) -> int: ...
    @property
    def valid_users(self) -> int: ...
    @property
    def valid_rows(self) -> int: ...
    @property
    def test_users(self) -> int: ...
    @property
    def test_rows(self) -> int: ...
    @property
    def train_at_or_after_test_cutoff(self) -> int | None: ...
    @property
    def train_at_or_after_valid_cutoff(self) -> int | None: ...
    @property
    def test_users_without_train(self) -> int: ...
    @property
    def test_targets_unseen_item(self) -> int: ...
    @property
    def test_items_unseen(self) -> int: ...

@final
class IdTextCheck:
    """What one pass over a string id column found (rust/src/text.rs)."""

    @property
    def first_empty(self) -> int | None: ...
    @property
    def first_control(self) -> int | None: ...
    @property
    def first_nan_like(self) -> int | None: ...
    @property
    def padded(self) -> bool: ...
    @property
    def int_like(self) -> bool: ...
    @property
    def non_ascii(self) -> npt.NDArray[np.uint64]: ...

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
    @property
    def removed(self) -> KCoreRounds: ...

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
    def user_text(self) -> tuple[_I64, npt.NDArray[np.uint8]] | None:
        """String ids the core read itself (``prepare_parquet``): Arrow large_string offsets, bytes."""
    @property
    def item_values(self) -> _I64 | None: ...
    @property
    def item_first_rows(self) -> npt.NDArray[np.uint64] | None: ...
    @property
    def item_text(self) -> tuple[_I64, npt.NDArray[np.uint8]] | None: ...
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
    def kcore_removed(self) -> KCoreRounds: ...
    @property
    def audit(self) -> AuditCounts | None: ...
    @property
    def user_id_check(self) -> IdTextCheck | None:
        """For string ids handed in: ``check_id_text`` of their distinct values (rows: first rows)."""
    @property
    def item_id_check(self) -> IdTextCheck | None: ...
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

@final
class TopkStream:
    """Top-k selection of a block of rows fed as column tiles in increasing column order."""

    def __new__(
        cls,
        rows: int,
        ks: list[int],
        seen_offsets: _I64 | None = None,
        seen_items: _I64 | None = None,
        min_item: int = 0,
    ) -> TopkStream: ...
    @property
    def rows(self) -> int: ...
    @property
    def next_col(self) -> int: ...
    def feed(self, tile: npt.NDArray[np.float32], col0: int) -> None: ...
    def finish(self, gt_offsets: _I64, gt_items: _I64) -> TopkMetrics: ...

def encode_i64(values: _I64) -> tuple[_U32, _I64]: ...
def encode_str(offsets: _I64, data: npt.NDArray[np.uint8]) -> tuple[_U32, npt.NDArray[np.uint64]]: ...
def encode_str_views(views: _Views) -> tuple[_U32, npt.NDArray[np.uint64]]: ...
def check_id_text(offsets: _I64, data: npt.NDArray[np.uint8]) -> IdTextCheck: ...
def huge_pages() -> bool:
    """Whether the core's large buffers ask for huge pages (``SEQDISTILL_HUGE_PAGES``; not on a VM
    whose host takes back free memory)."""

def check_id_views(views: _Views) -> IdTextCheck: ...
def prepare_log(
    users: list[_I64] | tuple[_I64, npt.NDArray[np.uint8]] | _Views,
    items: list[_I64] | tuple[_I64, npt.NDArray[np.uint8]] | _Views,
    timestamps: list[_I64],
    ratings: list[npt.NDArray[np.float32]] | None = None,
    *,
    filter: str = "kcore",
    k_user: int = 1,
    k_item: int = 1,
    split: str = "global_temporal",
    quantile: float = 0.8,
    threshold: float | None = None,
    target: str = "last",
    valid: str = "time",
    valid_quantile: float = 0.8,
    ts_per_second: int = 1,
) -> PreparedLog: ...
def prepare_parquet(
    path: str,
    user: str,
    item: str,
    timestamp: str,
    *,
    filter: str = "kcore",
    k_user: int = 1,
    k_item: int = 1,
    split: str = "global_temporal",
    quantile: float = 0.8,
    threshold: float | None = None,
    target: str = "last",
    valid: str = "time",
    valid_quantile: float = 0.8,
    plain_strings: bool = True,
) -> tuple[PreparedLog | None, str | None, tuple[int, int] | None, int]: ...
def check_parquet(path: str, columns: list[str] | None = None) -> None: ...
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
