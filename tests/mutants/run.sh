#!/usr/bin/env bash
# tests/mutants/run.sh [MUTANT.patch...] — mutation testing (`make mutants`).
#
# Each tests/mutants/*.patch is a one-line change to the sources (a unified
# diff, applied with `patch -p1`) behind a header:
#   # mutant: what the change breaks
#   # suites: the tests/run.sh suites that must catch it (unit/rel/test_x,
#   #         unit/dbl/test_x, avx512/test_x, mpi/rel/np2/test_x, e2e/test_x;
#   #         avx512/ only for code that only bin/yoto-avx512 runs: on a CPU
#   #         without AVX-512 its suites are skipped and such a mutant survives)
#   # equivalent: why no test can catch it (only for a mutant kept on purpose)
# In a scratch copy of the tree (never the working tree; $TMPDIR or
# YOTO_MUTANT_DIR), built once, each mutant is applied with context (fuzz 3:
# small drifts of the sources still apply), the suites' binaries rebuilt, the
# suites run (tests/run.sh), the file restored. A mutant is
#   killed     some listed suite failed
#   survived   every listed suite passed (fine only when marked equivalent)
#   stale      the patch no longer applies, or applies but changes none of
#              the suites' binaries (code another build compiles, e.g. the
#              double build's branch): rewrite it against today's code
#   unbuilt    the mutated tree does not compile: not a useful mutant
# The suites must pass on the unmutated copy first. Exit 0 when every mutant
# is killed or an explained equivalent. YOTO_MUTANT_KEEP=1 keeps the copy;
# logs go to tests/out/mutants/.
set -u
cd "$(dirname "$0")/../.."
root=$PWD
logs=$root/tests/out/mutants
mkdir -p "$logs"
jobs=${YOTO_MUTANT_JOBS:-2}

if [ $# -gt 0 ]; then mutants=("$@"); else mutants=(tests/mutants/*.patch); fi
[ -e "${mutants[0]}" ] || { echo "tests/mutants/run.sh: no mutants" >&2; exit 2; }

base=${YOTO_MUTANT_DIR:-${TMPDIR:-/tmp}}
mkdir -p "$base"
scratch=$(mktemp -d "$base/yoto-mutants.XXXXXX")
[ -n "${YOTO_MUTANT_KEEP:-}" ] || trap 'rm -rf "$scratch"' EXIT

header() { # header FILE KEY: the value of "# KEY: ..." in a mutant's header
    sed -n "/^--- /q; s/^# $2: *//p" "$1" | head -n 1
}

# the make targets a suite runs
targets_of() {
    local s=$1 t=${1##*/}
    case $s in
    unit/*/* | isa/*/*) echo "build/$(cut -d/ -f2 <<<"$s")/tests/$t" ;;
    mpi/*/*/*) echo "build/$(cut -d/ -f2 <<<"$s")/tests/$t" ;;
    avx512/*) echo "build/avx512/tests/$t" ;;
    e2e/*) echo "bin/yoto build/rel/tests/test_data_shards" ;;
    *) echo "tests/mutants/run.sh: unknown suite '$s'" >&2; return 1 ;;
    esac
}

# run_suites LOG SUITE... — tests/run.sh on exactly these suites in the copy
run_suites() {
    local log=$1
    shift
    (cd "$scratch" && YOTO_VARIANTS="rel dbl" YOTO_MPI_VARIANTS="rel dbl" \
        YOTO_TEST_OUT="$scratch/tests/out/scratch" YOTO_TEST_FILTER="$*" \
        tests/run.sh unit isa avx512 mpi e2e) >"$log" 2>&1
}

# ---- the copy: tracked and untracked (not ignored) files, and what is built ----
t_start=$SECONDS
if git rev-parse --show-toplevel >/dev/null 2>&1; then
    git ls-files -z -co --exclude-standard | xargs -0 cp -p --parents -t "$scratch"
else
    tar --exclude=./build --exclude=./bin --exclude=./tests/out --exclude=./runs \
        --exclude=./data -cf - . | tar -xf - -C "$scratch"
fi
for d in build bin; do [ -d "$d" ] && cp -a "$d" "$scratch/"; done
# the copy has no .git: keep the commit the builds were made with
commit=$(cat build/git-commit 2>/dev/null || echo unknown)
mk() { make -C "$scratch" -j"$jobs" NO_DEPS=1 GIT_COMMIT="$commit" "$@"; }
# sums of the built targets, to tell a mutant that changes nothing that runs
sums_of() { (cd "$scratch" && md5sum "$@" 2>/dev/null); }

all_suites=() all_targets=()
for m in "${mutants[@]}"; do
    for s in $(header "$m" suites); do
        all_suites+=("$s")
        all_targets+=($(targets_of "$s")) || exit 2
    done
done
mapfile -t all_suites < <(printf '%s\n' "${all_suites[@]}" | sort -u)
mapfile -t all_targets < <(printf '%s\n' "${all_targets[@]}" | sort -u)
echo "mutants: ${#mutants[@]}, suites: ${#all_suites[@]}, scratch copy: $scratch"
if ! mk "${all_targets[@]}" >"$logs/build.log" 2>&1; then
    echo "tests/mutants/run.sh: the unmutated copy does not build ($logs/build.log)" >&2
    exit 2
fi
if ! run_suites "$logs/baseline.log" "${all_suites[@]}"; then
    echo "tests/mutants/run.sh: the suites fail without a mutant ($logs/baseline.log):" >&2
    grep "FAIL" "$logs/baseline.log" >&2
    exit 2
fi
for s in "${all_suites[@]}"; do # a misspelt suite would let every mutant survive
    grep -q "^$s " "$logs/baseline.log" ||
        { echo "tests/mutants/run.sh: no suite '$s' ran ($logs/baseline.log)" >&2; exit 2; }
done
echo "unmutated copy built and its suites pass ($((SECONDS - t_start)) s)"
echo

killed=0 survived=0 equivalent=0 stale=0 unbuilt=0
bad=()
for m in "${mutants[@]}"; do
    t0=$SECONDS
    name=$(basename "$m" .patch)
    log=$logs/$name.log
    desc=$(header "$m" mutant)
    equiv=$(header "$m" equivalent)
    suites=$(header "$m" suites)
    files=$(sed -n 's/^+++ b\/\([^[:space:]]*\).*/\1/p' "$m")
    targets=()
    for s in $suites; do targets+=($(targets_of "$s")); done
    result=
    if [ -z "$suites" ] || [ -z "$desc" ] || [ -z "$files" ]; then
        result=stale why="no '# mutant:', '# suites:' or diff in the file"
    elif ! patch -p1 --fuzz=3 -d "$scratch" --dry-run -s <"$m" >"$log" 2>&1; then
        result=stale why="does not apply (see $log)"
    else
        for f in $files; do cp -p "$scratch/$f" "$scratch/$f.pristine"; done
        before=$(mk "${targets[@]}" >>"$log" 2>&1; sums_of "${targets[@]}")
        patch -p1 --fuzz=3 -d "$scratch" -s --no-backup-if-mismatch <"$m" >>"$log" 2>&1
        if ! mk "${targets[@]}" >>"$log" 2>&1; then
            result=unbuilt why="does not compile (see $log)"
        elif [ "$(sums_of "${targets[@]}")" = "$before" ]; then
            result=stale why="applies but changes none of the suites' binaries (see $log)"
        elif run_suites "$log.tests" $suites; then
            result=survived why=
        else
            result=killed
            why=$(grep -m 3 "^  FAIL" "$log.tests" | sed 's/^  FAIL  //' | paste -sd ';' | cut -c 1-150)
        fi
        # restore: a fresh mtime, so the next make rebuilds the original
        for f in $files; do cat "$scratch/$f.pristine" >"$scratch/$f" && rm "$scratch/$f.pristine"; done
        touch $(for f in $files; do echo "$scratch/$f"; done)
    fi
    case $result in
    killed) killed=$((killed + 1)) ;;
    survived)
        if [ -n "$equiv" ]; then
            equivalent=$((equivalent + 1)) result="equivalent" why="$equiv"
        else
            survived=$((survived + 1)) bad+=("$name: survived")
        fi ;;
    stale) stale=$((stale + 1)) bad+=("$name: stale") ;;
    unbuilt) unbuilt=$((unbuilt + 1)) bad+=("$name: does not compile") ;;
    esac
    printf '%-10s %4ds  %-34s %s\n' "$result" $((SECONDS - t0)) "$name" "$desc"
    [ -z "$why" ] || printf '%18s%s\n' "" "$why"
done
# the copy's build is the original again (nothing to do for later runs)
echo
echo "${#mutants[@]} mutants: $killed killed, $equivalent equivalent (explained), $survived survived, $stale stale, $unbuilt unbuilt; $((SECONDS - t_start)) s"
for b in "${bad[@]}"; do echo "  $b"; done
[ ${#bad[@]} -eq 0 ]
