"""Pieces every sub-command shares: validating argument types, the ``--debug`` flag that may
follow any sub-command, and the check that an output folder does not hold the command's inputs."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from seqdistill import _io
from seqdistill._checks import SEED_LIMIT, THREAD_LIMIT
from seqdistill.errors import OutputError

__all__ = [
    "KCore",
    "check_dataset_out",
    "check_output_path",
    "debug_parent",
    "finite_float",
    "fraction",
    "int_at_least",
    "nonnegative_float",
    "nonnegative_int",
    "positive_int",
    "thread_count",
]


def debug_parent() -> argparse.ArgumentParser:
    """A parent parser giving a sub-command ``--debug`` (default left unset, so the top-level
    flag before the sub-command is not overwritten)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the full traceback of an error instead of one line",
    )
    return p


# ------------------------------------------------------------------------- argument types
def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``low`` (argparse names the flag in its error)."""

    def parse(text: str) -> int:
        value = _integer(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


positive_int = int_at_least(1)
nonnegative_int = int_at_least(0)


def thread_count(text: str) -> int:
    """An argparse type: a number of CPU threads or worker processes, ``1..THREAD_LIMIT``."""
    value = positive_int(text)
    if value > THREAD_LIMIT:
        raise argparse.ArgumentTypeError(f"must be at most {THREAD_LIMIT}, got {text!r}")
    return value


def seed_int(text: str) -> int:
    """An argparse type: a seed, an integer in ``[0, 2**32)`` (see ``SEED_LIMIT``)."""
    value = nonnegative_int(text)
    if value >= SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be an integer below 2**32 ({SEED_LIMIT}), got {text!r}")
    return value


def finite_float(text: str) -> float:
    """An argparse type: a finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1 (a quantile)."""
    value = finite_float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be strictly between 0 and 1, got {text!r}")
    return value


class KCore(argparse.Action):
    """``--k-core K`` (users and items) or ``--k-core K_USER K_ITEM``; stores ``(k_user, k_item)``."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        ks = list(values)  # type: ignore[call-overload]
        if len(ks) > 2:
            raise argparse.ArgumentError(
                self,
                f"takes one value (k for users and items) or two (k_user k_item), got {len(ks)}: "
                + " ".join(map(str, ks)),
            )
        setattr(namespace, self.dest, (ks[0], ks[-1]))


# ------------------------------------------------------------------------- output folders
def check_output_path(path: str, flag: str) -> None:
    """Refuse, before a command runs, an output path no folder can be made at: an empty path
    (it would mean the current folder), a symbolic link that leads nowhere or in a loop, or a
    path below something that is not a folder. Raises OutputError naming ``flag``."""
    if not str(path).strip():
        raise OutputError(f"{flag} {str(path)!r}: an empty path; name a new or empty folder")
    p = Path(path)
    if p.is_symlink() and not p.exists():
        raise OutputError(f"{flag} {path}: a symbolic link that leads to no folder (dangling or a loop)")
    for parent in p.parents:  # the nearest part of the path that is there must be a folder
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                what = "a symbolic link that leads to no folder" if parent.is_symlink() else "a file, not a folder"
                raise OutputError(f"{flag} {path}: {parent} is {what}")
            return


def check_dataset_out(out: str | Path, inputs: Iterable[str | Path], *, overwrite: bool, flag: str = "--out") -> None:
    """Refuse, before any work, an output folder the prepared dataset may not replace: a file, a
    folder holding (at any depth) one of the command's ``inputs``, a folder that is not a
    prepared dataset, or a prepared dataset without ``overwrite``. Raises OutputError."""
    from seqdistill.data.dataset import is_dataset_folder

    out = Path(out)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise OutputError(f"{flag} {out}: exists and is not a folder; choose a new or empty folder")
    target = Path(os.path.realpath(out))
    for p in inputs:
        src = Path(os.path.realpath(p))  # never raises: a link loop stays a path (read later, named then)
        if src == target or src.is_relative_to(target):
            raise OutputError(
                f"{flag} {out}: holds the input {p}; writing the dataset there would replace it "
                "— choose a new or empty folder"
            )
    _io.check_replaceable(out, is_dataset_folder, "prepared dataset", overwrite, known=_dataset_file)


def _dataset_file(name: str) -> bool:
    """A name ``PreparedDataset.save`` writes (the files of ``data/dataset.py``'s folder layout)."""
    from seqdistill.data.dataset import is_dataset_file

    return is_dataset_file(name)
