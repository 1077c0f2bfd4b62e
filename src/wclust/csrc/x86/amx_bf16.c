/* Fused LUT-GEMM in bf16 on AMX (Intel Advanced Matrix Extensions: TMUL, tdpbf16ps):
 * y (M, out) = x (M, in) . W^T + bias, W given as indices + a bf16-representable codebook,
 * bf16 products accumulated in float32, the result rounded once (to bf16, or kept in float32).
 *
 * - x is converted to bf16 once per call, by the caller's thread (wc_amx_pack_x), into rows of
 *   `ldxb` = in rounded up to 32 features, M rounded up to 16 rows, zeros in the padding: what a
 *   16 x 32 A tile loads directly.
 * - per panel of 32 output rows, the weight is dequantized into a per-thread buffer in the VNNI
 *   layout a B tile loads (feature pairs outermost, then the 32 rows, then the pair's 2 features:
 *   the packed layout of internal.h with 32-row blocks, written by the same AVX-512 dequantize
 *   as oneDNN's packed bf16 weight), then reused by every row of a chunk of x (in L2: 64 bytes
 *   per feature, 192 KiB at 3072 features). Chunks of rows of x of AMX_XCHUNK bytes stay in L2
 *   while all panels pass; a panel is dequantized once per chunk (one chunk up to 256 rows at
 *   3072 features).
 * - the microkernel holds a 32 x 32 block of y in four C tiles: per 32 features, two A tiles (x
 *   rows m .. m + 31), two B tiles (the panel's two halves of 16 output rows), four tdpbf16ps.
 *   The C tiles are stored to a small buffer, then bias, rounding and the edges are done there.
 * Permission to use the tile registers is asked of Linux once (arch_prctl, ARCH_REQ_XCOMP_PERM);
 * where the CPU, the compiler or the OS says no, wc_amx_ready() is 0 and callers keep the oneDNN
 * path. */
#define _GNU_SOURCE /* syscall */
#include "../internal.h"

#ifdef WC_AMX
#include <cpuid.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifndef AMX_XCHUNK /* bytes of x in bf16 per chunk of rows (see wc_lut_gemm_amx) */
#define AMX_XCHUNK (1536 * 1024)
#endif
#define TAMX __attribute__((target("avx512f,avx512bw,avx512vbmi,avx512vl,amx-tile,amx-bf16")))
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tilecfg_t;

static int g_amx = -1;

/* AMX-TILE and AMX-BF16 in CPUID, tile state enabled by the OS (XCR0 bits 17, 18), and this
 * process allowed to use it. Once. */
int wc_amx_ready(void) {
    if (g_amx >= 0) return g_amx;
    unsigned a, b, c, d;
    int ok = 0;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d) && (d >> 24 & 1) && (d >> 22 & 1)) {
        unsigned lo, hi;
        __get_cpuid(1, &a, &b, &c, &d);
        if (c >> 27 & 1) { /* OSXSAVE: xgetbv is allowed */
            __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
            ok = (lo >> 17 & 3) == 3 && syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
        }
    }
    g_amx = ok;
    return ok;
}

/* float32 -> bf16 bits, round to nearest even (as torch's .to(torch.bfloat16)); NaN stays NaN */
T512 static inline __m256i f32_to_bf16_rne(__m512 v) {
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(wc_bf16_round512(v), 16));
}

/* xb (rows of ldxb bf16, M rounded up to 16 rows) = x (M, in): float32 (rounded) or bf16 bits
 * (copied); zeros in the padding. */
T512 void wc_amx_pack_x(const void *x, int x_bf16, int64_t M, int64_t in, uint16_t *xb, int64_t ldxb) {
    const int64_t Mp = (M + 15) & ~(int64_t)15;
    for (int64_t m = 0; m < Mp; m++) {
        uint16_t *d = xb + m * ldxb;
        int64_t c = 0;
        if (m < M) {
            if (x_bf16) {
                memcpy(d, (const uint16_t *)x + m * in, (size_t)in * 2);
                c = in;
            } else {
                const float *s = (const float *)x + m * in;
                for (; c + 16 <= in; c += 16)
                    _mm256_storeu_si256((__m256i *)(d + c), f32_to_bf16_rne(_mm512_loadu_ps(s + c)));
                if (c < in) {
                    const __mmask16 k = (__mmask16)((1u << (in - c)) - 1);
                    _mm256_mask_storeu_epi16(d + c, k, f32_to_bf16_rne(_mm512_maskz_loadu_ps(k, s + c)));
                    c = in;
                }
            }
        }
        memset(d + c, 0, (size_t)(ldxb - c) * 2);
    }
}

/* Per-thread buffers, kept between calls (a fresh allocation of a few MB is mapped anew and
 * page-faulted on every call): the weight panel of the threads that multiply, and x in bf16 of
 * the thread that calls. Grown on demand; freed with the thread by the keys' destructors. */
typedef struct { pthread_key_t key; pthread_once_t once; } tbuf_key_t;
static tbuf_key_t pbuf_key = {0, PTHREAD_ONCE_INIT}, xbuf_key = {0, PTHREAD_ONCE_INIT};
static _Thread_local uint16_t *pbuf, *xbuf;
static _Thread_local size_t pbuf_cap, xbuf_cap; /* elements */
static void tbuf_free(void *p) { free(p); }
static void pbuf_init(void) { pthread_key_create(&pbuf_key.key, tbuf_free); }
static void xbuf_init(void) { pthread_key_create(&xbuf_key.key, tbuf_free); }
static uint16_t *tbuf_get(tbuf_key_t *k, void (*init)(void), uint16_t **buf, size_t *cap, size_t n) {
    if (n <= *cap) return *buf;
    pthread_once(&k->once, init);
    free(*buf);
    *buf = NULL; *cap = 0;
    pthread_setspecific(k->key, NULL);
    const size_t bytes = (n * 2 + 4095) & ~(size_t)4095;
    uint16_t *p = aligned_alloc(4096, bytes);
    if (!p) return NULL;
    *buf = p; *cap = bytes / 2;
    pthread_setspecific(k->key, p);
    return p;
}
static uint16_t *pbuf_get(size_t n) { return tbuf_get(&pbuf_key, pbuf_init, &pbuf, &pbuf_cap, n); }
uint16_t *wc_amx_xbuf(size_t n) { return tbuf_get(&xbuf_key, xbuf_init, &xbuf, &xbuf_cap, n); }

/* C block (rows x 32 floats, from the tiles) + bias -> y rows m0 .., columns n0 .. n0 + nv - 1 */
T512 static void store_block(const job_t *j, const float *C, int64_t m0, int64_t rows, int64_t n0, int64_t nv) {
    const __mmask16 k0 = nv >= 16 ? 0xFFFF : (__mmask16)((1u << nv) - 1);
    const __mmask16 k1 = nv >= 32 ? 0xFFFF : nv <= 16 ? 0 : (__mmask16)((1u << (nv - 16)) - 1);
    __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
    if (j->bias) {
        b0 = _mm512_maskz_loadu_ps(k0, j->bias + n0);
        b1 = _mm512_maskz_loadu_ps(k1, j->bias + n0 + 16);
    }
    for (int64_t r = 0; r < rows; r++) {
        const __m512 v0 = _mm512_add_ps(_mm512_load_ps(C + 32 * r), b0);
        const __m512 v1 = _mm512_add_ps(_mm512_load_ps(C + 32 * r + 16), b1);
        const __m256i h0 = f32_to_bf16_rne(v0), h1 = f32_to_bf16_rne(v1);
        if (j->out_bf16) {
            uint16_t *d = (uint16_t *)j->y + (m0 + r) * j->out + n0;
            _mm256_mask_storeu_epi16(d, k0, h0);
            _mm256_mask_storeu_epi16(d + 16, k1, h1);
        } else { /* float32 holding the bf16 result (what .to(float32) of the bf16 output gives) */
            float *d = j->y + (m0 + r) * j->out + n0;
            _mm512_mask_storeu_ps(d, k0, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h0), 16)));
            _mm512_mask_storeu_ps(d + 16, k1, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h1), 16)));
        }
    }
}

/* Output panels [u0 / 4, u1 / 4) (4 units per panel of 32 rows, as the fused float32 GEMM). */
TAMX void wc_lut_gemm_amx(const job_t *j, int64_t u0, int64_t u1) {
    const int64_t p0 = u0 / 4, p1 = u1 / 4, M = j->M, out = j->out, ldxb = j->ldxb, kp2 = ldxb / 2;
    const int64_t Mp = (M + 15) & ~(int64_t)15;
    uint16_t *panel = pbuf_get((size_t)(kp2 * 64));
    if (!panel) { __atomic_store_n(j->fail, 1, __ATOMIC_RELAXED); return; }
    float C[32 * 32] __attribute__((aligned(64)));
    tilecfg_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) { cfg.rows[t] = 16; cfg.colsb[t] = 64; }
    _tile_loadconfig(&cfg);
    job_t jp = *j; /* the panel's dequantize: 32-row blocks, block of row n0 at the buffer's start */
    jp.pnb = 32; jp.pkp2 = kp2; jp.w = panel;
    /* rows of x per chunk: the chunk of xb stays in L2 while every panel passes over it (all rows
     * at once streamed x from memory once per panel: at 1024 rows and more, 1.3-1.7x slower than
     * oneDNN); each panel is dequantized again per chunk */
    int64_t mc = (AMX_XCHUNK / (ldxb * 2)) & ~(int64_t)31;
    if (mc < 32) mc = 32;
    for (int64_t mc0 = 0; mc0 < Mp; mc0 += mc)
    for (int64_t p = p0; p < p1; p++) {
        const int64_t n0 = 32 * p, nv = out - n0 < 32 ? out - n0 : 32, mc1 = mc0 + mc < Mp ? mc0 + mc : Mp;
        jp.prow0 = n0;
        wc_lut_deq_packed_avx512(&jp, n0 / 16, (n0 + nv + 15) / 16);
        /* features in .. ldxb - 1 multiply x's zero padding: they must not hold NaN or inf */
        for (int64_t c = j->in; c < ldxb; c++)
            for (int64_t r = 0; r < 32; r++) panel[(c / 2) * 64 + r * 2 + (c & 1)] = 0;
        for (int64_t m = mc0; m < mc1; m += 32) {
            const int two = m + 16 < mc1;
            const uint16_t *a = j->xb + m * ldxb;
            _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
            for (int64_t k = 0; k < ldxb; k += 32) {
                _tile_loadd(4, a + k, ldxb * 2);
                _tile_loadd(6, panel + k * 32, 128);
                _tile_loadd(7, panel + k * 32 + 32, 128);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(1, 4, 7);
                if (two) {
                    _tile_loadd(5, a + 16 * ldxb + k, ldxb * 2);
                    _tile_dpbf16ps(2, 5, 6);
                    _tile_dpbf16ps(3, 5, 7);
                }
            }
            _tile_stored(0, C, 128);
            _tile_stored(1, C + 16, 128);
            if (two) {
                _tile_stored(2, C + 512, 128);
                _tile_stored(3, C + 512 + 16, 128);
            }
            const int64_t rows = (M - m < 32 ? M - m : 32);
            if (rows > 0) store_block(j, C, m, rows, n0, nv);
        }
    }
    _tile_release();
}

#else
int wc_amx_ready(void) { return 0; }
#endif
