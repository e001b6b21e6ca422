"""Experiments: config round trips, the resumable runner and the report's numbers (recomputed here)."""

from __future__ import annotations

import json
import statistics
import tomllib

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

from scipy import stats  # noqa: E402

from seqdistill.experiments import (  # noqa: E402
    ConfigError,
    ExperimentConfig,
    list_presets,
    load_preset,
    report,
    run_experiment,
    shuffled_targets,
)
from seqdistill.experiments import runner as runner_mod  # noqa: E402

SEEDS = [0, 1]


def tiny_config() -> ExperimentConfig:
    cfg = load_preset("synthetic")
    cfg.dataset.kwargs.update(n_users=300, n_items=120)
    cfg.model.update(hidden=16, n_blocks=1)
    cfg.train.update(epochs=2, batch_size=64, progress=False)
    cfg.distill.base["epochs"] = 1
    cfg.distill.grid = {"alpha": [0.4, 0.8], "dynamic_beta": [True, False]}
    cfg.seeds = SEEDS
    return cfg.validate()


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp")
    cfg = tiny_config()
    paths = run_experiment(cfg, out, progress=False)
    return cfg, out, paths, report(out)


def test_every_run_written_with_arrays(done):
    cfg, out, paths, _ = done
    variants = [v for v, _, _ in cfg.variants()]
    assert variants == [
        "vanilla",
        "distill_a0.4_b1",
        "distill_a0.4_b0",
        "distill_a0.8_b1",
        "distill_a0.8_b0",
        "control_shuffled",
    ]
    assert sorted(p.name for p in paths) == sorted(f"{v}__seed{s}.json" for v in variants for s in SEEDS)
    n_test = None
    for p in paths:
        rec = json.loads(p.read_text())
        assert rec["seed"] == int(p.stem.rsplit("seed", 1)[1]) and rec["train"]["seed"] == rec["seed"]
        assert len(rec["history"]) == 2 and rec["model"]["hidden"] == 16
        nd = np.load(p.parent / rec["per_row"]["ndcg@10"])
        rc = np.load(p.parent / rec["per_row"]["recall@10"])
        n_test = n_test or len(nd)
        assert len(nd) == len(rc) == n_test == rec["dataset"]["test_rows"]
        assert np.nanmean(nd) == pytest.approx(rec["test"]["ndcg@10"], rel=1e-9)
        assert np.all(nd <= rc + 1e-12)  # ndcg of one target never exceeds its hit
        best = next(r for r in rec["history"] if r["epoch"] == rec["best_epoch"])
        assert rec["valid"]["ndcg@10"] == best["valid_ndcg@10"]
        assert rec["valid"]["ndcg@10"] == max(r["valid_ndcg@10"] for r in rec["history"])
        # vanilla only measures L_distill; distilled runs train on it during epoch 0 only (epochs = 1)
        active = [r["distill_active"] for r in rec["history"]]
        assert active == ([0.0, 0.0] if rec["kind"] == "vanilla" else [1.0, 0.0])
        assert all(np.isfinite(r["distill_loss"]) for r in rec["history"])
    # each run trained in work/<run>/ (checkpoint folder and marker); a finished run's is removed
    assert (out / "work").is_dir() and not any((out / "work").iterdir())
    assert not any((out / "work" / p.stem).exists() for p in paths)


def test_second_call_skips_finished_runs(done, monkeypatch):
    cfg, out, paths, _ = done
    before = {p: p.stat().st_mtime_ns for p in paths}

    def boom(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(runner_mod, "_one_run", boom)
    assert run_experiment(cfg, out, progress=False) == paths
    assert {p: p.stat().st_mtime_ns for p in paths} == before
    changed = tiny_config()
    changed.model["hidden"] = 32
    with pytest.raises(ValueError, match="model"):
        run_experiment(changed, out, progress=False)


def _runs(out):
    runs = {}
    for p in (out / "runs").glob("*.json"):
        rec = json.loads(p.read_text())
        runs.setdefault(rec["variant"], {})[rec["seed"]] = (rec, p.parent)
    return runs


def test_report_numbers_match_recomputation(done):
    _, out, _, res = done
    runs = _runs(out)
    distilled = [v for v in runs if v.startswith("distill")]
    valid = {v: statistics.mean(r["valid"]["ndcg@10"] for r, _ in runs[v].values()) for v in distilled}
    best = max(valid, key=valid.get)
    assert res["best_distilled"] == best
    md = (out / "report.md").read_text()
    saved = json.loads((out / "report.json").read_text())
    assert saved["best_distilled"] == best
    for metric in ("ndcg@10", "recall@10"):
        van = [runs["vanilla"][s][0]["test"][metric] for s in SEEDS]
        dis = [runs[best][s][0]["test"][metric] for s in SEEDS]
        row = saved["table2"][metric]
        assert row["mean"] == pytest.approx(statistics.mean(dis))
        assert row["std"] == pytest.approx(statistics.stdev(dis))
        assert row["uplift_pct"] == pytest.approx(100 * (statistics.mean(dis) / statistics.mean(van) - 1))
        assert f"{statistics.mean(dis):.4f} ± {statistics.stdev(dis):.4f}" in md
        assert f"{statistics.mean(van):.4f} ± {statistics.stdev(van):.4f}" in md
        a = np.mean([np.load(d / r["per_row"][metric]) for r, d in runs["vanilla"].values()], axis=0)
        b = np.mean([np.load(d / r["per_row"][metric]) for r, d in runs[best].values()], axis=0)
        assert row["ttest_p"] == pytest.approx(stats.ttest_rel(b, a).pvalue)
        assert row["wilcoxon_p"] == pytest.approx(stats.wilcoxon(b, a).pvalue)
    assert f"{saved['table2']['ndcg@10']['uplift_pct']:+.2f}%" in md
    # Table 3: one cell per (alpha, beta), each the test mean of that grid point
    cells = {(c["alpha"], c["dynamic_beta"]): c for c in saved["table3"]}
    assert set(cells) == {(0.4, True), (0.4, False), (0.8, True), (0.8, False)}
    for (a, b), c in cells.items():
        v = f"distill_a{a}_b{int(b)}"
        assert c["test_ndcg@10"][0] == pytest.approx(statistics.mean(r["test"]["ndcg@10"] for r, _ in runs[v].values()))
    # controls row and Table 5
    ctrl = saved["controls"][0]
    sh = [runs["control_shuffled"][s][0]["test"]["ndcg@10"] for s in SEEDS]
    assert ctrl["variant"] == "control_shuffled" and ctrl["ndcg@10"]["mean"] == pytest.approx(statistics.mean(sh))
    c = np.mean([np.load(d / r["per_row"]["ndcg@10"]) for r, d in runs["control_shuffled"].values()], axis=0)
    b = np.mean([np.load(d / r["per_row"]["ndcg@10"]) for r, d in runs[best].values()], axis=0)
    if np.any(b != c):
        assert ctrl["distilled_vs_control"]["ttest_p"] == pytest.approx(stats.ttest_rel(b, c).pvalue)
    t5 = {r["variant"]: r for r in saved["table5"]}
    secs = [r["timing"]["train_seconds_per_epoch"] for r, _ in runs["vanilla"].values()]
    assert t5["vanilla"]["train_seconds_per_epoch"][0] == pytest.approx(statistics.mean(secs))
    assert "## Table 3" in md and "## Table 5" in md and "control_shuffled" in md
    assert (out / "figure3.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_shuffled_targets_permute_profiled_rows_only():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(50, 4)).astype(np.float32)
    mask = rng.random(50) < 0.7
    t[~mask] = 0
    s, m = shuffled_targets(t, mask, seed=3)
    assert np.array_equal(m, mask) and np.all(s[~mask] == 0)
    assert sorted(map(tuple, s[mask])) == sorted(map(tuple, t[mask]))
    assert (s[mask] != t[mask]).any(axis=1).mean() > 0.5
    assert np.array_equal(shuffled_targets(t, mask, seed=3)[0], s)


@pytest.mark.parametrize("name", ["beauty", "ml20m", "kion", "amazon_m2", "ml1m", "synthetic"])
def test_presets_load_and_round_trip(name):
    assert name in list_presets()
    cfg = load_preset(name)
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg
    assert ExperimentConfig.from_dict(tomllib.loads(cfg.to_toml())) == cfg
    assert len(cfg.seeds) >= 3 and "shuffled" in cfg.controls


def test_paper_settings_in_presets():
    b, m = load_preset("beauty"), load_preset("ml20m")
    assert (b.model["hidden"], b.model["n_blocks"], b.model["n_heads"], b.model["dropout"]) == (128, 4, 2, 0.3)
    assert (b.distill.base["alpha"], b.distill.base["dynamic_beta"], b.distill.base["epochs"]) == (0.4, True, 11)
    assert (m.distill.base["block"], m.distill.base["pooling"], m.train["lr"], m.train["epochs"]) == (
        0,
        "exp",
        0.00075,
        200,
    )
    assert len(b.distill.points()) == 6  # Table 3: alpha {0.4, 0.6, 0.8} x beta {no, yes}


def test_bad_config_names_file_and_key(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[distill]\nalpha = 0.4\n[distill.grid]\nalhpa = [0.1]\n")
    with pytest.raises(ConfigError, match=r"bad\.toml.*alhpa"):
        ExperimentConfig.from_toml(p)
    p.write_text('[distill]\npooling = "max"\n')
    with pytest.raises(ConfigError, match=r"bad\.toml.*pooling"):
        ExperimentConfig.from_toml(p)
    with pytest.raises(ConfigError, match="controls"):
        ExperimentConfig.from_dict({"controls": ["stats"]})  # stats is already the main source
    p.write_text('[profiles]\nstats_sections = ["liked_tags", "titles"]\n')
    with pytest.raises(ConfigError, match=r"bad\.toml.*stats_sections.*titles"):
        ExperimentConfig.from_toml(p)
