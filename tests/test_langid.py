"""fastText language ID through the list form agrees with the single-string reference."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline import langid

from .conftest import NSMC

FOREIGN = ["The capital of Korea is Seoul.", "Bonjour tout le monde, comment ça va ?",
           "東京は日本の首都です。", "Москва — столица России.", "서울 is the capital 입니다",
           "ㅋㅋㅋㅋ", "", "1234 5678", "한국어와 English가 섞인 문장입니다"]


def _reference(texts, k=5):
    model = langid.load_model(None)
    out = []
    for t in texts:
        preds = model.f.predict(t.replace("\n", " ") + "\n", k, 0.0, "strict")
        out.append({lab[9:]: min(p, 1.0) for p, lab in preds})
    return out


def test_classify_matches_single_string_reference():
    texts = pq.read_table(NSMC, columns=["text"]).slice(0, 1500).column("text").to_pylist() + FOREIGN
    langs, top, ko = langid.classify(texts)
    ref = _reference(texts)
    for i, r in enumerate(ref):
        if not r:
            assert langs[i] == "" and top[i] == 0 and ko[i] == 0
            continue
        best = max(r, key=r.get)
        assert langs[i] == best
        assert abs(top[i] - r[best]) < 1e-6
        assert abs(ko[i] - r.get("ko", 0.0)) < 1e-6, texts[i]
    # some Korean texts are not top-1 Korean: their ko probability comes from rank 2..5
    assert any(0 < k < t for k, t, l in zip(ko, top, langs) if l != "ko")


def test_predict_languages():
    langs, probs = langid.predict(["대한민국의 수도는 서울이다.", "The capital is Seoul.",
                                   "東京は日本の首都です。"])
    assert langs == ["ko", "en", "ja"]
    assert probs.dtype == np.float32 and (probs > 0.5).all()


def test_worker_process_gives_the_same_results_and_exits():
    from pipeline.langid_worker import LangidWorker

    texts = pq.read_table(NSMC, columns=["text"]).slice(0, 300).column("text").to_pylist() + FOREIGN
    w = LangidWorker(max_chars=50)
    try:
        futs = [w.submit(texts[:150]), w.submit(texts[150:])]
        langs = futs[0].result()[0] + futs[1].result()[0]
        ko = np.concatenate([futs[0].result()[2], futs[1].result()[2]])
        ref_langs, _, ref_ko = langid.classify(texts, max_chars=50)
        assert langs == ref_langs and np.array_equal(ko, ref_ko)
        bad = LangidWorker(model_path="/nonexistent/lid.bin")
        try:
            with pytest.raises(Exception, match="does not exist"):
                bad.submit(["안녕"]).result()
        finally:
            bad.close()
    finally:
        w.close()
    assert w.proc.returncode == 0
