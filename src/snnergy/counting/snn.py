"""SNN counts: SynOps, input MACs, neuron updates and spike rates from a simulation's spike counts.

The simulator (:mod:`snnergy.simulation`) returns spike counts only; this module turns them into
DESIGN.md's numbers with the same fan-out code as the DNN's effective MACs
(:func:`~snnergy.counting.ops.neuron_fanout`):

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

The network is a converted :class:`~snnergy.simulation.SpikingNetwork` (read through its
``stages``, ``input_shape`` and each stage's ``pre``, ``layer``, ``shortcuts``; this module does
not import the simulator).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from snnergy.counting.geometry import geometry_of, pool_geometry
from snnergy.counting.ops import effective_macs, identity_fanout, neuron_fanout, weighted_events
from snnergy.records import LayerGeometry, PoolGeometry


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


@dataclass(frozen=True)
class SNNCounts:
    """Per-sample operation counts of a simulation; every list is aligned with the reported T.

    Attributes:
        synops: SynOps over steps 1..T.
        synops_per_layer: By neuron name (``"input"``: Poisson input spikes), its SynOps.
        input_macs: Analog input: the MACs of the first layer and input shortcuts (the same at
            every T); Poisson input: zeros.
        neuron_updates: (spiking + readout neurons) x T.
        spike_rate: By neuron name, spikes per neuron and step at the largest T.
    """

    synops: list[float]
    synops_per_layer: dict[str, list[float]]
    input_macs: list[float]
    neuron_updates: list[float]
    spike_rate: dict[str, float]


def _through(ops: nn.Sequential, x: Tensor) -> tuple[tuple[PoolGeometry, ...], Tensor]:
    pools = []
    for op in ops:
        if isinstance(op, nn.AvgPool2d):
            pools.append(pool_geometry(op, tuple(x.shape[1:])))
        x = op(x)
    return tuple(pools), x


def stage_shapes(snn: Any) -> list[StageShapes]:
    """Geometry of every stage and shortcut of a spiking network, from one dummy forward through
    the linear ops."""
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


def input_macs(snn: Any, inputs: Iterable[Tensor], shapes: list[StageShapes],
               limit: int | None = None) -> tuple[float, int]:
    """Zero-skipping MACs on the (static) input of the first layer and of shortcuts reading the
    input, summed over the samples of the input batches ``inputs`` (at most ``limit``).

    Returns:
        ``(total MACs, samples seen)``.
    """
    total, seen = 0.0, 0
    first = snn.stages[0]
    branches = [(sc, b) for stage, shape in zip(snn.stages, shapes)
                for sc, b in zip(stage.shortcuts, shape.shortcuts) if sc.source is None]
    with torch.no_grad():
        for x in inputs:
            if limit is not None:
                x = x[: max(limit - seen, 0)]
            if len(x) == 0:
                break
            x = x.float()
            total += float(effective_macs(shapes[0].layer, first.pre(x)).sum())
            for shortcut, branch in branches:
                inputs_ = shortcut.pre(x)
                if branch.layer is None:
                    total += float((inputs_ != 0).sum())
                else:
                    total += float(effective_macs(branch.layer, inputs_).sum())
            seen += len(x)
    return total, seen


def count_snn(
    snn: Any,
    timesteps: Sequence[int],
    samples: int,
    spike_counts: Mapping[str, Tensor],
    neurons: Mapping[str, int],
    *,
    input_counts: Tensor | None = None,
    inputs: Iterable[Tensor] | None = None,
    max_samples: int | None = None,
) -> SNNCounts:
    """The per-sample counts of a simulation of ``snn`` (see the module docstring).

    Args:
        snn: The simulated network.
        timesteps: The reported T values.
        samples: Simulated samples.
        spike_counts: By neuron name, ``(K, *shape)`` spikes over samples and steps 1..T_k.
        neurons: Neurons per spiking layer (per sample), by neuron name.
        input_counts: Poisson input: ``(K, *input_shape)`` input spikes likewise; they count
            SynOps and the input MACs are zero. ``None``: analog input.
        inputs: Analog input: the simulated input batches, for the input MACs.
        max_samples: At most this many samples of ``inputs`` were simulated.
    """
    n = samples
    shapes = stage_shapes(snn)
    synops = [0.0] * len(timesteps)
    per_layer: dict[str, list[float]] = {}
    for stage in shapes:
        if stage.neuron_name is None:
            continue
        counts = spike_counts[stage.neuron_name].to(torch.float64)
        fanout = source_fanout(shapes, stage.neuron_name, tuple(counts.shape[1:]))
        layer_synops = (weighted_events(fanout, counts) / n).tolist()
        per_layer[stage.neuron_name] = layer_synops
        synops = [a + b for a, b in zip(synops, layer_synops)]
    if input_counts is not None:
        fanout = source_fanout(shapes, None, tuple(snn.input_shape))
        input_synops = (weighted_events(fanout, input_counts.to(torch.float64)) / n).tolist()
        per_layer["input"] = input_synops
        synops = [a + b for a, b in zip(synops, input_synops)]
        macs = [0.0] * len(timesteps)
    else:
        total, seen = input_macs(snn, inputs if inputs is not None else (), shapes, max_samples)
        macs = [total / max(seen, 1)] * len(timesteps)
    readout = 1
    for d in shapes[-1].layer.out_shape:
        readout *= d
    updates = sum(neurons.values()) + readout
    t_max = timesteps[-1]
    spike_rate = {
        name: float(counts[-1].sum()) / (neurons[name] * t_max * n)
        for name, counts in spike_counts.items()
    }
    return SNNCounts(synops, per_layer, macs, [float(updates * t) for t in timesteps], spike_rate)


__all__ = ["BranchShapes", "SNNCounts", "StageShapes", "count_snn", "input_macs", "source_fanout", "stage_shapes"]
