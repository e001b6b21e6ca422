"""``run_experiment(..., workers=N)`` / ``seqdistill experiment --workers N``: the variant x seed
grid in worker processes gives the records of a serial run; killing the parent mid-grid (kill -9)
and running again completes every run exactly once; a killed worker is named in one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from seqdistill.cli import main as cli_main  # noqa: E402
from seqdistill.errors import ConfigError, TrainingError  # noqa: E402
from seqdistill.experiments import (  # noqa: E402
    load_preset,
    report,
    run_experiment,
    runner,
)
from seqdistill.experiments.plan import plan_runs  # noqa: E402
from seqdistill.experiments.runner import prepare_dataset  # noqa: E402

TIMING = ("seconds", "samples_per_s")


def tiny_config(targets: Path):
    """6 runs (vanilla, one distilled point, the shuffled control; seeds 0 and 1) on 300
    synthetic users, with given targets (no encoder)."""
    cfg = load_preset("synthetic")
    cfg.dataset.kwargs.update(n_users=300, n_items=120)
    cfg.model.update(hidden=16, n_blocks=1)
    cfg.train.update(epochs=3, batch_size=64, progress=False, device="cpu")
    cfg.distill.base["epochs"] = 1
    cfg.distill.grid = {}
    cfg.seeds = [0, 1]
    cfg.profiles.source, cfg.profiles.targets = "targets", str(targets)
    return cfg.validate()


def _targets_for(cfg, folder: Path) -> None:
    """A prepared dataset in ``folder`` and random targets for its users at ``[profiles] targets``."""
    ds = prepare_dataset(cfg, folder)
    rng = np.random.default_rng(3)
    np.save(cfg.profiles.targets, rng.normal(size=(ds.n_users, 16)).astype(np.float32))


def _records(folder: Path) -> dict[str, dict]:
    """Every finished run's record without its timings, and its per-row arrays."""
    out = {}
    for path in sorted((folder / "runs").glob("*.json")):
        rec = json.loads(path.read_text())
        rec.pop("timing")
        rec["dataset"].pop("manifest")  # holds the preparation's seconds (each folder prepared its own)
        rec["history"] = [{k: v for k, v in row.items() if k not in TIMING} for row in rec["history"]]
        rec["rows"] = {k: np.load(folder / "runs" / f).tolist() for k, f in rec["per_row"].items()}
        out[path.stem] = rec
    return out


def _without_clock(x):
    """A report.json value without what the clock decides (seconds, overheads)."""
    if isinstance(x, dict):
        return {k: _without_clock(v) for k, v in x.items() if "second" not in k and "overhead" not in k}
    return [_without_clock(v) for v in x] if isinstance(x, list) else x


def _report(folder: Path):
    report(folder)
    return _without_clock(json.loads((folder / "report.json").read_text()))


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    """The grid run serially (workers = 1) in this process, one torch thread."""
    base = tmp_path_factory.mktemp("workers")
    cfg = tiny_config(base / "targets.npy")
    _targets_for(cfg, base / "serial")
    run_experiment(cfg, base / "serial", progress=False)
    return base, cfg


def _workers(pid: int) -> list[int]:
    """Spawned worker processes whose parent is ``pid`` (from /proc; not the resource tracker)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in cmdline:
                kids.append(int(entry.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_parent_killed_mid_grid_then_rerun_completes_each_run_once_as_serial(serial, tmp_path, capsys):
    base, cfg = serial
    out = tmp_path / "par"
    config = tmp_path / "tiny.toml"
    config.write_text(cfg.to_toml())
    _targets_for(cfg, out)  # the same dataset (and the same targets file) as the serial run's
    cmd = [sys.executable, "-m", "seqdistill.cli", "experiment", str(config), "--out", str(out), "--workers", "2"]
    proc = subprocess.Popen([*cmd, "--no-report"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs, workers = out / "runs", []
    try:
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline and not list(runs.glob("*.json")):
            workers = _workers(proc.pid) or workers
            time.sleep(0.02)
        workers = _workers(proc.pid) or workers
        proc.send_signal(signal.SIGKILL)  # the parent only: its workers must not train on
    finally:
        proc.wait()
    first = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in runs.glob("*.json")}
    assert 1 <= len(first) < 6 and len(workers) == 2
    deadline = time.monotonic() + 30
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers)  # died with their parent
    left = {p.name for p in runs.glob("*.json")} - set(first)
    assert not left, f"a worker finished {left} after its parent was killed"

    capsys.readouterr()
    run_experiment(cfg, out, workers=2)  # again: the rest, each once
    lines = capsys.readouterr().out.splitlines()
    trained = [line.split("] ", 1)[1].split(":", 1)[0] for line in lines if line.startswith("[")]
    expected = set(_records(base / "serial")) - {Path(n).stem for n in first}
    assert sorted(trained) == sorted(expected), lines
    for name, (ino, mtime, data) in first.items():  # never trained or written again
        p = runs / name
        assert (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) == (ino, mtime, data)
    assert not any((out / "work").iterdir())
    assert _records(out) == _records(base / "serial")  # workers 2 == workers 1, run by run
    assert _report(out) == _report(base / "serial")  # and the same report, timings aside


def test_a_killed_worker_is_named_and_a_rerun_resumes(serial, tmp_path):
    base, cfg = serial
    out = tmp_path / "kill"
    _targets_for(cfg, out)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            run_experiment(cfg, out, progress=False, workers=2)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            failure.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    import multiprocessing

    deadline = time.monotonic() + 240
    victim = None
    while thread.is_alive() and time.monotonic() < deadline:
        kids = [p for p in multiprocessing.active_children() if p.name.startswith("seqdistill-worker")]
        if kids and any((out / "work").glob("*/checkpoint")):
            victim = kids[0]
            os.kill(victim.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    thread.join()
    assert victim is not None and len(failure) == 1 and isinstance(failure[0], TrainingError)
    msg = str(failure[0])
    assert "\n" not in msg and "was killed by signal 9" in msg and "run the same command again" in msg, msg
    run_experiment(cfg, out, progress=False)  # serially: the rest, resumed from work/
    assert _records(out) == _records(base / "serial")


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("workers", [0, -1, 2.5, True, "2", 5000])
def test_bad_worker_counts_are_refused_before_any_work(serial, tmp_path, workers):
    _, cfg = serial
    with pytest.raises(ConfigError, match=r"^workers: expected an integer from 1 to 1024, got ") as err:
        run_experiment(cfg, tmp_path / "x", workers=workers)
    assert "\n" not in str(err.value) and not (tmp_path / "x").exists()


def test_cli_workers_zero_is_a_usage_error(tmp_path, capsys):
    assert cli_main(["experiment", "quickstart", "--out", str(tmp_path / "x"), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "--workers" in err and not (tmp_path / "x").exists()


def test_workers_and_nproc_both_above_one_are_refused(serial, tmp_path):
    _, cfg = serial
    cfg = type(cfg).from_dict({**cfg.to_dict(), "train": {**cfg.train, "nproc": 2}})
    with pytest.raises(ConfigError, match=r"\[train\] nproc = 2 with 2 workers: train several runs at once") as err:
        run_experiment(cfg, tmp_path / "x", workers=2)
    assert "\n" not in str(err.value) and not (tmp_path / "x").exists()


def test_train_nproc_2_trains_an_experiment_run_with_ddp_as_one_process(tmp_path):
    """``[train] nproc = 2``: the runner trains a run on 2 gloo processes and evaluates it as any
    run; without dropout its record equals ``nproc = 1``'s to float32 rounding (one run here, to
    keep the test short; tests/test_ddp.py compares distilled runs at the trainer level)."""
    records = {}
    for nproc in (1, 2):
        cfg = tiny_config(tmp_path / "targets.npy")
        cfg.model["dropout"] = 0.0
        cfg = type(cfg).from_dict({**cfg.to_dict(), "train": {**cfg.train, "nproc": nproc, "backend": "gloo"}})
        out = tmp_path / f"nproc{nproc}"
        _targets_for(cfg, out)
        ds = runner._dataset(cfg, out)
        plan = next(p for p in plan_runs(cfg) if p.name == "vanilla__seed0")
        runner._one_run(cfg, ds, plan, runner._targets(cfg, ds, out), out)
        records[nproc] = _records(out)["vanilla__seed0"]
        assert not any((out / "work").iterdir())
    a, b = records[1], records[2]
    assert b["train"]["nproc"] == 2 and b["settings"] == a["settings"] and b["best_epoch"] == a["best_epoch"]
    for ra, rb in zip(a["history"], b["history"], strict=True):
        for key in ("loss", "main_loss", "distill_loss", "valid_ndcg@10"):
            np.testing.assert_allclose(rb[key], ra[key], rtol=1e-4, atol=1e-6, err_msg=key)
    for key in a["test"]:
        np.testing.assert_allclose(b["test"][key], a["test"][key], rtol=1e-4, atol=1e-6, err_msg=key)
