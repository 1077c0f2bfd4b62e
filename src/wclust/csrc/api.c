/* LUT kernels: y = x . W^T + b where W is given as uint8 indices into a short codebook.
 *
 * Layout (weight viewed as 2-D, out x in): indices one byte per weight (index_bits == 8) or two
 * per byte, low nibble first, each row padded to whole bytes (index_bits == 4); codebook
 * (n_groups, K) float32, row r uses group r / group_size; K <= 256.
 *
 * GEMV (few rows of x, bandwidth-bound): codebook lookups in registers.
 *   AVX-512: 4-bit and 8-bit K <= 32: each dword of 4 (8-bit) or 8 (4-bit) indices is shifted so
 *   the wanted index sits in its low bits, then vpermps / vpermt2ps look up 16 weights at once
 *   (both ignore the higher bits); K <= 256: byte-plane lookups (the codebook split into 4 byte
 *   planes, vpermb / vpermt2b per plane, byte unpacks rebuild the floats). Both produce weights in
 *   a fixed permuted order inside a block, so x is permuted once per call to match.
 *   AVX2: gathers. Portable C: scalar.
 * Dequantize (many rows of x: the caller multiplies with its BLAS): rows of W into a float32 or
 *   bfloat16 buffer, byte-plane lookups with the indices pre-permuted into natural order.
 * Threads: output rows split across the host's OpenMP team when the caller registered PyTorch's
 *   OpenMP runtime (wc_lut_use_openmp), else across a persistent pthread pool (torch's count).
 * This file: plans and the exported entry points (every one declared in wclust.h), which pick a
 * kernel for the ISA runtime.c chose (AVX-512 F/BW/VBMI -> AVX2/FMA -> portable; wc_lut_force_isa
 * lowers it for tests) and split its rows over runtime.c's threads. Kernels: portable/ (plain C),
 * x86/ (AVX2, AVX-512, AMX), arm64/ (NEON).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "wclust.h"

/* ---- entry points -------------------------------------------------------------------------- */

static int check(int64_t K, int index_bits, int64_t group_size, int64_t n_groups, int64_t out) {
    return K >= 1 && K <= 256 && (index_bits == 8 || (index_bits == 4 && K <= 16)) && group_size >= 1 &&
           n_groups >= 1 && (out == 0 || (out - 1) / group_size < n_groups);
}

/* the in-register lookup used for a width and codebook length (AVX-512 GEMV and fused GEMM) */
static int lut_mode(int index_bits, int64_t K) {
    return index_bits == 4 ? MODE_A4 : K <= 16 ? MODE_A8_16 : K <= 32 ? MODE_A8_32
         : K <= 64 ? MODE_BP1 : K <= 128 ? MODE_BP2 : MODE_BP4;
}

void wc_lut_plan_free(wc_plan_t *p) {
    if (!p) return;
    free(p->tab); free(p->planes); free(p->src); free(p->qtab); free(p->qs); free(p);
}

/* d[i] = s[i] rounded to bf16, n values (d may be s) */
static void round_bf16(float *d, const float *s, int64_t n) {
#ifdef WC_X86
    if (wc_isa() == ISA_AVX512) { wc_bf16_round_avx512(d, s, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) d[i] = bf16_round(s[i]);
}

static wc_plan_t *plan_build(const float *cb, int64_t n_groups, int64_t K, int64_t in, int64_t out, int index_bits,
                             int64_t group_size, int bf16) {
    if (!check(K, index_bits, group_size, n_groups, out) || in < 0 || out < 0) return NULL;
    wc_plan_t *p = (wc_plan_t *)calloc(1, sizeof *p);
    if (!p) return NULL;
    p->in = in; p->out = out; p->n_groups = n_groups; p->group_size = group_size; p->index_bits = index_bits;
    p->K = (int)K; p->rowbytes = index_bits == 8 ? in : (in + 1) / 2;
    p->mode = lut_mode(index_bits, K); p->bw = p->mode == MODE_A4 ? 128 : 64;
    p->bf16 = bf16;
    p->tab = (float *)calloc((size_t)n_groups * 256, sizeof(float));
    p->planes = (uint8_t *)malloc((size_t)n_groups * 1024);
    if (bf16) p->src = (float *)malloc((size_t)(n_groups * K) * sizeof(float) + 1);
    p->qtab = (int8_t *)malloc((size_t)n_groups * 256);
    p->qs = (float *)malloc((size_t)n_groups * sizeof(float));
    if (!p->tab || !p->planes || (bf16 && !p->src) || !p->qtab || !p->qs) { wc_lut_plan_free(p); return NULL; }
    wc_i8_quantize_codebook(cb, n_groups, K, p->qtab, p->qs);
    if (bf16) memcpy(p->src, cb, (size_t)(n_groups * K) * sizeof(float));
    for (int64_t g = 0; g < n_groups; g++) {
        float *t = p->tab + g * 256;
        memcpy(t, cb + g * K, (size_t)K * sizeof(float));
        if (bf16) round_bf16(t, t, K);
        for (int c = 0; c < 256; c++) {
            uint32_t u; memcpy(&u, p->tab + g * 256 + c, 4);
            for (int b = 0; b < 4; b++) p->planes[g * 1024 + b * 256 + c] = (uint8_t)(u >> (8 * b));
        }
    }
#ifdef WC_X86
    for (int q = 0; q < p->bw; q++) p->xperm[q] = wc_lut_xperm(p->mode, q);
#endif
    return p;
}

/* The plan of a weight (out, in) with codebook cb (n_groups, K) float32; NULL on bad arguments or
 * out of memory. Free with wc_lut_plan_free. */
wc_plan_t *wc_lut_plan_new(const float *cb, int64_t n_groups, int64_t K, int64_t in, int64_t out, int index_bits,
                           int64_t group_size) {
    return plan_build(cb, n_groups, K, in, out, index_bits, group_size, 0);
}

/* The same for bf16 compute in the GEMV: the codebook rounded to bf16, and x, the bias and y
 * rounded to bf16 by wc_lut_plan_gemv (float32 accumulation): the values of casting x and the
 * weight to bf16, computing, and rounding the result to bf16, as torch's bf16 linear does. */
wc_plan_t *wc_lut_plan_new_bf16(const float *cb, int64_t n_groups, int64_t K, int64_t in, int64_t out,
                                int index_bits, int64_t group_size) {
    return plan_build(cb, n_groups, K, in, out, index_bits, group_size, 1);
}

/* the job of y (M, out) = x (M, in) . W^T + bias, shared by the GEMV and the fused GEMM */
void wc_init_linear_job(job_t *j, const wc_plan_t *p, int64_t M, const uint8_t *idx, const float *bias, float *y) {
    memset(j, 0, sizeof *j);
    j->M = M; j->in = p->in; j->out = p->out; j->index_bits = p->index_bits; j->group_size = p->group_size;
    j->rowbytes = p->rowbytes; j->K = p->K; j->mode = p->mode;
    j->tab = p->tab; j->planes = p->planes;
    j->idx = idx; j->bias = bias; j->y = y;
}

/* Whether codebook cb (n_groups, K) still holds the values the plan was built from (a few
 * hundred bytes compared: cheaper than any version bookkeeping, and it also covers tensors that
 * have no version counter, e.g. PyTorch's inference tensors). */
int wc_plan_current(const wc_plan_t *p, const float *cb) {
    if (p->src) return !memcmp(p->src, cb, (size_t)(p->n_groups * p->K) * sizeof(float));
    for (int64_t g = 0; g < p->n_groups; g++)
        if (memcmp(p->tab + g * 256, cb + g * p->K, (size_t)p->K * sizeof(float))) return 0;
    return 1;
}

/* y (M, out) = x (M, in) . W^T + bias with a plan built from codebook cb. Returns 0; 2 when cb no
 * longer holds the plan's values (nothing computed: build a new plan); -1 bad arguments / out of
 * memory. */
int wc_lut_plan_gemv(const wc_plan_t *p, const float *cb, const float *x, int64_t M, const uint8_t *idx,
                     const float *bias, float *y, int nthreads) {
    if (!p || M < 0) return -1;
    if (!wc_plan_current(p, cb)) return 2;
    float *xr = NULL, *br = NULL; /* bf16 plans: x and the bias rounded to bf16 */
    if (p->bf16) {
        xr = (float *)malloc((size_t)(M * p->in) * sizeof(float) + 1);
        br = bias ? (float *)malloc((size_t)p->out * sizeof(float) + 1) : NULL;
        if (!xr || (bias && !br)) { free(xr); free(br); return -1; }
        round_bf16(xr, x, M * p->in);
        if (br) round_bf16(br, bias, p->out);
        x = xr; bias = br;
    }
    job_t j;
    wc_init_linear_job(&j, p, M, idx, bias, y);
    float *xp = NULL;
    range_fn fn = wc_gemv_c;
#ifdef WC_X86
    int level = wc_isa();
    if (level == ISA_AVX512) {
        /* x permuted per lookup block to the order the lookups produce weights in, zero padded
         * to whole blocks; 64-byte aligned, so no load of x splits a cache line */
        const int bw = p->bw;
        const int64_t in = p->in, nblk = (p->rowbytes + 63) / 64, full = in / bw;
        j.ldx = nblk * bw;
        xp = (float *)aligned_alloc(64, ((size_t)(M * j.ldx) * sizeof(float) + 127) & ~(size_t)63);
        if (!xp) return -1;
        for (int64_t m = 0; m < M; m++) {
            const float *xm = x + m * in;
            float *dst = xp + m * j.ldx;
            for (int64_t b = 0; b < full; b++, dst += bw, xm += bw)
                for (int q = 0; q < bw; q++) dst[q] = xm[p->xperm[q]];
            for (int64_t b = full; b < nblk; b++, dst += bw)
                for (int q = 0; q < bw; q++) {
                    int64_t c = b * bw + p->xperm[q];
                    dst[q] = c < in ? x[m * in + c] : 0.f;
                }
        }
        j.x = xp;
        fn = wc_lut_gemv_avx512;
    } else if (level == ISA_AVX2) {
        fn = wc_gemv_avx2;
    }
#endif
#ifdef WC_ARM64
    if (wc_isa() >= ISA_NEON) fn = wc_gemv_neon; /* x in natural order */
#endif
    if (!j.x) { j.x = x; j.ldx = p->in; }
    wc_parallel_rows(&j, fn, p->out, nthreads);
    free(xp);
    if (p->bf16) {
        round_bf16(y, y, M * p->out);
        free(xr); free(br);
    }
    return 0;
}

/* Fused LUT-GEMM (x86/avx512_gemm.c), float32, with a plan: y (M, out) = x (M, in) . W^T + bias, computed
 * from the indices without materializing W (for many rows of x; the GEMV above is for few).
 * Returns 0; 1 when this CPU / forced ISA level has no fused kernel (the caller falls back, e.g.
 * to wc_lut_dequant + its BLAS); 2 stale plan, as for the GEMV; -1 bad arguments or out of memory. */
int wc_lut_plan_gemm(const wc_plan_t *p, const float *cb, const float *x, int64_t M, const uint8_t *idx,
                     const float *bias, float *y, int nthreads) {
    if (!p || M < 0 || p->bf16) return -1;  /* bf16 plans are for the GEMV */
    if (!wc_plan_current(p, cb)) return 2;
#ifdef WC_X86
    if (wc_isa() != ISA_AVX512) return 1;
    if (M == 0 || p->out == 0) return 0;
    if (p->in == 0) {
        for (int64_t m = 0; m < M; m++)
            for (int64_t r = 0; r < p->out; r++) y[m * p->out + r] = bias ? bias[r] : 0.f;
        return 0;
    }
    job_t j;
    wc_init_linear_job(&j, p, M, idx, bias, y);
    j.x = x;
    wc_parallel_rows(&j, wc_lut_gemm_avx512, 4 * ((p->out + 31) / 32), nthreads);
    return 0;
#else
    (void)x; (void)idx; (void)bias; (void)y; (void)nthreads;
    return 1;
#endif
}

typedef int (*plan_linear_fn)(const wc_plan_t *, const float *, const float *, int64_t, const uint8_t *,
                              const float *, float *, int);

/* one call without a plan kept: build, run, free */
static int linear_once(plan_linear_fn fn, const float *x, int64_t M, int64_t in, const uint8_t *idx, int64_t out,
                       int index_bits, const float *cb, int64_t n_groups, int64_t K, int64_t group_size,
                       const float *bias, float *y, int nthreads) {
    if (!check(K, index_bits, group_size, n_groups, out) || M < 0 || in < 0 || out < 0) return -1;
    wc_plan_t *p = wc_lut_plan_new(cb, n_groups, K, in, out, index_bits, group_size);
    if (!p) return -1;
    int rc = fn(p, cb, x, M, idx, bias, y, nthreads);
    wc_lut_plan_free(p);
    return rc;
}

/* y (M, out) = x (M, in) . W^T + bias. Returns 0, or -1 (bad arguments / out of memory). */
int wc_lut_gemv_f32(const float *x, int64_t M, int64_t in, const uint8_t *idx, int64_t out, int index_bits,
                    const float *cb, int64_t n_groups, int64_t K, int64_t group_size, const float *bias,
                    float *y, int nthreads) {
    return linear_once(wc_lut_plan_gemv, x, M, in, idx, out, index_bits, cb, n_groups, K, group_size, bias, y,
                       nthreads);
}

/* wc_lut_plan_gemm without a plan kept (same return codes). */
int wc_lut_gemm_f32(const float *x, int64_t M, int64_t in, const uint8_t *idx, int64_t out, int index_bits,
                    const float *cb, int64_t n_groups, int64_t K, int64_t group_size, const float *bias,
                    float *y, int nthreads) {
    return linear_once(wc_lut_plan_gemm, x, M, in, idx, out, index_bits, cb, n_groups, K, group_size, bias, y,
                       nthreads);
}

/* Both dequantizes: a plan for the lookup tables, then rows (plain) or 16-row units of the packed
 * layout (pnb > 0) split over the threads. 0, or -1 when the plan cannot be made. */
static int dequant_job(const uint8_t *idx, int64_t out, int64_t in, int index_bits, const float *cb, int64_t n_groups,
                       int64_t K, int64_t group_size, void *w, int out_bf16, int64_t pnb, int64_t pkp2,
                       int nthreads) {
    wc_plan_t *p = wc_lut_plan_new(cb, n_groups, K, in, out, index_bits, group_size);
    if (!p) return -1;
    job_t j;
    wc_init_linear_job(&j, p, 0, idx, NULL, NULL);
    j.w = w; j.out_bf16 = out_bf16 != 0; j.pnb = pnb; j.pkp2 = pkp2;
    range_fn fn = pnb ? wc_deq_packed_c : wc_deq_c;
#ifdef WC_X86
    int level = wc_isa();
    if (level == ISA_AVX512) fn = pnb ? wc_lut_deq_packed_avx512 : wc_lut_deq_avx512;
    else if (level == ISA_AVX2 && !pnb) fn = wc_deq_avx2;
#endif
#ifdef WC_ARM64
    if (wc_isa() >= ISA_NEON && !pnb) fn = wc_deq_neon;
#endif
    wc_parallel_rows(&j, fn, pnb ? (out + 15) / 16 : out, nthreads);
    wc_lut_plan_free(p);
    return 0;
}

/* w (out, in) = codebook[indices], float32 (out_bf16 == 0) or bfloat16 bits (out_bf16 == 1; the
 * codebook values must then be bf16-representable: the upper 16 bits of each float are kept). */
int wc_lut_dequant(const uint8_t *idx, int64_t out, int64_t in, int index_bits, const float *cb, int64_t n_groups,
                   int64_t K, int64_t group_size, void *w, int out_bf16, int nthreads) {
    return dequant_job(idx, out, in, index_bits, cb, n_groups, K, group_size, w, out_bf16, 0, 0, nthreads);
}

/* w = codebook[indices] as bfloat16 bits in oneDNN's packed matmul layout (packed_at in
 * internal.h): blocks of nb rows (a multiple of 16), kpad features per row (even, >= in);
 * padding is not written. The codebook values must be bf16-representable. 0, or -1 on bad
 * arguments / out of memory. */
int wc_lut_dequant_packed(const uint8_t *idx, int64_t out, int64_t in, int index_bits, const float *cb,
                          int64_t n_groups, int64_t K, int64_t group_size, uint16_t *w, int64_t nb, int64_t kpad,
                          int nthreads) {
    if (nb < 16 || nb % 16 || kpad < in || kpad % 2) return -1;
    return dequant_job(idx, out, in, index_bits, cb, n_groups, K, group_size, w, 1, nb, kpad / 2, nthreads);
}

/* 1 where wc_lut_gemm_bf16 runs on AMX here (CPU, OS permission, ISA level not lowered), else 0 */
int wc_lut_amx(void) {
#ifdef WC_AMX
    return wc_isa() == ISA_AVX512 && wc_amx_ready();
#else
    return 0;
#endif
}

/* bf16 compute on AMX (x86/amx_bf16.c): y (M, out) = x (M, in) . W^T + bias with the codebook rounded to
 * bf16, x rounded to bf16 (x_bf16 == 0: float32 x) or given as bf16 bits (x_bf16 == 1), float32
 * accumulation, bias (float32) rounded to bf16 and added, the result rounded to bf16 and written as bf16 bits
 * (y_bf16 == 1) or as the float32 of that bf16 (y_bf16 == 0). Returns 0; 1 where this CPU, OS or
 * forced ISA level has no AMX (the caller falls back); -1 bad arguments or out of memory. */
int wc_lut_gemm_bf16(const void *x, int x_bf16, int64_t M, int64_t in, const uint8_t *idx, int64_t out,
                     int index_bits, const float *cb, int64_t n_groups, int64_t K, int64_t group_size,
                     const float *bias, void *y, int y_bf16, int nthreads) {
    if (!check(K, index_bits, group_size, n_groups, out) || M < 0 || in < 0 || out < 0) return -1;
#ifdef WC_AMX
    if (!wc_lut_amx()) return 1;
    if (M == 0 || out == 0) return 0;
    wc_plan_t *p = wc_lut_plan_new_bf16(cb, n_groups, K, in, out, index_bits, group_size); /* codebook rounded */
    if (!p) return -1;
    float *br = bias ? (float *)malloc((size_t)out * sizeof(float)) : NULL; /* the bias rounded, as the GEMV's */
    if (bias && !br) { wc_lut_plan_free(p); return -1; }
    if (br) round_bf16(br, bias, out);
    const int64_t ldxb = in ? (in + 31) & ~(int64_t)31 : 32, Mp = (M + 15) & ~(int64_t)15;
    uint16_t *xb = wc_amx_xbuf((size_t)(Mp * ldxb));
    if (!xb) { wc_lut_plan_free(p); free(br); return -1; }
    wc_amx_pack_x(x, x_bf16, M, in, xb, ldxb);
    int fail = 0;
    job_t j;
    wc_init_linear_job(&j, p, M, idx, br, (float *)y);
    j.out_bf16 = y_bf16 != 0; j.xb = xb; j.ldxb = ldxb; j.fail = &fail;
    wc_parallel_rows(&j, wc_lut_gemm_amx, 4 * ((out + 31) / 32), nthreads);
    wc_lut_plan_free(p);
    free(br);
    return fail ? -1 : 0;
#else
    (void)x; (void)x_bf16; (void)idx; (void)cb; (void)bias; (void)y; (void)y_bf16; (void)nthreads;
    return 1;
#endif
}
