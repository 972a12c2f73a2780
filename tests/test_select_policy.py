"""The selection policy itself, asserted rule by rule (not only its invariants): each test
fails when its rule is removed or inverted.

A small byte-level BPE trained on Korean, English and Japanese text keeps every run fast and
every expectation exact; the token features (`pipeline.select` reads only ``scores``) are the
real byte/script classes plus counts and fastText languages set by the test."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from pipeline.closure import close_under_merges, required_ids
from pipeline.config import load_config
from pipeline.select import select

TEXTS = ["대한민국 헌법 제1조 대한민국은 민주공화국이다.", "모든 국민은 법 앞에 평등하다.",
         "The quick brown fox jumps over the lazy dog.", "def main(): return print(value)",
         "今日はいい天気ですね。", "오늘 날씨가 좋다 내일은 비가 온다 the weather"]


def train_bpe(texts: list[str]) -> str:
    """tokenizer.json of a small byte-level BPE trained on ``texts`` (ids follow merge order)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=["<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    backend.train_from_iterator(texts * 20, trainer)
    return backend.to_str()


def fast_tokenizer(tokenizer_json: str):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(tokenizer_json),
                                   bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def scores_with_counts(tok, count) -> pl.DataFrame:
    """Real classes and required reasons of ``tok``, the given counts (also as doc_freq), no
    Kiwi features, no fastText languages."""
    from pipeline.tokenclass import classify_vocab

    base = classify_vocab(tok)
    req = required_ids(tok)
    return base.with_columns(
        required=pl.Series([req.get(i) for i in range(base.height)], dtype=pl.String),
        count=pl.Series(count, dtype=pl.Int64), doc_freq=pl.Series(count, dtype=pl.Int64),
        kiwi_single_morpheme=pl.lit(False), kiwi_valid_word=pl.lit(False),
        lang=pl.lit(None, dtype=pl.String), lang_prob=pl.lit(None, dtype=pl.Float32))


@pytest.fixture(scope="module")
def tok():
    return fast_tokenizer(train_bpe(TEXTS))


@pytest.fixture(scope="module")
def scores(tok) -> pl.DataFrame:
    """Real classes; seeded counts (a third unused); no Kiwi features; fastText languages set
    below per test."""
    n = len(tok)
    rng = np.random.default_rng(0)
    return scores_with_counts(tok, rng.integers(1, 10_000, n) * (rng.random(n) < 0.67))


def rules(**kw):
    """Every rule off (min_count above any count) except the ones given."""
    base = dataclasses.replace(load_config(None).select, min_count=10**9, min_doc_freq=1,
                               keep_scripts=[], keep_hangul_partials=False,
                               keep_korean_morphemes=False, keep_languages=[], top_latin=0,
                               target_vocab_size=0)
    return dataclasses.replace(base, **kw)


def kept_ids(keep: pl.DataFrame) -> set[int]:
    return set(keep.filter(pl.col("keep"))["token_id"].to_list())


def reasons(keep: pl.DataFrame) -> dict[int, str]:
    return dict(zip(keep["token_id"].to_list(), keep["reason"].to_list()))


# --------------------------------------------------------------------------------------------
# target_vocab_size: the best-ranked tokens, exactly up to the cap


def reference_target(tok, scores: pl.DataFrame, target: int, min_count: int) -> set[int]:
    """The documented policy written out independently: required tokens, then frequent tokens
    by count (ties: lower id), each added with its merge closure while the total fits."""
    req = set(required_ids(tok))
    cnt = scores["count"].to_list()
    freq = [i for i in range(len(cnt)) if cnt[i] >= min_count and i not in req]
    freq.sort(key=lambda i: (-cnt[i], i))
    kept = close_under_merges(tok, req)
    for t in freq:
        grown = close_under_merges(tok, kept | {t})
        if len(grown) <= target:
            kept = grown
    return kept


@pytest.mark.parametrize("room", [40, 150])
def test_target_keeps_exactly_the_best_ranked(tok, scores, room):
    n_req = len(required_ids(tok))
    target = n_req + room
    keep = select(tok, scores, rules(min_count=1, target_vocab_size=target))
    kept = kept_ids(keep)
    assert len(kept) == target  # the cap is reached, not merely respected
    assert kept == reference_target(tok, scores, target, 1)
    assert "over_target" in set(keep["reason"])


@pytest.mark.parametrize("room", [1, 40, 150])
def test_target_is_a_prefix_of_the_ranking(tok, scores, room):
    """With counts falling with the id (as real BPE counts do: a merge's parts are more frequent
    than its result and have lower ids) no closure gets in the way: the kept tokens are the
    required ones plus exactly the ``room`` most frequent others, and every other used token is
    ``over_target``."""
    monotone = scores.with_columns(count=(scores.height - pl.col("token_id")) * 10,
                                   doc_freq=pl.lit(1, dtype=pl.Int64))
    req = set(required_ids(tok))
    ranked = [i for i in range(scores.height) if i not in req]  # count falls with the id
    keep = select(tok, monotone, rules(min_count=1, target_vocab_size=len(req) + room))
    assert kept_ids(keep) == req | set(ranked[:room])
    assert {reasons(keep)[i] for i in ranked[room:]} == {"over_target"}


def test_target_changes_nothing_when_everything_fits(tok, scores):
    free = kept_ids(select(tok, scores, rules(min_count=1)))
    capped = kept_ids(select(tok, scores, rules(min_count=1, target_vocab_size=len(free))))
    assert capped == free


# --------------------------------------------------------------------------------------------
# keep_scripts


@pytest.mark.parametrize("script", ["hangul_syllable", "latin"])
def test_every_token_of_a_kept_script_is_kept(tok, scores, script):
    of_script = set(scores.filter(pl.col("script") == script)["token_id"].to_list())
    assert len(of_script) > 5
    without = kept_ids(select(tok, scores, rules()))
    assert of_script - without  # the rule is what keeps them
    keep = select(tok, scores, rules(keep_scripts=[script]))
    assert of_script <= kept_ids(keep)
    r = reasons(keep)
    assert {r[i] for i in of_script - without} == {"script"}
    others = set(scores.filter(pl.col("script").is_not_null() & (pl.col("script") != script)
                               & pl.col("required").is_null())["token_id"].to_list())
    assert {r[i] for i in others & kept_ids(keep)} <= {"merge_closure"}


# --------------------------------------------------------------------------------------------
# top_latin


def test_top_latin_keeps_the_lowest_ranked_latin_tokens(tok, scores):
    """The N Latin tokens with the best tokenizer rank (lowest id) among those not kept anyway
    (bytes are always kept: counting them would spend the N on nothing)."""
    latin = scores.filter((pl.col("script") == "latin") & pl.col("required").is_null()) \
        .sort("token_id")["token_id"].to_list()
    n = 8
    assert len(latin) > 2 * n
    keep = select(tok, scores, rules(top_latin=n))
    kept, r = kept_ids(keep), reasons(keep)
    assert {r[i] for i in latin[:n]} == {"top_latin"}
    assert {r[i] for i in set(latin[n:]) & kept} <= {"merge_closure"}
    assert set(latin[n:]) - kept  # the worse-ranked are dropped
    assert kept == close_under_merges(tok, set(required_ids(tok)) | set(latin[:n]))


# --------------------------------------------------------------------------------------------
# keep_languages, min_language_prob


@pytest.fixture(scope="module")
def lang_scores(scores):
    """Complete non-required tokens with a letter get a language: en 0.9, en 0.5, ja 0.95 in
    turn."""
    cand = scores.filter((pl.col("byte_class") == "complete") & pl.col("required").is_null()
                         & pl.col("decoded").str.contains(r"\pL"))["token_id"].to_list()
    langs = {t: [("en", 0.9), ("en", 0.5), ("ja", 0.95)][k % 3] for k, t in enumerate(cand)}
    return scores.with_columns(
        lang=pl.Series([langs.get(i, (None, None))[0] for i in range(scores.height)],
                       dtype=pl.String),
        lang_prob=pl.Series([langs.get(i, (None, None))[1] for i in range(scores.height)],
                            dtype=pl.Float32))


def _lang_groups(lang_scores):
    def ids(lang, prob):
        return set(lang_scores.filter((pl.col("lang") == lang)
                                      & ((pl.col("lang_prob") - prob).abs() < 1e-6))
                   ["token_id"].to_list())
    return ids("en", 0.9), ids("en", 0.5), ids("ja", 0.95)


def test_keep_languages_keeps_only_those_languages_above_the_probability(tok, lang_scores):
    en_sure, en_unsure, ja = _lang_groups(lang_scores)
    assert min(len(en_sure), len(en_unsure), len(ja)) > 5
    keep = select(tok, lang_scores, rules(keep_languages=["en"], min_language_prob=0.8))
    kept, r = kept_ids(keep), reasons(keep)
    assert {r[i] for i in en_sure} == {"language"}
    assert kept == close_under_merges(tok, set(required_ids(tok)) | en_sure)
    # the unsure English and the Japanese tokens are kept only as parts of a kept token
    assert {r[i] for i in (en_unsure | ja) & kept} <= {"merge_closure"}
    assert len((en_unsure | ja) - kept) > len(en_unsure | ja) // 2


def test_min_language_prob_is_a_lower_bound(tok, lang_scores):
    en_sure, en_unsure, ja = _lang_groups(lang_scores)
    loose = select(tok, lang_scores, rules(keep_languages=["en"], min_language_prob=0.4))
    assert {reasons(loose)[i] for i in en_sure | en_unsure} == {"language"}
    exact = select(tok, lang_scores, rules(keep_languages=["en"], min_language_prob=0.9))
    assert {reasons(exact)[i] for i in en_sure} == {"language"}  # >=, not >
    assert kept_ids(select(tok, lang_scores, rules(keep_languages=["ja"],
                                                   min_language_prob=0.96))) \
        == close_under_merges(tok, set(required_ids(tok)))
    assert {reasons(select(tok, lang_scores, rules(keep_languages=["ja"])))[i]
            for i in ja} == {"language"}
