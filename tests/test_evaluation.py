"""Full-ranking evaluation: a hand-computed case and a plain numpy reference on a random model."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pl = pytest.importorskip("polars")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from seqdistill import core  # noqa: E402
from seqdistill.data import SplitConfig, prepare  # noqa: E402
from seqdistill.errors import ConfigError  # noqa: E402
from seqdistill.evaluation import block_scores, evaluate, model_outputs, rank_queries, topk_ids  # noqa: E402
from seqdistill.models import BERT4Rec, ModelConfig, SASRec  # noqa: E402

torch.set_num_threads(1)


def make_ds(logs: dict[int, list[int]]):
    rows = [(u, item, t) for u, seq in logs.items() for t, item in enumerate(seq)]
    df = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    return prepare(df, k_core=None, split=SplitConfig(kind="leave_one_out"), name="hand")


class FixedScores(torch.nn.Module):
    """A stand-in model whose scores are the same fixed vector for every row."""

    def __init__(self, scores: list[float], input_length: int = 4) -> None:
        super().__init__()
        self.config = ModelConfig(n_items=len(scores) - 1)
        self.input_length = input_length
        self.s = torch.tensor(scores)
        self.device = torch.device("cpu")

    def next_item_scores(self, windows):
        return self.s.expand(windows.shape[0], -1).clone()


@pytest.mark.parametrize("selection", ["rust", "torch"])
def test_hand_computed_metrics(selection):
    # raw ids 10..50 map to dense 1..5 (sorted raw order); item 1 scores highest, item 5 lowest
    ds = make_ds({0: [40, 50, 10, 40, 10], 1: [20, 10, 20, 30], 2: [50, 50, 10, 50]})
    assert ds.item_ids.to_list() == [None, 10, 20, 30, 40, 50]
    model = FixedScores([100.0, 5, 4, 3, 2, 1])  # column 0 (padding) must never be ranked
    res = evaluate(model, ds, "test", ks=(1, 2, 5), selection=selection)
    # user 0: target 10 -> dense 1 -> rank 1; user 1: target 30 -> rank 3; user 2: target 50 -> rank 5
    ranks = {0: 1, 1: 3, 2: 5}
    order = [ranks[int(u)] for u in res.users]
    for k in (1, 2, 5):
        exp_ndcg = [1 / math.log2(r + 1) if r <= k else 0.0 for r in order]
        exp_hit = [1.0 if r <= k else 0.0 for r in order]
        exp_mrr = [1 / r if r <= k else 0.0 for r in order]
        np.testing.assert_allclose(res.per_row[f"ndcg@{k}"], exp_ndcg)
        np.testing.assert_allclose(res.per_row[f"recall@{k}"], exp_hit)
        np.testing.assert_allclose(res.per_row[f"hit_rate@{k}"], exp_hit)
        np.testing.assert_allclose(res.per_row[f"mrr@{k}"], exp_mrr)
        assert res.means[f"ndcg@{k}"] == pytest.approx(np.mean(exp_ndcg))
    assert res.means["ndcg@5"] == pytest.approx((1 + 0.5 + 1 / math.log2(6)) / 3)

    # filter_seen: user 1's history {20, 10} is removed -> 30 ranks first; user 2's target 50 is
    # itself in the history, so it can no longer be ranked at all
    res = evaluate(model, ds, "test", ks=(1, 5), filter_seen=True, return_topk=True, selection=selection)
    by_user = {int(u): i for i, u in enumerate(res.users)}
    assert res.per_row["recall@1"][by_user[1]] == 1.0
    assert res.per_row["recall@5"][by_user[2]] == 0.0
    assert res.topk[by_user[1]].tolist() == [3, 4, 5, -1, -1]
    # user 0: history [40, 50, 10, 40] -> seen {1, 4, 5}
    assert res.topk[by_user[0]].tolist() == [2, 3, -1, -1, -1]


def reference_metrics(scores: np.ndarray, targets: np.ndarray, seen: list[set[int]] | None, ks) -> dict:
    """Plain numpy full ranking: rank = 1 + #items scoring higher (ties: lower id first)."""
    out = {f"{m}@{k}": [] for m in ("ndcg", "recall", "mrr") for k in ks}
    for i, t in enumerate(targets):
        s = scores[i].astype(np.float64).copy()
        s[0] = -np.inf
        if seen is not None:
            s[list(seen[i])] = -np.inf
        if not np.isfinite(s[t]):
            rank = math.inf
        else:
            ids = np.arange(len(s))
            rank = 1 + int(np.sum((s > s[t]) | ((s == s[t]) & (ids < t))))
        for k in ks:
            out[f"ndcg@{k}"].append(1 / math.log2(rank + 1) if rank <= k else 0.0)
            out[f"recall@{k}"].append(1.0 if rank <= k else 0.0)
            out[f"mrr@{k}"].append(1 / rank if rank <= k else 0.0)
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize("filter_seen", [False, True])
def test_random_model_matches_numpy_reference_in_chunks(filter_seen):
    rng = np.random.default_rng(0)
    logs = {u: list(rng.integers(1, 40, size=rng.integers(3, 15))) for u in range(23)}
    ds = make_ds(logs)
    torch.manual_seed(0)
    model = SASRec(ModelConfig(n_items=ds.n_items, max_len=6, hidden=16, n_blocks=1, n_heads=2)).eval()
    res = evaluate(model, ds, "valid", ks=(3, 10), filter_seen=filter_seen, batch_size=4)
    users, positions = ds.targets("valid")
    wins = np.zeros((len(users), 6), dtype=np.int64)
    seen = []
    for i, (u, p) in enumerate(zip(users, positions)):
        hist = ds.items[ds.offsets[u] : ds.offsets[u] + p]
        tail = hist[-6:]
        wins[i, 6 - len(tail) :] = tail
        seen.append(set(hist.tolist()))
    targets = ds.items[ds.offsets[users] + positions]
    with torch.no_grad():
        scores = model.next_item_scores(torch.from_numpy(wins)).numpy()
    ref = reference_metrics(scores, targets, seen if filter_seen else None, (3, 10))
    np.testing.assert_array_equal(res.users, users)
    for key, val in ref.items():
        np.testing.assert_allclose(res.per_row[key], val, rtol=1e-12, err_msg=key)
        assert res.means[key] == pytest.approx(val.mean())


def test_evaluate_rejects_mismatched_catalogue():
    ds = make_ds({0: [1, 2, 3], 1: [2, 3, 1]})
    with pytest.raises(ValueError, match="n_items"):
        evaluate(FixedScores([0.0] * 9), ds)


def test_a_k_that_reaches_the_catalogue_warns(recwarn):
    # 3 items: at k = 3 every item is in every top-k, so Recall@3 is 1 whatever the model.
    from seqdistill.errors import SeqdistillWarning

    ds = make_ds({0: [1, 2, 3], 1: [2, 3, 1]})
    evaluate(FixedScores([0.0, 0.3, 0.2, 0.1]), ds, ks=(1, 2))
    assert not [w for w in recwarn if issubclass(w.category, SeqdistillWarning)]
    with pytest.warns(SeqdistillWarning, match=r"k=3 is not below the catalogue's 3 items"):
        res = evaluate(FixedScores([0.0, 0.3, 0.2, 0.1]), ds, ks=(1, 3))
    assert res.means["recall@3"] == 1.0


# ------------------------------------------------------------------ the same whatever the blocks
def random_logs(n_users: int, n_items: int, seed: int) -> dict[int, list[int]]:
    rng = np.random.default_rng(seed)
    return {u: list(rng.integers(1, n_items + 1, size=rng.integers(3, 20))) for u in range(n_users)}


def small_model(kind: str, n_items: int, seed: int = 0):
    torch.manual_seed(seed)
    cls = {"sasrec": SASRec, "bert4rec": BERT4Rec}[kind]
    return cls(ModelConfig(kind=kind, n_items=n_items, max_len=8, hidden=16, n_blocks=1, n_heads=2)).eval()


def one_shot(model, ds, part, ks, filter_seen):
    """Today's loop in one block: every row's scores from ``next_item_scores``, then the core."""
    from seqdistill.data.sequences import eval_inputs

    inp = eval_inputs(ds, part, model.input_length)
    with torch.no_grad():
        scores = model.next_item_scores(torch.from_numpy(inp.windows)).numpy()
    n = len(inp.users)
    seen = (inp.seen_offsets, inp.seen_items) if filter_seen else (None, None)
    return core.topk_metrics(scores, ks, np.arange(n + 1), inp.targets, *seen, min_item=1)


@pytest.mark.parametrize("kind", ["sasrec", "bert4rec"])
@pytest.mark.parametrize("filter_seen", [False, True])
def test_same_result_whatever_batch_block_and_selection(kind, filter_seen):
    ds = make_ds(random_logs(70, 30, seed=1))
    model = small_model(kind, ds.n_items)
    ks = (1, 5, 10)
    ref = one_shot(model, ds, "test", ks, filter_seen)
    assert len(ref.topk) == 70
    for batch_size, block_rows, selection in [
        (1, None, "rust"),
        (2, 1, "rust"),
        (3, 2, "torch"),
        (7, 5, "rust"),
        (16, 16, "torch"),
        (64, 3, "rust"),
        (1024, None, "rust"),
        (1024, 128, "torch"),
    ]:
        res = evaluate(
            model,
            ds,
            "test",
            ks=ks,
            filter_seen=filter_seen,
            batch_size=batch_size,
            block_rows=block_rows,
            selection=selection,
            return_topk=True,
        )
        where = f"batch_size={batch_size} block_rows={block_rows} selection={selection}"
        np.testing.assert_array_equal(res.topk, ref.topk, err_msg=where)
        for key in ref.keys():
            np.testing.assert_array_equal(res.per_row[key], ref[key], err_msg=f"{key} {where}")


@pytest.mark.parametrize("kind", ["sasrec", "bert4rec"])
def test_a_row_gets_the_same_bits_in_any_block(kind):
    """Why the results above cannot depend on the blocks: a row's query vector and scores are
    bit-for-bit the same alone as among 64 rows (MKL's 1- and 2-row kernels round differently,
    which the padding to MIN_BLOCK rows avoids)."""
    model = small_model(kind, 300)
    wins = torch.from_numpy(np.random.default_rng(4).integers(0, 301, size=(64, model.input_length)))
    table_t = model.item_emb.weight[:301].t()
    with torch.no_grad():
        q_all = model_outputs(model, wins, table_t.t())
        s_all = block_scores(q_all, table_t)
        for i in range(0, 64, 7):
            for rows in (1, 2, 3):
                q = model_outputs(model, wins[i : i + rows], table_t.t())
                assert torch.equal(q, q_all[i : i + rows]), (i, rows)
                out = torch.full((16, 301), float("nan"))
                assert torch.equal(block_scores(q_all[i : i + rows], table_t, out), s_all[i : i + rows]), (i, rows)


class ScoresOnly(torch.nn.Module):
    """A model seen only through ``next_item_scores`` (evaluation cannot take the GEMM path)."""

    def __init__(self, inner) -> None:
        super().__init__()
        self.inner, self.config, self.input_length, self.device = inner, inner.config, inner.input_length, inner.device

    def next_item_scores(self, windows):
        return self.inner.next_item_scores(windows)


def test_scores_only_model_ranks_like_the_gemm_path():
    ds = make_ds(random_logs(40, 25, seed=2))
    model = small_model("sasrec", ds.n_items)
    with torch.no_grad():  # the contract the GEMM path relies on
        wins = torch.from_numpy(np.random.default_rng(0).integers(0, ds.n_items + 1, size=(20, 8)))
        assert torch.equal(model.next_item_scores(wins), model.score(model.next_item_hidden(wins)))
    fast = evaluate(model, ds, "test", ks=(3, 10), filter_seen=True, return_topk=True, batch_size=9, block_rows=4)
    slow = evaluate(
        ScoresOnly(model), ds, "test", ks=(3, 10), filter_seen=True, return_topk=True, batch_size=9, block_rows=4
    )
    np.testing.assert_array_equal(fast.topk, slow.topk)
    for key in fast.per_row:
        np.testing.assert_array_equal(fast.per_row[key], slow.per_row[key], err_msg=key)


def test_scores_with_wrong_width_are_refused():
    ds = make_ds({0: [1, 2, 3], 1: [2, 3, 1]})
    model = FixedScores([0.0, 1, 2, 3])
    model.next_item_scores = lambda w: torch.zeros(w.shape[0], 7)
    with pytest.raises(ConfigError, match=r"expected \[rows, 4\]"):
        evaluate(model, ds)


@pytest.mark.parametrize("kwargs", [{"selection": "numpy"}, {"block_rows": 0}, {"batch_size": 0}, {"ks": (0, 5)}])
def test_bad_arguments_are_refused(kwargs):
    ds = make_ds({0: [1, 2, 3], 1: [2, 3, 1]})
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        evaluate(FixedScores([0.0, 1, 2, 3]), ds, **kwargs)


# ------------------------------------------------------------------------ torch selection
score_values = st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, float("inf"), float("-inf"), float("nan"), 1e-38, -1e-45])


@settings(max_examples=150, deadline=None)
@given(
    rows=st.integers(1, 6),
    cols=st.integers(1, 12),
    k=st.integers(1, 15),
    min_item=st.integers(0, 3),
    data=st.data(),
)
def test_torch_topk_matches_the_rust_core_with_ties(rows, cols, k, min_item, data):
    """Scores drawn from a few values (ties everywhere, NaN, infinities, signed zeros)."""
    scores = np.array(data.draw(st.lists(score_values, min_size=rows * cols, max_size=rows * cols)), dtype=np.float32)
    scores = scores.reshape(rows, cols)
    seen = [sorted(data.draw(st.sets(st.integers(0, cols - 1), max_size=cols))) for _ in range(rows)]
    seen_off = np.cumsum([0] + [len(s) for s in seen])
    seen_items = np.array([i for s in seen for i in s], dtype=np.int64)
    gt = np.ones(rows, dtype=np.int64)
    ref = core.topk_metrics(scores, [k], np.arange(rows + 1), gt, seen_off, seen_items, min_item=min_item)
    seen_rows = torch.from_numpy(np.repeat(np.arange(rows), np.diff(seen_off)))
    ours = topk_ids(torch.from_numpy(scores), k, min_item, seen_rows, torch.from_numpy(seen_items))
    np.testing.assert_array_equal(ours.numpy(), ref.topk)


def test_rank_queries_paths_agree_on_tied_scores():
    """Integer-valued query vectors and items: many exactly tied scores per row."""
    gen = torch.Generator().manual_seed(3)
    q = torch.randint(-2, 3, (300, 4), generator=gen).float()
    table = torch.randint(-2, 3, (500, 4), generator=gen).float()
    rng = np.random.default_rng(3)
    targets = rng.integers(1, 500, size=300)
    counts = rng.integers(0, 30, size=300)
    seen = (np.concatenate([[0], np.cumsum(counts)]), rng.integers(1, 500, size=counts.sum()))
    ref = core.topk_metrics((q @ table.t()).numpy(), (1, 10, 50), np.arange(301), targets, *seen, min_item=1)
    for selection, block_rows in [("rust", 7), ("rust", 300), ("torch", 1), ("torch", 64)]:
        res = rank_queries(q, table, targets, (1, 10, 50), seen, selection, block_rows, return_topk=True)
        np.testing.assert_array_equal(res.topk, ref.topk, err_msg=selection)
        for key in ref.keys():
            np.testing.assert_array_equal(res[key], ref[key], err_msg=f"{key} {selection} {block_rows}")


def test_evaluate_leaves_the_torch_thread_count_alone():
    """Rankers run torch at one thread while they rank a batch (nested ones too: one per
    protocol) and give the caller's setting back when the batch is done, also after an error
    inside a ranker; the workers' results equal a single worker's."""
    from seqdistill.evaluation import BlockRanker, evaluate_protocols

    ds = make_ds(random_logs(30, 20, seed=5))
    model = small_model("sasrec", ds.n_items)
    torch.set_num_threads(2)
    try:
        evaluate(model, ds, "test", ks=(5,), block_rows=4)
        assert torch.get_num_threads() == 2
        evaluate_protocols(model, ds, ["full", "full_filtered", "sampled:5"], ks=(5,))
        assert torch.get_num_threads() == 2
        seen_threads: list[int] = []

        class Recording(BlockRanker):
            def _select_rust(self, lo, scores):
                seen_threads.append(torch.get_num_threads())
                super()._select_rust(lo, scores)

        with Recording(ds.n_items + 1, (5,), np.ones(40, dtype=np.int64), workers=2) as rec:
            rec.add_scores(0, torch.randn(40, ds.n_items + 1))
            assert torch.get_num_threads() == 2  # the batch is finished and the setting back
        assert seen_threads and set(seen_threads) == {1}
        ranker = BlockRanker(ds.n_items + 1, (5,), np.ones(3, dtype=np.int64), workers=2)
        with pytest.raises(ConfigError), ranker:
            ranker.add_scores(0, torch.zeros(3, ds.n_items + 7))  # wrong width
        assert torch.get_num_threads() == 2
        gen = torch.Generator().manual_seed(0)
        q, table = torch.randn(200, 8, generator=gen), torch.randn(40, 8, generator=gen)
        targets = np.random.default_rng(0).integers(1, 40, size=200)
        one, two = (rank_queries(q, table, targets, (5, 10), None, "rust", 16, True, w) for w in (1, 2))
        np.testing.assert_array_equal(one.topk, two.topk)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_column_chunks_hand_cases():
    from seqdistill.evaluation import MIN_TILE_COLS, _column_chunks

    assert _column_chunks(5, 1024) == [(0, 5)]
    assert _column_chunks(2048, 1024) == [(0, 1024), (1024, 2048)]
    assert _column_chunks(2048 + MIN_TILE_COLS, 1024) == [(0, 1024), (1024, 2048), (2048, 2048 + MIN_TILE_COLS)]
    # A remainder under MIN_TILE_COLS joins the tile before it: no product is narrower.
    assert _column_chunks(2048 + 1, 1024) == [(0, 1024), (1024, 2049)]


@settings(max_examples=40, deadline=None)
@given(
    tile=st.integers(12, 90),
    n_items=st.integers(1, 400),
    rows=st.integers(1, 70),
    block_rows=st.sampled_from([1, 5, 16, 64, 256]),
    workers=st.integers(1, 3),
    seed=st.integers(0, 2**31 - 1),
)
def test_tiled_ranking_equals_one_whole_product(tile, n_items, rows, block_rows, workers, seed):
    """Query blocks scored and ranked tile by tile (any tile width, remainder tiles, seen items on
    tile borders, ties from integer vectors) give exactly the core's result on one whole
    ``q @ W.T`` product; a float-valued model too."""
    import seqdistill.evaluation as ev

    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    q = torch.randint(-2, 3, (rows, 6), generator=gen).float()
    table = torch.randint(-2, 3, (n_items + 1, 6), generator=gen).float()
    if seed % 2:
        q, table = torch.randn(rows, 6, generator=gen), torch.randn(n_items + 1, 6, generator=gen)
    targets = rng.integers(1, n_items + 1, size=rows)
    counts = rng.integers(0, min(n_items, 40) + 1, size=rows)
    seen = (np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), rng.integers(0, n_items + 1, size=counts.sum()))
    whole = block_scores(q, table.t()).numpy()
    ref = core.topk_metrics(whole, (1, 5, 30), np.arange(rows + 1), targets, *seen, min_item=1)
    saved = ev.CPU_TILE_COLS
    ev.CPU_TILE_COLS = tile
    try:
        res = rank_queries(q, table, targets, (1, 5, 30), seen, "rust", block_rows, return_topk=True, workers=workers)
    finally:
        ev.CPU_TILE_COLS = saved
    np.testing.assert_array_equal(res.topk, ref.topk)
    for key in ref.keys():
        np.testing.assert_array_equal(res[key], ref[key], err_msg=key)


def test_topk_stream_refuses_chunks_out_of_order_and_wrong_shapes():
    from seqdistill.errors import CoreError

    # Sizes that would abort the process on allocation are refused as errors.
    with pytest.raises(CoreError, match=f"from 1 to {core.MAX_K}"):
        core.TopkStream(2, [core.MAX_K + 1])
    with pytest.raises(CoreError, match=f"from 1 to {core.MAX_K}"):
        core.topk_metrics(np.zeros((1, 3), np.float32), [10**11], np.array([0, 1]), np.array([1]))
    with pytest.raises(CoreError, match="cannot hold"):
        core.TopkStream(10**13, [5])
    stream = core.TopkStream(2, [3], min_item=1)
    with pytest.raises(CoreError, match="expected column 0, got 4"):
        stream.feed(np.zeros((2, 4), dtype=np.float32), 4)
    with pytest.raises(CoreError, match="expected 2 rows, got 3"):
        stream.feed(np.zeros((3, 4), dtype=np.float32), 0)
    with pytest.raises(CoreError, match="C-contiguous"):
        stream.feed(np.zeros((2, 8), dtype=np.float32)[:, ::2], 0)
    stream.feed(np.array([[1, 3, 2, 0], [0, 0, 0, 5]], dtype=np.float32), 0)
    stream.feed(np.array([[9], [5]], dtype=np.float32), 4)
    assert stream.next_col == 5
    out = stream.finish(np.array([0, 1, 2]), np.array([4, 4]))
    # Row 0: 4 (9.0), 1 (3.0), 2 (2.0); row 1: 3 and 4 tie at 5.0, the lower id first.
    np.testing.assert_array_equal(out.topk, [[4, 1, 2], [3, 4, 1]])
    np.testing.assert_allclose(out["ndcg@3"], [1.0, 1 / math.log2(3)])
    assert stream.next_col == 0
