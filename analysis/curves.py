#!/usr/bin/env python3
"""curves.py — training and validation curves of one or more runs.

Training (metrics.csv): the loss with each image's own sampled weights and
the unweighted reconstruction and KL terms (means over each logging interval,
over the betas drawn there), the learning rate and images/s, against the
step. Validation (the eval tables eval/step-N.h5 that `eval.every` writes
during training, or `yoto eval` of several checkpoints): the full loss and
the KL at a few betas of the eval list against the step, on a held-out
split. Losses are in nats per image. Runs are named after their directories.
Several runs: one colour per run in the training panels, one colour per beta
and one line style per run in the validation panels.

usage: /usr/bin/python3 analysis/curves.py RUN [RUN...] --out curves.png [--split S] [--betas LIST]

  /usr/bin/python3 analysis/curves.py runs/fashion_mnist_yoto --out curves.png
"""
import argparse
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from yotoruns import BETA, NATS, open_runs, pick_split, spread  # noqa: E402

STYLES = ["-", "--", ":", "-."]


def training(axes, runs):
    """Panels of metrics.csv: loss and recon, KL, learning rate, images/s."""
    ax_loss, ax_kl, ax_lr, ax_ips = axes
    for i, run in enumerate(runs):
        m = run.metrics()
        c = f"C{i}"
        one = len(runs) == 1
        ax_loss.plot(m["step"], m["recon"], color=c if not one else "C1",
                     label="reconstruction" if one else f"{run.dirname}: reconstruction")
        ax_loss.plot(m["step"], m["loss"], color=c if not one else "C0", linestyle="-" if one else "--",
                     label="loss, weighted (w_rec·recon + w_kl·KL)" if one else f"{run.dirname}: weighted loss")
        ax_kl.plot(m["step"], m["kl"], color=c if not one else "C2", label=run.dirname)
        ax_lr.plot(m["step"], m["lr"], color=c if not one else "C3", label=run.dirname)
        ax_ips.plot(m["step"], m["images_per_s"], color=c if not one else "C4", label=run.dirname)
    ax_loss.set_title("training loss (sampled weights)")
    ax_loss.set_ylabel(NATS)
    ax_loss.legend(fontsize=7)
    ax_kl.set_title("training KL (sampled betas)")
    ax_kl.set_ylabel(NATS)
    ax_lr.set_title("learning rate")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_yscale("log")
    ax_ips.set_title("throughput (all ranks)")
    ax_ips.set_ylabel("images / s")
    ax_ips.set_ylim(bottom=0)
    if len(runs) > 1:
        ax_kl.legend(fontsize=7)


def validation(axes, runs, split_wanted, betas_wanted):
    """Panels of the eval tables over the steps: full loss and KL per beta.
    Returns the legend's handles (betas, and runs when several)."""
    ax_full, ax_kl = axes
    splits, any_curve = set(), False
    betas = None
    for i, run in enumerate(runs):
        files = run.eval_files()
        if not files:
            continue
        split = pick_split(run.tables(path=files[-1][1]), split_wanted)
        splits.add(split)
        steps, run_betas, h = run.history(split)
        if betas is None:
            betas = betas_wanted if betas_wanted is not None else spread(run_betas, 5)
        for j, b in enumerate(betas):
            k = np.flatnonzero(np.isclose(run_betas, b))
            if len(k) == 0:
                continue
            kw = dict(color=f"C{j}", linestyle=STYLES[i % len(STYLES)], marker="o", markersize=3)
            ax_full.plot(steps, h["full_loss"][:, k[0]], **kw)
            ax_kl.plot(steps, h["kl_loss"][:, k[0]], **kw)
            any_curve = True
    where = ", ".join(sorted(splits)) or "-"
    ax_full.set_title(f"validation full loss ({where})")
    ax_full.set_ylabel(f"recon + {BETA}·KL ({NATS})")
    ax_kl.set_title(f"validation KL ({where})")
    ax_kl.set_ylabel(NATS)
    if not any_curve:
        for ax in axes:
            ax.text(0.5, 0.5, "no eval tables\n(eval.every, or yoto eval RUN)", ha="center", va="center",
                    transform=ax.transAxes, color="gray")
        return []
    ax_kl.set_yscale("log")
    handles = [Line2D([], [], color=f"C{j}", marker="o", markersize=3, label=f"{BETA} = {b:g}")
               for j, b in enumerate(betas)]
    if len(runs) > 1:
        handles += [Line2D([], [], color="gray", linestyle=STYLES[i % len(STYLES)], label=r.dirname)
                    for i, r in enumerate(runs)]
    return handles


def figure(paths, split=None, betas=None):
    """The six panels for the run directories in paths (a matplotlib Figure)."""
    runs = open_runs(paths)
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    training([axes[0, 0], axes[0, 1], axes[0, 2], axes[1, 2]], runs)
    handles = validation([axes[1, 0], axes[1, 1]], runs, split, betas)
    for ax in axes.flat:
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
    last = ", ".join(f"{r.label} to step {int(r.metrics()['step'][-1])}" for r in runs)
    fig.suptitle(f"{last}")
    bottom = 0
    if handles:  # the validation panels' legend, below them
        fig.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.06, 0.0), ncol=min(len(handles), 8),
                   fontsize=8, title="validation curves", title_fontsize=8, frameon=False)
        bottom = 0.06
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return fig


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--split", help="eval split of the validation curves (default: test/valid, else the first)")
    p.add_argument("--betas", help="betas of the validation curves, e.g. 0.5,8,128 (default: up to 5 "
                   "spread over the eval list)")
    a = p.parse_args()
    betas = None
    if a.betas:
        try:
            betas = [float(x) for x in a.betas.replace(",", " ").split()]
        except ValueError:
            sys.exit(f"curves.py: --betas: expected numbers, found '{a.betas}'")
    figure(a.runs, a.split, betas).savefig(a.out, dpi=120)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
