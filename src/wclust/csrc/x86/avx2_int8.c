/* Integer compute on indices, AVX2 (the numeric: portable/int8_c.c; no VNNI needed).
 *
 * Lookups in registers: the int8 codebook of a group is cut into 16-entry tables, each held in
 * both 128-bit lanes of a ymm; vpshufb looks 32 indices up in one table at once, and for K > 16 a
 * tree of vpblendvb picks each byte's table by the index's bits 4, 5, 6, 7 (K <= 32: 2 lookups and
 * 1 blend per 32 weights; K <= 64: 4 and 3; K <= 256: 16 and 15).
 * Products: vpmaddubsw (7-bit unsigned x times int8 weight, pairs summed in int16: at most
 * 2 * 127 * 128 = 32512, so never saturated) then vpmaddwd by ones (int32), added in int32.
 * - GEMV (few rows of x, bandwidth-bound): 32 weights a step (8-bit indices) or 64 (4-bit: the
 *   low and high nibbles of 32 index bytes, the even and odd weights: x is permuted per block of
 *   64 to match by the caller); x comes with its zero point taken off (xq - z, int8) and as
 *   |xq - z|, so vpsignb moves each sign onto the weight and no row sum of the weights is needed.
 * - GEMM (many rows): per panel of 16 output rows, the rows are looked up into a buffer, their
 *   sums taken, and interleaved 4 features at a time into the panel [in / 4][16 rows][4 bytes]
 *   (in L2); an I8_MR x 16 microkernel broadcasts 4 bytes of each of I8_MR rows of x and multiplies
 *   them with the panel's two 32-byte vectors (2 I8_MR accumulators). W is never materialized beyond a panel. */
#include "../internal.h"

#ifdef WC_X86
#include <math.h>
#include <stdlib.h>

#define AI inline __attribute__((always_inline))

/* the 16-entry tables of group g (nt = K rounded up to 16, / 16) */
T256 static AI void load_tables(const job_t *j, int64_t g, __m256i *T, int nt) {
    const int8_t *q = j->qtab + g * 256;
    for (int i = 0; i < nt; i++) T[i] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(q + 16 * i)));
}

static int n_tables(int K) { return K <= 16 ? 1 : K <= 32 ? 2 : K <= 64 ? 4 : K <= 128 ? 8 : 16; }

/* the int8 weights of 32 index bytes v (each < 16 * nt) */
T256 static AI __m256i lookup(const __m256i *T, __m256i v, const int nt) {
    const __m256i lo = _mm256_and_si256(v, _mm256_set1_epi8(15));
    if (nt == 1) return _mm256_shuffle_epi8(T[0], lo);
    __m256i r[16];
    for (int i = 0; i < nt; i++) r[i] = _mm256_shuffle_epi8(T[i], lo);
    int n = nt;
    for (int bit = 4; n > 1; bit++, n /= 2) {
        const __m256i sel = bit == 7 ? v : _mm256_slli_epi16(v, 7 - bit); /* index bit -> the byte's top bit */
        for (int i = 0; i < n / 2; i++) r[i] = _mm256_blendv_epi8(r[2 * i], r[2 * i + 1], sel);
    }
    return r[0];
}

/* the int8 weights of 64 4-bit indices (32 bytes at p): even features in *we, odd in *wo */
T256 static AI void nibbles(__m256i t, const uint8_t *p, __m256i *we, __m256i *wo) {
    const __m256i b = _mm256_loadu_si256((const __m256i *)p), m15 = _mm256_set1_epi8(15);
    *we = _mm256_shuffle_epi8(t, _mm256_and_si256(b, m15));
    *wo = _mm256_shuffle_epi8(t, _mm256_and_si256(_mm256_srli_epi16(b, 4), m15));
}

T256 static AI int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

T256 static AI int64_t hsum_i64(__m256i v) {
    __m128i s = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    return _mm_cvtsi128_si64(s) + _mm_extract_epi64(s, 1);
}

/* acc += x (u8) . w (s8), 32 products summed into 8 int32 */
T256 static AI __m256i dot32(__m256i acc, __m256i x, __m256i w, __m256i ones) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(x, w), ones));
}

/* ---- activations -------------------------------------------------------------------------- */
/* wc_i8_quantize_x with vector rounding (vroundps to nearest even = rintf): the same bytes */
T256 void wc_i8_quantize_x_avx2(const float *x, int64_t M, int64_t in, uint8_t *xq, int64_t ldq, float *xs,
                                int32_t *xz) {
    for (int64_t m = 0; m < M; m++) {
        const float *xm = x + m * in;
        __m256 vlo = _mm256_setzero_ps(), vhi = vlo;
        int64_t c = 0;
        for (; c + 8 <= in; c += 8) {
            const __m256 v = _mm256_loadu_ps(xm + c);
            vlo = _mm256_min_ps(vlo, v); /* NaN in v: the min keeps vlo (as the scalar comparison) */
            vhi = _mm256_max_ps(vhi, v);
        }
        float l8[8], h8[8], lo = 0.f, hi = 0.f;
        _mm256_storeu_ps(l8, vlo); _mm256_storeu_ps(h8, vhi);
        for (int e = 0; e < 8; e++) { lo = l8[e] < lo ? l8[e] : lo; hi = h8[e] > hi ? h8[e] : hi; }
        for (; c < in; c++) { lo = xm[c] < lo ? xm[c] : lo; hi = xm[c] > hi ? xm[c] : hi; }
        float s = (hi - lo) / 127.f;
        if (!(s > 0.f) || !isfinite(s)) s = 1.f;
        float z = rintf(-lo / s);
        z = z < 0.f ? 0.f : z > 127.f ? 127.f : z;
        const float inv = 1.f / s;
        const __m256 vinv = _mm256_set1_ps(inv), vz = _mm256_set1_ps(z), v0 = _mm256_setzero_ps(),
                     v127 = _mm256_set1_ps(127.f);
        uint8_t *q = xq + m * ldq;
        for (c = 0; c + 32 <= in; c += 32) {
            __m256i r[4];
            for (int k = 0; k < 4; k++) {
                __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(xm + c + 8 * k), vinv),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                v = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(v, vz), v0), v127);
                r[k] = _mm256_cvtps_epi32(v);
            }
            /* packs work within 128-bit lanes: a final dword permute restores the order */
            const __m256i p01 = _mm256_packs_epi32(r[0], r[1]), p23 = _mm256_packs_epi32(r[2], r[3]);
            const __m256i b = _mm256_packus_epi16(p01, p23);
            _mm256_storeu_si256((__m256i *)(q + c),
                                _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
        }
        for (; c < in; c++) {
            float v = rintf(xm[c] * inv) + z;
            q[c] = (uint8_t)(v < 0.f ? 0.f : v > 127.f ? 127.f : v);
        }
        for (c = in; c < ldq; c++) q[c] = 0;
        xs[m] = s;
        xz[m] = (int32_t)z;
    }
}

/* ---- GEMV ---------------------------------------------------------------------------------- */
/* acc += sx (the zero-point-free x, s8) . w (s8), as |sx| (u8) . sign(w, sx): 32 products into 8 int32 */
T256 static AI __m256i sdot32(__m256i acc, __m256i ax, __m256i sx, __m256i w, __m256i ones) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(w, sx)), ones));
}

/* one output row r against rows m0 .. m0 + mb - 1 of x: acc[m] = sum (xq - z) q, exactly. The
 * caller gives x as sx = xq - z (int8, j->xq) and |sx| (j->xa), so no row sum of the weights is
 * needed (|sx| <= 127 and |q| <= 127: the pair sums of vpmaddubsw stay below 32767). */
T256 static AI void gemv_row(const job_t *j, const __m256i *T, const int nt, int64_t r, int64_t m0, const int mb,
                             int32_t *acc_out) {
    const uint8_t *row = j->idx + r * j->rowbytes;
    const __m256i ones = _mm256_set1_epi16(1), z = _mm256_setzero_si256();
    __m256i acc[4] = {z, z, z, z};
    int64_t c = 0;
    const uint8_t *s0 = j->xq + m0 * j->ldx, *a0 = j->xa + m0 * j->ldx;
    if (j->index_bits == 4) {
        for (; c + 64 <= j->in; c += 64) {
            __m256i we, wo;
            nibbles(T[0], row + c / 2, &we, &wo);
            for (int m = 0; m < mb; m++) { /* even features, then odd (x permuted to match) */
                const uint8_t *sm = s0 + m * j->ldx + c, *am = a0 + m * j->ldx + c;
                acc[m] = sdot32(acc[m], _mm256_loadu_si256((const __m256i *)am),
                                _mm256_loadu_si256((const __m256i *)sm), we, ones);
                acc[m] = sdot32(acc[m], _mm256_loadu_si256((const __m256i *)(am + 32)),
                                _mm256_loadu_si256((const __m256i *)(sm + 32)), wo, ones);
            }
        }
    } else {
        for (; c + 32 <= j->in; c += 32) {
            const __m256i w = lookup(T, _mm256_loadu_si256((const __m256i *)(row + c)), nt);
            for (int m = 0; m < mb; m++)
                acc[m] = sdot32(acc[m], _mm256_loadu_si256((const __m256i *)(a0 + m * j->ldx + c)),
                                _mm256_loadu_si256((const __m256i *)(s0 + m * j->ldx + c)), w, ones);
        }
    }
    const int8_t *t = j->qtab + (r / j->group_size) * 256;
    int32_t tail[4] = {0, 0, 0, 0};
    for (int64_t cc = c; cc < j->in; cc++) { /* the tail: natural order */
        const int w = t[idx_at(j, r, cc)];
        for (int m = 0; m < mb; m++) tail[m] += (int32_t)(int8_t)s0[m * j->ldx + cc] * w;
    }
    for (int m = 0; m < mb; m++) acc_out[m] = hsum_i32(acc[m]) + tail[m];
}

T256 static void gemv_rows(const job_t *j, int64_t r0, int64_t r1, const int nt) {
    __m256i T[16];
    for (int i = 0; i < 16; i++) T[i] = _mm256_setzero_si256();
    int64_t g_loaded = -1;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t g = r / j->group_size;
        if (g != g_loaded) { load_tables(j, g, T, nt); g_loaded = g; }
        for (int64_t m0 = 0; m0 < j->M; m0 += 4) {
            const int mb = j->M - m0 < 4 ? (int)(j->M - m0) : 4;
            int32_t acc[4];
            switch (mb) { /* constant row counts: the accumulators stay in registers */
            case 1: gemv_row(j, T, nt, r, m0, 1, acc); break;
            case 2: gemv_row(j, T, nt, r, m0, 2, acc); break;
            case 3: gemv_row(j, T, nt, r, m0, 3, acc); break;
            default: gemv_row(j, T, nt, r, m0, 4, acc); break;
            }
            for (int m = 0; m < mb; m++) j->y[(m0 + m) * j->out + r] = wc_i8_out(j, m0 + m, g, acc[m], 0, r);
        }
    }
}

T256 void wc_i8_gemv_avx2(const job_t *j, int64_t r0, int64_t r1) {
    switch (j->index_bits == 4 ? 1 : n_tables(j->K)) {
    case 1: gemv_rows(j, r0, r1, 1); break;
    case 2: gemv_rows(j, r0, r1, 2); break;
    case 4: gemv_rows(j, r0, r1, 4); break;
    case 8: gemv_rows(j, r0, r1, 8); break;
    default: gemv_rows(j, r0, r1, 16); break;
    }
}

/* ---- GEMM ---------------------------------------------------------------------------------- */
#define NR 16 /* output rows per panel */

/* row r's int8 weights into buf[0, in), natural order (the caller zeroes the padding) */
T256 static AI void lookup_row(const job_t *j, const __m256i *T, const int nt, int64_t r, int8_t *buf) {
    const uint8_t *row = j->idx + r * j->rowbytes;
    int64_t c = 0;
    if (j->index_bits == 4) {
        for (; c + 64 <= j->in; c += 64) {
            __m256i we, wo;
            nibbles(T[0], row + c / 2, &we, &wo);
            const __m256i lo = _mm256_unpacklo_epi8(we, wo), hi = _mm256_unpackhi_epi8(we, wo);
            _mm256_storeu_si256((__m256i *)(buf + c), _mm256_permute2x128_si256(lo, hi, 0x20));
            _mm256_storeu_si256((__m256i *)(buf + c + 32), _mm256_permute2x128_si256(lo, hi, 0x31));
        }
    } else {
        for (; c + 32 <= j->in; c += 32)
            _mm256_storeu_si256((__m256i *)(buf + c), lookup(T, _mm256_loadu_si256((const __m256i *)(row + c)), nt));
    }
    const int8_t *t = j->qtab + (r / j->group_size) * 256;
    for (; c < j->in; c++) buf[c] = t[idx_at(j, r, c)];
}

#ifndef I8_MR
#define I8_MR 6 /* rows of x per microkernel call: 2 * I8_MR accumulators + 2 panel vectors + 2 */
#endif
/* the I8_MR x 16 tile: rows x[i] (kq4 groups of 4 bytes), panel P; acc[i][h]: row i, outputs 8h .. 8h + 7 */
T256 static AI void micro(const uint8_t *const *x, const int8_t *P, int64_t kq4, __m256i acc[I8_MR][2]) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i a[I8_MR][2];
    for (int i = 0; i < I8_MR; i++) a[i][0] = a[i][1] = _mm256_setzero_si256();
    for (int64_t q = 0; q < kq4; q++) {
        const __m256i w0 = _mm256_load_si256((const __m256i *)(P + q * 64));
        const __m256i w1 = _mm256_load_si256((const __m256i *)(P + q * 64 + 32));
#pragma GCC unroll 8
        for (int i = 0; i < I8_MR; i++) {
            int32_t v;
            memcpy(&v, x[i] + 4 * q, 4);
            const __m256i bc = _mm256_set1_epi32(v);
            a[i][0] = dot32(a[i][0], bc, w0, ones);
            a[i][1] = dot32(a[i][1], bc, w1, ones);
        }
    }
    for (int i = 0; i < I8_MR; i++) { acc[i][0] = a[i][0]; acc[i][1] = a[i][1]; }
}

/* dst + 64 q (q = 0..7) gets dword q of the 8 rows src + i ld (i = 0..7): an 8 x 8 dword transpose */
T256 static AI void transpose8(const int8_t *src, int64_t ld, int8_t *dst) {
    __m256i r[8], t[8], u[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_si256((const __m256i *)(src + i * ld));
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int q = 0; q < 4; q++) {
        _mm256_store_si256((__m256i *)(dst + 64 * q), _mm256_permute2x128_si256(u[q], u[q + 4], 0x20));
        _mm256_store_si256((__m256i *)(dst + 64 * (q + 4)), _mm256_permute2x128_si256(u[q], u[q + 4], 0x31));
    }
}

T256 static void gemm_panels(const job_t *j, int64_t p0, int64_t p1, const int nt) {
    const int64_t kp = (j->in + 3) & ~(int64_t)3, kq4 = kp / 4;
    int8_t *rows = (int8_t *)aligned_alloc(64, (size_t)(NR * kp + 64));
    int8_t *P = (int8_t *)aligned_alloc(64, (size_t)(NR * kp + 64));
    if (!rows || !P) { free(rows); free(P); if (j->fail) *j->fail = 1; return; }
    __m256i T[16];
    for (int i = 0; i < 16; i++) T[i] = _mm256_setzero_si256();
    int64_t g_loaded = -1;
    for (int64_t p = p0; p < p1; p++) {
        const int64_t r0 = p * NR;
        int32_t rs[NR];
        for (int n = 0; n < NR; n++) {
            int8_t *buf = rows + n * kp;
            const int64_t r = r0 + n;
            memset(buf + (j->in & ~(int64_t)31), 0, (size_t)(kp - (j->in & ~(int64_t)31)));
            if (r >= j->out) { memset(buf, 0, (size_t)kp); rs[n] = 0; continue; }
            const int64_t g = r / j->group_size;
            if (g != g_loaded) { load_tables(j, g, T, nt); g_loaded = g; }
            lookup_row(j, T, nt, r, buf);
            int32_t s = 0;
            for (int64_t c = 0; c < j->in; c++) s += buf[c];
            rs[n] = s;
        }
        /* interleave: P[q][n][0..3] = rows[n][4q .. 4q + 3], 8 x 8 dwords at a time */
        int64_t q0 = 0;
        for (; q0 + 8 <= kq4; q0 += 8)
            for (int h = 0; h < 2; h++) transpose8(rows + 8 * h * kp + 4 * q0, kp, P + q0 * 64 + 32 * h);
        for (int64_t q = q0; q < kq4; q++)
            for (int n = 0; n < NR; n++) memcpy(P + q * 64 + 4 * n, rows + n * kp + 4 * q, 4);
        /* the output stage, 16 outputs at a time: their group scales, biases and weight sums */
        const int full = r0 + NR <= j->out && j->in < (1 << 16); /* int32 holds acc - z rs below 2^16 features */
        float qsn[NR], bn[NR];
        for (int n = 0; n < NR; n++) {
            const int64_t r = r0 + n < j->out ? r0 + n : j->out - 1;
            qsn[n] = j->qs[r / j->group_size];
            bn[n] = j->bias ? j->bias[r] : 0.f;
        }
        const __m256i rs0 = _mm256_loadu_si256((const __m256i *)rs), rs1 = _mm256_loadu_si256((const __m256i *)(rs + 8));
        for (int64_t m0 = 0; m0 < j->M; m0 += I8_MR) {
            const int mb = j->M - m0 < I8_MR ? (int)(j->M - m0) : I8_MR;
            const uint8_t *x[I8_MR];
            for (int i = 0; i < I8_MR; i++) x[i] = j->xq + (m0 + (i < mb ? i : 0)) * j->ldx;
            __m256i acc[I8_MR][2];
            micro(x, P, kq4, acc);
            for (int i = 0; i < mb; i++) {
                const int64_t m = m0 + i;
                float *y = j->y + m * j->out + r0;
                if (full) { /* the same float operations as wc_i8_out, 8 lanes at a time */
                    const __m256i z = _mm256_set1_epi32(j->xz[m]);
                    const __m256 xs = _mm256_set1_ps(j->xs[m]);
                    for (int h = 0; h < 2; h++) {
                        const __m256i t = _mm256_sub_epi32(acc[i][h], _mm256_mullo_epi32(z, h ? rs1 : rs0));
                        const __m256 sc = _mm256_mul_ps(xs, _mm256_loadu_ps(qsn + 8 * h));
                        _mm256_storeu_ps(y + 8 * h, _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(t), sc),
                                                                  _mm256_loadu_ps(bn + 8 * h)));
                    }
                } else {
                    int32_t a[NR];
                    _mm256_storeu_si256((__m256i *)a, acc[i][0]);
                    _mm256_storeu_si256((__m256i *)(a + 8), acc[i][1]);
                    for (int n = 0; n < NR && r0 + n < j->out; n++)
                        y[n] = wc_i8_out(j, m, (r0 + n) / j->group_size, a[n], rs[n], r0 + n);
                }
            }
        }
    }
    free(rows);
    free(P);
}

T256 void wc_i8_gemm_avx2(const job_t *j, int64_t u0, int64_t u1) {
    const int64_t p0 = u0 / 4, p1 = (u1 + 3) / 4;
    switch (j->index_bits == 4 ? 1 : n_tables(j->K)) {
    case 1: gemm_panels(j, p0, p1, 1); break;
    case 2: gemm_panels(j, p0, p1, 2); break;
    case 4: gemm_panels(j, p0, p1, 4); break;
    case 8: gemm_panels(j, p0, p1, 8); break;
    default: gemm_panels(j, p0, p1, 16); break;
    }
}
#endif /* WC_X86 */
