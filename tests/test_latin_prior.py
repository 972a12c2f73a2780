"""`top_latin_rank = "merges"`: the Latin tokens kept by ``top_latin`` are the ones produced
by the earliest BPE merges, whatever the ids (Gemma's ids do not follow frequency; merges are
learned in frequency order). Checked on a tokenizer whose ids are deliberately reversed, so
id order and merge order disagree, against the merges list read by hand."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import polars as pl
import pytest

from pipeline.closure import required_ids
from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.select import check_select_config, rule_reasons

from .test_select_policy import TEXTS


@pytest.fixture(scope="module")
def reversed_tok():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=["<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    backend.train_from_iterator(TEXTS * 20, trainer)
    data = json.loads(backend.to_str())
    vocab = data["model"]["vocab"]
    n = len(vocab)
    # ids 3.. reversed: the trainer's ids follow merge order; now they run against it
    data["model"]["vocab"] = {t: (i if i < 3 else n + 2 - i) for t, i in vocab.items()}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(data)),
                                   bos_token="<s>", eos_token="</s>", pad_token="<pad>")


@pytest.fixture(scope="module")
def scores(reversed_tok):
    from pipeline.tokenclass import classify_vocab

    base = classify_vocab(reversed_tok)
    req = required_ids(reversed_tok)
    return base.with_columns(
        required=pl.Series([req.get(i) for i in range(base.height)], dtype=pl.String),
        count=pl.lit(0, dtype=pl.Int64), doc_freq=pl.lit(0, dtype=pl.Int64),
        kiwi_single_morpheme=pl.lit(False), kiwi_valid_word=pl.lit(False),
        lang=pl.lit(None, dtype=pl.String), lang_prob=pl.lit(None, dtype=pl.Float32))


def _cfg(**kw):
    sc = load_config(None).select
    return dataclasses.replace(sc, min_count=10**9, keep_scripts=[], keep_hangul_partials=False,
                               keep_korean_morphemes=False, keep_languages=[], **kw)


def _by_hand(tok, scores, n_top):
    """The n_top Latin, non-required tokens in order of the first merge producing them."""
    model = json.loads(tok.backend_tokenizer.to_str())["model"]
    first = {}
    for k, m in enumerate(model["merges"]):
        a, b = m if isinstance(m, list) else m.split(" ", 1)
        first.setdefault(model["vocab"][a + b], k)
    latin = scores.filter((pl.col("script") == "latin") & pl.col("required").is_null())
    ids = latin["token_id"].to_list()
    return set(sorted(ids, key=lambda i: (first.get(i, float("inf")), i))[:n_top])


@pytest.mark.parametrize("n_top", [5, 40])
def test_merges_rank_keeps_the_earliest_merged_latin_tokens(reversed_tok, scores, n_top):
    r = rule_reasons(scores, _cfg(top_latin=n_top, top_latin_rank="merges"), reversed_tok)
    kept = set(np.flatnonzero(r == "top_latin").tolist())
    assert kept == _by_hand(reversed_tok, scores, n_top)
    by_id = set(np.flatnonzero(rule_reasons(scores, _cfg(top_latin=n_top), reversed_tok)
                               == "top_latin").tolist())
    assert len(by_id) == n_top and by_id != kept  # ids run against merges here


def test_bad_top_latin_rank_is_refused():
    with pytest.raises(ConfigError, match="top_latin_rank"):
        check_select_config(_cfg(top_latin=5, top_latin_rank="frequency"))
