# test_train.sh — distributed training end to end (issue #5): run directory,
# reproducibility, exact resume, preemption by signal, crash safety during a
# checkpoint write, a failure on one rank, bad checkpoints, h5py access.
. tests/e2e/lib.sh

tiny_setup || { echo "Bail out! cannot prepare data"; exit 1; }

train() { # train NP OUT_DIR [more args]
    local np=$1 dir=$2
    shift 2
    $MPI "$np" "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$dir" "$@"
}
same_tensors() { # same_tensors A.h5 B.h5: params and Adam moments bit for bit
    h5diff -q "$1" "$2" /params /params && h5diff -q "$1" "$2" /optimizer /optimizer
}

# ---- a run and its directory ----------------------------------------------------------
expect_exit 0 "np=2 training runs to the end" train 2 "$T/a"
contains "progress names step/total" "$OUT" "step 40/40"
for f in config.yaml metrics.csv log.txt ckpt/latest ckpt/step-000000040.h5; do
    check "run directory has $f" test -s "$T/a/$f"
done
check "keep_checkpoints = 3 keeps three" test "$(ls "$T"/a/ckpt/step-*.h5 | wc -l)" = 3
contains "metrics.csv header" "$T/a/metrics.csv" "step,epoch,loss,recon,kl,lr,images_per_s,time"
check "metrics.csv has a row per log_every" test "$(grep -c '^[0-9]' "$T/a/metrics.csv")" = 8
check "the resolved config.yaml loads again" "$YOTO" config "$T/a/config.yaml"
# rows are means over log_every steps; compare the means of the first and the
# last three rows (15 steps each), loss and reconstruction, by at least 1%
check "the training loss goes down (mean of the first 15 steps vs the last 15)" "$PYTHON" - "$T/a/metrics.csv" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == 8, len(rows)
for k in ("loss", "recon"):
    first = sum(float(r[k]) for r in rows[:3]) / 3
    last = sum(float(r[k]) for r in rows[-3:]) / 3
    assert last < 0.99 * first, (k, first, last)
EOF
# the lr column against tf.train.piecewise_constant: the row of step s (updates
# done) shows the rate of update s - 1 (0-based): lr * factor^#{b : s - 1 > b}
lr_follows() { # lr_follows METRICS LR FACTOR BOUNDARIES
    "$PYTHON" - "$@" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
lr, f, bounds = float(sys.argv[2]), float(sys.argv[3]), [int(b) for b in sys.argv[4].split(",")]
assert rows
for r in rows:
    s = int(r["step"])
    want = lr * f ** sum(s - 1 > b for b in bounds)
    assert abs(float(r["lr"]) - want) <= 1e-6 * want, (s, r["lr"], want)
EOF
}
check "metrics.csv's lr column: 1e-3, halved after step 30 (decay_steps [30])" lr_follows "$T/a/metrics.csv" 1e-3 0.5 30
expect_exit 0 "12 steps, decay_steps [3, 7], factor 0.1, a row per step" train 1 "$T/lr" --set train.steps=12 \
    --set train.log_every=1 --set 'optimizer.decay_steps=[3, 7]' --set optimizer.decay_factor=0.1
check "its lr column: 1e-3 up to step 4, 1e-4 up to 8, then 1e-5" lr_follows "$T/lr/metrics.csv" 1e-3 0.1 3,7
check "and it has 12 rows" test "$(grep -c '^[0-9]' "$T/lr/metrics.csv")" = 12

# ---- reproducibility ------------------------------------------------------------------------
expect_exit 0 "a second run, same seed, np=2" train 2 "$T/a2"
check "same seed and ranks: bit-identical checkpoints" same_tensors "$T/a/ckpt/step-000000040.h5" "$T/a2/ckpt/step-000000040.h5"
expect_exit 0 "20 steps" train 2 "$T/b" --set train.steps=20
expect_exit 0 "--resume for 20 more (--set train.steps=40)" $MPI 2 "$YOTO" train --resume "$T/b" --set train.steps=40
contains "resume says so" "$OUT" "resuming"
check "40 steps = 20 + 20 resumed, bit for bit (params and Adam moments)" same_tensors "$T/a/ckpt/step-000000040.h5" "$T/b/ckpt/step-000000040.h5"
check "metrics.csv of the resumed run has each step once" test "$(grep -c '^[0-9]' "$T/b/metrics.csv")" = 8
# the sharded optimizer: each rank updates its part of the Adam moments, the
# checkpoint gathers them; at 2 ranks its sums are the allreduce's bit for bit
expect_exit 0 "20 steps, train.allreduce: sharded" train 2 "$T/s" --set train.steps=20 --set train.allreduce=sharded
expect_exit 0 "--resume for 20 more" $MPI 2 "$YOTO" train --resume "$T/s" --set train.steps=40
check "sharded, 20 + 20 resumed = the bucketed run's 40 steps, bit for bit (np=2)" same_tensors "$T/a/ckpt/step-000000040.h5" "$T/s/ckpt/step-000000040.h5"
# on one node the sharded step goes through node-shared memory; where
# /dev/shm has no room for it (YOTO_FAULT=shm_full: as if full), through the
# ring's messages, with a warning: the same sums in the same order
contains "log.txt names the shared-memory path" "$T/s/log.txt" "gradient sums: sharded, node-shared memory"
YOTO_FAULT=shm_full expect_exit 0 "sharded, np=2, /dev/shm full: runs to the end" $MPI 2 -x YOTO_FAULT "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/ring" --set train.allreduce=sharded
contains "it warns, naming /dev/shm" "$ERR" "yoto: warning: /dev/shm has 0 MB free"
contains "log.txt names the ring" "$T/ring/log.txt" "gradient sums: sharded, ring messages"
check "the ring's 40 steps = the shared-memory 20 + 20, bit for bit (np=2)" same_tensors "$T/s/ckpt/step-000000040.h5" "$T/ring/ckpt/step-000000040.h5"
YOTO_SHM_DISABLE=1 expect_exit 0 "sharded, np=2, YOTO_SHM_DISABLE=1: runs to the end" $MPI 2 -x YOTO_SHM_DISABLE "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/ring2" --set train.steps=20 --set train.allreduce=sharded
contains "log.txt names the ring" "$T/ring2/log.txt" "gradient sums: sharded, ring messages"
contains "a bucketed run's log.txt says so" "$T/a/log.txt" "gradient sums: bucketed, overlapped"
expect_exit 0 "re-running the config continues the run in out_dir (a requeued job)" train 2 "$T/b" --set train.steps=45
contains "an existing checkpoint is picked up" "$OUT" "resuming"

# ---- weak scaling and another rank count -------------------------------------------------------
# weak scaling: the per-rank batch stays 4 whatever the rank count. The
# train split is 307 rows (384 minus the 20% of valid): 2 shards of 153 and
# 154 rows, floor(153 / 4) = 38 steps per epoch; one rank: 307 / 4 -> 76
expect_exit 0 "batch_per_rank (weak scaling) at np=2" train 2 "$T/w" --set train.batch_size=0 --set train.batch_per_rank=4 --set train.steps=10
contains "2 ranks x 4 images per step" "$OUT" "2 ranks x 4 images, 38 steps per epoch"
check "metrics.csv: rows at steps 5 and 10 of epoch 0" test "$(cut -d, -f1,2 "$T/w/metrics.csv" | tr '\n' ' ')" = "step,epoch 5,0 10,0 "
expect_exit 0 "resume at np=1 from an np=2 checkpoint" $MPI 1 "$YOTO" train --resume "$T/w" --set train.steps=15
contains "a changed rank count is a warning" "$ERR" "re-split"
contains "1 rank x 4 images after it (not 1 x 8)" "$OUT" "1 rank x 4 images, 76 steps per epoch"
check "the checkpoint says 15 steps by 1 rank" "$PYTHON" -c 'import sys, h5py; a = h5py.File(sys.argv[1], "r").attrs; sys.exit(not (a["step"] == 15 and a["world_size"] == 1))' "$T/w/ckpt/step-000000015.h5"

# ---- refused resumes ---------------------------------------------------------------------------
expect_exit 2 "resume with another model shape is refused" $MPI 1 "$YOTO" train --resume "$T/b" --set model.latent_dim=8 --set 'model.encoder.fc_sizes=[16, 16]'
contains "and says what differs" "$ERR" "latent_dim"
expect_exit 2 "resume with another data.stream_block_mb (it shapes the data order) is refused" $MPI 1 "$YOTO" train --resume "$T/b" --set data.stream_block_mb=1
contains "and names it" "$ERR" "stream_block_mb"
expect_exit 2 "--resume of a directory without checkpoints" $MPI 1 "$YOTO" train --resume "$T"
contains "names the directory" "$ERR" "no checkpoint"

sed 's/seed: 5/seed: 6/' "$T/tiny.yaml" >"$T/tiny6.yaml"
expect_exit 2 "ranks with different configs refuse to train (MPMD)" mpirun --oversubscribe -np 1 "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/mpmd" : -np 1 "$YOTO" train "$T/tiny6.yaml" --set experiment.out_dir="$T/mpmd"
contains "and say so" "$ERR" "different configs"
expect_exit 2 "the allreduce mode cannot change on resume (bit for bit)" $MPI 2 "$YOTO" train --resume "$T/b" --set train.allreduce=blocking
contains "and says what differs" "$ERR" "train.allreduce: checkpoint has bucketed, this run has blocking"

# ---- a failure on one rank -------------------------------------------------------------------------
# The ranks learn of it after their backward (trainer.c): with tiny.yaml's
# buckets of 2 KB the other rank has started its gradient's allreduces by
# then, and the failed one, which skipped its backward, starts its own before
# all stop; with one bucket (25 MB) none are in flight.
for fault in io_error nan_loss; do
    for mb in 0.002 25; do
        t0=$(date +%s)
        YOTO_FAULT=$fault@1 expect_exit 1 "$fault on rank 1, buckets of $mb MB: every rank stops non-zero" timeout 30 $MPI 2 -x YOTO_FAULT "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/f-$fault-$mb" --set train.bucket_mb=$mb
        contains "$fault, $mb MB: the message names rank 1" "$ERR" "rank 1:"
        check "$fault, $mb MB: within 10 s" test $(($(date +%s) - t0)) -le 10
    done
done
# a non-finite summed gradient, sharded (one bucket): each rank checks its
# part and they agree, so a NaN in rank 1's part alone stops every rank
t0=$(date +%s)
YOTO_FAULT=nan_grad@1 expect_exit 1 "nan_grad in rank 1's part (sharded): every rank stops non-zero" timeout 30 $MPI 2 -x YOTO_FAULT "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/f-nan_grad" --set train.bucket_mb=25
contains "nan_grad: the message says so" "$ERR" "non-finite gradient at step 2; the last checkpoint is kept"
check "nan_grad: within 10 s" test $(($(date +%s) - t0)) -le 10
# a run directory only rank 0 sees (node-local out_dir on a requeue): each rank
# runs in its own working directory with a relative out_dir
mkdir -p "$T/node0" "$T/node1"
cp -r "$T/b" "$T/node0/run"
expect_exit 2 "ckpt/latest seen by rank 0 only: every rank stops with exit 2" timeout 30 \
    mpirun --oversubscribe -np 1 -wdir "$T/node0" "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir=run \
    : -np 1 -wdir "$T/node1" "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir=run
contains "and says out_dir must be shared" "$ERR" "must be a directory that all ranks share"
# node-local copies of the data file that differ (one truncated): refused, not
# read as zeros past the end on one rank
cp "$DATA" "$T/node0/d.h5"
head -c 1000000 "$DATA" >"$T/node1/d.h5"
expect_exit 2 "a data file that differs between ranks: exit 2" timeout 30 \
    mpirun --oversubscribe -np 1 -wdir "$T/node0" "$YOTO" train "$T/tiny.yaml" --set data.file=d.h5 --set experiment.out_dir="$T/nd" \
    : -np 1 -wdir "$T/node1" "$YOTO" train "$T/tiny.yaml" --set data.file=d.h5 --set experiment.out_dir="$T/nd"
contains "and says the ranks see different files" "$ERR" "d.h5: the ranks see different files"

# Open MPI 4.1 aborts every rank on an MPI-IO path of more than ~245 characters:
# refused up front with exit 2
long=$T/$(head -c 150 /dev/zero | tr "\0" x)/$(head -c 150 /dev/zero | tr "\0" y)
mkdir -p "$long"
ln -s "$DATA" "$long/shapes.h5"
expect_exit 2 "an out_dir too long for MPI-IO paths: exit 2 before training" $MPI 2 "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$long/run"
contains "it names out_dir" "$ERR" "experiment.out_dir $long/run"
check "and nothing was trained" test ! -e "$long/run/ckpt"
expect_exit 2 "a data file path too long for MPI-IO: exit 2" $MPI 2 "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/lp" --set data.file="$long/shapes.h5"
contains "it names the data file" "$ERR" "data file $long/shapes.h5 is"

# a run directory path longer than out_dir can hold (512..551 characters) is
# refused, not silently truncated into another directory
deep=$T
while [ ${#deep} -lt 400 ]; do deep=$deep/$(head -c 99 /dev/zero | tr "\0" z); done
deep=$deep/$(head -c $((519 - ${#deep})) /dev/zero | tr "\0" r)
mkdir -p "$deep" && cp -r "$T/b/." "$deep/"
expect_exit 2 "eval of a run directory path over 511 characters: exit 2" $MPI 1 "$YOTO" eval "$deep" --set eval.max_batches=1
contains "it says the path is too long" "$ERR" "path too long"
expect_exit 2 "--resume of it: exit 2" $MPI 1 "$YOTO" train --resume "$deep"
contains "it says the path is too long" "$ERR" "path too long"
check "nothing written beside it" test "$(ls "$(dirname "$deep")" | wc -l)" = 1

# ---- preemption --------------------------------------------------------------------------------------
# stop() SIG DIR: start a long run, wait until it trains, send SIG to mpirun
stop() {
    local sig=$1 dir=$2
    $MPI 2 "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$dir" --set train.steps=100000 \
        --set train.checkpoint_every=100000 --set train.log_every=1 >"$T/stop.out" 2>&1 &
    local pid=$!
    # (up to 60 s: under ASan, with other suites running, the start alone can take 10)
    for _ in $(seq 1 600); do grep -q "step 3/" "$dir/log.txt" 2>/dev/null && break; sleep 0.1; done
    kill -"$sig" $pid
    wait $pid
    echo $? >"$T/stop.rc"
}
stop USR1 "$T/p"
check "SIGUSR1 to mpirun (forwarded to every rank): the requeue exit code 75" test "$(cat "$T/stop.rc")" = 75
contains "a checkpoint is written and the log says so" "$T/p/log.txt" "checkpoint written"
check "ckpt/latest names it" test -s "$T/p/ckpt/latest"
# where it stopped depends on timing: compare with an uninterrupted run of the same length
stopped_at=$(sed 's/step-0*\([0-9]*\)\.h5/\1/' "$T/p/ckpt/latest")
final=$((stopped_at + 5))
fname=$(printf 'step-%09d.h5' $final)
expect_exit 0 "the run stopped at step $stopped_at resumes to $final" $MPI 2 "$YOTO" train --resume "$T/p" --set train.steps=$final
expect_exit 0 "an uninterrupted run of $final steps" train 2 "$T/u" --set train.steps=$final
check "preempted + resumed = uninterrupted, bit for bit" same_tensors "$T/u/ckpt/$fname" "$T/p/ckpt/$fname"
# Open MPI 4.1's mpirun cannot forward SIGTERM: it stops the job, sending the
# ranks SIGTERM odls_base_sigkill_timeout (1 s) later and SIGKILL after that,
# and exits 1 itself. The ranks checkpoint and exit 75 (jobs/mpirun.sh and
# srun make that the job's exit code: see tests/e2e/test_jobs.sh). The rel
# build gets the default second; under ASan, with the other suites running,
# the first checkpoint of a run (HDF5 and MPI-IO set up) once took longer in
# CI, so bin/yoto-asan gets 5 s.
sigkill=1
[ "$YOTO_VARIANT" = asan ] && sigkill=5
OMPI_MCA_odls_base_sigkill_timeout=$sigkill stop TERM "$T/q"
contains "SIGTERM to mpirun: the ranks checkpoint (log.txt; mpirun's grace ${sigkill} s)" "$T/q/log.txt" "stopped by SIGTERM" ||
    sed 's/^/# stop.out: /' "$T/stop.out" | tail -20
check "SIGTERM to mpirun: ckpt/latest is there" test -s "$T/q/ckpt/latest"
expect_exit 0 "and that run resumes" $MPI 2 "$YOTO" train --resume "$T/q" --set train.steps=40

# SIGINT: the first finishes the step and checkpoints (75), a second exits at once (130)
sigint() { # sigint N DIR: send N SIGINTs to a single-process run
    local n=$1 dir=$2
    "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$dir" --set train.steps=100000 \
        --set train.checkpoint_every=100000 --set train.log_every=1 >"$T/int.out" 2>&1 &
    local pid=$!
    for _ in $(seq 1 100); do grep -q "step 3/" "$dir/log.txt" 2>/dev/null && break; sleep 0.1; done
    for _ in $(seq 1 "$n"); do kill -INT $pid; sleep 0.3; done
    wait $pid
    echo $? >"$T/int.rc"
}
sigint 1 "$T/i1"
check "one SIGINT: checkpoint and exit 75" test "$(cat "$T/int.rc")" = 75 -a -s "$T/i1/ckpt/latest"
YOTO_FAULT=slow_ckpt sigint 2 "$T/i2"
check "a second SIGINT: exit 130 at once" test "$(cat "$T/int.rc")" = 130

# stopped by a signal, a run gives back its stdout as it found it: the
# non-blocking mode it sets while stopping belongs to the caller's pipe/terminal
check "after a signal stop, the caller's stdout is blocking again" "$PYTHON" - "$YOTO" "$T/tiny.yaml" "$T/nb" <<'EOF'
import os, select, signal, subprocess, sys, threading, time
r, w = os.pipe()  # we keep w: its open file is the one yoto shares with us
p = subprocess.Popen([sys.argv[1], "train", sys.argv[2], "--set", "experiment.out_dir=" + sys.argv[3],
                      "--set", "train.steps=100000", "--set", "train.log_every=1"],
                     stdout=w, stderr=subprocess.DEVNULL)
buf, t0 = b"", time.time()
while b"step 3/" not in buf:
    assert p.poll() is None and time.time() - t0 < 60, "no progress"
    if select.select([r], [], [], 1.0)[0]:
        buf += os.read(r, 65536)
p.send_signal(signal.SIGUSR1)
def drain():
    while os.read(r, 65536):
        pass
threading.Thread(target=drain, daemon=True).start()
assert p.wait(timeout=60) == 75
assert os.get_blocking(w), "stdout left non-blocking"
EOF

# ---- crash safety: SIGKILL while a checkpoint is being written ------------------------------------------
YOTO_FAULT=slow_ckpt $MPI 2 -x YOTO_FAULT "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/k" \
    --set train.steps=100000 --set train.checkpoint_every=10 >"$T/k.out" 2>&1 &
pid=$!
hit=0
for _ in $(seq 1 600); do
    # the second checkpoint's temporary file: the first one is complete
    if ls "$T"/k/ckpt/.step-000000020.h5.tmp >/dev/null 2>&1; then hit=1; break; fi
    sleep 0.05
done
pkill -KILL -f "experiment.out_dir=$T/k" 2>/dev/null
kill -KILL $pid 2>/dev/null
wait $pid 2>/dev/null
check "SIGKILL landed during a checkpoint write" test $hit = 1
check "ckpt/latest still names the complete step-10 checkpoint" grep -qx "step-000000010.h5" "$T/k/ckpt/latest"
expect_exit 0 "and that checkpoint loads (eval)" $MPI 1 "$YOTO" eval "$T/k" --set eval.max_batches=1
expect_exit 0 "and training resumes from it" $MPI 2 "$YOTO" train --resume "$T/k" --set train.steps=12

# a newer checkpoint renamed into place whose ckpt/latest update failed: pruning
# (keep_checkpoints) must not delete the checkpoint the resumed run publishes
expect_exit 0 "20 steps, keep_checkpoints = 1" train 1 "$T/o" --set train.steps=20 --set train.keep_checkpoints=1
cp "$T/o/ckpt/step-000000020.h5" "$T/o/ckpt/step-000000030.h5"
expect_exit 0 "resume beside an unpublished step-30 checkpoint, to step 25" $MPI 1 "$YOTO" train --resume "$T/o" --set train.steps=25
check "ckpt/latest names a checkpoint that exists" test -s "$T/o/ckpt/$(cat "$T/o/ckpt/latest")"
check "the older one is pruned" test ! -e "$T/o/ckpt/step-000000020.h5"

# ckpt/latest there but unreadable (an I/O error; here a directory): an error,
# not a fresh start over the run's history
expect_exit 0 "a 10-step run" train 1 "$T/ur" --set train.steps=10
cp "$T/ur/metrics.csv" "$T/ur.metrics"
mv "$T/ur/ckpt/latest" "$T/ur/ckpt/latest.was" && mkdir "$T/ur/ckpt/latest"
expect_exit 1 "an unreadable ckpt/latest stops the run" $MPI 1 "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/ur" --set train.steps=20
contains "naming it" "$ERR" "cannot read $T/ur/ckpt/latest"
check "metrics.csv is untouched" cmp "$T/ur/metrics.csv" "$T/ur.metrics"

# ---- bad checkpoints: exit 2, nothing overwritten ------------------------------------------------------------
mkdir -p "$T/bad/ckpt"
cp "$T/a/ckpt/step-000000040.h5" "$T/bad/ckpt/step-000000040.h5"
truncate -s 20000 "$T/bad/ckpt/step-000000040.h5"
echo step-000000040.h5 >"$T/bad/ckpt/latest"
sum=$(md5sum <"$T/bad/ckpt/step-000000040.h5")
expect_exit 2 "a truncated checkpoint is refused" $MPI 2 "$YOTO" train --resume "$T/bad"
contains "with a message naming it" "$ERR" "step-000000040.h5"
check "and nothing is overwritten: the file is kept, renamed .corrupt" test "$(md5sum <"$T/bad/ckpt/step-000000040.h5.corrupt")" = "$sum"
echo "not hdf5" >"$T/bad/ckpt/step-000000040.h5"
expect_exit 2 "a file that is not HDF5 is refused" $MPI 1 "$YOTO" eval "$T/bad/ckpt/step-000000040.h5"
contains "not an HDF5 file" "$ERR" "not an HDF5 file"
expect_exit 2 "a golden file is HDF5 but not a yoto checkpoint" $MPI 1 "$YOTO" eval tests/data/golden_tiny_bernoulli.h5
contains "not a yoto checkpoint" "$ERR" "not a yoto checkpoint"

# header attributes out of range (a hand-edited checkpoint): exit 2, not a broken check
mkdir -p "$T/neg/ckpt"
cp "$T/a/ckpt/step-000000040.h5" "$T/neg/ckpt/" && echo step-000000040.h5 >"$T/neg/ckpt/latest"
"$PYTHON" -c 'import sys, h5py; h5py.File(sys.argv[1], "r+").attrs["step_in_epoch"] = -1' "$T/neg/ckpt/step-000000040.h5"
expect_exit 2 "a negative step_in_epoch is refused" $MPI 1 "$YOTO" train --resume "$T/neg" --set train.steps=45
contains "naming the attributes" "$ERR" "step_in_epoch -1"
mkdir -p "$T/nofv/ckpt" # (resume renamed the damaged file .corrupt: a fresh copy)
cp "$T/a/ckpt/step-000000040.h5" "$T/nofv/ckpt/" && echo step-000000040.h5 >"$T/nofv/ckpt/latest"
"$PYTHON" -c 'import sys, h5py; del h5py.File(sys.argv[1], "r+").attrs["format_version"]' "$T/nofv/ckpt/step-000000040.h5"
expect_exit 2 "a checkpoint without format_version is refused" $MPI 1 "$YOTO" eval "$T/nofv"
contains "and says so (not 'version 0 is newer')" "$ERR" "lacks a valid root attribute format_version"

# ---- h5py reads a checkpoint as docs/FORMATS.md says ------------------------------------------------------------
check "h5py reads the checkpoint (docs/FORMATS.md)" "$PYTHON" - "$T/a/ckpt/step-000000040.h5" <<'EOF'
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
assert f.attrs["format"] == "yoto-checkpoint", f.attrs["format"]
assert int(f.attrs["step"]) == 40 and int(f.attrs["world_size"]) == 2
k = f["params/encoder/block0/conv0/kernel"]
assert k.shape == (4, 3, 3, 3) and k.dtype == np.float32, (k.shape, k.dtype)
assert f["optimizer/adam_m/encoder/block0/conv0/kernel"].shape == k.shape
assert int(f["optimizer"].attrs["adam_step"]) == 40
cfg = f["config"][()].decode()
assert "latent_dim: 4" in cfg
names = []
f["params"].visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
assert "decoder/out/conv/bias" in names and "encoder/block1/film/shift/dense1/kernel" in names
EOF

# ---- what a batch log and the run directory say (issue 12) -------------------------------------
# mpirun gives every rank a pseudo-terminal even when its output goes to a file
$MPI 2 "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/log" --set train.steps=20 >"$T/log.out" 2>&1
check "a batch log (mpirun -np 2 > file) has no carriage return" test "$(tr -cd '\r' <"$T/log.out" | wc -c)" = 0
check "and one progress update per line (4 of log_every 5 in 20 steps)" test "$(grep -c '^step [0-9]*/20 ' "$T/log.out")" = 4
contains "progress lines give ms per step and elapsed time" "$T/log.out" " ms/step "
check "metrics.csv has elapsed_s and ms_per_step, time with milliseconds" "$PYTHON" - "$T/log/metrics.csv" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == 4, rows
for r in rows:
    assert float(r["ms_per_step"]) > 0 and float(r["elapsed_s"]) >= 0, r
    assert "." in r["time"] and float(r["time"]) > 1.7e9, r
assert float(rows[-1]["elapsed_s"]) >= float(rows[0]["elapsed_s"])
EOF
# the rates measure the step: a slow checkpoint after every row (20 ms per
# tensor written) stays out of ms_per_step, while elapsed_s counts it
YOTO_FAULT=slow_ckpt $MPI 1 -x YOTO_FAULT "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/rate" \
    --set train.steps=20 --set train.checkpoint_every=10 >/dev/null 2>&1
check "ms_per_step leaves checkpoints out, elapsed_s keeps them" "$PYTHON" - "$T/rate/metrics.csv" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == 4, rows
stepping = sum(5 * float(r["ms_per_step"]) for r in rows) / 1e3
elapsed = float(rows[-1]["elapsed_s"])
# a checkpoint (step 10) before the last row, >= 20 ms x (params, m, v
# tensors): about 3 s
assert elapsed - stepping > 1.0, (elapsed, stepping)
EOF
expect_exit 0 "--progress live draws one line with carriage returns" $MPI 1 "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/live" --set train.steps=10 --progress live
check "live: the updates share one line" test "$(tr -cd '\r' <"$OUT" | wc -c)" -ge 2
contains "log.txt records the command line with every --set" "$T/log/log.txt" "---- yoto train $T/tiny.yaml --set experiment.out_dir=$T/log --set train.steps=20"
contains "log.txt records the build and the git commit" "$T/log/log.txt" "(git "
contains "log.txt records the hosts and ranks per host" "$T/log/log.txt" "2 ranks on $(hostname) x 2"
expect_exit 2 "--progress with a bad mode is a usage error" "$YOTO" train "$T/tiny.yaml" --progress sometimes
contains "naming the modes" "$ERR" "auto, lines or live"

# a failed start leaves nothing behind
expect_exit 2 "a wrong data path fails" $MPI 2 "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/nodir" --set data.file="$T/missing.h5"
check "and leaves no run directory" test ! -e "$T/nodir"
expect_exit 2 "a model that does not fit the data fails" $MPI 1 "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/nodir2" --set 'model.input_shape=[32, 32, 3]'
check "and leaves no run directory" test ! -e "$T/nodir2"

# a run directory with another config and no checkpoint is not overwritten silently
mkdir -p "$T/reuse" && echo "experiment: {name: other}" >"$T/reuse/config.yaml"
expect_exit 2 "another config in an out_dir without checkpoint is refused" $MPI 1 "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/reuse" --set train.steps=5
contains "it says what to do" "$ERR" "pass --force"
contains "its config.yaml is untouched" "$T/reuse/config.yaml" "name: other"
expect_exit 0 "--force starts over there" $MPI 1 "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/reuse" --set train.steps=5 --force
contains "and writes its config" "$T/reuse/config.yaml" "name: tiny"
expect_exit 0 "the same config again (a crashed start) is fine without --force" $MPI 1 "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/reuse" --set train.steps=5

# eval.metrics: on without labels is refused before training (not at the first eval)
"$PYTHON" - "$T/shapes.h5" "$T/nolabels.h5" <<'EOF'
import sys, h5py
with h5py.File(sys.argv[1], "r") as s, h5py.File(sys.argv[2], "w") as d:
    d["images"] = s["images"][()]
EOF
expect_exit 2 "eval.metrics: on without labels: refused before training" $MPI 2 "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/nolab" --set data.file="$T/nolabels.h5" --set eval.metrics=on --set eval.every=5
contains "naming the split and the key" "$ERR" "eval.metrics: on (set at --set eval.metrics=on): eval split 'train'"
check "and no run directory is made" test ! -e "$T/nolab"

done_testing
