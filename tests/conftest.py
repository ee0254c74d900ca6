"""Shared fixtures: tiny benchmark tables and stores built by the real ingest code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#: a tiny NB201 skeleton (C=4, N=1) on 8×8 digits: every network collects in ~10 ms
TINY = dict(dataset="digits", C=4, N=1, image_size=8)


def shared_path(*parts: str) -> Path:
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} not found: this test reads the real data in ../shared/data (see SOURCES.md)")
    return p


def make_bench(path: Path, n: int = 12, seed: int = 0, column: str = "digits_test") -> Path:
    """A small benchmark CSV in the NB201 table format with made-up accuracies."""
    from eznas_store.sources.tables import write_benchmark
    from eznas_store.sources.spaces.nb201 import all_cells

    cells = list(all_cells())
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(cells), n, replace=False))
    archs = [cells[i] for i in pick]
    acc = rng.uniform(50, 95, n)
    write_benchmark(path, archs, {column: acc}, index=np.asarray(pick))
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module (bit-reproducible proxies; fair on a shared machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_bench(tmp_path: Path) -> Path:
    return make_bench(tmp_path / "bench.csv")


def tiny_ingest_config(store: str, bench: Path, **kw):
    from eznas_store.ingest.config import IngestConfig

    base = dict(store=store, benchmark=str(bench), networks=None, seed=0, batch_size=2,
                chunk_networks=3, progress=False, device="cpu")
    base.update(TINY)
    base.update(kw)
    return IngestConfig(**base)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory) -> str:
    """A complete tiny store of 12 networks (batch 2), shared read-only by tests."""
    from eznas_store.ingest.driver import run_ingest

    d = tmp_path_factory.mktemp("tiny")
    bench = make_bench(d / "bench.csv")
    url = str(d / "store.zarr")
    run_ingest(tiny_ingest_config(url, bench))
    return url


def tiny_ingest_cmd(store: str, bench: Path, *, chunk_networks: int) -> list[str]:
    """The CLI command that ingests what ``tiny_ingest_config`` describes, for subprocess tests."""
    import sys

    return [sys.executable, "-m", "eznas_store.cli", "ingest", "--store", store, "--dataset", "digits",
            "--benchmark", str(bench), "--batch-size", "2", "--chunk-networks", str(chunk_networks),
            "--channels", "4", "--cells", "1", "--image-size", "8", "--device", "cpu", "--no-progress"]


def store_arrays(url: str) -> dict[str, np.ndarray]:
    """Every per-network array a store holds (tensors, flags, params, FLOPs, proxies), loaded."""
    from eznas_store.store.store import open_store

    s = open_store(url)
    names = ["complete", "params", "flops", *s.meta["stored"]]
    if s.has_array("proxy_value"):
        names.append("proxy_value")
    return {n: s.column(n) for n in names}
