"""Scoring programs on the networks of stores, chunk by chunk, on Dask workers or in-process.

``Engine`` is the one place parallelism lives: it maps "score this population on that
chunk" over every chunk of every task, one Dask task per chunk, so each worker holds one
chunk at a time and memory is bounded by chunk size × workers, not by the number of
networks. ``workers=0`` runs the same function in-process (tests, debugging). What it
keeps between chunks (open stores, decoded programs and chunks, shapes, subtree outputs:
:class:`~eznas_store.fitness.chunk_scoring.ScoringCaches`) lives as long as it does (per
worker on a cluster), not per process.

Programs travel to workers as plain JSON, never as DEAP objects or pickled code.

Example
-------
>>> with Engine(workers=2) as engine:                                   # doctest: +SKIP
...     task = load_task("s.zarr")                  # or load_task(url, accuracy_column="...")
...     result = engine.score([NAMED_PROGRAMS["eznas-a"]], [task])
"""

from __future__ import annotations

import contextlib
import os
import warnings
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from eznas_store.errors import ConfigError, IncompleteStoreWarning, ProgramError, StoreError, UnknownNameError
from eznas_store.evaluate import ChunkScores, merge_chunk_scores, tune_allocator
from eznas_store.fitness.chunk_scoring import ScoringCaches, score_chunk
from eznas_store.fitness.correlations import Fitness, population_fitness
from eznas_store.fitness.scores import ScoreResult, summarise
from eznas_store.programs import program_to_json
from eznas_store.programs import SequentialProgram
from eznas_store.programs import Program
from eznas_store.store import open_store


def require_statistics_programs(programs: Sequence[Program | SequentialProgram]) -> None:
    """Networks' statistics can only feed statistics programs, and a sequential program only
    one whose output can be computed; say so before any work."""
    for p in programs:
        if isinstance(p, SequentialProgram):
            if not p.is_valid():
                what = f"sequential program {p.name!r}" if p.name else "a sequential program"
                raise ProgramError(f"{what} computes nothing to score: {p.invalid_reason()}")
            continue
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
    #: the accuracy column ``accuracy`` holds (the fitness label every tau of this task is against)
    label: str = ""

    @property
    def n(self) -> int:
        return int(len(self.networks))


def label_values(store, column: str | None = None) -> tuple[str, np.ndarray]:
    """``(column, accuracies)`` of one of the store's accuracy columns (None: the one chosen
    at ingest, which the store's ``accuracy`` array holds); an unknown name lists them all."""
    default = store.plan.accuracy_column
    columns = list(store.plan.accuracies)
    if column is None or column == default or (column == "accuracy" and column not in columns):
        return default, store.accuracy()
    if column not in columns:
        raise UnknownNameError(f"store {store.url} has no accuracy column {column!r} (it has: "
                               f"{', '.join(columns)}; default {default})")
    values = store.column(column) if store.has_array(column) else store.plan.accuracies[column]
    return column, np.asarray(values, dtype=np.float64)


def load_task(url: str, *, name: str | None = None, max_networks: int | None = None,
              accuracy_column: str | None = None) -> Task:
    """Open a store as an evolution/test task; refuses stores without usable networks.

    ``accuracy_column``: the label the task's fitness is against, any accuracy column the
    store keeps (None: the one chosen at ingest). A task named by default carries a
    non-default label in its name (``...:store.zarr@column``), so tasks stay distinct.
    """
    tune_allocator()  # before the first store read starts zarr's threads (and their malloc arenas)
    store = open_store(url)
    label, accuracy = label_values(store, accuracy_column)
    complete = store.complete()
    ok = complete & np.isfinite(accuracy)
    idx = np.flatnonzero(ok)
    if not complete.all():  # never use a partial store without a word
        warnings.warn(f"store {url}: only {int(complete.sum())} of {len(complete)} networks are complete; "
                      f"using those (finish it with ingest, or check it with verify)",
                      IncompleteStoreWarning, stacklevel=2)
    if max_networks is not None:
        idx = idx[:max_networks]
    if len(idx) < 2:
        raise StoreError(f"store {url} has {len(idx)} complete networks with an accuracy ({label}); "
                         "fitness needs at least 2 (run ingest to completion first)")
    keep = set(idx.tolist())
    chunks = tuple((lo, hi) for lo, hi in store.chunk_ranges() if any(n in keep for n in range(lo, hi)))
    if name is None:
        name = f"{store.plan.space}-{store.plan.dataset}:{os.path.basename(str(url).rstrip('/'))}"
        if label != store.plan.accuracy_column:
            name += f"@{label}"
    return Task(url=str(url), name=name, networks=idx, accuracy=accuracy[idx],
                archs=tuple(store.plan.archs[i] for i in idx), chunks=chunks,
                structure=store.plan.collect.structure, label=label)


def _configure_worker_caches(plugin: str, chunk_mb: float, subtree_mb: float, dask_worker=None) -> None:
    """On a worker: give its scoring caches the engine's bounds (run by ``Client.run``)."""
    dask_worker.plugins[plugin].caches.configure(chunk_mb, subtree_mb)


@dataclass
class PopulationScores:
    """Scores (P, n_task) per task, aligned with ``Task.networks``, and failure reasons."""

    scores: list[np.ndarray]
    reasons: list[list[str | None]]
    seconds: float
    worker_peak_rss_mb: float = 0.0


class Engine:
    """Maps chunk scoring over a local or remote Dask cluster (or in-process with workers=0)."""

    def __init__(self, *, workers: int = 0, scheduler: str | None = None, progress: bool = False,
                 memory_limit: str | None = None, chunk_cache_mb: float = 0,
                 subtree_cache_mb: float = 0) -> None:
        if not isinstance(workers, int) or workers < 0:
            raise ConfigError(f"--workers must be >= 0 (0: in-process), got {workers}")
        self.workers = workers
        self.progress = progress
        self.client = None
        self.cluster = None
        #: highest worker peak RSS (MB) seen after any scoring call; 0 in-process
        self.worker_peak_rss_mb = 0.0
        #: what in-process scoring keeps between chunks, with the byte-bounded chunk and
        #: subtree caches (MB; 0, the default: off; evolve sizes and turns them on); workers
        #: keep theirs in the plugin named ``_worker_caches``, with the same bounds
        self.caches = ScoringCaches(chunk_mb=chunk_cache_mb, subtree_mb=subtree_cache_mb)
        self._worker_caches = f"eznas-caches-{uuid.uuid4().hex}"
        if scheduler or workers > 0:
            self._start_client(scheduler, memory_limit)
            if chunk_cache_mb > 0 or subtree_cache_mb > 0:  # each worker its own, same bounds
                self.client.run(_configure_worker_caches, self._worker_caches, chunk_cache_mb, subtree_cache_mb)

    def _start_client(self, scheduler: str | None, memory_limit: str | None) -> None:
        # distributed is heavy: imported only when a cluster is used
        from distributed import Client, LocalCluster

        from eznas_store.fitness.dask_workers import WorkerCaches

        if scheduler:
            try:
                self.client = Client(scheduler, timeout="20s")
            except OSError as e:
                raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
        else:
            import dask

            # one malloc arena per worker from its start (tune_allocator's reason; too late once
            # the worker's threads run): freed chunk buffers go back instead of staying per thread
            with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_ARENA_MAX": 1}):
                self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                            dashboard_address=None, memory_limit=memory_limit or 0,
                                            silence_logs=40)
            self.client = Client(self.cluster)
        self.client.register_plugin(WorkerCaches(), name=self._worker_caches)

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Drop the caches (in-process and on the workers) and leave the cluster."""
        self.caches.clear()
        if self.client is not None and self.cluster is None:
            # a shared scheduler outlives this engine: take its stores off the workers
            with contextlib.suppress(OSError, ValueError):
                self.client.unregister_worker_plugin(self._worker_caches)
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        self.client = self.cluster = None

    def worker_rss_mb(self) -> dict[str, float]:
        """Current and peak RSS of each worker process (MB)."""
        if self.client is None:
            return {}
        from eznas_store.fitness.dask_workers import process_rss_mb  # imports distributed

        return self.client.run(process_rss_mb)

    def score(self, programs: Sequence[Program], tasks: Sequence[Task], *, to_scalar: str | None = None,
              desc: str = "chunks") -> PopulationScores:
        """Scores of every program on every task's networks (NaN where a program fails)."""
        t0 = time.perf_counter()
        require_statistics_programs(programs)
        payload = [program_to_json(p) for p in programs]
        jobs = [(t, lo, hi) for t, task in enumerate(tasks) for lo, hi in task.chunks]
        parts: dict[int, list[ChunkScores]] = {t: [] for t in range(len(tasks))}
        with tqdm(total=len(jobs), desc=desc, unit="chunk", disable=not self.progress, leave=False) as bar:
            if self.client is None:
                chunks = self.caches.read_ahead([(tasks[t].url, lo, hi) for t, lo, hi in jobs])
                for (t, lo, hi), chunk in zip(jobs, chunks):
                    parts[t].append(score_chunk(self.caches, tasks[t].url, lo, hi, payload, to_scalar, chunk=chunk))
                    bar.update(1)
            else:
                self._score_on_workers(jobs, tasks, payload, to_scalar, parts, bar)
        scores, reasons = [], []
        for t, task in enumerate(tasks):
            s, r = task_scores(task, parts[t])
            scores.append(s)
            reasons.append(r)
        peak = max((v["peak"] for v in self.worker_rss_mb().values()), default=0.0)
        self.worker_peak_rss_mb = max(self.worker_peak_rss_mb, peak)
        return PopulationScores(scores, reasons, time.perf_counter() - t0, peak)

    def _score_on_workers(self, jobs, tasks: Sequence[Task], payload: list[dict], to_scalar: str | None,
                          parts: dict[int, list[ChunkScores]], bar) -> None:
        """One Dask task per chunk; results collected as they complete."""
        from distributed import as_completed

        from eznas_store.fitness.dask_workers import score_chunk_on_worker

        # scatter the population once; each chunk task then only names it
        [pop] = self.client.scatter([payload], broadcast=True, hash=False)
        futures = {}
        for t, lo, hi in jobs:
            f = self.client.submit(score_chunk_on_worker, self._worker_caches, tasks[t].url, lo, hi, pop,
                                   to_scalar, 1, pure=False, retries=2)
            futures[f] = t
        for f in as_completed(futures):
            parts[futures[f]].append(f.result())
            bar.update(1)

    def fitness(self, programs: Sequence[Program], tasks: Sequence[Task], *, combine: str = "min",
                abs_tau: bool = False, to_scalar: str | None = None, desc: str = "chunks"
                ) -> tuple[list[Fitness], PopulationScores]:
        res = self.score(programs, tasks, to_scalar=to_scalar, desc=desc)
        fits = population_fitness(res.scores, [t.accuracy for t in tasks], combine=combine,
                                  abs_tau=abs_tau, reasons=res.reasons)
        return fits, res


def task_scores(task: Task, parts: Sequence[ChunkScores]) -> tuple[np.ndarray, list[str | None]]:
    """The chunks' scores of one task merged, columns in the task's network order, and the
    first failure reason of each program."""
    merged = merge_chunk_scores(parts)
    pos = {int(n): i for i, n in enumerate(merged.network_ids)}
    return merged.scores[:, [pos[int(n)] for n in task.networks]], merged.reasons


def score_store(url: str, programs: Sequence[Program], *, engine: Engine | None = None,
                to_scalar: str | None = None, accuracy_column: str | None = None) -> list[ScoreResult]:
    """Score programs on a store's networks (one Dask task per chunk), against the label
    ``accuracy_column`` (None: the one chosen at ingest)."""
    task = load_task(url, accuracy_column=accuracy_column)
    own = engine is None
    engine = engine or Engine(workers=0)
    try:
        res = engine.score(programs, [task], to_scalar=to_scalar)
    finally:
        if own:
            engine.close()
    return [summarise(p.name or p.formula(), task.name, res.scores[0][i], task.accuracy, task.archs,
                      task.networks, res.reasons[0][i], label=task.label) for i, p in enumerate(programs)]
