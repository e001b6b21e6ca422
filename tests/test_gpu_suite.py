"""benches/gpu_suite.py: the config it runs and the Table 5 rows it reports (the suite itself
needs a GPU; its --smoke run is the check on a CPU, see docs/profiles.md)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from seqdistill.experiments.config import ExperimentConfig  # noqa: E402

BENCHES = Path(__file__).resolve().parents[1] / "benches"


@pytest.fixture(scope="module")
def suite():
    sys.path.insert(0, str(BENCHES))
    try:
        spec = importlib.util.spec_from_file_location("gpu_suite", BENCHES / "gpu_suite.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.path.remove(str(BENCHES))


def args(**kw):
    base = {"smoke": False, "seeds": None, "idgenrec": False, "device": "auto"}
    return argparse.Namespace(**{**base, **kw})


def test_full_config_is_the_ml1m_smollm_preset_with_the_suite_store(suite, tmp_path):
    d = suite.experiment_config(args(), tmp_path / "profiles")
    cfg = ExperimentConfig.from_dict(d, "suite")
    assert cfg.dataset.name == "ml-1m" and cfg.seeds == [0, 1, 2, 3, 4]
    assert cfg.profiles.source == "llm" and cfg.profiles.store == str((tmp_path / "profiles").resolve())
    assert cfg.controls == ["shuffled", "stats"] and cfg.idgenrec is None
    assert len(cfg.distill.points()) == 4  # the alpha x beta grid
    with_idgenrec = suite.experiment_config(args(idgenrec=True, seeds=[7]), tmp_path / "p")
    assert with_idgenrec["idgenrec"] == {} and with_idgenrec["seeds"] == [7]


def test_smoke_config_is_small_and_valid(suite, tmp_path):
    d = suite.experiment_config(args(smoke=True, idgenrec=True), tmp_path / "profiles")
    cfg = ExperimentConfig.from_dict(d, "smoke")
    assert cfg.dataset.name == "ml-100k" and cfg.seeds == [0] and cfg.train["epochs"] == 2
    assert len(cfg.distill.points()) == 1 and cfg.model["hidden"] == 16


def test_table5_rows_compare_each_variant_with_vanilla(suite):
    def ms(mean):
        return [mean, 0.1]  # MeanStd.to_json: [mean, std]

    report = {
        "table5": [
            {"variant": "vanilla", "train_seconds_per_epoch": ms(10.0), "test_inference_seconds": ms(2.0)},
            {"variant": "a0.4_bT", "train_seconds_per_epoch": ms(12.5), "test_inference_seconds": ms(2.0)},
            {"variant": "idgenrec", "train_seconds_per_epoch": ms(20.0), "test_inference_seconds": ms(100.0)},
        ]
    }
    rows = suite.table5_rows(report)
    assert [(r["case"], r["ours_s"], r["baseline_s"], r["ratio"]) for r in rows] == [
        ("Table 5, training, seconds per epoch: a0.4_bT", 12.5, 10.0, 0.8),
        ("Table 5, inference, test set: a0.4_bT", 2.0, 2.0, 1.0),
        ("Table 5, training, seconds per epoch: idgenrec", 20.0, 10.0, 0.5),
        ("Table 5, inference, test set: idgenrec", 100.0, 2.0, 0.02),
    ]
    assert suite.table5_rows({"table5": []}) == []
