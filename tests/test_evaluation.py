"""Full-ranking evaluation: a hand-computed case and a plain numpy reference on a random model."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pl = pytest.importorskip("polars")

from seqdistill.data import SplitConfig, prepare  # noqa: E402
from seqdistill.evaluation import evaluate  # noqa: E402
from seqdistill.models import ModelConfig, SASRec  # noqa: E402

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


def test_hand_computed_metrics():
    # raw ids 10..50 map to dense 1..5 (sorted raw order); item 1 scores highest, item 5 lowest
    ds = make_ds({0: [40, 50, 10, 40, 10], 1: [20, 10, 20, 30], 2: [50, 50, 10, 50]})
    assert ds.item_ids.to_list() == [None, 10, 20, 30, 40, 50]
    model = FixedScores([100.0, 5, 4, 3, 2, 1])  # column 0 (padding) must never be ranked
    res = evaluate(model, ds, "test", ks=(1, 2, 5))
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
    res = evaluate(model, ds, "test", ks=(1, 5), filter_seen=True, return_topk=True)
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
