"""Special ids that move. Real models keep their special tokens at HIGH ids (Qwen's
``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>`` sit after the whole BPE vocabulary), so
pruning renumbers every one of them. Here bos, eos, pad and unk all sit at the end of a
byte-level BPE and every one of them changes id; the new ids must be the same everywhere: the
model config, the generation config (eos as a list too), the tokenizer files (added tokens,
post-processor, tokenizer_config), the loaded tokenizer's attributes, the model's own
attributes (embedding ``padding_idx``) and the rows the ids point at."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from pipeline.closure import close_under_merges, required_ids
from pipeline.surgery.model import id_map_from_kept, load_source_model, prune_model, \
    save_pruned_model
from pipeline.surgery.tokenizer import prune_tokenizer, save_pruned_tokenizer

SPECIALS = {"pad": "<|endoftext|>", "bos": "<|im_start|>", "eos": "<|im_end|>", "unk": "<unk>"}
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
                 "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
TEXTS = ["대한민국 헌법 제1조 대한민국은 민주공화국이다.", "오늘 날씨가 좋다 내일은 비가 온다",
         "모든 국민은 법 앞에 평등하다."]


ENGLISH = ["The quick brown fox jumps over the lazy dog.", "def main(): return print(value)"]


def qwen_style_tokenizer(extra_texts=()):
    """A byte-level BPE (256 bytes + merges) with the four specials appended after it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=420, initial_alphabet=pre_tokenizers.ByteLevel
                                  .alphabet(), show_progress=False)
    backend.train_from_iterator((TEXTS + list(extra_texts)) * 30, trainer)
    n = backend.get_vocab_size()
    backend.add_special_tokens(list(SPECIALS.values()))
    bos_id = backend.token_to_id(SPECIALS["bos"])
    backend.post_processor = processors.TemplateProcessing(
        single=f"{SPECIALS['bos']} $A", pair=f"{SPECIALS['bos']} $A $B",
        special_tokens=[(SPECIALS["bos"], bos_id)])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=SPECIALS["bos"],
                                  eos_token=SPECIALS["eos"], pad_token=SPECIALS["pad"],
                                  unk_token=SPECIALS["unk"])
    tok.chat_template = CHAT_TEMPLATE
    assert min(tok.convert_tokens_to_ids(list(SPECIALS.values()))) >= n > 300  # at the end
    return tok


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """(tokenizer, model directory): a tied Qwen2 whose config and generation config name the
    high special ids (eos as a list of two, as Qwen's generation config does)."""
    tok = qwen_style_tokenizer()
    ids = {k: tok.convert_tokens_to_ids(v) for k, v in SPECIALS.items()}
    cfg = AutoConfig.for_model(
        "qwen2", vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, tie_word_embeddings=True,
        bos_token_id=ids["bos"], eos_token_id=ids["eos"], pad_token_id=ids["pad"])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg)
    model.generation_config = GenerationConfig(bos_token_id=ids["bos"], pad_token_id=ids["pad"],
                                               eos_token_id=[ids["eos"], ids["pad"]])
    d = tmp_path_factory.mktemp("qwen-style") / "src"
    model.save_pretrained(d)
    return tok, d


@pytest.fixture(scope="module")
def pruned(source, tmp_path_factory):
    """Prune with a keep set that drops about half of the merges below the specials, so every
    special id moves down; the model and the tokenizer are saved into one directory, as the
    prune stage does. Returns (old ids, new ids, kept, out dir)."""
    tok, src = source
    rng = np.random.default_rng(0)
    regular = np.setdiff1d(np.arange(len(tok)), list(required_ids(tok)))
    keep = close_under_merges(tok, set(required_ids(tok))
                              | set(rng.choice(regular, len(regular) // 2, replace=False).tolist()))
    kept = np.array(sorted(keep), dtype=np.int64)
    assert len(kept) < len(tok)
    old = {k: tok.convert_tokens_to_ids(v) for k, v in SPECIALS.items()}
    id_map = id_map_from_kept(kept, len(tok))
    new = {k: int(id_map[v]) for k, v in old.items()}
    assert all(0 <= new[k] < old[k] for k in SPECIALS), (old, new)  # every special id moves

    out = tmp_path_factory.mktemp("pruned") / "model"
    model = load_source_model(str(src), dtype=torch.float32)
    prune_model(model, kept)
    # in memory, before saving: the embedding's and the base model's own padding_idx
    assert model.get_input_embeddings().padding_idx == model.model.padding_idx == new["pad"]
    save_pruned_model(model, out)
    new_tok, tok_map = prune_tokenizer(tok, kept.tolist())
    assert np.array_equal(tok_map[:len(tok)], id_map)
    save_pruned_tokenizer(new_tok, out)
    return old, new, kept, out


def test_model_config_and_generation_config(pruned):
    old, new, _, out = pruned
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["bos_token_id"], cfg["eos_token_id"], cfg["pad_token_id"]) == \
        (new["bos"], new["eos"], new["pad"])
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["bos_token_id"] == new["bos"] and gen["pad_token_id"] == new["pad"]
    assert gen["eos_token_id"] == [new["eos"], new["pad"]]


def test_tokenizer_files(pruned):
    _, new, _, out = pruned
    data = json.loads((out / "tokenizer.json").read_text())
    added = {t["content"]: t["id"] for t in data["added_tokens"]}
    assert {k: added[v] for k, v in SPECIALS.items()} == new
    assert data["post_processor"]["special_tokens"][SPECIALS["bos"]]["ids"] == [new["bos"]]
    assert all(data["model"]["vocab"].get(v, new[k]) == new[k] for k, v in SPECIALS.items())
    tc = json.loads((out / "tokenizer_config.json").read_text())
    assert {k: tc[f"{k}_token"] for k in SPECIALS} == SPECIALS
    # ids live in tokenizer.json only; a copy of them here (added_tokens_decoder, as older
    # transformers wrote) would need checking too
    assert "added_tokens_decoder" not in tc


def test_loaded_tokenizer_attributes_and_outputs(pruned, source):
    tok, _ = source
    _, new, kept, out = pruned
    t = AutoTokenizer.from_pretrained(out)
    assert {k: getattr(t, f"{k}_token_id") for k in SPECIALS} == new
    assert {k: getattr(t, f"{k}_token") for k in SPECIALS} == SPECIALS
    for text in TEXTS:
        ids = t(text)["input_ids"]
        assert ids[0] == new["bos"]
        assert t.decode(ids[1:]) == text
    chat = [{"role": "user", "content": TEXTS[0]}, {"role": "assistant", "content": TEXTS[1]}]
    ids = t.apply_chat_template(chat, tokenize=True, add_generation_prompt=True)["input_ids"]
    assert ids.count(new["bos"]) == 3 and ids.count(new["eos"]) == 2
    orig = tok.apply_chat_template(chat, tokenize=True, add_generation_prompt=True)["input_ids"]
    assert t.decode(ids) == tok.decode(orig)


def test_model_attributes_and_rows(pruned, source):
    _, src = source
    old, new, kept, out = pruned
    model = AutoModelForCausalLM.from_pretrained(out)
    orig = AutoModelForCausalLM.from_pretrained(src)
    assert model.get_input_embeddings().padding_idx == new["pad"]
    assert model.model.padding_idx == new["pad"]
    assert model.generation_config.eos_token_id == [new["eos"], new["pad"]]
    emb, emb0 = model.get_input_embeddings().weight, orig.get_input_embeddings().weight
    for k in SPECIALS:  # the new id points at the special token's own row
        assert torch.equal(emb[new[k]], emb0[old[k]])
    assert torch.equal(emb, emb0[torch.as_tensor(kept)])


def test_generate_stops_at_the_new_eos(pruned):
    """generate() stops at the remapped eos: make eos the only token the model can emit."""
    _, new, _, out = pruned
    model = AutoModelForCausalLM.from_pretrained(out)
    with torch.no_grad():
        bias = torch.full((model.config.vocab_size,), -1e4)
        bias[new["eos"]] = 1e4
        hook = model.lm_head.register_forward_hook(lambda m, i, o: o + bias)
        x = torch.tensor([[new["bos"], 300 % new["eos"]]])
        y = model.generate(x, max_new_tokens=5, do_sample=False)
        hook.remove()
    assert y[0, 2:].tolist() == [new["eos"]]


def test_prune_command_with_specials_at_the_end(tmp_path):
    """The whole prune command on a Qwen-style model directory (analyzed with its own
    tokenizer, on the embedded Korean corpus): English merges the corpus never uses are
    dropped, so every special id moves; verification (which starts its logit sequences with the
    moved BOS) passes, and the written directory names the moved ids everywhere."""
    from .test_prune import cli, metrics, model_dir

    tok = qwen_style_tokenizer(extra_texts=ENGLISH)
    old = {k: tok.convert_tokens_to_ids(v) for k, v in SPECIALS.items()}
    src = tmp_path / "src"
    cfg = AutoConfig.for_model(
        "llama", vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, tie_word_embeddings=False,
        bos_token_id=old["bos"], eos_token_id=old["eos"], pad_token_id=old["pad"])
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(src)
    tok.save_pretrained(str(src))
    assert cli(tmp_path, "--tokenizer", str(src), "--model", str(src)) == 0
    out = model_dir(tmp_path)
    kept = json.loads((out / "id_map.json").read_text())["kept_old_ids"]
    assert len(kept) < len(tok)
    new = {k: kept.index(v) for k, v in old.items()}
    assert all(new[k] < old[k] for k in SPECIALS), (old, new)
    m = metrics(tmp_path)
    assert m["verify"]["passed"] and not m["verify"]["skipped"]
    assert m["logits"]["inputs"] == "heldout" and m["generate"]["agree_restricted"] == 1.0
    t = AutoTokenizer.from_pretrained(out)
    assert {k: getattr(t, f"{k}_token_id") for k in SPECIALS} == new
    model = AutoModelForCausalLM.from_pretrained(out)
    assert (model.config.bos_token_id, model.config.eos_token_id, model.config.pad_token_id) \
        == (new["bos"], new["eos"], new["pad"])
    assert model.generation_config.eos_token_id == new["eos"]
    assert model.get_input_embeddings().padding_idx == model.model.padding_idx == new["pad"]
