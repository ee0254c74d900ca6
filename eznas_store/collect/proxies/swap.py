"""SWAP (Peng, Song, Fayek, Ciesielski & Chang, ICLR 2024, "SWAP-NAS: Sample-Wise
Activation Patterns for Ultra-fast NAS"): the number of distinct sample-wise activation
patterns, plain (``swap``) and size-regularised (``swap_reg``).

The ``swap`` pass follows the authors' code (``docs/design.md`` §6.4): train mode,
no grad, no labels, the first :data:`SWAP_BATCH` = 16 images of the batch it is given (the
reference's 16 real training images; fewer if the batch is smaller). The pattern count is
capped at 2^B and B = 16 saturates some conv-heavy NB201 cells at 65,536, so the protocol notes
suggested B ≥ 32; measured on the same 38 cells (docs/results.md, issue 13), B = 16 gives Spearman ρ
0.79 / 0.85 / 0.82 with CIFAR-10 / CIFAR-100 / ImageNet16-120 test accuracy (the paper: 0.81)
and B = 64 only 0.64 / 0.66 / 0.65: at 64 images nearly every neuron's pattern is distinct,
so the count tends to the number of ReLU units. Hence the reference's 16 (and a 4x cheaper
pass). A forward hook on every ``nn.ReLU`` whose input is 4-D keeps its output; per
image the outputs are flattened and concatenated, A ∈ ℝ^{B×M}, binarised (> 0); SWAP =
the number of distinct columns of that B×M 0/1 matrix (neurons with distinct patterns
over the batch), ≤ min(M, 2^B). The score is the mean over :data:`SWAP_REPEATS`
re-initialisations (Conv/Linear weights N(0, 1), biases 0, BN γ = 1, β = 0; BN without
affine parameters is skipped, where the reference crashes).

Regularised: SWAP · exp(−(P − μ)²/σ), P the parameter count in thousands (all
parameters; NB201 has no auxiliary head), σ used as is (not squared, no ½), as the
reference code. ⚠ The repository has no μ/σ for NB201 and the paper's values could not
be read here: :data:`SWAP_REG_MU` / :data:`SWAP_REG_SIGMA` are placeholders chosen by this
package (centre at NB201's largest network at C=16, N=5, 10 classes, ≈1531 k parameters,
width σ = μ², i.e. a factor e^{−1} at P = 0), documented as a deviation; use
:func:`swap_regularised` with the paper's values to reproduce its numbers.

On DARTS the pass runs on SWAP's own network (a one-cell, stem-less DARTS skeleton, space
``darts-swap``; the DARTS space's ``proxy_networks`` send it there), as the authors' DARTS
protocol. Their "first 16 images of the unshuffled training set" is, in an image folder read
here (classes sorted by name, files by name), 16 airplanes; a store reads the first 16 of its
seeded, class-mixed proxy batch instead (docs/results.md compares both).

The count is :func:`distinct_patterns`: each neuron's 16 on/off bits packed into one integer
and the distinct integers counted with a 2^16-flag table (O(M), no sort). The authors'
``torch.unique(dim=0)`` on the 0/1 matrix gives the same number and was about 90 % of their
2.46 s per DARTS genotype.

Other deviations: repeats draw from ``torch.Generator().manual_seed(seed)`` in sequence
(the reference never reseeds, so its values depend on the process's RNG state).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from eznas_store.collect.proxies.features import gaussian_init
from eznas_store.collect.proxies.passes import Once, PassResult, ProxyPass, forward_with_hooks, score_each

__all__ = ["SWAP_BATCH", "SWAP_PASS", "SWAP_REG_MU", "SWAP_REG_SIGMA", "SWAP_REPEATS", "SwapState",
           "distinct_patterns", "pattern_keys", "swap", "swap_reg", "swap_regularised"]

#: re-initialisations averaged (the reference's 32)
SWAP_REPEATS = 32
#: images the patterns are taken over (the reference's 16; see the module docstring)
SWAP_BATCH = 16
#: ⚠ placeholder regulariser centre, thousands of parameters (see the module docstring)
SWAP_REG_MU = 1531.0
#: ⚠ placeholder regulariser width (used as is: exp(−(P − μ)²/σ))
SWAP_REG_SIGMA = SWAP_REG_MU ** 2
#: up to this many images the keys are counted with a presence table of 2^B flags, O(M)
#: instead of a sort (2^20 flags = 1 MiB)
_TABLE_BITS = 20


def pattern_keys(codes: torch.Tensor) -> np.ndarray:
    """(B, M) 0/1 codes → (M, ceil(B/64)) uint64 keys: bit i of neuron j's key = codes[i, j]
    (``np.packbits`` along the batch, little-endian, then 8 bytes per word)."""
    c = codes.reshape(codes.shape[0], -1).detach().to("cpu", torch.bool).numpy()
    packed = np.packbits(c, axis=0, bitorder="little")  # (ceil(B/8), M) uint8
    words = -(-packed.shape[0] // 8)
    rows = np.zeros((c.shape[1], 8 * words), dtype=np.uint8)
    rows[:, :packed.shape[0]] = packed.T
    return rows.view("<u8")


def distinct_patterns(codes: Sequence[torch.Tensor]) -> int:
    """Number of distinct columns of the 0/1 matrix made of the (B, M_r) ``codes``, side by side.

    Each column's B bits are packed into integers (:func:`pattern_keys`); up to
    :data:`_TABLE_BITS` images the distinct keys are counted with a table of 2^B flags, above
    with a sort (``np.unique``, one row of words per column beyond 64 images). Equal to
    ``torch.unique(codes, dim=1)``'s count (``tests/test_darts_skeleton.py``) at a fraction of
    its cost: the authors' unique is most of a SWAP pass."""
    c = torch.cat([x.reshape(x.shape[0], -1) for x in codes], dim=1)
    keys = pattern_keys(c)
    if c.shape[0] <= _TABLE_BITS:
        seen = np.zeros(1 << c.shape[0], dtype=bool)
        seen[keys[:, 0]] = True
        return int(np.count_nonzero(seen))
    if keys.shape[1] == 1:
        return int(np.unique(keys[:, 0]).size)
    rows = np.ascontiguousarray(keys)
    return int(np.unique(rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1])))).size)


def _relu_codes(model: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """The (B, ...) codes (output > 0) of every nn.ReLU with a 4-D input, in one forward."""
    codes: list[torch.Tensor] = []

    def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        if args and isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
            codes.append((out.detach() > 0).reshape(out.shape[0], -1))

    forward_with_hooks(model, images,
                       [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)])
    return codes


def swap_regularised(swap_value: float, params_thousands: float, *, mu: float = SWAP_REG_MU,
                     sigma: float = SWAP_REG_SIGMA) -> float:
    """SWAP's regularised score: ``swap_value · exp(−(P − μ)²/σ)``, σ used as is."""
    return float(swap_value) * math.exp(-((float(params_thousands) - mu) ** 2) / sigma)


class SwapState:
    """The ``swap`` pass: the mean pattern count over the repeats, computed once for both."""

    def __init__(self, model: nn.Module, images: torch.Tensor, seed: int) -> None:
        self.model, self.images, self.seed = model, images, seed
        #: mean over :data:`SWAP_REPEATS` re-initialisations; raises what computing it raised
        self.mean_patterns = Once(self._compute)

    def _compute(self) -> float:
        gen = torch.Generator().manual_seed(int(self.seed))
        self.model.train()
        counts = []
        for _ in range(SWAP_REPEATS):
            gaussian_init(self.model, gen)
            codes = _relu_codes(self.model, self.images)
            if not codes:
                raise ValueError("swap reads nn.ReLU modules with 4-D inputs; this network has none")
            counts.append(distinct_patterns(codes))
        return float(sum(counts)) / len(counts)

    def params_thousands(self) -> float:
        return sum(p.numel() for p in self.model.parameters()) / 1e3


def swap(state: SwapState) -> float:
    """SWAP (Peng et al., ICLR 2024): the number of distinct sample-wise activation patterns,
    i.e. of neurons (units of every nn.ReLU with a 4-D input) whose on/off pattern over the
    batch differs, ≤ min(#units, 2^B), over the batch's first 16 images (B = 16, the
    reference's); mean over 32 N(0, 1) re-inits, train mode, no labels. Higher is better.
    Terminals: no (needs the N(0, 1) re-init)."""
    return state.mean_patterns()


def swap_reg(state: SwapState) -> float:
    """Regularised SWAP (Peng et al., ICLR 2024): ``swap`` · exp(−(P − μ)²/σ), P the
    parameter count in thousands; μ, σ are this package's placeholders (``SWAP_REG_MU``,
    ``SWAP_REG_SIGMA``: the paper's NB201 values were not available). Terminals: no."""
    return swap_regularised(state.mean_patterns(), state.params_thousands())


def _run_swap_pass(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None,
                   *, seed: int, specs: Sequence[Any]) -> PassResult:
    """The ``swap`` pass: repeated N(0, 1) re-inits, so it is its own pass; the first
    :data:`SWAP_BATCH` images."""
    return score_each(SwapState(model, images[:SWAP_BATCH], seed), specs)


SWAP_PASS = ProxyPass("swap", _run_swap_pass)
