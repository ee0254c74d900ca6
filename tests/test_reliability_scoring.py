"""Issue 24, the scoring side: sequential programs score wherever trees do, and ``score``,
``compare`` and ``search`` refuse in one line (exit 2) before any work when the arguments or
the table already say the run cannot succeed. Each case of the hostile sweep is replayed here.

A refusal "before work" is checked by replacing the function that would do the work (collect
a network, score a chunk, read the data batch) with one that fails the test when called.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import make_bench, tiny_ingest_config

from eznas_store.cli import main
from eznas_store.errors import ConfigError, ProgramError
from eznas_store.programs.codec import load_program, save_program
from eznas_store.programs.registered import NAMED_PROGRAMS
from eznas_store.programs.sequential import SequentialProgram, from_tree

#: the storeless options of ``score`` matching ``tiny_ingest_config`` (a 12-network tiny table)
STORELESS = ["--dataset", "digits", "--channels", "4", "--cells", "1", "--image-size", "8",
             "--batch-size", "2", "--device", "cpu", "--no-progress"]
#: a search on tiny NB201 networks that would score 2 cells
SEARCH = ["--max-evaluations", "2", "--population", "3", "--sample", "2", "--dataset", "digits",
          "--channels", "4", "--cells", "1", "--image-size", "8", "--batch-size", "2", "--device", "cpu",
          "--no-progress"]
#: a sequential program reading t28 before anything writes it: it has no output
NO_OUTPUT = SequentialProgram(((14, 22, 50, 0), (17, 102, 22, 0)), name="no_output")


def one_error_line(capsys) -> str:
    """The single stderr line of a refused command (and nothing more)."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("eznas-store: error:"), err
    return err


def forbid(monkeypatch, target: str, what: str) -> None:
    """Make ``target`` (module.attribute) fail the test if anything calls it."""
    def called(*args, **kwargs):
        raise AssertionError(f"{what} ran before the refusal")

    monkeypatch.setattr(target, called)


@pytest.fixture
def bench(tmp_path: Path) -> Path:
    return make_bench(tmp_path / "bench.csv")


# ---------------------------------------------------------------------- sequential programs


@pytest.fixture(scope="module")
def sequential_run(tiny_store, tmp_path_factory) -> Path:
    """A tiny ``evolve --representation sequential`` run on the tiny store."""
    from eznas_store.evolution.evolve import EvolveConfig, run_evolve

    out = tmp_path_factory.mktemp("seqrun") / "run"
    run_evolve(EvolveConfig(stores=(tiny_store,), out=str(out), seed=0, representation="sequential",
                            population=6, mu=4, lambda_=6, generations=2, workers=0, progress=False))
    return out / "programs" / "best_final.json"


def _json_results(capsys) -> list[dict]:
    return json.loads(capsys.readouterr().out)


def test_score_scores_an_evolved_sequential_program_as_evolve_did(tiny_store, sequential_run, capsys):
    from eznas_store.fitness.engine import score_store

    best = load_program(sequential_run)
    assert isinstance(best, SequentialProgram) and best.name == "best_final"
    assert main(["score", tiny_store, "--program", str(sequential_run), "--json", "--no-progress"]) == 0
    [doc] = _json_results(capsys)
    # evolve scores an instruction list as the tree it computes (SequentialRepresentation.evaluable)
    [tree] = score_store(tiny_store, [best.to_program()])
    assert doc["program"] == "best_final" and doc["n_valid"] == tree.n_valid == 12
    assert doc["kendall_tau"] == tree.tau == best.meta["fitness"]


def test_score_compare_roundoff_and_storeless_take_a_sequential_program(tiny_store, tmp_path, capsys):
    from eznas_store.fitness.engine import score_store
    from eznas_store.storeless.scoring import score_storeless
    from eznas_store.store.store import open_store

    seq = from_tree(NAMED_PROGRAMS["eznas-a"].tree, name="seq_a")
    path = save_program(seq, tmp_path / "seq_a.json")
    [ref] = score_store(tiny_store, [NAMED_PROGRAMS["eznas-a"]])
    [got] = score_store(tiny_store, [load_program(path)])
    np.testing.assert_array_equal(got.scores, ref.scores)
    assert main(["score", tiny_store, "--program", str(path), "--roundoff", "--json", "--no-progress"]) == 0
    [doc] = _json_results(capsys)
    assert doc["kendall_tau"] == ref.tau and doc["roundoff"]["round_off_determined"] is False
    assert main(["compare", tiny_store, "--program", str(path), "--json"]) == 0
    rows = {r["name"]: r for r in _json_results(capsys)["rows"]}
    assert rows["seq_a"]["kendall_tau"] == rows["eznas-a"]["kendall_tau"] == ref.tau
    cfg = tiny_ingest_config("", Path(open_store(tiny_store).plan.benchmark))
    [direct] = score_storeless(cfg, [load_program(path)], progress=False)
    np.testing.assert_array_equal(direct.scores, ref.scores)


def test_a_sequential_program_without_output_is_one_line_naming_its_file(tiny_store, tmp_path, capsys,
                                                                          monkeypatch):
    path = save_program(NO_OUTPUT, tmp_path / "no_output.json")
    forbid(monkeypatch, "eznas_store.fitness.engine.Engine.score", "scoring")
    for argv in (["score", tiny_store, "--program", str(path)], ["compare", tiny_store, "--program", str(path)]):
        assert main(argv) == 2
        err = one_error_line(capsys)
        assert str(path) in err and "computes nothing to score" in err and "t28" in err


def test_the_evaluator_reads_a_sequential_program_as_its_tree():
    from eznas_store.evaluate.population import evaluate_population
    from eznas_store.evaluate.synthetic import synthetic_chunk

    chunk = synthetic_chunk(3, channels=(2, 4, 8), image_size=8, cells_per_stage=1)
    tree = NAMED_PROGRAMS["eznas-a"]
    seq = from_tree(tree.tree, name="best_final")  # its name is a label, never a terminal
    res = evaluate_population([tree, seq], chunk)
    np.testing.assert_array_equal(res.scores[0], res.scores[1])
    with pytest.raises(ProgramError, match="never written|no earlier instruction"):
        evaluate_population([NO_OUTPUT], chunk)


# ---------------------------------------------------------------------- score: refuse before work


def test_storeless_score_without_a_benchmark_refuses_before_any_work(capsys, monkeypatch):
    forbid(monkeypatch, "eznas_store.storeless.scoring.plan_ingest", "planning (data, table)")
    forbid(monkeypatch, "eznas_store.storeless.scoring.collect_network", "collection")
    assert main(["score", "--networks", "3", *STORELESS]) == 2
    assert "needs --benchmark" in one_error_line(capsys)


@pytest.mark.parametrize("seed", [2**32, 2**64, 2**64 + 1, -1])
def test_storeless_score_seed_out_of_range_is_one_line_before_work(bench, seed, capsys, monkeypatch):
    forbid(monkeypatch, "eznas_store.storeless.scoring.plan_ingest", "planning (data, table)")
    assert main(["score", "--benchmark", str(bench), "--seed", str(seed), *STORELESS]) == 2
    assert "--seed must be an integer from 0 to 4294967295" in one_error_line(capsys)


@pytest.mark.parametrize("extra,needle", [
    (["--to-scalar", "max"], "--to-scalar"),
    (["--proxy", "synflow", "--proxy", "nope"], "unknown proxy 'nope'"),
    (["--roundoff"], "--roundoff needs a STORE"),
    (["--workers", "-1"], "--workers"),
    (["--program", "no-such-program"], "no-such-program"),
])
def test_storeless_score_argument_errors_come_before_work(bench, extra, needle, capsys, monkeypatch):
    forbid(monkeypatch, "eznas_store.storeless.scoring.plan_ingest", "planning (data, table)")
    assert main(["score", "--benchmark", str(bench), *STORELESS, *extra]) == 2
    assert needle in one_error_line(capsys)


def test_a_proxy_program_beside_proxies_is_refused_before_the_proxies_are_computed(bench, tmp_path, capsys,
                                                                                   monkeypatch):
    from eznas_store.programs.formula import parse_formula
    from eznas_store.programs.proxy_ops import PROXY_OPS
    from eznas_store.programs.tree import Program

    prog = Program(tree=parse_formula("add(synflow, nwot)", ops=PROXY_OPS, terminals=None),
                   terminal_set="proxies", name="sn")
    path = save_program(prog, tmp_path / "sn.json")
    forbid(monkeypatch, "eznas_store.storeless.scoring.plan_ingest", "planning (data, table)")
    assert main(["score", "--benchmark", str(bench), *STORELESS, "--proxy", "synflow",
                 "--program", str(path)]) == 2
    assert "reads hand-crafted proxy values" in one_error_line(capsys)


def _bench_with_accuracies(path: Path, values: list[float]) -> Path:
    from eznas_store.sources.spaces.nb201 import all_cells
    from eznas_store.sources.tables import write_benchmark

    cells = list(all_cells())[100:100 + len(values)]
    return write_benchmark(path, cells, {"digits_test": np.asarray(values, dtype=np.float64)})


def test_storeless_score_with_no_accuracy_refuses_before_collecting(tmp_path, capsys, monkeypatch):
    bench = _bench_with_accuracies(tmp_path / "nan.csv", [math.nan] * 4)  # NaN everywhere
    forbid(monkeypatch, "eznas_store.storeless.scoring.collect_network", "collection")
    forbid(monkeypatch, "eznas_store.storeless.scoring.proxies_for_network", "proxy computation")
    for extra in ([], ["--proxy", "synflow"]):
        assert main(["score", "--benchmark", str(bench), "--networks", "all", *STORELESS, *extra]) == 2
        err = one_error_line(capsys)
        assert "0 of the 4 selected networks have an accuracy" in err and "nothing was collected" in err


def test_storeless_score_collects_only_networks_with_an_accuracy(tmp_path, monkeypatch, capsys):
    import eznas_store.storeless.scoring as storeless

    bench = _bench_with_accuracies(tmp_path / "some.csv", [70.0, math.nan, 60.0, 80.0])
    seen: list[int] = []
    real = storeless.collect_network

    def counting(plan, i, *args, **kwargs):
        seen.append(i)
        return real(plan, i, *args, **kwargs)

    monkeypatch.setattr(storeless, "collect_network", counting)
    assert main(["score", "--benchmark", str(bench), "--networks", "all", *STORELESS, "--json"]) == 0
    [doc] = json.loads(capsys.readouterr().out)
    assert doc["n"] == 3 and math.isfinite(doc["kendall_tau"])
    assert len(seen) == 3  # the network without an accuracy is never built


def test_library_storeless_scoring_refuses_unlabelled_networks_before_collecting(tmp_path, monkeypatch):
    """A caller that needs every selected network scored (the seeds study) gets a one-line
    refusal before any work, not a correlation error after all of it."""
    from eznas_store.storeless.scoring import score_storeless, score_storeless_proxies

    bench = _bench_with_accuracies(tmp_path / "some.csv", [70.0, math.nan, 60.0, 80.0])
    forbid(monkeypatch, "eznas_store.storeless.scoring.collect_network", "collection")
    forbid(monkeypatch, "eznas_store.storeless.scoring.proxies_for_network", "proxy computation")
    cfg = tiny_ingest_config("", bench, networks=None)
    with pytest.raises(ConfigError, match="1 of the 4 selected networks have no accuracy"):
        score_storeless(cfg, [NAMED_PROGRAMS["eznas-a"]], progress=False)
    with pytest.raises(ConfigError, match="1 of the 4 selected networks have no accuracy"):
        score_storeless_proxies(cfg, ["synflow"], progress=False)


def test_score_out_a_file_is_refused_before_scoring(tiny_store, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "taken"
    blocker.write_text("mine")
    forbid(monkeypatch, "eznas_store.fitness.engine.Engine.score", "scoring")
    assert main(["score", tiny_store, "--out", str(blocker), "--no-progress"]) == 2
    assert "is a file, not a folder" in one_error_line(capsys)
    assert blocker.read_text() == "mine"


# ---------------------------------------------------------------------- hostile program files


def _hostile_program(tmp_path: Path, kind: str) -> str:
    p = tmp_path / f"{kind}.json"
    content = {
        "truncated": b"{", "array": b"[]", "binary": b"\xff\xfe\x00", "empty": b"",
        "nan": b'{"format": "eznas-program", "version": 1, "representation": "tree", "tree": {"terminal": NaN}}',
        "proxy_terminal": json.dumps({"format": "eznas-program", "version": 1, "representation": "tree",
                                      "tree": {"op": "frobenius", "args": [{"terminal": "synflow"}]}}).encode(),
        "bad_instruction": json.dumps({"format": "eznas-program", "version": 1, "representation": "sequential",
                                       "instructions": [[17, 50, 0, 0]]}).encode(),
        "unknown_op": json.dumps({"format": "eznas-program", "version": 1, "representation": "sequential",
                                  "instructions": [[99, 102, 0, 0]]}).encode(),
    }.get(kind)
    if kind == "directory":
        p.mkdir()
    else:
        p.write_bytes(content)
    return str(p)


@pytest.mark.parametrize("kind", ["truncated", "array", "binary", "empty", "nan", "proxy_terminal",
                                  "bad_instruction", "unknown_op", "directory"])
@pytest.mark.parametrize("command", ["score", "compare"])
def test_hostile_program_files_are_one_line(tiny_store, tmp_path, kind, command, capsys, monkeypatch):
    path = _hostile_program(tmp_path, kind)
    forbid(monkeypatch, "eznas_store.fitness.engine.Engine.score", "scoring")
    assert main([command, tiny_store, "--program", path]) == 2
    assert path in one_error_line(capsys)


@pytest.mark.parametrize("column", ["nope", "", "accuracy\nx"])
def test_unknown_accuracy_columns_are_one_line(tiny_store, column, capsys, monkeypatch):
    forbid(monkeypatch, "eznas_store.fitness.engine.Engine.score", "scoring")
    for command in ("score", "compare"):
        assert main([command, tiny_store, "--accuracy-column", column]) == 2
        assert "no accuracy column" in one_error_line(capsys)


# ---------------------------------------------------------------------- compare


def test_compare_arguments_are_checked_before_scoring(tiny_store, tmp_path):
    from eznas_store.errors import OutputError, UnknownNameError
    from eznas_store.studies.compare import check_compare_args

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        check_compare_args(tiny_store, out=str(blocker))
    zc = tmp_path / "zc_nasbench201.json"
    zc.write_text(json.dumps({"cifar10": {}}))
    with pytest.raises(UnknownNameError, match="no task 'mnist'"):
        check_compare_args(tiny_store, suitezero=str(zc), task="mnist")
    assert check_compare_args(tiny_store) is None


# ---------------------------------------------------------------------- search


def _darts_table(path: Path, n: int = 5, broken: int = 0) -> Path:
    from eznas_store.sources.spaces import darts_genotype as dg

    rng = np.random.default_rng(0)
    cells: list[str] = []
    while len(cells) < n:
        g = dg.random_cell(rng)
        if g not in cells:
            cells.append(g)
    rows = [[g, f"{70 + i:.2f}"] for i, g in enumerate(cells)]
    rows[1:1] = [[cells[0].replace("sep_conv_3x3", "sep_conv_9x9"), "50"]] * min(broken, 1)
    rows += [["Genotype(normal=[", f"{51 + k}"] for k in range(broken - 1)]
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return path


def _search(*argv: str) -> int:
    return main(["search", "--proxy", "synflow", *SEARCH, *argv])


@pytest.fixture
def no_search_work(monkeypatch):
    forbid(monkeypatch, "eznas_store.archsearch.run.sample_batch", "reading the data batch")
    forbid(monkeypatch, "eznas_store.archsearch.run.make_cell_scorer", "building the scorer")


def test_search_over_a_table_of_another_space_is_refused(tmp_path, bench, capsys, no_search_work):
    darts = _darts_table(tmp_path / "darts.csv")
    assert _search("--benchmark", str(darts)) == 2  # --space nb201 (default)
    err = one_error_line(capsys)
    assert "5 of 5 rows are not valid nb201 cells" in err and "row 1" in err
    assert _search("--benchmark", str(bench), "--space", "darts") == 2
    assert "12 of 12 rows are not valid darts cells" in one_error_line(capsys)


def test_search_over_darts_refuses_invalid_genotypes_naming_the_first(tmp_path, capsys, no_search_work):
    table = _darts_table(tmp_path / "darts_bad.csv", broken=2)
    assert _search("--benchmark", str(table), "--space", "darts", "--cells", "3") == 2
    err = one_error_line(capsys)
    assert "2 of 7 rows are not valid darts cells" in err
    assert "row 2" in err and "sep_conv_9x9" in err  # the first bad row, counted from 1


@pytest.mark.parametrize("argv,needle", [
    (["--seed", str(2**64)], "--seed must be an integer from 0 to 4294967295"),
    (["--seed", str(2**32)], "--seed must be an integer from 0 to 4294967295"),
    (["--threads", "100000"], "--threads must be an integer from 1 to 256"),
    (["--proxy", "az_nas", "--reference-size", "100000"], "--reference-size 100000 is more than the 15625"),
    (["--out", "FILE"], "is a file, not a folder"),
    (["--accuracy-column", "nope"], "no column 'nope'"),
    (["--proxy", "NO_OUTPUT"], "computes nothing to score"),
])
def test_search_argument_errors_come_before_work(bench, tmp_path, argv, needle, capsys, no_search_work):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    no_output = save_program(NO_OUTPUT, tmp_path / "no_output.json")
    argv = [str(blocker) if a == "FILE" else str(no_output) if a == "NO_OUTPUT" else a for a in argv]
    assert main(["search", "--proxy", "synflow", "--benchmark", str(bench), *SEARCH, *argv]) == 2
    assert needle in one_error_line(capsys)


def test_search_needs_a_reference_no_larger_than_the_darts_table(tmp_path, capsys, no_search_work):
    table = _darts_table(tmp_path / "darts.csv", n=5)
    assert main(["search", "--proxy", "az_nas", "--benchmark", str(table), "--space", "darts", *SEARCH,
                 "--cells", "3", "--reference-size", "6"]) == 2
    assert "more than the 5 --space darts cells" in one_error_line(capsys)


def test_search_judged_by_a_column_without_accuracies_is_refused(tmp_path, capsys, no_search_work):
    table = _bench_with_accuracies(tmp_path / "nan.csv", [math.nan] * 4)
    assert _search("--benchmark", str(table)) == 2
    assert "holds no finite accuracy" in one_error_line(capsys)


def test_search_config_refuses_big_seeds_and_threads(bench):
    from eznas_store.archsearch.config import ArchSearchConfig

    for kw in ({"seed": 2**64}, {"threads": 10**5}):
        with pytest.raises(ConfigError):
            ArchSearchConfig(proxy="synflow", benchmark=str(bench), max_evaluations=1, **kw)


def test_search_scores_a_sequential_program(bench, tmp_path, capsys):
    path = save_program(from_tree(NAMED_PROGRAMS["eznas-a"].tree, name="seq_a"), tmp_path / "seq_a.json")
    assert main(["search", "--proxy", str(path), "--benchmark", str(bench), *SEARCH]) == 0
    assert "with statistics 'seq_a'" in capsys.readouterr().out
