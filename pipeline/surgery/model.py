"""Model surgery: cut a causal LM's vocabulary down to a kept set of token ids.

What it does:
- `load_source_model` loads the source model (a hub id or a local ``save_pretrained``
  directory) through ``AutoModelForCausalLM``, reading weights from safetensors only unless
  pickle loading is explicitly allowed, and turns every way a source can be unusable into an
  `InputError` that names the path and says what to do. It never writes to the source.
- `prune_model` keeps the input-embedding rows and the LM-head rows (and LM-head bias entries)
  of ``kept_old_ids``, in that order, so new id ``i`` is old id ``kept_old_ids[i]``. Tied
  heads stay tied, untied heads are sliced on their own, the row count can be padded to a
  multiple of N, and ``config.vocab_size`` plus the special ids of ``config`` and
  ``generation_config`` are rewritten (`remap_special_ids`).
- `save_pruned_model` writes the result (safetensors) through a temporary directory next to
  the target and renames it into place, so a crash never leaves a half-written model.

What it does not do: it does not touch the tokenizer (see `pipeline.surgery.tokenizer`), it
does not choose the kept set, it does not quantize or change dtypes, and it does not support
models whose weights are offloaded (meta device) or quantized.

Padding rows (``pad_to_multiple_of``) exist only to round the matrix shapes up for fast
kernels; no tokenizer id points to them. Their embedding rows are zero. Their LM-head rows
are zero too, and where the head has a bias the padded bias entries are ``finfo(dtype).min / 2``
so a padded logit can never win an argmax. A head *without* bias cannot be made to lose: a
zero row gives a logit of exactly 0, and real logits can all be negative, so a padded row
*can* win a raw argmax. For that reason every padded id is also added to
``generation_config.suppress_tokens`` (``generate()`` then masks them to ``-inf``), the number
of real rows is recorded in ``config.pipeline_pruned["kept_rows"]``, and the verifiers in
`pipeline.verify_model` compare only the real rows ``[:kept_rows]``. Code that takes a raw
argmax over the logits of a padded model without ``generate()`` must slice ``[..., :kept_rows]``.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..errors import InputError

log = logging.getLogger(__name__)

#: Config/generation-config fields holding one token id (or a list of them for eos) that must
#: survive pruning; a field whose token was dropped is an error.
SPECIAL_ID_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")
GENERATION_ONLY_ID_FIELDS = ("forced_bos_token_id", "forced_eos_token_id")
#: Generation-config lists of ids to suppress; dropped ids are simply removed from them.
SUPPRESS_FIELDS = ("suppress_tokens", "begin_suppress_tokens")

PICKLE_WEIGHT_NAMES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
SAFETENSORS_INDEX = "model.safetensors.index.json"


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

def _looks_like_path(source: str) -> bool:
    """A source that cannot be a hub id (``owner/name`` or ``name``) is a local path."""
    return source.startswith((".", "~", os.sep)) or source.count("/") >= 2 or "\\" in source


def _check_safetensors_file(path: Path) -> None:
    """Open ``path`` with safetensors (header + buffer-length check, no tensor data read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except Exception as e:  # SafetensorError, OSError, ...
        raise InputError(
            f"Model weights file {path} is not a readable safetensors file ({type(e).__name__}: "
            f"{e}). It is probably truncated or corrupt (an interrupted download or copy); "
            "download or copy the model again."
        ) from e


def check_model_dir(path: Path, *, allow_pickle: bool = False) -> list[Path]:
    """Validate a local model directory before loading it; return its weight files.

    Checks: it is a directory, it has ``config.json``, it has safetensors weights (or, with
    ``allow_pickle``, ``pytorch_model.bin``), every shard named in an index exists, and every
    safetensors file has an intact header and full data buffer.
    """
    if not path.exists():
        raise InputError(
            f"Model path {path} does not exist. Check the path, or pass a hub id such as "
            "`Qwen/Qwen2.5-0.5B`."
        )
    if not path.is_dir():
        raise InputError(
            f"Model path {path} is a file. Pass the directory the model was saved to with "
            "`save_pretrained` (the one holding config.json and *.safetensors)."
        )
    if not (path / "config.json").is_file():
        raise InputError(
            f"Model directory {path} has no config.json, so it is not a `save_pretrained` "
            "directory. Pass the directory that holds config.json and the *.safetensors weights."
        )
    safetensors = sorted(path.glob("*.safetensors"))
    index = path / SAFETENSORS_INDEX
    if index.is_file():
        safetensors = _shards_from_index(index)
    if not safetensors:
        pickles = [path / n for n in PICKLE_WEIGHT_NAMES if (path / n).is_file()]
        pickles += sorted(path.glob("pytorch_model-*.bin"))
        if pickles and allow_pickle:
            return pickles
        if pickles:
            raise InputError(
                f"Model directory {path} only has pickle weights ({pickles[0].name}), no "
                "*.safetensors. Loading pickle files can run arbitrary code, so it is off by "
                "default: pass --allow-pickle if you trust this model, or convert it to "
                "safetensors first."
            )
        raise InputError(
            f"Model directory {path} has a config.json but no weights (no *.safetensors). "
            "Copy or download the weight files into it, or pass another directory."
        )
    for f in safetensors:
        _check_safetensors_file(f)
    return safetensors


def _shards_from_index(index: Path) -> list[Path]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(
            f"Safetensors index {index} is unreadable ({type(e).__name__}: {e}). Download or "
            "copy the model again."
        ) from e
    if not isinstance(weight_map, dict) or not all(isinstance(n, str) for n in weight_map.values()):
        raise InputError(f"Safetensors index {index} has a malformed weight_map (it must map "
                         "tensor names to shard file names). Download or copy the model again.")
    # lexically: a hub-cache snapshot's files are symlinks into its blobs folder, which is fine
    outside = sorted({n for n in weight_map.values() if Path(n).is_absolute() or
                      os.path.normpath(n).split(os.sep)[0] in ("..", "") or "\x00" in n})
    if outside:
        raise InputError(
            f"Safetensors index {index} names shard files outside the model directory "
            f"({', '.join(outside[:3])}); only files inside {index.parent} are read. Download or "
            "copy the complete model into one directory.")
    shards = sorted({index.parent / name for name in weight_map.values()})
    missing = [s.name for s in shards if not s.is_file()]
    if missing:
        raise InputError(
            f"Safetensors index {index} names shard files that are missing: "
            f"{', '.join(missing[:5])}. Download or copy the complete model."
        )
    return shards


def load_source_model(
    source: str | os.PathLike,
    *,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    dtype: torch.dtype | str | None = None,
):
    """Load ``source`` (hub id or local ``save_pretrained`` directory) as a causal LM.

    Weights are read with ``use_safetensors=True`` unless ``allow_pickle``. ``dtype`` is passed
    to ``from_pretrained`` when given (``torch.float32`` for exact verification); otherwise
    transformers' default (``"auto"``, the checkpoint's dtype) applies. Raises `InputError`
    for a missing path, a directory without config.json or weights, pickle-only weights
    without ``allow_pickle``, truncated safetensors, and unknown or non-causal-LM architectures.
    """
    from safetensors import SafetensorError
    from transformers import AutoConfig, AutoModelForCausalLM

    source_str = os.fspath(source)
    path = Path(source_str).expanduser()
    local = path.exists() or _looks_like_path(source_str)
    if local:
        check_model_dir(path, allow_pickle=allow_pickle)
        target = str(path)
    else:
        target = source_str
    what = f"model directory {path}" if local else f"hub model {source_str!r}"

    try:
        config = AutoConfig.from_pretrained(target, trust_remote_code=trust_remote_code)
    except (ValueError, KeyError) as e:
        raise InputError(
            f"Could not read the config of {what}: {_short(e)} The architecture is unknown to "
            "transformers (or config.json is malformed): upgrade transformers, or pass "
            "--trust-remote-code if the model ships its own modelling code and you trust it."
        ) from e
    except OSError as e:
        raise InputError(_os_error_message(what, local, e)) from e

    ckpt = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    ckpt_dtype = str(ckpt).replace("torch.", "") if ckpt else None  # before loading changes it
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "output_loading_info": True}
    kwargs["use_safetensors"] = None if allow_pickle else True
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        model, info = AutoModelForCausalLM.from_pretrained(target, config=config, **kwargs)
    except ValueError as e:
        raise InputError(
            f"Could not load {what} as a causal language model "
            f"(model_type={getattr(config, 'model_type', None)!r}): {_short(e)} Pass a "
            "decoder-only LM checkpoint (e.g. Qwen2, Llama, Mistral, Gemma)."
        ) from e
    except OSError as e:
        raise InputError(_os_error_message(what, local, e)) from e
    except (SafetensorError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        raise InputError(
            f"Could not read the weights of {what} ({type(e).__name__}: {_short(e)}) The files are "
            "probably corrupt or do not match config.json; download or copy the model again."
        ) from e
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        raise InputError(
            f"The weights of {what} lack {len(missing)} tensor(s) the architecture needs "
            f"(e.g. {', '.join(missing[:3])}); transformers would fill them with random values. "
            "The checkpoint is incomplete or does not match config.json: download or copy the "
            "complete model."
        )
    model.eval()
    model.pipeline_checkpoint_dtype = ckpt_dtype
    return model


def _short(e: BaseException, limit: int = 300) -> str:
    """First line of an exception message, cut to ``limit`` characters, ending in a period."""
    text = (str(e).strip().splitlines() or [type(e).__name__])[0].strip()
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text if text.endswith((".", "?", "!")) else text + "."


def _os_error_message(what: str, local: bool, e: OSError) -> str:
    if local:
        return (
            f"Could not load {what}: {_short(e)} Check config.json and the weight files in "
            "it, or copy or download the model again."
        )
    return (
        f"Could not load {what}: {_short(e)} No local directory of that name exists either. Check "
        "the path or the hub id and your network (offline mode is on when HF_HUB_OFFLINE=1), "
        "or pass a local directory saved with `save_pretrained`."
    )


# --------------------------------------------------------------------------------------------
# Id maps and special ids
# --------------------------------------------------------------------------------------------

def id_map_from_kept(kept_old_ids, old_vocab_size: int) -> np.ndarray:
    """Return the old->new id map (int64, ``-1`` for dropped ids) of a sorted kept set."""
    kept = validate_kept_ids(kept_old_ids, old_vocab_size)
    id_map = np.full(old_vocab_size, -1, dtype=np.int64)
    id_map[kept] = np.arange(len(kept), dtype=np.int64)
    return id_map


def validate_kept_ids(kept_old_ids, old_vocab_size: int) -> np.ndarray:
    """Return ``kept_old_ids`` as int64 numpy, checking it is non-empty, 1-D, strictly
    ascending and within ``[0, old_vocab_size)``."""
    kept = np.asarray(kept_old_ids)
    if kept.ndim != 1 or kept.size == 0:
        raise ValueError(f"kept_old_ids must be a non-empty 1-D sequence, got shape {kept.shape}")
    if not np.issubdtype(kept.dtype, np.integer):
        raise ValueError(f"kept_old_ids must be integers, got dtype {kept.dtype}")
    kept = kept.astype(np.int64, copy=False)
    if np.any(np.diff(kept) <= 0):
        raise ValueError("kept_old_ids must be strictly ascending (sorted, no duplicates)")
    if kept[0] < 0 or kept[-1] >= old_vocab_size:
        raise ValueError(
            f"kept_old_ids must lie in [0, {old_vocab_size}) (the model's embedding rows); got "
            f"ids from {kept[0]} to {kept[-1]}. Was the kept set built for another tokenizer?"
        )
    return kept


def _map_one(id_map: np.ndarray, value: int, where: str) -> int:
    if not 0 <= value < len(id_map):
        raise InputError(
            f"{where}={value} is outside the model's vocabulary of {len(id_map)} rows. The "
            "model's config does not match its embeddings; fix config.json."
        )
    new = int(id_map[value])
    if new < 0:
        raise InputError(
            f"{where}={value} is a special token of the model but is not in the kept set. "
            "Keep every special token (bos/eos/pad) when selecting the vocabulary."
        )
    return new


def _map_field(id_map: np.ndarray, value, where: str):
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return type(value)(_map_one(id_map, int(v), f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, torch.Tensor):
        return _map_field(id_map, value.tolist(), where)
    return _map_one(id_map, int(value), where)


def _configs(model) -> list[tuple[str, Any]]:
    cfg = model.config
    out = [("config", cfg)]
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    if text is not cfg:
        out.append(("config.text_config", text))
    return out


def remap_special_ids(model, id_map) -> dict[str, Any]:
    """Rewrite bos/eos/pad/decoder_start ids of ``model.config`` (and its text config) and of
    ``model.generation_config`` (plus forced_bos/forced_eos) through ``id_map`` (old->new,
    ``-1`` = dropped); suppress lists lose their dropped ids. All values are checked before
    anything is changed: a special id that maps to -1 raises `InputError` and leaves the model
    as it was. Returns ``{"config.eos_token_id": new, ...}`` for the fields that were set."""
    id_map = np.asarray(id_map, dtype=np.int64)
    updates: list[tuple[Any, str, Any, str]] = []
    for label, cfg in _configs(model):
        for field in SPECIAL_ID_FIELDS:
            value = getattr(cfg, field, None)
            if value is not None:
                where = f"{label}.{field}"
                updates.append((cfg, field, _map_field(id_map, value, where), where))
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        for field in SPECIAL_ID_FIELDS + GENERATION_ONLY_ID_FIELDS:
            value = getattr(gen, field, None)
            if value is not None:
                where = f"generation_config.{field}"
                updates.append((gen, field, _map_field(id_map, value, where), where))
        for field in SUPPRESS_FIELDS:
            value = getattr(gen, field, None)
            if value:
                kept = [int(id_map[v]) for v in value if 0 <= v < len(id_map) and id_map[v] >= 0]
                updates.append((gen, field, kept or None, f"generation_config.{field}"))
    for obj, field, new, _ in updates:
        setattr(obj, field, new)
    return {where: new for _, _, new, where in updates}


# --------------------------------------------------------------------------------------------
# Pruning
# --------------------------------------------------------------------------------------------

def heads_are_tied(model) -> bool:
    """True when the config asks for tied embeddings AND the LM head shares the embedding's
    storage (checking both catches a config that claims tying the weights do not have)."""
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    if head is None or not _tie_flag(model):
        return False
    return head.weight is emb.weight or (
        head.weight.data_ptr() == emb.weight.data_ptr() and head.weight.shape == emb.weight.shape
    )


def _tie_flag(model) -> bool:
    cfg = model.config
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    return bool(getattr(cfg, "tie_word_embeddings", False) or
                getattr(text, "tie_word_embeddings", False))


def _set_tie_flag(model, value: bool) -> None:
    for _, cfg in _configs(model):
        if hasattr(cfg, "tie_word_embeddings"):
            cfg.tie_word_embeddings = value
    if hasattr(model, "all_tied_weights_keys"):  # transformers 5 caches the tie mapping
        model.all_tied_weights_keys = model.get_expanded_tied_weights_keys(all_submodels=True)


def _take_rows(t: torch.Tensor, index: torch.Tensor, n_rows: int, fill: float) -> torch.Tensor:
    """New tensor of ``n_rows`` rows: ``t[index]`` then ``fill`` rows. One allocation of the
    result size (no intermediate copy); ``t`` itself is not modified."""
    out = torch.empty((n_rows, *t.shape[1:]), dtype=t.dtype, device=t.device)
    k = index.numel()
    torch.index_select(t.detach(), 0, index, out=out[:k])
    if n_rows > k:
        out[k:].fill_(fill)
    return out


def _replace_param(module: nn.Module, name: str, data: torch.Tensor) -> None:
    old = getattr(module, name)
    setattr(module, name, nn.Parameter(data, requires_grad=old.requires_grad))


def padded_row_count(n_kept: int, pad_to_multiple_of: int | None) -> int:
    if pad_to_multiple_of is None:
        return n_kept
    if int(pad_to_multiple_of) < 1:
        raise ValueError(f"pad_to_multiple_of must be >= 1, got {pad_to_multiple_of}")
    m = int(pad_to_multiple_of)
    return -(-n_kept // m) * m


def prune_model(model, kept_old_ids, *, pad_to_multiple_of: int | None = None, id_map=None):
    """Keep only the vocabulary rows ``kept_old_ids`` of ``model``, in place; return the model.

    ``kept_old_ids``: strictly ascending old ids; new id ``i`` is old id ``kept_old_ids[i]``.
    ``id_map`` (old->new, -1 dropped) is derived from ``kept_old_ids`` when not given; if
    given it must agree. ``pad_to_multiple_of``: round the row count up (see module docstring
    for what padded rows contain and why a bias-free head still needs care).

    Peak memory is the model plus one new (pruned) matrix: the embedding and the head are
    rebuilt one after the other and each old matrix is released as soon as it is replaced
    (provided the caller holds no other reference to it).
    """
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    if emb is None or not hasattr(emb, "weight"):
        raise ValueError(f"{type(model).__name__} has no input embedding matrix to prune")
    if emb.weight.device.type == "meta" or (head is not None and head.weight.device.type == "meta"):
        raise ValueError("the model has weights on the meta device (offloaded); load it fully")
    old_rows = emb.weight.shape[0]
    if head is not None and head.weight.shape[0] != old_rows:
        raise ValueError(
            f"input embedding has {old_rows} rows but the LM head has {head.weight.shape[0]}; "
            "this model layout is not supported"
        )
    kept = validate_kept_ids(kept_old_ids, old_rows)
    derived = id_map_from_kept(kept, old_rows)
    if id_map is not None and not np.array_equal(np.asarray(id_map, dtype=np.int64), derived):
        raise ValueError("id_map does not match kept_old_ids (new id i must be kept_old_ids[i])")
    n_kept = len(kept)
    n_rows = padded_row_count(n_kept, pad_to_multiple_of)

    tied = heads_are_tied(model)
    remap_special_ids(model, derived)  # validates first: raises before anything changes
    if _tie_flag(model) and not tied and head is not None:
        log.warning("config says tie_word_embeddings=True but the LM head has its own weights; "
                    "pruning it separately and writing tie_word_embeddings=False")
        _set_tie_flag(model, False)
    index = torch.as_tensor(kept, dtype=torch.long, device=emb.weight.device)

    _replace_param(emb, "weight", _take_rows(emb.weight, index, n_rows, 0.0))
    emb.num_embeddings = n_rows
    if getattr(emb, "padding_idx", None) is not None:
        new_pad = int(derived[emb.padding_idx]) if emb.padding_idx < old_rows else -1
        emb.padding_idx = new_pad if new_pad >= 0 else None
    for parent in model.modules():  # the base model's own copy (Llama, Qwen2: model.padding_idx)
        pad = getattr(parent, "padding_idx", None)
        if isinstance(pad, int) and any(c is emb for c in parent.children()):
            new_pad = int(derived[pad]) if 0 <= pad < old_rows else -1
            parent.padding_idx = new_pad if new_pad >= 0 else None

    if head is not None:
        if getattr(head, "bias", None) is not None:
            very_negative = torch.finfo(head.bias.dtype).min / 2
            _replace_param(head, "bias", _take_rows(head.bias, index, n_rows, very_negative))
        if tied:
            _retie(model)
        else:
            _replace_param(head, "weight", _take_rows(head.weight, index, n_rows, 0.0))
        if hasattr(head, "out_features"):
            head.out_features = n_rows

    _update_vocab_size(model, old_rows, n_rows)
    _record_pruning(model, old_rows, n_kept, n_rows)
    return model


def _retie(model) -> None:
    """Point the LM head at the (new) input embedding through transformers' own mechanism
    (``tie_weights`` reads ``config.tie_word_embeddings`` and ``_tied_weights_keys``), so the
    saved checkpoint omits the head and ``from_pretrained`` ties it again."""
    model.tie_weights()
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    if head.weight is not emb.weight:
        log.warning("%s.tie_weights() did not tie the LM head; tying it by hand",
                    type(model).__name__)
        head.weight = emb.weight


def _update_vocab_size(model, old_rows: int, n_rows: int) -> None:
    for _, cfg in _configs(model):
        for key, value in list(vars(cfg).items()):
            if "vocab_size" in key and isinstance(value, int) and not isinstance(value, bool):
                if key == "vocab_size" or value == old_rows:
                    setattr(cfg, key, n_rows)
    for module in model.modules():  # e.g. LlamaForCausalLM.vocab_size
        if getattr(module, "vocab_size", None) == old_rows and isinstance(module.vocab_size, int):
            module.vocab_size = n_rows


def _record_pruning(model, old_rows: int, n_kept: int, n_rows: int) -> None:
    """Store the real row count in the config and suppress padded ids in ``generate()``."""
    model.config.pipeline_pruned = {
        "original_vocab_size": int(old_rows),
        "kept_rows": int(n_kept),
        "padded_rows": int(n_rows - n_kept),
    }
    gen = getattr(model, "generation_config", None)
    if gen is not None and n_rows > n_kept:
        existing = [int(t) for t in (gen.suppress_tokens or []) if int(t) < n_kept]
        gen.suppress_tokens = existing + list(range(n_kept, n_rows))


def real_vocab_rows(model) -> int:
    """Rows of the LM head that belong to real tokens (excludes padding added by pruning)."""
    info = getattr(model.config, "pipeline_pruned", None)
    if isinstance(info, dict) and "kept_rows" in info:
        return int(info["kept_rows"])
    return int(model.get_input_embeddings().weight.shape[0])


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------

def write_dir_atomically(out_dir: str | os.PathLike, write: Callable[[Path], None], *,
                         overwrite: bool = False) -> Path:
    """Run ``write(tmp_dir)`` on a fresh temporary directory next to ``out_dir``, then rename
    it to ``out_dir``. On any error the temporary directory is removed and ``out_dir`` is
    untouched. An existing non-empty ``out_dir`` is an `InputError` unless ``overwrite``."""
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise InputError(f"Output path {out} exists and is a file; pass a directory path.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(
            f"Output directory {out} already exists and is not empty. Remove it, choose "
            "another directory, or allow overwriting."
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        write(tmp)
        if out.exists():
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _save_as(model, out: Path, dtype: torch.dtype) -> None:
    """``save_pretrained`` with every floating tensor cast to ``dtype``, without changing the
    model (its tensors may be shared with another model); tensors that share storage (tied
    embeddings) stay shared, so the checkpoint keeps one copy."""
    cast: dict[tuple[int, torch.dtype], torch.Tensor] = {}
    state = {}
    for k, v in model.state_dict().items():
        key = (v.data_ptr(), tuple(v.shape))
        if key not in cast:
            cast[key] = v.detach().to(dtype) if v.is_floating_point() else v
        state[k] = cast[key]
    model.save_pretrained(out, state_dict=state)
    # save_pretrained writes the in-memory dtype into config.json; the weights are `dtype`
    cfg_file = out / "config.json"
    cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    cfg["dtype"] = str(dtype).replace("torch.", "")
    cfg_file.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def save_pruned_model(model, out_dir: str | os.PathLike, *, tokenizer=None,
                      overwrite: bool = False, dtype: torch.dtype | None = None) -> Path:
    """Save ``model`` (and ``tokenizer`` if given) to ``out_dir`` with ``save_pretrained``.

    transformers 5 always writes safetensors (its ``safe_serialization`` switch is gone);
    the result loads with plain ``AutoModelForCausalLM.from_pretrained(out_dir)``. ``dtype``:
    write the weights in this dtype (the source checkpoint's, when the model was loaded in
    fp32 for exact verification); the model itself is not changed. Refuses to
    write into (or inside) the directory the model was loaded from. Returns the resolved
    output path.
    """
    out = Path(out_dir).expanduser().resolve()
    source = getattr(model, "name_or_path", "") or ""
    src = Path(source).expanduser().resolve() if source else None
    if src is not None and src.is_dir() and (out == src or src in out.parents):
        raise InputError(
            f"Output directory {out} is (inside) the directory the source model was loaded "
            f"from ({src}); the source is never written to. Choose another output directory."
        )

    def write(tmp: Path) -> None:
        if dtype is None or dtype == model.dtype:
            model.save_pretrained(tmp)
        else:
            _save_as(model, tmp, dtype)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if not any(tmp.glob("*.safetensors")):
            raise RuntimeError(f"save_pretrained wrote no safetensors file in {tmp}")

    return write_dir_atomically(out, write, overwrite=overwrite)
