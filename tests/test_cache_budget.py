"""The scoring caches count what they really hold and stay inside their bounds; the defaults
size themselves to the store and the machine and say what they chose (issue 28)."""

from __future__ import annotations

import gc
import tracemalloc
import weakref

import numpy as np
import psutil
import pytest
import torch

from eznas_store.evaluate import SubtreeCache, chunk_from_raw, decoded_bytes, read_chunk, release_freed_memory
from eznas_store.evaluate.chunk import READ_FAMILIES, network_tensors
from eznas_store.fitness import ScoringCaches, default_cache_budget
from eznas_store.fitness.chunk_scoring import CHUNK_CACHE_MB, MEMORY_FRACTION, SUBTREE_CACHE_MB
from eznas_store.fitness.engine import Engine, load_task
from eznas_store.programs.formula import parse_formula
from eznas_store.programs.tree import Program
from eznas_store.store import open_store
from eznas_store.terminals import STORED, TERMINALS

MB = 2**20
#: programs that read derived terminals (ReLU'd, masked, P differences): chunks grow as scored
DERIVING = ["frobenius(preact_P)", "l1_norm(inpactgrad_N)", "sum(frobenius(act_P), l1_norm(wtgrad_P))",
            "symeig_ratio(preactgrad_P)", "frobenius(inpactgrad_D)"]


def _storages(tensors) -> dict[int, int]:
    return {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}


def _all_derived(chunk):
    for g in chunk.groups:
        for t in TERMINALS:
            g.terminals[t]
    return chunk


def test_a_chunk_counts_each_storage_once(tiny_store):
    store = open_store(tiny_store)
    lo, hi = store.chunk_ranges()[0]
    chunk = _all_derived(read_chunk(store, lo, hi))
    held = [t for g in chunk.groups for t in g.terminals.tensors()]
    distinct = sum(_storages(held).values())
    naive = sum(t.numel() * t.element_size() for t in held)
    assert distinct < naive  # wt and the D/N terminals are the stored tensors themselves
    assert distinct <= chunk.nbytes() <= distinct + 64 * 1024 + 1024 * len(held)
    # the estimates from the block table, reading nothing: what a chunk holds fully derived,
    # and as read
    assert decoded_bytes(store, lo, hi) == pytest.approx(chunk.nbytes(), rel=0.02)
    assert decoded_bytes(store, lo, hi, derived=False) == read_chunk(store, lo, hi).nbytes()
    chunk.forget_derived()
    assert not any(g.terminals.derived() for g in chunk.groups)
    assert chunk.nbytes() == read_chunk(store, lo, hi).nbytes()


def test_a_chunk_is_read_one_shape_family_at_a_time(tiny_store, monkeypatch):
    """The decoded rows of one family are gone before the next family is read, and the
    chunk is the one a read of everything at once gives."""
    store = open_store(tiny_store)
    lo, hi = store.chunk_ranges()[0]
    whole = store.read_rows(lo, hi)
    reads, alive = [], []
    real = store.read_rows

    def watched(lo_, hi_, names=STORED):
        alive.append([name for name, ref in reads if ref() is not None])
        rows = real(lo_, hi_, names)
        reads.extend((name, weakref.ref(rows[name])) for name in names)
        return rows

    monkeypatch.setattr(store, "read_rows", watched)
    chunk = read_chunk(store, lo, hi)
    gc.collect()
    assert len(alive) == len(READ_FAMILIES) and all(a == [] for a in alive)
    assert sorted(n for n, _ in reads) == sorted(STORED)
    networks = [network_tensors(store, n, whole, j) for j, n in enumerate(range(lo, hi))]
    at_once = chunk_from_raw(networks, structure=store.plan.collect.structure, network_ids=np.arange(lo, hi))
    assert len(chunk.groups) == len(at_once.groups)
    assert np.array_equal(chunk.n_blocks, at_once.n_blocks)
    for g, h in zip(chunk.groups, at_once.groups):
        assert torch.equal(g.network, h.network) and torch.equal(g.block, h.block)
        for name in STORED:
            assert torch.equal(g.terminals[f"raw:{name}"], h.terminals[f"raw:{name}"])


def test_chunk_cache_holds_chunks_as_read_inside_its_bound(tiny_store):
    """A scoring derives terminals on a kept chunk; after it the chunk is back to what was
    read, so the cache's count stays what it really holds."""
    task = load_task(tiny_store)
    store = open_store(tiny_store)
    stored = max(read_chunk(store, lo, hi).nbytes() for lo, hi in task.chunks)
    bound = 2.5 * stored  # room for two chunks as read at least (not with their derived terminals)
    pop = [Program(parse_formula(f)) for f in DERIVING]
    with Engine(workers=0, chunk_cache_mb=bound / MB) as engine, \
            Engine(workers=0, chunk_cache_mb=0) as plain:
        for _ in range(2):
            s1, s0 = engine.score(pop, [task]).scores[0], plain.score(pop, [task]).scores[0]
            assert np.array_equal(s1, s0, equal_nan=True)
            kept = engine.caches.chunks.chunks()
            assert 2 <= len(kept) < len(task.chunks)
            assert not any(g.terminals.derived() for c in kept for g in c.groups)
            real = sum(_storages(t for c in kept for g in c.groups for t in g.terminals.tensors()).values())
            assert real <= engine.caches.chunks.nbytes <= bound
        assert engine.caches.chunks.hits == len(kept)  # the second scoring read none of them


def _fill(cache: SubtreeCache, n: int, size: int = 5) -> None:
    group = (("store.zarr", 0, 3), 0)
    value = torch.ones(size)
    for i in range(n):
        cache.put((group, f"frobenius(sum(act_D,l1_norm(wt)))#{i}"), 0, size, size, value)


def test_subtree_cache_counts_what_surrounds_small_entries():
    """Tiny entries (5 members of 4 bytes) cost mostly their objects: the count must say so."""
    cache = SubtreeCache(1 << 40)
    _fill(cache, 100)  # warm up: first-use allocations are not the cache's
    gc.collect()
    release_freed_memory()
    rss0 = psutil.Process().memory_info().rss
    _fill(cache, 100_000)
    grew = psutil.Process().memory_info().rss - rss0
    assert grew <= cache.nbytes  # all the process really took
    data = 100_100 * 5 * 4
    assert cache.nbytes > 10 * data  # a count of data alone would be an order of magnitude short
    traced_cache = SubtreeCache(1 << 40)
    _fill(traced_cache, 100)
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    _fill(traced_cache, 20_000)
    traced, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert traced - before <= traced_cache.nbytes  # Python objects and numpy data, exactly traced


def test_subtree_cache_evicts_to_its_bound_and_forgets_evicted_keys():
    cache = SubtreeCache(256 * 1024)
    _fill(cache, 5000)
    assert 0 < len(cache) < 5000
    assert cache.nbytes <= cache.max_bytes
    assert set(cache._texts) == {ident for _, ident in cache._entries}  # no key text outlives its entries
    hit = cache.get(((("store.zarr", 0, 3), 0), "frobenius(sum(act_D,l1_norm(wt)))#4999"), 0, 5)
    assert hit is not None and torch.equal(hit, torch.ones(5))
    assert cache.get(((("store.zarr", 0, 3), 0), "frobenius(sum(act_D,l1_norm(wt)))#0"), 0, 5) is None
    cache.clear()
    assert cache.nbytes == 0 and not cache._names and not cache._texts


def test_subtree_cache_uses_an_entry_only_when_the_slice_is_filled():
    cache = SubtreeCache(1 << 20)
    key = ((("s", 0, 3), 1), "l1_norm(wt)")
    cache.put(key, 0, 2, 6, torch.tensor([1.0, 2.0]))
    assert cache.get(key, 0, 2).tolist() == [1.0, 2.0]
    assert cache.get(key, 0, 4) is None  # members 2, 3 not there yet
    cache.put(key, 2, 4, 6, torch.tensor([3.0, 4.0]))
    assert cache.get(key, 1, 4).tolist() == [2.0, 3.0, 4.0]
    assert cache.get(key, 4, 6) is None


def test_default_budget_sizes_itself_to_the_store_and_the_machine(tiny_store, monkeypatch):
    store = open_store(tiny_store)
    decoded = sum(decoded_bytes(store, lo, hi, derived=False) for lo, hi in store.chunk_ranges()) / MB
    auto = default_cache_budget([tiny_store])
    assert auto["chunk_auto"] and auto["subtree_auto"]
    assert auto["chunk_mb"] <= min(CHUNK_CACHE_MB, decoded + 0.1)  # a tiny store: its decoded size
    assert auto["store_decoded_mb"] == pytest.approx(decoded, abs=0.1)
    assert auto["subtree_mb"] <= SUBTREE_CACHE_MB
    # a machine with little memory free: both together within the stated fraction of it
    little = psutil.virtual_memory()._replace(available=200 * MB)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: little)
    small = default_cache_budget([tiny_store])
    assert small["chunk_mb"] + small["subtree_mb"] <= MEMORY_FRACTION * 200 + 0.1
    two = default_cache_budget([tiny_store], processes=2)  # each Dask worker keeps its own
    assert two["chunk_mb"] + two["subtree_mb"] <= MEMORY_FRACTION * 100 + 0.1
    # numbers are taken as given (0: off), never more than the store holds decoded
    asked = default_cache_budget([tiny_store], 10_000, 0)
    assert asked["chunk_mb"] == pytest.approx(decoded, abs=0.1) and asked["subtree_mb"] == 0
    assert not asked["chunk_auto"] and not asked["subtree_auto"]


def test_evolve_scorer_sizes_its_caches_and_says_so(tiny_store):
    from eznas_store.evolution.population_scorers import StatisticsPopulationScorer

    kw = dict(max_networks=None, workers=0, scheduler=None, progress=False, combine="min", abs_tau=False,
              to_scalar="mean")
    scorer = StatisticsPopulationScorer([tiny_store], cache_mb=(None, None), **kw)
    try:
        budget = scorer.cache_budget
        assert budget["chunk_mb"] > 0 and budget["subtree_mb"] > 0
        assert scorer.engine.caches.chunks.max_bytes == int(budget["chunk_mb"] * MB)
        assert scorer.engine.caches.subtrees.max_bytes == int(budget["subtree_mb"] * MB)
    finally:
        scorer.close()
    off = StatisticsPopulationScorer([tiny_store], cache_mb=(0, 0), **kw)
    try:
        assert off.engine.caches.chunks.max_bytes == 0 and off.engine.caches.subtrees is None
    finally:
        off.close()


def test_scoring_caches_are_named_parts_with_one_owner(tiny_store):
    caches = ScoringCaches(chunk_mb=64, subtree_mb=1)
    task = load_task(tiny_store)
    lo, hi = task.chunks[0]
    first = caches.chunk(task.url, lo, hi)
    assert caches.chunk(task.url, lo, hi) is first and caches.chunks.hits == 1
    assert caches.stores.get(task.url) is caches.stores.get(task.url)
    doc = {"format": "eznas-program", "version": 1}
    with pytest.raises(Exception):
        caches.programs.get(doc)  # not a program: validated, not kept
    caches.empty()
    assert len(caches.chunks) == 0 and caches.chunks.nbytes == 0
    assert caches.held() == {"chunk_mb": 0.0, "subtree_mb": 0.0}
    assert np.isfinite(caches.budget["chunk_mb"])


def test_a_chunk_held_for_good_comes_out_of_the_bound(tiny_store):
    """The equivalence probe's chunk lives as long as the run: the cache makes room for it."""
    from eznas_store.fitness.chunk_scoring import ChunkCache

    store = open_store(tiny_store)
    ranges = store.chunk_ranges()
    sizes = [decoded_bytes(store, lo, hi, derived=False) for lo, hi in ranges]
    cache = ChunkCache(sizes[0] + sizes[1] + sizes[2] // 2)
    for lo, hi in ranges[:3]:
        cache.offer(read_chunk(store, lo, hi))
    assert len(cache) == 2
    probe = read_chunk(store, *ranges[2])
    cache.pin(probe, sizes[2])
    assert len(cache) == 1 and cache.nbytes <= cache.max_bytes
    assert cache.chunks()[0].key == read_chunk(store, *ranges[0]).key  # the first kept stays
    cache.clear()
    assert cache.nbytes == cache.pinned == sizes[2] == probe.nbytes()


SMALL_RUN = ["--population", "6", "--mu", "4", "--lambda", "6", "--generations", "1", "--max-depth", "3",
             "--workers", "0", "--no-progress"]


def test_run_json_records_the_caches_chosen(tiny_store, tmp_path, capsys):
    """A default evolve says in run.json what it sized its caches to, and why; flags given
    are recorded as given (capped by the store's decoded size)."""
    import json

    from eznas_store.cli import main

    assert main(["evolve", tiny_store, "--out", str(tmp_path / "auto"), *SMALL_RUN]) == 0
    auto = json.loads((tmp_path / "auto" / "run.json").read_text())["caches"]
    assert auto["chunk_auto"] and auto["subtree_auto"]
    assert 0 < auto["chunk_mb"] <= min(CHUNK_CACHE_MB, auto["store_decoded_mb"] + 0.1)
    assert 0 < auto["subtree_mb"] <= SUBTREE_CACHE_MB
    assert auto["chunk_mb"] + auto["subtree_mb"] <= auto["memory_fraction"] * auto["available_mb"]
    assert auto["processes"] == 1
    assert main(["evolve", tiny_store, "--out", str(tmp_path / "given"), *SMALL_RUN,
                 "--chunk-cache-mb", "0", "--subtree-cache-mb", "3"]) == 0
    given = json.loads((tmp_path / "given" / "run.json").read_text())["caches"]
    assert (given["chunk_mb"], given["subtree_mb"]) == (0, 3)
    assert not given["chunk_auto"] and not given["subtree_auto"]
    capsys.readouterr()
    assert main(["evolve", tiny_store, "--out", str(tmp_path / "bad"), *SMALL_RUN, "--chunk-cache-mb", "-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--chunk-cache-mb" in err and len(err.splitlines()) == 1, err
