"""The proxy table: every proxy's name, one-line summary, pass, needs and score function.

One registration line per proxy (``_proxy(...)`` below); the full description, with its
paper and NASLib's conventions, is the score function's docstring (``ProxySpec.doc``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from eznas_store.collect.proxies import (
    az_nas, gradients, jacobian, meco, nwot, size, swap, synflow, vkdnw, zen, zico,
)
from eznas_store.collect.proxies.az_nas import AZ_PASS
from eznas_store.collect.proxies.batch_pass import (
    BATCH_PASS,
    CHANNEL_SALIENCY,
    HESSIAN,
    INPUT_JACOBIAN,
    LOSS_GRADIENTS,
    RELU_CODES,
)
from eznas_store.collect.proxies.meco import MECO_PASS
from eznas_store.collect.proxies.passes import ProxyPass
from eznas_store.collect.proxies.size import SIZE_PASS
from eznas_store.collect.proxies.swap import SWAP_PASS
from eznas_store.collect.proxies.vkdnw import VKDNW_PASS
from eznas_store.collect.proxies.synflow import SYNFLOW_PASS
from eznas_store.collect.proxies.zen import ZEN_PASS
from eznas_store.collect.proxies.zico import ZICO_PASS
from eznas_store.errors import UnknownNameError

__all__ = ["HEAD_FREE", "MODERN_PROXY_NAMES", "OPT_IN_PROXY_NAMES", "PASS_PROTOCOLS", "PROXIES", "PROXY_NAMES",
           "ProxySpec", "VKDNW_PROXY_NAMES", "check_proxy_names", "proxy_card"]

#: how each pass runs its network (init, input, batch): what a store records per proxy
#: (``proxy_card``); "the proxy batch" is the B images a collection gives its proxies
PASS_PROTOCOLS: dict[str, str] = {
    "static": "EZNAS init from the network's seed; one forward of one image in eval mode (counts)",
    "main": "EZNAS init from the network's seed; train mode; one forward and backward of the proxy batch, "
            "cross-entropy with its labels (NASLib's conventions)",
    "synflow": "EZNAS init, then |theta| and no BatchNorm; one all-ones float64 image",
    "zen": "Zen-NAS Gaussian re-init from the seed; two forwards of N(0,1) noise of the proxy batch's shape",
    "az_nas": "Kaiming-normal re-init (fan_in) from the seed; train mode; N(0,1) input of the proxy batch's "
              "shape; no labels",
    "meco": "PyTorch default init from the seed; train mode; the first image of the proxy batch; no labels",
    "zico": "PyTorch default init from the seed; train mode; cross-entropy with the labels over two batches "
            "of B images (2 x the proxy batch)",
    "swap": "32 re-inits (weights N(0,1)) from the seed; train mode; no grad; the first 16 images of the "
            "proxy batch; no labels",
    "vkdnw": "Kaiming-normal re-init (fan_in) from the seed; eval mode; the proxy batch's images; per-sample "
             "Jacobian of the logits w.r.t. element 0 of each parameter tensor; no labels",
}


@dataclass(frozen=True)
class ProxySpec:
    """One proxy: its name, whether it reads labels, what it is, and how it is computed.

    ``score(state) -> float`` reads what its pass (``proxy_pass``) left in ``state``,
    asking for the intermediates named in ``needs``; it raises when the proxy fails and
    may return a non-finite value (``compute_all`` turns both into ``(nan, reason)``).
    """

    name: str
    summary: str
    score: Callable[..., float]
    proxy_pass: ProxyPass
    needs: frozenset[str] = frozenset()
    needs_labels: bool = False
    #: the value does not read the classifier head (computed once, with the first label set's
    #: head, for every label set of a store; ``ingest.proxy_table`` says why not bit-equal)
    head_free: bool = False
    #: batches of the proxy batch's size it reads (ZiCo: 2, the first 2·B images)
    batches: int = 1

    @property
    def protocol(self) -> str:
        """How its pass runs the network: init, input, batch (``PASS_PROTOCOLS``)."""
        return PASS_PROTOCOLS.get(self.group, self.group)

    @property
    def group(self) -> str:
        """The name of the pass this proxy shares with others (``compute_all``'s timings)."""
        return self.proxy_pass.name

    @property
    def doc(self) -> str:
        """What the proxy is: its paper, formula, NASLib's conventions, terminal relation."""
        return inspect.getdoc(self.score) or self.summary

    def fn(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None,
           *, seed: int = 0) -> float:
        """This proxy alone on ``model`` (which it may modify: give it a fresh one, train mode)."""
        out = self.proxy_pass.run(model, images, labels, seed=seed, specs=(self,))
        if self.name in out.reasons:
            raise FloatingPointError(out.reasons[self.name])
        return out.values[self.name]


def _proxy(name: str, summary: str, score: Callable[..., float], proxy_pass: ProxyPass,
           *needs: str, labels: bool = False, head_free: bool = False, batches: int = 1) -> ProxySpec:
    return ProxySpec(name, summary, score, proxy_pass, frozenset(needs), labels, head_free, batches)


_REGISTERED = (
    _proxy("params", "parameter count in millions (tensorwatch)", size.params, SIZE_PASS),
    _proxy("flops", "FLOPs in millions at batch 1 (tensorwatch)", size.flops, SIZE_PASS),
    _proxy("l2_norm", "Σ per-layer Frobenius norms of the weights", size.l2_norm, SIZE_PASS),
    _proxy("nwot", "NASWOT log|det K| of ReLU codes (Mellor et al. 2021)", nwot.nwot,
           BATCH_PASS, RELU_CODES),
    _proxy("jacov", "input-Jacobian correlation score (Mellor et al. 2020 v1)", jacobian.jacov,
           BATCH_PASS, INPUT_JACOBIAN),
    _proxy("epe_nas", "per-class input-Jacobian correlations (Lopes et al. 2021)",
           jacobian.epe_nas, BATCH_PASS, INPUT_JACOBIAN, labels=True),
    _proxy("grad_norm", "Σ per-layer norms of ∂L/∂W", gradients.grad_norm, BATCH_PASS,
           LOSS_GRADIENTS, labels=True),
    _proxy("plain", "Σ θ ⊙ ∂L/∂θ", gradients.plain, BATCH_PASS, LOSS_GRADIENTS, labels=True),
    _proxy("snip", "Σ |θ ⊙ ∂L/∂θ| (Lee et al. 2019)", gradients.snip, BATCH_PASS,
           LOSS_GRADIENTS, labels=True),
    _proxy("fisher", "Σ per-channel activation saliency (Theis et al. 2018)", gradients.fisher,
           BATCH_PASS, LOSS_GRADIENTS, CHANNEL_SALIENCY, labels=True),
    _proxy("grasp", "Σ −θ ⊙ H g (Wang et al. 2020)", gradients.grasp, BATCH_PASS,
           LOSS_GRADIENTS, HESSIAN, labels=True),
    _proxy("synflow", "log synaptic flow with |θ|, no BN (Tanaka et al. 2020)",
           synflow.synflow, SYNFLOW_PASS),
    _proxy("zen", "Zen-score under Gaussian init (Lin et al. 2021)", zen.zen, ZEN_PASS),
)

#: the post-Suite-Zero proxies, an opt-in group: in ``PROXIES`` (so ``compute_all(names=..)``,
#: ``compute_proxy`` and ``score_model`` take them) but not in ``PROXY_NAMES``, the default
#: set ingest stores; each runs its paper's protocol (init, input, batch) in its own pass.
#: AZ-NAS's score is a rank aggregate over networks: ``az_nas.az_nas_aggregate`` of a table.
_MODERN = (
    _proxy("az_expressivity", "AZ-NAS Σ per-cell feature-spectrum entropies (Lee & Ham 2024)",
           az_nas.az_expressivity, AZ_PASS, head_free=True),
    _proxy("az_progressivity", "AZ-NAS min expressivity gain per cell (Lee & Ham 2024)",
           az_nas.az_progressivity, AZ_PASS, head_free=True),
    _proxy("az_trainability", "AZ-NAS mean −σ−1/σ+2 of cell Jacobians (Lee & Ham 2024)",
           az_nas.az_trainability, AZ_PASS, head_free=True),
    _proxy("az_complexity", "AZ-NAS complexity: FLOPs in millions (Lee & Ham 2024)",
           az_nas.az_complexity, SIZE_PASS),
    _proxy("meco", "MeCo Σ min eigenvalue of channel correlations, one image (Jiang et al. 2023)",
           meco.meco, MECO_PASS, head_free=True),
    # zico reads labels; its pass answers (nan, "needs labels") itself (see zico's docstring)
    _proxy("zico", "ZiCo Σ log Σ mean|g|/std(g) over two batches (Li et al. 2023)",
           zico.zico, ZICO_PASS, batches=2),
    _proxy("swap", "SWAP distinct sample-wise ReLU patterns (Peng et al. 2024)", swap.swap,
           SWAP_PASS, head_free=True),
    _proxy("swap_reg", "SWAP · exp(−(params_k − μ)²/σ) (Peng et al. 2024)", swap.swap_reg,
           SWAP_PASS),
)

#: VKDNW (CVPR 2025), opt-in as the modern ones, its own pass; its published scores are ranks
#: over networks: ``vkdnw.vkdnw_single`` and ``vkdnw.vkdnw_aggregate`` of a table
_VKDNW = (
    _proxy("vkdnw", "VKDNW entropy of the Fisher spectrum's deciles (Tybl & Neumann 2025)",
           vkdnw.vkdnw, VKDNW_PASS),
    _proxy("vkdnw_tensors", "VKDNW size: number of parameter tensors (Tybl & Neumann 2025)",
           vkdnw.vkdnw_tensors, VKDNW_PASS, head_free=True),
)

#: every proxy in Suite-Zero's (alphabetical) order: the default set (ingest stores these)
PROXY_NAMES: tuple[str, ...] = tuple(sorted(spec.name for spec in _REGISTERED))

#: the opt-in modern proxies, in registration order
MODERN_PROXY_NAMES: tuple[str, ...] = tuple(spec.name for spec in _MODERN)

#: VKDNW's two per-network values, opt-in
VKDNW_PROXY_NAMES: tuple[str, ...] = tuple(spec.name for spec in _VKDNW)

#: every opt-in proxy (not in the default set ingest stores)
OPT_IN_PROXY_NAMES: tuple[str, ...] = MODERN_PROXY_NAMES + VKDNW_PROXY_NAMES

PROXIES: dict[str, ProxySpec] = {
    spec.name: spec for spec in sorted(_REGISTERED, key=lambda spec: spec.name)
} | {spec.name: spec for spec in _MODERN + _VKDNW}


def check_proxy_names(names: Iterable[str] | str | None) -> list[str]:
    """The requested proxy names, deduplicated in order (``PROXY_NAMES`` for None)."""
    if names is None:
        return list(PROXY_NAMES)
    if isinstance(names, str):
        names = [names]
    out = []
    for n in names:
        if n not in PROXIES:
            raise UnknownNameError(f"unknown proxy {n!r} (known: {', '.join(PROXY_NAMES)}; "
                                   f"opt-in: {', '.join(OPT_IN_PROXY_NAMES)})")
        if n not in out:
            out.append(n)
    return out


#: the proxies that do not read the classifier head (``ProxySpec.head_free``)
HEAD_FREE: tuple[str, ...] = tuple(n for n, spec in PROXIES.items() if spec.head_free)


def proxy_card(name: str, batch: int) -> dict[str, object]:
    """What a store records of proxy ``name`` collected with a proxy batch of ``batch`` images:
    summary, protocol (init, input, batch), head dependence, images read, labels read."""
    spec = PROXIES[name]
    return {"summary": spec.summary, "protocol": spec.protocol,
            "head": "free (computed once, with the first label set's head)" if spec.head_free
            else "per label set (computed with each label set's classifier head)",
            "images": int(batch) * spec.batches, "labels": bool(spec.needs_labels or name == "zico")}
