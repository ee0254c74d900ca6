"""The ``main`` pass: one forward of the batch, then only the backward passes its proxies need.

NASLib runs each proxy on its own copy of the network with its own forward; the copies
would hold the same weights and see the same batch with the same batch statistics, so
one forward gives the same values. A proxy of this pass names what it reads (``needs``):

- :data:`RELU_CODES`: the NWOT agreement kernel of the ReLU inputs' signs, accumulated by
  forward pre-hooks (``state.kernel``);
- :data:`INPUT_JACOBIAN`: ``∂(Σ logits)/∂x`` per image (``state.input_jacobian()``);
- :data:`LOSS_GRADIENTS`: ``g = ∂L/∂θ`` for ``L = F.cross_entropy`` and every Conv2d/Linear
  weight θ (``state.loss_gradients()``, ``state.weight_gradient_pairs()``);
- :data:`CHANNEL_SALIENCY`: fisher's per-channel ``½·mean_n (Σ_hw a ⊙ ∂L/∂a)²``, from hooks
  on the layers' outputs during the cross-entropy backward (``state.saliency``);
- :data:`HESSIAN`: ``g`` computed with ``create_graph``, so ``∂(g_const · g)/∂θ = H g``
  can follow (NASLib's GraSP runs a separate no-graph pass for g: same value).

The backward passes run in this order (the input one keeps the graph when the loss one
follows); a failed step fails exactly the proxies that read it, each with a reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eznas_store.collect.proxies.networks import weighted_layers
from eznas_store.collect.proxies.passes import PassResult, ProxyPass, score_each

__all__ = [
    "BATCH_PASS",
    "CHANNEL_SALIENCY",
    "HESSIAN",
    "INPUT_JACOBIAN",
    "LOSS_GRADIENTS",
    "RELU_CODES",
    "AgreementKernel",
    "BatchState",
]

RELU_CODES = "relu_codes"
INPUT_JACOBIAN = "input_jacobian"
LOSS_GRADIENTS = "loss_gradients"
CHANNEL_SALIENCY = "channel_saliency"
HESSIAN = "hessian"


class AgreementKernel:
    """Accumulates the NWOT agreement kernel K (float64, on the CPU)."""

    def __init__(self) -> None:
        self.K: torch.Tensor | None = None

    @staticmethod
    def term(x: torch.Tensor) -> torch.Tensor:
        """c cᵀ + (1 − c)(1 − c)ᵀ for codes (B, ...), with one matmul, exactly."""
        b = x.shape[0]
        c = x.reshape(b, -1)
        n = c.shape[1]
        # 0/1 products are exact integers in float32 below 2**24 units, else use float64
        c = c.to(torch.float32 if n < 2**24 else torch.float64)
        gram = (c @ c.T).double()
        s = c.sum(1).double()
        # (1-c)(1-c)^T = n - s_i - s_j + c c^T
        return (2.0 * gram - s[:, None] - s[None, :] + float(n)).cpu()

    def add(self, x: torch.Tensor, term: torch.Tensor | None = None) -> torch.Tensor:
        t = self.term(x) if term is None else term
        self.K = t.clone() if self.K is None else self.K + t
        return t


def is_torch_relu(module: nn.Module) -> bool:
    """A torch.nn ReLU-family module (NASLib's nwot hooks ``'ReLU' in str(type(m))`` minus
    its own composite ops such as ``ReLUConvBN``; a user class named ``*ReLU*`` that is
    not from torch.nn is a composite too and is skipped)."""
    t = type(module)
    return "ReLU" in t.__name__ and t.__module__.startswith("torch.nn")


@dataclass
class BatchState:
    """What the forward and backward passes of one batch left for the proxies to score."""

    model: nn.Module
    x: torch.Tensor
    labels: torch.Tensor | None
    seed: int
    layers: list[nn.Module]
    logits: torch.Tensor | None = None
    kernel: AgreementKernel = field(default_factory=AgreementKernel)
    #: layer index -> fisher's per-channel Δ_k (layers without ``dont_ch_prune``)
    saliency: dict[int, torch.Tensor] = field(default_factory=dict)
    saliency_on: bool = False  # only the cross-entropy backward feeds the saliency
    _jacobian: np.ndarray | Exception | None = None
    _grads: tuple | Exception | None = None
    _pairs: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)

    @property
    def weights(self) -> list[torch.Tensor]:
        return [l.weight for l in self.layers]

    def input_jacobian(self) -> np.ndarray:
        """(B, D) float64 input gradients of Σ logits; raises what computing them raised."""
        return _value_or_raise(self._jacobian)

    def loss_gradients(self) -> tuple:
        """∂L/∂θ per weight (None for an unused one); raises what computing them raised."""
        return _value_or_raise(self._grads)

    def weight_gradient_pairs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(θ, ∂L/∂θ) detached, for the weights that get a gradient (None means zeros)."""
        self.loss_gradients()
        return self._pairs


def _value_or_raise(value: Any) -> Any:
    if isinstance(value, Exception):
        raise value
    return value


# ----------------------------------------------------------------------------- forward hooks
def _hook_relu_codes(state: BatchState) -> list:
    """ReLU pre-hooks adding each ReLU input's codes (> 0) to the agreement kernel."""
    # edges that leave the same NB201 node share one input tensor: reuse its K term
    cache: dict[int, tuple[torch.Tensor, int, torch.Tensor]] = {}

    def relu_pre_hook(module, args):
        # a pre-hook reads the input before an in-place ReLU overwrites it
        x = args[0]
        hit = cache.get(id(x))
        if hit is not None and hit[0] is x and hit[1] == x._version:
            state.kernel.add(x, hit[2])
            return
        cache[id(x)] = (x, x._version, state.kernel.add(x.detach() > 0))

    return [m.register_forward_pre_hook(relu_pre_hook) for m in state.model.modules()
            if is_torch_relu(m)]


def _hook_channel_saliency(state: BatchState) -> list:
    """Forward hooks on the layers' outputs whose gradient hooks sum fisher's Δ_k."""
    def make_hook(key: int):
        def fwd(module, args, output):
            if not (isinstance(output, torch.Tensor) and output.requires_grad):
                return
            act = output.detach()

            def grad_hook(grad: torch.Tensor) -> None:
                if not state.saliency_on:
                    return
                g = grad.detach()
                g_nk = (act * g).sum(dim=tuple(range(2, act.dim()))) if act.dim() > 2 else act * g
                del_k = g_nk.pow(2).mean(0).mul(0.5)
                state.saliency[key] = del_k if key not in state.saliency else state.saliency[key] + del_k

            output.register_hook(grad_hook)
        return fwd

    return [layer.register_forward_hook(make_hook(i)) for i, layer in enumerate(state.layers)
            if not hasattr(layer, "dont_ch_prune")]  # NASLib's 'channel' mode skips these


# ----------------------------------------------------------------------------- backward steps
def _backward_to_input(state: BatchState, *, keep_graph: bool) -> None:
    try:
        (jx,) = torch.autograd.grad(state.logits, state.x, torch.ones_like(state.logits),
                                    retain_graph=keep_graph)
        state._jacobian = jx.detach().reshape(state.x.shape[0], -1).cpu().double().numpy()
    except Exception as exc:
        state._jacobian = exc


def _backward_loss(state: BatchState, *, create_graph: bool) -> None:
    weights = state.weights
    try:
        loss = F.cross_entropy(state.logits, state.labels)
        state.saliency_on = True
        state._grads = torch.autograd.grad(loss, weights, create_graph=create_graph,
                                           allow_unused=True)
    except Exception as exc:
        state._grads = exc
        return
    finally:
        state.saliency_on = False
    state._pairs = [(w.detach(), g.detach()) for w, g in zip(weights, state._grads)
                    if g is not None]


def _run_batch_pass(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None,
                    *, seed: int, specs: Sequence[Any]) -> PassResult:
    """One forward on the batch (train mode), the backward passes the specs need, the scores."""
    needs = set().union(*(spec.needs for spec in specs))
    need_jac = INPUT_JACOBIAN in needs
    need_loss = bool(needs & {LOSS_GRADIENTS, CHANNEL_SALIENCY, HESSIAN})
    if not need_loss:  # only the input gradient (or nothing) is needed
        for p in model.parameters():
            p.requires_grad_(False)
    x = images.detach().clone().requires_grad_(need_jac)
    state = BatchState(model=model, x=x, labels=labels, seed=seed, layers=weighted_layers(model))
    handles = _hook_relu_codes(state) if RELU_CODES in needs else []
    if CHANNEL_SALIENCY in needs:
        handles += _hook_channel_saliency(state)
    try:
        state.logits = model(x)
    finally:
        for h in handles:
            h.remove()
    try:
        if need_jac:
            _backward_to_input(state, keep_graph=need_loss)
        if need_loss:
            _backward_loss(state, create_graph=HESSIAN in needs)
        return score_each(state, specs)
    finally:
        # fisher's gradient hooks hold ``state``, which holds the graph they hang on: a cycle
        # through autograd's C++ nodes that Python's gc cannot see (~10 MB a network). Break it.
        state.logits, state._grads, state._pairs = None, None, []


BATCH_PASS = ProxyPass("main", _run_batch_pass)
