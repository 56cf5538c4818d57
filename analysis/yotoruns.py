"""yotoruns.py — reading yoto run directories (shared by the analysis scripts).

A run directory holds config.yaml, metrics.csv and eval/step-N.h5 tables
(docs/FORMATS.md). Only Debian's python3-h5py, python3-numpy and python3-yaml.

Runs are named after their directories, not their configs: two runs of one
config (another seed, another rank count, a rerun) get different labels.
Losses are in nats per image (summed over pixels and latents, averaged over
images).
"""
import csv
import glob
import os
import re
import sys

import h5py
import numpy as np
import yaml

NATS = "nats per image"
BETA = "\N{GREEK SMALL LETTER BETA}"


class Run:
    """One run directory: its config, eval tables (newest, or all over the
    steps) and metrics."""

    def __init__(self, path):
        self.path = os.path.normpath(path)
        cfg_path = os.path.join(self.path, "config.yaml")
        if not os.path.exists(cfg_path):
            sys.exit(f"{path}: not a yoto run directory (no config.yaml)")
        with open(cfg_path) as f:
            self.config = yaml.safe_load(f)
        self.name = self.config["experiment"]["name"]
        lw = self.config["loss_weights"]
        self.fixed = lw["mode"] == "fixed"
        self.beta = lw["kl"]["value"] if self.fixed else None
        self.dirname = os.path.basename(os.path.abspath(self.path))
        self.kind = f"fixed {BETA} = {self.beta:g}" if self.fixed else "YOTO"

    @property
    def label(self):
        """'<run directory> (YOTO)' or '<run directory> (fixed β = 8)'"""
        return f"{self.dirname} ({self.kind})"

    def eval_files(self):
        """[(step, path)] of eval/step-N.h5, oldest first (maybe empty)."""
        out = []
        for p in glob.glob(os.path.join(self.path, "eval", "step-*.h5")):
            m = re.search(r"step-(\d+)\.h5$", p)
            if m:
                out.append((int(m.group(1)), p))
        return sorted(out)

    def eval_file(self):
        """The newest eval/step-N.h5, or exit with a message."""
        files = self.eval_files()
        if not files:
            sys.exit(f"{self.path}: no evaluation tables (run `yoto eval {self.path}` first)")
        return files[-1][1]

    def tables(self, all_rows=False, path=None):
        """{split: structured array (beta, w_rec, z, n_images, reconstruction_loss,
        kl_loss, full_loss, ...; columns by name, docs/FORMATS.md)} of the newest
        table, or of the table file `path`.

        `yoto eval` merges rows into the step's file, so a table can hold rows
        of several settings (w_rec, eval.z, number of images). Unless all_rows,
        each split keeps the rows of one setting, sorted by beta: the setting
        with the most rows (ties: more images), so a curve never mixes them."""
        with h5py.File(path or self.eval_file(), "r") as f:
            t = {name: f[name][()] for name in f if isinstance(f[name], h5py.Dataset)}
        return t if all_rows else {name: one_setting(rows) for name, rows in t.items()}

    def step(self):
        """The training step of the newest table."""
        with h5py.File(self.eval_file(), "r") as f:
            return int(f.attrs["step"])

    def history(self, split):
        """The eval tables over the steps (eval.every during training, or
        `yoto eval` of several checkpoints) for one split: (steps [T], betas [B],
        {field: [T, B] array}), NaN where a table lacks a beta."""
        rows = []
        for step, path in self.eval_files():
            t = self.tables(path=path)
            if split in t:
                rows.append((step, t[split]))
        if not rows:
            return np.zeros(0, int), np.zeros(0), {}
        betas = np.unique(np.concatenate([t["beta"] for _, t in rows]))
        fields = ("reconstruction_loss", "kl_loss", "full_loss")
        out = {k: np.full((len(rows), len(betas)), np.nan) for k in fields}
        for i, (_, t) in enumerate(rows):
            j = np.searchsorted(betas, t["beta"])
            for k in fields:
                out[k][i, j] = t[k]
        return np.array([s for s, _ in rows]), betas, out

    def metrics(self):
        """metrics.csv as {column: np.array} (numeric columns only)"""
        path = os.path.join(self.path, "metrics.csv")
        if not os.path.exists(path):
            sys.exit(f"{self.path}: no metrics.csv")
        with open(path) as f:
            rows = list(csv.DictReader(f))
        if not rows:
            sys.exit(f"{path}: no rows yet")
        out = {}
        for k in rows[0]:
            try:
                out[k] = np.array([float(r[k]) for r in rows])
            except (TypeError, ValueError):
                pass
        return out


def open_runs(paths):
    """Run objects for paths, labelled so that no two labels are equal: each
    run's directory name, with as many of its parent directories as it takes
    to tell it from the others (runs/a/x and runs/b/x: a/x and b/x)."""
    runs = [Run(p) for p in paths]
    parts = [os.path.abspath(r.path).split(os.sep) for r in runs]
    for i, (r, p) in enumerate(zip(runs, parts)):
        d = 1
        while d < len(p) and any(q[-d:] == p[-d:] for j, q in enumerate(parts) if j != i and q != p):
            d += 1
        r.dirname = os.sep.join(p[-d:])
    return runs


def one_setting(t):
    """The rows of t with the most common (w_rec, z, n_images), sorted by beta."""
    keys = [k for k in ("w_rec", "z", "n_images") if k in (t.dtype.names or ())]
    if not keys or len(t) == 0:
        return t
    groups = {}
    for i, r in enumerate(t):
        groups.setdefault(tuple(r[k] for k in keys), []).append(i)
    images = keys.index("n_images") if "n_images" in keys else None
    _, rows = max(groups.items(), key=lambda g: (len(g[1]), g[0][images] if images is not None else 0))
    sel = t[rows]
    return sel[np.argsort(sel["beta"], kind="stable")]


def pick_split(tables, wanted):
    """The split to show: wanted, else a held-out one (valid/test), else the first."""
    if wanted:
        if wanted not in tables:
            sys.exit(f"no split '{wanted}' in the tables ({', '.join(tables)})")
        return wanted
    for s in ("test", "valid"):
        if s in tables:
            return s
    return next(iter(tables))


def spread(values, n):
    """Up to n of the sorted values, evenly spread in log scale (ends included)."""
    values = np.sort(np.asarray(values, dtype=float))
    if len(values) <= n:
        return values
    want = np.exp(np.linspace(np.log(values[0]), np.log(values[-1]), n))
    idx = sorted({int(np.argmin(np.abs(np.log(values) - np.log(w)))) for w in want})
    return values[idx]


def place_labels(ax, points, texts, colors=None, avoid=(), fontsize=7):
    """Annotates points (data coordinates) with texts where they overlap neither
    each other nor the points (nor the points in avoid): each label tries eight
    offsets around its point; a label with no free place is left out. colors:
    one matplotlib color per label (default black). Call it
    after the axes' scales and limits are final. Returns the labels drawn."""
    fig = ax.figure
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    marks = [p for p in points] + [p for p in avoid]
    disp = ax.transData.transform(np.asarray(marks, dtype=float).reshape(-1, 2))
    pad = 3.5  # pixels kept free around each marker
    taken = [(x - pad, y - pad, x + pad, y + pad) for x, y in disp]
    offsets = [(5, 5), (5, -11), (-5, 5), (-5, -11), (8, -3), (-8, -3), (0, 9), (0, -14)]
    drawn = []
    colors = colors or ["black"] * len(texts)
    for (px, py), text, color in zip(points, texts, colors):
        for dx, dy in offsets:
            a = ax.annotate(text, (px, py), textcoords="offset points", xytext=(dx, dy), fontsize=fontsize,
                            ha="left" if dx >= 0 else "right", color=color)
            bb = a.get_window_extent(r)
            box = (bb.x0, bb.y0, bb.x1, bb.y1)
            inside = ax.get_window_extent(r)
            fits = inside.x0 <= box[0] and box[2] <= inside.x1 and inside.y0 <= box[1] and box[3] <= inside.y1
            if fits and not any(box[0] < t[2] and t[0] < box[2] and box[1] < t[3] and t[1] < box[3] for t in taken):
                taken.append(box)
                drawn.append(a)
                break
            a.remove()
    return drawn


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] + " Prints what each run holds.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run directories")
    a = ap.parse_args()
    for run in open_runs(a.runs):
        files = run.eval_files()
        print(f"{run.path}: {run.label}, config {run.name}; "
              f"eval tables at steps {[s for s, _ in files] or 'none'}")
