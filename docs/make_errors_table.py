"""Regenerate docs/ERRORS.md: every bad-input case, run for real, with the message it prints.

    .venv/bin/python docs/make_errors_table.py

Each case builds its bad input in a temporary directory, runs the CLI in-process and records
the exit code and the one-paragraph message (temporary paths shortened to ``<tmp>``). The same
cases are asserted in tests/test_bad_input.py and tests/test_prune.py; the cases of reliability
round 2 come from tests/matrix.py (asserted, with their aftermath, in tests/test_reliability.py),
each in its own temporary folder. Run it as root for the disk-full and read-only cases (tmpfs).
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
KLUE = ROOT.parent / "shared" / "data" / "klue_dev.parquet"


def run(cmd: str, tmp: Path, *args: str, show: str = "", top: Path | None = None) -> tuple[int, str]:
    from pipeline.__main__ import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main([cmd, "--no-progress", "--run", "bad", "--set", f'artifacts_dir="{tmp / "a"}"',
                   "--set", f'reports_dir="{tmp / "r"}"',
                   # the fast demo model (and its Tekken tokenizer) unless a case names another
                   "--set", 'prune.model="demo"', *args])
    lines = [ln for ln in err.getvalue().splitlines() if ln.startswith("error: ")]
    msg = lines[0][7:] if lines else "(no error)"
    if not lines and show:
        msg = next((ln for ln in err.getvalue().splitlines() if show in ln), msg)
    msg = msg.replace(str(tmp), "<tmp>").replace(str(top or tmp), "<tmp>")
    msg = re.sub(r"pid \d+", "pid <pid>", msg)
    msg = re.sub(r"\.tmp-\d+-\d+", ".tmp-<pid>-<start>", msg)
    msg = re.sub(r" in \d+\.\ds$", "", msg)  # timings vary
    return rc, msg.replace(str(ROOT.parent), "..")


def cases(tmp: Path, tok: Path, model: Path) -> list[tuple[str, str, tuple[str, ...]]]:
    def f(name: str, data: bytes | str) -> str:
        p = tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
        return str(p)

    klue = KLUE.read_bytes()
    t = pq.read_table(KLUE)
    arrow = tmp / "full.arrow"
    with pa.OSFile(str(arrow), "wb") as sink, pa.ipc.new_file(sink, t.schema) as w:
        w.write_table(t, max_chunksize=1000)
    ok = f("ok.txt", "한국어 문장입니다. 오늘 날씨가 좋네요.\n")
    canine = tmp / "canine"
    canine.mkdir()
    (canine / "tokenizer_config.json").write_text('{"tokenizer_class": "CanineTokenizer"}')
    no_tok = tmp / "model_no_tokenizer"
    no_tok.mkdir()
    for p in model.iterdir():
        if p.name in ("config.json", "generation_config.json", "model.safetensors"):
            (no_tok / p.name).write_bytes(p.read_bytes())
    no_weights = tmp / "model_no_weights"
    no_weights.mkdir()
    for p in model.iterdir():
        if p.name != "model.safetensors":
            (no_weights / p.name).write_bytes(p.read_bytes())
    cut = tmp / "model_truncated"
    cut.mkdir()
    for p in model.iterdir():
        data = p.read_bytes()
        (cut / p.name).write_bytes(data[: len(data) // 2] if p.suffix == ".safetensors" else data)
    tk = ("--tokenizer", str(tok))
    return [
        ("analyze", "nonexistent corpus path", ("--corpus", str(tmp / "nope.parquet"), *tk)),
        ("analyze", "empty corpus", ("--corpus", f("empty.txt", "\n \n"), *tk)),
        ("analyze", "corpus that is all non-Korean",
         ("--corpus", f("en.txt", "An English sentence about the weather.\nAnother one.\n"), *tk)),
        ("analyze", "invalid UTF-8 bytes in text",
         ("--corpus", f("cp949.txt", "좋은 영화\n".encode() + "나쁜 영화\n".encode("cp949")), *tk)),
        ("analyze", "binary file", ("--corpus", f("blob.txt", bytes(range(256)) * 8), *tk)),
        ("analyze", "truncated Parquet file",
         ("--corpus", f("cut.parquet", klue[: len(klue) // 2]), *tk)),
        ("analyze", "truncated Arrow file",
         ("--corpus", f("cut.arrow", arrow.read_bytes()[: arrow.stat().st_size // 2]), *tk)),
        ("analyze", "missing text column", ("--corpus", str(KLUE), "--text-column", "sentence", *tk)),
        ("analyze", "slow-only tokenizer", ("--corpus", ok, "--tokenizer", str(canine))),
        ("analyze", "nonexistent tokenizer path",
         ("--corpus", ok, "--tokenizer", str(tmp / "x" / "tokenizer.json"))),
        ("analyze", "unknown config key",
         ("--config", f("c.toml", "[select]\nmin_cout = 3\n"),)),
        ("analyze", "out-of-range threshold", ("--set", "langid.min_korean_prob=1.5")),
        ("analyze", "unknown script in keep_scripts",
         ("--corpus", ok, *tk, "--set", 'select.keep_scripts=["korean"]')),
        ("analyze", "run name pointing outside the output dirs", ("--run", "../../etc")),
        ("analyze", "unknown executor", ("--set", 'execute.executor="spark"')),
        ("analyze", "Ray executor on a `datasets` corpus",
         ("--executor", "ray", "--corpus", "parquet", "--set", f'corpus.data_files=["{KLUE}"]',
          *tk)),
        ("prune", "model directory without a tokenizer", ("--corpus", ok, *tk, "--model", str(no_tok))),
        ("prune", "model weights missing", ("--corpus", ok, *tk, "--model", str(no_weights))),
        ("prune", "truncated weights", ("--corpus", ok, *tk, "--model", str(cut))),
        ("prune", "output directory = source model directory",
         ("--corpus", ok, "--tokenizer", str(model), "--model", str(model), "--output-dir", str(model))),
        ("prune", "output directory inside the source model directory",
         ("--corpus", ok, "--tokenizer", str(model), "--model", str(model),
          "--output-dir", str(model / "pruned"))),
        ("prune", "thresholds that would drop special or byte tokens",
         ("--corpus", ok, *tk, "--set", "heldout.fraction=0.0", "--target-vocab-size", "10")),
    ]


def main() -> None:
    from pipeline.demo_model import save_demo_model
    from pipeline.tokenizer_io import load_tokenizer

    rows = []
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        tekken = load_tokenizer("tekken")
        tok = tmp / "tekken"
        tekken.save_pretrained(str(tok))
        model = tmp / "model"
        save_demo_model(tekken, model)
        for cmd, what, args in cases(tmp, tok, model):
            rc, msg = run(cmd, tmp, *args)  # a case's own --run comes last and wins
            rows.append((cmd, what, rc, msg))
            print(f"{rc} {cmd:8} {what}: {msg[:100]}", file=sys.stderr)
        sys.path.insert(0, str(ROOT / "tests"))
        import matrix

        for i, case in enumerate(matrix.cases(tmp, tok, model)):
            ct = tmp / f"case{i:02d}"
            ct.mkdir()
            case = matrix.cases(ct, tok, model)[i]
            try:
                cleanup = case.prepare(ct) if case.prepare else None
            except RuntimeError as e:  # e.g. tmpfs cannot be mounted (not root)
                rows.append((case.cmd, case.what, "-", f"(not run here: {e})"))
                continue
            try:
                args = case.args(ct) if callable(case.args) else case.args
                rc, msg = run(case.cmd, ct, *args, show=case.show, top=tmp)
            finally:
                if cleanup:
                    cleanup()
            assert rc == case.rc, (case.what, rc, msg)
            rows.append((case.cmd, case.what, rc, msg))
            print(f"{rc} {case.cmd:8} {case.what}: {msg[:100]}", file=sys.stderr)
    out = ["# Bad input: what happens", "",
           "Every case below was run for real by `docs/make_errors_table.py` (tests assert the same "
           "cases: tests/test_bad_input.py, tests/test_prune.py and, with what each case must leave "
           "untouched, tests/test_reliability.py). Each failing case exits non-zero (2 bad input, "
           "4 disk fault, 5 run in use by another command), prints one paragraph naming the input "
           "and what to do, and leaves no half-written artifact: stages are written to a "
           "temporary directory and renamed into place only when complete. Nothing the pipeline "
           "did not write is deleted or written into. Rows with exit 0 are faults the pipeline "
           "repairs by itself (a damaged stage is redone; a killed run's temporary folder is "
           "removed); their message is the line it prints.", "",
           "| command | bad input | exit | message |", "|---|---|---:|---|"]
    for cmd, what, rc, msg in rows:
        out.append(f"| `{cmd}` | {what} | {rc} | {msg.replace('|', '&#124;')} |")
    (ROOT / "docs" / "ERRORS.md").write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
