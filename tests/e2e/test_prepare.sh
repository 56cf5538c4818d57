# test_prepare.sh — yoto prepare / data-info end to end: the real
# Fashion-MNIST checked against its IDX source (independently, with Python),
# CIFAR-10 and Shapes3D stand-ins, output into a directory that does not exist
# yet, bad input (exit code 2 with a message; a config's wrong data paths name
# the key, where it was set and the working directory),
# data-info --json against h5py, the MPI shard test at np = 3, and the data
# benchmark.
. tests/e2e/lib.sh
MPIRUN="mpirun --oversubscribe"

# ---- the real Fashion-MNIST ---------------------------------------------------
FM=/usr/share/datasets/fashion-mnist
if [ -r "$FM/train-images-idx3-ubyte.gz" ]; then
    check "prepare fashion-mnist (real files)" "$YOTO" prepare fashion-mnist "$FM" "$T/fm.h5"
    contains "prepare reports the train split" "$OUT" "train/images (60000 rows of 28x28x1)"
    contains "prepare reports the test split" "$OUT" "test/images (10000 rows of 28x28x1)"
    check "no temporary file left behind" test -z "$(ls "$T" | grep '\.tmp\.')"
    check "h5dump reads the file" h5dump -H "$T/fm.h5"
    contains "h5dump sees /train/images" "$OUT" 'DATASET "images"'
    cat >"$T/check_fm.py" <<'EOF'
import gzip, hashlib, sys
import h5py, numpy as np
src, out = sys.argv[1], sys.argv[2]
def idx(path, header):
    with gzip.open(path) as f:
        return np.frombuffer(f.read()[header:], np.uint8)
f = h5py.File(out, "r")
assert f.attrs["format"] in (b"yoto-dataset", "yoto-dataset")
for split, stem, n in (("train", "train", 60000), ("test", "t10k", 10000)):
    img = idx(f"{src}/{stem}-images-idx3-ubyte.gz", 16).reshape(n, 28, 28, 1)
    lab = idx(f"{src}/{stem}-labels-idx1-ubyte.gz", 8)
    x, y = f[split + "/images"], f[split + "/labels"]
    assert x.shape == (n, 28, 28, 1) and x.dtype == np.uint8, (split, x.shape, x.dtype)
    assert y.shape == (n,) and y.dtype == np.uint8, (split, y.shape)
    xa = x[:]
    assert int(xa.sum(dtype=np.uint64)) == int(img.sum(dtype=np.uint64)), split
    assert (xa.reshape(n, -1).sum(1) == img.reshape(n, -1).sum(1)).all(), split
    assert hashlib.sha256(xa[0].tobytes()).digest() == hashlib.sha256(img[0].tobytes()).digest()
    assert (y[:] == lab).all(), split
print("ok")
EOF
    check "h5py: counts, per-image pixel sums, first-image sha256, labels match the IDX" \
        "$PYTHON" "$T/check_fm.py" "$FM" "$T/fm.h5"
    check "data-info on the result" "$YOTO" data-info "$T/fm.h5"
    contains "data-info lists the datasets" "$OUT" "/train/labels"
else
    skip "real Fashion-MNIST" "no $FM (Debian package dataset-fashion-mnist)"
fi

# ---- CIFAR-10 from small batches written here ----------------------------------------
mkdir -p "$T/cifar"
cat >"$T/make_cifar.py" <<'EOF'
import sys
import numpy as np
d = sys.argv[1]
names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
for b, name in enumerate(names):
    rng = np.random.default_rng(b)
    n = 2 + b % 3
    rec = np.zeros((n, 3073), np.uint8)
    rec[:, 0] = rng.integers(0, 10, n)
    rec[:, 1:] = rng.integers(0, 256, (n, 3072))
    rec.tofile(f"{d}/{name}")
EOF
cat >"$T/check_cifar.py" <<'EOF'
import sys
import h5py, numpy as np
d, out = sys.argv[1], sys.argv[2]
def load(name):
    r = np.fromfile(f"{d}/{name}", np.uint8).reshape(-1, 3073)
    return r[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), r[:, 0]
parts = [load(f"data_batch_{i}.bin") for i in range(1, 6)]
x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
tx, ty = load("test_batch.bin")
f = h5py.File(out, "r")
assert f["train/images"].shape == x.shape == (sum(2 + b % 3 for b in range(5)), 32, 32, 3)
assert (f["train/images"][:] == x).all() and (f["train/labels"][:] == y).all()
assert (f["test/images"][:] == tx).all() and (f["test/labels"][:] == ty).all()
print("ok")
EOF
check "write small CIFAR-10 batches" "$PYTHON" "$T/make_cifar.py" "$T/cifar"
check "prepare cifar10" "$YOTO" prepare cifar10 "$T/cifar" "$T/cifar.h5"
check "h5py: CIFAR images are HWC and equal the batches" "$PYTHON" "$T/check_cifar.py" "$T/cifar" "$T/cifar.h5"

# ---- into a directory that does not exist yet (the README's quick start in a fresh clone) ----
check "prepare cifar10 into a missing directory (two levels)" "$YOTO" prepare cifar10 "$T/cifar" "$T/fresh/data/cifar.h5"
check "the directory was created and holds the same file" "$PYTHON" "$T/check_cifar.py" "$T/cifar" "$T/fresh/data/cifar.h5"
check "prepare shapes into a missing relative directory" env -C "$T" "$YOTO" prepare shapes 7 rel/dir/s.h5
check "... the file is there (7 images)" "$PYTHON" -c \
    "import sys, h5py; assert h5py.File(sys.argv[1], 'r')['images'].shape[0] == 7" "$T/rel/dir/s.h5"
touch "$T/plainfile"
expect_exit 2 "prepare under a path that is a file: exit 2" "$YOTO" prepare shapes 7 "$T/plainfile/s.h5"
contains "and says why" "$ERR" "$T/plainfile/s.h5: cannot create its directory: $T/plainfile exists and is not a directory"
expect_exit 2 "(prepare of a missing source into $T/never/x.h5: exit 2)" "$YOTO" prepare cifar10 "$T/nowhere" "$T/never/x.h5"
check "a failed conversion creates no directory" test ! -e "$T/never"

# ---- the Shapes3D stand-in -------------------------------------------------------------------
check "prepare shapes 300 (2 ranks: rank 0 writes)" $MPIRUN -np 2 "$YOTO" prepare shapes 300 "$T/shapes.h5" --seed 1
cat >"$T/check_shapes.py" <<'EOF'
import sys
import h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
x, y = f["images"], f["labels"]
assert x.shape == (300, 64, 64, 3) and x.dtype == np.uint8 and x.chunks is None
assert y.shape == (300, 6) and y.dtype == np.float64
y = y[:]
hues = np.linspace(0, 0.9, 10)
sets = [hues, hues, hues, np.linspace(0.75, 1.25, 8), np.arange(4), np.linspace(-30, 30, 15)]
for k, s in enumerate(sets):
    assert np.isclose(y[:, k][:, None], s[None, :]).any(1).all(), k
assert len({tuple(r) for r in y}) == 300
assert x[:].std() > 20
print("ok")
EOF
check "h5py: shapes layout, factor values like 3dshapes.h5" "$PYTHON" "$T/check_shapes.py" "$T/shapes.h5"

# ---- bad input: exit code 2 and a message naming the thing -----------------------------
expect_exit 2 "prepare: missing directory" "$YOTO" prepare fashion-mnist "$T/nowhere" "$T/x.h5"
contains "missing directory is named" "$ERR" "$T/nowhere: not a directory"
mkdir -p "$T/trunc"
cat >"$T/make_idx.py" <<'EOF'
import gzip, struct, sys
d = sys.argv[1]
def idx(name, dims, cut=0, gz=True):
    n = 1
    for k in dims: n *= k
    b = bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", k) for k in dims) + bytes(n)
    b = b[: len(b) - cut]
    (gzip.open if gz else open)(f"{d}/{name}" + (".gz" if gz else ""), "wb").write(b)
idx("train-images-idx3-ubyte", (4, 28, 28), cut=100)
idx("train-labels-idx1-ubyte", (4,), gz=False)
idx("t10k-images-idx3-ubyte", (2, 28, 28))
idx("t10k-labels-idx1-ubyte", (2,))
EOF
check "write a truncated IDX file" "$PYTHON" "$T/make_idx.py" "$T/trunc"
expect_exit 2 "prepare: truncated IDX" "$YOTO" prepare mnist "$T/trunc" "$T/x.h5"
contains "truncated IDX is named" "$ERR" "train-images-idx3-ubyte.gz: truncated IDX file"
check "a failed prepare leaves no file" test ! -e "$T/x.h5"
head -c 5000 "$T/cifar/test_batch.bin" >"$T/cifar/tb" && mv "$T/cifar/tb" "$T/cifar/test_batch.bin"
expect_exit 2 "prepare: truncated CIFAR batch" "$YOTO" prepare cifar10 "$T/cifar" "$T/x.h5"
contains "truncated CIFAR batch is named" "$ERR" "test_batch.bin: truncated"
expect_exit 2 "prepare: unknown data set" "$YOTO" prepare imagenet "$T" "$T/x.h5"
contains "unknown data set is named, with the known ones" "$ERR" "unknown data set 'imagenet' (fashion-mnist, mnist, cifar10, shapes)"
expect_exit 2 "prepare: shapes size 0" "$YOTO" prepare shapes 0 "$T/x.h5"
contains "says the size range" "$ERR" "shapes SIZE must be an integer in 1..480000, got '0'"
check "neither left a file" test ! -e "$T/x.h5"

expect_exit 2 "data-info: missing file" "$YOTO" data-info "$T/missing.h5"
contains "missing file is named" "$ERR" "$T/missing.h5: cannot open data file"
echo "not hdf5" >"$T/text.h5"
expect_exit 2 "data-info: not HDF5" "$YOTO" data-info "$T/text.h5"
contains "not-HDF5 is named" "$ERR" "$T/text.h5: not an HDF5 file"
cat >"$T/make_bad.py" <<'EOF'
import sys
import h5py, numpy as np
d = sys.argv[1]
with h5py.File(f"{d}/labels_only.h5", "w") as f:
    f["labels"] = np.zeros((10, 6))
with h5py.File(f"{d}/zero.h5", "w") as f:
    f.create_dataset("images", (0, 8, 8, 1), np.uint8)
with h5py.File(f"{d}/float.h5", "w") as f:
    f["images"] = np.zeros((4, 8, 8, 3), np.float32)
EOF
check "write bad HDF5 files with h5py" "$PYTHON" "$T/make_bad.py" "$T"
expect_exit 2 "data-info: only labels" "$YOTO" data-info "$T/labels_only.h5"
contains "labels-only: no image dataset" "$ERR" "labels_only.h5: no usable image dataset"
expect_exit 2 "data-info: zero rows" "$YOTO" data-info "$T/zero.h5"
contains "zero rows is named" "$ERR" "dataset 'images' has zero rows"
expect_exit 2 "data-info: float images" "$YOTO" data-info "$T/float.h5"
contains "wrong dtype is named" "$ERR" "expected uint8 images [N, H, W, C] (or [N, H, W]), found float32 [4, 8, 8, 3]"
expect_exit 2 "data-info: missing file on 2 ranks" $MPIRUN -np 2 "$YOTO" data-info "$T/missing.h5"
contains "2 ranks: the message" "$ERR" "cannot open data file"

# ---- data-info --json, checked against h5py's own view of the same files -----------------
cat >"$T/check_info_json.py" <<'EOF'
import json, sys
import h5py, numpy as np
info, path, want_rc, rc = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
assert rc == want_rc, f"exit code {rc}, expected {want_rc}"
f = h5py.File(path, "r")
assert info["file"] == path and info["bytes"] > 0, info["file"]
attrs = {k: (v.decode() if isinstance(v, bytes) else int(v)) for k, v in f.attrs.items()}
assert info["attributes"] == attrs, (info["attributes"], attrs)
seen = []
f.visititems(lambda n, o: seen.append((n, o)) if isinstance(o, h5py.Dataset) else None)
by_path = {d["path"]: d for d in info["datasets"]}
assert sorted(by_path) == sorted(n for n, _ in seen), (sorted(by_path), [n for n, _ in seen])
images = []
for n, d in seen:
    j = by_path[n]
    assert j["type"] == d.dtype.name and j["shape"] == list(d.shape), (n, j, d.dtype, d.shape)
    assert j["layout"] == ("chunked" if d.chunks else "contiguous"), (n, j["layout"])
    assert j["chunks"] == (list(d.chunks) if d.chunks else None), (n, j["chunks"])
    assert ("deflate" in j["filters"]) == (d.compression == "gzip"), (n, j["filters"])
    if d.ndim in (3, 4):
        ok = d.dtype == np.uint8 and d.shape[0] >= 1
        assert j["kind"] == "images" and j["usable"] == ok and (ok or j["error"]), (n, j)
        if ok:
            c = d.shape[3] if d.ndim == 4 else 1
            images.append({"path": n, "rows": d.shape[0], "height": d.shape[1], "width": d.shape[2], "channels": c})
    else:
        assert j["kind"] == ("per-row" if d.ndim in (1, 2) else "other"), (n, j)
assert sorted(info["image_datasets"], key=lambda x: x["path"]) == sorted(images, key=lambda x: x["path"])
assert (info["error"] is None) == bool(images) == (rc == 0), (info["error"], images, rc)
print("ok")
EOF
for f in cifar.h5 shapes.h5 fresh/data/cifar.h5 float.h5 zero.h5 labels_only.h5; do
    "$YOTO" data-info "$T/$f" --json >"$T/info.json" 2>"$T/info.err"
    rc=$?
    want=0
    case $f in float.h5 | zero.h5 | labels_only.h5) want=2 ;; esac
    check "data-info --json $f: exit $want, valid JSON, the same datasets, shapes, layouts and usable images as h5py sees" \
        "$PYTHON" "$T/check_info_json.py" "$T/info.json" "$T/$f" "$want" "$rc"
done
contains "data-info --json float.h5: the error is on stderr too" "$T/info.err" "no usable image dataset"
expect_exit 2 "data-info --json of a missing file: exit 2" "$YOTO" data-info "$T/missing.h5" --json
cp "$OUT" "$T/j.out" # (check overwrites $OUT and $ERR)
contains "... the message on stderr" "$ERR" "$T/missing.h5: cannot open data file"
check "... and nothing on stdout" test ! -s "$T/j.out"
expect_exit 2 "data-info --json --bench: exit 2" "$YOTO" data-info "$T/shapes.h5" --json --bench
contains "... and says why" "$ERR" "--json describes the file; it does not combine with --bench"
check "data-info --json on 2 ranks: one JSON object (rank 0)" $MPIRUN -np 2 "$YOTO" data-info "$T/cifar.h5" --json
cp "$OUT" "$T/j.out"
check "... which parses" "$PYTHON" -c "import json, sys; d = json.load(open(sys.argv[1])); assert len(d['image_datasets']) == 2" "$T/j.out"
expect_exit 2 "bench: missing dataset" "$YOTO" data-info "$T/shapes.h5" --bench --dataset imgs
contains "bench: missing dataset is named" "$ERR" "no dataset 'imgs'"
expect_exit 2 "bench: split too small for ranks x batch" $MPIRUN -np 2 "$YOTO" data-info "$T/shapes.h5" --bench --range :100
contains "bench: too small is explained" "$ERR" "too few for 2 ranks x 64 images per rank"

# ---- a config's data paths that are wrong: the message names the key, where it was set, and
# (for a relative path) the working directory it was read from. Line:column below are this
# heredoc's; the model is tiny_setup's (lib.sh) on the 64x64 shapes resized to 16.
mkdir -p "$T/cwd"
cat >"$T/cwd/bad.yaml" <<EOF
experiment: {name: bad, seed: 1, out_dir: $T/badrun}
data:
  file: no/such/shapes.h5
  splits:
    - {name: train, dataset: images, range: "20%:"}
    - {name: valid, range: ":20%"}
  preprocess_train: ["resize(16)", "value_range(0, 1)"]
  preprocess_eval: ["resize(16)", "value_range(0, 1)"]
model:
  input_shape: [16, 16, 3]
  latent_dim: 4
  output_distribution: bernoulli
  encoder: {num_blocks: 2, layers_per_block: 1, base_channels: 4, fc_sizes: [16, 8]}
  decoder: {num_blocks: 2, layers_per_block: 1, base_channels: 4, fc_sizes: [16, 128],
            reshape: [4, 4, 8], channels_out: 3}
  conditioning: {type: film, hidden_sizes: [8]}
loss_weights:
  kl: {distribution: log_uniform, low: 0.5, high: 64.0}
  reconstruction: {distribution: log_uniform, low: 0.999, high: 1.001}
optimizer: {lr: 1.0e-3}
train: {batch_size: 8, steps: 2}
eval: {splits: [valid], betas: [1.0]}
EOF
bad() { env -C "$T/cwd" "$YOTO" train bad.yaml "$@"; }
expect_exit 2 "train: a relative data.file that is not there: exit 2" bad
contains "the message names the file" "$ERR" "no/such/shapes.h5: cannot open data file: No such file or directory"
contains "... the key and its file:line:column" "$ERR" "(data.file, set at bad.yaml:3:9;"
contains "... and the directory a relative path is read from" "$ERR" \
    "a relative path is read from the working directory, $T/cwd)"
expect_exit 2 "train: data.file by --set, absolute, not there: exit 2" bad --set data.file="$T/gone.h5"
contains "the message names the --set" "$ERR" \
    "$T/gone.h5: cannot open data file: No such file or directory (data.file, set by --set data.file=$T/gone.h5)"
cp "$ERR" "$T/abs.err" # (check overwrites $ERR)
check "... and says nothing of the working directory (absolute path)" eval "! grep -q 'working directory' '$T/abs.err'"
expect_exit 2 "train: data.file is a directory: exit 2" bad --set data.file=.
contains "the message names it and the key" "$ERR" \
    ".: is a directory, expected an HDF5 data file (data.file, set by --set data.file=.; a relative path"
expect_exit 2 "train: the split's own file: exit 2" bad --set data.file="$T/shapes.h5" --set 'data.splits[0].file=x.h5'
contains "the message names data.splits[0].file" "$ERR" \
    "x.h5: cannot open data file: No such file or directory (data.splits[0].file, set by --set data.splits[0].file=x.h5; a relative"
expect_exit 2 "train: a missing dataset: exit 2" bad --set data.file="$T/cifar.h5"
contains "the message names the dataset key and where it was set" "$ERR" \
    "no dataset 'images' (there is no 'images'; '/' holds 'test', 'train') (data.splits[0].dataset, set at bad.yaml:5:30)"
expect_exit 2 "train: a missing dataset left at its default: exit 2" bad --set data.file="$T/cifar.h5" \
    --set data.train_split=valid
contains "the message says the default and where the split was set" "$ERR" \
    "(data.splits[1].dataset (its default; data.splits[1] set at bad.yaml:6:7)"
expect_exit 2 "train: images of another size than model.input_shape: exit 2" bad --set data.file="$T/shapes.h5" \
    --set 'data.preprocess_train=["value_range(0, 1)"]'
contains "the message gives both sizes" "$ERR" "into 64x64x3, but model.input_shape is [16, 16, 3]"
contains "... and where both keys were set" "$ERR" \
    "(data.preprocess_train, set by --set data.preprocess_train=[\"value_range(0, 1)\"]; model.input_shape, set at bad.yaml:10:16)"
expect_exit 2 "mpirun -np 2 train: the same message from the ranks" $MPIRUN -np 2 "$YOTO" train "$T/cwd/bad.yaml"
contains "2 ranks: the key and where" "$ERR" \
    "(data.file, set at $T/cwd/bad.yaml:3:9; a relative path is read from the working directory, $PWD)"

# ---- the data module under MPI at np = 3 (run.sh covers 1, 2, 4) -----------------------
if [ -x "build/$YOTO_VARIANT/tests/test_data_shards" ]; then
    check "MPI data shards at np=3" $MPIRUN -np 3 "build/$YOTO_VARIANT/tests/test_data_shards"
else
    skip "MPI data shards at np=3" "build/$YOTO_VARIANT/tests/test_data_shards not built"
fi

# ---- the pipeline benchmark (streaming: cache 0) --------------------------------------------
check "bench, streaming, 2 ranks" $MPIRUN -np 2 "$YOTO" data-info "$T/shapes.h5" --bench \
    --seconds 0.2 --batch 16 --cache-mb 0 --block-mb 1
contains "bench reads through the reader thread" "$OUT" "streaming, read-ahead thread"
contains "bench reports images/s" "$OUT" "images/s per rank"
check "bench, CIFAR augmentation" "$YOTO" data-info "$T/cifar.h5" --bench --seconds 0.2 \
    --batch 4 --pipeline "resize(40), random_crop(32), flip_lr(), value_range(-1, 1)"
contains "bench names the pipeline" "$OUT" "random_crop(32)"
done_testing
