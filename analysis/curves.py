#!/usr/bin/env python3
"""curves.py — training curves of a run from its metrics.csv.

Loss, reconstruction and KL (means over each logging interval, at the sampled
betas), learning rate and images/s against the step.

  /usr/bin/python3 analysis/curves.py runs/fashion_mnist_yoto --out curves.png
"""
import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from yotoruns import Run  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run directory")
    p.add_argument("--out", required=True, help="PNG to write")
    a = p.parse_args()

    run = Run(a.run)
    m = run.metrics()
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    axes[0].plot(m["step"], m["loss"], label="loss (weighted)")
    axes[0].plot(m["step"], m["recon"], label="reconstruction")
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=8)
    axes[1].plot(m["step"], m["kl"], color="C2")
    axes[1].set_title("KL")
    axes[2].plot(m["step"], m["lr"], color="C3")
    axes[2].set_yscale("log")
    axes[2].set_title("learning rate")
    axes[3].plot(m["step"], m["images_per_s"], color="C4")
    axes[3].set_title("images/s (all ranks)")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
    axes[0].set_title(f"{run.label}: training")
    fig.tight_layout()
    fig.savefig(a.out, dpi=100)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
