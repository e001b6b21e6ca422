"""``seqdistill prepare FILE --out DIR``: an interactions file (csv/tsv/parquet/jsonl) → a
prepared dataset folder (see docs/datasets.md for what a file may hold). Prints the statistics and
the split audit."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from seqdistill._io import check_parquet
from seqdistill.cli._common import KCore, check_dataset_out, fraction, positive_int
from seqdistill.data.interactions import quiet_polars
from seqdistill.errors import ConfigError, DataError

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction, parents: Sequence[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "prepare",
        parents=list(parents),
        help="prepare an interactions file (csv/tsv/parquet/jsonl) into a dataset folder",
    )
    p.add_argument("path", help="interactions file")
    p.add_argument(
        "--out",
        required=True,
        help="output folder: new, empty, or a prepared dataset with --overwrite (written atomically)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace the prepared dataset already at --out")
    p.add_argument("--items", help="item metadata file (csv/tsv/parquet/jsonl) keyed by the item id column")
    p.add_argument("--items-id-col", help="id column of --items (default: --item-col)")
    p.add_argument("--user-col", default="user_id")
    p.add_argument("--item-col", default="item_id")
    p.add_argument("--time-col", default="timestamp")
    p.add_argument("--rating-col", default=None, help="rating column (must exist when given)")
    p.add_argument("--timestamp-format", default=None, help="strftime format of string timestamps")
    add_filter_args(p)
    p.add_argument("--split", choices=["global_temporal", "leave_one_out"], default="global_temporal")
    p.add_argument("--quantile", type=fraction, default=0.8)
    p.add_argument("--target", choices=["last", "first", "all"], default="last")
    p.add_argument("--valid", choices=["time", "last_item", "none"], default="time")
    p.add_argument("--valid-quantile", type=fraction, default=0.8)
    p.add_argument("--name", default=None)
    p.add_argument("--domain", default="generic", choices=["products", "movies", "sessions", "generic"])
    p.add_argument(
        "--engine",
        choices=["memory", "spark"],
        default="memory",
        help="memory: the in-process Rust core (default); spark: the same preprocessing on Apache Spark "
        "(parquet input; needs the [spark] extra and Java 17; see docs/spark.md)",
    )
    p.add_argument(
        "--master",
        default=None,
        help="with --engine spark: the Spark master (default: spark-submit's, else local[2])",
    )
    p.set_defaults(func=run, prog_name=p.prog, output_arg="out")


def add_filter_args(p: argparse.ArgumentParser) -> None:
    """``--k-core K [K]``, ``--filter kcore|compat`` and its shorthand ``--compat`` (one or the
    other): the filter options ``prepare`` and ``datasets prepare`` share."""
    from seqdistill.core import FILTERS

    p.add_argument(
        "--k-core",
        type=positive_int,
        nargs="+",
        action=KCore,
        default=(5, 5),
        metavar="K",
        help="k (both) or k_user k_item; with --filter compat, the counts a user / item must exceed",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--filter",
        choices=list(FILTERS),
        default="kcore",
        help="kcore: iterative k-core (counts >= k, repeated; default); compat: the seed paper's released "
        "code, one pass keeping users and items whose counts on the input are > k",
    )
    g.add_argument("--compat", dest="filter", action="store_const", const="compat", help="same as --filter compat")


def run(args: argparse.Namespace) -> int:
    """Read, prepare and save; the output folder is checked before the input is read."""
    from seqdistill.data import RawDataset, SplitConfig, prepare, read_interactions

    if args.name is not None and not args.name.strip():
        raise ConfigError(f"--name {args.name!r}: a dataset name must not be empty or blank")
    check_dataset_out(args.out, [p for p in (args.path, args.items) if p], overwrite=args.overwrite)
    cols = {"user_id": args.user_col, "item_id": args.item_col, "timestamp": args.time_col}
    if args.rating_col:
        cols["rating"] = args.rating_col
    if args.engine == "spark":
        return _run_spark(args, cols)
    if args.master is not None:
        raise ConfigError("--master is an option of --engine spark")
    split = SplitConfig(
        kind=args.split,
        quantile=args.quantile,
        target=args.target,
        valid=args.valid,
        valid_quantile=args.valid_quantile,
    )
    name = args.name or Path(args.path).stem
    if args.items is None and args.timestamp_format is None:
        # prepare reads the file itself: a parquet file of integer or string ids straight into
        # the Rust core (see prepare's doc), anything else as read_interactions reads it.
        ds = prepare(
            args.path, columns=cols, k_core=args.k_core, split=split, filter=args.filter, name=name, domain=args.domain
        )
    else:
        df = read_interactions(args.path, cols, timestamp_format=args.timestamp_format)
        items = _read_items(args.items, args.items_id_col or args.item_col, df, args.path) if args.items else None
        raw = RawDataset(name, df, items, domain=args.domain)
        ds = prepare(raw, k_core=args.k_core, split=split, filter=args.filter)
    out = ds.save(args.out, overwrite=args.overwrite)
    print(json.dumps(ds.stats, indent=2))
    if ds.audit is not None:
        print("\n".join(ds.audit.report()))
    print(f"prepared dataset written to {out}")
    return 0


def _run_spark(args: argparse.Namespace, cols: dict[str, str]) -> int:
    """``--engine spark``: the parquet file or folder prepared by :func:`seqdistill.spark.prepare`.
    Everything that can be refused without Spark is refused first, in one line, before pyspark is
    imported (a JVM start prints dozens of log lines)."""
    for flag, value in (("--items", args.items), ("--timestamp-format", args.timestamp_format)):
        if value:
            raise ConfigError(f"{flag} is not supported with --engine spark (see docs/spark.md)")
    _check_spark_input(args.path, cols)
    from seqdistill import spark as sds
    from seqdistill.data import SplitConfig

    split = SplitConfig(
        kind=args.split,
        quantile=args.quantile,
        target=args.target,
        valid=args.valid,
        valid_quantile=args.valid_quantile,
    )
    ds = sds.prepare(
        args.path,
        args.out,
        k_core=args.k_core,
        split=split,
        filter=args.filter,
        name=args.name or Path(args.path).stem,
        domain=args.domain,
        columns=cols,
        master=args.master,
        overwrite=args.overwrite,
    )
    print(json.dumps(ds.stats, indent=2))
    if ds.audit is not None:
        print("\n".join(ds.audit.report()))
    print(f"prepared dataset written to {args.out}")
    return 0


#: Name endings of files ``--engine spark`` cannot read (it reads parquet only).
_TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".json", ".jsonl", ".ndjson", ".gz", ".zip", ".xlsx")
_SPARK_HINT = "--engine spark reads parquet only (see docs/spark.md); use --engine memory for CSV, TSV or JSON lines"


def _check_spark_input(path: str, columns: dict[str, str]) -> None:
    """Refuse, before Spark starts, an input ``--engine spark`` cannot read: a local path that is
    not there, a file that is not parquet (by its first bytes), a folder whose data files
    (the ones Spark reads: names not starting with ``_`` or ``.``) include one that is not
    parquet or that holds none, a remote path (``hdfs://``, ``s3a://``) whose name ends like a
    text file; and a single local parquet file without a column ``columns`` maps. Anything else
    is left to Spark. Raises DataError."""
    if "://" in path:
        suffix = Path(path.rstrip("/")).suffix.lower()
        if suffix in _TEXT_SUFFIXES:
            raise DataError(f"{path}: a {suffix} file, not parquet; {_SPARK_HINT}")
        return
    p = Path(path)
    if not p.exists():
        raise DataError(f"{path}: no such file or folder")
    if p.is_dir():
        files = _spark_data_files(p)
        if not files:
            raise DataError(f"{path}: a folder with no data files for Spark to read; {_SPARK_HINT}")
        for f in files:
            if f.stat().st_size and not _is_parquet(f):  # Spark skips empty files
                raise DataError(f"{path}: holds {f.relative_to(p)}, which is not a parquet file; {_SPARK_HINT}")
        return
    if p.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    if not _is_parquet(p):
        raise DataError(f"{path}: not a parquet file; {_SPARK_HINT}")
    check_parquet(p, [])  # the footer: polars' schema reader aborts on some damage
    try:
        with quiet_polars():
            have = pl.read_parquet_schema(p).names()
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError):
        return  # a damaged footer: Spark names it
    for canonical, col in columns.items():
        if col not in have:
            raise DataError(f"{path}: missing column {col!r} (for {canonical}); it has {have}")


def _spark_data_files(folder: Path) -> list[Path]:
    """The files Spark reads from a folder: at any depth, skipping names that start with ``.``
    or with ``_`` (unless a partition ``key=value``), as Spark's file index does (each folder
    once, whatever symbolic links lead back to it)."""
    files, todo, seen = [], [folder], set()
    while todo:
        current = todo.pop()
        real = current.resolve()
        if real in seen:
            continue
        seen.add(real)
        for entry in sorted(current.iterdir()):
            n = entry.name
            if n.startswith(".") or (n.startswith("_") and "=" not in n) or n.endswith("._COPYING_"):
                continue
            if entry.is_dir():
                todo.append(entry)
            elif entry.is_file():
                files.append(entry)
    return files


def _is_parquet(path: Path) -> bool:
    """Whether the file starts as parquet does (``PAR1``; ``PARE`` when encrypted)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) in (b"PAR1", b"PARE")
    except OSError:
        return True  # unreadable here: Spark names the problem


def _read_items(path: str, id_col: str, log: pl.DataFrame, log_path: str) -> pl.DataFrame:
    """The metadata file, its ids read by the id policy; refused when no id is an item of the log.
    ``prepare`` then matches them to the log's ids exactly (``seqdistill.data.prepare._meta_ids_as``:
    ``'01'`` is never item 1), as compared here."""
    from seqdistill.data.interactions import read_items

    meta = read_items(path, id_col)
    ids = meta.get_column("item_id").cast(pl.String)
    items = log.get_column("item_id").unique().cast(pl.String)
    if not ids.is_in(items.implode()).any():  # ids compared exactly, as text
        example = f"e.g. {ids[0]!r} vs the log's {items.sort()[0]!r}" if len(ids) else "it has no rows"
        raise DataError(
            f"{path}: no id in column {id_col!r} is an item of {log_path} ({example}); "
            "check --items-id-col / --item-col"
        )
    return meta
