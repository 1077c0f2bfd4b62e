/* AVX2 + FMA LUT kernels (float32 compute): lookups by gathers. */
#include "../internal.h"

#ifdef WC_X86
/* ---- AVX2: gathers ------------------------------------------------------------------------- */
T256 static inline __m256i idx8_avx2(const job_t *j, const uint8_t *row, int64_t c) {
    if (j->index_bits == 8) return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(row + c)));
    int32_t v; memcpy(&v, row + c / 2, 4);
    __m256i s = _mm256_srlv_epi32(_mm256_set1_epi32(v), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
    return _mm256_and_si256(s, _mm256_set1_epi32(15));
}

T256 static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

T256 void wc_gemv_avx2(const job_t *j, int64_t r0, int64_t r1) {
    int64_t full = j->in & ~(int64_t)7;
    for (int64_t r = r0; r < r1; r++) {
        const float *t = j->tab + (r / j->group_size) * 256;
        const uint8_t *row = j->idx + r * j->rowbytes;
        for (int64_t m0 = 0; m0 < j->M; m0 += 4) {
            int mb = (int)(j->M - m0 < 4 ? j->M - m0 : 4);
            __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
            for (int64_t c = 0; c < full; c += 8) {
                __m256 w = _mm256_i32gather_ps(t, idx8_avx2(j, row, c), 4);
                for (int m = 0; m < mb; m++)
                    acc[m] = _mm256_fmadd_ps(w, _mm256_loadu_ps(j->x + (m0 + m) * j->ldx + c), acc[m]);
            }
            for (int m = 0; m < mb; m++) {
                const float *x = j->x + (m0 + m) * j->ldx;
                float s = hsum256(acc[m]);
                for (int64_t c = full; c < j->in; c++) s += x[c] * t[idx_at(j, r, c)];
                j->y[(m0 + m) * j->out + r] = s + (j->bias ? j->bias[r] : 0.f);
            }
        }
    }
}

T256 void wc_deq_avx2(const job_t *j, int64_t r0, int64_t r1) {
    if (j->out_bf16) { wc_deq_c(j, r0, r1); return; }
    int64_t full = j->in & ~(int64_t)7;
    for (int64_t r = r0; r < r1; r++) {
        const float *t = j->tab + (r / j->group_size) * 256;
        const uint8_t *row = j->idx + r * j->rowbytes;
        float *w = (float *)j->w + r * j->in;
        for (int64_t c = 0; c < full; c += 8) _mm256_storeu_ps(w + c, _mm256_i32gather_ps(t, idx8_avx2(j, row, c), 4));
        for (int64_t c = full; c < j->in; c++) w[c] = t[idx_at(j, r, c)];
    }
}
#endif /* WC_X86 */
