"""The pipeline on DARTS cells: ingest, verify, score, compare, evolve beside NB201, search the table.

A tiny DARTS skeleton (C=4, L=3: reductions at cells 1 and 2) on 8×8 digits, batch 1, over
8 random genotypes of a header-less CSV written like ``darts_1000_cifar10_valid.csv``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_path
from fixtures_data import write_darts_csv

from eznas_store.collect.proxies.networks import network_factory
from eznas_store.collect.proxies.registry import PROXY_NAMES
from eznas_store.collect.proxies.runner import compute_all
from eznas_store.errors import ConfigError
from eznas_store.ingest.config import IngestConfig
from eznas_store.ingest.driver import run_ingest
from eznas_store.ingest.layout import plan_layout
from eznas_store.programs.registered import NAMED_PROGRAMS
from eznas_store.fitness.engine import score_store
from eznas_store.archsearch.config import ArchSearchConfig, searchable_spaces
from eznas_store.archsearch.run import run_search
from eznas_store.archsearch.table_space import table_space
from eznas_store.evolution.evolve import EvolveConfig, run_evolve
from eznas_store.sources.spaces import get_space
from eznas_store.sources.spaces import darts_genotype as dg
from eznas_store.sources.tables import read_benchmark
from eznas_store.store.store import open_store
from eznas_store.store.verify import verify_store
from eznas_store.studies.compare import compare_store, suitezero_agreement
from eznas_store.studies.seeds import SeedsConfig, run_seeds
from eznas_store.studies.transfer import TransferConfig, format_transfer, run_transfer

#: the tiny DARTS skeleton: every network collects in well under a second
DARTS_TINY = dict(space="darts", dataset="digits", C=4, N=3, image_size=8, batch_size=1,
                  accuracy_column="cifar10_valid", device="cpu", progress=False)
N_GENOTYPES = 8
EVOLVE = dict(population=4, mu=2, lambda_=4, generations=1, max_depth=4, workers=0, progress=False)




@pytest.fixture(scope="module")
def darts_bench(tmp_path_factory) -> Path:
    return write_darts_csv(tmp_path_factory.mktemp("darts") / "darts_tiny.csv", n=N_GENOTYPES)


@pytest.fixture(scope="module")
def darts_store(darts_bench, tmp_path_factory) -> str:
    url = str(tmp_path_factory.mktemp("darts_store") / "store.zarr")
    run_ingest(IngestConfig(store=url, benchmark=str(darts_bench), chunk_networks=3, **DARTS_TINY))
    return url


def test_the_13_proxies_on_two_tiny_genotypes():
    space = get_space("darts")
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 0, 1])
    for k in range(2):
        factory = network_factory("darts", space.random_cell(np.random.default_rng(k)), num_classes=10, C=4, N=3)
        values = compute_all(factory, x, y, seed=k)
        assert sorted(values) == sorted(PROXY_NAMES)
        for name, (v, why) in values.items():
            assert math.isfinite(v) or why, f"{name}: NaN without a reason"
        assert sum(math.isfinite(v) for v, _ in values.values()) == len(PROXY_NAMES)


def test_ingest_fills_and_verifies(darts_store, darts_bench):
    s = open_store(darts_store)
    assert s.plan.space == "darts" and (s.plan.C, s.plan.N) == (4, 3)
    assert s.complete().all() and len(s.plan.archs) == N_GENOTYPES
    assert s.plan.accuracy_column == "cifar10_valid"
    table = read_benchmark(darts_bench)
    assert set(s.plan.archs) == set(table.archs)
    assert not verify_store(s, plan_layout(s.plan)).broken
    proxies = s.proxy_table()
    assert [str(p) for p in proxies["proxy"].values] == list(PROXY_NAMES)


def test_score_and_compare(darts_store):
    res = score_store(darts_store, [NAMED_PROGRAMS["eznas-a"]])[0]
    assert res.scores.shape[-1] == N_GENOTYPES
    rows = compare_store(darts_store)
    names = [r.name for r in rows]
    assert set(PROXY_NAMES) <= set(names) and "eznas-a" in names
    assert all(r.label == "cifar10_valid" and r.n == N_GENOTYPES for r in rows)


def test_evolve_over_an_nb201_and_a_darts_store(tiny_store, darts_store, tmp_path):
    res = run_evolve(EvolveConfig(stores=(tiny_store, darts_store), out=str(tmp_path / "run"), seed=0,
                                  **EVOLVE))
    meta = res.best_final.meta
    assert [t.split("-")[0] for t in meta["tasks"]] == ["nb201", "darts"]
    assert meta["fitness"] == min(meta["taus"])  # the worse task decides


def test_transfer_across_an_nb201_and_a_darts_store(tiny_store, darts_store, tmp_path):
    res = run_transfer(TransferConfig(stores=(f"nb={tiny_store}", f"da={darts_store}"), out=str(tmp_path / "t"),
                                      **EVOLVE))
    text = format_transfer(res)
    assert "evolved on da" in text and "evolved on nb" in text
    assert (tmp_path / "t" / "transfer.csv").is_file()


def test_cross_space_transfer_matrix_holds_together(tiny_store, darts_store, tmp_path):
    """Evolve on NB201 and on DARTS (block shapes, batch and block counts all differ), test each
    program on both: the diagonal is each run's own fitness, every baseline is finite on both."""
    nb, da = open_store(tiny_store), open_store(darts_store)
    assert nb.plan.space == "nb201" and da.plan.space == "darts"
    assert nb.plan.collect.batch_size != da.plan.collect.batch_size
    shapes = {}
    for key, s in (("nb", nb), ("da", da)):
        bt = s.block_table()
        shapes[key] = set(zip(bt["c_in"].tolist(), bt["h_in"].tolist(), bt["kernel"].tolist()))
    assert shapes["nb"] != shapes["da"]
    res = run_transfer(TransferConfig(stores=(f"nb={tiny_store}", f"da={darts_store}"),
                                      out=str(tmp_path / "t"), seed=1, **EVOLVE))
    assert res.columns == ("nb", "da") and list(res.n) == [12, N_GENOTYPES]
    for i, name in enumerate(res.columns):
        fitness = res.programs[name].meta.get("fitness")
        if fitness is not None and math.isfinite(fitness):
            assert res.tau[i, i] == pytest.approx(fitness, abs=1e-9)
    for base in ("FLOPs", "params", "EZNAS-A"):
        assert all(math.isfinite(res.cell(base, c)) for c in res.columns), base
    again = run_transfer(TransferConfig(stores=(f"nb={tiny_store}", f"da={darts_store}"),
                                        out=str(tmp_path / "t"), seed=1, **EVOLVE))
    assert set(again.evolve_status.values()) == {"reused"}
    np.testing.assert_array_equal(again.tau, res.tau)


def test_seeds_on_darts_genotypes(darts_bench, tmp_path):
    cfg = SeedsConfig(out=str(tmp_path / "seeds"), benchmark=str(darts_bench), networks=4, seeds=2, first_seed=1,
                      **{k: v for k, v in DARTS_TINY.items() if k != "progress"}, progress=False)
    res = run_seeds(cfg)
    assert len(res.runs) == 4 and all(r.n == 4 for r in res.runs)
    assert all(set(r.archs) <= set(read_benchmark(darts_bench).archs) for r in res.runs)


def test_darts_is_searched_over_the_table_cells(darts_bench, tmp_path):
    assert "darts" in searchable_spaces() and "nb201" in searchable_spaces()
    space = table_space(get_space("darts"), read_benchmark(darts_bench))
    assert space.searchable and space.n_cells == N_GENOTYPES
    rng = np.random.default_rng(0)
    cells = set(read_benchmark(darts_bench).archs)
    for _ in range(20):
        parent = space.random_cell(rng)
        child = space.mutate(parent, rng)
        assert parent in cells and child in cells and child != parent
    cfg = ArchSearchConfig(proxy="synflow", benchmark=str(darts_bench), max_evaluations=4, population=3, sample=2,
                       seed=0, batch_size=2, out=str(tmp_path / "s"), **{k: v for k, v in DARTS_TINY.items()
                                                                            if k != "batch_size"})
    result = run_search(cfg)
    assert result.evaluations == 4 and result.cell in cells
    assert result.rank is not None and math.isfinite(result.accuracy)
    assert all(ev.cell in cells for ev in result.history)
    assert (tmp_path / "s" / "search.json").is_file()


def test_search_cli_with_space_darts(darts_bench, tmp_path, capsys):
    from eznas_store.cli import main

    rc = main(["search", "--space", "darts", "--proxy", "params", "--benchmark", str(darts_bench),
               "--max-evaluations", "3", "--population", "2", "--sample", "1", "--dataset", "digits",
               "--image-size", "8", "--channels", "4", "--cells", "3", "--batch-size", "1",
               "--accuracy-column", "cifar10_valid", "--device", "cpu", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0 and "Aging evolution on darts" in out and "rank" in out and "of 8" in out


def test_ingest_without_a_table_samples_random_genotypes(tmp_path):
    from eznas_store.ingest.job import plan_ingest

    cfg = IngestConfig(store=str(tmp_path / "s.zarr"), networks=3, **{**DARTS_TINY, "accuracy_column": None})
    plan, _, _ = plan_ingest(cfg)
    assert len(set(plan.archs)) == 3 and plan.bench_index == (-1, -1, -1)
    assert plan.accuracy_column == "none"
    with pytest.raises(ConfigError, match="cannot be enumerated"):
        plan_ingest(IngestConfig(store=str(tmp_path / "a.zarr"), **{**DARTS_TINY, "accuracy_column": None}))


def test_table_space_needs_two_cells(tmp_path):
    with pytest.raises(ConfigError, match="at least 2"):
        table_space(get_space("darts"), read_benchmark(write_darts_csv(tmp_path / "one.csv", n=1)))


def test_nearest_table_cell_is_one_edge_away_when_listed(tmp_path):
    rng = np.random.default_rng(3)
    base = dg.random_cell(rng)
    near = dg.mutate(base, rng)
    far = dg.random_cell(np.random.default_rng(99))
    path = tmp_path / "three.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([[base, "70"], [near, "71"], [far, "72"]])
    space = table_space(get_space("darts"), read_benchmark(path))
    assert dg.distance(base, near) == 2
    assert all(space.mutate(base, rng) == near for _ in range(5))


def test_real_darts_table_is_searchable():
    table = read_benchmark(shared_path("darts", "darts_1000_cifar10_valid.csv"))
    space = table_space(get_space("darts"), table)
    assert space.n_cells == 1000
    child = space.mutate(space.cell_at(0), np.random.default_rng(0))
    assert child in set(space.cell_at(i) for i in range(1000))


def test_suitezero_nb301_keys_meet_a_store_of_their_cells(tmp_path):
    from eznas_store.sources.suitezero import read_zc

    zc_path = shared_path("suite-zero", "prerelease-2022-05", "zc_nasbench301.json.gz")
    zc = read_zc(zc_path)["cifar10"]
    url = str(tmp_path / "nb301.zarr")
    run_ingest(IngestConfig(store=url, benchmark=str(zc_path), networks=4, chunk_networks=2,
                            **{**DARTS_TINY, "accuracy_column": None}))
    s = open_store(url)
    assert s.plan.accuracy_column == "val_accuracy" and set(s.plan.archs) <= set(zc.archs)
    agreement = {name: (n, rho) for name, n, rho in suitezero_agreement(url, str(zc_path))}
    assert agreement["synflow"][0] == 4 and math.isfinite(agreement["synflow"][1])
