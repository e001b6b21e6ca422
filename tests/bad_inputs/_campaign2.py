"""Helpers of the third bad-input campaign (``test_campaign2_*.py``): cases that must be
*accepted* (exit 0, the result checked against a plain-Python reference, nothing outside the
output changed), writers of odd files, and running the command in a child process (for kill -9,
``ulimit -f`` and environment variables that must not leak into the test process)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from .conftest import Result, tree


def changed(before: dict, after: dict) -> set[str]:
    return {p for p in set(before) | set(after) if before.get(p) != after.get(p)}


def outside(paths: Iterable[str], allowed: tuple[str, ...]) -> set[str]:
    """The paths not under any of ``allowed``."""
    return {p for p in paths if not any(p == a or p.startswith(a + os.sep) for a in allowed)}


def accepted(ws: Path, run: Callable[..., Result], *argv: str, may_change: tuple[str, ...] = ("out",)) -> Result:
    """Run a command that must succeed: exit 0, no traceback, no error line, and nothing under
    the workspace changed except ``may_change``."""
    before = tree(ws)
    r = run(*argv)
    assert r.code == 0, r.err
    assert "Traceback" not in r.err and ": error: " not in r.err, r.err
    assert not outside(changed(before, tree(ws)), may_change)
    return r


def child(argv: list[str], cwd: Path, *, env: dict[str, str] | None = None, pre: str = "", limit_kb: int | None = None):
    """Run ``seqdistill <argv>`` in a fresh Python process: ``pre`` is Python run first (e.g. a
    patch that kills the process at a chosen moment); ``limit_kb`` sets RLIMIT_FSIZE (what
    ``ulimit -f`` sets) in the child only."""
    code = f"import sys\n{pre}\nfrom seqdistill.cli import main\nsys.exit(main({argv!r}))\n"

    def limit() -> None:
        if limit_kb is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_kb * 1024, limit_kb * 1024))

    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1", "POLARS_MAX_THREADS": "1", **(env or {})},
        capture_output=True,
        text=True,
        preexec_fn=limit,
        timeout=120,
    )
