"""The one map from an exception to the command line's exit status and message.

    SeqdistillError (a user's mistake)           one line ``seqdistill <cmd>: error: <message>``, exit 2
    OSError (permissions, missing paths, a full
    or read-only disk, a file-size limit, ...)    one line naming the path and the problem, exit 2
    the same OS errors wrapped by a library
    (polars: "... (os error 28)")                 one line naming the problem and the output, exit 2
    MemoryError, torch's allocation failures      one line "out of memory" (a size setting asks for
                                                  more than the machine has), exit 2
    KeyboardInterrupt                             one line, exit 130
    anything else (a bug in seqdistill)           one line naming the exception, exit 1

With ``--debug`` the exception is raised again, so Python prints the traceback. argparse's own
usage errors exit with 2 before a command runs.

A :class:`~seqdistill.errors.SeqdistillWarning` raised while the command runs (e.g. a split with
no test targets) is printed as one line ``seqdistill <cmd>: warning: <message>`` on stderr, without
Python's file and line; the exit status is unchanged. Other warnings keep Python's default display.
"""

from __future__ import annotations

import contextlib
import errno
import re
import sys
import warnings
from collections.abc import Callable, Iterator

from seqdistill.errors import SeqdistillError, SeqdistillWarning

__all__ = ["EXIT_BUG", "EXIT_INTERRUPTED", "EXIT_USER", "describe", "one_line_warnings", "run"]

EXIT_USER = 2
EXIT_BUG = 1
EXIT_INTERRUPTED = 130

_OS_PROBLEMS = {
    errno.ENOSPC: "disk full (no space left on device)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or folder",
    errno.EISDIR: "is a folder, expected a file",
    errno.ENOTDIR: "not a folder",
    errno.EEXIST: "already exists",
    errno.ENOTEMPTY: "folder is not empty",
    errno.EIO: "input/output error",
    errno.EFBIG: "file too large (over the file-size limit: ulimit -f, or the file system's)",
    errno.ENAMETOOLONG: "name too long for the file system",
    errno.ELOOP: "too many levels of symbolic links (a link loop?)",
}


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _os_message(e: OSError, output: str | None) -> str:
    problem = _OS_PROBLEMS.get(e.errno or -1) or e.strerror
    paths = [str(p) for p in (e.filename, e.filename2) if p is not None]
    if problem is None:  # raised with a message only (e.g. "x.csv: no such file")
        return _one_line(e)
    if paths:
        return f"{' -> '.join(paths)}: {problem}"
    if output:  # the operating system did not say which file: name what the command was writing
        return f"{problem} (while writing {output})"
    return problem


_WRAPPED_OS_ERROR = re.compile(r"\(os error (\d+)\)")  # how Rust libraries (polars) quote an OS error
_ALLOCATION = re.compile(r"can't allocate memory|out of memory", re.IGNORECASE)  # torch's words (CPU, CUDA)
_ASKED = re.compile(r"(?:tried to allocate|Unable to allocate) ([0-9.]+ ?[KMGTPE]?i?B|\d+ bytes)")


def _wrapped_os_error(e: BaseException) -> OSError | None:
    """The OS error a library reported inside its own exception (e.g. polars writing parquet
    to a full disk: ``ComputeError: ... No space left on device (os error 28)``)."""
    m = _WRAPPED_OS_ERROR.search(str(e))
    return OSError(int(m[1]), None) if m else None


def _out_of_memory(e: BaseException) -> str | None:
    """A one-line reason when ``e`` is an allocation failure, else None."""
    if not isinstance(e, MemoryError) and not (isinstance(e, RuntimeError) and _ALLOCATION.search(str(e))):
        return None
    asked = _ASKED.search(str(e))
    detail = f" (asked for {asked[1]})" if asked else ""
    return (
        f"out of memory{detail}: a size setting (max_len, hidden, blocks, batch size, number of users or "
        "items) asks for more than this machine has; lower it"
    )


def describe(e: BaseException, output: str | None = None) -> tuple[int, str]:
    """Exit status and message (without the ``seqdistill <cmd>:`` prefix) for an exception;
    ``output`` is the command's output path, named when an OS error carries no file name."""
    if isinstance(e, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted"
    if isinstance(e, SeqdistillError):
        return EXIT_USER, f"error: {_one_line(e)}"
    if isinstance(e, OSError):
        return EXIT_USER, f"error: {_os_message(e, output)}"
    memory = _out_of_memory(e)
    if memory is not None:
        return EXIT_USER, f"error: {memory}"
    wrapped = _wrapped_os_error(e)
    if wrapped is not None and wrapped.errno in _OS_PROBLEMS:
        return EXIT_USER, f"error: {_os_message(wrapped, output)}"
    return EXIT_BUG, (f"internal error ({type(e).__name__}: {_one_line(e)}); run again with --debug for the traceback")


@contextlib.contextmanager
def one_line_warnings(command: str) -> Iterator[None]:
    """Inside the block, a SeqdistillWarning that the warning filters let through (Python's
    default: each distinct one) is printed as ``<command>: warning: <message>``; other warnings
    go to the display that was in place (Python's ``file:line: Category: message``)."""
    with warnings.catch_warnings():
        shown_before = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
            if issubclass(category, SeqdistillWarning):
                print(f"{command}: warning: {_one_line(message)}", file=sys.stderr)
            else:
                shown_before(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def run(command: str, func: Callable[[], int | None], *, debug: bool, output: str | None = None) -> int:
    """Call ``func`` and turn what it raises into one line on stderr and an exit status; its
    SeqdistillWarnings are printed as one line each (:func:`one_line_warnings`)."""
    try:
        with one_line_warnings(command):
            return int(func() or 0)
    except (Exception, KeyboardInterrupt) as e:
        if debug:
            raise
        code, message = describe(e, output)
        print(f"{command}: {message}", file=sys.stderr)
        return code
