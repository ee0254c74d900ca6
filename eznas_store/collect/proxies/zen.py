"""Zen-score (``zen``): feature sensitivity to a small input perturbation, Gaussian weights.

It re-initialises the network (Zen-NAS's Gaussian init) and runs two forwards of Gaussian
noise of the batch's shape (``zen`` pass): the images and labels are not read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from eznas_store.collect.proxies.passes import PassResult, ProxyPass, score_each

__all__ = ["ZEN_PASS", "ZenState", "zen"]

#: NASLib's constant
_ZEN_MIXUP_GAMMA = 1e-2


class ZenState:
    """The network of a ``zen`` pass, the batch (for its shape, device, dtype) and the seed."""

    def __init__(self, model: nn.Module, images: torch.Tensor, seed: int) -> None:
        self.model, self.images, self.seed = model, images, seed


def _zen_init(model: nn.Module, generator: torch.Generator) -> None:
    """Zen-NAS's ``network_weight_gaussian_init``: Conv/Linear N(0, 1), norms 1/0, biases 0."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator,
                                           dtype=m.weight.dtype).to(m.weight.device))
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                if m.weight is not None:
                    m.weight.fill_(1.0)
                    m.bias.zero_()


def _pooled_features(model: nn.Module, pool: nn.Module, inputs: Sequence[torch.Tensor]) -> list:
    """The tensors entering ``pool`` for each input, in no-grad forwards."""
    feats: list[torch.Tensor] = []
    h = pool.register_forward_pre_hook(lambda m, a: feats.append(a[0]))
    try:
        with torch.no_grad():
            for x in inputs:
                model(x)
    finally:
        h.remove()
    return feats


def zen(state: ZenState) -> float:
    """Zen-score (Lin, Wang, Sun, Chen, Sun, Qian, Li & Jin 2021, "Zen-NAS: A Zero-Shot NAS
    for High-Performance Image Recognition", ICCV).

    Re-initialise Conv/Linear N(0, 1) (biases 0, BN/GroupNorm 1/0), running statistics
    reset; x, ε ~ N(0, 1) of the batch's shape; f = the input of the (single)
    nn.AdaptiveAvgPool2d, train mode, no grad; score = log E_batch Σ|f(x) − f(x + 0.01ε)|
    + Σ_BN2d log √mean(running_var) (the running variances after those two forwards, as
    NASLib reads them). Images and labels are not used, only their shape; ``seed`` draws the
    weights and inputs. Terminals: no — a different init and noise inputs."""
    model, images = state.model, state.images
    pools = [m for m in model.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    if len(pools) != 1:
        raise ValueError(f"zen reads the features entering the global average pooling and "
                         f"needs exactly one nn.AdaptiveAvgPool2d; this model has {len(pools)}")
    gen = torch.Generator().manual_seed(int(state.seed))
    _zen_init(model, gen)
    for m in model.modules():  # a fresh NASLib network: running stats at their defaults
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            m.reset_running_stats()
    x1 = torch.randn(images.shape, generator=gen).to(images.device, images.dtype)
    x2 = torch.randn(images.shape, generator=gen).to(images.device, images.dtype)
    f1, f2 = _pooled_features(model, pools[0], (x1, x1 + _ZEN_MIXUP_GAMMA * x2))
    nas = torch.sum(torch.abs(f1 - f2), dim=tuple(range(1, f1.dim()))).mean()
    log_bn = 0.0
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d) and m.running_var is not None:
            log_bn += float(torch.log(torch.sqrt(torch.mean(m.running_var))))
    return float(torch.log(nas)) + log_bn


def _run_zen_pass(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None,
                  *, seed: int, specs: Sequence[Any]) -> PassResult:
    """The ``zen`` pass: the network is re-initialised, so it is its own pass."""
    return score_each(ZenState(model, images, seed), specs)


ZEN_PASS = ProxyPass("zen", _run_zen_pass)
