# test_jobs.sh — jobs/ under a real Slurm (issue #7): a private single-node
# Slurm (tests/slurm/up.sh) runs jobs/train.sbatch on 2 ranks through srun,
# a job preempted by its time limit's warning signal that requeues itself and
# finishes as if never stopped, a baselines array, a scaling sweep; without
# Slurm: jobs/mpirun.sh's signal handling and jobs/scaling.sh --local with
# analysis/scaling.py. Where Slurm cannot start, its tests SKIP with the reason.
#
# Wall time is kept down by running the Slurm jobs side by side (the test node
# declares 8 CPUs) while the preempted job waits for its signal, which
# slurmctld sends at its first time-limit pass, 30 s after it started.
. tests/e2e/lib.sh
tiny_setup || { echo "Bail out! cannot prepare data"; exit 1; }

# munged must reach its directory: not under $T (0700); /tmp is sticky
SD=$(mktemp -d /tmp/yoto-slurm.XXXXXX)
cleanup() {
    [ -n "${ref_pid:-}" ] && kill "$ref_pid" 2>/dev/null
    tests/slurm/down.sh "$SD" >/dev/null 2>&1
    rm -rf "$SD" "$T"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

same_tensors() { # same_tensors A.h5 B.h5: params and Adam moments bit for bit
    h5diff -q "$1" "$2" /params /params && h5diff -q "$1" "$2" /optimizer /optimizer
}
# job_state ID: "STATE EXITCODE RESTARTS" of a job (array task: ID_INDEX)
job_state() {
    scontrol show job -o "$1" 2>/dev/null | awk '{
        for (i = 1; i <= NF; i++) {
            split($i, kv, "=")
            if (kv[1] == "JobState") s = kv[2]
            if (kv[1] == "ExitCode") e = $i
            if (kv[1] == "Restarts") r = kv[2]
        }
        sub(/^ExitCode=/, "", e)
        print s, e, r
    }'
}
# wait_job ID SECONDS: until the job has ended (or SECONDS passed); prints its state
wait_job() {
    local id=$1 limit=$2 t0=$SECONDS st
    while :; do
        st=$(job_state "$id")
        case ${st%% *} in
        COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | PREEMPTED | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE) break ;;
        esac
        [ $((SECONDS - t0)) -ge "$limit" ] && { st="STILL ${st:-unknown}"; break; }
        sleep 0.5
    done
    echo "$st"
}

# ---- Slurm: start it, and the preempted job first (its signal comes 30 s after slurmctld starts) ----
slurm=0
if up_msg=$(CPUS=8 tests/slurm/up.sh "$SD" 2>&1); then
    slurm=1
    export SLURM_CONF=$SD/slurm.conf
    _ok "a private single-node Slurm starts (munged, slurmctld, slurmd)"
else
    why=$(echo "$up_msg" | tail -n 1)
fi
STEPS=360 # at 100 ms a step (YOTO_FAULT=slow_step) longer than the 30 s until the signal
if [ $slurm = 1 ]; then
    # time limit 1 min, warning 50 s before it: due 10 s after the start,
    # sent at slurmctld's next time-limit pass
    # its clock (the signal 10 s after the start, 50 s for the rest) is set
    # for the release build: bin/yoto-asan on a busy machine was killed by the
    # signal before it had started (exit 138)
    pre=
    if [ "$YOTO_VARIANT" != asan ]; then
        pre=$(sbatch --parsable --time=1 --signal=B:USR1@50 --export=ALL,YOTO_FAULT=slow_step \
            --job-name=pre -o "$T/pre.out" jobs/train.sbatch "$T/tiny.yaml" \
            --set experiment.out_dir="$T/pre" --set train.steps=$STEPS --set train.checkpoint_every=0 \
            --set train.log_every=20 2>"$T/pre.err")
        check "sbatch jobs/train.sbatch (time limit 1 min, USR1 50 s before)" test -n "$pre"
    fi
    trn=$(sbatch --parsable --job-name=trn -o "$T/trn.out" jobs/train.sbatch "$T/tiny.yaml" \
        --set experiment.out_dir="$T/trn" 2>"$T/trn.err")
    check "sbatch jobs/train.sbatch (2 ranks, 40 steps)" test -n "$trn"
    arr=$(sbatch --parsable --array=0-1 --ntasks-per-node=1 -o "$T/base-%a.out" jobs/baselines.sbatch \
        --betas 1,8 "$T/tiny.yaml" --set train.steps=20 --set experiment.out_dir="$T/base" 2>"$T/arr.err")
    check "sbatch --array=0-1 jobs/baselines.sbatch --betas 1,8" test -n "$arr"
    bad=$(sbatch --parsable -o "$T/bad.out" jobs/train.sbatch "$T/tiny.yaml" --set model.latent_dim=0 2>/dev/null)
fi

# ---- without Slurm, meanwhile -------------------------------------------------------------------------
# the uninterrupted reference for the preempted job (and for jobs/mpirun.sh below)
$MPI 2 "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/ref" --set train.steps=$STEPS \
    --set train.checkpoint_every=0 --set train.log_every=20 >"$T/ref.out" 2>&1 &
ref_pid=$!

for s in train.sbatch baselines.sbatch bench.sbatch; do
    expect_exit 2 "jobs/$s outside Slurm: exit 2" env -u SLURM_JOB_ID -u SLURM_ARRAY_TASK_ID bash jobs/$s "$T/tiny.yaml"
    contains "jobs/$s outside Slurm says so" "$ERR" "not inside a Slurm job"
    expect_exit 0 "jobs/$s --help" bash jobs/$s --help
done
for s in mpirun.sh scaling.sh; do expect_exit 0 "jobs/$s --help" jobs/$s --help; done
expect_exit 2 "jobs/mpirun.sh without a config: exit 2" jobs/mpirun.sh -n 2
contains "and prints its usage" "$ERR" "usage: jobs/mpirun.sh [-n RANKS]"
expect_exit 2 "jobs/scaling.sh: a global batch that does not divide: exit 2" \
    jobs/scaling.sh --local --ranks 1,3 --global-batch 8 "$T/tiny.yaml"
contains "and says why" "$ERR" "does not divide by 3"

# jobs/mpirun.sh: SIGTERM to it -> the ranks checkpoint, exit 75; the same command continues
YOTO_FAULT=slow_step jobs/mpirun.sh -n 2 "$T/tiny.yaml" --set experiment.out_dir="$T/m" --set train.steps=$STEPS \
    --set train.checkpoint_every=0 --set train.log_every=1 >"$T/m.out" 2>&1 &
pid=$!
for _ in $(seq 1 200); do grep -q "step 3/" "$T/m/log.txt" 2>/dev/null && break; sleep 0.1; done
kill -TERM $pid
wait $pid
check "jobs/mpirun.sh: SIGTERM gives exit 75 (got $?)" test $? = 75
contains "jobs/mpirun.sh: the ranks were asked to stop (SIGUSR1 to mpirun)" "$T/m.out" "SIGTERM: asking the ranks"
contains "jobs/mpirun.sh: log.txt says a checkpoint was written" "$T/m/log.txt" "checkpoint written"
check "jobs/mpirun.sh: ckpt/latest names it" test -s "$T/m/ckpt/latest"
expect_exit 0 "jobs/mpirun.sh: the same command again finishes the run" jobs/mpirun.sh -n 2 "$T/tiny.yaml" \
    --set experiment.out_dir="$T/m" --set train.steps=$STEPS --set train.checkpoint_every=0 --set train.log_every=20
contains "jobs/mpirun.sh: and it resumed" "$OUT" "resuming"

wait $ref_pid
check "the uninterrupted reference run (mpirun -np 2, $STEPS steps)" test $? = 0
ref_pid=
REF=$T/ref/ckpt/step-$(printf %09d $STEPS).h5
check "jobs/mpirun.sh: stopped + continued = uninterrupted, bit for bit" same_tensors "$REF" "$T/m/ckpt/step-$(printf %09d $STEPS).h5"

# jobs/scaling.sh --local and analysis/scaling.py
expect_exit 0 "jobs/scaling.sh --local on 1 and 2 ranks" jobs/scaling.sh --local --ranks 1,2 --batch-per-rank 4 \
    --steps 3 --warmup 1 --comm-max-mb 1 --out "$T/scl" "$T/tiny.yaml"
for f in weak-p00001 weak-p00002 strong-p00001 strong-p00002; do
    check "scaling --local: $f.json is JSON with the bench inside" "$PYTHON" -c \
        "import json,sys; d=json.load(open(sys.argv[1])); assert d['bench']['ranks'] == int(sys.argv[2]) and d['bench']['images_per_s'] > 0" \
        "$T/scl/$f.json" "${f##*-p0000}"
done
check "scaling --local: weak keeps batch_per_rank, strong the global batch" "$PYTHON" -c "
import json; r = lambda n: json.load(open('$T/scl/' + n + '.json'))['bench']['batch_per_rank']
assert r('weak-p00001') == r('weak-p00002') == 4, 'weak'
assert r('strong-p00001') == 8 and r('strong-p00002') == 4, 'strong'"
expect_exit 0 "analysis/scaling.py --help" "$PYTHON" analysis/scaling.py --help
expect_exit 0 "analysis/scaling.py: table, plot, prediction (--fit)" "$PYTHON" analysis/scaling.py "$T/scl" --fit \
    --ranks-per-node 2 --predict 1,2,4,64
contains "scaling.md: the measured table" "$T/scl/scaling.md" "| strong | 2 | 1 | 4 | 8 |"
contains "scaling.md: the model's prediction at 64 ranks" "$T/scl/scaling.md" "| 64 | 32 |"
contains "scaling.md: where scaling breaks (or not)" "$T/scl/scaling.md" "- strong scaling: predicted efficiency"
check "scaling.png is a PNG" "$PYTHON" -c "import sys; assert open(sys.argv[1], 'rb').read(8) == b'\x89PNG\r\n\x1a\n'" "$T/scl/scaling.png"
check "scaling --local: comm curves at 1 and 2 ranks" test -s "$T/scl/comm-p00001.json" -a -s "$T/scl/comm-p00002.json"
check "scaling --local --comm-max-mb 1: 4 KiB .. 1 MiB" "$PYTHON" -c \
    "import json,sys; s=[p['bytes'] for p in json.load(open(sys.argv[1]))['bench']['comm']]; assert s == [4096 * 4 ** k for k in range(5)], s" \
    "$T/scl/comm-p00002.json"
contains "scaling.md: the comm table and fit" "$T/scl/scaling.md" "fit, one node (blocking)"
contains "scaling.md: measured vs predicted, leave-one-out" "$T/scl/scaling.md" "## Leave-one-out"
check "analysis/scaling.py: the model by hand (Rabenseifner at 4 ranks: alpha 1 ms, 1 GB/s, 1 MB)" "$PYTHON" -c "
import sys; sys.path.insert(0, 'analysis'); import scaling
assert scaling.tuned_algorithm(4, 1e6) == 'rabenseifner'
t = float(scaling.allreduce_s(4, 1e6, 1e-3, 1e9)); assert abs(t - (4e-3 + 1.5e-3)) < 1e-12, t
assert float(scaling.allreduce_s(1, 1e6, 1e-3, 1e9)) == 0"
expect_exit 2 "analysis/scaling.py: no results is exit 2" "$PYTHON" analysis/scaling.py "$T/m"
contains "and says so" "$ERR" "no JSON results found in $T/m"

# ---- Slurm ----------------------------------------------------------------------------------------------
if [ $slurm = 0 ]; then
    for n in "train.sbatch on 2 ranks" "preemption and requeue" "baselines array" "scaling under Slurm"; do
        skip "$n" "Slurm cannot start here: $why"
    done
    done_testing
    exit
fi

st=$(wait_job "$trn" 60)
check "train job: COMPLETED, exit 0 ($st)" test "$st" = "COMPLETED 0:0 0"
contains "train job: 2 ranks through srun" "$T/trn.out" "2 ranks x 4 images"
contains "train job: OpenBLAS threads follow --cpus-per-task" "$T/trn.out" "OpenBLAS threads per rank 1"
check "train job: a checkpoint" test -s "$T/trn/ckpt/step-000000040.h5"
check "train job: metrics.csv has its rows" test "$(grep -c '^[0-9]' "$T/trn/metrics.csv" 2>/dev/null)" = 8

st=$(wait_job "$bad" 30)
check "a bad config: the job fails with exit 2, no requeue ($st)" test "$st" = "FAILED 2:0 0"

for i in 0 1; do
    b=$([ $i = 0 ] && echo 1 || echo 8)
    st=$(wait_job "${arr}_$i" 60)
    check "baselines task $i: COMPLETED ($st)" test "$st" = "COMPLETED 0:0 0"
    check "baselines task $i: its own run, beta $b, finished" test -s "$T/base_fixed_beta$b/ckpt/step-000000020.h5"
    check "baselines task $i: fixed beta = $b, no conditioning" "$PYTHON" -c "
import sys, yaml; c = yaml.safe_load(open(sys.argv[1]))
lw = c['loss_weights']; assert lw['mode'] == 'fixed', lw
assert lw['kl']['distribution'] == 'fixed' and lw['kl']['value'] == float(sys.argv[2]), lw['kl']
assert lw['reconstruction']['distribution'] == 'fixed' and lw['reconstruction']['value'] == 1.0
assert c['model']['conditioning']['type'] == 'none'" "$T/base_fixed_beta$b/config.yaml" $b
done

expect_exit 0 "jobs/scaling.sh under Slurm: 1 and 2 ranks, weak and strong (--wait)" jobs/scaling.sh \
    --ranks 1,2 --batch-per-rank 4 --steps 3 --warmup 1 --comm-max-mb 1 --out "$T/scs" --wait "$T/tiny.yaml"
check "scaling under Slurm: 6 JSON results (weak, strong, comm at 1 and 2 ranks)" test "$(ls "$T"/scs/*.json 2>/dev/null | wc -l)" = 6
check "scaling under Slurm: the 2-rank point ran 2 ranks" "$PYTHON" -c \
    "import json,sys; d=json.load(open(sys.argv[1])); assert d['bench']['ranks'] == 2 and d['slurm_job'], d" "$T/scs/weak-p00002.json"
expect_exit 0 "analysis/scaling.py on the Slurm results" "$PYTHON" analysis/scaling.py "$T/scs"
check "and writes the table and the plot" test -s "$T/scs/scaling.md" -a -s "$T/scs/scaling.png"

# the preempted job: warning signal -> checkpoint -> exit 75 -> scontrol requeue -> second run finishes
if [ -z "$pre" ]; then
    skip "preempted job (Slurm time limit, requeue)" "its 1-minute clock is set for the release build, not $YOTO"
else
    st=$(wait_job "$pre" 150)
    restarts=${st##* }
    check "preempted job: COMPLETED in the end ($st)" test "${st% *}" = "COMPLETED 0:0"
    check "preempted job: requeued at least once (restarts $restarts)" test "${restarts:-0}" -ge 1
    contains "preempted job: the batch script got SIGUSR1 before the time limit" "$T/pre.out" "SIGUSR1 at"
    contains "preempted job: the ranks checkpointed (log.txt)" "$T/pre/log.txt" "stopped by SIGUSR1"
    contains "preempted job: the script requeued it" "$T/pre.out" "requeueing job $pre"
    contains "preempted job: the log continues (--open-mode=append): run 2" "$T/pre.out" "run 2,"
    contains "preempted job: run 2 resumed from the checkpoint" "$T/pre/log.txt" "resuming"
    check "preempted job: final parameters and Adam moments = the uninterrupted run's, bit for bit" \
        same_tensors "$REF" "$T/pre/ckpt/step-$(printf %09d $STEPS).h5"
fi

pids=$(cat "$SD/slurmctld.pid" "$SD/slurmd.pid" "$SD/munge/munged.pid" 2>/dev/null | tr '\n' ' ')
tests/slurm/down.sh "$SD" >/dev/null 2>&1
alive() { for p in $pids; do [ "$(ps -o stat= -p "$p" 2>/dev/null | cut -c1)" = Z ] || ! kill -0 "$p" 2>/dev/null || return 0; done; return 1; }
check "tests/slurm/down.sh stops the 3 daemons it started ($pids)" eval '[ "$(echo $pids | wc -w)" = 3 ] && ! alive'
done_testing
