"""One dataset format per space (issue 25): every proxy of the registry is storable where the 13
are; a proxies-only store (``ingest --no-statistics``, ``proxy-table``) is the same Zarr store
without statistics, per label set where the head matters, checksummed, verified, resumable per
network, read by compare, score --proxy, evolve --over proxies and plain xarray."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import make_bench, tiny_ingest_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_CLI = ["--dataset", "digits", "--image-size", "8", "--channels", "4", "--cells", "1", "--device", "cpu",
            "--no-progress"]
MODERN = ("az_expressivity", "az_progressivity", "az_trainability", "meco", "swap", "az_complexity", "zico",
          "swap_reg")
ZC_PROXIES = ("flops", "jacov", "synflow")
LABELS = ("cifar10_test", "cifar100_test", "imagenet16_test")


def run_cli(args: list[str]) -> int:
    from eznas_store.cli import main

    return main([str(a) for a in args])


def error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip() and "%|" not in line]


def nb201_sources(d: Path, n: int = 24, in_zc: int = 22) -> tuple[Path, Path, list[str]]:
    """A benchmark with the three label sets' columns over ``n`` NB201 cells, and a Suite-Zero
    file (tasks cifar10, ImageNet16-120) holding the first ``in_zc`` of them."""
    from eznas_store.sources.spaces import get_space
    from eznas_store.sources.tables import write_benchmark

    rng = np.random.default_rng(3)
    space = get_space("nb201")
    keys = sorted({str(tuple(int(x) for x in rng.choice([0, 1, 2, 3, 4], 6))) for _ in range(8 * n)})[:n]
    archs = [space.from_naslib_key(k) for k in keys]
    cols = {c: rng.uniform(10, 90, n) for c in LABELS}
    bench = write_benchmark(d / "bench.csv", archs, cols, index=np.arange(n))
    doc = {task: {k: {p: {"score": float(rng.normal())} for p in ZC_PROXIES} | {"val_accuracy": 50.0}
                  for k in keys[:in_zc]} for task in ("cifar10", "ImageNet16-120")}
    zc = d / "zc_nasbench201.json.gz"
    zc.write_bytes(gzip.compress(json.dumps(doc).encode()))
    return bench, zc, archs


@pytest.fixture(scope="module")
def proxies_only(tmp_path_factory) -> dict:
    """A proxies-only store of 20 NB201 cells given as a file, per label set, Suite-Zero joined,
    made by ``proxy-table`` on the command line (with its CSV export)."""
    d = tmp_path_factory.mktemp("proxies_only")
    bench, zc, archs = nb201_sources(d)
    cells = d / "cells.txt"
    cells.write_text("\n".join(archs[:20]) + "\n")
    url = d / "p.zarr"
    assert run_cli(["proxy-table", "--store", url, "--benchmark", bench, "--suitezero", zc, "--networks", cells,
                    "--batch-size", "4", "--export", d / "t.csv", *TINY_CLI]) == 0
    return {"url": str(url), "dir": d, "bench": bench, "zc": zc, "archs": archs[:20], "cells": cells}


# ----------------------------------------------------------------------------- ingest --proxy


def test_ingest_stores_modern_proxies_and_compare_lists_them_beside_the_13(tmp_path, capsys):
    from eznas_store.collect import PROXY_NAMES
    from eznas_store.store import open_store

    bench = make_bench(tmp_path / "bench.csv", n=6)
    url = tmp_path / "s.zarr"
    assert run_cli(["ingest", "--store", url, "--benchmark", bench, "--batch-size", "2", "--chunk-networks", "3",
                    "--proxy", "meco", "--proxy", "az_expressivity", *TINY_CLI]) == 0
    s = open_store(str(url))
    assert s.plan.proxies == (*PROXY_NAMES, "meco", "az_expressivity") and s.has_statistics
    table = s.proxy_table()
    assert table.dims == ("network", "proxy") and s.group["proxy_value"].shape == (6, 15)
    assert np.isfinite(table.sel(proxy="meco").values).all()
    cards = s.group["proxy_value"].attrs["proxies"]
    assert set(cards) == set(s.plan.proxies)
    assert {"summary", "protocol", "head", "images", "labels"} <= set(cards["meco"])
    assert "free" in cards["meco"]["head"] and "per label set" in cards["synflow"]["head"]
    capsys.readouterr()
    assert run_cli(["compare", url, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    names = {r["name"]: r["kind"] for r in rows}
    assert {"meco", "az_expressivity", *PROXY_NAMES} <= {n for n, k in names.items() if k == "proxy"}
    assert names["eznas-a"] == "program"


def test_ingest_no_statistics_of_20_cells_reads_everywhere(tmp_path, capsys):
    """``ingest --no-statistics`` (one label set, the dataset's head): plain xarray, verify, info,
    score --proxy and evolve --over proxies read it."""
    import xarray as xr

    bench = make_bench(tmp_path / "bench.csv", n=24)
    url = tmp_path / "p.zarr"
    assert run_cli(["ingest", "--store", url, "--benchmark", bench, "--no-statistics", "--no-proxies", "--proxy",
                    "meco", "--proxy", "zico", "--proxy", "synflow", "--networks", "20", "--batch-size", "4",
                    *TINY_CLI]) == 0
    ds = xr.open_zarr(str(url))
    assert ds["proxy_value"].dims == ("network", "proxy") and ds.sizes["network"] == 20
    assert list(ds["proxy"].values) == ["meco", "zico", "synflow"] and "act_D" not in ds
    assert run_cli(["verify", url]) == 0 and run_cli(["info", url]) == 0
    assert "proxies only" in capsys.readouterr().out
    assert run_cli(["score", url, "--proxy", "meco"]) == 0
    assert run_cli(["evolve", url, "--over", "proxies", "--out", tmp_path / "run", "--train-networks", "10",
                    "--generations", "1", "--population", "6", "--no-progress"]) == 0
    assert "nb201-digits:p[test]" in (tmp_path / "run" / "cross_problem" / "matrix.csv").read_text()


def test_changing_the_proxies_of_a_store_is_refused(tmp_path):
    from eznas_store.errors import StoreError
    from eznas_store.ingest.driver import run_ingest

    bench = make_bench(tmp_path / "bench.csv", n=3)
    url = str(tmp_path / "s.zarr")
    run_ingest(tiny_ingest_config(url, bench, proxies=False, proxy_names=("meco",), statistics=False))
    with pytest.raises(StoreError, match="option 'proxies' differs"):
        run_ingest(tiny_ingest_config(url, bench, proxies=False, proxy_names=("meco", "swap"), statistics=False))
    with pytest.raises(StoreError, match="option 'statistics' differs"):
        run_ingest(tiny_ingest_config(url, bench, proxies=False, proxy_names=("meco",)))


def test_options_checked_at_the_edge():
    from eznas_store.errors import ConfigError, UnknownNameError

    with pytest.raises(UnknownNameError, match="unknown proxy 'mecco'"):
        tiny_ingest_config("x.zarr", "b.csv", proxy_names=("mecco",))
    with pytest.raises(ConfigError, match="--no-statistics collects proxies only"):
        tiny_ingest_config("x.zarr", "b.csv", proxies=False, statistics=False)
    with pytest.raises(ConfigError, match="--label-set must be among"):
        tiny_ingest_config("x.zarr", "b.csv", label_sets=("svhn",))
    with pytest.raises(ConfigError, match="--suitezero joins"):
        tiny_ingest_config("x.zarr", "b.csv", suitezero="zc.json")


# ----------------------------------------------------------------------------- a proxies-only store


def test_proxies_only_store_opens_with_plain_xarray(proxies_only):
    import xarray as xr

    ds = xr.open_zarr(proxies_only["url"])
    assert ds["proxy_value"].dims == ("network", "proxy", "label_set")
    assert list(ds["label_set"].values) == ["cifar10", "cifar100", "imagenet16"]
    assert list(ds["label_set_classes"].values) == [10, 100, 120]
    assert list(ds["proxy"].values) == list(MODERN) and list(ds["arch"].values) == proxies_only["archs"]
    assert ds["suitezero_value"].dims == ("network", "suitezero_proxy", "label_set")
    assert not any(v.startswith(("act_", "raw_", "wt")) for v in ds.data_vars)
    assert "n_blocks" not in ds and "block_network" not in ds
    attrs = ds["proxy_value"].attrs
    assert attrs["long_name"] == "proxy value" and "label_set" in attrs["description"]
    assert set(attrs["head_free"]) == {"az_expressivity", "az_progressivity", "az_trainability", "meco", "swap"}
    assert attrs["proxies"]["zico"]["images"] == 8  # two batches of 4
    zico = ds["proxy_value"].sel(proxy="zico").values
    assert np.isfinite(zico).all() and zico.shape == (20, 3)


def test_head_free_proxies_repeat_and_per_head_ones_use_their_head(proxies_only):
    from eznas_store.collect import swap_regularised
    from eznas_store.collect.proxies.networks import nb201_factory
    from eznas_store.store import open_store

    s = open_store(proxies_only["url"])
    v = s.proxy_values()
    for p in ("az_expressivity", "meco", "swap"):
        col = v.sel(proxy=p).values
        assert np.array_equal(col[:, 0], col[:, 1], equal_nan=True) and np.array_equal(col[:, 0], col[:, 2],
                                                                                       equal_nan=True)
    assert (v.sel(proxy="az_complexity").values[:, 2] > v.sel(proxy="az_complexity").values[:, 0]).all()
    arch = s.plan.archs[0]
    for k, classes in enumerate((10, 100, 120)):
        params_k = sum(p.numel() for p in nb201_factory(arch, num_classes=classes, C=4, N=1)(0).parameters()) / 1e3
        want = swap_regularised(float(v.sel(proxy="swap").values[0, k]), params_k)
        assert v.sel(proxy="swap_reg").values[0, k] == pytest.approx(want, rel=1e-12)


def test_verify_info_compare_score_and_evolve_read_it(proxies_only, capsys):
    url, d = proxies_only["url"], proxies_only["dir"]
    capsys.readouterr()
    assert run_cli(["verify", url]) == 0
    assert "OK" in capsys.readouterr().out
    assert run_cli(["info", url]) == 0
    out = capsys.readouterr().out
    assert "proxies only" in out and "label sets   cifar10 (10 classes" in out and "joined       3" in out
    assert run_cli(["compare", url, "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert set(MODERN) <= set(rows) and {rows[p]["kind"] for p in ZC_PROXIES} == {"joined"}
    assert "eznas-a" not in rows and rows["zico"]["label"] == "cifar10_test"
    assert run_cli(["score", url, "--proxy", "zico", "--proxy", "synflow", "--accuracy-column", "imagenet16_test"]) == 0
    assert "zico" in capsys.readouterr().out
    assert run_cli(["evolve", url, "--over", "proxies", "--out", d / "run", "--train-networks", "10",
                    "--generations", "2", "--population", "8", "--seed", "1", "--no-progress"]) == 0
    matrix = (d / "run" / "cross_problem" / "matrix.csv").read_text()
    assert all(f"nb201-{s}:p[test]" in matrix for s in ("cifar10", "cifar100", "imagenet16"))


def test_readers_that_need_statistics_refuse_it_in_one_line(proxies_only, capsys):
    url = proxies_only["url"]
    capsys.readouterr()
    assert run_cli(["score", url, "--program", "eznas-a", "--no-progress"]) == 2
    err = error_lines(capsys)
    assert len(err) == 1 and "proxies only (no statistics)" in err[0], err
    assert run_cli(["compare", url, "--program", "eznas-a"]) == 2
    err = error_lines(capsys)
    assert len(err) == 1 and "proxies only" in err[0], err
    assert run_cli(["transcode", url, proxies_only["dir"] / "t.zarr"]) == 2
    err = error_lines(capsys)
    assert len(err) == 1 and "holds proxies only" in err[0], err


def test_every_array_describes_itself(proxies_only):
    """As in a store with statistics: long_name, description, dims, and the network coordinates
    that exist in this store (no n_blocks)."""
    import zarr

    g = zarr.open_group(proxies_only["url"], mode="r")
    for name, a in g.arrays():
        attrs = dict(a.attrs)
        assert attrs.get("long_name") and attrs.get("description"), name
        dims = a.metadata.dimension_names
        assert dims and len(dims) == a.ndim, name
        if "network" in dims and name not in ("arch", "bench_index"):
            assert attrs["coordinates"] == "arch bench_index", name


def test_problems_are_one_per_label_set_over_the_same_cells(proxies_only):
    from eznas_store.fitness.problems import load_problems, split_problem

    problems = load_problems(proxies_only["url"])
    assert [p.name for p in problems] == ["nb201-cifar10:p", "nb201-cifar100:p", "nb201-imagenet16:p"]
    assert len({p.archs for p in problems}) == 1
    assert set(problems[0].columns) == {*MODERN, *ZC_PROXIES}
    tests = [split_problem(p, 10, 0)[1].archs for p in problems]
    assert tests[0] == tests[1] == tests[2]


def test_the_csv_export_reads_as_the_same_problems(proxies_only):
    from eznas_store.fitness.problems import load_problems
    from eznas_store.sources import is_proxy_table

    csv = proxies_only["dir"] / "t.csv"
    assert is_proxy_table(csv)
    from_store, from_csv = load_problems(proxies_only["url"]), load_problems(str(csv))
    assert [p.name.split(":")[0] for p in from_csv] == [p.name.split(":")[0] for p in from_store]
    for a, b in zip(from_store, from_csv):
        assert a.archs == b.archs and set(a.columns) == set(b.columns)
        assert all(np.array_equal(a.columns[k], b.columns[k]) for k in a.columns)
        assert np.array_equal(a.accuracy, b.accuracy)


def test_a_sample_is_drawn_from_the_cells_suitezero_holds(tmp_path):
    from eznas_store.ingest.proxy_table import ProxyTableConfig
    from eznas_store.ingest.job import plan_store

    bench, zc, archs = nb201_sources(tmp_path, n=24, in_zc=12)
    cfg = ProxyTableConfig(store=str(tmp_path / "x.zarr"), benchmark=str(bench), data_root=None, suitezero=str(zc),
                           dataset="digits", networks=12, batch_size=4, image_size=8, channels=4, cells_per_stage=1)
    planned = plan_store(cfg.ingest)
    assert set(planned.plan.archs) == set(archs[:12])
    assert np.isfinite(planned.suitezero_values).all()


# ----------------------------------------------------------------------------- resume, repair


def test_a_killed_collection_resumes_with_the_next_network(tmp_path, monkeypatch):
    """Each network is written as it finishes: a run killed at the 5th network keeps 4, and the
    rerun computes only the rest."""
    import eznas_store.ingest.proxies_only as po
    from eznas_store.ingest.driver import run_ingest
    from eznas_store.store import open_store

    bench = make_bench(tmp_path / "bench.csv", n=8)
    cfg = tiny_ingest_config(str(tmp_path / "p.zarr"), bench, proxies=False, proxy_names=("meco", "az_complexity"),
                             statistics=False, chunk_networks=4)
    real, calls = po.network_proxies, []

    def dies_at_the_fifth(plan, n, *args):
        calls.append(n)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(plan, n, *args)

    monkeypatch.setattr(po, "network_proxies", dies_at_the_fifth)
    with pytest.raises(KeyboardInterrupt):
        run_ingest(cfg)
    assert open_store(cfg.store).complete().tolist() == [True] * 4 + [False] * 4
    calls.clear()
    monkeypatch.setattr(po, "network_proxies", lambda plan, n, *a: calls.append(n) or real(plan, n, *a))
    rep = run_ingest(cfg)
    assert calls == [4, 5, 6, 7] and (rep.done, rep.skipped) == (4, 4)
    assert open_store(cfg.store).complete().all()


def test_verify_finds_a_damaged_chunk_and_redo_broken_repairs_it(proxies_only, tmp_path, capsys):
    import shutil

    from eznas_store.store import open_store

    url = str(tmp_path / "copy.zarr")
    shutil.copytree(proxies_only["url"], url)
    before = open_store(url).proxy_values().values
    chunk = Path(url, "proxy_value", "c", "0", "0", "0")
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    capsys.readouterr()
    assert run_cli(["verify", url]) == 1
    assert "chunk proxy_value/0.0.0" in capsys.readouterr().out
    assert run_cli(["proxy-table", "--store", url, "--benchmark", proxies_only["bench"], "--suitezero",
                    proxies_only["zc"], "--networks", proxies_only["cells"], "--batch-size", "4", *TINY_CLI]) == 0
    assert run_cli(["verify", url]) == 1  # proxy-table alone does not redo complete networks
    assert run_cli(["proxy-table", "--store", url, "--benchmark", proxies_only["bench"], "--suitezero",
                    proxies_only["zc"], "--networks", proxies_only["cells"], "--batch-size", "4", "--redo-broken",
                    *TINY_CLI]) == 0
    assert run_cli(["verify", url]) == 0
    assert np.array_equal(open_store(url).proxy_values().values, before, equal_nan=True)


# ----------------------------------------------------------------------------- old stores, defaults


def test_a_store_without_label_sets_reads_as_one_label_set(tiny_store):
    """Stores written before label sets (proxy_value of dims network x proxy) open as they were
    and read as one label set named for their dataset; their plan JSON has none of the new keys."""
    from eznas_store.fitness.problems import load_problems
    from eznas_store.store import open_store, plan_to_json

    s = open_store(tiny_store)
    assert s.group["proxy_value"].metadata.dimension_names == ("network", "proxy")
    v = s.proxy_values()
    assert v.dims == ("network", "proxy", "label_set") and list(v["label_set"].values) == ["digits"]
    assert np.array_equal(v.values[..., 0], s.proxy_table().values, equal_nan=True)
    assert not {"statistics", "label_sets", "suitezero", "suitezero_proxies"} & set(plan_to_json(s.plan))
    (p,) = load_problems(tiny_store)
    assert p.name.startswith("nb201-digits:")


def test_no_cli_default_names_a_path_outside_the_package():
    """No option of any command defaults to a file or folder the user does not have (such as
    ``../shared/data/...``): data paths are required or come from the user."""
    import typer.main

    from eznas_store.cli import app

    group = typer.main.get_command(app)
    found = []
    for name, cmd in group.commands.items():
        for param in cmd.params:
            defaults = param.default if isinstance(param.default, (list, tuple)) else [param.default]
            for value in defaults:
                if isinstance(value, str) and ("shared" in value or value.startswith(("/", "..", "~"))
                                               or "/data/" in value):
                    found.append(f"{name} {param.name}={value!r}")
    assert not found, found
