"""The loss-gradient saliencies: ``grad_norm``, ``plain``, ``snip``, ``fisher`` and ``grasp``.

All read ``g = ∂L/∂θ`` of the cross-entropy on the batch labels for every Conv2d/Linear
weight, from one forward and backward (``main`` pass, :data:`LOSS_GRADIENTS`); ``fisher``
also reads per-channel activation saliencies and ``grasp`` a Hessian-gradient product.
"""

from __future__ import annotations

import numpy as np
import torch

from eznas_store.collect.proxies.batch_pass import BatchState
from eznas_store.collect.proxies.passes import float64_sum

__all__ = ["fisher", "grad_norm", "grasp", "plain", "snip"]


def grad_norm(state: BatchState) -> float:
    """Gradient norm (Abdelfattah et al. 2021 "Zero-Cost Proxies for Lightweight NAS").

    Σ over Conv2d/Linear layers of ‖∂L/∂W‖₂ (per-layer Frobenius norm, summed), L =
    cross-entropy on the batch labels, train mode. Terminals: no — ``wtgrad_D`` is
    ∂(Σ logits)/∂W, not ∂L/∂W, and covers block convs only."""
    return float64_sum(g.norm() for _, g in state.weight_gradient_pairs())


def plain(state: BatchState) -> float:
    """Plain (Mozer & Smolensky 1989 "Skeletonization"-style first-order saliency), as in
    Abdelfattah et al. 2021: Σ over Conv2d/Linear weights of θ ⊙ ∂L/∂θ (signed), L =
    cross-entropy, train mode. Terminals: no — terminal gradients are of Σ logits."""
    return float64_sum(w * g for w, g in state.weight_gradient_pairs())


def snip(state: BatchState) -> float:
    """SNIP (Lee, Ajanthan & Torr 2019 "SNIP: Single-shot Network Pruning based on
    Connection Sensitivity", ICLR), as a proxy by Abdelfattah et al. 2021.

    Σ over Conv2d/Linear weights of |∂L/∂m| at mask m = 1, which equals |θ ⊙ ∂L/∂θ|
    (computed that way, no mask needed), L = cross-entropy, train mode. Terminals: no —
    Σ_blocks |wt ⊙ wtgrad_D| is the same formula for the loss Σ logits, a different proxy."""
    return float64_sum((w * g).abs() for w, g in state.weight_gradient_pairs())


def fisher(state: BatchState) -> float:
    """Fisher (Theis et al. 2018 "Faster gaze prediction with dense networks and Fisher
    pruning"; Turner et al. 2020 "BlockSwap"), as a zero-cost proxy by Abdelfattah et al.
    2021 "Zero-Cost Proxies for Lightweight NAS" (ICLR).

    Per Conv2d/Linear output channel k: Δ_k = ½·mean_n (Σ_hw a ⊙ ∂L/∂a)², a = the layer's
    output (pre-BN), L = cross-entropy, train mode. NASLib ('channel' mode) broadcasts Δ_k to
    the channel's C_in·k_h·k_w weights, so the score is Σ_layers Σ_k |Δ_k|·C_in·k_h·k_w.
    Terminals: no — ``act`` is the BN output and the terminal gradients are of Σ logits."""
    state.loss_gradients()  # the saliencies exist only if the loss backward ran
    total = 0.0
    for i, layer in enumerate(state.layers):
        if i in state.saliency:  # Δ_k broadcast to the channel's C_in·k·k weights, summed
            total += float(state.saliency[i].abs().double().sum()) * int(np.prod(layer.weight.shape[1:]))
    return total


def grasp(state: BatchState) -> float:
    """GraSP (Wang, Zhang & Grosse 2020 "Picking Winning Tickets Before Training by
    Preserving Gradient Flow", ICLR), as a proxy by Abdelfattah et al. 2021.

    Σ over Conv2d/Linear weights of −θ ⊙ (H g), g = ∂L/∂θ, H the Hessian of the
    cross-entropy L (T = 1, one iteration), train mode. NASLib's sign (accuracy correlates
    with −θHg). Terminals: no — needs second-order information."""
    grads = state.loss_gradients()
    terms = [(g.detach() * g).sum() for g in grads if g is not None]
    if not terms:
        raise ValueError("no Conv2d/Linear weight gets a gradient")
    weights = state.weights
    for w in weights:
        w.grad = None
    torch.stack(terms).sum().backward()  # weight.grad = H g
    return float64_sum(-w.detach() * w.grad for w in weights if w.grad is not None)
