"""Load a tokenizer from any source the pipeline accepts, as a Hugging Face fast tokenizer.

Sources, tried in this order:
- a GGUF model spec (``gemma3-270m``, the built-in default, or a ``.gguf`` file): the
  tokenizer of the converted model (`pipeline.models.materialize`, converted once);
- ``"tekken"``: the embedded default, Mistral's Tekken (131k byte-level BPE) shipped in the
  ``mistral-common`` wheel, converted with ``transformers.integrations.mistral``.
- a Tekken ``.json`` file (recognised by its ``config``/``vocab`` layout);
- a ``tokenizer.json`` file of the ``tokenizers`` library;
- a local directory or a hub id, through ``AutoTokenizer`` (fast tokenizers only).

It does not tokenize anything and never enables ``trust_remote_code`` unless asked.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import InputError

TEKKEN = "tekken"


def tekken_path() -> Path:
    """Path of the Tekken tokenizer file inside the installed ``mistral-common`` wheel."""
    import mistral_common

    return Path(mistral_common.__file__).parent / "data" / "tekken_240911.json"


def _is_tekken_file(path: Path) -> bool:
    if path.suffix != ".json" or path.stat().st_size < 2:
        return False
    with open(path, "rb") as f:
        head = f.read(4096)
    return b'"config"' in head and b'"vocab"' in head and b'"model"' not in head[:200]


def looks_like_path(source: str) -> bool:
    """A local path rather than a hub id (``owner/name`` or ``name``)?"""
    return (source.startswith(("/", ".", "~")) or source.endswith((".json", ".gguf"))
            or source.count("/") > 1 or os.sep != "/" and os.sep in source)


def load_tokenizer(source: str, *, trust_remote_code: bool = False, say=None):
    """Return a ``PreTrainedTokenizerFast`` for ``source`` (see module docstring).

    Raises `InputError` for a missing path, a file that is not a tokenizer, or a slow-only
    tokenizer (the pipeline needs the Rust ``tokenizers`` backend).
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from .models import is_gguf_spec, materialize

    if is_gguf_spec(source):
        source = str(materialize(source, say=say))
    if source == TEKKEN:
        return _load_tekken(tekken_path())
    path = Path(source).expanduser()
    if path.is_file():
        if _is_tekken_file(path):
            return _load_tekken(path)
        if path.name.endswith(".json"):
            try:
                return PreTrainedTokenizerFast(tokenizer_file=str(path))
            except Exception as e:  # tokenizers raises plain Exception subclasses
                raise InputError(
                    f"Tokenizer file {path} could not be read as a `tokenizers` tokenizer.json "
                    f"({type(e).__name__}: {e}). Pass a tokenizer.json, a Tekken .json, a "
                    "directory saved with save_pretrained, or a hub id."
                ) from e
        raise InputError(
            f"Tokenizer source {path} is a file but not a .json tokenizer. Pass a "
            "tokenizer.json, a Tekken .json, a directory saved with save_pretrained, or a hub id."
        )
    if path.is_dir():
        if not any((path / n).exists() for n in ("tokenizer.json", "tokenizer_config.json",
                                                  "tokenizer.model", "vocab.txt", "vocab.json")):
            raise InputError(
                f"Directory {path} holds no tokenizer (no tokenizer.json, tokenizer_config.json, "
                "tokenizer.model or vocab file). Point --tokenizer at the directory the model's "
                "tokenizer was saved to."
            )
    elif looks_like_path(source):
        raise InputError(
            f"Tokenizer path {source} does not exist. Check the path, or pass a hub id such as "
            "`Qwen/Qwen2.5-0.5B`, or `tekken` for the embedded default."
        )
    try:
        tok = AutoTokenizer.from_pretrained(str(source), use_fast=True,
                                            trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise InputError(
            f"Could not load tokenizer {source!r}: {str(e).rstrip('.')}. Check the hub id and "
            "your network, or pass a local directory / tokenizer.json."
        ) from e
    if not getattr(tok, "is_fast", False) or not isinstance(tok, PreTrainedTokenizerFast):
        raise InputError(
            f"Tokenizer {source!r} only has a slow (Python) implementation "
            f"({type(tok).__name__}). The pipeline needs a fast tokenizer (tokenizer.json): "
            "convert it with `AutoTokenizer.from_pretrained(..., from_slow=True)` and "
            "`save_pretrained`, then pass that directory."
        )
    return tok


def _load_tekken(path: Path):
    from transformers.integrations.mistral import convert_tekken_tokenizer

    try:
        with open(path, encoding="utf-8") as f:
            json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"Tekken tokenizer file {path} is not valid JSON ({e}).") from e
    return convert_tekken_tokenizer(str(path))
