"""``seqdistill experiment`` with missing, malformed and invalid configuration files: refused
before any work, naming the file and the key (the checks themselves live in
``seqdistill.experiments.validate``; this is what the command line shows of them)."""

from __future__ import annotations

from pathlib import Path

import pytest

CASES = [
    ("broken-toml", "this is = = not toml\n", ["cfg.toml", "TOML", "line 1"]),
    ("invalid-utf8", b"\xff\xfe[model]\n", ["cfg.toml"]),
    ("unknown-top-key", 'name = "x"\nbogus_key = 1\n', ["cfg.toml", "'bogus_key'"]),
    ("unknown-section-key", "[train]\nepochz = 3\n", ["cfg.toml", "[train]", "'epochz'"]),
    ("wrong-type", '[train]\nepochs = "ten"\n', ["cfg.toml", "[train] epochs", "'ten'"]),
    ("negative-epochs", "[train]\nepochs = -3\n", ["cfg.toml", "[train] epochs", "-3"]),
    ("patience-bool", "[train]\npatience = true\n", ["cfg.toml", "[train] patience", "True"]),
    ("lr-word", '[train]\nlr = "fast"\n', ["cfg.toml", "[train] lr", "'fast'"]),
    (
        "block-vs-n-blocks",
        "[model]\nn_blocks = 2\n[distill]\nblock = 5\n",
        ["cfg.toml", "[distill] block = 5", "n_blocks"],
    ),
    ("gamma-nan", "[distill]\ngamma = nan\n", ["[distill] gamma", "nan"]),
    ("eval-ks-empty", "eval_ks = []\n", ["cfg.toml", "eval_ks"]),
    ("seeds-empty", "seeds = []\n", ["cfg.toml", "seeds"]),
    ("k-core-three", "k_core = [5, 5, 7]\n", ["k_core", "[5, 5, 7]"]),
    ("model-kind", '[model]\nkind = "gru"\n', ["cfg.toml", "[model] kind", "'gru'"]),
    ("split-quantile", "[split]\nquantile = 2.0\n", ["[split]", "quantile", "2.0"]),
    ("dataset-name", '[dataset]\nname = "nope"\n', ["[dataset] name", "'nope'"]),
    (
        "dataset-path",
        '[dataset]\nname = "kion"\npath = "/nonexistent-seqdistill"\n',
        ["[dataset] path", "/nonexistent-seqdistill"],
    ),
    ("grid-value-path", '[distill.grid]\npooling = ["../../evil"]\n', ["[distill.grid] pooling", "../../evil"]),
    ("section-not-table", "model = 3\n", ["cfg.toml", "[model]"]),
    ("table-twice", "[train]\nepochs = 1\n[train]\nepochs = 2\n", ["cfg.toml", "not valid TOML", "twice"]),
    ("empty-file", "", ["cfg.toml", "sets nothing", "synthetic"]),
    ("comments-only", "# my experiment\n\n", ["cfg.toml", "sets nothing"]),
    (
        "store-with-stats-source",
        '[profiles]\nsource = "stats"\nstore = "runs/profiles"\n',
        ["[profiles] store = 'runs/profiles'", "only with source = 'llm'", "'stats'"],
    ),
    (
        "targets-with-llm-source",
        '[profiles]\nsource = "llm"\nstore = "s"\ntargets = "t.npy"\n',
        ["[profiles] targets = 't.npy'", "only with source = 'targets'"],
    ),
    ("bom-then-bad-key", "\ufeff[train]\nepochz = 3\n", ["cfg.toml", "[train]", "'epochz'"]),
]


@pytest.mark.parametrize("content, names", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config(ws: Path, refused, content, names) -> None:
    path = ws / "cfg.toml"
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    refused("experiment", "cfg.toml", "--out", "exp", names=tuple(names))
    assert not (ws / "exp").exists()


def test_missing_config_file(ws: Path, refused) -> None:
    refused("experiment", "absent.toml", "--out", "exp", names=("absent.toml", "no such config file"))


def test_config_is_a_folder(ws: Path, refused) -> None:
    (ws / "cfg.toml").mkdir()
    refused("experiment", "cfg.toml", "--out", "exp", names=("cfg.toml",))


def test_unknown_preset(ws: Path, refused) -> None:
    refused("experiment", "nosuchpreset", "--out", "exp", names=("nosuchpreset", "preset", "synthetic"))


def test_out_is_a_file(ws: Path, refused) -> None:
    refused("experiment", "synthetic", "--out", "log.csv", names=("log.csv", "not a folder"))


def test_report_only_without_runs(ws: Path, refused) -> None:
    refused("experiment", "synthetic", "--out", "exp", "--report-only", names=("exp", "no finished runs"))


@pytest.mark.parametrize(
    "argv, names",
    [
        (["--threads", "-2"], ["--threads", "'-2'"]),
        (["--threads", "0"], ["--threads", "'0'"]),
        (["--seeds", "-1"], ["--seeds", "'-1'"]),
        (["--seeds", "one"], ["--seeds", "'one'"]),
        (["--seeds", "0", "0"], ["seeds = [0, 0]", "distinct"]),
        (["--seeds", str(2**40)], ["--seeds", str(2**40), "below 2**32"]),
        (["--store", "profiles"], ["[profiles] store = 'profiles'", "only with source = 'llm'"]),
        (["--dataset-path", "nowhere"], ["[dataset] path = 'nowhere'", "no such file or folder"]),
        (["--out", "log.csv/exp"], ["--out log.csv/exp", "log.csv is a file"]),
        (["--out", ""], ["--out ''", "an empty path"]),
        (["--out", "loop"], ["--out loop", "symbolic link that leads to no folder"]),
    ],
    ids=[
        "threads-negative",
        "threads-zero",
        "seeds-negative",
        "seeds-word",
        "seeds-twice",
        "seeds-beyond-2^32",
        "store-for-a-stats-run",
        "dataset-path-missing",
        "out-below-a-file",
        "out-empty",
        "out-symlink-loop",
    ],
)
def test_bad_experiment_option(ws: Path, refused, argv, names) -> None:
    (ws / "loop").symlink_to(ws / "loop")
    refused("experiment", "synthetic", "--out", "exp", *argv, names=tuple(names))


@pytest.mark.parametrize(
    "out, extra, names",
    [
        ("mine", [], ["mine", "not an experiment folder", "notes.txt"]),
        ("mine", ["--report-only"], ["mine", "not an experiment folder"]),
        (".", [], ["not an experiment folder", "log.csv"]),
        ("foreign", [], ["foreign/config.json", "unknown key"]),
    ],
    ids=["users-folder", "users-folder-report-only", "current-folder", "foreign-config-json"],
)
def test_out_is_never_a_users_folder(ws: Path, refused, out, extra, names) -> None:
    (ws / "mine").mkdir()
    (ws / "mine" / "notes.txt").write_text("mine")
    (ws / "foreign").mkdir()
    (ws / "foreign" / "config.json").write_text('{"learning_rate": 3}')
    refused("experiment", "synthetic", "--out", out, "--seeds", "0", *extra, names=tuple(names))


@pytest.mark.parametrize(
    "config",
    ["presets/synthetic", "../synthetic", "synthetic.toml"],
    ids=["preset-with-a-slash", "preset-dot-dot", "preset-name-as-toml"],
)
def test_preset_names_are_names_not_paths(ws: Path, refused, config) -> None:
    words = ("synthetic.toml", "no such config file") if config.endswith(".toml") else (config, "nor a preset")
    refused("experiment", config, "--out", "exp", names=words)


def test_a_bom_config_is_read(ws: Path, refused) -> None:
    """A byte-order mark (Windows editors write one) is not content: the config is read and the
    command goes on to the report, which finds no runs."""
    (ws / "cfg.toml").write_text(
        "\ufeff" + 'name = "t"\nseeds = [0]\n[dataset]\nname = "synthetic"\n', encoding="utf-8"
    )
    refused("experiment", "cfg.toml", "--out", "exp", "--report-only", names=("exp", "no finished runs"))


def test_demo_never_writes_into_a_users_folder(ws: Path, refused) -> None:
    (ws / "mine").mkdir()
    (ws / "mine" / "notes.txt").write_text("mine")
    refused(
        "demo",
        "--out",
        "mine",
        "--users",
        "50",
        "--llm-users",
        "0",
        names=("mine", "not an experiment folder", "notes.txt"),
    )
