"""Your own log, end to end through the command line: a raw CSV -> ``prepare`` -> ``train`` ->
``recommend`` (and ``evaluate`` where that command exists), as README's "Your own data" shows.
The recommendations are checked against the raw CSV and a plain numpy ranking of the trained
model's scores: raw item ids of the catalogue, k per user, best first, no item the user has seen."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from seqdistill.cli import main
from seqdistill.models import load_model

K = 10


def write_log(path: Path, n_users: int = 150, n_items: int = 60, seed: int = 0) -> pl.DataFrame:
    """A raw log with string ids and ISO dates: each user drifts along a ring of items."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        item, day = int(rng.integers(n_items)), int(rng.integers(0, 200))
        for _ in range(int(rng.integers(6, 20))):
            rows.append((f"cust-{u:04d}", f"SKU{item:03d}", "2024-01-01 00:00:00", day))
            item, day = (item + int(rng.integers(1, 5))) % n_items, day + int(rng.integers(1, 4))
    df = pl.DataFrame(rows, schema=["customer", "product", "base", "day"], orient="row")
    df = df.with_columns(
        (pl.col("base").str.to_datetime() + pl.duration(days=pl.col("day"), seconds=pl.int_range(pl.len()) % 60))
        .dt.strftime("%Y-%m-%dT%H:%M:%S")
        .alias("when")
    ).select("customer", "product", "when")
    df.write_csv(path)
    return df


def numpy_top_k(model, raw_items: list[str], k: int) -> list[tuple[str, float]]:
    """The user's window built by hand from raw ids, scored in numpy, seen items dropped."""
    dense_of = {raw: j for j, raw in enumerate(model.item_ids) if j > 0}
    hist = [dense_of[x] for x in raw_items]
    L = model.input_length
    win = np.zeros((1, L), dtype=np.int64)
    win[0, L - len(hist[-L:]) :] = hist[-L:]
    with torch.no_grad():
        q = model.next_item_hidden(torch.from_numpy(win))[0].double().numpy()
    scores = model.item_emb.weight.detach().double().numpy()[1 : model.config.n_items + 1] @ q
    order = [j for j in sorted(range(1, len(scores) + 1), key=lambda j: (-scores[j - 1], j)) if j not in set(hist)]
    return [(model.item_ids[j], float(scores[j - 1])) for j in order[:k]]


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    log = write_log(root / "events.csv")
    cols = ["--user-col", "customer", "--item-col", "product", "--time-col", "when"]
    assert main(["prepare", str(root / "events.csv"), "--out", str(root / "dataset"), "--k-core", "2", *cols]) == 0
    train = ["train", str(root / "dataset"), "--out", str(root / "run"), "--epochs", "3", "--hidden", "32"]
    assert main([*train, "--blocks", "1", "--max-len", "20", "--device", "cpu", "--quiet"]) == 0
    return root, log


def test_raw_csv_to_top_k_per_user(own, capsys):
    root, log = own
    users = log.get_column("customer").unique().sort().to_list()
    (root / "users.txt").write_text("\n".join(users) + "\n")
    assert main(["recommend", str(root / "run"), "--users", str(root / "users.txt"), "--k", str(K),
                 "--out", str(root / "top10.csv")]) == 0  # fmt: skip
    assert f"{len(users) * K} recommendations for {len(users)} users" in capsys.readouterr().out
    recs = pl.read_csv(root / "top10.csv", schema_overrides={"score": pl.Float64})
    assert recs.columns == ["user_id", "item_id", "rank", "score"]
    assert set(recs.get_column("item_id")) <= set(log.get_column("product"))  # raw ids of the catalogue
    per_user = recs.group_by("user_id", maintain_order=True).agg("item_id", "rank", "score")
    assert per_user.get_column("user_id").to_list() == users
    model = load_model(root / "run" / "model").eval()
    ordered = log.sort("when", maintain_order=True)
    for user, items, ranks, scores in per_user.iter_rows():
        assert ranks == list(range(1, K + 1)) and scores == sorted(scores, reverse=True)
        seen = ordered.filter(pl.col("customer") == user).get_column("product").to_list()
        assert not set(items) & set(seen)
    for user in users[:: len(users) // 6]:  # a few users against the numpy reference
        seen = ordered.filter(pl.col("customer") == user).get_column("product").to_list()
        ref = numpy_top_k(model, seen, K)
        got = per_user.filter(pl.col("user_id") == user).row(0)
        np.testing.assert_allclose(got[3], [s for _, s in ref], rtol=1e-4, atol=1e-5)
        assert [i for i, _ in ref] == got[1] or np.allclose(sorted(got[3]), sorted(s for _, s in ref), atol=1e-4)


def test_new_users_from_their_histories(own, capsys):
    root, log = own
    catalogue = sorted(set(log.get_column("product")))
    new = pl.DataFrame(
        {
            "customer": ["new-a", "new-a", "new-a", "new-b"],
            "product": [catalogue[5], "SKU-never-sold", catalogue[7], catalogue[1]],
            "when": ["2024-09-03T10:00:00", "2024-09-01T10:00:00", "2024-09-02T10:00:00", "2024-09-01T10:00:00"],
        }
    )
    new.write_csv(root / "new.csv")
    argv = ["recommend", str(root / "run"), "--histories", str(root / "new.csv"), "--k", "5", "--out",
            str(root / "new.jsonl"), "--user-col", "customer", "--item-col", "product", "--time-col", "when"]  # fmt: skip
    assert main(argv) == 0
    assert "warning:" in (err := capsys.readouterr().err) and "1 of 4 rows name an item the model does not know" in err
    recs = pl.read_ndjson(root / "new.jsonl")
    model = load_model(root / "run" / "model").eval()
    a = recs.filter(pl.col("user_id") == "new-a")
    ref = numpy_top_k(model, [catalogue[7], catalogue[5]], 5)  # by time: 09-02, then 09-03
    np.testing.assert_allclose(a.get_column("score").to_list(), [s for _, s in ref], rtol=1e-4, atol=1e-5)
    assert recs.filter(pl.col("user_id") == "new-b").height == 5


@pytest.mark.skipif(
    importlib.util.find_spec("seqdistill.cli.evaluate") is None, reason="seqdistill evaluate is not there yet"
)
def test_evaluate_reads_the_run(own, capsys):
    root, _ = own
    assert main(["evaluate", str(root / "run"), str(root / "dataset")]) == 0
    out = capsys.readouterr().out
    assert "ndcg" in out.lower()
    info = json.loads((root / "run" / "run.json").read_text())
    assert info["dataset_fingerprint"]
