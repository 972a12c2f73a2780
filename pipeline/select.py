"""Token features + ``[select]`` thresholds -> the keep set, with one reason per token.

``keep.parquet``: ``token_id``, ``keep`` (bool), ``reason`` (str), ``order`` (position at which
a kept token was added, null for dropped ones: every prefix ``order < k`` is itself a keep set
closed under merges, which the coverage curve of `pipeline.coverage` walks). Every id has
exactly one reason, the first that applies in this order:

kept
    ``special``, ``byte``, ``chat_template``  the tokenizer needs it whatever the corpus says
    ``placeholder``       a reserved ``<unusedN>`` added token (`pipeline.closure.placeholder_ids`),
                          kept with keep_placeholders (the default)
    ``frequent``          count >= min_count and doc_freq >= min_doc_freq
    ``script``            its script class is in keep_scripts
    ``hangul_partial``    partial UTF-8 that can only be part of Hangul (keep_hangul_partials)
    ``korean_morpheme``   Kiwi reads it as one Korean morpheme or a word (keep_korean_morphemes)
    ``language``          fastText's top language is in keep_languages with >= min_language_prob
    ``top_latin``         among the top_latin Latin/ASCII tokens by tokenizer rank, counted
                          among the tokens not required anyway (bytes are): lowest id
                          (``top_latin_rank = "id"``; Tekken's ids follow frequency), earliest
                          BPE merge producing the token (``"merges"``: merges are learned in
                          frequency order, whatever the ids; in Gemma 3 merge order is id order)
                          or the rank of the same text in the latin_reference tokenizer
                          (``"reference"``, `pipeline.latin_reference`: Tekken by default, whose
                          ids follow web and code text; tokens it lacks come last, by id)
    ``latin_acronym``     2 to 5 capital ASCII letters (space marker aside): OECD, DHCP, USB,
                          ▁GNU (keep_latin_acronyms). Korean writes acronyms in Latin letters
                          but transliterates ordinary English words into Hangul, so acronyms
                          are the English of Korean text in every domain, however rare they are
                          in the tokenizer's (mostly English) training data
    ``ksx1001``           one character (space marker aside) of KS X 1001, the EUC-KR
                          repertoire of Korean usage: Hanja, unit symbols (㎞ ㎡), full-width
                          forms, circled Hangul, ... (keep_ksx1001; ASCII and Hangul syllables
                          excluded: other rules cover them); with max_ksx1001 only that many,
                          lowest ids (the most frequent characters) first
    ``latin_twin``        the other space form of a Latin token kept by a rule above: ``Linux``
                          for ``▁Linux`` and back (keep_latin_twins). Korean text puts English
                          words after ``(``, ``/``, ``-`` or at the start of a line as often as
                          after a space, so a word kept in one form is split in the other
    ``merge_closure``     a part of a merge that builds a kept token (BPE closure)
dropped
    ``placeholder``       a reserved ``<unusedN>`` added token, with keep_placeholders = false
    ``over_target``       would be kept, but target_vocab_size is reached
    ``rare``              used in the corpus, below min_count / min_doc_freq
    ``unused``            never emitted in the counted corpus

With ``target_vocab_size``: candidates are ranked (required first, then frequent tokens by
count, then the rule-kept ones by count and rank) and added with their merge closure while
the total fits.

The result is always closed under merges (`pipeline.closure.close_under_merges`). It does not
re-tokenize anything; `pipeline.sweep` evaluates a keep set.
"""

from __future__ import annotations

import re

import numpy as np
import polars as pl

from .closure import merge_index
from .errors import ConfigError
from .latin_reference import reference_path, reference_rank

# "placeholder" is required only with keep_placeholders; dropped ones keep it as their reason
REQUIRED = ("special", "byte", "chat_template", "placeholder")
KEPT_REASONS = REQUIRED + ("frequent", "script", "hangul_partial", "korean_morpheme",
                           "language", "top_latin", "latin_acronym", "ksx1001", "latin_twin",
                           "merge_closure")
DROPPED_REASONS = ("placeholder", "over_target", "rare", "unused")
SCRIPTS = ("hangul_syllable", "hangul_jamo", "latin", "digit", "punct_symbol", "whitespace",
           "han", "kana", "cyrillic", "arabic", "other", "mixed")


LATIN_RANKS = ("id", "merges", "reference")


def check_select_config(sc) -> None:
    if sc.top_latin_rank not in LATIN_RANKS:
        raise ConfigError(f"[select] top_latin_rank = {sc.top_latin_rank!r} is not one of "
                          f"{', '.join(LATIN_RANKS)}: `id` ranks Latin tokens by id, `merges` by "
                          "the earliest BPE merge that produces them, `reference` by the rank "
                          "of their text in the [select] latin_reference tokenizer.")
    if sc.top_latin_rank == "reference":
        reference_path(sc.latin_reference)  # ConfigError naming the key when missing
    bad = [s for s in sc.keep_scripts if s not in SCRIPTS]
    if bad:
        raise ConfigError(f"[select] keep_scripts has unknown script class(es) {bad}. Valid: "
                          f"{', '.join(SCRIPTS)}.")


def merge_rank(tok, n: int) -> np.ndarray:
    """Per id: index of the earliest BPE merge producing it (int64 max when none: bytes,
    single characters, special tokens; and every id of a tokenizer without merges)."""
    rank = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    index = merge_index(tok) if tok is not None else None
    if index is not None and len(index.results):
        res = index.results
        ok = res < n
        np.minimum.at(rank, res[ok], np.flatnonzero(ok))
    return rank


def rule_reasons(scores: pl.DataFrame, sc, tok=None) -> np.ndarray:
    """The kept reason each token earns from the thresholds alone (None: none), no closure.
    ``tok`` is needed for ``top_latin_rank = "merges"``. Placeholders are required only with
    keep_placeholders (None here otherwise)."""
    n = scores.height
    reason = np.full(n, None, dtype=object)

    def give(mask, name):
        m = np.asarray(mask, dtype=bool) & (reason == None)  # noqa: E711 - numpy elementwise
        reason[m] = name

    req = scores["required"].to_numpy()
    has_req = scores["required"].is_not_null().to_numpy()
    if not sc.keep_placeholders:
        has_req &= req != "placeholder"
    reason[has_req] = req[has_req]
    cnt, dfreq = scores["count"].to_numpy(), scores["doc_freq"].to_numpy()
    give((cnt >= sc.min_count) & (dfreq >= sc.min_doc_freq) & ((cnt > 0) | (sc.min_count == 0)),
         "frequent")
    give(scores["script"].is_in(list(sc.keep_scripts)).fill_null(False).to_numpy(), "script")
    if sc.keep_hangul_partials:
        give(scores["partial_hangul_only"].to_numpy(), "hangul_partial")
    if sc.keep_korean_morphemes:
        give((scores["kiwi_single_morpheme"] | scores["kiwi_valid_word"]).to_numpy(),
             "korean_morpheme")
    if sc.keep_languages:
        give((scores["lang"].is_in(list(sc.keep_languages)).fill_null(False)
              & (scores["lang_prob"].fill_null(0) >= sc.min_language_prob)).to_numpy(), "language")
    if sc.top_latin:
        # among tokens not kept anyway: byte tokens ("a", "b", ...) are Latin too, and in
        # Tekken they are the first 52 Latin ids, so counting them spent top_latin on nothing
        latin = scores.filter((pl.col("script") == "latin")
                              & pl.col("required").is_null())["token_id"].to_numpy()
        mask = np.zeros(n, dtype=bool)
        if sc.top_latin_rank == "merges":  # earliest merge first; ties (no merge) by id
            latin = latin[np.lexsort((latin, merge_rank(tok, n)[latin]))]
        elif sc.top_latin_rank == "reference":  # reference rank of the text; absent ones by id
            ref = reference_rank(scores["decoded"].to_list(), sc.latin_reference)
            latin = latin[np.lexsort((latin, ref[latin]))]
        else:
            latin = np.sort(latin)
        mask[latin[: sc.top_latin]] = True
        give(mask, "top_latin")
    if sc.keep_latin_acronyms:
        give(latin_acronym_mask(scores), "latin_acronym")
    if sc.keep_ksx1001:
        give(ksx1001_mask(scores, sc.max_ksx1001), "ksx1001")
    if sc.keep_latin_twins:
        give(latin_twin_mask(scores, reason != None), "latin_twin")  # noqa: E711
    return reason


ACRONYM = re.compile(r"[A-Z]{2,5}")


def _latin_texts(scores: pl.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Per id: is it a complete, not required Latin token; and its decoded text."""
    latin = ((scores["script"] == "latin") & (scores["byte_class"] == "complete")
             & scores["required"].is_null()).fill_null(False).to_numpy()
    return latin, scores["decoded"].fill_null("").to_list()


def latin_acronym_mask(scores: pl.DataFrame) -> np.ndarray:
    """Per id: is the token (leading spaces aside) 2 to 5 capital ASCII letters?"""
    latin, text = _latin_texts(scores)
    return np.array([bool(m) and ACRONYM.fullmatch(t.lstrip(" ")) is not None
                     for m, t in zip(latin, text)], dtype=bool)


def latin_twin_mask(scores: pl.DataFrame, kept: np.ndarray) -> np.ndarray:
    """Per id: is it the other space form (one leading space added or removed) of a Latin token
    in ``kept``? Only Latin tokens are twins; ``kept`` ones are not their own twins."""
    latin, text = _latin_texts(scores)
    by_text = {text[i]: i for i in np.flatnonzero(latin).tolist()}
    out = np.zeros(len(text), dtype=bool)
    for i in np.flatnonzero(latin & np.asarray(kept, dtype=bool)).tolist():
        t = text[i]
        j = by_text.get(t[1:] if t.startswith(" ") else " " + t)
        if j is not None:
            out[j] = True
    return out & ~np.asarray(kept, dtype=bool)


def in_ksx1001(text: str | None) -> bool:
    """One non-ASCII, non-Hangul-syllable character (leading spaces aside) that EUC-KR (KS X
    1001) encodes."""
    s = (text or "").strip()
    if len(s) != 1 or ord(s) < 128 or 0xAC00 <= ord(s) <= 0xD7A3:
        return False
    try:
        s.encode("euc_kr")
    except UnicodeEncodeError:
        return False
    return True


def ksx1001_mask(scores: pl.DataFrame, top: int = 0) -> np.ndarray:
    """Per id: is the token (its ``decoded`` text, complete tokens only) a KS X 1001 character,
    and with ``top`` > 0 one of the ``top`` such tokens with the lowest ids?"""
    complete = (scores["byte_class"] == "complete").fill_null(False).to_numpy()
    mask = np.array([bool(c) and in_ksx1001(t)
                     for c, t in zip(complete, scores["decoded"].to_list())], dtype=bool)
    if top:
        mask[np.flatnonzero(mask)[top:]] = False  # ids ascend: keep the first ``top``
    return mask


def select(tok, scores: pl.DataFrame, sc) -> pl.DataFrame:
    """The keep set for thresholds ``sc`` (a `SelectConfig`): a DataFrame token_id/keep/reason."""
    check_select_config(sc)
    n = scores.height
    reason = rule_reasons(scores, sc, tok)
    index = merge_index(tok)
    kept = np.zeros(n, dtype=bool)
    final = np.full(n, None, dtype=object)
    rank = np.full(n, -1, dtype=np.int64)  # position in the order tokens are added
    added_so_far = 0
    order = _candidate_order(scores, reason)
    if sc.target_vocab_size:
        n_req = int(np.isin(reason, REQUIRED).sum())
        if sc.target_vocab_size < n_req:
            raise ConfigError(
                f"[select] target_vocab_size = {sc.target_vocab_size} is below the {n_req} tokens "
                "the tokenizer always needs (special, byte and chat-template tokens, and "
                "placeholders with keep_placeholders). Raise it, or set 0 for no target.")
        for t in order:
            added = _closure_additions(int(t), kept, index)
            if kept.sum() + len(added) > sc.target_vocab_size and reason[t] not in REQUIRED:
                final[t] = "over_target"
                continue
            for x in added:  # post-order: parts before the tokens they build
                kept[x] = True
                final[x] = reason[x] if x == t or reason[x] is not None else "merge_closure"
                rank[x] = added_so_far
                added_so_far += 1
    else:
        # the same set as adding every rule-kept id in id order; the candidate order makes
        # every prefix of ``rank`` a closed keep set ranked like the target-size selection
        for t in order.tolist():
            for x in _closure_additions(int(t), kept, index):
                kept[x] = True
                final[x] = reason[x] if reason[x] is not None else "merge_closure"
                rank[x] = added_so_far
                added_so_far += 1
    cnt = scores["count"].to_numpy()
    placeholder = (scores["required"] == "placeholder").fill_null(False).to_numpy()
    for t in np.flatnonzero(~kept).tolist():
        if final[t] is None:
            final[t] = "placeholder" if placeholder[t] else "rare" if cnt[t] > 0 else "unused"
    return pl.DataFrame({"token_id": scores["token_id"], "keep": kept,
                         "reason": pl.Series(final.tolist(), dtype=pl.String),
                         "order": pl.Series(np.where(rank >= 0, rank, None).tolist(),
                                            dtype=pl.Int64)})


def _candidate_order(scores: pl.DataFrame, reason: np.ndarray) -> np.ndarray:
    """Required first, then frequent tokens by count, then rule-kept ones by count, rank."""
    tier = np.where(np.isin(reason, REQUIRED), 0, np.where(reason == "frequent", 1, 2))
    cand = np.flatnonzero(reason != None)  # noqa: E711
    cnt = scores["count"].to_numpy()
    keys = (cand, -cnt[cand], tier[cand])  # lexsort: last key is primary
    return cand[np.lexsort(keys)]


def _closure_additions(t: int, kept: np.ndarray, index) -> list[int]:
    """``t`` and the not-yet-kept parts of every merge building it, recursively, in post-order
    (every part before the tokens built from it: each prefix of the result, added to a closed
    set, is closed)."""
    if kept[t]:
        return []
    out, visited, stack = [], set(), [(t, False)]
    while stack:
        x, expanded = stack.pop()
        if expanded:
            out.append(x)
            continue
        if x in visited:
            continue
        visited.add(x)
        stack.append((x, True))
        if index is not None:
            for part in index.pairs[index.producers(x)].ravel().tolist():
                if not kept[part] and part not in visited:
                    stack.append((part, False))
    return out


def select_metrics(keep: pl.DataFrame, scores: pl.DataFrame) -> dict:
    reasons = keep.group_by("reason").agg(pl.len()).sort("reason")
    n_keep = int(keep["keep"].sum())
    kept_tokens = scores["count"].to_numpy()[keep["keep"].to_numpy()].sum()
    total = scores["count"].sum()
    return {"vocab": {"selected": n_keep, "dropped": keep.height - n_keep},
            "select": {"reasons": {r["reason"]: r["len"] for r in reasons.iter_rows(named=True)},
                       "counted_token_coverage": round(float(kept_tokens / total), 6) if total else None}}
