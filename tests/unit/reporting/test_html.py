"""report.html: the same verdict and tables as report.md, sortable tables, charts whose points name
their configuration and T, nothing fetched from outside, every text escaped."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from snnergy.reporting import write_report
from snnergy.reporting.filters import config_name
from snnergy.reporting.html import body_html, inline, render_html


def record(reg: str, strength: float, acc: list[float], energy: list[float], dataset: str = "digits") -> dict:
    """A finished record with an every-t curve (t = 1..4, listed T = 2, 4) and an energy breakdown:
    input layer 1e-8 J at every t, neuron updates free, the spiking layers the rest."""
    listed = [energy[1], energy[3]]
    return {
        "config": {"dataset": dataset, "model": "lenet", "regularizer": reg, "strength": strength, "seed": 0},
        "dnn": {"accuracy": 0.97, "sparsity": {"relu1": 0.5, "relu2": 0.6}, "macs_dense": 100.0, "macs_effective": 50.0,
                "energy_j": {"p": 2e-7}},
        "snn": {"timesteps": [2, 4], "accuracy": [acc[1], acc[3]], "synops": [10.0, 20.0], "input_macs": [5.0, 5.0],
                "neuron_updates": [8.0, 16.0], "energy_j": {"p": listed},
                "energy_breakdown_j": {"p": {"input_layer": [1e-8, 1e-8], "spiking_layers": [e - 1e-8 for e in listed],
                                             "neuron_updates": [0.0, 0.0]}},
                "spike_rate": {"relu1": 0.1, "relu2": 0.05}, "correlation": {"relu1": 0.99, "relu2": 0.98},
                "curve": {"timesteps": [1, 2, 3, 4], "accuracy": acc, "synops": [5.0, 10.0, 15.0, 20.0],
                          "energy_j": {"p": energy}}},
    }


RECORDS = [
    record("none", 0.0, [0.5, 0.9, 0.96, 0.97], [0.5e-7, 1e-7, 1.5e-7, 2e-7]),
    record("l1", 0.1, [0.6, 0.965, 0.97, 0.97], [0.3e-7, 0.6e-7, 0.9e-7, 1.2e-7]),
]


def _text(fragment: str) -> str:
    """The visible text of an HTML fragment, whitespace collapsed."""
    inline_free = re.sub(r"</?(?:strong|em|code)>", "", fragment)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", inline_free)).split())


def _markdown_text(lines: list[str]) -> str:
    """Markdown lines as read: emphasis and code marks dropped, whitespace collapsed."""
    return " ".join(" ".join(lines).replace("**", "").replace("`", "").split())


def _section(markdown: str, heading: str) -> list[str]:
    """The lines after ``heading`` up to the next heading."""
    lines = markdown.splitlines()
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("#")), len(lines))
    return [line for line in lines[start:end] if line.strip()]


@pytest.fixture(scope="module")
def compare_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    out = tmp_path_factory.mktemp("compare")
    md = write_report(out, RECORDS, profile="p").read_text()
    return md, (out / "report.html").read_text()


def test_verdict_is_report_md_verdict(compare_report: tuple[str, str]) -> None:
    md, page = compare_report
    verdict = re.search(r'<section class="verdict" id="verdict">(.*?)</section>', page, re.S)
    assert verdict is not None
    # the verdict section holds its heading, then report.md's verdict lines, word for word
    expected = "Which regularizer? " + _markdown_text([line.removeprefix("- ") for line in _section(md, "## Which regularizer?")])
    assert _text(verdict.group(1)) == expected
    # target 0.97 - 0.01 = 0.96: l1 reaches it at t = 2 (0.965), 0.6e-7 J; none at t = 3, 1.5e-7 J: 2.5x less energy
    assert "<strong>2.5x less energy</strong>" in verdict.group(1)
    assert page.index('id="verdict"') < page.index("<table")  # the verdict comes before every table


def test_every_table_is_sortable_with_report_md_cells(compare_report: tuple[str, str]) -> None:
    md, page = compare_report
    tables = re.findall(r'<table class="sortable">(.*?)</table>', page, re.S)
    md_tables = [line for line in md.splitlines() if line.startswith("| ---")]
    assert len(tables) == len(md_tables) == 3  # configurations, energy breakdown, layers (no memory-aware profile)
    md_blocks = re.findall(r"((?:^\|.*\n)+)", md, re.M)
    for block, table in zip(md_blocks, tables):
        rows = [line for line in block.splitlines() if not line.startswith("| ---")]
        cells = [[c.strip() for c in row.strip().strip("|").split(" | ")] for row in rows]
        html_cells = [[_text(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr)]
                      for tr in re.findall(r"<tr>(.*?)</tr>", table)]
        assert html_cells == [[_markdown_text([c]) for c in row] for row in cells]
    assert 'sortBy(' in page and "aria-sort" in page  # the inline script sorts on a header click


def test_points_name_configuration_and_t(compare_report: tuple[str, str]) -> None:
    _, page = compare_report
    for r in RECORDS:
        name = config_name(r)
        assert f"<title>DNN {name}: accuracy 0.9700, 2e-07 J/sample" in page
        for t, e in zip(r["snn"]["curve"]["timesteps"], r["snn"]["curve"]["energy_j"]["p"]):
            assert f"<title>SNN {html.escape(name)} at T = {t}: accuracy " in page and f"{e:.3g} J/sample" in page
    # every PNG plot of report.md is replaced by charts: no image or link to a PNG is left
    assert ".png" not in page.replace("report.md", "") and page.count('<figure class="chart">') >= 6


def test_page_fetches_nothing(compare_report: tuple[str, str]) -> None:
    _, page = compare_report
    assert not re.search(r"https?://|\bsrc=|<link|@import|url\(", page)
    assert re.findall(r'href="([^"]*)"', page) and all(h.startswith("#") for h in re.findall(r'href="([^"]*)"', page))


def test_text_from_configs_is_escaped(tmp_path: Path) -> None:
    evil = '<img src=x onerror="alert(1)">'
    records = [record("none", 0.0, [0.5, 0.9, 0.96, 0.97], [0.5e-7, 1e-7, 1.5e-7, 2e-7], dataset=evil)]
    write_report(tmp_path, records, profile="p")
    page = (tmp_path / "report.html").read_text()
    assert "<img" not in page and html.escape(evil) in page
    assert inline("a <b> & `<c>`") == "a &lt;b&gt; &amp; <code>&lt;c&gt;</code>"


def test_sweep_report_html_has_a_verdict_per_section(tmp_path: Path) -> None:
    records = RECORDS + [dict(r, config={**r["config"], "model": "vgg"}) for r in RECORDS]
    md = write_report(tmp_path, records, profile="p", style="sweep").read_text()
    page = (tmp_path / "report.html").read_text()
    sections = re.findall(r'<section class="verdict" id="(verdict(?:-2)?)">(.*?)</section>', page, re.S)
    assert [s for s, _ in sections] == ["verdict", "verdict-2"]
    lines = md.splitlines()
    heads = [i for i, line in enumerate(lines) if line == "### Iso-accuracy: which regularizer?"]
    assert len(heads) == 2
    for (_, body), start in zip(sections, heads):
        end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("#"))
        sentences = [line.removeprefix("- ") for line in lines[start + 1:end] if line.strip() and not line.startswith("|")]
        assert len(sentences) >= 3 and all(_markdown_text([s]) in _text(body) for s in sentences)
    # the Pareto chart of each section and its zoom (0.97 >= target 0.96 - 3 pp) show the listed T = 2, 4 only;
    # the accuracy-vs-t chart of the fronts' members shows every t
    assert page.count("<title>SNN l1 0.1 at T = 4: accuracy 0.9700") == 4 and "SNN l1 0.1 at T = 1:" not in page
    assert "<title>SNN l1 0.1 at t = 1: accuracy 0.6000" in page


def test_unknown_images_stay_links_and_headings_get_anchors() -> None:
    body = body_html("# R\n\n## A b\n\n![x](plots/x.png)\n\n## A b")
    assert '<a href="plots/x.png">x</a>' in body and 'id="a-b"' in body and 'id="a-b-"' in body
    assert render_html("# R\n\n## A b").count('<a href="#a-b">A b</a>') == 1  # the page's navigation
