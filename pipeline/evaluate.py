"""Model quality of a pruned model against its original, the way users judge a model.

`model_eval` measures, on a set of documents (the held-out split, or an evaluation set):

``bits_per_byte``
    -log2 p of each document's tokens (after BOS) summed, divided by the document's UTF-8
    bytes; original model with the original tokenizer (``before``) vs pruned model with the
    pruned tokenizer (``after``). Documents are cut at a whitespace before ``max_doc_bytes``,
    so both models read exactly the same text.
``bits_per_byte_identical`` / ``bits_per_byte_changed``
    the same on documents the pruned tokenizer splits exactly like the original (covered:
    every token kept; there the pruned model renormalises over kept tokens, so ``after`` can
    only be lower or equal) and on documents whose tokenization changed.
``top1_agreement``
    share of next-token positions of identical documents where the pruned model's argmax
    (mapped back to old ids) is the original's unrestricted argmax: how often the original
    would have predicted a token the keep set dropped.
``logits``
    largest ``|orig_logits[kept] - pruned_logits[:n_kept]|`` on the identical documents: the
    two forward passes run the same batches, so the pruned logits must equal the original's
    restricted logits to float rounding (the verification's kept-logits check).

Sampling is deterministic (seeded) and bounded by a token budget: the changed documents are
few and carry the information, so up to a quarter of the budget goes to them and the rest to a
random sample of identical ones. The overall ``bits_per_byte`` is the byte-weighted
combination of the two strata with the weights of the WHOLE set (their byte shares), so it
estimates the set's bits per byte without re-weighting by the sampling. Forward passes are
batched (right padding, attention mask) in fp32.

`greedy_continuations` decodes fixed Korean prompts with both models (each with its own
tokenizer, unrestricted) and returns the texts side by side.

It changes nothing and decides nothing: verification (`pipeline.verify`) turns figures into
checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOG2E = 1.4426950408889634
SEED = 0

#: Prompts of `greedy_continuations`: everyday Korean of several registers.
GREEDY_PROMPTS = [
    "대한민국의 수도는",
    "오늘 저녁에는 친구들과 함께",
    "이 영화는 정말",
    "인공지능 기술의 발전으로",
    "헌법 제1조에 따르면",
    "맛있는 김치찌개를 만들려면 먼저",
]


@dataclass
class EvalDoc:
    text: str
    n_bytes: int
    orig_ids: list[int]    # with BOS
    pruned_ids: list[int]  # with BOS (pruned model's ids)
    identical: bool


def cut_text(text: str, max_bytes: int) -> str:
    """``text`` cut at the last whitespace before ``max_bytes`` UTF-8 bytes (at a character
    boundary when there is no whitespace); unchanged when short enough."""
    b = text.encode("utf-8")
    if max_bytes <= 0 or len(b) <= max_bytes:
        return text
    head = b[:max_bytes].decode("utf-8", errors="ignore")
    cut = max(head.rfind(" "), head.rfind("\n"))
    return head[:cut] if cut > 0 else head


def _with_bos(ids: list[int], bos) -> list[int]:
    return ([bos] if bos is not None else []) + list(ids)


def sample_docs(texts: list[str], identical: np.ndarray, orig_tok, pruned_tok, kept, *,
                max_tokens: int, max_doc_bytes: int, seed: int = SEED) -> tuple[list[EvalDoc], dict]:
    """The evaluated documents (see module docstring) and the strata weights of the whole set.
    A sampled document's stratum is decided on its (cut) text: identical when the pruned
    tokenizer returns exactly the original ids (mapped through the keep set)."""
    rng = np.random.default_rng(seed)
    n = len(texts)
    identical = np.asarray(identical, dtype=bool)
    order = rng.permutation(n) if n else np.array([], dtype=np.int64)
    changed_idx = [int(i) for i in order if not identical[i]]
    same_idx = [int(i) for i in order if identical[i]]
    nbytes = np.array([len(t.encode("utf-8")) for t in texts], dtype=np.int64)
    weights = {"identical": int(nbytes[identical].sum()), "changed": int(nbytes[~identical].sum())}
    budget_changed = max_tokens // 4 if changed_idx else 0
    docs: list[EvalDoc] = []
    for pool, budget in ((changed_idx, budget_changed), (same_idx, None)):
        limit = budget if budget is not None else max_tokens - sum(len(d.orig_ids) for d in docs)
        used = 0
        for i in pool:
            text = cut_text(texts[i], max_doc_bytes)
            if not text.strip():
                continue
            o = orig_tok.backend_tokenizer.encode(text, add_special_tokens=False).ids
            p = pruned_tok.backend_tokenizer.encode(text, add_special_tokens=False).ids
            if not o or not p:
                continue
            if used + len(o) + 1 > limit:
                if used:
                    break
                continue
            used += len(o) + 1
            same = len(o) == len(p) and bool(np.array_equal(kept[np.asarray(p)], o))
            docs.append(EvalDoc(text, len(text.encode("utf-8")),
                                _with_bos(o, orig_tok.bos_token_id),
                                _with_bos(p, pruned_tok.bos_token_id), same))
    return docs, weights


def _batches(lengths: list[int], batch_tokens: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, at most ``batch_tokens`` padded tokens."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    out, cur, cur_max = [], [], 0
    for i in order:
        m = max(cur_max, lengths[i])
        if cur and m * (len(cur) + 1) > batch_tokens:
            out.append(cur)
            cur, m = [], lengths[i]
        cur.append(i)
        cur_max = m
    if cur:
        out.append(cur)
    return out


def _batch_logits(model, seqs: list[list[int]], b: list[int], limit: int | None = None):
    """fp32 logits (batch, L, V) of the sequences ``b`` (right padding, attention mask);
    ``limit``: only the first ``limit`` columns (a pruned model's real rows, not padding)."""
    import torch

    device = model.get_input_embeddings().weight.device
    L = max(len(seqs[i]) for i in b)
    x = torch.zeros((len(b), L), dtype=torch.long)
    mask = torch.zeros((len(b), L), dtype=torch.long)
    for r, i in enumerate(b):
        x[r, :len(seqs[i])] = torch.as_tensor(seqs[i])
        mask[r, :len(seqs[i])] = 1
    with torch.no_grad():
        lg = model(input_ids=x.to(device), attention_mask=mask.to(device),
                   use_cache=False).logits[..., :limit].float()
    return lg, x.to(device)


def _nll_argmax(logits, x, seqs, b, out) -> None:
    """Fill ``out[i] = (nll bits of tokens 1.., argmax at positions 0..n-2)`` for ``b``."""
    import torch

    head = logits[:, :-1]
    nll = (torch.logsumexp(head, dim=-1)
           - head.gather(-1, x[:, 1:].unsqueeze(-1)).squeeze(-1)) * LOG2E
    arg = head.argmax(-1)
    for r, i in enumerate(b):
        n = len(seqs[i])
        out[i] = (nll[r, :n - 1].double().cpu().numpy(), arg[r, :n - 1].cpu().numpy())


def model_eval(orig, pruned, orig_tok, pruned_tok, texts: list[str], identical, kept_old_ids,
               *, max_tokens: int, max_doc_bytes: int, batch_tokens: int) -> dict:
    """The figures of the module docstring for ``texts`` (``identical``: per text, whether the
    pruned tokenizer splits it like the original)."""
    import torch

    kept = np.asarray(kept_old_ids, dtype=np.int64)
    n_kept = len(kept)
    docs, weights = sample_docs(texts, identical, orig_tok, pruned_tok, kept, max_tokens=max_tokens,
                                max_doc_bytes=max_doc_bytes)
    res = {"documents": len(texts), "documents_evaluated": len(docs),
           "bytes_evaluated": int(sum(d.n_bytes for d in docs)),
           "tokens_before": int(sum(len(d.orig_ids) - 1 for d in docs)),
           "tokens_after": int(sum(len(d.pruned_ids) - 1 for d in docs)),
           "max_tokens": max_tokens, "max_doc_bytes": max_doc_bytes,
           "strata_bytes": weights}
    if not docs:
        return {**res, "bits_per_byte": {"before": None, "after": None}, "top1_agreement": None,
                "logits": {"max_abs_diff": None, "documents": 0, "tokens": 0}}
    same = [i for i, d in enumerate(docs) if d.identical]
    changed = [i for i, d in enumerate(docs) if not d.identical]
    # identical documents: one batching for both models (same shapes -> comparable logits)
    b_same = _batches([len(docs[i].orig_ids) for i in same], batch_tokens)
    b_same = [[same[j] for j in b] for b in b_same]
    b_o = _batches([len(docs[i].orig_ids) for i in changed], batch_tokens)
    b_p = _batches([len(docs[i].pruned_ids) for i in changed], batch_tokens)
    b_o, b_p = [[changed[j] for j in b] for b in b_o], [[changed[j] for j in b] for b in b_p]
    kept_t = torch.as_tensor(kept)
    o_seqs, p_seqs = [d.orig_ids for d in docs], [d.pruned_ids for d in docs]
    so: list = [None] * len(docs)
    sp: list = [None] * len(docs)
    worst = 0.0
    for b in b_same:  # both models on the same batch: compare the kept logits right away
        lo, xo = _batch_logits(orig, o_seqs, b)
        _nll_argmax(lo, xo, o_seqs, b, so)
        lo = lo[..., kept_t]
        lp, xp = _batch_logits(pruned, p_seqs, b, n_kept)
        _nll_argmax(lp, xp, p_seqs, b, sp)
        for r, i in enumerate(b):
            n = len(o_seqs[i])
            worst = max(worst, float((lo[r, :n] - lp[r, :n, :n_kept]).abs().max()))
        del lo, lp
    for model, seqs, batches, stats, limit in ((orig, o_seqs, b_o, so, None),
                                               (pruned, p_seqs, b_p, sp, n_kept)):
        for b in batches:
            lg, x = _batch_logits(model, seqs, b, limit)
            _nll_argmax(lg, x, seqs, b, stats)
            del lg

    def bpb(idx: list[int], stats) -> float | None:
        nbytes = sum(docs[i].n_bytes for i in idx)
        return float(sum(stats[i][0].sum() for i in idx) / nbytes) if nbytes else None

    strata = {}
    for name, idx in (("identical", same), ("changed", changed)):
        strata[name] = {"documents": len(idx), "before": _r(bpb(idx, so)), "after": _r(bpb(idx, sp))}
    total_w = weights["identical"] + weights["changed"]
    overall = {}
    for k in ("before", "after"):
        parts = [(weights[s], strata[s][k]) for s in strata if weights[s] and strata[s][k] is not None]
        w = sum(p[0] for p in parts)
        overall[k] = _r(sum(a * b for a, b in parts) / w) if parts and w else None
    if overall["before"]:
        overall["delta_share"] = _r(overall["after"] / overall["before"] - 1)
    overall["estimate"] = ("byte-weighted mean of the identical and changed strata, weights from "
                           f"all {total_w:,} bytes of the set")
    agree = pos = 0
    for i in same:
        o_arg, p_arg = so[i][1], sp[i][1]
        agree += int((kept[p_arg] == o_arg).sum())
        pos += len(o_arg)
    res.update({
        "bits_per_byte": overall,
        "bits_per_byte_identical": strata["identical"],
        "bits_per_byte_changed": strata["changed"],
        "top1_agreement": _r(agree / pos) if pos else None, "top1_positions": pos,
        "logits": {"max_abs_diff": worst if same else None, "documents": len(same),
                   "tokens": int(sum(len(docs[i].orig_ids) for i in same))},
    })
    return res


def _r(x, nd: int = 6):
    return None if x is None else round(float(x), nd)


def greedy_continuations(orig, pruned, orig_tok, pruned_tok, prompts=GREEDY_PROMPTS,
                         new_tokens: int = 16) -> dict:
    """Greedy continuations of ``prompts`` by both models (each with its own tokenizer, no
    restriction), side by side; ``agreement`` = share of prompts with the same continuation
    text, ``token_agreement`` = share of leading characters equal, averaged."""
    import torch

    rows = []
    for prompt in prompts:
        texts = []
        for model, tok in ((orig, orig_tok), (pruned, pruned_tok)):
            ids = _with_bos(tok.backend_tokenizer.encode(prompt, add_special_tokens=False).ids,
                            tok.bos_token_id)
            x = torch.tensor([ids], device=model.get_input_embeddings().weight.device)
            with torch.no_grad():
                out = model.generate(input_ids=x, attention_mask=torch.ones_like(x),
                                     max_new_tokens=new_tokens, do_sample=False,
                                     pad_token_id=tok.pad_token_id)
            texts.append(tok.decode(out[0, len(ids):].tolist(), skip_special_tokens=True))
        o, p = texts
        common = next((k for k, (a, b) in enumerate(zip(o, p)) if a != b), min(len(o), len(p)))
        rows.append({"prompt": prompt, "original": o, "pruned": p, "same": o == p,
                     "common_prefix_share": _r(common / max(len(o), len(p), 1))})
    return {"prompts": rows, "new_tokens": new_tokens,
            "agreement": _r(sum(r["same"] for r in rows) / len(rows)) if rows else None,
            "prefix_agreement": _r(sum(r["common_prefix_share"] for r in rows) / len(rows))
            if rows else None}


def sample_texts(texts: list[str], max_bytes: int, max_doc_bytes: int,
                 seed: int = SEED) -> list[str]:
    """A seeded sample of ``texts``, each cut at a space before ``max_doc_bytes``, until about
    ``max_bytes`` UTF-8 bytes: the same documents for every model and tokenizer compared."""
    out, used = [], 0
    for i in np.random.default_rng(seed).permutation(len(texts)).tolist():
        t = cut_text(texts[i], max_doc_bytes)
        if not t.strip():
            continue
        out.append(t)
        used += len(t.encode("utf-8"))
        if used >= max_bytes:
            break
    return out


def encode_for_eval(tok, texts: list[str]) -> list[list[int]]:
    """Token ids of ``texts`` with BOS (as `model_eval` reads them)."""
    encs = tok.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
    return [_with_bos(e.ids, tok.bos_token_id) for e in encs]


def bits_per_byte(model, seqs: list[list[int]], n_bytes: int, *, batch_tokens: int,
                  limit: int | None = None) -> float | None:
    """-log2 p of the sequences' tokens after the first, summed, per byte of their text
    (``limit``: only the first ``limit`` logits, a padded model's real rows)."""
    if not seqs or not n_bytes:
        return None
    stats: list = [None] * len(seqs)
    for b in _batches([len(s) for s in seqs], batch_tokens):
        lg, x = _batch_logits(model, seqs, b, limit)
        _nll_argmax(lg, x, seqs, b, stats)
        del lg
    return _r(sum(s[0].sum() for s in stats) / n_bytes)
