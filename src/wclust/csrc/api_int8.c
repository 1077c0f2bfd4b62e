/* The exported entry points of integer compute (wclust.h): x quantized per row, then the GEMV or
 * the GEMM of the ISA in use (x86/avx2_int8.c, arm64/dotprod_int8.c, portable/int8_c.c; the
 * numeric: portable/int8_c.c). Plans are api.c's. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "wclust.h"

/* int8 compute (portable/int8_c.c has the numeric): x quantized per row here, then the GEMV
 * (gemm == 0: few rows) or the GEMM (many rows) on the indices. 0; 1 in >= 2^17 features (no
 * kernel: int32 sums could overflow); 2 stale plan; -1 bad arguments / out of memory. */
#ifdef WC_X86
/* The AVX2 GEMV's operands, in place of the quantized x (rows of ldx bytes): 4-bit weights come as
 * even features then odd per whole block of 64 (the nibbles' order), so x is permuted to match; then
 * x without its zero point (int8, in xq) and its magnitude (returned; NULL out of memory). */
static uint8_t *gemv_operands_x86(uint8_t *xq, const int32_t *xz, int64_t M, int64_t in, int64_t ldx, int index_bits) {
    if (index_bits == 4) {
        uint8_t tmp[64];
        for (int64_t m = 0; m < M; m++)
            for (int64_t c = 0; c + 64 <= in; c += 64) {
                uint8_t *b = xq + m * ldx + c;
                for (int e = 0; e < 32; e++) { tmp[e] = b[2 * e]; tmp[32 + e] = b[2 * e + 1]; }
                memcpy(b, tmp, 64);
            }
    }
    uint8_t *xa = (uint8_t *)malloc((size_t)(M * ldx));
    if (!xa) return NULL;
    for (int64_t m = 0; m < M; m++)
        for (int64_t c = 0; c < ldx; c++) {
            const int v = c < in ? (int)xq[m * ldx + c] - xz[m] : 0;
            xq[m * ldx + c] = (uint8_t)(int8_t)v;
            xa[m * ldx + c] = (uint8_t)(v < 0 ? -v : v);
        }
    return xa;
}
#endif

static int plan_linear_i8(const wc_plan_t *p, const float *cb, const float *x, int64_t M, const uint8_t *idx,
                          const float *bias, float *y, int nthreads, int gemm) {
    if (!p || M < 0 || p->bf16) return -1;
    if (p->in >= (1 << 17)) return 1; /* int32 sums could overflow: the caller takes the reference */
    if (!wc_plan_current(p, cb)) return 2;
    if (M == 0 || p->out == 0) return 0;
    const int64_t ldx = ((p->in + 63) & ~(int64_t)63) + 64;
    uint8_t *xq = (uint8_t *)aligned_alloc(64, (size_t)(M * ldx));
    float *xs = (float *)malloc((size_t)M * sizeof(float));
    int32_t *xz = (int32_t *)malloc((size_t)M * sizeof(int32_t));
    if (!xq || !xs || !xz) { free(xq); free(xs); free(xz); return -1; }
#ifdef WC_X86
    const int avx2 = wc_isa() == ISA_AVX2 || wc_isa() == ISA_AVX512;
    if (avx2) wc_i8_quantize_x_avx2(x, M, p->in, xq, ldx, xs, xz);
    else
#endif
        wc_i8_quantize_x(x, M, p->in, xq, ldx, xs, xz);
    job_t j;
    wc_init_linear_job(&j, p, M, idx, bias, y);
    j.xq = xq; j.ldx = ldx; j.xs = xs; j.xz = xz; j.qtab = p->qtab; j.qs = p->qs;
    int fail = 0;
    j.fail = &fail;
    uint8_t *xa = NULL;
    range_fn fn = wc_i8_gemv_c;
    int64_t units = p->out;
#ifdef WC_X86
    if (avx2) {
        if (gemm) {
            fn = wc_i8_gemm_avx2;
            units = 4 * ((p->out + 15) / 16);
        } else {
            fn = wc_i8_gemv_avx2;
            xa = gemv_operands_x86(xq, xz, M, p->in, ldx, p->index_bits);
            if (!xa) { free(xq); free(xs); free(xz); return -1; }
            j.xa = xa;
        }
    }
#endif
#ifdef WC_ARM64
    if (wc_isa() >= ISA_NEON) fn = wc_i8_gemv_arm64(); /* every row of x, any count (no GEMM of its own yet) */
#endif
    wc_parallel_rows(&j, fn, units, nthreads);
    free(xq); free(xs); free(xz); free(xa);
    return fail ? -1 : 0;
}

int wc_lut_plan_gemv_i8(const wc_plan_t *p, const float *cb, const float *x, int64_t M, const uint8_t *idx,
                        const float *bias, float *y, int nthreads) {
    return plan_linear_i8(p, cb, x, M, idx, bias, y, nthreads, 0);
}

int wc_lut_plan_gemm_i8(const wc_plan_t *p, const float *cb, const float *x, int64_t M, const uint8_t *idx,
                        const float *bias, float *y, int nthreads) {
    return plan_linear_i8(p, cb, x, M, idx, bias, y, nthreads, 1);
}

