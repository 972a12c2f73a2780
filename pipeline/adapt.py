"""The ``adapt`` stage: extend the pruned vocabulary with Korean tokens, then recover quality
by training only the input embeddings and the LM head (ReTok-style).

What it does, for ``python -m pipeline adapt`` (after ``prune``, inside
`pipeline.artifacts.run_stage`, so it writes a temporary stage directory renamed into place):

1. Loads the pruned tokenizer and model from ``prune/model`` (fp32; never written to).
2. Extension (``[adapt] new_tokens > 0``, `pipeline.extension`): counts the words of the
   run's train shards with the tokenizer's own normalizer and pre-tokenizer, learns new BPE
   merges over the kept vocabulary, appends them after the existing merges and gives the model
   one new embedding and head row per new token: the mean of its pieces' rows (times
   ``[adapt] init_scale``).
3. Measures bits per byte on the held-out split and on every ``[eval]`` set (the same seeded
   sample of documents for every model, ``[adapt] eval_bytes`` each): the original model
   (with the original tokenizer), the pruned model, the extended model at initialisation,
   and, after step 4, the trained one; and tokens per eojeol of the original, pruned and
   extended tokenizers on every document of each set.
4. Recovery training (`pipeline.train`; ``[adapt] train_rows = "new"``: only the new tokens'
   rows, the kept ones stay bit-identical) on the train shards, re-tokenized with the extended
   tokenizer, each document after BOS, packed into ``[adapt] seq_len`` sequences that start
   with BOS (BOS is never a target). Checkpoints go to
   ``artifacts/<run>/adapt-checkpoint/`` (outside the temporary stage directory, so a killed
   run resumes from them; removed once the stage is complete).
5. Writes ``adapt/model/`` (loads with ``AutoTokenizer`` / ``AutoModelForCausalLM`` alone:
   the model in the pruned checkpoint's dtype, the extended tokenizer, ``new_tokens.json``
   and ``provenance.json``) and checks, on the written files, that every tensor other than the
   embeddings and the head is bit-identical to the pruned model's and that
   ``decode(encode(x)) == x`` holds on every held-out document where it held for the pruned
   tokenizer.

Output layout (``adapt/model/``)::

    config.json generation_config.json model.safetensors tokenizer.json tokenizer_config.json
    new_tokens.json   [{"id", "token", "left", "right", "pieces", "count"}] one per new merge
    provenance.json   the pruned model's provenance, the [adapt] config, the new-token and
                      training figures (no timings: those are in metrics.json and run.log)

What it does not do: it does not change the keep set, does not train any tensor but the
embeddings and the head, and does not tune hyperparameters.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from .artifacts import write_json
from .errors import InputError

MODEL_SUBDIR = "model"
CHECKPOINT_DIR = "adapt-checkpoint"
NEW_TOKENS = "new_tokens.json"
PROVENANCE = "provenance.json"
HELDOUT = "heldout"


def checkpoint_dir(run) -> Path:
    return run.paths.root / CHECKPOINT_DIR


def check_adapt_inputs(run) -> None:
    """Before any work: the analyzed tokenizer can be extended when new tokens are asked for."""
    if run.cfg.adapt.new_tokens:
        from .extension import check_extendable

        try:
            check_extendable(run.tokenizer())
        except InputError as e:
            raise InputError(f"Tokenizer `{run.cfg.tokenizer.source}` cannot be extended: "
                             f"{e}") from e
    from .train import resolve_device

    resolve_device(run.cfg.adapt.device)


def adapt_stage(run, tmp: Path) -> dict:
    """Steps 1-5 of the module docstring; the stage metrics (``adapt.*``)."""
    from .extension import (extend_model, extend_tokenizer, learn_merges, new_token_pieces,
                            pretoken_counts)
    from .surgery.model import real_vocab_rows
    from .train import resolve_device

    ac, t0 = run.cfg.adapt, time.time()
    device = resolve_device(ac.device)
    pdir = run.paths.stage("prune") / MODEL_SUBDIR
    ptok, model = _load_pruned(pdir)
    n_old = len(ptok)
    merges = []
    if ac.new_tokens:
        counts = pretoken_counts(ptok, _train_texts(run), ac.max_pretokens)
        merges = learn_merges(ptok, counts, ac.new_tokens, min_count=ac.min_pair_count,
                              say=run.say)
        run.say(f"[adapt] {len(new_token_pieces(merges)):,} new tokens learned "
                f"({len(merges):,} merges)")
    etok = extend_tokenizer(ptok, merges) if merges else ptok
    pieces = new_token_pieces(merges)
    sets = _eval_sets(run)
    ev = _EvalTexts(sets, ac, run.say)
    bpb = {name: {} for name in sets}
    ev.measure(bpb, "original", *_original(run), device)
    model.to(device)
    ev.measure(bpb, "pruned", model, ptok, device, real_vocab_rows(model))
    extend_model(model, n_old, pieces, run.cfg.prune.pad_to_multiple_of or None, ac.init_scale)
    n_new = n_old + len(pieces)
    ev.measure(bpb, "extended", model, etok, device, n_new)
    st = _recover(run, model, etok, ev, n_new, device, n_old)
    dtype = _checkpoint_dtype(pdir)
    _round_vocab_rows(model, dtype)  # measure what the saved checkpoint holds
    ev.measure(bpb, "trained", model, etok, device, n_new)
    model.to("cpu")
    out = tmp / MODEL_SUBDIR
    _write(run, out, model, etok, merges, st, pdir, dtype)
    frozen = frozen_tensors_identical(pdir, out, model)
    rt = _roundtrip(ptok, etok, sets[HELDOUT][0])
    if not frozen["identical"] or rt["new_failures"]:
        raise RuntimeError(f"adapt check failed: frozen tensors {frozen}, round trip {rt}")
    return {"adapt": {
        "new_tokens": {"requested": ac.new_tokens, "learned": len(pieces),
                       "merges": len(merges), "init_scale": ac.init_scale},
        "vocab": {"pruned": n_old, "extended": n_new,
                  "model_rows": int(model.get_input_embeddings().weight.shape[0])},
        "tokens_per_eojeol": {name: _fertility(ptok, etok, *s) for name, s in sets.items()},
        "bits_per_byte": {name: {**v, **ev.sizes[name]} for name, v in bpb.items()},
        "train": _train_figures(st, device, ac.train_rows),
        "frozen": frozen, "roundtrip": rt,
        "seconds": round(time.time() - t0, 1),
        "model_dir": str(run.paths.stage("adapt") / MODEL_SUBDIR)}}


# --------------------------------------------------------------------------------------------
# Inputs


def _load_pruned(pdir: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (pdir / "config.json").is_file():
        raise InputError(f"The pruned model {pdir} is missing; run `python -m pipeline prune` "
                         "with the same config first (adapt runs it when needed).")
    tok = AutoTokenizer.from_pretrained(str(pdir))
    model = AutoModelForCausalLM.from_pretrained(str(pdir), dtype=torch.float32)
    model.eval()
    return tok, model


def _train_texts(run):
    """Texts of the train shards, one shard in memory at a time."""
    from .shards import read_shards

    for shard in run.paths.train_shards():
        yield from read_shards([shard], ["text"]).column("text").to_pylist()


def _eval_sets(run) -> dict[str, tuple[list[str], int, list[list[int]]]]:
    """name -> (texts, eojeol, original token ids) of the held-out split and every eval set."""
    from .evalsets import set_shards
    from .verify import read_heldout

    out = {}
    for name, shards in [(HELDOUT, run.paths.heldout_shards())] + [
            (es.name, set_shards(run.paths, es.name)) for es in run.eval_sets]:
        d = read_heldout(shards)
        out[name] = (d.texts, d.eojeol, d.ids)
    return out


def _original(run):
    """The source model (fp32) and its tokenizer, as the prune stage loads them."""
    import torch

    from .prune import load_model

    tok = run.tokenizer()
    return load_model(run.cfg, tok, dtype=torch.float32), tok


class _EvalTexts:
    """The seeded sample of each set (the same documents for every model)."""

    def __init__(self, sets: dict, ac, say):
        from .evaluate import sample_texts

        self.ac, self.say = ac, say
        self.texts = {n: sample_texts(s[0], ac.eval_bytes, ac.eval_max_doc_bytes)
                      for n, s in sets.items()}
        self.sizes = {n: {"documents": len(t), "bytes": sum(len(x.encode()) for x in t)}
                      for n, t in self.texts.items()}

    def bpb(self, model, tok, name: str, limit: int | None = None) -> float | None:
        from .evaluate import bits_per_byte, encode_for_eval

        return bits_per_byte(model, encode_for_eval(tok, self.texts[name]),
                             self.sizes[name]["bytes"], batch_tokens=self.ac.eval_batch_tokens,
                             limit=limit)

    def measure(self, out: dict, key: str, model, tok, device: str,
                limit: int | None = None) -> None:
        model.to(device)
        t0 = time.time()
        for name in self.texts:
            out[name][key] = self.bpb(model, tok, name, limit)
        self.say(f"[adapt] bits per byte, {key} model: "
                 + ", ".join(f"{n} {out[n][key]}" for n in self.texts)
                 + f" ({time.time() - t0:.1f}s)")


# --------------------------------------------------------------------------------------------
# Training


def _recover(run, model, etok, ev: _EvalTexts, n_rows: int, device: str, n_old: int):
    from .train import pack, train

    ac = run.cfg.adapt
    seqs = pack(_train_docs(run, etok), ac.seq_len,
                max_sequences=math.ceil(ac.train_tokens / ac.seq_len), bos=etok.bos_token_id)
    run.say(f"[adapt] {len(seqs):,} training sequences of {ac.seq_len} tokens")
    ckpt = checkpoint_dir(run)
    return train(model, seqs, ac, real_rows=n_rows,
                 evaluate=lambda m: ev.bpb(m, etok, HELDOUT, n_rows), ckpt=ckpt,
                 key=run.fp("adapt"), device=device, say=run.say,
                 ignore_id=etok.bos_token_id,
                 frozen_rows=frozen_rows(ac, n_old))


def frozen_rows(ac, n_old: int) -> int:
    """Vocabulary rows that must not train: the kept vocabulary's with ``train_rows = "new"``."""
    return n_old if ac.train_rows == "new" else 0


def _train_docs(run, tok, batch: int = 256):
    """Token ids of each train document with the extended tokenizer, after BOS (as the
    evaluation reads them; no EOS: the evaluation never scores one)."""
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    buf = []
    for text in _train_texts(run):
        buf.append(text)
        if len(buf) >= batch:
            yield from _encode(tok, buf, bos)
            buf = []
    yield from _encode(tok, buf, bos)


def _encode(tok, texts, bos):
    for e in tok.backend_tokenizer.encode_batch(texts, add_special_tokens=False):
        yield bos + e.ids


def _train_figures(st, device: str, rows: str = "all") -> dict:
    return {"steps": st.step, "tokens": st.tokens, "seconds": round(st.seconds, 1),
            "stopped": st.stopped, "best_step": st.best_step, "best_bpb": st.best_bpb,
            "resumed_from": st.resumed_from, "device": device, "rows": rows,
            "precision": st.precision,
            "loss_curve": [{"step": s, "tokens": t, "loss": loss, "lr": lr}
                           for s, t, loss, lr in st.curve],
            "evals": [{"step": s, "bits_per_byte": b} for s, b in st.evals]}


# --------------------------------------------------------------------------------------------
# Output and checks


def _checkpoint_dtype(pdir: Path):
    """The torch dtype the pruned checkpoint was written in (None: as loaded)."""
    import torch

    name = json.loads((pdir / "config.json").read_text(encoding="utf-8")).get("dtype")
    return getattr(torch, name) if name in ("float32", "float16", "bfloat16") else None


def _round_vocab_rows(model, dtype) -> None:
    """Round the trained parameters to the checkpoint's dtype (they are saved in it)."""
    import torch

    from .train import trainable_parameters

    if dtype is None:
        return
    with torch.no_grad():
        for p in trainable_parameters(model):
            p.copy_(p.to(dtype).to(p.dtype))


def _write(run, out: Path, model, etok, merges, st, pdir: Path, dtype) -> None:
    from .surgery.model import save_pruned_model

    save_pruned_model(model, out, tokenizer=etok, dtype=dtype)
    (out / NEW_TOKENS).write_text(json.dumps(
        [{"id": m.token_id, "token": m.token, "left": m.left, "right": m.right,
          "pieces": list(m.pieces), "count": m.count} for m in merges],
        ensure_ascii=False) + "\n", encoding="utf-8")
    prov = json.loads((pdir / PROVENANCE).read_text(encoding="utf-8"))
    prov["adapt"] = {"config": run.cfg.section_dict("adapt"), "new_tokens": len(
        {m.token_id for m in merges}), "train_steps": st.step, "train_tokens": st.tokens,
        "stopped": st.stopped, "best_step": st.best_step}
    write_json(out / PROVENANCE, prov)


def frozen_tensors_identical(pruned_dir: Path, adapted_dir: Path, model) -> dict:
    """Every tensor of the pruned checkpoint except the embeddings and the head is in the
    adapted checkpoint with the same dtype, shape and bytes."""
    import torch
    from safetensors.torch import load_file

    from .train import trainable_parameters

    train_ids = {id(p) for p in trainable_parameters(model)}
    vocab_keys = {k for k, p in model.named_parameters(remove_duplicate=False)
                  if id(p) in train_ids}
    a, b = _load_dir(pruned_dir, load_file), _load_dir(adapted_dir, load_file)
    keys = sorted(set(a) - vocab_keys)
    bad = [k for k in keys if k not in b or a[k].dtype != b[k].dtype or a[k].shape != b[k].shape
           or not torch.equal(a[k], b[k])]
    return {"tensors": len(keys), "identical": not bad, "differing": bad[:5]}


def _load_dir(d: Path, load_file) -> dict:
    out = {}
    for f in sorted(d.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def _roundtrip(ptok, etok, texts: list[str]) -> dict:
    from .extension import roundtrip_failures

    before, after = set(roundtrip_failures(ptok, texts)), set(roundtrip_failures(etok, texts))
    return {"documents": len(texts), "failures_pruned": len(before),
            "failures_extended": len(after), "new_failures": len(after - before)}


def _fertility(ptok, etok, texts: list[str], eojeol: int, orig_ids) -> dict:
    """Tokens per eojeol of the original (the shards' ids), pruned and extended tokenizers."""
    from .extension import tokens_per_eojeol

    if not eojeol:
        return {"original": None, "pruned": None, "extended": None, "reduction": None}
    pruned, ext = tokens_per_eojeol(ptok, texts, eojeol), tokens_per_eojeol(etok, texts, eojeol)
    return {"original": round(sum(len(i) for i in orig_ids) / eojeol, 6), "pruned": pruned,
            "extended": ext, "reduction": round(1 - ext / pruned, 6) if pruned else None}


def remove_checkpoint(run) -> None:
    """Drop the training checkpoint once the stage is complete: the files `pipeline.train`
    writes there (its state and a temp file of a killed save), then the folder if it is empty;
    anything else in it is left alone."""
    from .train import CHECKPOINT

    d = checkpoint_dir(run)
    if not d.is_dir():
        return
    for f in [d / CHECKPOINT, *d.glob(f".{CHECKPOINT}.tmp-*")]:
        f.unlink(missing_ok=True)
    try:
        d.rmdir()
    except OSError:  # not empty: files we did not write stay
        pass


def summary_lines(m: dict) -> list[str]:
    """What `python -m pipeline adapt` prints after the run."""
    a = m.get("adapt") or {}
    nt, tr = a.get("new_tokens") or {}, a.get("train") or {}
    out = [f"new tokens: {nt.get('learned')} of {nt.get('requested')} requested; vocab "
           f"{(a.get('vocab') or {}).get('pruned')} -> {(a.get('vocab') or {}).get('extended')}"]
    for name, f in (a.get("tokens_per_eojeol") or {}).items():
        out.append(f"{name}: tokens/eojeol {f.get('pruned')} -> {f.get('extended')}")
    for name, b in (a.get("bits_per_byte") or {}).items():
        out.append(f"{name}: bits/byte original {b.get('original')}, pruned {b.get('pruned')}, "
                   f"extended {b.get('extended')}, trained {b.get('trained')}")
    out.append(f"training: {tr.get('steps')} steps, {tr.get('tokens'):,} tokens, "
               f"{tr.get('seconds')} s on {tr.get('device')} (stopped: {tr.get('stopped')})"
               if tr else "training: -")
    out.append(f"model: {a.get('model_dir')}")
    return out
