"""Local-backend profile generation throughput: SmolLM2-135M on CPU, batch sizes 1, 8, 32.

Batch size 1 is the baseline for the batched cases; ``same_result`` says whether the greedy
texts equal the baseline's. Prompts are built from a synthetic movie dataset through the real
history/prompt code. Usage: python benches/profiles.py [--users 32] [--new-tokens 24] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))


class _Dataset:
    """A PreparedDataset-shaped synthetic movie log (kept here so the bench needs no data module)."""

    def __init__(self, n_users: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        genres = ["Comedy", "Drama", "Horror", "Sci-Fi", "Animation", "Thriller", "Romance", "War"]
        n_items = 200
        self.n_users, self.n_items, self.domain, self.name = n_users, n_items, "movies", "bench"
        self.item_meta = pl.DataFrame(
            {
                "item": np.arange(1, n_items + 1),
                "item_id": [f"m{i}" for i in range(1, n_items + 1)],
                "title": [
                    f"The {['Silent', 'Last', 'Red', 'Lost', 'Grand'][i % 5]} {['River', 'Night', 'House', 'Road'][i % 4]} {i}"
                    for i in range(1, n_items + 1)
                ],
                "year": rng.integers(1950, 2020, n_items),
                "genres": ["|".join(rng.choice(genres, 2, replace=False)) for _ in range(n_items)],
            }
        )
        lengths = rng.integers(8, 25, n_users)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.items = rng.integers(1, n_items + 1, int(lengths.sum())).astype(np.int64)
        self.timestamps = np.arange(len(self.items), dtype=np.int64)
        self.ratings = rng.integers(1, 6, len(self.items)).astype(np.float32)
        self.train_end = (lengths - 2).astype(np.int64)
        self.user_ids = pl.Series([f"u{u}" for u in range(n_users)])
        self.item_ids = pl.Series([None] + [f"m{i}" for i in range(1, n_items + 1)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=24)
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from seqdistill.profiles.history import HistoryConfig, ItemTexts, resolve_rating_scale, user_history
    from seqdistill.profiles.llm import GenerationConfig, TransformersBackend
    from seqdistill.profiles.prompts import load_prompts
    from seqdistill.profiles.smollm import converted_path

    ds = _Dataset(args.users)
    texts, scale = ItemTexts(ds), resolve_rating_scale(ds, HistoryConfig())
    prompts = load_prompts("movies")
    convs = [prompts.profile_messages(user_history(ds, u, texts, scale).text()) for u in range(ds.n_users)]
    backend = TransformersBackend(converted_path(), GenerationConfig(max_new_tokens=args.new_tokens), device="cpu")
    backend.batch_size = 1
    backend.generate(convs[:1])  # warm-up
    rows, base_s, base_texts = [], None, None
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        backend.batch_size = bs
        t0 = time.perf_counter()
        res = backend.generate(convs)
        sec = time.perf_counter() - t0
        out_tokens = sum(r.completion_tokens for r in res)
        in_tokens = sum(r.prompt_tokens for r in res)
        texts_now = [r.text for r in res]
        if base_s is None:
            base_s, base_texts = sec, texts_now
        same = texts_now == base_texts
        n_same = sum(a == b for a, b in zip(texts_now, base_texts))
        print(
            f"batch {bs:>3}: {sec:7.2f} s  {len(res) / sec:6.2f} users/s  {out_tokens / sec:7.1f} new tok/s  "
            f"{in_tokens / len(res):.0f} prompt tok/user  speed-up x{base_s / sec:.2f}  same texts {n_same}/{len(res)}"
        )
        rows.append(
            {
                "case": f"smollm2-135m cpu batch={bs} users={len(res)} new_tokens={args.new_tokens}",
                "ours_s": round(sec, 3),
                "baseline": "batch=1",
                "baseline_s": round(base_s, 3),
                "ratio": round(base_s / sec, 3),
                "same_result": same,
                "users_per_s": round(len(res) / sec, 3),
                "new_tokens_per_s": round(out_tokens / sec, 1),
                "same_texts": n_same,
            }
        )
    if args.json:
        out = {
            "bench": "profiles-generation",
            "machine": f"{platform.machine()} {os.cpu_count()} cpus, torch threads {args.threads}, {platform.platform()}",
            "rows": rows,
        }
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
