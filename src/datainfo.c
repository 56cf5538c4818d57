/* datainfo.c — `yoto data-info --bench` (see datainfo.h). */
#include "datainfo.h"

#include <stdio.h>
#include <stdlib.h>

#include "common.h"
#include "config.h"
#include "data.h"
#include "dist.h"
#include "preprocess.h"

datainfo_bench_opts datainfo_bench_defaults(void) {
    return (datainfo_bench_opts){
        .batch = 64, .cache_mb = 4096, .block_mb = DATA_DEFAULT_BLOCK_MB, .seconds = 3.0};
}

/* A config whose train split is FILE's image dataset, as o asks. */
static int bench_config(const char *file, const datainfo_bench_opts *o, yoto_config *cfg) {
    int rc = YT_OK;
    const char *ds = o->dataset;
    data_image_info ii;
    if (!ds) { /* 3dshapes.h5 style, else yoto prepare's groups */
        ds = data_probe(file, "images", &ii) == YT_OK ? "images" : "train/images";
        yt_clear_error();
    }
    rc = data_probe(file, ds, &ii);
    if (rc == YT_OK)
        rc = preprocess_parse(o->pipeline ? o->pipeline : "value_range(0, 1)",
                              &cfg->data.preprocess_train);
    int oh = 0, ow = 0;
    if (rc == YT_OK)
        rc = preprocess_out_shape(&cfg->data.preprocess_train, ii.h, ii.w, "--pipeline", &oh, &ow);
    if (rc != YT_OK) return rc;
    snprintf(cfg->experiment.name, sizeof cfg->experiment.name, "data-bench");
    cfg->experiment.seed = (uint64_t)o->seed;
    snprintf(cfg->data.file, sizeof cfg->data.file, "%s", file);
    cfg->data.n_splits = 1;
    cfg_split *sp = &cfg->data.splits[0];
    snprintf(sp->name, sizeof sp->name, "train");
    snprintf(sp->dataset, sizeof sp->dataset, "%s", ds);
    snprintf(sp->range, sizeof sp->range, "%s", o->range ? o->range : "");
    snprintf(cfg->data.train_split, sizeof cfg->data.train_split, "train");
    cfg->data.cache_mb = o->cache_mb;
    cfg->data.stream_block_mb = o->block_mb;
    cfg->model.input_shape[0] = oh;
    cfg->model.input_shape[1] = ow;
    cfg->model.input_shape[2] = ii.c;
    return YT_OK;
}

static void report(const yoto_config *cfg, const datainfo_bench_opts *o,
                   const data_bench_result *r) {
    char ptxt[512];
    preprocess_text(&cfg->data.preprocess_train, ptxt, sizeof ptxt);
    const data_desc *d = &r->desc;
    dist_log("bench: %s '%s' rows [%ld, %ld), %ld images/rank/batch x %d ranks, %ld steps/epoch\n"
             "  pipeline: %s -> [%d, %d, %d]\n"
             "  mode: %s, cache %ld MB, block %ld MB (%ld windows of %ld rows)\n"
             "  open (incl. cache read): %.3f s\n"
             "  images/s per rank (slowest): %.0f   all ranks: %.0f   (%ld images per rank)\n"
             "  waiting for reads: %.1f%% of batch time\n"
             "  peak RSS (largest rank): %.1f MB\n",
             d->file, d->dataset, d->begin, d->end, d->batch, d->world, d->steps, ptxt, d->c, d->oh,
             d->ow,
             d->cached      ? "cached"
             : d->readahead ? "streaming, read-ahead thread (pread)"
                            : "streaming, synchronous HDF5 reads",
             o->cache_mb, o->block_mb, d->group_windows, d->window_rows, r->open_s, r->images_per_s,
             r->images_per_s_total, r->images, 100 * r->wait_frac, (double)r->peak_rss_kb / 1024.0);
}

int datainfo_bench(const char *file, const datainfo_bench_opts *o) {
    yoto_config *cfg = yt_calloc(1, sizeof *cfg);
    int rc = dist_agree(bench_config(file, o, cfg));
    data_tuning t = data_tuning_default();
    t.readahead = !o->no_readahead;
    data_bench_result r;
    data_bench_opts bo = {o->batch, o->seconds, o->steps, o->step_ms / 1000.0};
    if (rc == YT_OK) rc = data_bench(cfg, &bo, &t, &r);
    if (rc == YT_OK) report(cfg, o, &r);
    free(cfg);
    return rc;
}
