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

    def tables(self):
        """{split: structured array (beta, w_rec, reconstruction_loss, kl_loss, full_loss, n_images)}"""
        with h5py.File(self.eval_file(), "r") as f:
            return {name: f[name][()] for name in f if isinstance(f[name], h5py.Dataset)}

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
