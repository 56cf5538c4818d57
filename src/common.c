/* common.c — error channel, checked allocation, fatal stop, clocks. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#ifndef YOTO_VERSION
#define YOTO_VERSION "0.0.0"
#endif
#ifndef YOTO_GIT_COMMIT
#define YOTO_GIT_COMMIT "unknown"
#endif

static char g_errmsg[YT_ERRMSG_MAX];
static yt_die_hook g_die_hook;

int yt_fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_errmsg, sizeof g_errmsg, fmt, ap);
    va_end(ap);
    return code;
}

const char *yt_errmsg(void) { return g_errmsg; }
void yt_clear_error(void) {
    g_errmsg[0] = '\0';
}

void yt_set_die_hook(yt_die_hook hook) { g_die_hook = hook; }

void yt_stderr_line(const char *prefix, const char *fmt, va_list ap) {
    char line[8192];
    size_t len = YT_MIN(strlen(prefix), sizeof line / 2);
    memcpy(line, prefix, len);
    const int n = vsnprintf(line + len, sizeof line - len - 1, fmt, ap);
    len = YT_MIN(len + (size_t)YT_MAX(n, 0), sizeof line - 2);
    line[len++] = '\n';
    fflush(stdout);
    fwrite(line, 1, len, stderr);
    fflush(stderr);
}

_Noreturn void yt_die_at(const char *file, int line, const char *fmt, ...) {
    char prefix[512];
    snprintf(prefix, sizeof prefix, "yoto: %s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    yt_stderr_line(prefix, fmt, ap);
    va_end(ap);
    if (g_die_hook) g_die_hook(YT_ERR_RUNTIME);
    exit(YT_ERR_RUNTIME);
}

void *yt_malloc_at(size_t n, const char *file, int line) {
    void *p = malloc(n ? n : 1);
    if (!p) yt_die_at(file, line, "out of memory allocating %zu bytes", n);
    return p;
}

void *yt_calloc_at(size_t count, size_t size, const char *file, int line) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) yt_die_at(file, line, "out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

void *yt_calloc_huge_at(size_t bytes, const char *file, int line) {
    const size_t huge = (size_t)2 << 20;
    void *p = NULL;
    if (bytes >= 2 * huge) {
        const size_t whole = (bytes + huge - 1) / huge * huge;
        if (posix_memalign(&p, huge, whole) == 0)
            madvise(p, whole, MADV_HUGEPAGE); /* a hint: failure is harmless */
        else
            p = NULL;
    }
    if (!p && posix_memalign(&p, 64, (bytes + 64) / 64 * 64) != 0)
        yt_die_at(file, line, "out of memory allocating %zu bytes", bytes);
    memset(p, 0, bytes);
    return p;
}

void *yt_realloc_at(void *p, size_t n, const char *file, int line) {
    void *q = realloc(p, n ? n : 1);
    if (!q) yt_die_at(file, line, "out of memory reallocating %zu bytes", n);
    return q;
}

char *yt_strdup_at(const char *s, const char *file, int line) {
    size_t n = strlen(s) + 1;
    char *d = yt_malloc_at(n, file, line);
    memcpy(d, s, n);
    return d;
}

double yt_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

long yt_peak_rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

const char *yt_version(void) { return YOTO_VERSION; }
const char *yt_git_commit(void) { return YOTO_GIT_COMMIT; }
