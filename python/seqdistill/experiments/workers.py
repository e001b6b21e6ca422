"""``run_experiment(..., workers=N)``: the runs of an experiment trained by N worker processes at
once (``seqdistill experiment CONFIG --out DIR --workers N``).

The parent does everything that precedes training exactly as a serial run does (the checks, the
prepared dataset, the profile targets, all cached in the folder), then starts N processes
(``spawn``), each with one torch CPU thread, or one GPU each (worker ``i`` takes CUDA device
``i mod count``) where there are GPUs. A worker loads the cached dataset and targets once and asks
the parent for one run at a time (runs are handed out in plan order), which it trains and tests
with the same function a serial run uses (``runner._one_run``), so a run's record, per-row arrays
and numbers are those of a serial run with the same settings and threads.

Exactly once, whatever is killed:

- a run is finished when ``runs/<run>.json`` exists (written last, atomically); a worker checks it
  before and again after it locks the run's folder ``work/<run>/`` (an ``flock`` on the folder,
  which the kernel drops when the process dies), so two processes never train one run, even two
  invocations on the same folder;
- a worker dies with its parent (``PR_SET_PDEATHSIG``, and a check of the parent's pid), so
  ``kill -9`` of the parent leaves no worker training on; its runs resume from ``work/<run>/``
  when the command is run again;
- a worker that dies (``kill -9``, out of memory) or fails stops the hand-out of new runs; the
  others finish the run they hold and the parent raises one error naming the run. Running the
  command again resumes it from its checkpoint; finished runs are never trained again.

Messages between the parent and its workers are JSON over pipes (no pickle).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from seqdistill import errors
from seqdistill._checks import THREAD_LIMIT
from seqdistill.errors import ConfigError, SeqdistillError, TrainingError

__all__ = ["check_workers", "folder_lock", "run_parallel"]


def check_workers(workers: object) -> int:
    """``workers`` as a count of processes (an integer from 1 to 1024), else a ConfigError."""
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= THREAD_LIMIT:
        raise ConfigError(f"workers: expected an integer from 1 to {THREAD_LIMIT}, got {workers!r}")
    return workers


def _send(conn: Connection, **msg: Any) -> None:
    conn.send_bytes(json.dumps(msg).encode("utf-8"))


def _recv(conn: Connection) -> dict[str, Any]:
    return json.loads(conn.recv_bytes().decode("utf-8"))


# ------------------------------------------------------------------------------ the worker
@contextlib.contextmanager
def folder_lock(work: Path) -> Iterator[bool]:
    """An exclusive ``flock`` on the folder ``work`` (True), or False when another live process
    holds it. The folder may be removed while held: whoever locks a new one finds the record."""
    fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _worker(
    index: int, parent: int, conn: Connection, setup: Callable[..., Callable[[str], dict]], args: tuple
) -> None:
    """One worker process: ``setup(index, *args)`` once (it returns the function that trains one
    run by name), then ask for a run, train it, report, until told to stop."""
    from seqdistill.training.distributed import die_with_parent

    die_with_parent(parent)  # elsewhere than Linux, the pid check before each run stops an orphan
    try:
        train = setup(index, *args)
        _send(conn, kind="ready")
        while (msg := _recv(conn)).get("run") is not None:
            if os.getppid() != parent:
                os._exit(1)
            _send(conn, **train(msg["run"]))
    except SeqdistillError as e:
        _send(conn, kind="error", type=type(e).__name__, message=str(e))
    except Exception as e:  # a bug: its type and message, for the parent's one error
        _send(conn, kind="error", type="TrainingError", message=f"{type(e).__name__}: {e}")
    finally:
        conn.close()


# ------------------------------------------------------------------------------ the parent
class _Pool:
    """The parent's side: N workers, the runs still to hand out, and what went wrong."""

    def __init__(self, todo: list[str], workers: int, progress: bool, setup: Callable, args: tuple) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.todo, self.total, self.progress = list(todo), len(todo), progress
        self.finished, self.failures = 0, []
        self.current: dict[int, str | None] = {}
        self.procs, self.conns = [], []
        for i in range(min(workers, len(todo))):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(
                target=_worker, args=(i, os.getpid(), theirs, setup, args), daemon=True, name=f"seqdistill-worker-{i}"
            )
            proc.start()
            theirs.close()
            self.procs.append(proc)
            self.conns.append(mine)
            self.current[i] = None

    def run(self) -> None:
        """Hand out runs until none are left (or something failed); wait for every worker."""
        live = set(range(len(self.procs)))
        while live:
            ready = wait([self.conns[i] for i in live] + [self.procs[i].sentinel for i in live])
            for i in sorted(live):
                if self.conns[i] in ready or self.procs[i].sentinel in ready:
                    if not self._serve(i):
                        live.discard(i)
        for proc in self.procs:
            proc.join()
        if self.todo and not self.failures:  # every worker died between runs
            self.failures.append(
                (
                    "TrainingError",
                    f"{len(self.todo)} run(s) not trained (from {self.todo[0]}): the worker "
                    "processes stopped; run the same command again",
                )
            )

    def _serve(self, i: int) -> bool:
        """Read worker ``i``'s message and answer it; False once the worker is done or dead."""
        try:
            msg = _recv(self.conns[i])
        except (EOFError, OSError):
            self.procs[i].join()
            if self.current[i] is not None:  # died holding a run
                code = self.procs[i].exitcode
                how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited ({code})"
                self.failures.append(
                    (
                        "TrainingError",
                        f"the worker training run {self.current[i]} {how}; run the same command again to resume it from its checkpoint",
                    )
                )
            return False
        if msg["kind"] == "error":
            self.failures.append((msg["type"], f"run {self.current[i] or '(setup)'}: {msg['message']}"))
            return False
        if msg["kind"] == "done":
            self._report(msg)
        elif msg["kind"] == "busy":
            self.failures.append(
                (
                    "TrainingError",
                    f"run {msg['run']} is being trained by another process on this folder; run again when it has finished",
                )
            )
        nxt = self.todo.pop(0) if self.todo and not self.failures else None
        try:
            _send(self.conns[i], run=nxt)
        except OSError:  # died just now: the run goes back to the others
            if nxt is not None:
                self.todo.insert(0, nxt)
            self.current[i] = None
            return False
        self.current[i] = nxt
        return nxt is not None

    def _report(self, msg: dict[str, Any]) -> None:
        self.finished += 1
        if self.progress:
            how = "finished by another process" if msg.get("skipped") else f"{msg['seconds']:.1f}s"
            nd, rc = (f"{v:.4f}" if isinstance(v, float) else "n/a" for v in (msg["ndcg"], msg["recall"]))
            print(
                f"[{self.finished}/{self.total}] {msg['run']}: test ndcg@10={nd} recall@10={rc} "
                f"best_epoch={msg['best_epoch']} ({how})",
                flush=True,
            )

    def raise_failure(self) -> None:
        if not self.failures:
            return
        kind, message = self.failures[0]
        cls = getattr(errors, kind, None)
        cls = cls if isinstance(cls, type) and issubclass(cls, SeqdistillError) else TrainingError
        more = f" ({len(self.failures) - 1} more failure(s))" if len(self.failures) > 1 else ""
        raise cls(message + more)


def run_parallel(
    todo: list[str], workers: int, progress: bool, setup: Callable[..., Callable[[str], dict]], args: tuple
) -> None:
    """Train the runs named ``todo`` in ``workers`` processes (see the module doc): each worker
    calls ``setup(index, *args)`` once (a module-level function, e.g. the runner's; it returns the
    function that trains a run by name and returns its summary), then trains runs as handed out.
    Raises the first failure once every worker has stopped."""
    pool = _Pool(todo, workers, progress, setup, args)
    try:
        pool.run()
    finally:
        for proc in pool.procs:
            if proc.is_alive():
                proc.terminate()
                proc.join()
    pool.raise_failure()
