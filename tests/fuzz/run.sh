#!/usr/bin/env bash
# tests/fuzz/run.sh HARNESS... — what `make fuzz` runs: each libFuzzer harness
# build/fuzz/fuzz_<h> for FUZZ_SECONDS (default 60) from its seed corpus
# tests/fuzz/corpus/<h>/ (read only; new inputs go to build/fuzz/corpus/<h>/),
# with tests/fuzz/<h>.dict when there is one, in fork mode so that it goes on
# after a crash. Crashes, hangs (> 5 s), leaks and out-of-memory inputs
# (> 2 GB) land in build/fuzz/findings/<h>/; tests/fuzz/triage.py replays
# them and sorts them into ours and libhdf5's. A fixed one goes to
# tests/fuzz/regress/<h>/, which `make test` replays
# (tests/unit/test_fuzz_regress.c). Prints one line per harness (executions,
# coverage, findings) and exits 1 when a finding is in yoto's code.
set -u
cd "$(dirname "$0")/../.."
secs=${FUZZ_SECONDS:-60}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# the harnesses write every input to a file: on tmpfs, fsync costs nothing;
# one directory for the run (a harness killed by a crash leaves its files)
base=${TMPDIR:-/tmp}
[ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ] && base=/dev/shm
TMPDIR=$(mktemp -d "$base/yoto-fuzz-run.XXXXXX") || exit 1
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT
status=0
summary=()
for h in "$@"; do
    bin=build/fuzz/fuzz_$h
    work=build/fuzz/corpus/$h findings=build/fuzz/findings/$h log=build/fuzz/$h.log
    mkdir -p "$work" "$findings"
    stamp=build/fuzz/.$h.start && touch "$stamp" && sleep 1
    dict=()
    [ -f "tests/fuzz/$h.dict" ] && dict=(-dict="tests/fuzz/$h.dict")
    echo "fuzz $h: ${secs} s from tests/fuzz/corpus/$h ($(ls "tests/fuzz/corpus/$h" | wc -l) seeds), log $log"
    "$bin" "$work" "tests/fuzz/corpus/$h" "${dict[@]}" -fork=1 -ignore_crashes=1 \
        -ignore_timeouts=1 -ignore_ooms=1 -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 \
        -malloc_limit_mb=2048 -artifact_prefix="$findings/" >"$log" 2>&1
    execs=$(sed -n 's/^#\([0-9]*\): cov.*/\1/p' "$log" | tail -1)
    cov=$(sed -n 's/^#[0-9]*: \(cov: [0-9]*\).*/\1/p' "$log" | tail -1)
    mapfile -t new < <(find "$findings" -maxdepth 1 -type f -newer "$stamp" | sort)
    line=$(printf '%-9s %9s executions  %-9s %3d finding(s)' "$h" "${execs:-?}" "${cov:-cov: ?}" "${#new[@]}")
    if [ ${#new[@]} -gt 0 ]; then
        tests/fuzz/triage.py "$bin" "${new[@]}" >"$findings/triage.txt" 2>&1 || status=1
        cat "$findings/triage.txt"
        line="$line: $(sed -n 's/^TRIAGE //p' "$findings/triage.txt")"
    fi
    summary+=("$line")
done
echo
printf '%s\n' "${summary[@]}"
exit $status
