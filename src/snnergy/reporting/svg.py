"""Charts as inline SVG for ``report.html``: points with hover tips, lines, bands and bars.

Plain text generation, no dependency: every chart is one ``<figure>`` holding an ``<svg>`` and an
HTML legend. Each point and bar carries its tip as an SVG ``<title>``: the browser's own tooltip,
which the page's script turns into an instant one. Every text is escaped, since labels come from
user configs. Each series is a ``<g data-series=i>`` that its legend button (``data-series=i``)
shows or hides. Colours are matplotlib's ``tab10``, the PNG plots' colours.

It knows nothing of results: :mod:`snnergy.reporting.figures` turns the report's data into
:class:`Series` and bars.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
"""matplotlib's ``tab10``: the colours the PNG plots use, in the same order."""

WIDTH, HEIGHT = 760, 400
MARGIN = (72, 20, 34, 52)
"""Left, right, top, bottom margins of the plot area, in SVG units."""


def color(i: int) -> str:
    """The ``i``-th colour of :data:`PALETTE`, cycling.

    Example:
        >>> color(0), color(11)
        ('#1f77b4', '#ff7f0e')
    """
    return PALETTE[i % len(PALETTE)]


def esc(text: object) -> str:
    """``text`` escaped for HTML and SVG text and attribute values.

    Example:
        >>> esc('<b a="1">&')
        '&lt;b a=&quot;1&quot;&gt;&amp;'
    """
    return html.escape(str(text), quote=True)


@dataclass(frozen=True)
class Point:
    """One marker: where, its tip, and ``circle`` or ``square``."""

    x: float
    y: float
    tip: str
    marker: str = "circle"


@dataclass(frozen=True)
class Series:
    """One legend entry: its markers, the line through ``path`` (``(x, y)`` pairs, drawn as given),
    an optional band (``(x, low, high)``), and ``level``, a dashed horizontal line at that y."""

    name: str
    color: str
    points: tuple[Point, ...] = ()
    path: tuple[tuple[float, float], ...] = ()
    dashed: bool = False
    band: tuple[tuple[float, float, float], ...] = ()
    level: float | None = None


@dataclass(frozen=True)
class Axis:
    """An axis: its label, ``log`` (base ``base``) or linear, and optional candidate ``ticks``
    (those inside the data's range are drawn; default: chosen from the range)."""

    label: str
    log: bool = False
    base: float = 10.0
    ticks: tuple[float, ...] = field(default=())


class _Scale:
    """Maps data values on ``[lo, hi]`` (log or linear) onto pixels ``[a0, a1]``."""

    def __init__(self, lo: float, hi: float, axis: Axis, a0: float, a1: float) -> None:
        self.axis, self.a0, self.a1 = axis, a0, a1
        self.f0, self.f1 = self._f(lo), self._f(hi)
        self.lo, self.hi = lo, hi

    def _f(self, v: float) -> float:
        return math.log(v, self.axis.base) if self.axis.log else v

    def __call__(self, v: float) -> float:
        return self.a0 + (self._f(v) - self.f0) / (self.f1 - self.f0) * (self.a1 - self.a0)


def domain(values: Sequence[float], axis: Axis, pad: float = 0.05) -> tuple[float, float]:
    """The drawn range of ``values``: their extent widened by ``pad`` of it on each side (in log
    space on a log axis); a single value gets a range around it.

    Example:
        >>> domain([0.0, 1.0], Axis("x"))
        (-0.05, 1.05)
        >>> [round(v, 6) for v in domain([1.0, 100.0], Axis("x", log=True), pad=0.0)]
        [1.0, 100.0]
    """
    finite = [v for v in values if math.isfinite(v) and (v > 0 or not axis.log)]
    if not finite:
        return (1.0, 10.0) if axis.log else (0.0, 1.0)
    if axis.log:
        lo, hi = math.log(min(finite), axis.base), math.log(max(finite), axis.base)
        span = hi - lo or 1.0
        return axis.base ** (lo - pad * span), axis.base ** (hi + pad * span)
    lo, hi = min(finite), max(finite)
    span = hi - lo or (abs(hi) or 1.0)
    return lo - pad * span, hi + pad * span


def linear_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """About ``count`` round ticks (steps of 1, 2 or 5 times a power of ten) on ``[lo, hi]``.

    Example:
        >>> linear_ticks(0.0, 1.0)
        [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    """
    raw = (hi - lo) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step - 1e-9)
    ticks = []
    k = first
    while k * step <= hi + 1e-9 * step:
        ticks.append(round(k * step, 12))
        k += 1
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks of a log10 axis: powers of ten over two decades or more, else 1, 2 and 5 times them
    (1 to 9 times them under one decade).

    Example:
        >>> log_ticks(1e-8, 1e-5)
        [1e-08, 1e-07, 1e-06, 1e-05]
        >>> log_ticks(1.5e-7, 4e-7)
        [2e-07, 3e-07, 4e-07]
    """
    decades = math.log10(hi / lo)
    steps = (1,) if decades >= 2 else (1, 2, 5) if decades >= 1 else tuple(range(1, 10))
    ticks = [m * 10.0 ** k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1) for m in steps]
    return [float(f"{t:.6g}") for t in ticks if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9)]


def tick_label(value: float, step: float | None = None) -> str:
    """A tick's text: fixed decimals enough for ``step`` between 1e-3 and 1e4, else ``%.3g``.

    Example:
        >>> tick_label(0.9725, 0.0025), tick_label(2e-07), tick_label(128.0, 32.0)
        ('0.9725', '2e-07', '128')
    """
    if step is not None and 1e-4 <= abs(step) and max(abs(value), abs(step)) < 1e4:
        decimals = 0
        while decimals < 6 and abs(round(step, decimals) - step) > 1e-9 * abs(step):
            decimals += 1
        return f"{value:.{decimals}f}"
    return f"{value:.3g}"


def _ticks(scale: _Scale) -> list[tuple[float, str]]:
    axis, lo, hi = scale.axis, min(scale.lo, scale.hi), max(scale.lo, scale.hi)
    if axis.ticks:
        return [(t, tick_label(t, 1.0 if float(t).is_integer() else None)) for t in axis.ticks if lo <= t <= hi]
    if axis.log:
        return [(t, tick_label(t)) for t in log_ticks(lo, hi)]
    ticks = linear_ticks(lo, hi)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else None
    return [(t, tick_label(t, step)) for t in ticks]


def _marker(point: Point, x: float, y: float) -> str:
    """One marker (filled by its series' group) with its tip as an SVG ``<title>``."""
    if point.marker == "square":
        return (f'<rect class="pt sq" x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8">'
                f"<title>{esc(point.tip)}</title></rect>")
    return f'<circle class="pt" cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{esc(point.tip)}</title></circle>'


def _legend(entries: Sequence[tuple[str, str, bool]]) -> str:
    """HTML legend buttons: (name, colour, dashed)."""
    items = []
    for i, (name, fill, dashed) in enumerate(entries):
        style = f"border-top:2px dashed {fill};background:none" if dashed else f"background:{fill}"
        items.append(f'<button type="button" class="key" data-series="{i}"><span class="swatch" style="{style}">'
                     f'</span>{esc(name)}</button>')
    return f'<div class="legend">{"".join(items)}</div>'


def _frame(title: str, body: str, legend: str, caption: str) -> str:
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return (f'<figure class="chart"><svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{esc(title)}">'
            f'<text class="title" x="{WIDTH / 2}" y="20" text-anchor="middle">'
            f'{esc(title)}</text>{body}</svg>{legend}{cap}</figure>')


def _axes(xs: _Scale, ys: _Scale, xlabel: str, ylabel: str, x_ticks: bool = True) -> list[str]:
    """The plot area's frame, grid, ticks and axis labels (no x ticks when categories replace them)."""
    left, right, top, bottom = MARGIN[0], WIDTH - MARGIN[1], MARGIN[2], HEIGHT - MARGIN[3]
    parts = [f'<rect class="plot" x="{left}" y="{top}" width="{right - left}" height="{bottom - top}"/>']
    for value, label in _ticks(xs) if x_ticks else []:
        x = xs(value)
        parts.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}"/>'
                     f'<text class="tick" x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{esc(label)}</text>')
    for value, label in _ticks(ys):
        y = ys(value)
        parts.append(f'<line class="grid" x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}"/>'
                     f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{esc(label)}</text>')
    parts.append(f'<text class="label" x="{(left + right) / 2}" y="{HEIGHT - 12}" text-anchor="middle">{esc(xlabel)}</text>'
                 f'<text class="label" transform="translate(16 {(top + bottom) / 2}) rotate(-90)" text-anchor="middle">'
                 f'{esc(ylabel)}</text>')
    return parts


def line_chart(
    series: Sequence[Series],
    title: str,
    x: Axis,
    y: Axis,
    guides: Sequence[tuple[float, str]] = (),
    caption: str = "",
) -> str:
    """A chart of markers and lines: each :class:`Series` with its points (hover tips), path,
    band and level; ``guides`` are dotted black horizontal lines with a label (e.g. the target).
    Points a log axis cannot show (x or y <= 0) are left out.

    Example:
        >>> svg = line_chart([Series("a <1>", color(0), (Point(1.0, 0.5, "a at T = 1"),), ((1.0, 0.5), (2.0, 0.6)))],
        ...                  "t", Axis("x"), Axis("y"))
        >>> '<title>a at T = 1</title>' in svg, "a &lt;1&gt;" in svg, "<polyline" in svg
        (True, True, True)
    """
    def shown(vx: float, vy: float) -> bool:
        return (math.isfinite(vx) and math.isfinite(vy) and (vx > 0 or not x.log) and (vy > 0 or not y.log))

    xs_all = [p.x for s in series for p in s.points] + [px for s in series for px, _ in s.path]
    ys_all = ([p.y for s in series for p in s.points] + [py for s in series for _, py in s.path]
              + [v for s in series for _, lo, hi in s.band for v in (lo, hi)]
              + [s.level for s in series if s.level is not None] + [g for g, _ in guides])
    xs = _Scale(*domain(xs_all, x), x, MARGIN[0], WIDTH - MARGIN[1])
    ys = _Scale(*domain(ys_all, y), y, HEIGHT - MARGIN[3], MARGIN[2])
    parts = _axes(xs, ys, x.label, y.label)
    left, right = MARGIN[0], WIDTH - MARGIN[1]
    for value, label in guides:
        gy = ys(value)
        parts.append(f'<line class="guide" x1="{left}" x2="{right}" y1="{gy:.1f}" y2="{gy:.1f}"/>'
                     f'<text class="tick" x="{right - 4}" y="{gy + 14:.1f}" text-anchor="end">{esc(label)}</text>')  # below: the curves approach from above
    for i, s in enumerate(series):
        group = [f'<g class="series" data-series="{i}">']
        if s.level is not None:
            ly = ys(s.level)
            group.append(f'<line x1="{left}" x2="{right}" y1="{ly:.1f}" y2="{ly:.1f}" stroke="{s.color}" '
                         f'stroke-width="0.8" stroke-dasharray="5 4"/>')
        band = [(bx, lo, hi) for bx, lo, hi in s.band if shown(bx, lo) and shown(bx, hi)]
        if band:
            outline = [f"{xs(bx):.1f},{ys(hi):.1f}" for bx, _, hi in band] + [f"{xs(bx):.1f},{ys(lo):.1f}" for bx, lo, _ in reversed(band)]
            group.append(f'<polygon points="{" ".join(outline)}" fill="{s.color}" opacity="0.15"/>')
        path = [f"{xs(px):.1f},{ys(py):.1f}" for px, py in s.path if shown(px, py)]
        if len(path) > 1:
            dash = ' stroke-dasharray="6 4"' if s.dashed else ""
            group.append(f'<polyline points="{" ".join(path)}" fill="none" stroke="{s.color}" stroke-width="1.5"{dash}/>')
        group.append(f'<g fill="{s.color}">')
        group += [_marker(p, xs(p.x), ys(p.y)) for p in s.points if shown(p.x, p.y)]
        group.append("</g>")
        parts.append("".join(group) + "</g>")
    legend = _legend([(s.name, s.color, s.dashed and not s.points) for s in series])
    return _frame(title, "".join(parts), legend, caption)


def grouped_bars(
    categories: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[float | None], Sequence[str]]],
    title: str,
    ylabel: str,
    caption: str = "",
) -> str:
    """Vertical bars, one group per category and one bar per series ``(name, colour, values,
    tips)`` in it; a missing value (``None``) draws no bar.

    Example:
        >>> svg = grouped_bars(["relu1"], [("l1", color(1), [0.5], ["l1, relu1: 0.5"])], "sparsity", "fraction")
        >>> svg.count("<rect class=\\"bar\\""), "<title>l1, relu1: 0.5</title>" in svg
        (1, True)
    """
    values = [v for _, _, vals, _ in series for v in vals if v is not None and math.isfinite(v)]
    top = max(values + [0.0]) or 1.0
    ys = _Scale(0.0, top * 1.08, Axis(ylabel), HEIGHT - MARGIN[3], MARGIN[2])
    left, right = MARGIN[0], WIDTH - MARGIN[1]
    xs = _Scale(0.0, max(len(categories), 1), Axis(""), left, right)
    parts = _axes(xs, ys, "", ylabel, x_ticks=False)
    slot = (right - left) / max(len(categories), 1)
    width = slot * 0.8 / max(len(series), 1)
    for j, category in enumerate(categories):
        parts.append(f'<text class="tick" x="{left + (j + 0.5) * slot:.1f}" y="{HEIGHT - MARGIN[3] + 16}" '
                     f'text-anchor="middle">{esc(category)}</text>')
    for i, (name, fill, vals, tips) in enumerate(series):
        group = [f'<g class="series" data-series="{i}">']
        for j, value in enumerate(vals):
            if value is None or not math.isfinite(value):
                continue
            bx, by = left + j * slot + slot * 0.1 + i * width, ys(value)
            group.append(f'<rect class="bar" x="{bx:.1f}" y="{by:.1f}" width="{width:.1f}" '
                         f'height="{ys(0.0) - by:.1f}" fill="{fill}"><title>{esc(tips[j])}</title></rect>')
        parts.append("".join(group) + "</g>")
    return _frame(title, "".join(parts), _legend([(name, fill, False) for name, fill, _, _ in series]), caption)


def stacked_bars(
    categories: Sequence[str],
    parts: Sequence[tuple[str, str, Sequence[float]]],
    title: str,
    xlabel: str,
    caption: str = "",
) -> str:
    """Horizontal stacked bars: one bar per category, one segment per part ``(name, colour,
    values)``; each segment's tip names its category, part, value and share of the bar.

    Example:
        >>> svg = stacked_bars(["none"], [("input", color(0), [1.0]), ("spikes", color(1), [3.0])], "energy", "J")
        >>> '<title>none: spikes 3 (75 %)</title>' in svg
        True
    """
    totals = [sum(vals[j] for _, _, vals in parts) for j in range(len(categories))]
    label_width = min(300, 12 + 7.6 * max([len(c) for c in categories] + [4]))
    height = max(200, MARGIN[2] + MARGIN[3] + 34 * len(categories))
    left, right = label_width, WIDTH - MARGIN[1]
    xs = _Scale(0.0, (max(totals + [0.0]) or 1.0) * 1.05, Axis(xlabel), left, right)
    body = [f'<rect class="plot" x="{left}" y="{MARGIN[2]}" width="{right - left}" height="{height - MARGIN[2] - MARGIN[3]}"/>']
    for value, label in _ticks(xs):
        x = xs(value)
        body.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{MARGIN[2]}" y2="{height - MARGIN[3]}"/>'
                    f'<text class="tick" x="{x:.1f}" y="{height - MARGIN[3] + 16}" text-anchor="middle">{esc(label)}</text>')
    body.append(f'<text class="label" x="{(left + right) / 2}" y="{height - 12}" text-anchor="middle">{esc(xlabel)}</text>')
    row = (height - MARGIN[2] - MARGIN[3]) / max(len(categories), 1)
    for j, category in enumerate(categories):
        body.append(f'<text class="tick" x="{left - 6}" y="{MARGIN[2] + (j + 0.5) * row + 4:.1f}" text-anchor="end">'
                    f'{esc(category)}</text>')
    for i, (name, fill, vals) in enumerate(parts):
        group = [f'<g class="series" data-series="{i}">']
        for j, value in enumerate(vals):
            start = sum(parts[k][2][j] for k in range(i))
            x0, x1 = xs(start), xs(start + value)
            share = value / totals[j] * 100 if totals[j] else math.nan
            tip = esc(f"{categories[j]}: {name} {value:.3g} ({share:.3g} %)")
            group.append(f'<rect class="bar" x="{x0:.1f}" y="{MARGIN[2] + j * row + row * 0.15:.1f}" '
                         f'width="{max(x1 - x0, 0.0):.1f}" height="{row * 0.7:.1f}" fill="{fill}"><title>{tip}</title></rect>')
        body.append("".join(group) + "</g>")
    legend = _legend([(name, fill, False) for name, fill, _ in parts])
    figure = _frame(title, "".join(body), legend, caption)
    return figure.replace(f'viewBox="0 0 {WIDTH} {HEIGHT}"', f'viewBox="0 0 {WIDTH} {height:.0f}"', 1)


__all__ = ["PALETTE", "Axis", "Point", "Series", "color", "esc", "grouped_bars", "line_chart", "stacked_bars"]
