"""yotoruns.py — reading yoto run directories (shared by the analysis scripts).

A run directory holds config.yaml, metrics.csv and eval/step-N.h5 tables
(docs/FORMATS.md). Only Debian's python3-h5py, python3-numpy and python3-yaml.
"""
import csv
import glob
import os
import re
import sys

import h5py
import numpy as np
import yaml


class Run:
    """One run directory: its config, newest eval tables and metrics."""

    def __init__(self, path):
        self.path = path.rstrip("/")
        cfg_path = os.path.join(self.path, "config.yaml")
        if not os.path.exists(cfg_path):
            sys.exit(f"{path}: not a yoto run directory (no config.yaml)")
        with open(cfg_path) as f:
            self.config = yaml.safe_load(f)
        self.name = self.config["experiment"]["name"]
        lw = self.config["loss_weights"]
        self.fixed = lw["mode"] == "fixed"
        self.beta = lw["kl"]["value"] if self.fixed else None
        self.label = f"fixed beta = {self.beta:g}" if self.fixed else f"YOTO ({self.name})"

    def eval_file(self):
        """The newest eval/step-N.h5, or exit with a message."""
        files = glob.glob(os.path.join(self.path, "eval", "step-*.h5"))
        if not files:
            sys.exit(f"{self.path}: no evaluation tables (run `yoto eval {self.path}` first)")
        return max(files, key=lambda p: int(re.search(r"step-(\d+)\.h5$", p).group(1)))

    def tables(self, all_rows=False):
        """{split: structured array (beta, w_rec, z, n_images, reconstruction_loss,
        kl_loss, full_loss, ...; columns by name, docs/FORMATS.md)}.

        `yoto eval` merges rows into the step's file, so a table can hold rows
        of several settings (w_rec, eval.z, number of images). Unless all_rows,
        each split keeps the rows of one setting, sorted by beta: the setting
        with the most rows (ties: more images), so a curve never mixes them."""
        with h5py.File(self.eval_file(), "r") as f:
            t = {name: f[name][()] for name in f if isinstance(f[name], h5py.Dataset)}
        return t if all_rows else {name: one_setting(rows) for name, rows in t.items()}

    def step(self):
        with h5py.File(self.eval_file(), "r") as f:
            return int(f.attrs["step"])

    def metrics(self):
        """metrics.csv as {column: np.array}"""
        path = os.path.join(self.path, "metrics.csv")
        if not os.path.exists(path):
            sys.exit(f"{self.path}: no metrics.csv")
        with open(path) as f:
            rows = list(csv.DictReader(f))
        if not rows:
            sys.exit(f"{path}: no rows yet")
        return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


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
