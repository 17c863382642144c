"""The C source of the fused penalties' compiled kernels (:mod:`snnergy.regularizers.compiled`
builds it, after :data:`snnergy.native.VECTORS`, and documents each kernel's Python wrapper).

Kept apart from the wrappers so that each file reads as one language. Every kernel exists for
float32 (``_f32``) and float64 (``_f64``) through one macro per kernel: the per-layer sums and
gradients (``row_sums``, ``hoyer_grad``, ``tl1_grad``, ``layer_values``, ``layer_grads``), then
the energy-aware pass, gradient and selection (``energy_pass``, ``energy_grad``, ``select_top``,
``energy_grads``, ``energy_select``, ``energy_layers``, ``energy_values``). Compiled without fused multiply-adds or fast-math (:data:`snnergy.native.FLAGS`).
"""

SOURCE = r"""
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
/* x > y ? x : y and x < y ? x : y on lanes (y where unordered): one instruction on x86
   (maxps / minps compute exactly these), else the masks. */
#if defined(__AVX__)
#include <immintrin.h>
#define VMAX_f32(x, y) ((vf)_mm256_max_ps((__m256)(x), (__m256)(y)))
#define VMIN_f32(x, y) ((vf)_mm256_min_ps((__m256)(x), (__m256)(y)))
#else
#define VMAX_f32(x, y) pick_f32((x) > (y), (x), (y))
#define VMIN_f32(x, y) pick_f32((x) < (y), (x), (y))
#endif
#if defined(__AVX512F__)
#define VMAX_f64(x, y) ((vd)_mm512_max_pd((__m512d)(x), (__m512d)(y)))
#define VMIN_f64(x, y) ((vd)_mm512_min_pd((__m512d)(x), (__m512d)(y)))
#else
#define VMAX_f64(x, y) pick_f64((x) > (y), (x), (y))
#define VMIN_f64(x, y) pick_f64((x) < (y), (x), (y))
#endif
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
   c2 = -2 r v / s2 (v the sample's value, in double; c1, c2 rounded to T). coeffs (L x 2 x rows,
   or NULL): every layer's per-sample factors (k, or c1 then c2), written whether or not its map's
   gradient is (a handed-off map: threshold_kernels adds them in the activation's backward). */
#define LAYER_GRADS(S, T)                                                                      \
int layer_grads_##S(int kind, int64_t L, const int64_t* restrict maps, int64_t rows,          \
                    const int64_t* restrict ns, const int* restrict absval, T beta,            \
                    const double* restrict weights, const double* restrict stats,              \
                    const T* restrict values, T grad, const int64_t* restrict outs,              \
                    T* restrict coeffs, int threads) {                                         \
    T* k = malloc(2 * rows * sizeof(T));                                                       \
    if (!k) return -1;                                                                         \
    for (int64_t l = 0; l < L; l++) {                                                          \
        if (!outs[l] && !coeffs) continue;                                                     \
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
        if (coeffs) memcpy(coeffs + 2 * rows * l, k, (kind < 2 ? 1 : 2) * rows * sizeof(T));     \
        if (!outs[l]) continue;                                                                \
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
     W lanes in T within each block of 64 flat positions (its 8 chunks pairwise where the block
     lies in the row, else in order), those partial sums added lane by lane in double, then the
     lanes; kind 2 the exact count sum f [a != 0], each f added in double lane by lane, then the
     lanes (exact for integer fan-outs).
   Rows whose length is a multiple of W are read once for all three (a chunk of W then lies in
   one block); otherwise the maxima and the count take their own loops. */
/* The seven (stats, blocks, value) cases of one (kind, absval) pair: K = kind * 16 + absval * 8. */
#define ENERGY_CASE(S, K, F)                                                                    \
    case (K) + (F): energy_rows_##S(a, rows, n, head, f, maxima, value, &zeros, &nans, ts, tshift, scale, \
                                    (K) / 16, ((K) & 8) != 0, ((F) & 4) != 0, ((F) & 2) != 0, (F) & 1); break;
#define ENERGY_CASES(S, K)                                                                      \
    ENERGY_CASE(S, K, 1) ENERGY_CASE(S, K, 2) ENERGY_CASE(S, K, 3) ENERGY_CASE(S, K, 4)         \
    ENERGY_CASE(S, K, 5) ENERGY_CASE(S, K, 6) ENERGY_CASE(S, K, 7)
#define ENERGY_PASS(S, T, I)                                                                   \
static inline __typeof__(load_##S((T*)0)) energy_term_##S(__typeof__(load_##S((T*)0)) x,       \
        __typeof__(load_##S((T*)0)) fw, int kind, int absval, T scale, T shift) {              \
    typedef __typeof__(load_##S((T*)0)) V;                                                     \
    V none = {0};                                                                              \
    if (kind == 0) return VMIN_##S(none + scale, x) * fw;  /* min(a, scale) f */             \
    V m = absval ? abs_##S(x) : x;                                                             \
    return fw * m / (m + shift);                                                               \
}                                                                                              \
static inline __typeof__(load_##S((T*)0)) vmax_##S(__typeof__(load_##S((T*)0)) x,             \
                                                   __typeof__(load_##S((T*)0)) y) {            \
    return VMAX_##S(x, y);                                                                     \
}                                                                                              \
/* The fused loop, every flag a constant of its caller (one loop compiled per combination): a  \
   whole block of 64 values in a row takes its eight chunks at once (the maximum as a tree, the \
   value's eight terms added pairwise); a block split by a row's end or start takes them one by \
   one, in order. */                                                                           \
static inline __attribute__((always_inline)) void energy_rows_##S(                             \
        const T* restrict a, int64_t rows, int64_t n, int64_t head, const T* restrict f,       \
        T* restrict maxima, T* restrict value, I* zc, I* nc, T ts, T tshift, double scale,     \
        const int KIND, const int ABS, const int STATS, const int BLOCKS, const int VALUE) {   \
    typedef __typeof__(load_##S(a)) V;                                                         \
    V vnone = {0}, bm = vnone;                                                                 \
    I zeros = *zc, nans = *nc;                                                                 \
    for (int64_t b = 0; b < rows; b++) {                                                       \
        const T* r = a + b * n;                                                                \
        vd t = {0};                                                                            \
        for (int64_t i = 0; i < n;) {                                                          \
            int64_t p = b * n + i, e = i + (64 - (p & 63));  /* to the block's end */          \
            if (e > n) e = n;                                                                  \
            int in_head = BLOCKS && p < head;                                                  \
            V part = vnone;                                                                    \
            if (e - i == 64) {  /* a whole block: p is its start */                            \
                V x[8], m[8];                                                                  \
                for (int u = 0; u < 8; u++) {                                                  \
                    x[u] = load_##S(r + i + u * W);                                            \
                    if (STATS) { zeros -= (I)(x[u] == (T)0); nans -= (I)(x[u] != x[u]); }      \
                    m[u] = ABS ? abs_##S(x[u]) : x[u];                                         \
                }                                                                              \
                if (VALUE && KIND == 2)  /* the indicator: f where x != 0, in double */        \
                    for (int u = 0; u < 8; u++)                                                \
                        t += wide_##S(pick_##S(x[u] != (T)0, load_##S(f + i + u * W), vnone));  \
                else if (VALUE) {  /* the eight terms added pairwise */                        \
                    V v[8];                                                                    \
                    for (int u = 0; u < 8; u++)                                                \
                        v[u] = energy_term_##S(x[u], load_##S(f + i + u * W), KIND, ABS, ts, tshift); \
                    part = ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));  \
                }                                                                              \
                if (in_head) {                                                                 \
                    V m01 = vmax_##S(m[0], m[1]), m23 = vmax_##S(m[2], m[3]);                  \
                    V m45 = vmax_##S(m[4], m[5]), m67 = vmax_##S(m[6], m[7]);                  \
                    maxima[p >> 6] = hmax_##S(vmax_##S(vmax_##S(m01, m23), vmax_##S(m45, m67))); \
                }                                                                              \
            } else {                                                                           \
                for (int64_t j = i; j < e; j += W) {                                           \
                    V x = load_##S(r + j);                                                     \
                    if (STATS) { zeros -= (I)(x == (T)0); nans -= (I)(x != x); }               \
                    if (in_head) bm = vmax_##S(ABS ? abs_##S(x) : x, bm);                      \
                    if (VALUE && KIND == 2) t += wide_##S(pick_##S(x != (T)0, load_##S(f + j), vnone)); \
                    else if (VALUE) part += energy_term_##S(x, load_##S(f + j), KIND, ABS, ts, tshift); \
                }                                                                              \
                if (in_head && ((p + e - i) & 63) == 0) {  /* the block ends here */           \
                    maxima[p >> 6] = hmax_##S(bm);                                             \
                    bm = vnone;                                                                \
                }                                                                              \
            }                                                                                  \
            if (VALUE && KIND != 2) t += wide_##S(part);                                       \
            i = e;                                                                             \
        }                                                                                      \
        if (VALUE) {                                                                           \
            double sum = hsum(t);                                                              \
            value[b] = (T)(KIND == 0 ? sum / scale : sum);                                     \
        }                                                                                      \
    }                                                                                          \
    *zc = zeros; *nc = nans;                                                                   \
}                                                                                              \
void energy_pass_##S(const T* restrict a, int64_t rows, int64_t n, int absval, int kind, double scale, \
                     double eps, const T* restrict f, int64_t blocks, T* restrict maxima,     \
                     double* restrict stats, T* restrict value) {                              \
    typedef __typeof__(load_##S(a)) V;                                                         \
    V vnone = {0};                                                                             \
    I zeros = {0}, nans = {0};                                                                 \
    int64_t total = rows * n, head = blocks * 64, zero = 0, nan = 0;                           \
    int fused = n % W == 0;                                                                    \
    T ts = (T)scale, tshift = (T)(eps * scale);                                                \
    if (fused && (value || stats || blocks)) {                                                 \
        int flags = kind * 16 + (absval != 0) * 8 + (stats != NULL) * 4 + (blocks != 0) * 2 + (value != NULL); \
        switch (flags) {                                                                       \
        ENERGY_CASES(S, 0) ENERGY_CASES(S, 8) ENERGY_CASES(S, 16) ENERGY_CASES(S, 24)          \
        ENERGY_CASES(S, 32) ENERGY_CASES(S, 40)                                                \
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

/* energy_grad for each of L maps (maps[l]: rows x ns[l]; scales[l] and limits[l] in T, the
   fan-outs fanouts[l], outs[l] its gradient, 0: none), one call for every layer; grad (rows) in T.
   With factors[l] != 0 the gradient through the scale is added as fused_energy._add_scale_gradient
   adds it: g = (-moment / scale) * factor in double, its shares g * w and g * (1 - w) (npos[l] 2;
   or g alone) rounded to T, times sgn(a) (absval), added at positions pos[2l], pos[2l + 1]. */
#define ENERGY_GRADS(S, T)                                                                     \
void energy_grads_##S(int64_t L, const int64_t* restrict maps, int64_t rows, const int64_t* restrict ns, \
                      const int* restrict absval, int kind, const T* restrict scales, T eps,   \
                      const T* restrict limits, const int64_t* restrict fanouts, const T* restrict grad, \
                      const int64_t* restrict outs, const double* restrict factors,           \
                      const double* restrict weights, const int64_t* restrict pos, const int* restrict npos) { \
    for (int64_t l = 0; l < L; l++) {                                                          \
        if (!outs[l]) continue;                                                                \
        const T* a = (const T*)maps[l];                                                        \
        T* o = (T*)outs[l];                                                                    \
        double moment = 0;                                                                     \
        energy_grad_##S(a, rows, ns[l], absval[l], kind, scales[l], eps, limits[l], (const T*)fanouts[l], \
                        grad, o, factors[l] != 0 ? &moment : NULL);                            \
        if (factors[l] == 0) continue;                                                         \
        double g = (-moment / (double)scales[l]) * factors[l];                                 \
        double shares[2] = {g * weights[l], g * (1.0 - weights[l])};                           \
        if (npos[l] == 1) shares[0] = g;                                                       \
        for (int j = 0; j < npos[l]; j++) {                                                    \
            int64_t p = pos[2 * l + j];                                                        \
            T c = (T)shares[j];                                                                \
            if (absval[l]) c = c * SGN(T, a[p]);                                               \
            o[p] = o[p] + c;                                                                   \
        }                                                                                      \
    }                                                                                          \
}
ENERGY_GRADS(f32, float)
ENERGY_GRADS(f64, double)

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

/* energy_select for each of L maps (maps[l]: rows x ns[l], its fan-out fanouts[l], blocks[l]
   block maxima written from maxima + the blocks before it), with one set of outputs: values
   (L x rows, or NULL: none; none for a layer whose scales[l] is NaN), info (L x 4), vals and pos
   (L x 2), found[l] (1: a selection made), and, when every scale is given, total (rows): the
   layers' values added in T in layer order. Returns 0, or -1 (out of memory). */
#define ENERGY_LAYERS(S, T)                                                                    \
static void layer_total_##S(int64_t L, int64_t rows, const T* restrict values, T* restrict total) { \
    for (int64_t b = 0; b < rows; b++) {                                                       \
        T t = values[b];                                                                       \
        for (int64_t l = 1; l < L; l++) t = t + values[l * rows + b];                          \
        total[b] = t;                                                                          \
    }                                                                                          \
}                                                                                              \
int energy_layers_##S(int64_t L, const int64_t* restrict maps, int64_t rows, const int64_t* restrict ns, \
                      const int* restrict absval, int kind, double eps, const int64_t* restrict fanouts, \
                      const int64_t* restrict blocks, T* restrict maxima, const double* restrict scales, \
                      double q, T* restrict values, double* restrict info, T* restrict vals,   \
                      int64_t* restrict pos, int* restrict found, T* restrict total) {          \
    int every = 1;                                                                             \
    for (int64_t l = 0; l < L; l++) {                                                          \
        int known = scales[l] == scales[l];                                                    \
        every &= known;                                                                        \
        int status = energy_select_##S((const T*)maps[l], rows, ns[l], absval[l], kind,        \
                                       known ? scales[l] : 1.0, eps, (const T*)fanouts[l], blocks[l], \
                                       blocks[l] ? maxima : NULL, q, known && values ? values + l * rows : NULL, \
                                       info + 4 * l, vals + 2 * l, pos + 2 * l);              \
        if (status < 0) return -1;                                                             \
        found[l] = status == 0;                                                                \
        maxima += blocks[l];                                                                   \
    }                                                                                          \
    if (every && total) layer_total_##S(L, rows, values, total);                               \
    return 0;                                                                                  \
}                                                                                              \
/* energy_pass's value alone for each of L maps with its scale scales[l] (values: L x rows),   \
   and total (rows): the layers' values added in T in layer order. */                          \
void energy_values_##S(int64_t L, const int64_t* restrict maps, int64_t rows, const int64_t* restrict ns, \
                       const int* restrict absval, int kind, double eps, const int64_t* restrict fanouts, \
                       const double* restrict scales, T* restrict values, T* restrict total) { \
    for (int64_t l = 0; l < L; l++)                                                            \
        energy_pass_##S((const T*)maps[l], rows, ns[l], absval[l], kind, scales[l], eps,       \
                        (const T*)fanouts[l], 0, NULL, NULL, values + l * rows);               \
    layer_total_##S(L, rows, values, total);                                                   \
}
ENERGY_LAYERS(f32, float)
ENERGY_LAYERS(f64, double)
"""
