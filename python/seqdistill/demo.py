"""``seqdistill demo``: the whole job on the embedded synthetic planted-semantics dataset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_demo_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the pipeline end to end on the embedded synthetic dataset")
    p.add_argument("--out", default="runs/demo", help="run folder")
    p.add_argument("--users", type=int, default=3000)
    p.add_argument("--items", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from seqdistill.data import SplitConfig, prepare
    from seqdistill.datasets import describe, synthetic

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    raw = synthetic(n_users=args.users, n_items=args.items, seed=args.seed)
    ds = prepare(raw, k_core=(5, 5), split=SplitConfig())
    folder = ds.save(out / "dataset")
    print(json.dumps(describe(ds), indent=2, default=str))
    print(f"dataset: {folder}")
    return 0
