"""Lower bounds of a penalty's cost in a training step (issue 18 item 4), for ``training_step.py --floor``.

Three stand-in penalties, each as cheap as a real one could be at some level, timed in the same
rounds as the real ones:

- ``floor-zero``: one autograd node that takes every activation map and returns 0, with no
  gradient: what being in the graph costs (the node, the maps kept for the backward pass).
- ``floor-sum``: the plain sum of every activation map (PyTorch ``sum``; its gradient a broadcast
  per map, added to the layers' own gradient maps): the cheapest penalty that reads the maps.
- ``floor-synops-kernels``: the ``synops`` penalty's compiled kernels alone
  (:func:`snnergy.regularizers.compiled.energy_layers` forward, with fixed scales so the values
  come in the same read, and :func:`~snnergy.regularizers.compiled.energy_grads` backward), in one
  node, without the Python around them in :mod:`snnergy.regularizers.fused_energy` (running
  scales, interpolation, bookkeeping): what any rewrite of that Python could reach with today's
  kernels.

Not penalties a user would train with: the fixed scale (1.0) and the sum are stand-ins for timing.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from snnergy.counting import readers_fanout
from snnergy.errors import ConfigError
from snnergy.normalization import block_count
from snnergy.records import ActivityRecord
from snnergy.regularizers import compiled, trace_structure

FLOORS = ("floor-zero", "floor-sum", "floor-synops-kernels")


class _Zero(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, *maps: Tensor) -> Tensor:
        ctx.save_for_backward(*maps)
        return maps[0].new_zeros(())

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, ...]:
        return (None,) * len(ctx.saved_tensors)


class _SynOpsKernels(torch.autograd.Function):
    """``synops``' compiled forward and backward with fixed scales, nothing else."""

    @staticmethod
    def forward(ctx: Any, fanouts: tuple[Tensor, ...], *maps: Tensor) -> Tensor:
        ones = [True] * len(maps)
        found = compiled.energy_layers(maps, ones, [block_count(a.numel()) for a in maps], fanouts,
                                       [1.0] * len(maps), None, 0.999)
        ctx.save_for_backward(*maps)
        ctx.fanouts = fanouts
        return found.total.mean()  # type: ignore[union-attr]  # every scale known: the values came too

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        maps = ctx.saved_tensors
        rows = (grad / maps[0].shape[0]).expand(maps[0].shape[0])
        grads = compiled.energy_grads(maps, [True] * len(maps), [1.0] * len(maps), ctx.fanouts, None, rows,
                                      [True] * len(maps))
        return (None, *grads)


def bind_floor(name: str, model: nn.Module, input_shape: tuple[int, ...]) -> Callable[[ActivityRecord], Tensor]:
    """The stand-in penalty ``name`` (one of :data:`FLOORS`) for ``model``: ``penalty(record)``.

    Raises:
        ConfigError: An unknown name, or the synops kernels without a C compiler (or switched off).
    """
    spiking = trace_structure(model, input_shape).spiking
    names = [s.name for s in spiking]
    if name == "floor-zero":
        return lambda record: _Zero.apply(*[record.activations[n] for n in names])
    if name == "floor-sum":
        return lambda record: sum(record.activations[n].sum() for n in names)  # type: ignore[return-value]
    if name == "floor-synops-kernels":
        if not compiled.prepare():
            raise ConfigError(f"floor-synops-kernels needs the compiled kernels: {compiled.unavailable_reason()}")
        dtype = next(model.parameters()).dtype  # the maps' (the kernels read the fan-outs in it)
        fanouts = tuple(readers_fanout(s.readers, s.neuron_shape).to(dtype).contiguous() for s in spiking)
        return lambda record: _SynOpsKernels.apply(fanouts, *[record.activations[n] for n in names])
    raise ConfigError(f"unknown floor {name!r}; known: {', '.join(FLOORS)}")
