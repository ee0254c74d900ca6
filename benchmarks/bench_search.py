"""Proxy-guided aging evolution on the real NB201 table: accuracy reached, rank and cells/second.

Usage (from the repository root; each seed runs for the whole ``--budget``)::

    OMP_NUM_THREADS=1 python benchmarks/bench_search.py --proxy synflow --budget 2m --seeds 2

Runs ``--seeds`` searches (seeds 0..K-1 from ``--seed-start``) of one proxy or program
with one budget on the NB201 accuracy table (``--benchmark``) and one CIFAR-10 batch from
the CIFAR-10 images (``--data-root``), and prints per seed the chosen cell, its CIFAR-10 test
accuracy, its rank among the 15,625 cells, cells scored, cells/second and wall time; then
mean and worst accuracy and how many seeds reached ``--target``. ``--out DIR`` keeps each
run's ``search.json`` + ``history.csv`` under ``DIR/seed<k>``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np

from eznas_store.archsearch.config import ArchSearchConfig
from eznas_store.archsearch.run import run_search



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxy", default="synflow", help="proxy name, program name (eznas-a) or program JSON")
    ap.add_argument("--budget", default="2m", help="per seed, e.g. 90s, 2m, 15m")
    ap.add_argument("--max-evaluations", type=int, default=None)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--seed-start", type=int, default=0)
    ap.add_argument("--population", type=int, default=64)
    ap.add_argument("--sample", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--reference-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--benchmark", required=True, help="the NB201 accuracy table (CSV)")
    ap.add_argument("--data-root", required=True, help="the CIFAR-10 image folder")
    ap.add_argument("--accuracy-column", default="cifar10_test")
    ap.add_argument("--target", type=float, default=93.0, help="accuracy to count seeds against")
    ap.add_argument("--out", default=None, help="keep each run under OUT/seed<k>")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-search-"))
    results = []
    print(f"proxy {args.proxy}, budget {args.budget}"
          + (f" / {args.max_evaluations} cells" if args.max_evaluations else "")
          + f", population {args.population}, sample {args.sample}, threads {args.threads}, device {args.device}")
    print(f"{'seed':>4} {'acc':>7} {'rank':>6} {'pctl':>7} {'cells':>6} {'cells/s':>8} {'wall s':>7} "
          f"{'best seen':>9}  cell")
    for seed in range(args.seed_start, args.seed_start + args.seeds):
        cfg = ArchSearchConfig(proxy=args.proxy, benchmark=args.benchmark, dataset="cifar10",
                           data_root=args.data_root, accuracy_column=args.accuracy_column,
                           budget=args.budget, max_evaluations=args.max_evaluations,
                           population=args.population, sample=args.sample, seed=seed,
                           batch_size=args.batch_size, reference_size=args.reference_size,
                           threads=args.threads, device=args.device, out=str(out / f"seed{seed}"),
                           progress=args.progress)
        r = run_search(cfg)
        results.append(r)
        rank = "-" if r.rank is None else str(r.rank)
        pct = "-" if r.percentile is None else f"{r.percentile:.2f}"
        print(f"{seed:>4} {r.accuracy:>7.2f} {rank:>6} {pct:>7} {r.evaluations:>6} {r.cells_per_second:>8.2f} "
              f"{r.wall_seconds:>7.1f} {r.best_visited_accuracy:>9.2f}  {r.cell}", flush=True)
    acc = np.array([r.accuracy for r in results])
    ranks = np.array([r.rank if r.rank is not None else np.nan for r in results], dtype=float)
    rate = np.array([r.cells_per_second for r in results])
    print(f"mean accuracy {np.nanmean(acc):.2f}, worst {np.nanmin(acc):.2f}, best {np.nanmax(acc):.2f}; "
          f"mean rank {np.nanmean(ranks):.0f}; {int((acc >= args.target).sum())}/{len(acc)} seeds >= "
          f"{args.target:g}; mean {rate.mean():.2f} cells/s (setup incl. reference "
          f"{np.mean([r.setup_seconds for r in results]):.1f} s); table optimum {results[0].optimum_accuracy:.2f}")
    print(f"runs kept in {out}")


if __name__ == "__main__":
    main()
