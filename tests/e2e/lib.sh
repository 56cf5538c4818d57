# tests/e2e/lib.sh — TAP helpers for the end-to-end tests (sourced).
#   check NAME CMD...          ok when CMD exits 0
#   expect_exit CODE NAME CMD...   runs CMD, keeps stdout/stderr in $OUT/$ERR,
#                              ok when the exit code is CODE
#   contains NAME FILE TEXT    ok when FILE contains TEXT (fixed string)
#   skip NAME REASON
# Run from the project root. YOTO_VARIANT (rel, dbl, asan; tests/run.sh sets
# it) picks the build under test: YOTO, the binary (bin/yoto, bin/yoto-double,
# bin/yoto-asan), and the MPI test binaries some scripts run (build/$YOTO_VARIANT).
set -u
YOTO_VARIANT=${YOTO_VARIANT:-rel}
case $YOTO_VARIANT in
rel) YOTO=${YOTO:-$PWD/bin/yoto} ;;
dbl) YOTO=${YOTO:-$PWD/bin/yoto-double} ;;
asan) YOTO=${YOTO:-$PWD/bin/yoto-asan} ;;
*) echo "Bail out! YOTO_VARIANT=$YOTO_VARIANT (rel, dbl or asan)"; exit 2 ;;
esac
export YOTO # the job scripts (jobs/*.sh, *.sbatch) run the same binary
PYTHON=${PYTHON:-/usr/bin/python3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
# When a rank exits non-zero, Open MPI 4.1's mpirun stops the job: SIGCONT to
# the ranks, SIGTERM odls_base_sigkill_timeout seconds later, SIGKILL as long
# after that, even to ranks that have exited. At the default (1 s) every
# refused input costs 2 s of waiting, a hundred times over the suites. The
# checks of what ranks do in that second (SIGTERM to mpirun, test_train) set
# the default back.
export OMPI_MCA_odls_base_sigkill_timeout=${OMPI_MCA_odls_base_sigkill_timeout:-0}
_tap_n=0
_tap_failed=0
T=$(mktemp -d "${YOTO_TEST_OUT:-/tmp}/e2e.XXXXXX")
OUT=$T/stdout
ERR=$T/stderr
trap 'rm -rf "$T"' EXIT

# YOTO_E2E_TIMES=1: each result line is followed by "# N.NN s", the time since
# the one before (where a suite spends CI's 15-minute budget)
_tap_t=${EPOCHREALTIME/[.,]/}
_took() {
    [ -n "${YOTO_E2E_TIMES:-}" ] || return 0
    local now=${EPOCHREALTIME/[.,]/}
    printf '# %d.%02d s\n' $(((now - _tap_t) / 1000000)) $(((now - _tap_t) % 1000000 / 10000))
    _tap_t=$now
}
_ok() { _tap_n=$((_tap_n + 1)); echo "ok $_tap_n - $1"; _took; }
_not_ok() {
    _tap_n=$((_tap_n + 1)); _tap_failed=$((_tap_failed + 1))
    echo "not ok $_tap_n - $1"
    _took
    shift
    for m in "$@"; do echo "# $m"; done
}
skip() { _tap_n=$((_tap_n + 1)); echo "ok $_tap_n # SKIP $1: $2"; }

check() {
    local name=$1; shift
    if "$@" >"$OUT" 2>"$ERR"; then _ok "$name"; else
        _not_ok "$name" "command: $*" "exit code $?" "stderr: $(head -c 600 "$ERR")"; fi
}

expect_exit() {
    local want=$1 name=$2; shift 2
    "$@" >"$OUT" 2>"$ERR"
    local rc=$?
    if [ "$rc" = "$want" ]; then _ok "$name"; else
        _not_ok "$name" "command: $*" "exit code $rc, expected $want" \
            "stdout: $(head -c 400 "$OUT")" "stderr: $(head -c 600 "$ERR")"; fi
}

contains() {
    local name=$1 file=$2 text=$3
    if grep -qF -- "$text" "$file"; then _ok "$name"; else
        _not_ok "$name" "$(basename "$file") does not contain: $text" "it holds: $(_ends "$file")"; return 1; fi
}
_ends() { # _ends FILE: a long file's first 300 and last 600 bytes (where a run stopped shows)
    if [ "$(wc -c <"$1")" -le 900 ]; then cat "$1"; else
        head -c 300 "$1"; printf '\n[...]\n'; tail -c 600 "$1"; fi
}

MPI="mpirun --oversubscribe -np"

# tiny_setup: $T/shapes.h5 (384 procedural Shapes3D stand-ins) and $T/tiny.yaml,
# a small model on them resized to 16 x 16 that trains in seconds.
tiny_setup() {
    DATA=$T/shapes.h5
    "$YOTO" prepare shapes 384 "$DATA" >/dev/null || return 1
    cat >"$T/tiny.yaml" <<EOF
experiment: {name: tiny, seed: 5}
data:
  file: $DATA
  splits:
    - {name: train, dataset: images, range: "20%:"}
    - {name: valid, dataset: images, range: ":20%"}
  train_split: train
  preprocess_train: ["resize(16)", "value_range(0, 1)"]
  preprocess_eval: ["resize(16)", "value_range(0, 1)"]
model:
  input_shape: [16, 16, 3]
  latent_dim: 4
  output_distribution: bernoulli
  encoder: {num_blocks: 2, layers_per_block: 1, base_channels: 4, fc_sizes: [16, 8]}
  decoder: {num_blocks: 2, layers_per_block: 1, base_channels: 4, fc_sizes: [16, 128],
            reshape: [4, 4, 8], channels_out: 3}
  conditioning: {type: film, hidden_sizes: [8], scales_mult: 0.1, scales_add: 1.0,
                 shifts_mult: 0.1}
loss_weights:
  kl: {distribution: log_uniform, low: 0.5, high: 64.0}
  reconstruction: {distribution: log_uniform, low: 0.999, high: 1.001}
optimizer: {lr: 1.0e-3, decay_steps: [30], decay_factor: 0.5}
train: {batch_size: 8, steps: 40, checkpoint_every: 10, keep_checkpoints: 3, log_every: 5,
        bucket_mb: 0.002}
eval: {batch_size: 16, max_batches: 2, splits: [train, valid], betas: [1.0, 8.0]}
EOF
}

# tiny_train BINARY NP OUT_DIR [args]: 20 steps of $T/tiny.yaml (tiny_setup)
tiny_train() {
    local bin=$1 np=$2 dir=$3
    shift 3
    $MPI "$np" "$bin" train "$T/tiny.yaml" --set experiment.out_dir="$dir" --set train.steps=20 "$@"
}

# evtab BINARY RUN NAME: the step-20 eval table of RUN (valid split, beta 1
# and 8, z = mean, one batch) as $T/NAME.csv
evtab() {
    $MPI 1 "$1" eval "$2" --split valid --beta 1,8 --set eval.z=mean --set eval.max_batches=1 &&
        cp "$2/eval/step-000000020.csv" "$T/$3.csv"
}

# need_build BINARY HOW: the whole suite is one skip when another build's
# BINARY (bin/yoto-double, bin/yoto-avx512) is not there; HOW builds it
need_build() {
    [ -x "$1" ] && return 0
    skip "${1#"$PWD"/} end to end" "${1#"$PWD"/} not built ($2; make test builds it)"
    done_testing
    exit
}

# Another build against the binary under test (test_double.sh,
# test_avx512.sh): the same seed, data and weights, so the two differ by
# float rounding only, and a numerics bug moves them apart by far more.
# same_run_as_yoto WHAT DIR: the binary under test's run of the same 20
# steps as DIR's ($T/f); the metrics agree to 1e-4 relative at every row
same_run_as_yoto() {
    expect_exit 0 "the binary under test, the same run" tiny_train "$YOTO" 2 "$T/f"
    check "metrics: $1 and the binary under test agree to 1e-4 relative at every row" \
        "$PYTHON" tests/e2e/runcheck.py metrics "$2/metrics.csv" "$T/f/metrics.csv" 1e-4 4
}
# evaluates_like_yoto BINARY WHAT: BINARY and the binary under test evaluate
# $T/f (same_run_as_yoto); the tables agree to 1e-5 relative
evaluates_like_yoto() {
    expect_exit 0 "$2 evaluates the binary under test's run" evtab "$1" "$T/f" other
    expect_exit 0 "the binary under test evaluates it too" evtab "$YOTO" "$T/f" ff
    check "the two tables agree to 1e-5 relative" "$PYTHON" tests/e2e/runcheck.py tables \
        "$T/other.csv" "$T/ff.csv" 1e-5 2
}

done_testing() { echo "1..$_tap_n"; [ $_tap_failed -eq 0 ]; }
