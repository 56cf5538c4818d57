# test_threads.sh — threads inside a rank (train.threads) end to end: for a
# fixed (ranks, threads) pair a run repeats bit for bit, and so does a resume;
# 1 and 2 threads train to the same losses up to float rounding, and so do
# the channel-blocked layout and [C][N][H][W]; bench reports the threads and
# the inference figures.
. tests/e2e/lib.sh

tiny_setup || { echo "Bail out! cannot prepare data"; exit 1; }

# batch 32: 16 per rank at np = 2, two groups of 8 samples for the Winograd
# kernels, so that both threads have work in every conv route
train() { # train NP THREADS OUT_DIR [more args]
    local np=$1 th=$2 dir=$3
    shift 3
    $MPI "$np" --bind-to none ${YOTO_CONV_LAYOUT:+-x YOTO_CONV_LAYOUT} "$YOTO" train "$T/tiny.yaml" \
        --set experiment.out_dir="$dir" \
        --set train.threads="$th" --set train.batch_size=32 --set train.steps=20 \
        --set train.checkpoint_every=10 "$@"
}
same_tensors() { # same_tensors A.h5 B.h5: params and Adam moments bit for bit
    h5diff -q "$1" "$2" /params /params && h5diff -q "$1" "$2" /optimizer /optimizer
}
CK=ckpt/step-000000020.h5

for np in 1 2; do
    expect_exit 0 "np=$np, 2 threads: training runs" train $np 2 "$T/a$np"
    contains "np=$np: log.txt names the threads" "$T/a$np/log.txt" "2 threads per rank"
    expect_exit 0 "np=$np, 2 threads: the same run again" train $np 2 "$T/b$np"
    check "np=$np, 2 threads: bit-identical checkpoints" same_tensors "$T/a$np/$CK" "$T/b$np/$CK"
done

expect_exit 0 "np=2, 2 threads: 10 steps" train 2 2 "$T/r" --set train.steps=10
expect_exit 0 "... resumed for 10 more" train 2 2 "$T/r"
check "np=2, 2 threads: 20 steps = 10 + 10 resumed, bit for bit" same_tensors "$T/a2/$CK" "$T/r/$CK"

# close_runs.py A B [TENSOR]: runs A and B (20 steps) logged the same losses
# to float rounding, and their step-20 parameters (all, or TENSOR) differ,
# by less than 1e-2
cat >"$T/close_runs.py" <<'EOF'
import csv, sys
import h5py, numpy as np
ra, rb = sys.argv[1:3]
a, b = ([r for r in csv.DictReader(l for l in open(d + "/metrics.csv") if not l.startswith("#"))]
        for d in (ra, rb))
assert len(a) == len(b) == 4, (len(a), len(b))
for x_, y_ in zip(a, b):
    for k in ("loss", "recon", "kl"):
        x, y = float(x_[k]), float(y_[k])
        assert abs(x - y) <= 1e-3 * abs(x), (x_["step"], k, x, y)
def tensors(path):
    out = {}
    with h5py.File(path) as f:
        f["params"].visititems(lambda k, v: out.update({k: v[()]}) if isinstance(v, h5py.Dataset) else None)
    return out
ck = "/ckpt/step-000000020.h5"
pa, pb = tensors(ra + ck), tensors(rb + ck)
assert pa.keys() == pb.keys() and len(pa) > 10, len(pa)
names = sys.argv[3:] or list(pa)
worst = max(float(np.max(np.abs(pa[k] - pb[k]))) for k in names)
differ = sum(int(np.sum(pa[k] != pb[k])) for k in names)
print("# %s: %d values differ, by up to %.3g" % (" ".join(sys.argv[3:]) or "params", differ, worst))
assert differ > 0, "the same bits: did the two runs differ in what they compute?"
assert worst < 1e-2, worst
EOF

expect_exit 0 "np=1, 1 thread: the same run" train 1 1 "$T/one"
check "1 and 2 threads: the same losses to float rounding, different bits" \
    "$PYTHON" "$T/close_runs.py" "$T/one" "$T/a1"

# YOTO_CONV_LAYOUT=blocked: the blocks whose channel counts fit the lanes
# (here decoder block 1, 8 -> 8 channels, in the float build) train on the
# channel-blocked kernels (src/convb.h), with the layout converted at the
# reshape and before the next block: bit for bit again for a (ranks,
# threads) pair, and the same losses as on [C][N][H][W] to float rounding
for run in k1 k2; do
    YOTO_CONV_LAYOUT=blocked expect_exit 0 "np=2, 2 threads, blocked layout: run $run" \
        train 2 2 "$T/$run"
done
check "np=2, 2 threads, blocked layout: bit-identical checkpoints" same_tensors "$T/k1/$CK" "$T/k2/$CK"
check "blocked and [C][N][H][W]: the same losses to float rounding, different bits" \
    "$PYTHON" "$T/close_runs.py" "$T/a2" "$T/k1" decoder/block1/deconv0/kernel

expect_exit 0 "bench --threads 2 --json" "$YOTO" bench "$T/tiny.yaml" --threads 2 --json --steps 2 --warmup 1
cp "$OUT" "$T/bench.json"
check "bench reports the threads and the inference figures" "$PYTHON" - "$T/bench.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["threads"] == 2 and d["openblas_threads"] == 1, d
inf = d["inference"]
for k in ("encode", "reconstruct"):
    assert inf[k + "_images_per_s"] > 0 and inf[k + "_ratio_to_sgemm"] > 0, inf
assert inf["encode_flops_per_image"] < inf["reconstruct_flops_per_image"], inf
assert d["copy_gbs"] > 0 and d["peak_rss_mb"] > 0, d
EOF

done_testing
