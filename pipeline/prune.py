"""The ``prune`` stage: the selected keep set applied to the tokenizer and the model, verified.

What it does, for ``python -m pipeline prune``:

1. `check_prune_inputs` (before any analysis work): the output directory is neither the source
   model directory, nor inside it, nor holding it, and is free (absent, empty, or an earlier
   output of this tool holding exactly the files its provenance lists); a local model directory has a config, readable weights and a
   tokenizer that is the analyzed one; the analyzed tokenizer is of a supported kind.
2. `prune_stage` (inside `pipeline.artifacts.run_stage`, so it writes to a temporary stage
   directory that is renamed into place when complete): loads the analyzed tokenizer and
   ``select/keep.parquet``, loads the source model (``[prune] model``: ``demo``, a local
   ``save_pretrained`` directory or a hub id), prunes both (`pipeline.surgery`), writes
   ``prune/model/`` (pruned tokenizer, pruned safetensors model, ``provenance.json``,
   ``id_map.json``), then verifies the saved directory against the original
   (`pipeline.verify`) and returns the metrics.
3. `export_output`: copies ``prune/model/`` to ``[prune] output_dir`` (temporary sibling +
   rename), when that is set and not already up to date.

Output directory layout (``prune/model/`` and ``output_dir``)::

    config.json generation_config.json model.safetensors    the pruned model
    tokenizer.json tokenizer_config.json [chat_template.jinja] [tokenizer.model]
    id_map.json        {"old_vocab_size", "old_model_rows", "new_vocab_size", "new_model_rows",
                        "kept_old_ids"}: new id i is old id kept_old_ids[i]
    provenance.json    source model, demo label, corpus, config, thresholds, kept/dropped
                       counts and reasons, tool version, sha256 of every input, and
                       ``files``: the size and sha256 of every other file of the folder

No timestamp or machine-specific path (artifacts or reports directory) goes into these files:
the same inputs give byte-identical files. Timings go to ``run.log``.

What it does not do: it does not choose the keep set (`pipeline.select`), does not fine-tune,
quantize or change the dtype of the model, and never writes to the source model directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .artifacts import (canonical_json, file_digest, fingerprint, stage_fingerprint,
                        write_json)
from .errors import InputError

DEMO = "demo"
GGUF = "gguf"
#: Arguments `build_demo_model` is called with (besides the tokenizer and seed); part of the
#: demo model's fingerprint and provenance.
DEMO_BUILD = {"arch": "mistral", "hidden_size": 64, "num_layers": 2, "num_heads": 4,
              "num_kv_heads": 2, "tie_word_embeddings": False}
MODEL_SUBDIR = "model"
PROVENANCE = "provenance.json"
ID_MAP = "id_map.json"
TOOL = "pipeline"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json",
                   "vocab.txt")
# Config keys that only say where files go; they change nothing inside the output.
_LOCATION_KEYS = ("artifacts_dir", "reports_dir")


# --------------------------------------------------------------------------------------------
# Model source: kind, fingerprint, files


def source_kind(model: str) -> str:
    """``"demo"``, ``"gguf"`` (the built-in default or a GGUF file, `pipeline.models`),
    ``"local"`` (an existing path, or something that can only be a path) or ``"hub"``; the
    same rule as `pipeline.surgery.model.load_source_model`."""
    from .models import is_gguf_spec
    from .surgery.model import _looks_like_path  # one rule for "is this a path"

    if model == DEMO:
        return DEMO
    if is_gguf_spec(model):
        return GGUF
    if Path(model).expanduser().exists() or _looks_like_path(model):
        return "local"
    return "hub"


def _source_path(model: str) -> Path:
    """A local model's directory; a GGUF model's converted directory (converted once)."""
    if source_kind(model) == GGUF:
        from .models import materialize

        return materialize(model, say=lambda m: print(m, file=sys.stderr))
    return Path(model).expanduser().resolve()


def source_file_hashes(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under a local model directory (cached per
    file size and mtime, so the fingerprint and the provenance hash each file once)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[p.relative_to(root).as_posix()] = _cached_digest(str(p), st.st_size,
                                                                 st.st_mtime_ns)
    return out


_DIGESTS: dict[tuple[str, int, int], str] = {}


def _cached_digest(path: str, size: int, mtime_ns: int) -> str:
    key = (path, size, mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_digest(path)
    return _DIGESTS[key]


def model_source_fingerprint(cfg) -> str:
    """Fingerprint of ``[prune] model``: the seed and build parameters of the demo model (and
    the library versions that initialise it), the digest of a local directory's files, or a
    hub id as given."""
    model = cfg.prune.model
    kind = source_kind(model)
    if kind == DEMO:
        import torch
        import transformers

        return fingerprint(DEMO, cfg.prune.demo_seed, DEMO_BUILD, torch.__version__,
                           transformers.__version__)
    if kind == GGUF:  # the GGUF's digest: the converted directory is a function of it
        from .models import gguf_fingerprint

        return gguf_fingerprint(model)
    if kind == "local":
        root = _source_path(model)
        if not root.is_dir():  # reported by check_prune_inputs; --dry-run must not crash
            return fingerprint("missing", str(root))
        return fingerprint("dir", source_file_hashes(root))
    return fingerprint("hub", model)


# --------------------------------------------------------------------------------------------
# Checks before any work


def check_prune_inputs(run) -> None:
    """Every check on ``[prune]`` inputs that needs no analysis; `InputError` otherwise."""
    pc = run.cfg.prune
    kind = source_kind(pc.model)
    out = output_dir(run.cfg)
    if kind == GGUF and out is not None and pc.model not in _builtins():
        from .models import gguf_path

        given = Path(pc.model).expanduser().resolve()  # the GGUF's folder, or the file itself
        _check_output_location(out, given if given.is_dir() else gguf_path(pc.model))
    if kind in ("local", GGUF):
        src = _source_path(pc.model)
        if out is not None:
            _check_output_location(out, src)
        from .surgery.model import check_model_dir

        check_model_dir(src, allow_pickle=pc.allow_pickle)
        _require_tokenizer_files(src)
    if kind != DEMO:
        _check_same_tokenizer(run)
    if out is not None:
        _check_output_free(out)
    _check_tokenizer_supported(run)


def output_dir(cfg) -> Path | None:
    """The resolved ``[prune] output_dir``, or None when unset."""
    return Path(cfg.prune.output_dir).expanduser().resolve() if cfg.prune.output_dir else None


def _check_output_location(out: Path, src: Path) -> None:
    if out == src or src in out.parents:
        raise InputError(
            f"Output directory {out} is {'the' if out == src else 'inside the'} source model "
            f"directory {src}; the source model is never written to. Pass another --output-dir "
            "(outside the model directory).")
    if out in src.parents:
        raise InputError(
            f"Output directory {out} contains the source model directory {src}; writing the "
            "output would replace it. Pass another --output-dir (outside the model directory).")


def _output_listing(d: Path) -> dict | None:
    """The ``files`` its provenance.json lists, when ``d`` holds an output of this tool."""
    try:
        prov = json.loads((d / PROVENANCE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(prov, dict) or prov.get("tool") != TOOL:
        return None
    files = prov.get("files")
    return files if isinstance(files, dict) else None


def _foreign_files(d: Path) -> str:
    """'' when ``d`` holds exactly the files its provenance lists (with their sizes): an
    earlier output of this tool that may be replaced; else what is there besides."""
    listing = _output_listing(d)
    if listing is None:
        return ("it does not hold an earlier output of this tool (no provenance.json listing "
                "its files)")
    expected = set(listing) | {PROVENANCE}
    present = {p.name for p in d.iterdir()}
    extra = sorted(present - expected)
    if extra:
        return f"it holds files the earlier output did not write ({', '.join(extra[:5])})"
    for name in sorted(present):
        p = d / name
        if p.is_symlink() or not p.is_file():
            return f"{name} is not a regular file the pipeline wrote"
        if name in listing and p.stat().st_size != listing[name].get("bytes"):
            return f"{name} was changed since the pipeline wrote it"
    return ""


def _is_our_output(d: Path) -> bool:
    return d.is_dir() and not _foreign_files(d)


def _check_output_free(out: Path) -> None:
    if out.is_symlink():
        raise InputError(f"Output directory {out} is a symbolic link; the pipeline does not "
                         "replace links. Pass the real directory or another --output-dir.")
    if out.exists() and not out.is_dir():
        raise InputError(f"Output directory {out} exists and is a file. Pass a directory path "
                         "as --output-dir.")
    if out.is_dir() and any(out.iterdir()):
        why = _foreign_files(out)
        if why:
            raise InputError(
                f"Output directory {out} exists, is not empty and {why}, so it is not replaced: "
                "nothing the pipeline did not write is ever deleted. Move those files away, or "
                "pass another --output-dir.")


def _require_tokenizer_files(src: Path) -> None:
    if not any((src / n).is_file() for n in TOKENIZER_FILES):
        raise InputError(
            f"Model directory {src} has no tokenizer (no tokenizer.json or tokenizer_config.json)"
            ": a model directory without a tokenizer cannot be checked against the analyzed "
            "vocabulary. Save the model's own tokenizer into it (`tokenizer.save_pretrained("
            f"dir)`), then analyze with `--tokenizer {src}`.")


def _builtins() -> dict:
    from .models import BUILTINS

    return BUILTINS


def _same_source(tokenizer_source: str, model: str) -> bool:
    if source_kind(model) == "hub" or tokenizer_source == model:
        return tokenizer_source == model
    if source_kind(model) == GGUF:
        from .models import gguf_sha256, is_gguf_spec

        return is_gguf_spec(tokenizer_source) and gguf_sha256(tokenizer_source) == \
            gguf_sha256(model)
    return tokenizer_source != "tekken" and _source_path(tokenizer_source) == _source_path(model)


def _check_same_tokenizer(run) -> None:
    """The model's own tokenizer is the one the run analyzed (same vocabulary, merges, added
    tokens, normalizer, pre-tokenizer); skipped when the run analyzed the model's source."""
    model, tok_src = run.cfg.prune.model, run.cfg.tokenizer.source
    if _same_source(tok_src, model):
        return
    local = source_kind(model) in ("local", GGUF)
    where = f"model directory {_source_path(model)}" if local else f"hub model {model!r}"
    try:
        model_tok = _load_model_tokenizer(model, run.cfg.prune.trust_remote_code)
    except InputError as e:
        raise InputError(f"The tokenizer of {where} cannot be loaded: {e}") from e
    diff = tokenizer_difference(run.tokenizer(), model_tok)
    if diff:
        hint = _source_path(model) if local else model
        raise InputError(
            f"The tokenizer in {where} differs from the analyzed tokenizer `{tok_src}` ({diff}),"
            " so the keep set does not fit the model's vocabulary. Analyze with the model's own "
            f"tokenizer: `--tokenizer {hint}`.")


def _load_model_tokenizer(model: str, trust_remote_code: bool):
    """The tokenizer stored with a local model directory or a hub model."""
    if source_kind(model) in ("local", GGUF):
        from .tokenizer_io import load_tokenizer

        return load_tokenizer(str(_source_path(model)), trust_remote_code=trust_remote_code)
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(model, use_fast=True,
                                            trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise InputError(
            f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]} Check the hub id and "
            "your network (offline mode is on when HF_HUB_OFFLINE=1), or pass a local "
            "save_pretrained directory with --model.") from e
    if getattr(tok, "backend_tokenizer", None) is None:
        raise InputError(f"it is a slow tokenizer ({type(tok).__name__}); the pipeline needs a "
                         "fast one (tokenizer.json). Save the model with a fast tokenizer and "
                         "pass that directory with --model.")
    return tok


def tokenizer_difference(a, b) -> str:
    """'' when ``a`` and ``b`` tokenize alike (same model vocabulary, merges, added tokens,
    normalizer and pre-tokenizer in tokenizer.json); else what differs first."""
    if len(a) != len(b):
        return f"{len(a)} vs {len(b)} tokens"
    da, db = json.loads(a.backend_tokenizer.to_str()), json.loads(b.backend_tokenizer.to_str())
    for key in ("model", "added_tokens", "normalizer", "pre_tokenizer"):
        if canonical_json(da.get(key)) != canonical_json(db.get(key)):
            return f"different `{key}` in tokenizer.json"
    return ""


def _check_tokenizer_supported(run) -> None:
    from .closure import tokenizer_family

    try:
        tokenizer_family(run.tokenizer())
    except InputError as e:
        raise InputError(f"Tokenizer `{run.cfg.tokenizer.source}` cannot be pruned: {e}") from e


# --------------------------------------------------------------------------------------------
# The stage


def prune_stage(run, tmp: Path) -> dict:
    """Prune, write ``tmp/model``, verify it reloaded from disk; return the stage metrics."""
    with _progress_bars(run.progress):
        return _prune(run, tmp)


def _prune(run, tmp: Path) -> dict:
    import torch

    from .surgery.model import id_map_from_kept
    from .verify import verify_pruned

    cfg, timer = run.cfg, _Timer(run)
    tok = run.tokenizer()
    keep_path, keep = _load_keep(run, tok)
    kept = np.flatnonzero(keep["keep"].to_numpy()).astype(np.int64)
    # the only load of the source model, in fp32 for exact verification; the pruned model is
    # written in the checkpoint's own dtype
    model = load_model(cfg, tok, dtype=torch.float32)
    src = _describe_source(model, tok, cfg)
    timer.lap("model loaded")
    out = tmp / MODEL_SUBDIR
    pruned = _vocab_copy(model)  # shares every tensor with the original; pruned in place
    _write_pruned(run, out, tok, pruned, kept, provenance(run, keep, keep_path, src.info), src)
    del pruned
    timer.lap("pruned and written")
    metrics = verify_pruned(
        run, orig_tok=tok, orig_model=model,
        pruned_dir=out, kept_old_ids=kept, model_id_map=id_map_from_kept(kept, src.rows),
        params_before=src.params, bytes_before=src.bytes)
    timer.lap("verified")
    metrics["prune"] = {**metrics.get("prune", {}), **src.info,
                        "model_dir": str(run.paths.stage("prune") / MODEL_SUBDIR),
                        "output_dir": str(output_dir(cfg) or "")}
    return metrics


def _vocab_copy(model):
    """A copy of ``model`` whose modules and configs are new but whose parameters and buffers
    are the original's tensors: pruning it in place (which replaces the embedding and head
    parameters by new ones, `pipeline.surgery.model.prune_model`) leaves the original intact,
    at the cost of the pruned rows only."""
    import copy

    memo = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    return copy.deepcopy(model, memo)


@dataclass(frozen=True)
class _Source:
    """What is measured on the source model before it is pruned in place."""

    rows: int      # embedding rows (>= tokenizer size)
    info: dict     # source, demo label, architecture, dtype
    params: dict   # `param_counts`
    bytes: int     # weight files on disk


def _describe_source(model, tok, cfg) -> _Source:
    from .verify_model import param_counts

    return _Source(rows=_check_rows(model, tok, cfg.prune.model), info=_model_info(model, cfg),
                   params=param_counts(model), bytes=source_weight_bytes(cfg, model))


def _load_keep(run, tok):
    import polars as pl

    path = run.paths.stage("select") / "keep.parquet"
    keep = pl.read_parquet(path)
    if keep.height != len(tok) or keep["token_id"].to_list() != list(range(len(tok))):
        raise InputError(f"Keep set {path} does not cover the analyzed tokenizer's {len(tok)} "
                         "ids in order; it is stale or damaged. Rerun with --force.")
    return path, keep


def _write_pruned(run, out: Path, tok, model, kept: np.ndarray, prov: dict,
                  src: _Source) -> None:
    """Prune the tokenizer and (in place) the model; write both, id_map.json and
    provenance.json to ``out``."""
    from .surgery.model import prune_model, save_pruned_model
    from .surgery.tokenizer import prune_tokenizer, save_pruned_tokenizer

    cfg = run.cfg
    new_tok, _ = prune_tokenizer(tok, kept.tolist())
    prune_model(model, kept, pad_to_multiple_of=cfg.prune.pad_to_multiple_of or None)
    save_pruned_model(model, out, dtype=_checkpoint_dtype(src.info["dtype"]))
    save_pruned_tokenizer(new_tok, out, sentencepiece_model=_sentencepiece_file(cfg))
    id_map = {"old_vocab_size": len(tok), "old_model_rows": src.rows,
              "new_vocab_size": len(kept),
              "new_model_rows": int(model.get_input_embeddings().weight.shape[0]),
              "kept_old_ids": kept.tolist()}
    (out / ID_MAP).write_text(json.dumps(id_map, sort_keys=True) + "\n", encoding="utf-8")
    # every file beside it: an output folder is replaced only when it holds exactly these
    prov["files"] = {f.name: {"bytes": f.stat().st_size, "sha256": file_digest(f)}
                     for f in sorted(out.iterdir()) if f.is_file()}
    write_json(out / PROVENANCE, prov)
    _usual_modes(out)


@contextlib.contextmanager
def _progress_bars(enabled: bool):
    """transformers' loading/saving progress bars follow --no-progress."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    if not enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def _usual_modes(d: Path) -> None:
    """Give a written directory and its files the modes the umask allows (temporary
    directories are created private, 0700)."""
    mask = os.umask(0)
    os.umask(mask)
    d.chmod(0o777 & ~mask)
    for f in d.iterdir():
        if f.is_file():
            f.chmod(0o666 & ~mask)


class _Timer:
    """Logs each step's duration to run.log (timings never go into artifacts)."""

    def __init__(self, run):
        self.run, self.t = run, time.time()

    def lap(self, what: str) -> None:
        now = time.time()
        self.run.paths.log(f"[prune] {what} in {now - self.t:.1f}s")
        self.run.say(f"[prune] {what} ({now - self.t:.1f}s)")
        self.t = now


def load_model(cfg, tok, dtype=None):
    """The source model: the seeded demo model around ``tok``, or `load_source_model`."""
    if cfg.prune.model == DEMO:
        import torch

        from .demo_model import build_demo_model

        return build_demo_model(tok, seed=cfg.prune.demo_seed, dtype=dtype or torch.float32,
                                **DEMO_BUILD)
    from .surgery.model import load_source_model

    model = cfg.prune.model
    if source_kind(model) == GGUF:
        model = str(_source_path(model))
    return load_source_model(model, allow_pickle=cfg.prune.allow_pickle,
                             trust_remote_code=cfg.prune.trust_remote_code, dtype=dtype)


def _check_rows(model, tok, source: str) -> int:
    """The model's embedding row count; it may exceed the tokenizer (rows that are no token,
    dropped by pruning) but not fall short of it."""
    rows = int(model.get_input_embeddings().weight.shape[0])
    if rows < len(tok):
        raise InputError(
            f"Model {source} has {rows} embedding rows but its tokenizer has {len(tok)} tokens; "
            "the model and the tokenizer do not belong together. Pass the model's own tokenizer "
            "directory with --tokenizer.")
    return rows


def _model_info(model, cfg) -> dict:
    from .demo_model import DEMO_MODEL_NOTE, is_demo_model

    demo = is_demo_model(model)
    kind = source_kind(cfg.prune.model)
    lic = {"description": None, "license": None, "license_url": None}
    if kind == GGUF:
        from .models import source_info

        si = source_info(cfg.prune.model)
        lic = {k: si.get(k) for k in lic}
        lic["gguf"] = {k: si.get(k) for k in ("gguf_file", "gguf_sha256", "gguf_bytes", "dtype",
                                               "builtin", "upstream", "transformers")}
        lic["gguf"]["tensor_types"] = si.get("gguf_metadata", {}).get("tensor_types")
    elif demo:
        lic["description"] = "demo model (random weights)"
    return {"source_model": cfg.prune.model, "source_kind": kind, **lic,
            "demo_model": demo, "demo_note": DEMO_MODEL_NOTE if demo else None,
            "architecture": type(model).__name__, "model_type": model.config.model_type,
            "dtype": _source_dtype(cfg, model)}


def _source_dtype(cfg, model) -> str:
    """The source checkpoint's dtype (read from its config by `load_source_model`); the model
    in memory is fp32 for verification. The demo model is built in fp32."""
    d = getattr(model, "pipeline_checkpoint_dtype", None)
    return d if d in ("float32", "float16", "bfloat16") else str(model.dtype).replace("torch.", "")


def _checkpoint_dtype(name: str):
    import torch

    return getattr(torch, name)


def _sentencepiece_file(cfg) -> Path | None:
    """A local source model's SentencePiece ``tokenizer.model``, pruned beside the tokenizer."""
    if source_kind(cfg.prune.model) != "local":
        return None
    f = _source_path(cfg.prune.model) / "tokenizer.model"
    return f if f.is_file() else None


def source_weight_bytes(cfg, model) -> int:
    """Bytes of the source model's weight files (a hub model's in the local hub cache); the
    demo model is saved, unpruned, to a temporary directory to measure it."""
    kind = source_kind(cfg.prune.model)
    root = _source_path(cfg.prune.model) if kind in ("local", GGUF) \
        else _hub_snapshot(cfg.prune.model) \
        if kind == "hub" else None
    if root is not None:
        return sum(p.stat().st_size for p in root.iterdir()
                   if p.suffix in (".safetensors", ".bin") and p.is_file())
    with tempfile.TemporaryDirectory(prefix="pipeline-size-") as d:
        model.save_pretrained(d)
        return sum(p.stat().st_size for p in Path(d).glob("*.safetensors"))


def _hub_snapshot(model: str) -> Path | None:
    """The local hub-cache directory of a hub model just loaded (None if not found)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure: measure by saving instead
        return None


# --------------------------------------------------------------------------------------------
# Provenance


def provenance(run, keep, keep_path: Path, info: dict) -> dict:
    """Where the pruned model comes from (see module docstring); no timestamps, no paths of
    the artifacts tree."""
    cfg = run.cfg
    kept = keep.filter(keep["keep"])
    dropped = keep.filter(~keep["keep"])
    config = {k: v for k, v in cfg.to_dict().items() if k not in _LOCATION_KEYS}
    config["prune"] = {k: v for k, v in config["prune"].items() if k != "output_dir"}
    return {
        "tool": TOOL, "tool_version": __version__,
        **{k: info[k] for k in ("source_model", "source_kind", "description", "license",
                                "license_url", "demo_model", "demo_note", "architecture",
                                "model_type", "dtype")},
        "gguf": info.get("gguf"),
        "demo_build": {"seed": cfg.prune.demo_seed, **DEMO_BUILD}
        if info["source_kind"] == DEMO else None,
        "tokenizer_source": cfg.tokenizer.source,
        "corpus": {"description": run.source.describe(), "fingerprint": run.source.fingerprint()},
        "config": config,
        "select": {"thresholds": cfg.section_dict("select"),
                   "kept": kept.height, "dropped": dropped.height,
                   "kept_reasons": _histogram(kept), "dropped_reasons": _histogram(dropped)},
        "inputs": _input_hashes(run, keep_path),
        # not the prune stage's own fingerprint: it also covers where the output is copied
        "fingerprints": {"select": stage_fingerprint(run.paths.stage("select")),
                         "model_source": run.model_source_fp},
    }


def _histogram(df) -> dict:
    return {r: int(n) for r, n in df.group_by("reason").len().sort("reason").iter_rows()}


def _input_hashes(run, keep_path: Path) -> dict:
    model = run.cfg.prune.model
    kind = source_kind(model)
    source: dict = {"kind": kind}
    if kind == "local":
        source["files_sha256"] = source_file_hashes(_source_path(model))
    elif kind == GGUF:
        from .models import gguf_sha256

        source["gguf_sha256"] = gguf_sha256(model)
    elif kind == "hub":
        source["hub_id"] = model
    else:
        source["demo_seed"] = run.cfg.prune.demo_seed
    return {"tokenizer_json_sha256": file_digest(run.paths.tokenizer / "tokenizer.json"),
            "keep_parquet_sha256": file_digest(keep_path), "source_model": source}


# --------------------------------------------------------------------------------------------
# Export to output_dir


def export_output(run, stage_dir: Path) -> Path | None:
    """Copy ``<stage_dir>/model`` to ``[prune] output_dir`` (temporary sibling + rename) unless
    it already holds the same files; return the output path (None when unset). Temporary
    folders of an interrupted earlier export (owner process gone) are removed first."""
    from .artifacts import replace_dir
    from .safety import remove_stale

    out = output_dir(run.cfg)
    if out is None:
        return None
    remove_stale(out)
    src = stage_dir / MODEL_SUBDIR
    if _same_files(src, out):
        run.say(f"[prune] output {out} up to date")
        return out
    _check_output_free(out)  # again: it may have changed since the checks

    def copy(tmp: Path) -> None:
        for f in sorted(src.iterdir()):
            shutil.copy2(f, tmp / f.name)
        _usual_modes(tmp)

    replace_dir(out, copy)
    run.paths.log(f"[prune] model copied to {out}")
    run.say(f"[prune] model written to {out}")
    return out


def _same_files(a: Path, b: Path) -> bool:
    if not b.is_dir():
        return False
    names = sorted(p.name for p in a.iterdir())
    if names != sorted(p.name for p in b.iterdir()):
        return False
    return all((a / n).stat().st_size == (b / n).stat().st_size for n in names) and \
        (a / PROVENANCE).read_bytes() == (b / PROVENANCE).read_bytes() and \
        all(file_digest(a / n) == file_digest(b / n) for n in names)


def summary_lines(m: dict) -> list[str]:
    """What `python -m pipeline prune` prints after the run."""
    h, lg, g, p, f, v, pr = (m.get(k, {}) for k in ("heldout", "logits", "generate", "params",
                                                     "fertility", "vocab", "prune"))
    demo = " (DEMO model: random weights, outputs meaningless)" if pr.get("demo_model") else ""
    desc = f" = {pr['description']} ({pr.get('license')})" if pr.get("license") else ""
    return [
        f"pruned model: {pr.get('source_model')}{desc}{demo}",
        f"vocab: {v.get('before')} -> {v.get('after')} tokens; params {p.get('before'):,} -> "
        f"{p.get('after'):,} ({pr.get('params_saved_share', 0):.1%} saved)"
        if p else "vocab: -",
        f"held-out: identical {h.get('identical_ratio')} (select estimate "
        f"{h.get('identical_share_selected')}), round trip ok: {h.get('roundtrip_ok')}, "
        f"tokens/eojeol {f.get('before')} -> {f.get('after')}",
        f"logits max |diff| {lg.get('max_abs_diff')}; greedy agreement "
        f"{g.get('agree_restricted')}; verification passed: {m.get('verify', {}).get('passed')}",
        *_quality_lines(m),
        f"model: {pr.get('output_dir') or pr.get('model_dir')}",
    ]


def _quality_lines(m: dict) -> list[str]:
    ev = (m.get("model_eval") or {}).get("heldout") or {}
    if not ev.get("bits_per_byte"):
        return []
    b, i, c = ev["bits_per_byte"], ev.get("bits_per_byte_identical", {}), \
        ev.get("bits_per_byte_changed", {})
    g = (m.get("model_eval") or {}).get("greedy") or {}
    return [f"bits/byte (held-out, {ev.get('documents_evaluated')} docs): {b.get('before')} -> "
            f"{b.get('after')}; identical docs {i.get('before')} -> {i.get('after')}; changed "
            f"docs ({c.get('documents')}) {c.get('before')} -> {c.get('after')}",
            f"top-1 agreement {ev.get('top1_agreement')}; greedy continuations identical for "
            f"{g.get('agreement')} of the prompts"]
