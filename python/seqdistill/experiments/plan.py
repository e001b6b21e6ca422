"""The runs an experiment config asks for, each with the full settings its result depends on.

Settings are written with every default filled in (``TrainConfig.from_dict(...).to_dict()``, not
the few keys the TOML named), so that writing a default out explicitly is no change, and in JSON
form, so that they compare equal to what a finished run recorded. ``[train] progress`` is left out
(it changes no number), as are ``nproc`` and ``backend`` (how many processes train one run) and
the experiment's ``name``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .idgenrec_run import idgenrec_config
from .naming import run_name

if TYPE_CHECKING:
    from .config import ExperimentConfig

__all__ = ["RunPlan", "plan_runs", "results_settings"]

_NOT_RESULTS = ("progress", "nproc", "backend")  # TrainConfig keys that change no result (beyond rounding)


def _json(x: Any) -> Any:
    """``x`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(x))


def _model(config: ExperimentConfig) -> dict[str, Any]:
    from seqdistill.models import ModelConfig

    d = ModelConfig.from_dict({**config.model, "n_items": 1}).to_dict()
    d.pop("n_items")
    return d


def _train(train: dict[str, Any], *, results_only: bool = True) -> dict[str, Any]:
    from seqdistill.training import TrainConfig

    d = TrainConfig.from_dict(train).to_dict()
    for k in _NOT_RESULTS if results_only else ():
        d.pop(k, None)
    return d


def _distill(d: dict[str, Any]) -> dict[str, Any]:
    from seqdistill.training.distill import DistillConfig

    return DistillConfig.from_dict(d).to_dict()


def results_settings(config: ExperimentConfig) -> dict[str, Any]:
    """Per section, the settings that change results (the runs' shared part). ``train`` has no
    ``seed`` (each run sets its own); ``distill`` is the base point; ``eval_ks`` sorted."""
    from seqdistill.data import SplitConfig

    train = _train(config.train)
    train.pop("seed")
    spec = config.dataset
    return _json(
        {
            "dataset": {"name": spec.registry_name, "path": spec.path, "kwargs": spec.kwargs},
            "split": SplitConfig.from_dict(config.split).to_dict(),
            "k_core": list(config.k_core),
            "model": _model(config),
            "train": train,
            "profiles": asdict(config.profiles),
            "distill": _distill(config.distill.base),
            "eval_ks": sorted(config.eval_ks),
        }
    )


@dataclass(frozen=True)
class RunPlan:
    """One run: its safe name, what it is, and the full settings it will run with."""

    name: str
    variant: str
    kind: str  # "vanilla" | "distill" | "shuffled" | "stats" | "idgenrec"
    seed: int
    distill: dict[str, Any]  # the DistillConfig used (vanilla: the base, measured only)
    train: dict[str, Any]  # the whole TrainConfig dict (this seed, the min_epochs floor)
    settings: dict[str, Any]  # everything the result depends on, JSON-normal


def plan_runs(config: ExperimentConfig) -> list[RunPlan]:
    """Every variant x seed, in run order (variants outer, seeds inner)."""
    shared = results_settings(config)
    base_epochs = config.distill.base.get("epochs") or 0
    plans = []
    for variant, kind, dcfg in config.variants():
        used = _distill(dcfg if dcfg is not None else config.distill.base)
        run_epochs = (dcfg or {}).get("epochs") or base_epochs
        # Early stopping may not end a run inside its distillation stage (validation can dip
        # there); vanilla gets the same floor, so every variant has the same minimum budget.
        floor = max(int(config.train.get("min_epochs", 0)), int(base_epochs), int(run_epochs))
        for seed in config.seeds:
            train = {**config.train, "seed": seed, "min_epochs": floor}
            settings = _json({**shared, "kind": kind, "seed": seed, "distill": used, "train": _train(train)})
            if kind == "idgenrec":  # the IDGenRec settings this run uses (experiments.idgenrec_run)
                settings["idgenrec"] = _json(idgenrec_config(config, seed).to_dict())
            train = _train(train, results_only=False)
            plans.append(RunPlan(run_name(variant, seed), variant, kind, seed, used, train, settings))
    return plans
