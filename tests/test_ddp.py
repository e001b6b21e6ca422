"""DDP training (gloo, 2 processes on this CPU) against one process with the same global batch.

The reference is the plain one-process :class:`~seqdistill.training.Trainer` (the code that ran
before DDP existed). Models run without random draws that depend on how a batch is split
(``dropout = 0``; BERT4Rec with ``mask_last_prob = 1``, so every row masks its last item), which
is when the two must agree to float32 rounding: loss curves, validation metrics, best epoch and
final weights. A row-counting term checks that each rank trained only its own rows.
"""

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

torch = pytest.importorskip("torch")
pl = pytest.importorskip("polars")

from seqdistill import _io  # noqa: E402
from seqdistill.cli import main as cli_main  # noqa: E402
from seqdistill.data import PreparedDataset, SplitConfig, prepare  # noqa: E402
from seqdistill.data.sequences import TrainWindows, eval_inputs  # noqa: E402
from seqdistill.errors import ConfigError, DataError  # noqa: E402
from seqdistill.models import ModelConfig, load_model  # noqa: E402
from seqdistill.training import TrainConfig  # noqa: E402
from seqdistill.training import distributed as D  # noqa: E402
from seqdistill.training.distill import DistillConfig  # noqa: E402
from seqdistill.training.run import build_trainer  # noqa: E402

torch.set_num_threads(1)

MAX_LEN, EPOCHS = 8, 3
CASES = {  # name: (model settings, distilled, patience)
    "sasrec": ({"kind": "sasrec"}, False, 1),  # validation drops after epoch 0: early stopping
    "sasrec_distill": ({"kind": "sasrec"}, True, None),
    "bert4rec": ({"kind": "bert4rec", "mask_last_prob": 1.0}, False, None),
}
LOGGED = ("loss", "main_loss", "distill_loss", "beta", "alpha_eff", "valid_ndcg@10", "valid_recall@10")


def toy_log() -> pl.DataFrame:
    """90 users with 3..15 interactions over 30 items (windows with varying numbers of positions)."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(90):
        n = int(rng.integers(3, 16))
        rows += [(u, int(rng.integers(1, 31)), t) for t in range(n)]
    return pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")


def profile_targets(ds) -> tuple[np.ndarray, np.ndarray]:
    """Random targets for 60% of the users (the profiled share varies from batch to batch)."""
    rng = np.random.default_rng(1)
    return rng.normal(size=(ds.n_users, 16)).astype(np.float32), rng.random(ds.n_users) < 0.6


class RowCounter:
    """A loss term that changes nothing and counts the rows this process trained on."""

    rows = 0

    def __call__(self, out):
        RowCounter.rows += len(out.users)
        return None, {}


def trainer_for(ds, case: str, batch_size: int, run_dir):
    model, distilled, patience = CASES[case]
    mcfg = ModelConfig(n_items=ds.n_items, max_len=MAX_LEN, hidden=16, n_blocks=1, n_heads=2, dropout=0.0, **model)
    tcfg = TrainConfig(epochs=EPOCHS, batch_size=batch_size, lr=5e-3, patience=patience, progress=False, device="cpu")
    targets = profile_targets(ds) if distilled else None
    distill = DistillConfig(alpha=0.5) if distilled else None
    trainer = build_trainer(ds, mcfg, tcfg, run_dir=run_dir, targets=targets, distill=distill)
    trainer.extra_losses.append(RowCounter())
    return trainer


def fit_cases(ds_dir: str, out_dir: str, batches: dict[str, int]) -> None:
    """Every case into ``out_dir/<case>``; each process writes how many rows it trained on. Then
    rank 1 raises a DataError (while rank 0 waits for it), which launch must raise as it is."""
    ds = PreparedDataset.load(ds_dir)
    ctx = D.context()
    for case in CASES:
        RowCounter.rows = 0
        trainer_for(ds, case, batches[case], Path(out_dir) / case).fit()
        _io.write_json(Path(out_dir) / f"{case}.rows-{ctx.rank}.json", RowCounter.rows)
    if ctx.rank == 1:
        raise DataError("rank 1 read a bad file: row 3, column 'x', value 'y'")
    torch.distributed.barrier()  # rank 1 never comes


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> tuple[Path, dict[str, int], dict[str, int]]:
    """The saved toy dataset; per case, a batch size whose last batch has ONE row (so rank 1 gets
    none in it) and the number of training windows per epoch."""
    ds = prepare(toy_log(), k_core=None, split=SplitConfig(kind="leave_one_out"), name="toy")
    folder = tmp_path_factory.mktemp("ddp") / "dataset"
    ds.save(folder)
    n = {case: TrainWindows(ds, MAX_LEN + (m["kind"] == "sasrec"), 1).n_samples for case, (m, *_) in CASES.items()}
    batches = {case: next(b for b in range(10, 60) if n[case] % b == 1) for case in CASES}
    return folder, batches, n


def weights(folder: Path) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in load_model(folder).state_dict().items()}


def test_two_gloo_ranks_equal_one_process(toy, tmp_path):
    ds_dir, batches, n_windows = toy
    with pytest.raises(DataError, match="^rank 1 read a bad file: row 3, column 'x', value 'y'$") as err:
        D.launch(fit_cases, 2, str(ds_dir), str(tmp_path / "two"), batches, backend="gloo", device="cpu")
    _one_line(err)  # a process's SeqdistillError comes back as the same class, one line
    ds = PreparedDataset.load(ds_dir)
    for case in CASES:
        one = trainer_for(ds, case, batches[case], tmp_path / "one" / case)
        one.fit()
        two = json.loads((tmp_path / "two" / case / "history.json").read_text())
        assert len(two) == len(one.history) == (2 if case == "sasrec" else EPOCHS)  # stopped alike
        for a, b in zip(one.history, two):
            assert a["n_samples"] == b["n_samples"] == n_windows[case]
            assert a["best_epoch"] == b["best_epoch"] and a["stopped"] == b["stopped"]
            for key in LOGGED:
                assert (key in a) == (key in b), key
                if key in a:
                    np.testing.assert_allclose(b[key], a[key], rtol=2e-5, atol=1e-6, err_msg=f"{case} {key}")
        mine, theirs = weights(tmp_path / "one" / case / "model"), weights(tmp_path / "two" / case / "model")
        for k in mine:  # atol: AdamW turns rounding noise in gradients that are zero in exact
            # arithmetic (the attention's key bias) into updates of about 1e-6
            np.testing.assert_allclose(theirs[k], mine[k], rtol=1e-4, atol=5e-5, err_msg=f"{case} {k}")
        rows = [json.loads((tmp_path / "two" / f"{case}.rows-{r}.json").read_text()) for r in (0, 1)]
        n, b = n_windows[case], batches[case]
        sizes = [b] * (n // b) + [n % b]  # the last batch has one row: rank 0 trains none of it
        ran = len(two)
        assert rows == [ran * sum(m // 2 for m in sizes), ran * sum(m - m // 2 for m in sizes)]
        assert sorted(p.name for p in (tmp_path / "two" / case).iterdir()) == ["checkpoint", "history.json", "model"]
        assert ("beta" in a) == (case == "sasrec_distill")  # the distilled case did distil


def _checkpoint_epoch(run: Path) -> int:
    try:
        return int(json.loads((run / "checkpoint" / "state.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return -1


KILL_EPOCHS = 12
TRAIN_FLAGS = [
    "--epochs",
    str(KILL_EPOCHS),
    "--patience",
    str(KILL_EPOCHS),
    "--dropout",
    "0",
    "--max-len",
    "8",
    "--hidden",
    "16",
]
TRAIN_FLAGS += ["--blocks", "1", "--device", "cpu", "--quiet", "--lr", "0.005"]


def _trainers_of(run: Path) -> list[int]:
    """Live processes whose command line names ``run`` (Linux /proc)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes()
                state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if str(run).encode() in cmd and state != "Z":
                pids.append(int(d.name))
    return pids


def test_kill_9_under_torchrun_then_resume_on_one_process(toy, tmp_path):
    ds_dir, batches, _ = toy
    run, ref = tmp_path / "run", tmp_path / "ref"
    flags = [*TRAIN_FLAGS, "--batch-size", str(batches["sasrec"])]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "seqdistill.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [*cmd, "train", str(ds_dir), "--out", str(run), *flags],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while _checkpoint_epoch(run) < 1 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks, mid-run
    finally:
        proc.wait()
    # torchrun starts its ranks in sessions of their own, so the kill above reached only the
    # agent: the ranks must die with it rather than train on into the folder resumed below.
    deadline = time.monotonic() + 30
    while _trainers_of(run) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _trainers_of(run)
    killed_at = _checkpoint_epoch(run)
    assert 1 <= killed_at < KILL_EPOCHS - 1 and not (run / "model").exists()
    assert json.loads((run / "run.json").read_text())["status"] == "training"
    assert cli_main(["train", str(ds_dir), "--out", str(run), *flags, "--threads", "1"]) == 0  # one process
    assert cli_main(["train", str(ds_dir), "--out", str(ref), *flags, "--threads", "1"]) == 0  # never killed
    resumed = json.loads((run / "history.json").read_text())
    reference = json.loads((ref / "history.json").read_text())
    assert [r["epoch"] for r in resumed] == list(range(KILL_EPOCHS))
    for a, b in zip(reference, resumed):
        np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-4)
        np.testing.assert_allclose(b["valid_ndcg@10"], a["valid_ndcg@10"], rtol=1e-4, atol=1e-6)
    info = json.loads((run / "run.json").read_text())
    assert (
        info["status"] == "complete" and info["best_epoch"] == json.loads((ref / "run.json").read_text())["best_epoch"]
    )
    # the same recommender: scores of every test history (the weights themselves differ in the
    # attention's key bias, which no score depends on and AdamW fills with rounding noise)
    ds = PreparedDataset.load(ds_dir)
    windows = torch.from_numpy(eval_inputs(ds, "test", MAX_LEN).windows)
    with torch.no_grad():
        scores = [
            load_model(folder).eval().next_item_scores(windows)[:, 1:] for folder in (ref / "model", run / "model")
        ]
    np.testing.assert_allclose(scores[1].numpy(), scores[0].numpy(), rtol=1e-3, atol=1e-4)


# ------------------------------------------------------------------------------ bad input
def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and "Traceback" not in msg, msg
    return msg


@pytest.mark.parametrize(
    "settings,key",
    [
        ({"nproc": 0}, "nproc"),
        ({"nproc": 2.5}, "nproc"),
        ({"nproc": True}, "nproc"),
        ({"backend": "mpi"}, "backend"),
        ({"nproc": 4, "batch_size": 3}, "batch_size"),
    ],
)
def test_train_config_refuses_bad_process_settings(settings, key):
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict(settings)
    assert _one_line(err).startswith(f"TrainConfig.{key}")


def test_world_larger_than_data_or_batch_is_refused(toy):
    ds = PreparedDataset.load(toy[0])
    model = trainer_for(ds, "sasrec", 16, None).model
    with pytest.raises(ConfigError, match=r"training data: 3 training window\(s\) for 4 processes"):
        D.check_run(3, 16, D.DistContext(0, 4), model)
    with pytest.raises(ConfigError, match="batch_size: 2 is the global batch, smaller than the 4 processes") as err:
        D.check_run(100, 2, D.DistContext(1, 4), model)
    _one_line(err)


def test_model_without_a_position_count_is_refused():
    class Other:
        class config:  # noqa: N801 - mimics ModelConfig
            kind = "other"

    with pytest.raises(ConfigError, match="model kind 'other' does not say over how many positions") as err:
        D.check_run(10, 4, D.DistContext(0, 2), Other())
    _one_line(err)


def test_device_and_backend_mistakes_are_one_line():
    with pytest.raises(ConfigError, match="each process takes CUDA device LOCAL_RANK") as err:
        D.device_for("cuda:1", D.DistContext(0, 2))
    _one_line(err)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="'nccl' needs CUDA devices") as err:
            D.pick_backend("nccl", "auto")
        _one_line(err)
        with pytest.raises(ConfigError, match="'nccl' needs CUDA"):
            D.launch(print, 2, backend="nccl")
    with pytest.raises(ConfigError, match="nproc: expected an integer >= 1, got 0"):
        D.launch(print, 0)


def test_cli_nproc_mistakes(toy, tmp_path, monkeypatch, capsys):
    ds_dir = str(toy[0])
    assert cli_main(["train", ds_dir, "--out", str(tmp_path / "a"), "--nproc", "0"]) == 2
    assert "--nproc" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert cli_main(["train", ds_dir, "--out", str(tmp_path / "b"), "--nproc", "2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "drop --nproc" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "b").exists()
