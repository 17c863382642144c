"""Average pooling whose CPU forward and backward are one compiled pass each: :class:`AvgPool2d`.

PyTorch's CPU ``avg_pool2d`` loops over every output with generic index arithmetic: on
Fashion-MNIST LeNet's first pooling (batch 64, 6 x 28 x 28, float32, one thread) it took 0.7 to
1.3 ms forward and as long backward, about a third of a whole training step (issue 18: the two
poolings cost more than the penalty a regularizer adds). Here the common case, windows of
``k_h x k_w`` with stride equal to the kernel, no padding and floor mode (every model of
:mod:`snnergy.models`), is one C loop over the map (GCC/Clang vector extensions; pairs of columns
deinterleaved eight at a time), and so is its gradient: 0.08 ms forward and 0.1 ms backward on
that map.

Numerics: each window is summed as ATen's CPU kernels sum it (``s = 0``, then ``s += x`` over the
window's rows, each row left to right, all in the map's dtype), then divided by ``k_h k_w``; the
gradient of an input is ``0 + g / (k_h k_w)`` of its window's output gradient, and 0 in cropped rows
and columns. The outputs and gradients are those of ``torch.nn.functional.avg_pool2d`` to the bit
(signed zeros included; the tests check it). Compiled without fused multiply-adds or fast-math,
by :mod:`snnergy.native`, which ``$SNNERGY_KERNELS`` switches: ``auto`` builds the kernels at the
first pooling that can use them, ``off`` never does (then PyTorch's pooling runs), ``require``
raises one :class:`~snnergy.errors.ConfigError` if they cannot be built.

Anything else runs PyTorch's pooling, unchanged: another device (a GPU's pooling is fast), a dtype
other than float32 and float64, a channels-last or otherwise non-contiguous input, overlapping
or padded windows, ``ceil_mode`` or a ``divisor_override``; and so does a traced call
(``torch.fx`` symbolic tracing, ``torch.jit.trace``, ``torch.compile``: :func:`snnergy.native.eager`),
which records ``avg_pool2d`` itself. A tool that converts a model by tracing it and wants
``torch.nn.AvgPool2d`` modules (SpikingJelly's ``ann2snn``) takes :func:`plain_copy` of it.

Example:
    >>> pool = AvgPool2d(2)
    >>> x = torch.arange(16.0).view(1, 1, 4, 4)
    >>> pool(x)
    tensor([[[[ 2.5000,  4.5000],
              [10.5000, 12.5000]]]])
    >>> torch.equal(pool(x), torch.nn.functional.avg_pool2d(x, 2)), isinstance(pool, nn.AvgPool2d)
    (True, True)
"""

from __future__ import annotations

import copy
import ctypes
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from snnergy import native

BUILD_MESSAGE = "snnergy: compiling the average pooling's CPU kernels (once per machine)..."

_SOURCE = native.VECTORS + r"""
/* x: planes x h x w, contiguous; out: planes x (h / kh) x (w / kw). Each window: s = 0, then
   s += x over its rows, each row left to right, then s / (kh kw), in T (ATen's order). With
   kw = 2, eight outputs at a time: the even and odd columns of sixteen inputs, deinterleaved;
   a row's last eight outputs are computed again rather than one at a time (the same values). */
#define POOL(S, T, V, VI)                                                                       \
static inline V pool8_##S(const T* restrict row, int64_t w, int64_t kh, int64_t c, T div) {     \
    const VI even = {0, 2, 4, 6, 8, 10, 12, 14}, odd = {1, 3, 5, 7, 9, 11, 13, 15};             \
    V s = {0};                                                                                  \
    for (int64_t i = 0; i < kh; i++) {                                                          \
        V a, b;                                                                                 \
        memcpy(&a, row + i * w + 2 * c, sizeof a);                                              \
        memcpy(&b, row + i * w + 2 * c + W, sizeof b);                                          \
        s += __builtin_shuffle(a, b, even);                                                     \
        s += __builtin_shuffle(a, b, odd);                                                      \
    }                                                                                           \
    return s / div;                                                                             \
}                                                                                               \
void pool_##S(const T* restrict x, int64_t planes, int64_t h, int64_t w, int64_t kh, int64_t kw, \
              T* restrict out, int threads) {                                                   \
    int64_t oh = h / kh, ow = w / kw;                                                           \
    T div = (T)(kh * kw);                                                                       \
    _Pragma("omp parallel for num_threads(threads) schedule(static)")                           \
    for (int64_t p = 0; p < planes; p++) {                                                      \
        for (int64_t r = 0; r < oh; r++) {                                                      \
            const T* row = x + (p * h + r * kh) * w;                                            \
            T* o = out + (p * oh + r) * ow;                                                     \
            int64_t c = 0;                                                                      \
            if (kw == 2 && ow >= W) {                                                           \
                for (; c + W <= ow; c += W) { V s = pool8_##S(row, w, kh, c, div); memcpy(o + c, &s, sizeof s); } \
                if (c < ow) { V s = pool8_##S(row, w, kh, ow - W, div); memcpy(o + ow - W, &s, sizeof s); } \
                continue;                                                                       \
            }                                                                                   \
            for (; c < ow; c++) {                                                               \
                T s = 0;                                                                        \
                for (int64_t i = 0; i < kh; i++)                                                \
                    for (int64_t j = 0; j < kw; j++) s += row[i * w + c * kw + j];              \
                o[c] = s / div;                                                                 \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
}                                                                                               \
/* The gradient: g planes x (h / kh) x (w / kw) -> out planes x h x w, each input 0 + g / (kh kw) \
   of its window (ATen's zeroed buffer plus the share), 0 in cropped rows and columns. */       \
static inline void spread8_##S(const T* restrict g, T* restrict o, int64_t c, T div) {          \
    const VI lo = {0, 0, 1, 1, 2, 2, 3, 3}, hi = {4, 4, 5, 5, 6, 6, 7, 7};                     \
    V zero = {0}, d;                                                                            \
    memcpy(&d, g + c, sizeof d);                                                                \
    d = zero + d / div;                                                                         \
    V a = __builtin_shuffle(d, lo), b = __builtin_shuffle(d, hi);                               \
    memcpy(o + 2 * c, &a, sizeof a);                                                            \
    memcpy(o + 2 * c + W, &b, sizeof b);                                                        \
}                                                                                               \
void pool_grad_##S(const T* restrict g, int64_t planes, int64_t h, int64_t w, int64_t kh, int64_t kw, \
                   T* restrict out, int threads) {                                              \
    int64_t oh = h / kh, ow = w / kw;                                                           \
    T div = (T)(kh * kw);                                                                       \
    _Pragma("omp parallel for num_threads(threads) schedule(static)")                           \
    for (int64_t p = 0; p < planes; p++) {                                                      \
        for (int64_t r = 0; r < h; r++) {                                                       \
            T* o = out + (p * h + r) * w;                                                       \
            if (r >= oh * kh) { for (int64_t c = 0; c < w; c++) o[c] = 0; continue; }           \
            const T* gr = g + (p * oh + r / kh) * ow;                                           \
            int64_t c = 0;                                                                      \
            if (kw == 2 && ow >= W) {                                                           \
                for (; c + W <= ow; c += W) spread8_##S(gr, o, c, div);                         \
                if (c < ow) spread8_##S(gr, o, ow - W, div);                                    \
            } else {                                                                            \
                for (; c < ow; c++) {                                                           \
                    T d = (T)0 + gr[c] / div;                                                   \
                    for (int64_t j = 0; j < kw; j++) o[c * kw + j] = d;                         \
                }                                                                               \
            }                                                                                   \
            for (int64_t k = ow * kw; k < w; k++) o[k] = 0;                                     \
        }                                                                                       \
    }                                                                                           \
}
POOL(f32, float, vf, vfi)
POOL(f64, double, vd, vdi)
"""

_P, _I, _INT = native.POINTER, native.INT64, native.INT


def _load(path: Path) -> ctypes.CDLL:
    return native.load_typed(path, lambda scalar: {"pool": [_P, _I, _I, _I, _I, _I, _P, _INT],
                                                   "pool_grad": [_P, _I, _I, _I, _I, _I, _P, _INT]})


_LIBRARY = native.Library("snnergy_pooling", _SOURCE, BUILD_MESSAGE, _load,
                          "the average pooling's compiled kernels", "PyTorch's pooling",
                          "the first pooling on a CPU builds them: snnergy.pooling.prepare()")


#: Builds (once per machine) and loads the kernels if ``$SNNERGY_KERNELS`` allows; whether they
#: can be used now (:meth:`snnergy.native.Library.prepare`).
prepare = _LIBRARY.prepare
#: Why the kernels cannot be used now, or ``None`` if they can; never builds.
unavailable_reason = _LIBRARY.unavailable_reason


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def compiled_window(pool: nn.AvgPool2d) -> tuple[int, int] | None:
    """The window ``(k_h, k_w)`` if ``pool`` is a plain average pooling (stride equal to the
    kernel, no padding, floor mode, no divisor override), else ``None``: what the kernels here
    compute, and the one definition the simulator's poolings of spikes and event tables use
    (:mod:`snnergy.simulation.folding`, :func:`snnergy.simulation.events.unsupported`).

    Example:
        >>> compiled_window(nn.AvgPool2d(2)), compiled_window(nn.AvgPool2d(3, stride=1))
        ((2, 2), None)
    """
    kernel = _pair(pool.kernel_size)
    stride = kernel if pool.stride is None or pool.stride == () else _pair(pool.stride)
    if stride != kernel or _pair(pool.padding) != (0, 0) or pool.ceil_mode or pool.divisor_override is not None:
        return None
    return kernel


def _runs_compiled(x: Tensor, window: tuple[int, int]) -> bool:
    """Whether ``x`` takes the kernels: an eager (not traced, :func:`native.eager`) contiguous 4-D
    float32/float64 CPU map, at least one window high and wide (PyTorch's pooling reports the
    rest), kernels available."""
    return (native.eager(x) and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and x.dim() == 4
            and x.numel() > 0 and x.shape[2] >= window[0] and x.shape[3] >= window[1]
            and x.is_contiguous() and prepare())


def _run(name: str, src: Tensor, out: Tensor, shape: torch.Size, window: tuple[int, int]) -> Tensor:
    """Calls kernel ``name`` (``pool`` or ``pool_grad``) for input-sized ``shape`` ``(B, C, h, w)``."""
    fn = getattr(_LIBRARY.loaded(), f"{name}_{'f32' if src.dtype == torch.float32 else 'f64'}")
    fn(src.data_ptr(), shape[0] * shape[1], shape[2], shape[3], window[0], window[1], out.data_ptr(),
       torch.get_num_threads())
    return out


class _Pool(torch.autograd.Function):
    """The compiled pooling and its compiled gradient (module docstring)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, window: tuple[int, int]) -> Tensor:
        ctx.shape, ctx.window = x.shape, window
        b, c, h, w = x.shape
        out = x.new_empty(b, c, h // window[0], w // window[1])
        return _run("pool", x, out, x.shape, window)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.contiguous()
        return _run("pool_grad", grad, grad.new_empty(ctx.shape), ctx.shape, ctx.window), None


def avg_pool(x: Tensor, pool: nn.AvgPool2d) -> Tensor:
    """``pool``'s average pooling of ``x``: compiled where the module docstring allows, else
    ``torch.nn.functional.avg_pool2d``; the same values and gradients either way.

    Example:
        >>> x = torch.rand(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
        >>> torch.autograd.gradcheck(lambda t: avg_pool(t, nn.AvgPool2d(2)), (x,))
        True
    """
    window = compiled_window(pool)
    if window is not None and _runs_compiled(x, window):
        return _Pool.apply(x, window)  # type: ignore[no-any-return]
    return F.avg_pool2d(x, pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode, pool.count_include_pad,
                        pool.divisor_override)


class AvgPool2d(nn.AvgPool2d):
    """``torch.nn.AvgPool2d`` with the compiled CPU pooling (:func:`avg_pool`): the same
    arguments, outputs and gradients, to the bit; the models of :mod:`snnergy.models` use it, and
    the network plan reads it as an ``nn.AvgPool2d`` (and holds :meth:`plain`)."""

    def forward(self, input: Tensor) -> Tensor:
        return avg_pool(input, self)

    def plain(self) -> nn.AvgPool2d:
        """``torch.nn.AvgPool2d`` with the same arguments.

        Example:
            >>> AvgPool2d(2, padding=1).plain()
            AvgPool2d(kernel_size=2, stride=2, padding=1)
        """
        return nn.AvgPool2d(self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad,
                            self.divisor_override)


def plain_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose :class:`AvgPool2d` modules are ``torch.nn.AvgPool2d`` ones
    (:meth:`AvgPool2d.plain`): the same function, for tools that trace a model and look for
    PyTorch's own modules (SpikingJelly's ``ann2snn`` converter). ``model`` is left as it is.

    Example:
        >>> net = plain_copy(nn.Sequential(nn.Conv2d(1, 2, 3), AvgPool2d(2)))
        >>> type(net[1]) is nn.AvgPool2d
        True
    """
    twin = copy.deepcopy(model)
    for name, module in list(twin.named_modules()):
        if type(module) is AvgPool2d:
            parent, _, leaf = name.rpartition(".")
            setattr(twin.get_submodule(parent) if parent else twin, leaf, module.plain())
    if type(twin) is AvgPool2d:
        return twin.plain()
    return twin
