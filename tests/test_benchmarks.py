"""Benchmark tables: CSV/gz round trips, one-line errors, selection, the real NB201 table."""

from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pytest
from fixtures_data import SHARED_DATA
from hypothesis import example, given, settings
from hypothesis import strategies as st

from eznas_store.sources.tables import (
    BenchmarkTable,
    default_accuracy_column,
    meta_path,
    parse_network_selection,
    read_benchmark,
    read_network_list,
    select_networks,
    write_benchmark,
)
from eznas_store.errors import (
    BenchmarkFormatError,
    ConfigError,
    DataNotFoundError,
    UnknownNameError,
)

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NB201_TABLE = SHARED_DATA / "nb201_accuracies.csv"
NB201_EXTRA = SHARED_DATA / "nb201-extra"
NB201_OPTIMUM = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
    "nor_conv_1x1~2|"
)


def cell(i: int) -> str:
    """The i-th of the 15,625 NB201 cell strings (any fixed bijection will do here)."""
    o = [OPS[(i // 5**k) % 5] for k in range(6)]
    return f"|{o[0]}~0|+|{o[1]}~0|{o[2]}~1|+|{o[3]}~0|{o[4]}~1|{o[5]}~2|"


def small_table(tmp_path, *, n=20, name="t.csv", **kwargs):
    rng = np.random.default_rng(0)
    columns = {
        "cifar10_test": rng.uniform(10, 95, n),
        "cifar10_valid": rng.uniform(10, 92, n),
        "cifar100_test": rng.uniform(1, 73, n),
    }
    archs = [cell(i) for i in range(n)]
    return write_benchmark(tmp_path / name, archs, columns, **kwargs), archs, columns


# ------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz"])
def test_write_read_round_trip(tmp_path, name):
    meta = {"recipe": {"epochs": 12, "lr": 0.1}, "dataset": "digits"}
    path, archs, columns = small_table(
        tmp_path, name=name, index=range(100, 120), meta=meta
    )
    table = read_benchmark(path)
    assert len(table) == 20 and table.archs == tuple(archs)
    assert table.index.dtype == np.int64 and table.index.tolist() == list(range(100, 120))
    assert list(table.columns) == list(columns)
    for key, values in columns.items():
        assert table.column(key).dtype == np.float64
        np.testing.assert_array_equal(table.column(key), values)
    assert table.meta == meta
    assert table.lookup(archs[3]) == 3 and archs[3] in table
    with pytest.raises(ValueError):  # arrays are read-only
        table.column("cifar10_test")[0] = 1.0
    if name.endswith(".gz"):
        with gzip.open(path, "rt") as f:
            assert f.readline().startswith("index,arch,cifar10_test")


def test_gz_output_is_byte_reproducible(tmp_path):
    a, _, _ = small_table(tmp_path, name="a.csv.gz")
    b, _, _ = small_table(tmp_path, name="b.csv.gz")
    assert a.read_bytes() == b.read_bytes()


def test_rewriting_without_meta_drops_stale_sidecar(tmp_path):
    path, _, _ = small_table(tmp_path, meta={"a": 1})
    assert meta_path(path).is_file()
    small_table(tmp_path)
    assert not meta_path(path).exists() and read_benchmark(path).meta == {}


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(
        st.floats(allow_infinity=False, allow_nan=True, width=64), min_size=1, max_size=30
    )
)
def test_round_trip_is_exact_for_any_float(tmp_path_factory, values):
    path = tmp_path_factory.mktemp("rt") / "t.csv"
    archs = [cell(i) for i in range(len(values))]
    write_benchmark(path, archs, {"acc": values})
    got = read_benchmark(path).column("acc")
    for v, g in zip(values, got):
        assert (math.isnan(v) and math.isnan(g)) or v == g


def test_index_column_is_optional(tmp_path):
    path = tmp_path / "noindex.csv"
    path.write_text(f"arch,acc\n{cell(0)},1.5\n{cell(1)},\n")
    table = read_benchmark(path)
    assert table.index.tolist() == [0, 1]
    assert table.column("acc")[0] == 1.5 and math.isnan(table.column("acc")[1])


# ---------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"benchmark table .*nope\.csv does not exist"):
        read_benchmark(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("index,cell,acc\n0,x,1\n", r"line 1: no 'arch' column \(columns: index, cell, acc\)"),
        (f"index,arch,acc\n0,{cell(0)},1\n1,{cell(1)},abc\n", r"line 3: column acc holds 'abc'"),
        (f"index,arch,acc\n0,{cell(0)},1\n1,{cell(0)},2\n", r"line 3: cell .* on line 2"),
        (f"index,arch,acc\n0,{cell(0)},1,7\n", r"line 2: 4 fields, the header has 3"),
        (f"index,arch,acc\nx,{cell(0)},1\n", r"line 2: index 'x' is not an integer"),
        (f"index,arch,acc\n0,{cell(0)},inf\n", r"line 2: column acc holds an infinite"),
        (f"index,arch,acc\n0,{cell(0)},1\n0,{cell(1)},2\n", r"index column repeats"),
        ("", r"is empty"),
        ("arch,acc,acc\n", r"repeated columns \['acc'\]"),
    ],
)
def test_format_errors_name_the_line(tmp_path, text, pattern):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(BenchmarkFormatError, match=pattern) as info:
        read_benchmark(path)
    assert "\n" not in str(info.value) and "bad.csv" in str(info.value)


def test_bad_sidecar(tmp_path):
    path, _, _ = small_table(tmp_path)
    meta_path(path).write_text("{not json")
    with pytest.raises(BenchmarkFormatError, match=r"meta\.json: not valid JSON"):
        read_benchmark(path)


def test_write_rejects_inconsistent_input(tmp_path):
    with pytest.raises(ConfigError, match="must agree"):
        write_benchmark(tmp_path / "x.csv", [cell(0), cell(1)], {"a": [1.0]})
    with pytest.raises(ConfigError, match="reserved"):
        write_benchmark(tmp_path / "x.csv", [cell(0)], {"arch": [1.0]})
    with pytest.raises(BenchmarkFormatError, match="appears twice"):
        write_benchmark(tmp_path / "x.csv", [cell(0), cell(0)], {"a": [1.0, 2.0]})
    assert not (tmp_path / "x.csv").exists()


def test_unknown_column_and_arch(tmp_path):
    table = read_benchmark(small_table(tmp_path)[0])
    with pytest.raises(
        UnknownNameError,
        match="no column 'nope'; available columns: cifar10_test, cifar10_valid, cifar100_test",
    ):
        table.column("nope")
    with pytest.raises(UnknownNameError, match=r"cell \|none~0\|.* is not in"):
        table.lookup("|none~0|+|none~0|none~1|+|none~0|none~1|zzz~2|")


def test_default_accuracy_column(tmp_path):
    table = read_benchmark(small_table(tmp_path)[0])
    assert default_accuracy_column(table, "cifar10") == "cifar10_valid"
    assert default_accuracy_column(table, "CIFAR100") == "cifar100_test"
    no_valid = BenchmarkTable(
        "x", table.archs, table.index, {"cifar10_test": table.column("cifar10_test")}
    )
    assert default_accuracy_column(no_valid, "cifar10") == "cifar10_test"
    with pytest.raises(UnknownNameError, match="none of the imagenet16-120 accuracy columns"):
        default_accuracy_column(table, "imagenet16-120")
    with pytest.raises(UnknownNameError, match="known datasets"):
        default_accuracy_column(table, "mnist")


# ------------------------------------------------------------------------- selection


def test_select_networks_sampled_is_seeded_sorted_unique(tmp_path):
    table = read_benchmark(small_table(tmp_path, n=50)[0])
    a = select_networks(table, networks=10, seed=3)
    assert np.array_equal(a, select_networks(table, networks=10, seed=3))
    assert not np.array_equal(a, select_networks(table, networks=10, seed=4))
    assert a.dtype == np.int64 and np.all(np.diff(a) > 0) and len(a) == 10
    assert select_networks(table).tolist() == list(range(50))
    assert select_networks(table, networks=50).tolist() == list(range(50))


def test_select_networks_by_cells_and_file(tmp_path):
    table = read_benchmark(small_table(tmp_path, n=30)[0])
    wanted = [cell(7), cell(2), cell(19)]
    assert select_networks(table, archs=wanted).tolist() == [2, 7, 19]
    listing = tmp_path / "cells.txt"
    listing.write_text("# my cells\n" + "\n".join(wanted) + "\n\n")
    assert read_network_list(listing) == wanted
    assert select_networks(table, archs=listing).tolist() == [2, 7, 19]
    assert select_networks(table, archs=str(listing)).tolist() == [2, 7, 19]
    assert select_networks(table, archs=cell(4)).tolist() == [4]


def test_select_networks_errors(tmp_path):
    table = read_benchmark(small_table(tmp_path, n=5)[0])
    with pytest.raises(UnknownNameError, match=r"cell \|bad\| is not in .*t\.csv"):
        select_networks(table, archs=[cell(0), "|bad|"])
    with pytest.raises(ConfigError, match="listed twice"):
        select_networks(table, archs=[cell(0), cell(0)])
    with pytest.raises(ConfigError, match="not both"):
        select_networks(table, networks=2, archs=[cell(0)])
    with pytest.raises(ConfigError, match="cannot select 6 networks .* which has 5"):
        select_networks(table, networks=6)
    with pytest.raises(DataNotFoundError, match="network list .* does not exist"):
        select_networks(table, archs=tmp_path / "missing.txt")


@given(st.integers(min_value=1, max_value=10**9), st.sampled_from(["", " ", "\t"]))
def test_parse_network_selection_integers(n, pad):
    assert parse_network_selection(f"{pad}{n}{pad}") == n


@pytest.mark.parametrize("text", ["all", "ALL", " All "])
def test_parse_network_selection_all(text):
    assert parse_network_selection(text) is None


def test_parse_network_selection_file_and_cell(tmp_path):
    listing = tmp_path / "cells.txt"
    listing.write_text(f"{cell(1)}\n{cell(2)}\n")
    assert parse_network_selection(str(listing)) == [cell(1), cell(2)]
    assert parse_network_selection(cell(3)) == [cell(3)]


@given(st.text(min_size=1, max_size=20).filter(lambda s: s.strip().lower() != "all"))
@example("~0")  # "~user" with no such user must not escape as RuntimeError
@example("a\x00b")
def test_parse_network_selection_rejects_everything_else(text):
    stripped = text.strip()
    try:
        int(stripped)
        is_int = True
    except ValueError:
        is_int = False
    if is_int or stripped.startswith("|"):
        return
    with pytest.raises(ConfigError, match="takes an integer, 'all' or a file"):
        parse_network_selection(text)


@pytest.mark.parametrize("text", ["0", "-3"])
def test_parse_network_selection_rejects_non_positive(text):
    with pytest.raises(ConfigError, match="at least 1"):
        parse_network_selection(text)


# ---------------------------------------------------------------------- real tables


@pytest.fixture
def real_nb201():
    if not NB201_TABLE.is_file():
        pytest.skip(
            "nb201_accuracies.csv not found: this test reads the real NB201 table from "
            "../shared/data"
        )
    return read_benchmark(NB201_TABLE)


def test_real_nb201_table(real_nb201):
    table = real_nb201
    assert len(table) == 15625 and len(set(table.archs)) == 15625
    assert table.index.tolist() == list(range(15625))
    c10 = table.column("cifar10_test")
    assert c10.max() == pytest.approx(94.37, abs=0.005)  # 94.3733
    assert table.archs[int(np.argmax(c10))] == NB201_OPTIMUM
    assert table.column("cifar10_valid").max() == pytest.approx(91.6067, abs=1e-4)
    assert default_accuracy_column(table, "cifar10") == "cifar10_valid"
    assert default_accuracy_column(table, "imagenet16-120") == "imagenet16_test"
    assert table.meta == {}
    rows = select_networks(table, networks=100, seed=0)
    assert len(rows) == 100 and rows.max() < 15625


@pytest.mark.parametrize(
    ("name", "column"),
    [
        ("hp12_accuracies.csv.gz", "imagenet16_valid"),
        ("hp200_cifar10_nb201api.csv.gz", "params_mb"),
    ],
)
def test_real_nb201_extra_tables(real_nb201, name, column):
    path = NB201_EXTRA / name
    if not path.is_file():
        pytest.skip(f"{name} not found: this test reads it from ../shared/data/nb201-extra")
    table = read_benchmark(path)
    assert len(table) == 15625 and table.archs == real_nb201.archs
    assert np.all(np.isfinite(table.column(column)))
    if column == "params_mb":
        np.testing.assert_allclose(
            table.column("cifar10_valid"), real_nb201.column("cifar10_valid"), atol=1e-4
        )
    else:
        assert table.column("cifar10_test").max() == pytest.approx(89.16, abs=0.01)


def test_meta_json_is_plain_json(tmp_path):
    path, _, _ = small_table(tmp_path, meta={"z": [1, 2], "a": None})
    assert json.loads(meta_path(path).read_text()) == {"a": None, "z": [1, 2]}
