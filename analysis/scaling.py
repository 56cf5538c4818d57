#!/usr/bin/env python3
"""scaling.py — weak/strong scaling from jobs/scaling.sh results: a Markdown
table, a plot of images/s and parallel efficiency against the rank count, and
a model's prediction for rank counts not measured.

  /usr/bin/python3 analysis/scaling.py results/scaling-20260101-120000
  /usr/bin/python3 analysis/scaling.py RESULTS --fit --ranks-per-node 32 --predict 64,512,2048

Inputs: directories (every *.json in them) or JSON files, as jobs/scaling.sh
writes them ({"sweep": "weak"|"strong", "nodes": N, "bench": <yoto bench
--json>}); a bare `yoto bench --json` file is taken too, its sweep read from the
file name (weak-*.json, strong-*.json).

Measured: efficiency = (images/s per rank) / (that of the smallest rank count
of the same sweep); for strong scaling that is speedup / (P / P0).

The model (per training step, on P ranks with b images each):
  t(P) = t_compute(b) + (1 - hidden) * t_allreduce(P)
  t_compute(b) = c0 + c1 * b    fitted to the measured step time minus the
                                allreduce time it left exposed (c0 = 0 when all
                                points have one batch size)
  t_allreduce(P) = alpha * log2(P) + 2 * (P - 1) / P * bytes / bandwidth
bytes = the gradient (bench's allreduce.bytes); alpha = per-message latency
(--alpha, default 5 us), bandwidth = per-rank network bandwidth (--bandwidth,
default 10 GB/s: roughly 100 Gb/s InfiniBand/Ethernet); --fit estimates both
from the measured allreduce times (allreduce.alone_s), which on one node
measure shared memory, not the network: use --fit to check the model against
the measurements, the defaults (or your network's numbers) to predict across
nodes. hidden = the fraction of the allreduce overlapped with the backward
pass (--hidden, default 0: none, a pessimistic bound; bench reports the
measured hidden fraction). The model assumes compute per rank does not grow
with P (no memory-bandwidth contention, no stragglers, no I/O): measured
points below the model show what it leaves out.
Weak scaling: b = --batch-per-rank (default: the measured one); efficiency =
t(1) / t(P). Strong: b = G / P, G = --global-batch (default: the measured
one); efficiency = t(1) / (P * t(P)). "Scaling breaks" at the first P whose
predicted efficiency is below --threshold (default 0.5).
"""
import argparse
import glob
import json
import math
import os
import sys

import numpy as np


def die(msg):
    print(f"scaling.py: {msg}", file=sys.stderr)
    sys.exit(2)


def load(paths):
    files = []
    for p in paths:
        if os.path.isdir(p):
            files += sorted(glob.glob(os.path.join(p, "*.json")))
        elif os.path.isfile(p):
            files.append(p)
        else:
            die(f"no such file or directory: {p}")
    if not files:
        die("no JSON results found in " + ", ".join(paths))
    pts = []
    for f in files:
        try:
            with open(f) as fh:
                d = json.load(fh)
        except (OSError, ValueError) as e:
            die(f"{f}: not a JSON results file ({e})")
        b = d.get("bench", d)
        sweep = d.get("sweep")
        if sweep is None:
            name = os.path.basename(f)
            sweep = "weak" if name.startswith("weak") else "strong" if name.startswith("strong") else None
        if sweep not in ("weak", "strong"):
            die(f"{f}: unknown sweep (expected jobs/scaling.sh output, or a file named weak-*.json / strong-*.json)")
        try:
            ar = b.get("allreduce", {})
            pts.append(dict(
                file=f, sweep=sweep, ranks=int(b["ranks"]), nodes=int(d.get("nodes", 1) or 1),
                bpr=int(b["batch_per_rank"]), step_s=float(b["step_s_median"]),
                ips=float(b["images_per_s"]), bytes=float(ar.get("bytes", 0)), config=str(b.get("config", "")),
                ar_alone=float(ar.get("alone_s", 0)), ar_exposed=float(ar.get("exposed_s", 0)),
                hidden=float(ar.get("hidden_fraction", 0))))
        except (KeyError, TypeError, ValueError) as e:
            die(f"{f}: missing or bad field {e} (is it yoto bench --json output?)")
    return pts


def allreduce_s(P, nbytes, alpha, bw):
    P = np.asarray(P, dtype=float)
    return np.where(P > 1, alpha * np.log2(np.maximum(P, 1)) + 2 * (P - 1) / P * nbytes / bw, 0.0)


def fit_network(pts, alpha, bw):
    """alpha, bandwidth from allreduce.alone_s at P >= 2 (least squares);
    with one distinct P only the bandwidth is fitted."""
    obs = [(p["ranks"], p["bytes"], p["ar_alone"]) for p in pts if p["ranks"] > 1 and p["bytes"] > 0 and p["ar_alone"] > 0]
    if not obs:
        return alpha, bw, "no allreduce measured at 2+ ranks: nothing to fit, defaults kept"
    x1 = np.array([math.log2(P) for P, _, _ in obs])
    x2 = np.array([2 * (P - 1) / P * nb for P, nb, _ in obs])
    t = np.array([s for _, _, s in obs])
    if len({P for P, _, _ in obs}) >= 2:
        (a, inv), *_ = np.linalg.lstsq(np.stack([x1, x2], 1), t, rcond=None)
        if a > 0 and inv > 0:
            return a, 1 / inv, f"fitted to {len(obs)} allreduce times: alpha and bandwidth"
    inv = float(np.sum(x2 * (t - alpha * x1)) / np.sum(x2 * x2))
    if inv > 0:
        return alpha, 1 / inv, f"fitted to {len(obs)} allreduce times: bandwidth (alpha kept)"
    return alpha, bw, "fit gave a non-positive bandwidth (allreduce below the latency term): defaults kept"


def fit_compute(pts):
    """t_compute(b) = c0 + c1 * b from step time minus exposed allreduce."""
    b = np.array([p["bpr"] for p in pts], dtype=float)
    t = np.array([max(p["step_s"] - p["ar_exposed"], 1e-12) for p in pts])
    if len(set(b)) >= 2:
        (c1, c0), *_ = np.linalg.lstsq(np.stack([b, np.ones_like(b)], 1), t, rcond=None)
        if c0 >= 0 and c1 > 0:
            return c0, c1
    return 0.0, float(np.median(t / b))


def fmt(x, nd=3):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{nd}g}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", help="results directories or JSON files")
    ap.add_argument("--md", help="Markdown table to write (default: scaling.md in the first directory)")
    ap.add_argument("--png", help="plot to write (default: scaling.png in the first directory)")
    ap.add_argument("--alpha", type=float, default=5e-6, help="allreduce latency per step of the tree, s (default 5e-6)")
    ap.add_argument("--bandwidth", type=float, default=10e9, help="network bandwidth per rank, bytes/s (default 10e9)")
    ap.add_argument("--fit", action="store_true", help="fit alpha and bandwidth to the measured allreduce times")
    ap.add_argument("--hidden", type=float, default=0.0, help="fraction of the allreduce hidden behind backward (default 0)")
    ap.add_argument("--predict", default=",".join(str(2 ** k) for k in range(13)),
                    help="rank counts to predict (default 1,2,4,...,4096)")
    ap.add_argument("--ranks-per-node", type=int, default=0, help="ranks per node, to show node counts")
    ap.add_argument("--batch-per-rank", type=int, help="weak scaling batch per rank to predict (default: measured)")
    ap.add_argument("--global-batch", type=int, help="strong scaling global batch to predict (default: measured)")
    ap.add_argument("--threshold", type=float, default=0.5, help="efficiency below which scaling 'breaks' (default 0.5)")
    a = ap.parse_args()
    if a.alpha < 0 or a.bandwidth <= 0 or not 0 <= a.hidden <= 1 or a.threshold <= 0:
        die("need --alpha >= 0, --bandwidth > 0, 0 <= --hidden <= 1, --threshold > 0")
    try:
        predict = sorted({int(x) for x in a.predict.replace(",", " ").split()})
    except ValueError:
        die(f"--predict: expected a list of rank counts, found '{a.predict}'")
    if not predict or predict[0] < 1:
        die("--predict: rank counts must be >= 1")

    pts = load(a.inputs)
    first_dir = next((p for p in a.inputs if os.path.isdir(p)), os.path.dirname(os.path.abspath(a.inputs[0])))
    md_path = a.md or os.path.join(first_dir, "scaling.md")
    png_path = a.png or os.path.join(first_dir, "scaling.png")

    nbytes = max(p["bytes"] for p in pts)
    alpha, bw, fit_note = a.alpha, a.bandwidth, "defaults/options (not fitted)"
    if a.fit:
        alpha, bw, fit_note = fit_network(pts, alpha, bw)
    c0, c1 = fit_compute(pts)
    hidden = a.hidden

    def step(P, b):
        return c0 + c1 * b + (1 - hidden) * allreduce_s(P, nbytes, alpha, bw)

    sweeps = [s for s in ("weak", "strong") if any(p["sweep"] == s for p in pts)]
    lines = ["# Scaling", ""]
    lines.append(f"Inputs: {len(pts)} measurements from {', '.join(a.inputs)}.")
    lines.append("")
    lines.append("## Measured")
    lines.append("")
    lines.append("| sweep | ranks | nodes | batch/rank | global batch | step ms | images/s | speedup | efficiency "
                 "| allreduce alone ms | exposed ms | hidden | model step ms |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    measured = {}
    for s in sweeps:
        sp = sorted((p for p in pts if p["sweep"] == s), key=lambda p: (p["ranks"], p["file"]))
        base = sp[0]
        for p in sp:
            speed = p["ips"] / base["ips"]
            eff = speed / (p["ranks"] / base["ranks"])
            p["eff"] = eff
            model = float(step(p["ranks"], p["bpr"]))
            lines.append(
                f"| {s} | {p['ranks']} | {p['nodes']} | {p['bpr']} | {p['bpr'] * p['ranks']} | {p['step_s'] * 1e3:.3g} "
                f"| {fmt(p['ips'])} | {speed:.3g} | {eff:.0%} | {p['ar_alone'] * 1e3:.3g} | {p['ar_exposed'] * 1e3:.3g} "
                f"| {p['hidden']:.0%} | {model * 1e3:.3g} |")
        measured[s] = sp
    lines.append("")
    lines.append(f"Efficiency relative to the smallest rank count of each sweep "
                 "(" + ", ".join(f"{s}: {measured[s][0]['ranks']}" for s in sweeps) + ").")
    lines.append("")

    B = a.batch_per_rank or (measured["weak"][0]["bpr"] if "weak" in measured else max(p["bpr"] for p in pts))
    G = a.global_batch or (measured["strong"][0]["bpr"] * measured["strong"][0]["ranks"] if "strong" in measured
                           else B * max(p["ranks"] for p in pts))
    lines.append("## Model")
    lines.append("")
    lines.append(f"- t(P) = t_compute(b) + (1 - hidden) * (alpha * log2 P + 2 (P-1)/P * bytes / bandwidth)")
    lines.append(f"- t_compute(b) = {c0 * 1e3:.4g} ms + {c1 * 1e3:.4g} ms * b (fitted to the measurements)")
    lines.append(f"- alpha = {alpha * 1e6:.3g} us, bandwidth = {bw / 1e9:.3g} GB/s ({fit_note}); "
                 f"bytes = {nbytes / 1e6:.3g} MB; hidden = {hidden:.0%}")
    lines.append(f"- weak: batch per rank {B}; strong: global batch {G}")
    lines.append("")
    head = "| ranks |" + (" nodes |" if a.ranks_per_node > 0 else "")
    head += " allreduce ms | weak step ms | weak images/s | weak eff. | strong batch/rank | strong step ms | strong images/s | strong eff. |"
    lines.append(head)
    lines.append("|" + "---:|" * (head.count("|") - 1))
    t1w, t1s = float(step(1, B)), float(step(1, G))
    pred = {"weak": [], "strong": []}
    for P in predict:
        ar = float(allreduce_s(P, nbytes, alpha, bw))
        tw = float(step(P, B))
        ew = t1w / tw
        pred["weak"].append((P, P * B / tw, ew))
        row = f"| {P} |" + (f" {math.ceil(P / a.ranks_per_node)} |" if a.ranks_per_node > 0 else "")
        row += f" {ar * 1e3:.3g} | {tw * 1e3:.3g} | {fmt(P * B / tw)} | {ew:.0%} |"
        b = G / P
        if b >= 1:  # (a real run needs G divisible by P; the model does not care)
            ts = float(step(P, b))
            es = t1s / (P * ts)
            pred["strong"].append((P, G / ts, es))
            row += f" {b:.3g} | {ts * 1e3:.3g} | {fmt(G / ts)} | {es:.0%} |"
        else:
            row += " < 1 | - | - | - |"
        lines.append(row)
    lines.append("")
    for s in ("weak", "strong"):
        below = [P for P, _, e in pred[s] if e < a.threshold]
        ok = [P for P, _, e in pred[s] if e >= a.threshold]
        if not pred[s]:
            continue
        if below:
            lines.append(f"- {s} scaling: predicted efficiency falls below {a.threshold:.0%} at {below[0]} ranks"
                         + (f" ({math.ceil(below[0] / a.ranks_per_node)} nodes)" if a.ranks_per_node > 0 else "")
                         + (f"; fine up to {ok[-1]} ranks" if ok else "") + ".")
        else:
            lines.append(f"- {s} scaling: predicted efficiency stays at or above {a.threshold:.0%} "
                         f"up to {pred[s][-1][0]} ranks.")
    lines.append("")
    lines.append(f"Plot: {os.path.basename(png_path)}")
    text = "\n".join(lines) + "\n"
    with open(md_path, "w") as fh:
        fh.write(text)
    sys.stdout.write(text)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.4))
    colors = {"weak": "tab:blue", "strong": "tab:orange"}
    name = {"weak": f"weak, {B} images/rank", "strong": f"strong, {G} images/step"}
    for s in sweeps:
        sp = measured[s]
        ax1.plot([p["ranks"] for p in sp], [p["ips"] for p in sp], "o", color=colors[s], label=f"{name[s]} (measured)")
        ax2.plot([p["ranks"] for p in sp], [p["eff"] for p in sp], "o", color=colors[s], label=f"{name[s]} (measured)")
    for s in ("weak", "strong"):
        if pred[s]:
            P, ips, eff = zip(*pred[s])
            ax1.plot(P, ips, "-", color=colors[s], alpha=0.7, label=f"{name[s]} (model)")
            ax2.plot(P, eff, "-", color=colors[s], alpha=0.7, label=f"{name[s]} (model)")
    allP = sorted({p["ranks"] for p in pts} | set(predict))
    ax1.plot(allP, [B / t1w * P for P in allP], ":", color="gray", label="ideal (weak)")
    ax2.axhline(a.threshold, color="gray", linestyle=":", label=f"{a.threshold:.0%}")
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("ranks")
        ax.grid(True, which="both", alpha=0.3)
    ax1.set_yscale("log")
    ax1.set_ylabel("images / s (all ranks)")
    ax2.set_ylabel("parallel efficiency")
    ax2.set_ylim(0, 1.1)
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    configs = sorted({os.path.basename(p["config"]) for p in pts if p["config"]})
    fig.suptitle(f"yoto scaling of {', '.join(configs) or 'the training step'} ({os.path.basename(os.path.abspath(first_dir))}): "
                 f"model with alpha {alpha * 1e6:.3g} us, bandwidth {bw / 1e9:.3g} GB/s, gradient {nbytes / 1e6:.3g} MB",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    print(f"wrote {md_path} and {png_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
