"""NASWOT (``nwot``): how differently the untrained network's ReLUs split the batch's images.

It reads the binary ReLU codes of one forward (``main`` pass, :data:`RELU_CODES`); no
gradients, no labels. :func:`nwot_logdet` gives the same score from any codes, e.g. those
rebuilt from the EZNAS terminals (:mod:`eznas_store.collect.proxies.blocks`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from eznas_store.collect.proxies.batch_pass import AgreementKernel, BatchState

__all__ = ["nwot", "nwot_logdet"]


def nwot_logdet(codes: Iterable[torch.Tensor | np.ndarray]) -> float:
    """NWOT's score from binary activation codes: ``log|det K|``.

    ``codes`` yields, per ReLU, a (B, ...) array of 0/1 (or bool) codes (unit active);
    ``K = Σ_layers c cᵀ + (1 − c)(1 − c)ᵀ`` counts, for each pair of images, the units on
    which they agree (units minus the Hamming distance). Returns ``slogdet(K)[1]`` (NASLib
    drops the sign); ``-inf`` when K is singular.
    """
    k = AgreementKernel()
    for c in codes:
        k.add(torch.as_tensor(np.asarray(c) if not isinstance(c, torch.Tensor) else c))
    if k.K is None:
        raise ValueError("nwot needs at least one ReLU layer")
    return float(np.linalg.slogdet(k.K.numpy())[1])


def nwot(state: BatchState) -> float:
    """NASWOT (Mellor, Turner, Storkey & Crowley 2021, "Neural Architecture Search
    without Training", ICML; arXiv:2006.04647 v2/v3).

    For every torch.nn ReLU-family module, the binary code c = (ReLU input > 0) of each
    image; K = Σ_ReLUs c cᵀ + (1 − c)(1 − c)ᵀ (units on which two images agree = units −
    Hamming distance), score = log|det K| (``slogdet``; NASLib drops the sign). Train mode,
    no labels. Terminals: the block-restricted variant with c = (``inpact_D`` > 0) for R-C-B
    blocks (``act_D`` > 0 for C-B-R) is ``blocks.from_terminals``; it leaves out ReLUs that are
    not in blocks (NB201: the final BN-ReLU)."""
    if state.kernel.K is None:
        raise ValueError("the model has no torch.nn ReLU module")
    return float(np.linalg.slogdet(state.kernel.K.numpy())[1])
