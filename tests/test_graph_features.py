"""Graph features of NB201 cells and DARTS genotypes, and their use as problem terminals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eznas_store.errors import ConfigError, InvalidArchError
from eznas_store.fitness.problems import load_problems
from eznas_store.sources import graph_columns, graph_feature_names, graph_features
from eznas_store.sources.spaces import darts_genotype, nb201

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
NB201_CONV = {"nor_conv_1x1", "nor_conv_3x3"}


# ----------------------------------------------------------------------------- an independent reference
def _all_paths(edges: list[tuple[int, int, str]], inputs: tuple[int, ...], outputs: tuple[int, ...]) -> list[list[str]]:
    """Every input→output path (as its op list) by explicit enumeration, ``none`` edges removed."""
    live = [(j, i, op) for j, i, op in edges if op != "none"]
    out: list[list[str]] = []

    def go(node: int, ops: list[str]) -> None:
        if node in outputs:
            out.append(ops)
        for j, i, op in live:
            if j == node:
                go(i, ops + [op])

    for s in inputs:
        go(s, [])
    return out


def _check_paths(f: dict[str, float], paths: list[list[str]], conv: set[str], prefix: str = "graph_") -> None:
    n_conv = [sum(op in conv for op in p) for p in paths]
    assert f[prefix + "paths"] == len(paths)
    assert f[prefix + "conv_paths"] == sum(all(op in conv for op in p) for p in paths)
    assert f[prefix + "path_conv_min"] == (min(n_conv) if paths else 0)
    assert f[prefix + "path_conv_max"] == (max(n_conv) if paths else 0)
    assert f[prefix + "depth"] == (max(len(p) for p in paths) if paths else 0)
    assert f[prefix + "reachable"] == (1 if paths else 0)


# ----------------------------------------------------------------------------- NB201
def test_known_nb201_cells() -> None:
    f = graph_features("nb201", BEST)
    assert f["graph_op_nor_conv_3x3"] == 4 and f["graph_op_nor_conv_1x1"] == 1 and f["graph_op_skip_connect"] == 1
    # 0→3 skip; 0→1→3 (3x3, 1x1); 0→2→3 (3x3, 3x3); 0→1→2→3 (3x3 ×3)
    assert (f["graph_paths"], f["graph_conv_paths"], f["graph_path_conv_min"], f["graph_path_conv_max"]) == (4, 3, 0, 3)
    assert (f["graph_depth"], f["graph_reachable"], f["graph_input_degree"], f["graph_output_degree"]) == (3, 1, 3, 3)
    dead = graph_features("nb201", "|none~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|")
    assert (dead["graph_paths"], dead["graph_reachable"], dead["graph_depth"], dead["graph_output_degree"]) == (0, 0, 0, 1)
    skip = graph_features("nb201", "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    assert (skip["graph_paths"], skip["graph_conv_paths"], skip["graph_depth"], skip["graph_reachable"]) == (1, 0, 1, 1)


def test_naslib_key_gives_the_cell_features() -> None:
    key = "(4, 0, 3, 1, 4, 3)"
    assert graph_features("nb201", key) == graph_features("nb201", nb201.nb201_key_to_cell(key))


def test_errors_name_the_problem() -> None:
    with pytest.raises(InvalidArchError):
        graph_features("nb201", "|conv~0|+|")
    with pytest.raises(ConfigError, match="nb201, darts"):
        graph_features("tnb101_micro", BEST)
    with pytest.raises(InvalidArchError):
        graph_features("darts", "Genotype(normal=[")


nb201_ops = st.lists(st.sampled_from(nb201.OPS), min_size=6, max_size=6)


@settings(max_examples=300, deadline=None)
@given(nb201_ops)
def test_nb201_invariants_against_path_enumeration(ops: list[str]) -> None:
    cell = nb201.format_cell(ops)
    f = graph_features("nb201", cell)
    assert list(f) == list(graph_feature_names("nb201"))
    assert sum(f[f"graph_op_{op}"] for op in nb201.OPS) == 6
    edges = [(j, i, op) for (i, j), op in zip(nb201.EDGES, ops)]
    paths = _all_paths(edges, (0,), (3,))
    _check_paths(f, paths, NB201_CONV)
    assert f["graph_paths"] <= 4 and f["graph_depth"] <= 3
    assert f["graph_input_degree"] == sum(op != "none" for (i, j), op in zip(nb201.EDGES, ops) if j == 0)
    assert f["graph_output_degree"] == sum(op != "none" for (i, j), op in zip(nb201.EDGES, ops) if i == 3)
    if f["graph_reachable"] == 0:
        assert f["graph_paths"] == f["graph_conv_paths"] == f["graph_depth"] == 0
    assert graph_features("nb201", nb201.nb201_cell_to_key(cell)) == f  # deterministic, key or cell


# ----------------------------------------------------------------------------- DARTS
@st.composite
def darts_cells(draw) -> tuple[tuple[tuple[str, int], ...], tuple[int, ...]]:
    pairs = tuple((draw(st.sampled_from(darts_genotype.PRIMITIVES)), draw(st.integers(0, e // 2 + 1)))
                  for e in range(2 * darts_genotype.STEPS))
    concat = tuple(sorted(draw(st.sets(st.integers(2, 5), min_size=1))))
    return pairs, concat


def _darts_edges(pairs) -> list[tuple[int, int, str]]:
    return [(j, e // 2 + 2, op) for e, (op, j) in enumerate(pairs)]


@settings(max_examples=200, deadline=None)
@given(darts_cells(), darts_cells())
def test_darts_invariants_against_path_enumeration(normal, reduce) -> None:
    text = darts_genotype.format_genotype(normal[0], normal[1], reduce[0], reduce[1])
    f = graph_features("darts", text)
    for prefix, (pairs, concat) in (("graph_", normal), ("graph_reduce_", reduce)):
        if prefix == "graph_reduce_" and (reduce == normal):
            assert not any(k.startswith(prefix) for k in f)
            continue
        assert sum(f[f"{prefix}op_{op}"] for op in darts_genotype.PRIMITIVES) == len(pairs)
        paths = _all_paths(_darts_edges(pairs), (0, 1), concat)
        _check_paths(f, paths, {op for op in darts_genotype.PRIMITIVES if "conv" in op}, prefix)
        assert f[prefix + "input_degree"] == sum(op != "none" for op, j in pairs if j in (0, 1))
        assert f[prefix + "output_degree"] <= len(concat)


def test_darts_same_cells_have_no_reduce_columns_and_tables_stay_uniform() -> None:
    rng = np.random.default_rng(3)
    same = darts_genotype.random_cell(rng)  # normal == reduce
    pairs = darts_genotype.random_pairs(rng)
    other = darts_genotype.format_genotype(pairs, (2, 3, 4, 5), darts_genotype.random_pairs(rng), (2, 3, 4, 5))
    assert not any(k.startswith("graph_reduce_") for k in graph_features("darts", same))
    cols = graph_columns("darts", [same, other])
    assert set(cols) == set(graph_feature_names("darts", reduce=True))
    assert cols["graph_reduce_paths"][0] == cols["graph_paths"][0]  # equal cells repeat the normal values
    assert cols["graph_reduce_paths"][1] == graph_features("darts", other)["graph_reduce_paths"]
    assert set(graph_columns("darts", [same])) == set(graph_feature_names("darts"))


# ----------------------------------------------------------------------------- as terminals
KEYS = ["(0, 0, 0, 0, 0, 0)", "(2, 2, 2, 2, 2, 2)", "(4, 0, 3, 1, 4, 3)", "(3, 3, 2, 0, 1, 4)",
        "(1, 1, 1, 1, 1, 1)", "(2, 3, 4, 0, 2, 3)"]


def _zc(path: Path, keys=KEYS) -> Path:
    rng = np.random.default_rng(0)
    doc = {"cifar10": {k: {"idx": str(i), "synflow": {"score": float(rng.uniform(1, 9))},
                           "jacov": {"score": float(rng.uniform(1, 9))}, "val_accuracy": 50.0 + i}
                       for i, k in enumerate(keys)}}
    path.write_text(json.dumps(doc))
    return path


def test_load_problems_appends_graph_columns_only_when_asked(tmp_path: Path) -> None:
    f = _zc(tmp_path / "zc_nasbench201.json")
    (plain,) = load_problems(f)
    (graph,) = load_problems(f, graph_features=True)
    assert not any(k.startswith("graph_") for k in plain.columns)
    assert set(graph.columns) == set(plain.columns) | set(graph_feature_names("nb201"))
    for k in plain.columns:
        np.testing.assert_array_equal(graph.columns[k], plain.columns[k])
    for n, arch in enumerate(graph.archs):  # Suite-Zero keys were converted to cells when read
        assert arch.startswith("|")
        for k, v in graph_features("nb201", arch).items():
            assert graph.columns[k][n] == v
    np.testing.assert_array_equal(graph.accuracy, plain.accuracy)


def test_graph_features_refuse_spaces_without_cells(tmp_path: Path) -> None:
    f = _zc(tmp_path / "zc_transbench101_micro_class_scene.json")  # raw keys: not NB201
    assert load_problems(f)
    with pytest.raises(ConfigError, match="graph features need NB201 cells or DARTS genotypes"):
        load_problems(f, graph_features=True)


def test_proxy_table_csv_problems_get_the_same_graph_columns_per_label_set(tmp_path: Path) -> None:
    from eznas_store.sources import write_proxy_table

    cells = [nb201.cell_from_index(i) for i in (0, 7, 99, 1234, 8000, 15624)]
    rng = np.random.default_rng(1)
    cols = {"cifar10_test": rng.uniform(50, 90, 6), "cifar100_test": rng.uniform(20, 60, 6),
            "synflow@cifar10": rng.uniform(size=6), "synflow@cifar100": rng.uniform(size=6)}
    meta = {"recipe": {}, "label_sets": {"cifar10": {"accuracy": "cifar10_test"},
                                         "cifar100": {"accuracy": "cifar100_test"}}}
    table = write_proxy_table(tmp_path / "t.csv", cells, list(range(6)), cols, meta)
    problems = load_problems(table, graph_features=True)
    assert len(problems) == 2
    want = graph_columns("nb201", list(problems[0].archs))
    for p in problems:
        assert p.archs == problems[0].archs
        for k, v in want.items():
            np.testing.assert_array_equal(p.columns[k], v)


def test_a_darts_proxy_table_gets_darts_graph_columns(tmp_path: Path) -> None:
    from eznas_store.sources import write_proxy_table

    rng = np.random.default_rng(2)
    cells = [darts_genotype.random_cell(rng) for _ in range(5)]
    cols = {"cifar10_test": rng.uniform(50, 90, 5), "synflow@cifar10": rng.uniform(size=5)}
    meta = {"recipe": {}, "label_sets": {"cifar10": {"accuracy": "cifar10_test"}}}
    (p,) = load_problems(write_proxy_table(tmp_path / "d.csv", cells, list(range(5)), cols, meta),
                         graph_features=True)
    assert "graph_op_sep_conv_3x3" in p.columns
    np.testing.assert_array_equal(p.columns["graph_paths"], graph_columns("darts", list(p.archs))["graph_paths"])
