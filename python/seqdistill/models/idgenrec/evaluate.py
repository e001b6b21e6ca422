"""IDGenRec evaluated like every other model here: the same rows, the same seen sets, the same metrics.

The rows, their histories, targets and seen items come from
:func:`seqdistill.data.sequences.eval_inputs` (what :func:`seqdistill.evaluation.evaluate` ranks);
the top-k lists are the constrained beam search's items in beam-score order, and the metrics are
computed from those lists by the Rust core (:func:`seqdistill.core.topk_metrics_from_ids`, the
function the torch selection path of ``evaluate`` uses). A row whose target the beam did not reach
has it at no rank, exactly as a target ranked below k. ``filter_seen=True`` removes the row's
history from the candidates (the search never enters a branch of seen items only), as
``evaluate(filter_seen=True)`` does; ``False`` (the paper's protocol) keeps them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from seqdistill import core
from seqdistill.errors import ConfigError
from seqdistill.evaluation import EvalResult, _check_ks, _means

from .model import IDGenRec

__all__ = ["evaluate_idgenrec"]


def evaluate_idgenrec(
    model: IDGenRec,
    ds,
    part: str = "test",
    ks: Sequence[int] = (5, 10, 20),
    filter_seen: bool = False,
    beams: int | None = None,
    return_topk: bool = False,
) -> EvalResult:
    """NDCG/Recall/HitRate/MRR@k of ``model`` on the ``part`` targets of ``ds`` (an
    :class:`~seqdistill.evaluation.EvalResult`, keys ``"ndcg@10"`` etc.).

    ``beams`` (default: the config's ``num_beams``, or ``max(ks)``) is the beam width; it must
    be at least ``max(ks)`` and at most the catalogue size."""
    from seqdistill.data.sequences import eval_inputs

    ks = _check_ks(ks)
    if ds.n_items != model.n_items:
        raise ConfigError(f"evaluate: model has {model.n_items} items but dataset {ds.name!r} has {ds.n_items}")
    if max(ks) > model.n_items:
        raise ConfigError(f"evaluate: cut-off k = {max(ks)} exceeds the catalogue of {model.n_items} items")
    width = beams if beams is not None else model.config.beams_for(ks)
    if not max(ks) <= width <= model.n_items:
        raise ConfigError(f"evaluate: beams = {width} must lie in [max(ks) = {max(ks)}, n_items = {model.n_items}]")
    t0 = time.perf_counter()
    inp = eval_inputs(ds, part, model.config.max_his)
    histories = [row[row > 0].tolist() for row in inp.windows]
    seen = None
    if filter_seen:
        off, items = inp.seen_offsets, inp.seen_items
        seen = [items[off[i] : off[i + 1]].tolist() for i in range(len(histories))]
    t1 = time.perf_counter()
    top, _ = model.rank(histories, width, seen)
    forward_s = time.perf_counter() - t1
    top = np.ascontiguousarray(top[:, : max(ks)])
    res = core.topk_metrics_from_ids(top, ks, np.arange(len(top) + 1, dtype=np.int64), inp.targets)
    per_row = {key: res[key] for key in res.keys()}
    settings = {"part": part, "ks": ks, "filter_seen": filter_seen, "max_len": model.config.max_his, "beams": width}
    timings = {"forward_s": forward_s, "total_s": time.perf_counter() - t0}
    return EvalResult(
        _means(per_row, len(inp.users)),
        per_row,
        inp.users,
        inp.targets,
        top if return_topk else None,
        settings,
        timings,
    )
