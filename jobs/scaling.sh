#!/bin/bash
# jobs/scaling.sh — weak- and strong-scaling sweeps of the training step, each
# point a short `yoto bench --json` run; then analysis/scaling.py makes the
# table, the plot and the model's prediction for larger counts.
#
# usage: jobs/scaling.sh [options] CONFIG [--set KEY=VALUE]...
#
#   jobs/scaling.sh --nodes "1 2 4 8" --tasks-per-node 32 --sbatch-args "-p compute -t 00:15:00" CONFIG
#   jobs/scaling.sh --local --ranks "1 2 4" CONFIG          # no Slurm: mpirun here
#   /usr/bin/python3 analysis/scaling.py RESULTS_DIR        # table + plot + prediction
#
# weak:   train.batch_per_rank fixed (--batch-per-rank B); images/s should grow
#         with the rank count.
# strong: train.batch_size fixed (--global-batch G, split over the ranks); the
#         step should get shorter.
# comm:   at every rank count, `yoto bench --comm`: the allreduce's time against
#         message size, which analysis/scaling.py fits its communication model to.
# contention: with --nodes, weak points on ONE node at 1, 2, 4, ... up to
#         --tasks-per-node ranks: how much a rank's compute slows when the
#         node's ranks share its memory bandwidth (without --nodes the weak
#         points on this machine measure it).
# With Slurm (default) one job per sweep and rank count is submitted
# (jobs/bench.sbatch); the jobs share one name and --dependency=singleton, so
# they run one after another and do not disturb each other's timings
# (--parallel drops that). --local runs the same points with mpirun, one after
# another. Results: OUT/weak-p00004.json, OUT/strong-p00004.json, ...
#
# options:
#   --ranks LIST           rank counts (default "1 2 4"); Slurm: --ntasks
#   --nodes LIST           node counts instead, each with --tasks-per-node N ranks
#   --tasks-per-node N     ranks per node with --nodes
#   --batch-per-rank B     weak scaling: per-rank batch (default 32)
#   --global-batch G       strong scaling: global batch (default B x the largest
#                          rank count; must divide by every rank count)
#   --sweeps LIST          any of "weak strong comm contention" (default: all four;
#                          contention only with --nodes)
#   --steps N, --warmup N  timed and untimed steps per point (default 20, 3)
#   --comm-max-mb M        comm: messages up to M MiB (default 64; yoto bench
#                          --comm-max-mb)
#   --threads T            OpenBLAS threads per rank (Slurm: --cpus-per-task; default 1)
#   --out DIR              results directory (default results/scaling-DATE-TIME)
#   --sbatch-args "ARGS"   more sbatch options (partition, account, time, --exclusive)
#   --parallel             Slurm: let the jobs run at the same time
#   --wait                 Slurm: wait until every job has ended; exit 1 if a
#                          point has no JSON
#   --local                no Slurm: mpirun on this machine (MPIRUN,
#                          YOTO_MPIRUN_ARGS as in jobs/mpirun.sh)
#   -h, --help             this text
# Exit codes: 0 submitted (or, with --local/--wait, every JSON written), 1 a
# point failed, 2 bad arguments.
set -u
# the comment block above, without the leading '# '
usage() { awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "${BASH_SOURCE[0]}"; }
die() { echo "jobs/scaling.sh: $*" >&2; exit 2; }
isint() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
YOTO=${YOTO:-$root/bin/yoto}
ranks_list="1 2 4" nodes_list="" tpn="" bpr=32 gbatch="" sweeps="weak strong comm contention" steps=20 warmup=3 threads=1 comm_max=64
out="" sbatch_args="" parallel=0 wait=0 local=0
while [ $# -gt 0 ]; do
    case $1 in
    -h | --help) usage; exit 0 ;;
    --ranks | --nodes | --tasks-per-node | --batch-per-rank | --global-batch | --sweeps | --steps | \
        --warmup | --threads | --out | --sbatch-args | --comm-max-mb)
        [ $# -ge 2 ] || die "$1 needs a value"
        case $1 in
        --ranks) ranks_list=${2//,/ } ;;
        --nodes) nodes_list=${2//,/ } ;;
        --tasks-per-node) tpn=$2 ;;
        --batch-per-rank) bpr=$2 ;;
        --global-batch) gbatch=$2 ;;
        --sweeps) sweeps=${2//,/ } ;;
        --steps) steps=$2 ;;
        --warmup) warmup=$2 ;;
        --threads) threads=$2 ;;
        --comm-max-mb) comm_max=$2 ;;
        --out) out=$2 ;;
        --sbatch-args) sbatch_args=$2 ;;
        esac
        shift 2 ;;
    --parallel) parallel=1; shift ;;
    --wait) wait=1; shift ;;
    --local) local=1; shift ;;
    -*) die "unknown option '$1' (--help)" ;;
    *) break ;;
    esac
done
[ $# -ge 1 ] || die "usage: jobs/scaling.sh [options] CONFIG [--set KEY=VALUE]... (--help)"
config=$1
shift
[ -f "$config" ] || die "no config file '$config'"
config=$(cd "$(dirname "$config")" && pwd)/$(basename "$config")
for v in "$bpr" "$steps" "$threads" "$comm_max"; do isint "$v" || die "expected a positive integer, found '$v'"; done
[[ $warmup =~ ^[0-9]+$ ]] || die "--warmup: expected an integer >= 0, found '$warmup'"
for s in $sweeps; do
    case $s in weak | strong | comm | contention) ;; *) die "--sweeps: weak, strong, comm, contention; found '$s'" ;; esac
done
[ -x "$YOTO" ] || die "no yoto binary at $YOTO (run 'make', or set YOTO)"

# the points: P ranks, and for Slurm the node count (empty: Slurm decides)
points=()
if [ -n "$nodes_list" ]; then
    [ -n "$tpn" ] || die "--nodes needs --tasks-per-node"
    isint "$tpn" || die "--tasks-per-node: expected a positive integer, found '$tpn'"
    for n in $nodes_list; do isint "$n" || die "--nodes: '$n' is not a positive integer"; points+=("$((n * tpn)):$n"); done
else
    for p in $ranks_list; do isint "$p" || die "--ranks: '$p' is not a positive integer"; points+=("$p:"); done
fi
maxp=1
for pt in "${points[@]}"; do p=${pt%%:*}; [ "$p" -gt "$maxp" ] && maxp=$p; done
# contention: one node, 1, 2, 4, ... ranks up to the node's (with --nodes only)
cpoints=()
if [ -n "$nodes_list" ] && [[ " $sweeps " == *" contention "* ]]; then
    r=1
    while [ "$r" -lt "$tpn" ]; do cpoints+=("$r:1"); r=$((r * 2)); done
    cpoints+=("$tpn:1")
fi
[ -n "$gbatch" ] || gbatch=$((bpr * maxp))
isint "$gbatch" || die "--global-batch: expected a positive integer, found '$gbatch'"
if [[ " $sweeps " == *" strong "* ]]; then
    for pt in "${points[@]}"; do
        p=${pt%%:*}
        [ $((gbatch % p)) -eq 0 ] || die "strong scaling: global batch $gbatch does not divide by $p ranks (--global-batch)"
    done
fi
# the config must load with both settings (exit 2 here, not in 10 queued jobs)
"$YOTO" config "$config" "$@" --set train.batch_size=0 --set train.batch_per_rank="$bpr" >/dev/null ||
    die "the config does not load (see above)"

[ -n "$out" ] || out=results/scaling-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out/logs" || die "cannot create $out"
out=$(cd "$out" && pwd)

batch_args() { # batch_args SWEEP: the options of the sweep
    case $1 in
    weak | contention) echo "--set train.batch_size=0 --set train.batch_per_rank=$bpr" ;;
    strong) echo "--set train.batch_per_rank=0 --set train.batch_size=$gbatch" ;;
    comm) echo "--comm --comm-max-mb $comm_max --set train.batch_size=0 --set train.batch_per_rank=$bpr" ;;
    esac
}
sweep_points() { # sweep_points SWEEP: its points, ranks:nodes
    if [ "$1" = contention ]; then echo "${cpoints[*]}"; else echo "${points[*]}"; fi
}
{
    echo "# jobs/scaling.sh $(date '+%F %T') on $(hostname)"
    echo "config: $config"
    echo "extra: $*"
    echo "sweeps: $sweeps; points (ranks:nodes): ${points[*]}; batch_per_rank $bpr; global batch $gbatch"
    echo "steps $steps, warmup $warmup, threads $threads; $([ $local = 1 ] && echo "local mpirun" || echo "Slurm")"
} >"$out/README.txt"

bench_opts=(--steps "$steps" --warmup "$warmup" "$@")
failed=0
if [ $local = 1 ]; then
    MPIRUN=${MPIRUN:-mpirun}
    command -v "$MPIRUN" >/dev/null || die "'$MPIRUN' not found (Debian: openmpi-bin)"
    export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
    xs=(-x OPENBLAS_NUM_THREADS -x OMP_NUM_THREADS)
    [ -n "${OPENBLAS_CORETYPE:-}" ] && xs+=(-x OPENBLAS_CORETYPE)
    for sweep in $sweeps; do
        [ "$sweep" = contention ] && continue # the weak points here measure it
        for pt in "${points[@]}"; do
            p=${pt%%:*}
            f=$out/$sweep-p$(printf %05d "$p").json
            log=$out/logs/$sweep-p$(printf %05d "$p").log
            # shellcheck disable=SC2046,SC2086 # word lists
            if "$MPIRUN" -np "$p" "${xs[@]}" ${YOTO_MPIRUN_ARGS:-} "$YOTO" bench "$config" "${bench_opts[@]}" \
                $(batch_args "$sweep") --threads "$threads" --json >"$f.tmp" 2>"$log" && [ -s "$f.tmp" ]; then
                { printf '{"sweep": "%s", "nodes": 1, "tasks_per_node": "%s", "slurm_job": "",\n "bench": ' "$sweep" "$p"
                  cat "$f.tmp"; printf '}\n'; } >"$f"
                echo "$sweep $p ranks: $f"
            else
                echo "jobs/scaling.sh: $sweep at $p ranks failed; see $log" >&2
                failed=1
            fi
            rm -f "$f.tmp"
        done
    done
    echo "results in $out; next: /usr/bin/python3 analysis/scaling.py $out"
    exit $failed
fi

command -v sbatch >/dev/null || die "sbatch not found: no Slurm here? use --local (mpirun on this machine)"
name=yoto-scaling-$$
dep=(--dependency=singleton)
[ $parallel = 1 ] && dep=()
ids=()
for sweep in $sweeps; do
    for pt in $(sweep_points "$sweep"); do
        p=${pt%%:*} n=${pt#*:}
        f=$out/$sweep-p$(printf %05d "$p").json
        if [ "$sweep" = contention ]; then alloc=(--nodes=1 --ntasks-per-node="$p")
        elif [ -n "$n" ]; then alloc=(--nodes="$n" --ntasks-per-node="$tpn")
        else alloc=(--ntasks="$p"); fi
        # shellcheck disable=SC2046,SC2086 # word lists
        id=$(YOTO_ROOT=$root YOTO=$YOTO sbatch --parsable --job-name="$name" "${dep[@]}" "${alloc[@]}" \
            --cpus-per-task="$threads" --output="$out/logs/$sweep-p$(printf %05d "$p")-%j.out" \
            $sbatch_args "$root/jobs/bench.sbatch" "$f" "$sweep" "$config" "${bench_opts[@]}" \
            $(batch_args "$sweep")) || die "sbatch failed for $sweep at $p ranks"
        id=${id%%;*}
        ids+=("$id")
        echo "$sweep $p ranks${n:+ on $n nodes}: job $id -> $f"
    done
done
echo "${ids[*]}" >"$out/jobs.txt"
if [ $wait = 0 ]; then
    echo "submitted ${#ids[@]} jobs (squeue -n $name); then: /usr/bin/python3 analysis/scaling.py $out"
    exit 0
fi
joined=$(IFS=,; echo "${ids[*]}")
while [ -n "$(squeue -h -j "$joined" -o %i 2>/dev/null)" ]; do sleep 1; done
for sweep in $sweeps; do
    for pt in $(sweep_points "$sweep"); do
        p=${pt%%:*}
        f=$out/$sweep-p$(printf %05d "$p").json
        [ -s "$f" ] || { echo "jobs/scaling.sh: no $f: see $out/logs/" >&2; failed=1; }
    done
done
echo "results in $out; next: /usr/bin/python3 analysis/scaling.py $out"
exit $failed
