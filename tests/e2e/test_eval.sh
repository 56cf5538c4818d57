# test_eval.sh — beta tables, sample and reconstruction grids, fixed-beta
# baselines (issue #6).
. tests/e2e/lib.sh

tiny_setup || { echo "Bail out! cannot prepare data"; exit 1; }
RUN=$T/run
$MPI 1 "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$RUN" --set train.steps=30 >/dev/null 2>&1 ||
    { echo "Bail out! cannot train"; exit 1; }

# ---- tables: np=2 equals np=1 (z = posterior mean) ---------------------------------
ev() { # ev NP OUT_NAME [args]: eval, keep the CSV
    local np=$1 name=$2
    shift 2
    $MPI "$np" "$YOTO" eval "$RUN" --set eval.z=mean --set eval.max_batches=3 --beta 0.5,2,8,32 "$@" &&
        cp "$RUN/eval/step-000000030.csv" "$T/$name.csv"
}
expect_exit 0 "eval at np=1" ev 1 np1
contains "prints the table" "$OUT" "beta"
contains "names where the tables are" "$OUT" "eval/step-000000030"
expect_exit 0 "eval at np=2" ev 2 np2
check "np=2 table equals np=1 to 1e-5 relative" "$PYTHON" - "$T/np1.csv" "$T/np2.csv" <<'EOF'
import csv, sys
a, b = (list(csv.DictReader(open(p))) for p in sys.argv[1:3])
assert len(a) == len(b) == 8, (len(a), len(b))
for ra, rb in zip(a, b):
    assert ra["split"] == rb["split"] and ra["n_images"] == rb["n_images"], (ra, rb)
    for k in ("reconstruction_loss", "kl_loss", "full_loss"):
        x, y = float(ra[k]), float(rb[k])
        assert abs(x - y) <= 1e-5 * max(abs(x), abs(y)), (k, x, y)
EOF
check "n_images = 3 batches x 16 per split" grep -q "^valid,0.5,1,.*,48$" "$T/np1.csv"
check "the HDF5 table has the compound columns" "$PYTHON" - "$RUN/eval/step-000000030.h5" <<'EOF'
import sys, h5py
f = h5py.File(sys.argv[1], "r")
t = f["train"][()]
assert list(t.dtype.names) == ["beta", "w_rec", "reconstruction_loss", "kl_loss", "full_loss", "n_images"]
assert len(t) == 4 and list(t["beta"]) == [0.5, 2, 8, 32]
for r in t:
    assert abs(r["full_loss"] - (r["w_rec"] * r["reconstruction_loss"] + r["beta"] * r["kl_loss"])) < 1e-9 * r["full_loss"]
assert "valid" in f and f.attrs["step"] == 30
EOF
contains "a Markdown table beside it" "$RUN/eval/step-000000030.md" "| beta | w_rec | reconstruction_loss | kl_loss | full_loss | n_images |"

# ---- eval.z: sample is one draw, mean is deterministic ----------------------------------
evz() { # evz Z NAME [eval args]: the valid split at betas 1 and 8 with eval.z = Z, keep the CSV
    local z=$1 name=$2
    shift 2
    $MPI 1 "$YOTO" eval "${@:-$RUN}" --split valid --beta 1,8 --set eval.z="$z" --set eval.max_batches=1 &&
        cp "$RUN/eval/step-000000030.csv" "$T/z-$name.csv"
}
expect_exit 0 "eval with one sample of z (the original's default)" evz sample s1
contains "it says z is one sample" "$OUT" "z = one sample"
expect_exit 0 "the same again" evz sample s2
expect_exit 0 "eval with z = the posterior mean" evz mean m1
contains "it says z is the mean" "$OUT" "z = posterior mean"
expect_exit 0 "eval of a checkpoint file (z = mean)" evz mean m2 "$RUN/ckpt/step-000000030.h5"
check "one keyed draw of z: the same table twice; the mean: another reconstruction, the same KL" \
    "$PYTHON" - "$T"/z-{s1,s2,m1,m2}.csv <<'EOF2'
import csv, sys
s1, s2, m1, m2 = (list(csv.DictReader(open(p))) for p in sys.argv[1:5])
assert len(s1) == len(m1) == 2, (len(s1), len(m1))
assert s1 == s2, "z = sample: a second eval drew other noise"
assert m1 == m2, "the checkpoint file and its run directory give other tables"
for a, b in zip(s1, m1):
    kl_s, kl_m = float(a["kl_loss"]), float(b["kl_loss"])
    rec_s, rec_m = float(a["reconstruction_loss"]), float(b["reconstruction_loss"])
    assert abs(kl_s - kl_m) <= 1e-6 * kl_m, ("KL depends on z", kl_s, kl_m)
    assert abs(rec_s - rec_m) > 1e-6 * rec_m, ("z = sample reconstructs like the mean", rec_s, rec_m)
EOF2
expect_exit 2 "--beta with a negative value" $MPI 1 "$YOTO" eval "$RUN" --beta 1,-2
contains "names the option" "$ERR" "--beta"
expect_exit 2 "--split that does not exist" $MPI 1 "$YOTO" eval "$RUN" --split nope
contains "names the split" "$ERR" "nope"
expect_exit 2 "a run directory that does not exist" $MPI 1 "$YOTO" eval "$T/none"
contains "names it" "$ERR" "$T/none: no such run directory or checkpoint"

# ---- grids ----------------------------------------------------------------------------------
# grid_check.py decodes a grid: size (a 58 px label margin, cells of 16 + 2 px),
# no blank cell, rows that differ, the Rows text chunk naming each beta
grid() { "$PYTHON" tests/e2e/grid_check.py "$@"; }
expect_exit 0 "sample at 3 betas" $MPI 1 "$YOTO" sample "$RUN" --beta 0.5,8,64 --n 5 --out "$T/s.png"
contains "sample logs each row's beta" "$OUT" "row 1: beta = 8"
check "samples.png: 3 rows x 5 images, none blank, rows differ" grid "$T/s.png" 3 5 16 --betas 0.5,8,64
expect_exit 0 "reconstruct at 3 betas" $MPI 2 "$YOTO" reconstruct "$RUN" --beta 0.5,8,64 --n 4 --out "$T/r.png" --split valid
check "reconstructions.png: inputs + 3 rows x 4 images, none blank, rows differ" grid "$T/r.png" 4 4 16 --betas 0.5,8,64
expect_exit 2 "sample without --out" $MPI 1 "$YOTO" sample "$RUN"
contains "says what is missing" "$ERR" "needs --out FILE.png"
expect_exit 2 "reconstruct --split of no such split" $MPI 2 "$YOTO" reconstruct "$RUN" --out "$T/x.png" --split nope
contains "names the option" "$ERR" "--split nope: the config has no such split"
# a 2-channel model: gray grids of channel 0 (an RGB grid read a third channel
# past the end of the 2-channel batch)
"$PYTHON" - "$T/two.h5" <<'EOF'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "w") as f:
    f["images"] = np.random.default_rng(0).integers(0, 256, size=(64, 8, 8, 2), dtype=np.uint8)
EOF
two=(--set data.file="$T/two.h5" --set 'data.preprocess_train=["value_range(0, 1)"]'
     --set 'data.preprocess_eval=["value_range(0, 1)"]' --set 'model.input_shape=[8, 8, 2]'
     --set model.encoder.num_blocks=1 --set model.decoder.num_blocks=1
     --set 'model.decoder.reshape=[4, 4, 8]' --set model.decoder.channels_out=2
     --set train.steps=2 --set experiment.out_dir="$T/two")
expect_exit 0 "a 2-channel model trains" $MPI 1 "$YOTO" train "$T/tiny.yaml" "${two[@]}"
expect_exit 0 "reconstruct a 2-channel model" $MPI 1 "$YOTO" reconstruct "$T/two" --n 4 --out "$T/two_r.png" --split valid
check "its grid is gray (channel 0): inputs and the 2 betas of eval.betas, 8 x 8 cells" grid "$T/two_r.png" 3 4 8 --gray
expect_exit 0 "sample a 2-channel model" $MPI 1 "$YOTO" sample "$T/two" --n 4 --out "$T/two_s.png"
check "its grid is gray too" grid "$T/two_s.png" 2 4 8 --gray

# ---- a fixed-beta baseline: no conditioning, one weight vector ------------------------------------
fixed=(--set loss_weights.mode=fixed --set model.conditioning.type=none
       --set loss_weights.kl.distribution=fixed --set loss_weights.kl.value=8.0
       --set loss_weights.reconstruction.distribution=fixed --set loss_weights.reconstruction.value=1.0)
expect_exit 0 "a fixed-beta baseline trains" $MPI 1 "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/fixed" --set train.steps=10 "${fixed[@]}"
expect_exit 0 "and evaluates at its own beta by default" $MPI 1 "$YOTO" eval "$T/fixed" --set eval.max_batches=1
check "its table has one row per split, beta 8" test "$(grep -c '^[a-z]*,8,' "$T/fixed/eval/step-000000010.csv")" = 2
check "it has no FiLM parameters" "$PYTHON" -c "import h5py,sys; f=h5py.File('$T/fixed/ckpt/step-000000010.h5','r'); n=[]; f['params'].visit(n.append); sys.exit(any('film' in x for x in n))"

# ---- periodic evaluation during training ---------------------------------------------------------------
expect_exit 0 "eval.every during training" $MPI 2 "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/periodic" --set train.steps=20 --set eval.every=10
check "tables at steps 10 and 20" test -s "$T/periodic/eval/step-000000010.h5" -a -s "$T/periodic/eval/step-000000020.csv"

expect_exit 2 "an eval split that cannot be read stops training before it starts" $MPI 2 "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/badeval" --set eval.every=5 --set 'data.splits[1].dataset=nope'
contains "naming the dataset" "$ERR" "nope"
check "no step was trained" test ! -e "$T/badeval/ckpt"

# ---- analysis/ ---------------------------------------------------------------------------------------
for script in rd_curve compare curves check_rd; do
    expect_exit 0 "analysis/$script.py --help" "$PYTHON" analysis/$script.py --help
done
expect_exit 0 "eval at 4 betas for the analysis scripts" $MPI 1 "$YOTO" eval "$RUN" --beta 0.5,2,8,32 --set eval.max_batches=2
expect_exit 0 "rd_curve.py: YOTO vs a fixed-beta run" "$PYTHON" analysis/rd_curve.py "$RUN" "$T/fixed" --out "$T/rd.png"
check "rd.png is a PNG" "$PYTHON" -c "import sys; sys.exit(open('$T/rd.png','rb').read(8) != b'\\x89PNG\\r\\n\\x1a\\n')"
expect_exit 0 "compare.py: per-beta table" "$PYTHON" analysis/compare.py "$RUN" "$T/fixed" --out "$T/cmp.md"
contains "compare.py: a row for beta 8 with the gap" "$T/cmp.md" "| 8 | "
check "compare.py: the gap is (yoto - fixed) / fixed" "$PYTHON" - "$T/cmp.md" <<'EOF'
import sys
row = [l for l in open(sys.argv[1]) if l.startswith("| 8 |")][0].split("|")
y, f, gap = float(row[2]), float(row[3]), float(row[4].strip().rstrip("%"))
assert abs(gap - 100 * (y - f) / f) < 0.01, (y, f, gap)
EOF
expect_exit 1 "compare.py refuses a YOTO run as a baseline" "$PYTHON" analysis/compare.py "$RUN" "$RUN"
expect_exit 0 "curves.py: training curves" "$PYTHON" analysis/curves.py "$RUN" --out "$T/curves.png"
check "curves.png written" test -s "$T/curves.png"
# check_rd.py on tables made up for the purpose: ordered, then not
fake() { # fake DIR KL1 KL2: a run directory whose table has two betas
    mkdir -p "$1/eval"
    cp "$RUN/config.yaml" "$1/"
    "$PYTHON" - "$1/eval/step-000000001.h5" "$2" "$3" <<'EOF'
import sys, h5py, numpy as np
dt = [("beta", "f8"), ("w_rec", "f8"), ("reconstruction_loss", "f8"), ("kl_loss", "f8"), ("full_loss", "f8"), ("n_images", "i8")]
t = np.array([(1.0, 1.0, 10.0, float(sys.argv[2]), 0, 5), (8.0, 1.0, 12.0, float(sys.argv[3]), 0, 5)], dtype=dt)
with h5py.File(sys.argv[1], "w") as f:
    f["test"] = t
    f.attrs["step"] = 1
EOF
}
fake "$T/good" 5 2
fake "$T/bad" 5 6
expect_exit 0 "check_rd.py: KL down and recon up over beta" "$PYTHON" analysis/check_rd.py "$T/good"
contains "check_rd.py says so" "$OUT" "conditioning works"
expect_exit 1 "check_rd.py: a KL that grows with beta fails" "$PYTHON" analysis/check_rd.py "$T/bad"

# ---- beta -> conditioning, end to end on a real run ----------------------------------------------
# A short real run (400 steps, 2 ranks, w_kl log-uniform in [0.01, 16] so the
# latent carries information) must behave like a family of beta-VAEs: KL
# falls and reconstruction loss rises with beta (check_rd.py on its own
# table; the train split's 307 images, z = mean: the 77 of valid are too few
# for the reconstruction differences of so short a run), KL by a factor > 2
# from beta 0.5 to 16.
cond=(--set experiment.out_dir="$T/cond" --set train.steps=400 --set train.log_every=100
      --set loss_weights.kl.low=0.01 --set loss_weights.kl.high=16 --set 'optimizer.decay_steps=[]')
expect_exit 0 "a 400-step YOTO run (np=2)" $MPI 2 "$YOTO" train "$T/tiny.yaml" "${cond[@]}"
expect_exit 0 "its beta table at 0.5, 4, 16" $MPI 2 "$YOTO" eval "$T/cond" --split train --beta 0.5,4,16 --set eval.z=mean --set eval.max_batches=0
expect_exit 0 "check_rd.py on the real table: KL down, reconstruction up" "$PYTHON" analysis/check_rd.py "$T/cond"
contains "check_rd.py says the conditioning works" "$OUT" "conditioning works"
check "KL at beta 0.5 over KL at beta 16 > 2" "$PYTHON" - "$T/cond/eval/step-000000400.csv" <<'EOF2'
import csv, sys
kl = {float(r["beta"]): float(r["kl_loss"]) for r in csv.DictReader(open(sys.argv[1]))}
assert kl[0.5] > 2 * kl[16], kl
EOF2

done_testing
