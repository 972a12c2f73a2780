"""Inline SVG charts for the report (no JavaScript, no network, deterministic text).

`line_chart` draws one or more series of (x, y) points with axes, "nice" ticks, an optional
horizontal reference line and highlighted points; `bar_chart` draws horizontal stacked bars.
Every piece of text is XML-escaped here, so callers may pass any label. Numbers are written with
a fixed number of decimals, so the same data always gives the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#2563eb", "#d97706", "#059669", "#7c3aed", "#dc2626")


@dataclass
class Series:
    name: str
    points: list[tuple[float, float, str]]  # (x, y, label shown on hover)
    color: str = PALETTE[0]


@dataclass
class Mark:
    """A highlighted point (e.g. the chosen thresholds)."""

    x: float
    y: float
    label: str


@dataclass
class Axis:
    label: str
    fmt: str = "{:,.0f}"            # tick label format
    ticks: list[float] = field(default_factory=list)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi] (1, 2, 2.5 or 5 times a power of 10)."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0]
    if hi == lo:
        pad = abs(lo) * 0.05 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def _f(v: float) -> str:
    return f"{v:.1f}"


def line_chart(series: list[Series], x: Axis, y: Axis, *, title: str, marks: list[Mark] = (),
               hline: tuple[float, str] | None = None, width: int = 560,
               height: int = 320) -> str:
    """An SVG line chart (see module docstring); ``hline`` = (y value, label)."""
    pts = [(px, py) for s in series for px, py, _ in s.points] + [(m.x, m.y) for m in marks]
    ys = [p[1] for p in pts] + ([hline[0]] if hline else [])
    xs = [p[0] for p in pts]
    if not pts:
        return _empty(title, width, height)
    xt = x.ticks or nice_ticks(min(xs), max(xs))
    yt = y.ticks or nice_ticks(min(ys), max(ys))
    left, right, top, bottom = 70, 24, 58, 50
    pw, ph = width - left - right, height - top - bottom

    def sx(v: float) -> float:
        return left + (v - xt[0]) / ((xt[-1] - xt[0]) or 1) * pw

    def sy(v: float) -> float:
        return top + ph - (v - yt[0]) / ((yt[-1] - yt[0]) or 1) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
           f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">',
           f"<title>{escape(title)}</title>",
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="10" y="20" class="chart-title">{escape(title)}</text>']
    for t in yt:
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{_f(sy(t))}" y2="{_f(sy(t))}" '
                   'class="grid"/>')
        out.append(f'<text x="{left - 8}" y="{_f(sy(t) + 4)}" text-anchor="end" class="tick">'
                   f"{escape(y.fmt.format(t))}</text>")
    for t in xt:
        out.append(f'<line x1="{_f(sx(t))}" x2="{_f(sx(t))}" y1="{top + ph}" y2="{top + ph + 5}"'
                   ' class="axis"/>')
        out.append(f'<text x="{_f(sx(t))}" y="{top + ph + 18}" text-anchor="middle" '
                   f'class="tick">{escape(x.fmt.format(t))}</text>')
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" class="axis"/>')
    out.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + ph}" class="axis"/>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 8}" text-anchor="middle" '
               f'class="axis-label">{escape(x.label)}</text>')
    out.append(f'<text transform="translate(16 {top + ph / 2:.1f}) rotate(-90)" '
               f'text-anchor="middle" class="axis-label">{escape(y.label)}</text>')
    if hline:
        hy = _f(sy(hline[0]))
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{hy}" y2="{hy}" class="ref"/>')
        out.append(f'<text x="{left + 6}" y="{_f(sy(hline[0]) - 5)}" '
                   f'class="ref-label">{escape(hline[1])}</text>')
    for s in series:
        ordered = sorted(s.points)
        if len(ordered) > 1:
            d = " ".join(f"{_f(sx(px))},{_f(sy(py))}" for px, py, _ in ordered)
            out.append(f'<polyline points="{d}" fill="none" stroke="{s.color}" '
                       'stroke-width="2"/>')
        for px, py, label in ordered:
            out.append(f'<circle cx="{_f(sx(px))}" cy="{_f(sy(py))}" r="4" fill="{s.color}">'
                       f"<title>{escape(label)}</title></circle>")
    for m in marks:
        cx, cy = _f(sx(m.x)), _f(sy(m.y))
        out.append(f'<circle cx="{cx}" cy="{cy}" r="9" class="mark"/>')
        anchor = "end" if sx(m.x) > left + pw * 0.7 else "start"
        dx = -12 if anchor == "end" else 12
        dy = 24 if sy(m.y) < top + ph * 0.25 else -12  # below the ring near the top
        out.append(f'<text x="{_f(sx(m.x) + dx)}" y="{_f(sy(m.y) + dy)}" text-anchor="{anchor}" '
                   f'class="mark-label">{escape(m.label)}</text>')
    out.append(_legend(series, left, top, pw))
    out.append("</svg>")
    return "\n".join(out)


def _legend(series: list[Series], left: int, top: int, pw: int) -> str:
    items, x = [], left
    for s in series:
        items.append(f'<rect x="{x}" y="{top - 26}" width="10" height="10" fill="{s.color}"/>'
                     f'<text x="{x + 14}" y="{top - 17}" class="legend">{escape(s.name)}</text>')
        x += 30 + 7 * len(s.name)
    items.append(f'<circle cx="{x + 5}" cy="{top - 21}" r="5" class="mark"/>'
                 f'<text x="{x + 14}" y="{top - 17}" class="legend">configured thresholds</text>')
    return "".join(items)


def bar_chart(rows: list[tuple[str, float, float]], *, title: str, labels=("kept", "dropped"),
              width: int = 560, bar: int = 18) -> str:
    """Horizontal stacked bars, one per ``(label, a, b)``, scaled to the largest ``a + b``
    (log-free: shares of each row are what the reader compares, so every bar is 100% wide)."""
    top, left, right = 52, 150, 60
    height = top + len(rows) * (bar + 8) + 10
    pw = width - left - right
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
           f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">',
           f"<title>{escape(title)}</title>",
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="10" y="20" class="chart-title">{escape(title)}</text>']
    for i, (label, a, b) in enumerate(rows):
        y = top + i * (bar + 8)
        total = a + b
        wa = pw * a / total if total else 0
        out.append(f'<text x="{left - 8}" y="{y + bar - 5}" text-anchor="end" class="tick">'
                   f"{escape(label)}</text>")
        out.append(f'<rect x="{left}" y="{y}" width="{_f(wa)}" height="{bar}" fill="{PALETTE[2]}">'
                   f"<title>{escape(f'{label}: {a:,.0f} {labels[0]}')}</title></rect>")
        out.append(f'<rect x="{_f(left + wa)}" y="{y}" width="{_f(pw - wa)}" height="{bar}" '
                   f'fill="#e5e7eb"><title>{escape(f"{label}: {b:,.0f} {labels[1]}")}</title>'
                   "</rect>")
        share = f"{a / total:.1%}" if total else "–"
        out.append(f'<text x="{left + pw + 6}" y="{y + bar - 5}" class="tick">{share}</text>')
    out.append(f'<rect x="{left}" y="{top - 24}" width="10" height="10" fill="{PALETTE[2]}"/>'
               f'<text x="{left + 14}" y="{top - 15}" class="legend">{escape(labels[0])}</text>'
               f'<rect x="{left + 70}" y="{top - 24}" width="10" height="10" fill="#e5e7eb"/>'
               f'<text x="{left + 84}" y="{top - 15}" class="legend">{escape(labels[1])}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _empty(title: str, width: int, height: int) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} '
            f'{height}" width="{width}" height="{height}"><title>{escape(title)}</title>'
            f'<text x="20" y="40">{escape(title)}: no data</text></svg>')
