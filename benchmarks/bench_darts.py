"""EZNAS-A and four hand-crafted proxies on DARTS cells of the 1,000-genotype set, side by side.

Samples ``--networks`` genotypes (seeded) of ``darts_1000_cifar10_valid.csv`` (SWAP's
1,000 random DARTS cells with their CIFAR-10 validation accuracy), builds each on the
DARTS NetworkCIFAR skeleton (``--channels`` C, ``--cells`` layers L; default C=16, L=8),
and scores it storeless (collect → evaluate → discard, as ``eznas-store score`` without
a STORE does) on one seeded batch of ``--batch-size`` real CIFAR-10 training images:
EZNAS-A and ``params``, ``synflow``, ``nwot``, ``jacov`` (``--proxy`` to change them).
Prints Kendall τ and Spearman ρ of each against the validation accuracy, beside the
published figures quoted in :data:`PUBLISHED` (other cells / other skeletons, so a
reference, not a like-for-like comparison), and writes the table as Markdown (``--out``).

``--jobs J`` scores the networks in J processes (one torch thread each), network ``i`` in
job ``i mod J``; every network keeps the seeds it has in a one-process run (its position
in the seeded sample), so the figures do not depend on J. ``--max-seconds S`` stops
starting networks after S seconds: the table is then over the networks scored (the
header says how many of the sample), all of them scored by every row.

Usage::

    python benchmarks/bench_darts.py --networks 300 --batch-size 16 --seed 0 --channels 8 --cells 5 \
        --jobs 3 --out /tmp/darts-corr.md
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eznas_store.collect.statistics import resolve_device  # noqa: E402
from eznas_store.fitness.scores import summarise  # noqa: E402
from eznas_store.storeless.scoring import score_collected  # noqa: E402
from eznas_store.ingest.config import IngestConfig  # noqa: E402
from eznas_store.ingest.networks import collect_network, proxies_for_network  # noqa: E402
from eznas_store.ingest.job import plan_ingest  # noqa: E402
from eznas_store.programs.registered import NAMED_PROGRAMS  # noqa: E402

#: published figures for the DARTS space: (row, Kendall tau or None, Spearman rho or None, where)
PUBLISHED: tuple[tuple[str, float | None, float | None, str], ...] = (
    ("eznas-a", 0.547, 0.736, "EZNAS released code, NDS-DARTS (other cells, NDS labels)"),
    ("SWAP", None, 0.93, "SWAP journal version (arXiv 2605.07378, abstract), DARTS CNNs, CIFAR-10 valid"),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--channels", type=int, default=None, help="C (default 16)")
    ap.add_argument("--cells", type=int, default=None, help="layers L (default 8)")
    ap.add_argument("--proxy", action="append", default=None, help="default: params synflow nwot jacov")
    ap.add_argument("--benchmark", required=True, help="a DARTS accuracy table (genotype, accuracy CSV)")
    ap.add_argument("--data-root", required=True, help="the CIFAR-10 image folder")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per job")
    ap.add_argument("--jobs", type=int, default=1, help="processes (networks i mod J)")
    ap.add_argument("--max-seconds", type=float, default=0, help="stop starting networks after this (0: never)")
    ap.add_argument("--out", default=None, help="Markdown file for the table")
    return ap.parse_args(argv)


def _num(x: float | None) -> str:
    return "" if x is None else ("nan" if not math.isfinite(x) else f"{x:.3f}")


def table(results, published=PUBLISHED) -> list[str]:
    """Markdown rows: ours (sorted by tau), then the published figures."""
    lines = ["| proxy | Kendall τ | Spearman ρ | valid / networks | source |", "|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: -r.tau if math.isfinite(r.tau) else math.inf):
        lines.append(f"| {r.program} | {_num(r.tau)} | {_num(r.rho)} | {r.n_valid} / {r.n} | ours |")
    for name, tau, rho, where in published:
        lines.append(f"| {name} | {_num(tau)} | {_num(rho)} | | {where} |")
    return lines


def score_part(cfg: IngestConfig, proxies: list[str], job: int, jobs: int, threads: int,
               deadline: float = math.inf) -> dict:
    """Proxies and EZNAS-A of networks ``job, job + jobs, ...`` of the plan, with their seeds,
    until the wall clock passes ``deadline`` (``time.time()``)."""
    torch.set_num_threads(threads)
    plan, batch, labels = plan_ingest(cfg)
    pplan = dataclasses.replace(plan, proxies=tuple(proxies))
    data, data_labels = torch.from_numpy(batch), torch.from_numpy(labels)
    device = resolve_device("cpu")
    eznas = NAMED_PROGRAMS["eznas-a"]
    out: dict = {"idx": [], "values": [], "reasons": {}, "t_proxy": 0.0, "t_eznas": 0.0}
    for i in range(job, len(plan.archs), jobs):
        if time.time() > deadline:
            break
        t0 = time.perf_counter()
        got = proxies_for_network(pplan, i, data, data_labels, device)
        t1 = time.perf_counter()
        res = score_collected(collect_network(plan, i, data, device).blocks, [eznas],
                              structure=plan.collect.structure)
        out["t_proxy"] += t1 - t0
        out["t_eznas"] += time.perf_counter() - t1
        out["idx"].append(i)
        out["values"].append([got[p][0] for p in proxies] + [float(res.scores[0, 0])])
        for name, why in [*((p, got[p][1]) for p in proxies), ("eznas-a", res.reasons[0])]:
            if why:
                out["reasons"].setdefault(name, why)
    return out


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    if not os.path.exists(a.benchmark):
        print(f"error: {a.benchmark} not found (--benchmark: a DARTS accuracy table)", file=sys.stderr)
        return 2
    if a.jobs < 1 or a.networks < 2:
        print("error: --jobs must be >= 1 and --networks >= 2", file=sys.stderr)
        return 2
    cfg = IngestConfig(store="unused", space="darts", dataset="cifar10", benchmark=a.benchmark,
                       data_root=a.data_root, networks=a.networks, seed=a.seed, batch_size=a.batch_size,
                       C=a.channels, N=a.cells, device="cpu", accuracy_column="cifar10_valid", progress=False)
    proxies = a.proxy or ["params", "synflow", "nwot", "jacov"]
    plan = plan_ingest(cfg)[0]
    t0 = time.perf_counter()
    deadline = time.time() + a.max_seconds if a.max_seconds > 0 else math.inf
    args = [(cfg, proxies, j, a.jobs, a.threads, deadline) for j in range(a.jobs)]
    if a.jobs == 1:
        parts = [score_part(*args[0])]
    else:
        with multiprocessing.get_context("spawn").Pool(a.jobs) as pool:
            parts = pool.starmap(score_part, args)
    wall = time.perf_counter() - t0
    n = len(plan.archs)
    names = [*proxies, "eznas-a"]
    values = np.full((len(names), n), np.nan)
    for part in parts:
        if part["idx"]:
            values[:, part["idx"]] = np.asarray(part["values"], dtype=np.float64).T
    reasons = {k: v for part in parts for k, v in part["reasons"].items()}
    done = np.sort(np.concatenate([np.asarray(p["idx"], dtype=np.int64) for p in parts]))
    acc = np.asarray(plan.accuracies[plan.accuracy_column], dtype=np.float64)
    archs = [plan.archs[i] for i in done]
    results = [summarise(name, "darts-1000", values[k, done], acc[done], archs, done, reasons.get(name),
                         label=plan.accuracy_column) for k, name in enumerate(names)]
    t_proxy = sum(p["t_proxy"] for p in parts)
    t_eznas = sum(p["t_eznas"] for p in parts)
    scored = len(done) if len(done) == n else f"{len(done)} (stopped by --max-seconds) of {n}"
    head = (f"{scored} DARTS genotypes of {Path(a.benchmark).name} (seed {a.seed}), skeleton "
            f"C={plan.C} L={plan.N}, batch {a.batch_size} CIFAR-10 training images, CPU, {a.jobs} job(s) x "
            f"{a.threads} thread(s): {wall:.0f} s wall; per network {t_proxy / max(len(done), 1):.2f} s proxies, "
            f"{t_eznas / max(len(done), 1):.2f} s EZNAS-A (collect + evaluate), summed over jobs")
    lines = [head, "", *table(results)]
    print("\n".join(lines))
    if a.out:
        Path(a.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
