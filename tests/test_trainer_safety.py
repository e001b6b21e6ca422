"""The trainer's checkpoint holds tensors and JSON only (a planted pickle never runs), a crash while
it is written leaves the previous one, and a NaN/inf loss stops training at once, naming the epoch,
the batch, the term and the checkpoint to resume from."""

from __future__ import annotations

import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pl = pytest.importorskip("polars")
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load as st_load  # noqa: E402
from safetensors.torch import save as st_save  # noqa: E402

from seqdistill.data import SplitConfig, prepare  # noqa: E402
from seqdistill.errors import DataError, TrainingError  # noqa: E402
from seqdistill.models import ModelConfig, build_model  # noqa: E402
from seqdistill.models.pooling import pool  # noqa: E402
from seqdistill.training import TrainConfig, Trainer  # noqa: E402
from seqdistill.training import checkpoint as ckpt  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ds():
    rng = np.random.default_rng(1)
    rows = []
    for u in range(120):
        start, n = int(rng.integers(1, 16)), int(rng.integers(5, 12))
        rows += [(u, (start - 1 + t) % 15 + 1, t) for t in range(n)]
    df = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    return prepare(df, k_core=None, split=SplitConfig(kind="leave_one_out"), name="cyc15")


def model_for(ds, seed=0):
    torch.manual_seed(seed)
    return build_model(ModelConfig(kind="sasrec", n_items=ds.n_items, max_len=6, hidden=16, n_blocks=2, n_heads=2))


def quick(**kw) -> TrainConfig:
    return TrainConfig(**{**dict(epochs=3, batch_size=32, lr=5e-3, progress=False, device="cpu", patience=None), **kw})


def strip_timing(history):
    return [{k: v for k, v in row.items() if k not in ("seconds", "samples_per_s")} for row in history]


def assert_same_weights(a, b):
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=k)


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


# ------------------------------------------------------------------------------ checkpoint
def test_checkpoint_folder_holds_tensors_and_json(ds, tmp_path):
    model = model_for(ds)
    trainer = Trainer(model, ds, quick(epochs=2), run_dir=tmp_path)
    hist = trainer.fit()
    folder = tmp_path / "checkpoint"
    assert sorted(p.name for p in folder.iterdir()) == [
        "best.safetensors",
        "model.safetensors",
        "optimizer.safetensors",
        "state.json",
    ]
    state = json.loads((folder / "state.json").read_text())
    assert state["epoch"] == 1 and state["best_epoch"] == trainer.best_epoch
    assert strip_timing(state["history"]) == strip_timing(hist)
    # the model now holds the best epoch's weights: the same tensors as best.safetensors
    with safe_open(str(folder / "best.safetensors"), framework="pt") as f:
        for k, v in model.state_dict().items():
            assert torch.equal(f.get_tensor(k), v), k
    with safe_open(str(folder / "optimizer.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    n_params = len(list(model.parameters()))
    assert keys == {f"{i}.{name}" for i in range(n_params) for name in ("step", "exp_avg", "exp_avg_sq")}
    assert state["optimizer"]["param_groups"][0]["betas"] == [0.9, 0.999]
    assert not [p for p in tmp_path.iterdir() if ".sdtmp-" in p.name or ".sdold-" in p.name]


@pytest.mark.parametrize(
    "make",
    [
        lambda p: torch.optim.AdamW(p, lr=1e-2),
        lambda p: torch.optim.Adam(p, lr=1e-2, amsgrad=True),
        lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9),
    ],
)
def test_optimizer_state_round_trips_through_tensors_and_json(make):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    twin = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    twin.load_state_dict(net.state_dict())
    x = torch.randn(8, 4)
    opt = make(net.parameters())
    for _ in range(2):
        opt.zero_grad()
        net(x).pow(2).mean().backward()
        opt.step()
    twin.load_state_dict(net.state_dict())
    tensors, meta = ckpt.split_optimizer_state(opt.state_dict())
    tensors, meta = st_load(st_save(tensors)), json.loads(json.dumps(meta))  # as they are stored
    opt2 = make(twin.parameters())
    opt2.load_state_dict(ckpt.join_optimizer_state(meta, tensors, opt2.state_dict()))
    for n, o in ((net, opt), (twin, opt2)):  # one more step each: identical
        o.zero_grad()
        n(x).pow(2).mean().backward()
        o.step()
    for a, b in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert opt2.state_dict()["param_groups"] == opt.state_dict()["param_groups"]


def test_a_planted_pickle_checkpoint_is_refused_and_never_run(ds, tmp_path):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(pickle.dumps({"epoch": 0, "model": Payload(marker)}))
    with pytest.raises(TrainingError, match=r"checkpoint\.pt: a checkpoint in the old pickle format.*remove it"):
        Trainer(model_for(ds), ds, quick(), run_dir=run).fit(resume=True)
    assert not marker.exists()
    # beside a real checkpoint the old file is ignored (never opened) and the run resumes
    Trainer(model_for(ds), ds, quick(epochs=1), run_dir=tmp_path / "b").fit()
    (tmp_path / "b" / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes())
    hist = Trainer(model_for(ds, seed=5), ds, quick(epochs=2), run_dir=tmp_path / "b").fit(resume=True)
    assert [r["epoch"] for r in hist] == [0, 1] and not marker.exists()
    pickle.loads((run / "checkpoint.pt").read_bytes())  # the payload is live: the test can fail
    assert marker.exists()


@pytest.mark.parametrize("part", ["model.safetensors", "best.safetensors"])
def test_a_checkpoint_with_nan_weights_is_refused_with_the_way_out(ds, tmp_path, part):
    Trainer(model_for(ds), ds, quick(epochs=1), run_dir=tmp_path).fit()
    path = tmp_path / "checkpoint" / part
    tensors = st_load(path.read_bytes())
    name = sorted(k for k, v in tensors.items() if v.is_floating_point())[0]
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    path.write_bytes(st_save(tensors))
    with pytest.raises(DataError, match=rf"{re.escape(part)}: tensor .* holds NaN.*remove .*checkpoint to start"):
        Trainer(model_for(ds), ds, quick(epochs=2), run_dir=tmp_path).fit(resume=True)
    # following the advice works: the run starts afresh and trains both epochs
    shutil.rmtree(tmp_path / "checkpoint")
    hist = Trainer(model_for(ds), ds, quick(epochs=2), run_dir=tmp_path).fit(resume=True)
    assert [r["epoch"] for r in hist] == [0, 1]


def test_a_damaged_checkpoint_state_names_the_way_out(ds, tmp_path):
    Trainer(model_for(ds), ds, quick(epochs=1), run_dir=tmp_path).fit()
    (tmp_path / "checkpoint" / "optimizer.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(DataError, match=r"optimizer\.safetensors.*remove .*checkpoint to start the run afresh"):
        Trainer(model_for(ds), ds, quick(epochs=2), run_dir=tmp_path).fit(resume=True)


def test_crash_while_writing_the_checkpoint_keeps_the_previous_one(ds, tmp_path, monkeypatch):
    full = model_for(ds)
    h_full = Trainer(full, ds, quick(), run_dir=tmp_path / "a").fit()

    real = ckpt.write_json

    def dies_at_epoch_1(path, obj, **kw):
        if isinstance(obj, dict) and obj.get("epoch") == 1:
            raise OSError("disk full (simulated)")
        return real(path, obj, **kw)

    monkeypatch.setattr(ckpt, "write_json", dies_at_epoch_1)
    with pytest.raises(OSError, match="simulated"):
        Trainer(model_for(ds), ds, quick(), run_dir=tmp_path / "b").fit()
    monkeypatch.setattr(ckpt, "write_json", real)
    run = tmp_path / "b"
    assert json.loads((run / "checkpoint" / "state.json").read_text())["epoch"] == 0
    assert [r["epoch"] for r in json.loads((run / "history.json").read_text())] == [0]
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint", "history.json"]  # no temporaries, no model/
    resumed = model_for(ds, seed=9)
    h = Trainer(resumed, ds, quick(), run_dir=run).fit(resume=True)
    assert strip_timing(h) == strip_timing(h_full)
    assert_same_weights(full, resumed)


# ------------------------------------------------------------------------------ non-finite
class NaNAt:
    """Returns a NaN total at (epoch, batch); leaves the total alone elsewhere."""

    def __init__(self, epoch: int, batch: int, value: float = float("nan")) -> None:
        self.epoch, self.batch, self.value, self.seen = epoch, batch, value, {}

    def __call__(self, out):
        b = self.seen[out.epoch] = self.seen.get(out.epoch, -1) + 1
        if (out.epoch, b) == (self.epoch, self.batch):
            return out.loss * self.value, {}
        return None, {}


def test_nan_from_a_term_stops_at_once_and_the_run_resumes_from_the_last_checkpoint(ds, tmp_path):
    full = model_for(ds)
    h_full = Trainer(full, ds, quick(), run_dir=tmp_path / "a").fit()

    run = tmp_path / "b"
    trainer = Trainer(model_for(ds), ds, quick(), run_dir=run, extra_losses=[NaNAt(1, 2)])
    with pytest.raises(TrainingError) as err:
        trainer.fit()
    msg = str(err.value)
    assert "\n" not in msg
    assert "non-finite loss at epoch 1, batch 2 of" in msg and "extra loss term 0 (NaNAt) is nan" in msg
    assert f"resume from {run / 'checkpoint'} (end of epoch 0)" in msg
    # nothing of epoch 1 was written
    assert json.loads((run / "checkpoint" / "state.json").read_text())["epoch"] == 0
    assert [r["epoch"] for r in json.loads((run / "history.json").read_text())] == [0]
    assert not (run / "model").exists()
    resumed = model_for(ds, seed=3)
    h = Trainer(resumed, ds, quick(), run_dir=run).fit(resume=True)
    assert strip_timing(h) == strip_timing(h_full)
    assert_same_weights(full, resumed)


class PullTo:
    """A distillation-like term toward fixed per-user targets (one of them NaN)."""

    def __init__(self, targets: torch.Tensor) -> None:
        self.targets = targets

    def __call__(self, out):
        pooled = pool(out.hidden, out.real_mask, "mean")
        ld = ((pooled - self.targets[out.users]) ** 2).mean()
        return 0.5 * out.main_loss + 0.5 * ld, {"ld": ld.detach()}


def test_a_nan_target_stops_training_in_its_first_batch(ds):
    targets = torch.zeros(ds.n_users, 16)
    targets[:, 0] = float("nan")
    with pytest.raises(
        TrainingError,
        match=r"epoch 0, batch 0 of \d+: extra loss term 0 \(PullTo\) is nan.*"
        r"no checkpoint \(no run_dir\)",
    ):
        Trainer(model_for(ds), ds, quick(), extra_losses=[PullTo(targets)]).fit()


def test_non_finite_model_loss_and_inf_are_named(ds, tmp_path):
    model = model_for(ds)
    with torch.no_grad():
        model.item_emb.weight[1:].fill_(float("nan"))
    with pytest.raises(TrainingError, match=r"epoch 0, batch 0 of \d+: the model's loss is nan.*no checkpoint yet"):
        Trainer(model, ds, quick(), run_dir=tmp_path / "r").fit()
    assert not (tmp_path / "r" / "checkpoint").exists() and not (tmp_path / "r" / "model").exists()
    with pytest.raises(TrainingError, match=r"epoch 0, batch 1 of \d+: extra loss term 1 \(NaNAt\) is inf"):
        Trainer(model_for(ds), ds, quick(), extra_losses=[NaNAt(5, 5), NaNAt(0, 1, float("inf"))]).fit()


class Replace:
    """Replaces whatever total came before with the model's own loss."""

    def __call__(self, out):
        return out.main_loss, {}


def test_a_non_finite_term_is_caught_even_when_a_later_term_replaces_it(ds):
    with pytest.raises(TrainingError, match=r"extra loss term 0 \(NaNAt\) is nan"):
        Trainer(model_for(ds), ds, quick(), extra_losses=[NaNAt(0, 0), Replace()]).fit()
