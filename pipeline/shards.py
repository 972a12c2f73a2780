"""Documents -> NFC -> language filter -> held-out split -> Arrow shards of token ids.

One streaming pass over the corpus, memory bounded by one batch and one open shard writer
whatever the corpus size. Per batch:

1. NFC-normalize each document; skip empty ones.
2. Language filter, script first: a document at least ``langid.keep_hangul_share`` of whose
   characters are Hangul is kept without asking fastText (`script_decides`; the filter would
   keep it whatever fastText said, so this only saves time). The others go to fastText
   (lid.176); those whose Korean probability is below ``langid.min_korean_prob`` are dropped
   and counted, unless at least ``keep_hangul_share`` of their letters are Hangul (fastText is
   unreliable on very short or jamo-only text such as ``ㅋㅋㅋ``). The ``lang_by`` column
   records which decided (``script`` / ``fasttext``; ``off`` with ``min_korean_prob = 0``, when
   fastText is not run at all).
3. The held-out split is decided by a salted hash of the document's *group*, never by row, so a
   group is entirely counted or entirely held out.
4. Token ids come from `pipeline.pieces`: each distinct piece of text (a word with the
   space before it) is tokenized once per run and documents are assembled from the cached
   pieces, with exactly the ids of ``encode_batch_fast`` on the whole documents.
5. Concurrency: per batch, fastText runs in a child process (`pipeline.langid_worker`) and
   the tokenizer (Rust, both cores, GIL released) in worker threads, two batches at once
   (`INFLIGHT`), while the main thread files the previous batches into shards. Every
   non-blank document is tokenized and the filter drops rows afterwards (few are dropped), so
   neither waits for the other. Results do not depend on timing: batches are filed in order.

Shard schema (Arrow IPC files ``train-NNNNN.arrow`` / ``heldout-NNNNN.arrow``): see `SCHEMA`.
Special tokens are not added (``add_special_tokens=False``): counts are of text tokens.

It does not count tokens (see `pipeline.count`).
"""

from __future__ import annotations

import collections
import functools
import hashlib
import re
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .corpus import DocBatch, Source
from .errors import InputError
from .langid_worker import LangidWorker
from .pieces import _WIDE_SPACES, PieceEncoder, piece_encoder, utf8_buffers

SCHEMA = pa.schema([
    ("doc_id", pa.string()),
    ("group", pa.string()),
    ("source", pa.string()),
    ("text", pa.string()),
    ("token_ids", pa.list_(pa.int32())),
    ("n_tokens", pa.int32()),
    ("n_bytes", pa.int32()),
    ("n_chars", pa.int32()),
    ("n_eojeol", pa.int32()),
    ("lang", pa.string()),
    ("ko_prob", pa.float32()),
    ("lang_by", pa.string()),
])

# Hangul for the share-of-letters rescue; letters are what str.isalpha() calls letters (\pL)
HANGUL_RE = re.compile("[\uAC00-\uD7A3\u1100-\u11FF\u3130-\u318F\uA960-\uA97F\uD7B0-\uD7FF]")


LANG_BY = pa.array(["script", "fasttext", "off"])  # what decided a document's language


def hangul_counts(arr: pa.StringArray) -> np.ndarray:
    """Per string: how many of its characters are Hangul letters (syllables U+AC00-D7A3, jamo
    U+1100-11FF, compatibility jamo U+3131-318E), read straight from the UTF-8 bytes.

    Equal to ``pc.count_substring_regex`` with a character class of those three ranges (a
    property test checks it), about 5x faster. Every character counted is a letter and matches
    `HANGUL_RE`.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type != pa.string():
        arr = arr.cast(pa.string())
    n = len(arr)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    data, off = utf8_buffers(arr)
    data = data[off[0]:off[-1]]
    off = off - off[0]
    # 3-byte sequences led by E1..ED hold every Hangul letter; b1 narrows the block
    cand = np.flatnonzero((data - np.uint8(0xE1)) <= np.uint8(0x0C))
    b0, b1 = data[cand], data[cand + 1]
    ok = ((b0 == 0xEB) | (b0 == 0xEC) | ((b0 == 0xEA) & (b1 >= 0xB0))    # U+AC00..
          | ((b0 == 0xED) & (b1 < 0x9E))                                  # ..U+D77F
          | ((b0 == 0xE1) & (b1 >= 0x84) & (b1 <= 0x87)))                 # U+1100..11FF
    edge = (b0 == 0xED) & (b1 == 0x9E)                                    # U+D780..D7BF
    ok[edge] = data[cand[edge] + 2] <= 0xA3                               # ..U+D7A3
    compat = (b0 == 0xE3) & (b1 >= 0x84) & (b1 <= 0x86)                   # U+3100..31BF
    if compat.any():
        i = cand[compat]
        low = ((data[i + 1].astype(np.int32) & 0x3F) << 6) | (data[i + 2] & 0x3F)
        ok[compat] = (low >= 0x131) & (low <= 0x18E)                      # U+3131..318E
    before = np.concatenate([[0], np.cumsum(ok, dtype=np.int64)])
    return np.diff(before[np.searchsorted(cand, off)])


# What ``str.split()`` splits on: ASCII bytes, and the two- and three-byte characters (pieces'
# White_Space, as big-endian UTF-8 codes) with their lead bytes
_WS_ASCII = np.zeros(256, bool)
_WS_ASCII[[0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x20]] = True
_WS_LEAD = np.zeros(256, bool)
_WS_LEAD[[0xC2, 0xE1, 0xE2, 0xE3]] = True


def word_counts(arr: pa.StringArray) -> np.ndarray:
    """Per string: ``len(s.split())``, its number of whitespace-separated words (eojeol; 0 for
    a null), read from the UTF-8 bytes: a word starts at a non-space byte after a space or at
    a string's start. Strings holding a wide space character (U+00A0, U+3000, ...) are split
    by Python. A property test checks it against ``str.split``."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type != pa.string():
        arr = arr.cast(pa.string())
    data, off = utf8_buffers(arr)
    data = data[off[0]:off[-1]]
    off = off - off[0]
    ws = _WS_ASCII[data]
    start = ~ws
    start[1:] &= ws[:-1]
    first = off[:-1][off[:-1] < off[1:]]  # a string's first byte follows nothing
    start[first] = ~ws[first]
    at = np.searchsorted(np.flatnonzero(start), off)  # word starts before each offset
    n = np.diff(at).astype(np.int32)  # a null has no bytes: 0
    lead = np.flatnonzero(_WS_LEAD[data[:-1]])
    if len(lead):
        b = [data[np.minimum(lead + k, len(data) - 1)].astype(np.int64) for k in range(3)]
        code2, code3 = (b[0] << 8) | b[1], (b[0] << 16) | (b[1] << 8) | b[2]
        hit = lead[np.isin(code2, _WIDE_SPACES) | np.isin(code3, _WIDE_SPACES)]
        for d in np.unique(np.searchsorted(off, hit, side="right") - 1).tolist():
            n[d] = len(arr[d].as_py().split())
    return n


def script_decides(arr: pa.StringArray, share: float) -> np.ndarray:
    """Documents the language filter keeps on their script alone: at least ``share`` of their
    characters (not only letters) are Hangul letters, and at least one is. `_korean_mask`
    keeps every such document whatever fastText says (its Hangul share of *letters* is at
    least as high), so fastText is not asked. ``share >= 1`` decides none (the rescue is off).
    """
    if share >= 1:
        return np.zeros(len(arr), dtype=bool)
    h = hangul_counts(arr)
    return (h > 0) & (h >= share * pc.utf8_length(arr).to_numpy(zero_copy_only=False))


def read_shards(paths: list[Path], columns: list[str]) -> pa.Table:
    """The given columns of Arrow shard files, concatenated in order (memory-mapped)."""
    return pa.concat_tables([pa.ipc.open_file(pa.memory_map(str(p))).read_all().select(columns)
                             for p in paths])


@functools.lru_cache(maxsize=1 << 16)
def is_heldout(group: str, salt: str, fraction: float) -> bool:
    """Deterministic group-level split: hash(salt, group) uniform in [0, 1) < fraction."""
    if fraction <= 0:
        return False
    h = hashlib.blake2b(f"{salt}\x00{group}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64 < fraction


class ShardWriter:
    """Writes record batches to ``<prefix>-NNNNN.arrow``, rolling over at doc/byte limits."""

    def __init__(self, out_dir: Path, prefix: str, max_docs: int, max_bytes: int):
        self.out_dir, self.prefix = out_dir, prefix
        self.max_docs, self.max_bytes = max_docs, max_bytes
        self.index, self.docs, self.bytes, self.writer, self._sink = 0, 0, 0, None, None

    def write(self, table: pa.Table) -> None:
        start = 0
        n = table.num_rows
        nbytes = table.column("n_bytes").to_numpy()
        while start < n:
            if self.writer is None:
                self._open()
            room = self.max_docs - self.docs
            # docs that fit under the byte limit (at least one, so a huge doc still goes somewhere)
            cum = np.cumsum(nbytes[start:start + room])
            fit = int(np.searchsorted(cum, self.max_bytes - self.bytes, side="right"))
            take = max(1, min(room, fit)) if self.docs == 0 else min(room, fit)
            if take == 0:
                self._close()
                continue
            piece = table.slice(start, take)
            self.writer.write_table(piece)
            self.docs += take
            self.bytes += int(cum[take - 1])
            start += take
            if self.docs >= self.max_docs or self.bytes >= self.max_bytes:
                self._close()

    def _open(self) -> None:
        path = self.out_dir / f"{self.prefix}-{self.index:05d}.arrow"
        self._sink = pa.OSFile(str(path), "wb")
        self.writer = pa.ipc.new_file(self._sink, SCHEMA)

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self._sink.close()
            self.writer = None
            self.index += 1
            self.docs = self.bytes = 0

    def close(self) -> None:
        self._close()

    def abort(self) -> None:
        """Close the open shard file without finishing it, ignoring errors (the stage failed)."""
        for f in (self.writer, self._sink):
            try:
                if f is not None:
                    f.close()
            except Exception:  # noqa: BLE001 - already failing; the temp dir is removed
                pass
        self.writer = self._sink = None


class _Stats:
    def __init__(self, n_examples: int):
        self.read = self.empty = self.dropped = self.kept_by_script = 0
        self.decided_by_script = self.asked_fasttext = 0
        self.dropped_langs: dict[str, int] = {}
        self.examples: list[dict] = []
        self.n_examples = n_examples
        self.split = {s: {"documents": 0, "bytes": 0, "chars": 0, "eojeol": 0, "tokens": 0}
                      for s in ("train", "heldout")}


def _normalize(batch: DocBatch, stats: _Stats) -> tuple[list[str], list[int]]:
    """NFC-normalize; skip blank documents. Returns the texts and their positions in the batch."""
    nfc = unicodedata.normalize
    texts = [nfc("NFC", t).lstrip("\ufeff") for t in batch.texts]  # a byte-order mark is not text
    keep_idx = [i for i, t in enumerate(texts) if t and not t.isspace()]
    if len(keep_idx) < len(texts):
        texts = [texts[i] for i in keep_idx]
    stats.read += len(batch)
    stats.empty += len(batch) - len(texts)
    return texts, keep_idx


def _korean_mask(texts: list[str], ko: np.ndarray, cfg, stats: _Stats) -> np.ndarray:
    """Documents kept by the language filter among those fastText read: Korean probability, or
    the Hangul-share rescue (share of letters)."""
    lc = cfg.langid
    keep = ko >= lc.min_korean_prob
    if not keep.all() and lc.keep_hangul_share < 1:
        doubt = np.flatnonzero(~keep)
        # few documents, short ones mostly: per-character Python beats compiling an RE2 \pL
        # class per batch (~5 ms each)
        hangul = np.array([len(HANGUL_RE.findall(texts[i])) for i in doubt.tolist()])
        letters = np.array([sum(map(str.isalpha, texts[i])) for i in doubt.tolist()])
        ok = (letters > 0) & (hangul >= lc.keep_hangul_share * letters)
        stats.kept_by_script += int(ok.sum())
        keep[doubt[ok]] = True
    return keep


def _select_rows(batch: DocBatch, texts: list[str], keep_idx: list[int], by_script, lang_result,
                 cfg, stats: _Stats, text_arr: pa.StringArray | None = None):
    """Apply the language filter and the held-out split to one normalized batch.

    ``by_script`` is `script_decides` of ``texts`` (None: the filter is off) and
    ``lang_result`` fastText's `langid.classify` of the other texts, in order; ``text_arr``
    (optional) is ``texts`` as an Arrow array.
    Returns ``(cols, keep, heldout)``: the columns of every text, the filter's decision and
    the held-out flag of each; or None when the filter drops every document.
    """
    n = len(texts)
    langs, ko = [""] * n, np.full(n, np.nan, dtype=np.float32)
    if by_script is None:  # filter off
        keep, lang_by = np.ones(n, dtype=bool), np.full(n, 2, dtype=np.int8)
    else:
        keep, lang_by = by_script.copy(), (~by_script).astype(np.int8)
        stats.kept_by_script += int(by_script.sum())
        stats.decided_by_script += int(by_script.sum())
        asked = np.flatnonzero(~by_script)
        stats.asked_fasttext += len(asked)
        if len(asked):
            sub_langs, _, sub_ko = lang_result
            for j, lang in zip(asked.tolist(), sub_langs):
                langs[j] = lang
            ko[asked] = sub_ko
            keep[asked] = _korean_mask([texts[j] for j in asked.tolist()], sub_ko, cfg, stats)
    drop = np.flatnonzero(~keep)
    for j in drop.tolist():
        i = keep_idx[j]
        stats.dropped += 1
        stats.dropped_langs[langs[j]] = stats.dropped_langs.get(langs[j], 0) + 1
        if len(stats.examples) < stats.n_examples:
            stats.examples.append({"doc_id": batch.ids[i], "source": batch.sources[i],
                                   "lang": langs[j], "ko_prob": round(float(ko[j]), 4),
                                   "text": texts[j][:300]})
    if len(drop) == n:
        return None
    whole = len(keep_idx) == len(batch)  # no blank document: batch rows are texts' rows
    pick = (lambda xs: xs) if whole else (lambda xs: [xs[i] for i in keep_idx])  # noqa: E731
    groups = str_array(pick(batch.groups))
    cols = {"doc_id": pick(batch.ids), "group": groups, "source": pick(batch.sources),
            "text": texts if text_arr is None else text_arr, "lang": langs, "ko_prob": ko,
            "lang_by": pa.DictionaryArray.from_arrays(pa.array(lang_by), LANG_BY).cast(
                pa.string())}
    # the split per distinct group of the batch, spread back over its documents
    codes = groups.dictionary_encode()
    held_group = np.fromiter((is_heldout(g, cfg.heldout.salt, cfg.heldout.fraction)
                              for g in codes.dictionary.to_pylist()), dtype=bool,
                             count=len(codes.dictionary))
    heldout = held_group[codes.indices.to_numpy(zero_copy_only=False)]
    return cols, keep, heldout


# Batches tokenizing at once. Measured by alternating rounds on NSMC (2-core VM, medians of 3):
# analyze / bare encode_batch_fast 0.498x -> 0.598x (Tekken), 0.588x -> 0.631x (Gemma 3) going
# from 1 to 2; memory grows by one batch, whatever the corpus size.
INFLIGHT = 2


def _encode(encoder, texts, source: str = "") -> pa.ListArray:
    """Token ids of ``texts`` (a list or an Arrow string array) through ``encoder``, a
    `pipeline.pieces.PieceEncoder` (or a `tokenizers.Tokenizer`, wrapped in one)."""
    if not isinstance(encoder, PieceEncoder):
        encoder = piece_encoder(encoder)
    try:
        return encoder.encode(texts)
    except Exception as e:  # noqa: BLE001 - tokenizers raises plain Exception from Rust
        raise InputError(
            f"Tokenizer `{source}` failed on the corpus ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:300]}). The tokenizer is broken or incomplete (e.g. its "
            "unknown token is missing from the vocabulary): repair it or pass another "
            "--tokenizer.") from e


def _strings(values) -> pa.Array:
    """``values`` (Python strings, or already an Arrow array) as an Arrow string array."""
    return values if isinstance(values, pa.Array) else str_array(values)


def str_array(values: list[str]) -> pa.StringArray:
    """``pa.array(values, pa.string())`` for a list of str (no None), built by Polars: 0.1 s
    instead of 1.0 s for NSMC's 49.5 MB of reviews."""
    import polars as pl

    if not values:
        return pa.array([], pa.string())
    return (pl.Series(values, dtype=pl.String).to_arrow(compat_level=pl.CompatLevel.oldest())
            .cast(pa.string()))


def _to_table(cols: dict, ids: pa.ListArray) -> pa.Table:
    """One shard table from a batch's columns (lists or Arrow arrays) and token ids."""
    text = _strings(cols["text"])
    n_eojeol = pa.array(word_counts(text), pa.int32())
    return pa.Table.from_arrays([
        _strings(cols["doc_id"]), _strings(cols["group"]), _strings(cols["source"]), text, ids,
        pc.list_value_length(ids).cast(pa.int32()),
        pc.binary_length(text).cast(pa.int32()), pc.utf8_length(text).cast(pa.int32()),
        n_eojeol, _strings(cols["lang"]), pa.array(np.asarray(cols["ko_prob"], dtype=np.float32)),
        _strings(cols["lang_by"]),
    ], schema=SCHEMA)


def _account(stats: _Stats, split: str, table: pa.Table) -> None:
    s = stats.split[split]
    s["documents"] += table.num_rows
    for k, col in (("bytes", "n_bytes"), ("chars", "n_chars"), ("eojeol", "n_eojeol"),
                   ("tokens", "n_tokens")):
        s[k] += int(pc.sum(table.column(col)).as_py() or 0)


def shard_table(batch: DocBatch, texts: list[str], keep_idx: list[int], by_script,
                lang_result, ids: pa.ListArray, cfg, stats: _Stats, check: bool = True,
                text_arr: pa.StringArray | None = None):
    """One normalized, language-tagged and tokenized batch -> its shard rows.

    ``texts``/``keep_idx`` come from `_normalize`, ``by_script`` from `script_decides` (None:
    filter off), ``lang_result`` from `langid.classify` of the texts it leaves in doubt,
    ``ids`` from `_encode` of ``texts``. Returns ``(table, heldout, sel)``:
    the kept documents as a `SCHEMA` table, their held-out flags and their positions among
    ``texts``; or None when the filter drops every document. Pure apart from ``stats``.
    ``check=False`` skips the all-zero-tokens check (`check_tokens`), for a caller that runs
    it on other batch boundaries (`pipeline.executor`). ``text_arr``: ``texts`` already as an
    Arrow array (not converted again). (`tokenize_corpus` files the whole batch's table with the
    ``keep`` mask instead, saving a copy.)
    """
    picked = _select_rows(batch, texts, keep_idx, by_script, lang_result, cfg, stats, text_arr)
    if picked is None:
        return None
    cols, keep, heldout = picked
    table = _to_table(cols, ids)
    if not keep.all():
        table, heldout = table.filter(pa.array(keep)), heldout[keep]
    if check:
        check_tokens(table, cfg)
    return table, heldout, np.flatnonzero(keep).tolist()


def check_tokens(table: pa.Table, cfg, keep: np.ndarray | None = None) -> None:
    """A batch whose every (kept) document got 0 tokens means a tokenizer that drops text."""
    rows = np.arange(table.num_rows) if keep is None else np.flatnonzero(keep)
    if len(rows) and not table.column("n_tokens").to_numpy()[rows].any():
        first = int(rows[0])
        raise InputError(
            f"Tokenizer `{cfg.tokenizer.source}` produced 0 tokens for all {len(rows)} "
            f"non-empty documents of a batch (e.g. document {table['doc_id'][first].as_py()!r}: "
            f"{table['text'][first].as_py()[:60]!r}); it drops the text instead of encoding it "
            "(no matching vocabulary, no byte fallback or unknown token). Pass a tokenizer "
            "that covers Korean text.")


def write_splits(writers: dict, stats: _Stats, table: pa.Table, heldout: np.ndarray,
                 keep: np.ndarray | None = None) -> None:
    """File one batch's shard rows (those in ``keep``; all by default) into the train and
    held-out `ShardWriter`s, in order."""
    keep = np.ones(table.num_rows, dtype=bool) if keep is None else keep
    for split, mask in (("train", keep & ~heldout), ("heldout", keep & heldout)):
        part = table.filter(pa.array(mask)) if not mask.all() else table
        if part.num_rows:
            writers[split].write(part)
            _account(stats, split, part)


def open_writers(out_dir: Path, cfg) -> dict[str, ShardWriter]:
    """The train and held-out shard writers of a tokenize stage writing into ``out_dir``."""
    shard_dir = out_dir / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    tc = cfg.tokenize
    return {s: ShardWriter(shard_dir, s, tc.shard_docs, tc.shard_bytes)
            for s in ("train", "heldout")}


def tokenize_corpus(source: Source, tok, cfg, out_dir: Path, progress: bool = True) -> dict:
    """Run the whole stage into ``out_dir``; return its metrics. See module docstring."""
    from tqdm.auto import tqdm

    tc = cfg.tokenize
    writers = open_writers(out_dir, cfg)
    stats = _Stats(cfg.langid.examples)
    encoder = piece_encoder(tok.backend_tokenizer)
    limit_docs, limit_bytes = cfg.corpus.max_documents, cfg.corpus.max_bytes
    bar = tqdm(desc="tokenize", unit="doc", disable=not progress, mininterval=1.0)

    def flush(batch, texts, text_arr, keep_idx, by_script, lfut, efut) -> None:
        picked = _select_rows(batch, texts, keep_idx, by_script,
                              lfut.result() if lfut else None, cfg, stats, text_arr)
        ids = efut.result()
        if picked is None:
            return
        cols, keep, heldout = picked
        table = _to_table(cols, ids)  # every text of the batch; each split filters it once
        check_tokens(table, cfg, keep)
        write_splits(writers, stats, table, heldout, keep)
        bar.update(int(keep.sum()))

    # Per batch, fastText (on the documents the script leaves in doubt) runs in a child process
    # and the tokenizer in worker threads (Rust, GIL released), both while the main thread
    # files the previous batches into shards. INFLIGHT batches tokenize at once, so the Rust
    # thread pool is not left with one batch's tail while the next one is being prepared.
    # Every non-blank document is tokenized; the filter drops rows afterwards (few are dropped).
    lc = cfg.langid
    lang_pool = None  # started at the first document the script leaves in doubt
    pending: collections.deque = collections.deque()  # batches submitted, not yet filed
    seen_bytes = 0
    try:
        with ThreadPoolExecutor(max_workers=INFLIGHT) as enc_pool:
            for batch in source.batches(tc.batch_docs):
                if limit_docs and stats.read + len(batch) > limit_docs:
                    batch = _head(batch, limit_docs - stats.read)
                texts, keep_idx = _normalize(batch, stats)
                if texts:
                    text_arr = str_array(texts)
                    efut = enc_pool.submit(_encode, encoder, text_arr, cfg.tokenizer.source)
                    by_script = lfut = None
                    if lc.min_korean_prob > 0:
                        by_script = script_decides(text_arr, lc.keep_hangul_share)
                        if not by_script.all():
                            if lang_pool is None:
                                lang_pool = LangidWorker(max_chars=lc.max_chars,
                                                         model_path=lc.model_path or None)
                            lfut = lang_pool.submit([t for t, s in zip(texts, by_script)
                                                     if not s])
                    if len(pending) >= INFLIGHT:
                        flush(*pending.popleft())
                    pending.append((batch, texts, text_arr, keep_idx, by_script, lfut, efut))
                    seen_bytes += sum(len(t.encode()) for t in texts) if limit_bytes else 0
                if (limit_docs and stats.read >= limit_docs) or (limit_bytes and seen_bytes >= limit_bytes):
                    break
            while pending:
                flush(*pending.popleft())
    except BaseException:
        for w in writers.values():  # no open file left behind (a full disk, Ctrl-C...)
            w.abort()
        raise
    finally:
        if lang_pool is not None:
            lang_pool.close()
    bar.close()
    for w in writers.values():
        w.close()
    _check_nonempty(stats, source, cfg)
    return _metrics(stats, len(tok))


def _head(batch: DocBatch, n: int) -> DocBatch:
    return DocBatch(batch.ids[:n], batch.groups[:n], batch.sources[:n], batch.texts[:n])


def _check_nonempty(stats: _Stats, source: Source, cfg) -> None:
    where = source.describe()
    if stats.read == 0 or stats.read == stats.empty:
        raise InputError(f"The corpus {where} is empty: it holds no non-blank document in column "
                         f"{cfg.corpus.text_column!r}. Check the path and --text-column.")
    train, held = stats.split["train"]["documents"], stats.split["heldout"]["documents"]
    if train + held == 0:
        langs = ", ".join(f"{k}: {v}" for k, v in sorted(stats.dropped_langs.items(),
                                                         key=lambda kv: -kv[1])[:5])
        raise InputError(
            f"No Korean document in {where}: all {stats.dropped} non-empty documents were dropped "
            f"by the language filter (Korean probability below langid.min_korean_prob = "
            f"{cfg.langid.min_korean_prob}; languages found: {langs}). Use a Korean corpus, or "
            "lower [langid] min_korean_prob (0 disables the filter).")
    if train == 0:
        raise InputError(
            f"Every document of {where} fell in the held-out split ({held} document(s)), so "
            "nothing is left to count. Lower [heldout] fraction, change its salt, "
            "or give the corpus a finer group column.")


def _metrics(stats: _Stats, vocab_size: int) -> dict:
    tr, he = stats.split["train"], stats.split["heldout"]
    return {
        "corpus": {
            "documents_read": stats.read,
            "empty_skipped": stats.empty,
            "dropped_non_korean": stats.dropped,
            "kept_by_hangul_share": stats.kept_by_script,
            "language_decided_by": {"script": stats.decided_by_script,
                                    "fasttext": stats.asked_fasttext},
            "dropped_languages": dict(sorted(stats.dropped_langs.items())),
            "dropped_examples": stats.examples,
            "documents": tr["documents"],
            "bytes": tr["bytes"],
            "chars": tr["chars"],
            "eojeol": tr["eojeol"],
        },
        "heldout": {
            "documents": he["documents"],
            "bytes": he["bytes"],
            "chars": he["chars"],
            "eojeol": he["eojeol"],
            "tokens": he["tokens"],
            "tokens_per_eojeol": round(he["tokens"] / he["eojeol"], 6) if he["eojeol"] else None,
        },
        "tokens": {"total": tr["tokens"]},
        "vocab": {"before": vocab_size},
        "tokens_per_eojeol": round(tr["tokens"] / tr["eojeol"], 6) if tr["eojeol"] else None,
        "bytes_per_token": round(tr["bytes"] / tr["tokens"], 6) if tr["tokens"] else None,
    }
