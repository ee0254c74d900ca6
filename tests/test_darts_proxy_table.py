"""``proxy-table --space darts``: DARTS genotypes into a proxies-only store, SWAP on SWAP's network and the
other proxies on the NetworkCIFAR skeleton, each proxy's network recorded in its card; the CSV export
carries the genotype. Tiny skeletons on 8x8 digits: no data outside the repository."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eznas_store.collect.proxies.networks import network_factory
from fixtures_data import darts_csv_cells
from fixtures_data import write_darts_csv as _write_darts_csv
from eznas_store.collect.proxies.runner import compute_all
from eznas_store.errors import ConfigError
from eznas_store.ingest.networks import proxy_network
from eznas_store.ingest.proxy_table import (
    DARTS_PROXY_C,
    DARTS_PROXY_N,
    ProxyTableConfig,
    collect_proxy_table,
    darts_proxies,
)
from eznas_store.sources.spaces import get_space
from eznas_store.sources.spaces import darts_genotype as dg
from eznas_store.store import open_store

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(dataset="digits", image_size=8, batch_size=4, device="cpu", progress=False, data_root=None,
            accuracy_column="cifar10_valid")
PROXIES = ("swap", "params", "meco", "nwot")


def write_darts_csv(path: Path, n: int = 5, seed: int = 0) -> tuple[Path, list[str]]:
    """The shared DARTS fixture, with its genotypes."""
    out = _write_darts_csv(path, n, seed)
    return out, darts_csv_cells(out)


def _cfg(tmp: Path, bench: Path, **kw) -> ProxyTableConfig:
    base = dict(store=str(tmp / "t.zarr"), benchmark=str(bench), space="darts", networks=None, proxies=PROXIES,
                channels=4, cells_per_stage=2, export=str(tmp / "t.csv")) | TINY
    return ProxyTableConfig(**(base | kw))


def test_darts_table_runs_swap_on_its_network_and_the_others_on_the_skeleton(tmp_path):
    bench, cells = write_darts_csv(tmp_path / "darts.csv")
    cfg = _cfg(tmp_path, bench)
    res = collect_proxy_table(cfg)
    assert res.done == len(cells)
    store = open_store(cfg.store)
    plan = store.plan
    assert plan.space == "darts" and (plan.C, plan.N) == (4, 2) and plan.label_sets == ()
    assert proxy_network(plan, "swap") == ("darts-swap", 3, 1)
    assert proxy_network(plan, "params") == ("darts", 4, 2)
    cards = store.group["proxy_value"].attrs["proxies"]
    assert cards["swap"]["network"] | {"description": ""} == {"space": "darts-swap", "skeleton": "swap", "C": 3,
                                                               "N": 1, "description": ""}
    assert cards["meco"]["network"]["skeleton"] == "eval" and cards["meco"]["network"]["C"] == 4
    # the stored values are the proxies of those networks, on the store's batch and per-network seed
    from eznas_store.collect import network_seed

    images = torch.from_numpy(store.data_batch())
    labels = torch.from_numpy(store.data_labels())
    values = store.proxy_values()
    names = [str(p) for p in values["proxy"].values]
    n = 2
    arch = plan.archs[n]
    swap = compute_all(network_factory("darts-swap", arch, num_classes=10), images[:4], labels[:4],
                       seed=network_seed(0, n), names=["swap"])["swap"][0]
    params = compute_all(network_factory("darts", arch, num_classes=10, C=4, N=2), images[:4], labels[:4],
                         seed=network_seed(0, n), names=["params"])["params"][0]
    row = values.values[n]
    assert row[names.index("swap")] == swap and row[names.index("params")] == params
    # the export carries the genotype and the accuracy, one column per proxy
    with open(cfg.export, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["index", "arch", "cifar10_valid"]
    assert {f"{p}@digits" for p in PROXIES} <= set(rows[0])
    assert sorted(r[1] for r in rows[1:]) == sorted(get_space("darts").canonical(c) for c in cells)
    meta = json.loads(Path(str(cfg.export)[:-4] + ".meta.json").read_text())
    assert meta["recipe"]["space"] == "darts" and meta["network"]["swap"]["space"] == "darts-swap"


def test_darts_skeleton_swap_puts_every_proxy_on_swaps_network(tmp_path):
    bench, _ = write_darts_csv(tmp_path / "darts.csv", n=3)
    cfg = _cfg(tmp_path, bench, skeleton="swap", channels=None, cells_per_stage=None, proxies=("swap", "params"))
    collect_proxy_table(cfg)
    plan = open_store(cfg.store).plan
    assert plan.space == "darts-swap" and (plan.C, plan.N) == (3, 1)
    assert proxy_network(plan, "params") == proxy_network(plan, "swap") == ("darts-swap", 3, 1)
    values = open_store(cfg.store).proxy_values()
    params = values.values[:, [str(p) for p in values["proxy"].values].index("params")]
    assert (params * 1e6 >= 310 - 250 - 1).all()  # the SWAP net without its head: >= 60 parameters


def test_darts_defaults():
    cfg = ProxyTableConfig(store="x.zarr", benchmark="b.csv", data_root="d", space="darts")
    assert cfg.label_sets == ("cifar10",) and cfg.batch_size == 16
    assert (cfg.channels, cfg.cells_per_stage) == (DARTS_PROXY_C, DARTS_PROXY_N)
    assert cfg.proxies == darts_proxies() and "swap" in cfg.proxies and "swap_reg" not in cfg.proxies
    assert {"params", "flops", "grasp", "synflow", "zen", "meco", "zico", "az_trainability"} <= set(cfg.proxies)
    nb = ProxyTableConfig(store="x.zarr", benchmark="b.csv", data_root="d")
    assert nb.batch_size == 64 and len(nb.label_sets) == 3 and nb.ingest.space == "nb201"


@pytest.mark.parametrize("kw, why", [
    (dict(label_sets=("cifar100",)), "one label set"),
    (dict(suitezero="zc.json"), "--suitezero"),
    (dict(space="nb301"), "--space"),
    (dict(space="nb201", skeleton="swap"), "--skeleton"),
    (dict(skeleton="big"), "unknown --skeleton"),
])
def test_darts_config_errors(kw, why):
    with pytest.raises(ConfigError, match=why):
        ProxyTableConfig(**(dict(store="x.zarr", benchmark="b.csv", data_root="d", space="darts") | kw))


def test_cli_darts_label_set_error_is_one_line(tmp_path, capsys):
    from eznas_store.cli import main

    bench, _ = write_darts_csv(tmp_path / "darts.csv", n=2)
    code = main(["proxy-table", "--space", "darts", "--store", str(tmp_path / "t.zarr"), "--benchmark", str(bench),
                 "--dataset", "digits", "--label-set", "cifar100"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and "label set" in err[0]


def test_cli_darts_collects_every_genotype_by_default(tmp_path):
    from eznas_store.cli import main

    bench, cells = write_darts_csv(tmp_path / "darts.csv", n=3)
    code = main(["proxy-table", "--space", "darts", "--store", str(tmp_path / "t.zarr"), "--benchmark", str(bench),
                 "--dataset", "digits", "--accuracy-column", "cifar10_valid", "--image-size", "8", "--batch-size", "4", "--proxy", "swap", "--proxy",
                 "flops", "--channels", "4", "--cells", "2", "--device", "cpu", "--no-progress",
                 "--export", str(tmp_path / "t.csv")])
    assert code == 0
    assert open_store(str(tmp_path / "t.zarr")).complete().sum() == len(cells)
