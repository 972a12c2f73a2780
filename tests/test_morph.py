"""pipeline.morph: Kiwi features of token strings and morpheme-boundary alignment."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from pipeline import morph
from pipeline.tokenclass import bytes_to_unicode

# --------------------------------------------------------------------------------------------
# Token features


@pytest.fixture(scope="module")
def features() -> dict[str, dict]:
    words = ["습니다", "에서", "대한민국", "먹었다", "학교에서", "습니", "대한민", "ㅋ", "ㅋㅋㅋ",
             "먹었", "다.", "깨끗", "사람들", "", "가 나", "에서"]
    out = morph.morph_features(words)
    assert len(out) == len(words)
    assert out[1] == out[-1]  # duplicates: same features, still one row each
    return dict(zip(words, out))


def test_known_morphemes(features):
    f = features["습니다"]
    assert f["kiwi_single_morpheme"]
    assert "EF" in f["kiwi_tags"] and f["kiwi_tag"] in ("EF", "EC")
    f = features["에서"]
    assert f["kiwi_single_morpheme"] and f["kiwi_tag"] == "JKB"
    f = features["대한민국"]
    assert f["kiwi_single_morpheme"] and f["kiwi_tag"] == "NNP"
    assert f["kiwi_analysis"] == "대한민국/NNP" and f["kiwi_n_morphemes"] == 1


def test_non_morpheme_partials(features):
    for w in ("습니", "대한민"):  # pieces of 습니다 / 대한민국: Kiwi only has OOV guesses
        assert not features[w]["kiwi_single_morpheme"], w
        assert features[w]["kiwi_tag"] is None and features[w]["kiwi_tags"] == []


def test_valid_words(features):
    f = features["먹었다"]
    assert f["kiwi_valid_word"] and not f["kiwi_single_morpheme"]
    assert f["kiwi_analysis"] == "먹/VV+었/EP+다/EF" and f["kiwi_n_morphemes"] == 3
    assert isinstance(f["kiwi_score"], float)
    assert features["학교에서"]["kiwi_valid_word"]
    assert features["대한민국"]["kiwi_valid_word"]
    assert features["사람들"]["kiwi_valid_word"]  # noun + XSN suffix
    assert not features["에서"]["kiwi_valid_word"]    # starts with a particle
    assert not features["먹었"]["kiwi_valid_word"]    # no final ending (Kiwi: 먹/VV+어/EF+ᆻ/Z_CODA)
    assert not features["깨끗"]["kiwi_valid_word"]    # a bare root (XR)
    assert not features["대한민"]["kiwi_valid_word"]  # OOV guess
    assert not features["다."]["kiwi_valid_word"]     # punctuation
    for w in ("ㅋ", "ㅋㅋㅋ"):  # laughter: one Kiwi unit tagged SW, not a word
        assert features[w]["kiwi_single_morpheme"] and features[w]["kiwi_tag"] == "SW"
        assert not features[w]["kiwi_valid_word"]


def test_empty_and_spaced_strings(features):
    for w in ("", "가 나"):
        assert features[w] == {"kiwi_single_morpheme": False, "kiwi_tag": None,
                               "kiwi_tags": [], "kiwi_valid_word": False, "kiwi_analysis": "",
                               "kiwi_n_morphemes": 0, "kiwi_score": None}
    assert morph.morph_features([]) == []


def test_base_tag():
    assert morph.base_tag("VV-I") == "VV" and morph.base_tag("NNG") == "NNG"


# --------------------------------------------------------------------------------------------
# Boundaries


def test_boundaries_from_spans():
    assert morph.boundaries_from_spans([(0, 1), (0, 1), (1, 2)], 2) == {0, 1, 2}  # 했다
    assert morph.boundaries_from_spans([(0, 1), (0, 2)], 2) == {0, 2}  # 해서: 하 + 어서
    assert morph.boundaries_from_spans([(0, 4), (4, 5)], 5) == {0, 4, 5}
    assert morph.boundaries_from_spans([], 3) == {0, 3}


def test_morpheme_boundaries_use_offsets_not_forms():
    words = ["대한민국의", "했다", "해서", "갔습니다", "학교에서", "했다"]
    assert morph.morpheme_boundaries(words) == [
        {0, 4, 5}, {0, 1, 2}, {0, 2}, {0, 1, 4}, {0, 2, 4}, {0, 1, 2}]


def test_align_tokens_synthetic():
    # 4 chars, boundaries {0, 2, 4}; tokens: [0,2) ok, [2,3) end not a boundary, [3,4) start not
    r = morph.align_tokens([(1, 0, 2), (2, 2, 3), (3, 3, 4)], 4, frozenset({0, 2, 4}))
    assert r.aligned == [True, False, False] and (r.internal, r.aligned_internal) == (2, 1)
    # char 1 split between two byte-level pieces: both pieces unaligned even on boundaries
    r = morph.align_tokens([(1, 0, 2), (2, 1, 2), (3, 2, 4)], 4, frozenset({0, 1, 2, 4}))
    assert r.aligned == [False, False, True] and (r.internal, r.aligned_internal) == (2, 1)
    # a token of the prepended space alone: empty span at the edge, not an internal boundary
    r = morph.align_tokens([(9, 0, 0), (1, 0, 4)], 4, frozenset({0, 4}))
    assert r.aligned == [True, True] and (r.internal, r.aligned_internal) == (0, 0)


def test_hf_tokenize_fn_offsets(tekken):
    fn = morph.hf_tokenize_fn(tekken)
    (spans,) = fn(["했다"])
    assert spans == [(tekken.convert_tokens_to_ids(_bl(" 했다")), 0, 2)]
    (spans,) = morph.hf_tokenize_fn(tekken, leading_space=False)(["했다"])
    assert spans == [(tekken.convert_tokens_to_ids(_bl("했다")), 0, 2)]
    assert fn([]) == []


def _bl(text: str | bytes) -> str:
    b = text.encode() if isinstance(text, str) else text
    m = bytes_to_unicode()
    return "".join(m[x] for x in b)


def test_alignment_by_hand(tekken):
    eojeols = ["먹었다", "학교에서", "대한민국의", "서울특별시는", "2024년에는", "뷁뷁이다"]
    counts = [2, 5, 3, 1, 4, 1]
    fn = morph.hf_tokenize_fn(tekken)
    pieces = [[tekken.convert_ids_to_tokens(i) for i, _, _ in spans] for spans in fn(eojeols)]
    bw1, bw2 = "뷁".encode()[:2], "뷁".encode()[2:]
    assert pieces == [  # Tekken's tokens, checked first so that a change is easy to read
        [_bl(" 먹"), _bl("었다")],
        [_bl(" 학교"), _bl("에서")],
        [_bl(" 대한"), _bl("민"), _bl("국의")],
        [_bl(" 서울"), _bl("특"), _bl("별"), _bl("시는")],
        [_bl(" "), _bl("2"), _bl("0"), _bl("2"), _bl("4"), _bl("년에는")],
        [_bl(b" " + bw1[:1]), _bl(bw1[1:]), _bl(bw2), _bl(bw1), _bl(bw2), _bl("이다")],
    ]
    bounds = morph.morpheme_boundaries(eojeols)
    assert bounds == [{0, 1, 2, 3}, {0, 2, 4}, {0, 4, 5}, {0, 2, 5, 6}, {0, 4, 5, 6, 7},
                      {0, 2, 3, 4}]
    # By hand, (token, weighted aligned, weighted occurrences):
    #   먹었다 x2: ' 먹'(0,1) '었다'(1,3) both on boundaries; 1 internal boundary, aligned
    #   학교에서 x5: ' 학교'(0,2) '에서'(2,4) aligned; 1 internal, aligned
    #   대한민국의 x3: ' 대한'(0,2) '민'(2,3) '국의'(3,5): none aligned; 2 internal, 0 aligned
    #   서울특별시는 x1: ' 서울'(0,2) aligned, '특' '별' '시는'(4,6) not; 3 internal, 1 aligned
    #   2024년에는 x4: ' '(0,0) and '년에는'(4,7) aligned, digits not; 4 internal, 1 aligned
    #   뷁뷁이다 x1: five byte pieces of 뷁뷁 (overlapping offsets) not aligned, '이다'(2,4)
    #     aligned; boundaries: 3 inside characters + 1 at offset 1 (not a morpheme boundary)
    #     + 1 at offset 2 (aligned) = 5 internal, 1 aligned
    expected = {
        " 먹": (2, 2), "었다": (2, 2), " 학교": (5, 5), "에서": (5, 5), " 대한": (0, 3),
        "민": (0, 3), "국의": (0, 3), " 서울": (1, 1), "특": (0, 1), "별": (0, 1),
        "시는": (0, 1), " ": (4, 4), "2": (0, 8), "0": (0, 4), "4": (0, 4), "년에는": (4, 4),
        b" " + bw1[:1]: (0, 1), bw1[1:]: (0, 1), bw2: (0, 2), bw1: (0, 1), "이다": (1, 1),
    }
    expected_ids = {tekken.convert_tokens_to_ids(_bl(k)): v for k, v in expected.items()}
    df = morph.boundary_alignment(eojeols, counts, fn)
    assert df.columns == ["token_id", "align_occurrences", "occurrences"]
    assert df["token_id"].to_list() == sorted(expected_ids)
    got = {r[0]: (r[1], r[2]) for r in df.iter_rows()}
    assert got == expected_ids
    internal = 2 * 1 + 5 * 1 + 3 * 2 + 1 * 3 + 4 * 4 + 1 * 5
    aligned = 2 * 1 + 5 * 1 + 3 * 0 + 1 * 1 + 4 * 1 + 1 * 1
    assert morph.pure_boundary_stats(eojeols, counts, fn) == (aligned, internal) == (13, 37)
    # precomputed boundaries give the same
    assert morph.pure_boundary_stats(eojeols, counts, fn, boundaries=bounds) == (13, 37)


def _reference(occurrences: list[str], tok, kiwi):
    """Brute force: every occurrence separately, single-string Kiwi and tokenizer calls, and
    alignment written from the definition (char ownership, positions), no deduplication."""
    align, occ = Counter(), Counter()
    internal = aligned_internal = 0
    for word in occurrences:
        n = len(word)
        morphs = [(t.start, t.end) for t in kiwi.tokenize(word)]
        bounds = {p for p in range(n + 1)
                  if p in (0, n) or (any(p in (s, e) for s, e in morphs)
                                     and not any(s < p < e for s, e in morphs))}
        enc = tok(" " + word, add_special_tokens=False, return_offsets_mapping=True)
        spans = [(i, max(a - 1, 0), max(b - 1, 0))
                 for i, (a, b) in zip(enc["input_ids"], enc["offset_mapping"])]
        owners = Counter(c for _, s, e in spans for c in range(s, e))
        for tid, s, e in spans:
            occ[tid] += 1
            split = any(owners[c] > 1 for c in range(s, e))
            if not split and s in bounds and e in bounds:
                align[tid] += 1
        for (_, _, prev_end), (_, s, _) in zip(spans, spans[1:]):
            if s < prev_end:
                internal += 1
            elif 0 < s < n:
                internal += 1
                aligned_internal += s in bounds
    return align, occ, aligned_internal, internal


def test_alignment_matches_brute_force(tekken, klue_texts):
    sentences = random.Random(11).sample(klue_texts, 250)
    occurrences = [w for s in sentences for w in s.split()]
    ref_align, ref_occ, ref_aligned, ref_internal = _reference(
        occurrences, tekken, morph.get_kiwi())
    types = Counter(occurrences)
    eojeols, counts = list(types), list(types.values())
    assert len(eojeols) < len(occurrences)  # dedup actually happens
    res = morph.alignment(eojeols, counts, morph.hf_tokenize_fn(tekken))
    got = {r["token_id"]: (r["align_occurrences"], r["occurrences"])
           for r in res.per_token.iter_rows(named=True)}
    assert got == {t: (ref_align[t], ref_occ[t]) for t in ref_occ}
    assert (res.aligned_internal_boundaries, res.internal_boundaries) == \
        (ref_aligned, ref_internal)
    assert 0 < ref_aligned < ref_internal


def test_alignment_input_errors(tekken):
    fn = morph.hf_tokenize_fn(tekken)
    with pytest.raises(ValueError):
        morph.boundary_alignment(["가 나"], [1], fn)
    with pytest.raises(ValueError):
        morph.boundary_alignment(["가"], [1, 2], fn)
    with pytest.raises(ValueError):
        morph.pure_boundary_stats(["가"], [1], fn, boundaries=[])
    assert morph.boundary_alignment([], [], fn).height == 0
    assert morph.pure_boundary_stats([], [], fn) == (0, 0)
