"""Operations of *proxy programs*: formulas over the values of hand-crafted proxies.

A proxy program (terminal set ``"proxies"``) combines whole columns of a network x
proxy table -- ``synflow``, ``nwot``, ``jacov``, ..., ``flops``, ``params`` -- into one
score per network, as in Phan & Luong (2025), "From Hand-Crafted Metrics to Evolved
Training-Free Performance Predictors for NAS via Genetic Programming". It is the same
tree as a statistics program (:mod:`eznas_store.programs.tree`), validated and interpreted
with ``ops=PROXY_OPS`` instead of the EZNAS table.

Every operation takes and returns 1-D float64 tensors, one value per network of a
problem. Proxy values span 1e-3..1e60, so everything stays float64 and every result is
*finite-guarded*: a non-finite input or result (a failed proxy, overflow of
``mul``/``square``, ...) becomes NaN -- so ``sigmoid(inf)`` cannot hide a failure --
which makes the program invalid for that network (docs/design.md §3: NaN plus a reason, never a
magic number). All ops but ``rank`` act elementwise.

Protected operations follow the usual GP convention and are part of the semantics:

* ``pdiv(a, b)`` is ``a / b``, but **1** where ``|b| < 1e-12`` (Koza's protected
  division returns 1, so ``pdiv(x, x)`` is 1 everywhere);
* ``inv(a)`` is ``pdiv(1, a)``;
* ``abslog(a)`` is ``log|a|``, but **0** where ``a == 0`` (as the EZNAS table's abslog).

``rank`` normalises within the problem: average ranks of ties, mapped to [0, 1] by
``(rank - 1) / (n - 1)``, NaN kept NaN and left out of the ranking. Because it depends on
the other networks, a single unseen network needs a *reference sample* to be ranked
against: :func:`eznas_store.evaluate.columns.evaluate_columns` evaluates the tree on
``[reference; columns]`` and binds ``rank`` (a :class:`ReferenceOp`) to rank every row
against the reference rows only -- exact, since every other op is elementwise.

Example
-------
>>> import torch
>>> PROXY_OPS["pdiv"].fn(torch.tensor([1.0, 2.0], dtype=torch.float64),
...                      torch.tensor([0.0, 4.0], dtype=torch.float64))
tensor([1.0000, 0.5000], dtype=torch.float64)
>>> PROXY_OPS["rank"].fn(torch.tensor([10.0, 30.0, 20.0, 20.0], dtype=torch.float64))
tensor([0.0000, 1.0000, 0.5000, 0.5000], dtype=torch.float64)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from eznas_store.programs.ops import Op

__all__ = ["PDIV_EPS", "PROXY_OPS", "ReferenceOp", "rank_against"]

#: ``pdiv``/``inv`` treat a divisor with ``|b| < PDIV_EPS`` as zero and return 1
PDIV_EPS = 1e-12

_F64 = torch.float64


# --------------------------------------------------------------------------- helpers


def _f64(x: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(x, dtype=_F64)


def _finite(out: torch.Tensor) -> torch.Tensor:
    """Non-finite entries become NaN: the one way a proxy program is invalid for a network.

    ``x + (x - x)`` is ``x`` for finite ``x`` and NaN for +-inf/NaN (inf - inf = NaN):
    one cheap pass instead of ``isfinite`` + ``where`` (only -0.0 turns into 0.0).
    """
    return out + (out - out)


def _guarded(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    @functools.wraps(fn)
    def run(*args: torch.Tensor) -> torch.Tensor:
        return _finite(fn(*(_finite(_f64(a)) for a in args)))

    return run


def rank_against(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Normalised mid-rank of each value of ``x`` within the sorted ``reference``, in [0, 1].

    A value's position is ``(#ref < x + #ref <= x - 1) / 2`` (0-based; the average
    position of a tied group; halfway between two neighbours for a value not in the
    reference), divided by ``R - 1`` and clipped to [0, 1]. With ``reference = x`` this
    is the within-problem average rank ``(rank - 1) / (n - 1)``, so ranking an unseen
    network against a reference sample agrees exactly with ranking the sample itself.
    NaN in ``reference`` is left out; NaN in ``x`` stays NaN; a single reference value
    ranks everything 0.5 (0 below, 1 above it); no finite reference gives all NaN.

    Computed in NumPy on sorted queries (binary searches of sorted queries stay in
    cache): ~0.7 ms for 10k networks against ~5 ms for torch searchsorted.
    """
    xv = np.ascontiguousarray(_f64(x).detach().cpu().numpy()).reshape(-1)
    rv = _f64(reference).detach().cpu().numpy().reshape(-1)
    ref = np.sort(rv[~np.isnan(rv)])
    n = ref.size
    if n == 0:
        return torch.full(tuple(x.shape), torch.nan, dtype=_F64)
    order = np.argsort(xv)
    xs = xv[order]
    pos = (np.searchsorted(ref, xs, "left") + np.searchsorted(ref, xs, "right") - 1) / 2
    vals = np.clip(pos / (n - 1) if n > 1 else pos + 0.5, 0.0, 1.0)
    out = np.empty_like(xv)
    out[order] = vals
    out[np.isnan(xv)] = np.nan
    return torch.from_numpy(out).reshape(x.shape)


@dataclass(frozen=True)
class ReferenceOp(Op):
    """An op whose value for a row depends on a set of reference rows (``rank``).

    ``fn`` uses all rows as the reference (within-problem); :meth:`bind_reference`
    gives the plain :class:`Op` that uses only the first ``n_ref`` rows, which is how an
    evaluator ranks unseen networks against a kept reference sample.
    """

    fn_ref: Callable[[torch.Tensor, int], torch.Tensor] | None = None

    def bind_reference(self, n_ref: int) -> Op:
        if self.fn_ref is None:  # pragma: no cover - every ReferenceOp here has one
            raise TypeError(f"operation {self.name!r} has no reference form")
        return Op(self.id, self.name, self.arity, functools.partial(self.fn_ref, n_ref=n_ref),
                  self.doc, self.vmappable)


# --------------------------------------------------------------------------- operations


def _pdiv(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    small = b.abs() < PDIV_EPS
    return torch.where(small, torch.ones_like(a * b), a / torch.where(small, torch.ones_like(b), b))


def _inv(a: torch.Tensor) -> torch.Tensor:
    return _pdiv(torch.ones_like(a), a)


def _abslog(a: torch.Tensor) -> torch.Tensor:
    m = a.abs()
    zero = m == 0
    return torch.where(zero, torch.zeros_like(m), torch.log(torch.where(zero, torch.ones_like(m), m)))


def _rank(a: torch.Tensor) -> torch.Tensor:
    return rank_against(a, a)


def _rank_ref(a: torch.Tensor, n_ref: int) -> torch.Tensor:
    return _finite(rank_against(_f64(a), _f64(a)[:n_ref]))


_TABLE: tuple[Op, ...] = (
    Op(100, "add", 2, _guarded(torch.add), "A + B."),
    Op(101, "sub", 2, _guarded(torch.sub), "A - B."),
    Op(102, "mul", 2, _guarded(torch.mul), "A * B (overflow -> NaN)."),
    Op(103, "pdiv", 2, _guarded(_pdiv), f"Protected A / B: 1 where |B| < {PDIV_EPS:g}."),
    Op(104, "neg", 1, _guarded(torch.neg), "-A."),
    Op(105, "abs", 1, _guarded(torch.abs), "|A|."),
    Op(106, "abslog", 1, _guarded(_abslog), "log|A|, 0 where A == 0."),
    Op(107, "sqrt_abs", 1, _guarded(lambda a: torch.sqrt(a.abs())), "sqrt(|A|)."),
    Op(108, "square", 1, _guarded(lambda a: a * a), "A squared (overflow -> NaN)."),
    Op(109, "min", 2, _guarded(torch.minimum), "Elementwise minimum of A and B."),
    Op(110, "max", 2, _guarded(torch.maximum), "Elementwise maximum of A and B."),
    Op(111, "sigmoid", 1, _guarded(torch.sigmoid), "1 / (1 + exp(-A))."),
    Op(112, "inv", 1, _guarded(_inv), f"Protected 1 / A: 1 where |A| < {PDIV_EPS:g}."),
    ReferenceOp(113, "rank", 1, _guarded(_rank),
                "Average rank within the problem scaled to [0, 1]; NaN stays NaN. "
                "Against a reference sample when the evaluator is given one.",
                vmappable=False, fn_ref=_rank_ref),
)

#: the proxy-program operation table, by name (validate trees with ``ops=PROXY_OPS``)
PROXY_OPS: dict[str, Op] = {op.name: op for op in _TABLE}

assert len(PROXY_OPS) == len({op.id for op in _TABLE}) == len(_TABLE)
