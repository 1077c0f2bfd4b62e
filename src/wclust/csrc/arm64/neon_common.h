/* ARM64 NEON building blocks shared by the kernels (neon_lut.c, dotprod_int8.c) and by the
 * llvm-mca loops of benchmarks/arm_mca.py, so the loops analysed are the ones that run.
 *
 * Codebook lookups with tbl: a float codebook (zero padded to 256 entries) is kept as 4 byte
 * planes (plane b holds byte b of every entry); for K <= 64 each plane fits in nt = ceil(K/16)
 * q-registers and one tbl (vqtbl1q_u8 .. vqtbl4q_u8) looks up byte b of 16 weights at once; 4
 * lookups and 8 zips rebuild the 16 floats in natural order (NEON's zips span the whole register,
 * so unlike AVX-512's lane-wise unpacks no permutation of x is needed). An int8 codebook is one
 * plane: up to 16 registers, one tbl for each 64 entries. */
#ifndef WCLUST_NEON_COMMON_H
#define WCLUST_NEON_COMMON_H
#include <arm_neon.h>
#include <stdint.h>

#define WC_AI static inline __attribute__((always_inline))

/* 16 4-bit indices (8 bytes, low nibble first) as 16 bytes in order: the 8 bytes in the low half
 * of a register (ldr d), and one zip1 of their low and high nibbles (no lane insert) */
WC_AI uint8x16_t wc_nib16(const uint8_t *p) {
    const uint8x16_t b = vcombine_u8(vld1_u8(p), vdup_n_u8(0));
    return vzip1q_u8(vandq_u8(b, vdupq_n_u8(15)), vshrq_n_u8(b, 4));
}

/* 32 4-bit indices (16 bytes) as two vectors of 16 bytes in order (whole-register ops only) */
WC_AI void wc_nib32(const uint8_t *p, uint8x16_t *v0, uint8x16_t *v1) {
    const uint8x16_t b = vld1q_u8(p), lo = vandq_u8(b, vdupq_n_u8(15)), hi = vshrq_n_u8(b, 4);
    *v0 = vzip1q_u8(lo, hi);
    *v1 = vzip2q_u8(lo, hi);
}

/* 16 indices at block c16 (a multiple of 16) of a row of index_bits bits */
WC_AI uint8x16_t wc_idx16(const uint8_t *row, int64_t c16, const int bits) {
    return bits == 8 ? vld1q_u8(row + c16) : wc_nib16(row + c16 / 2);
}

/* byte v[i] of the table T (nt registers, 16 * nt entries; 0 past them) for each of 16 indices */
WC_AI uint8x16_t wc_tbl(const uint8x16_t *T, uint8x16_t v, const int nt) {
    if (nt == 1) return vqtbl1q_u8(T[0], v);
    if (nt == 2) { const uint8x16x2_t t = {{T[0], T[1]}}; return vqtbl2q_u8(t, v); }
    if (nt == 3) { const uint8x16x3_t t = {{T[0], T[1], T[2]}}; return vqtbl3q_u8(t, v); }
    const uint8x16x4_t t = {{T[0], T[1], T[2], T[3]}};
    return vqtbl4q_u8(t, v);
}

/* the nt registers of a 256-byte table row */
WC_AI void wc_tbl_load(uint8x16_t *T, const uint8_t *p, const int nt) {
    for (int i = 0; i < nt; i++) T[i] = vld1q_u8(p + 16 * i);
}

/* 4 float32x4 (weights 0..15 of the block, in order) from the 4 byte planes' lookups */
WC_AI void wc_planes_f32(uint8x16_t p0, uint8x16_t p1, uint8x16_t p2, uint8x16_t p3, float32x4_t f[4]) {
    const uint16x8_t a = vreinterpretq_u16_u8(vzip1q_u8(p0, p1)), b = vreinterpretq_u16_u8(vzip2q_u8(p0, p1));
    const uint16x8_t c = vreinterpretq_u16_u8(vzip1q_u8(p2, p3)), d = vreinterpretq_u16_u8(vzip2q_u8(p2, p3));
    f[0] = vreinterpretq_f32_u16(vzip1q_u16(a, c));
    f[1] = vreinterpretq_f32_u16(vzip2q_u16(a, c));
    f[2] = vreinterpretq_f32_u16(vzip1q_u16(b, d));
    f[3] = vreinterpretq_f32_u16(vzip2q_u16(b, d));
}

/* the 16 float weights of 16 indices v from the byte planes P[4][nt] (K <= 64) */
WC_AI void wc_lookup_f32(const uint8x16_t P[4][4], uint8x16_t v, const int nt, float32x4_t f[4]) {
    wc_planes_f32(wc_tbl(P[0], v, nt), wc_tbl(P[1], v, nt), wc_tbl(P[2], v, nt), wc_tbl(P[3], v, nt), f);
}

/* the same for K > 64: four loads per vector (a table in L1, no tbl) */
WC_AI void wc_gather_f32(const float *t, const uint8_t *ix, float32x4_t f[4]) {
    for (int q = 0; q < 4; q++) {
        float32x4_t w = vld1q_dup_f32(t + ix[4 * q]);
        w = vld1q_lane_f32(t + ix[4 * q + 1], w, 1);
        w = vld1q_lane_f32(t + ix[4 * q + 2], w, 2);
        f[q] = vld1q_lane_f32(t + ix[4 * q + 3], w, 3);
    }
}

/* int8 codebook values of 16 indices: Q holds 16 * nt entries for nq == 1 (nt 1..4), else nq
 * quarters of 64 (16 registers at most): one tbl per quarter on the index minus its start (tbl
 * gives 0 past its 64 entries, so exactly one quarter answers) and ORs; independent lookups, where
 * a tbl / tbx chain (tbx keeps what it cannot look up) is one dependent sequence */
WC_AI int8x16_t wc_lookup_i8(const uint8x16_t *Q, uint8x16_t v, const int nt, const int nq) {
    if (nq == 1) return vreinterpretq_s8_u8(wc_tbl(Q, v, nt));
    const uint8x16x4_t t0 = {{Q[0], Q[1], Q[2], Q[3]}};
    uint8x16_t r = vqtbl4q_u8(t0, v);
    for (int k = 1; k < nq; k++) {
        const uint8x16x4_t tk = {{Q[4 * k], Q[4 * k + 1], Q[4 * k + 2], Q[4 * k + 3]}};
        r = vorrq_u8(r, vqtbl4q_u8(tk, vsubq_u8(v, vdupq_n_u8((uint8_t)(64 * k)))));
    }
    return vreinterpretq_s8_u8(r);
}

/* exact int32 sums of 16 products xq (0..127) * q (-127..127) without the dot product: smull (int16
 * products, |p| <= 16129) and pairwise accumulate (sadalp) */
WC_AI int32x4_t wc_dot16_neon(int32x4_t acc, uint8x16_t xq, int8x16_t q) {
    const int8x16_t x = vreinterpretq_s8_u8(xq);
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(x), vget_low_s8(q)));
    return vpadalq_s16(acc, vmull_high_s8(x, q));
}
/* the sum of 16 int8 values into 4 int32 lanes */
WC_AI int32x4_t wc_sum16_neon(int32x4_t acc, int8x16_t q) { return vpadalq_s16(acc, vpaddlq_s8(q)); }

#endif
