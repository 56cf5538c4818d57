#!/bin/bash
# jobs/mpirun.sh — yoto training with mpirun, for machines without Slurm.
#
# usage: jobs/mpirun.sh [-n RANKS] [-t THREADS] CONFIG [--set KEY=VALUE]...
#        jobs/mpirun.sh [-n RANKS] [-t THREADS] --resume RUN_DIR
#        jobs/mpirun.sh -h | --help
#
# RANKS: -n, else $YOTO_RANKS, else cores / THREADS. THREADS (yoto's threads
# per rank, train.threads): -t, else $YOTO_THREADS, else 1; the script passes
# --set train.threads and gives each rank THREADS cores (--map-by slot:PE).
#
# Signals: SIGTERM, SIGINT (^C) or SIGUSR1 to this script are passed on to
# mpirun as SIGUSR1, which Open MPI 4.1 forwards to every rank at once: the
# ranks finish their step, write a checkpoint and exit 75. (mpirun itself does
# not forward SIGTERM: it tears the job down, SIGTERM to the ranks 1 s later and
# SIGKILL after that, and exits 1. So signal this script, not mpirun; mpirun
# runs in its own session, so a ^C in the terminal reaches only this script.)
# Exit code: mpirun's, which is yoto's: 0 done, 1 runtime failure, 2 bad
# input, 75 checkpointed and stopped (run the same command again to continue).
#
# Open MPI's mpirun gets --quiet: when a rank exits non-zero it then prints
# no box of its own over yoto's message (mpirun's exit code is unchanged).
#
# Environment: YOTO (the binary; default bin/yoto beside this script's
# directory), MPIRUN (default mpirun), YOTO_MPIRUN_ARGS (more mpirun options,
# e.g. "--hostfile hosts --map-by ppr:32:node" or "--oversubscribe"; several
# nodes: docs/CLUSTER.md), OPENBLAS_CORETYPE (passed on to every rank).
set -u
# the comment block above, without the leading '# '
usage() { awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "${BASH_SOURCE[0]}"; }
die() { echo "jobs/mpirun.sh: $*" >&2; exit 2; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
YOTO=${YOTO:-$root/bin/yoto}
MPIRUN=${MPIRUN:-mpirun}
ranks=${YOTO_RANKS:-}
threads=${YOTO_THREADS:-1}
while [ $# -gt 0 ]; do
    case $1 in
    -h | --help) usage; exit 0 ;;
    -n | --ranks) [ $# -ge 2 ] || die "$1 needs a number"; ranks=$2; shift 2 ;;
    -t | --threads) [ $# -ge 2 ] || die "$1 needs a number"; threads=$2; shift 2 ;;
    *) break ;;
    esac
done
[ $# -ge 1 ] || die "usage: jobs/mpirun.sh [-n RANKS] [-t THREADS] CONFIG [--set KEY=VALUE]... (--help)"
[[ $threads =~ ^[1-9][0-9]*$ ]] || die "threads must be a positive integer, found '$threads'"
if [ -z "$ranks" ]; then
    ranks=$(($(nproc) / threads))
    [ "$ranks" -ge 1 ] || ranks=1
fi
[[ $ranks =~ ^[1-9][0-9]*$ ]] || die "ranks must be a positive integer, found '$ranks'"
[ -x "$YOTO" ] || die "no yoto binary at $YOTO (run 'make', or set YOTO)"
command -v "$MPIRUN" >/dev/null || die "'$MPIRUN' not found (Debian: openmpi-bin)"
if [ -n "${SLURM_JOB_ID:-}" ]; then
    echo "jobs/mpirun.sh: note: inside Slurm job $SLURM_JOB_ID; jobs/train.sbatch (srun) is the Slurm launcher" >&2
fi

export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
xs=(-x OPENBLAS_NUM_THREADS -x OMP_NUM_THREADS)
[ -n "${OPENBLAS_CORETYPE:-}" ] && xs+=(-x OPENBLAS_CORETYPE)
# Open MPI (4.1: -q, --quiet): no "Primary job terminated normally, but ..." box;
# several threads per rank: mpirun binds each rank to one core unless told
# to give it THREADS (--map-by slot:PE=THREADS)
if "$MPIRUN" --version 2>/dev/null | grep -q "Open MPI"; then
    xs+=(--quiet)
    [ "$threads" -gt 1 ] && xs+=(--map-by "slot:PE=$threads")
fi

stop_requested=
# shellcheck disable=SC2317 # called by the traps
forward() { # forward SIG
    [ -n "${launcher_done:-}" ] && return # e.g. the requeue ending this script
    stop_requested=$1
    echo "jobs/mpirun.sh: SIG$1: asking the ranks to checkpoint and stop" >&2
    [ -n "${mpirun_pid:-}" ] && kill -USR1 "$mpirun_pid" 2>/dev/null
}
trap 'forward USR1' USR1
trap 'forward TERM' TERM
trap 'forward INT' INT

# shellcheck disable=SC2086 # YOTO_MPIRUN_ARGS is a list of options
setsid "$MPIRUN" -np "$ranks" "${xs[@]}" ${YOTO_MPIRUN_ARGS:-} "$YOTO" train "$@" --set train.threads="$threads" &
mpirun_pid=$!
[ -n "$stop_requested" ] && kill -USR1 "$mpirun_pid" 2>/dev/null
# wait returns early (> 128) when a trapped signal arrives: wait again until
# mpirun has exited, then $? is its exit code
while :; do
    wait "$mpirun_pid"
    rc=$?
    kill -0 "$mpirun_pid" 2>/dev/null || break
done
launcher_done=1
[ "$rc" = 75 ] && echo "jobs/mpirun.sh: checkpoint written; run the same command again to continue" >&2
exit "$rc"
