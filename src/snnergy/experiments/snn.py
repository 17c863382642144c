"""The SNN record: simulate a converted network, count its operations, estimate its energy.

Glue only: :func:`~snnergy.simulation.run_simulation` gives the spike counts,
:func:`~snnergy.counting.count_snn` the SynOps, input MACs and neuron updates (docs/design.md's
definitions are in :mod:`snnergy.counting.snn`), :func:`~snnergy.energy.energy_by_profile` the
energy at each T and :func:`~snnergy.energy.energy_breakdown` its terms.

The simulation reports every step ``t = 1..T_max`` (:func:`curve_timesteps`), not only the listed T:
the readout accuracy after each step comes with the same pass, and the SynOps after each step are
fan-out-weighted sums of the spike counts after it. The record's lists keep the listed T; its
``curve`` holds every t, where the smallest t reaching a target is picked (docs/design.md).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import replace

import torch

from snnergy.config import SimulateConfig, doubling_timesteps
from snnergy.counting import count_snn
from snnergy.data import Data, batches
from snnergy.energy import energy_breakdown, energy_by_profile
from snnergy.errors import SnnergyError
from snnergy.records import OpCounts, SNNCurve, SNNRecord
from snnergy.simulation import SpikingNetwork, run_simulation
from snnergy.simulation.memory import default_max_memory, plan_sizes, sample_bytes
from snnergy.structure import NetworkPlan

CURVE_MEMORY_SHARE = 8
"""The spike counts at every t (float64, a running total and one per sub-batch) may take at most
1/``CURVE_MEMORY_SHARE`` of the simulation's memory budget; beyond it the curve's grid coarsens."""


def curve_timesteps(listed: Sequence[int], neurons: int, max_memory: int) -> tuple[int, ...]:
    """The t the simulation reports: every integer ``1..T_max`` (``T_max = max(listed)``), when the
    spike counts at every t fit in ``max_memory / CURVE_MEMORY_SHARE``; otherwise every s-th step
    (s the smallest power of two that fits) plus the listed T.

    Args:
        listed: The T the record lists (``simulate.timesteps``), increasing.
        neurons: Spiking neurons per sample (the counts are one float64 per neuron and t, twice).
        max_memory: The simulation's memory budget in bytes.

    Example:
        >>> curve_timesteps([1, 2, 4, 8], neurons=100, max_memory=2**30)
        (1, 2, 3, 4, 5, 6, 7, 8)
        >>> # 16 B per neuron and t; share 800 kB / 8 = 100 kB: 1000 neurons x 8 t = 128 kB does not
        >>> # fit, x 4 t (every 2nd step) = 64 kB does: s = 2, plus the listed 1
        >>> curve_timesteps([1, 2, 4, 8], neurons=1000, max_memory=800_000)
        (1, 2, 4, 6, 8)
    """
    t_max = max(listed)
    stride = 1
    while stride < t_max and 16 * neurons * math.ceil(t_max / stride) > max_memory // CURVE_MEMORY_SHARE:
        stride *= 2
    return tuple(sorted(set(range(stride, t_max + 1, stride)) | set(listed)))


def _spiking_neurons(snn: SpikingNetwork) -> int:
    return sum(math.prod(out) for stage, (_, out) in zip(snn.stages, snn.shapes().values()) if stage.spiking)


def simulate(
    snn: SpikingNetwork,
    data: Data,
    config: SimulateConfig | None = None,
    *,
    timesteps: Sequence[int] | int | None = None,
    input: str | None = None,
    max_samples: int | None = None,
    max_memory: int | None = None,
    profiles: Sequence[str] | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> SNNRecord:
    """Simulates ``snn`` on ``data`` and reports accuracy, SynOps and energy at each T.

    Args:
        snn: A converted network (:func:`snnergy.convert`).
        data: A DataLoader of ``(x, y)`` or an ``(inputs, labels)`` pair.
        config: The simulation settings (``None``: defaults); the keyword arguments below that
            are given override its fields.
        timesteps: The T values to report; the simulation runs once, to the largest. One
            integer T reports 1, 2, 4, ..., T (:func:`~snnergy.config.doubling_timesteps`, as
            ``snnergy simulate --timesteps T``).
        input: ``"analog"`` (constant current) or ``"poisson"`` (Bernoulli spikes).
        max_samples: Simulate at most this many samples.
        max_memory: Bytes the simulation may use (``None``: a quarter of the RAM); see
            :mod:`snnergy.simulation.memory`.
        profiles: Energy profiles (``None``: all).
        seed: Seeds Poisson input.
        device: Where to simulate.
        progress: Show a progress bar.

    Returns:
        The ``snn`` record of ``results.json``, every list aligned with ``timesteps``, and its
        ``curve`` at every step up to the largest (:func:`curve_timesteps`).
    """
    if isinstance(timesteps, numbers.Integral) and not isinstance(timesteps, bool):
        timesteps = doubling_timesteps(timesteps)
    changes = {"timesteps": timesteps, "input": input, "max_samples": max_samples, "max_memory": max_memory}
    changes = {k: v for k, v in changes.items() if v is not None}
    config = config or SimulateConfig()
    if changes:  # the config checks what the keywords change
        config = replace(config, **changes)
    listed = list(config.timesteps)
    budget = config.max_memory if config.max_memory is not None else default_max_memory(device)
    every = curve_timesteps(listed, _spiking_neurons(snn), budget)
    result = run_simulation(snn, data, replace(config, timesteps=every), device=device, seed=seed, progress=progress)
    if result.samples == 0:
        raise SnnergyError("simulate: the data holds no samples")
    poisson = config.input == "poisson"
    if poisson and result.input_counts is None:
        raise SnnergyError("simulate: Poisson input but the simulator returned no input spike counts")
    counts = count_snn(
        snn,
        result.timesteps,
        result.samples,
        result.spike_counts,
        result.neurons,
        input_counts=result.input_counts if poisson else None,
        inputs=None if poisson else (x for x, _ in batches(data)),
        max_samples=config.max_samples,
        gated_counts=result.gated_counts,
    )
    energy: dict[str, list[float]] = {}
    parts: dict[str, dict[str, list[float]]] = {}
    for k in range(len(result.timesteps)):
        counts_k = OpCounts(macs=counts.input_macs[k], synops=counts.synops[k],
                            neuron_updates=counts.neuron_updates[k])
        for profile, joules in energy_by_profile(counts_k, profiles).items():
            energy.setdefault(profile, []).append(joules)
            if result.timesteps[k] in listed:
                for part, value in energy_breakdown(counts_k, profile).items():
                    parts.setdefault(profile, {}).setdefault(part, []).append(value)
    at = [result.timesteps.index(t) for t in listed]
    accuracy = result.accuracy
    curve = SNNCurve(list(result.timesteps), accuracy, counts.synops, energy)
    return SNNRecord(
        timesteps=listed,
        accuracy=[accuracy[k] for k in at],
        synops=[counts.synops[k] for k in at],
        input_macs=[counts.input_macs[k] for k in at],
        neuron_updates=[counts.neuron_updates[k] for k in at],
        spike_rate=counts.spike_rate,
        energy_j={profile: [values[k] for k in at] for profile, values in energy.items()},
        synops_per_layer={name: [values[k] for k in at] for name, values in counts.synops_per_layer.items()},
        correlation=dict(result.correlation),
        input=config.input,
        samples=result.samples,
        silent_layers=list(snn.silent_layers),
        paths=dict(result.paths),
        input_density=dict(result.density),
        energy_breakdown_j=parts,
        curve=curve,
    )


def check_memory(plan: NetworkPlan, config: SimulateConfig, device: torch.device | str = "cpu") -> None:
    """Checks, from a network plan alone (before any training), that :func:`simulate` with
    ``config`` fits its memory budget: the same bound the simulation itself applies
    (:func:`snnergy.simulation.memory.plan`) over the curve's steps (:func:`curve_timesteps`).

    Raises:
        ConfigError: Not even one sample fits in ``config.max_memory``.

    Example:
        >>> from torch import nn
        >>> from snnergy.structure import trace
        >>> net = trace(nn.Sequential(nn.Flatten(), nn.Linear(4, 10), nn.ReLU(), nn.Linear(10, 3)), (4,))
        >>> check_memory(net, SimulateConfig(timesteps=(8,), max_memory=2**20))  # fits
        >>> check_memory(net, SimulateConfig(timesteps=(8,), max_memory=300))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        snnergy.errors.ConfigError: simulating T=8 needs about ... over half of simulate.max_memory = ...
    """
    neurons = sum(math.prod(a.shape) for a in plan.activations)
    budget = config.max_memory if config.max_memory is not None else default_max_memory(device)
    every = curve_timesteps(list(config.timesteps), neurons, budget)
    poisson = config.input == "poisson"
    per_sample = sample_bytes(neurons, plan.readout_neurons, math.prod(plan.input_shape), max(every), len(every), poisson)
    plan_sizes(neurons, per_sample, max(every), len(every), budget, poisson)


__all__ = ["CURVE_MEMORY_SHARE", "check_memory", "curve_timesteps", "doubling_timesteps", "simulate"]
