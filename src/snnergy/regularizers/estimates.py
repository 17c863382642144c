"""The estimates behind the energy-aware penalties, as pure functions of tensors.

Rates from normalized activations, their fan-out-weighted sum (expected SynOps per timestep), a
smooth count of non-zero inputs (effective MACs), running scales, and the budget. The batch
percentile that the running scales follow is :func:`snnergy.normalization.nonzero_percentile`, the
converter's own definition (re-exported here). :mod:`snnergy.regularizers.energy_aware` documents
the formulas and binds them to a model.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from snnergy.errors import SnnergyError
from snnergy.normalization import nonzero_percentile

__all__ = [
    "MACS_EPS", "SCALE_MOMENTUM", "budget_excess", "expected_synops", "nonzero_percentile",
    "scale_with_gradient", "smooth_macs", "update_scale",
]

MACS_EPS = 0.1
"""``eps`` of the smooth non-zero indicator ``s(r) = |r| / (|r| + eps)`` (see energy_aware)."""
SCALE_MOMENTUM = 0.1
"""Weight of each batch's percentile in the running scale (as SpikingJelly's converter, 0.1)."""


def scale_with_gradient(running: Tensor, batch: Tensor) -> Tensor:
    """The running scale's value with the batch percentile's gradient: ``running * b / sg(b)``.

    The value is the running estimate (stable across batches); the gradient is that of the
    converter's scale as a function of the activations, estimated on the batch (``sg`` stops the
    gradient). Where either is NaN (never seen, silent in this batch) the factor is 1, and a
    never-seen scale is 1 (the converter's scale of a silent layer).

    Example:
        >>> b = torch.tensor(2.0, requires_grad=True)
        >>> lam = scale_with_gradient(torch.tensor(3.0), b)
        >>> lam.item(), torch.autograd.grad(lam, b)[0].item()  # value 3, d/db = 3 / 2
        (3.0, 1.5)
    """
    factor = batch / batch.detach()
    factor = torch.where(torch.isfinite(factor), factor, torch.ones_like(factor))
    return torch.nan_to_num(running.to(factor), nan=1.0) * factor


def update_scale(scale: Tensor | None, observed: Tensor, momentum: float = SCALE_MOMENTUM) -> Tensor:
    """One step of a running scale: ``(1 - momentum) * scale + momentum * observed``.

    NaN means "not seen yet": an observed NaN keeps the old value, and the first observed value
    replaces a NaN (or a missing ``scale``) as it is.

    Example:
        >>> update_scale(None, torch.tensor([2.0, math.nan])).tolist()
        [2.0, nan]
        >>> update_scale(torch.tensor([2.0, math.nan]), torch.tensor([4.0, 1.0]), 0.5).tolist()
        [3.0, 1.0]
    """
    observed = observed.detach()
    scale = None if scale is None else scale.detach().to(observed.device)
    if scale is None:
        return observed.clone()
    blended = (1.0 - momentum) * scale + momentum * observed
    return torch.where(torch.isnan(observed), scale, torch.where(torch.isnan(scale), observed, blended))


def _broadcast(scale: Tensor, a: Tensor) -> Tensor:
    """A per-layer (0-d) or per-channel ``(C,)`` scale shaped to divide ``(B, C, ...)`` maps.

    A scale never observed (NaN: the layer or channel has been silent) is 1, as the converter
    sets it; the map is zero there, so it does not change the value.
    """
    scale = torch.nan_to_num(scale, nan=1.0).to(device=a.device, dtype=a.dtype)
    if scale.dim() == 0:
        return scale
    return scale.view(1, -1, *[1] * (a.dim() - 2))


def expected_synops(maps: Sequence[Tensor], fanouts: Sequence[Tensor], scales: Sequence[Tensor]) -> Tensor:
    """Expected SynOps per timestep of the converted SNN, per sample: ``sum min(a/lambda, 1) * f``.

    Args:
        maps: Each activation layer's map ``(B, *S_l)``.
        fanouts: Each layer's neuron fan-out, shape ``S_l`` (:func:`~snnergy.counting.neuron_fanout`).
        scales: Each layer's scale lambda, 0-d or per channel ``(C,)``; NaN counts as 1.

    Returns:
        ``(B,)`` in the maps' dtype, differentiable in the maps.

    Example:
        >>> a = torch.tensor([[0.0, 1.0, 2.0, 8.0]])  # rates 0, 1/4, 1/2, 1 (capped) with lambda 4
        >>> expected_synops([a], [torch.tensor([1.0, 2.0, 2.0, 2.0])], [torch.tensor(4.0)])
        tensor([3.5000])
    """
    if not maps:
        raise SnnergyError("expected_synops needs at least one activation map")
    total = None
    for a, f, lam in zip(maps, fanouts, scales, strict=True):
        rate = (a / _broadcast(lam, a)).clamp(max=1.0)
        value = (rate * f.to(device=a.device, dtype=a.dtype)).reshape(a.shape[0], -1).sum(dim=1)
        total = value if total is None else total + value
    return total  # type: ignore[return-value]


def smooth_macs(inputs: Sequence[Tensor], fanouts: Sequence[Tensor], scales: Sequence[Tensor],
                eps: float = MACS_EPS) -> Tensor:
    """Smooth effective MACs per sample: ``sum f * s(x / mu)``, ``s(r) = |r| / (|r| + eps)``.

    Args:
        inputs: Each weighted layer's actual input ``(B, *S_j)``.
        fanouts: Each layer's :func:`~snnergy.counting.fanout_map`, shape ``S_j``.
        scales: Each layer's input scale ``mu_j`` (0-d; NaN counts as 1).
        eps: Sharpness; the count is exact as ``eps -> 0``.

    Returns:
        ``(B,)`` in the inputs' dtype, differentiable in the inputs (finite at 0).

    Example:
        >>> x = torch.tensor([[0.0, 0.1, 1.0]])  # s = 0, 0.1/0.2 = 0.5, 1/1.1
        >>> smooth_macs([x], [torch.tensor([3.0, 2.0, 1.1])], [torch.tensor(1.0)])
        tensor([2.])
    """
    total = None
    for x, f, mu in zip(inputs, fanouts, scales, strict=True):
        r = (x / _broadcast(mu, x)).abs()
        value = (r / (r + eps) * f.to(device=x.device, dtype=x.dtype)).reshape(x.shape[0], -1).sum(dim=1)
        total = value if total is None else total + value
    if total is None:
        raise SnnergyError("smooth_macs needs at least one layer input")
    return total


def budget_excess(values: Tensor, budget: float | None) -> Tensor:
    """The batch penalty: mean of ``values``, or of ``max(0, values - budget)`` with a budget.

    Example:
        >>> budget_excess(torch.tensor([1.0, 5.0]), None), budget_excess(torch.tensor([1.0, 5.0]), 2.0)
        (tensor(3.), tensor(1.5000))
    """
    if budget is None:
        return values.mean()
    return torch.relu(values - budget).mean()
