"""``seqdistill prepare``: bad options, item metadata files, and output folders that are not ours
to write (the input's folder, a user's folder, a file, a read-only or full disk)."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import polars as pl
import pytest

from .conftest import tree

PREP = ("prepare", "log.csv", "--out", "out")

OPTION_CASES = [
    ("k-core-three-values", ["--k-core", "5", "5", "7"], ["--k-core", "5 5 7"]),
    ("k-core-zero", ["--k-core", "0"], ["--k-core", "'0'"]),
    ("k-core-negative", ["--k-core", "2", "-1"], ["--k-core", "'-1'"]),
    ("k-core-word", ["--k-core", "five"], ["--k-core", "'five'"]),
    ("quantile-above-one", ["--quantile", "1.5"], ["--quantile", "'1.5'"]),
    ("quantile-zero", ["--quantile", "0"], ["--quantile", "'0'"]),
    ("quantile-nan", ["--quantile", "nan"], ["--quantile", "'nan'"]),
    ("valid-quantile-one", ["--valid-quantile", "1"], ["--valid-quantile", "'1'"]),
    ("split-unknown", ["--split", "random"], ["--split", "'random'"]),
    ("target-unknown", ["--target", "middle"], ["--target", "'middle'"]),
    ("valid-unknown", ["--valid", "sometimes"], ["--valid", "'sometimes'"]),
    ("domain-unknown", ["--domain", "books"], ["--domain", "'books'"]),
    # one column for two roles: the users would silently be the items (or the times)
    ("user-col-is-item-col", ["--user-col", "item_id"], ["log.csv", "'item_id'", "user_id and item_id"]),
    ("item-col-is-time-col", ["--item-col", "timestamp"], ["'timestamp'", "item_id and timestamp"]),
    ("rating-col-is-time-col", ["--rating-col", "timestamp"], ["'timestamp'", "timestamp and rating"]),
    ("rating-col-is-user-col", ["--rating-col", "user_id"], ["'user_id'", "user_id and rating"]),
    ("time-col-empty-name", ["--time-col", ""], ["log.csv", "missing column ''"]),
    # output paths no folder can be made at
    ("out-below-a-file", ["--out", "log.csv/out"], ["--out log.csv/out", "log.csv is a file, not a folder"]),
    ("out-empty", ["--out", ""], ["--out ''", "an empty path"]),
    ("out-name-too-long", ["--out", "x" * 300], ["name too long"]),
]


@pytest.mark.parametrize("extra, names", [c[1:] for c in OPTION_CASES], ids=[c[0] for c in OPTION_CASES])
def test_bad_option(ws: Path, refused, extra, names) -> None:
    refused(*PREP, *extra, names=tuple(names))
    assert not (ws / "out").exists()


def test_k_core_leaving_nothing(ws: Path, refused) -> None:
    refused(*PREP, "--k-core", "4", names=("log", "nothing left after k-core", "k_user=4"))
    assert not (ws / "out").exists()


# -------------------------------------------------------------------------- --items
ITEM_CASES = [
    ("items-absent", None, [], ["items.csv", "no such file"]),
    ("items-empty", b"", [], ["items.csv", "empty"]),
    ("items-no-id-column", "movie,title\n10,a\n", [], ["items.csv", "missing column 'item_id'", "'movie'"]),
    ("items-wrong-id-col", "item_id,title\n10,a\n", ["--items-id-col", "sku"], ["items.csv", "'sku'"]),
    ("items-match-nothing", "item_id,title\n98,a\n99,b\n", [], ["items.csv", "no id in column 'item_id'", "log.csv"]),
    ("items-leading-zeros-match-nothing", "item_id,title\n010,a\n011,b\n", [], ["items.csv", "'010'"]),
    ("items-ragged", "item_id,title\n10,a\n11,b,c\n", [], ["items.csv", "row 1 has 3 fields"]),
    ("items-null-id", "item_id,title\n10,a\n,b\n", [], ["items.csv", "'item_id'", "null at row 1"]),
    ("items-nan-id", "item_id,title\n10,a\nnan,b\n", [], ["items.csv", "'nan'", "row 1"]),
    ("items-duplicate-id", "item_id,title\n10,a\n10,b\n", [], ["'item_id'", "duplicated", "10"]),
    ("items-invalid-utf8", b"item_id,title\n10,\xff\n", [], ["items.csv", "UTF-8", "line 2"]),
]


@pytest.mark.parametrize("content, extra, names", [c[1:] for c in ITEM_CASES], ids=[c[0] for c in ITEM_CASES])
def test_bad_items_file(ws: Path, refused, content, extra, names) -> None:
    if isinstance(content, bytes):
        (ws / "items.csv").write_bytes(content)
    elif content is not None:
        (ws / "items.csv").write_text(content)
    refused(*PREP, "--k-core", "1", "--items", "items.csv", *extra, names=tuple(names))
    assert not (ws / "out").exists()


def test_items_folder(ws: Path, refused) -> None:
    (ws / "items.parquet").mkdir()
    refused(*PREP, "--k-core", "1", "--items", "items.parquet", names=("items.parquet", "is a folder"))


def test_items_damaged_parquet(ws: Path, refused) -> None:
    pl.DataFrame({"item_id": list(range(200)), "title": ["t"] * 200}).write_parquet(ws / "items.parquet")
    data = (ws / "items.parquet").read_bytes()
    (ws / "items.parquet").write_bytes(data[:-20])
    refused(*PREP, "--k-core", "1", "--items", "items.parquet", names=("items.parquet", "parquet"))


# -------------------------------------------------------------------------- --out
def test_out_is_the_inputs_folder(ws: Path, refused) -> None:
    refused("prepare", "log.csv", "--out", ".", "--k-core", "1", names=("--out .", "holds the input log.csv"))


def test_out_is_a_parent_of_the_input(ws: Path, refused) -> None:
    (ws / "data" / "raw").mkdir(parents=True)
    (ws / "log.csv").rename(ws / "data" / "raw" / "log.csv")
    refused(
        "prepare",
        "data/raw/log.csv",
        "--out",
        "data",
        "--k-core",
        "1",
        "--overwrite",
        names=("--out data", "holds the input data/raw/log.csv"),
    )


def test_out_is_the_input_file(ws: Path, refused) -> None:
    refused("prepare", "log.csv", "--out", "log.csv", "--k-core", "1", names=("--out log.csv", "not a folder"))


def test_out_holds_the_items_file(ws: Path, refused) -> None:
    (ws / "meta").mkdir()
    (ws / "meta" / "items.csv").write_text("item_id,title\n10,a\n")
    refused(
        "prepare",
        "log.csv",
        "--out",
        "meta",
        "--k-core",
        "1",
        "--items",
        "meta/items.csv",
        names=("--out meta", "holds the input meta/items.csv"),
    )


def test_out_is_a_users_folder(ws: Path, refused) -> None:
    (ws / "mine").mkdir()
    (ws / "mine" / "notes.txt").write_text("do not delete")
    refused(*PREP[:3], "mine", "--k-core", "1", "--overwrite", names=("mine", "not a prepared dataset"))


def test_out_is_a_symlink(ws: Path, refused) -> None:
    (ws / "real").mkdir()
    (ws / "link").symlink_to(ws / "real")
    refused(*PREP[:3], "link", "--k-core", "1", names=("link", "not a folder"))


def test_existing_dataset_needs_overwrite(ws: Path, run, refused) -> None:
    assert run(*PREP, "--k-core", "1").code == 0
    refused(*PREP, "--k-core", "2", names=("out", "--overwrite"))
    # with --overwrite it is replaced: the second dataset has k_core 2 in its manifest
    r = run(*PREP, "--k-core", "2", "--overwrite")
    assert r.code == 0, r.err
    assert '"k_core": [\n    2,\n    2\n  ]' in (ws / "out" / "manifest.json").read_text()
    assert sorted(p.name for p in ws.iterdir()) == ["log.csv", "out"]


def test_read_only_output_folder(ws: Path, refused, monkeypatch) -> None:
    """EROFS while creating the temporary folder (what a read-only mount reports)."""
    real = os.mkdir

    def mkdir(path, *a, **k):
        if "sdtmp" in str(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(os, "mkdir", mkdir)
    refused(*PREP, "--k-core", "1", names=("out", "read-only file system"))
    assert not (ws / "out").exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder_by_permissions(ws: Path, refused) -> None:
    (ws / "ro").mkdir()
    (ws / "ro").chmod(0o555)
    try:
        refused("prepare", "log.csv", "--out", "ro/out", "--k-core", "1", names=("ro", "permission denied"))
    finally:
        (ws / "ro").chmod(0o755)


def test_disk_full_while_saving(ws: Path, run, monkeypatch) -> None:
    """ENOSPC from fsync (where a full disk shows up for buffered writes): one line, exit 2, no
    half-written dataset, no temporary folder left, an existing dataset kept as it was."""
    assert run(*PREP, "--k-core", "1").code == 0
    before = tree(ws)

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    r = run(*PREP, "--k-core", "2", "--overwrite")
    assert r.code == 2 and "Traceback" not in r.err
    assert r.err.strip() == "seqdistill prepare: error: disk full (no space left on device) (while writing out)"
    assert tree(ws) == before


def test_unreadable_input(ws: Path, refused, monkeypatch) -> None:
    def denied(path, *a, **k):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(pl, "read_csv", denied)
    refused(*PREP, "--k-core", "1", names=("log.csv", "permission denied"))


@pytest.mark.parametrize(
    "out, names",
    [
        (".", ["holds the input"]),
        ("log.csv", ["not a folder"]),
        ("mine", ["not a prepared dataset"]),
    ],
    ids=["inputs-folder", "input-file", "users-folder"],
)
def test_out_is_checked_before_the_input_is_read(ws: Path, refused, monkeypatch, out, names) -> None:
    import seqdistill.data

    def must_not_read(*a, **k):
        raise AssertionError("the input was read before the output folder was checked")

    monkeypatch.setattr(seqdistill.data, "read_interactions", must_not_read)
    monkeypatch.setattr(sys.modules["seqdistill.data.prepare"], "read_interactions", must_not_read)
    monkeypatch.setattr(sys.modules["seqdistill.data.prepare"], "_from_parquet", must_not_read)
    (ws / "mine").mkdir()
    (ws / "mine" / "notes.txt").write_text("mine")
    refused("prepare", "log.csv", "--out", out, names=tuple(names))


@pytest.mark.parametrize("target", ["loop", "absent"], ids=["symlink-loop", "dangling-symlink"])
def test_out_is_a_symlink_to_nowhere(ws: Path, refused, target) -> None:
    (ws / "link").symlink_to(ws / target)
    if target == "loop":
        (ws / "loop").symlink_to(ws / "loop")
    refused(*PREP[:3], "link", "--k-core", "1", names=("--out link", "symbolic link that leads to no folder"))
    refused(*PREP[:3], "link/out", "--k-core", "1", names=("--out link/out", "link is a symbolic link"))
