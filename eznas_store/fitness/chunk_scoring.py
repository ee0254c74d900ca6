"""One unit of work of the Engine: score a population on one chunk of a store, and the
caches that unit keeps between calls.

Whoever owns the work (the :class:`~eznas_store.fitness.engine.Engine` in-process, one
plugin per Dask worker) owns one :class:`ScoringCaches`, and the caches die with it. Each
part is named for what it holds: :class:`OpenStores` (opened stores: opening reads
metadata), :class:`ProgramCache` (decoded program JSON), :class:`ChunkCache` (decoded chunks
with the terminals derived from them), the evaluator's ``ShapeCache`` (op output shapes) and
``SubtreeCache`` (small per-block subtree outputs). None changes a score.

The two byte-bounded ones (chunks, subtrees) count what they really hold (distinct tensor
storages, Python objects around them) and evict to stay inside their bounds; evolve's
defaults size them to the store and the machine (:func:`default_cache_budget`). The
process uses one malloc arena (:func:`~eznas_store.evaluate.chunk.tune_allocator`), so what
one chunk's work frees serves the next: the peak is the budget plus one chunk's work.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import psutil
import torch

from eznas_store.evaluate import Chunk, read_chunk
from eznas_store.evaluate import ChunkScores, evaluate_population
from eznas_store.evaluate import SubtreeCache
from eznas_store.evaluate import ShapeCache
from eznas_store.evaluate import decoded_bytes, release_freed_memory, tune_allocator
from eznas_store.programs import program_from_json
from eznas_store.programs import Program
from eznas_store.store import Store, open_store

#: stores kept open per owner: the tasks of one run, with room to spare
STORE_CACHE_SIZE = 8
#: decoded programs kept per owner (a few generations of a large population)
PROGRAM_CACHE_SIZE = 4096
#: evolve's default bounds (MB) when sized automatically: about one NB201 batch-1 chunk as
#: read (the chunk read ahead hides most reads already, and takes the memory a bigger cache
#: would), and subtree outputs of a few generations; each also capped by the store and the
#: machine. Measured (paper config, in-process): peak RSS 1.11 GB on 60 networks, 1.24 GB on
#: 240, against 2.6 and 3.3 GB with the former fixed 1,024 + 256 MB, in the same CPU time
CHUNK_CACHE_MB = 128
SUBTREE_CACHE_MB = 64
#: the most of the machine's available memory the default caches take, both together
MEMORY_FRACTION = 0.25
MB = 2**20


class _Recent:
    """Values kept by key, the ``size`` most recently used (least recently used dropped);
    ``load(key)`` makes a missing one."""

    def __init__(self, size: int, load) -> None:
        self.size, self._load = size, load
        self._items: OrderedDict = OrderedDict()

    def _get(self, key, *args):
        value = self._items.pop(key, None)
        if value is None:
            value = self._load(*args)
        self._items[key] = value
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        self._items.clear()


class OpenStores(_Recent):
    """Open stores by URL, the ``size`` most recently used kept."""

    def __init__(self, size: int = STORE_CACHE_SIZE) -> None:
        super().__init__(size, open_store)

    def get(self, url: str) -> Store:
        return self._get(url, url)


class ProgramCache(_Recent):
    """Program JSON text → decoded program: a population is scored chunk after chunk, and
    validating its JSON against the schema once per chunk cost more than reading."""

    def __init__(self, size: int = PROGRAM_CACHE_SIZE) -> None:
        super().__init__(size, program_from_json)

    def get(self, doc: dict) -> Program:
        """``program_from_json(doc)``, decoded (and validated) once per distinct document."""
        return self._get(json.dumps(doc, sort_keys=True), doc)


class ChunkCache:
    """Decoded chunks as read (their stored tensors) by (url, lo, hi), within ``max_bytes``
    as :meth:`Chunk.nbytes` counts them (each storage once, objects included).

    What a scoring derives on a kept chunk is dropped after it (:meth:`done`): deriving it
    again costs ~30 ms a chunk against ~0.5 s to read and decode one (measured), and would
    take as much memory again as the chunk itself, so the bound holds more chunks this way.
    First come, kept while they fit: generations visit the chunks in a cycle, where least
    recently used would keep none.
    """

    def __init__(self, max_bytes: int = 0) -> None:
        self.max_bytes = int(max_bytes)
        #: key -> (chunk, bytes counted)
        self._chunks: dict[tuple, tuple[Chunk, int]] = {}
        #: bytes of chunks held elsewhere for good but counted here (:meth:`pin`)
        self.pinned = 0
        self.nbytes = 0
        self.hits = 0

    def __len__(self) -> int:
        return len(self._chunks)

    def get(self, key: tuple) -> Chunk | None:
        kept = self._chunks.get(key)
        if kept is None:
            return None
        self.hits += 1
        return kept[0]

    def offer(self, chunk: Chunk) -> None:
        """Keep ``chunk`` (as read: nothing derived yet) if it fits beside the others."""
        if chunk.key is None or self.max_bytes <= 0 or chunk.key in self._chunks:
            return
        size = chunk.nbytes()
        if self.nbytes + size <= self.max_bytes:
            self._chunks[chunk.key] = (chunk, size)
            self.nbytes += size

    def done(self, chunk: Chunk) -> None:
        """After a scoring: a kept chunk goes back to what was read."""
        if chunk.key in self._chunks:
            chunk.forget_derived()

    def pin(self, chunk: Chunk, reserve: int = 0) -> None:
        """Count against the bound a chunk its owner holds for good (the equivalence probe):
        kept chunks make room for it, the most recently kept first."""
        size = max(reserve, chunk.nbytes())
        self.pinned += size
        self.nbytes += size
        while self.nbytes > self.max_bytes and self._chunks:
            _, dropped = self._chunks.pop(next(reversed(self._chunks)))
            self.nbytes -= dropped

    def chunks(self) -> list[Chunk]:
        return [c for c, _ in self._chunks.values()]

    def clear(self) -> None:
        self._chunks.clear()
        self.nbytes = self.pinned


class ScoringCaches:
    """Everything one owner (an Engine, or one Dask worker) keeps between chunk scorings.

    ``configure(chunk_mb, subtree_mb)`` sets the two byte bounds (0: off); ``budget`` says
    what they were set to (evolve writes it into run.json).
    """

    def __init__(self, *, chunk_mb: float = 0, subtree_mb: float = 0,
                 store_size: int = STORE_CACHE_SIZE) -> None:
        tune_allocator()
        self.stores = OpenStores(store_size)
        self.programs = ProgramCache()
        self.shapes = ShapeCache()
        self.chunks = ChunkCache()
        self.subtrees: SubtreeCache | None = None
        self.configure(chunk_mb, subtree_mb)

    def configure(self, chunk_mb: float, subtree_mb: float) -> None:
        """Set the two byte bounds (MB; 0: off), emptying both caches."""
        self.chunks = ChunkCache(int(max(chunk_mb, 0) * MB))
        self.subtrees = SubtreeCache(int(subtree_mb * MB)) if subtree_mb > 0 else None
        self.budget = {"chunk_mb": max(float(chunk_mb), 0.0), "subtree_mb": max(float(subtree_mb), 0.0)}

    def chunk(self, url: str, lo: int, hi: int) -> Chunk:
        """Networks ``lo:hi`` of a store as a chunk: the kept one, or read (and kept if it fits)."""
        kept = self.chunks.get((url, lo, hi))
        if kept is not None:
            return kept
        chunk = read_chunk(self.stores.get(url), lo, hi)
        chunk.key = (url, lo, hi)
        self.chunks.offer(chunk)
        return chunk

    def read_ahead(self, jobs: Sequence[tuple[str, int, int]]) -> Iterator[Chunk]:
        """The chunks of ``jobs`` (url, lo, hi) in order, each next one read on a thread while
        the caller scores the one before: decoding runs outside the GIL, so on a second core
        the read hides behind the scoring (measured: a default evolve ~20% sooner on two
        cores). Holds one chunk more than reading in turn; with one core, reads in turn."""
        if _cores() < 2:
            for url, lo, hi in jobs:
                yield self.chunk(url, lo, hi)
            return
        if not jobs:
            return
        with ThreadPoolExecutor(1, thread_name_prefix="eznas-read-ahead") as pool:
            pending = self._start(pool, *jobs[0])
            for i, (url, lo, hi) in enumerate(jobs):
                chunk = pending.result()
                if chunk.key is None:  # read, not kept: offered in order, as a read in turn would
                    chunk.key = (url, lo, hi)
                    self.chunks.offer(chunk)
                pending = self._start(pool, *jobs[i + 1]) if i + 1 < len(jobs) else None
                yield chunk

    def _start(self, pool: ThreadPoolExecutor, url: str, lo: int, hi: int) -> Future:
        """A kept chunk at once, else its read begun on ``pool`` (the key set by the caller)."""
        kept = self.chunks.get((url, lo, hi))
        if kept is not None:
            done: Future = Future()
            done.set_result(kept)
            return done
        store = self.stores.get(url)
        return pool.submit(_read_unkeyed, store, lo, hi)

    def held(self) -> dict[str, float]:
        """MB each byte-bounded cache holds now, by its own count."""
        return {"chunk_mb": self.chunks.nbytes / MB,
                "subtree_mb": (self.subtrees.nbytes if self.subtrees is not None else 0) / MB}

    def empty(self) -> None:
        """Drop the kept chunks and subtree outputs (bounds kept) and give their memory back:
        for when nothing will read them again (a run's last scoring done)."""
        self.chunks.clear()
        if self.subtrees is not None:
            self.subtrees.clear()
        release_freed_memory()

    def clear(self) -> None:
        self.stores.clear()
        self.programs.clear()
        self.shapes = ShapeCache()
        self.empty()


def default_cache_budget(urls: Sequence[str], chunk_mb: float | None = None,
                         subtree_mb: float | None = None,
                         chunks: Sequence[Sequence[tuple[int, int]]] | None = None,
                         processes: int = 1) -> dict:
    """The byte bounds (MB) of the chunk and subtree caches for scoring ``urls``, and why.

    ``None`` (evolve's default) sizes a bound: at most :data:`CHUNK_CACHE_MB` /
    :data:`SUBTREE_CACHE_MB`, together at most :data:`MEMORY_FRACTION` of the memory
    available now, and the chunk cache at most the stores' decoded size (every chunk as
    read: more could never fill). A number is taken as given (0: off), capped only by that
    decoded size. ``chunks``: the (lo, hi) ranges used per store
    (default: all); ``processes``: how many score (Dask workers each keep their own caches,
    so each gets its share of the memory).
    """
    decoded = 0
    for i, url in enumerate(urls):
        store = open_store(url)
        ranges = chunks[i] if chunks is not None else store.chunk_ranges()
        decoded += sum(decoded_bytes(store, lo, hi, derived=False) for lo, hi in ranges)
    available = psutil.virtual_memory().available
    share = MEMORY_FRACTION * available / MB / max(processes, 1)
    auto_chunk, auto_subtree = chunk_mb is None, subtree_mb is None
    sub = float(SUBTREE_CACHE_MB if auto_subtree else subtree_mb)
    chunk = float(CHUNK_CACHE_MB if auto_chunk else chunk_mb)
    if auto_subtree:
        sub = min(sub, share / 8)
    if auto_chunk:
        chunk = min(chunk, max(share - sub, 0.0))
    chunk = min(chunk, decoded / MB)
    return {"chunk_mb": round(chunk, 1), "subtree_mb": round(sub, 1),
            "chunk_auto": auto_chunk, "subtree_auto": auto_subtree,
            "store_decoded_mb": round(decoded / MB, 1), "available_mb": round(available / MB, 1),
            "memory_fraction": MEMORY_FRACTION, "processes": max(processes, 1)}


def _cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _read_unkeyed(store: Store, lo: int, hi: int) -> Chunk:
    chunk = read_chunk(store, lo, hi)
    chunk.key = None
    return chunk


def score_chunk(caches: ScoringCaches, url: str, lo: int, hi: int, programs: list[dict],
                to_scalar: str | None = None, threads: int | None = None,
                chunk: Chunk | None = None) -> ChunkScores:
    """Score a population (program JSON) on networks ``lo:hi`` of the store at ``url``
    (``chunk``: those networks, already read by :meth:`ScoringCaches.read_ahead`)."""
    if threads:
        torch.set_num_threads(threads)
    chunk = caches.chunk(url, lo, hi) if chunk is None else chunk
    progs = [caches.programs.get(p) for p in programs]
    res = evaluate_population(progs, chunk, to_scalar=to_scalar, shape_cache=caches.shapes,
                              subtree_cache=caches.subtrees)
    caches.chunks.done(chunk)
    return res
