"""Reserved placeholder tokens (``<unusedN>``, ``[unusedN]`` added tokens; Gemma 3 has 6,242)
have their own required reason, ``placeholder``; ``[select] keep_placeholders = false`` drops
them, and the pruned tokenizer and model work without them.

A small byte-level BPE laid out like Gemma: placeholders among the first ids and after the
vocabulary, specials around them, one placeholder named by the post-processor, one by the
special-token map and one by the chat template (those stay required), and look-alikes that are
not placeholders."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pipeline.closure import close_under_merges, placeholder_ids, required_ids
from pipeline.config import load_config
from pipeline.errors import InputError
from pipeline.select import DROPPED_REASONS, KEPT_REASONS, select
from pipeline.surgery.tokenizer import prune_tokenizer, save_pruned_tokenizer

from .test_select_policy import scores_with_counts

TEXTS = ["대한민국 헌법 제1조 대한민국은 민주공화국이다.", "오늘 날씨가 좋다 내일은 비가 온다",
         "The quick brown fox jumps over the lazy dog.", "sudo apt install python3-pip"]
LOW = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<unused0>", "<unused1>", "<unused2>",
       "[unused3]", "<unused4>"]
HIGH = ["<start_of_turn>", "<end_of_turn>", "<unused5>", "<unused6>", "<unused7>", "<unused8>",
        "<unused9>", "<unused10>", "<unused>", "<unused11x>", "[UNUSED12]"]
# named elsewhere: post-processor (pair separator), special-token map (mask... and additional
# special tokens), chat template
NAMED = {"<unused1>": "special", "<unused2>": "special", "<unused10>": "special"}
PLACEHOLDERS = ["<unused0>", "[unused3]", "<unused4>", "<unused5>", "<unused6>", "<unused7>",
                "<unused8>", "<unused9>"]
CHAT_TEMPLATE = ("{% for m in messages %}<start_of_turn>{{ m.role }}\n{{ m.content }}"
                 "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n"
                 "<unused10>{% endif %}")


def gemma_style_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=450, special_tokens=LOW, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(TEXTS * 30, trainer)
    backend.add_special_tokens(HIGH)
    ids = {t: backend.token_to_id(t) for t in LOW + HIGH}
    backend.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <unused1> $B",
        special_tokens=[("<bos>", ids["<bos>"]), ("<unused1>", ids["<unused1>"])])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<bos>",
                                  eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
                                  mask_token="<unused2>")
    tok.chat_template = CHAT_TEMPLATE
    assert [ids[t] for t in LOW] == list(range(len(LOW))) and ids["<unused9>"] > 300
    return tok


@pytest.fixture(scope="module")
def tok():
    return gemma_style_tokenizer()


def _ids(tok, tokens):
    return {tok.convert_tokens_to_ids(t) for t in tokens}


def test_placeholders_have_their_own_reason(tok):
    req = required_ids(tok)
    by_token = {tok.convert_ids_to_tokens(i): r for i, r in req.items()}
    assert placeholder_ids(tok) == _ids(tok, PLACEHOLDERS)
    for t in PLACEHOLDERS:
        assert by_token[t] == "placeholder", t
    for t, reason in NAMED.items():  # named by the tokenizer: never a placeholder
        assert by_token[t] == reason, t
    for t in ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>",
              "<unused>", "<unused11x>", "[UNUSED12]"]:
        assert by_token[t] == "special", t
    assert {r for r in req.values()} == {"special", "placeholder", "byte", "chat_template"}


@pytest.fixture(scope="module")
def pruned(tok, tmp_path_factory):
    """Pruned to the texts' tokens without the placeholders, saved, reloaded."""
    from transformers import AutoTokenizer

    req = required_ids(tok)
    used = {i for t in TEXTS for i in tok.encode(t)}
    keep = close_under_merges(tok, {i for i, r in req.items() if r != "placeholder"} | used)
    assert not keep & placeholder_ids(tok)
    new, id_map = prune_tokenizer(tok, keep)
    out = tmp_path_factory.mktemp("pruned")
    save_pruned_tokenizer(new, out)
    return keep, id_map, AutoTokenizer.from_pretrained(str(out))


def test_pruned_tokenizer_works_without_placeholders(tok, pruned):
    keep, id_map, re = pruned
    assert len(re) == len(keep) <= len(tok) - len(PLACEHOLDERS)
    vocab = re.get_vocab()
    assert not set(PLACEHOLDERS) & set(vocab)
    assert not set(PLACEHOLDERS) & {str(a) for a in re.added_tokens_decoder.values()}
    # every other special token, at its mapped id
    for t in set(LOW + HIGH) - set(PLACEHOLDERS):
        assert vocab[t] == id_map[tok.convert_tokens_to_ids(t)] >= 0, t
    for name in ("bos", "eos", "pad", "unk", "mask"):
        assert getattr(re, f"{name}_token_id") == id_map[getattr(tok, f"{name}_token_id")], name
    # post-processor (single and pair, whose separator is <unused1>) and plain text
    for a, b in zip(TEXTS, TEXTS[1:]):
        assert re.encode(a) == id_map[tok.encode(a)].tolist()
        assert re(a, b)["input_ids"] == id_map[tok(a, b)["input_ids"]].tolist()
    # the chat template, with its placeholder-looking token <unused10>
    conv = [{"role": "user", "content": TEXTS[0]}, {"role": "assistant", "content": TEXTS[1]}]
    for gen in (False, True):
        text = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
        assert re.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen) == text
        want = id_map[tok.encode(text, add_special_tokens=False)]
        assert re.encode(text, add_special_tokens=False) == want.tolist() and (want >= 0).all()


def test_dropped_placeholder_text_is_plain_text(tok, pruned):
    _, _, re = pruned
    text = "설치 <unused5> 완료"
    assert tok.convert_tokens_to_ids("<unused5>") in tok.encode(text, add_special_tokens=False)
    ids = re.encode(text, add_special_tokens=False)
    assert len(ids) > len(tok.encode(text, add_special_tokens=False))
    assert re.decode(ids) == text


def test_other_required_tokens_are_still_refused(tok):
    req = required_ids(tok)
    base = {i for i, r in req.items() if r != "placeholder"}
    for t in ["<eos>", "<unused1>", "<unused2>", "<unused10>", "<unused>"]:
        keep = close_under_merges(tok, base - {tok.convert_tokens_to_ids(t)})
        with pytest.raises(InputError, match="required"):
            prune_tokenizer(tok, keep)


def _rules(**kw):
    return dataclasses.replace(load_config(None).select, keep_scripts=[],
                               keep_korean_morphemes=False, keep_hangul_partials=False, **kw)


@pytest.mark.parametrize("keep_placeholders", [True, False])
def test_select_keeps_or_drops_placeholders(tok, keep_placeholders):
    count = np.zeros(len(tok), dtype=np.int64)
    used = sorted({i for t in TEXTS for i in tok.encode(t, add_special_tokens=False)})
    count[used] = 5
    scores = scores_with_counts(tok, count)
    keep = select(tok, scores, _rules(keep_placeholders=keep_placeholders))
    reason = dict(zip(keep["token_id"].to_list(), keep["reason"].to_list()))
    kept = set(keep.filter(keep["keep"])["token_id"].to_list())
    ph = placeholder_ids(tok)
    assert all(reason[i] == "placeholder" for i in ph)  # kept or dropped, the reason says why
    if keep_placeholders:
        assert ph <= kept
    else:
        assert not ph & kept
    req = {i for i, r in required_ids(tok).items() if keep_placeholders or r != "placeholder"}
    assert kept == close_under_merges(tok, req | set(used))
    assert keep["reason"].null_count() == 0 and keep.height == len(tok)
    assert set(keep.filter(keep["keep"])["reason"]) <= set(KEPT_REASONS)
    assert set(keep.filter(~keep["keep"])["reason"]) <= set(DROPPED_REASONS)


def test_model_rows_follow_the_kept_ids(tok, pruned, tmp_path):
    """The model side: placeholder rows go like any dropped token's; special ids remap."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from pipeline.surgery.model import load_source_model, prune_model

    keep, id_map, re = pruned
    ids = {k: getattr(tok, f"{k}_token_id") for k in ("bos", "eos", "pad")}
    cfg = AutoConfig.for_model(
        "qwen2", vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, tie_word_embeddings=True,
        bos_token_id=ids["bos"], eos_token_id=ids["eos"], pad_token_id=ids["pad"])
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path / "src")
    model = load_source_model(str(tmp_path / "src"), dtype=torch.float32)
    before = model.get_input_embeddings().weight.detach().clone()
    kept = np.array(sorted(keep))
    prune_model(model, kept)
    after = model.get_input_embeddings().weight.detach()
    assert after.shape[0] == len(kept) == len(re)
    assert torch.equal(after, before[torch.as_tensor(kept)])
    for k, old in ids.items():
        assert getattr(model.config, f"{k}_token_id") == id_map[old] == getattr(re, f"{k}_token_id")


def test_seen_only_baseline_keeps_placeholders(tok):
    """The "seen tokens only" baseline is what trimmers keep: every special token, so the
    placeholders too, even when the chosen keep set drops them."""
    from pipeline.coverage import seen_only_config

    scores = scores_with_counts(tok, np.zeros(len(tok), dtype=np.int64))
    keep = select(tok, scores, seen_only_config(_rules(keep_placeholders=False)))
    assert placeholder_ids(tok) <= set(keep.filter(keep["keep"])["token_id"].to_list())
