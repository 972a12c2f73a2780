"""Where every artifact lives, and the bookkeeping that makes stages safe to rerun.

Layout of a run (``<artifacts>/<run>/``)::

    tokenizer/           the source tokenizer, saved once (save_pretrained layout)
    tokenize/            shards/train-00000.arrow ..., shards/heldout-00000.arrow ...,
                         dropped_examples.parquet
    count/               token_counts.parquet, eojeol_counts.parquet
    score/ select/ sweep/ prune/ ...   (later stages)
    run.log              human log with timestamps (never compared, never fingerprinted)

Every stage directory holds ``_DONE.json`` (fingerprint + sha256 of each file) and
``metrics.json`` (the stage's figures); ``<reports>/<run>/metrics.json`` merges them.

A stage is written into a hidden temporary sibling directory and renamed into place only when
complete, so an interrupted run never leaves a directory that looks finished. A stage whose
``_DONE.json`` carries the same fingerprint, and whose files are all there with the sizes it
lists (and digests, with ``digests=True``), is skipped; a damaged one is redone. No timestamps
go into artifacts, so the same inputs give byte-identical files.

Safety (`pipeline.safety`): one writer per run (`RunLock`, ``flock`` on ``<run>/.lock`` holding
the pid); a temporary folder is stale only when its owner process is gone; a stage directory is
replaced only when it holds our ``_DONE.json`` (or is empty); nothing is written through a
symlink that leads out of the run folder; a disk fault becomes one line (`safety.disk_error`).

It does not know what any stage computes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

DONE = "_DONE.json"
METRICS = "metrics.json"


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def fingerprint(*parts: Any) -> str:
    """sha256 of the canonical JSON of ``parts`` (config sections, upstream fingerprints...)."""
    return hashlib.sha256(canonical_json(parts).encode()).hexdigest()


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_json(path: Path, obj: Any) -> None:
    """Atomically write pretty, key-sorted JSON."""
    atomic_write_bytes(path, (json.dumps(obj, sort_keys=True, ensure_ascii=False, indent=2,
                                         default=_json_default) + "\n").encode())


def _json_default(o: Any):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with _replacing(tmp, path):
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


@contextlib.contextmanager
def _replacing(tmp: Path, path: Path):
    """The block writes ``tmp``; then it replaces ``path``. On any error ``tmp`` is removed and
    an OSError without a file name names ``path``."""
    try:
        yield
        os.replace(tmp, path)
    except BaseException as e:
        with _suppress_os():
            tmp.unlink(missing_ok=True)
        _with_path(e, path)
        raise


def _with_path(e: BaseException, path: Path) -> None:
    """An OSError raised without a file name (a failed write or fsync) names ``path``."""
    if isinstance(e, OSError) and not e.filename and e.errno:
        raise OSError(e.errno, e.strerror or str(e), str(path)) from e


class _suppress_os:
    def __enter__(self):
        return self

    def __exit__(self, typ, *_):
        return typ is not None and issubclass(typ, OSError)


def write_parquet(table, path: Path) -> None:
    """Write a pyarrow Table (or polars DataFrame) deterministically and atomically."""
    import pyarrow.parquet as pq

    if hasattr(table, "to_arrow"):
        table = table.to_arrow()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with _replacing(tmp, path):
        pq.write_table(table, tmp, compression="zstd", write_statistics=True)


@dataclass(frozen=True)
class RunPaths:
    """All paths of one run; nothing outside ``root`` and ``reports`` is ever written."""

    root: Path
    reports: Path

    @classmethod
    def from_config(cls, cfg) -> "RunPaths":
        root = Path(cfg.artifacts_dir) / cfg.run
        reports = Path(cfg.reports_dir) / cfg.run
        return cls(root, reports)

    def stage(self, name: str) -> Path:
        return self.root / name

    @property
    def tokenizer(self) -> Path:
        return self.stage("tokenizer")

    @property
    def shards(self) -> Path:
        return self.stage("tokenize") / "shards"

    def train_shards(self) -> list[Path]:
        return sorted(self.shards.glob("train-*.arrow"))

    def heldout_shards(self) -> list[Path]:
        return sorted(self.shards.glob("heldout-*.arrow"))

    @property
    def token_counts(self) -> Path:
        return self.stage("count") / "token_counts.parquet"

    @property
    def eojeol_counts(self) -> Path:
        return self.stage("count") / "eojeol_counts.parquet"

    @property
    def metrics(self) -> Path:
        return self.reports / "metrics.json"

    def log(self, msg: str) -> None:
        """Append a timestamped line to the run log (not an artifact; never compared). Never
        through a symlink: a linked run.log is left alone."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.root / "run.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT
                         | getattr(os, "O_NOFOLLOW", 0), 0o666)
        except OSError as e:
            if e.errno == errno.ELOOP:
                return
            raise
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {msg}\n")


def read_done(stage_dir: Path) -> dict | None:
    try:
        done = json.loads((stage_dir / DONE).read_text())
    except (OSError, ValueError):
        return None
    return done if isinstance(done, dict) and isinstance(done.get("files"), dict) else None


def damage(stage_dir: Path, done: dict, digests: bool = False) -> str:
    """'' when every file ``done`` lists is in ``stage_dir`` with its recorded size (and
    sha256 with ``digests``); else what is wrong with the first damaged file."""
    sizes = done.get("sizes") or {}
    for name, digest in done["files"].items():
        p = stage_dir / name
        try:
            st = p.stat()
        except OSError:
            return f"{name} is missing"
        if not p.is_file() or p.is_symlink():
            return f"{name} is not a regular file"
        if name in sizes and st.st_size != sizes[name]:
            return f"{name} has {st.st_size} bytes, not the {sizes[name]} written"
        if digests and file_digest(p) != digest:
            return f"{name} does not match its sha256"
    return ""


def is_done(stage_dir: Path, fp: str, digests: bool = False) -> bool:
    """Complete with fingerprint ``fp`` and undamaged (sizes; sha256 with ``digests``)."""
    done = read_done(stage_dir)
    return bool(done) and done.get("fingerprint") == fp and not damage(stage_dir, done, digests)


def stage_fingerprint(stage_dir: Path) -> str:
    done = read_done(stage_dir)
    if not done:
        raise FileNotFoundError(stage_dir)
    return done["fingerprint"]


def run_stage(paths: RunPaths, name: str, fp: str, work: Callable[[Path], dict],
              *, force: bool = False, say: Callable[[str], None] = print,
              digests: bool = False) -> tuple[Path, bool]:
    """Run ``work(tmp_dir) -> metrics`` unless ``name`` is done with fingerprint ``fp`` and
    undamaged (a damaged stage is redone).

    Returns ``(stage_dir, ran)``. On any exception the temporary directory is removed and the
    previous complete output (if any) is left untouched. A directory in the stage's place that
    the pipeline did not write (no ``_DONE.json``, not empty) is never replaced.
    """
    from .safety import check_inside, remove_stale, tmp_sibling

    final = paths.stage(name)
    check_inside(final, paths.root, f"Stage folder of [{name}]")
    done = read_done(final)
    if not force and done and done.get("fingerprint") == fp:
        problem = damage(final, done, digests)
        if not problem:
            say(f"[{name}] up to date, skipped")
            return final, False
        say(f"[{name}] damaged ({problem}), redoing it")
        paths.log(f"[{name}] damaged: {problem}; redoing")
    _check_replaceable(final, name)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final)  # left by a killed run; a live owner's folder is left alone
    tmp = tmp_sibling(final)
    t0 = time.time()
    try:
        tmp.mkdir()
        metrics = work(tmp) or {}
        write_json(tmp / METRICS, metrics)
        listed = [p for p in sorted(tmp.rglob("*")) if p.is_file()]
        files = {p.relative_to(tmp).as_posix(): file_digest(p) for p in listed}
        sizes = {p.relative_to(tmp).as_posix(): p.stat().st_size for p in listed}
        write_json(tmp / DONE, {"stage": name, "fingerprint": fp, "files": files,
                                "sizes": sizes})
        _check_replaceable(final, name)  # again: it may have changed meanwhile
        _swap_into_place(tmp, final)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        _name_disk_fault(e, final)
        raise
    paths.log(f"[{name}] done in {time.time() - t0:.1f}s fingerprint={fp[:12]}")
    say(f"[{name}] done in {time.time() - t0:.1f}s")
    return final, True


def is_our_stage(d: Path) -> bool:
    """A directory the pipeline wrote as a stage (it holds a ``_DONE.json`` file)."""
    return d.is_dir() and not d.is_symlink() and (d / DONE).is_file() \
        and not (d / DONE).is_symlink()


def _check_replaceable(final: Path, name: str) -> None:
    from .errors import InputError

    if final.is_symlink() or (final.exists() and not final.is_dir()):
        kind = "a symbolic link" if final.is_symlink() else "a file"
        raise InputError(
            f"{final} (where stage [{name}] goes) is {kind}, not a stage folder the pipeline "
            "wrote; it is not replaced. Move it away, or pass another --run or artifacts_dir.")
    # a _DONE.json, even a damaged one, marks a folder the pipeline wrote (it is redone)
    if final.is_dir() and not os.path.lexists(final / DONE) and any(final.iterdir()):
        raise InputError(
            f"Folder {final} (where stage [{name}] goes) exists and was not written by the "
            f"pipeline (no {DONE}); its files are not replaced. Move it away, or pass another "
            "--run or artifacts_dir.")


def _swap_into_place(tmp: Path, final: Path) -> None:
    from .safety import tmp_sibling

    old = tmp_sibling(final, "old")
    if final.exists():
        os.rename(final, old)
    os.rename(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def replace_dir(final: Path, write: Callable[[Path], None]) -> None:
    """Write a directory with ``write(tmp)`` into a temporary sibling owned by this process,
    then rename it to ``final`` (replacing what is there: callers check it is ours first). On
    any error the temporary folder is removed; stale ones of dead processes are removed first."""
    from .safety import remove_stale, tmp_sibling

    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final)
    tmp = tmp_sibling(final)
    try:
        tmp.mkdir()
        write(tmp)
        _swap_into_place(tmp, final)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        _name_disk_fault(e, final)
        raise


def _name_disk_fault(e: BaseException, where: Path) -> None:
    """A disk fault a library reports without a path (pyarrow: errno 28, no filename) names the
    folder being written."""
    from .safety import disk_error

    if isinstance(e, OSError) and not e.filename:
        err = disk_error(OSError(e.errno, e.strerror or str(e), str(where)))
        if err is not None:
            raise err from e


class RunLock:
    """One writer per run: an exclusive ``flock`` on ``<dir>/.lock``, which holds the pid.

    A second process fails at once with `RunBusy` naming the holder's pid; the lock is released
    when the holder exits (even on kill -9). Re-entrant within a process."""

    _held: dict[str, list] = {}

    def __init__(self, d: Path):
        self.path = Path(d).resolve() / ".lock"
        self.key = str(self.path)

    def acquire(self) -> "RunLock":
        import fcntl

        from .errors import RunBusy

        held = RunLock._held.get(self.key)
        if held:
            held[1] += 1
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise RunBusy(
                f"Run folder {self.path.parent} is in use by another pipeline command (pid "
                f"{holder}). Only one command may write a run at a time: wait for it to finish "
                "(or stop it), or pass another --run.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        RunLock._held[self.key] = [fd, 1]
        return self

    def release(self) -> None:
        held = RunLock._held.get(self.key)
        if not held:
            return
        held[1] -= 1
        if held[1] <= 0:
            del RunLock._held[self.key]
            with _suppress_os():
                os.ftruncate(held[0], 0)  # a finished run leaves an empty lock file
            os.close(held[0])  # closing drops the flock


def stage_metrics(stage_dir: Path) -> dict:
    try:
        return json.loads((stage_dir / METRICS).read_text())
    except FileNotFoundError:
        return {}


def merge_metrics(paths: RunPaths, stages: list[str], extra: dict | None = None) -> dict:
    """Merge the metrics of the given (completed) stages into reports/<run>/metrics.json."""
    merged: dict = {}
    for s in stages:
        if read_done(paths.stage(s)):
            _deep_update(merged, stage_metrics(paths.stage(s)))
    _deep_update(merged, extra or {})
    write_json(paths.metrics, merged)
    return merged


def _deep_update(dst: dict, src: dict) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_update(dst[k], v)
        else:
            dst[k] = v
