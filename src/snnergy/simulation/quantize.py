"""Weight quantization of a converted spiking network: symmetric, uniform, per layer or per channel.

Neuromorphic chips hold synaptic weights at low precision (Loihi: up to 8 bits; Davies et al.,
IEEE Micro 2018). :func:`quantize_weights` rounds every weighted layer of a
:class:`~snnergy.simulation.SpikingNetwork` (each stage's Conv2d/Linear and each shortcut's
Conv2d/Linear or :class:`~snnergy.simulation.ChannelScale`) to a signed ``bits``-bit grid, the
symmetric scheme of Jacob et al. (CVPR 2018) and Krishnamoorthi (arXiv:1806.08342, 2018, section
2.1): with ``q_max = 2^(bits-1) - 1`` and ``scale = max|w| / q_max`` (over the layer, or over each
output channel),

    w_q = clamp(round(w / scale), -q_max, q_max) * scale,

so zero stays exactly zero and ``|w - w_q| <= scale / 2``. The returned network holds the
dequantized values ("fake quantization", Krishnamoorthi 2018, section 3.1): the simulator computes
with exactly the values an integer chip would hold, times one float per layer or channel.

Biases stay in float32: an integer accelerator keeps them at 32 bits (Jacob et al. 2018, section
2.4: int32 biases at the accumulator's scale), fine enough that their rounding is negligible, and
an IF neuron's bias is a constant input current, not a synapse. Thresholds are unchanged (1 after
conversion's normalization).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from snnergy.errors import ConfigError
from snnergy.simulation.network import SpikingNetwork

#: Supported weight widths (2 bits: the levels -1, 0, 1; 16 bits: finer than any chip here).
BITS = tuple(range(2, 17))


def check_bits(bits: object, where: str = "bits") -> int:
    """``bits`` as an int in :data:`BITS`, else a :class:`ConfigError` naming ``where``.

    Example:
        >>> check_bits(8)
        8
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in BITS:
        raise ConfigError(f"{where} must be an integer in [{BITS[0]}, {BITS[-1]}], got {bits!r}")
    return int(bits)


def quantize_tensor(weight: Tensor, bits: int, per_channel: bool = False) -> tuple[Tensor, Tensor]:
    """Symmetric uniform quantization of ``weight``: the dequantized tensor and its scale(s).

    Args:
        weight: A layer's weight, output channels on dim 0 (Conv2d, Linear, ChannelScale).
        bits: Width in :data:`BITS`.
        per_channel: One scale per output channel (dim 0) instead of one for the tensor.

    Returns:
        ``(w_q, scale)``: ``w_q`` like ``weight``; ``scale`` a 0-d tensor, or ``(C,)`` per channel.
        An all-zero tensor (or channel) gets scale 1 and stays zero.

    Example:
        >>> w_q, scale = quantize_tensor(torch.tensor([0.9, -0.3, 0.05]), 2)
        >>> w_q.tolist(), round(float(scale), 3)
        ([0.8999999761581421, -0.0, 0.0], 0.9)
    """
    q_max = 2 ** (check_bits(bits) - 1) - 1
    flat = weight.detach().reshape(weight.shape[0], -1) if per_channel and weight.dim() > 0 else weight.detach().reshape(1, -1)
    peak = flat.abs().amax(dim=1)
    scale = torch.where(peak > 0, peak / q_max, torch.ones_like(peak))
    q = torch.clamp(torch.round(flat / scale[:, None]), -q_max, q_max)
    w_q = (q * scale[:, None]).reshape(weight.shape).to(weight.dtype)
    return w_q, (scale if per_channel and weight.dim() > 0 else scale[0])


def weighted_layers(snn: SpikingNetwork) -> list[tuple[str, nn.Module]]:
    """Every weighted layer of ``snn`` by name: each stage's layer, then its shortcuts' layers."""
    found = []
    for stage in snn.stages:
        found.append((stage.name, stage.layer))
        found += [(f"{stage.name}/{c.name}", c.layer) for c in stage.shortcuts]
    return found


def quantize_weights(snn: SpikingNetwork, bits: int, per_channel: bool = False) -> SpikingNetwork:
    """A copy of ``snn`` with every weight rounded to a signed ``bits``-bit grid (biases in float).

    Args:
        snn: The converted network; left untouched.
        bits: Weight width, an integer in [2, 16].
        per_channel: One scale per output channel instead of one per layer.

    Returns:
        The copy, its :attr:`~snnergy.simulation.SpikingNetwork.weight_bits` and
        ``weight_per_channel`` set (its spec records them).

    Raises:
        ConfigError: ``bits`` is not an integer in [2, 16], or ``snn`` is already quantized.

    Example:
        >>> from snnergy.simulation import SpikingStage
        >>> layer = nn.Linear(2, 1)
        >>> with torch.no_grad():
        ...     _ = layer.weight.copy_(torch.tensor([[0.7, -0.2]])); _ = layer.bias.fill_(0.01)
        >>> snn = SpikingNetwork([SpikingStage("fc", None, nn.Sequential(), layer, False)], (2,))
        >>> q = quantize_weights(snn, 3)  # q_max = 3, scale = 0.7 / 3: -0.2 -> round(-0.857) = -1
        >>> [round(v, 4) for v in q.stages[0].layer.weight.flatten().tolist()], q.weight_bits
        ([0.7, -0.2333], 3)
        >>> round(float(q.stages[0].layer.bias.detach()), 2), float(snn.stages[0].layer.weight.detach()[0, 1])  # untouched
        (0.01, -0.20000000298023224)
    """
    bits = check_bits(bits)
    if not isinstance(per_channel, bool):
        raise ConfigError(f"per_channel must be true or false, got {per_channel!r}")
    if snn.weight_bits is not None:
        raise ConfigError(f"this network's weights are already quantized to {snn.weight_bits} bits")
    out = copy.deepcopy(snn)
    with torch.no_grad():
        for _, layer in weighted_layers(out):
            weight = layer.weight
            w_q, _ = quantize_tensor(weight, bits, per_channel)
            weight.copy_(w_q)
    out.weight_bits, out.weight_per_channel = bits, per_channel
    return out


__all__ = ["BITS", "check_bits", "quantize_tensor", "quantize_weights", "weighted_layers"]
