"""Campaign 5: the cases that failed or were borderline (nesting too deep to parse, wrongly typed
loader fields, absurd thread counts, an empty evaluation part, edited checkpoints, manifests,
model configs and run records, mismatched output formats), each refused in one line naming the
file, field or value; and the API arguments that were misread."""

from __future__ import annotations

import json
import os
import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from seqdistill.cli import main

torch.set_num_threads(1)

DEEP = "[" * 100_000 + "]" * 100_000


def _log_csv(path: Path) -> None:
    rng = random.Random(0)
    rows = []
    for u in range(40):
        t = 1_600_000_000 + u
        for _ in range(rng.randint(5, 10)):
            t += rng.randint(1, 1000)
            rows.append(f"u{u},i{rng.randint(0, 19)},{t},{rng.randint(1, 5)}\n")
    path.write_text("user_id,item_id,timestamp,rating\n" + "".join(rows))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared dataset ``ds`` and a one-epoch run ``run`` trained on it (built once)."""
    root = tmp_path_factory.mktemp("c5")
    _log_csv(root / "log.csv")
    assert main(["prepare", str(root / "log.csv"), "--out", str(root / "ds"), "--k-core", "2"]) == 0
    argv = ["train", str(root / "ds"), "--out", str(root / "run"), "--hidden", "16", "--blocks", "1"]
    argv += ["--heads", "1", "--max-len", "10", "--epochs", "1", "--threads", "1", "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    return root


@pytest.fixture
def copy(trained: Path, ws: Path):
    """Copies of the trained fixtures into the workspace (to damage them there)."""

    def _copy(*names: str) -> None:
        for name in names:
            shutil.copytree(trained / name, ws / name)

    return _copy


# ------------------------------------------------------------------ nesting too deep to parse
def test_a_manifest_nested_too_deep_is_named(refused, copy, ws: Path) -> None:
    copy("ds")
    (ws / "ds" / "manifest.json").write_text(DEEP)
    refused("datasets", "describe", "ds", names=("manifest.json", "nested too deeply"))


@pytest.mark.parametrize("where", ["model/config.json", "run.json"])
def test_run_files_nested_too_deep_are_named(refused, copy, ws: Path, where: str) -> None:
    copy("ds", "run")
    (ws / "run" / where).write_text(DEEP)
    refused("evaluate", "run", "ds", "--protocol", "full", "--device", "cpu", names=(where.split("/")[-1],))


def test_an_experiment_config_nested_too_deep_is_named(refused, ws: Path) -> None:
    (ws / "exp.toml").write_text('[dataset]\nname = "synthetic"\n' + "deep = " + "[" * 5000 + "]" * 5000 + "\n")
    refused("experiment", "exp.toml", "--out", "out", names=("exp.toml",))


# ------------------------------------------------------------------ the Beauty loader's fields
REVIEW = {"reviewerID": "A1", "asin": "B1", "overall": 5.0, "unixReviewTime": 1400000000}


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("reviewerID", 12345, "'reviewerID'"),
        ("reviewerID", ["A1"], "'reviewerID'"),
        ("asin", {"x": 1}, "'asin'"),
        ("unixReviewTime", 1400000099.5, "'unixReviewTime'"),
        ("unixReviewTime", 18446744073709551616, "int64"),
        ("overall", 1e300, "'overall'"),
        ("overall", "five", "'overall'"),
    ],
)
def test_beauty_reviews_with_wrongly_typed_fields(refused, ws: Path, field: str, value, named: str) -> None:
    (ws / "b").mkdir()
    lines = [dict(REVIEW, reviewerID=f"A{j}", unixReviewTime=1400000000 + j) for j in range(4)]
    lines.append(dict(REVIEW, **{field: value}))
    (ws / "b" / "reviews_Beauty_5.json").write_text("".join(json.dumps(r) + "\n" for r in lines))
    refused("datasets", "prepare", "beauty", "out", "--path", "b", "--k-core", "1", names=("line 5", named))


@pytest.mark.parametrize(
    ("meta", "named"),
    [
        ({"salesRank": {"Beauty": "abc"}}, "'salesRank'"),
        ({"salesRank": [1]}, "'salesRank'"),
        ({"title": ["a", "list"]}, "'title'"),
        ({"brand": 7}, "'brand'"),
        ({"categories": 5}, "'categories'"),
    ],
)
def test_beauty_metadata_with_wrongly_typed_fields(refused, ws: Path, meta: dict, named: str) -> None:
    (ws / "b").mkdir()
    reviews = [dict(REVIEW, reviewerID=f"A{j}", unixReviewTime=1400000000 + j) for j in range(3)]
    (ws / "b" / "reviews_Beauty_5.json").write_text("".join(json.dumps(r) + "\n" for r in reviews))
    (ws / "b" / "meta_Beauty.json").write_text(repr({"asin": "B1", **meta}) + "\n")
    refused("datasets", "prepare", "beauty", "out", "--path", "b", "--k-core", "1", names=("meta_Beauty.json", named))


# ------------------------------------------------------------------ thread counts
@pytest.mark.parametrize("threads", ["100000", "2147483648"])
def test_thread_counts_beyond_any_machine_are_refused_before_work(refused, copy, threads: str) -> None:
    copy("ds", "run")
    refused("evaluate", "run", "ds", "--threads", threads, "--device", "cpu", names=("--threads", "1024"))


def test_evaluation_workers_are_capped_at_the_cores() -> None:
    from seqdistill import evaluation
    from seqdistill.errors import ConfigError

    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(64)
        assert evaluation._default_workers(torch.device("cpu")) == min(64, os.cpu_count() or 1)
    finally:
        torch.set_num_threads(saved)
    q, table = torch.randn(3, 4), torch.randn(6, 4)
    with pytest.raises(ConfigError, match="workers"):
        evaluation.rank_queries(q, table, np.array([1, 2, 3]), workers=100_000)


# ------------------------------------------------------------------ an empty evaluation part
def test_evaluating_a_part_without_rows_is_an_error_and_writes_nothing(refused, ws: Path, run) -> None:
    _log_csv(ws / "log5.csv")
    assert run("prepare", "log5.csv", "--out", "ds", "--k-core", "2", "--valid", "none").code == 0
    argv = ["train", "ds", "--out", "run", "--hidden", "8", "--blocks", "1", "--heads", "1", "--max-len", "5"]
    assert run(*argv, "--epochs", "1", "--threads", "1", "--device", "cpu", "--quiet").code == 0
    evaluate = ["evaluate", "run", "ds", "--part", "valid", "--protocol", "full", "--device", "cpu"]
    r = refused(*evaluate, "--json", "m.json", names=("valid", "no rows"))
    assert not (ws / "m.json").exists(), r.err


# ------------------------------------------------------------------ edited run and model files
def _edit_json(path: Path, **changes) -> None:
    d = json.loads(path.read_text())
    d.update(changes)
    path.write_text(json.dumps(d))


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"epoch": 999, "best_epoch": 999, "bad_epochs": 999}, "epoch 999"),
        ({"best_epoch": 5}, "best_epoch 5"),
        ({"bad_epochs": -1}, "bad_epochs -1"),
        ({"stopped": "no"}, "stopped"),
        ({"epoch": "1"}, "epoch '1'"),
    ],
)
def test_an_edited_checkpoint_is_not_trusted(refused, trained: Path, ws: Path, changes: dict, named: str) -> None:
    # The trained run, marked unfinished, with its checkpoint's bookkeeping edited: the same
    # train command resumes from the checkpoint, which must be refused, not believed.
    shutil.copytree(trained / "run", ws / "run")
    _edit_json(ws / "run" / "run.json", status="training")
    _edit_json(ws / "run" / "checkpoint" / "state.json", **changes)
    argv = ["train", str(trained / "ds"), "--out", "run", "--hidden", "16", "--blocks", "1", "--heads", "1"]
    argv += ["--max-len", "10", "--epochs", "1", "--threads", "1", "--device", "cpu", "--quiet"]
    refused(*argv, names=("state.json", named), may_change=("run/run.json",))  # the run records its start


def test_model_item_ids_that_do_not_fit_are_named(refused, copy, ws: Path) -> None:
    copy("ds", "run")
    cfg = ws / "run" / "model" / "config.json"
    d = json.loads(cfg.read_text())
    d["item_ids"] = d["item_ids"][:-3]
    cfg.write_text(json.dumps(d))
    refused("evaluate", "run", "ds", "--protocol", "full", "--device", "cpu", names=("config.json", "item_ids"))


def test_a_model_format_that_is_not_a_number_is_refused(refused, copy, ws: Path) -> None:
    copy("ds", "run")
    _edit_json(ws / "run" / "model" / "config.json", format="2")
    refused("evaluate", "run", "ds", "--protocol", "full", "--device", "cpu", names=("config.json", "format"))


def test_a_run_status_that_is_not_one_of_two_is_refused(refused, copy, ws: Path) -> None:
    copy("ds", "run")
    _edit_json(ws / "run" / "run.json", status="bogus")
    refused("evaluate", "run", "ds", "--protocol", "full", "--device", "cpu", names=("run.json", "bogus"))


# ------------------------------------------------------------------ edited dataset manifests
@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"domain": "food"}, "food"),
        ({"k_core": [-1, "x"]}, "k_core"),
        ({"split": {"kind": "global_temporal", "quantile": "0.8"}}, "quantile"),
        ({"split": "time"}, "split"),
    ],
)
def test_an_edited_manifest_is_refused(refused, copy, ws: Path, changes: dict, named: str) -> None:
    copy("ds")
    _edit_json(ws / "ds" / "manifest.json", **changes)
    refused("datasets", "describe", "ds", names=("manifest.json", named))


def test_nan_ratings_in_a_prepared_log_are_refused(refused, copy, ws: Path) -> None:
    copy("ds")
    log = pl.read_parquet(ws / "ds" / "log.parquet")
    log = log.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(float("nan")).otherwise(pl.col("rating")).alias("rating")
    )
    log.write_parquet(ws / "ds" / "log.parquet")
    refused("datasets", "describe", "ds", names=("log.parquet", "rating", "row 3"))


# ------------------------------------------------------------------ options and outputs
def test_a_negative_synthetic_seed_is_named(refused) -> None:
    refused("datasets", "prepare", "synthetic", "out", "-o", "seed=-1", "--k-core", "1", names=("seed",))


def test_recommend_refuses_a_format_its_extension_contradicts(refused, copy) -> None:
    copy("ds", "run")
    refused(
        "recommend", "run", "--users", "all", "--out", "o.parquet", "--format", "jsonl", names=("o.parquet", "jsonl")
    )


def test_recommend_does_not_replace_a_symbolic_link(refused, copy, ws: Path) -> None:
    copy("ds", "run")
    (ws / "target.csv").write_text("mine\n")
    (ws / "link.csv").symlink_to(ws / "target.csv")
    refused(
        "recommend", "run", "--users", "all", "--out", "link.csv", "--overwrite", names=("link.csv", "symbolic link")
    )
    assert (ws / "link.csv").is_symlink() and (ws / "target.csv").read_text() == "mine\n"


def test_recommend_takes_numpy_k_and_refuses_a_bare_string_for_users(trained: Path) -> None:
    from seqdistill.cli.evaluate import load_run
    from seqdistill.errors import ConfigError
    from seqdistill.recommend import recommend

    model, ds = load_run(trained / "run", trained / "ds", "cpu")
    users = ds.user_ids.head(2).to_list()
    a = recommend(model, ds, users=users, k=np.int64(3))
    b = recommend(model, ds, users=users, k=3)
    assert a.equals(b) and a.height == 6
    with pytest.raises(ConfigError, match="single string"):
        recommend(model, ds, users=users[0], k=3)


def test_probe_refuses_targets_with_no_values_per_user(refused, ws: Path, run) -> None:
    assert run("datasets", "prepare", "synthetic", "syn", "-o", "n_users=80", "--k-core", "1").code == 0
    n = json.loads((ws / "syn" / "manifest.json").read_text())["stats"]["users"]
    np.save(ws / "t.npy", np.zeros((n, 0), np.float32))
    refused("profiles", "probe", "syn", "t.npy", "--n-boot", "10", names=("t.npy", "d = 0"), may_change=())


def test_float32_epoch_seconds_are_flagged_as_already_rounded() -> None:
    import seqdistill
    from seqdistill.errors import SeqdistillWarning

    ts = [1_600_000_000 + 1000 * j + k for j in range(4) for k in range(3)]
    df = pl.DataFrame(
        {"user_id": [j for j in range(4) for _ in range(3)], "item_id": list(range(12)), "timestamp": ts},
        schema_overrides={"timestamp": pl.Float32},
    )
    with pytest.warns(SeqdistillWarning, match=r"float32.*steps of 128 s"):
        seqdistill.prepare(df, k_core=1)
    small = df.with_columns((pl.col("timestamp") - 1_600_000_000).cast(pl.Float32))  # below 2**24: exact
    with warnings.catch_warnings():
        warnings.simplefilter("error", SeqdistillWarning)
        seqdistill.prepare(small, k_core=1, split=seqdistill.SplitConfig(kind="leave_one_out"))
