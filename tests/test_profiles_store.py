"""The profile store's guarantees: it knows its dataset, survives torn parts and kill -9, refuses a
second writer and never takes over a folder that is not a store."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from test_profiles_pipeline import FakeBackend
from test_profiles_toy import movie_dataset

from seqdistill.errors import OutputError, StoreError
from seqdistill.profiles.pipeline import generate_profiles
from seqdistill.profiles.stats_profile import write_stats_profiles
from seqdistill.profiles.store import ProfileStore

SPAWN = mp.get_context("spawn")  # a fresh interpreter: no inherited lock, no forked threads


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _prepared(first_user: int):
    """A real PreparedDataset named "same" with 4 users whose raw ids start at ``first_user``."""
    from seqdistill.data import prepare

    rows = [
        (first_user + u, f"m{(u + k) % 6}", 100 * k + u, float(1 + (u + k) % 5)) for u in range(4) for k in range(8)
    ]
    log = pl.DataFrame(
        rows,
        schema={"user_id": pl.Int64, "item_id": pl.String, "timestamp": pl.Int64, "rating": pl.Float32},
        orient="row",
    )
    items = pl.DataFrame(
        {
            "item_id": [f"m{i}" for i in range(6)],
            "title": [f"Movie {i}" for i in range(6)],
            "genres": ["Comedy", "Drama"] * 3,
        }
    )
    return prepare(log, items, k_core=None, name="same", domain="movies")


# ------------------------------------------------------------------------------ whose store
def test_store_of_another_dataset_with_same_name_and_size_is_refused(tmp_path):
    a, b = _prepared(0), _prepared(100)
    assert (a.name, a.n_users) == (b.name, b.n_users) and a.fingerprint() != b.fingerprint()
    path = tmp_path / "store"
    store = write_stats_profiles(a, path)
    assert json.loads((path / "meta.json").read_text())["fingerprint"] == a.fingerprint()
    before = _snapshot(path)
    with pytest.raises(StoreError) as err:
        write_stats_profiles(b, path)
    msg = str(err.value)
    assert str(path) in msg and a.fingerprint() in msg and b.fingerprint() in msg and "\n" not in msg
    generate_profiles(b, FakeBackend(), tmp_path / "llm-store-b", progress=False)
    backend = FakeBackend()
    with pytest.raises(StoreError, match=b.fingerprint()):
        generate_profiles(a, backend, tmp_path / "llm-store-b", progress=False)
    assert backend.calls == 0
    assert _snapshot(path) == before  # nothing of the store changed
    store.check_dataset(a)
    with pytest.raises(StoreError, match="fingerprint"):
        ProfileStore(path).check_dataset(b)
    # the same dataset resumes without a word
    assert write_stats_profiles(a, path).table().height == a.n_users


def test_store_without_fingerprint_is_adopted_once_with_a_warning(tmp_path):
    a, b = _prepared(0), _prepared(100)
    path = tmp_path / "store"
    write_stats_profiles(a, path, users=[0, 1])
    meta = json.loads((path / "meta.json").read_text())
    del meta["fingerprint"]  # as written before fingerprints existed
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="no dataset fingerprint"):
        ProfileStore(path).check_dataset(b)  # a reader cannot tell: warned, and the store is not changed
    assert "fingerprint" not in json.loads((path / "meta.json").read_text())
    with pytest.warns(UserWarning, match="no dataset fingerprint"):
        store = write_stats_profiles(a, path)
    assert sorted(store.done_users()) == [0, 1, 2, 3]
    assert json.loads((path / "meta.json").read_text())["fingerprint"] == a.fingerprint()
    with pytest.raises(StoreError, match="fingerprint"):
        write_stats_profiles(b, path)


# ------------------------------------------------------------------------------ damaged stores
@pytest.mark.parametrize("torn", [1, 2])  # a middle part and the last one
def test_torn_part_is_set_aside_and_its_users_profiled_again(tmp_path, torn):
    ds = movie_dataset(n_users=9, seed=3)
    path = tmp_path / "store"
    generate_profiles(ds, FakeBackend(), path, batch_users=3, progress=False)
    part = path / f"part-{torn:06d}.parquet"
    lost = set(pl.read_parquet(part)["user"].to_list())
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 2])  # what a crash or a full disk leaves
    backend = FakeBackend()
    with pytest.warns(UserWarning, match=f"part-{torn:06d}.parquet.*moved aside"):
        generate_profiles(ds, backend, path, batch_users=3, progress=False)
    assert len(backend.prompts) == len(lost) == 3  # only the torn part's users were redone
    assert (path / f"part-{torn:06d}.parquet.torn").read_bytes() == data[: len(data) // 2]
    rows = ProfileStore(path).rows()
    assert sorted(rows["user"].to_list()) == list(range(9))  # every user exactly once
    assert (rows["status"] == "ok").all()
    assert [p.name for p in ProfileStore(path).parts()] == [f"part-{i:06d}.parquet" for i in (0, 1, 2, 3) if i != torn]


def test_reader_sets_a_torn_part_aside_and_reads_the_rest(tmp_path):
    ds = movie_dataset(n_users=4, seed=1)
    path = tmp_path / "store"
    write_stats_profiles(ds, path, batch_users=2)
    (path / "part-000000.parquet").write_bytes(b"PAR1 torn")
    with pytest.warns(UserWarning, match="part-000000.parquet"):
        store = ProfileStore(path)
    assert store.table()["user"].to_list() == [2, 3]
    assert (path / "part-000000.parquet.torn").is_file()


def test_deleted_meta_json_is_an_error_not_a_new_store(tmp_path):
    ds = movie_dataset(n_users=4, seed=1)
    path = tmp_path / "store"
    write_stats_profiles(ds, path)
    (path / "meta.json").unlink()
    before = _snapshot(path)
    with pytest.raises(StoreError, match=rf"{path}: meta.json is missing .*part"):
        write_stats_profiles(ds, path)
    with pytest.raises(StoreError, match="meta.json is missing"):
        generate_profiles(ds, FakeBackend(), path, progress=False)
    with pytest.raises(StoreError, match="meta.json is missing"):
        ProfileStore(path)
    assert _snapshot(path) == before and not (path / "meta.json").exists()


def test_a_folder_that_is_not_a_store_is_left_alone(tmp_path):
    from seqdistill.profiles.encode import encode_store

    ds = movie_dataset(n_users=3, seed=1)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    with pytest.raises(StoreError, match=r"mine: folder exists and is not a profile store .*notes.txt"):
        write_stats_profiles(ds, mine)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]  # not even a lock file
    with pytest.raises(StoreError, match="no profile store here"):
        encode_store(tmp_path / "absent", tmp_path / "emb")
    assert not (tmp_path / "absent").exists() and not (tmp_path / "emb").exists()
    with pytest.raises(StoreError, match="is a folder, found a file"):
        ProfileStore(mine / "notes.txt")


def test_a_foreign_parquet_named_like_a_part_is_refused_not_moved(tmp_path):
    ds = movie_dataset(n_users=3, seed=1)
    path = tmp_path / "store"
    write_stats_profiles(ds, path)
    pl.DataFrame({"x": [1, 2]}).write_parquet(path / "part-000007.parquet")
    with pytest.raises(StoreError, match=r"part-000007.parquet: columns \['x'\]"):
        ProfileStore(path)
    assert pl.read_parquet(path / "part-000007.parquet")["x"].to_list() == [1, 2]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temporaries_are_cleaned_when_the_store_is_written(tmp_path):
    ds = movie_dataset(n_users=4, seed=1)
    path = tmp_path / "store"
    write_stats_profiles(ds, path, users=[0])
    old_part, old_meta = path / ".part-k2j3x.parquet", path / ".meta.json.a8f2"  # mkstemp names of old versions
    dead = path / f".part-000001.parquet.sdtmp-{_dead_pid()}-00ff"
    live = path / f".part-000001.parquet.sdtmp-{os.getpid()}-00aa"  # a writer that is still running
    for p in (old_part, old_meta, dead, live):
        p.write_bytes(b"half")
    store = write_stats_profiles(ds, path)
    assert not old_part.exists() and not old_meta.exists() and not dead.exists() and live.exists()
    assert [p.name for p in store.parts()] == ["part-000000.parquet", "part-000001.parquet"]
    assert sorted(store.rows()["user"].to_list()) == [0, 1, 2, 3]


def test_export_never_replaces_a_file_unasked(tmp_path):
    ds = movie_dataset(n_users=3, seed=1)
    store = write_stats_profiles(ds, tmp_path / "store")
    out = tmp_path / "profiles.parquet"
    out.write_text("the user's")
    with pytest.raises(OutputError, match="profiles.parquet: exists; pass overwrite=True"):
        store.export(out)
    assert out.read_text() == "the user's"
    with pytest.raises(OutputError, match="lies inside the profile store"):
        store.export(tmp_path / "store" / "meta.json", overwrite=True)
    with pytest.raises(OutputError, match="is a folder"):
        store.export(tmp_path / "store", overwrite=True)
    assert json.loads((tmp_path / "store" / "meta.json").read_text())["n_users"] == 3
    store.export(out, overwrite=True)
    assert pl.read_parquet(out)["user"].to_list() == [0, 1, 2]


# ------------------------------------------------------------------------------ two processes
def _hold_lock(path: str, ready, release) -> None:
    with ProfileStore(path).writing():
        ready.set()
        release.wait(120)


@pytest.mark.parametrize("how", ["exit", "kill -9"])
def test_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path, how):
    ds = movie_dataset(n_users=6, seed=2)
    path = tmp_path / "store"
    write_stats_profiles(ds, path, users=[0, 1])
    ready, release = SPAWN.Event(), SPAWN.Event()
    holder = SPAWN.Process(target=_hold_lock, args=(str(path), ready, release))
    holder.start()
    try:
        assert ready.wait(120)
        before = _snapshot(path)
        with pytest.raises(StoreError, match=rf"{path}: store is in use by pid {holder.pid}"):
            write_stats_profiles(ds, path)
        row = {
            "user": 5,
            "user_id": "u5",
            "profile": "p",
            "model": "stats-profile",
            "prompt_hash": "h",
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "seconds": 0.0,
            "n_chunks": 1,
            "status": "ok",
            "error": None,
        }
        with pytest.raises(StoreError, match="in use by pid"):
            ProfileStore(path).append([row])
        assert ProfileStore(path).table()["user"].to_list() == [0, 1]  # readers are not blocked
        assert _snapshot(path) == before
    finally:
        if how == "exit":
            release.set()
        else:
            os.kill(holder.pid, signal.SIGKILL)
        holder.join(60)
    store = write_stats_profiles(ds, path)  # the lock went with its holder
    assert sorted(store.rows()["user"].to_list()) == list(range(6))


class _SlowBackend(FakeBackend):
    def generate(self, conversations):
        time.sleep(0.3)
        return super().generate(conversations)


def _generate_slowly(path: str) -> None:
    generate_profiles(movie_dataset(n_users=12, seed=7), _SlowBackend(), path, batch_users=2, progress=False)


def test_kill_9_during_generation_then_resume_gives_every_user_once(tmp_path):
    path = tmp_path / "store"
    child = SPAWN.Process(target=_generate_slowly, args=(str(path),))
    child.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(path.glob("part-*.parquet"))) < 2:
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    done = ProfileStore(path).done_users()
    assert 4 <= len(done) < 12
    ds = movie_dataset(n_users=12, seed=7)
    backend = FakeBackend()
    generate_profiles(ds, backend, path, batch_users=2, progress=False)
    assert len(backend.prompts) == 12 - len(done)  # finished users are not redone
    rows = ProfileStore(path).rows()
    assert sorted(rows["user"].to_list()) == list(range(12)) and (rows["status"] == "ok").all()
    assert not [p.name for p in path.iterdir() if ".sdtmp-" in p.name]
