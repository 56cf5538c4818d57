#!/usr/bin/env python3
"""fidelity.py — the YOTO-vs-fixed-beta study's table and figure, from the
results directory jobs/fidelity.sh fills.

OUT holds run directories yoto-<variant>-s<seed> and fixed-b<beta>-s<seed>,
and tables/<run>.<z>.csv (`yoto eval --split test` of each run, z = mean or
sample). For every variant, z and beta: the fixed models' full loss
(recon + beta KL, nats per image) as mean ± std over seeds, the YOTO
model's at that beta likewise, the gap (YOTO - fixed) / fixed in %, its
standard error sqrt(s_f^2/n_f + s_y^2/n_y) / fixed, and whether the gap
exceeds 2 standard errors. The verdict line per variant applies the study's
goal: every beta within 0.5 %, or within 2 standard errors.

  /usr/bin/python3 analysis/fidelity.py results/fidelity-4000 --out fidelity.md --plot fidelity.png
  /usr/bin/python3 analysis/fidelity.py results/fidelity-4000 results/fidelity-16000 results/fidelity-16000 \
      --variant film,film,film-24k --labels "4000 steps;16000 steps;YOTO 24000 steps" --trend trend.png
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

GOAL_PCT = 0.5


def read_table(path, z):
    """{beta: (full, recon, kl)} of the test split of one CSV table."""
    with open(path) as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    out = {}
    for r in rows:
        if r.get("split", "test") != "test":
            continue
        if "z" in r and r["z"] not in (z, ""):
            continue
        out[float(r["beta"])] = (float(r["full_loss"]), float(r["reconstruction_loss"]), float(r["kl_loss"]))
    return out


def seconds(out, run):
    try:
        with open(os.path.join(out, run + ".seconds")) as f:
            return sum(float(x) for x in f.read().split())
    except OSError:
        return float("nan")


def steps_of(out, run):
    """train.steps of a run, from its config.yaml (0 when unreadable)"""
    try:
        import yaml
        with open(os.path.join(out, run, "config.yaml")) as f:
            return int(yaml.safe_load(f)["train"]["steps"])
    except (OSError, KeyError, TypeError, ValueError):
        return 0


def collect(out, z):
    """fixed {beta: [full per seed]}, yoto {variant: {beta: [full per seed]}}, runs per kind."""
    fixed, yoto, runs = {}, {}, {"fixed": [], "yoto": {}}
    for path in sorted(glob.glob(os.path.join(out, "tables", f"*.{z}.csv"))):
        run = os.path.basename(path)[: -len(f".{z}.csv")]
        t = read_table(path, z)
        m = re.fullmatch(r"fixed-b(.+)-s(\d+)", run)
        if m:
            beta = float(m.group(1))
            if beta not in t:
                sys.exit(f"{path}: no row for its own beta {beta:g}")
            fixed.setdefault(beta, []).append(t[beta][0])
            runs["fixed"].append(run)
            continue
        m = re.fullmatch(r"yoto-(.+)-s(\d+)", run)
        if not m:
            continue
        v = yoto.setdefault(m.group(1), {})
        for beta, row in t.items():
            v.setdefault(beta, []).append(row[0])
        runs["yoto"].setdefault(m.group(1), []).append(run)
    return fixed, yoto, runs


def stats(v):
    v = np.asarray(v, float)
    return v.mean(), (v.std(ddof=1) if len(v) > 1 else float("nan")), len(v)


def compare(fixed, variant):
    """rows: beta, fixed (mean, std, n), yoto (mean, std, n), gap %, se %, significant"""
    rows = []
    for beta in sorted(fixed):
        if beta not in variant:
            continue
        fm, fs, fn = stats(fixed[beta])
        ym, ys, yn = stats(variant[beta])
        gap = 100 * (ym - fm) / fm
        se = 100 * math.sqrt(fs**2 / fn + ys**2 / yn) / fm if fn > 1 and yn > 1 else float("nan")
        sig = bool(abs(gap) > 2 * se) if se == se else None
        rows.append(dict(beta=beta, fixed=(fm, fs, fn), yoto=(ym, ys, yn), gap=gap, se=se, significant=sig))
    return rows


def verdict(rows):
    ok = [abs(r["gap"]) <= GOAL_PCT or r["significant"] is False for r in rows]
    worst = max(rows, key=lambda r: abs(r["gap"])) if rows else None
    if not rows:
        return "no beta with both a fixed model and the YOTO model"
    if all(ok):
        return (f"goal met: every beta within {GOAL_PCT} % or within 2 standard errors "
                f"(largest gap {worst['gap']:+.2f} % at beta {worst['beta']:g})")
    bad = ", ".join(f"{r['beta']:g} ({r['gap']:+.2f} %)" for r, k in zip(rows, ok) if not k)
    return f"goal not met at beta {bad}"


def fmt(m, s, n):
    return f"{m:.2f} ± {s:.2f} (n={n})" if s == s else f"{m:.2f} (n={n})"


def markdown(out, results, compute):
    lines = [f"# YOTO vs fixed-beta models: `{out}`", "",
             "Full loss = reconstruction + beta · KL on the test split, nats per image; mean ± std "
             "over seeds. Gap = (YOTO − fixed) / fixed; SE its standard error; "
             "* = the gap exceeds 2 SE.", ""]
    for z, variants in results.items():
        for name, rows in variants.items():
            lines += [f"## {name}, z = {z}", "",
                      "| beta | fixed | YOTO | gap % | SE % | > 2 SE |",
                      "|---:|---:|---:|---:|---:|:---:|"]
            for r in rows:
                sig = "?" if r["significant"] is None else ("*" if r["significant"] else "")
                lines.append(f"| {r['beta']:g} | {fmt(*r['fixed'])} | {fmt(*r['yoto'])} | "
                             f"{r['gap']:+.2f} | {r['se']:.2f} | {sig} |")
            lines += ["", verdict(rows), ""]
    lines += ["## Compute", ""]
    for k, v in compute.items():
        lines.append(f"- {k}: {v}")
    return "\n".join(lines) + "\n"


def plot(path, results, fixed_by_z):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    z = "mean" if "mean" in results else next(iter(results))
    fixed = fixed_by_z[z]
    betas = sorted(fixed)
    fm = [stats(fixed[x])[0] for x in betas]
    fs = np.nan_to_num([stats(fixed[x])[1] for x in betas])  # one seed: no error bar
    a.errorbar(betas, fm, yerr=fs, fmt="o", color="k", capsize=3, label="fixed-beta models")
    for i, (name, rows) in enumerate(results[z].items()):
        c = f"C{i}"
        bx = [r["beta"] for r in rows]
        a.errorbar(bx, [r["yoto"][0] for r in rows], yerr=np.nan_to_num([r["yoto"][1] for r in rows]), fmt="s--",
                   color=c, capsize=3, mfc="none", label=f"YOTO ({name})")
        b.errorbar(bx, [r["gap"] for r in rows], yerr=np.nan_to_num([2 * r["se"] for r in rows]), fmt="s-", color=c,
                   capsize=3, label=f"{name} (± 2 SE)")
    a.set_xscale("log")
    a.set_xlabel("beta")
    a.set_ylabel("test full loss (nats per image)")
    a.set_title(f"loss vs beta, z = {z}")
    a.legend()
    b.axhline(0, color="k", lw=0.8)
    b.axhspan(-GOAL_PCT, GOAL_PCT, color="0.9", label=f"± {GOAL_PCT} %")
    b.set_xscale("log")
    b.set_xlabel("beta")
    b.set_ylabel("gap (YOTO − fixed) / fixed, %")
    b.set_title("gap vs beta")
    b.legend()
    for ax in (a, b):  # the betas themselves as ticks: 0.25, 1, 8, 64, 256
        ax.set_xticks(betas)
        ax.set_xticklabels([f"{x:g}" for x in betas])
        ax.minorticks_off()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def trend(dirs, variants, labels, z, path):
    """gap vs beta in several results directories (training lengths, widths):
    one line each, ± 2 SE; variants[i] is directory i's YOTO variant,
    labels[i] its legend entry. Left the whole range, right a zoom on the
    goal's neighbourhood (the high-beta end can be 30 times the goal)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    series = []
    for d, variant, label in zip(dirs, variants, labels):
        fixed, yoto, _ = collect(d, z)
        if variant not in yoto:
            sys.exit(f"{d}: no YOTO variant '{variant}' (has {', '.join(yoto) or 'none'})")
        series.append((label, compare(fixed, yoto[variant])))
    betas = sorted({r["beta"] for _, rows in series for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    for k, ax in enumerate(axes):
        for i, (label, rows) in enumerate(series):
            ax.errorbar([r["beta"] for r in rows], [r["gap"] for r in rows],
                        yerr=np.nan_to_num([2 * r["se"] for r in rows]),
                        fmt="o-", color=f"C{i}", capsize=3, label=label)
        ax.axhline(0, color="k", lw=0.8)
        ax.axhspan(-GOAL_PCT, GOAL_PCT, color="0.9", label=f"± {GOAL_PCT} % (the goal)")
        ax.set_xscale("log")
        ax.set_xticks(betas)
        ax.set_xticklabels([f"{x:g}" for x in betas])
        ax.minorticks_off()
        ax.set_xlabel("beta")
        ax.set_ylabel("gap (YOTO − fixed) / fixed, % (± 2 SE)")
        if k == 1:
            ax.set_ylim(-2.5, 3.5)
    axes[0].set_title("the whole range")
    axes[1].set_title("zoom: gaps within ± 3 %")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"YOTO ({', '.join(dict.fromkeys(variants))}) vs fixed-beta models, z = {z}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", help="the directory jobs/fidelity.sh wrote (several with --trend)")
    p.add_argument("--trend", help="with several results directories: plot one variant's gap vs beta "
                                   "for each into this PNG (e.g. 4000 vs 16000 steps)")
    p.add_argument("--variant", default="film",
                   help="--trend: the YOTO variant (default film), or one per results directory, "
                        "comma-separated (e.g. film,film-24k for two variants of one study)")
    p.add_argument("--labels", help="--trend: the legend, one label per results directory, separated "
                                    "by ';' (default: the directories' names)")
    p.add_argument("--z", default="mean", choices=("mean", "sample"), help="--trend: which table (default mean)")
    p.add_argument("--out", help="write the Markdown report here (else stdout)")
    p.add_argument("--plot", help="write the figure here (PNG)")
    p.add_argument("--json", help="write the numbers here (JSON)")
    a = p.parse_args()
    if a.trend:
        n = len(a.results)
        variants = a.variant.split(",")
        variants = variants * n if len(variants) == 1 else variants
        labels = ([x.strip() for x in a.labels.split(";")] if a.labels
                  else [os.path.basename(os.path.normpath(d)) for d in a.results])
        if len(variants) != n or len(labels) != n:
            p.error(f"--trend: {n} results directories need one variant (or {n}) and {n} labels; "
                    f"got {len(variants)} variants and {len(labels)} labels")
        trend(a.results, variants, labels, a.z, a.trend)
        return
    if a.labels or "," in a.variant:
        p.error("--labels and several --variant values are for --trend")
    if len(a.results) > 1:
        p.error("several results directories need --trend")
    a.results = a.results[0]
    results, fixed_by_z, runs = {}, {}, None
    for z in ("mean", "sample"):
        fixed, yoto, r = collect(a.results, z)
        if not fixed or not yoto:
            continue
        fixed_by_z[z] = fixed
        results[z] = {name: compare(fixed, v) for name, v in sorted(yoto.items())}
        runs = runs or r
    if not results:
        sys.exit(f"{a.results}: no fixed and YOTO tables yet (tables/*.mean.csv); run jobs/fidelity.sh")
    fixed_s = sum(seconds(a.results, r) for r in runs["fixed"])
    nbeta = len({re.fullmatch(r"fixed-b(.+)-s\d+", r).group(1) for r in runs["fixed"]})
    fixed_per_model = fixed_s / max(len(runs["fixed"]), 1)
    compute = {"fixed-beta runs": f"{len(runs['fixed'])} ({nbeta} betas), {fixed_s:.0f} s of training in all"}
    fsteps = steps_of(a.results, runs["fixed"][0]) if runs["fixed"] else 0
    for name, rs in runs["yoto"].items():
        ys = sum(seconds(a.results, r) for r in rs) / max(len(rs), 1)
        ysteps = steps_of(a.results, rs[0])
        compute[f"YOTO ({name})"] = (f"{len(rs)} run(s) of {ysteps} steps, {ys:.0f} s each: one model for all "
                                     f"{nbeta} betas costs {100 * ys / (nbeta * fixed_per_model):.0f} % of the "
                                     f"time of the {nbeta} fixed models of one seed ({fsteps} steps each) and "
                                     f"{100 * ysteps / max(nbeta * fsteps, 1):.0f} % of their steps")
    text = markdown(a.results, results, compute)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    print(text, end="")
    if a.plot:
        plot(a.plot, results, fixed_by_z)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"results": results, "compute": compute}, f, indent=1)


if __name__ == "__main__":
    main()
