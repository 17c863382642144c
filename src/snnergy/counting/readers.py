"""Fan-out of a spiking layer into every branch that reads it, from the network plan.

A spike of an activation layer reaches the next stage's weighted layer and every shortcut that
reads the same layer (:meth:`snnergy.structure.NetworkPlan.readers`): through a weighted branch it
costs that layer's exact fan-out (:func:`~snnergy.counting.neuron_fanout`), through an identity
branch one accumulate per element it reaches (:func:`~snnergy.counting.identity_fanout`).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from snnergy.counting.ops import identity_fanout, neuron_fanout
from snnergy.structure import Branch


def readers_fanout(readers: Sequence[Branch], neuron_shape: tuple[int, ...]) -> Tensor:
    """Fan-out of each neuron (float64, ``neuron_shape``) summed over the branches reading it.

    Example:
        >>> from torch import nn
        >>> from snnergy.structure import trace
        >>> plan = trace(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 4)), (2,))
        >>> readers_fanout(plan.readers("1"), (3,)).tolist()  # each of 3 neurons feeds 4 outputs
        [4.0, 4.0, 4.0]
    """
    total = torch.zeros(neuron_shape, dtype=torch.float64)
    for branch in readers:
        if branch.geometry is None:
            total = total + identity_fanout(branch.in_shape, branch.pools, neuron_shape)
        else:
            total = total + neuron_fanout(branch.geometry, branch.pools, neuron_shape)
    return total
