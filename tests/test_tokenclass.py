"""pipeline.tokenclass: byte classes and scripts of vocabulary entries, on the real Tekken vocab."""

from __future__ import annotations

import random
import re
import unicodedata

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import tokenclass as tc

# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def vocab(tekken) -> pl.DataFrame:
    return tc.classify_vocab(tekken)


def _rows(vocab: pl.DataFrame, pred) -> pl.DataFrame:
    return vocab.filter(pl.col("decoded").is_not_null()).filter(
        pl.col("decoded").map_elements(pred, return_dtype=pl.Boolean))


def _bl(b: bytes) -> str:
    """Byte-level (GPT-2) spelling of some bytes."""
    m = tc.bytes_to_unicode()
    return "".join(m[x] for x in b)


# --------------------------------------------------------------------------------------------
# Whole vocabulary


def test_classify_vocab_shape(tekken, vocab):
    assert vocab.height == len(tekken)
    assert vocab["token_id"].to_list() == list(range(len(tekken)))
    assert vocab.schema == pl.Schema({
        "token_id": pl.Int64, "token": pl.String, "token_bytes": pl.Binary,
        "decoded": pl.String, "space_marker": pl.Boolean, "byte_class": pl.String,
        "script": pl.String, "partial_scripts": pl.List(pl.String),
        "partial_hangul_only": pl.Boolean, "is_special": pl.Boolean})
    assert set(vocab["byte_class"].unique()) == set(tc.BYTE_CLASSES)
    assert set(vocab["script"].drop_nulls().unique()) <= set(tc.SCRIPT_CLASSES)
    # decoded is null exactly for special, partial and non-ASCII base bytes
    nulls = vocab.filter(pl.col("decoded").is_null())
    assert set(nulls["byte_class"].unique()) <= {"special", "partial", "byte"}
    assert vocab.filter(pl.col("byte_class") == "complete")["decoded"].null_count() == 0
    # partial_scripts is filled for partial tokens only, and never empty for them
    part = vocab.filter(pl.col("byte_class") == "partial")
    assert part.height > 0 and part["partial_scripts"].list.len().min() > 0
    other = vocab.filter(pl.col("byte_class") != "partial")
    assert other["partial_scripts"].list.len().max() == 0
    assert not other["partial_hangul_only"].any()


def test_special_tokens(tekken, vocab):
    for name in ("<unk>", "<s>", "</s>", "[INST]", "[/INST]"):
        row = vocab.row(tekken.convert_tokens_to_ids(name), named=True)
        assert row["token"] == name
        assert row["byte_class"] == "special" and row["is_special"]
        assert row["token_bytes"] is None and row["decoded"] is None and row["script"] is None
        assert not row["space_marker"]
    specials = vocab.filter(pl.col("is_special"))
    assert set(specials["token_id"]) == set(int(i) for i in tekken.added_tokens_decoder)
    assert (specials["byte_class"] == "special").all()


def test_base_bytes(vocab):
    base = vocab.filter(pl.col("byte_class") == "byte")
    assert base.height == 256
    assert sorted(base["token_bytes"].to_list()) == [bytes([b]) for b in range(256)]
    assert (base["token"].str.len_chars() == 1).all()
    for row in base.iter_rows(named=True):
        b = row["token_bytes"][0]
        assert row["decoded"] == (chr(b) if b < 0x80 else None)
        assert row["space_marker"] == (b == 0x20)


def test_hangul_partial_token(vocab):
    def head(b: bytes | None) -> bool:  # lead EA-ED + one continuation byte, nothing else
        return b is not None and len(b) == 2 and 0xEA <= b[0] <= 0xED and 0x80 <= b[1] <= 0xBF

    heads = vocab.filter(pl.col("token_bytes").map_elements(head, return_dtype=pl.Boolean))
    assert heads.height > 0
    assert (heads["byte_class"] == "partial").all()
    for row in heads.iter_rows(named=True):
        b = row["token_bytes"]
        lo = ((b[0] & 0x0F) << 12) | ((b[1] & 0x3F) << 6)
        hangul = 0xAC00 <= lo and lo + 0x3F <= 0xD7FF  # syllables, then jamo Ext-B
        assert row["partial_hangul_only"] == hangul, b
        if hangul and lo + 0x3F <= 0xD7A3:
            assert row["partial_scripts"] == ["hangul_syllable"]
    ec = heads.filter(pl.col("token_bytes").bin.starts_with(b"\xec"))
    assert ec.height > 0 and ec["partial_hangul_only"].all()
    # the same with the space marker: 'Ġ' + EC xx
    spaced = vocab.filter(pl.col("token_bytes").map_elements(
        lambda b: b is not None and len(b) == 3 and b[0] == 0x20 and b[1] == 0xEC,
        return_dtype=pl.Boolean))
    assert spaced.height > 0
    for row in spaced.iter_rows(named=True):
        assert row["byte_class"] == "partial" and row["space_marker"]
        assert row["partial_hangul_only"]
        assert row["partial_scripts"] == ["hangul_syllable", "whitespace"]


def test_partial_hangul_only_implies_hangul(vocab):
    part = vocab.filter(pl.col("byte_class") == "partial")
    for row in part.iter_rows(named=True):
        scripts = set(row["partial_scripts"])
        assert scripts
        assert row["partial_hangul_only"] == bool(
            scripts & tc.HANGUL_SCRIPTS and scripts <= tc.HANGUL_SCRIPTS | tc.NEUTRAL_SCRIPTS)
    assert part["partial_hangul_only"].any() and not part["partial_hangul_only"].all()


def test_lone_continuation_token(vocab):
    def cont_only(b: bytes | None) -> bool:
        return b is not None and len(b) >= 2 and all(0x80 <= x <= 0xBF for x in b)

    rows = vocab.filter(pl.col("token_bytes").map_elements(cont_only, return_dtype=pl.Boolean))
    assert rows.height > 0
    assert (rows["byte_class"] == "partial").all()
    assert rows["partial_scripts"].list.len().min() >= 2
    assert not rows["partial_hangul_only"].any()


def test_latin_words(vocab):
    rows = _rows(vocab, lambda s: re.fullmatch(r" [a-z]{5,}", s) is not None)
    assert rows.height > 1000
    assert (rows["script"] == "latin").all() and rows["space_marker"].all()
    assert (rows["byte_class"] == "complete").all()
    row = vocab.filter(pl.col("token") == "Ġempower").row(0, named=True)
    assert row["decoded"] == " empower" and row["script"] == "latin" and row["space_marker"]


def test_han_kana_hangul_tokens(vocab):
    def all_in(lo, hi, min_len=1):
        return lambda s: len(s.strip()) >= min_len and all(lo <= ord(c) <= hi for c in s.strip())

    han = _rows(vocab, all_in(0x4E00, 0x9FFF, 2))
    hira = _rows(vocab, all_in(0x3041, 0x3096, 2))
    kata = _rows(vocab, all_in(0x30A1, 0x30FA, 2))
    hangul = _rows(vocab, all_in(0xAC00, 0xD7A3))
    for rows, script in ((han, "han"), (hira, "kana"), (kata, "kana"),
                         (hangul, "hangul_syllable")):
        assert rows.height > 10, script
        assert (rows["script"] == script).all(), script
        assert (rows["byte_class"] == "complete").all()


def test_token_bytes_match_tokenizer_decoding(tekken, vocab):
    complete = vocab.filter(pl.col("byte_class") == "complete")
    sample = complete.sample(3000, seed=7)
    for raw, decoded in zip(sample["token"], sample["decoded"]):
        assert tekken.convert_tokens_to_string([raw]) == decoded, raw


def test_token_bytes_concatenate_to_text(tekken, vocab, klue_texts):
    table = vocab["token_bytes"].to_list()
    texts = random.Random(3).sample(klue_texts, 300)
    for text in texts:
        ids = tekken.encode(text, add_special_tokens=False)
        assert b"".join(table[i] for i in ids) == text.encode("utf-8")


# --------------------------------------------------------------------------------------------
# Byte functions per family


def test_bytes_to_unicode_is_gpt2_map():
    from tokenizers.pre_tokenizers import ByteLevel

    m = tc.bytes_to_unicode()
    assert sorted(m) == list(range(256))
    assert set(m.values()) == set(ByteLevel.alphabet())
    try:
        from transformers.convert_slow_tokenizer import bytes_to_unicode
    except ImportError:  # pragma: no cover
        return
    assert bytes_to_unicode() == m


def test_token_bytes_families():
    assert tc.token_bytes("Ġ안", "bytelevel_bpe") is None  # '안' is not a byte-level char
    assert tc.token_bytes(_bl(" 안".encode()), "bytelevel_bpe") == " 안".encode()
    assert tc.token_bytes("a b", "bytelevel_bpe") is None  # a raw space is not a byte char
    assert tc.token_bytes("Ġthe", "bytelevel_bpe", special=True) is None
    assert tc.token_bytes("▁안녕", "sentencepiece_bpe") == " 안녕".encode()
    assert tc.token_bytes("<0xEC>", "sentencepiece_bpe") == b"\xec"
    assert tc.token_bytes("<0x0A>", "unigram") == b"\n"
    assert tc.token_bytes("하다", "unigram") == "하다".encode()
    assert tc.token_bytes("##녕", "wordpiece") == "녕".encode()
    assert tc.token_bytes("안", "wordpiece") == "안".encode()
    assert tc.token_bytes(None, "wordpiece") is None
    with pytest.raises(ValueError):
        tc.token_bytes("x", "wordlevel")


def test_space_marker_and_byte_class_families():
    assert tc.space_marker("Ġthe", "bytelevel_bpe") and not tc.space_marker("the", "bytelevel_bpe")
    assert tc.space_marker("▁안", "sentencepiece_bpe") and not tc.space_marker("안", "unigram")
    assert tc.space_marker("안", "wordpiece") and not tc.space_marker("##안", "wordpiece")
    assert tc.byte_class("ì", "bytelevel_bpe") == "byte"
    assert tc.byte_class("d", "bytelevel_bpe") == "byte"
    assert tc.byte_class("ìķ", "bytelevel_bpe") == "partial"
    assert tc.byte_class("ìķĪ", "bytelevel_bpe") == "complete"
    assert tc.byte_class("<s>", "bytelevel_bpe", special=True) == "special"
    assert tc.byte_class("<0xEC>", "sentencepiece_bpe") == "byte"
    assert tc.byte_class("▁안", "sentencepiece_bpe") == "complete"
    assert tc.byte_class("##안", "wordpiece") == "complete"
    assert tc.decoded_text(b"\xec\x95\x88") == "안" and tc.decoded_text(b"\xec\x95") is None


def _sp_tokenizer():
    """A tiny SentencePiece-style BPE (Metaspace + byte fallback) built in memory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece in ("▁", "안", "녕", "▁안", "▁안녕", "a", "b", "▁a", "ab"):
        vocab[piece] = len(vocab)
    merges = [("▁", "안"), ("▁안", "녕"), ("▁", "a"), ("a", "b")]
    model = models.BPE(vocab, merges, unk_token="<unk>", byte_fallback=True)
    tk = Tokenizer(model)
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    tk.decoder = decoders.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")


def test_classify_vocab_sentencepiece():
    tok = _sp_tokenizer()
    df = tc.classify_vocab(tok)
    assert df.height == len(tok)
    by_token = {r["token"]: r for r in df.iter_rows(named=True)}
    for name in ("<unk>", "<s>", "</s>"):
        assert by_token[name]["byte_class"] == "special" and by_token[name]["is_special"]
    assert by_token["<0xEC>"]["byte_class"] == "byte"
    assert by_token["<0xEC>"]["token_bytes"] == b"\xec"
    assert by_token["<0x41>"]["decoded"] == "A"
    row = by_token["▁안녕"]
    assert row["byte_class"] == "complete" and row["decoded"] == " 안녕"
    assert row["space_marker"] and row["script"] == "hangul_syllable"
    assert by_token["▁"]["script"] == "whitespace"
    assert by_token["ab"]["script"] == "latin" and not by_token["ab"]["space_marker"]
    assert (df["byte_class"] == "byte").sum() == 256


# --------------------------------------------------------------------------------------------
# Scripts


@pytest.mark.parametrize("text,expected", [
    (" 안녕", "hangul_syllable"), ("다.", "hangul_syllable"), ("(주)", "hangul_syllable"),
    ("2년", "hangul_syllable"), ("안녕ㅋㅋ", "hangul_syllable"), ("ㅋㅋ", "hangul_jamo"),
    ("\u1100\u1161", "hangul_jamo"), ("\uffa1", "hangul_jamo"), ("\ua960", "hangul_jamo"),
    ("東京へ", "mixed"), ("A급", "mixed"), ("漢字어", "mixed"), ("café", "latin"),
    ("e\u0301", "latin"), (" the", "latin"), ("Ｔｏｋｙｏ", "latin"), ("Привет,", "cyrillic"),
    ("مرحبا", "arabic"), ("٣", "digit"), ("カタカナー", "kana"), ("ひらがな", "kana"),
    ("々", "han"), ("〇", "han"), ("中国", "han"), ("𠀋", "han"), ("αβγ", "other"),
    ("สวัสดี", "other"), ("1,000", "digit"), (" 3.", "digit"), ("７", "digit"),
    ("...", "punct_symbol"), ("😀", "punct_symbol"), ("①", "punct_symbol"),
    ("\u200b", "punct_symbol"), ("\x00", "punct_symbol"), ("\t\n ", "whitespace"),
    ("\u3000", "whitespace"), ("\u0301", "other"), ("", "other"), ("\ue000", "other"),
])
def test_script_class(text, expected):
    assert tc.script_class(text) == expected


def test_char_script():
    assert tc.char_script("가") == "hangul_syllable"
    assert tc.char_script("ㄱ") == "hangul_jamo"
    assert tc.char_script("ᄀ") == "hangul_jamo"
    assert tc.char_script("×") == "punct_symbol"
    assert tc.char_script("é") == "latin"
    assert tc.char_script("\u0378") == "other"  # unassigned


# --------------------------------------------------------------------------------------------
# Partial UTF-8


@pytest.mark.parametrize("b,scripts,hangul_only", [
    (b"\xec\x95", {"hangul_syllable"}, True),
    (b"\xea\xb0", {"hangul_syllable"}, True),            # U+AC00..AC3F
    (b"\xed\x9e", {"hangul_syllable", "hangul_jamo"}, True),  # U+D780..D7BF
    ("가".encode() + b"\xeb", {"hangul_syllable"}, True),
    (b" \xec", {"hangul_syllable", "whitespace"}, True),
    (b"\x95\x88" + "다".encode(), None, False),           # tail: 안 but also U+1548, U+4548...
    (b"a\xec", {"latin", "hangul_syllable"}, False),
    (b"\xe3\x81", {"kana"}, False),                       # U+3041..307F: hiragana
    (b"\xd0", {"cyrillic"}, False),                      # U+0400..043F
    (b"\xed\xa0", set(), False),                         # surrogates: never valid UTF-8
    (b"\xe0\x80", set(), False),                         # overlong
    (b"\x80\x80\x80\x80", set(), False),                 # too many continuation bytes
    (b"\xc0\xaf", set(), False),
    (b"\xec\x95\x88", {"hangul_syllable"}, False),       # complete: no fragment
])
def test_partial_scripts_cases(b, scripts, hangul_only):
    got = tc.partial_scripts(b)
    if scripts is not None:
        assert got == scripts
    else:
        assert {"hangul_syllable", "han"} <= got
    assert tc.partial_is_hangul_only(b) == hangul_only


@pytest.fixture(scope="module")
def all_encodings() -> list[tuple[bytes, str]]:
    """Every assigned non-ASCII code point's encoding and script (reference for fragments)."""
    out = []
    for cp in range(0x80, 0x110000):
        if unicodedata.category(chr(cp)) in ("Cn", "Cs"):
            continue
        out.append((chr(cp).encode("utf-8"), tc.char_script(chr(cp))))
    return out


@pytest.mark.parametrize("frag", [
    b"\xec\x95", b"\xea", b"\xed\x9e", b"\x95\x88", b"\x80", b"\x80\x80", b"\xbf\xbf\xbf",
    b"\xf0\x9f", b"\xf0\x9f\x98", b"\xe3\x81", b"\xcc", b"\xb0\x80",
])
def test_fragment_scripts_brute_force(frag, all_encodings):
    """Single-fragment byte strings against an enumeration of every code point."""
    if 0x80 <= frag[0] <= 0xBF:  # lead missing: the bytes sit at some offset >= 1
        fits = lambda enc: any(enc[s:s + len(frag)] == frag  # noqa: E731
                               for s in range(1, len(enc) - len(frag) + 1))
    else:
        fits = lambda enc: len(enc) > len(frag) and enc.startswith(frag)  # noqa: E731
    expected = {script for enc, script in all_encodings if fits(enc)}
    # Every fragment listed fits some valid code point; when only unassigned ones fit
    # (BF BF BF: U+3FFFF, U+7FFFF, ...), the bytes are still possible UTF-8: "other".
    assert tc.partial_scripts(frag) == (expected or {"other"})


_ALPHABETS = {
    "hangul_syllable": st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3),
    "hangul_jamo": st.characters(min_codepoint=0x3131, max_codepoint=0x318E),
    "han": st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF, categories=["Lo"]),
    "han_ext_b": st.characters(min_codepoint=0x20000, max_codepoint=0x2A6DF,
                               categories=["Lo"]),
    "kana": st.characters(min_codepoint=0x3041, max_codepoint=0x3096),
    "cyrillic": st.characters(min_codepoint=0x0410, max_codepoint=0x044F),
    "arabic": st.characters(min_codepoint=0x0621, max_codepoint=0x064A, categories=["Lo"]),
    "latin": st.characters(min_codepoint=0x00C0, max_codepoint=0x017F,
                           categories=["Lu", "Ll"]),
    "other": st.characters(min_codepoint=0x0E01, max_codepoint=0x0E30, categories=["Lo"]),
    "punct_symbol": st.characters(min_codepoint=0x1F600, max_codepoint=0x1F64F),
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hangul_slices_keep_hangul(data):
    text = data.draw(st.text(_ALPHABETS["hangul_syllable"], min_size=1, max_size=6))
    enc = text.encode("utf-8")
    i = data.draw(st.integers(0, len(enc) - 1))
    j = data.draw(st.integers(i + 1, len(enc)))
    piece = enc[i:j]
    scripts = tc.partial_scripts(piece)
    assert "hangul_syllable" in scripts
    if tc.decoded_text(piece) is None:
        if 0x80 <= piece[0] <= 0xBF:  # starts with a tail: E?-xx-xx is many scripts
            assert not tc.partial_is_hangul_only(piece)
        elif piece[max(k for k, x in enumerate(piece) if x >= 0xC0)] in (0xEB, 0xEC):
            assert tc.partial_is_hangul_only(piece)  # head U+B000..CFFF: syllables only


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_slices_of_any_script_are_never_empty(data):
    name = data.draw(st.sampled_from(sorted(_ALPHABETS)))
    script = "han" if name == "han_ext_b" else name
    text = data.draw(st.text(_ALPHABETS[name], min_size=1, max_size=5))
    enc = text.encode("utf-8")
    i = data.draw(st.integers(0, len(enc) - 1))
    j = data.draw(st.integers(i + 1, len(enc)))
    piece = enc[i:j]
    scripts = tc.partial_scripts(piece)
    assert script in scripts, (text, piece, scripts)
    decoded = tc.decoded_text(piece)
    if decoded is not None:
        assert tc.script_class(decoded) == script
    else:
        assert tc.split_utf8(piece) is not None and tc.split_utf8(piece).fragments
