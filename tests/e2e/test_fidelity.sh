#!/usr/bin/env bash
# test_fidelity.sh — the YOTO-vs-fixed-beta study command (jobs/fidelity.sh)
# in miniature: two betas, two seeds, 20 steps, a few eval batches, on the
# real Fashion-MNIST; the table has its columns, the figure is a PNG, a
# second run skips everything, and a gated variant joins the same results.
. tests/e2e/lib.sh

FM=/usr/share/datasets/fashion-mnist
if [ ! -d "$FM" ]; then
    skip "fidelity smoke test" "no Fashion-MNIST at $FM (Debian package dataset-fashion-mnist)"
    done_testing
    exit
fi
"$YOTO" prepare fashion-mnist "$FM" "$T/fm.h5" >/dev/null || { echo "Bail out! prepare failed"; exit 1; }
R=$T/fid
study() { jobs/fidelity.sh --betas "1 8" --seeds "1 2" --steps 20 --eval-max-batches 2 --ranks 1 --data "$T/fm.h5" --out "$R" "$@"; }

expect_exit 0 "jobs/fidelity.sh --help prints its usage and runs nothing" jobs/fidelity.sh --help
contains "usage names the study" "$OUT" "does ONE YOTO model match the per-β models"
expect_exit 2 "a bad beta is refused" jobs/fidelity.sh --betas "1 x"

expect_exit 0 "the study in miniature (2 betas x 2 seeds, 20 steps)" study
for r in yoto-film-s1 yoto-film-s2 fixed-b1-s1 fixed-b8-s2; do
    check "$r trained to its last step" test "$(cat "$R/$r/ckpt/latest")" = step-000000020.h5
    check "$r evaluated with z = mean and z = sample" test -s "$R/tables/$r.mean.csv" -a -s "$R/tables/$r.sample.csv"
done
check "the report has the table's columns" grep -q "| beta | fixed | YOTO | gap % | SE % | > 2 SE |" "$R/fidelity.md"
check "a row per beta with mean ± std over 2 seeds" grep -qE '^\| 8 \| [0-9.]+ ± [0-9.]+ \(n=2\) \| [0-9.]+ ± [0-9.]+ \(n=2\) \| [-+][0-9.]+ \| [0-9.]+ \|' "$R/fidelity.md"
check "both z = mean and z = sample" grep -q "## film, z = sample" "$R/fidelity.md"
contains "a verdict" "$R/fidelity.md" "goal"
contains "the compute of YOTO against the baselines" "$R/fidelity.md" "one model for all 2 betas costs"
check "the figure is a PNG" "$PYTHON" -c 'import sys, matplotlib.image as m; a = m.imread(sys.argv[1]); assert a.shape[0] > 300 and a.shape[1] > 600 and a.std() > 0.01' "$R/fidelity.png"
check "the gap is recomputed from the tables (an independent reading)" "$PYTHON" - "$R" <<'EOF'
import csv, glob, re, sys
import numpy as np
R = sys.argv[1]
def full(run, beta):
    rows = [r for r in csv.DictReader(l for l in open(f"{R}/tables/{run}.mean.csv") if not l.startswith("#"))
            if r["split"] == "test" and abs(float(r["beta"]) - beta) < 1e-9]
    return float(rows[0]["full_loss"])
f = np.mean([full(f"fixed-b8-s{s}", 8) for s in (1, 2)])
y = np.mean([full(f"yoto-film-s{s}", 8) for s in (1, 2)])
gap = 100 * (y - f) / f
md = open(f"{R}/fidelity.md").read().split("## film, z = sample")[0]
row = [l for l in md.splitlines() if l.startswith("| 8 |")][0]
assert abs(float(row.split("|")[4]) - gap) < 0.006, (row, gap)
EOF

expect_exit 0 "run again: resumable" study
check "nothing is trained or evaluated again" test "$(grep -c '^== train\|^== eval' "$OUT")" = 0
expect_exit 0 "a gated variant joins the same results" study --name gated --yoto-set model.conditioning.type=gated --seeds 1
contains "it trained only the gated YOTO model" "$OUT" "== train $R/yoto-gated-s1"
check "and is reported beside film" grep -q "## gated, z = mean" "$R/fidelity.md"

expect_exit 0 "--yoto-steps: a YOTO variant trained longer than the baselines" study --name long --yoto-steps 30 --seeds 1
contains "it trained only that YOTO model" "$OUT" "== train $R/yoto-long-s1"
check "to its 30 steps" test "$(cat "$R/yoto-long-s1/ckpt/latest")" = step-000000030.h5
contains "and the report counts its steps against the baselines'" "$R/fidelity.md" "1 run(s) of 30 steps"
contains "30 / (2 x 20) of their steps" "$R/fidelity.md" "and 75 % of their steps"
expect_exit 0 "--trend: one variant's gap in several results (training lengths)" "$PYTHON" analysis/fidelity.py "$R" "$R" --trend "$T/trend.png" --z sample
check "the trend figure is a PNG" "$PYTHON" -c 'import sys, matplotlib.image as m; a = m.imread(sys.argv[1]); assert a.shape[0] > 300 and a.std() > 0.01' "$T/trend.png"
expect_exit 2 "several results without --trend: a usage error" "$PYTHON" analysis/fidelity.py "$R" "$R"
expect_exit 0 "--trend: one variant per results directory, with labels" "$PYTHON" analysis/fidelity.py "$R" "$R" \
    --variant film,long --labels "20 steps;YOTO 30 steps" --trend "$T/trend2.png"
check "that figure is a PNG" test -s "$T/trend2.png"
expect_exit 2 "--trend: a label per directory, or a usage error" "$PYTHON" analysis/fidelity.py "$R" "$R" \
    --labels "only one" --trend "$T/trend3.png"
contains "which says how many it needs" "$ERR" "2 results directories need one variant (or 2) and 2 labels"
expect_exit 1 "--trend: a variant a directory does not have names what it has" "$PYTHON" analysis/fidelity.py "$R" \
    --variant nosuch --trend "$T/trend4.png"
contains "the message lists the variants" "$ERR" "no YOTO variant 'nosuch' (has "
expect_exit 2 "--labels without --trend: a usage error" "$PYTHON" analysis/fidelity.py "$R" --labels x

done_testing
