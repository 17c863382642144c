"""Normalization: the scale each activation layer is divided by, one definition for all.

Conversion divides each layer by its scale ``lambda_l`` (:mod:`snnergy.conversion`), and the
energy-aware penalties estimate that very scale during training
(:mod:`snnergy.regularizers.energy_aware`: "the scale the converter will use"). Both take it from
here. A normalization *strategy* is a frozen dataclass; today there is one:

- :class:`Percentile`: the q-th percentile (q in percent, 100 is the maximum) of the layer's
  non-zero activations, one per layer or one per channel (dim 1). The converter accumulates
  every calibration batch (:class:`PercentileAccumulator`); the penalties take it on one batch
  (:meth:`Percentile.batch_scale`, :func:`nonzero_percentile`).

A new strategy is one more class with the same two methods (:class:`Normalization`). Trained
thresholds (``qcfs``, ``clip``, :mod:`snnergy.layers`) need none: the scale is the module's
``threshold`` parameter, which the ``synops`` penalty reads live. The penalty's percentile is the
converter's definition on one training batch at a time, a running estimate of the calibration
set's (the remaining difference: batches during training against the whole calibration set
after it).

Both paths interpolate linearly between order statistics (NumPy's and ``torch.quantile``'s
default), on the float64 values, at rank ``q / 100 * (count - 1)``. They differ only where they
must: the accumulator keeps at most :data:`MAX_VALUES` values per layer over all batches (a
deterministic power-of-two subsample beyond), interpolates as ``low + w * (high - low)`` and
leaves NaN values out; the batch percentile selects its order statistics without sorting, is
differentiable, interpolates with ``torch.lerp`` (to the bit ``torch.quantile``'s value; the two
formulas can differ in the last bit of the float64 when ``w >= 0.5``) and makes a NaN in the map
NaN (unless per channel). A layer (channel) without any non-zero value gets NaN ("silent"),
which conversion turns into scale 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from snnergy.errors import ConfigError, DataError

MAX_VALUES = 2**24
"""Activation values an accumulator keeps per layer; beyond, a deterministic subsample."""
MAX_BATCH_VALUES = 2**24
"""``torch.quantile``'s input limit: a batch map with more non-zero values is subsampled (every
k-th value kept)."""
BLOCK = 64
"""Values per block in the batch percentile's pre-selection (speed only: every size gives the same value)."""
BLOCKED_FROM = 2**15
"""Maps shorter than this select on all values (``torch.topk`` is then as fast as the blocks)."""


class ScaleAccumulator(Protocol):
    """Collects a layer's activations over calibration batches, then gives its scale."""

    def add(self, a: Tensor) -> None:
        """Takes one batch's map ``(B, C, ...)`` (detached, copied as needed)."""
        ...

    def scale(self) -> Tensor:
        """float64 scale: 0-d, or ``(C,)`` per channel; NaN where the layer (channel) was silent."""
        ...


class Normalization(Protocol):
    """A normalization strategy: how a layer's scale is measured (:class:`Percentile`)."""

    channelwise: bool

    def accumulator(self, max_values: int = MAX_VALUES) -> ScaleAccumulator:
        """An empty accumulator for one layer's calibration activations (the converter's scale)."""
        ...

    def batch_scale(self, a: Tensor) -> Tensor:
        """The scale on one batch's map ``(B, C, ...)``, differentiable in ``a`` (the penalties')."""
        ...


@dataclass(frozen=True)
class Percentile:
    """The q-th percentile of each layer's (or channel's) non-zero activations.

    Attributes:
        q: Percentile in (0, 100]; 100 is the maximum (Diehl et al. 2015), 99.9 the robust
            default of Rueckauer et al. 2017.
        channelwise: One scale per channel (dim 1) instead of one per layer.

    Raises:
        ConfigError: ``q`` outside (0, 100].

    Example:
        >>> a = torch.tensor([[0.0, 1.0, 2.0, 4.0]])
        >>> Percentile(75).batch_scale(a).item()  # of 1, 2, 4: rank 1.5, between 2 and 4
        3.0
        >>> acc = Percentile(100).accumulator()
        >>> acc.add(a); acc.add(a * 2)
        >>> acc.scale().item()  # the maximum over both batches
        8.0
        >>> Percentile(0)
        Traceback (most recent call last):
        ...
        snnergy.errors.ConfigError: normalization percentile must be in (0, 100], got 0
    """

    q: float = 99.9
    channelwise: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.q, bool) or not isinstance(self.q, (int, float)) or not 0 < self.q <= 100:
            raise ConfigError(f"normalization percentile must be in (0, 100], got {self.q}")

    def accumulator(self, max_values: int = MAX_VALUES) -> PercentileAccumulator:
        """An empty :class:`PercentileAccumulator` for one layer."""
        return PercentileAccumulator(self.q, self.channelwise, max_values)

    def batch_scale(self, a: Tensor) -> Tensor:
        """:func:`nonzero_percentile` of one batch's map."""
        return nonzero_percentile(a, self.q, self.channelwise)


class PercentileAccumulator:
    """Activation values of one layer as rows ``(C, n)`` (zeros stored as NaN when channelwise).

    Stored as float32 on the CPU; when they exceed ``max_values`` every other value of every
    part is dropped (and of every later batch: the stride doubles), so the subsample does not
    depend on the batch boundaries' timing, only on the data.

    Args:
        q: Percentile in (0, 100] that :meth:`scale` gives.
        channelwise: One row per channel (dim 1) instead of one row for the layer.
        max_values: Bound on the stored values (all rows together).

    Example:
        >>> acc = PercentileAccumulator(50, channelwise=True)
        >>> acc.add(torch.tensor([[1.0, 0.0], [3.0, 0.0]]))  # channel 1 is silent
        >>> acc.scale().tolist()
        [2.0, nan]
    """

    def __init__(self, q: float = 99.9, channelwise: bool = False, max_values: int = MAX_VALUES) -> None:
        self.q, self.channelwise, self.max_values = q, channelwise, max_values
        self.parts: list[Tensor] = []
        self.stride = 1

    def add(self, a: Tensor) -> None:
        """Stores one batch's map ``(B, C, ...)``: its non-zero values (per channel: all, zeros as NaN)."""
        if self.channelwise:
            rows = a.detach().transpose(0, 1).reshape(a.shape[1], -1).float().cpu()
            rows = rows.masked_fill(rows == 0, float("nan"))
        else:
            rows = a.detach()[a != 0].reshape(1, -1).float().cpu()
        self.parts.append(rows[:, :: self.stride])
        while sum(p.numel() for p in self.parts) > self.max_values:
            self.parts = [p[:, ::2] for p in self.parts]
            self.stride *= 2

    def scale(self) -> Tensor:
        """The percentile ``q`` of the stored values (:meth:`percentile`)."""
        return self.percentile(self.q)

    def percentile(self, q: float) -> Tensor:
        """Per row: the q-th percentile of the non-NaN values, NumPy-style; NaN if none.

        float64: 0-d, or ``(C,)`` when channelwise.

        Raises:
            DataError: Nothing was added.
        """
        if not self.parts:
            raise DataError("no activations were added to this accumulator: calibrate on at least one batch")
        values = torch.sort(torch.cat(self.parts, dim=1), dim=1).values.double()  # NaN sorts last
        count = (~torch.isnan(values)).sum(dim=1)
        out = torch.full((values.shape[0],), float("nan"), dtype=torch.float64)
        if values.shape[1] > 0:
            last = (count - 1).clamp(min=0)
            pos = q / 100 * last.double()
            low = pos.floor().long()
            v_low = values.gather(1, low[:, None]).squeeze(1)
            v_high = values.gather(1, torch.minimum(low + 1, last)[:, None]).squeeze(1)
            out = (v_low + (pos - low) * (v_high - v_low)).masked_fill(count == 0, float("nan"))
        return out if self.channelwise else out.squeeze(0)


# ----------------------------------------------------------------------------- one batch


def nonzero_percentile(a: Tensor, percentile: float, channelwise: bool = False) -> Tensor:
    """The p-th percentile of the non-zero magnitudes of a ``(B, ...)`` map.

    Linear interpolation between order statistics, as :class:`PercentileAccumulator` (the
    converter) computes it, to the last bit of the float64 (module docstring); the value
    ``torch.quantile`` gives on the non-zero values in float64, to the bit. Beyond
    :data:`MAX_BATCH_VALUES` non-zero values every k-th one is kept. Differentiable when ``a`` is: the gradient
    reaches the (one or two) order statistics it interpolates. A NaN in the map makes the result
    NaN; with ``channelwise`` NaN values are left out, as zeros are (``torch.nanquantile``).

    The order statistics are selected, not sorted (issue 8: sorting every non-zero value of
    every layer cost more than the rest of the penalty): the map is cut into blocks of
    :data:`BLOCK` values, the ``k`` blocks with the largest maxima hold the ``k`` largest values
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
        blocks: Maxima of the magnitudes over blocks of :data:`BLOCK` values, ``(G,)``, for
            maps of :data:`BLOCKED_FROM` values or more (else ``None``);
            the ``synops`` fast path reuses them.
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
    blocks = block_count(length)
    head = blocks * BLOCK
    maxima = magnitudes[:head].view(blocks, BLOCK).amax(dim=1) if blocks else None
    # NaN anywhere makes this sum NaN (maxima propagate NaN; magnitudes have no -inf)
    probe = magnitudes.sum() if maxima is None else maxima.sum()
    nan = math.isnan(probe.item())
    if maxima is not None and head < length:  # the tail outside the blocks
        nan = nan or math.isnan(magnitudes[head:].sum().item())
    # the non-zero count, as a float sum of 0/1 signs: exact below 2**24, where this path ends
    count = magnitudes.sign().sum(dtype=torch.float32 if magnitudes.element_size() < 4 else None).item()
    return select_counted(magnitudes, q, maxima, int(count), nan)


def block_count(length: int) -> int:
    """How many blocks of :data:`BLOCK` values :func:`select_percentile` takes the maxima of in a
    flat map of ``length`` values (0 below :data:`BLOCKED_FROM`).

    Example:
        >>> block_count(1000), block_count(2**15 + 70)
        (0, 513)
    """
    return length // BLOCK if length >= BLOCKED_FROM else 0


def select_counted(magnitudes: Tensor, q: float, maxima: Tensor | None, count: int, nan: bool) -> Selection:
    """:func:`select_percentile` given what its pass over the map found: the block maxima of the
    magnitudes (:func:`block_count` blocks, or ``None``), their non-zero count and whether one is
    NaN. (:func:`snnergy.regularizers.compiled.energy_layers` makes the same selection in one
    compiled call.)

    Example:
        >>> s = select_counted(torch.tensor([0.0, 4.0, 1.0, 0.0, 2.0]), 0.75, None, 3, False)
        >>> s.positions.tolist(), s.values.tolist()
        ([1, 4], [4.0, 2.0])
    """
    if nan or count == 0:
        return Selection("nan", blocks=maxima)
    if count >= MAX_BATCH_VALUES:
        return Selection("sorted", blocks=maxima)
    m = count
    lo, hi, weight = _ranks(q, m)
    values, positions = _top(magnitudes, m - lo, maxima)
    # descending, rank j of the m non-zero values sits at m - 1 - j: [above, below] is a slice
    return Selection("ok", positions[m - 1 - hi: m - lo], values[m - 1 - hi: m - lo], weight, maxima)


def _top(magnitudes: Tensor, k: int, maxima: Tensor | None) -> tuple[Tensor, Tensor]:
    """The ``k`` largest of a flat tensor and their indices, descending (through ``maxima``, the
    block maxima, when they narrow the search: see :func:`_largest`)."""
    if maxima is None or 4 * k * BLOCK > magnitudes.numel():
        return torch.topk(magnitudes, k)
    best = torch.topk(maxima, k).indices
    candidates = (best.unsqueeze(1) * BLOCK + block_offsets(magnitudes.device)).reshape(-1)
    head = maxima.numel() * BLOCK
    if head < magnitudes.numel():  # the tail that fills no block is always a candidate
        candidates = torch.cat([candidates, torch.arange(head, magnitudes.numel(), device=magnitudes.device)])
    values, order = torch.topk(magnitudes[candidates], k)
    return values, candidates[order]


_BLOCK_OFFSETS: dict[torch.device, Tensor] = {}


def block_offsets(device: torch.device) -> Tensor:
    """``arange(BLOCK)`` on ``device``, made once."""
    if device not in _BLOCK_OFFSETS:
        _BLOCK_OFFSETS[device] = torch.arange(BLOCK, device=device)
    return _BLOCK_OFFSETS[device]


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
    blocks = length // BLOCK
    if 4 * k * BLOCK > length:  # the blocks would hold most values: select on the whole rows
        return torch.topk(values, k, dim=1).indices
    maxima = values[:, : blocks * BLOCK].reshape(rows, blocks, BLOCK).amax(dim=2)
    best = torch.topk(maxima, k, dim=1).indices  # (R, k) blocks
    candidates = (best.unsqueeze(2) * BLOCK + block_offsets(values.device)).reshape(rows, -1)
    if blocks * BLOCK < length:  # the tail that fills no block is always a candidate
        tail = torch.arange(blocks * BLOCK, length, device=values.device).expand(rows, -1)
        candidates = torch.cat([candidates, tail], dim=1)
    top = torch.topk(values.gather(1, candidates), k, dim=1).indices
    return candidates.gather(1, top)


def _channel_percentiles(a: Tensor, q: float) -> Tensor:
    """:func:`nonzero_percentile` per channel: ``(C,)``, NaN for a channel with no non-zero value."""
    channels = a.shape[1]
    rows = a.detach().abs().transpose(0, 1).reshape(channels, -1)  # (C, B * S)
    step = max(1, math.ceil(rows.numel() / MAX_BATCH_VALUES))
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
    values = values[:: max(1, math.ceil(values.numel() / MAX_BATCH_VALUES))]
    return torch.quantile(values, q)
