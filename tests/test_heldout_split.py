"""The held-out split: the share of groups held out matches ``heldout.fraction`` within sampling
error on many groups, and files without a group column are grouped in contiguous blocks of
``heldout.block_size`` documents (as the README and ``config --explain`` say; the embedded
default corpus, plain text files, depends on it)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import load_config
from pipeline.corpus import resolve_source
from pipeline.shards import is_heldout, read_shards

from .test_analyze import analyze, paths

SALT = load_config(None).heldout.salt


def within(share: float, p: float, n: int, sigmas: float = 4.0) -> bool:
    return abs(share - p) <= sigmas * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("fraction", [0.05, 0.15, 0.5])
def test_heldout_share_of_many_groups_matches_fraction(fraction):
    n = 40_000
    share = sum(is_heldout(f"group-{i}", SALT, fraction) for i in range(n)) / n
    assert within(share, fraction, n), share
    other = sum(is_heldout(f"group-{i}", "other-salt", fraction) for i in range(n)) / n
    assert within(other, fraction, n), other


def test_split_is_per_group_nested_and_salted():
    groups = [f"doc#{i}" for i in range(5000)]
    small = {g for g in groups if is_heldout(g, SALT, 0.1)}
    large = {g for g in groups if is_heldout(g, SALT, 0.3)}
    assert small < large  # a larger fraction holds out a superset of groups
    resalted = {g for g in groups if is_heldout(g, "another", 0.3)}
    assert len(resalted & large) < 0.5 * len(large)  # another salt draws other groups
    assert not any(is_heldout(g, SALT, 0.0) for g in groups)


def _source(path: Path, block_size: int, **corpus):
    cfg = load_config(None, {"corpus.source": str(path),
                             **{f"corpus.{k}": v for k, v in corpus.items()}})
    return resolve_source(cfg.corpus, block_size)


def _docs(src) -> list[tuple[str, str, str]]:
    return [(i, g, t) for b in src.batches(7) for i, g, t in zip(b.ids, b.groups, b.texts)]


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "parquet"])
def test_file_without_group_column_is_grouped_in_contiguous_blocks(tmp_path, fmt):
    texts = [f"문서 {i} 번째 줄입니다" for i in range(95)]
    f = tmp_path / f"corpus.{fmt}"
    if fmt == "txt":
        f.write_text("\n".join(texts) + "\n", encoding="utf-8")
    elif fmt == "jsonl":
        f.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts),
                     encoding="utf-8")
    else:
        pq.write_table(pa.table({"text": texts}), f)
    docs = _docs(_source(f, block_size=10))
    assert [t for _, _, t in docs] == texts
    assert [g for _, g, _ in docs] == [f"corpus#{i // 10}" for i in range(95)]


def test_group_column_wins_over_blocks(tmp_path):
    texts = [f"문서 {i}" for i in range(30)]
    f = tmp_path / "grouped.parquet"
    pq.write_table(pa.table({"text": texts, "source": [f"movie-{i % 3}" for i in range(30)]}), f)
    assert [g for _, g, _ in _docs(_source(f, block_size=10))] == \
        [f"movie-{i % 3}" for i in range(30)]


def test_konlpy_corpus_is_grouped_in_blocks():
    """The demo job's corpus (konlpy's kolaw and kobill text files) has no group column: its
    groups are blocks of ``block_size`` lines per file, and with the demo config both sides
    of the split get groups (verification needs held-out documents)."""
    cfg = load_config("configs/demo.toml")
    src = resolve_source(cfg.corpus, cfg.heldout.block_size)
    assert src.kind == "embedded"
    per_file: dict[str, int] = {}
    groups = []
    for _, g, _ in _docs(src):
        name = g.rsplit("#", 1)[0]
        assert g == f"{name}#{per_file.get(name, 0) // cfg.heldout.block_size}"
        per_file[name] = per_file.get(name, 0) + 1
        groups.append(g)
    assert len(per_file) == len(src.files) >= 2
    distinct = set(groups)
    held = {g for g in distinct if is_heldout(g, cfg.heldout.salt, cfg.heldout.fraction)}
    assert held and distinct - held


def test_embedded_sample_is_grouped_by_its_group_column():
    """The default job's corpus (the shipped sample) is grouped by its `group` column
    (`<text type>#<group>`): a movie, a block of 100 KLUE sentences, a block of 50 law lines;
    the text type is the part before `#`. Held-out groups are drawn from every text type of
    some size, and the held-out share of documents is near the configured fraction."""
    import polars as pl

    from pipeline.corpus import embedded_file

    cfg = load_config("configs/default.toml")
    src = resolve_source(cfg.corpus, cfg.heldout.block_size)
    df = pl.read_parquet(embedded_file())
    docs = list(_docs(src))
    assert [g for _, g, _ in docs] == df["group"].to_list()
    batch = next(src.batches(50))
    assert batch.sources == [g.split("#", 1)[0] for g in batch.groups]
    held = np.array([is_heldout(g, cfg.heldout.salt, cfg.heldout.fraction) for _, g, _ in docs])
    assert 0.08 < held.mean() < 0.25
    types = {g.split("#", 1)[0] for (_, g, _), h in zip(docs, held) if h}
    assert {"nsmc-review", "klue-wikitree", "klue-nsmc"} <= types


def test_analyze_holds_out_whole_blocks_at_the_configured_share(tmp_path, tekken_dir,
                                                                klue_texts):
    """A plain text corpus of 3,000 Korean lines in blocks of 10 (300 groups), 30% held out:
    every block lies wholly on one side, and the held-out share of blocks is 0.3 within
    sampling error."""
    n, block, fraction = 3000, 10, 0.3
    lines = [t.replace("\n", " ") for t in klue_texts[:n]]
    assert len(lines) == n
    f = tmp_path / "ko.txt"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert analyze(tmp_path, "--corpus", str(f), "--tokenizer", str(tekken_dir),
                   "--set", f"heldout.fraction={fraction}", "--set", f"heldout.block_size={block}",
                   "--set", "langid.min_korean_prob=0.0") == 0
    p = paths(tmp_path)
    train = read_shards(p.train_shards(), ["doc_id", "group"]).to_pydict()
    held = read_shards(p.heldout_shards(), ["doc_id", "group"]).to_pydict()
    side = {}
    for which, t in (("train", train), ("held", held)):
        for doc_id, g in zip(t["doc_id"], t["group"]):
            line = int(doc_id.rsplit(":", 1)[1])
            assert g == f"ko#{line // block}"
            assert side.setdefault(g, which) == which, g  # a block never straddles the split
    assert len(side) == n // block
    share = sum(v == "held" for v in side.values()) / len(side)
    assert within(share, fraction, len(side)), share
    assert len(train["doc_id"]) + len(held["doc_id"]) == n
