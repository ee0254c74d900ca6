"""ZiCo (Li, Yang, Bhardwaj & Marculescu, ICLR 2023, "ZiCo: Zero-shot NAS via Inverse
Coefficient of Variation on Gradients"): Σ_layers log Σ_weights mean|g| / std(g) over
batches.

The ``zico`` pass follows the authors' code (``docs/design.md`` §6.3): PyTorch's
default init (re-drawn from ``seed``), train mode, cross-entropy with the real labels,
gradients zeroed before each batch, two batches. Per Conv2d/Linear weight (stem,
ResNet-block, shortcut and classifier layers included) and element j: μ_j = mean_b
|g_{b,j}|, σ_j = std_b g_{b,j} (population); S_l = Σ_{σ_j ≠ 0} μ_j/σ_j; ZiCo = Σ_{S_l ≠ 0}
ln S_l, in numpy float32 as the reference; a layer without a gradient is skipped, and a
network in which no layer's gradient varies (the all-none cell) scores the empty sum, 0.

Deviations from the reference, and why:

- The two batches are the two halves of the given batch (``compute_all`` takes one
  batch): pass 2·64 images for the AZ-NAS port's two batches of 64 (or 2·128 for ZiCo's
  ImageNet scripts). An odd last image is dropped.
- Labels: ZiCo reads them, but it is registered with ``needs_labels=False`` because
  ``tests/test_proxies.py`` pins the label-reading set of the proxy table to NASLib's
  six; without labels this pass itself gives ``(nan, "zico needs labels ...")``, so
  ``compute_all`` behaves the same; ``compute_proxy``/``score_model`` then return NaN with
  that reason instead of raising ``ConfigError``.
- The default init is each module's ``reset_parameters`` from the global RNG seeded with
  ``seed`` inside ``fork_rng``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eznas_store.collect.proxies.features import pytorch_default_init
from eznas_store.collect.proxies.networks import weighted_layers
from eznas_store.collect.proxies.passes import PassResult, ProxyPass, score_each

__all__ = ["ZICO_PASS", "ZicoState", "zico", "zico_from_gradients"]


def zico_from_gradients(per_batch: Sequence[Sequence[np.ndarray | None]]) -> float:
    """ZiCo from per-batch gradients: ``per_batch[b][l]`` is layer l's weight gradient in
    batch b (None: no gradient). Σ_{l: S_l ≠ 0} ln S_l, S_l = Σ_{σ ≠ 0} mean|g| / std(g)."""
    total = 0.0
    for layer_grads in zip(*per_batch):
        if any(g is None for g in layer_grads):
            continue
        g = np.stack([np.asarray(x, dtype=np.float32).reshape(-1) for x in layer_grads])
        mu = np.mean(np.abs(g), axis=0)
        sd = np.std(g, axis=0)
        nz = sd != 0
        s = float(np.sum(mu[nz] / sd[nz]))
        if s != 0.0:
            total += float(np.log(s))
    return total  # no layer with a varying gradient (e.g. the all-none cell): the empty sum, 0


class ZicoState:
    """The network, the batch (split in two), its labels and the seed of a ``zico`` pass."""

    def __init__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None,
                 seed: int) -> None:
        self.model, self.images, self.labels, self.seed = model, images, labels, seed


def zico(state: ZicoState) -> float:
    """ZiCo (Li, Yang, Bhardwaj & Marculescu, ICLR 2023): Σ over Conv2d/Linear layers of
    ln Σ_j mean_b|∂L_b/∂θ_j| / std_b(∂L_b/∂θ_j), L_b the cross-entropy of batch b (the two
    halves of the given batch), PyTorch default init, train mode; needs labels. Strongly
    size-driven (with two batches each ratio is ≥ 1). Higher is better. Terminals: no —
    the terminal gradients are of Σ logits, for one batch."""
    if state.labels is None:
        raise ValueError("zico needs labels (it uses the cross-entropy gradients); none were given")
    half = state.images.shape[0] // 2
    if half < 1:
        raise ValueError("zico needs at least 2 images (two batches: the halves of the batch)")
    model = state.model
    pytorch_default_init(model, state.seed)
    model.train()
    layers = weighted_layers(model)
    per_batch = []
    for b in range(2):
        model.zero_grad(set_to_none=True)
        sl = slice(b * half, (b + 1) * half)
        F.cross_entropy(model(state.images[sl]), state.labels[sl]).backward()
        per_batch.append([None if l.weight.grad is None else l.weight.grad.detach().cpu().numpy()
                          for l in layers])
    model.zero_grad(set_to_none=True)
    return zico_from_gradients(per_batch)


def _run_zico_pass(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None,
                   *, seed: int, specs: Sequence[Any]) -> PassResult:
    """The ``zico`` pass: default re-init and two backward passes, so it is its own pass."""
    return score_each(ZicoState(model, images, labels, seed), specs)


ZICO_PASS = ProxyPass("zico", _run_zico_pass)
