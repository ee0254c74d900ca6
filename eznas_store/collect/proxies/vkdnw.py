"""VKDNW (Tybl & Neumann, CVPR 2025, "Training-free Neural Architecture Search through
Variance of Knowledge of Deep Network Weights"): the entropy of the Fisher information's
eigenvalue deciles, its size pair ``VKDNW_single`` and the rank aggregate ``VKDNW_agg``.

Per network the ``vkdnw`` pass gives two values: ``vkdnw`` (the decile entropy) and
``vkdnw_tensors`` (the number of parameter tensors, the authors' ``vkdnw_dim``). Like
AZ-NAS, the published scores are ranks over a *set* of networks, so they are table-level
functions here: :func:`vkdnw_single` (dense rank of the pair (tensors, entropy), compared
lexicographically, size first) and :func:`vkdnw_aggregate` (``VKDNW_agg`` = ln rank of
``VKDNW_single`` + ln rank of AZ-NAS expressivity, AZ-NAS trainability, FLOPs and jacov).

Protocol, as the authors' code (repo ondratybl/VKDNW, ``NB201/ZeroShotProxy/
compute_vkdnw_score.py``; the analysis in ``NB201/tss_utils.py``) computes it:

- re-init Kaiming-normal (fan_in, ReLU gain) for Conv2d/Linear weights, biases 0, BatchNorm
  γ = 1, β = 0 (fresh running statistics), then **eval mode**;
- one batch: the proxy batch's images (the authors' first training batch, 64 images);
- θ = one scalar per parameter tensor, its element 0 (``param_idx = 0``); per sample, the
  Jacobian J (K × P) of the logits w.r.t. those P scalars (``torch.func``: ``jacrev`` under
  ``vmap`` over the batch, ``functional_call``);
- the categorical covariance of the smoothed softmax p = softmax·(1 − α) + α/K, α = 0.05,
  through its Cholesky factor L (lower-triangular, L Lᵀ = diag(p) − p pᵀ, closed form of
  Tanabe & Sagae 1992);
- F = mean over the batch of (L J)ᵀ (L J), P × P; λ = its singular values; the deciles
  λ_0.1 … λ_0.9 (linear interpolation, ``torch.quantile``);
- ``vkdnw`` = −Σ λ̃ ln(λ̃ + 1e−10), λ̃ = λ_q / (Σ λ_q + 1e−10) over the nine deciles.

Deviations from that code, and why:

- ``L J`` as the authors multiply (``torch.matmul(L, J)``), so F = Jᵀ LᵀL J rather than the
  textbook Jᵀ L Lᵀ J = Jᵀ Σ J: the published τ come from that code, and only the spectrum's
  shape enters the score.
- The P × P product, its SVD and the deciles are float64 (the authors: float32 on a GPU).
  In eval mode with fresh running statistics the activations grow from cell to cell, so
  the spectrum spans many decades (λ_0.1 / λ_0.9 from 1e−7 to 1e−23 on NB201 cells,
  measured); deciles below a precision's resolution of λ_max are round-off in either
  precision, but they add ≈ 0 to the entropy, which the large deciles set. The Jacobian
  itself is float32, as theirs. α is 0.05 (theirs is a float16 constant, 0.05005).
- J is formed with forward hooks that add δ · ∂out/∂θ₀ to the owning module's output
  (:func:`scalar_jacobian`) instead of writing the scalar into a copy of the tensor: the
  same J (tested against per-sample autograd) without forming every per-sample weight
  gradient (≈ 4× less memory on NB201).
- Seeding: weights come from ``torch.Generator().manual_seed(seed)`` per network (as every
  pass here), not from a global seed set once per run.
- A failed SVD is ``(nan, reason)`` (the reference sets λ = (0, 0), entropy 0): the
  aggregates count NaN as −∞, the lowest rank, as AZ-NAS's.
- In the aggregate, every rank is divided by N (as :func:`az_nas_aggregate`); the reference
  uses raw ranks (pandas ``rank``, dense for the pair), which shifts every value by the same
  constant and changes no ordering. NaN counts as −∞ for every term (the reference fills a
  NaN jacov with the column's minimum, a tie with the lowest instead of below it).
- The ImageNet16-120 head reads the proxy batch's images (CIFAR-10 at 32 px in
  ``proxy-table``), not 16-px ImageNet16 images; the head (120 logits) is the label set's.

Cost: the Jacobian is K reverse passes of the batch (one per logit), so it grows with the
classes: CIFAR-10's head is ~10× cheaper than CIFAR-100's or ImageNet16-120's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torch import nn
from torch.func import functional_call, jacrev, vmap

from eznas_store.collect.proxies.features import kaiming_fan_in_init
from eznas_store.collect.proxies.passes import Once, PassResult, ProxyPass, score_each

__all__ = ["VKDNW_AGG_TERMS", "VKDNW_ALPHA", "VKDNW_PASS", "VkdnwState", "categorical_cholesky",
           "decile_entropy", "fisher_spectrum", "scalar_jacobian", "vkdnw", "vkdnw_aggregate",
           "vkdnw_single", "vkdnw_tensors"]

#: the softmax smoothing of the covariance (the authors' α)
VKDNW_ALPHA = 0.05
#: the deciles kept of the Fisher spectrum
_QUANTILES = tuple(round(0.1 * k, 1) for k in range(1, 10))
_ENTROPY_EPS = 1e-10
#: the terms of VKDNW_agg besides VKDNW_single, in the order of the sum; the FLOPs term
#: takes ``flops`` (NASLib's) or, where a table has only the AZ-NAS pass's, ``az_complexity``
VKDNW_AGG_TERMS: tuple[str, ...] = ("az_expressivity", "az_trainability", "flops", "jacov")
_FLOPS_STAND_IN = "az_complexity"
#: samples per vmap chunk of the Jacobian: bounds the memory (all 64 at once: ~4 GB on NB201)
_CHUNK = 16
_PROBED = (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm)


# ----------------------------------------------------------------------------- the parts
def _owners(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """(parameter name, owning module, "weight"/"bias") in ``named_parameters`` order; only
    Conv2d, Linear and BatchNorm own parameters VKDNW can probe (others: ValueError)."""
    out = []
    for mod_name, mod in model.named_modules():
        for attr, _ in mod.named_parameters(prefix="", recurse=False):
            if not isinstance(mod, _PROBED) or attr not in ("weight", "bias"):
                raise ValueError(f"VKDNW probes Conv2d, Linear and BatchNorm parameters; "
                                 f"{mod_name}.{attr} belongs to a {type(mod).__name__}")
            if (isinstance(mod, nn.Conv2d) and type(mod).forward is not nn.Conv2d.forward
                    and not hasattr(mod, "conv_input")):
                raise ValueError(f"VKDNW probes convolutions of their input; {mod_name} ({type(mod).__name__}) "
                                 "transforms it first and does not say how (conv_input)")
            if isinstance(mod, nn.Conv2d) and mod.padding_mode != "zeros":
                raise ValueError(f"VKDNW probes zero-padded convolutions; {mod_name} pads {mod.padding_mode!r}")
            out.append((f"{mod_name}.{attr}" if mod_name else attr, mod, attr))
    names = [n for n, _ in model.named_parameters()]
    if sorted(names) != sorted(n for n, _, _ in out):
        raise ValueError("VKDNW needs every parameter tensor owned by one module")
    order = {n: i for i, n in enumerate(names)}
    return sorted(out, key=lambda t: order[t[0]])


def _element0_basis(mod: nn.Module, attr: str, x: torch.Tensor, out: torch.Tensor, axis: int) -> torch.Tensor:
    """∂ out[channel 0] / ∂ param.flatten()[0] for one call of ``mod`` on ``x`` (the output is
    affine in each weight element, so this is the whole effect of moving that element)."""
    if attr == "bias":  # 1 everywhere on output channel 0
        return torch.ones_like(out.narrow(axis, 0, 1))
    if isinstance(mod, nn.Conv2d):  # w[0, 0, 0, 0]: input channel 0 at kernel offset (0, 0)
        # a conv subclass that transforms its input first (DARTS's separable and shifted convs)
        # says what its own weight sees through ``conv_input``
        x = mod.conv_input(x) if hasattr(mod, "conv_input") else x
        one = torch.zeros((1, 1, *mod.kernel_size), dtype=x.dtype, device=x.device)
        one[0, 0, 0, 0] = 1.0
        return F.conv2d(x[:, :1], one, None, mod.stride, mod.padding, mod.dilation)
    if isinstance(mod, nn.Linear):  # W[0, 0]: input feature 0
        return x[..., :1]
    use_batch = mod.training or mod.running_mean is None  # BatchNorm γ[0]: normalised channel 0
    rm = None if use_batch else mod.running_mean[:1]
    rv = None if use_batch else mod.running_var[:1]
    return F.batch_norm(x[:, :1], rm, rv, None, None, use_batch, 0.0, mod.eps)


def scalar_jacobian(model: nn.Module, images: torch.Tensor,
                    chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(J, logits): J (B, K, P) the per-sample Jacobian of the logits w.r.t. element 0 of each
    of the model's P parameter tensors (``named_parameters`` order), logits (B, K).

    ``jacrev`` of one sample's logits under ``vmap`` over the batch (``chunk`` samples at a
    time), the model called with ``functional_call`` on its (constant) parameters and
    buffers, in whatever mode it is (VKDNW: eval). Each probed scalar enters as a shift δ at
    0 of its element: forward hooks add δ · ∂out/∂θ₀ to the owning module's output channel 0
    (exact, the output being affine in each weight element). The authors write the scalar
    into a copy of the tensor instead, which gives the same J but makes the backward pass
    form every per-sample weight gradient in full (peak ≈ 4 GB instead of ≈ 1 GB on NB201 at
    batch 64, measured).
    """
    owners = _owners(model)
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    shifts = {name: torch.zeros((), dtype=images.dtype, device=images.device) for name, _, _ in owners}
    by_module: dict[int, list[tuple[str, str]]] = {}
    for name, mod, attr in owners:
        by_module.setdefault(id(mod), []).append((name, attr))
    current: dict[str, torch.Tensor] = {}

    def hook(mod: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
        axis = out.dim() - 1 if isinstance(mod, nn.Linear) else 1
        add = sum(current[name] * _element0_basis(mod, attr, args[0], out, axis)
                  for name, attr in by_module[id(mod)])
        rest = out.shape[axis] - 1
        return out + (torch.cat((add, torch.zeros_like(out.narrow(axis, 1, rest))), dim=axis) if rest else add)

    def logits_of(theta: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        current.clear()
        current.update(theta)
        out = functional_call(model, (params, buffers), (x.unsqueeze(0),))
        out = out[1] if isinstance(out, (tuple, list)) else out  # (features, logits) models
        out = out.squeeze(0)
        return out, out.detach()

    handles = [mod.register_forward_hook(hook) for mod in {id(m): m for _, m, _ in owners}.values()]
    try:
        jac, logits = vmap(jacrev(logits_of, has_aux=True), in_dims=(None, 0), chunk_size=chunk)(shifts, images)
    finally:
        for h in handles:
            h.remove()
        current.clear()
    b, k = logits.shape
    return torch.stack([jac[name].reshape(b, k) for name, _, _ in owners], dim=2).detach(), logits.detach()


def categorical_cholesky(logits: torch.Tensor, alpha: float = VKDNW_ALPHA) -> torch.Tensor:
    """L (B, K, K), lower-triangular with L Lᵀ = diag(p) − p pᵀ for the smoothed softmax
    p = softmax(logits)·(1 − α) + α/K (float64).

    With q_j = 1 − Σ_{i≤j} p_i (q_{K−1} = 0, q_{−1} = 1) and d_j = √(p_j q_j / q_{j−1}):
    L_jj = d_j and L_ij = −p_i d_j / q_j for i > j (the last column is 0: the covariance has
    rank K − 1).
    """
    z = logits.double()
    k = z.shape[1]
    p = torch.softmax(z, dim=1) * (1.0 - alpha) + alpha / k
    q = (1.0 - torch.cumsum(p, dim=1)).clamp_min(0.0)
    q[:, -1] = 0.0
    q_prev = torch.cat((torch.ones_like(q[:, :1]), q[:, :-1]), dim=1)
    d = torch.sqrt(p * q / q_prev)
    safe_q = torch.where(q > 0, q, torch.ones_like(q))
    below = -p.unsqueeze(2) * (d / safe_q).unsqueeze(1)          # (B, i, j) = −p_i d_j / q_j
    below = torch.where((q > 0).unsqueeze(1), below, torch.zeros_like(below))
    return torch.tril(below, diagonal=-1) + torch.diag_embed(d)


def fisher_spectrum(jacobian: torch.Tensor, logits: torch.Tensor, alpha: float = VKDNW_ALPHA) -> np.ndarray:
    """The singular values of F = mean_b (L_b J_b)ᵀ (L_b J_b) (P,), descending, float64."""
    a = categorical_cholesky(logits, alpha) @ jacobian.double()
    fisher = torch.einsum("bkp,bkq->pq", a, a) / a.shape[0]
    return torch.linalg.svdvals(fisher).numpy()


def decile_entropy(spectrum: Sequence[float] | np.ndarray) -> float:
    """−Σ λ̃ ln(λ̃ + 1e−10) over the deciles λ_0.1 … λ_0.9 of ``spectrum`` (linear
    interpolation), λ̃ = λ_q / (Σ λ_q + 1e−10): at most ln 9, for a flat spectrum."""
    lam = np.asarray(spectrum, dtype=np.float64).reshape(-1)
    if lam.size == 0 or not np.all(np.isfinite(lam)):
        raise FloatingPointError("the Fisher spectrum is empty or not finite")
    q = np.quantile(lam, _QUANTILES)
    t = q / (np.abs(q).sum() + _ENTROPY_EPS)
    return float(-(t * np.log(t + _ENTROPY_EPS)).sum())


# ----------------------------------------------------------------------------- the pass
class VkdnwState:
    """The ``vkdnw`` pass: the re-initialised network in eval mode and its Fisher spectrum,
    computed once (only when ``vkdnw`` is asked for: ``vkdnw_tensors`` needs no run)."""

    def __init__(self, model: nn.Module, images: torch.Tensor, seed: int) -> None:
        self.model, self.images, self.seed = model, images, seed
        self.spectrum = Once(self._compute)

    def _compute(self) -> np.ndarray:
        kaiming_fan_in_init(self.model, torch.Generator().manual_seed(int(self.seed)))
        self.model.eval()
        jac, logits = scalar_jacobian(self.model, self.images.to(torch.float32), chunk=_CHUNK)
        return fisher_spectrum(jac.cpu(), logits.cpu())


def vkdnw(state: VkdnwState) -> float:
    """VKDNW (Tybl & Neumann, CVPR 2025): the entropy of the normalised deciles λ_0.1 … λ_0.9
    of the eigenvalues of the Fisher information of one scalar per parameter tensor (element
    0), the smoothed-softmax (α = 0.05) categorical covariance through its Cholesky factor,
    Kaiming fan_in re-init, eval mode, the proxy batch's images; in [0, ln 9], higher is
    better (a flatter spectrum). Reads the classifier head (K logits). The paper's scores
    are ranks over networks: ``vkdnw_single`` / ``vkdnw_aggregate``. Terminals: no."""
    return decile_entropy(state.spectrum())


def vkdnw_tensors(state: VkdnwState) -> float:
    """VKDNW's size term (Tybl & Neumann, CVPR 2025; the authors' ``vkdnw_dim``): the number
    of parameter tensors of the network (``named_parameters``; an NB201 conv edge adds 3:
    conv weight, BN γ and β). The first key of ``VKDNW_single``. Terminals: no."""
    return float(sum(1 for _ in state.model.named_parameters()))


def _run_vkdnw_pass(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None,
                    *, seed: int, specs: Sequence[Any]) -> PassResult:
    """The ``vkdnw`` pass: the network is re-initialised and run in eval mode, its own pass."""
    return score_each(VkdnwState(model, images, seed), specs)


VKDNW_PASS = ProxyPass("vkdnw", _run_vkdnw_pass)


# ----------------------------------------------------------------------------- table level
def _column(values: Mapping[str, Any], name: str) -> np.ndarray:
    return np.asarray(values[name], dtype=np.float64).reshape(-1)


def _low_nan(col: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(col), -np.inf, col)


def vkdnw_single(values: Mapping[str, Sequence[float] | np.ndarray]) -> np.ndarray:
    """VKDNW_single over N networks: the dense rank (1 = lowest) of the pair (``vkdnw_tensors``,
    ``vkdnw``) compared lexicographically, the tensor count first; NaN entropy counts as −∞.
    Returns float64 (N,), higher is better (extra keys of ``values`` are ignored)."""
    missing = [m for m in ("vkdnw_tensors", "vkdnw") if m not in values]
    if missing:
        raise KeyError(f"vkdnw_single needs {', '.join(missing)}")
    size, ent = _low_nan(_column(values, "vkdnw_tensors")), _low_nan(_column(values, "vkdnw"))
    if size.size == 0 or size.size != ent.size:
        raise ValueError(f"vkdnw_tensors and vkdnw must be non-empty and equally long: {size.size}, {ent.size}")
    order = np.lexsort((ent, size))
    pairs = np.stack((size[order], ent[order]), axis=1)
    new = np.ones(len(order), dtype=bool)
    new[1:] = np.any(pairs[1:] != pairs[:-1], axis=1)
    ranks = np.empty(len(order))
    ranks[order] = np.cumsum(new)
    return ranks


def vkdnw_aggregate(values: Mapping[str, Sequence[float] | np.ndarray]) -> np.ndarray:
    """VKDNW_agg over N networks: ln(VKDNW_single / N) + Σ_m ln(rank_m / N) for m = AZ-NAS
    expressivity, AZ-NAS trainability, FLOPs (``flops``, else ``az_complexity``) and jacov
    (``scipy.stats.rankdata``, ties averaged, NaN counted as −∞: the lowest rank, as
    :func:`az_nas_aggregate`). Returns float64 (N,), higher is better."""
    names = [m if m != "flops" or "flops" in values else _FLOPS_STAND_IN for m in VKDNW_AGG_TERMS]
    missing = [m for m in names if m not in values]
    if missing:
        raise KeyError(f"vkdnw_aggregate needs every term; missing: {', '.join(missing)}")
    single = vkdnw_single(values)
    n = single.size
    total = np.log(single / n)
    for m in names:
        col = _column(values, m)
        if col.size != n:
            raise ValueError(f"{m} has {col.size} values for {n} networks")
        total += np.log(rankdata(_low_nan(col)) / n)
    return total
