"""The opt-in modern proxies (AZ-NAS's four components and aggregate, MeCo, ZiCo, SWAP):
finiteness and signs on tiny NB201 networks, the spec's cheap sanity checks, independent
plain-torch references for MeCo and SWAP, the rank aggregate, and NaN-plus-reason failures."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from eznas_store.collect.proxies.az_nas import (
    AZ_COMPONENTS,
    AZ_FLOORS,
    az_nas_against,
    az_nas_aggregate,
    floor_failed,
    layer_expressivity,
    pair_trainability,
)
from eznas_store.collect.proxies.features import cell_features
from eznas_store.collect.proxies.networks import nb201_factory
from eznas_store.collect.proxies.registry import MODERN_PROXY_NAMES, PROXIES, PROXY_NAMES
from eznas_store.collect.proxies.runner import compute_all, compute_proxy
from eznas_store.collect.proxies.swap import SWAP_REPEATS, distinct_patterns
from eznas_store.collect.proxies.zico import zico_from_gradients
from eznas_store.sources.spaces import nb201

CELL = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|nor_conv_1x1~0|avg_pool_3x3~1|nor_conv_3x3~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
SKIP_IDENTITY = "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
TINY = dict(num_classes=10, C=4, N=1)
SMALL = dict(num_classes=10, C=8, N=1)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(12, 3, 16, 16, generator=g), torch.randint(0, 10, (12,), generator=g)


@pytest.fixture(scope="module")
def small_scores(batch):
    images, labels = batch
    return compute_all(nb201_factory(CELL, **SMALL), images, labels, seed=0,
                       names=list(MODERN_PROXY_NAMES))


# ----------------------------------------------------------------------------- the table
def test_modern_proxies_are_an_opt_in_group(batch):
    assert MODERN_PROXY_NAMES == ("az_expressivity", "az_progressivity", "az_trainability",
                                  "az_complexity", "meco", "zico", "swap", "swap_reg")
    assert set(MODERN_PROXY_NAMES) <= set(PROXIES) and not set(MODERN_PROXY_NAMES) & set(PROXY_NAMES)
    for name in MODERN_PROXY_NAMES:
        assert PROXIES[name].doc and PROXIES[name].summary
    assert "Lee & Ham" in PROXIES["az_trainability"].doc and "Jiang" in PROXIES["meco"].doc
    assert "Li" in PROXIES["zico"].doc and "Peng" in PROXIES["swap_reg"].doc
    images, labels = batch
    default = compute_all(nb201_factory(CELL, **TINY), images[:4], labels[:4], seed=0)
    assert list(default) == list(PROXY_NAMES)  # the default set (what ingest stores) is unchanged


# ----------------------------------------------------------------------------- values and signs
def test_every_modern_proxy_is_finite_with_the_right_signs(small_scores, batch):
    for name, (value, reason) in small_scores.items():
        assert reason is None and math.isfinite(value), (name, reason)
    s = {n: v for n, (v, _) in small_scores.items()}
    # stem + 5 cells/blocks at N=1, channels 8, 8, 16, 16, 32, 32: s_E ≤ Σ ln C
    assert 0.0 < s["az_expressivity"] <= 2 * (math.log(8) + math.log(16) + math.log(32)) + 1e-5
    assert s["az_trainability"] <= 0.0
    assert -1e-4 <= s["meco"] and s["swap"] >= 1.0 and s["swap"] <= 2 ** batch[0].shape[0]
    assert 0.0 < s["swap_reg"] <= s["swap"] and s["zico"] > 0.0
    flops = compute_all(nb201_factory(CELL, **SMALL), *batch, seed=0, names=["flops"])["flops"][0]
    assert s["az_complexity"] == flops


def test_values_are_deterministic_and_shared_passes_agree(batch, small_scores):
    images, labels = batch
    factory = nb201_factory(CELL, **SMALL)
    for name in ("az_trainability", "meco", "swap", "zico"):
        assert compute_proxy(name, factory, images, labels, seed=0) == small_scores[name][0], name
    other = compute_all(factory, images, labels, seed=1, names=["az_expressivity", "meco", "swap"])
    assert all(other[n][0] != small_scores[n][0] for n in other)


def test_expressivity_lies_in_zero_to_log_c_per_map(batch):
    model = nb201.build(CELL, **SMALL).train()
    feats = cell_features(model, torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(1)))
    assert [f.shape[1] for f in feats] == [8, 8, 16, 16, 32, 32]
    for f in feats:
        e = layer_expressivity(f)
        assert -1e-6 <= e <= math.log(f.shape[1]) + 1e-6
    white = torch.randn(64, 6, 8, 8, generator=torch.Generator().manual_seed(2))
    assert layer_expressivity(white) == pytest.approx(math.log(6), abs=1e-2)
    assert math.isnan(layer_expressivity(torch.zeros(4, 3, 2, 2)))  # constant map: no spectrum


def test_trainability_of_an_identity_pair_is_minus_infinity():
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    assert pair_trainability(x, x * 1.0, g) == -math.inf
    # an orthogonal channel map has σ ≈ 1 (VᵀV/n ≈ I for many positions): t ≈ 0, its maximum
    x = torch.randn(16, 3, 32, 32, requires_grad=True)
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    y = torch.einsum("oc,bchw->bohw", q.float(), x)
    assert -1e-3 < pair_trainability(x, y, g) <= 0.0
    assert pair_trainability(x, 3.0 * y, g) == pytest.approx(-3 - 1 / 3 + 2, abs=0.05)


def test_identity_and_all_none_cells(batch):
    images, labels = batch
    ident = compute_all(nb201_factory(SKIP_IDENTITY, **TINY), images, labels, seed=0,
                        names=["az_trainability", "az_progressivity"])
    v, reason = ident["az_trainability"]
    assert math.isnan(v) and "-inf" in reason
    assert ident["az_progressivity"][0] <= 0.0  # the identity cell adds no expressivity
    none = compute_all(nb201_factory(ALL_NONE, **TINY), images, labels, seed=0,
                       names=list(MODERN_PROXY_NAMES))
    for name in ("az_expressivity", "az_progressivity"):  # all-zero maps: NaN ⇒ −∞
        assert math.isnan(none[name][0]) and "-inf" in none[name][1], name
    assert -1e6 < none["az_trainability"][0] < -1e5  # σ = 0 on the zero cells: t ≈ −1e6
    assert none["swap"][0] == 1.0 and none["zico"][0] == 0.0  # one pattern; the empty sum
    assert 0.0 <= none["meco"][0] < compute_all(nb201_factory(CELL, **TINY), images, labels,
                                                seed=0, names=["meco"])["meco"][0]


# ----------------------------------------------------------------------------- references
def _reference_meco(arch: str, image: torch.Tensor, seed: int) -> float:
    model = nb201.build(arch, **TINY)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in model.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    total = 0.0

    def hook(module, args, out):
        nonlocal total
        first = (out[0] if isinstance(out, tuple) else out)[0].detach().double().numpy()
        rows = first.reshape(first.shape[0], -1)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            corr = np.nan_to_num(np.atleast_2d(np.corrcoef(rows)), nan=0.0, posinf=0.0, neginf=0.0)
        lam = np.linalg.eigvals(corr).real.min()
        if np.isfinite(lam):
            total += float(lam)

    for m in model.modules():
        m.register_forward_hook(hook)
    with torch.no_grad():
        model.train()(image)
    return total


def test_meco_equals_a_plain_reference(batch):
    images, labels = batch
    got = compute_all(nb201_factory(CELL, **TINY), images, labels, seed=3, names=["meco"])["meco"][0]
    assert got == pytest.approx(_reference_meco(CELL, images[:1], 3), rel=1e-4, abs=1e-4)


def _reference_swap(arch: str, images: torch.Tensor, seed: int) -> float:
    model = nb201.build(arch, **TINY).train()
    g = torch.Generator().manual_seed(seed)
    counts = []
    for _ in range(SWAP_REPEATS):
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g))
                    if m.bias is not None:
                        m.bias.zero_()
        outs = []
        hooks = [m.register_forward_hook(lambda m, a, o: outs.append(o.flatten(1) > 0) if a[0].dim() == 4 else None)
                 for m in model.modules() if isinstance(m, nn.ReLU)]
        with torch.no_grad():
            model(images)
        for h in hooks:
            h.remove()
        a = torch.cat(outs, dim=1).numpy()  # (B, M)
        counts.append(np.unique(a.T, axis=0).shape[0])
    return float(np.mean(counts))


def test_swap_equals_a_plain_reference(batch):
    images, labels = batch
    got = compute_all(nb201_factory(CELL, **TINY), images[:8], labels[:8], seed=5, names=["swap"])
    assert got["swap"][0] == _reference_swap(CELL, images[:8], 5)


def test_distinct_patterns_over_many_images():
    g = torch.Generator().manual_seed(0)
    codes = [torch.rand(70, 40, generator=g) > 0.5, torch.rand(70, 9, generator=g) > 0.5]
    codes[1][:, :3] = codes[0][:, :3]  # three duplicated neurons across layers
    want = np.unique(torch.cat(codes, dim=1).numpy().T, axis=0).shape[0]
    assert distinct_patterns(codes) == want == 46  # two int64 keys per neuron
    for b in (63, 64):  # one key; at 64 images bit 63 is the sign bit
        few = [torch.rand(b, 500, generator=g) > 0.5]
        few[0][:, 1] = few[0][:, 0]
        assert distinct_patterns(few) == np.unique(few[0].numpy().T, axis=0).shape[0] == 499


def test_zico_from_gradients_by_hand():
    a = np.array([1.0, 2.0, 3.0, 0.0], dtype=np.float32)
    b = np.array([3.0, 2.0, -1.0, 0.0], dtype=np.float32)
    # per element (|a|+|b|)/|a−b| where σ ≠ 0: 4/2 + 4/4 = 3; the second layer has no gradient
    assert zico_from_gradients([[a, None], [b, None]]) == pytest.approx(math.log(3.0))


# ----------------------------------------------------------------------------- aggregate
def test_aggregate_is_the_sum_of_log_rank_fractions():
    table = {
        "az_expressivity": [3.0, 1.0, 2.0, 2.0],
        "az_progressivity": [0.1, 0.3, 0.2, -0.5],
        "az_trainability": [-1.0, float("nan"), -0.5, -0.2],  # NaN ranks lowest (−∞)
        "az_complexity": [10.0, 20.0, 30.0, 40.0],
        "meco": [0.0] * 4,  # extra columns are ignored
    }
    ranks = {"az_expressivity": [4, 1, 2.5, 2.5], "az_progressivity": [2, 4, 3, 1],
             "az_trainability": [2, 1, 3, 4], "az_complexity": [1, 2, 3, 4]}
    want = [sum(math.log(ranks[m][i] / 4) for m in AZ_COMPONENTS) for i in range(4)]
    np.testing.assert_allclose(az_nas_aggregate(table), want, rtol=1e-12)
    with pytest.raises(KeyError, match="az_complexity"):
        az_nas_aggregate({m: table[m] for m in AZ_COMPONENTS[:3]})


# ----------------------------------------------------------------------------- failures
class _NoCells(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 10))

    def forward(self, x):
        return self.body(x)


def test_failures_are_nan_with_a_reason(batch):
    images, labels = batch
    got = compute_all(_NoCells(), images, labels, seed=0, names=list(MODERN_PROXY_NAMES))
    for name in ("az_expressivity", "az_progressivity", "az_trainability"):
        assert math.isnan(got[name][0]) and "cells" in got[name][1], name
    for name in ("az_complexity", "meco", "zico", "swap", "swap_reg"):
        assert got[name][1] is None and math.isfinite(got[name][0]), name
    no_relu = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    v, reason = compute_all(no_relu, images, labels, seed=0, names=["swap"])["swap"]
    assert math.isnan(v) and "ReLU" in reason
    v, reason = compute_all(nb201_factory(CELL, **TINY), images, None, seed=0, names=["zico"])["zico"]
    assert math.isnan(v) and "needs labels" in reason
    for name, (v, reason) in compute_all(nb201_factory(CELL, **TINY), images[:1], labels[:1], seed=0,
                                         names=["zico"]).items():
        assert math.isnan(v) and "2 images" in reason


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=2, max_value=9), st.integers(min_value=0, max_value=10_000))
def test_ranking_one_network_against_the_others_is_the_population_aggregate(n, seed):
    """``az_nas_against`` (a search scores cells one at a time) = ``az_nas_aggregate``'s value
    for that network over the reference and it, ties and NaN (= −∞) included."""
    rng = np.random.default_rng(seed)
    table = {m: rng.integers(0, 4, n).astype(float) for m in AZ_COMPONENTS}  # small ints: many ties
    table["az_trainability"][rng.random(n) < 0.3] = np.nan
    full = az_nas_aggregate(table)
    for i in range(n):
        ref = {m: np.delete(table[m], i) for m in AZ_COMPONENTS}
        one = az_nas_against({m: table[m][i] for m in AZ_COMPONENTS}, ref)
        assert math.isclose(one, full[i], rel_tol=1e-12, abs_tol=1e-12)


def test_failed_components_take_a_floor_that_ranks_lowest_as_the_reference():
    """A formula cannot compute with −∞: a failed component becomes a finite floor below every
    finite value, so ranks (and the aggregate) are the reference's."""
    table = {"az_expressivity": np.array([30.0, np.nan, 0.0]), "az_progressivity": np.array([-4.2, -np.inf, 0.0]),
             "az_trainability": np.array([-np.inf, -1e6 + 2, -0.1]), "az_complexity": np.array([1.0, 2.0, 3.0]),
             "meco": np.array([np.nan, 1.0, 2.0])}
    floored = floor_failed(table)
    assert all(np.isfinite(floored[m]).all() for m in AZ_FLOORS)
    assert np.isnan(floored["meco"][0])  # not an AZ component: still missing
    for m, floor in AZ_FLOORS.items():
        ok = np.isfinite(table[m])
        assert (floored[m][~ok] == floor).all() and (floored[m][ok] > floor).all()
    np.testing.assert_allclose(az_nas_aggregate(floored), az_nas_aggregate(table), rtol=1e-12)
