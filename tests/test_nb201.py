from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eznas_store.errors import InvalidArchError
from eznas_store.sources.spaces import get_space
from eznas_store.sources.spaces import nb201

ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
ALL_3x3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def test_enumeration_is_the_whole_space():
    cells = list(nb201.all_cells())
    assert len(cells) == len(set(cells)) == 15_625
    assert all(str(nb201.parse_cell(c)) == c for c in cells[:: 97])


@pytest.mark.parametrize("arch,params", [(ALL_NONE, 73_306), (ALL_3x3, 1_531_546)])
def test_parameter_counts_follow_from_the_skeleton(arch, params):
    # NB201's published params_mb: 0.073306 (no cell parameters) and 1.531546 (all 3x3)
    assert nb201.count_params(nb201.build(arch, num_classes=10)) == params


def test_heads_and_sizes():
    for classes in (10, 100, 120):
        m = nb201.build(ALL_3x3, num_classes=classes)
        assert m.classifier.out_features == classes
    m = nb201.build(ALL_3x3, num_classes=120)
    assert m(torch.zeros(2, 3, 16, 16)).shape == (2, 120)


@pytest.mark.parametrize("arch,blocks", [(ALL_NONE, 4), (ALL_3x3, 94),
                                         ("|nor_conv_1x1~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_3x3~1|none~2|", 34)])
def test_block_counts(arch, blocks):
    assert len(nb201.block_specs(arch, batch_size=1, image_size=32)) == blocks


def test_block_specs_match_the_network():
    from eznas_store.collect.statistics import collect
    from eznas_store.terminals import CollectConfig

    arch = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
    for structure in ("rcb", "cbr"):
        specs = nb201.block_specs(arch, batch_size=2, image_size=16, C=4, N=2, structure=structure)
        stats = collect(nb201.build(arch, num_classes=10, C=4, N=2, structure=structure),
                        torch.randn(2, 3, 16, 16), config=CollectConfig(batch_size=2, structure=structure),
                        init_seed=0)
        assert len(stats.blocks) == len(specs)
        for b, s in zip(stats.blocks, specs):
            assert b.tensors["wt"].shape == s.weight_shape()
            assert b.tensors["inpact_D"].shape == s.input_shape(2)
            assert b.tensors["act_D"].shape == s.output_shape(2)


@pytest.mark.parametrize("text,where", [
    ("|nor_conv_3x3~0|+|none~0|none~1|", "3 node groups"),
    ("|nor_conv_3x3~0|+|none~0|bogus~1|+|none~0|none~1|none~2|", "unknown operation 'bogus' at position 25"),
    ("|nor_conv_3x3~1|+|none~0|none~1|+|none~0|none~1|none~2|", "position 1 must read from node 0"),
    ("|nor_conv_3x3~0|+|none~0|+|none~0|none~1|none~2|", "node 2 at position 17 needs 2"),
    ("nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", "must start and end with '|'"),
])
def test_parse_errors_name_token_and_position(text, where):
    with pytest.raises(InvalidArchError, match="position|node groups|start and end") as e:
        nb201.parse_cell(text)
    assert where in str(e.value)


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet="|+~0123nonekipcvrl_x3aog", max_size=80))
def test_parser_never_crashes(text):
    try:
        cell = nb201.parse_cell(text)
    except InvalidArchError as e:
        assert "\n" not in str(e)
    else:
        assert str(cell) == text.strip()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(nb201.OPS), min_size=6, max_size=6))
def test_format_parse_roundtrip(ops):
    assert nb201.parse_cell(nb201.format_cell(ops)).ops == tuple(ops)


def test_unknown_space_is_a_clear_error():
    from eznas_store.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="unknown search space 'nb301'"):
        get_space("nb301")
