/* config.c — placeholder until the schema lands (issue #2). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "common.h"

int config_load(yoto_config *cfg, const char *path, const char *const *sets, int nsets) {
    (void)sets;
    (void)nsets;
    memset(cfg, 0, sizeof *cfg);
    return yt_fail(YT_ERR_USAGE, "%s: config loading is not built yet", path);
}

int config_load_text(yoto_config *cfg, const char *text, const char *source,
                     const char *const *sets, int nsets) {
    (void)text;
    return config_load(cfg, source, sets, nsets);
}

char *config_to_yaml(const yoto_config *cfg) {
    (void)cfg;
    return yt_strdup("");
}

/* ---- row ranges ------------------------------------------------------------ */

#include <ctype.h>
#include <errno.h>
#include <math.h>

/* One boundary: "", "123", "-5", "20%", "-10%", "12.5%". */
static int range_boundary(const char *range, const char *s, size_t len, long nrows, long dflt,
                          long *out) {
    char buf[64];
    while (len > 0 && isspace((unsigned char)*s)) s++, len--;
    while (len > 0 && isspace((unsigned char)s[len - 1])) len--;
    if (len == 0) {
        *out = dflt;
        return YT_OK;
    }
    if (len >= sizeof buf) goto bad;
    memcpy(buf, s, len);
    buf[len] = '\0';
    bool pct = buf[len - 1] == '%';
    if (pct) buf[len - 1] = '\0';
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (end == buf || *end != '\0' || errno || !isfinite(v)) goto bad;
    if (!pct && v != floor(v)) goto bad;
    if (pct && fabs(v) > 100) goto bad;
    /* percent: nearest row, ties to even (Python's round, as TFDS) */
    double rows = pct ? nearbyint(v * (double)nrows / 100.0) : v;
    if (rows < 0) rows += (double)nrows;
    if (rows < 0) rows = 0;
    if (rows > (double)nrows) rows = (double)nrows;
    *out = (long)rows;
    return YT_OK;
bad:
    return yt_fail(YT_ERR_USAGE,
                   "bad row range '%s': expected \"\" (all rows), \"A:B\", \"A:\", \":B\" with "
                   "row numbers or percentages (e.g. \"20%%:\", \":20%%\", \"0:1000\")",
                   range);
}

int config_range_resolve(const char *range, long nrows, long *begin, long *end) {
    const char *colon = strchr(range, ':');
    if (!colon) {
        /* a single number or percentage: the first rows */
        bool blank = true;
        for (const char *p = range; *p; p++) blank &= isspace((unsigned char)*p) != 0;
        if (blank) {
            *begin = 0;
            *end = nrows;
            return YT_OK;
        }
        *begin = 0;
        return range_boundary(range, range, strlen(range), nrows, nrows, end);
    }
    if (strchr(colon + 1, ':'))
        return yt_fail(YT_ERR_USAGE, "bad row range '%s': more than one ':'", range);
    int rc = range_boundary(range, range, (size_t)(colon - range), nrows, 0, begin);
    if (rc == YT_OK) rc = range_boundary(range, colon + 1, strlen(colon + 1), nrows, nrows, end);
    if (rc == YT_OK && *end < *begin) *end = *begin;
    return rc;
}
