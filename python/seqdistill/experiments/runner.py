"""``run_experiment``: every variant (vanilla, distilled grid points, controls) x every seed,
resumable, one JSON per finished run.

Layout of ``out_dir``::

    config.json                 the experiment config (a rerun that changes results is refused)
    dataset/                    the prepared dataset (PreparedDataset.save), reused on resume
    targets/main/               targets.done; store/ (stats profiles), embeddings/ (encode_store),
                                reduce/ (reduce_targets: targets.npy, targets_mask.npy, the fit) —
                                or targets.npy, targets_mask.npy here for source = "targets"
    targets/stats/              the statistics-profile control's targets (when source = "llm")
    work/<run>/                 trainer checkpoint while a run is in progress (resumed after a crash)
    runs/<run>.json             the finished run (a RunRecord); <run>.ndcg10.npy / <run>.recall10.npy per test row

Before any work the config is validated completely, the machine checked (files, device) and the
folder checked against the config (:mod:`.resume`). A run's JSON is written last (atomically,
through ``seqdistill._io`` like every file here), so its presence means the run is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from seqdistill import _io
from seqdistill.data.dataset import fingerprints_match
from seqdistill.errors import ConfigError, DataError, OutputError

from .config import ExperimentConfig
from .naming import is_run_name, run_name
from .plan import RunPlan, plan_runs
from .records import DatasetSummary, RunRecord, Timing
from .resume import WORK_MARKER, check_folder, check_run_folder, write_config

__all__ = ["run_experiment", "prepare_dataset", "compute_targets", "run_name", "shuffled_targets"]

_PER_ROW = ("ndcg@10", "recall@10")  # metrics kept per test row for the report's paired tests


def _open(config: ExperimentConfig, out: Path, *, profiles: bool) -> tuple[list[RunPlan], dict[str, RunRecord]]:
    """Every check that precedes work, then ``config.json`` (re)written: the plan and the finished runs."""
    config.validate()
    config.check_runnable(profiles=profiles)
    _check_prepared(config)
    plans = plan_runs(config)
    done = check_folder(config, out, plans)
    write_config(config, out)
    return plans, done


def _check_prepared(config: ExperimentConfig) -> None:
    """A prepared dataset is already filtered and split: a ``[split]`` or ``k_core`` the config
    sets must be what the dataset holds (they would otherwise be recorded but not applied)."""
    if config.dataset.registry_name != "prepared":
        return
    from seqdistill.data import SplitConfig

    path = Path(config.dataset.path or "") / "manifest.json"
    try:
        manifest = _io.loads_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{path}: unreadable manifest ({e.__class__.__name__})") from None
    fix = f"leave it out (the prepared dataset {config.dataset.path} keeps its own) or prepare the dataset again"
    if config.split:
        want, have = SplitConfig.from_dict(config.split).to_dict(), manifest.get("split")
        if want != have:
            raise ConfigError(f"{config.origin}: [split] = {want}, but the dataset was split with {have}; {fix}")
    if "k_core" in config.given and list(config.k_core) != manifest.get("k_core"):
        raise ConfigError(
            f"{config.origin}: k_core = {list(config.k_core)}, but the dataset was filtered with "
            f"{manifest.get('filter')} {manifest.get('k_core')}; {fix}"
        )


def _dataset(config: ExperimentConfig, out: Path):
    """The prepared dataset, cached in ``out/dataset`` (only when it has test targets, so a
    folder whose preparation failed holds nothing computed and takes a corrected config)."""
    from seqdistill import datasets
    from seqdistill.data import PreparedDataset, SplitConfig, prepare

    folder = out / "dataset"
    _io.recover_dir(folder)  # an interrupted save: the complete copy put in place, temporaries dropped
    if folder.exists():
        return PreparedDataset.load(folder)
    spec = config.dataset
    if spec.registry_name == "prepared":
        ds = PreparedDataset.load(spec.path)
    else:
        raw = datasets.load(spec.registry_name, spec.path, **spec.kwargs)
        ds = prepare(raw, k_core=tuple(config.k_core), split=SplitConfig.from_dict(config.split))
    _check_test_targets(ds, config)
    ds.save(folder, overwrite=False)
    return ds


def prepare_dataset(config: ExperimentConfig, out_dir: str | os.PathLike):
    """The prepared dataset of ``config``; cached in ``out_dir/dataset`` and reused on resume.
    Checks the config and the folder first (as :func:`run_experiment` does)."""
    out = Path(out_dir)
    _open(config, out, profiles=False)
    return _dataset(config, out)


def _load_targets(folder: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The targets ``targets.done`` says are complete: in ``folder/reduce/`` for profiles
    (``"dir": "reduce"``), else (given targets, folders of older versions) in ``folder``."""
    done = folder / "targets.done"
    if not done.is_file():
        return None
    try:
        sub = _io.loads_json(done.read_text(encoding="utf-8")).get("dir", ".")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
        raise DataError(
            f"{done}: unreadable ({e.__class__.__name__}); remove it to compute the targets again"
        ) from None
    if sub not in (".", _REDUCED):
        raise DataError(f"{done}: 'dir' = {sub!r} is not a folder the runner writes; remove it to compute again")
    where = folder / sub
    again = f"remove {done} to compute the targets again"
    targets = _io.read_npy(where / "targets.npy", hint=again)
    mask = _io.read_npy(where / "targets_mask.npy", hint=again)
    if targets.ndim != 2 or targets.dtype.kind != "f":
        raise DataError(
            f"{where / 'targets.npy'}: expected floats [users, dim], got {targets.dtype} {targets.shape}; {again}"
        )
    if mask.dtype != np.bool_ or mask.shape != targets.shape[:1]:
        raise DataError(
            f"{where / 'targets_mask.npy'}: expected {targets.shape[0]} booleans, got {mask.dtype} {mask.shape}; {again}"
        )
    # As read_targets: rows of users without a profile may hold anything (given targets keep them).
    if not np.isfinite(targets[mask]).all():
        raise DataError(f"{where / 'targets.npy'}: a row of a user with a profile holds NaN or infinity; {again}")
    return targets, mask


_REDUCED = "reduce"  # targets/<which>/reduce/: the folder reduce_targets owns (targets.npy, reduce.json, fit)


def _profile_targets(ds, store, folder: Path, config: ExperimentConfig, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Encode a profile store into ``folder/embeddings`` and reduce to ``dim`` in ``folder/reduce``
    (each a folder its writer owns, reused when complete)."""
    from seqdistill.profiles import EncoderConfig, ReduceConfig, encode_store, reduce_targets
    from seqdistill.profiles.encode import is_embeddings_folder

    spec = config.profiles
    emb_dir = folder / "embeddings"
    if is_embeddings_folder(emb_dir):
        again = f"remove {emb_dir} to encode the store again"
        users = _io.read_npy(emb_dir / "embedding_users.npy", hint=again)
        emb = _io.read_npy(emb_dir / "embeddings.npy", hint=again)
    else:
        users, emb = encode_store(store, emb_dir, EncoderConfig(model=spec.encoder), progress=False)
    cfg = ReduceConfig(method=spec.reduce, dim=dim, seed=spec.seed)
    return reduce_targets(users, emb, ds.n_users, folder / _REDUCED, cfg)


def _given_targets(config: ExperimentConfig, ds, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``[profiles] targets`` / ``mask`` files, checked: shape, finite values, a boolean mask."""
    from seqdistill.profiles.targets import read_targets

    spec = config.profiles
    return read_targets(spec.targets, spec.mask, ds.n_users, dim, keys=("[profiles] targets", "[profiles] mask"))


def compute_targets(
    config: ExperimentConfig, ds, out_dir: str | os.PathLike, which: str = "main"
) -> tuple[np.ndarray, np.ndarray]:
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
        store = ProfileStore(spec.store)
        store.check_dataset(ds)  # StoreError unless made for this dataset (size and fingerprint)
        targets, mask = _profile_targets(ds, store, folder, config, dim)
    else:
        targets, mask = _given_targets(config, ds, dim)
        _io.write_npy(folder / "targets.npy", targets)
        _io.write_npy(folder / "targets_mask.npy", mask)
    info = {
        "source": source,
        "n_users": int(ds.n_users),
        "with_profile": int(mask.sum()),
        "dim": dim,
        "seconds": round(time.perf_counter() - t0, 3),
        "profiles": spec.to_dict(),
        "dir": "." if source == "targets" else _REDUCED,
    }
    _io.write_json(folder / "targets.done", info)
    return targets, mask


def shuffled_targets(targets: np.ndarray, mask: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The shuffled control: the profile rows permuted among the users that have one (same mask),
    with a fixed seed, so every user is pulled toward somebody else's profile."""
    rng = np.random.default_rng([seed, 0x5EED])
    idx = np.flatnonzero(mask)
    out = targets.copy()
    out[idx] = targets[rng.permutation(idx)]
    return out, mask.copy()


def _work_folder(out: Path, plan: RunPlan) -> Path:
    """``out/work/<run>/`` for a run about to train: created here with a marker naming the run and
    its settings, or an existing one this runner created for the same settings."""
    work = out / "work" / plan.name
    check_run_folder(work, plan)
    if not work.exists():
        # The folder appears with its marker: a runner killed between the two had left an
        # unmarked folder that the rerun refused as not its own.
        _io.make_dir_with(
            work, lambda tmp: _io.write_json(tmp / WORK_MARKER, {"run": plan.name, "settings": plan.settings})
        )
    return work


def _remove_work_folder(out: Path, work: Path, name: str) -> None:
    """Remove a finished run's checkpoint folder, but only one this runner created: directly in
    ``out/work/``, named like a run, not a link, holding the runner's marker for this run."""
    inside = work.parent.resolve() == (out / "work").resolve() and work.name == name
    if not (
        inside and is_run_name(name) and work.is_dir() and not work.is_symlink() and (work / WORK_MARKER).is_file()
    ):
        raise OutputError(f"{work}: refusing to remove a folder the experiment runner did not create")
    shutil.rmtree(work, ignore_errors=True)


def _evaluate(model, ds, ks, batch_size: int):
    import torch

    from seqdistill.evaluation import evaluate

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    res = evaluate(model, ds, "test", ks=ks, batch_size=batch_size)
    return res, time.perf_counter() - t0


def _trainer(
    config: ExperimentConfig, ds, plan: RunPlan, targets: dict[str, tuple[np.ndarray, np.ndarray]], work: Path
):
    """The model, the distillation term and the trainer of ``plan`` (checkpointing into ``work``)."""
    from seqdistill.models import ModelConfig
    from seqdistill.training import TrainConfig
    from seqdistill.training.distill import DistillConfig
    from seqdistill.training.run import build_trainer

    tcfg = TrainConfig.from_dict(plan.train)
    mcfg = ModelConfig.from_dict({**config.model, "n_items": ds.n_items})
    source = {"vanilla": "main", "distill": "main", "shuffled": "shuffled", "stats": "stats"}[plan.kind]
    distill = DistillConfig.from_dict(plan.distill)
    return build_trainer(
        ds, mcfg, tcfg, run_dir=work, targets=targets[source], distill=distill, distill_trained=plan.kind != "vanilla"
    )


def _train(config: ExperimentConfig, ds, plan: RunPlan, targets: dict[str, tuple[np.ndarray, np.ndarray]], work: Path):
    """Build the model and the distillation term of ``plan`` and train (resuming from ``work``).
    With ``[train] nproc`` above 1, that many DDP processes train into ``work`` first; this
    trainer then takes up their finished checkpoint (history, best epoch, best weights)."""
    trainer = _trainer(config, ds, plan, targets, work)
    model = trainer.model
    t0 = time.perf_counter()
    if trainer.config.nproc > 1:
        from seqdistill.training.distributed import launch

        tcfg, out = trainer.config, work.parent.parent
        args = (config.to_dict(), config.origin, str(out), plan.name)
        launch(_fit_rank, tcfg.nproc, *args, backend=tcfg.backend, device=tcfg.device)
    history = trainer.fit(resume=True)
    return model, trainer, history, time.perf_counter() - t0


def _fit_rank(config_dict: dict, origin: str, out: str, name: str) -> None:
    """One DDP process of an experiment run: the run's trainer, fitted (rank 0 writes ``work/<run>/``)."""
    from seqdistill.data import PreparedDataset

    config = ExperimentConfig.from_dict(config_dict, where=origin)
    folder = Path(out)
    ds = PreparedDataset.load(folder / "dataset")
    plan = next(p for p in plan_runs(config) if p.name == name)
    _trainer(config, ds, plan, _targets(config, ds, folder), folder / "work" / name).fit(resume=True)


def _one_run(
    config: ExperimentConfig, ds, plan: RunPlan, targets: dict[str, tuple[np.ndarray, np.ndarray]], out: Path
) -> RunRecord:
    """Train and test one run; write its per-row arrays, then its record (last), then drop ``work/<run>``."""
    import torch

    if plan.kind == "idgenrec":  # the LLM-based baseline has its own training (experiments.idgenrec_run)
        from .idgenrec_run import run_idgenrec

        work = _work_folder(out, plan)
        record = run_idgenrec(config, ds, plan, out, work)
        _remove_work_folder(out, work, plan.name)
        return record

    work = _work_folder(out, plan)
    model, trainer, history, train_total = _train(config, ds, plan, targets, work)
    res, infer = _evaluate(model, ds, config.eval_ks, trainer.config.eval_batch_size)
    files = {}
    for key in _PER_ROW:
        files[key] = f"{plan.name}.{key.replace('@', '')}.npy"
        _io.write_npy(out / "runs" / files[key], np.asarray(res.per_row[key], dtype=np.float64))
    best_row = next((r for r in history if r["epoch"] == trainer.best_epoch), {})
    epoch_secs = [float(r["seconds"]) for r in history]
    record = RunRecord(
        run=plan.name,
        variant=plan.variant,
        kind=plan.kind,
        seed=plan.seed,
        settings=plan.settings,
        distill=dict(plan.distill),
        distill_trained=plan.kind != "vanilla",
        model=model.config.to_dict(),
        train=trainer.config.to_dict(),
        profiles=config.profiles.to_dict(),
        dataset=DatasetSummary.of(ds, len(res.users)),
        history=history,
        best_epoch=trainer.best_epoch,
        valid={k[len("valid_") :]: float(v) for k, v in best_row.items() if k.startswith("valid_")},
        test={k: float(v) for k, v in res.means.items()},
        per_row=files,
        timing=Timing.of(epoch_secs, train_total, len(history), infer),
        device=str(trainer.device),
        torch_threads=torch.get_num_threads(),
    )
    record.write(out / "runs" / f"{plan.name}.json")
    _remove_work_folder(out, work, plan.name)  # the finished run's checkpoint is no longer needed
    return record


# ------------------------------------------------------------------------------ workers
def _sweep_finished(out: Path, finished: list[str]) -> None:
    """What a process killed between a run's record and its cleanup left of a finished run: its
    ``work/<run>/`` (a folder the runner made, or an empty one a removal stopped in)."""
    from .workers import folder_lock

    for name in finished:
        work = out / "work" / name
        if not work.is_dir() or work.is_symlink():
            continue
        with folder_lock(work) as held:
            if held and not any(work.iterdir()):
                work.rmdir()
            elif held and (work / WORK_MARKER).is_file():
                _remove_work_folder(out, work, name)


def _worker_setup(index: int, out: str, config_dict: dict, origin: str):
    """In worker process ``index``: one torch thread (or GPU ``index mod count``), the config, and
    the dataset and targets the parent cached; returns the function that trains one run by name."""
    import torch

    from seqdistill.data import PreparedDataset

    torch.set_num_threads(1)
    if torch.cuda.is_available():
        torch.cuda.set_device(index % torch.cuda.device_count())
    config = ExperimentConfig.from_dict(config_dict, where=origin)
    folder = Path(out)
    ds = PreparedDataset.load(folder / "dataset")
    targets, plans = _targets(config, ds, folder), {p.name: p for p in plan_runs(config)}
    return lambda name: _train_locked(config, ds, plans[name], targets, folder)


def _train_locked(config: ExperimentConfig, ds, plan: RunPlan, targets, out: Path) -> dict:
    """In a worker: train and test ``plan`` unless it is finished or another live process holds
    its ``work/<run>/`` (an flock); the record is checked again under the lock."""
    from .workers import folder_lock

    record = out / "runs" / f"{plan.name}.json"
    busy = {"kind": "busy", "run": plan.name}
    if record.exists():  # finished by another process on this folder
        return {"kind": "done", "run": plan.name, "skipped": True, **_summary(RunRecord.from_json(record))}
    try:
        work = _work_folder(out, plan)  # created here (with the runner's marker) or resumed
    except FileExistsError:  # another process created it a moment ago
        return busy
    with folder_lock(work) as held:
        if not held:
            return busy
        if record.exists():  # finished by another process meanwhile
            _remove_work_folder(out, work, plan.name)
            return {"kind": "done", "run": plan.name, "skipped": True, **_summary(RunRecord.from_json(record))}
        t0 = time.perf_counter()
        rec = _one_run(config, ds, plan, targets, out)
        return {"kind": "done", "run": plan.name, "seconds": time.perf_counter() - t0, **_summary(rec)}


def _summary(rec: RunRecord) -> dict:
    return {"ndcg": rec.test.get("ndcg@10"), "recall": rec.test.get("recall@10"), "best_epoch": rec.best_epoch}


def _check_processes(config: ExperimentConfig, workers: int) -> None:
    """Several runs at once (``workers``) or one run on several processes (``[train] nproc``), not both."""
    nproc = config.train.get("nproc", 1)
    if workers > 1 and isinstance(nproc, int) and not isinstance(nproc, bool) and nproc > 1:
        raise ConfigError(
            f"{config.origin}: [train] nproc = {nproc!r} with {workers} workers: train several runs at once "
            "(workers) or each run on several processes (nproc), not both"
        )


def _check_test_targets(ds, config: ExperimentConfig) -> None:
    if ds.n_users < 2 or len(ds.targets("test")[0]) == 0:
        raise DataError(
            f"{ds.name}: no test targets after preparation ({ds.n_users} users); "
            f"check [split] and k_core in {config.origin}"
        )


def _check_same_data(ds, done: dict[str, RunRecord], out: Path) -> None:
    """The prepared dataset in ``out`` is the one the finished runs used."""
    fp = ds.fingerprint() if done else None
    for name, rec in done.items():
        if fp is None or not fingerprints_match(rec.dataset.fingerprint, fp):
            raise DataError(
                f"{out / 'runs' / (name + '.json')}: ran on another dataset (fingerprint "
                f"{rec.dataset.fingerprint} vs {fp} in {out / 'dataset'}); use a new --out folder"
            )


def _targets(config: ExperimentConfig, ds, out: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    targets = {"main": compute_targets(config, ds, out, "main")}
    targets["shuffled"] = shuffled_targets(*targets["main"], seed=config.profiles.seed)
    if "stats" in config.controls:
        targets["stats"] = compute_targets(config, ds, out, "stats")
    return targets


def run_experiment(
    config: ExperimentConfig, out_dir: str | os.PathLike, progress: bool = True, workers: int | None = None
) -> list[Path]:
    """Train and test every variant x seed of ``config`` into ``out_dir`` (see the module doc);
    runs whose JSON exists are skipped. Returns the run JSON paths in run order. ``workers``
    (default: the config's ``workers``, 1) above 1 trains that many runs at once, each in its own
    process (:mod:`.workers`); the records are those of a serial run.

    Refused before any work (nothing written): an invalid config, a missing file or device, a
    folder whose config.json or finished runs differ in anything that changes results, a
    ``workers`` count that is not an integer from 1 to 1024, workers and ``[train] nproc`` both
    above 1."""
    from .workers import check_workers

    workers = check_workers(config.workers if workers is None else workers)
    _check_processes(config, workers)
    out = Path(out_dir)
    plans, done = _open(config, out, profiles=True)
    ds = _dataset(config, out)
    _check_test_targets(ds, config)
    _check_same_data(ds, done, out)
    paths = [out / "runs" / f"{p.name}.json" for p in plans]
    todo = [p for p in plans if p.name not in done]
    if progress:
        print(
            f"experiment {config.name}: {len(plans)} runs, {len(plans) - len(todo)} already done -> {out}", flush=True
        )
    if workers > 1:
        _sweep_finished(out, sorted(done))
    if not todo:
        return paths
    targets = _targets(config, ds, out)
    if workers > 1:
        from .workers import run_parallel

        setup_args = (str(out), config.to_dict(), config.origin)
        run_parallel([p.name for p in todo], workers, progress, _worker_setup, setup_args)
        return paths
    for i, plan in enumerate(todo, 1):
        t0 = time.perf_counter()
        rec = _one_run(config, ds, plan, targets, out)
        if progress:
            print(
                f"[{i}/{len(todo)}] {rec.run}: test ndcg@10={rec.test['ndcg@10']:.4f} "
                f"recall@10={rec.test['recall@10']:.4f} best_epoch={rec.best_epoch} "
                f"({time.perf_counter() - t0:.1f}s)",
                flush=True,
            )
    return paths
