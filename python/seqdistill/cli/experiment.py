"""``seqdistill experiment CONFIG --out DIR``: a vanilla-vs-distilled comparison over seeds from
one TOML file (or a packaged preset), then the report."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from seqdistill.cli._common import seed_int, thread_count

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Register ``experiment CONFIG --out DIR [--threads N] [--workers N] [--report-only] [--no-report]``."""
    p = sub.add_parser(
        "experiment", parents=list(parents), help="run a vanilla-vs-distilled comparison over seeds and write a report"
    )
    from seqdistill._presets import list_presets

    p.add_argument("config", help=f"experiment TOML file, or a preset name ({', '.join(list_presets())})")
    p.add_argument(
        "--out",
        required=True,
        help="output folder: new, empty, or an experiment folder written before (resumed; a changed config is refused)",
    )
    p.add_argument("--dataset-path", help="override [dataset] path")
    p.add_argument("--store", help="override [profiles] store (source = 'llm')")
    p.add_argument("--seeds", type=seed_int, nargs="+", help="override the seeds")
    p.add_argument(
        "--threads",
        type=thread_count,
        help="torch CPU threads (default: torch's choice; 1 is often fastest for small models)",
    )
    p.add_argument(
        "--workers",
        type=thread_count,
        help="train this many runs at once, each in its own process with one CPU thread (or one GPU); "
        "default: the config's workers (1)",
    )
    p.add_argument("--report-only", action="store_true", help="only (re)write the report from finished runs")
    p.add_argument("--no-report", action="store_true", help="do not write the report after the runs")
    p.set_defaults(func=run, prog_name=p.prog, output_arg="out")


def run(args: argparse.Namespace) -> int:
    """Load and validate the config (with the overrides) before any work, run, report."""
    from seqdistill.experiments.config import load_config
    from seqdistill.experiments.report import report
    from seqdistill.experiments.resume import check_owned
    from seqdistill.experiments.runner import run_experiment

    cfg = load_config(args.config)
    if args.dataset_path:
        cfg.dataset.path = args.dataset_path
    if args.store:
        cfg.profiles.store = args.store
    if args.seeds:
        cfg.seeds = list(args.seeds)
    cfg.validate(str(args.config))
    check_owned(Path(args.out))  # before torch is set up or anything is read (run_experiment checks it too)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if not args.report_only:
        run_experiment(cfg, args.out, workers=args.workers)
    if not args.no_report:
        res = report(args.out)
        print(f"report: {Path(args.out) / 'report.md'} ({len(res['variants'])} variants)")
    return 0
