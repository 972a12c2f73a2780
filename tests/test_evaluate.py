"""`pipeline.evaluate` against brute force on a small model of a real architecture: bits per
byte per stratum, the strata estimate, top-1 agreement, kept logits and greedy continuations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from pipeline.closure import close_under_merges, required_ids
from pipeline.evaluate import cut_text, greedy_continuations, model_eval
from pipeline.surgery.model import prune_model
from pipeline.surgery.tokenizer import prune_tokenizer


@pytest.fixture(scope="module")
def setup(tekken, klue_texts):
    texts = klue_texts[2000:2060]
    enc = [tekken.encode(t, add_special_tokens=False) for t in texts]
    # keep the tokens of the first 40 texts: the last 20 mostly change tokenization
    keep = set(required_ids(tekken)) | {i for e in enc[:40] for i in e}
    kept = np.array(sorted(close_under_merges(tekken, keep)))
    new_tok, _ = prune_tokenizer(tekken, kept.tolist())
    cfg = AutoConfig.for_model("qwen2", vocab_size=len(tekken), hidden_size=32,
                               intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                               num_key_value_heads=2, head_dim=8, tie_word_embeddings=True,
                               bos_token_id=tekken.bos_token_id, eos_token_id=tekken.eos_token_id)
    torch.manual_seed(0)
    orig = AutoModelForCausalLM.from_config(cfg).eval()
    import copy

    pruned = prune_model(copy.deepcopy(orig), kept).eval()
    ident = np.array([set(e) <= set(kept.tolist()) for e in enc])
    assert 10 < ident.sum() < len(texts)
    return texts, ident, kept, orig, pruned, tekken, new_tok


def _bits(model, ids):
    with torch.no_grad():
        lsm = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1].double(), -1)
    return -float(lsm[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum()) / np.log(2)


def test_bits_per_byte_top1_and_logits_equal_brute_force(setup):
    texts, ident, kept, orig, pruned, tok, new_tok = setup
    ev = model_eval(orig, pruned, tok, new_tok, texts, ident, kept, max_tokens=100_000,
                    max_doc_bytes=100_000, batch_tokens=300)
    assert ev["documents_evaluated"] == len(texts)  # budget large enough for everything
    bos_o, bos_p = tok.bos_token_id, new_tok.bos_token_id
    sums = {s: {"o": 0.0, "p": 0.0, "b": 0, "n": 0} for s in ("identical", "changed")}
    agree = pos = 0
    for t, same in zip(texts, ident):
        o = [bos_o] + tok.encode(t, add_special_tokens=False)
        p = [bos_p] + new_tok.encode(t, add_special_tokens=False)
        s = sums["identical" if same else "changed"]
        s["o"] += _bits(orig, o)
        s["p"] += _bits(pruned, p)
        s["b"] += len(t.encode())
        s["n"] += 1
        if same:
            with torch.no_grad():
                lo, lp = orig(torch.tensor([o])).logits[0], pruned(torch.tensor([p])).logits[0]
            agree += int((torch.as_tensor(kept)[lp[:-1].argmax(-1)] == lo[:-1].argmax(-1)).sum())
            pos += len(o) - 1
    for name, s in sums.items():
        got = ev[f"bits_per_byte_{name}"]
        assert got["documents"] == s["n"]
        assert got["before"] == pytest.approx(s["o"] / s["b"], rel=1e-4)
        assert got["after"] == pytest.approx(s["p"] / s["b"], rel=1e-4)
    w = {k: sums[k]["b"] for k in sums}
    for k, key in (("before", "o"), ("after", "p")):
        ref = sum(w[s] * sums[s][key] / sums[s]["b"] for s in sums) / sum(w.values())
        assert ev["bits_per_byte"][k] == pytest.approx(ref, rel=1e-4)
    assert ev["top1_agreement"] == pytest.approx(agree / pos, abs=1e-6)
    assert ev["logits"]["max_abs_diff"] <= 1e-5 and ev["logits"]["documents"] == int(ident.sum())
    assert ev["bits_per_byte_identical"]["after"] <= ev["bits_per_byte_identical"]["before"]


def test_broken_pruned_model_shows_in_every_figure(setup):
    """Negative control: a pruned model whose kept rows were changed."""
    import copy

    texts, ident, kept, orig, pruned, tok, new_tok = setup
    broken = copy.deepcopy(pruned)
    with torch.no_grad():
        broken.get_input_embeddings().weight.mul_(-1.0)
    ev = model_eval(orig, broken, tok, new_tok, texts, ident, kept, max_tokens=100_000,
                    max_doc_bytes=100_000, batch_tokens=300)
    assert ev["logits"]["max_abs_diff"] > 1e-3
    assert ev["top1_agreement"] < 0.9


def test_budget_and_strata_sampling(setup):
    texts, ident, kept, orig, pruned, tok, new_tok = setup
    ev = model_eval(orig, pruned, tok, new_tok, texts, ident, kept, max_tokens=400,
                    max_doc_bytes=100_000, batch_tokens=300)
    assert ev["tokens_before"] + ev["documents_evaluated"] <= 400
    assert ev["bits_per_byte_changed"]["documents"] >= 1  # changed docs get their share
    again = model_eval(orig, pruned, tok, new_tok, texts, ident, kept, max_tokens=400,
                       max_doc_bytes=100_000, batch_tokens=300)
    assert again == ev  # seeded: deterministic


def test_cut_text_at_whitespace():
    assert cut_text("가나다 라마바 사아", 12) == "가나다"
    assert cut_text("가나다", 100) == "가나다"
    assert cut_text("가나다라", 7) == "가나"  # no space: a character boundary
    assert len(cut_text("대한민국 " * 100, 50).encode()) <= 50


def test_greedy_continuations_side_by_side(setup):
    import copy

    texts, ident, kept, orig, pruned, tok, new_tok = setup
    prompts = ["대한민국의 수도는", "오늘 날씨가"]
    same = greedy_continuations(orig, orig, tok, tok, prompts=prompts, new_tokens=4)
    assert same["agreement"] == 1.0 and len(same["prompts"]) == 2
    assert all(r["original"] == r["pruned"] != "" for r in same["prompts"])
    broken = copy.deepcopy(orig)
    with torch.no_grad():
        broken.get_input_embeddings().weight.mul_(-3.0)
    diff = greedy_continuations(orig, broken, tok, tok, prompts=prompts, new_tokens=4)
    assert diff["agreement"] < 1.0
    assert diff["agreement"] == sum(r["original"] == r["pruned"] for r in diff["prompts"]) / 2
    assert [r["original"] for r in diff["prompts"]] == [r["original"] for r in same["prompts"]]
