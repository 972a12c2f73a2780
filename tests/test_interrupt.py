"""Interrupted runs: SIGKILL during tokenizing, counting, scoring and pruning never leaves a
stage that looks complete but is not, and the rerun ends byte-identical to an uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.artifacts import DONE, file_digest

from .conftest import NSMC, ROOT

STAGES = ["tokenize", "count", "score", "prune"]
pytestmark = pytest.mark.slow


def _cmd(tmp: Path, corpus: Path, tok_dir: Path, root: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", "prune", "--no-progress", "--run", "k",
            "--corpus", str(corpus), "--tokenizer", str(tok_dir), "--model", "demo",
            "--set", f'artifacts_dir="{tmp / root}"', "--set", f'reports_dir="{tmp / (root + "_r")}"',
            "--set", "score.kiwi_max_eojeol_types=2000", "--set", "verify.logit_docs=4"]


def _kill_during(cmd: list[str], run_dir: Path, stage: str, timeout: float = 300) -> bool:
    """Start ``cmd``; SIGKILL it as soon as ``stage``'s temp dir exists. True if killed there."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    try:
        while time.time() - t0 < timeout:
            if list(run_dir.glob(f".{stage}.tmp-*")):
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
            if proc.poll() is not None:
                return False
            time.sleep(0.005)
        raise AssertionError(f"stage {stage} never started")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _assert_no_fake_complete(run_dir: Path) -> None:
    """Every stage directory that exists is complete: its done marker lists exactly its files
    with matching hashes."""
    for d in run_dir.iterdir():
        if not d.is_dir() or d.name.startswith("."):
            continue
        done = json.loads((d / DONE).read_text())
        files = {p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file()} - {DONE}
        assert files == set(done["files"]) - {DONE}, d
        for name, digest in done["files"].items():
            assert file_digest(d / name) == digest, (d, name)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in ("run.log", ".lock")}


def test_sigkill_in_every_stage_then_rerun_is_byte_identical(tmp_path, tekken):
    corpus = tmp_path / "nsmc_part.parquet"
    pq.write_table(pq.read_table(NSMC).slice(0, 12_000), corpus)
    tok_dir = tmp_path / "tok"
    tekken.save_pretrained(str(tok_dir))

    cmd = _cmd(tmp_path, corpus, tok_dir, "art")
    run_dir = tmp_path / "art" / "k"
    metrics = tmp_path / "art_r" / "k" / "metrics.json"
    ref = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert ref.returncode == 0, ref.stderr[-3000:]
    reference, ref_metrics = _tree(run_dir), metrics.read_bytes()
    shutil.rmtree(tmp_path / "art")
    shutil.rmtree(tmp_path / "art_r")

    killed = []
    for stage in STAGES:
        if _kill_during(cmd, run_dir, stage):
            killed.append(stage)
            if stage != "count":  # count is short: the kill may land just after its rename
                assert not (run_dir / stage / DONE).exists(), stage
        _assert_no_fake_complete(run_dir)
    assert "tokenize" in killed and "score" in killed and "prune" in killed, killed

    final = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert final.returncode == 0, final.stderr[-3000:]
    _assert_no_fake_complete(run_dir)
    assert not list(run_dir.glob(".*tmp-*"))
    assert _tree(run_dir) == reference
    assert metrics.read_bytes() == ref_metrics
