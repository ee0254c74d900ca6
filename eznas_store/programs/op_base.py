"""What every operation table shares: the ``Op`` record and the numeric helpers.

Kept apart from :mod:`.ops` so that the paper's table (:mod:`.ops`) and the opt-in
extension (:mod:`.ops_extension`) use one copy of the guards (float64 linear algebra,
non-finite matrices kept away from LAPACK, eigenvalues within rounding noise of 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["Op"]


@dataclass(frozen=True)
class Op:
    """One primitive: a stable id (the paper's table index), its name, arity and function.

    ``vmappable`` is False only for an op the evaluator must loop over block by block;
    every op of this table is vmappable.
    """

    id: int
    name: str
    arity: int
    fn: Callable[..., torch.Tensor]
    doc: str
    vmappable: bool = True


# --------------------------------------------------------------------------- helpers


def _float(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A bool/int result as the float dtype of ``like`` (float32 for non-float inputs)."""
    dtype = like.dtype if like.is_floating_point() else torch.float32
    return t.to(dtype)


def _rows(a: torch.Tensor) -> torch.Tensor:
    """``A`` reshaped to ``(A.shape[0], -1)``; a 0-d tensor becomes a 1x1 matrix.

    The paper's reshape needs a leading dimension; treating a scalar as 1x1 keeps the
    ops that use it defined on scalars (and matches torch's KLDivLoss on 0-d inputs).
    """
    if a.dim() == 0:
        return a.reshape(1, 1)
    return a.reshape(a.shape[0], -1)


def _linalg(fn: Callable[[torch.Tensor], torch.Tensor], a: torch.Tensor) -> torch.Tensor:
    """``fn(a)`` computed in float64, returned in ``a``'s float dtype.

    Eigenvalue ratios and log-determinants of ill-conditioned float32 matrices differ in
    the 4th digit between a batched and a per-matrix call (different BLAS paths); in
    float64 a block's value no longer depends on which blocks share its stack.
    """
    dtype = a.dtype if a.is_floating_point() else torch.float32
    return fn(a.to(torch.float64)).to(dtype)


def _nan_to_zero(t: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isnan(t), torch.zeros_like(t), t)


def _finite_or_eye(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Matrices with a NaN/Inf entry replaced by the identity, and which ones were finite.

    LAPACK must never see non-finite input: MKL's eigen solvers print "Parameter 3 was
    incorrect" and can crash the process, which on a Dask worker kills the worker.
    """
    ok = torch.isfinite(m).all(dim=-1).all(dim=-1)
    eye = torch.eye(m.shape[-1], dtype=m.dtype, device=m.device).expand_as(m)
    return torch.where(ok[..., None, None], m, eye), ok


def _spectrum(m: torch.Tensor) -> torch.Tensor:
    """Ascending eigenvalues of symmetric ``m``, with those below rounding noise
    (|e| <= n * eps * max|e|) set to exactly 0. Without this, the ratio of a singular
    matrix is max / (±1e-16 * max): a number like ±1e15 whose value and sign depend on how
    the solver was batched, so the fast and reference evaluators disagreed. With it, a
    singular matrix gives ±inf (or NaN for 0/0), the same in every evaluator."""
    e = torch.linalg.eigvalsh(m)
    tol = e.abs().amax(-1, keepdim=True) * (e.shape[-1] * torch.finfo(e.dtype).eps)
    return torch.where(e.abs() <= tol, torch.zeros_like(e), e)
