"""Recovery training (ReTok-style): only the input embeddings and the LM head learn.

What it does:

- `pack(docs, seq_len, bos=...)`: token ids of documents (each with BOS, and EOS when the
  tokenizer has one) concatenated and cut into fixed-length sequences, each starting with BOS
  (the last partial one is dropped).
- `train(model, seqs, ac, ...)`: AdamW on the input embedding, the LM head and its bias (one
  matrix when tied); every other parameter is frozen (``requires_grad = False``) and is
  bit-identical afterwards. The learning rate warms up linearly over ``warmup_share`` of the
  planned steps and decays on a cosine to ``min_lr_share`` of the peak; gradients are
  accumulated over ``grad_accum`` micro-batches and clipped to norm 1. The planned steps
  follow the token budget (``train_tokens``); ``max_seconds`` (wall clock, summed over
  resumes) may stop earlier, and then the schedule follows the clock (`progress`: whichever
  budget is further used up), so a short budget still warms up and decays; the run is then
  no longer bit-for-bit repeatable (it depends on the machine's speed). The loss is the
  cross entropy over the model's real vocabulary rows (padding rows never train), over every
  token but BOS (``ignore_id``: a packed document's BOS only separates it from the previous
  one, as at evaluation, where each document is read after its BOS and nothing predicts it).
  Held-out bits per byte (``evaluate(model)``) are measured before the first step, every
  ``eval_every`` steps and at the end; with ``patience`` the run stops after that many
  evaluations without improvement, and the best evaluated weights are the result.
- Checkpoints: every ``checkpoint_every`` steps the trainable tensors, the optimizer state, the
  step, the curves and the best weights are written to ``ckpt/state.pt`` (temporary file +
  rename: a ``kill -9`` leaves the previous checkpoint whole). `train` resumes from a
  checkpoint written with the same ``key``; a run resumed after an interruption ends with the
  same weights as an uninterrupted one (the sequence order is a function of the seed and the
  step, and no randomness enters a step).

The model runs in eval mode (no dropout) on ``device``: CPU, or CUDA when present (the same
code path); the checkpoint is always stored on the CPU. ``[adapt] precision``
(`resolve_precision`) runs the forward and backward passes under bfloat16 autocast (matrix
products in bf16; the weights, their gradients, the optimizer and the loss stay fp32) where
the device computes bf16 natively; the resolved precision is part of the checkpoint key, so a
run never resumes in another arithmetic.

What it does not do: it does not read artifacts, tokenize or save the model (`pipeline.adapt`).
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

CHECKPOINT = "state.pt"


def pack(docs: Iterable[list[int]], seq_len: int, max_sequences: int | None = None,
         bos: int | None = None) -> np.ndarray:
    """``(n, seq_len)`` int64 array of the concatenated documents (module docstring). With
    ``bos``, every sequence starts with it (models such as Gemma are far worse without a
    leading BOS), followed by the next ``seq_len - 1`` tokens of the stream (a BOS that would
    follow it directly is skipped)."""
    head = [] if bos is None else [bos]
    body = seq_len - len(head)
    buf: list[int] = []
    rows: list[np.ndarray] = []
    for ids in docs:
        buf.extend(ids)
        while len(buf) > body:
            if head and buf[0] == bos:
                del buf[0]
                continue
            rows.append(np.asarray(head + buf[:body], dtype=np.int64))
            del buf[:body]
            if max_sequences is not None and len(rows) >= max_sequences:
                return np.stack(rows)
    return np.stack(rows) if rows else np.zeros((0, seq_len), dtype=np.int64)


@functools.lru_cache(maxsize=4)
def sequence_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order in which the ``n`` sequences are read in ``epoch`` (seeded per epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def trainable_parameters(model) -> list:
    """The input embedding, the LM head and its bias: each parameter once (tied: one)."""
    out, seen = [], set()
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    for p in (emb.weight, getattr(head, "weight", None), getattr(head, "bias", None)):
        if p is not None and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def freeze_all_but_vocab(model) -> list:
    """Set ``requires_grad`` on the vocabulary parameters only; return them."""
    train = trainable_parameters(model)
    ids = {id(p) for p in train}
    for p in model.parameters():
        p.requires_grad_(id(p) in ids)
    return train


def progress(step: int, total: int, seconds: float, ac) -> float:
    """How far the run is, in (0, 1], at optimizer step ``step`` (0-based): the share of the
    planned steps done once it is taken, or, with a wall-clock budget, the share of that
    budget used if larger (so the schedule ends when the budget does)."""
    p = (step + 1) / total
    if ac.max_seconds:
        p = max(p, seconds / ac.max_seconds)
    return min(p, 1.0)


def lr_at(p: float, ac) -> float:
    """Learning rate at progress ``p``: linear warm-up over ``warmup_share``, then a cosine
    decay to ``min_lr_share`` of the peak."""
    if p < ac.warmup_share:
        return ac.lr * p / ac.warmup_share
    t = (p - ac.warmup_share) / max(1e-9, 1 - ac.warmup_share)
    return ac.lr * (ac.min_lr_share + (1 - ac.min_lr_share) * 0.5 * (1 + math.cos(math.pi * t)))


def resolve_precision(name: str, device: str) -> str:
    """``fp32`` or ``bf16`` for ``[adapt] precision`` on ``device``: ``auto`` is bf16 where the
    device has native bf16 arithmetic (CUDA with bf16; a CPU with AVX512-BF16 or AMX, as oneDNN
    reports it), else fp32."""
    import torch

    if name != "auto":
        return name
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        native = False
    return "bf16" if native else "fp32"


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        from .errors import InputError

        raise InputError("[adapt] device = \"cuda\" but no CUDA device is available. Set "
                         "[adapt] device = \"auto\" or \"cpu\".")
    return name


@dataclass
class TrainState:
    step: int = 0
    tokens: int = 0
    seconds: float = 0.0
    curve: list = field(default_factory=list)   # [step, tokens, loss, lr]
    evals: list = field(default_factory=list)   # [step, held-out bits per byte]
    best_bpb: float | None = None
    best_step: int = 0
    bad_evals: int = 0
    stopped: str = ""
    precision: str = "fp32"
    resumed_from: int | None = None


def train(model, seqs: np.ndarray, ac, *, real_rows: int, evaluate: Callable,
          ckpt: Path | None, key: str, device: str = "cpu", say=lambda m: None,
          on_step: Callable[[int], None] | None = None,
          ignore_id: int | None = None, frozen_rows: int = 0) -> TrainState:
    """Train ``model`` in place (module docstring); return what happened.

    ``seqs``: packed sequences; ``real_rows``: logits past it are padding; ``evaluate(model)``:
    held-out bits per byte; ``ckpt``: checkpoint folder (None: none); ``key``: what the
    checkpoint must have been written for (the stage fingerprint); ``on_step(step)`` is
    called after every optimizer step (tests interrupt a run with it); ``ignore_id``: a token
    never predicted (BOS, which only separates packed documents); ``frozen_rows``: the first
    rows of every vocabulary parameter that must not change (``[adapt] train_rows = "new"``:
    the kept vocabulary): their gradients are zeroed before clipping and their values are
    restored after each optimizer step (weight decay would move them otherwise).
    """
    import torch

    if len(seqs) == 0:
        from .errors import InputError

        raise InputError(f"The train split has fewer than [adapt] seq_len = {ac.seq_len} "
                         "tokens, so no training sequence can be packed. Lower [adapt] seq_len "
                         "or count a larger corpus.")
    model.to(device)
    model.eval()
    st_precision = resolve_precision(ac.precision, device)
    key = f"{key}/{st_precision}"
    params = freeze_all_but_vocab(model)
    keep = [p.detach()[:frozen_rows].clone() for p in params] if frozen_rows else None
    opt = torch.optim.AdamW(params, lr=ac.lr, betas=(0.9, 0.95), eps=ac.adam_eps,
                            weight_decay=ac.weight_decay)
    per_step = ac.batch_size * ac.grad_accum
    total = max(1, ac.train_tokens // (per_step * ac.seq_len))
    st, best = _resume(ckpt, key, params, opt)
    st.precision = st_precision
    if st.step == 0 and not st.evals:
        st.best_bpb = evaluate(model)
        st.evals.append([0, st.best_bpb])
        best = [p.detach().cpu().clone() for p in params]
    t0 = time.time() - st.seconds
    say(f"[adapt] training {total} steps of {per_step * ac.seq_len:,} tokens on {device}"
        + (f", resumed at step {st.step}" if st.resumed_from is not None else ""))
    while st.step < total and not st.stopped:
        if ac.max_seconds and time.time() - t0 >= ac.max_seconds:
            st.stopped = "wall-clock budget"
            break
        lr = lr_at(progress(st.step, total, time.time() - t0, ac), ac)
        loss = _step(model, opt, params, seqs, st.step, ac, real_rows, device, lr, ignore_id,
                     keep, st.precision)
        st.step += 1
        st.tokens += per_step * ac.seq_len
        st.curve.append([st.step, st.tokens, round(loss, 6), lr])
        if st.step % ac.eval_every == 0 or st.step == total:
            best = _evaluate(model, params, st, ac, evaluate, best, say)
        st.seconds = time.time() - t0
        if ckpt is not None and (st.step % ac.checkpoint_every == 0 or st.stopped):
            _save(ckpt, key, params, opt, st, best)
        if on_step is not None:
            on_step(st.step)
    st.stopped = st.stopped or "token budget"
    if st.evals[-1][0] != st.step:  # stopped by the clock between evaluations
        best = _evaluate(model, params, st, ac, evaluate, best, say)
    st.seconds = time.time() - t0
    if best is not None and st.best_step != st.step:
        with torch.no_grad():  # the best evaluated weights are the result
            for p, b in zip(params, best):
                p.copy_(b.to(p.device))
    for p in model.parameters():
        p.requires_grad_(False)
    return st


def _step(model, opt, params, seqs, step: int, ac, real_rows: int, device: str,
          lr: float, ignore_id: int | None = None, keep: list | None = None,
          precision: str = "fp32") -> float:
    import torch

    total_loss = 0.0
    for micro in range(ac.grad_accum):
        x = torch.as_tensor(_batch(seqs, step, micro, ac), device=device)
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16,
                            enabled=precision == "bf16"):
            logits = model(input_ids=x, use_cache=False).logits[..., :real_rows]
        target = x[:, 1:].reshape(-1)
        if ignore_id is not None:
            target = target.masked_fill(target == ignore_id, -100)
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]).float(), target, ignore_index=-100)
        (loss / ac.grad_accum).backward()
        total_loss += float(loss.detach()) / ac.grad_accum
    if keep is not None:  # frozen rows: no gradient (nor a share of the clipping norm)
        for p, k in zip(params, keep):
            p.grad[:len(k)] = 0
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    for g in opt.param_groups:
        g["lr"] = lr
    opt.step()
    opt.zero_grad(set_to_none=True)
    if keep is not None:  # and no weight decay
        with torch.no_grad():
            for p, k in zip(params, keep):
                p[:len(k)] = k
    return total_loss


def _batch(seqs: np.ndarray, step: int, micro: int, ac) -> np.ndarray:
    """The sequences of micro-batch ``micro`` of optimizer step ``step``: a function of the
    seed and the position only (so a resumed run reads what an uninterrupted one would)."""
    n = len(seqs)
    start = (step * ac.grad_accum + micro) * ac.batch_size
    idx = []
    for k in range(start, start + ac.batch_size):
        epoch, pos = divmod(k, n)
        idx.append(sequence_order(n, ac.seed, epoch)[pos])
    return seqs[idx]


def _evaluate(model, params, st: TrainState, ac, evaluate, best, say):
    bpb = evaluate(model)
    st.evals.append([st.step, bpb])
    say(f"[adapt] step {st.step}: loss {st.curve[-1][2]:.4f}, held-out bits/byte {bpb}")
    if st.best_bpb is None or (bpb is not None and bpb < st.best_bpb):
        st.best_bpb, st.best_step, st.bad_evals = bpb, st.step, 0
        return [p.detach().cpu().clone() for p in params]
    st.bad_evals += 1
    if ac.patience and st.bad_evals >= ac.patience and not st.stopped:
        st.stopped = "early stopping"
    return best


def _save(ckpt: Path, key: str, params, opt, st: TrainState, best) -> None:
    import torch

    ckpt.mkdir(parents=True, exist_ok=True)
    tmp = ckpt / f".{CHECKPOINT}.tmp-{os.getpid()}"
    torch.save({"key": key, "params": [p.detach().cpu() for p in params],
                "optimizer": opt.state_dict(), "state": vars(st).copy(), "best": best}, tmp)
    os.replace(tmp, ckpt / CHECKPOINT)


def _resume(ckpt: Path | None, key: str, params, opt):
    """(state, best weights) of a checkpoint written for ``key``; a fresh state otherwise."""
    import torch

    f = None if ckpt is None else ckpt / CHECKPOINT
    if f is None or not f.is_file():
        return TrainState(), None
    try:
        data = torch.load(f, map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001 - a damaged checkpoint: start over
        return TrainState(), None
    if data.get("key") != key or len(data["params"]) != len(params) or any(
            a.shape != b.shape for a, b in zip(data["params"], params)):
        return TrainState(), None
    with torch.no_grad():
        for p, saved in zip(params, data["params"]):
            p.copy_(saved.to(p.device))
    opt.load_state_dict(data["optimizer"])
    st = TrainState(**data["state"])
    st.resumed_from = st.step
    return st, data["best"]
