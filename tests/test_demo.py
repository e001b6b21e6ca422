"""`seqdistill demo` end to end on a tiny budget (statistics profiles, no LLM), through the CLI."""

from __future__ import annotations

import json

from seqdistill.cli import main


def test_demo_runs_end_to_end_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--users", "300", "--items", "80", "--llm-users", "0", "--epochs", "2"]
    assert main(args) == 0
    runs = sorted(p.name for p in (out / "runs").glob("*.json"))
    assert runs == ["control_shuffled__seed0.json", "distill__seed0.json", "vanilla__seed0.json"]
    md = (out / "report.md").read_text()
    assert "Table 2" in md and "control_shuffled" in md
    rec = json.loads((out / "runs" / "distill__seed0.json").read_text())
    assert rec["distill"]["alpha"] == 0.5 and rec["distill"]["epochs"] == 1
    # The vanilla run measured L_distill every epoch without training on it.
    van = json.loads((out / "runs" / "vanilla__seed0.json").read_text())
    assert all(r["distill_active"] == 0.0 and r["distill_loss"] > 0 for r in van["history"])
    assert main(args) == 0  # a second call finds every run done
    assert "3 runs, 3 already done" in capsys.readouterr().out


def test_demo_refuses_too_few_llm_users(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--llm-users", "5"]) == 2
    assert "at least 33" in capsys.readouterr().err
