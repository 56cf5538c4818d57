# test_prepare.sh — yoto prepare / data-info end to end: the real
# Fashion-MNIST checked against its IDX source (independently, with Python),
# CIFAR-10 and Shapes3D stand-ins, bad input (exit code 2 with a message),
# the MPI shard test at np = 3, and the data benchmark.
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
expect_exit 2 "bench: missing dataset" "$YOTO" data-info "$T/shapes.h5" --bench --dataset imgs
contains "bench: missing dataset is named" "$ERR" "no dataset 'imgs'"
expect_exit 2 "bench: split too small for ranks x batch" $MPIRUN -np 2 "$YOTO" data-info "$T/shapes.h5" --bench --range :100
contains "bench: too small is explained" "$ERR" "too few for 2 ranks x 64 images per rank"

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
