"""Full-ranking top-k metrics: seqdistill's Rust ``_core.topk_metrics`` vs torch.topk + numpy.

Random float32 scores (generated chunk by chunk, so memory stays bounded) and one random target
per row; both sides rank items 1..n_items (item 0 = padding excluded) and compute NDCG, Recall,
HitRate and MRR at 5/10/20. Results are compared (top-k ids and every metric); seconds (scoring
generation excluded) and the ratio baseline/ours are printed.

    python benches/evaluate.py [--cases 10000x40000,20000x330000] [--chunk 1024] [--json out.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write_json  # noqa: E402

from seqdistill import _core  # noqa: E402

KS = [5, 10, 20]


def baseline(scores: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """torch.topk over items 1.. then numpy metrics (one target per row)."""
    s = torch.from_numpy(scores)[:, 1:]
    top = torch.topk(s, max(KS), dim=1, sorted=True).indices.numpy() + 1
    out: dict[str, np.ndarray] = {"topk": top}
    hit = top == targets[:, None]
    pos = np.where(hit.any(axis=1), hit.argmax(axis=1), np.iinfo(np.int64).max)
    for k in KS:
        found = pos < k
        out[f"ndcg@{k}"] = np.where(found, 1.0 / np.log2(np.minimum(pos, k) + 2.0), 0.0)
        out[f"recall@{k}"] = found.astype(np.float64)
        out[f"hit_rate@{k}"] = found.astype(np.float64)
        out[f"mrr@{k}"] = np.where(found, 1.0 / (np.minimum(pos, k) + 1.0), 0.0)
    return out


def run_case(n_rows: int, n_items: int, chunk: int, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    ours_s = base_s = 0.0
    same = True
    tie_rows = 0
    for lo in range(0, n_rows, chunk):
        m = min(chunk, n_rows - lo)
        scores = torch.rand(m, n_items + 1, generator=gen).numpy()
        targets = rng.integers(1, n_items + 1, size=m).astype(np.int64)
        gt_off = np.arange(m + 1, dtype=np.int64)
        t0 = time.perf_counter()
        ours = _core.topk_metrics(scores, KS, gt_off, targets, None, None, min_item=1)
        t1 = time.perf_counter()
        ref = baseline(scores, targets)
        t2 = time.perf_counter()
        ours_s += t1 - t0
        base_s += t2 - t1
        # float32 random scores do tie; torch.topk orders ties arbitrarily, ours by lower id.
        # Same result = the same score at every rank (ids may differ only inside a tie).
        same &= bool(np.array_equal(np.take_along_axis(scores, ours["topk"], 1), np.take_along_axis(scores, ref["topk"], 1)))
        tie_rows += int((ours["topk"] != ref["topk"]).any(axis=1).sum())
        for key in ref:
            if key != "topk":
                same &= bool(np.allclose(ours[key], ref[key], rtol=1e-12, atol=0))
    return {
        "case": f"{n_rows} users x {n_items} items",
        "ours_s": round(ours_s, 4),
        "baseline": "torch.topk + numpy metrics",
        "baseline_s": round(base_s, 4),
        "ratio": round(base_s / max(ours_s, 1e-12), 2),
        "same_result": same,
        "rows_with_tie_order_differences": tie_rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="10000x40000,20000x330000", help="comma list of ROWSxITEMS")
    ap.add_argument("--chunk", type=int, default=1024, help="rows per scored block")
    ap.add_argument("--json", default=None, help="write results to this JSON file")
    args = ap.parse_args()
    print(f"machine: {machine()}; torch threads: {torch.get_num_threads()}")
    rows = []
    for case in args.cases.split(","):
        n_rows, n_items = (int(x) for x in case.lower().split("x"))
        r = run_case(n_rows, n_items, args.chunk)
        rows.append(r)
        print(f"{r['case']:>30}: ours {r['ours_s']:.3f} s, {r['baseline']} {r['baseline_s']:.3f} s, "
              f"ratio {r['ratio']:.2f}x, same result: {r['same_result']}", flush=True)
    write_json(args.json, "evaluate", rows)


if __name__ == "__main__":
    main()
