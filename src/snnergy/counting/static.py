"""Static counts of a network, on NeuroBench's definitions (Yik et al., "NeuroBench", 2023/2025;
the ``neurobench`` 2.3 package, ``neurobench.metrics.static``): footprint, parameter count and
connection sparsity, of a DNN (any ``nn.Module``) and of the SNN its network plan converts to.

- *footprint*: bytes of every parameter and buffer at its stored precision
  (``numel * element_size``), NeuroBench's ``Footprint``;
- *parameter count*: elements of every parameter, NeuroBench's ``ParameterCount``;
- *connection sparsity*: the fraction of exactly-zero weights over the ``weight`` tensors of the
  Conv1d/2d/3d and Linear layers (biases and other layers not counted), NeuroBench's
  ``ConnectionSparsity`` (which rounds to 4 decimals; these functions do not).

The converted SNN is not needed for its static counts: conversion keeps every weighted layer of the
plan with its BatchNorm folded in (:attr:`snnergy.structure.Branch.layer`, a Conv2d/Linear with a
bias) and adds one ``ChannelScale`` per identity shortcut (one weight per channel with
``convert.channelwise``, else one); rescaling by positive percentiles keeps every zero weight zero.
Weight quantization (``convert.weight_bits``) may round small weights to zero: the plan cannot
say which, so :func:`plan_connection_sparsity` describes the float network.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from snnergy.structure import NetworkPlan

#: The layers whose weights NeuroBench's ``ConnectionSparsity`` counts (its ``STATELESS_LAYERS``).
CONNECTION_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
FLOAT32_BYTES = 4


def _bytes(tensors: Iterable[Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def footprint_bytes(model: nn.Module) -> int:
    """Bytes of ``model``'s parameters and buffers (NeuroBench ``Footprint``).

    Example:
        >>> footprint_bytes(nn.Linear(3, 2))  # (6 weights + 2 biases) x 4 bytes
        32
        >>> footprint_bytes(nn.BatchNorm1d(2))  # 2 + 2 parameters, 2 + 2 float buffers, one int64 counter
        40
    """
    return _bytes(model.parameters()) + _bytes(model.buffers())


def parameter_count(model: nn.Module) -> int:
    """Elements of ``model``'s parameters (NeuroBench ``ParameterCount``).

    Example:
        >>> parameter_count(nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1)))
        11
    """
    return sum(p.numel() for p in model.parameters())


def _zero_fraction(weights: Iterable[Tensor]) -> float:
    zeros = total = 0
    for weight in weights:
        zeros += int((weight == 0).sum())
        total += weight.numel()
    return zeros / total if total else 0.0


def connection_sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero weights of ``model``'s Conv/Linear layers (NeuroBench
    ``ConnectionSparsity``, unrounded); 0 without such layers.

    Example:
        >>> layer = nn.Linear(2, 2)
        >>> _ = layer.weight.data.copy_(torch.tensor([[0.0, 1.0], [2.0, 0.0]]))
        >>> connection_sparsity(nn.Sequential(layer, nn.ReLU()))  # 2 of 4 weights are zero
        0.5
    """
    return _zero_fraction(m.weight for m in model.modules() if isinstance(m, CONNECTION_LAYERS))


def _identity_scales(plan: NetworkPlan, channelwise: bool) -> int:
    """Weights of the converted network's identity shortcuts (``ChannelScale``)."""
    return sum((b.out_shape[0] if channelwise and b.out_shape else 1)
               for s in plan.stages for b in s.shortcuts if b.layer is None)


def plan_footprint_bytes(plan: NetworkPlan, channelwise: bool = False) -> int:
    """Bytes of the SNN that ``plan`` converts to: each weighted branch's folded layer (weights and
    bias) plus a float32 weight per identity shortcut scale (one per channel with ``channelwise``).

    Example:
        >>> from snnergy.structure import trace
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.BatchNorm2d(2), nn.ReLU(),
        ...                     nn.Flatten(), nn.Linear(8, 3))
        >>> plan_footprint_bytes(trace(net.eval(), (1, 4, 4)))  # conv 18 + folded bias 2, linear 24 + 3
        188
    """
    layers = [b.layer for s in plan.stages for b in s.branches if b.layer is not None]
    return sum(footprint_bytes(layer) for layer in layers) + FLOAT32_BYTES * _identity_scales(plan, channelwise)


def plan_connection_sparsity(plan: NetworkPlan) -> float:
    """Fraction of exactly-zero weights over the folded Conv/Linear layers of ``plan`` (the
    converted float network's NeuroBench ``ConnectionSparsity``; identity scales are not
    Conv/Linear layers and are not counted, as NeuroBench would not).

    Example:
        >>> from snnergy.structure import trace
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
        >>> _ = net[0].weight.data.copy_(torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
        >>> plan_connection_sparsity(trace(net, (2,)))  # 1 zero of 4 + 2 weights
        0.16666666666666666
    """
    return _zero_fraction(b.layer.weight for s in plan.stages for b in s.branches
                          if isinstance(b.layer, CONNECTION_LAYERS))


def plan_neurons(plan: NetworkPlan) -> dict[str, int]:
    """Elements per sample of each activation layer (the SNN's spiking neurons), by name.

    Example:
        >>> from snnergy.structure import trace
        >>> plan_neurons(trace(nn.Sequential(nn.Linear(2, 5), nn.ReLU(), nn.Linear(5, 1)), (2,)))
        {'1': 5}
    """
    return {a.name: math.prod(a.shape) for a in plan.activations}


__all__ = [
    "CONNECTION_LAYERS", "connection_sparsity", "footprint_bytes", "parameter_count",
    "plan_connection_sparsity", "plan_footprint_bytes", "plan_neurons",
]
