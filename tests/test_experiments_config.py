"""Experiment configs are validated completely before any work, and grid values can never steer a
run's files out of the experiment folder (issue 12.4 and 12.6)."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

torch.set_num_threads(1)

import seqdistill.errors  # noqa: E402
from seqdistill.experiments import ConfigError, ExperimentConfig, run_experiment  # noqa: E402
from seqdistill.experiments.config import DistillSpec, _dump_toml  # noqa: E402
from seqdistill.experiments.naming import MAX_LEN, is_run_name, run_name, slug, unique_names  # noqa: E402

SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def base_dict() -> dict:
    """A small valid config (synthetic data, two blocks, 10 epochs, a 5-epoch distillation stage)."""
    return {
        "name": "t",
        "seeds": [0, 1],
        "controls": ["shuffled"],
        "k_core": [2, 2],
        "eval_ks": [5, 10],
        "dataset": {"name": "synthetic", "kwargs": {"n_users": 100, "n_items": 40}},
        "split": {"kind": "global_temporal", "quantile": 0.8},
        "model": {"hidden": 16, "n_blocks": 2, "n_heads": 2},
        "train": {"epochs": 10, "batch_size": 64, "progress": False},
        "profiles": {"source": "stats", "reduce": "pca", "seed": 0},
        "distill": {"alpha": 0.4, "block": -1, "epochs": 5, "grid": {"alpha": [0.4, 0.8]}},
    }


def put(d: dict, dotted: str, value) -> dict:
    """A copy of ``d`` with ``a.b.c`` set to ``value``."""
    d = copy.deepcopy(d)
    *path, last = dotted.split(".")
    node = d
    for k in path:
        node = node.setdefault(k, {})
    node[last] = value
    return d


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_config_error_is_the_package_class():
    assert ConfigError is seqdistill.errors.ConfigError
    assert issubclass(ConfigError, ValueError)


def test_base_config_is_valid_and_round_trips(tmp_path):
    p = tmp_path / "ok.toml"
    p.write_text(_dump_toml(base_dict()))
    cfg = ExperimentConfig.from_toml(p)
    assert cfg.origin == str(p)
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg


# (dotted key, bad value, words the one-line message must hold besides the file name)
BAD = [
    ("seeds", [0, "1"], ["seeds", "'1'"]),
    ("seeds", [True], ["seeds", "True"]),
    ("seeds", [1, 1], ["seeds", "distinct"]),
    ("seeds", [-1], ["seeds", "-1"]),
    ("seeds", [2**40], ["seeds", str(2**40)]),
    ("seeds", [], ["seeds", "empty"]),
    ("seeds", 3, ["seeds", "3"]),
    ("eval_ks", [5, 20], ["eval_ks", "10"]),
    ("eval_ks", [0, 10], ["eval_ks", "0"]),
    ("eval_ks", [10.0], ["eval_ks", "10.0"]),
    ("eval_ks", [10, 10], ["eval_ks", "distinct"]),
    ("k_core", [5], ["k_core", "[5]"]),
    ("k_core", [5, 5, 7], ["k_core", "[5, 5, 7]"]),
    ("k_core", [5, 0], ["k_core", "[5, 0]"]),
    ("k_core", ["5", 5], ["k_core", "'5'"]),
    ("k_core", [True, 5], ["k_core", "True"]),
    ("controls", ["shuffled", "shuffled"], ["controls", "distinct"]),
    ("controls", ["random"], ["controls", "random"]),
    ("controls", ["stats"], ["controls", "stats"]),
    ("name", 5, ["name", "5"]),
    ("split", 3, ["[split]", "3"]),
    ("dataset", 3, ["[dataset]", "3"]),
    ("train.epochs", "ten", ["[train] epochs", "'ten'"]),
    ("train.epochs", True, ["[train] epochs", "True"]),
    ("train.epochs", 2.5, ["[train] epochs", "2.5"]),
    ("train.patience", True, ["[train] patience", "True"]),
    ("train.lr", float("nan"), ["[train] lr", "nan"]),
    ("train.lr", "0.001", ["[train] lr", "'0.001'"]),
    ("train.valid_ks", 10, ["[train] valid_ks", "10"]),
    ("train.amp", 1, ["[train] amp", "1"]),
    ("train.epoch", 3, ["[train]", "epoch"]),
    ("train.device", 0, ["[train] device", "0"]),
    ("model.hidden", "64", ["[model] hidden", "'64'"]),
    ("model.n_items", 5, ["[model] n_items", "5"]),
    ("model.dropout", float("inf"), ["[model] dropout", "inf"]),
    ("model.kind", "gru", ["[model]", "gru"]),
    ("split.quantile", "0.8", ["[split] quantile", "'0.8'"]),
    ("split.quantile", 1.5, ["[split]", "1.5"]),
    ("split.kind", "random", ["[split]", "random"]),
    ("distill.gamma", float("nan"), ["[distill] gamma", "nan"]),
    ("distill.alpha", 1.5, ["[distill]", "1.5"]),
    ("distill.alpha", True, ["[distill] alpha", "True"]),
    ("distill.pooling", "max", ["[distill]", "max"]),
    ("distill.block", 2, ["[distill] block", "2", "n_blocks=2"]),
    ("distill.block", -3, ["[distill] block", "-3", "n_blocks=2"]),
    ("distill.block", "last", ["[distill] block", "'last'"]),
    ("distill.epochs", -1, ["[distill] epochs", "-1"]),
    ("distill.epochs", 0, ["[distill] epochs", "0"]),
    ("distill.epochs", 11, ["[distill] epochs", "11", "[train] epochs = 10"]),
    ("distill.grid", 3, ["[distill.grid]", "3"]),
    ("distill.grid.alpha", [0.4, "0.8"], ["[distill.grid] alpha", "'0.8'"]),
    ("distill.grid.alpha", [0.4, 1.2], ["[distill.grid] alpha", "1.2"]),
    ("distill.grid.alpha", [], ["[distill.grid] alpha", "[]"]),
    ("distill.grid.alpha", 0.4, ["[distill.grid] alpha", "0.4"]),
    ("distill.grid.alpha", [0.4, 0.4], ["[distill.grid] alpha", "distinct"]),
    ("distill.grid.dynamic_beta", [1, 0], ["[distill.grid] dynamic_beta", "1"]),
    ("distill.grid.block", [0, 5], ["[distill.grid] block", "5", "n_blocks=2"]),
    ("distill.grid.epochs", [-2], ["[distill.grid] epochs", "-2"]),
    ("distill.grid.pooling", ["../../x"], ["[distill.grid] pooling", "'../../x'"]),
    ("distill.grid.pooling", ["a/b"], ["[distill.grid] pooling", "'a/b'"]),
    ("distill.grid.loss", [".."], ["[distill.grid] loss", "'..'"]),
    ("distill.grid.standardize", [True], ["[distill.grid]", "standardize"]),
    ("profiles.source", "gpt", ["[profiles] source", "'gpt'"]),
    ("profiles.seed", -1, ["[profiles] seed", "-1"]),
    ("profiles.seed", 1.5, ["[profiles] seed", "1.5"]),
    ("profiles.stats_sections", "tags", ["[profiles] stats_sections", "'tags'"]),
    ("profiles.reduce", "tsne", ["[profiles] reduce", "'tsne'"]),
    ("profiles.store", 7, ["[profiles] store", "7"]),
    ("profiles.store", "", ["[profiles] store", "''", "empty path"]),
    ("profiles.encoder", " ", ["[profiles] encoder", "' '", "empty path"]),
    ("dataset.path", "", ["[dataset] path", "''", "empty path"]),
    ("dataset.name", "nope", ["[dataset] name", "'nope'"]),
    ("dataset.name", "prepared", ["[dataset] path", "prepared"]),
    ("dataset.kwargs.n_users", "300", ["[dataset.kwargs] n_users", "'300'"]),
    ("dataset.kwargs.n_userz", 300, ["[dataset.kwargs]", "n_userz"]),
    ("dataset.kwargs.n_users", 0, ["[dataset.kwargs]", "n_users"]),
]


@pytest.mark.parametrize("key,value,words", BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_bad_value_is_one_line_naming_file_key_and_value(tmp_path, key, value, words):
    p = tmp_path / "bad.toml"
    p.write_text(_dump_toml(put(base_dict(), key, value)))
    with pytest.raises(ConfigError) as err:
        ExperimentConfig.from_toml(p)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{p}: ")
    for w in words:
        assert w in msg, (w, msg)
    assert tree(tmp_path) == {"bad.toml"}


def test_unreadable_toml_names_the_file(tmp_path):
    p = tmp_path / "broken.toml"
    p.write_text("seeds = [0,\n")
    with pytest.raises(ConfigError, match=r"broken\.toml: not valid TOML"):
        ExperimentConfig.from_toml(p)
    p.write_bytes(b'name = "\xff"\n')
    with pytest.raises(ConfigError, match=r"broken\.toml"):
        ExperimentConfig.from_toml(p)


def test_a_config_changed_after_loading_is_validated_again(tmp_path):
    """run_experiment validates the config object it is given; nothing is created on refusal."""
    cfg = ExperimentConfig.from_dict(base_dict(), where="mine.toml")
    cfg.train["epochs"] = "3"
    before = tree(tmp_path)
    with pytest.raises(ConfigError, match=r"^mine\.toml: \[train\] epochs = '3'"):
        run_experiment(cfg, tmp_path / "out", progress=False)
    assert tree(tmp_path) == before


RUNNABLE = [
    ("train.device", "gpu", ["[train] device", "'gpu'"]),
    ("profiles.source", "llm", ["[profiles] store"]),
    ("profiles.store", "/nonexistent/store", ["[profiles] store = '/nonexistent/store': no such folder"]),
    ("profiles.encoder", "/nonexistent/enc", ["[profiles] encoder = '/nonexistent/enc'"]),
    ("dataset.path", "/nonexistent/data.csv", ["[dataset] path = '/nonexistent/data.csv'"]),
]


@pytest.mark.parametrize("key,value,words", RUNNABLE, ids=[k for k, _, _ in RUNNABLE])
def test_machine_checks_come_before_any_work(tmp_path, key, value, words):
    d = put(base_dict(), key, value)
    if key == "profiles.store":
        d = put(d, "profiles.source", "llm")
    with pytest.raises(ConfigError) as err:  # at loading ('gpu' is no device name) or before the run
        run_experiment(ExperimentConfig.from_dict(d, where="exp.toml"), tmp_path / "out", progress=False)
    assert all(w in str(err.value) for w in words) and str(err.value).startswith("exp.toml: ")
    assert not (tmp_path / "out").exists()


def test_a_config_file_without_a_dataset_table_is_refused(tmp_path):
    # Every other table has defaults; without [dataset] the runs would silently use synthetic data.
    p = tmp_path / "exp.toml"
    d = base_dict()
    del d["dataset"]
    p.write_text(_dump_toml(d))
    with pytest.raises(ConfigError, match=r"exp\.toml: no \[dataset\] table"):
        ExperimentConfig.from_toml(p)


def test_a_prepared_dataset_keeps_its_split_and_k_core(tmp_path):
    # [split] or k_core set to other values than the prepared dataset holds would be recorded in
    # config.json but not applied: refused before any work. The same values, or none, are fine.
    from seqdistill.data import SplitConfig, prepare
    from seqdistill.datasets import load

    ds = prepare(load("synthetic", n_users=100, n_items=40), k_core=(2, 2), split=SplitConfig(quantile=0.8))
    ds.save(tmp_path / "ds")
    d = put(base_dict(), "dataset", {"name": "prepared", "path": str(tmp_path / "ds")})
    for key, value, words in (
        ("split.quantile", 0.5, ["exp.toml: [split] =", "'quantile': 0.5", "split with", "'quantile': 0.8"]),
        ("k_core", [30, 30], ["exp.toml: k_core = [30, 30]", "filtered with kcore [2, 2]"]),
    ):
        with pytest.raises(ConfigError) as err:
            run_experiment(ExperimentConfig.from_dict(put(d, key, value), where="exp.toml"), tmp_path / "out")
        assert all(w in str(err.value) for w in words), str(err.value)
        assert not (tmp_path / "out").exists()
    from seqdistill.experiments.runner import _check_prepared

    _check_prepared(ExperimentConfig.from_dict(d, where="exp.toml"))  # the dataset's own values
    del d["split"], d["k_core"]
    _check_prepared(ExperimentConfig.from_dict(d, where="exp.toml"))  # none given


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_refused_without_cuda(tmp_path):
    cfg = ExperimentConfig.from_dict(put(base_dict(), "train.device", "cuda:0"), where="exp.toml")
    with pytest.raises(ConfigError, match=r"\[train\] device = 'cuda:0': CUDA is not available"):
        run_experiment(cfg, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_unknown_loader_option_is_refused():
    d = put(base_dict(), "dataset", {"name": "ml-1m", "kwargs": {"locale": "DE"}})
    with pytest.raises(ConfigError, match=r"exp\.toml: \[dataset.kwargs\] unknown key 'locale' for dataset 'ml-1m'"):
        ExperimentConfig.from_dict(d, where="exp.toml")
    d = put(base_dict(), "dataset", {"name": "amazon-m2", "path": "x", "kwargs": {"locale": {"a": 1}}})
    with pytest.raises(ConfigError, match=r"\[dataset.kwargs\] locale = \{'a': 1\}"):
        ExperimentConfig.from_dict(d, where="exp.toml")


def test_dataset_needing_files_without_path(tmp_path):
    d = put(base_dict(), "dataset", {"name": "beauty"})
    cfg = ExperimentConfig.from_dict(d, where="exp.toml")
    with pytest.raises(ConfigError, match=r"exp\.toml: \[dataset\] path: dataset 'beauty'"):
        run_experiment(cfg, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- safe names
@given(st.text(max_size=200))
def test_slug_stays_inside_its_folder(text):
    s = slug(text)
    assert SAFE.match(s) and ".." not in s and len(s) <= MAX_LEN
    base = Path("/base/runs")
    assert os.path.normpath(base / s).startswith(str(base) + os.sep)
    name = run_name(text, 3)
    assert is_run_name(name) and os.path.normpath(base / f"{name}.json").startswith(str(base) + os.sep)


def test_slug_keeps_safe_names_and_unique_names_hash_collisions():
    assert slug("distill_a0.4_b1") == "distill_a0.4_b1" and slug("distill_blk-1") == "distill_blk-1"
    assert slug("../../x") == "x" and slug("a/b") == "a-b" and slug("") == "x" and slug("..") == "x"
    names = unique_names([("a/b", {"v": 1}), ("a?b", {"v": 2}), ("c", {"v": 3})])
    assert names[2] == "c" and names[0] != names[1]
    assert all(SAFE.match(n) and n.startswith("a-b-") and len(n) <= MAX_LEN for n in names[:2])
    assert unique_names([("x" * 200, {"v": 1}), ("x" * 201, {"v": 2})])[0].endswith(tuple("0123456789abcdef"))
    with pytest.raises(ValueError):
        run_name("vanilla", -1)
    with pytest.raises(ValueError):
        run_name("vanilla", True)


def test_hostile_grid_values_give_safe_distinct_names():
    """Even a grid built around validation names its runs inside the folder, one name each."""
    spec = DistillSpec({"alpha": 0.4}, {"pooling": ["../../x", "a/b", "a\\b", "/etc/passwd"]})
    names = [n for n, _ in spec.points()]
    assert len(set(names)) == 4
    for n in names:
        assert SAFE.match(n) and ".." not in n


def test_hostile_grid_value_never_writes_outside(tmp_path):
    """A config whose grid was changed after validation is refused before anything is written."""
    out = tmp_path / "exp" / "out"
    cfg = ExperimentConfig.from_dict(base_dict(), where="exp.toml")
    cfg.distill.grid = {"pooling": ["../../x", "a/b"]}
    before = tree(tmp_path)
    with pytest.raises(ConfigError, match=r"\[distill.grid\] pooling"):
        run_experiment(cfg, out, progress=False)
    assert tree(tmp_path) == before
