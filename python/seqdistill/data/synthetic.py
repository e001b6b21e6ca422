"""A synthetic interaction log with planted user semantics.

Items are products with text metadata (title, category, attributes, brand, price level and a
description written from a small vocabulary). Every user has a latent persona: a Dirichlet
preference over categories, two liked attributes, one disliked attribute and a preferred
price level. A user's sequence mixes two kinds of step:

* transitions along a sparse random "next item" graph (each item has a few successors, mostly in
  its own category) -- sequential signal an id-based model can learn;
* persona-driven choices: a category drawn from the persona, then the best-fitting of a few
  popularity-drawn candidates of that category (Gumbel-max over attribute and price fit);
* optionally (``p_explore``) exploration: a uniformly random item, whatever the persona. The
  id sequence cannot tell these from persona choices; their (mostly low) ratings can.

Ratings (1..5) grow with how well the item fits the persona, so the persona can be read back
from the *text* of a user's well-rated items, while a short id sequence reveals it only partly.
Timestamps increase per user, users start at different times (interleaved), so a global
temporal split makes sense. User lengths are lognormal with a configurable median (short
histories, e.g. median 6, are the default). Everything is drawn from one seeded
`numpy.random.Generator` and vectorised across users: a million interactions take seconds.

The true personas are returned in `raw.extra["personas"]` for analysis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from seqdistill._checks import check_fields, check_seed
from seqdistill._config import DictConfig
from seqdistill.data.interactions import RawDataset
from seqdistill.errors import ConfigError

CATEGORIES: list[tuple[str, list[str]]] = [
    ("skincare", ["serum", "moisturizer", "cleanser", "toner", "face mask"]),
    ("makeup", ["lipstick", "foundation", "mascara", "eyeliner", "blush"]),
    ("haircare", ["shampoo", "conditioner", "hair oil", "styling gel"]),
    ("fragrance", ["eau de parfum", "body mist", "cologne"]),
    ("nail care", ["nail polish", "top coat", "cuticle oil"]),
    ("bath and body", ["body wash", "body lotion", "bath salts", "hand cream"]),
    ("grooming", ["beard oil", "shaving cream", "aftershave"]),
    ("sun protection", ["sunscreen", "after-sun gel", "tinted sunblock"]),
    ("oral hygiene", ["toothpaste", "mouthwash", "whitening strips"]),
    ("beauty tools", ["makeup brush", "hair dryer", "tweezers", "sponge"]),
    ("wellness", ["vitamin gummies", "herbal tea", "sleep spray"]),
    ("baby products", ["baby lotion", "diaper cream", "baby wash"]),
]
ATTRIBUTES = [
    "organic",
    "vegan",
    "fragrance-free",
    "long-lasting",
    "hydrating",
    "matte",
    "shimmering",
    "travel-size",
    "hypoallergenic",
    "anti-aging",
    "cruelty-free",
    "waterproof",
    "refillable",
    "mineral-based",
    "oil-free",
    "cooling",
]
PRICE_LEVELS = ["budget", "mid-range", "premium", "luxury"]
PRICE_BASE = np.array([6.0, 15.0, 35.0, 80.0])
FILLER = (
    "gentle daily formula texture finish results routine everyday classic new improved "
    "lightweight rich smooth fresh soft bright natural balanced quick easy lasting subtle bold "
    "clean simple modern trusted favourite essential"
).split()
SYLLABLES = "ka lo mi ra ve zu no ti sa be du fi ga ho ju ke ly mo pe qu ri so ta vo wi xa yo ze".split()


_MAX_IDS = 2**31 - 1  # users and items become 32-bit dense codes


@dataclass
class SyntheticConfig(DictConfig):
    """Settings of `generate`; round-trips through `to_dict` / `from_dict`."""

    n_users: int = 1000
    n_items: int = 500
    seed: int = 0
    n_categories: int = 8
    n_attributes: int = 12
    n_brands: int = 40
    attributes_per_item: int = 2
    median_length: float = 6.0  # median of the lognormal user length
    length_sigma: float = 0.7
    min_length: int = 2
    max_length: int = 200
    p_transition: float = 0.4  # share of steps (after the first) that follow the item graph
    p_explore: float = 0.0  # share of steps that try a uniformly random item (rated by fit like all)
    graph_degree: int = 3
    graph_same_category: float = 0.7
    persona_concentration: float = 0.3  # Dirichlet alpha over categories (small = focused users)
    n_candidates: int = 16
    popularity_skew: float = 1.0  # 0 = uniform popularity inside a category
    rating_noise: float = 0.6
    mean_gap_days: float = 10.0  # mean time between a user's interactions (exponential)
    time_span_days: float = 365.0
    start_timestamp: int = 1_577_836_800  # 2020-01-01 UTC
    name: str = "synthetic"

    def __post_init__(self) -> None:
        check_fields(self)  # types first: "10" or True where a count goes is a ConfigError, not a TypeError
        self.validate()

    def validate(self) -> None:
        """Raise a ConfigError (a ValueError) naming the first setting out of range (and its type,
        for a config changed after construction)."""
        check_fields(self)
        check_seed(self)  # numpy's seeds (and the CLI's --seed) are 32-bit, not negative
        checks = [
            ("n_users", 1 <= self.n_users <= _MAX_IDS),
            ("n_items", self.n_categories <= self.n_items <= _MAX_IDS),
            ("n_categories", 1 <= self.n_categories),
            ("n_attributes", self.n_attributes >= 3),
            ("attributes_per_item", 1 <= self.attributes_per_item <= self.n_attributes),
            ("median_length", self.median_length > 0),
            ("length_sigma", self.length_sigma >= 0),
            ("min_length", 1 <= self.min_length <= self.max_length),
            ("p_transition", 0 <= self.p_transition <= 1),
            ("p_explore", 0 <= self.p_explore <= 1),
            ("graph_degree", self.graph_degree >= 1),
            ("graph_same_category", 0 <= self.graph_same_category <= 1),
            ("persona_concentration", self.persona_concentration > 0),
            ("n_candidates", self.n_candidates >= 1),
            ("popularity_skew", self.popularity_skew >= 0),
            ("rating_noise", self.rating_noise >= 0),
            ("n_brands", self.n_brands >= 1),
            ("mean_gap_days", self.mean_gap_days > 0),
            ("time_span_days", self.time_span_days > 0),
        ]
        for key, ok in checks:
            if not ok:
                raise ConfigError(f"SyntheticConfig: {key}={getattr(self, key)!r} is out of range")


def _words(rng: np.random.Generator, n: int, taken: set[str], syllables: int = 3) -> list[str]:
    """n new pseudo-words not equal to, nor containing / contained in, any word in `taken`."""
    out: list[str] = []
    while len(out) < n:
        w = "".join(rng.choice(SYLLABLES, size=syllables))
        if all(w not in t and t not in w for t in taken):
            taken.add(w)
            out.append(w)
    return out


def _vocab(cfg: SyntheticConfig, rng: np.random.Generator) -> tuple[list[str], list[list[str]], list[str], list[str]]:
    cats = [c for c, _ in CATEGORIES[: cfg.n_categories]]
    nouns = [n for _, n in CATEGORIES[: cfg.n_categories]]
    taken = set(cats) | set(ATTRIBUTES) | set(FILLER)
    for w in _words(rng, cfg.n_categories - len(cats), taken):
        cats.append(f"{w} line")
        nouns.append([f"{w} kit", f"{w} set", f"{w} refill"])
    attrs = ATTRIBUTES[: cfg.n_attributes] + _words(rng, max(0, cfg.n_attributes - len(ATTRIBUTES)), taken, 2)
    brands = [w.capitalize() for w in _words(rng, cfg.n_brands, taken)]
    return cats, nouns, attrs, brands


def _skewed(rng: np.random.Generator, size, n: np.ndarray | int, skew: float) -> np.ndarray:
    """Indices in [0, n) with popularity decreasing in the index (skew 0 = uniform)."""
    u = rng.random(size)
    return np.minimum((n * u ** (1.0 + skew)).astype(np.int64), np.asarray(n) - 1)


def generate(cfg: SyntheticConfig | None = None) -> RawDataset:
    """Generate a `RawDataset` (domain "products") from `cfg`; deterministic given `cfg.seed`."""
    cfg = cfg or SyntheticConfig()
    cfg.validate()
    rng = np.random.default_rng(cfg.seed)
    cats, nouns, attrs, brands = _vocab(cfg, rng)
    n_i, n_c, n_a, k_a = cfg.n_items, cfg.n_categories, cfg.n_attributes, cfg.attributes_per_item

    # ---- items (internal index j; sorted by category, popularity decreasing inside a category)
    counts = np.bincount(np.arange(n_i) % n_c, minlength=n_c)
    item_cat = np.repeat(np.arange(n_c), counts)
    cat_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    item_attr = np.argsort(rng.random((n_i, n_a)), axis=1)[:, :k_a]  # k distinct attributes
    item_brand = rng.integers(cfg.n_brands, size=n_i)
    item_price = rng.integers(len(PRICE_LEVELS), size=n_i)
    price = np.round(PRICE_BASE[item_price] * rng.lognormal(0.0, 0.25, n_i), 2)
    noun_pick = rng.integers(1 << 30, size=n_i)
    filler = rng.integers(len(FILLER), size=(n_i, 6))
    raw_item = rng.permutation(n_i).astype(np.int64)  # raw ids hide the category order

    titles, descs = [], []
    for j in range(n_i):
        c = item_cat[j]
        noun = nouns[c][noun_pick[j] % len(nouns[c])]
        a = [attrs[x] for x in item_attr[j]]
        brand = brands[item_brand[j]]
        titles.append(f"{brand} {a[0].capitalize()} {noun.title()}")
        words = " ".join(FILLER[x] for x in filler[j])
        descs.append(
            f"A {PRICE_LEVELS[item_price[j]]} {noun} from the {brand} {cats[c]} collection. "
            f"{' and '.join(a).capitalize()}. {words.capitalize()}."
        )
    items = pl.DataFrame(
        {
            "item_id": raw_item,
            "title": titles,
            "category": [cats[c] for c in item_cat],
            "attributes": [", ".join(attrs[x] for x in row) for row in item_attr],
            "brand": [brands[b] for b in item_brand],
            "price_level": [PRICE_LEVELS[p] for p in item_price],
            "price": price,
            "description": descs,
        }
    ).sort("item_id")

    # ---- personas
    n_u = cfg.n_users
    theta = rng.dirichlet(np.full(n_c, cfg.persona_concentration), size=n_u)
    pick = np.argsort(rng.random((n_u, n_a)), axis=1)[:, :3]  # 2 liked, 1 disliked, distinct
    w = np.zeros((n_u, n_a))
    w[np.arange(n_u)[:, None], pick[:, :2]] = 1.0
    w[np.arange(n_u), pick[:, 2]] = -1.0
    pref_price = rng.integers(len(PRICE_LEVELS), size=n_u)

    # ---- lengths; internal user order by decreasing length so the active set is a prefix
    lengths = np.exp(np.log(cfg.median_length) + cfg.length_sigma * rng.standard_normal(n_u))
    lengths = np.clip(np.round(lengths), cfg.min_length, cfg.max_length).astype(np.int64)
    order = np.argsort(-lengths, kind="stable")
    n_active = np.searchsorted(-lengths[order], -np.arange(lengths.max()), side="left")

    # ---- next-item graph: mostly same-category successors, popularity-skewed
    deg = cfg.graph_degree
    same = rng.random((n_i, deg)) < cfg.graph_same_category
    in_cat = cat_start[item_cat][:, None] + _skewed(rng, (n_i, deg), counts[item_cat][:, None], cfg.popularity_skew)
    any_cat = rng.integers(n_i, size=(n_i, deg))
    succ = np.where(same, in_cat, any_cat)

    cum_theta = np.cumsum(theta, axis=1)
    cum_theta[:, -1] = 1.0
    t_now = np.zeros(n_u)  # time since the user's first interaction
    mean_gap = cfg.mean_gap_days * 86400.0
    out_u, out_i, out_t, out_p = [], [], [], []
    prev = np.zeros(0, dtype=np.int64)
    for step in range(int(lengths.max())):
        m = int(n_active[step])
        users = order[:m]
        # persona choice: category from theta, best of K candidates (Gumbel-max on fit)
        c = (cum_theta[users] < rng.random(m)[:, None]).sum(axis=1)
        cand = cat_start[c][:, None] + _skewed(rng, (m, cfg.n_candidates), counts[c][:, None], cfg.popularity_skew)
        fit = w[users[:, None, None], item_attr[cand]].sum(axis=2)
        fit += 0.5 * (item_price[cand] == pref_price[users][:, None])
        choice = cand[np.arange(m), np.argmax(fit + rng.gumbel(size=fit.shape), axis=1)]
        if step > 0:
            follow = rng.random(m) < cfg.p_transition
            nxt = succ[prev[:m], rng.integers(deg, size=m)]
            choice = np.where(follow, nxt, choice)
        if cfg.p_explore > 0:  # exploration: any item, whatever the persona (its rating says how it went)
            explore = rng.random(m) < cfg.p_explore
            choice = np.where(explore, rng.integers(n_i, size=m), choice)
        if step > 0:
            t_now[users] += rng.exponential(mean_gap, size=m)
        out_u.append(users)
        out_i.append(choice)
        out_t.append(t_now[users].copy())
        out_p.append(np.full(m, step, dtype=np.int64))
        prev = choice
    u = np.concatenate(out_u)
    j = np.concatenate(out_i)
    # place each user's activity inside the time span: squeeze it when longer than the span,
    # then start uniformly where it still fits; "+ position" keeps times strictly increasing
    span = cfg.time_span_days * 86400.0
    scale = np.minimum(1.0, span / np.maximum(t_now, 1.0))
    start = rng.random(n_u) * (span - t_now * scale)
    ts = (start[u] + np.concatenate(out_t) * scale[u]).astype(np.int64) + np.concatenate(out_p)
    ts += cfg.start_timestamp

    # ---- ratings from persona fit
    rel = theta[u, item_cat[j]] / theta[u].max(axis=1)
    fit = 2.0 * rel + w[u[:, None], item_attr[j]].sum(axis=1) + 0.5 * (item_price[j] == pref_price[u])
    rating = np.clip(np.rint(1.5 + fit + cfg.rating_noise * rng.standard_normal(len(u))), 1, 5)

    inter = pl.DataFrame(
        {
            "user_id": u.astype(np.int64),
            "item_id": raw_item[j],
            "timestamp": ts,
            "rating": rating.astype(np.float32),
        }
    ).sort(["user_id", "timestamp"])

    top2 = np.argsort(-theta, axis=1, kind="stable")[:, :2]
    vector = np.concatenate([theta, w, np.eye(len(PRICE_LEVELS))[pref_price]], axis=1).astype(np.float32)
    cat_s, attr_s = pl.Series(cats, dtype=pl.String), pl.Series(attrs, dtype=pl.String)
    personas = pl.DataFrame(
        {
            "user_id": np.arange(n_u, dtype=np.int64),
            "top_category": cat_s.gather(top2[:, 0]),
            "second_category": cat_s.gather(top2[:, -1]) if n_c > 1 else pl.Series([None] * n_u, dtype=pl.String),
            "liked_attributes": pl.select(
                pl.concat_list(attr_s.gather(pick[:, 0]), attr_s.gather(pick[:, 1]))
            ).to_series(),
            "disliked_attribute": attr_s.gather(pick[:, 2]),
            "price_level": pl.Series(PRICE_LEVELS, dtype=pl.String).gather(pref_price),
            "vector": vector,
        }
    )
    layout = {
        "category_weights": [0, n_c],
        "attribute_weights": [n_c, n_c + n_a],
        "price_level_onehot": [n_c + n_a, n_c + n_a + len(PRICE_LEVELS)],
    }
    extra = {
        "personas": personas,
        "persona_vector_layout": layout,
        "vocabulary": {"categories": cats, "attributes": attrs, "price_levels": PRICE_LEVELS},
        "config": cfg.to_dict(),
    }
    return RawDataset(name=cfg.name, interactions=inter, items=items, domain="products", extra=extra)
