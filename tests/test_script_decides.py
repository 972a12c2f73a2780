"""Fast paths of the tokenize stage against their references: the language filter asks fastText
only where the script leaves the language in doubt and keeps exactly the documents it kept when
fastText read every document; token ids reach Arrow through one merged encoding; word counts
read from the UTF-8 bytes equal ``str.split``; Python strings reach Arrow through Polars."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import langid
from pipeline.config import load_config
from pipeline.shards import _korean_mask, _Stats, hangul_counts, script_decides, str_array, word_counts

from .test_analyze import analyze, paths, shard_table

HANGUL_LETTER_RE = r"[\x{AC00}-\x{D7A3}\x{1100}-\x{11FF}\x{3131}-\x{318E}]"
# the edges of every Hangul block and their neighbours, plus other scripts of the same byte width
EDGES = [0xABFF, 0xAC00, 0xAC01, 0xD7A2, 0xD7A3, 0xD7A4, 0xD7AF, 0xD7B0, 0x10FF, 0x1100, 0x11FF,
         0x1200, 0x3130, 0x3131, 0x318E, 0x318F, 0x3190, 0x3041, 0x4E00, 0xA000, 0xFFFD, 0x0800]
texts = st.lists(st.text(alphabet=st.one_of(st.sampled_from([chr(c) for c in EDGES]),
                                            st.characters(blacklist_categories=("Cs",)))),
                 max_size=30)


@settings(max_examples=300, deadline=None)
@given(texts, st.integers(0, 3))
def test_hangul_counts_equal_the_regex(values, skip):
    arr = pa.array(["x"] * skip + values, type=pa.string()).slice(skip)  # non-zero offsets too
    ref = pc.count_substring_regex(arr, HANGUL_LETTER_RE).to_numpy(zero_copy_only=False)
    assert hangul_counts(arr).tolist() == ref.tolist()


MIXED = [
    "대한민국의 수도는 서울이며 인구는 약 천만 명이다.", "오늘 영화 정말 재미있었어요 ㅋㅋ", "ㅋㅋㅋㅋㅋ",
    "10점 만점에 10점!!!!!!!!!!!!!!!!", "GOOD GOOD 최고", "이 영화 OST가 정말 좋아요 (2010)",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "東京は日本の首都であり、世界有数の大都市です。", "Москва является столицей Российской Федерации.",
    "Samsung Galaxy 신제품 review: very good camera and battery life overall",
    "12345 67890 !!! ???", "ㅡㅡ;;", "漢字 한자 混用 文章", "한", "a",
]


def test_keeps_what_asking_fasttext_everywhere_kept(tmp_path, tekken_dir):
    cfg = load_config(None)
    f = tmp_path / "mixed.jsonl"
    with open(f, "w", encoding="utf-8") as fh:
        for i, t in enumerate(MIXED):
            fh.write(json.dumps({"id": f"d{i}", "text": t}, ensure_ascii=False) + "\n")
    assert analyze(tmp_path, "--corpus", str(f), "--tokenizer", str(tekken_dir),
                   "--set", "heldout.fraction=0.0", "--set", "score.kiwi_max_eojeol_types=50") == 0
    kept = shard_table(paths(tmp_path).train_shards())
    # the reference: fastText reads every document, then the same thresholds and rescue
    _, _, ko = langid.classify(MIXED, max_chars=cfg.langid.max_chars)
    ref = _korean_mask(MIXED, ko, cfg, _Stats(0))
    assert kept.column("text").to_pylist() == [t for t, k in zip(MIXED, ref) if k]
    by = dict(zip(kept.column("text").to_pylist(), kept.column("lang_by").to_pylist()))
    gate = script_decides(pa.array(MIXED), cfg.langid.keep_hangul_share)
    assert {t for t, g in zip(MIXED, gate) if g} == {t for t, b in by.items() if b == "script"}
    assert by["대한민국의 수도는 서울이며 인구는 약 천만 명이다."] == "script"
    assert "fasttext" in by.values()  # some documents fastText read were kept (e.g. "10점 ...")
    m = json.loads(paths(tmp_path).metrics.read_text())["corpus"]
    assert m["language_decided_by"] == {"script": int(gate.sum()),
                                        "fasttext": len(MIXED) - int(gate.sum())}
    # fastText's figures are recorded only where it was asked
    ko_prob = kept.column("ko_prob").to_numpy(zero_copy_only=False)
    script_rows = np.array([b == "script" for b in kept.column("lang_by").to_pylist()])
    assert np.isnan(ko_prob[script_rows]).all() and not np.isnan(ko_prob[~script_rows]).any()


def test_the_gate_only_passes_documents_the_rescue_keeps():
    """Negative control of the shortcut: every document it passes must be one the Hangul-share
    rescue keeps whatever fastText says (probability 0 for all)."""
    cfg = load_config(None)
    arr = pa.array(MIXED)
    gate = script_decides(arr, cfg.langid.keep_hangul_share)
    rescued = _korean_mask(MIXED, np.zeros(len(MIXED), np.float32), cfg, _Stats(0))
    assert gate.any() and (rescued[gate]).all()
    assert not script_decides(arr, 1.0).any()  # the rescue off: fastText decides everything


STABLE = st.one_of(st.characters(min_codepoint=0x20, max_codepoint=0x24F),   # Latin, digits, punct
                   st.characters(min_codepoint=0x400, max_codepoint=0x4FF),   # Cyrillic
                   st.characters(min_codepoint=0x1100, max_codepoint=0x11FF),  # jamo
                   st.characters(min_codepoint=0x3000, max_codepoint=0x31BF),  # CJK punct, kana, jamo
                   st.characters(min_codepoint=0x4E00, max_codepoint=0x4FFF),  # Han
                   st.characters(min_codepoint=0xA960, max_codepoint=0xA97F),
                   st.characters(min_codepoint=0xAC00, max_codepoint=0xD7FF))  # syllables, jamo B


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=STABLE, max_size=40), min_size=1, max_size=8))
def test_rescue_counts_letters_like_the_unicode_letter_class(values):
    """The rescue counts Hangul and letters in Python; the RE2 classes it replaced agree."""
    cfg = load_config(None)
    arr = pa.array(values, type=pa.string())
    hangul = pc.count_substring_regex(
        arr, r"[\x{AC00}-\x{D7A3}\x{1100}-\x{11FF}\x{3130}-\x{318F}\x{A960}-\x{A97F}"
             r"\x{D7B0}-\x{D7FF}]").to_numpy(zero_copy_only=False)
    letters = pc.count_substring_regex(arr, r"\pL").to_numpy(zero_copy_only=False)
    ref = (letters > 0) & (hangul >= cfg.langid.keep_hangul_share * letters)
    got = _korean_mask(values, np.zeros(len(values), np.float32), cfg, _Stats(0))
    assert got.tolist() == ref.tolist()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=12))
def test_ids_array_equals_the_per_document_lists(tekken, values):
    """Shards take token ids through one Arrow list array; same ids as each encoding's own."""
    from pipeline.pieces import ids_array

    encs = tekken.backend_tokenizer.encode_batch_fast(values, add_special_tokens=False)
    assert ids_array(encs).to_pylist() == [e.ids for e in encs]


# every character str.split() splits on, the neighbours of the wide ones' UTF-8 codes, and the
# lead bytes the fast path looks at (U+00C2.., U+1680.., U+2000.., U+3000..) in other characters
SPACES = [chr(c) for c in range(0x110000) if len(f"a{chr(c)}b".split()) == 2]
NEAR = [chr(c) for c in (0x84, 0x86, 0x9F, 0xA1, 0xC2, 0x167F, 0x1681, 0x1FFF, 0x200B, 0x2027,
                         0x202A, 0x202E, 0x2030, 0x205E, 0x2060, 0x2FFF, 0x3001, 0x3131, 0x314B)]
words = st.lists(st.text(alphabet=st.one_of(st.sampled_from(SPACES + NEAR + ["가", "a"]),
                                            st.characters(blacklist_categories=("Cs",))),
                         max_size=20) | st.none(), max_size=12)


@settings(max_examples=400, deadline=None)
@given(words, st.integers(0, 3))
def test_word_counts_equal_str_split(values, skip):
    arr = pa.array(["x y"] * skip + values, type=pa.string()).slice(skip)  # non-zero offsets too
    assert word_counts(arr).tolist() == [len(v.split()) if v is not None else 0 for v in values]


def test_word_counts_count_no_empty_word_at_the_edges():
    """Arrow's utf8_split_whitespace gives '' before a leading and after a trailing space; an
    eojeol count must not (the rule the fast path replaced it with)."""
    arr = pa.array([" 영화 ", "\t", "", "a\u3000b ", " \u00a0x"], pa.string())
    assert word_counts(arr).tolist() == [1, 0, 0, 2, 1]
    arrow = pc.list_value_length(pc.utf8_split_whitespace(arr)).to_pylist()
    assert arrow != [1, 0, 0, 2, 1]  # the reference the rule is not


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=12))
def test_str_array_equals_pa_array(values):
    got = str_array(values)
    assert got.type == pa.string() and got.equals(pa.array(values, pa.string()))
