/* main.c — the command line: parse, dispatch, exit with the agreed code.
 * No numerics and no I/O policy here; each command calls its module. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "common.h"
#include "config.h"
#include "dist.h"

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

/* ---- yoto bench ---------------------------------------------------------- */

enum { OPT_STEPS = 1100, OPT_WARMUP, OPT_THREADS, OPT_JSON };

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
    case OPT_STEPS: return parse_count("--steps", arg, 1, &b->o.steps);
    case OPT_WARMUP: return parse_count("--warmup", arg, 0, &b->o.warmup);
    case OPT_THREADS: return parse_count("--threads", arg, 1, &b->o.threads);
    case OPT_JSON: b->o.json = true; return YT_OK;
    }
    return YT_ERR_USAGE;
}

static int run_bench(int argc, char **argv) {
    const command *c = find_command("bench");
    static const struct option opts[] = {
        {"set", required_argument, NULL, OPT_SET},
        {"steps", required_argument, NULL, OPT_STEPS},
        {"warmup", required_argument, NULL, OPT_WARMUP},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"json", no_argument, NULL, OPT_JSON},
        {0},
    };
    bench_cli b = {.o = {.steps = 20, .warmup = 3}};
    bool help;
    int first = parse_options(c, argc, argv, opts, handle_bench, &b, &help);
    if (first < 0) return help ? YT_OK : YT_ERR_USAGE;
    if (argc - first != 1) return usage_error(c->name, "expects one CONFIG file%s", "");
    b.o.config_path = argv[first];
    yoto_config *cfg = yt_calloc(1, sizeof *cfg);
    int rc = dist_agree(config_load(cfg, argv[first], b.sets.sets, b.sets.nsets));
    if (rc == YT_OK) rc = dist_agree(bench_run(cfg, &b.o));
    if (rc != YT_OK) dist_report_error();
    free(cfg);
    return rc;
}

/* ---- commands not built yet ---------------------------------------------- */

static int not_built(int argc, char **argv) {
    const command *c = find_command(argv[0]);
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_command_help(c);
            printf("\n(not built yet in this version)\n");
            return YT_OK;
        }
    (void)argc;
    fprintf(stderr, "yoto: '%s' is not built yet in this version (%s)\n", c->name,
            yt_version());
    return YT_ERR_RUNTIME;
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
    {"prepare", "fashion-mnist|mnist|cifar10 DIR OUT.h5 | shapes SIZE OUT.h5",
     "Converts a data set to yoto's HDF5 layout (uint8 [N, H, W, C] images, labels,\n"
     "/train and /test groups).\n",
     not_built, true},
    {"data-info", "FILE.h5", "Prints what an HDF5 data file holds and validates it for training.\n",
     not_built, true},
    {"train", "CONFIG [--set KEY=VALUE]... [--resume RUN_DIR]",
     "Trains the loss-conditional VAE, data-parallel over the MPI ranks.\n", not_built, true},
    {"eval", "RUN_DIR|CHECKPOINT [--split S] [--beta LIST]",
     "Evaluates a model over a list of beta values and writes the tables.\n", not_built, true},
    {"sample", "RUN_DIR|CHECKPOINT --beta LIST --n N --out FILE.png",
     "Decodes prior samples at each beta into a PNG grid.\n", not_built, true},
    {"reconstruct", "RUN_DIR|CHECKPOINT --beta LIST --n N --out FILE.png",
     "Reconstructs images of a split at each beta into a PNG grid.\n", not_built, true},
    {"bench", "CONFIG [--steps N] [--warmup N] [--threads T] [--json] [--set KEY=VALUE]...",
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
            "75 stopped by a signal with a checkpoint written (requeue the job).\n");
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
    if (!c->needs_mpi) return c->run(argc - 1, argv + 1);
    dist_init(&argc, &argv);
    int rc = c->run(argc - 1, argv + 1);
    dist_finalize();
    return rc;
}
