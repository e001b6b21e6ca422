"""``run_experiment``: every variant (vanilla, distilled grid points, controls) x every seed,
resumable, one JSON per finished run.

Layout of ``out_dir``::

    config.json                 the experiment config (a rerun with other data/model settings is refused)
    dataset/                    the prepared dataset (PreparedDataset.save), reused on resume
    targets/main/               targets.npy, targets_mask.npy (+ profile store, embeddings, reducer)
    targets/stats/              the statistics-profile control's targets (when source = "llm")
    work/<run>/                 trainer checkpoint while a run is in progress (resumed after a crash)
    runs/<run>.json             the finished run; <run>.ndcg10.npy / <run>.recall10.npy per test row

A run's JSON is written last (atomically), so its presence means the run is complete.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from .config import ExperimentConfig, load_config

__all__ = ["run_experiment", "prepare_dataset", "compute_targets", "run_name", "add_experiment_parser"]

# Sections whose change invalidates finished runs (grid, seeds and controls may grow).
_FIXED = ("dataset", "split", "k_core", "model", "train", "profiles", "eval_ks")


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _atomic_npy(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npy")
    np.save(tmp, arr, allow_pickle=False)
    os.replace(tmp, path)


def run_name(variant: str, seed: int) -> str:
    return f"{variant}__seed{seed}"


def prepare_dataset(config: ExperimentConfig, out_dir: str | Path):
    """The prepared dataset of ``config``; cached in ``out_dir/dataset`` and reused on resume."""
    from seqdistill import datasets
    from seqdistill.data import PreparedDataset, SplitConfig, prepare

    folder = Path(out_dir) / "dataset"
    if (folder / "manifest.json").is_file():
        return PreparedDataset.load(folder)
    spec = config.dataset
    if spec.registry_name == "prepared":
        if not spec.path:
            raise ValueError("[dataset] name = 'prepared' needs path = a prepared dataset folder")
        ds = PreparedDataset.load(spec.path)
    else:
        raw = datasets.load(spec.registry_name, spec.path, **spec.kwargs)
        ds = prepare(raw, k_core=tuple(config.k_core), split=SplitConfig.from_dict(config.split))
    ds.save(folder)
    return ds


def _load_targets(folder: Path) -> tuple[np.ndarray, np.ndarray] | None:
    if (folder / "targets.done").is_file():
        return np.load(folder / "targets.npy"), np.load(folder / "targets_mask.npy")
    return None


def _profile_targets(ds, store, folder: Path, config: ExperimentConfig, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Encode a profile store and reduce to ``dim`` (cached in ``folder``)."""
    from seqdistill.profiles import EncoderConfig, ReduceConfig, encode_store, reduce_targets

    spec = config.profiles
    emb_dir = folder / "embeddings"
    if (emb_dir / "encode.json").is_file():
        users, emb = np.load(emb_dir / "embedding_users.npy"), np.load(emb_dir / "embeddings.npy")
    else:
        users, emb = encode_store(store, emb_dir, EncoderConfig(model=spec.encoder), progress=False)
    return reduce_targets(users, emb, ds.n_users, folder, ReduceConfig(method=spec.reduce, dim=dim, seed=spec.seed))


def compute_targets(config: ExperimentConfig, ds, out_dir: str | Path, which: str = "main") -> tuple[np.ndarray, np.ndarray]:
    """Profile targets ``[n_users, hidden]`` and mask for the main source (``which="main"``) or
    the statistics control (``which="stats"``); computed once, cached in ``out_dir/targets/<which>``."""
    from seqdistill.profiles import ProfileStore, write_stats_profiles

    folder = Path(out_dir) / "targets" / which
    cached = _load_targets(folder)
    if cached is not None:
        return cached
    folder.mkdir(parents=True, exist_ok=True)
    spec, dim = config.profiles, int(config.model.get("hidden", 64))
    source = "stats" if which == "stats" else spec.source
    t0 = time.perf_counter()
    if source == "stats":
        store = write_stats_profiles(ds, folder / "store", spec.stats_config())
        targets, mask = _profile_targets(ds, store, folder, config, dim)
    elif source == "llm":
        if not spec.store:
            raise ValueError("[profiles] source = 'llm' needs store = a profile store folder")
        store = ProfileStore(spec.store)
        if store.meta.get("n_users") not in (None, ds.n_users):
            raise ValueError(f"{spec.store}: store has n_users={store.meta['n_users']}, the dataset has {ds.n_users}; "
                             "generate the profiles for this prepared dataset")
        targets, mask = _profile_targets(ds, store, folder, config, dim)
    else:
        if not spec.targets:
            raise ValueError("[profiles] source = 'targets' needs targets = a .npy file")
        targets = np.load(spec.targets).astype(np.float32)
        mask = np.load(spec.mask).astype(bool) if spec.mask else np.ones(len(targets), bool)
        if targets.shape != (ds.n_users, dim):
            raise ValueError(f"{spec.targets}: expected shape ({ds.n_users}, {dim}) (users x model hidden), got {targets.shape}")
        if mask.shape != (ds.n_users,):
            raise ValueError(f"{spec.mask}: expected shape ({ds.n_users},), got {mask.shape}")
        _atomic_npy(folder / "targets.npy", targets)
        _atomic_npy(folder / "targets_mask.npy", mask)
    info = {"source": source, "n_users": int(ds.n_users), "with_profile": int(mask.sum()), "dim": dim,
            "seconds": round(time.perf_counter() - t0, 3), "profiles": spec.to_dict()}
    _atomic_text(folder / "targets.done", json.dumps(info, indent=1))
    return targets, mask


def shuffled_targets(targets: np.ndarray, mask: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The shuffled control: the profile rows permuted among the users that have one (same mask),
    with a fixed seed, so every user is pulled toward somebody else's profile."""
    rng = np.random.default_rng([seed, 0x5EED])
    idx = np.flatnonzero(mask)
    out = targets.copy()
    out[idx] = targets[rng.permutation(idx)]
    return out, mask.copy()


def _check_config(config: ExperimentConfig, out: Path) -> None:
    path = out / "config.json"
    new = config.to_dict()
    if path.is_file():
        old = json.loads(path.read_text())
        changed = [k for k in _FIXED if old.get(k) != new.get(k)]
        if changed:
            raise ValueError(f"{path}: this folder holds runs of a config that differs in {changed}; use another out_dir")
    _atomic_text(path, json.dumps(new, indent=1))


def _one_run(config: ExperimentConfig, ds, variant: str, kind: str, dcfg: dict | None, seed: int,
             targets: dict[str, tuple[np.ndarray, np.ndarray]], out: Path) -> dict[str, Any]:
    import torch

    from seqdistill.evaluation import evaluate
    from seqdistill.models import ModelConfig, build_model
    from seqdistill.training import TrainConfig, Trainer, seed_everything
    from seqdistill.training.distill import DistillationTerm, DistillConfig

    name = run_name(variant, seed)
    base_epochs = config.distill.base.get("epochs") or 0
    run_epochs = (dcfg or {}).get("epochs") or base_epochs
    # Early stopping may not end a run inside its distillation stage (validation can dip there);
    # vanilla gets the same floor, so every variant has the same minimum budget.
    floor = max(int(config.train.get("min_epochs", 0)), int(base_epochs), int(run_epochs))
    tcfg = TrainConfig.from_dict({**config.train, "seed": seed, "min_epochs": floor})
    mcfg = ModelConfig.from_dict({**config.model, "n_items": ds.n_items})
    seed_everything(seed)
    model = build_model(mcfg)
    base = DistillConfig.from_dict(config.distill.base)
    if kind == "vanilla":
        t, m = targets["main"]
        term, used = DistillationTerm(t, m, base, train=False), base
    else:
        t, m = targets[{"distill": "main", "shuffled": "shuffled", "stats": "stats"}[kind]]
        used = DistillConfig.from_dict(dcfg)
        term = DistillationTerm(t, m, used, train=True)
    work = out / "work" / name
    trainer = Trainer(model, ds, config=tcfg, extra_losses=[term], run_dir=work)
    t0 = time.perf_counter()
    history = trainer.fit(resume=True)
    train_total = time.perf_counter() - t0
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t1 = time.perf_counter()
    res = evaluate(model, ds, "test", ks=config.eval_ks, batch_size=tcfg.eval_batch_size)
    infer = time.perf_counter() - t1
    runs = out / "runs"
    files = {}
    for key in ("ndcg@10", "recall@10"):
        f = f"{name}.{key.replace('@', '')}.npy"
        _atomic_npy(runs / f, np.asarray(res.per_row[key], dtype=np.float64))
        files[key] = f
    best = trainer.best_epoch
    best_row = next((r for r in history if r["epoch"] == best), {})
    epoch_secs = [float(r["seconds"]) for r in history]
    record = {
        "run": name, "variant": variant, "kind": kind, "seed": seed,
        "distill": used.to_dict(), "distill_trained": kind != "vanilla",
        "model": mcfg.to_dict(), "train": tcfg.to_dict(), "profiles": config.profiles.to_dict(),
        "dataset": {"name": ds.name, "n_users": ds.n_users, "n_items": ds.n_items,
                    "test_rows": int(len(res.users)), "manifest": ds.manifest},
        "history": history, "best_epoch": best,
        "valid": {k[len("valid_"):]: v for k, v in best_row.items() if k.startswith("valid_")},
        "test": dict(res.means), "per_row": files,
        "timing": {"train_seconds_per_epoch": float(np.mean(epoch_secs)) if epoch_secs else None,
                   "train_seconds_total": train_total, "epochs_run": len(history),
                   "test_inference_seconds": infer},
        "device": str(trainer.device), "torch_threads": torch.get_num_threads(),
    }
    _atomic_text(runs / f"{name}.json", json.dumps(record, indent=1, default=float))
    shutil.rmtree(work, ignore_errors=True)  # the finished run's checkpoint is no longer needed
    return record


def run_experiment(config: ExperimentConfig, out_dir: str | os.PathLike, progress: bool = True) -> list[Path]:
    """Train and test every variant x seed of ``config`` into ``out_dir`` (see the module doc);
    runs whose JSON exists are skipped. Returns the run JSON paths in run order."""
    out = Path(out_dir)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    _check_config(config, out)
    ds = prepare_dataset(config, out)
    if ds.n_users < 2 or len(ds.targets("test")[0]) == 0:
        raise ValueError(f"{ds.name}: no test targets after preparation; check [split] and k_core")
    jobs = [(v, k, d, s) for v, k, d in config.variants() for s in config.seeds]
    paths = [out / "runs" / f"{run_name(v, s)}.json" for v, _, _, s in jobs]
    todo = [j for j, p in zip(jobs, paths) if not p.is_file()]
    if progress:
        print(f"experiment {config.name}: {len(jobs)} runs, {len(jobs) - len(todo)} already done -> {out}", flush=True)
    if not todo:
        return paths
    targets: dict[str, tuple[np.ndarray, np.ndarray]] = {"main": compute_targets(config, ds, out, "main")}
    targets["shuffled"] = shuffled_targets(*targets["main"], seed=config.profiles.seed)
    if "stats" in config.controls:
        targets["stats"] = compute_targets(config, ds, out, "stats")
    for i, (variant, kind, dcfg, seed) in enumerate(todo, 1):
        t0 = time.perf_counter()
        rec = _one_run(config, ds, variant, kind, dcfg, seed, targets, out)
        if progress:
            print(f"[{i}/{len(todo)}] {rec['run']}: test ndcg@10={rec['test']['ndcg@10']:.4f} "
                  f"recall@10={rec['test']['recall@10']:.4f} best_epoch={rec['best_epoch']} "
                  f"({time.perf_counter() - t0:.1f}s)", flush=True)
    return paths


def add_experiment_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``seqdistill experiment CONFIG --out DIR [--threads N] [--report-only] [--no-report]``."""
    p = subparsers.add_parser("experiment", help="run a vanilla-vs-distilled comparison over seeds and write a report")
    p.add_argument("config", help="experiment TOML file, or a preset name (beauty, ml20m, kion, amazon_m2, ml1m, synthetic)")
    p.add_argument("--out", required=True, help="output folder (resumed when it exists)")
    p.add_argument("--dataset-path", help="override [dataset] path")
    p.add_argument("--store", help="override [profiles] store (source = 'llm')")
    p.add_argument("--seeds", type=int, nargs="+", help="override the seeds")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice; 1 is often fastest for small models)")
    p.add_argument("--report-only", action="store_true", help="only (re)write the report from finished runs")
    p.add_argument("--no-report", action="store_true", help="do not write the report after the runs")
    p.set_defaults(func=_cmd_experiment)
    return p


def _cmd_experiment(args: argparse.Namespace) -> int:
    from .report import report

    cfg = load_config(args.config)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.dataset_path:
        cfg.dataset.path = args.dataset_path
    if args.store:
        cfg.profiles.store = args.store
    if args.seeds:
        cfg.seeds = list(args.seeds)
    cfg.validate(str(args.config))
    if not args.report_only:
        run_experiment(cfg, args.out)
    if not args.no_report:
        res = report(args.out)
        print(f"report: {Path(args.out) / 'report.md'} ({len(res['variants'])} variants)")
    return 0
