"""Third campaign, the machine: a disk that fills up (a small tmpfs, or ``ulimit -f`` where no
file system can be mounted), a read-only mount, a process killed with SIGKILL in the middle of a
save and run again, and memory a setting asks for and the machine does not have."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._campaign2 import child
from .conftest import tree

BIG = "user_id,item_id,timestamp\n" + "".join(f"{u},{i},{u * 1000 + i}\n" for u in range(300) for i in range(20))


@contextlib.contextmanager
def mounted(folder: Path, options: str) -> Iterator[bool]:
    """A tmpfs mounted at ``folder`` (yields False where mounting is not allowed)."""
    folder.mkdir()
    ok = (
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True).returncode
        == 0
    )
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["datasets", "prepare", "synthetic", "{out}", "-o", "n_users=3000", "--k-core", "2"],
        ["prepare", "big.csv", "--out", "{out}", "--k-core", "1"],
    ],
    ids=["datasets-prepare", "prepare"],
)
def test_disk_fills_up_while_saving(tmp_path: Path, argv: list[str]) -> None:
    """A 64 KiB file system (or a 16 KiB file-size limit): exit 2, one line saying the disk is
    full (or the file too large), nothing half-written left on it."""
    (tmp_path / "big.csv").write_text(BIG)
    small = tmp_path / "small"
    with mounted(small, "size=12k") as ok:
        out = str(small / "out") if ok else "out"
        before = tree(small) if ok else None
        r = child([a.replace("{out}", out) for a in argv], tmp_path, limit_kb=None if ok else 16)
        assert r.returncode == 2, r.stderr
        line = _one_line(r.stderr)
        assert ": error: " in line and ("disk full" in line or "file too large" in line), line
        assert "out" in line
        if ok:
            assert tree(small) == before  # no temporary left behind
        assert not (tmp_path / out).exists()


def test_file_size_limit(tmp_path: Path) -> None:
    """``ulimit -f`` (RLIMIT_FSIZE): Python ignores SIGXFSZ, so the write fails with EFBIG."""
    r = child(["datasets", "prepare", "synthetic", "out", "-o", "n_users=3000"], tmp_path, limit_kb=16)
    assert r.returncode == 2, r.stderr
    assert "file too large" in _one_line(r.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_read_only_mount(tmp_path: Path) -> None:
    (tmp_path / "big.csv").write_text(BIG)
    with mounted(tmp_path / "ro", "ro,size=64k") as ok:
        if not ok:
            pytest.skip("mounting a tmpfs is not allowed here")
        r = child(["prepare", "big.csv", "--out", "ro/out", "--k-core", "1"], tmp_path)
        assert r.returncode == 2, r.stderr
        line = _one_line(r.stderr)
        assert "ro/out" in line and "read-only file system" in line and ".sdtmp" not in line, line


# A patch run in the child before the command: SIGKILL the process at the n-th fsync of a file
# inside a temporary folder (the dataset is half built there) or at the first rename of a folder.
KILL_AT_FSYNC = """
import os, signal
from seqdistill import _io
_seen = [0]
_real = os.fsync
def _fsync(fd):
    _seen[0] += 1
    if _seen[0] == {n}:
        os.kill(os.getpid(), signal.SIGKILL)
    return _real(fd)
os.fsync = _fsync
"""


@pytest.mark.parametrize("n", [2, 6], ids=["while-writing-files", "while-swapping"])
def test_killed_while_saving_then_run_again(tmp_path: Path, n: int) -> None:
    """kill -9 in the middle of replacing a prepared dataset: the old dataset is still whole (or
    the new one is, when the kill came after the new copy was complete); running again succeeds
    and leaves no temporary behind."""
    from seqdistill.data import PreparedDataset

    (tmp_path / "big.csv").write_text(BIG)
    assert child(["prepare", "big.csv", "--out", "out", "--k-core", "1"], tmp_path).returncode == 0
    first = PreparedDataset.load(tmp_path / "out").fingerprint()
    argv = ["prepare", "big.csv", "--out", "out", "--k-core", "1", "--quantile", "0.5", "--overwrite"]
    r = child(argv, tmp_path, pre=KILL_AT_FSYNC.format(n=n))
    assert r.returncode == -9, (r.returncode, r.stderr)
    now = PreparedDataset.load(tmp_path / "out").fingerprint()  # repairs an interrupted swap
    assert now == first or n == 6
    assert child(argv, tmp_path).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.csv", "out"]
    assert PreparedDataset.load(tmp_path / "out").fingerprint() != first


def test_killed_while_reducing_then_run_again(tmp_path: Path) -> None:
    import numpy as np

    (tmp_path / "big.csv").write_text(BIG)
    assert child(["prepare", "big.csv", "--out", "ds", "--k-core", "1"], tmp_path).returncode == 0
    (tmp_path / "emb").mkdir()
    np.save(tmp_path / "emb" / "embedding_users.npy", np.arange(40))
    np.save(tmp_path / "emb" / "embeddings.npy", np.random.default_rng(0).normal(size=(40, 16)))
    argv = ["profiles", "reduce", "ds", "--embeddings", "emb", "--out", "t", "--dim", "4", "--method", "pca"]
    assert child(argv, tmp_path, pre=KILL_AT_FSYNC.format(n=3)).returncode == -9
    assert child(argv, tmp_path).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.csv", "ds", "emb", "t"]
    assert np.load(tmp_path / "t" / "targets.npy").shape[1] == 4


def test_memory_a_setting_asks_for(tmp_path: Path, capsys) -> None:
    """A size no machine holds (what ``max_len = 1e9`` asks torch for) is the user's setting:
    exit 2 and one line, not an internal error."""
    import torch

    from seqdistill.cli import _errors

    def allocate() -> int:
        torch.empty(2**62, dtype=torch.uint8)
        return 0

    assert _errors.run("seqdistill experiment", allocate, debug=False) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("seqdistill experiment: error: out of memory"), line

    def numpy_alloc() -> int:
        import numpy as np

        np.empty(2**62, dtype=np.uint8)
        return 0

    assert _errors.run("seqdistill experiment", numpy_alloc, debug=False) == 2
    assert "out of memory" in _one_line(capsys.readouterr().err)


def test_home_is_not_a_folder_for_the_report(tmp_path: Path) -> None:
    """matplotlib and the caches look under HOME; a HOME that is a file changes nothing for
    commands that do not need a cache (prepare runs and prints no warning about it)."""
    (tmp_path / "big.csv").write_text(BIG)
    (tmp_path / "home").write_text("not a folder")
    r = child(["prepare", "big.csv", "--out", "out", "--k-core", "1"], tmp_path, env={"HOME": str(tmp_path / "home")})
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.csv", "home", "out"]
    assert os.path.isfile(tmp_path / "home")
