"""Operation counting: fan-out, nominal/dense/effective MACs, SynOps and sparsity.

One fan-out implementation serves both networks (docs/design.md, "Definitions"):

- the *fan-out* of an input element of a Conv2d/Linear layer is the number of MACs it takes part
  in, exact at borders, strides, padding, dilation and groups (:func:`fanout_map`);
- *dense* MACs sum the fan-out over all inputs (NeuroBench "Dense": every input non-zero, zero
  padding not counted); *nominal* MACs are the ptflops/thop count, padding included;
- *effective* MACs (zero-skipping DNN hardware) sum the fan-out over the non-zero inputs of a
  layer's actual input (:func:`effective_macs`);
- *SynOps* (SNN) sum, over all spikes, the spiking neuron's fan-out into the next weighted layer,
  through any average pooling in between (:func:`neuron_fanout`, :func:`weighted_events`), plus
  its fan-out into residual shortcuts: a shortcut's Conv2d/Linear like any weighted layer, an
  identity shortcut one operation per element (:func:`identity_fanout`).

:mod:`snnergy.counting.dnn` adds up a DNN's counts over recorded batches (:class:`DNNCounter`);
:mod:`snnergy.counting.snn` turns a simulation's spike counts into SynOps, input MACs and neuron
updates (:func:`count_snn`).

Everything is per sample with layout ``(B, ...)``; sums are float64 so that they are exact
integers for realistic sizes (below 2**53).
"""

from snnergy.counting.dnn import DNNCounter, DNNCounts
from snnergy.counting.geometry import layer_geometries
from snnergy.counting.ops import (
    dense_macs,
    effective_macs,
    fanout_map,
    identity_fanout,
    neuron_fanout,
    nominal_macs,
    sparsity_counts,
    weighted_events,
)
from snnergy.counting.readers import readers_fanout
from snnergy.counting.snn import SNNCounts, count_snn, input_macs
from snnergy.structure.geometry import geometry_of, pool_geometry

__all__ = [
    "DNNCounter", "DNNCounts", "SNNCounts", "count_snn", "input_macs",
    "dense_macs", "effective_macs", "fanout_map", "geometry_of", "identity_fanout", "layer_geometries",
    "neuron_fanout", "nominal_macs", "pool_geometry", "readers_fanout", "sparsity_counts", "weighted_events",
]
