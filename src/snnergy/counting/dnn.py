"""DNN counts: per-layer nominal/dense/effective MACs, input density and activation sparsity.

Counts follow docs/design.md: effective MACs count, for each Conv/Linear layer, the fan-out of every
non-zero value of that layer's *actual* input (what a zero-skipping accelerator sees, after pooling
and flattening); sparsity is the fraction of exact zeros in each post-ReLU map.
:class:`DNNCounter` adds them up batch by batch from recorded activations and layer inputs
(:class:`~snnergy.activity.ActivityRecorder` records them; :func:`snnergy.experiments.measure`
runs the forward passes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from torch import Tensor

from snnergy.counting.ops import dense_macs, effective_macs, nominal_macs, sparsity_counts
from snnergy.records import LayerCounts, LayerGeometry


@dataclass(frozen=True)
class DNNCounts:
    """A DNN's counts per sample.

    Attributes:
        layers: By weighted layer name, its MACs and input density.
        sparsity: By activation name, the fraction of exact zeros.
    """

    layers: dict[str, LayerCounts]
    sparsity: dict[str, float]

    @property
    def macs_nominal(self) -> float:
        return sum(layer.macs_nominal for layer in self.layers.values())

    @property
    def macs_dense(self) -> float:
        return sum(layer.macs_dense for layer in self.layers.values())

    @property
    def macs_effective(self) -> float:
        return sum(layer.macs_effective for layer in self.layers.values())


class DNNCounter:
    """Adds up a DNN's counts over batches of recorded activations and layer inputs.

    Args:
        geometries: Every weighted layer's geometry (:func:`~snnergy.counting.layer_geometries`).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from snnergy.counting import layer_geometries
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
        >>> counter = DNNCounter(layer_geometries(net, (2,)))
        >>> counter.add({"1": torch.tensor([[0.0, 1.0, 0.0]])}, {"0": torch.tensor([[1.0, 0.0]])})
        >>> counts = counter.counts(samples=1)
        >>> counts.macs_effective, counts.macs_dense, counts.sparsity
        (3.0, 6.0, {'1': 0.6666666666666666})
    """

    def __init__(self, geometries: Iterable[LayerGeometry]) -> None:
        self.geometries = {g.name: g for g in geometries}
        self.zeros: dict[str, int] = {}
        self.elements: dict[str, int] = {}
        self.effective: dict[str, float] = {}
        self.nonzero: dict[str, int] = {}

    def add(self, activations: Mapping[str, Tensor], layer_inputs: Mapping[str, Tensor]) -> None:
        """Counts one batch: its activation maps and each weighted layer's input, by name."""
        for name, act in activations.items():
            z, n = sparsity_counts(act)
            self.zeros[name] = self.zeros.get(name, 0) + z
            self.elements[name] = self.elements.get(name, 0) + n
        for name, inp in layer_inputs.items():
            self.effective[name] = self.effective.get(name, 0.0) + float(effective_macs(self.geometries[name], inp).sum())
            self.nonzero[name] = self.nonzero.get(name, 0) + int((inp != 0).sum())

    def counts(self, samples: int) -> DNNCounts:
        """The counts per sample over the ``samples`` counted so far (``samples`` >= 1)."""
        layers = {}
        for name, geom in self.geometries.items():
            per_sample = self.effective.get(name, 0.0) / samples
            in_size = 1
            for d in geom.in_shape:
                in_size *= d
            layers[name] = LayerCounts(
                macs_nominal=float(nominal_macs(geom)),
                macs_dense=float(dense_macs(geom)),
                macs_effective=per_sample,
                input_density=self.nonzero.get(name, 0) / (samples * in_size),
            )
        sparsity = {name: self.zeros[name] / self.elements[name] for name in self.zeros}
        return DNNCounts(layers, sparsity)


__all__ = ["DNNCounter", "DNNCounts"]
