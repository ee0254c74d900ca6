"""AZ-NAS (Lee & Ham, CVPR 2024, "AZ-NAS: Assembling Zero-Cost Proxies for Network
Architecture Search"): expressivity, progressivity, trainability, complexity and their
rank aggregate.

Per network, ``compute_all`` gives the four components (``az_expressivity``,
``az_progressivity``, ``az_trainability`` from the ``az_nas`` pass, ``az_complexity`` from
the ``static`` pass, whose FLOP count it shares with ``flops``). AZ-NAS's score itself is
a rank aggregate over a *set* of networks, so it is not a per-network proxy:
:func:`az_nas_aggregate` computes it over a table of component values (one array per
component, one entry per network), wherever such a table exists.

The ``az_nas`` pass follows the authors' NB201 protocol (``docs/design.md`` §6.1):
the fresh network is re-initialised Kaiming-normal (fan_in, ReLU gain; biases 0; BN 1/0),
runs in train mode (batch statistics) on X ~ N(0, 1) of the batch's shape (the images
are not read, only their shape; AZ-NAS's batch is 64), no labels. ``F_0`` is the first
cell's input (the stem output after BN), ``F_l`` the output of cell/ResNet block ``l``
(:func:`~eznas_store.collect.proxies.features.cell_features`: the network's ``cells``).

Deviations from the reference, and why:

- Seeding: the reference seeds once (``prepare_seed(1)``) and scores the architectures in
  sequence, so each network's draws depend on its position; here the weights, X and the
  Rademacher probes come from ``torch.Generator().manual_seed(seed)`` per network, so a
  network's value does not depend on what was scored before it.
- ``az_complexity`` is the FLOPs this package counts (tensorwatch's rules, batch 1, in
  millions, = ``flops``), not the NB201 API's ``get_compute_costs`` value; both grow with
  the conv FLOPs and only its rank enters the aggregate.
- A component that is NaN or −∞ (the reference's NaN ⇒ −∞) comes back from
  ``compute_all`` as ``(nan, reason)``, as every failed proxy does here;
  :func:`az_nas_aggregate` turns NaN back into −∞ (the lowest rank), as the reference.
- float32 eigenvalues as the reference (pool-only cells can hit the documented
  degeneracy: λ < 0 ⇒ NaN ⇒ −∞); no clamping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eznas_store.collect.proxies.features import cell_features, kaiming_fan_in_init
from eznas_store.collect.proxies.passes import Once, PassResult, ProxyPass, score_each
from eznas_store.collect.proxies.size import SizeState
from eznas_store.sources import (AZ_COMPONENTS, AZ_FLOORS, az_nas_against, az_nas_aggregate,
                                              floor_failed)

__all__ = ["AZ_COMPONENTS", "AZ_FLOORS", "AZ_PASS", "AzState", "az_complexity", "az_expressivity",
           "az_nas_against", "az_nas_aggregate", "az_progressivity", "az_trainability", "floor_failed",
           "layer_expressivity", "pair_trainability"]

_P_EPS = 1e-8
_SIGMA_EPS = 1e-6
def _nan_to_neg_inf(v: float) -> float:
    return -math.inf if math.isnan(v) else v


def layer_expressivity(feature: torch.Tensor) -> float:
    """E_l: entropy of the normalised eigenvalues of the channel covariance of one map.

    (B, C, H, W) → Z (B·H·W, C), columns centred, Σ = ZᵀZ/n, λ = eigvalsh(Σ) in float32,
    p = λ/Σλ, E = −Σ p ln(p + 1e−8) ∈ [0, ln C]; NaN for an all-constant map (Σλ = 0) or
    when float32 gives λ < −1e−8·Σλ (AZ-NAS's behaviour, kept).
    """
    f = feature.detach().float()
    z = f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]) if f.dim() == 4 else f.reshape(f.shape[0], -1)
    z = z - z.mean(0, keepdim=True)
    cov = z.T @ z / z.shape[0]
    lam = torch.linalg.eigvalsh(cov)
    p = lam / lam.sum()
    return float(-(p * torch.log(p + _P_EPS)).sum())


def pair_trainability(prev: torch.Tensor, cur: torch.Tensor, generator: torch.Generator) -> float:
    """t_l = −σ − 1/(σ + 1e−6) + 2 for the cell mapping ``prev`` = F_{l−1} to ``cur`` = F_l.

    v ~ Rademacher shaped like F_l; g = ∂⟨F_l, v⟩/∂F_{l−1} (a VJP; zeros when F_l does not
    depend on F_{l−1}). g ≡ v (same shape, an identity cell): −∞. Otherwise g is
    pixel-unshuffled by H_{l−1}/H_l when the resolution drops, G (n×C′) and V (n×C) are
    the per-position rows (n = B·H_l·W_l), σ = the largest singular value of GᵀV/n.
    """
    v = (torch.randint(0, 2, cur.shape, generator=generator) * 2 - 1).to(cur.device, cur.dtype)
    (g,) = torch.autograd.grad(cur, prev, v, retain_graph=True, allow_unused=True)
    g = torch.zeros_like(prev) if g is None else g.detach()
    if g.shape == v.shape and torch.equal(g, v):
        return -math.inf
    if g.shape[-1] != v.shape[-1]:
        r, rem = divmod(g.shape[-1], v.shape[-1])
        if rem or g.shape[-2] != r * v.shape[-2]:
            raise ValueError(f"cannot match a {tuple(g.shape)} input to a {tuple(v.shape)} output")
        g = F.pixel_unshuffle(g, r)
    gm = g.permute(0, 2, 3, 1).reshape(-1, g.shape[1])
    vm = v.permute(0, 2, 3, 1).reshape(-1, v.shape[1])
    sigma = float(torch.linalg.matrix_norm(gm.T @ vm / vm.shape[0], ord=2))
    return -sigma - 1.0 / (sigma + _SIGMA_EPS) + 2.0


class AzState:
    """The ``az_nas`` pass: features of one Gaussian batch, computed once for all three."""

    def __init__(self, model: nn.Module, images: torch.Tensor, seed: int) -> None:
        self.model, self.images, self.seed = model, images, seed
        #: ``{"E": [E_0..E_L], "T": [t_L..t_1]}``; raises what computing them raised
        self.components = Once(self._compute)

    def _compute(self) -> dict[str, Any]:
        gen = torch.Generator().manual_seed(int(self.seed))
        kaiming_fan_in_init(self.model, gen)
        self.model.train()
        x = torch.randn(self.images.shape, generator=gen).to(self.images.device, torch.float32)
        feats = cell_features(self.model, x.requires_grad_(True))
        if any(f.dim() != 4 for f in feats):
            raise ValueError("AZ-NAS needs 4-D (B, C, H, W) cell outputs")
        e = [layer_expressivity(f) for f in feats]
        t = [pair_trainability(feats[l - 1], feats[l], gen) for l in range(len(feats) - 1, 0, -1)]
        return {"E": e, "T": t}

# ----------------------------------------------------------------------------- the proxies
def az_expressivity(state: AzState) -> float:
    """AZ-NAS expressivity (Lee & Ham, CVPR 2024): s_E = Σ_{l=0..L} E_l, E_l the entropy of
    the normalised eigenvalue spectrum of the channel covariance of feature map F_l (stem
    output and every cell/ResNet-block output; 18 maps for NB201 N=5), each in [0, ln C].
    Kaiming fan_in re-init, X ~ N(0, 1) of the batch's shape, train mode, no labels.
    NaN (an all-zero map, float32 degeneracy) ⇒ −∞ ⇒ (nan, reason). Terminals: no."""
    return _nan_to_neg_inf(float(np.sum(state.components()["E"])))


def az_progressivity(state: AzState) -> float:
    """AZ-NAS progressivity (Lee & Ham, CVPR 2024): s_P = min_{l=1..L} (E_l − E_{l−1}), the
    smallest expressivity gain from one cell to the next (same pass and maps as
    ``az_expressivity``). NaN ⇒ −∞ ⇒ (nan, reason). Terminals: no."""
    e = np.asarray(state.components()["E"], dtype=np.float64)
    return _nan_to_neg_inf(float(np.min(np.diff(e))))


def az_trainability(state: AzState) -> float:
    """AZ-NAS trainability (Lee & Ham, CVPR 2024): s_T = mean_l t_l, t_l = −σ_l − 1/(σ_l +
    1e−6) + 2 ≤ 0 (max at σ = 1), σ_l the spectral norm of the position-averaged channel
    Jacobian of cell l, estimated with a Rademacher VJP (l = L..1). An identity cell
    (∂F_l/∂F_{l−1} = I exactly) gives −∞ ⇒ (nan, reason); a cell whose output ignores its
    input gives σ = 0, t ≈ −1e6 (finite). Terminals: no."""
    return _nan_to_neg_inf(float(np.mean(state.components()["T"])))


def az_complexity(state: SizeState) -> float:
    """AZ-NAS complexity (Lee & Ham, CVPR 2024): the network's FLOPs, here in millions as
    ``flops`` counts them (tensorwatch rules, batch 1, eval; the reference reads the NB201
    API's FLOPs, same ordering up to the non-conv terms). Shares the ``static`` pass's count
    with ``flops``. Terminals: the conv part only (as ``flops``)."""
    return state.counts()[1]


def _run_az_pass(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None,
                 *, seed: int, specs: Sequence[Any]) -> PassResult:
    """The ``az_nas`` pass: the network is re-initialised, so it is its own pass."""
    return score_each(AzState(model, images, seed), specs)


AZ_PASS = ProxyPass("az_nas", _run_az_pass)
