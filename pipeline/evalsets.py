"""Evaluation sets (``[eval] sets``): named corpora that are never counted.

Each set is an inline table with a ``name`` and any ``[corpus]`` key (``source``,
``text_column``, ``group_column``, ``max_documents``, ...); its source is read with
`pipeline.corpus.resolve_source` exactly like the counted corpus, every document
NFC-normalized and blank ones skipped. No language filter and no held-out split: the set is
evaluated as given. The ``evalsets`` stage tokenizes every set once with the run's tokenizer
into ``artifacts/<run>/evalsets/<name>/eval-NNNNN.arrow`` (the shard schema of
`pipeline.shards`) plus its unique pre-tokens (``pretokens.parquet``,
``fallback_docs.parquet``: the inputs of `pipeline.sweep.HeldoutIndex`), so select, sweep and
prune evaluate a keep set on it exactly and cheaply, like the held-out split.

It counts nothing and decides nothing.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow as pa

from .errors import ConfigError

#: Names an evaluation set may not take: they are keys of the same metrics sections.
RESERVED = {"train", "heldout", "greedy", "corpus"}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


@dataclasses.dataclass(frozen=True)
class EvalSet:
    name: str
    corpus: object  # a CorpusConfig


def eval_sets(cfg) -> list[EvalSet]:
    """The checked evaluation sets of ``cfg`` (`ConfigError` names the bad entry)."""
    from .config import CorpusConfig, _check_value

    fields = {f.name: f for f in dataclasses.fields(CorpusConfig)}
    out, seen = [], set()
    for i, entry in enumerate(cfg.eval.sets):
        where = f"[eval] sets[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be an inline table such as {{name = \"klue\", source "
                              f"= \"../shared/data/klue_dev.parquet\"}}, got {entry!r}.")
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME.match(name) or name in RESERVED:
            raise ConfigError(
                f"{where} needs a `name` of 1-32 lowercase letters, digits, `_` or `-` (not "
                f"{', '.join(sorted(RESERVED))}: those name the run's own splits), got {name!r}.")
        if name in seen:
            raise ConfigError(f"{where}: the name {name!r} is used twice. Give each set its own name.")
        seen.add(name)
        if "source" not in entry:
            raise ConfigError(f"{where} ({name}) has no `source`: give a file, directory, glob "
                              "or `datasets` hub id, as for [corpus] source.")
        unknown = sorted(set(entry) - set(fields) - {"name"})
        if unknown:
            raise ConfigError(f"Unknown key(s) {unknown} in {where} ({name}). Valid keys: name, "
                              f"{', '.join(fields)}.")
        kw = {k: _check_value(f"eval.sets.{name}", fields[k], v, "the config")
              for k, v in entry.items() if k != "name"}
        out.append(EvalSet(name, dataclasses.replace(CorpusConfig(), **kw)))
    return out


def resolve(es: EvalSet, block_size: int):
    from .corpus import resolve_source

    return resolve_source(es.corpus, block_size)


def set_dir(paths, name: str) -> Path:
    return paths.stage("evalsets") / name


def set_shards(paths, name: str) -> list[Path]:
    return sorted(set_dir(paths, name).glob("eval-*.arrow"))


def tokenize_set(source, tok, out_dir: Path, *, batch_docs: int, max_documents: int = 0,
                 max_bytes: int = 0) -> dict:
    """Tokenize one set into ``out_dir`` (see module docstring); its metrics."""
    import polars as pl

    from .artifacts import write_parquet
    from .errors import InputError
    from .pieces import ids_array
    from .shards import ShardWriter, _to_table
    from .sweep import pretokenize_heldout

    out_dir.mkdir(parents=True, exist_ok=True)
    writer = ShardWriter(out_dir, "eval", 1 << 30, 1 << 40)  # one shard
    backend = tok.backend_tokenizer
    n_read = n_docs = n_bytes = n_tokens = n_eojeol = 0
    for batch in source.batches(batch_docs):
        if max_documents and n_read + len(batch) > max_documents:
            batch = batch.take(max_documents - n_read)
        n_read += len(batch)
        rows = [(i, unicodedata.normalize("NFC", t)) for i, t in enumerate(batch.texts)]
        rows = [(i, t) for i, t in rows if t.strip()]
        if rows:
            texts = [t for _, t in rows]
            encs = backend.encode_batch_fast(texts, add_special_tokens=False)
            ids = ids_array(encs)
            cols = {"doc_id": [batch.ids[i] for i, _ in rows],
                    "group": [batch.groups[i] for i, _ in rows],
                    "source": [batch.sources[i] for i, _ in rows], "text": texts,
                    "lang": [""] * len(rows), "ko_prob": np.full(len(rows), np.nan, np.float32),
                    "lang_by": ["off"] * len(rows)}
            table = _to_table(cols, ids)
            writer.write(table)
            n_docs += table.num_rows
            n_bytes += int(pa.compute.sum(table.column("n_bytes")).as_py() or 0)
            n_tokens += int(pa.compute.sum(table.column("n_tokens")).as_py() or 0)
            n_eojeol += int(pa.compute.sum(table.column("n_eojeol")).as_py() or 0)
        if (max_documents and n_read >= max_documents) or (max_bytes and n_bytes >= max_bytes):
            break
    writer.close()
    if n_docs == 0:
        raise InputError(f"The evaluation set {out_dir.name!r} ({source.describe()}) holds no "
                         "non-blank document. Check its source and text_column in [eval] sets.")
    shards = sorted(out_dir.glob("eval-*.arrow"))
    pts, fallback = pretokenize_heldout(tok, shards)
    write_parquet(pts, out_dir / "pretokens.parquet")
    write_parquet(pl.DataFrame({"text": fallback}, schema={"text": pl.String}),
                  out_dir / "fallback_docs.parquet")
    return {"source": source.describe(), "documents": n_docs, "bytes": n_bytes,
            "tokens": n_tokens, "eojeol": n_eojeol,
            "tokens_per_eojeol": round(n_tokens / n_eojeol, 6) if n_eojeol else None}


def load_index(paths, name: str):
    """The `pipeline.sweep.HeldoutIndex` of a tokenized set."""
    import polars as pl

    from .sweep import load_heldout_index

    d = set_dir(paths, name)
    return load_heldout_index(set_shards(paths, name), pl.read_parquet(d / "pretokens.parquet"),
                              pl.read_parquet(d / "fallback_docs.parquet")["text"].to_list())
