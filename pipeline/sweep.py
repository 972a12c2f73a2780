"""Exact, cheap evaluation of a keep set on the held-out split, and the threshold sweep.

Two facts make this exact without re-tokenizing the corpus:

1. With a keep set closed under merges (`pipeline.select`), a document tokenizes identically
   iff all of its original tokens are kept; so the identical share is a lookup over the
   held-out shards' token ids.
2. Every supported tokenizer model works on one pre-token at a time. Tokens per eojeol after
   pruning therefore only needs the *unique pre-tokens* that hold a dropped token to be
   re-tokenized by the pruned model; all others keep their original token count.

`HeldoutIndex` does the expensive part once per run (pre-tokenize the held-out text, tokenize
each unique pre-token); `evaluate` then costs one pass over the affected pre-tokens. Documents
whose pre-token tokenization does not add up to their shard tokenization (e.g. text containing
an added token's literal string) are re-encoded whole, so the figures stay exact.

`sweep` runs selection for a grid of thresholds and writes vocab size vs held-out identical
share vs tokens per eojeol (``sweep.parquet``), the table the report plots. It decides nothing.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from .shards import read_shards


@dataclasses.dataclass
class HeldoutIndex:
    doc_of_token: np.ndarray      # (n_tokens,) doc index of each held-out token (int32)
    flat_ids: np.ndarray          # (n_tokens,) original token ids (int32)
    n_docs: int
    eojeol: int                   # held-out eojeol total
    pretokens: list[str]          # unique pre-tokens (model alphabet) of the exact docs
    pt_counts: np.ndarray         # occurrences of each pre-token
    pt_ids: list[np.ndarray]      # original tokenization of each pre-token
    fallback_texts: list[str]     # docs re-encoded whole

    @property
    def tokens(self) -> int:
        return len(self.flat_ids)


def pretokenize_heldout(tok, shards: list[Path]) -> tuple[pl.DataFrame, list[str]]:
    """Unique pre-tokens of the held-out text with counts and original token ids, plus the
    documents that must be re-encoded whole (run once per run: the `heldout` stage)."""
    if not shards:
        return pl.DataFrame(schema={"pretoken": pl.String, "count": pl.Int64,
                                    "token_ids": pl.List(pl.Int64)}), []
    backend = tok.backend_tokenizer
    norm, pre, model = backend.normalizer, backend.pre_tokenizer, backend.model
    counts: Counter = Counter()
    cache: dict[str, list[int]] = {}
    fallback = []
    for shard in shards:  # one shard at a time: memory bounded by a shard + unique pre-tokens
        t = read_shards([shard], ["text", "n_tokens"])
        for text, n in zip(t.column("text").to_pylist(), t.column("n_tokens").to_pylist()):
            s = norm.normalize_str(text) if norm is not None else text
            pieces = [p for p, _ in pre.pre_tokenize_str(s)] if pre is not None else [s]
            total = 0
            for p in pieces:
                if p not in cache:
                    cache[p] = [x.id for x in model.tokenize(p)]
                total += len(cache[p])
            if total == n:
                counts.update(pieces)
            else:
                fallback.append(text)
    pts = sorted(counts)
    df = pl.DataFrame({"pretoken": pts, "count": [counts[p] for p in pts],
                       "token_ids": [cache[p] for p in pts]},
                      schema={"pretoken": pl.String, "count": pl.Int64,
                              "token_ids": pl.List(pl.Int64)})
    return df, fallback


def load_heldout_index(shards: list[Path], pretokens: pl.DataFrame,
                       fallback: list[str]) -> HeldoutIndex:
    t = read_shards(shards, ["token_ids", "n_eojeol"]) if shards else None
    if t is None or t.num_rows == 0:
        return HeldoutIndex(np.zeros(0, np.int64), np.zeros(0, np.int64), 0, 0, [],
                            np.zeros(0, np.int64), [], [])
    ids_col = t.column("token_ids").combine_chunks()
    flat = ids_col.values.to_numpy(zero_copy_only=False).astype(np.int32)
    lengths = pa.compute.list_value_length(ids_col).to_numpy(zero_copy_only=False)
    return HeldoutIndex(
        doc_of_token=np.repeat(np.arange(t.num_rows, dtype=np.int32), lengths), flat_ids=flat,
        n_docs=t.num_rows, eojeol=int(pa.compute.sum(t.column("n_eojeol")).as_py() or 0),
        pretokens=pretokens["pretoken"].to_list(), pt_counts=pretokens["count"].to_numpy(),
        pt_ids=[np.asarray(x, dtype=np.int64) for x in pretokens["token_ids"].to_list()],
        fallback_texts=list(fallback))


def build_heldout_index(tok, shards: list[Path]) -> HeldoutIndex:
    """`pretokenize_heldout` + `load_heldout_index` in one step (tests, notebooks)."""
    return load_heldout_index(shards, *pretokenize_heldout(tok, shards))


def identical_share(idx: HeldoutIndex, keep: np.ndarray) -> float | None:
    """Share of held-out documents whose tokens are all kept (= tokenized identically)."""
    if idx.n_docs == 0:
        return None
    dropped = np.bincount(idx.doc_of_token, weights=~keep[idx.flat_ids], minlength=idx.n_docs)
    return float((dropped == 0).mean())


def tokens_after(idx: HeldoutIndex, keep: np.ndarray, pruned_tok) -> int:
    """Exact number of held-out tokens the pruned tokenizer produces."""
    model = pruned_tok.backend_tokenizer.model
    total = 0
    for p, c, ids in zip(idx.pretokens, idx.pt_counts.tolist(), idx.pt_ids):
        if keep[ids].all():
            total += c * len(ids)
        else:
            total += c * len(model.tokenize(p))
    if idx.fallback_texts:
        encs = pruned_tok.backend_tokenizer.encode_batch_fast(idx.fallback_texts,
                                                             add_special_tokens=False)
        total += sum(len(e.ids) for e in encs)
    return total


def evaluate(idx: HeldoutIndex, tok, keep_ids: np.ndarray, pruned=None) -> dict:
    """Held-out figures for a closed keep set (bool mask over old ids); ``pruned``: the pruned
    tokenizer of that keep set when already built."""
    from .surgery.tokenizer import prune_tokenizer

    keep = np.asarray(keep_ids, dtype=bool)
    if pruned is None:
        pruned, _ = prune_tokenizer(tok, np.flatnonzero(keep).tolist())
    n_after = tokens_after(idx, keep, pruned)
    return {
        "vocab_size": int(keep.sum()),
        "heldout_identical_share": identical_share(idx, keep),
        "heldout_tokens_per_eojeol": round(n_after / idx.eojeol, 6) if idx.eojeol else None,
        "heldout_tokens": n_after,
        "heldout_tokens_before": idx.tokens,
    }


def sweep(tok, scores: pl.DataFrame, idx: HeldoutIndex, sc, grid, *, say=lambda m: None,
          eval_indexes: dict | None = None) -> pl.DataFrame:
    """Evaluate the configured thresholds and every grid point (the min_count, target size,
    top_latin and max_ksx1001 grids, each with the other thresholds as configured; each
    ``[sweep] rules`` flag flipped), on the held-out split and on every evaluation set
    (columns ``<set>_identical_share``, ``<set>_tokens_per_eojeol``)."""
    from .select import select
    from .surgery.tokenizer import prune_tokenizer

    points = [("chosen", {})]
    for mc in grid.min_count:
        points.append(("grid", {"min_count": mc}))
    for tv in grid.target_vocab_size:
        points.append(("grid", {"target_vocab_size": tv}))
    for tl in grid.top_latin:
        points.append(("grid", {"top_latin": tl}))
    for mk in grid.max_ksx1001:
        points.append(("grid", {"max_ksx1001": mk, "keep_ksx1001": True}))  # a cap of the rule
    flags = [f.name for f in dataclasses.fields(sc) if isinstance(getattr(sc, f.name), bool)]
    for name in grid.rules:
        if name not in flags:
            from .errors import ConfigError

            raise ConfigError(f"[sweep] rules lists {name!r}, which is not an on/off [select] "
                              f"rule. Valid: {', '.join(flags)}.")
        points.append(("grid", {name: not getattr(sc, name)}))
    rows = []
    for kind, change in points:
        cfg = dataclasses.replace(sc, **change)
        keep = select(tok, scores, cfg)["keep"].to_numpy()
        say(f"[sweep] {change or 'configured thresholds'}: {int(keep.sum())} tokens")
        pruned, _ = prune_tokenizer(tok, np.flatnonzero(keep).tolist())
        ev = evaluate(idx, tok, keep, pruned)
        for name, ix in (eval_indexes or {}).items():
            e = evaluate(ix, tok, keep, pruned)
            ev[f"{name}_identical_share"] = e["heldout_identical_share"]
            ev[f"{name}_tokens_per_eojeol"] = e["heldout_tokens_per_eojeol"]
        flipped = change if next(iter(change), None) in grid.rules else {}
        rows.append({"point": kind, "grid": next(iter(change), "chosen"),
                     "flipped": ", ".join(f"{k}={str(v).lower()}" for k, v in flipped.items()),
                     "min_count": cfg.min_count, "target_vocab_size": cfg.target_vocab_size,
                     "top_latin": cfg.top_latin,
                     "max_ksx1001": cfg.max_ksx1001 if cfg.keep_ksx1001 else None, **ev})
    return pl.DataFrame(rows).unique(subset=["point", "min_count", "target_vocab_size",
                                             "top_latin", "max_ksx1001", "flipped"],
                                     keep="first", maintain_order=True)
