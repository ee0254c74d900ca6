"""DARTS cells: genotype parsing, NB301 keys, the NetworkCIFAR builder, its blocks, the 1000-genotype table."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch
from conftest import shared_path
from hypothesis import given, settings
from hypothesis import strategies as st

from eznas_store.errors import ConfigError, InvalidArchError
from eznas_store.sources.spaces import darts, get_space
from eznas_store.sources.spaces import darts_genotype as dg

V2_NORMAL = [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
             ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)]
V2_REDUCE = [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
             ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)]
DARTS_V2 = dg.format_genotype(V2_NORMAL, [2, 3, 4, 5], V2_REDUCE, [2, 3, 4, 5])
FIRST_KEY = ("[[(0, 0), (1, 5), (1, 1), (0, 1), (1, 3), (0, 3), (1, 3), (3, 2)], "
             "[(1, 0), (0, 2), (1, 3), (0, 3), (3, 0), (0, 1), (2, 0), (3, 6)]]")
FIRST_KEY_GENOTYPE = dg.format_genotype(
    [("max_pool_3x3", 0), ("dil_conv_3x3", 1), ("avg_pool_3x3", 1), ("avg_pool_3x3", 0),
     ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("skip_connect", 3)], [2, 3, 4, 5],
    [("max_pool_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0),
     ("max_pool_3x3", 3), ("avg_pool_3x3", 0), ("max_pool_3x3", 2), ("dil_conv_5x5", 3)], [2, 3, 4, 5])


def same(pairs, concat=(2, 3, 4, 5)):
    return dg.format_genotype(pairs, concat, pairs, concat)


#: cells without any conv block, with unused inputs, pools only, input 0 only
EDGE_CASES = [
    same([("none", 0), ("none", 1)] * 4),
    same([("skip_connect", 0), ("skip_connect", 1), ("skip_connect", 2), ("none", 0),
          ("skip_connect", 3), ("none", 1), ("skip_connect", 4), ("skip_connect", 0)]),
    same([("max_pool_3x3", 0), ("avg_pool_3x3", 1), ("avg_pool_3x3", 2), ("max_pool_3x3", 1),
          ("max_pool_3x3", 3), ("avg_pool_3x3", 0), ("avg_pool_3x3", 4), ("max_pool_3x3", 2)]),
    same([("sep_conv_5x5", 0), ("dil_conv_5x5", 0), ("skip_connect", 2), ("sep_conv_3x3", 0),
          ("dil_conv_3x3", 3), ("none", 2), ("sep_conv_3x3", 4), ("skip_connect", 0)]),
]


# ----------------------------------------------------------------------------- parsing
@st.composite
def genotypes(draw):
    cells = []
    for _ in range(2):
        steps = draw(st.integers(1, 5))
        pairs = [(draw(st.sampled_from(dg.PRIMITIVES)), draw(st.integers(0, e // 2 + 1)))
                 for e in range(2 * steps)]
        concat = sorted(draw(st.sets(st.integers(0, steps + 1), min_size=1)))
        cells.append((pairs, concat))
    return cells


@settings(max_examples=60, deadline=None)
@given(genotypes(), st.sampled_from(["", " ", "\n  "]), st.booleans())
def test_parse_round_trips(cells, ws, double_quotes):
    (normal, nc), (reduce, rc) = cells
    text = dg.format_genotype(normal, nc, reduce, rc)
    g = dg.parse_genotype(text)
    assert (list(g.normal), list(g.normal_concat), list(g.reduce), list(g.reduce_concat)) == (
        normal, nc, reduce, rc)
    assert str(g) == text and dg.canonical(text) == text
    messy = text.replace(", ", "," + ws).replace("=", ws + "=" + ws).replace("(", "(" + ws)
    if double_quotes:
        messy = messy.replace("'", '"')
    assert dg.canonical(messy) == text


def test_range_concat_and_field_order():
    text = DARTS_V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=range(2, 6)")
    assert dg.canonical(text) == DARTS_V2
    reordered = (f"Genotype(reduce={dg._pairs_text(V2_REDUCE)}, reduce_concat=[2, 3, 4, 5], "
                 f"normal={dg._pairs_text(V2_NORMAL)}, normal_concat=[2, 3, 4, 5],)")
    assert dg.canonical(reordered) == DARTS_V2


@pytest.mark.parametrize("text,match", [
    ("__import__('os').system('true')", "unexpected character '\\.' at position 16"),
    ("__import__('os')", "expected 'Genotype', found '__import__' at position 0"),
    (DARTS_V2.replace("[('sep_conv_3x3', 0)", "__import__('os') or [('sep_conv_3x3', 0)"),
     "expected '\\[', found '__import__'"),
    (DARTS_V2.replace("normal=[", "normal=[('none', 0)]*8 + ["), "unexpected character '\\*'"),
    (DARTS_V2.replace("'sep_conv_3x3'", "'os.system'", 1), "unexpected character"),
    (DARTS_V2.replace("'sep_conv_3x3'", "'__class__'", 1), "unknown operation '__class__'"),
    (DARTS_V2.replace("'sep_conv_3x3'", "f'x'", 1), "expected 'str'"),
    (DARTS_V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=eval('[2]')"), "expected"),
    (DARTS_V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=[2, 3, 4, 5].__class__"),
     "unexpected character '\\.'"),
    (DARTS_V2 + "; import os", "unexpected character ';'"),
    (DARTS_V2 + " Genotype", "expected the end of the text"),
    (DARTS_V2.replace("Genotype(", "Genotype(x=1, "), "unknown field"),
    (DARTS_V2.replace(", reduce_concat=[2, 3, 4, 5]", ""), "missing field.*reduce_concat"),
    (DARTS_V2.replace("normal_concat", "reduce_concat"), "repeated field"),
    (DARTS_V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 6)"), "pair 7 feeds node 5 and may read inputs 0..4, not 6, found '6'"),
    (DARTS_V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=[2, 3, 3]"), "increasing"),
    (DARTS_V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=[2, 6]"), "states 0..5"),
    (DARTS_V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=[]"), "at least one"),
    (DARTS_V2.replace(", ('dil_conv_3x3', 2)]", "]"), "even number"),
    ("", "expected 'Genotype', found the end of the text at position 0"),
])
def test_rejects_bad_and_smuggled_text(text, match):
    with pytest.raises(InvalidArchError, match=match) as info:
        dg.parse_genotype(text)
    assert "position" in str(info.value)


def test_error_names_token_and_position():
    text = DARTS_V2.replace("'skip_connect'", "'conv_7x1_1x7'", 1)
    with pytest.raises(InvalidArchError) as info:
        dg.parse_genotype(text)
    where = text.index("'conv_7x1_1x7'")
    assert f"unknown operation 'conv_7x1_1x7'" in str(info.value)
    assert str(info.value).endswith(f"at position {where}")
    with pytest.raises(InvalidArchError, match="must be text"):
        dg.parse_genotype(None)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- NB301 keys
def test_nb301_worked_example():
    assert dg.from_naslib_key(FIRST_KEY) == FIRST_KEY_GENOTYPE
    assert dg.to_naslib_key(FIRST_KEY_GENOTYPE) == FIRST_KEY
    space = get_space("darts")
    assert space.from_naslib_key(FIRST_KEY) == FIRST_KEY_GENOTYPE


@pytest.mark.parametrize("key,match", [
    ("[[(0, 0)] * 8, []]", "unexpected character"),
    (FIRST_KEY.replace("(3, 6)", "(3, 7)"), "op index must be 0..6"),
    (FIRST_KEY.replace("(3, 2)", "(5, 2)"), "pair 7 feeds node 5 and may read inputs 0..4, not 5"),
    (FIRST_KEY.replace(", (3, 2)]", "]"), "needs 8 pairs"),
    ("[" + FIRST_KEY[1:FIRST_KEY.index("], [")] + "]]", "two cells"),
])
def test_nb301_bad_keys(key, match):
    with pytest.raises(InvalidArchError, match=match):
        dg.from_naslib_key(key)


def test_to_key_needs_a_darts_cell():
    with pytest.raises(InvalidArchError, match="no 'none' op"):
        dg.to_naslib_key(EDGE_CASES[0])
    with pytest.raises(InvalidArchError, match="concat"):
        dg.to_naslib_key(same(V2_NORMAL, (2, 3)))


def test_all_nb301_keys_round_trip():
    path = shared_path("suite-zero", "prerelease-2022-05", "zc_nasbench301.json.gz")
    with gzip.open(path, "rt") as f:
        keys = list(json.load(f)["cifar10"])
    assert len(keys) == 725
    for key in keys:
        assert dg.to_naslib_key(dg.from_naslib_key(key)) == key


# ----------------------------------------------------------------------------- builder
@pytest.mark.parametrize("C,L,params", [(36, 20, 3_349_342), (16, 8, 246_106), (32, 8, 919_722)])
def test_darts_v2_parameter_counts(C, L, params):
    assert darts.count_params(darts.build(DARTS_V2, num_classes=10, C=C, N=L)) == params


def test_skeleton_and_forward():
    plans = darts.skeleton(dg.parse_genotype(DARTS_V2), 16, 8)
    assert "".join("R" if p.reduction else "N" for p in plans) == "NNRNNRNN"
    assert [p.index for p in darts.skeleton(dg.parse_genotype(DARTS_V2), 36, 20) if p.reduction] == [6, 13]
    assert [p.reduction for p in darts.skeleton(dg.parse_genotype(DARTS_V2), 4, 2)] == [True, True]
    net = darts.build(DARTS_V2, num_classes=7, C=4, N=2)
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 7)
    with pytest.raises(ConfigError, match="structure must be 'rcb'"):
        darts.build(DARTS_V2, structure="cbr")
    with pytest.raises(ConfigError, match="even feature maps"):
        darts.block_specs(DARTS_V2, batch_size=1, image_size=18, C=4, N=3)
    with pytest.raises(ConfigError, match="cannot be enumerated"):
        list(get_space("darts").all_archs())


def test_flops_match_darts_md():
    from eznas_store.collect.statistics import count_flops

    flops = count_flops(darts.build(DARTS_V2, C=16, N=8), torch.randn(1, 3, 32, 32))
    assert round(flops / 1e6, 1) == 43.4


def test_dead_inputs_still_get_zero_gradients():
    net = darts.build(EDGE_CASES[3], C=4, N=3)  # no op reads input 1: preprocess1 is dead
    net(torch.randn(2, 3, 16, 16)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())


# ----------------------------------------------------------------------------- blocks
def _check_blocks(arch: str, size: int) -> int:
    from eznas_store.collect.statistics import collect, derive_raw
    from eznas_store.terminals import CollectConfig

    specs = darts.block_specs(arch, batch_size=1, image_size=size, C=4, N=3)
    stats = collect(darts.build(arch, num_classes=10, C=4, N=3), torch.randn(1, 3, size, size),
                    config=CollectConfig(batch_size=1), init_seed=0, full=True)
    assert len(stats.blocks) == len(specs)
    first_in: dict[str, torch.Tensor] = {}
    first_out: dict[str, torch.Tensor] = {}
    for b, s in zip(stats.blocks, specs):
        t = b.tensors
        assert t["wt"].shape == s.weight_shape()
        assert t["inpact_D"].shape == t["preactgrad_D"].shape == s.input_shape(1)
        assert t["act_D"].shape == t["actgrad_D"].shape == s.output_shape(1)
        for x in "DNP":  # the R-C-B unit is exact: preact and inpactgrad derive from what is stored
            d = derive_raw(t, "rcb", x)
            assert torch.equal(d[f"preact_{x}"], t[f"preact_{x}"])
            assert torch.equal(d[f"inpactgrad_{x}"], t[f"inpactgrad_{x}"])
        # equal keys name one tensor: the store keeps one copy
        assert torch.equal(first_in.setdefault(s.input_key, t["inpact_D"]), t["inpact_D"])
        assert torch.equal(first_out.setdefault(s.output_key, t["actgrad_D"]), t["actgrad_D"])
    return len(specs)


@pytest.mark.parametrize("arch", [DARTS_V2, FIRST_KEY_GENOTYPE, *EDGE_CASES])
def test_block_specs_match_the_collector(arch):
    n = _check_blocks(arch, 16)
    if arch == EDGE_CASES[0]:
        assert n == 7  # preprocessing only: 2 per cell, 3 in cell 2 (after a reduction: FR is 2)
        assert [s.role for s in darts.block_specs(arch, batch_size=1, image_size=16, C=4, N=3)][-3:] == [
            "c2.pre0.a", "c2.pre0.b", "c2.pre1"]


def test_block_specs_at_32_and_random_cells():
    rng = np.random.default_rng(3)
    _check_blocks(dg.random_cell(rng), 32)
    _check_blocks(dg.random_cell(rng), 16)


def test_block_roles_of_darts_v2():
    specs = darts.block_specs(DARTS_V2, batch_size=1, image_size=32, C=16, N=8)
    # normal: 5 sep (2 each) + 1 dil = 11; reduce: none (pools; its skips read node 2, stride 1);
    # preprocessing: 2, or 3 after a reduction (FactorizedReduce is two half blocks)
    per_cell = [sum(s.role.startswith(f"c{i}.") for s in specs) for i in range(8)]
    assert per_cell == [13, 13, 2, 14, 13, 2, 14, 13]
    first = {s.role: s for s in specs}
    assert first["c3.pre0.a"] == darts.BlockSpec(64, 16, 1, 2, 32, 16, "c1", "c3.s0.a", "c3.pre0.a")
    assert first["c0.e0.sep_conv_3x3.u1"].input_key == "c0.e0.sep_conv_3x3.u0"
    assert first["c0.e0.sep_conv_3x3.u1"].output_key == first["c0.e1.sep_conv_3x3.u1"].output_key == "c0.s2"


# ----------------------------------------------------------------------------- walking the space
def test_random_cell_and_mutate():
    rng = np.random.default_rng(0)
    space = get_space("darts")
    assert not space.searchable
    for _ in range(50):
        g = space.random_cell(rng)
        parsed = dg.parse_genotype(g)
        assert space.canonical(g) == g and parsed.normal == parsed.reduce
        assert parsed.normal_concat == (2, 3, 4, 5)
        m = space.mutate(g, rng)
        pm = dg.parse_genotype(m)
        assert space.canonical(m) == m and m != g and pm.normal == pm.reduce
        assert sum(a != b for a, b in zip(parsed.normal, pm.normal)) == 1
    mixed = dg.from_naslib_key(FIRST_KEY)
    m = dg.parse_genotype(dg.mutate(mixed, rng))
    g = dg.parse_genotype(mixed)
    changed = sum(a != b for a, b in zip(g.normal + g.reduce, m.normal + m.reduce))
    assert changed == 1


# ----------------------------------------------------------------------------- the labelled table
def test_reads_the_1000_genotype_table():
    from eznas_store.sources.tables import default_accuracy_column, read_benchmark

    table = read_benchmark(shared_path("darts", "darts_1000_cifar10_valid.csv"))
    assert len(table) == 1000 and list(table.columns) == ["cifar10_valid"]
    assert default_accuracy_column(table, "cifar10") == "cifar10_valid"
    acc = table.column("cifar10_valid")
    assert acc.min() == pytest.approx(10.22, abs=0.01) and acc.max() == pytest.approx(86.61, abs=0.01)
    assert acc.mean() == pytest.approx(79.18, abs=0.01)
    assert all(dg.canonical(a) == a for a in table.archs)
    assert table.index.tolist() == list(range(1000))


def test_headerless_genotype_csv_errors(tmp_path):
    from eznas_store.errors import BenchmarkFormatError
    from eznas_store.sources.tables import read_benchmark

    path = tmp_path / "g.csv"
    path.write_text(f'"{DARTS_V2}",85.0\n"{FIRST_KEY_GENOTYPE}",oops\n')
    with pytest.raises(BenchmarkFormatError, match="line 2: column cifar10_valid holds 'oops'"):
        read_benchmark(path)
    path.write_text(f'"{DARTS_V2}",85.0\n"{DARTS_V2}",80.0\n')
    with pytest.raises(BenchmarkFormatError, match="line 2: cell .* already appears on line 1"):
        read_benchmark(path)
