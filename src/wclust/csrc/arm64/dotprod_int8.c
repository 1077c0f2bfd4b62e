/* Integer GEMV with the ARMv8.2 dot product (sdot): the template of neon_i8.h with 16 products
 * per instruction. This file is compiled for armv8.2-a+dotprod whatever the build's -march, so
 * api.c calls it only where runtime.c read the dot product from the CPU (ISA_DOTPROD). x is
 * 7-bit unsigned (0..127), so its bytes are valid int8 and sdot's int8 x int8 products are exact. */
#include "../internal.h"
#ifdef WC_ARM64
#if defined(__clang__)
#if defined(__ARM_FEATURE_DOTPROD)
#define WC_HAVE_DOTPROD 1
#endif
#else
#pragma GCC target("arch=armv8.2-a+dotprod")
#define WC_HAVE_DOTPROD 1
#endif

#ifdef WC_HAVE_DOTPROD
#define WC_I8_DOT16(acc, xq, q) vdotq_s32((acc), vreinterpretq_s8_u8(xq), (q))
#define WC_I8_SUM16(acc, q) vdotq_s32((acc), (q), vdupq_n_s8(1))
#define WC_I8_KERNEL wc_i8_gemv_dotprod
#include "neon_i8.h"
#else
/* a compiler that cannot target the dot product here: the NEON kernel (same results) */
void wc_i8_gemv_dotprod(const job_t *j, int64_t r0, int64_t r1) { wc_i8_gemv_neon(j, r0, r1); }
#endif
#endif
