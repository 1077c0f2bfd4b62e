/* Portable C LUT kernels: the reference every SIMD kernel is checked against, and what runs on a
 * CPU without one (layout and job: internal.h). */
#include "../internal.h"

void wc_gemv_c(const job_t *j, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
        const float *t = j->tab + (r / j->group_size) * 256;
        for (int64_t m = 0; m < j->M; m++) {
            const float *x = j->x + m * j->ldx;
            float acc = 0.f;
            for (int64_t c = 0; c < j->in; c++) acc += x[c] * t[idx_at(j, r, c)];
            j->y[m * j->out + r] = acc + (j->bias ? j->bias[r] : 0.f);
        }
    }
}

void wc_deq_c(const job_t *j, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
        const float *t = j->tab + (r / j->group_size) * 256;
        if (j->out_bf16) {
            uint16_t *w = (uint16_t *)j->w + r * j->in;
            for (int64_t c = 0; c < j->in; c++) w[c] = f32_to_bf16_bits(t[idx_at(j, r, c)]);
        } else {
            float *w = (float *)j->w + r * j->in;
            for (int64_t c = 0; c < j->in; c++) w[c] = t[idx_at(j, r, c)];
        }
    }
}

void wc_deq_packed_c(const job_t *j, int64_t u0, int64_t u1) {
    int64_t r1 = u1 * 16 < j->out ? u1 * 16 : j->out;
    deq_packed_scalar(j, u0 * 16, r1, 0);
}
