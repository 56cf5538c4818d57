#!/usr/bin/env python3
"""rd_curve.py — loss vs beta and the rate-distortion plane, YOTO vs fixed beta.

For every run directory given, the newest evaluation table (eval/step-N.h5)
is read: a YOTO run gives a curve over its beta list, a fixed-beta run its
point(s). Left: full loss w_rec*recon + beta*KL against beta (log x). Right:
KL (rate) against reconstruction loss (distortion), each point of a YOTO
curve labelled with its beta where the label has room. Losses are in nats
per image. Each run is named after its directory (with the step of its
table), so two runs of one config are told apart.

usage: /usr/bin/python3 analysis/rd_curve.py RUN [RUN...] --out rd.png [--split S]

  /usr/bin/python3 analysis/rd_curve.py runs/fashion_mnist_yoto runs/fashion_mnist_fixed_* --out rd.png
"""
import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from yotoruns import BETA, NATS, open_runs, pick_split, place_labels  # noqa: E402


def figure(paths, split_wanted=None):
    """The two panels for the run directories in paths (a matplotlib Figure)."""
    runs = open_runs(paths)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    shown = []  # (run, split, step, table)
    for run in runs:
        tables = run.tables()
        split = pick_split(tables, split_wanted)
        shown.append((run, split, run.step(), np.sort(tables[split], order="beta")))
    splits = {s for _, s, _, _ in shown}
    labelled, texts, colors, fixed_pts = [], [], [], []
    for i, (run, split, step, t) in enumerate(shown):
        label = f"{run.label}, step {step}" + ("" if len(splits) == 1 else f", {split}")
        if run.fixed:
            kw = dict(marker="s", linestyle="none", markersize=7, color=f"C{i}", label=label)
            fixed_pts += list(zip(t["reconstruction_loss"], t["kl_loss"]))
        else:
            kw = dict(marker="o", markersize=4, color=f"C{i}", label=label)
            labelled += list(zip(t["reconstruction_loss"], t["kl_loss"]))
            texts += [f"{b:g}" for b in t["beta"]]
            colors += [f"C{i}"] * len(t)
        ax1.plot(t["beta"], t["full_loss"], **kw)
        ax2.plot(t["reconstruction_loss"], t["kl_loss"], **kw)
    where = f"{next(iter(splits))} split" if len(splits) == 1 else "held-out splits"
    ax1.set_xscale("log")
    ax1.set_xlabel(f"{BETA} (w_kl, with w_rec = 1)")
    ax1.set_ylabel(f"full loss = recon + {BETA}·KL ({NATS})")
    ax1.set_title(f"loss vs {BETA} ({where})")
    ax2.set_xlabel(f"reconstruction loss, -log p(x|z) ({NATS})")
    ax2.set_ylabel(f"KL(q(z|x) || N(0, I)) ({NATS})")
    kl = np.concatenate([t["kl_loss"] for _, _, _, t in shown])
    if np.all(kl > 0):
        ax2.set_yscale("log")
    else:
        ax2.set_yscale("symlog", linthresh=0.01)
    ax2.set_title(f"rate-distortion ({where}; numbers: {BETA})")
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    if labelled:
        place_labels(ax2, labelled, texts, colors, avoid=fixed_pts)
    return fig


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories (YOTO and fixed-beta)")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--split", help="eval split to plot (default: test/valid, else the first)")
    a = p.parse_args()
    figure(a.runs, a.split).savefig(a.out, dpi=150)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
