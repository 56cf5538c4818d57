# test_hang.sh — hang detection (issue #11): a rank stopped with SIGSTOP (rank 1,
# then rank 0), a rank stopped before its gradient (bucketed or blocking: the
# polled wait names it), a checkpoint write that never ends; each ends the
# job with exit 124 within the limit and a bounded margin, naming the step and
# the rank, and the last checkpoint still resumes.
. tests/e2e/lib.sh

tiny_setup || { echo "Bail out! cannot prepare data"; exit 1; }

# The runs below take 100 ms a step (YOTO_FAULT=slow_step), so that where the
# stop lands is known: after step 23, before the checkpoint at step 40.
LIMIT=3
RERR=$T/run.err # the background run's stderr (check and contains use $ERR)
slow_run() { # slow_run DIR [more args]: in the background; pid in $run_pid
    local dir=$1
    shift
    timeout -s KILL 120 $MPI 2 -x YOTO_FAULT "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$dir" \
        --set train.steps=100000 --set train.checkpoint_every=20 --set train.log_every=1 \
        --set train.step_timeout_s=$LIMIT "$@" >"$T/run.out" 2>"$RERR" &
    run_pid=$!
}
rank_pid() { # rank_pid DIR RANK: the pid of that rank of the run in DIR
    local p
    for p in $(pgrep -f "experiment.out_dir=$1 "); do
        if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then
            echo "$p"
            return
        fi
    done
}
# finish DIR: waits for the run; rc, took (seconds since $t0); what is left of it is killed
finish() {
    wait "$run_pid"
    rc=$?
    took=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')
    local p
    for p in $(pgrep -f "experiment.out_dir=$1 "); do kill -KILL "$p" 2>/dev/null; done
}
within() { # within NAME LO HI: $took in [LO, HI]
    check "$1 (took $took s)" awk -v t="$took" -v lo="$2" -v hi="$3" 'BEGIN {exit !(t >= lo && t <= hi)}'
}
# stop_rank R DIR: a slow run; SIGSTOP to rank R once it has done 23 steps ($found:
# its pid), most likely during the 100 ms of the next step's read
stop_rank() {
    local r=$1 dir=$2
    YOTO_FAULT=slow_step slow_run "$dir"
    for _ in $(seq 1 300); do grep -q "step 1/" "$dir/log.txt" 2>/dev/null && break; sleep 0.1; done
    found=$(rank_pid "$dir" "$r")
    for _ in $(seq 1 1500); do grep -q "step 23/" "$dir/log.txt" 2>/dev/null && break; sleep 0.02; done
    t0=$EPOCHREALTIME
    [ -n "$found" ] && kill -STOP "$found"
    finish "$dir"
}
hang_step() { sed -n 's/.*hang at step \([0-9]*\):.*/\1/p' "$1" | head -n 1; }
last_row() { awk -F, 'END {print $1}' "$1/metrics.csv"; }

# ---- SIGSTOP to rank 1: rank 0's census names it ------------------------------------------
stop_rank 1 "$T/s1"
check "SIGSTOP to rank 1: the test found and stopped it" test -n "$found"
check "the job ends with exit 124 (rc $rc)" test "$rc" = 124
# the limit, then rank 0's census (1 s), then mpirun's teardown
within "it ends after the limit ($LIMIT s) and within limit + 12 s" 2 $((LIMIT + 12))
# (rank 1 is stopped in its 100 ms read, rarely in its 1 ms of compute: rank 0
# then waits in the gradient allreduce)
check "rank 0 names rank 1, which did not arrive and does not answer" grep -qE \
    "rank 1 did not arrive at the (status agreement|gradient allreduce) within 3 s \(train.step_timeout_s\) and is not answering \(stopped" "$RERR"
contains "and the exit code" "$RERR" "ending the job (exit 124)"
named1=$(hang_step "$RERR")
check "it names the step rank 0 waited in: the one after its last metrics row ($named1 = $(last_row "$T/s1"))" \
    test -n "$named1" -a "$named1" = "$(last_row "$T/s1")"
contains "log.txt has the verdict" "$T/s1/log.txt" "error: hang at step $named1: rank 1 did not arrive"

# ---- SIGSTOP to rank 0: rank 1 waits for a verdict, then ends the job itself ---------------
stop_rank 0 "$T/s0"
check "SIGSTOP to rank 0: the job ends with exit 124 (rc $rc)" test "$rc" = 124
within "after the limit and within limit + 15 s" 2 $((LIMIT + 15))
contains "rank 1 says rank 0 gave no verdict and does not answer" "$RERR" \
    "and rank 0 gave no verdict: rank 0 is not answering (stopped"
# rank 1 waits in the step after rank 0's last metrics row, or (rank 0 stopped
# after its update and before the row) in the one after that
named=$(hang_step "$RERR")
check "naming the step ($named; rank 0's last row $(last_row "$T/s0"))" \
    test -n "$named" -a $((named - $(last_row "$T/s0"))) -ge 0 -a $((named - $(last_row "$T/s0"))) -le 1
contains "rank 1 writes it to log.txt (rank 0 cannot)" "$T/s0/log.txt" "error: rank 1: hang at step"

# ---- the last checkpoint survives: resume, bit for bit ----------------------------------------
ck=$(sed 's/step-0*\([0-9]*\)\.h5/\1/' "$T/s1/ckpt/latest")
check "after the hang, ckpt/latest names the last checkpoint before step $named1" \
    test "$ck" = $((named1 / 20 * 20))
final=$((ck + 5))
expect_exit 0 "the hung run resumes to step $final (with another train.step_timeout_s)" \
    $MPI 2 "$YOTO" train --resume "$T/s1" --set train.steps=$final --set train.step_timeout_s=2
expect_exit 0 "an uninterrupted run of $final steps" \
    $MPI 2 "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/u" --set train.steps=$final --set train.checkpoint_every=20
fname=$(printf 'step-%09d.h5' $final)
same_tensors() { # same_tensors A.h5 B.h5: params and Adam moments bit for bit
    h5diff -q "$1" "$2" /params /params && h5diff -q "$1" "$2" /optimizer /optimizer
}
check "hung + resumed = uninterrupted, bit for bit" same_tensors "$T/u/ckpt/$fname" "$T/s1/ckpt/$fname"

# ---- a rank stopped before its gradient ------------------------------------------------------------
# bucketed: rank 0 waits in the polled gradient allreduce and names rank 1
t0=$EPOCHREALTIME
YOTO_FAULT=sigstop_grad@1 slow_run "$T/g"
finish "$T/g"
check "bucketed, rank 1 stopped before its gradient: exit 124 (rc $rc)" test "$rc" = 124
# (rank 1 starts none of its buckets in that step's backward: rank 0 cannot
# finish step 5)
contains "rank 0 names step 5, rank 1 and the gradient allreduce" "$RERR" \
    "hang at step 5: rank 1 did not arrive at the gradient allreduce within 3 s"
# blocking (and a bucketed gradient of one bucket, which runs as blocking): the
# one MPI_Allreduce starts after a polled arrival, which names rank 1 too
t0=$EPOCHREALTIME
YOTO_FAULT=sigstop_grad@1 slow_run "$T/b" --set train.allreduce=blocking
finish "$T/b"
check "blocking, rank 1 stopped before its gradient: exit 124 (rc $rc)" test "$rc" = 124
contains "rank 0 names step 5, rank 1 and the gradient allreduce" "$RERR" \
    "hang at step 5: rank 1 did not arrive at the gradient allreduce within 3 s"
within "it fires after the limit (3 s) and the job ends within 30 s of the start" 3 30

# ---- a checkpoint write that never ends (a stuck file system) ----------------------------------------------
# train.step_timeout_s = 1: checkpoints get 10 s, the backstop fires 5 s later
t0=$EPOCHREALTIME
YOTO_FAULT=hang_ckpt expect_exit 124 "a checkpoint write that never ends: exit 124" \
    timeout -s KILL 120 $MPI 2 -x YOTO_FAULT "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/c" \
    --set train.steps=100000 --set train.checkpoint_every=5 --set train.step_timeout_s=1
took=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')
contains "the backstop names the step and the checkpoint write" "$ERR" \
    "hang at step 10: no progress for"
contains "and the phase" "$ERR" "s in the checkpoint write (limit 10 s, train.step_timeout_s)"
# (every rank hangs there: rank 0's backstop or rank 1's fires first, and
# each writes its verdict to log.txt)
check "log.txt has it" grep -Eq "^error: (rank 1: )?hang at step 10: no progress for" "$T/c/log.txt"
within "it fires after 10 + 5 s and the job ends within 35 s of the start" 15 35
check "ckpt/latest still names the step-5 checkpoint" grep -qx "step-000000005.h5" "$T/c/ckpt/latest"
expect_exit 0 "and the run resumes from it" $MPI 2 "$YOTO" train --resume "$T/c" --set train.steps=12

# ---- healthy runs do not trip it ---------------------------------------------------------------------------
expect_exit 0 "auto limit: a run with checkpoints and evaluations ends normally" \
    $MPI 2 "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/h" --set eval.every=10
contains "log.txt records the auto limit" "$T/h/log.txt" "watchdog: a phase of a step may take max(300 s, 10 x the median step)"
expect_exit 2 "a negative train.step_timeout_s is refused" "$YOTO" config "$T/tiny.yaml" --set train.step_timeout_s=-1
contains "naming the key" "$ERR" "train.step_timeout_s"

done_testing
