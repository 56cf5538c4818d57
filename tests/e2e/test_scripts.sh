# test_scripts.sh — the scripts in jobs/ and analysis/ as a user meets them:
# `--help` and `-h` of every one print a usage line and the script's own help,
# exit 0, and run nothing (no yoto, mpirun, srun or sbatch; no file written),
# and the help is not followed by lines of the script's code; jobs/mpirun.sh
# passes --quiet to Open MPI's mpirun, so a failing rank's message is the last
# word, not Open MPI's box.
. tests/e2e/lib.sh
export PYTHONDONTWRITEBYTECODE=1

# A copy of the scripts beside a stub bin/yoto, and stub launchers first in
# PATH: whatever a script runs leaves a line in $CALLS.
R=$T/repo
CALLS=$T/calls
mkdir -p "$R/bin" "$T/stubs" "$T/work"
cp -r jobs analysis "$R/"
for s in yoto mpirun mpiexec srun sbatch scontrol squeue; do
    printf '#!/bin/sh\necho "%s $*" >>"%s"\nexit 0\n' "$s" "$CALLS" >"$T/stubs/$s"
    chmod +x "$T/stubs/$s"
done
cp "$T/stubs/yoto" "$R/bin/yoto"

# no_code_in HELP SCRIPT: no line of the script's code (8+ characters, not a
# comment, not in a Python module's docstring) appears as a line of its help
no_code_in() {
    "$PYTHON" - "$1" "$2" <<'EOF'
import ast, sys
help_lines = {l.strip() for l in open(sys.argv[1])}
src = open(sys.argv[2]).read().splitlines()
doc = set()
if sys.argv[2].endswith(".py"):
    body = ast.parse("\n".join(src)).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        doc = set(range(body[0].lineno - 1, body[0].end_lineno))
code = [l.strip() for i, l in enumerate(src) if i not in doc and l.strip() and not l.lstrip().startswith("#")]
bad = [l for l in code if len(l) >= 8 and l in help_lines]
if bad:
    sys.exit("help shows code: " + " | ".join(bad[:3]))
EOF
}

scripts=()
for f in jobs/*; do scripts+=("$f"); done
for f in analysis/*.py; do
    # modules without a main (imported by the scripts) are not commands
    grep -q '__name__ == "__main__"' "$f" && scripts+=("$f")
done
for s in "${scripts[@]}"; do
    case $s in
    *.py) run=("$PYTHON" "$R/$s") ;;
    *) run=(bash "$R/$s") ;;
    esac
    for h in --help -h; do
        touch "$T/marker"
        sleep 0.01
        rm -f "$CALLS"
        (cd "$T/work" && PATH=$T/stubs:$PATH YOTO=$R/bin/yoto MPIRUN=mpirun SLURM_JOB_ID=1 \
            SLURM_ARRAY_TASK_ID=0 "${run[@]}" "$h" >"$T/help.out" 2>"$T/help.err")
        rc=$?
        check "$s $h: exit 0 (got $rc)" test "$rc" = 0
        check "$s $h: a usage line" grep -qiE '^ *usage:' "$T/help.out"
        check "$s $h: the help names the script" grep -qF "$(basename "$s")" "$T/help.out"
        check "$s $h: no script code in it" no_code_in "$T/help.out" "$s"
        check "$s $h: nothing on stderr" test ! -s "$T/help.err"
        check "$s $h: ran nothing" test ! -e "$CALLS"
        check "$s $h: wrote nothing" test -z "$(find "$T/work" "$R" -newer "$T/marker" -print -quit)"
    done
done
check "every script was looked at (jobs/ and analysis/: ${#scripts[@]})" test "${#scripts[@]}" -ge 10

# ---- jobs/mpirun.sh and mpirun --quiet ---------------------------------------------------
# with a stub mpirun: --quiet only when mpirun says it is Open MPI
printf '#!/bin/sh\n[ "$1" = --version ] && { echo "%s"; exit 0; }\necho "mpirun $*" >>"%s"\nexit 0\n' \
    "mpirun (Open MPI) 4.1.4" "$CALLS" >"$T/stubs/ompi"
printf '#!/bin/sh\n[ "$1" = --version ] && { echo "HYDRA build details:"; exit 0; }\necho "mpirun $*" >>"%s"\nexit 0\n' \
    "$CALLS" >"$T/stubs/hydra"
chmod +x "$T/stubs/ompi" "$T/stubs/hydra"
rm -f "$CALLS"
check "jobs/mpirun.sh with (a stub of) Open MPI's mpirun" env MPIRUN="$T/stubs/ompi" YOTO="$R/bin/yoto" jobs/mpirun.sh -n 3 c.yaml
check "passes --quiet, -np 3 and the config" grep -qE '^mpirun -np 3 .*--quiet .*yoto train c.yaml' "$CALLS"
rm -f "$CALLS"
check "jobs/mpirun.sh with (a stub of) another MPI's mpirun" env MPIRUN="$T/stubs/hydra" YOTO="$R/bin/yoto" jobs/mpirun.sh -n 3 c.yaml
check "passes no --quiet there" eval "grep -q 'yoto train c.yaml' '$CALLS' && ! grep -q -- --quiet '$CALLS'"

# the real mpirun (Open MPI 4.1): a rank that fails leaves yoto's message, no box after it
if command -v mpirun >/dev/null && mpirun --version 2>/dev/null | grep -q "Open MPI"; then
    tiny_setup || { echo "Bail out! cannot prepare data"; exit 1; }
    expect_exit 2 "jobs/mpirun.sh -n 2 with a missing data file: exit 2" jobs/mpirun.sh -n 2 "$T/tiny.yaml" \
        --set data.file="$T/missing.h5" --set experiment.out_dir="$T/run"
    cat "$OUT" "$ERR" >"$T/quiet.txt" # (check overwrites $OUT and $ERR)
    contains "yoto's message is there" "$T/quiet.txt" "$T/missing.h5: cannot open data file"
    check "Open MPI's box is not (--quiet)" eval "! grep -qE 'Primary job|mpirun detected|^-{20}' '$T/quiet.txt'"
    check "yoto's message is the last line" eval "tail -n 1 '$T/quiet.txt' | grep -q '^yoto: '"
else
    skip "mpirun --quiet" "no Open MPI mpirun here"
fi
done_testing
