"""Our 13 zero-cost proxies against NAS-Bench-Suite-Zero's published values, cell by cell.

Samples ``K`` NB201 cells (seeded) from Suite-Zero's CIFAR-10 table, computes our 13
proxies for each on one batch of real CIFAR-10 training images (64 like NASLib's
zero-cost runs), and prints per proxy the Spearman rank correlation between our values
and Suite-Zero's on the same cells, and each one's Spearman with Suite-Zero's validation
accuracy. ``--reseed S`` computes everything a second time with another init seed and
another image batch: Spearman(ours, ours') is how well a proxy agrees with *itself* across
random draws, the most one can expect against Suite-Zero, whose values come from yet
another draw (NASLib drew a new init and a new batch per network and per proxy).

``--init default`` builds each network with PyTorch's default init (what NASLib used);
``--init eznas`` re-initialises it as the EZNAS statistics do.

Usage::

    python benchmarks/bench_proxies_vs_suitezero.py --k 30 --seed 0 --init default --threads 2
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eznas_store.collect.statistics import network_seed  # noqa: E402
from eznas_store.sources.datasets import sample_batch  # noqa: E402
from eznas_store.collect.proxies.networks import nb201_factory  # noqa: E402
from eznas_store.collect.proxies.registry import PROXY_NAMES  # noqa: E402
from eznas_store.collect.proxies.runner import compute_all  # noqa: E402
from eznas_store.sources.suitezero import read_zc  # noqa: E402



def rho(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan"), int(ok.sum())
    return float(spearmanr(a[ok], b[ok]).statistic), int(ok.sum())


def run(cells: list[str], *, images: torch.Tensor, labels: torch.Tensor, seed: int, init: str,
        label: str) -> tuple[dict[str, np.ndarray], list[float], dict[str, float]]:
    values = {n: np.full(len(cells), np.nan) for n in PROXY_NAMES}
    seconds: list[float] = []
    passes: dict[str, float] = {}
    reasons: dict[str, int] = {}
    for i, cell in enumerate(cells):
        t0 = time.perf_counter()
        out = compute_all(nb201_factory(cell, init=init), images, labels,
                          seed=network_seed(seed, i), timings=passes)
        seconds.append(time.perf_counter() - t0)
        for n, (v, why) in out.items():
            values[n][i] = v
            if why:
                reasons[why.split(":")[0]] = reasons.get(why.split(":")[0], 0) + 1
        print(f"  [{label}] {i + 1}/{len(cells)} {seconds[-1]:.2f}s", file=sys.stderr, flush=True)
    if reasons:
        print(f"  [{label}] failures: {reasons}", file=sys.stderr)
    return values, seconds, passes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, default=30, help="number of cells (default 30)")
    ap.add_argument("--seed", type=int, default=0, help="cell sample, init and batch seed")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--init", choices=("default", "eznas"), default="default")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--reseed", type=int, default=None,
                    help="also compute with this init/batch seed and report self-agreement")
    ap.add_argument("--zc", type=Path, required=True, help="Suite-Zero zc_nasbench201.json[.gz]")
    ap.add_argument("--data-root", type=Path, required=True, help="the CIFAR-10 image folder")
    ap.add_argument("--out", type=Path, default=None, help="write per-cell values as CSV")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    table = read_zc(args.zc)["cifar10"]
    rows = np.random.default_rng(args.seed).choice(len(table), args.k, replace=False)
    cells = [table.archs[r] for r in rows]
    acc = table.val_accuracy[rows]
    batch = sample_batch("cifar10", args.data_root, batch_size=args.batch_size, seed=args.seed)
    ours, seconds, passes = run(cells, images=batch.images, labels=batch.labels, seed=args.seed,
                                init=args.init, label="seed %d" % args.seed)
    again = None
    if args.reseed is not None:
        b2 = sample_batch("cifar10", args.data_root, batch_size=args.batch_size, seed=args.reseed)
        again, _, _ = run(cells, images=b2.images, labels=b2.labels, seed=args.reseed,
                          init=args.init, label="seed %d" % args.reseed)

    print(f"\nNB201 CIFAR-10, K={args.k} cells (seed {args.seed}) from {args.zc.name}; "
          f"batch {args.batch_size} real CIFAR-10 train images; init={args.init}; "
          f"{args.threads} thread(s)")
    head = f"{'proxy':10s} {'rho(ours,SZ)':>12s} {'rho(ours,acc)':>13s} {'rho(SZ,acc)':>11s}"
    if again is not None:
        head += f" {'rho(ours,ours_%d)' % args.reseed:>17s}"
    print(head + "   n")
    for n in PROXY_NAMES:
        theirs = table.proxies[n][rows]
        r1, k1 = rho(ours[n], theirs)
        r2, _ = rho(ours[n], acc)
        r3, _ = rho(theirs, acc)
        line = f"{n:10s} {r1:12.3f} {r2:13.3f} {r3:11.3f}"
        if again is not None:
            line += f" {rho(ours[n], again[n])[0]:17.3f}"
        print(line + f"  {k1:3d}")
    s = np.asarray(seconds)
    print(f"\nwall seconds per network (all 13 proxies): mean {s.mean():.2f}, median "
          f"{np.median(s):.2f}, max {s.max():.2f}")
    total = sum(passes.values())
    print("share per pass: " + ", ".join(f"{k} {v / total:.0%}" for k, v in
                                         sorted(passes.items(), key=lambda kv: -kv[1])))
    if args.out:
        with open(args.out, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["arch", "val_accuracy"] + [f"ours_{n}" for n in PROXY_NAMES]
                       + [f"sz_{n}" for n in PROXY_NAMES])
            for i, r in enumerate(rows):
                w.writerow([cells[i], acc[i]] + [ours[n][i] for n in PROXY_NAMES]
                           + [table.proxies[n][r] for n in PROXY_NAMES])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
