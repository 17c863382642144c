"""Trained-threshold activations: the layers a low-latency SNN is trained with.

- :class:`QCFS`, quantization-clip-floor-shift (Bu et al., ICLR 2022, "Optimal ANN-SNN Conversion
  for High-accuracy and Ultra-low-latency Spiking Neural Networks"):
  ``h(x) = theta * clip(floor(x * L / theta + 1/2) / L, 0, 1)``, the floor passed straight through
  in the backward pass, ``theta`` trained per layer (or per channel), ``L`` quantization levels.
- :class:`TrainedClip`, a trained clipping bound (Ho & Chang, DAC 2021, "TCL"):
  ``h(x) = clamp(x, 0, theta)``.

Both carry their own conversion scale: the converted SNN's threshold is ``theta`` (no percentile).
Their registry entries (:data:`snnergy.structure.ACTIVATIONS` ``qcfs`` and ``clip``) read
``threshold`` (a list: one value, or one per channel) and, for QCFS, ``levels`` off the module.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from snnergy.errors import ConfigError


def floor_ste(x: Tensor) -> Tensor:
    """``floor(x)`` forward, identity backward (the straight-through estimator).

    Example:
        >>> x = torch.tensor([0.4, 1.6], requires_grad=True)
        >>> y = floor_ste(x); y.sum().backward()
        >>> y.tolist(), x.grad.tolist()
        ([0.0, 1.0], [1.0, 1.0])
    """
    return x + (torch.floor(x) - x).detach()


class _TrainedThreshold(nn.Module):
    """A trainable positive threshold per layer (``channels=None``) or per channel (dim 1)."""

    def __init__(self, threshold: float = 1.0, channels: int | None = None) -> None:
        super().__init__()
        if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold > 0):
            raise ConfigError(f"an activation threshold must be a finite number > 0, got {threshold!r}")
        if channels is not None and (not isinstance(channels, int) or channels < 1):
            raise ConfigError(f"channels must be a positive integer or None, got {channels!r}")
        self.channelwise = channels is not None
        self.threshold = nn.Parameter(torch.full((channels or 1,), float(threshold)))

    def theta(self, x: Tensor) -> Tensor:
        """The threshold broadcast to ``x`` ``(B, C, ...)``."""
        if not self.channelwise:
            return self.threshold[0]
        return self.threshold.view(1, -1, *[1] * (x.dim() - 2))

    def extra_repr(self) -> str:
        values = self.threshold.detach().reshape(-1)
        shown = f"{float(values[0]):.4g}" if values.numel() == 1 else f"{values.numel()} channels"
        return f"threshold={shown}"


class QCFS(_TrainedThreshold):
    """Quantization-clip-floor-shift activation (Bu et al., ICLR 2022), ``L`` levels.

    Args:
        levels: Quantization levels ``L`` (the SNN reaches the ANN's output after about ``L`` steps).
        threshold: Initial ``theta``.
        channels: One ``theta`` per channel (dim 1) instead of one per layer.

    Example:
        >>> act = QCFS(levels=4, threshold=2.0)
        >>> act(torch.tensor([-1.0, 0.2, 0.3, 1.0, 5.0])).tolist()  # steps of theta / L = 0.5
        [0.0, 0.0, 0.5, 1.0, 2.0]
    """

    def __init__(self, levels: int = 8, threshold: float = 1.0, channels: int | None = None) -> None:
        super().__init__(threshold, channels)
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
            raise ConfigError(f"QCFS levels must be an integer >= 1, got {levels!r}")
        self.levels = levels

    def forward(self, x: Tensor) -> Tensor:
        theta = self.theta(x)
        return theta * torch.clamp(floor_ste(x * self.levels / theta + 0.5) / self.levels, 0.0, 1.0)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, {super().extra_repr()}"


class TrainedClip(_TrainedThreshold):
    """A trained clipping bound (Ho & Chang, DAC 2021): ``clamp(x, 0, theta)``.

    Example:
        >>> TrainedClip(threshold=2.0)(torch.tensor([-1.0, 1.5, 3.0])).tolist()
        [0.0, 1.5, 2.0]
    """

    def forward(self, x: Tensor) -> Tensor:
        return torch.minimum(torch.relu(x), self.theta(x))


def threshold_parameters(module: nn.Module | None) -> dict[str, object]:
    """``threshold`` (a list of floats) of a trained-threshold module, and ``levels`` for QCFS."""
    if not isinstance(module, _TrainedThreshold):
        return {}
    out: dict[str, object] = {"threshold": [float(v) for v in module.threshold.detach().reshape(-1).cpu()]}
    if isinstance(module, QCFS):
        out["levels"] = module.levels
    return out
