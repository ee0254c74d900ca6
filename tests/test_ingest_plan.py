"""``ingest`` says what it will do before it does it, and refuses bad values up front.

The plan line (networks, estimated bytes on disk and time) comes before any collection;
a plan larger than the free disk is refused without ``--yes``; every out-of-range option
is one stderr line naming its flag, exit 2, and no store directory.
"""

from __future__ import annotations

import os
import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from conftest import make_bench, tiny_ingest_cmd, tiny_ingest_config
from eznas_store.cli import main
from eznas_store.errors import ConfigError
from eznas_store.ingest.estimate import (COMPRESSION_RATIO, IngestEstimate, check_estimate,
                                         estimate_ingest, free_disk_bytes)
from eznas_store.ingest.job import plan_ingest

Usage = namedtuple("Usage", "total used free")


def _argv(url: str, bench: Path, *extra: str) -> list[str]:
    return tiny_ingest_cmd(url, bench, chunk_networks=3)[3:] + list(extra)


def _tiny_disk(monkeypatch, free: int) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 * free + 1, 9 * free + 1, free))


def test_plan_over_the_free_disk_is_refused_without_yes(tmp_path, tiny_bench, capsys, monkeypatch):
    url = tmp_path / "s"
    _tiny_disk(monkeypatch, 1000)
    assert main(_argv(str(url), tiny_bench)) == 2
    out, err = capsys.readouterr()
    assert out.splitlines()[0].startswith("ingest plan: 12 networks")
    assert len(err.strip().splitlines()) == 1 and "--yes" in err and "free" in err
    assert not url.exists()

    assert main(_argv(str(url), tiny_bench, "--yes")) == 0
    out = capsys.readouterr().out.splitlines()
    plan, report = out[0], out[-1]
    assert plan.startswith("ingest plan: 12 networks, 0 already complete, 12 to collect")
    assert " MB on disk" in plan and "1.0 kB free" in plan and plan.count("about") == 2
    assert report.startswith("ingest shard 0/1: 12 networks collected")
    assert url.exists()


def test_plan_line_counts_what_a_store_already_holds(tiny_store, capsys):
    bench = Path(tiny_store).parent / "bench.csv"
    cfg = tiny_ingest_config(tiny_store, bench)
    plan = plan_ingest(cfg)[0]
    est = estimate_ingest(cfg, plan, free_bytes=10**12)
    assert (est.networks, est.shard_networks, est.complete, est.todo, est.bytes) == (12, 12, 12, 0, 0)
    assert "12 already complete, 0 to collect" in est.line()


def test_estimate_sizes_shards_and_skips_remote_disks(tmp_path, tiny_bench):
    cfg = tiny_ingest_config(str(tmp_path / "new"), tiny_bench, shard=(1, 2))
    plan = plan_ingest(cfg)[0]
    est = estimate_ingest(cfg, plan, free_bytes=10**12)
    # chunks of 3: shard 1/2 takes chunks 1 and 3, six networks
    assert (est.networks, est.shard_networks, est.complete) == (12, 6, 0)
    assert est.bytes == pytest.approx(6 * est.raw_bytes_per_network * COMPRESSION_RATIO, abs=1)
    assert est.seconds > 0 and est.fits and "(6 in this shard)" in est.line()
    assert not (tmp_path / "new").exists()

    remote = estimate_ingest(tiny_ingest_config("memory://plan-test", tiny_bench), plan)
    assert remote.free_bytes is None and remote.fits and "memory:// is not a local path" in remote.line()


@pytest.mark.parametrize("codec, ratio", [("lossless", COMPRESSION_RATIO), ("compact", 11 / 32),
                                          ("bitround:7", 16 / 32), ("sumround:3+zstd:9", 12 / 32)])
def test_estimate_plans_a_lossy_store_by_the_bits_it_keeps(tmp_path, tiny_bench, codec, ratio):
    cfg = tiny_ingest_config(str(tmp_path / "new"), tiny_bench, codec=codec)
    est = estimate_ingest(cfg, plan_ingest(cfg)[0], free_bytes=10**12)
    assert est.bytes == pytest.approx(12 * est.raw_bytes_per_network * ratio, abs=1)


def test_a_lossy_stores_tensors_fit_its_estimate(tmp_path, tiny_bench):
    """The (9 + K) / 32 ratio is an upper bound of what the rounded tensors take."""
    from eznas_store.ingest.driver import run_ingest
    from eznas_store.store.group import dir_bytes
    from eznas_store.store.store import open_store

    cfg = tiny_ingest_config(str(tmp_path / "s.zarr"), tiny_bench, codec="compact")
    est = estimate_ingest(cfg, plan_ingest(cfg)[0], free_bytes=10**12)
    run_ingest(cfg)
    stored = sum(dir_bytes(str(tmp_path / "s.zarr" / a)) for a in open_store(cfg.store).meta["stored"])
    assert 0 < stored <= est.bytes


def test_free_disk_is_read_from_the_nearest_existing_parent(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(shutil, "disk_usage", lambda p: seen.append(p) or Usage(3, 1, 2))
    assert free_disk_bytes(str(tmp_path / "a" / "b" / "s.zarr")) == (2, "")
    assert seen == [str(tmp_path)]
    assert free_disk_bytes("s3://bucket/s.zarr")[0] is None


def test_check_estimate_refuses_only_without_yes():
    est = IngestEstimate(store="s", networks=10, shard_networks=10, complete=0, raw_bytes_per_network=1e6,
                         bytes=10**7, seconds=1.0, free_bytes=10**6)
    with pytest.raises(ConfigError, match="--yes"):
        check_estimate(est, yes=False)
    check_estimate(est, yes=True)


@pytest.mark.parametrize("extra, flag", [
    (["--channels", "0"], "--channels"),
    (["--channels", "5000"], "--channels"),
    (["--cells", "0"], "--cells"),
    (["--cells", "100000"], "--cells"),
    (["--image-size", "0"], "--image-size"),
    (["--image-size", "4096"], "--image-size"),
    (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "5000"], "--batch-size"),
    (["--seed", "-1"], "--seed"),
    (["--chunk-networks", "-1"], "--chunk-networks"),
    (["--proxy-batch-size", "-1"], "--proxy-batch-size"),
    (["--networks", "0"], "--networks"),
    (["--networks", "-5"], "--networks"),
    (["--perturb-scale", "-1"], "--perturb-scale"),
    (["--structure", "xyz"], "--structure"),
])
def test_bad_values_are_one_line_before_any_store(tmp_path, tiny_bench, capsys, extra, flag):
    url = tmp_path / "s"
    assert main(_argv(str(url), tiny_bench, *extra)) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0], err
    assert "ingest plan" not in out
    assert not url.exists() and os.listdir(tmp_path) == ["bench.csv"]


@pytest.mark.parametrize("extra, flag", [
    (["--channels", "0"], "--channels"),
    (["--cells", "100000"], "--cells"),
    (["--image-size", "0"], "--image-size"),
    (["--batch-size", "0"], "--batch-size"),
    (["--seed", "-1"], "--seed"),
])
def test_label_refuses_the_same_bad_values(tmp_path, capsys, extra, flag):
    out = tmp_path / "labels.csv"
    assert main(["label", "--out", str(out), "--networks", "2", "--no-progress", *extra]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("kw, flag", [
    ({"C": 0}, "--channels"), ({"N": 100000}, "--cells"), ({"image_size": 0}, "--image-size"),
    ({"batch_size": 5000}, "--batch-size"),
])
def test_search_and_seeds_configs_bound_the_network_size(tmp_path, kw, flag):
    from eznas_store.archsearch.config import ArchSearchConfig
    from eznas_store.studies.seeds import SeedsConfig

    bench = make_bench(tmp_path / "b.csv")
    with pytest.raises(ConfigError, match=flag):
        ArchSearchConfig(proxy="synflow", benchmark=str(bench), dataset="digits", max_evaluations=5, **kw)
    with pytest.raises(ConfigError, match=flag):
        SeedsConfig(out=str(tmp_path / "o"), dataset="digits", benchmark=str(bench), **kw)
