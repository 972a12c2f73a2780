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

The source is checked (paths exist, text column present and string-typed, readable) before any
work starts. Bad data found while reading (invalid UTF-8, a binary file, a truncated Parquet
file, a non-text value) raises `InputError` naming the file, the row and what to do. A UTF-8 BOM
at the start of a file is not text. Memory stays bounded whatever the input: a document longer
than ``[corpus] max_doc_bytes`` is split into consecutive pieces (at whitespace where possible;
same id and group), and a ``.txt`` line is read in pieces of at most that size, never whole.
It does not normalize, filter or tokenize.
"""

from __future__ import annotations

import bisect
import glob
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .artifacts import file_digest, fingerprint
from .errors import InputError
from .storage import is_uri

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
        return fingerprint(self.kind, [(f.name, _digest(f)) for f in self.files],
                           self.cfg.text_column, self.cfg.id_column, self.cfg.group_column,
                           self.block_size)

    # -- checks before any work -------------------------------------------------------------
    def _check(self, f: Path) -> None:
        fmt = _format(f)
        if f.stat().st_size == 0:
            return  # an empty file yields no documents; an empty corpus is reported later
        if fmt in ("parquet", "arrow"):
            schema = _table_schema(f, fmt)
            cols = schema.names
            if self.cfg.text_column not in cols:
                raise InputError(
                    f"Text column {self.cfg.text_column!r} is not in {f}. Columns there: "
                    f"{', '.join(cols)}. Pass --text-column with one of them.")
            typ = schema.field(self.cfg.text_column).type
            if not _is_text_type(typ):
                texty = [n for n in cols if _is_text_type(schema.field(n).type)]
                raise InputError(
                    f"Text column {self.cfg.text_column!r} of {f} holds {typ} values, not text. "
                    "Pass --text-column with a string column"
                    f"{' (' + ', '.join(texty) + ')' if texty else ''}, or convert it to strings.")
        elif fmt == "jsonl":
            first = _first_jsonl_record(f)
            if first is not None and self.cfg.text_column not in first:
                raise InputError(
                    f"Text column {self.cfg.text_column!r} is not in the first record of {f}. "
                    f"Keys there: {', '.join(first)}. Pass --text-column with one of them.")
        else:
            with _open_binary(f) as fh:
                _check_not_binary(fh.read(8192), f)

    # -- reading -----------------------------------------------------------------------------
    def batches(self, batch_size: int) -> Iterator[DocBatch]:
        pending = DocBatch()
        for f in self.files:
            for chunk in self._chunks(f):
                pending.extend(chunk)
                while len(pending) >= batch_size or _chars(pending.texts) >= BATCH_CHARS:
                    yield pending.take(_fitting(pending.texts, batch_size))
        while len(pending):
            yield pending.take(_fitting(pending.texts, batch_size))

    def _chunks(self, f: Path, row_groups: list[int] | None = None,
                start_row: int = 0) -> Iterator[DocBatch]:
        """The file's documents in chunks, with ids, groups and text types filled in.
        ``row_groups``: only these row groups of a Parquet file, whose first document is
        document ``start_row`` of the file (`pipeline.executor` reads a file in parts)."""
        fmt = _format(f)
        name = _display_name(f, self.embedded)
        reader = {"txt": _txt_chunks, "jsonl": _jsonl_chunks, "parquet": _parquet_chunks,
                  "arrow": _arrow_chunks}[fmt]
        row = start_row
        kw = {"row_groups": row_groups} if row_groups is not None else {}
        for ids, groups, texts, *rows in reader(f, self.cfg, **kw):
            n = len(texts)
            idx = rows[0] if rows and rows[0] is not None else range(row, row + n)
            if not _all_str(ids):
                ids = [f"{name}:{i}" if x is None else str(x)
                       for i, x in zip(idx, ids or [None] * n)]
            if groups is None:
                sources = [name] * n
                groups = _block_groups(name, idx, self.block_size)
            elif _all_str(groups):
                sources = list(groups)
            else:
                sources = [name if g is None else str(g) for g in groups]
                groups = [f"{name}#{i // self.block_size}" if g is None else str(g)
                          for i, g in zip(idx, groups)]
            row = (idx[-1] + 1) if n else row
            yield split_long_documents(DocBatch(ids, groups, sources, texts),
                                       self.cfg.max_doc_bytes)


def _all_str(values: list | None) -> bool:
    """Every value is a `str` (ids and groups read from a string column without nulls are
    used as they are, not rebuilt one by one)."""
    return values is not None and set(map(type, values)) <= {str}


def _block_groups(name: str, idx, block_size: int) -> list[str]:
    """``f"{name}#{i // block_size}"`` for every document index in ``idx``; one string per
    block for a contiguous range (the common case: most chunks lie in one block)."""
    if not isinstance(idx, range):
        return [f"{name}#{i // block_size}" for i in idx]
    out, i = [], idx.start
    while i < idx.stop:
        end = min(idx.stop, (i // block_size + 1) * block_size)
        out += [f"{name}#{i // block_size}"] * (end - i)
        i = end
    return out


CHUNK = 8192
# Text held at once, in characters: a reader's chunk and a batch stop growing at these, so many
# long documents (each at most max_doc_bytes) never pile up in memory.
CHUNK_CHARS = 4 << 20
BATCH_CHARS = 16 << 20


def split_text(text: str, max_bytes: int) -> list[str]:
    """``text`` in consecutive pieces of at most ``max_bytes`` UTF-8 bytes, cut before a
    whitespace where one lies in the second half of a piece, else at a character boundary."""
    if len(text) * 4 <= max_bytes:
        return [text]
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return [text]
    pieces, start = [], 0
    while len(data) - start > max_bytes:
        cut = _cut(data, start, max_bytes)
        pieces.append(data[start:cut].decode("utf-8"))
        start = cut
    pieces.append(data[start:].decode("utf-8"))
    return pieces


def _cut(data: bytes, start: int, max_bytes: int) -> int:
    """Where to end a piece of ``data`` beginning at ``start`` (at most ``max_bytes`` long)."""
    end = start + max_bytes
    ws = max(data.rfind(b" ", start + max_bytes // 2, end), data.rfind(b"\n", start + max_bytes // 2, end),
             data.rfind(b"\t", start + max_bytes // 2, end))
    if ws > start:
        return ws
    while end > start + 1 and (data[end] & 0xC0) == 0x80:  # not inside a UTF-8 character
        end -= 1
    return end


def split_long_documents(batch: DocBatch, max_bytes: int) -> DocBatch:
    """Split every document longer than ``max_bytes`` into consecutive pieces (same id, group
    and text type), so the tokenizer never sees an unbounded document."""
    if not max_bytes or not batch.texts or max(map(len, batch.texts)) * 4 <= max_bytes:
        return batch
    out = DocBatch()
    for i, t in enumerate(batch.texts):
        for piece in split_text(t, max_bytes):
            out.append(batch.ids[i], batch.groups[i], batch.sources[i], piece)
    return out


def _chunked(rows, with_meta: bool):
    """Group (id, group, text[, row]) rows into (ids, groups, texts, rows) lists of CHUNK
    rows (``rows`` None when every row is one document)."""
    ids, groups, texts, keys = [], [], [], []
    chars = 0
    for id_, group, text, *key in rows:
        ids.append(id_)
        groups.append(group)
        texts.append(text)
        keys.append(key[0] if key else None)
        chars += len(text)
        if len(texts) >= CHUNK or chars >= CHUNK_CHARS:
            yield _pack(ids, groups, texts, keys, with_meta)
            ids, groups, texts, keys = [], [], [], []
            chars = 0
    if texts:
        yield _pack(ids, groups, texts, keys, with_meta)


def _pack(ids, groups, texts, keys, with_meta):
    keys = None if keys[0] is None else keys
    return (ids, groups, texts, keys) if with_meta else (None, None, texts, keys)


def _open_binary(f):
    """A local path or a `pipeline.storage.RemoteFile`, opened for buffered binary reading."""
    if isinstance(f, Path):
        return open(f, "rb")
    from .storage import open_stream

    return open_stream(f)


def _random_access(f):
    """What pyarrow reads Parquet / Arrow IPC from: a memory map, or a remote seekable file."""
    import pyarrow as pa

    if isinstance(f, Path):
        return pa.memory_map(str(f))
    from .storage import open_random

    return open_random(f)


def _digest(f) -> str:
    return file_digest(f) if isinstance(f, Path) else f.digest()


def _display_name(f: Path, embedded: bool) -> str:
    return f"{f.parent.name}/{f.stem}" if embedded else f.stem


def _check_not_binary(head: bytes, f: Path) -> None:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(f"{f} is UTF-16 text (it starts with a UTF-16 byte-order mark), not "
                         "UTF-8. Convert it to UTF-8 (e.g. `iconv -f utf-16 -t utf-8`).")
    if b"\x00" in head:
        raise InputError(f"{f} looks like a binary file (it contains NUL bytes), not text. "
                         "Pass .txt/.jsonl/.parquet/.arrow files with Korean text.")


def _txt_chunks(f: Path, cfg):
    return _chunked(_txt_rows(f, cfg), with_meta=False)


def _jsonl_chunks(f: Path, cfg):
    return _chunked(_jsonl_rows(f, cfg), with_meta=True)


BOM = b"\xef\xbb\xbf"


def _txt_rows(f: Path, cfg):
    """(None, None, text, document index) per non-blank line, a line longer than
    ``max_doc_bytes`` in consecutive pieces: no more than ~2 x max_doc_bytes is ever held."""
    limit = cfg.max_doc_bytes
    doc = -1
    lineno, offset, buf, counted = 0, 0, b"", False
    with _open_binary(f) as fh:
        while True:
            raw = fh.readline(limit)
            if lineno == 0 and not buf and raw.startswith(BOM):
                raw = raw[len(BOM):]  # a byte-order mark is not text
            if not buf:
                lineno += 1
                offset, counted = 0, False
            if b"\x00" in raw:
                _check_not_binary(raw, f)
            buf += raw
            end = not raw or raw.endswith(b"\n")
            while len(buf) > limit or (end and buf):
                cut = len(buf) if len(buf) <= limit else _cut(buf, 0, limit)
                piece, buf = buf[:cut], buf[cut:]
                line = _decode_line(piece, f, lineno, offset)
                offset += len(piece)
                if end and not buf:
                    line = line.rstrip("\r\n")
                if line.strip():
                    if not counted:
                        doc, counted = doc + 1, True
                    yield None, None, line, doc
            if not raw:
                return


def _decode_line(piece: bytes, f: Path, lineno: int, offset: int) -> str:
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(
            f"{f} line {lineno} is not valid UTF-8 (byte {offset + e.start}: "
            f"{piece[e.start:e.start + 4]!r}). Convert the file to UTF-8 (e.g. "
            "`iconv -f cp949 -t utf-8`) or remove the line.") from e


def _jsonl_rows(f: Path, cfg):
    col, idc, gc = cfg.text_column, cfg.id_column, cfg.group_column
    with _open_binary(f) as fh:
        for lineno, raw in enumerate(fh, 1):
            if lineno == 1 and raw.startswith(BOM):
                raw = raw[len(BOM):]  # a byte-order mark is not text
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
                                 f"{type(text).__name__} {str(text)[:40]!r}, not text. Pass "
                                 "--text-column with the key that holds the documents' text, or "
                                 "fix that record.")
            yield rec.get(idc), rec.get(gc), text


def _is_text_type(t) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    return (_is_string_type(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t)
            or pa.types.is_null(t))


def _is_string_type(t) -> bool:
    """Arrow types whose non-null values come to Python as `str` (a dictionary's values may
    hold a null its indices do not show: not one of them)."""
    import pyarrow as pa

    return (pa.types.is_string(t) or pa.types.is_large_string(t)
            or getattr(pa.types, "is_string_view", lambda _: False)(t))


def _table_columns(f: Path, fmt: str) -> list[str]:
    return _table_schema(f, fmt).names


def _table_schema(f: Path, fmt: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if fmt == "parquet":
            return pq.ParquetFile(_random_access(f)).schema_arrow
        return _open_arrow(f).schema
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{f} is not a readable {fmt} file ({e}). It may be truncated or "
                         "corrupt: re-download or re-export it.") from e


def _open_arrow(f: Path):
    import pyarrow as pa

    try:
        return pa.ipc.open_file(_random_access(f))
    except pa.ArrowInvalid:
        return pa.ipc.open_stream(_random_access(f))


def _record_batch_chunks(batches, f: Path, cfg):
    import pyarrow as pa

    row = 0
    try:
        for rb in batches:
            names = rb.schema.names
            col = lambda c: rb.column(names.index(c)).to_pylist() if c in names else None  # noqa: E731
            arr = rb.column(names.index(cfg.text_column))
            texts = _text_values(arr, f, cfg, row)
            ids, groups = col(cfg.id_column), col(cfg.group_column)
            row += rb.num_rows
            if arr.null_count or not _is_string_type(arr.type):
                keep = [i for i, t in enumerate(texts) if t is not None]
                texts = [_as_text(texts[i], f, cfg) for i in keep]
                ids = [ids[i] for i in keep] if ids is not None else None
                groups = [groups[i] for i in keep] if groups is not None else None
            if texts:
                yield ids, groups, texts
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{f} could not be read to the end ({e}). The file is truncated or "
                         "corrupt: re-download or re-export it.") from e


def _text_values(arr, f: Path, cfg, row0: int) -> list:
    """The text column of one record batch as Python values; invalid UTF-8 inside a string
    column is an error naming the file and the row."""
    import pyarrow as pa

    if not _is_text_type(arr.type):
        raise InputError(f"Text column {cfg.text_column!r} of {f} holds {arr.type} values, not "
                         "text. Pass --text-column with a string column.")
    try:
        return arr.to_pylist()
    except UnicodeDecodeError as e:
        raw = arr.dictionary if pa.types.is_dictionary(arr.type) else arr
        vals = raw.view(pa.binary() if not pa.types.is_large_string(raw.type)
                        else pa.large_binary()).to_pylist()
        for i, v in enumerate(vals):
            try:
                v is None or v.decode("utf-8")
            except UnicodeDecodeError as e2:
                where = f"row {row0 + i}" if raw is arr else "a dictionary value"
                raise InputError(
                    f"{f} {where}: column {cfg.text_column!r} holds bytes that are not valid "
                    f"UTF-8 (byte {e2.start}: {v[e2.start:e2.start + 4]!r}). Re-encode the text "
                    "as UTF-8 or drop that row.") from e
        raise InputError(f"{f}: column {cfg.text_column!r} holds invalid UTF-8 ({e}). Re-encode "
                         "the text as UTF-8.") from e


def _as_text(t, f: Path, cfg) -> str:
    if isinstance(t, bytes):
        try:
            return t.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"{f}: column {cfg.text_column!r} holds bytes that are not valid "
                             "UTF-8. Re-encode the text as UTF-8.") from e
    return t


def _parquet_chunks(f: Path, cfg, row_groups: list[int] | None = None):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(_random_access(f))
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{f} is not a readable parquet file ({e}). Re-export it.") from e
    cols = [c for c in (cfg.text_column, cfg.id_column, cfg.group_column)
            if c in pf.schema_arrow.names]
    yield from _record_batch_chunks(
        pf.iter_batches(batch_size=CHUNK, columns=list(dict.fromkeys(cols)),
                        row_groups=row_groups), f, cfg)


def _arrow_chunks(f: Path, cfg):
    reader = _open_arrow(f)
    if hasattr(reader, "num_record_batches"):
        batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
    else:
        batches = iter(reader)
    yield from _record_batch_chunks(batches, f, cfg)


def _first_jsonl_record(f: Path):
    with _open_binary(f) as fh:
        for lineno, raw in enumerate(fh, 1):
            if lineno == 1 and raw.startswith(BOM):
                raw = raw[len(BOM):]
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

    def _chunks(self, f: Path, **kw) -> Iterator[DocBatch]:
        for b in super()._chunks(f, **kw):
            b.sources = [g.split("#", 1)[0] for g in b.sources]
            yield b


def _chars(texts: list[str]) -> int:
    return sum(map(len, texts))


def _fitting(texts: list[str], batch_size: int) -> int:
    """How many leading documents make a batch: at most ``batch_size``, and no more text than
    `BATCH_CHARS` (at least one document)."""
    cum = list(itertools.accumulate(map(len, texts[:batch_size])))
    i = bisect.bisect_right(cum, BATCH_CHARS)  # leading documents within BATCH_CHARS
    return max(1, i) if i < len(cum) else min(batch_size, len(texts))


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
        batch, chars = DocBatch(), 0
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
            if not isinstance(text, str):
                raise InputError(f"Record {i} of {self.describe()}: column {c.text_column!r} "
                                 f"holds {type(text).__name__}, not text. Pass --text-column "
                                 "with the column that holds the documents' text.")
            for piece in split_text(text, c.max_doc_bytes):
                batch.append(str(id_) if id_ is not None else f"{name}:{i}", group, src, piece)
                chars += len(piece)
            if len(batch) >= batch_size or chars >= BATCH_CHARS:
                yield batch
                batch, chars = DocBatch(), 0
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
    if is_uri(spec) and not cfg.data_files:
        from .storage import list_files

        files = list_files(spec, set(FORMATS))
        for f in files:
            _format(f)
        return FileSource(files, cfg, block_size, spec)
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
