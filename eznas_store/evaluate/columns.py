"""Proxy programs over whole columns: one value per network, from a network x proxy table.

The tree is interpreted by the same ``eval_tree`` as statistics programs, but its
terminals are float64 columns and its ops act on them
(``eznas_store.programs.proxy_ops.PROXY_OPS``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from eznas_store.errors import UnknownNameError
from eznas_store.evaluate.interpret import OpFailure, eval_tree, first_bad
from eznas_store.evaluate.keys import node_key, terminal_names
from eznas_store.programs import Op

__all__ = ["evaluate_columns"]


def _column_tensors(columns: Mapping[str, Any], needed: set[str], what: str
                    ) -> tuple[dict[str, torch.Tensor], int]:
    """The ``needed`` columns as 1-D float64 tensors of one common length."""
    missing = sorted(needed - set(columns))
    if missing:
        raise UnknownNameError(
            f"proxy column(s) {missing} are not in the {what}; it has {sorted(columns)}"
        )
    out: dict[str, torch.Tensor] = {}
    for name in sorted(needed):
        v = columns[name]
        if not isinstance(v, torch.Tensor):
            v = np.asarray(v, dtype=np.float64)
            v = v if v.flags.writeable else v.copy()  # torch warns on read-only arrays
        t = torch.as_tensor(v, dtype=torch.float64)
        if t.dim() != 1:
            raise ValueError(f"{what} column {name!r} must be one-dimensional, got shape {tuple(t.shape)}")
        out[name] = t
    lengths = {len(t) for t in out.values()}
    if len(lengths) > 1:
        raise ValueError(f"{what} columns have different lengths: "
                         f"{ {k: len(t) for k, t in out.items()} }")
    return out, lengths.pop() if lengths else 0


def _column_reason(tree: Any, trace: list[tuple[Any, torch.Tensor]], row: int, network: int) -> str:
    """Which node first made row ``row`` non-finite: ``"pdiv: NaN at network 3"``."""
    outs = {id(n): y for n, y in trace}

    def bad(y: torch.Tensor) -> str | None:
        v = y.reshape(-1)
        v = v[row if v.numel() > 1 else 0]
        return None if bool(torch.isfinite(v)) else ("NaN" if bool(torch.isnan(v)) else "Inf")

    return f"{first_bad(tree, bad(outs[id(tree)]), outs, bad)} at network {network}"


def evaluate_columns(
    program_or_tree: Any,
    columns: Mapping[str, np.ndarray | torch.Tensor],
    *,
    ops: Mapping[str, Op],
    reference: Mapping[str, np.ndarray | torch.Tensor] | None = None,
) -> tuple[np.ndarray, str | None]:
    """Scores of a proxy program over whole columns (one value per network) and why any is NaN.

    The tree is interpreted by the same ``eval_tree`` as statistics programs, but its
    terminals are whole float64 columns (a network x proxy table) and ``ops`` act on
    them (``eznas_store.programs.proxy_ops.PROXY_OPS``). A network whose score is NaN/Inf gets
    NaN; the reason names the first such network and the node that produced it. An op
    that raises makes every network NaN.

    ``reference``: columns of a reference sample of networks. Ops that depend on other
    rows (a ``ReferenceOp`` such as ``rank``) then compare each network with the
    reference rows only, so one unseen network gets the score it would get beside the
    sample. Implemented exactly by evaluating the tree on ``[reference; columns]`` with
    such ops bound to the first ``len(reference)`` rows (every other op is elementwise).
    """
    tree = program_or_tree.tree if hasattr(program_or_tree, "tree") else program_or_tree
    node_key(tree, ops=ops)  # validates operation names and arities
    needed = terminal_names(tree)
    cols, n = _column_tensors(columns, needed, "columns")
    n_ref = 0
    if reference is not None:
        ref, n_ref = _column_tensors(reference, needed, "reference")
        cols = {k: torch.cat([ref[k], cols[k]]) for k in needed}
        ops = {k: (o.bind_reference(n_ref) if callable(getattr(o, "bind_reference", None)) else o)
               for k, o in ops.items()}
    trace: list[tuple[Any, torch.Tensor]] = []
    try:
        with torch.inference_mode():
            y = eval_tree(tree, cols, ops, trace)
    except OpFailure as exc:
        return np.full(n, np.nan), str(exc)
    y = y.detach().to(torch.float64).reshape(-1)
    if y.numel() == 1:
        y = y.expand(n_ref + n)
    if y.numel() != n_ref + n:
        return np.full(n, np.nan), (f"program output has {y.numel()} values for "
                                    f"{n_ref + n} rows")
    out = y[n_ref:].numpy().copy()
    bad = ~np.isfinite(out)
    out[bad] = np.nan
    if not bad.any():
        return out, None
    i = int(np.flatnonzero(bad)[0])
    return out, _column_reason(tree, trace, n_ref + i, i)
