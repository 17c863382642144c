"""The building blocks of a converted network: a :class:`SpikingStage` (weightless ops, one
Conv2d/Linear layer, then integrate-and-fire neurons or the readout), the residual
:class:`Shortcut` s that add to a stage's current, and :class:`ChannelScale` (a normalized
identity branch)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn



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

    def total_current(self, x: Tensor, outputs: dict[str | None, Tensor]) -> Tensor:
        """Own current plus every shortcut's, each fed ``outputs[shortcut.source]``, in order."""
        current = self(x)
        for shortcut in self.shortcuts:
            current = current + shortcut(outputs[shortcut.source])
        return current

    def extra_repr(self) -> str:
        return f"name={self.name!r}, neuron_name={self.neuron_name!r}, spiking={self.spiking}"
