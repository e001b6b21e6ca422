"""``report(out_dir)``: the paper's tables and Figure 3 from the runs of ``run_experiment``.

Three parts, kept apart: :func:`load_runs` reads ``runs/*.json`` (as
:class:`~seqdistill.experiments.records.RunRecord`) and the per-row arrays beside them;
:func:`~seqdistill.experiments.summary.summarise` computes every number (pure; the statistics are
described there); :func:`render_markdown` and :func:`render_figure` present a
:class:`~seqdistill.experiments.summary.Summary`. :func:`report` only calls them in turn and writes
``report.md``, ``report.json`` and ``figure3.png`` through ``seqdistill._io``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from seqdistill import _io
from seqdistill.errors import DataError

from .idgenrec_run import render_idgenrec, split_runs, table4_json
from .records import RunRecord
from .summary import METRICS, MeanStd, RunResult, Summary, paired_test, summarise

__all__ = ["load_runs", "paired_test", "render_figure", "render_markdown", "report", "summarise"]


# ----------------------------------------------------------------------------------- load
def _per_row(folder: Path, rec: RunRecord, metric: str) -> np.ndarray:
    path = folder / rec.per_row.get(metric, f"{rec.run}.(missing {metric}).npy")
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: per-row {metric} of run {rec.run} unreadable ({e.__class__.__name__}: {e})") from None
    if a.shape != (rec.dataset.test_rows,) or a.dtype.kind != "f":
        raise DataError(
            f"{path}: expected {rec.dataset.test_rows} floats (the run's test rows), got {a.dtype} {a.shape}"
        )
    # The record's test metric is the mean of these rows: a record or file changed after the run
    # (or swapped with another run's) would put two different numbers in one report.
    said, have = rec.test.get(metric), float(a.mean()) if len(a) else 0.0
    if not np.isfinite(a).all() or not isinstance(said, (int, float)) or abs(have - said) > 1e-6 * max(1.0, abs(said)):
        raise DataError(
            f"{path}: the per-row {metric} of run {rec.run} average {have:.6g}, but {rec.run}.json says "
            f"{said!r}; the record or the file was changed after the run"
        )
    return a


def load_runs(out_dir: str | os.PathLike) -> dict[str, dict[int, RunResult]]:
    """``{variant: {seed: RunResult}}`` from ``out_dir/runs/*.json`` and the arrays beside them."""
    folder = Path(out_dir) / "runs"
    runs: dict[str, dict[int, RunResult]] = {}
    for p in sorted(folder.glob("*.json")):
        rec = RunRecord.from_json(p)
        arrays = {m: _per_row(folder, rec, m) for m in METRICS}
        runs.setdefault(rec.variant, {})[rec.seed] = RunResult(rec, arrays)
    if not runs:
        raise DataError(f"{folder}: no finished runs (runs/*.json); run the experiment first")
    return runs


# ------------------------------------------------------------------------------- markdown
def _pm(ms: MeanStd, digits: int = 4) -> str:
    return f"{ms.mean:.{digits}f} ± {ms.std:.{digits}f}" if ms.std == ms.std else f"{ms.mean:.{digits}f}"


def _p(x: float) -> str:
    return "n/a" if x != x else f"{x:.3g}"


def _md_table2(s: Summary) -> list[str]:
    van = s.vanilla
    md = [
        "## Table 2: vanilla vs distilled (test)",
        "",
        "| variant | NDCG@10 | Recall@10 | uplift NDCG@10 | uplift Recall@10 | p t-test (NDCG / Recall) | p Wilcoxon (NDCG / Recall) |",
        "|---|---|---|---|---|---|---|",
        f"| vanilla | {_pm(van.test['ndcg@10'])} | {_pm(van.test['recall@10'])} | | | | |",
    ]
    if s.table2 is not None:
        b = s.variants[s.table2.variant]
        n, r = s.table2.metrics["ndcg@10"], s.table2.metrics["recall@10"]
        md.append(
            f"| {b.variant} | {_pm(b.test['ndcg@10'])} | {_pm(b.test['recall@10'])} | "
            f"{n.uplift_pct:+.2f}% | {r.uplift_pct:+.2f}% | {_p(n.paired.ttest_p)} / {_p(r.paired.ttest_p)} | "
            f"{_p(n.paired.wilcoxon_p)} / {_p(r.paired.wilcoxon_p)} |"
        )
    return md


def _md_controls(s: Summary) -> list[str]:
    if not s.controls:
        return []
    md = [
        "",
        "## Controls (test; p-values vs vanilla, and of the distilled variant vs the control)",
        "",
        "| control | NDCG@10 | Recall@10 | uplift NDCG@10 | p t-test NDCG@10 | p Wilcoxon NDCG@10 | p t-test distilled vs control |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in s.controls:
        v, n, d = s.variants[c.variant], c.metrics["ndcg@10"], c.distilled_vs_control
        md.append(
            f"| {c.variant} | {_pm(v.test['ndcg@10'])} | {_pm(v.test['recall@10'])} | "
            f"{n.uplift_pct:+.2f}% | {_p(n.paired.ttest_p)} | {_p(n.paired.wilcoxon_p)} | "
            f"{_p(d.ttest_p) if d else 'n/a'} |"
        )
    return md


def _md_table3(s: Summary) -> list[str]:
    if not s.table3:
        return []
    cells = {(c.alpha, c.dynamic_beta): c for c in s.table3}
    alphas = sorted({a for a, _ in cells})
    md = [
        "",
        "## Table 3: α × β grid (test NDCG@10)",
        "",
        "| dynamic β | " + " | ".join(f"α={a:g}" for a in alphas) + " |",
        "|---" * (len(alphas) + 1) + "|",
    ]
    for b in sorted({b for _, b in cells}):
        md.append(
            f"| {'yes' if b else 'no'} | "
            + " | ".join(_pm(cells[(a, b)].test_ndcg) if (a, b) in cells else "" for a in alphas)
            + " |"
        )
    return md


def _md_table5(s: Summary) -> list[str]:
    md = [
        "",
        "## Table 5: training seconds per epoch and test inference seconds",
        "",
        "| variant | train s/epoch | test inference s | train overhead |",
        "|---|---|---|---|",
    ]
    for r in s.table5:
        over = "" if r.variant == "vanilla" else f"{r.overhead_pct:+.1f}%"
        md.append(
            f"| {r.variant} | {_pm(r.train_seconds_per_epoch, 3)} | {_pm(r.test_inference_seconds, 3)} | {over} |"
        )
    md += [
        "",
        "Vanilla runs also measure L_distill (no gradient) each batch for Figure 3, which adds a little to their time.",
    ]
    return md


def _md_all(s: Summary) -> list[str]:
    md = [
        "",
        "## All variants",
        "",
        "| variant | kind | seeds | valid NDCG@10 | test NDCG@10 | test Recall@10 |",
        "|---|---|---|---|---|---|",
    ]
    for v in s.variants.values():
        md.append(
            f"| {v.variant} | {v.kind} | {len(v.seeds)} | {_pm(v.valid['ndcg@10'])} | {_pm(v.test['ndcg@10'])} | "
            f"{_pm(v.test['recall@10'])} |"
        )
    return md


def render_markdown(summary: Summary, title: str, figure: str | None = None) -> str:
    """``report.md``: Table 2, the controls, Table 3, Table 5, all variants, and Figure 3 when
    ``figure`` (its file name beside the report) is given."""
    s = summary
    md = [
        f"# Experiment report: {title}",
        "",
        "Seeds per variant: " + ", ".join(f"{v}={len(x.seeds)}" for v, x in s.variants.items()) + ". "
        "Values are mean ± sample std over seeds on the TEST part; the distilled variant is "
        "chosen by mean validation NDCG@10. p-values: paired over test rows (per-row metric averaged over seeds).",
        "",
    ]
    md += _md_table2(s) + _md_controls(s) + _md_table3(s) + _md_table5(s) + _md_all(s)
    if figure:
        md += [
            "",
            "## Figure 3: distillation loss per epoch",
            "",
            f"![Figure 3]({figure})",
            "",
            "The dashed line marks the switch from the distillation stage to plain training.",
        ]
    return "\n".join(md + [""])


# --------------------------------------------------------------------------------- figure
def render_figure(summary: Summary, path: str | os.PathLike) -> bool:
    """Figure 3 (mean L_distill per epoch: vanilla measured, best distilled trained, the stage
    switch) as a PNG at ``path``, written atomically; False (nothing written) with no curve."""
    if not summary.curves:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for c in summary.curves:
        ax.plot(np.arange(len(c.values)), c.values, marker="o", label=c.label)
    if summary.stage_switch is not None:
        ax.axvline(summary.stage_switch - 0.5, color="green", linestyle="--", label="stage switch")
    ax.set_xlabel("epoch")
    ax.set_ylabel("L_distill")
    ax.set_title("Figure 3: distillation loss per epoch (mean over seeds)")
    ax.legend()
    fig.tight_layout()
    try:
        _io.write_with(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    finally:
        plt.close(fig)
    return True


# --------------------------------------------------------------------------------- report
def report(out_dir: str | os.PathLike) -> dict[str, Any]:
    """Write ``report.md``, ``report.json`` and ``figure3.png`` into ``out_dir``; returns the JSON."""
    out = Path(out_dir)
    runs, idgenrec = split_runs(load_runs(out))  # IDGenRec has Table 4 and its own Table 5 rows
    summary = summarise(runs)
    fig = out / "figure3.png"
    drew = render_figure(summary, fig)
    res = summary.to_json()
    if idgenrec:
        res.update(table4_json(summary, runs, idgenrec))
    if drew:
        res["figure3"] = fig.name
    text = render_markdown(summary, out.name, fig.name if drew else None)
    text += "\n".join(render_idgenrec(summary, runs, idgenrec) + [""])
    from seqdistill.profiles.probe import experiment_probes, probe_markdown  # the profile probe (#15)

    if probes := experiment_probes(out):
        res["probe"] = probes
        text += "\n".join(probe_markdown(probes) + [""])
    _io.write_text(out / "report.md", text)
    _io.write_json(out / "report.json", res)
    return res
