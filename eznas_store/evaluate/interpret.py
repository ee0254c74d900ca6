"""Plain interpretation of one tree, a block's scalar, and where a failure came from.

This is the definition both evaluators share: ``eval_tree`` runs a tree op by op on one
mapping of terminals (one block, or whole proxy columns); ``block_scalar`` reduces a
block's output to its scalar; ``diagnose`` and ``first_bad`` name the op where a
non-finite value first appeared, for the one-line failure reasons.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from eznas_store.evaluate.keys import is_apply
from eznas_store.programs import Op

__all__ = [
    "OpFailure",
    "block_scalar",
    "diagnose",
    "eval_tree",
    "first_bad",
    "first_line",
    "reduce",
    "where",
]


def first_line(exc: BaseException) -> str:
    """``"TypeError: first line of the message"``: a failure reason fits on one line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def where(block: int, network: Any) -> str:
    """The place of a failure, appended to every reason."""
    return f"at block {block} of network {network}"


def reduce(x: torch.Tensor, mode: str, dim: int | None) -> torch.Tensor:
    """Mean or L2 norm of all elements (``dim=None``) or along ``dim``."""
    if mode == "mean":
        return x.mean() if dim is None else x.mean(dim=dim)
    return torch.linalg.vector_norm(x) if dim is None else torch.linalg.vector_norm(x, dim=dim)


def block_scalar(y: torch.Tensor, mode: str) -> float:
    """A block's scalar: mean or L2 norm of all elements of its output.

    Reduced in float32 (torch sums float32 with cascaded accumulators, ~1e-7 relative
    error) or float64 for float64 outputs; a float32 result that overflows is redone in
    float64, so a scalar is non-finite only if it is in float64.
    """
    y = y.reshape(-1)
    if y.numel() == 0:
        return math.nan
    if y.dtype not in (torch.float32, torch.float64):
        y = y.to(torch.float32)
    s = float(reduce(y, mode, None))
    if not math.isfinite(s) and y.dtype != torch.float64:
        s = float(reduce(y.to(torch.float64), mode, None))
    return s


class OpFailure(Exception):
    """An op raised while a tree was interpreted; the message is the reason's text."""

    def __init__(self, op: str, exc: BaseException) -> None:
        super().__init__(f"{op} raised {first_line(exc)}")


def eval_tree(node: Any, block: Mapping[str, torch.Tensor], ops: Mapping[str, Op],
              trace: list[tuple[Any, torch.Tensor]] | None = None) -> torch.Tensor:
    """Plain recursive interpretation of ``node`` on one block's terminals."""
    if not is_apply(node):
        out = block[node.name]
    else:
        args = [eval_tree(a, block, ops, trace) for a in node.args]
        try:
            out = ops[node.op].fn(*args)
        except Exception as exc:
            raise OpFailure(node.op, exc) from exc
        if not isinstance(out, torch.Tensor):
            out = torch.as_tensor(out)
    if trace is not None:
        trace.append((node, out))
    return out


def _non_finite(y: torch.Tensor) -> str | None:
    """``"NaN"`` or ``"Inf"`` if a float tensor holds one (NaN first), else None."""
    if y.is_floating_point() or y.is_complex():
        if torch.isnan(y).any():
            return "NaN"
        if torch.isinf(y).any():
            return "Inf"
    return None


def diagnose(tree: Any, block: Mapping[str, torch.Tensor], ops: Mapping[str, Op],
             mode: str) -> str:
    """Where a block's non-finite scalar comes from: ``"op: NaN"`` (or ``"mean: Inf"``)."""
    trace: list[tuple[Any, torch.Tensor]] = []
    try:
        eval_tree(tree, block, ops, trace)
    except OpFailure as exc:  # not expected: the op succeeded before
        return str(exc)
    outs = {id(n): y for n, y in trace}
    kind = _non_finite(outs[id(tree)])
    if kind is None:
        s = block_scalar(outs[id(tree)], mode)
        return f"{mode}: {'NaN' if math.isnan(s) else 'Inf'}"
    return first_bad(tree, kind, outs, _non_finite)


def first_bad(node: Any, kind: str | None, outs: Mapping[int, torch.Tensor],
              bad: Callable[[torch.Tensor], str | None]) -> str:
    """Descend from a bad node to the deepest bad argument: the op where it went wrong."""
    while is_apply(node):
        child = next((a for a in node.args if bad(outs[id(a)]) is not None), None)
        if child is None:
            break
        node, kind = child, bad(outs[id(child)])
    label = node.op if is_apply(node) else f"terminal {node.name}"
    return f"{label}: {kind}"
