"""`prune` end to end: the default run with the demo model, a model given as a directory, a real
architecture with more embedding rows than tokens, determinism, reruns, the output directory,
the chat template, and bad inputs (exit code 2, nothing half-written). All offline."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from pipeline import __version__
from pipeline.__main__ import main
from pipeline.artifacts import RunPaths, file_digest

RUN = "t"
TOL = 1e-5
KOREAN_CHAT = [
    {"role": "user", "content": "이 법은 공포한 날부터 시행한다는 게 무슨 뜻이에요?"},
    {"role": "assistant", "content": "법이 공포된 그날부터 효력이 생긴다는 뜻입니다."},
    {"role": "user", "content": "그럼 부칙은요?"},
]
RARE_CHAT = [{"role": "user", "content": "오늘 공포한 법에 🦜 鬱金香 얘기도 있나요?"},
             {"role": "assistant", "content": "아니요."}]


# --------------------------------------------------------------------------------------------
# Helpers


def cli(tmp: Path, *args: str, command: str = "prune") -> int:
    return main([command, "--no-progress", "--run", RUN,
                 "--set", f'artifacts_dir="{tmp / "artifacts"}"',
                 "--set", f'reports_dir="{tmp / "reports"}"', *args])


def paths(tmp: Path) -> RunPaths:
    return RunPaths(tmp / "artifacts" / RUN, tmp / "reports" / RUN)


def model_dir(tmp: Path) -> Path:
    return paths(tmp).stage("prune") / "model"


def metrics(tmp: Path) -> dict:
    return json.loads(paths(tmp).metrics.read_text())


def dir_hashes(path: Path) -> dict[str, str]:
    return {p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def copy_analysis(src: Path, dst: Path) -> None:
    """Reuse a finished analysis (every stage but prune) in another artifacts root; stage
    fingerprints do not depend on where the artifacts live."""
    shutil.copytree(paths(src).root, paths(dst).root, ignore=shutil.ignore_patterns("prune"))


def tiny_model_dir(path: Path, tokenizer, *, arch: str = "qwen2", tie: bool = True,
                   extra_rows: int = 0, seed: int = 0) -> Path:
    """A small random model of a real architecture around ``tokenizer`` (optionally with more
    embedding rows than tokens, like Qwen2.5), saved with the tokenizer; NOT a demo model."""
    cfg = AutoConfig.for_model(
        arch, vocab_size=len(tokenizer) + extra_rows, hidden_size=32, intermediate_size=64,
        num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
        tie_word_embeddings=tie, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(path)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(path))
    return path


# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def default_run(demo_pruned_run) -> Path:
    """The default job (embedded corpus, default thresholds, demo model), run once per session
    (conftest `demo_pruned_run`, shared with test_adapt)."""
    return demo_pruned_run.tmp


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory, tekken) -> Path:
    """A tied Qwen2 with 64 more embedding rows than Tekken has tokens, saved with Tekken."""
    return tiny_model_dir(tmp_path_factory.mktemp("qwen") / "qwen", tekken, extra_rows=64)


@pytest.fixture()
def analyzed(default_run, tmp_path) -> Path:
    """A tmp dir holding a copy of the default run's analysis (no prune stage)."""
    copy_analysis(default_run, tmp_path)
    return tmp_path


def default_args(tekken_dir: Path) -> list[str]:
    return ["--config", "configs/demo.toml", "--tokenizer", str(tekken_dir)]


# --------------------------------------------------------------------------------------------
# The default run


def test_outputs_load_with_plain_transformers(default_run):
    d = model_dir(default_run)
    keep = pl.read_parquet(paths(default_run).stage("select") / "keep.parquet")
    n_kept = int(keep["keep"].sum())
    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModelForCausalLM.from_pretrained(d)
    assert len(tok) == n_kept == model.config.vocab_size
    assert model.get_input_embeddings().weight.shape[0] == n_kept
    assert model.config.pipeline_demo_model is True  # the demo label survives pruning
    assert list(d.glob("*.safetensors")) and not list(d.glob("*.bin"))
    ids = tok("대한민국 헌법 제1조", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        assert model(input_ids=torch.tensor([ids])).logits.shape == (1, len(ids), n_kept)


def test_provenance_records_every_input(default_run):
    p = paths(default_run)
    prov = json.loads((model_dir(default_run) / "provenance.json").read_text())
    keep = pl.read_parquet(p.stage("select") / "keep.parquet")
    assert prov["tool"] == "pipeline" and prov["tool_version"] == __version__
    assert prov["source_model"] == "demo" and prov["demo_model"] is True
    assert "RANDOM weights" in prov["demo_note"] and prov["demo_build"]["seed"] == 0
    assert prov["corpus"]["description"].startswith("konlpy")
    assert len(prov["corpus"]["fingerprint"]) == 64
    assert prov["config"]["select"] == prov["select"]["thresholds"]
    assert prov["config"]["heldout"]["fraction"] == 0.15  # from configs/demo.toml
    assert "artifacts_dir" not in prov["config"]  # no machine-specific paths
    assert prov["select"]["kept"] == int(keep["keep"].sum())
    assert prov["select"]["dropped"] == keep.height - prov["select"]["kept"]
    reasons = dict(keep.filter(pl.col("keep")).group_by("reason").len().iter_rows())
    assert prov["select"]["kept_reasons"] == reasons
    assert prov["inputs"]["tokenizer_json_sha256"] == file_digest(p.tokenizer / "tokenizer.json")
    assert prov["inputs"]["keep_parquet_sha256"] == file_digest(p.stage("select") / "keep.parquet")
    assert prov["inputs"]["source_model"] == {"kind": "demo", "demo_seed": 0}
    text = (model_dir(default_run) / "provenance.json").read_text()
    assert not re.search(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d", text)  # no timestamps


def test_id_map_matches_keep_set_and_tokenizers(default_run, tekken):
    p = paths(default_run)
    id_map = json.loads((model_dir(default_run) / "id_map.json").read_text())
    keep = pl.read_parquet(p.stage("select") / "keep.parquet")
    kept = np.flatnonzero(keep["keep"].to_numpy()).tolist()
    assert id_map["kept_old_ids"] == kept
    assert id_map["old_vocab_size"] == id_map["old_model_rows"] == len(tekken) == keep.height
    assert id_map["new_vocab_size"] == id_map["new_model_rows"] == len(kept)
    pruned = AutoTokenizer.from_pretrained(model_dir(default_run))
    assert pruned.convert_ids_to_tokens(list(range(len(kept)))) == \
        tekken.convert_ids_to_tokens(kept)


def test_metrics_prove_equivalence(default_run):
    m = metrics(default_run)
    h = m["heldout"]
    assert h["identical_ratio"] == h["identical_share_selected"] is not None
    assert 0.9 < h["identical_ratio"] <= 1.0
    assert h["roundtrip_ok"] is True and h["roundtrip_failures"] == 0
    assert h["documents_verified"] == m["heldout"]["documents"]
    assert m["logits"]["max_abs_diff"] <= TOL and m["logits"]["inputs"] == "heldout"
    ev = m["model_eval"]["heldout"]
    # the kept-logit check ran on every identical document of the model evaluation
    assert m["logits"]["sequences"] == ev["logits"]["documents"] == \
        ev["bits_per_byte_identical"]["documents"] > 0
    assert ev["tokens_before"] <= 4096 and ev["documents_evaluated"] > 0
    # renormalising over kept tokens never lowers a kept token's probability
    assert ev["bits_per_byte_identical"]["after"] <= ev["bits_per_byte_identical"]["before"]
    greedy = m["model_eval"]["greedy"]
    assert len(greedy["prompts"]) == 6 and all(r["original"] for r in greedy["prompts"])
    g = m["generate"]
    assert g["agree_restricted"] == 1.0 and g["steps"] == 4 * 8
    assert 0.0 <= g["orig_argmax_kept"] <= 1.0
    assert m["vocab"]["after"] == m["vocab"]["selected"]
    assert m["params"]["after"] < m["params"]["before"]
    assert m["bytes"]["after"] < m["bytes"]["before"]
    assert m["prune"]["embedding_params_saved"] == m["params"]["before"] - m["params"]["after"]
    assert 0.5 < m["prune"]["params_saved_share"] < 1.0
    assert m["fertility"]["after"] == m["heldout"]["tokens_per_eojeol_selected"]
    assert m["fertility"]["before"] <= m["fertility"]["after"]
    assert m["prune"]["demo_model"] is True
    assert m["verify"]["passed"] is True and not m["verify"]["skipped"]
    assert m["chat_template"]["same_text"] and m["chat_template"]["roundtrip_ok"]


def test_rerun_is_a_noop(default_run, tekken_dir, capsys):
    root = paths(default_run).root
    before = {f: (f.stat().st_mtime_ns, f.read_bytes()) for f in root.rglob("*")
              if f.is_file() and f.name not in ("run.log", ".lock")}
    capsys.readouterr()
    assert cli(default_run, *default_args(tekken_dir)) == 0
    out = capsys.readouterr()
    assert "[prune] up to date, skipped" in out.err
    # the summary quotes each evaluated set's bits per byte from metrics.json
    m = metrics(default_run)["model_eval"]
    for name in ("heldout", "tech"):
        b = m[name]["bits_per_byte"]
        assert f"bits per byte on {name}: {b['before']:.4f} original -> {b['after']:.4f}" in out.out
    after = {f: (f.stat().st_mtime_ns, f.read_bytes()) for f in root.rglob("*")
             if f.is_file() and f.name not in ("run.log", ".lock")}
    assert after == before


def test_outputs_byte_identical_across_runs_and_output_dir(default_run, analyzed, tekken_dir):
    out = analyzed / "exported"
    assert cli(analyzed, *default_args(tekken_dir), "--output-dir", str(out)) == 0
    a, b = dir_hashes(model_dir(default_run)), dir_hashes(model_dir(analyzed))
    assert a == b
    assert dir_hashes(out) == a
    assert not list(analyzed.glob(".exported*"))  # no temporary sibling left
    assert AutoModelForCausalLM.from_pretrained(out).config.vocab_size == \
        metrics(analyzed)["vocab"]["after"]
    # a deleted output directory is restored by a rerun, without redoing the stage
    shutil.rmtree(out)
    assert cli(analyzed, *default_args(tekken_dir), "--output-dir", str(out)) == 0
    assert dir_hashes(out) == a


def test_chat_template_round_trip_in_korean(default_run, tekken):
    """A conversation in the corpus' own words keeps every token: the very same tokens. One
    with an emoji and Han characters the corpus never uses loses some: the pruned tokens still
    spell the same text."""
    pruned = AutoTokenizer.from_pretrained(model_dir(default_run))
    id_map = json.loads((model_dir(default_run) / "id_map.json").read_text())
    old_to_new = {old: new for new, old in enumerate(id_map["kept_old_ids"])}
    for chat, all_kept in ((KOREAN_CHAT, True), (RARE_CHAT, False)):
        text = tekken.apply_chat_template(chat, tokenize=False)
        assert pruned.apply_chat_template(chat, tokenize=False) == text
        ids = pruned.apply_chat_template(chat, tokenize=True)["input_ids"]
        assert pruned.decode(ids) == text
        assert "[INST]" in text and ids[0] == pruned.bos_token_id
        orig = tekken.apply_chat_template(chat, tokenize=True)["input_ids"]
        assert all(i in old_to_new for i in orig) is all_kept
        assert pruned.convert_tokens_to_string(pruned.convert_ids_to_tokens(ids)) == text
        assert (ids == [old_to_new.get(i) for i in orig]) is all_kept


# --------------------------------------------------------------------------------------------
# Models given as directories


def test_model_directory_analyzed_with_its_own_tokenizer(tmp_path, tekken):
    """The documented workflow: analyze with --tokenizer <model dir>, prune with --model."""
    from pipeline.demo_model import save_demo_model

    src = save_demo_model(tekken, tmp_path / "demo-src", seed=1, hidden_size=32, num_layers=1)
    before = dir_hashes(src)
    assert cli(tmp_path, "--config", "configs/demo.toml", "--tokenizer", str(src),
               "--model", str(src)) == 0
    assert dir_hashes(src) == before, "the source model directory must never be written"
    m = metrics(tmp_path)
    assert m["verify"]["passed"] and m["logits"]["max_abs_diff"] <= TOL
    prov = json.loads((model_dir(tmp_path) / "provenance.json").read_text())
    assert prov["source_model"] == str(src) and prov["source_kind"] == "local"
    assert prov["demo_model"] is True  # a saved demo model stays labelled
    assert prov["inputs"]["source_model"]["files_sha256"] == before


def test_real_architecture_with_extra_embedding_rows(tmp_path, qwen_dir, tekken):
    """A tied Qwen2 whose embedding has more rows than the tokenizer (like Qwen2.5): the rows
    that are no token are dropped; the tie survives; logits match. (transformers loads a
    tokenizer next to a qwen2 config.json as a Qwen2Tokenizer, which rebuilds Tekken's vocabulary
    with Qwen's pre-tokenizer: so the run must analyze the directory's own tokenizer.)"""
    before = dir_hashes(qwen_dir)
    assert cli(tmp_path, "--config", "configs/demo.toml", "--tokenizer", str(qwen_dir),
               "--model", str(qwen_dir)) == 0
    assert dir_hashes(qwen_dir) == before
    analyzed = tmp_path
    d = model_dir(analyzed)
    assert type(AutoTokenizer.from_pretrained(d)).__name__ == "Qwen2Tokenizer"
    id_map = json.loads((d / "id_map.json").read_text())
    assert id_map["old_model_rows"] == len(tekken) + 64
    assert id_map["old_vocab_size"] == len(tekken)
    assert id_map["new_model_rows"] == id_map["new_vocab_size"] == len(id_map["kept_old_ids"])
    model = AutoModelForCausalLM.from_pretrained(d)
    assert type(model).__name__ == "Qwen2ForCausalLM" and model.config.tie_word_embeddings
    assert model.get_output_embeddings().weight.data_ptr() == \
        model.get_input_embeddings().weight.data_ptr()
    m = metrics(analyzed)
    assert m["prune"]["demo_model"] is False and m["prune"]["source_model"] == str(qwen_dir)
    assert m["params"]["tied"] and m["params"]["lm_head_before"] == 0
    assert m["logits"]["max_abs_diff"] <= TOL and m["generate"]["agree_restricted"] == 1.0
    assert m["verify"]["passed"]
    prov = json.loads((d / "provenance.json").read_text())
    assert prov["demo_model"] is False and prov["demo_note"] is None
    assert set(prov["inputs"]["source_model"]["files_sha256"]) == set(before)


def test_failed_verification_exits_3_and_writes_nothing(analyzed, tekken_dir, monkeypatch,
                                                        capsys):
    import pipeline.prune as pr
    from safetensors.torch import load_file, save_file

    write = pr._write_pruned

    def write_then_break(run, out, *a, **k):  # a pruned model whose kept rows are wrong
        write(run, out, *a, **k)
        f = out / "model.safetensors"
        state = load_file(f)
        for name in state:
            if name.endswith("embed_tokens.weight"):
                state[name] = state[name] + 0.5
        save_file(state, f, metadata={"format": "pt"})

    monkeypatch.setattr(pr, "_write_pruned", write_then_break)
    rc = cli(analyzed, *default_args(tekken_dir), "--output-dir", str(analyzed / "out"))
    err = capsys.readouterr().err
    assert rc == 3 and "logits_within_tolerance" in err and "Traceback" not in err
    assert not paths(analyzed).stage("prune").exists() and not (analyzed / "out").exists()


# --------------------------------------------------------------------------------------------
# Bad inputs: exit code 2, one paragraph naming the input and what to do, nothing written


def _bad_model(kind: str, tmp: Path, tekken, qwen_dir: Path) -> tuple[Path, list[str]]:
    """(model dir, extra CLI args) for each bad input."""
    d = tmp / f"model-{kind}"
    if kind in ("output_is_source", "output_inside_source"):
        shutil.copytree(qwen_dir, d)
        out = d if kind == "output_is_source" else d / "pruned"
        return d, ["--output-dir", str(out)]
    if kind == "other_tokenizer":
        tiny_model_dir(d, _small_bpe(), arch="llama")
        return d, []
    d.mkdir()
    shutil.copy(qwen_dir / "config.json", d)
    if kind == "no_tokenizer":
        shutil.copy(qwen_dir / "model.safetensors", d)
        return d, []
    tekken.save_pretrained(str(d))
    if kind == "truncated":
        data = (qwen_dir / "model.safetensors").read_bytes()
        (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif kind == "bin_only":
        state = AutoModelForCausalLM.from_pretrained(qwen_dir).state_dict()
        torch.save(state, d / "pytorch_model.bin")
    return d, []  # "no_weights": config + tokenizer only


def _small_bpe():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    backend.train_from_iterator(["대한민국 헌법", "오늘 날씨가 좋다"] * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>")


BAD_MODELS = {
    "no_tokenizer": ["has no tokenizer", "model directory without a tokenizer", "--tokenizer"],
    "other_tokenizer": ["differs from the analyzed tokenizer", "--tokenizer"],
    "output_is_source": ["is the source model directory", "--output-dir"],
    "output_inside_source": ["is inside the source model directory", "--output-dir"],
    "no_weights": ["no weights", "Copy or download"],
    "truncated": ["truncated or corrupt", "download or copy the model again"],
    "bin_only": ["pickle", "--allow-pickle"],
}


def assert_clean_failure(tmp: Path, rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err  # one paragraph
    for n in needles:
        assert n in errors[0], (n, errors[0])
    root = paths(tmp).root
    assert not (root / "prune").exists()
    assert not list(root.glob(".prune*")) and not list(tmp.rglob(".pruned*"))


@pytest.mark.parametrize("kind", list(BAD_MODELS))
def test_bad_model_inputs(kind, analyzed, tekken_dir, tekken, qwen_dir, capsys):
    src, extra = _bad_model(kind, analyzed, tekken, qwen_dir)
    before = dir_hashes(src)
    capsys.readouterr()
    rc = cli(analyzed, *default_args(tekken_dir), "--model", str(src), *extra)
    err = capsys.readouterr().err
    assert_clean_failure(analyzed, rc, err, str(src), *BAD_MODELS[kind])
    assert dir_hashes(src) == before
    assert not (src / "pruned").exists()


def test_unreachable_hub_model(analyzed, tekken_dir, capsys):
    rc = cli(analyzed, *default_args(tekken_dir), "--model", "pipeline-test-nobody/no-model")
    assert_clean_failure(analyzed, rc, capsys.readouterr().err,
                         "hub model 'pipeline-test-nobody/no-model'", "Check the hub id")


def test_unsupported_tokenizer_type(tmp_path, capsys):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "대한민국": 1, "헌법": 2, "오늘": 3}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    f = tmp_path / "wordlevel.json"
    backend.save(str(f))
    rc = cli(tmp_path, "--tokenizer", str(f), "--model", "demo")
    err = capsys.readouterr().err
    assert_clean_failure(tmp_path, rc, err, str(f), "WordLevel", "not supported")
    assert not (paths(tmp_path).root / "select").exists()  # failed before any analysis


def test_output_dir_holding_other_files_is_not_replaced(analyzed, tekken_dir, capsys):
    out = analyzed / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    rc = cli(analyzed, *default_args(tekken_dir), "--output-dir", str(out))
    assert_clean_failure(analyzed, rc, capsys.readouterr().err, str(out), "not empty")
    assert (out / "notes.txt").read_text() == "keep me"


# --------------------------------------------------------------------------------------------
# Model source fingerprint


def test_model_source_fingerprint(tmp_path):
    from pipeline.config import load_config
    from pipeline.prune import model_source_fingerprint

    def fp(model, **kw):
        over = {"prune.model": model, **{f"prune.{k}": v for k, v in kw.items()}}
        return model_source_fingerprint(load_config(None, over))

    assert fp("demo") == fp("demo") != fp("demo", demo_seed=1)
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text("{}")
    first = fp(str(d))
    (d / "config.json").write_text('{"a": 1}')
    assert fp(str(d)) != first
    assert fp("Qwen/Qwen2.5-0.5B") != fp("Qwen/Qwen2.5-1.5B")
    assert fp(str(tmp_path / "missing" / "dir"))  # no crash for --dry-run
