/* run.c — opening a trained run (see run.h). */
#include "run.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "dist.h"
#include "fsutil.h"

/* The checkpoint file and run directory that target names. Local. */
static int locate(const char *target, run_handle *r) {
    if (strlen(target) >= sizeof r->run_dir)
        return yt_fail(YT_ERR_USAGE, "%s: path too long (at most %zu characters)", target,
                       sizeof r->run_dir - 1);
    if (fs_is_dir(target)) {
        bool found;
        int rc = ckpt_find_latest(target, r->ckpt, sizeof r->ckpt, &found);
        if (rc == YT_OK && !found)
            rc = yt_fail(YT_ERR_USAGE, "%s: no checkpoint in this run directory (no ckpt/latest)",
                         target);
        snprintf(r->run_dir, sizeof r->run_dir, "%s", target);
        return rc;
    }
    if (!fs_exists(target))
        return yt_fail(YT_ERR_USAGE, "%s: no such run directory or checkpoint", target);
    snprintf(r->ckpt, sizeof r->ckpt, "%s", target);
    /* a checkpoint file inside RUN/ckpt/: its run directory is two up */
    const char *slash = strrchr(r->ckpt, '/');
    size_t dlen = slash ? (size_t)(slash - r->ckpt) : 0;
    if (dlen >= 5 && strncmp(r->ckpt + dlen - 5, "/ckpt", 5) == 0)
        snprintf(r->run_dir, sizeof r->run_dir, "%.*s", (int)(dlen - 5), r->ckpt);
    else
        snprintf(r->run_dir, sizeof r->run_dir, "%.*s", (int)(dlen ? dlen : 1),
                 dlen ? r->ckpt : ".");
    return YT_OK;
}

int run_open(const char *target, const char *const *sets, int nsets, run_handle *r) {
    memset(r, 0, sizeof *r);
    int rc = dist_agree(locate(target, r));
    if (rc != YT_OK) return rc;
    rc = ckpt_read_header(r->ckpt, &r->st, &r->yaml);
    if (rc != YT_OK) return rc;
    r->cfg = yt_calloc(1, sizeof *r->cfg);
    char src[CFG_PATH_MAX + 80];
    snprintf(src, sizeof src, "%s:/config", r->ckpt);
    return dist_agree(config_load_text(r->cfg, r->yaml, src, sets, nsets));
}

int run_load_model(run_handle *r, int max_batch, bool optimizer) {
    blas_set_threads(r->cfg->train.threads); /* the model's kernels take their thread count */
    r->model = model_create(&r->cfg->model, max_batch);
    return ckpt_read_arena(r->ckpt, &r->model->params, optimizer);
}

void run_close(run_handle *r) {
    model_free(r->model);
    free(r->cfg);
    free(r->yaml);
    memset(r, 0, sizeof *r);
}

static int parse_betas(const char *text, double *betas, int *nb) {
    *nb = 0;
    const char *p = text;
    while (*p) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno || !(v > 0) || !isfinite(v))
            return yt_fail(YT_ERR_USAGE,
                           "--beta '%s': expected a comma-separated list of positive numbers",
                           text);
        if (*nb == RUN_MAX_BETAS)
            return yt_fail(YT_ERR_USAGE, "--beta '%s': at most %d values", text, RUN_MAX_BETAS);
        betas[(*nb)++] = v;
        p = end;
        if (*p == ',')
            p++;
        else if (*p)
            return yt_fail(YT_ERR_USAGE,
                           "--beta '%s': expected a comma-separated list of positive numbers",
                           text);
    }
    if (*nb == 0) return yt_fail(YT_ERR_USAGE, "--beta: empty list");
    return YT_OK;
}

int run_betas(const yoto_config *cfg, const char *list, double *betas, int *nb) {
    if (list) return parse_betas(list, betas, nb);
    if (cfg->model.conditioning.type == COND_NONE && cfg->loss_weights.mode == LW_FIXED) {
        betas[0] = cfg->loss_weights.kl.value;
        *nb = 1;
        return YT_OK;
    }
    for (int i = 0; i < cfg->eval.betas.n; i++)
        betas[i] = cfg->eval.betas.v[i];
    *nb = cfg->eval.betas.n;
    return YT_OK;
}

int run_check_split(const yoto_config *cfg, const char *what, const char *name) {
    if (config_split(cfg, name)) return YT_OK;
    char list[CFG_SPLITS_MAX * (CFG_NAME_MAX + 2)] = "";
    for (int i = 0; i < cfg->data.n_splits; i++) {
        size_t len = strlen(list);
        snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", cfg->data.splits[i].name);
    }
    return yt_fail(YT_ERR_USAGE, "%s %s: no such split; the config has %s (data.splits)", what,
                   name, list[0] ? list : "none");
}
