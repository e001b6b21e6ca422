"""The datasets facade: registry, describe (Table 1 statistics), load dispatch and CLI pieces."""

from __future__ import annotations

import argparse

import polars as pl
import pytest

from seqdistill import datasets
from seqdistill.cli import datasets as datasets_cli
from seqdistill.data.synthetic import SyntheticConfig, generate


def write_ml1m(folder):
    (folder / "ratings.dat").write_bytes(b"1::10::5::100\n1::20::3::200\n2::10::4::150\n3::30::2::120\n3::10::1::130\n")
    (folder / "movies.dat").write_bytes(
        "10::A (1990)::Drama\n20::B (1991)::Comedy\n30::C (1992)::War\n".encode("latin-1")
    )


def test_registry_lists_the_papers_four_and_local_sources():
    infos = {i.name: i for i in datasets.list_datasets()}
    assert set(infos) == {"beauty", "ml-20m", "kion", "amazon-m2", "ml-1m", "ml-100k", "synthetic"}
    assert [n for n, i in infos.items() if i.paper is not None] == ["beauty", "ml-20m", "kion", "amazon-m2"]
    assert {i.domain for i in infos.values()} == {"products", "movies", "sessions"}
    assert infos["amazon-m2"].domain == "sessions" and infos["ml-1m"].needs_path is False
    assert infos["beauty"].to_dict()["paper"]["interactions"] == 436_309


def test_describe_hand_computed(tmp_path):
    write_ml1m(tmp_path)
    stats = datasets.describe(datasets.movielens_1m(tmp_path))
    # 3 users, 3 items, 5 interactions
    assert (stats["users"], stats["items"], stats["interactions"]) == (3, 3, 5)
    assert stats["avg_length"] == pytest.approx(5 / 3)
    assert stats["density"] == pytest.approx(5 / 9)
    assert stats["time_range"] == [100, 200] and stats["domain"] == "movies" and stats["has_rating"]
    assert stats["item_metadata"] == ["item_id", "title", "year", "genres"]


def test_load_dispatch_and_errors(tmp_path):
    write_ml1m(tmp_path)
    assert datasets.load("ml-1m", tmp_path).interactions.height == 5
    with pytest.raises(ValueError, match="pass path="):
        datasets.load("kion")
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        datasets.load("nope")


def test_synthetic_facade_matches_generator():
    a = datasets.synthetic(n_users=100, n_items=50, seed=4, median_length=5.0)
    b = generate(SyntheticConfig(n_users=100, n_items=50, seed=4, median_length=5.0))
    assert a.interactions.equals(b.interactions)
    assert datasets.load("synthetic", n_users=100, n_items=50, seed=4, median_length=5.0).interactions.equals(
        b.interactions
    )


def test_parse_options():
    assert datasets_cli.parse_options(["n_users=50", "locale=UK", "p=0.5", "x=[1,2]"]) == {
        "n_users": 50,
        "locale": "UK",
        "p": 0.5,
        "x": [1, 2],
    }
    with pytest.raises(ValueError, match="key=value"):
        datasets_cli.parse_options(["oops"])


def _parser():
    parser = argparse.ArgumentParser(prog="seqdistill")
    datasets_cli.add_parser(parser.add_subparsers(dest="command"), [])
    return parser


def test_cli_list_and_describe(tmp_path, capsys):
    args = _parser().parse_args(["datasets", "list"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "amazon-m2" in out and "436,309" in out and "synthetic" in out
    write_ml1m(tmp_path)
    args = _parser().parse_args(["datasets", "describe", "ml-1m", "--path", str(tmp_path)])
    assert args.func(args) == 0
    assert "interactions: 5" in capsys.readouterr().out
    stats = datasets_cli.cmd_describe("synthetic", options={"n_users": 40, "n_items": 30})
    assert stats["users"] == 40
    with pytest.raises(ValueError, match="neither a registered dataset"):
        datasets_cli.cmd_describe(str(tmp_path / "missing"))


def test_cli_prepare_roundtrip(tmp_path, capsys):
    from seqdistill.data import PreparedDataset

    out = tmp_path / "prepared"
    args = _parser().parse_args(
        [
            "datasets",
            "prepare",
            "synthetic",
            str(out),
            "--k-core",
            "3",
            "3",
            "--split",
            "kind=leave_one_out",
            "-o",
            "n_users=150",
            "-o",
            "n_items=60",
            "-o",
            "seed=2",
        ]
    )
    assert args.func(args) == 0
    ds = PreparedDataset.load(out)
    raw = datasets.synthetic(n_users=150, n_items=60, seed=2)
    # independent k-core reference on the raw log: users/items with >= 3 interactions, iterated
    df = raw.interactions
    while True:
        keep_u = df.group_by("user_id").len().filter(pl.col("len") >= 3)["user_id"]
        keep_i = df.group_by("item_id").len().filter(pl.col("len") >= 3)["item_id"]
        nxt = df.filter(pl.col("user_id").is_in(keep_u.implode()) & pl.col("item_id").is_in(keep_i.implode()))
        if nxt.height == df.height:
            break
        df = nxt
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (
        df["user_id"].n_unique(),
        df["item_id"].n_unique(),
        df.height,
    )
    assert ds.domain == "products" and ds.item_meta is not None
    stats = datasets_cli.cmd_describe(str(out))
    assert stats["interactions"] == df.height and stats["users"] == ds.n_users
