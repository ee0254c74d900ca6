"""Evolve wall time and peak memory; peak RSS for 100 vs 400 networks side by side.

Usage (from the repository root, a store of >= 400 complete networks)::

    python benchmarks/bench_evolve.py STORE --workers 2

1. ``evolve`` with the paper's defaults (population 50, mu 25, lambda 50, 15
   generations) on the first 100 networks: wall time, peak RSS of the driver and of each
   Dask worker.
2. The same with ``--generations G`` (default 2) on each of ``--sizes`` networks (default
   100 400): wall time and peak worker RSS of each, and the ratio of the largest to the
   smallest (goal <= 1.2: memory follows the chunk size, not the number of networks).
   ``--sizes 100 400 1000 --skip-paper`` is the load benchmark of 1,000 stored networks.

Peak RSS comes from ``getrusage(RUSAGE_SELF).ru_maxrss`` of each process (workers report
theirs through ``client.run``), as logged in ``generations.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eznas_store.evolution.evolve import EvolveConfig, run_evolve  # noqa: E402


def run(store: str, n: int, generations: int, workers: int, out: str, seed: int) -> dict:
    t0 = time.perf_counter()
    res = run_evolve(EvolveConfig(stores=(store,), out=out, max_networks=n, generations=generations,
                                  workers=workers, seed=seed, progress=False))
    wall = time.perf_counter() - t0
    log = [json.loads(x) for x in Path(out, "generations.jsonl").read_text().splitlines()]
    return {
        "networks": n, "generations": generations, "wall_s": wall,
        "driver_peak_mb": max(r["driver_peak_rss_mb"] for r in log),
        "worker_peak_mb": max(r["worker_peak_rss_mb"] for r in log),
        "evaluated": sum(r["evaluated"] for r in log),
        "best": res.best_final.meta.get("fitness"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--generations", type=int, default=2, help="generations of the memory runs")
    ap.add_argument("--skip-paper", action="store_true", help="only the memory comparison")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 400], help="network counts to compare")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-evolve-")
    print(f"machine: {os.cpu_count()} CPUs; store {args.store}; {args.workers} Dask workers (1 thread each)")
    try:
        if not args.skip_paper:
            r = run(args.store, 100, 15, args.workers, os.path.join(tmp, "paper"), args.seed)
            print(f"paper defaults, 100 networks: wall {r['wall_s']:.0f} s ({r['wall_s'] / 60:.1f} min), "
                  f"{r['evaluated']} programs evaluated, driver peak RSS {r['driver_peak_mb']:.0f} MB, "
                  f"worker peak RSS {r['worker_peak_mb']:.0f} MB, best tau {r['best']}")
        runs = [run(args.store, n, args.generations, args.workers, os.path.join(tmp, f"m{n}"), args.seed)
                for n in args.sizes]
        for r in runs:
            print(f"{r['networks']:5d} networks, {r['generations']} generations: wall {r['wall_s']:.0f} s, "
                  f"{r['evaluated']} programs, driver peak {r['driver_peak_mb']:.0f} MB, "
                  f"worker peak {r['worker_peak_mb']:.0f} MB")
        small, large = runs[0], runs[-1]
        print(f"worker peak RSS ratio {large['networks']}/{small['networks']}: "
              f"{large['worker_peak_mb'] / small['worker_peak_mb']:.2f} "
              f"(driver {large['driver_peak_mb'] / small['driver_peak_mb']:.2f})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
