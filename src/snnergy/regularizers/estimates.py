"""The estimates behind the energy-aware penalties, as pure functions of tensors.

Rates from normalized activations, their fan-out-weighted sum (expected SynOps per timestep), a
smooth count of non-zero inputs (effective MACs), non-zero percentiles and running scales, and the
budget. :mod:`snnergy.regularizers.energy_aware` documents the formulas and binds them to a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from snnergy.errors import SnnergyError

MACS_EPS = 0.1
"""``eps`` of the smooth non-zero indicator ``s(r) = |r| / (|r| + eps)`` (see energy_aware)."""
SCALE_MOMENTUM = 0.1
"""Weight of each batch's percentile in the running scale (as SpikingJelly's converter, 0.1)."""
_MAX_PERCENTILE_VALUES = 2**24  # torch.quantile's input limit; beyond, every k-th value is kept
_BLOCK = 64
"""Values per block in the percentile's pre-selection (speed only: every size gives the same value)."""
_BLOCKED_FROM = 2**15
"""Maps shorter than this select on all values (``torch.topk`` is then as fast as the blocks)."""


def nonzero_percentile(a: Tensor, percentile: float, channelwise: bool = False) -> Tensor:
    """The p-th percentile of the non-zero magnitudes of a ``(B, ...)`` map.

    Linear interpolation between order statistics, as the converter computes its scales
    (NumPy's default; the value ``torch.quantile`` gives on the non-zero values in float64, to the
    bit); beyond 2**24 values every k-th one is kept. Differentiable when ``a`` is: the gradient
    reaches the (one or two) order statistics it interpolates. A NaN in the map makes the result
    NaN; with ``channelwise`` NaN values are left out, as zeros are (``torch.nanquantile``).

    The order statistics are selected, not sorted (issue 8: sorting every non-zero value of
    every layer cost more than the rest of the penalty): the map is cut into blocks of
    :data:`_BLOCK` values, the ``k`` blocks with the largest maxima hold the ``k`` largest values
    (ties included), and ``torch.topk`` runs on those blocks only. The result is exact; only
    which of several equal values receives the gradient may differ from a sort.

    Args:
        a: A map ``(B, ...)``.
        percentile: p in (0, 100]; 100 is the maximum.
        channelwise: One value per channel (dim 1) instead of one for the map.

    Returns:
        float64 0-d tensor, or ``(C,)`` with ``channelwise``; NaN where nothing is non-zero.

    Example:
        >>> nonzero_percentile(torch.tensor([[0.0, 1.0, 2.0, 4.0]]), 100).item()
        4.0
        >>> nonzero_percentile(torch.tensor([[0.0, 1.0, 2.0, 4.0]]), 75).item()  # of 1, 2, 4
        3.0
    """
    q = percentile / 100.0
    if channelwise:
        return _channel_percentiles(a, q)
    selection = select_percentile(a.detach().abs().reshape(-1), q)
    if selection.status == "sorted":
        return _sorted_percentile(a, q)
    return percentile_value(a, selection)


@dataclass(frozen=True)
class Selection:
    """Which values of a map make its non-zero percentile (:func:`select_percentile`).

    Attributes:
        status: ``"ok"``; ``"nan"`` (the percentile is NaN: a NaN in the map, or no non-zero
            value); ``"sorted"`` (2**24 non-zero values or more: sort a subsample instead).
        positions: Flat indices of the order statistics above and below the percentile (one
            index when they coincide), descending.
        values: Their magnitudes, the same shape.
        weight: Interpolation weight of the one above (``torch.quantile``'s, in float64).
        blocks: Maxima of the magnitudes over blocks of :data:`_BLOCK` values, ``(G,)``, for
            maps of :data:`_BLOCKED_FROM` values or more (else ``None``);
            :mod:`snnergy.regularizers.fused_energy` reuses them.
    """

    status: str
    positions: Tensor | None = None
    values: Tensor | None = None
    weight: float = 0.0
    blocks: Tensor | None = None


def select_percentile(magnitudes: Tensor, q: float) -> Selection:
    """Selects the order statistics of the q-quantile (``q = p / 100``) of the non-zero values of
    ``magnitudes``, a flat tensor of values ``>= 0`` (or NaN). It reads the count back (one
    synchronization) and uses few operations: each costs microseconds, every layer, every batch.

    Example:
        >>> s = select_percentile(torch.tensor([0.0, 4.0, 1.0, 0.0, 2.0]), 0.75)  # of 1, 2, 4
        >>> s.status, s.positions.tolist(), s.values.tolist(), s.weight  # rank 1.5: between 2 and 4
        ('ok', [1, 4], [4.0, 2.0], 0.5)
    """
    length = magnitudes.numel()
    blocks = length // _BLOCK if length >= _BLOCKED_FROM else 0
    head = blocks * _BLOCK
    maxima = magnitudes[:head].view(blocks, _BLOCK).amax(dim=1) if blocks else None
    # NaN anywhere makes this sum NaN (maxima propagate NaN; magnitudes have no -inf)
    probe = magnitudes.sum() if maxima is None else maxima.sum()
    nan = math.isnan(probe.item())
    if maxima is not None and head < length:  # the tail outside the blocks
        nan = nan or math.isnan(magnitudes[head:].sum().item())
    # the non-zero count, as a float sum of 0/1 signs: exact below 2**24, where this path ends
    count = magnitudes.sign().sum(dtype=torch.float32 if magnitudes.element_size() < 4 else None).item()
    if nan or count == 0:
        return Selection("nan", blocks=maxima)
    if count >= _MAX_PERCENTILE_VALUES:
        return Selection("sorted", blocks=maxima)
    m = int(count)
    lo, hi, weight = _ranks(q, m)
    values, positions = _top(magnitudes, m - lo, maxima)
    # descending, rank j of the m non-zero values sits at m - 1 - j: [above, below] is a slice
    return Selection("ok", positions[m - 1 - hi: m - lo], values[m - 1 - hi: m - lo], weight, maxima)


def _top(magnitudes: Tensor, k: int, maxima: Tensor | None) -> tuple[Tensor, Tensor]:
    """The ``k`` largest of a flat tensor and their indices, descending (through ``maxima``, the
    block maxima, when they narrow the search: see :func:`_largest`)."""
    if maxima is None or 4 * k * _BLOCK > magnitudes.numel():
        return torch.topk(magnitudes, k)
    best = torch.topk(maxima, k).indices
    candidates = (best.unsqueeze(1) * _BLOCK + _offsets(magnitudes.device)).reshape(-1)
    head = maxima.numel() * _BLOCK
    if head < magnitudes.numel():  # the tail that fills no block is always a candidate
        candidates = torch.cat([candidates, torch.arange(head, magnitudes.numel(), device=magnitudes.device)])
    values, order = torch.topk(magnitudes[candidates], k)
    return values, candidates[order]


_OFFSETS: dict[torch.device, Tensor] = {}


def _offsets(device: torch.device) -> Tensor:
    """``arange(_BLOCK)`` on ``device``, made once."""
    if device not in _OFFSETS:
        _OFFSETS[device] = torch.arange(_BLOCK, device=device)
    return _OFFSETS[device]


def percentile_value(a: Tensor, selection: Selection) -> Tensor:
    """The percentile a selection of ``a``'s magnitudes gives: float64 0-d, differentiable in ``a``
    through the (one or two) order statistics; NaN for status ``"nan"``.

    Example:
        >>> a = torch.tensor([[0.0, -4.0, 1.0, 0.0, 2.0]])
        >>> percentile_value(a, select_percentile(a.abs().reshape(-1), 0.75)).item()  # 2 + 0.5 * (4 - 2)
        3.0
    """
    if selection.status != "ok":
        return torch.full((), math.nan, dtype=torch.float64, device=a.device)
    picked = a.reshape(-1)[selection.positions].abs().double()  # one gather: [above, below]
    return torch.lerp(picked[-1], picked[0], torch.tensor(selection.weight, dtype=torch.float64, device=a.device))


def _ranks(q: float, count: int) -> tuple[int, int, float]:
    """The order statistics (0-based, ascending) and weight of the q-quantile of ``count`` values,
    computed as ``torch.quantile`` does: rank ``q * (count - 1)`` in float64, floor, ceil."""
    rank = q * (count - 1)
    lo = math.floor(rank)
    return lo, math.ceil(rank), rank - lo


def _largest(values: Tensor, k: int) -> Tensor:
    """Column indices ``(R, k)`` of the ``k`` largest values of each row of ``values``, descending.

    Exact with ties: a block whose maximum is not among the ``k`` largest block maxima holds no
    value that the ``k`` largest need (each selected block holds a value at least as large).
    """
    rows, length = values.shape
    blocks = length // _BLOCK
    if 4 * k * _BLOCK > length:  # the blocks would hold most values: select on the whole rows
        return torch.topk(values, k, dim=1).indices
    maxima = values[:, : blocks * _BLOCK].reshape(rows, blocks, _BLOCK).amax(dim=2)
    best = torch.topk(maxima, k, dim=1).indices  # (R, k) blocks
    candidates = (best.unsqueeze(2) * _BLOCK + _offsets(values.device)).reshape(rows, -1)
    if blocks * _BLOCK < length:  # the tail that fills no block is always a candidate
        tail = torch.arange(blocks * _BLOCK, length, device=values.device).expand(rows, -1)
        candidates = torch.cat([candidates, tail], dim=1)
    top = torch.topk(values.gather(1, candidates), k, dim=1).indices
    return candidates.gather(1, top)


def _channel_percentiles(a: Tensor, q: float) -> Tensor:
    """:func:`nonzero_percentile` per channel: ``(C,)``, NaN for a channel with no non-zero value."""
    channels = a.shape[1]
    rows = a.detach().abs().transpose(0, 1).reshape(channels, -1)  # (C, B * S)
    step = max(1, math.ceil(rows.numel() / _MAX_PERCENTILE_VALUES))
    rows = torch.nan_to_num(rows[:, ::step], nan=0.0, posinf=math.inf)  # NaN is left out, as 0 is
    counts = [int(c) for c in rows.sign().sum(dim=1).tolist()]  # exact: a row holds < 2**24 values
    ranks = [_ranks(q, c) if c else (0, 0, 0.0) for c in counts]
    k = max((c - lo for c, (lo, _, _) in zip(counts, ranks) if c), default=0)
    if k == 0:
        return torch.full((channels,), math.nan, dtype=torch.float64, device=a.device)
    positions = torch.tensor([[max(c - 1 - hi, 0), max(c - 1 - lo, 0)] for c, (lo, hi, _) in zip(counts, ranks)],
                             device=a.device)
    columns = _largest(rows, k).gather(1, positions) * step  # (C, 2) columns of the (C, B * S) rows
    per_sample = math.prod(a.shape[2:])  # S: the elements of one channel of one sample
    channel = torch.arange(channels, device=a.device).unsqueeze(1)
    flat = (columns // per_sample) * (channels * per_sample) + channel * per_sample + columns % per_sample
    picked = a.reshape(-1)[flat].abs().double()
    weights = torch.tensor([w for _, _, w in ranks], dtype=torch.float64, device=a.device)
    value = torch.lerp(picked[:, 1], picked[:, 0], weights)
    empty = torch.tensor([c == 0 for c in counts], device=a.device)
    return torch.where(empty, torch.full_like(value, math.nan), value)


def _sorted_percentile(a: Tensor, q: float) -> Tensor:
    """:func:`nonzero_percentile` by sorting the non-zero values (beyond 2**24 of them, where
    ``torch.quantile`` needs a subsample: every k-th value is kept)."""
    values = a.abs()
    values = values[values != 0].double()
    values = values[:: max(1, math.ceil(values.numel() / _MAX_PERCENTILE_VALUES))]
    return torch.quantile(values, q)


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
