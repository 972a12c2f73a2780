"""Ranks of token texts in a reference tokenizer, for ``[select] top_latin_rank = "reference"``.

Gemma 3's Latin ids (and its merges, in id order) follow English prose; a tokenizer whose ids
follow frequency in web and code text ranks the English of Korean technical text (pip, sudo,
hostname) thousands of places earlier. `reference_rank` gives, per token text, the rank of the
same text in the reference (``[select] latin_reference``):

- ``tekken``: the embedded Mistral Tekken (`pipeline.tokenizer_io.tekken_path`), or any Tekken
  ``.json``: ``vocab`` entries ``{rank, token_bytes (base64), token_str}``; only the first
  ``config.default_vocab_size - config.default_num_special_tokens`` are real tokens (the rest
  of the id space holds the special tokens); bytes that are not UTF-8 are skipped;
- a ``tokenizer.json`` (or a directory holding one): byte-level BPE (token strings mapped back
  to bytes through the GPT-2 byte alphabet), or SentencePiece-style BPE / Unigram (``▁`` is a
  space; ``<0xNN>`` byte-fallback pieces skipped); the rank is the id. Added tokens are skipped.

The first (lowest) rank of a text wins. Texts are matched as `pipeline.score` decodes them
(``decoded``: a real leading space for the space marker). A missing path is a `ConfigError`, a
file that is no such tokenizer an `InputError`, both naming the key. Parsed files are cached per
path, size and modification time.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from pathlib import Path

import numpy as np

from .errors import ConfigError, InputError

KEY = "[select] latin_reference"
TEKKEN = "tekken"
ABSENT = np.iinfo(np.int64).max  # rank of a text the reference lacks


def reference_path(spec: str) -> Path:
    """The file ``spec`` names: Tekken's for ``tekken``, ``dir/tokenizer.json`` for a
    directory; `ConfigError` naming the key when there is none."""
    if spec == TEKKEN:
        from .tokenizer_io import tekken_path

        return tekken_path()
    p = Path(spec).expanduser()
    if p.is_dir():
        p = p / "tokenizer.json"
    if not p.is_file():
        raise ConfigError(f"{KEY} = {spec!r}: {p} does not exist. Give `tekken` (the embedded "
                          "Mistral Tekken), a Tekken .json or a tokenizer.json (or a directory "
                          "holding one) whose ids follow token frequency.")
    return p


def reference_ranks(spec: str) -> dict[str, int]:
    """Text -> rank (0 = most frequent) of every token of the reference ``spec``."""
    p = reference_path(spec)
    st = p.stat()
    return _load(str(p.resolve()), st.st_size, st.st_mtime_ns)


def reference_rank(texts, spec: str) -> np.ndarray:
    """Per text (None allowed): its rank in the reference, `ABSENT` where it has none."""
    ranks = reference_ranks(spec)
    return np.array([ranks.get(t, ABSENT) if t is not None else ABSENT for t in texts],
                    dtype=np.int64)


@functools.lru_cache(maxsize=4)
def _load(path: str, size: int, mtime_ns: int) -> dict[str, int]:  # size, mtime: cache key
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{KEY}: {path} is not a readable JSON file ({type(e).__name__}: "
                         f"{e}). Give a Tekken .json or a tokenizer.json.") from e
    if not isinstance(data, dict):
        raise InputError(f"{KEY}: {path} holds no tokenizer (a JSON {type(data).__name__}). "
                         "Give a Tekken .json or a tokenizer.json.")
    if isinstance(data.get("vocab"), list) and isinstance(data.get("config"), dict):
        pairs = _tekken_texts(data, path)
    elif isinstance(data.get("model"), dict):
        pairs = _hf_texts(data, path)
    else:
        raise InputError(f"{KEY}: {path} is neither a Tekken .json (`config` and `vocab`) nor a "
                         "tokenizer.json (`model`). Give one of those.")
    ranks: dict[str, int] = {}
    for rank, text in sorted(pairs, key=lambda p: p[0]):
        ranks.setdefault(text, rank)
    if not ranks:
        raise InputError(f"{KEY}: {path} has no token with UTF-8 text. Give a tokenizer with "
                         "a vocabulary.")
    return ranks


def _tekken_texts(data: dict, path: str) -> list[tuple[int, str]]:
    cfg = data["config"]
    try:
        n = int(cfg["default_vocab_size"]) - int(cfg["default_num_special_tokens"])
        out = []
        for k, entry in enumerate(data["vocab"][:n]):
            text = _utf8(base64.b64decode(entry["token_bytes"], validate=True))
            if text:
                out.append((int(entry.get("rank", k)), text))
    except (KeyError, TypeError, ValueError, binascii.Error) as e:
        raise InputError(f"{KEY}: {path} is not a valid Tekken file ({type(e).__name__}: {e}): "
                         "it needs config.default_vocab_size, config.default_num_special_tokens "
                         "and vocab entries with base64 token_bytes.") from e
    return out


def _hf_texts(data: dict, path: str) -> list[tuple[int, str]]:
    from .closure import METASPACE, _family_from_json

    try:
        family = _family_from_json(data)
    except InputError as e:
        raise InputError(f"{KEY}: {path}: {e}") from None
    model = data["model"]
    added = {a.get("id") for a in data.get("added_tokens") or [] if isinstance(a, dict)}
    if family == "unigram":
        items = [(i, entry[0]) for i, entry in enumerate(model.get("vocab") or [])]
    elif family in ("bytelevel_bpe", "sentencepiece_bpe"):
        items = [(i, t) for t, i in (model.get("vocab") or {}).items()]
    else:
        raise InputError(f"{KEY}: {path} is a {family} tokenizer; a reference must be "
                         "byte-level BPE, SentencePiece-style BPE or Unigram (its token texts "
                         "must carry their spaces).")
    out = []
    byte_of = _byte_decoder() if family == "bytelevel_bpe" else None
    for i, token in items:
        if i in added or not isinstance(token, str):
            continue
        if byte_of is not None:
            if any(c not in byte_of for c in token):
                continue
            text = _utf8(bytes(byte_of[c] for c in token))
        elif len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
            continue  # byte fallback piece
        else:
            text = token.replace(METASPACE, " ")
        if text:
            out.append((int(i), text))
    return out


def _utf8(b: bytes) -> str | None:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return None


@functools.lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte alphabet reversed: the character standing for each byte -> the byte."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars
