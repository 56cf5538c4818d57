# test_encode.sh — `yoto encode` and analysis/yotomodel.py (issue #16): np = 1
# and np = 2 write the same file, indices and labels are the data file's, the
# stored metrics equal the NumPy reference's, bad input is refused with nothing
# half-written, and the NumPy model matches the C program (eval tables with
# z = mean, encode's means) for a FiLM model and a Gaussian one without
# conditioning.
. tests/e2e/lib.sh

tiny_setup || { echo "Bail out! cannot prepare data"; exit 1; }
RUN=$T/run
$MPI 1 "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$RUN" --set train.steps=30 >/dev/null 2>&1 ||
    { echo "Bail out! cannot train"; exit 1; }
no_tmp() { ! ls -a "$T" | grep -q '\.tmp$'; }

# ---- the file: np = 2 writes what np = 1 wrote ------------------------------------------------------
expect_exit 0 "encode at np=1" $MPI 1 "$YOTO" encode "$RUN" --split train --beta 0.5,8,32 --out "$T/e1.h5"
contains "prints its throughput" "$OUT" "images/s"
contains "prints the metrics per beta" "$OUT" "FactorVAE"
expect_exit 0 "encode at np=2" $MPI 2 "$YOTO" encode "$RUN" --split train --beta 0.5,8,32 --out "$T/e2.h5"
check "np=2 wrote what np=1 wrote (codes to float rounding)" "$PYTHON" - "$T/e1.h5" "$T/e2.h5" <<'EOF'
import sys, h5py, numpy as np
a, b = (h5py.File(p, "r") for p in sys.argv[1:3])
assert sorted(a) == sorted(b) == ["beta", "factor_sizes", "index", "labels", "mean", "metrics", "sigma", "w_rec"], sorted(a)
for k in ("beta", "index", "labels", "factor_sizes", "w_rec"):
    assert a[k].dtype == b[k].dtype and np.array_equal(a[k][()], b[k][()]), k
for k in ("mean", "sigma"):
    x, y = a[k][()], b[k][()]
    assert x.dtype == np.float32 and x.shape == (3, 307, 4), (x.dtype, x.shape)
    err = np.abs(x.astype(float) - y).max() / np.abs(x).max()
    assert err <= 1e-5, (k, err)
ma, mb = a["metrics"][()], b["metrics"][()]
for f in ("beta", "n_images", "factors_used", "active_dims"):
    assert np.array_equal(ma[f], mb[f]), f
for f in ("mig", "sap", "factorvae", "dci_disentanglement", "dci_completeness"):
    assert np.all(np.abs(ma[f] - mb[f]) <= 0.01), (f, ma[f], mb[f])
for k in ("format", "split", "n_images", "step", "latent_dim", "checkpoint"):
    assert a.attrs[k] == b.attrs[k], k
EOF
check "index and labels are the data file's rows of the split" "$PYTHON" - "$T/e1.h5" "$T/shapes.h5" <<'EOF'
import sys, h5py, numpy as np
f, d = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
assert f.attrs["format"] == "yoto-encode" and f.attrs["format_version"] == 1
assert f.attrs["split"] == "train" and f.attrs["n_images"] == 307 and f.attrs["step"] == 30
idx = f["index"][()]
assert np.array_equal(idx, np.arange(77, 384)), idx[:5]   # "20%:" of 384 rows
assert f["labels"].dtype == np.float64 and np.array_equal(f["labels"][()], d["labels"][()][idx])
assert list(f["beta"][()]) == [0.5, 8, 32] and f["w_rec"][()] == 1.0
assert np.all(f["sigma"][()] > 0) and np.isfinite(f["mean"][()]).all()
m = f["metrics"][()]
assert list(m["beta"]) == [0.5, 8, 32] and set(m["n_images"]) == {307} and set(m["factors_used"]) == {6}
EOF
check "stored metrics = the NumPy reference's (1e-6; FactorVAE exactly)" "$PYTHON" - "$T/e1.h5" <<'EOF'
import subprocess, sys, h5py, numpy as np
out = subprocess.run([sys.executable, "tests/tools/metrics_ref.py", "encode", sys.argv[1]],
                     check=True, capture_output=True, text=True).stdout.split("\n")
m = h5py.File(sys.argv[1], "r")["metrics"][()]
rows = [l for l in out if l.startswith("beta")]
assert len(rows) == len(m) == 3, out
for line, r in zip(rows, m):
    ref = dict(kv.split("=") for kv in line.split()[2:])
    assert float(line.split()[1]) == r["beta"]
    for k in ("mig", "sap", "dci_disentanglement", "dci_completeness"):
        assert abs(float(ref[k]) - r[k]) <= 1e-6, (k, float(ref[k]), r[k])
    for k in ("factorvae", "factorvae_train", "active_dims", "factors_used"):
        assert float(ref[k]) == r[k], (k, ref[k], r[k])
EOF

# ---- analysis/yotomodel.py against the C program ------------------------------------------------------
expect_exit 0 "eval with z = mean" $MPI 1 "$YOTO" eval "$RUN" --set eval.z=mean --beta 0.5,8,32
yotomodel_vs_c() { # RUN EVAL_CSV [ENCODE_FILE SPLIT]
    "$PYTHON" - "$@" <<'EOF'
import csv, sys
sys.path.insert(0, "analysis")
import h5py, numpy as np, yotomodel
m = yotomodel.load(sys.argv[1])
worst = 0
for row in csv.DictReader(l for l in open(sys.argv[2]) if not l.startswith("#")):  # "# key: value" lines first
    x = m.split_images(row["split"], int(row["n_images"]))
    rec, kl = m.losses(x, float(row["beta"]))
    for got, want in ((rec.mean(), float(row["reconstruction_loss"])), (kl.mean(), float(row["kl_loss"]))):
        err = abs(got - want) / abs(want)
        assert err <= 1e-4, (row["split"], row["beta"], got, want)
        worst = max(worst, err)
print(f"eval table: worst relative difference {worst:.2e}")
if len(sys.argv) > 3:
    f = h5py.File(sys.argv[3], "r")
    x = m.split_images(sys.argv[4])
    for k, beta in enumerate(f["beta"][()]):
        mean, sigma = m.encode(x, beta)
        for got, want in ((mean, f["mean"][k]), (sigma, f["sigma"][k])):
            err = np.abs(got - want).max() / np.abs(want).max()
            assert err <= 1e-4, (beta, err)
            worst = max(worst, err)
    print(f"encode: worst max-normalised difference {worst:.2e}")
EOF
}
check "yotomodel.py: eval's beta table (1e-4 relative) and encode's means and sigmas (1e-4)" \
    yotomodel_vs_c "$RUN" "$RUN/eval/step-000000030.csv" "$T/e1.h5" train
check "yotomodel.py: reconstruct and sample give images of the model's shape" "$PYTHON" - "$RUN" <<'EOF'
import sys
sys.path.insert(0, "analysis")
import numpy as np, yotomodel
m = yotomodel.load(sys.argv[1])
x = m.split_images("valid", 5)
r, s = m.reconstruct(x, 8), m.sample(3, 8, seed=1)
assert r.shape == (5, 16, 16, 3) and s.shape == (3, 16, 16, 3)
assert np.all((r > 0) & (r < 1)) and np.all((s > 0) & (s < 1))
assert not np.allclose(m.encode(x, 0.5)[0], m.encode(x, 32)[0])   # FiLM: beta matters
EOF
# a Gaussian fixed-beta baseline: no conditioning, decoder (means, sigmas)
fixed=(--set loss_weights.mode=fixed --set model.conditioning.type=none
       --set loss_weights.kl.distribution=fixed --set loss_weights.kl.value=8.0
       --set loss_weights.reconstruction.distribution=fixed --set loss_weights.reconstruction.value=1.0
       --set model.output_distribution=gaussian --set model.decoder.channels_out=6)
expect_exit 0 "a Gaussian baseline without conditioning trains" $MPI 1 "$YOTO" train "$T/tiny.yaml" --set experiment.out_dir="$T/fixed" --set train.steps=10 "${fixed[@]}"
expect_exit 0 "and evaluates with z = mean" $MPI 1 "$YOTO" eval "$T/fixed" --set eval.z=mean
expect_exit 0 "and encodes, warning about a beta it was not trained at" $MPI 2 "$YOTO" encode "$T/fixed" --beta 8,2 --out "$T/fixed.h5"
contains "the warning names the beta" "$ERR" "beta 2: this model has no conditioning"
check "yotomodel.py: the Gaussian model without conditioning matches eval and encode" \
    yotomodel_vs_c "$T/fixed" "$T/fixed/eval/step-000000010.csv" "$T/fixed.h5" train

# ---- bad input: exit 2, a clear message, nothing half-written --------------------------------------------
before=$(md5sum <"$T/e1.h5")
expect_exit 2 "an existing output without --force" $MPI 2 "$YOTO" encode "$RUN" --out "$T/e1.h5"
contains "says to use --force" "$ERR" "exists; use --force"
check "the existing file is untouched" test "$(md5sum <"$T/e1.h5")" = "$before"
expect_exit 0 "--force replaces it" $MPI 1 "$YOTO" encode "$RUN" --split valid --beta 1 --out "$T/e1.h5" --force
check "with the new contents" "$PYTHON" -c "import h5py,sys; sys.exit(int(h5py.File('$T/e1.h5','r').attrs['n_images']) != 77)"
expect_exit 0 "a beta outside the trained range warns" $MPI 1 "$YOTO" encode "$RUN" --split valid --beta 0.1,8 --out "$T/warn.h5"
contains "naming the beta and the range" "$ERR" "beta 0.1 is outside the trained range [0.5, 64]"
"$PYTHON" - "$T" <<'EOF'
import sys, h5py, numpy as np
T = sys.argv[1]
src = h5py.File(f"{T}/shapes.h5", "r")
im, lab = src["images"][()], src["labels"][()]
def make(name, **extra):
    with h5py.File(f"{T}/{name}.h5", "w") as f:
        f["images"] = im
        for k, v in extra.items():
            f[k] = v
make("nolabels")
make("short", labels=lab[:-1])
make("strings", labels=np.array([b"x"] * len(im)))
make("continuous", labels=np.random.default_rng(0).normal(size=(len(im), 2)))
with h5py.File(f"{T}/classes.h5", "w") as f:   # Fashion-MNIST's layout: /train/images, /train/labels uint8 [N]
    f["train/images"] = im
    f["train/labels"] = (np.arange(len(im)) % 10).astype(np.uint8)
EOF
enc() { local name=$1; shift; $MPI 2 "$YOTO" encode "$RUN" --split train --out "$T/$name.h5" "$@"; }
expect_exit 2 "--metrics on a split without labels" enc x1 --metrics --set data.file="$T/nolabels.h5"
contains "says the split has no labels" "$ERR" "split 'train' ($T/nolabels.h5, images 'images') has no labels"
check "nothing written" test ! -e "$T/x1.h5"
expect_exit 0 "without --metrics it encodes, without labels" enc x2 --set data.file="$T/nolabels.h5"
check "and the file has no /labels" "$PYTHON" -c "import h5py,sys; f=h5py.File('$T/x2.h5','r'); sys.exit('labels' in f or 'metrics' in f)"
expect_exit 2 "labels of the wrong length" enc x3 --set data.file="$T/short.h5"
contains "names both lengths" "$ERR" "has 383 rows but the images 'images' have 384"
expect_exit 2 "labels of the wrong type" enc x4 --set data.file="$T/strings.h5"
contains "names the type" "$ERR" "is string [384]: expected numbers"
expect_exit 2 "--labels naming no dataset" enc x5 --labels nope
contains "names it" "$ERR" "no dataset 'nope' (use --labels DATASET"
expect_exit 2 "--metrics with labels that are no discrete factors (found before encoding)" enc x6 --metrics --set data.file="$T/continuous.h5"
contains "says why" "$ERR" "307 distinct values (at most 256): not a discrete factor"
check "nothing half-written: no file, no temporary" test ! -e "$T/x6.h5"
check "no temporary file anywhere" no_tmp
expect_exit 0 "the same labels without --metrics: a warning, no metrics" enc x7 --set data.file="$T/continuous.h5"
contains "the warning" "$ERR" "warning: no disentanglement metrics"
expect_exit 0 "class labels (uint8 [N] beside /train/images)" enc x8 --set data.file="$T/classes.h5" --set 'data.splits[0].dataset=train/images' --beta 1,8
check "are stored as they are, one factor: MIG and SAP defined, FactorVAE and DCI-D not" "$PYTHON" - "$T/x8.h5" <<'EOF'
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
assert f["labels"].dtype == np.uint8 and f["labels"].shape == (307,)
assert np.array_equal(f["labels"][()], (f["index"][()] % 10).astype(np.uint8))
m = f["metrics"][()]
assert np.all(np.isfinite(m["mig"])) and np.all(np.isfinite(m["sap"])) and np.all(np.isfinite(m["dci_completeness"]))
assert np.all(np.isnan(m["factorvae"])) and np.all(np.isnan(m["dci_disentanglement"]))
assert list(f["factor_sizes"][()]) == [10]
EOF
expect_exit 2 "no --out" $MPI 1 "$YOTO" encode "$RUN"
expect_exit 0 "encode --help" "$YOTO" encode --help
contains "documents --metrics" "$OUT" "--metrics"
check "no temporary file left by any of the above" no_tmp

done_testing
