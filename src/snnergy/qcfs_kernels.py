"""QCFS's forward and backward as one compiled pass each: :func:`qcfs`.

QCFS (Bu et al., ICLR 2022; :class:`snnergy.layers.QCFS`) is
``theta * clamp(floor_ste(x * L / theta + 0.5) / L, 0, 1)``: as PyTorch operations, seven
map-sized passes forward and about fifteen backward (issue 18: with QCFS the Fashion-MNIST LeNet
training step took 15.4 ms against ReLU's 6.1 ms). Here, on a CPU, each direction is one C loop
over the map; the threshold's gradient is the two map-sized terms autograd would sum, each reduced
by PyTorch as autograd reduces it (``sum_to_size``), then added.

Numerics: every element goes through the same operations in the same order as the PyTorch
expression (``floor_ste`` as ``t + (floor(t) - t)``; ``clamp`` passing NaN; the backward as
autograd's formulas: ``where(0 <= c <= 1, g theta, 0) / L / theta * L`` for ``x``, and
``g c`` and ``-g' ((x L / theta) / theta)`` for ``theta``), compiled without fused multiply-adds
or fast-math: the outputs and both gradients are the expression's, to the bit (the tests check
it), so a QCFS model trains to the same weights. ``$SNNERGY_KERNELS`` switches the kernels
(:mod:`snnergy.native`); anything but a float32/float64 CPU map whose threshold is one value or
one per channel (dim 1) runs the PyTorch expression.

Example:
    >>> x = torch.tensor([[-1.0, 0.2, 0.3, 1.0, 5.0]])
    >>> qcfs(x, torch.tensor(2.0), 4).tolist()  # steps of theta / L = 0.5
    [[0.0, 0.0, 0.5, 1.0, 2.0]]
"""

from __future__ import annotations

import ctypes
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from snnergy import native

BUILD_MESSAGE = "snnergy: compiling QCFS's CPU kernels (once per machine)..."

_SOURCE = r"""
#include <stdint.h>
#include <math.h>

/* x: outer x channels x inner, contiguous; theta[c] (channels 1: one threshold). The steps of
   theta * clamp(floor_ste(x * L / theta + 0.5) / L, 0, 1), in T, in the expression's order. */
/* floor in T: floorf for float (floor would round through double) */
#define FLOOR_f32 floorf
#define FLOOR_f64 floor
#define QCFS(S, T)                                                                              \
static inline T clamp01_##S(T v) { return v != v ? v : (v < (T)0 ? (T)0 : (v > (T)1 ? (T)1 : v)); } \
void qcfs_##S(const T* restrict x, int64_t outer, int64_t channels, int64_t inner, const T* restrict theta, \
              T levels, T* restrict out, int threads) {                                        \
    _Pragma("omp parallel for num_threads(threads) schedule(static)")                           \
    for (int64_t r = 0; r < outer * channels; r++) {                                            \
        T th = theta[r % channels];                                                             \
        const T* xr = x + r * inner;                                                            \
        T* o = out + r * inner;                                                                 \
        for (int64_t i = 0; i < inner; i++) {                                                   \
            T t = xr[i] * levels / th + (T)0.5;                                                 \
            t = t + (FLOOR_##S(t) - t);                                                         \
            o[i] = th * clamp01_##S(t / levels);                                                \
        }                                                                                       \
    }                                                                                           \
}                                                                                               \
/* g: the output's gradient. gx: the input's; a = g c and b = -g' ((x L / theta) / theta), the  \
   threshold's two terms (g' = where(0 <= c <= 1, g theta, 0) / L / theta... before the / theta). */ \
void qcfs_grad_##S(const T* restrict x, const T* restrict g, int64_t outer, int64_t channels, int64_t inner, \
                   const T* restrict theta, T levels, T* restrict gx, T* restrict a, T* restrict b,   \
                   int threads) {                                                               \
    _Pragma("omp parallel for num_threads(threads) schedule(static)")                           \
    for (int64_t r = 0; r < outer * channels; r++) {                                            \
        T th = theta[r % channels];                                                             \
        int64_t at = r * inner;                                                                 \
        for (int64_t i = 0; i < inner; i++) {                                                   \
            T xl = x[at + i] * levels, t = xl / th + (T)0.5;                                    \
            t = t + (FLOOR_##S(t) - t);                                                         \
            T q = t / levels, c = clamp01_##S(q), gi = g[at + i];                               \
            T gq = (q >= (T)0 && q <= (T)1) ? gi * th : (T)0;                                   \
            T gt = gq / levels;                                                                 \
            gx[at + i] = gt / th * levels;                                                      \
            a[at + i] = gi * c;                                                                 \
            b[at + i] = -gt * ((xl / th) / th);                                                 \
        }                                                                                       \
    }                                                                                           \
}
QCFS(f32, float)
QCFS(f64, double)
"""

_P, _I, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int


def _load(path: object) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    for suffix, scalar in (("_f32", ctypes.c_float), ("_f64", ctypes.c_double)):
        getattr(lib, "qcfs" + suffix).argtypes = [_P, _I, _I, _I, _P, scalar, _P, _INT]
        getattr(lib, "qcfs_grad" + suffix).argtypes = [_P, _P, _I, _I, _I, _P, scalar, _P, _P, _P, _INT]
        for name in ("qcfs", "qcfs_grad"):
            getattr(lib, name + suffix).restype = None
    return lib


_LIBRARY = native.Library("snnergy_qcfs", _SOURCE, BUILD_MESSAGE, _load, "QCFS's compiled kernels",
                          "the PyTorch expression", "the first QCFS on a CPU builds them: snnergy.qcfs_kernels.prepare()")


def prepare() -> bool:
    """Builds (once per machine) and loads the kernels if ``$SNNERGY_KERNELS`` allows; whether
    they can be used now.

    Raises:
        ConfigError: The switch is invalid, or ``require`` and the kernels cannot be built.
    """
    return _LIBRARY.prepare()


def unavailable_reason() -> str | None:
    """Why the kernels cannot be used now, or ``None`` if they can; never builds."""
    return _LIBRARY.unavailable_reason()


def reference(x: Tensor, theta: Tensor, levels: int) -> Tensor:
    """The PyTorch expression (``theta`` broadcast to ``x``), differentiated by autograd."""
    t = x * levels / theta + 0.5
    t = t + (torch.floor(t) - t).detach()  # floor forward, identity backward (layers.floor_ste)
    return theta * torch.clamp(t / levels, 0.0, 1.0)


def _layout(x: Tensor, theta: Tensor) -> tuple[int, int, int] | None:
    """``(outer, channels, inner)`` of ``x`` for a threshold ``theta`` that is one value (0-d)
    or one per channel broadcast as ``(1, C, 1, ...)``; ``None`` for anything else."""
    if x.dim() < 1 or x.numel() == 0:
        return None
    if theta.dim() == 0:  # rows of one sample each: the threads share them
        return x.shape[0], 1, x[0].numel()
    if x.dim() < 2 or theta.dim() != x.dim() or theta.numel() != x.shape[1] or theta.shape[1] != x.shape[1]:
        return None
    return x.shape[0], x.shape[1], x[0, 0].numel()


def _compiled(x: Tensor, theta: Tensor) -> tuple[int, int, int] | None:
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or theta.dtype != x.dtype:
        return None
    layout = _layout(x, theta)
    if layout is None or not x.is_contiguous() or theta.device != x.device or not prepare():
        return None
    return layout


def _suffix(x: Tensor) -> str:
    return "f32" if x.dtype == torch.float32 else "f64"


class _QCFS(torch.autograd.Function):
    """The compiled QCFS and its compiled gradient (module docstring)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, theta: Tensor, levels: int, layout: tuple[int, int, int]) -> Tensor:
        th = theta.detach().contiguous()
        out = torch.empty_like(x)
        getattr(_LIBRARY.loaded(), "qcfs_" + _suffix(x))(x.data_ptr(), *layout, th.data_ptr(), float(levels),
                                                         out.data_ptr(), torch.get_num_threads())
        ctx.save_for_backward(x, theta)
        ctx.levels, ctx.layout = levels, layout
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        x, theta = ctx.saved_tensors
        grad = grad.contiguous()
        gx, a, b = torch.empty_like(x), torch.empty_like(x), torch.empty_like(x)
        getattr(_LIBRARY.loaded(), "qcfs_grad_" + _suffix(x))(
            x.data_ptr(), grad.data_ptr(), *ctx.layout, theta.detach().contiguous().data_ptr(), float(ctx.levels),
            gx.data_ptr(), a.data_ptr(), b.data_ptr(), torch.get_num_threads())
        gtheta = None
        if ctx.needs_input_grad[1]:  # each term reduced as autograd reduces it, then the two added
            gtheta = a.sum_to_size(theta.shape) + b.sum_to_size(theta.shape)
        return (gx if ctx.needs_input_grad[0] else None), gtheta, None, None


def qcfs(x: Tensor, theta: Tensor, levels: int) -> Tensor:
    """``theta * clamp(floor_ste(x * L / theta + 0.5) / L, 0, 1)``, ``theta`` one value (0-d) or
    one per channel as ``(1, C, 1, ...)``: compiled on a CPU where the module docstring allows,
    else the PyTorch expression; the same values and gradients, to the bit.

    Example:
        >>> x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
        >>> theta = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
        >>> y = qcfs(x, theta, 8)
        >>> y.backward(torch.ones_like(y))
        >>> x2, t2 = x.detach().clone().requires_grad_(), theta.detach().clone().requires_grad_()
        >>> reference(x2, t2, 8).backward(torch.ones_like(y))
        >>> torch.equal(x.grad, x2.grad), torch.equal(theta.grad, t2.grad)
        (True, True)
    """
    layout = _compiled(x, theta)
    if layout is None:
        return reference(x, theta, levels)
    return _QCFS.apply(x, theta, levels, layout)  # type: ignore[no-any-return]
