"""Reliability round 2 (issue 13): the hostile-input matrix (tests/matrix.py, also in
docs/ERRORS.md) and the mechanisms behind it, each with a negative control: ownership before
replacing, one writer per run (two real processes), owner-tagged temporary folders, verified
done markers, bounded memory on one enormous document, disk faults, honest verification."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline.__main__ import main

from . import matrix
from .conftest import NSMC, ROOT


def run_case(tmp: Path, cmd: str, *args: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main([cmd, "--no-progress", "--run", "bad", "--set", f'artifacts_dir="{tmp / "a"}"',
                   "--set", f'reports_dir="{tmp / "r"}"',
                   # the fast demo model (and its Tekken tokenizer) unless a case names another
                   "--set", 'prune.model="demo"', *args])
    return rc, err.getvalue()


@pytest.fixture(scope="module")
def demo_model_dir(tmp_path_factory, tekken) -> Path:
    from pipeline.demo_model import save_demo_model

    return save_demo_model(tekken, tmp_path_factory.mktemp("demo") / "model")


CASES = matrix.cases(Path("/nonexistent"), Path("/nonexistent"), Path("/nonexistent"))


@pytest.mark.parametrize("i", range(len(CASES)), ids=[c.what for c in CASES])
def test_matrix(i, tmp_path, tekken_dir, demo_model_dir):
    case = matrix.cases(tmp_path, tekken_dir, demo_model_dir)[i]
    if case.needs_root_mount and not matrix.mount_tmpfs(tmp_path / "probe", "size=64k"):
        pytest.skip("needs root and tmpfs mounts (see test_disk_full_injected for the rest)")
    matrix.umount(tmp_path / "probe")
    cleanup = case.prepare(tmp_path) if case.prepare else None
    try:
        args = case.args(tmp_path) if callable(case.args) else case.args
        rc, err = run_case(tmp_path, case.cmd, *args)
        _assert_case(case, tmp_path, rc, err)
    finally:
        if cleanup:
            cleanup()


def _assert_case(case, tmp_path: Path, rc: int, err: str) -> None:
    assert rc == case.rc, err[-3000:]
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    text = lines[0] if case.rc else err
    if case.rc:
        assert len(lines) == 1, err  # one paragraph
    for n in case.needles:
        assert n in text, (n, text)
    if case.rc:  # nothing that looks complete for a failed command
        art = tmp_path / "a" / "bad"
        last = "prune" if case.cmd == "prune" else "tokenize"  # analysis may complete first
        assert not (art / last / "_DONE.json").exists()
        assert not list(art.glob(".*.tmp-*")) if art.is_dir() else True
    if case.check:
        case.check(tmp_path)


def test_matrix_has_at_least_60_cases_with_errors_md():
    text = (ROOT / "docs" / "ERRORS.md").read_text()
    rows = [ln for ln in text.splitlines() if ln.startswith("| `")]
    assert len(rows) >= 60
    for c in CASES:
        assert c.what in text, c.what


# -- one writer per run: two real processes ------------------------------------------------------

def test_second_command_on_a_run_fails_at_once_naming_the_holder(tmp_path, tekken_dir):
    corpus = tmp_path / "part.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pq.read_table(NSMC).slice(0, 60_000), corpus)
    cmd = [sys.executable, "-m", "pipeline", "analyze", "--no-progress", "--run", "c",
           "--until", "tokenize", "--corpus", str(corpus), "--tokenizer", str(tekken_dir),
           "--set", f'artifacts_dir="{tmp_path / "a"}"', "--set", f'reports_dir="{tmp_path / "r"}"']
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)
    lock = tmp_path / "a" / "c" / ".lock"
    t0 = time.time()
    while not (lock.exists() and lock.read_text().strip()):
        assert first.poll() is None, first.communicate()
        assert time.time() - t0 < 120
        time.sleep(0.05)
    t1 = time.time()
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert second.returncode == 5, second.stderr
    assert f"pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
    assert first.poll() is None, "the second command must fail while the first still runs"
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    done = json.loads((tmp_path / "a" / "c" / "tokenize" / "_DONE.json").read_text())
    from pipeline.artifacts import damage

    assert damage(tmp_path / "a" / "c" / "tokenize", done, digests=True) == ""
    assert time.time() - t1 < 600
    # after the holder exits, the run is free again (and its temp folder was never touched)
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and "up to date" in again.stderr, again.stderr


def test_lock_is_released_by_kill_and_reentrant_in_process(tmp_path):
    from pipeline.artifacts import RunLock
    from pipeline.errors import RunBusy

    d = tmp_path / "run"
    p = matrix.holder(d)
    with pytest.raises(RunBusy, match=f"pid {p.pid}"):
        RunLock(d).acquire()
    p.send_signal(signal.SIGKILL)
    p.wait()
    a = RunLock(d).acquire()
    b = RunLock(d).acquire()  # the same process: re-entrant
    b.release()
    a.release()


# -- temporary folders: stale only when the owner is dead ----------------------------------------

def test_stale_temp_removed_only_when_its_owner_is_dead(tmp_path):
    from pipeline.safety import owner_tag, remove_stale

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        final = tmp_path / "tokenize"
        dead = tmp_path / ".tokenize.tmp-999999999-5"
        mine = tmp_path / f".tokenize.tmp-{owner_tag()}"
        theirs = tmp_path / f".tokenize.tmp-{owner_tag(live.pid)}"
        reused = tmp_path / f".tokenize.tmp-{live.pid}-1"  # pid reused by another process
        other = tmp_path / ".tokenizer.tmp-999999999-5"     # another stage's
        for d in (dead, mine, theirs, reused, other):
            d.mkdir()
        removed = remove_stale(final)
        assert sorted(removed) == sorted([dead, reused])
        assert mine.exists() and theirs.exists() and other.exists()
    finally:
        live.kill()
        live.wait()


def test_interrupted_export_leaves_no_temp_folder_after_rerun(tmp_path):
    from pipeline.prune import PROVENANCE, export_output

    stage = tmp_path / "stage"
    (stage / "model").mkdir(parents=True)
    (stage / "model" / "config.json").write_text("{}")
    (stage / "model" / PROVENANCE).write_text(json.dumps(
        {"tool": "pipeline", "files": {"config.json": {"bytes": 2, "sha256": ""}}}))
    out = tmp_path / "out"
    killed = tmp_path / ".out.tmp-999999999-7"  # what a kill -9 during the copy leaves
    killed.mkdir()
    (killed / "config.json").write_text("{")
    old = tmp_path / ".out.old-999999999-7"      # a kill between the two renames
    old.mkdir()
    run = SimpleNamespace(cfg=SimpleNamespace(prune=SimpleNamespace(output_dir=str(out))),
                          say=lambda m: None, paths=SimpleNamespace(log=lambda m: None))
    assert export_output(run, stage) == out.resolve()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "stage"]
    assert (out / "config.json").read_text() == "{}"
    # an export over an earlier output replaces it; one the user added to is refused
    (out / "mine.txt").write_text("user")
    (stage / "model" / "config.json").write_text("{ }")
    (stage / "model" / PROVENANCE).write_text(json.dumps(
        {"tool": "pipeline", "files": {"config.json": {"bytes": 3, "sha256": ""}}}))
    from pipeline.errors import InputError

    with pytest.raises(InputError, match="mine.txt"):
        export_output(run, stage)
    assert (out / "mine.txt").read_text() == "user"


# -- verified markers ----------------------------------------------------------------------------

def test_done_marker_checks_sizes_always_and_digests_on_request(tmp_path):
    from pipeline.artifacts import RunPaths, is_done, run_stage

    paths = RunPaths(tmp_path / "a" / "r", tmp_path / "rep")
    calls = []

    def work(tmp):
        calls.append(1)
        (tmp / "data.bin").write_bytes(b"0123456789")
        return {}

    d, ran = run_stage(paths, "s", "fp1", work, say=lambda m: None)
    assert ran and is_done(d, "fp1")
    assert not run_stage(paths, "s", "fp1", work, say=lambda m: None)[1]
    (d / "data.bin").write_bytes(b"0123456789"[:5])            # truncated
    assert not is_done(d, "fp1")
    assert run_stage(paths, "s", "fp1", work, say=lambda m: None)[1]
    (d / "data.bin").write_bytes(b"X123456789")                # same size, other bytes
    assert is_done(d, "fp1") and not is_done(d, "fp1", digests=True)
    assert run_stage(paths, "s", "fp1", work, say=lambda m: None, digests=True)[1]
    assert (d / "data.bin").read_bytes() == b"0123456789" and len(calls) == 3


def test_a_failing_stage_is_not_marked_done_and_leaves_no_temp(tmp_path):
    from pipeline.artifacts import RunPaths, run_stage

    paths = RunPaths(tmp_path / "a" / "r", tmp_path / "rep")

    def work(tmp):
        (tmp / "half.bin").write_bytes(b"x")
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "half.bin"))

    with pytest.raises(OSError):
        run_stage(paths, "s", "fp", work, say=lambda m: None)
    assert sorted(p.name for p in paths.root.iterdir()) == []


# -- environment faults without mounts (monkeypatched at the write layer) ------------------------

@pytest.mark.parametrize("code,name", [(errno.ENOSPC, "ENOSPC"), (errno.EROFS, "EROFS"),
                                       (errno.EACCES, "EACCES")])
def test_disk_fault_injected(code, name, tmp_path, tekken_dir, monkeypatch):
    """Where tmpfs mounts are impossible (not root), the same faults injected where the shards
    are written: one line naming the path and errno, temp cleaned, nothing marked done."""
    import pipeline.shards as shards

    def refuse(self):
        raise OSError(code, os.strerror(code), str(self.out_dir / "train-00000.arrow"))

    monkeypatch.setattr(shards.ShardWriter, "_open", refuse)
    rc, err = run_case(tmp_path, "analyze", "--corpus", matrix.write(tmp_path, "k.txt", matrix.KO),
                       "--tokenizer", str(tekken_dir))
    assert rc == 4, err
    line = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(line) == 1 and name in line[0] and "train-00000.arrow" in line[0], err
    art = tmp_path / "a" / "bad"
    assert not (art / "tokenize").exists() and not list(art.glob(".*.tmp-*"))


def test_other_os_errors_are_not_disguised(tmp_path):
    from pipeline.safety import disk_error

    assert disk_error(OSError(errno.ENOENT, "x", "p")) is None  # negative control
    assert "ENOSPC" in str(disk_error(OSError(errno.ENOSPC, "x", "/some/path")))


# -- bounded memory on one enormous document -----------------------------------------------------

_MEM = """
import sys, tracemalloc
sys.path.insert(0, sys.argv[1])
from pipeline.config import load_config
from pipeline.corpus import resolve_source
cfg = load_config(None, {"corpus.source": sys.argv[2], "corpus.max_doc_bytes": int(sys.argv[3])})
src = resolve_source(cfg.corpus, 1000)
tracemalloc.start()
n = total = 0
for b in src.batches(8):
    n += len(b); total += sum(len(t) for t in b.texts)
print(n, total, tracemalloc.get_traced_memory()[1])
"""


def test_enormous_single_line_is_read_in_bounded_pieces(tmp_path):
    f = tmp_path / "huge.txt"
    word = "가나다라마바사 "
    with open(f, "w", encoding="utf-8") as fh:  # ~40 MB, one line
        for _ in range(40):
            fh.write(word * 47_000)
        fh.write("\n마지막 줄\n")
    size = f.stat().st_size

    def peak(max_doc_bytes: int) -> tuple[int, int, int]:
        r = subprocess.run([sys.executable, "-c", _MEM, str(ROOT), str(f), str(max_doc_bytes)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return tuple(map(int, r.stdout.split()))

    n, chars, bounded = peak(1 << 20)
    assert n > 30 and chars == len(word) * 47_000 * 40 + len("마지막 줄")
    assert bounded < 24 << 20, bounded        # a batch of 8 pieces of 1 MiB, not 40 MB
    # negative control: a bound larger than the line holds the whole line
    _, _, whole = peak((1 << 31) - 1)
    assert whole > size, (whole, size)


def test_split_pieces_keep_id_group_and_text(tmp_path):
    from pipeline.corpus import DocBatch, split_long_documents, split_text

    text = "첫 문장 " * 500 + "긴단어" * 400
    pieces = split_text(text, 256)
    assert "".join(pieces) == text and all(len(p.encode()) <= 256 for p in pieces)
    b = split_long_documents(DocBatch(["d"], ["g"], ["s"], [text]), 256)
    assert set(b.ids) == {"d"} and set(b.groups) == {"g"} and "".join(b.texts) == text


# -- honest verification -------------------------------------------------------------------------

def test_verification_does_not_pass_on_zero_documents():
    from pipeline.verify import summarize

    m = {"heldout": {"identical_ratio": None, "identical_share_selected": None,
                     "roundtrip_regressions": 0, "documents_verified": 0},
         "fertility": {"after": None, "after_selected": None},
         "logits": {"max_abs_diff": None}, "generate": {"agree_restricted": None},
         "vocab": {"after": 5, "matches_kept": True}, "chat_template": {}}
    vc = SimpleNamespace(logit_tolerance=1e-5)
    s = summarize(m, 5, vc)
    assert s["passed"] is False and "roundtrip_no_regression" in s["not_run"]
    # control: the same checks having run on documents pass
    m["heldout"].update(identical_ratio=1.0, identical_share_selected=1.0, documents_verified=3)
    m["fertility"].update(after=1.5, after_selected=1.5)
    m["logits"]["max_abs_diff"] = 0.0
    m["generate"]["agree_restricted"] = 1.0
    assert summarize(m, 5, vc)["passed"] is True
