"""Negative controls for every pass/fail check of the prune stage's verification.

Each test runs the real ``prune`` command on a copy of the default analysis, but the pruned
tokenizer or model is damaged in exactly one way right after it is saved (the save functions
of `pipeline.surgery` are wrapped, also where `pipeline.prune` may import them by name),
before `pipeline.verify` reloads it from disk. The run must stop with exit code 3, write
nothing, name the check that catches the damage, and leave the checks that have no reason to
fail passing (every test but the logits one names the exact set of failing checks). A check
that is never shown to fail is not a check: deleting or inverting any one of them makes its
test here fail."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

import pipeline.prune as prune_module
import pipeline.surgery.model as surgery_model
import pipeline.surgery.tokenizer as surgery_tokenizer
from pipeline.shards import read_shards

from .test_prune import cli, copy_analysis, default_args, metrics, paths

#: Every pass/fail check `pipeline.verify.summarize` runs.
CHECKS = ("identical_ratio_matches_select", "roundtrip_no_regression",
          "fertility_matches_select", "logits_within_tolerance", "greedy_agreement",
          "vocab_after_equals_kept", "chat_template")


# --------------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, tekken_dir) -> Path:
    """The default job, analyzed and pruned without damage: every check runs and passes."""
    tmp = tmp_path_factory.mktemp("clean")
    assert cli(tmp, *default_args(tekken_dir)) == 0
    return tmp


@pytest.fixture()
def analyzed(clean_run, tmp_path) -> Path:
    copy_analysis(clean_run, tmp_path)
    return tmp_path


def damage_tokenizer(monkeypatch, damage) -> None:
    """Call ``damage(out_dir)`` right after the pruned tokenizer is saved."""
    real = surgery_tokenizer.save_pruned_tokenizer

    def save(new_tok, out_dir, *a, **k):
        written = real(new_tok, out_dir, *a, **k)
        damage(Path(out_dir))
        return written

    monkeypatch.setattr(surgery_tokenizer, "save_pruned_tokenizer", save)
    monkeypatch.setattr(prune_module, "save_pruned_tokenizer", save, raising=False)


def damage_model(monkeypatch, damage) -> None:
    """Call ``damage(state_dict)`` on the saved pruned weights and write them back."""
    from safetensors.torch import load_file, save_file

    real = surgery_model.save_pruned_model

    def save(model, out_dir, *a, **k):
        out = real(model, out_dir, *a, **k)
        (f,) = Path(out).glob("*.safetensors")
        state = load_file(str(f))
        damage(state)
        save_file(state, str(f), metadata={"format": "pt"})
        return out

    monkeypatch.setattr(surgery_model, "save_pruned_model", save)
    monkeypatch.setattr(prune_module, "save_pruned_model", save, raising=False)


def edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


#: The quality figures that are no check (greedy continuations) are skipped, and the model
#: evaluation reads fewer tokens, except in the logits test (its check reads those batches).
LIGHT = ("--set", "verify.greedy_new_tokens=0", "--set", "verify.eval_tokens=512")


def failing_prune(tmp: Path, tekken_dir: Path, capsys, *extra: str, light: bool = True
                  ) -> set[str]:
    """Run prune; it must fail verification (exit 3, nothing written). Return the checks named
    in the error message."""
    capsys.readouterr()
    rc = cli(tmp, *default_args(tekken_dir), "--output-dir", str(tmp / "out"),
             *(LIGHT if light else ()), *extra)
    err = capsys.readouterr().err
    assert rc == 3, err
    assert "Traceback" not in err and "Verification of the pruned model failed" in err
    assert not paths(tmp).stage("prune").exists() and not (tmp / "out").exists()
    failed = {c for c in CHECKS if c in err}
    assert failed, err
    return failed


def heldout_token_counts(tmp: Path) -> dict[int, int]:
    """Original token id -> occurrences in the held-out documents."""
    t = read_shards(paths(tmp).heldout_shards(), ["token_ids"])
    ids = np.concatenate([np.asarray(x, dtype=np.int64) for x in t.column("token_ids").to_pylist()
                          if x])
    u, c = np.unique(ids, return_counts=True)
    return dict(zip(u.tolist(), c.tolist()))


# --------------------------------------------------------------------------------------------
# The undamaged run: the baseline the controls are measured against


def test_clean_run_runs_and_passes_every_check(clean_run):
    v = metrics(clean_run)["verify"]
    assert set(v["checks"]) == set(CHECKS) and not v["skipped"]
    assert all(v["checks"].values()) and v["passed"] is True


# --------------------------------------------------------------------------------------------
# One damage per check


def test_removed_merges_fail_identical_share_and_fertility(analyzed, tekken_dir, tekken,
                                                           monkeypatch, capsys):
    """A pruned tokenizer missing the merges that build the most frequent held-out tokens
    splits held-out text into other (more) tokens: the identical share and tokens per eojeol
    no longer equal the select stage's exact figures."""
    counts = heldout_token_counts(analyzed)
    by_count = tekken.convert_ids_to_tokens(sorted(counts, key=counts.get, reverse=True))
    targets = set([s for s in by_count if len(s) > 1][:20])

    def drop_merges(data):
        merges = data["model"]["merges"]
        pair = (lambda m: m) if isinstance(merges[0], list) else (lambda m: m.split(" "))
        kept = [m for m in merges if "".join(pair(m)) not in targets]
        assert len(kept) < len(merges)
        data["model"]["merges"] = kept

    damage_tokenizer(monkeypatch, lambda d: edit_json(d / "tokenizer.json", drop_merges))
    failed = failing_prune(analyzed, tekken_dir, capsys)
    assert failed == {"identical_ratio_matches_select", "fertility_matches_select"}


SMALL_KEEP = ("--set", "select.min_count=50", "--set", "select.keep_scripts=[]",
              "--set", "select.keep_korean_morphemes=false")


def test_fertility_alone_fails_when_only_changed_documents_split_differently(
        analyzed, tekken_dir, tekken, monkeypatch, capsys):
    """With a smaller keep set some held-out documents contain dropped tokens (they are not
    identical anyway). A pruned tokenizer missing the one merge that builds a kept token used
    only in those documents' new splits (never in an identical document, not even on the way to
    one of its tokens) splits them into more tokens: the identical share still matches the
    select stage, tokens per eojeol do not."""
    from tokenizers import Tokenizer

    t = read_shards(paths(analyzed).heldout_shards(), ["text", "token_ids"])
    texts, ids = t.column("text").to_pylist(), t.column("token_ids").to_pylist()
    original = [tekken.convert_ids_to_tokens(x) for x in ids]
    found = {}

    def split_only_changed_documents(d: Path):
        data = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
        enc = [e.tokens for e in Tokenizer.from_str(json.dumps(data))
               .encode_batch(texts, add_special_tokens=False)]
        same = [e == o for e, o in zip(enc, original)]
        assert 0 < sum(same) < len(same)
        in_identical = {x for e, s in zip(enc, same) if s for x in e}
        candidates = Counter(x for e, s in zip(enc, same) if not s for x in e
                             if x not in in_identical and len(x) > 1)
        merges = data["model"]["merges"]
        join = (lambda m: "".join(m)) if isinstance(merges[0], list) else \
            (lambda m: m.replace(" ", ""))
        for cand, _ in candidates.most_common(40):
            trial = dict(data, model=dict(data["model"],
                                          merges=[m for m in merges if join(m) != cand]))
            enc2 = [e.tokens for e in Tokenizer.from_str(json.dumps(trial))
                    .encode_batch(texts, add_special_tokens=False)]
            if all(a == b for a, b, s in zip(enc, enc2, same) if s) and \
                    sum(map(len, enc2)) > sum(map(len, enc)):
                found["token"] = cand
                (d / "tokenizer.json").write_text(json.dumps(trial, ensure_ascii=False),
                                                  encoding="utf-8")
                return
        raise AssertionError("no merge changes only the non-identical documents")

    damage_tokenizer(monkeypatch, split_only_changed_documents)
    assert failing_prune(analyzed, tekken_dir, capsys, *SMALL_KEEP) == \
        {"fertility_matches_select"}
    assert found["token"]


def test_broken_decoder_fails_round_trip(analyzed, tekken_dir, monkeypatch, capsys):
    """A pruned tokenizer whose decoder turns 법 into 벌 (the held-out law texts use 법; the
    chat check's conversation does not): decode(encode(text)) != text where the original
    round-trips it."""
    def break_decoder(data):
        data["decoder"] = {"type": "Sequence", "decoders": [
            data["decoder"], {"type": "Replace", "pattern": {"String": "법"}, "content": "벌"}]}

    damage_tokenizer(monkeypatch, lambda d: edit_json(d / "tokenizer.json", break_decoder))
    assert failing_prune(analyzed, tekken_dir, capsys) == {"roundtrip_no_regression"}


def test_perturbed_embedding_row_fails_logits(analyzed, tekken_dir, monkeypatch, capsys):
    """One kept embedding row (BOS, which starts every logit sequence) moved by 0.01: the
    pruned logits leave the tolerance. The tokenizer checks are untouched."""
    def perturb(state):
        state["model.embed_tokens.weight"][1] += 0.01  # BOS keeps id 1

    damage_model(monkeypatch, perturb)
    failed = failing_prune(analyzed, tekken_dir, capsys, light=False)
    assert "logits_within_tolerance" in failed
    assert failed <= {"logits_within_tolerance", "greedy_agreement"}


def test_rows_only_generation_reads_fail_greedy_agreement(analyzed, tekken_dir, monkeypatch,
                                                          capsys):
    """Noise on the embedding rows of every kept token that no held-out document uses (the
    logit check's inputs are held-out documents, so it never reads them, and passes at the
    default tolerance): once greedy decoding emits such a token and feeds it back, the pruned
    model continues differently. Only the greedy check can see it."""
    import polars as pl

    keep = pl.read_parquet(paths(analyzed).stage("select") / "keep.parquet")["keep"].to_numpy()
    kept = np.flatnonzero(keep)
    used = set(heldout_token_counts(analyzed)) | {1}  # and BOS, which starts every sequence
    unused_new = torch.tensor([new for new, old in enumerate(kept.tolist()) if old not in used])
    assert len(unused_new) > len(kept) // 2

    def perturb(state):
        w = state["model.embed_tokens.weight"]
        g = torch.Generator().manual_seed(0)
        w[unused_new] += torch.randn(len(unused_new), w.shape[1], generator=g, dtype=w.dtype)

    damage_model(monkeypatch, perturb)
    assert failing_prune(analyzed, tekken_dir, capsys) == {"greedy_agreement"}


def test_extra_token_fails_vocab_consistency(analyzed, tekken_dir, monkeypatch, capsys):
    """A pruned tokenizer with one token more than the keep set (and the model rows)."""
    def add_token(d: Path):
        def edit(data):
            new_id = len(data["model"]["vocab"])
            data["model"]["vocab"]["<|negative-control|>"] = new_id
            data["added_tokens"].append({
                "id": new_id, "content": "<|negative-control|>", "single_word": False,
                "lstrip": False, "rstrip": False, "normalized": False, "special": True})
        edit_json(d / "tokenizer.json", edit)

    damage_tokenizer(monkeypatch, add_token)
    assert failing_prune(analyzed, tekken_dir, capsys) == {"vocab_after_equals_kept"}


def test_swapped_ids_fail_vocab_consistency(analyzed, tekken_dir, tekken, monkeypatch, capsys):
    """A pruned tokenizer of the right size whose two most frequent held-out tokens swapped
    ids: text splits into the same strings and decodes back, but the ids no longer point at the
    model rows of those tokens. Only comparing the vocabulary id by id with the kept set finds
    it."""
    counts = heldout_token_counts(analyzed)
    a, b = tekken.convert_ids_to_tokens(sorted(counts, key=counts.get, reverse=True)[:2])

    def swap(data):
        v = data["model"]["vocab"]
        v[a], v[b] = v[b], v[a]

    damage_tokenizer(monkeypatch, lambda d: edit_json(d / "tokenizer.json", swap))
    assert failing_prune(analyzed, tekken_dir, capsys) == {"vocab_after_equals_kept"}


def test_edited_chat_template_fails_chat_check(analyzed, tekken_dir, monkeypatch, capsys):
    """The pruned tokenizer's chat template renders one extra space after [INST]."""
    def edit_template(d: Path):
        jinja = d / "chat_template.jinja"  # where transformers 5 saves it
        assert "chat_template" not in json.loads((d / "tokenizer_config.json").read_text())
        text = jinja.read_text(encoding="utf-8")
        assert "[INST]" in text
        jinja.write_text(text.replace("[INST]", "[INST] "), encoding="utf-8")

    damage_tokenizer(monkeypatch, edit_template)
    assert failing_prune(analyzed, tekken_dir, capsys) == {"chat_template"}


def test_chat_decoding_broken_fails_chat_check(analyzed, tekken_dir, monkeypatch, capsys):
    """The chat text renders the same, but the pruned decoder turns the jamo ㅎ (the chat
    conversation's "ㅎㅎ"; the held-out law texts have none) into ㅋ: the conversation no
    longer round-trips while the original's does."""
    texts = read_shards(paths(analyzed).heldout_shards(), ["text"]).column("text").to_pylist()
    assert not any("ㅎ" in t for t in texts)

    def break_decoder(data):
        data["decoder"] = {"type": "Sequence", "decoders": [
            data["decoder"], {"type": "Replace", "pattern": {"String": "ㅎ"}, "content": "ㅋ"}]}

    damage_tokenizer(monkeypatch, lambda d: edit_json(d / "tokenizer.json", break_decoder))
    assert failing_prune(analyzed, tekken_dir, capsys) == {"chat_template"}


def test_damage_is_really_applied_when_not_strict(analyzed, tekken_dir, monkeypatch):
    """The wrappers above damage the saved directory verification reads: with strict off, the
    damaged model is written, loads, and its metrics show the damage (not a crash elsewhere)."""
    from transformers import AutoModelForCausalLM

    damage_model(monkeypatch, lambda s: s["lm_head.weight"].neg_())  # the argmin is picked
    assert cli(analyzed, *default_args(tekken_dir), "--set", "verify.strict=false",
               *LIGHT) == 0
    m = metrics(analyzed)
    assert m["verify"]["passed"] is False
    assert m["verify"]["checks"]["greedy_agreement"] is False
    assert m["generate"]["agree_restricted"] < 0.5
    assert m["logits"]["max_abs_diff"] > m["logits"]["tolerance"]
    model = AutoModelForCausalLM.from_pretrained(paths(analyzed).stage("prune") / "model")
    assert torch.isfinite(model.get_output_embeddings().weight).all()
