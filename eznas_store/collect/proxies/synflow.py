"""SynFlow (``synflow``): the synaptic flow of the network with |θ|, no BatchNorm, float64.

It needs no data, only the input shape: an all-ones batch of one image through a copy of
the network whose parameters are replaced by their absolute values (``synflow`` pass).
"""

from __future__ import annotations

import math
import types
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from eznas_store.collect.proxies.networks import ModelSource, fresh_network, weighted_layers
from eznas_store.collect.proxies.passes import PassResult, ProxyPass, float64_sum, score_each

__all__ = ["SYNFLOW_PASS", "SynflowState", "synflow", "synflow_sum"]


class SynflowState:
    """The network and input shape of a ``synflow`` pass."""

    def __init__(self, model: nn.Module, input_shape: Sequence[int]) -> None:
        self.model, self.input_shape = model, tuple(input_shape)


def _identity_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return x


def _synflow_total(model: nn.Module, input_shape: Sequence[int]) -> float:
    """Σ over Conv2d/Linear weights of |θ ⊙ ∂R/∂θ| with R = Σ f(1; |θ|), BN removed, float64."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.forward = types.MethodType(_identity_forward, m)  # NASLib's bn=False copy
    model.double()
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.abs_()
    model.zero_grad(set_to_none=True)
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    x = torch.ones((1, *input_shape), dtype=torch.float64, device=device)
    model(x).sum().backward()
    return float64_sum((l.weight.detach() * l.weight.grad).abs()
                       for l in weighted_layers(model) if l.weight.grad is not None)


def synflow(state: SynflowState) -> float:
    """SynFlow (Tanaka, Kunin, Yamins & Ganguli 2020 "Pruning neural networks without any
    data by iteratively conserving synaptic flow", NeurIPS), as a proxy by Abdelfattah et
    al. 2021.

    BatchNorm (1d/2d) forwards replaced by the identity, the network cast to float64 and
    every parameter replaced by |θ|; R = Σ f(1) for an all-ones batch of one image;
    S = Σ over Conv2d/Linear weights of |θ ⊙ ∂R/∂θ|. Reported as **log S** (NASLib's
    ``ZeroCost.query``; Suite-Zero stores the log), 0 when S = 0 (no path to the output);
    :func:`synflow_sum` gives S. Terminals: no — needs |θ|, an all-ones input and no BN."""
    total = _synflow_total(state.model, state.input_shape)
    if not math.isfinite(total):
        raise FloatingPointError(f"the synflow sum is {total} (float64 overflow)")
    return 0.0 if total == 0.0 else math.log(total)  # ZeroCost.query's log; 0 stays 0


def synflow_sum(model_factory_or_model: ModelSource, images: torch.Tensor, *, seed: int,
                reinit: bool = True) -> float:
    """SynFlow's raw sum S (``synflow`` reports log S); only ``images.shape`` is used."""
    model = fresh_network(model_factory_or_model, seed=seed, device=images.device, reinit=reinit)
    return _synflow_total(model, images.shape[1:])


def _run_synflow_pass(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None,
                      *, seed: int, specs: Sequence[Any]) -> PassResult:
    """The ``synflow`` pass: the network is modified in place, so it is its own pass."""
    return score_each(SynflowState(model, images.shape[1:]), specs)


SYNFLOW_PASS = ProxyPass("synflow", _run_synflow_pass)
