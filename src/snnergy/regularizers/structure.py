"""The structure a model-aware penalty needs, read off the network plan.

:func:`trace_structure` reads the model's :class:`~snnergy.structure.NetworkPlan` (the same one
conversion and counting read) and keeps, for each activation layer (the neurons of the converted
SNN), every branch its output feeds: the next stage's weighted layer through its average
poolings, and the shortcuts of residual nets. The geometries are those counting uses, so a
penalty built on them counts exactly as SynOps and effective MACs are counted after training.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from snnergy.records import LayerGeometry, PoolGeometry
from snnergy.errors import ConversionError
from snnergy.structure import Branch, trace


@dataclass(frozen=True)
class SpikingLayer:
    """One activation layer (a spiking layer after conversion) and what its output feeds.

    Attributes:
        name: The activation's name (the key of ``ActivityRecord.activations``).
        neuron_shape: Per-sample shape of its output.
        next_layer: The weighted layer of the next stage.
        pools: The average poolings before it, in forward order.
        readers: Every branch reading this layer (the next stage's first, then shortcuts).
        kind: Its activation kind (a key of :data:`~snnergy.structure.ACTIVATIONS`).
        trained_threshold: Whether the kind carries its own threshold (the plan's parameters hold
            ``threshold``: ``qcfs``, ``clip``); the converter then uses it as the scale.
    """

    name: str
    neuron_shape: tuple[int, ...]
    next_layer: LayerGeometry
    pools: tuple[PoolGeometry, ...]
    readers: tuple[Branch, ...] = ()
    kind: str = "relu"
    trained_threshold: bool = False


@dataclass(frozen=True)
class ModelStructure:
    """What energy-aware penalties need to know of a model, read once before training.

    Attributes:
        weighted: Every weighted layer in forward order; the first one sees the data.
        spiking: Every activation layer with the branches it feeds, in forward order.
        readout_neurons: Output elements of the last weighted layer (its neurons are updated
            every step of the SNN, as the readout).
    """

    weighted: tuple[LayerGeometry, ...]
    spiking: tuple[SpikingLayer, ...]
    readout_neurons: int


def trace_structure(model: nn.Module, input_shape: tuple[int, ...]) -> ModelStructure:
    """Reads the activation -> (pooling) -> weighted-layer chains and shortcuts of ``model``.

    Args:
        model: The network (any model :func:`snnergy.structure.trace` describes).
        input_shape: Per-sample input shape, e.g. ``(1, 8, 8)``.

    Returns:
        The model's :class:`ModelStructure`.

    Raises:
        ConversionError: A layer or arrangement the plan cannot describe (named, with what to
            use instead).
        ConfigError: The forward fails on this shape.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        ...                     nn.Flatten(), nn.Linear(8, 3))
        >>> s = trace_structure(net, (1, 4, 4))
        >>> [(x.name, x.neuron_shape, x.next_layer.name, len(x.pools), x.kind) for x in s.spiking]
        [('1', (2, 4, 4), '4', 1, 'relu')]
        >>> [g.name for g in s.weighted], s.readout_neurons
        (['0', '4'], 3)
    """
    plan = trace(model, input_shape)
    gated = [b.name for s in plan.stages for b in s.branches if b.gate is not None]
    if gated:
        raise ConversionError(f"the synops penalty does not model max pooling's spike-count gate (before "
                              f"{', '.join(repr(g) for g in gated)}): use AvgPool2d, or the macs or per-layer "
                              "penalties")
    spiking = []
    for stage, following in zip(plan.stages, plan.stages[1:]):
        neuron = stage.neuron
        assert neuron is not None and following.main.source == neuron.name  # a chain: see structure.walk
        spiking.append(SpikingLayer(neuron.name, neuron.shape, following.main.geometry, following.main.pools,
                                    plan.readers(neuron.name), neuron.kind, "threshold" in neuron.parameters))
    return ModelStructure(plan.weighted, tuple(spiking), plan.readout_neurons)
