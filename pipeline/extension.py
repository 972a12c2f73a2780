"""Vocabulary extension: new Korean tokens learned as BPE merges appended to a (pruned) tokenizer.

What it does, for the ``adapt`` stage (`pipeline.adapt`):

- `pretoken_counts(tok, texts)`: the counted corpus as words: each text is normalized and
  pre-tokenized by the tokenizer itself, and for SentencePiece-style BPE (where the
  pre-tokenizer may leave a whole document as one piece) cut before every ``▁`` and around
  every other whitespace character, so a word is one eojeol (with its leading ``▁``) and no new
  merge crosses the space marker. At most ``max_types`` distinct words are kept (the most
  frequent; memory stays bounded on any corpus).
- `learn_merges(tok, counts, n)`: continues BPE training on those words: each word starts as
  the tokenizer's own segmentation of it (``model.tokenize``), and the most frequent adjacent
  pair is merged, ``n`` times. A pair is eligible only when its merged string is not already in
  the vocabulary or an added token, and neither part is a special/added token or a
  byte-fallback ``<0xNN>`` piece (those decode to bytes, not to their text). Ties are broken by
  the ids of the pair, so the result is deterministic.
- `extend_tokenizer(tok, merges)`: the same tokenizer with the new tokens appended to the
  vocabulary (ids ``len(tok)``, ...) and the new merges appended **after** all existing ones.
  Since BPE applies the lowest-ranked applicable merge first, a text in which no new merge ever
  applies is tokenized exactly as before (tested by a property test), and every text decodes
  as before (a new token is the concatenation of its two parts).
- `extend_model(model, n_old, pieces)`: new rows of the input embedding and of the LM head
  (and bias), each the mean of the rows of the original pieces the new token is made of (a
  tied head shares the one matrix).

Worked example. Pruned vocabulary ``{▁, 한, 국, 어, ▁한, ...}`` with no token ``▁한국``; the
words ``▁한국어`` (x5) and ``▁한국`` (x3) segment as ``▁한 국 어`` and ``▁한 국``. The most frequent
pair is ``(▁한, 국)`` (8): new token ``▁한국`` (pieces ``[▁한, 국]``), appended as the last merge.
Next ``(▁한국, 어)`` (5): ``▁한국어``, pieces ``[▁한, 국, 어]``: its embedding row is the mean of
those three rows.

What it does not do: it does not train anything (`pipeline.train`) and does not support
Unigram or WordPiece tokenizers (no merges to continue): those are an `InputError`.
"""

from __future__ import annotations

import copy
import heapq
import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from .closure import BYTE_FALLBACK_TOKENS, METASPACE, tokenizer_info
from .errors import InputError

# A SentencePiece-style word: an optional ▁ and non-space text, a lone ▁, or one other
# whitespace character (newline, tab, ...).
_SP_WORD = re.compile(rf"{METASPACE}?[^{METASPACE}\s]+|{METASPACE}|\s")
BPE_FAMILIES = ("bytelevel_bpe", "sentencepiece_bpe")


@dataclass(frozen=True)
class NewMerge:
    left: str
    right: str
    token: str
    token_id: int
    pieces: tuple[int, ...]  # original ids the token is made of (for initialisation)
    count: int               # pair frequency in the counted words when it was learned


# --------------------------------------------------------------------------------------------
# Words


def check_extendable(tok) -> str:
    """The tokenizer's family when new merges can be appended to it; `InputError` otherwise."""
    family = tokenizer_info(tok).family
    if family not in BPE_FAMILIES:
        raise InputError(
            f"Tokenizer family {family!r} has no BPE merges to continue, so `[adapt] new_tokens` "
            "cannot extend it. Set [adapt] new_tokens = 0 (recovery training only), or use a "
            "byte-level or SentencePiece-style BPE tokenizer.")
    return family


def words_of(tok, text: str, family: str | None = None) -> list[str]:
    """``text`` as the words BPE continues on (module docstring): normalized and pre-tokenized
    by ``tok``; SentencePiece-style pieces further cut at ``▁`` and whitespace."""
    backend = tok.backend_tokenizer
    family = family or tokenizer_info(tok).family
    if backend.normalizer is not None:
        text = backend.normalizer.normalize_str(text)
    pieces = ([p for p, _ in backend.pre_tokenizer.pre_tokenize_str(text)]
              if backend.pre_tokenizer is not None else [text])
    if family == "sentencepiece_bpe":
        return [w for p in pieces for w in _SP_WORD.findall(p)]
    return pieces


def pretoken_counts(tok, texts: Iterable[str], max_types: int = 500_000) -> Counter:
    """word -> count over ``texts`` (module docstring); when more than ``2 * max_types``
    distinct words have been seen, only the ``max_types`` most frequent are kept (ties: first
    seen), and the same at the end."""
    family = tokenizer_info(tok).family
    counts: Counter = Counter()
    for text in texts:
        counts.update(words_of(tok, text, family))
        if len(counts) > 2 * max_types:
            counts = Counter(dict(counts.most_common(max_types)))
    if len(counts) > max_types:
        counts = Counter(dict(counts.most_common(max_types)))
    return counts


# --------------------------------------------------------------------------------------------
# BPE continuation


def _blocked_ids(tok, info) -> set[int]:
    """Ids never merged: special and added tokens, unk, byte-fallback pieces."""
    ids = {a["id"] for a in info.data.get("added_tokens") or []}
    ids.update(i for i in tok.all_special_ids if i is not None)
    unk = info.model.get("unk_token")
    if unk is not None and unk in info.token_to_id:
        ids.add(info.token_to_id[unk])
    ids.update(info.token_to_id[t] for t in BYTE_FALLBACK_TOKENS if t in info.token_to_id)
    return ids


class _PairTable:
    """Pair counts over weighted words with a max-heap (lazy deletion) and a pair -> words
    index, updated word by word as merges are applied."""

    def __init__(self, words: list[list[int]], counts: list[int], blocked: set[int]):
        self.words, self.counts, self.blocked = words, counts, blocked
        self.pairs: dict[tuple[int, int], int] = {}
        self.where: dict[tuple[int, int], set[int]] = {}
        for w, word in enumerate(words):
            self._add(w, word, +1)
        self.heap = [(-c, a, b) for (a, b), c in self.pairs.items()]
        heapq.heapify(self.heap)

    def _word_pairs(self, word: list[int]) -> Counter:
        bl = self.blocked
        return Counter((a, b) for a, b in zip(word, word[1:]) if a not in bl and b not in bl)

    def _add(self, w: int, word: list[int], sign: int) -> list[tuple[int, int]]:
        changed = []
        for p, k in self._word_pairs(word).items():
            self.pairs[p] = self.pairs.get(p, 0) + sign * k * self.counts[w]
            if sign > 0:
                self.where.setdefault(p, set()).add(w)
            changed.append(p)
        return changed

    def best(self, banned: set) -> tuple[tuple[int, int], int] | None:
        """The most frequent pair not in ``banned`` (None when none is left)."""
        while self.heap:
            c, a, b = self.heap[0]
            if self.pairs.get((a, b), 0) != -c or -c <= 0 or (a, b) in banned:
                heapq.heappop(self.heap)
                continue
            return (a, b), -c
        return None

    def merge(self, pair: tuple[int, int], new_id: int) -> None:
        a, b = pair
        for w in sorted(self.where.pop(pair, ())):
            word = self.words[w]
            changed = self._add(w, word, -1)
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            self.words[w] = out
            for p in set(changed + self._add(w, out, +1)) - {pair}:
                if self.pairs[p] > 0:  # the new count (the old heap entry is now stale)
                    heapq.heappush(self.heap, (-self.pairs[p], *p))
        self.pairs.pop(pair, None)


def learn_merges(tok, counts: Counter, n_new: int, *, min_count: int = 2,
                 say=lambda m: None) -> list[NewMerge]:
    """Up to ``n_new`` new tokens (module docstring), in the order they were learned. Several
    merges may produce one token (two different pairs with the same string): each is listed,
    the later ones with the first one's ``token_id``; only new strings count towards ``n_new``."""
    check_extendable(tok)
    info = tokenizer_info(tok)
    backend_model = tok.backend_tokenizer.model
    vocab = info.token_to_id
    added = {a["content"] for a in info.data.get("added_tokens") or []}
    strings = dict(info.id_to_token)
    pieces: dict[int, tuple[int, ...]] = {}
    words, weights = [], []
    for word, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        ids = [t.id for t in backend_model.tokenize(word)]
        if len(ids) > 1:
            words.append(ids)
            weights.append(int(c))
    table = _PairTable(words, weights, _blocked_ids(tok, info))
    say(f"[adapt] continuing BPE on {len(words):,} words of {len(counts):,} distinct")
    next_id, new_ids, out, banned = info.size, {}, [], set()
    while len(new_ids) < n_new:
        found = table.best(banned)
        if found is None or found[1] < min_count:
            break
        (a, b), c = found
        s = strings[a] + strings[b]
        if s in vocab or s in added:
            banned.add((a, b))
            continue
        if s not in new_ids:
            new_ids[s] = next_id
            strings[next_id] = s
            pieces[next_id] = pieces.get(a, (a,)) + pieces.get(b, (b,))
            next_id += 1
        tid = new_ids[s]
        out.append(NewMerge(strings[a], strings[b], s, tid, pieces[tid], c))
        table.merge((a, b), tid)
    return out


# --------------------------------------------------------------------------------------------
# Tokenizer and model


def extend_tokenizer(tok, merges: list[NewMerge]):
    """``tok`` with the new tokens and merges appended (module docstring); ``tok`` itself is
    not modified. Its chat template, special tokens and options are carried over."""
    from .surgery.tokenizer import _new_tokenizer

    info = tokenizer_info(tok)
    data = {k: v for k, v in info.data.items() if k != "model"}
    model = dict(info.model)
    model["vocab"] = dict(info.model["vocab"])
    old = info.model.get("merges") or []
    as_strings = bool(old) and isinstance(old[0], str)
    new = []
    for m in merges:
        model["vocab"].setdefault(m.token, m.token_id)
        if as_strings and (" " in m.left or " " in m.right):
            raise InputError(f"New merge {m.left!r} + {m.right!r} contains a space, which "
                             "this tokenizer.json's 'a b' merge encoding cannot hold.")
        new.append(f"{m.left} {m.right}" if as_strings else [m.left, m.right])
    model["merges"] = list(old) + new
    data["model"] = model
    data["added_tokens"] = copy.deepcopy(info.data.get("added_tokens") or [])
    return _new_tokenizer(tok, json.loads(json.dumps(data)))


def new_token_pieces(merges: list[NewMerge]) -> list[tuple[int, ...]]:
    """The original pieces of each new token, in id order (one entry per new token)."""
    first: dict[int, tuple[int, ...]] = {}
    for m in merges:
        first.setdefault(m.token_id, m.pieces)
    return [first[i] for i in sorted(first)]


def extend_model(model, n_old: int, pieces: list[tuple[int, ...]],
                 pad_to_multiple_of: int | None = None, scale: float = 1.0):
    """Give ``model`` rows for ``len(pieces)`` new tokens (ids ``n_old``, ...) in place; each
    new embedding and head row is ``scale`` times the mean of its pieces' rows (a bias entry:
    the plain mean). Rows past ``n_old`` (padding of a pruned model) are dropped; the result is
    padded again to ``pad_to_multiple_of`` like `pipeline.surgery.model.prune_model` does.
    Returns the model."""
    import torch

    from .surgery.model import (_replace_param, _retie, _update_vocab_size, heads_are_tied,
                                padded_row_count)

    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    old_rows = emb.weight.shape[0]
    n_new = n_old + len(pieces)
    rows = padded_row_count(n_new, pad_to_multiple_of)
    tied = heads_are_tied(model)

    def grown(t: torch.Tensor, fill: float, factor: float = scale) -> torch.Tensor:
        out = torch.full((rows, *t.shape[1:]), fill, dtype=t.dtype, device=t.device)
        src = t.detach()
        out[:n_old] = src[:n_old]
        for k, p in enumerate(pieces):
            out[n_old + k] = (src[list(p)].float().mean(0) * factor).to(t.dtype)
        return out

    _replace_param(emb, "weight", grown(emb.weight, 0.0))
    emb.num_embeddings = rows
    if head is not None:
        if getattr(head, "bias", None) is not None:
            low = torch.finfo(head.bias.dtype).min / 2
            _replace_param(head, "bias", grown(head.bias, low, 1.0))
        if tied:
            _retie(model)
        else:
            _replace_param(head, "weight", grown(head.weight, 0.0))
        if hasattr(head, "out_features"):
            head.out_features = rows
    _update_vocab_size(model, old_rows, rows)
    info = dict(getattr(model.config, "pipeline_pruned", None) or {})
    model.config.pipeline_pruned = {**info, "kept_rows": int(n_new),
                                    "padded_rows": int(rows - n_new)}
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        kept = [int(t) for t in (gen.suppress_tokens or []) if int(t) < n_old]
        gen.suppress_tokens = (kept + list(range(n_new, rows))) or None
    return model


def tokens_per_eojeol(tok, texts: list[str], eojeol: int) -> float | None:
    """Tokens (no special tokens) per eojeol of ``texts`` under ``tok``."""
    if not eojeol:
        return None
    encs = tok.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
    return round(sum(len(e.ids) for e in encs) / eojeol, 6)


def roundtrip_failures(tok, texts: list[str]) -> list[int]:
    """Indices of ``texts`` for which ``decode(encode(text)) != text``."""
    encs = tok.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
    dec = tok.backend_tokenizer.decode_batch([e.ids for e in encs], skip_special_tokens=False)
    return [i for i, (t, d) in enumerate(zip(texts, dec)) if t != d]
