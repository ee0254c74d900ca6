"""The collector against a hand-computed network, and derived terminals against measured ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from eznas_store.collect.statistics import collect, derive_raw, find_blocks, make_inputs
from eznas_store.terminals import CollectConfig
from eznas_store.sources.spaces import nb201


def _bn_backward(g, xhat, var, eps):
    """Train-mode BatchNorm backward (weight 1) over all but the channel axis."""
    axes = (0, 2, 3)
    return (g - g.mean(axes, keepdims=True) - xhat * (g * xhat).mean(axes, keepdims=True)) / np.sqrt(var + eps)


def test_hand_computed_single_block():
    """One ReLU→Conv1×1→BN block, a linear head: every terminal from closed-form formulas."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Sequential(nn.ReLU(), nn.Conv2d(1, 1, 1, bias=False), nn.BatchNorm2d(1)),
                          nn.Flatten(), nn.Linear(2, 1))
    x = torch.tensor([[[[1.0, -2.0]]], [[[0.5, 3.0]]]])  # B=2, C=1, H=1, W=2
    stats = collect(model, x, config=CollectConfig(batch_size=2, perturb_scale=0.5), init_seed=3, full=True)
    (block,) = stats.blocks
    t = {k: v.double().numpy() for k, v in block.tensors.items()}
    w = float(t["wt"].reshape(()))
    v = model[2].weight.detach().double().numpy().reshape(1, 1, 1, 2)
    eps = model[0][2].eps
    inputs = make_inputs(x, perturb_scale=0.5, seed=0)
    for name in "DNP":
        xin = inputs[name].double().numpy()
        pre = np.maximum(xin, 0)
        y = w * pre
        mu, var = y.mean((0, 2, 3), keepdims=True), y.var((0, 2, 3), keepdims=True)
        xhat = (y - mu) / np.sqrt(var + eps)
        g = np.broadcast_to(v, xhat.shape)  # d(sum logits)/d act
        dy = _bn_backward(g, xhat, var, eps)
        np.testing.assert_allclose(t[f"inpact_{name}"], xin, rtol=1e-6)
        np.testing.assert_allclose(t[f"preact_{name}"], pre, rtol=1e-6)
        np.testing.assert_allclose(t[f"act_{name}"], xhat, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(t[f"actgrad_{name}"], g, rtol=1e-6)
        np.testing.assert_allclose(t[f"preactgrad_{name}"], dy * w, rtol=1e-3, atol=1e-6)
        np.testing.assert_allclose(t[f"inpactgrad_{name}"], dy * w * (xin > 0), rtol=1e-3, atol=1e-6)
        np.testing.assert_allclose(t[f"wtgrad_{name}"].reshape(()), (dy * pre).sum(), rtol=1e-3, atol=1e-6)


def test_reinit_follows_eznas_and_is_seeded():
    m = nb201.build("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|none~0|none~1|none~2|", num_classes=10, C=4, N=1)
    a = collect(m, torch.randn(1, 3, 8, 8), config=CollectConfig(), init_seed=7)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            assert torch.all(mod.weight == 1) and torch.all(mod.bias == 0)
    b = collect(m, torch.randn(1, 3, 8, 8) * 0 + 1, config=CollectConfig(), init_seed=7)
    assert torch.equal(a.blocks[0].tensors["wt"], b.blocks[0].tensors["wt"])
    c = collect(m, torch.randn(1, 3, 8, 8), config=CollectConfig(), init_seed=8)
    assert not torch.equal(a.blocks[0].tensors["wt"], c.blocks[0].tensors["wt"])


@pytest.mark.parametrize("structure", ["rcb", "cbr"])
def test_derived_terminals_equal_measured(structure):
    arch = "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
    m = nb201.build(arch, num_classes=10, C=4, N=1, structure=structure)
    stats = collect(m, torch.randn(2, 3, 8, 8), config=CollectConfig(batch_size=2, structure=structure),
                    init_seed=1, full=True)
    for block in stats.blocks:
        for x in "DNP":
            for k, v in derive_raw(block.tensors, structure, x).items():
                assert torch.equal(v, block.tensors[k]), k


def test_shared_tensors_are_really_shared():
    """The store keeps one copy of tensors the layout says are equal: check they are."""
    arch = "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_1x1~2|"
    specs = nb201.block_specs(arch, batch_size=1, image_size=8, C=4, N=1)
    stats = collect(nb201.build(arch, num_classes=10, C=4, N=1), torch.randn(1, 3, 8, 8),
                    config=CollectConfig(), init_seed=0)
    first_in, first_out = {}, {}
    shared = 0
    for s, b in zip(specs, stats.blocks):
        for key, table, kind in ((s.input_key, first_in, "inpact"), (s.output_key, first_out, "actgrad")):
            if key in table:
                shared += 1
                for x in "DNP":
                    assert torch.equal(table[key][f"{kind}_{x}"], b.tensors[f"{kind}_{x}"])
            else:
                table[key] = b.tensors
    assert shared >= 6


def test_find_blocks_excludes_stem_lastact_and_shortcut():
    m = nb201.build("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", num_classes=10)
    assert len(find_blocks(m, "rcb")) == 4  # the two reduction blocks' two convs


def test_collection_does_not_depend_on_the_callers_thread_count():
    """Reruns and shards on other machines must be bit-identical: the collector pins threads."""
    arch = "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
    data = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    saved = torch.get_num_threads()
    outs = []
    try:
        for threads in (2, 1):
            torch.set_num_threads(threads)
            outs.append(collect(nb201.build(arch, num_classes=10, C=4, N=1), data,
                                config=CollectConfig(batch_size=2), init_seed=3))
            assert torch.get_num_threads() == threads  # restored afterwards
    finally:
        torch.set_num_threads(saved)
    for a, b in zip(outs[0].blocks, outs[1].blocks):
        for k in a.tensors:
            assert torch.equal(a.tensors[k], b.tensors[k]), k


def test_collection_keeps_full_float32_and_restores_the_callers_settings():
    """cuDNN convolutions may run in TF32 (10 mantissa bits) by default; a collection turns
    it off, so GPU statistics are float32 like CPU ones, and gives the setting back after."""
    from eznas_store.collect.statistics import deterministic

    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (cudnn.allow_tf32, matmul.allow_tf32, cudnn.benchmark)
    try:
        cudnn.allow_tf32, matmul.allow_tf32, cudnn.benchmark = True, True, True
        with deterministic(1):
            assert not cudnn.allow_tf32 and not matmul.allow_tf32 and not cudnn.benchmark
        assert cudnn.allow_tf32 and matmul.allow_tf32 and cudnn.benchmark
    finally:
        cudnn.allow_tf32, matmul.allow_tf32, cudnn.benchmark = saved
