"""One unit of work of the Engine: score a population on one chunk of a store.

Opening a store reads its metadata, so a scorer keeps the stores it opened in a
:class:`StoreCache`; the cache belongs to whoever owns the work (the :class:`Engine`
in-process, a per-worker plugin on Dask workers) and goes away with it.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from eznas_store.evaluate.chunk import read_chunk
from eznas_store.evaluate.population import ChunkScores, evaluate_population
from eznas_store.evaluate.shapes import ShapeCache
from eznas_store.programs.codec import program_from_json
from eznas_store.store.reader import Store, open_store

#: stores kept open per cache: the tasks of one run, with room to spare
STORE_CACHE_SIZE = 8


class StoreCache:
    """Open stores by URL, the ``size`` most recently used kept (least recently used dropped).

    It also owns the evaluator's :class:`ShapeCache`, so shape answers are reused by every
    generation its owner (the Engine, or one Dask worker) scores, and die with it.
    """

    def __init__(self, size: int = STORE_CACHE_SIZE) -> None:
        self.size = size
        self._stores: OrderedDict[str, Store] = OrderedDict()
        self.shapes = ShapeCache()

    def get(self, url: str) -> Store:
        store = self._stores.pop(url, None)
        if store is None:
            store = open_store(url)
        self._stores[url] = store
        while len(self._stores) > self.size:
            self._stores.popitem(last=False)
        return store

    def clear(self) -> None:
        self._stores.clear()
        self.shapes = ShapeCache()


def score_chunk(stores: StoreCache, url: str, lo: int, hi: int, programs: list[dict],
                to_scalar: str | None = None, threads: int | None = None) -> ChunkScores:
    """Score a population (program JSON) on networks ``lo:hi`` of the store at ``url``."""
    if threads:
        torch.set_num_threads(threads)
    chunk = read_chunk(stores.get(url), lo, hi)
    progs = [program_from_json(p) for p in programs]
    return evaluate_population(progs, chunk, to_scalar=to_scalar, shape_cache=stores.shapes)
