"""The SNN record: simulate a converted network, then count SynOps and estimate energy.

The simulator (:mod:`snnergy.simulation`) returns spike counts only; this module turns them into
DESIGN.md's numbers with the same fan-out code as the DNN's effective MACs
(:func:`snnergy.counting.neuron_fanout`):

- SynOps at T: sum over spiking layers of (spikes in steps 1..T x each neuron's fan-out into the next
  weighted layer, through average pooling), per sample. With Poisson input the input spikes
  perform SynOps into the first layer too.
- Residual shortcuts: a neuron's fan-out also counts every shortcut that reads it. Through a
  shortcut Conv2d/Linear (e.g. a strided 1x1 convolution) a spike costs that layer's exact
  fan-out, like any weighted layer; through an identity shortcut (a per-channel scale after
  normalization) it costs 1 synaptic operation per step, the accumulate of its weight into the
  residual sum (through average pooling: one per pooled position it reaches). A neuron's entry in
  ``synops_per_layer`` is the total over its next layer and its shortcuts.
- ``input_macs``: with analog input the first layer's current is the same at every step, so its
  (zero-skipping) MACs are needed once per sample, whatever T; shortcuts from the analog input add
  their MACs likewise (an identity one: one multiply per non-zero input).
- Neuron updates: (spiking neurons + readout neurons) x T.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from snnergy.config import SimulateConfig
from snnergy.counting import (
    effective_macs,
    geometry_of,
    identity_fanout,
    neuron_fanout,
    pool_geometry,
    weighted_events,
)
from snnergy.energy import energy_by_profile
from snnergy.errors import ConfigError, SnnergyError
from snnergy.experiments.measure import Data, batches
from snnergy.records import LayerGeometry, OpCounts, PoolGeometry, SNNRecord
from snnergy.simulation import SpikingNetwork, run_simulation


@dataclass(frozen=True)
class BranchShapes:
    """The counting view of one shortcut: its source, pools, and weighted layer (None: identity)."""

    name: str
    source: str | None
    pools: tuple[PoolGeometry, ...]
    layer: LayerGeometry | None
    in_shape: tuple[int, ...]


@dataclass(frozen=True)
class StageShapes:
    """The counting view of one stage: pools before its weighted layer, that layer, its shortcuts."""

    name: str
    neuron_name: str | None
    pools: tuple[PoolGeometry, ...]
    layer: LayerGeometry
    shortcuts: tuple[BranchShapes, ...] = ()


def _through(ops: nn.Sequential, x: Tensor) -> tuple[tuple[PoolGeometry, ...], Tensor]:
    pools = []
    for op in ops:
        if isinstance(op, nn.AvgPool2d):
            pools.append(pool_geometry(op, tuple(x.shape[1:])))
        x = op(x)
    return tuple(pools), x


def stage_shapes(snn: SpikingNetwork) -> list[StageShapes]:
    """Geometry of every stage and shortcut, from one dummy forward through the linear ops."""
    shapes = []
    x = torch.zeros(1, *snn.input_shape)
    outputs: dict[str | None, Tensor] = {None: x}
    with torch.no_grad():
        for stage in snn.stages:
            pools, x = _through(stage.pre, x)
            in_shape = tuple(x.shape[1:])
            y = stage.layer(x)
            branches = []
            for shortcut in stage.shortcuts:
                branch_pools, b = _through(shortcut.pre, outputs[shortcut.source])
                geom = None
                if isinstance(shortcut.layer, (nn.Conv2d, nn.Linear)):
                    out = shortcut.layer(b)
                    geom = geometry_of(shortcut.layer, shortcut.name, tuple(b.shape[1:]), tuple(out.shape[1:]))
                branches.append(BranchShapes(shortcut.name, shortcut.source, branch_pools, geom, tuple(b.shape[1:])))
            shapes.append(
                StageShapes(
                    stage.name,
                    stage.neuron_name,
                    pools,
                    geometry_of(stage.layer, stage.name, in_shape, tuple(y.shape[1:])),
                    tuple(branches),
                )
            )
            x = y
            outputs[stage.neuron_name] = y
    return shapes


def source_fanout(shapes: list[StageShapes], source: str | None, neuron_shape: tuple[int, ...]) -> Tensor:
    """Fan-out of each neuron of ``source`` (``None``: the input): the next stage's layer through
    its pools, plus every shortcut reading it (see the module docstring)."""
    index = 0 if source is None else 1 + next(i for i, s in enumerate(shapes) if s.neuron_name == source)
    nxt = shapes[index]
    fanout = neuron_fanout(nxt.layer, nxt.pools, neuron_shape)
    for stage in shapes:
        for branch in stage.shortcuts:
            if branch.source != source:
                continue
            if branch.layer is None:
                fanout = fanout + identity_fanout(branch.in_shape, branch.pools, neuron_shape)
            else:
                fanout = fanout + neuron_fanout(branch.layer, branch.pools, neuron_shape)
    return fanout


def _input_macs(snn: SpikingNetwork, data: Data, shapes: list[StageShapes], limit: int | None) -> tuple[float, int]:
    """Zero-skipping MACs on the (static) input of the first layer and of shortcuts reading the
    input, summed over samples."""
    total, seen = 0.0, 0
    first = snn.stages[0]
    branches = [(sc, b) for stage, shape in zip(snn.stages, shapes)
                for sc, b in zip(stage.shortcuts, shape.shortcuts) if sc.source is None]
    with torch.no_grad():
        for x, _ in batches(data):
            if limit is not None:
                x = x[: max(limit - seen, 0)]
            if len(x) == 0:
                break
            x = x.float()
            total += float(effective_macs(shapes[0].layer, first.pre(x)).sum())
            for shortcut, branch in branches:
                inputs = shortcut.pre(x)
                if branch.layer is None:
                    total += float((inputs != 0).sum())
                else:
                    total += float(effective_macs(branch.layer, inputs).sum())
            seen += len(x)
    return total, seen


def doubling_timesteps(largest: int) -> list[int]:
    """The reported T for a largest T: powers of two below it, then it.

    Example:
        >>> doubling_timesteps(128)[-3:], doubling_timesteps(20)
        ([32, 64, 128], [1, 2, 4, 8, 16, 20])
    """
    if largest < 1:
        raise ConfigError(f"simulate: timesteps must be >= 1, got {largest}")
    ts = [1 << k for k in range(largest.bit_length()) if 1 << k < largest]
    return ts + [largest]


def simulate(
    snn: SpikingNetwork,
    data: Data,
    *,
    timesteps: Sequence[int] | int = SimulateConfig().timesteps,
    input: str = "analog",
    max_samples: int | None = None,
    profiles: Sequence[str] | None = None,
    seed: int = 0,
    max_memory: int | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> SNNRecord:
    """Simulates ``snn`` on ``data`` and reports accuracy, SynOps and energy at each T.

    Args:
        snn: A converted network (:func:`snnergy.convert`).
        data: A DataLoader of ``(x, y)`` or an ``(inputs, labels)`` pair.
        timesteps: The T values to report; the simulation runs once, to the largest. One
            integer T reports 1, 2, 4, ..., T (as ``snnergy simulate --timesteps T``).
        input: ``"analog"`` (constant current) or ``"poisson"`` (Bernoulli spikes).
        max_samples: Simulate at most this many samples.
        profiles: Energy profiles (``None``: all).
        seed: Seeds Poisson input.
        max_memory: Bytes the simulation may use (``None``: a quarter of the RAM); see
            :mod:`snnergy.simulation.memory`.
        device: Where to simulate.
        progress: Show a progress bar.

    Returns:
        The ``snn`` record of ``results.json``, every list aligned with ``timesteps``.
    """
    if isinstance(timesteps, numbers.Integral) and not isinstance(timesteps, bool):
        timesteps = doubling_timesteps(int(timesteps))
    config = SimulateConfig(timesteps=tuple(timesteps), input=input, max_samples=max_samples, max_memory=max_memory)
    result = run_simulation(snn, data, config, device=device, seed=seed, progress=progress)
    if result.samples == 0:
        raise SnnergyError("simulate: the data holds no samples")
    n = result.samples
    shapes = stage_shapes(snn)
    ts = result.timesteps
    synops = [0.0] * len(ts)
    per_layer: dict[str, list[float]] = {}
    for stage in shapes:
        if stage.neuron_name is None:
            continue
        counts = result.spike_counts[stage.neuron_name].to(torch.float64)
        fanout = source_fanout(shapes, stage.neuron_name, tuple(counts.shape[1:]))
        layer_synops = (weighted_events(fanout, counts) / n).tolist()
        per_layer[stage.neuron_name] = layer_synops
        synops = [a + b for a, b in zip(synops, layer_synops)]
    if input == "poisson":
        if result.input_counts is None:
            raise SnnergyError("simulate: Poisson input but the simulator returned no input spike counts")
        fanout = source_fanout(shapes, None, tuple(snn.input_shape))
        input_synops = (weighted_events(fanout, result.input_counts.to(torch.float64)) / n).tolist()
        per_layer["input"] = input_synops
        synops = [a + b for a, b in zip(synops, input_synops)]
        input_macs = [0.0] * len(ts)
    else:
        total, seen = _input_macs(snn, data, shapes, max_samples)
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
        silent_layers=list(snn.silent_layers),
        paths=dict(result.modes),
        input_density=dict(result.density),
    )
