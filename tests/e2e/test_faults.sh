# test_faults.sh — checkpoints under faults (issue 11): a write that fails
# (YOTO_FAULT at each step of the write, a full tmpfs, a file size limit)
# keeps the previous checkpoint published and stops every rank with exit 1;
# the run then resumes from it, bit for bit. Damaged files are refused by
# eval, sample and reconstruct (exit 2, naming the tensor), and the h5py
# check of docs/FORMATS.md finds the same.
. tests/e2e/lib.sh

tiny_setup || { echo "Bail out! cannot prepare data"; exit 1; }

train() { # train NP OUT_DIR [more args]: every rank's exit code in OUT_DIR.rc.<rank>
    run_ranks "" "$@"
}
# the same with files of at most 128 KB (ulimit -f) for the ranks only (the
# PMIx server of mpirun needs larger ones), over TCP (shared memory needs larger ones too)
limited_train() {
    run_ranks "ulimit -f 128 &&" --mca pml ob1 --mca btl self,tcp --mca btl_tcp_if_include lo -- "$@"
}
run_ranks() { # run_ranks PREFIX [mpirun args --] NP OUT_DIR [yoto args]
    local prefix=$1 m=() x=()
    shift
    if [[ " $* " == *" -- "* ]]; then
        while [ "$1" != -- ]; do m+=("$1"); shift; done
        shift
    fi
    local np=$1 dir=$2
    shift 2
    rm -f "$dir".rc.*
    [ -n "${YOTO_FAULT:-}" ] && x=(-x YOTO_FAULT)
    # mpirun waits for every rank (it would kill the others at the first
    # non-zero exit) and returns 0 then: each rank's own exit code is kept
    timeout 120 $MPI "$np" "${x[@]}" "${m[@]}" --mca orte_abort_on_non_zero_status 0 bash -c \
        "$prefix"' "$0" "$@"; rc=$?; echo $rc >"'"$dir"'.rc.$OMPI_COMM_WORLD_RANK"; exit $rc' \
        "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$dir" "$@" || return $?
    local worst
    worst=$(cat "$dir".rc.* 2>/dev/null | sort -n | tail -1)
    return "${worst:-99}" # the worst rank's (99: no rank said)
}
every_rank_exited() { # every_rank_exited CODE DIR NP
    local code=$1 dir=$2 np=$3 r
    for ((r = 0; r < np; r++)); do [ "$(cat "$dir.rc.$r" 2>/dev/null)" = "$code" ] || return 1; done
}
same_tensors() { # params and Adam moments bit for bit
    h5diff -q "$1" "$2" /params /params && h5diff -q "$1" "$2" /optimizer /optimizer
}
# the h5py check of docs/FORMATS.md, as written there
sed -n '/^Checking a file by hand/,/^```$/p' docs/FORMATS.md | sed -n '/^```python$/,/^```$/p' | sed '1d;$d' >"$T/verify.py"
check "docs/FORMATS.md has the h5py check" grep -q "def verify" "$T/verify.py"

expect_exit 0 "reference: 40 uninterrupted steps on 2 ranks" train 2 "$T/ref"
REF=$T/ref/ckpt/step-000000040.h5
check "the h5py check passes a good checkpoint" "$PYTHON" "$T/verify.py" "$REF"
contains "and says ok" "$OUT" "$REF ok"

# start DIR: 10 steps, the checkpoint at step 10 published
start() { train 2 "$1" --set train.steps=10 >/dev/null 2>&1 && grep -qx step-000000010.h5 "$1/ckpt/latest"; }
# after_fault NAME DIR: the state a failed checkpoint write must leave
after_fault() {
    local name=$1 dir=$2
    contains "$name: the message says the previous checkpoint is kept" "$ERR" "ckpt/latest still names step-000000010.h5"
    check "$name: every rank exits 1" every_rank_exited 1 "$dir" 2
    check "$name: ckpt/latest still names step 10" grep -qx step-000000010.h5 "$dir/ckpt/latest"
    check "$name: no partial file left" test -z "$(ls -A "$dir/ckpt" | grep '\.tmp$')"
    check "$name: step 10 still verifies (h5py)" "$PYTHON" "$T/verify.py" "$dir/ckpt/step-000000010.h5"
}
# resumed NAME DIR: resumed without the fault, it ends where the reference does
resumed() {
    local name=$1 dir=$2
    expect_exit 0 "$name: the same command resumes once the fault is gone" train 2 "$dir" --set train.steps=40
    contains "$name: from step 10" "$OUT" "10 of 40 steps done"
    check "$name: and ends bit for bit where the uninterrupted run does" same_tensors "$REF" "$dir/ckpt/step-000000040.h5"
}

# ---- YOTO_FAULT at each step of the write -------------------------------------------------
for fault in ckpt_write@1 ckpt_rename@0 ckpt_latest@0; do
    d=$T/f-${fault%@*}
    check "$fault: a run with a checkpoint at step 10" start "$d"
    YOTO_FAULT=$fault expect_exit 1 "$fault: the checkpoint at step 20 fails: exit 1" train 2 "$d" --set train.steps=40
    contains "$fault: the message says what failed" "$ERR" "injected"
    [ "$fault" = ckpt_write@1 ] && contains "$fault: and on which rank" "$ERR" "rank 1: "
    after_fault "$fault" "$d"
    resumed "$fault" "$d"
done

# ---- a full file system (a small tmpfs) -----------------------------------------------------
M=$T/tmpfs
mkdir -p "$M"
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=4m yoto-test "$M" 2>/dev/null; then
    trap 'umount "$M" 2>/dev/null; rm -rf "$T"' EXIT
    d=$M/run
    check "tmpfs: a run with a checkpoint at step 10" start "$d"
    # leave 64 KB: config, log and metrics fit, a checkpoint (about 270 KB) does not
    free=$(df -B1 --output=avail "$M" | tail -1)
    check "tmpfs: filled up to 64 KB" dd if=/dev/zero of="$M/filler" bs=4096 count=$(((free - 65536) / 4096)) status=none
    expect_exit 1 "tmpfs full: the checkpoint at step 20 fails: exit 1" train 2 "$d" --set train.steps=40
    contains "tmpfs full: the message says how much space is left" "$ERR" "MB free on its file system"
    after_fault "tmpfs full" "$d"
    rm -f "$M/filler"
    resumed "tmpfs" "$d"
else
    skip "tmpfs" "mount -t tmpfs needs root (CAP_SYS_ADMIN)"
fi

# ---- a file size limit (ulimit -f): EFBIG, not death by SIGXFSZ ---------------------------------
d=$T/ulimit
check "ulimit -f: a run with a checkpoint at step 10" start "$d"
expect_exit 1 "ulimit -f 128 (KB): the checkpoint at step 20 fails: exit 1" limited_train 2 "$d" --set train.steps=40
contains "ulimit -f: the message names the checkpoint" "$ERR" "step-000000020.h5.tmp"
after_fault "ulimit -f" "$d"
resumed "ulimit -f" "$d"

# ---- damaged files: refused on every load, naming the part ----------------------------------------
# flip FILE DATASET BYTE: one bit inside a dataset's data
flip() {
    "$PYTHON" - "$@" <<'PY'
import sys, h5py
path, name, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
with h5py.File(path, "r") as f:
    off = f[name].id.get_offset()
with open(path, "r+b") as g:
    g.seek(off + k)
    b = g.read(1)
    g.seek(off + k)
    g.write(bytes([b[0] ^ 0x10]))
PY
}
mkdir -p "$T/bad/ckpt"
cp "$REF" "$T/bad/ckpt/" && echo step-000000040.h5 >"$T/bad/ckpt/latest"
cp "$T/ref/config.yaml" "$T/bad/"
B=$T/bad/ckpt/step-000000040.h5
flip "$B" /params/decoder/out/conv/kernel 9
sum=$(md5sum <"$B")
expect_exit 2 "a flipped bit in /params: eval refuses it" $MPI 1 "$YOTO" eval "$T/bad"
contains "naming the file and the tensor" "$ERR" "$B: checkpoint is corrupt: params/decoder/out/conv/kernel does not match its checksum"
expect_exit 2 "sample refuses it" $MPI 1 "$YOTO" sample "$T/bad" --beta 1 --out "$T/s.png"
expect_exit 2 "reconstruct refuses it" $MPI 1 "$YOTO" reconstruct "$T/bad" --beta 1 --out "$T/r.png"
check "nothing is written" test ! -e "$T/s.png" -a ! -e "$T/r.png" -a ! -e "$T/bad/eval"
check "the file is left as it was" test "$(md5sum <"$B")" = "$sum"
expect_exit 1 "the h5py check finds it too" "$PYTHON" "$T/verify.py" "$B"
contains "naming the tensor" "$OUT" "CORRUPT: /params/decoder/out/conv/kernel"

cp "$REF" "$B" && flip "$B" /optimizer/adam_v/encoder/block0/conv0/bias 2
expect_exit 2 "a flipped bit in an Adam moment: refused too (eval reads only the parameters)" $MPI 1 "$YOTO" eval "$T/bad"
contains "naming the moment" "$ERR" "optimizer/adam_v/encoder/block0/conv0/bias does not match"
expect_exit 1 "the h5py check finds it" "$PYTHON" "$T/verify.py" "$B"

cp "$REF" "$B" && flip "$B" /config 40
expect_exit 2 "a flipped bit in /config: refused" $MPI 1 "$YOTO" eval "$T/bad"
contains "naming /config" "$ERR" "/config does not match"
expect_exit 1 "the h5py check finds it" "$PYTHON" "$T/verify.py" "$B"
contains "as /config" "$OUT" "CORRUPT: /config"

cp "$REF" "$B" && "$PYTHON" -c 'import sys, h5py; h5py.File(sys.argv[1], "r+")["optimizer"].attrs["adam_step"] = 39' "$B"
expect_exit 2 "Adam's step edited: refused" $MPI 1 "$YOTO" eval "$T/bad"
contains "naming the state" "$ERR" "the state (step, epoch"
expect_exit 1 "the h5py check finds it" "$PYTHON" "$T/verify.py" "$B"

# a checkpoint of format_version 1 (before these checksums) still loads, with a warning
cp "$REF" "$B" && "$PYTHON" - "$B" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r+") as f:
    f.attrs["format_version"] = 1
    del f.attrs["state_crc32"]
    del f["config"].attrs["crc32"]
    f.visititems(lambda n, o: o.attrs.__delitem__("crc32") if "crc32" in o.attrs else None)
PY
expect_exit 0 "a format_version 1 checkpoint still loads" $MPI 1 "$YOTO" sample "$T/bad" --beta 1 --out "$T/v1.png"
contains "with a warning that the moments cannot be checked" "$ERR" "the Adam moments cannot be"

# ---- resume past a corrupt checkpoint: the newest one that verifies -------------------------------
# a run with checkpoints at 10, 20, 30, 40 (keep 3); step 40 damaged, step 30 too (by --resume)
expect_exit 0 "a run with checkpoints at 20, 30, 40" train 2 "$T/fb" --set train.keep_checkpoints=3
flip "$T/fb/ckpt/step-000000040.h5" /params/encoder/block0/conv0/kernel 5
expect_exit 0 "train CONFIG over it, 10 more steps: resumes from the newest that verifies" \
    train 2 "$T/fb" --set train.keep_checkpoints=3 --set train.steps=50
contains "it says so on stderr, naming the corrupt file" "$ERR" "step-000000040.h5"
contains "and in log.txt" "$T/fb/log.txt" "warning: "
check "the corrupt file is kept, renamed" test -s "$T/fb/ckpt/step-000000040.h5.corrupt"
contains "it resumed from step 30" "$T/fb/log.txt" "resuming $T/fb/ckpt/step-000000030.h5"
expect_exit 0 "reference: 50 uninterrupted steps" train 2 "$T/fb50" --set train.steps=50
check "30 + 20 resumed past the corrupt 40 = 50 uninterrupted, bit for bit" same_tensors "$T/fb50/ckpt/step-000000050.h5" "$T/fb/ckpt/step-000000050.h5"
for f in "$T"/fb/ckpt/step-*.h5; do flip "$f" /params/decoder/out/conv/bias 1; done
expect_exit 2 "--resume when no checkpoint verifies: exit 2" $MPI 2 "$YOTO" train --resume "$T/fb" --set train.steps=60
contains "listing what failed" "$ERR" "corrupt"
check "nothing deleted: every file kept under a .corrupt name" test "$(ls "$T"/fb/ckpt/*.corrupt* | wc -l)" -ge 4

done_testing
