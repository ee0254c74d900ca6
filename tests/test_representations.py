"""``evolve --representation sequential`` through the same loop, fitness and outputs as trees."""

from __future__ import annotations

import json

import pandas as pd

from eznas_store.cli import main
from eznas_store.evolution.evolve import EvolveConfig, run_evolve
from eznas_store.programs.codec import load_program
from eznas_store.programs.sequential import SequentialProgram
from eznas_store.fitness.engine import score_store

SMALL = dict(population=8, mu=4, lambda_=8, generations=2, workers=0, progress=False)


def test_sequential_run_saves_instruction_programs_that_score(tiny_store, tmp_path):
    out = tmp_path / "seq"
    res = run_evolve(EvolveConfig(stores=(tiny_store,), out=str(out), representation="sequential",
                                  max_length=12, seed=2, **SMALL))
    best = load_program(out / "programs" / "best_final.json")
    assert isinstance(best, SequentialProgram) and best.instructions == res.best_final.instructions
    assert 2 <= len(best.instructions) <= 12
    # the recorded fitness is the fitness of the tree the instructions compute
    rescored = score_store(tiny_store, [best.to_program()])[0]
    assert abs(rescored.tau - best.meta["taus"][0]) < 1e-12
    log = [json.loads(x) for x in (out / "generations.jsonl").read_text().splitlines()]
    assert all({"mean_length", "mean_live_length", "dead_code_fraction", "with_dead_code"} <= set(r) for r in log)
    assert all(r["mean_live_length"] <= r["mean_length"] for r in log)
    scores = pd.read_csv(out / "scores" / "best_final.csv")
    assert len(scores) > 0


def test_sequential_resume_ends_with_the_same_programs(tiny_store, tmp_path):
    kw = dict(stores=(tiny_store,), representation="sequential", seed=5, **SMALL)
    full = run_evolve(EvolveConfig(out=str(tmp_path / "a"), **kw))
    run_evolve(EvolveConfig(out=str(tmp_path / "b"), **dict(kw, generations=1)))
    resumed = run_evolve(EvolveConfig(out=str(tmp_path / "b"), **kw), resume=True)
    assert [p.instructions for p in [full.best_final, *full.best_ever]] == \
           [p.instructions for p in [resumed.best_final, *resumed.best_ever]]


def test_tree_and_sequential_side_by_side(tiny_store, tmp_path, capsys):
    for rep in ("tree", "sequential"):
        assert main(["evolve", tiny_store, "--out", str(tmp_path / rep), "--representation", rep,
                     "--population", "6", "--mu", "3", "--lambda", "6", "--generations", "1",
                     "--workers", "0", "--no-progress"]) == 0
    assert main(["report", str(tmp_path / "tree"), str(tmp_path / "sequential"), "--out", str(tmp_path / "cmp")]) == 0
    printed = capsys.readouterr().out
    assert "EZNAS-(R-C-B)-(Mean) sequential" in printed
    table = pd.read_csv(tmp_path / "cmp" / "comparison.csv")
    assert list(table["run"]) == ["tree", "sequential"]
    assert pd.isna(table["dead code"][0]) and 0 <= table["dead code"][1] <= 1


def test_proxies_with_sequential_is_refused(tiny_store, tmp_path):
    assert main(["evolve", tiny_store, "--out", str(tmp_path / "x"), "--over", "proxies",
                 "--representation", "sequential"]) == 2
