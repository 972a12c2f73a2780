"""The Ray executor on 1 and 2 local workers vs the local executor (``python -m bench --only-ray``).

Corpus: the first ``n_docs`` NSMC reviews rewritten as one Parquet file of 16 row groups (16
units of work). Tokenizer: Tekken, as in `bench.analyze_bench`. For each contender, the
tokenize stage and the count stage run once from a fresh artifacts dir (the saved tokenizer is
made outside the timed region); each Ray run starts its own local Ray with ``num_cpus`` =
workers; an untimed warm-up run first starts its workers and loads their models (fixed
costs a 100 GB job pays once) on the next ``n_docs // 5`` reviews, so that the piece caches
hold common words but not the timed text's own pieces. Also recorded (`pipeline.executor.TIMINGS`): the workers'
busy seconds summed over units (per-worker throughput = text bytes / busy seconds), the
driver's seconds on the results (decoding, refiling into batches, writing shards: the rate at
which one driver can absorb the corpus, whatever the number of workers; taken from the 1-worker
run, where a core is left to the driver), and the driver
process's CPU seconds (all its threads, Ray Data's scheduling loop included: a lower bound of
that rate). The three runs' shards and
counts must be byte-identical (checked).

`render` turns the figures into BENCHMARKS.md's Ray section, with the 100 GB estimate computed
from them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from bench.analyze_bench import NSMC, ROOT

UNITS = 16


def _corpus(n_docs: int, out: Path, start: int = 0) -> Path:
    t = pq.read_table(NSMC).slice(start, n_docs)
    pq.write_table(t, out, row_group_size=-(-t.num_rows // UNITS))
    return out


def _once(corpus: Path, warm: Path, tok_dir: Path, work: Path, executor: str,
          workers: int) -> dict:
    from pipeline import executor as ex
    from pipeline.artifacts import read_done
    from pipeline.config import load_config
    from pipeline.runner import Run

    def config(source: Path, where: Path):
        return load_config(ROOT / "configs" / "default.toml", {
            "run": "bench", "artifacts_dir": str(where / "a"), "reports_dir": str(where / "r"),
            "corpus.source": str(source), "tokenizer.source": str(tok_dir),
            "execute.executor": executor})

    cfg = config(corpus, work)
    shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()[0]  # other work on a shared machine
    ray = None
    if executor == "ray":
        import ray

        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                 configure_logging=False, runtime_env={"env_vars": {
                     "PYTHONPATH": str(ROOT), **ex.WORKER_ENV}})
    try:
        # warm-up (untimed): Ray's workers start and load fastText and the tokenizer once, on
        # other reviews (``warm``), so that the piece caches hold common words, as in a long
        # job, but not the timed text's own pieces
        Run(config(warm, work / "warm"), progress=False, say=lambda m: None).tokenize()
        run = Run(cfg, progress=False, say=lambda m: None, force=True)
        run.tokenizer()
        out = {"load_before": round(load, 2)}
        for stage in ("tokenize", "count"):
            t0, c0 = time.perf_counter(), time.process_time()
            getattr(run, stage)()
            out[f"{stage}_s"] = round(time.perf_counter() - t0, 3)
            out[f"{stage}_driver_cpu_s"] = round(time.process_time() - c0, 3)  # all its threads
            if executor == "ray":
                out[f"{stage}_task_s"] = round(ex.TIMINGS["task_s"], 3)
                out[f"{stage}_driver_loop_s"] = round(ex.TIMINGS["driver_s"], 3)
        out["files"] = {s: read_done(run.paths.stage(s))["files"] for s in ("tokenize", "count")}
        run.close()
        return out
    finally:
        if ray is not None:
            ray.shutdown()


def run(n_docs: int = 100_000) -> dict:
    from pipeline.tokenizer_io import load_tokenizer

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as td:
        td = Path(td)
        corpus = _corpus(n_docs, td / "nsmc.parquet")
        warm = _corpus(n_docs // 5, td / "warm.parquet", start=n_docs)  # other reviews
        nbytes = sum(len(t.encode()) for t in
                     pq.read_table(corpus, columns=["text"]).column("text").to_pylist())
        tok_dir = td / "tok"
        load_tokenizer("tekken").save_pretrained(str(tok_dir))
        runs = {"local": _once(corpus, warm, tok_dir, td / "l", "local", 0),
                "ray_1": _once(corpus, warm, tok_dir, td / "r1", "ray", 1),
                "ray_2": _once(corpus, warm, tok_dir, td / "r2", "ray", 2)}
    files = [r.pop("files") for r in runs.values()]
    mb = nbytes / 1e6
    out = {"corpus": f"NSMC, first {n_docs:,} reviews, {UNITS} Parquet row groups",
           "documents": n_docs, "bytes": nbytes, "identical": all(f == files[0] for f in files),
           "cpus": os.cpu_count(), "cpu": _cpu_model(), "runs": runs}
    r1, r2 = runs["ray_1"], runs["ray_2"]
    out["mb_per_s"] = {k: round(mb / r["tokenize_s"], 3) for k, r in runs.items()}
    out["worker_mb_per_s"] = round(mb / r1["tokenize_task_s"], 3)
    # the driver's rate from the 1-worker run, where one core is left to it (with 2 workers
    # on 2 cores it shares them; that figure is kept beside it)
    out["driver_mb_per_s"] = round(mb / max(r1["tokenize_driver_loop_s"], 1e-9), 3)
    out["driver_mb_per_s_2_workers"] = round(mb / max(r2["tokenize_driver_loop_s"], 1e-9), 3)
    out["driver_cpu_mb_per_s"] = round(mb / max(r1["tokenize_driver_cpu_s"], 1e-9), 3)
    out["speedup_2_vs_1"] = round(r1["tokenize_s"] / r2["tokenize_s"], 3)
    return out


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def estimate(r: dict, corpus_gb: float = 100.0, worker_cores: int = 32) -> dict:
    """Hours and machines for ``corpus_gb`` of text from the measured rates (see render)."""
    w, d = r["worker_mb_per_s"], r["driver_mb_per_s"]
    mb = corpus_gb * 1000
    out = {"corpus_gb": corpus_gb, "worker_cores": worker_cores,
           "one_core_hours": round(mb / w / 3600, 1),
           "driver_hours": round(mb / d / 3600, 1),
           "max_useful_cores": int(d / w),
           # count: Polars over the shards on every core of the bench machine
           "count_core_hours": round(mb / (r["bytes"] / 1e6 / (r["runs"]["local"]["count_s"]
                                                              * r["cpus"])) / 3600, 1),
           "driver_hours_lower_bound": round(mb / r["driver_cpu_mb_per_s"] / 3600, 1),
           "max_useful_cores_lower_bound": int(r["driver_cpu_mb_per_s"] / w)}
    for machines in (1, 4, 16):
        cores = machines * worker_cores
        rate = min(cores * w, d)
        out[f"hours_{machines}_machines"] = round(mb / rate / 3600, 1)
    return out


def render(r: dict, idle_local_mb_s: float | None = None) -> list[str]:
    """BENCHMARKS.md's Ray section; ``idle_local_mb_s``: `analyze` on the idle machine (the
    analyze section), to say how loaded the machine was."""
    e = estimate(r)
    runs = r["runs"]
    lines = [
        "",
        f"## Ray executor ({r['corpus']}: {r['bytes'] / 1e6:.1f} MB of text)",
        "",
        "`python -m bench --only-ray` (bench/ray_bench.py): one timed run each of the tokenize "
        "and count stages, after an untimed warm-up run on other reviews (Ray workers started, "
        "fastText and the tokenizer loaded, piece caches holding common words: what a long job "
        f"has; not the timed text's own pieces); a {r['cpus']}-core {r.get('cpu', '')} VM"
        + (f" (1-minute load average before the runs: "
           f"{', '.join(str(x['load_before']) for x in runs.values())}; above {r['cpus']}, "
           "other work shared it)" if all("load_before" in x for x in runs.values()) else "")
        + ", one run each, so the figures are indicative. Ray runs start a local "
        "Ray with `num_cpus` = workers; one task uses one core (`TOKENIZERS_PARALLELISM=false`). "
        f"Outputs of the three runs byte-identical: {r['identical']}.",
        "",
        "| executor | tokenize s | MB/s | count s | workers' busy s | driver's work on results s | driver process CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for k, label in (("local", "local (fastText process + tokenizer threads)"),
                     ("ray_1", "ray, 1 worker"), ("ray_2", "ray, 2 workers")):
        x = runs[k]
        lines.append(f"| {label} | {x['tokenize_s']} | {r['mb_per_s'][k]} | {x['count_s']} | "
                     f"{x.get('tokenize_task_s', '')} | {x.get('tokenize_driver_loop_s', '')} | "
                     f"{x['tokenize_driver_cpu_s']} |")
    lines += [
        "",
        f"- per worker (one core: read, NFC, fastText, tokenize, split): **{r['worker_mb_per_s']} "
        f"MB/s** of text (bytes / the workers' busy seconds); 2 workers vs 1: "
        f"**{r['speedup_2_vs_1']}x** on {r['cpus']} cores, where the driver, the raylet and "
        "other work share the same cores.",
        f"- driver, 1 worker (a core left to the driver): its work on the results (decoding "
        f"them, refiling into the local batches, writing every shard) runs at "
        f"**{r['driver_mb_per_s']} MB/s** of text (with 2 workers sharing its 2 cores: "
        f"{r.get('driver_mb_per_s_2_workers', '-')} MB/s); counting every CPU second of the "
        f"driver process instead (also Ray Data's scheduling loop, which costs per task and per "
        f"second rather than per byte): {r['driver_cpu_mb_per_s']} MB/s, a lower bound.",
        *([f"- load: the local executor ran at {r['mb_per_s']['local']} MB/s here against "
            f"{idle_local_mb_s} MB/s for `analyze` on the idle machine (the analyze section): "
            "the per-worker rate on an idle core is likely higher by about that ratio, which "
            "makes the hours below an upper bound."]
          if isinstance(idle_local_mb_s, (int, float)) and r['mb_per_s']['local'] < idle_local_mb_s
          else [f"- the local executor ran at {r['mb_per_s']['local']} MB/s here, "
                f"{idle_local_mb_s} MB/s for `analyze` over all of NSMC with a cold piece cache "
                "(the analyze section): other work did not slow this run down."]
          if isinstance(idle_local_mb_s, (int, float)) else []),
        "",
        f"### Estimate: {e['corpus_gb']:.0f} GB of Korean web text",
        "",
        f"Work: {e['corpus_gb']:.0f} GB / {r['worker_mb_per_s']} MB/s = **{e['one_core_hours']} "
        f"core-hours** of workers for tokenize. Count (Polars over the shards: "
        f"{r['runs']['local']['count_s']} s on {r['cpus']} cores here) adds about "
        f"{e['count_core_hours']} core-hours; Kiwi does not grow with the corpus (it reads at "
        "most `kiwi_max_eojeol_types` eojeol types, 200,000 by default: minutes). The driver "
        "writes every shard itself at "
        f"{r['driver_mb_per_s']} MB/s, so however many workers, the tokenize stage takes at "
        f"least **{e['driver_hours']} h** ({e['driver_hours_lower_bound']} h with the "
        "lower-bound driver rate): more than about "
        f"**{e['max_useful_cores']} worker cores** ({e['max_useful_cores_lower_bound']}) only "
        "wait for the driver. With "
        f"{e['worker_cores']}-core workers: 1 machine {e['hours_1_machines']} h, 4 machines "
        f"{e['hours_4_machines']} h, 16 machines {e['hours_16_machines']} h (the smaller of "
        "workers' and driver's rate). Shards hold the text and token ids, about 2-3x the "
        "text: 250-300 GB written by the driver, which needs the disk (and network, for a "
        "shared artifacts folder) to keep up.",
        "",
        "Where the driver stops being enough, what would change: (1) workers write their "
        "unit's shards themselves to shared storage, one shard set per unit, and the driver "
        "keeps only the per-document status rows and the metrics (the shards would then no "
        "longer follow the local executor's batches: a new tokenize version); (2) partial counts "
        "computed by the tokenize workers from the rows they already hold, so the count stage "
        "does not read the shards again; (3) the eojeol-type table, merged on the driver, grows "
        "with the corpus (tens of millions of types for 100 GB): merge it as a Ray shuffle "
        "(group by type hash) and keep only the top `kiwi_max_eojeol_types` on the driver.",
    ]
    return lines
