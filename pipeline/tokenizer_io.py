"""Load a tokenizer from any source the pipeline accepts, as a Hugging Face fast tokenizer.

Sources, tried in this order:
- a GGUF model spec (``gemma3-270m``, the built-in default, or a ``.gguf`` file): the
  tokenizer of the converted model (`pipeline.models.materialize`, converted once);
- ``"tekken"``: the embedded default, Mistral's Tekken (131k byte-level BPE) shipped in the
  ``mistral-common`` wheel, converted with ``transformers.integrations.mistral``.
- a Tekken ``.json`` file (recognised by its ``config``/``vocab`` layout);
- a ``tokenizer.json`` file of the ``tokenizers`` library;
- a local directory or a hub id, through ``AutoTokenizer`` (fast tokenizers only).

Every tokenizer is checked at load (`check_tokenizer`): a non-empty vocabulary whose ids are
exactly ``0 .. len-1``, each held by one token (a duplicate token or an id hole is refused with
the reason). Any exception the ``tokenizers``/``transformers`` libraries raise while loading
becomes one paragraph naming the source (`pipeline.safety.library_errors`).

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

    Raises `InputError` for a missing path, a file that is not a tokenizer, a slow-only
    tokenizer (the pipeline needs the Rust ``tokenizers`` backend), an inconsistent vocabulary,
    or any error of the tokenizer libraries.
    """
    from .models import is_gguf_spec, materialize
    from .safety import library_errors

    if is_gguf_spec(source):  # the converted model's own tokenizer (converted once)
        source = str(materialize(source, say=say))
    with library_errors(f"tokenizer `{source}`"):
        path = Path(source).expanduser()
        raw = path if path.is_file() else path / "tokenizer.json"
        if source != TEKKEN and raw.is_file() and raw.suffix == ".json" \
                and not _is_tekken_file(raw):
            check_tokenizer_json(raw)
        tok = _load_tokenizer(source, trust_remote_code=trust_remote_code)
        check_tokenizer(tok, source)
    return tok


def check_tokenizer_json(path: Path) -> None:
    """A tokenizer.json lists each token once: no duplicate key in the model vocabulary, no
    added token whose text the vocabulary holds under another id, no id given to two tokens."""
    dups: list[str] = []

    def pairs(items):
        seen = {}
        for k, v in items:
            if k in seen and len(dups) < 3:
                dups.append(k)
            seen[k] = v
        return seen

    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=pairs)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"Tokenizer file {path} is not valid UTF-8 JSON ({e}). Re-export or "
                         "re-download it.") from e
    fix = ("Repair or re-export the tokenizer (load it with its original library and "
           "`save_pretrained`), or pass another --tokenizer.")
    if dups:
        raise InputError(f"Tokenizer file {path} lists token(s) {', '.join(map(repr, dups))} "
                         f"twice; each token must appear once. {fix}")
    model = data.get("model") if isinstance(data, dict) else None
    vocab = model.get("vocab") if isinstance(model, dict) else None
    if isinstance(vocab, list):  # Unigram: [[piece, score], ...]
        pieces = [v[0] for v in vocab if isinstance(v, list) and v]
        seen: set = set()
        twice = [p for p in pieces if p in seen or seen.add(p)]
        if twice:
            raise InputError(f"Tokenizer file {path} lists piece(s) "
                             f"{', '.join(map(repr, twice[:3]))} twice in its vocabulary. {fix}")
        vocab = {p: i for i, p in enumerate(pieces)}
    if not isinstance(vocab, dict):
        return
    by_id = {i: t for t, i in vocab.items()}
    for a in data.get("added_tokens") or []:
        if not isinstance(a, dict):
            continue
        t, i = a.get("content"), a.get("id")
        if t in vocab and vocab[t] != i:
            raise InputError(f"Tokenizer file {path} lists {t!r} twice: as vocabulary id "
                             f"{vocab[t]} and as added token id {i}. {fix}")
        if i in by_id and by_id[i] != t:
            raise InputError(f"Tokenizer file {path} gives id {i} to two tokens: {by_id[i]!r} "
                             f"and the added token {t!r}. {fix}")
        by_id[i] = t


def check_tokenizer(tok, source: str) -> None:
    """The vocabulary is non-empty and consistent: ids ``0 .. len(tok)-1``, one token each."""
    n = len(tok)
    vocab = tok.get_vocab()
    fix = ("Repair or re-export the tokenizer (e.g. load it with its original library and "
           "`save_pretrained`), or pass another --tokenizer.")
    if n == 0 or not vocab:
        raise InputError(f"Tokenizer `{source}` has an empty vocabulary (0 tokens), so it cannot "
                         f"tokenize anything. {fix}")
    ids = set(vocab.values())
    holes = sorted(set(range(n)) - ids)
    beyond = sorted(i for i in ids if i < 0 or i >= n)
    if len(vocab) != n or holes or beyond:
        by_id: dict[int, list[str]] = {}
        for t, i in vocab.items():
            by_id.setdefault(i, []).append(t)
        shared = sorted((i, ts) for i, ts in by_id.items() if len(ts) > 1)
        why = []
        if holes:
            why.append(f"{len(holes)} id(s) with no token ({', '.join(map(str, holes[:5]))}"
                       f"{', ...' if len(holes) > 5 else ''}) - typically a token listed twice "
                       "(the vocabulary and added_tokens, or twice in the vocabulary)")
        if shared:
            i, ts = shared[0]
            why.append(f"id {i} held by {len(ts)} tokens ({', '.join(map(repr, ts[:3]))})")
        if beyond:
            why.append(f"id(s) outside 0..{n - 1} ({', '.join(map(str, beyond[:5]))})")
        if not why:
            why.append(f"{len(vocab)} distinct tokens for {n} ids (duplicate tokens)")
        raise InputError(f"Tokenizer `{source}` is inconsistent: {'; '.join(why)}. Token ids must "
                         f"be exactly 0..len-1, one token each. {fix}")


def _load_tokenizer(source: str, *, trust_remote_code: bool = False):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

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
