"""The stage graph of a run: what each stage reads, its fingerprint, and running it.

Stages (``artifacts/<run>/<stage>/``)::

    tokenizer  <- [tokenizer]                       the source tokenizer, saved once
    tokenize   <- tokenizer + corpus + [corpus] [langid] [heldout] [tokenize]
    count      <- tokenize
    score      <- count + [score]                   features, no thresholds
    heldout    <- tokenize                          unique held-out pre-tokens (for evaluation)
    evalsets   <- tokenizer + [eval] sources        each evaluation set tokenized, never counted
                                                    (`pipeline.evalsets`)
    select     <- score + heldout + evalsets        keep set + reasons + held-out, evaluation-set
                  + [select] (+ the content of      and coverage figures (`pipeline.coverage`)
                  its latin_reference file when
                  top_latin ranks by it)
    sweep      <- select inputs + [sweep]           threshold grid table (one curve per set)
    prune      <- select + model + [prune] [verify] pruned tokenizer + model, verified
                                                    (`pipeline.prune`)
    adapt      <- prune + evalsets + [adapt]        extended vocabulary + recovery-trained
                                                    embeddings and head (`pipeline.adapt`)

Reports (`pipeline.report`) are rebuilt from whatever stages are complete after every command.

A stage's fingerprint hashes its version, the config sections it reads and its upstream
fingerprints, so editing a threshold reruns only the stages that read it. The bookkeeping
(skip / temp dir / rename / done marker) lives in `pipeline.artifacts.run_stage`.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

from . import __version__
from .artifacts import RunPaths, file_digest, fingerprint, is_done, merge_metrics, run_stage
from .config import Config
from .errors import InputError

# Bump a stage's version when its output format or semantics change.
# tokenize 2: shards record which decided the language (lang_by); evalsets 2: same schema;
# tokenize 3, evalsets 3: n_eojeol is len(text.split()) (Arrow's split counted an empty word
# at a leading or trailing space);
# score 2: `required` says "placeholder" for reserved <unusedN> added tokens (was "special")
VERSIONS = {"tokenizer": 1, "tokenize": 3, "count": 1, "score": 2, "heldout": 1, "evalsets": 3,
            "select": 2, "sweep": 2, "prune": 3,  # prune 3: provenance lists the output's files
            "adapt": 1}
ANALYZE_STAGES = ["tokenizer", "tokenize", "count", "score", "heldout", "evalsets", "select"]
ALL_STAGES = ANALYZE_STAGES + ["sweep", "prune", "adapt"]
# Files of a save_pretrained directory that define its tokenizer (config.json too: AutoTokenizer
# may pick the tokenizer class from the model type).
TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model",
                   "vocab.json", "vocab.txt", "merges.txt", "chat_template.jinja",
                   "chat_template.json", "config.json"}


class Run:
    def __init__(self, cfg: Config, *, force: bool = False, progress: bool = True,
                 say=None, check_digests: bool = False):
        self.cfg = cfg
        self.paths = RunPaths.from_config(cfg)
        self.force = force
        self.progress = progress
        self.check_digests = check_digests  # up-to-date stages: sha256 of every file, not sizes
        self.say = say or (lambda m: print(m, file=sys.stderr))
        self._ran: dict[str, Path] = {}
        self._lock = None

    # -- one writer per run ---------------------------------------------------------------------
    def lock(self) -> None:
        """Claim the run's folders (ours, or new) and take its lock; before the first write.
        `RunBusy` when another process holds it (see `pipeline.artifacts.RunLock`)."""
        if self._lock is not None:
            return
        from .artifacts import RunLock, is_our_stage
        from .prune import _is_our_output
        from .safety import claim_dir

        self.check_locations()
        art_root = Path(self.cfg.artifacts_dir).expanduser()
        claim_dir(self.paths.root, art_root, ours={"run.log"},
                  is_ours=lambda p: is_our_stage(p) or _is_our_output(p), what="Run folder")
        claim_dir(self.paths.reports, Path(self.cfg.reports_dir).expanduser(),
                  ours={"metrics.json", "index.html"}, what="Report folder")
        self._lock = RunLock(self.paths.root).acquire()

    def close(self) -> None:
        """Release the run's lock (also released when the process ends)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- fingerprints (cheap: no stage output is read) ----------------------------------------
    @functools.cached_property
    def source(self):
        from .corpus import resolve_source

        return resolve_source(self.cfg.corpus, self.cfg.heldout.block_size)

    @functools.cached_property
    def tokenizer_source_fp(self) -> str:
        from .models import gguf_fingerprint, is_gguf_spec

        src = self.cfg.tokenizer.source
        if is_gguf_spec(src):
            return gguf_fingerprint(src)
        if src == "tekken":
            import transformers

            from .tokenizer_io import tekken_path

            return fingerprint("tekken", file_digest(tekken_path()), transformers.__version__)
        p = Path(src).expanduser()
        if p.is_file():
            return fingerprint("file", file_digest(p))
        if p.is_dir():  # only the tokenizer's files: a model directory's weights are not hashed
            files = sorted(f for f in p.iterdir() if f.is_file() and f.name in TOKENIZER_FILES)
            return fingerprint("dir", [(f.name, file_digest(f)) for f in files])
        return fingerprint("hub", src)

    @functools.cached_property
    def latin_reference_fp(self) -> str | None:
        """Content of the [select] latin_reference file when top_latin ranks by it (None
        otherwise): editing the file reruns select."""
        if self.cfg.select.top_latin_rank != "reference":
            return None
        from .latin_reference import reference_path

        return fingerprint("latin_reference", file_digest(reference_path(
            self.cfg.select.latin_reference)))

    @functools.cached_property
    def eval_sets(self):
        from .evalsets import eval_sets

        return eval_sets(self.cfg)

    @functools.cached_property
    def eval_sources(self) -> dict:
        from .evalsets import resolve

        return {es.name: resolve(es, self.cfg.heldout.block_size) for es in self.eval_sets}

    def fp(self, stage: str) -> str:
        c = self.cfg
        parts = {
            "tokenizer": lambda: (self.tokenizer_source_fp, c.section_dict("tokenizer")),
            "tokenize": lambda: (self.fp("tokenizer"), self.source.fingerprint(),
                                 c.section_dict("corpus"), c.section_dict("langid"),
                                 c.section_dict("heldout"), c.section_dict("tokenize")),
            "count": lambda: (self.fp("tokenize"),),
            "score": lambda: (self.fp("count"), c.section_dict("score")),
            "heldout": lambda: (self.fp("tokenize"),),
            "evalsets": lambda: (self.fp("tokenizer"), c.section_dict("eval"),
                                 {n: s.fingerprint() for n, s in self.eval_sources.items()}),
            "select": lambda: (self.fp("score"), self.fp("heldout"), self.fp("evalsets"),
                               c.section_dict("select"), self.latin_reference_fp),
            "sweep": lambda: (self.fp("score"), self.fp("heldout"), self.fp("evalsets"),
                              c.section_dict("select"), self.latin_reference_fp,
                              c.section_dict("sweep")),
            # output_dir is only where a copy goes (`export_output`), not what the stage makes
            "prune": lambda: (self.fp("select"), self.model_source_fp,
                              {k: v for k, v in c.section_dict("prune").items() if k != "output_dir"},
                              c.section_dict("verify")),
            "adapt": lambda: (self.fp("prune"), self.fp("evalsets"), c.section_dict("adapt")),
        }[stage]()
        return fingerprint(stage, VERSIONS[stage], *parts)

    # -- stages -------------------------------------------------------------------------------
    def _run(self, name: str, work) -> Path:
        """Run (or skip) a stage at most once per command, even with --force."""
        if name not in self._ran:
            self.lock()
            self._ran[name] = run_stage(self.paths, name, self.fp(name), work, force=self.force,
                                        say=self.say, digests=self.check_digests)[0]
        return self._ran[name]

    def tokenizer(self):
        """The run's tokenizer, loaded from its saved copy (saved on first use)."""

        def work(tmp: Path) -> dict:
            from .safety import library_errors
            from .tokenizer_io import load_tokenizer

            tok = load_tokenizer(self.cfg.tokenizer.source,
                                 trust_remote_code=self.cfg.tokenizer.trust_remote_code,
                                 say=self.say)
            with library_errors(f"saving tokenizer `{self.cfg.tokenizer.source}`", tmp):
                tok.save_pretrained(str(tmp))
            return {"tokenizer": {"source": self.cfg.tokenizer.source,
                                  "class": type(tok).__name__}, "vocab": {"before": len(tok)}}

        d = self._run("tokenizer", work)
        return _load_saved_tokenizer(str(d), self.fp("tokenizer"))

    def tokenize(self) -> Path:
        from .shards import tokenize_corpus

        tok = self.tokenizer()

        def work(tmp: Path) -> dict:
            self.say(f"[tokenize] corpus: {self.source.describe()}")
            if self.cfg.execute.executor == "ray":
                from .executor import tokenize_corpus as ray_tokenize_corpus

                return ray_tokenize_corpus(self.source, tok, self.cfg, tmp, progress=self.progress)
            return tokenize_corpus(self.source, tok, self.cfg, tmp, progress=self.progress)

        return self._run("tokenize", work)

    def count(self) -> Path:
        from .artifacts import write_parquet
        from .count import count_all, distinct_groups

        tok = self.tokenizer()

        def work(tmp: Path) -> dict:
            shards = self.paths.train_shards()
            vocab = tok.convert_ids_to_tokens(list(range(len(tok))))
            if self.cfg.execute.executor == "ray":  # partial counts per shard, merged here
                from .executor import count_shards

                tc, ec, groups = count_shards(shards, vocab, self.cfg.execute)
            else:
                tc, ec, groups = count_all(shards, vocab)
            write_parquet(tc, tmp / "token_counts.parquet")
            write_parquet(ec, tmp / "eojeol_counts.parquet")
            used = int((tc["count"] > 0).sum())
            return {"vocab": {"used": used, "unused": len(tok) - used},
                    "eojeol_types": ec.height,
                    "corpus": {"groups": groups},
                    "heldout": {"groups": distinct_groups(self.paths.heldout_shards())}}

        self.tokenize()
        d = self._run("count", work)
        return d

    def check(self) -> None:
        """Validate inputs before any work: the corpus source resolves and the tokenizer exists."""
        from .models import BUILTINS, _builtin_module, gguf_path, is_gguf_spec
        from .select import check_select_config
        from .tokenizer_io import looks_like_path

        check_select_config(self.cfg.select)  # e.g. a missing [select] latin_reference file
        src = self.cfg.tokenizer.source
        if src in BUILTINS:
            _builtin_module(BUILTINS[src])  # installed?
        elif is_gguf_spec(src):
            gguf_path(src)  # exists, one file
        self.source  # noqa: B018 - resolving checks paths, formats and the text column
        if self.cfg.execute.executor == "ray":
            from .executor import check_source

            check_source(self.source)
        self.eval_sources  # noqa: B018 - the same for every [eval] set
        self.tokenizer_source_fp  # noqa: B018 - hashing checks the tokenizer path
        p = Path(src).expanduser()
        if src != "tekken" and not p.exists() and looks_like_path(src):
            raise InputError(f"Tokenizer path {src} does not exist. Check the path, or pass a hub "
                             "id such as `Qwen/Qwen2.5-0.5B`, or `tekken` for the embedded default.")

    def score(self) -> Path:
        import polars as pl

        from .artifacts import write_parquet
        from .score import score_metrics, score_tokens

        tok = self.tokenizer()
        self.count()

        def work(tmp: Path) -> dict:
            df = score_tokens(tok, pl.read_parquet(self.paths.token_counts),
                              pl.read_parquet(self.paths.eojeol_counts),
                              kiwi_max_eojeol_types=self.cfg.score.kiwi_max_eojeol_types,
                              say=self.say, align=self._kiwi_align())
            write_parquet(df, tmp / "token_scores.parquet")
            return score_metrics(df)

        d = self._run("score", work)
        return d

    def _kiwi_align(self):
        """Kiwi's boundary alignment as Ray tasks under the Ray executor; None: in-process."""
        if self.cfg.execute.executor != "ray":
            return None
        from .executor import alignment_map

        return alignment_map(self.cfg.execute)

    def heldout(self) -> Path:
        import polars as pl

        from .artifacts import write_parquet
        from .sweep import pretokenize_heldout

        tok = self.tokenizer()
        self.tokenize()

        def work(tmp: Path) -> dict:
            pts, fallback = pretokenize_heldout(tok, self.paths.heldout_shards())
            write_parquet(pts, tmp / "pretokens.parquet")
            write_parquet(pl.DataFrame({"text": fallback}, schema={"text": pl.String}),
                          tmp / "fallback_docs.parquet")
            return {"heldout": {"unique_pretokens": pts.height, "fallback_documents": len(fallback)}}

        d = self._run("heldout", work)
        return d

    def heldout_index(self):
        import polars as pl

        from .sweep import load_heldout_index

        d = self.heldout()
        return load_heldout_index(self.paths.heldout_shards(),
                                  pl.read_parquet(d / "pretokens.parquet"),
                                  pl.read_parquet(d / "fallback_docs.parquet")["text"].to_list())

    def evalsets(self) -> Path:
        """Tokenize every ``[eval] sets`` entry once (`pipeline.evalsets`)."""
        from .evalsets import tokenize_set

        tok = self.tokenizer()

        def work(tmp: Path) -> dict:
            m = {}
            for es in self.eval_sets:
                self.say(f"[evalsets] {es.name}: {self.eval_sources[es.name].describe()}")
                m[es.name] = tokenize_set(self.eval_sources[es.name], tok, tmp / es.name,
                                          batch_docs=self.cfg.tokenize.batch_docs,
                                          max_documents=es.corpus.max_documents,
                                          max_bytes=es.corpus.max_bytes)
            return {"evalsets": m}

        return self._run("evalsets", work)

    def eval_indexes(self) -> dict:
        """name -> `pipeline.sweep.HeldoutIndex` of every evaluation set."""
        from .evalsets import load_index

        self.evalsets()
        return {es.name: load_index(self.paths, es.name) for es in self.eval_sets}

    def scores(self):
        import polars as pl

        return pl.read_parquet(self.score() / "token_scores.parquet")

    def select(self) -> Path:
        from .artifacts import write_parquet
        from .select import check_select_config, select, select_metrics
        from .sweep import evaluate

        check_select_config(self.cfg.select)
        tok = self.tokenizer()
        scores = self.scores()
        idx = self.heldout_index()
        eval_idx = self.eval_indexes()

        def work(tmp: Path) -> dict:
            import numpy as np

            from .coverage import split_coverages

            keep = select(tok, scores, self.cfg.select)
            write_parquet(keep, tmp / "keep.parquet")
            m = select_metrics(keep, scores)
            from .surgery.tokenizer import prune_tokenizer

            mask = keep["keep"].to_numpy()
            pruned, _ = prune_tokenizer(tok, np.flatnonzero(mask).tolist())
            ev = evaluate(idx, tok, mask, pruned)
            m["heldout"] = {"identical_share_selected": ev["heldout_identical_share"],
                            "tokens_per_eojeol_selected": ev["heldout_tokens_per_eojeol"]}
            m["eval"] = {}
            for name, ix in eval_idx.items():
                e = evaluate(ix, tok, mask, pruned)
                m["eval"][name] = {
                    "documents": ix.n_docs, "identical_share": e["heldout_identical_share"],
                    "tokens_before": e["heldout_tokens_before"], "tokens_after": e["heldout_tokens"],
                    "tokens_per_eojeol_before": round(ix.tokens / ix.eojeol, 6) if ix.eojeol else None,
                    "tokens_per_eojeol_after": e["heldout_tokens_per_eojeol"]}
            m["coverage"] = split_coverages(self, tok, scores, keep)
            m["select"]["thresholds"] = self.cfg.section_dict("select")
            return m

        d = self._run("select", work)
        return d

    def sweep(self) -> Path:
        from .artifacts import write_parquet
        from .sweep import sweep

        tok = self.tokenizer()
        scores = self.scores()
        idx = self.heldout_index()
        eval_idx = self.eval_indexes()

        def work(tmp: Path) -> dict:
            df = sweep(tok, scores, idx, self.cfg.select, self.cfg.sweep, say=self.say,
                       eval_indexes=eval_idx)
            write_parquet(df, tmp / "sweep.parquet")
            return {"sweep": {"points": df.height}}

        d = self._run("sweep", work)
        return d

    def analyze(self, until: str | None = None) -> dict:
        """Run the analysis stages (up to and including ``until``, default all)."""
        self.check()
        self.lock()
        {"tokenize": self.tokenize, "count": self.count, "score": self.score,
         "select": self.select, None: self.select}[until]()
        return self.write_metrics()

    def run_sweep(self) -> dict:
        self.check()
        self.lock()
        self.select()
        self.sweep()
        return self.write_metrics()

    @functools.cached_property
    def model_source_fp(self) -> str:
        from .prune import model_source_fingerprint

        return model_source_fingerprint(self.cfg)

    def run_prune(self) -> dict:
        self._checked_prune()
        return self.write_metrics()

    def _checked_prune(self) -> Path:
        from .prune import check_prune_inputs, export_output, prune_stage
        from .safety import library_errors

        self.check_locations()  # nothing is written near the source model: before anything
        self.check()
        check_prune_inputs(self)  # model source, output dir, tokenizer: before any analysis
        self.lock()
        self.select()
        self.check_heldout()
        with library_errors(f"model `{self.cfg.prune.model}`"):
            d = self._run("prune", lambda tmp: prune_stage(self, tmp))
        export_output(self, d)
        return d

    def run_adapt(self) -> dict:
        """Prune (when not up to date), then extend and recovery-train (`pipeline.adapt`);
        the training checkpoint is removed once the stage is complete."""
        from .adapt import adapt_stage, check_adapt_inputs, remove_checkpoint
        from .prune import _progress_bars
        from .safety import library_errors

        self.check_locations()
        self.check()
        self.lock()
        check_adapt_inputs(self)  # before the (long) prune and analysis stages
        self._checked_prune()
        self.evalsets()
        with library_errors(f"adapting model `{self.cfg.prune.model}`"), \
                _progress_bars(self.progress):
            self._run("adapt", lambda tmp: adapt_stage(self, tmp))
        remove_checkpoint(self)
        return self.write_metrics()

    def check_locations(self) -> None:
        """Every folder a command writes (run artifacts, reports, --output-dir) is away from
        every local input directory (the source model, the tokenizer and the corpus directory):
        not it, not inside it, not around it. Checked before the first write."""
        from .prune import output_dir, source_kind
        from .safety import check_away_from_source

        targets = {"Output directory": output_dir(self.cfg)} if self.cfg.prune.output_dir else {}
        targets |= {"Artifacts folder": self.paths.root, "Reports folder": self.paths.reports}
        inputs = []
        kind = source_kind(self.cfg.prune.model)
        if kind == "local":
            inputs.append(("source model directory", self.cfg.prune.model))
        elif kind == "gguf":  # the user's GGUF (file or folder) and its converted copy
            from .models import BUILTINS, converted_dir

            if self.cfg.prune.model not in BUILTINS:
                inputs.append(("source model directory", self.cfg.prune.model))
            inputs.append(("source model directory", str(converted_dir(self.cfg.prune.model))))
        inputs += [("tokenizer directory", self.cfg.tokenizer.source),
                   ("corpus directory", self.cfg.corpus.source)]
        for kind, src in inputs:
            p = Path(src).expanduser()
            if kind == "source model directory" or p.is_dir():
                check_away_from_source(targets, p, kind)

    def check_heldout(self) -> None:
        """Verification needs held-out documents: an empty held-out split fails here, with
        what to change."""
        from .artifacts import stage_metrics

        h = stage_metrics(self.paths.stage("tokenize")).get("heldout", {})
        if not h.get("documents"):
            hc = self.cfg.heldout
            raise InputError(
                f"The held-out split of run '{self.cfg.run}' is empty (heldout.fraction = "
                f"{hc.fraction}, salt {hc.salt!r}, group column "
                f"{self.cfg.corpus.group_column!r}), so the pruned model could not be verified "
                "on any document. Raise [heldout] fraction, change [heldout] salt, or give the "
                "corpus a finer [corpus] group_column (more groups), then rerun.")

    def report(self) -> Path:
        from .report import write_report

        return write_report(self)

    def write_metrics(self) -> dict:
        extra = {"run": {"name": self.cfg.run, "tool_version": __version__,
                         "corpus": self.source.describe(),
                         "tokenizer": self.cfg.tokenizer.source}}
        # only stages that are up to date with this config: never report a stale selection
        self.lock()
        current = [s for s in ALL_STAGES
                   if is_done(self.paths.stage(s), self.fp(s), self.check_digests)]
        return merge_metrics(self.paths, current, extra)

    def plan(self, command: str = "analyze") -> list[tuple[str, str]]:
        """(stage, status) of the stages ``command`` runs, for --dry-run."""
        extra = {"sweep": ["sweep"], "prune": ["prune"], "adapt": ["prune", "adapt"]}.get(
            command, [])
        out = []
        for s in ANALYZE_STAGES + extra:
            done = is_done(self.paths.stage(s), self.fp(s), self.check_digests) and not self.force
            out.append((s, "up to date" if done else "would run"))
        return out


@functools.lru_cache(maxsize=8)
def _load_saved_tokenizer(path: str, fp: str):  # fp: a rebuilt tokenizer is reloaded
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as e:  # a damaged artifact: tell the user how to recover
        raise InputError(f"The saved tokenizer in {path} cannot be loaded ({e}). Rerun with "
                         "--force to rebuild it.") from e
