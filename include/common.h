/* common.h — what every module shares: the real type, exit codes, the error
 * channel, checked allocation and an always-on invariant check.
 *
 * Errors: a function that can fail returns an int status (YT_OK or one of the
 * exit codes below) and records one message with yt_fail(). The caller either
 * passes the status up or, at a point every rank reaches, agrees on it across
 * ranks (dist_agree) and exits with it. Nothing below main() calls exit().
 */
#ifndef YOTO_COMMON_H
#define YOTO_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- the real type of the numerics ------------------------------------- */
#ifdef YOTO_DOUBLE
typedef double real;
#define REAL_H5T H5T_NATIVE_DOUBLE
#define REAL_NAME "double"
#else
typedef float real;
#define REAL_H5T H5T_NATIVE_FLOAT
#define REAL_NAME "float"
#endif

/* ---- exit codes (documented in README and docs/CLI.md) ------------------- */
enum {
    YT_OK = 0,
    YT_ERR_RUNTIME = 1,   /* I/O failure, non-finite loss, allocation failure  */
    YT_ERR_USAGE = 2,     /* bad command line, config, data file or checkpoint */
    YT_EXIT_REQUEUE = 75, /* stopped by a signal, checkpoint written: requeue  */
    YT_EXIT_HUNG = 124    /* a rank made no progress: the watchdog ended the job
                             (train.step_timeout_s; 124 as timeout(1)) */
};

/* ---- the error channel --------------------------------------------------- */
#define YT_ERRMSG_MAX 2048

/* Records a message (printf format) and returns code, so that
 *     return yt_fail(YT_ERR_USAGE, "%s: no dataset '%s'", file, path);
 * both reports and propagates. Callers that only pass a failure up return the
 * status unchanged and do not call yt_fail again (that would replace the
 * message); the message names the file/key/dataset where it is made. */
int yt_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *yt_errmsg(void);
void yt_clear_error(void);

/* ---- checked allocation: report file:line and stop -------------------------
 * Allocation failure is not an input error a user can fix, so these abort via
 * yt_die (which the dist module routes to MPI_Abort when MPI runs). */
void *yt_malloc_at(size_t n, const char *file, int line);
void *yt_calloc_at(size_t count, size_t size, const char *file, int line);
void *yt_realloc_at(void *p, size_t n, const char *file, int line);
char *yt_strdup_at(const char *s, const char *file, int line);
/* `bytes` zeroed, 64-byte aligned, from 4 MiB up on 2 MiB pages where the
 * kernel allows it (2 MiB-aligned and madvise'd for transparent huge pages
 * in madvise mode; below that, small pages); free() frees it. For buffers that are streamed whole:
 * with 4 KiB pages every plane of a large tensor is a TLB miss, and Open
 * MPI's single-copy transfers (CMA) pin the pages one by one: the sharded
 * optimizer's rings on a 4 KiB-paged gradient took 2.3-2.6 ms a step at 2
 * ranks on CIFAR-10, on 2 MiB pages 1.0 (docs/DESIGN.md, lever 49). */
void *yt_calloc_huge_at(size_t bytes, const char *file, int line);
#define yt_malloc(n) yt_malloc_at((n), __FILE__, __LINE__)
#define yt_calloc(c, s) yt_calloc_at((c), (s), __FILE__, __LINE__)
#define yt_realloc(p, n) yt_realloc_at((p), (n), __FILE__, __LINE__)
#define yt_strdup(s) yt_strdup_at((s), __FILE__, __LINE__)
#define yt_calloc_huge(b) yt_calloc_huge_at((b), __FILE__, __LINE__)

/* stderr's line "<prefix><fmt ...>\n" in one write, stdout flushed first:
 * under mpirun a rank's stderr and stdout go through separate pipes, and a
 * line written in pieces can be cut by a stdout line. Lines past 8 KiB are
 * cut short. (yt_die, dist_warn) */
void yt_stderr_line(const char *prefix, const char *fmt, va_list ap);

/* ---- fatal stop and the always-on check -----------------------------------
 * yt_die prints "yoto: file:line: message" and ends the process (all ranks
 * when MPI is up: the dist module installs a hook). For broken invariants and
 * resource exhaustion only; bad input goes through yt_fail. */
_Noreturn void yt_die_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define yt_die(...) yt_die_at(__FILE__, __LINE__, __VA_ARGS__)
#define YT_CHECK(cond)                                                         \
    do {                                                                       \
        if (!(cond)) yt_die_at(__FILE__, __LINE__, "check failed: %s", #cond); \
    } while (0)
typedef void (*yt_die_hook)(int code);
void yt_set_die_hook(yt_die_hook hook); /* called instead of exit(code) */

/* ---- small utilities ------------------------------------------------------ */
double yt_now(void);             /* monotonic seconds */
long yt_peak_rss_kb(void);       /* VmHWM of this process, -1 if unknown */
const char *yt_version(void);    /* "0.1.0" */
const char *yt_git_commit(void); /* commit the binary was built from */

#define YT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define YT_MAX(a, b) ((a) > (b) ? (a) : (b))
#define YT_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
