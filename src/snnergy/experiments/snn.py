"""The SNN record: simulate a converted network, count its operations, estimate its energy.

Glue only: :func:`~snnergy.simulation.run_simulation` gives the spike counts,
:func:`~snnergy.counting.count_snn` the SynOps, input MACs and neuron updates (docs/design.md's
definitions are in :mod:`snnergy.counting.snn`), :func:`~snnergy.energy.energy_by_profile` the
energy at each T.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import replace

import torch

from snnergy.config import SimulateConfig, doubling_timesteps
from snnergy.counting import count_snn
from snnergy.data import Data, batches
from snnergy.energy import energy_by_profile
from snnergy.errors import SnnergyError
from snnergy.records import OpCounts, SNNRecord
from snnergy.simulation import SpikingNetwork, run_simulation


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
        The ``snn`` record of ``results.json``, every list aligned with ``timesteps``.
    """
    if isinstance(timesteps, numbers.Integral) and not isinstance(timesteps, bool):
        timesteps = doubling_timesteps(timesteps)
    changes = {"timesteps": timesteps, "input": input, "max_samples": max_samples, "max_memory": max_memory}
    changes = {k: v for k, v in changes.items() if v is not None}
    config = config or SimulateConfig()
    if changes:  # the config checks what the keywords change
        config = replace(config, **changes)
    result = run_simulation(snn, data, config, device=device, seed=seed, progress=progress)
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
    )
    energy: dict[str, list[float]] = {}
    for k in range(len(result.timesteps)):
        counts_k = OpCounts(macs=counts.input_macs[k], synops=counts.synops[k],
                            neuron_updates=counts.neuron_updates[k])
        for profile, joules in energy_by_profile(counts_k, profiles).items():
            energy.setdefault(profile, []).append(joules)
    return SNNRecord(
        timesteps=list(result.timesteps),
        accuracy=result.accuracy,
        synops=counts.synops,
        input_macs=counts.input_macs,
        neuron_updates=counts.neuron_updates,
        spike_rate=counts.spike_rate,
        energy_j=energy,
        synops_per_layer=counts.synops_per_layer,
        correlation=dict(result.correlation),
        input=config.input,
        samples=result.samples,
        silent_layers=list(snn.silent_layers),
        paths=dict(result.paths),
        input_density=dict(result.density),
    )


__all__ = ["doubling_timesteps", "simulate"]
