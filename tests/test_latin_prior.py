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

from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.select import check_select_config, rule_reasons

from .test_select_policy import TEXTS, fast_tokenizer, scores_with_counts, train_bpe


@pytest.fixture(scope="module")
def reversed_tok():
    data = json.loads(train_bpe(TEXTS))
    vocab = data["model"]["vocab"]
    n = len(vocab)
    # ids 3.. reversed: the trainer's ids follow merge order; now they run against it
    data["model"]["vocab"] = {t: (i if i < 3 else n + 2 - i) for t, i in vocab.items()}
    return fast_tokenizer(json.dumps(data))


@pytest.fixture(scope="module")
def scores(reversed_tok):
    return scores_with_counts(reversed_tok, np.zeros(len(reversed_tok), dtype=np.int64))


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
