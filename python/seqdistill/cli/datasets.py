"""``seqdistill datasets list | describe | prepare``: the registry of `seqdistill.datasets`,
Table 1 statistics of a dataset (and the split audit of a prepared one), and a registered dataset
→ a prepared dataset folder."""

from __future__ import annotations

import argparse
import inspect
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seqdistill import datasets
from seqdistill.cli._common import check_dataset_out
from seqdistill.cli.prepare import add_filter_args
from seqdistill.errors import ConfigError, DataError

__all__ = ["add_parser", "cmd_describe", "cmd_list", "cmd_prepare", "parse_options"]

PathLike = str | Path


def add_parser(sub: argparse._SubParsersAction, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Register ``datasets {list,describe,prepare}``; each leaf sets ``func(args) -> int``."""
    p = sub.add_parser("datasets", parents=list(parents), help="list, describe and prepare datasets")
    dsub = p.add_subparsers(dest="datasets_command", required=True, metavar="COMMAND")

    ls = dsub.add_parser("list", parents=list(parents), help="registered datasets and the paper's Table 1")
    ls.set_defaults(func=lambda a: cmd_list(), prog_name=ls.prog)

    d = dsub.add_parser(
        "describe", parents=list(parents), help="users/items/interactions/avg length/density of a dataset"
    )
    d.add_argument("name_or_path", help="registered name, prepared folder, or interactions file")
    d.add_argument("--path", help="raw file or folder for datasets you download yourself")
    d.add_argument("-o", "--option", action="append", metavar="KEY=VALUE", help="loader option (repeatable)")
    d.set_defaults(func=_describe, prog_name=d.prog)

    pr = dsub.add_parser(
        "prepare", parents=list(parents), help="k-core filter, split and save a PreparedDataset folder"
    )
    pr.add_argument("name", help="registered dataset name")
    pr.add_argument("out_dir", help="output folder: new, empty, or a prepared dataset with --overwrite")
    pr.add_argument("--overwrite", action="store_true", help="replace the prepared dataset already at OUT_DIR")
    pr.add_argument("--path", help="raw file or folder for datasets you download yourself")
    add_filter_args(pr)
    pr.add_argument("--split", action="append", metavar="KEY=VALUE", help="SplitConfig field (repeatable)")
    pr.add_argument("-o", "--option", action="append", metavar="KEY=VALUE", help="loader option (repeatable)")
    pr.set_defaults(func=_prepare, prog_name=pr.prog, output_arg="out_dir")


def _describe(a: argparse.Namespace) -> int:
    cmd_describe(a.name_or_path, a.path, parse_options(a.option))
    return 0


def _prepare(a: argparse.Namespace) -> int:
    cmd_prepare(
        a.name,
        a.out_dir,
        a.path,
        a.k_core,
        parse_options(a.split) or None,
        parse_options(a.option),
        overwrite=a.overwrite,
        filter=a.filter,
    )
    return 0


# ------------------------------------------------------------------------- commands
def _fmt_row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()


def cmd_list() -> int:
    """Print the registry with the paper's Table 1 numbers; returns the exit code."""
    head = ["name", "domain", "users", "items", "interactions", "avg len", "density", "source"]
    rows = []
    for info in datasets.list_datasets():
        p = info.paper
        nums = (
            [f"{p.users:,}", f"{p.items:,}", f"{p.interactions:,}", f"{p.avg_length:.3f}", f"{p.density:.5f}"]
            if p
            else ["-"] * 5
        )
        rows.append([info.name, info.domain, *nums, info.source])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)] + [0]
    print(_fmt_row(head, widths))
    for r in rows:
        print(_fmt_row(r, widths))
    print("(numbers: the paper's Table 1, after 5-core filtering)")
    return 0


def _print_stats(stats: dict) -> None:
    for k, v in stats.items():
        if isinstance(v, float):
            v = f"{v:.6g}"
        elif isinstance(v, int):
            v = f"{v:,}"
        print(f"{k:>14}: {v}")


def cmd_describe(name_or_path: str, path: PathLike | None = None, options: dict | None = None) -> dict:
    """Describe a registered dataset (loaded from `path` when it needs one), a prepared dataset
    folder (with manifest.json), or an interactions file read by `seqdistill.data.read_interactions`.
    Prints the statistics and returns them."""
    options = dict(options or {})
    if name_or_path in {info.name for info in datasets.list_datasets()}:
        data = _load(name_or_path, path, options)
    else:
        p = Path(name_or_path)
        if p.is_dir() and (p / "manifest.json").exists():
            from seqdistill.data import PreparedDataset

            data = PreparedDataset.load(p)
        elif p.exists():
            from seqdistill.data import read_interactions

            _check_options("reading an interactions file", options, _keywords(read_interactions))
            data = read_interactions(p, **options)
        else:
            known = sorted(info.name for info in datasets.list_datasets())
            raise DataError(f"{name_or_path!r} is neither a registered dataset {known} nor an existing path")
    stats = datasets.describe(data)
    _print_stats(stats)
    _print_audit(data)
    return stats


def _print_audit(data: Any) -> None:
    """The split audit of a prepared dataset (a note when it was prepared without one)."""
    from seqdistill.data import PreparedDataset

    if not isinstance(data, PreparedDataset):
        return
    if data.audit is None:
        print("split audit: not recorded (the dataset was prepared before audits were saved; prepare it again)")
    else:
        print("\n".join(data.audit.report()))


def cmd_prepare(
    name: str,
    out_dir: PathLike,
    path: PathLike | None = None,
    k_core: tuple[int, int] = (5, 5),
    split: Any = None,
    options: dict | None = None,
    *,
    overwrite: bool = False,
    filter: str = "kcore",
) -> Path:
    """Load a registered dataset, run `seqdistill.data.prepare(raw, k_core=..., split=...,
    filter=...)` and save the `PreparedDataset` to `out_dir` (refused before loading when `out_dir`
    may not be replaced). `split` is a `SplitConfig`, a dict of its fields, or None (the default
    split). `filter` is "kcore" or "compat" (see `prepare`). `options` are passed to the loader
    (e.g. locale, n_users). Prints the statistics and the split audit."""
    from seqdistill.data import prepare

    check_dataset_out(out_dir, [path] if path is not None else [], overwrite=overwrite, flag="OUT_DIR")
    split = _split_config(split) if isinstance(split, dict) else split
    raw = _load(name, path, dict(options or {}))
    kwargs: dict[str, Any] = {"k_core": tuple(k_core), "filter": filter}
    if split is not None:
        kwargs["split"] = split
    prepared = prepare(raw, **kwargs)
    out = prepared.save(Path(out_dir), overwrite=overwrite)
    print(f"prepared {name} -> {out}")
    _print_stats(datasets.describe(prepared))
    _print_audit(prepared)
    return out


def parse_options(pairs: list[str] | None) -> dict:
    """['n_users=500', 'locale=UK'] -> {'n_users': 500, 'locale': 'UK'} (values read as JSON when possible)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"option {pair!r} is not of the form key=value")
        if key in out:  # the last one would silently win
            raise ConfigError(f"-o {key} is given twice ({key}={out[key]!r} and {pair!r}); give it once")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


# ------------------------------------------------------------------------- option checks
def _load(name: str, path: PathLike | None, options: dict[str, Any]) -> Any:
    _check_options(f"dataset {name!r}", options, datasets.loader_options(name))
    return datasets.load(name, path, **options)


def _keywords(fn: Any) -> dict[str, str]:
    params = list(inspect.signature(fn).parameters.values())[1:]
    return {p.name: str(p.annotation) for p in params}


_SIMPLE = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def _check_options(what: str, options: dict[str, Any], known: dict[str, str]) -> None:
    """Refuse an option the loader does not take, or a value of the wrong simple type."""
    for key, value in options.items():
        if key not in known:
            raise ConfigError(f"-o {key}: {what} takes no option {key!r}; its options: {sorted(known) or 'none'}")
        kinds = _SIMPLE.get(known[key])
        if kinds and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
            raise ConfigError(f"-o {key}={json.dumps(value)}: {what} expects {known[key]} for {key!r}")


def _split_config(d: dict[str, Any]) -> Any:
    """A SplitConfig from ``--split KEY=VALUE`` pairs, refusing unknown keys and bad values."""
    from dataclasses import fields

    from seqdistill.data import SplitConfig

    known = {f.name: str(f.type) for f in fields(SplitConfig)}
    for key, value in d.items():
        if key not in known:
            raise ConfigError(f"--split {key}: not a split setting; known: {sorted(known)}")
        number = "float" in known[key]
        if value is None and "None" in known[key]:
            continue
        if number and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
            raise ConfigError(f"--split {key}={json.dumps(value)}: expected a finite number")
        if not number and not isinstance(value, str):
            raise ConfigError(f"--split {key}={json.dumps(value)}: expected a string")
    return SplitConfig(**d)
