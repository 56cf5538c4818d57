#!/usr/bin/env python3
"""metrics_ref.py — an independent NumPy implementation of the disentanglement
metrics of src/metrics.c (MIG, SAP, FactorVAE score, DCI), written from the
definitions in docs/METRICS.md and disentanglement_lib, for the tests.

Nothing is shared with the C code but the definitions and the random stream
(Philox4x32-10 as Random123, re-implemented here and checked against
Random123's known-answer vectors). The Lasso is solved by a different method
(proximal gradient, then the exact solution on the support it finds, checked
against the optimality conditions).

    metrics_ref.py raw CODES.f64 FACTORS.i32 N L SIZES [SEED] > out.txt
        codes: float64 [N][L] little-endian; factors: int32 [N][K];
        SIZES "4,5,3". Prints "name value" lines.
    metrics_ref.py encode FILE.h5
        recomputes the metrics of a `yoto encode` file from its /mean and
        /labels (h5py is used to read the file only) and prints them per beta.
"""
import sys

import numpy as np

M64 = (1 << 64) - 1
BINS = 20
N_TRAIN, N_TEST = 10000, 5000
FVAE_BATCH, FVAE_TRAIN, FVAE_EVAL, FVAE_VAR, FVAE_PRUNE = 64, 10000, 5000, 10000, 0.05
ALPHA = 0.05
RNG_METRICS = 8


# ---- Philox4x32-10 (Random123), vectorised over counters --------------------------------------

def philox4x32(c0, c1, c2, c3, k0, k1):
    """Arrays of uint64 holding 32-bit words; returns the four output words."""
    m0, m1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
    w0, w1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
    mask = np.uint64(0xFFFFFFFF)
    s32 = np.uint64(32)
    c0, c1, c2, c3 = (np.asarray(x, dtype=np.uint64) & mask for x in (c0, c1, c2, c3))
    k0, k1 = np.uint64(k0), np.uint64(k1)
    for r in range(10):
        if r:
            k0, k1 = (k0 + w0) & mask, (k1 + w1) & mask
        p0, p1 = m0 * c0, m1 * c2  # products of 32-bit words fit in 64 bits
        hi0, lo0, hi1, lo1 = p0 >> s32, p0 & mask, p1 >> s32, p1 & mask
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def stream_words(seed, a, b, nwords, purpose=RNG_METRICS, c=0):
    """The first nwords 32-bit words of the stream (seed, purpose, a, b, c); a or b may be
    arrays (one stream per entry): returns [..., nwords] as Python-int-safe uint64."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64))
    nblocks = (nwords + 3) // 4
    blk = np.arange(nblocks, dtype=np.uint64)
    shape = a.shape + (nblocks,)
    out = philox4x32(np.broadcast_to(blk, shape), np.broadcast_to(a[..., None], shape),
                     np.broadcast_to(b[..., None], shape),
                     np.full(shape, (purpose << 24) | c, dtype=np.uint64),
                     seed & 0xFFFFFFFF, seed >> 32)
    words = np.stack(out, axis=-1).reshape(a.shape + (4 * nblocks,))
    return words[..., :nwords]


class Stream:
    """Sequential draws of one stream, as rng_u64 / rng_below (for the rare rejections)."""

    def __init__(self, seed, a, b):
        self.seed, self.a, self.b, self.pos = seed, a, b, 0
        self.words = []

    def u32(self):
        if self.pos >= len(self.words):
            more = stream_words(self.seed, self.a, self.b, 2 * len(self.words) + 64)
            self.words = [int(x) for x in more]
        self.pos += 1
        return self.words[self.pos - 1]

    def below(self, n):
        limit = M64 - M64 % n
        while True:
            x = (self.u32() << 32) | self.u32()
            if x < limit:
                return x % n


def draws_below(words, ns):
    """Vectorised rng_below: words [..., 2T] and bounds ns [..., T]; returns (values, ok)
    where ok is False when any draw would have been rejected (then redo it sequentially)."""
    x = (words[..., 0::2] << np.uint64(32)) | words[..., 1::2]
    ns = np.asarray(ns, dtype=np.uint64)
    m64 = np.uint64(M64)
    limit = m64 - m64 % ns
    ok = bool(np.all(x < limit))
    return (x % ns).astype(np.int64), ok


def check_philox():
    # Random123's kat_vectors: philox4x32 10, counter and key all zero, and the pi digits
    z = philox4x32([0], [0], [0], [0], 0, 0)
    assert [int(v[0]) for v in z] == [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8], z
    p = philox4x32([0x243f6a88], [0x85a308d3], [0x13198a2e], [0x03707344], 0xa4093822, 0x299f31d0)
    assert [int(v[0]) for v in p] == [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1], p


def permutation(n, seed):
    """rng_permutation over the stream (seed, RNG_METRICS, 0, 0, 0): Fisher-Yates from the end."""
    perm = np.arange(n, dtype=np.int64)
    if n < 2:
        return perm
    bounds = np.arange(n, 1, -1)  # i = n .. 2
    words = stream_words(seed, 0, 0, 2 * len(bounds))
    js, ok = draws_below(words, bounds)
    if not ok:
        s = Stream(seed, 0, 0)
        js = [s.below(int(i)) for i in bounds]
    for i, j in zip(bounds, js):
        perm[i - 1], perm[j] = perm[j], perm[i - 1]
    return perm


# ---- the metrics ---------------------------------------------------------------------------

def split_sizes(n):
    n_mig, n_var = min(n, N_TRAIN), min(n, FVAE_VAR)
    if n >= N_TRAIN + N_TEST:
        n_tr, n_te = N_TRAIN, N_TEST
    else:
        n_te = int(float(n) * N_TEST / float(N_TRAIN + N_TEST))
        n_tr = n - n_te
    return n_mig, n_tr, n_te, n_var


def mutual_info(a, b):
    """discrete MI (nats) of two label vectors, from their contingency table"""
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    t = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(t, (ai, bi), 1)
    n = t.sum()
    pa, pb = t.sum(1, keepdims=True), t.sum(0, keepdims=True)
    nz = t > 0
    return float(np.sum(t[nz] / n * np.log((n * t / (pa * pb))[nz])))


def mig(codes, factors):
    if codes.shape[1] < 2:
        return float("nan")
    disc = [np.digitize(c, np.histogram(c, BINS)[1][:-1]) for c in codes.T]
    gaps = []
    for y in factors.T:
        h = mutual_info(y, y)
        if not h > 0:
            continue
        m = np.sort([mutual_info(d, y) for d in disc])[::-1]
        gaps.append((m[0] - m[1]) / h)
    return float(np.mean(gaps)) if gaps else float("nan")


def sap(c_tr, y_tr, c_te, y_te, sizes):
    if c_tr.shape[1] < 2:
        return float("nan")
    gaps = []
    for k in range(y_tr.shape[1]):
        acc = []
        for i in range(c_tr.shape[1]):
            cnt = np.bincount(y_tr[:, k], minlength=sizes[k])
            sums = np.bincount(y_tr[:, k], weights=c_tr[:, i], minlength=sizes[k])
            present = np.nonzero(cnt)[0]
            means = sums[present] / cnt[present]
            dist = np.abs(c_te[:, i][:, None] - means[None, :])
            pred = present[np.argmin(dist, axis=1)]
            acc.append(np.mean(pred == y_te[:, k]))
        s = np.sort(acc)
        gaps.append(s[-1] - s[-2])
    return float(np.mean(gaps)) if gaps else float("nan")


def factorvae(codes, factors, var_rows, seed):
    n, L = codes.shape
    K = factors.shape[1]
    gvar = np.var(codes[var_rows], axis=0, ddof=1)
    active = np.nonzero(np.sqrt(gvar) >= FVAE_PRUNE)[0]
    if K < 2:
        return float("nan"), float("nan"), len(active)
    if len(active) == 0:
        return 0.0, 0.0, 0
    groups = [[np.nonzero(factors[:, k] == v)[0] for v in range(factors[:, k].max() + 1)]
              for k in range(K)]

    def votes(phase, nv):
        B = FVAE_BATCH
        words = stream_words(seed, phase, np.arange(nv), 2 * (2 + B))
        first, ok1 = draws_below(words[:, :4], np.broadcast_to([K, n], (nv, 2)))
        table = np.zeros((K, L), dtype=np.int64)
        for v in range(nv):
            j, anchor = int(first[v, 0]), int(first[v, 1])
            g = groups[j][factors[anchor, j]]
            idx, ok = draws_below(words[v, 4:], np.full(B, len(g)))
            if not (ok and ok1):  # a rejection somewhere: this vote's draws one by one
                s = Stream(seed, phase, v)
                j = s.below(K)
                anchor = s.below(n)
                g = groups[j][factors[anchor, j]]
                idx = np.array([s.below(len(g)) for _ in range(B)])
            batch = codes[g[idx]]
            local = np.var(batch, axis=0, ddof=1)
            i = active[np.argmin(local[active] / gvar[active])]
            table[j, i] += 1
        return table

    train = votes(1, FVAE_TRAIN)
    cls = np.argmax(train, axis=0)
    acc_tr = train[cls, np.arange(L)].sum() / train.sum()
    ev = votes(2, FVAE_EVAL)
    acc_ev = ev[cls, np.arange(L)].sum() / ev.sum()
    return float(acc_ev), float(acc_tr), len(active)


def lasso(G, b, alpha, live):
    """argmin 1/2 w'Gw - b'w + alpha |w|_1: proximal gradient (FISTA) to find the support and
    signs, then the exact solution on that support, accepted when it satisfies the KKT
    conditions."""
    L = len(b)
    w = np.zeros(L)
    idx = np.nonzero(live)[0]
    if len(idx) == 0:
        return w
    Gs, bs = G[np.ix_(idx, idx)], b[idx]
    lip = np.linalg.eigvalsh(Gs).max()
    x = y = np.zeros(len(idx))
    t = 1.0
    for it in range(1, 200001):
        g = y - (Gs @ y - bs) / lip
        xn = np.sign(g) * np.maximum(np.abs(g) - alpha / lip, 0)
        tn = (1 + np.sqrt(1 + 4 * t * t)) / 2
        y = xn + (t - 1) / tn * (xn - x)
        x, t = xn, tn
        if it % 50:
            continue
        S = np.nonzero(x)[0]
        sol = np.zeros(len(idx))
        if len(S):
            sol[S] = np.linalg.solve(Gs[np.ix_(S, S)], bs[S] - alpha * np.sign(x[S]))
        grad = bs - Gs @ sol
        kkt = (np.all(np.abs(grad[np.setdiff1d(np.arange(len(idx)), S)]) <= alpha + 1e-12)
               and np.all(np.sign(sol[S]) == np.sign(x[S]))
               and np.allclose(grad[S], alpha * np.sign(sol[S]), atol=1e-12))
        if kkt:
            w[idx] = sol
            return w
    raise RuntimeError("lasso did not converge")


def dci(c_tr, y_tr, sizes):
    n, L = c_tr.shape
    K = y_tr.shape[1]
    m = c_tr.mean(0)
    sd = np.sqrt(((c_tr - m) ** 2).mean(0))
    live = sd > 0
    z = np.where(live, (c_tr - m) / np.where(live, sd, 1), 0.0)
    G = z.T @ z / n
    R = np.zeros((L, K))
    for k in range(K):
        for v in range(sizes[k]):
            t = (y_tr[:, k] == v).astype(float)
            p = t.mean()
            if p == 0 or p == 1:
                continue
            b = z.T @ ((t - p) / np.sqrt(p * (1 - p))) / n
            R[:, k] += np.abs(lasso(G, b, ALPHA, live))
        if R[:, k].sum() > 0:
            R[:, k] /= R[:, k].sum()

    def entropy_rows(M, base):  # scipy.stats.entropy of every row of M + 1e-11
        P = M + 1e-11
        P = P / P.sum(1, keepdims=True)
        return -(P * np.log(P)).sum(1) / np.log(base)

    W = R if R.sum() > 0 else np.ones_like(R)
    dis = float(np.sum((1 - entropy_rows(R, K)) * W.sum(1) / W.sum())) if K >= 2 else float("nan")
    comp = float(np.sum((1 - entropy_rows(R.T, L)) * W.sum(0) / W.sum())) if L >= 2 else float("nan")
    return dis, comp


def compute(codes, factors, sizes, seed=0):
    """All metrics of codes [n][L] (float64) and factor indices [n][K] with `sizes`."""
    codes = np.asarray(codes, dtype=np.float64)
    factors = np.asarray(factors, dtype=np.int64)
    keep = [k for k in range(factors.shape[1]) if len(np.unique(factors[:, k])) > 1]
    factors = factors[:, keep]
    sizes = [sizes[k] for k in keep]
    n = len(codes)
    out = {"factors_used": len(keep)}
    if not np.all(np.isfinite(codes)):
        return out
    perm = permutation(n, seed)
    n_mig, n_tr, n_te, n_var = split_sizes(n)
    tr, te = perm[:n_tr], perm[n_tr:n_tr + n_te]
    out["mig"] = mig(codes[perm[:n_mig]], factors[perm[:n_mig]])
    out["sap"] = sap(codes[tr], factors[tr], codes[te], factors[te], sizes)
    out["factorvae"], out["factorvae_train"], out["active_dims"] = factorvae(codes, factors, perm[:n_var], seed)
    out["dci_disentanglement"], out["dci_completeness"] = dci(codes[tr], factors[tr], sizes)
    out["perm_head"] = " ".join(str(x) for x in perm[:8])
    return out


def main(argv):
    check_philox()
    if len(argv) >= 6 and argv[1] == "raw":
        n, L = int(argv[4]), int(argv[5])
        sizes = [int(s) for s in argv[6].split(",")]
        seed = int(argv[7]) if len(argv) > 7 else 0
        codes = np.fromfile(argv[2], dtype="<f8").reshape(n, L)
        factors = np.fromfile(argv[3], dtype="<i4").reshape(n, len(sizes))
        for k, v in compute(codes, factors, sizes, seed).items():
            print(k, v)
        return 0
    if len(argv) == 3 and argv[1] == "encode":
        import h5py  # only to read the file
        with h5py.File(argv[2], "r") as f:
            labels = f["labels"][()].astype(np.float64)
            labels = labels.reshape(len(labels), -1)
            cols = [np.unique(c, return_inverse=True) for c in labels.T]
            factors = np.stack([inv for _, inv in cols], axis=1)
            sizes = [len(u) for u, _ in cols]
            for k, beta in enumerate(f["beta"][()]):
                r = compute(f["mean"][k].astype(np.float64), factors, sizes)
                print("beta", repr(float(beta)), " ".join(f"{a}={r[a]!r}" for a in
                      ("mig", "sap", "factorvae", "factorvae_train", "dci_disentanglement",
                       "dci_completeness", "active_dims", "factors_used")))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
