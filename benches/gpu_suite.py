"""The paper-scale ML-1M run in one command, for a GPU machine (issue #15, item 4).

    python benches/gpu_suite.py --out runs/gpu_suite --json benches/results/gpu_suite.json

Three steps, each a plain ``seqdistill`` command (printed before it runs), each resumable: run
the suite again after a crash and finished work is kept.

1. ``datasets prepare ml-1m`` with the ``ml1m_smollm`` preset's k-core and split;
2. ``profiles generate --backend smollm`` for every user (batched, bf16 on CUDA; ``--batch-size``),
   then ``profiles stats`` on the store (tokens, loop rate, invented items);
3. ``experiment`` with the ``ml1m_smollm`` preset (vanilla, the alpha/beta grid, the shuffled and
   statistics-profile controls, five seeds; ``--idgenrec`` adds the IDGenRec variant of Tables
   4 and 5), which writes its ``report.md`` / ``report.json``, the profile probe of every
   profile source included.

Writes one JSON (``OUT/gpu_suite.json`` and ``--json``): the bench rows of Table 5 (seconds per
training epoch and for ranking the test set, the distilled model and IDGenRec against vanilla
SASRec, ``ratio`` = vanilla / variant), the seconds of each step, the profile generation rate,
the store statistics, the probe and the experiment's report. ``--smoke`` runs the same steps on
ML-100K with the first 40 users profiled, hidden 16, one seed,
two epochs and one grid point: minutes on a CPU, to
check the suite before a GPU is spent on it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine  # noqa: E402

from seqdistill.experiments.config import load_preset  # noqa: E402


def run(cmd: list[str], log: dict[str, Any], step: str) -> float:
    """Runs one command (its output goes to the terminal) and records its seconds under ``step``."""
    print(f"\n$ {shlex.join(cmd)}", flush=True)
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    seconds = time.perf_counter() - t
    log.setdefault("steps", {})[step] = {"command": shlex.join(cmd), "seconds": round(seconds, 2)}
    return seconds


def output(cmd: list[str]) -> Any:
    print(f"\n$ {shlex.join(cmd)}", flush=True)
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def experiment_config(args: argparse.Namespace, store: Path) -> dict[str, Any]:
    """The ml1m_smollm preset, with the store of this suite and, for --smoke, the small settings."""
    d = load_preset("ml1m_smollm").to_dict()
    d["name"] = "gpu_suite_smoke" if args.smoke else "gpu_suite_ml1m"
    d["profiles"]["store"] = str(store.resolve())
    d["train"]["device"] = args.device
    if args.seeds:
        d["seeds"] = args.seeds
    if args.idgenrec:
        d["idgenrec"] = {}
    if args.smoke:
        d["dataset"] = {"name": "ml-100k"}
        d["seeds"] = [0]
        d["model"]["hidden"] = 16  # PCA to the hidden size needs at least that many profiled users
        d["train"].update(epochs=2, patience=2, min_epochs=1)
        d["distill"].update(epochs=1)
        d["distill"]["grid"] = {"alpha": [0.4], "dynamic_beta": [True]}
        if args.idgenrec:
            d["idgenrec"] = {"rounds": 1, "id_epochs": 1, "rec_epochs": 1}
    return d


def table5_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Bench rows from the report's Table 5: each variant's seconds per training epoch and for
    ranking the test set against vanilla SASRec's (means over seeds; ratio = vanilla / variant)."""
    timings = report.get("table5") or []
    base = next((t for t in timings if t["variant"] == "vanilla"), None)
    rows = []
    for t in timings if base is not None else []:
        if t["variant"] == "vanilla":
            continue
        for what, key in (
            ("training, seconds per epoch", "train_seconds_per_epoch"),
            ("inference, test set", "test_inference_seconds"),
        ):
            ours, theirs = t[key][0], base[key][0]  # [mean, std] over seeds
            rows.append(
                {
                    "case": f"Table 5, {what}: {t['variant']}",
                    "ours_s": ours,
                    "baseline": "vanilla SASRec, same settings",
                    "baseline_s": theirs,
                    "ratio": round(theirs / ours, 3) if ours else None,
                    "same_result": None,
                }
            )
    return rows


def write(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str))
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/gpu_suite", help="suite folder (resumed when it exists)")
    ap.add_argument("--json", default=None, help="also write the suite's JSON here")
    ap.add_argument("--device", default="auto", help="training device (auto: CUDA when there is one)")
    ap.add_argument("--batch-size", type=int, default=64, help="profiles per generation batch")
    ap.add_argument("--max-users", type=int, default=None, help="profile only the first N users")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="override the preset's five seeds")
    ap.add_argument("--workers", type=int, default=1, help="experiment runs at once (one GPU each, or CPU)")
    ap.add_argument("--idgenrec", action="store_true", help="add the IDGenRec variant (Tables 4 and 5)")
    ap.add_argument("--smoke", action="store_true", help="ML-100K, 40 users, 1 seed, 2 epochs: a check on a CPU")
    args = ap.parse_args()

    import torch

    if not args.smoke and not torch.cuda.is_available():
        sys.exit(
            "gpu_suite: no CUDA device here; the full suite is ~13 CPU-hours of training and ~20-25 of "
            "generation on this kind of machine. Run with --smoke to check it on a CPU."
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset, store, exp = out / "dataset", out / "profiles", out / "experiment"
    config = experiment_config(args, store)
    log: dict[str, Any] = {
        "suite": "smoke (ML-100K, first 40 users profiled)" if args.smoke else "ML-1M, paper scale",
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "config": config,
    }
    cli = [sys.executable, "-m", "seqdistill.cli"]

    # 1. The dataset the store and the experiment share (same k-core and split: same fingerprint).
    if not (dataset / "manifest.json").exists():
        split = [f"--split={k}={v}" for k, v in config["split"].items() if v is not None]
        k_core = [str(k) for k in config["k_core"]]
        run(
            [*cli, "datasets", "prepare", config["dataset"]["name"], str(dataset), "--k-core", *k_core, *split],
            log,
            "prepare",
        )

    # 2. SmolLM2 profiles for every user (or --max-users / 40 for --smoke), then the store's statistics.
    users = 40 if args.smoke else args.max_users
    gen = [*cli, "profiles", "generate", str(dataset), "--store", str(store), "--backend", "smollm"]
    gen += ["--batch-size", str(args.batch_size)] + ([] if users is None else ["--max-users", str(users)])
    seconds = run(gen, log, "generate")
    stats = output([*cli, "profiles", "stats", "--store", str(store), "--dataset", str(dataset), "--json"])
    log["profiles"] = {"stats": stats, "generate_seconds_this_call": round(seconds, 2)}

    # 3. The experiment (its own runner resumes finished and interrupted runs).
    cfg_path = out / "experiment.toml"
    if not cfg_path.exists():
        from seqdistill.experiments.config import ExperimentConfig

        cfg_path.write_text(ExperimentConfig.from_dict(config, str(cfg_path)).to_toml())
    run([*cli, "experiment", str(cfg_path), "--out", str(exp), "--workers", str(args.workers)], log, "experiment")
    report = json.loads((exp / "report.json").read_text())
    log["report"] = report
    # The report holds the probe of every profile source (a refusal, e.g. too few profiled
    # users under --smoke, as its error).
    log["probe"] = report.get("probe")

    result = {"bench": "gpu_suite", "machine": machine(), "rows": table5_rows(report), **log}
    write(out / "gpu_suite.json", result)
    if args.json:
        write(Path(args.json), result)
    print(f"\ngpu_suite: wrote {out / 'gpu_suite.json'}" + (f" and {args.json}" if args.json else ""))


if __name__ == "__main__":
    main()
