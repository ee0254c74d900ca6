"""Peak RSS of a default ``evolve`` (driver, and each Dask worker) against its cache budget, and time.

Usage (from the repository root; stores are batch-1 statistics stores)::

    python benchmarks/bench_evolve_memory.py S60.zarr S240.zarr --generations 6 --pairs 3
    python benchmarks/bench_evolve_memory.py S60.zarr --workers 2 --pairs 1
    python benchmarks/bench_evolve_memory.py S60.zarr --baseline-repo ../before   # today's code beside
    python benchmarks/bench_evolve_memory.py S200.zarr --evolve-args "--op-set extended"

For each store, ``eznas-store evolve`` runs as a subprocess with the paper config
(``--population P --generations G``, in-process unless ``--workers``) in alternating rounds
(the order of the arms rotated each round): *defaults* (the caches as evolve sizes them),
*off* (``--chunk-cache-mb 0 --subtree-cache-mb 0``) and, with ``--baseline-repo``, *today*:
another checkout's evolve with its own defaults. Printed per run: peak RSS of the evolve
process (``wait4``'s ``ru_maxrss`` in-process; with ``--workers`` sampled every 0.2 s, the
driver alone) and of its largest worker (sampled, and ``generations.jsonl``), the cache
budget the run chose (``run.json`` ``caches``, per process), wall time, CPU time (user +
system of the process and its children: steadier than wall on a shared machine) and the
generations' own seconds; then per store the medians, each arm's time over the defaults',
and the peak-RSS ratio of the largest store to the smallest (goal <= 1.2). Goal: a default
run's peak RSS <= ``--goal-mb`` (1,500 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402

OFF = ["--chunk-cache-mb", "0", "--subtree-cache-mb", "0"]
#: the flags' defaults before they sized themselves (the ``today`` arm's budget, when its
#: run.json does not say)
TODAY = {"chunk_mb": 1024, "subtree_mb": 256}


def sample_peaks(pid: int, stop: threading.Event, peaks: dict, every: float = 0.2) -> None:
    """Until ``stop``: the peak RSS (MB) of process ``pid`` alone (``driver``) and of its largest
    descendant (``worker``: a Dask worker), sampled every ``every`` seconds into ``peaks``."""
    try:
        me = psutil.Process(pid)
    except psutil.Error:
        return
    while not stop.wait(every):
        try:
            procs = [me, *me.children(recursive=True)]
        except psutil.Error:
            return
        for p in procs:
            try:
                rss = p.memory_info().rss / 2**20
            except psutil.Error:
                continue
            key = "driver" if p.pid == pid else "worker"
            peaks[key] = max(peaks[key], rss)


def run_once(args, store: str, arm: str, out: Path) -> dict:
    """One evolve subprocess (``today``: the code of ``--baseline-repo``, its defaults): its
    peak RSS (``wait4`` in-process; sampled with workers), time and chosen budget."""
    repo = Path(args.baseline_repo if arm == "today" else args.repo).resolve()
    cmd = [sys.executable, "-m", "eznas_store.cli", "evolve", store, "--out", str(out),
           "--population", str(args.population), "--generations", str(args.generations),
           "--workers", str(args.workers), "--seed", str(args.seed), "--no-progress",
           *shlex.split(args.evolve_args), *(OFF if arm == "off" else [])]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(repo)}
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, env=env, cwd=repo, stdout=subprocess.DEVNULL, stderr=err, text=True)
        peaks, stop = {"driver": 0.0, "worker": 0.0}, threading.Event()
        sampler = threading.Thread(target=sample_peaks, args=(proc.pid, stop, peaks), daemon=True)
        if args.workers:
            sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        stop.set()
        if args.workers:
            sampler.join()
        driver, worker = peaks["driver"], peaks["worker"]
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"evolve failed ({proc.returncode}): {' '.join(cmd)}\n{err.read()[-2000:]}")
    log = [json.loads(x) for x in (out / "generations.jsonl").read_text().splitlines()]
    run = json.loads((out / "run.json").read_text())
    budget = run.get("caches") or ({"today": TODAY}.get(arm) if arm != "off" else None) or {}
    logged = max((r.get("worker_peak_rss_mb") or 0) for r in log)
    return {"arm": arm, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "gen_s": sum(r["seconds"] for r in log),
            "driver_mb": driver if args.workers else usage.ru_maxrss / 1024,
            "worker_mb": max(worker, logged),
            "budget_mb": budget.get("chunk_mb", 0) + budget.get("subtree_mb", 0),
            "best": max(r.get("best") or float("-inf") for r in log)}


def bench_store(args, store: str, label: str, tmp: Path) -> dict:
    """Alternating rounds: each round runs every arm, the order rotated round by round."""
    rows = []
    names = ["defaults"] + ([] if args.no_off else ["off"]) + (["today"] if args.baseline_repo else [])
    for k in range(args.pairs):
        arms = names[k % len(names):] + names[:k % len(names)]
        for arm in arms:
            r = run_once(args, store, arm, tmp / f"{label}-{arm}-{k}")
            rows.append(r)
            print(f"{label:>12} pair {k} {arm:<9} driver peak {r['driver_mb']:7.0f} MB  worker peak "
                  f"{r['worker_mb']:7.0f} MB  cache budget {r['budget_mb']:6.0f} MB  wall {r['wall_s']:6.1f} s  "
                  f"cpu {r['cpu_s']:6.1f} s  generations {r['gen_s']:6.1f} s  best tau {r['best']:.4f}",
                  flush=True)
    return {arm: {k: statistics.median(r[k] for r in rows if r["arm"] == arm)
                  for k in ("wall_s", "cpu_s", "gen_s", "driver_mb", "worker_mb", "budget_mb")} for arm in names}


def report(results: dict, goal_mb: float) -> None:
    """Medians per store: peak RSS against the goal, and time (wall, CPU of the evolve process
    and its children, and the generations' own seconds) with the ratios to the defaults."""
    print("\nmedians per store; time ratios are arm / defaults (> 1: the defaults are faster):")
    print(f"{'store':>12} {'arm':>9} {'peak MB':>8} {'workers MB':>10} {'budget MB':>9} {'wall s':>7} "
          f"{'cpu s':>7} {'gens s':>7} {'wall x':>6} {'cpu x':>6} {'gens x':>6} {'goal':>6}")
    for label, m in results.items():
        d = m["defaults"]
        for arm, r in m.items():
            ok = "" if arm != "defaults" else ("ok" if r["driver_mb"] <= goal_mb else f"+{r['driver_mb'] - goal_mb:.0f}")
            print(f"{label:>12} {arm:>9} {r['driver_mb']:8.0f} {r['worker_mb']:10.0f} {r['budget_mb']:9.0f} "
                  f"{r['wall_s']:7.1f} {r['cpu_s']:7.1f} {r['gen_s']:7.1f} {r['wall_s'] / d['wall_s']:6.2f} "
                  f"{r['cpu_s'] / d['cpu_s']:6.2f} {r['gen_s'] / d['gen_s']:6.2f} {ok:>6}")
    if len(results) > 1:
        first, last = list(results.values())[0], list(results.values())[-1]
        peak = "worker_mb" if first["defaults"]["worker_mb"] else "driver_mb"
        print(f"peak RSS ratio {list(results)[-1]} / {list(results)[0]} (defaults, {peak}): "
              f"{last['defaults'][peak] / first['defaults'][peak]:.2f} (goal <= 1.2)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stores", nargs="+", help="statistics stores (batch-1), smallest first")
    ap.add_argument("--population", type=int, default=50)
    ap.add_argument("--generations", type=int, default=6)
    ap.add_argument("--pairs", type=int, default=3, help="rounds (each runs every arm once)")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the runs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--evolve-args", default="", help="more evolve options, e.g. '--op-set extended'")
    ap.add_argument("--no-off", action="store_true", help="skip the caches-off arm")
    ap.add_argument("--goal-mb", type=float, default=1500)
    ap.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]),
                    help="checkout whose evolve the defaults and off arms run (default: this one)")
    ap.add_argument("--baseline-repo", help="another checkout (e.g. `git worktree add ../before HEAD~1`): "
                    "a third arm, 'today', runs its evolve with its own defaults")
    args = ap.parse_args()
    for store in args.stores:
        if not Path(store).is_dir():
            ap.error(f"no store at {store}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-evolve-memory-"))
    print(f"machine: {os.cpu_count()} CPUs, {psutil.virtual_memory().available / 2**30:.1f} GiB available; "
          f"{args.threads} torch thread(s); workers {args.workers}; population {args.population}, "
          f"{args.generations} generations; {args.evolve_args or 'paper config'}", flush=True)
    try:
        results = {Path(s).name: bench_store(args, s, Path(s).stem, tmp) for s in args.stores}
        report(results, args.goal_mb)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
