"""yotomodel.py — a yoto checkpoint as a NumPy model: encode, decode, reconstruct, sample.

Rebuilds the loss-conditional VAE of a checkpoint from its /params and its
/config (docs/FORMATS.md) with NumPy alone (Debian's python3-numpy, -h5py,
-yaml), computing in float64:

    import yotomodel
    m = yotomodel.load("runs/fashion_mnist_yoto")        # newest checkpoint, or a .h5 file
    x = m.split_images("test", 8)                       # [8, H, W, C], as the eval pipeline makes them
    mean, sigma = m.encode(x, beta=8)                   # [8, latent] each
    xr = m.reconstruct(x, beta=8)                       # decoded from the posterior mean
    s = m.sample(16, beta=8, seed=0)                    # decoded prior samples
    recon, kl = m.losses(x, beta=8)                     # per image, z = mean (yoto eval --set eval.z=mean)

Images are NHWC like the data files: uint8 images go through the config's eval
preprocessing (data.preprocess_eval: resize, pad, value_range), float images
are taken as already preprocessed. decode() returns the image the likelihood
predicts: sigmoid(logits) for Bernoulli, the means for Gaussian.

The network follows src/model.c and src/layers.c: layouts [C][H][W] per
image, 3x3 convolutions with TensorFlow 'SAME' padding (the smaller half
before: stride 2 on an even size pads 0 before and 1 after), the decoder's
transposed convolutions as the exact adjoints of the stride-2 convs, FiLM
scale = scales_mult * MLP(c) + scales_add and shift = shifts_mult * MLP(c) +
shifts_add on the conditioning c = (f(w_kl), f(w_rec)), leaky ReLU slopes
model.alpha (conv blocks) and model.dense_alpha (between dense layers), and
sigma = eps + softplus. A model without conditioning (fixed-beta baselines)
ignores beta. tests/e2e/test_encode.sh checks it against `yoto eval` and
`yoto encode`.
"""
import os
import re

import h5py
import numpy as np
import yaml

__all__ = ["load", "YotoModel"]


def load(path):
    """The model of a run directory (its newest checkpoint) or of a checkpoint file."""
    return YotoModel(path)


def _checkpoint_of(path):
    if os.path.isdir(path):
        latest = os.path.join(path, "ckpt", "latest")
        if not os.path.exists(latest):
            raise FileNotFoundError(f"{path}: no checkpoint in this run directory (no ckpt/latest)")
        with open(latest) as f:
            return os.path.join(path, "ckpt", f.read().strip())
    return path


# ---- layers (NCHW batches) ----------------------------------------------------------------

def _lrelu(x, alpha):
    return np.where(x > 0, x, alpha * x)


def _softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _same_pad(size, stride):
    """TF 'SAME' for a 3x3 kernel: (output size, padding before)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + 3 - size, 0)
    return out, total // 2


def _conv(x, k, b, stride):
    """x [N, Ci, H, W], k [Co, Ci, 3, 3] (PyTorch Conv2d), 'SAME' -> [N, Co, Ho, Wo]."""
    n, _, h, w = x.shape
    ho, top = _same_pad(h, stride)
    wo, left = _same_pad(w, stride)
    xp = np.zeros((n, x.shape[1], (ho - 1) * stride + 3, (wo - 1) * stride + 3))
    hh, ww = min(h, xp.shape[2] - top), min(w, xp.shape[3] - left)
    xp[:, :, top:top + hh, left:left + ww] = x[:, :, :hh, :ww]
    y = np.zeros((n, k.shape[0], ho, wo))
    for kh in range(3):
        for kw in range(3):
            patch = xp[:, :, kh:kh + stride * (ho - 1) + 1:stride, kw:kw + stride * (wo - 1) + 1:stride]
            y += np.einsum("nchw,oc->nohw", patch, k[:, :, kh, kw])
    return y + b[None, :, None, None]


def _deconv(x, k, b, stride):
    """Transposed conv, the adjoint of the 'SAME' conv from [Co, H*s, W*s] to [Ci, H, W]:
    x [N, Ci, H, W], k [Ci, Co, 3, 3] (PyTorch ConvTranspose2d) -> [N, Co, H*s, W*s]."""
    n, _, h, w = x.shape
    H, W = h * stride, w * stride
    _, top = _same_pad(H, stride)
    _, left = _same_pad(W, stride)
    yp = np.zeros((n, k.shape[1], (h - 1) * stride + 3, (w - 1) * stride + 3))
    for kh in range(3):
        for kw in range(3):
            yp[:, :, kh:kh + stride * (h - 1) + 1:stride, kw:kw + stride * (w - 1) + 1:stride] += \
                np.einsum("nchw,co->nohw", x, k[:, :, kh, kw])
    y = np.zeros((n, k.shape[1], H, W))
    hh, ww = min(H, yp.shape[2] - top), min(W, yp.shape[3] - left)
    y[:, :, :hh, :ww] = yp[:, :, top:top + hh, left:left + ww]
    return y + b[None, :, None, None]


# ---- preprocessing (the eval pipeline) ------------------------------------------------------

def _resize(x, oh, ow):
    """TF1 legacy bilinear (align_corners=False, half_pixel_centers=False), as preprocess.c."""
    _, h, w, _ = x.shape
    fy, fx = np.arange(oh) * (h / oh), np.arange(ow) * (w / ow)
    y0, x0 = fy.astype(int), fx.astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    ly, lx = (fy - y0)[None, :, None, None], (fx - x0)[None, None, :, None]
    top = x[:, y0][:, :, x0] + (x[:, y0][:, :, x1] - x[:, y0][:, :, x0]) * lx
    bot = x[:, y1][:, :, x0] + (x[:, y1][:, :, x1] - x[:, y1][:, :, x0]) * lx
    return top + (bot - top) * ly


def _pad(x, n):
    _, h, w, c = x.shape
    out = np.zeros((x.shape[0], n, n, c))
    top, left = (n - h) // 2, (n - w) // 2
    out[:, top:top + h, left:left + w] = x
    return out


def _ops(pipeline):
    for text in pipeline:
        m = re.fullmatch(r"\s*(\w+)\s*\((.*)\)\s*", text)
        if not m:
            raise ValueError(f"preprocessing op '{text}' not understood")
        args = [float(a) for a in m.group(2).split(",") if a.strip()]
        yield m.group(1), args


def _range_resolve(text, nrows):
    """config_range_resolve: "", "20%:", ":20%", "100:200", "-10%:", "5000"."""
    def bound(s, default):
        s = s.strip()
        if not s:
            return default
        pct = s.endswith("%")
        v = float(s[:-1]) if pct else int(s)
        rows = round(v * nrows / 100.0) if pct else v  # Python's round: ties to even
        if rows < 0:
            rows += nrows
        return int(min(max(rows, 0), nrows))
    if ":" not in text:
        return (0, nrows) if not text.strip() else (0, bound(text, nrows))
    a, b = text.split(":")
    lo, hi = bound(a, 0), bound(b, nrows)
    return lo, max(lo, hi)


# ---- the model ---------------------------------------------------------------------------------

class YotoModel:
    def __init__(self, path):
        self.checkpoint = _checkpoint_of(path)
        with h5py.File(self.checkpoint, "r") as f:
            if f.attrs.get("format") not in ("yoto-checkpoint", b"yoto-checkpoint"):
                raise ValueError(f"{self.checkpoint}: not a yoto checkpoint")
            self.step = int(f.attrs["step"])
            self.config = yaml.safe_load(f["config"][()].decode())
            self.params = {}
            f["params"].visititems(lambda name, o: self.params.__setitem__(
                name, o[()].astype(np.float64)) if isinstance(o, h5py.Dataset) else None)
        mc = self.config["model"]
        self.latent = mc["latent_dim"]
        self.input_shape = tuple(mc["input_shape"])  # (h, w, c)
        self.film = mc["conditioning"]["type"] == "film"
        lw = self.config["loss_weights"]
        self.trained_betas = ((lw["kl"]["value"],) * 2 if lw["kl"]["distribution"] == "fixed"
                              else (lw["kl"]["low"], lw["kl"]["high"]))

    # -- pieces --
    def _p(self, name):
        return self.params[name]

    def _mlp(self, prefix, x, count):
        a = self.config["model"]["dense_alpha"]
        for i in range(count):
            x = x @ self._p(f"{prefix}/dense{i}/kernel").T + self._p(f"{prefix}/dense{i}/bias")
            if i + 1 < count:
                x = _lrelu(x, a)
        return x

    def _count(self, prefix):
        return sum(1 for n in self.params if n.startswith(prefix + "/dense") and n.endswith("/kernel"))

    def cond(self, beta, n):
        """The conditioning input [n, 2] for w_kl = beta, w_rec = eval.w_rec."""
        lw = self.config["loss_weights"]
        wkl, wrec = float(beta), float(self.config["eval"]["w_rec"])
        if lw["normalize"]:
            g = np.sqrt(wkl * wrec)
            wkl, wrec = wkl / g, wrec / g
        f = np.log if lw["transform"] == "log" else (lambda v: v)
        return np.tile([f(wkl), f(wrec)], (n, 1))

    def _block(self, part, b, x, c, deconv, out_lrelu):
        mc = self.config["model"]
        layers = mc["decoder" if deconv else "encoder"]["layers_per_block"]
        for l in range(layers):
            name = f"{part}/block{b}/{'deconv' if deconv else 'conv'}{l}"
            k, bias = self._p(name + "/kernel"), self._p(name + "/bias")
            if deconv:
                x = _deconv(x, k, bias, 2 if l == layers - 1 else 1)
            else:
                x = _conv(x, k, bias, 2 if l == 0 else 1)
            if l + 1 < layers:
                x = _lrelu(x, mc["alpha"])
        if self.film:
            cm = mc["conditioning"]
            pre = f"{part}/block{b}/film"
            s = cm["scales_mult"] * self._mlp(pre + "/scale", c, self._count(pre + "/scale")) + cm["scales_add"]
            t = cm["shifts_mult"] * self._mlp(pre + "/shift", c, self._count(pre + "/shift")) + cm["shifts_add"]
            x = s[:, :, None, None] * x + t[:, :, None, None]
        return _lrelu(x, mc["alpha"]) if out_lrelu else x

    def _as_input(self, images):
        x = np.asarray(images)
        if x.dtype == np.uint8:
            x = self.preprocess(x)
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 3:
            x = x[..., None]
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"images of shape {x.shape[1:]}, the model takes {self.input_shape}")
        return x

    # -- the public face --
    def preprocess(self, images):
        """uint8 images [N, H, W(, C)] through data.preprocess_eval -> float [N, h, w, c]."""
        x = np.asarray(images, dtype=np.float64)
        if x.ndim == 3:
            x = x[..., None]
        for op, args in _ops(self.config["data"]["preprocess_eval"]):
            if op == "value_range":
                x = args[0] + x / 255.0 * (args[1] - args[0])
            elif op == "resize":
                x = _resize(x, int(args[0]), int(args[0]))
            elif op == "pad":
                x = _pad(x, int(args[0]))
            else:
                raise NotImplementedError(f"eval preprocessing op {op}() (random) is not supported")
        return x

    def split_images(self, split, n=None):
        """The first n images (all: None) of a split of data.splits, preprocessed."""
        sp = [s for s in self.config["data"]["splits"] if s["name"] == split]
        if not sp:
            raise KeyError(f"no split '{split}' in data.splits")
        sp = sp[0]
        with h5py.File(sp["file"] or self.config["data"]["file"], "r") as f:
            d = f[sp["dataset"]]
            lo, hi = _range_resolve(sp["range"], d.shape[0])
            if n is not None:
                hi = min(hi, lo + n)
            return self.preprocess(d[lo:hi])

    def encode(self, images, beta):
        """Posterior (mean, sigma), each [N, latent], of NHWC images at this beta."""
        x = self._as_input(images).transpose(0, 3, 1, 2)
        c = self.cond(beta, len(x))
        nb = self.config["model"]["encoder"]["num_blocks"]
        for b in range(nb):
            x = self._block("encoder", b, x, c, False, b + 1 < nb)
        code = self._mlp("encoder/fc", x.reshape(len(x), -1), self._count("encoder/fc"))
        L = self.latent
        return code[:, :L], self.config["model"]["eps"] + _softplus(code[:, L:])

    def decode_raw(self, z, beta):
        """The decoder's output [N, out_c, H, W]: Bernoulli logits or Gaussian (means, raw sigmas)."""
        z = np.asarray(z, dtype=np.float64)
        c = self.cond(beta, len(z))
        mc = self.config["model"]
        h, w, ch = mc["decoder"]["reshape"]
        x = self._mlp("decoder/fc", z, self._count("decoder/fc")).reshape(len(z), ch, h, w)
        for b in reversed(range(mc["decoder"]["num_blocks"])):
            x = self._block("decoder", b, x, c, True, True)
        return _conv(x, self._p("decoder/out/conv/kernel"), self._p("decoder/out/conv/bias"), 1)

    def decode(self, z, beta):
        """The predicted images [N, H, W, C]: sigmoid(logits) (Bernoulli) or the means (Gaussian)."""
        out = self.decode_raw(z, beta)
        C = self.input_shape[2]
        if self.config["model"]["output_distribution"] == "bernoulli":
            img = 1 / (1 + np.exp(-out))
        else:
            img = out[:, :C]
        return img.transpose(0, 2, 3, 1)

    def reconstruct(self, images, beta):
        """decode(posterior mean) of the images at this beta."""
        return self.decode(self.encode(images, beta)[0], beta)

    def sample(self, n, beta, seed=0):
        """n images decoded from z ~ N(0, I) (NumPy's generator with this seed)."""
        z = np.random.default_rng(seed).standard_normal((n, self.latent))
        return self.decode(z, beta)

    def losses(self, images, beta):
        """Per image (reconstruction_loss, kl_loss) with z = the posterior mean, as
        `yoto eval --set eval.z=mean`: -log p(x|z) summed over pixels and KL summed over latents."""
        x = self._as_input(images)
        mean, sigma = self.encode(x, beta)
        out = self.decode_raw(mean, beta)
        t = x.transpose(0, 3, 1, 2)
        if self.config["model"]["output_distribution"] == "bernoulli":
            rec = _softplus(out) - t * out
        else:
            C = t.shape[1]
            s = self.config["model"]["eps"] + _softplus(out[:, C:])
            rec = 0.5 * np.log(2 * np.pi) + np.log(s) + 0.5 * ((t - out[:, :C]) / s) ** 2
        kl = (0.5 * (mean ** 2 + sigma ** 2 - 1) - np.log(sigma)).sum(1)
        return rec.reshape(len(x), -1).sum(1), kl
