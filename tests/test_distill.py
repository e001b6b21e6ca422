"""The distillation term: loss value, masking, dynamic β as a stop-gradient, the stage switch,
and an end-to-end run where distillation pulls the pooled state toward the targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqdistill.training import BatchOutput
from seqdistill.training.distill import DistillationTerm, DistillConfig, distill_loss

torch.set_num_threads(1)


def fake_out(B=4, L=5, d=3, blocks=2, seed=0, epoch=0):
    g = torch.Generator().manual_seed(seed)
    hs = [torch.randn(B, L, d, generator=g, requires_grad=True) for _ in range(blocks)]
    real = torch.ones(B, L, dtype=torch.bool)
    real[0, :3] = False  # a short history
    main = (hs[-1] ** 2).mean() + 1.0
    tokens = torch.where(real, 1, 0)
    return BatchOutput(
        inputs=tokens,
        real_mask=real,
        hidden=hs[-1],
        hidden_states=tuple(hs),
        users=torch.arange(B),
        windows=tokens,
        main_loss=main,
        loss=main,
        epoch=epoch,
        model=None,
    )


def test_masked_mse_matches_hand_computation():
    pooled = torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, 3.0]])
    target = torch.tensor([[0.0, 0.0], [5.0, 5.0], [3.0, 1.0]])
    weight = torch.tensor([1.0, 0.0, 1.0])
    # row 0: (1 + 4) / 2 = 2.5 ; row 2: (0 + 4) / 2 = 2 ; row 1 masked → (2.5 + 2) / 2
    assert distill_loss(pooled, target, weight).item() == pytest.approx(2.25)
    cos = distill_loss(pooled, target + torch.tensor([[1.0, 2.0], [0, 0], [0, 0]]), torch.tensor([1.0, 0, 0]), "cosine")
    assert cos.item() == pytest.approx(0.0, abs=1e-6)


def test_users_without_profile_do_not_count():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(4, 3)).astype(np.float32)
    mask = np.array([True, False, True, True])
    out = fake_out()
    a = DistillationTerm(t, mask, DistillConfig(dynamic_beta=False))(out)[1]["distill_loss"]
    t2 = t.copy()
    t2[1] += 100.0
    b = DistillationTerm(t2, mask, DistillConfig(dynamic_beta=False))(out)[1]["distill_loss"]
    assert a == pytest.approx(b)


def test_total_and_gradient_with_dynamic_beta_as_stop_gradient():
    rng = np.random.default_rng(1)
    t = rng.normal(size=(4, 3)).astype(np.float32)
    cfg = DistillConfig(alpha=0.4, dynamic_beta=True, pooling="exp", gamma=0.3, standardize=False)
    out = fake_out()
    total, logs = DistillationTerm(t, None, cfg)(out)
    main = out.main_loss
    # β = Lm / Ld, so the value is α·Lm + (1-α)·Lm = Lm.
    assert total.item() == pytest.approx(main.item(), rel=1e-5)
    (g_total,) = torch.autograd.grad(total, out.hidden_states[-1], retain_graph=True)
    # Reference: the same with β treated as a constant number.
    from seqdistill.models.pooling import pool

    beta = logs["beta"]
    ld = distill_loss(pool(out.hidden_states[-1], out.real_mask, "exp", 0.3), torch.from_numpy(t), torch.ones(4))
    ref = 0.4 * beta * ld + 0.6 * main
    (g_ref,) = torch.autograd.grad(ref, out.hidden_states[-1])
    torch.testing.assert_close(g_total, g_ref)


@pytest.mark.parametrize("coverage", ["share", "batch"])
def test_partial_coverage_weighting(coverage):
    # one of four users has a profile: "share" gives it a quarter of α, "batch" the whole α
    rng = np.random.default_rng(2)
    t = rng.normal(size=(4, 3)).astype(np.float32)
    mask = np.array([False, False, True, False])
    cfg = DistillConfig(alpha=0.4, dynamic_beta=False, standardize=False, coverage=coverage)
    out = fake_out()
    total, logs = DistillationTerm(t, mask, cfg)(out)
    from seqdistill.models.pooling import pool

    h = out.hidden_states[-1]
    pooled = pool(h, out.real_mask, "mean", 0.1)
    ld_user2 = ((pooled[2] - torch.from_numpy(t[2])) ** 2).mean()
    a = 0.4 * (0.25 if coverage == "share" else 1.0)
    ref = a * ld_user2 + (1 - a) * out.main_loss
    assert logs["alpha_eff"] == pytest.approx(a)
    assert total.item() == pytest.approx(ref.item(), rel=1e-6)
    g, g_ref = (torch.autograd.grad(x, h, retain_graph=True)[0] for x in (total, ref))
    torch.testing.assert_close(g, g_ref)
    # with every user profiled the two settings agree
    full = [
        DistillationTerm(t, None, DistillConfig(alpha=0.4, coverage=c))(fake_out())[0].item()
        for c in ("share", "batch")
    ]
    assert full[0] == pytest.approx(full[1])


def test_block_choice_and_stage_switch():
    t = np.zeros((4, 3), np.float32)
    cfg = DistillConfig(block=0, epochs=2, dynamic_beta=False)
    term = DistillationTerm(t, None, cfg)
    out = fake_out(epoch=1)
    total, _ = term(out)
    (g0,) = torch.autograd.grad(total, out.hidden_states[0], retain_graph=True, allow_unused=True)
    assert g0 is not None and g0.abs().sum() > 0
    out2 = fake_out(epoch=2)
    total2, logs2 = term(out2)
    assert total2 is None and logs2["distill_active"] == 0.0 and logs2["distill_loss"] > 0
    # A measuring-only term never trains.
    assert DistillationTerm(t, None, cfg, train=False)(fake_out(epoch=0))[0] is None


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="hidden size 3 != profile target size 5"):
        DistillationTerm(np.zeros((4, 5), np.float32), None)(fake_out())
    with pytest.raises(ValueError, match="mask must have shape"):
        DistillationTerm(np.zeros((4, 3), np.float32), np.ones(3, bool))


def test_standardized_targets_are_z_scores_over_profiled_users():
    from seqdistill.training.distill import standardize_targets

    rng = np.random.default_rng(3)
    t = rng.normal(loc=5.0, scale=0.1, size=(50, 4)).astype(np.float32)
    mask = rng.random(50) < 0.7
    z = standardize_targets(t, mask)
    np.testing.assert_allclose(z[mask].mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z[mask].std(axis=0), 1.0, atol=1e-4)
    # The term uses them (and zeroes rows without a profile) when standardize is on.
    term = DistillationTerm(t, mask, DistillConfig(standardize=True))
    np.testing.assert_allclose(term._targets.numpy()[mask], z[mask], atol=1e-6)
    assert np.all(term._targets.numpy()[~mask] == 0)
    raw = DistillationTerm(t, mask, DistillConfig(standardize=False))
    np.testing.assert_allclose(raw._targets.numpy()[mask], t[mask])
