#!/usr/bin/env bash
# tests/fuzz/make_seeds.sh — (re)makes the seed corpora in tests/fuzz/corpus/
# (run from anywhere; needs `make` done, /usr/bin/python3 with numpy and
# h5py). Seeds are small valid inputs, plus a few near misses; libFuzzer
# mutates them. The files are committed: this script says how they were made.
set -eu
cd "$(dirname "$0")/../.."
C=tests/fuzz/corpus
PY=/usr/bin/python3
YOTO=$PWD/bin/yoto
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -rf "$C" && mkdir -p "$C"/{config,idx,cifar,datafile,ckpt}

# config: the shipped configs, and overrides after NUL bytes
for f in configs/*.yaml; do cp "$f" "$C/config/$(basename "$f")"; done
cfg=configs/fashion_mnist_conv_vae_yoto.yaml
{ cat "$cfg"; printf '\0model.latent_dim=8\0train.steps=5\0data.splits[1].range=:10%%'; } >"$C/config/sets.bin"
{ cat "$cfg"; printf "\0model.encoder.fc_sizes=[16, 8]\0eval.betas=[1, 2.5]\0data.preprocess_train=[\"resize(16)\"]"; } >"$C/config/sets_lists.bin"
printf 'experiment: {name: x}\n' >"$C/config/minimal.yaml"
# its dictionary: every key of a resolved config, "section.key=" for --set, YAML syntax, values
{
    "$YOTO" config "$cfg" | awk '
        /^[a-z_]+:/ { sec = substr($1, 1, length($1) - 1); print "\"" $1 "\""; next }
        /^  [a-z_]+:/ { k = $1; print "\"" k "\""; print "\"" sec "." substr(k, 1, length(k) - 1) "=\"" }
        /^ *- [a-z_]+:/ { print "\"" $2 "\"" }'
    for t in '{' '}' '[' ']' ': ' '- ' '"' "'" '&a' '*a' '!!str' '---' '...' '#' '~' 'null' \
        true false yes no .inf -.inf .nan 1e309 -1 0x10 '%' '20%:' ':-10%' 'pad(32)' 'resize(16)' \
        'value_range(0, 1)' 'random_crop(24)' 'flip_lr()' log_uniform uniform fixed film none \
        bernoulli gaussian fan_in sample mean blocking overlap; do
        printf '"%s"\n' "$(printf '%s' "$t" | sed 's/\\/\\\\/g; s/"/\\"/g')"
    done
    echo '"\x0A"' # a newline
} | sort -u >tests/fuzz/config.dict

# IDX (fashion-mnist / mnist), plain and gzipped; CIFAR-10 batches
"$PY" - "$C" "$tmp" <<'PY'
import gzip, os, struct, sys
import numpy as np
c, tmp = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(1)
def idx(dims, hi=256):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + \
        rng.integers(0, hi, int(np.prod(dims)), dtype=np.uint8).tobytes()
files = {"labels1d.idx": idx([10]), "images3d.idx": idx([3, 4, 5]), "images3d_short.idx": idx([3, 4, 5])[:-7],
         "floats.idx": bytes([0, 0, 0x0d, 1, 0, 0, 0, 2]) + bytes(8)}
for n, b in files.items():
    open(os.path.join(c, "idx", n), "wb").write(b)
open(os.path.join(c, "idx", "images3d.idx.gz"), "wb").write(gzip.compress(files["images3d.idx"], 9))
open(os.path.join(c, "idx", "labels1d.idx.gz"), "wb").write(gzip.compress(files["labels1d.idx"], 9))
def cifar(n):
    out = b""
    for i in range(n):
        out += bytes([int(rng.integers(0, 10))]) + rng.integers(0, 256, 3072, dtype=np.uint8).tobytes()
    return out
open(os.path.join(c, "cifar", "one.bin"), "wb").write(cifar(1))
open(os.path.join(c, "cifar", "two.bin"), "wb").write(cifar(2))
# a tiny MNIST-style source directory for `yoto prepare mnist` (the data-file seeds)
src = os.path.join(tmp, "mnist")
os.makedirs(src)
for split, n in (("train", 6), ("t10k", 3)):
    open(os.path.join(src, split + "-images-idx3-ubyte"), "wb").write(idx([n, 8, 8]))
    open(os.path.join(src, split + "-labels-idx1-ubyte"), "wb").write(idx([n], 10))
PY

# data files: what `yoto prepare` writes (chunked + deflate; contiguous), and hand-made ones
"$YOTO" prepare --contiguous mnist "$tmp/mnist" "$C/datafile/prepared_contiguous.h5" >/dev/null
"$PY" - "$C/datafile" <<'PY'
import os, sys
import h5py, numpy as np
d = sys.argv[1]
with h5py.File(os.path.join(d, "images_hwc.h5"), "w", libver="earliest") as f:
    f["images"] = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    f["labels"] = np.zeros((2, 6))
with h5py.File(os.path.join(d, "chunked_gzip.h5"), "w", libver="earliest") as f:
    g = f.create_group("train")
    g.create_dataset("images", data=np.arange(4 * 6 * 6, dtype=np.uint8).reshape(4, 6, 6, 1),
                     chunks=(2, 6, 6, 1), compression="gzip", compression_opts=4)
    g.attrs["format"] = "yoto-dataset"
with h5py.File(os.path.join(d, "floats.h5"), "w", libver="earliest") as f:
    f["images"] = np.zeros((2, 3, 3), dtype=np.float32)
    f.create_group("train")["images"] = np.zeros((1, 2, 2), dtype=np.uint8)
PY

# checkpoints of fuzz_ckpt's model, written by ckpt_save (format 2), and made format 1
mpicc $(make -s print-cflags) -Itests/fuzz tests/fuzz/make_ckpt_seed.c $(ls build/rel/src/*.o | grep -v main.o) \
    -o "$tmp/mkseed" $(make -s print-ldlibs)
"$tmp/mkseed" "$tmp/run"
cp "$tmp/run/ckpt/step-000000001.h5" "$C/ckpt/v2.h5"
cp "$C/ckpt/v2.h5" "$C/ckpt/v1.h5"
"$PY" - "$C/ckpt/v1.h5" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r+") as f:
    f.attrs["format_version"] = 1
    del f.attrs["state_crc32"]
    del f["config"].attrs["crc32"]
    f.visititems(lambda n, o: o.attrs.__delitem__("crc32") if isinstance(o, h5py.Dataset) and "crc32" in o.attrs else None)
PY
ls -la "$C"/*
