"""The interactive charts of ``report.html``, from the data the PNG plots and ``report.md`` use.

Each PNG plot of a report has SVG counterparts (:mod:`snnergy.reporting.svg`), built from the same
functions as the plot and the Markdown tables: a comparison's records
(:func:`~snnergy.reporting.curves.snn_curve`, :func:`~snnergy.reporting.report.layer_rows`,
:func:`~snnergy.reporting.report.breakdown_rows`), a sweep section's configurations
(:func:`~snnergy.reporting.pareto.snn_points`, :func:`~snnergy.reporting.pareto.snn_fronts`,
:func:`~snnergy.reporting.pareto.curve_points`, :func:`~snnergy.reporting.pareto.layer_stats`,
:func:`~snnergy.reporting.sweep_report.target_breakdown_rows`). Every point names its
configuration and T on hover.

- *Accuracy vs energy*: DNN points (squares) and SNN points (circles: a comparison's every-t curve,
  a sweep's seed means at the listed T) on one energy axis, the SNN Pareto front dashed; a second
  chart zooms on the points within :data:`ZOOM` of the target.
- *Accuracy vs t*: each SNN's curve (a sweep: the fronts' members, ± std bands), its DNN's accuracy
  dashed (a comparison), the target dotted; zoomed likewise.
- *Layers*: per-layer DNN sparsity and SNN spike rate, grouped bars (tips add the correlation).
- *Energy breakdown*: each SNN's energy at its smallest t reaching the target, stacked by part.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import snnergy.reporting.curves as curves
from snnergy.reporting.filters import config_label, config_name, ok_records, usable_records
from snnergy.reporting.pareto import (
    Group,
    curve_points,
    dnn_stats,
    layer_stats,
    overall_snn_front,
    pareto_front,
    snn_fronts,
    snn_points,
)
from snnergy.reporting.plots import T_TICKS
from snnergy.reporting.report import breakdown_rows, layer_rows
from snnergy.reporting.svg import Axis, Point, Series, color, grouped_bars, line_chart, stacked_bars
from snnergy.reporting.sweep_report import target_breakdown_rows

ZOOM = 0.03
"""The zoomed charts show accuracies from the target minus this (3 pp) up."""

FRONT_COLOR = "#111111"

PLOT_KINDS = {"accuracy_energy": "pareto", "pareto": "pareto", "accuracy_timesteps": "timesteps",
              "timesteps": "timesteps", "layers": "layers"}
"""PNG plot name (a sweep's without its ``_<dataset>_<model>`` suffix) -> the kind of chart replacing it."""

PARTS = (("input_layer", "input layer"), ("spiking_layers", "spiking layers"), ("neuron_updates", "neuron updates"),
         ("memory", "memory"))


def plot_kind(path: str) -> str | None:
    """The chart kind replacing the PNG plot at ``path`` (``None``: none).

    Example:
        >>> plot_kind("plots/accuracy_energy.png"), plot_kind("plots/pareto_digits_lenet.png"), plot_kind("x.png")
        ('pareto', 'pareto', None)
    """
    stem = Path(path).stem
    return PLOT_KINDS.get(stem, PLOT_KINDS.get(stem.split("_")[0]) if "_" in stem else None)


def zoomed(series: Sequence[Series], floor: float) -> list[Series]:
    """The series with only their points, path and band at accuracy ``>= floor``.

    Example:
        >>> s = Series("a", "#000", (Point(1.0, 0.1, "t1"), Point(2.0, 0.9, "t2")), ((1.0, 0.1), (2.0, 0.9)))
        >>> [p.tip for p in zoomed([s], 0.5)[0].points], zoomed([s], 0.5)[0].path
        (['t2'], ((2.0, 0.9),))
    """
    return [Series(s.name, s.color, tuple(p for p in s.points if p.y >= floor),
                   tuple(q for q in s.path if q[1] >= floor), s.dashed,
                   tuple(b for b in s.band if b[1] >= floor), s.level if s.level is not None and s.level >= floor else None)
            for s in series]


def _with_zoom(series: list[Series], title: str, x: Axis, y: Axis, target: float | None, caption: str) -> list[str]:
    """The chart of every point, then (with a target) the same zoomed on the target's neighbourhood."""
    guides = [(target, f"target {target:.4f}")] if target is not None else []
    charts = [line_chart(series, title, x, y, guides, caption)]
    if target is not None:
        near = zoomed(series, target - ZOOM)
        if any(s.points for s in near):
            charts.append(line_chart(near, f"{title}, near the target", x, y, guides,
                                     f"The same, at accuracies from the target minus {ZOOM * 100:g} pp up."))
    return charts


def _energy_axis(profile: str) -> Axis:
    return Axis(f"energy per sample (J, {profile})", log=True)


def _t_axis() -> Axis:
    return Axis("timesteps t", log=True, base=2.0, ticks=tuple(float(t) for t in T_TICKS))


def _colors(names: Sequence[str]) -> dict[str, str]:
    return {name: color(i) for i, name in enumerate(dict.fromkeys(names))}


def compare_pareto(records: Sequence[Mapping[str, Any]], profile: str, target: float | None) -> list[str]:
    """Accuracy vs energy of a comparison: each DNN, and each SNN at every t of its curve, with the
    front of the (non-collapsed) SNN points."""
    finished = ok_records(records)
    colors = _colors([config_label(r) for r in finished])
    usable = {id(r) for r in usable_records(records)}
    series, front = [], []
    for r in finished:
        name, dnn = config_name(r), r["dnn"]
        points, path = [], ()
        energy = dnn.get("energy_j", {}).get(profile)
        if energy is not None:
            points.append(Point(energy, dnn["accuracy"], f"DNN {name}: accuracy {dnn['accuracy']:.4f}, {energy:.3g} J/sample, "
                                f"{dnn.get('macs_effective', math.nan):.3g} effective MACs", "square"))
        snn = r.get("snn")
        if snn and profile in snn.get("energy_j", {}):
            c = curves.snn_curve(snn, profile)
            points += [Point(e, a, f"SNN {name} at T = {t}: accuracy {a:.4f}, {e:.3g} J/sample, {s:.3g} SynOps")
                       for t, a, s, e in zip(c.timesteps, c.accuracy, c.synops, c.energy_j)]
            path = tuple(zip(c.energy_j, c.accuracy))
            if id(r) in usable:
                front += [(e, a) for e, a in path]
        series.append(Series(name, colors[config_label(r)], tuple(points), path))
    keep = pareto_front([e for e, _ in front], [a for _, a in front])
    if keep:
        series.append(Series("SNN Pareto front", FRONT_COLOR, path=tuple(front[i] for i in keep), dashed=True))
    return _with_zoom(series, "Accuracy vs energy", _energy_axis(profile), Axis("accuracy"), target,
                      "Squares: each DNN; circles: each SNN at every t. Hover a point for its configuration and T. "
                      "Dashed: the Pareto front of the SNN points (collapsed networks left out).")


def compare_timesteps(records: Sequence[Mapping[str, Any]], target: float | None) -> list[str]:
    """SNN accuracy vs t of a comparison, each with its DNN's accuracy dashed."""
    finished = [r for r in ok_records(records) if r.get("snn")]
    colors = _colors([config_label(r) for r in ok_records(records)])
    series = []
    for r in finished:
        c, name = curves.snn_curve(r["snn"], ""), config_name(r)
        points = tuple(Point(float(t), a, f"SNN {name} at t = {t}: accuracy {a:.4f}, {s:.3g} SynOps")
                       for t, a, s in zip(c.timesteps, c.accuracy, c.synops))
        series.append(Series(name, colors[config_label(r)], points, tuple((float(t), a) for t, a in zip(c.timesteps, c.accuracy)),
                             level=r["dnn"]["accuracy"]))
    return _with_zoom(series, "SNN accuracy vs t", _t_axis(), Axis("SNN accuracy"), target,
                      "Accuracy after every integer t; dashed: each configuration's DNN.")


def layer_charts(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Per-layer DNN sparsity and SNN spike rate bars of ``layer_rows``-like rows."""
    layers = list(dict.fromkeys(row["layer"] for row in rows))
    configs = list(dict.fromkeys(row["configuration"] for row in rows))
    charts = []
    for key, title, unit in (("sparsity", "DNN sparsity per layer", "fraction of zeros"),
                             ("spike_rate", "SNN spike rate per layer", "spikes per neuron per step")):
        series = []
        for i, cfg in enumerate(configs):
            by_layer = {row["layer"]: row for row in rows if row["configuration"] == cfg}
            values = [by_layer.get(layer, {}).get(key) for layer in layers]
            tips = [_layer_tip(cfg, layer, by_layer.get(layer, {})) for layer in layers]
            series.append((cfg, color(i), values, tips))
        charts.append(grouped_bars(layers, series, title, unit))
    return charts


def _layer_tip(cfg: str, layer: str, row: Mapping[str, Any]) -> str:
    parts = [f"{label} {row[key]:.3g}" for key, label in (("sparsity", "sparsity"), ("spike_rate", "spike rate"),
                                                           ("correlation", "correlation"))
             if isinstance(row.get(key), (int, float)) and math.isfinite(row[key])]
    return f"{cfg}, {layer}: {', '.join(parts)}"


def breakdown_chart(rows: Sequence[Mapping[str, Any]], profile: str) -> list[str]:
    """Stacked bars of the energy breakdown rows (configuration, t, parts)."""
    if not rows:
        return []
    names = [f"{row['configuration']} (t = {row.get('timesteps', row.get('t'))})" for row in rows]
    parts = [(label, color(i), [float(row.get(key) or 0.0) for row in rows])
             for i, (key, label) in enumerate(PARTS) if any(key in row for row in rows)]
    return [stacked_bars(names, parts, "SNN energy at the smallest t reaching the target", f"J per sample ({profile})",
                         "Input layer: the analog first layer's MACs, the floor no regularizer lowers.")]


def compare_figures(records: Sequence[Mapping[str, Any]], profile: str, target: float | None,
                    plots: Sequence[str]) -> dict[str, list[str]]:
    """The charts of a comparison's report, keyed by the PNG plot (path as in ``report.md``) they
    replace; the energy breakdown joins the layers' plot."""
    by_kind = {
        "pareto": compare_pareto(records, profile, target),
        "timesteps": compare_timesteps(records, target),
        "layers": layer_charts(layer_rows(records)) + breakdown_chart(
            [r for r in breakdown_rows(records, profile, target=target) if r["at"] == "target"]
            if target is not None else [], profile),
    }
    return {p: by_kind[kind] for p in plots if (kind := plot_kind(p)) in by_kind}


def sweep_pareto(groups: Sequence[Group], profile: str, target: float | None) -> list[str]:
    """Accuracy vs energy of a sweep section (seed means): per family its configurations' DNN and
    SNN (listed T) points and its SNN front, and the front over every configuration dashed."""
    colors = _colors([g.family for g in groups])
    fronts = snn_fronts(groups, profile)
    series = []
    for family in colors:
        points = []
        for g in (g for g in groups if g.family == family):
            dnn = dnn_stats(g, profile)
            (acc, acc_std), (energy, _) = dnn["accuracy"], dnn["energy_j"]
            points.append(Point(energy, acc, f"DNN {g.label}: accuracy {acc:.4f} ± {acc_std:.2g}, {energy:.3g} J/sample "
                                f"({len(g.records)} seed(s))", "square"))
            points += [Point(p.energy_j, p.accuracy, f"SNN {g.label} at T = {p.timesteps}: accuracy {p.accuracy:.4f} ± "
                             f"{p.accuracy_std:.2g}, {p.energy_j:.3g} J/sample, {p.synops:.3g} SynOps") for p in snn_points(g, profile)]
        path = tuple((p.energy_j, p.accuracy) for p in fronts.get(family, []))
        series.append(Series(family, colors[family], tuple(points), path))
    overall = overall_snn_front(groups, profile)
    if overall:
        series.append(Series("front over all", FRONT_COLOR, path=tuple((p.energy_j, p.accuracy) for p in overall), dashed=True))
    return _with_zoom(series, "Accuracy vs energy", _energy_axis(profile), Axis("accuracy (seed mean)"), target,
                      "Squares: each DNN; circles: each SNN at each listed T. Hover a point for its configuration and T. "
                      "Lines: each family's SNN Pareto front; dashed: the front over every configuration.")


def _front_members(groups: Sequence[Group], profile: str) -> list[Group]:
    return list(dict.fromkeys(p.group for front in snn_fronts(groups, profile).values() for p in front))


def sweep_timesteps(groups: Sequence[Group], profile: str, target: float | None) -> list[str]:
    """SNN accuracy vs t (seed mean ± std, every t) of the configurations on an SNN front."""
    series = []
    for i, g in enumerate(_front_members(groups, profile)):
        points = curve_points(g, profile)
        series.append(Series(g.label, color(i), tuple(
            Point(float(p.timesteps), p.accuracy, f"SNN {g.label} at t = {p.timesteps}: accuracy {p.accuracy:.4f} ± "
                  f"{p.accuracy_std:.2g}, {p.synops:.3g} SynOps") for p in points),
            tuple((float(p.timesteps), p.accuracy) for p in points),
            band=tuple((float(p.timesteps), p.accuracy - p.accuracy_std, p.accuracy + p.accuracy_std) for p in points)))
    return _with_zoom(series, "SNN accuracy vs t (fronts' members)", _t_axis(), Axis("SNN accuracy (mean ± std)"),
                      target, "Seed mean after every integer t, shaded ± one standard deviation.")


def sweep_figures(groups: Sequence[Group], profile: str, target: float | None, plots: Sequence[str]) -> dict[str, list[str]]:
    """The charts of one sweep section, keyed by the PNG plot they replace (see :func:`compare_figures`)."""
    members = _front_members(groups, profile) or list(groups)
    by_kind = {
        "pareto": sweep_pareto(groups, profile, target),
        "timesteps": sweep_timesteps(groups, profile, target),
        "layers": layer_charts([row for g in members for row in layer_stats(g)])
        + (breakdown_chart(target_breakdown_rows(groups, profile, target), profile) if target is not None else []),
    }
    return {p: by_kind[kind] for p in plots if (kind := plot_kind(p)) in by_kind}


__all__ = ["PLOT_KINDS", "ZOOM", "compare_figures", "plot_kind", "sweep_figures", "zoomed"]
