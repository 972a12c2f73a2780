"""`pipeline.metrics` against brute-force references on real Korean text (KLUE dev) and Tekken.

The references recompute every metric from its definition with plain loops over
``tok.encode`` output and Kiwi, never through the helpers the report uses (offsets,
`pipeline.morph.alignment`).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from pipeline import metrics as M
from pipeline.morph import get_kiwi, hf_tokenize_fn, morph_features
from pipeline.tokenclass import bytes_to_unicode

N_TEXTS = 300


@pytest.fixture(scope="module")
def texts(klue_texts) -> list[str]:
    return klue_texts[::max(1, len(klue_texts) // N_TEXTS)][:N_TEXTS]


@pytest.fixture(scope="module")
def eojeol_types(texts) -> tuple[list[str], list[int]]:
    c = Counter(w for t in texts for w in t.split())
    ranked = sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))
    return [w for w, _ in ranked], [n for _, n in ranked]


def _byte_decoder() -> dict[str, int]:
    return {ch: b for b, ch in bytes_to_unicode().items()}


def token_bytes_bf(tok, ids) -> list[bytes]:
    """Bytes of each Tekken token, from its byte-level string."""
    dec = _byte_decoder()
    return [bytes(dec[c] for c in t) for t in tok.convert_ids_to_tokens(list(ids))]


def eojeol_lengths_bf(tok, words) -> list[int]:
    """Tokens of " " + w, minus a token that is the added space alone."""
    out = []
    for w in words:
        ids = tok.encode(" " + w, add_special_tokens=False)
        out.append(sum(1 for b in token_bytes_bf(tok, ids) if b != b" "))
    return out


# --------------------------------------------------------------------------------------------


def test_document_ratios_match_brute_force(tekken, texts):
    n_tok = sum(len(tekken.encode(t, add_special_tokens=False)) for t in texts)
    n_eoj = sum(len(t.split()) for t in texts)
    n_bytes = sum(len(t.encode()) for t in texts)
    n_chars = sum(len(t) for t in texts)
    assert M.tokens_per_eojeol(n_tok, n_eoj) == pytest.approx(n_tok / n_eoj)
    assert M.bytes_per_token(n_bytes, n_tok) == pytest.approx(n_bytes / n_tok)
    assert M.chars_per_token(n_chars, n_tok) == pytest.approx(n_chars / n_tok)
    assert 1.5 < M.tokens_per_eojeol(n_tok, n_eoj) < 4  # Tekken on Korean
    assert M.tokens_per_eojeol(5, 0) is None


def test_eojeol_lengths_strr_and_multi_token_share(tekken, eojeol_types):
    words, counts = eojeol_types
    got = M.eojeol_token_lengths(hf_tokenize_fn(tekken)(words))
    ref = eojeol_lengths_bf(tekken, words)
    assert got.tolist() == ref
    single = sum(1 for n in ref if n == 1)
    assert M.strr(got) == pytest.approx(single / len(words))
    multi = sum(c for n, c in zip(ref, counts) if n >= 2)
    assert M.multi_token_share(got, counts) == pytest.approx(multi / sum(counts))
    assert 0 < M.strr(got) < 1 and 0 < M.multi_token_share(got, counts) < 1
    assert M.strr([]) is None


def test_pure_share_matches_brute_force_on_bytes(tekken, eojeol_types):
    """%Pure from byte offsets of the tokens and Kiwi morpheme spans, by hand."""
    words, counts = eojeol_types
    words, counts = words[:800], counts[:800]
    aligned = internal = 0
    for w, c, morphs in zip(words, counts, get_kiwi().tokenize(words)):
        spans = [(m.start, m.end) for m in morphs]
        points = {0, len(w)} | {p for s in spans for p in s}
        bounds = {p for p in points if not any(s < p < e for s, e in spans)}
        char_at_byte = {len(w[:i].encode()): i for i in range(len(w) + 1)}
        ids = tekken.encode(" " + w, add_special_tokens=False)
        pos = -1  # byte offset inside w (the leading space is byte -1)
        cuts = []
        for b in token_bytes_bf(tekken, ids):
            pos += len(b)
            cuts.append(pos)
        w_bytes = len(w.encode())
        for cut in cuts[:-1]:
            if 0 < cut < w_bytes:
                internal += c
                aligned += c * (cut in char_at_byte and char_at_byte[cut] in bounds)
    got = M.tokenize_eojeols(words, counts, hf_tokenize_fn(tekken))
    assert (got.pure_aligned, got.pure_internal) == (aligned, internal)
    assert M.pure_share(aligned, internal) == pytest.approx(aligned / internal)
    assert 0.2 < aligned / internal < 0.95


def test_korean_share_dedupes_space_marker_and_matches_kiwi(tekken, texts):
    ids = sorted({i for t in texts for i in tekken.encode(t, add_special_tokens=False)})
    raws = tekken.convert_ids_to_tokens(ids)
    bts = token_bytes_bf(tekken, ids)
    keys = {i: M.token_key(b, r) for i, b, r in zip(ids, bts, raws)}
    # brute force: strip the space, analyse every Hangul-bearing string with Kiwi
    stripped = {}
    for b in bts:
        s = b.lstrip(b" ")
        if s:
            stripped[s] = None
    texts_ok = {s: s.decode() for s in stripped if _utf8(s)}
    feats = dict(zip(texts_ok.values(), morph_features(list(texts_ok.values()))))
    ko_ref = {s for s, t in texts_ok.items()
              if any("\uac00" <= ch <= "\ud7a3" or "\u3131" <= ch <= "\u318e" for ch in t)
              and (feats[t]["kiwi_single_morpheme"] or feats[t]["kiwi_valid_word"])}
    n = max(ids) + 1
    key_arr = [b""] * n
    is_ko = np.zeros(n, dtype=bool)
    for i in ids:
        key_arr[i] = keys[i]
        is_ko[i] = keys[i] in ko_ref
    got = M.korean_token_share(ids, key_arr, is_ko)
    assert got.unique == len(stripped)
    assert got.korean == len(ko_ref)
    assert got.share == pytest.approx(len(ko_ref) / len(stripped))
    # "Ġ한다"-style duplicates collapse: fewer keys than ids
    assert got.unique < len(ids)


def _utf8(b: bytes) -> bool:
    try:
        b.decode()
        return True
    except UnicodeDecodeError:
        return False


def test_korean_share_unit():
    keys = [b"\xed\x95\x9c\xeb\x8b\xa4", b"\xed\x95\x9c\xeb\x8b\xa4", b"", b"ab"]
    share = M.korean_token_share([0, 1, 2, 3], keys, [True, False, False, False])
    assert (share.korean, share.unique, share.share) == (1, 2, 0.5)
    assert M.token_key(b"  \xed\x95\x9c", "x") == b"\xed\x95\x9c"
    assert M.token_key(None, "<s>") == b"<s>"


def test_renyi_efficiency_matches_formula(tekken, texts):
    counts = Counter(i for t in texts for i in tekken.encode(t, add_special_tokens=False))
    total = sum(counts.values())
    a = 2.5
    h = 1 / (1 - a) * math.log(sum((c / total) ** a for c in counts.values()))
    unigram = np.zeros(len(tekken), dtype=np.int64)
    for i, c in counts.items():
        unigram[i] = c
    assert M.renyi_entropy(unigram, a) == pytest.approx(h)
    assert M.renyi_efficiency(unigram, len(tekken)) == pytest.approx(h / math.log(len(tekken)))
    shannon = -sum(c / total * math.log(c / total) for c in counts.values())
    assert M.renyi_entropy(unigram, 1) == pytest.approx(shannon)
    assert M.renyi_entropy(unigram, 2.5) < shannon  # H_a decreases with a
    # a uniform distribution over the whole vocabulary is perfectly efficient
    assert M.renyi_efficiency(np.ones(1000), 1000) == pytest.approx(1.0)
    assert M.renyi_efficiency(np.zeros(10), 10) is None


@pytest.mark.parametrize("source, expected", [
    ("klue-nli/wikipedia", "klue-nli/wikipedia"), ("nsmc/10001", "nsmc"),
    ("kobill/1809890", "kobill"), ("kolaw/constitution", "kolaw/constitution"),
    ("news", "news"), ("a/b/2023-01", "a/b"), ("", "(none)"), (None, "(none)"),
])
def test_text_type(source, expected):
    assert M.text_type(source) == expected


def test_quality_bundles_every_metric(tekken, texts, eojeol_types):
    words, counts = eojeol_types
    words, counts = words[:300], counts[:300]
    ids = [i for t in texts for i in tekken.encode(t, add_special_tokens=False)]
    unigram = np.bincount(ids, minlength=len(tekken))
    ej = M.tokenize_eojeols(words, counts, hf_tokenize_fn(tekken))
    st = M.SampleTokenization(len(ids), sum(len(t.encode()) for t in texts),
                              sum(len(t) for t in texts), sum(len(t.split()) for t in texts),
                              unigram, len(tekken), ej)
    keys = [b"k%d" % i for i in range(len(tekken))]
    q = M.quality(st, counts, keys, np.zeros(len(tekken), dtype=bool))
    assert set(M.DEFINITIONS) <= set(q)
    assert q["ko_share"] == 0 and q["unique_tokens"] == len(set(ids))
    assert q["renyi_alpha"] == 2.5 and q["vocab_size"] == len(tekken)
