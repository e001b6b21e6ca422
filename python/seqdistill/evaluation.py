"""Full-ranking evaluation: score every item for every row, keep the top-k, compute the metrics.

A row's scores are its query vector times the item table (``q @ W.T``), so evaluation is one
large GEMM followed by a selection. :func:`evaluate` runs the model's forward pass to get the
query vectors (``next_item_hidden``; timed separately as ``timings["forward_s"]``) and hands them
to :class:`BlockRanker`, which

- scores ``block_rows`` rows at a time with ``torch.mm(q, W.T, out=buf)`` into one of two
  float32 buffers allocated once (a fresh block per batch costs more in page faults than the
  whole selection), and
- on the CPU (``selection="rust"``, the default there) runs ``workers`` threads (default: torch's
  thread count), each of which takes a whole block of query rows and scores it one tile of
  ``CPU_BLOCK_ROWS x CPU_TILE_COLS`` at a time with a one-thread GEMM into its own 1 MiB
  buffer, handing each tile to the Rust core's :class:`~seqdistill.core.TopkStream` (both
  release the GIL), which keeps every row's running top-k across tiles. The tile is ranked while
  it is still in the core's cache, so the score matrix never goes to memory (writing and
  re-reading it cost more than the selection), and every core alternates GEMM and selection on
  its own blocks: neither waits for the other and no GEMM thread spins at a barrier while a
  selection holds its core. Ready score matrices (models without an item table) go to
  ``topk_metrics`` whole, block by block. torch runs one thread while a
  batch's blocks are ranked, and each batch is finished before the caller goes on, so the
  forward pass of the next batch runs at the caller's thread count;
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
by another kernel whose sums can differ in the last bit; for the same reason no tile is narrower
than :data:`MIN_TILE_COLS` columns (a tiled row's scores are the bits of the whole product).

Protocol: the paper ranks the whole catalogue WITHOUT removing the user's seen items, which is
``filter_seen=False`` (the default here). ``filter_seen=True`` removes every item of the row's
input history from the candidates (the more common protocol in other papers).

Protocols side by side (:func:`evaluate_protocols`, docs/evaluation.md): one forward pass feeds a
ranker per protocol: ``full`` and ``full_filtered`` are the :class:`BlockRanker` above;
``sampled:N`` / ``sampled-pop:N`` rank the target among N negatives that a
:class:`NegativeSampler` draws per row (without replacement, never the target nor a seen item;
uniform or by training-prefix counts), seeded per :data:`SAMPLE_BLOCK` rows, and a
:class:`SampledRanker` scores only those candidates, in blocks of exactly :data:`SAMPLE_BLOCK`
rows, with the same tie rule. No protocol's numbers depend on the batch size.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import re
import threading
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from seqdistill import core
from seqdistill._checks import THREAD_LIMIT, seed_arg
from seqdistill.errors import ConfigError, SeqdistillWarning

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_PROTOCOLS",
    "MAX_K",
    "METRICS",
    "MIN_BLOCK",
    "MIN_TILE_COLS",
    "SAMPLE_BLOCK",
    "BlockRanker",
    "EvalResult",
    "FullRanking",
    "NegativeSampler",
    "Protocol",
    "SampledCandidates",
    "SampledRanker",
    "SampledRanking",
    "block_scores",
    "evaluate",
    "evaluate_protocols",
    "format_table",
    "model_outputs",
    "parse_protocol",
    "protocol_table",
    "rank_queries",
    "sample_negatives",
    "sampled_candidates",
    "topk_ids",
]

METRICS = core.METRICS
Selection = Literal["rust", "torch"]

#: Fewest rows one GEMM is given (smaller blocks are padded with zero rows); see the module doc.
MIN_BLOCK = 16
#: Rows per scored block on the CPU. Query blocks are scored one tile of ``CPU_BLOCK_ROWS x
#: CPU_TILE_COLS`` at a time (1 MiB of float32: it stays in a core's L2 cache while the Rust core
#: ranks it), so no score block is ever written to memory and read back; see the module doc.
CPU_BLOCK_ROWS = 256
#: Columns per tile (the last tile also takes a remainder under :data:`MIN_TILE_COLS`).
CPU_TILE_COLS = 1024
#: Narrowest tile: MKL computes products of fewer than 12 columns by other kernels whose sums can
#: differ in the last bit from the same columns inside a wider product.
MIN_TILE_COLS = 64
#: Bytes of int64 sort keys one device block may take (torch selection).
DEVICE_BLOCK_BYTES = 1 << 28
#: Bytes all CPU score buffers together may take: one buffer per worker, so a machine with many
#: threads and a large catalogue gets fewer workers when whole score rows are ranked (ready score
#: matrices: a 1M-item catalogue holds one 256-row buffer); tile buffers are 1 MiB each.
CPU_BUFFER_BYTES = 1 << 30
#: Largest cut-off k: more ranks nothing more in any catalogue a run can hold (as the experiment
#: config's limit; declared once, in the core, which refuses larger ones too).
MAX_K = core.MAX_K


@dataclass
class EvalResult:
    """Mean metrics (NaN-skipping), per-row metric arrays aligned with ``users`` (for paired
    tests), optionally each row's top-k dense item ids (-1 where fewer candidates), the
    seconds spent (``forward_s``: the model's forward pass, ``total_s``: everything) and, for a
    sampled protocol asked to keep them, each row's negatives (``[rows, n]``, -1 = none)."""

    means: dict[str, float]
    per_row: dict[str, np.ndarray]
    users: np.ndarray
    targets: np.ndarray
    topk: np.ndarray | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    negatives: np.ndarray | None = None

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


def _column_chunks(n: int, width: int) -> list[tuple[int, int]]:
    """``[a, b)`` column ranges of ``width`` covering ``0..n``; a last range narrower than
    :data:`MIN_TILE_COLS` is joined to the one before it."""
    bounds = list(range(0, n, width)) + [n]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < MIN_TILE_COLS:
        del bounds[-2]
    return list(zip(bounds[:-1], bounds[1:]))


def _as_matrix(buf: torch.Tensor | None, cols: int) -> torch.Tensor | None:
    """A flat slot buffer seen as ``[rows, cols]`` (None stays None)."""
    return None if buf is None else buf[: (buf.numel() // cols) * cols].view(-1, cols)


def _score_rows(block: torch.Tensor, buf: torch.Tensor | None, cols: int) -> torch.Tensor:
    """Ready score rows as a C-contiguous float32 matrix: copied into the slot buffer when it
    holds them (a tiled ranker's buffers hold one tile, not a whole block)."""
    if buf is None or buf.numel() < block.numel():
        return block.float().contiguous()
    return _as_matrix(buf, cols)[: block.shape[0]].copy_(block)


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
        workers: int | None = None,
    ) -> None:
        import torch

        if workers is not None and (
            isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= THREAD_LIMIT
        ):
            raise ConfigError(f"evaluate: workers must be an integer from 1 to {THREAD_LIMIT}, got {workers!r}")
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
        # One slot per block in flight: the Rust path scores and ranks in `workers` threads, each
        # block into its slot's host buffer (allocated and page-faulted once): a tile buffer when
        # there is an item table, a whole-block buffer for ready score rows; the torch path
        # selects in the caller's thread and computes metrics in one worker.
        chunks = _column_chunks(n_cols, CPU_TILE_COLS)
        tiled = selection == "rust" and table is not None and table.device.type == "cpu"
        self._tiles = [(self._table_t[:, a:b], a) for a, b in chunks] if tiled else None
        width = max(b - a for a, b in chunks) if tiled else n_cols
        wanted = workers or _default_workers(torch.device("cpu")) or 1
        self.workers = max(1, min(wanted, CPU_BUFFER_BYTES // (4 * cap * width))) if selection == "rust" else 1
        slots = self.workers if selection == "rust" else 2
        self._bufs = [torch.empty(cap * width) for _ in range(slots)] if selection == "rust" else []
        self._pending: list[Future | None] = [None] * slots
        self._slot = 0
        self._pool = ThreadPoolExecutor(max_workers=self.workers)

    # ---------------------------------------------------------------------- feeding
    def add(self, lo: int, out: torch.Tensor) -> None:
        """Rank the model's outputs for rows ``lo..``: query vectors when the ranker has an item
        table, score rows otherwise (what :func:`model_outputs` returns in each case)."""
        if self._table_t is not None:
            self.add_queries(lo, out)
        else:
            self.add_scores(lo, out)

    def add_queries(self, lo: int, queries: torch.Tensor) -> None:
        """Score query vectors ``[rows, d]`` of rows ``lo..lo + rows`` and rank them."""
        if self._table_t is None:
            raise ConfigError("BlockRanker.add_queries: no item table was given")
        with self._batch():
            for s in range(0, queries.shape[0], self.block_rows):
                q = queries[s : s + self.block_rows]
                if self._tiles is not None and q.device.type == "cpu":
                    self._rank_tiled(lo + s, q)
                else:
                    self._rank_block(
                        lo + s, lambda out, q=q: block_scores(q, self._table_t, _as_matrix(out, self.n_cols))
                    )

    def add_scores(self, lo: int, scores: torch.Tensor) -> None:
        """Rank a ready score matrix ``[rows, n_items + 1]`` of rows ``lo..lo + rows``."""
        if scores.ndim != 2 or scores.shape[1] != self.n_cols:
            raise ConfigError(
                f"evaluate: the model returned scores of shape {tuple(scores.shape)}, expected [rows, {self.n_cols}]"
            )
        with self._batch():
            for s in range(0, scores.shape[0], self.block_rows):
                block = scores[s : s + self.block_rows]
                self._rank_block(lo + s, lambda out, b=block: _score_rows(b, out, self.n_cols))

    # ---------------------------------------------------------------------- ranking
    @contextlib.contextmanager
    def _batch(self) -> Iterator[None]:
        """On the Rust path, one batch's blocks are ranked with torch at one thread and finished
        before the caller goes on, so that the caller's next forward pass runs at its own thread
        count instead of beside the workers (on a small machine the phases then each use every
        core in turn)."""
        if self.selection != "rust":
            yield
            return
        with _one_torch_thread():
            try:
                yield
            finally:
                self._drain()

    def _drain(self) -> None:
        """Wait for every pending block; the first error (if any) is raised after all finished."""
        error: BaseException | None = None
        for slot in range(len(self._pending)):
            try:
                self._wait(slot)
            except BaseException as e:  # noqa: BLE001 - re-raised below, after the others finished
                error = error or e
        if error is not None:
            raise error

    def _free_slot(self) -> int:
        """The next slot, once its pending block is finished (its buffer is then free again)."""
        slot, self._slot = self._slot, (self._slot + 1) % len(self._pending)
        self._wait(slot)
        return slot

    def _rank_block(self, lo: int, score: Callable[[torch.Tensor | None], torch.Tensor]) -> None:
        slot = self._free_slot()
        if self.selection == "rust":
            self._pending[slot] = self._pool.submit(self._score_select, lo, score, self._bufs[slot])
        else:
            ids = self._select_torch(lo, score(None)).cpu().numpy()
            self._pending[slot] = self._pool.submit(self._metrics_from_ids, lo, ids)

    def _rank_tiled(self, lo: int, queries: torch.Tensor) -> None:
        slot = self._free_slot()
        self._pending[slot] = self._pool.submit(self._tiled_select, lo, queries, self._bufs[slot])

    def _tiled_select(self, lo: int, queries: torch.Tensor, buf: torch.Tensor) -> None:
        """Scores one block of query rows tile by tile into ``buf`` and ranks each tile at once."""
        import torch

        rows = queries.shape[0]
        q = _pad_rows(queries, MIN_BLOCK)
        stream = core.TopkStream(rows, list(self.ks), *self._seen_block(lo, lo + rows), min_item=1)
        flat = buf.numpy()
        with torch.no_grad():  # grad mode is per thread: the caller's no_grad does not reach here
            for w, c0 in self._tiles:
                width = w.shape[1]
                out = buf[: q.shape[0] * width].view(q.shape[0], width)
                torch.mm(q, w, out=out)
                stream.feed(flat[: rows * width].reshape(rows, width), c0)
        self._store(lo, stream.finish(*self._truth(lo, lo + rows)))

    def _wait(self, slot: int) -> None:
        f, self._pending[slot] = self._pending[slot], None
        if f is not None:
            f.result()

    def _truth(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        return np.arange(hi - lo + 1, dtype=np.int64), self.targets[lo:hi]

    def _seen_block(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
        return (None, None) if self.seen is None else _slice_csr(*self.seen, lo, hi)

    def _score_select(self, lo: int, score: Callable[[torch.Tensor | None], torch.Tensor], buf: torch.Tensor) -> None:
        import torch

        with torch.no_grad():  # grad mode is per thread: the caller's no_grad does not reach here
            out = score(buf)
        self._select_rust(lo, out.float().numpy())

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
            self._drain()
        finally:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> BlockRanker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def result(self) -> core.TopkMetrics:
        """Per-row metrics of every row (NaN for rows never fed) and the top-k ids if asked."""
        for slot in range(len(self._pending)):
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
    workers: int | None = None,
) -> core.TopkMetrics:
    """Rank all items for query vectors ``[rows, d]`` against ``table [n_items + 1, d]`` (row 0 =
    padding, never ranked): per-row metrics against one target per row, seen items (CSR
    ``(offsets, items)``) removed if given. The scoring half of :func:`evaluate`."""
    ks = _check_ks(ks)
    sel = _default_selection(table.device) if selection is None else selection
    rows = _default_block_rows(table.device, table.shape[0]) if block_rows is None else block_rows
    threads = _default_workers(table.device) if workers is None else workers
    with BlockRanker(table.shape[0], ks, targets, seen, table, sel, rows, return_topk, threads) as ranker:
        ranker.add_queries(0, queries)
        return ranker.result()


# ------------------------------------------------------------------------- evaluate
def _check_ks(ks: Sequence[int]) -> list[int]:
    """The cut-offs, sorted and distinct: integers from 1 to :data:`MAX_K` (each is a buffer of k
    slots per ranked row in the core; 10**11 aborted the process)."""
    ks = list(ks)
    if not ks or not all(isinstance(k, numbers.Integral) and not isinstance(k, bool) and 1 <= k <= MAX_K for k in ks):
        raise ConfigError(f"evaluate: ks must be integers from 1 to {MAX_K}, got {ks}")
    return sorted({int(k) for k in ks})


def _default_selection(device: torch.device) -> Selection:
    return "rust" if device.type == "cpu" else "torch"


def _default_workers(device: torch.device) -> int | None:
    """On the CPU, one scoring-and-ranking thread per torch thread (the caller's setting, read
    before any ranker sets torch to one thread), at most one per core: more only compete for
    the cores, and a very large torch setting would start more threads than the OS allows."""
    import torch

    if device.type != "cpu":
        return None
    threads = _saved_threads if _threads_depth else torch.get_num_threads()
    return max(1, min(threads, os.cpu_count() or 1, THREAD_LIMIT))


_threads_lock = threading.Lock()
_threads_depth = 0
_saved_threads = 1


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """torch at one intra-op thread while a batch is ranked (nesting-safe: the first one in saves
    the caller's setting, the last one out restores it). One-thread GEMMs in several Python
    threads use every core without the spinning barriers of a multi-threaded GEMM beside a
    selection."""
    import torch

    global _threads_depth, _saved_threads
    with _threads_lock:
        if _threads_depth == 0:
            _saved_threads = torch.get_num_threads()
            torch.set_num_threads(1)
        _threads_depth += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_depth -= 1
            if _threads_depth == 0:
                torch.set_num_threads(_saved_threads)


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


@dataclass
class _Setup:
    """What every protocol's ranker is built from (one forward pass feeds them all)."""

    ds: Any
    inp: Any  # seqdistill.data.sequences.EvalInputs
    ks: list[int]
    n_cols: int
    table: torch.Tensor | None
    device: torch.device
    selection: Selection
    block_rows: int
    workers: int | None
    return_topk: bool = False
    seed: int = 0
    keep_negatives: bool = False


def _check_call(model, ds, ks, batch_size: int, block_rows: int | None, selection: str | None) -> list[int]:
    """Arguments shared by :func:`evaluate` and :func:`evaluate_protocols`, checked before any work."""
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
    if ks[-1] >= ds.n_items:
        warnings.warn(
            f"evaluate: k={ks[-1]} is not below the catalogue's {ds.n_items} items: every item is in the top "
            f"{ks[-1]}, so Recall and HitRate at that k are 1 for every row and say nothing of the model",
            SeqdistillWarning,
            stacklevel=3,
        )
    return ks


def _setup(model, ds, part: str, ks: list[int], device: str | None, selection, block_rows, **extra: Any) -> _Setup:
    import torch

    from seqdistill.data.sequences import eval_inputs

    inp = eval_inputs(ds, part, model.input_length)
    dev = torch.device(device) if device is not None else model.device
    table = _item_table(model)
    n_cols = ds.n_items + 1
    return _Setup(
        ds=ds,
        inp=inp,
        ks=ks,
        n_cols=n_cols,
        table=None if table is None else table.to(dev),
        device=dev,
        selection=_default_selection(dev) if selection is None else selection,
        block_rows=_default_block_rows(dev, n_cols) if block_rows is None else block_rows,
        workers=_default_workers(dev),
        **extra,
    )


@contextlib.contextmanager
def _inference(model) -> Iterator[None]:
    """The model in eval mode without autograd; its training flag is restored afterwards."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _forward(
    model, setup: _Setup, batch_size: int, rankers: Sequence[Any], desc: str | None
) -> tuple[float, list[float]]:
    """Run the forward pass ``batch_size`` rows at a time and hand every batch's outputs to each
    ranker (``ranker.add(lo, out)``). Returns the forward seconds and the seconds each ranker took;
    ``desc`` shows a progress bar."""
    import torch

    windows, dev = setup.inp.windows, setup.device
    n = len(windows)
    starts: Any = range(0, n, batch_size)
    if desc is not None:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=desc, unit="batch")
    forward_s, spent = 0.0, [0.0] * len(rankers)
    for lo in starts:
        t0 = time.perf_counter()
        batch = torch.from_numpy(np.ascontiguousarray(windows[lo : lo + batch_size])).to(dev)
        out = model_outputs(model, batch, setup.table)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        forward_s += time.perf_counter() - t0
        for i, ranker in enumerate(rankers):
            t0 = time.perf_counter()
            ranker.add(lo, out)
            spent[i] += time.perf_counter() - t0
    return forward_s, spent


def _means(per_row: dict[str, np.ndarray], n: int) -> dict[str, float]:
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {key: float(np.nanmean(v)) if n else float("nan") for key, v in per_row.items()}


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
    :func:`evaluate_protocols` ranks the same rows under several protocols in one pass.
    """
    ks = _check_call(model, ds, ks, batch_size, block_rows, selection)
    t_start = time.perf_counter()
    setup = _setup(model, ds, part, ks, device, selection, block_rows, return_topk=return_topk)
    inp = setup.inp
    with _inference(model), FullRanking(filter_seen).ranker(setup) as ranker:
        forward_s, _ = _forward(model, setup, batch_size, [ranker], f"evaluate {part}" if progress else None)
        res = ranker.result()
    per_row = {key: res[key] for key in res.keys()}
    settings = {"part": part, "ks": ks, "filter_seen": filter_seen, "max_len": model.input_length}
    timings = {"forward_s": forward_s, "total_s": time.perf_counter() - t_start}
    return EvalResult(_means(per_row, len(inp.users)), per_row, inp.users, inp.targets, res.topk, settings, timings)


# ------------------------------------------------------------------------ protocols
@dataclass(frozen=True)
class Protocol(ABC):
    """One way of ranking a row's target; :func:`evaluate_protocols` runs several on one forward
    pass. A new protocol is a subclass with a :attr:`name`, a JSON :meth:`definition` and a
    :meth:`ranker` fed the model's outputs block by block."""

    @property
    @abstractmethod
    def name(self) -> str:
        """The protocol as written on the command line, e.g. ``"sampled-pop:100"``."""

    @abstractmethod
    def definition(self) -> dict[str, Any]:
        """What the protocol does, as recorded beside its numbers."""

    @abstractmethod
    def ranker(self, setup: _Setup) -> Any:
        """A context manager with ``add(lo, out)`` and ``result() -> core.TopkMetrics``."""


@dataclass(frozen=True)
class FullRanking(Protocol):
    """Every item of the catalogue is a candidate; ``filter_seen`` removes the row's history."""

    filter_seen: bool = False

    @property
    def name(self) -> str:
        return "full_filtered" if self.filter_seen else "full"

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "candidates": "every item",
            "seen_items": "removed" if self.filter_seen else "kept",
        }

    def ranker(self, setup: _Setup) -> BlockRanker:
        inp = setup.inp
        seen = (inp.seen_offsets, inp.seen_items) if self.filter_seen else None
        return BlockRanker(
            setup.n_cols,
            setup.ks,
            inp.targets,
            seen,
            setup.table,
            setup.selection,
            setup.block_rows,
            setup.return_topk,
            setup.workers,
        )


Weighting = Literal["uniform", "popularity"]


@dataclass(frozen=True)
class SampledRanking(Protocol):
    """The target and ``n_negatives`` items drawn for its row (:class:`NegativeSampler`) are the
    candidates; ``weighting="popularity"`` draws in proportion to each item's count in the
    training part (:func:`seqdistill.training.item_counts`: every user's training prefix)."""

    n_negatives: int = 100
    weighting: Weighting = "uniform"

    def __post_init__(self) -> None:
        if isinstance(self.n_negatives, bool) or not isinstance(self.n_negatives, int) or self.n_negatives < 1:
            raise ConfigError(f"protocol: the number of negatives must be an integer >= 1, got {self.n_negatives!r}")
        if self.weighting not in ("uniform", "popularity"):
            raise ConfigError(f"protocol: weighting must be 'uniform' or 'popularity', got {self.weighting!r}")

    @property
    def name(self) -> str:
        return f"{'sampled-pop' if self.weighting == 'popularity' else 'sampled'}:{self.n_negatives}"

    def definition(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "candidates": f"the target and {self.n_negatives} sampled negatives",
            "n_negatives": self.n_negatives,
            "weighting": self.weighting,
            "negatives_exclude": "the target and the row's seen items (its history before the target)",
            "replacement": False,
        }
        if self.weighting == "popularity":
            out["popularity"] = "item counts over every user's training prefix"
        return out

    def ranker(self, setup: _Setup) -> SampledRanker:
        inp = setup.inp
        from seqdistill.training import item_counts

        counts = item_counts(setup.ds) if self.weighting == "popularity" else None
        sampler = NegativeSampler(
            self.n_negatives,
            inp.targets,
            (inp.seen_offsets, inp.seen_items),
            n_items=setup.n_cols - 1,
            counts=counts,
            seed=setup.seed,
        )
        return SampledRanker(sampler, setup.ks, setup.table, setup.device, setup.keep_negatives)


DEFAULT_PROTOCOLS = ("full", "full_filtered", "sampled:100", "sampled-pop:100")
_SAMPLED = re.compile(r"(sampled|sampled-pop):([0-9]+)")


def parse_protocol(text: str | Protocol) -> Protocol:
    """``"full"``, ``"full_filtered"``, ``"sampled:N"`` or ``"sampled-pop:N"`` (N >= 1) as a
    :class:`Protocol`; anything else is a :class:`~seqdistill.errors.ConfigError` naming it."""
    if isinstance(text, Protocol):
        return text
    if text in ("full", "full_filtered"):
        return FullRanking(filter_seen=text == "full_filtered")
    m = _SAMPLED.fullmatch(str(text))
    if m is None or int(m[2]) < 1:
        raise ConfigError(
            f"protocol {text!r}: expected full, full_filtered, sampled:N or sampled-pop:N with N an integer >= 1"
        )
    return SampledRanking(int(m[2]), "popularity" if m[1] == "sampled-pop" else "uniform")


# ------------------------------------------------------------------ sampled negatives
#: Rows per sampling generator and per scored block of a sampled protocol. A block's negatives
#: come from ``numpy.random.default_rng([seed, block index])`` and its scores from one batched
#: product over exactly this many rows, so neither depends on the evaluation batch size.
SAMPLE_BLOCK = 512
#: Rounds of the vectorised draw before a row's remaining negatives are drawn by exact keys.
_STREAM_ROUNDS = 6


def _first_occurrence(keys: np.ndarray) -> np.ndarray:
    """True where an entry of ``keys`` (row-major order) is the first of its value."""
    order = np.argsort(keys, axis=None, kind="stable")
    ranked = keys.ravel()[order]
    first = np.empty(keys.size, dtype=bool)
    first[order] = np.r_[True, ranked[1:] != ranked[:-1]] if keys.size else []
    return first.reshape(keys.shape)


def _isin_sorted(keys: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    if not len(sorted_keys):
        return np.zeros(keys.shape, dtype=bool)
    at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[at] == keys


class NegativeSampler:
    """Negatives for sampled ranking: for every row, ``n_negatives`` distinct items drawn
    without replacement from the items 1..n_items that are neither the row's target nor in its
    ``seen`` CSR set (the history before the target).

    Uniform (``counts=None``) or in proportion to ``counts`` (``[n_items + 1]`` non-negative
    integers; an item with count 0 is never drawn). Draws are successive: each next negative is
    drawn in proportion to the weights of the items still allowed, so column 0 of a row follows
    the weights exactly and the row's columns are in draw order. A row with at most
    ``n_negatives`` allowed items (of positive weight) gets all of them, ascending, and ``-1``
    in the columns left over.

    Rows are drawn :data:`SAMPLE_BLOCK` at a time, block ``b`` from
    ``numpy.random.default_rng([seed, b])``: the same seed and rows give the same negatives on
    any machine, whatever batch size the evaluation runs with. Within a block, rows whose allowed
    weight is at least half the total draw from a vectorised stream (draw, drop excluded and
    repeated items, keep the first ones); the others, and rows the stream has not filled after a
    few rounds, take their remaining negatives as the smallest of exponential keys
    ``E_i / weight_i`` over the allowed items. Both give the same successive distribution.
    """

    def __init__(
        self,
        n_negatives: int,
        targets: np.ndarray,
        seen: tuple[np.ndarray, np.ndarray] | None = None,
        *,
        n_items: int,
        counts: np.ndarray | None = None,
        seed: int = 0,
    ) -> None:
        if isinstance(n_negatives, bool) or int(n_negatives) != n_negatives or n_negatives < 1:
            raise ConfigError(f"NegativeSampler: n_negatives must be an integer >= 1, got {n_negatives!r}")
        seed = seed_arg("NegativeSampler", seed)
        self.n_negatives, self.n_items, self.seed = int(n_negatives), int(n_items), seed
        #: Columns of the result: a row never has more than n_items - 1 items to draw from.
        self.width = min(self.n_negatives, max(self.n_items - 1, 0))
        if self.n_negatives > self.n_items - 1:
            warnings.warn(
                f"{self.n_negatives} sampled negatives asked for, but the catalogue has {self.n_items} items: every "
                f"row ranks its target against all of at most {max(self.n_items - 1, 0)} other items, so the "
                "figures are not those of the sampled protocol named",
                SeqdistillWarning,
                stacklevel=2,
            )
        self.targets = np.ascontiguousarray(targets, dtype=np.int64)
        n = len(self.targets)
        if seen is None:
            seen = (np.zeros(n + 1, dtype=np.int64), np.zeros(0, dtype=np.int64))
        self.seen = (np.asarray(seen[0], dtype=np.int64), np.asarray(seen[1], dtype=np.int64))
        if len(self.seen[0]) != n + 1:
            raise ConfigError(f"NegativeSampler: seen offsets have {len(self.seen[0])} entries, expected {n + 1}")
        if n and (self.targets.min() < 1 or self.targets.max() > self.n_items):
            raise ConfigError(f"NegativeSampler: targets must be dense items 1..{self.n_items}")
        if counts is None:
            weights = np.ones(self.n_items + 1, dtype=np.int64)
        else:
            weights = np.array(counts, dtype=np.int64)
            if weights.shape != (self.n_items + 1,) or (weights < 0).any():
                raise ConfigError(
                    f"NegativeSampler: counts must be {self.n_items + 1} non-negative integers (entry 0 = padding)"
                )
        weights[0] = 0
        self.weights, self.uniform = weights, counts is None
        self._cum = np.cumsum(weights[1:])
        self._total = int(self._cum[-1]) if len(self._cum) else 0
        self._positive = int((weights > 0).sum())
        self._stride = self.n_items + 1

    @property
    def n_rows(self) -> int:
        return len(self.targets)

    @property
    def n_blocks(self) -> int:
        return -(-self.n_rows // SAMPLE_BLOCK)

    def all(self) -> np.ndarray:
        """Every row's negatives, int64 ``[rows, width]`` (``width = min(n_negatives, n_items - 1)``;
        -1 = fewer allowed items)."""
        blocks = [self.block(b) for b in range(self.n_blocks)]
        return np.concatenate(blocks) if blocks else np.zeros((0, self.width), dtype=np.int64)

    def block(self, b: int) -> np.ndarray:
        """The negatives of rows ``b * SAMPLE_BLOCK`` up to the next block."""
        lo = b * SAMPLE_BLOCK
        if not 0 <= lo < self.n_rows:
            raise IndexError(f"NegativeSampler.block: block {b} is outside 0..{self.n_blocks - 1}")
        hi = min(self.n_rows, lo + SAMPLE_BLOCK)
        rng = np.random.default_rng([self.seed, b])
        excluded = self._excluded(lo, hi)
        row_of, item_of = np.divmod(excluded, self._stride)
        rows, w = hi - lo, self.weights
        allowed = self._positive - np.bincount(row_of, weights=w[item_of] > 0, minlength=rows).astype(np.int64)
        mass = self._total - np.rint(np.bincount(row_of, weights=w[item_of], minlength=rows)).astype(np.int64)
        out = np.full((rows, self.width), -1, dtype=np.int64)
        filled = np.zeros(rows, dtype=np.int64)
        every = allowed <= self.n_negatives
        for r in np.flatnonzero(every):
            ids = np.flatnonzero(self._allowed(r, excluded, row_of))
            out[r, : len(ids)], filled[r] = ids, len(ids)
        self._stream(rng, out, filled, excluded, np.flatnonzero(~every & (2 * mass >= self._total)), mass)
        for r in np.flatnonzero(~every & (filled < self.n_negatives)):
            self._exact(rng, out, filled, r, self._allowed(r, excluded, row_of, out[r, : filled[r]]))
        return out

    # ------------------------------------------------------------------ the two draws
    def _excluded(self, lo: int, hi: int) -> np.ndarray:
        """Sorted keys ``row * (n_items + 1) + item`` of each row's target and seen items."""
        offsets, items = _slice_csr(*self.seen, lo, hi)
        rows = np.arange(hi - lo, dtype=np.int64)
        keys = np.concatenate(
            [np.repeat(rows, np.diff(offsets)) * self._stride + items, rows * self._stride + self.targets[lo:hi]]
        )
        return np.unique(keys)

    def _allowed(
        self, r: int, excluded: np.ndarray, row_of: np.ndarray, chosen: np.ndarray | None = None
    ) -> np.ndarray:
        """Mask over items 0..n_items of what row ``r`` may still draw."""
        a, b = np.searchsorted(row_of, [r, r + 1])
        mask = self.weights > 0
        mask[excluded[a:b] - r * self._stride] = False
        if chosen is not None:
            mask[chosen] = False
        return mask

    def _draw(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        if self.uniform:
            return rng.integers(1, self.n_items + 1, size=shape)
        return np.searchsorted(self._cum, rng.integers(0, self._total, size=shape), side="right") + 1

    def _stream(
        self,
        rng: np.random.Generator,
        out: np.ndarray,
        filled: np.ndarray,
        excluded: np.ndarray,
        rows: np.ndarray,
        mass: np.ndarray,
    ) -> None:
        """Fill ``rows`` by drawing from the weights and keeping, in draw order, the first items
        that are neither excluded nor drawn before; rows left short keep what they have."""
        if not len(rows):
            return
        n = self.n_negatives
        for attempt in range(_STREAM_ROUNDS):
            # about what a typical row needs (draws land on allowed items at rate mass / total);
            # the rows it leaves short draw again, with twice the margin each round
            typical = (n - filled[rows]).max() * self._total / np.median(mass[rows])
            width = int(np.ceil(1.15 * 2**attempt * typical)) + 8
            draws = self._draw(rng, (len(rows), width))
            keys = rows[:, None] * self._stride + draws
            chosen = out[rows]
            taken = np.sort((rows[:, None] * self._stride + chosen)[chosen >= 0])
            ok = _first_occurrence(keys) & ~_isin_sorted(keys, excluded) & ~_isin_sorted(keys, taken)
            rank = np.cumsum(ok, axis=1)
            take = ok & (rank <= (n - filled[rows])[:, None])
            i, j = np.nonzero(take)
            out[rows[i], filled[rows[i]] + rank[i, j] - 1] = draws[i, j]
            filled[rows] += take.sum(axis=1)
            rows = rows[filled[rows] < n]
            if not len(rows):
                return

    def _exact(
        self, rng: np.random.Generator, out: np.ndarray, filled: np.ndarray, r: int, allowed: np.ndarray
    ) -> None:
        """Fill row ``r`` with the allowed items of the smallest keys ``E / weight`` (E ~ Exp(1)),
        in key order: the successive draw without replacement, exactly."""
        ids = np.flatnonzero(allowed)
        need = min(self.n_negatives - int(filled[r]), len(ids))
        keys = rng.standard_exponential(len(ids)) / self.weights[ids]
        pick = np.argpartition(keys, need - 1)[:need] if need < len(ids) else np.arange(len(ids))
        pick = pick[np.argsort(keys[pick], kind="stable")]
        out[r, filled[r] : filled[r] + need] = ids[pick]
        filled[r] += need


def sample_negatives(
    n_negatives: int,
    targets: np.ndarray,
    seen: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    n_items: int,
    counts: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Every row's negatives at once (see :class:`NegativeSampler`)."""
    return NegativeSampler(n_negatives, targets, seen, n_items=n_items, counts=counts, seed=seed).all()


@dataclass(frozen=True)
class SampledCandidates:
    """One block's candidate lists: ``items [rows, 1 + n_negatives]`` ascending (so the core's
    tie rule, lower column first, is the lower item id first), with ``-1`` first in a row that
    has fewer negatives; ``target_col`` is the target's column; ``(pad_offsets, pad_cols)`` is
    the CSR set of the ``-1`` columns, which are never ranked."""

    items: np.ndarray
    target_col: np.ndarray
    pad_offsets: np.ndarray
    pad_cols: np.ndarray


def sampled_candidates(targets: np.ndarray, negatives: np.ndarray) -> SampledCandidates:
    """The candidate lists of rows with these targets and negatives (see :class:`SampledCandidates`)."""
    targets = np.asarray(targets, dtype=np.int64)
    items = np.sort(np.concatenate([targets[:, None], negatives], axis=1), axis=1)
    target_col = (items < targets[:, None]).sum(axis=1)
    n_pad = (negatives < 0).sum(axis=1)
    pad_offsets = np.concatenate([[0], np.cumsum(n_pad)]).astype(np.int64)
    pad_cols = np.arange(pad_offsets[-1], dtype=np.int64) - np.repeat(pad_offsets[:-1], n_pad)
    return SampledCandidates(items, target_col.astype(np.int64), pad_offsets, pad_cols)


class SampledRanker:
    """Ranks each row's target among its sampled candidates, :data:`SAMPLE_BLOCK` rows at a time.

    Fed like :class:`BlockRanker` (``add(lo, out)`` for consecutive rows): query vectors are
    kept until their block is complete, then scored against the candidates' rows of ``table``
    only (``[block, 1 + n, d] x [block, d, 1]`` as one batched product over exactly
    :data:`SAMPLE_BLOCK` rows, zero rows padding the last block); a model without a table gives
    score rows, from which the candidates' columns are taken as they are. The core's
    ``topk_metrics`` then ranks each row's candidates with the full ranking's rule.
    """

    def __init__(
        self,
        sampler: NegativeSampler,
        ks: Sequence[int],
        table: torch.Tensor | None = None,
        device: torch.device | str = "cpu",
        keep_negatives: bool = False,
    ) -> None:
        import torch

        self.sampler, self.ks, self.table = sampler, tuple(ks), table
        self.device = torch.device(device)
        n = sampler.n_rows
        self._values = {name: np.full((len(self.ks), n), np.nan) for name in METRICS}
        self.negatives = np.full((n, sampler.width), -1, dtype=np.int64) if keep_negatives else None
        self._block: int | None = None
        self._lo = self._rows = self._have = 0
        self._cands: SampledCandidates | None = None
        self._items: torch.Tensor | None = None
        self._buf: torch.Tensor | None = None

    def add(self, lo: int, out: torch.Tensor) -> None:
        """Rows ``lo..lo + len(out)``: query vectors (with a table) or score rows ``[rows, n_items + 1]``."""
        if self.table is None and (out.ndim != 2 or out.shape[1] != self.sampler.n_items + 1):
            raise ConfigError(
                f"evaluate: the model returned scores of shape {tuple(out.shape)}, "
                f"expected [rows, {self.sampler.n_items + 1}]"
            )
        s = 0
        while s < out.shape[0]:
            b, off = divmod(lo + s, SAMPLE_BLOCK)
            if b != self._block:
                self._open(b)
            if off != self._have:
                raise ConfigError(f"SampledRanker.add: rows must come in order; got row {lo + s}")
            take = min(out.shape[0] - s, self._rows - off)
            self._put(off, out[s : s + take])
            s += take
            if self._have == self._rows:
                self._rank()

    def _open(self, b: int) -> None:
        import torch

        negatives = self.sampler.block(b)
        self._lo, self._rows, self._have, self._block = b * SAMPLE_BLOCK, len(negatives), 0, b
        targets = self.sampler.targets[self._lo : self._lo + self._rows]
        self._cands = sampled_candidates(targets, negatives)
        if self.negatives is not None:
            self.negatives[self._lo : self._lo + self._rows] = negatives
        rows = SAMPLE_BLOCK if self.table is not None else self._rows
        items = torch.zeros((rows, self._cands.items.shape[1]), dtype=torch.int64)
        items[: self._rows] = torch.from_numpy(np.maximum(self._cands.items, 0))
        self._items = items.to(self.device)
        if self.table is not None:
            self._buf = torch.zeros((SAMPLE_BLOCK, self.table.shape[1]), dtype=self.table.dtype, device=self.device)
        else:
            self._buf = torch.empty(items.shape, dtype=torch.float32, device=self.device)

    def _put(self, off: int, out: torch.Tensor) -> None:
        assert self._buf is not None and self._items is not None
        rows = slice(off, off + out.shape[0])
        if self.table is not None:
            self._buf[rows].copy_(out)
        else:
            self._buf[rows].copy_(out.float().gather(1, self._items[rows].to(out.device)))
        self._have += out.shape[0]

    def _rank(self) -> None:
        import torch

        assert self._buf is not None and self._items is not None and self._cands is not None
        if self.table is not None:
            scores = torch.bmm(self.table[self._items], self._buf.unsqueeze(2)).squeeze(2)[: self._rows]
        else:
            scores = self._buf
        block = np.ascontiguousarray(scores.float().cpu().numpy(), dtype=np.float32)
        c = self._cands
        res = core.topk_metrics(
            block, self.ks, np.arange(self._rows + 1), c.target_col, c.pad_offsets, c.pad_cols, min_item=0
        )
        for name in METRICS:
            self._values[name][:, self._lo : self._lo + self._rows] = getattr(res, name)
        self._buf = self._items = None

    def result(self) -> core.TopkMetrics:
        """Per-row metrics of every row (NaN for rows never fed); no top-k ids."""
        return core.TopkMetrics(ks=list(self.ks), topk=None, **self._values)

    def close(self) -> None:
        """Nothing to wait for (blocks are ranked as they complete)."""

    def __enter__(self) -> SampledRanker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ------------------------------------------------------------------ side by side
def evaluate_protocols(
    model,
    ds,
    protocols: Sequence[str | Protocol] = DEFAULT_PROTOCOLS,
    part: str = "test",
    ks: Sequence[int] = (5, 10, 20),
    seed: int = 0,
    batch_size: int = 1024,
    device: str | None = None,
    progress: bool = False,
    selection: Selection | None = None,
    block_rows: int | None = None,
    return_negatives: bool = False,
) -> dict[str, EvalResult]:
    """Evaluate one model under several protocols on one forward pass; ``{name: EvalResult}``
    in the order given.

    ``protocols``: names (:func:`parse_protocol`: ``full``, ``full_filtered``, ``sampled:N``,
    ``sampled-pop:N``) or :class:`Protocol` objects. ``seed`` fixes the sampled negatives
    (:class:`NegativeSampler`); ``return_negatives`` keeps them in ``EvalResult.negatives``.
    ``full``/``full_filtered`` give exactly what ``evaluate(filter_seen=False/True)`` gives.
    Other arguments as :func:`evaluate`; no result depends on ``batch_size``, ``block_rows`` or
    ``selection``. ``timings``: ``forward_s`` (shared), ``rank_s`` (this protocol), ``total_s``.
    """
    parsed = [parse_protocol(p) for p in protocols]
    names = [p.name for p in parsed]
    if not parsed or len(set(names)) != len(names):
        raise ConfigError(f"evaluate: protocols must be given, each once; got {names}")
    seed = seed_arg("evaluate", seed)
    ks = _check_call(model, ds, ks, batch_size, block_rows, selection)
    t_start = time.perf_counter()
    setup = _setup(model, ds, part, ks, device, selection, block_rows, seed=int(seed), keep_negatives=return_negatives)
    inp = setup.inp
    with _inference(model), contextlib.ExitStack() as stack:
        rankers = [stack.enter_context(p.ranker(setup)) for p in parsed]
        forward_s, spent = _forward(model, setup, batch_size, rankers, f"evaluate {part}" if progress else None)
        results = []
        for i, ranker in enumerate(rankers):
            t0 = time.perf_counter()
            results.append(ranker.result())
            spent[i] += time.perf_counter() - t0
    total_s = time.perf_counter() - t_start
    out: dict[str, EvalResult] = {}
    for p, ranker, res, rank_s in zip(parsed, rankers, results, spent):
        per_row = {key: res[key] for key in res.keys()}
        settings = {
            "part": part,
            "ks": ks,
            "protocol": p.definition(),
            "seed": int(seed),
            "max_len": model.input_length,
        }
        timings = {"forward_s": forward_s, "rank_s": rank_s, "total_s": total_s}
        negatives = getattr(ranker, "negatives", None)
        out[p.name] = EvalResult(
            _means(per_row, len(inp.users)), per_row, inp.users, inp.targets, res.topk, settings, timings, negatives
        )
    return out


def protocol_table(
    results: dict[str, EvalResult], metrics: Sequence[str] = ("ndcg", "hit_rate"), ks: Sequence[int] | None = None
) -> list[list[Any]]:
    """The side-by-side table as rows: a header ``["protocol", "ndcg@5", ...]`` (each metric at
    each k), then per protocol its name and mean values (floats, unformatted)."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ConfigError(f"protocol_table: unknown metric {unknown[0]!r}; expected one of {list(METRICS)}")
    if ks is None:
        ks = next(iter(results.values())).settings["ks"] if results else []
    columns = [f"{m}@{k}" for m in metrics for k in ks]
    return [["protocol", *columns], *([name, *(res.means[c] for c in columns)] for name, res in results.items())]


def format_table(rows: Sequence[Sequence[Any]], digits: int = 4) -> str:
    """Rows from :func:`protocol_table` as aligned text (numbers with ``digits`` decimals)."""
    cells = [[c if isinstance(c, str) else f"{c:.{digits}f}" for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))] if cells else []

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    if not cells:
        return ""
    return "\n".join([line(cells[0]), line(["-" * w for w in widths]), *(line(r) for r in cells[1:])])
