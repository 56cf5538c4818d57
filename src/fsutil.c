/* fsutil.c — file-system chores (see fsutil.h). */
#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

int fs_mkdir_p(const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return yt_fail(YT_ERR_RUNTIME, "%s: path too long", path);
    for (char *p = buf + 1;; p++) {
        bool end = *p == '\0';
        if (*p == '/' || end) {
            *p = '\0';
            if (mkdir(buf, 0775) != 0 && errno != EEXIST)
                return yt_fail(YT_ERR_RUNTIME, "cannot create directory %s: %s", buf, strerror(errno));
            if (end) break;
            *p = '/';
        }
    }
    if (!fs_is_dir(path)) return yt_fail(YT_ERR_RUNTIME, "%s exists and is not a directory", path);
    return YT_OK;
}

bool fs_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

bool fs_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void fsync_dir_of(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    int fd = open(dirname(buf), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int fs_rename_durable(const char *from, const char *to) {
    if (rename(from, to) != 0)
        return yt_fail(YT_ERR_RUNTIME, "cannot rename %s to %s: %s", from, to, strerror(errno));
    fsync_dir_of(to);
    return YT_OK;
}

int fs_write_atomic(const char *path, const char *text) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0664);
    if (fd < 0) return yt_fail(YT_ERR_RUNTIME, "cannot write %s: %s", tmp, strerror(errno));
    size_t n = strlen(text), off = 0;
    while (off < n) {
        ssize_t w = write(fd, text + off, n - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            return yt_fail(YT_ERR_RUNTIME, "cannot write %s: %s", tmp, strerror(e));
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        unlink(tmp);
        return yt_fail(YT_ERR_RUNTIME, "cannot write %s: %s", tmp, strerror(errno));
    }
    return fs_rename_durable(tmp, path);
}

char *fs_read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = yt_malloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n + 1 == cap) buf = yt_realloc(buf, cap *= 2);
    }
    bool err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char **fs_list(const char *dir, const char *prefix, const char *suffix, int *n) {
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    int cap = 16;
    char **out = yt_malloc((size_t)cap * sizeof *out);
    struct dirent *e;
    size_t lp = strlen(prefix), ls = strlen(suffix);
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < lp + ls || strncmp(e->d_name, prefix, lp) != 0 ||
            strcmp(e->d_name + len - ls, suffix) != 0)
            continue;
        if (*n == cap) out = yt_realloc(out, (size_t)(cap *= 2) * sizeof *out);
        out[(*n)++] = yt_strdup(e->d_name);
    }
    closedir(d);
    qsort(out, (size_t)*n, sizeof *out, cmp_str);
    return out;
}
