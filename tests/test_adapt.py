"""`adapt`: vocabulary extension (`pipeline.extension`), recovery training (`pipeline.train`)
and the stage end to end (`pipeline.adapt`).

Small tokenizers trained here on the embedded Korean sample (a byte-level BPE and a
Gemma-style SentencePiece BPE with byte fallback), tiny models of real architectures (Gemma 3,
Qwen2, Llama; tied and untied) built from configs, the demo run of test_prune for the stage,
and the real Gemma 3 tokenizer for the extension property."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config import load_config
from pipeline.errors import ConfigError, InputError
from pipeline.extension import (check_extendable, extend_model, extend_tokenizer, learn_merges,
                                new_token_pieces, pretoken_counts, roundtrip_failures,
                                tokens_per_eojeol, words_of)
from pipeline.train import pack, train, trainable_parameters

SAMPLE = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "korean_sample.parquet"
ALPHABET = "대한민국헌법은국민의권리와의무를정한다 영화가정말재미있었어요 .,!?\nabcXYZ0129쀍🦜"


# --------------------------------------------------------------------------------------------
# Small tokenizers and models


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and far slower with two on a busy machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return pq.read_table(SAMPLE, columns=["text"]).column("text").to_pylist()[:4000]


def _fast(backend, **special):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=backend, **special)


def bytelevel_bpe(texts: list[str], vocab_size: int = 600):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    b = Tokenizer(models.BPE())
    b.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    b.decoder = decoders.ByteLevel()
    b.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<s>", "</s>", "<pad>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return _fast(b, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def sentencepiece_bpe(texts: list[str], vocab_size: int = 1500):
    """Gemma 3's layout: ``' '`` -> ``▁`` normalizer, a Split pre-tokenizer that never splits
    (the whole text is one piece), byte fallback ``<0x00>``..``<0xFF>``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    b = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    b.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never")
    b.train_from_iterator([t.replace(" ", "\u2581") for t in texts], trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "<eos>", "<bos>", "<unk>"],
        show_progress=False))
    d = json.loads(b.to_str())
    n = len(d["model"]["vocab"])
    d["model"]["vocab"].update({f"<0x{i:02X}>": n + i for i in range(256)})
    d["normalizer"] = {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}
    d["pre_tokenizer"] = {"type": "Split", "pattern": {"String": " "},
                          "behavior": "MergedWithPrevious", "invert": False}
    d["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"}]}
    return _fast(Tokenizer.from_str(json.dumps(d)), bos_token="<bos>", eos_token="<eos>",
                 pad_token="<pad>", unk_token="<unk>")


@pytest.fixture(scope="module")
def bl_tok(texts):
    return bytelevel_bpe(texts[:300])


@pytest.fixture(scope="module")
def sp_tok(texts):
    return sentencepiece_bpe(texts[:300])


@pytest.fixture(scope="module")
def extended(bl_tok, sp_tok, texts):
    """family -> (tokenizer, merges, extended tokenizer): 300 new tokens from 2,700 texts."""
    out = {}
    for name, tok in (("bytelevel", bl_tok), ("sentencepiece", sp_tok)):
        merges = learn_merges(tok, pretoken_counts(tok, texts[300:3000]), 300)
        out[name] = (tok, merges, extend_tokenizer(tok, merges))
    return out


def tiny_lm(tok, arch: str, tie: bool, seed: int = 0):
    """A 2-layer model of a real architecture, hidden size 64, around ``tok``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(
        arch, vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=tie,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, max_position_embeddings=256)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg).eval()


ARCHS = [("gemma3_text", True), ("qwen2", False), ("llama", True)]


# --------------------------------------------------------------------------------------------
# Extension


@pytest.mark.parametrize("family", ["bytelevel", "sentencepiece"])
def test_new_merges_are_new_strings_inside_eojeol(extended, family):
    tok, merges, ext = extended[family]
    vocab = tok.get_vocab()
    assert len(new_token_pieces(merges)) == 300 and len(ext) == len(tok) + 300
    for m in merges:
        assert m.token not in vocab and m.token == m.left + m.right
        assert "\u2581" not in m.token[1:] and "Ġ" not in m.token[1:]  # never across a space
        assert not any(p.startswith("<0x") for p in (m.left, m.right))  # no byte fallback
        assert ext.convert_tokens_to_ids(m.token) == m.token_id >= len(tok)
    assert check_extendable(ext) == check_extendable(tok)


@pytest.mark.parametrize("family", ["bytelevel", "sentencepiece"])
def test_extension_lowers_fertility_and_round_trips(extended, texts, family):
    tok, _, ext = extended[family]
    held = texts[3000:3400]
    eojeol = sum(len(t.split()) for t in held)
    assert tokens_per_eojeol(ext, held, eojeol) < 0.95 * tokens_per_eojeol(tok, held, eojeol)
    assert roundtrip_failures(ext, held) == roundtrip_failures(tok, held) == []


def _same_unless_new(tok, ext, text: str) -> None:
    old = tok.backend_tokenizer.encode(text, add_special_tokens=False).ids
    new = ext.backend_tokenizer.encode(text, add_special_tokens=False).ids
    if max(new, default=-1) < len(tok):  # no new merge applied: exactly as before
        assert new == old, text
    assert ext.decode(new) == tok.decode(old)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=40), st.sampled_from(["bytelevel", "sentencepiece"]))
def test_text_without_new_merges_tokenizes_as_before(extended, text, family):
    tok, _, ext = extended[family]
    _same_unless_new(tok, ext, text)


def test_words_do_not_cross_the_space_marker(sp_tok, bl_tok):
    assert words_of(sp_tok, "대한민국  헌법\n제1조") == ["대한민국", "\u2581", "\u2581헌법", "\n",
                                                       "제1조"]
    assert len(words_of(bl_tok, "대한민국 헌법")) == 2


def test_unigram_cannot_be_extended():
    from tokenizers import Tokenizer, models

    tok = _fast(Tokenizer(models.Unigram([("<unk>", 0.0), ("a", -1.0)], 0)), unk_token="<unk>")
    with pytest.raises(InputError, match="new_tokens = 0"):
        check_extendable(tok)


def test_gemma_extension_keeps_old_tokenization(gemma_tok, texts):
    """The real Gemma 3 tokenizer (262k SentencePiece BPE): 50 new tokens from NSMC-like
    reviews; every text where no new merge applies tokenizes as before."""
    merges = learn_merges(gemma_tok, pretoken_counts(gemma_tok, texts[:1500]), 50)
    ext = extend_tokenizer(gemma_tok, merges)
    assert len(ext) == len(gemma_tok) + 50
    assert all("\u2581" not in m.token[1:] and not m.left.startswith("<0x") for m in merges)
    for text in texts[1500:1700] + ["헌법 제1조 🦜 鬱金香", "  두 칸  띄어쓰기\n줄바꿈"]:
        _same_unless_new(gemma_tok, ext, text)


# --------------------------------------------------------------------------------------------
# Initialisation


@pytest.mark.parametrize("scale", [1.0, 0.8])
@pytest.mark.parametrize("arch,tie", ARCHS)
def test_new_rows_are_the_mean_of_their_pieces(extended, arch, tie, scale):
    """... times ``[adapt] init_scale`` (1: the plain mean)."""
    tok, merges, ext = extended["sentencepiece"]
    model = tiny_lm(tok, arch, tie)
    emb0 = model.get_input_embeddings().weight.detach().clone()
    head0 = model.get_output_embeddings().weight.detach().clone()
    pieces = new_token_pieces(merges)
    extend_model(model, len(tok), pieces, pad_to_multiple_of=64, scale=scale)
    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert emb.shape[0] == -(-len(ext) // 64) * 64 == model.config.vocab_size
    assert torch.equal(emb[:len(tok)], emb0)
    for k in (0, 7, len(pieces) - 1):
        p = list(pieces[k])
        assert len(p) >= 2
        torch.testing.assert_close(emb[len(tok) + k], emb0[p].mean(0) * scale, rtol=0,
                                   atol=1e-6)
        torch.testing.assert_close(head[len(tok) + k], head0[p].mean(0) * scale, rtol=0,
                                   atol=1e-6)
    assert (head is emb) == tie
    assert not emb[len(ext):].any()  # padding rows
    with torch.no_grad():  # the model runs, and new ids are in range
        ids = ext("대한민국 헌법", return_tensors="pt")["input_ids"]
        assert model(input_ids=ids).logits.shape[-1] == emb.shape[0]


# --------------------------------------------------------------------------------------------
# Recovery training


def _settings(**kw):
    base = {"seq_len": 32, "batch_size": 4, "grad_accum": 2, "train_tokens": 32 * 8 * 6,
            "lr": 3e-3, "eval_every": 2, "checkpoint_every": 2, "patience": 0,
            "max_seconds": 0.0}  # the token budget alone: bit-for-bit repeatable
    return load_config(None, {f"adapt.{k}": v for k, v in {**base, **kw}.items()}).adapt


@pytest.fixture(scope="module")
def train_data(extended, texts):
    _, _, ext = extended["sentencepiece"]
    docs = [[ext.bos_token_id] + e.ids for e in
            ext.backend_tokenizer.encode_batch(texts[3000:3300], add_special_tokens=False)]
    held = [[ext.bos_token_id] + e.ids for e in
            ext.backend_tokenizer.encode_batch([t[:200] for t in texts[3300:3310]],
                                               add_special_tokens=False)]
    return ext, pack(docs, 32, bos=ext.bos_token_id), held


def test_pack_starts_every_sequence_with_bos():
    docs = [[0, 5, 6, 1], [0, 7, 1], [0, 8, 9, 10, 11, 1]]
    assert pack(docs, 4).tolist() == [[0, 5, 6, 1], [0, 7, 1, 0], [8, 9, 10, 11]]
    assert pack(docs, 4, bos=0).tolist() == [[0, 5, 6, 1], [0, 7, 1, 0], [0, 8, 9, 10]]
    assert pack(docs, 4, max_sequences=1).shape == (1, 4)


def _fresh(extended, arch, tie):
    tok, merges, ext = extended["sentencepiece"]
    model = tiny_lm(tok, arch, tie)
    return extend_model(model, len(tok), new_token_pieces(merges))


def _eval(held):
    from pipeline.evaluate import bits_per_byte

    return lambda m: bits_per_byte(m, held, 1000, batch_tokens=512)


@pytest.mark.parametrize("arch,tie", ARCHS[:2])
def test_training_changes_only_embeddings_and_head(extended, train_data, arch, tie):
    ext, seqs, held = train_data
    model = _fresh(extended, arch, tie)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    vocab = {id(p) for p in trainable_parameters(model)}
    st = train(model, seqs, _settings(), real_rows=len(ext), evaluate=_eval(held), ckpt=None,
               key="k")
    assert st.step == 6 and st.tokens == 6 * 8 * 32 and st.stopped == "token budget"
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    names = {k for k, p in model.named_parameters(remove_duplicate=False) if id(p) in vocab}
    assert changed and changed <= names, changed - names
    assert all(not p.requires_grad for p in model.parameters())


def test_train_rows_new_leaves_the_kept_rows_bit_identical(extended, train_data):
    from pipeline.adapt import frozen_rows

    ext, seqs, held = train_data
    tok = extended["sentencepiece"][0]
    n_old = len(tok)
    ac = _settings(train_rows="new", weight_decay=0.1)  # decay would move every row
    assert frozen_rows(ac, n_old) == n_old and frozen_rows(_settings(), n_old) == 0
    runs = {}
    for frozen in (n_old, 0):  # 0: the negative control, every row trains
        model = _fresh(extended, "gemma3_text", True)
        before = model.get_input_embeddings().weight.detach().clone()
        train(model, seqs, ac, real_rows=len(ext), evaluate=_eval(held), ckpt=None, key="k",
              frozen_rows=frozen)
        after = model.get_input_embeddings().weight.detach()
        runs[frozen] = (torch.equal(after[:n_old], before[:n_old]),
                        torch.equal(after[n_old:len(ext)], before[n_old:len(ext)]))
    assert runs[n_old] == (True, False)   # kept rows unchanged, new rows trained
    assert runs[0] == (False, False)


def _falling():
    """An ``evaluate`` that improves at every call (the last weights are the result)."""
    scores = iter(range(10_000, 0, -1))
    return lambda m: float(next(scores))


@pytest.fixture(scope="module")
def warmed(extended, train_data):
    """A tiny model trained until the tokens its sequences never hold are predicted rarely, as
    in a trained LLM (a random model predicts every token about equally often)."""
    ext, seqs, _ = train_data
    model = _fresh(extended, "gemma3_text", True)
    train(model, seqs[:48], _settings(lr=1e-2, train_tokens=32 * 8 * 60, warmup_share=0.0,
                                      adam_eps=1e-8), real_rows=len(ext), evaluate=_falling(),
          ckpt=None, key="k")
    return model


@pytest.mark.parametrize("eps,still", [(None, True), (1e-8, False)])
def test_rows_absent_from_the_batches_stay_near_still(warmed, train_data, eps, still):
    """[adapt] adam_eps: the rows of tokens no batch holds only get the softmax's push-down
    gradient, tiny in a model that already predicts them rarely. With the default epsilon they
    move a fraction of what the rows the batches use move; with Adam's usual 1e-8 (the
    negative control) Adam scales that tiny gradient to full steps and they move as far."""
    import copy

    ext, seqs, _ = train_data
    seqs = seqs[:48]  # the 6 steps of 8 sequences read each one once
    used = np.zeros(len(ext), dtype=bool)
    used[np.unique(seqs)] = True
    model = copy.deepcopy(warmed)
    before = model.get_input_embeddings().weight.detach().clone()
    ac = _settings() if eps is None else _settings(adam_eps=eps)
    train(model, seqs, ac, real_rows=len(ext), evaluate=_falling(), ckpt=None, key="k")
    moved = (model.get_input_embeddings().weight.detach() - before)[:len(ext)].abs().mean(1)
    ratio = float(moved[torch.from_numpy(~used)].median() / moved[torch.from_numpy(used)].median())
    assert (ratio < 0.5) if still else (ratio > 0.8), ratio


def test_loss_decreases_on_a_fixed_batch(extended, train_data):
    ext, seqs, held = train_data
    model = _fresh(extended, "qwen2", False)
    fixed = seqs[:4]  # one sequence set, read again and again
    st = train(model, np.concatenate([fixed] * 4), _settings(lr=1e-2, grad_accum=1,
                                                             train_tokens=32 * 4 * 12,
                                                             warmup_share=0.0),
               real_rows=len(ext), evaluate=_eval(held), ckpt=None, key="k")
    losses = [c[2] for c in st.curve]
    assert losses[-1] < losses[0] - 0.5, losses


def test_resume_after_interruption_gives_the_same_weights(extended, train_data, tmp_path):
    ext, seqs, held = train_data
    ac = _settings()
    ref = _fresh(extended, "gemma3_text", True)
    st_ref = train(ref, seqs, ac, real_rows=len(ext), evaluate=_eval(held),
                   ckpt=tmp_path / "ref", key="k")

    class Killed(Exception):
        pass

    def kill_at_3(step):
        if step == 3:
            raise Killed

    model = _fresh(extended, "gemma3_text", True)
    with pytest.raises(Killed):
        train(model, seqs, ac, real_rows=len(ext), evaluate=_eval(held), ckpt=tmp_path / "c",
              key="k", on_step=kill_at_3)
    model = _fresh(extended, "gemma3_text", True)  # a new process: the model as it was loaded
    st = train(model, seqs, ac, real_rows=len(ext), evaluate=_eval(held), ckpt=tmp_path / "c",
               key="k")
    assert st.resumed_from == 2 and st.step == st_ref.step == 6
    assert st.curve == st_ref.curve and st.evals == st_ref.evals
    for a, b in zip(model.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(a, b)
    # another key (another config): the checkpoint is not used
    other = train(_fresh(extended, "gemma3_text", True), seqs, ac, real_rows=len(ext),
                  evaluate=_eval(held), ckpt=tmp_path / "c", key="other")
    assert other.resumed_from is None


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_precision_sets_the_arithmetic_of_the_steps(extended, train_data, tmp_path, precision):
    """bf16: the matrix products of the training steps run in bfloat16 (the weights, and the
    evaluation, stay fp32); fp32: nothing does. A checkpoint of the other arithmetic is never
    resumed."""
    ext, seqs, held = train_data
    model = _fresh(extended, "gemma3_text", True)
    seen = set()
    layer = model.model.layers[0].mlp.down_proj
    handle = layer.register_forward_hook(lambda m, i, o: seen.add((torch.is_grad_enabled(),
                                                                   o.dtype)))
    ac = _settings(precision=precision, train_tokens=32 * 8 * 2)
    st = train(model, seqs, ac, real_rows=len(ext), evaluate=_eval(held), ckpt=tmp_path,
               key="k")
    handle.remove()
    want = torch.bfloat16 if precision == "bf16" else torch.float32
    assert st.precision == precision
    assert {d for grad, d in seen if grad} == {want}  # training steps
    assert {d for grad, d in seen if not grad} == {torch.float32}  # evaluations
    assert all(p.dtype == torch.float32 for p in model.parameters())
    other = "fp32" if precision == "bf16" else "bf16"
    again = train(_fresh(extended, "gemma3_text", True), seqs, _settings(
        precision=other, train_tokens=32 * 8 * 2), real_rows=len(ext), evaluate=_eval(held),
        ckpt=tmp_path, key="k")
    assert again.resumed_from is None and again.precision == other


def test_schedule_warms_up_decays_and_follows_the_clock():
    from pipeline.train import lr_at, progress

    ac = _settings(lr=1e-3, warmup_share=0.1, min_lr_share=0.1)
    lrs = [lr_at(progress(s, 100, 0.0, ac), ac) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert lrs[10:] == sorted(lrs[10:], reverse=True) and lrs[-1] == pytest.approx(1e-4)
    clock = _settings(max_seconds=60.0, warmup_share=0.1)
    assert progress(0, 1000, 30.0, clock) == 0.5  # the wall-clock budget is half used
    assert progress(0, 1000, 30.0, ac) == 0.001   # no wall-clock budget: steps alone


def test_early_stopping_keeps_the_best_weights(extended, train_data):
    ext, seqs, held = train_data
    calls = iter([3.0, 2.0, 2.5, 2.6, 2.7])  # best after the first evaluated step
    st = train(_fresh(extended, "qwen2", False), seqs, _settings(patience=2, eval_every=1),
               real_rows=len(ext), evaluate=lambda m: next(calls), ckpt=None, key="k")
    assert st.stopped == "early stopping" and st.best_step == 1 and st.step == 3


# --------------------------------------------------------------------------------------------
# Config


@pytest.mark.parametrize("key,value,needle", [("new_tokens", -1, "adapt.new_tokens"),
                                               ("train_tokens", 0, "adapt.train_tokens"),
                                               ("device", "tpu", "adapt.device"),
                                               ("lr", 0.0, "adapt.lr"),
                                               ("init_scale", -0.5, "adapt.init_scale")])
def test_bad_adapt_config_names_the_key(key, value, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_config(None, {f"adapt.{key}": value})


# --------------------------------------------------------------------------------------------
# The stage, end to end on the demo run (conftest `demo_pruned_run`, shared with test_prune)

STAGE_ARGS = ["--set", "adapt.new_tokens=150", "--set", "adapt.train_tokens=2048", "--set",
              "adapt.seq_len=64", "--set", "adapt.batch_size=4", "--set", "adapt.eval_every=4",
              "--set", "adapt.eval_bytes=3000", "--set", "adapt.checkpoint_every=2",
              "--set", "adapt.max_seconds=0"]


def _copy_pruned(demo_pruned_run, tmp: Path) -> list[str]:
    from .test_prune import paths

    shutil.copytree(paths(demo_pruned_run.tmp).root, paths(tmp).root)
    return [*demo_pruned_run.args, *STAGE_ARGS]


@pytest.fixture(scope="module")
def adapted(demo_pruned_run, tmp_path_factory) -> tuple[Path, list[str]]:
    """The demo run adapted once, uninterrupted: (its folder, the arguments)."""
    from .test_prune import cli

    tmp = tmp_path_factory.mktemp("adapted")
    args = _copy_pruned(demo_pruned_run, tmp)
    assert cli(tmp, *args, command="adapt") == 0
    return tmp, args


def test_adapt_stage_on_the_demo_run(adapted, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .test_prune import cli, metrics, paths

    tmp, args = adapted
    out = paths(tmp).stage("adapt") / "model"
    tok = AutoTokenizer.from_pretrained(str(out))
    model = AutoModelForCausalLM.from_pretrained(str(out))
    pruned = AutoTokenizer.from_pretrained(str(paths(tmp).stage("prune") / "model"))
    assert len(tok) == len(pruned) + 150 == model.config.vocab_size
    a = metrics(tmp)["adapt"]
    assert a["new_tokens"]["learned"] == 150 and a["frozen"]["identical"]
    assert a["frozen"]["tensors"] > 10
    assert a["roundtrip"]["new_failures"] == 0 and a["roundtrip"]["documents"] > 0
    assert a["tokens_per_eojeol"]["heldout"]["reduction"] > 0.05
    assert set(a["bits_per_byte"]) == {"heldout", "tech"}
    h = a["bits_per_byte"]["heldout"]
    assert h["trained"] <= h["extended"] and h["original"] and h["pruned"]
    assert a["train"]["steps"] == 8 and len(a["train"]["loss_curve"]) == 8
    assert not (paths(tmp).root / "adapt-checkpoint").exists()
    assert len(json.loads((out / "new_tokens.json").read_text())) == a["new_tokens"]["merges"]
    html = (paths(tmp).reports / "index.html").read_text()
    assert 'id="adapt"' in html and "Recovery training loss" in html
    shown = re.findall(r'data-metric="(adapt\.[^"]+)" data-value="([^"]*)"', html)
    assert len(shown) > 20
    for path, raw in shown:  # every adaptation figure on the page is the one in metrics.json
        node = a
        for part in path.split(".")[1:]:
            node = node[part]
        assert node == json.loads(raw.replace("&#34;", '"')), path
    capsys.readouterr()
    assert cli(tmp, *args, command="adapt") == 0  # a rerun does nothing
    assert "[adapt] up to date, skipped" in capsys.readouterr().err


def test_interrupted_stage_resumes_to_the_same_model(adapted, demo_pruned_run, tmp_path,
                                                     monkeypatch):
    """Stopped right after the checkpoint of step 4 (nothing of the stage is kept but the
    checkpoint), then rerun: it resumes at step 4 and writes the uninterrupted run's model."""
    import pipeline.train as train_mod

    from .test_prune import cli, metrics, paths

    args = _copy_pruned(demo_pruned_run, tmp_path)
    save = train_mod._save

    def save_then_die(ckpt, key, params, opt, st, best):
        save(ckpt, key, params, opt, st, best)
        if st.step == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "_save", save_then_die)
    assert cli(tmp_path, *args, command="adapt") == 130
    assert not (paths(tmp_path).root / "adapt").exists()
    ckpt = paths(tmp_path).root / "adapt-checkpoint"
    assert (ckpt / "state.pt").is_file()
    (ckpt / "notes.txt").write_text("mine")  # a file the tool did not write
    monkeypatch.setattr(train_mod, "_save", save)
    assert cli(tmp_path, *args, command="adapt") == 0
    assert metrics(tmp_path)["adapt"]["train"]["resumed_from"] == 4
    # the checkpoint is dropped, the user's file is not
    assert not (ckpt / "state.pt").exists() and (ckpt / "notes.txt").read_text() == "mine"
    ref = paths(adapted[0]).stage("adapt") / "model" / "model.safetensors"
    got = paths(tmp_path).stage("adapt") / "model" / "model.safetensors"
    assert got.read_bytes() == ref.read_bytes()
