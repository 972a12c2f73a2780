"""Benchmarks of vocabulary pruning on the model side (CPU, random weights).

- `decode_speed`: greedy decoding speed (tokens/s, with KV cache) of a model shaped like
  Qwen2.5-0.5B (hidden 896, 24 layers, 14 heads / 2 KV heads, intermediate 4864, vocabulary
  151,936, tied embeddings), before and after pruning its vocabulary to a kept set.
- `prune_vs_copy_time`: wall time of load + prune + save against a plain
  ``from_pretrained`` + ``save_pretrained`` copy of the same model directory.

Weights are random (no checkpoint is downloaded): speed depends on shapes, not on values.
The model is fp32 by default: on CPUs without bf16 matrix units bf16 decoding is usually
slower than fp32, and fp32 keeps the numbers comparable across machines; pass
``dtype=torch.bfloat16`` to measure bf16. Everything runs on CPU with torch's default thread
count unless ``threads`` is given. Pass smaller ``config_kwargs`` (see ``SMALL``) for a quick
run; the full 0.5B shape takes minutes on 2 cores.

It does not measure quality, memory, or GPU speed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.surgery.model import (
    id_map_from_kept,
    load_source_model,
    prune_model,
    save_pruned_model,
)
from pipeline.verify_model import bytes_on_disk, param_counts

#: Shape of Qwen2.5-0.5B (config.json of the released model), as Qwen2 config kwargs.
QWEN25_05B = {
    "hidden_size": 896,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "intermediate_size": 4864,
    "vocab_size": 151_936,
    "tie_word_embeddings": True,
    "max_position_embeddings": 32768,
    "rope_theta": 1_000_000.0,
    "rms_norm_eps": 1e-6,
}
#: A shape that runs in seconds, for smoke tests of the bench itself.
SMALL = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "vocab_size": 20_000,
}
DEFAULT_KEPT_ROWS = 40_000
N_SPECIAL = 32  # ids 0..31 are always kept (stand-ins for control tokens)


def bench_config(config_kwargs: dict | None = None):
    """Qwen2 config of the Qwen2.5-0.5B shape, overridden by ``config_kwargs``."""
    from transformers import Qwen2Config

    kwargs = {**QWEN25_05B, **(config_kwargs or {})}
    rope_theta = kwargs.pop("rope_theta", None)
    config = Qwen2Config(**kwargs)
    if rope_theta is not None and isinstance(getattr(config, "rope_parameters", None), dict):
        config.rope_parameters["rope_theta"] = rope_theta
    return config


def build_bench_model(config_kwargs: dict | None = None, *, dtype=torch.float32, seed: int = 0):
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(bench_config(config_kwargs), dtype=dtype)
    return model.eval()


def bench_kept_ids(vocab: int, kept_fraction: float | None = None, kept_rows: int | None = None,
                   seed: int = 0) -> np.ndarray:
    """Sorted kept set: ids ``0..N_SPECIAL-1`` plus a random sample, ``kept_rows`` in all
    (or ``round(kept_fraction * vocab)``; default `DEFAULT_KEPT_ROWS`)."""
    if kept_rows is None:
        kept_rows = round(kept_fraction * vocab) if kept_fraction is not None else DEFAULT_KEPT_ROWS
    kept_rows = max(min(int(kept_rows), vocab), N_SPECIAL)
    rng = np.random.default_rng(seed)
    rest = rng.choice(np.arange(N_SPECIAL, vocab), kept_rows - N_SPECIAL, replace=False)
    return np.sort(np.concatenate([np.arange(N_SPECIAL), rest])).astype(np.int64)


def _decode_tokens_per_s(model, prompt: torch.Tensor, n_tokens: int, warmup: int) -> dict:
    """Greedy decode with KV cache; time each of the ``n_tokens`` single-token steps (not the
    prefill). ``tok_s`` is 1 / median step time (robust to other processes on a shared CPU),
    ``tok_s_mean`` is steps / total time."""
    from pipeline.verify_model import _cache_kwarg

    cache_arg = _cache_kwarg(model)

    def run(steps: int) -> tuple[float, list[float]]:
        t0 = time.perf_counter()
        out = model(input_ids=prompt, use_cache=True)
        prefill = time.perf_counter() - t0
        times = []
        for _ in range(steps):
            t1 = time.perf_counter()
            cache = getattr(out, "cache", None)
            if cache is None:
                cache = out.past_key_values
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            out = model(input_ids=nxt, use_cache=True, **{cache_arg: cache})
            times.append(time.perf_counter() - t1)
        return prefill, times

    with torch.no_grad():
        if warmup:
            run(warmup)
        prefill_s, times = run(n_tokens)
    return {"tok_s": 1.0 / float(np.median(times)), "tok_s_mean": n_tokens / sum(times),
            "prefill_s": prefill_s}


def _best_of(repeats: int, *args) -> dict:
    runs = [_decode_tokens_per_s(*args) for _ in range(max(1, int(repeats)))]
    return max(runs, key=lambda r: r["tok_s"])


def decode_speed(config_kwargs: dict | None = None, kept_fraction: float | None = None,
                 n_tokens: int = 32, *, kept_rows: int | None = None, prompt_len: int = 16,
                 warmup: int = 4, repeats: int = 1, dtype=torch.float32,
                 threads: int | None = None, seed: int = 0) -> dict:
    """CPU greedy decode tokens/s before and after pruning the vocabulary.

    ``config_kwargs`` override the Qwen2.5-0.5B shape; the kept set is ``kept_rows`` ids (or
    ``kept_fraction`` of the vocabulary; default 40,000 rows). Returns a dict of the shapes,
    parameter counts, prune time and ``tok_s_before``/``tok_s_after`` (1 / median step time),
    ``tok_s_mean_*`` (steps / total time) and ``speedup`` (median-based). With ``repeats`` > 1
    each side is measured that many times and the fastest run is kept (best-of-N, the usual
    remedy on a CPU shared with other processes).
    """
    if threads is not None:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model = build_bench_model(config_kwargs, dtype=dtype, seed=seed)
    build_s = time.perf_counter() - t0
    vocab = model.config.vocab_size
    kept = bench_kept_ids(vocab, kept_fraction, kept_rows, seed)
    rng = np.random.default_rng(seed + 1)
    prompt_old = rng.choice(kept, prompt_len)[None, :]
    id_map = id_map_from_kept(kept, vocab)

    before = _best_of(repeats, model, torch.from_numpy(prompt_old), n_tokens, warmup)
    params_before = param_counts(model)
    t0 = time.perf_counter()
    prune_model(model, kept)
    prune_s = time.perf_counter() - t0
    after = _best_of(repeats, model, torch.from_numpy(id_map[prompt_old]), n_tokens, warmup)
    return {
        "shape": {k: v for k, v in model.config.to_dict().items()
                  if k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                           "num_key_value_heads", "intermediate_size", "tie_word_embeddings")},
        "dtype": str(dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(),
        "n_tokens": n_tokens,
        "prompt_len": prompt_len,
        "vocab_before": int(vocab),
        "vocab_after": int(len(kept)),
        "params_before": params_before["total"],
        "params_after": param_counts(model)["total"],
        "build_s": round(build_s, 3),
        "prune_s": round(prune_s, 3),
        "tok_s_before": round(before["tok_s"], 2),
        "tok_s_after": round(after["tok_s"], 2),
        "tok_s_mean_before": round(before["tok_s_mean"], 2),
        "tok_s_mean_after": round(after["tok_s_mean"], 2),
        "speedup": round(after["tok_s"] / before["tok_s"], 3),
    }


def save_bench_model(out_dir: str | Path, config_kwargs: dict | None = None, *,
                     dtype=torch.float32, seed: int = 0) -> Path:
    """Write a random model of the bench shape to ``out_dir`` (source for `prune_vs_copy_time`)."""
    model = build_bench_model(config_kwargs, dtype=dtype, seed=seed)
    return save_pruned_model(model, out_dir)


def _read_files(path: Path, chunk: int = 1 << 24) -> None:
    for f in sorted(path.rglob("*")):
        if f.is_file():
            with open(f, "rb") as fh:
                while fh.read(chunk):
                    pass


def _flush_writes(tmp: Path) -> None:
    for d in tmp.iterdir():
        shutil.rmtree(d, ignore_errors=True)
    os.sync()


def prune_vs_copy_time(model_dir: str | Path, kept_fraction: float | None = None, *,
                       kept_rows: int | None = None, pad_to_multiple_of: int | None = None,
                       seed: int = 0, repeats: int = 3) -> dict:
    """Seconds for load + prune + save versus a plain ``from_pretrained`` + ``save_pretrained``
    of ``model_dir`` (both write into a temporary directory that is deleted afterwards).

    The two are measured alternately ``repeats`` times and the fastest of each is kept (single
    runs of a few seconds swing by 2x with the page cache and the other core's load); before
    each timing, earlier outputs are deleted and the kernel's dirty pages written back, so one
    run's 2 GB of writes does not throttle the next one's. The
    source files are read once first so both start from a warm page cache. transformers 5
    loads safetensors lazily (memory-mapped), so most reading happens inside the save step of
    both variants."""
    from transformers import AutoModelForCausalLM

    model_dir = Path(model_dir)
    _read_files(model_dir)  # same page-cache state for both timings
    copy_runs, prune_runs = [], []
    with tempfile.TemporaryDirectory(prefix="model_bench-") as tmp:
        for r in range(repeats):
            _flush_writes(Path(tmp))
            t0 = time.perf_counter()
            model = AutoModelForCausalLM.from_pretrained(model_dir)
            model.save_pretrained(Path(tmp) / f"copy{r}")
            copy_runs.append(time.perf_counter() - t0)
            bytes_copy = bytes_on_disk(Path(tmp) / f"copy{r}")
            vocab = model.config.vocab_size
            del model

            kept = bench_kept_ids(vocab, kept_fraction, kept_rows, seed)
            _flush_writes(Path(tmp))
            t0 = time.perf_counter()
            model = load_source_model(model_dir)
            load_s = time.perf_counter() - t0
            prune_model(model, kept, pad_to_multiple_of=pad_to_multiple_of)
            prune_s = time.perf_counter() - t0 - load_s
            save_pruned_model(model, Path(tmp) / f"pruned{r}")
            total_s = time.perf_counter() - t0
            prune_runs.append((total_s, load_s, prune_s))
            new_vocab = int(model.config.vocab_size)
            del model
        total_s, load_s, prune_s = min(prune_runs)
        copy_s = min(copy_runs)
        return {
            "vocab_before": int(vocab),
            "vocab_after": new_vocab,
            "repeats": repeats,
            "copy_s": round(copy_s, 3),
            "prune_total_s": round(total_s, 3),
            "prune_load_s": round(load_s, 3),
            "prune_only_s": round(prune_s, 3),
            "prune_save_s": round(total_s - load_s - prune_s, 3),
            "ratio": round(total_s / copy_s, 3),
            "bytes_source": bytes_on_disk(model_dir),
            "bytes_copy": bytes_copy,
            "bytes_pruned": bytes_on_disk(Path(tmp) / f"pruned{repeats - 1}"),
        }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true", help="tiny shape (seconds) instead of 0.5B")
    p.add_argument("--kept-rows", type=int, default=None,
                   help="rows kept (default 40,000; with --small 5,000)")
    p.add_argument("--n-tokens", type=int, default=32)
    p.add_argument("--bf16", action="store_true", help="bfloat16 instead of fp32")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=1, help="best-of-N decode measurements")
    p.add_argument("--skip-copy", action="store_true", help="skip prune_vs_copy_time")
    args = p.parse_args(argv)
    shape = SMALL if args.small else None
    kept_rows = args.kept_rows or (5_000 if args.small else DEFAULT_KEPT_ROWS)
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    result = {"decode_speed": decode_speed(shape, None, args.n_tokens, kept_rows=kept_rows,
                                           repeats=args.repeats, dtype=dtype,
                                           threads=args.threads)}
    print(json.dumps(result, indent=2), flush=True)
    if not args.skip_copy:
        with tempfile.TemporaryDirectory(prefix="model_bench-src-") as tmp:
            src = save_bench_model(Path(tmp) / "model", shape, dtype=dtype)
            result["prune_vs_copy_time"] = prune_vs_copy_time(src, kept_rows=kept_rows)
        print(json.dumps({"prune_vs_copy_time": result["prune_vs_copy_time"]}, indent=2))


if __name__ == "__main__":
    main()
