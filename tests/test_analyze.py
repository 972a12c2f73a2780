"""`analyze` end to end on real data: counts vs collections.Counter, reruns, determinism,
held-out groups, the language filter, every corpus/tokenizer source."""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.__main__ import main
from pipeline.artifacts import RunPaths
from pipeline.config import load_config

from .conftest import KLUE_DEV


def analyze(tmp_path: Path, *args: str, run: str = "t") -> int:
    # Kiwi's boundary alignment on fewer eojeol types keeps the suite fast; scoring itself is
    # tested in test_select.py / test_morph.py.
    return main(["analyze", "--no-progress", "--run", run,
                 "--set", f'artifacts_dir="{tmp_path / "artifacts"}"',
                 "--set", f'reports_dir="{tmp_path / "reports"}"',
                 "--set", "score.kiwi_max_eojeol_types=2000", *args])


def paths(tmp_path: Path, run: str = "t") -> RunPaths:
    return RunPaths(tmp_path / "artifacts" / run, tmp_path / "reports" / run)


def shard_table(files: list[Path]) -> pa.Table:
    return pa.concat_tables([pa.ipc.open_file(pa.memory_map(str(f))).read_all() for f in files])


def stage_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in ("run.log", ".lock")}


# KLUE dev has only 14 groups (task/origin): hold out about half of them.
KLUE_ARGS = ("--corpus", str(KLUE_DEV), "--set", "heldout.fraction=0.5")


@pytest.fixture(scope="module")
def klue_run(tmp_path_factory, tekken_dir):
    tmp = tmp_path_factory.mktemp("klue")
    assert analyze(tmp, *KLUE_ARGS, "--tokenizer", str(tekken_dir)) == 0
    return tmp


def test_counts_equal_counter_over_original_tokenizer(klue_run, tekken):
    p = paths(klue_run)
    train = shard_table(p.train_shards())
    docs = dict(zip(pq.read_table(KLUE_DEV).column("id").to_pylist(),
                    pq.read_table(KLUE_DEV).column("text").to_pylist()))
    counter, dfreq = Counter(), Counter()
    for doc_id in train.column("doc_id").to_pylist():
        ids = tekken.encode(unicodedata.normalize("NFC", docs[doc_id]), add_special_tokens=False)
        counter.update(ids)
        dfreq.update(set(ids))
    counts = pl.read_parquet(p.token_counts)
    assert counts.height == len(tekken)
    assert counts["token_id"].to_list() == list(range(len(tekken)))
    got = {i: c for i, c in zip(counts["token_id"], counts["count"]) if c}
    assert got == dict(counter)
    got_df = {i: c for i, c in zip(counts["token_id"], counts["doc_freq"]) if c}
    assert got_df == dict(dfreq)
    assert counts["token"].to_list()[:5] == tekken.convert_ids_to_tokens([0, 1, 2, 3, 4])
    m = json.loads(p.metrics.read_text())
    assert m["tokens"]["total"] == sum(counter.values())
    assert m["vocab"]["before"] == len(tekken)
    assert m["corpus"]["documents"] == train.num_rows
    assert m["corpus"]["bytes"] == sum(len(t.encode()) for t in train.column("text").to_pylist())
    assert m["corpus"]["eojeol"] == sum(len(t.split()) for t in train.column("text").to_pylist())
    assert m["tokens_per_eojeol"] == pytest.approx(m["tokens"]["total"] / m["corpus"]["eojeol"], abs=1e-6)
    eo = pl.read_parquet(p.eojeol_counts)
    assert eo["count"].sum() == m["corpus"]["eojeol"]
    ref = Counter(w for t in train.column("text").to_pylist() for w in t.split())
    assert dict(zip(eo["eojeol"], eo["count"])) == dict(ref)


def test_heldout_groups_never_overlap_counted_groups(klue_run):
    p = paths(klue_run)
    train, held = shard_table(p.train_shards()), shard_table(p.heldout_shards())
    assert held.num_rows > 0 and train.num_rows > 0
    assert not set(train.column("group").to_pylist()) & set(held.column("group").to_pylist())
    counted = json.loads((p.stage("count") / "metrics.json").read_text())
    assert counted["corpus"]["groups"] == len(set(train.column("group").to_pylist()))
    assert counted["heldout"]["groups"] == len(set(held.column("group").to_pylist()))
    m = json.loads(p.metrics.read_text())
    assert m["heldout"]["documents"] == held.num_rows
    total = pq.read_metadata(KLUE_DEV).num_rows
    assert m["corpus"]["documents_read"] == total
    assert (train.num_rows + held.num_rows + m["corpus"]["dropped_non_korean"]
            + m["corpus"]["empty_skipped"]) == total


def test_rerun_is_noop_and_force_is_byte_identical(klue_run, tekken_dir, capsys):
    p = paths(klue_run)
    before = {f: (f.stat().st_mtime_ns, f.read_bytes()) for f in p.root.rglob("*")
              if f.is_file() and f.name not in ("run.log", ".lock")}
    assert analyze(klue_run, *KLUE_ARGS, "--tokenizer", str(tekken_dir)) == 0
    err = capsys.readouterr().err
    for stage in ("tokenizer", "tokenize", "count"):
        assert f"[{stage}] up to date, skipped" in err
    after = {f: (f.stat().st_mtime_ns, f.read_bytes()) for f in p.root.rglob("*")
             if f.is_file() and f.name not in ("run.log", ".lock")}
    assert after == before
    assert analyze(klue_run, *KLUE_ARGS, "--tokenizer", str(tekken_dir),
                   "--force") == 0
    assert {f: b for f, (_, b) in before.items()} == {
        f: f.read_bytes() for f in p.root.rglob("*") if f.is_file() and f.name not in ("run.log", ".lock")}


def test_artifacts_byte_identical_across_runs(klue_run, tekken_dir, tmp_path):
    assert analyze(tmp_path, *KLUE_ARGS, "--tokenizer", str(tekken_dir),
                   "--set", "tokenize.shard_docs=1000", "--set", "tokenize.batch_docs=333") == 0
    a = stage_files(paths(klue_run).root / "count")
    b = stage_files(paths(tmp_path).root / "count")
    assert a["token_counts.parquet"] == b["token_counts.parquet"]
    assert a["eojeol_counts.parquet"] == b["eojeol_counts.parquet"]
    # same shard layout config -> byte-identical shards
    assert analyze(tmp_path, *KLUE_ARGS, "--tokenizer", str(tekken_dir), run="u") == 0
    assert stage_files(paths(klue_run).root / "tokenize") == stage_files(paths(tmp_path, "u").root / "tokenize")
    assert json.loads(paths(klue_run).metrics.read_text())["tokens"] == \
        json.loads(paths(tmp_path, "u").metrics.read_text())["tokens"]


def test_shards_respect_size_bounds(tmp_path, tekken_dir):
    assert analyze(tmp_path, "--corpus", str(KLUE_DEV), "--tokenizer", str(tekken_dir),
                   "--set", "tokenize.shard_docs=1500", "--set", "tokenize.shard_bytes=100000") == 0
    shards = paths(tmp_path).train_shards()
    assert len(shards) > 5
    for f in shards:
        t = shard_table([f])
        assert t.num_rows <= 1500
        assert pa.compute.sum(t.column("n_bytes")).as_py() <= 100000
        assert t.schema.field("token_ids").type == pa.list_(pa.int32())


def test_language_filter_drops_non_korean(tmp_path, tekken_dir):
    korean = ["대한민국의 수도는 서울이며 인구는 약 천만 명이다.", "오늘 영화 정말 재미있었어요 ㅋㅋ",
              "ㅋㅋㅋㅋㅋ", "이 법은 공포한 날부터 시행한다."]
    foreign = ["The quick brown fox jumps over the lazy dog near the river bank.",
               "東京は日本の首都であり、世界有数の大都市です。",
               "Москва является столицей Российской Федерации.",
               "La casa de mi abuela está cerca del mar y tiene un jardín precioso."]
    f = tmp_path / "mixed.jsonl"
    with open(f, "w", encoding="utf-8") as fh:
        for i, t in enumerate(korean + foreign):
            fh.write(json.dumps({"id": f"d{i}", "text": t, "source": "g"}, ensure_ascii=False) + "\n")
    assert analyze(tmp_path, "--corpus", str(f), "--tokenizer", str(tekken_dir),
                   "--set", "heldout.fraction=0.0") == 0
    p = paths(tmp_path)
    kept = shard_table(p.train_shards()).column("text").to_pylist()
    assert kept == korean  # ㅋㅋㅋㅋㅋ is kept by its Hangul share, though fastText doubts it
    m = json.loads(p.metrics.read_text())
    assert m["corpus"]["dropped_non_korean"] == len(foreign)
    assert {e["text"] for e in m["corpus"]["dropped_examples"]} == set(foreign)
    assert set(m["corpus"]["dropped_languages"]) >= {"en", "ja", "ru", "es"}


def test_nfc_normalization(tmp_path, tekken_dir):
    nfd = unicodedata.normalize("NFD", "한국어 문장입니다")
    assert nfd != "한국어 문장입니다"
    f = tmp_path / "nfd.txt"
    f.write_text(nfd + "\n", encoding="utf-8")
    assert analyze(tmp_path, "--corpus", str(f), "--tokenizer", str(tekken_dir),
                   "--set", "heldout.fraction=0.0") == 0
    assert shard_table(paths(tmp_path).train_shards()).column("text").to_pylist() == ["한국어 문장입니다"]


def _counts(tmp_path: Path, run: str) -> dict:
    c = pl.read_parquet(paths(tmp_path, run).token_counts)
    return dict(zip(c["token_id"], c["count"]))


def test_every_source_kind_gives_the_same_counts(tmp_path, tekken_dir):
    """Local parquet, jsonl, txt, arrow, a directory, a glob and the `datasets` code path
    (pointed at local files) all read the same documents."""
    t = pq.read_table(KLUE_DEV).slice(0, 400)
    texts = t.column("text").to_pylist()
    d = tmp_path / "src"
    d.mkdir()
    pq.write_table(t, d / "a.parquet")
    with pa.OSFile(str(d / "a.arrow"), "wb") as sink, pa.ipc.new_file(sink, t.schema) as w:
        w.write_table(t)
    (d / "a.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    with open(d / "a.jsonl", "w", encoding="utf-8") as fh:
        for row in t.to_pylist():
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    common = ["--tokenizer", str(tekken_dir), "--set", "heldout.fraction=0.0",
              "--set", "langid.min_korean_prob=0.0", "--until", "count"]  # counts are compared
    for run, src in [("pq", d / "a.parquet"), ("ar", d / "a.arrow"), ("tx", d / "a.txt"),
                     ("js", d / "a.jsonl")]:
        assert analyze(tmp_path, "--corpus", str(src), *common, run=run) == 0
    assert analyze(tmp_path, "--corpus", "parquet", "--set", f'corpus.data_files=["{d / "a.parquet"}"]',
                   *common, run="hub") == 0
    ref = _counts(tmp_path, "pq")
    assert sum(ref.values()) > 1000
    for run in ("ar", "tx", "js", "hub"):
        assert _counts(tmp_path, run) == ref, run
    # a directory holds all four copies, a glob two of them: counts scale exactly
    assert analyze(tmp_path, "--corpus", str(d), *common, run="dir") == 0
    assert _counts(tmp_path, "dir") == {k: 4 * v for k, v in ref.items()}
    assert analyze(tmp_path, "--corpus", str(d / "a.*l*"), *common, run="glob") == 0  # jsonl
    assert _counts(tmp_path, "glob") == ref


def test_embedded_default_and_dry_run(tmp_path, capsys):
    assert main(["analyze", "--dry-run", "--config", "configs/default.toml",
                 "--set", f'artifacts_dir="{tmp_path / "a"}"']) == 0
    out = capsys.readouterr().out
    assert 'source = "embedded"' in out and "# stage tokenize: would run" in out
    assert not (tmp_path / "a").exists()
    cfg = load_config("configs/default.toml")
    assert cfg.corpus.source == "embedded" and cfg.prune.model == "gemma3-270m"
    assert cfg.tokenizer.source == "gemma3-270m"  # `model`: the model's own tokenizer


def test_tokenizer_json_file_source(tmp_path, tekken_dir):
    f = tmp_path / "t.txt"
    f.write_text("안녕하세요 반갑습니다\n", encoding="utf-8")
    assert analyze(tmp_path, "--corpus", str(f), "--tokenizer", str(tekken_dir / "tokenizer.json"),
                   "--set", "heldout.fraction=0.0") == 0
    assert json.loads(paths(tmp_path).metrics.read_text())["vocab"]["before"] == 131072
