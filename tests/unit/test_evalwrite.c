/* test_evalwrite.c — eval tables written by eval_write: the CSV and Markdown
 * beside the HDF5 table hold every row whatever the values' magnitude. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "fsutil.h"
#include "testutil.h"

static long count_lines(const char *text, const char *prefix) {
    long n = 0;
    for (const char *p = text; p && *p;) {
        if (strncmp(p, prefix, strlen(prefix)) == 0) n++;
        p = strchr(p, '\n');
        if (p) p++;
    }
    return n;
}

/* a full table (8 splits x 64 betas) of finite but huge losses: "%.4f" of
 * 1e300 is 305 characters, far past any fixed per-row budget */
static void test_huge_values(void **state) {
    (void)state;
    char dir[1024];
    tu_scratch_dir("evalwrite_huge", dir, sizeof dir);
    const int nt = CFG_SPLITS_MAX;
    eval_table *t = calloc((size_t)nt, sizeof *t);
    assert_non_null(t);
    for (int i = 0; i < nt; i++) {
        snprintf(t[i].split, sizeof t[i].split, "split%d", i);
        t[i].n = EVAL_MAX_BETAS;
        for (int k = 0; k < t[i].n; k++)
            t[i].row[k] = (eval_row){.beta = k + 1.0,
                                     .w_rec = 1.0,
                                     .reconstruction_loss = 1e300,
                                     .kl_loss = -1e300,
                                     .full_loss = 1e300,
                                     .n_images = 5};
    }
    if (eval_write(dir, 7, t, nt) != YT_OK) fail_msg("eval_write: %s", yt_errmsg());
    char path[1200];
    snprintf(path, sizeof path, "%s/eval/step-000000007.csv", dir);
    char *csv = fs_read_text(path);
    assert_non_null(csv);
    assert_int_equal(count_lines(csv, "split"), 1 + (long)nt * EVAL_MAX_BETAS);
    snprintf(path, sizeof path, "%s/eval/step-000000007.md", dir);
    char *md = fs_read_text(path);
    assert_non_null(md);
    assert_int_equal(count_lines(md, "| "), (long)nt * (1 + EVAL_MAX_BETAS));
    assert_non_null(strstr(md, "## split7"));
    free(csv);
    free(md);
    free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_huge_values),
    };
    return TU_RUN("evalwrite", tests);
}
