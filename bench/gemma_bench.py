"""The default job on the real model (Gemma 3 270M from the GGUF wheels), as a user runs it.

- ``make analyze`` then ``make prune`` (``configs/default.toml``) in fresh artifact folders,
  each in its own process: wall seconds and peak RSS (the model conversion is cached
  beforehand and timed separately, as a first run on a new machine pays it once);
- prune (load + prune + save, with the run's real keep set) vs plain ``from_pretrained`` +
  ``save_pretrained`` of the same model, alternating, best of 3. Both read the converted
  bf16 checkpoint; "copy" writes the whole model (bf16, 536 MB), "prune" writes the pruned
  model (bf16) in the same format;
- CPU greedy decode tok/s, original vs pruned, both in the checkpoint dtype (bfloat16);
- the bits-per-byte table of the prune stage's verification (``model_eval.heldout``).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


_WRAP = """
import resource, runpy, sys
sys.argv = ["pipeline"] + sys.argv[1:]
try:
    runpy.run_module("pipeline", run_name="__main__")
finally:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"PEAK_RSS_KIB {own} {kids}", file=sys.stderr)
"""


def _run_cli(args: list[str], art: Path) -> dict:
    """Run a pipeline command in a fresh process; wall seconds and peak RSS (the process's own,
    and the largest of its children: the fastText worker)."""
    cmd = [sys.executable, "-c", _WRAP, *args, "--no-progress", "--config",
           "configs/default.toml", "--set", f'artifacts_dir="{art / "artifacts"}"',
           "--set", f'reports_dir="{art / "reports"}"']
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    own, kids = next(line.split()[1:] for line in proc.stderr.splitlines()
                     if line.startswith("PEAK_RSS_KIB"))
    return {"wall_s": round(wall, 1), "peak_rss_mib": round(int(own) / 1024, 1),
            "child_peak_rss_mib": round(int(kids) / 1024, 1)}


def default_job() -> dict:
    from pipeline.models import DEFAULT_MODEL, materialize

    t0 = time.perf_counter()
    materialize(DEFAULT_MODEL)
    out = {"conversion_s_if_cached": round(time.perf_counter() - t0, 2)}
    with tempfile.TemporaryDirectory(prefix="bench-gemma-") as td:
        art = Path(td)
        out["analyze"] = _run_cli(["analyze"], art)
        out["prune"] = _run_cli(["prune"], art)
        m = json.loads((art / "reports" / "default" / "metrics.json").read_text())
        kept = json.loads((art / "artifacts" / "default" / "prune" / "model" /
                           "id_map.json").read_text())["kept_old_ids"]
        out["metrics"] = {k: m.get(k) for k in ("vocab", "params", "bytes", "heldout",
                                                 "fertility", "model_eval", "logits")}
        out["prune_vs_copy"] = prune_vs_copy(np.asarray(kept))
        out["decode"] = decode(art / "artifacts" / "default" / "prune" / "model")
    return out


def prune_vs_copy(kept: np.ndarray, repeats: int = 3) -> dict:
    from transformers import AutoModelForCausalLM

    from bench.model_bench import _flush_writes, _read_files
    from pipeline.models import DEFAULT_MODEL, materialize
    from pipeline.prune import _vocab_copy
    from pipeline.surgery.model import load_source_model, prune_model, save_pruned_model
    from pipeline.verify_model import bytes_on_disk

    src = materialize(DEFAULT_MODEL)
    _read_files(src)
    copy_runs, prune_runs = [], []
    with tempfile.TemporaryDirectory(prefix="bench-gemma-copy-") as tmp:
        for r in range(repeats):
            _flush_writes(Path(tmp))
            t0 = time.perf_counter()
            model = AutoModelForCausalLM.from_pretrained(src)
            model.save_pretrained(Path(tmp) / f"copy{r}")
            copy_runs.append(time.perf_counter() - t0)
            bytes_copy = bytes_on_disk(Path(tmp) / f"copy{r}")
            del model
            _flush_writes(Path(tmp))
            t0 = time.perf_counter()
            model = load_source_model(str(src))
            pruned = prune_model(_vocab_copy(model), kept)
            save_pruned_model(pruned, Path(tmp) / f"pruned{r}")
            prune_runs.append(time.perf_counter() - t0)
            bytes_pruned = bytes_on_disk(Path(tmp) / f"pruned{r}")
            del model, pruned
    return {"copy_s": round(min(copy_runs), 3), "prune_s": round(min(prune_runs), 3),
            "ratio": round(min(prune_runs) / min(copy_runs), 3), "repeats": repeats,
            "copy_writes": "the whole model, bf16 safetensors",
            "prune_writes": "the pruned model, bf16 safetensors (no tokenizer, no verification)",
            "bytes_copy": bytes_copy, "bytes_pruned": bytes_pruned}


def decode(pruned_dir: Path, n_tokens: int = 32, repeats: int = 3) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bench.model_bench import _best_of
    from pipeline.models import DEFAULT_MODEL, materialize

    out = {"threads": torch.get_num_threads(), "n_tokens": n_tokens}
    for name, d in (("before", materialize(DEFAULT_MODEL)), ("after", pruned_dir)):
        tok = AutoTokenizer.from_pretrained(d)
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
        ids = tok("대한민국의 수도는 서울이고, 오늘 날씨는", return_tensors="pt")["input_ids"]
        out[f"tok_s_{name}"] = round(_best_of(repeats, model, ids, n_tokens, 4)["tok_s"], 2)
        out["dtype"] = str(model.dtype).replace("torch.", "")
        out[f"vocab_{name}"] = int(model.config.vocab_size)
        del model
    out["speedup"] = round(out["tok_s_after"] / out["tok_s_before"], 3)
    return out


def render(g: dict) -> list[str]:
    m, pc, d = g["metrics"], g["prune_vs_copy"], g["decode"]
    ev = (m.get("model_eval") or {}).get("heldout") or {}
    p, v = m.get("params") or {}, m.get("vocab") or {}
    lines = [
        "", "## Default job: Gemma 3 270M (GGUF Q4_K_M, dequantized to bf16), embedded corpus", "",
        f"- `make analyze`: {g['analyze']['wall_s']} s (peak RSS {g['analyze']['peak_rss_mib']} "
        f"MiB); `make prune` (load, prune, save, verify with model evaluation): "
        f"{g['prune']['wall_s']} s (peak RSS {g['prune']['peak_rss_mib']} MiB); model conversion "
        "from the GGUF wheels (first run on a machine only): not included, ~60 s",
        f"- vocabulary {v.get('before'):,} -> {v.get('after'):,}; parameters "
        f"{p.get('before'):,} -> {p.get('after'):,}",
        f"- prune (load + prune + save, the run's keep set) vs `from_pretrained` + "
        f"`save_pretrained`: {pc['prune_s']} s vs {pc['copy_s']} s = **{pc['ratio']}x** "
        f"(best of {pc['repeats']}; copy writes {pc['copy_writes']}, {pc['bytes_copy'] / 1e6:.0f}"
        f" MB; prune writes {pc['prune_writes']}, {pc['bytes_pruned'] / 1e6:.0f} MB)",
        f"- CPU greedy decode ({d['threads']} threads, {d['dtype']}, {d['n_tokens']} tokens, KV "
        f"cache, best of 3): {d['tok_s_before']} tok/s before, {d['tok_s_after']} tok/s after "
        f"(**{d['speedup']}x**)",
        f"- held-out identical share {(m.get('heldout') or {}).get('identical_ratio')}; max "
        f"|logit diff| on identical documents {(m.get('logits') or {}).get('max_abs_diff')}", "",
        f"Bits per byte on the held-out split ({ev.get('documents_evaluated')} documents, "
        f"{ev.get('tokens_before')} tokens evaluated):", "",
        "| text | documents | original | pruned |", "|---|---:|---:|---:|",
    ]
    for key, label in (("bits_per_byte", "all (byte-weighted strata estimate)"),
                       ("bits_per_byte_identical", "tokenized identically"),
                       ("bits_per_byte_changed", "tokenization changed")):
        r = ev.get(key) or {}
        lines.append(f"| {label} | {r.get('documents', '')} | {r.get('before')} | "
                     f"{r.get('after')} |")
    lines.append(f"\nTop-1 agreement on identical documents: {ev.get('top1_agreement')}.")
    return lines


if __name__ == "__main__":
    os.chdir(ROOT)
    print(json.dumps(default_job(), indent=2))
