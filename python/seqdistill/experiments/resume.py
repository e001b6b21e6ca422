"""What an experiment folder already holds, checked against what the config asks for now.

An experiment folder is absent, empty, or one the runner wrote (its ``config.json``); a folder of
someone else's files is refused (:func:`check_owned`). It is resumed only when nothing that
changes results has changed: the folder's
``config.json`` is compared section by section (dataset, split, k_core, model, train, profiles,
the distillation base point, eval_ks, and every grid point still in the config), and every
finished run's recorded settings are compared with what that run would be now. More seeds, more
controls or more grid values are fine (new runs); anything else is a
:class:`~seqdistill.errors.ConfigError` naming the folder and each change (old → new), with
nothing written. Only then is ``config.json`` rewritten (atomically).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqdistill import _io
from seqdistill._checks import show
from seqdistill.errors import ConfigError, DataError, OutputError

from .plan import RunPlan, results_settings
from .records import RunRecord

if TYPE_CHECKING:
    from .config import ExperimentConfig

__all__ = ["changes", "check_folder", "check_owned", "check_run_folder", "write_config", "WORK_MARKER"]

WORK_MARKER = "experiment-run.json"  # written into work/<run>/ by the runner that creates it
_SHOWN = 6  # changes listed in one message


def _join(at: str, key: Any) -> str:
    if not at:
        return str(key)
    return f"{at} {key}" if at.endswith("]") else f"{at}.{key}"


def changes(old: Any, new: Any, at: str = "") -> list[str]:
    """``"<at> key: old → new"`` for every leaf that differs between two JSON-like values."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in list(old) + [k for k in new if k not in old]:
            out += changes(old.get(k, "(absent)"), new.get(k, "(absent)"), _join(at, k))
        return out
    return [] if old == new else [f"{at}: {show(old, 40)} → {show(new, 40)}"]


def _refuse(folder: Path, what: str, diffs: list[str]) -> ConfigError:
    listed = "; ".join(diffs[:_SHOWN]) + (f"; and {len(diffs) - _SHOWN} more" if len(diffs) > _SHOWN else "")
    return ConfigError(f"{folder}: {what}: {listed}; use a new --out folder")


def _sections(settings: dict[str, Any]) -> dict[str, Any]:
    """Results settings keyed the way a user reads them: ``[model]``, ``k_core``, ..."""
    tables = ("dataset", "split", "model", "train", "profiles", "distill")
    return {f"[{k}]" if k in tables else k: v for k, v in settings.items()}


def _old_config(folder: Path) -> ExperimentConfig | None:
    from .config import ExperimentConfig

    path = folder / "config.json"
    if not path.exists():
        return None
    try:
        d = _io.loads_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(
            f"{path}: unreadable ({e.__class__.__name__}); not an experiment folder of "
            "this seqdistill? use a new --out folder"
        ) from None
    try:
        return ExperimentConfig.from_dict(d, where=str(path))
    except ConfigError as e:
        raise ConfigError(f"{e}; this folder's config cannot be checked, use a new --out folder") from None


def _results(folder: Path) -> list[str]:
    """What in ``folder`` was computed from its config: the dataset, targets, runs, work folders."""
    held = [p for p in (folder / "dataset", folder / "targets") if p.exists()]
    held += [p for p in (folder / "runs", folder / "work") if p.is_dir() and any(p.iterdir())]
    return [p.name for p in held]


def _check_config(config: ExperimentConfig, folder: Path) -> None:
    """``folder/config.json`` against ``config``: the shared sections and every grid point both hold.
    A folder with nothing computed yet (e.g. preparation failed) may take a corrected config."""
    old = _old_config(folder)  # a config.json that is not an experiment config is never replaced
    held = _results(folder) if folder.is_dir() else []
    if not held:
        return
    if old is None:
        raise ConfigError(
            f"{folder}: holds {held} but no config.json, so the config that made them "
            "is unknown; use a new --out folder"
        )
    diffs = changes(_sections(results_settings(old)), _sections(results_settings(config)))
    new_points = dict(config.distill.points())
    for name, settings in old.distill.points():
        if name in new_points:
            diffs += changes(settings, new_points[name], f"[grid point {name}]")
    if diffs:
        raise _refuse(folder, "holds runs of another config", diffs)


def _check_runs(plans: list[RunPlan], folder: Path) -> dict[str, RunRecord]:
    """Every finished run of ``plans`` (``runs/<run>.json``) must have been run with the same settings."""
    done = {}
    for plan in plans:
        path = folder / "runs" / f"{plan.name}.json"
        if not path.exists():
            continue
        rec = RunRecord.from_json(path)
        diffs = changes(_sections(rec.settings), _sections(plan.settings))
        if diffs:
            raise _refuse(path, "this finished run had other settings", diffs)
        done[plan.name] = rec
    return done


def check_run_folder(work: Path, plan: RunPlan) -> None:
    """``work/<run>/`` of a run in progress: created by the runner for these very settings."""
    marker = work / WORK_MARKER
    if not work.exists() and not work.is_symlink():
        return
    if work.is_symlink() or not work.is_dir() or not marker.is_file():
        raise OutputError(f"{work}: exists but was not created by the experiment runner; move it away")
    try:
        held = _io.loads_json(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{marker}: unreadable ({e.__class__.__name__}); move {work} away") from None
    if not isinstance(held, dict) or held.get("run") != plan.name:
        raise OutputError(f"{marker}: belongs to another run; move {work} away")
    diffs = changes(_sections(held.get("settings") or {}), _sections(plan.settings))
    if diffs:
        raise _refuse(work, "this unfinished run had other settings", diffs)


def check_owned(folder: Path) -> None:
    """``folder`` may be an experiment folder: absent, empty, or holding a ``config.json`` (checked
    to be an experiment config by :func:`check_folder`) or what the runner computes; a file or a
    folder of someone else's files is an OutputError, before anything is written there."""
    if not folder.exists() and not folder.is_symlink():
        return
    if not folder.is_dir():
        raise OutputError(f"{folder}: exists and is not a folder")
    _io.clean_stale(folder)  # temporaries of interrupted writes of ours (dead processes only)
    held = sorted(p.name for p in folder.iterdir())
    if not held or "config.json" in held or _results(folder):
        return
    shown = ", ".join(held[:_SHOWN]) + (f", ... ({len(held)} entries)" if len(held) > _SHOWN else "")
    raise OutputError(
        f"{folder}: folder exists and is not an experiment folder (no config.json; it holds "
        f"{shown}); choose a new or empty --out folder"
    )


def check_folder(config: ExperimentConfig, folder: Path, plans: list[RunPlan]) -> dict[str, RunRecord]:
    """All resume checks, before any work; returns the finished runs' records by run name."""
    check_owned(folder)
    _check_config(config, folder)
    done = _check_runs(plans, folder)
    for plan in plans:
        if plan.name not in done:
            check_run_folder(folder / "work" / plan.name, plan)
    return done


def write_config(config: ExperimentConfig, folder: Path) -> None:
    """``folder/config.json`` (atomically); call only after :func:`check_folder` passed."""
    _io.write_json(folder / "config.json", config.to_dict())
