"""The building blocks of a converted network: a :class:`SpikingStage` (weightless ops, one
Conv2d/Linear layer, then integrate-and-fire neurons or the readout), the residual
:class:`Shortcut` s that add to a stage's current, and :class:`ChannelScale` (a normalized
identity branch)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def gate_max_pool(pool: nn.MaxPool2d, spikes: Tensor, before: Tensor) -> tuple[Tensor, Tensor]:
    """Max pooling of spike trains by spike-count gating (Rueckauer et al. 2017, Front. Neurosci.
    11:682, section 2.2.6): at each step every window passes the spike of its neuron with the most
    spikes so far (steps 1..t, this step included; the first in the window on a tie), so a
    window's output rate tends to its neurons' highest rate, the max pooling of the rates.

    Args:
        pool: The DNN's ``nn.MaxPool2d`` (kernel = stride, no padding: non-overlapping windows).
        spikes: ``(n, B, C, H, W)`` spikes of ``n`` consecutive steps.
        before: ``(B, C, H, W)`` each neuron's spikes before these steps.

    Returns:
        ``(pooled, passed)``: the windows' output spikes ``(n, B, C, H', W')`` and, per neuron,
        its spikes that passed ``(n, B, C, H, W)`` (what SynOps count).

    Example:
        >>> pool = nn.MaxPool2d(2)
        >>> # one window of 4 neurons, 3 steps; neuron 1 has spiked twice before, neuron 2 once
        >>> spikes = torch.tensor([[1., 0, 1, 0], [0, 1, 1, 0], [0, 0, 1, 0]]).view(3, 1, 1, 2, 2)
        >>> before = torch.tensor([0., 2, 1, 0]).view(1, 1, 2, 2)
        >>> # counts after each step: [1,2,2,0] -> neuron 1 (its spike: 0); [1,3,3,0] -> neuron 1
        >>> # (spikes: 1); [1,3,4,0] -> neuron 2 (spikes: 1)
        >>> pooled, passed = gate_max_pool(pool, spikes, before)
        >>> pooled.flatten().tolist(), passed.sum(0).flatten().tolist()
        ([0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 0.0])
    """
    n, b, c, h, w = spikes.shape
    counts = (before.unsqueeze(0) + spikes.cumsum(0)).reshape(n * b, c, h, w)
    _, index = F.max_pool2d(counts, pool.kernel_size, pool.stride, 0, 1, False, return_indices=True)
    flat = spikes.reshape(n * b, c, h * w)
    picks = index.flatten(2)
    pooled = flat.gather(2, picks).view(n, b, *index.shape[1:])
    mask = torch.zeros_like(flat).scatter_(2, picks, 1.0)
    return pooled, (flat * mask).view(n, b, c, h, w)



class ChannelScale(nn.Module):
    """Multiplies each channel (dim 1) by its own weight: a normalized identity branch.

    An identity shortcut of the DNN adds the source activation ``a`` to the sum; after
    normalization the source spikes at rate ``a / lambda_src`` and the sum is divided by
    ``lambda_out``, so the branch carries ``a * lambda_src / lambda_out``: one weight per channel
    (or one for all, ``features=1``). Each input element feeds one output element.

    Args:
        features: Channels (size of dim 1), or 1 for one shared weight.

    Example:
        >>> scale = ChannelScale(2)
        >>> with torch.no_grad():
        ...     _ = scale.weight.copy_(torch.tensor([2.0, 0.5]))
        >>> scale(torch.ones(1, 2, 1, 1)).flatten().tolist()
        [2.0, 0.5]
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.features = int(features)
        self.weight = nn.Parameter(torch.ones(self.features))

    def forward(self, x: Tensor) -> Tensor:
        """``x * weight`` broadcast over dim 1 of ``x`` ``(B, C, ...)``."""
        return x * self.weight.view(1, -1, *[1] * (x.dim() - 2))

    def extra_repr(self) -> str:
        return f"features={self.features}"


class Shortcut(nn.Module):
    """A residual branch into a stage: an earlier layer's spikes through linear ops.

    Args:
        name: For reports: the DNN module of its weighted op (e.g. ``"layer2.0.shortcut.0"``) or
            ``"identity:<source>"``.
        source: Neuron name of an earlier stage whose spikes feed it, ``None`` for the input.
        pre: Weightless ops before ``layer`` (AvgPool2d, Flatten).
        layer: Conv2d, Linear (BN folded, normalized) or :class:`ChannelScale` (identity).
    """

    def __init__(self, name: str, source: str | None, pre: nn.Sequential,
                 layer: nn.Conv2d | nn.Linear | ChannelScale) -> None:
        super().__init__()
        self.name = name
        self.source = source
        self.pre = pre
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        """The branch's current for the source's output ``x`` ``(B, ...)``."""
        return self.layer(self.pre(x))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, source={self.source!r}"


class SpikingStage(nn.Module):
    """One weighted layer of the SNN with the weightless ops before it and its neurons.

    Args:
        name: The DNN weighted layer's name (e.g. ``"conv2"``).
        neuron_name: The DNN ReLU's name (e.g. ``"relu2"``), ``None`` for the readout.
        pre: Linear, weightless ops between the previous neurons and ``layer`` (AvgPool2d, Flatten).
        layer: The Conv2d or Linear layer (BN folded, weights normalized).
        spiking: Whether IF neurons follow (``False`` only for the last stage, the readout).
        shortcuts: Residual branches whose currents add to ``layer``'s, in this order.
    """

    def __init__(self, name: str, neuron_name: str | None, pre: nn.Sequential,
                 layer: nn.Conv2d | nn.Linear, spiking: bool, shortcuts: Sequence[Shortcut] = ()) -> None:
        super().__init__()
        self.name = name
        self.neuron_name = neuron_name
        self.pre = pre
        self.layer = layer
        self.spiking = spiking
        self.shortcuts = nn.ModuleList(shortcuts)

    def forward(self, x: Tensor) -> Tensor:
        """The current of the stage's own layer for input ``x`` ``(B, ...)`` (shortcuts excluded)."""
        return self.layer(self.pre(x))

    @property
    def gate(self) -> nn.MaxPool2d | None:
        """The max pooling right after the previous neurons (``pre[0]``), which the simulation
        computes by spike-count gating (:func:`gate_max_pool`); ``None`` without one."""
        first = self.pre[0] if len(self.pre) else None
        return first if isinstance(first, nn.MaxPool2d) else None

    def after_gate(self, x: Tensor) -> Tensor:
        """The current for the gated (max-pooled) spikes ``x``: the ops after :attr:`gate`, then the layer."""
        for op in list(self.pre)[1:]:
            x = op(x)
        return self.layer(x)

    def total_current(self, x: Tensor, outputs: dict[str | None, Tensor]) -> Tensor:
        """Own current plus every shortcut's, each fed ``outputs[shortcut.source]``, in order."""
        current = self(x)
        for shortcut in self.shortcuts:
            current = current + shortcut(outputs[shortcut.source])
        return current

    def extra_repr(self) -> str:
        return f"name={self.name!r}, neuron_name={self.neuron_name!r}, spiking={self.spiking}"
