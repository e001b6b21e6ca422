"""Paper-style experiments: a TOML config, a resumable runner over variants x seeds, a report.

    >>> from seqdistill.experiments import load_preset, run_experiment, report
    >>> cfg = load_preset("synthetic")
    >>> run_experiment(cfg, "out/synthetic")       # runs/<variant>__seed<k>.json
    >>> report("out/synthetic")                      # report.md, report.json, figure3.png

Modules: ``config`` (the TOML config), ``validate`` (every check before any work), ``plan`` (the
runs and their settings), ``resume`` (what a folder already holds), ``runner``, ``records`` (the
run record shared by runner and report), ``summary`` (the report's numbers, pure), ``report``.
"""

from seqdistill.errors import ConfigError

from .config import (
    CONTROLS,
    GRID_KEYS,
    DatasetSpec,
    DistillSpec,
    ExperimentConfig,
    ProfilesSpec,
    list_presets,
    load_config,
    load_preset,
)
from .records import RunRecord
from .report import load_runs, render_figure, render_markdown, report
from .runner import compute_targets, prepare_dataset, run_experiment, shuffled_targets
from .summary import RunResult, Summary, paired_test, summarise

__all__ = [
    "CONTROLS",
    "GRID_KEYS",
    "ConfigError",
    "DatasetSpec",
    "DistillSpec",
    "ExperimentConfig",
    "ProfilesSpec",
    "RunRecord",
    "RunResult",
    "Summary",
    "list_presets",
    "load_config",
    "load_preset",
    "load_runs",
    "paired_test",
    "render_figure",
    "render_markdown",
    "report",
    "summarise",
    "compute_targets",
    "prepare_dataset",
    "run_experiment",
    "shuffled_targets",
]
