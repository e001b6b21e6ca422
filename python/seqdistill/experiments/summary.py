"""The report's numbers, computed from finished runs by pure functions (no files, no plotting).

Statistics: mean ± sample std (ddof=1) over seeds; the best distilled variant is chosen by mean
VALIDATION ndcg@10 (the test part is only read for the chosen variant's numbers); uplift % =
100 · (distilled / vanilla − 1) of the test means; the paired test compares, row by row on the
test set, each row's metric averaged over the seeds both variants share (scipy.stats.ttest_rel and
wilcoxon, two-sided; rows with NaN dropped; NaN when every difference is zero).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seqdistill.errors import DataError

from .records import RunRecord

__all__ = [
    "METRICS",
    "Comparison",
    "Curve",
    "GridCell",
    "MeanStd",
    "MetricComparison",
    "PairedTest",
    "RunResult",
    "Summary",
    "TimingRow",
    "VariantSummary",
    "paired_test",
    "summarise",
]

METRICS = ("ndcg@10", "recall@10")
SELECTION = "mean validation ndcg@10"


@dataclass(frozen=True)
class RunResult:
    """A finished run as the report needs it: its record and each test row's metrics."""

    record: RunRecord
    per_row: Mapping[str, np.ndarray]


Runs = Mapping[str, Mapping[int, RunResult]]  # variant -> seed -> run


@dataclass(frozen=True)
class MeanStd:
    """Mean and sample standard deviation (NaN with one value)."""

    mean: float
    std: float

    @classmethod
    def of(cls, values: list[float | None]) -> MeanStd:
        a = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
        return cls(float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else math.nan)

    def to_json(self) -> list[float]:
        return [self.mean, self.std]


@dataclass(frozen=True)
class VariantSummary:
    """One variant over its seeds."""

    variant: str
    kind: str
    seeds: tuple[int, ...]
    distill: dict[str, Any]
    test: dict[str, MeanStd]
    valid: dict[str, MeanStd]
    train_seconds_per_epoch: MeanStd
    test_inference_seconds: MeanStd

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seeds": list(self.seeds), "kind": self.kind, "distill": self.distill}
        for m in METRICS:
            out[f"test_{m}"] = self.test[m].to_json()
            out[f"valid_{m}"] = self.valid[m].to_json()
        out["train_seconds_per_epoch"] = self.train_seconds_per_epoch.to_json()
        out["test_inference_seconds"] = self.test_inference_seconds.to_json()
        return out


@dataclass(frozen=True)
class PairedTest:
    """Variant b vs a over the test rows: seeds both share, rows compared, mean(b − a), p-values."""

    seeds: tuple[int, ...]
    n_rows: int
    mean_diff: float
    ttest_p: float
    wilcoxon_p: float

    def to_json(self) -> dict[str, Any]:
        return {
            "seeds": list(self.seeds),
            "n_rows": self.n_rows,
            "mean_diff": self.mean_diff,
            "ttest_p": self.ttest_p,
            "wilcoxon_p": self.wilcoxon_p,
        }


@dataclass(frozen=True)
class MetricComparison:
    """One metric of a variant against vanilla: test mean ± std, uplift %, paired test."""

    mean: float
    std: float
    uplift_pct: float
    paired: PairedTest

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "uplift_pct": self.uplift_pct, **self.paired.to_json()}


@dataclass(frozen=True)
class Comparison:
    """A variant against vanilla (Table 2, controls); for a control also the best distilled
    variant against it (does the real profile beat the control?)."""

    variant: str
    metrics: dict[str, MetricComparison]
    distilled_vs_control: PairedTest | None = None

    def to_json(self, control: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"variant": self.variant, **{m: c.to_json() for m, c in self.metrics.items()}}
        if control:
            out["distilled_vs_control"] = self.distilled_vs_control.to_json() if self.distilled_vs_control else None
        return out


@dataclass(frozen=True)
class GridCell:
    """Table 3: the (alpha, dynamic beta) point's test NDCG@10 (best by validation if other keys vary)."""

    alpha: float
    dynamic_beta: bool
    variant: str
    test_ndcg: MeanStd

    def to_json(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "dynamic_beta": self.dynamic_beta,
            "variant": self.variant,
            "test_ndcg@10": self.test_ndcg.to_json(),
        }


@dataclass(frozen=True)
class TimingRow:
    """Table 5: seconds per training epoch, test inference seconds, training overhead vs vanilla (%)."""

    variant: str
    train_seconds_per_epoch: MeanStd
    test_inference_seconds: MeanStd
    overhead_pct: float

    def to_json(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "train_seconds_per_epoch": self.train_seconds_per_epoch.to_json(),
            "test_inference_seconds": self.test_inference_seconds.to_json(),
            "overhead_pct": self.overhead_pct,
        }


@dataclass(frozen=True)
class Curve:
    """Figure 3: mean L_distill per epoch over seeds (epochs all seeds reached)."""

    label: str
    values: tuple[float, ...]


@dataclass(frozen=True)
class Summary:
    """Everything the report shows; :meth:`to_json` is ``report.json``."""

    variants: dict[str, VariantSummary]
    best_distilled: str | None
    table2: Comparison | None
    controls: tuple[Comparison, ...]
    table3: tuple[GridCell, ...]
    table5: tuple[TimingRow, ...]
    curves: tuple[Curve, ...] = ()
    stage_switch: int | None = None
    selection: str = field(default=SELECTION)

    @property
    def vanilla(self) -> VariantSummary:
        return self.variants["vanilla"]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "variants": {v: s.to_json() for v, s in self.variants.items()},
            "best_distilled": self.best_distilled,
            "selection": self.selection,
        }
        if self.table2 is not None:
            out["table2"] = self.table2.to_json()
        if self.controls:
            out["controls"] = [c.to_json(control=True) for c in self.controls]
        if self.table3:
            out["table3"] = [c.to_json() for c in self.table3]
        out["table5"] = [r.to_json() for r in self.table5]
        return out


# ----------------------------------------------------------------------------- statistics
def uplift(new: float, base: float) -> float:
    """100 · (new / base − 1); NaN when base is 0."""
    return 100.0 * (new / base - 1.0) if base else math.nan


def paired_test(a: Mapping[int, RunResult], b: Mapping[int, RunResult], metric: str) -> PairedTest:
    """Paired test of variant ``b`` vs ``a`` on the test rows: per-row ``metric`` averaged over
    the shared seeds, then ttest_rel(b, a) and wilcoxon(b, a) p-values (NaN when undefined)."""
    from scipy import stats

    seeds = tuple(sorted(set(a) & set(b)))
    if not seeds:
        return PairedTest((), 0, math.nan, math.nan, math.nan)
    rows = {len(r.per_row[metric]) for r in [*(a[s] for s in seeds), *(b[s] for s in seeds)]}
    if len(rows) > 1:
        names = sorted({r.record.run for r in (*a.values(), *b.values())})
        raise DataError(
            f"runs {names[:4]}: {metric} per-row arrays differ in length {sorted(rows)}; "
            "they were not run on the same test rows"
        )
    xa = np.mean([a[s].per_row[metric] for s in seeds], axis=0)
    xb = np.mean([b[s].per_row[metric] for s in seeds], axis=0)
    ok = np.isfinite(xa) & np.isfinite(xb)
    xa, xb = xa[ok], xb[ok]
    diff = xb - xa
    t_p = w_p = math.nan
    if len(diff) > 1 and np.any(diff != 0):
        t_p = float(stats.ttest_rel(xb, xa).pvalue)
        w_p = float(stats.wilcoxon(xb, xa).pvalue)
    return PairedTest(seeds, int(len(diff)), float(diff.mean()) if len(diff) else math.nan, t_p, w_p)


def _variant(variant: str, runs: Mapping[int, RunResult]) -> VariantSummary:
    recs = [runs[s].record for s in sorted(runs)]
    return VariantSummary(
        variant=variant,
        kind=recs[0].kind,
        seeds=tuple(sorted(runs)),
        distill=dict(recs[0].distill),
        test={m: MeanStd.of([r.test[m] for r in recs]) for m in METRICS},
        valid={m: MeanStd.of([r.valid.get(m) for r in recs]) for m in METRICS},
        train_seconds_per_epoch=MeanStd.of([r.timing.train_seconds_per_epoch for r in recs]),
        test_inference_seconds=MeanStd.of([r.timing.test_inference_seconds for r in recs]),
    )


def _compare(runs: Runs, summ: dict[str, VariantSummary], v: str, best: str | None = None) -> Comparison:
    van = summ["vanilla"]
    metrics = {
        m: MetricComparison(
            summ[v].test[m].mean,
            summ[v].test[m].std,
            uplift(summ[v].test[m].mean, van.test[m].mean),
            paired_test(runs["vanilla"], runs[v], m),
        )
        for m in METRICS
    }
    vs = paired_test(runs[v], runs[best], "ndcg@10") if best is not None and v != best else None
    return Comparison(v, metrics, vs)


def _grid(summ: dict[str, VariantSummary], distilled: list[str]) -> tuple[GridCell, ...]:
    """One cell per (alpha, dynamic beta); several variants in a cell: the best by validation."""
    cells: dict[tuple[float, bool], str] = {}
    for v in distilled:
        d = summ[v].distill
        key = (float(d["alpha"]), bool(d["dynamic_beta"]))
        if key not in cells or summ[v].valid["ndcg@10"].mean > summ[cells[key]].valid["ndcg@10"].mean:
            cells[key] = v
    return tuple(GridCell(a, b, v, summ[v].test["ndcg@10"]) for (a, b), v in sorted(cells.items()))


def _timings(summ: dict[str, VariantSummary], best: str | None) -> tuple[TimingRow, ...]:
    base = summ["vanilla"].train_seconds_per_epoch.mean
    return tuple(
        TimingRow(
            v,
            summ[v].train_seconds_per_epoch,
            summ[v].test_inference_seconds,
            uplift(summ[v].train_seconds_per_epoch.mean, base),
        )
        for v in ["vanilla"] + ([best] if best else [])
    )


def _curves(runs: Runs, best: str | None) -> tuple[Curve, ...]:
    """Mean L_distill per epoch: vanilla (measured only) and the best distilled variant (trained)."""
    out = []
    for variant, label in (("vanilla", "vanilla (measured only)"), (best, f"{best} (distilled)")):
        if variant is None or variant not in runs:
            continue
        curves = [[r.get("distill_loss", math.nan) for r in run.record.history] for run in runs[variant].values()]
        n = min(len(c) for c in curves)
        if n == 0:
            continue
        y = np.array([c[:n] for c in curves], dtype=float)
        with np.errstate(all="ignore"):
            mean = [float(np.nanmean(col)) if np.isfinite(col).any() else math.nan for col in y.T]
        out.append(Curve(label, tuple(mean)))
    return tuple(out)


def summarise(runs: Runs) -> Summary:
    """Every number of the report from ``{variant: {seed: RunResult}}`` (see the module doc)."""
    if "vanilla" not in runs:
        raise DataError(f"no vanilla runs to compare against (variants: {sorted(runs)})")
    summ = {v: _variant(v, r) for v, r in runs.items() if r}
    distilled = [v for v in summ if summ[v].kind == "distill"]
    best = max(distilled, key=lambda v: summ[v].valid["ndcg@10"].mean) if distilled else None
    controls = [v for v in summ if summ[v].kind not in ("vanilla", "distill")]
    return Summary(
        variants=summ,
        best_distilled=best,
        table2=_compare(runs, summ, best) if best else None,
        controls=tuple(_compare(runs, summ, v, best) for v in controls),
        table3=_grid(summ, distilled),
        table5=_timings(summ, best),
        curves=_curves(runs, best),
        stage_switch=summ[best].distill.get("epochs") if best else None,
    )
