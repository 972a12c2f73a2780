"""Check a pruned model against its original, on token sequences both can represent.

What it does:
- `max_abs_logit_diff`: runs both models (fp32, no grad, eval mode) on sequences of ORIGINAL
  token ids that are all in the kept set, and returns the largest absolute difference
  between ``orig_logits[..., kept_old_ids]`` and ``pruned_logits[..., :len(kept_old_ids)]``.
  Pruning only removes rows, so on such sequences the two must agree to float rounding.
- `greedy_agreement`: greedy-decodes a few steps from each prompt with both models. The
  pruned model can only emit kept tokens, so it is compared with the original restricted to
  kept tokens (which must agree 100%); it also reports how often the original's unrestricted
  argmax was a kept token (information about the kept set, not a pass/fail check).
- `param_counts`, `bytes_on_disk`: size helpers for reports.

What it does not do: it does not tokenize text (callers pass id sequences, see
`kept_sequences` to drop ones with pruned tokens), it does not compare the tokenizers, and
it never compares padded rows (rows past ``len(kept_old_ids)``, see
`pipeline.surgery.model`), which no token id maps to.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

DEFAULT_MAX_TOKENS = 4096


def kept_sequences(input_ids_list: Iterable[Sequence[int]], id_map) -> list[list[int]]:
    """The sequences (original ids) whose tokens are all kept (``id_map[t] >= 0``)."""
    id_map = np.asarray(id_map, dtype=np.int64)
    out = []
    for seq in input_ids_list:
        ids = np.asarray(seq, dtype=np.int64)
        if ids.size and np.all((ids >= 0) & (ids < len(id_map))) and np.all(id_map[ids] >= 0):
            out.append(ids.tolist())
    return out


def _to_new_ids(seq: Sequence[int], id_map: np.ndarray, index: int) -> list[int]:
    ids = np.asarray(seq, dtype=np.int64)
    if ids.size == 0:
        raise ValueError(f"sequence {index} is empty")
    if ids.min() < 0 or ids.max() >= len(id_map):
        raise ValueError(f"sequence {index} has ids outside the original vocabulary")
    new = id_map[ids]
    if np.any(new < 0):
        bad = int(ids[np.argmax(new < 0)])
        raise ValueError(
            f"sequence {index} contains original id {bad}, which was pruned; pass only "
            "sequences whose tokens are all kept (see kept_sequences)"
        )
    return new.tolist()


@contextlib.contextmanager
def _eval_fp32(*models):
    """Put models in eval mode for the block (restoring training flags); require fp32."""
    for m in models:
        if m.dtype != torch.float32:
            raise ValueError(
                f"{type(m).__name__} is in {m.dtype}; exact verification needs fp32. Load it "
                "with dtype=torch.float32."
            )
    flags = [m.training for m in models]
    try:
        for m in models:
            m.eval()
        with torch.no_grad():
            yield
    finally:
        for m, flag in zip(models, flags):
            m.train(flag)


def _logits(model, ids: list[int]) -> torch.Tensor:
    device = model.get_input_embeddings().weight.device
    x = torch.tensor([ids], dtype=torch.long, device=device)
    return model(input_ids=x, use_cache=False).logits[0].float()


def max_abs_logit_diff(orig, pruned, kept_old_ids, id_map, input_ids_list, *,
                       max_tokens: int = DEFAULT_MAX_TOKENS) -> float:
    """Largest ``|orig_logits[..., kept] - pruned_logits[..., :n_kept]|`` over all positions.

    ``input_ids_list``: sequences of ORIGINAL ids, every token kept (else `ValueError`).
    At most ``max_tokens`` tokens are run in total (later sequences are cut, then skipped).
    """
    id_map = np.asarray(id_map, dtype=np.int64)
    kept = torch.as_tensor(np.asarray(kept_old_ids, dtype=np.int64))
    n_kept = kept.numel()
    worst, budget, ran = 0.0, int(max_tokens), 0
    with _eval_fp32(orig, pruned):
        for i, seq in enumerate(input_ids_list):
            if budget <= 0:
                break
            seq = list(seq)[:budget]
            new_seq = _to_new_ids(seq, id_map, i)
            lo = _logits(orig, seq)[:, kept.to(orig.device)]
            lp = _logits(pruned, new_seq)[:, :n_kept]
            worst = max(worst, float((lo.cpu() - lp.cpu()).abs().max()))
            budget -= len(seq)
            ran += 1
    if ran == 0:
        raise ValueError("no sequences to compare (input_ids_list is empty or max_tokens < 1)")
    return worst


def greedy_agreement(orig, pruned, kept_old_ids, id_map, prompts, steps: int = 8) -> dict:
    """Greedy-decode ``steps`` tokens from each prompt (original ids, all kept) with both
    models, with KV cache.

    The original is decoded restricted to kept tokens (argmax over ``logits[kept_old_ids]``)
    and the pruned model over its real rows (``logits[:n_kept]``), each on its own output.
    Returns ``{"steps", "agree_restricted", "orig_argmax_kept"}``: the share of steps where the
    pruned model picked the same token (mapped back to old ids) as the restricted original
    (must be 1.0), and the share where the original's UNRESTRICTED argmax was a kept token.
    """
    id_map = np.asarray(id_map, dtype=np.int64)
    kept_np = np.asarray(kept_old_ids, dtype=np.int64)
    kept = torch.as_tensor(kept_np)
    n_kept = len(kept_np)
    total = agree = orig_kept = 0
    with _eval_fp32(orig, pruned):
        for i, prompt in enumerate(prompts):
            new_prompt = _to_new_ids(prompt, id_map, i)
            o_steps = _greedy(orig, list(prompt), steps, lambda lg: lg[kept.to(lg.device)])
            p_steps = _greedy(pruned, new_prompt, steps, lambda lg: lg[:n_kept])
            for (o_pick, o_raw), (p_pick, _) in zip(o_steps, p_steps):
                old_pick = int(kept_np[o_pick])
                total += 1
                agree += int(kept_np[p_pick]) == old_pick
                orig_kept += int(id_map[o_raw] >= 0)
    if total == 0:
        raise ValueError("no prompts or steps < 1: nothing was decoded")
    return {"steps": total, "agree_restricted": agree / total,
            "orig_argmax_kept": orig_kept / total}


def _greedy(model, ids: list[int], steps: int, restrict) -> list[tuple[int, int]]:
    """Greedy decode; per step return (argmax index in the restricted logits, raw argmax id).
    The token fed back is the model's own id for the restricted pick."""
    device = model.get_input_embeddings().weight.device
    x = torch.tensor([ids], dtype=torch.long, device=device)
    cache_arg = _cache_kwarg(model)
    past, out = None, []
    restricted_ids = None
    for _ in range(steps):
        res = model(input_ids=x, use_cache=True, **{cache_arg: past})
        past = getattr(res, "cache", None)
        if past is None:
            past = getattr(res, "past_key_values", None)
        logits = res.logits[0, -1].float()
        pick = int(torch.argmax(restrict(logits)))
        raw = int(torch.argmax(logits))
        out.append((pick, raw))
        if restricted_ids is None:  # map restricted index -> this model's id
            restricted_ids = torch.arange(logits.shape[-1], device=logits.device)
            restricted_ids = restrict(restricted_ids)
        x = restricted_ids[pick].view(1, 1)
    return out


def _cache_kwarg(model) -> str:
    """transformers >= 5.2x calls the KV-cache argument ``cache``; older ones
    ``past_key_values``."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def param_counts(model) -> dict:
    """Parameter counts: ``total`` (shared tensors once), ``embedding``, ``lm_head`` (0 when
    tied to the embedding), ``other``, and ``tied``."""
    emb = model.get_input_embeddings().weight
    head_mod = model.get_output_embeddings()
    head = head_mod.weight if head_mod is not None else None
    tied = head is not None and (head is emb or head.data_ptr() == emb.data_ptr())
    total = sum(p.numel() for p in model.parameters())  # parameters() dedups shared tensors
    n_emb = emb.numel()
    n_head = 0 if head is None or tied else head.numel()
    if head_mod is not None and getattr(head_mod, "bias", None) is not None:
        n_head += head_mod.bias.numel()
    return {"total": total, "embedding": n_emb, "lm_head": n_head,
            "other": total - n_emb - n_head, "tied": bool(tied)}


def bytes_on_disk(path: str | os.PathLike) -> int:
    """Total size in bytes of the regular files under ``path`` (or of ``path`` itself)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and not f.is_symlink())
