"""Verify a pruned model directory against the original tokenizer and model.

`verify_pruned` reloads the pruned tokenizer and model FROM THE SAVED DIRECTORY (plain
``AutoTokenizer`` / ``AutoModelForCausalLM``, fp32) and measures, on the run's held-out
documents (Arrow shards: ``text``, ``token_ids``, ``n_eojeol``):

``heldout``
    ``identical_ratio``: share of documents the pruned tokenizer splits into exactly the
    original token strings, by re-tokenizing every document; it must equal the select stage's
    exact estimate ``identical_share_selected`` (recorded beside it).
    ``roundtrip_ok``: ``decode(encode(text)) == text`` for every document with the pruned
    tokenizer, with the failure count, a few examples, and how many of them the original
    tokenizer round-trips (a *regression* is a document only the original round-trips).
``fertility``
    held-out tokens per eojeol, original (``before``) and pruned (``after``); ``after`` must
    equal the select stage's exact ``tokens_per_eojeol_selected``.
``model_eval.heldout`` / ``model_eval.<set>`` / ``model_eval.greedy``
    model quality (`pipeline.evaluate`): bits per byte of the original and the pruned model
    (overall, on identical and on changed documents), top-1 agreement, on the held-out split
    and on every ``[eval] sets`` entry, and greedy continuations of fixed Korean prompts side
    by side; bounded by ``[verify] eval_tokens`` per split.
``logits`` / ``generate``
    the largest ``|orig_logits[kept] - pruned_logits|`` on the identical documents of the
    model evaluation (same batches for both models); when no evaluated document is identical,
    `pipeline.verify_model.max_abs_logit_diff` on seeded random sequences of kept ids
    (``[verify] logit_docs`` x ``logit_max_tokens``). `greedy_agreement` on
    ``generate_prompts`` prompts x ``generate_steps`` steps, restricted to kept tokens.
``params`` / ``bytes`` / ``vocab`` / ``prune``
    parameter counts, weight bytes on disk, vocabulary size after, embedding parameters saved.
``chat_template``
    a Korean conversation rendered by both tokenizers (same text), and decode(encode) of it
    with the pruned one.
``verify``
    every pass/fail check, the skipped ones, and ``passed``. With ``[verify] strict`` (the
    default) a failed check raises `VerificationFailed` (exit code 3).

It does not choose or change anything; it only reads and compares.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .errors import PipelineError

#: The conversation the chat-template check renders (system-less: some templates refuse it).
KOREAN_CONVERSATION = [
    {"role": "user", "content": "안녕하세요! 내일 서울 날씨는 어떤가요?"},
    {"role": "assistant", "content": "내일 서울은 맑고, 낮 최고 기온은 23도로 예상됩니다."},
    {"role": "user", "content": "고마워요. 우산은 안 챙겨도 되겠네요 ㅎㅎ"},
]
PROMPT_TOKENS = 32  # greedy prompts: at most this many tokens of a document
EXAMPLES = 3  # failing documents kept as examples
SAMPLE_SEED = 0


class VerificationFailed(PipelineError):
    """The pruned model or tokenizer does not behave like the original where it must."""

    exit_code = 3


@dataclasses.dataclass
class HeldoutDocs:
    texts: list[str]
    ids: list[list[int]]   # original token ids (no special tokens)
    eojeol: int

    @property
    def n(self) -> int:
        return len(self.texts)


def read_heldout(shards: list[Path]) -> HeldoutDocs:
    import pyarrow as pa

    if not shards:
        return HeldoutDocs([], [], 0)
    from .shards import read_shards

    t = read_shards(shards, ["text", "token_ids", "n_eojeol"])
    return HeldoutDocs(t.column("text").to_pylist(), t.column("token_ids").to_pylist(),
                       int(pa.compute.sum(t.column("n_eojeol")).as_py() or 0))


def verify_pruned(run, *, orig_tok, orig_model, pruned_dir: Path, kept_old_ids: np.ndarray,
                  model_id_map: np.ndarray, params_before: dict, bytes_before: int) -> dict:
    """All figures of the module docstring, as nested metrics; raises `VerificationFailed`
    when ``[verify] strict`` and a check fails."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .artifacts import stage_metrics

    vc = run.cfg.verify
    remote = run.cfg.prune.trust_remote_code  # off: the plain transformers load users will do
    pruned_tok = AutoTokenizer.from_pretrained(str(pruned_dir), trust_remote_code=remote)
    pruned = AutoModelForCausalLM.from_pretrained(str(pruned_dir), dtype=torch.float32,
                                                  trust_remote_code=remote)
    pruned.eval()
    docs = read_heldout(run.paths.heldout_shards())
    selected = stage_metrics(run.paths.stage("select")).get("heldout", {})
    heldout, fert, same = tokenizer_checks(orig_tok, pruned_tok, docs, selected)
    from .evalsets import set_shards

    sets = {es.name: read_heldout(set_shards(run.paths, es.name)) for es in run.eval_sets}
    quality = evaluate_models(orig_model, pruned, orig_tok, pruned_tok, docs, kept_old_ids, vc,
                              sets=sets, heldout_identical=same)
    seqs, source = logit_sequences(docs, kept_old_ids, len(orig_tok), orig_tok.bos_token_id, vc)
    m = {"heldout": heldout, "fertility": fert,
         **model_checks(orig_model, pruned, kept_old_ids, model_id_map, seqs, source, vc,
                        evaluated=quality["heldout"]),
         "model_eval": quality,
         **size_figures(params_before, pruned, bytes_before, pruned_dir, len(pruned_tok)),
         "chat_template": chat_template_check(orig_tok, pruned_tok)}
    # id by id: a pruned tokenizer whose ids do not point at the kept rows splits text into the
    # right strings (every other check passes) yet feeds the model the wrong rows
    m["vocab"]["matches_kept"] = pruned_tok.convert_ids_to_tokens(
        list(range(len(pruned_tok)))) == orig_tok.convert_ids_to_tokens(kept_old_ids.tolist())
    m["verify"] = summarize(m, len(kept_old_ids), vc)
    if vc.strict and not m["verify"]["passed"]:
        raise VerificationFailed(_failure_message(m))
    return m


# --------------------------------------------------------------------------------------------
# Tokenizer on the held-out documents


def tokenizer_checks(orig_tok, pruned_tok, docs: HeldoutDocs,
                     selected: dict) -> tuple[dict, dict, np.ndarray]:
    """(``heldout`` figures, ``fertility`` figures, per-document identical mask) from
    re-tokenizing every held-out doc."""
    encs = pruned_tok.backend_tokenizer.encode_batch(docs.texts, add_special_tokens=False)
    same = _identical(orig_tok, encs, docs)
    pruned_ids = [e.ids for e in encs]
    rt = roundtrip(orig_tok, pruned_tok, docs, pruned_ids)
    heldout = {"documents_verified": docs.n,
               "identical_ratio": float(same.mean()) if docs.n else None,
               "identical_documents": int(same.sum()),
               "identical_share_selected": selected.get("identical_share_selected"),
               **rt}
    n_before = sum(len(x) for x in docs.ids)
    n_after = sum(len(x) for x in pruned_ids)
    fert = {"before": round(n_before / docs.eojeol, 6) if docs.eojeol else None,
            "after": round(n_after / docs.eojeol, 6) if docs.eojeol else None,
            "after_selected": selected.get("tokens_per_eojeol_selected"),
            "tokens_before": n_before, "tokens_after": n_after, "eojeol": docs.eojeol}
    return heldout, fert, same


def roundtrip(orig_tok, pruned_tok, docs: HeldoutDocs, pruned_ids: list[list[int]]) -> dict:
    """``decode(encode(text)) == text`` with the pruned tokenizer for every document, and
    whether the original tokenizer round-trips the failing ones."""
    decoded = pruned_tok.batch_decode(pruned_ids, skip_special_tokens=False)
    failed = [i for i, (d, t) in enumerate(zip(decoded, docs.texts)) if d != t]
    regressions = []
    if failed:
        orig_dec = orig_tok.batch_decode([docs.ids[i] for i in failed], skip_special_tokens=False)
        regressions = [i for i, d in zip(failed, orig_dec) if d == docs.texts[i]]
    return {"roundtrip_ok": not failed, "roundtrip_failures": len(failed),
            "roundtrip_regressions": len(regressions),
            "roundtrip_examples": [{"text": docs.texts[i][:200], "decoded": decoded[i][:200]}
                                   for i in (regressions or failed)[:EXAMPLES]]}


# --------------------------------------------------------------------------------------------
# Model


def logit_sequences(docs: HeldoutDocs, kept_old_ids: np.ndarray, vocab_size: int, bos,
                    vc) -> tuple[list[list[int]], str]:
    """Up to ``logit_docs`` sequences (BOS + at most ``logit_max_tokens - 1`` original ids),
    from a seeded sample of the held-out documents whose tokens are all kept; seeded random
    kept-id sequences when there is none. Returns (sequences, where they come from)."""
    if vc.logit_docs == 0:
        return [], "none"
    keep = np.zeros(vocab_size, dtype=bool)
    keep[kept_old_ids] = True
    eligible = [i for i, ids in enumerate(docs.ids) if ids and keep[ids].all()]
    rng = np.random.default_rng(SAMPLE_SEED)
    head = [bos] if bos is not None else []
    n_body = max(vc.logit_max_tokens - len(head), 1)
    if eligible:
        pick = sorted(rng.choice(eligible, min(vc.logit_docs, len(eligible)), replace=False))
        return [head + docs.ids[i][:n_body] for i in pick], "heldout"
    return [head + rng.choice(kept_old_ids, n_body).tolist()
            for _ in range(vc.logit_docs)], "random_kept_ids"


def identical_mask(orig_tok, pruned_tok, docs: HeldoutDocs) -> np.ndarray:
    """Per document: does the pruned tokenizer split it into exactly the original tokens?"""
    encs = pruned_tok.backend_tokenizer.encode_batch(docs.texts, add_special_tokens=False)
    return _identical(orig_tok, encs, docs)


def _identical(orig_tok, encs, docs: HeldoutDocs) -> np.ndarray:
    vocab = orig_tok.convert_ids_to_tokens(list(range(len(orig_tok))))
    return np.array([e.tokens == [vocab[i] for i in ids] for e, ids in zip(encs, docs.ids)],
                    dtype=bool)


def evaluate_models(orig, pruned, orig_tok, pruned_tok, docs: HeldoutDocs, kept_old_ids,
                    vc, sets: dict[str, HeldoutDocs] | None = None,
                    heldout_identical: np.ndarray | None = None) -> dict:
    """``model_eval``: `pipeline.evaluate.model_eval` on the held-out documents and on every
    evaluation set (``model_eval.<set>``, each with its own ``eval_tokens`` budget), and
    `greedy_continuations` (empty figures when ``eval_tokens`` / ``greedy_new_tokens`` is 0).
    ``heldout_identical``: the held-out mask `tokenizer_checks` already computed."""
    from .evaluate import greedy_continuations, model_eval

    out = {"heldout": None, "greedy": None}
    for name, d in {"heldout": docs, **(sets or {})}.items():
        if vc.eval_tokens and d.n:
            same = heldout_identical if name == "heldout" and heldout_identical is not None \
                else identical_mask(orig_tok, pruned_tok, d)
            out[name] = model_eval(
                orig, pruned, orig_tok, pruned_tok, d.texts, same, kept_old_ids,
                max_tokens=vc.eval_tokens, max_doc_bytes=vc.eval_max_doc_bytes,
                batch_tokens=vc.eval_batch_tokens)
        else:
            out.setdefault(name, None)
    if vc.greedy_new_tokens:
        out["greedy"] = greedy_continuations(orig, pruned, orig_tok, pruned_tok,
                                             new_tokens=vc.greedy_new_tokens)
    return out


def model_checks(orig, pruned, kept_old_ids, id_map, seqs, source: str, vc,
                 evaluated: dict | None = None) -> dict:
    """``logits`` and ``generate`` figures (None where the config asks for none). The kept
    logits come from the model evaluation's identical documents when it had any."""
    from .verify_model import greedy_agreement, max_abs_logit_diff

    logits = {"max_abs_diff": None, "sequences": len(seqs), "inputs": source,
              "tolerance": vc.logit_tolerance}
    ev = (evaluated or {}).get("logits") or {}
    if ev.get("documents"):
        logits.update(max_abs_diff=ev["max_abs_diff"], sequences=ev["documents"],
                      tokens=ev["tokens"], inputs="heldout", method="model evaluation batches")
    elif seqs:
        logits["max_abs_diff"] = max_abs_logit_diff(
            orig, pruned, kept_old_ids, id_map, seqs,
            max_tokens=vc.logit_docs * vc.logit_max_tokens)
        logits["tokens"] = sum(len(s) for s in seqs)
    prompts = [s[:PROMPT_TOKENS] for s in seqs[:vc.generate_prompts]]
    gen = {"prompts": len(prompts), "steps": 0, "agree_restricted": None,
           "orig_argmax_kept": None}
    if prompts and vc.generate_steps:
        gen.update(greedy_agreement(orig, pruned, kept_old_ids, id_map, prompts,
                                    steps=vc.generate_steps))
    return {"logits": logits, "generate": gen}


def size_figures(params_before: dict, pruned, bytes_before: int, pruned_dir: Path,
                 vocab_after: int) -> dict:
    """``params``, ``bytes``, ``vocab`` and ``prune`` (savings) figures."""
    from .verify_model import bytes_on_disk, param_counts

    after = param_counts(pruned)
    b, a = params_before, after
    emb_saved = (b["embedding"] + b["lm_head"]) - (a["embedding"] + a["lm_head"])
    weights_after = sum(p.stat().st_size for p in pruned_dir.glob("*.safetensors"))
    return {
        "params": {"before": b["total"], "after": a["total"], "embedding_before": b["embedding"],
                   "embedding_after": a["embedding"], "lm_head_before": b["lm_head"],
                   "lm_head_after": a["lm_head"], "tied": a["tied"]},
        "bytes": {"before": int(bytes_before), "after": int(weights_after),
                  "dir_after": bytes_on_disk(pruned_dir)},
        "vocab": {"after": vocab_after,
                  "model_rows_after": int(pruned.get_input_embeddings().weight.shape[0])},
        "prune": {"embedding_params_saved": int(emb_saved),
                  "params_saved_share": round((b["total"] - a["total"]) / b["total"], 6)},
    }


# --------------------------------------------------------------------------------------------
# Chat template


def chat_template_check(orig_tok, pruned_tok) -> dict:
    """Render `KOREAN_CONVERSATION` with both tokenizers; decode(encode) with the pruned one."""
    if not getattr(orig_tok, "chat_template", None):
        return {"present": False}
    kw = {"add_generation_prompt": True}
    try:
        text = orig_tok.apply_chat_template(KOREAN_CONVERSATION, tokenize=False, **kw)
    except Exception as e:  # noqa: BLE001 - a template may refuse this conversation
        return {"present": True, "rendered": False, "error": f"{type(e).__name__}: {e}"[:300]}
    text_p = pruned_tok.apply_chat_template(KOREAN_CONVERSATION, tokenize=False, **kw)
    ids_o = _input_ids(orig_tok.apply_chat_template(KOREAN_CONVERSATION, tokenize=True, **kw))
    pruned_ids = _input_ids(pruned_tok.apply_chat_template(KOREAN_CONVERSATION, tokenize=True,
                                                           **kw))
    decoded = pruned_tok.decode(pruned_ids, skip_special_tokens=False)
    return {"present": True, "rendered": True, "same_text": text == text_p,
            "roundtrip_ok": decoded == text_p,
            "roundtrip_ok_original": orig_tok.decode(ids_o, skip_special_tokens=False) == text,
            "same_tokens": orig_tok.convert_ids_to_tokens(ids_o)
            == pruned_tok.convert_ids_to_tokens(pruned_ids)}


def _input_ids(out) -> list[int]:
    ids = out["input_ids"] if hasattr(out, "keys") else out
    return list(ids[0]) if ids and isinstance(ids[0], list) else list(ids)


# --------------------------------------------------------------------------------------------
# Pass / fail


def summarize(m: dict, n_kept: int, vc) -> dict:
    """Every check as True/False, or listed as skipped when there was nothing to check."""
    h, f, lg, g, ct = m["heldout"], m["fertility"], m["logits"], m["generate"], m["chat_template"]
    checks = {
        "identical_ratio_matches_select": None if h["identical_ratio"] is None
        or h["identical_share_selected"] is None
        else h["identical_ratio"] == h["identical_share_selected"],
        "roundtrip_no_regression": h["roundtrip_regressions"] == 0,
        "fertility_matches_select": None if f["after"] is None or f["after_selected"] is None
        else f["after"] == f["after_selected"],
        "logits_within_tolerance": None if lg["max_abs_diff"] is None
        else lg["max_abs_diff"] <= vc.logit_tolerance,
        "greedy_agreement": None if g["agree_restricted"] is None
        else g["agree_restricted"] == 1.0,
        "vocab_after_equals_kept": m["vocab"]["after"] == n_kept
        and m["vocab"]["matches_kept"],
        "chat_template": None if not ct.get("rendered")
        else ct["same_text"] and (ct["roundtrip_ok"] or not ct["roundtrip_ok_original"]),
    }
    if not h["documents_verified"]:  # nothing was compared: no check may count as passed
        checks["roundtrip_no_regression"] = None
    done = {k: bool(v) for k, v in checks.items() if v is not None}
    # honest: "passed" only when every document check ran on at least one document
    not_run = sorted(k for k in DOCUMENT_CHECKS if checks[k] is None)
    return {"passed": all(done.values()) and not not_run, "checks": done, "not_run": not_run,
            "skipped": sorted(k for k, v in checks.items() if v is None)}


#: Checks that compare the original and pruned model/tokenizer on documents or sequences.
DOCUMENT_CHECKS = ("identical_ratio_matches_select", "roundtrip_no_regression",
                   "fertility_matches_select", "logits_within_tolerance", "greedy_agreement")


def _failure_message(m: dict) -> str:
    failed = [k for k, ok in m["verify"]["checks"].items() if not ok]
    not_run = m["verify"].get("not_run") or []
    if not failed and not_run:
        return (f"Verification of the pruned model did not run: {', '.join(not_run)} compared "
                f"no document ({m['heldout']['documents_verified']} held-out document(s), "
                f"{m['logits']['sequences']} logit sequence(s), {m['generate']['prompts']} "
                "prompt(s)), so nothing proves the pruned model equivalent. Raise [verify] "
                "logit_docs / generate_prompts / generate_steps, or [heldout] fraction (or change "
                "its salt or the group column), then rerun. Nothing was written.")
    h, f, lg = m["heldout"], m["fertility"], m["logits"]
    return (f"Verification of the pruned model failed: {', '.join(failed)} (held-out identical "
            f"{h['identical_ratio']} vs select estimate {h['identical_share_selected']}; "
            f"round-trip regressions {h['roundtrip_regressions']}; tokens/eojeol {f['after']} vs "
            f"{f['after_selected']}; max |logit diff| {lg['max_abs_diff']} vs tolerance "
            f"{lg['tolerance']}; greedy agreement {m['generate']['agree_restricted']}). Nothing "
            "was written. This is a bug in the pruning: please report it with the run's "
            "config; set verify.strict = false to write the model anyway for inspection.")
