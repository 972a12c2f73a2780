"""Token ids of documents through a cache of their pieces: the tokenize stage's encoder.

A corpus repeats its words. ``encode_batch_fast`` tokenizes every occurrence again (and
builds an ``Encoding`` object per document); this encoder cuts each document into *pieces*
at places where no token of the tokenizer can cross, tokenizes each distinct piece once, and
assembles every document's ids from the cached pieces with NumPy. The ids are exactly those
of ``encode_batch_fast(texts, add_special_tokens=False)`` (tests compare them on corpora and
random text); only tokenizers whose structure makes that provable are cut (`piece_plan`),
every other one is encoded whole, as are the documents holding a character an added token
starts with (``<``, ``[``; Gemma's ``\\n`` and ``\\t`` runs are added tokens too).

Where pieces are cut: before a run of ASCII spaces that follows a non-whitespace character
(``영화 정말`` -> ``영화``, `` 정말``), found with NumPy on the UTF-8 bytes (`_cuts`; the pieces
are views of the batch's text buffer, no copy). That place starts a token when

- **byte-level BPE with a GPT-style split regex** (Tekken, GPT-2, Llama 3, Qwen 2): the regex
  never puts a space after a non-space character inside one pre-token, and it only looks
  ahead (its ``\\s+(?!\\S)`` backtracks in front of the last space before a word), so the
  pre-tokens after that place do not depend on the text before it;
- **metaspace BPE without a split** (Gemma: spaces become ``▁`` and the whole text is one
  BPE word): no merge can join ``x`` and ``▁y`` unless the vocabulary holds a token with a
  ``▁`` after another character (checked: Gemma's only one, ``>▁</``, holds ``<``, which sends
  its documents to the whole path).

Each distinct piece is tokenized once, ``CHUNK`` pieces to a string, so the Rust tokenizer gets
few long strings instead of many short ones. The pieces are joined by a separator special token
(text between added tokens is tokenized on its own) or, for metaspace BPE, by a plain character
that is a token of its own and in no merge (`_char_separator`; Gemma 3): the string is then one
BPE word whose merges never cross the separator, and Rust spends half the time (no per-piece
split, normalization and encoding). Either way the separator's id must come out exactly once
between two pieces, else the batch's pieces are tokenized one string each. The cache maps a
64-bit hash of the piece (Polars) to its ids; a hit is confirmed by comparing the UTF-8 bytes,
so a hash collision costs time, never a wrong id. Memory stays flat in corpus size: the cache holds at most ``max_pieces``
pieces of at most `MAX_PIECE_BYTES` bytes (a longer one is tokenized each time it comes).
When it is full it keeps the pieces found most often (at most half of it) and drops the rest,
so a corpus with more distinct pieces than the cache does not tokenize its common words again.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import threading

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Split regexes of byte-level BPE tokenizers for which a space after a non-space character
# always starts a pre-token (see the module docstring; tests/test_pieces.py checks each).
SPLIT_REGEXES = frozenset({
    # Tekken (Mistral), as `convert_tekken_tokenizer` writes it
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?"
    r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|"
    r"\s*[\r\n]+|\s+(?!\S)|\s+",
    # Llama 3 / cl100k
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
    r"\s*[\r\n]+|\s+(?!\S)|\s+",
    # Qwen 2
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
    r"\s*[\r\n]+|\s+(?!\S)|\s+",
})
CHUNK = 256          # distinct pieces per tokenizer string
MAX_PIECES = 1 << 20  # cache size (pieces)
MAX_PIECE_BYTES = 256  # longer pieces are tokenized each time they come, never cached


@dataclasses.dataclass(frozen=True)
class PiecePlan:
    whole_chars: frozenset  # a document holding one of these characters is encoded whole
    sep: str       # the separator special token's text
    sep_id: int


def piece_plan(backend) -> PiecePlan | None:
    """How ``backend`` (a `tokenizers.Tokenizer`) may be encoded piece by piece; None when
    its structure does not prove that pieces tokenize as in the whole text. Reads only the
    components (the whole tokenizer's JSON takes a second to write and parse)."""
    if backend.truncation is not None or backend.padding is not None:
        return None
    model = backend.model
    if type(model).__name__ != "BPE" or model.dropout not in (None, 0, 0.0):
        return None
    metaspace = _replaces_space(_state(backend.normalizer))
    if metaspace is None or not _pre_tokenizer_ok(_state(backend.pre_tokenizer), metaspace):
        return None
    added = sorted(backend.get_added_tokens_decoder().items())  # (id, AddedToken)
    starts = {a.content[0] for _, a in added if a.content} | {"\x00"}
    if metaspace and any(re.search("[^▁]▁", t) and not starts & set(t)
                         for t in backend.get_vocab() if "▁" in t[1:]):
        return None  # a token joins a word to the next one: pieces could split it
    sep = _separator(added)
    if sep is None:
        return None
    char = _char_separator(backend, added) if metaspace else None
    if char is not None:
        return PiecePlan(whole_chars=frozenset(starts | {char[1]}), sep=char[1], sep_id=char[0])
    return PiecePlan(whole_chars=frozenset(starts), sep=sep[1].content, sep_id=sep[0])


# Ogham letters: no decomposition, combining class 0, compose with nothing (NFC leaves the
# text on either side as it is), not White_Space (U+1680 is), absent from Korean text
_CHAR_SEPARATORS = [chr(c) for c in range(0x1681, 0x169B)]


def _char_separator(backend, added: list):
    """(id, character) of a plain character that may separate pieces of a metaspace BPE
    tokenizer inside one string, tokenized as one BPE word: a token of its own that no merge
    and no other token holds (its only occurrence in the model's JSON is its vocabulary
    entry), in no added token, with whole-word lookup (``ignore_merges``) off and no subword
    affixes. Such a symbol is never merged, so the merges on either side of it are those of
    each piece alone; Rust then tokenizes the distinct pieces about twice as fast as between
    separator special tokens (one word per string instead of one per piece). None when no
    candidate qualifies."""
    model = backend.model
    if (getattr(model, "ignore_merges", True) or model.continuing_subword_prefix
            or model.end_of_word_suffix):
        return None
    in_added = "".join(a.content for _, a in added)
    state = None
    for c in _CHAR_SEPARATORS:
        tid = backend.token_to_id(c)
        if tid is None or c in in_added:
            continue
        if state is None:  # the model's JSON (0.5 s for Gemma's 262k tokens, 515k merges)
            state = model.__getstate__()
            state = state if isinstance(state, bytes) else state.encode()
        if state.count(c.encode()) == 1 and f"\\u{ord(c):04x}".encode() not in state.lower():
            return tid, c
    return None


def _state(component):
    return None if component is None else json.loads(component.__getstate__())


def _replaces_space(node) -> bool | None:
    """False: no normalizer (or NFC, a no-op on the stage's NFC text); True: only spaces
    become ``▁``; None: anything else."""
    if node is None:
        return False
    kind = node.get("type")
    if kind == "NFC":
        return False
    if kind == "Replace":
        return True if node.get("pattern") == {"String": " "} and node.get("content") == "▁" \
            else None
    if kind == "Sequence":
        parts = [_replaces_space(n) for n in node.get("normalizers", [])]
        if None in parts or sum(parts) > 1:
            return None
        return any(parts)
    return None


def _pre_tokenizer_ok(node, metaspace: bool) -> bool:
    if metaspace:  # Gemma: Split on " " after spaces became "▁" is a no-op
        return node is None or (node.get("type") == "Split" and node.get("pattern") == {"String": " "})
    if node is None:
        return False
    kind = node.get("type")
    if kind == "ByteLevel":
        return bool(node.get("use_regex", True)) and not node.get("add_prefix_space")
    if kind == "Sequence":
        parts = node.get("pretokenizers", [])
        return (len(parts) == 2 and parts[0].get("type") == "Split"
                and parts[0].get("pattern", {}).get("Regex") in SPLIT_REGEXES
                and parts[0].get("behavior") == "Isolated" and not parts[0].get("invert")
                and parts[1].get("type") == "ByteLevel" and not parts[1].get("use_regex", True)
                and not parts[1].get("add_prefix_space"))
    return False


def _separator(added: list):
    """(id, AddedToken) of a special added token matched as plain text and prefix of no other
    added token; None when there is none."""
    for i, a in added:
        if (a.special and a.content and not a.normalized and not a.lstrip and not a.rstrip
                and not a.single_word
                and not any(j != i and b.content.startswith(a.content) for j, b in added)):
            return i, a
    return None


class PieceEncoder:
    """``encode(texts)`` -> list<int32> ids per text, equal to the backend's
    ``encode_batch_fast(texts, add_special_tokens=False)``. Thread-safe: the tokenizer runs
    outside the lock, so two batches tokenize their new pieces at once."""

    def __init__(self, backend, max_pieces: int = MAX_PIECES):
        self.backend = backend
        self.plan = piece_plan(backend)
        self.max_pieces = max_pieces
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        # per slot arrays, at most max_pieces slots (NumPy's zeros are paged in when written)
        m = self.max_pieces
        self._index = _HashIndex(m)            # hash of a piece -> its slot
        self._hash = np.zeros(m, np.uint64)    # per slot: the piece's hash,
        self._off = np.zeros(m, np.int64)      # offset and length of its ids in _ids,
        self._len = np.zeros(m, np.int64)
        self._boff = np.zeros(m, np.int64)     # of its UTF-8 bytes in _bytes,
        self._blen = np.zeros(m, np.int64)
        self._hits = np.zeros(m, np.int64)     # and the batches that found it here
        self._ids = np.zeros(8 * m, np.int32)     # room for 8 ids and 32 bytes a piece
        self._bytes = np.zeros(32 * m, np.uint8)  # (NSMC: 5.4 and 17; they grow if more come)
        self._n = self._n_ids = self._n_bytes = 0  # slots, ids and bytes in use

    def encode(self, texts) -> pa.ListArray:
        arr = texts if isinstance(texts, pa.Array) else pa.array(texts, pa.string())
        if self.plan is None or len(arr) == 0:
            return _whole(self.backend, arr)
        if arr.type != pa.string():
            arr = arr.cast(pa.string())
        whole = self._whole_mask(arr)
        if not whole.any():
            return self._pieces(arr)
        fast, slow = np.flatnonzero(~whole), np.flatnonzero(whole)
        parts = [self._pieces(arr.take(pa.array(fast))) if len(fast) else
                 pa.array([], pa.list_(pa.int32())), _whole(self.backend, arr.take(pa.array(slow)))]
        order = np.empty(len(arr), np.int64)
        order[fast] = np.arange(len(fast))
        order[slow] = len(fast) + np.arange(len(slow))
        return pa.concat_arrays(parts).take(pa.array(order))

    def _whole_mask(self, arr: pa.StringArray) -> np.ndarray:
        """The documents encoded whole: null, or holding a character an added token starts
        with (ASCII ones looked up byte by byte, others by regex)."""
        data, off = utf8_buffers(arr)
        table = np.zeros(256, bool)
        table[[ord(c) for c in self.plan.whole_chars if ord(c) < 0x80]] = True
        hits = np.searchsorted(np.flatnonzero(table[data[off[0]:off[-1]]]), off - off[0])
        whole = hits[1:] > hits[:-1]  # a hit between the document's offsets
        wide = [c for c in self.plan.whole_chars if ord(c) >= 0x80]
        if 0 < len(wide) <= 2:  # a plain substring search is faster than a regex
            for c in wide:
                whole |= pc.match_substring(arr, c).to_numpy(zero_copy_only=False)
        elif wide:
            cls = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in wide) + "]"
            whole |= pc.match_substring_regex(arr, cls).to_numpy(zero_copy_only=False)
        if arr.null_count:
            whole |= arr.is_null().to_numpy(zero_copy_only=False)
        return whole

    def _pieces(self, arr: pa.StringArray) -> pa.ListArray:
        """Ids of documents none of which is encoded whole, through the piece cache."""
        data, off = utf8_buffers(arr)
        base = int(off[0])
        off = off - base
        n = int(off[-1])
        start = np.zeros(n + 1, bool)  # document starts and cuts, in order, each once
        start[off] = True
        start[_cuts(data[base:base + n], off)] = True
        bounds = np.flatnonzero(start)
        pieces = pa.StringArray.from_buffers(
            len(bounds) - 1, pa.py_buffer((bounds + base).astype(np.int32)), arr.buffers()[2])
        doc_first = np.searchsorted(bounds, off)  # each document's first piece
        codes = pc.dictionary_encode(pieces)
        uniq = codes.dictionary
        u_ids, u_start, u_len = self._distinct_ids(uniq, self._hashes(uniq))
        # every piece's ids, taken from its distinct piece's list by Arrow
        u_off = np.append(u_start, u_start[-1] + u_len[-1] if len(u_len) else 0)
        per_piece = pa.ListArray.from_arrays(pa.array(u_off.astype(np.int32)),
                                             pa.array(u_ids)).take(codes.indices)
        p_off = per_piece.offsets.to_numpy()
        ids = per_piece.values.slice(int(p_off[0]), int(p_off[-1] - p_off[0]))
        return pa.ListArray.from_arrays(pa.array(p_off[doc_first] - p_off[0]), ids)

    @staticmethod
    def _hashes(uniq: pa.Array) -> np.ndarray:
        import polars as pl

        return pl.Series(uniq).hash(seed=0).to_numpy()

    def _distinct_ids(self, uniq: pa.StringArray, hashes: np.ndarray):
        """The ids of the distinct pieces ``uniq``, concatenated, with each one's start and
        length; the ones not cached are tokenized (outside the lock) and cached."""
        u_data, u_off = utf8_buffers(uniq)
        u_off = u_off - u_off[0]
        length = np.zeros(len(uniq), np.int64)
        with self._lock:
            slot = self._index.find(hashes)
            hit = np.flatnonzero(slot >= 0)
            if len(hit):  # a hash match is a hit only if the strings are equal
                s = slot[hit]
                same = _same_bytes(u_data, u_off[hit], u_off[hit + 1] - u_off[hit],
                                   self._bytes, self._boff[s], self._blen[s])
                slot[hit[~same]] = -1
                hit = hit[same]
            s = slot[hit]
            length[hit] = self._len[s]
            hit_ids = self._ids[_spans(self._off[s], length[hit])]
            self._hits[s] += 1
        miss = np.flatnonzero(slot < 0)
        if len(miss):
            m_pieces = uniq.take(pa.array(miss))
            m_off, m_len, m_ids = self._tokenize(m_pieces)
            length[miss] = m_len
            with self._lock:
                self._add(m_pieces, hashes[miss], m_len, m_ids)
        end = np.cumsum(length)
        start = end - length
        out = np.empty(int(end[-1]) if len(end) else 0, np.int32)
        out[_spans(start[hit], length[hit])] = hit_ids
        if len(miss):
            out[_spans(start[miss], m_len)] = m_ids[_spans(m_off, m_len)]
        return out, start, length

    def _add(self, pieces: pa.StringArray, hashes: np.ndarray, length: np.ndarray,
             ids: np.ndarray) -> None:
        """Cache tokenized ``pieces`` (those of at most MAX_PIECE_BYTES) in new slots and
        index those whose hash is new (a piece colliding with an indexed one is tokenized
        each time it comes). A full cache first keeps only its most found pieces."""
        data, off = utf8_buffers(pieces)
        blen = np.diff(off)
        keep = np.flatnonzero(blen <= MAX_PIECE_BYTES)
        k = len(keep)
        if k > self.max_pieces // 2:  # one batch's new pieces fill the cache: not kept
            return
        if self._n + k > self.max_pieces:
            self._evict(self.max_pieces - k)
        ids_at = np.cumsum(length) - length
        n, n_ids, n_bytes = self._n, self._n_ids, self._n_bytes
        slots = n + np.arange(k)
        self._hash[slots] = hashes[keep]
        self._len[slots] = length[keep]
        self._off[slots] = n_ids + np.cumsum(length[keep]) - length[keep]
        self._blen[slots] = blen[keep]
        self._boff[slots] = n_bytes + np.cumsum(blen[keep]) - blen[keep]
        self._hits[slots] = 0
        new_ids = ids[_spans(ids_at[keep], length[keep])]
        new_bytes = data[_spans(off[:-1][keep] - off[0], blen[keep])]
        self._ids = _room(self._ids, n_ids, len(new_ids))
        self._bytes = _room(self._bytes, n_bytes, len(new_bytes))
        self._ids[n_ids:n_ids + len(new_ids)] = new_ids
        self._bytes[n_bytes:n_bytes + len(new_bytes)] = new_bytes
        self._n, self._n_ids, self._n_bytes = n + k, n_ids + len(new_ids), n_bytes + len(new_bytes)
        self._index.insert(hashes[keep], slots)

    def _evict(self, room_for: int) -> None:
        """Keep the pieces found most often (at most half the cache, and at most
        ``room_for``), halve their counts (older finds weigh less) and drop the rest. The kept
        ones move to the front of the same arrays, in their order."""
        n = self._n
        found = np.flatnonzero(self._hits[:n] > 0)
        limit = min(self.max_pieces // 2, room_for)
        if len(found) > limit:
            found = found[np.argsort(-self._hits[found], kind="stable")[:limit]]
            found.sort()
        k = len(found)
        ids = self._ids[_spans(self._off[found], self._len[found])]
        data = self._bytes[_spans(self._boff[found], self._blen[found])]
        for a in (self._hash, self._len, self._blen):
            a[:k] = a[found]
        self._hits[:k] = self._hits[found] // 2
        self._off[:k] = np.cumsum(self._len[:k]) - self._len[:k]
        self._boff[:k] = np.cumsum(self._blen[:k]) - self._blen[:k]
        self._ids[:len(ids)], self._bytes[:len(data)] = ids, data
        self._n, self._n_ids, self._n_bytes = k, len(ids), len(data)
        self._index = _HashIndex(self.max_pieces)
        self._index.insert(self._hash[:k], np.arange(k))

    def _tokenize(self, pieces: pa.Array):
        """Offsets and lengths (into the returned ids) and ids of each of ``pieces``: CHUNK
        pieces per tokenizer string, joined by the separator token."""
        n = len(pieces)
        bounds = np.unique(np.arange(0, n + CHUNK, CHUNK).clip(max=n))
        lists = pa.ListArray.from_arrays(pa.array(bounds.astype(np.int32)), pieces)
        encs = _run(self.backend, pc.binary_join(lists, pa.scalar(self.plan.sep, pieces.type))
                    .to_pylist())
        lists = ids_array(encs)
        per_string = np.diff(lists.offsets.to_numpy()).astype(np.int64)
        ids = lists.values.to_numpy()
        sep = ids == self.plan.sep_id
        if int(sep.sum()) != n - len(encs):  # not expected (`piece_plan`): encode them one by one
            encs = _run(self.backend, pieces.to_pylist())
            length = np.fromiter(map(len, (e.ids for e in encs)), np.int64, count=n)
            ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encs), np.int32,
                              count=int(length.sum()))
            return np.cumsum(length) - length, length, ids
        # the piece of each id: its string's first piece + the separators before it there
        string = np.repeat(np.arange(len(encs)), per_string)
        seps_before = np.concatenate([[0], np.cumsum(sep)])  # before each id, and at the end
        string_start = np.concatenate([[0], np.cumsum(per_string)[:-1]]).astype(np.int64)
        piece = (bounds[:-1][string] + seps_before[:-1]
                 - np.repeat(seps_before[string_start], per_string))
        length = np.bincount(piece[~sep], minlength=n).astype(np.int64)
        return np.cumsum(length) - length, length, ids[~sep]


def utf8_buffers(arr: pa.StringArray) -> tuple[np.ndarray, np.ndarray]:
    """The UTF-8 data buffer of a string array and its ``len + 1`` offsets into it."""
    off = np.frombuffer(arr.buffers()[1], np.int32, count=len(arr) + 1,
                        offset=arr.offset * 4).astype(np.int64)
    buf = arr.buffers()[2]
    data = np.frombuffer(buf, np.uint8) if buf is not None else np.zeros(0, np.uint8)
    return data, off


# White_Space characters (what ``\s`` matches in the split regexes) as UTF-8: ASCII ones, and
# the last bytes of the two- and three-byte ones
_ASCII_SPACE = np.zeros(256, bool)
_ASCII_SPACE[[0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20]] = True
_WIDE_SPACES = np.array([int.from_bytes(c.encode(), "big") for c in
                         "\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
                         "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"], np.int64)
_WIDE_LAST = np.zeros(256, bool)  # their last bytes (a prefilter: a Hangul syllable ends so too)
_WIDE_LAST[_WIDE_SPACES & 0xFF] = True


def _cuts(data: np.ndarray, off: np.ndarray) -> np.ndarray:
    """Where pieces start inside the documents ``data[off[i]:off[i+1]]`` (valid UTF-8,
    ``off[0] == 0``, ``off[-1] == len(data)``):
    before each ASCII space that follows a character other than White_Space in the same
    document: the places the regex ``(\\S) `` finds, between its two characters."""
    sp = np.flatnonzero(data == 0x20)
    first = np.zeros(int(off[-1]) + 1, bool)
    first[off[:-1]] = True
    sp = sp[~first[sp]]  # a document's first character follows nothing
    prev = data[sp - 1]
    space = _ASCII_SPACE[prev]
    wide = np.flatnonzero(_WIDE_LAST[prev])  # may end a 2- or 3-byte White_Space character
    if len(wide):
        at = sp[wide]
        b2 = data[at - 2].astype(np.int64)
        b3 = data[np.maximum(at - 3, 0)].astype(np.int64)
        code2 = (b2 << 8) | prev[wide]
        code3 = (b3 << 16) | code2
        space[wide] = np.isin(code2, _WIDE_SPACES) | ((at >= 3) & np.isin(code3, _WIDE_SPACES))
    return sp[~space]


def _same_bytes(a: np.ndarray, a_off: np.ndarray, a_len: np.ndarray, b: np.ndarray,
                b_off: np.ndarray, b_len: np.ndarray) -> np.ndarray:
    """Per pair i: ``a[a_off[i]:][:a_len[i]] == b[b_off[i]:][:b_len[i]]``."""
    same = a_len == b_len
    i = np.flatnonzero(same)
    diff = a[_spans(a_off[i], a_len[i])] != b[_spans(b_off[i], a_len[i])]
    same[i[np.unique(np.repeat(np.arange(len(i)), a_len[i])[diff])]] = False
    return same


def _spans(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``range(start, start + length)`` of each pair, vectorized."""
    end = np.cumsum(lengths)
    return np.arange(int(end[-1]) if len(end) else 0) - np.repeat(end - lengths - starts, lengths)


def _room(a: np.ndarray, used: int, more: int) -> np.ndarray:
    """``a``, or a copy twice as large, with room for ``more`` items after ``used``."""
    if used + more <= len(a):
        return a
    b = np.zeros(max(2 * len(a), used + more), a.dtype)
    b[:used] = a[:used]
    return b


class _HashIndex:
    """uint64 hash -> slot, an open-addressing table probed with NumPy a whole batch at a
    time (no Python object per piece); at most half full."""

    def __init__(self, capacity: int):
        size = 1 << max(10, int(2 * capacity - 1).bit_length())
        self._keys = np.zeros(size, np.uint64)  # 0: empty (hash 0 is stored as 1)
        self._vals = np.full(size, -1, np.int64)
        self._mask = np.uint64(size - 1)

    def _start(self, hashes: np.ndarray):
        h = np.where(hashes == 0, np.uint64(1), hashes).astype(np.uint64)
        return h, (h & self._mask).astype(np.int64)

    def find(self, hashes: np.ndarray) -> np.ndarray:
        h, pos = self._start(hashes)
        out = np.full(len(h), -1, np.int64)
        todo = np.arange(len(h))
        while len(todo):
            k = self._keys[pos[todo]]
            hit = k == h[todo]
            out[todo[hit]] = self._vals[pos[todo[hit]]]
            todo = todo[~hit & (k != 0)]
            pos[todo] = (pos[todo] + 1) & int(self._mask)
        return out

    def insert(self, hashes: np.ndarray, slots: np.ndarray) -> None:
        """Index each hash not indexed yet (the first of equal new ones wins)."""
        h, pos = self._start(hashes)
        todo = np.arange(len(h))
        while len(todo):
            k = self._keys[pos[todo]]
            same, free = k == h[todo], k == 0
            # of the hashes probing one free place, the first takes it; the others look at
            # the same place again (an equal hash may have taken it)
            _, first = np.unique(pos[todo[free]], return_index=True)
            won = np.zeros(len(todo), bool)
            won[np.flatnonzero(free)[first]] = True
            self._keys[pos[todo[won]]] = h[todo[won]]
            self._vals[pos[todo[won]]] = slots[todo[won]]
            taken = ~same & ~free
            pos[todo[taken]] = (pos[todo[taken]] + 1) & int(self._mask)
            todo = todo[~same & ~won]


_ENCODERS: dict[int, PieceEncoder] = {}


def piece_encoder(backend) -> PieceEncoder:
    """The `PieceEncoder` of ``backend``, one per tokenizer object (its cache is kept across
    the batches and units of a process); the last two are kept."""
    enc = _ENCODERS.get(id(backend))
    if enc is None or enc.backend is not backend:
        while len(_ENCODERS) >= 2:
            _ENCODERS.pop(next(iter(_ENCODERS)))
        enc = _ENCODERS[id(backend)] = PieceEncoder(backend)
    return enc


def _run(backend, texts: list[str]):
    return backend.encode_batch_fast(texts, add_special_tokens=False)


def ids_array(encs: list) -> pa.ListArray:
    """The encodings' ids as one Arrow list<int32> array: NumPy reads every id list through
    one iterator (half the time of ``pa.array`` of the lists; ``Encoding.merge`` would copy
    every token string and offset in Rust first)."""
    off = np.zeros(len(encs) + 1, np.int32)
    np.cumsum(np.fromiter(map(len, encs), np.int64, count=len(encs)), out=off[1:])
    ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encs), np.int32,
                      count=int(off[-1]))
    return pa.ListArray.from_arrays(pa.array(off), pa.array(ids))


def _whole(backend, arr: pa.Array) -> pa.ListArray:
    return ids_array(_run(backend, arr.to_pylist()))
