/* AVX-512 (F/BW/VBMI/VL) LUT kernels: see api.c for the layout and the dispatch. */
#include "../internal.h"

#ifdef WC_X86
/* ---- AVX-512 ------------------------------------------------------------------------------- */
/* Block permutations (position in the lookup output -> weight within the block). */
static int perm_a8(int p) { int v = p / 16, d = p % 16; return 4 * d + v; }           /* 64 */
static int perm_a4(int p) { int v = p / 16, d = p % 16; return 8 * d + v; }           /* 128 */
static int perm_bp(int p) { int v = p / 16, q = p % 16; return 16 * (q / 4) + 4 * v + q % 4; } /* 64 */
/* byte-plane slot s -> weight, so that the unpacks come out in natural order: wc_q_f32 (internal.h), and for bf16 */
static int q_bf16(int s) { int L = s / 16, v = (s / 8) % 2, w = s % 8; return 32 * v + 8 * L + w; }
static int nib_pos(int w) { return (w & 1) ? 32 + w / 2 : w / 2; }


/* tables of one group for the permute modes */
typedef struct { __m512 t0, t1; __m512i p[4][4]; } tabs_t;

T512 static void load_tabs(const job_t *j, int64_t g, tabs_t *T, int nt) {
    const float *t = j->tab + g * 256;
    T->t0 = _mm512_loadu_ps(t);
    T->t1 = _mm512_loadu_ps(t + 16);
    const uint8_t *pl = j->planes + g * 1024;
    for (int c = 0; c < 4; c++)
        for (int k = 0; k < nt; k++) T->p[c][k] = _mm512_loadu_si512(pl + c * 256 + 64 * k);
}

#define ALWAYS_INLINE inline __attribute__((always_inline))
#define DO_PRAGMA(x) _Pragma(#x)
#define UNROLL(n) DO_PRAGMA(GCC unroll n) /* complete unrolling keeps the accumulators in registers */
#ifndef PF_ROWS
#define PF_ROWS 8
#endif
#ifndef GEMV_MB
#define GEMV_MB 8 /* rows of x per pass over the indices (4..8) */
#endif
#ifndef GEMV_LOADS_A4
#define GEMV_LOADS_A4 2 /* loads per 64 index bytes, 4-bit (1, 2 or 4) */
#endif
#ifndef GEMV_LOADS_A8
#define GEMV_LOADS_A8 1 /* loads per 64 index bytes, 8-bit k <= 32 (1, 2 or 4) */
#endif

/* R output rows x MB rows of x, one pass over the row (R, MB, mode: constants after inlining). */
T512 static ALWAYS_INLINE void tile512(const job_t *j, const tabs_t *T, int64_t r, const float *xbase, float *res,
                                       const int mode, const int R, const int MB) {
    const int nt = mode == MODE_BP1 ? 1 : mode == MODE_BP2 ? 2 : 4;
    const int64_t ldx = j->ldx, bw = mode == MODE_A4 ? 128 : 64, rowbytes = j->rowbytes;
    const int64_t nblk = (rowbytes + 63) / 64;
    __m512 acc[8][2];  /* R * MB <= 8 pairs */
    for (int i = 0; i < R * MB; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nblk; b++) {
        const int64_t off = b * 64, rem = rowbytes - off;
        const float *xb = xbase + b * bw;
        if (mode == MODE_A8_16 || mode == MODE_A8_32 || mode == MODE_A4) {
            /* The permutes read only the low 4 (vpermps) or 5 (vpermt2ps) bits of each dword, so
             * the index at byte o of dword lane l can come from a load at byte offset o instead of
             * a shift (shifts share port 0 with the FMAs): NL loads at offsets 0, 4/NL, ... each
             * serve 4/NL (8-bit) or 8/NL (4-bit) lookups, shifting by 8 or 4 bits in between. A load
             * that would reach past the row's last byte is masked (tests/test_plans.py puts a guard
             * page right after the indices). */
            const int NL = mode == MODE_A4 ? GEMV_LOADS_A4 : GEMV_LOADS_A8;
            const int per = (mode == MODE_A4 ? 8 : 4) / NL, step = 4 / NL, sh = mode == MODE_A4 ? 4 : 8;
            for (int rr = 0; rr < R; rr++)
                _mm_prefetch((const char *)(j->idx + (r + rr + PF_ROWS) * rowbytes + off), _MM_HINT_T0);
            UNROLL(4) for (int l = 0; l < NL; l++) {
                const int o = l * step;
                const int whole = rem - o >= 64;  /* all 64 bytes of this load inside the row */
                const __mmask64 lm = whole ? ~(__mmask64)0 : rem - o <= 0 ? 0 : (((__mmask64)1 << (rem - o)) - 1);
                UNROLL(4) for (int rr = 0; rr < R; rr++) {
                    const uint8_t *p = j->idx + (r + rr) * rowbytes + off + o;
                    __m512i v = whole ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(lm, p);
                    __m512 *a = acc[rr * MB];
                    UNROLL(8) for (int t = 0; t < per; t++) {
                        const int q = (mode == MODE_A4 ? 2 * o : o) + t;
                        __m512i sv = t ? _mm512_srli_epi32(v, sh * t) : v;
                        __m512 w = mode == MODE_A8_32 ? _mm512_permutex2var_ps(T->t0, sv, T->t1)
                                                      : _mm512_permutexvar_ps(sv, T->t0);
                        UNROLL(8) for (int m = 0; m < MB; m++)
                            a[2 * m + (q & 1)] = _mm512_fmadd_ps(w, _mm512_loadu_ps(xb + m * ldx + 16 * q), a[2 * m + (q & 1)]);
                    }
                }
            }
            continue;
        }
        const __mmask64 lm = rem >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << rem) - 1);
        for (int rr = 0; rr < R; rr++) {
            const uint8_t *p = j->idx + (r + rr) * rowbytes + off;
            /* software prefetch PF_ROWS rows ahead: the hardware prefetchers alone left this loop
             * waiting on memory when the indices stream from DRAM (a model's layers, not one hot layer) */
            _mm_prefetch((const char *)(p + PF_ROWS * rowbytes), _MM_HINT_T0);
            __m512i v = rem >= 64 ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(lm, p);
            __m512 *a = acc[rr * MB];
            __m512 f[4];
            wc_bp_floats(T->p, v, nt, f);
            for (int q = 0; q < 4; q++)
                for (int m = 0; m < MB; m++)
                    a[2 * m + (q & 1)] = _mm512_fmadd_ps(f[q], _mm512_loadu_ps(xb + m * ldx + 16 * q), a[2 * m + (q & 1)]);
        }
    }
    for (int rr = 0; rr < R; rr++)
        for (int m = 0; m < MB; m++) {
            const __m512 *a = acc[rr * MB];
            res[m * R + rr] = _mm512_reduce_add_ps(_mm512_add_ps(a[2 * m], a[2 * m + 1]));
        }
}

#define TILE_SWITCH(R, MB)                                                                      \
    switch (mode) {                                                                             \
        case MODE_A8_16: tile512(j, &T, r, xb, res, MODE_A8_16, R, MB); break;                  \
        case MODE_A8_32: tile512(j, &T, r, xb, res, MODE_A8_32, R, MB); break;                  \
        case MODE_A4: tile512(j, &T, r, xb, res, MODE_A4, R, MB); break;                        \
        case MODE_BP1: tile512(j, &T, r, xb, res, MODE_BP1, R, MB); break;                      \
        case MODE_BP2: tile512(j, &T, r, xb, res, MODE_BP2, R, MB); break;                      \
        default: tile512(j, &T, r, xb, res, MODE_BP4, R, MB); break;                            \
    }

T512 void wc_lut_gemv_avx512(const job_t *j, int64_t r0, int64_t r1) {
    const int mode = j->mode;
    const int nt = mode == MODE_BP1 ? 1 : mode == MODE_BP2 ? 2 : 4;
    tabs_t T;
    memset(&T, 0, sizeof T);
    int64_t gcur = -1;
    float res[16];
    for (int64_t r = r0; r < r1;) {
        int64_t g = r / j->group_size;
        if (g != gcur) { load_tabs(j, g, &T, mode >= MODE_BP1 ? nt : 0); gcur = g; }
        if (j->M == 1 && r + 4 <= r1 && (r + 3) / j->group_size == g) {  /* 4 output rows share x */
            const float *xb = j->x;
            TILE_SWITCH(4, 1)
            for (int rr = 0; rr < 4; rr++) j->y[r + rr] = res[rr] + (j->bias ? j->bias[r + rr] : 0.f);
            r += 4;
            continue;
        }
        for (int64_t m0 = 0; m0 < j->M; m0 += GEMV_MB) {  /* up to GEMV_MB rows of x per pass over the row */
            const float *xb = j->x + m0 * j->ldx;
            int64_t mb = j->M - m0 < GEMV_MB ? j->M - m0 : GEMV_MB;
            switch (mb) {
                case 1: TILE_SWITCH(1, 1) break;
                case 2: TILE_SWITCH(1, 2) break;
                case 3: TILE_SWITCH(1, 3) break;
                case 4: TILE_SWITCH(1, 4) break;
#if GEMV_MB > 4
                case 5: TILE_SWITCH(1, 5) break;
                case 6: TILE_SWITCH(1, 6) break;
                case 7: TILE_SWITCH(1, 7) break;
                default: TILE_SWITCH(1, 8) break;
#endif
            }
            for (int m = 0; m < mb; m++) j->y[(m0 + m) * j->out + r] = res[m] + (j->bias ? j->bias[r] : 0.f);
        }
        r++;
    }
}

/* The bf16 values of 64 index bytes v (byte planes 2 and 3 of the codebook floats, P0 and P1):
 * the unpacks within 128-bit lanes give bytes 0-7 of each lane at d, bytes 8-15 at d + piece
 * (uint16 elements); callers order v to match. */
T512 static WC_INLINE void bf16_pieces(const __m512i *P0, const __m512i *P1, __m512i v, const int nt,
                                       uint16_t *d, int64_t piece) {
    __m512i p0 = wc_bp_lookup(P0, v, nt), p1 = wc_bp_lookup(P1, v, nt);
    _mm512_storeu_si512(d, _mm512_unpacklo_epi8(p0, p1));
    _mm512_storeu_si512(d + piece, _mm512_unpackhi_epi8(p0, p1));
}

T512 void wc_lut_deq_avx512(const job_t *j, int64_t r0, int64_t r1) {
    const int K = j->K, nt = K <= 64 ? 1 : K <= 128 ? 2 : 4;
    const int four = j->index_bits == 4, bf = j->out_bf16, np = bf ? 2 : 4;
    uint8_t qb[64];
    for (int s = 0; s < 64; s++) {
        int w = bf ? q_bf16(s) : wc_q_f32(s);
        qb[s] = (uint8_t)(four ? nib_pos(w) : w);
    }
    const __m512i Q = _mm512_loadu_si512(qb);
    const __m512i cnt = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
    const __m512i lo4 = _mm512_set1_epi8(15);
    const int64_t full = j->in & ~(int64_t)63;
    __m512i P[4][4];
    int64_t gcur = -1;
    for (int64_t r = r0; r < r1; r++) {
        int64_t g = r / j->group_size;
        if (g != gcur) {
            /* bf16 planes: bytes 2 and 3 of each float */
            for (int c = 0; c < np; c++)
                for (int k = 0; k < nt; k++)
                    P[c][k] = _mm512_loadu_si512(j->planes + g * 1024 + (bf ? c + 2 : c) * 256 + 64 * k);
            gcur = g;
        }
        const uint8_t *row = j->idx + r * j->rowbytes;
        for (int64_t c0 = 0; c0 < full; c0 += 64) {
            _mm_prefetch((const char *)(row + (four ? c0 / 2 : c0) + 4 * j->rowbytes), _MM_HINT_T0);
            __m512i v;
            if (four) {
                v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(row + c0 / 2)));
                v = _mm512_and_si512(_mm512_srlv_epi16(v, cnt), lo4);
            } else {
                v = _mm512_loadu_si512(row + c0);
            }
            v = _mm512_permutexvar_epi8(Q, v);
            if (bf) {
                bf16_pieces(P[0], P[1], v, nt, (uint16_t *)j->w + r * j->in + c0, 32);
            } else {
                __m512 f[4];
                wc_bp_floats(P, v, nt, f);
                float *w = (float *)j->w + r * j->in + c0;
                for (int q = 0; q < 4; q++) _mm512_storeu_ps(w + 16 * q, f[q]);
            }
        }
        const float *t = j->tab + g * 256;
        for (int64_t c = full; c < j->in; c++) {
            float val = t[idx_at(j, r, c)];
            if (bf) ((uint16_t *)j->w)[r * j->in + c] = f32_to_bf16_bits(val);
            else ((float *)j->w)[r * j->in + c] = val;
        }
    }
}
/* Packed bf16 dequantize (layout: packed_at in internal.h), units of 16 rows of one block.
 * bf16_pieces of one vector v of 64 index bytes gives two finished 64-byte pieces of the packed
 * weight (16 rows x the 2 features of one pair) when lane L of v holds rows 4 L .. 4 L + 3 as
 * [row 4 L: feature 0, 1; row 4 L + 1: 0, 1; ...] of the first pair, then the same for the second
 * pair: first pair at d, second at d + piece. */

/* 16 rows (stride ld) x 64 index bytes -> Y[4 L + j] = bytes 16 L + 4 j .. + 3 of every row, lane q
 * for rows 4 q .. 4 q + 3. Within a lane, 8-bit indices come out as v above wants them (the rows'
 * byte pairs in turn, then their next byte pairs); 4-bit ones (a byte = a feature pair) as the 4
 * rows' bytes of each of the 4 pairs in turn. */
T512 static WC_INLINE void transpose16(const uint8_t *p, int64_t ld, const int four, __m512i Y[16]) {
    __m512i R[16], A[16], T[4][4];
    for (int n = 0; n < 16; n++) R[n] = _mm512_loadu_si512(p + n * ld);
    /* rows 2 k and 2 k + 1 interleaved by feature pair (1 or 2 bytes) */
    for (int k = 0; k < 8; k++) {
        __m512i a = R[2 * k], b = R[2 * k + 1];
        A[2 * k] = four ? _mm512_unpacklo_epi8(a, b) : _mm512_unpacklo_epi16(a, b);
        A[2 * k + 1] = four ? _mm512_unpackhi_epi8(a, b) : _mm512_unpackhi_epi16(a, b);
    }
    /* then by pair of rows: lane L of T[q][j] = bytes 16 L + 4 j .. + 3 of rows 4 q .. 4 q + 3 */
    for (int q = 0; q < 4; q++)
        for (int h = 0; h < 2; h++) {
            __m512i a = A[4 * q + h], b = A[4 * q + 2 + h];
            T[q][2 * h] = four ? _mm512_unpacklo_epi16(a, b) : _mm512_unpacklo_epi32(a, b);
            T[q][2 * h + 1] = four ? _mm512_unpackhi_epi16(a, b) : _mm512_unpackhi_epi32(a, b);
        }
    /* 4 x 4 transpose of 128-bit lanes: lane L of T[q][j] -> lane q of Y[4 L + j] */
    for (int j = 0; j < 4; j++) {
        __m512i t0 = _mm512_shuffle_i64x2(T[0][j], T[1][j], 0x44), t1 = _mm512_shuffle_i64x2(T[0][j], T[1][j], 0xEE);
        __m512i t2 = _mm512_shuffle_i64x2(T[2][j], T[3][j], 0x44), t3 = _mm512_shuffle_i64x2(T[2][j], T[3][j], 0xEE);
        Y[j] = _mm512_shuffle_i64x2(t0, t2, 0x88);
        Y[4 + j] = _mm512_shuffle_i64x2(t0, t2, 0xDD);
        Y[8 + j] = _mm512_shuffle_i64x2(t1, t3, 0x88);
        Y[12 + j] = _mm512_shuffle_i64x2(t1, t3, 0xDD);
    }
}

/* Feature pairs [0, np) of H (1 or 2) consecutive units of one block, np a multiple of 32 (8-bit)
 * or 64 (4-bit): 64 index bytes of each row at a time, loaded whole and transposed. The pieces of
 * the H units for one pair are adjacent and stored one after the other, so the weight is written
 * in order (2 units: 15-20% faster than one unit after the other). */
T512 static WC_INLINE void packed_bulk(const uint8_t *base, int64_t ld, int64_t np, const __m512i *P0,
                                       const __m512i *P1, const int nt, const int four, const int H,
                                       uint16_t *dst, int64_t piece) {
    for (int64_t p = 0; p < np; p += four ? 64 : 32) {
        __m512i Y[2][16];
        for (int h = 0; h < H; h++) transpose16(base + 16 * h * ld + (four ? p : 2 * p), ld, four, Y[h]);
        for (int i = 0; i < 16; i++) {
            if (four) {  /* Y[h][i]: pairs p + 4 i .. + 3; the low nibble is feature 0 */
                __m512i hi[2];
                for (int h = 0; h < H; h++) hi[h] = _mm512_srli_epi16(Y[h][i], 4);
                for (int h = 0; h < H; h++)
                    bf16_pieces(P0, P1, _mm512_unpacklo_epi8(Y[h][i], hi[h]), nt, dst + 32 * h + (p + 4 * i) * piece, piece);
                for (int h = 0; h < H; h++)
                    bf16_pieces(P0, P1, _mm512_unpackhi_epi8(Y[h][i], hi[h]), nt, dst + 32 * h + (p + 4 * i + 2) * piece, piece);
            } else {     /* Y[h][i]: pairs p + 2 i, p + 2 i + 1 */
                for (int h = 0; h < H; h++) bf16_pieces(P0, P1, Y[h][i], nt, dst + 32 * h + (p + 2 * i) * piece, piece);
            }
        }
    }
}

/* packed_bulk with nt and four as constants */
T512 static WC_INLINE void packed_bulk_nt(const uint8_t *base, int64_t ld, int64_t np, const __m512i *P0,
                                          const __m512i *P1, int nt, int four, const int H, uint16_t *dst,
                                          int64_t piece) {
    if (four) packed_bulk(base, ld, np, P0, P1, 1, 1, H, dst, piece);
    else if (nt == 1) packed_bulk(base, ld, np, P0, P1, 1, 0, H, dst, piece);
    else if (nt == 2) packed_bulk(base, ld, np, P0, P1, 2, 0, H, dst, piece);
    else packed_bulk(base, ld, np, P0, P1, 4, 0, H, dst, piece);
}

T512 void wc_lut_deq_packed_avx512(const job_t *j, int64_t u0, int64_t u1) {
    const int K = j->K, nt = K <= 64 ? 1 : K <= 128 ? 2 : 4, four = j->index_bits == 4;
    const int64_t nb = j->pnb, in = j->in, gs = j->group_size, ld = j->rowbytes;
    const int64_t bulk = four ? in / 128 * 64 : in / 64 * 32;  /* feature pairs done by packed_bulk */
    const int64_t full = four ? in & ~(int64_t)7 : in & ~(int64_t)3;
    uint8_t sel8[64], sel4[2][64];
    int32_t off[16];
    for (int P = 0; P < 64; P++) {
        /* unpacklo / unpackhi of the planes: word w of piece A / B comes from byte
         * (w / 8) * 16 + w % 8 (+ 8 for B) of the index vector; word w = (row w / 2, feature w % 2) */
        int half = (P % 16) / 8, w = (P / 16) * 8 + P % 8, n = w / 2, t = w % 2;
        sel8[P] = (uint8_t)(4 * n + 2 * half + t);       /* byte 2 * pair + feature of row n's dword */
        for (int s = 0; s < 2; s++)                      /* byte = pair; low nibble feature 0 */
            sel4[s][P] = (uint8_t)((t ? 64 : 0) + 4 * n + 2 * s + half);
    }
    for (int n = 0; n < 16; n++) off[n] = (int32_t)(n * ld);
    const __m512i S8 = _mm512_loadu_si512(sel8), S40 = _mm512_loadu_si512(sel4[0]), S41 = _mm512_loadu_si512(sel4[1]);
    const __m512i OFF = _mm512_loadu_si512(off);
    const int64_t piece = nb * 2; /* uint16 elements from one feature pair to the next */
    for (int64_t u = u0, H; u < u1; u += H) {
        const int64_t r0 = u * 16;
        H = 1;
        if (r0 + 16 > j->out || r0 / gs != (r0 + 15) / gs) {
            deq_packed_scalar(j, r0, r0 + 16 < j->out ? r0 + 16 : j->out, 0);
            continue;
        }
        /* two units of one block and group at once */
        if (u + 1 < u1 && r0 % nb + 32 <= nb && r0 + 32 <= j->out && r0 / gs == (r0 + 31) / gs) H = 2;
        const int64_t g = r0 / gs;
        __m512i P0[4], P1[4];
        for (int k = 0; k < nt; k++) {
            P0[k] = _mm512_loadu_si512(j->planes + g * 1024 + 2 * 256 + 64 * k);
            P1[k] = _mm512_loadu_si512(j->planes + g * 1024 + 3 * 256 + 64 * k);
        }
        if (four) {  /* entries 16 .. 63 repeat 0 .. 15: a lookup then reads only an index's low nibble */
            const __m512i rep = _mm512_and_si512(_mm512_set_epi64(0x3f3e3d3c3b3a3938, 0x3736353433323130,
                0x2f2e2d2c2b2a2928, 0x2726252423222120, 0x1f1e1d1c1b1a1918, 0x1716151413121110,
                0x0f0e0d0c0b0a0908, 0x0706050403020100), _mm512_set1_epi8(15));
            P0[0] = _mm512_permutexvar_epi8(rep, P0[0]);
            P1[0] = _mm512_permutexvar_epi8(rep, P1[0]);
        }
        uint16_t *dst = (uint16_t *)j->w + (((r0 - j->prow0) / nb) * j->pkp2 * nb + r0 % nb) * 2;
        const uint8_t *base = j->idx + r0 * ld;
        if (H == 2) packed_bulk_nt(base, ld, bulk, P0, P1, nt, four, 2, dst, piece);
        else packed_bulk_nt(base, ld, bulk, P0, P1, nt, four, 1, dst, piece);
        /* the pairs after those 2 or 4 at a time: one gather takes 4 index bytes of each row, a
         * byte permute orders them as v above */
        for (int h = 0; h < H; h++) {
            const uint8_t *b = base + 16 * h * ld;
            uint16_t *d = dst + 32 * h;
            if (four) {
                for (int64_t c0 = 2 * bulk; c0 < full; c0 += 8) {
                    __m512i G = _mm512_i32gather_epi32(OFF, (const void *)(b + c0 / 2), 1);
                    __m512i hi = _mm512_srli_epi16(G, 4);
                    for (int s = 0; s < 2; s++)
                        bf16_pieces(P0, P1, _mm512_permutex2var_epi8(G, s ? S41 : S40, hi), 1,
                                      d + (c0 / 2 + 2 * s) * piece, piece);
                }
            } else {
                for (int64_t c0 = 2 * bulk; c0 < full; c0 += 4) {
                    __m512i G = _mm512_i32gather_epi32(OFF, (const void *)(b + c0), 1);
                    bf16_pieces(P0, P1, _mm512_permutexvar_epi8(S8, G), nt, d + (c0 / 2) * piece, piece);
                }
            }
        }
        if (full < in) deq_packed_scalar(j, r0, r0 + 16 * H, full);
    }
}

/* d[i] = s[i] rounded to bf16 (bf16_round of internal.h, 16 at a time); d may be s */
T512 void wc_bf16_round_avx512(float *d, const float *s, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(d + i, k, _mm512_castsi512_ps(wc_bf16_round512(_mm512_maskz_loadu_ps(k, s + i))));
    }
}

int wc_lut_xperm(int mode, int p) {
    return mode == MODE_A4 ? perm_a4(p) : mode <= MODE_A8_32 ? perm_a8(p) : perm_bp(p);
}
#endif /* WC_X86 */
