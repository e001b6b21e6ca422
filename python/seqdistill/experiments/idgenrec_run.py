"""IDGenRec in an experiment: the ``[idgenrec]`` section, its runs, and its rows in the report.

An experiment config with an ``[idgenrec]`` table (keys of
:class:`~seqdistill.models.idgenrec.IDGenRecConfig`) adds the variant ``idgenrec`` (run kind
``"idgenrec"``) beside vanilla and the distilled runs, one run per seed, on the same prepared
dataset, the same test rows and the same metric code. Its ``seed`` is the run's seed; its
``device`` defaults to ``[train] device``. Its beam width defaults to ``max(eval_ks)``.

A run trains with :func:`~seqdistill.models.idgenrec.fit_idgenrec`, tests with
:func:`~seqdistill.models.idgenrec.evaluate_idgenrec`, and writes the same record and per-row
arrays as the other runs (``runs/idgenrec__seed<N>.json``; ``valid`` is empty: IDGenRec trains
for a fixed schedule and selects nothing). Timing, as Table 5 counts it: seconds per recommender
epoch (generator epochs and ID regeneration are in ``history`` and the total), and the seconds to
rank the test rows. A run in progress checkpoints into ``work/<run>/`` after every step and
continues from there when the experiment is run again.

The report keeps IDGenRec out of the tables of distilled variants and controls and adds Table 4
(test NDCG@10 and Recall@10 of IDGenRec, vanilla SASRec and the best distilled SASRec, with the
paired test against vanilla) and IDGenRec's Table 5 rows (times and their ratio to vanilla).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seqdistill import _io
from seqdistill._checks import show
from seqdistill.errors import ConfigError

from .records import DatasetSummary, RunRecord, Timing
from .summary import MeanStd, RunResult, Summary, paired_test

if TYPE_CHECKING:
    from seqdistill.models.idgenrec import IDGenRecConfig

    from .config import ExperimentConfig
    from .plan import RunPlan

__all__ = [
    "KIND",
    "check_section",
    "idgenrec_config",
    "render_idgenrec",
    "run_idgenrec",
    "split_runs",
    "table4_json",
]

KIND = "idgenrec"
_PER_ROW = ("ndcg@10", "recall@10")


# ------------------------------------------------------------------------------ config
def idgenrec_config(config: ExperimentConfig, seed: int) -> IDGenRecConfig:
    """The run's IDGenRecConfig: the ``[idgenrec]`` table, ``seed``, ``[train] device`` unless set."""
    from seqdistill.models.idgenrec import IDGenRecConfig
    from seqdistill.training import TrainConfig

    section = dict(config.idgenrec or {})
    section.setdefault("device", TrainConfig.from_dict(config.train).device)
    return IDGenRecConfig.from_dict({**section, "seed": seed})


def check_section(config: ExperimentConfig, where: str, machine: bool = False) -> None:
    """``[idgenrec]`` is a table of IDGenRecConfig keys with valid values (and, with ``machine``,
    its checkpoint folder exists here); ConfigError naming ``where`` and the key."""
    section = config.idgenrec
    if section is None:
        return
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: [idgenrec] must be a table, got {show(section)}")
    if "seed" in section:
        raise ConfigError(f"{where}: [idgenrec] seed: each run uses its own seed from 'seeds'; remove the key")
    try:
        cfg = idgenrec_config(config, 0)
    except ConfigError as e:
        said = str(e).split(": ", 1)[-1] if str(e).startswith("IDGenRecConfig.") else str(e)
        key = str(e).split(":", 1)[0].removeprefix("IDGenRecConfig.")
        raise ConfigError(f"{where}: [idgenrec] {key}: {said}") from None
    beams = cfg.num_beams
    if beams and beams < max(config.eval_ks):
        raise ConfigError(f"{where}: [idgenrec] num_beams = {beams}: must be 0 or at least max(eval_ks)")
    path = cfg.model_name_or_path
    if machine and path is not None and not Path(path).is_dir():
        raise ConfigError(f"{where}: [idgenrec] model_name_or_path = {show(path, 200)}: no such checkpoint folder here")


# -------------------------------------------------------------------------------- a run
def run_idgenrec(config: ExperimentConfig, ds, plan: RunPlan, out: Path, work: Path) -> RunRecord:
    """Train and test IDGenRec for ``plan`` (checkpointing in ``work``, the run's folder the runner
    made); write the per-row arrays, then the record (last)."""
    import torch

    from seqdistill.models.idgenrec import evaluate_idgenrec, fit_idgenrec

    cfg = idgenrec_config(config, plan.seed)
    if max(config.eval_ks) > ds.n_items:  # a beam cannot hold more items than the catalogue: say so before training
        raise ConfigError(
            f"{config.origin}: eval_ks = {show(config.eval_ks)}: IDGenRec cannot rank {max(config.eval_ks)} "
            f"of the {ds.n_items} items of {ds.name!r}"
        )
    model, history = fit_idgenrec(ds, cfg, run_dir=work)
    train_total = sum(r["seconds"] for r in history)  # every step, those before a resume included
    t0 = time.perf_counter()
    res = evaluate_idgenrec(model, ds, "test", ks=config.eval_ks)
    infer = time.perf_counter() - t0
    files = {}
    for key in _PER_ROW:
        files[key] = f"{plan.name}.{key.replace('@', '')}.npy"
        _io.write_npy(out / "runs" / files[key], np.asarray(res.per_row[key], dtype=np.float64))
    rec_secs = [r["seconds"] for r in history if r["phase"] == "rec"]
    record = RunRecord(
        run=plan.name,
        variant=plan.variant,
        kind=plan.kind,
        seed=plan.seed,
        settings=plan.settings,
        distill=dict(plan.distill),
        distill_trained=False,
        model=cfg.to_dict(),
        train={},
        profiles=config.profiles.to_dict(),
        dataset=DatasetSummary.of(ds, len(res.users)),
        history=history,
        best_epoch=None,
        valid={},
        test={k: float(v) for k, v in res.means.items()},
        per_row=files,
        timing=Timing.of(rec_secs, train_total, len(history), infer),
        device=str(model.device),
        torch_threads=torch.get_num_threads(),
    )
    record.write(out / "runs" / f"{plan.name}.json")
    return record


# ------------------------------------------------------------------------------- report
Runs = Mapping[str, Mapping[int, RunResult]]


def split_runs(runs: Runs) -> tuple[dict[str, Mapping[int, RunResult]], dict[str, Mapping[int, RunResult]]]:
    """``(other variants, IDGenRec variants)`` of ``{variant: {seed: run}}``."""
    idg = {v: r for v, r in runs.items() if r and next(iter(r.values())).record.kind == KIND}
    return {v: r for v, r in runs.items() if v not in idg}, idg


def _pm(ms: MeanStd, digits: int = 4) -> str:
    return f"{ms.mean:.{digits}f} ± {ms.std:.{digits}f}" if ms.std == ms.std else f"{ms.mean:.{digits}f}"


def _stat(runs: Mapping[int, RunResult], get) -> MeanStd:
    return MeanStd.of([get(runs[s].record) for s in sorted(runs)])


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}×" if b and a == a and b == b else "n/a"


def table4_json(summary: Summary, runs: Runs, idg: Runs) -> dict[str, Any]:
    """Table 4 and IDGenRec's Table 5 rows as JSON (``report.json`` keys ``table4``, ``table5_idgenrec``)."""
    rows, times = [], []
    van = summary.vanilla
    for v, r in idg.items():
        row: dict[str, Any] = {"variant": v, "seeds": sorted(r)}
        for m in _PER_ROW:
            row[f"test_{m}"] = _stat(r, lambda rec, m=m: rec.test[m]).to_json()
            row[f"vs_vanilla_{m}"] = paired_test(runs["vanilla"], r, m).to_json()
        rows.append(row)
        train = _stat(r, lambda rec: rec.timing.train_seconds_per_epoch)
        infer = _stat(r, lambda rec: rec.timing.test_inference_seconds)
        times.append(
            {
                "variant": v,
                "train_seconds_per_epoch": train.to_json(),
                "test_inference_seconds": infer.to_json(),
                "train_ratio_to_vanilla": train.mean / van.train_seconds_per_epoch.mean,
                "inference_ratio_to_vanilla": infer.mean / van.test_inference_seconds.mean,
            }
        )
    return {"table4": rows, "table5_idgenrec": times}


def render_idgenrec(summary: Summary, runs: Runs, idg: Runs) -> list[str]:
    """Markdown lines of Table 4 and IDGenRec's Table 5 rows (none without IDGenRec runs)."""
    if not idg:
        return []
    van, best = summary.vanilla, summary.best_distilled
    md = [
        "",
        "## Table 4: IDGenRec vs SASRec and the distilled SASRec (test)",
        "",
        "| method | NDCG@10 | Recall@10 | p t-test vs vanilla (NDCG / Recall) |",
        "|---|---|---|---|",
    ]
    for v, r in idg.items():
        n, rc = (paired_test(runs["vanilla"], r, m).ttest_p for m in _PER_ROW)
        md.append(
            f"| {v} (IDGenRec) | {_pm(_stat(r, lambda rec: rec.test['ndcg@10']))} | "
            f"{_pm(_stat(r, lambda rec: rec.test['recall@10']))} | {n:.3g} / {rc:.3g} |"
        )
    md.append(f"| vanilla (SASRec) | {_pm(van.test['ndcg@10'])} | {_pm(van.test['recall@10'])} | |")
    if best is not None:
        b = summary.variants[best]
        md.append(f"| {best} (SASRec + distillation) | {_pm(b.test['ndcg@10'])} | {_pm(b.test['recall@10'])} | |")
    md += [
        "",
        "### Table 5 (IDGenRec rows): seconds per recommender epoch and test inference seconds",
        "",
        "| method | train s/epoch | test inference s | train × vanilla | inference × vanilla |",
        "|---|---|---|---|---|",
    ]
    for v, r in idg.items():
        tr = _stat(r, lambda rec: rec.timing.train_seconds_per_epoch)
        inf = _stat(r, lambda rec: rec.timing.test_inference_seconds)
        md.append(
            f"| {v} (IDGenRec) | {_pm(tr, 3)} | {_pm(inf, 3)} | {_ratio(tr.mean, van.train_seconds_per_epoch.mean)} | "
            f"{_ratio(inf.mean, van.test_inference_seconds.mean)} |"
        )
    md += [
        "",
        "IDGenRec ranks by constrained beam search (width max(eval_ks)) over textual IDs; without a "
        "pretrained T5 checkpoint ([idgenrec] model_name_or_path) its accuracy is not a result.",
    ]
    return md
