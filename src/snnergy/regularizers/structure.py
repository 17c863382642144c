"""The structure a model-aware penalty needs: which activation feeds which weighted layer, how.

:func:`trace_structure` runs one dummy forward pass (one all-zero sample, eval mode, no
gradient; every submodule's mode is restored) and reads, in call order, each activation module
(``nn.ReLU``: the neurons of the converted SNN), the average poolings after it and the weighted
layer (Conv2d/Linear) it feeds. The geometries come from :mod:`snnergy.counting`, so a penalty
built on them counts exactly as SynOps and effective MACs are counted after training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from snnergy.counting import layer_geometries, pool_geometry
from snnergy.counting.geometry import dummy_forward
from snnergy.errors import ConfigError, SnnergyError
from snnergy.records import LayerGeometry, PoolGeometry

ACTIVATION = nn.ReLU
"""The activation modules whose outputs are recorded (as ``snnergy.activity`` records them)."""

PASS_THROUGH = (nn.Flatten, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
"""Modules that may sit between an activation and the next weighted layer besides AvgPool2d:
a reshape or (at conversion) nothing, so a spike keeps its fan-out through them."""


@dataclass(frozen=True)
class SpikingLayer:
    """One activation layer (a spiking layer after conversion) and what its output feeds.

    Attributes:
        name: The activation module's qualified name (the key of ``ActivityRecord.activations``).
        neuron_shape: Per-sample shape of its output.
        next_layer: The weighted layer it feeds.
        pools: The average poolings in between, in forward order.
    """

    name: str
    neuron_shape: tuple[int, ...]
    next_layer: LayerGeometry
    pools: tuple[PoolGeometry, ...]


@dataclass(frozen=True)
class ModelStructure:
    """What energy-aware penalties need to know of a model, read once before training.

    Attributes:
        weighted: Every weighted layer in forward order; the first one sees the data.
        spiking: Every activation layer with the weighted layer it feeds, in forward order.
        readout_neurons: Output elements of the last weighted layer (its neurons are updated
            every step of the SNN, as the readout).
    """

    weighted: tuple[LayerGeometry, ...]
    spiking: tuple[SpikingLayer, ...]
    readout_neurons: int


def trace_structure(model: nn.Module, input_shape: tuple[int, ...]) -> ModelStructure:
    """Reads the activation -> (pooling) -> weighted-layer chains of ``model``.

    Args:
        model: The network (a forward made of modules; functional calls are not seen).
        input_shape: Per-sample input shape, e.g. ``(1, 8, 8)``.

    Returns:
        The model's :class:`ModelStructure`.

    Raises:
        ConfigError: The forward fails on this shape; an activation feeds another activation,
            feeds no weighted layer, or reaches it through a module other than AvgPool2d,
            Flatten, Dropout or Identity (spikes through such a module have no fan-out that
            SynOps could count); an activation module runs twice in one pass.
        SnnergyError: A weighted layer that counting does not support.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        ...                     nn.Flatten(), nn.Linear(8, 3))
        >>> s = trace_structure(net, (1, 4, 4))
        >>> [(x.name, x.neuron_shape, x.next_layer.name, len(x.pools)) for x in s.spiking]
        [('1', (2, 4, 4), '4', 1)]
        >>> [g.name for g in s.weighted], s.readout_neurons
        (['0', '4'], 3)
    """
    geometries = iter(layer_geometries(model, input_shape))  # refuses uncountable layers
    calls = _leaf_calls(model, tuple(int(d) for d in input_shape))
    weighted: list[LayerGeometry] = []
    spiking: list[SpikingLayer] = []
    pending: tuple[str, tuple[int, ...]] | None = None
    pools: list[PoolGeometry] = []
    for name, module, in_shape, out_shape in calls:
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            geom = next(geometries)
            weighted.append(geom)
            if pending is not None:
                spiking.append(SpikingLayer(pending[0], pending[1], geom, tuple(pools)))
            pending, pools = None, []
        elif isinstance(module, ACTIVATION):
            if pending is not None:
                raise ConfigError(
                    f"activation '{name}' follows activation '{pending[0]}' without a weighted "
                    "layer between them; put a Conv2d/Linear between activations"
                )
            if any(s.name == name for s in spiking):
                raise ConfigError(
                    f"activation '{name}' runs twice in one forward pass; use a separate module "
                    "instance at each place in the model"
                )
            pending, pools = (name, out_shape), []
        elif pending is None or isinstance(module, PASS_THROUGH):
            continue  # before the first activation, or between a weighted layer and its ReLU
        elif isinstance(module, nn.AvgPool2d):
            pools.append(pool_geometry(module, in_shape))  # type: ignore[arg-type]
        else:
            raise ConfigError(
                f"module '{name}' ({type(module).__name__}) sits between activation "
                f"'{pending[0]}' and the next weighted layer; a spike's fan-out is counted "
                "through AvgPool2d, Flatten and Dropout only (use AvgPool2d for pooling)"
            )
    if pending is not None:
        raise ConfigError(
            f"activation '{pending[0]}' feeds no weighted layer; the model must end with a "
            "Linear layer giving the logits"
        )
    if not weighted:
        raise ConfigError(f"{type(model).__name__} runs no Conv2d or Linear layer")
    readout = 1
    for d in weighted[-1].out_shape:
        readout *= d
    return ModelStructure(tuple(weighted), tuple(spiking), readout)


def _leaf_calls(
    model: nn.Module, input_shape: tuple[int, ...]
) -> list[tuple[str, nn.Module, tuple[int, ...], tuple[int, ...]]]:
    """``(name, module, in_shape, out_shape)`` of every leaf-module call of one dummy pass."""
    calls: list[tuple[str, nn.Module, tuple[int, ...], tuple[int, ...]]] = []
    handles = []
    for name, module in model.named_modules():
        if next(module.children(), None) is None:

            def hook(mod: nn.Module, args: tuple, out: object, name: str = name) -> None:
                first = args[0] if args and isinstance(args[0], Tensor) else None
                if first is None or not isinstance(out, Tensor):
                    raise SnnergyError(f"module '{name}' does not map a tensor to a tensor")
                calls.append((name, mod, tuple(first.shape[1:]), tuple(out.shape[1:])))

            handles.append(module.register_forward_hook(hook))
    dummy_forward(model, input_shape, handles)
    return calls
