"""Every figure of the report, computed from `RunData` into one JSON-able dict.

`compute(data)` returns ``(figures, views)``:

- ``figures``: numbers and short strings only. ``figures["quality"]`` goes to
  ``metrics.json["quality"]`` and the rest to ``metrics.json["report"]``; the page shows nothing
  that is not in them (every shown number carries its path in a ``data-metric`` attribute).
- ``views``: text for the page only (example contexts, token boundaries of sample sentences).

How "after" is computed, exactly and cheaply: the keep set is closed under merges, so a
document whose original tokens are all kept is tokenized identically by the pruned tokenizer
(`pipeline.sweep`); only documents holding a dropped token are re-encoded with the pruned
tokenizer. This holds for the train split too, so the text-type table covers both splits.

Korean metrics (`pipeline.metrics`) are on the held-out split; the eojeol-level ones (multi-token
share, STRR, %Pure) on its ``[score] kiwi_max_eojeol_types`` most frequent eojeol types (the
cap the score stage uses for Kiwi), recorded as ``eojeol_types`` / ``eojeol_types_total``.

Table sizes (`ROWS`) and context widths are presentation choices, not thresholds.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from .. import metrics as M
from ..shards import read_shards
from ..morph import hf_tokenize_fn, morpheme_boundaries
from ..select import REQUIRED
from .data import RunData

ROWS = {"dropped": 100, "kept_rare_per_reason": 20, "samples_changed": 8, "samples_same": 4,
        "uncovered_per_split": 20}
SAMPLE_MAX_CHARS = 160
CONTEXT_CHARS = 36
SHARD_COLUMNS = ["doc_id", "source", "text", "token_ids", "n_tokens", "n_bytes", "n_chars",
                 "n_eojeol"]

# Byte/script classes of the breakdown: (key, label). `token_class` maps a token to one.
CLASSES = (
    ("hangul_syllable", "Hangul syllables"),
    ("hangul_jamo", "Hangul jamo"),
    ("hangul_partial", "Hangul partial bytes"),
    ("latin", "Latin"),
    ("digit", "Digits"),
    ("punct", "Punctuation & symbols"),
    ("han", "Han (Hanja)"),
    ("other_script", "Other scripts"),
    ("other_partial", "Other partial bytes"),
    ("special", "Special / added"),
    ("byte", "Byte tokens"),
)
_SCRIPT_CLASS = {"hangul_syllable": "hangul_syllable", "hangul_jamo": "hangul_jamo",
                 "latin": "latin", "digit": "digit", "punct_symbol": "punct",
                 "whitespace": "punct", "han": "han"}


# --------------------------------------------------------------------------------------------
# Token display


def token_class(byte_class: str, script: str | None, hangul_only: bool) -> str:
    """The breakdown class of a token (`CLASSES`)."""
    if byte_class in ("special", "byte"):
        return byte_class
    if byte_class == "partial":
        return "hangul_partial" if hangul_only else "other_partial"
    return _SCRIPT_CLASS.get(script or "", "other_script")


_VISIBLE = str.maketrans({" ": "␣", "\n": "⏎", "\t": "⇥", "\r": "␍"})


def token_display(token_bytes: bytes | None, raw: str | None) -> tuple[str, str]:
    """``(text, kind)`` to show a token: its text with spaces made visible (kind ``text``), its
    bytes in hex when they are not valid UTF-8 on their own (``bytes``), or the raw vocab
    string of a special token (``special``)."""
    if token_bytes is None:
        return (raw or ""), "special"
    try:
        text = bytes(token_bytes).decode("utf-8")
    except UnicodeDecodeError:
        return " ".join(f"{b:02X}" for b in token_bytes), "bytes"
    shown = "".join(c if c.isprintable() or c in " \n\t\r" else f"\\x{ord(c):02x}"
                    for c in text).translate(_VISIBLE)
    return shown, "text"


class Vocab:
    """Per original id: bytes, raw string, display, class (from token_scores)."""

    def __init__(self, scores: pl.DataFrame):
        self.raw = scores["token"].to_list()
        self.bytes = scores["token_bytes"].to_list()
        self.cls = [token_class(b, s, h) for b, s, h in zip(
            scores["byte_class"].to_list(), scores["script"].to_list(),
            scores["partial_hangul_only"].to_list())]

    def display(self, i: int) -> tuple[str, str]:
        return token_display(self.bytes[i], self.raw[i])


# --------------------------------------------------------------------------------------------
# One pass over a split's shards


@dataclasses.dataclass
class SplitScan:
    unigram_before: np.ndarray
    unigram_after: np.ndarray
    by_type: dict                      # text type -> totals
    eojeols: Counter
    samples: list                      # (source, doc_id, text, changed)


def _read_shard(path: Path) -> pa.Table:
    return read_shards([path], SHARD_COLUMNS)


def _flat(ids_col) -> tuple[np.ndarray, np.ndarray]:
    """Flat token ids and the document index of each."""
    ids_col = ids_col.combine_chunks() if isinstance(ids_col, pa.ChunkedArray) else ids_col
    flat = pc.list_flatten(ids_col).to_numpy(zero_copy_only=False).astype(np.int64)
    lengths = pc.list_value_length(ids_col).fill_null(0).to_numpy(zero_copy_only=False)
    return flat, np.repeat(np.arange(len(lengths)), lengths)


def scan_split(shards: list[Path], keep: np.ndarray, pruned, *, collect_eojeols: bool,
               samples: tuple[int, int] = (0, 0)) -> SplitScan:
    """Token counts before/after, totals per text type, and (held-out) eojeol types and sample
    documents, in one pass over ``shards``."""
    n = len(keep)
    scan = SplitScan(np.zeros(n, np.int64), np.zeros(n, np.int64), {}, Counter(), [])
    heaps = {True: ([], samples[0]), False: ([], samples[1])}
    backend = pruned.tok.backend_tokenizer
    order0 = 0
    for path in shards:
        t = _read_shard(path)
        if t.num_rows == 0:
            continue
        flat, doc = _flat(t.column("token_ids"))
        changed = np.bincount(doc, weights=~keep[flat], minlength=t.num_rows) > 0
        scan.unigram_before += np.bincount(flat, minlength=n)
        scan.unigram_after += np.bincount(flat[~changed[doc]], minlength=n)
        n_after = t.column("n_tokens").to_numpy().astype(np.int64)
        texts = t.column("text").to_pylist()
        idx = np.flatnonzero(changed)
        if len(idx):
            encs = backend.encode_batch_fast([texts[i] for i in idx], add_special_tokens=False)
            n_after[idx] = [len(e.ids) for e in encs]
            new_ids = np.fromiter((i for e in encs for i in e.ids), dtype=np.int64)
            scan.unigram_after += np.bincount(pruned.new_to_old[new_ids], minlength=n)
        _add_types(scan.by_type, t, n_after, changed)
        if collect_eojeols:
            for text in texts:
                scan.eojeols.update(text.split())
        _pick_samples(heaps, t, texts, changed, order0)
        order0 += t.num_rows
    scan.samples = _samples(heaps)
    return scan


def _add_types(by_type: dict, t: pa.Table, n_after: np.ndarray, changed: np.ndarray) -> None:
    df = pl.DataFrame({
        "type": [M.text_type(s) for s in t.column("source").to_pylist()],
        "documents": np.ones(t.num_rows, np.int64),
        "changed_documents": changed.astype(np.int64),
        "eojeol": t.column("n_eojeol").to_numpy().astype(np.int64),
        "bytes": t.column("n_bytes").to_numpy().astype(np.int64),
        "chars": t.column("n_chars").to_numpy().astype(np.int64),
        "tokens_before": t.column("n_tokens").to_numpy().astype(np.int64),
        "tokens_after": n_after,
    })
    for row in df.group_by("type").sum().iter_rows(named=True):
        acc = by_type.setdefault(row.pop("type"), Counter())
        acc.update(row)


def _pick_samples(heaps: dict, t: pa.Table, texts: list[str], changed: np.ndarray,
                  order0: int) -> None:
    """Keep the longest documents of at most `SAMPLE_MAX_CHARS` characters, per changed /
    identical, in bounded heaps of ``(n_chars, -order, ...)``."""
    n_chars = t.column("n_chars").to_numpy()
    sources, ids = t.column("source").to_pylist(), t.column("doc_id").to_pylist()
    for i in np.flatnonzero(n_chars <= SAMPLE_MAX_CHARS).tolist():
        heap, size = heaps[bool(changed[i])]
        item = (int(n_chars[i]), -(order0 + i), sources[i], ids[i], texts[i])
        if len(heap) < size:
            heapq.heappush(heap, item)
        elif size and item > heap[0]:
            heapq.heapreplace(heap, item)


def _samples(heaps: dict) -> list:
    """(source, doc_id, text, changed) in corpus order, changed documents first."""
    out = []
    for changed in (True, False):
        for _, _order, source, doc_id, text in sorted(heaps[changed][0], key=lambda x: -x[1]):
            out.append((source, doc_id, text, changed))
    return out


# --------------------------------------------------------------------------------------------
# Sections


def _r(x):
    """Floats (recursively) to 10 significant digits: readable JSON, tiny values kept."""
    if isinstance(x, float):
        return float(f"{x:.10g}")
    if isinstance(x, dict):
        return {k: _r(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_r(v) for v in x]
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return _r(float(x))
    return x


def quality_section(data: RunData, held: SplitScan) -> dict:
    """Korean metrics before/after on the held-out split (`pipeline.metrics`)."""
    s = data.scores
    keys = [M.token_key(b, r) for b, r in zip(s["token_bytes"].to_list(), s["token"].to_list())]
    is_ko = (s["kiwi_single_morpheme"] | s["kiwi_valid_word"]).to_numpy()
    totals = Counter()
    for acc in held.by_type.values():
        totals.update(acc)
    cap = data.cfg.score.kiwi_max_eojeol_types
    ranked = sorted(held.eojeols.items(), key=lambda kv: (-kv[1], kv[0]))
    types = ranked[:cap] if cap else ranked
    words, counts = [w for w, _ in types], [c for _, c in types]
    bounds = morpheme_boundaries(words) if words else []
    out = {}
    for side, tok, unigram, n_tok in (
            ("before", data.tok, held.unigram_before, totals["tokens_before"]),
            ("after", data.pruned.tok, held.unigram_after, totals["tokens_after"])):
        ej = M.tokenize_eojeols(words, counts, hf_tokenize_fn(tok), bounds)
        st = M.SampleTokenization(n_tok, totals["bytes"], totals["chars"], totals["eojeol"],
                                  unigram, len(tok), ej)
        out[side] = M.quality(st, counts, keys, is_ko)
    out.update(documents=totals["documents"], eojeol=totals["eojeol"], eojeol_types=len(types),
               eojeol_types_total=len(held.eojeols), split="heldout",
               definitions=M.DEFINITIONS)
    return out


def text_type_rows(scans: dict[str, SplitScan]) -> list[dict]:
    """Fertility and bytes/chars per token by (text type, split), before and after."""
    rows = []
    for split, scan in scans.items():
        for typ in sorted(scan.by_type):
            a = scan.by_type[typ]
            rows.append(_type_row(typ, split, a))
        total = Counter()
        for a in scan.by_type.values():
            total.update(a)
        if scan.by_type:
            rows.append({**_type_row("(all)", split, total), "total": True})
    return rows


def _type_row(typ: str, split: str, a: Counter) -> dict:
    b, f = a["tokens_before"], a["tokens_after"]
    return {"text_type": typ, "split": split, "documents": a["documents"],
            "changed_documents": a["changed_documents"], "eojeol": a["eojeol"],
            "bytes": a["bytes"], "chars": a["chars"], "tokens_before": b, "tokens_after": f,
            "tokens_per_eojeol_before": M.tokens_per_eojeol(b, a["eojeol"]),
            "tokens_per_eojeol_after": M.tokens_per_eojeol(f, a["eojeol"]),
            "bytes_per_token_before": M.bytes_per_token(a["bytes"], b),
            "bytes_per_token_after": M.bytes_per_token(a["bytes"], f),
            "chars_per_token_before": M.chars_per_token(a["chars"], b),
            "chars_per_token_after": M.chars_per_token(a["chars"], f),
            "token_change": M.ratio(f - b, b), "total": False}


def breakdown_rows(data: RunData, vocab: Vocab) -> list[dict]:
    """Kept vs dropped per byte/script class, with the train occurrences they account for."""
    df = pl.DataFrame({"cls": vocab.cls, "keep": data.keep,
                       "count": data.scores["count"].to_numpy()})
    n_dropped = int((~data.keep).sum())
    total_count = int(df["count"].sum())
    agg = {r["cls"]: r for r in df.group_by("cls").agg(
        pl.len().alias("vocab"), pl.col("keep").sum().alias("kept"),
        pl.col("count").sum().alias("count"),
        pl.col("count").filter(~pl.col("keep")).sum().alias("dropped_count"),
    ).iter_rows(named=True)}
    rows = []
    for key, label in CLASSES:
        r = agg.get(key, {"vocab": 0, "kept": 0, "count": 0, "dropped_count": 0})
        dropped = r["vocab"] - r["kept"]
        rows.append({"class": key, "label": label, "vocab": r["vocab"], "kept": r["kept"],
                     "dropped": dropped, "kept_share": M.ratio(r["kept"], r["vocab"]),
                     "share_of_dropped": M.ratio(dropped, n_dropped),
                     "train_occurrences": r["count"],
                     "train_share": M.ratio(r["count"], total_count),
                     "dropped_train_occurrences": r["dropped_count"] or 0})
    return rows


def curves_section(data: RunData, quality: dict) -> dict | None:
    """The sweep table with the chosen point and the two series through it."""
    if data.sweep is None or data.sweep.height == 0:
        return None
    rows = data.sweep.to_dicts()
    chosen = next((r for r in rows if r["point"] == "chosen"), rows[0])
    for r in rows:
        r["series"] = ("chosen" if r["point"] == "chosen" else r["grid"] if "grid" in r else
                       "min_count" if r["target_vocab_size"] == chosen["target_vocab_size"]
                       else "target_vocab_size")
    return {"points": rows, "chosen": chosen,
            "original": {"vocab_size": len(data.tok),
                         "tokens_per_eojeol": quality["before"]["tokens_per_eojeol"]}}


# --------------------------------------------------------------------------------------------
# Token tables


def dropped_rows(data: RunData, vocab: Vocab, held_counts: np.ndarray) -> list[dict]:
    """The most frequent dropped tokens (train + held-out occurrences)."""
    cnt = data.scores["count"].to_numpy()
    dfreq = data.scores["doc_freq"].to_numpy()
    freq = cnt + held_counts
    ids = np.flatnonzero(~data.keep & (freq > 0))
    ids = ids[np.lexsort((ids, -freq[ids]))][:ROWS["dropped"]]
    return [{**_token_cols(vocab, int(i)), "reason": data.reasons[i], "train_count": int(cnt[i]),
             "train_docs": int(dfreq[i]), "heldout_count": int(held_counts[i])} for i in ids]


def kept_rare_rows(data: RunData, vocab: Vocab, held_counts: np.ndarray) -> tuple[list, dict]:
    """Kept tokens below the frequency thresholds, the top ones of each reason; and how many
    there are per reason."""
    s, th = data.scores, data.thresholds
    cnt, dfreq = s["count"].to_numpy(), s["doc_freq"].to_numpy()
    rare = data.keep & ((cnt < th.get("min_count", 0)) | (dfreq < th.get("min_doc_freq", 0)))
    reasons = np.asarray(data.reasons, dtype=object)
    tags, langs = s["kiwi_tag"].to_list(), s["lang"].to_list()
    rows, per_reason = [], {}
    for reason in sorted(set(reasons[rare].tolist()), key=lambda r: (r in REQUIRED, r)):
        ids = np.flatnonzero(rare & (reasons == reason))
        per_reason[reason] = len(ids)
        ids = ids[np.lexsort((ids, -cnt[ids], -held_counts[ids]))][:ROWS["kept_rare_per_reason"]]
        rows += [{**_token_cols(vocab, int(i)), "reason": reason, "train_count": int(cnt[i]),
                  "heldout_count": int(held_counts[i]), "kiwi_tag": tags[i], "lang": langs[i],
                  "required": reason in REQUIRED} for i in ids]
    return rows, per_reason


def _token_cols(vocab: Vocab, i: int) -> dict:
    text, kind = vocab.display(i)
    return {"token_id": i, "token": text, "kind": kind, "raw": vocab.raw[i] or "",
            "class": vocab.cls[i]}


def find_contexts(shards: list[Path], targets: list[int], tok) -> dict[int, dict]:
    """For each target id, its first occurrence in ``shards`` (in order) as a text snippet."""
    out: dict[int, dict] = {}
    want = np.asarray(sorted(set(targets)), dtype=np.int64)
    for path in shards:
        if len(out) == len(want):
            break
        t = _read_shard(path)
        flat, doc = _flat(t.column("token_ids"))
        starts = np.concatenate([[0], np.cumsum(np.bincount(doc, minlength=t.num_rows))])
        for pos in np.flatnonzero(np.isin(flat, want)).tolist():
            tid = int(flat[pos])
            if tid in out:
                continue
            d = int(doc[pos])
            out[tid] = _snippet(t, d, pos - int(starts[d]), tid, tok)
    return out


def _snippet(t: pa.Table, d: int, k: int, tid: int, tok) -> dict:
    text = t.column("text")[d].as_py()
    enc = tok.backend_tokenizer.encode(text, add_special_tokens=False)
    if k >= len(enc.ids) or enc.ids[k] != tid:
        k = enc.ids.index(tid) if tid in enc.ids else 0
    s, e = enc.offsets[k] if enc.offsets else (0, 0)
    lo, hi = max(0, s - CONTEXT_CHARS), min(len(text), e + CONTEXT_CHARS)
    return {"left": ("…" if lo > 0 else "") + _oneline(text[lo:s]), "mid": _oneline(text[s:e]),
            "right": _oneline(text[e:hi]) + ("…" if hi < len(text) else ""),
            "source": t.column("source")[d].as_py()}


def _oneline(s: str) -> str:
    return s.replace("\r", " ").replace("\n", " ⏎ ")


def sample_views(samples: list, data: RunData, vocab: Vocab) -> tuple[list[dict], list[dict]]:
    """(figures rows, page views) of the sample held-out sentences, before and after."""
    rows, views = [], []
    for source, doc_id, text, changed in samples:
        before = _boxes(data.tok, text, None, vocab)
        after = _boxes(data.pruned.tok, text, data.pruned.new_to_old, vocab)
        rows.append({"source": source, "doc_id": doc_id, "changed": changed,
                     "tokens_before": len(before), "tokens_after": len(after)})
        views.append({"text": text, "before": before, "after": after})
    return rows, views


def _boxes(tok, text: str, new_to_old: np.ndarray | None, vocab: Vocab) -> list[dict]:
    enc = tok.backend_tokenizer.encode(text, add_special_tokens=False)
    out = []
    for i in enc.ids:
        old = int(new_to_old[i]) if new_to_old is not None else int(i)
        shown, kind = vocab.display(old)
        out.append({"t": shown, "k": kind, "id": old})
    return out


# --------------------------------------------------------------------------------------------
# Summary and prune figures


def summary_section(data: RunData, quality: dict) -> dict:
    sel_h = data.select_metrics.get("heldout", {})
    n_before, n_after = len(data.tok), int(data.keep.sum())
    s = {"run": data.cfg.run, "tokenizer": data.cfg.tokenizer.source,
         "corpus": data.run.source.describe(), "vocab_before": n_before, "vocab_after": n_after,
         "vocab_dropped": n_before - n_after, "vocab_kept_share": M.ratio(n_after, n_before),
         "heldout_identical_share": sel_h.get("identical_share_selected"),
         "heldout_documents": quality["documents"],
         "tokens_per_eojeol_before": quality["before"]["tokens_per_eojeol"],
         "tokens_per_eojeol_after": quality["after"]["tokens_per_eojeol"],
         "model": data.cfg.prune.model, "model_description": _model_description(data),
         "pruned_tokenizer": data.pruned.origin,
         "prune_state": ("pruned" if data.prune is not None else
                         "stale" if data.prune_stale else "not pruned yet")}
    s.update(prune_figures(data))
    return s


def _model_description(data: RunData) -> str:
    info = (data.prune or {}).get("prune", {})
    if info.get("description"):
        lic = info.get("license")
        return info["description"] + (f"; license: {lic}" if lic else "")
    from ..models import BUILTINS

    b = BUILTINS.get(data.cfg.prune.model)
    return f"{b.description}; license: {b.license}" if b else data.cfg.prune.model


def model_quality_section(data: RunData) -> dict | None:
    """Bits per byte, top-1 agreement and greedy continuations from the prune stage's
    ``model_eval`` (None when not pruned or not evaluated)."""
    ev = (data.prune or {}).get("model_eval") or {}
    h = ev.get("heldout")
    if not h:
        return None
    rows = []
    for key, label in (("bits_per_byte", "all held-out text (estimate)"),
                       ("bits_per_byte_identical", "documents tokenized identically"),
                       ("bits_per_byte_changed", "documents whose tokenization changed")):
        r = h.get(key) or {}
        b, a = r.get("before"), r.get("after")
        rows.append({"key": key, "label": label, "documents": r.get("documents"),
                     "before": b, "after": a,
                     "delta_share": (a / b - 1) if a is not None and b else None})
    g = ev.get("greedy") or {}
    return {"bpb": rows, "top1_agreement": h.get("top1_agreement"),
            "top1_positions": h.get("top1_positions"),
            "documents_evaluated": h.get("documents_evaluated"),
            "bytes_evaluated": h.get("bytes_evaluated"), "tokens_budget": h.get("max_tokens"),
            "greedy_agreement": g.get("agreement"), "greedy": g.get("prompts") or []}


def coverage_section(data: RunData) -> dict | None:
    """The select stage's ``coverage.<split>`` (`pipeline.coverage`) per split, with the
    tokenizer figures of the evaluation sets (``eval.<set>``) and, once pruned, their bits per
    byte (``model_eval.<split>``). None for a select stage from before coverage existed."""
    cov = data.select_metrics.get("coverage")
    if not cov:
        return None
    ev = data.select_metrics.get("eval") or {}
    mev = (data.prune or {}).get("model_eval") or {}
    names = ["train", "heldout"] + sorted(k for k in cov if k not in ("train", "heldout"))
    rows, curves, scripts, types, uncovered = [], {}, [], [], []
    for name in names:
        c = cov.get(name)
        if not c:
            continue
        e, bpb = ev.get(name) or {}, ((mev.get(name) or {}).get("bits_per_byte") or {})
        rows.append({"split": name, "kind": "counted" if name == "train" else
                     "held out" if name == "heldout" else "evaluation set",
                     "documents": c["documents"], "tokens": c["tokens"],
                     "occurrences": c["occurrences"], "documents_covered": c["documents_covered"],
                     "seen_only_vocab": c["seen_only"]["vocab_size"],
                     "seen_only_occurrences": c["seen_only"]["occurrences"],
                     "seen_only_documents": c["seen_only"]["documents"],
                     "tokens_per_eojeol_before": e.get("tokens_per_eojeol_before"),
                     "tokens_per_eojeol_after": e.get("tokens_per_eojeol_after"),
                     "bpb_before": bpb.get("before"), "bpb_after": bpb.get("after"),
                     "bpb_delta_share": bpb.get("delta_share")})
        curves[name] = {"points": c["curve"], "chosen": c["chosen"], "seen_only": c["seen_only"]}
        scripts += [{"split": name, **r} for r in c["by_script"]]
        types += [{"split": name, **r} for r in c["by_text_type"]]
        uncovered += [{"split": name, **r} for r in c["uncovered"][:ROWS["uncovered_per_split"]]]
    return {"splits": rows, "curves": curves, "by_script": scripts, "by_text_type": types,
            "uncovered": uncovered, "eval_sets": [n for n in names if n not in ("train", "heldout")]}


def adapt_section(data: RunData) -> dict | None:
    """The adapt stage's figures (``adapt.*``): one row per set (held-out first) with tokens
    per eojeol and bits per byte of each model, the training figures and the loss curve;
    None when the run is not adapted (or the adaptation is stale)."""
    a = (data.adapt or {}).get("adapt")
    if not a:
        return None
    fert, bpb = a.get("tokens_per_eojeol") or {}, a.get("bits_per_byte") or {}
    names = ["heldout"] + sorted(n for n in fert if n != "heldout")
    rows = [{"set": n, "fertility": fert.get(n) or {}, "bpb": bpb.get(n) or {}}
            for n in names if n in fert]
    tr = a.get("train") or {}
    return {"rows": rows, "new_tokens": a.get("new_tokens") or {}, "vocab": a.get("vocab") or {},
            "train": {k: v for k, v in tr.items() if k not in ("loss_curve", "evals")},
            "curve": [[p["step"], p["loss"]] for p in tr.get("loss_curve") or []],
            "evals": [[p["step"], p["bits_per_byte"]] for p in tr.get("evals") or []]}


def prune_figures(data: RunData) -> dict:
    """Model figures from the prune stage, or ``pruned: False`` ("not pruned yet")."""
    p = data.prune
    if p is None:
        return {"pruned": False, "demo_model": data.cfg.prune.model == "demo"}
    params, size = p.get("params", {}), p.get("bytes", {})
    pb, pa_ = params.get("before"), params.get("after")
    bb, ba = size.get("before"), size.get("after")
    info, verify = p.get("prune", {}), p.get("verify", {})
    return {
        "pruned": True,
        "demo_model": bool(info.get("demo_model", data.cfg.prune.model == "demo")),
        "params_before": pb, "params_after": pa_,
        "params_saved": pb - pa_ if pb is not None and pa_ is not None else None,
        "params_saved_share": M.ratio(pb - pa_, pb) if pb and pa_ is not None else None,
        "bytes_before": bb, "bytes_after": ba,
        "mb_saved": (bb - ba) / 1e6 if bb is not None and ba is not None else None,
        "identical_ratio_verified": p.get("heldout", {}).get("identical_ratio"),
        "logits_max_abs_diff": p.get("logits", {}).get("max_abs_diff"),
        "fertility_before_verified": p.get("fertility", {}).get("before"),
        "fertility_after_verified": p.get("fertility", {}).get("after"),
        "verify_passed": verify.get("passed"),
        "architecture": info.get("architecture"), "dtype": info.get("dtype"),
    }


def flatten(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Scalar leaves of a nested dict as (dotted path, value), sorted by path."""
    out = []
    for k in sorted(d):
        v, path = d[k], f"{prefix}{k}"
        if isinstance(v, dict):
            out += flatten(v, path + ".")
        elif not isinstance(v, list):
            out.append((path, v))
    return out


# --------------------------------------------------------------------------------------------


def compute(data: RunData) -> tuple[dict, dict]:
    """All figures and page views of the report (module docstring)."""
    vocab = Vocab(data.scores)
    held = scan_split(data.paths.heldout_shards(), data.keep, data.pruned, collect_eojeols=True,
                      samples=(ROWS["samples_changed"], ROWS["samples_same"]))
    train = scan_split(data.paths.train_shards(), data.keep, data.pruned, collect_eojeols=False)
    quality = quality_section(data, held)
    dropped = dropped_rows(data, vocab, held.unigram_before)
    kept_rare, per_reason = kept_rare_rows(data, vocab, held.unigram_before)
    contexts = find_contexts(data.paths.heldout_shards() + data.paths.train_shards(),
                             [r["token_id"] for r in dropped], data.tok)
    samples, sample_boxes = sample_views(held.samples, data, vocab)
    figures = {
        "quality": quality,
        "summary": summary_section(data, quality),
        "thresholds": data.thresholds,
        "curves": curves_section(data, quality),
        "model_quality": model_quality_section(data),
        "adapt": adapt_section(data),
        "coverage": coverage_section(data),
        "breakdown": breakdown_rows(data, vocab),
        "text_types": text_type_rows({"heldout": held, "train": train}),
        "tables": {"dropped": dropped, "kept_rare": kept_rare,
                   "kept_rare_per_reason": per_reason, "samples": samples,
                   "dropped_in_heldout": int((held.unigram_before[~data.keep] > 0).sum())},
    }
    views = {"contexts": {str(k): v for k, v in contexts.items()}, "samples": sample_boxes,
             "prune_metrics": flatten(data.prune) if data.prune else []}
    return _r(figures), views
