"""The training fast path of ``synops`` and ``macs``: every layer's percentile, running scale and
value in one autograd node (issue 8).

:class:`~snnergy.regularizers.energy_aware.SynOpsPenalty` and
:class:`~snnergy.regularizers.energy_aware.MacsPenalty` compute, per batch and per layer, the
batch percentile of the non-zero magnitudes, the running scale, the scale with the batch
percentile's gradient (:func:`~snnergy.regularizers.estimates.scale_with_gradient`) and the
per-sample value; through autograd that is some fifty operations per layer, each with a fixed
cost, and about ten passes over the map backward. Here the forward pass computes the reference's
percentiles and running scales (to the bit) and values (on the PyTorch path with the reference's
own operations, to the bit; with the compiled kernels of :mod:`snnergy.regularizers.compiled`, on
a CPU, in one read of each map for the selection's block maxima, count and NaN flag and the value,
summed in another order: to rounding), and the backward pass writes the gradient in closed form:

- ``synops``, per element ``f / lambda`` where the rate is not capped (``rate <= 1``, the gradient
  of ``clamp``); ``macs``, ``f eps sgn(x) / (mu (r + eps)^2)``;
- for the scale: the value is a function of ``a / lambda``, unchanged when both are multiplied
  alike, so (Euler) ``dF/d lambda = -sum(a * dF/da) / lambda``; then ``d lambda / d b = running / b``
  (:func:`~snnergy.regularizers.estimates.scale_with_gradient`), then the percentile's two order
  statistics (``torch.quantile``'s interpolation weights), added in place.

The capped rates of ``synops`` are found from the block maxima the percentile selection already
computed (:class:`~snnergy.normalization.Selection`): a block whose maximum is under the
scale holds no capped rate, so the mask costs a few small operations instead of two passes. A map
that is a ReLU's output (:func:`~snnergy.regularizers.fused.is_relu_output`) needs no magnitudes
(``|a| = a``) and, for ``macs``, no ``sgn`` factor (as in :mod:`snnergy.regularizers.fused`).

With the compiled kernels every map takes one call (:func:`~snnergy.regularizers.compiled.energy_layers`:
per map the read for the block maxima, count and NaN flag, the values in the same read when every
scale is known before it, ``synops``: the running scale of the batches before, and the selection
of the order statistics; then the layers' values added; else every value in a second call,
:func:`~snnergy.regularizers.compiled.energy_values`), every layer's batch percentile is one
``torch.lerp`` over the layers (the function's scalar and vector paths give the same bits:
``torch.quantile``'s value, as the reference's 0-d call), and the backward pass is one call for
every layer (:func:`~snnergy.regularizers.compiled.energy_grads`: each rate's cap recomputed, no
positions kept; the gradient through the scale added as :func:`_add_scale_gradient` adds it). The
gradients are the reference's derivative, rounded differently in the last bits. Per-channel
scales (``convert.channelwise``) and maps of 2**24 values or more take the reference path.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from snnergy.normalization import (
    BLOCK,
    MAX_BATCH_VALUES,
    Selection,
    block_count,
    block_offsets,
    select_percentile,
)
from snnergy.regularizers import compiled
from snnergy.regularizers.fused import hands_off, is_relu_output
from snnergy.threshold_kernels import PenaltyTerm

_COMPILED = "compiled"
"""Marks a layer computed by :mod:`snnergy.regularizers.compiled` (its backward is compiled too)."""


@dataclass(frozen=True)
class Plan:
    """What the fast path needs of a bound penalty, for one call.

    Attributes:
        names: The layers' names (keys of ``scales``), in order.
        fanouts: Each layer's fan-out, on its map's device and dtype.
        scales: The running scales by name (updated in place with this batch).
        momentum: Weight of the batch percentile in the running scale.
        percentile: The percentile p (0, 100].
        scale_gradient: Differentiate through the scales (else they are constants).
        eps: ``macs``: the smooth indicator's ``eps``; ``None``: ``synops``.
        prior_scale: Divide by the running scale of the batches before this one (this batch's
            percentile where there is none), then update it (``synops`` without
            ``scale_gradient``); ``False``: update it first, then divide by it.
    """

    names: tuple[str, ...]
    fanouts: tuple[Tensor, ...]
    scales: dict[str, Tensor]
    momentum: float
    percentile: float
    scale_gradient: bool
    eps: float | None = None
    prior_scale: bool = False


def applies(maps: Sequence[Tensor]) -> bool:
    """Whether the fast path can take these maps (each with a batch dimension, under 2**24 values).

    Example:
        >>> applies([torch.zeros(64, 6, 28, 28)]), applies([torch.zeros(())])
        (True, False)
    """
    return all(a.dim() > 0 and a.numel() < MAX_BATCH_VALUES for a in maps)


def synops(plan: Plan, maps: Sequence[Tensor]) -> Tensor:
    """Per-sample expected SynOps per timestep ``(B,)``, summed over the layers; updates the
    running scales with this batch (as ``SynOpsPenalty.observe`` then ``expected_synops``)."""
    return _Node.apply(plan, tuple(is_relu_output(a) for a in maps), *maps)  # type: ignore[no-any-return]


def threshold_synops(maps: Sequence[Tensor], fanouts: Sequence[Tensor], thresholds: Sequence[Tensor]) -> Tensor:
    """Per-sample expected SynOps per timestep ``(B,)`` of trained-threshold layers: ``sum f * h / theta``.

    A trained-threshold activation's output ``h`` never exceeds ``theta`` (QCFS, trained clip), so
    the rate ``h / theta`` needs no cap, and the sum over a layer is one product with its fan-out
    (a matrix-vector product per layer, or per channel for per-channel thresholds) divided by
    ``theta``: no map-sized temporaries forward, one backward (the gradient itself). The same value
    as :func:`~snnergy.regularizers.estimates.expected_synops`, rounded differently.

    Example:
        >>> h = torch.tensor([[0.0, 1.0, 2.0, 4.0]])  # rates 0, 1/4, 1/2, 1 with theta 4
        >>> threshold_synops([h], [torch.tensor([1.0, 2.0, 2.0, 2.0])], [torch.tensor([4.0])])
        tensor([3.5000])
    """
    total = None
    for a, f, theta in zip(maps, fanouts, thresholds, strict=True):
        f = f.to(device=a.device, dtype=a.dtype)
        theta = theta.to(device=a.device, dtype=a.dtype)
        if theta.numel() == 1:
            value = _Rated.apply(a, theta.reshape(()), f.reshape(-1))
        else:  # one theta per channel (dim 1)
            per_channel = torch.einsum("bcs,cs->bc", a.reshape(a.shape[0], a.shape[1], -1), f.reshape(a.shape[1], -1))
            value = (per_channel / theta.reshape(1, -1)).sum(dim=1)
        total = value if total is None else total + value
    return total  # type: ignore[return-value]


class _Rated(torch.autograd.Function):
    """``(h @ f) / theta`` per sample (``h`` a ``(B, ...)`` map, ``f`` flat, ``theta`` 0-d) with the
    gradients autograd gives those two operations, operation for operation (``mv``'s outer product,
    ``div``'s two terms, ``theta``'s reduced by ``sum_to_size``): the same bits. Inside
    :func:`~snnergy.regularizers.fused.handing_off` the gradient at a map that a compiled activation
    produced goes to that activation's backward pass (:class:`~snnergy.threshold_kernels.PenaltyTerm`
    kind 5: ``k1[b] f[i]``, the same products) instead of a gradient map."""

    @staticmethod
    def forward(ctx: Any, h: Tensor, theta: Tensor, f: Tensor) -> Tensor:
        product = h.reshape(h.shape[0], -1) @ f
        ctx.save_for_backward(h, theta, f, product)
        return product / theta

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        h, theta, f, product = ctx.saved_tensors
        grad_product = grad / theta
        grad_theta = None
        if ctx.needs_input_grad[1]:
            grad_theta = (-grad * ((product / theta) / theta)).sum_to_size(theta.shape)
        grad_h = None
        if ctx.needs_input_grad[0]:
            if hands_off(h) and grad_product.is_contiguous() and f.is_contiguous():
                h.grad_fn.penalty_term = PenaltyTerm(5, False, grad_product, None, 0.0, f)
            else:
                grad_h = torch.outer(grad_product, f).view(h.shape)
        return grad_h, grad_theta, None


def smooth_macs(plan: Plan, inputs: Sequence[Tensor]) -> Tensor:
    """Per-sample smooth MACs ``(B,)`` of the layer inputs, summed; updates the running scales
    (as ``MacsPenalty.observe`` then ``smooth_macs``)."""
    return _Node.apply(plan, tuple(is_relu_output(x) for x in inputs), *inputs)  # type: ignore[no-any-return]


def _rounded(value: float, dtype: torch.dtype) -> float:
    """``value`` rounded to ``dtype``, as a float: dividing a map by it is dividing by the 0-d
    tensor of that value (``a / float`` computes in the map's dtype; the quotient of a float32
    value rounded once from float64 is the float32 quotient, as 53 >= 2 * 24 + 2)."""
    if dtype == torch.float64:
        return value
    if dtype == torch.float32:
        return struct.unpack("f", struct.pack("f", value))[0] if math.isfinite(value) else value
    return torch.tensor(value, dtype=dtype).item()


@dataclass
class _Layer:
    """One layer's forward results that the backward pass needs."""

    scale: float  # lambda (mu) rounded to the map's dtype
    factor: float  # d lambda / d batch = running / batch (0: no gradient through the scale)
    weight: float  # the batch percentile's interpolation weight (of the larger order statistic)
    positions: Tensor | tuple[int, ...] | None  # the order statistics' flat positions (descending; compiled: a tuple)
    saved: tuple[Any, ...]


def _updated(old: float | None, observed: float, momentum: float) -> float:
    """:func:`~snnergy.regularizers.estimates.update_scale` on floats (the same float64 operations)."""
    if old is None or math.isnan(old):
        return observed
    if math.isnan(observed):
        return old
    return (1.0 - momentum) * old + momentum * observed


def _capped(a: Tensor, selection: Selection, scale: float) -> Tensor | None:
    """Flat positions where ``a / lambda > 1``, looked for in the blocks whose maximum magnitude
    exceeds the scale (``a <= lambda`` gives ``a / lambda <= 1``) and in the tail outside the
    blocks; ``None`` where there are no blocks or a NaN (then the rates are kept for a mask)."""
    maxima = selection.blocks
    if maxima is None or selection.status == "nan":
        return None
    flat = a.reshape(-1)
    blocks = torch.nonzero(maxima > scale).squeeze(1)
    candidates = (blocks.unsqueeze(1) * BLOCK + block_offsets(a.device)).reshape(-1)
    head = maxima.numel() * BLOCK
    if head < flat.numel():  # the tail that fills no block is always a candidate
        candidates = torch.cat([candidates, torch.arange(head, flat.numel(), device=a.device)])
    return candidates[flat[candidates] / scale > 1.0]


def _known(plan: Plan, before: float | None) -> bool:
    """Whether this batch divides by the scale of the batches before it (module docstring)."""
    return plan.prior_scale and before is not None and not math.isnan(before)


def _scale(plan: Plan, name: str, before: float | None, batch: float, a: Tensor) -> tuple[float, float]:
    """The running scale after this batch (stored), and the layer's ``(scale, factor)``: the
    scale it divides by, rounded to the map's dtype as ``_broadcast`` rounds it, and
    ``d lambda / d batch`` (0: none)."""
    running = _updated(before, batch, plan.momentum)
    plan.scales[name] = torch.tensor(running, dtype=torch.float64, device=a.device)
    if _known(plan, before):
        running = before  # type: ignore[assignment]  # the scale of the batches before this one
    value_of_scale = 1.0 if math.isnan(running) else running  # NaN (never seen) counts as 1
    gradient = plan.scale_gradient and math.isfinite(batch) and batch != 0
    return _rounded(value_of_scale, a.dtype), value_of_scale / batch if gradient else 0.0


def _layers(plan: Plan, relu: tuple[bool, ...], maps: Sequence[Tensor],
            befores: Sequence[float | None]) -> tuple[list[_Layer], Tensor]:
    """Every layer with PyTorch operations: the selections, the scales, the values."""
    q = plan.percentile / 100.0
    magnitudes = [(a if nonnegative else a.abs()).reshape(-1) for a, nonnegative in zip(maps, relu)]
    selections = [select_percentile(m, q) for m in magnitudes]
    picks = [(s.values.tolist(), s.weight) if s.status == "ok" else None for s in selections]  # type: ignore[union-attr]
    total, layers = None, []
    for name, f, a, m, nonnegative, before, selection, batch in zip(
            plan.names, plan.fanouts, maps, magnitudes, relu, befores, selections,
            _batch_values(picks, maps[0].device), strict=True):
        scale, factor = _scale(plan, name, before, batch, a)
        if plan.eps is None:
            value, saved = _synops_forward(a, scale, f, selection)
        else:
            value, saved = _macs_forward(a, m, scale, f, plan.eps, nonnegative)
        layers.append(_Layer(scale, factor, selection.weight, selection.positions, saved))
        total = value if total is None else total + value
    return layers, total  # type: ignore[return-value]


def _compiled_layers(plan: Plan, relu: tuple[bool, ...], maps: Sequence[Tensor],
                     befores: Sequence[float | None]) -> tuple[list[_Layer], Tensor]:
    """Every layer with the compiled kernels: one call for every map's block maxima, count and
    order statistics and (every scale known) values, and their sum; the batch percentiles of every
    layer in one ``torch.lerp`` (elementwise: each the one a 0-d call gives, to the bit)."""
    dtype = maps[0].dtype
    known = [_rounded(before, dtype) if _known(plan, before) else None for before in befores]  # type: ignore[arg-type]
    found = compiled.energy_layers(maps, relu, [block_count(a.numel()) for a in maps], plan.fanouts, known,
                                   plan.eps, plan.percentile / 100.0)
    picks = [(r.values, r.weight) if r.found else None for r in found.layers]
    layers = []
    for name, a, before, r, batch in zip(plan.names, maps, befores, found.layers, _batch_values(picks, maps[0].device),
                                         strict=True):
        scale, factor = _scale(plan, name, before, batch, a)
        layers.append(_Layer(scale, factor, r.weight, r.positions if r.found else None, (_COMPILED,)))
    if found.total is not None:
        return layers, found.total
    # a scale needed this batch's percentile first: every value in a second call, added in layer order
    return layers, compiled.energy_values(maps, relu, plan.fanouts, [layer.scale for layer in layers], plan.eps)[1]


def _batch_values(picks: Sequence[tuple[Sequence[float], float] | None], device: torch.device) -> list[float]:
    """Each layer's batch percentile from its order statistics (descending) and interpolation
    weight, as :func:`~snnergy.normalization.percentile_value` gives it (NaN where there is no
    selection, ``None``), the interpolations of every layer in one ``torch.lerp`` on ``device``
    (elementwise: the bits of each layer's own 0-d call)."""
    values: list[float] = [math.nan] * len(picks)
    pending = []
    for i, pick in enumerate(picks):
        if pick is None:
            continue
        picked, weight = pick
        if weight == 0.0 and math.isfinite(picked[-1]):  # one order statistic: lerp(x, x, 0) = x
            values[i] = picked[-1]
        else:
            pending.append((i, picked[-1], picked[0], weight))
    if pending:  # on the maps' device, as the reference interpolates; one tensor for the three columns
        below, above, weights = torch.tensor([row[1:] for row in pending], dtype=torch.float64, device=device).t()
        for (i, *_), value in zip(pending, torch.lerp(below, above, weights).tolist()):
            values[i] = value
    return values


class _Node(torch.autograd.Function):
    """The per-sample values of every layer in one node (module docstring)."""

    @staticmethod
    def forward(ctx: Any, plan: Plan, relu: tuple[bool, ...], *maps: Tensor) -> Tensor:
        befores = []
        for name in plan.names:
            before = plan.scales.get(name)
            befores.append(None if before is None else before.item())
        if compiled.usable([*maps, *plan.fanouts]):
            layers, total = _compiled_layers(plan, relu, maps, befores)
        else:
            layers, total = _layers(plan, relu, maps, befores)
        ctx.save_for_backward(*maps)
        ctx.plan, ctx.relu, ctx.layers = plan, relu, layers
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        plan: Plan = ctx.plan
        maps, layers, needs = ctx.saved_tensors, ctx.layers, ctx.needs_input_grad[2:]
        grads: list[Tensor | None] = [None] * len(maps)
        if layers[0].saved[0] is _COMPILED:  # every layer's gradient, through the scale too, in one call
            grads = compiled.energy_grads(maps, ctx.relu, [layer.scale for layer in layers], plan.fanouts, plan.eps,
                                          grad, needs, [(layer.factor, layer.weight, layer.positions)  # type: ignore[misc]
                                                        if layer.factor else None for layer in layers])
            return (None, None, *grads)
        for i, (a, f, layer, nonnegative, need) in enumerate(zip(maps, plan.fanouts, layers, ctx.relu, needs)):
            if not need:
                continue
            if plan.eps is None:
                grad_a, moment = _synops_backward(a, grad, layer.scale, f, layer.saved)
            else:
                grad_a, moment = _macs_backward(a, grad, layer.scale, f, plan.eps, layer.saved, nonnegative)
            if layer.factor:
                # the scale identity: d/d lambda = -sum(grad_a * a) / lambda
                _add_scale_gradient(grad_a, a, layer, -moment() / layer.scale, nonnegative)
            grads[i] = grad_a
        return (None, None, *grads)


def _per_row(grad: Tensor, a: Tensor) -> Tensor:
    return grad.view(-1, *[1] * (a.dim() - 1))


def _synops_forward(a: Tensor, scale: float, f: Tensor, selection: Selection) -> tuple[Tensor, tuple[Any, ...]]:
    rate = a / scale
    found = _capped(a, selection, scale)
    if found is None:  # the mask comes from the rates, kept
        return rate.clamp(max=1.0).mul_(f).reshape(a.shape[0], -1).sum(dim=1), (rate, None, None)
    value = rate.clamp_(max=1.0).mul_(f).reshape(a.shape[0], -1).sum(dim=1)
    return value, (None, found, value)


def _synops_backward(a: Tensor, grad: Tensor, scale: float, f: Tensor, saved: tuple[Any, ...]) -> tuple[Tensor, Any]:
    rate, capped, value = saved
    grad_a = (_per_row(grad, a) / scale) * f
    if capped is None:
        grad_a = torch.where(rate <= 1.0, grad_a, 0.0)
        return grad_a, lambda: torch.dot(grad_a.reshape(-1), a.reshape(-1)).item()

    def moment() -> float:
        # sum(grad_a * a) = sum_b grad_b (value_b - sum of f over b's capped rates), as
        # grad_a = grad f / lambda and a / lambda = rate where the rate is not capped
        per_sample = f.numel()
        capped_part = torch.dot(grad[capped // per_sample], f.reshape(-1)[capped % per_sample])
        return (torch.dot(grad, value) - capped_part).item()

    grad_a.reshape(-1).index_fill_(0, capped, 0.0)
    return grad_a, moment


def _macs_forward(x: Tensor, magnitudes: Tensor, scale: float, f: Tensor, eps: float,
                  nonnegative: bool) -> tuple[Tensor, tuple[Any, ...]]:
    # r = |x / mu| = |x| / mu (mu > 0: the same, to the bit); |x| is free to overwrite, not x
    r = (x / scale if nonnegative else magnitudes.div_(scale)).view(x.shape)
    shifted = r + eps
    value = r.div_(shifted).mul_(f).reshape(x.shape[0], -1).sum(dim=1)
    return value, (shifted,)


def _macs_backward(x: Tensor, grad: Tensor, scale: float, f: Tensor, eps: float, saved: tuple[Any, ...],
                   nonnegative: bool) -> tuple[Tensor, Any]:
    (shifted,) = saved
    grad_x = (_per_row(grad, x) * eps / scale) * f
    if not nonnegative:  # d|x / mu|/dx = sgn(x) / mu
        grad_x.mul_(x.sgn())
    grad_x.div_(shifted.square())
    return grad_x, lambda: torch.dot(grad_x.reshape(-1), x.reshape(-1)).item()


def _add_scale_gradient(grad_a: Tensor, a: Tensor, layer: _Layer, grad_scale: float, nonnegative: bool) -> None:
    """Adds the gradient that reaches ``a`` through the scale: ``lambda`` (value: the running
    scale) has the batch percentile's gradient, ``running / b``, and the percentile interpolates
    two order statistics of ``|a|`` with weights ``w`` (above) and ``1 - w`` (below)."""
    positions = layer.positions
    assert isinstance(positions, Tensor)  # the PyTorch path's; a finite batch percentile has its order statistics
    grad_batch = grad_scale * layer.factor
    weight = layer.weight
    # one order statistic when they coincide (then the weight is 0)
    shares = [grad_batch * weight, grad_batch * (1.0 - weight)] if positions.numel() == 2 else [grad_batch]
    contributions = torch.tensor(shares, dtype=a.dtype, device=a.device)
    if not nonnegative:  # d|a|/da = sgn(a)
        contributions = contributions * a.reshape(-1)[positions].sgn()
    grad_a.reshape(-1).index_put_((positions,), contributions, accumulate=True)
