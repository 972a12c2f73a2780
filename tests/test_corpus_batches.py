"""The corpus reader's shortcuts give the documents the per-document rules give: batch
boundaries, default groups, ids and groups read from string columns; the eojeol table's sort."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import corpus
from pipeline.count import by_count


def fitting_reference(texts: list[str], batch_size: int, limit: int) -> int:
    total = 0
    for i, t in enumerate(texts[:batch_size]):
        total += len(t)
        if total > limit:
            return max(1, i)
    return min(batch_size, len(texts))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=30), st.integers(1, 40),
       st.integers(0, 200))
def test_fitting_equals_the_running_total_rule(lengths, batch_size, limit):
    texts = ["x" * n for n in lengths]
    old = corpus.BATCH_CHARS
    corpus.BATCH_CHARS = limit
    try:
        assert corpus._fitting(texts, batch_size) == fitting_reference(texts, batch_size, limit)
    finally:
        corpus.BATCH_CHARS = old


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 50), st.integers(0, 40), st.integers(1, 12), st.booleans())
def test_block_groups_equal_one_name_per_document(start, n, block, as_list):
    idx = range(start, start + n)
    idx = list(idx) if as_list else idx
    assert corpus._block_groups("f", idx, block) == [f"f#{i // block}" for i in idx]


def _read(f: Path, block: int = 3, **cols) -> corpus.DocBatch:
    cfg = SimpleNamespace(text_column="text", id_column="id", group_column="group",
                          max_doc_bytes=1 << 20)
    src = corpus.FileSource([f], cfg, block, str(f))
    out = corpus.DocBatch()
    for b in src.batches(4):
        out.extend(b)
    return out


def test_string_columns_are_used_as_they_are_and_others_rebuilt(tmp_path):
    texts = ["가", None, "나", "다", "라", "마", "바"]
    # string ids and groups without nulls: taken whole
    f = tmp_path / "s.parquet"
    pq.write_table(pa.table({"text": texts, "id": [f"i{k}" for k in range(7)],
                             "group": [f"g{k % 2}" for k in range(7)]}), f)
    b = _read(f)
    keep = [k for k, t in enumerate(texts) if t is not None]
    assert b.texts == [texts[k] for k in keep]
    assert b.ids == [f"i{k}" for k in keep]
    assert b.groups == b.sources == [f"g{k % 2}" for k in keep]
    # integer ids, null ids and null groups: rebuilt per document (document numbers count
    # non-null texts only)
    f = tmp_path / "n.parquet"
    pq.write_table(pa.table({"text": texts, "id": [7, 8, 9, None, 11, 12, 13],
                             "group": ["a", None, None, None, "b", None, "c"]}), f)
    b = _read(f)
    assert b.ids == ["7", "9", "n:2", "11", "12", "13"]
    assert b.groups == ["a", "n#0", "n#0", "b", "n#1", "c"]
    assert b.sources == ["a", "n", "n", "b", "n", "c"]
    # no group column: blocks of 3 documents
    f = tmp_path / "b.parquet"
    pq.write_table(pa.table({"text": texts}), f)
    b = _read(f)
    assert b.ids == [f"b:{k}" for k in range(6)]
    assert b.groups == [f"b#{k // 3}" for k in range(6)] and b.sources == ["b"] * 6


def test_binary_text_column_is_decoded(tmp_path):
    f = tmp_path / "bin.parquet"
    pq.write_table(pa.table({"text": pa.array([b"\xea\xb0\x80", None, b"x"], pa.binary())}), f)
    assert _read(f).texts == ["가", "x"]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=4), st.integers(1, 4)), max_size=40,
                unique_by=lambda t: t[0]))
def test_by_count_orders_by_count_then_utf8_bytes(rows):
    """Reference: Python's sort, most frequent first, ties by the UTF-8 bytes."""
    df = pl.DataFrame({"eojeol": [r[0] for r in rows], "count": [r[1] for r in rows]},
                      schema={"eojeol": pl.String, "count": pl.Int64})
    want = sorted(rows, key=lambda r: (-r[1], r[0].encode()))
    assert list(by_count(df).iter_rows()) == want
