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


def gated_fanout(branch: Branch, neuron_shape: tuple[int, ...]) -> Tensor:
    """Fan-out of each neuron through a branch's max pooling (``branch.gate``): a spike that passes
    its window's gate reaches every output of the pooled position, so each neuron of a window has
    the pooled position's fan-out (0 outside every window). Multiply by the *passed* spikes.

    Example:
        >>> from torch import nn
        >>> from snnergy.structure import trace
        >>> net = nn.Sequential(nn.Conv2d(1, 1, 1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1, 3))
        >>> plan = trace(net, (1, 2, 2))
        >>> gated_fanout(plan.readers("1")[0], (1, 2, 2)).flatten().tolist()  # the pooled value feeds 3
        [3.0, 3.0, 3.0, 3.0]
    """
    gate = branch.gate
    if gate is None:
        raise ValueError(f"branch '{branch.name}' has no max pooling")
    (kh, kw), (c, h, w) = gate.kernel_size, gate.in_shape
    pooled = (c, h // kh, w // kw)
    fanout = identity_fanout(branch.in_shape, branch.pools, pooled) if branch.geometry is None \
        else neuron_fanout(branch.geometry, branch.pools, pooled)
    full = torch.zeros(neuron_shape, dtype=torch.float64)
    full[:, : pooled[1] * kh, : pooled[2] * kw] = fanout.repeat_interleave(kh, 1).repeat_interleave(kw, 2)
    return full


def readers_fanout(readers: Sequence[Branch], neuron_shape: tuple[int, ...], gated: bool | None = None) -> Tensor:
    """Fan-out of each neuron (float64, ``neuron_shape``) summed over the branches reading it.

    ``gated``: ``None`` sums every branch, a max-pooling one with :func:`gated_fanout` (as if every
    spike passed its gate: an upper bound, what the ``synops`` penalty uses); ``True`` only the
    max-pooling branches, ``False`` only the others (SNN counting multiplies the first by the
    spikes that passed, the second by all spikes).

    Example:
        >>> from torch import nn
        >>> from snnergy.structure import trace
        >>> plan = trace(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 4)), (2,))
        >>> readers_fanout(plan.readers("1"), (3,)).tolist()  # each of 3 neurons feeds 4 outputs
        [4.0, 4.0, 4.0]
    """
    total = torch.zeros(neuron_shape, dtype=torch.float64)
    for branch in readers:
        if gated is not None and (branch.gate is not None) != gated:
            continue
        if branch.gate is not None:
            total = total + gated_fanout(branch, neuron_shape)
        elif branch.geometry is None:
            total = total + identity_fanout(branch.in_shape, branch.pools, neuron_shape)
        else:
            total = total + neuron_fanout(branch.geometry, branch.pools, neuron_shape)
    return total
