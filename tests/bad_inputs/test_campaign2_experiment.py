"""Third campaign, ``seqdistill experiment``: TOML the earlier rounds did not try (duplicate keys,
tables in the wrong place, dates where numbers go, sizes no machine holds, grid values that look
like paths), config files that are not regular files, and inputs named by the config that are
not what they claim. Every case is refused before any training: the only thing that may appear
is the experiment folder itself (``exp``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# A config that is valid and small: each case changes one thing.
BASE = """seeds = [0]
controls = []
k_core = [2, 2]
eval_ks = [10]
[dataset]
name = "synthetic"
[dataset.kwargs]
n_users = 60
n_items = 30
[train]
epochs = 1
device = "cpu"
[model]
hidden = 8
max_len = 10
"""


def edit(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new)


TOML = [
    ("duplicate-key", "[train]\nepochs = 1\nepochs = 2\n", ["cfg.toml", "line 3", "epochs = 2"]),
    ("dotted-key-then-table", "train.epochs = 1\n[train]\nepochs = 2\n", ["cfg.toml", "line 2", "train"]),
    ("table-inside-train", "[train.sub]\nx = 1\n", ["cfg.toml", "[train]", "'sub'"]),
    ("inline-table-in-model", "[model]\nopt = {lr = 1}\n", ["cfg.toml", "[model]", "'opt'"]),
    ("dataset-kwargs-not-a-table", "[dataset]\nkwargs = 3\n", ["cfg.toml", "[dataset] kwargs", "3"]),
    ("table-as-kwarg-value", edit("n_users = 60", "n_users = {a = 1}"), ["[dataset.kwargs] n_users", "{'a': 1}"]),
    ("grid-is-a-list", "[distill]\ngrid = [1, 2]\n", ["cfg.toml", "[distill.grid]", "[1, 2]"]),
    ("grid-value-is-a-table", "[distill.grid]\nalpha = {x = 1}\n", ["[distill.grid] alpha", "{'x': 1}"]),
    ("grid-empty-list", "[distill.grid]\nalpha = []\n", ["[distill.grid] alpha", "non-empty"]),
    ("grid-loss-path", '[distill.grid]\nloss = ["../../etc/passwd"]\n', ["[distill.grid] loss", "../../etc/passwd"]),
    ("grid-pooling-absolute-path", '[distill.grid]\npooling = ["/tmp/x"]\n', ["[distill.grid] pooling", "/tmp/x"]),
    ("grid-value-with-nul", '[distill.grid]\npooling = ["a\\u0000b"]\n', ["[distill.grid] pooling", "\\x00"]),
    ("grid-mixed-types", '[distill.grid]\nalpha = [0.1, "0.2"]\n', ["[distill.grid] alpha", "'0.2'"]),
    ("grid-huge-alpha", "[distill.grid]\nalpha = [1e308]\n", ["[distill.grid] alpha", "1e+308"]),
    ("epochs-a-date", "[train]\nepochs = 1979-05-27\n", ["[train] epochs", "1979"]),
    ("name-a-datetime", "name = 1979-05-27T07:32:00Z\n", ["name", "1979"]),
    ("array-of-tables", "[[train]]\nepochs = 1\n", ["[train]", "epochs"]),
    ("seed-beyond-u64", "seeds = [18446744073709551616]\n", ["seeds", "18446744073709551616"]),
    ("k-core-beyond-u32", edit("k_core = [2, 2]", "k_core = [2, 99999999999999]"), ["k_core", "99999999999999"]),
    (
        "eval-k-beyond-any-catalogue",
        edit("eval_ks = [10]", "eval_ks = [10, 100000000000]"),
        ["eval_ks", "100000000000"],
    ),
    (
        "valid-k-beyond-any-catalogue",
        edit("epochs = 1", "epochs = 1\nvalid_ks = [10, 100000000000]"),
        ["[train] valid_ks", "100000000000"],
    ),
    ("epochs-negative-in-grid", "[distill.grid]\nepochs = [-1]\n", ["[distill.grid] epochs", "-1"]),
    ("key-with-accent-unquoted", "[train]\népochs = 1\n", ["cfg.toml", "not valid TOML", "line 2"]),
    ("control-character", 'name = "a\x01"\n', ["cfg.toml", "line 1"]),
    ("utf16-file", "[train]\nepochs = 1\n".encode("utf-16"), ["cfg.toml", "UTF-8"]),
    ("latin1-file", "name = 'caf\xe9'\n".encode("latin-1"), ["cfg.toml", "UTF-8", "line 1"]),
    (
        "prepared-dataset-is-a-file",
        '[dataset]\nname = "prepared"\npath = "log.csv"\n',
        ["[dataset] path", "log.csv", "manifest.json"],
    ),
    (
        "prepared-dataset-is-a-users-folder",
        '[dataset]\nname = "prepared"\npath = "mine"\n',
        ["[dataset] path", "mine", "manifest.json"],
    ),
    (
        "targets-is-a-folder",
        BASE + '[profiles]\nsource = "targets"\ntargets = "mine"\n',
        ["[profiles] targets", "mine"],
    ),
    ("store-is-a-file", BASE + '[profiles]\nsource = "llm"\nstore = "log.csv"\n', ["[profiles] store", "log.csv"]),
    ("encoder-is-a-file", BASE + '[profiles]\nencoder = "log.csv"\n', ["[profiles] encoder", "log.csv"]),
    ("device-that-is-not-here", edit('device = "cpu"', 'device = "cuda:7"'), ["[train] device", "cuda:7"]),
]


@pytest.mark.parametrize("content, names", [c[1:] for c in TOML], ids=[c[0] for c in TOML])
def test_bad_config(ws: Path, refused, content, names) -> None:
    (ws / "mine").mkdir()
    (ws / "mine" / "notes.txt").write_text("mine")
    path = ws / "cfg.toml"
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    refused("experiment", "cfg.toml", "--out", "exp", names=tuple(names))
    assert not (ws / "exp").exists()


# ------------------------------------------------------------------ inputs read after the dataset
def _npy_text(ws: Path) -> None:
    (ws / "t.npy").write_text("hello")


def _npy_pickled(ws: Path) -> None:
    np.save(ws / "t.npy", np.array([{"a": 1}] * 60, dtype=object), allow_pickle=True)


def _npy_empty(ws: Path) -> None:
    (ws / "t.npy").write_bytes(b"")


@pytest.mark.parametrize(
    "make, names",
    [
        (_npy_text, ["t.npy", "[profiles] targets", "not a .npy file"]),
        (_npy_pickled, ["t.npy", "[profiles] targets", "pickle"]),
        (_npy_empty, ["t.npy", "[profiles] targets", "empty"]),
    ],
    ids=["text-named-npy", "pickled-objects", "empty-file"],
)
def test_bad_targets_file(ws: Path, refused, make, names) -> None:
    make(ws)
    (ws / "cfg.toml").write_text(BASE + '[profiles]\nsource = "targets"\ntargets = "t.npy"\n')
    r = refused("experiment", "cfg.toml", "--out", "exp", names=tuple(names), may_change=("exp",))
    assert "pickle.load" not in r.err  # never advise unpickling a file the user was handed
    assert not (ws / "exp" / "runs").exists()


# ------------------------------------------------------------------ config files that are not files
def test_config_is_a_fifo(ws: Path, refused) -> None:
    os.mkfifo(ws / "cfg.toml")
    refused("experiment", "cfg.toml", "--out", "exp", names=("cfg.toml", "not a regular file"))


def test_config_is_a_symlink_loop(ws: Path, refused) -> None:
    (ws / "cfg.toml").symlink_to(ws / "cfg.toml")
    refused("experiment", "cfg.toml", "--out", "exp", names=("cfg.toml", "symbolic link"))


def test_config_is_a_folder(ws: Path, refused) -> None:
    (ws / "cfg.toml").mkdir()
    refused("experiment", "cfg.toml", "--out", "exp", names=("cfg.toml", "is a folder"))


def test_a_prepared_dataset_is_accepted(ws: Path, run, refused) -> None:
    """``name = "prepared"`` with a folder ``prepare`` wrote passes every check (the report then
    finds no runs: nothing was trained)."""
    assert run("prepare", "log.csv", "--out", "ds", "--k-core", "1").code == 0
    (ws / "cfg.toml").write_text('seeds = [0]\n[dataset]\nname = "prepared"\npath = "ds"\n')
    refused("experiment", "cfg.toml", "--out", "exp", "--report-only", names=("exp", "no finished runs"))


def test_out_is_a_link_to_a_users_folder(ws: Path, refused) -> None:
    (ws / "mine").mkdir()
    (ws / "mine" / "notes.txt").write_text("mine")
    (ws / "link").symlink_to(ws / "mine")
    refused("experiment", "synthetic", "--out", "link", "--seeds", "0", names=("link",))
