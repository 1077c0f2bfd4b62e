/* Fused LUT-GEMM (AVX-512 F/BW/VBMI/VL): y (M, out) = x (M, in) . W^T + bias, W given as indices +
 * codebook (layout: api.c), float32 compute and accumulation. For many rows of x.
 *
 * BLIS-style blocking, with the weights as the vector operand:
 * - x is packed per thread, in slices (up to GEMM_MCB m-blocks of <= GEMM_MR rows, one k-block of
 *   GEMM_KC features): [k][mr] floats per m-block (the microkernel broadcasts x[m, k] from one
 *   contiguous stream). Each slice is packed once per call when possible (see wc_lut_gemm_avx512):
 *   all k-blocks up front into a per-thread heap buffer when the panels take several chunks.
 * - for a panel of 32 output rows and one k-block, each half of 16 rows is built into an L1-resident
 *   panel [k][32 n] of floats, each weight dequantized once per call and reused by all M rows:
 *   - 4-bit and 8-bit K <= 32 (half_reg): per 64 index bytes, 16 full row loads and a 16x16 dword
 *     transpose in registers; vpermps / vpermt2ps then look up the dwords shifted right by 4 or 8
 *     bits per weight (the tables only read the low 4 / 5 bits) and write panel rows directly.
 *   - 8-bit K <= 256 (byte planes): the indices are transposed to [k][16 n] bytes (16x16 byte
 *     blocks, two vpermt2b stages) into T, then looked up per byte plane with vpermb / vpermt2b and
 *     interleaved into floats (unpacks).
 *   The next panel's indices are prefetched into L1 (one panel ahead) while the microkernels run.
 * - microkernel: mr x 32 outputs in 2*mr zmm accumulators (mr <= 14), per k 2 panel loads, mr
 *   broadcasts, 2*mr FMAs; the C tile is written (first k-block, + bias) or accumulated into y.
 * - loop order per thread: m-chunks, chunks of panels (y's chunk <= GEMM_YCHUNK bytes, at least
 *   GEMM_NCP panels), k-blocks, panels, m-blocks (the packed x slice and y's chunk stay in L2).
 * Threads: the pool splits output panels (api.c: wc_lut_gemm_f32).
 * Rows of a 16-row half that span several codebook groups are handled with masked stores, one
 * lookup pass per group (plain stores otherwise: masked ones made the build much slower). */
#include "../internal.h"

#ifdef WC_X86
#include <pthread.h>
#include <stdlib.h>
#define ALWAYS_INLINE inline __attribute__((always_inline))
#ifndef GEMM_KU
#define GEMM_KU 4 /* k unroll of the microkernel */
#endif
#define DO_PRAGMA(x) _Pragma(#x)
#define UNROLL(n) DO_PRAGMA(GCC unroll n)
#define GEMM_XPAD 16 /* floats of slack after packed x (pack_x) */

/* m-blocks: nb = ceil(M / MR) blocks of balanced sizes (<= MR) */
static int64_t mb_count(int64_t M) { return (M + GEMM_MR - 1) / GEMM_MR; }
static int64_t mb_start(int64_t M, int64_t nb, int64_t i) { return M * i / nb; }

/* in place: r[i][j] -> r[j][i] (16 x 16 floats) */
T512 static ALWAYS_INLINE void tr16x16_ps(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) { /* u[4i + q], lane L: rows 4i..4i+3 of column 4L + q */
        __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
        __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
        u[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        u[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        u[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        u[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int q = 0; q < 4; q++) {
        __m512 v0 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0x88), v4 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0xdd);
        __m512 v8 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0x88), v12 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0xdd);
        r[q] = _mm512_shuffle_f32x4(v0, v8, 0x88);
        r[8 + q] = _mm512_shuffle_f32x4(v0, v8, 0xdd);
        r[4 + q] = _mm512_shuffle_f32x4(v4, v12, 0x88);
        r[12 + q] = _mm512_shuffle_f32x4(v4, v12, 0xdd);
    }
}

/* Pack x's rows of m-blocks [i0, i1) and features [k0, k0 + kc) into xs: the m-block starting at
 * row s (mr rows) at (s - start(i0)) * kc, laid out [k][mr]. 16 x 16 transposes; whole 16-float
 * stores in increasing address order, each overwriting the previous one's 16 - mr zeros, so the
 * last one writes up to 16 floats past the packed slice (buffers have GEMM_XPAD floats of slack,
 * and whatever follows is packed later). */
T512 static void pack_x(const float *x, int64_t M, int64_t in, int64_t nb, int64_t i0, int64_t i1, int64_t k0,
                        int64_t kc, float *xs) {
    const int64_t s0 = mb_start(M, nb, i0);
    for (int64_t i = i0; i < i1; i++) {
        const int64_t s = mb_start(M, nb, i), mr = mb_start(M, nb, i + 1) - s;
        float *d = xs + (s - s0) * kc;
        const float *src = x + s * in + k0;
        for (int64_t kk = 0; kk < kc; kk += 16) {
            const int64_t w = kc - kk < 16 ? kc - kk : 16;
            const __mmask16 lm = (__mmask16)((1u << w) - 1);
            __m512 r[16];
            for (int m = 0; m < 16; m++)
                r[m] = m < mr ? _mm512_maskz_loadu_ps(lm, src + m * in + kk) : _mm512_setzero_ps();
            tr16x16_ps(r);
            for (int c = 0; c < w; c++) _mm512_storeu_ps(d + (kk + c) * mr, r[c]);
        }
    }
}


typedef struct { __m512i ia, ib, io0, io1; } tperm_t;

/* Index vectors of the 16x16 byte transpose. Inputs A_i = rows 4i..4i+3 x 16 columns (byte
 * 16 * (r % 4) + c). Stage 1: (A0, A1) and (A2, A3) -> [c][r] 8 x 8 blocks for columns 0..7 (ia)
 * and 8..15 (ib). Stage 2: output j (columns 4j..4j+3 x 16 rows), byte s = weight nat(s) of the
 * natural order [c'][r] (c' = column within the 4, r = row), nat = identity or wc_q_f32 (byte planes). */
static void make_tperm(tperm_t *t, int bp) {
    uint8_t a[64], b[64], o0[64], o1[64];
    for (int c = 0; c < 8; c++)
        for (int r = 0; r < 8; r++) { a[8 * c + r] = (uint8_t)(16 * r + c); b[8 * c + r] = (uint8_t)(16 * r + c + 8); }
    for (int s = 0; s < 64; s++) {
        int w = bp ? wc_q_f32(s) : s, cp = w / 16, r = w % 16;
        int base = (r < 8 ? 0 : 64) + (r % 8);
        o0[s] = (uint8_t)(base + 8 * cp);
        o1[s] = (uint8_t)(base + 8 * (4 + cp));
    }
    memcpy(&t->ia, a, 64); memcpy(&t->ib, b, 64); memcpy(&t->io0, o0, 64); memcpy(&t->io1, o1, 64);
}

T512 static ALWAYS_INLINE __m512i load4rows(const uint8_t *p, int64_t ld) {
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)p));
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + ld)), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + 2 * ld)), 2);
    return _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + 3 * ld)), 3);
}

/* 16 rows x 16 byte-columns at src (row stride ld) -> T[c][16] for c = 0..15 (64-byte aligned groups) */
T512 static ALWAYS_INLINE void tr16(const uint8_t *src, int64_t ld, uint8_t *T, const tperm_t *tp) {
    __m512i A0 = load4rows(src, ld), A1 = load4rows(src + 4 * ld, ld);
    __m512i A2 = load4rows(src + 8 * ld, ld), A3 = load4rows(src + 12 * ld, ld);
    __m512i Ba = _mm512_permutex2var_epi8(A0, tp->ia, A1), Ca = _mm512_permutex2var_epi8(A2, tp->ia, A3);
    __m512i Bb = _mm512_permutex2var_epi8(A0, tp->ib, A1), Cb = _mm512_permutex2var_epi8(A2, tp->ib, A3);
    _mm512_store_si512(T, _mm512_permutex2var_epi8(Ba, tp->io0, Ca));
    _mm512_store_si512(T + 64, _mm512_permutex2var_epi8(Ba, tp->io1, Ca));
    _mm512_store_si512(T + 128, _mm512_permutex2var_epi8(Bb, tp->io0, Cb));
    _mm512_store_si512(T + 192, _mm512_permutex2var_epi8(Bb, tp->io1, Cb));
}

/* Transpose the index bytes [c0, c0 + nc) of rows r0 .. r0 + nr - 1 (nr <= 16) into T[c - c0][16];
 * rows >= nr and columns >= nc of the last 16-column block are zero. */
T512 static void transpose_half(const job_t *j, int64_t r0, int64_t nr, int64_t c0, int64_t nc, uint8_t *T,
                                const tperm_t *tp) {
    const int64_t rb = j->rowbytes;
    const uint8_t *src = j->idx + r0 * rb + c0;
    for (int64_t c = 0; c < nc; c += 16) {
        if (nr == 16 && c + 16 <= nc) {
            tr16(src + c, rb, T + 16 * c, tp);
        } else {
            uint8_t tmp[256];
            memset(tmp, 0, sizeof tmp);
            int64_t w = nc - c < 16 ? nc - c : 16;
            for (int64_t r = 0; r < nr; r++) memcpy(tmp + 16 * r, src + r * rb + c, (size_t)w);
            tr16(tmp, 16, T + 16 * c, tp);
        }
    }
}

/* store one panel row of a half: all 16 lanes (full: the half is in one codebook group) or those of mk.
 * Plain stores where possible: masked ones made the panel build much slower. */
T512 static ALWAYS_INLINE void st_row(float *d, __mmask16 mk, __m512 v, const int full) {
    if (full) _mm512_store_ps(d, v);
    else _mm512_mask_store_ps(d, mk, v);
}

/* T (transposed indices of one half, wc_q_f32 order, rows of group g where mk is set) -> panel columns 16h.. */
T512 static ALWAYS_INLINE void lookup_bp(const job_t *j, int64_t g, __mmask16 mk, const uint8_t *T, int64_t kc,
                                         float *P, const int nt, const int full) {
    __m512i PL[4][4];
    for (int c = 0; c < 4; c++)
        for (int t = 0; t < nt; t++) PL[c][t] = _mm512_loadu_si512(j->planes + g * 1024 + c * 256 + 64 * t);
    for (int64_t k4 = 0; k4 < kc; k4 += 4) {
        __m512i v = _mm512_load_si512(T + 16 * k4);
        __m512 f[4];
        wc_bp_floats(PL, v, nt, f);
        for (int q = 0; q < 4; q++) st_row(P + 32 * (k4 + q), mk, f[q], full);
    }
}

/* V[q] (lane r: 4 index bytes of row r) -> panel rows d[k][.], k < kn (<= 64 8-bit, <= 128 4-bit) */
T512 static ALWAYS_INLINE void lookup_reg(const __m512 *V, const float *tab, float *d, int64_t kn, __mmask16 mk,
                                         const int four, const int two_tabs, const int full) {
    const __m512 t0 = _mm512_loadu_ps(tab), t1 = _mm512_loadu_ps(tab + 16);
    const int per = four ? 8 : 4, sh = four ? 4 : 8;  /* indices per dword, bits per index */
    UNROLL(16)
    for (int q = 0; q < 16; q++) {
        if (per * q >= kn) break;
        const __m512i v = _mm512_castps_si512(V[q]);
        UNROLL(8)
        for (int e = 0; e < per; e++)
            if (per * q + e < kn) {
                const __m512i ve = _mm512_srli_epi32(v, sh * e);
                st_row(d + 32 * (per * q + e), mk,
                       two_tabs ? _mm512_permutex2var_ps(t0, ve, t1) : _mm512_permutexvar_ps(ve, t0), full);
            }
    }
}

/* Register path for the dword-index modes (4-bit; 8-bit K <= 32): rows r0 .. r0 + nr - 1 (nr <= 16),
 * index bytes [c0, c0 + nc) -> panel columns Ph[k][16] for k < kc. Per 64 index bytes: 16 row loads,
 * a 16 x 16 dword transpose (lane r of V[q] = bytes 4q .. 4q + 3 of row r), then vpermps /
 * vpermt2ps straight from V[q] shifted right by 8 (8-bit) or 4 (4-bit) bits per weight: the tables
 * only look at the low 4 / 5 bits. Rows of several codebook groups: one pass per group, masked stores. */
T512 static ALWAYS_INLINE void half_reg(const job_t *j, int64_t r0, int64_t nr, int64_t c0, int64_t nc, int64_t kc,
                                       float *Ph, const int four, const int two_tabs) {
    const int64_t rb = j->rowbytes;
    const uint8_t *src = j->idx + r0 * rb + c0;
    const int64_t g0 = r0 / j->group_size, g1 = (r0 + nr - 1) / j->group_size;
    for (int64_t cb = 0; cb < nc; cb += 64) {
        const int64_t w = nc - cb < 64 ? nc - cb : 64;
        const __mmask64 lm = w == 64 ? ~(__mmask64)0 : (((__mmask64)1 << w) - 1);
        __m512 V[16];
        for (int r = 0; r < 16; r++)
            V[r] = r >= nr ? _mm512_setzero_ps()
                 : w == 64 ? _mm512_loadu_ps(src + r * rb + cb)
                           : _mm512_castsi512_ps(_mm512_maskz_loadu_epi8(lm, src + r * rb + cb));
        tr16x16_ps(V);
        const int64_t kb = four ? 2 * cb : cb; /* first k of this block */
        const int64_t kn = kc - kb < (four ? 128 : 64) ? kc - kb : (four ? 128 : 64);
        float *d = Ph + 32 * kb;
        if (g0 == g1) {
            lookup_reg(V, j->tab + g0 * 256, d, kn, 0xFFFF, four, two_tabs, 1);
            continue;
        }
        for (int64_t g = g0; g <= g1; g++) {
            int64_t a = g * j->group_size - r0, b = (g + 1) * j->group_size - r0;
            if (a < 0) a = 0;
            if (b > 16) b = 16;
            lookup_reg(V, j->tab + g * 256, d, kn, (__mmask16)(((1u << b) - 1) & ~((1u << a) - 1)), four, two_tabs, 0);
        }
    }
}

/* Panel [k][32] floats for output rows n0 .. n0 + 31 (rows >= out: whatever, never stored) and
 * features k0 .. k0 + kc - 1. */
/* noinline here and below: separate symbols in profiles, one call per panel / m-block */
__attribute__((noinline)) T512 static void build_panel(const job_t *j, int64_t n0, int64_t k0, int64_t kc, uint8_t *T, float *P,
                             const tperm_t *tp) {
    const int four = j->index_bits == 4, mode = j->mode;
    const int64_t c0 = four ? k0 / 2 : k0, nc = four ? (kc + 1) / 2 : kc;
    for (int h = 0; h < 2; h++) {
        const int64_t r0 = n0 + 16 * h;
        if (r0 >= j->out) break;
        const int64_t nr = j->out - r0 < 16 ? j->out - r0 : 16;
        if (mode == MODE_A4) { half_reg(j, r0, nr, c0, nc, kc, P + 16 * h, 1, 0); continue; }
        if (mode == MODE_A8_16) { half_reg(j, r0, nr, c0, nc, kc, P + 16 * h, 0, 0); continue; }
        if (mode == MODE_A8_32) { half_reg(j, r0, nr, c0, nc, kc, P + 16 * h, 0, 1); continue; }
        transpose_half(j, r0, nr, c0, nc, T, tp); /* byte planes */
        float *Ph = P + 16 * h;
        const int64_t g0 = r0 / j->group_size, g1 = (r0 + nr - 1) / j->group_size;
        if (g0 == g1) {
            switch (mode) {
                case MODE_BP1: lookup_bp(j, g0, 0xFFFF, T, kc, Ph, 1, 1); break;
                case MODE_BP2: lookup_bp(j, g0, 0xFFFF, T, kc, Ph, 2, 1); break;
                default: lookup_bp(j, g0, 0xFFFF, T, kc, Ph, 4, 1); break;
            }
            continue;
        }
        for (int64_t g = g0; g <= g1; g++) {
            int64_t a = g * j->group_size - r0, b = (g + 1) * j->group_size - r0;
            if (a < 0) a = 0;
            if (b > 16) b = 16;
            const __mmask16 mk = (__mmask16)(((1u << b) - 1) & ~((1u << a) - 1));
            switch (mode) {
                case MODE_BP1: lookup_bp(j, g, mk, T, kc, Ph, 1, 0); break;
                case MODE_BP2: lookup_bp(j, g, mk, T, kc, Ph, 2, 0); break;
                default: lookup_bp(j, g, mk, T, kc, Ph, 4, 0); break;
            }
        }
    }
}

/* y[m, n0 .. n0 + 31] (row stride ldy) (+)= sum_k xp[k * MR + m] * P[k][.] for m < MR. */
T512 static ALWAYS_INLINE void ukern(const float *xp, const float *P, int64_t kc, float *y, int64_t ldy,
                                     __mmask16 m0, __mmask16 m1, int first, __m512 b0, __m512 b1, const int MR) {
    __m512 c[14][2]; /* GEMM_MR <= 14 */
    for (int m = 0; m < MR; m++) c[m][0] = c[m][1] = _mm512_setzero_ps();
    for (int m = 0; m < MR; m++) _mm_prefetch((const char *)(y + m * ldy), _MM_HINT_T0);
    UNROLL(GEMM_KU)
    for (int64_t k = 0; k < kc; k++) {
        const __m512 w0 = _mm512_load_ps(P + 32 * k), w1 = _mm512_load_ps(P + 32 * k + 16);
        const float *a = xp + k * MR;
        for (int m = 0; m < MR; m++) {
            const __m512 am = _mm512_set1_ps(a[m]);
            c[m][0] = _mm512_fmadd_ps(am, w0, c[m][0]);
            c[m][1] = _mm512_fmadd_ps(am, w1, c[m][1]);
        }
    }
    if ((m0 & m1) == 0xFFFF) { /* whole tile: plain loads / stores (masked ones are slower) */
        for (int m = 0; m < MR; m++) {
            float *d = y + m * ldy;
            if (first) {
                _mm512_storeu_ps(d, _mm512_add_ps(c[m][0], b0));
                _mm512_storeu_ps(d + 16, _mm512_add_ps(c[m][1], b1));
            } else {
                _mm512_storeu_ps(d, _mm512_add_ps(c[m][0], _mm512_loadu_ps(d)));
                _mm512_storeu_ps(d + 16, _mm512_add_ps(c[m][1], _mm512_loadu_ps(d + 16)));
            }
        }
        return;
    }
    for (int m = 0; m < MR; m++) {
        float *d = y + m * ldy;
        if (first) {
            _mm512_mask_storeu_ps(d, m0, _mm512_add_ps(c[m][0], b0));
            _mm512_mask_storeu_ps(d + 16, m1, _mm512_add_ps(c[m][1], b1));
        } else {
            _mm512_mask_storeu_ps(d, m0, _mm512_add_ps(c[m][0], _mm512_maskz_loadu_ps(m0, d)));
            _mm512_mask_storeu_ps(d + 16, m1, _mm512_add_ps(c[m][1], _mm512_maskz_loadu_ps(m1, d + 16)));
        }
    }
}

#define UK(R) case R: ukern(xp, P, kc, yt, ldy, m0, m1, first, b0, b1, R); break;
__attribute__((noinline)) T512 static void ukern_any(int64_t mr, const float *xp, const float *P, int64_t kc, float *yt, int64_t ldy,
                           __mmask16 m0, __mmask16 m1, int first, __m512 b0, __m512 b1) {
    switch (mr) {
        UK(1) UK(2) UK(3) UK(4) UK(5) UK(6) UK(7) UK(8) UK(9) UK(10) UK(11) UK(12) UK(13)
        default: ukern(xp, P, kc, yt, ldy, m0, m1, first, b0, b1, GEMM_MR); break;
    }
}
#undef UK

/* prefetch one line into L1. Not _mm_prefetch: GCC 12 -O3 deleted the loops below, which held
 * nothing else (no prefetch was ever issued for the indices; the panel builds then waited on L3/DRAM). */
static ALWAYS_INLINE void pf_line(const void *p) { __asm__ volatile("prefetcht0 %0" : : "m"(*(const char *)p)); }

/* prefetch the index bytes of output rows n0 .. n0 + 31, features k0 .. k0 + kc - 1 */
T512 static void prefetch_indices(const job_t *j, int64_t n0, int64_t k0, int64_t kc) {
    const int four = j->index_bits == 4;
    const int64_t c0 = four ? k0 / 2 : k0, nc = four ? (kc + 1) / 2 : kc;
    const int64_t n1 = n0 + 32 < j->out ? n0 + 32 : j->out;
    for (int64_t r = n0; r < n1; r++) {
        const uint8_t *row = j->idx + r * j->rowbytes + c0;
        for (int64_t c = 0; c < nc; c += 64) pf_line(row + c);
        pf_line(row + nc - 1);
    }
}

/* Per-thread buffer for x packed over all k-blocks (grown on demand, freed when the thread exits). */
static pthread_key_t xbuf_key;
static pthread_once_t xbuf_once = PTHREAD_ONCE_INIT;
static _Thread_local float *xbuf;
static _Thread_local size_t xbuf_cap; /* floats */
static void xbuf_free(void *p) { free(p); }
static void xbuf_init(void) { pthread_key_create(&xbuf_key, xbuf_free); }
static float *xbuf_get(size_t n) {
    if (n <= xbuf_cap) return xbuf;
    pthread_once(&xbuf_once, xbuf_init);
    free(xbuf);
    xbuf = NULL; xbuf_cap = 0;
    pthread_setspecific(xbuf_key, NULL);
    const size_t bytes = (n * sizeof(float) + 4095) & ~(size_t)4095;
    float *p = aligned_alloc(4096, bytes);
    if (!p) return NULL;
    xbuf = p; xbuf_cap = bytes / sizeof(float);
    pthread_setspecific(xbuf_key, p);
    return p;
}

/* Output panels [u0 / 4, u1 / 4) (the pool splits "rows" in multiples of 4: 4 units per panel).
 * Loops: m-chunks of GEMM_MCB m-blocks, chunks of panels (GEMM_NCP, or more while the chunk's y
 * stays within GEMM_YCHUNK bytes), k-blocks, panels (built into P, L1), m-blocks (microkernel).
 * x is packed once per m-chunk: per k-block into a static buffer when there is one panel chunk or one
 * k-block, else for all k-blocks up front into a per-thread heap buffer (if that stays within
 * GEMM_XBUF bytes and can be allocated; otherwise again per chunk and k-block). */
T512 void wc_lut_gemm_avx512(const job_t *j, int64_t u0, int64_t u1) {
    const int64_t p0 = u0 / 4, p1 = u1 / 4, M = j->M, in = j->in, out = j->out;
    const int64_t nb = mb_count(M), nkb = (in + GEMM_KC - 1) / GEMM_KC;
    static _Thread_local float xs[GEMM_MCB * GEMM_MR * GEMM_KC + GEMM_XPAD] __attribute__((aligned(64)));
    uint8_t T[GEMM_KC * 16] __attribute__((aligned(64)));  /* 4 KB */
    float P[GEMM_KC * 32] __attribute__((aligned(64)));    /* the panel, 32 KB: L1 */
    tperm_t tp;
    make_tperm(&tp, j->mode >= MODE_BP1);
    for (int64_t i0 = 0; i0 < nb; i0 += GEMM_MCB) {
        const int64_t i1 = i0 + GEMM_MCB < nb ? i0 + GEMM_MCB : nb, s0 = mb_start(M, nb, i0);
        const int64_t rows = mb_start(M, nb, i1) - s0, slice = rows * GEMM_KC; /* floats per k-block */
        int64_t ncp = GEMM_YCHUNK / (rows * 32 * (int64_t)sizeof(float));
        if (ncp < GEMM_NCP) ncp = GEMM_NCP;
        const int chunks = p1 - p0 > ncp;
        float *xall = NULL;
        if (chunks && nkb > 1 && slice * nkb * (int64_t)sizeof(float) <= GEMM_XBUF) {
            xall = xbuf_get((size_t)(slice * nkb + GEMM_XPAD));
            if (xall)
                for (int64_t b = 0; b < nkb; b++) {
                    const int64_t k0 = b * GEMM_KC, kc = in - k0 < GEMM_KC ? in - k0 : GEMM_KC;
                    pack_x(j->x, M, in, nb, i0, i1, k0, kc, xall + b * slice);
                }
        }
        for (int64_t pc = p0; pc < p1; pc += ncp) {
            const int64_t pe = pc + ncp < p1 ? pc + ncp : p1;
            for (int64_t k0 = 0; k0 < in; k0 += GEMM_KC) {
                const int64_t kc = in - k0 < GEMM_KC ? in - k0 : GEMM_KC;
                const int first = k0 == 0;
                float *xsp = xall ? xall + (k0 / GEMM_KC) * slice : xs;
                if (!xall && (nkb > 1 || pc == p0)) pack_x(j->x, M, in, nb, i0, i1, k0, kc, xsp);
                for (int64_t p = pc; p < pe; p++) {
                    const int64_t n0 = 32 * p, nv = out - n0;
                    build_panel(j, n0, k0, kc, T, P, &tp);
                    if (p + 1 < pe) prefetch_indices(j, n0 + 32, k0, kc);
                    else if (k0 + GEMM_KC < in) prefetch_indices(j, 32 * pc, k0 + GEMM_KC, kc);
                    const __mmask16 m0 = nv >= 16 ? 0xFFFF : (__mmask16)((1u << nv) - 1);
                    const __mmask16 m1 = nv >= 32 ? 0xFFFF : nv <= 16 ? 0 : (__mmask16)((1u << (nv - 16)) - 1);
                    __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
                    if (j->bias && first) {
                        b0 = _mm512_maskz_loadu_ps(m0, j->bias + n0);
                        b1 = _mm512_maskz_loadu_ps(m1, j->bias + n0 + 16);
                    }
                    for (int64_t i = i0; i < i1; i++) {
                        const int64_t s = mb_start(M, nb, i), mr = mb_start(M, nb, i + 1) - s;
                        ukern_any(mr, xsp + (s - s0) * kc, P, kc, j->y + s * out + n0, out, m0, m1, first, b0, b1);
                    }
                }
            }
        }
    }
}
#endif /* WC_X86 */
