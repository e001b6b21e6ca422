"""Trainer: learning, resume after a crash, early stopping, extra loss terms."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pl = pytest.importorskip("polars")

from seqdistill.data import SplitConfig, prepare  # noqa: E402
from seqdistill.evaluation import evaluate  # noqa: E402
from seqdistill.models import ModelConfig, build_model, load_model  # noqa: E402
from seqdistill.training import TrainConfig, Trainer, item_counts  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cyclic_ds():
    """Users walk the planted cycle: raw item i is always followed by i % 20 + 1."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(200):
        start, n = int(rng.integers(1, 21)), int(rng.integers(5, 14))
        rows += [(u, (start - 1 + t) % 20 + 1, t) for t in range(n)]
    df = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    return prepare(df, k_core=None, split=SplitConfig(kind="leave_one_out"), name="cyclic")


def model_for(ds, kind="sasrec", seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(kind=kind, n_items=ds.n_items, max_len=8, hidden=32, n_blocks=1, n_heads=2, dropout=0.1)
    cfg.update(kw)
    return build_model(ModelConfig(**cfg))


def quick(**kw) -> TrainConfig:
    base = dict(epochs=3, batch_size=32, lr=5e-3, progress=False, device="cpu", valid_ks=(1, 10))
    base.update(kw)
    return TrainConfig(**base)


def strip_timing(history):
    return [{k: v for k, v in row.items() if k not in ("seconds", "samples_per_s")} for row in history]


def test_train_config_round_trip():
    cfg = quick(patience=2, valid_metric="recall@5")
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and 5 in again.valid_ks
    with pytest.raises(ValueError, match="valid_metric"):
        TrainConfig(valid_metric="auc")


def test_trainer_learns_planted_pattern_and_saves_servable_model(cyclic_ds, tmp_path):
    model = model_for(cyclic_ds)
    hist = Trainer(model, cyclic_ds, quick(epochs=12, patience=None), run_dir=tmp_path).fit()
    assert len(hist) == 12 and all("valid_ndcg@10" in r and r["samples_per_s"] > 0 for r in hist)
    res = evaluate(model, cyclic_ds, "test", ks=(1,))
    assert res.means["recall@1"] >= 0.95
    assert json.loads((tmp_path / "history.json").read_text())[-1]["epoch"] == 11
    served = load_model(tmp_path / "model")
    # serving uses raw ids only: after raw 7 comes raw 8; after 20 comes 1
    assert [r[0] for r in served.recommend([[5, 6, 7], [19, 20]], k=3)] == [8, 1]


def test_bert4rec_trains_through_the_same_trainer(cyclic_ds):
    model = model_for(cyclic_ds, kind="bert4rec", dropout=0.0, mask_prob=0.3, mask_last_prob=0.3)
    Trainer(model, cyclic_ds, quick(epochs=20, stride=1, patience=None)).fit()
    assert evaluate(model, cyclic_ds, "test", ks=(1,)).means["recall@1"] >= 0.9


class Crash:
    """A loss term that leaves the loss alone and raises when it reaches ``epoch``."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def __call__(self, out):
        if out.epoch >= self.epoch:
            raise RuntimeError("simulated crash")
        return None, {}


def test_resume_after_crash_matches_uninterrupted_run(cyclic_ds, tmp_path):
    full = model_for(cyclic_ds)
    h_full = Trainer(full, cyclic_ds, quick(epochs=4, patience=None), run_dir=tmp_path / "a").fit()

    crashed = model_for(cyclic_ds)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Trainer(
            crashed, cyclic_ds, quick(epochs=4, patience=None), run_dir=tmp_path / "b", extra_losses=[Crash(2)]
        ).fit()
    assert [r["epoch"] for r in json.loads((tmp_path / "b" / "history.json").read_text())] == [0, 1]

    fresh = model_for(cyclic_ds, seed=123)  # different init: everything must come from the checkpoint
    h_resumed = Trainer(fresh, cyclic_ds, quick(epochs=4, patience=None), run_dir=tmp_path / "b").fit(resume=True)
    assert [r["epoch"] for r in h_resumed] == [0, 1, 2, 3]
    assert strip_timing(h_resumed) == strip_timing(h_full)
    for (k, a), b in zip(full.state_dict().items(), fresh.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)


class Sabotage:
    """From ``epoch`` on, replaces the total with a loss that unlearns the task (ascent)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def __call__(self, out):
        if out.epoch < self.epoch:
            return None, {"sabotage": 0.0}
        return -out.main_loss, {"sabotage": 1.0}


def test_early_stopping_restores_best_epoch(cyclic_ds):
    model = model_for(cyclic_ds)
    cfg = quick(epochs=12, patience=2, valid_metric="ndcg@10")
    trainer = Trainer(model, cyclic_ds, cfg, extra_losses=[Sabotage(2)])
    hist = trainer.fit()
    scores = [r["valid_ndcg@10"] for r in hist]
    best = int(np.argmax(scores))
    assert trainer.best_epoch == best and best < 4
    assert len(hist) == best + 3  # stopped after `patience` epochs without improvement
    assert hist[-1]["stopped"] and [r["sabotage"] for r in hist][:2] == [0.0] * 2
    again = evaluate(model, cyclic_ds, "valid", ks=(10,)).means["ndcg@10"]
    assert again == pytest.approx(scores[best], abs=1e-12)
    assert again > scores[-1], scores


def test_min_epochs_holds_off_early_stopping(cyclic_ds):
    model = model_for(cyclic_ds)
    cfg = quick(epochs=12, patience=2, min_epochs=7, valid_metric="ndcg@10")
    trainer = Trainer(model, cyclic_ds, cfg, extra_losses=[Sabotage(2)])
    hist = trainer.fit()
    scores = [r["valid_ndcg@10"] for r in hist]
    # Without the floor the run stops at best + 3 (< 7 epochs); with it, no earlier than epoch 7.
    assert len(hist) == max(7, trainer.best_epoch + 3) and hist[-1]["stopped"]
    assert trainer.best_epoch == int(np.argmax(scores))


class HalfAndLog:
    """Total = 0.5 * main loss; logs a constant and a tensor."""

    def __call__(self, out):
        assert len(out.hidden_states) == out.model.config.n_blocks
        assert out.users.shape[0] == out.windows.shape[0] == out.real_mask.shape[0]
        return 0.5 * out.main_loss, {"const": 2.0, "main_again": out.main_loss.detach()}


def test_extra_loss_terms_combine_and_log(cyclic_ds):
    model = model_for(cyclic_ds)
    hist = Trainer(model, cyclic_ds, quick(epochs=1, patience=None), extra_losses=[HalfAndLog()]).fit()
    row = hist[0]
    assert row["const"] == 2.0
    assert row["loss"] == pytest.approx(0.5 * row["main_loss"], rel=1e-6)
    assert row["main_again"] == pytest.approx(row["main_loss"], rel=1e-6)


def test_popularity_negatives_use_training_counts(cyclic_ds):
    counts = item_counts(cyclic_ds)
    users, positions = cyclic_ds.targets("valid")
    # reference: count every training-prefix item by a plain loop
    ref = np.zeros(cyclic_ds.n_items + 1, dtype=np.int64)
    for u in range(cyclic_ds.n_users):
        for it in cyclic_ds.items[cyclic_ds.offsets[u] : cyclic_ds.offsets[u] + cyclic_ds.train_end[u]]:
            ref[it] += 1
    np.testing.assert_array_equal(counts, ref)
    model = model_for(cyclic_ds, loss="sampled", negatives="popularity", n_negatives=8)
    hist = Trainer(model, cyclic_ds, quick(epochs=2, patience=None)).fit()
    assert np.isfinite(hist[-1]["loss"])
    torch.testing.assert_close(model.item_popularity, torch.tensor(ref[1:], dtype=torch.float32))
