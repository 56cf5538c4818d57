/* config.h — one typed, validated experiment configuration.
 *
 * A YAML file (libyaml) plus `--set section.key=value` overrides resolve into
 * one `yoto_config`. Every key has a type, a default or is required, and a
 * range where one makes sense; docs/CONFIG.md lists them all. Errors name the
 * file, line and column, the key, and the expected vs found value, and return
 * YT_ERR_USAGE. config_to_yaml() prints the fully resolved config; fed back
 * through config_load_text() it resolves to the same struct.
 *
 * The struct holds no pointers: it can be copied, compared field by field,
 * and broadcast as bytes.
 */
#ifndef YOTO_CONFIG_H
#define YOTO_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CFG_LIST_MAX 64   /* longest numeric list (β lists, fc sizes, ...) */
#define CFG_SPLITS_MAX 8  /* data.splits entries */
#define CFG_PREOPS_MAX 16 /* preprocessing ops per pipeline */
#define CFG_PATH_MAX 512  /* file and directory names */
#define CFG_NAME_MAX 64   /* split names, dataset paths are CFG_PATH_MAX */
#define CFG_LOCS_MAX 512  /* remembered key locations */

typedef struct {
    int n;
    long v[CFG_LIST_MAX];
} cfg_ints;

typedef struct {
    int n;
    double v[CFG_LIST_MAX];
} cfg_reals;

/* One named row range of one dataset. */
typedef struct {
    char name[CFG_NAME_MAX];    /* "train", "valid", "test", ...            */
    char file[CFG_PATH_MAX];    /* HDF5 file; empty = data.file             */
    char dataset[CFG_PATH_MAX]; /* dataset path inside it: "images", "train/images" */
    char range[CFG_NAME_MAX];   /* "" (whole), "20%:", ":20%", "0:1000"     */
} cfg_split;

/* One preprocessing op, parsed from its text form "name(args)". */
typedef enum {
    PRE_VALUE_RANGE, /* value_range(a, b): uint8 [0,255] -> [a, b]        */
    PRE_RESIZE,      /* resize(n): bilinear to n x n                       */
    PRE_RANDOM_CROP, /* random_crop(n): n x n window at a random position  */
    PRE_FLIP_LR,     /* flip_lr(): mirror left-right with probability 1/2  */
    PRE_PAD          /* pad(n): zero-pad centred to n x n (28 -> 32)       */
} cfg_preop_kind;

typedef struct {
    cfg_preop_kind kind;
    double a, b; /* value_range bounds */
    int n;       /* resize / random_crop / pad size */
} cfg_preop;

typedef struct {
    int n;
    cfg_preop op[CFG_PREOPS_MAX];
} cfg_pipeline;

/* One conv net (encoder or decoder) of ConditionalConvnet. */
typedef struct {
    int num_blocks;
    int layers_per_block;
    int base_channels; /* block b has base_channels * 2^b channels */
    cfg_ints fc_sizes; /* dense layer widths, in order of application */
    int reshape[3];    /* decoder: (h, w, c) after the fc MLP; encoder: unused */
    int channels_out;  /* decoder: channels of the final conv; encoder: unused */
} cfg_net;

typedef enum { OUT_BERNOULLI, OUT_GAUSSIAN } cfg_output;
typedef enum { INIT_FAN_IN, INIT_FAN_AVG } cfg_init_mode;
typedef enum { COND_FILM, COND_NONE, COND_GATED } cfg_cond_type;
typedef enum { LW_YOTO, LW_FIXED } cfg_lw_mode;
typedef enum { DIST_LOG_UNIFORM, DIST_UNIFORM, DIST_FIXED } cfg_dist;
typedef enum { TRANSFORM_LOG, TRANSFORM_IDENTITY } cfg_transform;
typedef enum { ALLREDUCE_BUCKETED, ALLREDUCE_BLOCKING, ALLREDUCE_SHARDED } cfg_allreduce;
typedef enum { EVAL_Z_SAMPLE, EVAL_Z_MEAN } cfg_eval_z;
typedef enum { EVAL_METRICS_AUTO, EVAL_METRICS_ON, EVAL_METRICS_OFF } cfg_eval_metrics;

/* The distribution one loss weight is drawn from. */
typedef struct {
    cfg_dist distribution;
    double low, high; /* log_uniform / uniform bounds */
    double value;     /* fixed */
} cfg_weight_dist;

/* Where a key was set: for messages that must name file:line:column after load
 * (a dataset that does not match the model, a checkpoint of another shape). */
typedef struct {
    char key[96]; /* "data.splits[1].range", "model.latent_dim" */
    int line, column; /* 1-based; line -(k+1), column 0: set by the k-th --set.
                       * Keys left at their default have no entry. */
} cfg_loc;

/* experiment: what the run is called, its seed, where it writes. */
typedef struct {
    char name[CFG_NAME_MAX];
    uint64_t seed;
    char out_dir[CFG_PATH_MAX]; /* default: runs/<name> */
} cfg_experiment;

/* data: files, splits, preprocessing, how the train split is read. */
typedef struct {
    char file[CFG_PATH_MAX]; /* default file of every split */
    int n_splits;
    cfg_split splits[CFG_SPLITS_MAX];
    char train_split[CFG_NAME_MAX]; /* the split training reads */
    cfg_pipeline preprocess_train;  /* applied in order to train images */
    cfg_pipeline preprocess_eval;   /* applied to eval/sample/reconstruct */
    long cache_mb;        /* a shard up to this size is read once and kept */
    long stream_block_mb; /* larger shards stream in blocks of this size  */
} cfg_data;

/* model: the network (model_create reads only this section). */
/* model.conditioning */
typedef struct {
    cfg_cond_type type;
    cfg_ints hidden_sizes; /* MLP hidden widths; output width = C */
    double scales_mult, scales_add, shifts_mult, shifts_add;
} cfg_conditioning;

typedef struct {
    int input_shape[3]; /* (h, w, c) the network sees, after preprocessing */
    int latent_dim;
    cfg_output output_distribution;
    double eps;         /* sigma = eps + softplus(.) */
    double alpha;       /* leaky ReLU slope in conv blocks (0.3) */
    double dense_alpha; /* leaky ReLU slope between dense layers (0.2) */
    cfg_init_mode kernel_init;
    bool final_sigmoid; /* must be false (both reference configs) */
    double width;       /* multiplies every channel count and hidden width (1 = as given) */
    cfg_net encoder, decoder;
    cfg_conditioning conditioning;
} cfg_model;

/* loss_weights: how (w_kl, w_rec) are drawn and fed to the network (loss.h). */
typedef struct {
    cfg_lw_mode mode; /* yoto: sampled + fed to the net; fixed: one vector */
    bool per_sample;  /* one draw per image (true) or per batch */
    cfg_weight_dist kl, reconstruction;
    cfg_transform transform; /* conditioning input f(w) */
    bool normalize;          /* divide by the geometric mean */
} cfg_loss_weights;

/* optimizer: Adam, its learning-rate schedule, weight decay (optim.h). */
typedef struct {
    double lr, beta1, beta2, epsilon;
    double decay_factor;
    cfg_ints decay_steps; /* lr = lr * decay_factor^k after the k-th */
    double weight_decay;  /* decoupled, non-conditioning variables only */
} cfg_optimizer;

/* train: batch, length, intervals, threads, the gradient allreduce. */
typedef struct {
    long batch_size;     /* global batch, split over ranks; 0 = unset */
    long batch_per_rank; /* per-rank batch (weak scaling); 0 = unset  */
    long steps;
    long checkpoint_every;
    long keep_checkpoints;
    long log_every;
    int threads; /* OpenBLAS threads per rank */
    cfg_allreduce allreduce;
    double bucket_mb; /* gradient bucket size for the bucketed allreduce */
    double step_timeout_s; /* watchdog limit of a step's phases; 0 = auto (watchdog.h) */
} cfg_train;

/* eval: the beta tables (eval.h). */
typedef struct {
    long batch_size;
    long max_batches;
    long every; /* evaluate every N training steps; 0 = only on request */
    int n_splits;
    char splits[CFG_SPLITS_MAX][CFG_NAME_MAX]; /* names from data.splits */
    cfg_reals betas; /* w_kl values; w_rec = eval.w_rec */
    double w_rec;
    cfg_eval_z z;
    cfg_eval_metrics metrics; /* disentanglement columns: when the split has labels, required, never */
} cfg_eval;

/* The whole configuration: one typed section per YAML section. Modules take
 * the section they read (model_create a cfg_model, optim a cfg_optimizer). */
typedef struct {
    cfg_experiment experiment;
    cfg_data data;
    cfg_model model;
    cfg_loss_weights loss_weights;
    cfg_optimizer optimizer;
    cfg_train train;
    cfg_eval eval;
    /* provenance */
    char source[CFG_PATH_MAX]; /* file name, or "<checkpoint>" etc. */
    int n_locs;
    cfg_loc locs[CFG_LOCS_MAX];
} yoto_config;

/* Loads path, applies the overrides "key.path=value" in order, validates.
 * sets may be NULL when nsets is 0. Returns YT_OK or YT_ERR_USAGE (message in
 * yt_errmsg()). cfg is fully written either way. */
int config_load(yoto_config *cfg, const char *path, const char *const *sets, int nsets);
/* The same from YAML text held in memory; source names it in messages. */
int config_load_text(yoto_config *cfg, const char *text, const char *source,
                     const char *const *sets, int nsets);
/* The fully resolved config as YAML (malloc'd, caller frees). */
char *config_to_yaml(const yoto_config *cfg);
/* Where key ("model.latent_dim", "data.splits[1].range") was set, for
 * messages: "file:line:column", "--set key=value" (the value as resolved), or
 * "file (default)". The string lives until the next call. */
const char *config_where(const yoto_config *cfg, const char *key);
/* Whether a run that resumes from a checkpoint may use config `now` when the
 * checkpoint holds `stored` (its /config, loaded): YT_OK when they differ
 * only in keys that may change on resume (the schema's resume column:
 * config_resumable_keys), else YT_ERR_USAGE with one message naming every
 * other differing key, "KEY: checkpoint has X, this run has Y (from WHERE)"
 * (key paths as config_where's, values as YAML, WHERE from config_where of
 * now), the keys that may change, and what to do instead. A list of another
 * length is one difference (data.splits, optimizer.decay_steps). ckpt_path
 * only names the checkpoint in the message. Local: call it on every rank
 * and agree (dist_agree). */
int config_resume_check(const yoto_config *stored, const yoto_config *now, const char *ckpt_path);
/* The keys a resumed run may change, from the schema: "experiment.out_dir,
 * data.file, data.splits[].file, ..., eval.*" (NAME[] an entry of a list of
 * mappings, NAME.* every key of a mapping). For messages, help and docs. */
void config_resumable_keys(char *buf, size_t size);
/* The split called name, or NULL. */
const cfg_split *config_split(const yoto_config *cfg, const char *name);
/* Resolves a row range ("", "20%:", ":20%", "100:200", "-10%:", "5000") of a
 * dataset with nrows rows to [*begin, *end). Percent boundaries round to the
 * nearest row, ties to even (TFDS's default); negative boundaries count from
 * the end; boundaries are clamped to [0, nrows]. YT_ERR_USAGE on bad syntax
 * (message names the text). Used by config validation (syntax, nrows = 0 is
 * fine) and by the data module. */
int config_range_resolve(const char *range, long nrows, long *begin, long *end);
/* Parses one preprocessing op in the config's syntax ("value_range(0, 1)",
 * "pad(32)", ...); YT_ERR_USAGE with a message naming the text and the ops. */
int config_preop_parse(const char *text, cfg_preop *op);
/* Text form of one preprocessing op, e.g. "value_range(-1, 1)". */
void config_preop_text(const cfg_preop *op, char *buf, int size);

#endif
