"""Iso-accuracy reading of one SNN record: its curve at every t, the smallest sufficient t, the
energy breakdown at any t, the input-layer floor, and the baseline every factor is taken against.

It reads the JSON form of a record only (docs/design.md's results schema). Records written before
``snn.curve`` existed fall back to the listed T (``snn.timesteps``), and say so (``every_t``).

- *Smallest sufficient t*: the smallest t of the curve whose accuracy reaches the target. SynOps and
  energy grow with t, so it is also the record's cheapest point at the target.
- *Target reference*: the DNN's accuracy on the test images the SNN ran
  (:func:`~snnergy.reporting.filters.dnn_reference`).
- *Baseline*: the unregularized full-width ReLU SNN (regularizer ``none``, activation ``relu`` or
  unset, width 1 or unset; :func:`~snnergy.reporting.filters.is_full_baseline`);
  factors are "baseline / configuration", each at its own smallest sufficient t.
- *Breakdown at t*: ``snn.energy_breakdown_j`` at a listed T, else derived exactly from the
  definitions: the input layer's MACs are the same at every t, neuron updates grow as ``t``, and
  the spiking layers take the rest of the curve's energy at t. On a memory-aware profile (a
  ``memory`` part) the spiking layers are the curve's SynOps at t times the profile's cost per
  SynOp (``spiking_layers / synops`` at the largest listed T), and memory takes the rest: the input
  layer's weight reads, every SynOp's weight read and the neuron-state accesses, all linear in
  the counts (docs/design.md, "Memory-aware energy").
- *Input-layer floor* (REFERENCE.md section 7): the analog first layer's MACs are paid once per
  sample whatever the regularizer, so no SNN of the network spends less than that.

Imports only :mod:`snnergy.reporting.filters`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from snnergy.reporting.filters import axes, is_baseline, is_full_baseline, usable_records

PARTS = ("input_layer", "spiking_layers", "neuron_updates")
"""The terms of the SNN energy, as in ``snn.energy_breakdown_j``."""


@dataclass(frozen=True)
class Curve:
    """An SNN's accuracy, SynOps and energy on one profile against t.

    Attributes:
        timesteps: The t, increasing.
        accuracy, synops, energy_j: Aligned with ``timesteps`` (energy NaN where the profile is missing).
        every_t: Whether it is the recorded curve (``snn.curve``) rather than the listed T.
    """

    timesteps: list[int]
    accuracy: list[float]
    synops: list[float]
    energy_j: list[float]
    every_t: bool


@dataclass(frozen=True)
class IsoPoint:
    """The smallest sufficient t of a curve and the numbers there."""

    timesteps: int
    accuracy: float
    synops: float
    energy_j: float
    every_t: bool


def snn_curve(snn: Mapping[str, Any], profile: str) -> Curve:
    """The record's curve at every t (``snn.curve``), or its listed T when it has none.

    Example:
        >>> snn = {"timesteps": [2, 4], "accuracy": [0.5, 0.9], "synops": [2.0, 4.0], "energy_j": {"p": [1.0, 2.0]},
        ...        "curve": {"timesteps": [1, 2, 3, 4], "accuracy": [0.1, 0.5, 0.8, 0.9], "synops": [1.0, 2.0, 3.0, 4.0],
        ...                  "energy_j": {"p": [0.5, 1.0, 1.5, 2.0]}}}
        >>> snn_curve(snn, "p").timesteps, snn_curve({**snn, "curve": None}, "p").every_t
        ([1, 2, 3, 4], False)
    """
    source = snn.get("curve") or snn
    energy = source.get("energy_j", {}).get(profile)
    steps = list(source["timesteps"])
    return Curve(steps, list(source["accuracy"]), list(source["synops"]),
                 list(energy) if energy is not None else [math.nan] * len(steps), bool(snn.get("curve")))


def smallest_sufficient(curve: Curve, target: float) -> IsoPoint | None:
    """The first t of ``curve`` whose accuracy is ``>= target`` (``None``: never).

    Example:
        >>> c = Curve([1, 2, 3, 4], [0.1, 0.5, 0.8, 0.9], [1.0, 2.0, 3.0, 4.0], [0.5, 1.0, 1.5, 2.0], True)
        >>> smallest_sufficient(c, 0.8).timesteps, smallest_sufficient(c, 0.95)
        (3, None)
    """
    for i, acc in enumerate(curve.accuracy):
        if acc >= target:
            return IsoPoint(curve.timesteps[i], acc, curve.synops[i], curve.energy_j[i], curve.every_t)
    return None


def activation(record: Mapping[str, Any]) -> str:
    """The record's activation kind (:func:`~snnergy.reporting.filters.axes`; ``relu`` when unset)."""
    return axes(record)[0]


def baseline_record(records: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The unregularized ReLU SNN's record among the usable ones: the full-width one (model width
    1, or unset) when several, else the first; ``None`` when there is none with an SNN."""
    plain = [r for r in usable_records(records) if is_baseline(r) and r.get("snn")]
    full = [r for r in plain if is_full_baseline(r)]
    return (full or plain or [None])[0]


def breakdown_at(snn: Mapping[str, Any], profile: str, t: int) -> dict[str, float] | None:
    """The SNN energy on ``profile`` after ``t`` steps split into :data:`PARTS` (``None`` for a record
    without ``snn.energy_breakdown_j``); see the module docstring for a t between the listed T.

    Example:
        >>> # listed T = 2, 4; E_mac 1, E_ac 1, E_neuron 1 per op; 3 input MACs, 10 neurons/step
        >>> snn = {"timesteps": [2, 4], "accuracy": [0.5, 0.9], "synops": [2.0, 6.0], "energy_j": {"p": [25.0, 49.0]},
        ...        "energy_breakdown_j": {"p": {"input_layer": [3.0, 3.0], "spiking_layers": [2.0, 6.0],
        ...                                     "neuron_updates": [20.0, 40.0]}},
        ...        "curve": {"timesteps": [1, 2, 3, 4], "accuracy": [0.1, 0.5, 0.8, 0.9],
        ...                  "synops": [1.0, 2.0, 4.0, 6.0], "energy_j": {"p": [14.0, 25.0, 37.0, 49.0]}}}
        >>> breakdown_at(snn, "p", 3)  # 37 = 3 input + 30 neuron updates (10 x 3) + 4 SynOps
        {'input_layer': 3.0, 'spiking_layers': 4.0, 'neuron_updates': 30.0}
    """
    parts = (snn.get("energy_breakdown_j") or {}).get(profile)
    if not parts:
        return None
    if t in snn["timesteps"]:
        i = snn["timesteps"].index(t)
        return {part: float(parts[part][i]) for part in (*PARTS, "memory") if part in parts}
    curve = snn_curve(snn, profile)
    if t not in curve.timesteps:
        return None
    i = curve.timesteps.index(t)
    total = curve.energy_j[i]
    t_max = snn["timesteps"][-1]
    input_layer = float(parts["input_layer"][-1])
    neurons = float(parts["neuron_updates"][-1]) * t / t_max
    if "memory" not in parts:
        return {"input_layer": input_layer, "spiking_layers": max(total - input_layer - neurons, 0.0),
                "neuron_updates": neurons}
    synops_max = float(snn["synops"][-1])
    per_synop = float(parts["spiking_layers"][-1]) / synops_max if synops_max else 0.0
    spiking = curve.synops[i] * per_synop
    return {"input_layer": input_layer, "spiking_layers": spiking, "neuron_updates": neurons,
            "memory": max(total - input_layer - neurons - spiking, 0.0)}


def input_floor(snn: Mapping[str, Any], profile: str) -> float | None:
    """The input layer's energy on ``profile`` (the same at every T): the least any SNN of the
    network can spend (``None`` without ``snn.energy_breakdown_j``)."""
    parts = (snn.get("energy_breakdown_j") or {}).get(profile)
    return float(parts["input_layer"][-1]) if parts else None


def factor(baseline: float, value: float) -> float:
    """``baseline / value`` ("how many times fewer"); NaN when undefined.

    Example:
        >>> factor(6.0, 2.0), factor(1.0, 0.0)
        (3.0, nan)
    """
    if not value or not math.isfinite(baseline) or not math.isfinite(value):
        return math.nan
    return baseline / value


__all__ = [
    "PARTS",
    "Curve",
    "IsoPoint",
    "activation",
    "baseline_record",
    "breakdown_at",
    "factor",
    "input_floor",
    "is_baseline",
    "smallest_sufficient",
    "snn_curve",
]
