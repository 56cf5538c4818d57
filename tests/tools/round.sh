#!/usr/bin/env bash
# tests/tools/round.sh [BIN [CORE]] — one round of issue 14's speed
# figures: for each reference config, `bench --json` on one core (taskset
# -c 0), under `mpirun -np 2`, and with `--threads 2`; one line each: step
# ms, images/s, % of the same run's sgemm (per rank), sgemm GFLOP/s, peak
# RSS MB, and on one core the inference figures (at np = 2 the spread of the
# ranks' own sgemm: cores of one run that differ). BIN defaults to bin/yoto
# (AVX2 kernels), CORE (OpenBLAS's OPENBLAS_CORETYPE) to Haswell; the
# AVX-512 yardstick is `round.sh bin/yoto-avx512 SkylakeX`. One OpenBLAS
# thread (docs/DESIGN.md, "Where it stands"). Run it three times and take
# the medians; not part of the test suite (speed is no assertion). A run
# bench warns about is marked: LOUD where its sgemm moved by 10% or more
# between its start and the end of its steps (the machine's load changed
# under it), UNEVEN where its ranks waited 10% of a step for the slower one
# (one core ran slower; bench's --drift, docs/CLI.md).
set -eu
B=${1:-bin/yoto}
export OPENBLAS_CORETYPE=${2:-Haswell} OPENBLAS_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
for cfg in shapes3d_conv_vae_yoto cifar10_conv_vae_yoto; do
    for mode in c1 np2 t2; do
        case $mode in
        c1) taskset -c 0 "$B" bench "configs/$cfg.yaml" --json >"$out" 2>"$err" ;;
        np2) mpirun -np 2 "$B" bench "configs/$cfg.yaml" --json >"$out" 2>"$err" ;;
        t2) "$B" bench "configs/$cfg.yaml" --json --threads 2 >"$out" 2>"$err" ;;
        esac
        /usr/bin/python3 - "$out" "$cfg" "$mode" "$err" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
cfg, mode = sys.argv[2], sys.argv[3]
line = (f"{cfg} {mode} step {d['step_s_median'] * 1e3:.2f} ms, {d['images_per_s']:.0f} images/s, "
        f"{100 * d['ratio_to_sgemm']:.1f}% of sgemm {d['sgemm_gflops']:.0f}, rss {d['peak_rss_mb']} MB")
inf = d.get('inference', {})
warned = open(sys.argv[4]).read()  # bench's own verdicts, at its default --drift
if 'yardstick moved' in warned:
    line += f", LOUD: sgemm {d['sgemm_gflops_after']:.0f} after the steps"
if 'for the slowest one' in warned:
    line += f", UNEVEN: {d['allreduce']['imbalance_s'] * 1e3:.2f} ms a step waiting for the slower rank"
if mode == 'np2' and 'sgemm_gflops_ranks' in d:
    lo, hi = d['sgemm_gflops_ranks']
    line += f", ranks' sgemm {lo:.0f}-{hi:.0f}"
if mode == 'c1' and inf:
    line += (f", encode {100 * inf['encode_ratio_to_sgemm']:.0f}%, "
             f"reconstruct {100 * inf['reconstruct_ratio_to_sgemm']:.0f}%")
print(line)
PY
    done
done
