"""The trained-threshold activations' forward and backward as one compiled pass each: :func:`qcfs`
and :func:`clip`.

QCFS (Bu et al., ICLR 2022; :class:`snnergy.layers.QCFS`) is
``theta * clamp(floor_ste(x * L / theta + 0.5) / L, 0, 1)`` and the trained clip (Ho & Chang,
DAC 2021; :class:`snnergy.layers.TrainedClip`) ``minimum(relu(x), theta)``: as PyTorch operations,
QCFS takes seven map-sized passes forward and about fifteen backward, the clip's ``minimum``
about six backward (issue 18: with either, the Fashion-MNIST LeNet training step took 15.4 to
15.7 ms against ReLU's 6.1 ms). Here, on a CPU, each direction is one C loop over the map; the
threshold's gradient is the map-sized terms autograd would form, each reduced by PyTorch as
autograd reduces it (``sum_to_size``), then added.

Numerics: every element goes through the same operations in the same order as the PyTorch
expression (``floor_ste`` as ``t + (floor(t) - t)``; ``clamp``, ``relu`` and ``minimum`` passing
NaN) and autograd's backward formulas (QCFS: ``where(0 <= c <= 1, g theta, 0) / L / theta * L``
for ``x``, ``g c`` and ``-g' ((x L / theta) / theta)`` for ``theta``; the clip: ``minimum``'s
``where(r == theta, g / 2, g)`` masked where ``r > theta`` (``x``, then ``relu``'s mask) or
``r < theta`` (``theta``)), compiled without fused multiply-adds or fast-math: the outputs and
both gradients are the expression's, to the bit (the tests check it; a NaN is a NaN, whatever its
sign bit), so a model trains to the same weights. ``$SNNERGY_KERNELS`` switches the kernels
(:mod:`snnergy.native`); anything but a contiguous float32/float64 CPU map whose threshold is one
value or one per channel (dim 1) runs the PyTorch expression.

Example:
    >>> x = torch.tensor([[-1.0, 0.2, 0.3, 1.0, 5.0]])
    >>> qcfs(x, torch.tensor(2.0), 4).tolist()  # steps of theta / L = 0.5
    [[0.0, 0.0, 0.5, 1.0, 2.0]]
    >>> clip(x, torch.tensor(2.0)).tolist()
    [[0.0, 0.20000000298023224, 0.30000001192092896, 1.0, 2.0]]
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from snnergy import native

BUILD_MESSAGE = "snnergy: compiling the trained-threshold activations' CPU kernels (once per machine)..."

_SOURCE = r"""
#include <stdint.h>
#include <math.h>

/* floor in T: floorf for float (floor would round through double) */
#define FLOOR_f32 floorf
#define FLOOR_f64 floor

/* A fused penalty's gradient at the output a of sample b, handed to the activation's backward
   (regularizers.fused.handing_off), as regularizers.compiled's kernels write it, to the bit:
   kind 1 (l2) a * k1[b]; kind 2 (transformed-l1) (sgn(a) k1[b]) / (beta + |a|)^2, without sgn and
   | | when !absval; kind 3 (hoyer, hoyer-square) sgn(a) k1[b] + a k2[b], or a k2[b] + k1[b];
   kind 4 (l1) sgn(a) k1[b], or k1[b]; kind 5 (synops of a trained threshold) k1[b] f[position]
   (the fan-out over theta, k2 here), whatever the sign. */
#define SGN(T, v) ((v) > (T)0 ? (T)1 : ((v) < (T)0 ? (T)-1 : (T)0))
/* CALL with PK and PA the constants of (pkind, pabs): each row loop compiled for its term alone. */
#define DISPATCH(pkind, pabs, CALL)                                                             \
    switch ((pkind) * 2 + ((pabs) != 0)) {                                                      \
    case 2: { enum { PK = 1, PA = 0 }; CALL; break; }                                           \
    case 3: { enum { PK = 1, PA = 1 }; CALL; break; }                                           \
    case 4: { enum { PK = 2, PA = 0 }; CALL; break; }                                           \
    case 5: { enum { PK = 2, PA = 1 }; CALL; break; }                                           \
    case 6: { enum { PK = 3, PA = 0 }; CALL; break; }                                           \
    case 7: { enum { PK = 3, PA = 1 }; CALL; break; }                                           \
    case 8: { enum { PK = 4, PA = 0 }; CALL; break; }                                           \
    case 9: { enum { PK = 4, PA = 1 }; CALL; break; }                                           \
    case 10: case 11: { enum { PK = 5, PA = 0 }; CALL; break; }                                 \
    default: { enum { PK = 0, PA = 0 }; CALL; break; }                                          \
    }
#define PENALTY_TERM(T, kind, absval, a, k1, k2, beta)                                          \
    ((kind) == 1 ? (a) * (k1)                                                                   \
     : (kind) == 2 ? ((absval) ? (SGN(T, a) * (k1)) / (((beta) + (T)fabs((double)(a))) * ((beta) + (T)fabs((double)(a)))) \
                               : (k1) / (((beta) + (a)) * ((beta) + (a))))                       \
     : (kind) == 3 ? ((absval) ? SGN(T, a) * (k1) + (a) * (k2) : (a) * (k2) + (k1))             \
     : (kind) == 4 ? ((absval) ? SGN(T, a) * (k1) : (k1))                                       \
     : (k1) * (k2))

/* x: outer x channels x inner, contiguous; theta[c] (channels 1: one threshold). The steps of
   theta * clamp(floor_ste(x * L / theta + 0.5) / L, 0, 1), in T, in the expression's order. */
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
static inline __attribute__((always_inline)) void qcfs_row_##S(const T* restrict x, const T* restrict g, \
        int64_t inner, T th, T levels, T* restrict gx, T* restrict a, T* restrict b, int pkind, int pabs, \
        T k1, T k2, const T* restrict pf, T pbeta) {                                             \
    for (int64_t i = 0; i < inner; i++) {                                                       \
        T xl = x[i] * levels, t = xl / th + (T)0.5;                                             \
        t = t + (FLOOR_##S(t) - t);                                                             \
        T q = t / levels, c = clamp01_##S(q), gi = g[i];                                        \
        if (pkind) {                                                                            \
            T out = th * c, k = pkind == 5 ? pf[i] : k2;                                        \
            gi = gi + PENALTY_TERM(T, pkind, pabs, out, k1, k, pbeta);                          \
        }                                                                                       \
        T gq = (q >= (T)0 && q <= (T)1) ? gi * th : (T)0;                                       \
        T gt = gq / levels;                                                                     \
        gx[i] = gt / th * levels;                                                               \
        a[i] = gi * c;                                                                          \
        b[i] = -gt * ((xl / th) / th);                                                          \
    }                                                                                           \
}                                                                                               \
void qcfs_grad_##S(const T* restrict x, const T* restrict g, int64_t outer, int64_t channels, int64_t inner, \
                   const T* restrict theta, T levels, T* restrict gx, T* restrict a, T* restrict b,   \
                   int pkind, int pabs, const T* restrict p1, const T* restrict p2, const T* restrict pf, \
                   T pbeta, int threads) {                                                      \
    _Pragma("omp parallel for num_threads(threads) schedule(static)")                           \
    for (int64_t r = 0; r < outer * channels; r++) {                                            \
        T th = theta[r % channels];                                                             \
        int64_t at = r * inner, s = r / channels;                                               \
        T k1 = pkind ? p1[s] : (T)0, k2 = pkind == 3 ? p2[s] : (T)0;                            \
        DISPATCH(pkind, pabs, qcfs_row_##S(x + at, g + at, inner, th, levels, gx + at, a + at, b + at, \
                                           PK, PA, k1, k2, pf ? pf + (r % channels) * inner : pf, pbeta)) \
    }                                                                                           \
}
QCFS(f32, float)
QCFS(f64, double)

/* The trained clip: r = relu(x) (NaN kept), out = minimum(r, theta) (NaN kept). Backward, as
   autograd: gr = where(r == theta, g / 2, g), 0 where r > theta; gx = 0 where r <= 0, else gr;
   gt = where(r == theta, g / 2, g), 0 where r < theta (theta's term, reduced by the caller). */
#define CLIP(S, T)                                                                              \
static inline T relu_##S(T v) { return v != v ? v : (v < (T)0 ? (T)0 : v); }                    \
void clip_##S(const T* restrict x, int64_t outer, int64_t channels, int64_t inner, const T* restrict theta, \
              T* restrict out, int threads) {                                                   \
    _Pragma("omp parallel for num_threads(threads) schedule(static)")                           \
    for (int64_t r = 0; r < outer * channels; r++) {                                            \
        T th = theta[r % channels];                                                             \
        const T* xr = x + r * inner;                                                            \
        T* o = out + r * inner;                                                                 \
        for (int64_t i = 0; i < inner; i++) {                                                   \
            T v = relu_##S(xr[i]);                                                              \
            o[i] = v != v ? v : (th != th ? th : (v < th ? v : th));                            \
        }                                                                                       \
    }                                                                                           \
}                                                                                               \
static inline __attribute__((always_inline)) void clip_row_##S(const T* restrict x, const T* restrict g, \
        int64_t inner, T th, T* restrict gx, T* restrict gt, int pkind, int pabs, T k1, T k2,   \
        const T* restrict pf, T pbeta) {                                                         \
    for (int64_t i = 0; i < inner; i++) {                                                       \
        T v = relu_##S(x[i]), gi = g[i];                                                        \
        if (pkind) {                                                                            \
            T out = v != v ? v : (th != th ? th : (v < th ? v : th)), k = pkind == 5 ? pf[i] : k2; \
            gi = gi + PENALTY_TERM(T, pkind, pabs, out, k1, k, pbeta);                          \
        }                                                                                       \
        T shared = v == th ? gi / (T)2 : gi;                                                    \
        T gr = v > th ? (T)0 : shared;                                                          \
        gx[i] = v <= (T)0 ? (T)0 : gr;                                                          \
        gt[i] = v < th ? (T)0 : shared;                                                         \
    }                                                                                           \
}                                                                                               \
void clip_grad_##S(const T* restrict x, const T* restrict g, int64_t outer, int64_t channels, int64_t inner, \
                   const T* restrict theta, T* restrict gx, T* restrict gt,                    \
                   int pkind, int pabs, const T* restrict p1, const T* restrict p2, const T* restrict pf, \
                   T pbeta, int threads) {                                                      \
    _Pragma("omp parallel for num_threads(threads) schedule(static)")                           \
    for (int64_t r = 0; r < outer * channels; r++) {                                            \
        T th = theta[r % channels];                                                             \
        int64_t at = r * inner, s = r / channels;                                               \
        T k1 = pkind ? p1[s] : (T)0, k2 = pkind == 3 ? p2[s] : (T)0;                            \
        DISPATCH(pkind, pabs, clip_row_##S(x + at, g + at, inner, th, gx + at, gt + at, PK, PA, k1, k2, \
                                           pf ? pf + (r % channels) * inner : pf, pbeta))        \
    }                                                                                           \
}
CLIP(f32, float)
CLIP(f64, double)
"""

_P, _I, _INT = native.POINTER, native.INT64, native.INT


def _load(path: Path) -> ctypes.CDLL:
    return native.load_typed(path, lambda scalar: {
        "qcfs": [_P, _I, _I, _I, _P, scalar, _P, _INT],
        "qcfs_grad": [_P, _P, _I, _I, _I, _P, scalar, _P, _P, _P, _INT, _INT, _P, _P, _P, scalar, _INT],
        "clip": [_P, _I, _I, _I, _P, _P, _INT],
        "clip_grad": [_P, _P, _I, _I, _I, _P, _P, _P, _INT, _INT, _P, _P, _P, scalar, _INT],
    })


_LIBRARY = native.Library("snnergy_thresholds", _SOURCE, BUILD_MESSAGE, _load,
                          "the trained-threshold activations' compiled kernels", "the PyTorch expressions",
                          "the first QCFS or trained clip on a CPU builds them: snnergy.threshold_kernels.prepare()")


#: Builds (once per machine) and loads the kernels if ``$SNNERGY_KERNELS`` allows; whether they
#: can be used now (:meth:`snnergy.native.Library.prepare`).
prepare = _LIBRARY.prepare
#: Why the kernels cannot be used now, or ``None`` if they can; never builds.
unavailable_reason = _LIBRARY.unavailable_reason


def reference(x: Tensor, theta: Tensor, levels: int) -> Tensor:
    """QCFS as the PyTorch expression (``theta`` broadcast to ``x``), differentiated by autograd."""
    t = x * levels / theta + 0.5
    t = t + (torch.floor(t) - t).detach()  # floor forward, identity backward (layers.floor_ste)
    return theta * torch.clamp(t / levels, 0.0, 1.0)


def clip_reference(x: Tensor, theta: Tensor) -> Tensor:
    """The trained clip as the PyTorch expression, differentiated by autograd."""
    return torch.minimum(torch.relu(x), theta)


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
    if not native.eager(x, theta) or x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or theta.dtype != x.dtype:
        return None
    layout = _layout(x, theta)
    if layout is None or not x.is_contiguous() or theta.device != x.device or not prepare():
        return None
    return layout


def _expression_grads(expression: Any, x: Tensor, theta: Tensor, grad: Tensor,
                      ctx: Any) -> tuple[Tensor | None, Tensor | None]:
    """The gradients by autograd through the PyTorch expression, for an output gradient whose
    layout is not contiguous: autograd reduces the threshold's terms in that layout's order, so
    the kernels' contiguous sums could differ from it in the last bit."""
    with torch.enable_grad():
        xs, ts = x.detach().requires_grad_(), theta.detach().requires_grad_()
        wanted = [t for t, need in zip((xs, ts), ctx.needs_input_grad[:2]) if need]
        grads = iter(torch.autograd.grad(expression(xs, ts), wanted, grad))
    return tuple(next(grads) if need else None for need in ctx.needs_input_grad[:2])  # type: ignore[return-value]


def _suffix(x: Tensor) -> str:
    return "f32" if x.dtype == torch.float32 else "f64"


@dataclass(frozen=True)
class PenaltyTerm:
    """A fused penalty's gradient at this activation's output, handed to its backward pass
    instead of a gradient map (:func:`snnergy.regularizers.fused.handing_off`): per sample ``b``
    and output ``a``, ``kind`` 1 ``a k1[b]`` (``l2``), 2 ``sgn(a) k1[b] / (beta + |a|)^2``
    (``transformed-l1``), 3 ``sgn(a) k1[b] + a k2[b]`` (``hoyer``, ``hoyer-square``), 4
    ``sgn(a) k1[b]`` (``l1``), 5 ``k1[b] f[i]`` (``synops`` of a trained-threshold layer, ``f`` the
    fan-out at position ``i`` of a sample); without
    ``sgn`` and ``| |`` when not ``absval`` (the output is then ``>= 0`` and the node zeroes the
    gradient where it is 0). The backward adds it to the output's gradient, in the order autograd
    would have added the map: the same bits.

    Attributes:
        kind: 1 to 5 (above).
        absval: Whether the terms take ``sgn(a)`` and ``|a|``.
        k1: ``(B,)`` contiguous, the output's dtype and device.
        k2: ``(B,)`` (kind 3), else ``None``.
        beta: ``transformed-l1``'s beta.
        positions: ``f`` (kind 5): one factor per position of a sample, contiguous; else ``None``.
    """

    kind: int
    absval: bool
    k1: Tensor
    k2: Tensor | None
    beta: float
    positions: Tensor | None = None


#: A compiled node of this module says so on its context: it adds a handed :class:`PenaltyTerm`.
ACCEPTS_PENALTY = "accepts_penalty"


def _taken(ctx: Any) -> PenaltyTerm | None:
    """The term a penalty handed this node for this backward pass, removed (a second backward pass
    through the same graph gets its own)."""
    term = getattr(ctx, "penalty_term", None)
    ctx.penalty_term = None
    return term


def _term_args(term: PenaltyTerm | None) -> tuple[Any, ...]:
    if term is None:
        return 0, 0, None, None, None, 0.0
    return (term.kind, int(term.absval), term.k1.data_ptr(), None if term.k2 is None else term.k2.data_ptr(),
            None if term.positions is None else term.positions.data_ptr(), term.beta)


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
        setattr(ctx, ACCEPTS_PENALTY, True)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        x, theta = ctx.saved_tensors
        term = _taken(ctx)
        if term is not None:  # the penalty's gradient map would have made it contiguous (autograd's sum)
            grad = grad.contiguous()
        if not grad.is_contiguous():  # autograd's threshold terms follow grad's layout: its own bits
            return (*_expression_grads(lambda a, t: reference(a, t, ctx.levels), x, theta, grad, ctx), None, None)
        gx, a, b = torch.empty_like(x), torch.empty_like(x), torch.empty_like(x)
        th = theta.detach().contiguous()  # held: the kernel reads it
        getattr(_LIBRARY.loaded(), "qcfs_grad_" + _suffix(x))(
            x.data_ptr(), grad.data_ptr(), *ctx.layout, th.data_ptr(), float(ctx.levels),
            gx.data_ptr(), a.data_ptr(), b.data_ptr(), *_term_args(term), torch.get_num_threads())
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


class _Clip(torch.autograd.Function):
    """The compiled trained clip and its compiled gradient (module docstring)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, theta: Tensor, layout: tuple[int, int, int]) -> Tensor:
        out, th = torch.empty_like(x), theta.detach().contiguous()  # th held: the kernel reads it
        getattr(_LIBRARY.loaded(), "clip_" + _suffix(x))(x.data_ptr(), *layout, th.data_ptr(), out.data_ptr(),
                                                         torch.get_num_threads())
        ctx.save_for_backward(x, theta)
        ctx.layout = layout
        # every theta > 0: out >= 0, and the backward zeroes the gradient wherever out = 0 (there
        # relu(x) = 0 < theta: x's and theta's shares are both masked), as a ReLU's does; the fused
        # penalties then skip |a| and sgn(a) (regularizers.fused.is_relu_output)
        ctx.relu_like = bool((theta.detach() > 0).all())
        setattr(ctx, ACCEPTS_PENALTY, True)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        x, theta = ctx.saved_tensors
        term = _taken(ctx)
        if term is not None:  # the penalty's gradient map would have made it contiguous (autograd's sum)
            grad = grad.contiguous()
        if not grad.is_contiguous():  # autograd's threshold term follows grad's layout: its own bits
            return (*_expression_grads(clip_reference, x, theta, grad, ctx), None)
        gx, gt = torch.empty_like(x), torch.empty_like(x)
        th = theta.detach().contiguous()  # held: the kernel reads it
        getattr(_LIBRARY.loaded(), "clip_grad_" + _suffix(x))(
            x.data_ptr(), grad.data_ptr(), *ctx.layout, th.data_ptr(), gx.data_ptr(),
            gt.data_ptr(), *_term_args(term), torch.get_num_threads())
        gtheta = gt.sum_to_size(theta.shape) if ctx.needs_input_grad[1] else None
        return (gx if ctx.needs_input_grad[0] else None), gtheta, None


def clip(x: Tensor, theta: Tensor) -> Tensor:
    """``minimum(relu(x), theta)``, ``theta`` one value (0-d) or one per channel as
    ``(1, C, 1, ...)``: compiled on a CPU where the module docstring allows, else the PyTorch
    expression; the same values and gradients, to the bit.

    Example:
        >>> x = torch.tensor([[-1.0, 0.5, 2.0, 3.0]], requires_grad=True)
        >>> theta = torch.tensor(2.0, requires_grad=True)
        >>> y = clip(x, theta)
        >>> y.sum().backward()
        >>> y.tolist(), x.grad.tolist(), theta.grad.item()  # at x = theta the gradient is shared
        ([[0.0, 0.5, 2.0, 2.0]], [[0.0, 1.0, 0.5, 0.0]], 1.5)
    """
    layout = _compiled(x, theta)
    if layout is None:
        return clip_reference(x, theta)
    return _Clip.apply(x, theta, layout)  # type: ignore[no-any-return]
