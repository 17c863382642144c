"""PNG plots: point labels never overlap one another (issue 17: on the digits compare the DNN panel
had ``hoyer-square 0.003`` drawn over ``none``)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

import snnergy.reporting.plots as plots  # noqa: E402


def _overlapping(boxes: list[Any]) -> list[tuple[int, int]]:
    return [(i, j) for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2) if a.overlaps(b)]


def test_place_labels_separates_close_points() -> None:
    fig, ax = plt.subplots(figsize=(5, 4))
    # five points within a few pixels of one another: labels at one fixed offset would all overlap
    points = [(1.0, 0.97), (1.01, 0.9702), (1.02, 0.9698), (1.0, 0.9701), (3.0, 0.99)]
    labels = ["none", "hoyer-square 0.003", "hoyer 0.01", "l1 0.1", "far away"]
    ax.scatter(*zip(*points))
    ax.set(xlim=(0.5, 3.5), ylim=(0.96, 1.0))
    notes = plots.place_labels(ax, points, labels)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [n.get_window_extent(renderer) for n in notes]
    assert [n.get_text() for n in notes] == labels
    assert _overlapping(boxes) == []
    plt.close(fig)


def test_accuracy_energy_plot_labels_do_not_overlap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The digits case: DNN energies 2.14e-7 / 2.17e-7 / 2.56e-7 J with accuracies 0.9733 / 0.9733 / 0.98
    # (hoyer and hoyer-square drawn on top of each other); the plot keeps its labels apart.
    def record(reg: str, strength: float, acc: float, energy: float) -> dict:
        return {"config": {"dataset": "digits", "model": "lenet", "regularizer": reg, "strength": strength, "seed": 0},
                "dnn": {"accuracy": acc, "energy_j": {"p": energy}, "sparsity": {"relu1": 0.5}},
                "snn": {"timesteps": [4], "accuracy": [acc], "synops": [1.0], "energy_j": {"p": [energy]}}}

    records = [record("none", 0.0, 0.98, 2.56e-7), record("hoyer", 0.01, 0.9733, 2.14e-7),
               record("hoyer-square", 0.003, 0.9733, 2.17e-7), record("hoyer-square", 0.01, 0.9734, 2.15e-7),
               record("l1", 0.1, 0.9845, 1.61e-7)]
    figures: list[Any] = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    plots.plot_accuracy_energy(records, tmp_path / "a.png", "p")
    fig = figures[0]
    fig.tight_layout()  # what _save does before writing
    fig.canvas.draw()
    left = fig.axes[0]
    boxes = [t.get_window_extent(fig.canvas.get_renderer()) for t in left.texts]
    assert sorted(t.get_text() for t in left.texts) == sorted(plots.config_label(r) for r in records)
    assert _overlapping(boxes) == []
    plt.close(fig)
