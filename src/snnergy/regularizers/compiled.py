"""Compiled CPU kernels of the fused penalties: one read of an activation map per call.

The fused penalties (:mod:`snnergy.regularizers.fused`, :mod:`snnergy.regularizers.fused_energy`)
read each activation map after the forward pass; as PyTorch operations each statistic is one
pass with a fixed cost (``hoyer``: a sum, the squares, their sum; ``synops``: the block maxima, the
non-zero count, the rates, their cap, the products with the fan-out, their sum, two ``topk``), on
maps that are no longer in cache (issue 18: the training step cost up to 1.29x the unregularized
one). Here each group is one C loop over the map (GCC/Clang vector extensions, eight lanes):

- :func:`row_sums`: per sample, ``sum|a|``, ``sum a^2`` and ``sum |a| / (beta + |a|)``;
- :func:`hoyer_grad`, :func:`tl1_grad`: the closed-form gradients, one pass each;
- :func:`layer_values`, :func:`layer_grads`: a per-layer penalty (``l2``, ``transformed-l1``,
  ``hoyer``, ``hoyer-square``) of every layer in one call each way: the sums above, the
  per-sample values, batch means and layer sum, then every map's gradient (a call has a fixed
  cost of a few microseconds in Python, as each PyTorch operation has: one call instead of some
  twenty);
- :func:`energy_pass`: the percentile's block maxima, non-zero count and NaN flag, and the
  per-sample ``synops`` (``sum f min(a, lambda) / lambda``), ``macs`` (``sum f r / (r + eps)``,
  ``r = |x| / mu``) or exact effective-MACs value, in one read of the map;
- :func:`energy_select`: that pass, then the percentile's one or two order statistics (Hoare's
  selection over the blocks whose maximum can hold them, instead of two ``topk``), in one call;
- :func:`energy_grad`: the energy-aware gradient and ``sum(grad * a)`` (the scale's moment);
- :func:`zero_count`: a map's zeros (the training loop's sparsity), from the same pass's count.

Numerics: the element-wise results are the PyTorch path's, operation for operation (compiled
without fused multiply-adds or fast-math): the gradients, block maxima, counts and order
statistics (their values; among equal magnitudes the position may be another one) are the same,
to the bit. The sums are taken in another order: each term in the map's dtype, summed over eight
lanes in that dtype for 64 values at a time, those partial sums added in float64 (a pass that
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

BUILD_MESSAGE = "snnergy: compiling the fused penalties' CPU kernels (once per machine)..."

_SOURCE = native.VECTORS + r"""
#include <float.h>
static inline vf load_f32(const float* p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline vd load_f64(const double* p) { vd v; memcpy(&v, p, sizeof v); return v; }
static inline void store_f32(float* p, vf v) { memcpy(p, &v, sizeof v); }
static inline void store_f64(double* p, vd v) { memcpy(p, &v, sizeof v); }
static inline vf abs_f32(vf v) { return (vf)((vfi)v & 0x7fffffff); }
static inline vd abs_f64(vd v) { return (vd)((vdi)v & 0x7fffffffffffffffLL); }
static inline vd wide_f32(vf v) { return __builtin_convertvector(v, vd); }
static inline vd wide_f64(vd v) { return v; }
/* where(mask, a, b) on lanes: mask lanes are -1 or 0 */
static inline vf pick_f32(vfi m, vf a, vf b) { return (vf)(((vfi)a & m) | ((vfi)b & ~m)); }
static inline vd pick_f64(vdi m, vd a, vd b) { return (vd)(((vdi)a & m) | ((vdi)b & ~m)); }
static inline double hsum(vd v) { double t = 0; for (int j = 0; j < W; j++) t += v[j]; return t; }
/* The largest lane (no NaN), as a tree: three dependent steps instead of seven. */
#define MAX2(x, y) ((x) > (y) ? (x) : (y))
static inline float hmax_f32(vf v) {
    float a = MAX2(v[0], v[4]), b = MAX2(v[1], v[5]), c = MAX2(v[2], v[6]), d = MAX2(v[3], v[7]);
    return MAX2(MAX2(a, c), MAX2(b, d));
}
static inline double hmax_f64(vd v) {
    double a = MAX2(v[0], v[4]), b = MAX2(v[1], v[5]), c = MAX2(v[2], v[6]), d = MAX2(v[3], v[7]);
    return MAX2(MAX2(a, c), MAX2(b, d));
}

/* Per row b (rows x n): out[3b] = sum m, out[3b+1] = sum m^2, out[3b+2] = sum m / (beta + m)
   (tl1), m = |a| (absval) or a; each term in T, summed over W lanes in T for 8 chunks (64 values)
   at a time (the last such sum over the chunks that are left), those partial sums added lane by
   lane in double, then the lanes and the tail, in this fixed order (as energy_pass: a pass that
   converts every term to double is bound by the conversions). */
#define ROW_SUMS(S, T)                                                                         \
static inline void row_chunks_##S(const T* r, int64_t chunks, int absval, int tl1, T beta,     \
                                  vd* s1, vd* s2, vd* s3) {                                    \
    typedef __typeof__(load_##S(r)) V;                                                         \
    V p1 = {0}, p2 = {0}, p3 = {0};                                                            \
    for (int64_t u = 0; u < chunks; u++) {                                                     \
        V x = load_##S(r + u * W);                                                             \
        if (absval) x = abs_##S(x);                                                            \
        p1 += x;                                                                               \
        p2 += x * x;                                                                           \
        if (tl1) p3 += x / (beta + x);                                                         \
    }                                                                                          \
    *s1 += wide_##S(p1); *s2 += wide_##S(p2);                                                  \
    if (tl1) *s3 += wide_##S(p3);                                                              \
}                                                                                              \
void row_sums_##S(const T* restrict a, int64_t rows, int64_t n, int absval, int tl1, T beta, \
                  double* restrict out, int threads) {                                         \
    _Pragma("omp parallel for num_threads(threads) schedule(static)")                          \
    for (int64_t b = 0; b < rows; b++) {                                                       \
        const T* r = a + b * n;                                                                \
        vd s1 = {0}, s2 = {0}, s3 = {0};                                                       \
        int64_t i = 0;                                                                         \
        for (; i + 8 * W <= n; i += 8 * W) row_chunks_##S(r + i, 8, absval, tl1, beta, &s1, &s2, &s3); \
        if (i + W <= n) {                                                                      \
            row_chunks_##S(r + i, (n - i) / W, absval, tl1, beta, &s1, &s2, &s3);             \
            i += (n - i) / W * W;                                                              \
        }                                                                                      \
        double t1 = hsum(s1), t2 = hsum(s2), t3 = hsum(s3);                                   \
        for (; i < n; i++) {                                                                   \
            T m = absval ? (T)fabs((double)r[i]) : r[i];                                       \
            t1 += (double)m;                                                                   \
            t2 += (double)(m * m);                                                             \
            if (tl1) t3 += (double)(m / (beta + m));                                          \
        }                                                                                      \
        out[3 * b] = t1; out[3 * b + 1] = t2; out[3 * b + 2] = t3;                             \
    }                                                                                          \
}
ROW_SUMS(f32, float)
ROW_SUMS(f64, double)

#define SGN(T, x) ((x) > (T)0 ? (T)1 : ((x) < (T)0 ? (T)-1 : (T)0))

/* hoyer: out = a * k2[b] + k1[b] (absval = 0: a >= 0), else sgn(a) * k1[b] + a * k2[b]. */
#define HOYER_GRAD(S, T)                                                                       \
void hoyer_grad_##S(const T* restrict a, int64_t rows, int64_t n, int absval, const T* restrict k1, \
                    const T* restrict k2, T* restrict out, int threads) {                      \
    _Pragma("omp parallel for num_threads(threads) schedule(static)")                          \
    for (int64_t b = 0; b < rows; b++) {                                                       \
        const T* restrict r = a + b * n;                                                       \
        T* restrict o = out + b * n;                                                           \
        T c1 = k1[b], c2 = k2[b];                                                              \
        if (absval) for (int64_t i = 0; i < n; i++) o[i] = SGN(T, r[i]) * c1 + r[i] * c2;      \
        else for (int64_t i = 0; i < n; i++) o[i] = r[i] * c2 + c1;                            \
    }                                                                                          \
}
HOYER_GRAD(f32, float)
HOYER_GRAD(f64, double)

/* transformed-l1: out = k[b] / (beta + a)^2 (absval = 0), else sgn(a) * k[b] / (beta + |a|)^2. */
#define TL1_GRAD(S, T)                                                                         \
void tl1_grad_##S(const T* restrict a, int64_t rows, int64_t n, int absval, T beta,           \
                  const T* restrict k, T* restrict out, int threads) {                         \
    _Pragma("omp parallel for num_threads(threads) schedule(static)")                          \
    for (int64_t b = 0; b < rows; b++) {                                                       \
        const T* restrict r = a + b * n;                                                       \
        T* restrict o = out + b * n;                                                           \
        T c = k[b];                                                                            \
        if (absval) for (int64_t i = 0; i < n; i++) {                                          \
            T d = beta + (T)fabs((double)r[i]);                                                \
            o[i] = (SGN(T, r[i]) * c) / (d * d);                                               \
        }                                                                                      \
        else for (int64_t i = 0; i < n; i++) { T d = beta + r[i]; o[i] = c / (d * d); }         \
    }                                                                                          \
}
TL1_GRAD(f32, float)
TL1_GRAD(f64, double)

/* Every layer of a per-layer penalty in one call (kind 0: l2, 1: transformed-l1, 2: hoyer,
   3: hoyer-square). Map l is maps[l] (rows x ns[l]; absval[l]: take |a|). stats (L x rows x 3):
   each map's row_sums; values (L x rows): each sample's value, in double then rounded to T, as the
   PyTorch code of the fused kernels computes it (l2: s2 / n; transformed-l1: s3 (beta + 1) / n,
   non-finite -> NaN; hoyer: s1 / (sqrt(s2) sqrt(n)); hoyer-square: s1^2 / (s2 n), 0 for a silent
   sample, whose s2 is set to 1); total: sum_l w_l mean_b(values), the means in double rounded to
   T, the weighted sum in T in layer order (weights NULL: all 1). Returns 1 (the rest undefined)
   when a Hoyer sample that is not silent has s2 outside [floors[l], max]: the caller divides by
   the scale first. */
#define LAYER_VALUES(S, T, TMAX)                                                               \
int layer_values_##S(int kind, int64_t L, const int64_t* restrict maps, int64_t rows,         \
                     const int64_t* restrict ns, const int* restrict absval, T beta,           \
                     const T* restrict floors, const double* restrict weights,                 \
                     double* restrict stats, T* restrict values, T* restrict total, int threads) { \
    T sum = (T)0;                                                                              \
    for (int64_t l = 0; l < L; l++) {                                                          \
        double* st = stats + 3 * rows * l;                                                     \
        T* v = values + rows * l;                                                              \
        double n = (double)ns[l], mean = 0;                                                    \
        row_sums_##S((const T*)maps[l], rows, ns[l], absval[l], kind == 1, beta, st, threads); \
        for (int64_t b = 0; b < rows; b++) {                                                   \
            double s1 = st[3 * b], s2 = st[3 * b + 1], value;                                  \
            if (kind == 0) value = s2 / n;                                                     \
            else if (kind == 1) value = st[3 * b + 2] * ((double)beta + 1.0) / n;              \
            else if (s1 == 0) { st[3 * b + 1] = 1.0; value = 0; }                              \
            else if (!(s2 >= (double)floors[l] && s2 <= (double)TMAX)) return 1;               \
            else value = kind == 2 ? s1 / (sqrt(s2) * sqrt(n)) : s1 * s1 / (s2 * n);           \
            T rounded = (T)value;                                                              \
            if (kind < 2 && !isfinite(rounded)) rounded = (T)NAN;                              \
            v[b] = rounded;                                                                    \
            mean += (double)rounded;                                                           \
        }                                                                                      \
        T term = (T)(mean / (double)rows);                                                     \
        if (weights) term = term * (T)weights[l];                                              \
        sum = l == 0 ? term : sum + term;                                                      \
    }                                                                                          \
    *total = sum;                                                                              \
    return 0;                                                                                  \
}
LAYER_VALUES(f32, float, FLT_MAX)
LAYER_VALUES(f64, double, DBL_MAX)

/* The gradient of layer_values' total times grad: map l's into outs[l] (0: not needed). Per
   sample the factor r = grad w_l / rows (in T; 0 for a NaN value or a silent Hoyer sample), then
   l2: a * ((r / n) * 2); transformed-l1: tl1_grad with k = r * ((beta + 1) beta / n); hoyer:
   hoyer_grad with c1 = r / (sqrt(s2) sqrt(n)), c2 = -r v / s2, hoyer-square: c1 = 2 r s1 / (s2 n),
   c2 = -2 r v / s2 (v the sample's value, in double; c1, c2 rounded to T). */
#define LAYER_GRADS(S, T)                                                                      \
int layer_grads_##S(int kind, int64_t L, const int64_t* restrict maps, int64_t rows,          \
                    const int64_t* restrict ns, const int* restrict absval, T beta,            \
                    const double* restrict weights, const double* restrict stats,              \
                    const T* restrict values, T grad, const int64_t* restrict outs, int threads) { \
    T* k = malloc(2 * rows * sizeof(T));                                                       \
    if (!k) return -1;                                                                         \
    for (int64_t l = 0; l < L; l++) {                                                          \
        if (!outs[l]) continue;                                                                \
        const double* st = stats + 3 * rows * l;                                               \
        const T* v = values + rows * l;                                                        \
        const T* a = (const T*)maps[l];                                                        \
        T* o = (T*)outs[l];                                                                    \
        int64_t n = ns[l];                                                                     \
        T r0 = weights ? (grad * (T)weights[l]) / (T)rows : grad / (T)rows;                    \
        for (int64_t b = 0; b < rows; b++) {                                                   \
            T r = (kind < 2 ? v[b] != v[b] : st[3 * b] == 0) ? (T)0 : r0;                      \
            double s1 = st[3 * b], s2 = st[3 * b + 1], d = (double)r, dn = (double)n;          \
            if (kind == 0) k[b] = (r / (T)n) * (T)2;                                           \
            else if (kind == 1) k[b] = r * ((T)(((double)beta + 1.0) * (double)beta) / (T)n);  \
            else if (kind == 2) {                                                              \
                double value = s1 == 0 ? 0 : s1 / (sqrt(s2) * sqrt(dn));                       \
                k[b] = (T)(d / (sqrt(s2) * sqrt(dn)));                                         \
                k[rows + b] = (T)(d * -value / s2);                                            \
            } else {                                                                           \
                double value = s1 == 0 ? 0 : s1 * s1 / (s2 * dn);                              \
                k[b] = (T)(d * s1 * 2.0 / (s2 * dn));                                          \
                k[rows + b] = (T)(d * value * -2.0 / s2);                                      \
            }                                                                                  \
        }                                                                                      \
        if (kind == 0) {                                                                       \
            _Pragma("omp parallel for num_threads(threads) schedule(static)")                  \
            for (int64_t b = 0; b < rows; b++)                                                 \
                for (int64_t i = 0; i < n; i++) o[b * n + i] = a[b * n + i] * k[b];            \
        } else if (kind == 1) tl1_grad_##S(a, rows, n, absval[l], beta, k, o, threads);       \
        else hoyer_grad_##S(a, rows, n, absval[l], k, k + rows, o, threads);                   \
    }                                                                                          \
    free(k);                                                                                   \
    return 0;                                                                                  \
}
LAYER_GRADS(f32, float)
LAYER_GRADS(f64, double)

/* One pass over the map a (rows x n) for the energy-aware penalties:
   - maxima[g], g < blocks: max of the magnitudes m over flat positions 64g .. 64g + 63 (exact;
     with a NaN in the map they are not used);
   - stats[0]: the non-zero count, stats[1]: the NaN count (stats != NULL);
   - value[b] (value != NULL): kind 0 (synops) sum f min(a, scale) / scale, kind 1 (macs)
     sum f m / (m + eps * scale) (= f r / (r + eps), r = m / scale), each term in T, summed over
     W lanes in T within each block of 64 flat positions (at most 8 chunks), those partial sums
     added lane by lane in double, then the lanes; kind 2 the exact count sum f [a != 0], in double.
   Rows whose length is a multiple of W are read once for all three (a chunk of W then lies in
   one block); otherwise the maxima and the count take their own loops. */
#define ENERGY_PASS(S, T, I)                                                                   \
static inline __typeof__(load_##S((T*)0)) energy_term_##S(__typeof__(load_##S((T*)0)) x,       \
        __typeof__(load_##S((T*)0)) fw, int kind, int absval, T scale, T shift) {              \
    typedef __typeof__(load_##S((T*)0)) V;                                                     \
    V none = {0};                                                                              \
    if (kind == 0) return pick_##S(x > scale, none + scale, x) * fw;                           \
    V m = absval ? abs_##S(x) : x;                                                             \
    return fw * m / (m + shift);                                                               \
}                                                                                              \
void energy_pass_##S(const T* restrict a, int64_t rows, int64_t n, int absval, int kind, double scale, \
                     double eps, const T* restrict f, int64_t blocks, T* restrict maxima,     \
                     double* restrict stats, T* restrict value) {                              \
    typedef __typeof__(load_##S(a)) V;                                                         \
    V vnone = {0}, bm = vnone;                                                                 \
    I zeros = {0}, nans = {0};                                                                 \
    int64_t total = rows * n, head = blocks * 64, zero = 0, nan = 0;                           \
    int fused = n % W == 0 && kind != 2;                                                       \
    T ts = (T)scale, tshift = (T)(eps * scale);                                                \
    if (fused && (value || stats || blocks)) {                                                 \
        for (int64_t b = 0; b < rows; b++) {                                                   \
            const T* r = a + b * n;                                                            \
            vd t = {0};                                                                        \
            for (int64_t i = 0; i < n;) {                                                      \
                int64_t p = b * n + i, e = i + (64 - (p & 63));  /* to the block's end */      \
                if (e > n) e = n;                                                              \
                int in_head = p < head;                                                        \
                V part = vnone;                                                                \
                for (int64_t j = i; j < e; j += W) {                                           \
                    V x = load_##S(r + j);                                                     \
                    if (stats) { zeros -= (I)(x == (T)0); nans -= (I)(x != x); }               \
                    if (in_head) {                                                             \
                        V m = absval ? abs_##S(x) : x;                                         \
                        bm = pick_##S(m > bm, m, bm);                                          \
                    }                                                                          \
                    if (value) part += energy_term_##S(x, load_##S(f + j), kind, absval, ts, tshift); \
                }                                                                              \
                if (in_head && ((p + e - i) & 63) == 0) {  /* the block ends here */           \
                    maxima[p >> 6] = hmax_##S(bm);                                             \
                    bm = vnone;                                                                \
                }                                                                              \
                if (value) t += wide_##S(part);                                                \
                i = e;                                                                         \
            }                                                                                  \
            if (value) {                                                                       \
                double sum = hsum(t);                                                          \
                value[b] = (T)(kind == 0 ? sum / scale : sum);                                 \
            }                                                                                  \
        }                                                                                      \
    } else {                                                                                   \
        for (int64_t g = 0; g < blocks; g++) {                                                 \
            const T* r = a + g * 64;                                                           \
            V m = vnone;                                                                       \
            for (int j = 0; j < 64; j += W) {                                                  \
                V x = load_##S(r + j);                                                         \
                if (absval) x = abs_##S(x);                                                    \
                m = pick_##S(x > m, x, m);                                                     \
            }                                                                                  \
            maxima[g] = hmax_##S(m);                                                           \
        }                                                                                      \
        if (stats) {                                                                           \
            int64_t p = 0;                                                                     \
            for (; p + W <= total; p += W) {                                                   \
                V x = load_##S(a + p);                                                         \
                zeros -= (I)(x == (T)0);                                                       \
                nans -= (I)(x != x);                                                           \
            }                                                                                  \
            for (; p < total; p++) { zero += a[p] == (T)0; nan += a[p] != a[p]; }              \
        }                                                                                      \
        if (value) {                                                                           \
            for (int64_t b = 0; b < rows; b++) {                                               \
                const T* r = a + b * n;                                                        \
                double t = 0;                                                                  \
                for (int64_t i = 0; i < n; i++) {                                              \
                    double x = (double)r[i], fw = (double)f[i];                                \
                    if (kind == 2) t += x != 0 ? fw : 0.0;                                     \
                    else {                                                                     \
                        T xt = r[i], term;                                                     \
                        if (kind == 0) term = (xt > ts ? ts : xt) * f[i];                      \
                        else { T m = absval ? (T)fabs(x) : xt; term = f[i] * m / (m + tshift); } \
                        t += (double)term;                                                     \
                    }                                                                          \
                }                                                                              \
                value[b] = (T)(kind == 0 ? t / scale : t);                                     \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
    if (stats) {                                                                               \
        for (int j = 0; j < W; j++) { zero += zeros[j]; nan += nans[j]; }                      \
        stats[0] = (double)(total - zero);                                                     \
        stats[1] = (double)nan;                                                                \
    }                                                                                          \
}
ENERGY_PASS(f32, float, vfi)
ENERGY_PASS(f64, double, vdi)

/* The gradient of sum_b grad[b] value_b of energy_pass, in T as the PyTorch path computes it:
   kind 0 (synops): (grad[b] / scale) * f where a / scale <= 1, else 0 (limit > 0: the same test
   as a <= limit, the largest T with that quotient <= 1, computed by the caller);
   kind 1 (macs): ((grad[b] * eps) / scale) * f [* sgn(a)] / (m / scale + eps)^2, m = |a| or a.
   moment != NULL: moment[0] = sum out * a, in double. */
#define GRAD_ROW(S, T, NAME, MASK, MASK_1, MOMENT)                                             \
static double NAME(const T* restrict r, const T* restrict f, T* restrict o, int64_t n, T c, T scale, T limit) { \
    typedef __typeof__(load_##S(r)) V;                                                         \
    V zero = {0};                                                                              \
    vd s = {0};                                                                                \
    int64_t i = 0;                                                                             \
    for (; i + W <= n; i += W) {                                                               \
        V x = load_##S(r + i), v = pick_##S(MASK, c * load_##S(f + i), zero);                 \
        store_##S(o + i, v);                                                                   \
        if (MOMENT) s += wide_##S(v) * wide_##S(x);                                            \
    }                                                                                          \
    double t = hsum(s);                                                                        \
    for (; i < n; i++) {                                                                       \
        T x = r[i], v = MASK_1 ? c * f[i] : (T)0;                                              \
        o[i] = v;                                                                              \
        if (MOMENT) t += (double)v * (double)x;                                                \
    }                                                                                          \
    (void)scale; (void)limit;                                                                  \
    return t;                                                                                  \
}
#define MACS_GRAD_ROW(S, T, NAME, ABSVAL, MOMENT)                                              \
static double NAME(const T* restrict r, const T* restrict f, T* restrict o, int64_t n, T c, T scale, T eps) { \
    typedef __typeof__(load_##S(r)) V;                                                         \
    V zero = {0}, one = zero + (T)1, minus = zero - (T)1;                                      \
    vd s = {0};                                                                                \
    int64_t i = 0;                                                                             \
    for (; i + W <= n; i += W) {                                                               \
        V x = load_##S(r + i), v = c * load_##S(f + i);                                       \
        V d = (ABSVAL ? abs_##S(x) : x) / scale + eps;                                         \
        if (ABSVAL) v = v * pick_##S(x > (T)0, one, pick_##S(x < (T)0, minus, zero));         \
        v = v / (d * d);                                                                       \
        store_##S(o + i, v);                                                                   \
        if (MOMENT) s += wide_##S(v) * wide_##S(x);                                            \
    }                                                                                          \
    double t = hsum(s);                                                                        \
    for (; i < n; i++) {                                                                       \
        T x = r[i], v = c * f[i];                                                              \
        T d = (ABSVAL ? (T)fabs((double)x) : x) / scale + eps;                                 \
        if (ABSVAL) v = v * SGN(T, x);                                                         \
        v = v / (d * d);                                                                       \
        o[i] = v;                                                                              \
        if (MOMENT) t += (double)v * (double)x;                                                \
    }                                                                                          \
    return t;                                                                                  \
}
#define ENERGY_GRAD(S, T, I)                                                                   \
GRAD_ROW(S, T, synops_limit_##S, x <= limit, x <= limit, 0)                                    \
GRAD_ROW(S, T, synops_limit_moment_##S, x <= limit, x <= limit, 1)                             \
GRAD_ROW(S, T, synops_div_##S, x / scale <= (T)1, x / scale <= (T)1, 0)                        \
GRAD_ROW(S, T, synops_div_moment_##S, x / scale <= (T)1, x / scale <= (T)1, 1)                 \
MACS_GRAD_ROW(S, T, macs_grad_##S, 0, 0)                                                       \
MACS_GRAD_ROW(S, T, macs_grad_moment_##S, 0, 1)                                                \
MACS_GRAD_ROW(S, T, macs_abs_grad_##S, 1, 0)                                                   \
MACS_GRAD_ROW(S, T, macs_abs_grad_moment_##S, 1, 1)                                            \
void energy_grad_##S(const T* restrict a, int64_t rows, int64_t n, int absval, int kind, T scale, T eps, \
                     T limit, const T* restrict f, const T* restrict grad, T* restrict out,    \
                     double* restrict moment) {                                                \
    double total = 0;                                                                          \
    for (int64_t b = 0; b < rows; b++) {                                                       \
        const T* r = a + b * n;                                                                \
        T* o = out + b * n;                                                                    \
        if (kind == 0) {                                                                       \
            T c = grad[b] / scale;                                                             \
            if (limit > (T)0) total += moment ? synops_limit_moment_##S(r, f, o, n, c, scale, limit) \
                                              : synops_limit_##S(r, f, o, n, c, scale, limit); \
            else total += moment ? synops_div_moment_##S(r, f, o, n, c, scale, limit)          \
                                 : synops_div_##S(r, f, o, n, c, scale, limit);                \
        } else {                                                                               \
            T c = (grad[b] * eps) / scale;                                                     \
            if (absval) total += moment ? macs_abs_grad_moment_##S(r, f, o, n, c, scale, eps)  \
                                        : macs_abs_grad_##S(r, f, o, n, c, scale, eps);        \
            else total += moment ? macs_grad_moment_##S(r, f, o, n, c, scale, eps)             \
                                 : macs_grad_##S(r, f, o, n, c, scale, eps);                   \
        }                                                                                      \
    }                                                                                          \
    if (moment) moment[0] = total;                                                             \
}
ENERGY_GRAD(f32, float, vfi)
ENERGY_GRAD(f64, double, vdi)

/* After it, v[k] is the (k+1)-th largest of v[0 .. len-1] (0 <= k < len), every v[i] >= v[k] for
   i < k and <= v[k] for i > k; p moves with v (Hoare's selection). */
#define NTH_LARGEST(S, T)                                                                      \
static void nth_largest_##S(T* v, int64_t* p, int64_t len, int64_t k) {                        \
    int64_t lo = 0, hi = len - 1;                                                              \
    while (hi > lo) {                                                                          \
        T x = v[lo], y = v[lo + (hi - lo) / 2], z = v[hi], pivot;                             \
        pivot = x > y ? (y > z ? y : (x > z ? z : x)) : (x > z ? x : (y > z ? z : y));        \
        int64_t i = lo, j = hi;                                                                \
        while (i <= j) {                                                                       \
            while (v[i] > pivot) i++;                                                          \
            while (v[j] < pivot) j--;                                                          \
            if (i <= j) {                                                                      \
                T tv = v[i]; v[i] = v[j]; v[j] = tv;                                           \
                int64_t tp = p[i]; p[i] = p[j]; p[j] = tp;                                     \
                i++; j--;                                                                      \
            }                                                                                  \
        }                                                                                      \
        if (k <= j) hi = j; else if (k >= i) lo = i; else return;                              \
    }                                                                                          \
}
NTH_LARGEST(f32, float)
NTH_LARGEST(f64, double)

/* Scratch memory of this thread, grown as needed (content kept) and kept (no allocation per call). */
static __thread char* scratch = NULL;
static __thread size_t scratch_size = 0;
static void* scratch_get(size_t bytes) {
    if (bytes > scratch_size) {  /* realloc keeps what is there */
        char* grown = realloc(scratch, bytes);
        if (!grown) return NULL;
        scratch = grown;
        scratch_size = bytes;
    }
    return scratch;
}

/* The k-th largest non-zero magnitude (k >= 1) of the flat map a (total values, no NaN) and, with
   two, the (k-1)-th: vals/pos[0] the larger ((k-1)-th, or the k-th alone), vals/pos[1] the k-th.
   Only the 64-value blocks whose maximum reaches the k-th largest block maximum are searched (the
   k largest values lie in them; maxima: the blocks' maxima, or NULL to compute them here), and
   the tail after the last whole block. Returns 0, or -1 when out of memory. */
#define SELECT_TOP(S, T)                                                                       \
int select_top_##S(const T* restrict a, int64_t total, int absval, const T* restrict maxima,  \
                   int64_t blocks, int64_t k, int two, T* restrict vals, int64_t* restrict pos) { \
    if (!maxima) blocks = total / 64;                                                          \
    int use_blocks = blocks >= k && 4 * k * 64 <= total;                                      \
    int64_t G = use_blocks ? blocks : 0;                                                       \
    char* mem = scratch_get(2 * G * (sizeof(T) + sizeof(int64_t)) + 64);                      \
    if (!mem) return -1;                                                                       \
    T* m = (T*)mem;                                                                            \
    T* w = m + G;                                                                              \
    int64_t* q = (int64_t*)(mem + 2 * G * sizeof(T) + 16);                                     \
    T t = (T)0;                                                                                \
    if (use_blocks) {                                                                          \
        for (int64_t g = 0; g < G; g++) {                                                      \
            if (maxima) m[g] = maxima[g];                                                      \
            else {                                                                             \
                T best = (T)0;                                                                 \
                for (int64_t i = g * 64; i < g * 64 + 64; i++) {                               \
                    T x = absval ? (T)fabs((double)a[i]) : a[i];                               \
                    best = x > best ? x : best;                                                \
                }                                                                              \
                m[g] = best;                                                                   \
            }                                                                                  \
            w[g] = m[g];                                                                       \
            q[g] = g;                                                                          \
        }                                                                                      \
        nth_largest_##S(w, q, G, k - 1);                                                       \
        t = w[k - 1];                                                                          \
        if (!(t > (T)0)) use_blocks = 0;                                                       \
    }                                                                                          \
    int64_t cap = 0, head = use_blocks ? G * 64 : 0;                                           \
    if (use_blocks) for (int64_t g = 0; g < G; g++) cap += m[g] >= t ? 64 : 0;                \
    cap += total - head;                                                                       \
    size_t offset = 2 * G * (sizeof(T) + sizeof(int64_t)) + 64;                                \
    mem = scratch_get(offset + cap * (sizeof(T) + sizeof(int64_t)) + 64);                      \
    if (!mem) return -1;                                                                       \
    m = (T*)mem;                                                                               \
    T* v = (T*)(mem + offset);                                                                 \
    int64_t* p = (int64_t*)(mem + offset + cap * sizeof(T) + 16 - (cap * sizeof(T)) % 8);     \
    int64_t c = 0;                                                                             \
    if (use_blocks) {                                                                          \
        for (int64_t g = 0; g < G; g++) {                                                      \
            if (!(m[g] >= t)) continue;                                                        \
            for (int64_t i = g * 64; i < g * 64 + 64; i++) {                                   \
                T x = absval ? (T)fabs((double)a[i]) : a[i];                                   \
                if (x >= t) { v[c] = x; p[c] = i; c++; }                                       \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
    for (int64_t i = head; i < total; i++) {                                                   \
        T x = absval ? (T)fabs((double)a[i]) : a[i];                                           \
        if (x > (T)0 && x >= t) { v[c] = x; p[c] = i; c++; }                                   \
    }                                                                                          \
    nth_largest_##S(v, p, c, k - 1);                                                           \
    vals[1] = v[k - 1]; pos[1] = p[k - 1];                                                     \
    if (two) {                                                                                 \
        int64_t best = 0;                                                                      \
        for (int64_t i = 1; i < k - 1; i++) if (v[i] < v[best]) best = i;                      \
        vals[0] = v[best]; pos[0] = p[best];                                                   \
    } else { vals[0] = vals[1]; pos[0] = pos[1]; }                                             \
    return 0;                                                                                  \
}
SELECT_TOP(f32, float)
SELECT_TOP(f64, double)

/* energy_pass (with the count) then the batch percentile's selection, in one call: with count
   non-zero magnitudes and no NaN, the q-quantile's ranks as torch.quantile takes them (rank =
   q (count - 1) in double, lo = floor, hi = ceil, weight = rank - lo) and select_top's (count -
   lo)-th largest, with hi != lo the one before it. info: [count, nan, weight, two]. Returns 0 (a
   selection made), 1 (none: a NaN or no non-zero value) or -1 (out of memory). */
#define ENERGY_SELECT(S, T)                                                                    \
int energy_select_##S(const T* restrict a, int64_t rows, int64_t n, int absval, int kind, double scale, \
                      double eps, const T* restrict f, int64_t blocks, T* restrict maxima, double q, \
                      T* restrict value, double* restrict info, T* restrict vals, int64_t* restrict pos) { \
    double stats[2];                                                                           \
    energy_pass_##S(a, rows, n, absval, kind, scale, eps, f, blocks, maxima, stats, value);   \
    double count = stats[0], rank = q * (count - 1.0), lo = floor(rank), hi = ceil(rank);     \
    info[0] = count; info[1] = stats[1]; info[2] = rank - lo; info[3] = hi != lo;              \
    if (stats[1] != 0 || count == 0) return 1;                                                 \
    return select_top_##S(a, rows * n, absval, blocks ? maxima : NULL, blocks, (int64_t)(count - lo), \
                          hi != lo, vals, pos);                                                \
}
ENERGY_SELECT(f32, float)
ENERGY_SELECT(f64, double)
"""

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
    first = maps[0]
    if first.device.type != "cpu" or first.dtype not in (torch.float32, torch.float64):
        return False
    if not all(a.dtype == first.dtype and a.device == first.device and a.is_contiguous() for a in maps):
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


def row_sums(a: Tensor, nonnegative: bool, tl1_beta: float | None = None) -> Tensor:
    """``(3, B)`` float64: per sample ``sum|a|``, ``sum a^2`` and, with ``tl1_beta``,
    ``sum |a| / (beta + |a|)`` (each term in ``a``'s dtype, as PyTorch computes it; else 0).
    ``nonnegative``: ``a >= 0`` (a ReLU's output), so ``|a| = a``.

    Example:
        >>> if usable([torch.zeros(1)]):
        ...     print(row_sums(torch.tensor([[1.0, -2.0], [0.0, 3.0]]), False, 1.0))
        ... else:
        ...     print(torch.tensor([[3.0, 3.0], [5.0, 9.0], [0.5 + 2 / 3, 0.75]], dtype=torch.float64))
        tensor([[3.0000, 3.0000],
                [5.0000, 9.0000],
                [1.1667, 0.7500]], dtype=torch.float64)
    """
    rows, n = _rows(a)
    out = torch.empty(rows, 3, dtype=torch.float64)
    fn, scalar = _function("row_sums", a)
    fn(a.data_ptr(), rows, n, int(not nonnegative), int(tl1_beta is not None), scalar(tl1_beta or 0.0),
       out.data_ptr(), torch.get_num_threads())
    return out.t()


def hoyer_grad(a: Tensor, nonnegative: bool, k1: Tensor, k2: Tensor) -> Tensor:
    """``sgn(a) * k1 + a * k2`` per sample (``k1``, ``k2``: ``(B,)`` contiguous, ``a``'s dtype);
    ``nonnegative``: ``a * k2 + k1``."""
    rows, n = _rows(a)
    out = torch.empty_like(a)
    fn, _ = _function("hoyer_grad", a)
    fn(a.data_ptr(), rows, n, int(not nonnegative), k1.data_ptr(), k2.data_ptr(), out.data_ptr(),
       torch.get_num_threads())
    return out


def tl1_grad(a: Tensor, nonnegative: bool, beta: float, k: Tensor) -> Tensor:
    """``sgn(a) * k / (beta + |a|)^2`` per sample (``k``: ``(B,)``); ``nonnegative``: ``k / (beta + a)^2``."""
    rows, n = _rows(a)
    out = torch.empty_like(a)
    fn, scalar = _function("tl1_grad", a)
    fn(a.data_ptr(), rows, n, int(not nonnegative), scalar(beta), k.data_ptr(), out.data_ptr(),
       torch.get_num_threads())
    return out


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
    fn, scalar = _function("energy_grad", a)
    fn(a.data_ptr(), rows, n, int(not nonnegative), int(eps is not None), scalar(scale), scalar(eps or 0.0),
       scalar(rate_limit(scale) if eps is None and a.dtype == torch.float32 else 0.0), f.data_ptr(),
       grad.to(a.dtype).contiguous().data_ptr(), out.data_ptr(), None if dot is None else dot.data_ptr())
    return out, 0.0 if dot is None else dot.item()


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
        stats: ``(L, B, 3)`` float64 :func:`row_sums` of each map (``sum a^2`` of a silent sample set to 1).
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
    ``sum_l w_l mean_b(value_l)``, the values computed from :func:`row_sums` in float64 as the
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
                weights: Sequence[float] | None, computed: LayerValues, grad: float, needs: Sequence[bool]) -> list[Tensor | None]:
    """The gradient of ``grad`` times :func:`layer_values`' total in each map's shape (``None``
    where not ``needs``), in one call: :func:`hoyer_grad` or :func:`tl1_grad` per map with the
    factors of :mod:`snnergy.regularizers.fused` (``l2``: ``a * (2 r / n)``)."""
    outs = [torch.empty_like(a) if need else None for a, need in zip(maps, needs)]
    fn, scalar = _function("layer_grads", maps[0])
    flags = (ctypes.c_int * len(maps))(*[int(not r) for r in nonnegative])
    if fn(kind, len(maps), _addresses(maps), maps[0].shape[0], sizes.data_ptr(), flags, scalar(beta),
          _doubles(weights), computed.stats.data_ptr(), computed.values.data_ptr(),
          scalar(grad), _addresses(outs), torch.get_num_threads()):
        raise MemoryError("layer_grads: out of memory")
    return outs


@dataclass(frozen=True)
class EnergySelection:
    """What :func:`energy_select` found in one map.

    Attributes:
        maxima: The block maxima (``None`` for 0 blocks).
        count: The non-zero count.
        nan: Whether a value is NaN.
        found: Whether a selection was made (no NaN, a non-zero value).
        weight: The quantile's interpolation weight (of the larger order statistic).
        values: The order statistics' magnitudes, descending (two, or one where the ranks coincide).
        positions: Their flat positions.
        value: The per-sample value ``(B,)`` with a ``scale``, else ``None``.
    """

    maxima: Tensor | None
    count: int
    nan: bool
    found: bool
    weight: float
    values: Tensor
    positions: Tensor
    value: Tensor | None


def energy_select(a: Tensor, nonnegative: bool, blocks: int, scale: float | None, f: Tensor, eps: float | None,
                  q: float) -> EnergySelection:
    """:func:`energy_pass` with the count, then the ``q``-quantile's order statistics of the
    non-zero magnitudes as :func:`snnergy.normalization.select_percentile` takes them (ranks as
    ``torch.quantile``'s), by Hoare's selection over the blocks whose maximum can hold them: one
    call per map.

    Example:
        >>> a = torch.tensor([[0.0, 1.0, 3.0, 2.0]])  # the median of 1, 2, 3: rank 1, one order statistic
        >>> if usable([a]):
        ...     found = energy_select(a, True, 0, None, a, None, 0.5)
        ...     print(found.count, found.values.tolist(), found.positions.tolist(), found.weight)
        ... else:
        ...     print(3, [2.0], [3], 0.0)
        3 [2.0] [3] 0.0
    """
    rows, n = _rows(a)
    maxima = torch.empty(blocks, dtype=a.dtype) if blocks else None
    value = torch.empty(rows, dtype=a.dtype) if scale is not None else None
    info = (ctypes.c_double * 4)()
    values = torch.empty(2, dtype=a.dtype)
    positions = torch.empty(2, dtype=torch.int64)
    fn, _ = _function("energy_select", a)
    status = fn(a.data_ptr(), rows, n, int(not nonnegative), int(eps is not None), scale or 1.0, eps or 0.0,
                f.data_ptr(), blocks, None if maxima is None else maxima.data_ptr(), q,
                None if value is None else value.data_ptr(), info, values.data_ptr(), positions.data_ptr())
    if status < 0:
        raise MemoryError("energy_select: out of memory")
    count, nan, weight, two = info
    if not two:
        values, positions = values[1:], positions[1:]
    return EnergySelection(maxima, int(count), bool(nan), status == 0, weight, values, positions, value)


def _load(path: Path) -> ctypes.CDLL:
    return native.load_typed(path, lambda scalar: {
        "row_sums": [_P, _I, _I, _INT, _INT, scalar, _P, _INT],
        "hoyer_grad": [_P, _I, _I, _INT, _P, _P, _P, _INT],
        "tl1_grad": [_P, _I, _I, _INT, scalar, _P, _P, _INT],
        "energy_pass": [_P, _I, _I, _INT, _INT, ctypes.c_double, ctypes.c_double, _P, _I, _P, _P, _P],
        "energy_grad": [_P, _I, _I, _INT, _INT, scalar, scalar, scalar, _P, _P, _P, _P],
        "energy_select": [_P, _I, _I, _INT, _INT, ctypes.c_double, ctypes.c_double, _P, _I, _P, ctypes.c_double,
                          _P, _P, _P, _P],
        "layer_values": [_INT, _I, _P, _I, _P, _P, scalar, _P, _P, _P, _P, _P, _INT],
        "layer_grads": [_INT, _I, _P, _I, _P, _P, scalar, _P, _P, _P, scalar, _P, _INT],
    }, returns={"energy_select": _INT, "layer_values": _INT, "layer_grads": _INT})


_LIBRARY = native.Library("snnergy_penalties", _SOURCE, BUILD_MESSAGE, _load,
                          "the fused penalties' compiled kernels", "PyTorch",
                          "the first fused penalty on a CPU builds them: compiled.prepare()")
