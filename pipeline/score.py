"""Counts + vocabulary -> per-token features (``token_scores.parquet``). Scores, never decides.

One row per vocabulary id. Columns:

- identity: ``token_id``, ``token`` (raw vocab string), ``token_bytes``, ``decoded`` (UTF-8 text
  where the bytes are valid), ``space_marker``;
- byte class (`pipeline.tokenclass`): ``byte_class`` (special / byte / complete / partial),
  ``partial_scripts``, ``partial_hangul_only``, ``is_special``; script: ``script``;
- ``required``: why the tokenizer itself needs the token (special / placeholder / byte /
  chat_template), else null (`pipeline.closure.required_ids`);
- frequency: ``count`` (emitted as a final token in the counted split), ``doc_freq``, ``share``
  (count / all tokens), ``intermediate_count`` (how often it is built as an intermediate of a
  BPE merge on the way to an emitted token; a token with ``count == 0`` and
  ``intermediate_count > 0`` exists only to build longer tokens);
- Kiwi (`pipeline.morph`, on decoded Hangul-bearing tokens with the space marker stripped):
  ``kiwi_single_morpheme``, ``kiwi_tag``, ``kiwi_valid_word``; morpheme-boundary alignment of the
  token's occurrences inside eojeol types weighted by their counts: ``kiwi_align_occurrences``,
  ``kiwi_occurrences``, ``kiwi_align_share``;
- fastText (lid.176) on decoded complete tokens with a letter: ``lang``, ``lang_prob``.

Thresholds live in `pipeline.select`; nothing here depends on ``[select]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from . import langid
from .closure import merge_index, required_ids, tokenizer_family

HANGUL_SCRIPTS = ("hangul_syllable", "hangul_jamo")


def intermediate_counts(tok, counts: np.ndarray) -> np.ndarray:
    """For BPE: occurrences of each token as an intermediate of the merges building emitted
    tokens. Each emitted token's derivation is replayed once (BPE within one final token only
    involves its own symbols, so replaying it alone gives the merges the tokenizer applied).

    >>> # "Ġthe" built as Ġ t h e -> Ġt h e -> Ġt he -> Ġthe: Ġt and he are intermediates.
    """
    index = merge_index(tok)
    out = np.zeros(len(counts), dtype=np.int64)
    if index is None:
        return out
    rank = {(int(a), int(b)): (k, int(r)) for k, ((a, b), r)
            in enumerate(zip(index.pairs.tolist(), index.results.tolist()))}
    memo: dict = {}
    for t in np.flatnonzero(counts).tolist():
        for x in _derivation(t, index, rank, memo):
            out[x] += counts[t]
    return out


def _base_symbols(t: int, index, memo: dict) -> list[int]:
    """Token ``t`` taken apart into base symbols (tokens no merge produces), leftmost parts
    first; any producing merge gives the same symbol string."""
    if t in memo:
        return memo[t]
    prod = index.producers(t)
    if len(prod) == 0:
        memo[t] = [t]
    else:
        a, b = index.pairs[prod[0]].tolist()
        memo[t] = _base_symbols(a, index, memo) + _base_symbols(b, index, memo)
    return memo[t]


def _derivation(t: int, index, rank: dict, memo: dict) -> list[int]:
    """The intermediate tokens BPE builds on the way to ``t`` (``t`` itself excluded)."""
    syms = list(_base_symbols(t, index, memo))
    inter: list[int] = []
    while len(syms) > 1:
        best = None
        for i in range(len(syms) - 1):
            r = rank.get((syms[i], syms[i + 1]))
            if r is not None and (best is None or r[0] < best[1][0]):
                best = (i, r)
        if best is None:
            break
        i, (_, res) = best
        syms[i:i + 2] = [res]
        inter.append(res)
    if inter and inter[-1] == t:
        inter.pop()
    return inter


def _kiwi_columns(df: pl.DataFrame) -> pl.DataFrame:
    from .morph import morph_features

    hangul = df.filter(pl.col("script").is_in(HANGUL_SCRIPTS + ("mixed",))
                       & pl.col("decoded").str.contains(r"[\x{AC00}-\x{D7A3}\x{3131}-\x{318E}]"))
    stripped = [s.lstrip(" ").lstrip("\u2581") for s in hangul["decoded"].to_list()]
    uniq = sorted({s for s in stripped if s})
    feats = dict(zip(uniq, morph_features(uniq))) if uniq else {}
    rows = [feats.get(s) for s in stripped]
    return pl.DataFrame({
        "token_id": hangul["token_id"],
        "kiwi_single_morpheme": [bool(r and r["kiwi_single_morpheme"]) for r in rows],
        "kiwi_tag": [r["kiwi_tag"] if r else None for r in rows],
        "kiwi_valid_word": [bool(r and r["kiwi_valid_word"]) for r in rows],
    }, schema={"token_id": pl.Int64, "kiwi_single_morpheme": pl.Boolean, "kiwi_tag": pl.String,
               "kiwi_valid_word": pl.Boolean})


def _alignment(tok, eojeols: pl.DataFrame, max_types: int, align=None,
               features_key: str | None = None) -> pl.DataFrame:
    from .morph import boundary_alignment, hf_tokenize_fn

    top = eojeols.head(max_types)
    if not max_types or top.height == 0:
        return pl.DataFrame(schema={"token_id": pl.Int64, "kiwi_align_occurrences": pl.Int64,
                                    "kiwi_occurrences": pl.Int64})
    eojs, cnts = top["eojeol"].to_list(), top["count"].to_list()
    if align is not None:  # e.g. `pipeline.executor.alignment_map`: the same table, elsewhere
        per = align(eojs, cnts, tok)
    else:
        per = _cached(_alignment_key(features_key, eojs, cnts),
                      lambda: boundary_alignment(eojs, cnts, hf_tokenize_fn(tok)))
    return per.rename({"align_occurrences": "kiwi_align_occurrences",
                       "occurrences": "kiwi_occurrences"})


def _alignment_key(features_key: str | None, eojeols: list[str], counts: list[int]) -> str | None:
    """Cache key of the alignment of ``eojeols`` with their ``counts`` for the tokenizer of
    ``features_key`` (None: not cached)."""
    if features_key is None:
        return None
    import hashlib

    h = hashlib.blake2b(b"alignment\0" + features_key.encode(), digest_size=16)
    for e in eojeols:
        h.update(e.encode("utf-8", "surrogatepass") + b"\0")
    h.update(np.asarray(counts, dtype=np.int64).tobytes())
    return h.hexdigest()


def _langid_columns(df: pl.DataFrame) -> pl.DataFrame:
    cand = df.filter((pl.col("byte_class") == "complete") & pl.col("decoded").str.contains(r"\pL"))
    texts = [s.strip().lstrip("\u2581") for s in cand["decoded"].to_list()]
    langs, probs = langid.predict(texts)
    return pl.DataFrame({"token_id": cand["token_id"], "lang": langs,
                         "lang_prob": pl.Series(probs, dtype=pl.Float32)},
                        schema={"token_id": pl.Int64, "lang": pl.String, "lang_prob": pl.Float32})


# -- vocabulary features, cached per tokenizer ------------------------------------------------
# Byte/script classes, Kiwi's morpheme features of the Hangul tokens and fastText's language
# of the letter tokens depend on the tokenizer alone, not on the corpus, and cost most of the
# stage (Kiwi reads every Hangul token twice: about 10 s for Tekken, more for Gemma 3). They
# are kept in ``<cache>/features/<key>.parquet`` (`pipeline.models.cache_root`), so analysing
# another corpus with the same tokenizer does not recompute them. The key hashes everything
# they are computed from: the serialized tokenizer, its class, family, length and special
# ids, the Kiwi and fastText models, and the source of the modules that compute them (an
# edited rule never reads a stale table). Kiwi's morpheme-boundary alignment of the counted
# eojeol types is cached the same way, keyed by that key and the types with their counts
# (loading Kiwi alone takes about 6 s); run elsewhere (``align``, the Ray executor) it is
# always computed. The cache changes no result: a hit returns the table a miss computes
# (tests/test_score_cache.py).
FEATURES_VERSION = 1
FEATURE_CACHE_FILES = 64  # newest kept; older tables of ours are removed
_KIWI_COLS = ("kiwi_single_morpheme", "kiwi_tag", "kiwi_valid_word")
_LANG_COLS = ("lang", "lang_prob")


def _features_key(tok, family: str) -> str | None:
    """The cache key of ``tok``'s vocabulary features; None for a tokenizer that has no
    serialized form (a slow tokenizer): those are always computed."""
    import hashlib
    import importlib
    import importlib.metadata

    from .tokenclass import special_ids

    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        return None
    lid = langid.default_model_path()
    h = hashlib.blake2b(digest_size=16)
    parts = [str(FEATURES_VERSION), type(tok).__name__, family, str(len(tok)),
             repr(sorted(special_ids(tok))), importlib.metadata.version("kiwipiepy"),
             importlib.metadata.version("kiwipiepy_model"), f"{lid.name}:{lid.stat().st_size}",
             backend.to_str()]
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass") + b"\0")
    for name in ("tokenclass", "morph", "langid", "score", "closure"):
        h.update(Path(importlib.import_module(f"pipeline.{name}").__file__).read_bytes())
    return h.hexdigest()


def feature_cache_dir() -> Path:
    from .models import cache_root

    return cache_root() / "features"


def vocab_features(tok, family: str, say=lambda m: None,
                   key: str | None = None) -> pl.DataFrame:
    """`pipeline.tokenclass.classify_vocab` of ``tok`` with the Kiwi (`_KIWI_COLS`) and fastText
    (`_LANG_COLS`) columns left-joined, from the cache when it holds them (see above); ``key``:
    `_features_key` (None: not cached)."""
    from .tokenclass import classify_vocab

    def compute() -> pl.DataFrame:
        say("[score] byte and script classes")
        base = classify_vocab(tok, family)
        say("[score] Kiwi morpheme features")
        df = base.join(_kiwi_columns(base), on="token_id", how="left")
        say("[score] fastText on decoded tokens")
        return df.join(_langid_columns(base), on="token_id", how="left").sort("token_id")

    return _cached(key, compute, lambda p: say(f"[score] vocabulary features from the cache "
                                               f"({p})"))


def _cached(key: str | None, compute, hit=lambda path: None) -> pl.DataFrame:
    """The table cached under ``key`` in `feature_cache_dir`, else ``compute()`` stored there."""
    import os

    path = feature_cache_dir() / f"{key}.parquet" if key else None
    if path is not None and path.is_file():
        try:
            df = pl.read_parquet(path)
            os.utime(path)  # most recently used
            hit(path)
            return df
        except (OSError, pl.exceptions.PolarsError):  # damaged: recomputed and rewritten
            pass
    df = compute()
    if path is not None:
        _store(df, path)
    return df


def _store(df: pl.DataFrame, path: Path) -> None:
    """Write ``df`` to ``path`` atomically (`pipeline.artifacts.write_parquet`: concurrent
    writers of one key write the same table), then trim the cache to its newest
    `FEATURE_CACHE_FILES` tables. A cache that cannot be written is skipped, not an error."""
    from .artifacts import write_parquet

    try:
        write_parquet(df, path)
        ours = sorted((p for p in path.parent.glob("*.parquet") if _is_key(p.stem)),
                      key=lambda p: p.stat().st_mtime, reverse=True)
        for old in ours[FEATURE_CACHE_FILES:]:
            old.unlink(missing_ok=True)
    except OSError:
        pass


def _is_key(stem: str) -> bool:
    return len(stem) == 32 and all(c in "0123456789abcdef" for c in stem)


def score_tokens(tok, counts: pl.DataFrame, eojeols: pl.DataFrame, *,
                 kiwi_max_eojeol_types: int = 200_000, say=lambda m: None,
                 align=None) -> pl.DataFrame:
    """All features of every vocabulary id (see module docstring)."""
    family = tokenizer_family(tok)
    key = _features_key(tok, family)
    feats = vocab_features(tok, family, say, key)
    base = feats.drop(*_KIWI_COLS, *_LANG_COLS)
    req = required_ids(tok)
    c = counts.sort("token_id")
    cnt = c["count"].to_numpy()
    total = int(cnt.sum())
    say("[score] merge intermediates")
    inter = intermediate_counts(tok, cnt)
    df = base.with_columns(
        required=pl.Series([req.get(i) for i in range(base.height)], dtype=pl.String),
        count=pl.Series(cnt, dtype=pl.Int64),
        doc_freq=c["doc_freq"].cast(pl.Int64),
        share=pl.Series(cnt / total if total else np.zeros(len(cnt)), dtype=pl.Float64),
        intermediate_count=pl.Series(inter, dtype=pl.Int64),
    )
    df = df.join(feats.select("token_id", *_KIWI_COLS), on="token_id", how="left")
    say("[score] Kiwi boundary alignment on eojeol types")
    df = df.join(_alignment(tok, eojeols, kiwi_max_eojeol_types, align, key), on="token_id",
                 how="left")
    df = df.join(feats.select("token_id", *_LANG_COLS), on="token_id", how="left")
    df = df.with_columns(
        pl.col("kiwi_single_morpheme").fill_null(False),
        pl.col("kiwi_valid_word").fill_null(False),
        pl.col("kiwi_align_occurrences").fill_null(0),
        pl.col("kiwi_occurrences").fill_null(0),
    ).with_columns(
        kiwi_align_share=pl.when(pl.col("kiwi_occurrences") > 0)
        .then(pl.col("kiwi_align_occurrences") / pl.col("kiwi_occurrences")).otherwise(None),
    )
    return df.sort("token_id")


def score_metrics(df: pl.DataFrame) -> dict:
    by_class = df.group_by("byte_class").agg(pl.len()).sort("byte_class")
    by_script = df.group_by("script").agg(pl.len()).sort("script", nulls_last=True)
    return {"score": {
        "byte_class": {r["byte_class"]: r["len"] for r in by_class.iter_rows(named=True)},
        "script": {(r["script"] or "none"): r["len"] for r in by_script.iter_rows(named=True)},
        "partial_hangul_only": int(df["partial_hangul_only"].sum()),
        "kiwi_single_morpheme": int(df["kiwi_single_morpheme"].sum()),
        "kiwi_valid_word": int(df["kiwi_valid_word"].sum()),
        "only_intermediate": int(((df["count"] == 0) & (df["intermediate_count"] > 0)).sum()),
        "required": int(df["required"].is_not_null().sum()),
    }}
