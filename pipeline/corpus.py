"""Corpus sources -> batches of documents (id, group, source, text).

Kinds of source, chosen by `resolve_source` from ``[corpus] source``:

- ``embedded``: the mixed Korean sample shipped in this package
  (``pipeline/data/korean_sample.parquet``, built by ``data/make_default_corpus.py``): KLUE
  dev sentences (news, Wikipedia, policy, reviews, ...), NSMC movie reviews (whole movies) and
  konlpy's kolaw/kobill lines, ~5.6 MB. Its ``group`` column reads ``<text type>#<group>``:
  the held-out split is by group (a movie, a block of 100 KLUE sentences, a law), the text
  type (``klue-wikinews``, ``nsmc-review``, ``law``, ...) names the fertility table's rows.
- ``konlpy``: the Korean text konlpy's wheel ships (``konlpy/data/corpus/kolaw`` and
  ``kobill``, 140 KB), read as plain files (no Java). One document per non-empty line; the
  group and text type of a document is its file (``kolaw/constitution``). Fast tests use it.
- local files: a file, a directory (searched recursively) or a glob of ``.txt`` (one document
  per line), ``.jsonl``, ``.parquet`` or ``.arrow`` (IPC file or stream) files with a text
  column.
- a ``datasets`` hub id (``wikimedia/wikipedia`` + ``hub_config = "20231101.ko"``) or builder
  (``parquet``/``json``/``text`` + ``data_files``), always streamed.

Groups: the value of ``group_column`` when the data has it; otherwise ``<file>#<block>`` with
contiguous blocks of ``heldout.block_size`` documents. The text type (``source`` in the
shards, used by the fertility table) is the group column's value or the file's stem.

The source is checked (paths exist, text column present, readable) before any work starts.
Bad data found while reading (invalid UTF-8, a binary file, a truncated Parquet file) raises
`InputError` naming the file and what to do. It does not normalize, filter or tokenize.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .artifacts import file_digest, fingerprint
from .errors import InputError

FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet",
           ".arrow": "arrow", ".ipc": "arrow", ".feather": "arrow"}
GLOB_CHARS = set("*?[")


@dataclass
class DocBatch:
    ids: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def append(self, id_: str, group: str, source: str, text: str) -> None:
        self.ids.append(id_)
        self.groups.append(group)
        self.sources.append(source)
        self.texts.append(text)

    def extend(self, other: "DocBatch") -> None:
        self.ids += other.ids
        self.groups += other.groups
        self.sources += other.sources
        self.texts += other.texts

    def take(self, n: int) -> "DocBatch":
        """Remove and return the first ``n`` documents."""
        head = DocBatch(self.ids[:n], self.groups[:n], self.sources[:n], self.texts[:n])
        del self.ids[:n], self.groups[:n], self.sources[:n], self.texts[:n]
        return head


EMBEDDED = "embedded"
KONLPY = "konlpy"


def embedded_file() -> Path:
    f = Path(__file__).parent / "data" / "korean_sample.parquet"
    if not f.is_file():
        raise InputError(f"The embedded default corpus {f} is missing from the installed package. "
                         "Reinstall the pipeline (`make setup`), or set [corpus] source.")
    return f


def konlpy_files() -> list[Path]:
    import importlib.util

    spec = importlib.util.find_spec("konlpy")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("The embedded default corpus comes from the `konlpy` package, which is "
                         "not installed. Run `make setup`, or set [corpus] source to your files.")
    root = Path(list(spec.submodule_search_locations)[0]) / "data" / "corpus"
    files = sorted((root / "kolaw").glob("*.txt")) + sorted((root / "kobill").glob("*.txt"))
    if not files:
        raise InputError(f"konlpy is installed but {root} holds no kolaw/kobill text files; "
                         "reinstall konlpy or set [corpus] source.")
    return files


class Source:
    """A resolved corpus source. ``describe()`` for humans, ``fingerprint()`` for reruns."""

    kind = "?"

    def describe(self) -> str:
        raise NotImplementedError

    def fingerprint(self) -> str:
        raise NotImplementedError

    def batches(self, batch_size: int) -> Iterator[DocBatch]:
        raise NotImplementedError


class FileSource(Source):
    kind = "files"

    def __init__(self, files: list[Path], cfg, block_size: int, spec: str, embedded=False):
        self.files, self.cfg, self.block_size, self.spec = files, cfg, block_size, spec
        self.embedded = embedded
        if embedded:
            self.kind = "embedded"
        for f in files:
            self._check(f)

    def describe(self) -> str:
        what = {EMBEDDED: "embedded Korean sample (KLUE dev + NSMC + kolaw/kobill)",
                KONLPY: "konlpy kolaw+kobill"}.get(self.spec, self.spec) if self.embedded \
            else self.spec
        return f"{what} ({len(self.files)} file(s))"

    def fingerprint(self) -> str:
        return fingerprint(self.kind, [(f.name, file_digest(f)) for f in self.files],
                           self.cfg.text_column, self.cfg.id_column, self.cfg.group_column,
                           self.block_size)

    # -- checks before any work -------------------------------------------------------------
    def _check(self, f: Path) -> None:
        fmt = _format(f)
        if f.stat().st_size == 0:
            return  # an empty file yields no documents; an empty corpus is reported later
        if fmt in ("parquet", "arrow"):
            cols = _table_columns(f, fmt)
            if self.cfg.text_column not in cols:
                raise InputError(
                    f"Text column {self.cfg.text_column!r} is not in {f}. Columns there: "
                    f"{', '.join(cols)}. Pass --text-column with one of them.")
        elif fmt == "jsonl":
            first = _first_jsonl_record(f)
            if first is not None and self.cfg.text_column not in first:
                raise InputError(
                    f"Text column {self.cfg.text_column!r} is not in the first record of {f}. "
                    f"Keys there: {', '.join(first)}. Pass --text-column with one of them.")
        else:
            with open(f, "rb") as fh:
                _check_not_binary(fh.read(8192), f)

    # -- reading -----------------------------------------------------------------------------
    def batches(self, batch_size: int) -> Iterator[DocBatch]:
        pending = DocBatch()
        for f in self.files:
            for chunk in self._chunks(f):
                pending.extend(chunk)
                while len(pending) >= batch_size:
                    yield pending.take(batch_size)
        if len(pending):
            yield pending

    def _chunks(self, f: Path) -> Iterator[DocBatch]:
        """The file's documents in chunks, with ids, groups and text types filled in."""
        fmt = _format(f)
        name = _display_name(f, self.embedded)
        reader = {"txt": _txt_chunks, "jsonl": _jsonl_chunks, "parquet": _parquet_chunks,
                  "arrow": _arrow_chunks}[fmt]
        row = 0
        for ids, groups, texts in reader(f, self.cfg):
            n = len(texts)
            idx = range(row, row + n)
            ids = [f"{name}:{i}" if x is None else str(x)
                   for i, x in zip(idx, ids or [None] * n)]
            if groups is None:
                sources = [name] * n
                groups = [f"{name}#{i // self.block_size}" for i in idx]
            else:
                sources = [name if g is None else str(g) for g in groups]
                groups = [f"{name}#{i // self.block_size}" if g is None else str(g)
                          for i, g in zip(idx, groups)]
            row += n
            yield DocBatch(ids, groups, sources, texts)


CHUNK = 8192


def _chunked(rows, with_meta: bool):
    """Group (id, group, text) rows into (ids, groups, texts) lists of CHUNK rows."""
    ids, groups, texts = [], [], []
    for id_, group, text in rows:
        ids.append(id_)
        groups.append(group)
        texts.append(text)
        if len(texts) >= CHUNK:
            yield (ids, groups, texts) if with_meta else (None, None, texts)
            ids, groups, texts = [], [], []
    if texts:
        yield (ids, groups, texts) if with_meta else (None, None, texts)


def _display_name(f: Path, embedded: bool) -> str:
    return f"{f.parent.name}/{f.stem}" if embedded else f.stem


def _check_not_binary(head: bytes, f: Path) -> None:
    if b"\x00" in head:
        raise InputError(f"{f} looks like a binary file (it contains NUL bytes), not text. "
                         "Pass .txt/.jsonl/.parquet/.arrow files with Korean text.")


def _txt_chunks(f: Path, cfg):
    return _chunked(_txt_rows(f, cfg), with_meta=False)


def _jsonl_chunks(f: Path, cfg):
    return _chunked(_jsonl_rows(f, cfg), with_meta=True)


def _txt_rows(f: Path, cfg):
    with open(f, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if b"\x00" in raw:
                _check_not_binary(raw, f)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(
                    f"{f} line {lineno} is not valid UTF-8 (byte {e.start}: "
                    f"{raw[e.start:e.start + 4]!r}). Convert the file to UTF-8 (e.g. "
                    "`iconv -f cp949 -t utf-8`) or remove the line.") from e
            line = line.rstrip("\r\n")
            if line.strip():
                yield None, None, line


def _jsonl_rows(f: Path, cfg):
    col, idc, gc = cfg.text_column, cfg.id_column, cfg.group_column
    with open(f, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise InputError(f"{f} line {lineno} is not valid UTF-8 (byte {e.start}). "
                                 "Convert the file to UTF-8.") from e
            except json.JSONDecodeError as e:
                raise InputError(f"{f} line {lineno} is not a JSON object ({e.msg}). Each line "
                                 "of a .jsonl file must be one JSON object.") from e
            if not isinstance(rec, dict) or col not in rec:
                keys = ", ".join(rec) if isinstance(rec, dict) else type(rec).__name__
                raise InputError(f"{f} line {lineno} has no text column {col!r} (it has: "
                                 f"{keys}). Pass --text-column with the right key.")
            text = rec[col]
            if text is None:
                continue
            if not isinstance(text, str):
                raise InputError(f"{f} line {lineno}: column {col!r} holds "
                                 f"{type(text).__name__}, not text.")
            yield rec.get(idc), rec.get(gc), text


def _table_columns(f: Path, fmt: str) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if fmt == "parquet":
            return pq.ParquetFile(f).schema_arrow.names
        return _open_arrow(f).schema.names
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{f} is not a readable {fmt} file ({e}). It may be truncated or "
                         "corrupt: re-download or re-export it.") from e


def _open_arrow(f: Path):
    import pyarrow as pa

    try:
        return pa.ipc.open_file(pa.memory_map(str(f)))
    except pa.ArrowInvalid:
        return pa.ipc.open_stream(pa.memory_map(str(f)))


def _record_batch_chunks(batches, f: Path, cfg):
    import pyarrow as pa

    try:
        for rb in batches:
            names = rb.schema.names
            col = lambda c: rb.column(names.index(c)).to_pylist() if c in names else None  # noqa: E731
            texts, ids, groups = col(cfg.text_column), col(cfg.id_column), col(cfg.group_column)
            if any(t is None or isinstance(t, bytes) for t in texts):
                keep = [i for i, t in enumerate(texts) if t is not None]
                texts = [_as_text(texts[i], f, cfg) for i in keep]
                ids = [ids[i] for i in keep] if ids is not None else None
                groups = [groups[i] for i in keep] if groups is not None else None
            if texts:
                yield ids, groups, texts
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{f} could not be read to the end ({e}). The file is truncated or "
                         "corrupt: re-download or re-export it.") from e


def _as_text(t, f: Path, cfg) -> str:
    if isinstance(t, bytes):
        try:
            return t.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"{f}: column {cfg.text_column!r} holds bytes that are not valid "
                             "UTF-8. Re-encode the text as UTF-8.") from e
    return t


def _parquet_chunks(f: Path, cfg):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(f)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{f} is not a readable parquet file ({e}). Re-export it.") from e
    cols = [c for c in (cfg.text_column, cfg.id_column, cfg.group_column)
            if c in pf.schema_arrow.names]
    yield from _record_batch_chunks(
        pf.iter_batches(batch_size=CHUNK, columns=list(dict.fromkeys(cols))), f, cfg)


def _arrow_chunks(f: Path, cfg):
    reader = _open_arrow(f)
    if hasattr(reader, "num_record_batches"):
        batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
    else:
        batches = iter(reader)
    yield from _record_batch_chunks(batches, f, cfg)


def _first_jsonl_record(f: Path):
    with open(f, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if raw.strip():
                _check_not_binary(raw, f)
                try:
                    rec = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError) as e:
                    raise InputError(f"{f} line {lineno} is not a UTF-8 JSON object ({e}). Each "
                                     "line of a .jsonl file must be one JSON object.") from e
                return rec if isinstance(rec, dict) else {}
    return None


def _format(f: Path) -> str:
    fmt = FORMATS.get(f.suffix.lower())
    if fmt is None:
        raise InputError(f"{f}: unsupported file type {f.suffix!r}. Supported: "
                         f"{', '.join(sorted(FORMATS))}.")
    return fmt


class EmbeddedSource(FileSource):
    """The shipped sample: its own columns whatever ``[corpus]`` names, and the text type
    taken from the ``<type>#<group>`` group values."""

    COLUMNS = {"text_column": "text", "id_column": "id", "group_column": "group"}

    def __init__(self, f: Path, cfg, block_size: int):
        import dataclasses

        super().__init__([f], dataclasses.replace(cfg, **self.COLUMNS), block_size, EMBEDDED,
                         embedded=True)

    def _chunks(self, f: Path) -> Iterator[DocBatch]:
        for b in super()._chunks(f):
            b.sources = [g.split("#", 1)[0] for g in b.sources]
            yield b


class HubSource(Source):
    """A `datasets` dataset, streamed: a hub id, or a builder such as ``parquet`` + data_files."""

    kind = "datasets"

    def __init__(self, cfg, block_size: int):
        self.cfg, self.block_size = cfg, block_size
        self._ds = None

    def describe(self) -> str:
        c = self.cfg
        extra = f" data_files={c.data_files}" if c.data_files else ""
        return f"datasets:{c.source}{'/' + c.hub_config if c.hub_config else ''}[{c.split}]{extra}"

    def fingerprint(self) -> str:
        c = self.cfg
        files = [(str(p), file_digest(p)) for p in _expand_data_files(c.data_files)]
        return fingerprint(self.kind, c.source, c.hub_config, c.split, c.revision, files,
                           c.text_column, c.id_column, c.group_column, self.block_size)

    def dataset(self):
        if self._ds is None:
            self._ds = self._load()
        return self._ds

    def _load(self):
        import datasets

        c = self.cfg
        kw = {"split": c.split, "streaming": True}
        if c.hub_config:
            kw["name"] = c.hub_config
        if c.data_files:
            kw["data_files"] = list(c.data_files)
        if c.revision:
            kw["revision"] = c.revision
        try:
            ds = datasets.load_dataset(c.source, **kw)
        except Exception as e:  # datasets raises many types (FileNotFoundError, ConnectionError...)
            raise InputError(
                f"Could not open the `datasets` corpus {self.describe()}: {type(e).__name__}: "
                f"{e}. Check the hub id, config (`hub_config`) and split, and your network; or "
                "pass a local file/directory as --corpus.") from e
        cols = list(ds.features) if ds.features else None
        if cols is not None and c.text_column not in cols:
            raise InputError(f"Text column {c.text_column!r} is not in {self.describe()}. Columns "
                             f"there: {', '.join(cols)}. Pass --text-column with one of them.")
        return ds

    def batches(self, batch_size: int) -> Iterator[DocBatch]:
        c = self.cfg
        batch = DocBatch()
        name = c.source.replace("/", "_")
        for i, rec in enumerate(self.dataset()):
            text = rec.get(c.text_column)
            if text is None:
                if c.text_column not in rec:
                    raise InputError(f"Record {i} of {self.describe()} has no column "
                                     f"{c.text_column!r} (it has: {', '.join(rec)}).")
                continue
            group = rec.get(c.group_column)
            src = str(group) if group is not None else name
            group = str(group) if group is not None else f"{name}#{i // self.block_size}"
            id_ = rec.get(c.id_column)
            batch.append(str(id_) if id_ is not None else f"{name}:{i}", group, src, text)
            if len(batch) >= batch_size:
                yield batch
                batch = DocBatch()
        if len(batch):
            yield batch


def _expand_data_files(data_files) -> list[Path]:
    out = []
    for pat in data_files or []:
        out += [Path(p) for p in sorted(glob.glob(str(pat), recursive=True)) if Path(p).is_file()]
    return out


def _looks_like_path(spec: str) -> bool:
    return (spec.startswith(("/", ".", "~")) or Path(spec).suffix.lower() in FORMATS
            or bool(GLOB_CHARS & set(spec)))


def resolve_source(cfg, block_size: int) -> Source:
    """Turn ``[corpus]`` into a checked `Source`; raises `InputError` before any work."""
    spec = cfg.source
    if spec == EMBEDDED:
        return EmbeddedSource(embedded_file(), cfg, block_size)
    if spec == KONLPY:
        return FileSource(konlpy_files(), cfg, block_size, spec, embedded=True)
    path = Path(spec).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FORMATS)
        if not files:
            raise InputError(f"Directory {path} holds no corpus files ({', '.join(sorted(FORMATS))}). "
                             "Point --corpus at a file, a glob or a directory with such files.")
        return FileSource(files, cfg, block_size, spec)
    if path.is_file():
        _format(path)
        return FileSource([path], cfg, block_size, spec)
    if GLOB_CHARS & set(spec):
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not files:
            raise InputError(f"No file matches the corpus glob {spec!r}. Check the pattern.")
        for f in files:
            _format(f)
        return FileSource(files, cfg, block_size, spec)
    if _looks_like_path(spec) and not cfg.data_files:
        raise InputError(f"Corpus path {spec} does not exist. Check the path, or pass a `datasets` "
                         "hub id (e.g. `wikimedia/wikipedia` with hub_config `20231101.ko`), or "
                         "`embedded`.")
    if cfg.data_files:
        missing = [p for p in cfg.data_files if not _expand_data_files([p])]
        if missing:
            raise InputError(f"[corpus] data_files {missing} match no file. Check the paths.")
    return HubSource(cfg, block_size)
