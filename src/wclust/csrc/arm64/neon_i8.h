/* The integer GEMV on ARM64 as a template: included once by neon_lut.c (products with smull /
 * sadalp, any ARMv8 NEON) and once by dotprod_int8.c (sdot, ARMv8.2 dot product), each defining
 *   WC_I8_DOT16(acc, xq, q)  acc (int32x4) + the 16 products xq (uint8x16, 0..127) * q (int8x16)
 *   WC_I8_SUM16(acc, q)      acc (int32x4) + the 16 values q
 *   WC_I8_KERNEL             the name of the range function to define.
 * The numeric is portable/int8_c.c's (exact int32 sums acc and rs, then wc_i8_out), so results
 * equal wc_i8_gemv_c's bit for bit. Per row: the group's int8 codebook into registers (one plane:
 * <= 16 registers for K <= 256), then per block of 16 weights one lookup, the row sum and one dot
 * per row of x (x in chunks of up to 4 rows). */
#include "../internal.h"
#include "neon_common.h"

WC_AI void i8_chunk(const job_t *j, int64_t r, int64_t g, const uint8_t *row, const int8_t *tq, const uint8x16_t *Q,
                    int64_t m0, const int MC, const int bits, const int nt, const int nq) {
    const int64_t in = j->in, nb = in / 16;
    int32x4_t acc[4], rsv = vdupq_n_s32(0);
    const uint8_t *xq[4];
    for (int m = 0; m < MC; m++) { acc[m] = vdupq_n_s32(0); xq[m] = j->xq + (m0 + m) * j->ldx; }
    int64_t b = 0;
    if (bits == 4) /* two blocks from one 16-byte load of indices */
        for (; b + 2 <= nb; b += 2) {
            uint8x16_t v[2];
            wc_nib32(row + 8 * b, &v[0], &v[1]);
            for (int h = 0; h < 2; h++) {
                const int8x16_t q = wc_lookup_i8(Q, v[h], nt, nq);
                rsv = WC_I8_SUM16(rsv, q);
                for (int m = 0; m < MC; m++) acc[m] = WC_I8_DOT16(acc[m], vld1q_u8(xq[m] + 16 * (b + h)), q);
            }
        }
    for (; b < nb; b++) {
        const int8x16_t q = wc_lookup_i8(Q, wc_idx16(row, 16 * b, bits), nt, nq);
        rsv = WC_I8_SUM16(rsv, q);
        for (int m = 0; m < MC; m++) acc[m] = WC_I8_DOT16(acc[m], vld1q_u8(xq[m] + 16 * b), q);
    }
    int32_t rs = vaddvq_s32(rsv), a[4];
    for (int m = 0; m < MC; m++) a[m] = vaddvq_s32(acc[m]);
    for (int64_t c = 16 * nb; c < in; c++) {
        const int32_t v = tq[idx_at(j, r, c)];
        rs += v;
        for (int m = 0; m < MC; m++) a[m] += (int32_t)xq[m][c] * v;
    }
    for (int m = 0; m < MC; m++) j->y[(m0 + m) * j->out + r] = wc_i8_out(j, m0 + m, g, a[m], rs, r);
}

WC_AI void i8_rows(const job_t *j, int64_t r0, int64_t r1, const int bits, const int nt, const int nq) {
    uint8x16_t Q[16];
    for (int i = 0; i < 16; i++) Q[i] = vdupq_n_u8(0);
    int64_t gl = -1; /* the group whose table Q holds */
    for (int64_t r = r0; r < r1; r++) {
        const int64_t g = r / j->group_size;
        const int8_t *tq = j->qtab + g * 256;
        if (g != gl) { wc_tbl_load(Q, (const uint8_t *)tq, nq == 1 ? nt : 4 * nq); gl = g; }
        const uint8_t *row = j->idx + r * j->rowbytes;
        for (int64_t m0 = 0; m0 < j->M; m0 += 4) {
            switch (j->M - m0 < 4 ? (int)(j->M - m0) : 4) {
            case 1: i8_chunk(j, r, g, row, tq, Q, m0, 1, bits, nt, nq); break;
            case 2: i8_chunk(j, r, g, row, tq, Q, m0, 2, bits, nt, nq); break;
            case 3: i8_chunk(j, r, g, row, tq, Q, m0, 3, bits, nt, nq); break;
            default: i8_chunk(j, r, g, row, tq, Q, m0, 4, bits, nt, nq); break;
            }
        }
    }
}

#define WC_I8_FN(name, bits, nt, nq) \
    static void name(const job_t *j, int64_t r0, int64_t r1) { i8_rows(j, r0, r1, bits, nt, nq); }
WC_I8_FN(i8_b4, 4, 1, 1)
WC_I8_FN(i8_b8_t1, 8, 1, 1)
WC_I8_FN(i8_b8_t2, 8, 2, 1)
WC_I8_FN(i8_b8_t3, 8, 3, 1)
WC_I8_FN(i8_b8_t4, 8, 4, 1)
WC_I8_FN(i8_b8_q2, 8, 4, 2)
WC_I8_FN(i8_b8_q3, 8, 4, 3)
WC_I8_FN(i8_b8_q4, 8, 4, 4)

/* rows [r0, r1): every row of x (xq rows of ldx bytes, natural order) */
void WC_I8_KERNEL(const job_t *j, int64_t r0, int64_t r1) {
    static void (*const by_nt[4])(const job_t *, int64_t, int64_t) = {i8_b8_t1, i8_b8_t2, i8_b8_t3, i8_b8_t4};
    static void (*const by_nq[3])(const job_t *, int64_t, int64_t) = {i8_b8_q2, i8_b8_q3, i8_b8_q4};
    if (j->index_bits == 4) i8_b4(j, r0, r1);
    else if (j->K <= 64) by_nt[(j->K - 1) / 16](j, r0, r1);
    else by_nq[(j->K - 1) / 64 - 1](j, r0, r1);
}
