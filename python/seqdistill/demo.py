"""``seqdistill demo``: the whole job on the embedded synthetic planted-semantics dataset.

prepare → LLM profiles with SmolLM2 for a sample of users (the others are masked out of the term)
→ encode → reduce → train vanilla and distilled SASRec, plus the shuffled-profile and
statistics-profile controls → evaluate on the test part once → report. Every stage writes into
the run folder and is skipped when its output is already there, so an interrupted demo resumes.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

HIDDEN = 32  # the demo model's hidden size (= profile target size)


def add_demo_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the pipeline end to end on the embedded synthetic dataset")
    p.add_argument("--out", default="runs/demo", help="run folder (resumed when it exists)")
    p.add_argument("--users", type=int, default=2000, help="synthetic users")
    p.add_argument("--items", type=int, default=400, help="synthetic items")
    p.add_argument("--llm-users", type=int, default=64,
                   help="users profiled by the LLM; the rest are masked out of the term (0: statistics profiles only). "
                        "SmolLM2 on a 2-core CPU writes ~0.3 profiles/s, so the default keeps the demo within minutes; "
                        "use a few hundred with more time or a GPU")
    p.add_argument("--max-new-tokens", type=int, default=64, help="LLM tokens per profile")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads for training (1 is fastest on small models)")
    p.set_defaults(func=run_demo)


def demo_config(args: argparse.Namespace, store: Path) -> dict[str, Any]:
    """The demo's experiment configuration (see docs/experiments.md for the fields)."""
    llm = args.llm_users > 0
    return {
        "name": "demo",
        "seeds": list(args.seeds),
        "controls": ["shuffled", "stats"] if llm else ["shuffled"],
        "k_core": [2, 2],
        "eval_ks": [5, 10, 20],
        "dataset": {"name": "synthetic", "kwargs": {"n_users": args.users, "n_items": args.items, "seed": 0, "median_length": 6.0}},
        "split": {"kind": "global_temporal", "quantile": 0.8, "target": "last", "valid": "time", "valid_quantile": 0.8},
        "model": {"kind": "sasrec", "max_len": 50, "hidden": HIDDEN, "n_blocks": 2, "n_heads": 2, "dropout": 0.2},
        "train": {"epochs": args.epochs, "batch_size": 128, "lr": 0.002, "patience": 4, "progress": False},
        "profiles": {"source": "llm" if llm else "stats", "store": str(store) if llm else None, "reduce": "pca", "seed": 0},
        "distill": {"alpha": 0.5, "dynamic_beta": False, "block": -1, "pooling": "mean", "epochs": max(1, args.epochs // 2)},
    }


def run_demo(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from seqdistill.experiments.config import ExperimentConfig
    from seqdistill.experiments.report import report
    from seqdistill.experiments.runner import prepare_dataset, run_experiment

    if 0 < args.llm_users <= HIDDEN:
        raise ValueError(f"--llm-users {args.llm_users}: the reducer needs more profiled users than the model's "
                         f"hidden size ({HIDDEN}); use at least {HIDDEN + 1}, or 0 for statistics profiles only")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = out / "llm_profiles"
    config = ExperimentConfig.from_dict(demo_config(args, store), where="demo")
    ds = prepare_dataset(config, out)
    s = ds.stats
    print(f"[demo] dataset: {s['users']} users, {s['items']} items, {s['interactions']} interactions, "
          f"avg length {s['avg_length']:.1f}; {s['test_targets']} test targets", flush=True)

    if args.llm_users > 0:
        from seqdistill.profiles import GenerationConfig, TransformersBackend, generate_profiles, smollm_path

        rng = np.random.default_rng(0)
        candidates = np.flatnonzero(ds.train_end > 0)
        users = np.sort(rng.choice(candidates, size=min(args.llm_users, len(candidates)), replace=False))
        print(f"[demo] LLM profiles (SmolLM2-135M-Instruct, greedy, {args.max_new_tokens} new tokens) "
              f"for {len(users)} users -> {store}", flush=True)
        torch.set_num_threads(os.cpu_count() or 1)  # generation is large matrix work: use every core
        backend = TransformersBackend(smollm_path(), GenerationConfig(max_new_tokens=args.max_new_tokens), batch_size=16)
        st = generate_profiles(ds, backend, store, users=users, batch_users=16)
        torch.set_num_threads(args.threads)
        table = st.table(ok_only=True)
        if table.height:
            print(f"[demo] example profile (user {table['user'][0]}):\n{table['profile'][0][:600]}\n", flush=True)

    run_experiment(config, out)
    rep = report(out)
    print(f"[demo] finished in {time.perf_counter() - t0:.0f}s")
    print(f"[demo] report: {out / 'report.md'} (plots and report.json beside it)")
    best = rep.get("best_distilled")
    if best:
        v = rep["variants"]
        print(f"[demo] test NDCG@10 vanilla {v['vanilla']['test_ndcg@10'][0]:.4f} vs {best} {v[best]['test_ndcg@10'][0]:.4f}")
    return 0
