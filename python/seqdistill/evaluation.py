"""Full-ranking evaluation: torch scores every item, the Rust core picks the top-k and scores it.

Rows (one per validation/test target) are scored ``batch_size`` at a time (the ``[rows, items]``
float32 block is the only large buffer), and each block goes to
``seqdistill._core.topk_metrics`` with ``min_item=1`` (padding is never ranked). The Rust call
releases the GIL, so it runs in a worker thread while torch scores the next block.

Protocol: the paper ranks the whole catalogue WITHOUT removing the user's seen items, which is
``filter_seen=False`` (the default here). ``filter_seen=True`` removes every item of the row's
input history from the candidates (the more common protocol in other papers).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

__all__ = ["EvalResult", "evaluate", "METRICS"]

METRICS = ("ndcg", "recall", "hit_rate", "mrr")


@dataclass
class EvalResult:
    """Mean metrics (NaN-skipping), per-row metric arrays aligned with ``users`` (for paired
    tests), and optionally each row's top-k dense item ids (-1 where fewer candidates)."""

    means: dict[str, float]
    per_row: dict[str, np.ndarray]
    users: np.ndarray
    targets: np.ndarray
    topk: np.ndarray | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (means and settings, not the per-row arrays)."""
        return {"means": dict(self.means), "n_rows": int(len(self.users)), **self.settings}


def _slice_csr(offsets: np.ndarray, values: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = int(offsets[lo]), int(offsets[hi])
    return np.ascontiguousarray(offsets[lo : hi + 1] - a, dtype=np.int64), np.ascontiguousarray(values[a:b], dtype=np.int64)


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
) -> EvalResult:
    """Rank all items for every ``part`` target of ``ds`` and compute NDCG/Recall/HitRate/MRR@k.

    ``model`` is a :class:`~seqdistill.models.SequentialRecommender` (its ``input_length``
    decides the history window). ``filter_seen=False`` is the paper's protocol (seen items stay
    candidates). Returns an :class:`EvalResult`; keys are ``"ndcg@10"`` etc.
    """
    import torch

    from seqdistill import core
    from seqdistill.data.sequences import eval_inputs

    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"evaluate: ks must be positive integers, got {ks}")
    if batch_size < 1:
        raise ValueError(f"evaluate: batch_size must be >= 1, got {batch_size}")
    if model.config.n_items != ds.n_items:
        raise ValueError(f"evaluate: model has n_items={model.config.n_items} but dataset {ds.name!r} has {ds.n_items}")
    inp = eval_inputs(ds, part, model.input_length)
    n = len(inp.users)
    dev = torch.device(device) if device is not None else model.device
    keys = [f"{m}@{k}" for m in METRICS for k in ks]
    per_row = {key: np.full(n, np.nan) for key in keys}
    topk = np.full((n, ks[-1]), -1, dtype=np.int64) if return_topk else None

    def run_core(lo: int, hi: int, scores: np.ndarray) -> None:
        gt_off = np.arange(hi - lo + 1, dtype=np.int64)
        gt = np.ascontiguousarray(inp.targets[lo:hi], dtype=np.int64)
        seen_off, seen = _slice_csr(inp.seen_offsets, inp.seen_items, lo, hi) if filter_seen else (None, None)
        out = core.topk_metrics(scores, ks, gt_off, gt, seen_off, seen, min_item=1)
        for key in keys:
            per_row[key][lo:hi] = out[key]
        if topk is not None:
            topk[lo:hi] = out.topk

    was_training = model.training
    model.eval()
    pending: Future | None = None
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"evaluate {part}", unit="batch")
    try:
        with torch.no_grad(), ThreadPoolExecutor(max_workers=1) as pool:
            for lo in starts:
                hi = min(n, lo + batch_size)
                win = torch.from_numpy(np.ascontiguousarray(inp.windows[lo:hi])).to(dev)
                scores = model.next_item_scores(win).float().cpu().numpy()
                scores = np.ascontiguousarray(scores, dtype=np.float32)
                if pending is not None:
                    pending.result()
                pending = pool.submit(run_core, lo, hi, scores)
            if pending is not None:
                pending.result()
    finally:
        model.train(was_training)

    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            means = {key: float(np.nanmean(v)) if n else float("nan") for key, v in per_row.items()}
    settings = {"part": part, "ks": ks, "filter_seen": filter_seen, "max_len": model.input_length}
    return EvalResult(means, per_row, inp.users, inp.targets, topk, settings)
