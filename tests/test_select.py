"""Scoring, selection and the sweep on a real run (KLUE dev + Tekken): reasons are complete,
keep sets are closed, thresholds mean what they say, and the sweep's exact figures equal a
brute-force re-tokenization of the held-out split."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from pipeline.closure import close_under_merges, required_ids
from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.select import DROPPED_REASONS, KEPT_REASONS, select
from pipeline.surgery.tokenizer import prune_tokenizer
from pipeline.sweep import build_heldout_index, evaluate

from .conftest import KLUE_DEV
from .test_analyze import analyze, paths


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tekken_dir) -> Path:
    tmp = tmp_path_factory.mktemp("sel")
    args = ("--corpus", str(KLUE_DEV), "--tokenizer", str(tekken_dir), "--set", "heldout.fraction=0.5",
            "--set", "score.kiwi_max_eojeol_types=5000")
    assert analyze(tmp, *args) == 0
    return tmp


@pytest.fixture(scope="module")
def scores(run_dir) -> pl.DataFrame:
    return pl.read_parquet(paths(run_dir).stage("score") / "token_scores.parquet")


@pytest.fixture(scope="module")
def keep(run_dir) -> pl.DataFrame:
    return pl.read_parquet(paths(run_dir).stage("select") / "keep.parquet")


def test_every_token_has_exactly_one_consistent_reason(keep, scores, tekken):
    assert keep.height == len(tekken) == scores.height
    assert keep["token_id"].to_list() == list(range(len(tekken)))
    assert keep["reason"].null_count() == 0
    kept = keep.filter(pl.col("keep"))
    dropped = keep.filter(~pl.col("keep"))
    assert set(kept["reason"]) <= set(KEPT_REASONS)
    assert set(dropped["reason"]) <= set(DROPPED_REASONS)
    req = required_ids(tekken)
    reasons = dict(zip(keep["token_id"], keep["reason"]))
    assert all(reasons[i] == r for i, r in req.items())
    kept_ids = set(kept["token_id"])
    assert close_under_merges(tekken, kept_ids) == kept_ids


def test_thresholds_mean_what_they_say(keep, scores):
    cfg = load_config("configs/demo.toml").select
    df = keep.join(scores, on="token_id")
    freq = df.filter(pl.col("reason") == "frequent")
    assert (freq["count"] >= cfg.min_count).all() and (freq["doc_freq"] >= cfg.min_doc_freq).all()
    rare = df.filter(pl.col("reason") == "rare")
    assert ((rare["count"] < cfg.min_count) | (rare["doc_freq"] < cfg.min_doc_freq)).all()
    assert (rare["count"] > 0).all()
    assert (df.filter(pl.col("reason") == "unused")["count"] == 0).all()
    assert df.filter(pl.col("reason") == "script")["script"].is_in(cfg.keep_scripts).all()
    assert df.filter(pl.col("reason") == "hangul_partial")["partial_hangul_only"].all()
    # every used token above the thresholds is kept
    must = df.filter((pl.col("count") >= cfg.min_count) & (pl.col("doc_freq") >= cfg.min_doc_freq))
    assert must["keep"].all()


def test_changing_a_threshold_reruns_only_selection(run_dir, tekken_dir, capsys):
    capsys.readouterr()
    assert analyze(run_dir, "--corpus", str(KLUE_DEV), "--tokenizer", str(tekken_dir),
                   "--set", "heldout.fraction=0.5", "--set", "score.kiwi_max_eojeol_types=5000",
                   "--set", "select.min_count=7", run="t") == 0
    err = capsys.readouterr().err
    for stage in ("tokenizer", "tokenize", "count", "score", "heldout"):
        assert f"[{stage}] up to date, skipped" in err
    assert "[select] done" in err
    m = json.loads(paths(run_dir).metrics.read_text())
    assert m["select"]["thresholds"]["min_count"] == 7
    assert m["vocab"]["selected"] == int(pl.read_parquet(
        paths(run_dir).stage("select") / "keep.parquet")["keep"].sum())
    assert 0 < m["heldout"]["identical_share_selected"] <= 1
    assert m["heldout"]["tokens_per_eojeol_selected"] >= m["heldout"]["tokens_per_eojeol"]


def _brute_force(tok, keep_mask: np.ndarray, texts: list[str], n_eojeol: int) -> tuple[float, float]:
    pruned, id_map = prune_tokenizer(tok, np.flatnonzero(keep_mask).tolist())
    same = 0
    total = 0
    for t in texts:
        a = tok.convert_ids_to_tokens(tok.encode(t, add_special_tokens=False))
        b = pruned.convert_ids_to_tokens(pruned.encode(t, add_special_tokens=False))
        same += a == b
        total += len(b)
    return same / len(texts), total / n_eojeol


@pytest.mark.parametrize("min_count", [1, 3, 20, 200])
def test_sweep_figures_equal_brute_force_retokenization(run_dir, tekken, scores, min_count):
    p = paths(run_dir)
    shards = p.heldout_shards()
    idx = build_heldout_index(tekken, shards)
    texts = pa.concat_tables([pa.ipc.open_file(pa.memory_map(str(f))).read_all()
                              for f in shards]).column("text").to_pylist()
    cfg = dataclasses.replace(load_config("configs/demo.toml").select, min_count=min_count,
                              keep_scripts=[], keep_korean_morphemes=False)
    keep = select(tekken, scores, cfg)["keep"].to_numpy()
    ev = evaluate(idx, tekken, keep)
    share, fert = _brute_force(tekken, keep, texts, idx.eojeol)
    assert ev["heldout_identical_share"] == pytest.approx(share, abs=1e-12)
    assert ev["heldout_tokens_per_eojeol"] == pytest.approx(fert, abs=1e-6)
    if min_count >= 20:
        assert share < 1.0  # the check can fail: pruning really changes some documents


def test_target_vocab_size(tekken, scores):
    base = load_config("configs/demo.toml").select
    n_req = len(required_ids(tekken))
    for target in (n_req + 500, n_req + 3000):
        keep = select(tekken, scores, dataclasses.replace(base, target_vocab_size=target))
        kept = set(keep.filter(pl.col("keep"))["token_id"])
        assert len(kept) <= target
        assert close_under_merges(tekken, kept) == kept
        assert set(required_ids(tekken)) <= kept
        assert "over_target" in set(keep["reason"])
    # more room keeps a superset's worth of frequent coverage
    small = select(tekken, scores, dataclasses.replace(base, target_vocab_size=n_req + 500))
    big = select(tekken, scores, dataclasses.replace(base, target_vocab_size=n_req + 3000))
    cov = lambda k: scores["count"].to_numpy()[k["keep"].to_numpy()].sum()  # noqa: E731
    assert cov(big) >= cov(small)
    with pytest.raises(ConfigError, match="always needs"):
        select(tekken, scores, dataclasses.replace(base, target_vocab_size=n_req - 1))


def test_unknown_script_is_a_config_error(tekken, scores):
    base = load_config("configs/demo.toml").select
    with pytest.raises(ConfigError, match="hangul_syllable"):
        select(tekken, scores, dataclasses.replace(base, keep_scripts=["korean"]))


def test_score_features(scores, tekken):
    assert (scores["share"].sum() == pytest.approx(1.0))
    vocab = tekken.get_vocab()
    row = scores.filter(pl.col("token_id") == vocab["Ġthe"]).row(0, named=True)
    assert row["script"] == "latin" and row["space_marker"] and row["byte_class"] == "complete"
    # tokens only built as intermediates exist and are never emitted
    inter = scores.filter((pl.col("count") == 0) & (pl.col("intermediate_count") > 0))
    assert inter.height > 0
    # Hangul tokens carry Kiwi and fastText features
    hangul = scores.filter((pl.col("script") == "hangul_syllable") & (pl.col("count") > 50))
    assert hangul["kiwi_single_morpheme"].any() and (hangul["lang"] == "ko").mean() > 0.5


def test_intermediates_match_the_real_bpe(tekken, scores):
    """Replaying a token's merges alone ends at the token itself, as the real BPE model does
    when merges are not skipped: the intermediate counts rest on real derivations."""
    import json as _json

    from tokenizers import Tokenizer

    from pipeline.score import _derivation
    from pipeline.closure import merge_index

    data = _json.loads(tekken.backend_tokenizer.to_str())
    data["model"]["ignore_merges"] = False
    data["pre_tokenizer"] = None
    data["normalizer"] = None
    data["added_tokens"] = []
    bpe = Tokenizer.from_str(_json.dumps(data)).model
    index = merge_index(tekken)
    rank = {(int(a), int(b)): (k, int(r)) for k, ((a, b), r)
            in enumerate(zip(index.pairs.tolist(), index.results.tolist()))}
    used = scores.filter((pl.col("count") > 0) & (pl.col("byte_class") == "complete"))
    memo: dict = {}
    checked = 0
    for tid, raw in zip(used["token_id"].to_list()[:400], used["token"].to_list()[:400]):
        toks = [t.id for t in bpe.tokenize(raw)]
        inter = _derivation(tid, index, rank, memo)
        if toks == [tid]:
            assert all(x != tid for x in inter)
            checked += 1
    assert checked > 300
