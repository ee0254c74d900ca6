"""Transfer matrix (EZNAS Fig. 4): evolve per task, cross-score, marks, files, rerun/resume."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import make_bench, tiny_ingest_config

from eznas_store.errors import ConfigError
from eznas_store.evolution.evolve import EvolveConfig, run_evolve
from eznas_store.fitness.correlations import kendall_tau, spearman_rho
from eznas_store.programs.registered import NAMED_PROGRAMS
from eznas_store.programs.codec import load_program
from eznas_store.fitness.engine import score_store
from eznas_store.store.store import open_store
from eznas_store.studies.transfer import (
    BASELINES,
    TransferConfig,
    format_transfer,
    mark_columns,
    parse_task_spec,
    run_transfer,
)

EVOLVE = dict(population=4, mu=2, lambda_=4, generations=1, max_depth=4, workers=0, progress=False)
TASKS = ("ta", "tb", "tc")


@pytest.fixture(scope="module")
def task_stores(tmp_path_factory) -> dict[str, str]:
    """Three tiny tasks: different network samples, accuracies and ingest seeds."""
    from eznas_store.ingest.driver import run_ingest

    d = tmp_path_factory.mktemp("transfer_stores")
    urls = {}
    for k, name in enumerate(TASKS):
        bench = make_bench(d / f"{name}.csv", n=10, seed=10 + k)
        urls[name] = str(d / f"{name}.zarr")
        run_ingest(tiny_ingest_config(urls[name], bench, seed=k, proxies=False))
    return urls


def _cfg(stores: dict[str, str], out: Path, **kw) -> TransferConfig:
    return TransferConfig(stores=tuple(f"{n}={u}" for n, u in stores.items()), out=str(out), **{**EVOLVE, **kw})


@pytest.fixture(scope="module")
def done(task_stores, tmp_path_factory):
    out = tmp_path_factory.mktemp("transfer") / "out"
    cfg = _cfg(task_stores, out)
    return cfg, run_transfer(cfg)


def test_matrix_shape_rows_and_columns(done):
    _, res = done
    assert res.rows == TASKS + BASELINES == ("ta", "tb", "tc", "FLOPs", "params", "EZNAS-A")
    assert res.columns == TASKS
    assert res.row_kinds == ("evolved",) * 3 + ("baseline",) * 3
    assert res.tau.shape == res.rho.shape == res.n_valid.shape == (6, 3)
    assert res.n.tolist() == [10, 10, 10]
    assert np.isfinite(res.tau[:3]).all()  # evolved programs are valid where they were evolved and tested
    assert set(res.evolve_status.values()) == {"evolved"}


def test_diagonal_is_each_runs_own_fitness(done):
    cfg, res = done
    for i, name in enumerate(TASKS):
        prog = load_program(Path(cfg.out) / "evolve" / name / "programs" / "best_ever_1.json")
        assert prog.key() == res.programs[name].key()
        assert res.tau[i, i] == pytest.approx(prog.meta["taus"][0], abs=1e-12)
        assert res.tau[i, i] == pytest.approx(prog.meta["fitness"], abs=1e-12)


def test_off_diagonal_and_baselines_recomputed_independently(done, task_stores):
    _, res = done
    for c, name in enumerate(TASKS):
        url = task_stores[name]
        s = open_store(url)
        acc = s.accuracy()
        for base, col in (("FLOPs", "flops"), ("params", "params")):
            v = np.asarray(s.column(col), dtype=float)
            assert res.cell(base, name) == pytest.approx(kendall_tau(v, acc), abs=1e-12)
            assert res.rho[res.rows.index(base), c] == pytest.approx(spearman_rho(v, acc), abs=1e-12)
        progs = [res.programs[t] for t in TASKS] + [NAMED_PROGRAMS["eznas-a"]]
        direct = score_store(url, progs)
        for r, row in enumerate(TASKS + ("EZNAS-A",)):
            want = direct[r].tau
            got = res.cell(row, name)
            assert got == pytest.approx(want, abs=1e-12) or (np.isnan(got) and np.isnan(want))


def test_marks_best_and_second_per_column(done):
    _, res = done
    for c in range(3):
        col = res.tau[:, c]
        finite = col[np.isfinite(col)]
        for r in range(6):
            better = int((finite > col[r]).sum()) if np.isfinite(col[r]) else 99
            assert res.marks[r][c] == {0: "**", 1: "*"}.get(better, "")
        assert sum(m[c] == "**" for m in res.marks) >= 1


def test_mark_columns_ties_nan_and_abs():
    tau = np.array([[0.5, np.nan], [0.7, -0.9], [0.7, 0.2], [0.1, 0.3]])
    # column 0: two rows tie for best, so none is second (competition ranking)
    assert mark_columns(tau) == [["", ""], ["**", ""], ["**", "*"], ["", "**"]]
    assert [m[1] for m in mark_columns(tau, use_abs=True)] == ["", "**", "", "*"]
    assert [m[0] for m in mark_columns(np.array([[0.4], [0.6], [0.5], [np.nan]]))] == ["", "**", "*", ""]


def test_files_written(done):
    cfg, res = done
    out = Path(cfg.out)
    rows = list(csv.DictReader((out / "transfer.csv").open()))
    assert len(rows) == 6 * 3
    assert {r["row"] for r in rows} == set(res.rows)
    first = next(r for r in rows if r["row"] == "ta" and r["tested_on"] == "tb")
    assert float(first["tau"]) == res.cell("ta", "tb") and first["rho"] and first["mark"] == res.marks[0][1]
    md = (out / "transfer.md").read_text()
    assert "| evolved on ta |" in md and "**" in md and "Spearman ρ" in md
    assert (out / "transfer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((out / "transfer.json").read_text())
    assert meta["config"]["stores"] == list(cfg.stores) and "torch" in meta["versions"]
    assert meta["rows"] == list(res.rows) and meta["columns"] == list(TASKS)
    np.testing.assert_allclose(np.array(meta["tau"], dtype=float), res.tau, equal_nan=True)
    assert [t["evolve"] for t in meta["tasks"]] == ["evolved"] * 3
    text = format_transfer(res)
    assert "evolved on tc" in text and "EZNAS-A" in text and "**" in text


def test_rerun_reuses_finished_runs(done):
    cfg, res = done
    ckpt = Path(cfg.out) / "evolve" / "ta" / "checkpoint.json"
    before = ckpt.stat().st_mtime_ns
    again = run_transfer(TransferConfig(**{**cfg.__dict__, "progress": False}))
    assert again.evolve_status == {n: "reused" for n in TASKS}
    assert ckpt.stat().st_mtime_ns == before
    np.testing.assert_array_equal(again.tau, res.tau)


def test_a_killed_task_resumes_to_the_same_program(done, task_stores, tmp_path):
    cfg, res = done
    out = tmp_path / "out"
    for name in ("ta", "tc"):  # finished before the job died
        shutil.copytree(Path(cfg.out) / "evolve" / name, out / "evolve" / name)
    # tb died after generation 0 (its last checkpoint)
    run_evolve(EvolveConfig(stores=(task_stores["tb"],), out=str(out / "evolve" / "tb"), **{**EVOLVE, "generations": 0}))
    again = run_transfer(_cfg(task_stores, out))
    assert again.evolve_status == {"ta": "reused", "tb": "resumed", "tc": "reused"}
    assert again.programs["tb"].key() == res.programs["tb"].key()
    np.testing.assert_array_equal(again.tau, res.tau)


def test_changed_options_on_rerun_are_refused(done, task_stores):
    cfg, _ = done
    with pytest.raises(ConfigError, match="delete"):
        run_transfer(_cfg(task_stores, Path(cfg.out), seed=7))


def test_parse_task_spec():
    assert parse_task_spec("c10=runs/c10.zarr") == ("c10", "runs/c10.zarr")
    assert parse_task_spec("runs/c10.zarr") == (None, "runs/c10.zarr")
    assert parse_task_spec("s3://b/x.zarr?v=1") == (None, "s3://b/x.zarr?v=1")


@pytest.mark.parametrize("kw, msg", [
    (dict(stores=("a.zarr",)), "at least two stores"),
    (dict(stores=("x/a.zarr", "y/a.zarr")), "two stores get the task name 'a'"),
    (dict(stores=("FLOPs=a.zarr", "b.zarr")), "baseline row name"),
    (dict(stores=("a.zarr", "b.zarr"), program="best"), "--program must be one of"),
    (dict(stores=("a.zarr", "b.zarr"), mu=0), "--mu must be >= 1"),
    (dict(stores=("a.zarr", "b.zarr"), max_networks=1), "--max-networks"),
])
def test_config_errors(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        TransferConfig(out="o", **kw)


def test_default_names_from_file_names():
    cfg = TransferConfig(stores=("runs/c10.zarr", "c100=runs/other.zarr"), out="o")
    assert cfg.tasks == [("c10", "runs/c10.zarr"), ("c100", "runs/other.zarr")]


def test_an_invalid_evolved_program_is_reported_not_marked(task_stores, tmp_path, monkeypatch):
    import eznas_store.studies.transfer as transfer
    from eznas_store.programs.tree import Program
    from eznas_store.programs.formula import parse_formula

    bad = Program(tree=parse_formula("invert(zeros_like(wt))"))  # 1/0 on every network
    monkeypatch.setattr(transfer, "_evolve_task", lambda cfg, name, url: (bad, "evolved"))
    res = run_transfer(_cfg(task_stores, tmp_path / "o"))
    assert np.isnan(res.tau[:3]).all() and all(m == "" for row in res.marks[:3] for m in row)
    assert len(res.notes) == 3 and "found no valid program" in res.notes[0]
    assert "found no valid program" in format_transfer(res)
    assert "Note: the program evolved on ta" in (tmp_path / "o" / "transfer.md").read_text()


def test_cli_reuses_the_runs_and_prints_the_matrix(done, task_stores, capsys):
    """`eznas-store transfer` with the same options as the fixture's run finds its evolve runs."""
    from eznas_store.cli import main

    cfg, res = done
    argv = ["transfer", *[f"{n}={u}" for n, u in task_stores.items()], "--out", cfg.out,
            "--population", "4", "--mu", "2", "--lambda", "4", "--generations", "1", "--max-depth", "4",
            "--workers", "0", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "EZNAS-A" in printed and "transfer.png" in printed
    assert all(name in printed for name in task_stores)
