"""``seqdistill evaluate RUN_DIR DATASET_DIR``: one trained model under several evaluation
protocols side by side (full ranking with seen items kept or removed, sampled negatives uniform
or by popularity), printed as one table and optionally written as JSON (docs/evaluation.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seqdistill import _io
from seqdistill.cli._common import positive_int, seed_int, thread_count
from seqdistill.errors import ConfigError, DataError, OutputError

__all__ = ["JSON_MARK", "add_parser", "check_json_out", "run"]

#: Key and value that mark a JSON file as written by this command (only such a file is replaced).
JSON_MARK = ("seqdistill", "evaluate")
_TABLE_METRICS = ("ndcg", "recall", "hit_rate", "mrr")


def add_parser(sub: argparse._SubParsersAction, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Register ``evaluate RUN_DIR DATASET_DIR [--protocol P ...] [--ks K ...] [--json FILE] ...``."""
    from seqdistill.evaluation import DEFAULT_PROTOCOLS

    p = sub.add_parser(
        "evaluate",
        parents=list(parents),
        help="evaluate a trained model under several protocols side by side (a table, optionally JSON)",
    )
    p.add_argument("run_dir", help="run folder holding model/ (and run.json) as `seqdistill train` writes it")
    p.add_argument("dataset_dir", help="the prepared dataset folder the model was trained on")
    p.add_argument(
        "--protocol",
        nargs="+",
        default=list(DEFAULT_PROTOCOLS),
        metavar="P",
        help="full, full_filtered, sampled:N, sampled-pop:N (default: %(default)s)",
    )
    p.add_argument("--ks", type=positive_int, nargs="+", default=[5, 10, 20], metavar="K", help="cut-offs k")
    p.add_argument("--part", choices=["test", "valid"], default="test", help="which targets to rank")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the sampled negatives")
    p.add_argument("--batch-size", type=positive_int, default=1024, help="rows per forward pass (no effect on results)")
    p.add_argument("--threads", type=thread_count, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="auto", help="auto (default: CUDA when available), cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--metrics",
        nargs="+",
        choices=_TABLE_METRICS,
        default=["ndcg", "hit_rate"],
        help="columns of the printed table (the JSON holds every metric)",
    )
    p.add_argument("--json", help="also write the results to this JSON file (written atomically)")
    p.set_defaults(func=run, prog_name=p.prog)


def run(args: argparse.Namespace) -> int:
    """Check the flags and paths, load the model and dataset, evaluate, print, write."""
    from seqdistill.evaluation import evaluate_protocols, format_table, parse_protocol, protocol_table

    protocols = [_protocol(parse_protocol, text) for text in args.protocol]
    names = [p.name for p in protocols]
    if len(set(names)) != len(names):
        raise ConfigError(f"--protocol: each protocol once, got {' '.join(args.protocol)}")
    run_dir, dataset_dir = Path(args.run_dir), Path(args.dataset_dir)
    if args.json is not None:
        check_json_out(args.json, run_dir, dataset_dir)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = _device(args.device)
    model, ds = load_run(run_dir, dataset_dir, device)
    if len(ds.targets(args.part)[0]) == 0:  # every metric would be the mean of nothing (NaN)
        raise DataError(
            f"{dataset_dir}: the {args.part} part has no rows to evaluate (the dataset's split left "
            f"no {args.part} targets); nothing printed or written"
        )
    results = evaluate_protocols(
        model,
        ds,
        protocols,
        part=args.part,
        ks=args.ks,
        seed=args.seed,
        batch_size=args.batch_size,
        device=str(device),
        progress=sys.stderr.isatty(),
    )
    first = next(iter(results.values()))
    print(format_table(protocol_table(results, args.metrics)))
    print(
        f"{len(first.users)} {args.part} rows, seed {args.seed}; forward pass {first.timings['forward_s']:.2f} s, "
        f"total {first.timings['total_s']:.2f} s"
    )
    if args.json is not None:
        _io.write_json(args.json, record(results, run_dir, dataset_dir, ds.fingerprint()))
        print(f"results written to {args.json}")
    return 0


def _protocol(parse, text: str):  # noqa: ANN001, ANN202 - parse_protocol, imported lazily
    try:
        return parse(text)
    except ConfigError as e:
        raise ConfigError(f"--{e}") from None  # "--protocol 'x': expected ..."


def _device(text: str):  # noqa: ANN202 - torch.device
    from seqdistill.training import resolve_device

    try:
        return resolve_device(text)
    except ConfigError as e:
        raise ConfigError(str(e).replace("TrainConfig.device:", "--device")) from None
    except RuntimeError:  # torch's own parse error, e.g. --device gpu
        raise ConfigError(f"--device {text!r}: expected cpu, auto, cuda, cuda:N or mps") from None


# ------------------------------------------------------------------------- inputs
def load_run(run_dir: Path, dataset_dir: Path, device: Any = "cpu") -> tuple[Any, Any]:
    """The model of ``run_dir/model`` and the dataset of ``dataset_dir``, refused (DataError,
    one line) when the run records another dataset's fingerprint (``run.json``) or the model's
    raw item ids are not the dataset's."""
    from seqdistill.data import PreparedDataset
    from seqdistill.models import load_model
    from seqdistill.training.run import RUN_FILE, RunInfo

    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: no such run folder")
    if not (run_dir / "model").is_dir():
        raise DataError(
            f"{run_dir}: holds no model/ folder; train one with `seqdistill train DATASET_DIR --out {run_dir}`"
        )
    if not dataset_dir.is_dir():
        raise DataError(f"{dataset_dir}: no such dataset folder")
    ds = PreparedDataset.load(dataset_dir)
    if (run_dir / RUN_FILE).exists():  # `seqdistill train` wrote it; a bare Trainer run_dir has none
        RunInfo.read(run_dir).check_dataset(ds, dataset_dir)  # damaged or foreign: a DataError
    model = load_model(run_dir / "model", map_location=device)
    _check_items(model, ds, run_dir, dataset_dir)
    return model, ds


def _check_items(model: Any, ds: Any, run_dir: Path, dataset_dir: Path) -> None:
    if model.config.n_items != ds.n_items:
        raise DataError(
            f"{run_dir / 'model'}: the model ranks {model.config.n_items} items but {dataset_dir} has "
            f"{ds.n_items}; evaluate on the dataset the model was trained on"
        )
    ids = getattr(model, "item_ids", None)
    if ids is None:
        return
    theirs = ds.item_ids.to_list()
    for dense, (a, b) in enumerate(zip(ids, theirs)):
        if a != b:
            raise DataError(
                f"{run_dir / 'model'}: dense item {dense} is raw id {a!r} in the model but {b!r} in "
                f"{dataset_dir}; evaluate on the dataset the model was trained on"
            )


def check_json_out(path: str | Path, run_dir: Path, dataset_dir: Path) -> None:
    """Refuse, before any work, a ``--json`` path that is empty, a folder, inside the dataset or
    the run's model/checkpoint, the run's own records, or an existing file this command did not
    write. Raises OutputError."""
    text = str(path)
    if not text.strip():
        raise OutputError("--json '': an empty path; name a file")
    p = Path(text)
    if p.is_dir():
        raise OutputError(f"--json {text}: is a folder; name a file")
    target = p.resolve()
    inputs = [dataset_dir, run_dir / "model", run_dir / "checkpoint", run_dir / "run.json", run_dir / "history.json"]
    for inp in inputs:
        if _io.overlap(target, inp) in ("is", "lies inside"):
            raise OutputError(f"--json {text}: is {inp}, an input of this command; name another file")
    if p.exists() and not _written_by_us(p):
        raise OutputError(
            f"--json {text}: exists and is not a file `seqdistill evaluate` wrote; choose a new name or remove it"
        )


def _written_by_us(path: Path) -> bool:
    try:
        data = _io.loads_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and data.get(JSON_MARK[0]) == JSON_MARK[1]


# ------------------------------------------------------------------------- output
def record(results: dict[str, Any], run_dir: Path, dataset_dir: Path, fingerprint: str) -> dict[str, Any]:
    """The JSON record: where the numbers come from, every protocol's definition and means."""
    first = next(iter(results.values()))
    return {
        JSON_MARK[0]: JSON_MARK[1],
        "run_dir": str(run_dir),
        "dataset_dir": str(dataset_dir),
        "dataset_fingerprint": fingerprint,
        "part": first.settings["part"],
        "ks": list(first.settings["ks"]),
        "seed": first.settings["seed"],
        "max_len": first.settings["max_len"],
        "n_rows": int(len(first.users)),
        "protocols": [res.settings["protocol"] for res in results.values()],
        "means": {name: res.means for name, res in results.items()},
        "timings": {
            "forward_s": first.timings["forward_s"],
            "total_s": first.timings["total_s"],
            "rank_s": {name: res.timings["rank_s"] for name, res in results.items()},
        },
    }
