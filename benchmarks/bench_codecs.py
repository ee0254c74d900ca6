"""Lossless vs lossy (BitRound) stores of the same networks: size, time and ranking quality.

Usage (from the repository root)::

    python benchmarks/bench_codecs.py --networks 200 --bits 7 9 11 \
        --benchmark ../shared/data/nb201_accuracies.csv --data-root ../shared/data/cifar10-images

Ingests the same seeded NB201 networks (CIFAR-10, batch 1 unless ``--batch-size``) once
lossless and once per ``--bits K`` (``--codec bitround:K``; ``--zfp TOL`` adds
``zfp:TOL``), then on every store: a short evolve (``--generations`` 3, ``--population``
20, same seed) and the Kendall tau of EZNAS-A and of the lossless run's evolved programs
(best_final, best_ever_1, best_ever_2), each scored on every store, with the largest
per-network score difference from the lossless store. The 13 hand-crafted proxies are
computed from the networks themselves during ingest, never from the stored tensors, so
they do not depend on the codec: the table checks they are identical on every store.
Last line: the smallest K whose |delta tau| <= ``--max-dtau`` (0.005) for every program.

``--batch16 N`` also ingests N networks at batch 16, lossless and at the chosen K (or
``--bits``' largest), and prints the bytes per network of both.
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

from eznas_store.collect.proxies.registry import PROXY_NAMES  # noqa: E402
from eznas_store.fitness.engine import Engine, score_store  # noqa: E402
from eznas_store.ingest.config import IngestConfig  # noqa: E402
from eznas_store.ingest.driver import run_ingest  # noqa: E402
from eznas_store.programs.codec import load_program  # noqa: E402
from eznas_store.search.evolve import EvolveConfig, run_evolve  # noqa: E402
from eznas_store.store.group import dir_bytes  # noqa: E402
from eznas_store.store.reader import open_store  # noqa: E402
from eznas_store.studies.compare import stored_proxy_results  # noqa: E402


def ingest(args, url: str, codec: str, *, networks: int, batch_size: int, proxies: bool) -> dict:
    """Ingest one store; its wall time and bytes per network (whole store, and tensors only)."""
    cfg = IngestConfig(store=url, dataset="cifar10", benchmark=args.benchmark, data_root=args.data_root,
                       networks=networks, seed=args.seed, batch_size=batch_size, device=args.device,
                       proxies=proxies, progress=False, codec=codec)
    t0 = time.perf_counter()
    run_ingest(cfg)
    wall = time.perf_counter() - t0
    s = open_store(url)
    tensors = sum(dir_bytes(os.path.join(url, a)) or 0 for a in s.meta["stored"])
    return {"url": url, "codec": s.plan.codec, "ingest_s": wall, "bytes": dir_bytes(url) / s.n_networks,
            "tensor_bytes": tensors / s.n_networks}


def evolve(args, store: dict, out: str) -> None:
    """A short evolve on ``store``: its wall time, best fitness and saved programs, into ``store``."""
    t0 = time.perf_counter()
    res = run_evolve(EvolveConfig(stores=(store["url"],), out=out, population=args.population,
                                  generations=args.generations, seed=args.seed, workers=args.workers,
                                  progress=False))
    store["evolve_s"] = time.perf_counter() - t0
    store["evolve_best"] = res.best_final.meta.get("fitness")
    store["evolved"] = [res.best_final, *res.best_ever[:2]]


def score_all(args, stores: list[dict], programs: list) -> dict[str, list]:
    """Each program's ScoreResult on each store (same order as ``stores``)."""
    out: dict[str, list] = {}
    with Engine(workers=args.workers, progress=False) as engine:
        for s in stores:
            for name, res in zip(programs, score_store(s["url"], [p for _, p in programs.items()], engine=engine)):
                out.setdefault(name, []).append(res)
    return out


def proxy_rows(stores: list[dict]) -> tuple[list[str], bool]:
    """One line of Kendall taus of the 13 stored proxies, and whether they are identical everywhere."""
    per_store = [stored_proxy_results(s["url"], PROXY_NAMES) for s in stores]
    same = all(np.array_equal(a.scores, b.scores, equal_nan=True)
               for other in per_store[1:] for a, b in zip(per_store[0], other))
    return [f"{r.program}={r.tau:.3f}" for r in per_store[0]], same


def table(args, stores: list[dict], scored: dict[str, list]) -> list[str]:
    """The side-by-side table, one column per store."""
    w = 14
    head = f"{'':26s}" + "".join(f"{s['codec']:>{w}s}" for s in stores)
    lines = [head, "-" * len(head)]

    def row(label: str, values) -> None:
        lines.append(f"{label:26s}" + "".join(f"{v:>{w}s}" for v in values))

    row("MB/network (store)", [f"{s['bytes'] / 1e6:.2f}" for s in stores])
    row("MB/network (tensors)", [f"{s['tensor_bytes'] / 1e6:.2f}" for s in stores])
    row("  vs lossless", [f"{s['bytes'] / stores[0]['bytes']:.1%}" for s in stores])
    row("ingest s", [f"{s['ingest_s']:.0f}" for s in stores])
    row(f"evolve s ({args.generations}g x {args.population})", [f"{s['evolve_s']:.0f}" for s in stores])
    row("evolve best fitness", [f"{s['evolve_best']:.4f}" for s in stores])
    for name, results in scored.items():
        base = results[0]
        row(f"tau {name}", [f"{r.tau:.4f}" for r in results])
        row("  dtau", [f"{r.tau - base.tau:+.4f}" for r in results])
        row("  max|dscore|/network", [f"{_max_diff(r.scores, base.scores):.2e}" for r in results])
        row("  max rel |dscore|", [f"{_max_diff(r.scores, base.scores, rel=True):.2e}" for r in results])
    return lines


def _max_diff(a: np.ndarray, b: np.ndarray, rel: bool = False) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    d = np.abs(a[ok] - b[ok])
    if rel:
        d = d / np.maximum(np.abs(b[ok]), 1e-30)
    nan_changed = int((np.isfinite(a) != np.isfinite(b)).sum())
    return float(d.max()) if d.size and not nan_changed else (float("inf") if nan_changed else 0.0)


def _dtau(tau: float, base: float) -> float:
    """|tau - base|; 0 when both are NaN (a program that ranks nothing on either store)."""
    if np.isnan(tau) and np.isnan(base):
        return 0.0
    return abs(tau - base) if np.isfinite(tau - base) else float("inf")


def choose_k(args, stores: list[dict], scored: dict[str, list]) -> int | None:
    """The smallest K whose |dtau| <= max_dtau for every program tested."""
    ok = []
    for j, s in enumerate(stores[1:], start=1):
        if s["codec"].startswith("bitround:") and all(
                _dtau(results[j].tau, results[0].tau) <= args.max_dtau for results in scored.values()):
            ok.append(int(s["codec"].split(":")[1]))
    return min(ok) if ok else None


def batch16(args, tmp: str, k: int) -> None:
    """Bytes per network at batch 16: lossless vs bitround:k on ``args.batch16`` networks."""
    rows = [ingest(args, os.path.join(tmp, f"b16-{c}.zarr"), c, networks=args.batch16, batch_size=16,
                   proxies=False) for c in ("lossless", f"bitround:{k}")]
    print(f"\nbatch 16, {args.batch16} networks (no proxies):")
    for r in rows:
        print(f"  {r['codec']:12s} {r['bytes'] / 1e6:7.2f} MB/network (tensors {r['tensor_bytes'] / 1e6:.2f}; "
              f"{r['bytes'] / rows[0]['bytes']:.1%} of lossless), ingest {r['ingest_s']:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", type=int, default=200)
    ap.add_argument("--bits", type=int, nargs="+", default=[7, 9, 11])
    ap.add_argument("--zfp", type=float, nargs="*", default=[], help="also zfp:TOL stores (needs zfpy)")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--generations", type=int, default=3)
    ap.add_argument("--population", type=int, default=20)
    ap.add_argument("--workers", type=int, default=0, help="Dask workers of evolve and scoring (0: in-process)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-dtau", type=float, default=0.005)
    ap.add_argument("--batch16", type=int, default=0, help="also bytes per network at batch 16 on N networks")
    ap.add_argument("--benchmark", default="../shared/data/nb201_accuracies.csv")
    ap.add_argument("--data-root", default="../shared/data/cifar10-images")
    ap.add_argument("--keep", help="keep the stores under this folder")
    args = ap.parse_args()
    tmp = args.keep or tempfile.mkdtemp(prefix="bench-codecs-")
    os.makedirs(tmp, exist_ok=True)
    codecs = ["lossless", *(f"bitround:{k}" for k in sorted(args.bits)), *(f"zfp:{t}" for t in args.zfp)]
    print(f"machine: {os.cpu_count()} CPUs, device {args.device}; {args.networks} NB201 networks, CIFAR-10, "
          f"batch {args.batch_size}, seed {args.seed}; stores in {tmp}", flush=True)
    try:
        stores = []
        for c in codecs:
            stores.append(ingest(args, os.path.join(tmp, c.replace(":", "-") + ".zarr"), c,
                                 networks=args.networks, batch_size=args.batch_size, proxies=True))
            evolve(args, stores[-1], os.path.join(tmp, "evolve-" + c.replace(":", "-")))
            print(f"  {c}: ingest {stores[-1]['ingest_s']:.0f} s, evolve {stores[-1]['evolve_s']:.0f} s", flush=True)
        programs = {"eznas-a": load_program("eznas-a")}
        for role, p in zip(("best_final", "best_ever_1", "best_ever_2"), stores[0]["evolved"]):
            programs[f"lossless {role}"] = p
        scored = score_all(args, stores, programs)
        print("\n".join(table(args, stores, scored)))
        taus, same = proxy_rows(stores)
        print(f"13 stored proxies: {'identical on every store' if same else 'DIFFER between stores'} (computed "
              f"from the networks at ingest, not from the stored tensors); tau {' '.join(taus)}")
        k = choose_k(args, stores, scored)
        print(f"smallest K with |dtau| <= {args.max_dtau} for every program tested: "
              f"{k if k is not None else 'none of ' + str(sorted(args.bits))}")
        if args.batch16:
            batch16(args, tmp, k if k is not None else max(args.bits))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
