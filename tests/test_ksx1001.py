"""`keep_ksx1001`: single-character tokens of KS X 1001 (EUC-KR) are kept with reason
``ksx1001``, checked against Python's own euc_kr codec on Tekken's decoded tokens."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from pipeline.closure import required_ids
from pipeline.config import load_config
from pipeline.select import rule_reasons, select

from .test_select_policy import scores_with_counts


@pytest.fixture(scope="module")
def scores(tekken):
    return scores_with_counts(tekken, np.zeros(len(tekken), dtype=np.int64))


def _cfg(**kw):
    return dataclasses.replace(load_config(None).select, min_count=10**9, keep_scripts=[],
                               keep_hangul_partials=False, keep_korean_morphemes=False, **kw)


def _by_hand(tok, scores) -> set[int]:
    out = set()
    req = set(required_ids(tok))
    for i in range(len(tok)):
        s = tok.decode([i]).strip()
        if i in req or len(s) != 1 or s.isascii() or "가" <= s <= "힣" or s == "\ufffd":
            continue
        try:
            s.encode("euc_kr")
        except UnicodeEncodeError:
            continue
        out.add(i)
    return out


def test_ksx1001_tokens_equal_the_euc_kr_codec(tekken, scores):
    got = set(np.flatnonzero(rule_reasons(scores, _cfg(keep_ksx1001=True)) == "ksx1001").tolist())
    want = _by_hand(tekken, scores)
    assert got == want and len(want) > 1000
    texts = {tekken.decode([i]).strip() for i in got}
    # Hanja and full-width forms are there (Tekken has no single-token unit symbol like ㎞)
    assert any("\u4e00" <= t <= "\u9fff" for t in texts)
    assert any("\uff01" <= t <= "\uff5e" for t in texts)
    assert not rule_reasons(scores, _cfg(keep_ksx1001=False)).tolist().count("ksx1001")


def test_ksx1001_is_a_reason_in_the_keep_set(tekken, scores):
    keep = select(tekken, scores, _cfg(keep_ksx1001=True))
    ids = keep.filter(pl.col("reason") == "ksx1001")["token_id"].to_list()
    assert set(ids) <= _by_hand(tekken, scores) and len(ids) > 1000
    assert keep.filter(pl.col("reason") == "ksx1001")["keep"].all()


@pytest.mark.parametrize("top", [1, 300, 1500])
def test_max_ksx1001_keeps_the_lowest_ids_first(tekken, scores, top):
    """`max_ksx1001 = N`: the N KS X 1001 characters with the lowest ids, no other."""
    want = sorted(_by_hand(tekken, scores))
    assert len(want) > 1500
    got = set(np.flatnonzero(rule_reasons(scores, _cfg(keep_ksx1001=True, max_ksx1001=top))
                             == "ksx1001").tolist())
    assert got == set(want[:top])
    every = rule_reasons(scores, _cfg(keep_ksx1001=True, max_ksx1001=0)) == "ksx1001"
    assert set(np.flatnonzero(every).tolist()) == set(want)  # 0: no cap


def test_seen_only_baseline_switches_every_rule_off(tekken, scores):
    """The coverage baseline keeps only required and seen tokens, whichever rules the config
    switches on (a rule left on would inflate the baseline)."""
    from pipeline.coverage import seen_only_config

    on = dataclasses.replace(load_config(None).select, keep_ksx1001=True, top_latin=500,
                             keep_scripts=["hangul_syllable", "han"], keep_languages=["en"],
                             target_vocab_size=5000)
    seen = scores.with_columns(count=(pl.col("token_id") % 7 == 0).cast(pl.Int64),
                               doc_freq=(pl.col("token_id") % 7 == 0).cast(pl.Int64))
    reasons = set(rule_reasons(seen, seen_only_config(on), tekken).tolist())
    assert reasons <= {None, "frequent", "special", "byte", "chat_template"}
    assert "frequent" in reasons
