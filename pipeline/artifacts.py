"""Where every artifact lives, and the bookkeeping that makes stages safe to rerun.

Layout of a run (``<artifacts>/<run>/``)::

    tokenizer/           the source tokenizer, saved once (save_pretrained layout)
    tokenize/            shards/train-00000.arrow ..., shards/heldout-00000.arrow ...,
                         dropped_examples.parquet
    count/               token_counts.parquet, eojeol_counts.parquet
    score/ select/ sweep/ prune/ ...   (later stages)
    run.log              human log with timestamps (never compared, never fingerprinted)

Every stage directory holds ``_DONE.json`` (fingerprint + sha256 of each file) and
``metrics.json`` (the stage's figures); ``<reports>/<run>/metrics.json`` merges them.

A stage is written into a hidden temporary sibling directory and renamed into place only when
complete, so an interrupted run never leaves a directory that looks finished. A stage whose
``_DONE.json`` carries the same fingerprint is skipped. No timestamps go into artifacts, so the
same inputs give byte-identical files.

It does not know what any stage computes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

DONE = "_DONE.json"
METRICS = "metrics.json"


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def fingerprint(*parts: Any) -> str:
    """sha256 of the canonical JSON of ``parts`` (config sections, upstream fingerprints...)."""
    return hashlib.sha256(canonical_json(parts).encode()).hexdigest()


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_json(path: Path, obj: Any) -> None:
    """Atomically write pretty, key-sorted JSON."""
    atomic_write_bytes(path, (json.dumps(obj, sort_keys=True, ensure_ascii=False, indent=2,
                                         default=_json_default) + "\n").encode())


def _json_default(o: Any):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_parquet(table, path: Path) -> None:
    """Write a pyarrow Table (or polars DataFrame) deterministically and atomically."""
    import pyarrow.parquet as pq

    if hasattr(table, "to_arrow"):
        table = table.to_arrow()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp, compression="zstd", write_statistics=True)
    os.replace(tmp, path)


@dataclass(frozen=True)
class RunPaths:
    """All paths of one run; nothing outside ``root`` and ``reports`` is ever written."""

    root: Path
    reports: Path

    @classmethod
    def from_config(cls, cfg) -> "RunPaths":
        root = Path(cfg.artifacts_dir) / cfg.run
        reports = Path(cfg.reports_dir) / cfg.run
        return cls(root, reports)

    def stage(self, name: str) -> Path:
        return self.root / name

    @property
    def tokenizer(self) -> Path:
        return self.stage("tokenizer")

    @property
    def shards(self) -> Path:
        return self.stage("tokenize") / "shards"

    def train_shards(self) -> list[Path]:
        return sorted(self.shards.glob("train-*.arrow"))

    def heldout_shards(self) -> list[Path]:
        return sorted(self.shards.glob("heldout-*.arrow"))

    @property
    def token_counts(self) -> Path:
        return self.stage("count") / "token_counts.parquet"

    @property
    def eojeol_counts(self) -> Path:
        return self.stage("count") / "eojeol_counts.parquet"

    @property
    def metrics(self) -> Path:
        return self.reports / "metrics.json"

    def log(self, msg: str) -> None:
        """Append a timestamped line to the run log (not an artifact; never compared)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "run.log", "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {msg}\n")


def read_done(stage_dir: Path) -> dict | None:
    try:
        return json.loads((stage_dir / DONE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def is_done(stage_dir: Path, fp: str) -> bool:
    done = read_done(stage_dir)
    return bool(done) and done.get("fingerprint") == fp


def stage_fingerprint(stage_dir: Path) -> str:
    done = read_done(stage_dir)
    if not done:
        raise FileNotFoundError(stage_dir)
    return done["fingerprint"]


def run_stage(paths: RunPaths, name: str, fp: str, work: Callable[[Path], dict],
              *, force: bool = False, say: Callable[[str], None] = print) -> tuple[Path, bool]:
    """Run ``work(tmp_dir) -> metrics`` unless ``name`` is done with fingerprint ``fp``.

    Returns ``(stage_dir, ran)``. On any exception the temporary directory is removed and the
    previous complete output (if any) is left untouched.
    """
    final = paths.stage(name)
    if not force and is_done(final, fp):
        say(f"[{name}] up to date, skipped")
        return final, False
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by a killed run
    tmp = final.parent / f".{name}.tmp-{os.getpid()}"
    tmp.mkdir()
    t0 = time.time()
    try:
        metrics = work(tmp) or {}
        write_json(tmp / METRICS, metrics)
        files = {p.relative_to(tmp).as_posix(): file_digest(p)
                 for p in sorted(tmp.rglob("*")) if p.is_file()}
        write_json(tmp / DONE, {"stage": name, "fingerprint": fp, "files": files})
        _swap_into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    paths.log(f"[{name}] done in {time.time() - t0:.1f}s fingerprint={fp[:12]}")
    say(f"[{name}] done in {time.time() - t0:.1f}s")
    return final, True


def _swap_into_place(tmp: Path, final: Path) -> None:
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    if final.exists():
        os.rename(final, old)
    os.rename(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def stage_metrics(stage_dir: Path) -> dict:
    try:
        return json.loads((stage_dir / METRICS).read_text())
    except FileNotFoundError:
        return {}


def merge_metrics(paths: RunPaths, stages: list[str], extra: dict | None = None) -> dict:
    """Merge the metrics of the given (completed) stages into reports/<run>/metrics.json."""
    merged: dict = {}
    for s in stages:
        if read_done(paths.stage(s)):
            _deep_update(merged, stage_metrics(paths.stage(s)))
    _deep_update(merged, extra or {})
    write_json(paths.metrics, merged)
    return merged


def _deep_update(dst: dict, src: dict) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_update(dst[k], v)
        else:
            dst[k] = v
