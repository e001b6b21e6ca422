"""The harness of the bad-input campaign: a workspace folder, a snapshot of its tree, and
``refused(argv, *names)`` that runs the command and checks what every case must hold."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from seqdistill.cli import main

# A valid log: 3 users x 3 items, each pair once (survives --k-core 1..3).
LOG_ROWS = [(u, i, 10 * u + i) for u in (1, 2, 3) for i in (10, 11, 12)]
LOG_CSV = "user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in LOG_ROWS)


def tree(root: Path) -> dict[str, tuple]:
    """Every path under ``root``: folders by name, files by size, mtime and SHA-256 (links by
    target, FIFOs and devices by kind: they are never opened)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = ("dir",)
        for f in filenames:
            p = os.path.join(dirpath, f)
            st = os.lstat(p)
            if os.path.islink(p):
                digest = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(Path(p).read_bytes()).hexdigest()
            else:  # a FIFO or device: reading it would block
                digest = f"special {stat.S_IFMT(st.st_mode):o}"
            out[os.path.relpath(p, root)] = ("file", st.st_size, st.st_mtime_ns, digest)
    return out


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def last(self) -> str:
        lines = [line for line in self.err.splitlines() if line.strip()]
        return lines[-1] if lines else ""


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's folder: the current directory of the command, holding a valid ``log.csv``."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "log.csv").write_text(LOG_CSV)
    return tmp_path


@pytest.fixture
def run(capsys: pytest.CaptureFixture) -> Callable[..., Result]:
    def _run(*argv: str) -> Result:
        code = main([str(a) for a in argv])
        cap = capsys.readouterr()
        return Result(code, cap.out, cap.err)

    return _run


@pytest.fixture
def refused(ws: Path, run: Callable[..., Result]) -> Callable[..., Result]:
    """Run a command that must be refused: exit ``code`` (2), no traceback, the last stderr line
    is ``seqdistill <cmd>: error: ...`` naming every string in ``names`` (the only stderr line
    unless argparse printed its usage first), and nothing under the workspace changed except
    the paths in ``may_change``."""

    def _refused(*argv: str, names: tuple[str, ...] = (), code: int = 2, may_change: tuple[str, ...] = ()) -> Result:
        before = tree(ws)
        r = run(*argv)
        assert r.code == code, (r.code, r.err)
        assert "Traceback" not in r.err and "Traceback" not in r.out
        assert r.last.startswith("seqdistill ") and ": error: " in r.last, r.err
        if "argument " not in r.last and "usage:" not in r.err:
            assert len([line for line in r.err.splitlines() if line.strip()]) == 1, r.err
        for name in names:
            assert name in r.last, (name, r.last)
        after = tree(ws)
        changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
        assert not {p for p in changed if not any(p == m or p.startswith(m + os.sep) for m in may_change)}, changed
        return r

    return _refused
