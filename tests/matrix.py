"""The hostile-input matrix of reliability round 2 (issue 13): shared by
tests/test_reliability.py (which asserts every case and its aftermath) and
docs/make_errors_table.py (which runs every case for real and writes docs/ERRORS.md).

A case runs one CLI command in-process with ``--run bad``, ``artifacts_dir = <tmp>/a`` and
``reports_dir = <tmp>/r`` (a case's own ``--set``/``--run`` come later and win). ``prepare``
builds the bad input (and may return a cleanup callable), ``check`` asserts the aftermath
(what must not have been deleted, written or marked done).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
KO = "한국어 문장입니다. 오늘 날씨가 좋네요.\n좋은 영화였어요 정말로.\n"
# 40 documents, one group each: some are held out, most are counted
KO_MANY = "".join(f"{i}번째 문장입니다. 오늘 날씨가 좋네요.\n" for i in range(40))
MANY = ("--set", "heldout.block_size=1")


@dataclass
class Case:
    cmd: str
    what: str
    args: Callable[[Path], tuple] | tuple
    rc: int = 2
    needles: tuple = ()
    prepare: Callable | None = None      # prepare(tmp) -> optional cleanup()
    check: Callable | None = None        # check(tmp): the aftermath
    show: str = ""                       # for rc 0: the stderr line to show (contains this)
    needs_root_mount: bool = False
    extra: dict = field(default_factory=dict)


# -- helpers ------------------------------------------------------------------------------------

def write(tmp: Path, name: str, data: bytes | str) -> str:
    p = tmp / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(p)


def tokenizer_json(model: dict, added: list | None = None) -> str:
    return json.dumps({"version": "1.0", "truncation": None, "padding": None,
                       "added_tokens": added or [], "normalizer": None,
                       "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None,
                       "decoder": None, "model": model})


def added(i: int, content: str) -> dict:
    return {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": True}


def bpe(vocab: dict, unk=None) -> dict:
    return {"type": "BPE", "vocab": vocab, "merges": [], "dropout": None, "unk_token": unk,
            "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": False,
            "byte_fallback": False}


def gguf_file(tmp: Path, name: str, arch: str) -> str:
    """A minimal GGUF file (one small F32 tensor) declaring ``arch``."""
    import gguf
    import numpy as np

    p = tmp / name
    p.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(p), arch)
    w.add_name("tiny test")
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(p)


def tree(d: Path) -> dict:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*"))
            if p.is_file()}


def copy_model(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def holder(lock_dir: Path) -> subprocess.Popen:
    """Another process holding the run lock of ``lock_dir`` (as a running command would)."""
    code = ("import sys,time; sys.path.insert(0, sys.argv[2]); "
            "from pipeline.artifacts import RunLock; from pipeline.safety import claim_dir; "
            "from pathlib import Path; d=Path(sys.argv[1]); claim_dir(d, d.parent); "
            "RunLock(d).acquire(); print('locked', flush=True); time.sleep(600)")
    p = subprocess.Popen([sys.executable, "-c", code, str(lock_dir), str(ROOT)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


def mount_tmpfs(d: Path, opts: str) -> bool:
    d.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(d)],
                       capture_output=True)
    return r.returncode == 0


def umount(d: Path) -> None:
    subprocess.run(["umount", str(d)], capture_output=True)


# -- the cases ----------------------------------------------------------------------------------

def cases(tmp: Path, tok: Path, model: Path) -> list[Case]:
    """Every new case; ``tok`` a saved Tekken directory, ``model`` a demo model directory with
    its tokenizer. Nothing is built until a case's ``args``/``prepare`` runs."""
    tk = ("--tokenizer", str(tok))
    ok = lambda t: write(t, "ok.txt", KO)  # noqa: E731
    many = lambda t: write(t, "many.txt", KO_MANY)  # noqa: E731
    user_file = b"the user's own notes\n"

    def own_art(t: Path, name: str) -> tuple:
        return ("--set", f'artifacts_dir="{t / name}"', "--set", f'reports_dir="{t / (name + "_r")}"')

    # class 1: nothing of the user's is deleted or written into -------------------------------
    def user_run_folder(t):
        write(t, "ua/bad/tokenize/mine.txt", user_file)
        write(t, "ua/bad/notes.txt", user_file)

    def user_run_folder_kept(t):
        assert (t / "ua/bad/tokenize/mine.txt").read_bytes() == user_file
        assert sorted(p.name for p in (t / "ua/bad").iterdir()) == ["notes.txt", "tokenize"]

    def foreign_stage(t):
        write(t, "fs/bad/.pipeline-run", "x")
        write(t, "fs/bad/tokenize/mine.txt", user_file)

    def foreign_stage_kept(t):
        assert (t / "fs/bad/tokenize/mine.txt").read_bytes() == user_file
        assert not (t / "fs/bad/tokenize/_DONE.json").exists()

    def linked_stage(t):
        write(t, "outside/keep.txt", user_file)
        (t / "ls/bad").mkdir(parents=True)
        (t / "ls/bad/tokenize").symlink_to(t / "outside")

    def outside_kept(t):
        assert tree(t / "outside") == {"keep.txt": user_file}

    def linked_run(t):
        write(t, "outside/keep.txt", user_file)
        (t / "lr").mkdir(parents=True)
        (t / "lr/bad").symlink_to(t / "outside")

    def user_reports(t):
        write(t, "ur_r/bad/index.html", "<p>my page</p>")
        write(t, "ur_r/bad/draft.md", "my draft")

    def user_reports_kept(t):
        assert (t / "ur_r/bad/index.html").read_text() == "<p>my page</p>"

    def out_with_user_file(t):
        write(t, "out1/provenance.json", json.dumps({"tool": "pipeline", "files": {
            "config.json": {"bytes": 2, "sha256": ""}}}))
        write(t, "out1/config.json", "{}")
        write(t, "out1/my_notes.txt", user_file)

    def out1_kept(t):
        assert (t / "out1/my_notes.txt").read_bytes() == user_file

    def out_changed(t):
        write(t, "out2/provenance.json", json.dumps({"tool": "pipeline", "files": {
            "config.json": {"bytes": 2, "sha256": ""}}}))
        write(t, "out2/config.json", '{"edited": true}')

    def out_legacy(t):
        write(t, "out3/provenance.json", json.dumps({"tool": "pipeline"}))
        write(t, "out3/model.safetensors", b"weights")

    def model_copy(name):
        def prep(t):
            copy_model(model, t / name)
        return prep

    def model_untouched(name):
        def chk(t):
            assert tree(t / name) == tree(model), "the source model directory was written to"
        return chk

    def model_untouched_but(name):
        def chk(t):
            assert not list((t / name).glob(".*")) and (t / name / "model.safetensors").read_bytes() \
                == (model / "model.safetensors").read_bytes()
        return chk

    def model_in_run(t):
        copy_model(model, t / "mr/bad/prune/model")

    # class 2: one writer per run --------------------------------------------------------------
    def locked(t):
        (t / "lk").mkdir(parents=True, exist_ok=True)
        p = holder(t / "lk" / "bad")

        def cleanup():
            p.send_signal(signal.SIGKILL)
            p.wait()
        return cleanup

    def stale_tmp(t):
        write(t, "st/bad/.tokenize.tmp-999999999-1/x.arrow", "half")
        write(t, "st/bad/.pipeline-run", "x")
        return None

    def stale_removed(t):
        assert not list((t / "st/bad").glob(".tokenize.tmp-*"))
        assert (t / "st/bad/tokenize/_DONE.json").is_file()

    # class 3: verified markers ----------------------------------------------------------------
    def analyzed(name, damage):
        def prep(t):
            from pipeline.__main__ import main

            import contextlib
            import io
            with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
                rc = main(["analyze", "--no-progress", "--run", "bad", "--until", "tokenize",
                           "--corpus", many(t), *tk, *MANY, *own_art(t, name)])
            assert rc == 0
            damage(t / name / "bad" / "tokenize")
        return prep

    def truncate(d):
        f = sorted((d / "shards").glob("train-*.arrow"))[0]
        f.write_bytes(f.read_bytes()[:100])

    def delete(d):
        sorted((d / "shards").glob("train-*.arrow"))[0].unlink()

    def flip(d):
        f = sorted((d / "shards").glob("train-*.arrow"))[0]
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0xFF
        f.write_bytes(bytes(data))

    def cut_done(d):
        f = d / "_DONE.json"
        f.write_bytes(f.read_bytes()[:40])

    def redone(name):
        def chk(t):
            from pipeline.artifacts import damage, read_done

            d = t / name / "bad" / "tokenize"
            assert damage(d, read_done(d), digests=True) == ""
        return chk

    # class 4: typed, bounded input -------------------------------------------------------------
    def parquet(name, table):
        def a(t):
            p = t / name
            pq.write_table(table, p)
            return ("--corpus", str(p), *tk)
        return a

    def bad_utf8_parquet(t):
        arr = pa.array([b"ok", "좋은 영화".encode(), b"\xff\xfe bad"], pa.binary())
        s = pa.Array.from_buffers(pa.string(), 3, arr.buffers())
        p = t / "badutf8.parquet"
        pq.write_table(pa.table({"text": s}), p)
        return ("--corpus", str(p), *tk)

    def int_arrow(t):
        p = t / "ints.arrow"
        tb = pa.table({"text": [1, 2]})
        with pa.OSFile(str(p), "wb") as sink, pa.ipc.new_file(sink, tb.schema) as w:
            w.write_table(tb)
        return ("--corpus", str(p), *tk)

    def tok_case(name, text):
        return lambda t: ("--corpus", ok(t), "--tokenizer", write(t, name, text))

    nan_cfg = lambda t: ("--config", write(t, "nan.toml", "[langid]\nmin_korean_prob = nan\n"))  # noqa: E731

    # class 6: environment faults -------------------------------------------------------------
    def full_disk(t):
        if not mount_tmpfs(t / "full", "size=256k"):
            raise RuntimeError("cannot mount tmpfs")
        return lambda: umount(t / "full")

    def nothing_done(d):
        def chk(t):
            root = t / d
            assert not list(root.rglob("_DONE.json")), "nothing may be marked done"
            assert not list(root.rglob(".*.tmp-*")), "temporary folders must be cleaned"
        return chk

    def full_during_shards(t):
        """A tmpfs holding a finished run; then filled up to ~300 KiB, so the next tokenize
        stage (another corpus) runs out of space while pyarrow writes the shards."""
        if not mount_tmpfs(t / "fs2", "size=48m"):
            raise RuntimeError("cannot mount tmpfs")
        analyzed("fs2/art", lambda d: None)(t)
        with open(t / "fs2" / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * (1 << 20))
                    f.flush()
            except OSError:
                pass
        size = (t / "fs2" / "filler").stat().st_size
        os.truncate(t / "fs2" / "filler", max(0, size - (300 << 10)))
        return lambda: umount(t / "fs2")

    def previous_kept(t):
        from pipeline.artifacts import damage, read_done

        d = t / "fs2/art/bad/tokenize"
        assert damage(d, read_done(d), digests=True) == "", "the previous stage stays intact"
        assert not list((t / "fs2/art/bad").glob(".*.tmp-*"))

    def readonly(t):
        if not mount_tmpfs(t / "ro", "size=1m,ro"):
            raise RuntimeError("cannot mount tmpfs")
        return lambda: umount(t / "ro")

    def outside_index(t):
        m = copy_model(model, t / "model_outside_index")
        (m / "model.safetensors").rename(t / "elsewhere.safetensors")
        (m / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {}, "weight_map": {"model.embed_tokens.weight": "../elsewhere.safetensors"}}))

    def bad_index(t):
        m = copy_model(model, t / "model_bad_index")
        (m / "model.safetensors.index.json").write_text(json.dumps({"weight_map": [1, 2]}))

    def bad_act(t):
        m = copy_model(model, t / "model_bad_act")
        c = json.loads((m / "config.json").read_text())
        c["hidden_act"] = "no_such_activation"
        (m / "config.json").write_text(json.dumps(c))

    pm = ("--tokenizer", str(model), "--model")
    return [
        # 1. never delete or write what we did not write
        Case("analyze", "artifacts_dir/<run> is an existing folder of the user's",
             lambda t: ("--corpus", ok(t), *tk, *own_art(t, "ua")), 2,
             ("ua/bad", "did not write", "notes.txt"), user_run_folder, user_run_folder_kept),
        Case("analyze", "a stage folder holding the user's files (no _DONE.json)",
             lambda t: ("--corpus", ok(t), *tk, *own_art(t, "fs")), 2,
             ("tokenize", "not written by the pipeline"), foreign_stage, foreign_stage_kept),
        Case("analyze", "a stage folder that is a symlink leading out of artifacts/",
             lambda t: ("--corpus", ok(t), *tk, *own_art(t, "ls")), 2,
             ("symbolic link",), linked_stage, outside_kept),
        Case("analyze", "the run folder is a symlink leading out of artifacts_dir",
             lambda t: ("--corpus", ok(t), *tk, *own_art(t, "lr")), 2,
             ("symbolic link", "outside"), linked_run, outside_kept),
        Case("analyze", "reports_dir/<run> is an existing folder of the user's",
             lambda t: ("--corpus", ok(t), *tk, *own_art(t, "ur")), 2,
             ("ur_r/bad", "draft.md"), user_reports, user_reports_kept),
        Case("prune", "--output-dir: an earlier output plus a file the user added",
             lambda t: ("--corpus", ok(t), *tk, "--output-dir", str(t / "out1")), 2,
             ("out1", "my_notes.txt", "not replaced"), out_with_user_file, out1_kept),
        Case("prune", "--output-dir: an earlier output with a file the user edited",
             lambda t: ("--corpus", ok(t), *tk, "--output-dir", str(t / "out2")), 2,
             ("out2", "config.json was changed"), out_changed),
        Case("prune", "--output-dir: provenance.json that lists no files",
             lambda t: ("--corpus", ok(t), *tk, "--output-dir", str(t / "out3")), 2,
             ("out3", "no provenance.json listing"), out_legacy),
        Case("prune", "--output-dir is an existing file",
             lambda t: ("--corpus", ok(t), *tk, "--output-dir", write(t, "afile", "x")), 2,
             ("afile", "is a file")),
        Case("prune", "artifacts_dir inside the source model directory",
             lambda t: ("--corpus", ok(t), *pm, str(t / "m1"),
                        "--set", f'artifacts_dir="{t / "m1" / "art"}"'), 2,
             ("Artifacts folder", "inside the source model directory"), model_copy("m1"),
             model_untouched("m1")),
        Case("prune", "reports_dir inside the source model directory",
             lambda t: ("--corpus", ok(t), *pm, str(t / "m2"),
                        "--set", f'reports_dir="{t / "m2" / "rep"}"'), 2,
             ("Reports folder", "inside the source model directory"), model_copy("m2"),
             model_untouched("m2")),
        Case("prune", "source model inside the run's artifacts folder",
             lambda t: ("--corpus", ok(t), *pm, str(t / "mr/bad/prune/model"),
                        "--set", f'artifacts_dir="{t / "mr"}"'), 2,
             ("contains the source model directory",), model_in_run),
        Case("prune", "output directory contains the source model directory",
             lambda t: ("--corpus", ok(t), *pm, str(t / "m3" / "inner"),
                        "--output-dir", str(t / "m3")), 2,
             ("contains the source model directory",), model_copy("m3/inner")),
        Case("analyze", "artifacts_dir inside the corpus directory",
             lambda t: ("--corpus", str(Path(write(t, "corpusdir/a.txt", KO)).parent), *tk,
                        "--set", f'artifacts_dir="{t / "corpusdir" / "art"}"'), 2,
             ("inside the corpus directory", "read its own files back")),
        Case("analyze", "reports_dir inside the tokenizer directory",
             lambda t: ("--corpus", ok(t), "--tokenizer", str(copy_model(tok, t / "tokdir")),
                        "--set", f'reports_dir="{t / "tokdir" / "reports"}"'), 2,
             ("Reports folder", "inside the tokenizer directory"), None,
             lambda t: tree(t / "tokdir") == tree(tok) or (_ for _ in ()).throw(AssertionError)),
        Case("analyze", "run folder holding an earlier --output-dir export and empty folders",
             lambda t: ("--corpus", many(t), *tk, *MANY, *own_art(t, "ex"), "--until",
                        "tokenize"), 0, (), lambda t: (
                 write(t, "ex/bad/export/provenance.json", json.dumps(
                     {"tool": "pipeline", "files": {"config.json": {"bytes": 2}}})),
                 write(t, "ex/bad/export/config.json", "{}"), (t / "ex/bad/empty").mkdir()) and None,
             lambda t: (t / "ex/bad/export/config.json").read_text() == "{}" or
             (_ for _ in ()).throw(AssertionError), show="[tokenize] done"),
        # 2. one writer per run
        Case("analyze", "a second command on a run another command holds",
             lambda t: ("--corpus", ok(t), *tk, *own_art(t, "lk")), 5,
             ("in use by another pipeline command", "pid"), locked),
        Case("analyze", "a temp folder of a killed run (owner dead) is cleaned",
             lambda t: ("--corpus", many(t), *tk, *MANY, *own_art(t, "st"), "--until", "tokenize"), 0,
             (), stale_tmp, stale_removed, show="[tokenize] done"),
        # 3. verified markers
        Case("analyze", "a completed stage with a truncated shard",
             lambda t: ("--corpus", many(t), *tk, *MANY, *own_art(t, "d1"), "--until", "tokenize"), 0,
             ("damaged", "bytes, not the"), analyzed("d1", truncate), redone("d1"),
             show="damaged"),
        Case("analyze", "a completed stage with a deleted shard",
             lambda t: ("--corpus", many(t), *tk, *MANY, *own_art(t, "d2"), "--until", "tokenize"), 0,
             ("damaged", "is missing"), analyzed("d2", delete), redone("d2"), show="damaged"),
        Case("analyze", "a shard corrupted in place (same size), --check-digests",
             lambda t: ("--corpus", many(t), *tk, *MANY, *own_art(t, "d3"), "--until", "tokenize",
                        "--check-digests"), 0,
             ("damaged", "sha256"), analyzed("d3", flip), redone("d3"), show="damaged"),
        Case("analyze", "a completed stage whose _DONE.json is truncated",
             lambda t: ("--corpus", many(t), *tk, *MANY, *own_art(t, "d4"), "--until",
                        "tokenize"), 0, ("[tokenize] done",), analyzed("d4", cut_done),
             redone("d4"), show="[tokenize] done"),
        # 4. typed, bounded input
        Case("analyze", "integer text column (Parquet)",
             parquet("ints.parquet", pa.table({"text": [1, 2, 3]})), 2,
             ("ints.parquet", "int64", "not text")),
        Case("analyze", "list text column (Parquet)",
             parquet("lists.parquet", pa.table({"text": [["가"], ["나"]], "s": ["a", "b"]})), 2,
             ("lists.parquet", "list", "not text", "(s)")),
        Case("analyze", "integer text column (Arrow)", int_arrow, 2, ("ints.arrow", "not text")),
        Case("analyze", "invalid UTF-8 inside a Parquet string column", bad_utf8_parquet, 2,
             ("badutf8.parquet row 2", "not valid UTF-8")),
        Case("analyze", "JSONL record whose text is a number",
             lambda t: ("--corpus", write(t, "num.jsonl", '{"text": "좋다"}\n{"text": 42}\n'), *tk),
             2, ("num.jsonl line 2", "int", "not text")),
        Case("analyze", "JSONL line that is a JSON array",
             lambda t: ("--corpus", write(t, "arr.jsonl", '{"text": "좋다"}\n["좋다"]\n'), *tk),
             2, ("arr.jsonl line 2",)),
        Case("analyze", "a file holding only a UTF-8 BOM",
             lambda t: ("--corpus", write(t, "bom.txt", b"\xef\xbb\xbf\n"), *tk), 2,
             ("bom.txt", "is empty")),
        Case("analyze", "unsupported corpus file type",
             lambda t: ("--corpus", write(t, "data.csv", "text\n좋다\n"), *tk), 2,
             ("data.csv", "unsupported file type")),
        Case("analyze", "corpus directory without corpus files",
             lambda t: ("--corpus", str(Path(write(t, "emptydir/readme.md", "x")).parent), *tk),
             2, ("emptydir", "no corpus files")),
        Case("analyze", "corpus glob matching nothing",
             lambda t: ("--corpus", str(t / "nothing-*.txt"), *tk), 2, ("matches",)),
        Case("analyze", "tokenizer with an id hole",
             tok_case("hole.json", tokenizer_json({"type": "WordLevel", "vocab": {"a": 0, "c": 2},
                                                   "unk_token": "a"})), 2,
             ("hole.json", "inconsistent", "no token")),
        Case("analyze", "tokenizer listing a token twice",
             tok_case("dup.json", tokenizer_json({"type": "WordLevel", "vocab": {"a": 0, "b": 1},
                                                  "unk_token": "a"}, [added(2, "b")])), 2,
             ("dup.json", "twice")),
        Case("analyze", "tokenizer.json with a duplicate vocabulary key",
             tok_case("dupkey.json", tokenizer_json(bpe({"a": 0, "b": 1})).replace(
                 '"b": 1', '"b": 1, "a": 2')), 2, ("dupkey.json", "twice")),
        Case("analyze", "tokenizer with an empty vocabulary",
             tok_case("empty_vocab.json", tokenizer_json(bpe({}))), 2,
             ("empty_vocab.json", "empty vocabulary")),
        Case("analyze", "tokenizer giving 0 tokens for non-empty documents",
             tok_case("zero.json", tokenizer_json(bpe({"a": 0, "b": 1}))), 2,
             ("zero.json", "0 tokens")),
        Case("analyze", "tokenizer whose unknown token is missing (library error)",
             tok_case("nounk.json", tokenizer_json({"type": "WordLevel", "vocab": {"a": 0, "b": 1},
                                                    "unk_token": "[UNK]"})), 2,
             ("nounk.json", "failed on the corpus", "UNK")),
        Case("analyze", "tokenizer.json that is not JSON",
             tok_case("garbage.json", "{not json"), 2, ("garbage.json",)),
        Case("analyze", "tokenizer directory whose tokenizer_config.json is not JSON",
             lambda t: ("--corpus", ok(t), "--tokenizer",
                        str(Path(write(t, "badcfg/tokenizer_config.json", "{oops")).parent)), 2,
             ("badcfg",)),
        # 5. config: typed and bounded
        Case("analyze", "NaN threshold in a config file", nan_cfg, 2,
             ("langid.min_korean_prob", "finite")),
        Case("analyze", "infinite tolerance", ("--set", "verify.logit_tolerance=inf"), 2,
             ("verify.logit_tolerance", "finite")),
        Case("analyze", "list element of the wrong type",
             ("--set", "select.keep_scripts=[1]"), 2, ("select.keep_scripts`[0]", "string")),
        Case("analyze", "negative element in a sweep grid",
             ("--set", "sweep.min_count=[1, -2]"), 2, ("sweep.min_count`[1]", "out of range")),
        Case("analyze", "sweep grid that is not a list", ("--set", "sweep.min_count=5"), 2,
             ("sweep.min_count", "must be a list")),
        Case("analyze", "seed beyond 32 bits", ("--set", "prune.demo_seed=1099511627776"), 2,
             ("prune.demo_seed", "4294967295")),
        Case("analyze", "integer beyond int32 (Arrow) bound",
             ("--set", "tokenize.shard_bytes=4294967296"), 2, ("tokenize.shard_bytes", "2147483647")),
        Case("analyze", "huge integer for batch_docs",
             ("--set", "tokenize.batch_docs=99999999999999999"), 2, ("tokenize.batch_docs",)),
        Case("analyze", "boolean where an integer is expected",
             ("--set", "select.min_count=true"), 2, ("select.min_count", "integer", "bool")),
        Case("analyze", "string where a number is expected",
             ("--set", 'langid.min_korean_prob="high"'), 2, ("langid.min_korean_prob", "number")),
        Case("analyze", "empty artifacts_dir", ("--set", 'artifacts_dir=""'), 2,
             ("artifacts_dir", "may not be empty")),
        Case("analyze", "NUL character in a path", ("--set", 'corpus.source="a\\u0000b"'), 2,
             ("corpus.source", "NUL")),
        Case("analyze", "run name with a trailing newline", ("--set", 'run="ok\\n"'), 2,
             ("Run name", "not allowed")),
        Case("analyze", "section given as a plain value", ("--set", "select=3"), 2,
             ("select", "section")),
        Case("analyze", "config file that is not TOML",
             lambda t: ("--config", write(t, "broken.toml", "[select\nmin_count = \n")), 2,
             ("broken.toml", "not valid TOML")),
        Case("analyze", "max_doc_bytes below its minimum", ("--set", "corpus.max_doc_bytes=10"), 2,
             ("corpus.max_doc_bytes", "out of range")),
        Case("adapt", "negative number of new tokens", ("--set", "adapt.new_tokens=-1"), 2,
             ("adapt.new_tokens", "out of range")),
        Case("adapt", "recovery training with a token budget of 0",
             ("--set", "adapt.train_tokens=0"), 2, ("adapt.train_tokens", "out of range")),
        Case("adapt", "training device that is not a choice", ("--set", 'adapt.device="tpu"'), 2,
             ("adapt.device", "not one of")),
        # 6. environment faults
        Case("analyze", "disk full while writing a stage (256 KiB tmpfs)",
             lambda t: ("--corpus", ok(t), *tk, "--set", f'artifacts_dir="{t / "full"}"',
                        "--set", f'reports_dir="{t / "full_r"}"'), 4,
             ("full/bad", "ENOSPC", "errno 28"), full_disk, nothing_done("full"),
             needs_root_mount=True),
        Case("analyze", "disk full while pyarrow writes the shards (filled tmpfs)",
             lambda t: ("--corpus", str(ROOT.parent / "shared" / "data" / "klue_dev.parquet"),
                        *tk, *MANY, "--until", "tokenize", *own_art(t, "fs2/art")), 4,
             ("fs2/art/bad/tokenize", "ENOSPC", "nothing was marked done"), full_during_shards,
             previous_kept, needs_root_mount=True),
        Case("analyze", "UTF-16 text file",
             lambda t: ("--corpus", write(t, "utf16.txt", "좋은 영화\n".encode("utf-16")), *tk), 2,
             ("utf16.txt", "UTF-16", "iconv")),
        Case("analyze", "read-only artifacts folder (read-only tmpfs)",
             lambda t: ("--corpus", ok(t), *tk, "--set", f'artifacts_dir="{t / "ro"}"',
                        "--set", f'reports_dir="{t / "ro_r"}"'), 4,
             ("ro/bad", "EROFS", "errno 30"), readonly, needs_root_mount=True),
        Case("prune", "model index naming a shard outside the model folder",
             lambda t: ("--corpus", ok(t), *pm, str(t / "model_outside_index")), 2,
             ("outside the model directory", "../elsewhere.safetensors"), outside_index),
        Case("prune", "model config.json naming an unknown activation (library error)",
             lambda t: ("--corpus", many(t), *MANY, *pm, str(t / "model_bad_act"),
                        "--set", "score.kiwi_max_eojeol_types=100"), 2,
             ("model_bad_act", "failed inside transformers", "no_such_activation"), bad_act,
             model_untouched_but("model_bad_act")),
        Case("prune", "model index with a malformed weight_map",
             lambda t: ("--corpus", ok(t), *pm, str(t / "model_bad_index")), 2,
             ("malformed weight_map",), bad_index),
        # GGUF model sources
        Case("prune", "--model: a .gguf file that is not GGUF",
             lambda t: ("--corpus", ok(t), "--model", write(t, "fake.gguf", "not a model")), 2,
             ("fake.gguf", "not a GGUF file")),
        Case("prune", "--model: a GGUF of an architecture transformers cannot convert",
             lambda t: ("--corpus", ok(t), "--model", gguf_file(t, "rwkv.gguf", "rwkv6")), 2,
             ("rwkv.gguf", "`rwkv6`", "Supported architectures")),
        Case("prune", "--model: a folder holding two GGUF files",
             lambda t: ("--corpus", ok(t), "--model", str(Path(gguf_file(t, "two/a.gguf", "llama"))
                                                          .parent)), 2,
             ("two", "2 .gguf files"), lambda t: gguf_file(t, "two/b.gguf", "llama") and None),
        Case("prune", "--model: a .gguf path that does not exist",
             lambda t: ("--corpus", ok(t), "--model", str(t / "nowhere.gguf")), 2,
             ("nowhere.gguf", "does not exist")),
        # 7. honest verification
        Case("prune", "empty held-out split",
             lambda t: ("--corpus", ok(t), *tk, "--set", "heldout.fraction=0.0",
                        "--set", "score.kiwi_max_eojeol_types=100", *own_art(t, "eh")), 2,
             ("held-out split", "empty", "fraction", "salt", "group_column")),
    ]
