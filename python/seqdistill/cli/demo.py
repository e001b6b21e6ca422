"""``seqdistill demo``: the whole pipeline on the embedded synthetic dataset (see `seqdistill.demo`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from seqdistill.cli._common import nonnegative_int, positive_int, seed_int, thread_count

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction, parents: Sequence[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo", parents=list(parents), help="run the pipeline end to end on the embedded synthetic dataset"
    )
    p.add_argument("--out", default="runs/demo", help="run folder (resumed when it exists)")
    p.add_argument("--users", type=positive_int, default=2000, help="synthetic users")
    p.add_argument("--items", type=positive_int, default=400, help="synthetic items")
    p.add_argument(
        "--llm-users",
        type=nonnegative_int,
        default=64,
        help="users profiled by the LLM; the rest are masked out of the term (0: statistics profiles only). "
        "SmolLM2 on a 2-core CPU writes ~0.3 profiles/s, so the default keeps the demo within minutes; "
        "use a few hundred with more time or a GPU",
    )
    p.add_argument("--max-new-tokens", type=positive_int, default=64, help="LLM tokens per profile")
    p.add_argument("--epochs", type=positive_int, default=20)
    p.add_argument("--seeds", type=seed_int, nargs="+", default=[0])
    p.add_argument(
        "--threads", type=thread_count, default=1, help="torch CPU threads for training (1 is fastest on small models)"
    )
    p.set_defaults(func=run, prog_name=p.prog, output_arg="out")


def run(args: argparse.Namespace) -> int:
    from seqdistill.demo import DemoOptions, run_demo

    run_demo(
        DemoOptions(
            out=args.out,
            users=args.users,
            items=args.items,
            llm_users=args.llm_users,
            max_new_tokens=args.max_new_tokens,
            epochs=args.epochs,
            seeds=tuple(args.seeds),
            threads=args.threads,
        )
    )
    return 0
