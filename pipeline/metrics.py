"""Korean tokenizer-quality metrics: pure functions of token counts and eojeol tokenizations.

Every metric is computed for one tokenizer on one text sample (the report uses the held-out
split, before and after pruning). Nothing here reads artifacts, applies a threshold or decides
anything; `pipeline.report` gathers the inputs.

Definitions (``E`` = eojeol, a whitespace-separated word; ``T`` = tokens the tokenizer
produces for the documents, ``add_special_tokens=False``):

tokens per eojeol (fertility)
    ``|T| / |E|`` over whole documents (the figure `pipeline.sweep` reports).
bytes per token, characters per token
    UTF-8 bytes (characters) of the documents ``/ |T|``.
multi-token eojeol share
    share of eojeol *occurrences* whose tokenization has two or more tokens:
    ``sum_e c(e) [n(e) >= 2] / sum_e c(e)`` over eojeol types ``e`` with count ``c(e)``.
STRR (single-token retention rate)
    share of eojeol *types* kept whole, i.e. tokenized as exactly one token:
    ``|{e : n(e) = 1}| / |{e}|`` (unweighted).
%KO
    share of the unique tokens produced on the sample that Kiwi reads as one Korean morpheme or
    a valid word (token_scores' ``kiwi_single_morpheme`` / ``kiwi_valid_word``). Tokens are
    compared by their bytes with leading spaces (the ``Ġ`` / ``▁`` marker) stripped, so ``Ġ한다``
    and ``한다`` are one unique token; a whitespace-only token is not counted.
%Pure
    share of token boundaries strictly inside eojeols that fall on Kiwi morpheme boundaries,
    eojeol types weighted by their counts (`pipeline.morph.pure_boundary_stats`; a boundary
    that cuts a character is never pure).
Rényi efficiency (Zouhar et al. 2023, "Tokenization and the Noiseless Channel")
    ``H_a(p) / log |V|`` with ``H_a(p) = 1 / (1 - a) * log sum_i p_i^a``, ``a = 2.5``, ``p`` the
    unigram distribution of the produced tokens (``p_i = count_i / |T|``) and ``|V|`` the
    tokenizer's full vocabulary size (``len(tokenizer)``: every id, special and unused ones
    included; for a pruned tokenizer its pruned size). The base of the logarithm cancels.

``n(e)``, the tokens of an eojeol type, counts the tokens of ``" " + e`` (the eojeol as it
follows a space inside a sentence, `pipeline.morph.hf_tokenize_fn`) whose character span in
``e`` is non-empty: a token of the added space alone is not part of the eojeol.

Text types: `text_type` maps a shard's ``source`` to the row of the fertility-by-text-type
table (a trailing ``/<id>`` segment that starts with a digit is dropped).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .morph import Span, TokenizeFn, morpheme_boundaries, pure_boundary_stats

RENYI_ALPHA = 2.5  # Zouhar et al. 2023's choice of the order a (part of the definition)
_ID_SEGMENT = re.compile(r"^(?P<type>.+)/[0-9][^/]*$")


def ratio(num: float, den: float) -> float | None:
    """``num / den``, or None when ``den`` is 0."""
    return float(num) / float(den) if den else None


def tokens_per_eojeol(n_tokens: int, n_eojeol: int) -> float | None:
    """Fertility: tokens produced per whitespace-separated word, ``|T| / |E|``."""
    return ratio(n_tokens, n_eojeol)


def bytes_per_token(n_bytes: int, n_tokens: int) -> float | None:
    """UTF-8 bytes of the text per produced token."""
    return ratio(n_bytes, n_tokens)


def chars_per_token(n_chars: int, n_tokens: int) -> float | None:
    """Unicode characters of the text per produced token."""
    return ratio(n_chars, n_tokens)


def eojeol_token_lengths(spans_per_eojeol: Sequence[Sequence[Span]]) -> np.ndarray:
    """``n(e)`` per eojeol: its tokens with a non-empty character span.

    ``spans_per_eojeol`` comes from a `pipeline.morph.TokenizeFn` (e.g. ``hf_tokenize_fn(tok)``)
    where a token covering only the added leading space has the empty span ``(0, 0)``.
    """
    return np.array([sum(1 for _, s, e in spans if e > s) for spans in spans_per_eojeol],
                    dtype=np.int64)


def multi_token_share(lengths: Sequence[int], counts: Sequence[int]) -> float | None:
    """Share of eojeol occurrences split into 2+ tokens: ``sum c(e)[n(e)>=2] / sum c(e)``."""
    n, c = np.asarray(lengths), np.asarray(counts, dtype=np.int64)
    return ratio(int(c[n >= 2].sum()), int(c.sum()))


def strr(lengths: Sequence[int]) -> float | None:
    """Single-token retention rate: share of eojeol types tokenized as exactly one token."""
    n = np.asarray(lengths)
    return ratio(int((n == 1).sum()), len(n))


def token_key(token_bytes: bytes | None, raw: str | None) -> bytes:
    """What %KO compares tokens by: their bytes without leading spaces (the space marker).

    A token without bytes (special / added) is keyed by its raw string.
    """
    if token_bytes is None:
        return (raw or "").encode()
    return bytes(token_bytes).lstrip(b" ")


@dataclass(frozen=True)
class KoreanShare:
    share: float | None
    korean: int   # unique Korean keys
    unique: int   # unique non-empty keys


def korean_token_share(token_ids: Iterable[int], keys: Sequence[bytes],
                       is_korean: Sequence[bool]) -> KoreanShare:
    """%KO: share of the unique produced tokens (by `token_key`) that Kiwi reads as one Korean
    morpheme or a valid word. ``keys[i]`` / ``is_korean[i]`` describe id ``i`` (ids of the
    token_scores table); ``token_ids`` are the ids produced on the sample."""
    ko: dict[bytes, bool] = {}
    for i in token_ids:
        k = keys[i]
        if k:
            ko[k] = ko.get(k, False) or bool(is_korean[i])
    n_ko = sum(ko.values())
    return KoreanShare(ratio(n_ko, len(ko)), n_ko, len(ko))


def pure_share(aligned_internal: int, internal: int) -> float | None:
    """%Pure: token boundaries inside eojeols that are Kiwi morpheme boundaries / all of them."""
    return ratio(aligned_internal, internal)


def renyi_entropy(counts: Sequence[float], alpha: float = RENYI_ALPHA) -> float | None:
    """Rényi entropy (nats) of the distribution ``counts / sum(counts)``:
    ``1 / (1 - a) * log sum p_i^a``; Shannon entropy for ``a = 1``. None for no counts."""
    c = np.asarray(counts, dtype=np.float64)
    c = c[c > 0]
    if c.size == 0:
        return None
    p = c / c.sum()
    if alpha == 1:
        return float(-(p * np.log(p)).sum())
    return float(np.log((p ** alpha).sum()) / (1.0 - alpha))


def renyi_efficiency(counts: Sequence[float], vocab_size: int,
                     alpha: float = RENYI_ALPHA) -> float | None:
    """Zouhar et al.'s Rényi efficiency ``H_a(p) / log |V|`` (``|V|`` = ``vocab_size``, the
    tokenizer's full vocabulary)."""
    h = renyi_entropy(counts, alpha)
    if h is None or vocab_size < 2:
        return None
    return h / math.log(vocab_size)


def text_type(source: str | None) -> str:
    """The text type of a shard ``source``: a trailing ``/<id>`` segment starting with a digit
    is dropped (``nsmc/10001`` -> ``nsmc``, ``kobill/1809890`` -> ``kobill``); anything else is
    kept as is (``klue-nli/wikipedia``, ``kolaw/constitution``, a file stem)."""
    if not source:
        return "(none)"
    m = _ID_SEGMENT.match(source)
    return m.group("type") if m else source


# --------------------------------------------------------------------------------------------
# All metrics of one tokenizer on one sample


@dataclass(frozen=True)
class EojeolTokenization:
    """How one tokenizer splits the sample's eojeol types."""

    lengths: np.ndarray          # n(e) per type
    pure_aligned: int            # %Pure numerator (count-weighted)
    pure_internal: int           # %Pure denominator


def tokenize_eojeols(eojeols: Sequence[str], counts: Sequence[int], tokenize_fn: TokenizeFn,
                     boundaries: Sequence[frozenset[int]] | None = None) -> EojeolTokenization:
    """Tokenize the eojeol types once; their token counts and %Pure totals.

    ``boundaries`` (from `pipeline.morph.morpheme_boundaries`) lets before/after share Kiwi's
    analysis; computed here when None.
    """
    eojeols = list(eojeols)
    if not eojeols:
        return EojeolTokenization(np.zeros(0, np.int64), 0, 0)
    if boundaries is None:
        boundaries = morpheme_boundaries(eojeols)
    spans = tokenize_fn(eojeols)
    aligned, internal = pure_boundary_stats(eojeols, counts, lambda _: spans,
                                            boundaries=boundaries)
    return EojeolTokenization(eojeol_token_lengths(spans), aligned, internal)


@dataclass(frozen=True)
class SampleTokenization:
    """One tokenizer's output on a sample: the inputs of `quality`."""

    n_tokens: int
    n_bytes: int
    n_chars: int
    n_eojeol: int
    unigram: np.ndarray          # produced-token counts, indexed like keys / is_korean
    vocab_size: int              # |V| of this tokenizer
    eojeols: EojeolTokenization


def quality(t: SampleTokenization, eojeol_counts: Sequence[int], keys: Sequence[bytes],
            is_korean: Sequence[bool], alpha: float = RENYI_ALPHA) -> dict:
    """Every metric of the module docstring for one tokenizer, as a JSON-able dict."""
    ko = korean_token_share(np.flatnonzero(t.unigram).tolist(), keys, is_korean)
    return {
        "tokens": t.n_tokens,
        "tokens_per_eojeol": tokens_per_eojeol(t.n_tokens, t.n_eojeol),
        "bytes_per_token": bytes_per_token(t.n_bytes, t.n_tokens),
        "chars_per_token": chars_per_token(t.n_chars, t.n_tokens),
        "multi_token_eojeol_share": multi_token_share(t.eojeols.lengths, eojeol_counts),
        "strr": strr(t.eojeols.lengths),
        "ko_share": ko.share,
        "ko_tokens": ko.korean,
        "unique_tokens": ko.unique,
        "pure_share": pure_share(t.eojeols.pure_aligned, t.eojeols.pure_internal),
        "pure_boundaries": t.eojeols.pure_aligned,
        "internal_boundaries": t.eojeols.pure_internal,
        "renyi_efficiency": renyi_efficiency(t.unigram, t.vocab_size, alpha),
        "renyi_alpha": alpha,
        "vocab_size": t.vocab_size,
    }


#: One-line definitions, shown next to each metric in the report.
DEFINITIONS = {
    "tokens_per_eojeol": "Fertility: tokens produced / whitespace-separated words (eojeol) of "
                         "the held-out documents. Lower is better.",
    "bytes_per_token": "UTF-8 bytes of the held-out text / tokens produced. Higher means more "
                       "text per token.",
    "chars_per_token": "Characters of the held-out text / tokens produced.",
    "multi_token_eojeol_share": "Share of eojeol occurrences split into 2 or more tokens "
                                "(each eojeol tokenized as it follows a space).",
    "strr": "STRR, single-token retention rate: share of distinct eojeol types tokenized as "
            "exactly one token.",
    "ko_share": "%KO: share of the distinct tokens produced (space marker stripped) that Kiwi "
                "reads as one Korean morpheme or a valid word.",
    "pure_share": "%Pure: share of token boundaries inside eojeols that fall on Kiwi morpheme "
                  "boundaries (eojeol types weighted by count).",
    "renyi_efficiency": "Rényi efficiency (Zouhar et al. 2023): H_α(p) / log|V| with "
                        "H_α(p) = log(Σ p_i^α) / (1 − α), α = 2.5, p the unigram distribution "
                        "of produced tokens, |V| the tokenizer's full vocabulary size.",
}
