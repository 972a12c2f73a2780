"""Figures + views -> one self-contained HTML page (Jinja2 with autoescaping).

The template (``report.html``), stylesheet (``report.css``) and script (``report.js``) are package
files, inlined into the page: it opens from ``file://`` with nothing else. Charts are SVG built
by `pipeline.report.svg`. Autoescaping is on for the whole template, so every token string,
context and source name is HTML-escaped; only the package's own CSS/JS and the SVG (which
escapes its own text) are inserted unescaped.

Every shown number is written with ``data-metric`` (its path in ``metrics.json``) and
``data-value`` (its exact JSON value), so tests and readers can check the page against the
metrics file.
"""

from __future__ import annotations

import json
from importlib import resources

from markupsafe import Markup

from ..config import SelectConfig
from . import svg

TEMPLATE = "report.html"


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def fmt(value, kind: str = "int") -> str:
    """Format a number for the page; ``None`` -> an en dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, (int, float)):
        return str(value)
    return {
        "int": lambda v: f"{v:,.0f}",
        "pct": lambda v: f"{v:.2%}",
        "pct1": lambda v: f"{v:.1%}",
        "f2": lambda v: f"{v:,.2f}",
        "f3": lambda v: f"{v:,.3f}",
        "f4": lambda v: f"{v:,.4f}",
        "sci": lambda v: f"{v:.3g}",
        "signed_pct": lambda v: f"{v:+.2%}",
        "mb": lambda v: f"{v:,.2f} MB",
    }[kind](value)


def jsonv(value) -> str:
    """The exact JSON text of a value (escaped by the template like any other text)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def select_help() -> dict[str, str]:
    import dataclasses

    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(SelectConfig)}


def charts(figures: dict) -> dict[str, Markup]:
    out = {}
    c = figures.get("curves")
    if c:
        sets = (figures.get("coverage") or {}).get("eval_sets", [])
        out["identical"] = Markup(_curve(c, "heldout_identical_share",
                                         "Vocabulary size vs identical share (held-out, sets)",
                                         svg.Axis("identical share", "{:.0%}"), None, sets))
        orig = c["original"]["tokens_per_eojeol"]
        out["fertility"] = Markup(_curve(c, "heldout_tokens_per_eojeol",
                                         "Vocabulary size vs held-out tokens per eojeol",
                                         svg.Axis("tokens per eojeol", "{:.3f}"),
                                         (orig, f"original tokenizer: {orig:.3f}")
                                         if orig is not None else None, sets))
    cov = figures.get("coverage")
    if cov:
        for key, title in (("documents", "documents tokenized identically"),
                           ("occurrences", "token occurrences covered")):
            out[f"coverage_{key}"] = Markup(_coverage_chart(cov, key, title))
    ad = figures.get("adapt")
    if ad and ad["curve"]:
        out["adapt_loss"] = Markup(_loss_chart(ad))
    rows = [(r["label"], r["kept"], r["dropped"]) for r in figures["breakdown"] if r["vocab"]]
    out["breakdown"] = Markup(svg.bar_chart(rows, title="Kept share of each class"))
    return out


def _loss_chart(ad: dict) -> str:
    """Training loss per optimizer step (nats per token, packed train sequences); the step
    whose weights were kept is marked."""
    pts = [(step, loss, f"step {step}: loss {loss:.4f}") for step, loss in ad["curve"]]
    best = ad["train"].get("best_step")
    marks = [svg.Mark(step, loss, f"kept: step {step}") for step, loss in ad["curve"]
             if step == best]
    return svg.line_chart([svg.Series("train loss", pts, svg.PALETTE[0])],
                          svg.Axis("optimizer step"), svg.Axis("loss (nats/token)", "{:.2f}"),
                          title="Recovery training loss", marks=marks)


def _coverage_chart(cov: dict, key: str, what: str) -> str:
    """One series per split: kept-vocabulary size (selection order) vs coverage; the chosen
    point and the seen-tokens-only baseline of each split as marks."""
    series, marks = [], []
    for i, (name, c) in enumerate(cov["curves"].items()):
        color = svg.PALETTE[i % len(svg.PALETTE)]
        pts = [(p["vocab_size"], p[key], f"{name}: {p['vocab_size']:,} tokens")
               for p in c["points"] if p[key] is not None]
        series.append(svg.Series(name, pts, color))
        for label, p in (("chosen", c["chosen"]), ("seen only", c["seen_only"])):
            if p.get(key) is not None:
                marks.append(svg.Mark(p["vocab_size"], p[key],
                                      f"{name} {label}: {p['vocab_size']:,}"))
    return svg.line_chart(series, svg.Axis("kept vocabulary (tokens, selection order)"),
                          svg.Axis(what, "{:.0%}"), title=f"Kept vocabulary vs {what}",
                          marks=marks)


#: The [sweep] grids, one curve each: (series, colour).
GRID_SERIES = (("min_count", svg.PALETTE[0]), ("target_vocab_size", svg.PALETTE[1]),
               ("top_latin", svg.PALETTE[4]), ("max_ksx1001", svg.PALETTE[3]))


def _curve(c: dict, key: str, title: str, y: svg.Axis, hline, sets=()) -> str:
    series = []
    for name, color in GRID_SERIES:
        label = f"{name}={{{name}}}"
        pts = [(r["vocab_size"], r[key], label.format(**r) + f": {r['vocab_size']:,} tokens")
               for r in c["points"] if r["series"] in (name, "chosen") and r[key] is not None]
        if len(pts) > (0 if name == "min_count" else 1):
            series.append(svg.Series(f"{name} grid", pts, color))
    for i, name in enumerate(sets):  # one curve per evaluation set, along the min_count grid
        k = key.replace("heldout_", f"{name}_", 1)
        pts = [(r["vocab_size"], r[k], f"{name}, min_count={r['min_count']}: {r['vocab_size']:,}")
               for r in c["points"] if r["series"] in ("min_count", "chosen") and r.get(k) is not None]
        if pts:
            series.append(svg.Series(f"{name} (evaluation set)", pts,
                                     svg.PALETTE[(i + 2) % len(svg.PALETTE)]))
    ch = c["chosen"]
    marks = ([svg.Mark(ch["vocab_size"], ch[key], f"chosen: {ch['vocab_size']:,}")]
             if ch.get(key) is not None else [])
    for r in c["points"]:  # [sweep] rules: the chosen thresholds with one rule flipped
        if r.get("flipped") and r["series"] not in (*(n for n, _ in GRID_SERIES), "chosen") \
                and r.get(key) is not None:
            marks.append(svg.Mark(r["vocab_size"], r[key], f"{r['flipped']}: {r['vocab_size']:,}"))
    return svg.line_chart(series, svg.Axis("vocabulary size (tokens kept)"), y, title=title,
                          marks=marks, hline=hline)


def render(figures: dict, views: dict) -> str:
    """The HTML page (see module docstring)."""
    from jinja2 import BaseLoader, Environment, StrictUndefined

    env = Environment(loader=BaseLoader(), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["fmt"] = fmt
    env.filters["jsonv"] = jsonv
    tpl = env.from_string(_asset(TEMPLATE))
    return tpl.render(f=figures, v=views, charts=charts(figures), help=select_help(),
                      css=Markup(_asset("report.css")), js=Markup(_asset("report.js")))
