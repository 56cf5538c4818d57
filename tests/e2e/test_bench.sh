#!/usr/bin/env bash
# test_bench.sh — `yoto bench`: the shipped training step timed (phases add
# up), and --comm's allreduce curve (JSON fields present and positive at
# np = 1 and 2), which analysis/scaling.py fits. At np = 2 up to 4 MiB
# (--comm-max-mb) in buckets of 1 MB: the default's 64 MiB take 20 s there,
# 30 s under ASan.
. tests/e2e/lib.sh

CFG=configs/fashion_mnist_conv_vae_yoto.yaml
for np in 1 2; do
    max=(); sizes=8
    [ $np = 2 ] && max=(--comm-max-mb 4 --set train.bucket_mb=1) sizes=6 # 4 buckets at 4 MiB
    expect_exit 0 "bench --comm --json at np=$np ${max[*]}" $MPI $np "$YOTO" bench "$CFG" --comm --json "${max[@]}"
    cp "$OUT" "$T/comm$np.json"
    check "np=$np: every size from 4 KiB to 4^$((sizes - 1)) x 4 KiB, both modes, times > 0" "$PYTHON" - "$T/comm$np.json" "$np" "$sizes" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["ranks"] == int(sys.argv[2]), d["ranks"]
assert d["gradient_bytes"] > 0 and d["bucket_mb"] > 0 and d["hosts"]
sizes = [p["bytes"] for p in d["comm"]]
assert sizes == [4096 * 4 ** k for k in range(int(sys.argv[3]))], sizes
for p in d["comm"]:
    for k in ("blocking_s", "blocking_min_s", "bucketed_s", "bucketed_min_s"):
        assert p[k] > 0, (k, p)
    assert p["blocking_min_s"] <= p["blocking_s"] and p["bucketed_min_s"] <= p["bucketed_s"], p
    assert p["reps"] >= 5
if d["ranks"] > 1:
    assert all(p["buckets"] >= 1 for p in d["comm"])
    big = d["comm"][-1]
    assert big["buckets"] == -(-big["bytes"] // int(d["bucket_mb"] * 1048576)), big
EOF
done
expect_exit 0 "bench --comm --comm-max-mb 1 prints a table" "$YOTO" bench "$CFG" --comm --comm-max-mb 1
cp "$OUT" "$T/comm.txt"
check "of 4 KiB .. 1 MiB" test "$(grep -cE '^ +[0-9]+ +[0-9]+ ' "$T/comm.txt")" = 5
contains "up to 1048576 bytes" "$T/comm.txt" " 1048576 "
contains "with the gradient's size" "$T/comm.txt" "gradient 1.20 MB"
expect_exit 2 "--comm-max-mb without --comm: exit 2" "$YOTO" bench "$CFG" --comm-max-mb 4
contains "and says it belongs to --comm" "$ERR" "--comm-max-mb is an option of --comm"
expect_exit 2 "--comm-max-mb 0: exit 2" "$YOTO" bench "$CFG" --comm --comm-max-mb 0

expect_exit 0 "bench --json: the shipped step at np=2" $MPI 2 "$YOTO" bench "$CFG" --json --steps 3 --warmup 1 --set train.batch_size=16
cp "$OUT" "$T/step.json"
check "phases are positive and each within the step, sgemm within the ranks' spread" "$PYTHON" - "$T/step.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
ph = d["phases_s"]
assert all(ph[k] > 0 for k in ("forward", "backward", "optimizer")), ph
assert ph["allreduce"] >= 0, ph
# medians of each phase: each at most the slowest step (every step is the sum of its phases)
assert all(v <= d["step_s_max"] * 1.001 for v in ph.values()), (ph, d["step_s_max"])
assert d["step_s_min"] <= d["step_s_median"] <= d["step_s_max"], d
assert d["images_per_s"] > 0 and 0 < d["ratio_to_sgemm"] < 2, d
lo, hi = d["sgemm_gflops_ranks"]  # every rank's own yardstick, rank 0's between
assert 0 < lo <= d["sgemm_gflops"] <= hi, d
assert d["sgemm_gflops_after"] > 0, d  # rank 0's again after the steps
EOF
# the yardstick again after the steps: a run whose machine's load changed
# warns (--drift 0: any move; a warning, not a failure), and --drift belongs
# to the step's bench
expect_exit 0 "bench --drift 0: exit 0" "$YOTO" bench "$CFG" --steps 1 --warmup 0 --drift 0 --set train.batch_size=16
contains "and warns that the yardstick moved" "$ERR" "the sgemm yardstick moved from"
contains "and prints it after the steps" "$OUT" "after the steps)"
expect_exit 0 "bench --drift 1000: exit 0" "$YOTO" bench "$CFG" --steps 1 --warmup 0 --drift 1000 --set train.batch_size=16
cp "$ERR" "$T/drift.err"
check "and no warning at 1000%" eval "! grep -q 'yardstick moved' '$T/drift.err'"
# at np = 2 the same percent of a step spent waiting for the slowest rank
# warns too (the ranks do the same work: a core ran slower)
expect_exit 0 "bench --drift 0 at np=2: exit 0" $MPI 2 "$YOTO" bench "$CFG" --steps 2 --warmup 0 --drift 0 --set train.batch_size=16
contains "and warns that the ranks waited for the slowest" "$ERR" "for the slowest one"
expect_exit 0 "bench --drift 1000 at np=2: exit 0" $MPI 2 "$YOTO" bench "$CFG" --steps 2 --warmup 0 --drift 1000 --set train.batch_size=16
cp "$ERR" "$T/drift2.err"
check "and no warning at 1000%" eval "! grep -q 'for the slowest one\|yardstick moved' '$T/drift2.err'"
expect_exit 2 "--drift -1: exit 2" "$YOTO" bench "$CFG" --drift -1
expect_exit 2 "--drift with --comm: exit 2" "$YOTO" bench "$CFG" --comm --drift 5
contains "and says it times the step" "$ERR" "--drift times the step"
check "the 1.2 MB gradient is one bucket of 25 MB (so it goes as in the blocking mode)" "$PYTHON" - "$T/step.json" <<'EOF'
import json, sys
a = json.load(open(sys.argv[1]))["allreduce"]
assert a["mode"] == "bucketed" and a["buckets"] == 1 and 0 < a["bytes"] < 25 * 1048576, a
EOF
# which kernels ran: the loader's choice in bin/yoto, AVX-512 in bin/yoto-avx512
want=baseline
case $YOTO in
*-avx512) want=avx512 ;;
*-asan) want=baseline ;; # sanitizer builds have no clones
*) grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && [ -z "${YOTO_ISA:-}" ] && want=avx2 ;;
esac
check "kernels_isa is $want, cpu_isa what the CPU has, l1d_bytes an L1 size" "$PYTHON" - "$T/step.json" "$want" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["kernels_isa"] == sys.argv[2], (d["kernels_isa"], sys.argv[2])
assert d["cpu_isa"] in ("avx512", "avx2", "avx", "sse"), d["cpu_isa"]
assert 4096 <= d["l1d_bytes"] <= 65536, d["l1d_bytes"]
EOF

# YOTO_CONV_LAYOUT: which conv blocks run on channel-blocked activations
# (docs/DESIGN.md, "Channel-blocked blocks"); bench marks them
for layout in planar blocked; do
    expect_exit 0 "bench --json with YOTO_CONV_LAYOUT=$layout" env YOTO_CONV_LAYOUT=$layout \
        "$YOTO" bench "$CFG" --json --steps 2 --warmup 1 --set train.batch_size=8
    cp "$OUT" "$T/layout_$layout.json"
done
check "planar: no layer blocked; blocked: conv layers with channels a multiple of the lanes" "$PYTHON" - \
    "$T/layout_planar.json" "$T/layout_blocked.json" <<'EOF'
import json, sys
p, b = (json.load(open(f)) for f in sys.argv[1:3])
assert not any(l["blocked"] for l in p["layers"]), p["layers"]
blocked = sorted(l["name"] for l in b["layers"] if l["blocked"])
# 1-channel images: encoder block0 stays planar; 16 and 32 channels fit 4, 8 or 16 lanes
assert "encoder/block0/conv0" not in blocked, blocked
assert "encoder/block2/conv0" in blocked and "decoder/block2/deconv0" in blocked, blocked
assert all("conv" in n for n in blocked), blocked
EOF
expect_exit 0 "bench's table marks the blocked layers" env YOTO_CONV_LAYOUT=blocked \
    "$YOTO" bench "$CFG" --steps 2 --warmup 1 --set train.batch_size=8
contains "with a star" "$OUT" "encoder/block2/conv0 *"
t0=$(date +%s)
expect_exit 2 "YOTO_CONV_LAYOUT=sideways at np=2: a usage error on every rank" \
    env YOTO_CONV_LAYOUT=sideways $MPI 2 -x YOTO_CONV_LAYOUT "$YOTO" bench "$CFG" --steps 1
contains "naming the variable and what it takes" "$ERR" \
    "YOTO_CONV_LAYOUT=sideways: expected auto, planar or blocked"
check "no hang (under 20 s)" test $(($(date +%s) - t0)) -lt 20

done_testing
