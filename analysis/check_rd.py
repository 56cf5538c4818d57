#!/usr/bin/env python3
"""check_rd.py — is the trained YOTO model conditioned? (the demo's check)

Over the beta list of the run's newest evaluation table, the KL must
decrease strictly and the reconstruction loss increase strictly with beta,
on every split: what a family of beta-VAEs does. Prints the table and a
verdict; exit 1 when the ordering does not hold. Losses in nats per image.

usage: /usr/bin/python3 analysis/check_rd.py RUN

  /usr/bin/python3 analysis/check_rd.py runs/fashion_mnist_yoto
"""
import argparse
import sys

import numpy as np

from yotoruns import Run


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run directory")
    a = p.parse_args()
    run = Run(a.run)
    ok = True
    for split, t in run.tables().items():
        t = np.sort(t, order="beta")
        kl_down = bool(np.all(np.diff(t["kl_loss"]) < 0))
        rec_up = bool(np.all(np.diff(t["reconstruction_loss"]) > 0))
        print(f"{split} (step {run.step()}): {len(t)} betas from {t['beta'][0]:g} to {t['beta'][-1]:g}, "
              "losses in nats per image")
        print(f"  {'beta':>8} {'recon':>10} {'kl':>9}")
        for r in t:
            print(f"  {r['beta']:8g} {r['reconstruction_loss']:10.3f} {r['kl_loss']:9.4f}")
        print(f"  KL strictly decreasing: {'yes' if kl_down else 'NO'}; "
              f"reconstruction strictly increasing: {'yes' if rec_up else 'NO'}")
        ok &= kl_down and rec_up
    print("conditioning works: one model behaves like a beta-VAE for every beta" if ok
          else "the ordering does not hold (train longer?)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
