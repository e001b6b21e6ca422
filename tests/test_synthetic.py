"""The synthetic generator: determinism, shapes, lengths, and the planted persona semantics,
checked from the returned tables only (independently of the generator's internals)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from seqdistill.data.synthetic import SyntheticConfig, generate


@pytest.fixture(scope="module")
def raw():
    return generate(SyntheticConfig(n_users=2000, n_items=400, seed=3))


def test_deterministic_by_seed():
    cfg = SyntheticConfig(n_users=300, n_items=120, seed=11)
    a, b = generate(cfg), generate(SyntheticConfig.from_dict(cfg.to_dict()))
    assert a.interactions.equals(b.interactions) and a.items.equals(b.items)
    assert a.extra["personas"].equals(b.extra["personas"])
    c = generate(SyntheticConfig(n_users=300, n_items=120, seed=12))
    assert not a.interactions.equals(c.interactions)


def test_config_roundtrip_and_errors():
    cfg = SyntheticConfig(n_users=10, median_length=4.0, p_transition=0.1)
    assert SyntheticConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown key"):
        SyntheticConfig.from_dict({"n_user": 3})
    with pytest.raises(ValueError, match="p_transition"):
        generate(SyntheticConfig(p_transition=1.5))


def test_shapes_dtypes_and_order(raw):
    inter, items, personas = raw.interactions, raw.items, raw.extra["personas"]
    assert raw.domain == "products"
    assert inter.schema == pl.Schema(
        {"user_id": pl.Int64, "item_id": pl.Int64, "timestamp": pl.Int64, "rating": pl.Float32}
    )
    assert inter["user_id"].n_unique() == 2000 and personas.height == 2000
    assert items.height == 400 and items["item_id"].is_unique().all()
    assert set(inter["item_id"].unique().to_list()) <= set(items["item_id"].to_list())
    assert {"title", "category", "attributes", "brand", "price_level", "description"} <= set(items.columns)
    assert items.select(pl.all().null_count()).sum_horizontal().item() == 0
    r = inter["rating"].to_numpy()
    assert r.min() >= 1 and r.max() <= 5 and np.all(r == np.round(r))
    # timestamps strictly increase within each user
    d = inter.select(pl.col("timestamp").diff().over("user_id").alias("d"))["d"].drop_nulls()
    assert (d > 0).all()


def test_users_interleave_in_time(raw):
    """A global temporal split must cut across users, not separate whole users."""
    inter = raw.interactions
    thr = inter["timestamp"].quantile(0.8)
    per_user = inter.group_by("user_id").agg(
        (pl.col("timestamp") < thr).any().alias("before"), (pl.col("timestamp") >= thr).any().alias("after")
    )
    both = per_user.filter(pl.col("before") & pl.col("after")).height
    assert both > 0.05 * per_user.height
    firsts = inter.group_by("user_id").agg(pl.col("timestamp").min())["timestamp"]
    assert firsts.max() - firsts.min() > 0.5 * (inter["timestamp"].max() - inter["timestamp"].min())


@pytest.mark.parametrize("median", [6.0, 20.0])
def test_length_distribution(median):
    cfg = SyntheticConfig(n_users=3000, n_items=300, seed=5, median_length=median, length_sigma=0.5, min_length=1)
    lengths = generate(cfg).interactions.group_by("user_id").len()["len"].to_numpy()
    assert abs(np.median(lengths) - median) <= 1
    # lognormal: log-lengths have roughly the configured spread
    assert 0.35 < np.std(np.log(lengths)) < 0.65
    assert lengths.min() >= 1


def _item_text(items: pl.DataFrame) -> pl.DataFrame:
    return items.select("item_id", (pl.col("title") + " " + pl.col("description")).alias("text"))


def test_persona_recoverable_from_history_text(raw):
    """A bag-of-category-names classifier over the text of well-rated history items predicts
    the persona's top category far above chance."""
    cats = sorted(raw.items["category"].unique().to_list())
    hist = raw.interactions.filter(pl.col("rating") >= 4).join(_item_text(raw.items), on="item_id")
    docs = hist.group_by("user_id").agg(pl.col("text").str.join(" "))
    counts = np.stack([docs["text"].str.count_matches(c, literal=True).to_numpy() for c in cats], axis=1)
    pred = docs.with_columns(pl.Series("pred", np.array(cats)[counts.argmax(axis=1)]))
    joined = pred.join(raw.extra["personas"], on="user_id")
    accuracy = (joined["pred"] == joined["top_category"]).mean()
    chance = 1 / len(cats)
    assert joined.height > 0.8 * raw.extra["personas"].height
    assert accuracy > max(4 * chance, 0.5)


def test_ratings_follow_persona_fit(raw):
    """Fit recomputed from the persona and item tables (category match, liked / disliked
    attributes) correlates with the rating."""
    x = raw.interactions.join(raw.items.select("item_id", "category", "attributes"), on="item_id").join(
        raw.extra["personas"], on="user_id"
    )
    attrs = x["attributes"].str.split(", ")
    liked = x["liked_attributes"]
    n_liked = np.array([len(set(a) & set(b)) for a, b in zip(attrs.to_list(), liked.to_list())])
    disliked = np.array([d in a for a, d in zip(attrs.to_list(), x["disliked_attribute"].to_list())])
    fit = (x["category"] == x["top_category"]).to_numpy().astype(float) + n_liked - disliked
    corr = np.corrcoef(fit, x["rating"].to_numpy())[0, 1]
    assert corr > 0.3
    # and the well-rated items are mostly in the user's top category, the poorly rated mostly not
    top = (x["category"] == x["top_category"]).to_numpy()
    r = x["rating"].to_numpy()
    assert top[r >= 4].mean() > top[r <= 2].mean() + 0.3


def test_exploration_steps_ignore_the_persona_but_ratings_tell():
    """With p_explore = 1 items are uniform over categories (about 1/C in the persona's top
    category, against far more without exploration), and the ratings still separate fitting
    from non-fitting items, so only rating-aware features recover the persona."""

    def top_share(raw):
        x = raw.interactions.join(raw.items.select("item_id", "category"), on="item_id").join(
            raw.extra["personas"].select("user_id", "top_category"), on="user_id"
        )
        top = (x["category"] == x["top_category"]).to_numpy()
        return top.mean(), top[x["rating"].to_numpy() >= 4].mean()

    base = dict(n_users=1500, n_items=320, n_categories=8, seed=5, p_transition=0.0)
    plain, _ = top_share(generate(SyntheticConfig(**base)))
    explored, explored_liked = top_share(generate(SyntheticConfig(**base, p_explore=1.0)))
    assert plain > 0.45
    assert abs(explored - 1 / 8) < 0.03
    assert explored_liked > 2.5 * explored
    with pytest.raises(ValueError, match="p_explore"):
        generate(SyntheticConfig(p_explore=-0.1))


def test_persona_table_consistent(raw):
    p = raw.extra["personas"]
    layout = raw.extra["persona_vector_layout"]
    vec = np.stack(p["vector"].to_numpy())
    assert vec.shape[1] == layout["price_level_onehot"][1]
    a, b = layout["category_weights"]
    np.testing.assert_allclose(vec[:, a:b].sum(axis=1), 1.0, rtol=1e-5)
    cats = raw.extra["vocabulary"]["categories"]
    assert [cats[i] for i in vec[:, a:b].argmax(axis=1)] == p["top_category"].to_list()
    a, b = layout["attribute_weights"]
    assert (np.sort(vec[:, a:b], axis=1)[:, [0, -2, -1]] == [-1, 1, 1]).all()
    assert all(d not in liked for d, liked in zip(p["disliked_attribute"], p["liked_attributes"].to_list()))


def test_many_categories_and_attributes_get_distinct_names():
    raw = generate(SyntheticConfig(n_users=50, n_items=200, n_categories=20, n_attributes=25, seed=1))
    cats = raw.extra["vocabulary"]["categories"]
    assert len(set(cats)) == 20 and raw.items["category"].n_unique() == 20
    # no category name inside another (the text classifier relies on it)
    assert not any(a != b and a in b for a in cats for b in cats)
    assert len(set(raw.extra["vocabulary"]["attributes"])) == 25


def test_million_interactions_complete():
    raw = generate(SyntheticConfig(n_users=135_000, n_items=20_000, seed=0))
    assert raw.interactions.height >= 1_000_000
