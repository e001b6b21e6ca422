"""The ``seqdistill`` command: one entry point, one sub-command per stage.

    seqdistill demo                      the whole pipeline on the embedded synthetic dataset
    seqdistill prepare FILE --out DIR    any interactions file → a prepared dataset folder
    seqdistill datasets list|describe|prepare
    seqdistill profiles generate|encode|reduce
    seqdistill experiment CONFIG_OR_PRESET --out DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="prepare an interactions file (csv/tsv/parquet/jsonl) into a dataset folder")
    p.add_argument("path", help="interactions file")
    p.add_argument("--out", required=True, help="output folder (written atomically)")
    p.add_argument("--items", help="item metadata file (csv/parquet) keyed by the item id column")
    p.add_argument("--user-col", default="user_id")
    p.add_argument("--item-col", default="item_id")
    p.add_argument("--time-col", default="timestamp")
    p.add_argument("--rating-col", default=None)
    p.add_argument("--timestamp-format", default=None, help="strftime format of string timestamps")
    p.add_argument("--k-core", type=int, nargs="+", default=[5, 5], metavar="K", help="k (both) or k_user k_item")
    p.add_argument("--split", choices=["global_temporal", "leave_one_out"], default="global_temporal")
    p.add_argument("--quantile", type=float, default=0.8)
    p.add_argument("--target", choices=["last", "first", "all"], default="last")
    p.add_argument("--valid", choices=["time", "last_item", "none"], default="time")
    p.add_argument("--valid-quantile", type=float, default=0.8)
    p.add_argument("--name", default=None)
    p.add_argument("--domain", default="generic", choices=["products", "movies", "sessions", "generic"])
    p.set_defaults(func=_cmd_prepare)


def _cmd_prepare(args: argparse.Namespace) -> int:
    import polars as pl

    from seqdistill.data import RawDataset, SplitConfig, prepare, read_interactions

    cols = {"user_id": args.user_col, "item_id": args.item_col, "timestamp": args.time_col}
    if args.rating_col:
        cols["rating"] = args.rating_col
    df = read_interactions(args.path, cols, timestamp_format=args.timestamp_format)
    items = None
    if args.items:
        items = pl.read_parquet(args.items) if args.items.endswith((".parquet", ".pq")) else pl.read_csv(args.items)
        if args.item_col in items.columns and args.item_col != "item_id":
            items = items.rename({args.item_col: "item_id"})
    k = args.k_core
    k_core = (k[0], k[0]) if len(k) == 1 else (k[0], k[1])
    split = SplitConfig(kind=args.split, quantile=args.quantile, target=args.target, valid=args.valid, valid_quantile=args.valid_quantile)
    raw = RawDataset(args.name or Path(args.path).stem, df, items, domain=args.domain)
    ds = prepare(raw, k_core=k_core, split=split)
    out = ds.save(args.out)
    print(json.dumps(ds.stats, indent=2))
    print(f"prepared dataset written to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="seqdistill", description="Distil LLM-written user profiles into sequential recommenders.")
    sub = ap.add_subparsers(dest="command", required=True)
    from seqdistill.demo import add_demo_parser

    add_demo_parser(sub)
    _add_prepare(sub)
    from seqdistill.datasets import add_datasets_parser

    add_datasets_parser(sub)
    from seqdistill.profiles.cli import add_profiles_parser

    add_profiles_parser(sub)
    from seqdistill.experiments.runner import add_experiment_parser

    add_experiment_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        print(f"seqdistill {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
