"""The run-owned evaluation caches (decoded chunks, small subtree outputs) never change a score,
a reason, which programs are valid, or where evolution goes; and they stay inside their bounds."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from eznas_store.cli import main
from eznas_store.fitness.engine import Engine, load_task
from eznas_store.programs.formula import parse_formula
from eznas_store.programs.registered import NAMED_PROGRAMS
from eznas_store.programs.tree import Program

FORMULAS = [
    "frobenius(act_D)", "symeig_ratio(inpact_P)", "sum(frobenius(act_D), symeig_ratio(inpact_P))",
    "log(symeig_ratio(wt))", "product(l1_norm(actgrad_N), frobenius(act_D))", "normalized_sum(wt)",
    "sigmoid(sum(frobenius(act_D), l1_norm(inpactgrad_N)))", "log(sum(symeig_ratio(inpact_P), frobenius(wt)))",
    "logdet(matmul(wt, wt))", "invert(difference(eig_ratio(act_P), det(wt)))", "power(numel(softmax(act_N)))",
]


def _programs(formulas):
    return [Program(parse_formula(f)) for f in formulas]


def _run(store, out, *extra):
    return main(["evolve", store, "--out", str(out), "--generations", "3", "--population", "10",
                 "--workers", "0", "--no-progress", "--max-depth", "5", "--seed", "3", *extra])


def _log(out):
    rows = [json.loads(x) for x in (out / "generations.jsonl").read_text().splitlines()]
    drop = {"seconds", "peak_rss_mb", "driver_peak_rss_mb", "worker_peak_rss_mb"}
    return [{k: v for k, v in r.items() if k not in drop} for r in rows]


def _programs_dir(out):
    return {p.name: p.read_text() for p in sorted((out / "programs").glob("*.json"))}


def _scores(engine, programs, task):
    res = engine.score(programs, [task])
    return res.scores[0], res.reasons[0]


def test_scores_and_reasons_identical_with_and_without_caches(tiny_store):
    task = load_task(tiny_store)
    rng = random.Random(0)
    pops = [_programs(rng.sample(FORMULAS, 5)) + [NAMED_PROGRAMS["eznas-a"]] for _ in range(4)]
    with Engine(workers=0, chunk_cache_mb=0, subtree_cache_mb=0) as plain, \
            Engine(workers=0, chunk_cache_mb=64, subtree_cache_mb=16) as cached:
        for pop in pops:  # later populations share subtrees with earlier ones
            s0, r0 = _scores(plain, pop, task)
            s1, r1 = _scores(cached, pop, task)
            assert np.array_equal(s0, s1, equal_nan=True)  # bit for bit, NaN where invalid
            assert r0 == r1
        assert cached.caches.subtrees.hits > 0  # the cache was used, not bypassed
        assert cached.caches.chunks.nbytes > 0
        assert plain.caches.subtrees is None and plain.caches.chunks.nbytes == 0


def test_caches_stay_inside_their_bounds(tiny_store):
    task = load_task(tiny_store)
    pop = _programs(FORMULAS)
    with Engine(workers=0, chunk_cache_mb=64, subtree_cache_mb=16) as big:
        one_chunk = max(big.caches.chunk(task.url, lo, hi).nbytes() for lo, hi in task.chunks)
        big.score(pop, [task])
        whole = big.caches.chunks.nbytes
    bound = 1.5 * one_chunk / 2**20  # room for one chunk and a half: not all of them
    with Engine(workers=0, chunk_cache_mb=bound, subtree_cache_mb=0.002) as small:
        s_small, _ = _scores(small, pop, task)
        s_small2, _ = _scores(small, pop, task)
        assert 0 < small.caches.chunks.nbytes <= bound * 2**20 < whole
        assert small.caches.subtrees.nbytes <= 0.002 * 2**20
    with Engine(workers=0, chunk_cache_mb=0, subtree_cache_mb=0) as plain:
        s_plain, _ = _scores(plain, pop, task)
    assert np.array_equal(s_small, s_plain, equal_nan=True)
    assert np.array_equal(s_small2, s_plain, equal_nan=True)


@pytest.mark.parametrize("extra", [(), ("--equivalence-cache", "--racing", "0.4", "--split", "8/2/rest")])
def test_evolution_identical_with_and_without_caches(tiny_store, tmp_path, extra):
    off, on = tmp_path / "off", tmp_path / "on"
    assert _run(tiny_store, off, "--chunk-cache-mb", "0", "--subtree-cache-mb", "0", *extra) == 0
    assert _run(tiny_store, on, "--chunk-cache-mb", "64", "--subtree-cache-mb", "16", *extra) == 0
    assert _log(off) == _log(on)
    assert _programs_dir(off) == _programs_dir(on)
    for name in ("best_final", "best_ever_1"):
        assert (off / "scores" / f"{name}.csv").read_text() == (on / "scores" / f"{name}.csv").read_text()


def test_resume_with_caches_matches_one_run(tiny_store, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert _run(tiny_store, one) == 0  # the defaults: caches on
    assert main(["evolve", tiny_store, "--out", str(two), "--generations", "1", "--population", "10",
                 "--workers", "0", "--no-progress", "--max-depth", "5", "--seed", "3"]) == 0
    assert _run(tiny_store, two, "--resume") == 0
    assert _log(one) == _log(two)
    assert _programs_dir(one) == _programs_dir(two)
