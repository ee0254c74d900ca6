"""VKDNW: its parts against independent references, the pass, and the table-level ranks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import rankdata
from torch import nn

from eznas_store.collect import (OPT_IN_PROXY_NAMES, PROXIES, PROXY_NAMES, VKDNW_PROXY_NAMES, compute_all,
                                 nb201_factory, proxy_card, vkdnw_aggregate, vkdnw_single)
from eznas_store.collect.proxies.vkdnw import (categorical_cholesky, decile_entropy, fisher_spectrum,
                                               scalar_jacobian)

CELL = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"


def _net() -> nn.Module:
    """Every probed kind: conv with bias, strided/dilated/padded conv, BN with and without
    affine, a linear layer with and without bias."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 5, 3, stride=2, padding=2, dilation=2, bias=False), nn.BatchNorm2d(5, affine=False), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 6, bias=False), nn.ReLU(), nn.Linear(6, 4))
    with torch.no_grad():  # running statistics that are not the identity
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
    return net.eval()


def _reference_jacobian(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """d logit_k / d θ.flatten()[0] per sample, one plain autograd call per sample and class."""
    params = list(net.parameters())
    rows = []
    for b in range(x.shape[0]):
        out = net(x[b:b + 1])[0]
        per_class = []
        for k in range(out.shape[0]):
            grads = torch.autograd.grad(out[k], params, retain_graph=True)
            per_class.append(torch.stack([g.reshape(-1)[0] for g in grads]))
        rows.append(torch.stack(per_class))
    return torch.stack(rows)


def test_scalar_jacobian_matches_per_sample_autograd() -> None:
    net = _net()
    x = torch.randn(5, 3, 9, 9, generator=torch.Generator().manual_seed(1))
    jac, logits = scalar_jacobian(net, x, chunk=2)
    ref = _reference_jacobian(net, x)
    assert jac.shape == (5, 4, len(list(net.parameters())))
    torch.testing.assert_close(jac, ref, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(logits, net(x).detach())


DARTS_GENOTYPE = ("Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 1), ('dil_conv_3x3', 0), "
                  "('max_pool_3x3', 1), ('sep_conv_5x5', 2), ('skip_connect', 0), ('dil_conv_5x5', 3), "
                  "('avg_pool_3x3', 1)], normal_concat=[2, 3, 4, 5], reduce=[('sep_conv_3x3', 0), "
                  "('skip_connect', 1), ('dil_conv_3x3', 0), ('max_pool_3x3', 1), ('sep_conv_5x5', 2), "
                  "('skip_connect', 0), ('dil_conv_5x5', 3), ('avg_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])")


def test_scalar_jacobian_on_darts_separable_and_shifted_convs() -> None:
    """DARTS's separable convs convolve their depthwise child's output and FactorizedReduce's
    second conv a shifted input: the probe must see what each weight sees (``conv_input``)."""
    from eznas_store.sources.spaces.darts import build

    torch.manual_seed(0)
    net = build(DARTS_GENOTYPE, num_classes=3, C=2, N=3).eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    jac, _ = scalar_jacobian(net, x)
    torch.testing.assert_close(jac, _reference_jacobian(net, x), rtol=1e-3, atol=1e-6)


def test_a_conv_that_transforms_its_input_unannounced_is_refused() -> None:
    class Shifted(nn.Conv2d):
        def forward(self, x):
            return super().forward(x[:, :, 1:, 1:])

    net = nn.Sequential(Shifted(3, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2)).eval()
    with pytest.raises(ValueError, match="conv_input"):
        scalar_jacobian(net, torch.randn(2, 3, 4, 4))


def test_cholesky_factor_of_the_smoothed_categorical_covariance() -> None:
    logits = torch.randn(7, 6, generator=torch.Generator().manual_seed(2)) * 3
    L = categorical_cholesky(logits, alpha=0.05)
    p = torch.softmax(logits.double(), 1) * 0.95 + 0.05 / 6
    cov = torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)
    torch.testing.assert_close(L @ L.transpose(1, 2), cov, rtol=1e-10, atol=1e-12)
    assert torch.all(torch.triu(L, diagonal=1) == 0) and torch.all(L[:, :, -1] == 0)


def test_fisher_is_the_authors_L_times_J() -> None:
    g = torch.Generator().manual_seed(3)
    jac, logits = torch.randn(4, 5, 8, generator=g), torch.randn(4, 5, generator=g)
    a = categorical_cholesky(logits) @ jac.double()
    fisher = sum(a[b].T @ a[b] for b in range(4)) / 4
    want = np.sort(np.linalg.eigvalsh(fisher.numpy()))[::-1]
    np.testing.assert_allclose(fisher_spectrum(jac, logits), want, rtol=1e-9, atol=1e-12)


def test_decile_entropy() -> None:
    assert decile_entropy(np.full(50, 3.0)) == pytest.approx(math.log(9), abs=1e-9)
    lam = np.linspace(1, 100, 101)
    q = np.quantile(lam, np.arange(1, 10) / 10)
    t = q / q.sum()
    assert decile_entropy(lam) == pytest.approx(float(-(t * np.log(t)).sum()), rel=1e-8)
    assert decile_entropy(np.r_[np.zeros(95), np.ones(5)]) < 0.5  # a spiky spectrum: low entropy
    with pytest.raises(FloatingPointError):
        decile_entropy([1.0, math.nan])


def test_registered_opt_in_and_its_pass_on_nb201() -> None:
    assert VKDNW_PROXY_NAMES == ("vkdnw", "vkdnw_tensors")
    assert set(VKDNW_PROXY_NAMES) <= set(PROXIES) and set(VKDNW_PROXY_NAMES) <= set(OPT_IN_PROXY_NAMES)
    assert not set(VKDNW_PROXY_NAMES) & set(PROXY_NAMES)
    assert "Tybl" in PROXIES["vkdnw"].doc and PROXIES["vkdnw_tensors"].head_free and not PROXIES["vkdnw"].head_free
    assert "eval mode" in proxy_card("vkdnw", 8)["protocol"]
    factory = nb201_factory(CELL, num_classes=5, C=4, N=1)
    images = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    got = compute_all(factory, images, None, seed=3, names=list(VKDNW_PROXY_NAMES))
    (v, why), (n, why_n) = got["vkdnw"], got["vkdnw_tensors"]
    assert why is None and why_n is None and 0 < v <= math.log(9)
    assert n == len(list(factory(0).parameters()))
    assert compute_all(factory, images, None, seed=3, names=["vkdnw"])["vkdnw"][0] == v  # deterministic
    assert compute_all(factory, images, None, seed=4, names=["vkdnw"])["vkdnw"][0] != v  # the seed's init


def test_unsupported_parameters_fail_with_a_reason() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.Flatten(), nn.LazyLinear(3))
    net(torch.zeros(1, 3, 6, 6))
    got = compute_all(lambda seed: net, torch.randn(2, 3, 6, 6), None, seed=0, names=["vkdnw"])
    value, reason = got["vkdnw"]
    assert math.isnan(value) and "GroupNorm" in reason


def test_vkdnw_single_is_a_dense_lexicographic_rank() -> None:
    vals = {"vkdnw_tensors": [10, 5, 10, 5, 10, 7], "vkdnw": [0.3, 0.9, 0.1, 0.9, math.nan, 0.0]}
    # (5, .9) ×2 → 1; (7, 0) → 2; (10, nan=-inf) → 3; (10, .1) → 4; (10, .3) → 5
    np.testing.assert_array_equal(vkdnw_single(vals), [5, 1, 4, 1, 3, 2])
    with pytest.raises(KeyError, match="vkdnw_tensors"):
        vkdnw_single({"vkdnw": [1.0]})


def test_vkdnw_aggregate_sums_log_ranks() -> None:
    rng = np.random.default_rng(5)
    n = 9
    vals = {"vkdnw_tensors": rng.integers(3, 6, n).astype(float), "vkdnw": rng.uniform(0, 2, n),
            "az_expressivity": rng.normal(size=n), "az_trainability": rng.normal(size=n),
            "az_complexity": rng.uniform(1, 5, n), "jacov": rng.normal(size=n)}
    vals["jacov"][2] = math.nan  # the lowest rank
    want = np.log(vkdnw_single(vals) / n)
    for m in ("az_expressivity", "az_trainability", "az_complexity"):
        want += np.log(rankdata(vals[m]) / n)
    jac = np.where(np.isnan(vals["jacov"]), -np.inf, vals["jacov"])
    want += np.log(rankdata(jac) / n)
    np.testing.assert_allclose(vkdnw_aggregate(vals), want)
    # NASLib's flops, where present, is the FLOPs term
    with_flops = {**vals, "flops": vals["az_complexity"][::-1].copy()}
    assert not np.allclose(vkdnw_aggregate(with_flops), want)
    with pytest.raises(KeyError, match="jacov"):
        vkdnw_aggregate({k: v for k, v in vals.items() if k != "jacov"})
