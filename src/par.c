/* par.c — the thread team of a rank (par.h).
 *
 * Why not OpenMP: libgomp's idle threads spin about 3 ms before they sleep
 * (OMP_WAIT_POLICY unset), read only from the environment at load time. A
 * training step has a few hundred fork-join points; on a node shared with
 * other jobs a spinning thread burns the time slice its partner needs: a
 * CIFAR-10 step with 2 threads took 2.4 s, and 136 ms with
 * OMP_WAIT_POLICY=passive (measured under load 7 on 2 cores). This team
 * spins for about 20 microseconds, then sleeps on a condition variable.
 *
 * One team per process, created on first use, grown when more threads are
 * asked for; par_run from inside a team's task runs serially.
 */
#include "par.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define PAR_MAX 256 /* threads per team */
#define SPINS 2000  /* polls before sleeping (~20 us with pause) */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    int nworkers;            /* threads besides the caller */
    atomic_ulong generation; /* bumped for every task */
    atomic_int remaining;    /* workers still running the task */
    int sleeping_workers;    /* under lock */
    bool master_sleeping;    /* under lock */
    par_fn fn;
    void *ctx;
    int T;
} team = {.lock = PTHREAD_MUTEX_INITIALIZER,
          .wake = PTHREAD_COND_INITIALIZER,
          .done = PTHREAD_COND_INITIALIZER};

static _Thread_local bool in_task;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* waits until the generation differs from seen; returns the new one */
static unsigned long wait_task(unsigned long seen) {
    for (int i = 0; i < SPINS; i++) {
        unsigned long g = atomic_load_explicit(&team.generation, memory_order_acquire);
        if (g != seen) return g;
        cpu_relax();
    }
    pthread_mutex_lock(&team.lock);
    team.sleeping_workers++;
    unsigned long g;
    while ((g = atomic_load_explicit(&team.generation, memory_order_acquire)) == seen)
        pthread_cond_wait(&team.wake, &team.lock);
    team.sleeping_workers--;
    pthread_mutex_unlock(&team.lock);
    return g;
}

static void *worker(void *arg) {
    const int t = (int)(intptr_t)arg; /* 1 .. nworkers */
    unsigned long seen = 0;
    in_task = true; /* a task's own par_run calls run serially */
    for (;;) {
        seen = wait_task(seen);
        if (t < team.T) team.fn(team.ctx, t, team.T);
        if (atomic_fetch_sub_explicit(&team.remaining, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&team.lock);
            if (team.master_sleeping) pthread_cond_signal(&team.done);
            pthread_mutex_unlock(&team.lock);
        }
    }
    return NULL;
}

/* at least n workers (called by the master only) */
static void grow(int n) {
    while (team.nworkers < n) {
        pthread_t th;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&th, &at, worker, (void *)(intptr_t)(team.nworkers + 1));
        pthread_attr_destroy(&at);
        YT_CHECK(rc == 0);
        team.nworkers++;
    }
}

void par_run(int T, par_fn fn, void *ctx) {
    if (T <= 1 || in_task) {
        for (int t = 0; t < T; t++) /* serially, same partition */
            fn(ctx, t, T);
        if (T < 1) fn(ctx, 0, 1);
        return;
    }
    YT_CHECK(T <= PAR_MAX);
    grow(T - 1);
    team.fn = fn;
    team.ctx = ctx;
    team.T = T;
    /* every worker answers each task, those past T without work */
    atomic_store_explicit(&team.remaining, team.nworkers, memory_order_relaxed);
    atomic_fetch_add_explicit(&team.generation, 1, memory_order_release);
    pthread_mutex_lock(&team.lock);
    if (team.sleeping_workers) pthread_cond_broadcast(&team.wake);
    pthread_mutex_unlock(&team.lock);
    in_task = true;
    fn(ctx, 0, T);
    in_task = false;
    for (int i = 0; i < SPINS; i++) {
        if (atomic_load_explicit(&team.remaining, memory_order_acquire) == 0) return;
        cpu_relax();
    }
    pthread_mutex_lock(&team.lock);
    team.master_sleeping = true;
    while (atomic_load_explicit(&team.remaining, memory_order_acquire) != 0)
        pthread_cond_wait(&team.done, &team.lock);
    team.master_sleeping = false;
    pthread_mutex_unlock(&team.lock);
}
