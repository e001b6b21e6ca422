"""Models, losses and pooling: checked against plain references and a planted pattern."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from seqdistill.models import (  # noqa: E402
    BERT4Rec,
    ModelConfig,
    SASRec,
    build_model,
    chunked_ce,
    exp_recency,
    full_ce,
    load_model,
    masked_mean,
    sampled_softmax_ce,
)
from seqdistill.models.bert4rec import mask_windows  # noqa: E402

torch.set_num_threads(1)


def cyclic_windows(n_items: int, length: int, batch: int, g: torch.Generator) -> torch.Tensor:
    """Left-padded windows of the planted pattern: item i is always followed by i % n + 1."""
    start = torch.randint(1, n_items + 1, (batch, 1), generator=g)
    lens = torch.randint(2, length + 1, (batch, 1), generator=g)
    pos = torch.arange(length)[None]
    seq = (start - 1 + pos - (length - lens)) % n_items + 1
    return torch.where(pos >= length - lens, seq, 0)


def small(kind: str, **kw) -> ModelConfig:
    base = dict(kind=kind, n_items=30, max_len=10, hidden=32, n_blocks=2, n_heads=2, dropout=0.1)
    base.update(kw)
    return ModelConfig(**base)


def train_pattern(model, steps: int, lr: float = 5e-3) -> float:
    """Train on the planted pattern, return Recall@1 on fresh histories."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(steps):
        loss, _ = model.training_loss(cyclic_windows(model.config.n_items, model.train_length, 64, g))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    w = cyclic_windows(model.config.n_items, model.input_length + 1, 300, g)
    with torch.no_grad():
        s = model.next_item_scores(w[:, :-1])
    return (s.argmax(dim=1) == w[:, -1]).float().mean().item()


# ------------------------------------------------------------------ config
def test_config_json_round_trip_and_errors():
    cfg = small("bert4rec", loss="chunked", loss_chunk=7, mask_prob=0.4)
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(ValueError, match="unknown keys"):
        ModelConfig.from_dict({**cfg.to_dict(), "colour": 1})
    with pytest.raises(ValueError, match="loss"):
        small("sasrec", loss="bpr")
    with pytest.raises(ValueError, match="divisible"):
        small("sasrec", hidden=30, n_heads=4)


# ------------------------------------------------------------- learning
def test_sasrec_learns_planted_pattern():
    torch.manual_seed(0)
    assert train_pattern(SASRec(small("sasrec", n_blocks=1)), steps=250) >= 0.95


def test_bert4rec_learns_planted_pattern():
    torch.manual_seed(0)
    m = BERT4Rec(small("bert4rec", n_blocks=1, mask_prob=0.3, mask_last_prob=0.3, dropout=0.0))
    assert train_pattern(m, steps=500) >= 0.95


@pytest.mark.parametrize("loss", ["chunked", "sampled"])
def test_sasrec_learns_with_large_catalogue_losses(loss):
    torch.manual_seed(0)
    m = SASRec(small("sasrec", n_blocks=1, loss=loss, loss_chunk=7, n_negatives=10))
    assert train_pattern(m, steps=250) >= 0.9


# ---------------------------------------------------------- architecture
@pytest.mark.parametrize("kind", ["sasrec", "bert4rec"])
def test_padding_never_leaks_and_empty_rows_are_finite(kind):
    torch.manual_seed(0)
    m = build_model(small(kind)).eval()
    hist = torch.tensor([[3, 7, 9]])
    padded = torch.tensor([[0, 0, 0, 0, 3, 7, 9]])
    with torch.no_grad():
        a, b = m(hist), m(padded)
        # real positions see exactly the same thing with or without padding in front
        torch.testing.assert_close(a[0], b[0, -3:])
        assert torch.all(b[0, :4] == 0)
        empty = m(torch.zeros(2, 10, dtype=torch.long))
        assert torch.isfinite(empty).all()
        s = m.next_item_scores(torch.zeros(2, m.input_length, dtype=torch.long))
    assert s.shape == (2, 31)
    assert torch.isneginf(s[:, 0]).all() and torch.isfinite(s[:, 1:]).all()


def test_sasrec_is_causal():
    torch.manual_seed(0)
    m = SASRec(small("sasrec")).eval()
    w1 = torch.tensor([[0, 4, 5, 6, 7]])
    w2 = torch.tensor([[0, 4, 5, 6, 20]])
    with torch.no_grad():
        h1, h2 = m(w1), m(w2)
    torch.testing.assert_close(h1[:, :4], h2[:, :4])
    assert not torch.allclose(h1[:, 4], h2[:, 4])


def test_hidden_states_one_per_block_and_final_is_normed_last_block():
    torch.manual_seed(0)
    m = SASRec(small("sasrec", n_blocks=3)).eval()
    w = torch.tensor([[0, 0, 1, 2, 3], [5, 6, 7, 8, 9]])
    with torch.no_grad():
        final, blocks = m.encode(w)
        hs = m.hidden_states(w)
    assert len(blocks) == 3 and all(b.shape == (2, 5, 32) for b in blocks)
    for x, y in zip(blocks, hs):
        torch.testing.assert_close(x, y)
    ref = m.final_ln(blocks[-1]) * (w != 0).unsqueeze(-1)
    torch.testing.assert_close(final, ref)


def test_bert4rec_scores_never_rank_mask_or_padding():
    torch.manual_seed(0)
    m = BERT4Rec(small("bert4rec")).eval()
    with torch.no_grad():
        # push the mask token's embedding to dominate any dot product
        m.item_emb.weight[m.mask_token] = 100 * m.item_emb.weight[5]
        s = m.next_item_scores(torch.tensor([[0, 0, 0, 1, 2, 3, 4, 5, 6]]))
    assert s.shape[1] == m.config.n_items + 1  # no column for the mask token
    assert s.argmax().item() != 0


def test_mask_windows_masks_at_least_one_real_position():
    torch.manual_seed(0)
    w = torch.tensor([[0, 0, 0, 1], [0, 2, 3, 4], [0, 0, 0, 0], [5, 6, 7, 8]]).repeat(50, 1)
    inputs, masked = mask_windows(w, mask_prob=0.01, mask_token=99)
    has_real = (w != 0).any(dim=1)
    assert torch.all(masked.any(dim=1) == has_real)
    assert not masked[w == 0].any()
    assert torch.all(inputs[masked] == 99) and torch.all(inputs[~masked] == w[~masked])
    _, many = mask_windows(w, mask_prob=0.5, mask_token=99)
    frac = many[w != 0].float().mean().item()
    assert 0.4 < frac < 0.65


# ---------------------------------------------------------- save / serve
@pytest.mark.parametrize("kind", ["sasrec", "bert4rec"])
def test_save_load_round_trip_gives_identical_scores(tmp_path, kind):
    torch.manual_seed(0)
    m = build_model(small(kind)).eval()
    raw = [None] + [f"item-{i}" for i in range(1, 31)]
    m.set_item_ids(raw)
    m.save(tmp_path / "model")
    assert not [p for p in (tmp_path / "model").iterdir() if ".tmp" in p.name]
    m2 = load_model(tmp_path / "model").eval()
    assert m2.config == m.config and type(m2) is type(m)
    w = torch.tensor([[0, 0, 0, 1, 2, 3, 4, 5, 6], [9, 8, 7, 6, 5, 4, 3, 2, 1]])
    with torch.no_grad():
        torch.testing.assert_close(m.next_item_scores(w), m2.next_item_scores(w), rtol=0, atol=0)
    hist = [["item-3", "item-4"], ["item-10"]]
    assert m.recommend(hist, k=5) == m2.recommend(hist, k=5)


def test_recommend_raw_ids_filter_seen_and_unknown():
    torch.manual_seed(0)
    m = SASRec(small("sasrec")).eval()
    m.set_item_ids([None] + [1000 + i for i in range(1, 31)])
    hist = [[1001, 1002, 1003], [], [1005, 99999]]
    recs = m.recommend(hist, k=30, filter_seen=True)
    assert len(recs[0]) == 27 and not {1001, 1002, 1003} & set(recs[0])
    assert len(recs[1]) == 30 and set(recs[1]) == {1000 + i for i in range(1, 31)}
    assert 1005 not in recs[2] and len(recs[2]) == 29  # unknown id dropped
    # order agrees with the model's own scores over dense ids
    with torch.no_grad():
        s = m.next_item_scores(torch.tensor([[0] * 7 + [1, 2, 3]]))[0]
    s[[0, 1, 2, 3]] = float("-inf")
    assert [1000 + j for j in torch.argsort(s, descending=True)[:5].tolist()] == recs[0][:5]
    with pytest.raises(KeyError, match="99999"):
        m.recommend(hist, k=3, unknown="raise")
    assert m.recommend([[1, 2]], k=3, raw=False, filter_seen=True)[0][0] not in (1, 2)
    no_filter = m.recommend([[1001, 1002, 1003]], k=30, filter_seen=False)[0]
    assert len(no_filter) == 30


# ----------------------------------------------------------------- losses
@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(0, 12),
    v=st.integers(1, 40),
    d=st.integers(1, 8),
    chunk=st.integers(1, 50),
    seed=st.integers(0, 10**6),
)
def test_chunked_ce_equals_full_ce_value_and_gradients(n, v, d, chunk, seed):
    g = torch.Generator().manual_seed(seed)
    h = (torch.randn(n, d, generator=g, dtype=torch.float64) * 3).requires_grad_()
    w = (torch.randn(v, d, generator=g, dtype=torch.float64) * 3).requires_grad_()
    t = torch.randint(0, v, (n,), generator=g)
    h2, w2 = h.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    ref = F.cross_entropy(h @ w.t(), t) if n else (h.sum() + w.sum()) * 0
    ref.backward()
    got = chunked_ce(h2.float(), w2.float(), t, chunk)
    got.backward()
    torch.testing.assert_close(got.double(), ref.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h2.grad, h.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(w2.grad, w.grad, rtol=1e-4, atol=1e-5)
    if n:
        torch.testing.assert_close(full_ce(h.detach(), w.detach(), t), ref.detach())


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 30),
    v=st.integers(1, 40),
    d=st.integers(1, 8),
    block=st.integers(1, 35),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 10**6),
)
def test_full_ce_equals_torch_cross_entropy_value_and_gradients(n, v, d, block, dtype, seed):
    """The row-blocked fused full_ce against F.cross_entropy on the materialised logits."""
    g = torch.Generator().manual_seed(seed)
    h = (torch.randn(n, d, generator=g, dtype=torch.float64) * 3).requires_grad_()
    w = (torch.randn(v, d, generator=g, dtype=torch.float64) * 3).requires_grad_()
    t = torch.randint(0, v, (n,), generator=g)
    ref = F.cross_entropy(h @ w.t(), t)
    ref.backward()
    h2 = h.detach().to(dtype).requires_grad_()
    w2 = w.detach().to(dtype).requires_grad_()
    got = full_ce(h2, w2, t, block=block)
    (got * 2.5).backward()  # a non-unit upstream gradient
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-10)
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), ref.detach(), **tol)
    torch.testing.assert_close(h2.grad.double(), 2.5 * h.grad, **tol)
    torch.testing.assert_close(w2.grad.double(), 2.5 * w.grad, **tol)


def test_full_ce_only_hidden_or_only_weight_requires_grad():
    torch.manual_seed(0)
    h, w, t = torch.randn(7, 4), torch.randn(9, 4), torch.randint(0, 9, (7,))
    hg = h.clone().requires_grad_()
    full_ce(hg, w, t, block=3).backward()
    hr = h.clone().requires_grad_()
    F.cross_entropy(hr @ w.t(), t).backward()
    torch.testing.assert_close(hg.grad, hr.grad)
    with pytest.raises(ValueError, match="block"):
        full_ce(h, w, t, block=0)


def test_sampled_softmax_matches_hand_computation():
    h = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    w = torch.tensor([[1.0, 1.0], [2.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([0, 2])
    neg = torch.tensor([1, 2])
    log_q = torch.log(torch.tensor([0.5, 0.25, 0.25]))
    got = sampled_softmax_ce(h, w, t, neg, log_q).item()
    # row 0: pos = 1 - log .5 ; negs: 2 - log .25, 0 - log .25
    r0 = [1 - np.log(0.5), 2 - np.log(0.25), 0 - np.log(0.25)]
    # row 1: pos = 2 - log .25 ; neg item 1: 0 - log .25 ; neg item 2 is the positive -> masked
    r1 = [2 - np.log(0.25), 0 - np.log(0.25)]
    ce = lambda z: np.log(np.sum(np.exp(z))) - z[0]  # noqa: E731
    assert got == pytest.approx((ce(np.array(r0)) + ce(np.array(r1))) / 2, rel=1e-6)


@pytest.mark.parametrize("negatives", ["uniform", "popularity"])
def test_sampled_softmax_training_decreases_loss(negatives):
    torch.manual_seed(0)
    m = SASRec(small("sasrec", n_blocks=1, loss="sampled", n_negatives=8, negatives=negatives))
    m.set_item_popularity(np.arange(1, 31))
    opt = torch.optim.AdamW(m.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(60):
        loss, _ = m.training_loss(cyclic_windows(30, m.train_length, 32, g))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])


# ---------------------------------------------------------------- pooling
@settings(max_examples=40, deadline=None)
@given(
    b=st.integers(1, 4),
    length=st.integers(1, 7),
    d=st.integers(1, 3),
    gamma=st.floats(0.0, 2.0),
    seed=st.integers(0, 10**6),
)
def test_pooling_matches_plain_reference(b, length, d, gamma, seed):
    rng = np.random.default_rng(seed)
    h = rng.normal(size=(b, length, d))
    mask = rng.random((b, length)) < 0.6
    mean = masked_mean(torch.tensor(h), torch.tensor(mask)).numpy()
    exp = exp_recency(torch.tensor(h), torch.tensor(mask), gamma).numpy()
    for i in range(b):
        real = [t for t in range(length) if mask[i, t]]
        if not real:
            assert np.all(mean[i] == 0) and np.all(exp[i] == 0)
            continue
        ref_mean = sum(h[i, t] for t in real) / len(real)
        # the paper's weights with t = 1..m over the real positions only
        ws = [np.exp(gamma * (j + 1)) for j in range(len(real))]
        ref_exp = sum(wt * h[i, t] for wt, t in zip(ws, real)) / sum(ws)
        np.testing.assert_allclose(mean[i], ref_mean, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(exp[i], ref_exp, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["sasrec", "bert4rec"])
@pytest.mark.parametrize("hidden,blocks,ffn", [(8, 1, 4), (12, 3, 2), (16, 2, 1)])
def test_parameter_count_matches_torch(kind, hidden, blocks, ffn):
    cfg = ModelConfig(kind=kind, n_items=37, max_len=9, hidden=hidden, n_blocks=blocks, n_heads=2, ffn_mult=ffn)
    model = build_model(cfg)
    assert cfg.n_parameters(type(model).n_special) == sum(p.numel() for p in model.parameters())


def test_a_model_larger_than_memory_is_refused_before_it_is_built():
    # 100M blocks of hidden 64: ~20 TB of weights; built block by block it would run for minutes
    # before failing, so the refusal must come from the size alone.
    cfg = ModelConfig(n_items=10, max_len=8, hidden=64, n_blocks=100_000_000, n_heads=2)
    with pytest.raises(MemoryError, match=r"Unable to allocate \d+ bytes .* parameters"):
        build_model(cfg)
