# test_cli.sh — the command-line skeleton: version, help, usage errors.
. tests/e2e/lib.sh

check "--version runs" "$YOTO" --version
contains "--version names the version" "$OUT" "yoto 0."
contains "--version names the git commit" "$OUT" "git "
git_head=$(git rev-parse --short=12 HEAD 2>/dev/null || true)
if [ -n "$git_head" ]; then
    contains "--version commit is HEAD" "$OUT" "$git_head"
else
    skip "--version commit is HEAD" "no git or no repository here to name HEAD"
fi

check "--help runs" "$YOTO" --help
for cmd in config prepare data-info train eval sample reconstruct bench; do
    contains "--help lists $cmd" "$OUT" "  $cmd"
done
for cmd in config prepare data-info train eval sample reconstruct bench; do
    expect_exit 0 "$cmd --help exits 0" "$YOTO" $cmd --help
    contains "$cmd --help prints usage" "$OUT" "usage: yoto $cmd"
done

expect_exit 2 "no command is a usage error" "$YOTO"
contains "and prints the usage" "$ERR" "usage: yoto <command> [options]"
expect_exit 2 "unknown command is a usage error" "$YOTO" frobnicate
contains "unknown command is named" "$ERR" "unknown command 'frobnicate'"
expect_exit 2 "unknown option is a usage error" "$YOTO" config --frobnicate x.yaml
contains "unknown option is named" "$ERR" "--frobnicate"
expect_exit 2 "missing option value is a usage error" "$YOTO" config x.yaml --set
contains "names the option" "$ERR" "option '--set' needs a value"
# a failure on one rank only: every rank exits with the same code and message, no hang
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
t0=$(date +%s)
YOTO_FAULT=config@1 expect_exit 2 "config failure on rank 1 of 2: exit 2" timeout 60 mpirun --oversubscribe -np 2 -x YOTO_FAULT "$YOTO" train configs/fashion_mnist_conv_vae_yoto.yaml --set experiment.out_dir="$T/never"
contains "the message comes from rank 1" "$ERR" "rank 1: configs/fashion_mnist_conv_vae_yoto.yaml: injected config error"
check "no hang (under 20 s)" test $(($(date +%s) - t0)) -lt 20
check "nothing was created" test ! -e "$T/never"
expect_exit 2 "a bad config under mpirun -np 2: exit 2" mpirun --oversubscribe -np 2 "$YOTO" train configs/fashion_mnist_conv_vae_yoto.yaml --set train.stepz=3
contains "one message (rank 0 reports)" "$ERR" "did you mean 'train.steps'"
check "printed once, not once per rank" test "$(grep -c "did you mean" "$ERR")" = 1
# OpenBLAS on generic kernels: one warning that says how to fix it
if grep -qw avx2 /proc/cpuinfo; then
    OPENBLAS_CORETYPE=Prescott expect_exit 0 "bench on generic OpenBLAS kernels" "$YOTO" bench configs/fashion_mnist_conv_vae_yoto.yaml --steps 1 --warmup 0 --set train.batch_size=4
    contains "warns and names OPENBLAS_CORETYPE" "$ERR" "set OPENBLAS_CORETYPE="
    contains "bench names the kernels" "$OUT" "Prescott kernels"
    check "warns once" test "$(grep -c OPENBLAS_CORETYPE "$ERR")" = 1
else
    skip "OpenBLAS fallback warning" "this CPU has no AVX2"
fi
done_testing
