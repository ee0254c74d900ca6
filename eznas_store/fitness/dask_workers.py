"""The Engine's state on Dask workers: each worker keeps its own scoring caches while the Engine lives.

An :class:`~eznas_store.fitness.engine.Engine` registers one :class:`WorkerCaches` plugin
under its own name; every worker (also one that joins or replaces a dead worker later)
sets up a :class:`~eznas_store.fitness.chunk_scoring.ScoringCaches`, and chunk tasks look it
up by that name. Unregistering the plugin (or closing the cluster) drops them.

``distributed`` is imported here at module level; the engine imports this module only
when it starts or joins a cluster, so importing the package stays fast.
"""

from __future__ import annotations

import resource

import psutil
from distributed import WorkerPlugin, get_worker

from eznas_store.evaluate import ChunkScores
from eznas_store.fitness.chunk_scoring import STORE_CACHE_SIZE, ScoringCaches, score_chunk


class WorkerCaches(WorkerPlugin):
    """A per-worker :class:`ScoringCaches`, created when the plugin reaches a worker."""

    def __init__(self, size: int = STORE_CACHE_SIZE) -> None:
        self.size = size
        self.caches: ScoringCaches | None = None

    def setup(self, worker) -> None:
        self.caches = ScoringCaches(store_size=self.size)

    def teardown(self, worker) -> None:
        if self.caches is not None:
            self.caches.clear()
        self.caches = None


def score_chunk_on_worker(plugin: str, url: str, lo: int, hi: int, programs: list[dict],
                          to_scalar: str | None = None, threads: int | None = None) -> ChunkScores:
    """:func:`score_chunk` with the caches of the worker's ``plugin`` (a chunk task)."""
    caches = get_worker().plugins[plugin].caches
    return score_chunk(caches, url, lo, hi, programs, to_scalar, threads)


def process_rss_mb() -> dict[str, float]:
    """Current and peak RSS (MB) of this process: run on every worker by the engine."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"rss": psutil.Process().memory_info().rss / 2**20, "peak": peak}
