# tests/e2e/lib.sh — TAP helpers for the end-to-end tests (sourced).
#   check NAME CMD...          ok when CMD exits 0
#   expect_exit CODE NAME CMD...   runs CMD, keeps stdout/stderr in $OUT/$ERR,
#                              ok when the exit code is CODE
#   contains NAME FILE TEXT    ok when FILE contains TEXT (fixed string)
#   skip NAME REASON
# Run from the project root; YOTO is the binary under test.
set -u
YOTO=${YOTO:-$PWD/bin/yoto}
PYTHON=${PYTHON:-/usr/bin/python3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
_tap_n=0
_tap_failed=0
T=$(mktemp -d "${YOTO_TEST_OUT:-/tmp}/e2e.XXXXXX")
OUT=$T/stdout
ERR=$T/stderr
trap 'rm -rf "$T"' EXIT

_ok() { _tap_n=$((_tap_n + 1)); echo "ok $_tap_n - $1"; }
_not_ok() {
    _tap_n=$((_tap_n + 1)); _tap_failed=$((_tap_failed + 1))
    echo "not ok $_tap_n - $1"
    shift
    for m in "$@"; do echo "# $m"; done
}
skip() { _tap_n=$((_tap_n + 1)); echo "ok $_tap_n # SKIP $1: $2"; }

check() {
    local name=$1; shift
    if "$@" >"$OUT" 2>"$ERR"; then _ok "$name"; else
        _not_ok "$name" "command: $*" "exit code $?" "stderr: $(head -c 600 "$ERR")"; fi
}

expect_exit() {
    local want=$1 name=$2; shift 2
    "$@" >"$OUT" 2>"$ERR"
    local rc=$?
    if [ "$rc" = "$want" ]; then _ok "$name"; else
        _not_ok "$name" "command: $*" "exit code $rc, expected $want" \
            "stdout: $(head -c 400 "$OUT")" "stderr: $(head -c 600 "$ERR")"; fi
}

contains() {
    local name=$1 file=$2 text=$3
    if grep -qF -- "$text" "$file"; then _ok "$name"; else
        _not_ok "$name" "$(basename "$file") does not contain: $text" "it holds: $(head -c 600 "$file")"; fi
}

done_testing() { echo "1..$_tap_n"; [ $_tap_failed -eq 0 ]; }
