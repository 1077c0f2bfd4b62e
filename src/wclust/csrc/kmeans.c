/* Exact weighted 1-D k-means on a histogram, and nearest-centroid assignment.
 *
 * Plain C, no Python or PyTorch API: called through ctypes (wclust/_native.py).
 *
 * Values are binned by an order-preserving key: the float's bits mapped to an unsigned integer
 * that sorts like the float, shifted right by WC_KEY_SHIFT (10 mantissa bits kept, as fp16 has,
 * but over float32's whole range). Each bin carries exact moments of the values that fall in it
 * (sum of weights, weighted sum, weighted sum of squares), so the dynamic program below returns
 * the optimal SSE, measured on the original values, over all partitions into contiguous runs of
 * bins.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wclust.h"

#define WC_KEY_SHIFT 13
#define WC_NKEYS (1u << (32 - WC_KEY_SHIFT))

static inline uint32_t f2sortable(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static inline float sortable2f(uint32_t s) {
    uint32_t u = (s & 0x80000000u) ? (s & 0x7fffffffu) : ~s;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Not inf or NaN (exponent bits not all set), decided on the bits. */
static inline int finite_f32(float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    return (u & 0x7f800000u) != 0x7f800000u;
}

int wc_key_shift(void) { return WC_KEY_SHIFT; }
int64_t wc_nkeys(void) { return (int64_t)WC_NKEYS; }

/* Add n values (and optional per-value weights, NULL = 1) to dense per-key moment arrays of
 * length wc_nkeys(). Returns the number of non-finite values seen (they are not added). */
int64_t wc_hist_accumulate(const float *x, const float *w, int64_t n, double *c0, double *c1,
                           double *c2) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        if (!finite_f32(v)) {
            bad++;
            continue;
        }
        uint32_t key = f2sortable(v) >> WC_KEY_SHIFT;
        double wi = w ? (double)w[i] : 1.0;
        double dv = (double)v;
        c0[key] += wi;
        c1[key] += wi * dv;
        c2[key] += wi * dv * dv;
    }
    return bad;
}

/* Move the bins with positive weight, in value order, to the front of c0/c1/c2.
 * Returns how many there are. */
int64_t wc_hist_compact(double *c0, double *c1, double *c2) {
    int64_t m = 0;
    for (int64_t k = 0; k < (int64_t)WC_NKEYS; k++) {
        if (c0[k] > 0.0) {
            c0[m] = c0[k];
            c1[m] = c1[k];
            c2[m] = c2[k];
            m++;
        }
    }
    return m;
}

typedef struct {
    const double *p0, *p1, *p2; /* prefix sums, length m + 1 */
    const double *prev;         /* D_{l-1}[i] */
    double *cur;                /* D_l[j] */
    int32_t *arg;               /* argmin row for this layer */
    const int32_t *prev_arg;    /* argmin row of layer l-1 (NULL for layer 2): a lower bound */
    int64_t prev_jhi;           /* prev_arg is defined for j <= prev_jhi */
} dp_ctx;

static inline double seg_cost(const dp_ctx *c, int64_t i, int64_t j) {
    double w = c->p0[j] - c->p0[i];
    double s = c->p1[j] - c->p1[i];
    double q = c->p2[j] - c->p2[i];
    double v = q - s * s / w;
    return v > 0.0 ? v : 0.0;
}

/* Divide and conquer over j in [lo, hi] with the leftmost argmin known to lie in
 * [optlo, opthi] (it is monotone in j because the cost is a Monge array). */
static void dc(const dp_ctx *c, int64_t lo, int64_t hi, int64_t optlo, int64_t opthi) {
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int64_t end = opthi < mid - 1 ? opthi : mid - 1;
        /* with one cluster more, the last cluster starts no earlier (Knuth-Yao bound) */
        int64_t start = optlo;
        if (c->prev_arg && mid <= c->prev_jhi && c->prev_arg[mid] > start) start = c->prev_arg[mid];
        if (start > end) start = end;
        double best = INFINITY;
        int64_t bi = start;
        for (int64_t i = start; i <= end; i++) {
            double v = c->prev[i] + seg_cost(c, i, mid);
            if (v < best) {
                best = v;
                bi = i;
            }
        }
        c->cur[mid] = best;
        c->arg[mid] = (int32_t)bi;
        /* recurse on the smaller half, loop on the other: bounded stack depth */
        if (mid - lo < hi - mid) {
            dc(c, lo, mid - 1, optlo, bi);
            lo = mid + 1;
            optlo = bi;
        } else {
            dc(c, mid + 1, hi, bi, opthi);
            hi = mid - 1;
            opthi = bi;
        }
    }
}

/* Optimal partition of m weighted bins (moments w, s1, s2, in value order, all w > 0) into
 * k' = min(k, m) contiguous clusters. Writes the k' centroids (ascending) to centroids and
 * returns the optimal SSE, or -1 on allocation failure. */
double wc_kmeans_dp(const double *w, const double *s1, const double *s2, int64_t m, int k,
                    double *centroids) {
    if (m <= 0 || k <= 0) return -1.0;
    if (k > m) k = (int)m;
    double *p = (double *)malloc(sizeof(double) * 3 * (size_t)(m + 1));
    double *d0 = (double *)malloc(sizeof(double) * (size_t)(m + 1));
    double *d1 = (double *)malloc(sizeof(double) * (size_t)(m + 1));
    int32_t *arg = (int32_t *)malloc(sizeof(int32_t) * (size_t)k * (size_t)(m + 1));
    if (!p || !d0 || !d1 || !arg) {
        free(p); free(d0); free(d1); free(arg);
        return -1.0;
    }
    double *p0 = p, *p1 = p + (m + 1), *p2 = p + 2 * (m + 1);
    p0[0] = p1[0] = p2[0] = 0.0;
    for (int64_t i = 0; i < m; i++) {
        p0[i + 1] = p0[i] + w[i];
        p1[i + 1] = p1[i] + s1[i];
        p2[i + 1] = p2[i] + s2[i];
    }
    dp_ctx c = {p0, p1, p2, d0, d1, arg, NULL, 0};
    /* layer 1: one cluster over bins [0, j) */
    for (int64_t j = 1; j <= m; j++) {
        d0[j] = seg_cost(&c, 0, j);
        arg[j] = 0;
    }
    for (int l = 2; l <= k; l++) {
        c.prev = (l % 2 == 0) ? d0 : d1;
        c.cur = (l % 2 == 0) ? d1 : d0;
        c.arg = arg + (size_t)(l - 1) * (size_t)(m + 1);
        c.prev_arg = (l > 2) ? arg + (size_t)(l - 2) * (size_t)(m + 1) : NULL;
        c.prev_jhi = m - (k - l + 1);
        /* only j that leave at least one bin per remaining cluster matter */
        int64_t jhi = m - (k - l);
        if (l == k) {
            int64_t j = m;
            double best = INFINITY;
            int64_t bi = l - 1;
            for (int64_t i = l - 1; i < j; i++) {
                double v = c.prev[i] + seg_cost(&c, i, j);
                if (v < best) { best = v; bi = i; }
            }
            c.cur[j] = best;
            c.arg[j] = (int32_t)bi;
        } else {
            dc(&c, l, jhi, l - 1, jhi - 1);
        }
    }
    double *last = (k % 2 == 1) ? d0 : d1;
    double total = last[m];
    int64_t j = m;
    for (int l = k; l >= 1; l--) {
        int64_t i = (l == 1) ? 0 : arg[(size_t)(l - 1) * (size_t)(m + 1) + j];
        centroids[l - 1] = (p1[j] - p1[i]) / (p0[j] - p0[i]);
        j = i;
    }
    free(p); free(d0); free(d1); free(arg);
    return total;
}

/* lut[key] = number of decision bounds strictly below the smallest float of that key's bin. */
void wc_build_lut(const float *bounds, int nb, uint8_t *lut) {
    int j = 0;
    for (uint32_t key = 0; key < WC_NKEYS; key++) {
        float lo = sortable2f(key << WC_KEY_SHIFT);
        while (j < nb && bounds[j] < lo) j++;
        lut[key] = (uint8_t)j;
    }
}

/* Nearest-centroid index of every value: the number of bounds strictly below it (bounds are the
 * midpoints of the sorted codebook). Also returns the weighted and unweighted squared error and
 * the sum of squares. Non-finite values are counted in the return value and get index 0. */
int64_t wc_assign(const float *x, const float *w, int64_t n, const uint8_t *lut,
                  const float *bounds, int nb, const float *codebook, uint8_t *out,
                  double *sums /* [sse_weighted, sse, sumsq] */) {
    double sw = 0.0, se = 0.0, sq = 0.0;
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        if (!finite_f32(v)) {
            bad++;
            out[i] = 0;
            continue;
        }
        int j = lut[f2sortable(v) >> WC_KEY_SHIFT];
        while (j < nb && v > bounds[j]) j++;
        out[i] = (uint8_t)j;
        double e = (double)v - (double)codebook[j];
        double e2 = e * e;
        se += e2;
        sw += w ? (double)w[i] * e2 : e2;
        sq += (double)v * (double)v;
    }
    sums[0] += sw;
    sums[1] += se;
    sums[2] += sq;
    return bad;
}
