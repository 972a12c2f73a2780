"""`pipeline.closure`: tokenizer families, required ids and the merge closure.

Real tokenizers (Tekken, Mistral-v1 SentencePiece BPE) and small ones built here with the
`tokenizers` library; full pruning equivalence is in test_tokenizer_surgery.py.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from pipeline.closure import (close_under_merges, merge_index, required_ids, split_merge,
                              tokenizer_family, tokenizer_info)
from pipeline.errors import InputError

MISTRAL_V1_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] + eos_token }}{% else %}"
    "{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)


def _fast(backend, **kwargs):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=backend, **kwargs)


@pytest.fixture(scope="module")
def docstring_bpe():
    """The worked example of the module docstring, as a byte-level BPE."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tokens = ["Ġ", "t", "h", "e", "Ġt", "he", "Ġth", "Ġthe"]
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "h"), ("Ġt", "he"), ("Ġth", "e")]
    backend = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return _fast(backend)


@pytest.fixture(scope="module")
def mistral_v1(tmp_path_factory):
    import mistral_common
    from transformers import AutoTokenizer

    path = Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1"
    src = tmp_path_factory.mktemp("mistral_v1")
    shutil.copy(path, src / "tokenizer.model")
    tok = AutoTokenizer.from_pretrained(str(src))
    tok.chat_template = MISTRAL_V1_TEMPLATE
    return tok


def _ids(tok, tokens):
    return {tok.convert_tokens_to_ids(t) for t in tokens}


# --------------------------------------------------------------------------------------------
# The worked example


def test_docstring_example_closure(docstring_bpe):
    tok = docstring_bpe
    assert tok.tokenize(" the") == ["Ġthe"]
    closed = close_under_merges(tok, _ids(tok, ["Ġthe"]))
    assert closed == _ids(tok, ["Ġthe", "Ġt", "he", "Ġth", "Ġ", "t", "h", "e"])
    assert tokenizer_family(tok) == "bytelevel_bpe"


def test_docstring_example_needs_every_merge(docstring_bpe):
    """Keeping the parts of only one of the two merges producing Ġthe is not closed."""
    tok = docstring_bpe
    one_merge = _ids(tok, ["Ġthe", "Ġt", "he", "Ġ", "t", "h", "e"])
    assert close_under_merges(tok, one_merge) - one_merge == _ids(tok, ["Ġth"])


# --------------------------------------------------------------------------------------------
# Families


def test_tekken_is_bytelevel_bpe(tekken):
    assert tokenizer_family(tekken) == "bytelevel_bpe"


def test_mistral_v1_is_sentencepiece_bpe(mistral_v1):
    assert tokenizer_family(mistral_v1) == "sentencepiece_bpe"


def test_unigram_and_wordpiece_families():
    from tokenizers import Tokenizer, models

    unigram = _fast(Tokenizer(models.Unigram([("<unk>", 0.0), ("한", -1.0), ("국", -1.5)], 0)),
                    unk_token="<unk>")
    wordpiece = _fast(Tokenizer(models.WordPiece({"[UNK]": 0, "한": 1, "##국": 2},
                                                 unk_token="[UNK]")), unk_token="[UNK]")
    assert tokenizer_family(unigram) == "unigram"
    assert tokenizer_family(wordpiece) == "wordpiece"


def test_unsupported_families_are_input_errors():
    from tokenizers import Tokenizer, models, pre_tokenizers

    wordlevel = _fast(Tokenizer(models.WordLevel({"[UNK]": 0, "한국": 1}, unk_token="[UNK]")))
    with pytest.raises(InputError, match="'WordLevel'.*Supported: byte-level BPE"):
        tokenizer_family(wordlevel)
    plain = Tokenizer(models.BPE({"a": 0, "b": 1, "ab": 2}, [("a", "b")]))
    plain.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(InputError, match="BPE without a ByteLevel"):
        tokenizer_family(_fast(plain))


def test_split_merge_reads_both_encodings():
    assert split_merge("Ġ t") == ("Ġ", "t") == split_merge(["Ġ", "t"])
    with pytest.raises(InputError):
        split_merge("a b c")


# --------------------------------------------------------------------------------------------
# Required ids


def test_tekken_required_ids(tekken):
    from tokenizers.pre_tokenizers import ByteLevel

    req = required_ids(tekken)
    special = {i for i, r in req.items() if r == "special"}
    byte = {i for i, r in req.items() if r == "byte"}
    chat = {i for i, r in req.items() if r == "chat_template"}
    assert special == set(tekken.added_tokens_decoder)  # 1000 control tokens, incl. unk/bos/eos
    assert len(special) == 1000 and {0, 1, 2, tekken.pad_token_id} <= special
    assert byte == _ids(tekken, ByteLevel.alphabet()) and len(byte) == 256
    # '\n\n' joins the system prompt to the user message in the Tekken template.
    assert tekken.convert_tokens_to_ids("ĊĊ") in chat


def test_sentencepiece_bpe_required_ids(mistral_v1):
    req = required_ids(mistral_v1)
    assert {i for i, r in req.items() if r == "special"} == {0, 1, 2}
    assert {i for i, r in req.items() if r == "byte"} == \
        _ids(mistral_v1, [f"<0x{b:02X}>" for b in range(256)])
    # The template rejects a system role; the conversations without it still render.
    chat = {mistral_v1.convert_ids_to_tokens(i) for i, r in req.items() if r == "chat_template"}
    assert {"▁[", "INST", "]", "/"} <= chat  # "[INST] ... [/INST]" as tokenized in context


def test_template_that_renders_nothing_is_an_input_error(mistral_v1):
    import copy

    tok = copy.deepcopy(mistral_v1)
    tok.chat_template = "{{ raise_exception('never') }}"
    with pytest.raises(InputError, match="could not render any test conversation"):
        required_ids(tok)


def test_wordpiece_required_ids_are_only_specials():
    from tokenizers import Tokenizer, models, processors

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "한": 4, "##국": 5, "국": 6}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    tok = _fast(backend, unk_token="[UNK]", pad_token="[PAD]")  # CLS/SEP only in the processor
    assert required_ids(tok) == {0: "special", 1: "special", 2: "special", 3: "special"}


def test_unigram_byte_fallback_requires_byte_tokens():
    from tokenizers import Tokenizer, models

    pieces = [("한국", -1.0), ("한", -2.0), ("국", -3.0)]
    vocab = [("<unk>", 0.0)] + [(f"<0x{b:02X}>", 0.0) for b in range(256)] + pieces
    tok = _fast(Tokenizer(models.Unigram(vocab, 0, byte_fallback=True)), unk_token="<unk>")
    req = required_ids(tok)
    assert {i for i, r in req.items() if r == "byte"} == set(range(1, 257))
    assert {i for i, r in req.items() if r == "special"} == {0, 259}  # unk, lowest score '국'
    assert 257 not in req and 258 not in req  # '한국', '한' are not required


def test_unigram_lowest_scoring_piece_is_required():
    from tokenizers import Tokenizer, models

    vocab = [("<unk>", 0.0), ("한", -1.0), ("국", -30.0), ("한국", -3.0)]
    tok = _fast(Tokenizer(models.Unigram(vocab, 0)), unk_token="<unk>")
    assert required_ids(tok) == {0: "special", 2: "special"}  # unk, and the piece setting its score


# --------------------------------------------------------------------------------------------
# Closure


@pytest.fixture(scope="module")
def tekken_used(tekken, klue_texts):
    return {i for ids in tekken(klue_texts[:2000], add_special_tokens=False)["input_ids"]
            for i in ids}


def test_tekken_closure_is_closed_superset_and_idempotent(tekken, tekken_used):
    closed = close_under_merges(tekken, tekken_used)
    assert tekken_used < closed
    assert close_under_merges(tekken, closed) == closed
    data = json.loads(tekken.backend_tokenizer.to_str())["model"]
    vocab = data["vocab"]
    inv = {i: t for t, i in vocab.items()}
    kept = {inv[i] for i in closed}
    for merge in data["merges"]:
        a, b = split_merge(merge)
        if a + b in kept:
            assert a in kept and b in kept, (a, b)
    assert len(vocab) == 131072


def test_tekken_closure_keeps_parts_of_every_merge_producing_a_token(tekken):
    index = merge_index(tekken)
    run = tekken.convert_tokens_to_ids("ĠĠĠĠ")  # 4 spaces: several merges produce it
    producers = index.pairs[index.producers(run)]
    assert len(producers) >= 3
    closed = close_under_merges(tekken, {run})
    assert set(producers.ravel().tolist()) <= closed
    assert _ids(tekken, ["Ġ", "ĠĠ", "ĠĠĠ"]) <= closed


def test_tekken_closure_is_fast_and_index_cached(tekken, tekken_used):
    tokenizer_info(tekken)  # built once (also by the other tests)
    start = time.perf_counter()
    assert merge_index(tekken) is merge_index(tekken)
    close_under_merges(tekken, set(range(len(tekken))))
    close_under_merges(tekken, tekken_used, index=merge_index(tekken))
    assert time.perf_counter() - start < 5.0


def test_cache_follows_added_tokens(docstring_bpe):
    import copy

    tok = copy.deepcopy(docstring_bpe)
    before = tokenizer_info(tok)
    tok.add_tokens(["<new>"], special_tokens=True)
    after = tokenizer_info(tok)
    assert after is not before and after.size == before.size + 1
    assert required_ids(tok)[len(tok) - 1] == "special"


def test_unigram_and_wordpiece_closure_is_identity():
    from tokenizers import Tokenizer, models

    unigram = _fast(Tokenizer(models.Unigram([("<unk>", 0.0), ("한", -1.0), ("한국", -1.5)], 0)))
    wordpiece = _fast(Tokenizer(models.WordPiece({"[UNK]": 0, "한": 1, "##국": 2, "한국": 3},
                                                 unk_token="[UNK]")))
    for tok in (unigram, wordpiece):
        keep = {0, 2}
        closed = close_under_merges(tok, keep)
        assert closed == keep and closed is not keep
        assert merge_index(tok) is None


def test_closure_rejects_ids_outside_the_vocabulary(docstring_bpe):
    with pytest.raises(InputError, match="outside"):
        close_under_merges(docstring_bpe, {0, 999})
