"""The SNN record: simulate a converted network, then count SynOps and estimate energy.

The simulator (:mod:`snnergy.simulation`) returns spike counts only; this module turns them into
DESIGN.md's numbers with the same fan-out code as the DNN's effective MACs
(:func:`snnergy.counting.neuron_fanout`):

- SynOps at T: sum over spiking layers of (spikes in steps 1..T x each neuron's fan-out into the next
  weighted layer, through average pooling), per sample. With Poisson input the input spikes
  perform SynOps into the first layer too.
- ``input_macs``: with analog input the first layer's current is the same at every step, so its
  (zero-skipping) MACs are needed once per sample, whatever T.
- Neuron updates: (spiking neurons + readout neurons) x T.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from snnergy.config import SimulateConfig
from snnergy.counting import effective_macs, geometry_of, neuron_fanout, pool_geometry, weighted_events
from snnergy.energy import energy_by_profile
from snnergy.errors import SnnergyError
from snnergy.experiments.measure import Data, batches
from snnergy.records import LayerGeometry, OpCounts, PoolGeometry, SNNRecord
from snnergy.simulation import SpikingNetwork, run_simulation


@dataclass(frozen=True)
class StageShapes:
    """The counting view of one stage: pools before its weighted layer, and that layer."""

    name: str
    neuron_name: str | None
    pools: tuple[PoolGeometry, ...]
    layer: LayerGeometry


def stage_shapes(snn: SpikingNetwork) -> list[StageShapes]:
    """Geometry of every stage, from one dummy forward through the stages' linear ops."""
    shapes = []
    x = torch.zeros(1, *snn.input_shape)
    with torch.no_grad():
        for stage in snn.stages:
            pools = []
            for op in stage.pre:
                if isinstance(op, nn.AvgPool2d):
                    pools.append(pool_geometry(op, tuple(x.shape[1:])))
                x = op(x)
            in_shape = tuple(x.shape[1:])
            x = stage.layer(x)
            shapes.append(
                StageShapes(
                    stage.name,
                    stage.neuron_name,
                    tuple(pools),
                    geometry_of(stage.layer, stage.name, in_shape, tuple(x.shape[1:])),
                )
            )
    return shapes


def _input_macs(snn: SpikingNetwork, data: Data, first: LayerGeometry, limit: int | None) -> tuple[float, int]:
    """Zero-skipping MACs of the first weighted layer on the (static) input, summed over samples."""
    total, seen = 0.0, 0
    pre = snn.stages[0].pre
    with torch.no_grad():
        for x, _ in batches(data):
            if limit is not None:
                x = x[: max(limit - seen, 0)]
            if len(x) == 0:
                break
            total += float(effective_macs(first, pre(x.float())).sum())
            seen += len(x)
    return total, seen


def simulate(
    snn: SpikingNetwork,
    data: Data,
    *,
    timesteps: Sequence[int] = SimulateConfig().timesteps,
    input: str = "analog",
    max_samples: int | None = None,
    profiles: Sequence[str] | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> SNNRecord:
    """Simulates ``snn`` on ``data`` and reports accuracy, SynOps and energy at each T.

    Args:
        snn: A converted network (:func:`snnergy.convert`).
        data: A DataLoader of ``(x, y)`` or an ``(inputs, labels)`` pair.
        timesteps: The T values to report; the simulation runs once, to the largest.
        input: ``"analog"`` (constant current) or ``"poisson"`` (Bernoulli spikes).
        max_samples: Simulate at most this many samples.
        profiles: Energy profiles (``None``: all).
        seed: Seeds Poisson input.
        device: Where to simulate.
        progress: Show a progress bar.

    Returns:
        The ``snn`` record of ``results.json``, every list aligned with ``timesteps``.
    """
    config = SimulateConfig(timesteps=tuple(timesteps), input=input, max_samples=max_samples)
    result = run_simulation(snn, data, config, device=device, seed=seed, progress=progress)
    if result.samples == 0:
        raise SnnergyError("simulate: the data holds no samples")
    n = result.samples
    shapes = stage_shapes(snn)
    ts = result.timesteps
    synops = [0.0] * len(ts)
    per_layer: dict[str, list[float]] = {}
    for stage, nxt in zip(shapes, shapes[1:]):
        if stage.neuron_name is None:
            continue
        counts = result.spike_counts[stage.neuron_name].to(torch.float64)
        fanout = neuron_fanout(nxt.layer, nxt.pools, tuple(counts.shape[1:]))
        layer_synops = (weighted_events(fanout, counts) / n).tolist()
        per_layer[stage.neuron_name] = layer_synops
        synops = [a + b for a, b in zip(synops, layer_synops)]
    first = shapes[0]
    if input == "poisson":
        if result.input_counts is None:
            raise SnnergyError("simulate: Poisson input but the simulator returned no input spike counts")
        fanout = neuron_fanout(first.layer, first.pools, tuple(snn.input_shape))
        input_synops = (weighted_events(fanout, result.input_counts.to(torch.float64)) / n).tolist()
        per_layer["input"] = input_synops
        synops = [a + b for a, b in zip(synops, input_synops)]
        input_macs = [0.0] * len(ts)
    else:
        total, seen = _input_macs(snn, data, first.layer, max_samples)
        input_macs = [total / max(seen, 1)] * len(ts)
    readout = 1
    for d in shapes[-1].layer.out_shape:
        readout *= d
    neurons = sum(result.neurons.values()) + readout
    neuron_updates = [float(neurons * t) for t in ts]
    t_max = ts[-1]
    spike_rate = {
        name: float(counts[-1].sum()) / (result.neurons[name] * t_max * n)
        for name, counts in result.spike_counts.items()
    }
    energy: dict[str, list[float]] = {}
    for k in range(len(ts)):
        counts_k = OpCounts(macs=input_macs[k], synops=synops[k], neuron_updates=neuron_updates[k])
        for profile, joules in energy_by_profile(counts_k, profiles).items():
            energy.setdefault(profile, []).append(joules)
    return SNNRecord(
        timesteps=list(ts),
        accuracy=result.accuracy,
        synops=synops,
        input_macs=input_macs,
        neuron_updates=neuron_updates,
        spike_rate=spike_rate,
        energy_j=energy,
        synops_per_layer=per_layer,
        correlation=dict(result.correlation),
        input=input,
        samples=n,
    )
