"""Store creation that cannot be half-done: a fingerprint first, tables committed as a unit.

Interruptions are made in-process and deterministically: the zarr store's k-th write
raises, for every write point k of a creation; then runs with other options (another
seed, another accuracy column) and the same options follow. No store may ever hold
another run's tables: a rerun is refused in one line naming the option, or its tables
equal a fresh store made with its own options.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import zarr
import zarr.storage

from eznas_store.errors import StoreError
from eznas_store.ingest.layout import create_or_open
from eznas_store.ingest.job import plan_ingest
from eznas_store.store.plan import CREATION, plan_fingerprint

from conftest import tiny_ingest_config

#: the rerun options: name → (IngestConfig overrides, the option a refusal must name)
OTHERS = {"seed": ({"seed": 7}, "collect.seed"),
          "column": ({"accuracy_column": "digits_valid"}, "accuracy_column")}


class Interrupted(Exception):
    """What the k-th write raises (a kill in the middle of creation)."""


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    """The plans (with data batch and labels) of the first run's options and of each rerun's."""
    from eznas_store.sources.spaces.nb201 import all_cells
    from eznas_store.sources.tables import write_benchmark

    d = tmp_path_factory.mktemp("creation")
    rng = np.random.default_rng(0)
    cells = list(all_cells())
    pick = sorted(rng.choice(len(cells), 6, replace=False))
    bench = d / "bench.csv"
    write_benchmark(bench, [cells[i] for i in pick],
                    {"digits_test": rng.uniform(50, 95, 6), "digits_valid": rng.uniform(50, 95, 6)},
                    index=np.asarray(pick))
    out = {"A": plan_ingest(tiny_ingest_config(str(d / "unused"), bench))}
    for name, (kw, _) in OTHERS.items():
        out[name] = plan_ingest(tiny_ingest_config(str(d / "unused"), bench, **kw))
    return out


def _create(url, planned):
    plan, batch, labels = planned
    return create_or_open(url, plan, data_batch=batch, data_labels=labels)


def _tables(url) -> dict[str, np.ndarray]:
    g = zarr.open_group(url, mode="r")
    return {n: g[n][...] for n in g.attrs[CREATION]["tables"]}


@pytest.fixture(scope="module")
def fresh(plans, tmp_path_factory):
    """Tables of a store made in one go, per option set."""
    d = tmp_path_factory.mktemp("fresh")
    out = {}
    for name, planned in plans.items():
        _create(str(d / name), planned)
        out[name] = _tables(str(d / name))
    return out


def _same_tables(url, want) -> bool:
    got = _tables(url)
    return set(got) == set(want) and all(
        np.array_equal(np.asarray(got[k], dtype=want[k].dtype), want[k]) for k in want)


def _interrupt_after(monkeypatch, k: int) -> None:
    """Make the zarr store's write number ``k`` (from 0) raise ``Interrupted``."""
    real = zarr.storage.LocalStore.set
    count = [0]

    async def write(self, key, value):
        count[0] += 1
        if count[0] > k:
            raise Interrupted(f"killed at write {k}")
        return await real(self, key, value)

    monkeypatch.setattr(zarr.storage.LocalStore, "set", write)


def _write_points(tmp_path, planned) -> int:
    real, n = zarr.storage.LocalStore.set, [0]

    async def write(self, key, value):
        n[0] += 1
        return await real(self, key, value)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(zarr.storage.LocalStore, "set", write)
        _create(str(tmp_path / "count"), planned)
    return n[0]


def _rerun_ok(url, planned, want, option: str | None) -> str:
    """Rerun with ``planned``: 'made' (its own tables) or 'refused' (one line naming ``option``)."""
    try:
        _create(url, planned)
    except StoreError as e:
        msg = str(e)
        assert "\n" not in msg and option is not None and repr(option) in msg, msg
        return "refused"
    assert _same_tables(url, want), "a store holds another run's tables"
    return "made"


def test_interrupted_creation_never_leaves_another_runs_tables(plans, fresh, tmp_path, monkeypatch):
    n = _write_points(tmp_path, plans["A"])
    assert n > 10
    outcomes = []
    for k in range(n):
        url = str(tmp_path / f"s{k}")
        with monkeypatch.context() as mp:
            _interrupt_after(mp, k)
            with pytest.raises(Interrupted):
                _create(url, plans["A"])
        made = [name for name, (_, option) in OTHERS.items()
                if _rerun_ok(url, plans[name], fresh[name], option) == "made"]
        # the first run's options again: repaired to its own tables, or refused as another's
        option = OTHERS[made[0]][1] if made else None
        outcomes.append((k, made, _rerun_ok(url, plans["A"], fresh["A"], option)))
    assert all(not made for k, made, _ in outcomes if k > 0)  # the fingerprint is the first write
    assert all(a == "made" for k, _, a in outcomes if k > 0)  # same options finish what was begun


def test_shard_with_other_options_finds_a_partial_store(plans, fresh, tmp_path, monkeypatch):
    """Shard A fills its tables but dies before the commit marker; B (another seed) comes next:
    refused, and so is A's partial table data never shown under B's name."""
    url = str(tmp_path / "s")
    real = zarr.storage.LocalStore.set

    async def die_at_commit(self, key, value):
        if key == "zarr.json" and b"tables_sha256" in value.to_bytes():
            raise Interrupted("killed at the commit marker")
        return await real(self, key, value)

    with monkeypatch.context() as mp:
        mp.setattr(zarr.storage.LocalStore, "set", die_at_commit)
        with pytest.raises(Interrupted):
            _create(url, plans["A"])
    with pytest.raises(StoreError, match="option 'accuracy_column' differs"):
        _create(url, plans["column"])
    # B's race win: B's fingerprint replaced A's before A's tables were committed
    g = zarr.open_group(url, mode="r+")
    g.attrs.update({CREATION: plan_fingerprint(plans["column"][0])})
    store = _create(url, plans["column"])
    assert _same_tables(url, fresh["column"])  # B rewrote the uncommitted tables as its own
    assert np.array_equal(store.group["accuracy"][...], fresh["column"]["accuracy"])
    with pytest.raises(StoreError, match="option 'accuracy_column' differs"):
        _create(url, plans["A"])


def test_committed_tables_that_changed_are_refused(plans, tmp_path):
    url = str(tmp_path / "s")
    _create(url, plans["A"])
    g = zarr.open_group(url, mode="r+")
    g["accuracy"][0] = -1.0
    with pytest.raises(StoreError, match="do not match their commit marker"):
        _create(url, plans["A"])


@pytest.mark.parametrize("what", ["files", "foreign_group", "v2_group", "file"])
def test_foreign_target_is_refused_before_anything_is_written(plans, tmp_path, what):
    url = tmp_path / "s"
    if what == "files":
        url.mkdir()
        (url / "notes.txt").write_text("mine")
    elif what == "foreign_group":
        g = zarr.open_group(str(url), mode="w", zarr_format=3, attributes={"tool": "other"})
        g.create_array("x", shape=(3,), dtype="int32")
    elif what == "v2_group":
        zarr.open_group(str(url), mode="w", zarr_format=2)
    else:
        url.write_text("a file")
    before = _snapshot(url)
    with pytest.raises(StoreError) as e:
        _create(str(url), plans["A"])
    assert "\n" not in str(e.value) and "refusing to create a store there" in str(e.value)
    assert _snapshot(url) == before


def test_foreign_directory_is_exit_2_through_the_cli(tmp_path, capsys):
    from eznas_store.cli.app import main

    url = tmp_path / "s"
    url.mkdir()
    (url / "notes.txt").write_text("mine")
    bench = tmp_path / "b.csv"
    from conftest import make_bench, tiny_ingest_cmd

    make_bench(bench)
    argv = tiny_ingest_cmd(str(url), bench, chunk_networks=3)[3:]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not an eznas store" in err
    assert sorted(os.listdir(url)) == ["notes.txt"]


def _snapshot(path) -> dict[str, bytes]:
    if path.is_file():
        return {"": path.read_bytes()}
    return {os.path.relpath(os.path.join(d, f), path): open(os.path.join(d, f), "rb").read()
            for d, _, files in os.walk(path) for f in files}


def test_fingerprint_is_the_first_write(plans, tmp_path, monkeypatch):
    url = tmp_path / "s"
    with monkeypatch.context() as mp:
        _interrupt_after(mp, 1)
        with pytest.raises(Interrupted):
            _create(str(url), plans["A"])
    meta = json.loads((url / "zarr.json").read_text())
    assert meta["attributes"][CREATION]["fingerprint"] == plan_fingerprint(plans["A"][0])["fingerprint"]
