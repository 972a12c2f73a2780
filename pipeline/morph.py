"""Korean morphological features from Kiwi (``kiwipiepy`` + bundled ``kiwipiepy-model``).

Features only: no thresholds, no decisions. Kiwi is about ten times slower than a tokenizer, so
every function here analyses each distinct string once and uses Kiwi's batch API.

Token-level features: `morph_features(texts)`
----------------------------------------------
For decoded, Hangul-bearing vocabulary strings (the caller strips the space marker), one dict
per input string:

- ``kiwi_single_morpheme`` (bool): the string is exactly one morpheme, i.e. either Kiwi's best
  analysis of the string is one in-dictionary morpheme spanning it with ``form == string``
  (``에서`` -> JKB, ``대한민국`` -> NNP, ``ㅋㅋ`` -> SW), or, forcing the whole string into a
  single span (Kiwi's ``pretokenized``), one of the analyses is an in-dictionary (non-OOV)
  morpheme whose form is the string. The forced reading matters for bound morphemes: analysed
  on its own ``습니다`` reads as ``슬/VV + ᆸ니다/EF`` ("rusts"), but ``습니다`` is a dictionary
  ending (EC and EF). It is false for strings Kiwi only knows as OOV guesses (``습니``,
  ``대한민``). Kiwi's dictionary is broad: ``니다`` (EC/EF), ``한민`` (NNP) and the list
  bullet ``다.`` (SB) are single morphemes too.
- ``kiwi_tag`` (str | None): the tag of that morpheme: from the plain analysis when it is
  single, else the best-scoring forced reading (``습니다`` -> ``EC``, Kiwi scores EC slightly
  above EF without context). ``None`` unless ``kiwi_single_morpheme``.
- ``kiwi_tags`` (list[str]): every tag under which the string is a single dictionary morpheme,
  best first (``습니다`` -> ``["EC", "EF"]``). Tags are Kiwi's without the ``-R``/``-I``
  regularity suffix.
- ``kiwi_valid_word`` (bool): the string is a well-formed standalone word (eojeol). Precisely,
  in Kiwi's best analysis of the string on its own:
  1. the string is non-empty and has no whitespace, and the morphemes' character spans cover
     every character;
  2. every morpheme is a dictionary morpheme (not an OOV guess) and none was typo-corrected;
  3. no morpheme is tagged ``UN``, ``S*`` (symbols, foreign letters ``SL``, Hanja ``SH``,
     numbers ``SN``, ``SW`` e.g. ``ㅋ``), ``W_*`` (URL, emoji, ...) or ``Z_*`` (coda artifacts);
  4. it does not start with a bound morpheme (``E*`` ending, ``J*`` particle, ``XS*`` suffix,
     ``VCP`` copula) and does not end with one that needs a continuation (a predicate stem
     ``VV VA VX VCP VCN XSV XSA``, a pre-final ending ``EP``, a prefix ``XPN``, a root ``XR``).
  So ``먹었다``, ``대한민국``, ``학교에서`` are valid words; ``에서`` (particle), ``먹었``
  (no final ending), ``ㅋ`` (SW) and ``다.`` (punctuation) are not. Kiwi's own reading decides,
  so an isolated ending can read as a word (``습니다`` = ``슬+ᆸ니다`` is valid).
- ``kiwi_analysis`` (str): Kiwi's best analysis, ``"먹/VV+었/EP+다/EF"``; ``kiwi_n_morphemes``
  (int) and ``kiwi_score`` (float, Kiwi's log-probability score of that analysis) as raw
  features for the scorer.

Morpheme-boundary alignment: `boundary_alignment`, `pure_boundary_stats`
-------------------------------------------------------------------------
Computed on distinct eojeol *types* weighted by their corpus counts. For each eojeol, Kiwi's
morpheme boundaries are character offsets (its ``start``/``end``, never its forms: ``했다`` is
``하(0,1) 었(0,1) 다(1,2)``): ``{0, len}`` plus every morpheme start and end, minus any offset
strictly inside a morpheme span (``해서`` = ``하(0,1) 어서(0,2)`` has no boundary at 1: the
contracted ``해`` holds part of ``어서``). A token occurrence is *aligned* when its start and
end are both boundaries and it does not split a character (byte-level pieces of one character
get overlapping offsets; they are never aligned). The *internal* token boundaries of an eojeol
are the boundaries between consecutive tokens strictly inside it (a boundary inside a character
counts, and is not aligned); %Pure = aligned internal / internal.

It does not decide which tokens are good, and it does not split text into eojeols (the caller
does, on whitespace).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

Span = tuple[int, int, int]  # (token_id, char_start, char_end)
TokenizeFn = Callable[[list[str]], list[list[Span]]]

# Enumeration cap for the forced single-span readings: a form has at most a handful of
# dictionary tags (에서: JKB, JKS); this is a search width, not a decision threshold.
_FORCED_TOP_N = 8
_BAD_TAG_PREFIXES = ("UN", "S", "W_", "Z_")
_BOUND_START_PREFIXES = ("E", "J", "XS")
_BOUND_START_TAGS = frozenset({"VCP"})
_OPEN_END_TAGS = frozenset({"VV", "VA", "VX", "VCP", "VCN", "XSV", "XSA", "EP", "XPN", "XR"})


@functools.cache
def get_kiwi():
    """The process-wide Kiwi instance (default model bundled in ``kiwipiepy-model``)."""
    from kiwipiepy import Kiwi

    return Kiwi()


def base_tag(tag: str) -> str:
    """Kiwi tag without the regularity suffix: ``"VV-I"`` -> ``"VV"``."""
    return tag.split("-", 1)[0]


def _has_space(s: str) -> bool:
    return any(c.isspace() for c in s)


def _is_single(tokens, text: str) -> bool:
    return (len(tokens) == 1 and tokens[0].form == text and not tokens[0].oov
            and tokens[0].start == 0 and tokens[0].len == len(text))


def _valid_word(tokens, text: str) -> bool:
    if not tokens or not text or _has_space(text):
        return False
    covered = [False] * len(text)
    for t in tokens:
        for i in range(t.start, min(t.end, len(text))):
            covered[i] = True
    if not all(covered):
        return False
    tags = [base_tag(t.tag) for t in tokens]
    if any(t.oov or t.typo_cost > 0 for t in tokens):
        return False
    if any(tag.startswith(_BAD_TAG_PREFIXES) for tag in tags):
        return False
    if tags[0].startswith(_BOUND_START_PREFIXES) or tags[0] in _BOUND_START_TAGS:
        return False
    return tags[-1] not in _OPEN_END_TAGS


def _empty_features() -> dict:
    return {"kiwi_single_morpheme": False, "kiwi_tag": None, "kiwi_tags": [],
            "kiwi_valid_word": False, "kiwi_analysis": "", "kiwi_n_morphemes": 0,
            "kiwi_score": None}


def morph_features(texts: Sequence[str]) -> list[dict]:
    """Kiwi features (module docstring) for each string, in input order.

    Each distinct non-empty, whitespace-free string is analysed once; others get all-false
    features.

    >>> f = morph_features(["에서", "먹었다"])
    >>> f[0]["kiwi_single_morpheme"], f[0]["kiwi_tag"], f[1]["kiwi_valid_word"]
    (True, 'JKB', True)
    """
    uniq = [t for t in dict.fromkeys(texts) if t and not _has_space(t)]
    out: dict[str, dict] = {}
    if uniq:
        kiwi = get_kiwi()
        plain = kiwi.analyze(uniq, top_n=1)
        forced = kiwi.analyze(uniq, top_n=_FORCED_TOP_N,
                              pretokenized=lambda s: [(0, len(s))])
        for text, plain_res, forced_res in zip(uniq, plain, forced):
            tokens, score = plain_res[0]
            tags: list[str] = []
            if _is_single(tokens, text):
                tags.append(base_tag(tokens[0].tag))
            for cand, _ in forced_res:
                if _is_single(cand, text):
                    tag = base_tag(cand[0].tag)
                    if tag not in tags:
                        tags.append(tag)
            out[text] = {
                "kiwi_single_morpheme": bool(tags),
                "kiwi_tag": tags[0] if tags else None,
                "kiwi_tags": tags,
                "kiwi_valid_word": _valid_word(tokens, text),
                "kiwi_analysis": "+".join(f"{t.form}/{t.tag}" for t in tokens),
                "kiwi_n_morphemes": len(tokens),
                "kiwi_score": float(score),
            }
    return [dict(out[t]) if t in out else _empty_features() for t in texts]


# --------------------------------------------------------------------------------------------
# Morpheme boundaries and token alignment


def boundaries_from_spans(spans: Sequence[tuple[int, int]], length: int) -> frozenset[int]:
    """Morpheme boundaries from morpheme character spans ``(start, end)`` (module docstring)."""
    points = {0, length}
    for s, e in spans:
        points.add(s)
        points.add(e)
    inside = {p for p in points for s, e in spans if s < p < e}
    return frozenset(p for p in points - inside if 0 <= p <= length)


def morpheme_boundaries(eojeols: Sequence[str]) -> list[frozenset[int]]:
    """Kiwi morpheme boundaries (character offsets, edges included) of each eojeol, analysed
    once per distinct string with Kiwi's batch API."""
    uniq = list(dict.fromkeys(eojeols))
    by_text = {}
    for text, tokens in zip(uniq, get_kiwi().tokenize(uniq)):
        by_text[text] = boundaries_from_spans([(t.start, t.end) for t in tokens], len(text))
    return [by_text[e] for e in eojeols]


def hf_tokenize_fn(tok, leading_space: bool = True, batch_size: int = 8192) -> TokenizeFn:
    """A `TokenizeFn` from a Hugging Face fast tokenizer.

    With ``leading_space`` each string is tokenized as ``" " + s`` (an eojeol in the middle of a
    sentence) and offsets are shifted back into ``s``; a token that covers the added space gets
    its start clamped to 0 (a token of the space alone becomes the empty span ``(0, 0)``). Use
    ``leading_space=False`` for tokenizers whose normalizer already prepends ``▁``. No special
    tokens are added.
    """
    backend = tok.backend_tokenizer
    shift = 1 if leading_space else 0

    def tokenize(strings: list[str]) -> list[list[Span]]:
        out: list[list[Span]] = []
        for lo in range(0, len(strings), batch_size):
            chunk = strings[lo:lo + batch_size]
            if leading_space:
                chunk = [" " + s for s in chunk]
            for enc in backend.encode_batch(chunk, add_special_tokens=False):
                out.append([(i, max(a - shift, 0), max(b - shift, 0))
                            for i, (a, b) in zip(enc.ids, enc.offsets)])
        return out

    return tokenize


class EojeolAlignment(NamedTuple):
    """Alignment of one eojeol's tokens with its morpheme boundaries."""

    aligned: list[bool]       # per token occurrence, in order
    internal: int             # token boundaries strictly inside the eojeol
    aligned_internal: int     # of those, the ones on a morpheme boundary


def align_tokens(spans: Sequence[Span], length: int, bounds: frozenset[int]) -> EojeolAlignment:
    """Alignment of one tokenized eojeol (``spans`` in order) with its boundaries."""
    n = len(spans)
    aligned = [False] * n
    internal = aligned_internal = 0
    for k, (_, s, e) in enumerate(spans):
        splits_char = (k > 0 and s < spans[k - 1][2]) or (k + 1 < n and e > spans[k + 1][1])
        aligned[k] = not splits_char and s in bounds and e in bounds
        if k == 0:
            continue
        if s < spans[k - 1][2]:  # the boundary with the previous token is inside a character
            internal += 1
        elif 0 < s < length:
            internal += 1
            aligned_internal += s in bounds
    return EojeolAlignment(aligned, internal, aligned_internal)


class Alignment(NamedTuple):
    per_token: Any                    # polars DataFrame: token_id, align_occurrences, occurrences
    aligned_internal_boundaries: int
    internal_boundaries: int


def alignment(eojeols: Sequence[str], counts: Sequence[int], tokenize_fn: TokenizeFn, *,
              boundaries: Sequence[frozenset[int]] | None = None) -> Alignment:
    """Per-token alignment counts and %Pure totals in one pass (see `boundary_alignment`).

    ``boundaries`` (from `morpheme_boundaries`) skips the Kiwi step when given.
    """
    import polars as pl

    if len(eojeols) != len(counts):
        raise ValueError(f"{len(eojeols)} eojeols but {len(counts)} counts")
    for e in eojeols:
        if not e or _has_space(e):
            raise ValueError(f"eojeol {e!r} is empty or contains whitespace")
    if boundaries is None:
        boundaries = morpheme_boundaries(eojeols)
    elif len(boundaries) != len(eojeols):
        raise ValueError(f"{len(eojeols)} eojeols but {len(boundaries)} boundary sets")
    tokenized = tokenize_fn(list(eojeols))
    align_occ: dict[int, int] = {}
    occ: dict[int, int] = {}
    total_internal = total_aligned = 0
    for text, count, bounds, spans in zip(eojeols, counts, boundaries, tokenized):
        res = align_tokens(spans, len(text), bounds)
        for (tid, _, _), ok in zip(spans, res.aligned):
            occ[tid] = occ.get(tid, 0) + count
            if ok:
                align_occ[tid] = align_occ.get(tid, 0) + count
        total_internal += count * res.internal
        total_aligned += count * res.aligned_internal
    ids = sorted(occ)
    df = pl.DataFrame({"token_id": ids, "align_occurrences": [align_occ.get(i, 0) for i in ids],
                       "occurrences": [occ[i] for i in ids]},
                      schema={"token_id": pl.Int64, "align_occurrences": pl.Int64,
                              "occurrences": pl.Int64})
    return Alignment(df, total_aligned, total_internal)


def boundary_alignment(eojeols: Sequence[str], counts: Sequence[int], tokenize_fn: TokenizeFn,
                       *, boundaries: Sequence[frozenset[int]] | None = None):
    """Frequency-weighted morpheme alignment per token id (polars DataFrame).

    ``eojeols``: distinct whitespace-free words; ``counts``: their corpus frequencies;
    ``tokenize_fn``: e.g. ``hf_tokenize_fn(tok)``. Columns: ``token_id``, ``align_occurrences``
    (weighted occurrences whose start and end are both morpheme boundaries or eojeol edges, not
    splitting a character), ``occurrences`` (weighted total); one row per id that occurs,
    sorted by id. The caller computes the share.
    """
    return alignment(eojeols, counts, tokenize_fn, boundaries=boundaries).per_token


def pure_boundary_stats(eojeols: Sequence[str], counts: Sequence[int], tokenize_fn: TokenizeFn,
                        *, boundaries: Sequence[frozenset[int]] | None = None
                        ) -> tuple[int, int]:
    """``(aligned_internal_boundaries, internal_boundaries)``, frequency-weighted: token
    boundaries strictly inside eojeols, and those on Kiwi morpheme boundaries (%Pure)."""
    res = alignment(eojeols, counts, tokenize_fn, boundaries=boundaries)
    return res.aligned_internal_boundaries, res.internal_boundaries
