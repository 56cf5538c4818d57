#!/usr/bin/env bash
# jobs/fidelity.sh — does ONE YOTO model match the per-β models? The study,
# end to end: train, evaluate, tabulate, plot.
#
# usage: jobs/fidelity.sh [options]
#   jobs/fidelity.sh                                 # 5 betas x 3 seeds, 4000 steps
#   jobs/fidelity.sh --steps 16000 --out results/fidelity-16k
#   jobs/fidelity.sh --name gated --yoto-set model.conditioning.type=gated --out results/fidelity-4k
#
# For every seed of --seeds it trains the YOTO model of --config and, for
# every beta of --betas, a fixed-beta model (--fixed: a plain VAE, no
# conditioning, loss_weights.kl fixed to beta), all with the same network,
# data, optimiser, batch and number of steps (the learning rate halves at 3/4
# of them). Every model is evaluated on the full test split with z = the
# posterior mean and with z = one sample (the YOTO model at every beta, each
# fixed model at its own); then analysis/fidelity.py writes OUT/fidelity.md
# (per beta: fixed mean ± std over seeds, YOTO mean ± std, the gap in % and
# whether it exceeds 2 standard errors) and OUT/fidelity.png.
#
# Resumable: a run whose checkpoint of the last step exists is not trained
# again (an interrupted one continues from its checkpoint), and a table that
# exists is not evaluated again; run the same command again after a stop.
# Several YOTO variants (--name, --yoto-set) can share one OUT: the fixed
# baselines are trained once and each variant is reported beside them.
#
# options:
#   --betas LIST        betas to compare (default "0.25 1 8 64 256")
#   --seeds LIST        experiment.seed values (default "1 2 3")
#   --steps N           training steps of every model (default 4000)
#   --yoto-steps N      the YOTO model's steps instead (default: --steps): it may
#                       train longer than each fixed model and still cost a
#                       fraction of all of them
#   --ranks R           MPI ranks per run (default 2)
#   --config FILE       the YOTO config (default configs/fashion_mnist_conv_vae_yoto.yaml)
#   --fixed FILE        the fixed-beta config (default configs/fashion_mnist_conv_vae_fixed_beta8.yaml)
#   --data FILE         data file of both (default data/fashion_mnist.h5; made with
#                       `yoto prepare fashion-mnist` from DATA_DIR when missing)
#   --name NAME         the YOTO variant's name (default film)
#   --yoto-set KEY=VAL  override for the YOTO runs only (a lever; repeatable)
#   --set KEY=VAL       override for every run (repeatable)
#   --eval-max-batches N  eval.max_batches (default 0: the whole test split)
#   --out DIR           results (default results/fidelity-<steps>)
#   --slurm             submit the training runs with sbatch (jobs/train.sbatch for
#                       the YOTO runs, jobs/baselines.sbatch arrays for the fixed
#                       ones, one array per seed) and stop; when they have
#                       finished, run the same command without --slurm: it skips
#                       the trained runs, evaluates and reports
#   --sbatch-args ARGS  more sbatch options (partition, account, time)
#   --report-only       tabulate and plot what is there
#   -h, --help          this text
# Environment: YOTO (the binary), PYTHON (default /usr/bin/python3), DATA_DIR
# (Fashion-MNIST's IDX files, default /usr/share/datasets/fashion-mnist),
# MPIRUN (default "mpirun").
# Exit codes: 0 done (or submitted), 1 a run or evaluation failed, 2 bad arguments.

set -u
usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die() { echo "jobs/fidelity.sh: $*" >&2; exit 2; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
YOTO=${YOTO:-$root/bin/yoto}
PYTHON=${PYTHON:-/usr/bin/python3}
DATA_DIR=${DATA_DIR:-/usr/share/datasets/fashion-mnist}
betas="0.25 1 8 64 256" seeds="1 2 3" steps=4000 ysteps="" ranks=2 name=film out="" emb=0
config=configs/fashion_mnist_conv_vae_yoto.yaml fixed=configs/fashion_mnist_conv_vae_fixed_beta8.yaml
data=data/fashion_mnist.h5 slurm=0 sbatch_args="" report_only=0
yoto_sets=() all_sets=()
while [ $# -gt 0 ]; do
    case $1 in
    -h | --help) usage; exit 0 ;;
    --slurm) slurm=1; shift; continue ;;
    --report-only) report_only=1; shift; continue ;;
    esac
    [ $# -ge 2 ] || die "$1 needs a value (see --help)"
    case $1 in
    --betas) betas=${2//,/ } ;;
    --seeds) seeds=${2//,/ } ;;
    --steps) steps=$2 ;;
    --yoto-steps) ysteps=$2 ;;
    --ranks) ranks=$2 ;;
    --config) config=$2 ;;
    --fixed) fixed=$2 ;;
    --data) data=$2 ;;
    --name) name=$2 ;;
    --yoto-set) yoto_sets+=(--set "$2") ;;
    --set) all_sets+=(--set "$2") ;;
    --eval-max-batches) emb=$2 ;;
    --out) out=$2 ;;
    --sbatch-args) sbatch_args=$2 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
    shift 2
done
[[ $steps =~ ^[1-9][0-9]*$ ]] || die "--steps must be a positive integer, got '$steps'"
ysteps=${ysteps:-$steps}
[[ $ysteps =~ ^[1-9][0-9]*$ ]] || die "--yoto-steps must be a positive integer, got '$ysteps'"
[[ $ranks =~ ^[1-9][0-9]*$ ]] || die "--ranks must be a positive integer, got '$ranks'"
[[ $emb =~ ^[0-9]+$ ]] || die "--eval-max-batches must be an integer >= 0, got '$emb'"
[[ $name =~ ^[A-Za-z0-9_.-]+$ ]] || die "--name may hold letters, digits, '_', '.', '-': got '$name'"
for b in $betas; do [[ $b =~ ^[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$ ]] || die "beta '$b' is not a positive number"; done
for s in $seeds; do [[ $s =~ ^[0-9]+$ ]] || die "seed '$s' is not an integer"; done
out=${out:-results/fidelity-$steps}
cd "$root" || exit 2

report() {
    "$PYTHON" analysis/fidelity.py "$out" --out "$out/fidelity.md" --plot "$out/fidelity.png"
}
if [ $report_only = 1 ]; then report; exit $?; fi
[ -x "$YOTO" ] || die "no yoto binary at $YOTO: run 'make' first"
[ -f "$config" ] || die "no config $config"
[ -f "$fixed" ] || die "no config $fixed"
mkdir -p "$out/tables" || die "cannot create $out"

if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMPI_MCA_rmaps_base_oversubscribe=1 OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
    export OPENBLAS_CORETYPE=Haswell
fi
read -r -a MPIRUN <<<"${MPIRUN:-mpirun}"

if [ ! -s "$data" ] && [ $slurm = 0 ]; then
    echo "== data: $data from $DATA_DIR"
    "$YOTO" prepare fashion-mnist "$DATA_DIR" "$data" >/dev/null || exit 1
fi
common=(--set "data.file=$data" --set train.keep_checkpoints=1 --set eval.every=0 "${all_sets[@]}")
# the same schedule for every model: lr halves at 3/4 of the steps
schedule() { # schedule STEPS: the --set options of a run of STEPS steps
    echo --set "train.steps=$1" --set "optimizer.decay_steps=[$(($1 * 3 / 4))]" \
        --set "train.checkpoint_every=$((($1 + 3) / 4))" --set "train.log_every=$((($1 + 19) / 20))"
}
read -r -a fsched <<<"$(schedule "$steps")"
read -r -a ysched <<<"$(schedule "$ysteps")"
fixed_sets() { # fixed_sets BETA: the fixed-beta model of the baselines config
    echo --set loss_weights.mode=fixed --set model.conditioning.type=none \
        --set loss_weights.kl.distribution=fixed --set "loss_weights.kl.value=$1" \
        --set loss_weights.reconstruction.distribution=fixed --set loss_weights.reconstruction.value=1.0
}
trained() { [ "$(cat "$1/ckpt/latest" 2>/dev/null)" = "$(printf 'step-%09d.h5' "$2")" ]; } # RUN STEPS

failed=0
train() { # train RUN_DIR STEPS CONFIG ARGS...
    local run=$1 n=$2 cfg=$3
    shift 3
    if trained "$run" "$n"; then echo "   $run: trained"; return 0; fi
    echo "== train $run"
    local t0=$SECONDS
    if "${MPIRUN[@]}" -np "$ranks" "$YOTO" train "$cfg" "${common[@]}" "$@" \
        --set "experiment.out_dir=$run" >"$run.log" 2>&1; then
        echo "   done in $((SECONDS - t0)) s"
        echo "$((SECONDS - t0))" >>"$run.seconds"
    else
        echo "   FAILED (exit $?): see $run.log" >&2
        failed=1
    fi
}

evaluate() { # evaluate RUN_DIR STEPS BETAS
    local run=$1 n=$2 list=${3// /,}
    trained "$run" "$n" || return 0
    for z in mean sample; do
        local table=$out/tables/$(basename "$run").$z.csv
        [ -s "$table" ] && continue
        echo "== eval $run (z = $z, betas $list)"
        if "${MPIRUN[@]}" -np "$ranks" "$YOTO" eval "$run" --split test --beta "$list" \
            --set "eval.z=$z" --set "eval.max_batches=$emb" >"$run.eval-$z.log" 2>&1; then
            cp "$run/eval/$(printf 'step-%09d.csv' "$n")" "$table.tmp" && mv "$table.tmp" "$table"
        else
            echo "   FAILED: see $run.eval-$z.log" >&2
            failed=1
        fi
    done
}

if [ $slurm = 1 ]; then
    command -v sbatch >/dev/null || die "--slurm: no sbatch on this machine"
    read -r -a sargs <<<"$sbatch_args"
    for s in $seeds; do
        run=$out/yoto-$name-s$s
        trained "$run" "$ysteps" || sbatch "${sargs[@]}" --ntasks="$ranks" --job-name="yoto-fid-$name-s$s" \
            jobs/train.sbatch "$config" "${common[@]}" "${ysched[@]}" "${yoto_sets[@]}" --set "experiment.seed=$s" \
            --set "experiment.out_dir=$run" || failed=1
        todo=()
        for b in $betas; do trained "$out/fixed-b$b-s$s" "$steps" || todo+=("$b"); done
        [ ${#todo[@]} -eq 0 ] && continue
        YOTO_BETAS="${todo[*]}" YOTO_OUT_PREFIX="$out/fixed-s$s-b" sbatch "${sargs[@]}" \
            --ntasks="$ranks" --array=0-$((${#todo[@]} - 1)) --job-name="yoto-fid-fixed-s$s" \
            jobs/baselines.sbatch "$fixed" "${common[@]}" "${fsched[@]}" --set "experiment.seed=$s" || failed=1
    done
    echo "submitted. When the jobs have finished, run this command again without --slurm:"
    echo "it adopts their run directories, evaluates every model and writes the report."
    exit $failed
fi

# runs trained by --slurm's arrays are named fixed-s<seed>-b<beta>: adopt them
for s in $seeds; do for b in $betas; do
    [ -d "$out/fixed-s$s-b$b" ] && [ ! -e "$out/fixed-b$b-s$s" ] && mv "$out/fixed-s$s-b$b" "$out/fixed-b$b-s$s"
done; done
t_all=$SECONDS
for s in $seeds; do
    train "$out/yoto-$name-s$s" "$ysteps" "$config" "${ysched[@]}" "${yoto_sets[@]}" --set "experiment.seed=$s"
    for b in $betas; do
        # shellcheck disable=SC2046
        train "$out/fixed-b$b-s$s" "$steps" "$fixed" "${fsched[@]}" $(fixed_sets "$b") --set "experiment.seed=$s"
    done
done
for s in $seeds; do
    evaluate "$out/yoto-$name-s$s" "$ysteps" "$betas"
    for b in $betas; do evaluate "$out/fixed-b$b-s$s" "$steps" "$b"; done
done
echo "== study: $((SECONDS - t_all)) s"
report || failed=1
exit $failed
