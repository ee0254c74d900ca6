"""SWAP's DARTS network as a skeleton of the DARTS space (``--skeleton swap``, space ``darts-swap``),
the fast distinct-pattern count of SWAP, and the per-cell chain AZ-NAS reads on DARTS networks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import shared_path
from torch import nn

from eznas_store.collect.proxies.features import cell_features
from eznas_store.collect.proxies.networks import network_factory
from eznas_store.collect.proxies.runner import compute_all
from eznas_store.collect.proxies.swap import distinct_patterns, pattern_keys
from eznas_store.errors import ConfigError
from eznas_store.ingest.config import IngestConfig
from eznas_store.ingest.driver import run_ingest
from eznas_store.sources.spaces import SPACES, get_space
from eznas_store.sources.spaces import darts_genotype as dg
from eznas_store.sources.tables import read_benchmark
from eznas_store.store.store import open_store

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: a genotype whose ops are known: node 2 = sep3(s0) + dil5(s1), node 3 = skip(s0) [FR] + none(s1),
#: node 4 = max(s2) + avg(s3), node 5 = skip(s4) [identity] + sep5(s0)
G = ("Genotype(normal=[('sep_conv_3x3', 0), ('dil_conv_5x5', 1), ('skip_connect', 0), ('none', 1), "
     "('max_pool_3x3', 2), ('avg_pool_3x3', 3), ('skip_connect', 4), ('sep_conv_5x5', 0)], normal_concat=[2, 3, 4, 5], "
     "reduce=[('sep_conv_3x3', 0), ('dil_conv_5x5', 1), ('skip_connect', 0), ('none', 1), ('max_pool_3x3', 2), "
     "('avg_pool_3x3', 3), ('skip_connect', 4), ('sep_conv_5x5', 0)], reduce_concat=[2, 3, 4, 5])")
ALL_NONE = "Genotype(normal=[" + ", ".join(f"('none', {e // 2})" for e in range(8)) + "], normal_concat=[2, 3, 4, 5], " \
           "reduce=[" + ", ".join(f"('none', {e // 2})" for e in range(8)) + "], reduce_concat=[2, 3, 4, 5])"


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_swap_network_is_one_stemless_reduction_cell_of_the_paper():
    """Structure of correlation.py's Network(3, 10, 1, g): no stem, one reduction cell at 6 channels
    built from the reduce cell, both inputs the image, 24x16x16 concatenated, GAP, Linear(24, 10)."""
    space = get_space("darts-swap")
    model = space.build(G, num_classes=10)
    assert isinstance(model.stem, nn.Identity) and len(model.cells) == 1
    cell = model.cells[0]
    assert cell.preprocess0.op[1].in_channels == 3 and cell.preprocess0.op[1].out_channels == 6
    assert cell.preprocess1.op[1].in_channels == 3
    assert model.classifier.in_features == 24 and model.classifier.out_features == 10
    out = {}
    cell.register_forward_hook(lambda m, a, o: out.setdefault("cell", o))
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 10)
    assert out["cell"].shape == (2, 24, 16, 16)
    # parameters by hand: preprocess 2 x (3*6 + BN 12); head 24*10 + 10; sep3 stride 2: 2 x (6*9 + 36 + 12);
    # dil5: 6*25 + 36 + 12; skip at stride 2 = FactorizedReduce: 2 x (6*3 + 6); sep5: 2 x (6*25 + 36 + 12)
    expected = 2 * 30 + 250 + 2 * (54 + 48) + (150 + 48) + 2 * 24 + 2 * (150 + 48)
    assert _params(model) == expected
    assert _params(space.build(ALL_NONE)) == 310  # the smallest: preprocess and head only


def test_swap_network_parameter_range_on_the_1000_set():
    """310-2,692 parameters over the 1,000 labelled genotypes (PROXIES.md §4)."""
    table = read_benchmark(shared_path("darts", "darts_1000_cifar10_valid.csv"))
    space = get_space("darts-swap")
    counts = [_params(space.build(space.canonical(a))) for a in table.archs]
    assert (min(counts), max(counts)) == (310, 2692)


def test_skeleton_variant_is_found_but_not_listed_as_a_space():
    assert "darts-swap" not in SPACES and get_space("darts-swap").skeleton == {"C": 3, "N": 1}
    assert get_space("darts").skeletons == {"eval": "darts", "swap": "darts-swap"}
    assert get_space("darts").proxy_networks["swap"] == "darts-swap"
    # same cells: parsing and canonical strings are the space's
    assert get_space("darts-swap").canonical(G) == get_space("darts").canonical(G)


def test_swap_block_specs_match_the_network():
    """The predicted R-C-B blocks are the Sequential(ReLU, Conv, BN) units the network has, in order."""
    space = get_space("darts-swap")
    rng = np.random.default_rng(3)
    for g in [G] + [dg.random_cell(rng) for _ in range(5)]:
        model = space.build(g)
        units = [m for m in model.modules() if isinstance(m, nn.Sequential) and len(m) == 3
                 and isinstance(m[0], nn.ReLU) and isinstance(m[2], nn.BatchNorm2d)]
        specs = space.block_specs(g, batch_size=1, image_size=32)
        assert len(specs) == len(units)
        assert [s.c_out for s in specs] == [u[2].num_features for u in units]
        assert specs[0].input_key == specs[1].input_key == "image"


@pytest.mark.parametrize("B", [1, 2, 7, 8, 15, 16, 17, 20, 21, 32, 63, 64, 65, 129])
def test_fast_pattern_count_equals_plain_unique(B):
    """The bit-packed count equals torch.unique over the columns, on random codes of any batch."""
    g = torch.Generator().manual_seed(B)
    for M in (1, 5, 3000):
        p = torch.rand(1, M, generator=g)  # per-neuron firing rates: many repeated patterns
        parts = [torch.rand(B, M, generator=g) < p for _ in range(3)]
        plain = torch.unique(torch.cat(parts, dim=1).T.to(torch.int8), dim=0).shape[0]
        assert distinct_patterns(parts) == plain


def test_pattern_keys_put_image_i_in_bit_i():
    codes = torch.zeros(70, 3, dtype=torch.bool)
    codes[0, 0] = codes[5, 1] = codes[66, 2] = True
    keys = pattern_keys(codes)
    assert keys.shape == (3, 2)
    assert keys[0].tolist() == [1, 0] and keys[1].tolist() == [32, 0] and keys[2].tolist() == [0, 4]


def test_swap_on_the_swap_network_counts_distinct_patterns():
    """A sanity bound: at most 2^16 patterns and at most the ReLU units; an all-none cell still has the
    preprocess ReLUs (the image's own sign pattern)."""
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    v = compute_all(network_factory("darts-swap", G, num_classes=10), x, None, seed=0, names=["swap"])["swap"]
    assert v[1] is None and 1 < v[0] <= min(2 ** 16, 2 * 3 * 32 * 32 + 8 * 6 * 32 * 32)
    again = compute_all(network_factory("darts-swap", G, num_classes=10), x, None, seed=0, names=["swap"])["swap"]
    assert again == v  # deterministic in the seed


def test_darts_cells_form_a_chain_for_per_cell_features():
    """AZ-NAS reads F_0 (the first cell's input) .. F_L (each cell's output): the DARTS cell takes
    the previous cell's output first, so the cells are a chain and AZ-NAS's components are finite."""
    model = get_space("darts").build(G, num_classes=10, C=4, N=3)
    feats = cell_features(model, torch.randn(4, 3, 16, 16))
    assert [tuple(f.shape[1:]) for f in feats] == [(12, 16, 16), (16, 16, 16), (32, 8, 8), (64, 4, 4)]
    got = compute_all(network_factory("darts", G, num_classes=10, C=4, N=3), torch.randn(8, 3, 16, 16), None,
                      seed=0, names=["az_expressivity", "az_progressivity", "az_trainability"])
    assert all(why is None and math.isfinite(v) for v, why in got.values()), got


def test_ingest_skeleton_swap_records_the_network_in_the_plan(tmp_path):
    from fixtures_data import write_darts_csv

    bench = write_darts_csv(tmp_path / "darts.csv", n=4)
    cfg = IngestConfig(store=str(tmp_path / "s.zarr"), dataset="digits", space="darts", skeleton="swap",
                       benchmark=str(bench), image_size=8, batch_size=1, proxies=False, device="cpu", progress=False,
                       accuracy_column="cifar10_valid")
    assert cfg.space == "darts-swap"
    run_ingest(cfg)
    store = open_store(str(tmp_path / "s.zarr"))
    assert store.plan.space == "darts-swap" and (store.plan.C, store.plan.N) == (3, 1)
    assert store.complete().all()


@pytest.mark.parametrize("space, skeleton, why", [("nb201", "swap", "has one"), ("darts", "tiny", "unknown --skeleton"),
                                                  ("darts-swap", "eval", "has one")])
def test_bad_skeletons_are_one_line_errors(tmp_path, space, skeleton, why):
    with pytest.raises(ConfigError, match=why):
        IngestConfig(store=str(tmp_path / "s.zarr"), dataset="digits", space=space, skeleton=skeleton)


def test_cli_bad_skeleton_exits_2_with_one_line(tmp_path, capsys):
    from eznas_store.cli import main

    code = main(["ingest", "--store", str(tmp_path / "s.zarr"), "--dataset", "digits", "--space", "nb201",
                 "--skeleton", "swap"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and "--skeleton" in err[0]
