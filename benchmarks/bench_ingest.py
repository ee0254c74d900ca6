"""Ingest throughput and store size per NB201 network, next to the raw size of the 22 tensors.

Usage (from the repository root)::

    python benchmarks/bench_ingest.py --networks 20 --batch-size 1 \
        --benchmark DATA/nb201_accuracies.csv --data-root DATA/cifar10-images

Without ``--benchmark``/``--data-root`` it samples cells from the space and uses digits
resized to 32 px, so it runs anywhere. Prints networks/second and MB per network on disk
(compressed, lossless float32) against the raw size of the 22 terminals a plain dump of
every tensor would write (``4 bytes × elements``, what the EZNAS authors' 33 GB per 1000
networks counts).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from eznas_store.ingest.config import IngestConfig  # noqa: E402
from eznas_store.ingest.driver import run_ingest  # noqa: E402
from eznas_store.store.group import dir_bytes  # noqa: E402
from eznas_store.store.layout import ARRAY_FAMILY  # noqa: E402
from eznas_store.store.store import open_store  # noqa: E402


def raw_bytes_22(store) -> np.ndarray:
    """Bytes of the 22 terminals per network if every tensor were dumped as float32."""
    bt = store.block_table()
    B = store.plan.collect.batch_size
    w = bt["c_out"] * bt["c_in"] * bt["kernel"] ** 2
    i = B * bt["c_in"] * bt["h_in"] ** 2
    o = B * bt["c_out"] * bt["h_out"] ** 2
    per_block = 4 * (w * (1 + 3) + i * 4 * 3 + o * 2 * 3)  # wt + wtgrad×3; 4 input kinds×3; act, actgrad×3
    return np.bincount(bt["block_network"], weights=per_block, minlength=store.n_networks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--benchmark")
    ap.add_argument("--data-root")
    ap.add_argument("--keep", help="keep the store at this path")
    ap.add_argument("--proxies", action="store_true", help="also compute the 13 hand-crafted proxies")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-ingest-")
    url = args.keep or os.path.join(tmp, "store.zarr")
    if args.benchmark and args.data_root:
        cfg = IngestConfig(store=url, dataset="cifar10", benchmark=args.benchmark, data_root=args.data_root,
                           networks=args.networks, seed=args.seed, batch_size=args.batch_size, device="cpu",
                           proxies=args.proxies, progress=False)
    else:
        cfg = IngestConfig(store=url, dataset="digits", image_size=32, networks=args.networks, seed=args.seed,
                           batch_size=args.batch_size, device="cpu", proxies=args.proxies, progress=False)
    t0 = time.perf_counter()
    rep = run_ingest(cfg)
    wall = time.perf_counter() - t0
    s = open_store(url)
    raw = raw_bytes_22(s)
    disk = dir_bytes(url)
    per_array = {name: dir_bytes(os.path.join(url, name)) for name in ARRAY_FAMILY}
    collect_s = float(np.sum(s.column("seconds")))
    n = s.n_networks
    print(f"machine: {os.cpu_count()} CPUs, torch threads {__import__('torch').get_num_threads()}; batch "
          f"{args.batch_size}; {n} NB201 networks (C=16, N=5, 32 px); proxies {'on' if args.proxies else 'off'}")
    print(f"ingest wall time          {wall:8.1f} s   ({n / wall:.2f} networks/s end to end, "
          f"{n / collect_s:.2f} networks/s in the collector)")
    print(f"raw 22 tensors (float32)  {raw.mean() / 1e6:8.2f} MB per network (min {raw.min() / 1e6:.1f}, "
          f"max {raw.max() / 1e6:.1f})")
    print(f"store on disk (lossless)  {disk / n / 1e6:8.2f} MB per network  = {disk / raw.sum():.1%} of raw")
    print("per stored array (MB per network):")
    for name, b in sorted(per_array.items(), key=lambda kv: -kv[1]):
        print(f"  {name:14s} {b / n / 1e6:6.2f}")
    print(rep.line())
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
