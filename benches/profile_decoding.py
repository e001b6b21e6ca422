"""Store statistics of SmolLM2-135M profiles under several decoding settings (issue #15).

    nice -n 10 python benches/profile_decoding.py ml-100k 16 before,compact,compact_ng3 [--out FILE]

The same users (drawn with seed 0 among those with a training prefix; the preset ``ml1m``
preparation: 5-core, global temporal split) are profiled with each setting on one CPU thread;
per setting the script prints the figures of :func:`seqdistill.profiles.quality.text_stats`, the
share of profiles naming a MovieLens genre and the wall time, and writes them (with the texts)
as JSON. docs/profiles.md ("Choosing the small-model defaults") holds the figures it gave.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from seqdistill import _io, datasets
from seqdistill.data import prepare
from seqdistill.profiles import HistoryConfig, ItemTexts, load_prompts, smollm_path
from seqdistill.profiles.history import resolve_rating_scale, user_history
from seqdistill.profiles.llm import GenerationConfig, TransformersBackend
from seqdistill.profiles.quality import item_titles, text_stats

COMPACT = {"style": "compact", "max_items": 40}
SETTINGS = {
    "before": ({"style": "full"}, {"max_new_tokens": 512}),
    "compact": (COMPACT, {"max_new_tokens": 128}),
    "compact_ng3": (COMPACT, {"max_new_tokens": 128, "no_repeat_ngram_size": 3}),
    "compact_ng5": (COMPACT, {"max_new_tokens": 128, "no_repeat_ngram_size": 5}),
    "compact_rp11": (COMPACT, {"max_new_tokens": 128, "repetition_penalty": 1.1}),
    "compact_rp13": (COMPACT, {"max_new_tokens": 128, "repetition_penalty": 1.3}),
}
GENRES = (
    "comedy drama action thriller romance horror sci-fi adventure war crime children animation "
    "documentary musical western mystery fantasy film-noir"
).split()
FULL_LINES = 60  # the full style keeps the most recent lines so that the prompt fits SmolLM2's context


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", choices=["ml-100k", "ml-1m"])
    ap.add_argument("users", type=int)
    ap.add_argument("settings", help=f"comma-separated: {', '.join(SETTINGS)}")
    ap.add_argument("--out", default="profile_decoding.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    raw = datasets.movielens_100k() if args.dataset == "ml-100k" else datasets.movielens_1m()
    ds = prepare(raw)
    cand = np.flatnonzero(np.asarray(ds.train_end) > 0)
    users = sorted(np.random.default_rng(0).choice(cand, args.users, replace=False).tolist())
    titles, out, model, tok = item_titles(ds), {}, None, None
    for key in args.settings.split(","):
        hcfg, gcfg = SETTINGS[key]
        history, gen = HistoryConfig(**hcfg), GenerationConfig(**gcfg)
        be = TransformersBackend(smollm_path(), gen, batch_size=8, device="cpu", model=model, tokenizer=tok)
        model, tok = be.model, be.tokenizer
        prompts, texts = load_prompts(ds.domain, None, history.style), ItemTexts(ds, history)
        scale = resolve_rating_scale(ds, history)
        convs = []
        for u in users:
            h = user_history(ds, u, texts, scale)
            convs.append(prompts.profile_messages(h.text(h.lines[-FULL_LINES:] if history.style == "full" else None)))
        t0 = time.perf_counter()
        res = be.generate(convs)
        seconds = time.perf_counter() - t0
        hist = [ds.history(u).tolist() for u in users]
        stats = text_stats([r.text for r in res], [r.completion_tokens for r in res], histories=hist, titles=titles,
                           max_new_tokens=gen.max_new_tokens)  # fmt: skip
        genre = float(np.mean([any(g in r.text.lower() for g in GENRES) for r in res]))
        out[key] = {**stats.to_dict(), "names_a_genre": genre, "seconds": seconds, "texts": [r.text for r in res]}
        print(key, json.dumps({k: v for k, v in out[key].items() if k != "texts"}), flush=True)
        _io.write_text(args.out, json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
