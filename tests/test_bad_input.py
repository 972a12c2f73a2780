"""Bad input for `analyze`: one clear paragraph naming the input, exit code 2, no artifacts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.__main__ import main

from .conftest import KLUE_DEV, ROOT


def run_cli(tmp_path: Path, *args: str, capsys) -> tuple[int, str]:
    rc = main(["analyze", "--no-progress", "--run", "bad",
               "--set", f'artifacts_dir="{tmp_path / "artifacts"}"',
               "--set", f'reports_dir="{tmp_path / "reports"}"', *args])
    return rc, capsys.readouterr().err


def assert_clean_failure(tmp_path: Path, rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err  # one paragraph
    err = errors[0]
    for n in needles:
        assert n in err, (n, err)
    # nothing that looks complete, and no temp leftovers
    art = tmp_path / "artifacts" / "bad"
    for stage in ("tokenize", "count"):
        assert not (art / stage).exists()
    assert not list(art.glob(".*tmp*")) if art.exists() else True
    assert not (tmp_path / "reports" / "bad" / "metrics.json").exists()


def test_nonexistent_path(tmp_path, tekken_dir, capsys):
    rc, err = run_cli(tmp_path, "--corpus", str(tmp_path / "nope.parquet"), "--tokenizer", str(tekken_dir), capsys=capsys)
    assert_clean_failure(tmp_path, rc, err, "nope.parquet", "does not exist")


def test_empty_corpus(tmp_path, tekken_dir, capsys):
    f = tmp_path / "empty.txt"
    f.write_text("\n  \n\n", encoding="utf-8")
    rc, err = run_cli(tmp_path, "--corpus", str(f), "--tokenizer", str(tekken_dir), capsys=capsys)
    assert_clean_failure(tmp_path, rc, err, "empty.txt", "is empty")


def test_all_non_korean(tmp_path, tekken_dir, capsys):
    f = tmp_path / "en.txt"
    f.write_text("This is an English sentence about the weather.\nAnother English line here.\n")
    rc, err = run_cli(tmp_path, "--corpus", str(f), "--tokenizer", str(tekken_dir), capsys=capsys)
    assert_clean_failure(tmp_path, rc, err, "No Korean document", "en.txt", "min_korean_prob")


def test_missing_text_column_lists_columns(tmp_path, tekken_dir, capsys):
    rc, err = run_cli(tmp_path, "--corpus", str(KLUE_DEV), "--text-column", "sentence",
                      "--tokenizer", str(tekken_dir), capsys=capsys)
    assert_clean_failure(tmp_path, rc, err, "'sentence'", "id, source, text", "--text-column")


def test_invalid_utf8(tmp_path, tekken_dir, capsys):
    f = tmp_path / "cp949.txt"
    f.write_bytes("좋은 영화\n".encode("utf-8") + "나쁜 영화\n".encode("cp949"))
    rc, err = run_cli(tmp_path, "--corpus", str(f), "--tokenizer", str(tekken_dir), capsys=capsys)
    assert_clean_failure(tmp_path, rc, err, "cp949.txt line 2", "not valid UTF-8", "iconv")


def test_binary_file(tmp_path, tekken_dir, capsys):
    f = tmp_path / "blob.txt"
    f.write_bytes(bytes(range(256)) * 10)
    rc, err = run_cli(tmp_path, "--corpus", str(f), "--tokenizer", str(tekken_dir), capsys=capsys)
    assert_clean_failure(tmp_path, rc, err, "blob.txt", "binary")


def test_truncated_parquet(tmp_path, tekken_dir, capsys):
    data = KLUE_DEV.read_bytes()
    f = tmp_path / "cut.parquet"
    f.write_bytes(data[: len(data) // 2])
    rc, err = run_cli(tmp_path, "--corpus", str(f), "--tokenizer", str(tekken_dir), capsys=capsys)
    assert_clean_failure(tmp_path, rc, err, "cut.parquet", "truncated or corrupt")


def test_truncated_arrow(tmp_path, tekken_dir, capsys):
    t = pq.read_table(KLUE_DEV)
    full = tmp_path / "full.arrow"
    with pa.OSFile(str(full), "wb") as sink, pa.ipc.new_file(sink, t.schema) as w:
        w.write_table(t, max_chunksize=1000)
    f = tmp_path / "cut.arrow"
    f.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    rc, err = run_cli(tmp_path, "--corpus", str(f), "--tokenizer", str(tekken_dir), capsys=capsys)
    assert_clean_failure(tmp_path, rc, err, "cut.arrow")


def test_unknown_config_key_lists_valid_keys(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[select]\nmin_cout = 3\n')
    rc, err = run_cli(tmp_path, "--config", str(cfg), capsys=capsys)
    assert_clean_failure(tmp_path, rc, err, "'min_cout'", "[select]", "min_count", "min_doc_freq")


def test_out_of_range_value(tmp_path, capsys):
    rc, err = run_cli(tmp_path, "--set", "langid.min_korean_prob=1.5", capsys=capsys)
    assert_clean_failure(tmp_path, rc, err, "langid.min_korean_prob", "between 0.0 and 1.0")


def test_run_name_cannot_escape_output_dirs(tmp_path, capsys):
    rc = main(["analyze", "--run", "../../etc", "--set", f'artifacts_dir="{tmp_path / "a"}"'])
    err = capsys.readouterr().err
    assert rc == 2 and "not allowed" in err
    assert not (tmp_path / "a").exists()


def test_missing_tokenizer_path(tmp_path, capsys):
    f = tmp_path / "t.txt"
    f.write_text("안녕하세요\n")
    rc, err = run_cli(tmp_path, "--corpus", str(f), "--tokenizer", str(tmp_path / "no" / "tokenizer.json"), capsys=capsys)
    assert_clean_failure(tmp_path, rc, err, "does not exist")


def test_cli_exit_code_in_a_real_process(tmp_path):
    """The installed entry point exits non-zero with one paragraph on stderr."""
    r = subprocess.run([sys.executable, "-m", "pipeline", "analyze", "--corpus",
                        str(tmp_path / "missing.jsonl"), "--set", f'artifacts_dir="{tmp_path}"'],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2
    assert "missing.jsonl" in r.stderr and "Traceback" not in r.stderr


def test_slow_only_tokenizer(tmp_path, capsys):
    """CANINE has only a Python tokenizer: a clear error, not a crash later on."""
    d = tmp_path / "canine"
    d.mkdir()
    (d / "tokenizer_config.json").write_text('{"tokenizer_class": "CanineTokenizer"}')
    f = tmp_path / "t.txt"
    f.write_text("안녕하세요\n")
    rc, err = run_cli(tmp_path, "--corpus", str(f), "--tokenizer", str(d), capsys=capsys)
    assert_clean_failure(tmp_path, rc, err, "canine", "slow (Python) implementation", "fast tokenizer")


def test_hub_id_goes_to_the_hub_not_the_filesystem(tmp_path, capsys):
    """`owner/name` is a hub id: offline it fails at the hub with a clear message, it is not
    reported as a missing local path."""
    f = tmp_path / "t.txt"
    f.write_text("안녕하세요\n")
    rc, err = run_cli(tmp_path, "--corpus", str(f), "--tokenizer", "Qwen/Qwen2.5-0.5B", capsys=capsys)
    assert_clean_failure(tmp_path, rc, err, "Qwen/Qwen2.5-0.5B", "network")
    assert "does not exist" not in err
