"""The store: xarray readability, exact round trip of all 22 terminals, resume and shards."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import warnings

import numpy as np
import pytest
import torch

from eznas_store.errors import StoreError
from eznas_store.evaluate.chunk import iter_chunks, network_tensors, raw_to_terminals, read_chunk
from eznas_store.ingest.driver import run_ingest
from eznas_store.ingest.networks import collect_network
from eznas_store.store.store import open_store
from eznas_store.store.verify import store_summary
from eznas_store.terminals import TERMINALS

from conftest import store_arrays, tiny_ingest_cmd, tiny_ingest_config


def test_plain_xarray_reads_the_tables(tiny_store):
    import xarray as xr

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "consolidated metadata" fallback warning
        ds = xr.open_zarr(tiny_store)
    assert ds.sizes["network"] == 12
    assert ds["complete"].values.all()
    assert ds["accuracy"].dims == ("network",)
    assert ds["block_network"].dims == ("block",)
    assert set(ds["inpact_D"].dims) == {"network", "inpact_elem"}
    assert "eznas-store" in ds.attrs and ds.attrs["eznas-store"]["created_with"]["torch"]


def test_open_store_lists_terminals_and_every_block_has_them(tiny_store):
    s = open_store(tiny_store)
    assert s.terminals == TERMINALS and len(s.terminals) == 22
    for chunk in iter_chunks(s):
        for g in chunk.groups:
            assert set(g.terminals) == set(TERMINALS)
            for t in TERMINALS:
                assert g.terminals[t].shape[0] == g.size
        assert sum(g.size for g in chunk.groups) == int(chunk.n_blocks.sum())


def test_round_trip_equals_the_network(tiny_store):
    """Every terminal read back (derived ones included, P as P−D) equals a fresh collection."""
    s = open_store(tiny_store)
    data = torch.from_numpy(s.data_batch())
    from eznas_store.collect.statistics import collect
    from eznas_store.collect.statistics import network_seed
    from eznas_store.sources.spaces import get_space

    lo, hi = s.chunk_ranges()[1]
    chunk = read_chunk(s, lo, hi)
    for j, n in enumerate(range(lo, hi)):
        p = s.plan
        model = get_space(p.space).build(p.archs[n], num_classes=p.num_classes, C=p.C, N=p.N)
        fresh = collect(model, data, config=p.collect, init_seed=network_seed(p.collect.seed, n), full=True)
        got = chunk.network_blocks(j)
        assert len(got) == len(fresh.blocks)
        for g, f in zip(got, fresh.blocks):
            for t in TERMINALS:
                want = f.tensors[t]
                if t.endswith("_P"):
                    want = f.tensors[t] - f.tensors[t[:-1] + "D"]
                assert torch.equal(g[t], want), (n, t)


def test_lazy_accessor_and_raw_terminals(tiny_store):
    s = open_store(tiny_store)
    lazy = s.lazy(slice(0, 4))
    import dask.array as da

    assert isinstance(lazy["act_D"].data, da.Array)
    raw = network_tensors(s, 0)
    terms = raw_to_terminals(raw[0], s.plan.collect.structure)
    assert set(terms) == set(TERMINALS)


def test_info_agrees_with_the_benchmark(tiny_store):
    from eznas_store.sources.tables import read_benchmark

    s = open_store(tiny_store)
    table = read_benchmark(s.plan.benchmark)
    acc = table.column("digits_test")
    text = store_summary(s)
    assert "12 planned, 12 complete, 0 missing" in text
    assert f"max {acc.max():.2f}" in text and f"min {acc.min():.2f}" in text
    for a, arch in zip(s.accuracy(), s.plan.archs):
        assert a == acc[table.lookup(arch)]


def test_not_a_store_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="not an eznas store"):
        open_store(str(tmp_path / "nothing"))
    import zarr

    zarr.open_group(str(tmp_path / "plain"), mode="w", zarr_format=3)
    with pytest.raises(StoreError, match="not an eznas store"):
        open_store(str(tmp_path / "plain"))


def test_different_plan_is_refused(tmp_path, tiny_bench):
    run_ingest(tiny_ingest_config(str(tmp_path / "s"), tiny_bench, networks=3))
    with pytest.raises(StoreError, match="different configuration"):
        run_ingest(tiny_ingest_config(str(tmp_path / "s"), tiny_bench, networks=3, batch_size=1))


def test_shards_fill_one_store_equal_to_a_sequential_run(tmp_path, tiny_bench):
    run_ingest(tiny_ingest_config(str(tmp_path / "seq"), tiny_bench))
    for i in (1, 0, 2):
        run_ingest(tiny_ingest_config(str(tmp_path / "sh"), tiny_bench, shard=(i, 3)))
    a, b = store_arrays(str(tmp_path / "seq")), store_arrays(str(tmp_path / "sh"))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_rerun_skips_finished_networks(tmp_path, tiny_bench):
    url = str(tmp_path / "s")
    first = run_ingest(tiny_ingest_config(url, tiny_bench))
    again = run_ingest(tiny_ingest_config(url, tiny_bench))
    assert first.done == 12 and again.done == 0 and again.skipped == 12


def test_killed_ingest_resumes_to_the_same_store(tmp_path, tiny_bench):
    """SIGKILL a real ingest process mid-run, rerun it: equal to an uninterrupted run."""
    ref = str(tmp_path / "ref")
    run_ingest(tiny_ingest_config(ref, tiny_bench, chunk_networks=2))
    url = str(tmp_path / "killed")
    cmd = tiny_ingest_cmd(url, tiny_bench, chunk_networks=2)
    rng = np.random.default_rng(0)
    kills = 0
    for _ in range(3):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(float(rng.uniform(1.5, 4.0)))  # python+torch import takes ~1.5 s
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    a, b = store_arrays(ref), store_arrays(url)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_collect_network_is_what_ingest_stored(tiny_store):
    s = open_store(tiny_store)
    data = torch.from_numpy(s.data_batch())
    res = collect_network(s, 5, data, torch.device("cpu"))
    stored = network_tensors(s, 5)
    for blk, raw in zip(res.blocks, stored):
        for k, v in raw.items():
            assert torch.equal(blk.tensors[k], v), k


@pytest.mark.parametrize("scheme", ["memory", "file"])
def test_fsspec_urls(tmp_path, tiny_bench, scheme):
    from eznas_store.programs.registered import NAMED_PROGRAMS
    from eznas_store.fitness.engine import score_store

    url = f"memory://eznas-test/{tmp_path.name}/s.zarr" if scheme == "memory" else f"file://{tmp_path}/s.zarr"
    rep = run_ingest(tiny_ingest_config(url, tiny_bench, networks=4))
    s = open_store(url)
    assert rep.done == 4 and s.complete().all() and len(s.runs()) == 1
    assert "inpact_D" in s.dataset().data_vars
    assert score_store(url, [NAMED_PROGRAMS["eznas-a"]])[0].n_valid == 4


def test_corrupted_chunk_is_named_and_repaired(tmp_path, tiny_bench):
    """Garbage in one chunk file: verify names its networks, reads fail clearly, --redo-broken repairs."""
    import shutil
    from pathlib import Path

    from eznas_store.errors import CorruptChunkError
    from eznas_store.store.verify import verify_store

    url = str(tmp_path / "s")
    run_ingest(tiny_ingest_config(url, tiny_bench))
    ref = store_arrays(url)
    shutil.copytree(url, tmp_path / "ref")
    assert verify_store(open_store(url)).ok
    chunk_file = Path(url) / "act_N" / "c" / "1" / "0"
    assert chunk_file.is_file()
    chunk_file.write_bytes(b"not a blosc frame" * 10)
    s = open_store(url)
    rep = verify_store(s)
    lo, hi = s.chunk_ranges()[1]
    assert not rep.ok and sorted(rep.broken) == list(range(lo, hi))
    assert all("act_N" in " ".join(why) for why in rep.broken.values())
    with pytest.raises(CorruptChunkError, match="act_N"):
        read_chunk(s, lo, hi)
    assert main_cli(["verify", url]) == 1
    run_ingest(tiny_ingest_config(url, tiny_bench, redo_broken=True))
    assert verify_store(open_store(url)).ok
    after = store_arrays(url)
    for k in ref:
        np.testing.assert_array_equal(ref[k], after[k], err_msg=k)


def main_cli(argv):
    from eznas_store.cli import main

    return main(argv)


def test_two_shards_running_at_once_equal_a_sequential_run(tmp_path, tiny_bench):
    """Two ingest processes start together on a store that does not exist yet."""
    ref = str(tmp_path / "seq")
    run_ingest(tiny_ingest_config(ref, tiny_bench, chunk_networks=2))
    url = str(tmp_path / "par")
    base = tiny_ingest_cmd(url, tiny_bench, chunk_networks=2)
    procs = [subprocess.Popen(base + ["--shard", f"{i}/2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-500:]
    a, b = store_arrays(ref), store_arrays(url)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_shard_that_loses_the_create_race_joins_the_store(tmp_path, tiny_bench, monkeypatch):
    """The interleaving CI once hit: shard A looks (no store), shard B creates the root
    group, A's create then finds it. A must join B's store, not fail."""
    import zarr
    from zarr.core.group import AsyncGroup

    from eznas_store.ingest.job import plan_ingest
    from eznas_store.ingest.layout import create_or_open

    url = str(tmp_path / "s")
    plan, batch, labels = plan_ingest(tiny_ingest_config(url, tiny_bench))
    zarr.open_group(url, mode="w", zarr_format=3)  # shard B got there first
    real_open, calls = AsyncGroup.open, []

    async def open_before_b_created(*a, **k):  # what shard A saw a moment earlier
        calls.append(1)
        if len(calls) == 1:
            raise FileNotFoundError(url)
        return await real_open(*a, **k)

    monkeypatch.setattr(AsyncGroup, "open", open_before_b_created)
    monkeypatch.setattr("eznas_store.store.create.store_exists", lambda *a, **k: False)
    store = create_or_open(url, plan, data_batch=batch, data_labels=labels)
    assert calls and len(store.networks.arch) == 12 and not store.networks.complete.any()


def test_partial_store_of_another_plan_is_refused(tmp_path, tiny_bench):
    import zarr

    url = str(tmp_path / "s")
    g = zarr.open_group(url, mode="w", zarr_format=3)
    g.create_array("n_blocks", shape=(99,), chunks=(99,), dtype="int32", dimension_names=("network",))
    with pytest.raises(StoreError, match="partial store of another configuration"):
        run_ingest(tiny_ingest_config(url, tiny_bench))


def test_any_store_attributes_open_or_fail_clearly(tiny_store, tmp_path_factory):
    """1000 mutations of a real store's attributes: open_store succeeds or raises StoreError."""
    import copy
    import json as _json
    import shutil

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    import zarr

    url = str(tmp_path_factory.mktemp("attrs") / "s")
    shutil.copytree(tiny_store, url)
    meta = _json.loads(_json.dumps(dict(zarr.open_group(url, mode="r").attrs)["eznas-store"]))
    paths = [("format_version",), ("plan",), ("plan", "archs"), ("plan", "collect"), ("plan", "collect", "batch_size"),
             ("plan", "collect", "structure"), ("plan", "accuracies"), ("plan", "bench_index"), ("plan", "C"),
             ("layout",), ("layout", "chunk_networks"), ("terminals",), ("stored",), ("plan", "proxies")]
    json_values = st.recursive(st.none() | st.booleans() | st.integers(-3, 10**9) | st.floats(allow_nan=False)
                               | st.text(max_size=8), lambda c: st.lists(c, max_size=3)
                               | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=6)
    group = zarr.open_group(url, mode="r+", use_consolidated=False)

    @settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(st.sampled_from(paths), json_values | st.just("<delete>")), min_size=1, max_size=3))
    def check(edits):
        m = copy.deepcopy(meta)
        for path, value in edits:
            node = m
            for key in path[:-1]:
                node = node.get(key) if isinstance(node, dict) else None
            if isinstance(node, dict):
                if value == "<delete>":
                    node.pop(path[-1], None)
                else:
                    node[path[-1]] = value
        group.attrs["eznas-store"] = m
        try:
            open_store(url)
        except StoreError as e:
            assert "\n" not in str(e)

    try:
        check()
    finally:
        group.attrs["eznas-store"] = meta


def test_attribute_error_names_odd_keys_on_one_line(tiny_store, tmp_path):
    """Found by the property test: a key holding a newline once split the message in two."""
    import json as _json
    import shutil

    import zarr

    url = str(tmp_path / "s")
    shutil.copytree(tiny_store, url)
    group = zarr.open_group(url, mode="r+", use_consolidated=False)
    meta = _json.loads(_json.dumps(dict(group.attrs)["eznas-store"]))
    meta["plan"]["accuracies"] = {"\n": None}
    group.attrs["eznas-store"] = meta
    with pytest.raises(StoreError, match=r"plan\.accuracies\.'\\n': None is not of type 'array'") as e:
        open_store(url)
    assert "\n" not in str(e.value)
