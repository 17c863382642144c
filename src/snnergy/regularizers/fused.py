"""The training fast path of the per-layer penalties: every layer in one autograd node.

A per-layer penalty is computed once per training batch; with the reference functions of
:mod:`snnergy.regularizers.layerwise` it builds about ten autograd nodes per layer, each of which
runs and keeps a ``(B, n)`` tensor, and on a small network the per-operation overhead alone
costs as much as the arithmetic (issue 8: measured on LeNet, the ``l1`` step cost 1.22x the
unregularized one). This module computes the same penalty as one
``torch.autograd.Function``:

- forward: for each layer, the reference function's own operations on the map, then the
  non-finite check, batch mean, layer weights and layer sum as the reference path does them
  (the same scalar, to the bit on CPU, where a mean is a sum divided by ``n``; elsewhere to
  rounding);
- backward: the gradient in closed form, a few passes over each map (``l1`` and ``l2``:
  autograd's gradient to the bit; ``hoyer``, ``hoyer-square``, ``transformed-l1``: the same
  derivative, rounded differently in the last bits).

A :class:`Kernel` computes one regularizer: per-layer passes over the maps, and the per-sample
arithmetic of every layer at once, on ``(L, B)`` tensors (each operation has a fixed cost that
matters as much as its passes: a few microseconds, times layers and terms). The kernels are
plain constants (:data:`L1_KERNEL`...); the registry entry of each built-in regularizer names its
kernel (:class:`~snnergy.regularizers.bound.LayerwiseRegularizer`), and a regularizer without one
takes the reference path.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from snnergy.regularizers.layerwise import TL1_BETA


class Kernel(Protocol):
    """One per-layer regularizer for :func:`fused_penalty`, in four steps: per-layer passes over
    the maps, and per-sample arithmetic on every layer at once (``(L, B)`` tensors, ``L`` layers)."""

    nan_check: bool
    """Whether the reference function turns non-finite values into NaN (``l1``, ``l2``, ``transformed-l1``)."""

    def sums(self, a: Tensor, relu: bool) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """Per-sample ``(B,)`` statistics of the map ``a`` (``relu``: ``a`` is a ReLU's output), and
        the ``a``-sized tensors that :meth:`grad` needs."""
        ...

    def values(self, sums: tuple[Tensor, ...], n: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        """``(L, B)`` values from the stacked statistics (``n``: ``(L, 1)`` elements per sample)."""
        ...

    def coefficients(self, rows: Tensor, saved: tuple[Tensor, ...], n: Tensor) -> tuple[Tensor, ...]:
        """``(L, B)`` per-sample factors of the gradient, given ``rows``, the gradient of the values."""
        ...

    def grad(self, a: Tensor, saved: tuple[Tensor, ...], factors: tuple[Tensor, ...], relu: bool) -> Tensor:
        """The gradient in ``a``'s shape, from one layer's ``(B,)`` factors."""
        ...


def is_relu_output(a: Tensor) -> bool:
    """Whether ``a`` is the direct output of a ReLU (its autograd node is ReLU's): then ``a >= 0``
    (or NaN), and the ReLU's backward zeroes every gradient that reaches ``a`` where ``a = 0``.

    Example:
        >>> x = torch.randn(2, 3, requires_grad=True)
        >>> is_relu_output(torch.relu(x)), is_relu_output(x), is_relu_output(torch.relu(x) * 2)
        (True, False, False)
    """
    return a.grad_fn is not None and a.grad_fn.name() == "ReluBackward0"


def _flat(a: Tensor) -> Tensor:
    return a.reshape(a.shape[0], -1)


def _per_row(row: Tensor, a: Tensor) -> Tensor:
    """``(B,)`` as ``(B, 1, ...)``, to broadcast over ``a``."""
    return row.view(-1, *[1] * (a.dim() - 1))


class _L1:
    """``mean |a|``; gradient ``sgn(a) * row / n`` (after a ReLU: ``row / n``, see :func:`fused_penalty`)."""

    nan_check = True

    def sums(self, a: Tensor, relu: bool) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        return (_flat(a if relu else a.abs()).sum(dim=1),), ()

    def values(self, sums: tuple[Tensor, ...], n: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        return sums[0] / n, ()

    def coefficients(self, rows: Tensor, saved: tuple[Tensor, ...], n: Tensor) -> tuple[Tensor, ...]:
        return (rows / n,)

    def grad(self, a: Tensor, saved: tuple[Tensor, ...], factors: tuple[Tensor, ...], relu: bool) -> Tensor:
        per_element = _per_row(factors[0], a)
        return per_element.expand_as(a) if relu else a.sgn().mul_(per_element)


class _L2:
    """``mean a^2``; gradient ``2 a * row / n``."""

    nan_check = True

    def sums(self, a: Tensor, relu: bool) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        return (_flat(a).pow(2).sum(dim=1),), ()

    def values(self, sums: tuple[Tensor, ...], n: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        return sums[0] / n, ()

    def coefficients(self, rows: Tensor, saved: tuple[Tensor, ...], n: Tensor) -> tuple[Tensor, ...]:
        return (rows / n,)

    def grad(self, a: Tensor, saved: tuple[Tensor, ...], factors: tuple[Tensor, ...], relu: bool) -> Tensor:
        return a.mul(2.0).mul_(_per_row(factors[0], a))


class _TransformedL1:
    """``mean (beta+1)|a| / (beta+|a|)``; gradient ``sgn(a) (beta+1) beta / (beta+|a|)^2 * row / n``."""

    nan_check = True

    def sums(self, a: Tensor, relu: bool) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        mag = a if relu else a.abs()
        denominator = TL1_BETA + mag
        return (_flat(((TL1_BETA + 1.0) * mag).div_(denominator)).sum(dim=1),), (denominator,)

    def values(self, sums: tuple[Tensor, ...], n: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        return sums[0] / n, ()

    def coefficients(self, rows: Tensor, saved: tuple[Tensor, ...], n: Tensor) -> tuple[Tensor, ...]:
        return (rows * ((TL1_BETA + 1.0) * TL1_BETA / n),)

    def grad(self, a: Tensor, saved: tuple[Tensor, ...], factors: tuple[Tensor, ...], relu: bool) -> Tensor:
        per_element = _per_row(factors[0], a)
        squared = saved[0].square()
        return per_element / squared if relu else a.sgn().mul_(per_element).div_(squared)


class _Hoyer:
    """``hoyer`` (``square=False``) or ``hoyer-square`` on the scale-free moments of
    ``b = a / s``, ``s = max|a|`` (``m1 = mean|b|``, ``m2 = mean b^2``); the gradient of a function
    ``v(m1, m2)`` is ``sgn(a) (dv/dm1 + 2 |b| dv/dm2) / (n s)``."""

    nan_check = False

    def __init__(self, square: bool) -> None:
        self.square = square

    def sums(self, a: Tensor, relu: bool) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        # as layerwise._moments, on |b| = |a| / s (the same, to the bit: s > 0) and b^2 = |b|^2
        magnitude = _flat(a if relu else a.abs())
        scale = magnitude.amax(dim=1, keepdim=True)
        silent = scale == 0
        scale = scale.masked_fill_(silent, 1.0)
        b = magnitude / scale if relu else magnitude.div_(scale)  # |b|; never written into a
        return (b.sum(dim=1), b.pow(2).sum(dim=1), scale, silent), (b,)

    def values(self, sums: tuple[Tensor, ...], n: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        s1, s2, scale, silent = sums[0], sums[1], sums[2].squeeze(2), sums[3].squeeze(2)  # (L, B, 1) -> (L, B)
        m1, m2 = s1 / n, (s2 / n).masked_fill_(silent, 1.0)
        value = m1.pow(2) / m2 if self.square else m1 / m2.sqrt()
        return value.masked_fill(silent, 0.0), (m1, m2, value, scale, silent)

    def coefficients(self, rows: Tensor, saved: tuple[Tensor, ...], n: Tensor) -> tuple[Tensor, ...]:
        m1, m2, value, scale, silent = saved
        rows = rows.masked_fill(silent, 0.0)
        if self.square:  # v = m1^2 / m2
            d1, d2 = rows * (2.0 * m1 / m2), rows * (value / m2)
        else:  # v = m1 / sqrt(m2)
            d1, d2 = rows / m2.sqrt(), rows * (value / (2.0 * m2))
        per_element = scale * n  # n s
        return d1 / per_element, d2 * -2.0 / per_element

    def grad(self, a: Tensor, saved: tuple[Tensor, ...], factors: tuple[Tensor, ...], relu: bool) -> Tensor:
        c1, c2 = (_per_row(f, a) for f in factors)
        grad = torch.addcmul(c1, saved[0].view(a.shape), c2)
        return grad if relu else grad.mul_(a.sgn())


class _FusedPenalty(torch.autograd.Function):
    """``sum_l w_l * mean_B(values_l)`` over every layer, in one node (module docstring)."""

    @staticmethod
    def forward(ctx: Any, kernel: Kernel, weights: tuple[float, ...] | None, relu: tuple[bool, ...],
                *maps: Tensor) -> Tensor:
        per_layer = [kernel.sums(a, r) for a, r in zip(maps, relu)]
        sums = tuple(torch.stack(column) for column in zip(*(stats for stats, _ in per_layer)))
        n = torch.tensor([[_flat(a).shape[1]] for a in maps], dtype=sums[0].dtype, device=sums[0].device)
        values, small = kernel.values(sums, n)  # (L, B); sum / n is the CPU's mean, to the bit
        if kernel.nan_check:  # NaN where not finite; a finite value unchanged (v - v = 0)
            values = values + (values - values)
        means = values.mean(dim=1)
        if weights is not None:
            means = means * torch.tensor(weights, dtype=means.dtype, device=means.device)
        layers = means.unbind()
        total = layers[0]
        for term in layers[1:]:  # in layer order, as the reference sums
            total = total + term
        ctx.save_for_backward(*maps)
        ctx.kernel, ctx.weights, ctx.relu, ctx.values, ctx.n = kernel, weights, relu, values, n
        ctx.small, ctx.big = small, [big for _, big in per_layer]
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        maps = ctx.saved_tensors
        values: Tensor = ctx.values
        per_layer = grad.expand(values.shape[0])
        if ctx.weights is not None:
            per_layer = per_layer * torch.tensor(ctx.weights, dtype=grad.dtype, device=grad.device)
        rows = (per_layer / values.shape[1]).unsqueeze(1).expand_as(values)
        if ctx.kernel.nan_check:  # a non-finite sample passes no gradient (the reference's where)
            rows = torch.where(values.isnan(), 0.0, rows)
        factors = list(zip(*(f.unbind() for f in ctx.kernel.coefficients(rows, ctx.small, ctx.n))))
        grads = [
            ctx.kernel.grad(a, big, layer_factors, relu) if needs else None
            for a, big, layer_factors, relu, needs in zip(maps, ctx.big, factors, ctx.relu, ctx.needs_input_grad[3:])
        ]
        return (None, None, None, *grads)


def fused_penalty(kernel: Kernel, maps: Sequence[Tensor], weights: Sequence[float] | None) -> Tensor:
    """``sum_l w_l * mean_B(kernel(map_l))``: the reference penalty's value (to the bit), with
    the closed-form gradient. The maps share batch size, dtype and device; ``weights`` ``None``
    means all 1.

    A map that is the direct output of a ReLU (its ``grad_fn`` is ReLU's) is non-negative, so
    ``|a| = a`` (no pass over the map for the magnitudes), and the ReLU's backward zeroes every
    gradient where ``a = 0``: the kernels leave out the factor ``sgn(a)``, which is 1 everywhere
    else, and the gradients that reach the parameters are the same, to the bit (only the
    gradient at the ReLU's output, where it is 0, is not masked).

    Example:
        >>> maps = [torch.tensor([[0.0, 3.0, 4.0]]), torch.tensor([[1.0], [3.0]])[:1]]
        >>> fused_penalty(L1_KERNEL, maps, None)  # 7/3 + 1
        tensor(3.3333)
    """
    relu = tuple(is_relu_output(a) for a in maps)
    weights = None if weights is None else tuple(weights)
    return _FusedPenalty.apply(kernel, weights, relu, *maps)  # type: ignore[no-any-return]


L1_KERNEL: Kernel = _L1()
"""The fast path of :func:`~snnergy.regularizers.layerwise.l1`."""
L2_KERNEL: Kernel = _L2()
"""The fast path of :func:`~snnergy.regularizers.layerwise.l2`."""
HOYER_KERNEL: Kernel = _Hoyer(square=False)
"""The fast path of :func:`~snnergy.regularizers.layerwise.hoyer`."""
HOYER_SQUARE_KERNEL: Kernel = _Hoyer(square=True)
"""The fast path of :func:`~snnergy.regularizers.layerwise.hoyer_square`."""
TRANSFORMED_L1_KERNEL: Kernel = _TransformedL1()
"""The fast path of :func:`~snnergy.regularizers.layerwise.transformed_l1`."""


def stackable(maps: Sequence[Tensor]) -> bool:
    """Whether :func:`fused_penalty` can take these maps: each with a batch dimension, one batch
    size, dtype and device.

    Example:
        >>> stackable([torch.zeros(2, 3), torch.zeros(2, 5)]), stackable([torch.zeros(2, 3), torch.zeros(1, 3)])
        (True, False)
    """
    first = maps[0]
    return all(
        a.dim() > 0 and a.shape[0] == first.shape[0] and a.dtype == first.dtype and a.device == first.device
        for a in maps
    )
