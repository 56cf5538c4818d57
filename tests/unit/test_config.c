/* test_config.c — the YAML schema: the two reference configs against
 * REFERENCE.md's table, defaults, --set overrides, round trips, where keys
 * were set, and some errors (the e2e test has the full catalogue). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "testutil.h"

#define SHAPES "configs/shapes3d_conv_vae_yoto.yaml"
#define CIFAR "configs/cifar10_conv_vae_yoto.yaml"
#define FASHION "configs/fashion_mnist_conv_vae_yoto.yaml"

static yoto_config *load(const char *path, const char *const *sets, int nsets) {
    yoto_config *c = calloc(1, sizeof *c);
    assert_non_null(c);
    yt_clear_error();
    if (config_load(c, path, sets, nsets) != YT_OK) fail_msg("%s: %s", path, yt_errmsg());
    return c;
}

static yoto_config *load_text(const char *text, const char *const *sets, int nsets) {
    yoto_config *c = calloc(1, sizeof *c);
    assert_non_null(c);
    yt_clear_error();
    if (config_load_text(c, text, "<test>", sets, nsets) != YT_OK)
        fail_msg("<test>: %s", yt_errmsg());
    return c;
}

/* Loads text expecting YT_ERR_USAGE and a message containing each of want[]. */
static void expect_error(const char *text, const char *const *sets, int nsets,
                         const char *const *want, int nwant) {
    yoto_config *c = calloc(1, sizeof *c);
    assert_non_null(c);
    yt_clear_error();
    int rc = config_load_text(c, text, "<test>", sets, nsets);
    if (rc != YT_ERR_USAGE) fail_msg("expected a usage error, got %d (%s)", rc, yt_errmsg());
    for (int i = 0; i < nwant; i++)
        if (!strstr(yt_errmsg(), want[i]))
            fail_msg("message lacks \"%s\": %s", want[i], yt_errmsg());
    free(c);
}

static void assert_ints(const cfg_ints *l, const long *want, int n, const char *what) {
    if (l->n != n) fail_msg("%s: %d entries, want %d", what, l->n, n);
    for (int i = 0; i < n; i++)
        if (l->v[i] != want[i]) fail_msg("%s[%d] = %ld, want %ld", what, i, l->v[i], want[i]);
}

static void assert_real(double got, double want, const char *what) {
    if (got != want) fail_msg("%s = %.17g, want %.17g", what, got, want);
}

static void assert_pipeline(const cfg_pipeline *pl, const char *const *want, int n,
                            const char *what) {
    if (pl->n != n) fail_msg("%s: %d ops, want %d", what, pl->n, n);
    for (int i = 0; i < n; i++) {
        char text[128];
        config_preop_text(&pl->op[i], text, sizeof text);
        if (strcmp(text, want[i])) fail_msg("%s[%d] = %s, want %s", what, i, text, want[i]);
    }
}

/* ---- the reference configs against REFERENCE.md, row by row ------------------- */

/* One column of "The two configs (every value)", typed independently of the
 * YAML: what the test expects, written from the table. */
typedef struct {
    const char *path;
    int input[3];
    const char *pre_train[4];
    int n_pre_train;
    const char *pre_eval[1];
    int latent;
    cfg_output output;
    int enc_blocks, enc_layers, enc_base;
    long enc_fc[2];
    int dec_blocks, dec_layers, dec_base;
    long dec_fc[2];
    int reshape[3], channels_out;
    long cond_hidden;
    double cond_mult; /* scales mult = shifts mult; scales add 1, shifts add 0 */
    cfg_init_mode init;
    double kl_low, kl_high, rec_low, rec_high;
    long batch, steps;
    double lr;
    long decay_steps[4];
    double weight_decay;
    long checkpoint_every;
    double beta0;
    int n_betas;
    long eval_batch, eval_batches;
    const char *split_names[2], *split_datasets[2], *split_ranges[2];
    const char *file;
} ref_column;

static const ref_column shapes3d = {
    .path = SHAPES,
    .input = {64, 64, 3},
    .pre_train = {"value_range(0, 1)"},
    .n_pre_train = 1,
    .pre_eval = {"value_range(0, 1)"},
    .latent = 10,
    .output = OUT_BERNOULLI,
    .enc_blocks = 4,
    .enc_layers = 1,
    .enc_base = 8,
    .enc_fc = {256, 20},
    .dec_blocks = 4,
    .dec_layers = 1,
    .dec_base = 8,
    .dec_fc = {256, 1024},
    .reshape = {4, 4, 64},
    .channels_out = 3,
    .cond_hidden = 256,
    .cond_mult = 0.01,
    .init = INIT_FAN_IN,
    .kl_low = 0.5,
    .kl_high = 512,
    .rec_low = 0.999,
    .rec_high = 1.001,
    .batch = 64,
    .steps = 700000,
    .lr = 2e-4,
    .decay_steps = {300000, 390000, 480000, 570000},
    .weight_decay = 1e-5,
    .checkpoint_every = 10000,
    .beta0 = 0.5,
    .n_betas = 14,
    .eval_batch = 64,
    .eval_batches = 1000,
    .split_names = {"train", "valid"},
    .split_datasets = {"images", "images"},
    .split_ranges = {"20%:", ":20%"},
    .file = "data/3dshapes.h5",
};

static const ref_column cifar10 = {
    .path = CIFAR,
    .input = {32, 32, 3},
    .pre_train = {"resize(40)", "random_crop(32)", "flip_lr()", "value_range(-1, 1)"},
    .n_pre_train = 4,
    .pre_eval = {"value_range(-1, 1)"},
    .latent = 256,
    .output = OUT_GAUSSIAN,
    .enc_blocks = 3,
    .enc_layers = 2,
    .enc_base = 16,
    .enc_fc = {512, 512},
    .dec_blocks = 3,
    .dec_layers = 2,
    .dec_base = 16,
    .dec_fc = {512, 1024},
    .reshape = {4, 4, 64},
    .channels_out = 6,
    .cond_hidden = 512,
    .cond_mult = 0.1,
    .init = INIT_FAN_AVG,
    .kl_low = 0.125,
    .kl_high = 512,
    .rec_low = 0.999,
    .rec_high = 1.001,
    .batch = 128,
    .steps = 1200000,
    .lr = 1e-4,
    .decay_steps = {600000, 780000, 960000, 1140000},
    .weight_decay = 1e-5,
    .checkpoint_every = 10000,
    .beta0 = 0.125,
    .n_betas = 13,
    .eval_batch = 64,
    .eval_batches = 1000,
    .split_names = {"train", "test"},
    .split_datasets = {"train/images", "test/images"},
    .split_ranges = {"", ""},
    .file = "data/cifar10.h5",
};

static void check_reference(const ref_column *r) {
    yoto_config *c = load(r->path, NULL, 0);
    const cfg_net *enc = &c->model.encoder, *dec = &c->model.decoder;
    /* input */
    for (int i = 0; i < 3; i++)
        assert_int_equal(c->model.input_shape[i], r->input[i]);
    assert_pipeline(&c->data.preprocess_train, r->pre_train, r->n_pre_train, "preprocess_train");
    assert_pipeline(&c->data.preprocess_eval, r->pre_eval, 1, "preprocess_eval");
    /* latent dims, output distribution */
    assert_int_equal(c->model.latent_dim, r->latent);
    assert_int_equal(c->model.output_distribution, r->output);
    /* encoder */
    assert_int_equal(enc->num_blocks, r->enc_blocks);
    assert_int_equal(enc->layers_per_block, r->enc_layers);
    assert_int_equal(enc->base_channels, r->enc_base);
    assert_ints(&enc->fc_sizes, r->enc_fc, 2, "encoder.fc_sizes");
    /* decoder */
    assert_int_equal(dec->num_blocks, r->dec_blocks);
    assert_int_equal(dec->layers_per_block, r->dec_layers);
    assert_int_equal(dec->base_channels, r->dec_base);
    assert_ints(&dec->fc_sizes, r->dec_fc, 2, "decoder.fc_sizes");
    for (int i = 0; i < 3; i++)
        assert_int_equal(dec->reshape[i], r->reshape[i]);
    assert_int_equal(dec->channels_out, r->channels_out);
    /* conditioning MLP and its post-processing */
    assert_int_equal(c->model.conditioning.type, COND_FILM);
    assert_ints(&c->model.conditioning.hidden_sizes, &r->cond_hidden, 1, "hidden_sizes");
    assert_real(c->model.conditioning.scales_mult, r->cond_mult, "scales_mult");
    assert_real(c->model.conditioning.scales_add, 1.0, "scales_add");
    assert_real(c->model.conditioning.shifts_mult, r->cond_mult, "shifts_mult");
    assert_real(c->model.conditioning.shifts_add, 0.0, "shifts_add");
    /* kernel init, final sigmoid, network constants */
    assert_int_equal(c->model.kernel_init, r->init);
    assert_false(c->model.final_sigmoid);
    assert_real(c->model.alpha, 0.3, "alpha");
    assert_real(c->model.dense_alpha, 0.2, "dense_alpha");
    assert_real(c->model.eps, 1e-6, "eps");
    /* loss weights: β = w_kl and w_rec distributions, log conditioning */
    assert_int_equal(c->loss_weights.mode, LW_YOTO);
    assert_true(c->loss_weights.per_sample);
    assert_int_equal(c->loss_weights.transform, TRANSFORM_LOG);
    assert_false(c->loss_weights.normalize);
    assert_int_equal(c->loss_weights.kl.distribution, DIST_LOG_UNIFORM);
    assert_real(c->loss_weights.kl.low, r->kl_low, "kl.low");
    assert_real(c->loss_weights.kl.high, r->kl_high, "kl.high");
    assert_int_equal(c->loss_weights.reconstruction.distribution, DIST_LOG_UNIFORM);
    assert_real(c->loss_weights.reconstruction.low, r->rec_low, "reconstruction.low");
    assert_real(c->loss_weights.reconstruction.high, r->rec_high, "reconstruction.high");
    /* batch, steps, Adam, lr schedule, weight decay, checkpoints */
    assert_int_equal(c->train.batch_size, r->batch);
    assert_int_equal(c->train.batch_per_rank, 0);
    assert_int_equal(c->train.steps, r->steps);
    assert_real(c->optimizer.lr, r->lr, "lr");
    assert_real(c->optimizer.beta1, 0.9, "beta1");
    assert_real(c->optimizer.beta2, 0.999, "beta2");
    assert_real(c->optimizer.epsilon, 1e-8, "epsilon");
    assert_real(c->optimizer.decay_factor, 0.5, "decay_factor");
    assert_ints(&c->optimizer.decay_steps, r->decay_steps, 4, "decay_steps");
    assert_real(c->optimizer.weight_decay, r->weight_decay, "weight_decay");
    assert_int_equal(c->train.checkpoint_every, r->checkpoint_every);
    /* eval: β list ×2 from beta0, w_rec 1, batch / batches, splits */
    assert_int_equal(c->eval.betas.n, r->n_betas);
    for (int i = 0; i < r->n_betas; i++)
        assert_real(c->eval.betas.v[i], r->beta0 * ldexp(1, i), "beta");
    assert_real(c->eval.w_rec, 1.0, "w_rec");
    assert_int_equal(c->eval.batch_size, r->eval_batch);
    assert_int_equal(c->eval.max_batches, r->eval_batches);
    assert_int_equal(c->eval.n_splits, 2);
    assert_string_equal(c->data.file, r->file);
    assert_int_equal(c->data.n_splits, 2);
    assert_string_equal(c->data.train_split, "train");
    for (int i = 0; i < 2; i++) {
        assert_string_equal(c->eval.splits[i], r->split_names[i]);
        const cfg_split *s = config_split(c, r->split_names[i]);
        assert_non_null(s);
        assert_string_equal(s->dataset, r->split_datasets[i]);
        assert_string_equal(s->range, r->split_ranges[i]);
    }
    free(c);
}

static void test_shapes3d_matches_reference(void **state) {
    (void)state;
    check_reference(&shapes3d);
}

static void test_cifar10_matches_reference(void **state) {
    (void)state;
    check_reference(&cifar10);
}

/* The Shapes3D splits resolve to the original's train[20%:] / train[:20%]. */
static void test_shapes3d_split_rows(void **state) {
    (void)state;
    yoto_config *c = load(SHAPES, NULL, 0);
    long b, e;
    assert_int_equal(config_range_resolve(config_split(c, "train")->range, 480000, &b, &e), YT_OK);
    assert_int_equal(b, 96000);
    assert_int_equal(e, 480000);
    assert_int_equal(config_range_resolve(config_split(c, "valid")->range, 480000, &b, &e), YT_OK);
    assert_int_equal(b, 0);
    assert_int_equal(e, 96000);
    assert_null(config_split(c, "test"));
    free(c);
}

/* ---- defaults -------------------------------------------------------------------- */

/* Only the required keys; everything else takes its default. */
static const char *minimal =
    "experiment: {name: tiny}\n"
    "data:\n"
    "  file: d.h5\n"
    "  splits: [{name: train}, {name: valid, range: ':10%'}]\n"
    "model:\n"
    "  input_shape: [8, 8, 1]\n"
    "  latent_dim: 2\n"
    "  output_distribution: bernoulli\n"
    "  encoder: {num_blocks: 1, layers_per_block: 1, base_channels: 4, fc_sizes: [4]}\n"
    "  decoder: {num_blocks: 1, layers_per_block: 1, base_channels: 4, fc_sizes: [16],\n"
    "            reshape: [4, 4, 1], channels_out: 1}\n"
    "loss_weights:\n"
    "  kl: {distribution: log_uniform, low: 0.5, high: 8}\n"
    "  reconstruction: {distribution: fixed, value: 1}\n"
    "optimizer: {lr: 0.001}\n"
    "train: {batch_size: 4, steps: 10}\n"
    "eval: {splits: [valid], betas: [1]}\n";

static void test_defaults(void **state) {
    (void)state;
    yoto_config *c = load_text(minimal, NULL, 0);
    assert_int_equal(c->experiment.seed, 0);
    assert_string_equal(c->experiment.out_dir, "runs/tiny");
    assert_string_equal(c->data.train_split, "train");
    assert_string_equal(c->data.splits[0].dataset, "images");
    assert_string_equal(c->data.splits[0].file, "");
    assert_string_equal(c->data.splits[0].range, "");
    assert_int_equal(c->data.preprocess_train.n, 0);
    assert_int_equal(c->data.preprocess_eval.n, 0);
    assert_int_equal(c->data.cache_mb, 1024);
    assert_int_equal(c->data.stream_block_mb, 64);
    assert_real(c->model.eps, 1e-6, "eps");
    assert_real(c->model.alpha, 0.3, "alpha");
    assert_real(c->model.dense_alpha, 0.2, "dense_alpha");
    assert_int_equal(c->model.kernel_init, INIT_FAN_IN);
    assert_false(c->model.final_sigmoid);
    assert_int_equal(c->model.encoder.reshape[0], 0); /* the encoder has none */
    assert_int_equal(c->model.encoder.channels_out, 0);
    assert_int_equal(c->model.conditioning.type, COND_FILM);
    assert_int_equal(c->model.conditioning.hidden_sizes.n, 0);
    assert_real(c->model.conditioning.scales_mult, 1, "scales_mult");
    assert_real(c->model.conditioning.scales_add, 0, "scales_add");
    assert_real(c->model.conditioning.shifts_mult, 1, "shifts_mult");
    assert_real(c->model.conditioning.shifts_add, 0, "shifts_add");
    assert_int_equal(c->loss_weights.mode, LW_YOTO);
    assert_true(c->loss_weights.per_sample);
    assert_int_equal(c->loss_weights.transform, TRANSFORM_LOG);
    assert_false(c->loss_weights.normalize);
    assert_int_equal(c->loss_weights.reconstruction.distribution, DIST_FIXED);
    assert_real(c->loss_weights.reconstruction.value, 1, "reconstruction.value");
    assert_real(c->optimizer.beta1, 0.9, "beta1");
    assert_real(c->optimizer.beta2, 0.999, "beta2");
    assert_real(c->optimizer.epsilon, 1e-8, "epsilon");
    assert_real(c->optimizer.decay_factor, 1.0, "decay_factor");
    assert_int_equal(c->optimizer.decay_steps.n, 0);
    assert_real(c->optimizer.weight_decay, 0, "weight_decay");
    assert_int_equal(c->train.batch_per_rank, 0);
    assert_int_equal(c->train.checkpoint_every, 10000);
    assert_int_equal(c->train.keep_checkpoints, 0);
    assert_int_equal(c->train.log_every, 100);
    assert_int_equal(c->train.threads, 1);
    assert_int_equal(c->train.allreduce, ALLREDUCE_BUCKETED);
    assert_real(c->train.bucket_mb, 25, "bucket_mb");
    assert_int_equal(c->eval.batch_size, 64);
    assert_int_equal(c->eval.max_batches, 0);
    assert_int_equal(c->eval.every, 0);
    assert_real(c->eval.w_rec, 1, "w_rec");
    assert_int_equal(c->eval.z, EVAL_Z_SAMPLE);
    /* defaults are not "set": where says so */
    assert_string_equal(config_where(c, "train.threads"), "<test> (default)");
    free(c);
}

/* ---- --set ------------------------------------------------------------------------ */

static void test_set_overrides(void **state) {
    (void)state;
    const char *sets[] = {
        "train.steps=1000",
        "optimizer.lr=3e-4",
        "eval.betas=[1, 2, 4]",
        "model.encoder.base_channels=4",
        "data.preprocess_train=['value_range(0, 1)', 'flip_lr()']",
        "experiment.name=\"my run\"",
        "train.steps=2000", /* later wins */
        "data.splits[0].range='20%:'",
        "loss_weights.kl={distribution: uniform, low: 1, high: 2}",
        "train.allreduce=blocking",
        "train.seed_typo_is_not_here_it_is_below=1",
    };
    /* all but the last: that one must be refused */
    yoto_config *c = load(SHAPES, sets, 10);
    assert_int_equal(c->train.steps, 2000);
    assert_real(c->optimizer.lr, 3e-4, "lr");
    assert_int_equal(c->eval.betas.n, 3);
    assert_real(c->eval.betas.v[2], 4, "betas[2]");
    assert_int_equal(c->model.encoder.base_channels, 4);
    assert_int_equal(c->model.decoder.base_channels, 8); /* untouched */
    assert_int_equal(c->data.preprocess_train.n, 2);
    assert_int_equal(c->data.preprocess_train.op[1].kind, PRE_FLIP_LR);
    assert_string_equal(c->experiment.name, "my run");
    assert_string_equal(c->experiment.out_dir, "runs/my run");
    assert_string_equal(c->data.splits[0].range, "20%:");
    assert_string_equal(c->data.splits[1].range, ":20%");
    assert_int_equal(c->loss_weights.kl.distribution, DIST_UNIFORM);
    assert_real(c->loss_weights.kl.high, 2, "kl.high");
    assert_int_equal(c->train.allreduce, ALLREDUCE_BLOCKING);
    assert_string_equal(config_where(c, "train.steps"), "--set train.steps=2000");
    assert_string_equal(config_where(c, "eval.betas"), "--set eval.betas=[1.0, 2.0, 4.0]");
    assert_string_equal(config_where(c, "data.splits[0].range"),
                        "--set data.splits[0].range=\"20%:\"");
    free(c);

    yoto_config *bad = calloc(1, sizeof *bad);
    assert_int_equal(config_load(bad, SHAPES, sets, 11), YT_ERR_USAGE);
    assert_non_null(strstr(yt_errmsg(), "--set train.seed_typo_is_not_here_it_is_below=1: "
                                        "unknown key 'train.seed_typo_is_not_here_it_is_below'"));
    free(bad);

    /* a whole list of mappings, replacing the file's */
    const char *splits[] = {"data.splits=[{name: train, dataset: images}, {name: valid, "
                            "dataset: images, range: ':5%'}]"};
    c = load(SHAPES, splits, 1);
    assert_int_equal(c->data.n_splits, 2);
    assert_string_equal(c->data.splits[1].range, ":5%");
    assert_string_equal(c->data.splits[0].range, "");
    free(c);
}

/* ---- round trips -------------------------------------------------------------------- */

static void clear_provenance(yoto_config *c) {
    memset(c->source, 0, sizeof c->source);
    c->n_locs = 0;
    memset(c->locs, 0, sizeof c->locs);
}

static void check_round_trip(yoto_config *a) {
    char *text = config_to_yaml(a);
    yoto_config *b = load_text(text, NULL, 0);
    char *text2 = config_to_yaml(b);
    assert_string_equal(text, text2);
    clear_provenance(a);
    clear_provenance(b);
    if (memcmp(a, b, sizeof *a)) {
        const unsigned char *pa = (const void *)a, *pb = (const void *)b;
        size_t i = 0;
        while (pa[i] == pb[i])
            i++;
        fail_msg("structs differ at byte %zu of %zu\n%s", i, sizeof *a, text);
    }
    free(text);
    free(text2);
    free(b);
}

static void test_round_trip_shipped(void **state) {
    (void)state;
    const char *paths[] = {SHAPES, CIFAR, FASHION};
    for (size_t i = 0; i < 3; i++) {
        yoto_config *a = load(paths[i], NULL, 0);
        check_round_trip(a);
        free(a);
    }
}

/* Reals that need all 17 digits, tiny and huge ones, odd strings. */
static void test_round_trip_awkward_values(void **state) {
    (void)state;
    const char *sets[] = {
        "optimizer.lr=0.1000000000000000055511151231257827",
        "optimizer.weight_decay=3.3e-300",
        "model.conditioning.shifts_add=-1.0000000000000002",
        "model.conditioning.scales_add=1e300",
        "eval.betas=[0.30000000000000004, 1e-7, 123456789.123]",
        "experiment.name='a: b #c \"d\" \\\\ é'",
        "experiment.seed=18446744073709551615",
        "data.splits[0].file=true",
        "data.preprocess_eval=['value_range(0.1, 0.7000000000000001)']",
    };
    yoto_config *a = load(SHAPES, sets, 9);
    assert_real(a->optimizer.lr, 0.1, "lr");
    assert_true(a->experiment.seed == UINT64_MAX);
    assert_string_equal(a->data.splits[0].file, "true");
    assert_string_equal(a->experiment.name, "a: b #c \"d\" \\\\ é");
    check_round_trip(a);
    free(a);
}

/* ---- where keys were set ------------------------------------------------------------ */

/* Line and column of the value of "<indent>key:" in a file, found by scanning it. */
static void find_in_file(const char *path, const char *line_start, int *line, int *col) {
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char buf[512];
    *line = 0;
    for (int n = 1; fgets(buf, sizeof buf, f); n++)
        if (!strncmp(buf, line_start, strlen(line_start))) {
            char *v = buf + strlen(line_start);
            while (*v == ' ')
                v++;
            *line = n;
            *col = (int)(v - buf) + 1;
            break;
        }
    fclose(f);
    if (!*line) fail_msg("%s: no line starting '%s'", path, line_start);
}

static void test_where(void **state) {
    (void)state;
    yoto_config *c = load(SHAPES, NULL, 0);
    int line, col;
    char want[600];
    find_in_file(SHAPES, "  latent_dim:", &line, &col);
    snprintf(want, sizeof want, "%s:%d:%d", SHAPES, line, col);
    assert_string_equal(config_where(c, "model.latent_dim"), want);
    find_in_file(SHAPES, "    fc_sizes: [256, 1024]", &line, &col);
    snprintf(want, sizeof want, "%s:%d:%d", SHAPES, line, 15);
    assert_string_equal(config_where(c, "model.decoder.fc_sizes"), want);
    find_in_file(SHAPES, "      range: \":20%\"", &line, &col);
    snprintf(want, sizeof want, "%s:%d:%d", SHAPES, line, 14);
    assert_string_equal(config_where(c, "data.splits[1].range"), want);
    find_in_file(SHAPES, "model:", &line, &col);
    snprintf(want, sizeof want, "%s:%d:1", SHAPES, line);
    assert_string_equal(config_where(c, "model"), want);
    snprintf(want, sizeof want, "%s (default)", SHAPES);
    assert_string_equal(config_where(c, "train.threads"), want);
    assert_string_equal(config_where(c, "no.such.key"), want);
    free(c);
}

/* ---- preprocessing op text ------------------------------------------------------------ */

static void test_preop_text(void **state) {
    (void)state;
    const char *sets[] = {"data.preprocess_train=['  resize( 40 )', 'random_crop(32)', "
                          "'flip_lr( )', 'value_range(-1,1)', 'pad(32)']",
                          "model.input_shape=[32, 32, 3]",
                          "model.output_distribution=gaussian",
                          "model.decoder.channels_out=6",
                          "model.encoder.num_blocks=3",
                          "model.decoder.num_blocks=3",
                          "data.preprocess_eval=[]"};
    yoto_config *c = load(SHAPES, sets, 7);
    const char *want[] = {"resize(40)", "random_crop(32)", "flip_lr()", "value_range(-1, 1)",
                          "pad(32)"};
    assert_pipeline(&c->data.preprocess_train, want, 5, "preprocess_train");
    assert_int_equal(c->data.preprocess_train.op[0].n, 40);
    assert_real(c->data.preprocess_train.op[3].a, -1, "a");
    assert_real(c->data.preprocess_train.op[3].b, 1, "b");
    free(c);
}

/* ---- errors (a few; tests/e2e/test_config.sh has the catalogue) ---------------------- */

static void test_errors(void **state) {
    (void)state;
    /* unknown key with a suggestion, at its line and column */
    char *text = malloc(strlen(minimal) + 64);
    snprintf(text, strlen(minimal) + 64, "%s", minimal);
    char *p = strstr(text, "latent_dim");
    memcpy(p, "latnet_dim", 10);
    expect_error(text, NULL, 0,
                 (const char *[]){"<test>:7:3: ", "unknown key 'model.latnet_dim'",
                                  "did you mean 'model.latent_dim'?"},
                 3);
    free(text);

    /* wrong type: a real for an int, text for a real, yes for a bool */
    const char *s1[] = {"model.latent_dim=1.5"};
    expect_error(minimal, s1, 1,
                 (const char *[]){"--set model.latent_dim=1.5: ", "model.latent_dim",
                                  "expected an integer", "found '1.5'"},
                 4);
    const char *s2[] = {"optimizer.lr=abc"};
    expect_error(minimal, s2, 1, (const char *[]){"optimizer.lr", "expected a real", "'abc'"}, 3);
    const char *s3[] = {"loss_weights.normalize=yes"};
    expect_error(minimal, s3, 1, (const char *[]){"expected true or false", "'yes'"}, 2);
    /* out of range, bad enum */
    const char *s4[] = {"model.encoder.num_blocks=0"};
    expect_error(minimal, s4, 1,
                 (const char *[]){"model.encoder.num_blocks", "out of range", "in [1, 16]"}, 3);
    const char *s5[] = {"train.allreduce=ring"};
    expect_error(minimal, s5, 1, (const char *[]){"expected one of: bucketed, blocking"}, 1);
    /* cross-key: both batch keys, naming both places */
    const char *s6[] = {"train.batch_per_rank=2"};
    expect_error(
        minimal, s6, 1,
        (const char *[]){"--set train.batch_per_rank=2: ", "train.batch_size = 4 (<test>:16:",
                         "train.batch_per_rank = 2 (--set train.batch_per_rank=2)"},
        3);
    /* missing required key */
    expect_error("experiment: {seed: 1}\n", NULL, 0,
                 (const char *[]){"<test>:1:1: ", "missing required key 'experiment.name'"}, 2);
    /* empty and malformed text */
    expect_error("", NULL, 0, (const char *[]){"<test>:1:1: empty config"}, 1);
    expect_error("a: [1,\n", NULL, 0, (const char *[]){"<test>:2:1: malformed YAML"}, 1);
}

/* ---- resume rules (config_resume_check) ------------------------------------------------ */

#define CKPT "run/ckpt/step-000000020.h5"

/* The resumable keys as the brief for the schema's resume column lists them,
 * written out by hand: the table must say exactly this. */
static const char *const resumable[] = {"experiment.out_dir",
                                        "data.file",
                                        "data.splits[].file",
                                        "data.cache_mb",
                                        "train.steps",
                                        "train.checkpoint_every",
                                        "train.keep_checkpoints",
                                        "train.log_every",
                                        "train.threads",
                                        "train.step_timeout_s",
                                        "eval.*"};

/* config_resume_check of FASHION with the overrides `was` (the checkpoint's
 * config) against FASHION with `now`; the status, the message in yt_errmsg().
 * The stored config goes through its YAML text, as a checkpoint's does. */
static int resume_check(const char *const *was, int nwas, const char *const *now, int nnow) {
    yoto_config *w = load(FASHION, was, nwas), *n = load(FASHION, now, nnow);
    char *yaml = config_to_yaml(w);
    yoto_config *stored = load_text(yaml, NULL, 0);
    yt_clear_error();
    int rc = config_resume_check(stored, n, CKPT);
    free(yaml);
    free(stored);
    free(w);
    free(n);
    return rc;
}

static int count_of(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* A refused resume: the message names each of want[] and none of unwanted[]. */
static void expect_refused(int rc, const char *const *want, int nwant, const char *const *unwanted,
                           int nunwanted) {
    if (rc != YT_ERR_USAGE) fail_msg("expected a usage error, got %d (%s)", rc, yt_errmsg());
    const char *m = yt_errmsg();
    for (int i = 0; i < nwant; i++)
        if (!strstr(m, want[i])) fail_msg("message lacks \"%s\":\n%s", want[i], m);
    for (int i = 0; i < nunwanted; i++)
        if (strstr(m, unwanted[i])) fail_msg("message should not hold \"%s\":\n%s", unwanted[i], m);
    /* every refusal ends with what may change and what to do instead */
    if (strncmp(m, "cannot resume from " CKPT ": ", strlen("cannot resume from " CKPT ": ")))
        fail_msg("message does not start by naming the checkpoint:\n%s", m);
    if (!strstr(m, "only these keys may change on resume: experiment.out_dir, data.file, "
                   "data.splits[].file, data.cache_mb, train.steps") ||
        !strstr(m, "start a new run (another experiment.out_dir)"))
        fail_msg("message lacks the resumable keys or the advice:\n%s", m);
}

static void test_resume_same(void **state) {
    (void)state;
    if (resume_check(NULL, 0, NULL, 0) != YT_OK) fail_msg("same config refused: %s", yt_errmsg());
    /* and the table's list, independently of the message */
    char list[1024], want[1024] = "";
    config_resumable_keys(list, sizeof list);
    for (size_t i = 0; i < YT_ARRAY_LEN(resumable); i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s", i ? ", " : "",
                 resumable[i]);
    assert_string_equal(list, want);
}

static void test_resume_changeable(void **state) {
    (void)state;
    /* every key that may change, changed at once, lists included */
    const char *now[] = {"train.steps=9000",
                         "train.log_every=7",
                         "train.checkpoint_every=11",
                         "train.keep_checkpoints=2",
                         "train.threads=2",
                         "train.step_timeout_s=600",
                         "eval.betas=[1.0, 2.0, 3.0]",
                         "eval.splits=[test]",
                         "eval.every=5",
                         "eval.z=mean",
                         "data.file=elsewhere/fm.h5",
                         "data.splits[1].file=moved.h5",
                         "data.cache_mb=0",
                         "experiment.out_dir=runs/moved"};
    if (resume_check(NULL, 0, now, (int)YT_ARRAY_LEN(now)) != YT_OK)
        fail_msg("changeable keys refused: %s", yt_errmsg());
    /* and back: the checkpoint's values of them may be anything too */
    if (resume_check(now, (int)YT_ARRAY_LEN(now), NULL, 0) != YT_OK)
        fail_msg("changeable keys refused (reversed): %s", yt_errmsg());
}

static void test_resume_one_key(void **state) {
    (void)state;
    const char *now[] = {"experiment.seed=7", "train.steps=9000"};
    expect_refused(resume_check(NULL, 0, now, 2),
                   (const char *[]){"in 1 key that may not change on resume:\n",
                                    "\n  experiment.seed: checkpoint has 1, this run has 7 (from "
                                    "--set experiment.seed=7)\n"},
                   2, (const char *[]){"train.steps:"}, 1);
    /* this run's value from the file: its line and column */
    int line, col;
    char want[600];
    find_in_file(FASHION, "  seed:", &line, &col);
    snprintf(want, sizeof want, "experiment.seed: checkpoint has 7, this run has 1 (from %s:%d:%d)",
             FASHION, line, col);
    expect_refused(resume_check(now, 1, NULL, 0), (const char *[]){want}, 1, NULL, 0);
    /* ... or the default: eval.w_rec is not a key here, train.allreduce is left out */
    const char *was[] = {"train.allreduce=blocking"};
    expect_refused(resume_check(was, 1, NULL, 0),
                   (const char *[]){"train.allreduce: checkpoint has blocking, this run has "
                                    "bucketed (the default)"},
                   1, NULL, 0);
}

static void test_resume_two_and_three_keys(void **state) {
    (void)state;
    const char *two[] = {"optimizer.lr=2e-3", "train.allreduce=blocking"};
    expect_refused(resume_check(NULL, 0, two, 2),
                   (const char *[]){"in 2 keys that",
                                    "\n  optimizer.lr: checkpoint has 0.001, this run has 0.002 "
                                    "(from --set optimizer.lr=0.002)",
                                    "\n  train.allreduce: checkpoint has bucketed, this run has "
                                    "blocking (from --set train.allreduce=blocking)"},
                   3, NULL, 0);
    const char *three[] = {"data.stream_block_mb=1", "train.steps=5", "train.bucket_mb=1.5",
                           "model.alpha=0.25"};
    expect_refused(resume_check(NULL, 0, three, 4),
                   (const char *[]){"in 3 keys that",
                                    "\n  data.stream_block_mb: checkpoint has 64, this run has 1 ",
                                    "\n  train.bucket_mb: checkpoint has 25.0, this run has 1.5 ",
                                    "\n  model.alpha: checkpoint has 0.3, this run has 0.25 "},
                   4, (const char *[]){"train.steps:"}, 1);
    /* in schema order, one line each */
    const char *m = yt_errmsg();
    const char *a = strstr(m, "data.stream_block_mb:"), *b = strstr(m, "model.alpha:"),
               *c = strstr(m, "train.bucket_mb:");
    if (!(a < b && b < c)) fail_msg("not in schema order:\n%s", m);
    assert_int_equal(count_of(m, "\n  "), 3);
}

static void test_resume_lists(void **state) {
    (void)state;
    /* another number of splits is one difference, of data.splits */
    const char *more[] = {"data.splits=[{name: train, dataset: train/images}, "
                          "{name: test, dataset: test/images}, "
                          "{name: extra, dataset: test/images, range: \":10%\"}]"};
    expect_refused(resume_check(NULL, 0, more, 1),
                   (const char *[]){"in 1 key that",
                                    "\n  data.splits: checkpoint has [{name: train, file: \"\", "
                                    "dataset: train/images, range: \"\"}, {name: test, file: ",
                                    ", this run has [{name: train, file: \"\", dataset: "},
                   3, (const char *[]){"\n  data.splits["}, 1);
    /* the same number: entry by entry, a changed file allowed */
    const char *range[] = {"data.splits[1].range=\":50%\"", "data.splits[0].file=x.h5"};
    expect_refused(resume_check(NULL, 0, range, 2),
                   (const char *[]){"in 1 key that",
                                    "\n  data.splits[1].range: checkpoint has \"\", this run has "
                                    "\":50%\" (from --set data.splits[1].range=\":50%\")"},
                   2, (const char *[]){"data.splits[0]"}, 1);
    /* a list of numbers of another length */
    const char *steps[] = {"optimizer.decay_steps=[1000, 3000]"};
    expect_refused(resume_check(NULL, 0, steps, 1),
                   (const char *[]){"\n  optimizer.decay_steps: checkpoint has [18000], this run "
                                    "has [1000, 3000] (from --set optimizer.decay_steps=[1000, "
                                    "3000])"},
                   1, NULL, 0);
}

/* Two unrelated configs: more differences than fit in one message. It keeps
 * its head and tail, and says how many it left out. */
static void test_resume_many_keys(void **state) {
    (void)state;
    yoto_config *a = load(SHAPES, NULL, 0), *b = load(CIFAR, NULL, 0);
    yt_clear_error();
    int rc = config_resume_check(a, b, CKPT);
    const char *m = yt_errmsg();
    expect_refused(rc, (const char *[]){"experiment.name: checkpoint has shapes3d"}, 1, NULL, 0);
    int n = 0, more = 0;
    const char *p = strstr(m, "differs from the checkpoint's in ");
    assert_non_null(p);
    sscanf(p, "differs from the checkpoint's in %d", &n);
    p = strstr(m, "\n  ... and ");
    if (!p) fail_msg("expected more differences than fit:\n%s", m);
    sscanf(p, "\n  ... and %d more", &more);
    int shown = count_of(m, "\n  ") - 1;
    if (!(n > 20 && more > 0 && shown + more == n))
        fail_msg("%d keys, %d shown, %d more:\n%s", n, shown, more, m);
    if (!(strlen(m) < YT_ERRMSG_MAX - 64)) fail_msg("message of %zu characters", strlen(m));
    free(a);
    free(b);
}

/* docs/CONFIG.md's list of keys that may change on resume is the table's. */
static void test_resume_keys_documented(void **state) {
    (void)state;
    FILE *f = fopen("docs/CONFIG.md", "r");
    if (!f) fail_msg("docs/CONFIG.md: cannot open (tests run from the project root)");
    char line[512];
    bool in_section = false, in_list = false;
    char doc[32][64];
    int ndoc = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "## ", 3)) in_section = strstr(line, "resumes") != NULL;
        if (!in_section) continue;
        if (!strncmp(line, "- ", 2)) in_list = true;
        if (in_list && line[0] == '\n') break; /* the list ends at a blank line */
        if (!in_list) continue;
        /* `key` spans: key paths only (not `--resume DIR`) */
        for (char *p = strchr(line, '`'); p; p = strchr(p, '`')) {
            char *e = strchr(p + 1, '`');
            if (!e) break;
            size_t len = (size_t)(e - p - 1);
            if (len && len < sizeof doc[0] &&
                strspn(p + 1, "abcdefghijklmnopqrstuvwxyz_.[]*") == len) {
                assert_true(ndoc < 32);
                snprintf(doc[ndoc++], sizeof doc[0], "%.*s", (int)len, p + 1);
            }
            p = e + 1;
        }
    }
    fclose(f);
    char table[1024];
    config_resumable_keys(table, sizeof table);
    int ntable = 0;
    for (char *t = strtok(table, ", "); t; t = strtok(NULL, ", ")) {
        bool found = false;
        for (int i = 0; i < ndoc; i++)
            found |= !strcmp(doc[i], t);
        if (!found) fail_msg("docs/CONFIG.md's resume list lacks `%s`", t);
        ntable++;
    }
    for (int i = 0; i < ndoc; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(doc[i], doc[j])) fail_msg("docs/CONFIG.md lists `%s` twice", doc[i]);
    if (ndoc != ntable)
        fail_msg("docs/CONFIG.md's resume list has %d keys, the schema %d", ndoc, ntable);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shapes3d_matches_reference),
        cmocka_unit_test(test_cifar10_matches_reference),
        cmocka_unit_test(test_shapes3d_split_rows),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_set_overrides),
        cmocka_unit_test(test_round_trip_shipped),
        cmocka_unit_test(test_round_trip_awkward_values),
        cmocka_unit_test(test_where),
        cmocka_unit_test(test_preop_text),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_resume_same),
        cmocka_unit_test(test_resume_changeable),
        cmocka_unit_test(test_resume_one_key),
        cmocka_unit_test(test_resume_two_and_three_keys),
        cmocka_unit_test(test_resume_lists),
        cmocka_unit_test(test_resume_many_keys),
        cmocka_unit_test(test_resume_keys_documented),
    };
    return TU_RUN("config", tests);
}
