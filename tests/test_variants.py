"""Statistic variants of the paper's Fig. 3 end to end: R-C-B/mean, C-B-R/mean, C-B-R/L2
collected, evolved and compared in one report (``eznas-store report RUN... --out``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from eznas_store.cli import main
from eznas_store.evolution.evolve import EvolveConfig, run_evolve
from eznas_store.ingest.driver import run_ingest
from eznas_store.report.comparison import variant_label
from eznas_store.report.runs import read_run, score_correlations

from conftest import make_bench, tiny_ingest_config

SMALL = dict(population=6, mu=4, lambda_=6, generations=1, max_depth=4, workers=0, progress=False)


@pytest.fixture(scope="module")
def variant_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("variants")
    bench = make_bench(root / "bench.csv", n=8)
    stores = {}
    for structure in ("rcb", "cbr"):
        stores[structure] = str(root / f"store-{structure}")
        run_ingest(tiny_ingest_config(stores[structure], bench, structure=structure))
    runs = []
    for structure, to_scalar in (("rcb", "mean"), ("cbr", "mean"), ("cbr", "l2")):
        out = root / f"{structure}-{to_scalar}"
        run_evolve(EvolveConfig(stores=(stores[structure],), out=str(out), to_scalar=to_scalar, seed=1, **SMALL))
        runs.append(out)
    return root, runs


def test_cbr_and_rcb_stores_hold_different_statistics(variant_runs):
    from eznas_store.evaluate.chunk import network_tensors
    from eznas_store.store.store import open_store

    root, _ = variant_runs
    a, b = open_store(str(root / "store-rcb")), open_store(str(root / "store-cbr"))
    assert (a.plan.collect.structure, b.plan.collect.structure) == ("rcb", "cbr")
    # same cells, same seed, same batch: only the unit's order differs, so the statistics do
    n = int(np.argmax(a.networks.n_blocks.values))
    ra, rb = network_tensors(a, n), network_tensors(b, n)
    assert len(ra) == len(rb) > 0
    assert any(not np.array_equal(x[k].numpy(), y[k].numpy()) for x, y in zip(ra, rb) for k in x)


def test_runs_are_named_after_their_variant(variant_runs):
    _, runs = variant_runs
    assert [variant_label(read_run(r)) for r in runs] == [
        "EZNAS-(R-C-B)-(Mean)", "EZNAS-(C-B-R)-(Mean)", "EZNAS-(C-B-R)-(L2)"]


def test_l2_runs_save_l2_programs(variant_runs):
    _, runs = variant_runs
    assert read_run(runs[2]).programs["best_final"].to_scalar == "l2"
    assert read_run(runs[0]).programs["best_final"].to_scalar == "mean"


def test_one_report_compares_the_variants(variant_runs, capsys):
    root, runs = variant_runs
    out = root / "cmp"
    assert main(["report", *map(str, runs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "EZNAS-(C-B-R)-(L2)" in printed and "comparison" in printed
    table = pd.read_csv(out / "comparison.csv")
    assert list(table["variant"]) == ["EZNAS-(R-C-B)-(Mean)", "EZNAS-(C-B-R)-(Mean)", "EZNAS-(C-B-R)-(L2)"]
    for run, (_, row) in zip(runs, table.iterrows()):
        rec = read_run(run)
        task = rec.task_names()[0]
        expect = score_correlations(rec.scores["best_final"], [task])["tau"][task]
        got = row[f"tau {task}"]
        assert (np.isnan(expect) and np.isnan(got)) or got == pytest.approx(expect)
    assert (out / "plots" / "comparison_fitness.png").stat().st_size > 1000
    md = (out / "comparison.md").read_text()
    assert md.count("EZNAS-(") >= 3 and "comparison_fitness.png" in md


def test_several_runs_need_out(variant_runs):
    _, runs = variant_runs
    assert main(["report", str(runs[0]), str(runs[1])]) == 2
