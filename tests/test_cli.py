"""The command line package: one map from exception to exit status and message, --debug,
validating argument types, the parser's shape, and no argparse outside ``seqdistill.cli``."""

from __future__ import annotations

import argparse
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

import seqdistill
from seqdistill.cli import _errors, build_parser, main
from seqdistill.cli import prepare as prepare_cli
from seqdistill.errors import ConfigError, DataError, OutputError

LOG = "user_id,item_id,timestamp\n" + "".join(f"{u},{i},{10 * u + i}\n" for u in (1, 2, 3) for i in (10, 11, 12))


@pytest.mark.parametrize(
    "exc, code, message",
    [
        (DataError("log.csv: column 'u' is null at row 3"), 2, "error: log.csv: column 'u' is null at row 3"),
        (
            ConfigError("a.toml: [train] epochs = -1:\n  expected >= 1"),
            2,
            "error: a.toml: [train] epochs = -1: expected >= 1",
        ),
        (OutputError("out: not ours"), 2, "error: out: not ours"),
        (
            OSError(errno.ENOSPC, "No space left on device", "out/log.parquet"),
            2,
            "error: out/log.parquet: disk full (no space left on device)",
        ),
        (OSError(errno.EDQUOT, "Disk quota exceeded", "out/x"), 2, "error: out/x: disk quota exceeded"),
        (OSError(errno.EROFS, "Read-only file system", "out"), 2, "error: out: read-only file system"),
        (PermissionError(errno.EACCES, "Permission denied", "log.csv"), 2, "error: log.csv: permission denied"),
        (
            FileNotFoundError(errno.ENOENT, "No such file or directory", "x.csv"),
            2,
            "error: x.csv: no such file or folder",
        ),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "d.csv"), 2, "error: d.csv: is a folder, expected a file"),
        (NotADirectoryError(errno.ENOTDIR, "Not a directory", "f/x"), 2, "error: f/x: not a folder"),
        (
            OSError(errno.EXDEV, "Invalid cross-device link", "a", None, "b"),
            2,
            "error: a -> b: Invalid cross-device link",
        ),
        (FileNotFoundError("ratings.csv: no such file"), 2, "error: ratings.csv: no such file"),
        (KeyboardInterrupt(), 130, "interrupted"),
        (RuntimeError("boom"), 1, "internal error (RuntimeError: boom); run again with --debug for the traceback"),
        (ValueError(""), 1, "internal error (ValueError: ValueError); run again with --debug for the traceback"),
    ],
)
def test_one_map_from_exception_to_status(exc, code, message):
    assert _errors.describe(exc) == (code, message)


def test_os_error_without_a_file_names_the_output():
    e = OSError(errno.ENOSPC, "No space left on device")
    assert _errors.describe(e, "runs/x") == (2, "error: disk full (no space left on device) (while writing runs/x)")


@pytest.fixture
def log(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "log.csv").write_text(LOG)
    return tmp_path / "log.csv"


def _boom(args):
    raise RuntimeError("boom")


def test_a_bug_is_one_line_exit_1_and_debug_shows_it(log, monkeypatch, capsys):
    monkeypatch.setattr(prepare_cli, "run", _boom)
    argv = ["prepare", "log.csv", "--out", "out"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err == "seqdistill prepare: internal error (RuntimeError: boom); run again with --debug for the traceback\n"
    for debug in (["--debug", *argv], [*argv, "--debug"]):
        with pytest.raises(RuntimeError, match="boom"):
            main(debug)


def test_user_error_with_debug_raises_the_error(log):
    with pytest.raises(DataError, match="absent.csv: no such file"):
        main(["prepare", "absent.csv", "--out", "out", "--debug"])


def test_interrupt_exits_130(log, monkeypatch, capsys):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    # prepare reads the file itself (through read_interactions for a CSV file)
    monkeypatch.setattr(sys.modules["seqdistill.data.prepare"], "read_interactions", interrupted)
    assert main(["prepare", "log.csv", "--out", "out"]) == 130
    assert capsys.readouterr().err == "seqdistill prepare: interrupted\n"
    assert not (log.parent / "out").exists()


def test_argparse_errors_and_help_return_a_status(capsys):
    assert main(["prepare"]) == 2
    assert "the following arguments are required: path, --out" in capsys.readouterr().err
    assert main(["nope"]) == 2
    assert main(["--help"]) == 0
    assert "prepare" in capsys.readouterr().out


def test_prepare_end_to_end(log, capsys):
    assert main(["prepare", "log.csv", "--out", "out", "--k-core", "3", "--name", "toy"]) == 0
    out = capsys.readouterr().out
    assert "prepared dataset written to out" in out
    ds = seqdistill.PreparedDataset.load(log.parent / "out")
    assert (ds.n_users, ds.n_items, ds.n_interactions, ds.name) == (3, 3, 9, "toy")


def test_items_are_matched_exactly(tmp_path, monkeypatch, capsys):
    """Metadata ids '010' and 'x' cannot be item 10 of an integer log; '11' is item 11."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "log.csv").write_text(LOG)
    (tmp_path / "items.csv").write_text("sku,title\n010,zero-ten\n11,eleven\nx,ex\n")
    assert (
        main(["prepare", "log.csv", "--out", "out", "--k-core", "1", "--items", "items.csv", "--items-id-col", "sku"])
        == 0
    )
    ds = seqdistill.PreparedDataset.load(tmp_path / "out")
    assert ds.item_meta.select("item_id", "title").rows() == [(10, None), (11, "eleven"), (12, None)]


# ------------------------------------------------------------------------- --engine spark, before Spark
def _spark_inputs(root: Path) -> None:
    import polars as pl

    (root / "log.csv").write_text(LOG)
    (root / "empty.parquet").write_bytes(b"")
    pl.DataFrame({"user_id": [1], "item": [2], "timestamp": [3]}).write_parquet(root / "cols.parquet")
    parts = root / "parts"
    (parts / "day=1").mkdir(parents=True)
    pl.DataFrame({"user_id": [1], "item_id": [2], "timestamp": [3]}).write_parquet(parts / "day=1" / "p0.parquet")
    (parts / "_SUCCESS").write_bytes(b"")  # Spark's markers and hidden files are not data: not looked at
    (parts / ".p0.parquet.crc").write_text("crc")
    (parts / "day=1" / "notes.txt").write_text("my notes\n")
    (root / "no_data").mkdir()
    (root / "no_data" / "_SUCCESS").write_bytes(b"")


SPARK_REFUSALS = [
    (["log.csv"], "log.csv: not a parquet file; --engine spark reads parquet only"),
    (["empty.parquet"], "empty.parquet: the file is empty"),
    (["absent.parquet"], "absent.parquet: no such file or folder"),
    (["parts"], "parts: holds day=1/notes.txt, which is not a parquet file; --engine spark reads parquet only"),
    (["no_data"], "no_data: a folder with no data files for Spark to read"),
    (["hdfs:///logs/clicks.csv"], "hdfs:///logs/clicks.csv: a .csv file, not parquet"),
    (["cols.parquet"], "cols.parquet: missing column 'item_id' (for item_id); it has ['user_id', 'item', 'timestamp']"),
    (
        ["cols.parquet", "--item-col", "item", "--rating-col", "stars"],
        "cols.parquet: missing column 'stars' (for rating)",
    ),
    (["log.csv", "--items", "items.csv"], "--items is not supported with --engine spark"),
]


@pytest.mark.parametrize("argv, message", SPARK_REFUSALS, ids=[" ".join(a) for a, _ in SPARK_REFUSALS])
def test_engine_spark_refuses_what_it_cannot_read_before_importing_pyspark(
    tmp_path, monkeypatch, capsys, argv, message
):
    """Each refusal comes before pyspark is imported (importing it fails here: a refusal after it
    would be the 'needs pyspark' one), so no JVM starts and prints its log lines."""
    monkeypatch.chdir(tmp_path)
    _spark_inputs(tmp_path)
    before = {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    monkeypatch.setitem(sys.modules, "pyspark", None)
    assert main(["prepare", *argv, "--out", "out", "--engine", "spark"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"seqdistill prepare: error: {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()
    assert {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()} == before


def test_engine_spark_on_a_csv_is_one_line_in_a_real_process(tmp_path):
    (tmp_path / "in.csv").write_text(LOG)
    r = _seqdistill("prepare", "in.csv", "--out", "o", "--engine", "spark", cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == "", r
    assert r.stderr.splitlines() == [
        "seqdistill prepare: error: in.csv: not a parquet file; --engine spark reads parquet only (see "
        "docs/spark.md); use --engine memory for CSV, TSV or JSON lines"
    ], r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


# ------------------------------------------------------------------------- argument types
NUMERIC = [
    (["prepare", "f.csv", "--out", "o", "--k-core"], ["0", "-1", "x", "1.5"], "--k-core"),
    (["prepare", "f.csv", "--out", "o", "--quantile"], ["0", "1", "1.5", "-0.1", "nan", "inf", "x"], "--quantile"),
    (["prepare", "f.csv", "--out", "o", "--valid-quantile"], ["0", "1"], "--valid-quantile"),
    (["experiment", "synthetic", "--out", "o", "--threads"], ["0", "-2", "two"], "--threads"),
    (["experiment", "synthetic", "--out", "o", "--seeds"], ["-1", "0.5"], "--seeds"),
    (["demo", "--threads"], ["0", "-2"], "--threads"),
    (["demo", "--users"], ["0"], "--users"),
    (["demo", "--llm-users"], ["-1"], "--llm-users"),
    (["demo", "--epochs"], ["0"], "--epochs"),
    (["profiles", "generate", "d", "--store", "s", "--max-new-tokens"], ["0"], "--max-new-tokens"),
    (["profiles", "generate", "d", "--store", "s", "--temperature"], ["-0.5", "nan"], "--temperature"),
    (["profiles", "generate", "d", "--store", "s", "--concurrency"], ["0"], "--concurrency"),
    (["profiles", "reduce", "d", "--embeddings", "e", "--out", "o", "--dim"], ["0", "-3"], "--dim"),
    (
        ["profiles", "reduce", "d", "--embeddings", "e", "--out", "o", "--dim", "2", "--n-neighbors"],
        ["1"],
        "--n-neighbors",
    ),
    (["datasets", "prepare", "synthetic", "o", "--k-core"], ["0"], "--k-core"),
]


@pytest.mark.parametrize("prefix, values, flag", NUMERIC, ids=[n[2] + "-" + n[0][0] for n in NUMERIC])
def test_numeric_options_are_checked_by_argparse(prefix, values, flag, capsys):
    for value in values:
        assert main([*prefix, value]) == 2, value
        err = capsys.readouterr().err
        assert f"argument {flag}: " in err and repr(value) in err and "Traceback" not in err


def test_k_core_takes_one_or_two_values():
    parse = build_parser().parse_args
    assert parse(["prepare", "f", "--out", "o", "--k-core", "3"]).k_core == (3, 3)
    assert parse(["prepare", "f", "--out", "o", "--k-core", "2", "4"]).k_core == (2, 4)
    assert parse(["prepare", "f", "--out", "o"]).k_core == (5, 5)
    assert main(["prepare", "f", "--out", "o", "--k-core", "5", "5", "7"]) == 2


def _leaves(parser: argparse.ArgumentParser, path=()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, child in subs[0].choices.items():
        yield from _leaves(child, (*path, name))


def test_every_command_takes_debug_and_has_a_function():
    leaves = dict(_leaves(build_parser()))
    assert set(leaves) == {
        ("demo",),
        ("prepare",),
        ("datasets", "list"),
        ("datasets", "describe"),
        ("datasets", "prepare"),
        ("profiles", "generate"),
        ("profiles", "encode"),
        ("profiles", "reduce"),
        ("profiles", "stats"),
        ("profiles", "probe"),
        ("experiment",),
        ("evaluate",),
        ("train",),
        ("recommend",),
    }
    for path, leaf in leaves.items():
        assert "--debug" in leaf._option_string_actions, path
        defaults = leaf._defaults
        assert callable(defaults["func"]) and defaults["prog_name"] == "seqdistill " + " ".join(path)


def test_no_library_module_imports_argparse():
    root = Path(seqdistill.__file__).parent
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if "cli" not in p.relative_to(root).parts and "argparse" in p.read_text()
    ]
    assert offenders == []


# ------------------------------------------------------------------------- a real terminal
def _seqdistill(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "seqdistill.cli", *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_no_traceback_reaches_the_terminal(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    (tmp_path / "big.csv").write_text(
        "user_id,item_id,timestamp\n"
        + "".join(f"{2**64 + u},{i},{t}\n" for t, (u, i) in enumerate([(0, 1), (0, 2), (1, 1), (1, 2)]))
    )
    cases = [
        (["prepare", "bad.parquet", "--out", "o"], 2, "bad.parquet: cannot read as parquet"),
        (["prepare", "absent.csv", "--out", "o"], 2, "absent.csv: no such file"),
        (["prepare", "big.csv", "--out", "o", "--k-core", "5", "5", "7"], 2, "argument --k-core"),
        (["experiment", "synthetic", "--out", "o", "--threads", "-2"], 2, "argument --threads"),
    ]
    for argv, code, needle in cases:
        r = _seqdistill(*argv, cwd=tmp_path)
        assert r.returncode == code and needle in r.stderr and "Traceback" not in r.stderr, (argv, r.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet", "big.csv"]


def test_debug_shows_the_traceback(tmp_path):
    r = _seqdistill("--debug", "prepare", "absent.csv", "--out", "o", cwd=tmp_path)
    assert r.returncode == 1
    assert "Traceback (most recent call last)" in r.stderr
    assert r.stderr.strip().splitlines()[-1] == "seqdistill.errors.DataError: absent.csv: no such file"


# ------------------------------------------------------------------------- warnings
NO_TEST_TARGETS = "user_id,item_id,timestamp\n1,10,1\n1,11,2\n1,12,3\n2,10,4\n2,11,5\n2,12,6\n3,10,100\n"


def test_a_library_warning_is_one_line_and_the_status_is_unchanged(tmp_path):
    """In a real process (Python's own warning display, no pytest): user 3's only interaction is
    after the test threshold, so the split has no test targets and prepare() warns."""
    (tmp_path / "log.csv").write_text(NO_TEST_TARGETS)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "seqdistill.cli",
            "prepare",
            "log.csv",
            "--out",
            "ds",
            "--k-core",
            "1",
            "--quantile",
            "0.9",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("seqdistill prepare: warning: log: the split ") and "gives no test targets" in lines[0]
    assert ".py:" not in r.stderr and "SeqdistillWarning" not in r.stderr
    assert seqdistill.PreparedDataset.load(tmp_path / "ds").n_users == 3


def test_other_warnings_keep_pythons_display(log, monkeypatch, capsys):
    import warnings

    from seqdistill.errors import SeqdistillWarning

    def warns(args):
        warnings.warn("first\n  second line", SeqdistillWarning, stacklevel=2)
        warnings.warn("a plain one", UserWarning, stacklevel=2)
        return 3

    monkeypatch.setattr(prepare_cli, "run", warns)
    with pytest.warns(UserWarning, match="a plain one") as seen:  # passed on to the display in place
        display = warnings.showwarning
        assert main(["prepare", "log.csv", "--out", "out"]) == 3
        assert warnings.showwarning is display  # restored after the command
    assert [str(w.message) for w in seen] == ["a plain one"]
    assert capsys.readouterr().err == "seqdistill prepare: warning: first second line\n"
