#!/usr/bin/env python3
"""compare.py — YOTO vs fixed-beta models, beta by beta, as a Markdown table.

For each fixed-beta run, its full loss at its own beta is compared with the
YOTO model's full loss at the same beta (from the YOTO run's newest table,
which must contain that beta; `yoto eval --beta` adds one). The gap is
(YOTO - fixed) / fixed: positive means the single YOTO model is worse than
the model trained for that beta alone. Losses in nats per image.

usage: /usr/bin/python3 analysis/compare.py YOTO_RUN FIXED_RUN [FIXED_RUN...] [--split S] [--out table.md]

  /usr/bin/python3 analysis/compare.py runs/fashion_mnist_yoto runs/fashion_mnist_fixed_*
"""
import argparse
import sys

import numpy as np

from yotoruns import NATS, Run, pick_split


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("yoto", help="the YOTO run directory")
    p.add_argument("fixed", nargs="+", help="fixed-beta run directories")
    p.add_argument("--split", help="eval split (default: test/valid, else the first)")
    p.add_argument("--out", help="also write the table to this Markdown file")
    a = p.parse_args()

    yoto = Run(a.yoto)
    ytab = yoto.tables()
    split = pick_split(ytab, a.split)
    yt = ytab[split]
    lines = [f"YOTO: `{yoto.path}` (step {yoto.step()}), split `{split}`; losses in {NATS}", "",
             "| beta | YOTO full loss | fixed full loss | gap | YOTO recon | fixed recon | YOTO KL | fixed KL "
             "| fixed run (step) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    rows = []
    for path in a.fixed:
        run = Run(path)
        if not run.fixed:
            sys.exit(f"{path}: not a fixed-beta run (loss_weights.mode is not fixed)")
        ft = run.tables()
        if split not in ft:
            sys.exit(f"{path}: no split '{split}' in its table")
        f = ft[split]
        f = f[np.isclose(f["beta"], run.beta)]
        y = yt[np.isclose(yt["beta"], run.beta)]
        if len(f) == 0:
            sys.exit(f"{path}: its table has no row for its own beta {run.beta:g}")
        if len(y) == 0:
            sys.exit(f"{a.yoto}: no row for beta {run.beta:g}; run `yoto eval {a.yoto} --beta ...` with it")
        f, y = f[0], y[0]
        gap = (y["full_loss"] - f["full_loss"]) / f["full_loss"]
        rows.append((run.beta, f"| {run.beta:g} | {y['full_loss']:.3f} | {f['full_loss']:.3f} | {100 * gap:+.2f}% "
                     f"| {y['reconstruction_loss']:.3f} | {f['reconstruction_loss']:.3f} "
                     f"| {y['kl_loss']:.3f} | {f['kl_loss']:.3f} | `{run.path}` ({run.step()}) |"))
    lines += [r for _, r in sorted(rows)]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if a.out:
        with open(a.out, "w") as out:
            out.write(text)


if __name__ == "__main__":
    main()
