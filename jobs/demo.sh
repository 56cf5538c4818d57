#!/usr/bin/env bash
# jobs/demo.sh — what `make demo` runs: the quick-start path on one machine.
#
# usage: jobs/demo.sh          (or: make demo)
#        jobs/demo.sh -h | --help
#
# Prepares the real Fashion-MNIST (Debian's dataset-fashion-mnist), trains
# the YOTO model of configs/fashion_mnist_conv_vae_yoto.yaml on 2 ranks,
# evaluates it over its beta list, draws samples, reconstructions, the
# rate-distortion plot and the training and validation curves, and checks
# that the one model behaves like a beta-VAE at every beta (KL falls,
# reconstruction loss rises with beta). Run again, it continues or reuses
# what is there.
#
# Environment: RANKS (default 2), CONFIG, DATA_DIR (the IDX files),
# YOTO (the binary), PYTHON (default /usr/bin/python3), DEMO_STEPS (training
# steps, default 4000 of the config's 24000: about a minute on 2 cores).
set -euo pipefail
case ${1:-} in
"") ;;
-h | --help)
    # the comment block above, without the leading '# '
    awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "${BASH_SOURCE[0]}"
    exit 0 ;;
*) echo "jobs/demo.sh: takes no arguments (settings come from the environment; --help)" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."

RANKS=${RANKS:-2}
CONFIG=${CONFIG:-configs/fashion_mnist_conv_vae_yoto.yaml}
DATA_DIR=${DATA_DIR:-/usr/share/datasets/fashion-mnist}
YOTO=${YOTO:-bin/yoto}
PYTHON=${PYTHON:-/usr/bin/python3}
RUN=runs/fashion_mnist_yoto
BETAS=0.125,0.5,2,8,32,128,512

# Open MPI refuses root without these; more ranks than cores need oversubscribe
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMPI_MCA_rmaps_base_oversubscribe=1
export OPENBLAS_NUM_THREADS=1
# OpenBLAS 0.3.21 runs slow generic kernels on CPUs it does not know
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
    export OPENBLAS_CORETYPE=Haswell
fi
MPIRUN=(mpirun -np "$RANKS")

step() { printf '\n== %s\n' "$*"; }
t0=$SECONDS

step "1/5 data: Fashion-MNIST -> data/fashion_mnist.h5"
if [ -s data/fashion_mnist.h5 ]; then
    echo "data/fashion_mnist.h5 is there"
else
    "$YOTO" prepare fashion-mnist "$DATA_DIR" data/fashion_mnist.h5
fi

step "2/5 train: one YOTO model on $RANKS ranks ($CONFIG), validation tables every 1000 steps"
# the demo's short run: 4000 of the config's 24000 steps (docs/EXPERIMENTS.md)
"${MPIRUN[@]}" "$YOTO" train "$CONFIG" --set experiment.out_dir="$RUN" --set eval.every=1000 \
    --set train.steps="${DEMO_STEPS:-4000}" --set "optimizer.decay_steps=[$((${DEMO_STEPS:-4000} * 3 / 4))]" \
    --set train.checkpoint_every=500

step "3/5 evaluate over the beta list (train and test splits)"
"${MPIRUN[@]}" "$YOTO" eval "$RUN"

step "4/5 pictures"
"$YOTO" sample "$RUN" --beta "$BETAS" --n 10 --out "$RUN/samples.png"
"$YOTO" reconstruct "$RUN" --beta "$BETAS" --n 10 --split test --out "$RUN/reconstructions.png"
"$PYTHON" analysis/rd_curve.py "$RUN" --out "$RUN/rd_curve.png"
"$PYTHON" analysis/curves.py "$RUN" --out "$RUN/curves.png"

step "5/5 is the model conditioned? (KL down, reconstruction up, as beta grows)"
status=0
"$PYTHON" analysis/check_rd.py "$RUN" || status=$?

cat <<EOF

demo finished in $((SECONDS - t0)) s; everything is in $RUN/:
  samples.png          prior samples, one row per beta ($BETAS), the same z in every row
  reconstructions.png  test images (first row) and their reconstructions at each beta
  rd_curve.png         loss vs beta and the rate-distortion plane (nats per image)
  curves.png           training curves (metrics.csv) and validation curves (eval/ over the steps)
  eval/                the beta tables (HDF5, CSV, Markdown); log.txt, ckpt/
Compare with fixed-beta models: docs/EXPERIMENTS.md.
EOF
exit $status
