/* C-level test of wclust's kernels against the portable C reference, on random layers.
 *
 * Built with the library's sources (not against the shared library: it calls hidden kernels
 * directly): on aarch64 (cross-compiled, run under qemu-aarch64 by tests/kernels/test_arm64_qemu.py)
 * it checks every ARM64 kernel; built natively on x86-64, or with -DWC_NO_ARM64 (the portable
 * build), the ARM64 code is compiled out and it checks the exported entry points at every ISA
 * level the CPU has. Build (see the pytest file): CC -O2 -std=c11 -pthread -Isrc/wclust/csrc
 * tests/c/test_kernels.c, the .c files of csrc, csrc/portable and csrc/ARCH, -lm -ldl
 *
 * Layers: index widths 4 and 8 (the in-memory widths every packed width 1..8 maps onto), K = 2..256
 * (<= 16 at 4 bits), odd shapes, one or several codebook groups, 1..11 rows of x; a 4-bit row's
 * padding nibble holds garbage, which every kernel must ignore. What is compared:
 * - dequantize (float32, bf16 bits) and the integer GEMV (exact int32 sums, then portable/int8_c.c's
 *   wc_i8_out): bit-for-bit equal to the reference;
 * - fp32 GEMV: the kernels sum in another order than the reference's index order, so they may
 *   differ by rounding: |y - y_ref| <= 2 in eps sum|x w| (each of the two sums is within
 *   (in - 1) eps sum|x w| of the exact value) + 1e-30; a bf16 plan's GEMV (x, codebook, bias and y
 *   rounded to bf16) within that plus one bf16 rounding (|y| / 128), and y bf16-representable.
 * And k-means (kmeans.c, plain C that must run unchanged on every CPU): the dynamic program's SSE
 * against every partition of a few weighted bins into contiguous runs (relative 1e-9: prefix sums
 * vs direct sums), and wc_assign's index = the number of decision bounds strictly below the value.
 * Prints the cases and checks run, the CPU features read from the OS and the kernels each ISA
 * level dispatches to; exits 1 on any mismatch. Fixed seed. */
#define _GNU_SOURCE
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "wclust.h"

#if defined(WC_ARM64) && defined(__linux__)
#include <sys/auxv.h>
#endif

static uint64_t g_rng = 0x2545F4914F6CDD1DULL;
static uint32_t rnd(void) {
    g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 32);
}
static int64_t rint_in(int64_t lo, int64_t hi) { return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1)); }
static float frand(void) { return (float)((rnd() >> 8) * (1.0 / 8388608.0) - 1.0); } /* [-1, 1) */

static long g_cases, g_checks, g_fail;
static long g_by_bits[9], g_by_width[9], g_grouped, g_many_rows, g_odd_in, g_kmeans; /* coverage, printed */

static void count_layer(int bits, int K, int64_t in, int64_t ng, int64_t M) {
    int w = 1;
    while ((1 << w) < K) w++;  /* the packed width of K clusters, ceil(log2 K) */
    g_by_bits[bits]++; g_by_width[w]++;
    g_grouped += ng > 1; g_many_rows += M > 4; g_odd_in += in % 16 != 0;
}
static void fail(const char *what, const char *kernel, int bits, int K, int64_t out, int64_t in, int64_t gs, int64_t M,
                 int64_t at) {
    if (g_fail++ < 20)
        fprintf(stderr, "MISMATCH %s %s: bits=%d K=%d out=%lld in=%lld group=%lld M=%lld at %lld\n", what, kernel, bits,
                K, (long long)out, (long long)in, (long long)gs, (long long)M, (long long)at);
}

typedef struct {
    int bits, K;
    int64_t out, in, gs, ng, M, rowbytes, ldq;
    float *cb, *x, *bias, *tab, *sabs, *qs, *xs;
    uint8_t *idx, *planes, *xq;
    int8_t *qtab;
    int32_t *xz;
} layer_t;

static void *xcalloc(size_t n) {
    void *p = calloc(n ? n : 1, 1);
    if (!p) { fprintf(stderr, "out of memory\n"); exit(2); }
    return p;
}

static void layer_make(layer_t *L, int bits, int K, int64_t out, int64_t in, int64_t gs, int64_t M) {
    memset(L, 0, sizeof *L);
    L->bits = bits; L->K = K; L->out = out; L->in = in; L->gs = gs; L->M = M;
    L->ng = (out + gs - 1) / gs;
    L->rowbytes = bits == 8 ? in : (in + 1) / 2;
    L->ldq = in + (in % 3);
    L->cb = xcalloc(sizeof(float) * (size_t)(L->ng * K));
    const float scale = (rnd() & 1) ? 1.f : (rnd() & 1) ? 1e-3f : 300.f;
    for (int64_t i = 0; i < L->ng * K; i++) L->cb[i] = frand() * scale;
    if (K > 2) L->cb[1] = 0.f;                        /* a zero entry */
    L->idx = xcalloc((size_t)(out * L->rowbytes));
    for (int64_t r = 0; r < out; r++)
        for (int64_t c = 0; c < in; c++) {
            const int v = (int)(rnd() % (uint32_t)K);
            if (bits == 8) L->idx[r * in + c] = (uint8_t)v;
            else L->idx[r * L->rowbytes + c / 2] |= (uint8_t)(v << ((c & 1) * 4));
        }
    if (bits == 4 && (in & 1))                       /* padding nibble: garbage */
        for (int64_t r = 0; r < out; r++) L->idx[r * L->rowbytes + in / 2] |= (uint8_t)((rnd() & 15) << 4);
    L->x = xcalloc(sizeof(float) * (size_t)(M * in));
    for (int64_t i = 0; i < M * in; i++) L->x[i] = frand();
    L->bias = (rnd() & 1) ? xcalloc(sizeof(float) * (size_t)out) : NULL;
    for (int64_t r = 0; L->bias && r < out; r++) L->bias[r] = frand();
    /* the tables a plan holds (api.c's plan_build) */
    L->tab = xcalloc(sizeof(float) * (size_t)(L->ng * 256));
    L->planes = xcalloc((size_t)(L->ng * 1024));
    for (int64_t g = 0; g < L->ng; g++) {
        memcpy(L->tab + g * 256, L->cb + g * K, sizeof(float) * (size_t)K);
        for (int c = 0; c < 256; c++) {
            uint32_t u; memcpy(&u, L->tab + g * 256 + c, 4);
            for (int b = 0; b < 4; b++) L->planes[g * 1024 + b * 256 + c] = (uint8_t)(u >> (8 * b));
        }
    }
    /* sum |x w| per (m, r): the fp32 tolerance */
    L->sabs = xcalloc(sizeof(float) * (size_t)(M * out));
    for (int64_t m = 0; m < M; m++)
        for (int64_t r = 0; r < out; r++) {
            double s = 0;
            for (int64_t c = 0; c < in; c++) {
                const int i = bits == 8 ? L->idx[r * in + c] : (L->idx[r * L->rowbytes + c / 2] >> ((c & 1) * 4)) & 15;
                s += fabs((double)L->x[m * in + c] * L->cb[(r / gs) * K + i]);
            }
            L->sabs[m * out + r] = (float)s;
        }
    /* integer compute: the shared quantizers */
    L->qtab = xcalloc((size_t)(L->ng * 256));
    L->qs = xcalloc(sizeof(float) * (size_t)L->ng);
    wc_i8_quantize_codebook(L->cb, L->ng, K, L->qtab, L->qs);
    L->xq = xcalloc((size_t)(M * L->ldq) + 16);
    L->xs = xcalloc(sizeof(float) * (size_t)(M ? M : 1));
    L->xz = xcalloc(sizeof(int32_t) * (size_t)(M ? M : 1));
    wc_i8_quantize_x(L->x, M, in, L->xq, L->ldq, L->xs, L->xz);
}

static void layer_free(layer_t *L) {
    free(L->cb); free(L->x); free(L->bias); free(L->tab); free(L->sabs); free(L->qs); free(L->xs);
    free(L->idx); free(L->planes); free(L->xq); free(L->qtab); free(L->xz);
}

static job_t layer_job(const layer_t *L) {
    job_t j;
    memset(&j, 0, sizeof j);
    j.M = L->M; j.in = L->in; j.out = L->out; j.ldx = L->in; j.rowbytes = L->rowbytes; j.group_size = L->gs;
    j.index_bits = L->bits; j.K = L->K; j.x = L->x; j.idx = L->idx; j.tab = L->tab; j.planes = L->planes;
    j.bias = L->bias;
    return j;
}

static void check_f32(const layer_t *L, const float *y, const float *yref, const char *kernel) {
    g_checks++;
    for (int64_t i = 0; i < L->M * L->out; i++) {
        const double tol = 2.0 * (double)L->in * FLT_EPSILON * L->sabs[i] + 1e-30;
        if (!(fabs((double)y[i] - yref[i]) <= tol)) { fail("fp32 gemv", kernel, L->bits, L->K, L->out, L->in, L->gs, L->M, i); return; }
    }
}

static void check_exact(const layer_t *L, const void *a, const void *b, size_t n, const char *what, const char *kernel) {
    g_checks++;
    if (memcmp(a, b, n)) fail(what, kernel, L->bits, L->K, L->out, L->in, L->gs, L->M, -1);
}

/* the ARM64 kernels, called directly, against the portable ones */
static void check_kernels(const layer_t *L, int level) {
#ifdef WC_ARM64
    const int64_t ny = L->M * L->out, nw = L->out * L->in;
    float *yref = xcalloc(sizeof(float) * (size_t)ny), *y = xcalloc(sizeof(float) * (size_t)ny); /* exact sizes */
    job_t j = layer_job(L);
    j.y = yref; wc_gemv_c(&j, 0, L->out);
    j.y = y; wc_gemv_neon(&j, 0, L->out);
    check_f32(L, y, yref, "wc_gemv_neon");
    /* dequantize: float32 and bf16 bits (both keep the codebook's bits: exact) */
    for (int bf = 0; bf < 2; bf++) {
        const size_t nb = (size_t)nw * (bf ? 2 : 4); /* exact: a store past the end stops the sanitizer build */
        void *w = xcalloc(nb), *wref = xcalloc(nb);
        j.out_bf16 = bf;
        j.w = wref; wc_deq_c(&j, 0, L->out);
        j.w = w; wc_deq_neon(&j, 0, L->out);
        check_exact(L, w, wref, nb, bf ? "dequantize bf16" : "dequantize f32", "wc_deq_neon");
        free(w); free(wref);
    }
    j.out_bf16 = 0;
    /* integer compute: exact */
    j.xq = L->xq; j.ldx = L->ldq; j.xs = L->xs; j.xz = L->xz; j.qtab = L->qtab; j.qs = L->qs;
    j.y = yref; wc_i8_gemv_c(&j, 0, L->out);
    j.y = y; wc_i8_gemv_neon(&j, 0, L->out);
    check_exact(L, y, yref, sizeof(float) * (size_t)ny, "int8 gemv", "wc_i8_gemv_neon");
    if (level >= ISA_DOTPROD) { /* sdot only where the CPU has it */
        memset(y, 0, sizeof(float) * (size_t)ny);
        wc_i8_gemv_dotprod(&j, 0, L->out);
        check_exact(L, y, yref, sizeof(float) * (size_t)ny, "int8 gemv", "wc_i8_gemv_dotprod");
    }
    /* the integer kernel the ISA level picks, over two row ranges (as threads split them) */
    memset(y, 0, sizeof(float) * (size_t)ny);
    range_fn f = wc_i8_gemv_arm64();
    const int64_t half = (L->out / 2) & ~(int64_t)3;
    f(&j, 0, half); f(&j, half, L->out);
    check_exact(L, y, yref, sizeof(float) * (size_t)ny, "int8 gemv", "wc_i8_gemv_arm64()");
    free(y); free(yref);
#else
    (void)L; (void)level;
#endif
}

/* the exported entry points (whatever kernel the level picks) against the portable kernels */
static void check_api(const layer_t *L, int nthreads) {
    const int64_t ny = L->M * L->out, nw = L->out * L->in;
    float *yref = xcalloc(sizeof(float) * (size_t)ny), *y = xcalloc(sizeof(float) * (size_t)ny); /* exact sizes */
    job_t j = layer_job(L);
    j.y = yref; wc_gemv_c(&j, 0, L->out);
    int rc = wc_lut_gemv_f32(L->x, L->M, L->in, L->idx, L->out, L->bits, L->cb, L->ng, L->K, L->gs, L->bias, y, nthreads);
    if (rc) fail("rc", "wc_lut_gemv_f32", L->bits, L->K, L->out, L->in, L->gs, L->M, rc);
    check_f32(L, y, yref, "wc_lut_gemv_f32");
    memset(y, 0, sizeof(float) * (size_t)ny);
    rc = wc_lut_gemm_f32(L->x, L->M, L->in, L->idx, L->out, L->bits, L->cb, L->ng, L->K, L->gs, L->bias, y, nthreads);
    if (rc == 0) check_f32(L, y, yref, "wc_lut_gemm_f32");
    else if (rc != 1) fail("rc", "wc_lut_gemm_f32", L->bits, L->K, L->out, L->in, L->gs, L->M, rc);
    /* dequantize float32; bf16 with a bf16-representable codebook (the API's contract) */
    float *w = xcalloc(sizeof(float) * (size_t)nw), *wref = xcalloc(sizeof(float) * (size_t)nw); /* exact sizes */
    uint16_t *h = xcalloc(2 * (size_t)nw), *href = xcalloc(2 * (size_t)nw);
    float *cb16 = xcalloc(sizeof(float) * (size_t)(L->ng * L->K));
    for (int64_t i = 0; i < L->ng * L->K; i++) cb16[i] = bf16_round(L->cb[i]);
    job_t jd = layer_job(L);
    jd.w = wref; wc_deq_c(&jd, 0, L->out);
    rc = wc_lut_dequant(L->idx, L->out, L->in, L->bits, L->cb, L->ng, L->K, L->gs, w, 0, nthreads);
    if (rc) fail("rc", "wc_lut_dequant", L->bits, L->K, L->out, L->in, L->gs, L->M, rc);
    check_exact(L, w, wref, sizeof(float) * (size_t)nw, "dequantize f32", "wc_lut_dequant");
    float *tab16 = xcalloc(sizeof(float) * (size_t)(L->ng * 256));
    for (int64_t g = 0; g < L->ng; g++) memcpy(tab16 + g * 256, cb16 + g * L->K, sizeof(float) * (size_t)L->K);
    jd.tab = tab16; jd.out_bf16 = 1; jd.w = href; wc_deq_c(&jd, 0, L->out);
    rc = wc_lut_dequant(L->idx, L->out, L->in, L->bits, cb16, L->ng, L->K, L->gs, h, 1, nthreads);
    if (rc) fail("rc", "wc_lut_dequant", L->bits, L->K, L->out, L->in, L->gs, L->M, rc);
    check_exact(L, h, href, 2 * (size_t)nw, "dequantize bf16", "wc_lut_dequant");
    /* a bf16 plan: x, the codebook and the bias rounded to bf16, fp32 sums, y rounded to bf16; the
     * reference sums in another order, so the two may round to neighbouring bf16 values */
    float *xr = xcalloc(sizeof(float) * (size_t)(L->M * L->in)), *br = NULL;
    for (int64_t i = 0; i < L->M * L->in; i++) xr[i] = bf16_round(L->x[i]);
    if (L->bias) {
        br = xcalloc(sizeof(float) * (size_t)L->out);
        for (int64_t r = 0; r < L->out; r++) br[r] = bf16_round(L->bias[r]);
    }
    job_t jb = layer_job(L);
    jb.x = xr; jb.tab = tab16; jb.bias = br; jb.y = yref;
    wc_gemv_c(&jb, 0, L->out);
    wc_plan_t *p = wc_lut_plan_new_bf16(L->cb, L->ng, L->K, L->in, L->out, L->bits, L->gs);
    rc = p ? wc_lut_plan_gemv(p, L->cb, L->x, L->M, L->idx, L->bias, y, nthreads) : -1;
    if (rc) fail("rc", "wc_lut_plan_gemv (bf16 plan)", L->bits, L->K, L->out, L->in, L->gs, L->M, rc);
    g_checks++;
    for (int64_t i = 0; i < L->M * L->out; i++) {
        const double tol = 2.0 * (double)L->in * FLT_EPSILON * 1.02 * L->sabs[i] + fabs((double)yref[i]) / 128.0 + 1e-30;
        if (!(fabs((double)y[i] - bf16_round(yref[i])) <= tol) || bf16_round(y[i]) != y[i]) {
            fail("bf16 gemv", "wc_lut_plan_gemv (bf16 plan)", L->bits, L->K, L->out, L->in, L->gs, L->M, i);
            break;
        }
    }
    wc_lut_plan_free(p);
    free(xr); free(br);
    free(y); free(yref); free(w); free(wref); free(h); free(href); free(cb16); free(tab16);
}

/* the least SSE over every split of bins [i, m) into k contiguous runs (brute force) */
static double best_split(const double *w, const double *s1, const double *s2, int i, int m, int k) {
    if (k == 1) {
        double a = 0, b = 0, c = 0;
        for (int t = i; t < m; t++) { a += w[t]; b += s1[t]; c += s2[t]; }
        return c - b * b / a;
    }
    double best = INFINITY;
    for (int e = i + 1; e <= m - (k - 1); e++) {
        double a = 0, b = 0, c = 0;
        for (int t = i; t < e; t++) { a += w[t]; b += s1[t]; c += s2[t]; }
        const double v = (c - b * b / a) + best_split(w, s1, s2, e, m, k - 1);
        best = v < best ? v : best;
    }
    return best;
}

static void check_kmeans(void) {
    const int64_t nk = wc_nkeys();
    double *c0 = xcalloc(sizeof(double) * (size_t)nk), *c1 = xcalloc(sizeof(double) * (size_t)nk);
    double *c2 = xcalloc(sizeof(double) * (size_t)nk);
    for (int rep = 0; rep < 6; rep++) {
        memset(c0, 0, sizeof(double) * (size_t)nk); memset(c1, 0, sizeof(double) * (size_t)nk);
        memset(c2, 0, sizeof(double) * (size_t)nk);
        float vals[9], x[60], w[60];
        for (int i = 0; i < 9; i++) vals[i] = frand() * (rep + 1);
        for (int i = 0; i < 60; i++) { x[i] = vals[rnd() % 9]; w[i] = 0.5f + (float)(rnd() % 4); }
        wc_hist_accumulate(x, w, 60, c0, c1, c2);
        const int m = (int)wc_hist_compact(c0, c1, c2);
        for (int k = 1; k <= m; k++) {
            double cent[16];
            const double sse = wc_kmeans_dp(c0, c1, c2, m, k, cent), ref = best_split(c0, c1, c2, 0, m, k);
            g_checks++; g_cases++; g_kmeans++;
            double tot = 0; /* prefix sums cancel: the error scales with the total sum of squares */
            for (int i = 0; i < m; i++) tot += c2[i];
            if (!(fabs(sse - ref) <= 1e-9 * fabs(ref) + 1e-12 * tot)) fail("kmeans dp", "wc_kmeans_dp", 0, k, m, 60, 0, 0, rep);
            for (int i = 1; i < k; i++)
                if (!(cent[i] > cent[i - 1])) fail("kmeans centroids", "wc_kmeans_dp", 0, k, m, 60, 0, 0, i);
            if (k < 2) continue;
            float cb[16], bounds[16];
            for (int i = 0; i < k; i++) cb[i] = (float)cent[i];
            for (int i = 0; i + 1 < k; i++) bounds[i] = 0.5f * (cb[i] + cb[i + 1]);
            uint8_t *lut = xcalloc((size_t)nk), out[200];
            wc_build_lut(bounds, k - 1, lut);
            float v[200];
            for (int i = 0; i < 200; i++) v[i] = i < 9 ? vals[i] : i < 9 + k - 1 ? bounds[i - 9] : frand() * (rep + 2);
            double sums[3] = {0, 0, 0};
            wc_assign(v, NULL, 200, lut, bounds, k - 1, cb, out, sums);
            g_checks++;
            for (int i = 0; i < 200; i++) {
                int below = 0;
                for (int b = 0; b + 1 < k; b++) below += bounds[b] < v[i];
                if (out[i] != below) { fail("assign", "wc_assign", 0, k, m, 200, 0, 0, i); break; }
            }
            free(lut);
        }
    }
    free(c0); free(c1); free(c2);
}

static const char *i8_name(int level) {
#ifdef WC_ARM64
    wc_lut_force_isa(level);
    range_fn f = wc_i8_gemv_arm64();
    wc_lut_force_isa(-1);
    return f == wc_i8_gemv_dotprod ? "dotprod (sdot)" : f == wc_i8_gemv_neon ? "neon (smull/sadalp)" : "portable C";
#else
    (void)level;
    return "not checked by this program (api.c picks it)";
#endif
}

static const char *f32_name(int level) {
    switch (level) {
    case ISA_C: return "portable C";
    case ISA_AVX2: return "avx2";
    case ISA_AVX512: return "avx512";
    default: return "neon (tbl + fmla)"; /* api.c: every ARM64 level >= ISA_NEON */
    }
}

int main(void) {
    const int detected = wc_lut_isa();
    int levels[4], nlev = 0;
    levels[nlev++] = ISA_C;
#ifdef WC_ARM64
    if (detected >= ISA_NEON) levels[nlev++] = ISA_NEON;
    if (detected >= ISA_DOTPROD) levels[nlev++] = ISA_DOTPROD;
#if defined(__linux__) /* the bits as the OS reports them (runtime.c reads the same) */
    const unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    printf("arch: aarch64; HWCAP asimd=%d asimddp=%d; HWCAP2 i8mm=%d\n", (int)((hw >> 1) & 1), (int)((hw >> 20) & 1),
           (int)((hw2 >> 13) & 1));
#else
    printf("arch: aarch64\n");
#endif
#else
    for (int l = 1; l <= detected && l <= ISA_AVX512; l++) levels[nlev++] = l;
    printf("arch: %s (ARM64 kernels compiled out)\n",
#if defined(__x86_64__)
           "x86-64"
#elif defined(__aarch64__)
           "aarch64 portable build"
#else
           "other"
#endif
    );
#endif
    printf("detected ISA level %d\n", detected);
#ifdef WC_ARM64
    for (int l = ISA_AVX2; l <= ISA_AVX512; l++) /* x86 levels asked of an ARM64 CPU: portable C */
        if (wc_lut_force_isa(l) != ISA_C) fail("force_isa", "wc_lut_force_isa", 0, l, 0, 0, 0, 0, wc_lut_isa());
    wc_lut_force_isa(-1);
    g_checks++;
#endif
    for (int li = 0; li < nlev; li++)
        printf("dispatch at level %d: fp32 gemv / dequantize: %s; int8 gemv: %s\n", levels[li], f32_name(levels[li]),
               i8_name(levels[li]));

    static const int ks[] = {2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 40, 48, 49, 63, 64,
                             65, 96, 127, 128, 129, 160, 192, 193, 255, 256};
    static const int64_t ins[] = {1, 2, 7, 15, 16, 17, 31, 32, 33, 48, 63, 64, 100, 129, 257, 768};
    static const int64_t Ms[] = {1, 1, 2, 3, 4, 5, 8, 11};
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
        for (int bits = 4; bits <= 8; bits += 4) {
            const int K = ks[ki];
            if (bits == 4 && K > 16) continue;
            for (int rep = 0; rep < 3; rep++) {
                const int64_t out = rint_in(1, 40), in = ins[rnd() % (sizeof ins / sizeof ins[0])];
                const int64_t M = Ms[rnd() % (sizeof Ms / sizeof Ms[0])];
                const int64_t gs = rep == 0 ? out : rep == 1 ? 1 : rint_in(1, 9);
                layer_t L;
                layer_make(&L, bits, K, out, in, gs, M);
                g_cases++;
                count_layer(bits, K, in, L.ng, M);
                check_kernels(&L, detected);
                for (int li = 0; li < nlev; li++) {
                    wc_lut_force_isa(levels[li]);
                    check_api(&L, 1 + (rep & 1) * 2);
                }
                wc_lut_force_isa(-1);
                layer_free(&L);
            }
        }
    }
    /* wide layers split over threads (blocks of 16 rows and more per thread), and many rows of x */
    static const int64_t wide[][6] = {{8, 64, 200, 300, 7, 2}, {4, 16, 96, 77, 96, 37}, {8, 256, 64, 129, 64, 24}};
    for (size_t i = 0; i < sizeof wide / sizeof wide[0]; i++) {
        layer_t L;
        const int64_t *c = wide[i];
        layer_make(&L, (int)c[0], (int)c[1], c[2], c[3], c[4], c[5]);
        g_cases++;
        count_layer((int)c[0], (int)c[1], c[3], L.ng, c[5]);
        check_kernels(&L, detected);
        for (int li = 0; li < nlev; li++) { wc_lut_force_isa(levels[li]); check_api(&L, 4); }
        wc_lut_force_isa(-1);
        layer_free(&L);
    }
    check_kmeans();
    printf("layers: %ld at 4-bit and %ld at 8-bit indices; by packed width (ceil(log2 K)) 1..8:", g_by_bits[4],
           g_by_bits[8]);
    for (int w = 1; w <= 8; w++) printf(" %ld", g_by_width[w]);
    printf("; %ld with several codebook groups, %ld with > 4 rows of x, %ld with in %% 16 != 0; %ld k-means cases\n",
           g_grouped, g_many_rows, g_odd_in, g_kmeans);
    printf("%ld cases, %ld checks, %ld mismatches; ISA levels exercised:", g_cases, g_checks, g_fail);
    for (int li = 0; li < nlev; li++) printf(" %d", levels[li]);
    printf("\n%s\n", g_fail ? "FAILED" : "OK");
    return g_fail ? 1 : 0;
}
