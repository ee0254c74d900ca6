"""The size proxies: ``params``, ``flops`` (tensorwatch's counts) and ``l2_norm`` of the weights.

They read the network's weights and shapes only: one batch-1 forward in eval mode under
``no_grad`` for the counts, no labels, nothing trained (the ``static`` pass).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from eznas_store.collect.proxies.networks import weighted_layers
from eznas_store.collect.proxies.passes import Once, PassResult, ProxyPass, float64_sum, score_each

__all__ = ["SIZE_PASS", "SizeState", "count_static", "flops", "l2_norm", "params"]


def _pool_geometry(module: nn.Module) -> tuple[tuple, tuple, tuple]:
    """(kernel, stride, padding) of a pooling module, each as a pair."""
    def pair(v: Any) -> tuple:
        return v if isinstance(v, tuple) else (v,) * 2

    return pair(module.kernel_size), pair(module.stride), pair(module.padding)


def _adaptive_pool_flops(inp: torch.Tensor, out: torch.Tensor) -> float:
    """tensorwatch's adaptive pooling count: Σ (h+1)(w+1) over the output's windows, per plane."""
    h, w = inp.shape[2], inp.shape[3]
    oh, ow = out.shape[2], out.shape[3]
    total = 0
    for i in range(oh):
        y0, y1 = math.floor(i * h / oh), math.ceil((i + 1) * h / oh)
        for j in range(ow):
            x0, x1 = math.floor(j * w / ow), math.ceil((j + 1) * w / ow)
            total += inp.shape[0] * inp.shape[1] * (y1 - y0 + 1) * (x1 - x0 + 1)
    return float(total)


def _tw_flops(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> float:
    """FLOPs of one leaf-module call with tensorwatch's ``compute_flops`` formulas."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        per_pos = kh * kw * inp.shape[1] * (out.shape[1] // module.groups)
        active = out.shape[0] * out.shape[2] * out.shape[3]
        bias = out.shape[1] * active if module.bias is not None else 0
        return float(per_pos * active + bias)
    if isinstance(module, nn.BatchNorm2d):
        return float(inp.numel() * (2 if module.affine else 1))
    if isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)):
        ks, st, pd = _pool_geometry(module)
        ow = math.floor((inp.shape[3] + 2 * pd[0] - ks[0]) / float(st[0]) + 1)
        oh = math.floor((inp.shape[2] + 2 * pd[1] - ks[1]) / float(st[0]) + 1)
        return float(inp.shape[0] * inp.shape[1] * ow * oh * ks[0] * ks[1])
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return _adaptive_pool_flops(inp, out)
    if isinstance(module, (nn.ReLU, nn.ReLU6, nn.PReLU, nn.ELU, nn.LeakyReLU)):
        return float(inp.numel())
    if isinstance(module, nn.Upsample):
        return float(out.numel())
    if isinstance(module, nn.Linear):
        rows = inp.numel() // inp.shape[-1]
        return float(rows * module.in_features * module.out_features)  # no bias term
    return 0.0


def count_static(model: nn.Module, input_shape: Sequence[int]) -> tuple[float, float]:
    """(params, flops) in millions as tensorwatch's ``ModelStats`` counts them (batch-1, eval).

    Params: the parameters registered directly on every *leaf* module that runs in the
    forward pass. FLOPs: :func:`_tw_flops` per call (tensorwatch keeps only a module's
    last call; the two agree unless a module is called twice in one forward).
    """
    seen: set[int] = set()
    params = 0
    flops = 0.0

    def hook(module: nn.Module, args: tuple, out: Any) -> None:
        nonlocal params, flops
        if id(module) not in seen:
            seen.add(id(module))
            params += sum(p.numel() for p in module._parameters.values() if p is not None)
        inp = args[0] if args and isinstance(args[0], torch.Tensor) else None
        o = out[0] if isinstance(out, (tuple, list)) else out
        if inp is not None and isinstance(o, torch.Tensor):
            flops += _tw_flops(module, inp, o)

    leaves = [m for m in model.modules() if len(list(m.children())) == 0]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    try:
        p = next(model.parameters(), None)
        dtype = p.dtype if p is not None else torch.float32
        device = p.device if p is not None else torch.device("cpu")
        x = torch.zeros((1, *input_shape), dtype=dtype, device=device)
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return params / 1e6, flops / 1e6


@dataclass
class SizeState:
    """The network of a ``static`` pass and its counts, computed once for params and flops."""

    model: nn.Module
    input_shape: tuple[int, ...]

    def __post_init__(self) -> None:
        #: :func:`count_static` of the network; a failed count fails params and flops alike
        self.counts = Once(lambda: count_static(self.model, self.input_shape))


# ----------------------------------------------------------------------------- the proxies
def params(state: SizeState) -> float:
    """Parameter count in millions (tensorwatch ``ModelStats`` as NASLib: the parameters
    of every leaf module that runs in a batch-1 forward). NB201 all-none cell: 0.073306.
    Terminals: the block conv weights only (Σ numel(``wt``) / 1e6, ``from_terminals``);
    BN affine parameters, stem, shortcuts and classifier are not in the terminals."""
    return state.counts()[0]


def flops(state: SizeState) -> float:
    """FLOPs in millions, counted as NASLib's ``get_model_stats`` (tensorwatch
    ``ModelStats``) does: one batch-1 forward in eval mode; Conv2d k_h·k_w·C_in·C_out·H_o·W_o
    (+bias), BatchNorm2d 2·numel (1·numel without affine), ReLU-family numel, Avg/MaxPool
    out·k², AdaptiveAvgPool Σ(h+1)(w+1) per plane, Linear in·out (no bias); additions free.
    For NB201 at 32 px this equals Suite-Zero's value exactly (e.g. 19.248832 for
    (4, 0, 3, 1, 4, 3)). Terminals: the conv part of the blocks only (``from_terminals``:
    k_h·k_w·C_in·C_out·H_o·W_o from ``wt`` and ``act`` shapes; stem, shortcuts,
    classifier, BN/ReLU/pool FLOPs are not blocks)."""
    return state.counts()[1]


def l2_norm(state: SizeState) -> float:
    """L2 norm of the weights (Abdelfattah et al. 2021; a NAS-Bench-Suite-Zero baseline).

    Σ over Conv2d/Linear layers of ‖W‖_F (per-layer norm, summed — not the norm of all
    weights together). Depends on the init only. Terminals: the block-restricted variant
    Σ_blocks ‖wt‖_F (``from_terminals``); the stem conv, NB201's two shortcut 1×1 convs
    and the classifier are not blocks, so it is not the full proxy."""
    return float64_sum(l.weight.detach().norm() for l in weighted_layers(state.model))


def _run_size_pass(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None,
                   *, seed: int, specs: Sequence[Any]) -> PassResult:
    """The ``static`` pass: scores read the network's weights and a batch-1 count."""
    return score_each(SizeState(model, tuple(images.shape[1:])), specs)


SIZE_PASS = ProxyPass("static", _run_size_pass)
