/* ARM64 NEON kernels (any ARMv8-A: Advanced SIMD is part of the base architecture, and
 * runtime.c still reads it from the OS before api.c picks these):
 * - fp32 GEMV (few rows of x): per row, the group's codebook as 4 byte planes in registers
 *   (K <= 64: nt = ceil(K/16) registers a plane; 4-bit indices: one), per block of 16 weights
 *   4 tbl lookups + 8 zips give the 16 floats in order, then fmla against each row of x (x in
 *   chunks of up to 4 rows, sharing the lookups; 4-bit: two blocks a 16-byte load of indices). K > 64 (8-bit): the 4 planes would need 32 to 64
 *   registers, so the floats are gathered with lane loads from the codebook (in L1) instead.
 *   Summation order: 4 partial sums per lane, then across lanes (the portable kernel sums in
 *   index order), so results differ from it by rounding only.
 * - dequantize (many rows of x: the caller's BLAS multiplies): the same lookups, stored with st4
 *   (which interleaves the 4 planes' bytes into floats: no zips), or for bf16 output only planes 2
 *   and 3 (the upper half of each float) with st2; K > 64: portable C.
 * - integer GEMV without the dot product (smull / sadalp): neon_i8.h (dotprod_int8.c: with sdot).
 * Layout and job: internal.h; building blocks: neon_common.h. */
#include "../internal.h"
#ifdef WC_ARM64
#include "neon_common.h"

/* acc[m] += the 16 weights f of block b times x[m] (NA accumulators a row of x) */
WC_AI void f32_fma(float32x4_t acc[4][4], const float *const x[4], int64_t b, const float32x4_t f[4], const int MC,
                   const int NA) {
    for (int m = 0; m < MC; m++)
        for (int q = 0; q < 4; q++) acc[m][q % NA] = vfmaq_f32(acc[m][q % NA], f[q], vld1q_f32(x[m] + 16 * b + 4 * q));
}

/* rows m0 .. m0 + MC of x times row r of W (group table t / planes P) */
WC_AI void f32_chunk(const job_t *j, int64_t r, const uint8_t *row, const float *t, const uint8x16_t P[4][4],
                     int64_t m0, const int MC, const int bits, const int nt) {
    const int NA = MC == 1 ? 4 : MC == 2 ? 2 : 1; /* accumulators per row of x */
    const int64_t in = j->in, nb = in / 16;
    float32x4_t acc[4][4];
    const float *x[4];
    for (int m = 0; m < MC; m++) {
        x[m] = j->x + (m0 + m) * j->ldx;
        for (int a = 0; a < NA; a++) acc[m][a] = vdupq_n_f32(0.f);
    }
    int64_t b = 0;
    float32x4_t f[4];
    if (bits == 4) /* two blocks from one 16-byte load of indices */
        for (; b + 2 <= nb; b += 2) {
            uint8x16_t v0, v1;
            wc_nib32(row + 8 * b, &v0, &v1);
            wc_lookup_f32(P, v0, nt, f);
            f32_fma(acc, x, b, f, MC, NA);
            wc_lookup_f32(P, v1, nt, f);
            f32_fma(acc, x, b + 1, f, MC, NA);
        }
    for (; b < nb; b++) {
        if (nt) wc_lookup_f32(P, wc_idx16(row, 16 * b, bits), nt, f);
        else wc_gather_f32(t, row + 16 * b, f);
        f32_fma(acc, x, b, f, MC, NA);
    }
    for (int m = 0; m < MC; m++) {
        for (int a = 1; a < NA; a++) acc[m][0] = vaddq_f32(acc[m][0], acc[m][a]);
        float s = vaddvq_f32(acc[m][0]);
        for (int64_t c = 16 * nb; c < in; c++) s += x[m][c] * t[idx_at(j, r, c)];
        j->y[(m0 + m) * j->out + r] = s + (j->bias ? j->bias[r] : 0.f);
    }
}

WC_AI void zero_planes(uint8x16_t P[4][4]) {
    for (int p = 0; p < 4; p++)
        for (int i = 0; i < 4; i++) P[p][i] = vdupq_n_u8(0);
}

WC_AI void load_planes(uint8x16_t P[4][4], const uint8_t *planes, const int nt) {
    for (int p = 0; p < 4; p++) wc_tbl_load(P[p], planes + 256 * p, nt);
}

WC_AI void f32_rows(const job_t *j, int64_t r0, int64_t r1, const int bits, const int nt) {
    uint8x16_t P[4][4];
    zero_planes(P);
    int64_t gl = -1; /* the group whose planes P holds */
    for (int64_t r = r0; r < r1; r++) {
        const int64_t g = r / j->group_size;
        if (nt && g != gl) { load_planes(P, j->planes + g * 1024, nt); gl = g; }
        const float *t = j->tab + g * 256;
        const uint8_t *row = j->idx + r * j->rowbytes;
        for (int64_t m0 = 0; m0 < j->M; m0 += 4) {
            switch (j->M - m0 < 4 ? (int)(j->M - m0) : 4) {
            case 1: f32_chunk(j, r, row, t, P, m0, 1, bits, nt); break;
            case 2: f32_chunk(j, r, row, t, P, m0, 2, bits, nt); break;
            case 3: f32_chunk(j, r, row, t, P, m0, 3, bits, nt); break;
            default: f32_chunk(j, r, row, t, P, m0, 4, bits, nt); break;
            }
        }
    }
}

#define F32_FN(name, bits, nt) \
    static void name(const job_t *j, int64_t r0, int64_t r1) { f32_rows(j, r0, r1, bits, nt); }
F32_FN(f32_b4, 4, 1)
F32_FN(f32_b8_t1, 8, 1)
F32_FN(f32_b8_t2, 8, 2)
F32_FN(f32_b8_t3, 8, 3)
F32_FN(f32_b8_t4, 8, 4)
F32_FN(f32_b8_gather, 8, 0)

/* rows [r0, r1) of y = x . W^T + bias, every row of x (x rows of ldx floats, natural order) */
void wc_gemv_neon(const job_t *j, int64_t r0, int64_t r1) {
    static void (*const by_nt[4])(const job_t *, int64_t, int64_t) = {f32_b8_t1, f32_b8_t2, f32_b8_t3, f32_b8_t4};
    if (j->index_bits == 4) f32_b4(j, r0, r1);
    else if (j->K <= 64) by_nt[(j->K - 1) / 16](j, r0, r1);
    else f32_b8_gather(j, r0, r1);
}

/* the 16 floats of indices v stored at w: st4 interleaves the 4 planes' bytes, which is the floats'
 * layout in memory (no zips) */
WC_AI void deq_store(float *w, const uint8x16_t P[4][4], uint8x16_t v, const int nt) {
    const uint8x16x4_t o = {{wc_tbl(P[0], v, nt), wc_tbl(P[1], v, nt), wc_tbl(P[2], v, nt), wc_tbl(P[3], v, nt)}};
    vst4q_u8((uint8_t *)w, o);
}

WC_AI void deq_rows(const job_t *j, int64_t r0, int64_t r1, const int bits, const int nt) {
    uint8x16_t P[4][4];
    zero_planes(P);
    int64_t gl = -1; /* the group whose planes P holds */
    const int64_t in = j->in, nb = in / 16;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t g = r / j->group_size;
        if (g != gl) { load_planes(P, j->planes + g * 1024, nt); gl = g; }
        const float *t = j->tab + g * 256;
        const uint8_t *row = j->idx + r * j->rowbytes;
        if (j->out_bf16) {
            uint16_t *w = (uint16_t *)j->w + r * in;
            for (int64_t b = 0; b < nb; b++) {
                const uint8x16_t v = wc_idx16(row, 16 * b, bits);
                const uint8x16x2_t o = {{wc_tbl(P[2], v, nt), wc_tbl(P[3], v, nt)}};
                vst2q_u8((uint8_t *)(w + 16 * b), o); /* bytes 2, 3 of each float interleaved: its bf16 */
            }
            for (int64_t c = 16 * nb; c < in; c++) w[c] = f32_to_bf16_bits(t[idx_at(j, r, c)]);
        } else {
            float *w = (float *)j->w + r * in;
            int64_t b = 0;
            if (bits == 4)
                for (; b + 2 <= nb; b += 2) {
                    uint8x16_t v0, v1;
                    wc_nib32(row + 8 * b, &v0, &v1);
                    deq_store(w + 16 * b, P, v0, nt);
                    deq_store(w + 16 * b + 16, P, v1, nt);
                }
            for (; b < nb; b++) deq_store(w + 16 * b, P, wc_idx16(row, 16 * b, bits), nt);
            for (int64_t c = 16 * nb; c < in; c++) w[c] = t[idx_at(j, r, c)];
        }
    }
}

#define DEQ_FN(name, bits, nt) \
    static void name(const job_t *j, int64_t r0, int64_t r1) { deq_rows(j, r0, r1, bits, nt); }
DEQ_FN(deq_b4, 4, 1)
DEQ_FN(deq_b8_t1, 8, 1)
DEQ_FN(deq_b8_t2, 8, 2)
DEQ_FN(deq_b8_t3, 8, 3)
DEQ_FN(deq_b8_t4, 8, 4)

/* rows [r0, r1) of w = codebook[indices], float32 or bf16 bits (j->out_bf16) */
void wc_deq_neon(const job_t *j, int64_t r0, int64_t r1) {
    static void (*const by_nt[4])(const job_t *, int64_t, int64_t) = {deq_b8_t1, deq_b8_t2, deq_b8_t3, deq_b8_t4};
    if (j->index_bits == 4) deq_b4(j, r0, r1);
    else if (j->K <= 64) by_nt[(j->K - 1) / 16](j, r0, r1);
    else wc_deq_c(j, r0, r1);
}

#define WC_I8_DOT16(acc, xq, q) wc_dot16_neon((acc), (xq), (q))
#define WC_I8_SUM16(acc, q) wc_sum16_neon((acc), (q))
#define WC_I8_KERNEL wc_i8_gemv_neon
#include "neon_i8.h"

range_fn wc_i8_gemv_arm64(void) {
    const int level = wc_isa();
    return level >= ISA_DOTPROD ? wc_i8_gemv_dotprod : level >= ISA_NEON ? wc_i8_gemv_neon : wc_i8_gemv_c;
}
#endif
