/* config.c — YAML (+ --set overrides) → one validated yoto_config, and back.
 *
 * One schema table (below) says, for every key: its YAML name, its type, where
 * it lives in the struct, its default (as YAML text, parsed by the same code as
 * a file value) or that it is required, its range, and whether a resumed run
 * may change it. Parsing, defaults, per-key validation, config_where(),
 * config_to_yaml() and the resume check all walk that one table; the
 * cross-key rules (the checks[] validate() runs, one or a few per section)
 * are the only other place keys are named. The YAML is first read into a tree
 * of positioned nodes (yamltree.c) so --set values can be grafted in and
 * reported with their own origin.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common.h"
#include "yamltree.h"

/* ---- the schema -------------------------------------------------------------- */

typedef enum {
    T_MAP,     /* a mapping of keys (child table); a section               */
    T_INT,     /* int                                                      */
    T_LONG,    /* long                                                     */
    T_U64,     /* uint64_t                                                 */
    T_REAL,    /* double                                                   */
    T_BOOL,    /* bool: true | false                                       */
    T_STR,     /* char[size]                                               */
    T_ENUM,    /* an enum, spelled as names[value]                         */
    T_INTS,    /* cfg_ints                                                 */
    T_INTARR,  /* int[size]: a list of exactly size integers               */
    T_REALS,   /* cfg_reals                                                */
    T_STRS,    /* char[max_n][size] with an int count at count_off         */
    T_MAPLIST, /* elem[max_n] of mappings (child table), count at count_off */
    T_PIPE     /* cfg_pipeline: a list of op strings "name(args)"          */
} key_type;

enum { EXCL_LO = 1, EXCL_HI = 2 };

typedef struct key_def {
    const char *name;
    key_type type;
    size_t off;  /* from the enclosing mapping's base */
    size_t size; /* T_STR, T_STRS: capacity of one string; T_INTARR: count; T_MAPLIST: elem size */
    const char *dflt;         /* default as YAML text; NULL: required (T_MAP: never required) */
    double lo, hi;            /* numbers and list elements: range; T_STR/T_STRS: lo = min length */
    int excl;                 /* EXCL_LO / EXCL_HI: open ends of the range */
    int min_n, max_n;         /* lists: length bounds */
    size_t count_off;         /* T_STRS, T_MAPLIST: offset of the int count (same base as off) */
    const char *const *names; /* T_ENUM: spelling of each value, NULL-terminated */
    const struct key_def *child; /* T_MAP, T_MAPLIST: the keys of the mapping */
    int resume;                  /* KEEP or VARY: may it change when a run resumes? */
} key_def;

/* The resume column. VARY: the key may differ from the checkpoint's config
 * when a run resumes: how long, how often, where the files are, how fast.
 * KEEP, every other key: it shapes what is trained, or the order of its
 * arithmetic, and a resumed run continues bit for bit only with it unchanged
 * (config_resume_check). VARY on a mapping covers every key in it. */
enum { KEEP = 0, VARY = 1 };

/* The table's offsets are checked against the struct's member types at
 * compile time: _Generic without a default refuses a member of another type,
 * so a row cannot write a long into an int or an int into an enum. */
/* clang-format off */
#define MEM(T, m) (((T *)0)->m)
#define OFF_AS(T, m, ty) _Generic(MEM(T, m), ty: offsetof(T, m))
#define OFF_ENUM(T, m)                                                                             \
    _Generic(MEM(T, m), cfg_output: offsetof(T, m), cfg_init_mode: offsetof(T, m),                 \
             cfg_cond_type: offsetof(T, m), cfg_lw_mode: offsetof(T, m),                           \
             cfg_dist: offsetof(T, m), cfg_transform: offsetof(T, m),                              \
             cfg_allreduce: offsetof(T, m), cfg_eval_z: offsetof(T, m),                         \
             cfg_eval_metrics: offsetof(T, m))
#define NOLO (-HUGE_VAL)
#define NOHI HUGE_VAL

/* A section of yoto_config is an anonymous struct: its keys keep yoto_config
 * offsets and the section row has offset 0. */
#define K_SECTION(nm, tbl, r) {.name = nm, .type = T_MAP, .child = tbl, .resume = r}
#define K_MAP(nm, T, m, ty, tbl, r)                                                                \
    {.name = nm, .type = T_MAP, .off = OFF_AS(T, m, ty), .child = tbl, .resume = r}
#define K_INT(nm, T, m, d, l, h, r)                                                                \
    {.name = nm, .type = T_INT, .off = OFF_AS(T, m, int), .dflt = d, .lo = l, .hi = h,             \
     .resume = r}
#define K_LONG(nm, T, m, d, l, h, r)                                                               \
    {.name = nm, .type = T_LONG, .off = OFF_AS(T, m, long), .dflt = d, .lo = l, .hi = h,           \
     .resume = r}
#define K_U64(nm, T, m, d, r)                                                                      \
    {.name = nm, .type = T_U64, .off = OFF_AS(T, m, uint64_t), .dflt = d, .lo = 0,                 \
     .hi = 18446744073709551615.0, .resume = r}
#define K_REAL(nm, T, m, d, l, h, x, r)                                                            \
    {.name = nm, .type = T_REAL, .off = OFF_AS(T, m, double), .dflt = d, .lo = l, .hi = h,         \
     .excl = x, .resume = r}
#define K_BOOL(nm, T, m, d, r)                                                                     \
    {.name = nm, .type = T_BOOL, .off = OFF_AS(T, m, bool), .dflt = d, .resume = r}
#define K_STR(nm, T, m, d, minlen, r)                                                              \
    {.name = nm, .type = T_STR, .off = OFF_AS(T, m, char *), .size = sizeof(MEM(T, m)),            \
     .dflt = d, .lo = minlen, .resume = r}
#define K_ENUM(nm, T, m, d, nms, r)                                                                \
    {.name = nm, .type = T_ENUM, .off = OFF_ENUM(T, m), .dflt = d, .names = nms, .resume = r}
#define K_INTS(nm, T, m, d, l, h, minn, r)                                                         \
    {.name = nm, .type = T_INTS, .off = OFF_AS(T, m, cfg_ints), .dflt = d, .lo = l, .hi = h,       \
     .min_n = minn, .max_n = CFG_LIST_MAX, .resume = r}
#define K_INTARR(nm, T, m, d, l, h, r)                                                             \
    {.name = nm, .type = T_INTARR, .off = OFF_AS(T, m, int *),                                     \
     .size = sizeof(MEM(T, m)) / sizeof(int), .dflt = d, .lo = l, .hi = h,                         \
     .min_n = (int)(sizeof(MEM(T, m)) / sizeof(int)),                                              \
     .max_n = (int)(sizeof(MEM(T, m)) / sizeof(int)), .resume = r}
#define K_REALS(nm, T, m, d, l, h, x, minn, r)                                                     \
    {.name = nm, .type = T_REALS, .off = OFF_AS(T, m, cfg_reals), .dflt = d, .lo = l, .hi = h,     \
     .excl = x, .min_n = minn, .max_n = CFG_LIST_MAX, .resume = r}
#define K_STRS(nm, T, m, cnt, d, minn, r)                                                          \
    {.name = nm, .type = T_STRS, .off = OFF_AS(T, m, char(*)[CFG_NAME_MAX]),                       \
     .size = sizeof(MEM(T, m)[0]), .dflt = d, .lo = 1, .min_n = minn,                              \
     .max_n = (int)(sizeof(MEM(T, m)) / sizeof(MEM(T, m)[0])), .count_off = OFF_AS(T, cnt, int),   \
     .resume = r}
#define K_MAPLIST(nm, T, m, cnt, ty, tbl, d, minn, r)                                              \
    {.name = nm, .type = T_MAPLIST, .off = OFF_AS(T, m, ty *), .size = sizeof(ty), .dflt = d,     \
     .min_n = minn, .max_n = (int)(sizeof(MEM(T, m)) / sizeof(ty)),                                \
     .count_off = OFF_AS(T, cnt, int), .child = tbl, .resume = r}
#define K_PIPE(nm, T, m, d, r)                                                                     \
    {.name = nm, .type = T_PIPE, .off = OFF_AS(T, m, cfg_pipeline), .dflt = d,                     \
     .max_n = CFG_PREOPS_MAX, .resume = r}
#define K_END {.name = NULL}

/* clang-format on */

/* Enum spellings, in the order of the C enums in config.h. */
static const char *const output_names[] = {"bernoulli", "gaussian", NULL};
static const char *const init_names[] = {"fan_in", "fan_avg", NULL};
static const char *const cond_names[] = {"film", "none", "gated", NULL};
static const char *const lw_mode_names[] = {"yoto", "fixed", NULL};
static const char *const dist_names[] = {"log_uniform", "uniform", "fixed", NULL};
static const char *const transform_names[] = {"log", "identity", NULL};
static const char *const allreduce_names[] = {"bucketed", "blocking", "sharded", NULL};
static const char *const eval_z_names[] = {"sample", "mean", NULL};
static const char *const eval_metrics_names[] = {"auto", "on", "off", NULL};

typedef yoto_config Y;

/* Enum keys are read and written as int. */
_Static_assert(sizeof(cfg_output) == sizeof(int) && sizeof(cfg_init_mode) == sizeof(int) &&
                   sizeof(cfg_cond_type) == sizeof(int) && sizeof(cfg_lw_mode) == sizeof(int) &&
                   sizeof(cfg_dist) == sizeof(int) && sizeof(cfg_transform) == sizeof(int) &&
                   sizeof(cfg_allreduce) == sizeof(int) && sizeof(cfg_eval_z) == sizeof(int) &&
                   sizeof(cfg_eval_metrics) == sizeof(int),
               "enum keys are stored as int");

static const key_def experiment_keys[] = {
    K_STR("name", Y, experiment.name, NULL, 1, KEEP),
    K_U64("seed", Y, experiment.seed, "0", KEEP),
    K_STR("out_dir", Y, experiment.out_dir, "\"\"", 0, VARY), /* "" -> runs/<name> in validate() */
    K_END,
};

static const key_def split_keys[] = {
    K_STR("name", cfg_split, name, NULL, 1, KEEP),
    K_STR("file", cfg_split, file, "\"\"", 0, VARY),
    K_STR("dataset", cfg_split, dataset, "images", 1, KEEP),
    K_STR("range", cfg_split, range, "\"\"", 0, KEEP),
    K_END,
};

static const key_def data_keys[] = {
    K_STR("file", Y, data.file, "\"\"", 0, VARY),
    K_MAPLIST("splits", Y, data.splits, data.n_splits, cfg_split, split_keys, NULL, 1, KEEP),
    K_STR("train_split", Y, data.train_split, "train", 1, KEEP),
    K_PIPE("preprocess_train", Y, data.preprocess_train, "[]", KEEP),
    K_PIPE("preprocess_eval", Y, data.preprocess_eval, "[]", KEEP),
    K_LONG("cache_mb", Y, data.cache_mb, "1024", 0, 1e9, VARY),
    /* KEEP: the block size shapes the data order (docs/DATA.md) */
    K_LONG("stream_block_mb", Y, data.stream_block_mb, "64", 1, 1e6, KEEP),
    K_END,
};

static const key_def encoder_keys[] = {
    K_INT("num_blocks", cfg_net, num_blocks, NULL, 1, 16, KEEP),
    K_INT("layers_per_block", cfg_net, layers_per_block, NULL, 1, 64, KEEP),
    K_INT("base_channels", cfg_net, base_channels, NULL, 1, 65536, KEEP),
    K_INTS("fc_sizes", cfg_net, fc_sizes, NULL, 1, 1 << 24, 1, KEEP),
    K_END,
};

static const key_def decoder_keys[] = {
    K_INT("num_blocks", cfg_net, num_blocks, NULL, 1, 16, KEEP),
    K_INT("layers_per_block", cfg_net, layers_per_block, NULL, 1, 64, KEEP),
    K_INT("base_channels", cfg_net, base_channels, NULL, 1, 65536, KEEP),
    K_INTS("fc_sizes", cfg_net, fc_sizes, NULL, 1, 1 << 24, 1, KEEP),
    K_INTARR("reshape", cfg_net, reshape, NULL, 1, 1 << 20, KEEP),
    K_INT("channels_out", cfg_net, channels_out, NULL, 1, 4096, KEEP),
    K_END,
};

static const key_def conditioning_keys[] = {
    K_ENUM("type", Y, model.conditioning.type, "film", cond_names, KEEP),
    K_INTS("hidden_sizes", Y, model.conditioning.hidden_sizes, "[]", 1, 1 << 24, 0, KEEP),
    K_REAL("scales_mult", Y, model.conditioning.scales_mult, "1.0", NOLO, NOHI, 0, KEEP),
    K_REAL("scales_add", Y, model.conditioning.scales_add, "0.0", NOLO, NOHI, 0, KEEP),
    K_REAL("shifts_mult", Y, model.conditioning.shifts_mult, "1.0", NOLO, NOHI, 0, KEEP),
    K_REAL("shifts_add", Y, model.conditioning.shifts_add, "0.0", NOLO, NOHI, 0, KEEP),
    K_END,
};

static const key_def model_keys[] = {
    K_INTARR("input_shape", Y, model.input_shape, NULL, 1, 1 << 16, KEEP),
    K_INT("latent_dim", Y, model.latent_dim, NULL, 1, 1 << 20, KEEP),
    K_ENUM("output_distribution", Y, model.output_distribution, NULL, output_names, KEEP),
    K_REAL("eps", Y, model.eps, "1.0e-6", 0, 1, EXCL_LO, KEEP),
    K_REAL("alpha", Y, model.alpha, "0.3", 0, 1, 0, KEEP),
    K_REAL("dense_alpha", Y, model.dense_alpha, "0.2", 0, 1, 0, KEEP),
    K_ENUM("kernel_init", Y, model.kernel_init, "fan_in", init_names, KEEP),
    K_BOOL("final_sigmoid", Y, model.final_sigmoid, "false", KEEP),
    K_REAL("width", Y, model.width, "1.0", 0, 64, EXCL_LO, KEEP),
    K_MAP("encoder", Y, model.encoder, cfg_net, encoder_keys, KEEP),
    K_MAP("decoder", Y, model.decoder, cfg_net, decoder_keys, KEEP),
    K_SECTION("conditioning", conditioning_keys, KEEP),
    K_END,
};

static const key_def weight_dist_keys[] = {
    K_ENUM("distribution", cfg_weight_dist, distribution, NULL, dist_names, KEEP),
    K_REAL("low", cfg_weight_dist, low, "0.0", NOLO, NOHI, 0, KEEP),
    K_REAL("high", cfg_weight_dist, high, "0.0", NOLO, NOHI, 0, KEEP),
    K_REAL("value", cfg_weight_dist, value, "0.0", NOLO, NOHI, 0, KEEP),
    K_END,
};

static const key_def loss_weights_keys[] = {
    K_ENUM("mode", Y, loss_weights.mode, "yoto", lw_mode_names, KEEP),
    K_BOOL("per_sample", Y, loss_weights.per_sample, "true", KEEP),
    K_MAP("kl", Y, loss_weights.kl, cfg_weight_dist, weight_dist_keys, KEEP),
    K_MAP("reconstruction", Y, loss_weights.reconstruction, cfg_weight_dist, weight_dist_keys,
          KEEP),
    K_ENUM("transform", Y, loss_weights.transform, "log", transform_names, KEEP),
    K_BOOL("normalize", Y, loss_weights.normalize, "false", KEEP),
    K_END,
};

static const key_def optimizer_keys[] = {
    K_REAL("lr", Y, optimizer.lr, NULL, 0, NOHI, EXCL_LO, KEEP),
    K_REAL("beta1", Y, optimizer.beta1, "0.9", 0, 1, EXCL_HI, KEEP),
    K_REAL("beta2", Y, optimizer.beta2, "0.999", 0, 1, EXCL_HI, KEEP),
    K_REAL("epsilon", Y, optimizer.epsilon, "1.0e-8", 0, NOHI, EXCL_LO, KEEP),
    K_REAL("decay_factor", Y, optimizer.decay_factor, "1.0", 0, 1, EXCL_LO, KEEP),
    K_INTS("decay_steps", Y, optimizer.decay_steps, "[]", 1, NOHI, 0, KEEP),
    K_REAL("weight_decay", Y, optimizer.weight_decay, "0.0", 0, NOHI, 0, KEEP),
    K_END,
};

static const key_def train_keys[] = {
    K_LONG("batch_size", Y, train.batch_size, "0", 0, 1e9, KEEP),
    K_LONG("batch_per_rank", Y, train.batch_per_rank, "0", 0, 1e9, KEEP),
    K_LONG("steps", Y, train.steps, NULL, 1, NOHI, VARY),
    K_LONG("checkpoint_every", Y, train.checkpoint_every, "10000", 0, NOHI, VARY),
    K_LONG("keep_checkpoints", Y, train.keep_checkpoints, "0", 0, 1e9, VARY),
    K_LONG("log_every", Y, train.log_every, "100", 1, NOHI, VARY),
    K_INT("threads", Y, train.threads, "1", 1, 1024, VARY),
    /* KEEP: another reduction (mode or buckets) may round differently */
    K_ENUM("allreduce", Y, train.allreduce, "bucketed", allreduce_names, KEEP),
    K_REAL("bucket_mb", Y, train.bucket_mb, "25.0", 0, 1e6, EXCL_LO, KEEP),
    /* VARY: how long a stuck step may take before the job is ended */
    K_REAL("step_timeout_s", Y, train.step_timeout_s, "0", 0, NOHI, 0, VARY),
    K_END,
};

static const key_def eval_keys[] = {
    K_LONG("batch_size", Y, eval.batch_size, "64", 1, 1e9, VARY),
    K_LONG("max_batches", Y, eval.max_batches, "0", 0, NOHI, VARY),
    K_LONG("every", Y, eval.every, "0", 0, NOHI, VARY),
    K_STRS("splits", Y, eval.splits, eval.n_splits, NULL, 1, VARY),
    K_REALS("betas", Y, eval.betas, NULL, 0, NOHI, EXCL_LO, 1, VARY),
    K_REAL("w_rec", Y, eval.w_rec, "1.0", 0, NOHI, EXCL_LO, VARY),
    K_ENUM("z", Y, eval.z, "sample", eval_z_names, VARY),
    K_ENUM("metrics", Y, eval.metrics, "auto", eval_metrics_names, VARY),
    K_END,
};

static const key_def root_keys[] = {
    K_SECTION("experiment", experiment_keys, KEEP),
    K_SECTION("data", data_keys, KEEP),
    K_SECTION("model", model_keys, KEEP),
    K_SECTION("loss_weights", loss_weights_keys, KEEP),
    K_SECTION("optimizer", optimizer_keys, KEEP),
    K_SECTION("train", train_keys, KEEP),
    K_SECTION("eval", eval_keys, VARY),
    K_END,
};

/* ---- small text helpers ---------------------------------------------------------- */

/* A growable string for config_to_yaml. */
typedef struct {
    char *s;
    size_t n, cap;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->n;
        int w = vsnprintf(b->s ? b->s + b->n : NULL, room, fmt, ap);
        va_end(ap);
        YT_CHECK(w >= 0);
        if ((size_t)w < room) {
            b->n += (size_t)w;
            return;
        }
        b->cap = YT_MAX(2 * b->cap, b->n + (size_t)w + 256);
        b->s = yt_realloc(b->s, b->cap);
    }
}

/* Shortest of %.15g..%.17g that reads back to exactly v. yaml_style makes it
 * a YAML 1.1 float too (PyYAML wants a '.' and a signed exponent): 512 ->
 * "512.0", 1e-05 -> "1.0e-5". */
static void fmt_real(double v, bool yaml_style, char *buf, size_t size) {
    char tmp[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) break;
    }
    /* exponent without leading zeros: e-05 -> e-5 */
    char *e = strchr(tmp, 'e');
    char mant[40], expo[16] = "";
    if (e) {
        snprintf(mant, sizeof mant, "%.*s", (int)(e - tmp), tmp);
        char sign = e[1];
        const char *d = e + 2;
        while (*d == '0' && d[1])
            d++;
        snprintf(expo, sizeof expo, "e%c%s", sign, d);
    } else {
        snprintf(mant, sizeof mant, "%s", tmp);
    }
    bool dot = strchr(mant, '.') != NULL;
    bool special = strchr(mant, 'n') != NULL || strchr(mant, 'i') != NULL; /* inf, nan */
    snprintf(buf, size, "%s%s%s", mant, (yaml_style && !dot && !special) ? ".0" : "", expo);
}

/* A number for messages: 16, 0.5, 1e-06. */
static const char *num(double v, char *buf, size_t size) {
    if (isinf(v))
        snprintf(buf, size, v > 0 ? "inf" : "-inf");
    else
        fmt_real(v, false, buf, size);
    return buf;
}

/* Optimal string alignment distance (Levenshtein plus transpositions), for
 * "did you mean". Names are short; longer input is cut at 63 characters. */
static int edit_distance(const char *a, const char *b) {
    int la = (int)YT_MIN(strlen(a), 63), lb = (int)YT_MIN(strlen(b), 63);
    int d[64][64];
    for (int i = 0; i <= la; i++)
        d[i][0] = i;
    for (int j = 0; j <= lb; j++)
        d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            int v = YT_MIN(d[i - 1][j] + 1, d[i][j - 1] + 1);
            v = YT_MIN(v, d[i - 1][j - 1] + cost);
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                v = YT_MIN(v, d[i - 2][j - 2] + 1);
            d[i][j] = v;
        }
    return d[la][lb];
}

/* The closest of names[0..n) to word if it is plausibly a misspelling of it
 * (a few edits, or one contains the other), else NULL. */
static const char *closest(const char *word, const char *const *names, int n) {
    const char *best = NULL;
    int best_d = INT_MAX;
    for (int i = 0; i < n; i++) {
        int d = edit_distance(word, names[i]);
        int limit = YT_MAX(2, (int)strlen(names[i]) / 3);
        bool contains = strlen(word) >= 3 && (strstr(names[i], word) || strstr(word, names[i]));
        if ((d <= limit || contains) && d < best_d) {
            best = names[i];
            best_d = d;
        }
    }
    return best;
}

/* ---- the loader: tree -> struct ------------------------------------------------ */

/* Node origins: SRC_FILE for the config text, SRC_SET0 + k for the k-th --set
 * value, SRC_DEFAULT for a default parsed from the table. */
enum { SRC_DEFAULT = -1, SRC_FILE = 0, SRC_SET0 = 1 };

typedef struct {
    yoto_config *cfg;
    const char *source;
    const char *const *sets;
    int nsets;
} loader;

/* "FILE:LINE:COLUMN", "--set TEXT" or "the default of KEY" for one origin. */
static void origin_text(const loader *ld, int src, int line, int col, char *buf, size_t size) {
    if (src >= SRC_SET0 && src - SRC_SET0 < ld->nsets)
        snprintf(buf, size, "--set %s", ld->sets[src - SRC_SET0]);
    else if (src == SRC_DEFAULT)
        snprintf(buf, size, "%s (built-in default)", ld->source);
    else
        snprintf(buf, size, "%s:%d:%d", ld->source, line, col);
}

static int fail_at(const loader *ld, const yn_node *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_at(const loader *ld, const yn_node *node, const char *fmt, ...) {
    char where[CFG_PATH_MAX + 64], msg[YT_ERRMSG_MAX];
    origin_text(ld, node->src, node->line, node->col, where, sizeof where);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return yt_fail(YT_ERR_USAGE, "%s: %s", where, msg);
}

static void record_loc(loader *ld, const char *path, const yn_node *node) {
    yoto_config *c = ld->cfg;
    if (node->src == SRC_DEFAULT || c->n_locs == CFG_LOCS_MAX) return;
    cfg_loc *l = &c->locs[c->n_locs++];
    snprintf(l->key, sizeof l->key, "%s", path);
    if (node->src >= SRC_SET0) {
        /* a --set value: line -(k+1) names the option, column 0 */
        l->line = -(node->src - SRC_SET0 + 1);
        l->column = 0;
    } else {
        l->line = node->line;
        l->column = node->col;
    }
}

static const cfg_loc *find_loc(const yoto_config *cfg, const char *key) {
    for (int i = cfg->n_locs - 1; i >= 0; i--)
        if (strcmp(cfg->locs[i].key, key) == 0) return &cfg->locs[i];
    return NULL;
}

/* What a key of this type expects, for messages: "an integer in [1, 16]". */
static const char *expected(const key_def *k, char *buf, size_t size) {
    const char *what = "a value";
    switch (k->type) {
    case T_INT:
    case T_LONG:
    case T_U64:
    case T_INTS:
    case T_INTARR:
        what = "an integer";
        break;
    case T_REAL:
    case T_REALS:
        what = "a real number";
        break;
    case T_BOOL:
        return "true or false";
    case T_STR:
    case T_STRS:
        return "a string";
    case T_PIPE:
        return "a preprocessing op string such as \"resize(40)\"";
    default:
        return "a value";
    }
    char a[32], b[32];
    bool has_lo = isfinite(k->lo), has_hi = isfinite(k->hi) && k->type != T_U64;
    if (has_lo && has_hi)
        snprintf(buf, size, "%s in %c%s, %s%c", what, k->excl & EXCL_LO ? '(' : '[',
                 num(k->lo, a, sizeof a), num(k->hi, b, sizeof b), k->excl & EXCL_HI ? ')' : ']');
    else if (has_lo)
        snprintf(buf, size, "%s %s %s", what,
                 k->excl & EXCL_LO ? ">" : ">=", num(k->lo, a, sizeof a));
    else if (has_hi)
        snprintf(buf, size, "%s %s %s", what,
                 k->excl & EXCL_HI ? "<" : "<=", num(k->hi, a, sizeof a));
    else
        snprintf(buf, size, "%s", what);
    return buf;
}

/* What a scalar node holds, for "found ...": 'abc', "quoted", a list. */
static const char *found(const yn_node *n, char *buf, size_t size) {
    if (n->kind != YN_SCALAR || yn_is_null(n)) return yn_kind_name(n);
    snprintf(buf, size, n->plain ? "'%.200s'" : "the quoted string \"%.200s\"", n->text);
    return buf;
}

static bool in_range(const key_def *k, double v) {
    if (v < k->lo || (k->excl & EXCL_LO && v == k->lo)) return false;
    if (v > k->hi || (k->excl & EXCL_HI && v == k->hi)) return false;
    return true;
}

/* Integers: optional sign, digits, single '_' between digits (700_000). */
static bool parse_integer(const char *s, bool *negative, unsigned long long *mag) {
    *negative = false;
    *mag = 0;
    if (*s == '+' || *s == '-') *negative = *s++ == '-';
    if (!isdigit((unsigned char)*s)) return false;
    for (; *s; s++) {
        if (*s == '_' && isdigit((unsigned char)s[1]) && isdigit((unsigned char)s[-1])) continue;
        if (!isdigit((unsigned char)*s)) return false;
        unsigned d = (unsigned)(*s - '0');
        if (*mag > (ULLONG_MAX - d) / 10) return false;
        *mag = *mag * 10 + d;
    }
    return true;
}

/* Reals: decimal or exponent form only (no hex, inf, nan), finite. */
static bool parse_real(const char *s, double *out) {
    if (!*s || strspn(s, "0123456789+-.eE") != strlen(s)) return false;
    if (!strpbrk(s, "0123456789")) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno == ERANGE || !isfinite(v)) return false;
    *out = v;
    return true;
}

/* One scalar into one number/bool/enum/string slot. elem_path names it.
 * Long: one case per scalar type, each with its own messages, side by side. */
static int fill_scalar(const loader *ld, const key_def *k, key_type t, void *dst,
                       const yn_node *node, const char *path) {
    char exp[160], fnd[256];
    if (node->kind != YN_SCALAR)
        return fail_at(ld, node, "%s: expected %s, found %s%s", path, expected(k, exp, sizeof exp),
                       yn_kind_name(node),
                       node->kind == YN_MAP && node->n == 2 && yn_is_null(node->kids[1])
                           ? " (a value containing ': ' or ending in ':' must be quoted)"
                           : "");
    const char *s = node->text;
    switch (t) {
    case T_INT:
    case T_LONG:
    case T_U64:
    case T_INTS:
    case T_INTARR: {
        bool neg;
        unsigned long long mag;
        if (!node->plain || !parse_integer(s, &neg, &mag)) {
            /* all digits but no integer: more than 64 bits */
            bool digits =
                node->plain && strspn(s, "+-_0123456789") == strlen(s) && strpbrk(s, "0123456789");
            return fail_at(ld, node, "%s: %sexpected %s, found %s", path,
                           digits ? "out of range: " : "", expected(k, exp, sizeof exp),
                           found(node, fnd, sizeof fnd));
        }
        double dv = neg ? -(double)mag : (double)mag;
        if (!in_range(k, dv) || (t != T_U64 && mag > (unsigned long long)LLONG_MAX))
            return fail_at(ld, node, "%s: out of range: expected %s, found %s", path,
                           expected(k, exp, sizeof exp), s);
        if (t == T_U64) {
            if (neg && mag) /* in_range already refused; keeps -0 out too */
                return fail_at(ld, node, "%s: expected %s, found %s", path,
                               expected(k, exp, sizeof exp), s);
            uint64_t v = (uint64_t)mag;
            memcpy(dst, &v, sizeof v);
        } else {
            long long v = neg ? -(long long)mag : (long long)mag;
            if (t == T_LONG || t == T_INTS) {
                long lv = (long)v;
                memcpy(dst, &lv, sizeof lv);
            } else {
                int iv = (int)v; /* every int key's range lies inside int */
                memcpy(dst, &iv, sizeof iv);
            }
        }
        return YT_OK;
    }
    case T_REAL:
    case T_REALS: {
        double v;
        if (!node->plain || !parse_real(s, &v))
            return fail_at(ld, node, "%s: expected %s, found %s", path,
                           expected(k, exp, sizeof exp), found(node, fnd, sizeof fnd));
        if (!in_range(k, v))
            return fail_at(ld, node, "%s: out of range: expected %s, found %s", path,
                           expected(k, exp, sizeof exp), s);
        memcpy(dst, &v, sizeof v);
        return YT_OK;
    }
    case T_BOOL: {
        bool v = !strcmp(s, "true");
        if (!node->plain || (!v && strcmp(s, "false")))
            return fail_at(ld, node, "%s: expected true or false, found %s%s", path,
                           found(node, fnd, sizeof fnd),
                           node->plain ? " (only true and false are booleans here; yes/no/on/off "
                                         "are ambiguous across YAML versions)"
                                       : "");
        memcpy(dst, &v, sizeof v);
        return YT_OK;
    }
    case T_ENUM: {
        int n = 0;
        for (; k->names[n]; n++)
            if (!strcmp(s, k->names[n])) {
                memcpy(dst, &n, sizeof n);
                return YT_OK;
            }
        char list[256] = "";
        for (int i = 0; i < n; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                     k->names[i]);
        const char *guess = closest(s, k->names, n);
        char hint[96] = "";
        if (guess) snprintf(hint, sizeof hint, "; did you mean '%s'?", guess);
        return fail_at(ld, node, "%s: bad value %s; expected one of: %s%s", path,
                       found(node, fnd, sizeof fnd), list, hint);
    }
    case T_STR:
    case T_STRS: {
        size_t len = strlen(s);
        if (len >= k->size)
            return fail_at(ld, node, "%s: too long: %zu characters, at most %zu", path, len,
                           k->size - 1);
        if ((double)len < k->lo)
            return fail_at(ld, node, "%s: expected a non-empty string, found %s", path,
                           len ? found(node, fnd, sizeof fnd) : "an empty one");
        memcpy(dst, s, len + 1);
        return YT_OK;
    }
    default:
        yt_die("fill_scalar: type %d", (int)t);
    }
}

/* ---- preprocessing ops ---------------------------------------------------------- */

typedef struct {
    const char *name;
    cfg_preop_kind kind;
    int nargs; /* 0, 1 (an integer size) or 2 (two reals) */
    const char *usage;
} preop_def;

static const preop_def preops[] = {
    {"value_range", PRE_VALUE_RANGE, 2, "value_range(a, b) with reals a < b"},
    {"resize", PRE_RESIZE, 1, "resize(n) with an integer n in [1, 65536]"},
    {"random_crop", PRE_RANDOM_CROP, 1, "random_crop(n) with an integer n in [1, 65536]"},
    {"flip_lr", PRE_FLIP_LR, 0, "flip_lr()"},
    {"pad", PRE_PAD, 1, "pad(n) with an integer n in [1, 65536]"},
};

/* Parses "name(arg, ...)" into *op (zeroed by the caller). On failure writes
 * the reason into why and returns false. Long: one left-to-right scan (name,
 * parentheses, arguments), each step with the message for its failure. */
static bool parse_preop(const char *text, cfg_preop *op, char *why, size_t size) {
    const char *p = text;
    while (isspace((unsigned char)*p))
        p++;
    const char *name = p;
    while (isalnum((unsigned char)*p) || *p == '_')
        p++;
    size_t nlen = (size_t)(p - name);
    const preop_def *def = NULL;
    for (size_t i = 0; i < YT_ARRAY_LEN(preops); i++)
        if (strlen(preops[i].name) == nlen && !strncmp(preops[i].name, name, nlen))
            def = &preops[i];
    if (!def) {
        char word[64];
        snprintf(word, sizeof word, "%.*s", (int)YT_MIN(nlen, 63), name);
        const char *names[YT_ARRAY_LEN(preops)];
        for (size_t i = 0; i < YT_ARRAY_LEN(preops); i++)
            names[i] = preops[i].name;
        const char *guess = closest(word, names, (int)YT_ARRAY_LEN(preops));
        char hint[80] = "";
        if (guess) snprintf(hint, sizeof hint, " (did you mean '%s'?)", guess);
        snprintf(why, size,
                 "unknown op '%s'%s; the ops are value_range(a, b), resize(n), "
                 "random_crop(n), flip_lr(), pad(n)",
                 word, hint);
        return false;
    }
    while (isspace((unsigned char)*p))
        p++;
    const char *close = strrchr(p, ')');
    bool tail_ok = close != NULL;
    for (const char *q = close ? close + 1 : p; tail_ok && *q; q++)
        tail_ok = isspace((unsigned char)*q);
    if (*p != '(' || !tail_ok) {
        snprintf(why, size, "expected %s", def->usage);
        return false;
    }
    /* the arguments between '(' and ')', split at commas */
    char args[128];
    size_t alen = (size_t)(close - p - 1);
    if (alen >= sizeof args) {
        snprintf(why, size, "arguments too long; expected %s", def->usage);
        return false;
    }
    memcpy(args, p + 1, alen);
    args[alen] = '\0';
    char *argv[3];
    int argc = 0;
    if (strspn(args, " \t") != alen) {
        /* split at commas; an empty piece ("1,,2") fails to parse below */
        for (char *s = args;;) {
            char *comma = strchr(s, ',');
            if (comma) *comma = '\0';
            while (isspace((unsigned char)*s))
                s++;
            char *e = s + strlen(s);
            while (e > s && isspace((unsigned char)e[-1]))
                *--e = '\0';
            if (argc < 3) argv[argc] = s;
            argc++;
            if (!comma) break;
            s = comma + 1;
        }
    }
    if (argc != def->nargs) {
        snprintf(why, size, "expected %s", def->usage);
        return false;
    }
    op->kind = def->kind;
    if (def->nargs == 1) {
        bool neg;
        unsigned long long v;
        if (!parse_integer(argv[0], &neg, &v) || neg || v < 1 || v > 65536) {
            snprintf(why, size, "expected %s, found '%s'", def->usage, argv[0]);
            return false;
        }
        op->n = (int)v;
    } else if (def->nargs == 2) {
        if (!parse_real(argv[0], &op->a) || !parse_real(argv[1], &op->b) || !(op->a < op->b)) {
            snprintf(why, size, "expected %s", def->usage);
            return false;
        }
    }
    return true;
}

int config_preop_parse(const char *text, cfg_preop *op) {
    char why[256];
    memset(op, 0, sizeof *op);
    if (!parse_preop(text, op, why, sizeof why))
        return yt_fail(YT_ERR_USAGE, "bad preprocessing op '%s': %s", text, why);
    return YT_OK;
}

void config_preop_text(const cfg_preop *op, char *buf, int size) {
    char a[40], b[40];
    const char *name = "?";
    for (size_t i = 0; i < YT_ARRAY_LEN(preops); i++)
        if (preops[i].kind == op->kind) name = preops[i].name;
    switch (op->kind) {
    case PRE_VALUE_RANGE:
        fmt_real(op->a, false, a, sizeof a);
        fmt_real(op->b, false, b, sizeof b);
        snprintf(buf, (size_t)size, "%s(%s, %s)", name, a, b);
        break;
    case PRE_FLIP_LR:
        snprintf(buf, (size_t)size, "%s()", name);
        break;
    default:
        snprintf(buf, (size_t)size, "%s(%d)", name, op->n);
        break;
    }
}

/* ---- filling the struct from the tree ---------------------------------------- */

static int fill_map(loader *ld, const key_def *table, char *base, const yn_node *map,
                    const char *path, const yn_node *at, bool absent);

static void join(char *out, size_t size, const char *path, const char *name) {
    snprintf(out, size, "%s%s%s", path, *path ? "." : "", name);
}

/* Checks a list node's kind and length. */
static int check_list(const loader *ld, const key_def *k, const yn_node *node, const char *path,
                      const char *what) {
    if (node->kind != YN_SEQ)
        return fail_at(ld, node, "%s: expected a list of %s (e.g. [1, 2]), found %s", path, what,
                       node->kind == YN_SCALAR && !yn_is_null(node) ? "a single value"
                                                                    : yn_kind_name(node));
    if (k->min_n == k->max_n && node->n != k->min_n)
        return fail_at(ld, node, "%s: expected a list of exactly %d %s, found %d", path, k->min_n,
                       what, node->n);
    if (node->n > k->max_n)
        return fail_at(ld, node, "%s: list too long: %d entries, at most %d", path, node->n,
                       k->max_n);
    if (node->n < k->min_n)
        return fail_at(ld, node, "%s: expected at least %d %s, found an empty list", path, k->min_n,
                       what);
    return YT_OK;
}

/* One key's value (node) into base + k->off. Long: one case per key type,
 * the same order as the key_type enum and emit_flow. */
static int fill_value(loader *ld, const key_def *k, char *base, const yn_node *node,
                      const char *path) {
    char *dst = base + k->off;
    char ep[256];
    int rc = YT_OK;
    switch (k->type) {
    case T_MAP:
        return fill_map(ld, k->child, dst, node, path, node, false);
    case T_INT:
    case T_LONG:
    case T_U64:
    case T_REAL:
    case T_BOOL:
    case T_STR:
    case T_ENUM:
        return fill_scalar(ld, k, k->type, dst, node, path);
    case T_INTS: {
        if ((rc = check_list(ld, k, node, path, "integers"))) return rc;
        cfg_ints *l = (cfg_ints *)dst;
        memset(l, 0, sizeof *l);
        for (int i = 0; i < node->n && !rc; i++) {
            snprintf(ep, sizeof ep, "%s[%d]", path, i);
            rc = fill_scalar(ld, k, T_INTS, &l->v[i], node->kids[i], ep);
        }
        l->n = node->n;
        return rc;
    }
    case T_INTARR: {
        if ((rc = check_list(ld, k, node, path, "integers"))) return rc;
        for (int i = 0; i < node->n && !rc; i++) {
            snprintf(ep, sizeof ep, "%s[%d]", path, i);
            rc = fill_scalar(ld, k, T_INTARR, dst + (size_t)i * sizeof(int), node->kids[i], ep);
        }
        return rc;
    }
    case T_REALS: {
        if ((rc = check_list(ld, k, node, path, "real numbers"))) return rc;
        cfg_reals *l = (cfg_reals *)dst;
        memset(l, 0, sizeof *l);
        for (int i = 0; i < node->n && !rc; i++) {
            snprintf(ep, sizeof ep, "%s[%d]", path, i);
            rc = fill_scalar(ld, k, T_REALS, &l->v[i], node->kids[i], ep);
        }
        l->n = node->n;
        return rc;
    }
    case T_STRS: {
        if ((rc = check_list(ld, k, node, path, "names"))) return rc;
        memset(dst, 0, k->size * (size_t)k->max_n);
        for (int i = 0; i < node->n && !rc; i++) {
            snprintf(ep, sizeof ep, "%s[%d]", path, i);
            rc = fill_scalar(ld, k, T_STRS, dst + (size_t)i * k->size, node->kids[i], ep);
        }
        memcpy(base + k->count_off, &node->n, sizeof(int));
        return rc;
    }
    case T_MAPLIST: {
        if ((rc = check_list(ld, k, node, path, "mappings"))) return rc;
        memset(dst, 0, k->size * (size_t)k->max_n);
        for (int i = 0; i < node->n && !rc; i++) {
            snprintf(ep, sizeof ep, "%s[%d]", path, i);
            rc = fill_map(ld, k->child, dst + (size_t)i * k->size, node->kids[i], ep, node->kids[i],
                          false);
            if (!rc) record_loc(ld, ep, node->kids[i]);
        }
        memcpy(base + k->count_off, &node->n, sizeof(int));
        return rc;
    }
    case T_PIPE: {
        if ((rc = check_list(ld, k, node, path, "op strings"))) return rc;
        cfg_pipeline *pl = (cfg_pipeline *)dst;
        memset(pl, 0, sizeof *pl);
        for (int i = 0; i < node->n; i++) {
            const yn_node *item = node->kids[i];
            char why[300];
            snprintf(ep, sizeof ep, "%s[%d]", path, i);
            if (item->kind != YN_SCALAR)
                return fail_at(ld, item,
                               "%s: expected an op string such as \"resize(40)\", found %s", ep,
                               yn_kind_name(item));
            if (!parse_preop(item->text, &pl->op[i], why, sizeof why))
                return fail_at(ld, item, "%s: bad preprocessing op '%s': %s", ep, item->text, why);
        }
        pl->n = node->n;
        return YT_OK;
    }
    }
    return YT_OK;
}

static int fill_default(loader *ld, const key_def *k, char *base, const char *path) {
    yn_node *node;
    yn_error err;
    int rc = yn_parse(k->dflt, strlen(k->dflt), SRC_DEFAULT, &node, &err);
    YT_CHECK(rc == 0 && node); /* the table's defaults are ours: a failure is a bug */
    rc = fill_value(ld, k, base, node, path);
    yn_free(node);
    return rc;
}

/* Every key of table from the mapping node into base. Unknown and duplicate
 * keys are refused before any value is read. A missing required key is
 * reported at `at` (the mapping's key, "model:"); absent: the whole mapping
 * is missing and map is an empty stand-in. */
static int fill_map(loader *ld, const key_def *table, char *base, const yn_node *map,
                    const char *path, const yn_node *at, bool absent) {
    char kp[256];
    if (map->kind != YN_MAP) {
        char keys[400] = "";
        for (const key_def *k = table; k->name; k++)
            snprintf(keys + strlen(keys), sizeof keys - strlen(keys), "%s%s",
                     k == table ? "" : ", ", k->name);
        return fail_at(ld, map, "%s: expected a mapping (with keys %s), found %s",
                       *path ? path : "config", keys, yn_kind_name(map));
    }
    int nkeys = 0;
    const char *names[64];
    for (const key_def *k = table; k->name; k++)
        names[nkeys++] = k->name;
    for (int i = 0; i < map->n; i += 2) {
        const yn_node *key = map->kids[i];
        join(kp, sizeof kp, path, key->text);
        bool known = false;
        for (int j = 0; j < nkeys; j++)
            known |= !strcmp(names[j], key->text);
        if (!known) {
            const char *guess = closest(key->text, names, nkeys);
            char hint[600];
            if (guess) {
                char gp[256];
                join(gp, sizeof gp, path, guess);
                snprintf(hint, sizeof hint, "did you mean '%s'?", gp);
            } else {
                snprintf(hint, sizeof hint,
                         "valid keys %s%s%s: ", *path ? "in '" : "at the top level", path,
                         *path ? "'" : "");
                for (int j = 0; j < nkeys; j++)
                    snprintf(hint + strlen(hint), sizeof hint - strlen(hint), "%s%s", j ? ", " : "",
                             names[j]);
            }
            return fail_at(ld, key, "unknown key '%s'; %s", kp, hint);
        }
        for (int j = 0; j < i; j += 2)
            if (!strcmp(map->kids[j]->text, key->text)) {
                char first[CFG_PATH_MAX + 64];
                origin_text(ld, map->kids[j]->src, map->kids[j]->line, map->kids[j]->col, first,
                            sizeof first);
                return fail_at(ld, key, "duplicate key '%s' (first set at %s)", kp, first);
            }
    }
    for (const key_def *k = table; k->name; k++) {
        join(kp, sizeof kp, path, k->name);
        int found_at = yn_map_find(map, k->name);
        int rc;
        if (found_at >= 0 && k->type == T_MAP) {
            const yn_node *key = map->kids[2 * found_at], *value = map->kids[2 * found_at + 1];
            /* a mapping grafted by --set under a file key answers for itself */
            const yn_node *here = value->src != key->src ? value : key;
            rc = fill_map(ld, k->child, base + k->off, value, kp, here, false);
            if (rc) return rc;
            record_loc(ld, kp, key); /* a section is located at its key, "model:" */
        } else if (found_at >= 0) {
            const yn_node *value = map->kids[2 * found_at + 1];
            if ((rc = fill_value(ld, k, base, value, kp))) return rc;
            record_loc(ld, kp, value);
        } else if (k->type == T_MAP) {
            /* an absent section: its defaults, and its required keys reported
             * against the enclosing mapping */
            yn_node *empty = yn_new(YN_MAP, map->src, map->line, map->col);
            rc = fill_map(ld, k->child, base + k->off, empty, kp, at, true);
            yn_free(empty);
            if (rc) return rc;
        } else if (k->dflt) {
            if ((rc = fill_default(ld, k, base, kp))) return rc;
        } else if (absent) {
            return fail_at(ld, at, "missing required key '%s' (there is no '%s' section)", kp,
                           path);
        } else {
            return fail_at(ld, at, "missing required key '%s'%s%s%s", kp, *path ? " (in '" : "",
                           path, *path ? "')" : "");
        }
    }
    return YT_OK;
}

/* ---- --set overrides ----------------------------------------------------------- */

/* Grafts "a.b[2].c=value" into the tree: the value (parsed as YAML) replaces
 * or adds the key; missing intermediate mappings are created. Names are not
 * checked here: the schema walk that follows reports unknown keys (with the
 * --set as their origin) exactly as it does for the file. Long: one walk down
 * the key path, whose steps share the node, the prefix and the message. */
static int graft(loader *ld, yn_node *root, int k) {
    const char *text = ld->sets[k];
    int src = SRC_SET0 + k;
    yn_node here = {.kind = YN_SCALAR, .src = src}; /* an origin for messages */
    const char *eq = strchr(text, '=');
    if (!eq || eq == text)
        return fail_at(ld, &here, "expected KEY=VALUE, e.g. --set train.steps=1000");
    char key[256];
    if ((size_t)(eq - text) >= sizeof key) return fail_at(ld, &here, "key too long");
    memcpy(key, text, (size_t)(eq - text));
    key[eq - text] = '\0';

    yn_node *value;
    yn_error err;
    if (yn_parse(eq + 1, strlen(eq + 1), src, &value, &err))
        return fail_at(ld, &here, "value at column %d: %s", err.col + (int)(eq + 1 - text),
                       err.msg);
    if (!value) value = yn_new_scalar("", true, src, 1, 1); /* "key=" is an empty value */

    yn_node *cur = root;
    char prefix[256] = "";
    char *save = NULL;
    char *parts[32];
    int nparts = 0;
    for (char *t = strtok_r(key, ".", &save); t && nparts < 32; t = strtok_r(NULL, ".", &save))
        parts[nparts++] = t;
    int rc = YT_OK;
    for (int i = 0; i < nparts && !rc; i++) {
        bool last = i == nparts - 1;
        char *name = parts[i];
        long idx = -1;
        char *br = strchr(name, '[');
        if (br) {
            char *end;
            idx = strtol(br + 1, &end, 10);
            if (end == br + 1 || *end != ']' || end[1] || idx < 0) {
                rc = fail_at(ld, &here, "bad key '%.*s': expected NAME or NAME[INDEX]",
                             (int)(eq - text), text);
                break;
            }
            *br = '\0';
        }
        size_t nl = strlen(name);
        if (!nl ||
            strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != nl) {
            rc = fail_at(ld, &here, "bad key '%.*s': expected section.key, e.g. model.latent_dim",
                         (int)(eq - text), text);
            break;
        }
        char sub[256];
        join(sub, sizeof sub, prefix, name);
        if (cur->kind != YN_MAP) {
            rc = fail_at(ld, &here, "'%s' is not a mapping, so it has no key '%s'",
                         *prefix ? prefix : "the config", name);
            break;
        }
        int at = yn_map_find(cur, name);
        if (last && idx < 0) {
            if (at >= 0) {
                yn_free(cur->kids[2 * at + 1]);
                cur->kids[2 * at + 1] = value;
            } else {
                yn_map_add(cur, yn_new_scalar(name, true, src, 1, 1), value);
            }
            value = NULL;
            break;
        }
        if (at < 0) {
            if (idx >= 0) {
                rc = fail_at(ld, &here, "'%s' is not set, so it has no entry [%ld]", sub, idx);
                break;
            }
            yn_node *m = yn_new(YN_MAP, src, 1, 1);
            yn_map_add(cur, yn_new_scalar(name, true, src, 1, 1), m);
            at = yn_map_find(cur, name);
        }
        yn_node **slot = &cur->kids[2 * at + 1];
        if (idx >= 0) {
            if ((*slot)->kind != YN_SEQ || idx >= (*slot)->n) {
                rc = fail_at(ld, &here, "'%s' has no entry [%ld] (%s)", sub, idx,
                             (*slot)->kind == YN_SEQ ? "the list is shorter" : "it is not a list");
                break;
            }
            slot = &(*slot)->kids[idx];
            snprintf(sub + strlen(sub), sizeof sub - strlen(sub), "[%ld]", idx);
            if (last) {
                yn_free(*slot);
                *slot = value;
                value = NULL;
                break;
            }
        }
        cur = *slot;
        snprintf(prefix, sizeof prefix, "%s", sub);
    }
    yn_free(value);
    return rc;
}

/* ---- cross-key rules ------------------------------------------------------------ */

/* Where key was set, for messages: "FILE:L:C", "--set TEXT" or "default".
 * Rotating buffers so one message can name several keys. */
static const char *where(const loader *ld, const char *key) {
    static char bufs[8][CFG_PATH_MAX + 64];
    static int next;
    char *b = bufs[next++ % 8];
    const cfg_loc *l = find_loc(ld->cfg, key);
    if (!l)
        snprintf(b, sizeof bufs[0], "default");
    else if (l->line < 0)
        origin_text(ld, SRC_SET0 - l->line - 1, 0, 0, b, sizeof bufs[0]);
    else
        snprintf(b, sizeof bufs[0], "%s:%d:%d", ld->source, l->line, l->column);
    return b;
}

/* A cross-key error, prefixed with the place of the first of keys that was
 * set (a key's enclosing sections count), else with the source alone. */
static int xfail(const loader *ld, const char *key, const char *key2, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int xfail(const loader *ld, const char *key, const char *key2, const char *fmt, ...) {
    char msg[YT_ERRMSG_MAX], pfx[CFG_PATH_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(pfx, sizeof pfx, "%s", ld->source);
    const char *keys[2] = {key, key2};
    bool done = false;
    /* a key changed by --set is the likelier culprit: name that option first */
    for (int i = 0; i < 2 && !done; i++) {
        const cfg_loc *l = keys[i] ? find_loc(ld->cfg, keys[i]) : NULL;
        if (l && l->line < 0) {
            snprintf(pfx, sizeof pfx, "%s", where(ld, keys[i]));
            done = true;
        }
    }
    for (int pass = 0; pass < 2 && !done; pass++) /* pass 0: the keys; 1: their sections */
        for (int i = 0; i < 2 && !done; i++) {
            if (!keys[i]) continue;
            char k[128];
            snprintf(k, sizeof k, "%s", keys[i]);
            while (!done) {
                if (find_loc(ld->cfg, k)) {
                    snprintf(pfx, sizeof pfx, "%s", where(ld, k));
                    done = true;
                }
                char *dot = strrchr(k, '.');
                if (pass == 0 || !dot) break;
                *dot = '\0';
            }
        }
    return yt_fail(YT_ERR_USAGE, "%s: %s", pfx, msg);
}

static bool has_split(const yoto_config *c, const char *name) {
    return config_split(c, name) != NULL;
}

/* One weight distribution: its bounds make sense for its kind. */
static int check_dist(const loader *ld, const cfg_weight_dist *d, const char *name) {
    char kd[96], kl[96], kh[96], kv[96], a[32], b[32];
    snprintf(kd, sizeof kd, "loss_weights.%s.distribution", name);
    snprintf(kl, sizeof kl, "loss_weights.%s.low", name);
    snprintf(kh, sizeof kh, "loss_weights.%s.high", name);
    snprintf(kv, sizeof kv, "loss_weights.%s.value", name);
    bool log_t = ld->cfg->loss_weights.transform == TRANSFORM_LOG;
    switch (d->distribution) {
    case DIST_LOG_UNIFORM:
        if (!(d->low > 0 && d->low <= d->high))
            return xfail(
                ld, kl, kh,
                "%s: log_uniform needs 0 < low <= high; found %s = %s (%s) and %s = %s (%s)", kd,
                kl, num(d->low, a, sizeof a), where(ld, kl), kh, num(d->high, b, sizeof b),
                where(ld, kh));
        break;
    case DIST_UNIFORM:
        if (!(d->low <= d->high) || (log_t && !(d->low > 0)))
            return xfail(ld, kl, kh,
                         "%s: uniform needs %slow <= high; found %s = %s (%s) and %s = %s (%s)%s",
                         kd, log_t ? "0 < " : "", kl, num(d->low, a, sizeof a), where(ld, kl), kh,
                         num(d->high, b, sizeof b), where(ld, kh),
                         log_t ? " (loss_weights.transform is log, so weights must be > 0)" : "");
        break;
    case DIST_FIXED:
        if (log_t ? !(d->value > 0) : !(d->value >= 0))
            return xfail(ld, kv, kd, "%s: a fixed weight must be %s; found %s = %s (%s)%s", kd,
                         log_t ? "> 0" : ">= 0", kv, num(d->value, a, sizeof a), where(ld, kv),
                         log_t ? " (loss_weights.transform is log)" : "");
        break;
    }
    return YT_OK;
}

/* One preprocessing pipeline against the model's input: the last op that sets
 * the image size must give input_shape's h and w. */
static int check_pipeline(const loader *ld, const cfg_pipeline *pl, const char *key) {
    const yoto_config *c = ld->cfg;
    int size = 0;
    char a[32], b[32];
    for (int i = 0; i < pl->n; i++) {
        const cfg_preop *op = &pl->op[i];
        if (op->kind == PRE_RANDOM_CROP && size && op->n > size)
            return xfail(ld, key, NULL,
                         "%s[%d]: random_crop(%d) is larger than the %d x %d image "
                         "the ops before it make",
                         key, i, op->n, size, size);
        if (op->kind == PRE_RESIZE || op->kind == PRE_RANDOM_CROP || op->kind == PRE_PAD)
            size = op->n;
        if (op->kind == PRE_VALUE_RANGE && c->model.output_distribution == OUT_BERNOULLI &&
            (op->a < 0 || op->b > 1))
            return xfail(ld, key, "model.output_distribution",
                         "%s[%d]: value_range(%s, %s) leaves [0, 1], but "
                         "model.output_distribution = bernoulli (%s) needs targets in [0, 1]",
                         key, i, num(op->a, a, sizeof a), num(op->b, b, sizeof b),
                         where(ld, "model.output_distribution"));
    }
    const int *in = c->model.input_shape;
    if (size && (in[0] != size || in[1] != size))
        return xfail(ld, key, "model.input_shape",
                     "%s makes %d x %d images, but model.input_shape = [%d, %d, %d] (%s)", key,
                     size, size, in[0], in[1], in[2], where(ld, "model.input_shape"));
    return YT_OK;
}

/* experiment.out_dir left empty becomes runs/<experiment.name>. */
static int check_experiment(const loader *ld) {
    yoto_config *c = ld->cfg;
    if (c->experiment.out_dir[0]) return YT_OK;
    int w = snprintf(c->experiment.out_dir, sizeof c->experiment.out_dir, "runs/%s",
                     c->experiment.name);
    if (w >= (int)sizeof c->experiment.out_dir)
        return xfail(ld, "experiment.name", NULL, "experiment.out_dir: runs/<name> is too long");
    return YT_OK;
}

/* data.splits[i]: a name used once that can name a dataset, a file, a range
 * that parses. */
static int check_split(const loader *ld, int i) {
    const yoto_config *c = ld->cfg;
    const cfg_split *s = &c->data.splits[i];
    char kn[64], kr[64], kf[64];
    snprintf(kn, sizeof kn, "data.splits[%d].name", i);
    snprintf(kr, sizeof kr, "data.splits[%d].range", i);
    snprintf(kf, sizeof kf, "data.splits[%d]", i);
    for (int j = 0; j < i; j++)
        if (!strcmp(c->data.splits[j].name, s->name)) {
            char kj[64];
            snprintf(kj, sizeof kj, "data.splits[%d].name", j);
            return xfail(ld, kn, NULL, "%s: split name '%s' is used twice (also %s at %s)", kn,
                         s->name, kj, where(ld, kj));
        }
    /* the name becomes an HDF5 dataset name in eval tables */
    if (strchr(s->name, '/') || !strcmp(s->name, "."))
        return xfail(ld, kn, NULL,
                     "%s: split name '%s' cannot contain '/' or be '.' (it names a dataset "
                     "in the eval tables)",
                     kn, s->name);
    if (!s->file[0] && !c->data.file[0])
        return xfail(ld, kf, NULL, "%s: split '%s' names no file: set its 'file' or data.file", kf,
                     s->name);
    long b, e;
    if (config_range_resolve(s->range, 0, &b, &e) != YT_OK) {
        char why[YT_ERRMSG_MAX];
        snprintf(why, sizeof why, "%s", yt_errmsg());
        return xfail(ld, kr, kf, "%s: %s", kr, why);
    }
    return YT_OK;
}

/* data: every split, and the train split among them. */
static int check_data(const loader *ld) {
    const yoto_config *c = ld->cfg;
    for (int i = 0; i < c->data.n_splits; i++) {
        int rc = check_split(ld, i);
        if (rc) return rc;
    }
    if (!has_split(c, c->data.train_split))
        return xfail(ld, "data.train_split", "data.splits",
                     "data.train_split: '%s' is not one of the splits in data.splits (%s)",
                     c->data.train_split, where(ld, "data.splits"));
    return YT_OK;
}

/* eval.splits: splits of data.splits, each once. */
static int check_eval(const loader *ld) {
    const yoto_config *c = ld->cfg;
    for (int i = 0; i < c->eval.n_splits; i++) {
        char k[64];
        snprintf(k, sizeof k, "eval.splits[%d]", i);
        if (!has_split(c, c->eval.splits[i]))
            return xfail(ld, "eval.splits", "data.splits",
                         "%s: '%s' is not one of the splits in data.splits (%s)", k,
                         c->eval.splits[i], where(ld, "data.splits"));
        for (int j = 0; j < i; j++)
            if (!strcmp(c->eval.splits[j], c->eval.splits[i]))
                return xfail(ld, "eval.splits", NULL,
                             "%s: split '%s' is listed twice (also eval.splits[%d])", k,
                             c->eval.splits[i], j);
    }
    return YT_OK;
}

/* model, the encoder's shapes: the input halves once per block; the last fc
 * layer gives a mean and a sigma per latent. */
static int check_model_encoder(const loader *ld) {
    const yoto_config *c = ld->cfg;
    const cfg_net *enc = &c->model.encoder;
    const int *in = c->model.input_shape;
    const char *kenc = "model.encoder.num_blocks";
    for (int d = 0; d < 2; d++)
        if (in[d] % (1 << enc->num_blocks))
            return xfail(ld, "model.input_shape", kenc,
                         "model.input_shape: %s %d is not divisible by 2^%s = %d (%s = %d at %s): "
                         "each encoder block halves it",
                         d ? "width" : "height", in[d], kenc, 1 << enc->num_blocks, kenc,
                         enc->num_blocks, where(ld, kenc));
    if (enc->fc_sizes.v[enc->fc_sizes.n - 1] != 2L * c->model.latent_dim)
        return xfail(ld, "model.encoder.fc_sizes", "model.latent_dim",
                     "model.encoder.fc_sizes: the last size must be 2 * model.latent_dim = %d (a "
                     "mean and a sigma per latent; model.latent_dim at %s), found %ld",
                     2 * c->model.latent_dim, where(ld, "model.latent_dim"),
                     enc->fc_sizes.v[enc->fc_sizes.n - 1]);
    return YT_OK;
}

/* model, the decoder's shapes: the last fc layer fills the reshape, which
 * doubles once per block up to the input size. */
static int check_model_decoder(const loader *ld) {
    const yoto_config *c = ld->cfg;
    const cfg_net *dec = &c->model.decoder;
    const int *in = c->model.input_shape;
    long cells = (long)dec->reshape[0] * dec->reshape[1] * dec->reshape[2];
    if (dec->fc_sizes.v[dec->fc_sizes.n - 1] != cells)
        return xfail(ld, "model.decoder.fc_sizes", "model.decoder.reshape",
                     "model.decoder.fc_sizes: the last size must be h*w*c of model.decoder.reshape "
                     "[%d, %d, %d] = %ld (%s), found %ld",
                     dec->reshape[0], dec->reshape[1], dec->reshape[2], cells,
                     where(ld, "model.decoder.reshape"), dec->fc_sizes.v[dec->fc_sizes.n - 1]);
    for (int d = 0; d < 2; d++) {
        long up = (long)dec->reshape[d] << dec->num_blocks;
        if (up != in[d])
            return xfail(ld, "model.decoder.reshape", "model.input_shape",
                         "model.decoder.reshape: %s %d * 2^model.decoder.num_blocks (%d) = %ld "
                         "must equal the input %s %d of model.input_shape (%s)",
                         d ? "width" : "height", dec->reshape[d], dec->num_blocks, up,
                         d ? "width" : "height", in[d], where(ld, "model.input_shape"));
    }
    return YT_OK;
}

/* model, the output: channels for the likelihood, no final sigmoid. */
static int check_model_output(const loader *ld) {
    const yoto_config *c = ld->cfg;
    const int *in = c->model.input_shape;
    bool gauss = c->model.output_distribution == OUT_GAUSSIAN;
    int want = gauss ? 2 * in[2] : in[2];
    if (c->model.decoder.channels_out != want)
        return xfail(ld, "model.decoder.channels_out", "model.output_distribution",
                     "model.decoder.channels_out: must be %d for model.output_distribution = %s "
                     "(%s) and %d input channels (model.input_shape at %s)%s, found %d",
                     want, output_names[c->model.output_distribution],
                     where(ld, "model.output_distribution"), in[2], where(ld, "model.input_shape"),
                     gauss ? ": a mean and a sigma per channel" : ": one logit per channel",
                     c->model.decoder.channels_out);
    if (c->model.final_sigmoid)
        return xfail(ld, "model.final_sigmoid", NULL,
                     "model.final_sigmoid: must be false: the reference configs use false and a "
                     "final sigmoid is not supported (the Bernoulli loss takes logits)");
    return YT_OK;
}

/* loss_weights: the mode against the distributions and the conditioning,
 * then each distribution's bounds. */
static int check_loss_weights(const loader *ld) {
    const yoto_config *c = ld->cfg;
    const char *km = "loss_weights.mode";
    if (c->loss_weights.mode == LW_FIXED &&
        (c->loss_weights.kl.distribution != DIST_FIXED ||
         c->loss_weights.reconstruction.distribution != DIST_FIXED))
        return xfail(ld, km, "loss_weights.kl.distribution",
                     "%s: fixed needs both weight distributions fixed; found "
                     "loss_weights.kl.distribution = %s (%s) and "
                     "loss_weights.reconstruction.distribution = %s (%s)",
                     km, dist_names[c->loss_weights.kl.distribution],
                     where(ld, "loss_weights.kl.distribution"),
                     dist_names[c->loss_weights.reconstruction.distribution],
                     where(ld, "loss_weights.reconstruction.distribution"));
    if (c->loss_weights.mode == LW_YOTO && c->model.conditioning.type == COND_NONE)
        return xfail(ld, km, "model.conditioning.type",
                     "%s: yoto feeds the loss weights to the network, so it needs "
                     "model.conditioning.type = film or gated; found %s (%s)",
                     km, cond_names[c->model.conditioning.type],
                     where(ld, "model.conditioning.type"));
    int rc = check_dist(ld, &c->loss_weights.kl, "kl");
    if (rc) return rc;
    return check_dist(ld, &c->loss_weights.reconstruction, "reconstruction");
}

/* optimizer.decay_steps: strictly increasing. */
static int check_optimizer(const loader *ld) {
    const cfg_ints *ds = &ld->cfg->optimizer.decay_steps;
    for (int i = 1; i < ds->n; i++)
        if (ds->v[i] <= ds->v[i - 1])
            return xfail(ld, "optimizer.decay_steps", NULL,
                         "optimizer.decay_steps: must be strictly increasing; entry [%d] = %ld "
                         "follows %ld",
                         i, ds->v[i], ds->v[i - 1]);
    return YT_OK;
}

/* train: exactly one of the two batch keys. */
static int check_train(const loader *ld) {
    const cfg_train *t = &ld->cfg->train;
    bool gb = t->batch_size > 0, pb = t->batch_per_rank > 0;
    if (gb == pb)
        return xfail(ld, "train.batch_size", "train.batch_per_rank",
                     "train.batch_size and train.batch_per_rank: set exactly one of them (> 0); "
                     "found train.batch_size = %ld (%s) and train.batch_per_rank = %ld (%s)",
                     t->batch_size, where(ld, "train.batch_size"), t->batch_per_rank,
                     where(ld, "train.batch_per_rank"));
    return YT_OK;
}

/* data x model: each preprocessing pipeline makes the model's input. */
static int check_preprocessing(const loader *ld) {
    const cfg_data *d = &ld->cfg->data;
    int rc = check_pipeline(ld, &d->preprocess_train, "data.preprocess_train");
    if (rc) return rc;
    return check_pipeline(ld, &d->preprocess_eval, "data.preprocess_eval");
}

/* The cross-key rules, section by section, in this order: a config that
 * breaks several gets the message of the first. */
typedef int (*config_check)(const loader *ld);
static const config_check checks[] = {
    check_experiment,    /* experiment.out_dir */
    check_data,          /* data.splits, data.train_split */
    check_eval,          /* eval.splits (names in data.splits) */
    check_model_encoder, /* model.input_shape, model.encoder, model.latent_dim */
    check_model_decoder, /* model.decoder, model.input_shape */
    check_model_output,  /* model.decoder.channels_out, model.final_sigmoid */
    check_loss_weights,  /* loss_weights (and model.conditioning.type) */
    check_optimizer,     /* optimizer.decay_steps */
    check_train,         /* train.batch_size, train.batch_per_rank */
    check_preprocessing, /* data.preprocess_* against model */
};

static int validate(const loader *ld) {
    for (size_t i = 0; i < YT_ARRAY_LEN(checks); i++) {
        int rc = checks[i](ld);
        if (rc) return rc;
    }
    return YT_OK;
}

/* ---- loading --------------------------------------------------------------------- */

int config_load_text(yoto_config *cfg, const char *text, const char *source,
                     const char *const *sets, int nsets) {
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->source, sizeof cfg->source, "%s", source);
    loader ld = {.cfg = cfg, .source = cfg->source, .sets = sets, .nsets = nsets};
    yn_node *root;
    yn_error err;
    if (yn_parse(text, strlen(text), SRC_FILE, &root, &err))
        return yt_fail(YT_ERR_USAGE, "%s:%d:%d: %s", cfg->source, err.line, err.col, err.msg);
    if (!root || yn_is_null(root)) {
        yn_free(root);
        return yt_fail(YT_ERR_USAGE,
                       "%s:1:1: empty config: expected a mapping with the sections experiment, "
                       "data, model, loss_weights, optimizer, train, eval",
                       cfg->source);
    }
    /* a root that is not a mapping fails here, before --set needs a mapping */
    int rc =
        root->kind == YN_MAP ? YT_OK : fill_map(&ld, root_keys, (char *)cfg, root, "", root, false);
    for (int k = 0; k < nsets && !rc; k++)
        rc = graft(&ld, root, k);
    if (!rc) rc = fill_map(&ld, root_keys, (char *)cfg, root, "", root, false);
    yn_free(root);
    if (!rc) rc = validate(&ld);
    return rc;
}

int config_load(yoto_config *cfg, const char *path, const char *const *sets, int nsets) {
    memset(cfg, 0, sizeof *cfg);
    FILE *f = fopen(path, "rb");
    if (!f) return yt_fail(YT_ERR_USAGE, "%s: cannot open config: %s", path, strerror(errno));
    /* read to EOF in chunks: /dev/stdin and pipes cannot be sized */
    size_t n = 0, cap = 1 << 14;
    char *text = yt_malloc(cap);
    const size_t limit = (size_t)16 << 20;
    for (;;) {
        if (n + 1 == cap) {
            cap *= 2;
            text = yt_realloc(text, cap);
        }
        size_t got = fread(text + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0 || n > limit) break;
    }
    bool bad = ferror(f);
    fclose(f);
    int rc;
    if (bad)
        rc = yt_fail(YT_ERR_USAGE, "%s: cannot read config: %s", path, strerror(errno));
    else if (n > limit)
        rc = yt_fail(YT_ERR_USAGE, "%s: not a config: larger than 16 MiB", path);
    else if (memchr(text, '\0', n))
        rc = yt_fail(YT_ERR_USAGE, "%s: not a config: it holds a NUL byte (binary file?)", path);
    else {
        text[n] = '\0';
        rc = config_load_text(cfg, text, path, sets, nsets);
    }
    free(text);
    return rc;
}

/* ---- writing ---------------------------------------------------------------------- */

/* A string as a YAML scalar: plain when it is one unambiguous word, else
 * double-quoted with escapes. */
static void emit_string(strbuf *b, const char *s) {
    static const char *const words[] = {"true", "false", "yes", "no",   "on",
                                        "off",  "y",     "n",   "null", "~"};
    bool plain = *s && (isalpha((unsigned char)*s) || *s == '_' || *s == '/' || *s == '.');
    for (const char *p = s; plain && *p; p++)
        plain = isalnum((unsigned char)*p) || strchr("_./-", *p);
    for (size_t i = 0; plain && i < YT_ARRAY_LEN(words); i++)
        plain = strcasecmp(s, words[i]) != 0;
    if (plain) {
        sb_printf(b, "%s", s);
        return;
    }
    sb_printf(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            sb_printf(b, "\\%c", *p);
        else if (*p == '\n')
            sb_printf(b, "\\n");
        else if (*p == '\t')
            sb_printf(b, "\\t");
        else if (*p < 0x20 || *p == 0x7f)
            sb_printf(b, "\\x%02x", *p);
        else
            sb_printf(b, "%c", *p);
    }
    sb_printf(b, "\"");
}

static void emit_flow_map(strbuf *b, const key_def *table, const char *base);

/* One value in flow style (a scalar, [a, b], {k: v}). Long: one case per
 * key type, as fill_value. */
static void emit_flow(strbuf *b, const key_def *k, const char *base) {
    const char *p = base + k->off;
    char t[64];
    switch (k->type) {
    case T_MAP:
        emit_flow_map(b, k->child, p);
        break;
    case T_INT: {
        int v;
        memcpy(&v, p, sizeof v);
        sb_printf(b, "%d", v);
        break;
    }
    case T_LONG: {
        long v;
        memcpy(&v, p, sizeof v);
        sb_printf(b, "%ld", v);
        break;
    }
    case T_U64: {
        uint64_t v;
        memcpy(&v, p, sizeof v);
        sb_printf(b, "%" PRIu64, v);
        break;
    }
    case T_REAL: {
        double v;
        memcpy(&v, p, sizeof v);
        fmt_real(v, true, t, sizeof t);
        sb_printf(b, "%s", t);
        break;
    }
    case T_BOOL: {
        bool v;
        memcpy(&v, p, sizeof v);
        sb_printf(b, "%s", v ? "true" : "false");
        break;
    }
    case T_STR:
        emit_string(b, p);
        break;
    case T_ENUM: {
        int v;
        memcpy(&v, p, sizeof v);
        sb_printf(b, "%s", k->names[v]);
        break;
    }
    case T_INTS: {
        const cfg_ints *l = (const cfg_ints *)p;
        sb_printf(b, "[");
        for (int i = 0; i < l->n; i++)
            sb_printf(b, "%s%ld", i ? ", " : "", l->v[i]);
        sb_printf(b, "]");
        break;
    }
    case T_INTARR: {
        sb_printf(b, "[");
        for (size_t i = 0; i < k->size; i++) {
            int v;
            memcpy(&v, p + i * sizeof(int), sizeof v);
            sb_printf(b, "%s%d", i ? ", " : "", v);
        }
        sb_printf(b, "]");
        break;
    }
    case T_REALS: {
        const cfg_reals *l = (const cfg_reals *)p;
        sb_printf(b, "[");
        for (int i = 0; i < l->n; i++) {
            fmt_real(l->v[i], true, t, sizeof t);
            sb_printf(b, "%s%s", i ? ", " : "", t);
        }
        sb_printf(b, "]");
        break;
    }
    case T_STRS:
    case T_MAPLIST: {
        int n;
        memcpy(&n, base + k->count_off, sizeof n);
        sb_printf(b, "[");
        for (int i = 0; i < n; i++) {
            sb_printf(b, "%s", i ? ", " : "");
            if (k->type == T_STRS)
                emit_string(b, p + (size_t)i * k->size);
            else
                emit_flow_map(b, k->child, p + (size_t)i * k->size);
        }
        sb_printf(b, "]");
        break;
    }
    case T_PIPE: {
        const cfg_pipeline *pl = (const cfg_pipeline *)p;
        sb_printf(b, "[");
        for (int i = 0; i < pl->n; i++) {
            char op[128];
            config_preop_text(&pl->op[i], op, sizeof op);
            sb_printf(b, "%s", i ? ", " : "");
            emit_string(b, op);
        }
        sb_printf(b, "]");
        break;
    }
    }
}

static void emit_flow_map(strbuf *b, const key_def *table, const char *base) {
    sb_printf(b, "{");
    for (const key_def *k = table; k->name; k++) {
        sb_printf(b, "%s%s: ", k == table ? "" : ", ", k->name);
        emit_flow(b, k, base);
    }
    sb_printf(b, "}");
}

/* A mapping in block style at indent; with dash, its first key follows a
 * "- " (an entry of a list of mappings). */
static void emit_block_map(strbuf *b, const key_def *table, const char *base, int indent,
                           bool dash) {
    for (const key_def *k = table; k->name; k++) {
        if (dash && k == table)
            sb_printf(b, "%*s- %s:", indent - 2, "", k->name);
        else
            sb_printf(b, "%*s%s:", indent, "", k->name);
        if (k->type == T_MAP) {
            sb_printf(b, "\n");
            emit_block_map(b, k->child, base + k->off, indent + 2, false);
        } else if (k->type == T_MAPLIST) {
            int n;
            memcpy(&n, base + k->count_off, sizeof n);
            sb_printf(b, n ? "\n" : " []\n");
            for (int i = 0; i < n; i++)
                emit_block_map(b, k->child, base + k->off + (size_t)i * k->size, indent + 4, true);
        } else {
            sb_printf(b, " ");
            emit_flow(b, k, base);
            sb_printf(b, "\n");
        }
    }
}

char *config_to_yaml(const yoto_config *cfg) {
    strbuf b = {0};
    sb_printf(&b,
              "# yoto config, fully resolved: every key, defaults filled in (docs/CONFIG.md)\n");
    for (const key_def *k = root_keys; k->name; k++) {
        sb_printf(&b, "%s:\n", k->name);
        emit_block_map(&b, k->child, (const char *)cfg + k->off, 2, false);
    }
    return b.s;
}

/* ---- lookups ------------------------------------------------------------------------- */

/* The schema row of a key path ("model.encoder.fc_sizes", "data.splits[1].range")
 * and the base its offset is relative to; NULL if there is none. */
static const key_def *lookup(const yoto_config *cfg, const char *key, const char **base) {
    const key_def *table = root_keys;
    const char *b = (const char *)cfg;
    const char *p = key;
    while (*p) {
        size_t len = strcspn(p, ".[");
        const key_def *k = table;
        while (k->name && (strlen(k->name) != len || strncmp(k->name, p, len)))
            k++;
        if (!k->name) return NULL;
        p += len;
        if (*p == '[') {
            char *end;
            long i = strtol(p + 1, &end, 10);
            int n;
            if (k->type != T_MAPLIST || *end != ']') return NULL;
            memcpy(&n, b + k->count_off, sizeof n);
            if (i < 0 || i >= n) return NULL;
            b += k->off + (size_t)i * k->size;
            p = end + 1;
            if (!*p) return NULL; /* a whole entry: not a key */
            table = k->child;
        } else if (!*p) {
            *base = b;
            return k;
        } else if (k->type == T_MAP) {
            b += k->off;
            table = k->child;
        } else {
            return NULL;
        }
        if (*p != '.') return NULL;
        p++;
    }
    return NULL;
}

const char *config_where(const yoto_config *cfg, const char *key) {
    static char buf[CFG_PATH_MAX + 256];
    const cfg_loc *l = find_loc(cfg, key);
    if (!l) {
        snprintf(buf, sizeof buf, "%s (default)", cfg->source);
    } else if (l->line > 0) {
        snprintf(buf, sizeof buf, "%s:%d:%d", cfg->source, l->line, l->column);
    } else {
        /* set by --set: the option's text is gone, so show the key and its value */
        const char *base;
        const key_def *k = lookup(cfg, key, &base);
        strbuf b = {0};
        sb_printf(&b, "--set %s=", key);
        if (k)
            emit_flow(&b, k, base);
        else
            sb_printf(&b, "...");
        snprintf(buf, sizeof buf, "%s", b.s);
        free(b.s);
    }
    return buf;
}

const cfg_split *config_split(const yoto_config *cfg, const char *name) {
    for (int i = 0; i < cfg->data.n_splits; i++)
        if (!strcmp(cfg->data.splits[i].name, name)) return &cfg->data.splits[i];
    return NULL;
}

/* ---- resuming ---------------------------------------------------------------- */

/* Every key the resume column marks VARY, as "a, b, c": key paths, an entry of
 * a list of mappings as NAME[], a whole mapping as NAME.*. */
static void list_vary(strbuf *b, const key_def *table, const char *path) {
    char kp[256];
    for (const key_def *k = table; k->name; k++) {
        join(kp, sizeof kp, path, k->name);
        if (k->resume == VARY) {
            sb_printf(b, "%s%s%s", b->n ? ", " : "", kp, k->type == T_MAP ? ".*" : "");
        } else if (k->type == T_MAP) {
            list_vary(b, k->child, kp);
        } else if (k->type == T_MAPLIST) {
            snprintf(kp + strlen(kp), sizeof kp - strlen(kp), "[]");
            list_vary(b, k->child, kp);
        }
    }
}

void config_resumable_keys(char *buf, size_t size) {
    strbuf b = {0};
    list_vary(&b, root_keys, "");
    snprintf(buf, size, "%s", b.s ? b.s : "");
    free(b.s);
}

/* The KEEP keys whose values differ, one message line each while they fit
 * in budget characters; the rest are only counted. */
typedef struct {
    const yoto_config *now;
    strbuf lines;
    size_t budget;
    int n, shown;
} resume_diff;

/* A value or place for a message: cut after CLIP characters. */
enum { CLIP = 120 };
static const char *clipped(const char *text, char buf[CLIP + 4]) {
    snprintf(buf, CLIP + 4, "%.*s%s", (int)CLIP, text, strlen(text) > CLIP ? "..." : "");
    return buf;
}

/* Compares one value (a leaf key, or a whole list of mappings) of both configs. */
static void diff_value(resume_diff *d, const key_def *k, const char *was, const char *now,
                       const char *key) {
    strbuf a = {0}, b = {0};
    emit_flow(&a, k, was);
    emit_flow(&b, k, now);
    if (strcmp(a.s, b.s)) {
        char ca[CLIP + 4], cb[CLIP + 4], cw[CLIP + 4];
        strbuf line = {0};
        sb_printf(&line, "\n  %s: checkpoint has %s, this run has %s (", key, clipped(a.s, ca),
                  clipped(b.s, cb));
        if (find_loc(d->now, key))
            sb_printf(&line, "from %s)", clipped(config_where(d->now, key), cw));
        else
            sb_printf(&line, "the default)");
        if (d->shown == d->n && d->lines.n + line.n <= d->budget) { /* in order, while room */
            sb_printf(&d->lines, "%s", line.s);
            d->shown++;
        }
        d->n++;
        free(line.s);
    }
    free(a.s);
    free(b.s);
}

/* Walks table over both configs; VARY rows (and all below them) are skipped.
 * Lists of mappings of the same length are compared entry by entry, else as
 * one value. */
static void diff_table(resume_diff *d, const key_def *table, const char *was, const char *now,
                       const char *path) {
    char kp[256];
    for (const key_def *k = table; k->name; k++) {
        if (k->resume == VARY) continue;
        join(kp, sizeof kp, path, k->name);
        int na = 0, nb = 0;
        if (k->type == T_MAPLIST) {
            memcpy(&na, was + k->count_off, sizeof na);
            memcpy(&nb, now + k->count_off, sizeof nb);
        }
        if (k->type == T_MAP) {
            diff_table(d, k->child, was + k->off, now + k->off, kp);
        } else if (k->type == T_MAPLIST && na == nb) {
            for (int i = 0; i < na; i++) {
                char ep[272];
                snprintf(ep, sizeof ep, "%s[%d]", kp, i);
                size_t at = k->off + (size_t)i * k->size;
                diff_table(d, k->child, was + at, now + at, ep);
            }
        } else {
            diff_value(d, k, was, now, kp);
        }
    }
}

int config_resume_check(const yoto_config *stored, const yoto_config *now, const char *ckpt_path) {
    char vary[1024], head[CFG_PATH_MAX + 256];
    config_resumable_keys(vary, sizeof vary);
    strbuf tail = {0};
    sb_printf(&tail,
              "\nonly these keys may change on resume: %s; to train with other settings, start a "
              "new run (another experiment.out_dir)",
              vary);
    snprintf(head, sizeof head, "cannot resume from %.*s: ", CFG_PATH_MAX + 63, ckpt_path);
    /* room for the head's count and "... and N more", and a "rank R: " prefix (dist_agree) */
    size_t fixed = strlen(head) + tail.n + 200;
    resume_diff d = {.now = now, .budget = fixed < YT_ERRMSG_MAX ? YT_ERRMSG_MAX - fixed : 0};
    diff_table(&d, root_keys, (const char *)stored, (const char *)now, "");
    int rc = YT_OK;
    if (d.n) {
        if (d.shown < d.n) sb_printf(&d.lines, "\n  ... and %d more", d.n - d.shown);
        rc = yt_fail(YT_ERR_USAGE,
                     "%sthis run's config differs from the checkpoint's in %d key%s that may not "
                     "change on resume:%s%s",
                     head, d.n, d.n == 1 ? "" : "s", d.lines.s, tail.s);
    }
    free(d.lines.s);
    free(tail.s);
    return rc;
}

/* ---- row ranges ------------------------------------------------------------ */

/* One boundary: "", "123", "-5", "20%", "-10%", "12.5%". */
static int range_boundary(const char *range, const char *s, size_t len, long nrows, long dflt,
                          long *out) {
    char buf[64];
    while (len > 0 && isspace((unsigned char)*s))
        s++, len--;
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        len--;
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
        for (const char *p = range; *p; p++)
            blank &= isspace((unsigned char)*p) != 0;
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
