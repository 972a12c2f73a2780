"""Analyze throughput vs bare `tokenizers` and a vocabtrimmer-style loop; peak RSS vs size.

All throughputs are measured in one process over the same texts (NSMC, 49.5 MB of Korean
reviews). Throughput = UTF-8 bytes of text / wall seconds.

- bare: ``Tokenizer.encode_batch_fast`` (Rust, both cores) over the same batches, nothing else.
- vocabtrimmer-style: ``tokenizer(batch)`` through transformers + Python dict counting, the
  loop existing vocabulary trimmers use, over texts already in a Python list (reading not
  timed) in batches of 2048: a generous version of it.
- vocabtrimmer's ``vocab_miner`` loop as written (`vocabtrimmer_miner`): from the Parquet file
  through ``datasets``, rows one by one, chunks of 1000.
- analyze: ``python -m pipeline analyze --until count``: corpus reading, NFC, fastText
  language filter, held-out split, tokenization, Arrow shards, Polars counts, from a fresh
  artifacts dir; once with the language filter and once without
  (``langid.min_korean_prob = 0``).

Each of the four runs ``repeats`` (>= 3) times, in alternating order (forward in even rounds,
backward in odd ones, so slow drift of a shared machine hits every contender alike). Each
ratio is computed per round and the MEDIAN over rounds is reported, with every round's value.

Peak RSS: ``analyze --until count`` in a child process on the corpus at 1x and at Nx. The Nx
corpus is N DISTINCT files (not N links to one): copy k changes the vowel of every Hangul
syllable (jungseong index + k mod 21) and suffixes ids and groups with ``~k``, so every copy
has its own documents, eojeol types and held-out groups (the worst case for the per-type
tables). Memory counts the fastText worker too: the figure is the analyze process's exact peak
(``ru_maxrss``) plus the peak of each of its descendants (sampled every 50 ms from /proc), an
upper bound of the whole tree's peak; each part is reported beside it.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
NSMC = ROOT.parent / "shared" / "data" / "nsmc.parquet"


def _texts(path: Path) -> list[str]:
    return pq.read_table(path, columns=["text"]).column("text").to_pylist()


def bare_tokenizers(tok, texts: list[str], batch: int) -> float:
    backend = tok.backend_tokenizer
    t0 = time.perf_counter()
    for i in range(0, len(texts), batch):
        backend.encode_batch_fast(texts[i:i + batch], add_special_tokens=False)
    return time.perf_counter() - t0


def vocabtrimmer_style(tok, texts: list[str], batch: int) -> float:
    t0 = time.perf_counter()
    counts: dict[int, int] = {}
    for i in range(0, len(texts), batch):
        for ids in tok(texts[i:i + batch], add_special_tokens=False)["input_ids"]:
            for t in ids:
                counts[t] = counts.get(t, 0) + 1
    return time.perf_counter() - t0


def vocabtrimmer_miner(tok, corpus: Path, chunk: int = 1000) -> float:
    """The counting loop of vocabtrimmer's ``vocab_miner`` (asahi417/lm-vocab-trimmer,
    vocabtrimmer/vocab_miner.py) as it is written: ``datasets.load_dataset`` of the corpus (a
    fresh cache, as a first run has), rows iterated one by one into chunks of ``chunk`` texts,
    ``tokenizer(batch)`` with its defaults, ids counted in a ``defaultdict`` through
    ``itertools.chain``. Like analyze, it starts from the Parquet file."""
    from collections import defaultdict
    from itertools import chain

    from datasets import disable_progress_bars, load_dataset

    disable_progress_bars()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        ds = load_dataset("parquet", data_files=str(corpus), split="train", cache_dir=cache)
        fq: dict[int, int] = defaultdict(int)
        batch: list[str] = []
        for row in ds:
            batch.append(row["text"])
            if len(batch) >= chunk:
                for t in chain(*tok(batch)["input_ids"]):
                    fq[t] += 1
                batch = []
        if batch:
            for t in chain(*tok(batch)["input_ids"]):
                fq[t] += 1
        del ds
    return time.perf_counter() - t0


def analyze_once(corpus: Path, tok_dir: Path, workdir: Path, *extra: str) -> float:
    from pipeline.config import load_config
    from pipeline.runner import Run

    ov = {"run": "bench", "artifacts_dir": str(workdir / "a"), "reports_dir": str(workdir / "r"),
          "corpus.source": str(corpus), "tokenizer.source": str(tok_dir)}
    for kv in extra:
        k, v = kv.split("=", 1)
        ov[k] = json.loads(v)
    cfg = load_config(ROOT / "configs" / "default.toml", ov)
    shutil.rmtree(workdir / "a", ignore_errors=True)
    run = Run(cfg, progress=False, say=lambda m: None)
    run.tokenizer()  # materialize the saved tokenizer outside the timed region
    t0 = time.perf_counter()
    run.analyze(until="count")
    return time.perf_counter() - t0


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            kids.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(d))
    return kids


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _name(pid: int) -> str:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    return next((a.decode() for a in args[1:] if a and not a.startswith(b"-")), "?")


def _descendants(root: int) -> list[int]:
    kids, out, stack = _children(), [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack += kids.get(pid, [])
    return out


def peak_rss_child(corpus: Path, tok_dir: Path, workdir: Path) -> dict:
    """A full `analyze --until count` in a fresh child process. Every 50 ms the RSS of it and
    each descendant (the fastText worker) is read from /proc. Returns, in MiB: ``main`` (the
    kernel's exact peak of the analyze process, ``ru_maxrss``), ``workers`` (each descendant's
    sampled peak, by command), ``total`` (main + every worker's peak: an upper bound of the
    tree's peak, as the peaks need not coincide), ``tree_sampled`` (largest sampled sum); wall
    seconds and documents counted."""
    cmd = [sys.executable, "-m", "pipeline", "analyze", "--until", "count", "--no-progress", "--config",
           str(ROOT / "configs" / "default.toml"), "--run", "rss", "--corpus", str(corpus),
           "--tokenizer", str(tok_dir), "--set", f'artifacts_dir="{workdir / "a"}"',
           "--set", f'reports_dir="{workdir / "r"}"', "--force"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak: dict[int, tuple[str, int]] = {}
    tree = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        now = 0
        for p in _descendants(proc.pid):
            rss = _rss_kib(p)
            now += rss
            if p != proc.pid and rss > peak.get(p, ("", 0))[1]:
                peak[p] = (peak[p][0] if p in peak else _name(p), rss)
        tree = max(tree, now)
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    if status != 0:
        raise RuntimeError(f"analyze failed: {proc.stderr.read().decode()[-2000:]}")
    main = usage.ru_maxrss / 1024
    workers = {f"{name} (pid {p})": round(kib / 1024, 1) for p, (name, kib) in peak.items()}
    metrics = json.loads((workdir / "r" / "rss" / "metrics.json").read_text())
    return {"main": round(main, 1), "workers": workers,
            "total": round(main + sum(kib for _, kib in peak.values()) / 1024, 1),
            "tree_sampled": round(tree / 1024, 1), "wall_s": round(wall, 1),
            "documents": metrics["corpus"]["documents"]}


def _vowel_shift(k: int) -> dict[int, int]:
    """str.translate table: every Hangul syllable with its jungseong index moved by k."""
    table = {}
    for cp in range(0xAC00, 0xD7A4):
        i = cp - 0xAC00
        lead, vowel, tail = i // 588, (i // 28) % 21, i % 28
        table[cp] = 0xAC00 + lead * 588 + ((vowel + k) % 21) * 28 + tail
    return table


def distinct_copies(corpus: Path, n: int, out: Path) -> list[Path]:
    """``n`` parquet files: copy 0 is the corpus, copy k its text with vowels shifted by k and
    ``~k`` appended to ids and groups (see module docstring)."""
    out.mkdir(parents=True)
    t = pq.read_table(corpus)
    files = []
    for k in range(n):
        cols = {}
        for name in t.column_names:
            vals = t.column(name).to_pylist()
            if k and name == "text":
                table = _vowel_shift(k)
                vals = [v.translate(table) if v is not None else None for v in vals]
            elif k:
                vals = [f"{v}~{k}" if v is not None else None for v in vals]
            cols[name] = pa.array(vals, type=pa.string())
        f = out / f"copy{k:02d}.parquet"
        pq.write_table(pa.table(cols), f)
        files.append(f)
    texts = [pq.read_table(f, columns=["text"]).column("text").slice(0, 1).to_pylist()[0]
             for f in files]
    assert len(set(texts)) == n, "copies must differ"
    return files


CONTENDERS = ("bare_tokenizers", "vocabtrimmer_style", "vocabtrimmer_miner", "analyze",
              "analyze_no_langid")
RATIOS = {"ratio_analyze_to_bare": ("analyze", "bare_tokenizers"),
          "ratio_analyze_no_langid_to_bare": ("analyze_no_langid", "bare_tokenizers"),
          "ratio_analyze_to_vocabtrimmer": ("analyze", "vocabtrimmer_style"),
          "ratio_analyze_to_vocabtrimmer_miner": ("analyze", "vocabtrimmer_miner")}


TOKENIZERS = ("tekken", "gemma3-270m")


def run(scale: int = 10, corpus: Path = NSMC, repeats: int = 3,
        tokenizers: tuple[str, ...] = TOKENIZERS) -> dict:
    """Every contender for every tokenizer (Tekken: 131k byte-level BPE; Gemma 3: 262k
    SentencePiece-style BPE), all in alternating rounds. The top-level figures are the first
    tokenizer's; ``by_tokenizer`` holds each one's. Peak RSS is measured with the first."""
    from pipeline.tokenizer_io import load_tokenizer

    if repeats < 3:
        raise ValueError("repeats must be >= 3 (the median of alternating rounds is reported)")
    texts = _texts(corpus)
    nbytes = sum(len(t.encode()) for t in texts)
    out: dict = {"corpus": str(corpus.name), "documents": len(texts), "bytes": nbytes,
                 "repeats": repeats, "tokenizers": list(tokenizers)}
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        batch = 2048
        measure, toks = {}, {}
        for name in tokenizers:
            tok = load_tokenizer(name)
            tok_dir = td / f"tok-{name}"
            tok.save_pretrained(str(tok_dir))
            toks[name] = tok_dir
            measure.update({
                (name, "bare_tokenizers"): lambda tok=tok: bare_tokenizers(tok, texts, batch),
                (name, "vocabtrimmer_style"): lambda tok=tok: vocabtrimmer_style(tok, texts, batch),
                (name, "vocabtrimmer_miner"): lambda tok=tok: vocabtrimmer_miner(tok, corpus),
                (name, "analyze"): lambda d=tok_dir: analyze_once(corpus, d, td),
                (name, "analyze_no_langid"): lambda d=tok_dir: analyze_once(
                    corpus, d, td, "langid.min_korean_prob=0.0"),
            })
        keys = list(measure)
        rounds: list[dict] = []
        loads = []
        for r in range(repeats):
            order = keys if r % 2 == 0 else keys[::-1]
            loads.append(round(os.getloadavg()[0], 2))
            rounds.append({k: measure[k]() for k in order})
        out["load_note"] = (
            f"1-minute load average at the start of each round {loads}, after the last "
            f"{round(os.getloadavg()[0], 2)} (on {os.cpu_count()} cores: above that, other work "
            "shared the machine)")
        out["by_tokenizer"] = {}
        for name in tokenizers:
            t: dict = {}
            med = {k: statistics.median(x[(name, k)] for x in rounds) for k in CONTENDERS}
            t["seconds"] = {k: round(v, 2) for k, v in med.items()}
            t["mb_per_s"] = {k: round(nbytes / v / 1e6, 2) for k, v in med.items()}
            t["seconds_per_round"] = [{k: round(x[(name, k)], 2) for k in CONTENDERS}
                                      for x in rounds]
            for ratio, (a, b) in RATIOS.items():  # speed ratio = time(b) / time(a), per round
                per_round = [x[(name, b)] / x[(name, a)] for x in rounds]
                t[ratio] = round(statistics.median(per_round), 3)
                t[ratio + "_per_round"] = [round(v, 3) for v in per_round]
            out["by_tokenizer"][name] = t
        out.update(out["by_tokenizer"][tokenizers[0]])
        del texts
        tok_dir = toks[tokenizers[0]]
        one = peak_rss_child(corpus, tok_dir, td / "x1")
        files = distinct_copies(corpus, scale, td / f"x{scale}corpus")
        big = peak_rss_child(td / f"x{scale}corpus", tok_dir, td / f"x{scale}")
        for f in files:
            f.unlink()
        out["peak_rss_mib"] = {"1x": one["total"], f"{scale}x": big["total"]}
        out["peak_rss_main_process_mib"] = {"1x": one["main"], f"{scale}x": big["main"]}
        out["peak_rss_workers_mib"] = {"1x": one["workers"], f"{scale}x": big["workers"]}
        out["peak_rss_tree_sampled_mib"] = {"1x": one["tree_sampled"],
                                            f"{scale}x": big["tree_sampled"]}
        out["wall_s"] = {"1x": one["wall_s"], f"{scale}x": big["wall_s"]}
        out["documents_counted"] = {"1x": one["documents"], f"{scale}x": big["documents"]}
        out["rss_growth"] = round(big["total"] / one["total"], 3)
        out["scale_corpus"] = f"{scale} distinct files (vowel-shifted copies), not links"
    return out


def sample_corpus(corpus: Path, n_docs: int, out: Path) -> Path:
    """The first ``n_docs`` documents of ``corpus`` as a parquet file (for smoke runs)."""
    pq.write_table(pq.read_table(corpus).slice(0, n_docs), out)
    return out


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 10), indent=2))
