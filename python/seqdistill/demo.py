"""``seqdistill demo``: the whole job on the embedded synthetic planted-semantics dataset.

prepare → LLM profiles with SmolLM2 for a sample of users (the others are masked out of the term)
→ encode → reduce → train vanilla and distilled SASRec, plus the shuffled-profile and
statistics-profile controls → evaluate on the test part once → report. Every stage writes into
the run folder and is skipped when its output is already there, so an interrupted demo resumes.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqdistill.errors import ConfigError

__all__ = ["HIDDEN", "DemoOptions", "demo_config", "run_demo"]

HIDDEN = 32  # the demo model's hidden size (= profile target size)


@dataclass(frozen=True)
class DemoOptions:
    """The demo's budget (``seqdistill demo`` flags of the same names).

    ``llm_users``: users profiled by the LLM, the rest masked out of the term (0: statistics
    profiles only); more than :data:`HIDDEN`, as the reducer needs more profiled users than the
    model's hidden size. ``threads``: torch CPU threads for training (1 is fastest on small models).
    """

    out: str | Path = "runs/demo"
    users: int = 2000
    items: int = 400
    llm_users: int = 64
    max_new_tokens: int = 64
    epochs: int = 20
    seeds: tuple[int, ...] = (0,)
    threads: int = 1

    def __post_init__(self) -> None:
        for name in ("users", "items", "max_new_tokens", "epochs", "threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"demo: {name} must be >= 1, got {getattr(self, name)!r}")
        if self.llm_users < 0 or any(s < 0 for s in self.seeds) or not self.seeds:
            raise ConfigError(
                f"demo: llm_users and seeds must be >= 0 (and one seed at least), "
                f"got {self.llm_users!r} and {list(self.seeds)!r}"
            )
        if 0 < self.llm_users <= HIDDEN:
            raise ConfigError(
                f"--llm-users {self.llm_users}: the reducer needs more profiled users than the "
                f"model's hidden size ({HIDDEN}); use at least {HIDDEN + 1}, or 0 for statistics "
                "profiles only"
            )


def demo_config(opts: DemoOptions, store: Path) -> dict[str, Any]:
    """The demo's experiment configuration (see docs/experiments.md for the fields)."""
    llm = opts.llm_users > 0
    return {
        "name": "demo",
        "seeds": list(opts.seeds),
        "controls": ["shuffled", "stats"] if llm else ["shuffled"],
        "k_core": [2, 2],
        "eval_ks": [5, 10, 20],
        "dataset": {
            "name": "synthetic",
            "kwargs": {"n_users": opts.users, "n_items": opts.items, "seed": 0, "median_length": 6.0},
        },
        "split": {"kind": "global_temporal", "quantile": 0.8, "target": "last", "valid": "time", "valid_quantile": 0.8},
        "model": {"kind": "sasrec", "max_len": 50, "hidden": HIDDEN, "n_blocks": 2, "n_heads": 2, "dropout": 0.2},
        "train": {"epochs": opts.epochs, "batch_size": 128, "lr": 0.002, "patience": 4, "progress": False},
        "profiles": {
            "source": "llm" if llm else "stats",
            "store": str(store) if llm else None,
            "reduce": "pca",
            "seed": 0,
        },
        "distill": {
            "alpha": 0.5,
            "dynamic_beta": False,
            "block": -1,
            "pooling": "mean",
            "epochs": max(1, opts.epochs // 2),
        },
    }


def run_demo(opts: DemoOptions | None = None) -> Any:
    """Run the demo into ``opts.out`` (resumed when it exists); returns the report's summary."""
    import numpy as np
    import torch

    from seqdistill.experiments.config import ExperimentConfig
    from seqdistill.experiments.report import report
    from seqdistill.experiments.runner import prepare_dataset, run_experiment

    opts = opts or DemoOptions()
    torch.set_num_threads(opts.threads)
    t0 = time.perf_counter()
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    store = out / "llm_profiles"
    config = ExperimentConfig.from_dict(demo_config(opts, store), where="demo")
    ds = prepare_dataset(config, out)
    s = ds.stats
    print(
        f"[demo] dataset: {s['users']} users, {s['items']} items, {s['interactions']} interactions, "
        f"avg length {s['avg_length']:.1f}; {s['test_targets']} test targets",
        flush=True,
    )

    if opts.llm_users > 0:
        from seqdistill.profiles import (
            GenerationConfig,
            HistoryConfig,
            TransformersBackend,
            generate_profiles,
            smollm_path,
        )
        from seqdistill.profiles.llm import SMALL_MODEL_DECODING, SMALL_MODEL_ITEMS

        rng = np.random.default_rng(0)
        candidates = np.flatnonzero(ds.train_end > 0)
        users = np.sort(rng.choice(candidates, size=min(opts.llm_users, len(candidates)), replace=False))
        print(
            f"[demo] LLM profiles (SmolLM2-135M-Instruct, greedy, no repeated 3-grams, compact prompts, "
            f"{opts.max_new_tokens} new tokens) "
            f"for {len(users)} users -> {store}",
            flush=True,
        )
        torch.set_num_threads(os.cpu_count() or 1)  # generation is large matrix work: use every core
        # The small-model decoding and prompts measured on MovieLens users (docs/profiles.md).
        decoding = {**SMALL_MODEL_DECODING, "max_new_tokens": opts.max_new_tokens}
        backend = TransformersBackend(smollm_path(), GenerationConfig(**decoding), batch_size=16)
        history = HistoryConfig(style="compact", max_items=SMALL_MODEL_ITEMS)
        st = generate_profiles(ds, backend, store, history=history, users=users, batch_users=16)
        torch.set_num_threads(opts.threads)
        table = st.table(ok_only=True)
        if table.height:
            print(f"[demo] example profile (user {table['user'][0]}):\n{table['profile'][0][:600]}\n", flush=True)

    run_experiment(config, out)
    rep = report(out)
    print(f"[demo] finished in {time.perf_counter() - t0:.0f}s")
    print(f"[demo] report: {out / 'report.md'} (plots and report.json beside it)")
    best = rep.get("best_distilled")
    if best:
        v = rep["variants"]
        print(
            f"[demo] test NDCG@10 vanilla {v['vanilla']['test_ndcg@10'][0]:.4f} vs {best} {v[best]['test_ndcg@10'][0]:.4f}"
        )
    return rep
