"""Lossless vs lossy (BitRound) stores of the same networks: size, time and ranking quality.

Usage (from the repository root)::

    python benchmarks/bench_codecs.py --networks 200 --codecs bitround:2 sumround:2 sumround:3 \
        --benchmark DATA/nb201_accuracies.csv --data-root DATA/cifar10-images

Ingests the seeded NB201 networks (CIFAR-10, batch 1 unless ``--batch-size``) ONCE losslessly
(or reuses ``--lossless URL``), then *transcodes* that store's float32 tensor arrays into each
``--codecs`` spec (``--bits K`` adds ``bitround:K``): same tables, flags and proxies, tensor
chunks re-encoded, plan and fingerprint rewritten, so the result is the store ``ingest --codec``
would have written (BitRound is elementwise; ``tests/test_codecs.py`` checks it bit-equal).
Then on every store it scores EZNAS-A, the programs of one short evolve on the lossless
store (``--generations`` x ``--population``, or ``--evolved DIR`` of a finished run) and every
``--formula``, and prints bytes per network, ingest / transcode / scoring seconds, Kendall tau,
delta tau and the largest per-network score difference side by side. ``--evolve-on`` codecs
also get a timed evolve (seconds per generation). Every program then gets the round-off
check on the lossless store (``score --roundoff``: every statistic nudged by one float32 ulp);
one whose scores move by over 1 % of their spread ranks by round-off, which no second copy of
the statistics keeps, lossy or lossless on other hardware, so it is reported apart. Last line:
the smallest store whose |delta tau| <= ``--max-dtau`` (0.005) for EZNAS-A and every evolved
and issue-14 program not set by round-off (the stress ``--formula`` programs are reported
apart too, with a Markdown summary per store).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from eznas_store.fitness.engine import Engine, score_store  # noqa: E402
from eznas_store.fitness.roundoff import Roundoff, roundoff_check  # noqa: E402
from eznas_store.ingest.config import IngestConfig  # noqa: E402
from eznas_store.ingest.driver import run_ingest  # noqa: E402
from eznas_store.programs.codec import load_program  # noqa: E402
from eznas_store.programs.formula import parse_formula  # noqa: E402
from eznas_store.programs.tree import Program  # noqa: E402
from eznas_store.evolution.evolve import EvolveConfig, run_evolve  # noqa: E402
from eznas_store.store.group import dir_bytes  # noqa: E402
from eznas_store.store.plan import canonical_codec  # noqa: E402
from eznas_store.store.store import open_store  # noqa: E402
from eznas_store.store.transcode import transcode_store  # noqa: E402

#: the five statistics programs issue 14's evolves found (extended op set, ``sum`` aggregate;
#: docs/results.md "Statistics programs on held-out cells"): the programs a lab would carry from a store
ISSUE14 = (
    "eig_entropy(channel_cov(channel_cov(channel_corr(act_N))))",
    "frobenius(eff_rank(wtgrad_P))",
    "eig_min(channel_corr(product(preact_D, preactgrad_D)))",
    "eig_entropy(channel_cov(channel_cov(wtgrad_N)))",
    "frobenius(sigmoid(logdet_lastdims(channel_corr(sigmoid(inpactgrad_D)))))",
)

#: stress programs: found by earlier evolves of this project (other stores, other seeds),
#: chosen to touch every stored kind, P-D differences, determinants and near-tied logdets;
#: reported apart from the goal's set (docs/results.md "Lossy codecs" says which kinds move and why)
FORMULAS = (
    "abslog(det(wtgrad_P))",
    "normalized_sum(product(act_D, inpactgrad_N))",
    "sum(frobenius(act_D), sign(wt))",
    "invert(logdet_lastdims(actgrad_D))",
    "frobenius(inpact_D)",
    "abs(logdet(act_N))",
    "hamming(l1_norm(abs(frobenius(det(preactgrad_N)))), gt0(preact_P))",
)


def sizes(url: str) -> dict:
    """Bytes per network of the whole store and of its tensor arrays."""
    s = open_store(url)
    tensors = sum(dir_bytes(os.path.join(url, a)) or 0 for a in s.meta["stored"])
    return {"url": url, "codec": s.plan.codec, "bytes": dir_bytes(url) / s.n_networks,
            "tensor_bytes": tensors / s.n_networks, "n": s.n_networks}


def ingest(args, url: str, *, networks: int, batch_size: int) -> dict:
    """Ingest one lossless store (no proxies: they never read the stored tensors); its wall time."""
    cfg = IngestConfig(store=url, dataset="cifar10", benchmark=args.benchmark, data_root=args.data_root,
                       networks=networks, seed=args.seed, batch_size=batch_size, device=args.device,
                       proxies=False, progress=False)
    t0 = time.perf_counter()
    run_ingest(cfg)
    return {**sizes(url), "ingest_s": time.perf_counter() - t0, "make": "ingest"}


def transcode(src: str, dst: str, codec: str) -> dict:
    """``src`` re-encoded into ``dst`` with ``codec`` (``store.transcode.transcode_store``: the
    store ``ingest --codec`` makes, P kept as P − D when lossy); its sizes and seconds."""
    t0 = time.perf_counter()
    transcode_store(src, dst, codec)
    return {**sizes(dst), "transcode_s": time.perf_counter() - t0, "make": "transcode"}


def evolve(args, store: dict, out: str) -> list[Program]:
    """A timed short evolve on ``store`` (seconds per generation into ``store``); its programs."""
    t0 = time.perf_counter()
    res = run_evolve(EvolveConfig(stores=(store["url"],), out=out, population=args.population,
                                  generations=args.generations, seed=args.seed, workers=0, progress=False))
    store["evolve_s_per_gen"] = (time.perf_counter() - t0) / args.generations
    store["evolve_best"] = res.best_final.meta.get("fitness")
    return [res.best_final, *res.best_ever]


def programs_to_test(args, evolved: list[Program]) -> dict[str, Program]:
    """EZNAS-A, the evolved programs (one per distinct program), issue 14's five (``i14-*``,
    unless ``--no-issue14``) and the ``--formula`` stress ones (``stress*``)."""
    progs = {"eznas-a": load_program("eznas-a")}
    seen = {progs["eznas-a"].key()}

    def add(name: str, p: Program) -> None:
        if p.key() not in seen:
            seen.add(p.key())
            progs[name] = p

    for i, p in enumerate(evolved):
        add(f"evolved{i}", p)
    for i, f in enumerate(() if args.no_issue14 else ISSUE14):
        add(f"i14-{i}", Program(tree=parse_formula(f), aggregate="sum", name=f"i14-{i}"))
    for i, f in enumerate(args.formula):
        add(f"stress{i}", Program(tree=parse_formula(f), name=f"stress{i}"))
    for name, p in progs.items():
        print(f"  program {name}: {p.formula()} ({p.aggregate} over blocks)", flush=True)
    return progs


def score_all(stores: list[dict], programs: dict[str, Program]) -> dict[str, list]:
    """Each program's ScoreResult on each store (same order as ``stores``); scoring seconds."""
    out: dict[str, list] = {}
    with Engine(workers=0, progress=False) as engine:
        for s in stores:
            t0 = time.perf_counter()
            for name, res in zip(programs, score_store(s["url"], list(programs.values()), engine=engine)):
                out.setdefault(name, []).append(res)
            s["score_s"] = time.perf_counter() - t0
    return out


def table(stores: list[dict], scored: dict[str, list]) -> list[str]:
    """The side-by-side table, one column per store."""
    w = 19
    head = f"{'':28s}" + "".join(f"{s['codec']:>{w}s}" for s in stores)
    lines = [head, "-" * len(head)]

    def row(label: str, values) -> None:
        lines.append(f"{label[:28]:28s}" + "".join(f"{v:>{w}s}" for v in values))

    row("MB/network (store)", [f"{s['bytes'] / 1e6:.2f}" for s in stores])
    row("MB/network (tensors)", [f"{s['tensor_bytes'] / 1e6:.2f}" for s in stores])
    row("  vs lossless", [f"{s['bytes'] / stores[0]['bytes']:.1%}" for s in stores])
    row("ingest / transcode s", [f"{s.get('ingest_s', s.get('transcode_s', float('nan'))):.0f} ({s['make'][0]})"
                                 for s in stores])
    row("score s (all programs)", [f"{s['score_s']:.0f}" for s in stores])
    if any("evolve_s_per_gen" in s for s in stores):
        row("evolve s/generation", [f"{s['evolve_s_per_gen']:.0f}" if "evolve_s_per_gen" in s else "-"
                                    for s in stores])
    for name, results in scored.items():
        base = results[0]
        row(f"tau {name}", [f"{r.tau:.4f}" for r in results])
        row("  dtau", [f"{r.tau - base.tau:+.4f}" for r in results])
        row("  max rel |dscore|", [f"{_max_diff(r.scores, base.scores, rel=True):.2e}" for r in results])
    return lines


def _max_diff(a: np.ndarray, b: np.ndarray, rel: bool = False) -> float:
    """Largest per-network |a - b| (relative to |b|); inf if a program is valid on one store only."""
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


def check_roundoff(store: dict, programs: dict[str, Program], scored: dict[str, list]) -> dict[str, Roundoff]:
    """Each program's round-off check on the lossless store (``fitness.roundoff``: every
    statistic nudged by one float32 ulp); a program it flags ranks by round-off on any store."""
    results = [scored[name][0] for name in programs]
    found = roundoff_check(store["url"], list(programs.values()), results)
    return dict(zip(programs, found))


def goal_set(scored: dict[str, list], roundoff: dict[str, Roundoff]) -> list[str]:
    """EZNAS-A, the evolved and issue 14's programs, less those whose ranking the round-off
    check finds set by float32 round-off (no copy of the statistics but the same bits keeps
    their tau; they are reported apart)."""
    return [k for k in scored if not k.startswith("stress") and not roundoff[k].determined]


def passing(args, stores: list[dict], scored: dict[str, list], roundoff: dict[str, Roundoff]) -> list[dict]:
    """The lossy stores whose |dtau| <= max_dtau for every program of the goal's set, smallest first."""
    goal = goal_set(scored, roundoff)
    ok = [s for j, s in enumerate(stores) if j and all(_dtau(scored[k][j].tau, scored[k][0].tau) <= args.max_dtau
                                                        for k in goal)]
    return sorted(ok, key=lambda s: s["bytes"])


def summary(args, stores: list[dict], scored: dict[str, list], roundoff: dict[str, Roundoff]) -> list[str]:
    """One Markdown row per store: size, and per program set the largest |dtau| and how many
    programs stay within ``max_dtau`` (NaN on both stores counts as unchanged); programs the
    round-off check flags form their own set, whatever they came from."""
    goal = set(goal_set(scored, roundoff))
    sets = {"EZNAS-A": ["eznas-a"], "evolved": [k for k in scored if k.startswith("evolved") and k in goal],
            "issue 14": [k for k in scored if k.startswith("i14") and k in goal],
            "round-off-determined": [k for k in scored if not k.startswith("stress") and k not in goal],
            "stress": [k for k in scored if k.startswith("stress")]}
    sets = {k: v for k, v in sets.items() if v}
    head = "| store | MB/network | " + " | ".join(f"{k}: max abs dtau (within {args.max_dtau})" for k in sets) + " |"
    lines = [head, "|" + "---|" * (2 + len(sets))]
    for j, s in enumerate(stores[1:], 1):
        cells = []
        for names in sets.values():
            d = [_dtau(scored[n][j].tau, scored[n][0].tau) for n in names]
            cells.append(f"{max(d):.4f} ({sum(x <= args.max_dtau for x in d)}/{len(d)})")
        lines.append(f"| {s['codec']} | {s['bytes'] / 1e6:.2f} | " + " | ".join(cells) + " |")
    return lines


def batch_run(args, tmp: str, batch_size: int, networks: int, codecs: list[str], lossless: str | None) -> None:
    """Ingest ``networks`` at ``batch_size`` once losslessly (or reuse the store ``lossless``),
    transcode, score, print the table (and seconds per generation of ``--evolve-on`` stores)."""
    if lossless:
        base = {**sizes(lossless), "make": "ingest"}
        base["ingest_s"] = float(open_store(lossless).column("seconds").sum())
    else:
        base = ingest(args, os.path.join(tmp, f"b{batch_size}-lossless.zarr"), networks=networks,
                      batch_size=batch_size)
    print(f"  lossless: {base['ingest_s']:.0f} s ({'sum of per-network seconds' if lossless else 'wall'})",
          flush=True)
    stores = [base]
    for c in codecs:
        dst = os.path.join(tmp, f"b{batch_size}-{c.replace(':', '-')}.zarr")
        if os.path.exists(dst) and open_store(dst).plan.codec == canonical_codec(c):  # --keep of an earlier run
            stores.append({**sizes(dst), "make": "transcode", "transcode_s": float("nan")})
        else:
            stores.append(transcode(base["url"], dst, c))
        print(f"  {stores[-1]['codec']}: transcode {stores[-1]['transcode_s']:.0f} s", flush=True)
    evolved = [load_program(f) for d in args.evolved for f in sorted(glob.glob(os.path.join(d, "*.json")))]
    for s in stores:
        if s["codec"] in [canonical_codec(c) for c in args.evolve_on]:
            progs = evolve(args, s, os.path.join(tmp, f"evolve-b{batch_size}-{s['codec'].replace(':', '-')}"))
            evolved = evolved or (progs if s is base else [])
            print(f"  evolve on {s['codec']}: {s['evolve_s_per_gen']:.0f} s/generation", flush=True)
    programs = programs_to_test(args, evolved)
    scored = score_all(stores, programs)
    t0 = time.perf_counter()
    roundoff = check_roundoff(base, programs, scored)
    print("\n".join(table(stores, scored)))
    print(f"\nround-off check on the lossless store ({time.perf_counter() - t0:.0f} s):")
    print("\n".join(f"  {name}: {c.line()}" for name, c in roundoff.items()))
    print("\n" + "\n".join(summary(args, stores, scored, roundoff)))
    ok = passing(args, stores, scored, roundoff)
    goal = goal_set(scored, roundoff)
    apart = [k for k in programs if not k.startswith("stress") and k not in goal]
    print(f"lossy stores with |dtau| <= {args.max_dtau} for EZNAS-A and all {len(goal) - 1} evolved and issue-14 "
          f"programs not set by round-off ({len(apart)} set apart: {', '.join(apart) or 'none'}), smallest "
          f"first: {', '.join(_label(s) for s in ok) or 'none'}", flush=True)


def _label(store: dict) -> str:
    return f"{store['codec']} ({store['bytes'] / 1e6:.2f} MB/network)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", type=int, default=200)
    ap.add_argument("--codecs", nargs="+", default=["bitround:2", "sumround:2", "compact", "sumround:3"])
    ap.add_argument("--bits", type=int, nargs="*", default=[], help="also bitround:K for each K")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--lossless", help="reuse this lossless store (made with ingest) instead of ingesting")
    ap.add_argument("--evolved", nargs="*", default=[],
                    help="programs/ folders of finished evolves to test (instead of the --evolve-on lossless one)")
    ap.add_argument("--no-issue14", action="store_true", help="leave out issue 14's five statistics programs")
    ap.add_argument("--evolve-on", nargs="*", default=["lossless"], help="codecs that get a timed evolve")
    ap.add_argument("--formula", nargs="*", default=list(FORMULAS),
                    help="stress programs (mean over blocks), reported apart from the goal's set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--generations", type=int, default=2)
    ap.add_argument("--population", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-dtau", type=float, default=0.005)
    ap.add_argument("--batch16", type=int, default=0, help="also N networks at batch 16 (lossless + --batch16-codecs)")
    ap.add_argument("--lossless16", help="reuse this lossless batch-16 store instead of ingesting")
    ap.add_argument("--batch16-codecs", nargs="*", default=None, help="default: --codecs")
    ap.add_argument("--benchmark", required=True, help="the NB201 accuracy table (CSV)")
    ap.add_argument("--data-root", required=True, help="the CIFAR-10 image folder")
    ap.add_argument("--keep", help="keep the stores under this folder")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    tmp = args.keep or tempfile.mkdtemp(prefix="bench-codecs-")
    os.makedirs(tmp, exist_ok=True)
    codecs = [*args.codecs, *(f"bitround:{k}" for k in args.bits)]
    print(f"machine: {os.cpu_count()} CPUs, device {args.device}, torch threads 1, Dask in-process; seed "
          f"{args.seed}; stores in {tmp}", flush=True)
    try:
        if args.networks:
            print(f"\n{args.networks} NB201 networks, CIFAR-10, batch {args.batch_size}:", flush=True)
            batch_run(args, tmp, args.batch_size, args.networks, codecs, args.lossless)
        if args.batch16:
            print(f"\n{args.batch16} NB201 networks, CIFAR-10, batch 16:", flush=True)
            batch_run(args, tmp, 16, args.batch16, args.batch16_codecs or codecs, args.lossless16)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
