"""Aging-evolution search (``eznas_store.archsearch.aging``): the algorithm with a fake fitness, and
whole runs on tiny NB201 networks (C=4, N=1, 8×8 digits, a few ms per cell)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import make_bench

from eznas_store.errors import ConfigError
from eznas_store.archsearch.aging import AgingEvolution
from eznas_store.archsearch.config import ArchSearchConfig, parse_duration
from eznas_store.archsearch.result import format_result, rank_in_table
from eznas_store.archsearch.run import run_search
from eznas_store.sources.spaces.nb201 import (
    N_CELLS,
    OPS,
    all_cells,
    cell_from_index,
    cell_index,
    mutate,
    parse_cell,
    random_cell,
)

TINY_SEARCH = {"dataset": "digits", "C": 4, "N": 1, "batch_size": 4, "device": "cpu", "progress": False,
                   "population": 6, "sample": 3}


def tiny(bench: Path, **kw) -> ArchSearchConfig:
    return ArchSearchConfig(**({"proxy": "synflow", "benchmark": str(bench)} | TINY_SEARCH | kw))


@pytest.fixture
def bench30(tmp_path: Path) -> Path:
    return make_bench(tmp_path / "bench.csv", n=30)


def fake_score(cell: str) -> tuple[float, str | None]:
    """A deterministic fitness: the number of 3×3 convs plus a small index tie-break."""
    ops = parse_cell(cell).ops
    return ops.count("nor_conv_3x3") + cell_index(cell) / (10 * N_CELLS), None


# ---------------------------------------------------------------------------- cells
def test_cell_index_roundtrip():
    cells = list(all_cells())
    for i in (0, 1, 4, 5, 777, 15_624):
        assert cell_index(cells[i]) == i and cell_from_index(i) == cells[i]


def test_mutation_changes_exactly_one_edge():
    rng = np.random.default_rng(0)
    edges, new_ops = Counter(), Counter()
    for _ in range(600):
        cell = random_cell(rng)
        child = mutate(cell, rng)
        a, b = parse_cell(cell).ops, parse_cell(child).ops
        diff = [k for k in range(6) if a[k] != b[k]]
        assert len(diff) == 1
        edges[diff[0]] += 1
        new_ops[b[diff[0]]] += 1
    assert set(edges) == set(range(6)) and set(new_ops) == set(OPS)  # every edge and op reachable


# ---------------------------------------------------------------------------- algorithm
def test_aging_keeps_population_size_and_removes_the_oldest():
    evo = AgingEvolution(fake_score, rng=np.random.default_rng(1), population_size=8, sample_size=3)
    for _ in range(8):
        evo.step()
    assert len(evo.population) == 8
    for _ in range(100):
        before = list(evo.population)
        member = evo.step()
        after = list(evo.population)
        assert len(after) == 8
        assert after[:-1] == before[1:]  # the oldest died, nobody else
        assert after[-1] is member
        # the child is one edge away from some member that lived before this step
        assert any(sum(x != y for x, y in zip(parse_cell(m.cell).ops, parse_cell(member.cell).ops)) == 1
                   for m in before)


def test_cache_scores_each_cell_once():
    calls = Counter()

    def counting(cell):
        calls[cell] += 1
        return fake_score(cell)

    evo = AgingEvolution(counting, rng=np.random.default_rng(2), population_size=4, sample_size=4)
    for _ in range(400):
        evo.step()
    assert max(calls.values()) == 1
    assert evo.cache_hits > 0  # a converged small population revisits cells
    assert evo.evaluations == len(calls) == len(evo.history) == evo.cycles - evo.cache_hits
    assert [e.cell for e in evo.history] == list(calls)


def test_evolution_beats_random_on_an_easy_fitness():
    evo = AgingEvolution(fake_score, rng=np.random.default_rng(3), population_size=10, sample_size=5)
    for _ in range(300):
        evo.step()
    assert math.floor(evo.best.score) == 6  # all six edges 3×3 conv


def test_nan_scores_rank_last_and_are_never_best():
    def mostly_nan(cell):
        return (math.nan, "failed") if cell_index(cell) % 2 else (1.0, None)

    evo = AgingEvolution(mostly_nan, rng=np.random.default_rng(4), population_size=6, sample_size=6)
    for _ in range(60):
        evo.step()
    assert evo.best is not None and evo.best.score == 1.0
    evo_min = AgingEvolution(fake_score, rng=np.random.default_rng(5), population_size=10, sample_size=5,
                             maximize=False)
    for _ in range(300):
        evo_min.step()
    assert math.floor(evo_min.best.score) == 0


# ---------------------------------------------------------------------------- whole runs
def test_seeded_runs_are_deterministic(bench30: Path):
    a = run_search(tiny(bench30, max_evaluations=12, seed=7))
    b = run_search(tiny(bench30, max_evaluations=12, seed=7))
    c = run_search(tiny(bench30, max_evaluations=12, seed=8))
    assert a.evaluations == b.evaluations == 12 and a.stop_reason == "evaluation budget spent"
    assert [(e.cell, e.score) for e in a.history] == [(e.cell, e.score) for e in b.history]
    assert (a.cell, a.score) == (b.cell, b.score)
    assert [e.cell for e in a.history] != [e.cell for e in c.history]
    assert len({e.cell for e in a.history}) == 12  # no cell scored twice
    assert all(math.isfinite(e.score) for e in a.history)


def test_time_budget_is_respected(bench30: Path):
    res = run_search(tiny(bench30, budget=1.5, population=4, sample=2))
    assert res.stop_reason == "time budget spent"
    assert res.evaluations > 4  # evolution ran past the initial population
    # a scoring in flight is finished, never cut: the run may pass its budget by the longest
    # scoring (measured, so a busy machine only makes both longer), plus bookkeeping
    done = sorted(e.seconds for e in res.history)
    longest = max(b - a for a, b in zip([0.0, *done], done))
    assert res.wall_seconds <= 1.5 + longest + 0.25
    assert done[-1] - longest <= 1.5 + 0.25  # the last scoring began before the budget ran out


def test_converged_search_stops_early(bench30: Path, monkeypatch):
    """When every proposal is a cell already scored, the run stops after ``patience`` cycles."""
    from eznas_store.sources import spaces

    few = [cell_from_index(i) for i in (7, 70, 700, 7000)]  # a space of four cells
    monkeypatch.setitem(spaces.SPACES, "nb201", dataclasses.replace(
        spaces.SPACES["nb201"], random_cell=lambda rng: few[int(rng.integers(len(few)))],
        mutate=lambda cell, rng: few[int(rng.integers(len(few)))]))
    res = run_search(tiny(bench30, max_evaluations=50, population=3, sample=2, patience=200))
    assert res.stop_reason.startswith("converged") and res.evaluations == 4
    assert res.cycles - res.cache_hits == 4 and res.cycles >= 200 + 4


def test_rank_against_a_hand_made_table():
    acc = np.array([90.0, 80.0, 95.0, 80.0, np.nan, 70.0])
    assert rank_in_table(acc, 95.0) == (1, 100.0)
    assert rank_in_table(acc, 90.0) == (2, 80.0)
    assert rank_in_table(acc, 80.0) == (3, 60.0)  # ties share the best rank
    assert rank_in_table(acc, 70.0) == (5, 20.0)
    assert rank_in_table(acc, math.nan) == (None, None)


def test_result_rank_against_full_table(tmp_path: Path):
    """A table of every cell (made-up accuracies): the chosen cell's accuracy, rank and the optimum."""
    from eznas_store.sources.tables import write_benchmark

    cells = list(all_cells())
    rng = np.random.default_rng(0)
    acc = np.round(rng.uniform(10, 95, N_CELLS), 2)
    acc[123] = 99.0
    path = write_benchmark(tmp_path / "full.csv", cells, {"digits_test": acc}, index=np.arange(N_CELLS))
    out = tmp_path / "run"
    res = run_search(tiny(path, max_evaluations=10, out=str(out)))
    i = cells.index(res.cell)
    assert res.accuracy == acc[i]
    assert res.rank == 1 + int((acc > acc[i]).sum())
    assert res.percentile == pytest.approx(100 * (acc <= acc[i]).mean())
    assert res.optimum_accuracy == 99.0 and res.optimum_cell == cells[123]
    assert res.table_cells == N_CELLS and res.accuracy_column == "digits_test"
    assert res.best_visited_accuracy == max(acc[cells.index(e.cell)] for e in res.history)
    doc = json.loads((out / "search.json").read_text())
    assert doc["cell"] == res.cell and doc["rank"] == res.rank
    assert doc["config"]["max_evaluations"] == 10 and doc["config"]["proxy"] == "synflow"
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["cell"] for r in rows] == [e.cell for e in res.history]
    assert float(rows[0]["accuracy"]) == acc[cells.index(rows[0]["cell"])]
    text = format_result(res)
    assert res.cell in text and f"rank {res.rank} of {N_CELLS}" in text


def test_cell_outside_the_table_has_no_rank(tmp_path: Path):
    from eznas_store.sources.tables import write_benchmark

    cells = list(all_cells())
    path = write_benchmark(tmp_path / "one.csv", [cells[0]], {"digits_test": np.array([50.0])}, index=np.array([0]))
    res = run_search(tiny(path, max_evaluations=5))
    assert res.cell != cells[0]  # the all-none cell has synflow 0, never the best of five
    assert res.rank is None and res.percentile is None and math.isnan(res.accuracy)
    assert res.optimum_accuracy == 50.0 and res.table_cells == 1
    assert "not in the benchmark table" in format_result(res)


def test_statistics_program_fitness(bench30: Path):
    res = run_search(tiny(bench30, proxy="eznas-a", max_evaluations=6, population=3, sample=2))
    assert res.kind == "statistics" and res.fitness == "eznas-a" and res.batch_size == 4
    assert res.evaluations == 6 and math.isfinite(res.score)


def _proxy_program_file(tmp_path: Path) -> Path:
    from eznas_store.programs.tree import Apply, Program, Terminal
    from eznas_store.programs.codec import program_to_json

    prog = Program(Apply("rank", (Terminal("synflow"),)), terminal_set="proxies", name="rank-synflow")
    path = tmp_path / "rank_synflow.json"
    path.write_text(json.dumps(program_to_json(prog)))
    return path


def test_proxy_program_fitness_with_a_stand_in(bench30: Path, tmp_path: Path, monkeypatch):
    """Only the proxies the formula reads are computed; the reference sample is computed once."""
    from eznas_store.programs.ops import Op
    from eznas_store.archsearch import cell_scorers

    class RefOp(Op):  # like proxy_ops.ReferenceOp: an op that compares with a reference sample
        def bind_reference(self, n_ref):
            return self

    rank = RefOp(id=900, name="rank", arity=1, fn=lambda a: a, doc="stand-in")
    monkeypatch.setattr(cell_scorers, "PROXY_OPS", {"rank": rank})
    seen = []

    def evaluate_columns(program, columns, *, ops, reference=None):
        assert set(columns) == {"synflow"} and ops["rank"] is rank
        seen.append(reference)
        ref = reference["synflow"]
        return np.array([(ref < columns["synflow"][0]).mean()]), None

    monkeypatch.setattr(cell_scorers, "evaluate_columns", evaluate_columns)
    asked = []
    real = cell_scorers.compute_all

    def spy(*args, **kw):
        asked.append(tuple(kw["names"]))
        return real(*args, **kw)

    monkeypatch.setattr(cell_scorers, "compute_all", spy)
    res = run_search(tiny(bench30, proxy=str(_proxy_program_file(tmp_path)), max_evaluations=8,
                          reference_size=5))
    assert res.kind == "proxies" and res.fitness == "rank-synflow" and res.reference_evaluations == 5
    assert set(asked) == {("synflow",)}
    assert len(asked) == 5 + 8 - len({e.cell for e in res.history} & _reference_cells(seed=0, n=5))
    assert len(seen) == 8 and all(r is seen[0] and len(r["synflow"]) == 5 for r in seen)
    assert all(0.0 <= e.score <= 1.0 for e in res.history)


def test_program_without_rank_spends_nothing_on_a_reference(bench30: Path, tmp_path: Path):
    from eznas_store.programs.tree import Apply, Program, Terminal
    from eznas_store.programs.codec import program_to_json

    prog = Program(Apply("abslog", (Terminal("synflow"),)), terminal_set="proxies", name="log-synflow")
    path = tmp_path / "p.json"
    path.write_text(json.dumps(program_to_json(prog)))
    res = run_search(tiny(bench30, proxy=str(path), max_evaluations=4))
    assert res.kind == "proxies" and res.reference_evaluations == 0 and res.evaluations == 4


def _reference_cells(*, seed: int, n: int) -> set[str]:
    picks = np.random.default_rng(seed).choice(N_CELLS, size=n, replace=False)
    return {cell_from_index(int(i)) for i in picks}


def test_proxy_program_fitness_real(bench30: Path, tmp_path: Path):
    try:
        from eznas_store.evaluate.columns import evaluate_columns  # noqa: F401
        from eznas_store.programs.proxy_ops import PROXY_OPS  # noqa: F401
    except ImportError:
        pytest.skip("eznas_store.evaluate.columns.evaluate_columns / gp.proxy_ops not available yet")
    res = run_search(tiny(bench30, proxy=str(_proxy_program_file(tmp_path)), max_evaluations=6,
                          reference_size=4))
    assert res.kind == "proxies" and res.evaluations == 6
    assert all(0.0 <= e.score <= 1.0 for e in res.history if math.isfinite(e.score))


# ---------------------------------------------------------------------------- config
def test_parse_duration():
    assert parse_duration("15m") == 900 and parse_duration("90s") == 90 and parse_duration("1h") == 3600
    assert parse_duration("1h30m") == 5400 and parse_duration("2.5m") == 150 and parse_duration("120") == 120
    assert parse_duration(4.5) == 4.5
    for bad in ("", "abc", "15x", "-5m", "0s", "m"):
        with pytest.raises(ConfigError):
            parse_duration(bad)


@pytest.mark.parametrize("kw, match", [
    ({"space": "nds"}, "nb201 only"),
    ({"max_evaluations": None}, "needs a budget"),
    ({"budget": "soon"}, "duration"),
    ({"max_evaluations": 0}, "max-evaluations"),
    ({"population": 1}, "population"),
    ({"sample": 7}, "sample"),
    ({"proxy": "no-such-proxy"}, "neither a hand-crafted proxy"),
    ({"direction": "up"}, "direction"),
    ({"device": "tpu"}, "device"),
    ({"dataset": "mnist"}, "dataset"),
    ({"batch_size": 0}, "batch-size"),
    ({"reference_size": 1}, "reference-size"),
    ({"threads": 0}, "threads"),
    ({"seed": -1}, "seed"),
    ({"patience": -1}, "patience"),
])
def test_bad_inputs_raise_config_error(bench30: Path, kw, match):
    base = {"max_evaluations": 5} | kw
    with pytest.raises(ConfigError, match=match):
        tiny(bench30, **base)


def test_config_is_frozen_and_budget_text_becomes_seconds(bench30: Path):
    cfg = tiny(bench30, budget="2m")
    assert cfg.budget == 120.0
    with pytest.raises(AttributeError):
        cfg.seed = 3  # type: ignore[misc]


def test_cli_search(bench30: Path, tmp_path: Path, capsys):
    from eznas_store.cli import main

    argv = ["search", "--proxy", "synflow", "--benchmark", str(bench30), "--dataset", "digits",
            "--max-evaluations", "8", "--population", "4", "--sample", "2", "--batch-size", "4",
            "--channels", "4", "--cells", "1", "--device", "cpu", "--seed", "3", "--out", str(tmp_path / "s"),
            "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "s" / "search.json").read_text())
    assert result["cell"] in printed and result["evaluations"] == 8
    assert main(["search", "--proxy", "synflow", "--benchmark", str(bench30), "--no-progress"]) == 2  # no budget


def test_search_is_judged_by_test_accuracy_by_default(tmp_path: Path):
    from eznas_store.sources.tables import read_benchmark, write_benchmark
    from eznas_store.archsearch.result import judged_accuracy_column as _test_column

    cells = list(all_cells())[:3]
    path = write_benchmark(tmp_path / "b.csv", cells, {"cifar10_valid": np.array([1.0, 2, 3]),
                                                       "cifar10_test": np.array([3.0, 2, 1])})
    assert _test_column(read_benchmark(path), "cifar10") == "cifar10_test"
    only_valid = write_benchmark(tmp_path / "v.csv", cells, {"cifar10_valid": np.array([1.0, 2, 3])})
    assert _test_column(read_benchmark(only_valid), "cifar10") == "cifar10_valid"


def test_modern_proxies_drive_the_search_by_name_and_in_formulas(bench30: Path, tmp_path: Path):
    """Issue 13: MeCo (and any opt-in modern proxy) as search fitness, alone or in a formula."""
    from eznas_store.programs.codec import program_to_json
    from eznas_store.programs.tree import Apply, Program, Terminal

    res = run_search(tiny(bench30, proxy="meco", max_evaluations=3, population=2, sample=2))
    assert res.kind == "proxy" and res.fitness == "meco" and math.isfinite(res.score)
    prog = Program(Apply("add", (Terminal("meco"), Terminal("az_trainability"))), terminal_set="proxies",
                   name="meco-plus-trainability")
    path = tmp_path / "modern.json"
    path.write_text(json.dumps(program_to_json(prog)))
    res = run_search(tiny(bench30, proxy=str(path), max_evaluations=3, population=2, sample=2))
    assert res.kind == "proxies" and math.isfinite(res.score)


def test_az_nas_aggregate_drives_the_search_against_a_reference_sample(bench30: Path):
    """Issue 13: ``--proxy az_nas`` ranks each cell's four components among a reference sample's."""
    res = run_search(tiny(bench30, proxy="az_nas", max_evaluations=4, population=2, sample=2, reference_size=3))
    assert res.kind == "az_nas" and res.fitness == "az_nas" and math.isfinite(res.score)
    # R reference cells + the chosen one: at most 0 (rank R+1 in all four), at least 4·ln(1/(R+1))
    assert 4 * math.log(1 / 4) <= res.score <= 0.0
    with pytest.raises(ConfigError, match="az_nas"):
        tiny(bench30, proxy="az-nas", max_evaluations=3)


def test_a_formula_is_computed_on_the_init_its_values_came_from(bench30: Path, tmp_path: Path):
    """A formula combines values, so their scale matters: one evolved on Suite-Zero / proxy-table
    values (NASLib's PyTorch-default init) says ``meta["proxy_init"] = "default"`` and the search
    computes NASLib's proxies on that init (l2_norm differs by ~2x between the two inits)."""
    from eznas_store.programs.codec import program_to_json
    from eznas_store.programs.tree import Program, Terminal

    prog = Program(Terminal("l2_norm"), terminal_set="proxies", name="l2", meta={"proxy_init": "default"})
    path = tmp_path / "l2.json"
    path.write_text(json.dumps(program_to_json(prog)))
    kw = dict(max_evaluations=2, population=2, sample=2)
    default = run_search(tiny(bench30, proxy=str(path), **kw))
    assert default.config.proxy_init == "default"
    eznas = run_search(tiny(bench30, proxy=str(path), proxy_init="eznas", **kw))
    named = run_search(tiny(bench30, proxy="l2_norm", **kw))
    assert eznas.config.proxy_init == named.config.proxy_init == "eznas"
    assert [e.cell for e in default.history] == [e.cell for e in eznas.history]
    assert [e.score for e in eznas.history] == [e.score for e in named.history]
    assert all(not math.isclose(a.score, b.score) for a, b in zip(default.history, eznas.history))
    with pytest.raises(ConfigError, match="--proxy-init"):
        tiny(bench30, proxy_init="kaiming", max_evaluations=2)


def test_a_formula_over_graph_features_and_vkdnw_drives_the_search(bench30: Path, tmp_path: Path):
    """Issue 26: a shipped formula may read graph features (from the cell string, no network) and
    VKDNW; ``search`` computes both, and a graph feature alone gives each cell its exact count."""
    from eznas_store.programs.codec import program_to_json
    from eznas_store.programs.tree import Apply, Program, Terminal

    prog = Program(Terminal("graph_op_nor_conv_3x3"), terminal_set="proxies", name="conv3-count")
    path = tmp_path / "graph.json"
    path.write_text(json.dumps(program_to_json(prog)))
    res = run_search(tiny(bench30, proxy=str(path), max_evaluations=5, population=2, sample=2))
    assert res.kind == "proxies"
    assert all(e.score == parse_cell(e.cell).ops.count("nor_conv_3x3") for e in res.history)
    prog = Program(Apply("add", (Terminal("graph_paths"), Terminal("vkdnw_tensors"))), terminal_set="proxies",
                   name="paths-plus-tensors")
    path.write_text(json.dumps(program_to_json(prog)))
    res = run_search(tiny(bench30, proxy=str(path), max_evaluations=2, population=2, sample=2))
    assert res.kind == "proxies" and math.isfinite(res.score)
    prog = Program(Terminal("graph_nope"), terminal_set="proxies", name="nope")
    path.write_text(json.dumps(program_to_json(prog)))
    with pytest.raises(ConfigError, match="graph_nope"):
        run_search(tiny(bench30, proxy=str(path), max_evaluations=2))
