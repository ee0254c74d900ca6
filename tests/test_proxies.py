"""The 13 Suite-Zero proxies: finiteness, NASLib semantics against independent references,
known values, invariances, failure handling, and block-restricted variants vs terminals."""

from __future__ import annotations

import math
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from eznas_store.collect.statistics import collect
from eznas_store.terminals import CollectConfig
from eznas_store.sources.datasets import sample_batch
from eznas_store.errors import ConfigError, UnknownNameError
from eznas_store.collect.proxies.blocks import BLOCK_PROXIES, block_variant, from_terminals
from eznas_store.collect.proxies.jacobian import _epe_score, _jacov_score
from eznas_store.collect.proxies.networks import nb201_factory
from eznas_store.collect.proxies.nwot import nwot_logdet
from eznas_store.collect.proxies.registry import PROXIES, PROXY_NAMES
from eznas_store.collect.proxies.runner import compute_all, compute_proxy
from eznas_store.collect.proxies.synflow import synflow_sum
from eznas_store.sources.spaces import nb201

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

CELL = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|nor_conv_1x1~0|avg_pool_3x3~1|nor_conv_3x3~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
TINY = dict(num_classes=10, C=4, N=1)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks gain nothing from intra-op threads, and on a busy machine two
    OpenMP threads can make each tiny pass 10-100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def batch():
    b = sample_batch("digits", None, batch_size=4, seed=0, image_size=8)
    return b.images, b.labels


@pytest.fixture(scope="module")
def tiny_scores(batch):
    images, labels = batch
    return compute_all(nb201_factory(CELL, **TINY), images, labels, seed=0)


def small_cnn(bn: bool = True) -> nn.Module:
    """A non-NB201 model: conv stack with a global pool and a linear head."""
    layers: list[nn.Module] = [nn.Conv2d(3, 6, 3, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(6))
    layers += [nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1, bias=False)]
    if bn:
        layers.append(nn.BatchNorm2d(8))
    layers += [nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)]
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------- the table
def test_table_lists_the_13_suite_zero_proxies():
    assert PROXY_NAMES == ("epe_nas", "fisher", "flops", "grad_norm", "grasp", "jacov", "l2_norm",
                           "nwot", "params", "plain", "snip", "synflow", "zen")
    assert {n for n, s in PROXIES.items() if s.needs_labels} == {
        "epe_nas", "fisher", "grad_norm", "grasp", "plain", "snip"}
    for name, spec in PROXIES.items():
        assert spec.name == name and spec.doc and callable(spec.fn)
    for name in ("synflow", "snip", "grasp", "fisher", "grad_norm", "plain"):
        assert "Abdelfattah" in PROXIES[name].doc
    assert "Mellor" in PROXIES["jacov"].doc and "v1" in PROXIES["jacov"].doc
    assert "Mellor" in PROXIES["nwot"].doc and "Lopes" in PROXIES["epe_nas"].doc
    assert "Lin" in PROXIES["zen"].doc


# ----------------------------------------------------------------------------- basics
def test_every_proxy_is_finite_on_a_tiny_nb201(tiny_scores):
    assert list(tiny_scores) == list(PROXY_NAMES)
    for name, (value, reason) in tiny_scores.items():
        assert reason is None, (name, reason)
        assert isinstance(value, float) and math.isfinite(value), name


def test_single_proxy_equals_its_value_in_compute_all(batch, tiny_scores):
    """Sharing a pass between proxies must not change any value."""
    images, labels = batch
    factory = nb201_factory(CELL, **TINY)
    for name in PROXY_NAMES:
        single = compute_proxy(name, factory, images, labels, seed=0)
        assert single == pytest.approx(tiny_scores[name][0], rel=1e-9, abs=1e-12), name
        direct = PROXIES[name].fn(factory(0).train(), images, labels, seed=0)
        assert direct == pytest.approx(single, rel=1e-9, abs=1e-12), name


def test_deterministic_in_the_seed(batch, tiny_scores):
    images, labels = batch
    factory = nb201_factory(CELL, **TINY)
    again = compute_all(factory, images, labels, seed=0)
    assert again == tiny_scores
    other = compute_all(factory, images, labels, seed=1)
    changed = [n for n in PROXY_NAMES if other[n][0] != tiny_scores[n][0]]
    assert set(changed) >= {"synflow", "snip", "grasp", "zen", "l2_norm", "jacov"}
    assert "params" not in changed and "flops" not in changed


def test_a_model_is_deep_copied_and_reinitialised(batch, tiny_scores):
    images, labels = batch
    model = nb201.build(CELL, **TINY)
    before = [p.detach().clone() for p in model.parameters()]
    got = compute_all(model, images, labels, seed=0)
    assert got == tiny_scores  # same EZNAS init as the factory's
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    kept = compute_all(model, images, labels, seed=0, reinit=False, names=["l2_norm"])
    norm = sum(float(m.weight.detach().norm()) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert kept["l2_norm"][0] == pytest.approx(norm, rel=1e-6)


def test_any_logit_model_works(batch):
    images, labels = batch
    scores = compute_all(small_cnn(), images, labels, seed=0)
    assert all(r is None and math.isfinite(v) for v, r in scores.values()), scores


# ----------------------------------------------------------------------------- params / flops
def test_params_and_flops_of_known_cells():
    x = torch.zeros(2, 3, 32, 32)
    none = compute_all(nb201_factory(ALL_NONE), x, None, seed=0, names=["params"])
    assert none["params"] == (pytest.approx(0.073306, abs=1e-12), None)
    # Suite-Zero's values (NASLib/tensorwatch) for two cells, exactly
    key_cell = "|avg_pool_3x3~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|avg_pool_3x3~1|nor_conv_1x1~2|"
    got = compute_all(nb201_factory(key_cell), x, None, seed=0, names=["params", "flops"])
    assert got["params"][0] == pytest.approx(0.129306, abs=1e-12)
    assert got["flops"][0] == pytest.approx(19.248832, abs=1e-9)
    all3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    got = compute_all(nb201_factory(all3), x, None, seed=0, names=["params", "flops"])
    assert got["params"][0] == pytest.approx(1.531546, abs=1e-12)
    assert got["flops"][0] == pytest.approx(222.860992, abs=1e-9)


# ----------------------------------------------------------------------------- synflow
def _chain(a: float = 1.0, b: float = 1.0, bn: bool = False) -> nn.Module:
    torch.manual_seed(0)
    c1, c2 = nn.Conv2d(3, 5, 3, bias=False), nn.Conv2d(5, 4, 3, bias=False)
    lin = nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        c1.weight.mul_(a)
        c2.weight.mul_(b)
    mods = [c1] + ([nn.BatchNorm2d(5)] if bn else []) + [nn.ReLU(), c2] + \
        ([nn.BatchNorm2d(4)] if bn else []) + [nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), lin]
    return nn.Sequential(*mods)


def test_synflow_is_positive_rescaling_invariant_and_ignores_bn_and_signs():
    x = torch.randn(2, 3, 8, 8)
    base = synflow_sum(_chain(), x, seed=0, reinit=False)
    assert base > 0
    # layer-wise rescaling α, 1/α conserves synaptic flow (Tanaka et al. 2020)
    assert synflow_sum(_chain(3.0, 1 / 3.0), x, seed=0, reinit=False) == pytest.approx(base, rel=1e-6)
    assert synflow_sum(_chain(bn=True), x, seed=0, reinit=False) == pytest.approx(base, rel=1e-12)
    flipped = _chain()
    with torch.no_grad():
        flipped[0].weight.neg_()
    assert synflow_sum(flipped, x, seed=0, reinit=False) == pytest.approx(base, rel=1e-12)
    # the proxy is log S (Suite-Zero's unit); it does not depend on the image values
    assert compute_proxy("synflow", _chain(), x, None, seed=0, reinit=False) == pytest.approx(math.log(base))
    assert compute_proxy("synflow", _chain(), x + 5, None, seed=0, reinit=False) == pytest.approx(math.log(base))


def test_synflow_is_zero_without_a_path(batch):
    images, _ = batch
    value, reason = compute_all(nb201_factory(ALL_NONE, **TINY), images, None, seed=0,
                                names=["synflow"])["synflow"]
    assert (value, reason) == (0.0, None)  # NASLib's ZeroCost keeps 0 rather than log 0


# ----------------------------------------------------------------------------- nwot
def test_nwot_hand_example():
    # two images, 3 units: codes 110 and 100 agree on 2 units → K = [[3, 2], [2, 3]], det 5
    assert nwot_logdet([np.array([[1, 1, 0], [1, 0, 0]])]) == pytest.approx(math.log(5.0))
    # layers add: a second layer with codes 1 / 0 adds [[1, 0], [0, 1]] → det(4,2;2,4) = 12
    two = [np.array([[1, 1, 0], [1, 0, 0]]), np.array([[1], [0]])]
    assert nwot_logdet(two) == pytest.approx(math.log(12.0))
    # identical codes: K singular → -inf (compute_all reports NaN with a reason)
    assert nwot_logdet([np.array([[1, 0], [1, 0]])]) == -math.inf


def _naslib_style_nwot(model: nn.Module, x: torch.Tensor) -> float:
    """Reference: forward hooks on every ReLU, K += c cᵀ + (1−c)(1−c)ᵀ with two matmuls."""
    K = np.zeros((x.shape[0], x.shape[0]))

    def hook(module, inp, out):
        c = (inp[0].reshape(inp[0].shape[0], -1) > 0).double()
        nonlocal K
        K = K + (c @ c.T).numpy() + ((1 - c) @ (1 - c).T).numpy()

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    model(x)
    for h in hs:
        h.remove()
    return float(np.linalg.slogdet(K)[1])


def test_nwot_matches_a_literal_reference(batch, tiny_scores):
    images, _ = batch
    ref = _naslib_style_nwot(nb201_factory(CELL, **TINY)(0).train(), images)
    assert tiny_scores["nwot"][0] == pytest.approx(ref, rel=1e-12)


# ----------------------------------------------------------------------------- jacobian proxies
def test_jacov_equals_the_general_eigen_solver():
    jac = np.random.default_rng(0).normal(size=(6, 20))
    v = np.linalg.eig(np.corrcoef(jac))[0].real
    ref = -np.sum(np.log(v + 1e-5) + 1.0 / (v + 1e-5))
    assert _jacov_score(jac) == pytest.approx(ref, rel=1e-9)


def test_epe_nas_per_class_rule():
    rng = np.random.default_rng(1)
    jac = rng.normal(size=(5, 12))
    labels = np.array([0, 0, 1, 0, 2])
    c0 = np.corrcoef(jac[[0, 1, 3]])
    expected = abs(np.sum(np.log(np.abs(c0) + 1e-5))) + 2 * abs(math.log(1 + 1e-5))
    assert _epe_score(jac, labels, 10) == pytest.approx(expected, rel=1e-12)
    # > 100 classes: s_c / n_c, single-sample classes skipped, pairwise differences
    # here only class 0 is left, so there is no pairwise difference
    assert _epe_score(jac, labels, 120) == pytest.approx(0.0, abs=1e-12)
    labels2 = np.array([0, 0, 1, 1, 1])
    s_a = np.sum(np.log(np.abs(np.corrcoef(jac[[0, 1]])) + 1e-5)) / 2
    s_b = np.sum(np.log(np.abs(np.corrcoef(jac[[2, 3, 4]])) + 1e-5)) / 3
    assert _epe_score(jac, labels2, 120) == pytest.approx(2 * abs(s_a - s_b) / 2, rel=1e-12)


# ----------------------------------------------------------------------------- loss proxies
def _loss_grads(model, images, labels):
    model.zero_grad()
    F.cross_entropy(model(images), labels).backward()
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def test_snip_equals_the_mask_gradient(batch, tiny_scores):
    """SNIP as Lee et al. define it: |∂L/∂m| at m = 1 with w ⊙ m in the forward."""
    images, labels = batch
    model = nb201_factory(CELL, **TINY)(0).train()
    masks = []
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.mask = torch.ones_like(m.weight, requires_grad=True)
            masks.append(m.mask)
            if isinstance(m, nn.Conv2d):
                m.forward = types.MethodType(
                    lambda self, x: F.conv2d(x, self.weight * self.mask, self.bias, self.stride,
                                             self.padding, self.dilation, self.groups), m)
            else:
                m.forward = types.MethodType(lambda self, x: F.linear(x, self.weight * self.mask, self.bias), m)
    grads = torch.autograd.grad(F.cross_entropy(model(images), labels), masks)
    ref = sum(float(g.abs().double().sum()) for g in grads)
    assert tiny_scores["snip"][0] == pytest.approx(ref, rel=1e-6)


def test_grad_norm_and_plain_definitions(batch, tiny_scores):
    images, labels = batch
    layers = _loss_grads(nb201_factory(CELL, **TINY)(0).train(), images, labels)
    assert tiny_scores["grad_norm"][0] == pytest.approx(sum(float(l.weight.grad.norm()) for l in layers), rel=1e-6)
    assert tiny_scores["plain"][0] == pytest.approx(
        sum(float((l.weight.grad * l.weight).detach().double().sum()) for l in layers), rel=1e-6, abs=1e-9)


def test_fisher_matches_a_channel_broadcast_reference(batch, tiny_scores):
    """Reference: an Identity after each layer with a module backward hook, per-channel
    ½·mean_n(Σ_hw a·g)² broadcast to the channel's weights and summed (NASLib)."""
    images, labels = batch
    model = nb201_factory(CELL, **TINY)(0).train()
    store = {}
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.dummy = nn.Identity()
            orig = m.forward

            def fwd(self, x, _orig=orig):
                self.act = self.dummy(_orig(x))
                return self.act

            def hook(module, gin, gout, layer=m):
                a, g = layer.act.detach(), gout[0].detach()
                gnk = (a * g).sum((2, 3)) if a.dim() == 4 else a * g
                store[layer] = gnk.pow(2).mean(0).mul(0.5)

            m.forward = types.MethodType(fwd, m)
            m.dummy.register_full_backward_hook(hook)
    F.cross_entropy(model(images), labels).backward()
    ref = 0.0
    for layer, d in store.items():
        ref += float(d.abs().double().sum()) * int(np.prod(layer.weight.shape[1:]))
    assert tiny_scores["fisher"][0] == pytest.approx(ref, rel=1e-5)


def test_grasp_matches_the_two_pass_algorithm(batch, tiny_scores):
    images, labels = batch
    model = nb201_factory(CELL, **TINY)(0).train()
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    grad_w = torch.autograd.grad(F.cross_entropy(model(images), labels), weights)
    grad_f = torch.autograd.grad(F.cross_entropy(model(images), labels), weights, create_graph=True)
    z = sum((gw.detach() * gf).sum() for gw, gf in zip(grad_w, grad_f))
    z.backward()
    ref = sum(float((-w.detach() * w.grad).double().sum()) for w in weights)
    assert tiny_scores["grasp"][0] == pytest.approx(ref, rel=1e-4, abs=1e-8)


# ----------------------------------------------------------------------------- zen
def test_zen_reads_only_the_batch_shape(batch, tiny_scores):
    images, labels = batch
    other = compute_all(nb201_factory(CELL, **TINY), torch.randn_like(images), labels, seed=0,
                        names=["zen"])
    assert other["zen"] == tiny_scores["zen"]


# ----------------------------------------------------------------------------- failures
class _NaNHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = small_cnn()

    def forward(self, x):
        return self.body(x) * float("nan")


class _Broken(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        raise RuntimeError("this network cannot run")


def test_failures_are_nan_with_a_reason_never_an_exception(batch):
    images, labels = batch
    for model in (_NaNHead(), _Broken()):
        scores = compute_all(model, images, labels, seed=0)
        assert list(scores) == list(PROXY_NAMES)
        for name, (value, reason) in scores.items():
            assert (math.isfinite(value) and reason is None) or (math.isnan(value) and reason), name
    nan_head = compute_all(_NaNHead(), images, labels, seed=0)
    for name in ("jacov", "epe_nas", "snip", "grad_norm", "grasp", "synflow"):
        assert math.isnan(nan_head[name][0]) and name in nan_head[name][1], name
    assert nan_head["zen"][1] is None  # zen reads the features before the (NaN) head
    broken = compute_all(_Broken(), images, labels, seed=0)
    assert all(math.isnan(v) and "cannot run" in r for n, (v, r) in broken.items()
               if n not in ("l2_norm", "zen"))  # l2_norm needs no forward; zen: no pooling
    # a proxy's own precondition: zen needs a global average pooling
    no_pool = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))
    no_pool(images)
    v, r = compute_all(no_pool, images, labels, seed=0, names=["zen"])["zen"]
    assert math.isnan(v) and "AdaptiveAvgPool2d" in r
    assert math.isnan(compute_proxy("jacov", _NaNHead(), images, labels, seed=0))


def test_labels_missing_and_unknown_names(batch):
    images, _ = batch
    scores = compute_all(nb201_factory(CELL, **TINY), images, None, seed=0)
    for name, (value, reason) in scores.items():
        if PROXIES[name].needs_labels:
            assert math.isnan(value) and "needs labels" in reason
        else:
            assert reason is None and math.isfinite(value)
    with pytest.raises(ConfigError, match="needs labels"):
        compute_proxy("snip", nb201_factory(CELL, **TINY), images, None, seed=0)
    with pytest.raises(UnknownNameError, match="unknown proxy"):
        compute_all(nb201_factory(CELL, **TINY), images, None, seed=0, names=["synflw"])
    with pytest.raises(ConfigError):
        compute_all(lambda seed: "not a model", images, None, seed=0, names=["params"])


# ----------------------------------------------------------------------------- terminals
@pytest.mark.parametrize("structure", ["rcb", "cbr"])
def test_block_variants_from_terminals_match_the_network(batch, structure):
    images, _ = batch
    model = nb201.build(CELL, structure=structure, **TINY)
    stats = collect(model, images, config=CollectConfig(batch_size=4, structure=structure), init_seed=7)

    def factory(seed):
        return nb201.build(CELL, structure=structure, **TINY)

    from eznas_store.collect.statistics import reinitialise

    def eznas(seed):
        m = factory(seed)
        reinitialise(m, torch.Generator().manual_seed(seed))
        return m

    for name in BLOCK_PROXIES:
        got = from_terminals(name, stats.blocks, structure=structure)
        want = block_variant(name, eznas, images, seed=7, structure=structure)
        assert got == pytest.approx(want, rel=1e-9), name
    # the block variant is a different number from the full proxy (stem, shortcuts, head)
    full = compute_all(eznas, images, None, seed=7, names=["l2_norm"])["l2_norm"][0]
    assert from_terminals("l2_norm", stats.blocks, structure=structure) < full
    with pytest.raises(UnknownNameError, match="no block-restricted variant"):
        from_terminals("synflow", stats.blocks)


# ----------------------------------------------------------------------------- real data
def test_params_and_flops_equal_suite_zero_on_real_cells():
    path = SHARED_DATA / "suite-zero" / "zc_nasbench201.json.gz"
    if not path.exists():
        pytest.skip(f"{path} not found: this test reads the real Suite-Zero table (see SOURCES.md)")
    from eznas_store.sources.suitezero import read_zc

    table = read_zc(path)["cifar10"]
    rng = np.random.default_rng(0)
    x = torch.zeros(1, 3, 32, 32)
    for row in rng.choice(len(table), 4, replace=False):
        got = compute_all(nb201_factory(table.archs[row]), x, None, seed=0, names=["params", "flops"])
        assert got["params"][0] == pytest.approx(table.proxies["params"][row], abs=1e-9)
        assert got["flops"][0] == pytest.approx(table.proxies["flops"][row], abs=1e-9)
