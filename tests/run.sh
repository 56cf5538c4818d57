#!/usr/bin/env bash
# tests/run.sh [unit] [isa] [avx512] [mpi] [e2e] — the test driver behind `make test`.
#
# Every suite speaks TAP ("1..N" plan, "ok N - name", "not ok N - name", "# SKIP"):
#   unit  build/<variant>/tests/test_* from tests/unit/, each build variant
#   mpi   build/<variant>/tests/test_* from tests/mpi/ under mpirun -np 1, 2, 4
#   e2e   tests/e2e/test_*.sh end to end, for each e2e variant: rel (bin/yoto),
#         asan (bin/yoto-asan), dbl (bin/yoto-double): tests/e2e/lib.sh
#   isa   the unit tests of the SIMD kernels (convk, convs, elementwise, layers,
#         golden) with YOTO_ISA=baseline: under qemu-x86_64 emulating a CPU
#         without AVX2, so the loader picks the baseline copies of every
#         YT_SIMD_CLONES function (a native run on an AVX2 machine never
#         executes them). Skipped without qemu-x86_64 or without AVX2 here.
#   avx512  the unit tests of build/avx512 (bin/yoto-avx512's code: 16-float
#         vectors, make avx512) on a CPU with AVX-512; skipped elsewhere
# A suite that exits non-zero without a failing test line, hangs past its
# timeout, prints no test at all, or prints a plan its results do not match
# ("1..12" with 11 results) counts as one failure. Before the last line it
# states how many distinct tests ran (a unit test runs once per build and
# once more under isa, an MPI test once per rank count); the last line is
# "N passed, N failed" over every TAP result. Logs: tests/out/logs/.
#
# Environment: YOTO_VARIANTS="rel dbl" (unit builds to run), YOTO_MPI_VARIANTS
# (MPI builds, "rel dbl"), YOTO_E2E_VARIANTS ("rel"), YOTO_VALGRIND=1 (unit
# tests under valgrind),
# YOTO_TEST_FILTER="sub1 sub2" (run the suites whose name contains one of the
# substrings), YOTO_TEST_JOBS (suites at a time; default: the cores; 1: one
# after the other), YOTO_ISA=baseline (every unit suite emulated as in isa),
# YOTO_ASAN_E2E_SKIP (e2e suites not run against bin/yoto-asan; default: the
# ones about scripts, Slurm and timing, to keep CI's time; "" runs them all).
set -u
cd "$(dirname "$0")/.."

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
# more ranks than cores (np = 4 on 2): a rank waiting in MPI yields its core
# to one that computes instead of spinning (mpi/asan/np4/test_ckpt 64 -> 35 s)
export OMPI_MCA_mpi_yield_when_idle=${OMPI_MCA_mpi_yield_when_idle:-1}
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
kinds=${*:-unit isa avx512 mpi e2e}
variants=${YOTO_VARIANTS:-rel dbl}
mpi_variants=${YOTO_MPI_VARIANTS:-rel dbl}
e2e_variants=${YOTO_E2E_VARIANTS:-rel}
asan_e2e_skip=${YOTO_ASAN_E2E_SKIP-test_jobs test_hang test_fidelity test_disentanglement test_scripts test_docs test_scaling test_mutants test_avx512}
filter=${YOTO_TEST_FILTER:-}

pass=0 fail=0 skip=0
failed_names=()
declare -A distinct=() # "unit/test_x: test_name" -> 1

# selected NAME: true when no filter is set or NAME contains one of its words
selected() {
    [ -z "$filter" ] && return 0
    local w
    for w in $filter; do [[ $1 == *"$w"* ]] && return 0; done
    return 1
}

# the distinct test a suite's name stands for: unit/dbl/test_x, isa/rel/test_x
# -> unit/test_x; mpi/rel/np4/test_x -> mpi/test_x; e2e/asan/test_x -> e2e/test_x
distinct_id() {
    local kind=${1%%/*} base=${1##*/}
    [ "$kind" = isa ] || [ "$kind" = avx512 ] && kind=unit
    echo "$kind/$base"
}

# Suites run YOTO_TEST_JOBS at a time (default: the number of cores; most of
# an end-to-end suite's time is waiting on mpirun, files and processes). The
# ones in $solo_suites measure time (deadlines, watchdogs): each runs alone
# (a suite that is only skipped does not wait). test_jobs is not one: its
# clock (a Slurm time limit's signal 30 s after slurmctld starts, a job of
# 100 ms steps that must outlast it) only grows safer under load, and alone
# it left a core idle for 60-80 s of CI's 15 minutes. Results are
# counted and printed in the order the suites were started, whatever order
# they end in.
jobs_max=${YOTO_TEST_JOBS:-$(nproc 2>/dev/null || echo 1)}
[[ $jobs_max =~ ^[1-9][0-9]*$ ]] || { echo "tests/run.sh: YOTO_TEST_JOBS=$jobs_max: a number of suites at a time, 1 or more" >&2; exit 2; }
solo_suites=" test_watchdog test_hang "
RCDIR=$(mktemp -d "$LOGS/.rc.XXXXXX") # this run's exit codes (make test and check-asan may overlap)
queue=() # started, not yet counted: "NAME LIMIT T0"
# ^C or a kill: the running suites are stopped too (each runs under timeout,
# in its own process group, which a terminal's ^C does not reach)
stop_suites() {
    local p
    for p in $(jobs -p); do
        pkill -TERM -P "$p" 2>/dev/null
        kill "$p" 2>/dev/null
    done
    rm -rf "$RCDIR"
}
trap 'stop_suites; exit 130' INT
trap 'stop_suites; exit 143' TERM

# run_suite NAME TIMEOUT CMD... — starts one TAP-speaking command; counted by tally_ended.
run_suite() {
    local name=$1 limit=$2
    shift 2
    selected "$name" || return 0
    local solo=false
    [ "$jobs_max" -le 1 ] || { [ -z "${skipping:-}" ] && [[ $solo_suites == *" ${name##*/} "* ]]; } && solo=true
    if $solo; then
        wait_all
    else
        while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do
            wait -n 2>/dev/null
            tally_ended
        done
    fi
    start_suite "${name//\//_}" "$limit" "$@"
    queue+=("$name $limit $SECONDS")
    if $solo; then wait_all; else tally_ended; fi
}

# start_suite KEY TIMEOUT CMD...: in the background; "EXITCODE SECONDS" (when it
# ended) lands in $RCDIR/KEY
start_suite() {
    local key=$1 limit=$2
    shift 2
    rm -f "$RCDIR/$key"
    (
        timeout --kill-after=10 "$limit" "$@" >"$LOGS/$key.log" 2>&1 </dev/null
        echo "$? $SECONDS" >"$RCDIR/$key.tmp"
        mv "$RCDIR/$key.tmp" "$RCDIR/$key"
    ) &
}

# wait_all: every started suite has ended and is counted (one whose shell
# died before it wrote an exit code counts as failed, exit code 125)
wait_all() {
    wait
    local e name
    for e in "${queue[@]}"; do
        name=${e%% *}
        [ -e "$RCDIR/${name//\//_}" ] || echo "125 $SECONDS" >"$RCDIR/${name//\//_}"
    done
    tally_ended
}

# tally_ended: counts the suites at the head of the queue that have ended
tally_ended() {
    local name limit t0
    while [ ${#queue[@]} -gt 0 ]; do
        read -r name limit t0 <<<"${queue[0]}"
        [ -e "$RCDIR/${name//\//_}" ] || return 0
        tally "$name" "$limit" "$t0" "$(cat "$RCDIR/${name//\//_}")"
        queue=("${queue[@]:1}")
    done
}

# tally NAME TIMEOUT T0 "RC T1" — counts one ended suite from its log
tally() {
    local name=$1 limit=$2 t0=$3 rc t1
    read -r rc t1 <<<"$4"
    local log="$LOGS/${name//\//_}.log" id
    id=$(distinct_id "$name")
    local p=0 f=0 s=0 plan= line
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
            p=$((p + 1))
            # "ok 3 - name" -> "name"
            local t=${line#ok }
            t=${t#* - }
            distinct["$id: $t"]=1 ;;
        1..[0-9]*)
            [ -z "$plan" ] && plan=${line#1..} && plan=${plan%% *} ;;
        esac
    done <"$log"
    if [ $rc -ne 0 ] && [ $f -eq 0 ]; then
        f=1
        local why="exit code $rc"
        [ $rc -eq 124 ] || [ $rc -eq 137 ] && why="timed out after ${limit}s"
        [ $rc -eq 125 ] && why="exit code 125 (timeout failed, or the suite's shell was killed)"
        failed_names+=("$name: $why")
        echo "  FAIL  $name: $why"
    fi
    if [ $p -eq 0 ] && [ $f -eq 0 ] && [ $s -eq 0 ]; then
        f=1
        failed_names+=("$name: ran no tests")
        echo "  FAIL  $name: ran no tests"
    elif [ -z "$plan" ] || [ "$plan" != $((p + f + s)) ]; then
        # a suite that stopped early (or ran more than it announced) without
        # saying so; rc 0 and every line "ok" do not make it complete
        local why="TAP plan ${plan:-missing}, $((p + f + s)) results"
        [ $rc -ne 0 ] || [ $f -gt 0 ] || { f=1; failed_names+=("$name: $why"); echo "  FAIL  $name: $why"; }
    fi
    if [ $f -gt 0 ]; then
        echo "  ---- $log (last 30 lines) ----"
        tail -n 30 "$log" | sed 's/^/  | /'
    fi
    printf '%-44s %4d ok %3d failed %3d skipped  %4ds\n' "$name" $p $f $s $((t1 - t0))
    pass=$((pass + p))
    fail=$((fail + f))
    skip=$((skip + s))
}

# one TAP line that says why a suite did not run
skip_suite() { # skip_suite NAME REASON
    skipping=1 run_suite "$1" 10 printf '1..1\nok 1 # SKIP %s\n' "$2"
}

valgrind_cmd=()
if [ -n "${YOTO_VALGRIND:-}" ]; then
    export YOTO_QUICK=1
    valgrind_cmd=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
        --suppressions=/usr/share/openmpi/openmpi-valgrind.supp --suppressions=tests/valgrind.supp)
fi

# YOTO_ISA=baseline: a CPU without AVX2 (Nehalem: SSE4.2), OpenBLAS on kernels
# that run there; testutil checks that the baseline copies were picked
baseline_cmd=(env YOTO_ISA=baseline OPENBLAS_CORETYPE=Nehalem qemu-x86_64 -cpu Nehalem)
baseline_skip() { # prints why the baseline copies cannot be forced here, or nothing
    if ! grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
        echo "this CPU has no AVX2: the native unit runs already use the baseline copies"
    elif ! command -v qemu-x86_64 >/dev/null; then
        echo "no qemu-x86_64 (Debian package qemu-user) to emulate a CPU without AVX2"
    fi
}
# e2e_in_order: tests/e2e/test_*.sh, the solo suites first (each waits for
# the running ones to end: at the start of e2e those are short MPI tests),
# then the longest (1.5 minutes or so; started last, one of them would run
# alone at the end while the other core idles), then the rest A-Z
e2e_first="test_hang test_jobs test_train test_eval test_faults test_prepare test_fidelity test_encode test_scripts"
e2e_in_order() {
    local b sh
    for b in $e2e_first; do [ -e "tests/e2e/$b.sh" ] && echo "tests/e2e/$b.sh"; done
    for sh in tests/e2e/test_*.sh; do
        [ -e "$sh" ] || continue
        b=$(basename "$sh" .sh)
        [[ " $e2e_first " == *" $b "* ]] || echo "$sh"
    done
}
unit_prefix=("${valgrind_cmd[@]}")
unit_kind=unit
if [ "${YOTO_ISA:-}" = baseline ]; then
    why=$(baseline_skip)
    [ -z "$why" ] || { echo "tests/run.sh: YOTO_ISA=baseline: $why" >&2; exit 2; }
    unit_prefix=("${baseline_cmd[@]}")
    unit_kind=isa
fi

for kind in $kinds; do
    case $kind in
    unit)
        for v in $variants; do
            for src in tests/unit/test_*.c; do
                t=$(basename "$src" .c)
                if [ "$v" = dbl ] && [ "$t" = test_watchdog ] && [[ " $variants " == *" rel "* ]]; then
                    # timers and threads, no real numbers: 6 s of waiting, alone, in rel
                    skip_suite "$unit_kind/$v/$t" "timing only, no real numbers: it runs in the rel build"
                    continue
                fi
                run_suite "$unit_kind/$v/$t" 600 "${unit_prefix[@]}" "build/$v/tests/$t"
            done
        done ;;
    isa)
        why=$(baseline_skip)
        for v in $variants; do
            for t in test_convk test_convs test_elementwise test_layers test_golden; do
                if [ -z "$why" ] && [ "$v" = dbl ] && { [ "$t" = test_convk ] || [ "$t" = test_convs ]; }; then
                    # emulated, the double build's conv kernels take 50 s: the float
                    # build's (the ones training runs) are checked above
                    skip_suite "isa/$v/$t" "the float build's baseline conv kernels are checked in isa/rel; the double build's take 50 s emulated"
                elif [ -n "$why" ]; then
                    skip_suite "isa/$v/$t" "$why"
                else
                    run_suite "isa/$v/$t" 600 "${baseline_cmd[@]}" "build/$v/tests/$t"
                fi
            done
        done ;;
    avx512)
        why=
        for f in avx512f avx512bw avx512dq avx512vl; do
            grep -qw $f /proc/cpuinfo 2>/dev/null || { why="this CPU lacks $f: bin/yoto-avx512 cannot run here"; break; }
        done
        for src in tests/unit/test_*.c; do
            t=$(basename "$src" .c)
            if [ -n "$why" ]; then
                skip_suite "avx512/$t" "$why"
            elif [ "$t" = test_watchdog ]; then
                # timers and threads, no vector code: its 6 s of waiting run in unit
                skip_suite "avx512/$t" "timing only, no vector code: it runs in the unit kind"
            elif [ ! -x "build/avx512/tests/$t" ]; then
                skip_suite "avx512/$t" "build/avx512/tests/$t not built (make test builds it)"
            else
                run_suite "avx512/$t" 600 "${valgrind_cmd[@]}" "build/avx512/tests/$t"
            fi
        done ;;
    mpi)
        for src in tests/mpi/test_*.c; do
            [ -e "$src" ] || continue
            t=$(basename "$src" .c)
            for np in 1 2 4; do
                for v in $mpi_variants; do
                    # checkpoints are float32 on disk (docs/FORMATS.md): the double
                    # build reads back a rounded state, test_ckpt compares bit for bit
                    if [ "$v" = dbl ] && [ "$t" = test_ckpt ]; then
                        skip_suite "mpi/$v/np$np/$t" "checkpoints are float32 on disk; test_ckpt compares the double build's state bit for bit"
                        continue
                    fi
                    # ASan on 4 ranks of 2 cores: 81 s in CI for test_ckpt, whose
                    # code at 4 ranks is that of 2 (the rel build runs np = 4)
                    if [ "$v" = asan ] && [ "$t" = test_ckpt ] && [ $np = 4 ]; then
                        skip_suite "mpi/$v/np$np/$t" "np = 4 runs in the rel build; under ASan np = 2 takes the same code (81 s saved)"
                        continue
                    fi
                    run_suite "mpi/$v/np$np/$t" 300 mpirun --oversubscribe -np $np "build/$v/tests/$t"
                done
            done
        done ;;
    e2e)
        for v in $e2e_variants; do
            e2e_env=(env YOTO_VARIANT="$v")
            # bin/yoto-asan end to end: the fast unwinder and no leak check.
            # Matching tests/lsan.supp in Open MPI's frames needs the slow
            # unwinder at every malloc, which made these runs 3x slower and
            # broke the deadlines of the signal tests; leaks are the unit and
            # MPI tests' job (ASAN_OPTIONS above)
            [ "$v" = asan ] && e2e_env+=(ASAN_OPTIONS="${YOTO_E2E_ASAN_OPTIONS:-detect_leaks=0:abort_on_error=0}")
            for sh in $(e2e_in_order); do
                base=$(basename "$sh" .sh)
                name=e2e/$base limit=600
                [ "$v" = rel ] || name=e2e/$v/$base limit=1200 # sanitizers: slower
                # under ASan, the suites about scripts, Slurm and timing: the yoto code
                # they run is what the other suites run under ASan too (the time budget)
                if [ "$v" = asan ] && [[ " $asan_e2e_skip " == *" $base "* ]]; then
                    skip_suite "$name" "scripts, Slurm, timing or another build (bin/yoto-avx512): their yoto code runs under ASan in the other suites"
                    continue
                fi
                run_suite "$name" $limit "${e2e_env[@]}" bash "$sh"
            done
        done ;;
    *)
        echo "tests/run.sh: unknown suite kind '$kind' (unit, isa, avx512, mpi, e2e)" >&2
        exit 2 ;;
    esac
done

wait_all
rm -rf "$RCDIR"
echo
if [ $skip -gt 0 ]; then echo "$skip skipped (reasons above)"; fi
if [ $fail -gt 0 ]; then
    echo "failures:"
    for n in "${failed_names[@]}"; do echo "  $n"; done
fi
echo "${#distinct[@]} distinct tests passed (the total below counts a unit test once per build and ISA, AVX-512 included, an MPI test once per build and rank count, an e2e test once per binary)"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
