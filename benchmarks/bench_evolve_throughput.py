"""Search throughput: today's evolve vs the evaluation caches + equivalence cache + racing, in the same wall time.

Usage (from the repository root, a store of a few dozen complete networks)::

    python benchmarks/bench_evolve_throughput.py STORE [--split 30/15/rest] [--seed 0]

Both runs use the same store, seed and held-out split (``--split``: fitness on train,
hall of fame by validation tau), so their validation taus compare:

1. *baseline*: ``--population P --generations G``, equivalence cache and racing off,
   chunk and subtree caches off (``--chunk-cache-mb 0 --subtree-cache-mb 0``): the
   evolve before them;
2. *caches* (with ``--caches-arm``): the baseline's settings with the chunk and subtree
   caches on (``--chunk-mb``, ``--subtree-mb``): what the caches alone buy;
3. *fast*: ``--equivalence-cache --racing R`` and the two caches, with ``--scale`` times the population and
   up to ``--more`` times the generations, run as a CLI process and stopped once its
   cumulative generation time (``generations.jsonl`` ``seconds``) reaches the
   baseline's; only the generations within that time are counted.

Printed for each: minutes, distinct programs assessed (scored, raced or matched on the
probe) and fully scored, programs per minute, the best validation tau reached and that
tau per minute; then the fast / baseline ratios.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eznas_store.evolution.evolve import EvolveConfig, run_evolve  # noqa: E402


def summary(out: Path, limit_s: float | None = None) -> dict:
    """Totals over the logged generations, up to ``limit_s`` cumulative seconds."""
    log = [json.loads(x) for x in (out / "generations.jsonl").read_text().splitlines()]
    seconds = assessed = scored = 0.0
    best, gens = None, 0
    for r in log:
        if limit_s is not None and seconds + r["seconds"] > limit_s * 1.001 and gens:
            break
        seconds += r["seconds"]
        assessed += r["evaluated"] + r.get("equivalence_hits", 0)
        scored += r["evaluated"] - r.get("raced_out", 0)
        if r.get("val_best_ever") is not None:
            best = r["val_best_ever"]
        gens += 1
    minutes = seconds / 60
    return {"generations": gens - 1, "minutes": minutes, "assessed": int(assessed), "fully_scored": int(scored),
            "per_minute": assessed / minutes if minutes else float("nan"), "best_val": best,
            "val_per_minute": (best / minutes) if (best is not None and minutes) else None}


def fast_run(args, out: Path, limit_s: float) -> None:
    """The fast run as a CLI process, stopped once its logged generations reach ``limit_s``."""
    cmd = [sys.executable, "-m", "eznas_store.cli", "evolve", args.store, "--out", str(out),
           "--split", args.split, "--seed", str(args.seed), "--max-depth", str(args.max_depth),
           "--workers", str(args.workers), "--no-progress", "--population", str(args.population * args.scale),
           "--generations", str(args.generations * args.more), "--equivalence-cache", "--racing", str(args.racing),
           "--chunk-cache-mb", str(args.chunk_mb), "--subtree-cache-mb", str(args.subtree_mb)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / "generations.jsonl"
    try:
        while proc.poll() is None:
            time.sleep(1)
            if log.exists():
                done = [json.loads(x) for x in log.read_text().splitlines() if x.endswith("}")]
                if sum(r["seconds"] for r in done) >= limit_s:
                    break
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store")
    ap.add_argument("--split", default="30/15/rest")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--population", type=int, default=8)
    ap.add_argument("--generations", type=int, default=3)
    ap.add_argument("--scale", type=int, default=2, help="population of the fast run, times --population")
    ap.add_argument("--more", type=int, default=5, help="most generations of the fast run, times --generations")
    ap.add_argument("--racing", type=float, default=0.25)
    ap.add_argument("--max-depth", type=int, default=6)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--chunk-mb", type=float, default=1024, help="--chunk-cache-mb of the caches and fast runs")
    ap.add_argument("--subtree-mb", type=float, default=256, help="--subtree-cache-mb of the caches and fast runs")
    ap.add_argument("--caches-arm", action="store_true", help="also run the baseline's settings with the caches on")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_throughput_"))
    arms = {}
    try:
        common = dict(stores=(args.store,), population=args.population, generations=args.generations,
                      split=args.split, seed=args.seed, max_depth=args.max_depth, workers=args.workers,
                      progress=False)
        run_evolve(EvolveConfig(out=str(tmp / "baseline"), chunk_cache_mb=0, subtree_cache_mb=0, **common))
        arms["baseline"] = base = summary(tmp / "baseline")
        if args.caches_arm:
            run_evolve(EvolveConfig(out=str(tmp / "caches"), chunk_cache_mb=args.chunk_mb,
                                    subtree_cache_mb=args.subtree_mb, **common))
            arms["caches"] = summary(tmp / "caches")
        fast_run(args, tmp / "fast", base["minutes"] * 60)
        arms["fast"] = summary(tmp / "fast", limit_s=base["minutes"] * 60)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(arms)


def report(arms: dict) -> None:
    """The table of the arms and each arm's ratios to the baseline."""
    fmt = lambda v: "n/a" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))
    keys = ["generations", "minutes", "assessed", "fully_scored", "per_minute", "best_val", "val_per_minute"]
    print(f"{'':<10}" + "".join(f"{k:>15}" for k in keys))
    for name, s in arms.items():
        print(f"{name:<10}" + "".join(f"{fmt(s[k]):>15}" for k in keys))
    base = arms["baseline"]
    for name, s in arms.items():
        if name == "baseline":
            continue
        ratio = lambda k: (s[k] / base[k]) if s[k] is not None and base[k] else None
        print(f"ratio {name}/baseline: distinct programs per minute {fmt(ratio('per_minute'))}, "
              f"best validation tau per minute {fmt(ratio('val_per_minute'))}")


if __name__ == "__main__":
    main()
