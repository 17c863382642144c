"""SVG charts: positions on log and linear axes, bar lengths, escaping."""

from __future__ import annotations

import re

import pytest

from snnergy.reporting.svg import Axis, Point, Series, color, grouped_bars, line_chart, linear_ticks, log_ticks, stacked_bars


def _circles(svg: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in re.findall(r'<circle class="pt" cx="([\d.]+)" cy="([\d.]+)"', svg)]


def test_log_axis_puts_a_decade_at_equal_steps() -> None:
    # x = 1, 10, 100 on a log10 axis: log10 x = 0, 1, 2, so 10 sits halfway between 1 and 100;
    # y = 0, 0.5, 1 on a linear axis: 0.5 sits halfway too (SVG y grows downwards)
    points = tuple(Point(x, y, f"p{x:g}") for x, y in ((1.0, 0.0), (10.0, 0.5), (100.0, 1.0)))
    svg = line_chart([Series("s", color(0), points)], "t", Axis("x", log=True), Axis("y"))
    (x0, y0), (x1, y1), (x2, y2) = _circles(svg)
    assert x1 - x0 == pytest.approx(x2 - x1, abs=0.15) and x2 > x0
    assert y0 - y1 == pytest.approx(y1 - y2, abs=0.15) and y0 > y2


def test_points_a_log_axis_cannot_show_are_left_out() -> None:
    points = (Point(0.0, 0.5, "zero"), Point(1.0, 0.5, "one"))
    svg = line_chart([Series("s", color(0), points)], "t", Axis("x", log=True), Axis("y"))
    assert "<title>one</title>" in svg and "<title>zero</title>" not in svg


def test_stacked_segments_are_proportional() -> None:
    # one bar of 1 + 3: the second segment is 3 times as long as the first and starts where it ends
    svg = stacked_bars(["c"], [("a", color(0), [1.0]), ("b", color(1), [3.0])], "t", "J")
    (xa, wa), (xb, wb) = [(float(x), float(w)) for x, w in re.findall(r'<rect class="bar" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', svg)]
    assert wb == pytest.approx(3 * wa, rel=0.01) and xb == pytest.approx(xa + wa, abs=0.1)


def test_missing_bars_are_not_drawn_and_text_is_escaped() -> None:
    svg = grouped_bars(["l<1>", "l2"], [("cfg & co", color(0), [0.5, None], ["tip <a>", "none"])], "t", "y")
    assert svg.count('<rect class="bar"') == 1
    assert "l&lt;1&gt;" in svg and "cfg &amp; co" in svg and "<title>tip &lt;a&gt;</title>" in svg and "<a>" not in svg


def test_ticks() -> None:
    # 6 ticks wanted: raw step 0.06 / 5 = 0.012, rounded up to 2 x 0.01 = 0.02
    assert linear_ticks(0.94, 1.0) == [0.94, 0.96, 0.98, 1.0]
    assert log_ticks(2e-8, 4e-6) == [1e-07, 1e-06]  # over two decades: powers of ten only
