"""Table ops called directly on stacked blocks (G, ...), where that is known to be exact.

Elementwise ops and ops on the last two dims are already correct on a stack of blocks
once the per-block dims are aligned; the per-block reductions are rewritten over the
flattened rows. This avoids ``torch.func.vmap`` (about 35 us a call, more for
eigvalsh). Anything else returns None and goes through vmap.
"""

from __future__ import annotations

import torch

from eznas_store.evaluate.table_ops import ELEMENTWISE_1, ELEMENTWISE_2, LASTDIMS_1, is_table_op
from eznas_store.programs import Op

__all__ = ["call_stacked"]

_ROW_REDUCTIONS = ("frobenius", "normalized_sum", "l1_norm", "normalize")


def _pad(t: torch.Tensor, nd: int) -> torch.Tensor:
    """(G, *s) -> (G, 1, ..., 1, *s) with ``nd`` per-block dims: per-block broadcasting."""
    k = nd - (t.dim() - 1)
    return t if k <= 0 else t[(slice(None),) + (None,) * k]


def _per_row(name: str, x: torch.Tensor, g: int) -> torch.Tensor:
    """The per-block reductions of the table, over the G flattened blocks of ``x``."""
    flat = x.reshape(g, -1)
    n = flat.shape[1]
    if name == "frobenius":
        return torch.linalg.vector_norm(flat, dim=1)
    if name == "normalized_sum":
        return flat.sum(dim=1) / n
    if name == "l1_norm":
        return torch.abs(flat).sum(dim=1) / n
    view = (g,) + (1,) * (x.dim() - 1)  # normalize
    centred = x - (flat.sum(dim=1) / n).reshape(view)
    c = centred.reshape(g, -1)
    std = torch.sqrt((c * c).sum(dim=1) / (n - 1)).reshape(view)
    out = centred / std
    return torch.where(torch.isnan(out), torch.zeros_like(out), out)


def call_stacked(op: Op, datas: list[torch.Tensor], g: int) -> torch.Tensor | None:
    """``op`` on stacked blocks without vmap, where that is known to be exact; else None."""
    name = op.name
    if not is_table_op(op):
        return None
    if name in ELEMENTWISE_1:
        return op.fn(datas[0])
    if name in ELEMENTWISE_2:
        a, b = datas
        nd = max(a.dim(), b.dim()) - 1
        return op.fn(_pad(a, nd), _pad(b, nd))
    if name in LASTDIMS_1:
        return op.fn(datas[0]) if datas[0].dim() >= 3 else None
    if name == "matmul":
        a, b = datas
        if a.dim() < 3 or b.dim() < 3:
            return None
        nd = max(a.dim(), b.dim()) - 1
        return torch.matmul(_pad(a, nd), _pad(b, nd))
    if name in _ROW_REDUCTIONS:
        return _per_row(name, datas[0], g)
    return None
