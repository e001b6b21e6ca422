"""``seqdistill train``: the run folder (run.json agreeing with history.json and the dataset, a
model folder load_model reads), a re-run that resumes after a kill and ends with the weights of an
uninterrupted run, a finished run left alone, and the refusals (foreign folders, changed settings,
distillation flags without profiles, profile vectors of the wrong shape)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from seqdistill.cli import main
from seqdistill.data import PreparedDataset
from seqdistill.models import load_model

SMALL = ["--epochs", "2", "--hidden", "16", "--blocks", "1", "--heads", "2", "--max-len", "8", "--device", "cpu"]


def write_log(path: Path, n_users: int, seed: int = 0) -> Path:
    """A CSV log: each user walks a ring of 40 items with random skips (learnable, not trivial)."""
    rng = np.random.default_rng(seed)
    lines = ["user_id,item_id,timestamp"]
    for u in range(n_users):
        item, t = int(rng.integers(40)), int(rng.integers(0, 500))
        for _ in range(int(rng.integers(5, 16))):
            lines.append(f"user{u},it{item},{t}")
            item, t = (item + int(rng.integers(1, 4))) % 40, t + int(rng.integers(1, 20))
    path.write_text("\n".join(lines) + "\n")
    return path


def prepared(root: Path, n_users: int = 120, *extra: str) -> Path:
    log = write_log(root / "log.csv", n_users)
    assert main(["prepare", str(log), "--out", str(root / "ds"), "--k-core", "2", *extra]) == 0
    return root / "ds"


def tree(root: Path) -> dict[str, tuple]:
    out = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = ("dir",) if p.is_dir() else (p.stat().st_mtime_ns, p.read_bytes())
    return out


def refused(argv: list[str], capsys, *needles: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    ds = prepared(root)
    assert main(["train", str(ds), "--out", str(root / "run"), *SMALL, "--quiet"]) == 0
    return root


def test_run_folder_records_what_was_trained(run):
    info = json.loads((run / "run" / "run.json").read_text())
    ds = PreparedDataset.load(run / "ds")
    assert info["dataset_fingerprint"] == ds.fingerprint() and info["dataset"] == str((run / "ds").resolve())
    assert info["status"] == "complete" and info["seed"] == 0 and info["train"]["epochs"] == 2
    assert info["model"]["kind"] == "sasrec" and info["model"]["n_items"] == ds.n_items
    history = json.loads((run / "run" / "history.json").read_text())
    scores = [row["valid_ndcg@10"] for row in history]
    assert info["epochs_run"] == len(history) == 2
    assert info["best_epoch"] == int(np.argmax(scores)) and info["valid_score"] == pytest.approx(max(scores))
    model = load_model(run / "run" / "model")
    assert model.item_ids[1:] == ds.item_ids.to_list()[1:]
    import seqdistill

    assert info["seqdistill_version"] == seqdistill.__version__


def test_same_settings_again_do_nothing(run, capsys):
    before = tree(run / "run")
    assert main(["train", str(run / "ds"), "--out", str(run / "run"), *SMALL]) == 0
    assert "already trained with these settings" in capsys.readouterr().out
    assert tree(run / "run") == before


def test_changed_settings_are_refused_then_replaced_with_overwrite(run, capsys):
    before = tree(run / "run")
    refused(["train", str(run / "ds"), "--out", str(run / "run"), *SMALL, "--lr", "0.01"], capsys,
            "holds a run with other settings (train.lr: 0.0005 -> 0.01)", "--overwrite")  # fmt: skip
    assert tree(run / "run") == before
    (run / "run" / "notes.txt").write_text("mine")  # a file of the user's inside the run folder survives
    argv = ["train", str(run / "ds"), "--out", str(run / "run"), *SMALL, "--epochs", "1", "--quiet", "--overwrite"]
    assert main(argv) == 0
    info = json.loads((run / "run" / "run.json").read_text())
    assert info["train"]["epochs"] == 1 and info["epochs_run"] == 1
    assert len(json.loads((run / "run" / "history.json").read_text())) == 1
    assert (run / "run" / "notes.txt").read_text() == "mine"


def test_foreign_and_input_folders_are_refused(run, tmp_path, capsys):
    ds = str(run / "ds")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "data.txt").write_text("x")
    refused(["train", ds, "--out", str(mine), *SMALL], capsys, "not a training run folder", "choose a new or empty")
    assert [p.name for p in mine.iterdir()] == ["data.txt"]
    refused(["train", ds, "--out", ds, *SMALL], capsys, "is the dataset")
    refused(["train", ds, "--out", str(run / "ds" / "run"), *SMALL], capsys, "lies inside the dataset")
    refused(["train", ds, "--out", str(run), *SMALL], capsys, "not a training run folder")  # holds log.csv too
    (tmp_path / "f").write_text("x")
    refused(["train", ds, "--out", str(tmp_path / "f"), *SMALL], capsys, "exists and is not a folder")
    refused(["train", str(tmp_path / "nope"), "--out", str(tmp_path / "r"), *SMALL], capsys, "no such folder")
    assert not (tmp_path / "r").exists()


def test_a_folder_holding_only_its_dataset_becomes_the_run_folder(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    ds = prepared(tmp_path / "x", 60)
    (tmp_path / "x" / "log.csv").unlink()  # runs/x holds nothing but runs/x/ds
    before = tree(ds)
    assert main(["train", str(ds), "--out", str(tmp_path / "x"), *SMALL, "--epochs", "1", "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == [
        "checkpoint",
        "ds",
        "history.json",
        "model",
        "run.json",
    ]
    assert tree(ds) == before
    (tmp_path / "y").mkdir()
    prepared(tmp_path / "y", 60)
    (tmp_path / "y" / "log.csv").unlink()
    (tmp_path / "y" / "ds").rename(tmp_path / "y" / "model")
    refused(["train", str(tmp_path / "y" / "model"), "--out", str(tmp_path / "y"), *SMALL], capsys,
            "holds the dataset", "where the run writes model")  # fmt: skip


def test_distillation_settings_and_profile_vectors_are_checked(run, tmp_path, capsys):
    ds_dir = run / "ds"
    ds = PreparedDataset.load(ds_dir)
    refused(["train", str(ds_dir), "--out", str(tmp_path / "a"), *SMALL, "--alpha", "0.5"], capsys,
            "--alpha: distillation settings need --profiles")  # fmt: skip
    np.save(tmp_path / "wrong.npy", np.zeros((ds.n_users, 8), np.float32))
    refused(["train", str(ds_dir), "--out", str(tmp_path / "b"), *SMALL, "--profiles", str(tmp_path / "wrong.npy")],
            capsys, "wrong.npy: --profiles: expected numbers of shape", f"({ds.n_users}, 16)")  # fmt: skip
    refused(["train", str(ds_dir), "--out", str(tmp_path / "c"), *SMALL, "--profiles", str(tmp_path / "none.npy")],
            capsys, "none.npy: no such file or folder")  # fmt: skip
    # A stage longer than training (SMALL trains 2 epochs) or of no epoch would not distil as asked.
    np.save(tmp_path / "ok.npy", np.zeros((ds.n_users, 16), np.float32))
    for n, why in (("5", "longer than training (--epochs 2)"), ("0", "at least 1")):
        refused(["train", str(ds_dir), "--out", str(tmp_path / "d"), *SMALL, "--profiles", str(tmp_path / "ok.npy"),
                 "--distill-epochs", n], capsys, f"--distill-epochs {n}: {why}")  # fmt: skip
    # A mask that marks no user: nothing would be distilled, a plain run under a distilled name.
    np.save(tmp_path / "none_marked.npy", np.zeros(ds.n_users, bool))
    refused(["train", str(ds_dir), "--out", str(tmp_path / "e"), *SMALL, "--profiles", str(tmp_path / "ok.npy"),
             "--profiles-mask", str(tmp_path / "none_marked.npy")], capsys,
            "none_marked.npy: --profiles-mask: no user is marked as having a profile")  # fmt: skip
    assert not any((tmp_path / n).exists() for n in "abcde")


def test_training_with_profile_vectors_records_them(run, tmp_path, capsys):
    ds = PreparedDataset.load(run / "ds")
    targets = np.random.default_rng(0).normal(size=(ds.n_users, 16)).astype(np.float32)
    mask = np.arange(ds.n_users) % 2 == 0
    np.save(tmp_path / "t.npy", targets)
    np.save(tmp_path / "m.npy", mask)
    argv = ["train", str(run / "ds"), "--out", str(tmp_path / "d"), *SMALL, "--epochs", "1", "--quiet",
            "--profiles", str(tmp_path / "t.npy"), "--profiles-mask", str(tmp_path / "m.npy"), "--alpha", "0.3",
            "--block", "0", "--no-dynamic-beta"]  # fmt: skip
    assert main(argv) == 0
    info = json.loads((tmp_path / "d" / "run.json").read_text())
    assert info["distill"]["alpha"] == 0.3 and info["distill"]["block"] == 0
    assert info["distill"]["dynamic_beta"] is False
    assert info["profiles"]["with_profile"] == int(mask.sum())
    history = json.loads((tmp_path / "d" / "history.json").read_text())
    assert history[0]["distill_active"] == 1.0 and np.isfinite(history[0]["distill_loss"])
    np.save(tmp_path / "t.npy", targets + 1)  # other profile vectors: other settings
    refused(argv, capsys, "holds a run with other settings (profiles:")


def test_a_dataset_without_validation_keeps_the_last_epoch(tmp_path, capsys):
    ds = prepared(tmp_path, 60, "--valid", "none")
    capsys.readouterr()
    assert main(["train", str(ds), "--out", str(tmp_path / "run"), *SMALL, "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "no validation targets" in err and "all 2 epochs run" in err
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["valid_score"] is None and info["best_epoch"] == 1 and info["epochs_run"] == 2


# ------------------------------------------------------------------------- kill and resume
def _state_epoch(run_dir: Path) -> int | None:
    try:
        return json.loads((run_dir / "checkpoint" / "state.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return None


def test_a_killed_run_resumes_and_ends_as_an_uninterrupted_one(tmp_path, capsys):
    ds = prepared(tmp_path, 700)
    argv = ["train", str(ds), "--out", str(tmp_path / "killed"), "--epochs", "5", "--patience", "5", "--hidden",
            "32", "--blocks", "1", "--max-len", "12", "--batch-size", "64", "--device", "cpu", "--threads", "1"]  # fmt: skip
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.Popen(
        [sys.executable, "-m", "seqdistill.cli", *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while _state_epoch(tmp_path / "killed") is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    epoch = _state_epoch(tmp_path / "killed")
    assert epoch is not None and epoch < 4 and not (tmp_path / "killed" / "model").exists(), epoch
    capsys.readouterr()

    assert main(argv) == 0  # the same command again
    out = capsys.readouterr().out
    assert f"resuming after epoch {epoch} from" in out
    shown = [int(line.split()[1].rstrip(":")) for line in out.splitlines() if line.startswith("epoch ")]
    assert shown == list(range(epoch + 1, 5)), out
    assert main([*argv[:3], str(tmp_path / "whole"), *argv[4:]]) == 0
    from safetensors.torch import load_file

    a = load_file(tmp_path / "killed" / "model" / "model.safetensors")
    b = load_file(tmp_path / "whole" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ja = json.loads((tmp_path / "killed" / "run.json").read_text())
    jb = json.loads((tmp_path / "whole" / "run.json").read_text())
    assert (ja["best_epoch"], ja["valid_score"], ja["epochs_run"]) == (
        jb["best_epoch"],
        jb["valid_score"],
        jb["epochs_run"],
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [("dataset", 5), ("dataset_fingerprint", None), ("seed", "0"), ("seed", True), ("model", []), ("train", "x"),
     ("distill", 3), ("best_epoch", 1.5), ("stopped_early", 1), ("valid_score", "0.1")],
)  # fmt: skip
def test_a_run_record_with_a_field_of_the_wrong_type_is_named(tmp_path, key, value):
    import json

    from seqdistill.errors import DataError
    from seqdistill.training.run import RUN_FILE, RunInfo

    RunInfo(dataset="d", dataset_fingerprint="f", seed=0, model={}, train={}, valid_score=0.5).write(tmp_path)
    assert RunInfo.read(tmp_path).valid_score == 0.5  # the record as written reads back
    d = json.loads((tmp_path / RUN_FILE).read_text())
    d[key] = value
    (tmp_path / RUN_FILE).write_text(json.dumps(d))
    with pytest.raises(DataError, match=f"damaged run record, '{key}' must be"):
        RunInfo.read(tmp_path)
