"""The profile probe: finds a planted signal, finds none in shuffled profiles, is deterministic,
scores average precision like a hand computation, and refuses bad inputs in one line."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from seqdistill import _io, datasets
from seqdistill.cli import main
from seqdistill.data import SplitConfig, prepare
from seqdistill.errors import DataError, SeqdistillError, StoreError
from seqdistill.profiles.probe import ProbeConfig, average_precision, future_tags, load_vectors, probe


@pytest.fixture(scope="module")
def planted():
    """Synthetic users (short histories) and their planted category preferences plus a little noise."""
    raw = datasets.synthetic(n_users=600, n_items=300, seed=0, median_length=6)
    ds = prepare(raw, k_core=(2, 2), split=SplitConfig(kind="leave_one_out"))
    theta = np.stack(raw.extra["personas"]["vector"].to_list())[
        :, : raw.extra["persona_vector_layout"]["category_weights"][1]
    ]
    v = theta[ds.user_ids.to_numpy().astype(np.int64)]
    v = v + 0.05 * np.random.default_rng(1).standard_normal(v.shape)
    return ds, v


FAST = ProbeConfig(seed=0, n_boot=1000, profile_weights=[0.0, 0.5, 1.0, 2.0])


def test_the_probe_finds_the_planted_signal(planted):
    ds, v = planted
    r = probe(ds, v, np.ones(ds.n_users, bool), FAST)
    assert r.tag_column == "category" and r.n_tags == 8
    assert r.gain_ci[0] > 0, r.lines()
    assert r.map["profile"] > r.map["prior"] and r.map["both"] > r.map["items"]
    assert sum(r.n_users.values()) <= ds.n_users


def test_shuffled_profiles_carry_nothing(planted):
    ds, v = planted
    shuffled = v[np.random.default_rng(7).permutation(len(v))]
    r = probe(ds, shuffled, np.ones(ds.n_users, bool), FAST)
    lo, hi = r.gain_ci
    assert lo <= 0 <= hi, r.lines()
    assert r.profile_gain < 0.02


def test_the_probe_is_deterministic_and_the_seed_is_recorded(planted):
    ds, v = planted
    mask = np.ones(ds.n_users, bool)
    cfg = ProbeConfig(seed=3, n_boot=200, profile_weights=[0.0, 1.0], ridge=[1.0, 10.0])
    a, b = probe(ds, v, mask, cfg), probe(ds, v, mask, cfg)
    da, db = a.to_dict(), b.to_dict()
    da.pop("seconds"), db.pop("seconds")
    assert da == db and da["config"]["seed"] == 3
    json.dumps(da)  # plain JSON


def test_average_precision_by_hand():
    scores = np.array([[0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.5, 0.5]])
    labels = np.array([[1, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0]], float)
    # row 0: ranks 1 and 3 -> (1/1 + 2/3) / 2; row 1: rank 4 -> 1/4; row 2: ties in column order, rank 2 -> 1/2
    assert average_precision(scores, labels) == pytest.approx([(1 + 2 / 3) / 2, 0.25, 0.5])


def test_future_tags_are_those_of_the_items_after_the_training_prefix(planted):
    ds, _ = planted
    y, names, column = future_tags(ds)
    cat = dict(zip(ds.item_meta["item"].to_list(), ds.item_meta["category"].to_list()))
    for u in (0, 5, 17):
        held = ds.items[ds.offsets[u] + ds.train_end[u] : ds.offsets[u + 1]].tolist()
        assert {names[i] for i in np.flatnonzero(y[u])} == {cat[it] for it in held}
    y1, names1, _ = future_tags(ds, horizon=1)
    assert names1 == names
    for u in (0, 5, 17):
        nxt = int(ds.items[ds.offsets[u] + ds.train_end[u]])
        assert {names[i] for i in np.flatnonzero(y1[u])} == {cat[nxt]}


# ------------------------------------------------------------------------------ bad inputs
def _one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text and isinstance(e.value, SeqdistillError)
    return text


def test_bad_vectors_are_refused(planted):
    ds, v = planted
    mask = np.ones(ds.n_users, bool)
    with pytest.raises(DataError) as e:
        probe(ds, v[:-1], mask[:-1])
    assert "shape" in _one_line(e)
    bad = v.copy()
    bad[4, 2] = np.nan
    with pytest.raises(DataError) as e:
        probe(ds, bad, mask)
    assert "row 4" in _one_line(e) and "NaN" in _one_line(e)
    few = np.zeros(ds.n_users, bool)
    few[:12] = True  # profiles of a few users only
    with pytest.raises(DataError) as e:
        probe(ds, v, few)
    assert "fewer than 10 users" in _one_line(e)


def test_a_dataset_without_tags_is_refused(planted):
    ds, v = planted
    import dataclasses

    bare = dataclasses.replace(ds, item_meta=ds.item_meta.select("item", "item_id", "title"))
    with pytest.raises(DataError) as e:
        probe(bare, v, np.ones(ds.n_users, bool))
    assert "no tag column" in _one_line(e) and "title" in _one_line(e)


@pytest.fixture(scope="module")
def folders(planted, tmp_path_factory):
    """The dataset saved, its vectors as a .npy, a targets folder, an embeddings folder and the
    targets and embeddings of another dataset."""
    ds, v = planted
    root = tmp_path_factory.mktemp("probe")
    ds.save(root / "ds")
    _io.write_npy(root / "v.npy", v.astype(np.float32))
    (root / "targets").mkdir()
    _io.write_npy(root / "targets" / "targets.npy", v.astype(np.float32))
    _io.write_npy(root / "targets" / "targets_mask.npy", np.ones(ds.n_users, bool))
    _io.write_npy(root / "other.npy", v[:-3].astype(np.float32))
    emb = root / "emb"
    emb.mkdir()
    _io.write_npy(emb / "embeddings.npy", v.astype(np.float32))
    _io.write_npy(emb / "embedding_users.npy", np.arange(ds.n_users, dtype=np.int64))
    _io.write_json(emb / "encode.json", {"store_meta": {"fingerprint": ds.fingerprint()}})
    other = root / "emb_other"
    other.mkdir()
    for name in ("embeddings.npy", "embedding_users.npy"):
        (other / name).write_bytes((emb / name).read_bytes())
    _io.write_json(other / "encode.json", {"store_meta": {"fingerprint": "0" * 32}})
    return root


def test_every_kind_of_input_gives_the_same_vectors(planted, folders):
    ds, v = planted
    for name in ("v.npy", "targets", "emb"):
        values, mask, source = load_vectors(folders / name, ds)
        assert mask.all() and np.allclose(values, v.astype(np.float32)), source


def test_targets_of_another_dataset_are_refused(planted, folders):
    ds, _ = planted
    with pytest.raises(DataError) as e:
        load_vectors(folders / "other.npy", ds)
    assert "another dataset" in _one_line(e)
    with pytest.raises(StoreError) as e:
        load_vectors(folders / "emb_other", ds)
    assert "fingerprint" in _one_line(e)
    with pytest.raises(DataError) as e:
        load_vectors(folders / "ds", ds)
    assert "neither embeddings" in _one_line(e)


def test_cli_probe_prints_the_table_and_writes_json(folders, capsys):
    assert (
        main(
            [
                "profiles",
                "probe",
                str(folders / "ds"),
                str(folders / "v.npy"),
                "--n-boot",
                "200",
                "--out",
                str(folders / "p.json"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "gain of profile + items over items" in out and "| both |" in out
    assert json.loads((folders / "p.json").read_text())["config"]["n_boot"] == 200


def test_cli_probe_never_replaces_a_file_without_overwrite(folders, capsys):
    mine = folders / "mine.json"
    mine.write_text("my notes")
    argv = ["profiles", "probe", str(folders / "ds"), str(folders / "v.npy"), "--n-boot", "50", "--out", str(mine)]
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err and mine.read_text() == "my notes"
    assert main([*argv, "--overwrite"]) == 0
    assert json.loads(mine.read_text())["config"]["n_boot"] == 50
    assert main([*argv[:-1], str(folders), "--overwrite"]) == 2  # a folder is never replaced


@pytest.mark.parametrize(
    "targets, out",
    [
        ("v.npy", "ds/manifest.json"),
        ("v.npy", "ds/users.parquet"),
        ("v.npy", "v.npy"),
        ("targets", "targets/targets.npy"),
        ("targets", "targets/notes.json"),
    ],
)
def test_cli_probe_never_writes_into_its_inputs_even_with_overwrite(folders, capsys, targets, out):
    """``--out DATASET/manifest.json --overwrite`` would break the dataset: refused, nothing changed."""
    before = {p: p.read_bytes() for p in sorted(folders.rglob("*")) if p.is_file()}
    argv = ["profiles", "probe", str(folders / "ds"), str(folders / targets), "--n-boot", "50"]
    assert main([*argv, "--out", str(folders / out), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"seqdistill profiles probe: error: --out {folders / out}: "), err
    assert "an input; write the result elsewhere" in err
    assert {p: p.read_bytes() for p in sorted(folders.rglob("*")) if p.is_file()} == before


@pytest.mark.parametrize("target", ["other.npy", "emb_other", "missing.npy"])
def test_cli_probe_refuses_in_one_line_without_traceback(folders, capsys, target):
    assert main(["profiles", "probe", str(folders / "ds"), str(folders / target)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "error:" in err


def test_cli_stats_of_a_store(tmp_path, capsys):
    from test_profiles_pipeline import FakeBackend
    from test_profiles_toy import movie_dataset

    from seqdistill.profiles.pipeline import generate_profiles

    generate_profiles(movie_dataset(n_users=4, seed=1), FakeBackend(), tmp_path / "s", progress=False)
    assert main(["profiles", "stats", "--store", str(tmp_path / "s"), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["n_ok"] == 4 and st["loop_rate"] == 0.0 and st["names_outside_item"] is None
    assert pl.read_parquet(next((tmp_path / "s").glob("part-*.parquet"))).height == 4


def test_experiment_folder_probes_each_source_and_names_what_cannot_run(planted, folders, tmp_path):
    import shutil

    from seqdistill.profiles.probe import experiment_probes, probe_markdown

    ds, _ = planted
    exp = tmp_path / "exp"
    ds.save(exp / "dataset")
    shutil.copytree(folders / "emb", exp / "targets" / "main" / "embeddings")
    shutil.copytree(folders / "emb_other", exp / "targets" / "stats" / "embeddings")
    found = experiment_probes(exp, FAST)
    assert set(found) == {"main", "stats"}
    assert found["main"]["gain_ci"][0] > 0 and found["main"]["source"] == "targets/main/embeddings"
    assert "fingerprint" in found["stats"]["error"]
    md = probe_markdown(found)
    assert any(line.startswith("| main | ") for line in md) and any("| stats | not run: " in line for line in md)
    assert experiment_probes(tmp_path / "nothing") == {} and probe_markdown({}) == []
