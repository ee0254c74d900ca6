"""``verify`` checks the tables against their commit marker, the plan and the benchmark file.

Issue 11: a store must never report labels its benchmark does not hold. Each test changes
one thing a careless or unlucky user could change (the benchmark CSV edited or regenerated
at the same path, moved away, a table rewritten in the store) and checks that ``verify``
names it and exits 1, and that an untouched store still passes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import make_bench, tiny_ingest_config

from eznas_store.cli import app
from eznas_store.ingest.benchmark_check import check_benchmark
from eznas_store.sources.tables import read_benchmark, write_benchmark
from eznas_store.store.store import open_store


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[str, Path]:
    """A tiny complete store and the benchmark it was made from (a private copy each module)."""
    from eznas_store.ingest.driver import run_ingest

    d = tmp_path_factory.mktemp("tables")
    bench = make_bench(d / "bench.csv", n=6, seed=3)
    url = str(d / "store.zarr")
    run_ingest(tiny_ingest_config(url, bench, chunk_networks=2))
    return url, bench


@pytest.fixture
def copy(made, tmp_path) -> tuple[str, Path]:
    """A copy of ``made`` whose benchmark lives beside it at the path its plan records."""
    url, bench = made
    return shutil.copytree(url, tmp_path / "store.zarr"), bench


def _verify(url: str, *extra: str):
    return CliRunner().invoke(app, ["verify", str(url), *extra])


def _rewrite(bench: Path, dest: Path, *, column=None, arch_at=None) -> Path:
    """``bench`` written to ``dest`` with one accuracy or one cell changed."""
    t = read_benchmark(bench)
    cols = {c: np.array(v, dtype=float) for c, v in t.columns.items()}
    archs = list(t.archs)
    if column is not None:
        cols[column][1] += 0.5
    if arch_at is not None:
        archs[arch_at], archs[arch_at + 1] = archs[arch_at + 1], archs[arch_at]
    write_benchmark(dest, archs, cols, index=np.asarray(t.index))
    return dest


def test_untouched_store_agrees_with_its_benchmark(made):
    url, bench = made
    r = _verify(url)
    assert r.exit_code == 0, r.output
    assert f"agree with benchmark {bench}: 6 networks" in r.output
    assert check_benchmark(open_store(url)).problems == []


def test_an_edited_accuracy_in_the_benchmark_is_named(made, tmp_path):
    url, bench = made
    edited = _rewrite(bench, tmp_path / "edited.csv", column="digits_test")
    r = _verify(url, "--benchmark", str(edited))
    assert r.exit_code == 1, r.output
    line = next(x for x in r.output.splitlines() if "digits_test" in x and "differs" in x)
    assert "differs at 1 network(s)" in line


def test_a_swapped_cell_in_the_benchmark_is_named(made, tmp_path):
    url, bench = made
    swapped = _rewrite(bench, tmp_path / "swapped.csv", arch_at=0)
    r = _verify(url, "--benchmark", str(swapped))
    assert r.exit_code == 1, r.output
    assert "2 network(s) hold another cell than the benchmark's row" in r.output


def test_a_benchmark_that_lacks_the_stores_rows_is_named(made, tmp_path):
    url, _ = made
    other = make_bench(tmp_path / "other.csv", n=6, seed=99)
    r = _verify(url, "--benchmark", str(other))
    assert r.exit_code == 1, r.output
    assert "have a bench_index the benchmark lacks" in r.output


def test_a_moved_benchmark_is_said_not_failed(copy, tmp_path):
    url, bench = copy
    r = _verify(url, "--benchmark", str(tmp_path / "gone.csv"))
    assert r.exit_code == 0, r.output
    assert "is not readable here" in r.output and "--benchmark" in r.output


def test_a_table_rewritten_in_the_store_breaks_its_commit_marker(copy):
    url, _ = copy
    g = open_store(url).group
    acc = g["accuracy"][...]
    acc[2] = 99.0  # a valid chunk (new CRC32C): only the marker and the plan can tell
    g["accuracy"][...] = acc
    r = _verify(url)
    assert r.exit_code == 1, r.output
    assert "do not match their commit marker" in r.output
    assert "table 'accuracy' differs from the plan's at 1 network(s) (first: 2)" in r.output
    assert "column 'digits_test'" not in r.output  # that column still agrees


def test_a_store_from_the_space_has_nothing_to_compare(tmp_path):
    from eznas_store.ingest.driver import run_ingest

    url = str(tmp_path / "space.zarr")
    cfg = tiny_ingest_config(url, tmp_path / "unused.csv", benchmark=None, networks=("|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|avg_pool_3x3~2|",))
    run_ingest(cfg)
    check = check_benchmark(open_store(url))
    assert check.problems == [] and "no benchmark table" in check.note
