"""Model surgery, demo model and model-side verification, on tiny random models of real
architectures (Qwen2, Llama, Mistral, Gemma3 text, Phi with LM-head bias), all offline."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from pipeline.errors import InputError
from pipeline.surgery.model import (
    heads_are_tied,
    id_map_from_kept,
    load_source_model,
    prune_model,
    real_vocab_rows,
    remap_special_ids,
    save_pruned_model,
)
from pipeline.verify_model import (
    bytes_on_disk,
    greedy_agreement,
    kept_sequences,
    max_abs_logit_diff,
    param_counts,
)

VOCAB = 1200
N_KEPT_RANDOM = 300
TOL = 1e-5

# (model_type, extra config) — every architecture is tested tied and untied.
ARCHS = {
    "qwen2": {"head_dim": 8},
    "llama": {"head_dim": 8},
    "mistral": {"head_dim": 8},
    "gemma3_text": {"head_dim": 8, "final_logit_softcapping": 30.0},
    "phi": {},  # LM head with bias
}
CASES = [(arch, tie) for arch in ARCHS for tie in (True, False)]


def tiny_config(arch: str, tie: bool, vocab: int = VOCAB):
    return AutoConfig.for_model(
        arch, vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tie, **ARCHS[arch])


def save_tiny_model(arch: str, tie: bool, path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(arch, tie))
    if not tie:  # make sure an untied head really differs from the embedding
        assert not torch.equal(model.get_output_embeddings().weight,
                               model.get_input_embeddings().weight)
    head = model.get_output_embeddings()
    if head.bias is not None:  # default init is zero; make the bias matter
        with torch.no_grad():
            head.bias.normal_(0, 1.0)
    model.save_pretrained(path)
    return path


def kept_set(vocab: int = VOCAB, n: int = N_KEPT_RANDOM, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.union1d(np.arange(5), rng.choice(vocab, n, replace=False))  # 0..4: specials


def dir_hashes(path: Path) -> dict[str, str]:
    return {str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(path.rglob("*")) if f.is_file()}


def sequences(kept: np.ndarray, n: int = 3, length: int = 10, seed: int = 1) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.choice(kept, length).tolist() for _ in range(n)]


def logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0]


# ---------------------------------------------------------------------------------------------
# Round trip: prune -> save -> plain from_pretrained, every architecture, tied and untied
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pad", [None, 64], ids=["nopad", "pad64"])
@pytest.mark.parametrize("arch,tie", CASES, ids=[f"{a}-{'tied' if t else 'untied'}"
                                                 for a, t in CASES])
def test_prune_save_reload_keeps_kept_logits(arch, tie, pad, tmp_path):
    src = save_tiny_model(arch, tie, tmp_path / "src")
    before = dir_hashes(src)
    orig = load_source_model(src, dtype=torch.float32)
    model = load_source_model(src, dtype=torch.float32)
    assert heads_are_tied(model) == tie
    kept = kept_set()
    id_map = id_map_from_kept(kept, VOCAB)
    n_kept = len(kept)

    prune_model(model, kept, pad_to_multiple_of=pad)
    out = save_pruned_model(model, tmp_path / "out")
    assert dir_hashes(src) == before, "the source directory must never be modified"
    assert not list(tmp_path.glob(".out.*")), "no temporary directory may be left behind"
    assert list(out.glob("*.safetensors")) and not list(out.glob("*.bin"))

    pruned = AutoModelForCausalLM.from_pretrained(out)  # plain transformers load
    n_rows = n_kept if pad is None else -(-n_kept // pad) * pad
    emb, head = pruned.get_input_embeddings(), pruned.get_output_embeddings()
    assert pruned.config.vocab_size == n_rows
    assert emb.weight.shape[0] == head.weight.shape[0] == n_rows
    assert real_vocab_rows(pruned) == n_kept
    # tie state survives save/load
    if tie:
        assert head.weight is emb.weight or head.weight.data_ptr() == emb.weight.data_ptr()
        assert pruned.config.tie_word_embeddings
    else:
        assert head.weight.data_ptr() != emb.weight.data_ptr()
        assert not torch.equal(head.weight[:n_kept], emb.weight[:n_kept])
        assert torch.equal(head.weight[:n_kept], orig.get_output_embeddings().weight[kept])
    assert torch.equal(emb.weight[:n_kept], orig.get_input_embeddings().weight[kept])
    # special ids follow the id map
    for field in ("bos_token_id", "eos_token_id", "pad_token_id"):
        old = getattr(orig.config, field)
        if old is not None:
            assert getattr(pruned.config, field) == id_map[old]
    # kept-token logits equal the original's
    for ids in sequences(kept):
        lo = logits(orig, ids)[:, kept]
        lp = logits(pruned, id_map[ids].tolist())
        assert (lo - lp[:, :n_kept]).abs().max().item() <= TOL
        if pad is not None and head.bias is not None:
            # padded rows: zero weight, very negative bias -> can never win argmax
            assert lp.argmax(-1).max().item() < n_kept
            assert (lp[:, n_kept:] < lp[:, :n_kept].min()).all()
    if head.bias is not None:
        assert torch.equal(head.bias[:n_kept], orig.get_output_embeddings().bias[kept])
    if pad is not None:
        assert n_rows % 64 == 0 and n_rows > n_kept
        assert emb.weight[n_kept:].abs().sum() == 0 and head.weight[n_kept:].abs().sum() == 0
        if head.bias is not None:
            assert (head.bias[n_kept:] <= torch.finfo(head.bias.dtype).min / 4).all()
        assert pruned.generation_config.suppress_tokens == list(range(n_kept, n_rows))


@pytest.mark.parametrize("arch,tie", [("llama", False), ("gemma3_text", True)])
def test_padded_rows_are_never_generated_without_bias(arch, tie, tmp_path):
    """A bias-free head gives padded rows a logit of exactly 0. Force every real logit
    negative so a raw argmax WOULD pick a padded row; generate() must still not emit one."""
    src = save_tiny_model(arch, tie, tmp_path / "src")
    model = load_source_model(src, dtype=torch.float32)
    kept = kept_set()
    n_kept = len(kept)
    prune_model(model, kept, pad_to_multiple_of=64)
    pruned = AutoModelForCausalLM.from_pretrained(save_pruned_model(model, tmp_path / "out"))
    pruned.get_output_embeddings().register_forward_hook(
        lambda mod, inp, out: torch.cat([out[..., :n_kept] - 1000.0, out[..., n_kept:]], -1))
    prompt = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        assert pruned(input_ids=prompt).logits[0, -1].argmax().item() >= n_kept  # the hazard
        gen = pruned.generate(prompt, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    assert gen[0, 3:].max().item() < n_kept


def test_model_loaded_in_bf16_prunes_in_bf16(tmp_path):
    src = save_tiny_model("phi", False, tmp_path / "src")
    orig = load_source_model(src, dtype=torch.bfloat16)
    model = load_source_model(src, dtype=torch.bfloat16)
    kept = kept_set()
    prune_model(model, kept, pad_to_multiple_of=64)
    head = model.get_output_embeddings()
    assert model.dtype == torch.bfloat16 and head.bias.dtype == torch.bfloat16
    assert torch.equal(head.weight[: len(kept)], orig.get_output_embeddings().weight[kept])
    assert torch.isfinite(head.bias).all() and head.bias[len(kept):].max() < -1e30
    reloaded = AutoModelForCausalLM.from_pretrained(save_pruned_model(model, tmp_path / "o"))
    assert reloaded.dtype == torch.bfloat16


def test_config_claiming_tie_with_separate_weights_is_pruned_untied(tmp_path):
    src = save_tiny_model("llama", False, tmp_path / "src")
    model = load_source_model(src, dtype=torch.float32)
    model.config.tie_word_embeddings = True  # the config lies: weights are separate
    assert not heads_are_tied(model)
    kept = kept_set()
    head_before = model.get_output_embeddings().weight[kept].clone()
    prune_model(model, kept)
    assert model.config.tie_word_embeddings is False
    reloaded = AutoModelForCausalLM.from_pretrained(save_pruned_model(model, tmp_path / "o"))
    assert torch.equal(reloaded.get_output_embeddings().weight, head_before)


# ---------------------------------------------------------------------------------------------
# Special ids and invalid kept sets
# ---------------------------------------------------------------------------------------------

def test_dropping_a_special_token_is_an_error_and_leaves_the_model_untouched(tmp_path):
    model = load_source_model(save_tiny_model("llama", True, tmp_path / "src"))
    eos = model.config.eos_token_id
    kept = np.setdiff1d(kept_set(), [eos])
    with pytest.raises(InputError, match="eos_token_id"):
        prune_model(model, kept)
    assert model.get_input_embeddings().weight.shape[0] == VOCAB
    assert model.config.eos_token_id == eos and model.config.vocab_size == VOCAB


def test_remap_special_ids_generation_config_and_suppress_lists(tmp_path):
    model = load_source_model(save_tiny_model("mistral", False, tmp_path / "src"))
    model.generation_config.eos_token_id = [2, 4]
    model.generation_config.suppress_tokens = [3, 999]
    kept = np.array([0, 1, 2, 3, 4, 10])
    changed = remap_special_ids(model, id_map_from_kept(kept, VOCAB))
    assert model.generation_config.eos_token_id == [2, 4]
    assert model.generation_config.suppress_tokens == [3]  # 999 dropped, not an error
    assert changed["config.bos_token_id"] == 1
    with pytest.raises(InputError, match=r"generation_config.eos_token_id\[1\]=4"):
        remap_special_ids(model, id_map_from_kept(np.array([0, 1, 2, 3]), VOCAB))


@pytest.mark.parametrize("kept", [[3, 2, 5], [0, 0, 1], [0, VOCAB], [], [-1, 0]])
def test_invalid_kept_ids_are_rejected(kept, tmp_path):
    model = load_source_model(save_tiny_model("qwen2", True, tmp_path / "src"))
    with pytest.raises(ValueError):
        prune_model(model, np.array(kept, dtype=np.int64))


def test_id_map_must_match_kept_ids(tmp_path):
    model = load_source_model(save_tiny_model("qwen2", True, tmp_path / "src"))
    kept = kept_set()
    wrong = id_map_from_kept(kept, VOCAB)
    wrong[kept[-1]] = -1
    with pytest.raises(ValueError, match="id_map"):
        prune_model(model, kept, id_map=wrong)


# ---------------------------------------------------------------------------------------------
# Bad sources and outputs
# ---------------------------------------------------------------------------------------------

def _bad_source(kind: str, tmp_path: Path) -> Path:
    good = save_tiny_model("llama", True, tmp_path / "good")
    bad = tmp_path / kind
    if kind == "missing":
        return bad
    bad.mkdir()
    if kind == "no_config":
        shutil.copy(good / "model.safetensors", bad)
    elif kind == "no_weights":
        shutil.copy(good / "config.json", bad)
    elif kind == "bin_only":
        shutil.copy(good / "config.json", bad)
        torch.save(AutoModelForCausalLM.from_pretrained(good).state_dict(),
                   bad / "pytorch_model.bin")
    elif kind == "truncated":
        shutil.copy(good / "config.json", bad)
        data = (good / "model.safetensors").read_bytes()
        (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif kind == "unknown_arch":
        shutil.copy(good / "model.safetensors", bad)
        cfg = json.loads((good / "config.json").read_text())
        cfg.update(model_type="not_a_real_arch", architectures=["NotARealForCausalLM"])
        (bad / "config.json").write_text(json.dumps(cfg))
    return bad


@pytest.mark.parametrize("kind,match", [
    ("missing", "does not exist"),
    ("no_config", "no config.json"),
    ("no_weights", "no weights"),
    ("bin_only", "--allow-pickle"),
    ("truncated", "truncated or corrupt"),
    ("unknown_arch", "unknown to transformers"),
])
def test_bad_sources_raise_input_error_naming_the_path(kind, match, tmp_path):
    src = _bad_source(kind, tmp_path)
    before = dir_hashes(src) if src.exists() else None
    with pytest.raises(InputError, match=match) as err:
        load_source_model(src)
    assert str(src) in str(err.value)
    if before is not None:
        assert dir_hashes(src) == before


def test_pickle_weights_load_with_opt_in(tmp_path):
    src = _bad_source("bin_only", tmp_path)
    model = load_source_model(src, allow_pickle=True)
    assert model.config.vocab_size == VOCAB


def test_incomplete_checkpoint_is_an_error(tmp_path):
    from safetensors.torch import load_file, save_file

    src = save_tiny_model("llama", False, tmp_path / "src")
    state = load_file(src / "model.safetensors")
    state.pop("model.norm.weight")
    save_file(state, src / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(InputError, match="model.norm.weight"):
        load_source_model(src)


def test_unreachable_hub_id_is_an_input_error():
    with pytest.raises(InputError, match="hub"):
        load_source_model("pipeline-test-nobody/no-such-model")


def test_save_refuses_non_empty_output_and_source_dir(tmp_path):
    src = save_tiny_model("qwen2", True, tmp_path / "src")
    model = load_source_model(src)
    prune_model(model, kept_set())
    with pytest.raises(InputError, match="source"):
        save_pruned_model(model, src)
    with pytest.raises(InputError, match="source"):
        save_pruned_model(model, src / "pruned")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("keep me")
    with pytest.raises(InputError, match="not empty"):
        save_pruned_model(model, tmp_path / "full")
    save_pruned_model(model, tmp_path / "full", overwrite=True)
    assert not (tmp_path / "full" / "x.txt").exists()
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "full").config.vocab_size == len(
        kept_set())


def test_failed_save_leaves_nothing_behind(tmp_path):
    model = load_source_model(save_tiny_model("qwen2", True, tmp_path / "src"))

    class BrokenTokenizer:
        def save_pretrained(self, path):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_pruned_model(model, tmp_path / "out", tokenizer=BrokenTokenizer())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


# ---------------------------------------------------------------------------------------------
# Verification helpers
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch,tie", [("mistral", False), ("phi", True)])
def test_verify_functions_on_pruned_model(arch, tie, tmp_path):
    src = save_tiny_model(arch, tie, tmp_path / "src")
    orig = load_source_model(src, dtype=torch.float32)
    model = load_source_model(src, dtype=torch.float32)
    kept = kept_set()
    id_map = id_map_from_kept(kept, VOCAB)
    prune_model(model, kept, pad_to_multiple_of=64)
    pruned = AutoModelForCausalLM.from_pretrained(save_pruned_model(model, tmp_path / "out"))
    seqs = sequences(kept)
    assert max_abs_logit_diff(orig, pruned, kept, id_map, seqs) <= TOL
    result = greedy_agreement(orig, pruned, kept, id_map, seqs[:2], steps=6)
    assert result["steps"] == 12
    assert result["agree_restricted"] == 1.0
    assert 0.0 <= result["orig_argmax_kept"] <= 1.0

    dropped = int(np.flatnonzero(id_map < 0)[0])
    with pytest.raises(ValueError, match="pruned"):
        max_abs_logit_diff(orig, pruned, kept, id_map, [seqs[0] + [dropped]])
    assert kept_sequences([seqs[0], seqs[1] + [dropped]], id_map) == [seqs[0]]

    before, after = param_counts(orig), param_counts(pruned)
    assert before["tied"] == after["tied"] == tie
    assert after["embedding"] == pruned.config.vocab_size * 32
    assert after["total"] < before["total"] and after["other"] == before["other"]
    assert bytes_on_disk(tmp_path / "out") < bytes_on_disk(src)


def test_verify_requires_fp32(tmp_path):
    src = save_tiny_model("llama", True, tmp_path / "src")
    orig = load_source_model(src, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="fp32"):
        max_abs_logit_diff(orig, orig, np.arange(VOCAB), np.arange(VOCAB), [[1, 2, 3]])


def test_a_changed_weight_is_detected(tmp_path):
    """The equivalence check is not vacuous: perturbing one kept head row shows up."""
    src = save_tiny_model("qwen2", False, tmp_path / "src")
    orig = load_source_model(src, dtype=torch.float32)
    model = load_source_model(src, dtype=torch.float32)
    kept = kept_set()
    prune_model(model, kept)
    with torch.no_grad():
        model.get_output_embeddings().weight[7] += 0.01
    diff = max_abs_logit_diff(orig, model, kept, id_map_from_kept(kept, VOCAB), sequences(kept))
    assert diff > 1e-4


def test_greedy_figures_are_not_constant(tmp_path):
    """greedy_agreement's two figures move with what they measure: a pruned model that prefers
    another token disagrees, and ``orig_argmax_kept`` is 1.0 when the original's next tokens
    are kept and 0.0 when none of them is (one step, so both models see the prompt only)."""
    src = save_tiny_model("llama", False, tmp_path / "src")
    orig = load_source_model(src, dtype=torch.float32)
    prompts = sequences(np.arange(5, VOCAB), n=4)
    with torch.no_grad():
        nxt = {int(orig(input_ids=torch.tensor([p])).logits[0, -1].argmax()) for p in prompts}
    prompt_ids = {i for p in prompts for i in p}
    assert not nxt & prompt_ids  # else a dropped prompt token could not be fed
    rest = np.setdiff1d(np.arange(VOCAB), list(nxt))
    for kept, share in ((np.arange(VOCAB), 1.0), (rest, 0.0)):
        model = load_source_model(src, dtype=torch.float32)
        prune_model(model, kept)
        r = greedy_agreement(orig, model, kept, id_map_from_kept(kept, VOCAB), prompts, steps=1)
        assert r["orig_argmax_kept"] == share and r["agree_restricted"] == 1.0
    with torch.no_grad():  # a negated head picks the least likely kept token: it disagrees
        model.get_output_embeddings().weight.neg_()
    r = greedy_agreement(orig, model, rest, id_map_from_kept(rest, VOCAB), prompts, steps=3)
    assert r["agree_restricted"] < 1.0


# ---------------------------------------------------------------------------------------------
# Demo model (real 131k Tekken vocabulary)
# ---------------------------------------------------------------------------------------------

def test_demo_model_is_deterministic_sized_to_tokenizer_and_labelled(tekken, tmp_path):
    from transformers import AutoTokenizer

    from pipeline.demo_model import DEMO_MODEL_NOTE, build_demo_model, is_demo_model, \
        save_demo_model

    a = build_demo_model(tekken, seed=0, hidden_size=32, num_layers=1)
    b = build_demo_model(tekken, seed=0, hidden_size=32, num_layers=1)
    c = build_demo_model(tekken, seed=1, hidden_size=32, num_layers=1)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(a.get_input_embeddings().weight, c.get_input_embeddings().weight)
    assert a.config.vocab_size == len(tekken) == a.get_input_embeddings().weight.shape[0]
    assert type(a).__name__ == "MistralForCausalLM"
    assert (a.config.bos_token_id, a.config.eos_token_id, a.config.pad_token_id) == (
        tekken.bos_token_id, tekken.eos_token_id, tekken.pad_token_id)
    assert is_demo_model(a)

    d1 = save_demo_model(tekken, tmp_path / "d1", seed=0, hidden_size=32, num_layers=1)
    d2 = save_demo_model(tekken, tmp_path / "d2", seed=0, hidden_size=32, num_layers=1)
    assert (d1 / "model.safetensors").read_bytes() == (d2 / "model.safetensors").read_bytes()
    loaded = load_source_model(d1)
    assert is_demo_model(loaded) and loaded.config.pipeline_demo_note == DEMO_MODEL_NOTE
    assert len(AutoTokenizer.from_pretrained(d1)) == len(tekken)


def test_demo_model_prunes_to_equivalent_model(tekken, tmp_path):
    from pipeline.demo_model import save_demo_model

    src = save_demo_model(tekken, tmp_path / "demo", seed=3, hidden_size=32, num_layers=1)
    orig = load_source_model(src, dtype=torch.float32)
    model = load_source_model(src, dtype=torch.float32)
    vocab = len(tekken)
    ids = tekken("안녕하세요, 한국어 문장입니다.")["input_ids"]
    # all 1000 control tokens, the sentence's tokens, and a random sample
    kept = np.union1d(np.union1d(np.arange(1000), ids), kept_set(vocab, 4000, seed=2))
    id_map = id_map_from_kept(kept, vocab)
    prune_model(model, kept, pad_to_multiple_of=64)
    pruned = AutoModelForCausalLM.from_pretrained(save_pruned_model(model, tmp_path / "out"))
    assert max_abs_logit_diff(orig, pruned, kept, id_map, [ids]) <= TOL
    assert greedy_agreement(orig, pruned, kept, id_map, [ids], steps=4)["agree_restricted"] == 1.0
    assert pruned.config.pipeline_demo_model is True


@pytest.mark.parametrize("arch,tie", [("llama", True), ("qwen2", False)])
def test_demo_model_other_architectures(arch, tie, tekken):
    from pipeline.demo_model import build_demo_model

    model = build_demo_model(tekken, arch=arch, hidden_size=16, num_layers=1,
                             tie_word_embeddings=tie)
    assert model.config.model_type == arch and heads_are_tied(model) == tie
    assert model.config.vocab_size == len(tekken)


def test_demo_model_rejects_unknown_arch(tekken):
    from pipeline.demo_model import build_demo_model

    with pytest.raises(ValueError, match="arch"):
        build_demo_model(tekken, arch="gpt5")


def test_model_bench_smoke(tmp_path):
    """bench/model_bench.py runs end to end on a tiny shape (the 0.5B shape is `make bench`)."""
    import sys

    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    from bench.model_bench import SMALL, decode_speed, prune_vs_copy_time, save_bench_model

    shape = dict(SMALL, vocab_size=3000, hidden_size=32, num_hidden_layers=1)
    speed = decode_speed(shape, 0.2, n_tokens=3, warmup=1)
    assert speed["vocab_before"] == 3000 and speed["vocab_after"] == 600
    assert speed["tok_s_before"] > 0 and speed["tok_s_after"] > 0
    assert speed["params_after"] < speed["params_before"]
    src = save_bench_model(tmp_path / "m", shape)
    timing = prune_vs_copy_time(src, kept_rows=600, pad_to_multiple_of=64)
    assert timing["vocab_after"] == 640 and timing["bytes_pruned"] < timing["bytes_copy"]
