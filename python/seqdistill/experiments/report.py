"""``report(out_dir)``: the paper's tables and Figure 3 from the run JSONs of ``run_experiment``.

Statistics (all recorded in report.json): mean ± sample std (ddof=1) over seeds; the best
distilled variant is chosen by mean VALIDATION ndcg@10 (the test part is only read for the
chosen variant's numbers); uplift % = 100 · (distilled / vanilla − 1) of the test means; the
paired test compares, row by row on the test set, each row's metric averaged over the seeds both
variants share (scipy.stats.ttest_rel and wilcoxon, two-sided; rows with NaN dropped).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["load_runs", "paired_test", "report", "summarise"]

METRICS = ("ndcg@10", "recall@10")


def load_runs(out_dir: str | os.PathLike) -> dict[str, dict[int, dict[str, Any]]]:
    """``{variant: {seed: run record}}`` from ``out_dir/runs/*.json``."""
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    folder = Path(out_dir) / "runs"
    for p in sorted(folder.glob("*.json")):
        rec = json.loads(p.read_text())
        rec["_dir"] = str(folder)
        runs.setdefault(rec["variant"], {})[int(rec["seed"])] = rec
    if not runs:
        raise FileNotFoundError(f"{folder}: no run JSONs; run run_experiment first")
    return runs


def per_row(rec: dict[str, Any], metric: str) -> np.ndarray:
    """The per-test-row metric array saved beside a run JSON."""
    return np.load(Path(rec["_dir"]) / rec["per_row"][metric])


def _mean_std(x: list[float]) -> tuple[float, float]:
    a = np.asarray(x, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else float("nan")


def paired_test(a: dict[int, dict], b: dict[int, dict], metric: str) -> dict[str, Any]:
    """Paired test of variant ``b`` vs ``a`` on the test rows: per-row ``metric`` averaged over
    the shared seeds, then ttest_rel(b, a) and wilcoxon(b, a) p-values (NaN when undefined)."""
    from scipy import stats

    seeds = sorted(set(a) & set(b))
    if not seeds:
        return {"seeds": [], "n_rows": 0, "ttest_p": float("nan"), "wilcoxon_p": float("nan")}
    xa = np.mean([per_row(a[s], metric) for s in seeds], axis=0)
    xb = np.mean([per_row(b[s], metric) for s in seeds], axis=0)
    ok = np.isfinite(xa) & np.isfinite(xb)
    xa, xb = xa[ok], xb[ok]
    diff = xb - xa
    t_p = w_p = float("nan")
    if len(diff) > 1 and np.any(diff != 0):
        t_p = float(stats.ttest_rel(xb, xa).pvalue)
        w_p = float(stats.wilcoxon(xb, xa).pvalue)
    return {"seeds": seeds, "n_rows": int(len(diff)), "mean_diff": float(diff.mean()) if len(diff) else float("nan"),
            "ttest_p": t_p, "wilcoxon_p": w_p}


def summarise(runs: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std over seeds of test and validation metrics and timings of one variant."""
    recs = [runs[s] for s in sorted(runs)]
    out: dict[str, Any] = {"seeds": sorted(runs), "kind": recs[0]["kind"], "distill": recs[0]["distill"]}
    for m in METRICS:
        out[f"test_{m}"] = _mean_std([r["test"][m] for r in recs])
        out[f"valid_{m}"] = _mean_std([r["valid"].get(m, float("nan")) for r in recs])
    out["train_seconds_per_epoch"] = _mean_std([r["timing"]["train_seconds_per_epoch"] for r in recs])
    out["test_inference_seconds"] = _mean_std([r["timing"]["test_inference_seconds"] for r in recs])
    return out


def _pm(ms: tuple[float, float], digits: int = 4) -> str:
    m, s = ms
    return f"{m:.{digits}f} ± {s:.{digits}f}" if s == s else f"{m:.{digits}f}"


def _p(x: float) -> str:
    return "n/a" if x != x else f"{x:.3g}"


def _uplift(new: float, base: float) -> float:
    return 100.0 * (new / base - 1.0) if base else float("nan")


def _figure3(runs, best: str | None, path: Path) -> bool:
    """Mean distillation loss per epoch (vanilla measured, best distilled trained) -> PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    drew = False
    for variant, label in (("vanilla", "vanilla (measured only)"), (best, f"{best} (distilled)")):
        if variant is None or variant not in runs:
            continue
        curves = [[r.get("distill_loss", np.nan) for r in rec["history"]] for rec in runs[variant].values()]
        n = min(len(c) for c in curves)
        if n == 0:
            continue
        y = np.nanmean(np.array([c[:n] for c in curves], dtype=float), axis=0)
        ax.plot(np.arange(n), y, marker="o", label=label)
        drew = True
    if best is not None and best in runs:
        ep = next(iter(runs[best].values()))["distill"].get("epochs")
        if ep is not None:
            ax.axvline(ep - 0.5, color="green", linestyle="--", label="stage switch")
    ax.set_xlabel("epoch")
    ax.set_ylabel("L_distill")
    ax.set_title("Figure 3: distillation loss per epoch (mean over seeds)")
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return drew


def report(out_dir: str | os.PathLike) -> dict[str, Any]:
    """Write ``report.md``, ``report.json`` and ``figure3.png`` into ``out_dir``; returns the JSON."""
    out = Path(out_dir)
    runs = load_runs(out)
    if "vanilla" not in runs:
        raise ValueError(f"{out}/runs: no vanilla runs to compare against")
    summ = {v: summarise(r) for v, r in runs.items()}
    distilled = [v for v in summ if summ[v]["kind"] == "distill"]
    best = max(distilled, key=lambda v: summ[v]["valid_ndcg@10"][0]) if distilled else None
    van = summ["vanilla"]
    res: dict[str, Any] = {"variants": summ, "best_distilled": best, "selection": "mean validation ndcg@10"}
    md = [f"# Experiment report: {out.name}", "",
          "Seeds per variant: " + ", ".join(f"{v}={len(s['seeds'])}" for v, s in summ.items()) + ". "
          "Values are mean ± sample std over seeds on the TEST part; the distilled variant is "
          "chosen by mean validation NDCG@10. p-values: paired over test rows (per-row metric averaged over seeds).", ""]

    def compare(v: str) -> dict[str, Any]:
        row: dict[str, Any] = {"variant": v}
        for m in METRICS:
            row[m] = {"mean": summ[v][f"test_{m}"][0], "std": summ[v][f"test_{m}"][1],
                      "uplift_pct": _uplift(summ[v][f"test_{m}"][0], van[f"test_{m}"][0]),
                      **paired_test(runs["vanilla"], runs[v], m)}
        return row

    # Table 2
    md += ["## Table 2: vanilla vs distilled (test)", "",
           "| variant | NDCG@10 | Recall@10 | uplift NDCG@10 | uplift Recall@10 | p t-test (NDCG / Recall) | p Wilcoxon (NDCG / Recall) |",
           "|---|---|---|---|---|---|---|",
           f"| vanilla | {_pm(van['test_ndcg@10'])} | {_pm(van['test_recall@10'])} | | | | |"]
    if best is not None:
        t2 = compare(best)
        res["table2"] = t2
        n, r = t2["ndcg@10"], t2["recall@10"]
        md.append(f"| {best} | {_pm(summ[best]['test_ndcg@10'])} | {_pm(summ[best]['test_recall@10'])} | "
                  f"{n['uplift_pct']:+.2f}% | {r['uplift_pct']:+.2f}% | {_p(n['ttest_p'])} / {_p(r['ttest_p'])} | "
                  f"{_p(n['wilcoxon_p'])} / {_p(r['wilcoxon_p'])} |")

    # Controls
    controls = [v for v in summ if summ[v]["kind"] not in ("vanilla", "distill")]
    if controls:
        res["controls"] = [compare(v) for v in controls]
        for c in res["controls"]:
            # Does the real profile beat the control? (distilled vs control, paired over test rows)
            c["distilled_vs_control"] = paired_test(runs[c["variant"]], runs[best], "ndcg@10") if best else None
        md += ["", "## Controls (test; p-values vs vanilla, and of the distilled variant vs the control)", "",
               "| control | NDCG@10 | Recall@10 | uplift NDCG@10 | p t-test NDCG@10 | p Wilcoxon NDCG@10 | p t-test distilled vs control |",
               "|---|---|---|---|---|---|---|"]
        for c in res["controls"]:
            v, n, d = c["variant"], c["ndcg@10"], c["distilled_vs_control"]
            md.append(f"| {v} | {_pm(summ[v]['test_ndcg@10'])} | {_pm(summ[v]['test_recall@10'])} | "
                      f"{n['uplift_pct']:+.2f}% | {_p(n['ttest_p'])} | {_p(n['wilcoxon_p'])} | "
                      f"{_p(d['ttest_p']) if d else 'n/a'} |")

    # Table 3: alpha x beta grid
    if distilled:
        cells: dict[tuple[float, bool], str] = {}
        for v in distilled:  # several variants per cell (other grid keys): the best by validation
            d = summ[v]["distill"]
            key = (float(d["alpha"]), bool(d["dynamic_beta"]))
            if key not in cells or summ[v]["valid_ndcg@10"][0] > summ[cells[key]]["valid_ndcg@10"][0]:
                cells[key] = v
        alphas = sorted({a for a, _ in cells})
        res["table3"] = [{"alpha": a, "dynamic_beta": b, "variant": v, "test_ndcg@10": summ[v]["test_ndcg@10"]}
                         for (a, b), v in sorted(cells.items())]
        md += ["", "## Table 3: α × β grid (test NDCG@10)", "",
               "| dynamic β | " + " | ".join(f"α={a:g}" for a in alphas) + " |", "|---" * (len(alphas) + 1) + "|"]
        for b in sorted({b for _, b in cells}):
            md.append(f"| {'yes' if b else 'no'} | " + " | ".join(
                _pm(summ[cells[(a, b)]]["test_ndcg@10"]) if (a, b) in cells else "" for a in alphas) + " |")

    # Table 5: timings
    md += ["", "## Table 5: training seconds per epoch and test inference seconds", "",
           "| variant | train s/epoch | test inference s | train overhead |", "|---|---|---|---|"]
    t5 = []
    for v in ["vanilla"] + ([best] if best else []):
        tr, inf = summ[v]["train_seconds_per_epoch"], summ[v]["test_inference_seconds"]
        over = _uplift(tr[0], van["train_seconds_per_epoch"][0])
        t5.append({"variant": v, "train_seconds_per_epoch": tr, "test_inference_seconds": inf, "overhead_pct": over})
        md.append(f"| {v} | {_pm(tr, 3)} | {_pm(inf, 3)} | {'' if v == 'vanilla' else f'{over:+.1f}%'} |")
    res["table5"] = t5
    md.append("")
    md.append("Vanilla runs also measure L_distill (no gradient) each batch for Figure 3, which adds a little to their time.")

    # All variants
    md += ["", "## All variants", "", "| variant | kind | seeds | valid NDCG@10 | test NDCG@10 | test Recall@10 |",
           "|---|---|---|---|---|---|"]
    for v, s in summ.items():
        md.append(f"| {v} | {s['kind']} | {len(s['seeds'])} | {_pm(s['valid_ndcg@10'])} | {_pm(s['test_ndcg@10'])} | "
                  f"{_pm(s['test_recall@10'])} |")

    # Figure 3
    fig = out / "figure3.png"
    if _figure3(runs, best, fig):
        md += ["", "## Figure 3: distillation loss per epoch", "", f"![Figure 3]({fig.name})",
               "", "The dashed line marks the switch from the distillation stage to plain training."]
        res["figure3"] = fig.name
    md.append("")
    for name, text in (("report.md", "\n".join(md)), ("report.json", json.dumps(res, indent=1))):
        tmp = out / f".{name}.tmp{os.getpid()}"
        tmp.write_text(text)
        os.replace(tmp, out / name)
    return res
