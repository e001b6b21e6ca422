"""seqdistill.recommend and ``seqdistill recommend``: top-k raw item ids per user, checked against a
plain numpy ranking of the model's own scores (a window built by hand from the user's raw rows),
seen items removed, raw ids in the catalogue's type, new users' histories ordered by time, unknown
items dropped with a warning, and the command's refusals (unknown users, missing columns, an
existing output file, a dataset other than the run's)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import polars as pl
import pytest
import torch

from seqdistill.cli import main
from seqdistill.data import PreparedDataset, RawDataset, SplitConfig, prepare
from seqdistill.errors import DataError, SeqdistillWarning
from seqdistill.models import ModelConfig, build_model
from seqdistill.recommend import catalogue, read_user_ids, recommend

N_USERS, N_ITEMS = 40, 25


def raw_log(seed: int = 0, string_ids: bool = True) -> pl.DataFrame:
    """A small log: every user 4..12 rows at increasing times, items drawn with a popularity skew."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(N_USERS):
        t0 = int(rng.integers(0, 1000))
        for j in range(int(rng.integers(4, 13))):
            item = int(min(rng.zipf(1.3), N_ITEMS)) - 1 if rng.random() < 0.5 else int(rng.integers(N_ITEMS))
            rows.append(
                (f"u{u}" if string_ids else 100 + u, f"sku-{item:02d}" if string_ids else 7 * item, t0 + 10 * j)
            )
    return pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")


def dataset(log: pl.DataFrame) -> PreparedDataset:
    return prepare(RawDataset("toy", log), k_core=1, split=SplitConfig(kind="global_temporal", quantile=0.8))


def untrained(ds: PreparedDataset, kind: str = "sasrec", seed: int = 0):
    """A model with random weights: ranking must be right whatever the weights are."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(kind=kind, n_items=ds.n_items, max_len=6, hidden=16, n_blocks=1, n_heads=2))
    model.set_item_ids(ds.item_ids)
    return model.eval()


def reference(model, raw_items: list, k: int, filter_seen: bool = True) -> list[tuple[object, float]]:
    """Top-k (raw id, score) by plain numpy: dense ids looked up by hand, the last input_length
    items left-padded, scores = query @ item table, seen items dropped, sorted by score then id."""
    dense_of = {raw: j for j, raw in enumerate(model.item_ids) if j > 0}
    hist = [dense_of[x] for x in raw_items if x in dense_of]
    L = model.input_length
    win = np.zeros((1, L), dtype=np.int64)
    tail = hist[-L:]
    win[0, L - len(tail) :] = tail
    with torch.no_grad():
        q = model.next_item_hidden(torch.from_numpy(win))[0].double().numpy()
    table = model.item_emb.weight.detach().double().numpy()[1 : model.config.n_items + 1]
    scores = table @ q
    order = sorted(range(1, model.config.n_items + 1), key=lambda j: (-scores[j - 1], j))
    if filter_seen:
        order = [j for j in order if j not in set(hist)]
    return [(model.item_ids[j], float(scores[j - 1])) for j in order[:k]]


def assert_matches(got: pl.DataFrame, ref: list[tuple[object, float]]) -> None:
    """Same items in the same order and the same scores (float32 vs float64 arithmetic: an order
    may differ only between scores closer than the tolerance)."""
    assert got.get_column("rank").to_list() == list(range(1, len(ref) + 1))
    scores = got.get_column("score").to_numpy()
    np.testing.assert_allclose(scores, [s for _, s in ref], rtol=1e-4, atol=1e-5)
    for (a, sa), b in zip(ref, got.get_column("item_id").to_list()):
        assert a == b or abs(sa - dict(ref).get(b, np.inf)) < 1e-4


@pytest.fixture(scope="module")
def toy():
    log = raw_log()
    return log, dataset(log)


@pytest.mark.parametrize("kind", ["sasrec", "bert4rec"])
def test_users_get_numpy_top_k_without_seen_items(toy, kind):
    log, ds = toy
    model = untrained(ds, kind)
    users = ["u3", "u0", "u17", "u3"]  # a duplicate is answered once
    out = recommend(model, ds, users=users, k=5)
    assert out.columns == ["user_id", "item_id", "rank", "score"]
    assert out.get_column("user_id").unique(maintain_order=True).to_list() == ["u3", "u0", "u17"]
    for u in ("u3", "u0", "u17"):
        mine = log.filter(pl.col("user_id") == u).sort("timestamp", maintain_order=True)
        seen = set(mine.get_column("item_id").to_list())
        got = out.filter(pl.col("user_id") == u)
        assert got.height == 5 and not seen & set(got.get_column("item_id").to_list())
        assert set(got.get_column("item_id").to_list()) <= set(ds.item_ids.to_list()[1:])
        assert_matches(got, reference(model, mine.get_column("item_id").to_list(), 5))


def test_blocks_of_rows_do_not_change_the_result(toy, monkeypatch):
    import seqdistill.recommend as rec

    _, ds = toy
    model = untrained(ds, seed=5)
    users = ds.user_ids.to_list()[::-1]  # 40 users: one block of 1024 rows, or three of 16
    whole = recommend(model, ds, users=users, k=7)
    monkeypatch.setattr(rec, "BLOCK_BYTES", 1)
    assert recommend(model, ds, users=users, k=7).equals(whole)
    assert whole.height == 7 * len(users)


def test_equals_the_models_own_recommend(toy):
    """SequentialRecommender.recommend (raw histories in, torch.topk) is a second implementation."""
    _, ds = toy
    model = untrained(ds, seed=6)
    histories = [ds.item_ids.gather(ds.history(u, ds.lengths[u])).to_list() for u in range(ds.n_users)]
    table = recommend(model, ds, users=ds.user_ids, k=6)
    assert table.group_by("user_id", maintain_order=True).agg("item_id")["item_id"].to_list() == model.recommend(
        histories, k=6
    )


def test_keep_seen_ranks_the_whole_catalogue(toy):
    log, ds = toy
    model = untrained(ds, seed=1)
    out = recommend(model, ds, users=["u5"], k=N_ITEMS, filter_seen=False)
    hist = log.filter(pl.col("user_id") == "u5").sort("timestamp").get_column("item_id").to_list()
    assert out.height == ds.n_items
    assert_matches(out, reference(model, hist, N_ITEMS, filter_seen=False))


def test_k_beyond_the_candidates_gives_fewer_rows(toy):
    log, ds = toy
    seen = set(log.filter(pl.col("user_id") == "u1").get_column("item_id").to_list())
    for k in (1000, 10**12):  # 10**12 once sized the result buffers (out of memory)
        out = recommend(untrained(ds), ds, users=["u1"], k=k)
        assert out.height == ds.n_items - len(seen)
        assert out.get_column("score").is_sorted(descending=True)


def test_histories_are_ordered_by_time_and_match_the_dataset_users(toy):
    log, ds = toy
    model = untrained(ds, seed=2)
    users = ["u8", "u2", "u30"]
    mine = log.filter(pl.col("user_id").is_in(users))
    shuffled = mine.sample(fraction=1.0, shuffle=True, seed=3)  # the table's order must not matter
    from_histories = recommend(model, histories=shuffled, k=4)
    from_dataset = recommend(model, ds, users=shuffled.get_column("user_id").unique(maintain_order=True), k=4)
    assert from_histories.equals(from_dataset)
    for u in users:
        hist = mine.filter(pl.col("user_id") == u).sort("timestamp").get_column("item_id").to_list()
        assert_matches(from_histories.filter(pl.col("user_id") == u), reference(model, hist, 4))


def test_unknown_items_are_dropped_with_one_warning_and_empty_users_get_a_null_row(toy):
    _, ds = toy
    model = untrained(ds)
    hist = pl.DataFrame(
        {
            "user_id": ["new1", "new1", "new1", "new2", "new3"],
            "item_id": ["sku-03", "nope", "sku-01", "gone", "sku-04"],
            "timestamp": [5, 1, 2, 0, 9],
        }
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = recommend(model, histories=hist, k=3)
    texts = [str(w.message) for w in caught if issubclass(w.category, SeqdistillWarning)]
    assert any("2 of 5 rows name an item the model does not know" in t for t in texts), texts
    assert any("1 user(s) have no recommendation" in t and "'new2'" in t for t in texts), texts
    assert out.get_column("user_id").unique(maintain_order=True).to_list() == ["new1", "new2", "new3"]
    empty = out.filter(pl.col("user_id") == "new2")
    assert empty.height == 1 and empty.row(0) == ("new2", None, None, None)
    # new1's history by time: sku-01 (t=2), sku-03 (t=5); the unknown 'nope' is left out
    assert_matches(out.filter(pl.col("user_id") == "new1"), reference(model, ["sku-01", "sku-03"], 3))


def test_integer_ids_keep_their_type():
    log = raw_log(seed=4, string_ids=False)
    ds = dataset(log)
    model = untrained(ds)
    assert catalogue(model).dtype == pl.Int64
    out = recommend(model, ds, users=["105", 101], k=3)  # text ids of integer users match
    assert out.schema["user_id"] == pl.Int64 and out.schema["item_id"] == pl.Int64
    assert out.get_column("user_id").unique(maintain_order=True).to_list() == [105, 101]
    assert set(out.get_column("item_id").to_list()) <= set(log.get_column("item_id").to_list())


def test_an_unknown_user_is_named_with_its_row(toy):
    _, ds = toy
    with pytest.raises(DataError, match=r"ids\.csv: row 1: user id 'zz' is not a user of dataset 'toy' \(2 of 3"):
        recommend(untrained(ds), ds, users=pl.Series(["u1", "zz", "yy"]), k=3, source="ids.csv")


def test_user_id_files(tmp_path):
    (tmp_path / "a.txt").write_text("u1\n\n u2 \n7\n")
    assert read_user_ids(tmp_path / "a.txt").to_list() == ["u1", "u2", "7"]
    (tmp_path / "b.csv").write_text("uid,x\n3,a\n1,b\n")
    ids = read_user_ids(tmp_path / "b.csv", "uid")
    assert ids.dtype == pl.Int64 and ids.to_list() == [3, 1]
    pl.DataFrame({"user_id": ["x", "y"]}).write_parquet(tmp_path / "c.parquet")
    assert read_user_ids(tmp_path / "c.parquet").to_list() == ["x", "y"]
    with pytest.raises(
        DataError, match=r"b\.csv: missing column 'user_id' \(for user_id\); the file has \['uid', 'x'\]"
    ):
        read_user_ids(tmp_path / "b.csv")
    (tmp_path / "d.xlsx").write_text("u1\n")
    with pytest.raises(DataError, match=r"d\.xlsx: cannot tell the format"):
        read_user_ids(tmp_path / "d.xlsx")


# ------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run folder trained for one epoch through the command line, and its dataset."""
    root = tmp_path_factory.mktemp("rec")
    raw_log().write_csv(root / "log.csv")
    assert main(["prepare", str(root / "log.csv"), "--out", str(root / "ds"), "--k-core", "1"]) == 0
    argv = ["train", str(root / "ds"), "--out", str(root / "run"), "--epochs", "1", "--hidden", "16"]
    assert main([*argv, "--blocks", "1", "--max-len", "6", "--device", "cpu", "--quiet"]) == 0
    return root


def test_recommend_command_writes_csv_parquet_and_jsonl(trained, capsys):
    root = trained
    (root / "users.txt").write_text("u4\nu9\n")
    for name in ("r.csv", "r.parquet", "r.jsonl"):
        assert main(["recommend", str(root / "run"), "--users", str(root / "users.txt"), "--k", "3",
                     "--out", str(root / name)]) == 0  # fmt: skip
    parquet = pl.read_parquet(root / "r.parquet")
    assert parquet.height == 6 and parquet.get_column("user_id").to_list() == ["u4"] * 3 + ["u9"] * 3
    for other in (pl.read_csv(root / "r.csv"), pl.read_ndjson(root / "r.jsonl")):
        assert other.get_column("item_id").to_list() == parquet.get_column("item_id").to_list()
        np.testing.assert_allclose(
            other.get_column("score").to_numpy(), parquet.get_column("score").to_numpy(), rtol=1e-6
        )
    assert "6 recommendations for 2 users" in capsys.readouterr().out


def _refused(argv: list[str], capsys, *needles: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def test_recommend_refusals(trained, capsys):
    root, run = trained, str(trained / "run")
    (root / "bad_users.csv").write_text("user_id\nu1\nnobody\n")
    _refused(["recommend", run, "--users", str(root / "bad_users.csv"), "--out", str(root / "o.csv")], capsys,
             "bad_users.csv: row 1: user id 'nobody' is not a user")  # fmt: skip
    (root / "h.csv").write_text("user_id,item\nx,sku-01\n")
    _refused(["recommend", run, "--histories", str(root / "h.csv"), "--out", str(root / "o.csv")], capsys,
             "h.csv: missing column 'item_id' (for item_id); the file has ['user_id', 'item']")  # fmt: skip
    (root / "mine.csv").write_text("keep me\n")
    (root / "u.txt").write_text("u1\n")
    _refused(["recommend", run, "--users", str(root / "u.txt"), "--out", str(root / "mine.csv")], capsys,
             "mine.csv: a file is already there; pass --overwrite")  # fmt: skip
    assert (root / "mine.csv").read_text() == "keep me\n"
    _refused(["recommend", run, "--users", str(root / "u.txt"), "--out", str(root / "o.xlsx")], capsys,
             "o.xlsx: cannot tell the output format")  # fmt: skip
    _refused(["recommend", run, "--users", str(root / "u.txt"), "--out", str(root / "u.txt"), "--format", "csv",
              "--overwrite"], capsys, "is the input")  # fmt: skip
    _refused(["recommend", run, "--users", str(root / "u.txt"), "--out", str(root / "ds" / "top.csv")], capsys,
             "top.csv: lies inside", "an input folder")  # fmt: skip
    _refused(["recommend", run, "--users", str(root / "u.txt"), "--out", str(root / "run" / "run.json"), "--format",
              "jsonl", "--overwrite"], capsys, "is the input")  # fmt: skip
    _refused(["recommend", str(root / "ds"), "--users", str(root / "u.txt"), "--out", str(root / "o.csv")], capsys,
             "not a training run folder")  # fmt: skip
    other = root / "other_ds"
    raw_log(seed=9).write_csv(root / "other.csv")
    assert main(["prepare", str(root / "other.csv"), "--out", str(other), "--k-core", "1"]) == 0
    capsys.readouterr()
    _refused(["recommend", run, "--users", str(root / "u.txt"), "--dataset", str(other), "--out", str(root / "o.csv")],
             capsys, "not the dataset this run was trained on")  # fmt: skip
    assert not (root / "o.csv").exists()


def test_a_dataset_with_the_same_users_but_other_interactions_is_not_the_runs(trained, capsys):
    # The same raw ids, lengths and training prefixes (what the fingerprint of earlier versions
    # covered), but every user's items rotated: recommend, evaluate and train must all refuse it.
    import dataclasses
    import shutil

    from seqdistill.data.dataset import fingerprints_match

    root = trained
    ds = PreparedDataset.load(root / "ds")
    items = ds.items.copy()
    for u in range(ds.n_users):
        a, b = ds.offsets[u], ds.offsets[u + 1]
        items[a:b] = np.roll(items[a:b], 1)
    assert not np.array_equal(items, ds.items)
    other = dataclasses.replace(ds, items=items)
    other.save(root / "same_users")
    old, new = ds.fingerprint(), other.fingerprint()
    assert old != new and old.startswith("v2-") and new.startswith("v2-")
    assert not fingerprints_match(old, new)
    who = old.split("-")[1]  # the short form earlier versions recorded matches on its part only
    assert fingerprints_match(who, old) and fingerprints_match(who, new) and not fingerprints_match(who + "0", old)
    (root / "u2.txt").write_text("u1\n")
    _refused(["recommend", str(root / "run"), "--users", str(root / "u2.txt"), "--dataset", str(root / "same_users"),
              "--out", str(root / "o2.csv")], capsys, "not the dataset this run was trained on")  # fmt: skip
    assert not (root / "o2.csv").exists()
    _refused(
        ["evaluate", str(root / "run"), str(root / "same_users")], capsys, "not the dataset this run was trained on"
    )
    copy = root / "run_copy"
    shutil.copytree(root / "run", copy)
    _refused(["train", str(root / "same_users"), "--out", str(copy), "--epochs", "1", "--hidden", "16", "--blocks",
              "1", "--max-len", "6", "--device", "cpu", "--quiet"], capsys, "holds a run with other settings (dataset_fingerprint")  # fmt: skip
    # A run of an earlier version recorded the short form: still its dataset, found finished.
    info = json.loads((copy / "run.json").read_text())
    info["dataset_fingerprint"] = who
    (copy / "run.json").write_text(json.dumps(info))
    argv = ["train", str(root / "ds"), "--out", str(copy), "--epochs", "1", "--hidden", "16", "--blocks", "1"]
    assert main([*argv, "--max-len", "6", "--device", "cpu", "--quiet"]) == 0
    assert main(["evaluate", str(copy), str(root / "ds")]) == 0
    capsys.readouterr()
    # (the short form cannot tell same_users from ds: that is what the full form was added for)


def _tree(folder) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_no_output_lands_in_the_runs_dataset_whatever_the_input(trained, capsys):
    """With --histories the run's dataset is not read, but --out inside it (even with --overwrite)
    would replace one of its files: refused as with --users, the dataset and the run left as they were."""
    root, run = trained, str(trained / "run")
    (root / "h.csv").write_text("user_id,item_id,timestamp\nnew,sku-01,1\nnew,sku-02,2\n")
    (root / "u.txt").write_text("u1\n")
    before = {name: _tree(root / name) for name in ("ds", "run")}
    for who in (["--histories", str(root / "h.csv")], ["--users", str(root / "u.txt")]):
        for target in ("users.parquet", "log.parquet", "manifest.json", "new.csv"):
            fmt = ["--format", "parquet"] if target.endswith(".parquet") else ["--format", "csv"]
            _refused(["recommend", run, *who, "--out", str(root / "ds" / target), *fmt, "--overwrite"], capsys,
                     f"{target}: lies inside", str(root / "ds"))  # fmt: skip
        _refused(["recommend", run, *who, "--out", str(root / "run" / "history.json"), "--format", "jsonl",
                  "--overwrite"], capsys, "is the input")  # fmt: skip
    # --dataset names a dataset to protect too, with --histories as with --users
    other = root / "other_for_out"
    assert main(["prepare", str(root / "log.csv"), "--out", str(other), "--k-core", "1"]) == 0
    capsys.readouterr()
    before["other"] = _tree(other)
    _refused(["recommend", run, "--histories", str(root / "h.csv"), "--dataset", str(other), "--out",
              str(other / "items.parquet"), "--overwrite"], capsys, "items.parquet: lies inside")  # fmt: skip
    assert {name: _tree(root / name) for name in ("ds", "run")} == {k: before[k] for k in ("ds", "run")}
    assert _tree(other) == before["other"]
    PreparedDataset.load(root / "ds")
    # a file of the user's own beside the run's files is still fine (docs/cli.md writes runs/mine/top10.csv)
    assert main(["recommend", run, "--histories", str(root / "h.csv"), "--k", "2",
                 "--out", str(root / "run" / "top.csv")]) == 0  # fmt: skip
    (root / "run" / "top.csv").unlink()
