# test_double.sh — bin/yoto-double (numerics in double, -DYOTO_DOUBLE) end to
# end, against the binary under test ($YOTO, float): the same run, the same
# numbers to rounding; resume; either binary reads the other's checkpoints
# (they are float32 on disk, docs/FORMATS.md).
. tests/e2e/lib.sh

DBL=$PWD/bin/yoto-double
if [ ! -x "$DBL" ]; then
    skip "bin/yoto-double end to end" "bin/yoto-double not built (make bin/yoto-double; make test builds it)"
    done_testing
    exit
fi
tiny_setup || { echo "Bail out! cannot prepare data"; exit 1; }

run() { # run BINARY NP OUT_DIR [args]
    local bin=$1 np=$2 dir=$3
    shift 3
    $MPI "$np" "$bin" train "$T/tiny.yaml" --set experiment.out_dir="$dir" --set train.steps=20 "$@"
}
expect_exit 0 "bin/yoto-double trains 20 steps at np=2" run "$DBL" 2 "$T/d"
contains "and says so" "$OUT" "done: 20 steps"
expect_exit 0 "the binary under test, the same run" run "$YOTO" 2 "$T/f"
# the same seed, data and weights: the float and double runs differ by rounding
# only (measured ~1e-7 relative after 20 steps); a numerics bug in either build
# moves them apart by far more
check "metrics: double and float agree to 1e-4 relative at every row" "$PYTHON" - "$T/d/metrics.csv" "$T/f/metrics.csv" <<'EOF'
import csv, sys
d, f = (list(csv.DictReader(open(p))) for p in sys.argv[1:3])
assert len(d) == len(f) == 4, (len(d), len(f))
for a, b in zip(d, f):
    assert a["step"] == b["step"] and a["lr"] == b["lr"], (a, b)
    for k in ("loss", "recon", "kl"):
        x, y = float(a[k]), float(b[k])
        assert abs(x - y) <= 1e-4 * abs(y), (a["step"], k, x, y)
EOF
check "its checkpoint is float32 on disk, like the float build's" "$PYTHON" -c \
    'import sys, h5py; sys.exit(h5py.File(sys.argv[1], "r")["params/encoder/block0/conv0/kernel"].dtype != "float32")' \
    "$T/d/ckpt/step-000000020.h5"

# resume in double: the checkpoint rounds the state to float32 (the on-disk
# type), so 10 + 10 resumed differs from 20 straight by that rounding only
expect_exit 0 "bin/yoto-double: 10 steps" run "$DBL" 2 "$T/d10" --set train.steps=10
expect_exit 0 "resumed to 20" $MPI 2 "$DBL" train --resume "$T/d10" --set train.steps=20
check "10 + 10 resumed = 20 up to float32 rounding of the saved state (1e-5 max-normalised; measured ~1e-7)" \
    "$PYTHON" - "$T/d/ckpt/step-000000020.h5" "$T/d10/ckpt/step-000000020.h5" <<'EOF'
import sys, h5py, numpy as np
a, b = (h5py.File(p, "r") for p in sys.argv[1:3])
names = []
a["params"].visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
assert len(names) > 10
for grp in ("params", "optimizer/adam_m", "optimizer/adam_v"):
    for n in names:
        x, y = a[grp][n][()].astype(float), b[grp][n][()].astype(float)
        scale = np.abs(x).max()
        err = np.abs(x - y).max() / scale if scale > 0 else np.abs(x - y).max()
        assert err <= 1e-5, (grp, n, err)
EOF
# either binary evaluates either checkpoint: the tables agree (z = mean)
evtab() { # evtab BINARY RUN NAME
    $MPI 1 "$1" eval "$2" --split valid --beta 1,8 --set eval.z=mean --set eval.max_batches=1 &&
        cp "$2/eval/step-000000020.csv" "$T/$3.csv"
}
expect_exit 0 "bin/yoto-double evaluates the float run" evtab "$DBL" "$T/f" df
expect_exit 0 "the binary under test evaluates it too" evtab "$YOTO" "$T/f" ff
check "the two tables agree to 1e-5 relative" "$PYTHON" - "$T/df.csv" "$T/ff.csv" <<'EOF'
import csv, sys
a, b = (list(csv.DictReader(l for l in open(p) if not l.startswith("#"))) for p in sys.argv[1:3])
assert len(a) == len(b) == 2
for x, y in zip(a, b):
    for k in ("reconstruction_loss", "kl_loss", "full_loss"):
        u, v = float(x[k]), float(y[k])
        assert abs(u - v) <= 1e-5 * abs(v), (k, u, v)
EOF
expect_exit 0 "bin/yoto-double samples a grid" $MPI 1 "$DBL" sample "$T/d" --beta 0.5,8 --n 3 --out "$T/d.png"
check "its 16 px images drawn 96 px tall (the default scale)" "$PYTHON" tests/e2e/evalcheck.py scale "$T/d.png" 16 6
check "two rows, named by their betas" "$PYTHON" tests/e2e/evalcheck.py text "$T/d.png" Rows "row 0: beta=0.5; row 1: beta=8"

done_testing
