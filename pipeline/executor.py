"""The Ray Data executor (``[execute] executor = "ray"``): the parallel parts of the tokenize,
count and score stages as Ray Data jobs, merged on this machine (the driver).

What runs where::

    workers (Ray Data tasks)                          driver (this process)
    ------------------------------------------------  -------------------------------------------
    tokenize: per input unit (a file, or one row      plans the units (Parquet footers), takes
      group of a Parquet file): read, NFC, fastText,  the results in unit order, cuts them into
      tokenize, held-out flag -> the unit's shard     the local executor's batches and files them
      rows + one status row per document              with the same ShardWriter; stage metrics
      (`process_unit`)
    count: per train shard: token counts, document    merges the partial tables once (sums)
      frequencies, eojeol counts, groups
    score: Kiwi boundary alignment per slice of the   sums the per-token counts
      eojeol types

Byte-identical to the local executor (`pipeline.shards.tokenize_corpus`): the local executor
cuts the document stream into batches of at most ``tokenize.batch_docs`` documents and
`pipeline.corpus.BATCH_CHARS` characters and hands each batch's rows to the shard writers, so a
shard file's record batches follow those batches. Every document's result is independent of the
batch it is in (NFC, fastText, the tokenizer and the held-out hash are per document), so the
driver recomputes the same batch boundaries from the documents' lengths (the same greedy rule)
over the units' results in unit order, whatever order Ray finishes them in, and files exactly
the same rows in the same pieces. Counts are sums, merged in a fixed order and sorted as locally.
Limits (``max_documents``, ``max_bytes``) are applied on the driver in document order; workers
may read past them (wasted work, never counted). A bad file raises its `InputError` when the
driver reaches its unit, as locally.

Idempotence: a unit's result is the *return value* of its task, never a side effect. Ray
retries a task whose worker died (``max_retries``) or that raised a transient `OSError`
(``retry_exceptions``, e.g. an object-store read timing out); only one attempt's value reaches
the driver, which files each unit and merges each shard exactly once, by index. A retried
task therefore cannot double count, and the stage itself is still written to a temporary
folder and renamed into place by `pipeline.artifacts.run_stage` (resumable as locally).

What stays local: the tokenizer stage, writing shards (the driver writes every shard: the
artifacts folder is on the driver), merging counts, scoring apart from Kiwi's alignment over
eojeol types (its per-token features read the vocabulary, not the corpus), selection, sweep,
prune and reports. The count stage's workers read the shards the driver wrote, so on a
multi-machine cluster the artifacts folder must be on storage every node mounts (NFS, a shared
volume); a single-machine Ray needs nothing. Corpus files are read by the workers themselves:
local paths (every node must see them) or object-storage URIs (`pipeline.storage`).

It does not change any fingerprint: outputs are byte-identical, so switching executors
reruns nothing (tests/test_ray.py checks both).
"""

from __future__ import annotations

import atexit
import functools
import io
import logging
import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from .errors import InputError, PipelineError

# Per-document status in a unit's result: blank; dropped by the language filter; kept (by
# fastText, or with the filter off); kept by the Hangul-share rescue after fastText; kept on
# its script alone, fastText not asked (`pipeline.shards.script_decides`)
EMPTY, DROPPED, KEPT, KEPT_BY_SCRIPT, DECIDED_BY_SCRIPT = 0, 1, 2, 3, 4
RETRIES = 3  # attempts after the first, for a dead worker or a transient OSError
WORKER_ENV = {"TOKENIZERS_PARALLELISM": "false",  # one task = one core
              "RAY_USAGE_STATS_ENABLED": "0"}


# -- the Ray session ----------------------------------------------------------------------------
def session(ex) -> None:
    """Join (or start) the Ray cluster of ``[execute]`` once per process; a Ray already
    initialized by the caller (a test, a notebook) is used as it is."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    pkg_root = str(Path(__file__).resolve().parents[1])
    env = dict(WORKER_ENV)
    if not ex.ray_address:  # a private Ray on this machine: workers import this checkout
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pkg_root, os.environ.get("PYTHONPATH")]))
    try:
        ray.init(address=ex.ray_address or None, include_dashboard=False, log_to_driver=False,
                 configure_logging=False, runtime_env={"env_vars": env})
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise InputError(
            f"Could not join the Ray cluster at {ex.ray_address or '(a new local one)'}: "
            f"{type(e).__name__}: {e}. Check [execute] ray_address / --ray-address (`auto` for "
            "the cluster `ray start` runs on this machine, `ray://host:10001` for Ray Client), "
            "or use --executor local.") from e
    atexit.register(ray.shutdown)


def _data_context(ordered: bool = True):
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = ordered
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    return ctx


def _map(items: list[dict], fn, ex, **kwargs):
    """Results of ``fn(item, **kwargs)`` (one Arrow table per item), as they finish, each
    tagged with its item's ``unit``; ``fn`` runs as a Ray Data task per item."""
    import ray.data

    _data_context()
    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    compute = ray.data.TaskPoolStrategy(size=ex.ray_workers) if ex.ray_workers else None
    with warnings.catch_warnings():  # Ray 2.60 has no other way to set retry_exceptions
        warnings.simplefilter("ignore", DeprecationWarning)
        ds = ds.map_batches(_call, batch_size=1, batch_format="pyarrow", compute=compute,
                            fn_kwargs={"fn": fn, "kwargs": kwargs}, num_cpus=1,
                            max_retries=RETRIES, retry_exceptions=[OSError])
    return ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=2)


def _call(block: pa.Table, fn, kwargs) -> pa.Table:
    import time

    rows = []
    for item in block.to_pylist():
        t0 = time.perf_counter()
        try:
            out = fn(item, **kwargs)
            err = None
        except PipelineError as e:  # bad input: reported when the driver reaches this unit
            out, err = {}, pickle.dumps(e)
        rows.append({"unit": item["unit"], "seconds": time.perf_counter() - t0, "error": err,
                     **{k: _ipc(v) for k, v in out.items()}})
    keys = dict.fromkeys(k for r in rows for k in r)
    types = {"unit": pa.int64(), "seconds": pa.float64()}
    return pa.table({k: pa.array([r.get(k) for r in rows], types.get(k, pa.large_binary()))
                     for k in keys})


def _reading_errors(results):
    """The blocks of ``results``; a read that still fails after Ray's retries (a file gone, no
    permission on a bucket) becomes an `InputError` naming it instead of Ray's traceback."""
    try:
        yield from results
    except Exception as e:  # noqa: BLE001 - Ray wraps the worker's exception in its own types
        what = _os_error(e)
        if what is None:
            raise
        raise InputError(
            f"A Ray worker could not read the corpus, {RETRIES} retries included: {what}. "
            "Check that every node reaches the corpus files (the same local path on every "
            "node, or an object-storage URI with credentials), then rerun: completed stages "
            "are kept.") from e


def _os_error(e: BaseException) -> str | None:
    """``"FileNotFoundError: ..."`` when an `OSError` raised in a worker caused ``e``. Ray
    Data re-raises it as ``RayTaskError(UserCodeException)`` whose chain reaches the driver
    only as the worker's traceback text, so the text is read when no object is found."""
    import builtins
    import re

    seen, cause = set(), e
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, OSError):
            return f"{type(cause).__name__}: {cause}"
        seen.add(id(cause))
        cause = getattr(cause, "cause", None) or cause.__cause__ or cause.__context__
    for name, msg in reversed(re.findall(r"^(\w+Error): (.+)$", str(e), re.M)):
        cls = getattr(builtins, name, None)
        if isinstance(cls, type) and issubclass(cls, OSError):
            return f"{name}: {msg.strip()}"
    return None


# Seconds of the last job, for the benchmark (never in a stage's outputs): ``task_s`` the
# workers' busy time summed over units, ``driver_s`` the driver's own work on the results.
TIMINGS: dict[str, float] = {}


def _in_order(results, n: int):
    """Each unit's result row (a dict) in unit order 0..n-1, whatever order blocks arrive in;
    a unit's `InputError` is raised when its turn comes."""
    import time

    held, want = {}, 0
    TIMINGS.update(task_s=0.0, driver_s=0.0)
    for block in _reading_errors(results):
        t0 = time.perf_counter()
        cols = {k: block.column(k) for k in block.column_names}
        for i in range(block.num_rows):  # payloads stay Arrow buffers: no copy into Python
            row = {k: c[i].as_py() if k in ("unit", "seconds", "error") else c[i].as_buffer()
                   for k, c in cols.items()}
            held[row["unit"]] = row
            TIMINGS["task_s"] += row["seconds"]
        TIMINGS["driver_s"] += time.perf_counter() - t0
        while want in held:
            row = held.pop(want)
            if row["error"] is not None:
                raise pickle.loads(row["error"])
            t0 = time.perf_counter()
            yield row
            TIMINGS["driver_s"] += time.perf_counter() - t0
            want += 1
    if want != n:
        raise RuntimeError(f"Ray returned {want} of {n} units")  # a bug, not bad input


def _ipc(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue()


def _table(data) -> pa.Table:
    """A table `_ipc` wrote (bytes or an Arrow buffer; zero-copy)."""
    return pa.ipc.open_stream(data if isinstance(data, pa.Buffer) else pa.py_buffer(data)).read_all()


# -- tokenize: units ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Unit:
    """A piece of the corpus one task reads: file ``file`` of the source, all of it or only
    ``row_groups`` (Parquet), whose first document is document ``start_row`` of the file."""

    file: int
    row_groups: tuple[int, ...] | None = None
    start_row: int = 0


def check_source(source) -> None:
    """The Ray executor's workers read files; a `datasets` stream is not split into units."""
    from .corpus import FileSource

    if not isinstance(source, FileSource):
        raise InputError(
            f"The Ray executor reads file corpora (local paths or object-storage URIs such as "
            f"s3://bucket/dir/); {source.describe()} is a `datasets` corpus. Run it with "
            "--executor local, or download its files (e.g. its Parquet files) and pass them as "
            "--corpus.")


def plan_units(source) -> list[Unit]:
    """One unit per file; one per row group for a Parquet file whose footer gives every row
    group's count of null texts (documents are numbered among non-null texts)."""
    check_source(source)
    units = []
    for i, f in enumerate(source.files):
        starts = _row_group_starts(f, source.cfg.text_column)
        if starts is None or len(starts) < 2:
            units.append(Unit(i))
        else:
            units += [Unit(i, (g,), s) for g, s in enumerate(starts)]
    return units


def _row_group_starts(f, text_column: str) -> list[int] | None:
    import pyarrow.parquet as pq

    from .corpus import _format, _random_access

    if _format(f) != "parquet" or f.stat().st_size == 0:
        return None
    meta = pq.ParquetFile(_random_access(f)).metadata
    starts, row = [], 0
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        col = next((rg.column(j) for j in range(rg.num_columns)
                    if rg.column(j).path_in_schema == text_column), None)
        st = col.statistics if col is not None else None
        if st is None or not st.has_null_count:
            return None
        starts.append(row)
        row += rg.num_rows - st.null_count
    return starts


@functools.lru_cache(maxsize=2)
def _tokenizer(tok_json: str):
    from tokenizers import Tokenizer

    return Tokenizer.from_str(tok_json)


def process_unit(item: dict, *, source, cfg, tok_ref) -> dict:
    """One unit -> ``docs`` (one row per document, in order: its length in characters, status,
    NFC bytes, and for a dropped one what the stage metrics list) and ``rows`` (the kept
    documents' shard rows plus ``heldout`` and ``doc``, their position in ``docs``)."""
    import ray

    from . import langid
    from .shards import _encode, _normalize, _Stats, script_decides, shard_table, str_array

    u: Unit = pickle.loads(item["spec"])
    backend = _tokenizer(ray.get(tok_ref) if isinstance(tok_ref, ray.ObjectRef) else tok_ref)
    lc = cfg.langid
    docs, rows, base = [], [], 0
    scratch = _Stats(0)
    for chunk in source._chunks(source.files[u.file], row_groups=u.row_groups,
                                start_row=u.start_row):
        n = len(chunk)
        texts, keep_idx = _normalize(chunk, scratch)
        status = np.full(n, EMPTY, dtype=np.int8)
        nbytes = np.zeros(n, dtype=np.int64)
        lang: list = [None] * n
        ko = np.full(n, np.nan, dtype=np.float32)
        if texts:
            ki = np.asarray(keep_idx)
            status[ki] = DROPPED
            if cfg.corpus.max_bytes:
                nbytes[ki] = [len(t.encode()) for t in texts]
            by_script = lres = None
            text_arr = str_array(texts)
            if lc.min_korean_prob > 0:  # the local executor's language filter, in sequence
                by_script = script_decides(text_arr, lc.keep_hangul_share)
                asked = np.flatnonzero(~by_script)
                if len(asked):
                    lres = langid.classify([texts[j] for j in asked.tolist()],
                                           max_chars=lc.max_chars,
                                           model_path=lc.model_path or None)
                    for m, j in enumerate(asked.tolist()):
                        lang[keep_idx[j]] = lres[0][m]
                    ko[ki[asked]] = lres[2]
            picked = shard_table(chunk, texts, keep_idx, by_script, lres,
                                 _encode(backend, text_arr, cfg.tokenizer.source), cfg, scratch,
                                 check=False, text_arr=text_arr)
            if picked is not None:
                table, heldout, sel = picked
                sel = np.asarray(sel, dtype=np.int64)
                kept = ki[sel]
                status[kept] = KEPT
                if by_script is not None:
                    status[kept[ko[kept] < lc.min_korean_prob]] = KEPT_BY_SCRIPT
                    status[kept[by_script[sel]]] = DECIDED_BY_SCRIPT
                rows.append(table.append_column("heldout", pa.array(heldout))
                            .append_column("doc", pa.array(kept + base, pa.int64())))
        dropped = status == DROPPED
        text_of = dict(zip(keep_idx, texts))
        docs.append(pa.table({
            "chars": pa.array([len(t) for t in chunk.texts], pa.int64()),
            "status": pa.array(status), "nbytes": pa.array(nbytes),
            "lang": pa.array([lang[i] if dropped[i] else None for i in range(n)], pa.string()),
            "ko": pa.array(ko),
            "doc_id": pa.array([chunk.ids[i] if dropped[i] else None for i in range(n)], pa.string()),
            "source": pa.array([chunk.sources[i] if dropped[i] else None for i in range(n)],
                               pa.string()),
            "text": pa.array([text_of[i][:300] if dropped[i] else None for i in range(n)],
                             pa.string()),
        }))
        base += n
    return {"docs": pa.concat_tables(docs) if docs else _EMPTY_DOCS,
            "rows": pa.concat_tables(rows) if rows else _empty_rows()}


_EMPTY_DOCS = pa.table({"chars": pa.array([], pa.int64()), "status": pa.array([], pa.int8()),
                        "nbytes": pa.array([], pa.int64()), "lang": pa.array([], pa.string()),
                        "ko": pa.array([], pa.float32()), "doc_id": pa.array([], pa.string()),
                        "source": pa.array([], pa.string()), "text": pa.array([], pa.string())})


def _empty_rows() -> pa.Table:
    from .shards import SCHEMA

    return SCHEMA.empty_table().append_column("heldout", pa.array([], pa.bool_())) \
        .append_column("doc", pa.array([], pa.int64()))


class _Refiler:
    """Cuts the units' documents, in unit order, into the local executor's batches and files
    each batch as `pipeline.shards.tokenize_corpus` does (stats, limits, shard writers)."""

    def __init__(self, writers, stats, cfg, bar):
        self.writers, self.stats, self.cfg, self.bar = writers, stats, cfg, bar
        self.segs: list[list] = []  # [docs, rows, rows' doc positions, first pending doc]
        self.n = self.chars = self.seen_bytes = 0
        self.done = False

    def add(self, docs: pa.Table, rows: pa.Table) -> None:
        from .corpus import BATCH_CHARS

        if self.done or not docs.num_rows:
            return
        self.segs.append([docs, rows, rows.column("doc").to_numpy(), 0])
        self.n += docs.num_rows
        self.chars += int(np.asarray(docs.column("chars")).sum())
        bs = self.cfg.tokenize.batch_docs
        while not self.done and (self.n >= bs or self.chars >= BATCH_CHARS):
            self._cut()

    def finish(self) -> None:
        while not self.done and self.n:
            self._cut()

    def _cut(self) -> None:
        """The next batch: `pipeline.corpus._fitting`'s rule over the pending documents."""
        from .corpus import BATCH_CHARS

        bs = self.cfg.tokenize.batch_docs
        lens, got = [], 0
        for docs, _, _, a in self.segs:
            part = np.asarray(docs.column("chars"))[a:a + bs - got]
            lens.append(part)
            got += len(part)
            if got >= bs:
                break
        over = np.flatnonzero(np.cumsum(np.concatenate(lens)) > BATCH_CHARS)
        k = max(1, int(over[0])) if len(over) else min(bs, self.n)
        pieces, left = [], k
        while left:
            seg = self.segs[0]
            a = seg[3]
            b = min(seg[0].num_rows, a + left)
            pieces.append((seg, a, b))
            left -= b - a
            seg[3] = b
            if b == seg[0].num_rows:
                self.segs.pop(0)
        self.n -= k
        self.chars -= sum(int(np.asarray(s[0].column("chars"))[a:b].sum()) for s, a, b in pieces)
        self._file(pieces, k)

    def _file(self, pieces, k: int) -> None:
        from .shards import SCHEMA, check_tokens, write_splits

        st, cfg = self.stats, self.cfg
        limit_docs, limit_bytes = cfg.corpus.max_documents, cfg.corpus.max_bytes
        if limit_docs and st.read + k > limit_docs:  # the local executor's _head
            k = left = limit_docs - st.read
            cut = []
            for seg, a, b in pieces:
                if left <= 0:
                    break
                b = min(b, a + left)
                cut.append((seg, a, b))
                left -= b - a
            pieces = cut
        docs = pa.concat_tables([s[0].slice(a, b - a) for s, a, b in pieces])
        status = np.asarray(docs.column("status"))
        nonempty = int((status != EMPTY).sum())
        st.read += k
        st.empty += k - nonempty
        if nonempty:
            for d in docs.filter(pa.array(status == DROPPED)).to_pylist():
                st.dropped += 1
                st.dropped_langs[d["lang"]] = st.dropped_langs.get(d["lang"], 0) + 1
                if len(st.examples) < st.n_examples:
                    st.examples.append({"doc_id": d["doc_id"], "source": d["source"],
                                        "lang": d["lang"], "ko_prob": round(float(d["ko"]), 4),
                                        "text": d["text"]})
            decided = int((status == DECIDED_BY_SCRIPT).sum())
            st.kept_by_script += int((status == KEPT_BY_SCRIPT).sum()) + decided
            if cfg.langid.min_korean_prob > 0:
                st.decided_by_script += decided
                st.asked_fasttext += nonempty - decided
            parts = []
            for seg, a, b in pieces:
                pos = seg[2]
                lo, hi = np.searchsorted(pos, a), np.searchsorted(pos, b)
                if hi > lo:
                    parts.append(seg[1].slice(lo, hi - lo))
            if parts:
                # A fresh copy, as the local executor's batch table is: Arrow's IPC writer pads
                # the buffers of a slice, so a view into a unit's rows would change the bytes.
                table = pa.concat_tables(parts)
                table = table.take(pa.array(np.arange(table.num_rows))).combine_chunks()
                heldout = np.asarray(table.column("heldout"))
                table = table.select(SCHEMA.names)
                check_tokens(table, cfg)
                write_splits(self.writers, st, table, heldout)
                self.bar.update(table.num_rows)
            if limit_bytes:
                self.seen_bytes += int(np.asarray(docs.column("nbytes")).sum())
        if (limit_docs and st.read >= limit_docs) or (limit_bytes and self.seen_bytes >= limit_bytes):
            self.done = True


def tokenize_corpus(source, tok, cfg, out_dir: Path, progress: bool = True) -> dict:
    """`pipeline.shards.tokenize_corpus` on Ray: same files, same metrics (module docstring)."""
    import ray
    from tqdm.auto import tqdm

    from .shards import _check_nonempty, _metrics, _Stats, open_writers

    units = plan_units(source)
    session(cfg.execute)
    writers = open_writers(out_dir, cfg)
    stats = _Stats(cfg.langid.examples)
    bar = tqdm(desc="tokenize (ray)", unit="doc", disable=not progress, mininterval=1.0)
    refiler = _Refiler(writers, stats, cfg, bar)
    tok_ref = ray.put(tok.backend_tokenizer.to_str())
    items = [{"unit": i, "spec": pickle.dumps(u)} for i, u in enumerate(units)]
    try:
        results = _map(items, process_unit, cfg.execute, source=source, cfg=cfg, tok_ref=tok_ref)
        for row in _in_order(results, len(items)):
            refiler.add(_table(row["docs"]), _table(row["rows"]))
            if refiler.done:
                break
        refiler.finish()
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    bar.close()
    for w in writers.values():
        w.close()
    _check_nonempty(stats, source, cfg)
    return _metrics(stats, len(tok))


# -- count --------------------------------------------------------------------------------------
def count_shard(item: dict) -> dict:
    """Partial counts of one train shard (`pipeline.count.partial_counts`)."""
    from .count import partial_counts

    tokens, eojeols, groups = partial_counts([Path(item["path"])])
    return {"tokens": tokens.to_arrow(), "eojeols": eojeols.to_arrow(),
            "groups": pa.table({"group": pa.array(groups, pa.string())})}


def count_shards(shards: list[Path], vocab: list[str], ex):
    """``(token_counts, eojeol_counts, distinct groups)`` of ``shards``, each shard counted by
    one Ray task and the partial tables merged once here, in shard order."""
    import polars as pl

    from .count import merge_partial_counts

    session(ex)
    items = [{"unit": i, "path": str(p)} for i, p in enumerate(shards)]
    parts = []
    if items:
        for row in _in_order(_map(items, count_shard, ex), len(items)):
            parts.append((pl.from_arrow(_table(row["tokens"])), pl.from_arrow(_table(row["eojeols"])),
                          _table(row["groups"]).column("group").to_pylist()))
    return merge_partial_counts(parts, vocab)


# -- score: Kiwi over eojeol types --------------------------------------------------------------
def _align_slice(item: dict, *, tok_ref) -> dict:
    import ray

    from .morph import boundary_alignment, hf_tokenize_fn

    tok = ray.get(tok_ref) if isinstance(tok_ref, ray.ObjectRef) else tok_ref
    return {"per": boundary_alignment(item["eojeols"], item["counts"],
                                      hf_tokenize_fn(tok)).to_arrow()}


def alignment_map(ex, slice_types: int = 2000):
    """A ``boundary_alignment(eojeols, counts, tokenize_fn)`` replacement for
    `pipeline.score.score_tokens` that runs Kiwi on slices of the eojeol types as Ray tasks and
    sums the per-token counts (sums of integers: identical to one call)."""
    import polars as pl

    def run(eojeols: list[str], counts: list[int], tok):
        import ray

        if not eojeols:
            from .morph import boundary_alignment, hf_tokenize_fn

            return boundary_alignment([], [], hf_tokenize_fn(tok))
        session(ex)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        n_slices = max(1, min(len(eojeols) // slice_types, 4 * cpus))
        step = -(-len(eojeols) // n_slices)
        ref = ray.put(tok)
        items = [{"unit": i, "eojeols": eojeols[s:s + step], "counts": counts[s:s + step]}
                 for i, s in enumerate(range(0, len(eojeols), step))]
        per = [pl.from_arrow(_table(r["per"]))
               for r in _in_order(_map(items, _align_slice, ex, tok_ref=ref), len(items))]
        return (pl.concat(per).group_by("token_id")
                .agg(pl.col("align_occurrences").sum(), pl.col("occurrences").sum())
                .sort("token_id"))

    return run
