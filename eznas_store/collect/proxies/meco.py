"""MeCo (Jiang, Wang & Bie, NeurIPS 2023, "MeCo: Zero-Shot NAS with One Data and
Minimum Eigenvalue of Correlation"): Σ of the smallest eigenvalue of each feature map's
channel correlation matrix, for one image.

The ``meco`` pass follows the authors' NB201 correlation script (``docs/design.md``
§6.2): PyTorch's default init (re-drawn from ``seed``), train mode (BN statistics of the one
image over H·W), **one** image — the first of the batch (the script draws one real,
augmented training image once and reuses it for every architecture: pass such a batch) —
no labels, no backward. A forward hook on every module of ``named_modules()`` (root,
containers and leaves) reads its output O → O[0] (first sample; first element of a
tuple) → rows = O[0] reshaped (n, −1), n its first dimension (the channels); the Pearson
matrix of the rows (``torch.corrcoef``) with NaN/Inf set to 0; λ_min = the smallest real
eigenvalue (``torch.linalg.eig``); MeCo = Σ over hook calls of λ_min, NaN/Inf results dropped.

Deviations from the reference, and why:

- The hooks see *this* package's module tree, not foresight's ``NAS201Model``: the
  multiplicities the reference's nesting creates are the same for the R-C-B op (its BN,
  its ``.op`` Sequential and the wrapper each count the op's output) and for Identity
  (re-counts its input), but NB201 here has a flat ``cells`` ModuleList, so the
  reference's stage Sequentials that re-count cells 5/10/15 do not exist, and a network
  builds only the op it uses per edge (the reference builds all five, which only changes
  how the init draws the RNG). Expect values close to, not equal to, the reference's.
- BN in the cells is affine with fresh γ = 1, β = 0 and train mode: the same forward as
  the reference's ``affine=False, track_running_stats=False``.
- The default init is each module's ``reset_parameters`` from the global RNG seeded with
  ``seed`` inside ``fork_rng`` (not a process-wide seed), so a value depends on ``seed`` only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from eznas_store.collect.proxies.features import pytorch_default_init
from eznas_store.collect.proxies.passes import PassResult, ProxyPass, score_each

__all__ = ["MECO_PASS", "MecoState", "meco", "min_correlation_eigenvalue"]


def min_correlation_eigenvalue(output: Any) -> float | None:
    """λ_min of the channel correlation of a module output's first sample (None: no tensor)."""
    out = output[0] if isinstance(output, (tuple, list)) and output else output
    if not isinstance(out, torch.Tensor) or out.dim() < 1 or out.shape[0] == 0:
        return None
    first = out[0].detach()
    if first.dim() == 0:
        return None
    rows = first.reshape(first.shape[0], -1)
    if rows.shape[1] < 2:  # one value per row: every correlation is NaN, set to 0 ⇒ λ_min = 0
        return 0.0
    corr = torch.nan_to_num(torch.corrcoef(rows), nan=0.0, posinf=0.0, neginf=0.0)
    corr = corr.reshape(rows.shape[0], rows.shape[0])  # one row: corrcoef gives a scalar
    return float(torch.linalg.eig(corr).eigenvalues.real.min())


class MecoState:
    """The network, the batch (its first image is used) and the seed of a ``meco`` pass."""

    def __init__(self, model: nn.Module, images: torch.Tensor, seed: int) -> None:
        self.model, self.images, self.seed = model, images, seed


def meco(state: MecoState) -> float:
    """MeCo (Jiang, Wang & Bie, NeurIPS 2023): Σ over every module's output (all of
    ``named_modules()``, root and containers included) of the smallest eigenvalue of the
    Pearson correlation matrix of its channels, for one image (the batch's first), PyTorch
    default init, train mode, no labels. Each term is in [0, 1]; constant channels (Zero
    op) and 2-D outputs (pooling, logits) add 0. Higher is better. Terminals: no."""
    model = state.model
    pytorch_default_init(model, state.seed)
    model.train()
    terms: list[float] = []

    def hook(module: nn.Module, args: tuple, output: Any) -> None:
        lam = min_correlation_eigenvalue(output)
        if lam is not None and math.isfinite(lam):
            terms.append(lam)

    handles = [m.register_forward_hook(hook) for _, m in model.named_modules()]
    try:
        with torch.no_grad():
            model(state.images[:1])
    finally:
        for h in handles:
            h.remove()
    if not terms:
        raise ValueError("no module produced a tensor output to correlate")
    return float(sum(terms))


def _run_meco_pass(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None,
                   *, seed: int, specs: Sequence[Any]) -> PassResult:
    """The ``meco`` pass: default re-init and a batch of one, so it is its own pass."""
    return score_each(MecoState(model, images, seed), specs)


MECO_PASS = ProxyPass("meco", _run_meco_pass)
