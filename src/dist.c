/* dist.c — the only compilation unit that calls MPI (see dist.h). */
#include "dist.h"

#include <hdf5.h>
#include <limits.h>
#include <mpi.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* the MPI type of `real` (common.h) */
#ifdef YOTO_DOUBLE
#define REAL_MPI MPI_DOUBLE
#else
#define REAL_MPI MPI_FLOAT
#endif

/* dist.h passes HDF5 property lists as int64_t */
_Static_assert(sizeof(hid_t) == sizeof(int64_t) && (hid_t)-1 < 0, "hid_t is a signed 64-bit id");

#include "watchdog.h"

static bool g_started; /* we called MPI_Init */
static int g_rank, g_size = 1;

/* Ends the job over a failed MPI call: the call, MPI's reason, and what a
 * user can do about it (hint: "" or "; ..."). */
_Noreturn static void mpi_die(const char *file, int line, int rc, const char *call,
                              const char *hint) {
    char why[MPI_MAX_ERROR_STRING];
    int n = 0;
    MPI_Error_string(rc, why, &n);
    yt_die_at(file, line, "%s failed: %s%s", call, why, hint);
}

/* Any MPI failure is a broken invariant (the default error handler would
 * abort anyway); name the call. */
#define MPI_CHECK(call)                                                                            \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != MPI_SUCCESS) mpi_die(__FILE__, __LINE__, rc_, #call, "");                       \
    } while (0)

static void abort_all(int code) {
    if (dist_active()) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

void dist_init(int *argc, char ***argv) {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        /* FUNNELED: only the main thread calls MPI, but other threads exist
         * (the data module's pread reader, OpenBLAS) */
        int provided = 0;
        MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
        g_started = true;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    yt_set_die_hook(abort_all);
}

void dist_finalize(void) {
    if (!g_started) return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
    g_started = false;
    yt_set_die_hook(NULL);
}

bool dist_active(void) {
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    if (!inited) return false;
    MPI_Finalized(&finalized);
    return !finalized;
}

int dist_rank(void) { return dist_active() ? g_rank : 0; }
int dist_size(void) { return dist_active() ? g_size : 1; }

bool dist_h5_fapl_mpio(int64_t fapl) {
    YT_CHECK(dist_active());
    return H5Pset_fapl_mpio(fapl, MPI_COMM_WORLD, MPI_INFO_NULL) >= 0;
}

int dist_agree(int status) {
    if (!dist_active() || g_size == 1) return status;
    int worst = status;
    MPI_CHECK(MPI_Allreduce(&status, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    if (worst == YT_OK) return YT_OK;
    /* the lowest failing rank tells its story */
    int mine = status != YT_OK ? g_rank : INT_MAX, teller = INT_MAX;
    MPI_CHECK(MPI_Allreduce(&mine, &teller, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
    char msg[YT_ERRMSG_MAX];
    if (g_rank == teller) snprintf(msg, sizeof msg, "%s", yt_errmsg());
    MPI_CHECK(MPI_Bcast(msg, sizeof msg, MPI_CHAR, teller, MPI_COMM_WORLD));
    msg[sizeof msg - 1] = '\0';
    if (teller > 0)
        yt_fail(worst, "rank %d: %s", teller, msg);
    else
        yt_fail(worst, "%s", msg);
    return worst;
}

void dist_report_error(void) {
    if (dist_rank() != 0) return;
    fflush(stdout);
    fprintf(stderr, "yoto: %s\n", yt_errmsg()[0] ? yt_errmsg() : "failed");
    fflush(stderr);
}

void dist_log(const char *fmt, ...) {
    if (dist_rank() != 0) return;
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

void dist_warn(const char *fmt, ...) {
    if (dist_rank() != 0) return;
    va_list ap;
    va_start(ap, fmt);
    yt_stderr_line("yoto: warning: ", fmt, ap); /* one write (common.h) */
    va_end(ap);
}

bool dist_same_everywhere(const void *buf, size_t n) {
    const unsigned char *p = buf;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return dist_allreduce_min_long((long)h) == dist_allreduce_max_long((long)h);
}

bool dist_fault(const char *point) {
    const char *f = getenv("YOTO_FAULT");
    if (!f || !*f) return false;
    size_t n = strlen(point);
    if (strncmp(f, point, n) != 0) return false;
    if (f[n] == '\0') return true;
    if (f[n] != '@') return false;
    return atoi(f + n + 1) == dist_rank();
}

void dist_barrier(void) {
    if (dist_active()) MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
}

void dist_bcast(void *buf, size_t bytes, int root) {
    if (!dist_active() || g_size == 1) return;
    char *p = buf;
    while (bytes > 0) {
        int n = bytes > (size_t)INT_MAX ? INT_MAX : (int)bytes;
        MPI_CHECK(MPI_Bcast(p, n, MPI_BYTE, root, MPI_COMM_WORLD));
        p += n;
        bytes -= (size_t)n;
    }
}

static void allreduce_sum(void *buf, size_t n, MPI_Datatype type, size_t elem) {
    if (!dist_active() || g_size == 1) return;
    char *p = buf;
    while (n > 0) {
        int k = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, p, k, type, MPI_SUM, MPI_COMM_WORLD));
        p += (size_t)k * elem;
        n -= (size_t)k;
    }
}

void dist_allreduce_sum_real(real *buf, size_t n) { allreduce_sum(buf, n, REAL_MPI, sizeof(real)); }
void dist_allreduce_sum_double(double *buf, size_t n) {
    allreduce_sum(buf, n, MPI_DOUBLE, sizeof(double));
}

/* one value, reduced with op over the world (world of one: itself) */
static void reduce1(const void *in, void *out, MPI_Datatype type, MPI_Op op) {
    if (dist_active() && g_size > 1) MPI_CHECK(MPI_Allreduce(in, out, 1, type, op, MPI_COMM_WORLD));
}

long dist_allreduce_min_long(long x) {
    long r = x;
    reduce1(&x, &r, MPI_LONG, MPI_MIN);
    return r;
}

long dist_allreduce_max_long(long x) {
    long r = x;
    reduce1(&x, &r, MPI_LONG, MPI_MAX);
    return r;
}

double dist_allreduce_min_double(double x) {
    double r = x;
    reduce1(&x, &r, MPI_DOUBLE, MPI_MIN);
    return r;
}

double dist_allreduce_max_double(double x) {
    double r = x;
    reduce1(&x, &r, MPI_DOUBLE, MPI_MAX);
    return r;
}

/* ---- the step's agreement, watched ------------------------------------------------------ */

/* "where are you?" (an int, ignored) and its answer {step, phase} */
enum { TAG_WHERE = 7301, TAG_HERE = 7302, TAG_RING = 7303 };

static struct {
    long step;
    double limit; /* seconds; 0: none */
    void (*hook)(const char *msg);
} g_watch = {-1, 0, NULL};

void dist_watch(long step, double limit_s) {
    g_watch.step = step;
    g_watch.limit = limit_s > 0 ? limit_s : 0;
}

void dist_set_hang_hook(void (*hook)(const char *msg)) {
    g_watch.hook = hook;
}

/* Answers every "where are you?" that has come: we wait in phase. */
static void answer_where(int phase) {
    for (;;) {
        int flag = 0, ask;
        MPI_Status st;
        MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, TAG_WHERE, MPI_COMM_WORLD, &flag, &st));
        if (!flag) return;
        MPI_CHECK(MPI_Recv(&ask, 1, MPI_INT, st.MPI_SOURCE, TAG_WHERE, MPI_COMM_WORLD,
                           MPI_STATUS_IGNORE));
        long here[2] = {g_watch.step, phase};
        MPI_CHECK(MPI_Send(here, 2, MPI_LONG, st.MPI_SOURCE, TAG_HERE, MPI_COMM_WORLD));
    }
}

/* Between two polls: yield for the first 100 ms (as busy as MPI's own
 * blocking waits, so a step's usual waits cost no latency), then nap 1 ms
 * (a long wait leaves the core to others and costs at most 1%). */
static void nap(double waited) {
    if (waited < 0.1) {
        sched_yield();
        return;
    }
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
}

/* An answer to "where are you?" from src, if one has come (*from: its rank). */
static bool take_answer(int src, watchdog_answer *out, int *from) {
    int flag = 0;
    MPI_Status st;
    MPI_CHECK(MPI_Iprobe(src, TAG_HERE, MPI_COMM_WORLD, &flag, &st));
    if (!flag) return false;
    long here[2];
    MPI_CHECK(
        MPI_Recv(here, 2, MPI_LONG, st.MPI_SOURCE, TAG_HERE, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    *from = st.MPI_SOURCE;
    *out = (watchdog_answer){true, here[0], (int)here[1]};
    return true;
}

/* Sends "where are you?" to ranks [lo, hi) (requests freed: the job ends). */
static void ask_where(int lo, int hi) {
    static int ask; /* never read; static: outlives the freed requests */
    for (int r = lo; r < hi; r++) {
        MPI_Request req;
        MPI_CHECK(MPI_Isend(&ask, 1, MPI_INT, r, TAG_WHERE, MPI_COMM_WORLD, &req));
        MPI_CHECK(MPI_Request_free(&req));
    }
}

/* Rank 0: asks every rank where it is, for census_s; the verdict in msg. */
static void census(int phase, char *msg, size_t size) {
    watchdog_answer *a = yt_calloc((size_t)g_size, sizeof *a);
    a[0] = (watchdog_answer){true, g_watch.step, phase};
    ask_where(1, g_size);
    const double until = yt_now() + watchdog_census_s(g_watch.limit);
    for (int got = 1; got < g_size && yt_now() < until;) {
        watchdog_answer x;
        int from;
        if (take_answer(MPI_ANY_SOURCE, &x, &from)) {
            got += !a[from].answered;
            a[from] = x;
            continue;
        }
        answer_where(phase);
        nap(1.0);
    }
    watchdog_verdict(msg, size, g_watch.step, phase, g_watch.limit, a, g_size);
    free(a);
}

/* Another rank: asks rank 0 and gives it verdict_s to end the job; what
 * this rank knows, should it still be alive then, in msg. */
static void await_verdict(int phase, char *msg, size_t size) {
    watchdog_answer zero = {false, 0, 0};
    ask_where(0, 1);
    const double until = yt_now() + watchdog_verdict_s(g_watch.limit);
    while (yt_now() < until) {
        int from;
        if (!zero.answered) take_answer(0, &zero, &from);
        answer_where(phase);
        nap(1.0);
    }
    int n = snprintf(msg, size,
                     "rank %d: hang at step %ld: waited %g s in %s "
                     "(train.step_timeout_s), and rank 0 gave no verdict: ",
                     g_rank, g_watch.step, g_watch.limit, watchdog_phase_name(phase));
    if (n < 0 || (size_t)n >= size) return;
    if (zero.answered)
        snprintf(msg + n, size - (size_t)n,
                 "it answers from %s of step %ld; ending the job (exit %d)",
                 watchdog_phase_name(zero.phase), zero.step, YT_EXIT_HUNG);
    else
        snprintf(msg + n, size - (size_t)n,
                 "rank 0 is not answering (stopped, lost, or stuck "
                 "outside MPI, e.g. in file I/O); ending the job (exit %d)",
                 YT_EXIT_HUNG);
}

/* Past the limit: find out who is missing, say so, end the job. */
_Noreturn static void hang(int phase) {
    char msg[YT_ERRMSG_MAX];
    if (g_rank == 0)
        census(phase, msg, sizeof msg);
    else
        await_verdict(phase, msg, sizeof msg);
    fflush(stdout);
    fprintf(stderr, "yoto: %s\n", msg);
    fflush(stderr);
    if (g_watch.hook) g_watch.hook(msg);
    MPI_Abort(MPI_COMM_WORLD, YT_EXIT_HUNG);
    _exit(YT_EXIT_HUNG);
}

/* Waits for req[0..n) to complete, answering "where are you?", under the
 * watch's limit. */
static void watched_wait(int n, MPI_Request *req, int phase) {
    const double t0 = yt_now();
    for (;;) {
        int done = 0;
        MPI_CHECK(MPI_Testall(n, req, &done, MPI_STATUSES_IGNORE));
        if (done) return;
        answer_where(phase);
        double waited = yt_now() - t0;
        if (g_watch.limit > 0 && waited > g_watch.limit) hang(phase);
        nap(waited);
    }
}

/* the agreement in flight (dist_agree_start .. dist_agree_finish) */
static MPI_Request g_agree = MPI_REQUEST_NULL;

void dist_agree_start(double *buf, size_t n) {
    YT_CHECK(g_agree == MPI_REQUEST_NULL);
    if (!dist_active() || g_size == 1 || n == 0) return;
    YT_CHECK(n <= (size_t)INT_MAX);
    MPI_CHECK(
        MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD, &g_agree));
}

void dist_agree_finish(void) {
    if (g_agree == MPI_REQUEST_NULL) return;
    watched_wait(1, &g_agree, WD_AGREE);
}

/* ---- bucketed gradient allreduce ----------------------------------------------------- */

struct dist_sync {
    real *buf;
    size_t n, bucket;
    bool overlap, shard;
    int *count, *displ; /* sharded: each rank's part of the arena */
    real *recv;         /* sharded: a part from the ring's previous rank */
    int nbuckets;
    int started;   /* buckets 0..started-1 are in flight or done (from the end) */
    MPI_Request *req;
    real *send; /* a copy of each bucket to send from, at 4+ ranks (NULL: in place) */
    /* shared (dist_sync_share): every rank's gradient and the one copy of
     * the parameters in an MPI-3 shared window */
    bool shm;
    MPI_Win win;
    real **slot;                /* every rank's gradient in the window, by rank */
    real *param;                /* the parameters in the window */
    real *own_grad, *own_param; /* the buffers they replaced */
    bool summed;                /* a sum since the last fence: others may read this rank's slot */
    dist_sync_stats stats;
};

/* rank r's part of an arena of n elements: [part_lo(n, r, P), part_lo(n, r + 1, P)) */
static size_t part_lo(size_t n, int r, int P) {
    enum { ALIGN = 16 }; /* elements: 64 bytes */
    if (r >= P) return n;
    size_t lo = (size_t)((double)n * r / P) / ALIGN * ALIGN;
    return YT_MIN(lo, n);
}

static void shard_create(dist_sync *s) {
    s->count = yt_malloc((size_t)g_size * sizeof *s->count);
    s->displ = yt_malloc((size_t)g_size * sizeof *s->displ);
    for (int r = 0; r < g_size; r++) {
        s->displ[r] = (int)part_lo(s->n, r, g_size);
        s->count[r] = (int)(part_lo(s->n, r + 1, g_size) - (size_t)s->displ[r]);
    }
    int most = 1;
    for (int r = 0; r < g_size; r++)
        most = YT_MAX(most, s->count[r]);
    s->recv = yt_malloc((size_t)most * sizeof *s->recv);
}

/* Ring reduce-scatter of buf in place: in P - 1 steps each rank passes a
 * running sum of one part on to the next rank and adds the one it gets
 * from the previous; at the end rank r's part r holds the sum over every
 * rank, (((x_{r+1} + x_{r+2}) + ...) + x_{r-1}) + x_r, the other parts
 * partial sums. For P = 2 it is one exchange of half the arena and one sum
 * of half (MPI_Reduce_local: Open MPI's vectorised op), where Open MPI
 * 4.1's MPI_Allreduce and MPI_Reduce_scatter move and sum all of it
 * (measured, 7.5 MB at 2 ranks: 0.4 ms against 0.9-1.1 and 1.1-1.4 ms). */
static void ring_reduce_scatter(dist_sync *s) {
    const int P = g_size, next = (g_rank + 1) % P, prev = (g_rank + P - 1) % P;
    for (int k = 0; k < P - 1; k++) {
        const int out = (g_rank - k - 1 + 2 * P) % P, in = (g_rank - k - 2 + 2 * P) % P;
        MPI_CHECK(MPI_Sendrecv(s->buf + s->displ[out], s->count[out], REAL_MPI, next, TAG_RING,
                               s->recv, s->count[in], REAL_MPI, prev, TAG_RING, MPI_COMM_WORLD,
                               MPI_STATUS_IGNORE));
        MPI_CHECK(
            MPI_Reduce_local(s->recv, s->buf + s->displ[in], s->count[in], REAL_MPI, MPI_SUM));
    }
}

/* Ring allgather of v in place: rank r's part r goes round the ring. */
static void ring_allgather(const dist_sync *s, real *v) {
    const int P = g_size, next = (g_rank + 1) % P, prev = (g_rank + P - 1) % P;
    for (int k = 0; k < P - 1; k++) {
        const int out = (g_rank - k + P) % P, in = (g_rank - k - 1 + 2 * P) % P;
        MPI_CHECK(MPI_Sendrecv(v + s->displ[out], s->count[out], REAL_MPI, next, TAG_RING,
                               v + s->displ[in], s->count[in], REAL_MPI, prev, TAG_RING,
                               MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    }
}

/* ---- the sharded step through node-shared memory -------------------------------------- */

static void watched_barrier(int phase) {
    MPI_Request req;
    MPI_CHECK(MPI_Ibarrier(MPI_COMM_WORLD, &req));
    watched_wait(1, &req, phase);
}

/* Every rank's stores to the window before it, seen by every rank after it. */
static void shm_fence(dist_sync *s, int phase) {
    MPI_CHECK(MPI_Win_sync(s->win));
    watched_barrier(phase);
    MPI_CHECK(MPI_Win_sync(s->win));
}

/* The ring's reduce-scatter (ring_reduce_scatter) read straight from the
 * other ranks' gradients: rank r's part is the same sum in the same order,
 * ((x_{r+1} + x_{r+2}) + ...) + x_r, so both give the same bits. Each rank
 * writes only its own part of its own gradient, which no other rank reads. */
static void shm_reduce_scatter(dist_sync *s) {
    const int P = g_size, r = g_rank, n = s->count[r];
    const size_t lo = (size_t)s->displ[r];
    real *mine = s->buf + lo;
    if (P == 2) {
        MPI_CHECK(MPI_Reduce_local(s->slot[1 - r] + lo, mine, n, REAL_MPI, MPI_SUM));
    } else {
        enum { CHUNK = 4096 }; /* 16 KiB of floats: the running sum stays in L1 */
        for (int i0 = 0; i0 < n; i0 += CHUNK) {
            const int m = YT_MIN(CHUNK, n - i0);
            real *acc = s->recv; /* the ring's buffer, unused here */
            memcpy(acc, s->slot[(r + 1) % P] + lo + i0, (size_t)m * sizeof *acc);
            for (int k = 2; k < P; k++)
                MPI_CHECK(
                    MPI_Reduce_local(s->slot[(r + k) % P] + lo + i0, acc, m, REAL_MPI, MPI_SUM));
            MPI_CHECK(MPI_Reduce_local(acc, mine + i0, m, REAL_MPI, MPI_SUM));
        }
    }
    s->summed = true;
}

/* Whether Open MPI's shared-memory directory (/dev/shm unless
 * shmem_mmap_backing_file_base_dir moves it) has room for a window of
 * `bytes`, with a quarter to spare: Open MPI aborts the job when it has not
 * (containers often give /dev/shm 64 MB). Rank 0 looks; all get its answer. */
static bool shm_room(size_t bytes) {
    double free_mb = -1;
    if (g_rank == 0) {
        struct statvfs st;
        if (statvfs("/dev/shm", &st) == 0) free_mb = (double)st.f_bavail * st.f_frsize / 1048576.0;
        if (dist_fault("shm_full")) free_mb = 0; /* tests: as if /dev/shm were full */
    }
    MPI_CHECK(MPI_Bcast(&free_mb, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD));
    const double need_mb = 1.25 * (double)bytes / 1048576.0;
    if (free_mb < 0 || free_mb >= need_mb) return true; /* no /dev/shm: Open MPI's own place */
    dist_warn("/dev/shm has %.0f MB free, and the sharded step's node-shared gradients and "
              "parameters need %.0f MB: they go through the ring's messages instead (slower; "
              "docs/CLUSTER.md)",
              free_mb, need_mb);
    return false;
}

bool dist_sync_share(dist_sync *s, real **grad, real **param) {
    if (!s->shard || s->buf != *grad) return false;
    const char *off = getenv("YOTO_SHM_DISABLE");
    if (off && *off && strcmp(off, "0") != 0) return false; /* the same on every rank */
    MPI_Comm node;
    MPI_CHECK(
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &node));
    int ns = 0;
    MPI_CHECK(MPI_Comm_size(node, &ns));
    if (ns != g_size) { /* ranks on more than one node: the rings */
        MPI_CHECK(MPI_Comm_free(&node));
        return false;
    }
    /* rank r's segment: its gradient; rank 0's also the parameters, each
     * buffer a whole number of cache lines from a cache line's start (Open
     * MPI aligns segments to less; the window is mapped at page boundaries
     * in every process, so the same offset aligns it everywhere) */
    const size_t stride = (s->n * sizeof(real) + 63) / 64 * 64;
    if (!shm_room((size_t)(g_size + 1) * (stride + 64))) {
        MPI_CHECK(MPI_Comm_free(&node));
        return false;
    }
    MPI_Info info;
    MPI_CHECK(MPI_Info_create(&info));
    MPI_CHECK(MPI_Info_set(info, "alloc_shared_noncontig", "true"));
    real *base = NULL;
    const size_t bytes = (g_rank == 0 ? 2 * stride : stride) + 64;
    MPI_CHECK(MPI_Comm_set_errhandler(node, MPI_ERRORS_RETURN)); /* the message below */
    int rc = MPI_Win_allocate_shared((MPI_Aint)bytes, 1, info, node, &base, &s->win);
    if (rc != MPI_SUCCESS)
        mpi_die(__FILE__, __LINE__, rc,
                "MPI_Win_allocate_shared (the sharded step's gradients and parameters in "
                "node-shared memory)",
                "; YOTO_SHM_DISABLE=1 sums them through messages instead (docs/CLUSTER.md)");
    MPI_CHECK(MPI_Info_free(&info));
    MPI_CHECK(MPI_Comm_free(&node));
    s->slot = yt_malloc((size_t)g_size * sizeof *s->slot);
    for (int q = 0; q < g_size; q++) {
        MPI_Aint size;
        int unit;
        char *seg;
        MPI_CHECK(MPI_Win_shared_query(s->win, q, &size, &unit, &seg));
        s->slot[q] = (real *)(seg + (64 - (uintptr_t)seg % 64) % 64);
    }
    s->param = (real *)((char *)s->slot[0] + stride);
    MPI_CHECK(MPI_Win_lock_all(MPI_MODE_NOCHECK, s->win));
    s->shm = true;
    /* the gradient as it stands; the parameters, the same on every rank,
     * each rank writing its own part */
    memcpy(s->slot[g_rank], *grad, s->n * sizeof(real));
    const size_t lo = (size_t)s->displ[g_rank], cnt = (size_t)s->count[g_rank];
    memcpy(s->param + lo, *param + lo, cnt * sizeof(real));
    shm_fence(s, WD_UPDATE);
    s->own_grad = *grad;
    s->own_param = *param;
    s->buf = *grad = s->slot[g_rank];
    *param = s->param;
    return true;
}

void dist_sync_unshare(dist_sync *s, real **grad, real **param) {
    if (!s->shm) return;
    shm_fence(s, WD_UPDATE); /* no rank reads another's gradient any more */
    memcpy(s->own_grad, s->slot[g_rank], s->n * sizeof(real));
    memcpy(s->own_param, s->param, s->n * sizeof(real));
    s->buf = *grad = s->own_grad;
    *param = s->own_param;
    MPI_CHECK(MPI_Win_unlock_all(s->win));
    MPI_CHECK(MPI_Win_free(&s->win)); /* collective: every rank is here */
    free(s->slot);
    s->slot = NULL;
    s->param = NULL;
    s->shm = false;
}

bool dist_sync_shared(const dist_sync *s) {
    return s->shm;
}

dist_sync *dist_sync_create(real *buf, size_t n, size_t bucket_elems, dist_sync_mode mode) {
    dist_sync *s = yt_calloc(1, sizeof *s);
    s->buf = buf;
    s->n = n;
    s->bucket = bucket_elems > 0 ? bucket_elems : n;
    if (s->bucket > (size_t)INT_MAX) s->bucket = (size_t)INT_MAX;
    s->nbuckets = n ? (int)((n + s->bucket - 1) / s->bucket) : 0;
    const bool many = dist_active() && g_size > 1;
    /* one bucket: nothing to overlap, so sharded (dist.h) */
    if (mode == DIST_SYNC_BUCKETED && s->nbuckets <= 1) mode = DIST_SYNC_SHARDED;
    s->shard = mode == DIST_SYNC_SHARDED && many && n <= (size_t)INT_MAX;
    if (s->shard) shard_create(s);
    s->overlap = mode == DIST_SYNC_BUCKETED && many;
    s->req = yt_calloc((size_t)(s->nbuckets ? s->nbuckets : 1), sizeof *s->req);
    for (int i = 0; i < s->nbuckets; i++) s->req[i] = MPI_REQUEST_NULL;
    /* Open MPI's libnbc runs an in-place MPI_Iallreduce as a binomial reduce +
     * broadcast, whose bandwidth term grows as 2 log2(P) n; from a separate
     * send buffer it takes a ring (2 (P-1)/P n) for 4+ ranks and buckets of
     * 64 KiB or more. Below 4 ranks it is the binomial tree either way. */
    if (s->overlap && g_size >= 4) s->send = yt_malloc(n * sizeof *s->send);
    return s;
}

void dist_sync_free(dist_sync *s) {
    if (!s) return;
    YT_CHECK(!s->shm); /* dist_sync_unshare first */
    free(s->req);
    free(s->send);
    free(s->count);
    free(s->displ);
    free(s->recv);
    free(s);
}

void dist_sync_begin(dist_sync *s) {
    s->started = 0;
    /* shared: a sum with no update after it (a failed step) leaves others
     * perhaps still reading this rank's gradient */
    if (s->shm && s->summed) {
        shm_fence(s, WD_GRADIENT);
        s->summed = false;
    }
}

/* bucket k covers [lo_k, hi_k), counted from the end of the buffer */
static void bucket_range(const dist_sync *s, int k, size_t *lo, size_t *hi) {
    *hi = s->n - (size_t)k * s->bucket;
    *lo = *hi > s->bucket ? *hi - s->bucket : 0;
}

static void start_bucket(dist_sync *s, int k) {
    size_t lo, hi;
    bucket_range(s, k, &lo, &hi);
    const void *from = MPI_IN_PLACE;
    if (s->send) {
        memcpy(s->send + lo, s->buf + lo, (hi - lo) * sizeof *s->send);
        from = s->send + lo;
    }
    MPI_CHECK(MPI_Iallreduce(from, s->buf + lo, (int)(hi - lo), REAL_MPI, MPI_SUM,
                             MPI_COMM_WORLD, &s->req[k]));
    s->stats.buckets++;
}

void dist_sync_ready(dist_sync *s, size_t lo_final) {
    if (!s->overlap) return;
    double t0 = yt_now();
    while (s->started < s->nbuckets) {
        size_t lo, hi;
        bucket_range(s, s->started, &lo, &hi);
        if (lo < lo_final) break;
        start_bucket(s, s->started++);
    }
    /* progress what is in flight */
    for (int k = 0; k < s->started; k++)
        if (s->req[k] != MPI_REQUEST_NULL) {
            int done = 0;
            MPI_CHECK(MPI_Test(&s->req[k], &done, MPI_STATUS_IGNORE));
        }
    s->stats.exposed_s += yt_now() - t0;
}

void dist_sync_finish(dist_sync *s) {
    double t0 = yt_now();
    if (!s->overlap) {
        if (s->shm) {
            shm_fence(s, WD_GRADIENT);
            shm_reduce_scatter(s);
            s->stats.buckets++;
        } else if (dist_active() && g_size > 1) {
            /* every rank here (watched), then the one call cannot wait long */
            watched_barrier(WD_GRADIENT);
            if (s->shard)
                ring_reduce_scatter(s);
            else
                dist_allreduce_sum_real(s->buf, s->n);
            s->stats.buckets++;
        }
    } else {
        while (s->started < s->nbuckets) start_bucket(s, s->started++);
        watched_wait(s->nbuckets, s->req, WD_GRADIENT);
    }
    s->stats.exposed_s += yt_now() - t0;
}

const real *dist_sync_part(const dist_sync *s, size_t *lo, size_t *hi) {
    if (!s->shard) {
        *lo = 0;
        *hi = s->n;
        return s->buf;
    }
    *lo = (size_t)s->displ[g_rank];
    *hi = *lo + (size_t)s->count[g_rank];
    return s->buf + *lo;
}

bool dist_sync_sharded(const dist_sync *s) {
    return s->shard;
}

void dist_sync_gather(dist_sync *s, real *v) {
    if (!s->shard) return;
    double t0 = yt_now();
    if (s->shm && v == s->param) {
        /* every rank's part written in place: once all are done, all read */
        shm_fence(s, WD_UPDATE);
        s->summed = false;
    } else {
        ring_allgather(s, v);
    }
    s->stats.exposed_s += yt_now() - t0;
}

dist_sync_stats dist_sync_get_stats(const dist_sync *s) { return s->stats; }
void dist_sync_reset_stats(dist_sync *s) { memset(&s->stats, 0, sizeof s->stats); }

/* ---- the job's hosts ------------------------------------------------------------------ */

void dist_host_summary(char *buf, size_t size) {
    enum { HOST = 64 };
    char me[HOST] = "";
    if (gethostname(me, sizeof me - 1) != 0) snprintf(me, sizeof me, "?");
    const int P = dist_size();
    char *all = yt_calloc((size_t)P, HOST);
    if (dist_active() && P > 1)
        MPI_CHECK(MPI_Gather(me, HOST, MPI_CHAR, all, HOST, MPI_CHAR, 0, MPI_COMM_WORLD));
    else
        memcpy(all, me, HOST);
    buf[0] = '\0';
    if (dist_rank() == 0) {
        /* hosts in order of first appearance, each with its rank count */
        size_t len = 0;
        for (int i = 0; i < P; i++) {
            const char *h = all + (size_t)i * HOST;
            bool seen = false;
            for (int j = 0; j < i && !seen; j++) seen = strcmp(all + (size_t)j * HOST, h) == 0;
            if (seen) continue;
            int count = 0;
            for (int j = i; j < P; j++) count += strcmp(all + (size_t)j * HOST, h) == 0;
            int w = snprintf(buf + len, size - len, "%s%s x %d", len ? ", " : "", h, count);
            if (w < 0 || (size_t)w >= size - len) {
                snprintf(buf + (size > 4 ? size - 4 : 0), size > 4 ? 4 : size, "...");
                break;
            }
            len += (size_t)w;
        }
    }
    free(all);
}

/* ---- gathering ------------------------------------------------------------------------ */

size_t dist_allgatherv_float(const float *mine, size_t n, float *all, size_t cap) {
    const int P = dist_size();
    if (!dist_active() || P == 1) {
        YT_CHECK(n <= cap);
        if (n) memmove(all, mine, n * sizeof *all);
        return n;
    }
    unsigned long long me = n, *cnt = yt_malloc((size_t)P * sizeof *cnt);
    MPI_CHECK(MPI_Allgather(&me, 1, MPI_UNSIGNED_LONG_LONG, cnt, 1, MPI_UNSIGNED_LONG_LONG,
                            MPI_COMM_WORLD));
    size_t total = 0;
    for (int r = 0; r < P; r++)
        total += (size_t)cnt[r];
    YT_CHECK(total <= cap);
    if (total <= (size_t)INT_MAX) { /* MPI's counts and displacements are int */
        int *c = yt_malloc((size_t)P * sizeof *c), *d = yt_malloc((size_t)P * sizeof *d);
        for (int r = 0, at = 0; r < P; r++) {
            c[r] = (int)cnt[r];
            d[r] = at;
            at += c[r];
        }
        MPI_CHECK(MPI_Allgatherv(mine, (int)n, MPI_FLOAT, all, c, d, MPI_FLOAT, MPI_COMM_WORLD));
        free(c);
        free(d);
    } else { /* larger: each rank's part broadcast from it, in pieces of at most INT_MAX bytes */
        size_t at = 0;
        for (int r = 0; r < P; r++) {
            if (r == g_rank && n) memmove(all + at, mine, n * sizeof *all);
            dist_bcast(all + at, (size_t)cnt[r] * sizeof *all, r);
            at += (size_t)cnt[r];
        }
    }
    free(cnt);
    return total;
}
