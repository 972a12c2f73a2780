"""Everything the report reads from a run's artifacts, loaded once (`load_run`).

Only stages that are up to date with the run's config are used (the rule of
`pipeline.runner.Run.write_metrics`): a stale ``sweep/`` gives no curves, a stale or missing
``prune/`` gives "not pruned yet". ``select/`` must be current; otherwise there is nothing to
report and `InputError` says which command to run. A current ``adapt/`` adds its figures.

The pruned tokenizer is the prune stage's saved one (``prune/model/``, ids mapped back through
its ``id_map.json``) when that stage is current, else built in memory from ``keep.parquet``
with `pipeline.surgery.tokenizer.prune_tokenizer`. Both give the same tokenization.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ..artifacts import is_done, read_done, stage_metrics
from ..errors import InputError


@dataclass
class Pruned:
    tok: object                 # the pruned fast tokenizer
    new_to_old: np.ndarray      # pruned id -> original id
    origin: str                 # "prune stage" | "in memory (keep.parquet)"


@dataclass
class RunData:
    run: object                 # pipeline.runner.Run
    tok: object                 # original tokenizer
    scores: pl.DataFrame        # token_scores.parquet
    keep: np.ndarray            # bool per original id
    reasons: list[str]          # keep.parquet reason per original id
    thresholds: dict            # [select] as the select stage used it
    select_metrics: dict
    sweep: pl.DataFrame | None  # None: no current sweep
    prune: dict | None          # prune stage metrics; None: not pruned (or stale)
    prune_stale: bool           # prune/ exists but is from other inputs
    pruned: Pruned
    adapt: dict | None = None   # adapt stage metrics; None: not adapted (or stale)

    @property
    def paths(self):
        return self.run.paths

    @property
    def cfg(self):
        return self.run.cfg


def _current(run, stage: str) -> bool:
    try:
        return is_done(run.paths.stage(stage), run.fp(stage))
    except Exception:  # e.g. a model source that cannot be fingerprinted: cannot be current
        return False


def load_run(run) -> RunData:
    """Load the run's artifacts (see module docstring)."""
    paths = run.paths
    if not _current(run, "select"):
        what = "out of date for this config" if read_done(paths.stage("select")) else "missing"
        raise InputError(f"The keep set of run `{run.cfg.run}` ({paths.stage('select')}) is "
                         f"{what}, so there is nothing to report. Run `python -m pipeline "
                         "analyze` (or sweep / prune) with the same config first.")
    tok = run.tokenizer()
    scores = pl.read_parquet(paths.stage("score") / "token_scores.parquet")
    keep_df = pl.read_parquet(paths.stage("select") / "keep.parquet").sort("token_id")
    keep = keep_df["keep"].to_numpy().astype(bool)
    sel = stage_metrics(paths.stage("select"))
    sweep = (pl.read_parquet(paths.stage("sweep") / "sweep.parquet")
             if _current(run, "sweep") else None)
    prune_current = _current(run, "prune")
    prune = stage_metrics(paths.stage("prune")) if prune_current else None
    pruned = (_stage_tokenizer(paths.stage("prune") / "model") if prune_current
              else _in_memory(tok, keep))
    return RunData(run=run, tok=tok, scores=scores, keep=keep,
                   reasons=keep_df["reason"].to_list(),
                   thresholds=sel.get("select", {}).get("thresholds")
                   or run.cfg.section_dict("select"),
                   select_metrics=sel, sweep=sweep, prune=prune,
                   prune_stale=bool(read_done(paths.stage("prune"))) and not prune_current,
                   pruned=pruned,
                   adapt=stage_metrics(paths.stage("adapt")) if prune_current
                   and _current(run, "adapt") else None)


def _in_memory(tok, keep: np.ndarray) -> Pruned:
    from ..surgery.tokenizer import prune_tokenizer

    kept = np.flatnonzero(keep)
    new_tok, _ = prune_tokenizer(tok, kept.tolist())
    return Pruned(new_tok, kept.astype(np.int64), "in memory (keep.parquet)")


def _stage_tokenizer(model_dir: Path) -> Pruned:
    from transformers import AutoTokenizer

    new_tok = AutoTokenizer.from_pretrained(str(model_dir))
    id_map = json.loads((model_dir / "id_map.json").read_text(encoding="utf-8"))
    return Pruned(new_tok, np.asarray(id_map["kept_old_ids"], dtype=np.int64), "prune stage")
