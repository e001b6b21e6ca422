"""Full-ranking evaluation: score every item for every row, keep the top-k, compute the metrics.

A row's scores are its query vector times the item table (``q @ W.T``), so evaluation is one
large GEMM followed by a selection. :func:`evaluate` runs the model's forward pass to get the
query vectors (``next_item_hidden``; timed separately as ``timings["forward_s"]``) and hands them
to :class:`BlockRanker`, which

- scores ``block_rows`` rows at a time with ``torch.mm(q, W.T, out=buf)`` into one of two
  float32 buffers allocated once (a fresh block per batch costs more in page faults than the
  whole selection), and
- on the CPU (``selection="rust"``, the default there) hands the block to the Rust core's
  ``topk_metrics`` in a worker thread (it releases the GIL) while the next block is scored
  into the other buffer, the GEMM on half the torch threads (``gemm_threads``) so that the two
  do not stall each other on a small machine;
- on a GPU (``selection="torch"``, the default on any non-CPU device) keeps scores on the
  device: seen items are removed by a scatter, :func:`topk_ids` selects with ``torch.topk``
  in the Rust core's exact order, and only the ``[rows, k]`` ids are copied to the host,
  where ``topk_metrics_from_ids`` computes the metrics. No score block is ever copied to the
  host on that path. The torch path runs on the CPU too, which is how its equality with the
  Rust path is tested; GPU timings have not been measured.

Column 0 (padding) and special tokens (BERT4Rec's mask token) are never ranked: the score
matrix has exactly ``n_items + 1`` columns and selection starts at item 1.

Ranking order, both paths: higher score first, equal scores to the lower item id, NaN below
every number. Results do not depend on ``batch_size`` or ``block_rows``: every GEMM gets at
least :data:`MIN_BLOCK` rows (padded with zero rows), because MKL computes 1- or 2-row products
by another kernel whose sums can differ in the last bit.

Protocol: the paper ranks the whole catalogue WITHOUT removing the user's seen items, which is
``filter_seen=False`` (the default here). ``filter_seen=True`` removes every item of the row's
input history from the candidates (the more common protocol in other papers).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from seqdistill import core
from seqdistill.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = [
    "BlockRanker",
    "EvalResult",
    "METRICS",
    "MIN_BLOCK",
    "block_scores",
    "evaluate",
    "model_outputs",
    "rank_queries",
    "topk_ids",
]

METRICS = core.METRICS
Selection = Literal["rust", "torch"]

#: Fewest rows one GEMM is given (smaller blocks are padded with zero rows); see the module doc.
MIN_BLOCK = 16
#: Rows per scored block on the CPU: 64 rows x 40k items is a 10 MB block, which the GEMM writes
#: and the selection reads while it is still in cache; at 128 rows and more the one-thread GEMM
#: was 1.5-2x slower per row (benches/evaluate.py, README "Measured").
CPU_BLOCK_ROWS = 64
#: Bytes of int64 sort keys one device block may take (torch selection).
DEVICE_BLOCK_BYTES = 1 << 28


@dataclass
class EvalResult:
    """Mean metrics (NaN-skipping), per-row metric arrays aligned with ``users`` (for paired
    tests), optionally each row's top-k dense item ids (-1 where fewer candidates), and the
    seconds spent (``forward_s``: the model's forward pass, ``total_s``: everything)."""

    means: dict[str, float]
    per_row: dict[str, np.ndarray]
    users: np.ndarray
    targets: np.ndarray
    topk: np.ndarray | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (means and settings, not the per-row arrays or timings)."""
        return {"means": dict(self.means), "n_rows": int(len(self.users)), **self.settings}


# ------------------------------------------------------------------------------ selection
def topk_ids(
    scores: torch.Tensor,
    k: int,
    min_item: int = 0,
    seen_rows: torch.Tensor | None = None,
    seen_cols: torch.Tensor | None = None,
) -> torch.Tensor:
    """Top-``k`` column ids of each row of ``scores [rows, n]`` in the Rust core's order, on
    ``scores``' device: higher score first, ties to the lower id, NaN below every number,
    ``-0.0 == 0.0``; columns below ``min_item`` and the ``(seen_rows, seen_cols)`` entries are
    never ranked (-1 fills the slots they leave empty).

    Each score becomes one int64 key, ``order(score) * 2**32 + (2**32 - 1 - id)``, where
    ``order`` is the float's bit pattern made monotone. Keys are distinct, so ``torch.topk``
    has exactly one answer and it is the core's. Excluded entries get the smallest int64,
    below every candidate (NaN included).
    """
    import torch

    n = scores.shape[1]
    bits = scores.float().view(torch.int32)
    order = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # negative floats: flip the magnitude
    order = order.masked_fill_(scores == 0, 0).masked_fill_(torch.isnan(scores), torch.iinfo(torch.int32).min)
    ids = torch.arange(n, device=scores.device, dtype=torch.int64)
    keys = order.to(torch.int64).mul_(1 << 32).add_((1 << 32) - 1 - ids)
    excluded = torch.iinfo(torch.int64).min
    keys[:, :min_item] = excluded
    if seen_rows is not None and seen_cols is not None and seen_rows.numel():
        keys[seen_rows, seen_cols] = excluded
    vals, top = torch.topk(keys, min(k, n), dim=1, largest=True, sorted=True)
    top = top.masked_fill_(vals == excluded, -1)
    if k > n:
        top = torch.cat([top, top.new_full((top.shape[0], k - n), -1)], dim=1)
    return top


def _slice_csr(offsets: np.ndarray, values: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = int(offsets[lo]), int(offsets[hi])
    return np.ascontiguousarray(offsets[lo : hi + 1] - a, dtype=np.int64), np.ascontiguousarray(
        values[a:b], dtype=np.int64
    )


def _pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """``x`` with zero rows appended up to ``rows`` (unchanged when it has that many)."""
    if x.shape[0] >= rows:
        return x
    out = x.new_zeros((rows, *x.shape[1:]))
    out[: x.shape[0]] = x
    return out


def block_scores(queries: torch.Tensor, table_t: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Scores ``queries [rows, d] @ table_t [d, n]``, computed for at least :data:`MIN_BLOCK`
    rows so that a row's scores are the same bits whatever block it comes in; written into
    ``out`` (a buffer of at least ``max(rows, MIN_BLOCK)`` rows) when given, e.g. a reused
    host buffer. Returns the ``[rows, n]`` scores."""
    import torch

    rows, q = queries.shape[0], _pad_rows(queries, MIN_BLOCK)
    if out is not None and q.device == out.device:
        return torch.mm(q, table_t, out=out[: q.shape[0]])[:rows]
    s = torch.mm(q, table_t)[:rows]
    return s if out is None else out[:rows].copy_(s)


def model_outputs(model, windows: torch.Tensor, table: torch.Tensor | None) -> torch.Tensor:
    """The model's query vectors (``table`` given: the GEMM path) or its scores for ``windows``,
    computed for at least :data:`MIN_BLOCK` rows (zero windows appended) for the same reason."""
    rows, win = windows.shape[0], _pad_rows(windows, MIN_BLOCK)
    out = model.next_item_hidden(win) if table is not None else model.next_item_scores(win).float()
    return out[:rows]


class BlockRanker:
    """Ranks rows block by block and collects per-row metrics (and top-k ids).

    Feed it query vectors (:meth:`add_queries`, scored against ``table``) or ready score blocks
    (:meth:`add_scores`) for consecutive rows, then call :meth:`result`. Use it as a context
    manager: the worker thread and its pending selection are finished on exit. See the module
    docstring for what happens to a block on each path.
    """

    def __init__(
        self,
        n_cols: int,
        ks: Sequence[int],
        targets: np.ndarray,
        seen: tuple[np.ndarray, np.ndarray] | None = None,
        table: torch.Tensor | None = None,
        selection: Selection = "rust",
        block_rows: int = CPU_BLOCK_ROWS,
        return_topk: bool = False,
        gemm_threads: int | None = None,
    ) -> None:
        import torch

        if selection not in ("rust", "torch"):
            raise ConfigError(f"evaluate: selection must be 'rust' or 'torch', got {selection!r}")
        if block_rows < 1:
            raise ConfigError(f"evaluate: block_rows must be >= 1, got {block_rows}")
        if table is not None and table.shape[0] != n_cols:
            raise ConfigError(f"evaluate: item table has {table.shape[0]} rows, expected n_items + 1 = {n_cols}")
        self.n_cols, self.ks, self.selection = n_cols, tuple(ks), selection
        self.block_rows = block_rows
        self.targets = np.ascontiguousarray(targets, dtype=np.int64)
        self.seen = seen
        self._table_t = None if table is None else table.t()
        n, m = len(self.targets), len(self.ks)
        self._values = {name: np.full((m, n), np.nan) for name in METRICS}
        self._topk = np.full((n, max(self.ks)), -1, dtype=np.int64) if return_topk else None
        cap = max(block_rows, MIN_BLOCK)
        # Host score buffers for the Rust selection, allocated (and page-faulted) once.
        self._bufs = [torch.empty(cap, n_cols) for _ in range(2)] if selection == "rust" else []
        self._pending: list[Future | None] = [None, None]
        self._slot = 0
        self._pool = ThreadPoolExecutor(max_workers=1)
        self.gemm_threads = gemm_threads

    # ---------------------------------------------------------------------- feeding
    def add_queries(self, lo: int, queries: torch.Tensor) -> None:
        """Score query vectors ``[rows, d]`` of rows ``lo..lo + rows`` and rank them."""
        if self._table_t is None:
            raise ConfigError("BlockRanker.add_queries: no item table was given")
        for s in range(0, queries.shape[0], self.block_rows):
            q = queries[s : s + self.block_rows]
            self._rank_block(lo + s, lambda out, q=q: block_scores(q, self._table_t, out))

    def add_scores(self, lo: int, scores: torch.Tensor) -> None:
        """Rank a ready score matrix ``[rows, n_items + 1]`` of rows ``lo..lo + rows``."""
        if scores.ndim != 2 or scores.shape[1] != self.n_cols:
            raise ConfigError(
                f"evaluate: the model returned scores of shape {tuple(scores.shape)}, expected [rows, {self.n_cols}]"
            )
        for s in range(0, scores.shape[0], self.block_rows):
            block = scores[s : s + self.block_rows]
            self._rank_block(lo + s, lambda out, b=block: b if out is None else out[: b.shape[0]].copy_(b))

    # ---------------------------------------------------------------------- ranking
    def _rank_block(self, lo: int, score: Callable[[torch.Tensor | None], torch.Tensor]) -> None:
        import torch

        slot, self._slot = self._slot, self._slot ^ 1
        self._wait(slot)  # the buffer (and the worker) are free again
        if self.selection == "rust":
            if self.gemm_threads is None:
                out = score(self._bufs[slot])
            else:
                threads = torch.get_num_threads()
                torch.set_num_threads(self.gemm_threads)
                try:
                    out = score(self._bufs[slot])
                finally:
                    torch.set_num_threads(threads)
            self._pending[slot] = self._pool.submit(self._select_rust, lo, out.float().numpy())
        else:
            ids = self._select_torch(lo, score(None)).cpu().numpy()
            self._pending[slot] = self._pool.submit(self._metrics_from_ids, lo, ids)

    def _wait(self, slot: int) -> None:
        f, self._pending[slot] = self._pending[slot], None
        if f is not None:
            f.result()

    def _truth(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        return np.arange(hi - lo + 1, dtype=np.int64), self.targets[lo:hi]

    def _seen_block(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
        return (None, None) if self.seen is None else _slice_csr(*self.seen, lo, hi)

    def _select_rust(self, lo: int, scores: np.ndarray) -> None:
        hi = lo + scores.shape[0]
        out = core.topk_metrics(scores, self.ks, *self._truth(lo, hi), *self._seen_block(lo, hi), min_item=1)
        self._store(lo, out)

    def _select_torch(self, lo: int, scores: torch.Tensor) -> torch.Tensor:
        import torch

        rows = cols = None
        off, items = self._seen_block(lo, lo + scores.shape[0])
        if off is not None:
            rows = torch.from_numpy(np.repeat(np.arange(len(off) - 1), np.diff(off))).to(scores.device)
            cols = torch.from_numpy(items).to(scores.device)
        return topk_ids(scores, max(self.ks), min_item=1, seen_rows=rows, seen_cols=cols)

    def _metrics_from_ids(self, lo: int, ids: np.ndarray) -> None:
        self._store(lo, core.topk_metrics_from_ids(ids, self.ks, *self._truth(lo, lo + ids.shape[0])))

    def _store(self, lo: int, out: core.TopkMetrics) -> None:
        hi = lo + len(out.ndcg[0])
        for name in METRICS:
            self._values[name][:, lo:hi] = getattr(out, name)
        if self._topk is not None and out.topk is not None:
            self._topk[lo:hi] = out.topk

    # ------------------------------------------------------------------------ finish
    def close(self) -> None:
        """Wait for the pending selections and stop the worker thread."""
        try:
            for slot in (0, 1):
                self._wait(slot)
        finally:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> BlockRanker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def result(self) -> core.TopkMetrics:
        """Per-row metrics of every row (NaN for rows never fed) and the top-k ids if asked."""
        for slot in (0, 1):
            self._wait(slot)
        return core.TopkMetrics(ks=self.ks, topk=self._topk, **self._values)


def rank_queries(
    queries: torch.Tensor,
    table: torch.Tensor,
    targets: np.ndarray,
    ks: Sequence[int] = (5, 10, 20),
    seen: tuple[np.ndarray, np.ndarray] | None = None,
    selection: Selection | None = None,
    block_rows: int | None = None,
    return_topk: bool = False,
    gemm_threads: int | None = None,
) -> core.TopkMetrics:
    """Rank all items for query vectors ``[rows, d]`` against ``table [n_items + 1, d]`` (row 0 =
    padding, never ranked): per-row metrics against one target per row, seen items (CSR
    ``(offsets, items)``) removed if given. The scoring half of :func:`evaluate`."""
    ks = _check_ks(ks)
    sel = _default_selection(table.device) if selection is None else selection
    rows = _default_block_rows(table.device, table.shape[0]) if block_rows is None else block_rows
    threads = _default_gemm_threads(table.device) if gemm_threads is None else gemm_threads
    with BlockRanker(table.shape[0], ks, targets, seen, table, sel, rows, return_topk, threads) as ranker:
        ranker.add_queries(0, queries)
        return ranker.result()


# ------------------------------------------------------------------------- evaluate
def _check_ks(ks: Sequence[int]) -> list[int]:
    out = sorted({int(k) for k in ks})
    if not out or out[0] < 1:
        raise ConfigError(f"evaluate: ks must be positive integers, got {list(ks)}")
    return out


def _default_selection(device: torch.device) -> Selection:
    return "rust" if device.type == "cpu" else "torch"


def _default_gemm_threads(device: torch.device) -> int | None:
    """On the CPU the GEMM gets half the torch threads and the Rust selection of the previous
    block the rest of the machine. On the idle 2-core machine this was as fast as a two-thread
    GEMM beside the selection (100k rows x 40k items: 4.6-5.1 s vs 4.7-5.0 s; the selection costs
    about as much as the GEMM there); with the cores shared with other jobs it was 2-4x faster,
    because two GEMM threads then stall at every block's barrier."""
    import torch

    return max(1, torch.get_num_threads() // 2) if device.type == "cpu" else None


def _default_block_rows(device: torch.device, n_cols: int) -> int:
    if device.type == "cpu":
        return CPU_BLOCK_ROWS
    return max(MIN_BLOCK, min(8192, DEVICE_BLOCK_BYTES // (8 * n_cols)))


def _item_table(model) -> torch.Tensor | None:
    """The table whose product with ``next_item_hidden`` gives the model's scores, or None when
    the model does not promise that (then its ``next_item_scores`` are ranked as they come)."""
    import torch

    from seqdistill.models.base import SequentialRecommender

    cls = type(model)
    if not (
        isinstance(model, SequentialRecommender)
        and cls.score is SequentialRecommender.score
        and cls.next_item_scores is SequentialRecommender.next_item_scores
        and hasattr(model, "next_item_hidden")
    ):
        return None
    table = model.item_emb.weight[: model.config.n_items + 1]
    return table if table.dtype == torch.float32 else None


def evaluate(
    model,
    ds,
    part: str = "test",
    ks: Sequence[int] = (5, 10, 20),
    filter_seen: bool = False,
    batch_size: int = 1024,
    device: str | None = None,
    return_topk: bool = False,
    progress: bool = False,
    selection: Selection | None = None,
    block_rows: int | None = None,
) -> EvalResult:
    """Rank all items for every ``part`` target of ``ds`` and compute NDCG/Recall/HitRate/MRR@k.

    ``model`` is a :class:`~seqdistill.models.SequentialRecommender` (its ``input_length``
    decides the history window). ``filter_seen=False`` is the paper's protocol (seen items stay
    candidates). ``batch_size`` rows go through the forward pass at a time, ``block_rows`` rows
    are scored and ranked at a time (default: 64 on the CPU, sized to the catalogue on a GPU);
    ``selection`` is ``"rust"`` (default on the CPU) or ``"torch"`` (default elsewhere). Neither
    changes the result. Returns an :class:`EvalResult`; keys are ``"ndcg@10"`` etc.
    """
    import torch

    from seqdistill.data.sequences import eval_inputs

    ks = _check_ks(ks)
    if batch_size < 1:
        raise ConfigError(f"evaluate: batch_size must be >= 1, got {batch_size}")
    if block_rows is not None and block_rows < 1:
        raise ConfigError(f"evaluate: block_rows must be >= 1, got {block_rows}")
    if selection not in (None, "rust", "torch"):
        raise ConfigError(f"evaluate: selection must be 'rust' or 'torch', got {selection!r}")
    if model.config.n_items != ds.n_items:
        raise ConfigError(
            f"evaluate: model has n_items={model.config.n_items} but dataset {ds.name!r} has {ds.n_items}"
        )
    t_start = time.perf_counter()
    inp = eval_inputs(ds, part, model.input_length)
    n, n_cols = len(inp.users), ds.n_items + 1
    dev = torch.device(device) if device is not None else model.device
    table = _item_table(model)
    if table is not None:
        table = table.to(dev)
    sel = _default_selection(dev) if selection is None else selection
    rows = _default_block_rows(dev, n_cols) if block_rows is None else block_rows
    seen = (inp.seen_offsets, inp.seen_items) if filter_seen else None
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"evaluate {part}", unit="batch")
    forward_s = 0.0
    was_training = model.training
    model.eval()
    try:
        threads = _default_gemm_threads(dev)
        with (
            torch.no_grad(),
            BlockRanker(n_cols, ks, inp.targets, seen, table, sel, rows, return_topk, threads) as ranker,
        ):
            for lo in starts:
                hi = min(n, lo + batch_size)
                t0 = time.perf_counter()
                out = model_outputs(model, torch.from_numpy(np.ascontiguousarray(inp.windows[lo:hi])).to(dev), table)
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                forward_s += time.perf_counter() - t0
                if table is not None:
                    ranker.add_queries(lo, out)
                else:
                    ranker.add_scores(lo, out)
            res = ranker.result()
    finally:
        model.train(was_training)

    per_row = {key: res[key] for key in res.keys()}
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = {key: float(np.nanmean(v)) if n else float("nan") for key, v in per_row.items()}
    settings = {"part": part, "ks": ks, "filter_seen": filter_seen, "max_len": model.input_length}
    timings = {"forward_s": forward_s, "total_s": time.perf_counter() - t_start}
    return EvalResult(means, per_row, inp.users, inp.targets, res.topk, settings, timings)
