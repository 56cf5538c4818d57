# test_double.sh — bin/yoto-double (numerics in double, -DYOTO_DOUBLE) end to
# end, against the binary under test ($YOTO, float): the same run, the same
# numbers to rounding; resume; either binary reads the other's checkpoints
# (they are float32 on disk, docs/FORMATS.md).
. tests/e2e/lib.sh

DBL=$PWD/bin/yoto-double
need_build "$DBL" "make bin/yoto-double"
tiny_setup || { echo "Bail out! cannot prepare data"; exit 1; }

expect_exit 0 "bin/yoto-double trains 20 steps at np=2" tiny_train "$DBL" 2 "$T/d"
contains "and says so" "$OUT" "done: 20 steps"
# double and float differ by rounding: measured ~1e-7 relative after 20 steps
same_run_as_yoto bin/yoto-double "$T/d"
check "its checkpoint is float32 on disk, like the float build's" "$PYTHON" -c \
    'import sys, h5py; sys.exit(h5py.File(sys.argv[1], "r")["params/encoder/block0/conv0/kernel"].dtype != "float32")' \
    "$T/d/ckpt/step-000000020.h5"

# resume in double: the checkpoint rounds the state to float32 (the on-disk
# type), so 10 + 10 resumed differs from 20 straight by that rounding only
expect_exit 0 "bin/yoto-double: 10 steps" tiny_train "$DBL" 2 "$T/d10" --set train.steps=10
expect_exit 0 "resumed to 20" $MPI 2 "$DBL" train --resume "$T/d10" --set train.steps=20
check "10 + 10 resumed = 20 up to float32 rounding of the saved state (1e-5 max-normalised; measured ~1e-7)" \
    "$PYTHON" tests/e2e/runcheck.py state "$T/d/ckpt/step-000000020.h5" "$T/d10/ckpt/step-000000020.h5" 1e-5
# either binary evaluates either checkpoint: the tables agree (z = mean)
evaluates_like_yoto "$DBL" bin/yoto-double
expect_exit 0 "bin/yoto-double samples a grid" $MPI 1 "$DBL" sample "$T/d" --beta 0.5,8 --n 3 --out "$T/d.png"
check "its 16 px images drawn 96 px tall (the default scale)" "$PYTHON" tests/e2e/evalcheck.py scale "$T/d.png" 16 6
check "two rows, named by their betas" "$PYTHON" tests/e2e/evalcheck.py text "$T/d.png" Rows "row 0: beta=0.5; row 1: beta=8"

done_testing
