"""runcheck.py — two runs of the same training compared to a tolerance, for
the e2e tests that run another build against the binary under test
(test_double.sh, test_avx512.sh): they differ by float rounding only, and a
numerics bug moves them apart by far more.

    runcheck.py metrics A.csv B.csv TOL ROWS
        two metrics.csv: ROWS rows each, the same step and lr in every row,
        loss, recon and kl within TOL relative
    runcheck.py state A.h5 B.h5 TOL
        two checkpoints: every tensor of params and both Adam moments within
        TOL of each other, relative to the tensor's largest magnitude
    runcheck.py params A.h5 B.h5 TOL     the same for params only
    runcheck.py tables A.csv B.csv TOL ROWS
        two eval tables ("# " lines skipped): ROWS rows each, reconstruction,
        KL and full loss within TOL relative
Exits non-zero (AssertionError) on a failed check.
"""
import csv
import sys

import numpy as np


def csv_rows(path):
    with open(path) as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def close(x, y, tol, what):
    assert abs(x - y) <= tol * abs(y), (what, x, y)


def metrics(a, b, tol, n):
    ra, rb = csv_rows(a), csv_rows(b)
    assert len(ra) == len(rb) == n, (len(ra), len(rb), n)
    for x, y in zip(ra, rb):
        assert x["step"] == y["step"] and x["lr"] == y["lr"], (x, y)
        for k in ("loss", "recon", "kl"):
            close(float(x[k]), float(y[k]), tol, (x["step"], k))


def state(a, b, tol, groups):
    import h5py
    fa, fb = h5py.File(a, "r"), h5py.File(b, "r")
    names = []
    fa["params"].visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    assert len(names) > 10, names
    for grp in groups:
        for n in names:
            x, y = fa[grp][n][()].astype(float), fb[grp][n][()].astype(float)
            scale = np.abs(x).max()
            err = np.abs(x - y).max() / scale if scale > 0 else np.abs(x - y).max()
            assert err <= tol, (grp, n, err)


def tables(a, b, tol, n):
    ra, rb = csv_rows(a), csv_rows(b)
    assert len(ra) == len(rb) == n, (len(ra), len(rb), n)
    for x, y in zip(ra, rb):
        for k in ("reconstruction_loss", "kl_loss", "full_loss"):
            close(float(x[k]), float(y[k]), tol, k)


def main(argv):
    cmd, a, b, tol = argv[1], argv[2], argv[3], float(argv[4])
    if cmd == "metrics":
        metrics(a, b, tol, int(argv[5]))
    elif cmd == "state":
        state(a, b, tol, ("params", "optimizer/adam_m", "optimizer/adam_v"))
    elif cmd == "params":
        state(a, b, tol, ("params",))
    elif cmd == "tables":
        tables(a, b, tol, int(argv[5]))
    else:
        sys.exit(f"runcheck.py: unknown check '{cmd}' (metrics, state, params, tables)")


if __name__ == "__main__":
    main(sys.argv)
