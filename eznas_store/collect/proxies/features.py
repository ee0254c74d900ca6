"""What the modern proxies' passes share: their inits and the per-cell feature maps.

The NASLib-13 passes run the network as the factory initialised it; AZ-NAS, MeCo, ZiCo
and SWAP each prescribe their own init, so their passes re-initialise the fresh network
they are given (deterministically from the pass's ``seed``):

- :func:`kaiming_fan_in_init` (AZ-NAS's ``kaiming_norm_fanin``);
- :func:`pytorch_default_init` (MeCo, ZiCo: the modules' own ``reset_parameters``);
- :func:`gaussian_init` (SWAP: Conv/Linear N(0, 1)).

All draw on a CPU generator (or the forked global RNG for the default init) and copy to
the model's device, so CPU and CUDA runs start from the same weights.

:func:`cell_features` runs a network once and returns the stem output and every cell's
output (AZ-NAS's ``F_0 .. F_L``). The cells are found generically: the network's ``cells``
attribute (an ``nn.ModuleList``/``nn.Sequential`` run in order, as NB201's
``TinyNetwork`` has); ``F_0`` is what enters the first cell, ``F_l`` what cell ``l``
returns, read by forward hooks, so no builder's ``forward`` is changed.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["cell_features", "cell_modules", "gaussian_init", "kaiming_fan_in_init",
           "pytorch_default_init"]

_WEIGHTED = (nn.Conv2d, nn.Linear)


def _draw(shape: torch.Size, generator: torch.Generator, like: torch.Tensor,
          std: float = 1.0) -> torch.Tensor:
    """N(0, std²) drawn on the CPU from ``generator``, moved to ``like``'s device/dtype."""
    return (torch.randn(shape, generator=generator) * std).to(like.device, like.dtype)


def _reset_norms(model: nn.Module) -> None:
    """BatchNorm/GroupNorm γ = 1, β = 0 (when affine) and fresh running statistics."""
    for m in model.modules():
        if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)):
            if getattr(m, "weight", None) is not None:
                nn.init.ones_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                m.reset_running_stats()


@torch.no_grad()
def kaiming_fan_in_init(model: nn.Module, generator: torch.Generator) -> None:
    """Conv2d/Linear weights Kaiming-normal (fan_in, ReLU gain √2), biases 0; norms 1/0."""
    for m in model.modules():
        if isinstance(m, _WEIGHTED):
            fan_in = m.weight[0].numel()
            m.weight.copy_(_draw(m.weight.shape, generator, m.weight, math.sqrt(2.0 / fan_in)))
            if m.bias is not None:
                m.bias.zero_()
    _reset_norms(model)


@torch.no_grad()
def gaussian_init(model: nn.Module, generator: torch.Generator) -> None:
    """Conv2d/Linear weights N(0, 1), biases 0; norms γ = 1, β = 0 (skipped without affine)."""
    for m in model.modules():
        if isinstance(m, _WEIGHTED):
            m.weight.copy_(_draw(m.weight.shape, generator, m.weight))
            if m.bias is not None:
                m.bias.zero_()
    _reset_norms(model)


def pytorch_default_init(model: nn.Module, seed: int) -> None:
    """Every module's own ``reset_parameters`` (PyTorch's default init), in ``modules()``
    order, from the global RNG seeded with ``seed`` inside ``fork_rng`` (the caller's RNG
    state is untouched). BatchNorm's reset also resets its running statistics."""
    cuda = sorted({p.device.index or 0 for p in model.parameters() if p.is_cuda})
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(int(seed))
        for m in model.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()


def cell_modules(model: nn.Module) -> list[nn.Module]:
    """The network's cells, in the order they run: its ``cells`` attribute."""
    cells = getattr(model, "cells", None)
    if not isinstance(cells, (nn.ModuleList, nn.Sequential)) or len(cells) == 0:
        raise ValueError("this proxy reads per-cell feature maps and needs a network with a "
                         "`cells` attribute (an nn.ModuleList of the cells in the order they "
                         "run, as NB201's TinyNetwork has)")
    return list(cells)


def cell_features(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """``[F_0, F_1, .., F_L]``: the input of the first cell, then each cell's output.

    One forward of ``x`` (gradients kept, so callers can differentiate ``F_l`` with
    respect to ``F_{l-1}``). Raises when a cell does not run exactly once or does not read
    the previous cell's output (the cells are not a chain).
    """
    cells = cell_modules(model)
    inputs: list[list[torch.Tensor]] = [[] for _ in cells]
    outputs: list[list[torch.Tensor]] = [[] for _ in cells]
    handles = []
    for i, cell in enumerate(cells):
        handles.append(cell.register_forward_pre_hook(
            lambda m, args, i=i: inputs[i].append(args[0])))
        handles.append(cell.register_forward_hook(
            lambda m, args, out, i=i: outputs[i].append(out)))
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    if any(len(o) != 1 for o in outputs):
        raise ValueError("every cell must run exactly once per forward "
                         f"(calls: {[len(o) for o in outputs]})")
    feats = [inputs[0][0]] + [o[0] for o in outputs]
    for i in range(1, len(cells)):
        if inputs[i][0] is not outputs[i - 1][0]:
            raise ValueError(f"cell {i} does not read cell {i - 1}'s output: the cells are "
                             "not a chain, so per-cell features are undefined")
    return feats
