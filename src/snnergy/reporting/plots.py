"""PNG plots of results: accuracy against energy, accuracy against timesteps, per-layer activity.

matplotlib is imported lazily with the non-interactive Agg backend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from snnergy.reporting.filters import config_label, ok_records
import snnergy.reporting.curves as curves
from snnergy.reporting.pareto import (
    curve_points,
    dnn_fronts,
    dnn_stats,
    layer_stats,
    overall_snn_front,
    snn_fronts,
    snn_points,
)
from snnergy.reporting.report import layer_rows


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    """Lays out, writes (PNG, 120 dpi) and closes ``fig``; returns ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path


def _colors(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One colour per configuration label (tab10, tab20 beyond ten), in record order."""
    plt = _pyplot()
    names = list(dict.fromkeys(config_label(r) for r in records))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


T_TICKS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
"""Integer ticks of the t axes (log scale): not only powers of two, as every t is simulated."""


def _t_axis(ax: Any, largest: int) -> None:
    """A log2 t axis with integer tick labels up to ``largest``."""
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator([t for t in T_TICKS if t <= max(largest, 1)]))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())


def plot_accuracy_energy(records: Sequence[Mapping[str, Any]], path: Path, profile: str) -> Path:
    """Two panels: DNN accuracy vs DNN energy; SNN accuracy vs SNN energy over T (one curve per config)."""
    plt = _pyplot()
    colors = _colors(records)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in records:
        left.scatter(r["dnn"]["energy_j"][profile], r["dnn"]["accuracy"], color=colors[config_label(r)])
    for r in records:
        color = colors[config_label(r)]
        snn = r.get("snn")
        if snn and profile in snn["energy_j"]:
            right.plot(snn["energy_j"][profile], snn["accuracy"], "o-", color=color, ms=3, label=config_label(r))
    energies = [r["dnn"]["energy_j"][profile] for r in records if r["dnn"]["energy_j"][profile] > 0]
    wide = bool(energies) and max(energies) > 10 * min(energies)  # a log axis only over a decade or more
    left.set(xscale="log" if wide else "linear", xlabel=f"DNN energy per sample (J, {profile})", ylabel="accuracy",
             title="DNN (zero-skipping)")
    if not wide:
        left.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
    left.margins(x=0.15, y=0.12)
    right.set(xscale="log", xlabel=f"SNN energy per sample (J, {profile})", ylabel="accuracy", title="SNN (points: increasing T)")
    right.legend(fontsize=7, ncol=2 if len(colors) > 8 else 1)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()  # the final layout first: labels are placed on the points' final positions
    place_labels(left, [(r["dnn"]["energy_j"][profile], r["dnn"]["accuracy"]) for r in records],
                 [config_label(r) for r in records])
    return _save(fig, path)


LABEL_OFFSETS = tuple((dx, dy) for dy in (3, -11, 12, -20, 21, -29, 30, -38) for dx in (5, -5))
"""Candidate label positions around a point, in points (x, y of the text's corner), nearest first;
a negative dx puts the text left of the point."""


def place_labels(ax: Any, points: Sequence[tuple[float, float]], labels: Sequence[str], fontsize: float = 7) -> list[Any]:
    """Annotates each point with its label at the first of :data:`LABEL_OFFSETS` whose text box
    overlaps no label placed before it, covers no point's marker, and lies nearer its own point than
    any other (so that no label reads as another point's); where no candidate is free, the one
    breaking the fewest of these. Points are labelled from the lowest y up. The labels stay out of
    the figure's layout (a later ``tight_layout`` leaves the axes, and so the boxes, where they
    are). Returns the annotations, in the order of ``points``.
    """
    renderer = ax.figure.canvas.get_renderer()
    markers = [tuple(ax.transData.transform(p)) for p in points]
    radius = 4 * ax.figure.dpi / 72  # a default scatter marker's radius (3 pt) and a point to spare, in pixels

    def distance(box: Any, at: tuple[float, float]) -> float:
        return math.hypot(max(box.x0 - at[0], 0.0, at[0] - box.x1), max(box.y0 - at[1], 0.0, at[1] - box.y1))

    taken: list[Any] = []
    placed: dict[int, Any] = {}
    for i in sorted(range(len(points)), key=lambda k: (points[k][1], points[k][0])):
        best: tuple[tuple[int, int, int], Any, Any] | None = None
        for dx, dy in LABEL_OFFSETS:
            note = ax.annotate(labels[i], points[i], xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                               ha="left" if dx > 0 else "right", va="bottom" if dy > 0 else "top")
            note.set_in_layout(False)
            box = note.get_window_extent(renderer)
            own = distance(box, markers[i])
            others = [distance(box, m) for k, m in enumerate(markers) if k != i]
            faults = (sum(box.overlaps(other) for other in taken), sum(d < radius for d in others),
                      sum(d < own for d in others))
            if best is None or faults < best[0]:
                if best is not None:
                    best[1].remove()
                best = (faults, note, box)
            else:
                note.remove()
            if faults == (0, 0, 0):
                break
        assert best is not None  # LABEL_OFFSETS is not empty
        taken.append(best[2])
        placed[i] = best[1]
    return [placed[i] for i in range(len(points))]


def plot_accuracy_timesteps(records: Sequence[Mapping[str, Any]], path: Path, target: float | None = None) -> Path:
    """SNN accuracy against t, one line per configuration over its curve at every integer t
    (``snn.curve``; the listed T, with markers, for records without one), with its DNN accuracy
    dashed and the iso-accuracy target dotted."""
    plt = _pyplot()
    colors = _colors(records)
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    largest = 1
    for r in records:
        snn = r.get("snn")
        if not snn:
            continue
        color = colors[config_label(r)]
        curve = curves.snn_curve(snn, "")
        ax.plot(curve.timesteps, curve.accuracy, "-" if curve.every_t else "o-", ms=3, lw=1.2, color=color,
                label=config_label(r))
        ax.axhline(r["dnn"]["accuracy"], color=color, ls="--", lw=0.6)
        largest = max(largest, curve.timesteps[-1])
    if target is not None:
        ax.axhline(target, color="black", ls=":", lw=0.9, label=f"target {target:.3f}")
    _t_axis(ax, largest)
    ax.set(xlabel="timesteps t (accuracy after every integer t)", ylabel="SNN accuracy",
           title="Accuracy vs t (dashed: each DNN)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", ncol=2 if len(colors) > 8 else 1)
    return _save(fig, path)


def plot_layers(records: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Per-layer DNN sparsity and SNN spike rate, grouped bars per configuration."""
    return plot_layer_rows(layer_rows(records), path)


def plot_layer_rows(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Grouped bars of per-layer ``sparsity`` and ``spike_rate`` rows, one group per ``configuration``."""
    plt = _pyplot()
    layers = list(dict.fromkeys(row["layer"] for row in rows))
    configs = list(dict.fromkeys(row["configuration"] for row in rows))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(6.5, 1.2 * len(layers) * max(1, len(configs)) / 3), 6))
    width = 0.8 / max(len(configs), 1)
    for j, cfg in enumerate(configs):
        by_layer = {row["layer"]: row for row in rows if row["configuration"] == cfg}
        xs = [i + j * width for i in range(len(layers))]
        top.bar(xs, [by_layer.get(lay, {}).get("sparsity") or 0 for lay in layers], width, label=cfg)
        bottom.bar(xs, [by_layer.get(lay, {}).get("spike_rate") or 0 for lay in layers], width, label=cfg)
    for ax, what in ((top, "DNN sparsity"), (bottom, "SNN spike rate (spikes/neuron/step)")):
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(layers))], layers)
        ax.set_ylabel(what)
        ax.grid(alpha=0.3, axis="y")
    top.legend(fontsize=7, ncol=3, loc="lower center", bbox_to_anchor=(0.5, 1.0))  # above the bars, never on them
    return _save(fig, path)


def write_plots(folder: Path, records: Sequence[Mapping[str, Any]], profile: str, target: float | None = None) -> list[Path]:
    """Writes every plot for the finished ``records`` into ``folder`` (``target``: the iso-accuracy
    target drawn on the accuracy-vs-t plot); returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    finished = ok_records(records)
    paths = [
        plot_accuracy_energy(finished, folder / "accuracy_energy.png", profile),
        plot_layers(finished, folder / "layers.png"),
    ]
    if any(r.get("snn") for r in finished):
        paths.insert(1, plot_accuracy_timesteps(finished, folder / "accuracy_timesteps.png", target))
    return paths


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)


def plot_pareto(groups: Sequence[Any], path: Path, profile: str, target: float | None = None) -> Path:
    """Two panels, one colour per family (:attr:`~snnergy.reporting.pareto.Group.family`: model
    axes and regularizer): accuracy vs SNN energy over every (configuration, T) point, and DNN
    accuracy vs effective MACs; each family's Pareto front drawn as a line, the front over every
    configuration dashed black."""
    plt = _pyplot()
    names = list(dict.fromkeys(g.family for g in groups))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    colors = {name: cmap(i % cmap.N) for i, name in enumerate(names)}
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    overall = overall_snn_front(groups, profile)
    if overall:
        left.plot([p.energy_j for p in overall], [p.accuracy for p in overall], "k--", lw=1, label="front over all")
    for reg, front in snn_fronts(groups, profile).items():
        points = [p for g in groups if g.family == reg for p in snn_points(g, profile)]
        left.scatter([p.energy_j for p in points], [p.accuracy for p in points], color=colors[reg], s=8, alpha=0.3)
        left.plot([p.energy_j for p in front], [p.accuracy for p in front], "o-", color=colors[reg], ms=4, label=reg)
    for reg, front in dnn_fronts(groups, profile).items():
        stats = [dnn_stats(g, profile) for g in groups if g.family == reg]
        right.scatter([s["macs_effective"][0] for s in stats], [s["accuracy"][0] for s in stats], color=colors[reg], s=8, alpha=0.3)
        fstats = [dnn_stats(g, profile) for g in front]
        right.plot([s["macs_effective"][0] for s in fstats], [s["accuracy"][0] for s in fstats], "o-", color=colors[reg], ms=4, label=reg)
    left.set(xscale="log", xlabel=f"SNN energy per sample (J, {profile})", ylabel="accuracy (seed mean)", title="SNN: (configuration, T) points")
    right.set(xscale="log", xlabel="DNN effective MACs per sample", ylabel="accuracy (seed mean)", title="DNN (zero-skipping)")
    for ax in (left, right):
        if target is not None:
            ax.axhline(target, color="grey", ls=":", lw=0.8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_front_timesteps(groups: Sequence[Any], path: Path, profile: str, target: float | None = None) -> Path:
    """SNN accuracy vs t (mean ± std over seeds, at every integer t of the runs' curves) for the
    configurations on an SNN Pareto front."""
    plt = _pyplot()
    members = list(dict.fromkeys(p.group for front in snn_fronts(groups, profile).values() for p in front))
    fig, ax = plt.subplots(figsize=(7.5 + (4.5 if len(members) > 6 else 0), 4.6))
    cmap = plt.get_cmap("tab10" if len(members) <= 10 else "tab20")
    styles = ("-", "--", "-.", ":")  # with the colours, tells apart up to 80 lines
    largest = 1
    for i, g in enumerate(members):
        points = curve_points(g, profile)
        if not points:
            continue
        largest = max(largest, points[-1].timesteps)
        ts = [p.timesteps for p in points]
        acc = [p.accuracy for p in points]
        std = [p.accuracy_std for p in points]
        (line,) = ax.plot(ts, acc, styles[i // cmap.N % len(styles)], color=cmap(i % cmap.N), lw=1.2, label=g.label)
        ax.fill_between(ts, [a - s for a, s in zip(acc, std)], [a + s for a, s in zip(acc, std)], color=line.get_color(), alpha=0.15)
    if target is not None:
        ax.axhline(target, color="grey", ls=":", lw=0.8, label="target")
    _t_axis(ax, largest)
    ax.set(xlabel="timesteps t (accuracy after every integer t)", ylabel="SNN accuracy (mean ± std)",
           title="Accuracy vs t of the fronts' members")
    ax.grid(alpha=0.3)
    if len(members) > 6:  # beside the axes, not over the curves
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    else:
        ax.legend(fontsize=6)
    return _save(fig, path)


def write_sweep_plots(folder: Path, groups: Sequence[Any], profile: str, target: float | None, name: str) -> list[Path]:
    """The sweep report's plots of one (dataset, model) section; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    slug = _slug(name)
    paths = [plot_pareto(groups, folder / f"pareto_{slug}.png", profile, target)]
    if any(r.get("snn") for g in groups for r in g.records):
        paths.append(plot_front_timesteps(groups, folder / f"timesteps_{slug}.png", profile, target))
    members = list(dict.fromkeys(p.group for front in snn_fronts(groups, profile).values() for p in front)) or list(groups)
    rows = [row for g in members for row in layer_stats(g)]
    paths.append(plot_layer_rows(rows, folder / f"layers_{slug}.png"))
    return paths
