"""Full softmax cross-entropy, forward + backward: seqdistill's row-blocked fused ``full_ce`` vs
``F.cross_entropy`` on the materialised logits (the usual PyTorch way), same inputs, same run.

Cases are ``positions x items x hidden``; the default ones are a SASRec batch on ML-1M
(128 x 200 positions, 3,706 items, hidden 64) and a larger catalogue. The loss and both
gradients are compared (``same_result``: allclose at float32 tolerance); the peak resident memory
above the start is sampled for both.

    python benches/losses.py [--cases 25600x3706x64,8192x40000x64] [--repeat 3] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from _common import PeakMemory, machine, write_json  # noqa: E402

from seqdistill.models import full_ce  # noqa: E402


def run(fn, h: torch.Tensor, w: torch.Tensor, t: torch.Tensor, repeat: int):
    best, peak = float("inf"), 0
    for _ in range(repeat):
        hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            loss = fn(hh, ww, t)
            loss.backward()
            best = min(best, time.perf_counter() - t0)
        peak = max(peak, mem.max - mem.start)
    return best, peak, loss.detach(), hh.grad, ww.grad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="25600x3706x64,8192x40000x64")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}; torch threads {args.threads}")
    rows = []
    for case in args.cases.split(","):
        n, v, d = (int(x) for x in case.split("x"))
        g = torch.Generator().manual_seed(0)
        h = torch.randn(n, d, generator=g)
        w = torch.randn(v, d, generator=g) * 0.1
        t = torch.randint(0, v, (n,), generator=g)
        ours_s, ours_mem, l1, gh1, gw1 = run(full_ce, h, w, t, args.repeat)
        base_s, base_mem, l2, gh2, gw2 = run(lambda a, b, c: F.cross_entropy(a @ b.t(), c), h, w, t, args.repeat)
        same = bool(
            torch.allclose(l1, l2, rtol=1e-5, atol=1e-6)
            and torch.allclose(gh1, gh2, rtol=1e-4, atol=1e-7)
            and torch.allclose(gw1, gw2, rtol=1e-4, atol=1e-7)
        )
        print(
            f"{case}: full_ce {ours_s:.3f} s (peak +{ours_mem / 2**20:.0f} MiB) | F.cross_entropy {base_s:.3f} s "
            f"(peak +{base_mem / 2**20:.0f} MiB) | ratio {base_s / ours_s:.2f}x | same result: {same}"
        )
        rows.append(
            {
                "case": f"{case} fwd+bwd",
                "ours_s": round(ours_s, 4),
                "baseline": "F.cross_entropy on full logits",
                "baseline_s": round(base_s, 4),
                "ratio": round(base_s / ours_s, 3),
                "same_result": same,
                "ours_peak_mib": round(ours_mem / 2**20, 1),
                "baseline_peak_mib": round(base_mem / 2**20, 1),
            }
        )
    write_json(args.json, "losses", rows)


if __name__ == "__main__":
    main()
