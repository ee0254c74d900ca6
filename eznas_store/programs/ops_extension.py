"""The opt-in extension of the operation table (ids 35..40): channel statistics and spectra.

Why: the two strongest hand-crafted proxies of today are statistics of tensors the store
already holds, and Table 1 cannot express either (docs/design.md §3, "Beyond Table 1"):

* AZ-NAS expressivity: the entropy of the eigenvalues of a feature map's channel
  covariance, ``eig_entropy(channel_cov(act_N))`` here (AZ-NAS feeds Gaussian noise, our
  N pass);
* MeCo: the smallest eigenvalue of a feature map's channel Pearson matrix, summed over
  layers: ``eig_min(channel_corr(act_D))`` with the ``sum`` aggregate.

With these ops evolution can reach such statistics and recombine them with the 22
terminals. They are not drawn by default (``evolve --op-set paper`` is the seed paper's
table); ``--op-set extended`` adds them, and the run records the choice. Every program may
*name* them (they are in :data:`eznas_store.programs.ops.OPS`), so an extended program
loads, scores and transfers like any other.

Conventions. A feature map is ``(N, C, H, W)`` (or ``(N, C)``, or one sample ``(C, H, W)``):
the channel statistics treat the C channels as variables and every other axis (samples and
pixels) as observations, so at batch 1 they are MeCo's per-image matrices and at batch 16
they pool the batch, as AZ-NAS does. A conv weight ``(Cout, Cin, k, k)`` reads as a map of
Cin channels. The spectra take a square matrix (a channel covariance, a correlation, a
Gram matrix); the effective rank takes any tensor as the rows of ``A.shape[0]`` (conv weights:
output channels; a batch of activations: its samples, as the paper's ``logdet`` reshapes).
All compute in float64 (:func:`~eznas_store.programs.op_base._linalg`), keep non-finite
matrices away from LAPACK (NaN out, never a crash), and are vmappable.
"""

from __future__ import annotations

import torch

from eznas_store.programs.op_base import Op, _finite_or_eye, _linalg, _rows, _spectrum

__all__ = ["EXTENSION_TABLE"]

#: AZ-NAS's guard inside its entropy's log
ENTROPY_EPS = 1e-8


def _channel_matrix(a: torch.Tensor) -> torch.Tensor:
    """``(C, n)``: channels as rows, every other axis as observations."""
    if a.dim() in (2, 4):
        x = a.transpose(0, 1)
    elif a.dim() == 3:
        x = a
    else:
        raise ValueError(f"channel statistics need a 2-, 3- or 4-D feature map, got {a.dim()}-D")
    return x.reshape(x.shape[0], -1)


def _centred(x: torch.Tensor) -> torch.Tensor:
    m = _channel_matrix(x)
    return m - m.mean(dim=1, keepdim=True)


def _cov(x: torch.Tensor) -> torch.Tensor:
    c = _centred(x)
    return c @ c.mT / c.shape[1]


def _channel_cov(a: torch.Tensor) -> torch.Tensor:
    return _linalg(_cov, a)


def _channel_corr(a: torch.Tensor) -> torch.Tensor:
    def corr(x: torch.Tensor) -> torch.Tensor:
        c = _centred(x)
        # correlation is scale-free per channel: scaling each row to max |x| = 1 first keeps
        # tiny channels from underflowing to a variance of 0 beside a non-zero covariance
        peak = c.abs().amax(dim=1, keepdim=True)
        c = c / torch.where(peak > 0, peak, torch.ones_like(peak))
        cov = c @ c.mT
        d = torch.sqrt(torch.diagonal(cov, dim1=-2, dim2=-1))
        r = cov / (d[:, None] * d[None, :])
        r = torch.where(torch.isfinite(r), r, torch.zeros_like(r))  # MeCo: NaN/Inf -> 0
        return r.clamp(-1.0, 1.0)

    return _linalg(corr, a)


def _sym_spectrum(x: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Ascending eigenvalues of the symmetric part of a square matrix, and whether it was finite.

    A matrix only (2-D): a feature map's per-channel H x W planes are not what these ops are
    for, and their thousands of small eigenproblems were most of an extended generation's time.
    """
    if x.dim() != 2 or x.shape[0] != x.shape[1]:
        raise ValueError(f"{name} needs a square matrix, got shape {tuple(x.shape)}")
    m, ok = _finite_or_eye((x + x.mT) / 2)
    return _spectrum(m), ok


def _nan_unless(ok: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.where(ok, v, torch.full_like(v, float("nan")))


def _extreme_eigenvalue(name: str, position: int):
    """The op returning the eigenvalue at ``position`` of the ascending spectrum (0: smallest, -1: largest)."""
    def op(a: torch.Tensor) -> torch.Tensor:
        def f(x: torch.Tensor) -> torch.Tensor:
            e, ok = _sym_spectrum(x, name)
            return _nan_unless(ok, e[..., position])

        return _linalg(f, a)

    return op


_eig_min = _extreme_eigenvalue("eig_min", 0)
_eig_max = _extreme_eigenvalue("eig_max", -1)


def _entropy(w: torch.Tensor) -> torch.Tensor:
    """Entropy of non-negative weights normalised to sum 1 (0 for an all-zero spectrum)."""
    total = w.sum(-1, keepdim=True)
    p = w / torch.where(total > 0, total, torch.ones_like(total))
    h = -(p * torch.log(p + ENTROPY_EPS)).sum(-1)
    return torch.where(total[..., 0] > 0, h, torch.zeros_like(h))


def _eig_entropy(a: torch.Tensor) -> torch.Tensor:
    def f(x: torch.Tensor) -> torch.Tensor:
        e, ok = _sym_spectrum(x, "eig_entropy")
        return _nan_unless(ok, _entropy(e.clamp(min=0)))

    return _linalg(f, a)


def _eff_rank(a: torch.Tensor) -> torch.Tensor:
    def f(x: torch.Tensor) -> torch.Tensor:
        r = _rows(x)
        gram = r @ r.mT if r.shape[0] <= r.shape[1] else r.mT @ r
        m, ok = _finite_or_eye(gram)
        s = torch.sqrt(_spectrum(m).clamp(min=0))
        return _nan_unless(ok, torch.exp(_entropy(s)))

    return _linalg(f, a)


EXTENSION_TABLE: tuple[Op, ...] = (
    Op(35, "channel_cov", 1, _channel_cov,
       "C x C covariance of a feature map's channels, observations = every other axis "
       "(N, H, W), centred, divided by their count (AZ-NAS's Sigma); (N, C, H, W) and (N, C) "
       "have channels on dim 1, (C, H, W) on dim 0; raises for other ranks."),
    Op(36, "channel_corr", 1, _channel_corr,
       "C x C Pearson correlation of the channels (as channel_cov), clamped to [-1, 1], NaN/Inf "
       "-> 0 as MeCo does (a constant channel's row and diagonal are 0)."),
    Op(37, "eig_min", 1, _eig_min,
       "Smallest eigenvalue of the symmetric part (A + A^T)/2 of a square matrix (raises for "
       "any other shape); NaN for a non-finite matrix; eigenvalues within rounding noise of 0 "
       "are 0."),
    Op(38, "eig_max", 1, _eig_max, "Largest eigenvalue, as eig_min."),
    Op(39, "eig_entropy", 1, _eig_entropy,
       "Entropy -sum p ln(p + 1e-8) of the eigenvalues of the symmetric part of a square matrix, "
       "clamped at 0 and normalised to sum 1 (AZ-NAS expressivity on a covariance); 0 for an "
       "all-zero spectrum; NaN for a non-finite matrix."),
    Op(40, "eff_rank", 1, _eff_rank,
       "Effective rank (Roy & Vetterli): exp of the entropy of the normalised singular values "
       "of R = A reshaped to (A.shape[0], -1) (a 0-d tensor is 1 x 1), a 0-d tensor."),
)
