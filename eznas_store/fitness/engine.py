"""Scoring programs on networks: from stores chunk by chunk (Dask), or straight from networks.

``Engine`` is the one place parallelism lives: it maps "score this population on that
chunk" over every chunk of every task, one Dask task per chunk, so each worker holds one
chunk at a time and memory is bounded by chunk size × workers, not by the number of
networks. ``workers=0`` runs the same function in-process (tests, debugging).

Programs travel to workers as plain JSON, never as DEAP objects or pickled code.

Example
-------
>>> with Engine(workers=2) as engine:                                   # doctest: +SKIP
...     task = load_task("s.zarr")
...     result = engine.score([NAMED_PROGRAMS["eznas-a"]], [task])
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from eznas_store.errors import ConfigError, StoreError
from eznas_store.evaluate.population import ChunkScores, evaluate_population, merge_chunk_scores
from eznas_store.fitness.correlations import Fitness, kendall_tau, population_fitness, spearman_rho
from eznas_store.programs.tree import Program, program_from_json, program_to_json
from eznas_store.store.zarr_store import Store, chunk_from_raw, open_store


def _check_statistics(programs: Sequence[Program]) -> None:
    """Networks' statistics can only feed statistics programs; say so before any work."""
    for p in programs:
        if p.terminal_set != "statistics":
            raise ConfigError(
                f"program {p.name or p.formula()!r} reads hand-crafted proxy values, not the "
                "networks' statistics: evaluate it with evolve --over proxies or search --proxy"
            )


@dataclass(frozen=True)
class Task:
    """The usable networks of one store: complete and with a finite accuracy."""

    url: str
    name: str
    networks: np.ndarray  # store indices
    accuracy: np.ndarray
    archs: tuple[str, ...]
    chunks: tuple[tuple[int, int], ...]
    structure: str = "rcb"  # how the store's statistics were collected (reports name variants by it)

    @property
    def n(self) -> int:
        return int(len(self.networks))


def load_task(url: str, *, name: str | None = None, max_networks: int | None = None) -> Task:
    """Open a store as an evolution/test task; refuses stores without usable networks."""
    store = open_store(url)
    ok = store.complete() & np.isfinite(store.accuracy())
    idx = np.flatnonzero(ok)
    if max_networks is not None:
        idx = idx[:max_networks]
    if len(idx) < 2:
        raise StoreError(f"store {url} has {len(idx)} complete networks with an accuracy; "
                         "fitness needs at least 2 (run ingest to completion first)")
    keep = set(idx.tolist())
    chunks = tuple((lo, hi) for lo, hi in store.chunk_ranges() if any(n in keep for n in range(lo, hi)))
    label = name or f"{store.plan.space}-{store.plan.dataset}:{os.path.basename(str(url).rstrip('/'))}"
    return Task(url=str(url), name=label, networks=idx, accuracy=store.accuracy()[idx],
                archs=tuple(store.plan.archs[i] for i in idx), chunks=chunks,
                structure=store.plan.collect.structure)


@functools.lru_cache(maxsize=8)
def _cached_store(url: str) -> Store:
    return open_store(url)


def score_chunk(url: str, lo: int, hi: int, programs: list[dict], to_scalar: str | None = None,
                threads: int | None = None) -> ChunkScores:
    """Score a population (program JSON) on one chunk of a store: the unit of work of a worker."""
    if threads:
        torch.set_num_threads(threads)
    store = _cached_store(url)
    chunk = store.read_chunk(lo, hi)
    progs = [program_from_json(p) for p in programs]
    return evaluate_population(progs, chunk, to_scalar=to_scalar)


@dataclass
class PopulationScores:
    """Scores (P, n_task) per task, aligned with ``Task.networks``, and failure reasons."""

    scores: list[np.ndarray]
    reasons: list[list[str | None]]
    seconds: float
    worker_peak_rss_mb: float = 0.0


class Engine:
    """Maps chunk scoring over a local or remote Dask cluster (or in-process with workers=0)."""

    def __init__(self, *, workers: int = 2, scheduler: str | None = None, progress: bool = False,
                 memory_limit: str | None = None) -> None:
        self.workers = workers
        self.progress = progress
        self.client = None
        self.cluster = None
        #: highest worker peak RSS (MB) seen after any scoring call; 0 in-process
        self.worker_peak_rss_mb = 0.0
        if scheduler:
            from distributed import Client

            try:
                self.client = Client(scheduler, timeout="20s")
            except OSError as e:
                raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
        elif workers > 0:
            from distributed import Client, LocalCluster

            self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                        dashboard_address=None, memory_limit=memory_limit or 0,
                                        silence_logs=40)
            self.client = Client(self.cluster)

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        self.client = self.cluster = None

    def worker_rss_mb(self) -> dict[str, float]:
        """Current and peak RSS of each worker process (MB)."""
        if self.client is None:
            return {}
        return self.client.run(_rss_mb)

    def score(self, programs: Sequence[Program], tasks: Sequence[Task], *, to_scalar: str | None = None,
              desc: str = "chunks") -> PopulationScores:
        t0 = time.perf_counter()
        _check_statistics(programs)
        payload = [program_to_json(p) for p in programs]
        jobs = [(t, lo, hi) for t, task in enumerate(tasks) for lo, hi in task.chunks]
        from tqdm.auto import tqdm

        parts: dict[int, list[ChunkScores]] = {t: [] for t in range(len(tasks))}
        bar = tqdm(total=len(jobs), desc=desc, unit="chunk", disable=not self.progress, leave=False)
        if self.client is None:
            for t, lo, hi in jobs:
                parts[t].append(score_chunk(tasks[t].url, lo, hi, payload, to_scalar))
                bar.update(1)
        else:
            from distributed import as_completed

            # scatter the population once; each chunk task then only names it
            [pop] = self.client.scatter([payload], broadcast=True, hash=False)
            futures = {}
            for t, lo, hi in jobs:
                f = self.client.submit(score_chunk, tasks[t].url, lo, hi, pop, to_scalar, 1, pure=False,
                                       retries=2)
                futures[f] = t
            for f in as_completed(futures):
                parts[futures[f]].append(f.result())
                bar.update(1)
        bar.close()
        scores, reasons = [], []
        for t, task in enumerate(tasks):
            merged = merge_chunk_scores(parts[t])
            pos = {int(n): i for i, n in enumerate(merged.network_ids)}
            cols = [pos[int(n)] for n in task.networks]
            scores.append(merged.scores[:, cols])
            reasons.append(merged.reasons)
        peak = max((v["peak"] for v in self.worker_rss_mb().values()), default=0.0)
        self.worker_peak_rss_mb = max(self.worker_peak_rss_mb, peak)
        return PopulationScores(scores, reasons, time.perf_counter() - t0, peak)

    def fitness(self, programs: Sequence[Program], tasks: Sequence[Task], *, combine: str = "min",
                abs_tau: bool = False, to_scalar: str | None = None, desc: str = "chunks"
                ) -> tuple[list[Fitness], PopulationScores]:
        res = self.score(programs, tasks, to_scalar=to_scalar, desc=desc)
        fits = population_fitness(res.scores, [t.accuracy for t in tasks], combine=combine,
                                  abs_tau=abs_tau, reasons=res.reasons)
        return fits, res


def _rss_mb() -> dict[str, float]:
    import resource

    import psutil

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"rss": psutil.Process().memory_info().rss / 2**20, "peak": peak}


# ----------------------------------------------------------------------------- reporting
@dataclass
class ScoreResult:
    program: str
    task: str
    tau: float
    rho: float
    n: int
    n_valid: int
    scores: np.ndarray
    accuracy: np.ndarray
    archs: tuple[str, ...]
    networks: np.ndarray
    reason: str | None

    def line(self) -> str:
        return (f"{self.program} on {self.task}: Kendall tau {self.tau:.4f}, Spearman rho {self.rho:.4f} "
                f"({self.n_valid}/{self.n} networks valid)" + (f"; {self.reason}" if self.reason else ""))


def summarise(program_name: str, task_name: str, scores: np.ndarray, accuracy: np.ndarray,
              archs: Sequence[str], networks: np.ndarray, reason: str | None = None) -> ScoreResult:
    """τ and ρ over the networks where the program is valid (NaN if fewer than 2)."""
    ok = np.isfinite(scores)
    tau = kendall_tau(scores[ok], accuracy[ok]) if ok.sum() >= 2 else float("nan")
    rho = spearman_rho(scores[ok], accuracy[ok]) if ok.sum() >= 2 else float("nan")
    return ScoreResult(program_name, task_name, tau, rho, int(len(scores)), int(ok.sum()), scores,
                       accuracy, tuple(archs), networks, reason)


def write_scores_csv(path: str | os.PathLike, results: Sequence[ScoreResult]) -> None:
    """``task,network,arch,accuracy,score`` rows (the run-directory and ``score --out`` format)."""
    import csv
    import io

    from eznas_store.outputs import write_atomic

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["task", "network", "arch", "accuracy", "score"])
    for r in results:
        for n, a, acc, s in zip(r.networks, r.archs, r.accuracy, r.scores):
            w.writerow([r.task, int(n), a, repr(float(acc)), "" if not np.isfinite(s) else repr(float(s))])
    write_atomic(path, buf.getvalue())


def score_store(url: str, programs: Sequence[Program], *, engine: Engine | None = None,
                to_scalar: str | None = None) -> list[ScoreResult]:
    """Score programs on a store's networks (one Dask task per chunk)."""
    task = load_task(url)
    own = engine is None
    engine = engine or Engine(workers=0)
    try:
        res = engine.score(programs, [task], to_scalar=to_scalar)
    finally:
        if own:
            engine.close()
    return [summarise(p.name or p.formula(), task.name, res.scores[0][i], task.accuracy, task.archs,
                      task.networks, res.reasons[0][i]) for i, p in enumerate(programs)]


def score_collected(blocks: Sequence[Any], programs: Sequence[Program], *, structure: str,
                    to_scalar: str | None = None):
    """Evaluate programs on one freshly collected network, through the same chunk builder
    as store reads, so a network scores the same collected or stored."""
    from eznas_store.collect.statistics import stored_subset

    _check_statistics(programs)
    raw = [stored_subset(b) for b in blocks]
    return evaluate_population(list(programs), chunk_from_raw([raw], structure=structure), to_scalar=to_scalar)


def score_storeless(cfg, programs: Sequence[Program], *, to_scalar: str | None = None,
                    progress: bool = True) -> list[ScoreResult]:
    """Collect → evaluate → discard, network by network: no store, same numbers as from one.

    ``cfg`` is an ``ingest.IngestConfig`` (its ``store`` field is ignored): the same
    network sample, batch, seeds and init as ingest would use.
    """
    from tqdm.auto import tqdm

    from eznas_store.ingest.driver import collect_network, plan_ingest, resolve_device

    plan, batch, _ = plan_ingest(cfg)
    device = resolve_device(cfg.device)
    data = torch.from_numpy(batch)
    n = len(plan.archs)
    scores = np.full((len(programs), n), np.nan)
    reasons: list[str | None] = [None] * len(programs)
    with tqdm(total=n, desc="score", unit="net", disable=not progress) as bar:
        for i in range(n):
            stats = collect_network(plan, i, data, device)
            res = score_collected(stats.blocks, programs, structure=plan.collect.structure, to_scalar=to_scalar)
            scores[:, i] = res.scores[:, 0]
            for p, r in enumerate(res.reasons):
                reasons[p] = reasons[p] or r
            bar.update(1)
    acc = np.asarray(plan.accuracies[plan.accuracy_column], dtype=np.float64)
    name = f"{plan.space}-{plan.dataset} ({n} networks, batch {plan.collect.batch_size}, no store)"
    return [summarise(p.name or p.formula(), name, scores[k], acc, plan.archs, np.arange(n), reasons[k])
            for k, p in enumerate(programs)]
