"""IDGenRec vs SASRec on the same data: training seconds per epoch and test-inference seconds.

The measurable half of the paper's Table 5 without pretrained weights: IDGenRec's two T5 models
start random (``--t5 tiny``: d_model 64, 2 layers; ``--t5 small``: the shape of t5-small,
d_model 512, 6 layers, 8 heads, d_ff 2048), so its times are those of the architecture, not of a
trained model. Accuracy of a random T5 is not a result and is not reported. One difference from
a real run moves the times: a random generator writes IDs of the maximum length (``mean_id_tokens``
in the JSON); a pretrained one writes shorter IDs, so its inputs and beams are shorter
(``--max-id-tokens 3`` caps them at four tokens to see how much that changes).

Both models see the same prepared dataset (the synthetic generator) and rank the same test rows:
SASRec (hidden 64, 2 blocks, batch 256) by full ranking + the Rust metrics; IDGenRec by beam
search of width ``--beams`` constrained to the catalogue's IDs. A SASRec epoch covers every
training transition once (sliding windows), an IDGenRec recommender epoch every transition once
(one seq2seq example each); the generator epoch and the ID regeneration are timed as rows of their
own. Ratios are IDGenRec / SASRec (the paper: 1.5-2.3x training, 50-180x inference on a GPU).

    python benches/idgenrec.py [--users 1000 --items 300] [--t5 tiny|small] [--device cpu] [--json out.json]
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

from seqdistill.data import SplitConfig, prepare  # noqa: E402
from seqdistill.evaluation import evaluate  # noqa: E402
from seqdistill.models import ModelConfig, build_model  # noqa: E402
from seqdistill.models.idgenrec import IDGenRec, IDGenRecConfig, evaluate_idgenrec, item_texts  # noqa: E402
from seqdistill.models.idgenrec.train import (  # noqa: E402
    _frozen,
    _optimizer,
    generator_epoch,
    recommender_epoch,
    training_transitions,
)
from seqdistill.training import TrainConfig, Trainer  # noqa: E402

T5_SHAPES = {
    "tiny": {"d_model": 64, "num_layers": 2, "num_heads": 4, "d_ff": 256},
    "small": {"d_model": 512, "num_layers": 6, "num_heads": 8, "d_ff": 2048},
}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def sasrec_times(ds, device: str) -> tuple[float, float, int]:
    """SASRec seconds per epoch, test-inference seconds and test rows."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="sasrec", n_items=ds.n_items, max_len=50, hidden=64, n_blocks=2, n_heads=2))
    tc = TrainConfig(epochs=1, batch_size=256, lr=1e-3, device=device, progress=False, patience=None, validate=False)
    hist = Trainer(model, ds, tc).fit()
    sync(device)
    t0 = time.perf_counter()
    res = evaluate(model, ds, "test", ks=(10, 20))
    sync(device)
    return hist[0]["seconds"], time.perf_counter() - t0, len(res.users)


def idgenrec_times(ds, args) -> dict[str, float]:
    """IDGenRec: ID assignment, one generator epoch, one recommender epoch, test inference (seconds)."""
    torch.manual_seed(0)
    cfg = IDGenRecConfig(
        **T5_SHAPES[args.t5],
        vocab_size=args.vocab,
        device=args.device,
        num_beams=args.beams,
        max_id_tokens=args.max_id_tokens,
    )
    model = IDGenRec.create(cfg, item_texts(ds), ds.item_ids).to(args.device)
    tr = training_transitions(ds)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    model.assign_ids()
    out = {"assign_s": time.perf_counter() - t0}
    out["mean_id_tokens"] = float(np.mean([len(k) for k in model.keys[1:]]))
    _frozen(model.recommender, False)
    opt = _optimizer(model.recommender.parameters(), cfg.rec_lr, cfg, 10**6)
    sync(args.device)
    t0 = time.perf_counter()
    recommender_epoch(model, tr, rng, *opt)
    sync(args.device)
    out["rec_epoch_s"] = time.perf_counter() - t0
    if not args.no_generator:
        _frozen(model.recommender, True)
        opt = _optimizer(model.generator.parameters(), cfg.id_lr, cfg, 10**6)
        t0 = time.perf_counter()
        generator_epoch(model, tr, rng, *opt)
        sync(args.device)
        out["id_epoch_s"] = time.perf_counter() - t0
        _frozen(model.recommender, False)
    t0 = time.perf_counter()
    evaluate_idgenrec(model, ds, "test", ks=(10, 20), beams=args.beams)
    sync(args.device)
    out["inference_s"] = time.perf_counter() - t0
    out["transitions"] = len(tr)
    return out


def row(case: str, ours: float, baseline: str, theirs: float, **extra) -> dict:
    return {
        "case": case,
        "ours_s": round(ours, 3),
        "baseline": baseline,
        "baseline_s": round(theirs, 3),
        "ratio": round(theirs / max(ours, 1e-12), 2),
        "same_result": None,  # a random T5's accuracy is not a result
        **extra,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--t5", choices=sorted(T5_SHAPES), default="tiny")
    ap.add_argument("--vocab", type=int, default=32000, help="word-tokenizer vocabulary cap")
    ap.add_argument("--beams", type=int, default=20)
    ap.add_argument(
        "--max-id-tokens", type=int, default=10, help="ID length cap (the paper: 10; a trained generator writes fewer)"
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: leave torch's default)")
    ap.add_argument("--no-generator", action="store_true", help="skip the generator epoch")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from seqdistill import datasets as dsets

    ds = prepare(dsets.synthetic(n_users=args.users, n_items=args.items, seed=0), split=SplitConfig())
    print(f"machine: {machine()}; torch threads: {torch.get_num_threads()}; device {args.device}", flush=True)
    name = f"synthetic {ds.n_users} users x {ds.n_items} items"
    s_epoch, s_inf, n_test = sasrec_times(ds, args.device)
    idg = idgenrec_times(ds, args)
    shape = f"IDGenRec T5-{args.t5} ({T5_SHAPES[args.t5]['d_model']}d x {T5_SHAPES[args.t5]['num_layers']} layers)"
    extra = {
        "t5": args.t5,
        "device": args.device,
        "max_id_tokens": args.max_id_tokens,
        "mean_id_tokens": round(idg["mean_id_tokens"], 2),
        "transitions": idg["transitions"],
    }
    rows = [
        row(f"{name}: training s/epoch", s_epoch, f"{shape} recommender epoch", idg["rec_epoch_s"], **extra),
        row(
            f"{name}: test inference s ({n_test} rows)",
            s_inf,
            f"{shape} constrained beam search, {args.beams} beams",
            idg["inference_s"],
            **extra,
        ),
    ]
    if "id_epoch_s" in idg:
        rows.append(row(f"{name}: training s/epoch", s_epoch, f"{shape} generator epoch", idg["id_epoch_s"], **extra))
    rows.append(
        row(f"{name}: training s/epoch", s_epoch, f"{shape} ID assignment (whole catalogue)", idg["assign_s"], **extra)
    )
    for r in rows:
        print(f"{r['case']}: SASRec {r['ours_s']} s, {r['baseline']} {r['baseline_s']} s ({r['ratio']}x)", flush=True)
    print(f"transitions per epoch: {idg['transitions']}; mean ID length {idg['mean_id_tokens']:.1f} tokens")
    write_json(args.json, "idgenrec", rows)


if __name__ == "__main__":
    main()
