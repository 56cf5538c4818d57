/* metrics.c — disentanglement metrics of labelled codes (see metrics.h; every
 * choice, and where it follows or departs from disentanglement_lib, is in
 * docs/METRICS.md). Plain serial loops in double: the sizes are small
 * (10,000 rows x tens of codes) and the results must not depend on BLAS. */
#include "metrics.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "rng.h"

#define LASSO_TOL 1e-13 /* coordinate descent stops when no weight moves more */
#define LASSO_MAX_SWEEPS 100000
#define DCI_EPS 1e-11 /* added to importances before the entropies (disentanglement_lib) */

metrics_options metrics_options_default(void) {
    return (metrics_options){.seed = 0,
                             .n_train = METRICS_N_TRAIN,
                             .n_test = METRICS_N_TEST,
                             .fvae_batch = METRICS_FVAE_BATCH,
                             .fvae_train = METRICS_FVAE_TRAIN,
                             .fvae_eval = METRICS_FVAE_EVAL,
                             .fvae_var = METRICS_FVAE_VAR,
                             .fvae_prune = METRICS_FVAE_PRUNE,
                             .lasso_alpha = METRICS_LASSO_ALPHA};
}

metrics_split metrics_split_sizes(long n, const metrics_options *o) {
    metrics_split s;
    s.n_mig = YT_MIN(n, o->n_train);
    s.n_var = YT_MIN(n, o->fvae_var);
    if (n >= o->n_train + o->n_test) {
        s.n_tr = o->n_train;
        s.n_te = o->n_test;
    } else { /* fewer rows: the same train:test proportion */
        s.n_te = (long)((double)n * o->n_test / (double)(o->n_train + o->n_test));
        s.n_tr = n - s.n_te;
    }
    return s;
}

/* The factors with more than one value among all n rows: used[0..return). */
static int used_factors(const metrics_data *d, int *used) {
    int nu = 0;
    for (int k = 0; k < d->nfactors; k++) {
        bool varies = false;
        for (long i = 1; i < d->n && !varies; i++)
            varies = d->factors[i * d->nfactors + k] != d->factors[k];
        if (varies) used[nu++] = k;
    }
    return nu;
}

static double code(const metrics_data *d, long row, int i) {
    return d->codes[(size_t)row * d->latent + i];
}
static int factor(const metrics_data *d, long row, int k) {
    return d->factors[(size_t)row * d->nfactors + k];
}

/* ---- MIG ---------------------------------------------------------------------------------- */

/* Bins 0..19 of code i over rows: np.digitize(x, np.histogram(x, 20)[1][:-1]) - 1, i.e. the
 * number of left edges lo + b * step (b = 0..19, NumPy's linspace) at or below x, minus one. */
static void discretize(const metrics_data *d, int i, const long *rows, long n, uint8_t *bin) {
    double lo = INFINITY, hi = -INFINITY;
    for (long r = 0; r < n; r++) {
        lo = fmin(lo, code(d, rows[r], i));
        hi = fmax(hi, code(d, rows[r], i));
    }
    if (lo == hi) { /* np.histogram's range for constant data */
        lo -= 0.5;
        hi += 0.5;
    }
    const double step = (hi - lo) / METRICS_MIG_BINS;
    double edge[METRICS_MIG_BINS];
    for (int b = 0; b < METRICS_MIG_BINS; b++)
        edge[b] = (double)b * step + lo;
    for (long r = 0; r < n; r++) {
        double x = code(d, rows[r], i);
        int b = (int)YT_MIN((double)(METRICS_MIG_BINS - 1), fmax(0.0, (x - lo) / step));
        while (b + 1 < METRICS_MIG_BINS && edge[b + 1] <= x)
            b++;
        while (b > 0 && edge[b] > x)
            b--;
        bin[r] = (uint8_t)b;
    }
}

/* discrete mutual information (nats) of bins [n] and factor k over rows, given
 * the factor's value counts cnt [S] */
static double mutual_info(const metrics_data *d, const uint8_t *bin, int k, const long *rows,
                          long n, const long *cnt, long *table) {
    const int S = d->sizes[k];
    long rsum[METRICS_MIG_BINS] = {0};
    memset(table, 0, (size_t)METRICS_MIG_BINS * S * sizeof *table);
    for (long r = 0; r < n; r++) {
        table[(size_t)bin[r] * S + factor(d, rows[r], k)]++;
        rsum[bin[r]]++;
    }
    double mi = 0;
    for (int a = 0; a < METRICS_MIG_BINS; a++)
        for (int v = 0; v < S; v++) {
            long nab = table[(size_t)a * S + v];
            if (nab > 0) mi += (double)nab / n * log((double)n * nab / ((double)rsum[a] * cnt[v]));
        }
    return mi;
}

double metrics_mig(const metrics_data *d, const long *rows, long n) {
    const int L = d->latent;
    if (L < 2 || n < 1) return NAN;
    int *used = yt_malloc((size_t)d->nfactors * sizeof *used);
    int nu = used_factors(d, used), smax = 1;
    for (int j = 0; j < nu; j++)
        smax = YT_MAX(smax, d->sizes[used[j]]);
    uint8_t *bins = yt_malloc((size_t)L * n);
    for (int i = 0; i < L; i++)
        discretize(d, i, rows, n, bins + (size_t)i * n);
    long *cnt = yt_malloc((size_t)smax * sizeof *cnt);
    long *table = yt_malloc((size_t)METRICS_MIG_BINS * smax * sizeof *table);
    double sum = 0;
    int nsum = 0;
    for (int j = 0; j < nu; j++) {
        const int k = used[j], S = d->sizes[k];
        memset(cnt, 0, (size_t)S * sizeof *cnt);
        for (long r = 0; r < n; r++)
            cnt[factor(d, rows[r], k)]++;
        double h = 0; /* H(v_k), nats */
        for (int v = 0; v < S; v++)
            if (cnt[v] > 0) h -= (double)cnt[v] / n * log((double)cnt[v] / n);
        if (!(h > 0)) continue; /* constant on these rows: no information to share */
        double m1 = -INFINITY, m2 = -INFINITY;
        for (int i = 0; i < L; i++) {
            double m = mutual_info(d, bins + (size_t)i * n, k, rows, n, cnt, table);
            if (m > m1) {
                m2 = m1;
                m1 = m;
            } else if (m > m2) {
                m2 = m;
            }
        }
        sum += (m1 - m2) / h;
        nsum++;
    }
    free(used);
    free(bins);
    free(cnt);
    free(table);
    return nsum ? sum / nsum : NAN;
}

/* ---- SAP ---------------------------------------------------------------------------------- */

/* Test accuracy of the one-code nearest-class-mean classifier: code i predicts
 * factor k by the class whose train mean of code i is nearest (ties: the
 * lowest class). */
static double one_code_accuracy(const metrics_data *d, int i, int k, const long *train, long n_tr,
                                const long *test, long n_te, double *mean, long *cnt) {
    const int S = d->sizes[k];
    memset(mean, 0, (size_t)S * sizeof *mean);
    memset(cnt, 0, (size_t)S * sizeof *cnt);
    for (long r = 0; r < n_tr; r++) {
        int v = factor(d, train[r], k);
        mean[v] += code(d, train[r], i);
        cnt[v]++;
    }
    for (int v = 0; v < S; v++)
        if (cnt[v]) mean[v] /= (double)cnt[v];
    long correct = 0;
    for (long r = 0; r < n_te; r++) {
        double x = code(d, test[r], i), best = INFINITY;
        int pred = -1;
        for (int v = 0; v < S; v++)
            if (cnt[v] && fabs(x - mean[v]) < best) {
                best = fabs(x - mean[v]);
                pred = v;
            }
        correct += pred == factor(d, test[r], k);
    }
    return (double)correct / (double)n_te;
}

double metrics_sap(const metrics_data *d, const long *train, long n_tr, const long *test,
                   long n_te) {
    const int L = d->latent;
    if (L < 2 || n_tr < 1 || n_te < 1) return NAN;
    int *used = yt_malloc((size_t)d->nfactors * sizeof *used);
    int nu = used_factors(d, used), smax = 1;
    for (int j = 0; j < nu; j++)
        smax = YT_MAX(smax, d->sizes[used[j]]);
    double *mean = yt_malloc((size_t)smax * sizeof *mean);
    long *cnt = yt_malloc((size_t)smax * sizeof *cnt);
    double sum = 0;
    for (int j = 0; j < nu; j++) {
        double s1 = -INFINITY, s2 = -INFINITY; /* the two best codes' accuracies */
        for (int i = 0; i < L; i++) {
            double s = one_code_accuracy(d, i, used[j], train, n_tr, test, n_te, mean, cnt);
            if (s > s1) {
                s2 = s1;
                s1 = s;
            } else if (s > s2) {
                s2 = s;
            }
        }
        sum += s1 - s2;
    }
    free(used);
    free(mean);
    free(cnt);
    return nu ? sum / nu : NAN;
}

/* ---- FactorVAE ------------------------------------------------------------------------------ */

typedef struct {
    const metrics_data *d;
    const metrics_options *o;
    int nu;
    const int *used;
    long **order, **start; /* per used factor: rows grouped by value, group starts [S+1] */
    const double *gvar;    /* [L] global variances */
    const bool *active;    /* [L] */
    double *batch;         /* [batch][L] scratch */
} fvae_ctx;

/* rows of used factor j sorted by value (counting sort, stable) */
static void group_rows(fvae_ctx *c, int j) {
    const metrics_data *d = c->d;
    const int k = c->used[j], S = d->sizes[k];
    long *start = yt_calloc((size_t)S + 1, sizeof *start), *order = yt_malloc(d->n * sizeof *order);
    for (long r = 0; r < d->n; r++)
        start[factor(d, r, k) + 1]++;
    for (int v = 0; v < S; v++)
        start[v + 1] += start[v];
    long *fill = yt_malloc((size_t)S * sizeof *fill);
    memcpy(fill, start, (size_t)S * sizeof *fill);
    for (long r = 0; r < d->n; r++)
        order[fill[factor(d, r, k)]++] = r;
    free(fill);
    c->order[j] = order;
    c->start[j] = start;
}

/* One vote (disentanglement_lib's _generate_training_sample): a factor j, a
 * batch of rows sharing one value of it; returns the active code whose
 * variance over the batch, relative to its global variance, is smallest. */
static int fvae_vote(const fvae_ctx *c, uint32_t phase, long v, int *j_out) {
    const metrics_data *d = c->d;
    const int L = d->latent, B = c->o->fvae_batch;
    rng_stream s = rng_stream_make(c->o->seed, RNG_METRICS, phase, (uint32_t)v, 0);
    int j = (int)rng_below(&s, (uint64_t)c->nu);
    long anchor = (long)rng_below(&s, (uint64_t)d->n);
    int val = factor(d, anchor, c->used[j]);
    long g0 = c->start[j][val], gn = c->start[j][val + 1] - g0;
    for (int t = 0; t < B; t++) {
        long row = c->order[j][g0 + (long)rng_below(&s, (uint64_t)gn)];
        memcpy(c->batch + (size_t)t * L, d->codes + (size_t)row * L, (size_t)L * sizeof(double));
    }
    int best = -1;
    double best_ratio = INFINITY;
    for (int i = 0; i < L; i++) {
        if (!c->active[i]) continue;
        double m = 0, ss = 0;
        for (int t = 0; t < B; t++)
            m += c->batch[(size_t)t * L + i];
        m /= B;
        for (int t = 0; t < B; t++) {
            double e = c->batch[(size_t)t * L + i] - m;
            ss += e * e;
        }
        double ratio = ss / (B - 1) / c->gvar[i];
        if (best < 0 || ratio < best_ratio) {
            best = i;
            best_ratio = ratio;
        }
    }
    *j_out = j;
    return best;
}

static void fvae_votes(const fvae_ctx *c, uint32_t phase, long nvotes, long *votes) {
    const int L = c->d->latent;
    memset(votes, 0, (size_t)c->nu * L * sizeof *votes);
    for (long v = 0; v < nvotes; v++) {
        int j, i = fvae_vote(c, phase, v, &j);
        votes[(size_t)j * L + i]++;
    }
}

/* accuracy of the majority-vote classifier cls [L] on votes [nu][L] */
static double vote_accuracy(const long *votes, const int *cls, int nu, int L) {
    long hit = 0, all = 0;
    for (int j = 0; j < nu; j++)
        for (int i = 0; i < L; i++)
            all += votes[(size_t)j * L + i];
    for (int i = 0; i < L; i++)
        hit += votes[(size_t)cls[i] * L + i];
    return all ? (double)hit / (double)all : NAN;
}

/* code i's mean over rows, and the sum of squared deviations from it */
static void code_moments(const metrics_data *d, const long *rows, long n, int i, double *mean,
                         double *ss) {
    double m = 0, q = 0;
    for (long r = 0; r < n; r++)
        m += code(d, rows[r], i);
    m /= (double)n;
    for (long r = 0; r < n; r++)
        q += (code(d, rows[r], i) - m) * (code(d, rows[r], i) - m);
    *mean = m;
    *ss = q;
}

/* variances (ddof 1) of every code over rows */
static void code_variances(const metrics_data *d, const long *rows, long n, double *var) {
    for (int i = 0; i < d->latent; i++) {
        double m, ss;
        code_moments(d, rows, n, i, &m, &ss);
        var[i] = ss / (double)(n - 1);
    }
}

void metrics_factorvae(const metrics_data *d, const long *var_rows, long n_var,
                       const metrics_options *o, metrics_result *r) {
    const int L = d->latent;
    r->factorvae = r->factorvae_train = NAN;
    r->active_dims = 0;
    YT_CHECK(o->fvae_batch >= 2);
    if (n_var < 2 || L < 1) return;
    int *used = yt_malloc((size_t)d->nfactors * sizeof *used);
    double *gvar = yt_malloc((size_t)L * sizeof *gvar);
    bool *active = yt_malloc((size_t)L * sizeof *active);
    code_variances(d, var_rows, n_var, gvar);
    for (int i = 0; i < L; i++) {
        active[i] = sqrt(gvar[i]) >= o->fvae_prune;
        r->active_dims += active[i];
    }
    fvae_ctx c = {.d = d, .o = o, .used = used, .gvar = gvar, .active = active};
    c.nu = used_factors(d, used);
    if (c.nu >= 2 && r->active_dims == 0) r->factorvae = r->factorvae_train = 0; /* as the lib */
    if (c.nu >= 2 && r->active_dims > 0) {
        c.order = yt_calloc((size_t)c.nu, sizeof *c.order);
        c.start = yt_calloc((size_t)c.nu, sizeof *c.start);
        for (int j = 0; j < c.nu; j++)
            group_rows(&c, j);
        c.batch = yt_malloc((size_t)o->fvae_batch * L * sizeof *c.batch);
        long *votes = yt_malloc((size_t)c.nu * L * sizeof *votes);
        int *cls = yt_malloc((size_t)L * sizeof *cls);
        fvae_votes(&c, 1, o->fvae_train, votes);
        for (int i = 0; i < L; i++) { /* np.argmax over factors: the first largest */
            cls[i] = 0;
            for (int j = 1; j < c.nu; j++)
                if (votes[(size_t)j * L + i] > votes[(size_t)cls[i] * L + i]) cls[i] = j;
        }
        r->factorvae_train = vote_accuracy(votes, cls, c.nu, L);
        fvae_votes(&c, 2, o->fvae_eval, votes);
        r->factorvae = vote_accuracy(votes, cls, c.nu, L);
        for (int j = 0; j < c.nu; j++) {
            free(c.order[j]);
            free(c.start[j]);
        }
        free(c.order);
        free(c.start);
        free(c.batch);
        free(votes);
        free(cls);
    }
    free(used);
    free(gvar);
    free(active);
}

/* ---- DCI ------------------------------------------------------------------------------------ */

/* min_w 1/2 w'Gw - b'w + alpha |w|_1 (sklearn's Lasso objective on standardised data) by
 * cyclic coordinate descent; codes that are not live keep w = 0. */
static void lasso(const double *G, const double *b, int L, const bool *live, double alpha,
                  double *w) {
    memset(w, 0, (size_t)L * sizeof *w);
    for (int sweep = 0; sweep < LASSO_MAX_SWEEPS; sweep++) {
        double moved = 0;
        for (int i = 0; i < L; i++) {
            if (!live[i]) continue;
            double rho = b[i];
            for (int k = 0; k < L; k++)
                if (k != i) rho -= G[(size_t)i * L + k] * w[k];
            double v = rho > alpha ? rho - alpha : rho < -alpha ? rho + alpha : 0;
            v /= G[(size_t)i * L + i];
            moved = fmax(moved, fabs(v - w[i]));
            w[i] = v;
        }
        if (moved < LASSO_TOL) break;
    }
}

/* codes standardised over the train rows: z [n][L] (mean 0, variance 1; a
 * constant code stays 0 and is not live); G = z'z / n */
static void standardise(const metrics_data *d, const long *rows, long n, double *z, double *G,
                        bool *live) {
    const int L = d->latent;
    for (int i = 0; i < L; i++) {
        double m, ss;
        code_moments(d, rows, n, i, &m, &ss);
        double sd = sqrt(ss / (double)n);
        live[i] = sd > 0;
        for (long r = 0; r < n; r++)
            z[(size_t)r * L + i] = live[i] ? (code(d, rows[r], i) - m) / sd : 0;
    }
    for (int i = 0; i < L; i++)
        for (int k = 0; k < L; k++) {
            double s = 0;
            for (long r = 0; r < n; r++)
                s += z[(size_t)r * L + i] * z[(size_t)r * L + k];
            G[(size_t)i * L + k] = s / (double)n;
        }
}

/* importance R [L][nu]: for every class of a factor, one Lasso of the class's standardised
 * indicator on the standardised codes; R[i][j] = sum over the classes of |w_i|, each column
 * then divided by its sum (as GBT feature importances sum to 1) */
static void importance(const metrics_data *d, const int *used, int nu, const long *rows, long n,
                       double alpha, double *R) {
    const int L = d->latent;
    double *z = yt_malloc((size_t)n * L * sizeof *z), *G = yt_malloc((size_t)L * L * sizeof *G);
    double *b = yt_malloc((size_t)L * sizeof *b), *w = yt_malloc((size_t)L * sizeof *w);
    bool *live = yt_malloc((size_t)L * sizeof *live);
    standardise(d, rows, n, z, G, live);
    memset(R, 0, (size_t)L * nu * sizeof *R);
    for (int j = 0; j < nu; j++) {
        const int k = used[j];
        for (int v = 0; v < d->sizes[k]; v++) {
            long cnt = 0;
            memset(b, 0, (size_t)L * sizeof *b);
            for (long r = 0; r < n; r++)
                if (factor(d, rows[r], k) == v) {
                    cnt++;
                    for (int i = 0; i < L; i++)
                        b[i] += z[(size_t)r * L + i];
                }
            if (cnt == 0 || cnt == n) continue; /* no contrast in this class */
            double p = (double)cnt / (double)n, scale = 1.0 / ((double)n * sqrt(p * (1 - p)));
            for (int i = 0; i < L; i++)
                b[i] *= scale;
            lasso(G, b, L, live, alpha, w);
            for (int i = 0; i < L; i++)
                R[(size_t)i * nu + j] += fabs(w[i]);
        }
        double col = 0;
        for (int i = 0; i < L; i++)
            col += R[(size_t)i * nu + j];
        for (int i = 0; i < L && col > 0; i++)
            R[(size_t)i * nu + j] /= col;
    }
    free(z);
    free(G);
    free(b);
    free(w);
    free(live);
}

/* sum over the rows (by_row) or columns of R [L][nu] of (1 - entropy of the row/column with
 * DCI_EPS added, base its length) times its share of the total importance (shares 1/count
 * when R is all zero) */
static double dci_score(const double *R, int L, int nu, bool by_row) {
    const int outer = by_row ? L : nu, inner = by_row ? nu : L;
    double total = 0, score = 0;
    for (size_t t = 0; t < (size_t)L * nu; t++)
        total += R[t];
    for (int a = 0; a < outer; a++) {
        double s = 0, h = 0, part = 0;
        for (int q = 0; q < inner; q++)
            s += (by_row ? R[(size_t)a * nu + q] : R[(size_t)q * nu + a]) + DCI_EPS;
        for (int q = 0; q < inner; q++) {
            double x = by_row ? R[(size_t)a * nu + q] : R[(size_t)q * nu + a];
            double p = (x + DCI_EPS) / s;
            h -= p * log(p);
            part += x;
        }
        double weight = total > 0 ? part / total : 1.0 / outer;
        score += (1 - h / log((double)inner)) * weight;
    }
    return score;
}

void metrics_dci(const metrics_data *d, const long *train, long n_tr, double alpha, double *dis,
                 double *comp) {
    *dis = *comp = NAN;
    const int L = d->latent;
    if (n_tr < 2 || L < 1) return;
    int *used = yt_malloc((size_t)d->nfactors * sizeof *used);
    int nu = used_factors(d, used);
    if (nu >= 1) {
        double *R = yt_malloc((size_t)L * nu * sizeof *R);
        importance(d, used, nu, train, n_tr, alpha, R);
        if (nu >= 2) *dis = dci_score(R, L, nu, true);
        if (L >= 2) *comp = dci_score(R, L, nu, false);
        free(R);
    }
    free(used);
}

/* ---- all of them ------------------------------------------------------------------------------
 */

void metrics_compute(const metrics_data *d, const metrics_options *oin, metrics_result *r) {
    const metrics_options o = oin ? *oin : metrics_options_default();
    r->mig = r->sap = r->factorvae = r->factorvae_train = NAN;
    r->dci_disentanglement = r->dci_completeness = NAN;
    r->active_dims = 0;
    int *used = yt_malloc((size_t)YT_MAX(1, d->nfactors) * sizeof *used);
    r->factors_used = used_factors(d, used);
    free(used);
    bool finite = d->n > 0;
    for (size_t t = 0; finite && t < (size_t)d->n * d->latent; t++)
        finite = isfinite(d->codes[t]);
    if (!finite) return;
    uint64_t *perm = yt_malloc((size_t)d->n * sizeof *perm);
    rng_stream s = rng_stream_make(o.seed, RNG_METRICS, 0, 0, 0);
    rng_permutation(&s, perm, (uint64_t)d->n);
    long *rows = yt_malloc((size_t)d->n * sizeof *rows);
    for (long i = 0; i < d->n; i++)
        rows[i] = (long)perm[i];
    free(perm);
    metrics_split sp = metrics_split_sizes(d->n, &o);
    r->mig = metrics_mig(d, rows, sp.n_mig);
    r->sap = metrics_sap(d, rows, sp.n_tr, rows + sp.n_tr, sp.n_te);
    metrics_factorvae(d, rows, sp.n_var, &o, r);
    metrics_dci(d, rows, sp.n_tr, o.lasso_alpha, &r->dci_disentanglement, &r->dci_completeness);
    free(rows);
}

/* ---- labels ------------------------------------------------------------------------------------
 */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int metrics_labels_to_indices(const double *labels, long n, int k, int32_t *idx, int *sizes) {
    double *col = yt_malloc((size_t)YT_MAX(1L, n) * sizeof *col);
    int rc = YT_OK;
    for (int j = 0; j < k && rc == YT_OK; j++) {
        for (long i = 0; i < n && rc == YT_OK; i++) {
            col[i] = labels[(size_t)i * k + j];
            if (!isfinite(col[i]))
                rc = yt_fail(YT_ERR_USAGE, "label column %d, row %ld: %g is not a finite value", j,
                             i, col[i]);
        }
        if (rc != YT_OK) break;
        qsort(col, (size_t)n, sizeof *col, cmp_double);
        long u = 0; /* distinct values, in place */
        for (long i = 0; i < n; i++)
            if (u == 0 || col[i] != col[u - 1]) col[u++] = col[i];
        if (u > METRICS_MAX_VALUES) {
            rc = yt_fail(YT_ERR_USAGE,
                         "label column %d has %ld distinct values (at most %d): not a discrete "
                         "factor",
                         j, u, METRICS_MAX_VALUES);
            break;
        }
        sizes[j] = (int)u;
        for (long i = 0; i < n; i++) {
            double x = labels[(size_t)i * k + j];
            long a = 0, b = u - 1;
            while (a < b) {
                long m = (a + b) / 2;
                if (col[m] < x)
                    a = m + 1;
                else
                    b = m;
            }
            idx[(size_t)i * k + j] = (int32_t)a;
        }
    }
    free(col);
    return rc;
}
