"""Statistics programs that generalise: held-out split, validation hall of fame, test tau,
the equivalence cache, racing, seed programs and the evolved network aggregate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from eznas_store.cli import main
from eznas_store.errors import ConfigError
from eznas_store.evaluate.population import evaluate_population
from eznas_store.evaluate.reference import evaluate_reference
from eznas_store.evaluate.synthetic import synthetic_chunk
from eznas_store.fitness.engine import load_task
from eznas_store.programs.codec import program_from_json, program_to_json
from eznas_store.programs.formula import parse_formula
from eznas_store.programs.registered import NAMED_PROGRAMS
from eznas_store.programs.tree import Program
from eznas_store.evolution.evolve import EvolveConfig, run_evolve
from eznas_store.evolution.fitness_cache import FitnessCache
from eznas_store.evolution.population_scorers import StatisticsPopulationScorer
from eznas_store.evolution.representations import TreeRepresentation
from eznas_store.evolution.split import parse_split, race_parts, split_task

SMALL = dict(population=6, mu=4, lambda_=6, generations=2, max_depth=4, workers=0, progress=False)


def _scorer(store, **kw):
    return StatisticsPopulationScorer((store,), max_networks=None, workers=0, scheduler=None, progress=False,
                                      combine="min", abs_tau=False, to_scalar="mean", **kw)


def _rep(scorer):
    return TreeRepresentation(scorer.terminals, scorer.ops, scorer.terminal_set, min_depth=2, max_depth=4,
                              to_scalar="mean")


def _ind(rep, formula):
    return rep.individual(Program(tree=parse_formula(formula)))


# ------------------------------------------------------------------------------ split


def test_split_is_seeded_disjoint_and_covers(tiny_store):
    task = load_task(tiny_store)
    parts = parse_split("6/3/rest")
    a = split_task(task, parts, seed=0)
    assert [t.n for t in a] == [6, 3, 3]
    ids = [set(t.networks.tolist()) for t in a]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert set().union(*ids) == set(task.networks.tolist())
    again = split_task(task, parts, seed=0)
    assert all(np.array_equal(x.networks, y.networks) for x, y in zip(a, again))
    other = split_task(task, parts, seed=1)
    assert not all(np.array_equal(x.networks, y.networks) for x, y in zip(a, other))
    for t in a:  # accuracies follow their networks
        pos = [list(task.networks).index(n) for n in t.networks]
        np.testing.assert_array_equal(t.accuracy, task.accuracy[pos])
    assert [t.n for t in split_task(task, parse_split("0.5/0.25/rest"), seed=0)] == [6, 3, 3]
    for bad in ("6/3", "x/3/rest", "rest/rest/2", "20/3/rest", "1/3/rest"):
        with pytest.raises(ConfigError):
            split_task(task, parse_split(bad), seed=0)


def test_train_validation_test_tau_in_run_json_log_and_printed(tiny_store, tmp_path, capsys):
    from conftest import tiny_ingest_config
    from eznas_store.ingest.driver import run_ingest

    other = str(tmp_path / "other.zarr")  # the same cells, another seed: other statistics (a train store is refused)
    run_ingest(tiny_ingest_config(other, Path(tiny_store).parent / "bench.csv", seed=1))
    out = tmp_path / "run"
    assert main(["evolve", tiny_store, "--out", str(out), "--split", "6/3/rest", "--test-store", other,
                 "--population", "6", "--generations", "2", "--max-depth", "4", "--workers", "0",
                 "--no-progress", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    run = json.loads((out / "run.json").read_text())
    assert set(run["final"]) == {"best_final", "best_ever_1", "best_ever_2"}
    for role, s in run["final"].items():
        assert set(s) >= {"train", "validation", "test", "test_taus"}
        assert len(s["test_taus"]) == 2  # the held-out networks and the test store
        assert f"{role}: train tau" in printed and "validation tau" in printed and "test tau" in printed
    roles = [t["role"] for t in run["tasks"]]
    assert roles == ["train", "validation", "test", "test"]
    log = [json.loads(ln) for ln in (out / "generations.jsonl").read_text().splitlines()]
    assert all("train_best" in r and "val_best" in r for r in log)
    meta = json.loads((out / "programs" / "best_ever_1.json").read_text())["meta"]
    assert meta["validation_tau"] == run["final"]["best_ever_1"]["validation"]
    # the hall of fame is the best by validation tau among the programs scored on it
    ck = json.loads((out / "checkpoint.json").read_text())
    vals = sorted((v["value"] for v in ck["validation"].values() if v["value"] is not None), reverse=True)
    if vals:
        assert run["final"]["best_ever_1"]["validation"] == pytest.approx(vals[0])


def test_default_run_writes_no_new_keys(tiny_store, tmp_path):
    out = tmp_path / "run"
    run_evolve(EvolveConfig(stores=(tiny_store,), out=str(out), **SMALL))
    run = json.loads((out / "run.json").read_text())
    ck = json.loads((out / "checkpoint.json").read_text())
    assert "final" not in run and all("role" not in t for t in run["tasks"])
    assert not {"raced", "probes", "validation"} & set(ck)
    assert "val_best" not in (out / "generations.jsonl").read_text()


# ------------------------------------------------------------------------------ throughput


def test_equivalence_cache_hits_for_the_same_function(tiny_store):
    scorer = _scorer(tiny_store)
    try:
        rep = _rep(scorer)
        cache = FitnessCache(scorer, rep, 1, equivalence=True)
        a = _ind(rep, "frobenius(abs(act_D))")
        assert cache([a], desc="a") == 1 and cache.hits == 0
        b = _ind(rep, "frobenius(abs(abs(act_D)))")
        assert cache([b], desc="b") == 0 and cache.hits == 1
        assert b.record == a.record
        direct = scorer.fitness([rep.program(b)], desc="direct")[0]
        assert direct.value == a.record.value
        c = _ind(rep, "frobenius(sigmoid(act_D))")  # another function: scored
        d = _ind(rep, "frobenius(abs(abs(abs(act_D))))")
        assert cache([c, d], desc="c") == 1 and cache.hits == 2
    finally:
        scorer.close()


def test_racing_prunes_and_marks_raced_out(tiny_store):
    scorer = _scorer(tiny_store, racing=0.34)
    try:
        first, rest = scorer.race[0]
        assert rest is not None and first.n + rest.n == 12 and not set(first.chunks) & set(rest.chunks)
        rep = _rep(scorer)
        cache = FitnessCache(scorer, rep, 1, racing=0.34)
        inds = [_ind(rep, f) for f in ("frobenius(act_D)", "frobenius(wt)", "l1_norm(actgrad_D)")]
        cache(inds, desc="race", threshold=5.0)  # nothing can reach it: all raced out
        assert all(cache.is_raced(i) for i in inds) and cache.raced_out == 3
        assert all(i.record.reason.startswith("raced out") for i in inds)
        full = scorer.fitness([rep.program(inds[0])], desc="full")[0]
        fin = [_ind(rep, "frobenius(act_D)")]
        c2 = FitnessCache(scorer, rep, 1, racing=0.34)
        c2(fin, desc="race", threshold=-1.0)  # everything finishes: the full train fitness
        assert not c2.is_raced(fin[0]) and fin[0].record.value == pytest.approx(full.value)
    finally:
        scorer.close()


def _program_files(out: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((out / "programs").glob("*.json"))}


def test_racing_never_in_hall_of_fame_and_resume_is_identical(tiny_store, tmp_path):
    opts = dict(SMALL, population=8, mu=4, lambda_=8, generations=3, seed=1, split="8/2/rest",
                equivalence_cache=True, racing=0.34)
    whole = tmp_path / "whole"
    run_evolve(EvolveConfig(stores=(tiny_store,), out=str(whole), **opts))
    ck = json.loads((whole / "checkpoint.json").read_text())
    raced = set(ck.get("raced", []))
    hof = {e["program"]["formula"] for e in ck["hall_of_fame"]}
    raced_formulas = {k.split(":", 1)[1].replace(",", ", ") for k in raced}
    assert not hof & raced_formulas
    log = [json.loads(ln) for ln in (whole / "generations.jsonl").read_text().splitlines()]
    assert all("equivalence_hits" in r and "raced_out" in r for r in log)
    part = tmp_path / "part"
    run_evolve(EvolveConfig(stores=(tiny_store,), out=str(part), **dict(opts, generations=1)))
    run_evolve(EvolveConfig(stores=(tiny_store,), out=str(part), **opts), resume=True)
    assert _program_files(part) == _program_files(whole)
    a, b = (json.loads((d / "checkpoint.json").read_text()) for d in (whole, part))
    assert a["probes"] == b["probes"] and a.get("raced") == b.get("raced")


# ------------------------------------------------------------------------------ item 4


def test_seed_programs_are_in_generation_0(tiny_store, tmp_path):
    out = tmp_path / "run"
    f = tmp_path / "p.json"
    f.write_text(json.dumps(program_to_json(Program(tree=parse_formula("frobenius(wt)")))))
    run_evolve(EvolveConfig(stores=(tiny_store,), out=str(out), seed_programs=("eznas-a", str(f)),
                            **dict(SMALL, generations=0)))
    ck = json.loads((out / "checkpoint.json").read_text())
    formulas = [e["program"]["formula"] for e in ck["population"]]
    assert formulas[:2] == [NAMED_PROGRAMS["eznas-a"].formula(), "frobenius(wt)"]
    assert all(e["generation"] == 0 for e in ck["population"])
    with pytest.raises(ConfigError, match="seed-programs"):
        run_evolve(EvolveConfig(stores=(tiny_store,), out=str(tmp_path / "seq"), seed_programs=("eznas-a",),
                                representation="sequential", **dict(SMALL, generations=0)))


def test_aggregate_sum_and_depth_change_network_scores_as_defined():
    chunk = synthetic_chunk(3, channels=(2, 4, 8), image_size=8, cells_per_stage=1)
    tree = parse_formula("frobenius(act_D)")
    progs = [Program(tree), Program(tree, aggregate="sum"), Program(tree, aggregate="depth")]
    res = evaluate_population(progs, chunk).scores
    for i in range(3):
        blocks = chunk.network_blocks(i)
        s = np.array([evaluate_reference(progs[0], [[b]])[0] for b in blocks])
        n = len(s)
        w = np.arange(1, n + 1) / n
        w = w / w.sum()
        np.testing.assert_allclose(res[0, i], s.mean(), rtol=1e-12)
        np.testing.assert_allclose(res[1, i], s.sum(), rtol=1e-12)
        np.testing.assert_allclose(res[2, i], (w * s).sum(), rtol=1e-12)
    assert progs[0].key() == "statistics/mean:frobenius(act_D)" != progs[1].key()


def test_old_json_loads_as_mean_and_aggregate_round_trips():
    doc = program_to_json(Program(parse_formula("frobenius(act_D)")))
    assert "aggregate" not in doc
    assert program_from_json(doc).aggregate == "mean"
    p = Program(parse_formula("frobenius(act_D)"), aggregate="depth")
    back = program_from_json(program_to_json(p))
    assert back.aggregate == "depth" and back == p and back != Program(p.tree)


def test_evolve_aggregate_runs_and_saves_aggregates(tiny_store, tmp_path):
    out = tmp_path / "run"
    run_evolve(EvolveConfig(stores=(tiny_store,), out=str(out), evolve_aggregate=True, **SMALL))
    ck = json.loads((out / "checkpoint.json").read_text())
    aggs = {e["program"].get("aggregate", "mean") for e in ck["population"]}
    assert aggs <= {"mean", "sum", "depth"}
    with pytest.raises(ConfigError):
        EvolveConfig(stores=(tiny_store,), out=str(out), evolve_aggregate=True, representation="sequential")
    with pytest.raises(ConfigError):
        EvolveConfig(stores=(tiny_store,), out=str(out), racing=1.5)
