"""The analyze benchmark measures what it says: the Nx memory corpus is N distinct files of
valid Korean (not N links to one), the memory figure includes the fastText worker, and ratios
are medians of at least three rounds."""

from __future__ import annotations

import sys
import unicodedata

import pyarrow.parquet as pq
import pytest

from .conftest import NSMC, ROOT

sys.path.insert(0, str(ROOT))
from bench import analyze_bench as ab  # noqa: E402


def test_vowel_shift_is_a_bijection_on_hangul_syllables():
    for k in range(1, 10):
        table = ab._vowel_shift(k)
        assert len(table) == 11172 and sorted(table.values()) == sorted(table)
        assert all(v != c for c, v in table.items())
        # the lead consonant and the tail are kept: only the vowel moves
        for c in (0xAC00, 0xB098, 0xD7A3):
            a, b = unicodedata.normalize("NFD", chr(c)), unicodedata.normalize("NFD", chr(table[c]))
            assert a[0] == b[0] and a[2:] == b[2:] and a[1] != b[1]


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    if not NSMC.exists():
        pytest.skip(f"{NSMC} not present")
    return ab.sample_corpus(NSMC, 3000, tmp_path_factory.mktemp("c") / "nsmc-3k.parquet")


def test_scaled_corpus_is_distinct_files(small_corpus, tmp_path):
    files = ab.distinct_copies(small_corpus, 3, tmp_path / "x3")
    assert len(files) == 3 and not any(f.is_symlink() for f in files)
    tables = [pq.read_table(f) for f in files]
    assert tables[0].equals(pq.read_table(small_corpus))
    texts = [set(t.column("text").to_pylist()) for t in tables]
    ids = [set(t.column("id").to_pylist()) for t in tables]
    groups = [set(t.column("source").to_pylist()) for t in tables]
    for i in range(3):
        for j in range(i + 1, 3):
            assert len(texts[i] & texts[j]) < 0.05 * len(texts[i])  # only Hangul-free texts
            assert not ids[i] & ids[j] and not groups[i] & groups[j]


def test_peak_memory_counts_the_fasttext_worker(small_corpus, tmp_path, tekken_dir):
    r = ab.peak_rss_child(small_corpus, tekken_dir, tmp_path / "w")
    assert [w for w in r["workers"] if w.startswith("pipeline.langid_worker")]
    assert r["total"] == pytest.approx(r["main"] + sum(r["workers"].values()), abs=0.2)
    assert r["total"] > r["main"] > 100 and r["documents"] > 1000


def test_fewer_than_three_rounds_refused():
    with pytest.raises(ValueError, match=">= 3"):
        ab.run(2, repeats=2)
