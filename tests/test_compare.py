"""Hand-crafted proxies in the store, `score --proxy`, `compare`, Suite-Zero agreement, score_model."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch

from eznas_store.cli import main
from eznas_store.studies.compare import compare_store, suitezero_agreement
from eznas_store.errors import StoreError
from eznas_store.ingest.driver import run_ingest
from eznas_store.ingest.networks import proxies_for_network
from eznas_store.collect.proxies.registry import PROXY_NAMES
from eznas_store.store.store import open_store

from conftest import tiny_ingest_config


def test_ingest_stores_every_proxy_for_every_network(tiny_store):
    s = open_store(tiny_store)
    table = s.proxy_table()
    assert table.dims == ("network", "proxy") and list(table["proxy"].values) == list(PROXY_NAMES)
    assert len(PROXY_NAMES) == 13
    reasons = s.proxy_reasons()
    assert (np.isfinite(table.values) | (reasons != "")).all()  # NaN always comes with a reason


def test_stored_proxies_equal_a_fresh_computation(tiny_store):
    s = open_store(tiny_store)
    data, labels = torch.from_numpy(s.data_batch()), torch.from_numpy(s.data_labels())
    fresh = proxies_for_network(s.plan, 4, data, labels, torch.device("cpu"))
    row = s.proxy_table().values[4]
    for j, name in enumerate(s.plan.proxies):
        assert fresh[name][0] == pytest.approx(row[j], rel=1e-9, nan_ok=True), name


def test_compare_lists_all_proxies_and_eznas_a(tiny_store, tmp_path, capsys):
    rows = compare_store(tiny_store)
    assert {r.name for r in rows} == set(PROXY_NAMES) | {"eznas-a"}
    assert main(["compare", tiny_store, "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    for name in (*PROXY_NAMES, "eznas-a"):
        assert name in text
    assert (tmp_path / "compare.png").stat().st_size > 0 and (tmp_path / "compare.csv").exists()


def test_score_proxy(tiny_store, capsys):
    assert main(["score", tiny_store, "--proxy", "synflow", "--proxy", "nwot"]) == 0
    out = capsys.readouterr().out
    assert "synflow on" in out and "nwot on" in out
    assert main(["score", tiny_store, "--proxy", "bogus"]) == 2


def test_store_without_proxies(tmp_path, tiny_bench):
    url = str(tmp_path / "s")
    run_ingest(tiny_ingest_config(url, tiny_bench, networks=3, proxies=False))
    assert open_store(url).proxy_table() is None
    with pytest.raises(StoreError, match="without hand-crafted proxies"):
        from eznas_store.studies.compare import proxy_scores

        proxy_scores(url, "synflow")


def test_suitezero_agreement_on_a_fixture(tiny_store, tmp_path):
    """A zc file holding our own values for the same cells agrees perfectly (rho = 1)."""
    from eznas_store.sources.spaces.nb201 import nb201_cell_to_key

    s = open_store(tiny_store)
    table = s.proxy_table()
    data = {"cifar10": {}}
    for n, arch in enumerate(s.plan.archs):
        rec = {name: {"score": float(table.values[n, j])} for j, name in enumerate(s.plan.proxies)
               if np.isfinite(table.values[n, j])}
        rec["val_accuracy"] = 90.0
        data["cifar10"][nb201_cell_to_key(arch)] = rec
    path = tmp_path / "zc_nasbench201.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump(data, f)
    agree = dict((name, rho) for name, _, rho in suitezero_agreement(tiny_store, str(path)))
    assert agree["synflow"] == pytest.approx(1.0)


def test_score_model_any_module():
    import eznas_store
    from torch import nn

    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4),
                        nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)),
                        nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    x = torch.randn(4, 3, 8, 8)
    a = eznas_store.score_model(net, x, "eznas-a")
    assert np.isfinite(a) and a == eznas_store.score_model(net, x, "eznas-a")
    assert np.isfinite(eznas_store.score_model(net, x, "synflow"))


def test_stored_proxies_do_not_depend_on_the_callers_thread_count(tiny_store):
    s = open_store(tiny_store)
    data, labels = torch.from_numpy(s.data_batch()), torch.from_numpy(s.data_labels())
    saved = torch.get_num_threads()
    try:
        vals = []
        for threads in (2, 1):
            torch.set_num_threads(threads)
            vals.append(proxies_for_network(s.plan, 2, data, labels, torch.device("cpu")))
    finally:
        torch.set_num_threads(saved)
    for name in s.plan.proxies:
        a, b = vals[0][name][0], vals[1][name][0]
        assert a == b or (np.isnan(a) and np.isnan(b)), name
