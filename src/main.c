/* main.c — the command line: parse, dispatch, exit with the agreed code.
 * No numerics and no I/O policy here; each command calls its module. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "common.h"
#include "config.h"
#include "datainfo.h"
#include "dist.h"
#include "encode.h"
#include "eval.h"
#include "gallery.h"
#include "h5io.h"
#include "model.h"
#include "prepare.h"
#include "runlog.h"
#include "train.h"

#define MAX_SETS 256

/* Options shared by the commands that take a config. */
typedef struct {
    const char *sets[MAX_SETS];
    int nsets;
} cli_sets;

typedef struct {
    const char *name;
    const char *synopsis;
    const char *help; /* what it does and its options */
    int (*run)(int argc, char **argv);
    bool needs_mpi;
} command;

static const command *find_command(const char *name);

static int usage_error(const char *cmd, const char *fmt, const char *arg) {
    fprintf(stderr, "yoto%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'yoto %s%s--help'.\n", cmd ? cmd : "", cmd ? " " : "");
    return YT_ERR_USAGE;
}

static void print_command_help(const command *c) {
    printf("usage: yoto %s %s\n\n%s", c->name, c->synopsis, c->help);
}

/* Parses argv (argv[0] = command name) against long options; returns the
 * index of the first positional argument, or -1 after printing a usage error
 * (or help: *help_shown = true). handle() gets each option and its argument. */
typedef int (*opt_handler)(int id, const char *arg, void *ctx);

static int parse_options(const command *c, int argc, char **argv, const struct option *opts,
                         opt_handler handle, void *ctx, bool *help_shown) {
    /* "+" stops at the first positional argument only if POSIXLY_CORRECT;
     * we want options anywhere, so use the GNU permutation order (default). */
    struct option all[32];
    int n = 0;
    for (; opts && opts[n].name; n++) all[n] = opts[n];
    all[n++] = (struct option){"help", no_argument, NULL, 'h'};
    all[n] = (struct option){0};
    char shortopts[64] = ":h";
    size_t sl = strlen(shortopts);
    for (int i = 0; opts && opts[i].name; i++)
        if (opts[i].val < 128 && opts[i].val > 32) {
            shortopts[sl++] = (char)opts[i].val;
            if (opts[i].has_arg == required_argument) shortopts[sl++] = ':';
        }
    shortopts[sl] = '\0';
    opterr = 0;
    optind = 1;
    *help_shown = false;
    for (;;) {
        int longidx = -1;
        int id = getopt_long(argc, argv, shortopts, all, &longidx);
        if (id == -1) break;
        if (id == 'h') {
            print_command_help(c);
            *help_shown = true;
            return -1;
        }
        if (id == '?') {
            const char *bad = argv[optind - 1];
            usage_error(c->name, "unknown option '%s'", bad);
            return -1;
        }
        if (id == ':') {
            usage_error(c->name, "option '%s' needs a value", argv[optind - 1]);
            return -1;
        }
        if (handle(id, optarg, ctx) != YT_OK) return -1;
    }
    return optind;
}

/* ---- yoto config --------------------------------------------------------- */

enum { OPT_SET = 1000 };

static int handle_set(int id, const char *arg, void *ctx) {
    cli_sets *s = ctx;
    if (id != OPT_SET && id != 's') return YT_ERR_USAGE;
    if (s->nsets == MAX_SETS) {
        fprintf(stderr, "yoto: too many --set options (at most %d)\n", MAX_SETS);
        return YT_ERR_USAGE;
    }
    s->sets[s->nsets++] = arg;
    return YT_OK;
}

static const struct option set_options[] = {
    {"set", required_argument, NULL, OPT_SET},
    {0},
};

static int run_config(int argc, char **argv) {
    const command *c = find_command("config");
    cli_sets sets = {0};
    bool help;
    int first = parse_options(c, argc, argv, set_options, handle_set, &sets, &help);
    if (first < 0) return help ? YT_OK : YT_ERR_USAGE;
    if (argc - first != 1)
        return usage_error(c->name, "expects one CONFIG file%s", argc - first ? ", got more" : "");
    yoto_config *cfg = yt_calloc(1, sizeof *cfg);
    int rc = config_load(cfg, argv[first], sets.sets, sets.nsets);
    if (rc == YT_OK) {
        char *text = config_to_yaml(cfg);
        fputs(text, stdout);
        free(text);
    } else {
        fprintf(stderr, "yoto: %s\n", yt_errmsg());
    }
    free(cfg);
    return rc;
}

/* ---- yoto prepare ---------------------------------------------------------- */

enum { OPT_CONTIGUOUS = 1100, OPT_DEFLATE, OPT_SEED };

static int parse_long(const char *cmd, const char *what, const char *arg, long lo, long hi,
                      long *out) {
    char *end;
    errno = 0;
    long v = strtol(arg, &end, 10);
    if (end == arg || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "yoto %s: %s must be an integer in %ld..%ld, got '%s'\n", cmd, what, lo, hi,
                arg);
        return YT_ERR_USAGE;
    }
    *out = v;
    return YT_OK;
}

static int handle_prepare(int id, const char *arg, void *ctx) {
    prepare_options *o = ctx;
    long v;
    switch (id) {
    case OPT_CONTIGUOUS:
        o->contiguous = true;
        return YT_OK;
    case OPT_DEFLATE:
        if (parse_long("prepare", "--deflate", arg, 0, 9, &v) != YT_OK) return YT_ERR_USAGE;
        o->deflate = (int)v;
        return YT_OK;
    case OPT_SEED:
        if (parse_long("prepare", "--seed", arg, 0, LONG_MAX, &v) != YT_OK) return YT_ERR_USAGE;
        o->seed = (uint64_t)v;
        return YT_OK;
    }
    return YT_ERR_USAGE;
}

static int run_prepare(int argc, char **argv) {
    const command *c = find_command("prepare");
    static const struct option opts[] = {
        {"contiguous", no_argument, NULL, OPT_CONTIGUOUS},
        {"deflate", required_argument, NULL, OPT_DEFLATE},
        {"seed", required_argument, NULL, OPT_SEED},
        {0},
    };
    prepare_options o = prepare_options_default();
    bool help;
    int first = parse_options(c, argc, argv, opts, handle_prepare, &o, &help);
    if (first < 0) return help ? YT_OK : YT_ERR_USAGE;
    if (argc - first != 3)
        return usage_error(c->name, "expects KIND SOURCE OUT.h5 (KIND: %s)",
                           "fashion-mnist, mnist, cifar10 or shapes");
    const char *kind = argv[first], *src = argv[first + 1], *out = argv[first + 2];
    bool idx = strcmp(kind, "fashion-mnist") == 0 || strcmp(kind, "mnist") == 0;
    if (!idx && strcmp(kind, "cifar10") != 0 && strcmp(kind, "shapes") != 0)
        return usage_error(c->name, "unknown data set '%s' (fashion-mnist, mnist, cifar10, shapes)",
                           kind);
    long n = 0;
    if (strcmp(kind, "shapes") == 0 &&
        parse_long(c->name, "shapes SIZE", src, 1, SHAPES_N, &n) != YT_OK)
        return YT_ERR_USAGE;
    /* one writer: rank 0 converts, the others wait for its verdict */
    int rc = YT_OK;
    if (dist_rank() == 0) {
        double t0 = yt_now();
        rc = idx ? prepare_idx(kind, src, out, &o)
             : n ? prepare_shapes(n, out, &o)
                 : prepare_cifar10(src, out, &o);
        if (rc == YT_OK) {
            printf("wrote %s in %.1f s\n", out, yt_now() - t0);
            rc = prepare_info(out, stdout);
        }
    }
    rc = dist_agree(rc);
    if (rc != YT_OK) dist_report_error();
    return rc;
}

/* ---- yoto data-info -------------------------------------------------------------- */

enum {
    OPT_BENCH = 1200,
    OPT_DATASET,
    OPT_RANGE,
    OPT_PIPELINE,
    OPT_BATCH,
    OPT_SECONDS,
    OPT_CACHE_MB,
    OPT_BLOCK_MB,
    OPT_NO_READAHEAD,
    OPT_BSEED,
    OPT_STEPS,
    OPT_STEP_MS,
    OPT_INFO_JSON
};

typedef struct {
    bool bench, json;
    datainfo_bench_opts b;
} info_opts;

static int handle_info(int id, const char *arg, void *ctx) {
    info_opts *o = ctx;
    const char *cmd = "data-info";
    switch (id) {
    case OPT_BENCH:
        o->bench = true;
        return YT_OK;
    case OPT_NO_READAHEAD:
        o->b.no_readahead = true;
        return YT_OK;
    case OPT_INFO_JSON:
        o->json = true;
        return YT_OK;
    case OPT_DATASET:
        o->b.dataset = arg;
        return YT_OK;
    case OPT_RANGE:
        o->b.range = arg;
        return YT_OK;
    case OPT_PIPELINE:
        o->b.pipeline = arg;
        return YT_OK;
    case OPT_BATCH:
        return parse_long(cmd, "--batch", arg, 1, 1L << 20, &o->b.batch);
    case OPT_CACHE_MB:
        return parse_long(cmd, "--cache-mb", arg, 0, 1L << 30, &o->b.cache_mb);
    case OPT_BLOCK_MB:
        return parse_long(cmd, "--block-mb", arg, 1, 1L << 20, &o->b.block_mb);
    case OPT_BSEED:
        return parse_long(cmd, "--seed", arg, 0, LONG_MAX, &o->b.seed);
    case OPT_STEPS:
        return parse_long(cmd, "--steps", arg, 0, LONG_MAX, &o->b.steps);
    case OPT_SECONDS:
    case OPT_STEP_MS: {
        char *end;
        double v = strtod(arg, &end);
        if (end == arg || *end || !(v >= 0 && v < 1e6)) {
            fprintf(stderr, "yoto data-info: %s must be a number >= 0, got '%s'\n",
                    id == OPT_SECONDS ? "--seconds" : "--step-ms", arg);
            return YT_ERR_USAGE;
        }
        *(id == OPT_SECONDS ? &o->b.seconds : &o->b.step_ms) = v;
        return YT_OK;
    }
    }
    return YT_ERR_USAGE;
}

static int run_data_info(int argc, char **argv) {
    const command *c = find_command("data-info");
    static const struct option opts[] = {
        {"bench", no_argument, NULL, OPT_BENCH},
        {"dataset", required_argument, NULL, OPT_DATASET},
        {"range", required_argument, NULL, OPT_RANGE},
        {"pipeline", required_argument, NULL, OPT_PIPELINE},
        {"batch", required_argument, NULL, OPT_BATCH},
        {"seconds", required_argument, NULL, OPT_SECONDS},
        {"steps", required_argument, NULL, OPT_STEPS},
        {"step-ms", required_argument, NULL, OPT_STEP_MS},
        {"cache-mb", required_argument, NULL, OPT_CACHE_MB},
        {"block-mb", required_argument, NULL, OPT_BLOCK_MB},
        {"no-readahead", no_argument, NULL, OPT_NO_READAHEAD},
        {"seed", required_argument, NULL, OPT_BSEED},
        {"json", no_argument, NULL, OPT_INFO_JSON},
        {0},
    };
    info_opts o = {.b = datainfo_bench_defaults()};
    bool help;
    int first = parse_options(c, argc, argv, opts, handle_info, &o, &help);
    if (first < 0) return help ? YT_OK : YT_ERR_USAGE;
    if (argc - first != 1) return usage_error(c->name, "expects one FILE.h5%s", "");
    if (o.json && o.bench)
        return usage_error(c->name, "--json describes the file; it does not combine with --bench%s",
                           " (yoto bench --json measures the training step)");
    const char *file = argv[first];
    int rc = YT_OK;
    if (dist_rank() == 0)
        rc = o.json ? prepare_info_json(file, stdout) : prepare_info(file, stdout);
    rc = dist_agree(rc);
    if (rc == YT_OK && o.bench) rc = datainfo_bench(file, &o.b);
    if (rc != YT_OK) dist_report_error();
    return rc;
}

/* ---- yoto bench ---------------------------------------------------------- */

enum {
    OPT_BENCH_STEPS = 1300,
    OPT_BENCH_WARMUP,
    OPT_BENCH_THREADS,
    OPT_BENCH_JSON,
    OPT_BENCH_DATA,
    OPT_BENCH_COMM,
    OPT_BENCH_COMM_MAX,
    OPT_BENCH_DRIFT
};

typedef struct {
    cli_sets sets;
    bench_opts o;
} bench_cli;

static int parse_count(const char *opt, const char *arg, int lo, int *out) {
    char *end;
    long v = strtol(arg, &end, 10);
    if (*arg == '\0' || *end != '\0' || v < lo || v > 1000000) {
        fprintf(stderr, "yoto: %s expects an integer >= %d, got '%s'\n", opt, lo, arg);
        return YT_ERR_USAGE;
    }
    *out = (int)v;
    return YT_OK;
}

static int handle_bench(int id, const char *arg, void *ctx) {
    bench_cli *b = ctx;
    switch (id) {
    case OPT_SET: return handle_set(id, arg, &b->sets);
    case OPT_BENCH_STEPS: return parse_count("--steps", arg, 1, &b->o.steps);
    case OPT_BENCH_WARMUP: return parse_count("--warmup", arg, 0, &b->o.warmup);
    case OPT_BENCH_THREADS: return parse_count("--threads", arg, 1, &b->o.threads);
    case OPT_BENCH_JSON: b->o.json = true; return YT_OK;
    case OPT_BENCH_DATA: b->o.data = true; return YT_OK;
    case OPT_BENCH_COMM: b->o.comm = true; return YT_OK;
    case OPT_BENCH_COMM_MAX:
        return parse_count("--comm-max-mb", arg, 1, &b->o.comm_max_mb);
    case OPT_BENCH_DRIFT:
        return parse_count("--drift", arg, 0, &b->o.drift_pct);
    }
    return YT_ERR_USAGE;
}

static int run_bench(int argc, char **argv) {
    const command *c = find_command("bench");
    static const struct option opts[] = {
        {"set", required_argument, NULL, OPT_SET},
        {"steps", required_argument, NULL, OPT_BENCH_STEPS},
        {"warmup", required_argument, NULL, OPT_BENCH_WARMUP},
        {"threads", required_argument, NULL, OPT_BENCH_THREADS},
        {"json", no_argument, NULL, OPT_BENCH_JSON},
        {"data", no_argument, NULL, OPT_BENCH_DATA},
        {"comm", no_argument, NULL, OPT_BENCH_COMM},
        {"comm-max-mb", required_argument, NULL, OPT_BENCH_COMM_MAX},
        {"drift", required_argument, NULL, OPT_BENCH_DRIFT},
        {0},
    };
    bench_cli b = {.o = {.steps = 20, .warmup = 3, .drift_pct = -1}};
    bool help;
    int first = parse_options(c, argc, argv, opts, handle_bench, &b, &help);
    if (first < 0) return help ? YT_OK : YT_ERR_USAGE;
    if (argc - first != 1) return usage_error(c->name, "expects one CONFIG file%s", "");
    if (b.o.comm_max_mb && !b.o.comm)
        return usage_error(c->name, "--comm-max-mb%s is an option of --comm", "");
    if (b.o.comm_max_mb > 16384)
        return usage_error(c->name, "--comm-max-mb%s: at most 16384 (16 GiB)", "");
    if (b.o.drift_pct >= 0 && b.o.comm)
        return usage_error(c->name, "--drift%s times the step: not an option of --comm", "");
    if (b.o.drift_pct < 0) b.o.drift_pct = 10;
    b.o.config_path = argv[first];
    yoto_config *cfg = yt_calloc(1, sizeof *cfg);
    int rc = dist_agree(config_load(cfg, argv[first], b.sets.sets, b.sets.nsets));
    if (rc == YT_OK) rc = dist_agree(bench_run(cfg, &b.o));
    if (rc != YT_OK) dist_report_error();
    free(cfg);
    return rc;
}

/* ---- yoto train / eval / sample / reconstruct ------------------------------- */

enum { OPT_RESUME = 1400, OPT_SPLIT, OPT_BETA, OPT_N, OPT_OUT, OPT_PROGRESS, OPT_FORCE };

typedef struct {
    cli_sets sets;
    const char *resume, *split, *beta, *out;
    int n;
    progress_mode progress;
    bool force;
} run_cli;

static int handle_run(int id, const char *arg, void *ctx) {
    run_cli *r = ctx;
    switch (id) {
    case OPT_SET: return handle_set(id, arg, &r->sets);
    case OPT_RESUME: r->resume = arg; return YT_OK;
    case OPT_SPLIT: r->split = arg; return YT_OK;
    case OPT_BETA: r->beta = arg; return YT_OK;
    case OPT_OUT: r->out = arg; return YT_OK;
    case OPT_N: return parse_count("--n", arg, 1, &r->n);
    case OPT_FORCE: r->force = true; return YT_OK;
    case OPT_PROGRESS:
        if (runlog_parse_mode(arg, &r->progress)) return YT_OK;
        fprintf(stderr, "yoto: --progress expects auto, lines or live, got '%s'\n", arg);
        return YT_ERR_USAGE;
    }
    return YT_ERR_USAGE;
}

/* every rank reports through rank 0, and all exit with the agreed code */
static int finish_command(int rc) {
    if (rc != YT_OK && rc != YT_EXIT_REQUEUE) dist_report_error();
    return rc;
}

/* "yoto train ARG..." for the run's log, arguments with spaces quoted. */
static char *command_line(int argc, char **argv) {
    size_t size = 16;
    for (int i = 0; i < argc; i++) size += strlen(argv[i]) + 3;
    char *s = yt_malloc(size);
    size_t len = (size_t)snprintf(s, size, "yoto");
    for (int i = 0; i < argc; i++) {
        bool quote = strpbrk(argv[i], " \t\"'") != NULL;
        len += (size_t)snprintf(s + len, size - len, quote ? " '%s'" : " %s", argv[i]);
    }
    return s;
}

static int run_train(int argc, char **argv) {
    const command *c = find_command("train");
    static const struct option opts[] = {
        {"set", required_argument, NULL, OPT_SET},
        {"resume", required_argument, NULL, OPT_RESUME},
        {"progress", required_argument, NULL, OPT_PROGRESS},
        {"force", no_argument, NULL, OPT_FORCE},
        {0},
    };
    run_cli r = {0};
    bool help;
    char *cmdline = command_line(argc, argv); /* before getopt reorders argv */
    int first = parse_options(c, argc, argv, opts, handle_run, &r, &help);
    bool ok = first >= 0 && argc - first == (r.resume ? 0 : 1);
    if (first >= 0 && !ok)
        usage_error(c->name, "expects one CONFIG file, or --resume RUN_DIR%s", "");
    int rc = help ? YT_OK : YT_ERR_USAGE;
    if (ok) {
        train_args a = {r.resume ? NULL : argv[first], r.resume, r.sets.sets, r.sets.nsets,
                        r.progress, r.force, cmdline};
        rc = finish_command(train_run(&a));
    }
    free(cmdline);
    return rc;
}

/* eval, sample, reconstruct: the commands that serve a trained run */
enum {
    OPT_SERVE_SPLIT = 1500,
    OPT_SERVE_BETA,
    OPT_SERVE_N,
    OPT_SERVE_OUT,
    OPT_SERVE_JSON,
    OPT_SERVE_SCALE,
    OPT_SERVE_SEED
};

typedef struct {
    cli_sets sets;
    const char *split, *beta, *out;
    int n, scale;
    long seed;
    bool json, seed_set;
} serve_cli;

static int handle_serve(int id, const char *arg, void *ctx) {
    serve_cli *r = ctx;
    switch (id) {
    case OPT_SET:
        return handle_set(id, arg, &r->sets);
    case OPT_SERVE_SPLIT:
        r->split = arg;
        return YT_OK;
    case OPT_SERVE_BETA:
        r->beta = arg;
        return YT_OK;
    case OPT_SERVE_OUT:
        r->out = arg;
        return YT_OK;
    case OPT_SERVE_JSON:
        r->json = true;
        return YT_OK;
    case OPT_SERVE_N:
        return parse_count("--n", arg, 1, &r->n);
    case OPT_SERVE_SCALE:
        return parse_count("--scale", arg, 1, &r->scale);
    case OPT_SERVE_SEED:
        r->seed_set = true;
        return parse_long("sample", "--seed", arg, 0, LONG_MAX, &r->seed);
    }
    return YT_ERR_USAGE;
}

static int run_eval(int argc, char **argv) {
    const command *c = find_command("eval");
    static const struct option opts[] = {
        {"set", required_argument, NULL, OPT_SET},
        {"split", required_argument, NULL, OPT_SERVE_SPLIT},
        {"beta", required_argument, NULL, OPT_SERVE_BETA},
        {"json", no_argument, NULL, OPT_SERVE_JSON},
        {0},
    };
    serve_cli r = {0};
    bool help;
    int first = parse_options(c, argc, argv, opts, handle_serve, &r, &help);
    if (first < 0) return help ? YT_OK : YT_ERR_USAGE;
    if (argc - first != 1) return usage_error(c->name, "expects one RUN_DIR or CHECKPOINT%s", "");
    eval_args a = {argv[first], r.split, r.beta, r.json, r.sets.sets, r.sets.nsets};
    return finish_command(eval_run(&a));
}

static int run_gallery(int argc, char **argv, bool reconstruct) {
    const command *c = find_command(reconstruct ? "reconstruct" : "sample");
    static const struct option opts[] = {
        {"set", required_argument, NULL, OPT_SET},
        {"beta", required_argument, NULL, OPT_SERVE_BETA},
        {"n", required_argument, NULL, OPT_SERVE_N},
        {"out", required_argument, NULL, OPT_SERVE_OUT},
        {"split", required_argument, NULL, OPT_SERVE_SPLIT},
        {"scale", required_argument, NULL, OPT_SERVE_SCALE},
        {"seed", required_argument, NULL, OPT_SERVE_SEED},
        {0},
    };
    serve_cli r = {.n = 8};
    bool help;
    int first = parse_options(c, argc, argv, opts, handle_serve, &r, &help);
    if (first < 0) return help ? YT_OK : YT_ERR_USAGE;
    if (argc - first != 1) return usage_error(c->name, "expects one RUN_DIR or CHECKPOINT%s", "");
    if (!r.out) return usage_error(c->name, "needs --out FILE.png%s", "");
    if (r.split && !reconstruct) return usage_error(c->name, "--split is for reconstruct%s", "");
    if (r.seed_set && reconstruct)
        return usage_error(c->name, "--seed is for sample (reconstruct uses the posterior mean)%s",
                           "");
    gallery_args a = {.target = argv[first],
                      .betas = r.beta,
                      .n = r.n,
                      .out = r.out,
                      .split = r.split,
                      .scale = r.scale,
                      .seed = r.seed,
                      .seed_set = r.seed_set,
                      .sets = r.sets.sets,
                      .nsets = r.sets.nsets};
    return finish_command(reconstruct ? gallery_reconstruct(&a) : gallery_sample(&a));
}

static int run_sample(int argc, char **argv) { return run_gallery(argc, argv, false); }
static int run_reconstruct(int argc, char **argv) { return run_gallery(argc, argv, true); }

/* ---- yoto encode -------------------------------------------------------------- */

enum { OPT_ENC_FORCE = 1500, OPT_ENC_LABELS, OPT_ENC_METRICS, OPT_ENC_NO_METRICS };

typedef struct {
    encode_args e;
    cli_sets sets;
} encode_cli;

static int handle_encode(int id, const char *arg, void *ctx) {
    encode_cli *c = ctx;
    switch (id) {
    case OPT_SET: return handle_set(id, arg, &c->sets);
    case OPT_SPLIT: c->e.split = arg; return YT_OK;
    case OPT_BETA: c->e.betas = arg; return YT_OK;
    case OPT_OUT: c->e.out = arg; return YT_OK;
    case OPT_ENC_LABELS: c->e.labels = arg; return YT_OK;
    case OPT_ENC_FORCE: c->e.force = true; return YT_OK;
    case OPT_ENC_METRICS: c->e.metrics = ENCODE_METRICS_ON; return YT_OK;
    case OPT_ENC_NO_METRICS: c->e.metrics = ENCODE_METRICS_OFF; return YT_OK;
    }
    return YT_ERR_USAGE;
}

static int run_encode(int argc, char **argv) {
    const command *c = find_command("encode");
    static const struct option opts[] = {
        {"set", required_argument, NULL, OPT_SET},
        {"split", required_argument, NULL, OPT_SPLIT},
        {"beta", required_argument, NULL, OPT_BETA},
        {"out", required_argument, NULL, OPT_OUT},
        {"labels", required_argument, NULL, OPT_ENC_LABELS},
        {"force", no_argument, NULL, OPT_ENC_FORCE},
        {"metrics", no_argument, NULL, OPT_ENC_METRICS},
        {"no-metrics", no_argument, NULL, OPT_ENC_NO_METRICS},
        {0},
    };
    encode_cli r = {0};
    bool help;
    int first = parse_options(c, argc, argv, opts, handle_encode, &r, &help);
    if (first < 0) return help ? YT_OK : YT_ERR_USAGE;
    if (argc - first != 1) return usage_error(c->name, "expects one RUN_DIR or CHECKPOINT%s", "");
    if (!r.e.out) return usage_error(c->name, "needs --out FILE.h5%s", "");
    r.e.target = argv[first];
    r.e.sets = r.sets.sets;
    r.e.nsets = r.sets.nsets;
    return finish_command(encode_run(&r.e));
}

/* ---- the table ----------------------------------------------------------- */

static const command commands[] = {
    {"config", "CONFIG [--set section.key=value]...",
     "Prints the fully resolved configuration as YAML: defaults filled in, --set\n"
     "overrides applied, everything validated. The output, fed back as a config,\n"
     "resolves to the same thing.\n\n"
     "options:\n"
     "  --set KEY=VALUE   override one value (repeatable), e.g. --set train.steps=1000\n"
     "  -h, --help        this text\n",
     run_config, false},
    {"prepare", "KIND SOURCE OUT.h5 [options]",
     "Converts a data set to yoto's HDF5 layout (docs/DATA.md), then prints what\n"
     "it wrote (as data-info). The file appears under its name only when complete.\n\n"
     "  fashion-mnist DIR  IDX files in DIR, each gzipped (.gz) or not:\n"
     "  mnist DIR            train-images-idx3-ubyte, train-labels-idx1-ubyte,\n"
     "                       t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte\n"
     "                     -> /train/images uint8 [60000, 28, 28, 1],\n"
     "                        /train/labels uint8 [60000], /test/images, /test/labels\n"
     "  cifar10 DIR        data_batch_1..5.bin and test_batch.bin in DIR (or in\n"
     "                     DIR/cifar-10-batches-bin)\n"
     "                     -> /train/images uint8 [50000, 32, 32, 3] (HWC),\n"
     "                        /train/labels, /test/images, /test/labels\n"
     "  shapes SIZE        SIZE (1..480000) rendered stand-ins for Shapes3D:\n"
     "                     -> /images uint8 [SIZE, 64, 64, 3], /labels float64\n"
     "                        [SIZE, 6] (floor hue, wall hue, object hue, scale,\n"
     "                        shape, orientation), as in 3dshapes.h5. SIZE < 480000\n"
     "                        draws distinct factor combinations (--seed), kept in\n"
     "                        the grid's order.\n\n"
     "options:\n"
     "  --contiguous      store images contiguous and uncompressed (fastest to\n"
     "                    stream; the default for shapes; the others default to\n"
     "                    chunks of ~256 KiB with deflate 4)\n"
     "  --deflate N       chunked images with deflate level N (0..9, 0 = none)\n"
     "  --seed N          shapes: which factor combinations (default 0)\n"
     "  -h, --help        this text\n\n"
     "Example:\n"
     "  yoto prepare fashion-mnist /usr/share/datasets/fashion-mnist data/fmnist.h5\n"
     "Under mpirun, rank 0 converts. Exit code 2 on bad input (missing, truncated\n"
     "or malformed files).\n",
     run_prepare, true},
    {"data-info", "FILE.h5 [--json | --bench [options]]",
     "Prints what an HDF5 data file holds (attributes; datasets with type, shape,\n"
     "layout and compression) and validates every image dataset for training:\n"
     "uint8 [N, H, W, C], or [N, H, W] read as C = 1, N >= 1. Exit code 2 when the\n"
     "file is missing, not HDF5, or has no usable image dataset.\n"
     "  --json            the same as one JSON object on stdout (docs/FORMATS.md);\n"
     "                    with no usable image dataset it is printed with \"error\"\n"
     "                    set, and the exit code is 2\n\n"
     "With --bench, also measures the training data pipeline on the file (sharded\n"
     "over the MPI ranks, shuffled, preprocessed into [C][N][H][W] batches):\n"
     "  --dataset PATH    image dataset (default 'images', else 'train/images')\n"
     "  --range R         row range of the split: '20%:', ':1000', ... (default all)\n"
     "  --pipeline OPS    preprocessing, e.g. 'resize(40), random_crop(32), flip_lr(),\n"
     "                    value_range(-1, 1)' (default 'value_range(0, 1)')\n"
     "  --batch N         images per rank per batch (default 64)\n"
     "  --seconds S       measure for about S seconds (default 3)\n"
     "  --steps N         ...and at least N batches\n"
     "  --step-ms T       sleep T ms per batch, standing in for the training step\n"
     "                    (shows how much of the reading the read-ahead hides)\n"
     "  --cache-mb N      data.cache_mb: a shard up to N MB is read once (4096)\n"
     "  --block-mb N      data.stream_block_mb (default 64)\n"
     "  --no-readahead    stream with synchronous HDF5 reads only\n"
     "  --seed N          data order seed (default 0)\n"
     "  -h, --help        this text\n",
     run_data_info, true},
    {"train", "CONFIG [--set KEY=VALUE]... | --resume RUN_DIR [--set KEY=VALUE]...",
     "Trains the loss-conditional VAE, data-parallel over the MPI ranks:\n"
     "  mpirun -np 4 bin/yoto train configs/fashion_mnist_conv_vae_yoto.yaml\n"
     "Writes experiment.out_dir: config.yaml, metrics.csv, log.txt, ckpt/, eval/.\n"
     "If out_dir already holds a checkpoint, training continues from it (a requeued\n"
     "job just continues). SIGTERM, SIGUSR1 or SIGINT: the current step finishes, a\n"
     "checkpoint is written and every rank exits with 75 (requeue me); a second\n"
     "SIGINT exits at once.\n\n"
     "options:\n"
     "  --resume RUN_DIR  continue the run in RUN_DIR from its newest checkpoint\n"
     "  --set KEY=VALUE   override a config value (repeatable); on resume only\n"
     "                    train.steps, intervals, train.threads, train.step_timeout_s,\n"
     "                    eval.*, data paths and data.cache_mb (a refused resume\n"
     "                    lists every differing key)\n"
     "  --progress MODE   lines (one line per update, for logs), live (one line\n"
     "                    redrawn on a terminal) or auto (default: live only on a real\n"
     "                    terminal, never under mpirun/srun); env YOTO_PROGRESS\n"
     "  --force           start over in an out_dir that holds another config but no\n"
     "                    checkpoint (refused otherwise)\n"
     "  -h, --help        this text\n",
     run_train, true},
    {"eval", "RUN_DIR|CHECKPOINT [--split S] [--beta LIST] [--json] [--set KEY=VALUE]...",
     "Evaluates a trained model over a list of beta values: conditioned on\n"
     "(w_kl = beta, w_rec = eval.w_rec), the mean reconstruction_loss, kl_loss and\n"
     "full_loss over the first eval.max_batches x eval.batch_size images of each\n"
     "eval split, sharded over the ranks.\n\n"
     "The rows go into RUN_DIR/eval/step-N.h5 (.csv and .md beside it) of the\n"
     "checkpoint's step and are merged with what is there: a row replaces the row\n"
     "of the same beta, w_rec, eval.z and number of images; the others stay. So\n"
     "'--beta 3' adds beta 3 to the table. Every table records what made it\n"
     "(checkpoint, step, param_checksum, eval settings, images, yoto version);\n"
     "docs/FORMATS.md. When the split's data file has factor labels (3dshapes'\n"
     "/labels), each row also has the disentanglement metrics of the posterior\n"
     "means: mig, sap, factorvae, dci_disentanglement, dci_completeness\n"
     "(eval.metrics: auto | on | off; docs/METRICS.md).\n\n"
     "options:\n"
     "  --split S         one split of data.splits (default: eval.splits)\n"
     "  --beta LIST       comma-separated betas (default: eval.betas; for a fixed-beta\n"
     "                    model without conditioning, its own beta)\n"
     "  --json            print the step's merged tables as one JSON object on stdout\n"
     "                    instead of the text (for pipelines)\n"
     "  --set KEY=VALUE   e.g. --set eval.z=mean --set eval.max_batches=10\n"
     "  -h, --help        this text\n",
     run_eval, true},
    {"sample", "RUN_DIR|CHECKPOINT --out FILE.png [--beta LIST] [--n N] [--scale K] [--seed S]",
     "Decodes N prior samples z ~ N(0, I) at each beta (the same z in every row)\n"
     "into a PNG grid, one row per beta, labelled 'beta = 8' in a left margin.\n\n"
     "options:\n"
     "  --out FILE.png    the image to write\n"
     "  --beta LIST       comma-separated betas (default: eval.betas)\n"
     "  --n N             images per row (default 8)\n"
     "  --scale K         draw every image pixel as K x K pixels (default: the\n"
     "                    smallest K that makes images at least 96 pixels tall)\n"
     "  --seed S          which z are drawn (default: the run's experiment.seed)\n"
     "  --set KEY=VALUE   override a config value\n"
     "  -h, --help        this text\n",
     run_sample, true},
    {"reconstruct",
     "RUN_DIR|CHECKPOINT --out FILE.png [--beta LIST] [--n N] [--split S] [--scale K]",
     "Takes the first N images of a split (first row, labelled 'input') and\n"
     "reconstructs them from the posterior mean at each beta (one row per beta,\n"
     "labelled 'beta = 8') into a PNG grid.\n\n"
     "options:\n"
     "  --out FILE.png    the image to write\n"
     "  --beta LIST       comma-separated betas (default: eval.betas)\n"
     "  --n N             images per row (default 8)\n"
     "  --split S         the split to take images from (default: 'test' if the\n"
     "                    config has it, else the first of eval.splits)\n"
     "  --scale K         draw every image pixel as K x K pixels (default: the\n"
     "                    smallest K that makes images at least 96 pixels tall)\n"
     "  --set KEY=VALUE   override a config value\n"
     "  -h, --help        this text\n",
     run_reconstruct, true},
    {"encode", "RUN_DIR|CHECKPOINT --out FILE.h5 [--beta LIST] [--split S] [--force] [options]",
     "Encodes every image of a split at each beta: the posterior means and sigmas\n"
     "(float32 [betas, N, latent]), the images' row numbers in the data file and the\n"
     "file's labels, sharded over the ranks and written collectively to one HDF5 file\n"
     "(docs/FORMATS.md). When the labels are factor labels (3dshapes' /labels, a class\n"
     "label) it also computes MIG, SAP, the FactorVAE score and DCI per beta, stores\n"
     "and prints them (docs/METRICS.md). Prints the encoding throughput.\n\n"
     "options:\n"
     "  --out FILE.h5     the file to write (under a temporary name until complete)\n"
     "  --force           replace an existing FILE.h5 (else exit code 2)\n"
     "  --beta LIST       comma-separated betas (default: eval.betas); betas outside\n"
     "                    the trained range (loss_weights.kl) get a warning\n"
     "  --split S         a split of data.splits (default: the first eval split)\n"
     "  --labels DATASET  the labels in the split's file (default: 'labels' beside the\n"
     "                    images dataset, when there is one); 'none': no labels\n"
     "  --metrics         require the metrics: no usable labels is an error (exit 2)\n"
     "  --no-metrics      store the labels but compute no metrics\n"
     "  --set KEY=VALUE   e.g. --set eval.batch_size=256, --set eval.max_batches=10\n"
     "                    (default: the whole split)\n"
     "  -h, --help        this text\n",
     run_encode, true},
    {"bench",
     "CONFIG [--steps N] [--warmup N] [--threads T] [--json] [--data | --comm [--comm-max-mb M]] "
     "[--drift P] [--set KEY=VALUE]...",
     "Times the full training step (forward, backward, allreduce, Adam) on synthetic\n"
     "data of the config's shape and prints median images/s, the analytic FLOPs per\n"
     "image, achieved GFLOP/s, this machine's single-thread 1024^3 sgemm GFLOP/s\n"
     "measured in the same run and the ratio of the two, time per phase and per\n"
     "layer, the OpenBLAS kernels and threads, and peak memory. Under mpirun every\n"
     "rank trains a replica and the gradient is allreduced, as in training.\n\n"
     "options:\n"
     "  --steps N         timed steps, median reported (default 20)\n"
     "  --warmup N        untimed steps first (default 3)\n"
     "  --threads T       OpenBLAS threads per rank (default: train.threads)\n"
     "  --json            one JSON object instead of the table (for scripts)\n"
     "  --data            also time the data pipeline on the config's train split\n"
     "                    (the file must exist) against what the step consumes\n"
     "  --comm            instead: the gradient allreduce's time against message size\n"
     "                    (4 KiB .. 64 MiB), blocking and bucketed, at this rank count\n"
     "                    (what analysis/scaling.py fits its communication model to)\n"
     "  --comm-max-mb M   --comm up to M MiB instead of 64: the sizes 4 KiB x 4^k that\n"
     "                    fit (1: five sizes, a quick check; at most 16384)\n"
     "  --drift P         the sgemm is measured again after the steps; warn when it\n"
     "                    moved by P percent or more (default 10), or when ranks waited\n"
     "                    P percent of a step for the slowest one: the machine's load\n"
     "                    changed while the run timed, so its ratios are unreliable\n"
     "  --set KEY=VALUE   override a config value, e.g. --set train.batch_per_rank=32\n"
     "  -h, --help        this text\n",
     run_bench, true},
};

static const command *find_command(const char *name) {
    for (size_t i = 0; i < YT_ARRAY_LEN(commands); i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

static void print_usage(FILE *f) {
    fprintf(f,
            "usage: yoto <command> [options]\n"
            "       yoto --version | --help\n\n"
            "yoto trains one loss-conditional beta-VAE (You Only Train Once) that serves\n"
            "every beta of a range, data-parallel over MPI. Commands:\n\n");
    for (size_t i = 0; i < YT_ARRAY_LEN(commands); i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].synopsis);
    fprintf(f,
            "\n'yoto <command> --help' describes one command. Run in parallel with\n"
            "  mpirun -np 4 bin/yoto train configs/fashion_mnist_conv_vae_yoto.yaml\n"
            "Exit codes: 0 done, 1 runtime failure, 2 usage/config/input error,\n"
            "75 stopped by a signal with a checkpoint written (requeue the job),\n"
            "124 a rank stopped making progress (train.step_timeout_s; docs/CLI.md).\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        print_usage(stderr);
        return YT_ERR_USAGE;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        printf("yoto %s (git %s, %s build)\n", yt_version(), yt_git_commit(), REAL_NAME);
        return YT_OK;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        print_usage(stdout);
        return YT_OK;
    }
    const command *c = find_command(argv[1]);
    if (!c) return usage_error(NULL, "unknown command '%s'", argv[1]);
    h5io_quiet(); /* our messages name the file and dataset; YOTO_HDF5_DEBUG=1 shows HDF5's */
    if (!model_check_layout_env()) return YT_ERR_USAGE;
    if (!c->needs_mpi) return c->run(argc - 1, argv + 1);
    dist_init(&argc, &argv);
    int rc = c->run(argc - 1, argv + 1);
    dist_finalize();
    return rc;
}
