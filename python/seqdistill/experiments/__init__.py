"""Paper-style experiments: a TOML config, a resumable runner over variants x seeds, a report.

    >>> from seqdistill.experiments import load_preset, run_experiment, report
    >>> cfg = load_preset("synthetic")
    >>> run_experiment(cfg, "out/synthetic")       # runs/<variant>__seed<k>.json
    >>> report("out/synthetic")                      # report.md, report.json, figure3.png
"""
from .config import (CONTROLS, GRID_KEYS, ConfigError, DatasetSpec, DistillSpec, ExperimentConfig, ProfilesSpec,
                     list_presets, load_config, load_preset)
from .report import load_runs, paired_test, report
from .runner import add_experiment_parser, compute_targets, prepare_dataset, run_experiment, shuffled_targets

__all__ = [
    "CONTROLS", "GRID_KEYS", "ConfigError", "DatasetSpec", "DistillSpec", "ExperimentConfig", "ProfilesSpec",
    "list_presets", "load_config", "load_preset", "load_runs", "paired_test", "report", "add_experiment_parser",
    "compute_targets", "prepare_dataset", "run_experiment", "shuffled_targets",
]
