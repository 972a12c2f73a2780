"""`make bench`: every speed and memory figure the README quotes, measured on this machine.

Writes BENCHMARKS.md (figures + machine) and bench/results.json. Takes ~45-60 minutes on 2
cores (the analyze contenders run 3 alternating rounds for Tekken and for the Gemma 3 tokenizer;
medians are reported; then the model, Gemma default-job and Ray 1-vs-2-worker benchmarks).
``--only-analyze``, ``--only-gemma`` and ``--only-ray`` rerun one part and keep the others'
figures from bench/results.json. The adapt figures (bench/adapt_bench.py, measured by hand)
are kept from bench/adapt_results.json.
``python -m bench --quick`` is a smoke run (the first 20,000 NSMC reviews, a 2x corpus, a small
model shape): it prints its figures and writes bench/out/quick.json, never BENCHMARKS.md or
bench/results.json, whose figures the README quotes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def machine() -> dict:
    cpu, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
        mem = next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines()
                   if x.startswith("MemTotal"))
    except (OSError, StopIteration):
        mem = 0
    import tokenizers
    import torch
    import transformers

    # the vector extensions the figures depend on (one "AMD EPYC" VM has AVX-512 and bf16,
    # another only AVX2: a Gemma 3 270M training step takes 5.4 s (bf16) on the first and
    # about 18 s (fp32) on the second)
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return {"cpu": cpu, "isa": " ".join(isa), "cores": os.cpu_count(),
            "ram_gib": round(mem / 2**20, 1),
            "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "tokenizers": tokenizers.__version__}


def model_bench(quick: bool) -> dict:
    from bench import model_bench as mb

    shape = mb.SMALL if quick else None
    kept = 5_000 if quick else 40_000
    out = {"decode": mb.decode_speed(shape, None, 32, kept_rows=kept, repeats=1 if quick else 3)}
    with tempfile.TemporaryDirectory(prefix="bench-model-") as td:
        src = mb.save_bench_model(Path(td) / "src", shape)
        out["prune_vs_copy"] = mb.prune_vs_copy_time(src, kept_rows=kept)
    return out


def render(res: dict) -> str:
    m, a = res["machine"], res["analyze"]
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench`); every figure in the README comes from here.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM; Python {m['python']}, "
        f"torch {m['torch']}, transformers {m['transformers']}, tokenizers {m['tokenizers']}.",
        "",
        f"## Analyze throughput ({a['corpus']}: {a['documents']:,} documents, {a['bytes'] / 1e6:.1f} MB)",
        "",
        "| what | seconds | MB/s |",
        "|---|---:|---:|",
    ]
    names = {"bare_tokenizers": "bare `tokenizers` `encode_batch_fast`",
             "vocabtrimmer_style": "vocabtrimmer-style `tokenizer(batch)` + dict counting "
                                   "(texts preloaded, batches of 2048)",
             "vocabtrimmer_miner": "vocabtrimmer's `vocab_miner` loop as written (`datasets` "
                                   "from the Parquet file, row by row, chunks of 1000)",
             "analyze": "`analyze --until count` (NFC, fastText filter, split, shards, counts)",
             "analyze_no_langid": "same, fastText filter off (`langid.min_korean_prob = 0`)"}
    names = {k: v for k, v in names.items() if k in a["seconds"]}  # older results lack some
    for k, label in names.items():
        lines.append(f"| {label} | {a['seconds'][k]} | {a['mb_per_s'][k]} |")
    if "repeats" not in a:  # results of the earlier method, kept by --only-gemma
        lines += [
            "",
            "These analyze figures come from an earlier `make bench` that used single runs and a "
            "10x corpus of ten links to one file (the current method is in bench/analyze_bench.py):",
            f"analyze / bare tokenizers {a['ratio_analyze_to_bare']}x, without the fastText filter "
            f"{a['ratio_analyze_no_langid_to_bare']}x, analyze / vocabtrimmer-style "
            f"{a['ratio_analyze_to_vocabtrimmer']}x, peak RSS {a['peak_rss_mib']} MiB "
            f"(growth {a['rss_growth']}x).",
        ]
        return _render_models(res, lines)
    scale = next(k for k in a["peak_rss_mib"] if k != "1x")
    by = a.get("by_tokenizer") or {"tekken": a}
    if len(by) > 1:
        del lines[-len(names) - 2:]  # one table with a column pair per tokenizer instead
        lines.append("| what | " + " | ".join(f"{n} s | {n} MB/s" for n in by) + " |")
        lines.append("|---|" + "---:|---:|" * len(by))
        for k, label in names.items():
            lines.append(f"| {label} | " + " | ".join(
                f"{t['seconds'][k]} | {t['mb_per_s'][k]}" for t in by.values()) + " |")
    lines += ["", f"Seconds and MB/s: median of {a['repeats']} alternating rounds (all contenders "
              "of all tokenizers in one sequence); ratios: median of the per-round ratios."]
    if a.get("load_note"):
        lines += ["", f"Load: {a['load_note']}."]
    for n, t in by.items():
        lines += [
            "",
            f"{n} (rounds: {t['seconds_per_round']}):",
            "",
            f"- analyze / bare tokenizers: **{t['ratio_analyze_to_bare']}x** (target >= 0.85x; "
            f"rounds {t['ratio_analyze_to_bare_per_round']}); without the fastText filter: "
            f"**{t['ratio_analyze_no_langid_to_bare']}x** "
            f"({t['ratio_analyze_no_langid_to_bare_per_round']})",
            f"- analyze / vocabtrimmer-style (preloaded, batched): "
            f"**{t['ratio_analyze_to_vocabtrimmer']}x** (target >= 2.5x; rounds "
            f"{t['ratio_analyze_to_vocabtrimmer_per_round']})",
        ]
        if "ratio_analyze_to_vocabtrimmer_miner" in t:
            lines.append(
                f"- analyze / vocabtrimmer's `vocab_miner` as written: "
                f"**{t['ratio_analyze_to_vocabtrimmer_miner']}x** (target >= 2.5x; rounds "
                f"{t['ratio_analyze_to_vocabtrimmer_miner_per_round']})")
    lines += [
        "",
        f"Memory (with {next(iter(by))}):",
        "",
        f"- peak RSS, analyze process + fastText worker: {a['peak_rss_mib']['1x']} MiB at 1x, "
        f"{a['peak_rss_mib'][scale]} MiB at {scale} ({a['scale_corpus']}) -> growth "
        f"**{a['rss_growth']}x** (target <= 1.3x). Parts: analyze process "
        f"{a['peak_rss_main_process_mib']} MiB, workers {a['peak_rss_workers_mib']} MiB; "
        f"documents counted {a['documents_counted']}; wall {a['wall_s']} s",
    ]
    return _render_models(res, lines)


def _render_models(res: dict, lines: list[str]) -> str:
    if "model" in res:
        d, p = res["model"]["decode"], res["model"]["prune_vs_copy"]
        lines += [
            "",
            f"## Model (random weights, {d['dtype']}, shape {d['shape']})",
            "",
            f"- prune (load + prune + save) vs plain `from_pretrained` + `save_pretrained`: "
            f"{p['prune_total_s']} s vs {p['copy_s']} s = **{p['ratio']}x** (target <= 2x); "
            f"{p['vocab_before']:,} -> {p['vocab_after']:,} rows, {p['bytes_source'] / 1e6:.0f} MB -> "
            f"{p['bytes_pruned'] / 1e6:.0f} MB on disk",
            f"- CPU greedy decode ({d['threads']} threads, {d['n_tokens']} tokens after a "
            f"{d['prompt_len']}-token prompt, KV cache): {d['tok_s_before']} tok/s before, "
            f"{d['tok_s_after']} tok/s after ({d['vocab_before']:,} -> {d['vocab_after']:,} rows; "
            f"**{d['speedup']}x**); params {d['params_before']:,} -> {d['params_after']:,}",
        ]
    if "gemma" in res:
        from bench import gemma_bench

        lines += gemma_bench.render(res["gemma"])
    if "ray" in res:
        from bench import ray_bench

        lines += ray_bench.render(res["ray"], res.get("analyze", {}).get("mb_per_s", {})
                                  .get("analyze"))
    from bench import adapt_bench

    if adapt_bench.RESULTS.is_file():  # measured by hand (bench/adapt_bench.py), kept as is
        lines += adapt_bench.render(json.loads(adapt_bench.RESULTS.read_text()))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="2x corpus, small model: a smoke run")
    p.add_argument("--skip-model", action="store_true", help="only the analyze benchmark")
    p.add_argument("--only-gemma", action="store_true",
                   help="only the default job on Gemma 3 270M; other figures are kept from "
                        "bench/results.json")
    p.add_argument("--only-ray", action="store_true",
                   help="only the Ray executor on 1 and 2 local workers (a NSMC subset); other "
                        "figures are kept from bench/results.json")
    p.add_argument("--only-analyze", action="store_true",
                   help="only the analyze throughput and memory benchmark; other figures are kept "
                        "from bench/results.json")
    p.add_argument("--ray-docs", type=int, default=100_000,
                   help="NSMC reviews for --only-ray (default 100,000)")
    args = p.parse_args(argv)
    from bench import analyze_bench

    if not analyze_bench.NSMC.exists():
        print(f"bench needs {analyze_bench.NSMC} (../shared/data)", file=sys.stderr)
        return 2
    if args.only_ray:
        from bench import ray_bench

        res = json.loads((ROOT / "bench" / "results.json").read_text())
        res["ray"] = ray_bench.run(args.ray_docs)
        (ROOT / "bench" / "results.json").write_text(json.dumps(res, indent=2) + "\n")
        (ROOT / "BENCHMARKS.md").write_text(render(res))
        print(render(res).split("## Ray executor")[-1])
        return 0
    if args.only_gemma:
        res = json.loads((ROOT / "bench" / "results.json").read_text())
        res["machine"] = machine()
    elif args.only_analyze:
        res = json.loads((ROOT / "bench" / "results.json").read_text())
        res["machine"] = machine()
        res["analyze"] = analyze_bench.run(10)
        (ROOT / "bench" / "results.json").write_text(json.dumps(res, indent=2) + "\n")
        (ROOT / "BENCHMARKS.md").write_text(render(res))
        print(render(res).split("## Model")[0])
        return 0
    else:
        with tempfile.TemporaryDirectory(prefix="bench-") as td:
            corpus = analyze_bench.NSMC
            if args.quick:
                corpus = analyze_bench.sample_corpus(corpus, 20_000,
                                                     Path(td) / "nsmc-20k.parquet")
            res = {"machine": machine(),
                   "analyze": analyze_bench.run(2 if args.quick else 10, corpus=corpus)}
    if not args.skip_model and not args.only_gemma:
        res["model"] = model_bench(args.quick)
    if not args.skip_model and not args.quick:
        from bench import gemma_bench

        res["gemma"] = gemma_bench.default_job()
    if not args.quick:
        from bench import ray_bench

        res["ray"] = ray_bench.run(args.ray_docs)
    text = render(res)
    if args.quick:
        (ROOT / "bench" / "out").mkdir(exist_ok=True)
        (ROOT / "bench" / "out" / "quick.json").write_text(json.dumps(res, indent=2) + "\n")
    else:
        (ROOT / "bench" / "results.json").write_text(json.dumps(res, indent=2) + "\n")
        (ROOT / "BENCHMARKS.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
