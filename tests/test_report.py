"""The run report end to end on a small real run (KLUE dev + Tekken with a hostile added token).

One run is analyzed and swept once per module (`run_dir`), then a copy of it is pruned with
the demo model (`pruned_dir`). Checks: every section is there, every number on the page equals
its value in metrics.json, the Korean metrics and the text-type table equal brute-force
recomputations (every held-out / train document re-encoded with the pruned tokenizer), token
strings and source names are escaped, the report is byte-identical when rebuilt, and it renders
in headless Chromium with no console error, no network request and non-blank charts.
"""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import metrics as M
from pipeline.__main__ import main
from pipeline.shards import is_heldout

from .conftest import KLUE_DEV

XSS = "<script>alert(1)</script>"
EVIL_SOURCE = '<img src=x onerror="alert(2)">'
SECTIONS = ("summary", "curves", "breakdown", "text-types", "korean", "dropped", "kept-rare",
            "samples")


# --------------------------------------------------------------------------------------------
# Fixtures: one analyzed + swept run, and a pruned copy


@pytest.fixture(scope="module")
def xss_tokenizer_dir(tmp_path_factory, tekken) -> Path:
    """Tekken plus the added (non-special) token ``<script>alert(1)</script>``."""
    from transformers import AutoTokenizer

    d = tmp_path_factory.mktemp("tok")
    tekken.save_pretrained(str(d / "base"))
    tok = AutoTokenizer.from_pretrained(str(d / "base"))
    tok.add_tokens([XSS])
    tok.save_pretrained(str(d / "xss"))
    return d / "xss"


def _evil_groups() -> tuple[str, str]:
    """Two hostile source names, one held out and one counted (the split hashes the group)."""
    names = [f"{EVIL_SOURCE}/{k}" for k in range(100)]
    held = next(n for n in names if is_heldout(n, "heldout-v1", 0.5))
    train = next(n for n in names if not is_heldout(n, "heldout-v1", 0.5))
    return held, train


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    if not KLUE_DEV.exists():
        pytest.skip(f"{KLUE_DEV} not present")
    klue = pq.read_table(KLUE_DEV).to_pylist()[::4]
    held, train = _evil_groups()
    evil = [{"id": f"evil-{i}", "source": src,
             "text": f'{XSS} 안녕하세요 & "따옴표" <b>굵게</b> 鬱龘 입니다.'}
            for i, src in enumerate((held, train))]
    path = tmp_path_factory.mktemp("corpus") / "corpus.parquet"
    pq.write_table(pa.Table.from_pylist(evil + klue), path)
    return path


def cli_args(root: Path, corpus: Path, tok_dir: Path) -> list[str]:
    return ["--no-progress", "--run", "t", "--corpus", str(corpus), "--tokenizer", str(tok_dir),
            "--set", 'prune.model="demo"',
            "--set", "heldout.fraction=0.5", "--set", "langid.min_korean_prob=0",
            # min_count 2: the hostile token (used once) is dropped and shows in every table
            "--set", "select.min_count=2",
            "--set", "sweep.min_count=[1,2,5]", "--set", "sweep.target_vocab_size=[6300]",
            "--set", f'artifacts_dir="{root / "artifacts"}"',
            "--set", f'reports_dir="{root / "reports"}"']


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, corpus, xss_tokenizer_dir) -> Path:
    root = tmp_path_factory.mktemp("report")
    args = cli_args(root, corpus, xss_tokenizer_dir)
    assert main(["sweep", *args]) == 0
    assert main(["report", *args]) == 0
    return root


@pytest.fixture(scope="module")
def pruned_dir(tmp_path_factory, run_dir, corpus, xss_tokenizer_dir) -> Path:
    root = tmp_path_factory.mktemp("pruned")
    shutil.copytree(run_dir / "artifacts", root / "artifacts")
    args = cli_args(root, corpus, xss_tokenizer_dir)
    assert main(["prune", *args]) == 0
    assert main(["report", *args]) == 0
    return root


def page(root: Path) -> str:
    return (root / "reports" / "t" / "index.html").read_text(encoding="utf-8")


def metrics_of(root: Path) -> dict:
    return json.loads((root / "reports" / "t" / "metrics.json").read_text(encoding="utf-8"))


class _Collect(HTMLParser):
    """Ids, data-metric/data-value pairs and the text of the page."""

    def __init__(self):
        super().__init__()
        self.ids, self.values, self.text = set(), [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if "data-metric" in a:
            self.values.append((a["data-metric"], a["data-value"]))

    def handle_data(self, data):
        self.text.append(data)


def parse(html: str) -> _Collect:
    p = _Collect()
    p.feed(html)
    return p


def resolve(m: dict, path: str):
    node = m
    for part in path.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


# --------------------------------------------------------------------------------------------
# Content


def test_every_section_present_and_not_pruned_yet(run_dir):
    html = page(run_dir)
    p = parse(html)
    assert set(SECTIONS) <= p.ids
    assert "verification" not in p.ids
    text = " ".join(p.text)
    assert "not pruned yet" in text.lower()
    assert "DEMO MODEL — RANDOM WEIGHTS" in text
    assert html.count("<svg") >= 3
    m = metrics_of(run_dir)
    assert m["report"]["summary"]["pruned"] is False
    assert m["report"]["summary"]["prune_state"] == "not pruned yet"
    for table in ("dropped", "kept_rare", "samples"):
        assert m["report"]["tables"][table], table
    assert {r["series"] for r in m["report"]["curves"]["points"]} == \
        {"chosen", "min_count", "target_vocab_size"}


def test_every_number_on_the_page_is_in_metrics_json(run_dir, pruned_dir):
    for root in (run_dir, pruned_dir):
        m = metrics_of(root)
        values = parse(page(root)).values
        assert len(values) > 300
        for path, raw in values:
            assert resolve(m, path) == json.loads(raw), path


def test_summary_agrees_with_the_stages(run_dir):
    m = metrics_of(run_dir)
    s, q = m["report"]["summary"], m["quality"]
    assert s["vocab_after"] == m["vocab"]["selected"]
    assert s["vocab_before"] == m["vocab"]["before"]
    assert s["heldout_identical_share"] == pytest.approx(m["heldout"]["identical_share_selected"])
    assert q["before"]["tokens_per_eojeol"] == pytest.approx(m["heldout"]["tokens_per_eojeol"])
    assert q["after"]["tokens_per_eojeol"] == \
        pytest.approx(m["heldout"]["tokens_per_eojeol_selected"])
    chosen = m["report"]["curves"]["chosen"]
    assert chosen["vocab_size"] == s["vocab_after"]
    assert m["report"]["thresholds"]["min_count"] == 2
    assert sum(r["vocab"] for r in m["report"]["breakdown"]) == s["vocab_before"]
    assert sum(r["kept"] for r in m["report"]["breakdown"]) == s["vocab_after"]


def _shard_docs(root: Path, split: str) -> pa.Table:
    files = sorted((root / "artifacts" / "t" / "tokenize" / "shards").glob(f"{split}-*.arrow"))
    return pa.concat_tables([pa.ipc.open_file(str(f)).read_all() for f in files])


def _pruned(root: Path):
    from transformers import AutoTokenizer

    from pipeline.surgery.tokenizer import prune_tokenizer

    tok = AutoTokenizer.from_pretrained(str(root / "artifacts" / "t" / "tokenizer"))
    keep = pl.read_parquet(root / "artifacts" / "t" / "select" / "keep.parquet")["keep"].to_numpy()
    new, _ = prune_tokenizer(tok, np.flatnonzero(keep).tolist())
    return tok, new, np.flatnonzero(keep)


def test_korean_metrics_equal_brute_force(run_dir):
    """Every held-out document encoded with both tokenizers, metrics from their definitions."""
    m = metrics_of(run_dir)
    tok, new, new_to_old = _pruned(run_dir)
    t = _shard_docs(run_dir, "heldout")
    texts = t.column("text").to_pylist()
    scores = pl.read_parquet(run_dir / "artifacts" / "t" / "score" / "token_scores.parquet")
    keys = [M.token_key(b, r) for b, r in zip(scores["token_bytes"], scores["token"])]
    is_ko = (scores["kiwi_single_morpheme"] | scores["kiwi_valid_word"]).to_list()
    words = Counter(w for x in texts for w in x.split())
    n_eoj = sum(len(x.split()) for x in texts)
    for side, tk, to_old in (("before", tok, None), ("after", new, new_to_old)):
        q = m["quality"][side]
        ids = [i for x in texts for i in tk.encode(x, add_special_tokens=False)]
        old = [int(to_old[i]) if to_old is not None else i for i in ids]
        assert q["tokens"] == len(ids)
        assert q["tokens_per_eojeol"] == pytest.approx(len(ids) / n_eoj)
        assert q["bytes_per_token"] == pytest.approx(sum(len(x.encode()) for x in texts) / len(ids))
        assert q["chars_per_token"] == pytest.approx(sum(len(x) for x in texts) / len(ids))
        c = Counter(old)
        h = math.log(sum((v / len(ids)) ** 2.5 for v in c.values())) / (1 - 2.5)
        assert q["renyi_efficiency"] == pytest.approx(h / math.log(len(tk)))
        uniq = {keys[i] for i in c if keys[i]}
        ko = {keys[i] for i in c if keys[i] and is_ko[i]}
        assert (q["unique_tokens"], q["ko_tokens"]) == (len(uniq), len(ko))
        lengths = {w: sum(1 for x in tk.convert_ids_to_tokens(
            tk.encode(" " + w, add_special_tokens=False)) if x != "Ġ") for w in words}
        assert q["strr"] == pytest.approx(sum(n == 1 for n in lengths.values()) / len(words))
        assert q["multi_token_eojeol_share"] == pytest.approx(
            sum(words[w] for w, n in lengths.items() if n >= 2) / sum(words.values()))
        assert 0 < q["pure_share"] < 1 and q["vocab_size"] == len(tk)
    assert m["quality"]["eojeol_types"] == m["quality"]["eojeol_types_total"] == len(words)


def test_text_type_table_equals_brute_force(run_dir):
    """Both splits, every document re-encoded (the report re-encodes only changed ones)."""
    m = metrics_of(run_dir)
    tok, new, _ = _pruned(run_dir)
    rows = {(r["text_type"], r["split"]): r for r in m["report"]["text_types"]}
    for split in ("heldout", "train"):
        t = _shard_docs(run_dir, split)
        agg: dict = {}
        for src, text, n in zip(t.column("source").to_pylist(), t.column("text").to_pylist(),
                                t.column("n_tokens").to_pylist()):
            a = agg.setdefault(M.text_type(src), Counter())
            a.update(documents=1, before=n, after=len(new.encode(text, add_special_tokens=False)),
                     eojeol=len(text.split()))
        for typ, a in agg.items():
            r = rows[(typ, split)]
            assert (r["documents"], r["tokens_before"], r["tokens_after"]) == \
                (a["documents"], a["before"], a["after"]), (typ, split)
            assert r["tokens_per_eojeol_after"] == pytest.approx(a["after"] / a["eojeol"])
        total = rows[("(all)", split)]
        assert total["documents"] == t.num_rows
    assert ("klue-nli/wikipedia", "train") in rows or ("klue-nli/wikipedia", "heldout") in rows
    assert any(typ == EVIL_SOURCE for typ, _ in rows)


def test_token_strings_and_sources_are_escaped(run_dir):
    html = page(run_dir)
    assert XSS not in html
    assert EVIL_SOURCE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in html
    assert html.count("<script") == 1  # the report's own sorting script only
    kept = metrics_of(run_dir)["report"]["tables"]["kept_rare"]
    assert any(r["token"] == XSS and r["reason"] == "special" for r in kept)


def test_report_is_deterministic(run_dir, corpus, xss_tokenizer_dir):
    before = page(run_dir), metrics_of(run_dir)
    raw = (run_dir / "reports" / "t" / "metrics.json").read_bytes()
    assert main(["report", *cli_args(run_dir, corpus, xss_tokenizer_dir)]) == 0
    assert page(run_dir) == before[0]
    assert (run_dir / "reports" / "t" / "metrics.json").read_bytes() == raw


def test_pruned_report_shows_model_figures(pruned_dir, run_dir):
    html, m = page(pruned_dir), metrics_of(pruned_dir)
    p = parse(html)
    assert set(SECTIONS) | {"verification"} <= p.ids
    assert "not pruned yet" not in " ".join(p.text).lower()
    s = m["report"]["summary"]
    assert s["pruned"] and s["prune_state"] == "pruned" and s["demo_model"]
    assert s["pruned_tokenizer"] == "prune stage"
    assert s["params_before"] == m["params"]["before"] > s["params_after"] == m["params"]["after"]
    assert s["mb_saved"] == pytest.approx((m["bytes"]["before"] - m["bytes"]["after"]) / 1e6)
    assert s["identical_ratio_verified"] == pytest.approx(m["heldout"]["identical_ratio"])
    assert s["logits_max_abs_diff"] == pytest.approx(m["logits"]["max_abs_diff"], abs=1e-12)
    assert s["verify_passed"] is True
    # the saved pruned tokenizer gives the same figures as the in-memory one
    assert m["quality"] == metrics_of(run_dir)["quality"]
    assert "RANDOM WEIGHTS" in html


def test_report_without_analysis_is_a_clear_error(tmp_path, capsys):
    rc = main(["report", "--no-progress", "--run", "nothing",
               "--set", f'artifacts_dir="{tmp_path / "a"}"',
               "--set", f'reports_dir="{tmp_path / "r"}"'])
    assert rc == 2
    assert "analyze" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# Headless Chromium


def _chromium() -> str:
    import os

    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which(
        "chromium-browser")
    if not path:
        pytest.skip("Chromium not installed (CI: `apt-get install -y chromium`); "
                    "the browser check is skipped")
    return path


@pytest.mark.slow
def test_renders_in_headless_chromium(run_dir, pruned_dir, tmp_path):
    pytest.importorskip("playwright.sync_api", reason="playwright (PyPI) not installed")
    from PIL import Image
    from playwright.sync_api import sync_playwright

    exe = _chromium()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=exe, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"])
        try:
            for root in (run_dir, pruned_dir):
                _check_page(browser, root / "reports" / "t" / "index.html", tmp_path, Image)
        finally:
            browser.close()


def _check_page(browser, path: Path, tmp: Path, Image) -> None:
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    pg = context.new_page()
    errors, requests, dialogs = [], [], []
    pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("request", lambda req: requests.append(req.url))
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.goto(path.resolve().as_uri(), wait_until="load")
    assert errors == [] and dialogs == []
    assert requests == [path.resolve().as_uri()]  # nothing else: no network, no other file
    assert pg.evaluate("document.body.innerText.includes('<script>alert(1)</script>')")
    assert pg.evaluate("document.scripts.length") == 1
    charts = pg.query_selector_all("svg.chart")
    titles = [c.query_selector(".chart-title").text_content() for c in charts]
    assert titles == ["Vocabulary size vs identical share (held-out, sets)",
                      "Vocabulary size vs held-out tokens per eojeol",
                      "Kept vocabulary vs documents tokenized identically",
                      "Kept vocabulary vs token occurrences covered",
                      "Kept share of each class"], titles
    for k, chart in enumerate(charts):
        box = chart.bounding_box()
        assert box["width"] > 300 and box["height"] > 150
        shot = tmp / f"chart{k}.png"
        chart.screenshot(path=str(shot))
        px = np.asarray(Image.open(shot).convert("L"))
        assert (px < 200).mean() > 0.01, f"chart {k} is blank"
    for tid in ("tbl-sweep", "tbl-breakdown", "tbl-types", "tbl-dropped", "tbl-kept",
                "tbl-samples"):
        assert pg.evaluate(f"document.querySelectorAll('#{tid} tbody tr').length") > 0, tid
    # sorting: train count, descending on the second click
    col = pg.evaluate("Array.from(document.querySelectorAll('#tbl-kept thead th'))"
                      ".findIndex(th => th.textContent.trim().startsWith('train count'))")
    header = pg.query_selector_all("#tbl-kept thead th")[col]
    header.click()
    header.click()
    vals = pg.evaluate(f"Array.from(document.querySelectorAll('#tbl-kept tbody tr'))"
                       f".map(r => parseFloat(r.cells[{col}].dataset.value))")
    assert vals == sorted(vals, reverse=True)
    # filtering
    total = pg.evaluate("document.querySelectorAll('#tbl-kept tbody tr').length")
    pg.fill('input.filter[data-table="tbl-kept"]', "special")
    shown = pg.evaluate("Array.from(document.querySelectorAll('#tbl-kept tbody tr'))"
                        ".filter(r => r.style.display !== 'none').map(r => r.textContent)")
    assert 0 < len(shown) < total and all("special" in r for r in shown)
    assert pg.inner_text('.count[data-table="tbl-kept"]') == f"{len(shown)} of {total} rows"
    assert errors == [] and dialogs == []
    context.close()
