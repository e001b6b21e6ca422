"""``seqdistill train DATASET_DIR --out RUN_DIR``: train one model on a prepared dataset into a
run folder (see :mod:`seqdistill.training.run` for the folder, resuming and what is refused).

On several processes (docs/distributed.md): ``--nproc N`` starts them itself; under
``torchrun --nproc-per-node N -m seqdistill.cli train ...`` each process joins the group torchrun
describes and rank 0 alone prints and writes."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from seqdistill.cli._common import finite_float, int_at_least, nonnegative_int, positive_int, seed_int, thread_count

__all__ = ["add_parser", "run"]


def _unit_interval(text: str) -> float:
    """An argparse type: a number in [0, 1]."""
    value = finite_float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    """An argparse type: a number > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def add_parser(sub: argparse._SubParsersAction, parents: Sequence[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "train",
        parents=list(parents),
        help="train SASRec or BERT4Rec on a prepared dataset into a run folder (resumable)",
        description="Train one model on a prepared dataset. Re-running the same command resumes "
        "after the last finished epoch; a finished run is left as it is.",
    )
    p.add_argument("dataset", help="prepared dataset folder (seqdistill prepare / datasets prepare)")
    p.add_argument(
        "--out",
        required=True,
        help="run folder: new, empty, or a run of these settings (resumed); never a folder of other files",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a run with other settings already at --out")
    m = p.add_argument_group("model")
    m.add_argument("--model", default="sasrec", help="sasrec or bert4rec (default: sasrec)")
    m.add_argument("--hidden", type=positive_int, default=64)
    m.add_argument("--blocks", type=positive_int, default=2, help="transformer blocks")
    m.add_argument("--heads", type=positive_int, default=2, help="attention heads (must divide --hidden)")
    m.add_argument("--max-len", type=int_at_least(2), default=50, help="items of history the model reads")
    m.add_argument("--dropout", type=finite_float, default=0.2, help="in [0, 1)")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=positive_int, default=30, help="at most this many epochs")
    t.add_argument(
        "--patience", type=positive_int, default=5, help="stop after this many epochs without a better validation score"
    )
    t.add_argument("--batch-size", type=positive_int, default=256)
    t.add_argument("--lr", type=_positive_float, default=5e-4)
    t.add_argument("--seed", type=seed_int, default=0)
    t.add_argument("--threads", type=thread_count, help="torch CPU threads (default: torch's choice)")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    t.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    t.add_argument(
        "--nproc",
        type=positive_int,
        default=1,
        help="train with DistributedDataParallel on N processes started here (--batch-size is the global "
        "batch; not under torchrun, which starts its own)",
    )
    t.add_argument(
        "--backend",
        choices=["auto", "gloo", "nccl"],
        default="auto",
        help="torch.distributed backend with --nproc or torchrun (auto: nccl on CUDA, gloo on the CPU)",
    )
    d = p.add_argument_group("distillation (with --profiles)")
    d.add_argument(
        "--profiles",
        metavar="PROFILE_VECTORS",
        help="a folder written by 'profiles reduce', or a .npy of [n_users, hidden] targets",
    )
    d.add_argument("--profiles-mask", help="with a .npy of targets: a .npy of n_users booleans (has a profile)")
    d.add_argument("--alpha", type=_unit_interval, help="weight of the distillation term (default 0.4)")
    d.add_argument("--block", type=int, help="the transformer block pooled (Python index, default -1: the last)")
    d.add_argument(
        "--dynamic-beta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="rescale the term by L_model / L_distill each batch (default: on)",
    )
    d.add_argument("--distill-epochs", type=nonnegative_int, help="epochs of the distillation stage (default: all)")
    d.add_argument("--pooling", choices=["mean", "exp"], help="pooling of the block's hidden states (default: mean)")
    p.set_defaults(func=run, prog_name=p.prog, output_arg="out")


_DISTILL_FLAGS = {
    "alpha": "alpha",
    "block": "block",
    "dynamic_beta": "dynamic_beta",
    "distill_epochs": "epochs",
    "pooling": "pooling",
}


def _distill(args: argparse.Namespace):
    """The DistillConfig of the flags given (None when no distillation flag and no --profiles)."""
    from seqdistill.errors import ConfigError
    from seqdistill.training.distill import DistillConfig

    given = {key: getattr(args, flag) for flag, key in _DISTILL_FLAGS.items() if getattr(args, flag) is not None}
    if args.profiles is None:
        if given or args.profiles_mask is not None:
            flags = [f"--{f.replace('_', '-')}" for f in _DISTILL_FLAGS if getattr(args, f) is not None]
            raise ConfigError(f"{', '.join(flags or ['--profiles-mask'])}: distillation settings need --profiles")
        return None
    if args.distill_epochs is not None and not 1 <= args.distill_epochs <= args.epochs:
        why = "at least 1" if args.distill_epochs < 1 else f"longer than training (--epochs {args.epochs})"
        raise ConfigError(f"--distill-epochs {args.distill_epochs}: {why}; leave it out to distil for the whole run")
    return DistillConfig(**given)


def run(args: argparse.Namespace) -> int:
    """Check the folder, then train (or resume, or find the run finished)."""
    import torch

    from seqdistill.training import TrainConfig
    from seqdistill.training.run import check_run_dir, train_run

    check_run_dir(args.out, {"dataset": args.dataset})  # before torch threads or any loading
    if args.threads:
        torch.set_num_threads(args.threads)
    ctx = _join_torchrun(args)
    model = {
        "kind": args.model,
        "hidden": args.hidden,
        "n_blocks": args.blocks,
        "n_heads": args.heads,
        "max_len": args.max_len,
        "dropout": args.dropout,
    }
    train = TrainConfig(
        epochs=args.epochs,
        patience=args.patience,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        progress=not args.quiet,
        nproc=args.nproc,
        backend=args.backend,
    )
    try:
        info = train_run(
            args.dataset,
            args.out,
            model,
            train,
            profiles=args.profiles,
            profiles_mask=args.profiles_mask,
            distill=_distill(args),
            overwrite=args.overwrite,
        )
    finally:
        if ctx.active:
            torch.distributed.destroy_process_group()
    score = "no validation" if info.valid_score is None else f"valid {info.valid_metric} {info.valid_score:.4f}"
    if ctx.is_main:
        print(f"run written to {args.out}: best epoch {info.best_epoch} ({score}), model in {args.out}/model")
    return 0


def _join_torchrun(args: argparse.Namespace):
    """Under torchrun (``WORLD_SIZE`` > 1 in the environment) join its process group; refuse
    ``--nproc`` there (torchrun already started the processes)."""
    import os

    from seqdistill.errors import ConfigError
    from seqdistill.training import distributed

    world = os.environ.get("WORLD_SIZE", "1")
    if world != "1" and args.nproc > 1:
        raise ConfigError(
            f"--nproc {args.nproc}: this process was started by torchrun (WORLD_SIZE={world}), which "
            "starts the processes itself; drop --nproc"
        )
    return distributed.init_from_env(args.backend, args.device)
