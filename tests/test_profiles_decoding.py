"""Decoding controls for small local LLMs, compact prompts, the store's record of both, and the
store statistics (loop rate, items named from outside the history) on hand-made texts."""

from __future__ import annotations

import json
import math

import pytest
from test_profiles_pipeline import FakeBackend
from test_profiles_toy import movie_dataset

from seqdistill.errors import ConfigError, StoreError
from seqdistill.profiles.history import HistoryConfig, ItemTexts, resolve_rating_scale, user_history
from seqdistill.profiles.llm import GenerationConfig, OpenAIBackend
from seqdistill.profiles.pipeline import generate_profiles
from seqdistill.profiles.prompts import load_prompts
from seqdistill.profiles.quality import TitleIndex, longest_loop, loops, store_stats, text_stats, title_key
from seqdistill.profiles.store import META, ProfileStore


# ------------------------------------------------------------------------------ settings
@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"repetition_penalty": 0.9}, "repetition_penalty"),
        ({"repetition_penalty": math.nan}, "repetition_penalty"),
        ({"repetition_penalty": True}, "repetition_penalty"),
        ({"no_repeat_ngram_size": -1}, "no_repeat_ngram_size"),
        ({"no_repeat_ngram_size": 2.0}, "no_repeat_ngram_size"),
        ({"stop": "\n\n"}, "stop"),
        ({"stop": [""]}, "stop"),
        ({"stop": [3]}, "stop"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
    ],
)
def test_bad_decoding_settings_are_one_line_config_errors(kwargs, key):
    with pytest.raises(ConfigError, match=f"GenerationConfig.{key}") as e:
        GenerationConfig(**kwargs)
    assert "\n" not in str(e.value)


def test_stop_strings_cut_at_the_first_one_and_round_trip():
    cfg = GenerationConfig(stop=["\n\n", "END"])
    assert cfg.cut("likes comedy.\n\nUser 2: likes") == "likes comedy."
    assert cfg.cut("a END b\n\nc") == "a"
    assert cfg.cut("  no stop here ") == "no stop here"
    assert GenerationConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert GenerationConfig(stop=[]).stop is None


def test_served_backend_sends_stop_and_penalty_and_refuses_ngram_blocking():
    be = OpenAIBackend("http://127.0.0.1:1/v1", "m", GenerationConfig(stop=["a", "b"], repetition_penalty=1.2))
    body = json.loads(be._payload([{"role": "user", "content": "x"}]))
    assert body["stop"] == ["a", "b"] and body["repetition_penalty"] == 1.2
    plain = json.loads(OpenAIBackend("http://127.0.0.1:1/v1", "m")._payload([{"role": "user", "content": "x"}]))
    assert "stop" not in plain and "repetition_penalty" not in plain
    with pytest.raises(ConfigError, match="no_repeat_ngram_size=3"):
        OpenAIBackend("http://127.0.0.1:1/v1", "m", GenerationConfig(no_repeat_ngram_size=3))


# ------------------------------------------------------------------------------ local generation
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def smollm():
    """SmolLM2-135M (model, tokenizer): greedy decoding of a repetitive prompt loops."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from seqdistill.profiles.smollm import converted_path, gguf_path

    try:
        gguf_path()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    path = converted_path()
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def _backend(model_tok, **settings):
    """A local backend whose ``model.generate`` calls are recorded: (kwargs, new token rows)."""
    from seqdistill.profiles.llm import TransformersBackend

    model, tok = model_tok
    be = TransformersBackend("m", GenerationConfig(**settings), batch_size=2, device="cpu", model=model, tokenizer=tok)
    seen = []
    generate = model.generate

    def spy(*a, **kw):
        out = generate(*a, **kw)
        seen.append((kw, out[:, kw["input_ids"].shape[1] :].tolist()))
        return out

    be.model = type("M", (), {"generate": staticmethod(spy), "generation_config": model.generation_config})()
    return be, seen


def _conv(text):
    return [[{"role": "user", "content": text}]]


LOOPY = "Repeat: comedy drama comedy drama comedy drama comedy drama"


@pytest.fixture(scope="module")
def plain(smollm):
    """Greedy decoding of LOOPY without controls: (result, recorded generate calls)."""
    be, seen = _backend(smollm, max_new_tokens=24)
    return be.generate(_conv(LOOPY))[0], seen


def test_no_repeat_ngram_blocks_every_repeated_token_ngram(smollm, plain):
    text, seen_plain = plain[0].text, plain[1]
    rows = seen_plain[0][1][0]
    assert len({tuple(rows[i : i + 2]) for i in range(len(rows) - 1)}) < len(rows) - 1, "precondition: repeats"
    assert "no_repeat_ngram_size" not in seen_plain[0][0] and "repetition_penalty" not in seen_plain[0][0]
    blocked, seen = _backend(smollm, max_new_tokens=24, no_repeat_ngram_size=2)
    assert blocked.generate(_conv(LOOPY))[0].text != text
    kw, rows = seen[0]
    assert kw["no_repeat_ngram_size"] == 2
    prompt_ids = kw["input_ids"][0].tolist()
    full = prompt_ids + rows[0]  # transformers blocks n-grams over prompt and output together
    grams = [tuple(full[i : i + 2]) for i in range(len(full) - 1)]
    new = grams[len(prompt_ids) - 1 :]
    assert len(set(new)) == len(new) and not set(new) & set(grams[: len(prompt_ids) - 1])


def test_repetition_penalty_reaches_generate_and_shortens_the_loop(smollm, plain):
    pen, seen = _backend(smollm, max_new_tokens=24, repetition_penalty=1.5)
    a, b = plain[0].text, pen.generate(_conv(LOOPY))[0].text
    assert seen[0][0]["repetition_penalty"] == 1.5
    assert longest_loop(a)[1] >= 6, "precondition: plain greedy decoding loops"
    assert longest_loop(b)[1] < longest_loop(a)[1]


def test_stop_string_ends_the_text_where_plain_greedy_had_it(smollm, plain):
    full = plain[0]
    cut_at = full.text[len(full.text) // 2 :][:6]
    assert cut_at.strip(), "precondition: a non-blank stop string"
    stopped, seen = _backend(smollm, max_new_tokens=24, stop=[cut_at])
    r = stopped.generate(_conv(LOOPY))[0]
    assert seen[0][0]["stop_strings"] == [cut_at]
    assert r.text == full.text[: full.text.find(cut_at)].strip()
    assert r.completion_tokens < full.completion_tokens


# ------------------------------------------------------------------------------ compact prompts
def test_compact_history_lines_and_prompts():
    ds = movie_dataset(n_users=3, seed=0)
    h = HistoryConfig(style="compact", max_items=2)
    texts = ItemTexts(ds, h)
    meta = ds.item_meta.row(0, named=True)
    assert texts[meta["item"]].startswith(f"{meta['title']} ({meta['year']})")
    uh = user_history(ds, 0, texts, resolve_rating_scale(ds, h))
    full = user_history(ds, 0, ItemTexts(ds), resolve_rating_scale(ds, HistoryConfig()))
    assert len(uh.lines) == min(2, len(full.lines)) and uh.n_dropped == len(full.lines) - len(uh.lines)
    assert all(line.startswith("- ") and " | " in line for line in uh.lines)
    for domain in ("movies", "products", "sessions", "generic"):
        compact, plain = load_prompts(domain, style="compact"), load_prompts(domain)
        assert compact.hash != plain.hash
        assert len(compact.profile.user) < len(plain.profile.user) // 2
    with pytest.raises(ConfigError, match="HistoryConfig.style"):
        HistoryConfig(style="tiny")
    with pytest.raises(ConfigError, match="prompt style"):
        load_prompts("movies", style="tiny")


# ------------------------------------------------------------------------------ the store's record
def test_store_records_decoding_and_refuses_a_changed_setting(tmp_path):
    ds = movie_dataset(n_users=4, seed=2)
    be = FakeBackend()
    be.config = GenerationConfig(max_new_tokens=20, repetition_penalty=1.3, stop=["\n\n"])
    hist = HistoryConfig(style="compact", max_items=5)
    store = generate_profiles(ds, be, tmp_path / "s", history=hist, users=[0, 1], progress=False)
    meta = json.loads((tmp_path / "s" / META).read_text())
    assert meta["generation"]["repetition_penalty"] == 1.3 and meta["generation"]["stop"] == ["\n\n"]
    assert meta["history"]["style"] == "compact"
    for changed, key in (
        (GenerationConfig(max_new_tokens=20, repetition_penalty=1.2, stop=["\n\n"]), "generation.repetition_penalty"),
        (GenerationConfig(max_new_tokens=20, repetition_penalty=1.3), "generation.stop"),
        (GenerationConfig(max_new_tokens=21, repetition_penalty=1.3, stop=["\n\n"]), "generation.max_new_tokens"),
    ):
        be2 = FakeBackend()
        be2.config = changed
        with pytest.raises(StoreError, match=key) as e:
            generate_profiles(ds, be2, tmp_path / "s", history=hist, progress=False)
        assert "\n" not in str(e.value)
    with pytest.raises(StoreError, match="history.max_items"):
        generate_profiles(ds, be, tmp_path / "s", history=HistoryConfig(style="compact"), progress=False)
    assert len(store.done_users()) == 2
    generate_profiles(ds, be, tmp_path / "s", history=hist, progress=False)  # same settings: resumes
    assert ProfileStore(tmp_path / "s").done_users() == {0, 1, 2, 3}


def test_a_store_from_before_the_decoding_settings_resumes_with_plain_decoding(tmp_path):
    ds = movie_dataset(n_users=3, seed=3)
    generate_profiles(ds, FakeBackend(), tmp_path / "s", users=[0], progress=False)
    meta_path = tmp_path / "s" / META
    meta = json.loads(meta_path.read_text())
    for key in ("repetition_penalty", "no_repeat_ngram_size", "stop"):
        del meta["generation"][key]
    for key in ("style", "max_items"):
        del meta["history"][key]
    meta_path.write_text(json.dumps(meta))
    generate_profiles(ds, FakeBackend(), tmp_path / "s", progress=False)  # the defaults are what it used
    be = FakeBackend()
    be.config = GenerationConfig(max_new_tokens=20, no_repeat_ngram_size=3)
    with pytest.raises(StoreError, match=r"generation.no_repeat_ngram_size=0.*=3"):
        generate_profiles(ds, be, tmp_path / "s", progress=False)


# ------------------------------------------------------------------------------ statistics
@pytest.mark.parametrize(
    "text, looped",
    [
        ("Comedy, Drama, " * 6, True),  # period 2, 12 words
        ("the viewer likes comedy " * 3, True),  # period 4, 12 words
        ("the viewer likes comedy " * 2 + "and drama", False),  # said twice only
        ("a a a a a a a a a a a", False),  # 11 words: below min_words
        ("a a a a a a a a a a a a", True),
        ("Likes comedy and drama from the 1990s; dislikes horror and war films.", False),
        ("", False),
        ("- 1. The History of the World;\n- 2. The History of the World;\n- 3. The History of the World", True),
        ("1993, 1994, 1995, 1996, 1997, 1998, 1999, 2000, 2001, 2002, 2003, 2004", True),  # numbers are one word
        ("1993, 1994, 1995", False),
    ],
)
def test_loop_detection_on_hand_made_texts(text, looped):
    assert loops(text) is looped


def test_longest_loop_reports_the_period_and_span():
    assert longest_loop("x y " + "one two three " * 4 + "z") == (3, 12)
    assert longest_loop("one two three four") == (0, 0)


def test_titles_named_inside_and_outside_the_history():
    titles = [None, "Godfather, The (1972)", "Godfather: Part II, The (1974)", "Matrix, The (1999)", "Heat (1995)"]
    assert title_key(titles[1]) == ("the", "godfather")
    index = TitleIndex(titles)
    text = "Loves The Godfather: Part II and the matrix; heat bores them."
    # history holds item 2: "the godfather" inside the longer title is not a second mention;
    # "heat" is shorter than 8 characters, so it is not looked for
    assert index.mentions(text, [2]) == ({2}, {3})
    assert index.mentions(text, [2, 3]) == ({2, 3}, set())
    assert index.mentions("The Godfather was great", [2]) == (set(), {1})


def test_text_stats_counts_tokens_loops_and_outside_items():
    titles = [None, "Toy Story (1995)", "Matrix, The (1999)", "Casablanca (1942)"]
    texts = ["Enjoys Toy Story and comedy.", "Comedy, Drama, " * 6, "Would love The Matrix.", "Likes war films."]
    st = text_stats(
        texts, [10, 20, 30, 40], histories=[[1], [1], [1], [3]], titles=titles, max_new_tokens=30, n_error=1
    )
    assert (st.n_ok, st.n_error) == (4, 1)
    assert st.tokens_mean == 25 and st.tokens_median == 25
    assert st.hit_max_new_tokens == 0.5
    assert st.loop_rate == 0.25
    assert st.names_outside_item == 0.25 and st.names_history_item == 0.25
    assert len(st.lines()) == 4


def test_store_stats_of_a_generated_store(tmp_path):
    ds = movie_dataset(n_users=5, seed=4)
    store = generate_profiles(ds, FakeBackend(), tmp_path / "s", progress=False)
    st = store_stats(store, ds, min_title_chars=4)  # the toy titles are "Film A", ...
    ok = store.table(ok_only=True)
    assert st.n_ok == ok.height and st.tokens_mean == pytest.approx(ok["completion_tokens"].mean())
    # the fake backend's profile repeats the user's own history lines: every title is the user's
    assert st.names_outside_item == 0.0 and st.names_history_item > 0
    assert store_stats(store).names_outside_item is None


def test_generate_flags_default_to_the_measured_small_model_settings_for_smollm_only():
    from seqdistill.cli import build_parser
    from seqdistill.cli.profiles import _settings
    from seqdistill.profiles.llm import SMALL_MODEL_DECODING, SMALL_MODEL_ITEMS

    def settings(*extra):
        return _settings(build_parser().parse_args(["profiles", "generate", "d", "--store", "s", *extra]))

    cfg, hist = settings()
    assert {k: cfg.to_dict()[k] for k in SMALL_MODEL_DECODING} == SMALL_MODEL_DECODING
    assert (hist.style, hist.max_items) == ("compact", SMALL_MODEL_ITEMS)
    cfg, hist = settings("--backend", "openai", "--model", "m")
    assert cfg == GenerationConfig() and hist == HistoryConfig()
    cfg, hist = settings("--no-repeat-ngram", "0", "--max-new-tokens", "99", "--stop", "##", "--style", "full")
    assert (cfg.no_repeat_ngram_size, cfg.max_new_tokens, cfg.stop) == (0, 99, ["##"])
    assert (hist.style, hist.max_items) == ("full", None)
    with pytest.raises(ConfigError, match="repetition_penalty"):
        settings("--repetition-penalty", "0.5")
