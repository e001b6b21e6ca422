"""reduce_targets stores no pickle: a planted pickle never runs; UMAP is rebuilt by a checked refit."""

from __future__ import annotations

import ast
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from seqdistill.errors import ConfigError, DataError, StoreError
from seqdistill.profiles.reduce import ReduceConfig, reduce_targets

PROFILES = Path(__file__).resolve().parents[1] / "python" / "seqdistill" / "profiles"


class _Payload:
    """Unpickling this creates ``marker``: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(folder: Path, marker: Path) -> None:
    """Put a live payload where older versions kept the pickled UMAP reducer."""
    probe = folder / "probe"
    pickle.loads(pickle.dumps(_Payload(probe))).close()  # the payload works: unpickling creates the file
    assert probe.exists()
    probe.unlink()
    (folder / "reducer.pkl").write_bytes(pickle.dumps(_Payload(marker)))


def _data(n=40, d=12, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32)


def test_umap_transform_rebuilds_the_reducer_and_never_unpickles(tmp_path):
    umap = pytest.importorskip("umap")
    x = _data()
    users = np.arange(40)
    cfg = ReduceConfig(method="umap", dim=2, seed=3, n_neighbors=5)
    t_fit, _ = reduce_targets(users[:30], x[:30], 40, tmp_path, cfg)
    marker = tmp_path / "PWNED"
    _plant(tmp_path, marker)
    t_all, mask = reduce_targets(users, x, 40, tmp_path, cfg)
    assert not marker.exists()
    assert mask.all() and json.loads((tmp_path / "reduce.json").read_text())["transformed_users"] == 10
    np.testing.assert_array_equal(t_all[:30], t_fit[:30])
    # independent: umap-learn itself, fitted with the same settings, maps the new users the same way
    ref = umap.UMAP(
        n_components=2, n_neighbors=5, min_dist=0.1, metric="cosine", random_state=3, n_jobs=1, transform_seed=3
    ).fit(x[:30])
    np.testing.assert_array_equal(t_fit[:30], ref.embedding_)
    np.testing.assert_allclose(t_all[30:], ref.transform(x[30:]), atol=1e-6)


def test_umap_layout_that_cannot_be_rebuilt_is_an_error(tmp_path):
    pytest.importorskip("umap")
    x = _data()
    cfg = ReduceConfig(method="umap", dim=2, seed=3, n_neighbors=5)
    reduce_targets(np.arange(30), x[:30], 40, tmp_path, cfg)
    fit = np.load(tmp_path / "fit_targets.npy")
    fit[4, 1] += 1e-3  # the saved layout no longer matches what its inputs and seed give
    np.save(tmp_path / "fit_targets.npy", fit)
    with pytest.raises(StoreError, match="does not reproduce fit_targets.npy.*refit=True"):
        reduce_targets(np.arange(40), x, 40, tmp_path, cfg)


def test_folder_from_the_pickle_era_needs_a_refit_and_the_pickle_never_runs(tmp_path):
    pytest.importorskip("umap")
    x = _data()
    cfg = ReduceConfig(method="umap", dim=2, seed=3, n_neighbors=5)
    reduce_targets(np.arange(30), x[:30], 40, tmp_path, cfg)
    (tmp_path / "fit_inputs.npy").unlink()  # what older versions left: reduce.json + reducer.pkl
    marker = tmp_path / "PWNED"
    _plant(tmp_path, marker)
    # the fitted users alone need no reducer
    t, m = reduce_targets(np.arange(30), x[:30], 40, tmp_path, cfg)
    assert m.sum() == 30
    with pytest.raises(StoreError, match=r"fit_inputs.npy: missing.*reducer.pkl.*never unpickled.*refit=True"):
        reduce_targets(np.arange(40), x, 40, tmp_path, cfg)
    t2, m2 = reduce_targets(np.arange(40), x, 40, tmp_path, cfg, refit=True)
    assert m2.all() and not marker.exists()


def test_pca_saved_as_plain_arrays(tmp_path):
    x = _data()
    cfg = ReduceConfig(method="pca", dim=3)
    reduce_targets(np.arange(30), x[:30], 40, tmp_path, cfg)
    with np.load(tmp_path / "pca.npz", allow_pickle=False) as z:  # refuses object arrays
        assert sorted(z.files) == ["components", "evr", "mean"]
    marker = tmp_path / "PWNED"
    _plant(tmp_path, marker)
    t, m = reduce_targets(np.arange(40), x, 40, tmp_path, cfg)
    centred = x.astype(np.float64) - x[:30].astype(np.float64).mean(axis=0)
    _, _, vt = np.linalg.svd(centred[:30], full_matrices=False)
    np.testing.assert_allclose(np.abs(t[30:]), np.abs(centred[30:] @ vt[:3].T), atol=1e-4)
    assert not marker.exists()


def test_profiles_code_never_unpickles():
    """No module under profiles/ imports pickle, calls torch.load or passes allow_pickle=True."""
    for path in sorted(PROFILES.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(n.split(".")[0] in ("pickle", "cloudpickle", "joblib", "dill") for n in names), path
            if isinstance(node, ast.Call):
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
                owner = getattr(f.value, "id", "") if isinstance(f, ast.Attribute) else ""
                assert (owner, name) != ("torch", "load"), f"{path}:{node.lineno}"
                for kw in node.keywords:
                    if kw.arg == "allow_pickle":
                        assert isinstance(kw.value, ast.Constant) and kw.value.value is False, f"{path}:{node.lineno}"


def test_bad_inputs_name_the_argument(tmp_path):
    cfg = ReduceConfig("pca", 2)
    with pytest.raises(DataError, match=r"embeddings: expected a numeric array of shape \[3, d\]"):
        reduce_targets(np.arange(3), np.zeros((2, 4)), 10, tmp_path, cfg)
    with pytest.raises(DataError, match=r"users: expected a 1-d array of integer"):
        reduce_targets(np.array([0.5, 1.0]), np.zeros((2, 4)), 10, tmp_path, cfg)
    x = np.ones((3, 4))
    x[1, 2] = np.nan
    with pytest.raises(DataError, match="non-finite values .*row 1, user 5"):
        reduce_targets(np.array([0, 5, 7]), x, 10, tmp_path, cfg)
    for kw, key in (
        ({"dim": 0}, "dim"),
        ({"dim": 2.5}, "dim"),
        ({"n_neighbors": 1}, "n_neighbors"),
        ({"min_dist": float("nan")}, "min_dist"),
        ({"method": "tsne"}, "method"),
        ({"seed": -1}, "seed"),
    ):
        with pytest.raises(ConfigError, match=f"ReduceConfig.{key}"):
            ReduceConfig(**kw)
    assert not any(tmp_path.iterdir())  # nothing written for a refused call
    reduce_targets(np.arange(6), _data(6, 4), 10, tmp_path, cfg)
    with pytest.raises(DataError, match="embeddings: 5-d, the reducer .* fitted on 4-d"):
        reduce_targets(np.arange(8), _data(8, 5), 10, tmp_path, cfg)


def test_umap_fitted_in_another_process_is_rebuilt_here(tmp_path):
    """The refit happens in a later process in real use: it must reproduce the saved layout there."""
    import subprocess
    import sys

    pytest.importorskip("umap")
    x = _data(n=60, d=16, seed=4)
    np.save(tmp_path / "x.npy", x)
    code = (
        "import numpy as np, sys; from seqdistill.profiles.reduce import ReduceConfig, reduce_targets; "
        "x = np.load(sys.argv[1]); reduce_targets(np.arange(50), x[:50], 60, sys.argv[2], "
        "ReduceConfig('umap', dim=3, seed=9, n_neighbors=6))"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "x.npy"), str(tmp_path / "r")],
        check=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    t, m = reduce_targets(np.arange(60), x, 60, tmp_path / "r", ReduceConfig("umap", dim=3, seed=9, n_neighbors=6))
    assert m.all() and json.loads((tmp_path / "r" / "reduce.json").read_text())["transformed_users"] == 10
    np.testing.assert_array_equal(t[:50], np.load(tmp_path / "r" / "fit_targets.npy"))


def _tree(root):
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def test_outputs_it_did_not_write_are_refused_before_any_work(tmp_path, monkeypatch):
    from seqdistill.errors import OutputError
    from seqdistill.profiles import reduce as reduce_mod

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "targets.npy").write_text("the user's, same name")
    emb = tmp_path / "emb"  # what 'profiles encode' writes: not a folder of targets
    emb.mkdir()
    (emb / "encode.json").write_text("{}")
    np.save(emb / "embeddings.npy", _data(6, 4))
    (tmp_path / "t.npy").write_text("a file")

    def no_fit(*a, **k):
        raise AssertionError("fitted before the output was checked")

    monkeypatch.setattr(reduce_mod, "fit_reducer", no_fit)
    before = _tree(tmp_path)
    for out, words in (
        (mine, "mine: folder exists and is not a folder of targets"),
        (emb, "emb: folder exists"),
        (tmp_path / "t.npy", "t.npy: exists and is not a folder"),
        (tmp_path, "folder exists"),
    ):
        for refit in (False, True):
            with pytest.raises(OutputError, match=words):
                reduce_targets(np.arange(6), _data(6, 4), 10, out, ReduceConfig("pca", 2), refit=refit)
    assert _tree(tmp_path) == before


def test_a_refit_replaces_the_folder_whole_and_a_failed_one_keeps_the_old(tmp_path, monkeypatch):
    from seqdistill.profiles import reduce as reduce_mod

    out = tmp_path / "t"
    x = _data(8, 5)
    t1, _ = reduce_targets(np.arange(8), x, 10, out, ReduceConfig("pca", 2))
    (out / "reducer.pkl").write_bytes(b"left by an older version")
    before = _tree(out)

    def crash(*a, **k):
        raise RuntimeError("killed mid-fit")

    monkeypatch.setattr(reduce_mod, "save_reducer", crash)
    with pytest.raises(RuntimeError, match="killed mid-fit"):
        reduce_targets(np.arange(8), x, 10, out, ReduceConfig("pca", 3), refit=True)
    assert _tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["t"]
    monkeypatch.undo()
    t3, _ = reduce_targets(np.arange(8), x, 10, out, ReduceConfig("pca", 3), refit=True)
    assert not (out / "reducer.pkl").exists() and t3.shape == (10, 3)
    assert json.loads((out / "reduce.json").read_text())["config"]["dim"] == 3
    centred = x.astype(np.float64) - x.astype(np.float64).mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    np.testing.assert_allclose(np.abs(t3[:8]), np.abs(centred @ vt[:3].T), atol=1e-4)
    np.testing.assert_allclose(np.abs(t1[:8]), np.abs(centred @ vt[:2].T), atol=1e-4)
