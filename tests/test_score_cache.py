"""The score stage's cache of tokenizer-only features and of Kiwi's alignment
(`pipeline.score.vocab_features`, `_alignment`): a hit returns exactly what a miss computes,
anything the features are computed from changes the key, a damaged table is recomputed, and
trimming removes only our own oldest tables."""

from __future__ import annotations

import os
from collections import Counter

import polars as pl
import pytest

from pipeline import score
from pipeline.closure import tokenizer_family

TEXTS = ["대한민국 헌법 제1조 대한민국은 민주공화국이다.", "모든 국민은 법 앞에 평등하다.",
         "오늘 날씨가 좋다 내일은 비가 온다 the weather", "설치 프로그램을 시작하기 전에 BIOS 설정을 확인하십시오."]


def _tokenizer(extra: tuple[str, ...] = (), swap: bool = False):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    backend.train_from_iterator(TEXTS * 20, trainer)
    if swap:  # the same length and special ids; two tokens trade ids
        import json

        spec = json.loads(backend.to_str())
        vocab = spec["model"]["vocab"]
        a, b = sorted(vocab, key=vocab.get)[-2:]
        vocab[a], vocab[b] = vocab[b], vocab[a]
        backend = Tokenizer.from_str(json.dumps(spec))
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>")
    if extra:
        tok.add_tokens(list(extra))
    return tok


def _inputs(tok):
    ids = [i for t in TEXTS for i in tok.encode(t, add_special_tokens=False)]
    counts = pl.DataFrame({"token_id": list(range(len(tok))),
                           "count": [ids.count(i) for i in range(len(tok))],
                           "doc_freq": [int(i in ids) for i in range(len(tok))]})
    words = Counter(w for t in TEXTS for w in t.split())
    eojeols = pl.DataFrame({"eojeol": list(words), "count": list(words.values())},
                           schema={"eojeol": pl.String, "count": pl.Int64}).sort(
        ["count", "eojeol"], descending=[True, False])
    return counts, eojeols


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "features"


def _tables(cache) -> list:
    return sorted(p.name for p in cache.glob("*.parquet")) if cache.exists() else []


def test_hit_returns_what_a_miss_computes_without_recomputing(cache, monkeypatch):
    tok = _tokenizer()
    counts, eojeols = _inputs(tok)
    miss = score.score_tokens(tok, counts, eojeols)
    assert len(_tables(cache)) == 2  # vocabulary features + alignment
    assert miss["kiwi_single_morpheme"].sum() > 0 and miss["kiwi_occurrences"].sum() > 0
    assert miss["lang"].drop_nulls().len() > 0

    def recomputed(*a, **k):
        raise AssertionError("recomputed on a cache hit")

    for name in ("_kiwi_columns", "_langid_columns"):
        monkeypatch.setattr(score, name, recomputed)
    monkeypatch.setattr("pipeline.tokenclass.classify_vocab", recomputed)
    monkeypatch.setattr("pipeline.morph.boundary_alignment", recomputed)
    said = []
    hit = score.score_tokens(tok, counts, eojeols, say=said.append)
    assert hit.equals(miss) and hit.schema == miss.schema
    assert any("from the cache" in m for m in said)

    # the Ray executor's alignment (``align``) is never replaced by the cached table
    calls = []

    def align(eojs, cnts, t):
        calls.append(len(eojs))
        return pl.DataFrame(schema={"token_id": pl.Int64, "align_occurrences": pl.Int64,
                                    "occurrences": pl.Int64})

    score.score_tokens(tok, counts, eojeols, align=align)
    assert calls == [eojeols.height]


def test_anything_the_features_depend_on_changes_the_key(cache, monkeypatch):
    tok = _tokenizer()
    family = tokenizer_family(tok)
    key = score._features_key(tok, family)
    assert key == score._features_key(_tokenizer(), family)  # the same tokenizer rebuilt
    assert key != score._features_key(_tokenizer(extra=("신규토큰",)), family)
    swapped = _tokenizer(swap=True)
    assert len(swapped) == len(tok) and swapped.all_special_ids == tok.all_special_ids
    assert key != score._features_key(swapped, family)
    assert key != score._features_key(tok, "sentencepiece")
    monkeypatch.setattr(score, "FEATURES_VERSION", score.FEATURES_VERSION + 1)
    assert key != score._features_key(tok, family)


def test_edited_rule_source_changes_the_key(cache, monkeypatch, tmp_path):
    """The source of the modules computing the features is part of the key: an edited rule
    never reads a table the old rule wrote."""
    import sys

    tok = _tokenizer()
    family = tokenizer_family(tok)
    key = score._features_key(tok, family)
    edited = tmp_path / "tokenclass.py"
    edited.write_bytes(open(sys.modules["pipeline.tokenclass"].__file__, "rb").read() + b"\n#\n")
    monkeypatch.setattr(sys.modules["pipeline.tokenclass"], "__file__", str(edited))
    assert score._features_key(tok, family) != key


def test_damaged_table_is_recomputed_and_rewritten(cache):
    tok = _tokenizer()
    family = tokenizer_family(tok)
    key = score._features_key(tok, family)
    first = score.vocab_features(tok, family, key=key)
    path = cache / f"{key}.parquet"
    path.write_bytes(b"not parquet")
    again = score.vocab_features(tok, family, key=key)
    assert again.equals(first)
    assert pl.read_parquet(path).equals(first)


def test_trimming_keeps_the_newest_and_never_touches_other_files(cache, monkeypatch):
    monkeypatch.setattr(score, "FEATURE_CACHE_FILES", 2)
    cache.mkdir(parents=True)
    foreign = cache / "notes.parquet"
    foreign.write_bytes(b"the user's")
    table = pl.DataFrame({"x": [1]})
    for i, key in enumerate(["a" * 32, "b" * 32, "c" * 32]):
        score._store(table, cache / f"{key}.parquet")
        os.utime(cache / f"{key}.parquet", (1000 + i, 1000 + i))
    score._store(table, cache / f"{'d' * 32}.parquet")
    assert _tables(cache) == sorted([f"{'c' * 32}.parquet", f"{'d' * 32}.parquet",
                                     "notes.parquet"])
    assert foreign.read_bytes() == b"the user's"
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temp file left


def test_unwritable_cache_still_scores(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(blocker))  # a file: no folder can go there
    tok = _tokenizer()
    counts, eojeols = _inputs(tok)
    assert score.score_tokens(tok, counts, eojeols).height == len(tok)
