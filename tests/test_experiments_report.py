"""The run record (strict JSON round trip) and the report's numbers on a hand-computed case:
summarise() is pure, the renderers only present its Summary, report() only loads and writes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from seqdistill import _io
from seqdistill.errors import DataError
from seqdistill.experiments import RunRecord, RunResult, load_runs, render_figure, render_markdown, report, summarise
from seqdistill.experiments.records import DatasetSummary, Timing

ROWS = 3


def record(
    variant: str,
    kind: str,
    seed: int,
    *,
    test: tuple[float, float],
    valid: float,
    secs: float,
    losses: list[float],
    alpha: float = 0.4,
    n_rows: int = ROWS,
) -> RunRecord:
    run = f"{variant}__seed{seed}"
    return RunRecord(
        run=run,
        variant=variant,
        kind=kind,
        seed=seed,
        settings={"seed": seed},
        distill_trained=kind != "vanilla",
        distill={"alpha": alpha, "dynamic_beta": True, "epochs": 1},
        model={"hidden": 8},
        train={"seed": seed},
        profiles={"source": "stats"},
        dataset=DatasetSummary("hand", 3, 5, n_rows, "fp", {"name": "hand"}),
        history=[{"epoch": e, "distill_loss": x} for e, x in enumerate(losses)],
        best_epoch=0,
        valid={"ndcg@10": valid},
        test={"ndcg@10": test[0], "recall@10": test[1]},
        per_row={"ndcg@10": f"{run}.ndcg10.npy", "recall@10": f"{run}.recall10.npy"},
        timing=Timing(secs, 2 * secs, len(losses), 0.5),
        device="cpu",
        torch_threads=1,
    )


# variant -> seed -> (record, per-row ndcg, per-row recall); the numbers below are worked by hand
HAND = {
    "vanilla": {
        0: (
            record("vanilla", "vanilla", 0, test=(0.2, 0.5), valid=0.1, secs=1.0, losses=[1.0, 3.0]),
            [0.0, 0.2, 0.4],
            [0.0, 1.0, 1.0],
        ),
        1: (
            record("vanilla", "vanilla", 1, test=(0.4, 0.7), valid=0.1, secs=3.0, losses=[3.0]),
            [0.2, 0.4, 0.6],
            [0.0, 1.0, 1.0],
        ),
    },
    "distill_a0.4_b1": {
        0: (
            record("distill_a0.4_b1", "distill", 0, test=(0.3, 0.6), valid=0.3, secs=2.5, losses=[2.0, 1.0]),
            [0.1, 0.4, 0.7],
            [0.0, 1.0, 1.0],
        ),
        1: (
            record("distill_a0.4_b1", "distill", 1, test=(0.5, 0.9), valid=0.5, secs=2.5, losses=[4.0, 3.0]),
            [0.3, 0.6, 0.9],
            [0.0, 1.0, 1.0],
        ),
    },
    "distill_a0.8_b1": {  # best on test, worse on validation: must not be chosen
        0: (
            record("distill_a0.8_b1", "distill", 0, test=(0.9, 0.9), valid=0.2, secs=2.0, losses=[1.0], alpha=0.8),
            [0.9, 0.9, 0.9],
            [1.0, 1.0, 1.0],
        ),
        1: (
            record("distill_a0.8_b1", "distill", 1, test=(0.9, 0.9), valid=0.2, secs=2.0, losses=[1.0], alpha=0.8),
            [0.9, 0.9, 0.9],
            [1.0, 1.0, 1.0],
        ),
    },
    "control_shuffled": {
        0: (
            record("control_shuffled", "shuffled", 0, test=(0.25, 0.6), valid=0.1, secs=2.0, losses=[1.0]),
            [0.1, 0.3, 0.5],
            [0.0, 1.0, 1.0],
        ),
        1: (
            record("control_shuffled", "shuffled", 1, test=(0.35, 0.6), valid=0.1, secs=2.0, losses=[1.0]),
            [0.1, 0.3, 0.5],
            [0.0, 1.0, 1.0],
        ),
    },
}
# Student's t with 2 degrees of freedom: two-sided p = 1 - t / sqrt(t^2 + 2). Per-row differences
# 0.1, 0.2, 0.3 give t = 0.2 / (0.1 / sqrt(3)) = 2 sqrt(3), so p = 1 - sqrt(12 / 14) = 1 - sqrt(6 / 7).
P_T = 1 - math.sqrt(6 / 7)
# Wilcoxon signed-rank, 3 positive distinct differences: W+ = 6, the largest of 2^3 equally likely
# sign patterns, two-sided exact p = 2 / 8.
P_W = 0.25
SD = math.sqrt(0.02)  # sample std of two values 0.2 apart


def hand_runs() -> dict[str, dict[int, RunResult]]:
    return {
        v: {
            s: RunResult(rec, {"ndcg@10": np.array(nd), "recall@10": np.array(rc)})
            for s, (rec, nd, rc) in seeds.items()
        }
        for v, seeds in HAND.items()
    }


def write_hand_folder(folder):
    """The hand runs as files. A record's test metrics are the means of its per-row files (as a
    run writes them; the in-memory HAND records differ, which summarise() does not check)."""
    from dataclasses import replace

    for seeds in HAND.values():
        for rec, nd, rc in seeds.values():
            rec = replace(rec, test={"ndcg@10": float(np.mean(nd)), "recall@10": float(np.mean(rc))})
            rec.write(folder / "runs" / f"{rec.run}.json")
            _io.write_npy(folder / "runs" / rec.per_row["ndcg@10"], np.array(nd, dtype=np.float64))
            _io.write_npy(folder / "runs" / rec.per_row["recall@10"], np.array(rc, dtype=np.float64))


def test_summarise_hand_computed_case():
    s = summarise(hand_runs())
    assert s.best_distilled == "distill_a0.4_b1"  # by validation (0.4 vs 0.2), not by test (0.4 vs 0.9)
    van, best = s.variants["vanilla"], s.variants["distill_a0.4_b1"]
    assert (van.test["ndcg@10"].mean, van.test["ndcg@10"].std) == pytest.approx((0.3, SD))
    assert (best.test["recall@10"].mean, best.test["recall@10"].std) == pytest.approx((0.75, math.sqrt(0.045)))
    t2 = s.table2
    assert t2.variant == "distill_a0.4_b1"
    assert t2.metrics["ndcg@10"].uplift_pct == pytest.approx(100 * (0.4 / 0.3 - 1))
    assert t2.metrics["recall@10"].uplift_pct == pytest.approx(25.0)
    nd = t2.metrics["ndcg@10"].paired
    assert nd.seeds == (0, 1) and nd.n_rows == 3 and nd.mean_diff == pytest.approx(0.2)
    assert nd.ttest_p == pytest.approx(P_T) and nd.wilcoxon_p == pytest.approx(P_W)
    assert math.isnan(t2.metrics["recall@10"].paired.ttest_p)  # identical rows: no test
    (ctrl,) = s.controls
    assert ctrl.variant == "control_shuffled" and ctrl.metrics["ndcg@10"].uplift_pct == pytest.approx(0.0, abs=1e-9)
    assert ctrl.distilled_vs_control.ttest_p == pytest.approx(P_T)  # best - control rows: 0.1, 0.2, 0.3
    assert ctrl.metrics["ndcg@10"].paired.mean_diff == pytest.approx(0.0, abs=1e-12)
    cells = {(c.alpha, c.dynamic_beta): (c.variant, c.test_ndcg.mean) for c in s.table3}
    assert cells == {
        (0.4, True): ("distill_a0.4_b1", pytest.approx(0.4)),
        (0.8, True): ("distill_a0.8_b1", pytest.approx(0.9)),
    }
    rows = {r.variant: r for r in s.table5}
    assert set(rows) == {"vanilla", "distill_a0.4_b1"}
    assert rows["vanilla"].train_seconds_per_epoch.mean == pytest.approx(2.0)
    assert rows["distill_a0.4_b1"].overhead_pct == pytest.approx(25.0)
    curves = {c.label: c.values for c in s.curves}
    assert curves == {"vanilla (measured only)": (2.0,), "distill_a0.4_b1 (distilled)": (3.0, 2.0)}
    assert s.stage_switch == 1


def test_summarise_refuses_without_vanilla_and_mismatched_rows():
    runs = hand_runs()
    with pytest.raises(DataError, match="no vanilla runs"):
        summarise({k: v for k, v in runs.items() if k != "vanilla"})
    short = RunResult(runs["vanilla"][0].record, {"ndcg@10": np.zeros(2), "recall@10": np.zeros(2)})
    runs["vanilla"][0] = short
    with pytest.raises(DataError, match="not run on the same test rows"):
        summarise(runs)


def test_render_markdown_presents_the_summary():
    md = render_markdown(summarise(hand_runs()), "hand", figure="figure3.png")
    assert md.startswith("# Experiment report: hand\n")
    assert f"| vanilla | 0.3000 ± {SD:.4f} | 0.6000 ± {SD:.4f} | | | | |" in md
    assert (
        f"| distill_a0.4_b1 | 0.4000 ± {SD:.4f} | 0.7500 ± {math.sqrt(0.045):.4f} | +33.33% | +25.00% | "
        f"{P_T:.3g} / n/a | 0.25 / n/a |"
    ) in md
    assert f"| control_shuffled | 0.3000 ± {math.sqrt(0.005):.4f} |" in md
    assert "| α=0.4 | α=0.8 |" in md and "| distill_a0.4_b1 | 2.500 ± 0.000 | 0.500 ± 0.000 | +25.0% |" in md
    assert "![Figure 3](figure3.png)" in md
    assert "![Figure 3]" not in render_markdown(summarise(hand_runs()), "hand")


def test_report_loads_writes_and_matches_summarise(tmp_path):
    write_hand_folder(tmp_path)
    res = report(tmp_path)
    expected = summarise(load_runs(tmp_path)).to_json()
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved.pop("figure3") == "figure3.png" and res.pop("figure3") == "figure3.png"
    assert json.dumps(saved, sort_keys=True) == json.dumps(json.loads(json.dumps(expected)), sort_keys=True)
    assert saved["table2"]["ndcg@10"]["ttest_p"] == pytest.approx(P_T)
    assert saved["variants"]["vanilla"]["test_ndcg@10"] == pytest.approx([0.3, SD])
    assert (tmp_path / "figure3.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Table 2" in (tmp_path / "report.md").read_text()
    assert not [p for p in tmp_path.iterdir() if ".sdtmp-" in p.name]


def test_render_figure_writes_nothing_without_curves(tmp_path):
    from dataclasses import replace

    s = replace(summarise(hand_runs()), curves=())
    assert render_figure(s, tmp_path / "f.png") is False and not (tmp_path / "f.png").exists()


# --------------------------------------------------------------------------- run records
def test_run_record_round_trips_through_json(tmp_path):
    rec = HAND["vanilla"][0][0]
    path = rec.write(tmp_path / f"{rec.run}.json")
    assert RunRecord.from_json(path) == rec
    assert RunRecord.from_dict(json.loads(path.read_text())) == rec


@pytest.mark.parametrize(
    "change,words",
    [
        (lambda d: d.pop("settings"), ["missing keys ['settings']"]),
        (lambda d: d.update(extra=1), ["unknown keys ['extra']"]),
        (lambda d: d["timing"].pop("epochs_run"), ["timing", "epochs_run"]),
        (lambda d: d.update(seed="0"), ["seed = '0'", "an integer"]),
        (lambda d: d.update(seed=True), ["seed = True"]),
        (lambda d: d.update(kind="oracle"), ["kind = 'oracle'"]),
        (lambda d: d.update(test=[0.1]), ["test = [0.1]"]),
        (lambda d: d["per_row"].update({"ndcg@10": "../../etc/x.npy"}), ["per_row ndcg@10", "../../etc/x.npy"]),
        (lambda d: d["per_row"].update({"ndcg@10": "a/b.npy"}), ["per_row ndcg@10"]),
        (lambda d: d.update(run="other__seed0"), ["does not match the file name"]),
    ],
)
def test_run_record_refuses_what_it_did_not_write(tmp_path, change, words):
    rec = HAND["vanilla"][0][0]
    d = json.loads(json.dumps(rec.to_dict()))
    change(d)
    path = tmp_path / f"{rec.run}.json"
    path.write_text(json.dumps(d))
    with pytest.raises(DataError) as err:
        RunRecord.from_json(path)
    msg = str(err.value)
    assert msg.startswith(str(path)) and "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_load_runs_refuses_bad_folders(tmp_path):
    with pytest.raises(DataError, match="no finished runs"):
        load_runs(tmp_path)
    write_hand_folder(tmp_path)
    (tmp_path / "runs" / "vanilla__seed0.json").write_text("{not json")
    with pytest.raises(DataError, match=r"vanilla__seed0\.json: not a readable run record"):
        load_runs(tmp_path)
    write_hand_folder(tmp_path)
    _io.write_npy(tmp_path / "runs" / "vanilla__seed0.ndcg10.npy", np.zeros(5))
    with pytest.raises(DataError, match=r"vanilla__seed0\.ndcg10\.npy: expected 3 floats"):
        load_runs(tmp_path)
    # A record edited after the run (or per-row files swapped between runs) disagrees with itself.
    write_hand_folder(tmp_path)
    path = tmp_path / "runs" / "vanilla__seed0.json"
    d = json.loads(path.read_text())
    d["test"]["ndcg@10"] = 7.5
    path.write_text(json.dumps(d))
    with pytest.raises(
        DataError,
        match=r"vanilla__seed0\.ndcg10\.npy: the per-row ndcg@10 of run vanilla__seed0 average 0\.2, but vanilla__seed0\.json says 7\.5",
    ):
        load_runs(tmp_path)
    write_hand_folder(tmp_path)
    runs = tmp_path / "runs"
    (runs / "vanilla__seed0.recall10.npy").write_bytes((runs / "control_shuffled__seed1.recall10.npy").read_bytes())
    load_runs(tmp_path)  # the same per-row recall (0, 1, 1): nothing to tell
    (runs / "vanilla__seed0.ndcg10.npy").write_bytes((runs / "distill_a0.8_b1__seed0.ndcg10.npy").read_bytes())
    with pytest.raises(DataError, match=r"vanilla__seed0\.ndcg10\.npy: .* average 0\.9"):
        load_runs(tmp_path)
