#!/usr/bin/env bash
# jobs/disentanglement.sh — disentanglement vs beta from ONE YOTO model, against
# fixed-beta models: train, evaluate, tabulate, plot.
#
# usage: jobs/disentanglement.sh [options]
#
#   jobs/disentanglement.sh                    # 1 YOTO + 3 fixed models, 5000 steps
#   nice -n 19 jobs/disentanglement.sh --steps 2500 --out results/dis-2500
#   jobs/disentanglement.sh --steps 100000 --ranks 32 --seeds "1 2 3" --slurm
#
# On Shapes3D-layout data (images [N, 64, 64, 3], labels [N, 6]: floor, wall
# and object hue, scale, shape, orientation) it trains, for every seed of
# --seeds, the YOTO model of --config (the Shapes3D architecture, beta
# log-uniform over its range) and one fixed-beta model per beta of --betas (a
# plain VAE, no conditioning, loss_weights.kl fixed to beta), all with the
# same network, data, optimiser, batch and steps (the learning rate --lr
# halves at 3/4 of them). Then `yoto eval` measures every model on the
# metrics split (another set of images with their labels): losses and the
# disentanglement metrics MIG, SAP, FactorVAE score and DCI of the posterior
# means (docs/METRICS.md), the YOTO model at every beta of --eval-betas, each
# fixed model at its own beta, and `yoto encode` writes the same codes to
# OUT/codes/<run>.h5. analysis/disentanglement.py writes OUT/disentanglement.md
# (the tables, the active codes and the factor each one carries, the compute)
# and OUT/disentanglement.png (each metric against beta: the YOTO curve, the
# fixed models' points).
#
# Data: without --train-data / --metrics-data, `yoto prepare shapes` renders
# --train-size images (seed 0) and --metrics-size others (seed 1) into
# OUT/data: procedural stand-ins for DeepMind's renders with the same layout
# and factor grid. Resumable: a run whose last checkpoint exists is not
# trained again (an interrupted one continues), a table that exists is not
# evaluated again; run the same command again after a stop.
#
# options:
#   --steps N           training steps of every model (default 5000)
#   --lr X              Adam's learning rate (default 1e-3; the config's 2e-4
#                       is for its 700,000 steps)
#   --betas LIST        the fixed models' betas (default "1 16 256")
#   --eval-betas LIST   the YOTO model's betas (default "0.5 1 2 4 8 16 32 64
#                       128 256 512": its training range, octaves)
#   --seeds LIST        experiment.seed values (default "1")
#   --ranks R           MPI ranks per run (default 1)
#   --config FILE       the YOTO config (default configs/shapes3d_conv_vae_yoto.yaml)
#   --train-data FILE   training images and labels (default OUT/data/train.h5)
#   --metrics-data FILE the images the metrics are measured on (default
#                       OUT/data/metrics.h5)
#   --train-size N      images prepared for training (default 48000)
#   --metrics-size N    images prepared for the metrics (default 10000)
#   --set KEY=VAL       override for every run (repeatable), e.g.
#                       --set train.batch_size=256 on a cluster
#   --out DIR           results (default results/disentanglement-<steps>)
#   --slurm             submit the training runs with sbatch (jobs/train.sbatch,
#                       --ntasks R each) and stop; when they have finished, run
#                       the same command without --slurm to evaluate and report
#   --sbatch-args ARGS  more sbatch options (partition, account, time)
#   --report-only       tabulate and plot what is there
#   -h, --help          this text
# Environment: YOTO (the binary), PYTHON (default /usr/bin/python3), MPIRUN
# (default "mpirun"). On a shared machine run it under `nice -n 19`.
# Exit codes: 0 done (or submitted), 1 a run or evaluation failed, 2 bad arguments.

set -u
usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die() { echo "jobs/disentanglement.sh: $*" >&2; exit 2; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
YOTO=${YOTO:-$root/bin/yoto}
PYTHON=${PYTHON:-/usr/bin/python3}
steps=5000 lr=1e-3 betas="1 16 256" eval_betas="0.5 1 2 4 8 16 32 64 128 256 512" seeds=1
ranks=1 config=configs/shapes3d_conv_vae_yoto.yaml train_data="" metrics_data=""
train_size=48000 metrics_size=10000 out="" slurm=0 sbatch_args="" report_only=0
all_sets=()
while [ $# -gt 0 ]; do
    case $1 in
    -h | --help) usage; exit 0 ;;
    --slurm) slurm=1; shift; continue ;;
    --report-only) report_only=1; shift; continue ;;
    esac
    [ $# -ge 2 ] || die "$1 needs a value (see --help)"
    case $1 in
    --steps) steps=$2 ;;
    --lr) lr=$2 ;;
    --betas) betas=${2//,/ } ;;
    --eval-betas) eval_betas=${2//,/ } ;;
    --seeds) seeds=${2//,/ } ;;
    --ranks) ranks=$2 ;;
    --config) config=$2 ;;
    --train-data) train_data=$2 ;;
    --metrics-data) metrics_data=$2 ;;
    --train-size) train_size=$2 ;;
    --metrics-size) metrics_size=$2 ;;
    --set) all_sets+=(--set "$2") ;;
    --out) out=$2 ;;
    --sbatch-args) sbatch_args=$2 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
    shift 2
done
num='^[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$'
for v in steps ranks train_size metrics_size; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "--${v//_/-} must be a positive integer, got '${!v}'"
done
[[ $lr =~ $num ]] || die "--lr must be a positive number, got '$lr'"
for b in $betas $eval_betas; do [[ $b =~ $num ]] || die "beta '$b' is not a positive number"; done
for s in $seeds; do [[ $s =~ ^[0-9]+$ ]] || die "seed '$s' is not an integer"; done
[ -n "$betas" ] && [ -n "$eval_betas" ] && [ -n "$seeds" ] || die "empty --betas, --eval-betas or --seeds"
out=${out:-results/disentanglement-$steps}
cd "$root" || exit 2

report() {
    "$PYTHON" analysis/disentanglement.py "$out" --out "$out/disentanglement.md" \
        --plot "$out/disentanglement.png"
}
if [ $report_only = 1 ]; then report; exit $?; fi
[ -x "$YOTO" ] || die "no yoto binary at $YOTO: run 'make' first"
[ -f "$config" ] || die "no config $config"
mkdir -p "$out/tables" "$out/data" "$out/codes" || die "cannot create $out"
train_data=${train_data:-$out/data/train.h5}
metrics_data=${metrics_data:-$out/data/metrics.h5}

if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMPI_MCA_rmaps_base_oversubscribe=1 OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
    export OPENBLAS_CORETYPE=Haswell
fi
read -r -a MPIRUN <<<"${MPIRUN:-mpirun}"

for d in "$train_data:$train_size:0" "$metrics_data:$metrics_size:1"; do
    IFS=: read -r file n seed <<<"$d"
    [ -s "$file" ] && continue
    echo "== data: $file ($n procedural Shapes3D images, seed $seed)"
    "$YOTO" prepare shapes "$n" "$file" --seed "$seed" >/dev/null || exit 1
done

# every model: the same data, splits, schedule and evaluation settings
common=(--set "data.file=$train_data"
    --set "data.splits=[{name: train, dataset: images}, {name: metrics, file: \"$metrics_data\", dataset: images}]"
    --set "eval.splits=[metrics]" --set eval.max_batches=0 --set eval.z=mean --set eval.metrics=on
    --set eval.every=0 --set "train.steps=$steps" --set "optimizer.lr=$lr"
    --set "optimizer.decay_steps=[$((steps * 3 / 4 > 0 ? steps * 3 / 4 : 1))]"
    --set "train.checkpoint_every=$(((steps + 3) / 4))" --set train.keep_checkpoints=1
    --set "train.log_every=$(((steps + 19) / 20))" "${all_sets[@]}")
fixed_sets=(--set loss_weights.mode=fixed --set model.conditioning.type=none
    --set loss_weights.kl.distribution=fixed --set loss_weights.reconstruction.distribution=fixed
    --set loss_weights.reconstruction.value=1.0)
trained() { [ "$(cat "$1/ckpt/latest" 2>/dev/null)" = "$(printf 'step-%09d.h5' "$steps")" ]; }
runs=() # "RUN_DIR|BETAS|--set ..." for every model
for s in $seeds; do
    runs+=("$out/yoto-s$s|$eval_betas|--set experiment.seed=$s")
    for b in $betas; do
        runs+=("$out/fixed-b$b-s$s|$b|--set experiment.seed=$s --set loss_weights.kl.value=$b")
    done
done

failed=0
TIMEFORMAT='%R %U %S' # bash's `time`: wall, user and system seconds of the command and its children
train() { # train RUN_DIR ARGS...
    local run=$1
    shift
    if trained "$run"; then echo "   $run: trained"; return 0; fi
    echo "== train $run"
    local t
    if { time "${MPIRUN[@]}" -np "$ranks" "$YOTO" train "$config" "${common[@]}" "$@" \
        --set "experiment.out_dir=$run" >"$run.log" 2>&1; } 2>"$run.time"; then
        read -r t _ <"$run.time"
        echo "   done in $t s"
        cat "$run.time" >>"$run.seconds" # one line per (partial) run: wall user system
    else
        echo "   FAILED: see $run.log" >&2
        failed=1
    fi
}
evaluate() { # evaluate RUN_DIR BETAS
    local run=$1 list=${2// /,} table=$out/tables/$(basename "$1").csv
    trained "$run" || return 0
    [ -s "$table" ] && return 0
    echo "== eval $run (betas $list)"
    if { time "${MPIRUN[@]}" -np "$ranks" "$YOTO" eval "$run" --split metrics --beta "$list" \
        >"$run.eval.log" 2>&1; } 2>"$run.eval.seconds"; then
        cp "$run/eval/$(printf 'step-%09d.csv' "$steps")" "$table.tmp" && mv "$table.tmp" "$table"
    else
        echo "   FAILED: see $run.eval.log" >&2
        failed=1
    fi
}

encode() { # encode RUN_DIR BETAS: the codes of the same images, for the report's active codes
    local run=$1 list=${2// /,} file=$out/codes/$(basename "$1").h5
    trained "$run" || return 0
    [ -s "$file" ] && return 0
    echo "== encode $run (betas $list)"
    if ! { time "${MPIRUN[@]}" -np "$ranks" "$YOTO" encode "$run" --split metrics --beta "$list" \
        --out "$file" >"$run.encode.log" 2>&1; } 2>"$run.encode.seconds"; then
        echo "   FAILED: see $run.encode.log" >&2
        failed=1
    fi
}

if [ $slurm = 1 ]; then
    command -v sbatch >/dev/null || die "--slurm: no sbatch on this machine"
    read -r -a sargs <<<"$sbatch_args"
    for r in "${runs[@]}"; do
        IFS='|' read -r run _ sets <<<"$r"
        read -r -a extra <<<"$sets"
        [[ $run == */fixed-* ]] && extra=("${fixed_sets[@]}" "${extra[@]}")
        trained "$run" || sbatch "${sargs[@]}" --ntasks="$ranks" --job-name="yoto-dis-$(basename "$run")" \
            jobs/train.sbatch "$config" "${common[@]}" "${extra[@]}" --set "experiment.out_dir=$run" ||
            failed=1
    done
    echo "submitted. When the jobs have finished, run this command again without --slurm:"
    echo "it evaluates every model and writes the report."
    exit $failed
fi

t_all=$SECONDS
for r in "${runs[@]}"; do
    IFS='|' read -r run _ sets <<<"$r"
    read -r -a extra <<<"$sets"
    [[ $run == */fixed-* ]] && extra=("${fixed_sets[@]}" "${extra[@]}")
    train "$run" "${extra[@]}"
done
for r in "${runs[@]}"; do
    IFS='|' read -r run list _ <<<"$r"
    evaluate "$run" "$list"
    encode "$run" "$list"
done
echo "== study: $((SECONDS - t_all)) s"
report || failed=1
exit $failed
