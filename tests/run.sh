#!/usr/bin/env bash
# tests/run.sh [unit] [mpi] [e2e] — the test driver behind `make test`.
#
# Every suite speaks TAP ("ok N - name", "not ok N - name", "# SKIP"):
#   unit  build/<variant>/tests/test_* from tests/unit/, each build variant
#   mpi   build/<variant>/tests/test_* from tests/mpi/ under mpirun -np 1, 2, 4
#   e2e   tests/e2e/test_*.sh (bin/yoto end to end)
# A suite that exits non-zero without a failing test line, hangs past its
# timeout, or prints no test at all counts as one failure. The last line is
# "N passed, N failed". Logs: tests/out/logs/.
#
# Environment: YOTO_VARIANTS="rel dbl" (unit builds to run), YOTO_VALGRIND=1
# (unit tests under valgrind), YOTO_TEST_FILTER=substring (suites to run).
set -u
cd "$(dirname "$0")/.."

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
# OpenBLAS 0.3.21 falls back to slow generic kernels on CPUs it does not know;
# Haswell kernels (AVX2) are fast and valgrind-safe.
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
    export OPENBLAS_CORETYPE=Haswell
fi
export YOTO_TAP=1
# sanitizer builds (make check-asan): fail on the first error, Open MPI's own leaks suppressed
export ASAN_OPTIONS=${ASAN_OPTIONS:-fast_unwind_on_malloc=0:detect_leaks=1:abort_on_error=0}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export YOTO_TEST_OUT=${YOTO_TEST_OUT:-$PWD/tests/out/scratch}
export PYTHON=${PYTHON:-/usr/bin/python3}

LOGS=tests/out/logs
mkdir -p "$LOGS" "$YOTO_TEST_OUT"
kinds=${*:-unit mpi e2e}
variants=${YOTO_VARIANTS:-rel dbl}
mpi_variants=${YOTO_MPI_VARIANTS:-rel}
filter=${YOTO_TEST_FILTER:-}

pass=0 fail=0 skip=0
failed_names=()

# run_suite NAME TIMEOUT CMD... — runs one TAP-speaking command and counts it.
run_suite() {
    local name=$1 limit=$2
    shift 2
    if [ -n "$filter" ] && [[ $name != *"$filter"* ]]; then return; fi
    local log="$LOGS/${name//\//_}.log" t0=$SECONDS rc
    timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
    rc=$?
    local p=0 f=0 s=0 line
    while IFS= read -r line; do
        case $line in
        "not ok"*"# SKIP"* | "ok"*"# SKIP"*)
            s=$((s + 1))
            echo "  skip  $name: ${line#*# SKIP}" ;;
        "not ok"*)
            f=$((f + 1))
            failed_names+=("$name: ${line#not ok }")
            echo "  FAIL  $name: ${line#not ok }" ;;
        "ok "*)
            p=$((p + 1)) ;;
        esac
    done <"$log"
    if [ $rc -ne 0 ] && [ $f -eq 0 ]; then
        f=1
        local why="exit code $rc"
        [ $rc -eq 124 ] || [ $rc -eq 137 ] && why="timed out after ${limit}s"
        failed_names+=("$name: $why")
        echo "  FAIL  $name: $why"
    fi
    if [ $p -eq 0 ] && [ $f -eq 0 ] && [ $s -eq 0 ]; then
        f=1
        failed_names+=("$name: ran no tests")
        echo "  FAIL  $name: ran no tests"
    fi
    if [ $f -gt 0 ]; then
        echo "  ---- $log (last 30 lines) ----"
        tail -n 30 "$log" | sed 's/^/  | /'
    fi
    printf '%-44s %4d ok %3d failed %3d skipped  %4ds\n' "$name" $p $f $s $((SECONDS - t0))
    pass=$((pass + p))
    fail=$((fail + f))
    skip=$((skip + s))
}

valgrind_cmd=()
if [ -n "${YOTO_VALGRIND:-}" ]; then
    export YOTO_QUICK=1
    valgrind_cmd=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
        --suppressions=/usr/share/openmpi/openmpi-valgrind.supp --suppressions=tests/valgrind.supp)
fi

for kind in $kinds; do
    case $kind in
    unit)
        for v in $variants; do
            for src in tests/unit/test_*.c; do
                t=$(basename "$src" .c)
                run_suite "unit/$v/$t" 600 "${valgrind_cmd[@]}" "build/$v/tests/$t"
            done
        done ;;
    mpi)
        for src in tests/mpi/test_*.c; do
            [ -e "$src" ] || continue
            t=$(basename "$src" .c)
            for np in 1 2 4; do
                for v in $mpi_variants; do
                    run_suite "mpi/$v/np$np/$t" 300 mpirun --oversubscribe -np $np "build/$v/tests/$t"
                done
            done
        done ;;
    e2e)
        for sh in tests/e2e/test_*.sh; do
            [ -e "$sh" ] || continue
            run_suite "e2e/$(basename "$sh" .sh)" 600 bash "$sh"
        done ;;
    *)
        echo "tests/run.sh: unknown suite kind '$kind' (unit, mpi, e2e)" >&2
        exit 2 ;;
    esac
done

echo
if [ $skip -gt 0 ]; then echo "$skip skipped (reasons above)"; fi
if [ $fail -gt 0 ]; then
    echo "failures:"
    for n in "${failed_names[@]}"; do echo "  $n"; done
fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
