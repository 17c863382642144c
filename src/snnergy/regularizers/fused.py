"""The training fast path of the per-layer penalties: every layer in one autograd node.

A per-layer penalty is computed once per training batch; with the reference functions of
:mod:`snnergy.regularizers.layerwise` it builds about ten autograd nodes per layer, each of which
runs and keeps a ``(B, n)`` tensor, and on a small network the per-operation overhead alone
costs as much as the arithmetic (issue 8: measured on LeNet, the ``l1`` step cost 1.22x the
unregularized one). This module computes the same penalty as one
``torch.autograd.Function``:

- forward: on a CPU (``l2``, ``transformed-l1``, ``hoyer``, ``hoyer-square``, the kernel's
  ``kind``), one call of :func:`snnergy.regularizers.compiled.layer_values` for every layer: one
  read of each map for its per-sample sums, then each sample's value, the non-finite check, the
  batch means (float64), layer weights and layer sum, equal to the reference to rounding.
  Elsewhere, per layer, the fewest PyTorch reductions that give its per-sample statistics (no
  map-sized temporary where the map is a ReLU's output), then the arithmetic of every layer at
  once on ``(L, B)`` tensors (``L`` layers). ``l1`` runs the reference function's own operations
  (the same scalar, to the bit on CPU, where a mean is a sum divided by ``n``; elsewhere to
  rounding), and so do ``l2`` and ``transformed-l1`` on the PyTorch path; ``hoyer`` and
  ``hoyer-square`` come from the unscaled sums (below), equal to the reference to rounding;
- backward: the gradient in closed form, one pass over each map (on a CPU one call of
  :func:`snnergy.regularizers.compiled.layer_grads` for every layer; ``l1`` and ``l2`` on the
  PyTorch path: autograd's gradient to the bit; the others: the same derivative, rounded
  differently).

Each operation has a fixed cost of a few microseconds (issue 18: the compiled call for every
layer, instead of some twenty operations per direction, made the ReLU LeNet's ``hoyer`` training
step 5 % cheaper, 1.15 to 1.09 / 1.10 of the unregularized one), so every constant (elements per sample, their
square roots) is made once per map shapes, dtype and device and kept (:func:`_layout`).

Hoyer without the scale. The reference divides each sample by ``s = max|a|`` first
(``layerwise._moments``) so that no square over- or underflows. Hoyer and Hoyer-Square are
scale invariant: with ``S1 = sum|a|`` and ``R = ||a||_2`` (so ``m1 = S1 / (n s)`` and
``m2 = R^2 / (n s^2)``), ``hoyer = m1 / sqrt(m2) = S1 / (sqrt(n) R)`` and
``hoyer-square = m1^2 / m2 = S1^2 / (n R^2)``: ``s`` cancels. The squares are safe when, for
every sample that is not silent, ``R`` is finite and ``R^2 >= n * tiny`` (``tiny`` the dtype's
smallest normal number: then the squares lost to underflow, each below ``tiny * eps``, change
``R^2`` by less than ``eps``, relative); one check per call (one synchronization) finds whether
every sample is so, and otherwise (huge or tiny activations, a non-finite one) the call divides
by ``s`` first, as the reference does, and applies the same formulas to ``b = a / s``.
"""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Protocol, Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from snnergy.regularizers import compiled
from snnergy.regularizers.layerwise import TL1_BETA
from snnergy.threshold_kernels import ACCEPTS_PENALTY, PenaltyTerm

@dataclass(frozen=True)
class Layout:
    """Per-layer constants of one set of map shapes, dtype and device, each ``(L, 1)``.

    Attributes:
        n: Elements per sample.
        root_n: ``sqrt(n)``.
        floor: ``n * tiny``: the smallest ``sum a^2`` whose squares are summed to within
            ``eps`` (module docstring).
        sizes: ``n`` as ``(L,)`` int64 on the CPU (for the compiled kernels).
    """

    n: Tensor
    root_n: Tensor
    floor: Tensor
    sizes: Tensor


_LAYOUTS: dict[tuple[Any, ...], Layout] = {}


def _layout(maps: Sequence[Tensor]) -> Layout:
    """The :class:`Layout` of these maps, made once per shapes, dtype and device."""
    first = maps[0]
    key = (tuple(a.numel() // max(1, a.shape[0]) for a in maps), first.dtype, first.device)
    layout = _LAYOUTS.get(key)
    if layout is None:
        if len(_LAYOUTS) >= 64:  # a handful per training run; never grows without bound
            _LAYOUTS.clear()
        sizes = key[0]
        tiny = torch.finfo(first.dtype).tiny

        def column(values: Sequence[float], dtype: torch.dtype = first.dtype) -> Tensor:
            return torch.tensor([[v] for v in values], dtype=dtype, device=first.device)

        roots = [math.sqrt(n) for n in sizes]
        layout = Layout(column(sizes), column(roots), column([n * tiny for n in sizes]),
                        torch.tensor(sizes, dtype=torch.int64))
        _LAYOUTS[key] = layout
    return layout


class Kernel(Protocol):
    """One per-layer regularizer for :func:`fused_penalty`: the values of every layer, and their
    gradient (``L`` layers, batch ``B``)."""

    nan_check: bool
    """Whether the reference function turns non-finite values into NaN (``l1``, ``l2``, ``transformed-l1``)."""

    kind: int | None
    """Its kind in :func:`snnergy.regularizers.compiled.layer_values` (every layer in one compiled
    call, where the maps allow); ``None``: PyTorch operations alone."""

    def forward(self, maps: Sequence[Tensor], relu: Sequence[bool], layout: Layout) -> tuple[Tensor, Any]:
        """``(L, B)`` per-sample values, and what :meth:`backward` needs (``relu``: each map is a
        ReLU's output), in PyTorch operations."""
        ...

    def backward(self, maps: Sequence[Tensor], relu: Sequence[bool], rows: Tensor, saved: Any, layout: Layout,
                 needs: Sequence[bool]) -> list[Tensor | None]:
        """The gradient of ``sum(rows * values)`` in each map's shape (``None`` where not ``needs``)."""
        ...


def is_relu_output(a: Tensor) -> bool:
    """Whether ``a`` is the direct output of a ReLU (its autograd node is ReLU's), or of a node
    that says it behaves as one (a custom autograd function whose context has ``relu_like = True``:
    the compiled trained clip with every threshold > 0, :mod:`snnergy.threshold_kernels`): then
    ``a >= 0`` (or NaN), and the node's backward zeroes every gradient that reaches ``a`` where
    ``a = 0``.

    Example:
        >>> x = torch.randn(2, 3, requires_grad=True)
        >>> is_relu_output(torch.relu(x)), is_relu_output(x), is_relu_output(torch.relu(x) * 2)
        (True, False, False)
    """
    node = a.grad_fn
    return node is not None and (node.name() == "ReluBackward0" or getattr(node, "relu_like", False) is True)


def _flat(a: Tensor) -> Tensor:
    return a.reshape(a.shape[0], -1)


def _magnitudes(a: Tensor, relu: bool) -> Tensor:
    """``|a|`` as ``(B, n)`` (``a`` itself after a ReLU)."""
    return _flat(a) if relu else _flat(a).abs()


class _L1:
    """``mean |a|``; gradient ``sgn(a) * row / n`` (after a ReLU: ``row / n``, see :func:`fused_penalty`)."""

    nan_check = True
    kind = None  # one PyTorch sum per map is as fast, and the reference's bits

    def forward(self, maps: Sequence[Tensor], relu: Sequence[bool], layout: Layout) -> tuple[Tensor, Any]:
        return torch.stack([_magnitudes(a, r).sum(dim=1) for a, r in zip(maps, relu)]) / layout.n, None

    def backward(self, maps: Sequence[Tensor], relu: Sequence[bool], rows: Tensor, saved: Any, layout: Layout,
                 needs: Sequence[bool]) -> list[Tensor | None]:
        factors = (rows / layout.n).unbind()
        return [None if not need else _row(k, a).expand_as(a) if r else a.sgn().mul_(_row(k, a))
                for a, r, k, need in zip(maps, relu, factors, needs)]


class _L2:
    """``mean a^2``; gradient ``2 a * row / n`` (``a * (2 row / n)``: the same bits, 2 is exact)."""

    nan_check = True
    kind = compiled.LAYER_KINDS["l2"]

    def forward(self, maps: Sequence[Tensor], relu: Sequence[bool], layout: Layout) -> tuple[Tensor, Any]:
        return torch.stack([_flat(a).pow(2).sum(dim=1) for a in maps]) / layout.n, None

    def backward(self, maps: Sequence[Tensor], relu: Sequence[bool], rows: Tensor, saved: Any, layout: Layout,
                 needs: Sequence[bool]) -> list[Tensor | None]:
        factors = (rows / layout.n).mul_(2.0).unbind()
        return [a * _row(k, a) if need else None for a, k, need in zip(maps, factors, needs)]


class _TransformedL1:
    """``mean (beta+1)|a| / (beta+|a|)``; gradient ``sgn(a) (beta+1) beta / (beta+|a|)^2 * row / n``."""

    nan_check = True
    kind = compiled.LAYER_KINDS["transformed-l1"]

    def forward(self, maps: Sequence[Tensor], relu: Sequence[bool], layout: Layout) -> tuple[Tensor, Any]:
        # (beta+1) |a| / (beta+|a|) with beta + 1 = 2 (TL1_BETA = 1): doubling is exact, so the sum
        # of |a| / (beta+|a|), doubled, has the reference's bits, with one map-sized temporary fewer
        sums, denominators = [], []
        for a, r in zip(maps, relu):
            magnitude = _magnitudes(a, r)
            denominator = TL1_BETA + magnitude
            sums.append(torch.div(magnitude, denominator).sum(dim=1))
            denominators.append(denominator)
        return torch.stack(sums).mul_(TL1_BETA + 1.0).div_(layout.n), denominators

    def backward(self, maps: Sequence[Tensor], relu: Sequence[bool], rows: Tensor, saved: Any, layout: Layout,
                 needs: Sequence[bool]) -> list[Tensor | None]:
        factors = (rows * ((TL1_BETA + 1.0) * TL1_BETA / layout.n)).unbind()
        grads: list[Tensor | None] = []
        for a, r, k, denominator, need in zip(maps, relu, factors, saved, needs):
            if not need:
                grads.append(None)
                continue
            squared = denominator.square().view(a.shape)
            per_element = _row(k, a)
            grads.append(per_element / squared if r else a.sgn().mul_(per_element).div_(squared))
        return grads


class _Hoyer:
    """``hoyer`` (``square=False``): ``S1 / (sqrt(n) sqrt(S2))``, or ``hoyer-square``:
    ``S1^2 / (n S2)``, from ``S1 = sum|a|`` and ``S2 = sum a^2`` per sample (module docstring: the
    reference's value on ``b = a / max|a|``, the scale cancelling). Gradient, per element,
    ``sgn(a) c1 - a c2`` with ``c1 = 1 / (sqrt(n) sqrt(S2))``, ``c2 = v / S2`` (hoyer) or
    ``c1 = 2 S1 / (n S2)``, ``c2 = 2 v / S2`` (hoyer-square); 0 on a silent sample (``S1 = 0``)."""

    nan_check = False

    def __init__(self, square: bool) -> None:
        self.square = square
        self.kind = compiled.LAYER_KINDS["hoyer-square" if square else "hoyer"]

    def forward(self, maps: Sequence[Tensor], relu: Sequence[bool], layout: Layout) -> tuple[Tensor, Any]:
        s1, s2 = self._sums(maps, relu, None)
        silent = s1 == 0
        if not bool(((s2 >= layout.floor) & (s2 <= torch.finfo(s2.dtype).max) | silent).all()):
            # huge, tiny or non-finite activations: divide by the scale first (module docstring)
            scales = [_magnitudes(a, r).amax(dim=1, keepdim=True) for a, r in zip(maps, relu)]
            scales = [s.masked_fill_(s == 0, 1.0) for s in scales]
            s1, s2 = self._sums(maps, relu, scales)
        else:
            scales = None
        s2 = s2.masked_fill_(silent, 1.0)  # a silent sample: S1 = 0, value 0
        value = s1.square().div_(s2 * layout.n) if self.square else s1 / (s2.sqrt() * layout.root_n)
        return value, (s1, s2, value, silent, scales)

    @staticmethod
    def _sums(maps: Sequence[Tensor], relu: Sequence[bool], scales: list[Tensor] | None) -> tuple[Tensor, Tensor]:
        s1, s2 = [], []
        for i, (a, r) in enumerate(zip(maps, relu)):
            magnitude = _magnitudes(a, r)
            if scales is not None:
                magnitude = magnitude / scales[i]
            s1.append(magnitude.sum(dim=1))
            s2.append(magnitude.pow(2).sum(dim=1))
        return torch.stack(s1), torch.stack(s2)

    def backward(self, maps: Sequence[Tensor], relu: Sequence[bool], rows: Tensor, saved: Any, layout: Layout,
                 needs: Sequence[bool]) -> list[Tensor | None]:
        s1, s2, value, silent, scales = saved
        rows = rows.masked_fill(silent, 0.0)
        if self.square:
            c1, c2 = rows * s1 * 2.0 / (s2 * layout.n), rows * value * -2.0 / s2
        else:
            c1, c2 = rows / (s2.sqrt() * layout.root_n), rows * value.neg() / s2
        grads: list[Tensor | None] = []
        for i, (a, r, k1, k2, need) in enumerate(zip(maps, relu, c1.unbind(), c2.unbind(), needs)):
            if not need:
                grads.append(None)
                continue
            if scales is not None:  # d/da = (1/s) d/db: sgn(a) c1 / s + (a / s) (c2 / s), no s^2 (overflow)
                scale = scales[i].squeeze(1)
                k1, k2 = _row(k1 / scale, a), _row(k2 / scale, a)
                b = a / _row(scale, a)
                grads.append(b.mul_(k2).add_(k1) if r else b.mul_(k2).add_(a.sgn().mul_(k1)))
                continue
            k1, k2 = _row(k1, a), _row(k2, a)
            grads.append(a.mul(k2).add_(k1) if r else a.sgn().mul_(k1).add_(a.mul(k2)))
        return grads


def _row(row: Tensor, a: Tensor) -> Tensor:
    """``(B,)`` as ``(B, 1, ...)``, to broadcast over ``a``."""
    return row.view(-1, *[1] * (a.dim() - 1))


_HANDING_OFF = threading.local()

_TERMS = {compiled.LAYER_KINDS["l2"]: 1, compiled.LAYER_KINDS["transformed-l1"]: 2,
          compiled.LAYER_KINDS["hoyer"]: 3, compiled.LAYER_KINDS["hoyer-square"]: 3}
""":func:`snnergy.regularizers.compiled.layer_values`' kinds as :class:`~snnergy.threshold_kernels.PenaltyTerm`'s."""


@contextmanager
def handing_off() -> Iterator[None]:
    """Within it (in this thread), a per-layer penalty (``l1`` and the compiled path of the others)
    and ``synops`` on a trained-threshold layer (:mod:`snnergy.regularizers.fused_energy`) hand
    their gradient at a map that a compiled activation produced (QCFS, the trained clip:
    :mod:`snnergy.threshold_kernels`) to that activation's backward pass, as per-sample factors,
    instead of returning a gradient map: no map written, none added by autograd, the same
    parameter gradients to the bit (issue 18).

    Only for a backward pass that runs through those activations (the training loop's
    ``loss.backward()``): ``torch.autograd.grad(penalty, maps)``, which stops at the maps, would get
    no gradient at such a map. Autograd runs the activation's backward after the penalty's, since
    the penalty's node takes the activation's output.

    Example:
        >>> import contextlib
        >>> from snnergy.threshold_kernels import clip
        >>> x, theta = torch.randn(4, 6, requires_grad=True), torch.tensor(1.0, requires_grad=True)
        >>> def gradients(hand: bool) -> list:
        ...     x.grad = theta.grad = None
        ...     a = clip(x, theta)
        ...     loss = a.sum() + fused_penalty(HOYER_KERNEL, [a], None)
        ...     with handing_off() if hand else contextlib.nullcontext():
        ...         loss.backward()
        ...     return [x.grad.clone(), theta.grad.clone()]
        >>> all(torch.equal(g, h) for g, h in zip(gradients(True), gradients(False)))
        True
    """
    before = getattr(_HANDING_OFF, "on", False)
    _HANDING_OFF.on = True
    try:
        yield
    finally:
        _HANDING_OFF.on = before


def hands_off(a: Tensor) -> bool:
    """Whether this backward pass hands the gradient at ``a`` to its producer (:func:`handing_off`;
    one term per node and pass: a second penalty on the same map returns its gradient map)."""
    return (getattr(_HANDING_OFF, "on", False) and getattr(a.grad_fn, ACCEPTS_PENALTY, False) is True
            and getattr(a.grad_fn, "penalty_term", None) is None)


class _FusedPenalty(torch.autograd.Function):
    """``sum_l w_l * mean_B(values_l)`` over every layer, in one node (module docstring)."""

    @staticmethod
    def forward(ctx: Any, kernel: Kernel, weights: tuple[float, ...] | None, relu: tuple[bool, ...],
                *maps: Tensor) -> Tensor:
        layout = _layout(maps)
        ctx.save_for_backward(*maps)
        ctx.kernel, ctx.weights, ctx.relu, ctx.layout = kernel, weights, relu, layout
        ctx.computed = None
        if kernel.kind is not None and compiled.usable(maps):  # every layer in one compiled call
            ctx.computed = compiled.layer_values(kernel.kind, maps, relu, layout.sizes, layout.floor, TL1_BETA,
                                                 weights)
            if ctx.computed is not None:
                return ctx.computed.total
        values, ctx.saved = kernel.forward(maps, relu, layout)  # (L, B)
        if kernel.nan_check:  # NaN where not finite; a finite value unchanged (v - v = 0)
            values = values + (values - values)
        means = values.mean(dim=1)
        layers = means.unbind()
        if weights is not None:
            layers = [term * w for term, w in zip(layers, weights)]
        total = layers[0]
        for term in layers[1:]:  # in layer order, as the reference sums
            total = total + term
        ctx.values = values
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        maps = ctx.saved_tensors
        needs = ctx.needs_input_grad[3:]
        # the compiled kinds and l1 can hand their gradient to a compiled activation (handing_off)
        handed = [need and (ctx.computed is not None or ctx.kernel is L1_KERNEL) and hands_off(a)
                  for a, need in zip(maps, needs)]
        kept = [need and not h for need, h in zip(needs, handed)]
        if ctx.computed is not None:
            kind = ctx.kernel.kind
            grads, factors = compiled.layer_grads(kind, maps, ctx.relu, ctx.layout.sizes, TL1_BETA, ctx.weights,
                                                  ctx.computed, grad.item(), kept, any(handed))
            for i, (a, h) in enumerate(zip(maps, handed)):
                if h:  # the activation's backward adds it: no gradient map here
                    a.grad_fn.penalty_term = PenaltyTerm(_TERMS[kind], not ctx.relu[i], factors[i, 0],  # type: ignore[index]
                                                         factors[i, 1] if _TERMS[kind] == 3 else None, TL1_BETA)  # type: ignore[index]
            return (None, None, None, *grads)
        values: Tensor = ctx.values
        layers, batch = values.shape
        if ctx.weights is None:
            rows = (grad / batch).expand(layers, batch)
        else:
            rows = (grad * torch.tensor(ctx.weights, dtype=grad.dtype, device=grad.device) / batch).unsqueeze(1)
            rows = rows.expand(layers, batch)
        if ctx.kernel.nan_check:  # a non-finite sample passes no gradient (the reference's where)
            rows = torch.where(values.isnan(), 0.0, rows)
        if any(handed):  # l1: its factors, as _L1.backward computes them
            factors = (rows / ctx.layout.n).unbind()
            for i, (a, h) in enumerate(zip(maps, handed)):
                if h:
                    a.grad_fn.penalty_term = PenaltyTerm(4, not ctx.relu[i], factors[i].contiguous(), None, TL1_BETA)
        grads = ctx.kernel.backward(maps, ctx.relu, rows, ctx.saved, ctx.layout, kept)
        return (None, None, None, *grads)


def fused_penalty(kernel: Kernel, maps: Sequence[Tensor], weights: Sequence[float] | None) -> Tensor:
    """``sum_l w_l * mean_B(kernel(map_l))``: the reference penalty's value (to the bit for
    ``l1``, ``l2`` and ``transformed-l1`` on CPU; to rounding for ``hoyer`` and ``hoyer-square``),
    with the closed-form gradient. The maps share batch size, dtype and device; ``weights``
    ``None`` means all 1.

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
