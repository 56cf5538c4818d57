# test_eval.sh — beta tables, sample and reconstruction grids, fixed-beta
# baselines (issue #6); merged, self-describing tables, --json, readable grids (issue #12);
# disentanglement metric columns and eval.metrics (issue #16).
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
export PYTHONPATH=$PWD/tests/e2e # evalcheck.py: the CSV reader, the PNG checks
expect_exit 0 "eval at np=1" ev 1 np1
contains "prints the table" "$OUT" "beta"
contains "names where the tables are" "$OUT" "eval/step-000000030"
expect_exit 0 "eval at np=2" ev 2 np2
check "np=2 table equals np=1 to 1e-5 relative" "$PYTHON" - "$T/np1.csv" "$T/np2.csv" <<'EOF'
import sys, evalcheck
a, b = (evalcheck.rows(p) for p in sys.argv[1:3])
assert len(a) == len(b) == 8, (len(a), len(b))
for ra, rb in zip(a, b):
    assert ra["split"] == rb["split"] and ra["n_images"] == rb["n_images"], (ra, rb)
    for k in ("reconstruction_loss", "kl_loss", "full_loss"):
        x, y = float(ra[k]), float(rb[k])
        assert abs(x - y) <= 1e-5 * max(abs(x), abs(y)), (k, x, y)
EOF
check "n_images = 3 batches x 16 per split" grep -q "^valid,0.5,1,mean,48," "$T/np1.csv"
check "the HDF5 table has the compound columns" "$PYTHON" - "$RUN/eval/step-000000030.h5" <<'EOF'
import sys, h5py
f = h5py.File(sys.argv[1], "r")
t = f["train"][()]
assert list(t.dtype.names) == ["beta", "w_rec", "z", "n_images", "reconstruction_loss", "kl_loss",
                               "full_loss", "mig", "sap", "factorvae", "dci_disentanglement",
                               "dci_completeness", "max_batches", "batch_size", "seed"], t.dtype.names
assert len(t) == 4 and list(t["beta"]) == [0.5, 2, 8, 32]
for r in t:
    assert abs(r["full_loss"] - (r["w_rec"] * r["reconstruction_loss"] + r["beta"] * r["kl_loss"])) < 1e-9 * r["full_loss"]
assert "valid" in f and f.attrs["step"] == 30
EOF
contains "a Markdown table beside it" "$RUN/eval/step-000000030.md" "| beta | w_rec | z | n_images | reconstruction_loss | kl_loss | full_loss | mig | sap | factorvae | dci_disentanglement | dci_completeness | max_batches | batch_size | seed |"

# ---- every table records what made it ----------------------------------------------------------
check "the file and each table say what made them (h5py)" "$PYTHON" - "$RUN" "$DATA" "$("$YOTO" --version)" <<'EOF'
import sys, h5py
run, data, version = sys.argv[1:4]
f = h5py.File(run + "/eval/step-000000030.h5", "r")
a = f.attrs
assert a["format"] == "yoto-eval" and a["format_version"] == 2 and a["step"] == 30, dict(a)
assert a["checkpoint"] == run + "/ckpt/step-000000030.h5", a["checkpoint"]
# the parameters evaluated: the checksum the checkpoint itself records
ck = h5py.File(run + "/ckpt/step-000000030.h5", "r").attrs["param_checksum"]
assert a["param_checksum"] == ck, (a["param_checksum"], ck)
assert a["written_by"] == "yoto eval", dict(a)
assert version.startswith("yoto %s (git %s," % (a["yoto_version"], a["git_commit"])), (dict(a), version)
assert a["written"][:2] == "20", dict(a)
# images: 384 rows; valid = ":20%" (rows 0..76), train = "20%:" (77..383): 76.8 rounds to 77
for split, rng, first, n in (("valid", ":20%", 0, 77), ("train", "20%:", 77, 307)):
    t = f[split]
    assert t.attrs["data_file"] == data and t.attrs["dataset"] == "images", dict(t.attrs)
    assert (t.attrs["range"], t.attrs["first_row"], t.attrs["split_rows"]) == (rng, first, n), dict(t.attrs)
    r = t[()]
    assert set(r["z"]) == {b"mean"} and set(r["n_images"]) == {48}, r
    assert set(r["max_batches"]) == {3} and set(r["batch_size"]) == {16} and set(r["seed"]) == {5}, r
EOF
check "the CSV's header lines say the same" "$PYTHON" - "$RUN" <<'EOF'
import sys, h5py, evalcheck
run = sys.argv[1]
m = evalcheck.meta(run + "/eval/step-000000030.csv")
a = h5py.File(run + "/eval/step-000000030.h5", "r").attrs
for k in ("step", "param_checksum", "checkpoint", "written_by", "yoto_version", "git_commit"):
    assert m[k] == str(a[k]), (k, m[k], a[k])
assert m["format"] == "yoto-eval 2", m
assert m["table valid"].startswith("data_file=") and "range=:20% first_row=0 split_rows=77" in m["table valid"], m
EOF
contains "and the Markdown" "$RUN/eval/step-000000030.md" "- evaluated: $RUN/ckpt/step-000000030.h5 (step 30, param_checksum "

# ---- eval --beta adds rows; the earlier ones stay ---------------------------------------------
expect_exit 0 "eval --beta 3 (the same settings)" $MPI 1 "$YOTO" eval "$RUN" --beta 3 --set eval.z=mean --set eval.max_batches=3
contains "says how many rows it kept" "$OUT" "(10 rows, 8 kept from earlier evaluations)"
cp "$RUN/eval/step-000000030.csv" "$T/plus3.csv"
check "beta 3 is added to both tables, sorted; the other rows are unchanged" "$PYTHON" - "$T/np2.csv" "$T/plus3.csv" <<'EOF'
import sys, evalcheck
before, after = (evalcheck.rows(p) for p in sys.argv[1:3])
for split in ("train", "valid"):
    assert [r["beta"] for r in after if r["split"] == split] == ["0.5", "2", "3", "8", "32"], after
old = {(r["split"], r["beta"]): r for r in before}
for r in after:
    if r["beta"] != "3":
        assert r == old[(r["split"], r["beta"])], (r, old[(r["split"], r["beta"])])
EOF
expect_exit 0 "eval --beta 3 again (another seed) on one split" $MPI 1 "$YOTO" eval "$RUN" --beta 3 --split valid --set eval.z=mean --set eval.max_batches=3 --set experiment.seed=99
check "replaces only the row of beta 3 in that split" "$PYTHON" - "$T/plus3.csv" "$RUN/eval/step-000000030.csv" <<'EOF'
import sys, evalcheck
before, after = (evalcheck.rows(p) for p in sys.argv[1:3])
assert len(after) == len(before) == 10, len(after)
for b, a in zip(before, after):
    if (a["split"], a["beta"]) == ("valid", "3"):
        assert a["seed"] == "99" and b["seed"] == "5", (a, b)
        assert a["kl_loss"] == b["kl_loss"], (a, b)  # z = mean: the same numbers
    else:
        assert a == b, (a, b)
EOF
expect_exit 0 "eval --beta 3 with other settings (z = sample, 1 batch)" $MPI 2 "$YOTO" eval "$RUN" --beta 3 --split valid --set eval.max_batches=1
check "adds a row beside the others (the key: beta, w_rec, z, n_images)" "$PYTHON" - "$RUN/eval/step-000000030.h5" <<'EOF'
import sys, h5py
t = h5py.File(sys.argv[1], "r")["valid"][()]
keys = [(r["beta"], r["z"], r["n_images"]) for r in t]
assert keys == [(0.5, b"mean", 48), (2, b"mean", 48), (3, b"mean", 48), (3, b"sample", 16),
                (8, b"mean", 48), (32, b"mean", 48)], keys
EOF
cp "$RUN/eval/step-000000030.csv" "$T/sample3.csv"
# z = sample: the noise is keyed by (seed, beta, image), not by the place in the list
expect_exit 0 "eval --beta 0.5,3 (z = sample, 1 batch)" $MPI 2 "$YOTO" eval "$RUN" --beta 0.5,3 --split valid --set eval.max_batches=1
check "beta 3 sampled within another list gives the same row" "$PYTHON" - "$T/sample3.csv" "$RUN/eval/step-000000030.csv" <<'EOF'
import sys, evalcheck
pick = lambda p: [r for r in evalcheck.rows(p) if (r["split"], r["beta"], r["z"]) == ("valid", "3", "sample")]
a, b = pick(sys.argv[1]), pick(sys.argv[2])
assert len(a) == len(b) == 1 and a == b, (a, b)
EOF

# ---- --json: the step's merged tables as one object on stdout ------------------------------------
expect_exit 0 "eval --json" $MPI 2 "$YOTO" eval "$RUN" --json --beta 2 --set eval.z=mean --set eval.max_batches=3
cp "$OUT" "$T/eval.json"
check "stdout is one JSON object that matches the CSV row for row" "$PYTHON" - "$T/eval.json" "$RUN" <<'EOF'
import sys, json, h5py, evalcheck
j = json.load(open(sys.argv[1]))
run = sys.argv[2]
csv_rows = evalcheck.rows(run + "/eval/step-000000030.csv")
assert j["format"] == "yoto-eval" and j["format_version"] == 2 and j["step"] == 30, j
assert j["param_checksum"] == h5py.File(run + "/eval/step-000000030.h5", "r").attrs["param_checksum"]
assert j["files"]["csv"] == run + "/eval/step-000000030.csv", j["files"]
assert sorted(j["tables"]) == ["train", "valid"], j["tables"].keys()
assert (j["tables"]["train"]["range"], j["tables"]["train"]["first_row"]) == ("20%:", 77), j["tables"]["train"]
rows = [dict(r, split=s) for s, t in j["tables"].items() for r in t["rows"]]
assert len(rows) == len(csv_rows) == 12, (len(rows), len(csv_rows))
for r, c in zip(rows, csv_rows):
    assert set(c) == set(r), (sorted(c), sorted(r))
    for k, v in c.items():
        if r[k] is None:  # a non-finite number
            assert v in ("nan", "inf", "-inf"), (k, v)
        elif isinstance(r[k], float):
            assert abs(r[k] - float(v)) <= 1e-9 * abs(r[k]), (k, r[k], v)
        else:
            assert str(r[k]) == v, (k, r[k], v)
EOF

# ---- the training loop's tables: the same metadata, and eval merges into them ---------------------
expect_exit 0 "eval.every during training" $MPI 2 "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/periodic" --set train.steps=20 --set eval.every=10
check "tables at steps 10 and 20" test -s "$T/periodic/eval/step-000000010.h5" -a -s "$T/periodic/eval/step-000000020.csv"
check "they record the parameters: the checksum of the same step's checkpoint" "$PYTHON" - "$T/periodic" <<'EOF'
import sys, h5py
run = sys.argv[1]
for step in (10, 20):
    a = h5py.File("%s/eval/step-%09d.h5" % (run, step), "r").attrs
    ck = h5py.File("%s/ckpt/step-%09d.h5" % (run, step), "r").attrs["param_checksum"]
    assert (a["written_by"], a["checkpoint"], a["step"]) == ("yoto train", "", step), dict(a)
    assert a["param_checksum"] == ck, (step, a["param_checksum"], ck)
t = h5py.File(run + "/eval/step-000000020.h5", "r")["valid"][()]
assert list(t["beta"]) == [1, 8] and set(t["z"]) == {b"sample"} and set(t["n_images"]) == {32}, t
EOF
expect_exit 0 "eval --beta 3 of that run" $MPI 1 "$YOTO" eval "$T/periodic" --beta 3
contains "keeps the training loop's rows" "$OUT" "(6 rows, 4 kept from earlier evaluations)"

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
def rows(path, z):  # this call's rows: the step's table holds the earlier evals' rows too
    rs = csv.DictReader(l for l in open(path) if not l.startswith("#"))
    return sorted(((r["beta"], r["kl_loss"], r["reconstruction_loss"]) for r in rs
                   if r["split"] == "valid" and r["z"] == z and r["max_batches"] == "1"
                   and float(r["beta"]) in (1.0, 8.0)))
s1, s2 = (rows(p, "sample") for p in sys.argv[1:3])
m1, m2 = (rows(p, "mean") for p in sys.argv[3:5])
assert len(s1) == len(m1) == 2, (len(s1), len(m1))
assert s1 == s2, "z = sample: a second eval drew other noise"
assert m1 == m2, "the checkpoint file and its run directory give other tables"
for a, b in zip(s1, m1):
    kl_s, kl_m = float(a[1]), float(b[1])
    rec_s, rec_m = float(a[2]), float(b[2])
    assert abs(kl_s - kl_m) <= 1e-6 * kl_m, ("KL depends on z", kl_s, kl_m)
    assert abs(rec_s - rec_m) > 1e-6 * rec_m, ("z = sample reconstructs like the mean", rec_s, rec_m)
EOF2
expect_exit 2 "--beta with a negative value" $MPI 1 "$YOTO" eval "$RUN" --beta 1,-2
contains "names the option" "$ERR" "--beta"
expect_exit 2 "--split that does not exist" $MPI 2 "$YOTO" eval "$RUN" --split nope
contains "names the split and lists the splits there are" "$ERR" "--split nope: no such split; the config has train, valid (data.splits)"
expect_exit 2 "a run directory that does not exist" $MPI 1 "$YOTO" eval "$T/none"
contains "names it" "$ERR" "$T/none: no such run directory or checkpoint"

# ---- grids ----------------------------------------------------------------------------------
png() { "$PYTHON" tests/e2e/evalcheck.py "$@"; }
expect_exit 0 "sample at 3 betas, --scale 1" $MPI 1 "$YOTO" sample "$RUN" --beta 0.5,8,64 --n 5 --out "$T/s1.png" --scale 1
contains "sample logs each row's beta" "$OUT" "row 1: beta = 8"
expect_exit 0 "the same at --scale 3" $MPI 1 "$YOTO" sample "$RUN" --beta 0.5,8,64 --n 5 --out "$T/s3.png" --scale 3
check "samples: 3 rows x 5 images of 48 px, each the --scale 1 image drawn 3x; labelled rows that differ" png scaled "$T/s1.png" "$T/s3.png" 16 3 5
check "the rows are named in the PNG's text" png text "$T/s3.png" Rows "row 0: beta=0.5; row 1: beta=8; row 2: beta=64"
expect_exit 0 "sample with the default scale" $MPI 1 "$YOTO" sample "$RUN" --beta 0.5,8,64 --n 5 --out "$T/s.png"
check "the default scale draws the 16 px images 96 px tall (scale 6)" png scale "$T/s.png" 16 6
expect_exit 0 "sample --seed 5 (the run's own seed)" $MPI 1 "$YOTO" sample "$RUN" --beta 0.5,8,64 --n 5 --out "$T/seed5.png" --scale 1 --seed 5
check "draws the default z" png same "$T/s1.png" "$T/seed5.png"
expect_exit 0 "sample --seed 6" $MPI 1 "$YOTO" sample "$RUN" --beta 0.5,8,64 --n 5 --out "$T/seed6.png" --scale 1 --seed 6
check "draws other z" png differ "$T/s1.png" "$T/seed6.png"
expect_exit 2 "reconstruct --seed is refused" $MPI 1 "$YOTO" reconstruct "$RUN" --out "$T/x.png" --seed 3
expect_exit 2 "--scale 0 is refused" $MPI 1 "$YOTO" sample "$RUN" --out "$T/x.png" --scale 0
expect_exit 2 "--scale 33 is refused" $MPI 1 "$YOTO" sample "$RUN" --out "$T/x.png" --scale 33
contains "naming the range" "$ERR" "--scale 33: expected 1..32"
expect_exit 0 "reconstruct at 3 betas, --scale 1" $MPI 2 "$YOTO" reconstruct "$RUN" --beta 0.5,8,64 --n 4 --out "$T/r1.png" --split valid --scale 1
expect_exit 0 "the same at --scale 2" $MPI 2 "$YOTO" reconstruct "$RUN" --beta 0.5,8,64 --n 4 --out "$T/r2.png" --split valid --scale 2
check "reconstructions: input + 3 rows x 4 images, drawn 2x; labelled rows that differ" png scaled "$T/r1.png" "$T/r2.png" 16 4 4
check "the first row is the input" png text "$T/r2.png" Rows "row 0: input; row 1: beta=0.5"
expect_exit 0 "reconstruct without --split" $MPI 1 "$YOTO" reconstruct "$RUN" --beta 8 --n 4 --out "$T/rd.png" --scale 1
contains "takes the first eval split when there is no test split" "$OUT" "4 images of split train"
tsplit=(--set 'data.splits[1].name=test' --set 'eval.splits=[train, test]')
expect_exit 0 "reconstruct, the config with a test split" $MPI 1 "$YOTO" reconstruct "$RUN" --beta 8 --n 4 --out "$T/rt.png" --scale 1 "${tsplit[@]}"
contains "takes the test split" "$OUT" "4 images of split test"
expect_exit 0 "reconstruct --split test" $MPI 1 "$YOTO" reconstruct "$RUN" --beta 8 --n 4 --out "$T/rt2.png" --scale 1 --split test "${tsplit[@]}"
check "the same grid" png same "$T/rt.png" "$T/rt2.png"
check "not that of the train split" png differ "$T/rt.png" "$T/rd.png"
expect_exit 2 "sample without --out" $MPI 1 "$YOTO" sample "$RUN"
contains "says what is missing" "$ERR" "needs --out FILE.png"
expect_exit 2 "reconstruct --split of no such split" $MPI 2 "$YOTO" reconstruct "$RUN" --out "$T/x.png" --split nope
contains "names the option and lists the splits there are" "$ERR" "--split nope: no such split; the config has train, valid (data.splits)"
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
check "its grid is gray (channel 0): inputs and the 2 betas of eval.betas, 8 x 8 images" png gray "$T/two_r.png" 8 3 4
expect_exit 0 "sample a 2-channel model" $MPI 1 "$YOTO" sample "$T/two" --n 4 --out "$T/two_s.png"
check "its grid is gray too" png gray "$T/two_s.png" 8 2 4

# ---- a fixed-beta baseline: no conditioning, one weight vector ------------------------------------
fixed=(--set loss_weights.mode=fixed --set model.conditioning.type=none
       --set loss_weights.kl.distribution=fixed --set loss_weights.kl.value=8.0
       --set loss_weights.reconstruction.distribution=fixed --set loss_weights.reconstruction.value=1.0)
expect_exit 0 "a fixed-beta baseline trains" $MPI 1 "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/fixed" --set train.steps=10 "${fixed[@]}"
expect_exit 0 "and evaluates at its own beta by default" $MPI 1 "$YOTO" eval "$T/fixed" --set eval.max_batches=1
check "its table has one row per split, beta 8" test "$(grep -c '^[a-z]*,8,' "$T/fixed/eval/step-000000010.csv")" = 2
check "it has no FiLM parameters" "$PYTHON" -c "import h5py,sys; f=h5py.File('$T/fixed/ckpt/step-000000010.h5','r'); n=[]; f['params'].visit(n.append); sys.exit(any('film' in x for x in n))"

# ---- an eval split that cannot be read ------------------------------------------------------------------
expect_exit 2 "an eval split that cannot be read stops training before it starts" $MPI 2 "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/badeval" --set eval.every=5 --set 'data.splits[1].dataset=nope'
contains "naming the dataset" "$ERR" "nope"
check "no step was trained" test ! -e "$T/badeval/ckpt"

# ---- analysis/ ---------------------------------------------------------------------------------------
# Python on yoto's tables: under ASan the same scripts would run again on
# the same kind of tables, and test no yoto code (the eval they read runs
# under ASan above)
if [ "$YOTO_VARIANT" = asan ]; then
    skip "analysis/ scripts" "Python only, checked in the release build's run"
else
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
fi

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
rows = csv.DictReader(l for l in open(sys.argv[1]) if not l.startswith("#"))
kl = {float(r["beta"]): float(r["kl_loss"]) for r in rows if r["split"] == "train" and r["z"] == "mean"}
assert kl[0.5] > 2 * kl[16], kl
EOF2

# ---- disentanglement metric columns (issue #16) ---------------------------------------------------
# np1.csv, np2.csv: the first tables above (z = mean, 48 images per split, betas 0.5, 2, 8, 32)
check "metric columns: finite, in [0, 1], np=2 equals np=1 (to 0.01, as encode)" "$PYTHON" - "$T/np1.csv" "$T/np2.csv" <<'EOF'
import sys, evalcheck
a, b = (evalcheck.rows(p) for p in sys.argv[1:3])
for ra, rb in zip(a, b):
    for k in ("mig", "sap", "factorvae", "dci_disentanglement", "dci_completeness"):
        x, y = float(ra[k]), float(rb[k])
        assert 0 <= x <= 1 and 0 <= y <= 1, (k, x, y)
        assert abs(x - y) <= 0.01, (ra["split"], ra["beta"], k, x, y)
EOF
check "the tables name the labels the metrics used (HDF5 attribute, CSV line)" "$PYTHON" - "$RUN" <<'EOF'
import sys, h5py, evalcheck
run = sys.argv[1]
f = h5py.File(run + "/eval/step-000000030.h5", "r")
assert f["train"].attrs["labels"] == "labels" and f["valid"].attrs["labels"] == "labels", dict(f["train"].attrs)
m = evalcheck.meta(run + "/eval/step-000000030.csv")
assert m["table train"].endswith(" labels=labels"), m["table train"]
EOF
# the same 48 rows through `yoto encode`, and their metrics from the independent NumPy reference
expect_exit 0 "encode the rows eval measured" $MPI 1 "$YOTO" encode "$RUN" --split train --beta 0.5,2,8,32 --set eval.max_batches=3 --out "$T/first48.h5"
check "metric columns = the NumPy reference on those codes (1e-6; FactorVAE exactly)" "$PYTHON" - "$T/first48.h5" "$T/np1.csv" <<'EOF'
import subprocess, sys, evalcheck
out = subprocess.run([sys.executable, "tests/tools/metrics_ref.py", "encode", sys.argv[1]],
                     check=True, capture_output=True, text=True).stdout.splitlines()
ref = {float(l.split()[1]): dict(kv.split("=") for kv in l.split()[2:]) for l in out if l.startswith("beta")}
rows = [r for r in evalcheck.rows(sys.argv[2]) if r["split"] == "train"]
assert len(rows) == len(ref) == 4 and {r["n_images"] for r in rows} == {"48"}, (rows, ref)
for r in rows:
    want = ref[float(r["beta"])]
    for k in ("mig", "sap", "dci_disentanglement", "dci_completeness"):
        assert abs(float(r[k]) - float(want[k])) <= 1e-6, (r["beta"], k, r[k], want[k])
    assert float(r["factorvae"]) == float(want["factorvae"]), (r["beta"], r["factorvae"], want["factorvae"])
EOF
"$PYTHON" - "$T" <<'EOF'
import sys, h5py, numpy as np
T = sys.argv[1]
src = h5py.File(f"{T}/shapes.h5", "r")
im, lab = src["images"][()], src["labels"][()]
with h5py.File(f"{T}/m_nolabels.h5", "w") as f:
    f["images"] = im
with h5py.File(f"{T}/m_short.h5", "w") as f:
    f["images"], f["labels"] = im, lab[:-1]
with h5py.File(f"{T}/m_classes.h5", "w") as f:   # Fashion-MNIST's layout: /train/images, /train/labels uint8 [N]
    f["train/images"] = im
    f["train/labels"] = (np.arange(len(im)) % 10).astype(np.uint8)
EOF
mev() { # mev NAME ARGS: eval of the valid split, 48 images, z = mean; the CSV kept as NAME.csv
    local name=$1
    shift
    $MPI 2 "$YOTO" eval "$RUN" --split valid --beta 1,8 --set eval.z=mean --set eval.max_batches=3 "$@" &&
        cp "$RUN/eval/step-000000030.csv" "$T/$name.csv"
}
metric_cells() { # metric_cells CSV WHICH: the metric cells of the valid rows of betas 1 and 8
    "$PYTHON" - "$@" <<'EOF' # are in [0, 1] (WHICH: name=1) or NaN (name=nan)
import math, sys, evalcheck
rows = [r for r in evalcheck.rows(sys.argv[1]) if r["split"] == "valid" and r["beta"] in ("1", "8")]
want = dict(kv.split("=") for kv in sys.argv[2].split(","))
assert len(rows) == 2, rows
for r in rows:
    for k, w in want.items():
        v = float(r[k])
        assert (math.isnan(v) if w == "nan" else 0 <= v <= 1), (r["beta"], k, r[k])
EOF
}
classes=(--set data.file="$T/m_classes.h5" --set 'data.splits[0].dataset=train/images' --set 'data.splits[1].dataset=train/images')
expect_exit 0 "class labels (uint8 [N] beside /train/images)" mev classes "${classes[@]}"
contains "the text output names the labels" "$OUT" "of which metrics against 'train/labels'"
check "one factor: MIG, SAP, DCI completeness defined; FactorVAE and DCI disentanglement NaN" \
    metric_cells "$T/classes.csv" mig=1,sap=1,dci_completeness=1,factorvae=nan,dci_disentanglement=nan
before=$(md5sum <"$RUN/eval/step-000000030.h5")
expect_exit 2 "eval.metrics: on, a split without labels" mev x --set data.file="$T/m_nolabels.h5" --set eval.metrics=on
contains "says so, naming the split, the file and the key" "$ERR" "eval.metrics: on (set at --set eval.metrics=on): split 'valid' ($T/m_nolabels.h5, images 'images') has no labels"
check "the tables are untouched" test "$(md5sum <"$RUN/eval/step-000000030.h5")" = "$before"
expect_exit 0 "eval.metrics: auto (the default), a split without labels" mev nolabels --set data.file="$T/m_nolabels.h5"
check "every metric NaN" metric_cells "$T/nolabels.csv" mig=nan,sap=nan,factorvae=nan,dci_disentanglement=nan,dci_completeness=nan
check "no labels named" grep -q "^# table valid: .* labels=$" "$T/nolabels.csv"
expect_exit 0 "eval.metrics: auto, labels of the wrong length" mev short --set data.file="$T/m_short.h5"
contains "a warning says why there are no metrics" "$ERR" "warning: split valid: no disentanglement metrics: $T/m_short.h5: labels dataset 'labels' has 383 rows but the images 'images' have 384"
check "every metric NaN" metric_cells "$T/short.csv" mig=nan,sap=nan,factorvae=nan,dci_disentanglement=nan,dci_completeness=nan
expect_exit 2 "eval.metrics: on, labels of the wrong length" mev x --set data.file="$T/m_short.h5" --set eval.metrics=on
contains "is an error with the same message" "$ERR" "has 383 rows but the images 'images' have 384"
expect_exit 0 "eval.metrics: off, a split with labels" mev off --set eval.metrics=off
check "every metric NaN" metric_cells "$T/off.csv" mig=nan,sap=nan,factorvae=nan,dci_disentanglement=nan,dci_completeness=nan
expect_exit 0 "eval.metrics: on, a split with labels" mev on --set eval.metrics=on
check "every metric defined" metric_cells "$T/on.csv" mig=1,sap=1,factorvae=1,dci_disentanglement=1,dci_completeness=1
expect_exit 2 "eval.metrics: a bad value" $MPI 1 "$YOTO" eval "$RUN" --set eval.metrics=yes
contains "lists the values" "$ERR" "eval.metrics: bad value 'yes'; expected one of: auto, on, off"
# the training loop's tables (eval.every, above) have them; eval.metrics may change on resume
check "eval.every tables have the metric columns" metric_cells "$T/periodic/eval/step-000000020.csv" mig=1,sap=1,factorvae=1,dci_disentanglement=1,dci_completeness=1
check "the log line gives MIG" grep -q "eval step 20 (.*valid beta 1: .* (MIG [0-9.]*, [0-9.]*)" "$T/periodic/log.txt"
expect_exit 0 "a run resumes with eval.metrics changed" $MPI 2 "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/periodic" --set train.steps=30 --set eval.every=10 --set eval.metrics=off
check "its new tables have none" metric_cells "$T/periodic/eval/step-000000030.csv" mig=nan,sap=nan,factorvae=nan,dci_disentanglement=nan,dci_completeness=nan

done_testing
