"""Tokenizer surgery: cut a fast tokenizer's vocabulary down to a kept, closed set of ids.

What it does:
- `prune_tokenizer(tok, keep_ids)` checks that ``keep_ids`` holds every required id (reserved
  ``<unusedN>`` placeholders excepted, `pipeline.closure.placeholder_ids`) and is closed under
  BPE merges (`pipeline.closure`), then builds a new tokenizer whose ids are the
  kept ids renumbered contiguously in their old order. Everything in ``tokenizer.json`` that
  names a token or an id is rewritten: the model vocabulary (BPE, Unigram with its scores,
  WordPiece), the BPE merges (only those whose two parts and result are kept, in their old
  rank order, in the file's own encoding), the added tokens, the post-processor
  (TemplateProcessing, Bert/RobertaProcessing, Sequence) and the padding id. Model options
  (``byte_fallback``, ``ignore_merges``, ``dropout``, ``continuing_subword_prefix``, ...), the
  normalizer, pre-tokenizer and decoder are copied as they are. Special-token attributes and the
  chat template are carried over. It returns the new tokenizer and ``id_map``: old id -> new id,
  or -1 for a dropped id. The source tokenizer is not modified.
- `save_pruned_tokenizer(new_tok, out_dir)` writes it with ``save_pretrained`` (loadable with
  ``AutoTokenizer.from_pretrained(out_dir)`` and nothing else) and, when the source tokenizer
  came with a SentencePiece ``.model`` file, a pruned ``tokenizer.model`` beside it
  (`prune_sentencepiece_model`).

What it does not do: it does not choose the kept ids, does not touch the model's embeddings
(`pipeline.surgery.model`), and does not support WordLevel, plain (non byte-level, non
SentencePiece) BPE or slow tokenizers: those are `InputError`s. The new tokenizer is a
``TokenizersBackend`` (``PreTrainedTokenizerFast``) whatever the source class was, so that its
``tokenizer.json`` alone defines it; model-specific Python tokenizer classes are not kept.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..closure import TokenizerInfo, close_under_merges, required_ids, tokenizer_info
from ..errors import InputError

SENTENCEPIECE_FILE = "tokenizer.model"
# Attribute of a pruned tokenizer holding the path of its source's SentencePiece .model file.
SP_SOURCE_ATTR = "pruned_sentencepiece_source"

# init_kwargs that describe files or ids of the source and must not be carried over.
_DROPPED_INIT_KWARGS = {
    "vocab_file", "tokenizer_file", "merges_file", "vocab", "merges", "name_or_path",
    "added_tokens_decoder", "is_local", "local_files_only", "files_loaded", "_commit_hash",
    "tokenizer_object", "add_bos_token", "add_eos_token", "auto_map", "tokenizer_class",
    "special_tokens_map_file", "additional_special_tokens", "extra_special_tokens",
    "post_processor", "tokenizer_padding", "tokenizer_truncation", "chat_template", "unk_id",
}


# --------------------------------------------------------------------------------------------
# Public API


def prune_tokenizer(tok, keep_ids: Iterable[int]):
    """Return ``(new_tok, id_map)`` for the kept ids (see module docstring).

    ``keep_ids`` must contain `pipeline.closure.required_ids(tok)` (placeholders aside: an
    ``<unusedN>`` added token may be dropped like any token) and be closed under merges
    (`pipeline.closure.close_under_merges`); otherwise `InputError` names some missing tokens.
    ``id_map`` is an int64 array of length ``len(tok)`` (more if the tokenizer has ids past
    that): the new id of each old id, -1 where dropped.
    """
    info = tokenizer_info(tok)  # InputError for unsupported tokenizers
    keep = _checked_keep_set(tok, info, keep_ids)
    id_map = _id_map(info.size, keep)
    data = _pruned_json(info, id_map)
    new_tok = _new_tokenizer(tok, data)
    _check_special_tokens(tok, new_tok, id_map)
    sp_source = _sentencepiece_source(tok)
    setattr(new_tok, SP_SOURCE_ATTR, str(sp_source) if sp_source else None)
    return new_tok, id_map


def save_pruned_tokenizer(new_tok, out_dir: str | os.PathLike,
                          sentencepiece_model: str | os.PathLike | None = None) -> list[Path]:
    """Save a pruned tokenizer to ``out_dir``; return the files written.

    ``sentencepiece_model`` is the source's SentencePiece ``.model`` file; by default the one
    `prune_tokenizer` found on the source (``vocab_file``), if any. When there is one, a pruned
    copy holding the pieces of ``new_tok``'s vocabulary is written as ``tokenizer.model``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [Path(p) for p in new_tok.save_pretrained(str(out))]
    source = sentencepiece_model or getattr(new_tok, SP_SOURCE_ATTR, None)
    if source:
        source = Path(source)
        if not source.is_file():
            raise InputError(f"SentencePiece model {source} does not exist; pass the source "
                             "tokenizer's .model file, or none.")
        pruned = prune_sentencepiece_model(source.read_bytes(), set(new_tok.get_vocab()))
        target = out / SENTENCEPIECE_FILE
        target.write_bytes(pruned)
        written.append(target)
    return written


def prune_sentencepiece_model(model_bytes: bytes, keep_pieces: set[str]) -> bytes:
    """A SentencePiece ``ModelProto`` holding only ``keep_pieces``, plus every unknown, control
    and byte piece, in their old order with their scores and types.

    The ``unk/bos/eos/pad`` ids of the trainer spec are renumbered and its ``vocab_size`` set to
    the new piece count. Raises `InputError` if ``model_bytes`` is not a SentencePiece model.
    """
    from sentencepiece import sentencepiece_model_pb2 as spm_pb2

    proto = spm_pb2.ModelProto()
    try:
        proto.ParseFromString(model_bytes)
    except Exception as e:  # google.protobuf.message.DecodeError
        raise InputError(f"Not a SentencePiece model file ({type(e).__name__}: {e}).") from e
    if not proto.pieces:
        raise InputError("SentencePiece model has no pieces; is it really a .model file?")
    always = {spm_pb2.ModelProto.SentencePiece.UNKNOWN, spm_pb2.ModelProto.SentencePiece.CONTROL,
              spm_pb2.ModelProto.SentencePiece.BYTE}
    old_pieces = [_copy_piece(p) for p in proto.pieces]
    kept = [p for p in old_pieces if p.type in always or p.piece in keep_pieces]
    new_index = {p.piece: i for i, p in enumerate(kept)}
    spec = proto.trainer_spec
    for name in ("unk", "bos", "eos", "pad"):
        old_id = getattr(spec, f"{name}_id")
        if 0 <= old_id < len(old_pieces):
            setattr(spec, f"{name}_id", new_index.get(old_pieces[old_id].piece, -1))
    del proto.pieces[:]
    proto.pieces.extend(kept)
    spec.vocab_size = len(kept)
    return proto.SerializeToString()


def _copy_piece(piece):
    copied = type(piece)()
    copied.CopyFrom(piece)
    return copied


# --------------------------------------------------------------------------------------------
# Checks


def _checked_keep_set(tok, info: TokenizerInfo, keep_ids: Iterable[int]) -> set[int]:
    keep = {int(i) for i in keep_ids}
    unknown = sorted(i for i in keep if i not in info.id_to_token)
    if unknown:
        raise InputError(f"Keep set has {len(unknown)} ids that are not tokens of this "
                         f"tokenizer (0..{info.size - 1}), e.g. {unknown[:5]}.")
    # placeholders (<unusedN> added tokens no text produces) are the one optional kind
    missing = {i: r for i, r in required_ids(tok).items()
               if i not in keep and r != "placeholder"}
    if missing:
        sample = ", ".join(f"{info.id_to_token[i]!r} (id {i}, {r})"
                           for i, r in sorted(missing.items())[:5])
        raise InputError(
            f"Keep set lacks {len(missing)} required tokens, e.g. {sample}. Add "
            "`pipeline.closure.required_ids(tok)` to the keep set before pruning.")
    unclosed = sorted(close_under_merges(tok, keep, info.merge_index) - keep)
    if unclosed:
        sample = ", ".join(f"{info.id_to_token[i]!r} (id {i})" for i in unclosed[:5])
        raise InputError(
            f"Keep set is not closed under the BPE merges: {len(unclosed)} merge parts of kept "
            f"tokens are missing, e.g. {sample}. Pass it through "
            "`pipeline.closure.close_under_merges(tok, keep)` first.")
    return keep


def _check_special_tokens(tok, new_tok, id_map: np.ndarray) -> None:
    """The new tokenizer must name the same special tokens, at the mapped ids (else: a bug)."""
    for name, token in tok.special_tokens_map.items():
        old_id, new_id = getattr(tok, f"{name}_id", None), getattr(new_tok, f"{name}_id", None)
        expected_id = None if old_id is None else int(id_map[old_id])
        if str(getattr(new_tok, name, None)) != str(token) or new_id != expected_id:
            raise RuntimeError(f"Pruned tokenizer has {name}={getattr(new_tok, name, None)!r} "
                               f"(id {new_id}); expected {token!r} (id {expected_id}).")


# --------------------------------------------------------------------------------------------
# tokenizer.json rewriting


def _id_map(size: int, keep: set[int]) -> np.ndarray:
    id_map = np.full(size, -1, dtype=np.int64)
    kept = np.array(sorted(keep), dtype=np.int64)
    id_map[kept] = np.arange(len(kept), dtype=np.int64)
    return id_map


def _pruned_json(info: TokenizerInfo, id_map: np.ndarray) -> dict[str, Any]:
    """A new tokenizer.json dict; the cached source dict is not modified."""
    data = {k: v for k, v in info.data.items() if k != "model"}
    data["model"] = _pruned_model(info, id_map)
    data["added_tokens"] = _pruned_added_tokens(info.data.get("added_tokens") or [], id_map)
    data["post_processor"] = _remap_post_processor(info.data.get("post_processor"), id_map)
    if info.data.get("padding"):
        data["padding"] = dict(info.data["padding"])
        pad_id = data["padding"].get("pad_id")
        if pad_id is not None:
            data["padding"]["pad_id"] = int(id_map[pad_id])
    return data


def _pruned_model(info: TokenizerInfo, id_map: np.ndarray) -> dict[str, Any]:
    model = {k: v for k, v in info.model.items() if k not in ("vocab", "merges")}
    old = info.model
    if info.family == "unigram":
        model["vocab"] = [list(entry) for i, entry in enumerate(old["vocab"]) if id_map[i] >= 0]
        if old.get("unk_id") is not None:
            model["unk_id"] = int(id_map[old["unk_id"]])
        return model
    model["vocab"] = {t: int(id_map[i]) for t, i in old["vocab"].items() if id_map[i] >= 0}
    if "merges" in old:
        model["merges"] = _pruned_merges(info, id_map)
    return model


def _pruned_merges(info: TokenizerInfo, id_map: np.ndarray) -> list:
    """Merges whose two parts and result are kept, in rank order, in the source's encoding."""
    index = info.merge_index
    kept = id_map >= 0
    mask = kept[index.pairs[:, 0]] & kept[index.pairs[:, 1]] & kept[index.results]
    merges = info.model["merges"]
    return [copy.copy(merges[k]) for k in np.flatnonzero(mask).tolist()]


def _pruned_added_tokens(added: list[dict[str, Any]], id_map: np.ndarray) -> list[dict[str, Any]]:
    out = []
    for token in added:
        if id_map[token["id"]] >= 0:
            out.append({**token, "id": int(id_map[token["id"]])})
    return out


def _remap_post_processor(node: Any, id_map: np.ndarray) -> Any:
    if not isinstance(node, dict):
        return node
    kind = node.get("type")
    node = copy.deepcopy(node)
    if kind == "Sequence":
        node["processors"] = [_remap_post_processor(p, id_map) for p in node["processors"]]
    elif kind == "TemplateProcessing":
        for special in node.get("special_tokens", {}).values():
            special["ids"] = [int(id_map[i]) for i in special["ids"]]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            node[key] = [node[key][0], int(id_map[node[key][1]])]
    elif kind != "ByteLevel":
        raise InputError(f"Post-processor type {kind!r} is not supported for pruning; supported: "
                         "TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, "
                         "Sequence.")
    return node


# --------------------------------------------------------------------------------------------
# New tokenizer object


def _new_tokenizer(tok, data: dict[str, Any]):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast  # TokenizersBackend in transformers 5

    backend = Tokenizer.from_str(json.dumps(data, ensure_ascii=False))
    new_tok = PreTrainedTokenizerFast(tokenizer_object=backend, **_carried_kwargs(tok))
    # Keep the flags without rebuilding the post-processor (it is already the remapped one).
    object.__setattr__(new_tok, "_add_bos_token", getattr(tok, "add_bos_token", False))
    object.__setattr__(new_tok, "_add_eos_token", getattr(tok, "add_eos_token", False))
    return new_tok


def _carried_kwargs(tok) -> dict[str, Any]:
    """Constructor arguments of the source worth keeping: options, special tokens, template."""
    kwargs = {k: copy.deepcopy(v) for k, v in tok.init_kwargs.items()
              if k not in _DROPPED_INIT_KWARGS and not k.endswith("_token")}
    special = getattr(tok, "_special_tokens_map", None) or tok.special_tokens_map
    kwargs.update({name: value for name, value in special.items() if value is not None})
    extra = list(getattr(tok, "_extra_special_tokens", None) or
                 getattr(tok, "extra_special_tokens", None) or [])
    if extra:
        kwargs["extra_special_tokens"] = extra
    if tok.chat_template is not None:
        kwargs["chat_template"] = copy.deepcopy(tok.chat_template)
    for attr in ("model_max_length", "padding_side", "truncation_side",
                 "clean_up_tokenization_spaces", "split_special_tokens", "model_input_names"):
        if hasattr(tok, attr):
            kwargs[attr] = copy.deepcopy(getattr(tok, attr))
    return kwargs


def _sentencepiece_source(tok) -> Path | None:
    """The source's SentencePiece ``.model`` file, if it has one (``vocab_file``)."""
    candidate = getattr(tok, "vocab_file", None) or tok.init_kwargs.get("vocab_file")
    if isinstance(candidate, (str, os.PathLike)) and str(candidate).endswith(".model") \
            and Path(candidate).is_file():
        return Path(candidate)
    return None
