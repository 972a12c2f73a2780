"""The Ray Data executor against the local one, on a local Ray cluster this module starts
(2 CPUs, loopback only, no dashboard): byte-identical stage outputs, unchanged fingerprints,
limits, a task that fails once and is retried, object-storage URIs, and bad ``[execute]``
values. Tiny corpora (konlpy law texts, a KLUE slice in several Parquet row groups, English
lines the language filter drops), small batches and shards so that batches span units and
shards roll over."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.__main__ import main
from pipeline.config import load_config
from pipeline.corpus import FileSource, konlpy_files
from pipeline.runner import Run

from .conftest import KLUE_DEV, ROOT

SMALL = ("--set", "tokenize.batch_docs=50", "--set", "tokenize.shard_docs=300",
         "--set", "heldout.fraction=0.3", "--set", "heldout.block_size=40",
         "--set", "score.kiwi_max_eojeol_types=3000", "--set", "langid.examples=3")


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    ray = pytest.importorskip("ray")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    tmp = tmp_path_factory.mktemp("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             _temp_dir=str(tmp), runtime_env={"env_vars": {
                 "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false",
                 "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Two konlpy text files, KLUE dev rows in 3 Parquet row groups, a file of English
    lines (dropped by the language filter) and a JSON-lines file, in one folder."""
    if not KLUE_DEV.exists():
        pytest.skip(f"{KLUE_DEV} not present")
    d = tmp_path_factory.mktemp("corpus")
    for f in konlpy_files()[:2]:
        (d / f"a_{f.name}").write_bytes(f.read_bytes())
    pq.write_table(pq.read_table(KLUE_DEV).slice(0, 420), d / "b_klue.parquet", row_group_size=150)
    (d / "c_en.txt").write_text("".join(f"This is English sentence number {i}.\n"
                                        for i in range(30)))
    (d / "d.jsonl").write_text("".join(json.dumps({"text": f"{i}번째 문장입니다. 오늘 날씨가 좋네요."})
                                       + "\n" for i in range(60)))
    return d


def _analyze(tmp: Path, corpus: Path, tok: Path, *args: str, until: str = "count") -> int:
    return main(["analyze", "--no-progress", "--run", "r", "--until", until,
                 "--set", f'artifacts_dir="{tmp / "artifacts"}"',
                 "--set", f'reports_dir="{tmp / "reports"}"', "--corpus", str(corpus),
                 "--tokenizer", str(tok), *SMALL, *args])


def _done(tmp: Path, stage: str) -> dict:
    return json.loads((tmp / "artifacts" / "r" / stage / "_DONE.json").read_text())


def _toml(v: str):
    import tomllib

    return tomllib.loads(f"v = {v}")["v"]


def _cfg(corpus, tok, **extra):
    return load_config(ROOT / "configs" / "demo.toml",
                       {"corpus.source": str(corpus), "tokenizer.source": str(tok),
                        **{k: _toml(v) for k, v in (a.split("=", 1) for a in SMALL[1::2])},
                        **extra})


@pytest.fixture(scope="module")
def runs(ray_cluster, corpus, tekken_dir, tmp_path_factory) -> dict:
    """tokenize + count of the corpus by each executor, through the CLI."""
    tmp = tmp_path_factory.mktemp("runs")
    assert _analyze(tmp / "local", corpus, tekken_dir) == 0
    assert _analyze(tmp / "ray", corpus, tekken_dir, "--executor", "ray") == 0
    return {"local": tmp / "local", "ray": tmp / "ray"}


def test_ray_outputs_are_byte_identical_and_keep_fingerprints(runs, corpus, tekken_dir):
    for s in ("tokenize", "count"):  # every file (shards, counts, metrics), by sha256
        local, ray_ = _done(runs["local"], s), _done(runs["ray"], s)
        assert ray_["files"] == local["files"], s
        assert ray_["fingerprint"] == local["fingerprint"], s
    files = _done(runs["local"], "tokenize")["files"]
    assert sum(n.startswith("shards/train-") for n in files) > 1  # shards rolled over
    m = json.loads((runs["local"] / "artifacts" / "r" / "tokenize" / "metrics.json").read_text())
    assert m["corpus"]["dropped_non_korean"] >= 30 and len(m["corpus"]["dropped_examples"]) == 3
    # switching executors reruns nothing: the local run's stages are up to date for Ray
    cfg = _cfg(corpus, tekken_dir, artifacts_dir=str(runs["local"] / "artifacts"), run="r",
               reports_dir=str(runs["local"] / "reports"))
    cfg = cfg.override({"execute.executor": "ray"})
    assert Run(cfg).plan()[:3] == [("tokenizer", "up to date"), ("tokenize", "up to date"),
                                   ("count", "up to date")]


def test_kiwi_alignment_on_ray_equals_one_call(runs, ray_cluster, tekken):
    """The score stage's Kiwi part, in slices on Ray vs in-process (the rest of score, select
    and later stages are the same code on byte-identical counts)."""
    import polars as pl

    from pipeline.config import ExecuteConfig
    from pipeline.executor import alignment_map
    from pipeline.morph import boundary_alignment, hf_tokenize_fn

    ec = pl.read_parquet(runs["ray"] / "artifacts" / "r" / "count" / "eojeol_counts.parquet")
    ec = ec.head(800)
    args = (ec["eojeol"].to_list(), ec["count"].to_list())
    # 2 slices, merged; one worker runs both (Kiwi loads once: the test stays cheap)
    align = alignment_map(ExecuteConfig(executor="ray", ray_workers=1), slice_types=400)
    got = align(*args, tekken)
    assert got.equals(boundary_alignment(*args, hf_tokenize_fn(tekken)))


def test_limits_cut_inside_units(ray_cluster, corpus, tekken_dir, tmp_path):
    """max_documents stops inside a Parquet row group and a batch; max_bytes after a batch."""
    from pipeline import executor, shards
    from pipeline.runner import _load_saved_tokenizer

    tok = _load_saved_tokenizer(str(tekken_dir), "t")
    for i, limit in enumerate([{"corpus.max_documents": 333}, {"corpus.max_bytes": 20000}]):
        cfg = _cfg(corpus, tekken_dir, **limit)
        src = Run(cfg).source
        m_local = shards.tokenize_corpus(src, tok, cfg, tmp_path / f"l{i}", progress=False)
        m_ray = executor.tokenize_corpus(src, tok, cfg, tmp_path / f"r{i}", progress=False)
        assert m_ray == m_local
        _same_shards(tmp_path / f"l{i}", tmp_path / f"r{i}")


def _same_shards(a: Path, b: Path) -> None:
    fa, fb = sorted((a / "shards").iterdir()), sorted((b / "shards").iterdir())
    assert [f.name for f in fa] == [f.name for f in fb]
    for x, y in zip(fa, fb):
        assert x.read_bytes() == y.read_bytes(), x.name


class FlakySource(FileSource):
    """Each Parquet row group raises a transient OSError the first time a worker reads it
    (a flag file per row group in ``flags``, a folder every worker sees)."""

    def __init__(self, src: FileSource, flags: Path):
        self.__dict__.update(src.__dict__)
        self.flags = str(flags)

    def _chunks(self, f, **kw):
        flag = Path(self.flags) / f"{f.name}-{kw.get('row_groups')}"
        if f.suffix == ".parquet" and not flag.exists():
            flag.touch()
            raise OSError("simulated object-store timeout")
        yield from super()._chunks(f, **kw)


def test_failed_task_is_retried_and_counted_once(runs, corpus, tekken_dir, tmp_path):
    from pipeline import executor
    from pipeline.runner import _load_saved_tokenizer

    cfg = _cfg(corpus, tekken_dir)
    flags = tmp_path / "flags"
    flags.mkdir()
    m = executor.tokenize_corpus(FlakySource(Run(cfg).source, flags),
                                 _load_saved_tokenizer(str(tekken_dir), "t"), cfg,
                                 tmp_path / "ray", progress=False)
    assert len(list(flags.iterdir())) == 3  # every row group failed once and was retried
    local = runs["local"] / "artifacts" / "r" / "tokenize"
    assert m == json.loads((local / "metrics.json").read_text())  # documents counted once
    _same_shards(local, tmp_path / "ray")


class GoneSource(FileSource):
    """The Parquet file cannot be read, however often a worker tries."""

    def __init__(self, src: FileSource):
        self.__dict__.update(src.__dict__)

    def _chunks(self, f, **kw):
        if f.suffix == ".parquet":
            raise FileNotFoundError(f"{f} vanished")
        yield from super()._chunks(f, **kw)


def test_a_read_failing_after_retries_is_an_input_error(ray_cluster, corpus, tekken_dir,
                                                         tmp_path):
    from pipeline import executor
    from pipeline.errors import InputError
    from pipeline.runner import _load_saved_tokenizer

    cfg = _cfg(corpus, tekken_dir)
    with pytest.raises(InputError, match="could not read the corpus.*vanished"):
        executor.tokenize_corpus(GoneSource(Run(cfg).source),
                                 _load_saved_tokenizer(str(tekken_dir), "t"), cfg,
                                 tmp_path / "ray", progress=False)


def test_object_storage_uris(runs, corpus, tekken_dir, tmp_path):
    """file:// (pyarrow's LocalFileSystem) under Ray and memory:// (fsspec) locally give the
    shards the plain path gave."""
    import fsspec

    from pipeline import executor, shards
    from pipeline.runner import _load_saved_tokenizer

    tok = _load_saved_tokenizer(str(tekken_dir), "t")
    mem = fsspec.filesystem("memory")
    for f in corpus.iterdir():
        mem.pipe(f"/corp/{f.name}", f.read_bytes())
    local = runs["local"] / "artifacts" / "r" / "tokenize"
    for name, uri, fn in (("file", f"file://{corpus}", executor.tokenize_corpus),
                          ("memory", "memory://corp", shards.tokenize_corpus)):
        cfg = _cfg(uri, tekken_dir)
        fn(Run(cfg).source, tok, cfg, tmp_path / name, progress=False)
        _same_shards(local, tmp_path / name)


@pytest.mark.parametrize("args, needle", [
    (("--set", 'execute.executor="spark"'), "is not one of 'local', 'ray'"),
    (("--set", "execute.ray_workers=-1"), "execute.ray_workers"),
    (("--executor", "ray", "--tokenizer", "tekken", "--corpus", "parquet",
      "--set", f'corpus.data_files=["{KLUE_DEV}"]'),
     "The Ray executor reads file corpora"),
])
def test_bad_execute_values(tmp_path, capsys, args, needle):
    rc = main(["analyze", "--no-progress", "--set", f'artifacts_dir="{tmp_path / "a"}"',
               "--set", f'reports_dir="{tmp_path / "r"}"', *args])
    assert rc == 2
    assert needle in capsys.readouterr().err
