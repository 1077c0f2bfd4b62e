/* Runtime of the C kernels: the CPU's instruction set (chosen once, lowered by tests), and the
 * threads every kernel's rows are split over (torch's OpenMP team when registered, else a small
 * persistent pthread pool). Kernels never call these directly: api.c does. */
#define _GNU_SOURCE /* RTLD_NOLOAD */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "wclust.h"

#ifdef WC_ARM64
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#elif defined(__APPLE__)
#include <sys/sysctl.h>
#endif
/* ARM64: NEON (Advanced SIMD) and the ARMv8.2 dot product (sdot / udot), as the OS reports them */
static int detect_arm64(void) {
#if defined(__linux__)
    const unsigned long hw = getauxval(AT_HWCAP);
    if (!(hw & HWCAP_ASIMD)) return ISA_C;
    return (hw & HWCAP_ASIMDDP) ? ISA_DOTPROD : ISA_NEON;
#elif defined(__APPLE__)
    int dp = 0; size_t n = sizeof dp;
    if (sysctlbyname("hw.optional.arm.FEAT_DotProd", &dp, &n, NULL, 0) != 0) dp = 0;
    return dp ? ISA_DOTPROD : ISA_NEON;
#else
    return ISA_C;
#endif
}
#endif

static int g_isa = -1, g_force = -1;
static int detect_isa(void) {
#ifdef WC_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512vl"))
        return ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return ISA_AVX2;
#endif
#ifdef WC_ARM64
    return detect_arm64();
#endif
    return ISA_C;
}

int wc_isa(void) {
    if (g_isa < 0) g_isa = detect_isa();
    const int level = (g_force >= 0 && g_force < g_isa) ? g_force : g_isa;
#ifdef WC_ARM64
    if (level > ISA_C && level < ISA_NEON) return ISA_C; /* an x86 level asked of an ARM64 CPU: portable */
#endif
    return level;
}

int wc_lut_isa(void) { return wc_isa(); }
/* Lower the ISA used (for tests); -1 restores the detected one. Returns the one now in use. */
int wc_lut_force_isa(int level) { g_force = level; return wc_isa(); }

typedef struct { const job_t *job; range_fn fn; int64_t r0, r1; } task_t;

/* A small persistent pool (creating threads per call costs tens of microseconds, as much as a
 * small GEMV). One parallel region at a time: a caller that finds the pool busy (e.g. another
 * Python thread) runs its rows alone. Workers spin briefly, then sleep on a condition variable. */
#define POOL_MAX 64
static pthread_mutex_t pool_call = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_wake = PTHREAD_COND_INITIALIZER, pool_done = PTHREAD_COND_INITIALIZER;
static task_t pool_tasks[POOL_MAX];
static int pool_started = 0, pool_active = 0, pool_pending = 0;
static unsigned long pool_gen = 0;

static void run_task(const task_t *t) {
    if (t->r1 > t->r0) t->fn(t->job, t->r0, t->r1);
}

static void *pool_worker(void *arg) {
    int me = (int)(intptr_t)arg;  /* task index, >= 1 */
    unsigned long seen = 0;
    for (;;) {
        for (int spin = 0; spin < 2000 && __atomic_load_n(&pool_gen, __ATOMIC_ACQUIRE) == seen; spin++) {
#ifdef WC_X86
            _mm_pause();
#endif
#ifdef WC_ARM64
            __asm__ __volatile__("yield");
#endif
        }
        pthread_mutex_lock(&pool_mu);
        while (pool_gen == seen) pthread_cond_wait(&pool_wake, &pool_mu);
        seen = pool_gen;
        int active = me < pool_active;
        pthread_mutex_unlock(&pool_mu);
        if (!active) continue;
        run_task(&pool_tasks[me]);
        pthread_mutex_lock(&pool_mu);
        if (--pool_pending == 0) pthread_cond_signal(&pool_done);
        pthread_mutex_unlock(&pool_mu);
    }
    return NULL;
}

/* The host's OpenMP team (the runtime PyTorch already loaded, found by the caller and passed to
 * wc_lut_use_openmp): when set, parallel regions run on the same threads as torch's own ops. A
 * private pool would fight torch's OpenMP workers, which spin for a while after every op: on 2
 * cores that cost a 2-thread clustered ViT-B 2x (measured 0.50x of dense fp32). Resolved with
 * dlsym against the already-loaded library, so nothing links against an OpenMP runtime. */
typedef void (*gomp_parallel_fn)(void (*)(void *), void *, unsigned, unsigned);
typedef int (*omp_int_fn)(void);
static gomp_parallel_fn g_gomp_parallel;
static omp_int_fn g_omp_thread_num, g_omp_num_threads;

int wc_lut_use_openmp(const char *path) {
    g_gomp_parallel = NULL;
    if (!path) return 0;
    void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);  /* only a library that is already loaded */
    if (!h) return -1;
    gomp_parallel_fn p = (gomp_parallel_fn)dlsym(h, "GOMP_parallel");
    omp_int_fn t = (omp_int_fn)dlsym(h, "omp_get_thread_num"), n = (omp_int_fn)dlsym(h, "omp_get_num_threads");
    if (!p || !t || !n) return -1;
    g_omp_thread_num = t; g_omp_num_threads = n; g_gomp_parallel = p;
    return 1;
}

typedef struct { const task_t *tasks; int ntasks; } omp_arg_t;

static void omp_body(void *arg) {
    const omp_arg_t *a = (const omp_arg_t *)arg;
    int me = g_omp_thread_num(), nth = g_omp_num_threads();
    if (nth < 1) nth = 1;
    for (int t = me; t < a->ntasks; t += nth) run_task(&a->tasks[t]);  /* fewer threads than asked: loop */
}

static void split_rows(task_t *tasks, const job_t *job, range_fn fn, int64_t rows, int nthreads) {
    for (int t = 0; t < nthreads; t++) {  /* boundaries on multiples of 4 rows (GEMV row tiles) */
        tasks[t].job = job; tasks[t].fn = fn;
        tasks[t].r0 = t ? (rows * t / nthreads) & ~(int64_t)3 : 0;
        tasks[t].r1 = t + 1 < nthreads ? (rows * (t + 1) / nthreads) & ~(int64_t)3 : rows;
    }
}

void wc_parallel_rows(const job_t *job, range_fn fn, int64_t rows, int nthreads) {
    if (nthreads > POOL_MAX) nthreads = POOL_MAX;
    if (nthreads > rows / 16) nthreads = (int)(rows / 16);
    if (nthreads >= 2 && g_gomp_parallel) {
        task_t tasks[POOL_MAX];
        split_rows(tasks, job, fn, rows, nthreads);
        omp_arg_t a = {tasks, nthreads};
        g_gomp_parallel(omp_body, &a, (unsigned)nthreads, 0);
        return;
    }
    if (nthreads < 2 || pthread_mutex_trylock(&pool_call) != 0) { fn(job, 0, rows); return; }
    while (pool_started < nthreads - 1) {  /* workers are detached and live for the process */
        pthread_t th;
        if (pthread_create(&th, NULL, pool_worker, (void *)(intptr_t)(pool_started + 1)) != 0) break;
        pthread_detach(th);
        pool_started++;
    }
    if (nthreads > pool_started + 1) nthreads = pool_started + 1;
    if (nthreads < 2) { pthread_mutex_unlock(&pool_call); fn(job, 0, rows); return; }
    split_rows(pool_tasks, job, fn, rows, nthreads);
    pthread_mutex_lock(&pool_mu);
    pool_active = nthreads;
    pool_pending = nthreads - 1;
    __atomic_store_n(&pool_gen, pool_gen + 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&pool_wake);
    pthread_mutex_unlock(&pool_mu);
    run_task(&pool_tasks[0]);
    pthread_mutex_lock(&pool_mu);
    while (pool_pending > 0) pthread_cond_wait(&pool_done, &pool_mu);
    pthread_mutex_unlock(&pool_mu);
    pthread_mutex_unlock(&pool_call);
}
