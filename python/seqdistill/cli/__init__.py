"""The ``seqdistill`` command: one entry point, one module per sub-command.

    seqdistill demo                      the whole pipeline on the embedded synthetic dataset
    seqdistill prepare FILE --out DIR    any interactions file → a prepared dataset folder
                                         (--engine spark: the same on Apache Spark, parquet)
    seqdistill datasets list|describe|prepare
    seqdistill profiles generate|encode|reduce|stats|probe
    seqdistill experiment CONFIG_OR_PRESET --out DIR
    seqdistill train DATASET_DIR --out RUN_DIR   one model into a run folder (resumable)
    seqdistill evaluate RUN_DIR DATASET_DIR [--protocol ...]   protocols side by side (a table, --json)
    seqdistill recommend RUN_DIR (--users FILE | --histories FILE) --k 10 --out FILE

Each sub-command module registers its parser (``add_parser``) and a ``func(args) -> int``;
:mod:`seqdistill.cli._errors` turns whatever a command raises into one line and an exit status
(2 for a user's mistake, 1 for a bug, 130 when interrupted). ``--debug``, before or after the
sub-command, shows the traceback instead. No library module imports argparse.
"""

from __future__ import annotations

import argparse

from seqdistill.cli import _errors, datasets, demo, evaluate, experiment, prepare, profiles, recommend, train
from seqdistill.cli._common import check_output_path, debug_parent

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: ``seqdistill [--debug] <command> ...``."""
    ap = argparse.ArgumentParser(
        prog="seqdistill", description="Distil LLM-written user profiles into sequential recommenders."
    )
    ap.add_argument("--debug", action="store_true", help="show the full traceback of an error instead of one line")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parents = [debug_parent()]
    for module in (demo, prepare, datasets, profiles, experiment, train, evaluate, recommend):
        module.add_parser(sub, parents)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (argparse's usage errors: 2, ``--help``: 0)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse printed the usage error or the help already
        return e.code if isinstance(e.code, int) else 2
    arg: str = getattr(args, "output_arg", None) or ""
    output = None if getattr(args, arg, None) is None else str(getattr(args, arg))

    def command() -> int:
        if output is not None:  # a path no folder can be made at is refused before any work
            check_output_path(output, _FLAGS.get(arg, "--" + arg.replace("_", "-")))
        return args.func(args)

    return _errors.run(args.prog_name, command, debug=args.debug, output=output)


_FLAGS = {"out_dir": "OUT_DIR"}  # output arguments that are positional: named as the usage line shows them
