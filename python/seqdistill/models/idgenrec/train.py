"""IDGenRec's alternating training (Tan et al., SIGIR 2024, Section 3.3).

A round trains one model with the other frozen, then the other (``first = "id"``: the generator
first, as the paper's runs do), ``rounds`` times:

- recommender epoch: every training transition of every user (the history before position ``t``
  of the training prefix, the item at ``t`` as target) once, in a seeded random order; loss: the
  cross-entropy of the target's ID tokens and the end token (T5's seq2seq loss);
- generator epoch: the same transitions; the IDs of the history items are not looked up but
  produced by the generator, softly: for every token of an item's current ID the generator's
  distribution over the vocabulary (teacher-forced on that ID) times the recommender's embedding
  table is the input embedding, so the recommender's loss on the target reaches the generator.
  The released code decodes a fresh greedy ID with gradients instead; teacher forcing keeps the
  soft IDs aligned token by token with the IDs the recommender was trained on. After the
  generator's epochs every item's ID is generated again (:meth:`IDGenRec.assign_ids`).

Each model has its own AdamW and a linear schedule (``warmup`` of the steps rising, then falling
to zero over all its rounds) and gradient clipping. Every epoch adds a row to the history:
``{"round", "phase", "epoch", "loss", "seconds"}`` (seconds of that epoch's training alone), and
every regeneration of the IDs a row with ``phase = "assign"``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqdistill.errors import DataError, TrainingError

from .config import IDGenRecConfig
from .ids import text_inputs
from .model import IDGenRec, item_texts

__all__ = ["Transitions", "fit_idgenrec", "generator_epoch", "recommender_epoch", "training_transitions"]


class Transitions:
    """Every ``(history, target)`` of the users' training prefixes with at least one item before it."""

    def __init__(self, offsets: np.ndarray, items: np.ndarray, train_end: np.ndarray) -> None:
        self.offsets, self.items = np.asarray(offsets, dtype=np.int64), np.asarray(items, dtype=np.int64)
        users, pos = [], []
        for u, n in enumerate(np.asarray(train_end, dtype=np.int64).tolist()):
            if n >= 2:
                users.append(np.full(n - 1, u, dtype=np.int64))
                pos.append(np.arange(1, n, dtype=np.int64))
        self.users = np.concatenate(users) if users else np.zeros(0, dtype=np.int64)
        self.pos = np.concatenate(pos) if pos else np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.users)

    def batch(self, idx: np.ndarray, max_his: int) -> tuple[list[list[int]], list[int]]:
        """Histories (the last ``max_his`` items before each target) and targets of rows ``idx``."""
        hist, tgt = [], []
        for u, p in zip(self.users[idx].tolist(), self.pos[idx].tolist()):
            start = int(self.offsets[u])
            hist.append(self.items[start + max(0, p - max_his) : start + p].tolist())
            tgt.append(int(self.items[start + p]))
        return hist, tgt


def training_transitions(ds: Any) -> Transitions:
    """The training transitions of a prepared dataset (refused when there are none)."""
    tr = Transitions(ds.offsets, ds.items, ds.train_end)
    if not len(tr):
        raise DataError(f"IDGenRec: dataset {ds.name!r} has no user with two training interactions")
    return tr


def _optimizer(params, lr: float, cfg: IDGenRecConfig, total_steps: int):
    opt = torch.optim.AdamW([p for p in params if p.requires_grad], lr=lr, weight_decay=cfg.weight_decay)
    warm = int(cfg.warmup * total_steps)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _step(loss: torch.Tensor, params, opt, sched, clip: float, phase: str) -> float:
    value = float(loss.detach())
    if not np.isfinite(value):
        raise TrainingError(f"IDGenRec: the {phase} loss became {value}; lower the learning rate")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    sched.step()
    return value


def recommender_epoch(model: IDGenRec, tr: Transitions, rng: np.random.Generator, opt, sched) -> float:
    """One pass of the recommender over ``tr``; the mean batch loss."""
    cfg, net = model.config, model.recommender
    net.train()
    losses = []
    order = rng.permutation(len(tr))
    for s in range(0, len(order), cfg.rec_batch_size):
        hist, tgt = tr.batch(order[s : s + cfg.rec_batch_size], cfg.max_his)
        ids, mask = model.batch(hist)
        loss = net(input_ids=ids, attention_mask=mask, labels=model.labels(tgt)).loss
        losses.append(_step(loss, list(net.parameters()), opt, sched, cfg.grad_clip, "recommender"))
    return float(np.mean(losses))


def _soft_ids(model: IDGenRec, items: list[int]) -> torch.Tensor:
    """``[len(items), T, d]``: per ID token, the generator's distribution (teacher-forced on the
    current ID) times the recommender's embedding table."""
    tok, cfg = model.tokenizer, model.config
    ids, mask = text_inputs(tok, [model.texts[i] for i in items], cfg.max_text_tokens, model.device)
    labels = model.labels(items)
    logits = model.generator(input_ids=ids, attention_mask=mask, labels=labels).logits
    return torch.softmax(logits.float(), -1) @ model.recommender.get_input_embeddings().weight.float()


def _soft_inputs(model: IDGenRec, hist: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Input embeddings of ``hist`` with every ID token replaced by its soft embedding."""
    ids, mask = model.batch(hist)
    emb = model.recommender.get_input_embeddings()(ids).float()
    uniq = sorted({int(i) for h in hist for i in h[-model.config.max_his :]})
    if not uniq:
        return emb, mask
    soft = _soft_ids(model, uniq)
    slot = {item: k for k, item in enumerate(uniq)}
    rows, cols, us, js = [], [], [], []
    for r, h in enumerate(hist):
        p = 0
        for item in h[-model.config.max_his :]:
            n = len(model.keys[int(item)])
            rows += [r] * n
            cols += range(p, p + n)
            us += [slot[int(item)]] * n
            js += range(n)
            p += n + 1  # the ID, then the separator
    dev = emb.device
    emb = emb.index_put((torch.tensor(rows, device=dev), torch.tensor(cols, device=dev)), soft[us, js])
    return emb, mask


def generator_epoch(model: IDGenRec, tr: Transitions, rng: np.random.Generator, opt, sched) -> float:
    """One pass of the generator over ``tr`` through the frozen recommender; the mean batch loss."""
    cfg, gen, rec = model.config, model.generator, model.recommender
    gen.train()
    rec.eval()  # frozen: no dropout noise in the signal the generator learns from
    losses = []
    order = rng.permutation(len(tr))
    for s in range(0, len(order), cfg.id_batch_size):
        hist, tgt = tr.batch(order[s : s + cfg.id_batch_size], cfg.max_his)
        emb, mask = _soft_inputs(model, hist)
        loss = rec(inputs_embeds=emb, attention_mask=mask, labels=model.labels(tgt)).loss
        losses.append(_step(loss, list(gen.parameters()), opt, sched, cfg.grad_clip, "generator"))
    return float(np.mean(losses))


def _frozen(net, frozen: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(not frozen)


def _schedule(config: IDGenRecConfig) -> list[tuple[int, str, int]]:
    """The steps of a run in order: ``(round, phase, epoch)``; phase ``"assign"`` (epoch 0)
    regenerates the IDs after a round's generator epochs."""
    order = ("id", "rec") if config.first == "id" else ("rec", "id")
    steps = []
    for rnd in range(1, config.rounds + 1):
        for phase in order:
            epochs = config.id_epochs if phase == "id" else config.rec_epochs
            steps += [(rnd, phase, ep) for ep in range(1, epochs + 1)]
            if phase == "id" and epochs:
                steps.append((rnd, "assign", 0))
    return steps


def _run_step(model: IDGenRec, tr: Transitions, rng, optims: dict[str, tuple], phase: str) -> float | None:
    _frozen(model.generator, phase != "id")
    _frozen(model.recommender, phase == "id")
    try:
        if phase == "assign":
            model.assign_ids()
            return None
        epoch = generator_epoch if phase == "id" else recommender_epoch
        return epoch(model, tr, rng, *optims[phase])
    finally:
        _frozen(model.generator, False)
        _frozen(model.recommender, False)


def fit_idgenrec(
    ds: Any,
    config: IDGenRecConfig,
    progress: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    run_dir: str | os.PathLike | None = None,
) -> tuple[IDGenRec, list[dict[str, Any]]]:
    """Build IDGenRec for a prepared dataset and train it (see the module doc).

    With ``run_dir``, a checkpoint is written there after every step
    (:mod:`.checkpoint`) and a run interrupted earlier continues from its last finished step,
    with the same result as an uninterrupted one. ``on_epoch`` sees every history row as it is
    added. Returns the model (IDs assigned, on the configured device) and the per-step history:
    ``{"round", "phase", "epoch", "loss", "seconds"}`` per epoch, and ``phase = "assign"`` rows
    (``seconds`` of regenerating every ID, no loss)."""
    from seqdistill.training.trainer import resolve_device, seed_everything

    from . import checkpoint as ckpt

    device = resolve_device(config.device)
    seed_everything(config.seed)
    texts = item_texts(ds, config.missing_text)
    tr = training_transitions(ds)
    fingerprint = ds.fingerprint()
    state = ckpt.read_state(Path(run_dir), config, fingerprint) if run_dir is not None else None
    if state is None:
        model = IDGenRec.create(config, texts, ds.item_ids).to(device)
        model.assign_ids()
    else:
        model = state["model"].to(device)
    rng = np.random.default_rng([config.seed, 0x1D6E])
    n_rec = -(-len(tr) // config.rec_batch_size) * config.rec_epochs * config.rounds
    n_id = -(-len(tr) // config.id_batch_size) * config.id_epochs * config.rounds
    optims = {
        "rec": _optimizer(model.recommender.parameters(), config.rec_lr, config, max(1, n_rec)),
        "id": _optimizer(model.generator.parameters(), config.id_lr, config, max(1, n_id)),
    }
    history: list[dict[str, Any]] = []
    done = 0
    if state is not None:
        ckpt.restore(state, optims, rng)
        history, done = list(state["history"]), int(state["done"])
    for i, (rnd, phase, ep) in enumerate(_schedule(config)):
        if i < done:
            continue
        t0 = time.perf_counter()
        loss = _run_step(model, tr, rng, optims, phase)
        row = {"round": rnd, "phase": phase, "epoch": ep, "loss": loss, "seconds": time.perf_counter() - t0}
        if phase == "assign":
            del row["loss"]
        history.append(row)
        if run_dir is not None:
            ckpt.write_state(Path(run_dir), model, i + 1, history, optims, rng, fingerprint)
        if on_epoch is not None:
            on_epoch(row)
        if progress:
            what = "IDs regenerated" if loss is None else f"loss {loss:.4f}"
            print(f"idgenrec round {rnd} {phase} {ep}: {what} ({row['seconds']:.1f}s)", flush=True)
    return model, history
