"""Embeddings -> distillation targets: UMAP (the paper's choice) or PCA to the recommender's size.

The reducer is fitted once on the users given at fit time (the training users with a profile)
and saved beside the targets; users added later are transformed with the saved reducer, not
refitted. Output, aligned to dense user ids: ``targets.npy`` float32 [n_users, dim] (rows of users
without a profile are zero), ``targets_mask.npy`` bool [n_users], ``reduce.json`` (settings,
seed, library versions), and the reducer (``reducer.pkl`` for UMAP, ``pca.npz`` for PCA).
"""
from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .encode import save_npy
from .store import atomic_write_bytes, atomic_write_json
from seqdistill._config import DictConfig


@dataclass
class ReduceConfig(DictConfig):
    """method: "umap" or "pca"; dim: the recommender's hidden size; seed fixes UMAP."""

    method: str = "umap"
    dim: int = 64
    seed: int = 0
    n_neighbors: int = 15
    min_dist: float = 0.1
    metric: str = "cosine"

    def __post_init__(self) -> None:
        if self.method not in ("umap", "pca"):
            raise ValueError(f"ReduceConfig.method: expected 'umap' or 'pca', got {self.method!r}")
        if self.dim < 1:
            raise ValueError(f"ReduceConfig.dim must be >= 1, got {self.dim}")


class PCA:
    """PCA by numpy SVD; each component's sign makes its largest-magnitude loading positive."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.mean: np.ndarray | None = None
        self.components: np.ndarray | None = None
        self.explained_variance_ratio: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> "PCA":
        x = np.asarray(x, dtype=np.float64)
        if self.dim > min(x.shape):
            raise ValueError(f"PCA: dim {self.dim} exceeds min(n_samples, n_features) = {min(x.shape)}")
        self.mean = x.mean(axis=0)
        _, s, vt = np.linalg.svd(x - self.mean, full_matrices=False)
        comps = vt[: self.dim]
        signs = np.sign(comps[np.arange(self.dim), np.abs(comps).argmax(axis=1)])
        self.components = comps * np.where(signs == 0, 1.0, signs)[:, None]
        var = s ** 2
        self.explained_variance_ratio = var[: self.dim] / max(var.sum(), 1e-300)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self.components is None:
            raise RuntimeError("PCA: transform before fit")
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.components.T

    def save(self, path: Path) -> None:
        import io

        buf = io.BytesIO()
        np.savez(buf, mean=self.mean, components=self.components, evr=self.explained_variance_ratio)
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> "PCA":
        z = np.load(path)
        p = cls(int(z["components"].shape[0]))
        p.mean, p.components, p.explained_variance_ratio = z["mean"], z["components"], z["evr"]
        return p


def fit_reducer(x: np.ndarray, config: ReduceConfig) -> Any:
    """A fitted reducer with a ``transform`` method."""
    if config.method == "pca":
        return PCA(config.dim).fit(x)
    import umap

    n = len(x)
    if config.dim >= n - 1:
        raise ValueError(f"UMAP: dim {config.dim} needs more than {config.dim + 1} fitted users, got {n}")
    reducer = umap.UMAP(n_components=config.dim, n_neighbors=min(config.n_neighbors, n - 1),
                        min_dist=config.min_dist, metric=config.metric, random_state=config.seed, n_jobs=1,
                        transform_seed=config.seed)
    reducer.fit(np.asarray(x, dtype=np.float32))
    return reducer


def _reducer_file(method: str) -> str:
    return "pca.npz" if method == "pca" else "reducer.pkl"


def save_reducer(reducer: Any, out_dir: Path, config: ReduceConfig) -> None:
    path = out_dir / _reducer_file(config.method)
    if config.method == "pca":
        reducer.save(path)
    else:
        atomic_write_bytes(path, pickle.dumps(reducer, protocol=pickle.HIGHEST_PROTOCOL))


def load_reducer(out_dir: Path, config: ReduceConfig) -> Any:
    path = out_dir / _reducer_file(config.method)
    if config.method == "pca":
        return PCA.load(path)
    with open(path, "rb") as f:
        return pickle.load(f)


def reduce_targets(users: np.ndarray, embeddings: np.ndarray, n_users: int, out_dir: str | os.PathLike,
                   config: ReduceConfig | None = None, refit: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Targets for dense users ``0..n_users-1`` from (users, embeddings) rows.

    The first call (or ``refit=True``) fits the reducer on these rows and saves it in
    ``out_dir``; later calls load the saved reducer (its settings must match ``config``) and
    only transform. Writes targets.npy, targets_mask.npy and reduce.json atomically.
    """
    config = config or ReduceConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    users = np.asarray(users, dtype=np.int64)
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or len(x) != len(users):
        raise ValueError(f"embeddings: expected shape [{len(users)}, d], got {x.shape}")
    if users.size and (users.min() < 0 or users.max() >= n_users):
        raise ValueError(f"users: dense ids must be within 0..{n_users - 1}, got {users.min()}..{users.max()}")
    if len(np.unique(users)) != len(users):
        raise ValueError("users: duplicate dense user ids")
    if not np.isfinite(x).all():
        raise ValueError("embeddings: non-finite values")
    settings_path = out / "reduce.json"
    fitted_now = refit or not settings_path.is_file()
    if fitted_now:
        reducer = fit_reducer(x, config)
        save_reducer(reducer, out, config)
        # UMAP's transform of its own training points differs from its fitted layout: keep the fit.
        z = np.asarray(reducer.embedding_ if config.method == "umap" else reducer.transform(x), dtype=np.float32)
        save_npy(out / "fit_users.npy", users)
        save_npy(out / "fit_targets.npy", z)
        n_new = 0
    else:
        saved = json.loads(settings_path.read_text())
        if saved["config"] != config.to_dict():
            raise ValueError(f"{settings_path}: saved reducer has settings {saved['config']}, asked for "
                             f"{config.to_dict()}; pass refit=True or another folder")
        fit_users = np.load(out / "fit_users.npy")
        fit_z = np.load(out / "fit_targets.npy")
        z = np.zeros((len(users), config.dim), dtype=np.float32)
        pos = {int(u): i for i, u in enumerate(fit_users.tolist())}
        known = np.array([int(u) in pos for u in users.tolist()], dtype=bool)
        z[known] = fit_z[[pos[int(u)] for u in users[known].tolist()]]
        n_new = int((~known).sum())
        if n_new:
            reducer = load_reducer(out, config)
            z[~known] = np.asarray(reducer.transform(x[~known]), dtype=np.float32)
    fit_info = {"fit_users": int(len(np.load(out / "fit_users.npy"))), "transformed_users": n_new}
    targets = np.zeros((n_users, config.dim), dtype=np.float32)
    mask = np.zeros(n_users, dtype=bool)
    targets[users] = z
    mask[users] = True
    save_npy(out / "targets.npy", targets)
    save_npy(out / "targets_mask.npy", mask)
    info = {"config": config.to_dict(), "n_users": int(n_users), "n_with_profile": int(mask.sum()),
            "input_dim": int(x.shape[1]), "versions": _versions(config.method), **fit_info}
    if config.method == "pca":
        info["explained_variance"] = float(PCA.load(out / "pca.npz").explained_variance_ratio.sum())
    atomic_write_json(settings_path, info)
    return targets, mask


def _versions(method: str) -> dict[str, str]:
    v = {"numpy": np.__version__}
    if method == "umap":
        import umap

        v["umap-learn"] = getattr(umap, "__version__", "unknown")
    return v
