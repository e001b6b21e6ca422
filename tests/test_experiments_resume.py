"""Resuming an experiment folder: a changed config is refused before anything is written, growth
(seeds, controls, grid values) only adds runs, and the runner removes only work folders it made."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

torch.set_num_threads(1)

from seqdistill.errors import ConfigError, DataError, OutputError  # noqa: E402
from seqdistill.experiments import ExperimentConfig, load_preset, run_experiment  # noqa: E402
from seqdistill.experiments import runner as runner_mod  # noqa: E402
from seqdistill.experiments.plan import plan_runs  # noqa: E402
from seqdistill.experiments.resume import WORK_MARKER  # noqa: E402


def small_config() -> ExperimentConfig:
    """Two runs of one epoch on a tiny synthetic set: vanilla and one distilled point, seed 0."""
    cfg = load_preset("synthetic")
    cfg.dataset.kwargs.update(n_users=150, n_items=60)
    cfg.model.update(hidden=8, n_blocks=1)
    cfg.train.update(epochs=1, batch_size=64, progress=False)
    cfg.distill.base["epochs"] = 1
    cfg.distill.grid = {"alpha": [0.4]}
    cfg.seeds = [0]
    cfg.controls = []
    return cfg.validate("small.toml")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume") / "exp"
    run_experiment(small_config(), out, progress=False)
    return out


@pytest.fixture
def folder(finished, tmp_path):
    out = tmp_path / "exp"
    shutil.copytree(finished, out)
    return out


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def spy(monkeypatch) -> list[str]:
    trained: list[str] = []
    real = runner_mod._one_run

    def counting(config, ds, plan, targets, out):
        trained.append(plan.name)
        return real(config, ds, plan, targets, out)

    monkeypatch.setattr(runner_mod, "_one_run", counting)
    return trained


def test_finished_folder_has_runs_settings_and_no_work(finished):
    runs = sorted(p.name for p in (finished / "runs").glob("*.json"))
    assert runs == ["distill_a0.4__seed0.json", "vanilla__seed0.json"]
    plans = {p.name: p for p in plan_runs(small_config())}
    for name in ("vanilla__seed0", "distill_a0.4__seed0"):
        rec = json.loads((finished / "runs" / f"{name}.json").read_text())
        assert rec["settings"] == plans[name].settings
        assert rec["settings"]["train"]["seed"] == 0 and rec["settings"]["distill"]["alpha"] == 0.4
    assert not any((finished / "work").iterdir())


CHANGES = [
    (lambda c: c.distill.base.update(alpha=0.5), "[distill] alpha: 0.4 → 0.5"),
    (lambda c: c.model.update(hidden=16), "[model] hidden: 8 → 16"),
    (lambda c: c.train.update(lr=0.002), "[train] lr: 0.001 → 0.002"),
    (lambda c: c.dataset.kwargs.update(n_users=160), "[dataset] kwargs.n_users: 150 → 160"),
    (lambda c: c.split.update(quantile=0.7), "[split] quantile: 0.8 → 0.7"),
    (lambda c: c.profiles.__setattr__("reduce", "umap"), "[profiles] reduce: 'pca' → 'umap'"),
    (lambda c: c.__setattr__("k_core", [3, 2]), "k_core: [2, 2] → [3, 2]"),
    (lambda c: c.__setattr__("eval_ks", [10, 20]), "eval_ks: [5, 10, 20] → [10, 20]"),
]


@pytest.mark.parametrize("change,words", CHANGES, ids=[w.split(":")[0] for _, w in CHANGES])
def test_a_changed_config_is_refused_and_nothing_written(folder, change, words):
    before = snapshot(folder)
    cfg = small_config()
    change(cfg)
    with pytest.raises(ConfigError) as err:
        run_experiment(cfg.validate("small.toml"), folder, progress=False)
    msg = str(err.value)
    assert msg.startswith(f"{folder}: ") and words in msg and "use a new --out folder" in msg and "\n" not in msg
    assert snapshot(folder) == before


def test_writing_a_default_out_is_no_change(folder, monkeypatch):
    trained = spy(monkeypatch)
    cfg = small_config()
    cfg.train["weight_decay"] = 0.01  # TrainConfig's default
    cfg.name = "renamed"  # the name changes no result
    cfg.train["progress"] = True
    run_experiment(cfg.validate("small.toml"), folder, progress=False)
    assert trained == []
    assert json.loads((folder / "config.json").read_text())["name"] == "renamed"  # rewritten after the check


def test_growth_adds_only_new_runs(folder, monkeypatch):
    before = {p.name: p.read_bytes() for p in (folder / "runs").glob("*.json")}
    trained = spy(monkeypatch)
    cfg = small_config()
    cfg.seeds = [0, 1]
    cfg.controls = ["shuffled"]
    cfg.distill.grid = {"alpha": [0.4, 0.8]}
    run_experiment(cfg.validate("small.toml"), folder, progress=False)
    assert sorted(trained) == sorted(
        [
            "vanilla__seed1",
            "distill_a0.4__seed1",
            "distill_a0.8__seed0",
            "distill_a0.8__seed1",
            "control_shuffled__seed0",
            "control_shuffled__seed1",
        ]
    )
    assert {p: (folder / "runs" / p).read_bytes() for p in before} == before


def test_a_finished_run_with_other_settings_is_refused(folder):
    path = folder / "runs" / "vanilla__seed0.json"
    rec = json.loads(path.read_text())
    rec["settings"]["train"]["lr"] = 0.5
    path.write_text(json.dumps(rec))
    before = snapshot(folder)
    with pytest.raises(ConfigError) as err:
        run_experiment(small_config(), folder, progress=False)
    assert str(err.value).startswith(f"{path}: ") and "[train] lr: 0.5 → 0.001" in str(err.value)
    assert snapshot(folder) == before


def test_a_damaged_run_record_is_named(folder):
    path = folder / "runs" / "vanilla__seed0.json"
    rec = json.loads(path.read_text())
    del rec["timing"]
    path.write_text(json.dumps(rec))
    with pytest.raises(DataError, match=r"vanilla__seed0\.json: not a RunRecord .*missing keys \['timing'\]"):
        run_experiment(small_config(), folder, progress=False)


@pytest.mark.parametrize("name", ["targets.npy", "targets_mask.npy"])
def test_computed_targets_replaced_by_a_pickle_are_named_never_loaded(folder, name):
    # The targets are read again for a new run (here: all runs removed). A pickle in their place
    # is refused naming the file, as a damaged file, and never unpickled.
    import pickle

    targets = next((folder / "targets" / "main").rglob(name))
    targets.write_bytes(pickle.dumps({"a": 1}))
    shutil.rmtree(folder / "runs")
    with pytest.raises(DataError, match=rf"{name}: .*remove .*targets\.done to compute the targets again"):
        run_experiment(small_config(), folder, progress=False)


def test_foreign_config_json_and_leftovers_without_config_are_refused(folder, tmp_path):
    (folder / "config.json").write_text('{"my": "own file"}')
    before = snapshot(folder)
    with pytest.raises(ConfigError, match=r"config\.json: unknown key.*use a new --out folder"):
        run_experiment(small_config(), folder, progress=False)
    assert snapshot(folder) == before
    (folder / "config.json").unlink()
    with pytest.raises(ConfigError, match=r"no config\.json"):
        run_experiment(small_config(), folder, progress=False)
    assert not (folder / "config.json").exists()


def test_work_folder_not_made_by_the_runner_is_left_alone(folder):
    cfg = small_config()
    cfg.seeds = [0, 1]
    mine = folder / "work" / "vanilla__seed1"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"vanilla__seed1: exists but was not created by the experiment runner"):
        run_experiment(cfg.validate("small.toml"), folder, progress=False)
    assert (mine / "notes.txt").read_text() == "mine"


def test_unfinished_run_with_other_settings_is_refused(folder):
    cfg = small_config()
    cfg.seeds = [0, 1]
    plan = next(p for p in plan_runs(cfg) if p.name == "vanilla__seed1")
    work = folder / "work" / plan.name
    work.mkdir(parents=True)
    settings = json.loads(json.dumps(plan.settings))
    settings["train"]["epochs"] = 7
    (work / WORK_MARKER).write_text(json.dumps({"run": plan.name, "settings": settings}))
    with pytest.raises(ConfigError, match=r"unfinished run had other settings: \[train\] epochs: 7 → 1"):
        run_experiment(cfg.validate("small.toml"), folder, progress=False)


def test_remove_work_folder_only_removes_runner_folders(tmp_path):
    out = tmp_path / "exp"
    for work, name in (
        (tmp_path / "elsewhere" / "vanilla__seed0", "vanilla__seed0"),  # not under out/work
        (out / "work" / "notes", "notes"),  # not named like a run
        (out / "work" / "vanilla__seed0", "vanilla__seed0"),
    ):  # no marker
        work.mkdir(parents=True)
        (work / "keep.txt").write_text("x")
        with pytest.raises(OutputError):
            runner_mod._remove_work_folder(out, work, name)
        assert (work / "keep.txt").is_file()
    link = out / "work" / "distill__seed0"
    link.symlink_to(tmp_path / "elsewhere" / "vanilla__seed0")
    with pytest.raises(OutputError):
        runner_mod._remove_work_folder(out, link, "distill__seed0")
    (out / "work" / "vanilla__seed0" / WORK_MARKER).write_text("{}")
    runner_mod._remove_work_folder(out, out / "work" / "vanilla__seed0", "vanilla__seed0")
    assert not (out / "work" / "vanilla__seed0").exists()
    assert (tmp_path / "elsewhere" / "vanilla__seed0" / "keep.txt").is_file()


# ------------------------------------------------------------------ the user's target files
def _targets_config(tmp_path, targets, mask=None) -> ExperimentConfig:
    import numpy as np

    cfg = small_config()
    cfg.profiles.source = "targets"
    cfg.profiles.targets = str(tmp_path / "t.npy")
    np.save(tmp_path / "t.npy", targets)
    if mask is not None:
        cfg.profiles.mask = str(tmp_path / "m.npy")
        np.save(tmp_path / "m.npy", mask)
    return cfg.validate("small.toml")


def test_bad_target_files_are_named(tmp_path, finished):
    import numpy as np

    from seqdistill.data import PreparedDataset

    n = PreparedDataset.load(finished / "dataset").n_users
    good = np.zeros((n, 8), np.float32)
    bad_nan = good.copy()
    bad_nan[3, 1] = np.nan
    cases = [
        (np.zeros((n, 7), np.float32), None, r"t\.npy: \[profiles\] targets: expected numbers of shape"),
        (np.array(["a"] * n), None, r"t\.npy: \[profiles\] targets"),
        (bad_nan, None, r"t\.npy: \[profiles\] targets: row 3 holds NaN"),
        (good, np.full(n, 0.5), r"m\.npy: \[profiles\] mask: expected"),
        (good, np.ones(n + 1, bool), r"m\.npy: \[profiles\] mask: expected"),
        (np.array([{"a": 1}], dtype=object), None, r"t\.npy: \[profiles\] targets: not a readable \.npy"),
    ]
    for i, (targets, mask, words) in enumerate(cases):
        out = tmp_path / f"out{i}"
        with pytest.raises(DataError, match=words):
            run_experiment(_targets_config(tmp_path, targets, mask), out, progress=False)
        assert not list((out / "runs").glob("*")) and not (out / "targets" / "main" / "targets.npy").exists()


def test_given_targets_with_nan_rows_off_the_mask_resume(tmp_path, finished, monkeypatch):
    # read_targets accepts NaN in the rows of users without a profile, and the runner caches the
    # file as given: reading that cache again (a resumed folder) must accept it too.
    import numpy as np

    from seqdistill.data import PreparedDataset

    n = PreparedDataset.load(finished / "dataset").n_users
    targets = np.zeros((n, 8), np.float32)
    targets[3] = np.nan
    mask = np.ones(n, bool)
    mask[3] = False
    cfg = _targets_config(tmp_path, targets, mask)
    out = tmp_path / "out"
    run_experiment(cfg, out, progress=False)
    trained = spy(monkeypatch)
    shutil.rmtree(out / "runs")
    run_experiment(cfg, out, progress=False)  # the cached targets are read again
    assert trained == [p.name for p in plan_runs(cfg)]
    cached = out / "targets" / "main" / "targets.npy"
    np.save(cached, np.where(np.arange(n)[:, None] == 0, np.nan, targets).astype(np.float32))
    shutil.rmtree(out / "runs")
    with pytest.raises(DataError, match=r"targets\.npy: a row of a user with a profile holds NaN"):
        run_experiment(cfg, out, progress=False)


def test_store_of_another_dataset_is_refused(tmp_path):
    from seqdistill import datasets
    from seqdistill.data import SplitConfig, prepare
    from seqdistill.errors import StoreError
    from seqdistill.profiles import write_stats_profiles

    cfg = small_config()
    other = prepare(
        datasets.load("synthetic", None, n_users=150, n_items=60, seed=7),
        k_core=(2, 2),
        split=SplitConfig.from_dict(cfg.split),
    )
    write_stats_profiles(other, tmp_path / "store")
    cfg.profiles.source = "llm"
    cfg.profiles.store = str(tmp_path / "store")
    with pytest.raises(StoreError, match="store"):
        run_experiment(cfg.validate("small.toml"), tmp_path / "out", progress=False)
    assert not list((tmp_path / "out" / "runs").glob("*"))


def test_a_folder_with_nothing_computed_takes_a_corrected_config(tmp_path):
    """Preparation failed (no test targets): the same folder may be used with the fixed split."""
    cfg = small_config()
    cfg.split["threshold"] = 2e9  # after every interaction: no test targets
    out = tmp_path / "exp"
    with pytest.raises(DataError, match="no test targets"):
        run_experiment(cfg.validate("small.toml"), out, progress=False)
    assert not (out / "dataset").exists()
    fixed = small_config()
    ds = runner_mod.prepare_dataset(fixed, out)
    assert ds.n_users > 0 and json.loads((out / "config.json").read_text())["split"] == fixed.split
    with pytest.raises(ConfigError, match=r"\[split\] threshold: None → 2000000000.0"):
        runner_mod.prepare_dataset(cfg, out)  # now the folder holds a dataset: a change is refused


def test_a_foreign_config_json_is_never_replaced(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text('{"learning": "mine"}')
    with pytest.raises(ConfigError, match=r"config\.json: unknown key"):
        run_experiment(small_config(), out, progress=False)
    assert (out / "config.json").read_text() == '{"learning": "mine"}' and sorted(out.iterdir()) == [
        out / "config.json"
    ]


def test_a_users_folder_is_never_an_experiment_folder(tmp_path):
    """Absent, empty, or the runner's own (config.json): anything else is refused before any work."""
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    (mine / "sub" / "data.csv").write_text("u,i\n")
    before = snapshot(mine)
    for call in (
        lambda: run_experiment(small_config(), mine, progress=False),
        lambda: runner_mod.prepare_dataset(small_config(), mine),
    ):
        with pytest.raises(OutputError, match=r"mine: folder exists and is not an experiment folder .*notes\.txt, sub"):
            call()
        assert snapshot(mine) == before and sorted(p.name for p in mine.iterdir()) == ["notes.txt", "sub"]
    empty = tmp_path / "empty"
    empty.mkdir()
    ds = runner_mod.prepare_dataset(small_config(), empty)
    assert ds.n_users > 0 and (empty / "config.json").is_file() and (empty / "dataset" / "manifest.json").is_file()
    runner_mod.prepare_dataset(small_config(), empty)  # its own folder: resumed
