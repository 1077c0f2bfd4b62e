/* wclust's C API: every function the shared library exports, and nothing else (the library is
 * built with hidden visibility; only WC_API names are visible). Plain C, no Python or PyTorch:
 * the package calls these through ctypes, and tests/kernels/test_c_api.py checks its ctypes
 * signature tables against the prototypes below.
 *
 * Conventions: a weight is viewed as 2-D (out, in); `idx` holds one index per byte (index_bits 8)
 * or two per byte, low nibble first, rows padded to whole bytes (index_bits 4); `cb` is the
 * codebook, (n_groups, K) float32, row r using group r / group_size; K <= 256 (<= 16 at 4 bits).
 * Return codes: 0 done; 1 no kernel for this CPU / forced ISA level (the caller falls back);
 * 2 a plan's codebook changed since it was built (build a new plan); -1 bad arguments or out of
 * memory. Pointers are contiguous row-major arrays. */
#ifndef WCLUST_H
#define WCLUST_H
#include <stdint.h>

#define WC_API __attribute__((visibility("default")))

#ifdef __cplusplus
extern "C" {
#endif

/* ---- exact 1-D k-means (kmeans.c) ------------------------------------------------------------ */
WC_API int wc_key_shift(void);
WC_API int64_t wc_nkeys(void);
WC_API int64_t wc_hist_accumulate(const float *x, const float *w, int64_t n, double *c0, double *c1, double *c2);
WC_API int64_t wc_hist_compact(double *c0, double *c1, double *c2);
WC_API double wc_kmeans_dp(const double *w, const double *s1, const double *s2, int64_t m, int k, double *centroids);
WC_API void wc_build_lut(const float *bounds, int nb, uint8_t *lut);
WC_API int64_t wc_assign(const float *x, const float *w, int64_t n, const uint8_t *lut, const float *bounds, int nb,
                         const float *codebook, uint8_t *out, double *sums);

/* ---- runtime (runtime.c) --------------------------------------------------------------------- */
/* ISA level in use: 0 portable C, 1 AVX2+FMA, 2 AVX-512 F/BW/VBMI/VL (x86); 3 NEON, 4 NEON with
 * the dot product (ARM64); 0 elsewhere */
WC_API int wc_lut_isa(void);
/* use at most `level` (tests); -1 restores the detected one; returns the level now in use */
WC_API int wc_lut_force_isa(int level);
/* run threads on the OpenMP runtime at `path` (already loaded by the host), NULL: own pool.
 * 1 registered, 0 none asked, -1 not loaded / not an OpenMP runtime */
WC_API int wc_lut_use_openmp(const char *path);
/* 1 where wc_lut_gemm_bf16 runs on AMX here (CPU, OS permission, ISA level not lowered), else 0 */
WC_API int wc_lut_amx(void);

/* ---- float32 / bf16 compute on indices (api.c) ----------------------------------------------- */
typedef struct wc_plan wc_plan_t; /* a codebook's lookup tables, built once per weight */
WC_API wc_plan_t *wc_lut_plan_new(const float *cb, int64_t n_groups, int64_t K, int64_t in, int64_t out,
                                  int index_bits, int64_t group_size);
WC_API wc_plan_t *wc_lut_plan_new_bf16(const float *cb, int64_t n_groups, int64_t K, int64_t in, int64_t out,
                                       int index_bits, int64_t group_size);
WC_API void wc_lut_plan_free(wc_plan_t *p);
/* y (M, out) = x (M, in) . W^T + bias with a plan (GEMV: few rows; GEMM: fused, many rows) */
WC_API int wc_lut_plan_gemv(const wc_plan_t *p, const float *cb, const float *x, int64_t M, const uint8_t *idx,
                            const float *bias, float *y, int nthreads);
WC_API int wc_lut_plan_gemm(const wc_plan_t *p, const float *cb, const float *x, int64_t M, const uint8_t *idx,
                            const float *bias, float *y, int nthreads);
/* the same without a plan kept */
WC_API int wc_lut_gemv_f32(const float *x, int64_t M, int64_t in, const uint8_t *idx, int64_t out, int index_bits,
                           const float *cb, int64_t n_groups, int64_t K, int64_t group_size, const float *bias,
                           float *y, int nthreads);
WC_API int wc_lut_gemm_f32(const float *x, int64_t M, int64_t in, const uint8_t *idx, int64_t out, int index_bits,
                           const float *cb, int64_t n_groups, int64_t K, int64_t group_size, const float *bias,
                           float *y, int nthreads);
/* w (out, in) = cb[idx], float32 or bf16 bits (out_bf16) */
WC_API int wc_lut_dequant(const uint8_t *idx, int64_t out, int64_t in, int index_bits, const float *cb,
                          int64_t n_groups, int64_t K, int64_t group_size, void *w, int out_bf16, int nthreads);
/* the same as bf16 bits in oneDNN's packed matmul layout: blocks of nb rows, kpad features a row */
WC_API int wc_lut_dequant_packed(const uint8_t *idx, int64_t out, int64_t in, int index_bits, const float *cb,
                                 int64_t n_groups, int64_t K, int64_t group_size, uint16_t *w, int64_t nb,
                                 int64_t kpad, int nthreads);
/* int8 compute (the numeric: portable/int8_c.c): x quantized per row to 7 bits with a zero point,
 * the codebook to int8 with a scale per group, exact int32 sums, float32 y. GEMV: few rows of x;
 * GEMM: many (W never materialized beyond a 16-row panel). Same arguments as wc_lut_plan_gemv. */
WC_API int wc_lut_plan_gemv_i8(const wc_plan_t *p, const float *cb, const float *x, int64_t M, const uint8_t *idx,
                               const float *bias, float *y, int nthreads);
WC_API int wc_lut_plan_gemm_i8(const wc_plan_t *p, const float *cb, const float *x, int64_t M, const uint8_t *idx,
                               const float *bias, float *y, int nthreads);
/* the numeric's two quantizers: x (M, in) -> xq (M, ldq bytes, zero padded), scales, zero points;
 * codebook (n_groups, K) -> qtab (n_groups, 256, zero padded), scales */
WC_API void wc_i8_quantize_x(const float *x, int64_t M, int64_t in, uint8_t *xq, int64_t ldq, float *xs, int32_t *xz);
WC_API void wc_i8_quantize_codebook(const float *cb, int64_t n_groups, int64_t K, int8_t *qtab, float *qs);
/* bf16 compute on AMX tiles: x float32 or bf16 bits (x_bf16), y float32 or bf16 bits (y_bf16) */
WC_API int wc_lut_gemm_bf16(const void *x, int x_bf16, int64_t M, int64_t in, const uint8_t *idx, int64_t out,
                            int index_bits, const float *cb, int64_t n_groups, int64_t K, int64_t group_size,
                            const float *bias, void *y, int y_bf16, int nthreads);

#ifdef __cplusplus
}
#endif
#endif
