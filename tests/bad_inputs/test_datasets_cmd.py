"""``seqdistill datasets describe | prepare`` with unknown names, missing paths and bad options."""

from __future__ import annotations

from pathlib import Path

import pytest

CASES = [
    ("prepare-unknown-name", ["prepare", "nope", "out"], ["unknown dataset 'nope'", "synthetic"]),
    ("describe-unknown-name", ["describe", "nope"], ["'nope'", "neither a registered dataset"]),
    ("describe-needs-path", ["describe", "ml-20m"], ["'ml-20m'", "pass path="]),
    ("describe-missing-path", ["describe", "ml-20m", "--path", "absent"], ["absent/ratings.csv", "no such file"]),
    (
        "describe-file-as-folder",
        ["describe", "kion", "--path", "log.csv"],
        ["log.csv/interactions.csv", "no such file"],
    ),
    ("prepare-missing-path", ["prepare", "beauty", "out", "--path", "absent.csv"], ["absent.csv"]),
    ("option-unknown", ["prepare", "synthetic", "out", "-o", "bogus=1"], ["-o bogus", "takes no option 'bogus'"]),
    ("option-wrong-type", ["prepare", "synthetic", "out", "-o", "n_users=abc"], ["n_users", "int"]),
    ("option-out-of-range", ["prepare", "synthetic", "out", "-o", "n_users=0"], ["n_users=0", "out of range"]),
    ("option-not-key-value", ["prepare", "synthetic", "out", "-o", "oops"], ["'oops'", "key=value"]),
    ("describe-option-unknown", ["describe", "log.csv", "-o", "sep=;"], ["-o sep", "'separator'"]),
    ("split-unknown-key", ["prepare", "synthetic", "out", "--split", "ratio=0.5"], ["--split ratio", "quantile"]),
    ("split-out-of-range", ["prepare", "synthetic", "out", "--split", "quantile=2"], ["quantile", "2"]),
    ("split-wrong-type", ["prepare", "synthetic", "out", "--split", "quantile=high"], ["--split quantile", "number"]),
    ("split-bad-kind", ["prepare", "synthetic", "out", "--split", "kind=random"], ["kind", "'random'"]),
    ("k-core-three-values", ["prepare", "synthetic", "out", "--k-core", "1", "2", "3"], ["--k-core", "1 2 3"]),
    ("k-core-zero", ["prepare", "synthetic", "out", "--k-core", "0", "2"], ["--k-core", "'0'"]),
    ("unknown-subcommand", ["remove", "synthetic"], ["invalid choice", "'remove'"]),
    (
        "option-given-twice",
        ["prepare", "synthetic", "out", "-o", "n_users=50", "-o", "n_users=60"],
        ["-o n_users", "given twice", "n_users=50", "'n_users=60'"],
    ),
    ("option-float-for-int", ["prepare", "synthetic", "out", "-o", "n_users=1e3"], ["n_users=1000.0", "int"]),
    ("option-bool-for-int", ["prepare", "synthetic", "out", "-o", "seed=true"], ["seed", "int"]),
    ("out-below-a-file", ["prepare", "synthetic", "log.csv/out"], ["OUT_DIR log.csv/out", "log.csv is a file"]),
    ("out-empty", ["prepare", "synthetic", ""], ["OUT_DIR ''", "an empty path"]),
    ("describe-symlink-loop", ["describe", "loop"], ["'loop'", "nor an existing path"]),
]


@pytest.mark.parametrize("argv, names", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_datasets_command(ws: Path, refused, argv, names) -> None:
    (ws / "loop").symlink_to(ws / "loop")
    refused("datasets", *argv, names=tuple(names))
    assert not (ws / "out").exists()


def test_describe_broken_file(ws: Path, refused) -> None:
    (ws / "bad.csv").write_text("user_id,item_id,timestamp\n1,2\n3,4,5,6\n")
    refused("datasets", "describe", "bad.csv", names=("bad.csv", "row 1 has 4 fields"))


def test_prepare_into_a_users_folder_is_refused_before_loading(ws: Path, refused, monkeypatch) -> None:
    from seqdistill import datasets

    def must_not_load(*a, **k):
        raise AssertionError("the dataset was loaded before the output folder was checked")

    monkeypatch.setattr(datasets, "load", must_not_load)
    (ws / "mine").mkdir()
    (ws / "mine" / "notes.txt").write_text("mine")
    refused("datasets", "prepare", "synthetic", "mine", names=("mine", "not a prepared dataset"))


def test_prepare_into_the_source_folder(ws: Path, refused) -> None:
    (ws / "ml").mkdir()
    (ws / "ml" / "ratings.dat").write_text("1::10::5::100\n")
    (ws / "ml" / "movies.dat").write_text("10::A (1990)::Drama\n")
    refused(
        "datasets", "prepare", "ml-1m", "ml", "--path", "ml", "--overwrite", names=("OUT_DIR ml", "holds the input ml")
    )


def test_existing_dataset_needs_overwrite(ws: Path, run, refused) -> None:
    argv = ("datasets", "prepare", "synthetic", "out", "--k-core", "2", "-o", "n_users=60", "-o", "n_items=30")
    assert run(*argv).code == 0
    refused(*argv, names=("out", "--overwrite"))
    assert run(*argv, "--overwrite").code == 0
