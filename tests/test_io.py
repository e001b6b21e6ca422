"""The one atomic writer (seqdistill/_io.py) and the prepared-dataset folder built on it: nothing
half-written, nothing of the user's replaced, a crash between the two renames of a folder swap
repaired on the next open, leftovers of dead writers removed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import seqdistill as sd
from seqdistill import _io
from seqdistill.data import SplitConfig
from seqdistill.data.dataset import is_dataset_folder
from seqdistill.errors import DataError, OutputError


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def small_dataset():
    df = pl.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2, 2, 3, 3],
            "item_id": [5, 6, 7, 5, 6, 7, 5, 6],
            "timestamp": [1, 2, 3, 4, 5, 6, 7, 8],
        }
    )
    return sd.prepare(df, k_core=1, split=SplitConfig(valid="last_item", quantile=0.5))


# ------------------------------------------------------------------------------------ files
def test_overlap_names_how_an_output_stands_to_an_input(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to(data)  # a second name for the input
    assert _io.overlap(data, data) == "is"
    assert _io.overlap(tmp_path / "link", data) == "is"
    assert _io.overlap(data / "sub" / "x.json", data) == "lies inside"
    assert _io.overlap(tmp_path / "link" / "new", data) == "lies inside"
    assert _io.overlap(tmp_path, data / "sub") == "holds"
    assert _io.overlap(tmp_path / "data2", data) is None  # a name sharing a prefix is apart
    assert _io.overlap(data / ".." / "other", data) is None


def test_atomic_file_writes_all_or_nothing(tmp_path):
    p = tmp_path / "a.txt"
    _io.write_text(p, "first")
    with pytest.raises(RuntimeError):
        with _io.atomic_file(p) as f:
            f.write(b"half of the sec")
            raise RuntimeError("crash mid-write")
    assert p.read_text() == "first"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.txt"]  # no temporary left
    _io.write_json(p, {"x": np.int64(3), "y": [1.5]})
    assert json.loads(p.read_text()) == {"x": 3, "y": [1.5]}


def test_a_folder_in_the_way_of_a_file_is_refused(tmp_path):
    (tmp_path / "out.json").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        _io.write_json(tmp_path / "out.json", {})


def test_npy_refuses_objects(tmp_path):
    with pytest.raises(ValueError):
        _io.write_npy(tmp_path / "x.npy", np.array([{"a": 1}], dtype=object))
    assert not list(tmp_path.iterdir())


def test_clean_stale_removes_only_dead_writers_temporaries(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".x.npy.sdtmp-{dead_pid}-abcd1234"
    live = tmp_path / f".y.npy.sdtmp-{os.getpid()}-abcd1234"
    user = tmp_path / ".x.npy.tmp-123"  # looks temporary, but not ours
    for p in (stale, live, user):
        p.write_text("x")
    _io.clean_stale(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, user.name])


# ---------------------------------------------------------------------------------- folders
def test_atomic_dir_refuses_foreign_folders_and_leaves_them_untouched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    before = tree(tmp_path)
    with pytest.raises(OutputError, match="not a thing"):
        with _io.atomic_dir(out, is_ours=lambda p: False, what="thing", overwrite=True):
            raise AssertionError("the body must not run")
    assert tree(tmp_path) == before
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        with _io.atomic_dir(tmp_path / "file", is_ours=lambda p: True, what="thing", overwrite=True):
            pass


def test_atomic_dir_replaces_its_own_folder_only_when_asked(tmp_path):
    out = tmp_path / "out"
    ours = lambda p: (p / "marker").is_file()  # noqa: E731
    with _io.atomic_dir(out, is_ours=ours, what="thing") as tmp:
        (tmp / "marker").write_text("1")
    with pytest.raises(OutputError, match="overwrite"):
        with _io.atomic_dir(out, is_ours=ours, what="thing"):
            pass
    with pytest.raises(KeyError):
        with _io.atomic_dir(out, is_ours=ours, what="thing", overwrite=True) as tmp:
            (tmp / "marker").write_text("2")
            raise KeyError("crash while building")
    assert (out / "marker").read_text() == "1"  # the old copy stands
    with _io.atomic_dir(out, is_ours=ours, what="thing", overwrite=True) as tmp:
        (tmp / "marker").write_text("2")
    assert (out / "marker").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_empty_folder_can_be_written(tmp_path):
    (tmp_path / "out").mkdir()
    with _io.atomic_dir(tmp_path / "out", is_ours=lambda p: False, what="thing") as tmp:
        (tmp / "f").write_text("x")
    assert (tmp_path / "out" / "f").read_text() == "x"


CRASH = textwrap.dedent(
    """
    import os, sys
    import polars as pl
    import seqdistill as sd
    from seqdistill.data import SplitConfig
    real = os.replace
    def replace(src, dst):
        real(src, dst)
        if ".sdold-" in str(dst):  # the old copy is set aside, the new one not yet in place
            os._exit(9)
    os.replace = replace
    df = pl.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [5, 6, 5, 6], "timestamp": [1, 2, 3, 4]})
    ds = sd.prepare(df, k_core=1, split=SplitConfig(valid="none", quantile=0.5), name=sys.argv[2])
    ds.save(sys.argv[1])
    """
)


def test_a_crash_between_the_two_renames_is_repaired_on_open(tmp_path):
    out = tmp_path / "ds"
    small_dataset().save(out)
    r = subprocess.run([sys.executable, "-c", CRASH, str(out), "second"], capture_output=True, text=True)
    assert r.returncode == 9, r.stderr
    assert not out.exists()  # the window: neither name is the dataset
    back = sd.PreparedDataset.load(out)  # repaired: the complete new copy is put in place
    assert back.name == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # the old copy and temporaries are gone


def test_an_interrupted_save_that_never_finished_keeps_the_old_dataset(tmp_path):
    out = tmp_path / "ds"
    small_dataset().save(out)
    # what a kill -9 while building leaves: a half-written temporary of a dead process
    dead = int(
        subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout
    )
    half = tmp_path / f".ds.sdtmp-{dead}-00000000"
    half.mkdir()
    (half / "log.parquet").write_bytes(b"PAR1 half")
    back = sd.PreparedDataset.load(out)
    assert back.n_users == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


# --------------------------------------------------------------------------- the dataset folder
def test_save_refuses_a_folder_of_the_users(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "ratings.csv").write_text("u,i,t\n1,2,3\n")
    before = tree(tmp_path)
    with pytest.raises(OutputError, match="not a prepared dataset"):
        small_dataset().save(out)
    assert tree(tmp_path) == before


def test_save_replaces_a_dataset_unless_told_not_to(tmp_path):
    out = small_dataset().save(tmp_path / "ds")
    assert is_dataset_folder(out)
    with pytest.raises(OutputError, match="overwrite"):
        small_dataset().save(out, overwrite=False)
    small_dataset().save(out)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "manifest.json").write_text("{not json"), "unreadable manifest"),
        (lambda d: (d / "targets_test.parquet").unlink(), "missing"),
        (lambda d: (d / "log.parquet").write_bytes(b"PAR1 truncated"), "log.parquet: unreadable"),
        (
            lambda d: pl.DataFrame({"user": [0, 1, 2], "user_id": [1, 2, 3], "train_end": [9, 0, 0]}).write_parquet(
                d / "users.parquet"
            ),
            "train_end of user 0 is 9",
        ),
        (
            lambda d: (
                pl.read_parquet(d / "log.parquet")
                .with_columns(item=pl.lit(99, pl.Int64))
                .write_parquet(d / "log.parquet")
            ),
            "outside 1..3",
        ),
        (
            lambda d: pl.DataFrame({"user": [0], "position": [7]}).write_parquet(d / "targets_test.parquet"),
            "position 7",
        ),
        # user 0 trains on its first 2 rows: a test target at row 1 would be trained on
        (
            lambda d: pl.DataFrame({"user": [0], "position": [1]}).write_parquet(d / "targets_test.parquet"),
            r"targets_test\.parquet: row 0: position 1 of user 0 lies inside the user's training prefix \(train_end 2",
        ),
        (
            lambda d: (
                pl.read_parquet(d / "log.parquet")
                .with_columns(timestamp=-pl.col("timestamp"))
                .write_parquet(d / "log.parquet")
            ),
            r"log\.parquet: row 1: timestamp -2 is earlier than the row before it \(-1\) of the same user",
        ),
        (
            lambda d: (
                pl.read_parquet(d / "items.parquet")
                .with_columns(item_id=pl.Series([None, 5, 5, 7]))
                .write_parquet(d / "items.parquet")
            ),
            r"items\.parquet: column 'item_id' holds 5 twice",
        ),
        (
            lambda d: (
                pl.read_parquet(d / "users.parquet")
                .with_columns(user_id=pl.Series([1, 1, 3]))
                .write_parquet(d / "users.parquet")
            ),
            r"users\.parquet: column 'user_id' holds 1 twice",
        ),
    ],
)
def test_load_names_the_file_that_disagrees(tmp_path, damage, message):
    out = small_dataset().save(tmp_path / "ds")
    damage(out)
    with pytest.raises(DataError, match=message):
        sd.PreparedDataset.load(out)


def test_load_of_a_file_or_a_missing_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        sd.PreparedDataset.load(tmp_path / "f")
    with pytest.raises(DataError, match="no such folder"):
        sd.PreparedDataset.load(tmp_path / "nope")


def test_make_dir_with_makes_the_folder_whole_or_not_at_all(tmp_path):
    """A folder created with its content before it appears under its name: the experiment runner's
    work folder and its marker (a runner killed between mkdir and the marker left an unmarked
    folder that the rerun refused). A failing write leaves nothing; a dead process's temporary
    is removed; a live one's is left alone."""
    import subprocess
    import sys

    from seqdistill import _io

    target = tmp_path / "work" / "run-a"
    _io.make_dir_with(target, lambda d: (d / "marker.json").write_text("{}"))
    assert sorted(p.name for p in target.iterdir()) == ["marker.json"]
    assert [p.name for p in target.parent.iterdir()] == ["run-a"]

    def fail(d):
        (d / "half").write_text("x")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        _io.make_dir_with(tmp_path / "work" / "run-b", fail)
    assert [p.name for p in (tmp_path / "work").iterdir()] == ["run-a"]

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / "work" / f".run-c{_io.TMP_TAG}{int(dead.stdout)}-00ff00ff"
    live = tmp_path / "work" / f".run-d{_io.TMP_TAG}{os.getpid()}-00ff00ff"
    stale.mkdir()
    live.mkdir()
    _io.make_dir_with(tmp_path / "work" / "run-c", lambda d: None)
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == sorted(["run-a", "run-c", live.name])
