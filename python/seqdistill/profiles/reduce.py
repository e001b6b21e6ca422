"""Embeddings -> distillation targets: UMAP (the paper's choice) or PCA to the recommender's size.

The reducer is fitted once on the users given at fit time (the training users with a profile);
users added later are transformed with that fit, not refitted. Output, aligned to dense user ids:
``targets.npy`` float32 [n_users, dim] (rows of users without a profile are zero),
``targets_mask.npy`` bool [n_users], ``reduce.json`` (settings, seed, library versions), the fitted
users and their targets (``fit_users.npy``, ``fit_targets.npy``) and what a later transform needs.

Nothing here is ever unpickled. A reducer folder can be handed from one person to another, and a
pickle runs whatever code it was built to run when loaded, so the reducer is stored as plain
arrays and JSON only, read with ``allow_pickle=False``:

* PCA: ``pca.npz`` holds the mean, the components and the explained-variance ratios.
* UMAP: a fitted ``umap.UMAP`` cannot be rebuilt from arrays (its transform searches a nearest-
  neighbour index), so ``fit_inputs.npy`` keeps the embeddings it was fitted on. To transform new
  users the reducer is fitted again from those inputs with the saved settings and seed
  (single-threaded, hence deterministic) and its layout must equal ``fit_targets.npy`` bit for bit;
  if it does not (another umap-learn, numba or numpy), the call stops with a
  :class:`~seqdistill.errors.StoreError` instead of transforming with a different map.
  The price is one extra fit whenever new users arrive.

A ``reducer.pkl`` written by older versions is ignored, never loaded: a folder that has only it
needs ``refit=True``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqdistill import _io
from seqdistill._checks import check_seed
from seqdistill._config import DictConfig
from seqdistill.errors import ConfigError, DataError, StoreError


def _is_int(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


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
            raise ConfigError(f"ReduceConfig.method: expected 'umap' or 'pca', got {self.method!r}")
        if not _is_int(self.dim) or self.dim < 1:
            raise ConfigError(f"ReduceConfig.dim: expected an integer >= 1, got {self.dim!r}")
        check_seed(self)
        if not _is_int(self.n_neighbors) or self.n_neighbors < 2:
            raise ConfigError(f"ReduceConfig.n_neighbors: expected an integer >= 2, got {self.n_neighbors!r}")
        md = self.min_dist
        if not isinstance(md, (int, float)) or isinstance(md, bool) or not 0 <= md < math.inf:
            raise ConfigError(f"ReduceConfig.min_dist: expected a finite number >= 0, got {md!r}")
        if not isinstance(self.metric, str) or not self.metric:
            raise ConfigError(f"ReduceConfig.metric: expected a UMAP metric name, got {self.metric!r}")


class PCA:
    """PCA by numpy SVD; each component's sign makes its largest-magnitude loading positive."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.mean: np.ndarray | None = None
        self.components: np.ndarray | None = None
        self.explained_variance_ratio: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> PCA:
        x = np.asarray(x, dtype=np.float64)
        if self.dim > min(x.shape):
            raise ConfigError(f"PCA: dim {self.dim} exceeds min(n_samples, n_features) = {min(x.shape)}")
        self.mean = x.mean(axis=0)
        _, s, vt = np.linalg.svd(x - self.mean, full_matrices=False)
        comps = vt[: self.dim]
        signs = np.sign(comps[np.arange(self.dim), np.abs(comps).argmax(axis=1)])
        self.components = comps * np.where(signs == 0, 1.0, signs)[:, None]
        var = s**2
        self.explained_variance_ratio = var[: self.dim] / max(var.sum(), 1e-300)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self.components is None:
            raise RuntimeError("PCA: transform before fit")
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.components.T

    def save(self, path: Path) -> None:
        """Plain arrays in one ``.npz`` (no pickled objects)."""
        with _io.atomic_file(path) as f:
            np.savez(f, mean=self.mean, components=self.components, evr=self.explained_variance_ratio)

    @classmethod
    def load(cls, path: Path) -> PCA:
        try:
            with np.load(path, allow_pickle=False) as z:
                mean, comps, evr = z["mean"], z["components"], z["evr"]
        except (OSError, KeyError, ValueError, EOFError) as e:
            raise StoreError(f"{path}: cannot read the saved PCA ({type(e).__name__}: {e}); pass refit=True") from None
        p = cls(int(comps.shape[0]))
        p.mean, p.components, p.explained_variance_ratio = mean, comps, evr
        return p


def fit_reducer(x: np.ndarray, config: ReduceConfig) -> Any:
    """A fitted reducer with a ``transform`` method (UMAP: ``embedding_`` is the fitted layout)."""
    if config.method == "pca":
        return PCA(config.dim).fit(x)
    import umap
    from umap.distances import named_distances

    if config.metric not in named_distances:
        raise ConfigError(f"ReduceConfig.metric: {config.metric!r} is not a UMAP metric; e.g. 'cosine', 'euclidean'")
    n = len(x)
    if config.dim >= n - 1:
        raise DataError(f"UMAP: dim {config.dim} needs more than {config.dim + 1} fitted users, got {n}")
    reducer = umap.UMAP(
        n_components=config.dim,
        n_neighbors=min(config.n_neighbors, n - 1),
        min_dist=config.min_dist,
        metric=config.metric,
        random_state=config.seed,
        n_jobs=1,
        transform_seed=config.seed,
    )
    reducer.fit(np.asarray(x, dtype=np.float32))
    return reducer


def save_reducer(reducer: Any, out_dir: Path, config: ReduceConfig, x: np.ndarray) -> None:
    """PCA: its arrays. UMAP: the inputs it was fitted on (see the module doc)."""
    if config.method == "pca":
        reducer.save(out_dir / "pca.npz")
    else:
        _io.write_npy(out_dir / "fit_inputs.npy", np.asarray(x, dtype=np.float32))


def load_reducer(out_dir: Path, config: ReduceConfig, fit_targets: np.ndarray) -> Any:
    """The saved reducer, rebuilt from arrays only; UMAP is refitted and checked against
    ``fit_targets`` (its saved layout) bit for bit."""
    if config.method == "pca":
        return PCA.load(out_dir / "pca.npz")
    inputs = out_dir / "fit_inputs.npy"
    if not inputs.is_file():
        old = " (reducer.pkl from an older version is never unpickled)" if (out_dir / "reducer.pkl").exists() else ""
        raise StoreError(f"{inputs}: missing, so new users cannot be transformed{old}; pass refit=True to fit again")
    x = _load_npy(inputs)
    reducer = fit_reducer(x, config)
    rebuilt = np.asarray(reducer.embedding_, dtype=np.float32)
    if rebuilt.shape != fit_targets.shape or not np.array_equal(rebuilt, fit_targets):
        saved = _read_info(out_dir / "reduce.json").get("versions", {})
        raise StoreError(
            f"{out_dir}: refitting UMAP from fit_inputs.npy does not reproduce fit_targets.npy (saved with "
            f"{saved}, now {_versions('umap')}); pass refit=True to fit all users again"
        )
    return reducer


def _load_npy(path: Path) -> np.ndarray:
    return _io.read_npy(path, error=StoreError, hint="pass refit=True (--refit)")


def _read_info(path: Path) -> dict[str, Any]:
    try:
        info = _io.loads_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StoreError(f"{path}: cannot read ({type(e).__name__}: {e}); pass refit=True") from None
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
        raise StoreError(f"{path}: not a reduce.json written by seqdistill (no 'config' object)")
    return info


def _check_inputs(users: np.ndarray, embeddings: Any, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    users = np.asarray(users)
    if users.ndim != 1 or not (users.size == 0 or np.issubdtype(users.dtype, np.integer)):
        raise DataError(
            f"users: expected a 1-d array of integer dense ids, got dtype {users.dtype} shape {users.shape}"
        )
    users = users.astype(np.int64)
    x = np.asarray(embeddings)
    if np.iscomplexobj(x):  # a cast to float would silently drop the imaginary part
        raise DataError(f"embeddings: expected real numbers, got complex values ({x.dtype})")
    if x.ndim != 2 or len(x) != len(users) or not np.issubdtype(x.dtype, np.number):
        raise DataError(f"embeddings: expected a numeric array of shape [{len(users)}, d], got {x.dtype} {x.shape}")
    x = x.astype(np.float32)
    if not _is_int(n_users) or n_users < 1:
        raise DataError(f"n_users: expected an integer >= 1, got {n_users!r}")
    if users.size and (users.min() < 0 or users.max() >= n_users):
        raise DataError(f"users: dense ids must be within 0..{n_users - 1}, got {users.min()}..{users.max()}")
    if len(np.unique(users)) != len(users):
        raise DataError("users: duplicate dense user ids")
    if not np.isfinite(x).all():
        row = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise DataError(f"embeddings: non-finite values (first in row {row}, user {users[row]})")
    return users, x


MARKER = "reduce.json"  # written last into every folder reduce_targets makes: the folder is ours
_WHAT = "folder of targets written by profiles reduce"
# Every name reduce_targets writes (reducer.pkl: the pickle of older versions, never opened).
_FILES = frozenset(
    {MARKER, "targets.npy", "targets_mask.npy", "pca.npz", "fit_inputs.npy", "fit_users.npy", "fit_targets.npy"}
    | {"reducer.pkl"}
)


def is_reduce_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` was written by :func:`reduce_targets` (it holds ``reduce.json``)."""
    return (Path(folder) / MARKER).is_file()


def check_reduce_out(out_dir: str | os.PathLike, refit: bool = False) -> None:
    """Refuse, before any work, an output folder :func:`reduce_targets` may not write: a file, or
    a folder of someone else's files (anything but new, empty or a folder of targets written by
    ``reduce_targets``), or — with ``refit``, which replaces the folder — a folder of targets that
    also holds a file ``reduce_targets`` does not write. Raises OutputError naming the folder."""
    out = Path(out_dir)
    _io.recover_dir(out)  # an interrupted swap: the complete copy put back, temporaries dropped
    # A folder of targets is resumed or, with refit=True, replaced: both are asked for explicitly.
    known = _FILES.__contains__ if refit else None  # resuming rewrites our files only, deleting nothing
    _io.check_replaceable(out, is_reduce_folder, _WHAT, overwrite=True, known=known)


def reduce_targets(
    users: np.ndarray,
    embeddings: np.ndarray,
    n_users: int,
    out_dir: str | os.PathLike,
    config: ReduceConfig | None = None,
    refit: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Targets for dense users ``0..n_users-1`` from (users, embeddings) rows.

    ``out_dir`` must be new, empty, or a folder of targets this function wrote (``reduce.json``);
    anything else is an OutputError before any work. The first call (or ``refit=True``) fits the
    reducer on these rows and builds the whole folder in a temporary sibling, swapped in at the
    end (a refit replaces the old fit only then). Later calls reuse the fit (its settings must
    match ``config``): fitted users keep their targets, new users are transformed, and the
    targets and ``reduce.json`` (last) are rewritten, each file atomically.
    """
    config = config or ReduceConfig()
    users, x = _check_inputs(users, embeddings, n_users)
    out = Path(out_dir)
    check_reduce_out(out, refit)
    if refit or not is_reduce_folder(out):
        with _io.atomic_dir(
            out, is_ours=is_reduce_folder, what=_WHAT, overwrite=True, known=_FILES.__contains__
        ) as tmp:
            reducer, z = _fit(users, x, tmp, config)
            extra = (
                {"explained_variance": float(reducer.explained_variance_ratio.sum())} if config.method == "pca" else {}
            )
            targets, mask = _write_targets(tmp, users, z, x, n_users, config, fit_users=len(users), n_new=0, **extra)
        return targets, mask
    saved = _read_info(out / MARKER)
    if saved["config"] != config.to_dict():
        raise ConfigError(
            f"{out / MARKER}: saved reducer has settings {saved['config']}, asked for "
            f"{config.to_dict()}; pass refit=True (--refit) or another folder"
        )
    if saved.get("input_dim", x.shape[1]) != x.shape[1]:
        raise DataError(
            f"embeddings: {x.shape[1]}-d, the reducer in {out} was fitted on "
            f"{saved['input_dim']}-d embeddings; pass refit=True (--refit) or another folder"
        )
    fit_users, z, n_new = _reuse(users, x, out, config)
    extra = (
        {"explained_variance": float(PCA.load(out / "pca.npz").explained_variance_ratio.sum())}
        if config.method == "pca"
        else {}
    )
    return _write_targets(out, users, z, x, n_users, config, fit_users=len(fit_users), n_new=n_new, **extra)


def _write_targets(
    folder: Path,
    users: np.ndarray,
    z: np.ndarray,
    x: np.ndarray,
    n_users: int,
    config: ReduceConfig,
    *,
    fit_users: int,
    n_new: int,
    **extra: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """``targets.npy`` / ``targets_mask.npy`` aligned to dense users, then ``reduce.json`` (last)."""
    targets = np.zeros((n_users, config.dim), dtype=np.float32)
    mask = np.zeros(n_users, dtype=bool)
    targets[users] = z
    mask[users] = True
    _io.write_npy(folder / "targets.npy", targets)
    _io.write_npy(folder / "targets_mask.npy", mask)
    info = {
        "config": config.to_dict(),
        "n_users": int(n_users),
        "n_with_profile": int(mask.sum()),
        "input_dim": int(x.shape[1]),
        "versions": _versions(config.method),
        "fit_users": int(fit_users),
        "transformed_users": int(n_new),
        **extra,
    }
    _io.write_json(folder / MARKER, info, indent=2, sort_keys=True)
    return targets, mask


def _fit(users: np.ndarray, x: np.ndarray, out: Path, config: ReduceConfig) -> tuple[Any, np.ndarray]:
    """Fit on every given user; save the reducer and the fitted layout. Returns (reducer, layout)."""
    reducer = fit_reducer(x, config)
    # UMAP's transform of its own training points differs from its fitted layout: keep the fit.
    z = np.asarray(reducer.embedding_ if config.method == "umap" else reducer.transform(x), dtype=np.float32)
    save_reducer(reducer, out, config, x)
    _io.write_npy(out / "fit_users.npy", users)
    _io.write_npy(out / "fit_targets.npy", z)
    return reducer, z


def _reuse(users: np.ndarray, x: np.ndarray, out: Path, config: ReduceConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """Fitted users keep their saved targets; the others are transformed with the saved reducer."""
    fit_users = _load_npy(out / "fit_users.npy")
    fit_z = _load_npy(out / "fit_targets.npy")
    if fit_z.shape != (len(fit_users), config.dim):
        raise StoreError(
            f"{out / 'fit_targets.npy'}: shape {fit_z.shape}, expected ({len(fit_users)}, {config.dim}); "
            "pass refit=True"
        )
    z = np.zeros((len(users), config.dim), dtype=np.float32)
    pos = {int(u): i for i, u in enumerate(fit_users.tolist())}
    known = np.array([int(u) in pos for u in users.tolist()], dtype=bool)
    z[known] = fit_z[[pos[int(u)] for u in users[known].tolist()]]
    n_new = int((~known).sum())
    if n_new:
        reducer = load_reducer(out, config, fit_z)
        z[~known] = np.asarray(reducer.transform(x[~known]), dtype=np.float32)
    return fit_users, z, n_new


def _versions(method: str) -> dict[str, str]:
    v = {"numpy": np.__version__}
    if method == "umap":
        import umap

        v["umap-learn"] = getattr(umap, "__version__", "unknown")
    return v
