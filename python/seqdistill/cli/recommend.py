"""``seqdistill recommend RUN_DIR (--users FILE | --histories FILE) --k 10 --out FILE``: the top-k
items of many users from a trained run, as a table of raw ids (see :mod:`seqdistill.recommend`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from seqdistill import _io
from seqdistill.cli._common import positive_int

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction, parents: Sequence[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "recommend",
        parents=list(parents),
        help="top-k items per user from a trained run (raw ids; CSV, parquet or JSON lines)",
    )
    p.add_argument("run_dir", help="run folder written by 'seqdistill train'")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "--users",
        help="users of the dataset: a .txt of ids (one a line) or a .csv/.tsv/.parquet/.jsonl with --user-col",
    )
    who.add_argument(
        "--histories",
        help="interactions of (new) users: a .csv/.tsv/.parquet/.jsonl with user, item and timestamp columns",
    )
    p.add_argument("--k", type=positive_int, default=10, help="items per user (default 10)")
    p.add_argument("--out", required=True, help="output file (.csv, .parquet or .jsonl); written atomically")
    p.add_argument("--format", choices=["csv", "parquet", "jsonl"], help="default: from the --out extension")
    p.add_argument("--overwrite", action="store_true", help="replace the file already at --out")
    p.add_argument(
        "--dataset",
        help="with --users: the prepared dataset (default: the one the run was trained on; its fingerprint must match)",
    )
    p.add_argument("--keep-seen", action="store_true", help="keep items of a user's history among the candidates")
    p.add_argument("--user-col", default="user_id")
    p.add_argument("--item-col", default="item_id", help="with --histories")
    p.add_argument("--time-col", default="timestamp", help="with --histories")
    p.add_argument("--timestamp-format", default=None, help="with --histories: strftime format of string timestamps")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:N or mps (default: cpu)")
    p.set_defaults(func=run, prog_name=p.prog, output_arg="out")


def _check_out(
    out: str, files: Sequence[str | Path], folders: Sequence[tuple[str | Path, str]], overwrite: bool
) -> None:
    """Refuse an --out that is a folder, one of the input ``files``, lies inside one of the
    ``folders`` (``(path, what it is)``: the run's model and checkpoint, its dataset — a folder
    seqdistill replaces whole, which would take the file with it, and whose files a user's file
    would replace), or is an existing file without --overwrite."""
    from seqdistill.errors import OutputError

    p = Path(out)
    if p.is_dir():
        raise OutputError(f"--out {out}: is a folder; name the output file")
    target = p.resolve()
    for src in files:
        if target == Path(src).resolve():
            raise OutputError(f"--out {out}: is the input {src}; write the recommendations to another file")
    for folder, what in folders:
        if _io.overlap(target, folder) in ("is", "lies inside"):
            raise OutputError(f"--out {out}: lies inside {folder}, {what}; write the file elsewhere")
    if p.is_symlink():  # replacing it would put our file where the user keeps a link (as prepare and train refuse)
        raise OutputError(f"--out {out}: is a symbolic link; name a new file, or the link's target itself")
    if p.exists() and not overwrite:
        raise OutputError(f"--out {out}: a file is already there; pass --overwrite to replace it")


def _dataset(args: argparse.Namespace, info):
    """The prepared dataset of ``--dataset`` (or the run's), checked against the run's fingerprint."""
    from seqdistill.data import PreparedDataset
    from seqdistill.errors import DataError

    path = args.dataset or info.dataset
    if args.dataset is None and not Path(path).exists():
        raise DataError(f"{args.run_dir}: the run's dataset {path} is no longer there; pass --dataset DATASET_DIR")
    ds = PreparedDataset.load(path)
    info.check_dataset(ds, path)
    return ds


def _device(name: str) -> str:
    """``--device`` as a torch device this machine has (a ConfigError naming it otherwise)."""
    from seqdistill.errors import ConfigError
    from seqdistill.training import resolve_device

    try:
        return str(resolve_device(name))
    except ConfigError as e:  # not on this machine
        raise ConfigError(str(e).replace("TrainConfig.device:", "--device")) from None
    except RuntimeError:  # not a device name torch knows
        raise ConfigError(f"--device {name!r}: expected auto, cpu, cuda, cuda:N or mps") from None


def run(args: argparse.Namespace) -> int:
    """Check the output, load the run, read the users or histories, rank, write."""
    from seqdistill.recommend import output_format, read_user_ids, recommend, write_table
    from seqdistill.training.run import RUN_FILE, RunInfo, load_run

    fmt = output_format(args.out, args.format)
    run_dir = Path(args.run_dir)
    info = RunInfo.read(run_dir)
    files = [f for f in (args.users, args.histories) if f] + [run_dir / RUN_FILE, run_dir / "history.json"]
    # The datasets are protected whatever the input mode: with --histories the run's dataset is not
    # read, but a file written inside it would replace one of its files (or be lost with it).
    folders = [(run_dir / "model", "an input folder"), (run_dir / "checkpoint", "an input folder")]
    if args.dataset:
        folders.append((args.dataset, "a prepared dataset (an input folder)"))
    if isinstance(info.dataset, str) and info.dataset:
        read = args.users is not None and not args.dataset
        folders.append((info.dataset, "an input folder" if read else "the run's prepared dataset"))
    _check_out(args.out, files, folders, args.overwrite)
    info, model = load_run(args.run_dir, map_location=_device(args.device))
    if args.users is not None:
        ds = _dataset(args, info)
        users = read_user_ids(args.users, args.user_col)
        recs = recommend(model, ds, users=users, k=args.k, filter_seen=not args.keep_seen, source=args.users)
    else:
        from seqdistill.data import read_interactions

        cols = {"user_id": args.user_col, "item_id": args.item_col, "timestamp": args.time_col}
        log = read_interactions(args.histories, cols, timestamp_format=args.timestamp_format)
        recs = recommend(model, histories=log, k=args.k, filter_seen=not args.keep_seen, source=args.histories)
    write_table(recs, args.out, fmt)
    n_users = recs.get_column("user_id").n_unique()
    print(f"{recs.height} recommendations for {n_users} users written to {args.out}")
    return 0
