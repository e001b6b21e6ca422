"""Full-ranking evaluation: the Rust top-k against torch, and whole evaluations against the GEMM floor.

Three kinds of case, each checked for identical results before it is timed:

- ``topk``: random float32 scores (generated block by block), one target per row; the core's
  ``topk_metrics`` vs ``torch.topk`` + numpy metrics (NDCG, Recall, HitRate, MRR at 5/10/20,
  items 1..n ranked, padding excluded). Score generation is not timed.
- ``scoring``: a SASRec-sized evaluation without the model: random query vectors and item table
  (hidden 64, default 100k rows x 40k items), ~50 seen items filtered per row, scored and ranked
  by :func:`seqdistill.evaluation.rank_queries` -- against the GEMM alone, ``torch.mm(q, W.T,
  out=buf)`` into one reused buffer over the same rows: for each thread count (1 and torch's)
  the two fastest block sizes of a screening on a fifth of the rows; all are timed in every
  repeat and the fastest median is the floor (named in the output). Also timed: the GEMM alone in the
  tiles ours scores (256 x 1,024, one one-thread GEMM per thread; ours / this = what the
  selection adds), and the loop ``evaluate`` ran before (a fresh score block per 1,024-row
  batch, the core in a worker thread).
- ``evaluate``: ``evaluate()`` of a SASRec (random weights; timings do not depend on them) on a
  random log, seen items filtered, its forward pass timed separately (``forward_s``); the whole
  against its forward pass plus the GEMM floor on the same query vectors. (The selection of a
  batch's last block overlaps the next batch's forward pass, so ``rank_s`` = total - forward
  understates the scoring and ranking.)

Times are medians of ``--repeats`` runs (ours and the baseline interleaved). ``ratio`` is always
baseline / ours; for the GEMM-floor cases ``times_floor`` = ours / floor is printed too.

    python benches/evaluate.py [--only topk,scoring,evaluate] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write_json  # noqa: E402

from seqdistill import core  # noqa: E402
from seqdistill.evaluation import evaluate, rank_queries  # noqa: E402

KS = [5, 10, 20]


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def same_metrics(a: core.TopkMetrics, b: core.TopkMetrics) -> bool:
    """Identical top-k ids and identical per-row metrics (NaN where both are NaN)."""
    return bool(np.array_equal(a.topk, b.topk)) and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a.keys())


# ----------------------------------------------------------------------------------- topk
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


def run_topk_case(n_rows: int, n_items: int, chunk: int, seed: int = 0) -> dict:
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
        ours = core.topk_metrics(scores, KS, gt_off, targets, None, None, min_item=1)
        t1 = time.perf_counter()
        ref = baseline(scores, targets)
        t2 = time.perf_counter()
        ours_s += t1 - t0
        base_s += t2 - t1
        # float32 random scores do tie; torch.topk orders ties arbitrarily, ours by lower id.
        # Same result = the same score at every rank (ids may differ only inside a tie).
        same &= bool(
            np.array_equal(np.take_along_axis(scores, ours.topk, 1), np.take_along_axis(scores, ref["topk"], 1))
        )
        tie_rows += int((ours.topk != ref["topk"]).any(axis=1).sum())
        for key in ref:
            if key != "topk":
                same &= bool(np.allclose(ours[key], ref[key], rtol=1e-12, atol=0))
    return {
        "case": f"topk: {n_rows} users x {n_items} items",
        "ours_s": round(ours_s, 4),
        "baseline": "torch.topk + numpy metrics",
        "baseline_s": round(base_s, 4),
        "ratio": round(base_s / max(ours_s, 1e-12), 2),
        "same_result": same,
        "rows_with_tie_order_differences": tie_rows,
    }


# --------------------------------------------------------------------------- GEMM floor
def gemm_loop(q: torch.Tensor, table: torch.Tensor, block: int) -> None:
    """The floor: every score block of the evaluation computed into one reused buffer."""
    wt = table.t()
    buf = torch.empty(block, table.shape[0])
    for lo in range(0, q.shape[0], block):
        rows = min(block, q.shape[0] - lo)
        torch.mm(q[lo : lo + rows], wt, out=buf[:rows])


def tiled_gemm(q: torch.Tensor, table: torch.Tensor, workers: int, rows: int = 256, cols: int = 1024) -> None:
    """The other floor: the GEMM alone in the tiles ``rank_queries`` uses on the CPU (``workers``
    threads, each one-thread ``torch.mm`` of ``rows x cols`` tiles into its own 1 MiB buffer),
    so that ours / this floor is what the selection adds."""
    wt = table.t()
    chunks = [wt[:, a : a + cols] for a in range(0, wt.shape[1], cols)]
    threads0 = torch.get_num_threads()
    torch.set_num_threads(1)

    def work(w: int) -> None:
        buf = torch.empty(rows * cols)
        for lo in range(w * rows, q.shape[0], workers * rows):
            qq = q[lo : lo + rows]
            for c in chunks:
                torch.mm(qq, c, out=buf[: qq.shape[0] * c.shape[1]].view(qq.shape[0], c.shape[1]))

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(work, range(workers)))
    finally:
        torch.set_num_threads(threads0)


def gemm_candidates(
    q: torch.Tensor, table: torch.Tensor, blocks: list[int], threads: list[int], share: int
) -> tuple[list[tuple[int, int]], list[str]]:
    """For each thread count, the two fastest block sizes of the GEMM-only loop over the first
    ``share`` rows (best of 3). Every candidate is then timed in every repeat and the fastest
    median is the floor: on a shared machine the best setting changes with the load, and a
    screening on a fifth of the rows misjudges close ones."""
    timed: dict[int, list[tuple[float, int]]] = {}
    log = []
    for th in threads:
        torch.set_num_threads(th)
        for b in blocks:
            s = min(median_time(lambda: gemm_loop(q[:share], table, b), 1) for _ in range(3))
            log.append(f"block {b} threads {th}: {s * q.shape[0] / share:.2f} s (extrapolated)")
            timed.setdefault(th, []).append((s, b))
    return [(b, th) for th, results in timed.items() for _, b in sorted(results)[:2]], log


def previous_loop(
    q: torch.Tensor, table: torch.Tensor, targets: np.ndarray, seen: tuple[np.ndarray, np.ndarray], block: int = 1024
) -> np.ndarray:
    """What ``evaluate`` did before reused buffers: a fresh score block per batch, the core in a
    worker thread. Returns the top-k ids (to check the result)."""
    wt = table.t()
    topk = np.empty((q.shape[0], max(KS)), dtype=np.int64)

    def select(lo: int, *args) -> None:
        topk[lo : lo + len(args[3])] = core.topk_metrics(*args, min_item=1).topk

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        for lo in range(0, q.shape[0], block):
            hi = min(q.shape[0], lo + block)
            scores = (q[lo:hi] @ wt).numpy()
            a, b = seen[0][lo], seen[0][hi]
            args = (scores, KS, np.arange(hi - lo + 1), targets[lo:hi], seen[0][lo : hi + 1] - a, seen[1][a:b])
            if pending is not None:
                pending.result()
            pending = pool.submit(select, lo, *args)
        if pending is not None:
            pending.result()
    return topk


def one_shot(
    q: torch.Tensor, table: torch.Tensor, targets: np.ndarray, seen: tuple[np.ndarray, np.ndarray] | None
) -> core.TopkMetrics:
    """Reference: fresh score matrices of near-equal chunks of at most 4,096 rows (each at least
    16 rows when there are), each handed to the core whole."""
    n = q.shape[0]
    parts = []
    for idx in np.array_split(np.arange(n), max(1, -(-n // 4096))):
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        so, si = (
            (seen[0][lo : hi + 1] - seen[0][lo], seen[1][seen[0][lo] : seen[0][hi]])
            if seen is not None
            else (None, None)
        )
        parts.append(
            core.topk_metrics(
                (q[lo:hi] @ table.t()).numpy(), KS, np.arange(hi - lo + 1), targets[lo:hi], so, si, min_item=1
            )
        )
    cat = {name: np.concatenate([getattr(p, name) for p in parts], axis=1) for name in core.METRICS}
    return core.TopkMetrics(ks=tuple(KS), topk=np.concatenate([p.topk for p in parts]), **cat)


def run_scoring_case(
    n_rows: int,
    n_items: int,
    hidden: int,
    n_seen: int,
    repeats: int,
    blocks: list[int],
    variants: list[tuple[int | None, int | None]],
    seed: int = 0,
) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    q = torch.randn(n_rows, hidden, generator=gen)
    table = torch.randn(n_items + 1, hidden, generator=gen) / hidden**0.5
    targets = rng.integers(1, n_items + 1, size=n_rows)
    seen = (np.arange(n_rows + 1, dtype=np.int64) * n_seen, rng.integers(1, n_items + 1, size=n_rows * n_seen))
    threads0 = torch.get_num_threads()
    case = f"scoring: {n_rows} users x {n_items} items x hidden {hidden}, {n_seen} seen/row"

    # Same result first: the timed paths against the whole matrix scored at once.
    m = min(n_rows, 4096)
    ref = one_shot(q[:m], table, targets[:m], (seen[0][: m + 1], seen[1][: seen[0][m]]))
    same = all(
        same_metrics(
            rank_queries(q[:m], table, targets[:m], KS, (seen[0][: m + 1], seen[1][: seen[0][m]]), sel, b, True), ref
        )
        for sel, b in [("rust", None), ("rust", 1000), ("torch", 256)]
    )
    print(f"{case}: same result on the first {m} rows (rust and torch selection): {same}", flush=True)

    candidates, log = gemm_candidates(q, table, blocks, sorted({1, threads0}), share=max(1, n_rows // 5))
    print("  GEMM-only screening: " + "; ".join(log), flush=True)

    def floor(block: int | str, th: int) -> None:
        if block == "tiles":
            tiled_gemm(q, table, th)
            return
        torch.set_num_threads(th)
        gemm_loop(q, table, block)
        torch.set_num_threads(threads0)

    candidates.append(("tiles", threads0))

    results: dict[str, list[float]] = {}
    floors: dict[tuple[int | str, int], list[float]] = {c: [] for c in candidates}
    same_previous = True
    for r in range(repeats):
        for (b, th), times in floors.items():
            times.append(median_time(lambda: floor(b, th), 1))
        for b, th_ours in [(None, None), *variants]:  # (None, None) = evaluate's defaults
            out = {}
            t = median_time(
                lambda: out.setdefault("r", rank_queries(q, table, targets, KS, seen, "rust", b, True, th_ours)), 1
            )
            results.setdefault(f"ours {b} {th_ours}", []).append(t)
            same &= bool(np.array_equal(out["r"].topk[:m], ref.topk))
        prev: dict[str, np.ndarray] = {}
        t_prev = median_time(lambda: prev.setdefault("t", previous_loop(q, table, targets, seen)), 1)
        results.setdefault("previous", []).append(t_prev)
        same_previous &= bool(np.array_equal(prev["t"][:m], ref.topk))
        print(
            f"  repeat {r + 1}: "
            + ", ".join(f"floor {b}x{th} {v[-1]:.2f} s" for (b, th), v in floors.items())
            + ", "
            + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in results.items())
            + f" ({load()})",
            flush=True,
        )

    def floor_name(block: int | str, th: int) -> str:
        if block == "tiles":
            return f"torch.mm alone in 256x1024 tiles, {th} threads of one-thread GEMMs (the GEMM work of ours)"
        return f"torch.mm(out=) into one reused buffer, {block}-row blocks, {th} thread(s)"

    # The floor: the fastest whole-block GEMM loop; the tiled GEMM is reported beside it.
    plain = {c: statistics.median(v) for c, v in floors.items() if c[0] != "tiles"}
    (block, th), floor_s = min(plain.items(), key=lambda x: x[1])
    tiles_s = statistics.median(floors[("tiles", threads0)])
    print(f"  floor: {floor_name(block, th)}: {floor_s:.2f} s", flush=True)
    print(f"  tiled GEMM alone: {floor_name('tiles', threads0)}: {tiles_s:.2f} s", flush=True)

    def row(what: str, seconds: float, same_result: bool | None) -> dict:
        """A JSON row of this case against the floor."""
        return {
            "case": f"{case}: {what}",
            "ours_s": round(seconds, 3),
            "baseline": floor_name(block, th),
            "baseline_s": round(floor_s, 3),
            "ratio": round(floor_s / seconds, 3),
            "same_result": same_result,
            "times_floor": round(seconds / floor_s, 3),
            "repeats": repeats,
            "load_after": load(),
        }

    rows = [row(f"the tiled GEMM alone ({floor_name('tiles', threads0)})", tiles_s, None)]
    for name, times in results.items():
        s = statistics.median(times)
        if name == "previous":
            what = "previous evaluate loop (fresh 1,024-row block per batch, core in a worker)"
        else:
            _, b, th_ours = name.split()
            what = (
                f"rank_queries, rust selection, {b.replace('None', 'default')}-row blocks, "
                f"{th_ours.replace('None', 'default')} worker(s) (each: one-thread GEMM + selection)"
            )
        rows.append(row(what, s, same_previous if name == "previous" else same))
        print(
            f"  {what}: {s:.2f} s = {s / floor_s:.2f}x the GEMM floor ({floor_s:.2f} s), "
            f"{s / tiles_s:.2f}x the tiled GEMM alone",
            flush=True,
        )
    return rows


# ---------------------------------------------------------------------------- evaluate()
def random_dataset(n_users: int, n_items: int, mean_len: int, seed: int = 0):
    import polars as pl

    from seqdistill.data import SplitConfig, prepare

    rng = np.random.default_rng(seed)
    lengths = np.maximum(3, rng.poisson(mean_len, size=n_users))
    users = np.repeat(np.arange(n_users), lengths)
    items = rng.integers(0, n_items, size=len(users))
    items[:n_items] = np.arange(n_items)  # every item occurs
    t = np.arange(len(users))
    df = pl.DataFrame({"user_id": users, "item_id": items, "timestamp": t})
    return prepare(df, k_core=None, split=SplitConfig(kind="leave_one_out"), name="random")


def run_evaluate_case(n_users: int, n_items: int, max_len: int, repeats: int) -> dict:
    from seqdistill.data.sequences import eval_inputs
    from seqdistill.models import ModelConfig, SASRec

    ds = random_dataset(n_users, n_items, mean_len=max_len)
    torch.manual_seed(0)
    model = SASRec(ModelConfig(n_items=ds.n_items, max_len=max_len, hidden=64, n_blocks=2, n_heads=2)).eval()
    inp = eval_inputs(ds, "test", model.input_length)
    case = f"evaluate(): SASRec hidden 64, 2 blocks, max_len {max_len}, {len(inp.users)} users x {ds.n_items} items, seen filtered"
    with torch.no_grad():
        chunks = np.array_split(inp.windows, max(1, -(-len(inp.windows) // 1024)))  # each >= 16 rows
        q = torch.cat([model.next_item_hidden(torch.from_numpy(c)) for c in chunks])
        ref = one_shot(
            q, model.item_emb.weight[: ds.n_items + 1].detach(), inp.targets, (inp.seen_offsets, inp.seen_items)
        )
    res = evaluate(model, ds, "test", ks=KS, filter_seen=True, return_topk=True)
    same = bool(np.array_equal(res.topk, ref.topk)) and all(np.array_equal(res.per_row[k], ref[k]) for k in ref.keys())
    table = model.item_emb.weight[: ds.n_items + 1].detach()
    threads0 = torch.get_num_threads()
    candidates, _ = gemm_candidates(q, table, [64, 128, 1024], sorted({1, threads0}), share=len(q))
    torch.set_num_threads(threads0)
    totals, forwards = [], []
    floors: dict[tuple[int | str, int], list[float]] = {c: [] for c in candidates}
    for _ in range(repeats):
        r = evaluate(model, ds, "test", ks=KS, filter_seen=True)
        totals.append(r.timings["total_s"])
        forwards.append(r.timings["forward_s"])
        for (b, th), times in floors.items():
            torch.set_num_threads(th)
            times.append(median_time(lambda: gemm_loop(q, table, b), 1))
            torch.set_num_threads(threads0)
    (block, th), floor_s = min(((c, statistics.median(v)) for c, v in floors.items()), key=lambda x: x[1])
    total, fwd = statistics.median(totals), statistics.median(forwards)
    rank = total - fwd
    base = fwd + floor_s
    print(
        f"{case}: total {total:.2f} s = forward {fwd:.2f} s + the rest {rank:.2f} s; forward + GEMM floor "
        f"{base:.2f} s (floor {floor_s:.2f} s): {total / base:.2f}x; same result: {same} ({load()})",
        flush=True,
    )
    return {
        "case": case,
        "ours_s": round(total, 3),
        "forward_s": round(fwd, 3),
        "rank_s": round(rank, 3),
        "baseline": f"its forward pass + GEMM-only floor: torch.mm(out=) into one reused buffer, {block}-row blocks, "
        f"{th} thread(s), same query vectors",
        "baseline_s": round(base, 3),
        "gemm_floor_s": round(floor_s, 3),
        "ratio": round(base / total, 3),
        "same_result": same,
        "times_floor": round(total / base, 3),
        "repeats": repeats,
        "load_after": load(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="topk,scoring,evaluate", help="comma list of: topk, scoring, evaluate")
    ap.add_argument("--cases", default="10000x40000,20000x330000", help="topk: comma list of ROWSxITEMS")
    ap.add_argument("--chunk", type=int, default=1024, help="topk: rows per scored block")
    ap.add_argument("--scoring", default="100000x40000x64", help="scoring: ROWSxITEMSxHIDDEN")
    ap.add_argument("--seen", type=int, default=50, help="scoring: seen items filtered per row")
    ap.add_argument("--floor-blocks", default="32,64,128,256,1024", help="scoring: GEMM-only block sizes to screen")
    ap.add_argument("--ours", default="", help="scoring: extra BLOCK:GEMM_THREADS settings for ours (exploration)")
    ap.add_argument("--eval-shape", default="20000x40000x50", help="evaluate: USERSxITEMSxMAX_LEN")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None, help="write results to this JSON file")
    args = ap.parse_args()
    only = set(args.only.split(","))
    print(f"machine: {machine()}; torch threads: {torch.get_num_threads()}; {load()}", flush=True)
    rows = []
    if "topk" in only:
        for case in args.cases.split(","):
            n_rows, n_items = (int(x) for x in case.lower().split("x"))
            r = run_topk_case(n_rows, n_items, args.chunk)
            rows.append(r)
            print(
                f"{r['case']:>30}: ours {r['ours_s']:.3f} s, {r['baseline']} {r['baseline_s']:.3f} s, "
                f"ratio {r['ratio']:.2f}x, same result: {r['same_result']}",
                flush=True,
            )
    if "scoring" in only:
        n_rows, n_items, hidden = (int(x) for x in args.scoring.lower().split("x"))
        blocks = [int(b) for b in args.floor_blocks.split(",")]
        variants = [(int(v.split(":")[0]), int(v.split(":")[1])) for v in args.ours.split(",") if v]
        rows += run_scoring_case(n_rows, n_items, hidden, args.seen, args.repeats, blocks, variants)
    if "evaluate" in only:
        n_users, n_items, max_len = (int(x) for x in args.eval_shape.lower().split("x"))
        rows.append(run_evaluate_case(n_users, n_items, max_len, args.repeats))
    write_json(args.json, "evaluate", rows)


if __name__ == "__main__":
    main()
