"""Corpus files on object storage: ``s3://``, ``gs://``, ``hdfs://``, ``file://``, and any
scheme an installed fsspec implementation knows (``memory://``, ``az://`` with adlfs, ...).

`list_files` turns a URI (one file, or a folder listed recursively) into `RemoteFile`s;
`pipeline.corpus` reads them with the same readers as local files (.txt, .jsonl, .parquet,
.arrow), through `open_stream` (sequential, buffered: text lines) and `open_random` (seekable:
Parquet footers, Arrow IPC). pyarrow's own filesystems come first (S3 and GCS are built into
the pyarrow wheel; credentials from the usual environment variables or instance metadata);
other schemes go through fsspec wrapped in ``pyarrow.fs.PyFileSystem``.

A remote file is fingerprinted by its URI, size and modification time, not by its content:
hashing 100 GB of object storage would cost as much as tokenizing it. Rewrite a file under the
same name and size within the same second and a rerun will not notice (use ``--force``).

It does not cache or copy anything: every read goes to the store.

Example::

    files = list_files("s3://bucket/ko-web/2024/")     # every .txt/.jsonl/.parquet/.arrow
    files[0].name, files[0].stat().st_size              # ("part-00000.parquet", 123456789)
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from .errors import InputError

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(spec: str) -> bool:
    """``s3://bucket/x``, ``file:///data``, ``memory://c``: a filesystem URI, not a local path."""
    return bool(_URI.match(spec))


@dataclass(frozen=True)
class _Stat:
    st_size: int


@dataclass(frozen=True)
class RemoteFile:
    """One file of a filesystem URI: name parts like `pathlib.Path`, plus how to open it."""

    uri: str          # as the user would write it, for messages and fingerprints
    path: str         # the path inside ``fs``
    fs: object        # a pyarrow.fs.FileSystem (picklable: Ray workers open it themselves)
    size: int
    mtime_ns: int

    @property
    def _p(self) -> PurePosixPath:
        return PurePosixPath(self.path)

    name = property(lambda self: self._p.name)
    stem = property(lambda self: self._p.stem)
    suffix = property(lambda self: self._p.suffix)
    parent = property(lambda self: self._p.parent)

    def stat(self) -> _Stat:
        return _Stat(self.size)

    def __str__(self) -> str:
        return self.uri

    def digest(self) -> str:
        return f"size={self.size} mtime_ns={self.mtime_ns}"


def _filesystem(spec: str):
    """(pyarrow filesystem, path inside it) for a URI; fsspec for schemes pyarrow lacks."""
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(spec)
    except (ValueError, OSError) as e:  # ArrowInvalid is a ValueError
        if "Unrecognized filesystem type" not in str(e):
            raise InputError(f"Cannot open corpus URI {spec}: {e}. Check the URI and your "
                             "credentials.") from e
    try:
        import fsspec
        from fsspec.core import url_to_fs
    except ImportError as e:  # pragma: no cover - fsspec ships with datasets
        raise InputError(f"No filesystem for {spec}: install fsspec.") from e
    try:
        fs, path = url_to_fs(spec)
    except (ImportError, ValueError) as e:
        raise InputError(
            f"No filesystem for corpus URI {spec} ({e}). pyarrow reads s3://, gs://, hdfs:// "
            f"and file://; other schemes need their fsspec package (known: "
            f"{', '.join(sorted(fsspec.available_protocols())[:12])}, ...).") from e
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def list_files(spec: str, suffixes) -> list[RemoteFile]:
    """The corpus files at a URI: the file itself, or every file under the folder whose
    suffix is in ``suffixes``, sorted by path. `InputError` when there is none."""
    import pyarrow.fs as pafs

    fs, root = _filesystem(spec)
    try:
        info = fs.get_file_info(root)
        if info.type == pafs.FileType.Directory:
            infos = [i for i in fs.get_file_info(pafs.FileSelector(root, recursive=True))
                     if i.type == pafs.FileType.File and PurePosixPath(i.path).suffix.lower()
                     in suffixes]
        elif info.type == pafs.FileType.File:
            infos = [info]
        else:
            raise InputError(f"Corpus URI {spec} does not exist. Check the bucket and path.")
    except OSError as e:
        raise InputError(f"Cannot list corpus URI {spec}: {e}. Check the URI and your "
                         "credentials.") from e
    if not infos:
        raise InputError(f"Corpus URI {spec} holds no corpus files ({', '.join(sorted(suffixes))}).")
    base = spec.rstrip("/")
    out = []
    for i in sorted(infos, key=lambda i: i.path):
        rel = i.path[len(root.rstrip("/")):].lstrip("/") if info.type != pafs.FileType.File else ""
        uri = f"{base}/{rel}" if rel else spec
        out.append(RemoteFile(uri, i.path, fs, int(i.size or 0), int(i.mtime_ns or 0)))
    return out


def open_random(f: RemoteFile):
    """A seekable pyarrow file (Parquet, Arrow IPC)."""
    return f.fs.open_input_file(f.path)


class _Raw(io.RawIOBase):
    def __init__(self, native):
        self.native = native

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.native.read(len(b))
        b[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self.native.close()
        super().close()


def open_stream(f: RemoteFile) -> io.BufferedReader:
    """A buffered binary stream with ``readline`` (pyarrow's own streams have none)."""
    return io.BufferedReader(_Raw(f.fs.open_input_stream(f.path)), buffer_size=1 << 20)
