"""Analyze throughput vs bare `tokenizers` and a vocabtrimmer-style loop; peak RSS vs size.

All three are measured in one process run over the same texts (NSMC, 49.5 MB of Korean
reviews). Throughput = UTF-8 bytes of text / wall seconds.

- bare: ``Tokenizer.encode_batch_fast`` (Rust, both cores) over the same batches, nothing else.
- vocabtrimmer-style: ``tokenizer(batch)`` through transformers + Python dict counting, the
  loop existing vocabulary trimmers use.
- analyze: ``python -m pipeline analyze --until count``: corpus reading, NFC, fastText
  language filter, held-out split, tokenization, Arrow shards, Polars counts, from a fresh
  artifacts dir; once with the language filter and once without
  (``langid.min_korean_prob = 0``).

Peak RSS: ``analyze --until count`` in a child process on the corpus at 1x and at 10x (ten
copies of the file in one directory).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def peak_rss_child(corpus: Path, tok_dir: Path, workdir: Path) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of a full `analyze` in a fresh child process."""
    cmd = [sys.executable, "-m", "pipeline", "analyze", "--until", "count", "--no-progress", "--config",
           str(ROOT / "configs" / "default.toml"), "--run", "rss", "--corpus", str(corpus),
           "--tokenizer", str(tok_dir), "--set", f'artifacts_dir="{workdir / "a"}"',
           "--set", f'reports_dir="{workdir / "r"}"', "--force"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        raise RuntimeError(f"analyze failed: {proc.stderr.read().decode()[-2000:]}")
    return usage.ru_maxrss / 1024, wall


def run(scale: int = 10, corpus: Path = NSMC) -> dict:
    from pipeline.tokenizer_io import load_tokenizer

    texts = _texts(corpus)
    nbytes = sum(len(t.encode()) for t in texts)
    tok = load_tokenizer("tekken")
    out: dict = {"corpus": str(corpus.name), "documents": len(texts), "bytes": nbytes}
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        tok_dir = td / "tok"
        tok.save_pretrained(str(tok_dir))
        batch = 2048
        secs = {
            "bare_tokenizers": bare_tokenizers(tok, texts, batch),
            "vocabtrimmer_style": vocabtrimmer_style(tok, texts, batch),
            "analyze": analyze_once(corpus, tok_dir, td),
            "analyze_no_langid": analyze_once(corpus, tok_dir, td, "langid.min_korean_prob=0.0"),
        }
        mbps = {k: nbytes / v / 1e6 for k, v in secs.items()}
        out["seconds"] = {k: round(v, 2) for k, v in secs.items()}
        out["mb_per_s"] = {k: round(v, 2) for k, v in mbps.items()}
        out["ratio_analyze_to_bare"] = round(mbps["analyze"] / mbps["bare_tokenizers"], 3)
        out["ratio_analyze_no_langid_to_bare"] = round(
            mbps["analyze_no_langid"] / mbps["bare_tokenizers"], 3)
        out["ratio_analyze_to_vocabtrimmer"] = round(mbps["analyze"] / mbps["vocabtrimmer_style"], 3)
        del texts
        rss1, wall1 = peak_rss_child(corpus, tok_dir, td / "x1")
        big = td / f"x{scale}corpus"
        big.mkdir()
        for i in range(scale):
            os.symlink(corpus, big / f"copy{i:02d}.parquet")
        rssN, wallN = peak_rss_child(big, tok_dir, td / f"x{scale}")
        out["peak_rss_mib"] = {"1x": round(rss1, 1), f"{scale}x": round(rssN, 1)}
        out["wall_s"] = {"1x": round(wall1, 1), f"{scale}x": round(wallN, 1)}
        out["rss_growth"] = round(rssN / rss1, 3)
    return out


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 10), indent=2))
