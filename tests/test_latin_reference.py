"""`top_latin_rank = "reference"`: the Latin tokens kept by ``top_latin`` are the ones whose text
ranks best in a reference tokenizer ([select] latin_reference), whatever the ids. Checked on a
small BPE against references written by hand (a Tekken .json, a byte-level tokenizer.json and a
SentencePiece-style one) whose order runs against the ids, with tokens the reference lacks, a
duplicate text, a text that is not UTF-8 and a special-token slot as traps."""

from __future__ import annotations

import base64
import dataclasses
import json

import numpy as np
import polars as pl
import pytest

from pipeline.config import load_config
from pipeline.errors import ConfigError, InputError
from pipeline.latin_reference import reference_ranks
from pipeline.select import check_select_config, rule_reasons

from .test_select_policy import TEXTS, fast_tokenizer, scores_with_counts, train_bpe


@pytest.fixture(scope="module")
def tok():
    return fast_tokenizer(train_bpe(TEXTS))


@pytest.fixture(scope="module")
def scores(tok):
    return scores_with_counts(tok, np.zeros(len(tok), dtype=np.int64))


@pytest.fixture(scope="module")
def latin(scores):
    """(id, decoded text) of the Latin tokens top_latin ranks: not required by the tokenizer."""
    df = scores.filter((pl.col("script") == "latin") & pl.col("required").is_null())
    return list(zip(df["token_id"].to_list(), df["decoded"].to_list()))


@pytest.fixture(scope="module")
def ref_order(latin):
    """The reference's texts, best first: the Latin texts in reverse id order, every third one
    left out (absent from the reference), with unrelated texts among them."""
    texts = [t for k, (_, t) in enumerate(sorted(latin, reverse=True)) if k % 3 != 2]
    assert len(texts) > 30
    return texts[:10] + [" zzunrelated", "\u00e9t\u00e9"] + texts[10:]


def _cfg(**kw):
    sc = load_config(None).select
    return dataclasses.replace(sc, min_count=10**9, keep_scripts=[], keep_hangul_partials=False,
                               keep_korean_morphemes=False, keep_languages=[], **kw)


def _by_hand(latin, ref_order, n_top):
    rank = {t: k for k, t in enumerate(ref_order)}
    return set(sorted((i for i, _ in latin),
                      key=lambda i: (rank.get(dict(latin)[i], len(ref_order)), i))[:n_top])


def _kept(scores, tok, **kw):
    return set(np.flatnonzero(rule_reasons(scores, _cfg(**kw), tok) == "top_latin").tolist())


def write_tekken(path, texts, traps=(), n_special=3):
    """A Tekken .json of ``texts`` in rank order: one entry that is not UTF-8 at rank 5, a
    duplicate of the best text last; ``traps`` after them, past default_vocab_size -
    default_num_special_tokens (the slots of the special tokens: not tokens of the vocabulary)."""
    entries = [base64.b64encode(t.encode()).decode() for t in texts]
    entries.insert(5, base64.b64encode(b"\xff\xfe").decode())
    entries.append(entries[0])
    n_tokens = len(entries)
    entries += [base64.b64encode(t.encode()).decode() for t in traps]
    vocab = [{"rank": k, "token_bytes": b, "token_str": None} for k, b in enumerate(entries)]
    path.write_text(json.dumps({"config": {"pattern": "", "default_vocab_size": n_tokens
                                           + n_special, "default_num_special_tokens": n_special},
                                "vocab": vocab, "special_tokens": []}))
    return path


@pytest.fixture(scope="module")
def absent(latin, ref_order):
    """Latin texts the reference lacks, by id."""
    present = set(ref_order)
    return [t for _, t in sorted(latin) if t not in present]


def write_bytelevel(path, texts):
    """A byte-level BPE tokenizer.json: ids in the given order after one added token."""
    from tokenizers.pre_tokenizers import ByteLevel

    enc = ByteLevel(add_prefix_space=False, use_regex=False)
    vocab = {"<s>": 0} | {enc.pre_tokenize_str(t)[0][0]: k + 1 for k, t in enumerate(texts)}
    path.write_text(json.dumps({
        "added_tokens": [{"id": 0, "content": "<s>", "special": True}],
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "vocab": vocab, "merges": []}}))
    return path


def write_sentencepiece(path, texts):
    """A SentencePiece-style (▁, byte fallback) tokenizer.json; byte pieces ranked first."""
    vocab = {f"<0x{b:02X}>": b for b in range(256)}
    vocab |= {t.replace(" ", "\u2581"): 256 + k for k, t in enumerate(texts)}
    path.write_text(json.dumps({
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        "decoder": {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        "model": {"type": "BPE", "vocab": vocab, "merges": [], "byte_fallback": True}}))
    return path


@pytest.mark.parametrize("fmt", ["tekken", "bytelevel", "sentencepiece"])
@pytest.mark.parametrize("n_top", [5, 20])
def test_reference_rank_keeps_the_best_ranked_latin_texts(tmp_path, tok, scores, latin,
                                                          ref_order, absent, fmt, n_top):
    write = {"tekken": lambda p, t: write_tekken(p, t, traps=absent[:3]),
             "bytelevel": write_bytelevel, "sentencepiece": write_sentencepiece}[fmt]
    ref = write(tmp_path / f"{fmt}.json", ref_order)
    kept = _kept(scores, tok, top_latin=n_top, top_latin_rank="reference",
                 latin_reference=str(ref))
    assert kept == _by_hand(latin, ref_order, n_top)
    # the reference runs against the ids: ranking by id (or merges) keeps other tokens
    assert kept != _kept(scores, tok, top_latin=n_top, top_latin_rank="id")
    assert kept != _kept(scores, tok, top_latin=n_top, top_latin_rank="merges")


def test_tokens_the_reference_lacks_come_last_by_id(tmp_path, tok, scores, latin, ref_order,
                                                    absent):
    ref = write_tekken(tmp_path / "t.json", ref_order, traps=absent[2:5])
    present = set(ref_order)
    n_present = sum(t in present for _, t in latin)
    kept = _kept(scores, tok, top_latin=n_present + 3, top_latin_rank="reference",
                 latin_reference=str(ref))
    by_text = {t: i for i, t in latin}
    assert kept - {i for i, t in latin if t in present} == {by_text[t] for t in absent[:3]}


def test_tekken_file_reading(tmp_path, ref_order):
    ranks = reference_ranks(str(write_tekken(tmp_path / "t.json", ref_order, traps=["zz"])))
    # special slots are not tokens; the undecodable entry is skipped; the first rank wins
    assert ranks == {t: (k if k < 5 else k + 1) for k, t in enumerate(ref_order)}


def test_embedded_tekken_is_the_default_reference():
    assert load_config(None).select.latin_reference == "tekken"
    ranks = reference_ranks("tekken")
    assert len(ranks) > 120_000
    # frequency order of web and code text: a common word before a rarer one
    assert ranks[" the"] < ranks[" python"] < ranks[" hostname"]
    assert ranks[" Linux"] < ranks["Linux"]


def test_missing_reference_is_a_config_error(tmp_path):
    sc = _cfg(top_latin=5, top_latin_rank="reference", latin_reference=str(tmp_path / "no.json"))
    with pytest.raises(ConfigError, match=r"\[select\] latin_reference.*does not exist"):
        check_select_config(sc)
    check_select_config(dataclasses.replace(sc, top_latin_rank="id"))  # unused: no check


@pytest.mark.parametrize("content, needle", [
    ("not json", "not a readable JSON"),
    ("[1, 2]", "holds no tokenizer"),
    ('{"vocab": {}}', "neither a Tekken"),
    ('{"config": {}, "vocab": [{"rank": 0}]}', "not a valid Tekken"),
    ('{"model": {"type": "WordPiece", "vocab": {"a": 0}}}', "wordpiece"),
])
def test_bad_reference_file_is_an_input_error(tmp_path, scores, tok, content, needle):
    f = tmp_path / "bad.json"
    f.write_text(content)
    with pytest.raises(InputError, match=needle) as e:
        rule_reasons(scores, _cfg(top_latin=5, top_latin_rank="reference",
                                  latin_reference=str(f)), tok)
    assert "[select] latin_reference" in str(e.value)


def test_missing_reference_through_the_cli(tmp_path, capsys):
    from .test_bad_input import assert_clean_failure, run_cli

    f = tmp_path / "t.txt"
    f.write_text("안녕하세요\n")
    rc, err = run_cli(tmp_path, "--corpus", str(f), "--tokenizer", "tekken",
                      "--set", 'select.top_latin_rank="reference"',
                      "--set", f'select.latin_reference="{tmp_path / "nope.json"}"',
                      capsys=capsys)
    assert_clean_failure(tmp_path, rc, err, "latin_reference", "nope.json", "does not exist")


def test_select_fingerprint_follows_the_reference_content(tmp_path, ref_order):
    from pipeline.runner import Run

    corpus = tmp_path / "c.txt"
    corpus.write_text("안녕하세요\n")
    ref = write_tekken(tmp_path / "ref.json", ref_order)

    def fps(**sel):
        cfg = load_config(None, {"corpus.source": str(corpus), "tokenizer.source": "tekken",
                                 "artifacts_dir": str(tmp_path / "a"),
                                 "reports_dir": str(tmp_path / "r"),
                                 **{f"select.{k}": v for k, v in sel.items()}})
        run = Run(cfg, progress=False)
        return run.fp("select"), run.fp("sweep"), run.fp("score")

    by_ref = fps(top_latin_rank="reference", latin_reference=str(ref))
    assert by_ref == fps(top_latin_rank="reference", latin_reference=str(ref))
    write_tekken(ref, ref_order[::-1])  # same path, other content
    changed = fps(top_latin_rank="reference", latin_reference=str(ref))
    assert changed[0] != by_ref[0] and changed[1] != by_ref[1] and changed[2] == by_ref[2]
    # not ranked by it: the file is not read
    ref.unlink()
    assert fps(top_latin_rank="id", latin_reference=str(ref))[0]


def test_explain_documents_the_new_keys():
    from pipeline.config import explain

    lines = {line.split(" = ")[0]: line for line in explain().splitlines() if " = " in line}
    assert lines["latin_reference"].startswith('latin_reference = "tekken"    # ')
    assert lines["keep_placeholders"].startswith("keep_placeholders = true    # ")
    assert "`reference`" in lines["top_latin_rank"]
