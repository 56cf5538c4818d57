#!/usr/bin/env bash
# test_disentanglement.sh — the disentanglement-vs-beta study command
# (jobs/disentanglement.sh, issue #16) in miniature: procedural Shapes3D data
# of a few hundred images, one YOTO and two fixed-beta models of the Shapes3D
# architecture trained 4 steps, evaluated with the metric columns and
# encoded; the report's tables have their columns and the CSVs' numbers, it
# lists the active codes from the encode files, the figure is a PNG of six
# panels, a second run trains, evaluates and encodes nothing.
. tests/e2e/lib.sh

R=$T/dis
study() {
    jobs/disentanglement.sh --steps 4 --train-size 256 --metrics-size 200 --betas "1 16" \
        --eval-betas "1 4 16" --set train.batch_size=8 --out "$R" "$@"
}
expect_exit 2 "a bad --steps is refused" jobs/disentanglement.sh --steps 0
contains "naming the option" "$ERR" "--steps must be a positive integer"
expect_exit 2 "a bad beta is refused" jobs/disentanglement.sh --betas "1 x"

expect_exit 0 "the study in miniature (1 YOTO + 2 fixed models, 4 steps)" study
for r in yoto-s1 fixed-b1-s1 fixed-b16-s1; do
    check "$r trained to its last step" test "$(cat "$R/$r/ckpt/latest")" = step-000000004.h5
    check "$r evaluated" test -s "$R/tables/$r.csv"
    check "$r encoded" test -s "$R/codes/$r.h5"
done
check "the data: 256 training images, 200 others for the metrics, with their labels" "$PYTHON" - "$R" <<'EOF'
import sys, h5py
R = sys.argv[1]
for name, n in (("train", 256), ("metrics", 200)):
    f = h5py.File(f"{R}/data/{name}.h5", "r")
    assert f["images"].shape == (n, 64, 64, 3) and f["labels"].shape == (n, 6), (name, f["images"].shape)
EOF
check "the tables: the YOTO model at 3 betas, each fixed model at its own, metric columns filled" "$PYTHON" - "$R" <<'EOF'
import csv, sys
R = sys.argv[1]
def rows(run):
    return list(csv.DictReader(l for l in open(f"{R}/tables/{run}.csv") if not l.startswith("#")))
for run, betas in (("yoto-s1", ["1", "4", "16"]), ("fixed-b1-s1", ["1"]), ("fixed-b16-s1", ["16"])):
    t = rows(run)
    assert [r["beta"] for r in t] == betas, (run, t)
    for r in t:
        assert (r["split"], r["z"], r["n_images"]) == ("metrics", "mean", "200"), r
        for k in ("mig", "sap", "factorvae", "dci_disentanglement", "dci_completeness"):
            assert 0 <= float(r[k]) <= 1, (run, k, r[k])
EOF
md=$R/disentanglement.md
contains "the report: the YOTO table's columns" "$md" "| beta | MIG | SAP | FactorVAE score | DCI disentanglement | DCI completeness | KL | recon |"
contains "the fixed models' table" "$md" "| beta | model | MIG | SAP | FactorVAE score | DCI disentanglement | DCI completeness | KL | recon |"
contains "the compute" "$md" "| run | training | evaluation | encoding |"
check "the active codes: per beta from the encode file's metrics, and at each fixed beta per model" "$PYTHON" - "$R" <<'EOF'
import re, sys, h5py
R = sys.argv[1]
md = open(f"{R}/disentanglement.md").read().split("## Active codes")[1].split("## Compute")[0]
m = h5py.File(f"{R}/codes/yoto-s1.h5", "r")["metrics"][()]
want = ", ".join(f"{b:g}: {n}" for b, n in zip(m["beta"], m["active_dims"]))
assert f"YOTO active codes per beta: {want}" in md, (want, md)
for beta in ("1", "16"):
    part = md.split(f"beta {beta}:")[1].split("beta ")[0]
    n = int(h5py.File(f"{R}/codes/fixed-b{beta}-s1.h5", "r")["metrics"][()]["active_dims"][0])
    assert re.search(rf"- fixed, {n} active", part), (beta, n, part)
    assert "- YOTO, " in part, part
EOF
check "the report's numbers are the tables' (read independently)" "$PYTHON" - "$R" <<'EOF'
import csv, sys
R = sys.argv[1]
md = open(f"{R}/disentanglement.md").read()
cols = ["mig", "sap", "factorvae", "dci_disentanglement", "dci_completeness"]
def row(run, beta):
    return [r for r in csv.DictReader(l for l in open(f"{R}/tables/{run}.csv") if not l.startswith("#"))
            if r["beta"] == beta][0]
yoto = md.split("## The YOTO model")[1].split("## Fixed")[0]
for beta in ("1", "4", "16"):
    line = [l for l in yoto.splitlines() if l.startswith(f"| {beta} |")]
    assert len(line) == 1, (beta, yoto)
    cells = [c.strip() for c in line[0].split("|")[2:-1]]
    want = row("yoto-s1", beta)
    for c, k in zip(cells, cols):
        assert abs(float(c) - float(want[k])) <= 5e-4, (beta, k, c, want[k])
    assert abs(float(cells[5]) - float(want["kl_loss"])) <= 5e-3, (cells[5], want["kl_loss"])
fixed = md.split("## Fixed")[1]
line = [l for l in fixed.splitlines() if l.startswith("| 16 | fixed |")][0]
cells = [c.strip() for c in line.split("|")[3:-1]]
want = row("fixed-b16-s1", "16")
for c, k in zip(cells, cols):
    assert abs(float(c) - float(want[k])) <= 5e-4, (k, c, want[k])
EOF
check "the figure is a PNG" "$PYTHON" -c 'import sys, matplotlib.image as m; a = m.imread(sys.argv[1]); assert a.shape[0] > 400 and a.shape[1] > 800 and a.std() > 0.01, a.shape' "$R/disentanglement.png"
check "of six panels: each metric and the KL against beta, the YOTO curve and the fixed points" "$PYTHON" - "$R" <<'EOF'
import sys
sys.path.insert(0, "analysis")
import disentanglement as d
yoto, fixed, _ = d.collect(sys.argv[1])
res = d.summarise(yoto, fixed)
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
d.plot(sys.argv[1] + "/again.png", res, "t")
fig = plt.gcf()
assert len(fig.axes) == 6, len(fig.axes)
titles = [ax.get_title() for ax in fig.axes]
assert titles == ["MIG", "SAP", "FactorVAE score", "DCI disentanglement", "DCI completeness", "KL"], titles
for ax in fig.axes:
    assert ax.get_xscale() == "log" and "β" in ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
    xs = sorted({tuple(l.get_xdata()) for l in ax.lines})  # errorbar: the caps are lines too
    assert xs == [(1.0, 4.0, 16.0), (1.0, 16.0)], (ax.get_title(), xs)
EOF

expect_exit 0 "run again: resumable" study
check "nothing is trained, evaluated or encoded again" test "$(grep -c '^== train\|^== eval\|^== encode\|^== data' "$OUT")" = 0
expect_exit 0 "--report-only" jobs/disentanglement.sh --report-only --steps 4 --out "$R"
contains "prints the report" "$OUT" "## The YOTO model at every beta"

done_testing
