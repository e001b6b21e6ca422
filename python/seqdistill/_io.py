"""The one atomic writer: every file and folder seqdistill writes goes through this module.

A file is written under a temporary name in the same folder, flushed and fsynced, renamed over its
final name, and the folder is fsynced, so a reader sees the old content or the new, never half of
it, and a crash loses at most the file in flight. A folder (a prepared dataset, a model) is built
under a temporary sibling and swapped in with two renames; :func:`recover_dir` repairs the one
window where a crash leaves neither name (between the two renames) the next time the folder is
opened, and removes what interrupted writes left behind.

Temporaries are named ``.<name>.sdtmp-<pid>-<hex>`` and replaced folders ``.<name>.sdold-<pid>-<hex>``:
seqdistill only ever removes names of that shape, and only when the process that made them is
gone. It never deletes or replaces anything else (see :func:`check_replaceable`).

:func:`read_npy` is the reading side of :func:`write_npy`: the one way a ``.npy`` file is read,
never unpickled, every way a file can be wrong named in one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from seqdistill.errors import DataError, OutputError

__all__ = [
    "atomic_dir",
    "atomic_file",
    "check_replaceable",
    "clean_stale",
    "fsync_dir",
    "overlap",
    "read_npy",
    "recover_dir",
    "write_bytes",
    "write_json",
    "write_npy",
    "write_parquet",
    "write_text",
    "write_with",
]

TMP_TAG = ".sdtmp-"
OLD_TAG = ".sdold-"
_COMPLETE = ".sdcomplete"  # written into a folder temporary once every file in it is synced
_OURS = re.compile(r"^\.(?P<name>.+)(?P<tag>\.sdtmp-|\.sdold-)(?P<pid>\d+)-[0-9a-f]+$")


def _sibling(path: Path, tag: str) -> Path:
    return path.with_name(f".{path.name}{tag}{os.getpid()}-{secrets.token_hex(4)}")


def make_dir_with(folder: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Creates the new folder ``folder`` with ``write(tmp)`` done in it before it appears under
    its name: a crash leaves no ``folder`` or the whole of it (and a temporary that
    :func:`clean_stale` on the parent removes once its process is dead; done here first)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(folder.parent)
    tmp = _sibling(folder, TMP_TAG)
    tmp.mkdir()
    try:
        write(tmp)
        os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(folder.parent)
    return folder


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename inside ``folder`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; on a clean exit it is synced and renamed
    to ``path``, on an exception removed (``path`` keeps its old content)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; expected a file name here")
    tmp = _sibling(path, TMP_TAG)
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def write_with(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """``write(tmp_path)`` writes the file (for libraries that want a path, e.g. ``torch.save``);
    it is then synced and renamed to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; expected a file name here")
    tmp = _sibling(path, TMP_TAG)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_file(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def loads_json(text: str | bytes, **kw: Any) -> Any:
    """``json.loads`` for a file's text, with nesting deeper than Python's parser can follow
    (``[[[[...``, a hand-edited or hostile file) raised as ``json.JSONDecodeError`` like any other
    invalid JSON, so that every reader's ``except ValueError`` names the file."""
    try:
        return json.loads(text, **kw)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply to read", "", 0) from None


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 1, sort_keys: bool = False) -> Path:
    """JSON (UTF-8, NaN written as ``NaN`` as Python's json does); numpy scalars become numbers."""
    return write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_npy(path: str | os.PathLike, arr: Any) -> Path:
    """A ``.npy`` file without pickled objects (object arrays are refused)."""
    import numpy as np

    with atomic_file(path, "wb") as f:
        np.save(f, np.asarray(arr), allow_pickle=False)
    return Path(path)


_NPY_MAGIC = b"\x93NUMPY"


def read_npy(path: str | os.PathLike, what: str = "", error: type[Exception] = DataError, hint: str = "") -> Any:
    """The array in a ``.npy`` file, never unpickled. A missing, empty or damaged file, a file
    that is not ``.npy`` at all, or one holding Python objects (which only a pickle can restore)
    raises ``error`` naming ``path`` (and ``what``, e.g. the config key), the reason and ``hint``."""
    import numpy as np

    where = f"{path}: {what}: " if what else f"{path}: "
    p = Path(path)
    if not p.is_file():
        raise error(
            where + ("is a folder, not a .npy file" if p.is_dir() else "missing") + (f"; {hint}" if hint else "")
        )
    try:
        problem = _npy_problem(p)
        if problem is None:
            return np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        problem = f"not a readable .npy array ({type(e).__name__}: {' '.join(str(e).split())})"
    raise error(where + problem + (f"; {hint}" if hint else ""))


def _npy_problem(p: Path) -> str | None:
    """Why ``p`` cannot be read as a plain ``.npy`` array, judged from its header, or None."""
    import numpy as np

    with open(p, "rb") as f:
        head = f.read(len(_NPY_MAGIC))
        if not head:
            return "not a readable .npy array: the file is empty"
        if head != _NPY_MAGIC:
            return "not a readable .npy array: it does not start with the NumPy header (not a .npy file)"
        f.seek(0)
        major, _ = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        _, _, dtype = read_header(f)
    if dtype.hasobject:
        return (
            "not a readable .npy array: it holds Python objects, which only a pickle can restore; "
            "seqdistill reads arrays with allow_pickle=False and never unpickles"
        )
    return None


def check_parquet(path: str | os.PathLike, columns: list[str] | None = None) -> None:
    """Raises :class:`DataError` naming ``path`` when the parquet file holds damage polars'
    reader aborts the process on (see :func:`seqdistill.core.check_parquet`; ``columns``: the
    columns polars will read, every one when None, none but the footer when empty). Call it
    before any polars read of a parquet file the package did not just write."""
    from seqdistill import core  # the Rust core; imported here, where a parquet file is read

    try:
        core.check_parquet(path, columns)
    except DataError as e:
        raise DataError(f"{path}: {e}") from None


def write_parquet(path: str | os.PathLike, df: Any) -> Path:
    """A polars DataFrame as one parquet file."""
    with atomic_file(path, "wb") as f:
        df.write_parquet(f)
    return Path(path)


# --------------------------------------------------------------------------------- folders
def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftovers(folder: Path) -> list[tuple[Path, str, int]]:
    """Our temporaries and replaced copies of ``folder`` (siblings named after it)."""
    parent = folder.parent
    if not parent.is_dir():
        return []
    out = []
    for p in parent.iterdir():
        m = _OURS.match(p.name)
        if m and m["name"] == folder.name:
            out.append((p, m["tag"], int(m["pid"])))
    return out


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            p.unlink()


def recover_dir(folder: str | os.PathLike) -> None:
    """Repair ``folder`` after an interrupted :func:`atomic_dir` and drop what that left behind.

    If a crash came between the two renames (``folder`` gone, its old copy set aside), the new
    copy is put in place when it was complete, else the old copy is put back. Temporaries of
    processes that are still running are left alone.
    """
    folder = Path(folder)
    left = _leftovers(folder)
    if not left:
        return
    if not folder.exists():
        done = sorted(
            (p for p, tag, _ in left if tag == TMP_TAG and (p / _COMPLETE).is_file()), key=lambda p: p.stat().st_mtime
        )
        olds = sorted((p for p, tag, _ in left if tag == OLD_TAG), key=lambda p: p.stat().st_mtime)
        pick = done[-1] if done else (olds[-1] if olds else None)
        if pick is not None:
            os.replace(pick, folder)
            with contextlib.suppress(OSError):
                (folder / _COMPLETE).unlink()
            fsync_dir(folder.parent)
    for p, tag, pid in _leftovers(folder):
        if tag == OLD_TAG or not _pid_alive(pid):
            _remove(p)


def clean_stale(folder: str | os.PathLike) -> None:
    """Remove temporaries of dead processes inside ``folder`` (files written by :func:`atomic_file`)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        m = _OURS.match(p.name)
        if m and m["tag"] == TMP_TAG and not _pid_alive(int(m["pid"])):
            _remove(p)


def overlap(out: str | os.PathLike, src: str | os.PathLike) -> str | None:
    """How an output path stands to an input path, both resolved (symlinks followed): ``"is"``
    (the same path), ``"lies inside"`` (the output is under the input), ``"holds"`` (the input
    is under the output), or None (apart). Every "output inside an input" refusal reads this."""
    target, source = Path(out).resolve(), Path(src).resolve()
    if target == source:
        return "is"
    if target.is_relative_to(source):
        return "lies inside"
    if source.is_relative_to(target):
        return "holds"
    return None


def check_replaceable(
    folder: str | os.PathLike,
    is_ours: Callable[[Path], bool],
    what: str,
    overwrite: bool,
    known: Callable[[str], bool] | None = None,
) -> None:
    """Refuse to write ``folder`` unless it is absent, an empty folder, or ``is_ours`` and
    ``overwrite`` is set. ``known(name)`` says which entries the writer makes: a folder of ours
    that also holds anything else (a user's note dropped into it) is refused too, since
    replacing the folder would delete it. Raises :class:`~seqdistill.errors.OutputError`."""
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return
    if not folder.is_dir() or folder.is_symlink():
        raise OutputError(f"{folder}: exists and is not a folder; refusing to replace it with a {what}")
    if not any(folder.iterdir()):
        return
    if not is_ours(folder):
        raise OutputError(
            f"{folder}: folder exists and is not a {what} (it holds files seqdistill did not write); "
            "refusing to replace it — choose a new or empty folder"
        )
    foreign = [] if known is None else sorted(n for n in os.listdir(folder) if not known(n) and not _OURS.match(n))
    if foreign:
        listed = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise OutputError(
            f"{folder}: a {what} that also holds {listed}, which seqdistill did not write; refusing to "
            "replace it (that would delete them) — move them out or choose another folder"
        )
    if not overwrite:
        raise OutputError(f"{folder}: a {what} is already there; pass overwrite=True (--overwrite) to replace it")


@contextlib.contextmanager
def atomic_dir(
    folder: str | os.PathLike,
    *,
    is_ours: Callable[[Path], bool],
    what: str,
    overwrite: bool = False,
    known: Callable[[str], bool] | None = None,
) -> Iterator[Path]:
    """Build a folder under a temporary sibling and swap it in when the block ends cleanly.

    Refuses (before any work) a ``folder`` that :func:`check_replaceable` refuses (``known``:
    see there). Files written into the yielded temporary folder are synced before the swap; an
    exception removes it. An operating-system error making the temporary names ``folder``.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(folder)
    check_replaceable(folder, is_ours, what, overwrite, known)
    tmp = _sibling(folder, TMP_TAG)
    try:
        tmp.mkdir()
    except OSError as e:  # the temporary's name would only confuse: the user asked for ``folder``
        raise OSError(e.errno, e.strerror, str(folder)) from None
    try:
        yield tmp
        for p in tmp.rglob("*"):
            if p.is_file():
                with open(p, "rb+") as f:
                    os.fsync(f.fileno())
        (tmp / _COMPLETE).touch()
        fsync_dir(tmp)
        old = None
        if folder.exists():
            if not any(folder.iterdir()):
                folder.rmdir()
            else:
                old = _sibling(folder, OLD_TAG)
                os.replace(folder, old)
        os.replace(tmp, folder)
        (folder / _COMPLETE).unlink()
        fsync_dir(folder.parent)
    except BaseException:
        _remove(tmp)
        raise
    if old is not None:
        _remove(old)
