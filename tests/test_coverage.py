"""Evaluation sets and coverage figures, checked against brute force: every document of each
split re-tokenized with the original and with a pruned tokenizer built from scratch
(`prune_tokenizer`), tokens counted with a plain Counter."""

from __future__ import annotations

import json
import unicodedata
from collections import Counter

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from pipeline.__main__ import main
from pipeline.closure import close_under_merges, required_ids
from pipeline.config import load_config
from pipeline.errors import ConfigError, InputError
from pipeline.evalsets import eval_sets
from pipeline.metrics import text_type
from pipeline.shards import read_shards
from pipeline.surgery.tokenizer import prune_tokenizer

from .conftest import KLUE_DEV, NSMC
from .test_analyze import paths

N_KLUE, N_NSMC = 600, 400
SETS = (f'[{{name = "klue", source = "{KLUE_DEV}", max_documents = {N_KLUE}}}, '
        f'{{name = "nsmc", source = "{NSMC}", max_documents = {N_NSMC}}}]')
# no script/morpheme rules: coverage below 1 on every split, so the figures are not trivial
ARGS = ("--set", "select.keep_scripts=[]", "--set", "select.keep_korean_morphemes=false",
        "--set", "select.keep_hangul_partials=false", "--set", "select.min_count=2")


def run_cli(tmp, command, *args, run="t"):
    return main([command, "--no-progress", "--run", run, "--config", "configs/demo.toml",
                 "--set", f'artifacts_dir="{tmp / "artifacts"}"',
                 "--set", f'reports_dir="{tmp / "reports"}"',
                 "--set", "score.kiwi_max_eojeol_types=2000", *args])


@pytest.fixture(scope="module")
def cov_run(tmp_path_factory, tekken_dir):
    if not KLUE_DEV.exists() or not NSMC.exists():
        pytest.skip("../shared/data not present")
    tmp = tmp_path_factory.mktemp("cov")
    assert run_cli(tmp, "sweep", "--tokenizer", str(tekken_dir), "--set", f"eval.sets={SETS}",
                   "--set", "sweep.min_count=[1, 5]", "--set", "sweep.top_latin=[300, 3000]", "--set", 'sweep.rules=["keep_ksx1001"]',
                   "--set", "sweep.max_ksx1001=[100, 1000]", *ARGS) == 0
    return tmp


def _texts(path, n):
    t = pq.read_table(path, columns=["text", "source"]).slice(0, n)
    rows = [(unicodedata.normalize("NFC", x), s) for x, s in
            zip(t.column("text").to_pylist(), t.column("source").to_pylist())]
    return [(x, s) for x, s in rows if x.strip()]


def _split_docs(p, name, tekken):
    if name == "klue":
        return _texts(KLUE_DEV, N_KLUE)
    if name == "nsmc":
        return _texts(NSMC, N_NSMC)
    t = read_shards(p.train_shards() if name == "train" else p.heldout_shards(), ["text", "source"])
    return list(zip(t.column("text").to_pylist(), t.column("source").to_pylist()))


def _brute(tekken, keep_ids, docs):
    """(identical share, occurrence coverage, tokens before, tokens after, per-doc identical)"""
    pruned, _ = prune_tokenizer(tekken, sorted(keep_ids))
    keep = np.zeros(len(tekken), dtype=bool)
    keep[list(keep_ids)] = True
    same, occ, n_before, n_after = [], 0, 0, 0
    for text, _ in docs:
        o = tekken.backend_tokenizer.encode(text, add_special_tokens=False)
        p = pruned.backend_tokenizer.encode(text, add_special_tokens=False)
        same.append(o.tokens == p.tokens)
        occ += int(keep[o.ids].sum()) if o.ids else 0
        n_before += len(o.ids)
        n_after += len(p.ids)
    return np.array(same), occ / n_before, n_before, n_after


def _metrics(tmp):
    return json.loads(paths(tmp).metrics.read_text())


def _keep(tmp):
    return pl.read_parquet(paths(tmp).stage("select") / "keep.parquet").sort("token_id")


@pytest.mark.parametrize("name", ["klue", "nsmc"])
def test_eval_set_figures_equal_brute_force(cov_run, tekken, name):
    m = _metrics(cov_run)["eval"][name]
    keep = _keep(cov_run)
    docs = _split_docs(paths(cov_run), name, tekken)
    same, _, nb, na = _brute(tekken, np.flatnonzero(keep["keep"].to_numpy()).tolist(), docs)
    eojeol = sum(len(t.split()) for t, _ in docs)
    assert m["documents"] == len(docs)
    assert m["identical_share"] == pytest.approx(same.mean(), abs=1e-12)
    assert 0 < m["identical_share"] < 1  # the check is not vacuous
    assert (m["tokens_before"], m["tokens_after"]) == (nb, na)
    assert m["tokens_per_eojeol_before"] == pytest.approx(nb / eojeol, abs=1e-6)
    assert m["tokens_per_eojeol_after"] == pytest.approx(na / eojeol, abs=1e-6)


@pytest.mark.parametrize("name", ["train", "heldout", "klue", "nsmc"])
def test_coverage_equals_brute_force(cov_run, tekken, name):
    c = _metrics(cov_run)["coverage"][name]
    keep = _keep(cov_run)
    docs = _split_docs(paths(cov_run), name, tekken)
    kept = np.flatnonzero(keep["keep"].to_numpy()).tolist()
    same, occ, nb, _ = _brute(tekken, kept, docs)
    assert (c["documents"], c["tokens"]) == (len(docs), nb)
    assert c["documents_covered"] == pytest.approx(same.mean(), abs=1e-12)
    assert c["occurrences"] == pytest.approx(occ, abs=1e-12)
    # by text type: documents and identical documents per type
    by_type = Counter(text_type(s) for _, s in docs)
    same_type = Counter(text_type(s) for (_, s), ok in zip(docs, same) if ok)
    assert {r["text_type"]: (r["documents"], r["documents_covered"]) for r in c["by_text_type"]} \
        == {t: (n, same_type[t]) for t, n in by_type.items()}
    assert sum(r["occurrences"] for r in c["by_script"]) == nb
    # curve: three prefixes of the selection order, each pruned for real
    order = keep["order"].to_numpy()
    pts = c["curve"]
    assert pts[-1]["vocab_size"] == len(kept) and pts[-1]["documents"] == c["documents_covered"]
    for pt in (pts[len(pts) // 3], pts[2 * len(pts) // 3]):
        prefix = np.flatnonzero((order >= 0) & (order < pt["vocab_size"])).tolist()
        if len(prefix) < len(required_ids(tekken)):  # the tokenizer cannot be pruned below that
            continue
        s, o, _, _ = _brute(tekken, prefix, docs)
        assert pt["documents"] == pytest.approx(s.mean(), abs=1e-12), pt
        assert pt["occurrences"] == pytest.approx(o, abs=1e-12), pt


def test_seen_only_baseline_equals_brute_force(cov_run, tekken):
    p = paths(cov_run)
    train = _split_docs(p, "train", tekken)
    seen = set(required_ids(tekken))
    for text, _ in train:
        seen.update(tekken.encode(text, add_special_tokens=False))
    seen = close_under_merges(tekken, seen)
    cov = _metrics(cov_run)["coverage"]
    for name in ("heldout", "klue"):
        same, occ, _, _ = _brute(tekken, seen, _split_docs(p, name, tekken))
        b = cov[name]["seen_only"]
        assert b["vocab_size"] == len(seen)
        assert b["documents"] == pytest.approx(same.mean(), abs=1e-12)
        assert b["occurrences"] == pytest.approx(occ, abs=1e-12)


def test_uncovered_tokens_are_the_most_frequent_dropped_ones(cov_run, tekken):
    keep = _keep(cov_run)["keep"].to_numpy()
    c = _metrics(cov_run)["coverage"]["klue"]
    cnt = Counter()
    for text, _ in _split_docs(paths(cov_run), "klue", tekken):
        cnt.update(i for i in tekken.encode(text, add_special_tokens=False) if not keep[i])
    want = sorted(cnt.items(), key=lambda kv: (-kv[1], kv[0]))[:len(c["uncovered"])]
    assert [(r["token_id"], r["count"]) for r in c["uncovered"]] == want
    assert c["uncovered"]
    for r in c["uncovered"]:
        assert "[" + r["text"] + "]" in r["context"]


def test_every_prefix_of_the_selection_order_is_closed(cov_run, tekken):
    order = _keep(cov_run)["order"].to_numpy()
    ids = np.argsort(np.where(order >= 0, order, np.iinfo(np.int64).max))[: int((order >= 0).sum())]
    for k in (50, 400, 1500, len(ids) // 2, len(ids)):
        prefix = set(ids[:k].tolist())
        assert close_under_merges(tekken, prefix) == prefix, k


def test_sweep_has_one_curve_per_eval_set(cov_run):
    df = pl.read_parquet(paths(cov_run).stage("sweep") / "sweep.parquet")
    ev = _metrics(cov_run)["eval"]
    chosen = df.filter(pl.col("point") == "chosen").row(0, named=True)
    for name in ("klue", "nsmc"):
        assert chosen[f"{name}_identical_share"] == ev[name]["identical_share"]
        assert df[f"{name}_identical_share"].null_count() == 0
    # the top_latin grid is its own curve, growing with top_latin
    tl = df.filter(pl.col("grid") == "top_latin").sort("top_latin")
    assert tl["top_latin"].to_list() == [300, 3000]
    assert tl["vocab_size"][0] < tl["vocab_size"][1]
    # the max_ksx1001 grid (keep_ksx1001 on, capped) is a curve too, and no flipped point
    mk = df.filter(pl.col("grid") == "max_ksx1001").sort("max_ksx1001")
    assert mk["max_ksx1001"].to_list() == [100, 1000] and mk["flipped"].to_list() == ["", ""]
    assert chosen["vocab_size"] < mk["vocab_size"][0] < mk["vocab_size"][1]
    # a flipped on/off rule is one point: keep_ksx1001 on adds tokens and loses no document
    ks = df.filter(pl.col("grid") == "keep_ksx1001").row(0, named=True)
    assert ks["flipped"] == "keep_ksx1001=true" and ks["vocab_size"] > chosen["vocab_size"]
    assert ks["klue_identical_share"] >= chosen["klue_identical_share"]


def test_sweep_refuses_an_unknown_rule():
    import dataclasses

    from pipeline.sweep import sweep

    cfg = load_config("configs/demo.toml")
    grid = dataclasses.replace(cfg.sweep, rules=["keep_everything"])
    with pytest.raises(ConfigError, match="keep_everything"):
        sweep(None, None, None, cfg.select, grid)


@pytest.mark.parametrize("entry, message", [
    ('{name = "klue", source = "x.parquet", colour = 1}', "Unknown key"),
    ('{name = "heldout", source = "x.parquet"}', "name"),
    ('{name = "Bad Name", source = "x.parquet"}', "name"),
    ('{name = "klue"}', "no `source`"),
    ('{name = "klue", source = "x.parquet", max_documents = -1}', "out of range"),
    ('"klue"', "inline table"),
])
def test_bad_eval_set_entries_are_refused(entry, message):
    sets = __import__("tomllib").loads(f"v = [{entry}]")["v"]
    with pytest.raises(ConfigError, match=message):  # at load (types) or when the sets are read
        eval_sets(load_config("configs/demo.toml", {"eval.sets": sets}))


def test_duplicate_eval_set_names_are_refused():
    cfg = load_config("configs/demo.toml", {"eval.sets": [{"name": "a", "source": "x.txt"},
                                                          {"name": "a", "source": "y.txt"}]})
    with pytest.raises(ConfigError, match="twice"):
        eval_sets(cfg)


def test_missing_or_empty_eval_set_source_stops_before_work(tmp_path, tekken_dir, capsys):
    rc = run_cli(tmp_path, "analyze", "--tokenizer", str(tekken_dir), "--set",
                 f'eval.sets=[{{name = "gone", source = "{tmp_path}/missing.parquet"}}]')
    assert rc != 0 and "missing.parquet" in capsys.readouterr().err
    assert not paths(tmp_path).stage("tokenize").exists()  # refused before any work
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    rc = run_cli(tmp_path, "analyze", "--tokenizer", str(tekken_dir), "--set",
                 f'eval.sets=[{{name = "empty", source = "{empty}"}}]')
    assert rc != 0 and "no non-blank document" in capsys.readouterr().err


def test_prune_evaluates_the_model_on_every_eval_set(cov_run, tekken, tekken_dir):
    assert run_cli(cov_run, "prune", "--tokenizer", str(tekken_dir), "--set",
                   f"eval.sets={SETS}", "--set", "sweep.min_count=[1, 5]",
                   "--set", "sweep.top_latin=[300, 3000]", "--set", 'sweep.rules=["keep_ksx1001"]',
                   "--set", "sweep.max_ksx1001=[100, 1000]", *ARGS,
                   "--set", "verify.eval_tokens=1500", "--set", "verify.greedy_new_tokens=2") == 0
    m = _metrics(cov_run)
    kept = np.flatnonzero(_keep(cov_run)["keep"].to_numpy()).tolist()
    for name in ("heldout", "klue", "nsmc"):
        ev = m["model_eval"][name]
        docs = _split_docs(paths(cov_run), name, tekken)
        same, _, _, _ = _brute(tekken, kept, docs)
        assert ev["documents"] == len(docs)
        # the strata weights are the bytes of the identical / changed documents of the set
        nbytes = np.array([len(t.encode()) for t, _ in docs])
        assert ev["strata_bytes"] == {"identical": int(nbytes[same].sum()),
                                      "changed": int(nbytes[~same].sum())}
        assert 0 < ev["tokens_before"] <= 1500 and ev["bits_per_byte"]["before"] > 0
    assert m["verify"]["passed"] is True


def test_report_coverage_section_matches_the_stage_metrics(cov_run, tekken_dir):
    """After the prune test (module order): the coverage table holds every split, with the
    select stage's figures and the prune stage's bits per byte, and every number on the page
    is the metrics.json value at its data-metric path."""
    from .test_report import parse, resolve

    assert run_cli(cov_run, "report", "--tokenizer", str(tekken_dir), "--set",
                   f"eval.sets={SETS}", "--set", "sweep.min_count=[1, 5]", "--set", "sweep.top_latin=[300, 3000]", "--set", 'sweep.rules=["keep_ksx1001"]',
                   "--set", "sweep.max_ksx1001=[100, 1000]", *ARGS,
                   "--set", "verify.eval_tokens=1500", "--set", "verify.greedy_new_tokens=2") == 0
    m = _metrics(cov_run)
    html = (paths(cov_run).reports / "index.html").read_text(encoding="utf-8")
    page = parse(html)
    assert "coverage" in page.ids
    for path, raw in page.values:
        assert resolve(m, path) == json.loads(raw), path
    rows = {r["split"]: r for r in m["report"]["coverage"]["splits"]}
    assert list(rows) == ["train", "heldout", "klue", "nsmc"]
    for name, r in rows.items():
        c = m["coverage"][name]
        assert (r["occurrences"], r["documents_covered"]) == (
            pytest.approx(c["occurrences"], abs=1e-6), pytest.approx(c["documents_covered"], abs=1e-6))
        if name != "train":
            assert r["bpb_before"] == pytest.approx(m["model_eval"][name]["bits_per_byte"]["before"])
    assert m["report"]["coverage"]["eval_sets"] == ["klue", "nsmc"]
    # one sweep curve per evaluation set, one coverage curve per split
    assert html.count("(evaluation set)") >= 2 * 2
    assert all(f">{n}<" in html or f"{n}:" in html for n in rows)
    # the [sweep] rules point (keep_ksx1001 flipped) is marked on the sweep charts
    flip = next(r for r in m["report"]["curves"]["points"] if r.get("flipped"))
    assert html.count(f"{flip['flipped']}: {flip['vocab_size']:,}") == 2
