"""SWAP's correlation with accuracy at several pattern batches, on the same NB201 cells.

Usage (from the repository root; a proxy table names the cells and their labels)::

    OMP_NUM_THREADS=1 python benchmarks/bench_swap_batch.py --table T.csv --cells 38 --batches 16 64

Why: the count of distinct sample-wise ReLU patterns is capped at 2^B, so PROXIES.md
suggested B >= 32 against saturation; the authors' code uses 16 images. This scores every
cell at each B (same CIFAR-10 images, prefixes of one seeded sample; the table's seed for the
init and the 32 N(0, 1) re-inits; the images are the table's sample) and prints Spearman rho / Kendall tau with each label set's
test accuracy, the rho with the parameter count, and how many cells reach 95 % of the cap.
The ``swap`` proxy uses the B this shows best (``SWAP_BATCH``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr

from eznas_store.collect.proxies.networks import fresh_network, nb201_factory
from eznas_store.collect.proxies.swap import SwapState
from eznas_store.sources.proxy_csv import read_proxy_table
from eznas_store.sources.datasets import sample_batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", required=True, help="a proxy table (eznas-store proxy-table): its first cells")
    ap.add_argument("--cells", type=int, default=38)
    ap.add_argument("--batches", type=int, nargs="+", default=[16, 64])
    a = ap.parse_args()
    torch.set_num_threads(1)
    table = read_proxy_table(a.table)
    rec = table["meta"]["recipe"]
    archs = table["archs"][: a.cells]
    # the table's own sample (2 x its batch: ZiCo's two batches), so B = its batch is its swap column
    images = sample_batch("cifar10", rec["data_root"], batch_size=2 * rec["batch_size"], seed=rec["seed"]).images
    if max(a.batches) > images.shape[0]:
        sys.exit(f"bench_swap_batch: error: --batches up to {images.shape[0]} (twice the table's batch)")
    values = {b: [] for b in a.batches}
    params = []
    t0 = time.perf_counter()
    for i, arch in enumerate(archs):
        factory = nb201_factory(arch, num_classes=10, C=rec["channels"], N=rec["cells_per_stage"])
        for b in a.batches:
            model = fresh_network(factory, seed=rec["seed"], device=torch.device("cpu"), reinit=True)
            state = SwapState(model, images[:b], rec["seed"])
            values[b].append(state.mean_patterns())
        params.append(state.params_thousands())
        print(f"{i + 1}/{len(archs)} {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    n = len(archs)
    print(f"SWAP on the first {n} cells of {a.table} (seed {rec['seed']}, C={rec['channels']}, "
          f"N={rec['cells_per_stage']}, 32 re-inits)")
    print(f"{'B':>4} | " + " | ".join(f"{s} rho / tau" for s in table["label_sets"]) + " | rho with params | saturated")
    for b in a.batches:
        v = np.array(values[b])
        cols = []
        for s, info in table["label_sets"].items():
            acc = np.asarray(info["accuracy"][:n])
            cols.append(f"{spearmanr(v, acc)[0]:.3f} / {kendalltau(v, acc)[0]:.3f}")
        sat = int((v >= 0.95 * 2.0 ** b).sum())
        print(f"{b:>4} | " + " | ".join(cols) + f" | {spearmanr(v, params)[0]:.3f} | {sat} of {n}")


if __name__ == "__main__":
    main()
