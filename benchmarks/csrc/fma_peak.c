/* The float32 FMA ceiling of the calling core, for benchmarks: how close a GEMM comes to the rate
 * at which this core can issue fused multiply-adds at all (with the widest vectors this CPU has, or
 * `lanes` when given). 24 independent accumulator chains, enough to cover the FMA latency on
 * every x86 core with two FMA ports; nothing is loaded or stored inside the loop.
 *
 * wc_fma_peak(flops) runs at least `flops` float32 operations (an FMA counts as 2) and returns how
 * many it ran; the caller times the call. The result of the chains goes to a volatile sink so the
 * compiler keeps them. */
#include <stdint.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define WC_X86 1
#define T512 __attribute__((target("avx512f")))
#define T256 __attribute__((target("avx2,fma")))
#endif

static volatile float sink;

#define CHAINS 24

#ifdef WC_X86
T512 static float chains512(int64_t n) {
    __m512 a[CHAINS];
    const __m512 m = _mm512_set1_ps(1.0000001f), c = _mm512_set1_ps(1e-8f);
    for (int i = 0; i < CHAINS; i++) a[i] = _mm512_set1_ps((float)i);
    for (int64_t k = 0; k < n; k++) {
#pragma GCC unroll 24
        for (int i = 0; i < CHAINS; i++) a[i] = _mm512_fmadd_ps(a[i], m, c);
    }
    float s = 0.f;
    for (int i = 0; i < CHAINS; i++) s += _mm512_reduce_add_ps(a[i]);
    return s;
}

T256 static float chains256(int64_t n) {
    __m256 a[CHAINS / 2]; /* 16 ymm registers: 12 chains + 2 constants */
    const __m256 m = _mm256_set1_ps(1.0000001f), c = _mm256_set1_ps(1e-8f);
    for (int i = 0; i < CHAINS / 2; i++) a[i] = _mm256_set1_ps((float)i);
    for (int64_t k = 0; k < 2 * n; k++) {
#pragma GCC unroll 12
        for (int i = 0; i < CHAINS / 2; i++) a[i] = _mm256_fmadd_ps(a[i], m, c);
    }
    float t[8], s = 0.f;
    for (int i = 0; i < CHAINS / 2; i++) {
        _mm256_storeu_ps(t, a[i]);
        for (int e = 0; e < 8; e++) s += t[e];
    }
    return s;
}
#endif

static float chains_c(int64_t n) {
    float a[CHAINS];
    for (int i = 0; i < CHAINS; i++) a[i] = (float)i;
    for (int64_t k = 0; k < n; k++)
        for (int i = 0; i < CHAINS; i++) a[i] = a[i] * 1.0000001f + 1e-8f;
    float s = 0.f;
    for (int i = 0; i < CHAINS; i++) s += a[i];
    return s;
}

static int widest(void) {
#ifdef WC_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return 16;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 8;
#endif
    return 1;
}

/* lanes: 16, 8 or 1 (at most what this CPU has), 0 = the widest */
int64_t wc_fma_peak(int64_t flops, int lanes) {
    const int top = widest();
    if (lanes <= 0 || lanes > top) lanes = top;
    const int64_t per_iter = 2 * CHAINS * (int64_t)lanes; /* AVX2: 2 steps of 12 chains per iteration */
    const int64_t n = flops <= 0 ? 1 : (flops + per_iter - 1) / per_iter;
#ifdef WC_X86
    if (lanes == 16) { sink = chains512(n); return n * per_iter; }
    if (lanes == 8) { sink = chains256(n); return n * per_iter; }
#endif
    sink = chains_c(n);
    return n * per_iter;
}
