# test_tcp.sh — the multi-node code path (issue 11): ranks on different nodes
# talk over TCP, not shared memory. Here both ranks run on this machine with
# shared memory switched off (ob1 with the self and tcp BTLs only, over the
# loopback interface: the same TCP code path as between nodes): train,
# checkpoint, resume, and end bit for bit where the shared-memory run does.
. tests/e2e/lib.sh

tiny_setup || { echo "Bail out! cannot prepare data"; exit 1; }

TCP=(--mca pml ob1 --mca btl self,tcp --mca btl_tcp_if_include lo --mca osc '^ucx')
train() { # train OUT_DIR [mpirun args --] [yoto args]
    local dir=$1
    shift
    local m=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do m+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    timeout 300 $MPI 2 "${m[@]}" "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$dir" "$@"
}
same() { # /params and /optimizer bit for bit
    h5diff -q "$1" "$2" /params /params && h5diff -q "$1" "$2" /optimizer /optimizer
}

expect_exit 0 "shared memory (the default): 40 steps on 2 ranks" train "$T/shm"
expect_exit 0 "TCP only: 20 steps on 2 ranks" train "$T/tcp" "${TCP[@]}" --mca btl_base_verbose 100 -- --set train.steps=20
contains "the ranks send to each other over TCP (Open MPI says so)" "$ERR" "Using tcp btl for send to"
check "and not through shared memory" test "$(grep -c 'Using vader btl' "$ERR")" = 0
check "TCP: checkpoints at steps 10 and 20" test -s "$T/tcp/ckpt/step-000000010.h5" -a -s "$T/tcp/ckpt/step-000000020.h5"
check "TCP: step 20 equals the shared-memory run's step 20" same "$T/shm/ckpt/step-000000020.h5" "$T/tcp/ckpt/step-000000020.h5"
expect_exit 0 "TCP only: resumed for 20 more" train "$T/tcp" "${TCP[@]}" -- --set train.steps=40
contains "it resumed" "$OUT" "resuming"
check "TCP, resumed: step 40 equals the uninterrupted shared-memory run" same "$T/shm/ckpt/step-000000040.h5" "$T/tcp/ckpt/step-000000040.h5"
expect_exit 0 "TCP only: eval of the run" timeout 300 $MPI 2 "${TCP[@]}" "$YOTO" eval "$T/tcp" --set eval.max_batches=1
check "TCP: eval wrote its tables" test -s "$T/tcp/eval/step-000000040.h5"

done_testing
