"""What the pipeline may write, replace or delete, and who owns a temporary folder.

The rules (one mechanism each, used by `pipeline.artifacts`, `pipeline.runner` and the
``--output-dir`` export in `pipeline.prune`):

- **Containment**: a path we write is resolved (symlinks followed) and must stay inside the
  root it belongs to (`check_inside`); a symlink in ``artifacts/<run>/`` that leads out of it
  is refused, never followed.
- **Source model**: no output, artifacts or reports path may be at, inside or around the
  source model directory (`check_away_from_source`); checked before any work.
- **Ownership**: a folder is replaced only when it is ours: a stage directory holding our
  ``_DONE.json`` (or empty); a run folder holding our ``.pipeline-run`` marker, or only names we
  write (`claim_dir`); an output folder holding exactly the files its provenance lists
  (`pipeline.prune`).
- **Temporary folders** are named ``.<name>.tmp-<pid>-<start time>`` (and ``.old-``): one is
  stale, and removed, only when that process is gone (`owner_alive`, `remove_stale`).
- **Environment faults**: an `OSError` from the disk (full, read-only, permission) becomes one
  line naming the path and the errno (`disk_error`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import re
import shutil
from pathlib import Path
from typing import Iterable

from .errors import InputError, PipelineError

MARKER = ".pipeline-run"
_TAG = re.compile(r"\.(?:tmp|old)-(\d+)(?:-(\d+))?$")


class DiskError(PipelineError):
    """The disk refused a write (full, read-only, no permission)."""

    exit_code = 4


# -- processes ---------------------------------------------------------------------------------

def process_start(pid: int) -> int:
    """The start time (clock ticks since boot) of process ``pid``; 0 where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def owner_tag(pid: int | None = None) -> str:
    """``<pid>-<start time>`` of this (or another) process: a pid that is reused by a later
    process has another start time."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}-{process_start(pid)}"


def owner_alive(pid: int, start: int | None) -> bool:
    """Is the process that made a tagged folder still running?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if start:
        now = process_start(pid)
        return now == 0 or now == start
    return True


def tmp_sibling(final: Path, kind: str = "tmp") -> Path:
    """``<parent>/.<name>.<kind>-<pid>-<start>``: a temporary sibling owned by this process."""
    return final.parent / f".{final.name}.{kind}-{owner_tag()}"


def remove_stale(final: Path) -> list[Path]:
    """Remove ``.<name>.tmp-*`` / ``.<name>.old-*`` siblings of ``final`` whose owner process is
    gone (a killed run); a live owner's folder is left alone. Returns what was removed."""
    removed = []
    parent = final.parent
    if not parent.is_dir():
        return removed
    pat = re.compile(rf"^\.{re.escape(final.name)}\.(?:tmp|old)-(\d+)(?:-(\d+))?$")
    for p in parent.iterdir():
        m = pat.match(p.name)
        if not m or owner_alive(int(m.group(1)), int(m.group(2) or 0)):
            continue
        if p.is_symlink() or not p.is_dir():
            p.unlink(missing_ok=True)
        else:
            shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


# -- containment -------------------------------------------------------------------------------

def is_within(path: Path, root: Path) -> bool:
    path, root = Path(path).resolve(), Path(root).resolve()
    return path == root or root in path.parents


def check_inside(path: Path, root: Path, what: str) -> None:
    """``path`` (if it exists, symlinks followed) lies inside ``root``; else `InputError`."""
    if os.path.lexists(path) and not is_within(path, root):
        raise InputError(
            f"{what} {path} is a symbolic link leading outside {Path(root).resolve()} (to "
            f"{Path(path).resolve()}); the pipeline never writes through links out of its own "
            "folders. Remove the link, or point artifacts_dir/reports_dir at a real folder.")


_FLAG = {"Output directory": "--output-dir", "Artifacts folder": "artifacts_dir (or --run)",
         "Reports folder": "reports_dir (or --run)"}


def check_away_from_source(targets: dict[str, Path], src: Path,
                           kind: str = "source model directory") -> None:
    """No target may be an input directory (``kind``: the source model, the tokenizer or the
    corpus directory), lie inside it or contain it."""
    src = src.resolve()
    short = {"source model directory": ("the source model is never written to", "model"),
             "tokenizer directory": ("the pipeline never writes into its inputs", "tokenizer"),
             "corpus directory": ("the pipeline never writes into its inputs (and would read "
                                  "its own files back as corpus)", "corpus")}
    rule, noun = short.get(kind, ("the pipeline never writes into its inputs", "input"))
    for what, t in targets.items():
        t = Path(t).expanduser().resolve()
        flag = _FLAG.get(what, what.lower())
        if t == src or src in t.parents:
            raise InputError(
                f"{what} {t} is {'the' if t == src else 'inside the'} {kind} {src}; {rule}. "
                f"Pass another {flag} (outside the {noun} directory).")
        if t in src.parents:
            raise InputError(
                f"{what} {t} contains the {kind} {src}; writing there could replace the "
                f"{noun} files. Pass another {flag} (outside the {noun} directory).")


# -- ownership ---------------------------------------------------------------------------------

def _empty_dir(p: Path) -> bool:
    return p.is_dir() and not p.is_symlink() and not any(p.iterdir())


def _is_our_tmp(name: str) -> bool:
    return name.startswith(".") and bool(_TAG.search(name))


def claim_dir(d: Path, root: Path, ours: Iterable[str] = (), *, is_ours=None,
              what: str = "Run folder") -> None:
    """Make ``d`` (inside ``root``) ours to write in: create it with our marker, or accept it
    when it holds the marker, is empty, or holds only names we write (``ours``, our temporary
    names, entries ``is_ours(path)`` accepts). Otherwise `InputError` naming what is there."""
    check_inside(d, root, what)
    if d.exists() and not d.is_dir():
        raise InputError(f"{what} {d} exists and is a file, not a folder the pipeline wrote. "
                         "Move it away, or pass another --run or artifacts_dir/reports_dir.")
    if d.is_dir():
        for p in d.iterdir():  # a link out of the folder is never written through or replaced
            if p.is_symlink():
                check_inside(p, d, f"{p.name} in {what.lower()} {d}:")
    if d.is_dir() and not (d / MARKER).is_file():
        names = set(ours) | {MARKER, ".lock"}
        foreign = sorted(p.name for p in d.iterdir()
                         if not (p.name in names or _is_our_tmp(p.name) or _empty_dir(p)
                                 or (is_ours is not None and is_ours(p))))
        if foreign:
            raise InputError(
                f"{what} {d} already exists and holds files the pipeline did not write "
                f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); nothing in it "
                "is written or replaced. Pass another --run, or point artifacts_dir/reports_dir "
                "at a folder of its own.")
    d.mkdir(parents=True, exist_ok=True)
    marker = d / MARKER
    if os.path.lexists(marker) and marker.is_symlink():
        raise InputError(f"{marker} is a symbolic link; remove it.")
    if not marker.exists():
        marker.write_text("written by pipeline: this folder's contents may be replaced\n")


# -- environment faults ------------------------------------------------------------------------

DISK_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EIO,
               errno.EFBIG, errno.EMFILE, errno.ENFILE, errno.EBUSY}


def disk_error(e: OSError) -> DiskError | None:
    """One line naming the path and the errno of a disk fault; None for other errors."""
    if e.errno not in DISK_ERRNOS:
        return None
    path = e.filename or "(unknown path)"
    name = errno.errorcode.get(e.errno, str(e.errno))
    hint = {errno.ENOSPC: "Free disk space", errno.EDQUOT: "Free disk space (quota)",
            errno.EROFS: "The file system is read-only: point artifacts_dir/reports_dir/"
                         "--output-dir at a writable folder"}.get(
        e.errno, "Check the permissions of that folder, or use a writable one")
    return DiskError(f"Could not write {path}: {os.strerror(e.errno)} ({name}, errno {e.errno}). "
                     f"{hint}, then rerun; the unfinished stage was discarded and nothing was "
                     "marked done.")


# -- library errors ----------------------------------------------------------------------------

LIBRARIES = ("tokenizers", "transformers", "safetensors", "torch", "huggingface_hub",
             "sentencepiece", "tiktoken", "google.protobuf", "jinja2", "accelerate")


def _library_of(e: BaseException) -> str:
    """The library (one of `LIBRARIES`) ``e`` was raised in: its own exception type, or the
    innermost traceback frame; '' when it was raised in our code (a bug: keep the traceback)."""
    top = {m.split(".")[0] for m in LIBRARIES}
    mod = (type(e).__module__ or "").split(".")[0]
    if mod in top:
        return mod
    tb, last = e.__traceback__, None
    while tb is not None:
        last, tb = tb.tb_frame, tb.tb_next
    if last is None:
        return ""
    name = last.f_globals.get("__name__", "") or ""
    for m in LIBRARIES:
        if name == m or name.startswith(m + "."):
            return m.split(".")[0]
    return ""


def _raised_in_library(e: BaseException) -> bool:
    return bool(_library_of(e))


_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


@contextlib.contextmanager
def library_errors(what: str, path: Path | str | None = None):
    """Turn any exception a tokenizer/model library raises into one paragraph naming ``what``
    (our own errors and bugs pass through unchanged). A disk fault reported by Rust code
    (``... (os error 28)``) becomes the `DiskError` of ``path``."""
    try:
        yield
    except PipelineError:
        raise
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except OSError as e:
        if disk_error(e) is not None:
            raise
        if not _raised_in_library(e):
            raise
        raise InputError(_library_message(what, e)) from e
    except Exception as e:  # noqa: BLE001 - libraries raise anything (KeyError, TypeError, ...)
        m = _RUST_OS_ERROR.search(str(e))
        if m:
            err = disk_error(OSError(int(m.group(1)), str(e), str(path or what)))
            if err is not None:
                raise err from e
        if not _raised_in_library(e):
            raise
        raise InputError(_library_message(what, e)) from e


def _library_message(what: str, e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    if len(text) > 400:
        text = text[:397] + "..."
    return (f"Loading or using {what} failed inside {_library_of(e) or 'a library'} "
            f"({type(e).__name__}: {text}). The files are probably damaged, incomplete or of an "
            "unsupported kind: check or re-download them, or pass another source.")
