# test_scripts.sh — the scripts in jobs/ and analysis/ as a user meets them:
# `--help` and `-h` of every one print a usage line and the script's own help,
# exit 0, and run nothing (no yoto, mpirun, srun or sbatch; no file written),
# and the help is not followed by lines of the script's code; jobs/mpirun.sh
# passes --quiet to Open MPI's mpirun, so a failing rank's message is the last
# word, not Open MPI's box; the analysis plots name runs after their
# directories, label axes with units, draw the validation curves of the
# eval.every tables and keep beta labels apart.
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
tiny_setup || { echo "Bail out! cannot prepare data"; exit 1; }
if command -v mpirun >/dev/null && mpirun --version 2>/dev/null | grep -q "Open MPI"; then
    expect_exit 2 "jobs/mpirun.sh -n 2 with a missing data file: exit 2" jobs/mpirun.sh -n 2 "$T/tiny.yaml" \
        --set data.file="$T/missing.h5" --set experiment.out_dir="$T/run"
    cat "$OUT" "$ERR" >"$T/quiet.txt" # (check overwrites $OUT and $ERR)
    contains "yoto's message is there" "$T/quiet.txt" "$T/missing.h5: cannot open data file"
    check "Open MPI's box is not (--quiet)" eval "! grep -qE 'Primary job|mpirun detected|^-{20}' '$T/quiet.txt'"
    check "yoto's message is the last line" eval "tail -n 1 '$T/quiet.txt' | grep -q '^yoto: '"
else
    skip "mpirun --quiet" "no Open MPI mpirun here"
fi

# ---- analysis/: plots people can publish -------------------------------------------------
# two runs of one config in directories of the same name (x/same, y/same) and a third one,
# each with validation tables at steps 10 and 20 (eval.every)
for d in x/same y/same other; do
    "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/$d" --set train.steps=20 \
        --set eval.every=10 --set eval.max_batches=1 >/dev/null 2>&1
done
"$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/noeval" --set train.steps=10 >/dev/null 2>&1
check "four short runs with eval.every tables" test -s "$T/x/same/eval/step-000000020.h5" -a \
    -s "$T/y/same/eval/step-000000010.h5" -a -s "$T/other/eval/step-000000020.h5" -a -s "$T/noeval/metrics.csv"
cat >"$T/check_plots.py" <<'EOF'
import sys
sys.path.insert(0, "analysis")
import matplotlib
matplotlib.use("Agg")
import h5py, numpy as np
import curves, rd_curve, yotoruns
T, what = sys.argv[1], sys.argv[2]
a, b, c = f"{T}/x/same", f"{T}/y/same", f"{T}/other"

def overlap(p, q):
    return p.x0 < q.x1 and q.x0 < p.x1 and p.y0 < q.y1 and q.y0 < p.y1

if what == "labels":  # runs are named after their directories, as far up as it takes
    labels = [r.label for r in yotoruns.open_runs([a, b, c])]
    assert labels == ["x/same (YOTO)", "y/same (YOTO)", "other (YOTO)"], labels
elif what == "history":  # the validation curves are the eval tables, step by step
    steps, betas, h = yotoruns.Run(a).history("valid")
    assert list(steps) == [10, 20] and list(betas) == [1.0, 8.0], (steps, betas)
    for i, s in enumerate(steps):
        for row in h5py.File(f"{a}/eval/step-{s:09d}.h5", "r")["valid"][()]:
            j = list(betas).index(row["beta"])
            for k in ("full_loss", "kl_loss", "reconstruction_loss"):
                assert h[k][i, j] == row[k], (s, row["beta"], k)
elif what == "rd_curve":
    fig = rd_curve.figure([a, b])
    legend = [t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts()]
    assert legend.count("x/same (YOTO), step 20") == 2 and legend.count("y/same (YOTO), step 20") == 2, legend
    for ax in fig.axes:
        assert "nats per image" in ax.get_ylabel(), ax.get_ylabel()
    assert "nats per image" in fig.axes[1].get_xlabel()
    r = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(r) for t in fig.axes[1].texts]
    assert len(boxes) >= 2, "no beta labels"
    assert not any(overlap(p, q) for i, p in enumerate(boxes) for q in boxes[:i]), "beta labels overlap"
elif what == "place_labels":  # crowded points: the labels drawn overlap nothing, some are left out
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(3, 3))
    pts = np.random.default_rng(0).uniform(0, 1, (60, 2))
    ax.plot(pts[:, 0], pts[:, 1], "o", markersize=3)
    drawn = yotoruns.place_labels(ax, pts, [f"{k}" for k in range(60)])
    r = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(r) for t in drawn]
    assert 0 < len(boxes) < 60, len(boxes)
    assert not any(overlap(p, q) for i, p in enumerate(boxes) for q in boxes[:i]), "labels overlap"
    disp = ax.transData.transform(pts)
    for bb in boxes:
        assert not any(bb.x0 < x < bb.x1 and bb.y0 < y < bb.y1 for x, y in disp), "a label covers a point"
    fig, ax = plt.subplots(figsize=(3, 3))
    ax.set_xlim(0, 1), ax.set_ylim(0, 1)
    assert len(yotoruns.place_labels(ax, [(0.2, 0.2), (0.5, 0.5), (0.8, 0.3)], ["a", "b", "c"])) == 3
elif what == "curves":
    fig = curves.figure([a, b])
    for ax in fig.axes:
        assert ax.get_ylabel() and ax.get_xlabel() == "step", (ax.get_title(), ax.get_ylabel())
    val = [ax for ax in fig.axes if ax.get_title().startswith("validation")]
    assert len(val) == 2, [ax.get_title() for ax in fig.axes]
    for ax in val:
        assert len(ax.lines) == 4, len(ax.lines)  # 2 betas x 2 runs
        for line in ax.lines:
            assert list(line.get_xdata()) == [10, 20], line.get_xdata()
    assert "nats per image" in val[0].get_ylabel()
    texts = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert texts == ["\u03b2 = 1", "\u03b2 = 8", "x/same", "y/same"], texts
    assert "x/same (YOTO) to step 20" in fig._suptitle.get_text(), fig._suptitle.get_text()
    fig = curves.figure([f"{T}/noeval"])  # no tables: the panels say so
    assert any("no eval tables" in t.get_text() for ax in fig.axes for t in ax.texts)
print("ok")
EOF
check "yotoruns: runs are named after their directories (x/same, y/same, other)" "$PYTHON" "$T/check_plots.py" "$T" labels
check "yotoruns: validation history = the eval tables read with h5py" "$PYTHON" "$T/check_plots.py" "$T" history
check "rd_curve.py: legends name the run directories and the step; units; beta labels do not overlap" \
    "$PYTHON" "$T/check_plots.py" "$T" rd_curve
check "place_labels: crowded labels overlap nothing; free ones are all drawn" "$PYTHON" "$T/check_plots.py" "$T" place_labels
check "curves.py: every panel has a y label; validation curves over the eval steps; legends" \
    "$PYTHON" "$T/check_plots.py" "$T" curves
expect_exit 0 "analysis/curves.py RUN RUN --out" "$PYTHON" analysis/curves.py "$T/x/same" "$T/y/same" --out "$T/c.png"
expect_exit 0 "analysis/rd_curve.py RUN RUN --out" "$PYTHON" analysis/rd_curve.py "$T/x/same" "$T/other" --out "$T/rd.png"
check "both are PNGs" "$PYTHON" -c "import sys; assert all(open(f, 'rb').read(8) == b'\x89PNG\r\n\x1a\n' for f in sys.argv[1:])" \
    "$T/c.png" "$T/rd.png"
expect_exit 0 "analysis/yotoruns.py lists the runs" "$PYTHON" analysis/yotoruns.py "$T/x/same" "$T/y/same" "$T/noeval"
contains "with their eval steps" "$OUT" "x/same (YOTO), config tiny; eval tables at steps [10, 20]"
contains "and none" "$OUT" "/noeval: noeval (YOTO), config tiny; eval tables at steps none"
done_testing
