#!/usr/bin/env python3
"""scaling.py — a scaling study's report from jobs/scaling.sh results: the
measured table, a model of the step fitted to the user's own measurements,
each measured point predicted from the others (leave-one-out), and the
model's prediction for rank counts not measured.

  /usr/bin/python3 analysis/scaling.py results/scaling-20260101-120000
  /usr/bin/python3 analysis/scaling.py RESULTS --ranks-per-node 32 --predict 64,512,2048

Inputs: directories (every *.json in them) or JSON files, as jobs/scaling.sh
writes them: {"sweep": "weak" | "strong" | "contention" | "comm", "nodes": N,
"bench": <yoto bench --json> or <yoto bench --comm --json>}. A bare bench
file is taken too, its sweep read from its name (weak-*, strong-*, comm-*).

The model of one training step on P ranks, R of them per node, b images each:

  t(P, b) = (t_compute(b) + t_adam / P') * s(R) + (1 - hidden) * t_allreduce(P, bytes)

t_compute(b) = c0 + c1 * b: forward + backward of one rank alone, fitted to
  the measured per-rank forward + backward (bench's phases) divided by the
  contention slowdown of its point.
t_adam: Adam over the whole gradient on one rank (bench's optimizer phase,
  times P for a point whose optimizer ran sharded: bench's allreduce.sharded);
  P' = P when the runs are sharded (train.allreduce: sharded, or bucketed
  with one bucket: each rank updates 1/P), else 1.
s(R): the slowdown of the per-rank compute when R ranks share a node
  (memory bandwidth, caches, turbo), measured: the compute time per rank at
  R ranks on one node over that of one rank (weak or contention points with
  nodes = 1). Between measured R it is interpolated in log R; beyond the
  largest measured R it stays at its last value, which is optimistic: on a
  cluster, measure up to the node's core count (jobs/scaling.sh --nodes does).
t_allreduce(P, n): sharded, yoto's ring reduce-scatter and ring allgather
  (the ring's cost below, alpha and bw fitted to bench --comm's bucketed
  times of one bucket, which run it). Otherwise the algorithm Open MPI
  4.1's `tuned` component picks for
  an MPI_Allreduce of n bytes of floats on P ranks (its fixed decision table,
  reproduced in `tuned_algorithm` below), with that algorithm's cost:
      recursive doubling   ceil(log2 P) * alpha + ceil(log2 P) * n / bw
      ring                 2 (P-1) * alpha      + 2 (P-1)/P * n / bw
      Rabenseifner         2 ceil(log2 P) * alpha + 2 (P-1)/P * n / bw
      reduce + bcast       2 ceil(log2 P) * alpha + 2 ceil(log2 P) * n / bw
  (segmented ring as ring). For yoto's gradients (3 MB Shapes3D, 7.5 MB
  CIFAR-10) that is Rabenseifner at every P >= 2. alpha and bw are fitted
  to `yoto bench --comm` (allreduce time vs message size at the run's rank
  count), by least squares over the sizes, each size with the algorithm the
  table gives it, per algorithm where two sizes or more use it. Measured on
  one node, they describe shared memory; ranks on several nodes go through
  the network: give --alpha and --bandwidth (the network's per-message
  latency and per-rank bandwidth), or measure comm points on 2+ nodes, whose
  fit is then used for multi-node predictions.
The bucketed mode (train.allreduce: bucketed) issues MPI_Iallreduce, which
  Open MPI's libnbc runs as a binomial reduce + bcast for P < 4 or messages
  under 64 KiB, else as a ring (yoto passes a separate send buffer; in place,
  libnbc would always take the binomial tree). A message of one bucket goes
  sharded instead: yoto's own ring reduce-scatter and ring allgather (the
  ring's terms); bench --comm's bucketed times of one bucket are those, and
  their own alpha and bandwidth are fitted to them.
hidden: the fraction of the allreduce overlapped with the backward pass
  (--hidden, default 0: blocking; bench reports the measured fraction).

How to check what Open MPI does on your system: `ompi_info --param coll tuned
--level 9` lists the coll_tuned parameters; `mpirun --mca
coll_tuned_use_dynamic_rules 1 --mca coll_tuned_allreduce_algorithm 6 ...`
forces an algorithm (0 = the fixed decision; 1 linear, 2 nonoverlapping, 3
recursive doubling, 4 ring, 5 segmented ring, 6 Rabenseifner), so bench
--comm under each shows what each costs; `--mca coll_base_verbose 100` shows
which collective components are selected. Other MPIs and Open MPI 5 decide
differently: fit --algorithm to what yours uses.
"""
import argparse
import glob
import json
import math
import os
import sys

import numpy as np

ALGORITHMS = ("recursive_doubling", "ring", "rabenseifner", "reduce_bcast")


def die(msg):
    print(f"scaling.py: {msg}", file=sys.stderr)
    sys.exit(2)


# ---- communication -------------------------------------------------------------------


def tuned_algorithm(P, nbytes):
    """Open MPI 4.1 coll/tuned's fixed choice for a commutative MPI_Allreduce
    of nbytes on P ranks, as one of ALGORITHMS."""
    if P < 2:
        return None
    # (communicator size bound, [(message size bound, algorithm number)...], default)
    table = [
        (4, [(8, 4), (4096, 3), (8192, 4), (16384, 3), (65536, 4), (262144, 5)], 6),
        (8, [(16, 4), (8192, 3)], 6),
        (16, [(8192, 3)], 6),
        (32, [(64, 5), (4096, 3)], 6),
        (64, [(128, 5)], 6),
        (128, [(262144, 3)], 6),
        (256, [(131072, 2), (262144, 3)], 6),
        (512, [(4096, 2)], 6),
        (2048, [(2048, 2), (16384, 3)], 6),
        (4096, [(2048, 2), (4096, 5), (16384, 3)], 6),
        (math.inf, [(2048, 2), (16384, 5), (32768, 3)], 6),
    ]
    names = {2: "reduce_bcast", 3: "recursive_doubling", 4: "ring", 5: "ring", 6: "rabenseifner"}
    for bound, sizes, default in table:
        if P < bound:
            for limit, alg in sizes:
                if nbytes < limit:
                    return names[alg]
            return names[default]
    return "rabenseifner"


def libnbc_algorithm(P, nbytes):
    """Open MPI 4.1 coll/libnbc's choice for MPI_Iallreduce (not in place)."""
    return "reduce_bcast" if P < 4 or nbytes < 65536 else "ring"


def bucketed_algorithm(P, nbytes, buckets):
    """What the bucketed mode runs for a message: sharded (yoto's ring
    reduce-scatter + allgather) in one bucket, else libnbc's MPI_Iallreduce."""
    if P < 2:
        return "-"
    return "ring (sharded)" if buckets <= 1 else libnbc_algorithm(P, nbytes)


def terms(alg, P):
    """(latency factor, bandwidth factor) of one allreduce: t = alpha * L + n / bw * B."""
    lg = math.ceil(math.log2(P)) if P > 1 else 0
    if alg is None or P < 2:
        return 0.0, 0.0
    return {
        "recursive_doubling": (lg, lg),
        "ring": (2 * (P - 1), 2 * (P - 1) / P),
        "rabenseifner": (2 * lg, 2 * (P - 1) / P),
        "reduce_bcast": (2 * lg, 2 * lg),
    }[alg]


def allreduce_s(P, nbytes, alpha, bw, alg=None):
    """Modelled time of one allreduce of nbytes on P ranks (alg: the tuned choice)."""
    alg = alg or tuned_algorithm(P, nbytes)
    L, B = terms(alg, P)
    return alpha * L + nbytes / bw * B


def fit_alpha_bw(obs):
    """obs: [(L, B * n, t)]: t = alpha L + (1/bw) (B n), both >= 0, fitted by
    least squares of the RELATIVE error (sizes span four decades: an absolute
    fit would see only the largest). Returns alpha, bw, rms relative error."""
    A = np.array([[L, Bn] for L, Bn, _ in obs], float)
    t = np.array([x for _, _, x in obs], float)
    Aw = A / t[:, None]
    (a, inv), *_ = np.linalg.lstsq(Aw, np.ones_like(t), rcond=None)
    if a < 0:  # latency not resolved: bandwidth alone
        a, inv = 0.0, float(np.sum(Aw[:, 1]) / np.sum(Aw[:, 1] ** 2))
    if inv <= 0:  # bandwidth not resolved: latency alone
        inv, a = 1e-30, float(np.sum(Aw[:, 0]) / np.sum(Aw[:, 0] ** 2))
    pred = A @ np.array([a, inv])
    rms = float(np.sqrt(np.mean(((pred - t) / t) ** 2)))
    return float(a), 1.0 / inv, rms


def fit_comm(curves, mode):
    """{algorithm or 'all': (alpha, bw, rms, npoints)} from comm curves of
    the given mode ('blocking' or 'bucketed') at P >= 2."""
    # bucketed: only messages of one bucket are fitted, and those go sharded
    pick = tuned_algorithm if mode == "blocking" else (lambda P, n: "ring")
    by_alg, allobs = {}, []
    for c in curves:
        P = c["ranks"]
        if P < 2:
            continue
        for p in c["comm"]:
            n = p["bytes"]
            if mode == "bucketed" and p.get("buckets", 1) > 1:
                continue  # several buckets at once: not one allreduce
            alg = pick(P, n)
            L, B = terms(alg, P)
            o = (L, B * n, p[f"{mode}_s"])
            by_alg.setdefault(alg, []).append(o)
            allobs.append(o)
    out = {}
    if len(allobs) >= 2:
        out["all"] = fit_alpha_bw(allobs) + (len(allobs),)
    for alg, obs in by_alg.items():
        if len({o[1] for o in obs}) >= 2:
            out[alg] = fit_alpha_bw(obs) + (len(obs),)
    return out


# ---- loading ---------------------------------------------------------------------------


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
    pts, curves = [], []
    for f in files:
        try:
            with open(f) as fh:
                d = json.load(fh)
        except (OSError, ValueError) as e:
            die(f"{f}: not a JSON results file ({e})")
        b = d.get("bench", d)
        name = os.path.basename(f)
        sweep = d.get("sweep") or next((s for s in ("weak", "strong", "contention", "comm")
                                        if name.startswith(s)), None)
        if "comm" in b:
            sweep = "comm"
        if sweep not in ("weak", "strong", "contention", "comm"):
            die(f"{f}: unknown sweep (expected jobs/scaling.sh output, or a file named weak-*, strong-*, comm-*)")
        nodes = int(d.get("nodes", 1) or 1)
        try:
            if sweep == "comm":
                curves.append(dict(file=f, ranks=int(b["ranks"]), nodes=nodes, comm=b["comm"]))
                continue
            ar, ph = b.get("allreduce", {}), b.get("phases_s", {})
            compute = sum(float(ph.get(k, 0)) for k in ("forward", "backward", "optimizer"))
            fb = sum(float(ph.get(k, 0)) for k in ("forward", "backward"))
            sharded = bool(ar.get("sharded", False))
            # Adam over the whole gradient on one rank
            adam1 = float(ph.get("optimizer", 0)) * (int(b["ranks"]) if sharded else 1)
            pts.append(dict(
                fb=fb, adam1=adam1, sharded=sharded, mode=str(ar.get("mode", "")),
                file=f, sweep=sweep, ranks=int(b["ranks"]), nodes=nodes,
                bpr=int(b["batch_per_rank"]), step_s=float(b["step_s_median"]),
                ips=float(b["images_per_s"]), bytes=float(ar.get("bytes", 0)), config=str(b.get("config", "")),
                ar_alone=float(ar.get("alone_s", 0)), ar_exposed=float(ar.get("exposed_s", 0)),
                hidden=float(ar.get("hidden_fraction", 0)),
                compute=compute if compute > 0 else float(b["step_s_median"]) - float(ar.get("exposed_s", 0))))
        except (KeyError, TypeError, ValueError) as e:
            die(f"{f}: missing or bad field {e} (is it yoto bench --json output?)")
    return pts, curves


# ---- compute and contention ------------------------------------------------------------------


def per_node(p):
    return max(1, round(p["ranks"] / p["nodes"]))


def fit_slowdown(pts):
    """{R: s(R)}: compute per rank at R ranks per node (nodes = 1) over that of
    one rank at the same batch per rank; {1: 1} when nothing compares."""
    by_b = {}
    for p in pts:
        if p["nodes"] == 1 and p["sweep"] in ("weak", "contention"):
            by_b.setdefault(p["bpr"], {}).setdefault(p["ranks"], []).append(p["fb"] if p["fb"] > 0 else p["compute"])
    ratios = {}
    for d in by_b.values():
        if 1 not in d:
            continue
        base = float(np.median(d[1]))
        for R, v in d.items():
            if R > 1:
                ratios.setdefault(R, []).append(float(np.median(v)) / base)
    return {1: 1.0, **{R: float(np.mean(v)) for R, v in ratios.items()}}


def slowdown(sl, R):
    """s(R), interpolated in log R; flat beyond the measured range."""
    xs = sorted(sl)
    if R <= xs[0]:
        return sl[xs[0]]
    if R >= xs[-1]:
        return sl[xs[-1]]
    return float(np.interp(math.log(R), [math.log(x) for x in xs], [sl[x] for x in xs]))


def fit_compute(pts, sl):
    """t_compute(b) = c0 + c1 b of one rank alone, from compute / s(R)."""
    b = np.array([p["bpr"] for p in pts], float)
    t = np.array([(p["fb"] if p["fb"] > 0 else p["compute"]) / slowdown(sl, per_node(p)) for p in pts])
    if len(set(b)) >= 2:
        (c1, c0), *_ = np.linalg.lstsq(np.stack([b, np.ones_like(b)], 1), t, rcond=None)
        if c0 >= 0 and c1 > 0:
            return float(c0), float(c1)
    return 0.0, float(np.median(t / b))


def is_sharded(pts):
    """Whether the runs' optimizer is sharded on 2+ ranks: what a measured
    multi-rank point says; with none, what the config's mode would do
    (bucketed with one bucket, as both reference configs, or sharded)."""
    multi = [p for p in pts if p["ranks"] > 1]
    if multi:
        return any(p["sharded"] for p in multi)
    return any(p["mode"] in ("bucketed", "sharded") for p in pts)


class Model:
    def __init__(self, pts, curves, a):
        self.sl = fit_slowdown(pts)
        self.c0, self.c1 = fit_compute(pts, self.sl)
        # one rank alone: a point's Adam over the whole gradient over its contention
        self.adam = float(np.median([p["adam1"] / slowdown(self.sl, per_node(p)) for p in pts])) if pts else 0.0
        self.sharded = is_sharded(pts)
        self.nbytes = max((p["bytes"] for p in pts), default=0)
        self.hidden = a.hidden
        self.fits = fit_comm([c for c in curves if c["nodes"] == 1], "blocking")
        self.net_fits = fit_comm([c for c in curves if c["nodes"] > 1], "blocking")
        self.bucket_fits = fit_comm(curves, "bucketed")
        self.net = (a.alpha, a.bandwidth)  # for ranks beyond one node, unless measured
        if "all" in self.net_fits:
            self.net = self.net_fits["all"][:2]
        self.rpn = a.ranks_per_node

    def constants(self, alg, multinode):
        fits = self.net_fits if multinode else self.fits
        if alg in fits:
            return fits[alg][:2]
        if "all" in fits:
            return fits["all"][:2]
        if multinode or not self.fits:
            return self.net
        return self.fits["all"][:2]

    def allreduce(self, P, R=None):
        if P < 2 or self.nbytes <= 0:
            return 0.0
        multinode = self.rpn > 0 and P > self.rpn
        if self.sharded:  # yoto's rings: on one node, the fit to the one-bucket times
            fit = self.bucket_fits.get("ring") or self.bucket_fits.get("all")
            alpha, bw = fit[:2] if fit and not multinode else self.constants("ring", multinode)
            return allreduce_s(P, self.nbytes, alpha, bw, "ring")
        alg = tuned_algorithm(P, self.nbytes)
        alpha, bw = self.constants(alg, multinode)
        return allreduce_s(P, self.nbytes, alpha, bw, alg)

    def step(self, P, b, R=None):
        R = R or (min(P, self.rpn) if self.rpn > 0 else P)
        adam = self.adam / (P if self.sharded and P > 1 else 1)
        return (self.c0 + self.c1 * b + adam) * slowdown(self.sl, R) + (1 - self.hidden) * self.allreduce(P, R)


def leave_one_out(pts, curves, a):
    """Each point's step predicted by the model fitted to all the others."""
    rows = []
    for i, p in enumerate(pts):
        rest = pts[:i] + pts[i + 1:]
        if not rest:
            continue
        m = Model(rest, curves, a)
        pred = m.step(p["ranks"], p["bpr"], per_node(p))
        rows.append((p, pred, (pred - p["step_s"]) / p["step_s"]))
    return rows


# ---- the report ------------------------------------------------------------------------------


def fmt(x, nd=3):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{nd}g}"


def comm_lines(curves, m):
    lines = ["## Communication (yoto bench --comm)", ""]
    if not curves:
        return lines + ["No comm points: run jobs/scaling.sh (it measures them) or `yoto bench CONFIG --comm "
                        "--json`. The allreduce uses --alpha/--bandwidth.", ""]
    lines += ["| ranks | nodes | bytes | blocking ms | Open MPI algorithm | model ms | bucketed ms | bucketed algorithm |",
              "|---:|---:|---:|---:|---|---:|---:|---|"]
    for c in sorted(curves, key=lambda c: (c["nodes"], c["ranks"])):
        for p in c["comm"]:
            P, n = c["ranks"], p["bytes"]
            alg = tuned_algorithm(P, n)
            alpha, bw = m.constants(alg, c["nodes"] > 1)
            model = allreduce_s(P, n, alpha, bw, alg) if P > 1 else 0.0
            lines.append(f"| {P} | {c['nodes']} | {n} | {p['blocking_s'] * 1e3:.4g} | {alg or '-'} | "
                         f"{model * 1e3:.4g} | {p['bucketed_s'] * 1e3:.4g} | "
                         f"{bucketed_algorithm(P, n, p.get('buckets', 1))} |")
    lines.append("")
    for label, fits in (("one node (blocking)", m.fits), ("across nodes (blocking)", m.net_fits),
                        ("bucketed, one bucket (sharded ring)", m.bucket_fits)):
        for alg, (al, bw, rms, n) in sorted(fits.items()):
            lines.append(f"- fit, {label}, {alg}: alpha = {al * 1e6:.3g} us, bandwidth = {bw / 1e9:.3g} GB/s "
                         f"({n} sizes, rms error {rms:.0%})")
    if not m.fits:
        lines.append("- no comm curve at 2+ ranks on one node: nothing fitted")
    if not m.net_fits:
        lines.append(f"- across nodes: not measured; --alpha {m.net[0] * 1e6:.3g} us and --bandwidth "
                     f"{m.net[1] / 1e9:.3g} GB/s are assumed for P > ranks per node")
    lines.append("")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", help="results directories or JSON files")
    ap.add_argument("--md", help="Markdown report to write (default: scaling.md in the first directory)")
    ap.add_argument("--png", help="plot to write (default: scaling.png in the first directory)")
    ap.add_argument("--alpha", type=float, default=5e-6,
                    help="network latency per message, s, for ranks on several nodes when no comm point spans "
                         "nodes (default 5e-6)")
    ap.add_argument("--bandwidth", type=float, default=10e9,
                    help="network bandwidth per rank, bytes/s, likewise (default 10e9)")
    ap.add_argument("--fit", action="store_true", help="(kept for old scripts: the fit is always made)")
    ap.add_argument("--hidden", type=float, default=0.0, help="fraction of the allreduce hidden behind backward (default 0)")
    ap.add_argument("--predict", default=",".join(str(2 ** k) for k in range(13)),
                    help="rank counts to predict (default 1,2,4,...,4096)")
    ap.add_argument("--ranks-per-node", type=int, default=0,
                    help="ranks per node of the predicted runs (default: all on one node)")
    ap.add_argument("--batch-per-rank", type=int, help="weak scaling batch per rank to predict (default: measured)")
    ap.add_argument("--global-batch", type=int, help="strong scaling global batch to predict (default: measured)")
    ap.add_argument("--threshold", type=float, default=0.5, help="efficiency below which scaling 'breaks' (default 0.5)")
    a = ap.parse_args()
    if a.alpha < 0 or a.bandwidth <= 0 or not 0 <= a.hidden <= 1 or a.threshold <= 0 or a.ranks_per_node < 0:
        die("need --alpha >= 0, --bandwidth > 0, 0 <= --hidden <= 1, --threshold > 0, --ranks-per-node >= 0")
    try:
        predict = sorted({int(x) for x in a.predict.replace(",", " ").split()})
    except ValueError:
        die(f"--predict: expected a list of rank counts, found '{a.predict}'")
    if not predict or predict[0] < 1:
        die("--predict: rank counts must be >= 1")

    pts, curves = load(a.inputs)
    if not pts:
        die("no bench points (weak-*, strong-*, contention-*): nothing to model")
    first_dir = next((p for p in a.inputs if os.path.isdir(p)), os.path.dirname(os.path.abspath(a.inputs[0])))
    md_path = a.md or os.path.join(first_dir, "scaling.md")
    png_path = a.png or os.path.join(first_dir, "scaling.png")
    m = Model(pts, curves, a)

    sweeps = [s for s in ("weak", "strong", "contention") if any(p["sweep"] == s for p in pts)]
    lines = ["# Scaling", "", f"Inputs: {len(pts)} step measurements and {len(curves)} comm curves from "
             f"{', '.join(a.inputs)}.", "", "## Measured", "",
             "| sweep | ranks | nodes | batch/rank | global batch | step ms | compute ms | images/s | speedup "
             "| efficiency | allreduce alone ms | exposed ms | hidden |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    measured = {}
    for s in sweeps:
        sp = sorted((p for p in pts if p["sweep"] == s), key=lambda p: (p["ranks"], p["file"]))
        base = sp[0]
        for p in sp:
            speed = p["ips"] / base["ips"]
            p["eff"] = speed / (p["ranks"] / base["ranks"])
            lines.append(
                f"| {s} | {p['ranks']} | {p['nodes']} | {p['bpr']} | {p['bpr'] * p['ranks']} | {p['step_s'] * 1e3:.3g} "
                f"| {p['compute'] * 1e3:.3g} | {fmt(p['ips'])} | {speed:.3g} | {p['eff']:.0%} "
                f"| {p['ar_alone'] * 1e3:.3g} | {p['ar_exposed'] * 1e3:.3g} | {p['hidden']:.0%} |")
        measured[s] = sp
    lines += ["", "Efficiency relative to the smallest rank count of each sweep.", ""]
    lines += comm_lines(curves, m)

    lines += ["## Model", "",
              "- t(P, b) = (t_compute(b) + t_adam / P') * s(ranks per node) + (1 - hidden) * t_allreduce(P) "
              + ("(sharded: P' = P, yoto's ring reduce-scatter and allgather" if m.sharded else
                 "(not sharded: P' = 1, the algorithm Open MPI 4.1 picks for the gradient's size")
              + "; see `scaling.py --help`)",
              f"- t_compute(b) = {m.c0 * 1e3:.4g} ms + {m.c1 * 1e3:.4g} ms * b (one rank alone); "
              f"t_adam = {m.adam * 1e3:.4g} ms (the whole gradient on one rank)",
              "- contention s(R), measured on one node: " + ", ".join(f"s({R}) = {v:.3f}" for R, v in sorted(m.sl.items()))
              + ("; beyond, held at the last value (optimistic)" if len(m.sl) > 1 else
                 "; nothing measured beyond 1 rank per node (no contention assumed)"),
              (f"- gradient {m.nbytes / 1e6:.3g} MB, sharded: a ring reduce-scatter and a ring allgather "
               f"at every rank count; hidden = {m.hidden:.0%}" if m.sharded else
               f"- gradient {m.nbytes / 1e6:.3g} MB: Open MPI's choice at 2 ranks "
               f"{tuned_algorithm(2, m.nbytes)}, at 64 ranks {tuned_algorithm(64, m.nbytes)}; hidden = {m.hidden:.0%}"),
              ""]
    loo = leave_one_out(pts, curves, a)
    lines += ["## Leave-one-out: each point predicted from the others", "",
              "| sweep | ranks | nodes | batch/rank | measured step ms | predicted ms | error |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for p, pred, err in loo:
        lines.append(f"| {p['sweep']} | {p['ranks']} | {p['nodes']} | {p['bpr']} | {p['step_s'] * 1e3:.3g} | "
                     f"{pred * 1e3:.3g} | {err:+.1%} |")
    if loo:
        worst = max(abs(e) for _, _, e in loo)
        lines += ["", f"Largest leave-one-out error {worst:.1%}: trust predictions far from the measured points "
                  "less than that.", ""]

    B = a.batch_per_rank or (measured["weak"][0]["bpr"] if "weak" in measured else max(p["bpr"] for p in pts))
    G = a.global_batch or (measured["strong"][0]["bpr"] * measured["strong"][0]["ranks"] if "strong" in measured
                           else B * max(p["ranks"] for p in pts))
    rpn = a.ranks_per_node
    lines += ["## Prediction", "",
              f"Weak: batch per rank {B}; strong: global batch {G}; "
              + (f"{rpn} ranks per node" if rpn else "all ranks on one node") + ".", ""]
    head = "| ranks |" + (" nodes |" if rpn > 0 else "")
    head += (" allreduce ms | weak step ms | weak images/s | weak eff. | strong batch/rank | strong step ms "
             "| strong images/s | strong eff. |")
    lines += [head, "|" + "---:|" * (head.count("|") - 1)]
    t1w, t1s = m.step(1, B, 1), m.step(1, G, 1)
    pred = {"weak": [], "strong": []}
    for P in predict:
        tw = m.step(P, B)
        ew = t1w / tw
        pred["weak"].append((P, P * B / tw, ew))
        row = f"| {P} |" + (f" {math.ceil(P / rpn)} |" if rpn > 0 else "")
        row += f" {m.allreduce(P) * 1e3:.3g} | {tw * 1e3:.3g} | {fmt(P * B / tw)} | {ew:.0%} |"
        b = G / P
        if b >= 1:
            ts = m.step(P, b)
            es = t1s / (P * ts)
            pred["strong"].append((P, G / ts, es))
            row += f" {b:.3g} | {ts * 1e3:.3g} | {fmt(G / ts)} | {es:.0%} |"
        else:
            row += " < 1 | - | - | - |"
        lines.append(row)
    lines.append("")
    for s in ("weak", "strong"):
        if not pred[s]:
            continue
        below = [P for P, _, e in pred[s] if e < a.threshold]
        ok = [P for P, _, e in pred[s] if e >= a.threshold]
        if below:
            lines.append(f"- {s} scaling: predicted efficiency falls below {a.threshold:.0%} at {below[0]} ranks"
                         + (f" ({math.ceil(below[0] / rpn)} nodes)" if rpn > 0 else "")
                         + (f"; fine up to {ok[-1]} ranks" if ok else "") + ".")
        else:
            lines.append(f"- {s} scaling: predicted efficiency stays at or above {a.threshold:.0%} "
                         f"up to {pred[s][-1][0]} ranks.")
    lines += ["", "Assumptions: the gradient's sum is " + ("yoto's rings (sharded)" if m.sharded else
                                                      "Open MPI 4.1's fixed choice of allreduce") + "; the network constants "
              "hold for every node count; no stragglers, no I/O in the step; contention beyond the measured "
              "ranks per node as at the largest measured.", "", f"Plot: {os.path.basename(png_path)}"]
    text = "\n".join(lines) + "\n"
    with open(md_path, "w") as fh:
        fh.write(text)
    sys.stdout.write(text)
    plot(png_path, pts, measured, pred, sweeps, predict, B, G, t1w, m, a.threshold)
    print(f"wrote {md_path} and {png_path}", file=sys.stderr)


def plot(png_path, pts, measured, pred, sweeps, predict, B, G, t1w, m, threshold):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.4))
    colors = {"weak": "tab:blue", "strong": "tab:orange", "contention": "tab:green"}
    name = {"weak": f"weak, {B} images/rank", "strong": f"strong, {G} images/step",
            "contention": f"contention, {B} images/rank, one node"}
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
    ax2.axhline(threshold, color="gray", linestyle=":", label=f"{threshold:.0%}")
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
    fig.suptitle(f"yoto scaling of {', '.join(configs) or 'the training step'}: gradient {m.nbytes / 1e6:.3g} MB, "
                 + ("sharded (rings)" if m.sharded else f"Open MPI {tuned_algorithm(64, m.nbytes) or '-'} at 64 ranks"),
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)


if __name__ == "__main__":
    main()
