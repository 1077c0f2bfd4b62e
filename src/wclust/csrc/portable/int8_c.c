/* Integer compute on indices, portable C: the activation quantizer every ISA shares, and the
 * scalar GEMV / GEMM every SIMD integer kernel is checked against.
 *
 * The numeric (kernels/int8.py is its float64 reference):
 * - each codebook group g is rounded to int8: s_g = max|c| / 127, q_c = rint(c / s_g) (float32);
 * - each row m of x (a token) to 7-bit unsigned with a zero point, as torch's int8 dynamic
 *   quantization on x86 does (reduce_range: the u8 x s8 pair sums of vpmaddubsw cannot saturate):
 *   lo = min(x, 0), hi = max(x, 0), s_m = (hi - lo) / 127 (1 where hi == lo), z_m = clamp(rint(-lo / s_m),
 *   0, 127), xq = clamp(rint(x * (1 / s_m)) + z_m, 0, 127);
 * - acc = sum_k xq[m, k] q[r, k] and rs = sum_k q[r, k] exactly in int32 (|acc| < 2^31 for in < 2^17);
 * - y[m, r] = (float)(acc - z_m rs) * (s_m * s_g) + bias[r], float32. */
#include <math.h>

#include "../internal.h"

void wc_i8_quantize_x(const float *x, int64_t M, int64_t in, uint8_t *xq, int64_t ldq, float *xs, int32_t *xz) {
    for (int64_t m = 0; m < M; m++) {
        const float *xm = x + m * in;
        float lo = 0.f, hi = 0.f;
        for (int64_t c = 0; c < in; c++) {
            lo = xm[c] < lo ? xm[c] : lo;
            hi = xm[c] > hi ? xm[c] : hi;
        }
        float s = (hi - lo) / 127.f;
        if (!(s > 0.f) || !isfinite(s)) s = 1.f;
        float z = rintf(-lo / s);
        z = z < 0.f ? 0.f : z > 127.f ? 127.f : z;
        const float inv = 1.f / s;
        uint8_t *q = xq + m * ldq;
        for (int64_t c = 0; c < in; c++) {
            float v = rintf(xm[c] * inv) + z;
            q[c] = (uint8_t)(v < 0.f ? 0.f : v > 127.f ? 127.f : v);
        }
        for (int64_t c = in; c < ldq; c++) q[c] = 0;
        xs[m] = s;
        xz[m] = (int32_t)z;
    }
}

void wc_i8_quantize_codebook(const float *cb, int64_t n_groups, int64_t K, int8_t *qtab, float *qs) {
    for (int64_t g = 0; g < n_groups; g++) {
        const float *c = cb + g * K;
        float amax = 0.f;
        for (int64_t i = 0; i < K; i++) amax = fabsf(c[i]) > amax ? fabsf(c[i]) : amax;
        float s = amax / 127.f;
        if (!(s > 0.f) || !isfinite(s)) s = 1.f;
        int8_t *q = qtab + g * 256;
        for (int i = 0; i < 256; i++) {
            float v = i < K ? rintf(c[i] / s) : 0.f;
            q[i] = (int8_t)(v < -127.f ? -127.f : v > 127.f ? 127.f : v);
        }
        qs[g] = s;
    }
}

/* rows [r0, r1): every row of x (xq rows of ldx bytes, natural order) */
void wc_i8_gemv_c(const job_t *j, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
        const int64_t g = r / j->group_size;
        const int8_t *t = j->qtab + g * 256;
        int32_t rs = 0;
        for (int64_t c = 0; c < j->in; c++) rs += t[idx_at(j, r, c)];
        for (int64_t m = 0; m < j->M; m++) {
            const uint8_t *xq = j->xq + m * j->ldx;
            int32_t acc = 0;
            for (int64_t c = 0; c < j->in; c++) acc += (int32_t)xq[c] * t[idx_at(j, r, c)];
            j->y[m * j->out + r] = wc_i8_out(j, m, g, acc, rs, r);
        }
    }
}
