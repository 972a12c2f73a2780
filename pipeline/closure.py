"""Which token ids a pruned vocabulary must keep, and the closure of a keep set under BPE merges.

A pruned tokenizer must tokenize every text whose original tokens are all kept into exactly the
same tokens. This module computes the ids needed for that; `pipeline.surgery.tokenizer` does the
pruning itself.

- `tokenizer_family(tok)`: which kind of tokenizer this is: ``"bytelevel_bpe"`` (GPT-2, Qwen2,
  Llama-3, Tekken), ``"sentencepiece_bpe"`` (``▁`` metaspace / byte fallback: Llama-2,
  Mistral-v1), ``"unigram"`` or ``"wordpiece"``. Anything else is an `InputError`.
- `required_ids(tok)`: ids kept whatever the corpus says: special and added tokens and unk
  (``"special"``), the 256 byte tokens of byte-level BPE or the ``<0x00>``..``<0xFF>`` byte-fallback
  tokens (``"byte"``), and every id of the fixed text of the chat template (``"chat_template"``).
  For Unigram, the lowest-scoring piece is also kept (as ``"special"``): it sets the score of unk.
  Added placeholder tokens (``<unused12>``, ``[unused3]``: reserved, never seen in training;
  Gemma 3 has 6,242) get their own reason, ``"placeholder"``: a pruned tokenizer may drop them
  (`pipeline.surgery.tokenizer` accepts a keep set without them; ``[select] keep_placeholders``).
- `close_under_merges(tok, keep)`: adds, for every kept BPE token, both parts of every merge that
  produces it, recursively.

Why the closure, on a worked example. A BPE tokenizer with the merges, in rank order::

    0: Ġ t  -> Ġt          2: Ġt h -> Ġth          4: Ġth e -> Ġthe
    1: h e  -> he          3: Ġt he -> Ġthe

tokenizes `` the`` as ``Ġ t h e`` -> ``Ġt h e`` (rank 0) -> ``Ġt he`` (rank 1) -> ``Ġthe``
(rank 3). Keeping only ``Ġthe`` and the bytes drops merges 0-4 (a merge needs its two parts and
its result in the vocabulary), so the pruned tokenizer gives ``Ġ t h e``. Closing ``{Ġthe}`` adds
the parts of *both* merges that produce it (``Ġt``, ``he``, ``Ġth``, ``e``), then their parts
(``Ġ``, ``t``, ``h``): ``{Ġthe, Ġt, he, Ġth, Ġ, t, h, e}``. Every merge the original applied to a
kept token is then still there, and since the pruned merges are a subset of the original ones in
the same rank order, the lowest-ranked applicable merge at every step is the same one: the
tokenization is unchanged. Keeping only the parts of one merge per token is not enough: which
merge builds a token depends on the rest of the word, which the pruning cannot know, and real
vocabularies have many such tokens (Tekken: 269,443 merges for 131,072 tokens).

It does not choose which corpus tokens to keep, and it does not touch the tokenizer: it only reads
its ``tokenizer.json`` (``backend_tokenizer.to_str()``), parsed once per tokenizer and cached.
"""

from __future__ import annotations

import json
import re
import weakref
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterable

import numpy as np

from .errors import InputError

SUPPORTED_FAMILIES = ("bytelevel_bpe", "sentencepiece_bpe", "unigram", "wordpiece")
METASPACE = "\u2581"  # ▁
BYTE_FALLBACK_TOKENS = tuple(f"<0x{b:02X}>" for b in range(256))
# Stands in for message contents when a chat template rejects empty ones; tokens overlapping it
# are not kept.
CHAT_PLACEHOLDER = "PLACEHOLDERCONTENT"


# --------------------------------------------------------------------------------------------
# Parsed tokenizer.json, cached per tokenizer


@dataclass(frozen=True)
class MergeIndex:
    """Merges of a BPE tokenizer as ids, with a reverse index from each token to its merges.

    ``pairs[k]`` are the ids of the two parts of merge ``k`` and ``results[k]`` the id it
    produces; ``order``/``starts`` form a CSR index: the merges producing token ``t`` are
    ``order[starts[t]:starts[t + 1]]``.
    """

    pairs: np.ndarray  # (n_merges, 2) int64
    results: np.ndarray  # (n_merges,) int64
    order: np.ndarray  # merge indices sorted by result id
    starts: np.ndarray  # (size + 1,) offsets into order

    @classmethod
    def build(cls, model: dict[str, Any], size: int) -> "MergeIndex":
        vocab: dict[str, int] = model["vocab"]
        prefix = model.get("continuing_subword_prefix") or ""
        triples = np.empty((len(model["merges"]), 3), dtype=np.int64)
        for k, merge in enumerate(model["merges"]):
            a, b = split_merge(merge)
            try:
                triples[k] = (vocab[a], vocab[b], vocab[merge_result(a, b, prefix)])
            except KeyError as e:  # tokenizers refuses such files, so this is a broken input
                raise InputError(f"BPE merge {merge!r} refers to {e} which is not in the "
                                 "vocabulary; the tokenizer.json is inconsistent.") from None
        results = triples[:, 2].copy()
        order = np.argsort(results, kind="stable")
        starts = np.searchsorted(results[order], np.arange(size + 1))
        return cls(pairs=triples[:, :2].copy(), results=results, order=order, starts=starts)

    def producers(self, token_id: int) -> np.ndarray:
        """Indices of the merges whose result is ``token_id``."""
        return self.order[self.starts[token_id]:self.starts[token_id + 1]]


@dataclass
class TokenizerInfo:
    """What the pruning code needs from one tokenizer's ``tokenizer.json``. Treat as read-only."""

    data: dict[str, Any]  # the parsed tokenizer.json
    family: str
    size: int  # size of the old id space: max(len(tok), highest id + 1)
    id_to_token: dict[int, str]  # model vocabulary and added tokens
    merge_index: MergeIndex | None = field(default=None)  # BPE families only

    @property
    def model(self) -> dict[str, Any]:
        return self.data["model"]

    @cached_property
    def token_to_id(self) -> dict[str, int]:
        return {t: i for i, t in self.id_to_token.items()}


_CACHE: dict[int, tuple[weakref.ref, tuple, TokenizerInfo]] = {}


def tokenizer_info(tok) -> TokenizerInfo:
    """Parse ``tok``'s ``tokenizer.json`` once and cache it for as long as ``tok`` lives.

    The cache entry is rebuilt when the tokenizer's backend object or its length changes (e.g.
    after ``add_tokens``).
    """
    backend = _backend(tok)
    key = (id(backend), len(tok))
    entry = _CACHE.get(id(tok))
    if entry is not None and entry[0]() is tok and entry[1] == key:
        return entry[2]
    info = _build_info(tok, json.loads(backend.to_str()))
    tok_id = id(tok)
    _CACHE[tok_id] = (weakref.ref(tok, lambda ref: _forget(tok_id, ref)), key, info)
    return info


def _forget(tok_id: int, ref: weakref.ref) -> None:
    """Drop a dead tokenizer's entry (unless its id was already reused by a live one)."""
    entry = _CACHE.get(tok_id)
    if entry is not None and entry[0] is ref:
        del _CACHE[tok_id]


def _backend(tok):
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        raise InputError(
            f"Tokenizer {type(tok).__name__} has no `tokenizers` backend (it is a slow, Python "
            "tokenizer). Vocabulary pruning needs a fast tokenizer: load it with "
            "`AutoTokenizer.from_pretrained(..., use_fast=True)`."
        )
    return backend


def _build_info(tok, data: dict[str, Any]) -> TokenizerInfo:
    family = _family_from_json(data)
    model = data["model"]
    if family == "unigram":
        id_to_token = {i: piece for i, (piece, _score) in enumerate(model["vocab"])}
    else:
        id_to_token = {i: t for t, i in model["vocab"].items()}
    for added in data.get("added_tokens") or []:
        id_to_token.setdefault(added["id"], added["content"])
    size = max(len(tok), max(id_to_token, default=-1) + 1)
    merge_index = None
    if family in ("bytelevel_bpe", "sentencepiece_bpe"):
        merge_index = MergeIndex.build(model, size)
    return TokenizerInfo(data=data, family=family, size=size, id_to_token=id_to_token,
                         merge_index=merge_index)


def split_merge(merge: str | list[str]) -> tuple[str, str]:
    """The two parts of a merge in either tokenizer.json encoding: ``"a b"`` or ``["a", "b"]``."""
    if isinstance(merge, str):
        parts = merge.split(" ")
        if len(parts) != 2:
            raise InputError(f"BPE merge {merge!r} is not of the form 'left right'.")
        return parts[0], parts[1]
    return merge[0], merge[1]


def merge_result(a: str, b: str, prefix: str = "") -> str:
    """The token a merge produces; as in `tokenizers`, the right part loses the subword prefix."""
    if prefix and b.startswith(prefix):
        return a + b[len(prefix):]
    return a + b


# --------------------------------------------------------------------------------------------
# Family


def tokenizer_family(tok) -> str:
    """One of `SUPPORTED_FAMILIES`; `InputError` for any other tokenizer model."""
    return tokenizer_info(tok).family


def _family_from_json(data: dict[str, Any]) -> str:
    model = data.get("model") or {}
    model_type = model.get("type") or _guess_model_type(model)
    if model_type == "Unigram":
        return "unigram"
    if model_type == "WordPiece":
        return "wordpiece"
    if model_type == "BPE":
        if _has_component(data.get("pre_tokenizer"), "ByteLevel") or \
                _has_component(data.get("decoder"), "ByteLevel"):
            return "bytelevel_bpe"
        if model.get("byte_fallback") or _uses_metaspace(data):
            return "sentencepiece_bpe"
        model_type = "BPE without a ByteLevel or Metaspace (\u2581) pre-tokenizer"
    raise InputError(
        f"Tokenizer model type {model_type!r} is not supported for vocabulary pruning. Supported: "
        "byte-level BPE (GPT-2, Qwen2, Llama-3, Tekken), SentencePiece-style BPE with \u2581 / "
        "byte fallback (Llama-2, Mistral-v1), Unigram (SentencePiece unigram, T5, XLM-R) and "
        "WordPiece (BERT)."
    )


def _guess_model_type(model: dict[str, Any]) -> str:
    # Old tokenizer.json files have no "type" in the model section.
    if "merges" in model:
        return "BPE"
    if isinstance(model.get("vocab"), list):
        return "Unigram"
    if "max_input_chars_per_word" in model:
        return "WordPiece"
    return "unknown"


def _components(node: Any) -> Iterable[dict[str, Any]]:
    """A normalizer/pre-tokenizer/decoder/post-processor and, recursively, its sub-components."""
    if isinstance(node, dict):
        yield node
        for key in ("pretokenizers", "normalizers", "decoders", "processors"):
            for child in node.get(key) or []:
                yield from _components(child)


def _has_component(node: Any, type_name: str) -> bool:
    return any(c.get("type") == type_name for c in _components(node))


def _uses_metaspace(data: dict[str, Any]) -> bool:
    if _has_component(data.get("pre_tokenizer"), "Metaspace") or \
            _has_component(data.get("decoder"), "Metaspace"):
        return True
    for c in _components(data.get("normalizer")):
        if c.get("type") == "Prepend" and c.get("prepend") == METASPACE:
            return True
        if c.get("type") == "Replace" and c.get("content") == METASPACE:
            return True
    return False


# --------------------------------------------------------------------------------------------
# Required ids


def required_ids(tok) -> dict[int, str]:
    """Ids every pruned vocabulary must keep, each with its reason.

    Reasons: ``"special"`` (special and added tokens, unk, ids named by the post-processor or the
    padding, and for Unigram the lowest-scoring piece, which sets the score of unk),
    ``"placeholder"`` (added tokens that are reserved placeholders, see `placeholder_ids`: the
    only required ids a keep set may leave out), ``"byte"`` (the 256 byte-level BPE base tokens,
    or the ``<0x00>``..``<0xFF>`` tokens of any model with byte fallback) and ``"chat_template"``
    (ids of the template's fixed text). WordPiece and Unigram single characters are not required:
    those models fall back to unk. An id with several reasons gets the first of that order; a
    placeholder the tokenizer names (chat template included) is ``"special"``.
    """
    info = tokenizer_info(tok)
    template = chat_template_ids(tok)
    placeholders = placeholder_ids(tok, template)
    reasons: dict[int, str] = {}
    for i in (_special_ids(tok, info) | _unigram_min_score_ids(info)) - placeholders:
        reasons.setdefault(i, "special")
    for i in placeholders:
        reasons.setdefault(i, "placeholder")
    for i in _byte_ids(info):
        reasons.setdefault(i, "byte")
    for i in template:
        reasons.setdefault(i, "chat_template")
    return reasons


PLACEHOLDER = re.compile(r"<unused\d+>|\[unused\d+\]")


def placeholder_ids(tok, template: set[int] | None = None) -> set[int]:
    """Added tokens whose whole text is ``<unusedN>`` or ``[unusedN]`` (reserved slots no text
    produces: Gemma 3's ``<unused0>``..``<unused6241>``), unless the tokenizer names them
    anywhere: the post-processor, the padding, the model's unk token, its special-token map
    (bos/eos/unk/pad/mask/cls/sep and the additional/extra special tokens) or the chat template
    (``template``: its `chat_template_ids`, rendered here when not given). Tokens of the model
    vocabulary that are not added tokens (BERT's ``[unused0]``) are not placeholders."""
    info = tokenizer_info(tok)
    data, model = info.data, info.model
    named = post_processor_ids(data.get("post_processor"))
    named |= chat_template_ids(tok) if template is None else template
    named.update(i for i in tok.all_special_ids if i is not None)
    padding = data.get("padding")
    if padding and padding.get("pad_id") is not None:
        named.add(padding["pad_id"])
    if info.family == "unigram":
        named.add(model.get("unk_id"))
    elif model.get("unk_token") is not None:
        named.add(info.token_to_id.get(model["unk_token"]))
    return {a["id"] for a in data.get("added_tokens") or []
            if PLACEHOLDER.fullmatch(a["content"]) and a["id"] not in named
            and 0 <= a["id"] < info.size}


def _unigram_min_score_ids(info: TokenizerInfo) -> set[int]:
    # Unigram scores an unknown character at (lowest piece score - 10), in `tokenizers` and in
    # SentencePiece alike. Keeping the lowest-scoring piece keeps that score, so a pruned
    # vocabulary's new unk nodes always score below the pieces they replace (see
    # `close_under_merges`).
    if info.family != "unigram" or not info.model["vocab"]:
        return set()
    scores = [score for _piece, score in info.model["vocab"]]
    return {int(np.argmin(scores))}


def _special_ids(tok, info: TokenizerInfo) -> set[int]:
    data, model = info.data, info.model
    ids = {a["id"] for a in data.get("added_tokens") or []}
    ids.update(int(i) for i in tok.added_tokens_decoder)
    ids.update(i for i in tok.all_special_ids if i is not None)
    token_to_id = info.token_to_id
    if info.family == "unigram":
        if model.get("unk_id") is not None:
            ids.add(model["unk_id"])
    elif model.get("unk_token") is not None and model["unk_token"] in token_to_id:
        ids.add(token_to_id[model["unk_token"]])
    ids.update(post_processor_ids(data.get("post_processor")))
    padding = data.get("padding")
    if padding and padding.get("pad_id") is not None:
        ids.add(padding["pad_id"])
    return {i for i in ids if 0 <= i < info.size}


def post_processor_ids(node: Any) -> set[int]:
    """Every id a post-processor inserts (TemplateProcessing, Bert/Roberta, Sequence)."""
    ids: set[int] = set()
    for c in _components(node):
        for special in (c.get("special_tokens") or {}).values():
            ids.update(special.get("ids") or [])
        for key in ("sep", "cls"):
            if isinstance(c.get(key), list) and len(c[key]) == 2:
                ids.add(int(c[key][1]))
    return ids


def _byte_ids(info: TokenizerInfo) -> set[int]:
    model = info.model
    token_to_id = info.token_to_id
    tokens: Iterable[str] = ()
    if info.family == "bytelevel_bpe":
        from tokenizers.pre_tokenizers import ByteLevel

        tokens = ByteLevel.alphabet()
    if info.family == "sentencepiece_bpe" or model.get("byte_fallback"):
        tokens = list(tokens) + list(BYTE_FALLBACK_TOKENS)
    return {token_to_id[t] for t in tokens if t in token_to_id}


def chat_template_ids(tok) -> set[int]:
    """Ids of the fixed text of ``tok``'s chat template (empty set when it has none).

    The template is rendered on short conversations (system/user/assistant, with and without a
    system message, one and two user turns), with empty contents and with a placeholder, with and
    without ``add_generation_prompt``. Each rendering is tokenized whole, as it would be in use
    (a fragment tokenized alone can differ, e.g. SentencePiece prepends ``▁``), and the ids of
    tokens that do not overlap a placeholder are kept. Conversations the template rejects (e.g. a
    system role, or empty contents) are skipped; if it renders none, that is an `InputError`.

    Not covered: tool calls and other optional template branches, and tokens that join message
    text to the fixed text (e.g. Tekken's ``.ĊĊ``, a system prompt's final ``.`` and ``\\n\\n``):
    those are kept only if the corpus uses them.
    """
    if not getattr(tok, "chat_template", None):
        return set()
    ids: set[int] = set()
    errors: list[str] = []
    rendered = _rendered_templates(tok, errors)
    for text in rendered:
        ids.update(_ids_outside_placeholders(tok, text))
    if not rendered:
        raise InputError(
            f"The chat template of tokenizer {getattr(tok, 'name_or_path', '') or type(tok).__name__}"
            f" could not render any test conversation ({errors[0] if errors else 'no text'}), so"
            " the tokens of its fixed text cannot be kept. Fix the template, or remove it before"
            " pruning."
        )
    return ids


def _ids_outside_placeholders(tok, text: str) -> list[int]:
    holes, start = [], text.find(CHAT_PLACEHOLDER)
    while start >= 0:
        holes.append((start, start + len(CHAT_PLACEHOLDER)))
        start = text.find(CHAT_PLACEHOLDER, start + 1)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    return [i for i, (s, e) in zip(enc["input_ids"], enc["offset_mapping"])
            if not any(s < he and hs < e for hs, he in holes)]


def _conversations(content: str) -> list[list[dict[str, str]]]:
    system = {"role": "system", "content": content}
    user = {"role": "user", "content": content}
    assistant = {"role": "assistant", "content": content}
    return [
        [system, user, assistant],
        [system, user, assistant, user],
        [system, user],
        [user, assistant],
        [user, assistant, user],
        [user],
    ]


def _rendered_templates(tok, errors: list[str]) -> list[str]:
    rendered = []
    for content in ("", CHAT_PLACEHOLDER):
        for conversation in _conversations(content):
            for add_generation_prompt in (False, True):
                try:
                    text = tok.apply_chat_template(conversation, tokenize=False,
                                                   add_generation_prompt=add_generation_prompt)
                except Exception as e:  # jinja2 TemplateError, raise_exception(), ValueError...
                    errors.append(f"{type(e).__name__}: {e}")
                    continue
                if isinstance(text, str):
                    rendered.append(text)
    return rendered


# --------------------------------------------------------------------------------------------
# Closure under merges


def merge_index(tok) -> MergeIndex | None:
    """The cached reverse merge index of a BPE tokenizer; None for Unigram and WordPiece."""
    return tokenizer_info(tok).merge_index


def close_under_merges(tok, keep: Iterable[int], index: MergeIndex | None = None) -> set[int]:
    """``keep`` plus both parts of every merge producing a kept token, recursively.

    ``index`` may be passed to skip the cache lookup (see `merge_index`). For Unigram and
    WordPiece, ``keep`` is returned unchanged (as a new set):

    - Unigram picks the highest-scoring segmentation (Viterbi) among all segmentations into
      vocabulary pieces. Pruning removes candidate segmentations; if every piece of the original
      best one is kept, it is still a candidate with the same score and is still chosen. The only
      new candidates are unk nodes where a dropped single character stood; they score
      (lowest piece score - 10), below that character, as long as the lowest-scoring piece is
      kept (`required_ids` keeps it), so they cannot win either.
    - WordPiece takes, at each position, the longest vocabulary entry that matches. If the
      original match is kept it is still the longest match in the subset, as nothing longer can
      exist there. (A word that became unk because greedy matching got stuck is the exception:
      unk is all that is kept of it, and with fewer pieces matching may take another path.)
    """
    keep_set = {int(i) for i in keep}
    if index is None:
        index = merge_index(tok)
    if index is None:
        # Unigram / WordPiece: no merges; a subset of the vocabulary that holds the original
        # tokens of a text reproduces them (Viterbi / longest match, see above).
        return keep_set
    size = len(index.starts) - 1
    bad = [i for i in keep_set if not 0 <= i < size]
    if bad:
        raise InputError(f"Keep set has ids outside the tokenizer's 0..{size - 1}: {sorted(bad)[:5]}.")
    kept = np.zeros(size, dtype=bool)
    kept[list(keep_set)] = True
    stack = list(keep_set)
    while stack:
        token_id = stack.pop()
        for part in index.pairs[index.producers(token_id)].ravel().tolist():
            if not kept[part]:
                kept[part] = True
                stack.append(part)
    return set(np.flatnonzero(kept).tolist())
