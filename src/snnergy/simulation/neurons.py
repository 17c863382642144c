"""Integrate-and-fire neurons and input encoding: the per-step math of the spiking simulation.

:class:`IFNeuron` holds a threshold and a reset rule, :func:`if_step` is one pure
integrate-fire-reset step on explicit state (Rueckauer et al. 2017, Front. Neurosci. 11:682), and
:func:`encode_poisson` turns static inputs ``(B, ...)`` into Bernoulli spike trains
``(T, B, ...)``, time first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from snnergy.config import RESETS
from snnergy.errors import ConfigError


@dataclass(frozen=True)
class IFNeuron:
    """Integrate-and-fire neuron without leak or voltage floor (Rueckauer et al. 2017).

    Args:
        threshold: Firing threshold (1 after data-based normalization).
        reset: ``"subtract"`` (reset by subtraction, keeps the surplus charge) or ``"zero"``.
        v0: Initial membrane potential as a fraction of the threshold, in [0, 1): every
            simulation starts the potentials at ``v0 * threshold`` (:meth:`initial`). 1/2 makes
            the spike count of a constant input ``x`` after ``T`` steps ``floor(T x + 1/2)``
            (rounding instead of flooring; Bu et al., ICLR 2022; Hao et al., ICLR 2023).

    Example:
        >>> spikes, v = IFNeuron()(torch.tensor([1.5]), torch.zeros(1))
        >>> spikes.item(), v.item()
        (1.0, 0.5)
        >>> IFNeuron(threshold=2.0, v0=0.5).initial(torch.zeros(2)).tolist()
        [1.0, 1.0]
    """

    threshold: float = 1.0
    reset: str = "subtract"
    v0: float = 0.0

    def __post_init__(self) -> None:
        if self.reset not in RESETS:
            raise ConfigError(f"unknown neuron reset '{self.reset}'; allowed: {', '.join(RESETS)}")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) \
                or not math.isfinite(self.threshold) or self.threshold <= 0:
            raise ConfigError(f"neuron threshold must be a positive number, got {self.threshold!r}")
        if isinstance(self.v0, bool) or not isinstance(self.v0, (int, float)) or not 0.0 <= self.v0 < 1.0:
            raise ConfigError(f"neuron v0 (initial potential, a fraction of the threshold) must be "
                              f"in [0, 1), got {self.v0!r}")

    def __call__(self, current: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        return if_step(current, v, self)

    def initial(self, like: Tensor) -> Tensor:
        """Potentials before the first step: ``v0 * threshold``, shaped and laid out like ``like``
        (with ``v0 = 0`` exactly the zeros of ``torch.zeros_like``)."""
        return torch.full_like(like, float(self.v0) * float(self.threshold))


def if_step(current: Tensor, v: Tensor, neuron: IFNeuron) -> tuple[Tensor, Tensor]:
    """One step of integrate-and-fire neurons: integrate, fire at most once, reset.

    Args:
        current: Input current of this step, any shape.
        v: Membrane potentials before the step, same shape.
        neuron: Threshold and reset rule.

    Returns:
        ``(spikes, v)``: spikes (0.0 or 1.0, dtype of ``v + current``) and the new potentials.

    Example:
        >>> v, counts = torch.zeros(1), []
        >>> for _ in range(5):  # 0.4 per step: v = 0.4, 0.8, 1.2 -> 0.2, 0.6, 1.0 -> 0
        ...     s, v = if_step(torch.tensor([0.4]), v, IFNeuron())
        ...     counts.append(int(s.item()))
        >>> counts
        [0, 0, 1, 0, 1]
    """
    v = v + current
    spikes = (v >= neuron.threshold).to(v.dtype)
    if neuron.reset == "subtract":
        v = v - spikes * neuron.threshold
    else:
        v = v * (1.0 - spikes)
    return spikes, v


def if_step_(current: Tensor, v: Tensor, neuron: IFNeuron, spikes: Tensor) -> Tensor:
    """In-place :func:`if_step`: updates ``v`` and writes the spikes into ``spikes``.

    The same arithmetic as :func:`if_step` (so the same spikes, bit for bit), without allocating
    new tensors each step: the fast simulator's hot loop.

    Args:
        current: Input current of this step.
        v: Membrane potentials, updated in place.
        neuron: Threshold and reset rule.
        spikes: Output buffer (dtype of ``v``), overwritten with 0.0 / 1.0.

    Returns:
        ``spikes``.

    Example:
        >>> v, s = torch.tensor([0.75]), torch.empty(1)
        >>> if_step_(torch.tensor([0.5]), v, IFNeuron(), s).item(), v.item()
        (1.0, 0.25)
    """
    v.add_(current)
    fired = torch.ge(v, neuron.threshold)
    spikes.copy_(fired)
    if neuron.reset == "subtract":
        v.sub_(spikes, alpha=neuron.threshold)
    else:
        v.masked_fill_(fired, 0.0)
    return spikes


def encode_poisson(x: Tensor, timesteps: int, generator: torch.Generator | None = None,
                   dtype: torch.dtype | None = None) -> Tensor:
    """Bernoulli ("Poisson") spike trains: each step spikes with probability ``clamp(x, 0, 1)``.

    Args:
        x: Inputs ``(B, ...)`` in [0, 1].
        timesteps: Number of steps ``T``.
        generator: Random generator on ``x``'s device (seeded for reproducibility).
        dtype: Of the result (``torch.bool`` takes a quarter of float32's memory); ``x``'s by default.

    Returns:
        ``(T, B, ...)`` spikes (0.0 or 1.0); the same draws whatever ``dtype``.

    Example:
        >>> encode_poisson(torch.tensor([[0.0, 1.0]]), 3).sum(0).tolist()
        [[0.0, 3.0]]
    """
    p = x.clamp(0, 1)
    draws = torch.rand((timesteps, *x.shape), generator=generator, device=x.device, dtype=x.dtype)
    return (draws < p).to(dtype or x.dtype)
