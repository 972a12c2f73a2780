"""The piece encoder (`pipeline.pieces`) gives exactly the ids of ``encode_batch_fast``.

References: the tokenizer's own ``encode_batch_fast`` on whole documents, on Korean corpora and
on random text built from the characters that decide where pre-tokens and merges start
(spaces of every kind, newlines, digits, punctuation, added-token brackets). Gemma 3's own
tokenizer is checked in tests/test_gemma.py.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from pipeline.pieces import PieceEncoder, piece_plan

from .conftest import KLUE_DEV

# what decides pre-token and merge boundaries, plus Hangul, Latin and a Hanja
ALPHABET = list(" \t\n\r\x0b\x0c\x85\xa0\u3000\u2028 ") + list("가나다한국어영화ㅋㅠ") + \
    list("aAbBzZ'sS09") + list(".,!?()/-_<>[]#$\\") + ["漢", "é", "\u0301", "\x00", "😀"]
texts_st = st.lists(st.text(alphabet=ALPHABET, min_size=0, max_size=40), min_size=1, max_size=30)


def reference(backend, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)]


def encoded(enc: PieceEncoder, texts: list[str]) -> list[list[int]]:
    out = enc.encode(texts)
    assert out.type == pa.list_(pa.int32())
    return out.to_pylist()


def korean_docs(n: int = 3000) -> list[str]:
    import pyarrow.parquet as pq

    if not KLUE_DEV.exists():
        pytest.skip(f"{KLUE_DEV} not present")
    return pq.read_table(KLUE_DEV, columns=["text"]).column("text").to_pylist()[:n]


def test_tekken_is_cut_into_pieces(tekken):
    plan = piece_plan(tekken.backend_tokenizer)
    assert plan is not None and plan.sep_id in tekken.all_special_ids


def test_tekken_ids_equal_on_korean_text_in_batches(tekken):
    backend = tekken.backend_tokenizer
    docs = korean_docs()
    enc = PieceEncoder(backend, max_pieces=5000)  # small: the cache empties several times
    for i in range(0, len(docs), 500):  # later batches hit pieces cached by earlier ones
        assert encoded(enc, docs[i:i + 500]) == reference(backend, docs[i:i + 500])
    assert enc._n > 0  # the piece path ran


@settings(max_examples=100, deadline=None)
@given(texts_st)
def test_tekken_ids_equal_on_random_text(texts):
    backend = _tekken_backend()
    enc = _CACHE.get("tekken_enc") or _CACHE.setdefault("tekken_enc", PieceEncoder(backend))
    enc._reset()  # an empty cache, then the same texts from it
    assert encoded(enc, texts) == reference(backend, texts)
    assert encoded(enc, texts[::-1]) == reference(backend, texts[::-1])  # all from the cache


def test_a_batch_larger_than_the_cache(tekken):
    backend = tekken.backend_tokenizer
    docs = korean_docs(300)
    enc = PieceEncoder(backend, max_pieces=50)
    assert encoded(enc, docs) == reference(backend, docs)
    assert encoded(enc, docs[:5]) == reference(backend, docs[:5])


@pytest.mark.parametrize("shape", ["tekken", "llama3", "qwen2", "gpt2"])
def test_every_accepted_byte_level_split(shape):
    """Each pre-tokenizer `piece_plan` accepts, on a byte-level BPE trained on KLUE."""
    from pipeline.pieces import SPLIT_REGEXES

    regex = {"tekken": None, "gpt2": "gpt2"}.get(shape) or next(
        r for r in SPLIT_REGEXES if r.startswith("(?i:") and (r"\p{N}{1,3}" in r) == (shape == "llama3"))
    backend = _byte_level(regex)
    assert piece_plan(backend) is not None
    enc = PieceEncoder(backend)
    docs = korean_docs(1300)[1000:] + ["don't  stop 12345  it's\t\t x", "a \u3000 b\xa0 c",
                                       "  lead", "trail  "]
    assert encoded(enc, docs) == reference(backend, docs)

    @settings(max_examples=60, deadline=None)
    @given(texts_st)
    def check(texts):
        enc._reset()
        assert encoded(enc, texts) == reference(backend, texts)

    check()


def test_hash_collisions_cost_time_not_ids(tekken, monkeypatch):
    """Every piece hashes alike: each hit must be confirmed by its string."""
    backend = tekken.backend_tokenizer
    docs = korean_docs(400)
    enc = PieceEncoder(backend)
    monkeypatch.setattr(enc, "_hashes", lambda uniq: np.zeros(len(uniq), np.uint64))
    for i in range(0, len(docs), 100):
        assert encoded(enc, docs[i:i + 100]) == reference(backend, docs[i:i + 100])


def test_unconfirmed_hash_hits_would_be_wrong(tekken, monkeypatch):
    """Negative control of the string check: with it disabled, colliding hashes give wrong ids."""
    import pipeline.pieces as pieces

    backend = tekken.backend_tokenizer
    docs = korean_docs(200)
    enc = PieceEncoder(backend)
    monkeypatch.setattr(enc, "_hashes", lambda uniq: np.zeros(len(uniq), np.uint64))
    monkeypatch.setattr(pieces, "_same_bytes", lambda a, a_off, *_: np.ones(len(a_off), bool))
    enc.encode(docs[:100])
    assert encoded(enc, docs[100:]) != reference(backend, docs[100:])


def _metaspace_bpe(corpus: list[str], cross_words: bool) -> Tokenizer:
    """A Gemma-shaped tokenizer: spaces become ▁, no pre-tokenizer split, BPE with byte
    fallback. Trained on words (like SentencePiece) or, with ``cross_words``, on whole lines,
    so that merges join a word to the next one."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = None if cross_words else pre_tokenizers.Split("▁", "merged_with_next")
    trainer = trainers.BpeTrainer(vocab_size=3000, special_tokens=["<pad>", "<unk>", "<bos>"],
                                  initial_alphabet=[f"<0x{b:02X}>" for b in range(256)])
    tok.train_from_iterator(corpus, trainer)
    tok.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")  # Gemma's (a no-op)
    return tok


def test_metaspace_bpe_ids_equal(tmp_path):
    docs = korean_docs(2000)
    tok = _metaspace_bpe(docs[:1000], cross_words=False)
    assert piece_plan(tok) is not None
    enc = PieceEncoder(tok)
    for part in (docs[1000:1500], docs[1500:], docs[1000:1500]):
        assert encoded(enc, part) == reference(tok, part)


@settings(max_examples=60, deadline=None)
@given(texts_st)
def test_metaspace_bpe_ids_equal_on_random_text(texts):
    tok = _metaspace_tok()
    enc = _CACHE.get("metaspace_enc") or _CACHE.setdefault("metaspace_enc", PieceEncoder(tok))
    enc._reset()
    assert encoded(enc, texts) == reference(tok, texts)
    assert encoded(enc, texts[::-1]) == reference(tok, texts[::-1])


_CACHE: dict = {}


def _byte_level(regex: str | None = None) -> Tokenizer:
    """A small byte-level BPE trained on KLUE behind Tekken's pre-tokenizer (or another split
    regex; None: GPT-2's ByteLevel regex): the shapes of Tekken, Llama 3, Qwen 2, GPT-2 at a
    size that loads in milliseconds."""
    from tokenizers import Regex

    from pipeline.pieces import SPLIT_REGEXES

    if "byte_level" not in _CACHE:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(vocab_size=2000, special_tokens=["<unk>", "<s>", "</s>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(korean_docs(1000), trainer)
        _CACHE["byte_level"] = tok.to_str()
    tok = Tokenizer.from_str(_CACHE["byte_level"])
    if regex != "gpt2":
        regex = regex or next(r for r in SPLIT_REGEXES if r.startswith("[^"))
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(regex), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    return tok


def _tekken_backend():
    if "tekken" not in _CACHE:
        from pipeline.tokenizer_io import TEKKEN, load_tokenizer

        _CACHE["tekken"] = load_tokenizer(TEKKEN).backend_tokenizer
    return _CACHE["tekken"]


def _metaspace_tok():
    if "tok" not in _CACHE:
        _CACHE["tok"] = _metaspace_bpe(korean_docs(1000), cross_words=False)
    return _CACHE["tok"]


OGHAM = "\u1681"  # the first candidate of `pipeline.pieces._char_separator`


def _metaspace_with(extra_alphabet: list[str], corpus_extra: list[str] = (), **bpe) -> Tokenizer:
    """`_metaspace_bpe`'s shape with extra initial characters (tokens of their own) and extra
    training lines; ``bpe``: BPE model options (``ignore_merges``)."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, **bpe))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split("▁", "merged_with_next")
    trainer = trainers.BpeTrainer(vocab_size=3000, special_tokens=["<pad>", "<unk>", "<bos>"],
                                  initial_alphabet=[f"<0x{b:02X}>" for b in range(256)]
                                  + extra_alphabet)
    tok.train_from_iterator(korean_docs(1000) + list(corpus_extra), trainer)
    tok.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")
    return tok


def test_metaspace_pieces_are_separated_by_a_plain_character(monkeypatch):
    """A metaspace BPE whose vocabulary holds an Ogham letter that no merge holds: the pieces
    are joined by that letter (one BPE word per string; Gemma 3's case), documents holding it
    are encoded whole, and the ids are the tokenizer's own, on Korean and random text."""
    tok = _metaspace_with([OGHAM])
    plan = piece_plan(tok)
    assert plan.sep == OGHAM and plan.sep_id == tok.token_to_id(OGHAM)
    assert OGHAM in plan.whole_chars
    enc = PieceEncoder(tok)
    docs = korean_docs(1500)[1000:] + [f"영화{OGHAM} 정말", f"{OGHAM}", f"a {OGHAM}{OGHAM} b"]
    assert encoded(enc, docs) == reference(tok, docs)

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.text(alphabet=ALPHABET + [OGHAM], max_size=40), min_size=1, max_size=30))
    def check(texts):
        enc._reset()
        assert encoded(enc, texts) == reference(tok, texts)

    check()
    # negative control: were its documents not encoded whole, the letter inside a piece would
    # be counted as one more separator; the count check sees it and tokenizes the batch's
    # pieces one string each (the same ids, the slow path)
    import pipeline.pieces as pieces

    calls = []
    monkeypatch.setattr(pieces, "_run", lambda b, t: calls.append(len(t)) or b.encode_batch_fast(
        t, add_special_tokens=False))
    mixed = [f"영화{OGHAM}정말 재미", "보통 문장 하나"]
    for whole_chars, one_by_one in ((plan.whole_chars, False),
                                    (plan.whole_chars - {OGHAM}, True)):
        calls.clear()
        forced = PieceEncoder(tok)
        forced.plan = dataclasses.replace(plan, whole_chars=whole_chars)
        assert encoded(forced, mixed) == reference(tok, mixed)
        assert (5 in calls) == one_by_one  # the five pieces, one string each


def test_a_character_some_merge_holds_is_no_separator():
    """The letter is trained into merges (``ᚁ가``): it is not used; the plan falls back to the
    separator special token, with the same ids."""
    tok = _metaspace_with([OGHAM], [f"{OGHAM}가{OGHAM}가 {OGHAM}나"] * 200)
    assert any(OGHAM in t and len(t) > 1 for t in tok.get_vocab())
    plan = piece_plan(tok)
    assert plan.sep == "<pad>"
    docs = korean_docs(1100)[1000:]
    assert encoded(PieceEncoder(tok), docs) == reference(tok, docs)


def test_whole_word_lookup_rules_out_a_character_separator():
    """With ``ignore_merges`` a word found in the vocabulary skips the merges; a piece alone
    and the same piece inside a joined string could then differ: no character separator."""
    tok = _metaspace_with([OGHAM], ignore_merges=True)
    assert piece_plan(tok).sep == "<pad>"
    assert piece_plan(_metaspace_with([OGHAM])).sep == OGHAM  # the same without it


def test_merges_across_words_are_not_cut():
    """Negative control of the vocabulary check: a tokenizer whose tokens join words is
    encoded whole; cut into pieces anyway, its ids would differ."""
    docs = korean_docs(1200)
    tok = _metaspace_bpe(docs[:1000], cross_words=True)
    assert any("▁" in t[1:] and not set(t) <= {"▁"} for t in tok.get_vocab())
    assert piece_plan(tok) is None
    assert encoded(PieceEncoder(tok), docs[1000:]) == reference(tok, docs[1000:])
    forced = PieceEncoder(tok)
    forced.plan = piece_plan(_metaspace_tok())  # a plan without the check
    forced.plan = dataclasses.replace(forced.plan, sep="<pad>",
                                    sep_id=tok.token_to_id("<pad>"))
    assert encoded(forced, docs[1000:]) != reference(tok, docs[1000:])


@pytest.mark.parametrize("change", ["truncation", "regex", "prefix_space", "normalizer",
                                    "unigram"])
def test_structures_not_proven_are_encoded_whole(change):
    """Anything the piece rule was not shown for falls back to whole documents (and still
    gives the reference ids)."""
    backend = _byte_level()
    assert piece_plan(backend) is not None  # before the change
    if change == "truncation":
        backend.enable_truncation(8)
    elif change == "regex":
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(pattern=__import__("tokenizers").Regex(r"\S+\s*"),
                                 behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    elif change == "prefix_space":
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    elif change == "normalizer":
        backend.normalizer = normalizers.Lowercase()
    else:
        backend = Tokenizer(models.Unigram([("<unk>", 0.0), ("a", -1.0)], 0))
    assert piece_plan(backend) is None
    docs = ["영화  정말 Good", " 재미있다", "Hello world's end"]
    assert encoded(PieceEncoder(backend), docs) == reference(backend, docs)


def test_a_separator_that_does_not_split_falls_back_to_one_string_per_piece():
    """If the separator's id never comes out (a plan naming the wrong id), each new piece is
    tokenized on its own: slower, the same ids."""
    backend = _byte_level()
    enc = PieceEncoder(backend)
    enc.plan = dataclasses.replace(enc.plan, sep_id=backend.token_to_id("</s>"))
    docs = korean_docs(1100)[1000:]
    assert encoded(enc, docs) == reference(backend, docs)
    assert enc._n > 0  # cached through the fallback


def test_documents_with_added_token_text_are_encoded_whole(tekken):
    backend = tekken.backend_tokenizer
    docs = ["이 영화 <s> 정말", "[INST] 질문 [/INST] 답", "보통 문장", "</s>끝", "a\x00b c"]
    assert encoded(PieceEncoder(backend), docs) == reference(backend, docs)


CUT_ALPHABET = list(" \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u1680\u2000\u200a\u200b\u2028\u2029\u202f"
                    "\u205f\u3000\u180e") + list("가a.\u0301😀")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=CUT_ALPHABET, max_size=12), min_size=1, max_size=8))
def test_cuts_are_where_the_regex_finds_a_non_space_then_a_space(texts):
    """Reference: Polars' (Rust regex) ``(\\S) `` on each document, cut between its two
    characters; every White_Space character, one- to three-byte, and look-alikes that are
    not White_Space (U+001C, U+200B, U+180E) are in the alphabet."""
    import polars as pl

    from pipeline.pieces import _cuts, utf8_buffers

    arr = pa.array(texts, pa.string())
    data, off = utf8_buffers(arr)
    marked = pl.Series(texts).str.replace_all(r"(\S) ", "${1}\x00 ").to_list()
    want = []
    for start, m in zip(off[:-1].tolist(), marked):
        at = 0
        for part in m.split("\x00")[:-1]:
            at += len(part.encode())
            want.append(start + at)
    assert _cuts(data[:off[-1]], off).tolist() == want


def test_the_cache_keeps_the_pieces_found_most_often(tekken):
    """A full cache drops the pieces found once and keeps the often found ones: those are not
    tokenized again. Ids stay exact throughout."""
    backend = tekken.backend_tokenizer
    docs = korean_docs(2000)
    enc = PieceEncoder(backend, max_pieces=3000)
    hot = ["영화 정말 재미있다", "이 영화 최고"] * 50
    tokenized: list[str] = []
    real = enc._tokenize
    enc._tokenize = lambda pieces: (tokenized.extend(pieces.to_pylist()), real(pieces))[1]
    for i in range(0, len(docs), 200):  # several evictions; the hot pieces come every batch
        batch = hot + docs[i:i + 200]
        assert encoded(enc, batch) == reference(backend, batch)
    assert enc._n <= 3000
    assert tokenized.count(" 영화") == 1 and tokenized.count(" 최고") == 1
    assert len(tokenized) > 3000  # the cache was full, more than once


def test_long_pieces_are_tokenized_each_time_and_not_cached(tekken):
    from pipeline.pieces import MAX_PIECE_BYTES

    backend = tekken.backend_tokenizer
    long_word = "가나다라마바사" * (MAX_PIECE_BYTES // 10)
    docs = [f"앞 {long_word} 뒤", f"{long_word}", f"다시 {long_word}"]
    enc = PieceEncoder(backend)
    assert encoded(enc, docs) == reference(backend, docs)
    assert encoded(enc, docs) == reference(backend, docs)
    assert enc._blen[:enc._n].max() <= MAX_PIECE_BYTES
