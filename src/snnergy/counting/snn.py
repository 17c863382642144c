"""SNN counts: SynOps, input MACs, neuron updates and spike rates from a simulation's spike counts.

The simulator (:mod:`snnergy.simulation`) returns spike counts only; this module turns them into
docs/design.md's numbers with the same fan-out code as the DNN's effective MACs
(:func:`~snnergy.counting.ops.neuron_fanout`):

- SynOps at T: sum over spiking layers of (spikes in steps 1..T x each neuron's fan-out into the next
  weighted layer, through average pooling), per sample. With Poisson input the input spikes
  perform SynOps into the first layer too.
- Max pooling (spike-count gating, :func:`snnergy.simulation.gate_max_pool`): only the spikes
  that pass their window's gate reach the next layer, each costing the pooled position's fan-out;
  a blocked spike costs nothing (``gated_counts``).
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

The network is a converted :class:`~snnergy.simulation.SpikingNetwork`, read through its
network plan (``snn.plan()``, :class:`~snnergy.structure.NetworkPlan`): the same branches and
geometries the DNN's plan has, and the same fan-out code (:func:`~snnergy.counting.readers_fanout`)
the ``synops`` penalty uses; this module does not import the simulator.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from snnergy.counting.ops import effective_macs, weighted_events
from snnergy.counting.readers import gated_fanout, readers_fanout
from snnergy.errors import SnnergyError
from snnergy.structure import NetworkPlan


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


def input_macs(plan: NetworkPlan, inputs: Iterable[Tensor], limit: int | None = None) -> tuple[float, int]:
    """Zero-skipping MACs on the (static) input of every branch reading the input (the first
    layer and any input shortcut), summed over the samples of the batches ``inputs`` (at most ``limit``).

    Returns:
        ``(total MACs, samples seen)``.
    """
    total, seen = 0.0, 0
    readers = plan.readers(None)
    with torch.no_grad():
        for x in inputs:
            if limit is not None:
                x = x[: max(limit - seen, 0)]
            if len(x) == 0:
                break
            x = x.float()
            for branch in readers:
                reached = x
                for op in branch.pre:
                    reached = op(reached)
                if branch.geometry is None:
                    total += float((reached != 0).sum())
                else:
                    total += float(effective_macs(branch.geometry, reached).sum())
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
    gated_counts: Mapping[str, Tensor] | None = None,
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
        gated_counts: By name of a branch reading its neurons through max pooling, ``(K, *shape)``
            spikes of those neurons that passed the gate: only they cost that branch's fan-out.
    """
    n = samples
    plan = snn.plan()
    synops = [0.0] * len(timesteps)
    per_layer: dict[str, list[float]] = {}
    for activation in plan.activations:
        counts = spike_counts[activation.name].to(torch.float64)
        readers = plan.readers(activation.name)
        shape = tuple(counts.shape[1:])
        events = weighted_events(readers_fanout(readers, shape, gated=False), counts)
        for branch in (b for b in readers if b.gate is not None):
            if gated_counts is None or branch.name not in gated_counts:
                raise SnnergyError(f"count_snn: '{branch.name}' reads '{activation.name}' through max pooling, "
                                   "but the simulation gave no gated counts for it")
            events = events + weighted_events(gated_fanout(branch, shape), gated_counts[branch.name].to(torch.float64))
        layer_synops = (events / n).tolist()
        per_layer[activation.name] = layer_synops
        synops = [a + b for a, b in zip(synops, layer_synops)]
    if input_counts is not None:
        fanout = readers_fanout(plan.readers(None), tuple(snn.input_shape))
        input_synops = (weighted_events(fanout, input_counts.to(torch.float64)) / n).tolist()
        per_layer["input"] = input_synops
        synops = [a + b for a, b in zip(synops, input_synops)]
        macs = [0.0] * len(timesteps)
    else:
        total, seen = input_macs(plan, inputs if inputs is not None else (), max_samples)
        macs = [total / max(seen, 1)] * len(timesteps)
    updates = sum(neurons.values()) + plan.readout_neurons
    t_max = timesteps[-1]
    spike_rate = {
        name: float(counts[-1].sum()) / (neurons[name] * t_max * n)
        for name, counts in spike_counts.items()
    }
    return SNNCounts(synops, per_layer, macs, [float(updates * t) for t in timesteps], spike_rate)


__all__ = ["SNNCounts", "count_snn", "input_macs"]
