"""Fault tests: many random SIGKILLs of ingest, and a Dask worker killed mid-scoring."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import numpy as np

from eznas_store.ingest.driver import run_ingest
from eznas_store.store.store import open_store
from eznas_store.store.verify import verify_store

from conftest import make_bench, store_arrays, tiny_ingest_cmd, tiny_ingest_config


def _chunk_files(url: str) -> tuple[int, int]:
    """(chunk files of the ``complete`` flags, chunk files of every other array) on disk now."""
    flags = other = 0
    for root, _, files in os.walk(url):
        n = sum(1 for f in files if f != "zarr.json" and not f.endswith(".partial"))
        if os.sep + "complete" + os.sep in root + os.sep:
            flags += n
        else:
            other += n
    return flags, other


def _kill_at_progress(proc: subprocess.Popen, url: str, mode: int, k: int) -> bool:
    """SIGKILL ``proc`` at an observed point of its work, never after a guessed sleep.

    mode 0: as soon as it runs (start-up, imports); 1: once the store's root exists (creation);
    2: once ``k`` more networks are flagged complete; 3: once ``k`` more chunk files of
    tensors or tables are on disk than when it started (mid-chunk, before the flags).
    Returns whether it was killed (False: it finished first).
    """
    flags0, other0 = _chunk_files(url)
    deadline = time.monotonic() + 600  # only a hang guard: every kill point is an event
    while proc.poll() is None:
        flags, other = _chunk_files(url)
        if (mode == 0
                or (mode == 1 and os.path.exists(os.path.join(url, "zarr.json")))
                or (mode == 2 and flags >= flags0 + k)
                or (mode == 3 and other >= other0 + k)):
            os.kill(proc.pid, signal.SIGKILL)
            return True
        assert time.monotonic() < deadline, "ingest made no progress in 600 s"
        time.sleep(0.002)
    return False


def test_ingest_survives_20_random_kills(tmp_path):
    """SIGKILL at 20 random progress points (start-up, creation, collection, mid-write): nothing lost."""
    tiny_bench = make_bench(tmp_path / "bench.csv", n=80, seed=3)
    ref = str(tmp_path / "ref")
    run_ingest(tiny_ingest_config(ref, tiny_bench, chunk_networks=1))
    url = str(tmp_path / "killed")
    cmd = tiny_ingest_cmd(url, tiny_bench, chunk_networks=1)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    rng = np.random.default_rng(7)
    kills, progress = 0, []
    for i in range(20):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        # the first two runs die in start-up and in store creation; then collection and writes
        mode = i if i < 2 else int(rng.choice([2, 2, 3]))
        kills += _kill_at_progress(proc, url, mode, k=int(rng.integers(1, 4)))
        proc.wait()
        if os.path.exists(os.path.join(url, "zarr.json")):
            try:
                progress.append(int(open_store(url).complete().sum()))
            except Exception:
                progress.append(-1)  # killed while the store itself was being created
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    print(f"kills survived: {kills} of 20 runs; complete networks after each: {progress}")
    assert kills >= 15
    landed = sum(1 for a, b in zip(progress, progress[1:]) if b > a >= 0)
    assert landed >= 8, progress  # most kills interrupted real work, not a finished store
    s = open_store(url)
    assert verify_store(s).ok and s.complete().all()
    a, b = store_arrays(ref), store_arrays(url)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_dask_worker_killed_mid_scoring_gives_the_same_result(tiny_store):
    """Kill one worker process while chunks are being scored; the nanny restarts it and the
    scheduler reruns its tasks, so the scores equal an in-process run."""
    import sys as _sys
    from pathlib import Path

    _sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_evaluator import random_population

    from eznas_store.fitness.engine import Engine, load_task

    task = load_task(tiny_store)
    progs = random_population(60, seed=1)
    from eznas_store.programs.tree import Program

    progs = [p if isinstance(p, Program) else Program(tree=p) for p in progs]
    with Engine(workers=0) as local:
        want = local.score(progs, [task]).scores[0]
    with Engine(workers=2) as engine:
        pids = engine.client.run(os.getpid)
        victim = sorted(pids.values())[0]

        def kill_soon():
            time.sleep(0.5)
            os.kill(victim, signal.SIGKILL)

        killer = threading.Thread(target=kill_soon)
        killer.start()
        got = engine.score(progs, [task]).scores[0]
        killer.join()
        after = engine.client.run(os.getpid)
    assert victim not in after.values()  # the worker really died (and was replaced)
    np.testing.assert_array_equal(np.isnan(want), np.isnan(got))
    np.testing.assert_allclose(got[np.isfinite(got)], want[np.isfinite(want)], rtol=1e-12)
