"""Next-item losses over a large item catalogue.

All functions take the hidden states of the positions that have a target only
(``hidden [N, d]``), the output item table (``weight [V, d]``, tied with the input
embeddings by the caller) and targets as row indices into ``weight`` (``int64 [N]``).
They return the mean cross-entropy over the N positions. Padding and ignored
positions are removed by the caller, so nothing here knows about item 0.

- :func:`full_ce`: exact softmax cross-entropy, blocked over rows with a fused backward;
  memory holds one ``block x V`` tile of logits.
- :func:`chunked_ce`: the same value and gradients, computed over item chunks with an
  online log-sum-exp and a hand-written backward, so peak memory is ``N x chunk``.
- :func:`sampled_softmax_ce`: softmax over the positive and ``K`` shared sampled
  negatives, each logit corrected by ``-log q(item)`` (log-q correction), accidental
  hits of the positive among the negatives masked out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["chunked_ce", "full_ce", "sample_negatives", "sampled_softmax_ce"]


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Reduction dtype: float64 stays float64, everything else reduces in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class _FullCE(torch.autograd.Function):
    """Mean softmax cross-entropy over all items, blocked over rows, with a fused backward.

    Forward computes the logits ``block`` rows at a time and keeps only the per-row
    log-sum-exp; backward recomputes each block of logits, turns it into ``softmax - onehot``
    in place and feeds it straight into the two gradient products. Compared with
    ``F.cross_entropy`` on the full ``N x V`` logits this never allocates an ``N x V`` tensor
    (no page-faulted temporaries of ``logsumexp``, no zero-filled NLL gradient, no separate
    log-softmax backward) and works on cache-sized blocks: a SASRec step on ML-1M (128 x 200
    positions, 3,706 items) on one CPU thread goes from 1.94 s to 1.44 s. The extra matrix
    product of the recomputation costs less than the memory traffic it saves. Logits are
    formed in the dtype of the inputs (bf16 under autocast, the same in both passes) and
    reduced in float32.
    """

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, targets: Tensor, block: int) -> Tensor:  # type: ignore[override]
        n = hidden.shape[0]
        wt = weight.t()
        acc = _acc_dtype(hidden.dtype)
        lse = torch.empty(n, dtype=acc, device=hidden.device)
        target_logit = torch.empty(n, dtype=acc, device=hidden.device)
        for s in range(0, n, block):
            logits = (hidden[s : s + block] @ wt).to(acc)
            torch.logsumexp(logits, dim=1, out=lse[s : s + block])
            target_logit[s : s + block] = logits.gather(1, targets[s : s + block, None])[:, 0]
        ctx.save_for_backward(hidden, weight, targets, lse)
        ctx.block = block
        return (lse - target_logit).mean()

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        hidden, weight, targets, lse = ctx.saved_tensors
        n, block = hidden.shape[0], ctx.block
        acc = lse.dtype
        scale = grad_out.to(acc) / n
        wt, w_acc = weight.t(), weight.to(acc)
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty(hidden.shape, dtype=acc, device=hidden.device) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_w else None
        for s in range(0, n, block):
            p = (hidden[s : s + block] @ wt).to(acc)
            p.sub_(lse[s : s + block, None]).exp_()  # softmax of this block, in place
            p[torch.arange(p.shape[0], device=p.device), targets[s : s + block]] -= 1.0
            p.mul_(scale)
            if need_h:
                torch.mm(p, w_acc, out=grad_h[s : s + block])
            if need_w:
                grad_w.addmm_(p.t(), hidden[s : s + block].to(acc))
        return (grad_h.to(hidden.dtype) if need_h else None, grad_w.to(weight.dtype) if need_w else None, None, None)


def default_ce_block(n_items: int, device_type: str) -> int:
    """Rows per logits block of :func:`full_ce`: ~4M logits, and on the CPU at most 128 rows.

    On the CPU the block's logits should stay in a core's L2 cache between the product that
    writes them and the softmax that reads them; ``grad_w`` (``V x d``) is read and written once
    per block, so blocks of a few rows cost more than they save when the catalogue is large.
    Measured for one training step's loss (one thread, Xeon with 2 MiB L2, d = 64, best of 3):
    12,000 rows x 3,700 items 0.34-0.43 s in blocks of 64-128 rows against 0.57-0.61 s in the
    old 1,133-row blocks; 12,000 x 12,000 items 1.2-1.3 s (64-128 rows) against 1.8 s (349);
    4,000 x 40,000 items 1.7 s at 104 rows, 2.1 s at 64, 3.0 s at 256+. On CUDA the ~4M-logit
    blocks stay (fewer kernel launches).
    """
    block = max(1, (1 << 22) // max(1, n_items))
    return min(block, 128) if device_type == "cpu" else block


def full_ce(hidden: Tensor, weight: Tensor, targets: Tensor, block: int | None = None) -> Tensor:
    """Mean softmax cross-entropy of ``hidden @ weight.T`` against ``targets``.

    Same value and gradients as ``F.cross_entropy(hidden @ weight.T, targets)`` (float32
    reduction), computed ``block`` rows at a time (default: :func:`default_ce_block`) so memory
    holds one ``block x V`` tile, never ``N x V``; see :class:`_FullCE`. Under autocast the
    logits are formed in the autocast dtype, the same in forward and backward.
    """
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0 + weight.sum() * 0.0
    dev = hidden.device.type
    if torch.is_autocast_enabled(dev):
        low = torch.get_autocast_dtype(dev)
        hidden, weight = hidden.to(low), weight.to(low)
    elif hidden.dtype != weight.dtype:
        common = torch.promote_types(hidden.dtype, weight.dtype)
        hidden, weight = hidden.to(common), weight.to(common)
    if block is None:
        block = default_ce_block(weight.shape[0], dev)
    if block < 1:
        raise ValueError(f"full_ce: block must be >= 1, got {block}")
    with torch.autocast(device_type=dev, enabled=False):
        return _FullCE.apply(hidden, weight, targets, int(block))


class _ChunkedCE(torch.autograd.Function):
    """Exact mean cross-entropy over item chunks (float32 accumulation).

    Forward keeps only the per-row log-sum-exp; backward recomputes each chunk's
    softmax, so memory never holds the whole ``N x V`` logit matrix.
    """

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, targets: Tensor, chunk: int) -> Tensor:  # type: ignore[override]
        h = hidden.float()
        w = weight.float()
        n = h.shape[0]
        lse = torch.full((n,), float("-inf"), dtype=torch.float32, device=h.device)
        for start in range(0, w.shape[0], chunk):
            logits = h @ w[start : start + chunk].t()
            lse = torch.logaddexp(lse, torch.logsumexp(logits, dim=1))
        target_logit = (h * w[targets]).sum(dim=1)
        ctx.save_for_backward(hidden, weight, targets, lse)
        ctx.chunk = chunk
        return (lse - target_logit).mean()

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        hidden, weight, targets, lse = ctx.saved_tensors
        h = hidden.float()
        w = weight.float()
        scale = grad_out.float() / h.shape[0]
        grad_h = torch.zeros_like(h)
        grad_w = torch.zeros_like(w)
        for start in range(0, w.shape[0], ctx.chunk):
            wc = w[start : start + ctx.chunk]
            p = torch.exp(h @ wc.t() - lse[:, None])  # softmax restricted to this chunk
            grad_h += p @ wc
            grad_w[start : start + ctx.chunk] = p.t() @ h
        grad_h -= w[targets]
        grad_w.index_add_(0, targets, -h)
        grad_h = (grad_h * scale).to(hidden.dtype) if ctx.needs_input_grad[0] else None
        grad_w = (grad_w * scale).to(weight.dtype) if ctx.needs_input_grad[1] else None
        return grad_h, grad_w, None, None


def chunked_ce(hidden: Tensor, weight: Tensor, targets: Tensor, chunk: int = 8192) -> Tensor:
    """Exact mean cross-entropy like :func:`full_ce`, computed ``chunk`` items at a time."""
    if chunk < 1:
        raise ValueError(f"chunked_ce: chunk must be >= 1, got {chunk}")
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0 + weight.sum() * 0.0
    with torch.autocast(device_type=hidden.device.type, enabled=False):
        return _ChunkedCE.apply(hidden, weight, targets, int(chunk))


def sample_negatives(
    n: int, n_items: int, probs: Tensor | None = None, device: torch.device | None = None
) -> tuple[Tensor, Tensor]:
    """Draw ``n`` negatives (with replacement) among rows ``0..n_items-1``.

    Uniform when ``probs`` is None, else proportional to ``probs [n_items]``.
    Returns ``(indices int64 [n], log_q float32 [n_items])`` where ``log_q`` is the log
    sampling probability of every item (for the log-q correction).
    """
    if probs is None:
        idx = torch.randint(0, n_items, (n,), device=device)
        log_q = torch.full((n_items,), -float(torch.log(torch.tensor(float(n_items)))), device=device)
        return idx, log_q
    p = probs.float().clamp_min(0)
    p = p / p.sum()
    idx = torch.multinomial(p, n, replacement=True)
    return idx, torch.log(p.clamp_min(1e-30))


def sampled_softmax_ce(hidden: Tensor, weight: Tensor, targets: Tensor, negatives: Tensor, log_q: Tensor) -> Tensor:
    """Sampled softmax with log-q correction and shared negatives.

    ``negatives`` are row indices into ``weight`` shared by all positions, ``log_q [V]``
    the log sampling probability of every row. Each logit ``s`` becomes ``s - log_q``
    (for the positive too); negatives equal to the row's positive are masked out.
    """
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0 + weight.sum() * 0.0
    pos = (hidden * weight[targets]).sum(dim=1, keepdim=True) - log_q[targets][:, None]
    neg = hidden @ weight[negatives].t() - log_q[negatives][None, :]
    neg = neg.float().masked_fill(negatives[None, :] == targets[:, None], float("-inf"))
    logits = torch.cat([pos.float(), neg], dim=1)
    return F.cross_entropy(logits, torch.zeros_like(targets))
