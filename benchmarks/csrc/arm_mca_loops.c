/* The inner loops of the ARM64 kernels, one block of 16 weights per iteration and one row of x
 * (a token), for llvm-mca (benchmarks/arm_mca.py compiles this to assembly and analyses the code
 * between each pair of LLVM-MCA markers). Each loop calls the building blocks the kernels call
 * (src/wclust/csrc/arm64/neon_common.h) in the kernels' order: f32_chunk with one row of x (4
 * accumulators), i8_chunk with one row of x; 4-bit indices two blocks an iteration, as there. Not part of the library. Build with -DWC_MCA_DOTPROD
 * (and -march=armv8.2-a+dotprod) for the sdot loops. */
#include <stdint.h>

#include "arm64/neon_common.h"

#define MCA_BEGIN(name) __asm__ volatile("// LLVM-MCA-BEGIN " name)
#define MCA_END(name) __asm__ volatile("// LLVM-MCA-END " name)

/* fp32 compute, codebook lookups: 8-bit K <= 16 * NT (4-bit: f32_b4_x2 below) */
#define F32_TBL(fname, name, bits, nt)                                                                 \
    float fname(const uint8_t *row, const float *x, const uint8_t *planes, int64_t nb) {                \
        uint8x16_t P[4][4];                                                                            \
        for (int p = 0; p < 4; p++) wc_tbl_load(P[p], planes + 256 * p, nt);                           \
        float32x4_t acc[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};         \
        for (int64_t b = 0; b < nb; b++) {                                                             \
            MCA_BEGIN(name);                                                                           \
            float32x4_t f[4];                                                                          \
            wc_lookup_f32(P, wc_idx16(row, 16 * b, bits), nt, f);                                      \
            for (int q = 0; q < 4; q++) acc[q] = vfmaq_f32(acc[q], f[q], vld1q_f32(x + 16 * b + 4 * q)); \
            MCA_END(name);                                                                             \
        }                                                                                              \
        return vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));            \
    }
F32_TBL(f32_b8_k16, "f32_8bit_k16", 8, 1)
F32_TBL(f32_b8_k32, "f32_8bit_k32", 8, 2)
F32_TBL(f32_b8_k64, "f32_8bit_k64", 8, 4)

/* 4-bit, two blocks an iteration (one 16-byte load of indices, as the kernels): the region's name
 * ends in _x2 (arm_mca.py halves its cycles) */
float f32_b4_x2(const uint8_t *row, const float *x, const uint8_t *planes, int64_t nb) {
    uint8x16_t P[4][4];
    for (int p = 0; p < 4; p++) wc_tbl_load(P[p], planes + 256 * p, 1);
    float32x4_t acc[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
    for (int64_t b = 0; b + 2 <= nb; b += 2) {
        MCA_BEGIN("f32_4bit_x2");
        uint8x16_t v[2];
        wc_nib32(row + 8 * b, &v[0], &v[1]);
        for (int h = 0; h < 2; h++) {
            float32x4_t f[4];
            wc_lookup_f32(P, v[h], 1, f);
            for (int q = 0; q < 4; q++) acc[q] = vfmaq_f32(acc[q], f[q], vld1q_f32(x + 16 * (b + h) + 4 * q));
        }
        MCA_END("f32_4bit_x2");
    }
    return vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
}

/* fp32 compute, K > 64: lane-load gather */
float f32_b8_gather(const uint8_t *row, const float *x, const float *t, int64_t nb) {
    float32x4_t acc[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
    for (int64_t b = 0; b < nb; b++) {
        MCA_BEGIN("f32_8bit_k256_gather");
        float32x4_t f[4];
        wc_gather_f32(t, row + 16 * b, f);
        for (int q = 0; q < 4; q++) acc[q] = vfmaq_f32(acc[q], f[q], vld1q_f32(x + 16 * b + 4 * q));
        MCA_END("f32_8bit_k256_gather");
    }
    return vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
}

/* what ran on ARM64 before these kernels: portable/lut_c.c's wc_gemv_c, one float sum in index
 * order (its adds are a dependent chain: C does not reassociate float sums) */
float f32_portable_c(const uint8_t *row, const float *x, const float *t, int64_t nb) {
    float acc = 0.f;
    for (int64_t b = 0; b < nb; b++) {
        MCA_BEGIN("f32_portable_c");
        for (int i = 0; i < 16; i++) acc += x[16 * b + i] * t[row[16 * b + i]];
        MCA_END("f32_portable_c");
    }
    return acc;
}

/* dense fp32: the weights themselves (16 floats) and 4 fmla */
float f32_dense(const float *w, const float *x, int64_t nb) {
    float32x4_t acc[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
    for (int64_t b = 0; b < nb; b++) {
        MCA_BEGIN("f32_dense");
        for (int q = 0; q < 4; q++)
            acc[q] = vfmaq_f32(acc[q], vld1q_f32(w + 16 * b + 4 * q), vld1q_f32(x + 16 * b + 4 * q));
        MCA_END("f32_dense");
    }
    return vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
}

/* dequantize (many rows of x): 16 floats stored with st4, or 16 bf16 with st2 (deq_rows) */
#define DEQ(fname, name, nt, bf16)                                                                     \
    void fname(const uint8_t *row, void *w, const uint8_t *planes, int64_t nb) {                       \
        uint8x16_t P[4][4];                                                                            \
        for (int p = 0; p < 4; p++) wc_tbl_load(P[p], planes + 256 * p, nt);                           \
        for (int64_t b = 0; b < nb; b++) {                                                             \
            MCA_BEGIN(name);                                                                           \
            const uint8x16_t v = vld1q_u8(row + 16 * b);                                               \
            if (bf16) {                                                                                \
                const uint8x16x2_t o = {{wc_tbl(P[2], v, nt), wc_tbl(P[3], v, nt)}};                   \
                vst2q_u8((uint8_t *)w + 32 * b, o);                                                    \
            } else {                                                                                   \
                const uint8x16x4_t o = {{wc_tbl(P[0], v, nt), wc_tbl(P[1], v, nt), wc_tbl(P[2], v, nt), \
                                         wc_tbl(P[3], v, nt)}};                                        \
                vst4q_u8((uint8_t *)w + 64 * b, o);                                                    \
            }                                                                                          \
            MCA_END(name);                                                                             \
        }                                                                                              \
    }
DEQ(deq_f32_k16, "deq_f32_8bit_k16", 1, 0)
DEQ(deq_f32_k64, "deq_f32_8bit_k64", 4, 0)
DEQ(deq_bf16_k64, "deq_bf16_8bit_k64", 4, 1)

/* integer compute: int8 codebook lookup, row sum and product sum (i8_chunk, one row of x) */
#ifdef WC_MCA_DOTPROD
#define DOT16(acc, xq, q) vdotq_s32((acc), vreinterpretq_s8_u8(xq), (q))
#define SUM16(acc, q) vdotq_s32((acc), (q), vdupq_n_s8(1))
#define I8_SUFFIX "_sdot"
#else
#define DOT16(acc, xq, q) wc_dot16_neon((acc), (xq), (q))
#define SUM16(acc, q) wc_sum16_neon((acc), (q))
#define I8_SUFFIX "_smull"
#endif
#define I8_TBL(fname, name, bits, nt, nq)                                                              \
    int32_t fname(const uint8_t *row, const uint8_t *xq, const uint8_t *qtab, int64_t nb) {             \
        uint8x16_t Q[16];                                                                              \
        wc_tbl_load(Q, qtab, nq == 1 ? nt : 4 * nq);                                                   \
        int32x4_t acc = vdupq_n_s32(0), rsv = vdupq_n_s32(0);                                          \
        for (int64_t b = 0; b < nb; b++) {                                                             \
            MCA_BEGIN(name I8_SUFFIX);                                                                 \
            const int8x16_t q = wc_lookup_i8(Q, wc_idx16(row, 16 * b, bits), nt, nq);                  \
            rsv = SUM16(rsv, q);                                                                       \
            acc = DOT16(acc, vld1q_u8(xq + 16 * b), q);                                                \
            MCA_END(name I8_SUFFIX);                                                                   \
        }                                                                                              \
        return vaddvq_s32(acc) - vaddvq_s32(rsv);                                                      \
    }
int32_t i8_b4_x2(const uint8_t *row, const uint8_t *xq, const uint8_t *qtab, int64_t nb) {
    const uint8x16_t Q = vld1q_u8(qtab);
    int32x4_t acc = vdupq_n_s32(0), rsv = vdupq_n_s32(0);
    for (int64_t b = 0; b + 2 <= nb; b += 2) {
        MCA_BEGIN("i8_4bit_x2" I8_SUFFIX);
        uint8x16_t v[2];
        wc_nib32(row + 8 * b, &v[0], &v[1]);
        for (int h = 0; h < 2; h++) {
            const int8x16_t q = wc_lookup_i8(&Q, v[h], 1, 1);
            rsv = SUM16(rsv, q);
            acc = DOT16(acc, vld1q_u8(xq + 16 * (b + h)), q);
        }
        MCA_END("i8_4bit_x2" I8_SUFFIX);
    }
    return vaddvq_s32(acc) - vaddvq_s32(rsv);
}
I8_TBL(i8_b8_k64, "i8_8bit_k64", 8, 4, 1)
I8_TBL(i8_b8_k256, "i8_8bit_k256", 8, 4, 4)
