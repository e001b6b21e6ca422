"""generate_profiles: history text -> prompts -> LLM -> profile store, batch by batch, resumable.

Per batch of users: each training history becomes text lines; when the prompt would not fit the
context (``context_tokens - max_new_tokens``) or ``HistoryConfig.max_tokens``, the lines are split
in halves recursively ("chunk") or the oldest are dropped ("truncate"). All chunk prompts of the
batch are generated together; a user with several chunk profiles then has them merged with the
aggregation prompt (in groups that fit, repeated until one profile is left). Finished users are
appended to the store after each batch.

Everything that can be checked is checked before the store is touched (user ids, the history
budget, the prompts); the whole run then holds the store's lock, so a second process resuming the
same store is refused instead of profiling the same users twice. Error texts recorded in the store
pass through :func:`~seqdistill.profiles.llm.redact`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from seqdistill.errors import ConfigError, DataError

from .history import HistoryConfig, ItemTexts, keep_recent, resolve_rating_scale, split_halves, user_history
from .llm import GenerationResult, LLMBackend, redact
from .prompts import PromptSet, load_prompts
from .store import ProfileStore, dataset_fingerprint


@dataclass
class _Job:
    """A user's state within a batch."""

    user: int
    texts: list[str] = field(default_factory=list)  # chunk profiles still to merge (in order)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    n_chunks: int = 0
    error: str | None = None

    def add(self, r: GenerationResult) -> None:
        self.prompt_tokens += r.prompt_tokens
        self.completion_tokens += r.completion_tokens
        self.seconds += r.seconds
        if r.error and not self.error:
            self.error = r.error


def history_budget(backend: LLMBackend, prompts: PromptSet, config: HistoryConfig) -> int:
    """Tokens available for the history text inside one profile prompt."""
    overhead = backend.prompt_tokens(prompts.profile_messages(""))
    budget = backend.context_tokens - backend.config.max_new_tokens - overhead
    if config.max_tokens is not None:
        budget = min(budget, config.max_tokens)
    if budget < 16:
        raise ConfigError(
            f"context of {backend.context_tokens} tokens leaves {budget} for the history after "
            f"{backend.config.max_new_tokens} new tokens and a {overhead}-token template"
        )
    return budget


def generate_profiles(
    ds: Any,
    backend: LLMBackend,
    store_path: str | os.PathLike,
    *,
    history: HistoryConfig | None = None,
    prompt_dir: str | Path | None = None,
    users: Sequence[int] | None = None,
    batch_users: int = 32,
    progress: bool = True,
) -> ProfileStore:
    """Profile every user (or ``users``) not yet done in the store at ``store_path``.

    Users with an empty training prefix are skipped. Returns the store; its ``table()`` holds
    one latest row per user (status ok / error). The store records the dataset's fingerprint;
    resuming it with another dataset, model or prompt is a :class:`~seqdistill.errors.StoreError`.
    """
    history = history or HistoryConfig()
    prompts = load_prompts(ds.domain, prompt_dir, history.style)
    todo = _checked_users(users, int(ds.n_users))
    if not isinstance(batch_users, int) or isinstance(batch_users, bool) or batch_users < 1:
        raise ConfigError(f"batch_users: expected an integer >= 1, got {batch_users!r}")
    budget = history_budget(backend, prompts, history)
    meta = {
        "model": backend.name,
        "prompt_hash": prompts.hash,
        "dataset": getattr(ds, "name", None),
        "n_users": int(ds.n_users),
        "fingerprint": dataset_fingerprint(ds),
        "domain": ds.domain,
        "history": history.to_dict(),
        "generation": backend.config.to_dict(),
        "prompt_dir": None if prompt_dir is None else str(prompt_dir),
    }
    store = ProfileStore(store_path, meta)
    with store.writing():
        train_end = np.asarray(ds.train_end)
        done = store.done_users()
        pending = [int(u) for u in todo if train_end[u] > 0 and int(u) not in done]
        if not pending:
            return store
        item_texts = ItemTexts(ds, history)
        scale = resolve_rating_scale(ds, history)
        bar = tqdm(total=len(pending), unit="user", desc="profiles", disable=not progress, dynamic_ncols=True)
        try:
            for s in range(0, len(pending), batch_users):
                batch = pending[s : s + batch_users]
                jobs = _run_batch(ds, batch, backend, prompts, item_texts, scale, budget, history)
                store.append(_row(ds, j, backend.name, prompts.hash) for j in jobs)
                bar.update(len(batch))
        finally:
            bar.close()
    return store


def _checked_users(users: Sequence[int] | None, n_users: int) -> np.ndarray:
    """``users`` as int64 dense ids within ``0..n_users-1`` (all users when None)."""
    if users is None:
        return np.arange(n_users)
    arr = np.asarray(list(users) if not isinstance(users, np.ndarray) else users)
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"users: expected dense integer user ids, got dtype {arr.dtype} shape {arr.shape}")
    bad = arr[(arr < 0) | (arr >= n_users)]
    if bad.size:
        raise DataError(f"users: ids must be within 0..{n_users - 1}, got {int(bad[0])}")
    return arr.astype(np.int64)


def _run_batch(ds, batch, backend, prompts, item_texts, scale, budget, history) -> list[_Job]:
    jobs = [_Job(u) for u in batch]
    convs: list[list[dict[str, str]]] = []
    owner: list[_Job] = []
    for job in jobs:
        h = user_history(ds, job.user, item_texts, scale)
        counts = backend.count_tokens(h.lines)
        if history.overflow == "truncate":
            ranges = [(keep_recent(h.lines, counts, budget), len(h.lines))]
        else:
            ranges = split_halves(counts, budget)
        job.n_chunks = len(ranges)
        for a, b in ranges:
            convs.append(prompts.profile_messages(h.text(h.lines[a:b])))
            owner.append(job)
    for job, r in zip(owner, _generate(backend, convs)):
        job.add(r)
        job.texts.append(r.text)
    _merge(jobs, backend, prompts)
    return jobs


def _generate(backend: LLMBackend, convs: list) -> list[GenerationResult]:
    """Call the backend; an exception fails every conversation of the call."""
    try:
        res = backend.generate(convs)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # noqa: BLE001 - recorded per user and retried next run
        msg = redact(" ".join(f"{type(e).__name__}: {e}".split()))
        return [GenerationResult("", 0, 0, 0.0, error=msg) for _ in convs]
    if len(res) != len(convs):
        raise RuntimeError(f"backend {backend.name} returned {len(res)} results for {len(convs)} prompts")
    return res


def _merge(jobs: list[_Job], backend: LLMBackend, prompts: PromptSet) -> None:
    """Merge each job's chunk profiles with the aggregation prompt until one is left."""
    limit = backend.context_tokens - backend.config.max_new_tokens
    while True:
        convs, owner, groups_of = [], [], {}
        for job in jobs:
            if job.error or len(job.texts) <= 1:
                continue
            groups = _pack(job.texts, lambda g: backend.prompt_tokens(prompts.aggregate_messages(g)) <= limit)
            if len(groups) == len(job.texts):  # not even two parts fit one aggregation prompt
                job.error = f"aggregation prompt for 2 parts exceeds {limit} tokens"
                continue
            groups_of[job.user] = groups
            for g in groups:
                if len(g) == 1:
                    continue
                convs.append(prompts.aggregate_messages(g))
                owner.append(job)
        if not convs:
            return
        merged: dict[int, list[str]] = {}
        for job, r in zip(owner, _generate(backend, convs)):
            job.add(r)
            merged.setdefault(job.user, []).append(r.text)
        for job in jobs:
            if job.user in groups_of:
                it = iter(merged.get(job.user, []))
                job.texts = [g[0] if len(g) == 1 else next(it) for g in groups_of[job.user]]


def _pack(texts: list[str], fits) -> list[list[str]]:
    """Group consecutive texts greedily so that each group's aggregation prompt fits."""
    groups: list[list[str]] = []
    cur: list[str] = []
    for t in texts:
        if cur and not fits(cur + [t]):
            groups.append(cur)
            cur = []
        cur.append(t)
    groups.append(cur)
    return groups


def _row(ds: Any, job: _Job, model: str, prompt_hash: str) -> dict[str, Any]:
    ok = job.error is None and len(job.texts) == 1 and bool(job.texts[0].strip())
    error = redact(job.error) if job.error else (None if ok else "empty generation")
    return {
        "user": job.user,
        "user_id": str(ds.user_ids[job.user]),
        "profile": job.texts[0] if ok else "",
        "model": model,
        "prompt_hash": prompt_hash,
        "prompt_tokens": job.prompt_tokens,
        "completion_tokens": job.completion_tokens,
        "seconds": job.seconds,
        "n_chunks": job.n_chunks,
        "status": "ok" if ok else "error",
        "error": error,
    }
