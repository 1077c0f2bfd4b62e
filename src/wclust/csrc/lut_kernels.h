/* Shared by the LUT kernel sources (lut_kernels.c: dispatch, pool, portable C, AVX2;
 * lut_avx512.c: AVX-512 lookups). Internal: not part of the library's C API. */
#ifndef WCLUST_LUT_KERNELS_H
#define WCLUST_LUT_KERNELS_H
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define WC_X86 1
#define T512 __attribute__((target("avx512f,avx512bw,avx512vbmi,avx512vl")))
#define T256 __attribute__((target("avx2,fma")))
#endif
#define WC_HIDDEN __attribute__((visibility("hidden")))

typedef struct {
    int64_t M, in, out, ldx, rowbytes, group_size;
    int index_bits, K, mode, out_bf16;
    const float *x;         /* GEMV: (M, ldx), permuted/padded for the mode */
    const uint8_t *idx;
    const float *tab;       /* (n_groups, 256) codebook, zero padded */
    const uint8_t *planes;  /* (n_groups, 4, 256) byte planes of tab */
    const float *bias;
    float *y;               /* (M, out) */
    void *w;                /* dequantize: (out, in) */
} job_t;

typedef void (*range_fn)(const job_t *, int64_t, int64_t);

static inline int idx_at(const job_t *j, int64_t r, int64_t c) {
    const uint8_t *row = j->idx + r * j->rowbytes;
    if (j->index_bits == 8) return row[c];
    return (row[c >> 1] >> ((c & 1) * 4)) & 15;
}

static inline uint16_t f32_to_bf16_bits(float f) { /* values are already bf16-representable */
    uint32_t u; memcpy(&u, &f, 4); return (uint16_t)(u >> 16);
}

enum { MODE_A8_16 = 1, MODE_A8_32, MODE_A4, MODE_BP1, MODE_BP2, MODE_BP4 };

#ifdef WC_X86
/* lut_avx512.c */
WC_HIDDEN void wc_lut_gemv_avx512(const job_t *j, int64_t r0, int64_t r1);
WC_HIDDEN void wc_lut_deq_avx512(const job_t *j, int64_t r0, int64_t r1);
/* position p in a lookup block -> weight within the block, for a GEMV mode (x is permuted to match) */
WC_HIDDEN int wc_lut_xperm(int mode, int p);
#endif
/* lut_gemm.c: fused LUT-GEMM (many rows of x). Blocking: m-blocks of <= GEMM_MR rows of x, k-blocks
 * of GEMM_KC features (a multiple of 16), chunks of GEMM_NCP panels of 32 output rows, m-chunks of
 * GEMM_MCB m-blocks. */
#ifndef GEMM_MR
#define GEMM_MR 13
#endif
#ifndef GEMM_KC
#define GEMM_KC 256
#endif
#ifndef GEMM_NCP
#define GEMM_NCP 16
#endif
#ifndef GEMM_MCB
#define GEMM_MCB 18
#endif
#ifndef GEMM_YCHUNK /* bytes of y per panel chunk (more panels than GEMM_NCP while within it) */
#define GEMM_YCHUNK (768 * 1024)
#endif
#ifndef GEMM_XBUF /* bytes: x packed for all k-blocks at once only up to this size */
#define GEMM_XBUF (1024 * 1024)
#endif
#ifdef WC_X86
/* job: x (M, in), mode = GEMV lookup mode, y (M, out); [u0, u1): output panels times 4 */
WC_HIDDEN void wc_lut_gemm_avx512(const job_t *j, int64_t u0, int64_t u1);
#endif
#endif
