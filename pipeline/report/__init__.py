"""The run report: ``reports/<run>/index.html`` and the figures in ``reports/<run>/metrics.json``.

`write_report(run)` rebuilds both from whatever stages of the run are up to date with its
config (``select`` at least; ``sweep`` adds the threshold curves, ``prune`` the parameter,
size and verification figures — "not pruned yet" without it):

1. `pipeline.report.data.load_run`: token scores, keep set, sweep table, prune metrics, the
   original and the pruned tokenizer.
2. `pipeline.report.figures.compute`: every figure (summary, threshold curves, byte/script class
   breakdown, fertility by text type, the Korean metrics of `pipeline.metrics` before/after,
   token tables, sample sentences).
3. ``metrics.json`` = the stages' merged metrics (`pipeline.runner.Run.write_metrics`) plus
   ``quality`` (Korean metrics before/after) and ``report`` (all other figures).
4. `pipeline.report.render.render`: one self-contained HTML page (inline CSS, SVG charts and a
   small sorting/filtering script; no network; every token string HTML-escaped).

Both files are deterministic: no timestamps, sorted keys, fixed number formats, so the same
artifacts give byte-identical files. It decides nothing and changes no artifact.
"""

from __future__ import annotations

from pathlib import Path

from ..artifacts import atomic_write_bytes, write_json

INDEX = "index.html"


def build(run) -> tuple[dict, dict]:
    """``(figures, views)`` of the report (`pipeline.report.figures.compute`)."""
    from .data import load_run
    from .figures import compute

    return compute(load_run(run))


def write_report(run) -> Path:
    """Write ``reports/<run>/index.html`` and merge the figures into ``metrics.json``;
    return the HTML path."""
    from .render import render

    figures, views = build(run)
    merged = run.write_metrics()
    merged["quality"] = figures["quality"]
    merged["report"] = {k: v for k, v in figures.items() if k != "quality"}
    write_json(run.paths.metrics, merged)
    out = run.paths.reports / INDEX
    atomic_write_bytes(out, render(figures, views).encode("utf-8"))
    return out
