# test_mutants.sh — the mutants of `make mutants` stay usable between its
# runs: every tests/mutants/*.patch has its '# mutant:' and '# suites:'
# header, names suites whose tests exist, and still applies to today's
# sources (a dry run; whether the suites kill it is `make mutants`' job).
. tests/e2e/lib.sh

n=0
for m in tests/mutants/*.patch; do
    name=$(basename "$m" .patch)
    n=$((n + 1))
    desc=$(sed -n '/^--- /q; s/^# mutant: *//p' "$m")
    suites=$(sed -n '/^--- /q; s/^# suites: *//p' "$m")
    check "$name has a description and suites" test -n "$desc" -a -n "$suites"
    missing=
    for s in $suites; do
        t=${s##*/}
        case $s in
        e2e/*) [ -f "tests/e2e/$t.sh" ] || missing="$missing $s" ;;
        unit/* | isa/* | avx512/*) [ -f "tests/unit/$t.c" ] || missing="$missing $s" ;;
        mpi/*) [ -f "tests/mpi/$t.c" ] || missing="$missing $s" ;;
        *) missing="$missing $s" ;;
        esac
    done
    check "$name names only existing suites${missing:+ (not:$missing)}" test -z "$missing"
    check "$name applies to today's sources" patch -p1 --fuzz=3 --dry-run -s -i "$m"
done
check "there are mutants" test "$n" -gt 0
done_testing
