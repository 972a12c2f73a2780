"""`keep_latin_acronyms` and `keep_latin_twins`: the English of Korean text (acronyms in Latin
letters; English words after `(`, `/` or at a line start). Each rule is checked against the
tokens picked by hand from the decoded vocabulary of a small BPE trained on such text, with the
rule off (and inverted inputs) as negative controls."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from pipeline.closure import close_under_merges, required_ids
from pipeline.config import explain, load_config
from pipeline.select import rule_reasons, select

from .test_select_policy import fast_tokenizer, scores_with_counts, train_bpe

TEXTS = ["설치 전에 BIOS 설정에서 USB 부팅을 켜고 DHCP 서버를 찾습니다.",
         "GNU/Linux 배포판은 Linux 커널과 GNU 도구로 구성됩니다.",
         "설치 프로그램(installer)은 installer 이미지에서 시작합니다.",
         "OECD 보고서와 FIFA 랭킹, NASA 발표. INFORMATION TECHNOLOGY는 길다.",
         "Dhcp dhcp Bios bios usb Usb linux Linux installer"]


@pytest.fixture(scope="module")
def tok():
    return fast_tokenizer(train_bpe(TEXTS))


@pytest.fixture(scope="module")
def texts(tok):
    return [tok.decode([i]) for i in range(len(tok))]


def _cfg(**kw):
    off = dict(min_count=10**9, keep_scripts=[], keep_hangul_partials=False,
               keep_korean_morphemes=False, keep_ksx1001=False, top_latin=0)
    return dataclasses.replace(load_config(None).select, **{**off, **kw})


def _latin_by_hand(tok, texts) -> set[int]:
    """Complete ASCII-letter tokens (leading spaces aside), not required by the tokenizer."""
    req = set(required_ids(tok))
    return {i for i, t in enumerate(texts)
            if i not in req and t.strip(" ") and t.lstrip(" ").isascii()
            and t.lstrip(" ").isalpha()}


def _acronyms_by_hand(tok, texts) -> set[int]:
    return {i for i in _latin_by_hand(tok, texts)
            if texts[i].lstrip(" ").isupper() and 2 <= len(texts[i].lstrip(" ")) <= 5}


def test_acronyms_are_the_2_to_5_capital_letter_tokens(tok, texts):
    scores = scores_with_counts(tok, np.zeros(len(tok), dtype=np.int64))
    want = _acronyms_by_hand(tok, texts)
    got = set(np.flatnonzero(rule_reasons(scores, _cfg(keep_latin_acronyms=True)) ==
                             "latin_acronym").tolist())
    assert got == want
    named = {texts[i] for i in got}
    assert {" DHCP", " BIOS", " USB", " GNU"} <= named  # with the space marker ...
    assert {"GNU", "OECD"} <= named                      # ... and without (line start)
    # lower-case and capitalised words, and 6+ capital letters are not acronyms
    latin = _latin_by_hand(tok, texts)
    others = {texts[i] for i in latin - got}
    assert {" Linux", " installer"} <= others
    assert any(len(t.strip()) > 5 and t.strip().isupper() for t in others)
    assert "latin_acronym" not in set(rule_reasons(scores, _cfg()).tolist())  # rule off


def test_acronyms_are_a_reason_in_the_keep_set(tok, texts):
    scores = scores_with_counts(tok, np.zeros(len(tok), dtype=np.int64))
    keep = select(tok, scores, _cfg(keep_latin_acronyms=True))
    kept = set(keep.filter(pl.col("keep"))["token_id"].to_list())
    acronyms = _acronyms_by_hand(tok, texts)
    assert kept == close_under_merges(tok, set(required_ids(tok)) | acronyms)
    assert set(keep.filter(pl.col("reason") == "latin_acronym")["token_id"].to_list()) == acronyms


def _twins_by_hand(tok, texts, kept: set[int]) -> set[int]:
    latin = _latin_by_hand(tok, texts)
    by_text = {texts[i]: i for i in latin}
    out = set()
    for i in kept & latin:
        t = texts[i]
        j = by_text.get(t[1:] if t.startswith(" ") else " " + t)
        if j is not None and j not in kept:
            out.add(j)
    return out


@pytest.mark.parametrize("words", [[" Linux", " installer"], ["installer", "Linux", " dhcp"]])
def test_twins_are_the_other_space_form_of_kept_latin_tokens(tok, texts, words):
    ids = {texts.index(w) for w in words}
    count = np.zeros(len(tok), dtype=np.int64)
    count[list(ids)] = 5
    scores = scores_with_counts(tok, count)
    r = rule_reasons(scores, _cfg(min_count=1, keep_latin_twins=True))
    got = set(np.flatnonzero(r == "latin_twin").tolist())
    frequent = set(np.flatnonzero(r == "frequent").tolist())
    assert frequent == ids
    assert got == _twins_by_hand(tok, texts, frequent)
    # the twin of each kept word is there, in the other space form (not the word itself)
    assert {texts[i] for i in got} == {w[1:] if w.startswith(" ") else " " + w for w in words}
    assert "latin_twin" not in set(rule_reasons(scores, _cfg(min_count=1)).tolist())  # off
    # twins follow the kept tokens: with nothing counted, nothing is a twin
    none = scores_with_counts(tok, np.zeros(len(tok), dtype=np.int64))
    assert "latin_twin" not in set(rule_reasons(none, _cfg(min_count=1,
                                                           keep_latin_twins=True)).tolist())


def test_twins_follow_every_rule_and_are_kept_with_their_closure(tok, texts):
    """Twins of tokens kept by other rules (here top_latin), kept with their merge closure."""
    scores = scores_with_counts(tok, np.zeros(len(tok), dtype=np.int64))
    cfg = _cfg(top_latin=30, keep_latin_twins=True)
    r = rule_reasons(scores, cfg, tok)
    top = set(np.flatnonzero(r == "top_latin").tolist())
    twins = _twins_by_hand(tok, texts, top)
    assert twins and set(np.flatnonzero(r == "latin_twin").tolist()) == twins
    keep = select(tok, scores, cfg)
    assert set(keep.filter(pl.col("reason") == "latin_twin")["token_id"].to_list()) == twins
    kept = set(keep.filter(pl.col("keep"))["token_id"].to_list())
    assert kept == close_under_merges(tok, set(required_ids(tok)) | top | twins)


def test_rules_are_documented_and_off_in_the_seen_only_baseline(tok):
    from pipeline.coverage import seen_only_config

    text = explain()
    assert "keep_latin_acronyms = false" in text and "keep_latin_twins = false" in text
    seen = seen_only_config(_cfg(keep_latin_acronyms=True, keep_latin_twins=True))
    assert not seen.keep_latin_acronyms and not seen.keep_latin_twins
