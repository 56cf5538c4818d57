#!/usr/bin/env bash
# test_avx512.sh — bin/yoto-avx512 (make avx512: 16-float vectors, AVX-512
# only) end to end, against the binary under test ($YOTO): the same run, the
# same numbers to rounding; repeatable bit for bit; it resumes and evaluates
# the other binary's checkpoints; on a CPU without AVX-512 it refuses to
# start (exit 2) instead of dying of SIGILL.
. tests/e2e/lib.sh

W=$PWD/bin/yoto-avx512
need_build "$W" "make avx512"

# the guard, on an emulated CPU without AVX-512 (the isa kind's qemu)
if command -v qemu-x86_64 >/dev/null; then
    expect_exit 2 "on a CPU without AVX-512 (qemu -cpu Haswell): exit 2" qemu-x86_64 -cpu Haswell "$W" --version
    contains "naming the binary to use instead" "$ERR" "this binary is built for AVX-512 (make avx512) and this CPU lacks it"
else
    skip "the guard on a CPU without AVX-512" "no qemu-x86_64 (Debian package qemu-user)"
fi

for f in avx512f avx512bw avx512dq avx512vl; do
    if ! grep -qw $f /proc/cpuinfo; then
        skip "bin/yoto-avx512 end to end" "this CPU lacks $f"
        done_testing
        exit
    fi
done
expect_exit 0 "the guard lets it start here" "$W" --version

tiny_setup || { echo "Bail out! cannot prepare data"; exit 1; }
expect_exit 0 "bin/yoto-avx512 trains 20 steps at np=2" tiny_train "$W" 2 "$T/w"
contains "log.txt names its kernels" "$T/w/log.txt" "avx512 kernels"
# the kernels sum in other orders (16 lanes, not 8): measured ~1e-6 relative
# after 20 steps
same_run_as_yoto bin/yoto-avx512 "$T/w"
expect_exit 0 "bin/yoto-avx512, the same run again" tiny_train "$W" 2 "$T/w2"
check "repeats bit for bit (h5diff of the checkpoints' parameters and moments)" \
    h5diff "$T/w/ckpt/step-000000020.h5" "$T/w2/ckpt/step-000000020.h5" /optimizer /optimizer
check "and its parameters" h5diff "$T/w/ckpt/step-000000020.h5" "$T/w2/ckpt/step-000000020.h5" /params /params

# a checkpoint of the other binary: resumed by bin/yoto-avx512
expect_exit 0 "the binary under test: 10 steps" tiny_train "$YOTO" 2 "$T/f10" --set train.steps=10
expect_exit 0 "bin/yoto-avx512 resumes it to 20" $MPI 2 "$W" train --resume "$T/f10" --set train.steps=20
check "and ends where the straight run does, to 1e-4 (max-normalised)" \
    "$PYTHON" tests/e2e/runcheck.py params "$T/f/ckpt/step-000000020.h5" "$T/f10/ckpt/step-000000020.h5" 1e-4
evaluates_like_yoto "$W" bin/yoto-avx512

done_testing
