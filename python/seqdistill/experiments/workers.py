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
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from seqdistill import errors
from seqdistill.errors import ConfigError, SeqdistillError, TrainingError

from .plan import RunPlan
from .resume import WORK_MARKER
from .validate import WORKERS_LIMIT

__all__ = ["check_workers", "run_parallel", "sweep_finished"]


def check_workers(workers: object) -> int:
    """``workers`` as a count of processes (an integer from 1 to 1024), else a ConfigError."""
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= WORKERS_LIMIT:
        raise ConfigError(f"workers: expected an integer from 1 to {WORKERS_LIMIT}, got {workers!r}")
    return workers


def _send(conn: Connection, **msg: Any) -> None:
    conn.send_bytes(json.dumps(msg).encode("utf-8"))


def _recv(conn: Connection) -> dict[str, Any]:
    return json.loads(conn.recv_bytes().decode("utf-8"))


# ------------------------------------------------------------------------------ the worker
@contextlib.contextmanager
def _folder_lock(work: Path) -> Iterator[bool]:
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


def sweep_finished(out: Path, finished: list[str]) -> None:
    """What a process killed between a run's record and its cleanup left of a finished run: its
    ``work/<run>/`` (a folder the runner made, or an empty one a removal stopped in)."""
    from .runner import _remove_work_folder

    for name in finished:
        work = out / "work" / name
        if not work.is_dir() or work.is_symlink():
            continue
        with _folder_lock(work) as held:
            if held and not any(work.iterdir()):
                work.rmdir()
            elif held and (work / WORK_MARKER).is_file():
                _remove_work_folder(out, work, name)


def _train_one(config, ds, plan: RunPlan, targets, out: Path) -> dict[str, Any]:
    """Train and test ``plan`` unless it is finished or held by another process."""
    from .records import RunRecord
    from .runner import _one_run, _remove_work_folder, _work_folder

    record = out / "runs" / f"{plan.name}.json"
    busy = {"kind": "busy", "run": plan.name}
    if record.exists():  # finished by another process on this folder
        return {"kind": "done", "run": plan.name, "skipped": True, **_summary(RunRecord.from_json(record))}
    try:
        work = _work_folder(out, plan)  # created here (with the runner's marker) or resumed
    except FileExistsError:  # another process created it a moment ago
        return busy
    with _folder_lock(work) as held:
        if not held:
            return busy
        if record.exists():  # finished by another process meanwhile
            _remove_work_folder(out, work, plan.name)
            return {"kind": "done", "run": plan.name, "skipped": True, **_summary(RunRecord.from_json(record))}
        t0 = time.perf_counter()
        rec = _one_run(config, ds, plan, targets, out)
        return {"kind": "done", "run": plan.name, "seconds": time.perf_counter() - t0, **_summary(rec)}


def _summary(rec) -> dict[str, Any]:
    return {"ndcg": rec.test.get("ndcg@10"), "recall": rec.test.get("recall@10"), "best_epoch": rec.best_epoch}


def _setup(index: int, config_dict: dict[str, Any], origin: str, out: Path):
    """The worker's torch settings, config, dataset, targets and plans (all cached by the parent)."""
    import torch

    from seqdistill.data import PreparedDataset

    from .config import ExperimentConfig
    from .plan import plan_runs
    from .runner import _targets

    torch.set_num_threads(1)
    if torch.cuda.is_available():
        torch.cuda.set_device(index % torch.cuda.device_count())
    config = ExperimentConfig.from_dict(config_dict, where=origin)
    ds = PreparedDataset.load(out / "dataset")
    return config, ds, _targets(config, ds, out), {p.name: p for p in plan_runs(config)}


def _worker(index: int, out: str, config_dict: dict[str, Any], origin: str, parent: int, conn: Connection) -> None:
    """One worker process: ask for a run, train it, report, until told to stop."""
    from seqdistill.training.distributed import die_with_parent

    die_with_parent(parent)  # elsewhere than Linux, the pid check before each run stops an orphan
    folder = Path(out)
    try:
        config, ds, targets, plans = _setup(index, config_dict, origin, folder)
        _send(conn, kind="ready")
        while (msg := _recv(conn)).get("run") is not None:
            if os.getppid() != parent:
                os._exit(1)
            _send(conn, **_train_one(config, ds, plans[msg["run"]], targets, folder))
    except SeqdistillError as e:
        _send(conn, kind="error", type=type(e).__name__, message=str(e))
    except Exception as e:  # a bug: its type and message, for the parent's one error
        _send(conn, kind="error", type="TrainingError", message=f"{type(e).__name__}: {e}")
    finally:
        conn.close()


# ------------------------------------------------------------------------------ the parent
class _Pool:
    """The parent's side: N workers, the runs still to hand out, and what went wrong."""

    def __init__(self, out: Path, config, todo: list[RunPlan], workers: int, progress: bool) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.todo, self.total, self.progress = [p.name for p in todo], len(todo), progress
        self.finished, self.failures = 0, []
        self.current: dict[int, str | None] = {}
        self.procs, self.conns = [], []
        for i in range(min(workers, len(todo))):
            mine, theirs = ctx.Pipe()
            args = (i, str(out), config.to_dict(), config.origin, os.getpid(), theirs)
            proc = ctx.Process(target=_worker, args=args, daemon=True, name=f"seqdistill-worker-{i}")
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


def run_parallel(config, out: Path, todo: list[RunPlan], workers: int, progress: bool) -> None:
    """Train and test ``todo`` in ``workers`` processes (see the module doc); raises the first
    failure once every worker has stopped."""
    pool = _Pool(out, config, todo, workers, progress)
    try:
        pool.run()
    finally:
        for proc in pool.procs:
            if proc.is_alive():
                proc.terminate()
                proc.join()
    pool.raise_failure()
