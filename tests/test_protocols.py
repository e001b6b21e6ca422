"""Evaluation protocols side by side: the negative sampler's contract, sampled metrics against a
plain numpy reference, results that do not depend on the batch size, the full protocols equal to
``evaluate``, and the ``seqdistill evaluate`` command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pl = pytest.importorskip("polars")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from seqdistill.cli import main  # noqa: E402
from seqdistill.data import PreparedDataset, SplitConfig, prepare  # noqa: E402
from seqdistill.data.sequences import eval_inputs  # noqa: E402
from seqdistill.errors import ConfigError, SeqdistillWarning  # noqa: E402
from seqdistill.evaluation import (  # noqa: E402
    SAMPLE_BLOCK,
    FullRanking,
    NegativeSampler,
    SampledRanking,
    evaluate,
    evaluate_protocols,
    format_table,
    parse_protocol,
    protocol_table,
    sample_negatives,
)
from seqdistill.models import BERT4Rec, ModelConfig, SASRec, load_model  # noqa: E402
from seqdistill.training import TrainConfig, Trainer, item_counts  # noqa: E402

torch.set_num_threads(1)


# ------------------------------------------------------------------------- helpers
def make_ds(logs: dict[int, list[int]], name: str = "proto"):
    rows = [(u, item, t) for u, seq in logs.items() for t, item in enumerate(seq)]
    df = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    return prepare(df, k_core=None, split=SplitConfig(kind="leave_one_out"), name=name)


def random_logs(n_users: int, n_items: int, seed: int, skew: float = 0.0) -> dict[int, list[int]]:
    """Histories of 3-19 items; ``skew`` > 0 makes low raw ids more popular."""
    rng = np.random.default_rng(seed)
    p = np.arange(1, n_items + 1, dtype=float) ** -skew
    p /= p.sum()
    return {u: list(rng.choice(np.arange(1, n_items + 1), size=rng.integers(3, 20), p=p)) for u in range(n_users)}


def small_model(kind: str, n_items: int, seed: int = 0):
    torch.manual_seed(seed)
    cls = {"sasrec": SASRec, "bert4rec": BERT4Rec}[kind]
    return cls(ModelConfig(kind=kind, n_items=n_items, max_len=8, hidden=16, n_blocks=1, n_heads=2)).eval()


class ScoresOnly(torch.nn.Module):
    """A model seen only through ``next_item_scores`` (no item table: candidates are gathered)."""

    def __init__(self, inner) -> None:
        super().__init__()
        self.inner, self.config, self.input_length, self.device = inner, inner.config, inner.input_length, inner.device

    def next_item_scores(self, windows):
        return self.inner.next_item_scores(windows)


def csr(sets: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sets])]).astype(np.int64)
    items = np.array([i for s in sets for i in s], dtype=np.int64)
    return offsets, items


def reference_metrics(scores: list[np.ndarray], cands: list[np.ndarray], targets, ks) -> dict[str, np.ndarray]:
    """Plain numpy: the target's rank = 1 + candidates scoring higher + candidates scoring the
    same with a lower item id; NDCG = 1/log2(rank + 1), HitRate = Recall = [rank <= k], MRR = 1/rank."""
    out: dict[str, list[float]] = {f"{m}@{k}": [] for m in ("ndcg", "recall", "hit_rate", "mrr") for k in ks}
    for s, c, t in zip(scores, cands, targets):
        st_ = s[c == t][0]
        rank = 1 + int(np.sum(s > st_)) + int(np.sum((s == st_) & (c < t)))
        for k in ks:
            hit = rank <= k
            out[f"ndcg@{k}"].append(1 / math.log2(rank + 1) if hit else 0.0)
            out[f"recall@{k}"].append(float(hit))
            out[f"hit_rate@{k}"].append(float(hit))
            out[f"mrr@{k}"].append(1 / rank if hit else 0.0)
    return {key: np.array(v) for key, v in out.items()}


# ------------------------------------------------------------------------- protocol names
def test_protocol_names_parse_and_round_trip():
    assert parse_protocol("full") == FullRanking(filter_seen=False)
    assert parse_protocol("full_filtered") == FullRanking(filter_seen=True)
    assert parse_protocol("sampled:100") == SampledRanking(100, "uniform")
    assert parse_protocol("sampled-pop:7") == SampledRanking(7, "popularity")
    for name in ("full", "full_filtered", "sampled:1", "sampled-pop:250"):
        assert parse_protocol(name).name == name
    assert parse_protocol("sampled-pop:7").definition()["weighting"] == "popularity"


@pytest.mark.parametrize("bad", ["sampled:0", "sampled", "sampled:-3", "sampled:x", "pop:100", "Full", "", "full "])
def test_bad_protocol_names_are_refused_by_name(bad):
    with pytest.raises(ConfigError, match="protocol " + repr(bad).replace("\\", "\\\\")):
        parse_protocol(bad)


# ------------------------------------------------------------------------- the sampler
@st.composite
def sampler_case(draw):
    n_items = draw(st.integers(1, 120))
    rows = draw(st.integers(0, 25))
    targets = [draw(st.integers(1, n_items)) for _ in range(rows)]
    seen = [draw(st.lists(st.integers(1, n_items), max_size=n_items)) for _ in range(rows)]
    counts = None
    if draw(st.booleans()):
        counts = [0] + [draw(st.integers(0, 5)) for _ in range(n_items)]
    return n_items, targets, seen, counts, draw(st.integers(1, 40)), draw(st.integers(0, 2**32 - 1))


@settings(max_examples=150, deadline=None)
@given(sampler_case())
def test_sampler_draws_distinct_allowed_items_reproducibly(case):
    n_items, targets, seen, counts, n_neg, seed = case
    weights = np.ones(n_items + 1) if counts is None else np.array(counts, dtype=float)
    cnt = None if counts is None else np.array(counts)
    args = (n_neg, np.array(targets, dtype=np.int64), csr(seen))
    out = sample_negatives(*args, n_items=n_items, counts=cnt, seed=seed)
    assert out.shape == (len(targets), min(n_neg, n_items - 1))  # never wider than a row can fill
    for row, t, s in zip(out, targets, seen):
        allowed = {i for i in range(1, n_items + 1) if i != t and i not in s and weights[i] > 0}
        drawn = row[row >= 0]
        assert len(set(drawn.tolist())) == len(drawn), "drawn twice"
        assert set(drawn.tolist()) <= allowed, "target, a seen item or a zero-count item drawn"
        if len(allowed) <= n_neg:  # all of them, ascending, -1 after
            assert drawn.tolist() == sorted(allowed)
            assert (row[len(drawn) :] == -1).all()
        else:
            assert len(drawn) == n_neg
    again = sample_negatives(*args, n_items=n_items, counts=cnt, seed=seed)
    np.testing.assert_array_equal(out, again)


def test_sampler_is_seeded_per_block_and_differs_across_seeds():
    rng = np.random.default_rng(0)
    n_rows, n_items = 2 * SAMPLE_BLOCK + 37, 500
    targets = rng.integers(1, n_items + 1, size=n_rows)
    seen = csr([list(rng.integers(1, n_items + 1, size=rng.integers(0, 30))) for _ in range(n_rows)])
    s0 = NegativeSampler(20, targets, seen, n_items=n_items, seed=0)
    a = s0.all()
    assert s0.n_blocks == 3
    for b in range(3):  # a block alone is the same as in the whole
        np.testing.assert_array_equal(s0.block(b), a[b * SAMPLE_BLOCK : (b + 1) * SAMPLE_BLOCK])
    np.testing.assert_array_equal(a, NegativeSampler(20, targets, seen, n_items=n_items, seed=0).all())
    b = NegativeSampler(20, targets, seen, n_items=n_items, seed=1).all()
    assert (a != b).any(axis=1).mean() > 0.99  # P(one row equal by chance) is about 1e-40
    for seed in (-1, 2**32, "0", None, np.float64(2.0)):
        with pytest.raises(ConfigError, match="NegativeSampler: seed must be an integer"):
            NegativeSampler(20, targets, seen, n_items=n_items, seed=seed)
    np.testing.assert_array_equal(NegativeSampler(20, targets, seen, n_items=n_items, seed=np.int64(1)).all(), b)
    with pytest.raises(ConfigError, match="n_negatives"):
        NegativeSampler(0, targets, seen, n_items=n_items)


def chi_square_threshold(df: int) -> float:
    """The chi-square quantile at 1 - 1e-6 for ``df`` degrees of freedom."""
    scipy_stats = pytest.importorskip("scipy.stats")
    return float(scipy_stats.chi2.isf(1e-6, df))


@pytest.mark.parametrize("weighting", ["uniform", "popularity"])
@pytest.mark.parametrize("path", ["stream", "exact"])
def test_first_negative_follows_the_weights(weighting, path):
    """Column 0 of a row is drawn in proportion to the weights of the items it may draw: its
    frequencies over many rows pass a chi-square test (expected counts summed row by row), and
    the same test rejects the other weighting, so it can fail. ``exact`` rows have seen most of
    the weight (they take the exponential-key draw), ``stream`` rows little of it."""
    rng = np.random.default_rng(11)
    n_items, n_rows = 40, 6000
    counts = np.zeros(n_items + 1, dtype=np.int64)
    counts[1:] = rng.integers(1, 30, size=n_items)
    counts[1:9] *= 12  # items 1..8 hold most of the weight
    counts[[13, 27]] = 0  # never drawn by popularity
    targets = rng.integers(1, n_items + 1, size=n_rows)
    if path == "stream":
        seen = [list(rng.integers(9, n_items + 1, size=2)) for _ in range(n_rows)]
    else:
        seen = [[*range(1, 9), *rng.integers(9, n_items + 1, size=2)] for _ in range(n_rows)]
    cnt = counts if weighting == "popularity" else None
    out = sample_negatives(3, targets, csr(seen), n_items=n_items, counts=cnt, seed=4)

    def expected(w: np.ndarray) -> np.ndarray:
        exp = np.zeros(n_items + 1)
        for t, s in zip(targets, seen):
            allowed = np.ones(n_items + 1, dtype=bool)
            allowed[[0, t, *s]] = False
            p = np.where(allowed, w, 0.0)
            exp += p / p.sum()
        return exp

    w = counts.astype(float) if weighting == "popularity" else np.r_[0.0, np.ones(n_items)]
    observed = np.bincount(out[:, 0], minlength=n_items + 1).astype(float)
    exp = expected(w)
    assert observed[exp == 0].sum() == 0  # never the padding, a zero-count item, nor an item always seen
    keep = exp > 0

    def stat(e: np.ndarray) -> float:
        return float(np.sum((observed[keep] - e[keep]) ** 2 / e[keep]))

    threshold = chi_square_threshold(int(keep.sum()) - 1)
    assert stat(exp) < threshold
    other = np.r_[0.0, np.ones(n_items)] if weighting == "popularity" else counts.astype(float)
    wrong = expected(np.where(other > 0, other, 1e-9))
    assert stat(wrong) > threshold


@pytest.mark.parametrize("rounds", [None, 1])
def test_uniform_negatives_include_each_allowed_item_equally(rounds, monkeypatch):
    """Without replacement and uniform, every allowed item is in a row's negatives with
    probability n / (allowed items): inclusion counts over all columns pass a chi-square test
    (inclusion counts vary less than Poisson counts, so the test is conservative). With one
    stream round, rows the stream leaves short are finished by the exact draw, which must
    continue the same distribution."""
    import seqdistill.evaluation as evaluation

    finished = []
    if rounds is not None:
        monkeypatch.setattr(evaluation, "_STREAM_ROUNDS", rounds)
        exact = NegativeSampler._exact
        monkeypatch.setattr(
            NegativeSampler,
            "_exact",
            lambda self, rng, out, filled, r, a: finished.append(filled[r]) or exact(self, rng, out, filled, r, a),
        )
    rng = np.random.default_rng(5)
    n_items, n_rows, n_neg = 30, 5000, 10
    targets = rng.integers(1, n_items + 1, size=n_rows)
    seen = [list(rng.integers(1, n_items + 1, size=rng.integers(0, 12))) for _ in range(n_rows)]
    out = sample_negatives(n_neg, targets, csr(seen), n_items=n_items, seed=9)
    exp = np.zeros(n_items + 1)
    for t, s in zip(targets, seen):
        allowed = np.ones(n_items + 1, dtype=bool)
        allowed[[0, t, *s]] = False
        exp += allowed * min(1.0, n_neg / allowed.sum())
    observed = np.bincount(out[out >= 0], minlength=n_items + 1)
    keep = exp > 0
    assert np.sum((observed[keep] - exp[keep]) ** 2 / exp[keep]) < chi_square_threshold(int(keep.sum()) - 1)
    for row, t, s in zip(out, targets, seen):
        drawn = row[row >= 0]
        assert len(set(drawn.tolist())) == len(drawn) and t not in drawn and not set(drawn.tolist()) & set(s)
    if rounds is not None:  # the case does take that path, part-way through rows
        assert sum(f > 0 for f in finished) > 200, sum(f > 0 for f in finished)


# ------------------------------------------------------------------------- sampled metrics
@pytest.mark.parametrize("kind", ["sasrec", "bert4rec"])
@pytest.mark.parametrize("part", ["test", "valid"])
def test_sampled_metrics_match_a_numpy_reference(kind, part):
    ds = make_ds(random_logs(120, 60, seed=3, skew=0.8))
    model = small_model(kind, ds.n_items)
    ks = (1, 3, 5, 10)
    res = evaluate_protocols(model, ds, ["sampled:7", "sampled-pop:7"], part=part, ks=ks, seed=5, return_negatives=True)
    inp = eval_inputs(ds, part, model.input_length)
    with torch.no_grad():
        q = model.next_item_hidden(torch.from_numpy(inp.windows)).double().numpy()
    table = model.item_emb.weight[: ds.n_items + 1].detach().double().numpy()
    counts = item_counts(ds)
    for name in ("sampled:7", "sampled-pop:7"):
        negs = res[name].negatives
        assert negs.shape == (len(inp.targets), 7)
        cands = [np.r_[t, n[n >= 0]] for t, n in zip(inp.targets, negs)]
        for c, t in zip(cands, inp.targets):
            assert (c[1:] != t).all()
        if name == "sampled-pop:7":
            assert (counts[negs[negs >= 0]] > 0).all()
        scores = [table[c] @ q[i] for i, c in enumerate(cands)]
        ref = reference_metrics(scores, cands, inp.targets, ks)
        for key, want in ref.items():
            np.testing.assert_allclose(res[name].per_row[key], want, rtol=1e-12, err_msg=f"{name} {key}")
            assert res[name].means[key] == pytest.approx(want.mean())


def test_sampled_ties_go_to_the_lower_item_id():
    """Integer item vectors and queries: scores are exact in float32 and tie often, so the
    reference checks the tie rule itself (equal score: the lower item id ranks first)."""
    ds = make_ds(random_logs(150, 40, seed=8))
    model = small_model("sasrec", ds.n_items)
    rng = np.random.default_rng(2)
    with torch.no_grad():
        model.item_emb.weight[: ds.n_items + 1] = torch.from_numpy(
            rng.integers(-1, 2, size=(ds.n_items + 1, 16))
        ).float()
    table = model.item_emb.weight[: ds.n_items + 1].detach()
    model.next_item_hidden = lambda w: table[w[:, -1]] + table[w[:, -2]]  # integer queries
    ks = (1, 2, 5, 10)
    res = evaluate_protocols(model, ds, ["sampled:12", "sampled-pop:12"], ks=ks, seed=1, return_negatives=True)
    inp = eval_inputs(ds, "test", model.input_length)
    w = torch.from_numpy(inp.windows)
    q = (table[w[:, -1]] + table[w[:, -2]]).numpy().astype(np.int64)
    t64 = table.numpy().astype(np.int64)
    for name, r in res.items():
        cands = [np.r_[t, n[n >= 0]] for t, n in zip(inp.targets, r.negatives)]
        scores = [t64[c] @ q[i] for i, c in enumerate(cands)]
        assert any(len(np.unique(s)) < len(s) for s in scores)  # ties are there to be broken
        ref = reference_metrics(scores, cands, inp.targets, ks)
        for key, want in ref.items():
            np.testing.assert_allclose(r.per_row[key], want, rtol=1e-12, err_msg=f"{name} {key}")


# ------------------------------------------------------------------------- batch-size independence
PROTOCOLS = ("full", "full_filtered", "sampled:20", "sampled-pop:20")


@pytest.mark.parametrize("kind", ["sasrec", "bert4rec", "scores_only"])
def test_every_protocol_gives_the_same_metrics_for_batch_sizes_1_7_1024(kind):
    ds = make_ds(random_logs(SAMPLE_BLOCK + 90, 150, seed=4, skew=0.5))  # two sampling blocks
    inner = small_model("bert4rec" if kind == "bert4rec" else "sasrec", ds.n_items)
    model = ScoresOnly(inner) if kind == "scores_only" else inner
    ks = (1, 5, 10)
    runs = {
        (bs, sel, br): evaluate_protocols(
            model, ds, PROTOCOLS, ks=ks, batch_size=bs, selection=sel, block_rows=br, seed=3
        )
        for bs, sel, br in [(1, None, None), (7, None, None), (1024, None, None), (7, "torch", 5)]
    }
    ref = runs[(1024, None, None)]
    for where, res in runs.items():
        assert list(res) == list(PROTOCOLS)
        for name in PROTOCOLS:
            for key, want in ref[name].per_row.items():
                np.testing.assert_array_equal(res[name].per_row[key], want, err_msg=f"{where} {name} {key}")
    # the sampled rows do rank among fewer items than the full catalogue
    assert ref["sampled:20"].means["ndcg@10"] > ref["full"].means["ndcg@10"]


@pytest.mark.parametrize("kind", ["sasrec", "scores_only"])
def test_full_protocols_equal_evaluate(kind):
    ds = make_ds(random_logs(90, 35, seed=6))
    inner = small_model("sasrec", ds.n_items)
    model = ScoresOnly(inner) if kind == "scores_only" else inner
    res = evaluate_protocols(model, ds, ["full_filtered", "full"], ks=(1, 5, 10), batch_size=13)
    for name, filter_seen in (("full", False), ("full_filtered", True)):
        plain = evaluate(model, ds, ks=(1, 5, 10), filter_seen=filter_seen)
        assert res[name].means == plain.means
        for key, want in plain.per_row.items():
            np.testing.assert_array_equal(res[name].per_row[key], want, err_msg=f"{name} {key}")
        np.testing.assert_array_equal(res[name].users, plain.users)
        assert res[name].settings["protocol"]["seen_items"] == ("removed" if filter_seen else "kept")


def test_more_negatives_than_items_ranks_every_unseen_item():
    """With N >= n_items every unseen item is a candidate: a row whose target is not in its
    history then ranks exactly as under full_filtered (the scores-only model gives both the same
    score values); the negatives are never wider than the catalogue allows."""
    ds = make_ds(random_logs(70, 25, seed=7))
    model = ScoresOnly(small_model("sasrec", ds.n_items))
    with pytest.warns(SeqdistillWarning, match=rf"10000000000 sampled negatives .* {ds.n_items} items"):
        res = evaluate_protocols(
            model, ds, ["full_filtered", "sampled:10000000000"], ks=(1, 5, 10), return_negatives=True
        )
    inp = eval_inputs(ds, "test", model.input_length)
    assert res["sampled:10000000000"].negatives.shape == (len(inp.targets), ds.n_items - 1)
    fresh = np.array(
        [t not in inp.seen_items[a:b] for t, a, b in zip(inp.targets, inp.seen_offsets, inp.seen_offsets[1:])]
    )
    assert 0 < fresh.sum() < len(fresh)
    for key, want in res["full_filtered"].per_row.items():
        np.testing.assert_array_equal(res["sampled:10000000000"].per_row[key][fresh], want[fresh], err_msg=key)


def test_protocol_arguments_are_checked():
    ds = make_ds(random_logs(20, 15, seed=1))
    model = small_model("sasrec", ds.n_items)
    with pytest.raises(ConfigError, match="each once"):
        evaluate_protocols(model, ds, ["full", "full"])
    with pytest.raises(ConfigError, match="each once"):
        evaluate_protocols(model, ds, [])
    for seed in (-2, 2**32, "3", None, 1.5, float("nan"), True):  # none of them a TypeError or ValueError
        with pytest.raises(ConfigError, match="evaluate: seed must be an integer"):
            evaluate_protocols(model, ds, ["sampled:3"], seed=seed)
    with pytest.raises(ConfigError, match="protocol 'sampled:'"):
        evaluate_protocols(model, ds, ["sampled:"])
    for ks in ([10, 10**11], [0], [2.5], [True], []):  # 10**11 slots per row aborted the process
        with pytest.raises(ConfigError, match="ks must be integers from 1 to 100000"):
            evaluate_protocols(model, ds, ["full", "sampled:3"], ks=ks)


def test_table_rows_are_the_means():
    ds = make_ds(random_logs(40, 25, seed=2))
    res = evaluate_protocols(small_model("sasrec", ds.n_items), ds, ["full", "sampled:5"], ks=(1, 5))
    rows = protocol_table(res, ["ndcg", "mrr"])
    assert rows[0] == ["protocol", "ndcg@1", "ndcg@5", "mrr@1", "mrr@5"]
    assert [r[0] for r in rows[1:]] == ["full", "sampled:5"]
    assert rows[2][1:] == [res["sampled:5"].means[c] for c in rows[0][1:]]
    text = format_table(rows, digits=3).splitlines()
    assert text[0].split() == rows[0] and set(text[1]) <= {"-", " "}
    assert text[3].split() == ["sampled:5", *(f"{v:.3f}" for v in rows[2][1:])]
    with pytest.raises(ConfigError, match="unknown metric 'auc'"):
        protocol_table(res, ["auc"])


# ------------------------------------------------------------------------- the command
@pytest.fixture
def trained(tmp_path):
    """A prepared dataset folder and a run folder with model/ as the Trainer writes it."""
    ds = make_ds(random_logs(80, 30, seed=12), name="cli")
    ds_dir = ds.save(tmp_path / "ds")
    model = small_model("sasrec", ds.n_items)
    cfg = TrainConfig(epochs=1, batch_size=64, device="cpu", amp=False)
    Trainer(model, ds, cfg, run_dir=tmp_path / "run").fit()
    return tmp_path / "run", ds_dir


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_cli_evaluate_prints_the_table_and_writes_json(trained, tmp_path, capsys):
    run_dir, ds_dir = trained
    out = tmp_path / "eval.json"
    args = ["evaluate", str(run_dir), str(ds_dir), "--protocol", "full", "sampled:5", "sampled-pop:5"]
    args += ["--ks", "1", "5", "--seed", "3", "--threads", "1", "--device", "cpu", "--json", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].split() == ["protocol", "ndcg@1", "ndcg@5", "hit_rate@1", "hit_rate@5"]
    assert [line.split()[0] for line in lines[2:5]] == ["full", "sampled:5", "sampled-pop:5"]
    rec = json.loads(out.read_text())
    model, ds = load_model(run_dir / "model"), PreparedDataset.load(ds_dir)
    want = evaluate_protocols(model, ds, ["full", "sampled:5", "sampled-pop:5"], ks=(1, 5), seed=3)
    assert rec["seed"] == 3 and rec["ks"] == [1, 5] and rec["part"] == "test"
    assert rec["n_rows"] == len(ds.targets("test")[0])
    assert rec["dataset_fingerprint"] == ds.fingerprint()
    assert [p["name"] for p in rec["protocols"]] == ["full", "sampled:5", "sampled-pop:5"]
    assert rec["protocols"][2]["weighting"] == "popularity"
    for name, res in want.items():
        assert rec["means"][name] == pytest.approx(res.means)
    for line, name in zip(lines[2:5], want):
        assert line.split()[1] == f"{want[name].means['ndcg@1']:.4f}"
    # a second run replaces the file it wrote
    assert main([*args[:-2], "--json", str(out), "--part", "valid"]) == 0
    assert json.loads(out.read_text())["part"] == "valid"


def test_cli_evaluate_refuses_another_datasets_fingerprint(trained, capsys):
    from seqdistill.training.run import RunInfo

    run_dir, ds_dir = trained
    ds = PreparedDataset.load(ds_dir)

    def record(fingerprint: str) -> None:  # the run.json `seqdistill train` writes
        RunInfo(dataset=str(ds_dir), dataset_fingerprint=fingerprint, seed=0, model={}, train={}).write(run_dir)

    record("0" * 32)
    assert main(["evaluate", str(run_dir), str(ds_dir), "--protocol", "full"]) == 2
    err = one_line_error(capsys)
    assert "fingerprint" in err and "0" * 32 in err and ds.fingerprint() in err
    record(ds.fingerprint())
    assert main(["evaluate", str(run_dir), str(ds_dir), "--protocol", "full"]) == 0


def test_cli_evaluate_refuses_a_dataset_with_other_items(trained, tmp_path, capsys):
    run_dir, _ = trained
    other = make_ds(random_logs(60, 30, seed=99), name="other")
    other.item_ids = pl.Series("item_id", [None, *range(1000, 1000 + other.n_items)])
    other_dir = other.save(tmp_path / "other")
    assert main(["evaluate", str(run_dir), str(other_dir), "--protocol", "full"]) == 2
    assert "evaluate on the dataset the model was trained on" in one_line_error(capsys)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--protocol", "sampled:x"], "--protocol 'sampled:x'"),
        (["--protocol", "full", "uniform:100"], "--protocol 'uniform:100'"),
        (["--protocol", "full", "full"], "each protocol once"),
        (["--device", "gpu"], "--device 'gpu'"),
    ],
)
def test_cli_evaluate_bad_flags_are_one_line(trained, extra, message, capsys):
    run_dir, ds_dir = trained
    assert main(["evaluate", str(run_dir), str(ds_dir), *extra]) == 2
    assert message in one_line_error(capsys)


def test_cli_evaluate_refuses_outputs_it_must_not_replace(trained, tmp_path, capsys):
    run_dir, ds_dir = trained
    mine = tmp_path / "notes.json"
    mine.write_text('{"my": "notes"}')
    for target, message in [
        (mine, "not a file `seqdistill evaluate` wrote"),
        (ds_dir / "manifest.json", "an input of this command"),
        (run_dir / "model" / "x.json", "an input of this command"),
        (tmp_path, "is a folder"),
    ]:
        assert main(["evaluate", str(run_dir), str(ds_dir), "--protocol", "full", "--json", str(target)]) == 2
        assert message in one_line_error(capsys)
    assert mine.read_text() == '{"my": "notes"}'
    assert not (run_dir / "model" / "x.json").exists()


def test_cli_evaluate_names_a_missing_model(tmp_path, trained, capsys):
    _, ds_dir = trained
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", str(tmp_path / "empty"), str(ds_dir)]) == 2
    assert "holds no model/ folder" in one_line_error(capsys)
    assert main(["evaluate", str(tmp_path / "nowhere"), str(ds_dir)]) == 2
    assert "no such run folder" in one_line_error(capsys)
