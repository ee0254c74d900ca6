"""One unit of work of the Engine: score a population on one chunk of a store.

Opening a store reads its metadata, so a scorer keeps the stores it opened in a
:class:`StoreCache`; the cache belongs to whoever owns the work (the :class:`Engine`
in-process, a per-worker plugin on Dask workers) and goes away with it. It also keeps,
within byte bounds, what every generation would otherwise redo: decoded chunks with the
terminals derived from them (``chunk_mb``), and small per-block subtree outputs
(``subtree_mb``, :class:`~eznas_store.evaluate.runner.SubtreeCache`). Neither changes a
score; both are bounded, so memory stays bounded by the options, not by the store.
"""

from __future__ import annotations

import json
from collections import OrderedDict

import torch

from eznas_store.evaluate import Chunk, read_chunk
from eznas_store.evaluate import ChunkScores, evaluate_population
from eznas_store.evaluate import SubtreeCache
from eznas_store.evaluate import ShapeCache
from eznas_store.programs import program_from_json
from eznas_store.programs import Program
from eznas_store.store import Store, open_store

#: stores kept open per cache: the tasks of one run, with room to spare
STORE_CACHE_SIZE = 8
#: evolve's default bounds (MB) of the decoded-chunk cache (a few chunks of batch-1 NB201
#: networks) and of the subtree-output cache; elsewhere (one-shot scoring) both are off
CHUNK_CACHE_MB = 1024
SUBTREE_CACHE_MB = 256
#: decoded programs kept per cache (a few generations of a large population)
PROGRAM_CACHE_SIZE = 4096


class StoreCache:
    """Open stores by URL, the ``size`` most recently used kept (least recently used dropped).

    It also owns the evaluator's :class:`ShapeCache`, so shape answers are reused by every
    generation its owner (the Engine, or one Dask worker) scores, and die with it.
    """

    def __init__(self, size: int = STORE_CACHE_SIZE, *, chunk_mb: float = 0,
                 subtree_mb: float = 0) -> None:
        self.size = size
        self._stores: OrderedDict[str, Store] = OrderedDict()
        self.shapes = ShapeCache()
        #: (url, lo, hi) -> decoded chunk and its bytes when last measured; first come, kept
        #: while they fit (generations visit chunks in a cycle, where LRU would keep none)
        self._chunks: dict[tuple, tuple[Chunk, int]] = {}
        #: program JSON text -> decoded program: a population is scored chunk after chunk,
        #: and validating its JSON against the schema once per chunk cost more than reading
        self._programs: OrderedDict[str, Program] = OrderedDict()
        self.configure(chunk_mb, subtree_mb)

    def program(self, doc: dict) -> Program:
        """``program_from_json(doc)``, decoded (and validated) once per distinct document."""
        key = json.dumps(doc, sort_keys=True)
        prog = self._programs.pop(key, None)
        if prog is None:
            prog = program_from_json(doc)
        self._programs[key] = prog
        while len(self._programs) > PROGRAM_CACHE_SIZE:
            self._programs.popitem(last=False)
        return prog

    def configure(self, chunk_mb: float, subtree_mb: float) -> None:
        """Set the two byte bounds (MB; 0: off), emptying both caches."""
        self.chunk_bytes = int(max(chunk_mb, 0) * 2**20)
        self._chunks.clear()
        self.subtrees = SubtreeCache(int(subtree_mb * 2**20)) if subtree_mb > 0 else None

    def get(self, url: str) -> Store:
        store = self._stores.pop(url, None)
        if store is None:
            store = open_store(url)
        self._stores[url] = store
        while len(self._stores) > self.size:
            self._stores.popitem(last=False)
        return store

    def chunk(self, url: str, lo: int, hi: int) -> Chunk:
        """Networks ``lo:hi`` of a store as a chunk: the kept one, or read (and kept if it fits)."""
        kept = self._chunks.get((url, lo, hi))
        if kept is not None:
            return kept[0]
        chunk = read_chunk(self.get(url), lo, hi)
        chunk.key = (url, lo, hi)
        if self.chunk_bytes > 0:
            self.measure(chunk)
        return chunk

    def measure(self, chunk: Chunk) -> None:
        """Keep ``chunk`` (re-measured: derived terminals grow it) while all kept chunks fit
        ``chunk_bytes``; drop it otherwise."""
        if chunk.key is None:
            return
        self._chunks.pop(chunk.key, None)
        held = sum(b for _, b in self._chunks.values())
        size = chunk.nbytes()
        if held + size <= self.chunk_bytes:
            self._chunks[chunk.key] = (chunk, size)

    def remeasure(self, chunk: Chunk) -> None:
        """After a scoring: a kept chunk may have grown (derived terminals)."""
        if chunk.key in self._chunks:
            self.measure(chunk)

    def chunk_cache_bytes(self) -> int:
        return sum(b for _, b in self._chunks.values())

    def clear(self) -> None:
        self._stores.clear()
        self._chunks.clear()
        self.shapes = ShapeCache()
        if self.subtrees is not None:
            self.subtrees.clear()


def score_chunk(stores: StoreCache, url: str, lo: int, hi: int, programs: list[dict],
                to_scalar: str | None = None, threads: int | None = None) -> ChunkScores:
    """Score a population (program JSON) on networks ``lo:hi`` of the store at ``url``."""
    if threads:
        torch.set_num_threads(threads)
    chunk = stores.chunk(url, lo, hi)
    progs = [stores.program(p) for p in programs]
    res = evaluate_population(progs, chunk, to_scalar=to_scalar, shape_cache=stores.shapes,
                              subtree_cache=stores.subtrees)
    stores.remeasure(chunk)
    return res
