"""`adapt` on the real model: Gemma 3 270M pruned with NSMC counts (``configs/nsmc.toml``),
extended with ``--new-tokens`` Korean tokens and recovery-trained for ``--max-seconds``.

    .venv/bin/python -m bench.adapt_bench --max-seconds 1200          # the issue's 20 minutes
    .venv/bin/python -m bench.adapt_bench --max-seconds 300 --eval-bytes 8192   # a smoke run

Runs ``python -m pipeline adapt`` in its own process in ``--art`` (kept between runs, so the
analysis and the prune stage are reused and an interrupted run resumes from its checkpoint),
then prints the ``adapt.*`` figures as Markdown and writes them, with the machine and the
settings, to ``bench/adapt_results.json``; `render` turns that file into the "Adapt" section of
BENCHMARKS.md (``make bench`` keeps it, it does not rerun it: that would double its time). Never
run by the tests.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_adapt(art: Path, args: argparse.Namespace) -> dict:
    sets = {"adapt.new_tokens": args.new_tokens, "adapt.max_seconds": float(args.max_seconds),
            "adapt.train_tokens": args.train_tokens, "adapt.eval_bytes": args.eval_bytes,
            "adapt.eval_every": args.eval_every, "adapt.checkpoint_every": args.eval_every,
            "adapt.seq_len": args.seq_len, "adapt.batch_size": args.batch_size,
            "adapt.lr": args.lr, "corpus.max_documents": args.max_documents}
    if args.train_rows != "all":  # the key is new: older runs in RESULTS trained every row
        sets["adapt.train_rows"] = f'"{args.train_rows}"'
    if args.init_scale is not None:  # likewise
        sets["adapt.init_scale"] = args.init_scale
    if args.adam_eps is not None:  # likewise (runs before the key trained with 1e-8)
        sets["adapt.adam_eps"] = args.adam_eps
    for kv in args.set:
        k, _, v = kv.partition("=")
        sets[k] = v
    cmd = [sys.executable, "-m", "pipeline", "adapt", "--no-progress", "--config",
           args.config, "--set", f'artifacts_dir="{art / "artifacts"}"',
           "--set", f'reports_dir="{art / "reports"}"']
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"adapt failed (exit {proc.returncode})")
    metrics = json.loads(next((art / "reports").glob("*/metrics.json")).read_text())
    return {"wall_s": round(time.perf_counter() - t0, 1), "settings": sets,
            "adapt": metrics["adapt"]}


RESULTS = ROOT / "bench" / "adapt_results.json"


def render(results: dict) -> list[str]:
    """The BENCHMARKS.md section of `RESULTS` (every run kept there, oldest first)."""
    out = ["", "## Adapt: Gemma 3 270M, NSMC counts (`bench/adapt_bench.py`)", "",
           "Measured by hand with `python -m bench.adapt_bench` (not part of `make bench`), CPU "
           "only, on the 2-core machine named with each run (oldest first); each run's note "
           "says whether other work shared the machine and which keep set it extended. The "
           "training figures are what the wall-clock budget (`adapt.max_seconds`) reached "
           "there."]
    for r in results["runs"]:
        m, st = r["machine"], r["settings"]
        extra = "".join(f", `adapt.{k}` = {st['adapt.' + k]}"
                        for k in ("train_rows", "init_scale", "adam_eps") if "adapt." + k in st)
        out += ["", f"### `adapt.lr` = {st['adapt.lr']}, `adapt.max_seconds` = "
                    f"{st['adapt.max_seconds']}{extra}", "",
                f"{m['cpu']}" + (f" ({m['isa']})" if m.get("isa") else "")
                + f", {m['cores']} cores; wall time of the command {r['wall_s']} s "
                f"(analysis and prune reused: {r.get('reused', 'no')}). Settings: "
                + ", ".join(f"`{k}` = {v}" for k, v in st.items()) + "."
                + (f" {r['note']}" if r.get("note") else ""), "",
                *tables(r).splitlines()]
    return out


def tables(r: dict) -> str:
    a = r["adapt"]
    tr, nt, v = a["train"], a["new_tokens"], a["vocab"]
    out = [f"new tokens {nt['learned']:,} (of {nt['requested']:,}); vocabulary "
           f"{v['pruned']:,} -> {v['extended']:,}; trained {tr['tokens']:,} tokens in "
           f"{tr['steps']} steps, {tr['seconds']} s on {tr['device']} (stopped: "
           f"{tr['stopped']}; best step {tr['best_step']})", "",
           "| set | tokens/eojeol original | pruned | extended | fewer | bits/byte original "
           "| pruned | extended (init) | trained | documents | bytes |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, f in a["tokens_per_eojeol"].items():
        b = a["bits_per_byte"][name]
        out.append(f"| {name} | {f['original']} | {f['pruned']} | {f['extended']} | "
                   f"{f['reduction']:.1%} | {b['original']} | {b['pruned']} | {b['extended']} | "
                   f"{b['trained']} | {b['documents']} | {b['bytes']} |")
    out += ["", "held-out bits/byte during training: " + ", ".join(
        f"step {e['step']}: {e['bits_per_byte']}" for e in tr["evals"]), "", goals(a)]
    return "\n".join(out)


def goals(a: dict) -> str:
    """The issue's three targets, met or not, on these figures."""
    h, b = a["tokens_per_eojeol"]["heldout"], a["bits_per_byte"]
    fewer = h["reduction"] >= 0.10
    held = b["heldout"]["trained"] <= b["heldout"]["original"]
    every = all(v["trained"] < v["extended"] for v in b.values())
    yes = {True: "**met**", False: "**missed**"}
    return (f"Targets: held-out tokens per eojeol at least 10% lower: {yes[fewer]} "
            f"({h['reduction']:.1%}); held-out bits per byte after recovery no worse than the "
            f"original's: {yes[held]} ({b['heldout']['trained']} vs {b['heldout']['original']}); "
            f"better than at initialisation on every set: {yes[every]} (" + ", ".join(
                f"{n} {v['extended']} -> {v['trained']}" for n, v in b.items()) + ").")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="configs/nsmc.toml")
    p.add_argument("--art", type=Path, default=ROOT / "bench" / "out" / "adapt")
    p.add_argument("--new-tokens", type=int, default=8000)
    p.add_argument("--max-seconds", type=int, default=1200)
    p.add_argument("--train-tokens", type=int, default=20_000_000)
    p.add_argument("--eval-bytes", type=int, default=16_384)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-documents", type=int, default=0)
    p.add_argument("--train-rows", choices=("all", "new"), default="all")
    p.add_argument("--adam-eps", type=float, default=None,
                   help="[adapt] adam_eps (default: the config's)")
    p.add_argument("--init-scale", type=float, default=None,
                   help="[adapt] init_scale (default: the config's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other config key, as `python -m pipeline --set` takes it "
                        "(e.g. verify.eval_tokens=4096 to reuse a prune measured so)")
    args = p.parse_args(argv)
    from bench.__main__ import machine

    reused = (args.art / "artifacts").is_dir()
    r = {"machine": machine(), **run_adapt(args.art, args), "reused": "yes" if reused else "no"}
    for p in r["adapt"]["train"]["loss_curve"]:  # the curve stays in metrics.json
        p.pop("lr", None)
    old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"runs": []}
    runs = [x for x in old["runs"] if (x["settings"], x["machine"]) != (r["settings"],
                                                                          r["machine"])] + [r]
    RESULTS.write_text(json.dumps({"runs": runs}, indent=2, ensure_ascii=False) + "\n")
    print("\n".join(render({"runs": [r]})))
    print(f"figures in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
