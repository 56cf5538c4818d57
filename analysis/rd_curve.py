#!/usr/bin/env python3
"""rd_curve.py — loss vs beta and the rate-distortion plane, YOTO vs fixed beta.

For every run directory given, the newest evaluation table (eval/step-N.h5)
is read: a YOTO run gives a curve over its beta list, a fixed-beta run its
point(s). Left: full loss w_rec*recon + beta*KL against beta (log x). Right:
KL (rate) against reconstruction loss (distortion).

  /usr/bin/python3 analysis/rd_curve.py runs/fashion_mnist_yoto runs/fashion_mnist_fixed_* --out rd.png
"""
import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from yotoruns import Run, pick_split  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories (YOTO and fixed-beta)")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--split", help="eval split to plot (default: test/valid, else the first)")
    a = p.parse_args()

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    split = None
    for path in a.runs:
        run = Run(path)
        tables = run.tables()
        split = pick_split(tables, a.split)
        t = tables[split]
        if run.fixed:
            kw = dict(marker="s", linestyle="none", markersize=7, label=run.label)
        else:
            kw = dict(marker="o", markersize=4, label=run.label)
        ax1.plot(t["beta"], t["full_loss"], **kw)
        ax2.plot(t["reconstruction_loss"], t["kl_loss"], **kw)
        if not run.fixed:
            for r in t[:: max(1, len(t) // 6)]:
                ax2.annotate(f"{r['beta']:g}", (r["reconstruction_loss"], r["kl_loss"]),
                             textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax1.set_xscale("log")
    ax1.set_xlabel("beta (w_kl, with w_rec = 1)")
    ax1.set_ylabel("full loss = recon + beta KL")
    ax1.set_title(f"loss vs beta ({split})")
    ax2.set_xlabel("reconstruction loss (distortion)")
    ax2.set_ylabel("KL (rate)")
    ax2.set_yscale("symlog", linthresh=0.1)
    ax2.set_title(f"rate-distortion ({split})")
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
