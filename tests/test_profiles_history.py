"""History text (training prefix only), budgets, prompts and the statistics control."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_profiles_toy import movie_dataset, toy_dataset

from seqdistill.profiles.history import (
    HistoryConfig,
    ItemTexts,
    keep_recent,
    rating_class,
    resolve_rating_scale,
    split_halves,
    user_history,
)
from seqdistill.profiles.prompts import load_prompts
from seqdistill.profiles.stats_profile import StatsConfig, _Tables, stats_profile_text


def test_history_uses_training_prefix_only_with_repeats_and_last_rating():
    meta = {
        "title": ["Alpha", "Beta", "Gamma", "FUTURE-VALID", "FUTURE-TEST"],
        "genres": ["Comedy", "Horror", "Drama", "Comedy", "Comedy"],
        "year": [2001, 2002, 2003, 2004, 2005],
    }
    log = [(1, 10, 5.0), (2, 20, 1.0), (1, 30, 3.0), (3, 40, 4.0), (4, 50, 5.0), (5, 60, 5.0)]
    ds = toy_dataset([log], meta, train_end=[4], n_items=5)
    h = user_history(ds, 0, ItemTexts(ds), resolve_rating_scale(ds, HistoryConfig()))
    # Beta (t=20), Alpha last at t=30 with its last rating 3 and 2 views, Gamma (t=40).
    assert h.lines == [
        "- [rated 1/5] Beta; year: 2002; genres: Horror",
        "- [rated 3/5] Alpha; year: 2001; genres: Comedy (times: 2)",
        "- [rated 4/5] Gamma; year: 2003; genres: Drama",
    ]
    assert "FUTURE" not in h.text()
    assert h.n_interactions == 4


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(1, 6), st.sampled_from([1.0, 2.5, 4.0, 5.0])), min_size=1, max_size=15),
        min_size=1,
        max_size=4,
    ),
    st.data(),
)
def test_history_matches_plain_reference(raw, data):
    logs = [[(it, 100 * k, r) for k, (it, r) in enumerate(u)] for u in raw]
    ends = [data.draw(st.integers(0, len(u))) for u in raw]
    ds = toy_dataset(logs, {"title": [f"T{i}" for i in range(1, 7)]}, ends, "generic", n_items=6)
    texts = ItemTexts(ds)
    for u, log in enumerate(logs):
        prefix = log[: ends[u]]
        last = {it: (k, r) for k, (it, _, r) in enumerate(prefix)}
        order = sorted(last, key=lambda it: last[it][0])
        expected = []
        for it in order:
            n = sum(1 for x, _, _ in prefix if x == it)
            expected.append(f"- [rated {last[it][1]:g}/5] T{it}" + (f" (times: {n})" if n > 1 else ""))
        assert user_history(ds, u, texts, "stars").lines == expected


def test_watch_share_scale_and_rating_classes():
    ds = toy_dataset([[(1, 1, 0.9), (2, 2, 0.3)]], {"title": ["A", "B"]}, [2])
    assert resolve_rating_scale(ds, HistoryConfig()) == "share"
    lines = user_history(ds, 0, ItemTexts(ds), "share").lines
    assert lines == ["- [watched 90%] A", "- [watched 30%] B"]
    assert [rating_class(v, "share") for v in (0.81, 0.8, 0.5, 0.49)] == ["high", "mid", "mid", "low"]
    assert [rating_class(v, "stars") for v in (5, 4, 3, 2, 1)] == ["high", "high", "mid", "low", "low"]
    assert rating_class(None, "stars") == "none"


def test_missing_metadata_and_long_fields():
    ds = toy_dataset([[(1, 1, None), (2, 2, None)]], None, [2], n_items=2)
    assert user_history(ds, 0, ItemTexts(ds), resolve_rating_scale(ds, HistoryConfig())).lines == [
        "- item i1",
        "- item i2",
    ]
    ds = toy_dataset([[(1, 1, 5.0)]], {"title": ["A"], "description": ["word " * 100]}, [1], "products")
    text = ItemTexts(ds, HistoryConfig(max_field_chars=20))[1]
    assert text.startswith("A; description: word") and len(text) <= len("A; description: ") + 20


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 30), min_size=1, max_size=40), st.integers(1, 120))
def test_split_halves_and_keep_recent_against_reference(counts, budget):
    lines = [str(i) for i in range(len(counts))]
    ranges = split_halves(counts, budget)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(counts)
    assert all(a < b for a, b in ranges) and all(r[1] == s[0] for r, s in zip(ranges, ranges[1:]))
    for a, b in ranges:
        assert b - a == 1 or sum(counts[a:b]) + (b - a) <= budget
    start = keep_recent(lines, counts, budget)
    # reference: the longest suffix whose cost fits, at least one line
    best = len(counts) - 1
    for s in range(len(counts) - 1, -1, -1):
        if sum(c + 1 for c in counts[s:]) <= budget:
            best = s
    assert start == best


def test_prompts_per_domain_hash_and_override(tmp_path):
    hashes = set()
    for domain in ("products", "movies", "sessions", "generic"):
        p = load_prompts(domain)
        msgs = p.profile_messages("- [rated 5/5] Film A")
        assert [m["role"] for m in msgs] == ["system", "user"]
        assert "- [rated 5/5] Film A" in msgs[1]["content"] and "{history}" not in msgs[1]["content"]
        agg = p.aggregate_messages(["first part", "second part"])[1]["content"]
        assert "Part 1:\nfirst part" in agg and "Part 2:\nsecond part" in agg and "2 consecutive" in agg
        hashes.add(p.hash)
    assert len(hashes) == 4
    (tmp_path / "movies.txt").write_text("### system\nBe brief.\n### user\nHistory:\n{history}\nGo.\n")
    custom = load_prompts("movies", tmp_path)
    assert custom.profile_messages("X")[1]["content"] == "History:\nX\nGo."
    assert custom.hash != load_prompts("movies").hash
    assert custom.aggregate.source.startswith("<packaged>")  # falls back per file
    # braces inside the history are not placeholders
    assert "{year}" in custom.profile_messages("{year}")[1]["content"]
    (tmp_path / "movies.txt").write_text("### user\n{histroy}\n")
    with pytest.raises(ValueError, match=r"movies\.txt.*histroy"):
        load_prompts("movies", tmp_path)
    with pytest.raises(ValueError, match="domain"):
        load_prompts("books")


def test_stats_profile_hand_computed():
    meta = {"title": ["Alpha", "Beta", "Gamma", "Delta"], "genres": ["Comedy|Drama", "Horror", "Comedy", "Comedy"]}
    day = 86400
    t0 = 1_600_000_000
    log = [(1, t0, 5.0), (2, t0 + day, 1.0), (3, t0 + 3 * day, 4.0), (1, t0 + 10 * day, 4.0), (4, t0 + 20 * day, 1.0)]
    ds = toy_dataset([log], meta, [4], "movies", n_items=4)
    text = stats_profile_text(ds, 0, _Tables(ds), "stars", StatsConfig())
    # tags over the 4 training interactions: Comedy 3, Drama 2, Horror 1 (6 in all); liked (last
    # rating >= 4): Alpha (Comedy|Drama), Gamma (Comedy); disliked (<= 2): Beta (Horror)
    assert text.splitlines() == [
        "Activity: 4 interactions with 3 distinct items (1 repeats).",
        "Active over 10 days.",
        "Top genres: Comedy 50%, Drama 33%, Horror 17%.",
        "Average feedback: 3.50/5.",
        "Top genres of liked items: Comedy 67%, Drama 33%.",
        "Liked (2): Alpha; Gamma.",
        "Top genres of disliked items: Horror 100%.",
        "Disliked (1): Beta.",
        "Most recent: Alpha; Gamma; Beta.",
    ]
    assert "Delta" not in text  # held-out item


def test_stats_profile_sections_select_lines_in_fixed_order(tmp_path):
    meta = {"title": ["Alpha", "Beta", "Gamma"], "genres": ["Comedy", "Horror", "Comedy|Drama"]}
    t0 = 1_600_000_000
    liked_log = [(1, t0, 5.0), (2, t0 + 1, 1.0), (3, t0 + 2, 4.0)]
    no_rated_log = [(2, t0, 3.0), (1, t0 + 1, 3.0)]
    ds = toy_dataset([liked_log, no_rated_log], meta, [3, 2], "movies", n_items=3)
    cfg = StatsConfig(sections=("disliked_tags", "liked_tags"))  # order given here does not matter
    assert stats_profile_text(ds, 0, _Tables(ds), "stars", cfg).splitlines() == [
        "Top genres of liked items: Comedy 67%, Drama 33%.",
        "Top genres of disliked items: Horror 100%.",
    ]
    assert stats_profile_text(ds, 1, _Tables(ds), "stars", cfg) == ""  # only 3-star ratings
    assert StatsConfig.from_dict(cfg.to_dict()) == cfg and StatsConfig(sections=["recent"]).hash != StatsConfig().hash
    with pytest.raises(ValueError, match="likes"):
        StatsConfig(sections=("likes",))
    # a user none of whose sections applies gets no profile (masked), not an empty text
    from seqdistill.profiles.stats_profile import write_stats_profiles

    store = write_stats_profiles(ds, tmp_path / "s", cfg)
    assert store.done_users() == {0}


def test_item_meta_with_bad_dense_id_is_named():
    ds = movie_dataset()
    ds.item_meta = ds.item_meta.with_columns(ds.item_meta["item"].set(ds.item_meta["item"] == 3, 99))
    with pytest.raises(ValueError, match="item_meta: column 'item' has value 99"):
        ItemTexts(ds)


def test_prompt_dir_problems_are_config_errors_naming_the_file(tmp_path):
    from seqdistill.errors import ConfigError

    (tmp_path / "movie.txt").write_text("### user\n{history}\n")  # misnamed: would silently fall back
    with pytest.raises(ConfigError, match=r"movies\.txt: prompt_dir has no movies\.txt \(found \['movie\.txt'\]\)"):
        load_prompts("movies", tmp_path)
    with pytest.raises(ConfigError, match="prompt_dir is not a folder"):
        load_prompts("movies", tmp_path / "movie.txt")
    (tmp_path / "movies.txt").write_bytes(b"### user\n\xff{history}\n")
    with pytest.raises(ConfigError, match=r"movies\.txt: not UTF-8 text \(byte 9\)"):
        load_prompts("movies", tmp_path)
    (tmp_path / "movies.txt").write_text("### user\n{history}\n### user\nagain {history}\n")
    with pytest.raises(ConfigError, match=r"movies\.txt: section '### user' appears twice"):
        load_prompts("movies", tmp_path)


@pytest.mark.parametrize(
    "make, key",
    [
        (lambda: HistoryConfig(max_tokens=0), "HistoryConfig.max_tokens"),
        (lambda: HistoryConfig(chars_per_token=float("nan")), "HistoryConfig.chars_per_token"),
        (lambda: HistoryConfig(overflow="drop"), "HistoryConfig.overflow"),
        (lambda: HistoryConfig(fields="title"), "HistoryConfig.fields"),
        (lambda: StatsConfig(top_tags=0), "StatsConfig.top_tags"),
        (lambda: StatsConfig(sections="tags"), "StatsConfig.sections"),
    ],
)
def test_bad_settings_are_config_errors_naming_the_key(make, key):
    from seqdistill.errors import ConfigError

    with pytest.raises(ConfigError, match=key) as err:
        make()
    assert "\n" not in str(err.value)


def test_generation_settings_are_checked():
    from seqdistill.errors import ConfigError
    from seqdistill.profiles.llm import GenerationConfig

    for kw, key in (
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": True}, "max_new_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("inf")}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"seed": 1.5}, "seed"),
    ):
        with pytest.raises(ConfigError, match=f"GenerationConfig.{key}"):
            GenerationConfig(**kw)
