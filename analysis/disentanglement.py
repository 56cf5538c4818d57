#!/usr/bin/env python3
"""disentanglement.py — the disentanglement-vs-beta study's table and figure,
from the results directory jobs/disentanglement.sh fills.

OUT holds run directories yoto-s<seed> and fixed-b<beta>-s<seed> and
tables/<run>.csv (`yoto eval` of each run on the metrics split: the YOTO model
at every beta, a fixed model at its own). For every beta: the YOTO model's
MIG, SAP, FactorVAE score, DCI disentanglement and completeness of the
posterior means (docs/METRICS.md), its KL and reconstruction loss (nats per
image), as mean ± std over seeds; beside them the fixed-beta models at their
betas. The figure draws each metric (and the KL) against beta: the YOTO
curve, the fixed models' points. With codes/<run>.h5 (`yoto encode` of the
same images) it also says how many codes are active (std >= 0.05) and, at
each fixed model's beta, which factor each active code of either model
carries: its mutual information with each factor over the factor's entropy
(20 bins, as MIG). The compute of every run comes from <run>.seconds (a line
"wall user system" in seconds per training session), <run>.eval.seconds and
<run>.encode.seconds.

  /usr/bin/python3 analysis/disentanglement.py results/disentanglement-2500 --out dis.md --plot dis.png
"""
import argparse
import csv
import glob
import json
import math
import os
import re
import sys

import numpy as np

METRICS = [("mig", "MIG"), ("sap", "SAP"), ("factorvae", "FactorVAE score"),
           ("dci_disentanglement", "DCI disentanglement"), ("dci_completeness", "DCI completeness")]
LOSSES = [("kl_loss", "KL"), ("reconstruction_loss", "recon")]
COLUMNS = [k for k, _ in METRICS] + [k for k, _ in LOSSES]
FACTORS = ["floor hue", "wall hue", "object hue", "scale", "shape", "orientation"]  # 3dshapes' order
ACTIVE_STD = 0.05  # as the FactorVAE score's pruning (docs/METRICS.md)


def read_table(path):
    """{beta: {column: value}} of one eval CSV (its one split, z = mean, the most images)."""
    with open(path) as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    missing = [c for c in COLUMNS + ["beta", "n_images", "split"] if rows and c not in rows[0]]
    if missing:
        sys.exit(f"{path}: no column {', '.join(missing)} (a table of an older yoto?)")
    n = max((int(r["n_images"]) for r in rows), default=0)
    out = {}
    for r in rows:
        if int(r["n_images"]) == n and r.get("z", "mean") in ("mean", ""):
            out[float(r["beta"])] = dict({c: float(r[c]) for c in COLUMNS}, n_images=n, split=r["split"])
    return out


def cpu_seconds(path):
    """(wall, cpu) seconds summed over the lines "wall user system" of a .seconds file."""
    wall = cpu = 0.0
    try:
        with open(path) as f:
            for line in f:
                v = [float(x) for x in line.split()]
                wall += v[0]
                cpu += sum(v[1:3]) if len(v) >= 3 else float("nan")
    except (OSError, ValueError):
        return float("nan"), float("nan")
    return wall, cpu


def collect(out):
    """yoto {seed: table}, fixed {beta: {seed: row}}, compute {run: (wall, cpu)}."""
    yoto, fixed, compute = {}, {}, {}
    for path in sorted(glob.glob(os.path.join(out, "tables", "*.csv"))):
        run = os.path.basename(path)[:-4]
        m = re.fullmatch(r"yoto-s(\d+)", run) or re.fullmatch(r"fixed-b(.+)-s(\d+)", run)
        if not m:
            continue
        t = read_table(path)
        compute[run] = {what: cpu_seconds(os.path.join(out, run + ext))
                        for what, ext in (("train", ".seconds"), ("eval", ".eval.seconds"),
                                          ("encode", ".encode.seconds"))}
        if run.startswith("yoto"):
            yoto[int(m.group(1))] = t
            continue
        beta = float(m.group(1))
        if beta not in t:
            sys.exit(f"{path}: no row for its own beta {beta:g}")
        fixed.setdefault(beta, {})[int(m.group(2))] = t[beta]
    return yoto, fixed, compute


def entropy_mi(a, b):
    """Mutual information (nats) of two discrete label vectors."""
    ia, ib = np.unique(a, return_inverse=True)[1], np.unique(b, return_inverse=True)[1]
    c = np.zeros((ia.max() + 1, ib.max() + 1))
    np.add.at(c, (ia, ib), 1)
    p = c / c.sum()
    q = p.sum(1, keepdims=True) @ p.sum(0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log(p[nz] / q[nz])).sum())


def code_factors(path, beta):
    """Per active code of an encode file at beta: (code, std, [MI / H per factor]); None if absent."""
    import h5py
    with h5py.File(path, "r") as f:
        betas = list(f["beta"][()])
        if beta not in betas or "labels" not in f:
            return None
        z, lab = f["mean"][betas.index(beta)].astype(float), f["labels"][()]
    lab = lab.reshape(len(lab), -1)
    h = [entropy_mi(lab[:, k], lab[:, k]) for k in range(lab.shape[1])]
    out = []
    for i in np.where(z.std(0) >= ACTIVE_STD)[0]:
        x = z[:, i]
        d = np.digitize(x, np.histogram(x, 20)[1][:-1])
        out.append((int(i), float(x.std()), [entropy_mi(d, lab[:, k]) / h[k] if h[k] > 0 else 0.0
                                             for k in range(lab.shape[1])]))
    return out


def active_dims(path):
    """{beta: active codes} from an encode file's /metrics, {} if absent."""
    import h5py
    try:
        with h5py.File(path, "r") as f:
            return {float(r["beta"]): int(r["active_dims"]) for r in f["metrics"][()]}
    except (OSError, KeyError):
        return {}


def codes_section(out, res):
    """Markdown lines: active codes per beta, and what each active code carries at the fixed betas."""
    files = {os.path.basename(p)[:-3]: p for p in glob.glob(os.path.join(out, "codes", "*.h5"))}
    yoto = sorted(r for r in files if r.startswith("yoto-s"))
    if not yoto:
        return []
    lines = ["", "## Active codes and what they carry", "",
             f"From `yoto encode` of the same images (codes/, first seed). Active: std >= {ACTIVE_STD}. "
             "Each active code is given with the factor it shares the most information with, "
             "MI / H(factor) (20 bins, as MIG), and the runner-up when it is above 0.1.", ""]
    act = active_dims(files[yoto[0]])
    lines.append("YOTO active codes per beta: " + ", ".join(f"{b:g}: {n}" for b, n in sorted(act.items())))
    seed = yoto[0].split("-s")[1]
    for b in res["fixed"]:
        lines += ["", f"beta {b:g}:", ""]
        for name, run in (("fixed", f"fixed-b{b:g}-s{seed}"), ("YOTO", yoto[0])):
            cf = code_factors(files[run], b) if run in files else None
            if cf is None:
                continue
            k = len(cf[0][2]) if cf else 0
            names = FACTORS if k == len(FACTORS) else [f"factor {j}" for j in range(k)]
            parts = []
            for i, sd, m in cf:
                o = np.argsort(m)[::-1]
                t = f"{names[o[0]]} {m[o[0]]:.2f}" + (f", {names[o[1]]} {m[o[1]]:.2f}" if m[o[1]] > 0.1 else "")
                parts.append(f"z{i} (std {sd:.2f}): {t}")
            lines.append(f"- {name}, {len(cf)} active: " + "; ".join(parts))
    return lines


def stats(values):
    v = np.asarray(values, float)
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else float("nan")), len(v)


def summarise(yoto, fixed):
    """{"yoto": {beta: {col: (mean, std, n)}}, "fixed": {beta: {...}}}"""
    res = {"yoto": {}, "fixed": {}}
    betas = sorted(set().union(*[t.keys() for t in yoto.values()])) if yoto else []
    for b in betas:
        rows = [t[b] for t in yoto.values() if b in t]
        res["yoto"][b] = {c: stats([r[c] for r in rows]) for c in COLUMNS}
    for b, by_seed in sorted(fixed.items()):
        res["fixed"][b] = {c: stats([r[c] for r in by_seed.values()]) for c in COLUMNS}
    return res


def fmt(m, s, n, digits=3):
    if m != m:
        return "–"
    return f"{m:.{digits}f} ± {s:.{digits}f}" if s == s else f"{m:.{digits}f}"


def setup_lines(out, yoto, fixed):
    tables = list(yoto.values()) + [r for f in fixed.values() for r in f.values()]
    n = {r["n_images"] for t in yoto.values() for r in t.values()}
    lines = [f"- models: {len(yoto)} YOTO (seeds {sorted(yoto)}), "
             f"{sum(len(v) for v in fixed.values())} fixed-beta (betas "
             f"{', '.join(f'{b:g}' for b in sorted(fixed))})"]
    if tables:
        lines.append(f"- metrics split: {', '.join(map(str, sorted(n)))} images, posterior means "
                     "(z = mean); metric definitions: docs/METRICS.md")
    for run in sorted(glob.glob(os.path.join(out, "yoto-s*")))[:1]:
        latest = os.path.join(run, "ckpt", "latest")
        if os.path.exists(latest):
            lines.append(f"- trained to {open(latest).read().strip()} ({run})")
    return lines


def markdown(out, res, compute, setup):
    lines = [f"# Disentanglement vs beta: one YOTO model and fixed-beta models (`{out}`)", ""]
    lines += setup + ["", "## The YOTO model at every beta", "",
                      "Mean ± std over seeds (one seed: the value). KL and recon in nats per image.", "",
                      "| beta | " + " | ".join(n for _, n in METRICS) + " | KL | recon |",
                      "|---:|" + "---:|" * (len(METRICS) + 2)]
    for b, r in res["yoto"].items():
        cells = [fmt(*r[c]) for c, _ in METRICS] + [fmt(*r["kl_loss"], 2), fmt(*r["reconstruction_loss"], 1)]
        lines.append(f"| {b:g} | " + " | ".join(cells) + " |")
    lines += ["", "## Fixed-beta models against the YOTO model at their beta", "",
              "| beta | model | " + " | ".join(n for _, n in METRICS) + " | KL | recon |",
              "|---:|---|" + "---:|" * (len(METRICS) + 2)]
    for b, r in res["fixed"].items():
        for name, row in (("fixed", r), ("YOTO", res["yoto"].get(b))):
            if row is None:
                cells = ["–"] * (len(METRICS) + 2)
            else:
                cells = [fmt(*row[c]) for c, _ in METRICS] + [fmt(*row["kl_loss"], 2),
                                                             fmt(*row["reconstruction_loss"], 1)]
            lines.append(f"| {b:g} | {name} | " + " | ".join(cells) + " |")
    lines += codes_section(out, res)
    lines += ["", "## Compute", "",
              "CPU seconds (user + system, all ranks) / wall seconds.", "",
              "| run | training | evaluation | encoding |",
              "|---|---:|---:|---:|"]
    tot = {k: [0.0, 0.0] for k in ("train", "eval", "encode")}
    for run, c in sorted(compute.items()):
        lines.append(f"| {run} | " + " | ".join(f"{c[k][1]:.1f} / {c[k][0]:.1f}" for k in tot) + " |")
        for k in tot:
            tot[k] = [t + (v if v == v else 0) for t, v in zip(tot[k], c[k])]
    lines.append("| all | " + " | ".join(f"{tot[k][1]:.1f} / {tot[k][0]:.1f}" for k in tot) + " |")
    return "\n".join(lines) + "\n"


def plot(path, res, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    panels = METRICS + [("kl_loss", "KL (nats per image)")]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.8))
    yb = sorted(res["yoto"])
    fb = sorted(res["fixed"])
    for ax, (col, name) in zip(axes.flat, panels):
        ym = [res["yoto"][b][col][0] for b in yb]
        ys = np.nan_to_num([res["yoto"][b][col][1] for b in yb])
        ax.errorbar(yb, ym, yerr=ys, fmt="o-", color="C0", ms=4, capsize=2, label="one YOTO model")
        fm = [res["fixed"][b][col][0] for b in fb]
        fs = np.nan_to_num([res["fixed"][b][col][1] for b in fb])
        ax.errorbar(fb, fm, yerr=fs, fmt="s", color="C3", ms=7, capsize=3, label="fixed-β models")
        ax.set_xscale("log")
        ax.set_xlabel("β (log scale)")
        ax.set_ylabel(name if col == "kl_loss" else f"{name} (0 to 1)")
        ax.set_title(name.split(" (")[0])
        if col == "kl_loss":
            ax.set_yscale("log")
            v = [x for x in list(ym) + list(fm) if x > 0]
            nice = [m * 10.0**e for e in range(-3, 5) for m in (1, 2, 5)]
            if v:  # 1, 2, 5 x 10^k ticks over the data (a log axis labels decades only)
                ax.set_yticks([t for t in nice if min(v) / 1.3 <= t <= max(v) * 1.3])
            ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        else:  # scores: from 0, so that small differences do not look large
            ax.set_ylim(0, max(0.1, 1.15 * np.nanmax(np.concatenate([ym, fm, [0]]))))
        ax.grid(alpha=0.3)
        ticks = yb or fb
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{b:g}" for b in ticks], fontsize=7)
        ax.minorticks_off()
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", help="the directory jobs/disentanglement.sh wrote")
    p.add_argument("--out", help="write the Markdown report here (else stdout only)")
    p.add_argument("--plot", help="write the figure here (PNG)")
    p.add_argument("--json", help="write the numbers here (JSON)")
    a = p.parse_args()
    yoto, fixed, compute = collect(a.results)
    if not yoto and not fixed:
        sys.exit(f"{a.results}: no tables yet (tables/yoto-s*.csv, tables/fixed-b*-s*.csv); "
                 "run jobs/disentanglement.sh")
    res = summarise(yoto, fixed)
    text = markdown(a.results, res, compute, setup_lines(a.results, yoto, fixed))
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    print(text, end="")
    if a.plot:
        n = sorted({r["n_images"] for t in yoto.values() for r in t.values()})
        seeds = f"{len(yoto)} seeds, mean ± std" if len(yoto) > 1 else "one seed"
        plot(a.plot, res, "Disentanglement of the posterior means vs β: one YOTO model, fixed-β models"
             + (f" ({n[0]} images, {seeds})" if len(n) == 1 else f" ({seeds})"))
    if a.json:
        def clean(x):
            return None if isinstance(x, float) and math.isnan(x) else x
        data = {k: {f"{b:g}": {c: [clean(v) for v in t] for c, t in r.items()} for b, r in res[k].items()}
                for k in res}
        with open(a.json, "w") as f:
            json.dump({"results": data, "compute": compute}, f, indent=1)


if __name__ == "__main__":
    main()
