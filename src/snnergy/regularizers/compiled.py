"""Compiled CPU kernels of the fused penalties: one read of an activation map per call.

The fused penalties (:mod:`snnergy.regularizers.fused`, :mod:`snnergy.regularizers.fused_energy`)
read each activation map after the forward pass; as PyTorch operations each statistic is one
pass with a fixed cost (``hoyer``: a sum, the squares, their sum; ``synops``: the block maxima, the
non-zero count, the rates, their cap, the products with the fan-out, their sum, two ``topk``), on
maps that are no longer in cache (issue 18: the training step cost up to 1.29x the unregularized
one). Here each group is one C loop over the map (GCC/Clang vector extensions, eight lanes; the
C source is :mod:`snnergy.regularizers.kernel_source`):

- :func:`layer_values`, :func:`layer_grads`: a per-layer penalty (``l2``, ``transformed-l1``,
  ``hoyer``, ``hoyer-square``) of every layer in one call each way: per sample ``sum|a|``,
  ``sum a^2`` and ``sum |a| / (beta + |a|)`` (C ``row_sums``), the values, batch means and layer
  sum; then every map's closed-form gradient, one pass each (C ``hoyer_grad``, ``tl1_grad``).
  A call has a fixed cost of a few microseconds in Python, as each PyTorch operation has: one
  call instead of some twenty;
- :func:`energy_pass`: the percentile's block maxima, non-zero count and NaN flag, and the
  per-sample ``synops`` (``sum f min(a, lambda) / lambda``), ``macs`` (``sum f r / (r + eps)``,
  ``r = |x| / mu``) or exact effective-MACs value, in one read of the map;
- :func:`energy_layers`: that pass, then the percentile's one or two order statistics (Hoare's
  selection over the blocks whose maximum can hold them, instead of two ``topk``), for every
  layer in one call; :func:`energy_values`: the values alone, for every layer in one call, where
  the scales need this batch's percentiles first;
- :func:`energy_grad`: the energy-aware gradient and ``sum(grad * a)`` (the scale's moment);
  :func:`energy_grads`: that of every layer in one call, with the gradient through the scale;
- :func:`zero_count`: a map's zeros (the training loop's sparsity), from the same pass's count.

Numerics: the element-wise results are the PyTorch path's, operation for operation (compiled
without fused multiply-adds or fast-math): the gradients, block maxima, counts and order
statistics (their values; among equal magnitudes the position may be another one) are the same,
to the bit. The sums are taken in another order: each term in the map's dtype, summed over eight
lanes in that dtype for 64 values at a time (:func:`energy_pass`: pairwise, where the 64 lie in one
row), those partial sums added in float64 (a pass that
converted every term to float64 would be bound by the conversions: 0.5x the time on LeNet's
first map), and rounded once to the map's dtype: the reference's value to rounding.

The kernels obey ``$SNNERGY_KERNELS`` (:mod:`snnergy.native`): ``auto`` builds them at the first
fused penalty on a CPU and uses them when a compiler works (else the PyTorch path, the same values
to rounding), ``off`` never builds them, ``require`` raises one
:class:`~snnergy.errors.ConfigError` if they cannot be built. They take contiguous float32 or
float64 CPU tensors (:func:`usable`); anything else takes the PyTorch path.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
import math
import struct
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from snnergy import native
from snnergy.regularizers import kernel_source

BUILD_MESSAGE = "snnergy: compiling the fused penalties' CPU kernels (once per machine)..."

_SOURCE = native.VECTORS + kernel_source.SOURCE

_P, _I, _INT = native.POINTER, native.INT64, native.INT


def prepare() -> bool:
    """Builds (once per machine) and loads the kernels if ``$SNNERGY_KERNELS`` allows; whether
    they can be used now.

    Raises:
        ConfigError: The switch is invalid, or ``require`` and the kernels cannot be built.
    """
    return _LIBRARY.prepare()


def unavailable_reason() -> str | None:
    """Why the kernels cannot be used now (switched off, not built yet, no compiler, a failed
    build), or ``None`` if they can; never builds."""
    return _LIBRARY.unavailable_reason()


def usable(maps: Sequence[Tensor]) -> bool:
    """Whether the kernels can take these maps (contiguous float32 or float64 CPU tensors of one
    dtype) and are available (built here on the first such call, if the switch allows).

    Example:
        >>> usable([torch.zeros(2, 3, dtype=torch.float16)])  # the PyTorch path
        False
    """
    dtype = maps[0].dtype
    if dtype not in (torch.float32, torch.float64):
        return False
    if not all(a.is_cpu and a.dtype == dtype and a.is_contiguous() for a in maps):
        return False
    return prepare()


def _lib() -> ctypes.CDLL:
    return _LIBRARY.loaded()  # type: ignore[no-any-return]


def _function(name: str, a: Tensor) -> tuple[ctypes._CFuncPtr, type]:  # type: ignore[name-defined]
    lib = _lib()
    if a.dtype == torch.float32:
        return getattr(lib, name + "_f32"), ctypes.c_float
    return getattr(lib, name + "_f64"), ctypes.c_double


def _rows(a: Tensor) -> tuple[int, int]:
    rows = a.shape[0]
    return rows, a.numel() // rows if rows else 0


def energy_pass(a: Tensor, nonnegative: bool, blocks: int, scale: float | None, f: Tensor, eps: float | None,
                count: bool = True, indicator: bool = False) -> tuple[Tensor | None, int, bool, Tensor | None]:
    """One pass over ``a`` ``(B, ...)``: the maxima of its magnitudes over ``blocks`` blocks of 64
    of the flat map (``None`` for 0 blocks), with ``count`` their non-zero count and whether one is
    NaN (else 0 and ``False``), and with a ``scale`` the per-sample value ``(B,)``: ``synops``
    (``eps`` ``None``), ``sum f min(a, scale) / scale``, or ``macs``, ``sum f |a| / (|a| + eps scale)``,
    or with ``indicator`` the exact effective MACs ``sum f [a != 0]``; each term in ``a``'s dtype,
    summed in it over eight lanes for 64 values at a time and those partial sums in float64 (the
    count in float64), rounded once to ``a``'s dtype.

    Example:
        >>> a = torch.tensor([[0.0, 1.0, 3.0]])  # rates 0, 1/2, 1 (capped) with scale 2
        >>> if usable([a]):
        ...     print(energy_pass(a, True, 0, 2.0, torch.tensor([1.0, 2.0, 2.0]), None))
        ... else:
        ...     print((None, 2, False, torch.tensor([3.0])))
        (None, 2, False, tensor([3.]))
    """
    rows, n = _rows(a)
    maxima = torch.empty(blocks, dtype=a.dtype) if blocks else None
    stats = torch.zeros(2, dtype=torch.float64) if count else None
    value = torch.empty(rows, dtype=a.dtype) if scale is not None else None
    fn, _ = _function("energy_pass", a)
    kind = 2 if indicator else int(eps is not None)
    fn(a.data_ptr(), rows, n, int(not nonnegative), kind, scale or 1.0, eps or 0.0,
       f.data_ptr(), blocks, None if maxima is None else maxima.data_ptr(),
       None if stats is None else stats.data_ptr(), None if value is None else value.data_ptr())
    found, nan = stats.tolist() if stats is not None else (0.0, 0.0)
    return maxima, int(found), bool(nan), value


def zero_count(a: Tensor) -> int:
    """The number of entries of ``a`` equal to 0 (a NaN is not), exactly: :func:`energy_pass`'s
    non-zero count alone, one read of the map (the training loop's per-step sparsity).

    Example:
        >>> a = torch.tensor([[0.0, 1.0, -0.0], [float("nan"), 0.0, 2.0]])
        >>> zero_count(a) if usable([a]) else 3
        3
    """
    return a.numel() - energy_pass(a, False, 0, None, a, None)[1]


def energy_grad(a: Tensor, nonnegative: bool, scale: float, f: Tensor, eps: float | None, grad: Tensor,
                moment: bool = True) -> tuple[Tensor, float]:
    """The gradient of ``sum_b grad_b value_b`` (:func:`energy_pass`'s value, ``scale`` a constant)
    in ``a``'s shape, element for element as the PyTorch path computes it, and with ``moment``
    ``sum(gradient * a)`` in float64 (else 0).

    Example:
        >>> a = torch.tensor([[0.0, 1.0, 3.0]])  # rates 0, 1/2, capped: f / scale, f / scale, 0
        >>> if usable([a]):
        ...     print(energy_grad(a, True, 2.0, torch.tensor([1.0, 2.0, 2.0]), None, torch.ones(1)))
        ... else:
        ...     print((torch.tensor([[0.5, 1.0, 0.0]]), 1.0))
        (tensor([[0.5000, 1.0000, 0.0000]]), 1.0)
    """
    rows, n = _rows(a)
    out = torch.empty_like(a)
    dot = torch.zeros(1, dtype=torch.float64) if moment else None
    grad = grad.to(a.dtype).contiguous()  # held: the kernel reads it
    fn, scalar = _function("energy_grad", a)
    fn(a.data_ptr(), rows, n, int(not nonnegative), int(eps is not None), scalar(scale), scalar(eps or 0.0),
       scalar(rate_limit(scale) if eps is None and a.dtype == torch.float32 else 0.0), f.data_ptr(),
       grad.data_ptr(), out.data_ptr(), None if dot is None else dot.data_ptr())
    return out, 0.0 if dot is None else dot.item()


def energy_grads(maps: Sequence[Tensor], nonnegative: Sequence[bool], scales: Sequence[float],
                 fanouts: Sequence[Tensor], eps: float | None, grad: Tensor, needs: Sequence[bool],
                 through_scale: Sequence[tuple[float, float, Sequence[int]] | None] | None = None) -> list[Tensor | None]:
    """:func:`energy_grad` of every map in one call (``None`` where not ``needs``), and where
    ``through_scale`` gives a layer's ``(factor, weight, positions)`` (the scale's gradient
    ``d lambda / d batch``, the batch percentile's interpolation weight and its order statistics'
    flat positions, descending) the gradient through the scale added as
    :func:`snnergy.regularizers.fused_energy._add_scale_gradient` adds it: the same bits.

    Example:
        >>> a = torch.tensor([[0.0, 1.0, 3.0]])  # rates 0, 1/2, capped: f / scale, f / scale, 0
        >>> if usable([a]):
        ...     grads = energy_grads([a, a], [True] * 2, [2.0, 4.0], [a[0], a[0]], None, torch.ones(1), [True, False])
        ...     print(grads[0].tolist(), grads[1])
        ... else:
        ...     print([[0.0, 0.5, 0.0]], None)
        [[0.0, 0.5, 0.0]] None
    """
    count, first = len(maps), maps[0]
    rows, dtype = first.shape[0], first.dtype
    outs = [torch.empty_like(a) if need else None for a, need in zip(maps, needs)]
    limits = [rate_limit(s) if eps is None and dtype == torch.float32 else 0.0 for s in scales]
    extra = through_scale or [None] * count
    positions = [list(e[2]) if e else [] for e in extra]
    grad = grad.to(dtype).contiguous()  # held: the kernel reads it
    fn, scalar = _function("energy_grads", first)
    array = scalar * count
    fn(count, _addresses(maps), rows, (ctypes.c_int64 * count)(*[a.numel() // max(rows, 1) for a in maps]),
       (ctypes.c_int * count)(*[int(not r) for r in nonnegative]), int(eps is not None), array(*scales),
       scalar(eps or 0.0), array(*limits), _addresses(fanouts), grad.data_ptr(), _addresses(outs),
       _doubles([e[0] if e else 0.0 for e in extra]), _doubles([e[1] if e else 0.0 for e in extra]),
       (ctypes.c_int64 * (2 * count))(*[p for ps in positions for p in (ps + [0, 0])[:2]]),
       (ctypes.c_int * count)(*[len(ps) for ps in positions]))
    return outs


def rate_limit(scale: float) -> float:
    """The largest float32 ``x`` whose float32 quotient ``x / scale`` is at most 1 (``scale`` a
    positive float32): the quotient rounds to 1 or below exactly when ``x <= scale (1 + 2^-24)``
    (the midpoint between 1 and the next float32, 1 + 2^-23, rounds to even, 1), a product exact in
    float64 (24 + 25 bits); its float32 rounding downwards is the limit. 0: none (not positive
    and finite), compare the quotients.

    Example:
        >>> rate_limit(1.0) == 1.0, rate_limit(2.0) == 2.0, rate_limit(0.0)
        (True, True, 0.0)
    """
    if not (math.isfinite(scale) and scale > 0):
        return 0.0
    bound = scale * (1.0 + 2.0**-24)
    nearest = struct.unpack("f", struct.pack("f", bound))[0]
    if nearest > bound:
        nearest = struct.unpack("f", struct.pack("I", struct.unpack("I", struct.pack("f", nearest))[0] - 1))[0]
    return nearest if math.isfinite(nearest) else 0.0


#: :func:`layer_values`' kinds: the per-layer penalties computed for every layer in one call.
LAYER_KINDS = {"l2": 0, "transformed-l1": 1, "hoyer": 2, "hoyer-square": 3}


@dataclass(frozen=True)
class LayerValues:
    """What :func:`layer_values` computed, and :func:`layer_grads` reads.

    Attributes:
        total: The penalty, a 0-d tensor in the maps' dtype.
        values: ``(L, B)`` per-sample values (NaN where not finite, for ``l2`` and ``transformed-l1``).
        stats: ``(L, B, 3)`` float64 per-sample ``sum|a|``, ``sum a^2``, ``sum |a| / (beta + |a|)``
            of each map (the C ``row_sums``; ``sum a^2`` of a silent Hoyer sample set to 1).
    """

    total: Tensor
    values: Tensor
    stats: Tensor


def _addresses(maps: Sequence[Tensor | None]) -> ctypes.Array:  # type: ignore[type-arg]
    return (ctypes.c_int64 * len(maps))(*[0 if a is None else a.data_ptr() for a in maps])


def _doubles(values: Sequence[float] | None) -> ctypes.Array | None:  # type: ignore[type-arg]
    return None if values is None else (ctypes.c_double * len(values))(*values)


def layer_values(kind: int, maps: Sequence[Tensor], nonnegative: Sequence[bool], sizes: Tensor, floors: Tensor,
                 beta: float, weights: Sequence[float] | None) -> LayerValues | None:
    """A per-layer penalty of every map in one call (``kind`` of :data:`LAYER_KINDS`):
    ``sum_l w_l mean_b(value_l)``, the values computed from the per-sample sums in float64 as the
    PyTorch code of :mod:`snnergy.regularizers.fused` computes them, the batch means in float64.
    ``sizes``: each map's elements per sample (int64, contiguous); ``floors``: Hoyer's smallest
    unscaled ``sum a^2`` per layer (the maps' dtype, contiguous); ``weights``: ``None`` for all 1.
    ``None`` where a Hoyer sum of squares is out of range (the caller divides by the scale).

    Example:
        >>> a = torch.tensor([[0.0, 3.0, 4.0], [0.0, 0.0, 0.0]])  # l2: 25/3 and 0, mean 25/6
        >>> if usable([a]):
        ...     print(layer_values(0, [a], [True], torch.tensor([3]), torch.zeros(1), 1.0, None).total)
        ... else:
        ...     print(torch.tensor(25 / 6))
        tensor(4.1667)
    """
    rows, dtype = maps[0].shape[0], maps[0].dtype
    values = torch.empty(len(maps), rows, dtype=dtype)
    stats = torch.empty(len(maps), rows, 3, dtype=torch.float64)
    total = torch.empty((), dtype=dtype)
    fn, scalar = _function("layer_values", maps[0])
    flags = (ctypes.c_int * len(maps))(*[int(not r) for r in nonnegative])
    if fn(kind, len(maps), _addresses(maps), rows, sizes.data_ptr(), flags, scalar(beta), floors.data_ptr(),
          _doubles(weights), stats.data_ptr(), values.data_ptr(), total.data_ptr(),
          torch.get_num_threads()):
        return None
    return LayerValues(total, values, stats)


def layer_grads(kind: int, maps: Sequence[Tensor], nonnegative: Sequence[bool], sizes: Tensor, beta: float,
                weights: Sequence[float] | None, computed: LayerValues, grad: float, needs: Sequence[bool],
                coefficients: bool = False) -> tuple[list[Tensor | None], Tensor | None]:
    """The gradient of ``grad`` times :func:`layer_values`' total in each map's shape (``None``
    where not ``needs``), in one call: the C ``hoyer_grad`` or ``tl1_grad`` per map with the
    factors of :mod:`snnergy.regularizers.fused` (``l2``: ``a * (2 r / n)``); with
    ``coefficients`` also those per-sample factors of every layer, ``(L, 2, B)`` (``k``, or ``c1``
    then ``c2``; the second row unused for ``l2`` and ``transformed-l1``)."""
    outs = [torch.empty_like(a) if need else None for a, need in zip(maps, needs)]
    rows = maps[0].shape[0]
    factors = torch.empty(len(maps), 2, rows, dtype=maps[0].dtype) if coefficients else None
    fn, scalar = _function("layer_grads", maps[0])
    flags = (ctypes.c_int * len(maps))(*[int(not r) for r in nonnegative])
    if fn(kind, len(maps), _addresses(maps), rows, sizes.data_ptr(), flags, scalar(beta),
          _doubles(weights), computed.stats.data_ptr(), computed.values.data_ptr(),
          scalar(grad), _addresses(outs), None if factors is None else factors.data_ptr(), torch.get_num_threads()):
        raise MemoryError("layer_grads: out of memory")
    return outs, factors


@dataclass(frozen=True)
class EnergySelection:
    """What :func:`energy_layers` found in one map (Python numbers: no tensor per layer).

    Attributes:
        count: The non-zero count.
        nan: Whether a value is NaN.
        found: Whether a selection was made (no NaN, a non-zero value).
        weight: The quantile's interpolation weight (of the larger order statistic).
        values: The order statistics' magnitudes, descending (two, or one where the ranks coincide).
        positions: Their flat positions.
    """

    count: int
    nan: bool
    found: bool
    weight: float
    values: tuple[float, ...]
    positions: tuple[int, ...]


@dataclass(frozen=True)
class EnergyLayers:
    """What :func:`energy_layers` found in each map.

    Attributes:
        layers: One :class:`EnergySelection` per map, in order.
        maxima: Every map's block maxima, one after the other (:meth:`block_maxima`).
        blocks: Each map's number of blocks.
        values: ``(L, B)`` the per-sample values where every layer had a scale, else ``None``.
        total: The layers' per-sample values added in layer order, ``(B,)``, where every layer
            had a scale; else ``None``.
    """

    layers: list[EnergySelection]
    maxima: Tensor
    blocks: tuple[int, ...]
    values: Tensor | None
    total: Tensor | None

    def block_maxima(self, layer: int) -> Tensor | None:
        """Map ``layer``'s block maxima (``None`` for 0 blocks)."""
        start = sum(self.blocks[:layer])
        return self.maxima[start: start + self.blocks[layer]] if self.blocks[layer] else None


def energy_layers(maps: Sequence[Tensor], nonnegative: Sequence[bool], blocks: Sequence[int],
                  fanouts: Sequence[Tensor], scales: Sequence[float | None], eps: float | None,
                  q: float) -> EnergyLayers:
    """For each map: :func:`energy_pass` with the count (``blocks`` block maxima; where every
    map has a ``scale``, the values), then the ``q``-quantile's order statistics of its
    non-zero magnitudes as :func:`snnergy.normalization.select_percentile` takes them (ranks as
    ``torch.quantile``'s), by Hoare's selection over the blocks whose maximum can hold them: one
    call for every map. For maps of fewer than ``normalization.MAX_BATCH_VALUES`` values (the fused
    path's maps: ``fused_energy.applies``), where ``select_percentile`` selects exactly too.

    Example:
        >>> a = torch.tensor([[0.0, 1.0, 3.0, 2.0]])  # the median of 1, 2, 3: rank 1, one order statistic
        >>> if usable([a]):
        ...     found = energy_layers([a], [True], [0], [a[0]], [None], None, 0.5).layers[0]
        ...     print(found.count, found.values, found.positions, found.weight)
        ... else:
        ...     print(3, (2.0,), (3,), 0.0)
        3 (2.0,) (3,) 0.0
    """
    count, first = len(maps), maps[0]
    rows, dtype = first.shape[0], first.dtype
    every = all(s is not None for s in scales)
    maxima = torch.empty(sum(blocks), dtype=dtype)
    values = torch.empty(count, rows, dtype=dtype) if every else None
    total = torch.empty(rows, dtype=dtype) if every else None
    fn, scalar = _function("energy_layers", first)
    vals, pos = (scalar * (2 * count))(), (ctypes.c_int64 * (2 * count))()  # Python numbers: no tensor to read back
    info = (ctypes.c_double * (4 * count))()
    found = (ctypes.c_int * count)()
    if fn(count, _addresses(maps), rows, (ctypes.c_int64 * count)(*[a.numel() // max(rows, 1) for a in maps]),
          (ctypes.c_int * count)(*[int(not r) for r in nonnegative]), int(eps is not None), eps or 0.0,
          _addresses(fanouts), (ctypes.c_int64 * count)(*blocks), maxima.data_ptr(),
          _doubles([math.nan if s is None else s for s in scales]), q, None if values is None else values.data_ptr(),
          info, vals, pos, found, None if total is None else total.data_ptr()):
        raise MemoryError("energy_layers: out of memory")
    layers = []
    for l in range(count):
        n, nan, weight, two = info[4 * l: 4 * l + 4]
        cut = 2 * l + (0 if two else 1)
        layers.append(EnergySelection(int(n), bool(nan), bool(found[l]), weight, tuple(vals[cut: 2 * l + 2]),
                                      tuple(pos[cut: 2 * l + 2])))
    return EnergyLayers(layers, maxima, tuple(blocks), values, total)


def energy_values(maps: Sequence[Tensor], nonnegative: Sequence[bool], fanouts: Sequence[Tensor],
                  scales: Sequence[float], eps: float | None) -> tuple[Tensor, Tensor]:
    """:func:`energy_pass`'s value of each map with its ``scale`` (``(L, B)``), and their sum in
    layer order in the maps' dtype (``(B,)``): one call for every map, after :func:`energy_layers`
    where a scale needs this batch's percentile first (``macs``; ``synops``' first batch).

    Example:
        >>> a = torch.tensor([[0.0, 1.0, 3.0]])  # rates 0, 1/2, 1 (capped) with scale 2
        >>> if usable([a]):
        ...     values, total = energy_values([a, a], [True, True], [a[0], a[0]], [2.0, 4.0], None)
        ...     print(values.tolist(), total.tolist())
        ... else:
        ...     print([[3.5], [2.5]], [6.0])
        [[3.5], [2.5]] [6.0]
    """
    count, first = len(maps), maps[0]
    rows = first.shape[0]
    values = torch.empty(count, rows, dtype=first.dtype)
    total = torch.empty(rows, dtype=first.dtype)
    fn, _ = _function("energy_values", first)
    fn(count, _addresses(maps), rows, (ctypes.c_int64 * count)(*[a.numel() // max(rows, 1) for a in maps]),
       (ctypes.c_int * count)(*[int(not r) for r in nonnegative]), int(eps is not None), eps or 0.0,
       _addresses(fanouts), _doubles(scales), values.data_ptr(), total.data_ptr())
    return values, total


def _load(path: Path) -> ctypes.CDLL:
    return native.load_typed(path, lambda scalar: {
        "energy_pass": [_P, _I, _I, _INT, _INT, ctypes.c_double, ctypes.c_double, _P, _I, _P, _P, _P],
        "energy_grad": [_P, _I, _I, _INT, _INT, scalar, scalar, scalar, _P, _P, _P, _P],
        "energy_layers": [_I, _P, _I, _P, _P, _INT, ctypes.c_double, _P, _P, _P, _P, ctypes.c_double, _P, _P,
                          _P, _P, _P, _P],
        "energy_values": [_I, _P, _I, _P, _P, _INT, ctypes.c_double, _P, _P, _P, _P],
        "energy_grads": [_I, _P, _I, _P, _P, _INT, _P, scalar, _P, _P, _P, _P, _P, _P, _P, _P],
        "layer_values": [_INT, _I, _P, _I, _P, _P, scalar, _P, _P, _P, _P, _P, _INT],
        "layer_grads": [_INT, _I, _P, _I, _P, _P, scalar, _P, _P, _P, scalar, _P, _P, _INT],
    }, returns={"energy_layers": _INT, "layer_values": _INT, "layer_grads": _INT})


_LIBRARY = native.Library("snnergy_penalties", _SOURCE, BUILD_MESSAGE, _load,
                          "the fused penalties' compiled kernels", "PyTorch",
                          "the first fused penalty on a CPU builds them: compiled.prepare()")
