"""The one report writer of both drivers: ``report.md`` with its plots, and ``report.html``, from
result records.

:func:`write_report` writes ``OUT/report.md`` in one of the :data:`REPORT_STYLES`, and beside it
``OUT/report.html``: the same text as one self-contained page (:mod:`snnergy.reporting.html`) with
sortable tables and, in place of each PNG plot, interactive SVG charts of the same data
(:mod:`snnergy.reporting.figures`):

- ``compare`` (``snnergy compare``): one row per configuration and the verdict "which regularizer
  reaches the unregularized accuracy minus 1 pp for the least energy", with
  ``plots/accuracy_energy.png``, ``plots/accuracy_timesteps.png`` and ``plots/layers.png``;
- ``sweep`` (``snnergy sweep``, ``snnergy report``): per (dataset, model) the configurations as
  mean ± std over seeds, Pareto fronts and the iso-accuracy verdict, with ``plots/pareto_*.png``,
  ``plots/timesteps_*.png``, ``plots/layers_*.png``, ``summary.csv`` and ``layers.csv``.

It sits on top of the other reporting modules (data flows one way: tables -> filters -> curves ->
report/pareto -> plots/sweep_report -> figures (with svg) -> html -> writer) and nothing in
``reporting`` imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from snnergy.checkpoints import atomic_write
from snnergy.errors import ConfigError
from snnergy.registry import Registry
from snnergy.reporting.figures import compare_figures, sweep_figures
from snnergy.reporting.filters import ok_records
from snnergy.reporting.html import render_html
from snnergy.reporting.pareto import configuration_rows, layer_stats, sections, target_accuracy
from snnergy.reporting.plots import write_plots, write_sweep_plots
from snnergy.reporting.report import reference_target, report_markdown
from snnergy.reporting.sweep_report import sweep_report_markdown
from snnergy.reporting.tables import DEFAULT_PROFILE, write_csv


class Rendered(NamedTuple):
    """A style's report: the ``report.md`` text, and the HTML charts replacing each of its PNG
    plots (keyed by the plot's path as ``report.md`` writes it)."""

    markdown: str
    figures: dict[str, list[str]]


ReportStyle = Callable[[Path, Sequence[Mapping[str, Any]], str, float, "float | None"], Rendered]
"""``(out, records, profile, drop, target) -> Rendered``; writes its plots and tables into ``out``."""

REPORT_STYLES: Registry[ReportStyle] = Registry("report style")


@REPORT_STYLES.register("compare")
def compare_style(out: Path, records: Sequence[Mapping[str, Any]], profile: str, drop: float, target: float | None) -> str:
    """One row per configuration and run; plots of accuracy against energy and timesteps, and layers."""
    goal = reference_target(records, drop, target)[0] if ok_records(records) else None
    plots = write_plots(out / "plots", records, profile, goal) if ok_records(records) else []
    paths = [str(Path(p).relative_to(out)) for p in plots]
    figures = compare_figures(records, profile, goal, paths) if paths else {}
    return Rendered(report_markdown(records, profile, drop, paths, target), figures)


@REPORT_STYLES.register("sweep")
def sweep_style(out: Path, records: Sequence[Mapping[str, Any]], profile: str, drop: float, target: float | None) -> str:
    """Per (dataset, model): configurations over seeds, Pareto fronts, iso-accuracy; their plots,
    ``summary.csv`` (one row per configuration, mean and std columns) and ``layers.csv``."""
    plots: dict[tuple[str, str], list[str]] = {}
    figures: dict[str, list[str]] = {}
    summary: list[dict[str, Any]] = []
    layers: list[dict[str, Any]] = []
    for dataset, model, groups in sections(records):
        goal, _ = target_accuracy(groups, drop, target)
        paths = write_sweep_plots(out / "plots", groups, profile, goal, f"{dataset}_{model}")
        plots[(dataset, model)] = [str(Path(p).relative_to(out)) for p in paths]
        figures.update(sweep_figures(groups, profile, goal, plots[(dataset, model)]))
        summary += configuration_rows(groups, profile, goal)
        layers += [{"dataset": dataset, "model": model, **row} for g in groups for row in layer_stats(g)]
    if summary:
        write_csv(out / "summary.csv", summary)
        write_csv(out / "layers.csv", layers)
    return Rendered(sweep_report_markdown(records, profile, drop, target, plots), figures)


def write_report(
    out: str | Path,
    records: Sequence[Mapping[str, Any]],
    profile: str = DEFAULT_PROFILE,
    drop: float = 0.01,
    target: float | None = None,
    style: str = "compare",
) -> Path:
    """Writes ``out/report.md``, ``out/report.html`` (the same report as one self-contained page)
    and the style's plots and tables; returns the Markdown report's path.

    Args:
        out: The run folder.
        records: Result records, failed ones (with ``error``) included.
        profile: Energy profile of every energy column; must be among the stored ones.
        drop: Target = unregularized DNN accuracy minus ``drop``.
        target: An absolute target accuracy instead.
        style: A name in :data:`REPORT_STYLES` (``compare`` or ``sweep``).

    Raises:
        ConfigError: An unknown style, or a profile the records do not hold.

    Example:
        >>> import tempfile
        >>> failed = {"config": {"dataset": "d", "model": "m", "regularizer": "l1", "strength": 9.0, "seed": 0},
        ...           "error": "TrainingError: diverged"}
        >>> path = write_report(tempfile.mkdtemp(), [failed], style="sweep")
        >>> "## Failed configurations" in path.read_text(), path.with_name("report.html").is_file()
        (True, True)
    """
    render = REPORT_STYLES.get(style)
    stored = sorted({name for r in ok_records(records) for name in r["dnn"].get("energy_j", {})})
    if stored and profile not in stored:
        raise ConfigError(f"energy profile '{profile}' is not in the stored results; stored: {', '.join(stored)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rendered = render(out, records, profile, drop, target)
    path = out / "report.md"
    atomic_write(path, lambda tmp: tmp.write_text(rendered.markdown, encoding="utf-8"))
    page = render_html(rendered.markdown, rendered.figures)
    atomic_write(out / "report.html", lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return path


__all__ = ["REPORT_STYLES", "Rendered", "compare_style", "sweep_style", "write_report"]
