"""Compiled CPU kernels of the simulator: the integrate-and-fire scan and event-driven currents.

Two loops dominate a CPU simulation and vectorize badly as PyTorch ops: the IF scan (four
element-wise ops and a temporary per step) and, for sparse activity, a layer's current computed
from its active inputs only. With them: the average pooling of channels-last spikes
(:func:`pool`), and the scan that leaves its spikes pooled for the next layer
(:func:`if_scan_pool`: the raw spike map is never written). They are written here in C, compiled once per machine with the
system's C compiler (``$CC``, else ``cc``) into a cache folder, and called through
:mod:`ctypes` on the tensors' memory; nothing is downloaded.

The environment variable ``SNNERGY_KERNELS`` (:func:`setting`) decides whether they are used:

* ``auto`` (the default): built and used when a compiler works; otherwise the simulator uses its
  PyTorch loops, which give the same spikes, and the ``"event"`` path is not offered
  (:func:`unavailable_reason` says why);
* ``off``: never built nor loaded; the PyTorch loops, no ``"event"`` path;
* ``require``: they must build, else the first simulation fails with one clear
  :class:`~snnergy.errors.ConfigError`.

Any other value is a :class:`~snnergy.errors.ConfigError`. Building happens at one defined
point: :func:`prepare`, which the simulator calls when it starts its first CPU simulation (and
the kernel calls :func:`if_scan` and :func:`events` when called directly); a build that is not
cached yet says so on stderr. The predicates :func:`available`, :func:`unavailable_reason` and
:func:`scan_compatible` never build: they only look at the switch and at what :func:`prepare`
left.

Numerics: compiled with ``-ffp-contract=off`` (no fused multiply-adds) and without fast-math
(``-fno-trapping-math`` only lets the compiler vectorize the comparisons; it changes no value),
so the scan does in each step exactly what :func:`~snnergy.simulation.neurons.if_step_` does (``v + I``, ``>=``, then
``v - threshold`` or ``0``): bit for bit the same spikes and potentials. The event-driven current
adds, for each active input, its weights to the outputs it reaches, in input order; a dense
Conv/Linear sums the same products in another order, so the currents agree to rounding.

Building and the cache (:mod:`snnergy.native`, shared with the fused penalties): ``$SNNERGY_CACHE_DIR``,
else ``$XDG_CACHE_HOME/snnergy``, else ``~/.cache/snnergy``;
the library's file name carries a hash of the source, the flags, the compiler and the CPU's
feature flags (the code is built for the host CPU with ``-march=native``).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch import Tensor

from snnergy import native

_SOURCE = r"""
#include <stdint.h>
#include <string.h>

/* Integrate-and-fire over n steps for B samples of m neurons (any neuron order, the same for
   cur, v, out and final). cur: step t, sample b at cur + t * tstride + b * m (tstride 0: the
   same current every step). v: B * m potentials, updated. out: n * B * m spikes (0 or 1).
   counts: n * m, overwritten with each step's spikes summed over the samples. final: B * m,
   each sample's spikes added. Threads split the neurons, so each owns its counts. */
#define IF_SCAN(NAME, T)                                                                        \
static void NAME##_row(const T* restrict c, T* restrict v, T* restrict o, T* restrict sum,    \
                       T* restrict fin, int64_t len, T threshold, int subtract) {             \
    for (int64_t j = 0; j < len; j++) { /* subtract is loop-invariant: -O3 unswitches it */    \
        T x = v[j] + c[j];                                                                     \
        T f = x >= threshold ? (T)1 : (T)0;                                                    \
        o[j] = f;                                                                              \
        sum[j] += f;                                                                           \
        fin[j] += f;                                                                           \
        /* f * threshold is exact: 0 or the threshold */                                       \
        v[j] = subtract ? x - f * threshold : (x >= threshold ? (T)0 : x);                     \
    }                                                                                          \
}                                                                                              \
void NAME(const T* restrict cur, int64_t n, int64_t B, int64_t m, int64_t tstride,            \
          T* restrict v, T* restrict out, T* restrict counts, T* restrict final,              \
          T threshold, int subtract, int threads) {                                           \
    int64_t block = 512;                                                                       \
    _Pragma("omp parallel for num_threads(threads) schedule(static)")                          \
    for (int64_t j0 = 0; j0 < m; j0 += block) {                                                \
        int64_t len = j0 + block < m ? block : m - j0;                                         \
        for (int64_t t = 0; t < n; t++)                                                        \
            for (int64_t j = 0; j < len; j++) counts[t * m + j0 + j] = (T)0;                   \
        for (int64_t b = 0; b < B; b++) { /* this sample's neurons stay in cache over time */  \
            int64_t at = b * m + j0;                                                           \
            for (int64_t t = 0; t < n; t++) {                                                  \
                NAME##_row(cur + t * tstride + at, v + at, out + t * B * m + at,               \
                           counts + t * m + j0, final + at, len, threshold, subtract);         \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
}
IF_SCAN(if_scan_f32, float)
IF_SCAN(if_scan_f64, double)

/* Event-driven currents of rows of inputs (rows x n_in). Each output row (width outputs) starts
   as bias (width values); then every non-zero input i adds, for each run
   e in ptr[i] .. ptr[i+1]-1, value * w[wstart[e] + k] to out[ostart[e] + k], k < len[e]. The
   inputs are read 64 at a time into a bit mask of the non-zero ones, whose set bits are then
   visited: when few neurons spike, most of the work is the runs. */
/* The non-zero bits of 64 inputs: 8 (float) or 4 (double) per AVX compare where available. */
#ifdef __AVX__
#include <immintrin.h>
#define MASK_float(s, l, k, mask)                                                              \
    for (; k + 8 <= l; k += 8)                                                                 \
        mask |= (uint64_t)_mm256_movemask_ps(                                                  \
            _mm256_cmp_ps(_mm256_loadu_ps(s + k), _mm256_setzero_ps(), _CMP_NEQ_UQ)) << k;
#define MASK_double(s, l, k, mask)                                                             \
    for (; k + 4 <= l; k += 4)                                                                 \
        mask |= (uint64_t)_mm256_movemask_pd(                                                  \
            _mm256_cmp_pd(_mm256_loadu_pd(s + k), _mm256_setzero_pd(), _CMP_NEQ_UQ)) << k;
#else
#define MASK_float(s, l, k, mask)
#define MASK_double(s, l, k, mask)
#endif
#define EVENTS(NAME, T)                                                                     \
static void NAME##_add(T* restrict a, const T* restrict b, int64_t l) {                       \
    for (int64_t k = 0; k < l; k++) a[k] += b[k];                                              \
}                                                                                              \
static void NAME##_axpy(T* restrict a, const T* restrict b, T value, int64_t l) {             \
    for (int64_t k = 0; k < l; k++) a[k] += value * b[k];                                      \
}                                                                                              \
static uint64_t NAME##_mask(const T* s, int64_t l) {                                          \
    uint64_t mask = 0;                                                                         \
    int64_t k = 0;                                                                             \
    MASK_##T(s, l, k, mask)                                                                    \
    for (; k < l; k++) mask |= (uint64_t)(s[k] != (T)0) << k;                                  \
    return mask;                                                                               \
}                                                                                              \
void NAME(const T* restrict in, int64_t rows, int64_t n_in, const int64_t* restrict ptr,      \
          const int64_t* restrict ostart, const int64_t* restrict wstart,                     \
          const int64_t* restrict len, const T* restrict w, const T* restrict bias,           \
          int64_t width, T* restrict out, int threads) {                                      \
    _Pragma("omp parallel for num_threads(threads) schedule(static)")                          \
    for (int64_t r = 0; r < rows; r++) {                                                       \
        T* restrict o = out + r * width;                                                       \
        memcpy(o, bias, width * sizeof(T));                                                    \
        const T* restrict s = in + r * n_in;                                                   \
        for (int64_t i0 = 0; i0 < n_in; i0 += 64) {                                            \
            int64_t i1 = i0 + 64 < n_in ? i0 + 64 : n_in;                                      \
            uint64_t mask = NAME##_mask(s + i0, i1 - i0); /* bit k: input i0 + k is not 0 */  \
            while (mask) {                                                                     \
                int64_t i = i0 + __builtin_ctzll(mask);                                        \
                mask &= mask - 1;                                                              \
                T value = s[i];                                                                \
                for (int64_t e = ptr[i]; e < ptr[i + 1]; e++) {                                \
                    if (value == (T)1) NAME##_add(o + ostart[e], w + wstart[e], len[e]);       \
                    else NAME##_axpy(o + ostart[e], w + wstart[e], value, len[e]);             \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
}
EVENTS(events_f32, float)
EVENTS(events_f64, double)

/* Average pooling of channels-last maps (rows x H x W x C), windows kh x kw with stride = window,
   no padding, floor mode: out (rows x H/kh x W/kw x C). A window's rows are added first (top to
   bottom, whole rows of W * C values at once, into the thread's scratch of W * C values), then
   its columns left to right, then the sum is divided by kh * kw: the order of folding.py's
   strided additions. */
#ifdef _OPENMP
#include <omp.h>
#define THREAD omp_get_thread_num()
#else
#define THREAD 0
#endif
#define POOL(NAME, T)                                                                          \
/* One row of windows: p points at the first of its kh map rows (line values apart), o at the  \
   Wo * C outputs; s: line values of scratch. */                                               \
static void NAME##_windows(const T* restrict p, int64_t line, int64_t Wo, int64_t C,          \
                           int64_t kh, int64_t kw, T area, T* restrict s, T* restrict o) {    \
    int64_t width = Wo * kw * C;                                                               \
    if (kh == 1) memcpy(s, p, width * sizeof(T));                                              \
    else for (int64_t x = 0; x < width; x++) s[x] = p[x] + p[line + x];                        \
    for (int64_t k = 2; k < kh; k++)                                                           \
        for (int64_t x = 0; x < width; x++) s[x] += p[k * line + x];                           \
    for (int64_t j = 0; j < Wo; j++) {                                                         \
        const T* restrict a = s + j * kw * C;                                                  \
        T* restrict b = o + j * C;                                                             \
        if (kw == 1) memcpy(b, a, C * sizeof(T));                                              \
        else for (int64_t c = 0; c < C; c++) b[c] = a[c] + a[C + c];                           \
        for (int64_t q = 2; q < kw; q++)                                                       \
            for (int64_t c = 0; c < C; c++) b[c] += a[q * C + c];                              \
    }                                                                                          \
    for (int64_t x = 0; x < Wo * C; x++) o[x] = o[x] / area;                                   \
}                                                                                              \
void NAME(const T* restrict in, int64_t rows, int64_t H, int64_t W, int64_t C, int64_t kh,    \
          int64_t kw, T* restrict out, T* restrict scratch, int threads) {                    \
    int64_t Ho = H / kh, Wo = W / kw, line = W * C;                                            \
    _Pragma("omp parallel num_threads(threads)")                                               \
    {                                                                                          \
        T* restrict s = scratch + (int64_t)THREAD * line;                                      \
        _Pragma("omp for schedule(static)")                                                    \
        for (int64_t ri = 0; ri < rows * Ho; ri++)                                             \
            NAME##_windows(in + ((ri / Ho) * H + (ri % Ho) * kh) * line, line, Wo, C, kh, kw,  \
                           (T)(kh * kw), s, out + ri * Wo * C);                                \
    }                                                                                          \
}
POOL(pool_f32, float)
POOL(pool_f64, double)

/* The IF scan of a channels-last map (B x H x W x C neurons) whose spikes are only read pooled
   (the next layer's first op is that average pooling): if_scan's arithmetic, counts and finals,
   but each step's spikes of kh map rows go to the thread's scratch and leave as one row of
   windows (pool's additions), so the raw spike map is never written. Threads split the rows of
   windows (and the rows floor mode drops, scanned without output), each owning their counts.
   scratch: (kh + 1) * W * C values per thread. out: n x B x H/kh x W/kw x C. */
#define IF_SCAN_POOL(NAME, T, SCAN, WINDOWS)                                                   \
void NAME(const T* restrict cur, int64_t n, int64_t B, int64_t H, int64_t W, int64_t C,       \
          int64_t kh, int64_t kw, int64_t tstride, T* restrict v, T* restrict out,            \
          T* restrict counts, T* restrict final, T threshold, int subtract,                   \
          T* restrict scratch, int threads) {                                                 \
    int64_t Ho = H / kh, Wo = W / kw, line = W * C, m = H * line, pooled = Ho * Wo * C;        \
    int64_t blocks = Ho + (H > Ho * kh ? 1 : 0);                                               \
    _Pragma("omp parallel num_threads(threads)")                                               \
    {                                                                                          \
        T* restrict s = scratch + (int64_t)THREAD * (kh + 1) * line;                           \
        _Pragma("omp for schedule(static)")                                                    \
        for (int64_t i = 0; i < blocks; i++) {                                                 \
            int64_t j0 = i * kh * line, len = i < Ho ? kh * line : m - j0;                     \
            for (int64_t t = 0; t < n; t++)                                                    \
                for (int64_t j = 0; j < len; j++) counts[t * m + j0 + j] = (T)0;               \
            for (int64_t b = 0; b < B; b++) {                                                  \
                int64_t at = b * m + j0;                                                       \
                for (int64_t t = 0; t < n; t++) {                                              \
                    SCAN##_row(cur + t * tstride + at, v + at, s, counts + t * m + j0,         \
                               final + at, len, threshold, subtract);                          \
                    if (i < Ho)                                                                \
                        WINDOWS##_windows(s, line, Wo, C, kh, kw, (T)(kh * kw), s + kh * line, \
                                          out + (t * B + b) * pooled + i * Wo * C);            \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
}
IF_SCAN_POOL(if_scan_pool_f32, float, if_scan_f32, pool_f32)
IF_SCAN_POOL(if_scan_pool_f64, double, if_scan_f64, pool_f64)
"""

_P, _I, _INT = native.POINTER, native.INT64, native.INT

#: The environment variable that switches the kernels, and its values (the first is the default);
#: the fused penalties' kernels obey it too (:mod:`snnergy.native`).
SWITCH = native.SWITCH
SETTINGS = native.SETTINGS
#: What a build not cached yet prints on stderr.
BUILD_MESSAGE = "snnergy: compiling CPU kernels (once per machine)..."


def setting() -> str:
    """The value of ``$SNNERGY_KERNELS``: ``"auto"`` (also when unset or empty), ``"off"`` or ``"require"``.

    Raises:
        ConfigError: Any other value.

    Example:
        >>> import os
        >>> os.environ.get(SWITCH, "") in ("", *SETTINGS) and setting() in SETTINGS
        True
    """
    return native.setting()


def compiler() -> str | None:
    """The C compiler the kernels are built with (``$CC``, else ``cc``) as found on ``PATH``, or ``None``."""
    return native.compiler()


def prepare() -> bool:
    """Builds (once per machine: later calls and processes load the cached library) and loads the
    kernels if the switch allows; the one point where building happens.

    Returns:
        Whether the kernels are available now (:func:`available`).

    Raises:
        ConfigError: ``$SNNERGY_KERNELS`` is invalid, or is ``require`` and the kernels cannot be
            built or loaded (the message says why: no compiler, the compiler's error).
    """
    return _LIBRARY.prepare()


def available() -> bool:
    """Whether the compiled kernels can be used now; never builds (see :func:`prepare`)."""
    return _LIBRARY.available()


def unavailable_reason() -> str | None:
    """Why the kernels cannot be used now (switched off, not prepared yet, no compiler, a failed
    build), or ``None`` if they can; never builds."""
    return _LIBRARY.unavailable_reason()


def if_scan(currents: Tensor, v: Tensor, out: Tensor, counts: Tensor, final: Tensor, threshold: float,
            subtract: bool, *, static: bool = False) -> None:
    """IF neurons over ``n`` steps, in place: the compiled :func:`~snnergy.simulation.neurons.if_step_`,
    counting spikes as it goes.

    Args:
        currents: ``(n, B, *shape)`` currents, or with ``static`` one ``(B, *shape)`` current used
            at every step.
        v: ``(B, *shape)`` potentials, updated (the caller starts them at the neuron's initial
            potential ``v0 * threshold``).
        out: ``(n, B, *shape)`` spikes, overwritten.
        counts: ``(n, *shape)``, overwritten with each step's spikes summed over the batch (exact
            while ``B < 2**24`` in float32).
        final: ``(B, *shape)``, each sample's spikes added (exact below ``2**24`` steps in float32).
        threshold: Firing threshold.
        subtract: Reset by subtraction (else to zero).
        static: ``currents`` is the same at every step.

    All must be CPU tensors of one float dtype, every ``(B, *shape)`` block laid out alike and
    densely; :func:`scan_compatible` checks it.
    """
    lib = _require()
    n, batch = out.shape[0], v.shape[0]
    m = v.numel() // batch
    fn = lib.if_scan_f32 if v.dtype == torch.float32 else lib.if_scan_f64
    scalar = ctypes.c_float if v.dtype == torch.float32 else ctypes.c_double
    fn(currents.data_ptr(), n, batch, m, 0 if static else batch * m, v.data_ptr(), out.data_ptr(),
       counts.data_ptr(), final.data_ptr(), scalar(threshold), int(subtract), torch.get_num_threads())


def scan_compatible(currents: Tensor, v: Tensor, out: Tensor, counts: Tensor, final: Tensor,
                    static: bool = False) -> bool:
    """Whether :func:`if_scan` can run on these tensors (else use the PyTorch loop)."""
    if not (available() and v.device.type == "cpu" and v.dtype in (torch.float32, torch.float64)
            and currents.dtype == v.dtype == out.dtype == counts.dtype == final.dtype and v.dim() >= 2):
        return False
    block = v.numel()
    steps = [currents] if static else [currents[t] for t in range(min(1, currents.shape[0]))]
    steps += [out[0]] if out.shape[0] else []
    per_sample = [counts[0]] if counts.shape[0] else []
    return (_dense(v) and final.stride() == v.stride() and all(s.stride() == v.stride() for s in steps)
            and all(p.stride() == v.stride()[1:] for p in per_sample)
            and (static or currents.stride(0) == block) and out.stride(0) == block
            and counts.stride(0) == block // v.shape[0] and currents.shape[-v.dim():] == v.shape)


def _dense(t: Tensor) -> bool:
    """Contiguous, or channels last: a block whose neurons follow one another in memory."""
    return t.is_contiguous() or (t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last))


def events(inputs: Tensor, ptr: Tensor, ostart: Tensor, wstart: Tensor, length: Tensor, weights: Tensor,
           bias: Tensor, out: Tensor) -> Tensor:
    """Event-driven currents: ``out[r]`` = bias + the weight runs of every non-zero ``inputs[r, i]``.

    Args:
        inputs: ``(rows, n_in)`` contiguous CPU inputs (spikes).
        ptr, ostart, wstart, length: int64 run table: input ``i`` owns runs ``ptr[i]:ptr[i+1]``.
        weights: Flat weights the runs read.
        bias: ``width`` values, each output row's start.
        out: ``(rows, width)`` contiguous output, overwritten.

    Returns:
        ``out``.
    """
    lib = _require()
    fn = lib.events_f32 if inputs.dtype == torch.float32 else lib.events_f64
    fn(inputs.data_ptr(), inputs.shape[0], inputs.shape[1], ptr.data_ptr(), ostart.data_ptr(),
       wstart.data_ptr(), length.data_ptr(), weights.data_ptr(), bias.data_ptr(), out.shape[1],
       out.data_ptr(), torch.get_num_threads())
    return out


def pool(inputs: Tensor, kernel: tuple[int, int], out: Tensor) -> Tensor:
    """Average pooling of a channels-last map, stride = window, no padding, floor mode.

    Args:
        inputs: ``(rows, C, H, W)`` CPU map laid out channels last (:func:`pool_compatible`).
        kernel: The window ``(kh, kw)``.
        out: ``(rows, C, H // kh, W // kw)`` laid out channels last, overwritten.

    Each window column is summed over its rows, the columns are added left to right, and the sum
    is divided by ``kh * kw``: on spikes (0 or 1) every partial sum is a small integer, so the
    result is ``avg_pool2d``'s to the bit.

    Returns:
        ``out``.
    """
    lib = _require()
    rows, c, h, w = inputs.shape
    fn = lib.pool_f32 if inputs.dtype == torch.float32 else lib.pool_f64
    threads = torch.get_num_threads()
    scratch = inputs.new_empty(threads * w * c)  # a row of the map per thread
    fn(inputs.data_ptr(), rows, h, w, c, kernel[0], kernel[1], out.data_ptr(), scratch.data_ptr(), threads)
    return out


def if_scan_pool(currents: Tensor, v: Tensor, out: Tensor, counts: Tensor, final: Tensor, threshold: float,
                 subtract: bool, kernel: tuple[int, int], *, static: bool = False) -> None:
    """:func:`if_scan` on a channels-last map whose spikes leave average-pooled: ``out`` gets
    :func:`pool` of each step's spikes, and the raw spike map is never written.

    Args:
        currents, v, counts, final, threshold, subtract, static: As :func:`if_scan`; ``v`` is
            ``(B, C, H, W)`` channels last.
        out: ``(n, B, C, H // kh, W // kw)``, every step laid out as a channels-last batch, overwritten.
        kernel: The pooling window ``(kh, kw)`` (stride = window, no padding, floor mode).

    The spikes, potentials, counts and pooled values are :func:`if_scan`'s then :func:`pool`'s,
    to the bit; :func:`scan_pool_compatible` checks the tensors.
    """
    lib = _require()
    n, (batch, c, h, w) = out.shape[0], v.shape
    fn = lib.if_scan_pool_f32 if v.dtype == torch.float32 else lib.if_scan_pool_f64
    scalar = ctypes.c_float if v.dtype == torch.float32 else ctypes.c_double
    threads = torch.get_num_threads()
    scratch = v.new_empty(threads * (kernel[0] + 1) * w * c)  # kh rows of spikes and a row of sums
    fn(currents.data_ptr(), n, batch, h, w, c, kernel[0], kernel[1], 0 if static else v.numel(), v.data_ptr(),
       out.data_ptr(), counts.data_ptr(), final.data_ptr(), scalar(threshold), int(subtract), scratch.data_ptr(),
       threads)


def scan_pool_compatible(currents: Tensor, v: Tensor, out: Tensor, counts: Tensor, final: Tensor,
                         kernel: tuple[int, int], static: bool = False) -> bool:
    """Whether :func:`if_scan_pool` can run on these tensors: a channels-last ``v``, the rest as
    :func:`scan_compatible` asks, and ``out`` pooled, laid out as ``v``'s steps would be."""
    if not (available() and v.device.type == "cpu" and v.dtype in (torch.float32, torch.float64)
            and currents.dtype == v.dtype == out.dtype == counts.dtype == final.dtype
            and v.dim() == 4 and v.is_contiguous(memory_format=torch.channels_last) and min(kernel) >= 1):
        return False
    (b, c, h, w), n = v.shape, out.shape[0]
    ho, wo, m = h // kernel[0], w // kernel[1], v.numel() // max(1, v.shape[0])
    pooled = (n, b, c, ho, wo)
    cur_ok = currents.shape == v.shape and currents.stride() == v.stride() if static else \
        (currents.dim() == 5 and currents.shape[1:] == v.shape and currents.stride()[1:] == v.stride()
         and (currents.shape[0] <= 1 or currents.stride(0) == v.numel()))
    return (cur_ok and tuple(out.shape) == pooled and ho >= 1 and wo >= 1
            and out.stride()[1:] == (ho * wo * c, 1, wo * c, c) and (n <= 1 or out.stride(0) == b * ho * wo * c)
            and final.shape == v.shape and final.stride() == v.stride() and counts.shape == (n, c, h, w)
            and counts.stride()[1:] == v.stride()[1:] and (n <= 1 or counts.stride(0) == m))


def pool_compatible(inputs: Tensor) -> bool:
    """Whether :func:`pool` can run on ``inputs`` (a dense channels-last float CPU map); never builds."""
    return (available() and inputs.device.type == "cpu" and inputs.dtype in (torch.float32, torch.float64)
            and inputs.dim() == 4 and inputs.is_contiguous(memory_format=torch.channels_last))


# ---------------------------------------------------------------------------- build


def _require() -> ctypes.CDLL:
    """The loaded library, prepared if need be (a direct kernel call asks for the kernels)."""
    return _LIBRARY.loaded()  # type: ignore[no-any-return]


def _load(path: Path) -> ctypes.CDLL:
    return native.load_typed(path, lambda scalar: {
        "if_scan": [_P, _I, _I, _I, _I, _P, _P, _P, _P, scalar, _INT, _INT],
        "events": [_P, _I, _I, _P, _P, _P, _P, _P, _P, _I, _P, _INT],
        "pool": [_P, _I, _I, _I, _I, _I, _I, _P, _P, _INT],
        "if_scan_pool": [_P, _I, _I, _I, _I, _I, _I, _I, _I, _P, _P, _P, _P, scalar, _INT, _P, _INT],
    })


_LIBRARY = native.Library("snnergy_kernels", _SOURCE, BUILD_MESSAGE, _load, "snnergy's compiled CPU kernels",
                          "the PyTorch loops", "the first simulation builds them: snnergy.simulation.kernels.prepare()")
