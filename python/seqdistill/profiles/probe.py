"""The profile probe: what a profile embedding tells about a user's future, before any training.

For every user with a profile, a training prefix and at least one tagged item after it, the
probe predicts the **tags** (genres, categories, ...) of the first ``horizon`` items the user meets
after the training prefix (default 1: the next item; ``None``: every position ``train_end ..``
of the log, the validation and test part of the split) with ridge regressions from three
feature sets:

* ``profile``: the profile vector (an embedding or reduced target), standardized per column;
* ``items``: the bag of the user's training item ids (counts, each row scaled to unit length);
* ``both``: the two blocks side by side, the profile block weighted by ``w``.

Each block is centred on the fitting users and scaled so its mean squared row length is 1, so
one ridge strength means the same for every set. The labels are 0/1 per tag; a user's score is
the **average precision** of the tags ranked by the prediction against the tags that occur
(ties broken by tag order); the probe reports the mean over users (MAP) for each set and for the
prior (tag frequencies of the fitting users, the same ranking for everyone).

Protocol: the eligible users are permuted with ``seed`` and cut into fit / validation / test
(60 / 20 / 20 by default). The ridge strength (and ``w``, including 0, for ``both``) is chosen
by validation MAP with the model fitted on the fit part; each set is then refitted on fit +
validation and scored once on the test part. The **gain** is the mean over test users of
``AP(both) - AP(items)``, with a percentile bootstrap interval over test users (``n_boot``
resamples drawn from ``seed``). An interval above 0 says the profiles carry something about the
future that the item ids do not; an interval around 0 says they add nothing a linear model sees.

All of it is numpy in closed form (kernel ridge on the users' Gram matrices, one eigen-
decomposition per weight), deterministic, seconds on ML-1M.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seqdistill._checks import check_seed
from seqdistill._config import DictConfig
from seqdistill.errors import ConfigError, DataError

from .stats_profile import TAG_COLUMNS, _Tables

SETS = ("prior", "profile", "items", "both")


@dataclass
class ProbeConfig(DictConfig):
    """Settings of :func:`probe` (see the module doc)."""

    seed: int = 0
    valid_share: float = 0.2
    test_share: float = 0.2
    ridge: list[float] = field(default_factory=lambda: [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0])
    profile_weights: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 1.0, 2.0])
    n_boot: int = 2000
    level: float = 0.95
    min_users: int = 10  # per part
    horizon: int | None = 1  # tags of the first N items after the training prefix (None: all of them)
    threads: int | None = 1  # BLAS threads while probing (None: leave as is); one is fastest on a shared machine

    def __post_init__(self) -> None:
        check_seed(self)
        for key in ("n_boot", "min_users"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"ProbeConfig.{key}: expected an integer >= 1, got {v!r}")
        for key in ("valid_share", "test_share"):
            v = getattr(self, key)
            if not _number(v) or not 0 < v < 0.5:
                raise ConfigError(f"ProbeConfig.{key}: expected a number in (0, 0.5), got {v!r}")
        if not _number(self.level) or not 0 < self.level < 1:
            raise ConfigError(f"ProbeConfig.level: expected a number in (0, 1), got {self.level!r}")
        for key, low in (("ridge", 0.0), ("profile_weights", -1.0)):
            v = getattr(self, key)
            if not isinstance(v, (list, tuple)) or not v or not all(_number(x) and low < x < math.inf for x in v):
                raise ConfigError(
                    f"ProbeConfig.{key}: expected a non-empty list of finite numbers > {low:g}, got {v!r}"
                )
        h = self.horizon
        if h is not None and (not isinstance(h, int) or isinstance(h, bool) or h < 1):
            raise ConfigError(f"ProbeConfig.horizon: expected an integer >= 1 or None, got {h!r}")
        t = self.threads
        if t is not None and (not isinstance(t, int) or isinstance(t, bool) or t < 1):
            raise ConfigError(f"ProbeConfig.threads: expected an integer >= 1 or None, got {t!r}")
        if any(w < 0 for w in self.profile_weights):
            raise ConfigError(f"ProbeConfig.profile_weights: weights must be >= 0, got {self.profile_weights!r}")


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class ProbeResult:
    """What :func:`probe` measured; ``map`` maps each of ``SETS`` to its test MAP."""

    tag_column: str
    n_tags: int
    n_users: dict[str, int]
    map: dict[str, float]
    gain: float
    gain_ci: tuple[float, float]
    profile_gain: float  # AP(profile) - AP(prior), mean over test users
    chosen: dict[str, dict[str, float]]
    config: dict[str, Any]
    seconds: float
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["gain_ci"] = list(self.gain_ci)
        return d

    def lines(self) -> list[str]:
        """A short table for the terminal and the experiment report."""
        lo, hi = self.gain_ci
        pct = round(100 * self.config["level"])
        return [
            f"probe: tags '{self.tag_column}' ({self.n_tags}) of each user's items after the training prefix; "
            f"users fit/valid/test {self.n_users['fit']}/{self.n_users['valid']}/{self.n_users['test']}; seed {self.config['seed']}",
            "| features | test MAP |",
            "|---|---|",
            *(f"| {s} | {self.map[s]:.4f} |" for s in SETS),
            f"gain of profile + items over items: {self.gain:+.4f} ({pct}% CI {lo:+.4f} .. {hi:+.4f}; "
            f"profile weight {self.chosen['both']['weight']:g})",
        ]


# ------------------------------------------------------------------------------ inputs
def load_vectors(path: str | os.PathLike, ds: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """Profile vectors ``[n_users, d]``, a mask and a description, from a folder written by
    ``profiles encode`` (embeddings; its dataset fingerprint is checked), a folder written by
    ``profiles reduce`` (targets + mask), or a ``.npy`` of ``[n_users, d]`` (every user)."""
    from .encode import is_embeddings_folder, read_embeddings
    from .targets import MASK_FILE, TARGETS_FILE, read_targets

    p = Path(path)
    n = int(ds.n_users)
    if p.is_dir() and is_embeddings_folder(p):
        users, emb = read_embeddings(p, ds)
        return *_scatter(p, users, emb, n), f"embeddings {p}"
    if p.is_dir():
        if not (p / TARGETS_FILE).is_file():
            raise DataError(
                f"{p}: neither embeddings ('profiles encode': encode.json) nor targets ('profiles reduce': {TARGETS_FILE})"
            )
        mask = p / MASK_FILE if (p / MASK_FILE).is_file() else None
        dim = _npy_dim(p / TARGETS_FILE, n)
        values, flags = read_targets(p / TARGETS_FILE, mask, n, dim, keys=("TARGETS", "TARGETS mask"))
        return values, flags, f"targets {p}"
    if not p.is_file():
        raise DataError(f"{p}: no such file or folder (expected embeddings, targets or a .npy)")
    dim = _npy_dim(p, n)
    values, flags = read_targets(p, None, n, dim, keys=("TARGETS", "TARGETS mask"))
    return values, flags, f"targets {p}"


def _npy_dim(path: Path, n_users: int) -> int:
    """The second dimension of a 2-d ``.npy``; its first must be the dataset's user count."""
    from seqdistill import _io

    arr = _io.read_npy(path, "TARGETS")
    if arr.ndim != 2 or arr.shape[0] != n_users:
        raise DataError(
            f"{path}: TARGETS: expected one row per user of the dataset ({n_users}, d), got shape {arr.shape}; "
            "are these the targets of another dataset?"
        )
    if arr.shape[1] == 0:
        raise DataError(f"{path}: TARGETS: shape {arr.shape} holds no values per user (d = 0)")
    return int(arr.shape[1])


def _scatter(folder: Path, users: np.ndarray, emb: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Embedding rows placed at their dense users; checked ids, shapes and finite values."""
    if users.ndim != 1 or users.dtype.kind not in "iu" or emb.ndim != 2 or len(users) != len(emb):
        raise DataError(
            f"{folder}: embedding_users {users.dtype} {users.shape} and embeddings {emb.shape} do not match"
        )
    if emb.dtype.kind not in "fiu":
        raise DataError(f"{folder}: embeddings.npy holds {emb.dtype}, not numbers")
    bad = users[(users < 0) | (users >= n)]
    if bad.size:
        raise DataError(f"{folder}: embedding_users holds user {int(bad[0])}, outside the dataset's 0..{n - 1}")
    rows = np.flatnonzero(~np.isfinite(emb).all(axis=1))
    if rows.size:
        raise DataError(
            f"{folder}: embeddings.npy row {int(rows[0])} (user {int(users[rows[0]])}) holds NaN or infinity"
        )
    values = np.zeros((n, emb.shape[1]), np.float64)
    mask = np.zeros(n, bool)
    values[users] = emb
    mask[users] = True
    return values, mask


def future_tags(ds: Any, horizon: int | None = None) -> tuple[np.ndarray, list[str], str]:
    """``Y [n_users, n_tags]`` (1 where one of the first ``horizon`` items after the user's
    training prefix, all of them for None, has the tag), the tag names and the tag column."""
    tables = _Tables(ds)
    if tables.tag_column is None:
        cols = [] if ds.item_meta is None else [c for c in ds.item_meta.columns if c not in ("item", "item_id")]
        raise DataError(
            f"dataset {getattr(ds, 'name', '')!r}: no tag column to probe ({'/'.join(TAG_COLUMNS)}); "
            f"its item metadata has {cols or 'none'}"
        )
    names = sorted({t for tags in tables.tags for t in tags})
    index = {t: i for i, t in enumerate(names)}
    y = np.zeros((int(ds.n_users), len(names)), np.float64)
    offsets, train_end = np.asarray(ds.offsets), np.asarray(ds.train_end)
    for u in range(int(ds.n_users)):
        start = offsets[u] + train_end[u]
        stop = offsets[u + 1] if horizon is None else min(offsets[u + 1], start + horizon)
        for it in np.asarray(ds.items[start:stop]).tolist():
            for t in tables.tags[it]:
                y[u, index[t]] = 1.0
    return y, names, tables.tag_column


def item_bag(ds: Any, users: np.ndarray) -> np.ndarray:
    """Counts of each user's training items, rows scaled to unit length ``[len(users), n_items]``."""
    x = np.zeros((len(users), int(ds.n_items) + 1), np.float64)
    for r, u in enumerate(users.tolist()):
        np.add.at(x[r], np.asarray(ds.history(u), dtype=np.int64), 1.0)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x[:, 1:] / np.where(norm > 0, norm, 1.0)


# ------------------------------------------------------------------------------ the probe
def probe(
    ds: Any, vectors: np.ndarray, mask: np.ndarray, config: ProbeConfig | None = None, source: str = ""
) -> ProbeResult:
    """Run the probe (module doc) on ``vectors [n_users, d]`` for the users where ``mask``."""
    config = config or ProbeConfig()
    with _blas_threads(config.threads):
        return _probe(ds, vectors, mask, config, source)


def _blas_threads(n: int | None):
    """Limit numpy's BLAS to ``n`` threads (threadpoolctl comes with scikit-learn, which umap-learn
    needs); on a busy 2-core machine one thread runs the probe ten times faster than two."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - without it numpy keeps its own setting
        return contextlib.nullcontext()
    return contextlib.nullcontext() if n is None else threadpool_limits(limits=n)


def _probe(ds: Any, vectors: Any, mask: Any, config: ProbeConfig, source: str) -> ProbeResult:
    t0 = time.perf_counter()
    vectors, mask = _checked(ds, vectors, mask)
    y_all, names, column = future_tags(ds, config.horizon)
    has_train = np.asarray(ds.train_end) > 0
    users = np.flatnonzero(mask & has_train & (y_all.sum(axis=1) > 0))
    parts = _split(users, config)
    blocks = {"profile": vectors[users], "items": item_bag(ds, users)}
    y = y_all[users]
    pos = {name: np.searchsorted(users, idx) for name, idx in parts.items()}
    g = _grams(blocks, pos["fit"], pos["valid"])
    chosen = {s: _select(s, g, y[pos["fit"]], y[pos["valid"]], config) for s in SETS if s != "prior"}
    fit = np.concatenate([pos["fit"], pos["valid"]])
    ap = {"prior": _ap(np.broadcast_to(y[fit].mean(axis=0), (len(pos["test"]), y.shape[1])), y[pos["test"]])}
    for s, c in chosen.items():
        ap[s] = _ap(
            _fit_predict(blocks, y, fit, pos["test"], c["weight"] if s == "both" else _ONLY[s], c["ridge"]),
            y[pos["test"]],
        )
    diff = ap["both"] - ap["items"]
    lo, hi = _bootstrap(diff, config)
    return ProbeResult(
        tag_column=column,
        n_tags=len(names),
        n_users={k: int(len(v)) for k, v in parts.items()},
        map={s: float(ap[s].mean()) for s in SETS},
        gain=float(diff.mean()),
        gain_ci=(lo, hi),
        profile_gain=float((ap["profile"] - ap["prior"]).mean()),
        chosen=chosen,
        config=config.to_dict(),
        seconds=time.perf_counter() - t0,
        source=source,
    )


_ONLY = {"profile": math.inf, "items": 0.0}  # profile weight: inf = the profile block alone


def _checked(ds: Any, vectors: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    n = int(ds.n_users)
    v = np.asarray(vectors)
    m = np.asarray(mask)
    if v.ndim != 2 or v.shape[0] != n or v.shape[1] == 0 or v.dtype.kind not in "fiu":
        raise DataError(
            f"profile vectors: expected numbers of shape ({n}, d) for the dataset's {n} users, got {v.dtype} {v.shape}"
        )
    if m.shape != (n,) or m.dtype != bool:
        raise DataError(f"profile mask: expected {n} booleans, got {m.dtype} {m.shape}")
    bad = np.flatnonzero(m & ~np.isfinite(v).all(axis=1))
    if bad.size:
        raise DataError(f"profile vectors: row {int(bad[0])} (a user with a profile) holds NaN or infinity")
    return v.astype(np.float64), m


def _split(users: np.ndarray, config: ProbeConfig) -> dict[str, np.ndarray]:
    """Fit / valid / test users (sorted within each part), drawn with ``config.seed``."""
    n = len(users)
    n_valid, n_test = round(n * config.valid_share), round(n * config.test_share)
    if min(n - n_valid - n_test, n_valid, n_test) < config.min_users:
        raise DataError(
            f"probe: {n} users have a profile, a training prefix and tagged items after it; that leaves fewer "
            f"than {config.min_users} users in a part (profiles of other users, or a split without held-out items?)"
        )
    perm = np.random.default_rng(config.seed).permutation(users)
    return {
        "fit": np.sort(perm[n_valid + n_test :]),
        "valid": np.sort(perm[:n_valid]),
        "test": np.sort(perm[n_valid : n_valid + n_test]),
    }


def _grams(
    blocks: dict[str, np.ndarray], fit: np.ndarray, rows: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per block: (Gram of fit x fit, Gram of rows x fit) after centring (and, for the profile,
    standardizing) on ``fit`` and scaling the mean squared centred row length to 1."""
    out = {}
    for name, x in blocks.items():
        mean = x[fit].mean(axis=0)
        scale = x[fit].std(axis=0) if name == "profile" else np.ones(x.shape[1])
        xf = (x[fit] - mean) / np.where(scale > 0, scale, 1.0)
        xr = (x[rows] - mean) / np.where(scale > 0, scale, 1.0)
        size = max(float((xf * xf).sum()) / len(fit), 1e-12)
        out[name] = (xf @ xf.T / size, xr @ xf.T / size)
    return out


def _combine(g: dict[str, tuple[np.ndarray, np.ndarray]], weight: float) -> tuple[np.ndarray, np.ndarray]:
    """The Gram matrices of ``[weight * profile, items]`` (weight inf: the profile alone)."""
    if math.isinf(weight):
        return g["profile"]
    kf, kr = g["items"]
    return kf + weight**2 * g["profile"][0], kr + weight**2 * g["profile"][1]


def _ridge_predictions(kf: np.ndarray, kr: np.ndarray, y: np.ndarray, ridges: list[float]) -> list[np.ndarray]:
    """Kernel ridge predictions for ``rows`` at each relative ridge strength (one eigh)."""
    mean = y.mean(axis=0)
    evals, evecs = np.linalg.eigh(kf)
    evals = np.clip(evals, 0.0, None)
    proj = evecs.T @ (y - mean)
    scale = max(float(np.trace(kf)) / len(kf), 1e-12)
    return [kr @ (evecs @ (proj / (evals + r * scale)[:, None])) + mean for r in ridges]


def _select(s: str, g, y_fit: np.ndarray, y_valid: np.ndarray, config: ProbeConfig) -> dict[str, float]:
    """The ridge strength (and profile weight for ``both``) with the best validation MAP."""
    weights = config.profile_weights if s == "both" else [_ONLY[s]]
    best = (-math.inf, 0.0, 0.0)
    for w in weights:
        kf, kr = _combine(g, w)
        for r, pred in zip(config.ridge, _ridge_predictions(kf, kr, y_fit, list(config.ridge))):
            score = float(_ap(pred, y_valid).mean())
            if score > best[0] + 1e-12:
                best = (score, r, w)
    out = {"ridge": best[1], "valid_map": best[0]}
    if s == "both":
        out["weight"] = best[2]
    return out


def _fit_predict(blocks, y, fit, rows, weight: float, ridge: float) -> np.ndarray:
    kf, kr = _combine(_grams(blocks, fit, rows), weight)
    return _ridge_predictions(kf, kr, y[fit], [ridge])[0]


def average_precision(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per row: the average precision of the columns ranked by ``scores`` (descending, ties in
    column order) against the 0/1 ``labels``; rows without a label give NaN."""
    order = np.argsort(-scores, axis=1, kind="stable")
    rel = np.take_along_axis(labels, order, axis=1)
    hits = np.cumsum(rel, axis=1)
    prec = hits / np.arange(1, labels.shape[1] + 1)
    n_rel = rel.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (prec * rel).sum(axis=1) / n_rel


_ap = average_precision


def _bootstrap(diff: np.ndarray, config: ProbeConfig) -> tuple[float, float]:
    """Percentile interval of the mean of ``diff`` over ``n_boot`` resamples of its rows."""
    rng = np.random.default_rng([config.seed, 1])
    means = np.empty(config.n_boot)
    for b0 in range(0, config.n_boot, 256):
        idx = rng.integers(0, len(diff), size=(min(256, config.n_boot - b0), len(diff)))
        means[b0 : b0 + len(idx)] = diff[idx].mean(axis=1)
    a = (1 - config.level) / 2
    lo, hi = np.quantile(means, [a, 1 - a])
    return float(lo), float(hi)


def write_result(result: ProbeResult, path: str | os.PathLike) -> Path:
    """``result`` as JSON at ``path`` (atomically)."""
    from seqdistill import _io

    return _io.write_text(path, json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n")


# ------------------------------------------------------------------------------ experiment report
def experiment_probes(out_dir: str | os.PathLike, config: ProbeConfig | None = None) -> dict[str, dict[str, Any]]:
    """The probe of every profile source of an experiment folder (``targets/<source>/embeddings``
    against ``dataset``): ``{source: result dict}``, or ``{source: {"error": one line}}`` when the
    probe cannot run there (too few users, no tags...). Empty without a dataset or embeddings."""
    from seqdistill.errors import SeqdistillError

    out = Path(out_dir)
    sources = sorted(p.parent.name for p in out.glob("targets/*/embeddings") if p.is_dir())
    if not sources or not (out / "dataset").is_dir():
        return {}
    from seqdistill.data import PreparedDataset

    ds = PreparedDataset.load(out / "dataset")
    found: dict[str, dict[str, Any]] = {}
    for source in sources:
        try:
            vectors, mask, _ = load_vectors(out / "targets" / source / "embeddings", ds)
            found[source] = probe(ds, vectors, mask, config, source=f"targets/{source}/embeddings").to_dict()
        except SeqdistillError as e:
            found[source] = {"error": str(e)}
    return found


def probe_markdown(probes: dict[str, dict[str, Any]]) -> list[str]:
    """The report's "Profile probe" section for :func:`experiment_probes` results."""
    if not probes:
        return []
    md = [
        "",
        "## Profile probe (no training)",
        "",
        "Test MAP of ridge probes predicting the tags of each user's items after the training prefix "
        "from the profile embedding, the bag of training item ids, or both (docs/profiles.md); gain = "
        "both − items over test users, 95% bootstrap interval.",
        "",
        "| profiles | users (test) | prior | profile | items | both | gain (95% CI) |",
        "|---|---|---|---|---|---|---|",
    ]
    for source, r in probes.items():
        if "error" in r:
            md.append(f"| {source} | not run: {r['error']} | | | | | |")
            continue
        m, (lo, hi) = r["map"], r["gain_ci"]
        md.append(
            f"| {source} | {r['n_users']['test']} | {m['prior']:.4f} | {m['profile']:.4f} | {m['items']:.4f} | "
            f"{m['both']:.4f} | {r['gain']:+.4f} ({lo:+.4f} .. {hi:+.4f}) |"
        )
    return md
