"""Build the embedded default corpus `pipeline/data/korean_sample.parquet` (run from the repo root).

    .venv/bin/python data/make_default_corpus.py

Inputs: `../shared/data/klue_dev.parquet` (KLUE v1.1 dev, CC BY-SA 4.0),
`../shared/data/nsmc.parquet` (NSMC, CC0 1.0) and konlpy's `kolaw` / `kobill` text files.
Output columns: `id`, `group` (`<text type>#<group>`: the held-out split is by group, the
fertility table by text type), `text`. Deterministic: the same inputs give the same file.
See data/README.md for sources and licenses.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "pipeline" / "data" / "korean_sample.parquet"
NSMC_BYTES = 4_400_000  # whole movies, drawn by a hash of the movie id, until this many bytes


def _h(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def klue() -> pl.DataFrame:
    k = pl.read_parquet(SHARED / "klue_dev.parquet").with_row_index("row")
    origin = pl.col("source").str.split("/").list.get(1).str.to_lowercase()
    typ = pl.lit("klue-") + origin.str.replace(r"-(rtt|sampled|para)$", "")
    return k.select(pl.col("id"), (typ + "#" + pl.col("source") + "/"
                                   + (pl.col("row") // 100).cast(pl.String)).alias("group"),
                    pl.col("text"))


def nsmc() -> pl.DataFrame:
    n = pl.read_parquet(SHARED / "nsmc.parquet")
    movies = (n.group_by("source").agg(pl.col("text").str.len_bytes().sum().alias("b"))
              .with_columns(pl.col("source").map_elements(_h, return_dtype=pl.String).alias("h"))
              .sort("h"))
    chosen = movies.filter(pl.col("b").cum_sum() <= NSMC_BYTES)["source"]
    return (n.filter(pl.col("source").is_in(chosen.implode()))
            .select(pl.col("id"), (pl.lit("nsmc-review#") + pl.col("source")).alias("group"),
                    pl.col("text")))


def konlpy_text() -> pl.DataFrame:
    from pipeline.corpus import konlpy_files

    rows = []
    for f in konlpy_files():
        kind = "law" if f.parent.name == "kolaw" else "bill"
        lines = [x for x in f.read_text(encoding="utf-8").splitlines() if x.strip()]
        for i, line in enumerate(lines):
            rows.append((f"{f.parent.name}/{f.stem}:{i}", f"{kind}#{f.stem}/{i // 50}", line))
    return pl.DataFrame(rows, schema=["id", "group", "text"], orient="row")


def main() -> int:
    df = pl.concat([klue(), nsmc(), konlpy_text()])
    df = df.filter(pl.col("text").str.strip_chars() != "")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    df.write_parquet(OUT, compression="zstd", compression_level=19, row_group_size=8192,
                     statistics=False)
    types = df.select(pl.col("group").str.split("#").list.get(0).alias("type"),
                      pl.col("text").str.len_bytes().alias("b")).group_by("type").agg(
        pl.len(), pl.col("b").sum()).sort("type")
    print(types)
    print(f"{OUT}: {df.height:,} documents, {df['text'].str.len_bytes().sum():,} bytes of text, "
          f"{OUT.stat().st_size:,} bytes on disk")
    return 0


if __name__ == "__main__":
    sys.exit(main())
