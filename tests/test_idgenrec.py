"""IDGenRec: unique IDs, constrained decoding, training, evaluation, save/load and bad inputs.

Every model here is a tiny randomly initialised T5 (d_model 16-32, one layer) over the word
tokenizer learnt from the catalogue: there are no pretrained weights on these machines, and none
of these tests reads accuracy into a random model.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seqdistill.errors import ConfigError, DataError, OutputError, SeqdistillError
from seqdistill.models.idgenrec import (
    IDGenRec,
    IDGenRecConfig,
    IDTrie,
    constrained_beam_search,
    evaluate_idgenrec,
    fit_idgenrec,
)
from seqdistill.models.idgenrec.ids import canonical
from seqdistill.models.idgenrec.train import generator_epoch, training_transitions

TINY = dict(d_model=16, num_layers=1, num_heads=2, d_ff=32, vocab_size=200, device="cpu", eval_batch_size=32)


def tiny(**kw) -> IDGenRecConfig:
    return IDGenRecConfig(**{**TINY, **kw})


@pytest.fixture(scope="module")
def ds():
    from seqdistill.data import prepare
    from seqdistill.data.synthetic import SyntheticConfig, generate

    return prepare(generate(SyntheticConfig(n_users=60, n_items=25, seed=3)), k_core=(2, 2))


@pytest.fixture(scope="module")
def fitted(ds):
    torch.manual_seed(0)
    cfg = tiny(rounds=1, id_epochs=1, rec_epochs=3, rec_lr=3e-3, id_lr=1e-3, max_his=5, max_id_tokens=3)
    return fit_idgenrec(ds, cfg)


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert isinstance(e.value, SeqdistillError) and "\n" not in msg and msg
    return msg


# --------------------------------------------------------------------------- IDs
def _near_duplicates() -> list[str]:
    base = ["Red Lipstick Matte", "Red Lipstick Matte 2", "Red Lipstick Mate", "Lipstick Red Matte"]
    return [""] + [base[i % 4] for i in range(40)] + ["Red Lipstick Matte"] * 10


def test_ids_unique_for_near_duplicate_titles():
    torch.manual_seed(1)
    texts = _near_duplicates()
    model = IDGenRec.create(tiny(max_id_tokens=3), texts)
    res = model.assign_ids()
    assert res.attempts > 1  # identical titles collided and were decoded again
    keys = res.keys[1:]
    assert all(keys) and len(set(keys)) == len(keys) == len(texts) - 1
    # distinct as text too, and each text reads back to the very tokens the tree holds
    words = [model.id_text(i) for i in range(1, len(texts))]
    assert len(set(words)) == len(words)
    assert all(canonical(model.tokenizer, k) == k for k in keys)
    assert model.trie is not None and model.trie.n_items == len(texts) - 1


def test_collisions_fall_back_to_numbered_ids():
    """Identical titles give identical candidates; with one attempt and no longer IDs allowed,
    at most ``id_beams`` items find a free candidate and the rest are numbered, still unique."""
    torch.manual_seed(2)
    texts = [""] + ["Same Title Here"] * 30
    model = IDGenRec.create(tiny(id_beams=4, attempts_per_length=1, length_rounds=0, max_id_tokens=2), texts)
    res = model.assign_ids()
    keys = res.keys[1:]
    assert len(set(keys)) == 30 and all(keys)
    assert res.suffixed >= 30 - 4 and res.attempts == 1
    digits = {model.tokenizer.index[d] for d in "0123456789"}
    firsts = {k for k in keys if not (set(k[-1:]) & digits)}
    assert len(firsts) <= 4


# ---------------------------------------------------------------- constrained search
def _model_with_keys(keys: list[tuple[int, ...]], seed: int = 0) -> IDGenRec:
    torch.manual_seed(seed)
    words = " ".join(f"w{j}" for j in range(80))  # a vocabulary wide enough for the random keys
    texts = [""] + [f"item {i} {words}" for i in range(1, len(keys))]
    model = IDGenRec.create(tiny(d_model=32, num_heads=4, dropout=0.0), texts)
    model.set_keys(keys)
    return model


def _random_keys(n: int, vocab: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
    keys: set[tuple[int, ...]] = set()
    while len(keys) < n:
        length = int(rng.integers(1, 4))
        keys.add(tuple(int(t) for t in rng.integers(4, vocab, size=length)))
    out = sorted(keys)
    out[1] = out[0] + (out[1][0],)  # one ID a prefix of another
    return [(), *out]


def _reference_scores(model: IDGenRec, history: list[int]) -> np.ndarray:
    """Each item's log-probability under the recommender, teacher-forced token by token."""
    ids, mask = model.batch([history])
    n = model.n_items
    labels = model.labels(list(range(1, n + 1)))
    with torch.no_grad():
        logits = model.recommender(input_ids=ids.repeat(n, 1), attention_mask=mask.repeat(n, 1), labels=labels).logits
    logp = torch.log_softmax(logits.double(), -1)
    keep = labels != -100
    picked = logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0] * keep
    return np.concatenate([[-np.inf], picked.sum(1).numpy()])


def test_trie_refuses_repeated_or_empty_ids():
    with pytest.raises(DataError):
        IDTrie([(), (5, 6), (5, 6)], eos=1)
    with pytest.raises(DataError):
        IDTrie([(), (5,), ()], eos=1)


def test_constrained_search_every_beam_is_a_real_item():
    rng = np.random.default_rng(0)
    model = _model_with_keys(_random_keys(30, 60, rng))
    model.recommender.eval()
    histories = [[1, 2, 3], [7], [30, 29, 28, 27], []]
    for beams in (1, 5, 12):
        items, scores = model.rank(histories, beams)
        assert items.shape == (4, beams)
        for r, h in enumerate(histories):
            row = items[r].tolist()
            assert all(1 <= i <= 30 for i in row) and len(set(row)) == beams
            ref = _reference_scores(model, h)
            np.testing.assert_allclose(scores[r], ref[items[r]], rtol=0, atol=1e-4)
            assert np.all(np.diff(scores[r]) <= 1e-9)


def test_full_width_search_is_exact_ranking():
    """With as many beams as items nothing is pruned: the search returns every item, ordered
    by its exact teacher-forced log-probability."""
    rng = np.random.default_rng(1)
    model = _model_with_keys(_random_keys(20, 40, rng), seed=3)
    model.recommender.eval()
    history = [4, 9, 1]
    items, scores = model.rank([history], 20)
    ref = _reference_scores(model, history)
    expected = sorted(range(1, 21), key=lambda i: (-ref[i], i))
    assert items[0].tolist() == expected
    np.testing.assert_allclose(scores[0], ref[expected], atol=1e-4)


def test_seen_items_never_returned():
    rng = np.random.default_rng(2)
    model = _model_with_keys(_random_keys(15, 40, rng))
    seen = [[1, 2, 3, 4, 5], list(range(1, 14))]
    items, _ = model.rank([[1, 2], [3]], 15, seen=seen)
    for r, s in enumerate(seen):
        got = [i for i in items[r].tolist() if i > 0]
        assert not set(got) & set(s)
        assert sorted(got) == sorted(set(range(1, 16)) - set(s))  # every unseen item, nothing else
        assert (items[r] == -1).sum() == len(set(s))


def test_search_on_a_bare_trie():
    """The search itself (no IDGenRec around it): a three-item tree, the model's own start token."""
    torch.manual_seed(4)
    model = _model_with_keys([(), (10,), (10, 11), (12, 13)])
    ids, mask = model.batch([[1]])
    items, scores = constrained_beam_search(model.recommender.eval(), ids, mask, model.trie, 3, 0)
    assert sorted(items[0].tolist()) == [1, 2, 3] and np.all(np.isfinite(scores))


# ---------------------------------------------------------------------- training
def test_recommender_loss_falls(fitted):
    _, history = fitted
    rec = [r["loss"] for r in history if r["phase"] == "rec"]
    assert len(rec) == 3 and rec[-1] < rec[0]
    assert [r["phase"] for r in history] == ["id", "assign", "rec", "rec", "rec"]


def test_generator_learns_through_frozen_recommender(ds):
    torch.manual_seed(5)
    from seqdistill.models.idgenrec import item_texts
    from seqdistill.models.idgenrec.train import _frozen, _optimizer

    cfg = tiny(id_lr=1e-2, id_batch_size=16, max_his=4, max_id_tokens=2)
    model = IDGenRec.create(cfg, item_texts(ds), ds.item_ids)
    model.assign_ids()
    _frozen(model.recommender, True)
    gen0 = {k: v.clone() for k, v in model.generator.state_dict().items()}
    rec0 = {k: v.clone() for k, v in model.recommender.state_dict().items()}
    opt = _optimizer(model.generator.parameters(), cfg.id_lr, cfg, 100)
    loss = generator_epoch(model, training_transitions(ds), np.random.default_rng(0), *opt)
    assert math.isfinite(loss)
    assert any(not torch.equal(gen0[k], v) for k, v in model.generator.state_dict().items())
    assert all(torch.equal(rec0[k], v) for k, v in model.recommender.state_dict().items())


# -------------------------------------------------------------------- evaluation
def _reference_metrics(top: np.ndarray, targets: np.ndarray, k: int) -> tuple[float, float]:
    ndcg, rec = [], []
    for row, t in zip(top[:, :k].tolist(), targets.tolist()):
        rank = row.index(t) if t in row else None
        ndcg.append(0.0 if rank is None else 1.0 / math.log2(rank + 2))
        rec.append(0.0 if rank is None else 1.0)
    return float(np.mean(ndcg)), float(np.mean(rec))


@pytest.mark.parametrize("filter_seen", [False, True])
def test_evaluation_matches_plain_python(ds, fitted, filter_seen):
    from seqdistill.data.sequences import eval_inputs

    model, _ = fitted
    res = evaluate_idgenrec(model, ds, "test", ks=(5, 10), filter_seen=filter_seen, return_topk=True)
    inp = eval_inputs(ds, "test", model.config.max_his)
    np.testing.assert_array_equal(res.users, inp.users)  # the rows evaluate() ranks
    np.testing.assert_array_equal(res.targets, inp.targets)
    histories = [w[w > 0].tolist() for w in inp.windows]
    seen = [inp.seen_items[inp.seen_offsets[i] : inp.seen_offsets[i + 1]].tolist() for i in range(len(histories))]
    top, _ = model.rank(histories, 10, seen if filter_seen else None)
    np.testing.assert_array_equal(res.topk, top)
    for k in (5, 10):
        ndcg, rec = _reference_metrics(top, inp.targets, k)
        assert res.means[f"ndcg@{k}"] == pytest.approx(ndcg)
        assert res.means[f"recall@{k}"] == pytest.approx(rec)
    if filter_seen:
        assert all(not set(top[i].tolist()) & set(seen[i]) for i in range(len(seen)))


def test_recommend_raw_ids(ds, fitted):
    model, _ = fitted
    raw = ds.item_ids.to_list()
    recs = model.recommend([[raw[1], raw[2]], [raw[3]]], k=4)
    assert all(len(r) == 4 and set(r) <= set(raw[1:]) for r in recs)
    assert raw[1] not in recs[0] and raw[2] not in recs[0]


# --------------------------------------------------------------------- save / load
def test_save_load_round_trip(tmp_path, fitted):
    model, _ = fitted
    folder = model.save(tmp_path / "m")
    back = IDGenRec.load(folder)
    assert back.keys == model.keys and back.item_ids == model.item_ids
    h = [[1, 2, 3], [4]]
    np.testing.assert_array_equal(back.rank(h, 5)[0], model.rank(h, 5)[0])
    assert sorted(p.name for p in folder.iterdir()) == [
        "generator.safetensors",
        "idgenrec.json",
        "recommender.safetensors",
    ]


def test_save_refuses_a_foreign_folder(tmp_path, fitted):
    model, _ = fitted
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError):
        model.save(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_load_damaged_weights(tmp_path, fitted):
    model, _ = fitted
    folder = model.save(tmp_path / "m")
    (folder / "recommender.safetensors").write_bytes(b"not a safetensors file")
    _one_line(pytest.raises(DataError, IDGenRec.load, folder))


# ---------------------------------------------------------------------- bad inputs
def test_item_without_text_is_refused():
    e = pytest.raises(DataError, IDGenRec.create, tiny(), ["", "Lipstick", "   ", "Mascara"])
    assert "item 2" in _one_line(e)


def test_dataset_item_without_text(ds):
    from seqdistill.models.idgenrec import item_texts

    meta = ds.item_meta
    blank = ds.item_meta.with_columns([meta[c].scatter(0, None) for c in meta.columns if c not in ("item", "item_id")])
    ds2 = type(ds)(**{**ds.__dict__, "item_meta": blank})
    assert "has no text" in _one_line(pytest.raises(DataError, item_texts, ds2))
    texts = item_texts(ds2, missing="item_id")
    assert texts[int(meta["item"][0])] == str(ds.item_ids[int(meta["item"][0])])


def test_empty_catalogue_is_refused():
    assert "empty" in _one_line(pytest.raises(DataError, IDGenRec.create, tiny(), [""]))


def test_k_larger_than_catalogue(ds, fitted):
    model, _ = fitted
    _one_line(pytest.raises(ConfigError, model.recommend, [[1]], k=model.n_items + 1, raw=False))
    _one_line(pytest.raises(ConfigError, evaluate_idgenrec, model, ds, ks=(model.n_items + 1,)))
    _one_line(pytest.raises(ConfigError, evaluate_idgenrec, model, ds, ks=(10,), beams=5))


def test_unknown_model_path(tmp_path):
    cfg = tiny(model_name_or_path=str(tmp_path / "no-such-t5"))
    assert "no-such-t5" in _one_line(pytest.raises(ConfigError, IDGenRec.create, cfg, ["", "a b"]))
    (tmp_path / "empty").mkdir()
    cfg = tiny(model_name_or_path=str(tmp_path / "empty"))
    _one_line(pytest.raises(ConfigError, IDGenRec.create, cfg, ["", "a b"]))
    _one_line(pytest.raises(DataError, IDGenRec.load, tmp_path / "empty"))


@pytest.mark.parametrize(
    "bad",
    [
        {"d_model": 30, "num_heads": 4},
        {"first": "both"},
        {"rec_lr": 0.0},
        {"missing_text": "skip"},
        {"max_his": 0},
        {"vocab_size": "big"},
        {"device": "tpu"},
        {"model_name_or_path": " "},
    ],
)
def test_bad_config_values(bad):
    _one_line(pytest.raises(ConfigError, IDGenRecConfig.from_dict, bad))


# -------------------------------------------------------------------- experiments
IDG_SECTION = {**TINY, "rounds": 1, "id_epochs": 1, "rec_epochs": 1, "max_his": 5, "max_id_tokens": 3}


def _experiment(idgenrec=None):
    from seqdistill.experiments import load_preset

    cfg = load_preset("synthetic")
    cfg.dataset.kwargs.update(n_users=120, n_items=40)
    cfg.model.update(hidden=16, n_blocks=1)
    cfg.train.update(epochs=2, batch_size=64, progress=False)
    cfg.distill.base["epochs"] = 1
    cfg.distill.grid = {}
    cfg.controls, cfg.seeds = [], [0]
    cfg.idgenrec = {k: v for k, v in (idgenrec or IDG_SECTION).items() if k != "device"}
    return cfg.validate()


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    from seqdistill.experiments import report, run_experiment

    out = tmp_path_factory.mktemp("exp")
    cfg = _experiment()
    paths = run_experiment(cfg, out, progress=False)
    return cfg, out, paths, report(out)


def test_experiment_report_has_idgenrec_rows(experiment):
    import json

    cfg, out, paths, res = experiment
    assert [v for v, _, _ in cfg.variants()] == ["vanilla", "distill", "idgenrec"]
    rec = json.loads((out / "runs" / "idgenrec__seed0.json").read_text())
    assert rec["kind"] == "idgenrec" and rec["settings"]["idgenrec"]["seed"] == 0
    nd = np.load(out / "runs" / rec["per_row"]["ndcg@10"])
    van = np.load(out / "runs" / "vanilla__seed0.ndcg10.npy")
    assert len(nd) == len(van) == rec["dataset"]["test_rows"]  # the same test rows as SASRec
    assert np.nanmean(nd) == pytest.approx(rec["test"]["ndcg@10"])
    row = res["table4"][0]
    assert row["variant"] == "idgenrec" and row["test_ndcg@10"][0] == pytest.approx(rec["test"]["ndcg@10"])
    t5 = res["table5_idgenrec"][0]
    assert t5["train_seconds_per_epoch"][0] == pytest.approx(rec["timing"]["train_seconds_per_epoch"])
    assert "idgenrec" not in [c["variant"] for c in res.get("controls", [])]
    md = (out / "report.md").read_text()
    assert "## Table 4: IDGenRec" in md and "| idgenrec (IDGenRec) |" in md
    assert "| vanilla (SASRec) |" in md and "| distill (SASRec + distillation) |" in md
    assert md.count("| idgenrec (IDGenRec) |") == 2  # Table 4 and its Table 5 row


def test_experiment_resume_checks_idgenrec_settings(experiment):
    from seqdistill.experiments import run_experiment

    cfg, out, paths, _ = experiment
    before = (out / "runs" / "idgenrec__seed0.json").stat().st_mtime_ns
    assert run_experiment(cfg, out, progress=False) == paths  # all done: nothing rerun
    assert (out / "runs" / "idgenrec__seed0.json").stat().st_mtime_ns == before
    changed = _experiment({**IDG_SECTION, "rec_epochs": 2})
    assert "rec_epochs" in _one_line(pytest.raises(ConfigError, run_experiment, changed, out, progress=False))


@pytest.mark.parametrize(
    "section, key",
    [({"rounds": 0}, "rounds"), ({"seed": 3}, "seed"), ({"num_beams": 5}, "num_beams"), ({"warp": 1}, "warp")],
)
def test_experiment_idgenrec_section_refused(section, key):
    from seqdistill.experiments import ExperimentConfig

    msg = _one_line(pytest.raises(ConfigError, ExperimentConfig.from_dict, {"idgenrec": section}, "exp.toml"))
    assert msg.startswith("exp.toml: [idgenrec]") and key in msg


def test_experiment_idgenrec_checkpoint_must_exist(tmp_path):
    cfg = _experiment({**IDG_SECTION, "model_name_or_path": str(tmp_path / "t5-small")})
    assert "t5-small" in _one_line(pytest.raises(ConfigError, cfg.check_runnable))


# ------------------------------------------------------------------------ resume
class _Killed(Exception):
    pass


def test_killed_run_resumes_to_the_same_model(ds, tmp_path):
    cfg = tiny(rounds=2, id_epochs=1, rec_epochs=1, rec_lr=3e-3, id_lr=1e-3, max_his=4, max_id_tokens=2)
    whole, whole_hist = fit_idgenrec(ds, cfg)

    def kill_after_two(row, seen=[]):  # noqa: B006 - counts the rows of this one run
        seen.append(row)
        if len(seen) == 3:  # round 1: id, assign, rec done
            raise _Killed

    with pytest.raises(_Killed):
        fit_idgenrec(ds, cfg, on_epoch=kill_after_two, run_dir=tmp_path)
    resumed, hist = fit_idgenrec(ds, cfg, run_dir=tmp_path)
    assert [(r["phase"], r.get("loss")) for r in hist] == [(r["phase"], r.get("loss")) for r in whole_hist]
    assert resumed.keys == whole.keys
    for net in ("generator", "recommender"):
        a, b = getattr(resumed, net).state_dict(), getattr(whole, net).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    other = tiny(rounds=2, id_epochs=1, rec_epochs=2, max_his=4, max_id_tokens=2)
    _one_line(pytest.raises(ConfigError, fit_idgenrec, ds, other, run_dir=tmp_path))


# ------------------------------------------------------------- a checkpoint folder
def _checkpoint_folder(folder, texts: list[str]) -> None:
    """A tiny T5 and a word-level fast tokenizer saved the way a user saves t5-small."""
    import re

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    words = sorted({w for t in texts for w in re.findall(r"\w+", t)} | set("0123456789"))
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, ";": 3, **{w: i + 4 for i, w in enumerate(words)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(str(folder))
    t5 = T5Config(
        vocab_size=len(vocab), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )  # fmt: skip
    torch.manual_seed(6)
    T5ForConditionalGeneration(t5).save_pretrained(str(folder))


def test_model_name_or_path_checkpoint(tmp_path):
    texts = _near_duplicates()
    _checkpoint_folder(tmp_path / "t5", texts)
    model = IDGenRec.create(tiny(model_name_or_path=str(tmp_path / "t5"), max_id_tokens=3), texts)
    assert model.generator.config.d_model == 16 and model.tokenizer.vocab_size == model.generator.config.vocab_size
    model.assign_ids()
    assert len(set(model.keys[1:])) == len(texts) - 1 and all(model.keys[1:])
    items, _ = model.rank([[1, 2], [3]], 6)
    assert np.all((items >= 1) & (items < len(texts)))
    back = IDGenRec.load(model.save(tmp_path / "saved"))
    assert back.keys == model.keys and (tmp_path / "saved" / "tokenizer").is_dir()
    np.testing.assert_array_equal(back.rank([[1, 2], [3]], 6)[0], items)


def test_experiment_cut_off_above_catalogue_refused_before_training(ds, tmp_path):
    from seqdistill.experiments.idgenrec_run import run_idgenrec
    from seqdistill.experiments.plan import plan_runs

    cfg = _experiment()
    cfg.eval_ks = [10, ds.n_items + 1]
    plan = next(p for p in plan_runs(cfg.validate()) if p.kind == "idgenrec")
    msg = _one_line(pytest.raises(ConfigError, run_idgenrec, cfg, ds, plan, tmp_path, tmp_path / "work"))
    assert "eval_ks" in msg and not (tmp_path / "work").exists() and not (tmp_path / "runs").exists()
