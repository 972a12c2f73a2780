"""Coverage of a keep set on a tokenized split: what share of the text the kept vocabulary
covers, and how that grows with the kept-vocabulary size.

For a split (train, held-out, or an evaluation set of `pipeline.evalsets`) whose documents
were tokenized by the original tokenizer (Arrow shards: ``token_ids``, ``source``, ``text``):

``occurrences`` (token occurrence coverage)
    share of token occurrences whose token is kept.
``documents`` (document coverage)
    share of documents all of whose tokens are kept. The keep set is closed under merges
    (`pipeline.select`), so this is exactly the share of documents the pruned tokenizer
    tokenizes identically.
``curve``
    kept-vocabulary size ``k`` vs both coverages, for the first ``k`` tokens in the
    selection's own order (``keep.parquet`` column ``order``: every prefix is closed under
    merges, so document coverage is again the identical share). Ends at the chosen point.
``chosen`` / ``seen_only``
    the chosen keep set, and the "seen tokens only" baseline: the tokens seen in the counted
    split plus the always-kept ones, closed under merges, no other rule (what trimmers that
    keep only corpus tokens keep, made closed so its text is tokenized correctly).
``by_script``
    occurrence coverage per script class of the token (``token_scores.script``; ``required``
    for special/byte/chat-template tokens).
``by_text_type``
    both coverages per text type (`pipeline.metrics.text_type` of the document's source).
``uncovered``
    the most frequent dropped tokens of the split, with a context each (first occurrence).

Pure functions of the shards and the keep set; nothing is decided here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow as pa

from .metrics import ratio, text_type

CURVE_POINTS = 40
TOP_UNCOVERED = 20
CONTEXT_CHARS = 30


@dataclasses.dataclass
class SplitTokens:
    flat_ids: np.ndarray        # original token ids of every occurrence
    doc_of_token: np.ndarray    # document index of each occurrence
    n_docs: int
    sources: list[str]          # per document
    shards: list[Path]


def load_split(shards: list[Path]) -> SplitTokens:
    from .shards import read_shards

    if not shards:
        return SplitTokens(np.zeros(0, np.int64), np.zeros(0, np.int64), 0, [], [])
    t = read_shards(shards, ["token_ids", "source"])
    col = t.column("token_ids").combine_chunks()
    flat = col.values.to_numpy(zero_copy_only=False).astype(np.int64)
    lengths = pa.compute.list_value_length(col).to_numpy(zero_copy_only=False)
    doc = np.repeat(np.arange(t.num_rows, dtype=np.int64), lengths)
    return SplitTokens(flat, doc, t.num_rows, t.column("source").to_pylist(), list(shards))


def doc_covered(st: SplitTokens, keep: np.ndarray) -> np.ndarray:
    """Per document: are all of its tokens kept?"""
    dropped = np.bincount(st.doc_of_token, weights=~keep[st.flat_ids], minlength=st.n_docs)
    return dropped == 0


def point(st: SplitTokens, keep: np.ndarray) -> dict:
    """Vocabulary size and both coverages of one keep set."""
    return {"vocab_size": int(keep.sum()),
            "occurrences": ratio(int(keep[st.flat_ids].sum()), len(st.flat_ids)),
            "documents": ratio(int(doc_covered(st, keep).sum()), st.n_docs)}


def curve(st: SplitTokens, order: np.ndarray, n_kept: int, points: int = CURVE_POINTS) -> list[dict]:
    """(size, occurrence coverage, document coverage) for prefixes of the selection order
    (``order[id]`` = position at which id was kept, -1 when dropped)."""
    rank = np.where(order >= 0, order, np.iinfo(np.int64).max)
    tok_rank = rank[st.flat_ids]
    doc_max = np.full(st.n_docs, -1, dtype=np.int64)
    np.maximum.at(doc_max, st.doc_of_token, tok_rank)
    occ_sorted, doc_sorted = np.sort(tok_rank), np.sort(doc_max)
    sizes = np.unique(np.concatenate([
        np.round(np.geomspace(1, max(n_kept, 1), points)).astype(np.int64), [n_kept]]))
    out = []
    for k in sizes.tolist():
        # prefix of size k = ids with rank < k
        out.append({"vocab_size": int(k),
                    "occurrences": ratio(int(np.searchsorted(occ_sorted, k)), len(tok_rank)),
                    "documents": ratio(int(np.searchsorted(doc_sorted, k)), st.n_docs)})
    return out


def by_script(st: SplitTokens, keep: np.ndarray, script_of_id: np.ndarray) -> list[dict]:
    occ = np.bincount(st.flat_ids, minlength=len(keep))
    rows = []
    for s in sorted(set(script_of_id[occ > 0].tolist())):
        m = (script_of_id == s) & (occ > 0)
        n, c = int(occ[m].sum()), int(occ[m & keep].sum())
        rows.append({"script": s, "occurrences": n, "covered": c, "share": ratio(c, n)})
    return sorted(rows, key=lambda r: -r["occurrences"])


def by_text_type(st: SplitTokens, keep: np.ndarray) -> list[dict]:
    covered = doc_covered(st, keep)
    types = np.asarray([text_type(s) for s in st.sources], dtype=object)
    n_tok = np.bincount(st.doc_of_token, minlength=st.n_docs)
    n_cov = np.bincount(st.doc_of_token, weights=keep[st.flat_ids], minlength=st.n_docs)
    rows = []
    for t in sorted(set(types.tolist())):
        m = types == t
        rows.append({"text_type": t, "documents": int(m.sum()),
                     "documents_covered": int(covered[m].sum()),
                     "documents_share": ratio(int(covered[m].sum()), int(m.sum())),
                     "occurrences": int(n_tok[m].sum()),
                     "occurrences_share": ratio(int(n_cov[m].sum()), int(n_tok[m].sum()))})
    return rows


def uncovered(st: SplitTokens, keep: np.ndarray, tok, top: int = TOP_UNCOVERED) -> list[dict]:
    """The most frequent dropped tokens of the split, each with its first context."""
    drop_pos = np.flatnonzero(~keep[st.flat_ids])
    if not len(drop_pos):
        return []
    ids = st.flat_ids[drop_pos]
    cnt = np.bincount(ids, minlength=len(keep))
    docs = np.bincount(np.unique(np.stack([ids, st.doc_of_token[drop_pos]]), axis=1)[0],
                       minlength=len(keep))
    cand = np.flatnonzero(cnt)
    cand = cand[np.lexsort((cand, -cnt[cand]))][:top]
    first_doc = {int(i): int(st.doc_of_token[drop_pos[np.argmax(ids == i)]]) for i in cand}
    texts = _doc_texts(st.shards, sorted(set(first_doc.values())))
    names = tok.convert_ids_to_tokens(cand.tolist())
    return [{"token_id": int(i), "token": names[j], "text": tok.decode([int(i)]),
             "count": int(cnt[i]), "documents": int(docs[i]),
             "context": _context(tok, texts[first_doc[int(i)]], int(i)),
             "source": st.sources[first_doc[int(i)]]} for j, i in enumerate(cand.tolist())]


def _doc_texts(shards: list[Path], wanted: list[int]) -> dict[int, str]:
    from .shards import read_shards

    t = read_shards(shards, ["text"])
    return {d: t.column("text")[d].as_py() for d in wanted}


def _context(tok, text: str, tid: int) -> str:
    """``…left[token]right…`` around the first occurrence of ``tid`` in ``text``."""
    enc = tok.backend_tokenizer.encode(text, add_special_tokens=False)
    if tid not in enc.ids:
        return text[:2 * CONTEXT_CHARS]
    s, e = enc.offsets[enc.ids.index(tid)]
    lo, hi = max(0, s - CONTEXT_CHARS), min(len(text), e + CONTEXT_CHARS)
    ctx = ("…" if lo else "") + text[lo:s] + "[" + text[s:e] + "]" + text[e:hi] + (
        "…" if hi < len(text) else "")
    return ctx.replace("\r", " ").replace("\n", " ⏎ ")


def coverage_figures(st: SplitTokens, keep: np.ndarray, order: np.ndarray,
                     seen_only: np.ndarray, script_of_id: np.ndarray, tok) -> dict:
    """Every figure of the module docstring for one split."""
    keep = np.asarray(keep, dtype=bool)
    chosen = point(st, keep)
    return {"documents": st.n_docs, "tokens": int(len(st.flat_ids)),
            "occurrences": chosen["occurrences"], "documents_covered": chosen["documents"],
            "chosen": chosen, "seen_only": point(st, np.asarray(seen_only, dtype=bool)),
            "curve": curve(st, np.asarray(order), int(keep.sum())),
            "by_script": by_script(st, keep, script_of_id),
            "by_text_type": by_text_type(st, keep),
            "uncovered": uncovered(st, keep, tok)}


def script_classes(scores) -> np.ndarray:
    """Per id: its script class, ``required`` for always-kept tokens, ``partial`` for tokens
    without a script (partial UTF-8)."""
    script = np.asarray(scores["script"].fill_null("partial").to_list(), dtype=object)
    req = scores["required"].is_not_null().to_numpy()
    script[req] = "required"
    return script


def seen_only_config(sc):
    """`SelectConfig` of the "seen tokens only" baseline: min_count 1, every other rule off
    (every bool rule switched off, every list and count rule emptied, whatever its name),
    except that placeholders stay: trimmers keep every special token."""
    off = {}
    for f in dataclasses.fields(sc):
        v = getattr(sc, f.name)
        if isinstance(v, bool):
            off[f.name] = False
        elif isinstance(v, list):
            off[f.name] = []
        elif isinstance(v, int) and f.name not in ("min_count", "min_doc_freq"):
            off[f.name] = 0
    off["keep_placeholders"] = True
    return dataclasses.replace(sc, **off, min_count=1, min_doc_freq=1)


def split_coverages(run, tok, scores, keep_df) -> dict:
    """``coverage.<split>`` for train, heldout and every evaluation set of ``run``."""
    from .evalsets import set_shards
    from .select import select

    keep = keep_df["keep"].to_numpy().astype(bool)
    order = keep_df["order"].fill_null(-1).to_numpy()
    seen = select(tok, scores, seen_only_config(run.cfg.select))["keep"].to_numpy()
    script = script_classes(scores)
    splits = {"train": run.paths.train_shards(), "heldout": run.paths.heldout_shards()}
    splits.update({es.name: set_shards(run.paths, es.name) for es in run.eval_sets})
    return {name: coverage_figures(load_split(sh), keep, order, seen, script, tok)
            for name, sh in splits.items()}
