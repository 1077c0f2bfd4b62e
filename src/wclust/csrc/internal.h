/* Shared by the kernel sources (runtime.c: ISA and threads; api.c: plans and entry points;
 * portable/, x86/, arm64/: kernels). Internal: hidden, not part of the library's C API (wclust.h). */
#ifndef WCLUST_INTERNAL_H
#define WCLUST_INTERNAL_H
#include "wclust.h"
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define WC_X86 1
#define T512 __attribute__((target("avx512f,avx512bw,avx512vbmi,avx512vl")))
#define T256 __attribute__((target("avx2,fma")))
#endif
#if defined(__aarch64__) && defined(__GNUC__) && !defined(WC_NO_ARM64) /* WC_NO_ARM64: the portable build */
#define WC_ARM64 1
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
    void *w;                /* dequantize: (out, in), or packed (below) */
    int64_t pnb, pkp2;      /* packed bf16 dequantize: rows per block, feature pairs per block row */
    int64_t prow0;          /* packed bf16 dequantize: the output row whose block starts at w (a multiple of pnb) */
    const uint16_t *xb;     /* AMX GEMM: x as bf16 bits, (M rounded up to 16, ldxb), zero padded */
    int64_t ldxb;           /* AMX GEMM: features per row of xb (in rounded up to 32) */
    int *fail;              /* AMX GEMM: set to 1 by a thread that could not allocate its buffer */
    const uint8_t *xq;      /* int8 compute: x quantized (M, ldx bytes), 7-bit unsigned (AVX2 GEMV: xq - z, int8) */
    const uint8_t *xa;      /* int8 compute, AVX2 GEMV: |xq - z| */
    const float *xs;        /* int8 compute: per row of x, its scale */
    const int32_t *xz;      /* int8 compute: per row of x, its zero point */
    const int8_t *qtab;     /* int8 compute: (n_groups, 256) codebook rounded to int8, zero padded */
    const float *qs;        /* int8 compute: (n_groups) codebook scales */
} job_t;

typedef void (*range_fn)(const job_t *, int64_t, int64_t);

/* api.c */
/* A plan: what a weight's kernels need besides the indices, built once per codebook instead of
 * per call (a model calls each layer once per token, and building the tables took ~1 us per
 * codebook group, more than the lookups of a small layer). Indices, x, bias and y are passed per
 * call, so a plan never holds a pointer into the caller's tensors. */
struct wc_plan {
    int64_t in, out, n_groups, group_size, rowbytes;
    int index_bits, K, mode, bw;  /* mode, bw: the AVX-512 GEMV's lookup and block width */
    float *tab;                   /* (n_groups, 256) codebook, zero padded */
    uint8_t *planes;              /* (n_groups, 4, 256) byte planes of tab */
    int xperm[128];               /* AVX-512 GEMV: position in a lookup block -> feature in it */
    int bf16;                     /* bf16 compute (wc_lut_plan_new_bf16): tab holds the codebook rounded */
    float *src;                   /* bf16 plans: the codebook's values as given, for plan_current */
    int8_t *qtab;                 /* int8 compute: (n_groups, 256) codebook rounded to int8 (portable/int8_c.c) */
    float *qs;                    /* int8 compute: (n_groups) their scales */
};
WC_HIDDEN void wc_init_linear_job(job_t *j, const wc_plan_t *p, int64_t M, const uint8_t *idx, const float *bias,
                                  float *y);
WC_HIDDEN int wc_plan_current(const wc_plan_t *p, const float *cb); /* cb still holds the plan's values */

/* runtime.c */
/* levels within one architecture, ordered (wc_lut_force_isa keeps the lower); ARM's follow x86's */
enum { ISA_C = 0, ISA_AVX2 = 1, ISA_AVX512 = 2, ISA_NEON = 3, ISA_DOTPROD = 4 };
WC_HIDDEN int wc_isa(void); /* the ISA level in use: detected once, lowered by wc_lut_force_isa */
/* fn(job, r0, r1) over [0, rows) split across up to nthreads threads (boundaries on multiples of 4) */
WC_HIDDEN void wc_parallel_rows(const job_t *job, range_fn fn, int64_t rows, int nthreads);

/* portable/lut_c.c */
WC_HIDDEN void wc_gemv_c(const job_t *j, int64_t r0, int64_t r1);
WC_HIDDEN void wc_deq_c(const job_t *j, int64_t r0, int64_t r1);
WC_HIDDEN void wc_deq_packed_c(const job_t *j, int64_t u0, int64_t u1); /* units of 16 rows */

/* portable/int8_c.c: integer compute (the numeric is described there) */
/* wc_i8_quantize_x, wc_i8_quantize_codebook: exported, in wclust.h */
WC_HIDDEN void wc_i8_gemv_c(const job_t *j, int64_t r0, int64_t r1);

static inline int idx_at(const job_t *j, int64_t r, int64_t c) {
    const uint8_t *row = j->idx + r * j->rowbytes;
    if (j->index_bits == 8) return row[c];
    return (row[c >> 1] >> ((c & 1) * 4)) & 15;
}

static inline uint16_t f32_to_bf16_bits(float f) { /* values are already bf16-representable */
    uint32_t u; memcpy(&u, &f, 4); return (uint16_t)(u >> 16);
}

/* f rounded to bf16 (to nearest even, as torch's .to(torch.bfloat16); NaN stays NaN), as a float */
static inline float bf16_round(float f) {
    uint32_t u; memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) u |= 0x400000u;
    else u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

/* The packed bf16 layout of oneDNN's bf16 matmul weight (what torch.ops.mkldnn._reorder_linear_weight
 * makes; the caller checks that it is this one): blocks of pnb output rows; in a block, pairs of
 * features outermost, then the pnb rows, then the 2 features of the pair. Element (r, c) sits at
 * (((r - prow0) / pnb) * pkp2 + c / 2) * pnb * 2 + (r % pnb) * 2 + c % 2 (prow0: the first row
 * written, 0 for a whole weight, a panel's first row for the AMX kernel); padding is never written. */
static inline int64_t packed_at(const job_t *j, int64_t r, int64_t c) {
    return (((r - j->prow0) / j->pnb) * j->pkp2 + c / 2) * j->pnb * 2 + (r % j->pnb) * 2 + (c & 1);
}

/* Rows [r0, r1) x features [c0, in) of the packed bf16 weight, one element at a time. */
static inline void deq_packed_scalar(const job_t *j, int64_t r0, int64_t r1, int64_t c0) {
    uint16_t *w = (uint16_t *)j->w;
    for (int64_t r = r0; r < r1; r++) {
        const float *t = j->tab + (r / j->group_size) * 256;
        for (int64_t c = c0; c < j->in; c++) w[packed_at(j, r, c)] = f32_to_bf16_bits(t[idx_at(j, r, c)]);
    }
}

/* int8 compute: y[m, r] from the exact integer sums acc = sum xq q and rs = sum q */
static inline float wc_i8_out(const job_t *j, int64_t m, int64_t g, int32_t acc, int32_t rs, int64_t r) {
    const float v = (float)((int64_t)acc - (int64_t)j->xz[m] * rs) * (j->xs[m] * j->qs[g]);
    return v + (j->bias ? j->bias[r] : 0.f);
}

/* byte-plane slot s -> weight, so that the byte / word unpacks of wc_bp_floats come out in natural
 * order (the AVX-512 dequantize and fused GEMM order the indices by it) */
static inline int wc_q_f32(int s) { int L = s / 16, v = (s / 4) % 4, e = s % 4; return 16 * v + 4 * L + e; }

enum { MODE_A8_16 = 1, MODE_A8_32, MODE_A4, MODE_BP1, MODE_BP2, MODE_BP4 };

#ifdef WC_X86
#define WC_INLINE inline __attribute__((always_inline))
/* bf16_round of 16 floats, as float bits (the bf16 in the high half, zeros below; NaN made quiet) */
T512 static WC_INLINE __m512i wc_bf16_round512(__m512 v) {
    const __m512i u = _mm512_castps_si512(v), hi = _mm512_set1_epi32((int)0xffff0000u);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i r = _mm512_and_si512(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), hi);
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    return _mm512_mask_mov_epi32(r, nan, _mm512_and_si512(_mm512_or_si512(u, _mm512_set1_epi32(0x400000)), hi));
}
/* Byte-plane lookup (K <= 256): byte c of codebook float v[i] for every index byte of v, from the
 * nt (1, 2 or 4) 64-byte vectors P of plane c (vpermb / vpermt2b, blend on the index's top bit). */
T512 static WC_INLINE __m512i wc_bp_lookup(const __m512i *P, __m512i v, const int nt) {
    if (nt == 1) return _mm512_permutexvar_epi8(v, P[0]);
    if (nt == 2) return _mm512_permutex2var_epi8(P[0], v, P[1]);
    __m512i lo = _mm512_permutex2var_epi8(P[0], v, P[1]);
    __m512i hi = _mm512_permutex2var_epi8(P[2], v, P[3]);
    return _mm512_mask_blend_epi8(_mm512_movepi8_mask(v), lo, hi);
}

/* The 64 floats of 64 index bytes from the four byte planes P[c] (nt vectors each): 4 lookups and
 * byte / word unpacks. Lane 4 l + e of f[q] holds the float of index byte 16 l + 4 q + e (the
 * unpacks work within 128-bit lanes): callers order x (GEMV) or the indices (dequantize, fused
 * GEMM) to match. */
T512 static WC_INLINE void wc_bp_floats(const __m512i P[4][4], __m512i v, const int nt, __m512 f[4]) {
    __m512i p0 = wc_bp_lookup(P[0], v, nt), p1 = wc_bp_lookup(P[1], v, nt);
    __m512i p2 = wc_bp_lookup(P[2], v, nt), p3 = wc_bp_lookup(P[3], v, nt);
    __m512i lo01 = _mm512_unpacklo_epi8(p0, p1), lo23 = _mm512_unpacklo_epi8(p2, p3);
    __m512i hi01 = _mm512_unpackhi_epi8(p0, p1), hi23 = _mm512_unpackhi_epi8(p2, p3);
    f[0] = _mm512_castsi512_ps(_mm512_unpacklo_epi16(lo01, lo23));
    f[1] = _mm512_castsi512_ps(_mm512_unpackhi_epi16(lo01, lo23));
    f[2] = _mm512_castsi512_ps(_mm512_unpacklo_epi16(hi01, hi23));
    f[3] = _mm512_castsi512_ps(_mm512_unpackhi_epi16(hi01, hi23));
}

/* x86/avx2_int8.c: GEMV over rows [r0, r1); GEMM over units [u0, u1) of 16-row panels times 4 */
WC_HIDDEN void wc_i8_quantize_x_avx2(const float *x, int64_t M, int64_t in, uint8_t *xq, int64_t ldq, float *xs,
                                      int32_t *xz);
WC_HIDDEN void wc_i8_gemv_avx2(const job_t *j, int64_t r0, int64_t r1);
WC_HIDDEN void wc_i8_gemm_avx2(const job_t *j, int64_t u0, int64_t u1);
/* x86/avx2_lut.c */
WC_HIDDEN void wc_gemv_avx2(const job_t *j, int64_t r0, int64_t r1);
WC_HIDDEN void wc_deq_avx2(const job_t *j, int64_t r0, int64_t r1);
/* x86/avx512_lut.c */
WC_HIDDEN void wc_lut_gemv_avx512(const job_t *j, int64_t r0, int64_t r1);
WC_HIDDEN void wc_lut_deq_avx512(const job_t *j, int64_t r0, int64_t r1);
WC_HIDDEN void wc_lut_deq_packed_avx512(const job_t *j, int64_t u0, int64_t u1);
/* position p in a lookup block -> weight within the block, for a GEMV mode (x is permuted to match) */
WC_HIDDEN int wc_lut_xperm(int mode, int p);
WC_HIDDEN void wc_bf16_round_avx512(float *d, const float *s, int64_t n);
#endif
#ifdef WC_ARM64
/* arm64/neon_lut.c: fp32 GEMV (rows [r0, r1), every row of x) and dequantize (float32 or bf16
 * bits), codebook lookups with tbl over byte planes; integer GEMV (the numeric of
 * portable/int8_c.c) with smull / sadalp */
WC_HIDDEN void wc_gemv_neon(const job_t *j, int64_t r0, int64_t r1);
WC_HIDDEN void wc_deq_neon(const job_t *j, int64_t r0, int64_t r1);
WC_HIDDEN void wc_i8_gemv_neon(const job_t *j, int64_t r0, int64_t r1);
/* arm64/dotprod_int8.c: the integer GEMV with sdot (ARMv8.2 dot product: call only at ISA_DOTPROD) */
WC_HIDDEN void wc_i8_gemv_dotprod(const job_t *j, int64_t r0, int64_t r1);
/* the integer GEMV for the ISA level in use (api.c's integer entry point calls it) */
WC_HIDDEN range_fn wc_i8_gemv_arm64(void);
#endif
/* x86/avx512_gemm.c: fused LUT-GEMM (many rows of x). Blocking: m-blocks of <= GEMM_MR rows of x, k-blocks
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
/* x86/amx_bf16.c: fused LUT-GEMM in bf16 on AMX tiles (built where the compiler and OS have them) */
#if defined(WC_X86) && defined(__linux__) && (__GNUC__ >= 11 || defined(__clang__))
#define WC_AMX 1
#endif
WC_HIDDEN int wc_amx_ready(void);
#ifdef WC_AMX
WC_HIDDEN uint16_t *wc_amx_xbuf(size_t n); /* the calling thread's buffer for x in bf16 (n elements) */
WC_HIDDEN void wc_amx_pack_x(const void *x, int x_bf16, int64_t M, int64_t in, uint16_t *xb, int64_t ldxb);
/* job: xb, ldxb, y (float32 or bf16: out_bf16), bias float32 holding bf16 values; [u0, u1): output panels times 4 */
WC_HIDDEN void wc_lut_gemm_amx(const job_t *j, int64_t u0, int64_t u1);
#endif
#ifdef WC_X86
/* job: x (M, in), mode = GEMV lookup mode, y (M, out); [u0, u1): output panels times 4 */
WC_HIDDEN void wc_lut_gemm_avx512(const job_t *j, int64_t u0, int64_t u1);
#endif
#endif
