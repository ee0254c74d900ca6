"""The reference evaluator: one program, network by network, block by block, op by op.

Obviously right and slow: no vmap, no shared subtrees, no cache. It is the definition
the population evaluator (``evaluate.population``) is tested against, and it stops at a
network's first failing block.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from eznas_store.errors import UnknownNameError
from eznas_store.evaluate.interpret import OpFailure, block_scalar, diagnose, eval_tree, where
from eznas_store.evaluate.keys import node_key, terminal_names, tree_and_mode
from eznas_store.programs import OPS, Op

__all__ = ["evaluate_reference"]


def _network_score(tree: Any, mode: str, net: Sequence[Mapping[str, torch.Tensor]], i: int,
                   needed: set[str], ops: Mapping[str, Op]) -> tuple[float, str | None]:
    """Network ``i``'s score (mean of its block scalars), or NaN and why."""
    total = 0.0
    for b, block in enumerate(net):
        missing = needed - set(block)
        if missing:
            raise UnknownNameError(
                f"terminal(s) {sorted(missing)} are not in block {b} of network {i}"
            )
        try:
            y = eval_tree(tree, block, ops)
        except OpFailure as exc:
            return math.nan, f"{exc} {where(b, i)}"
        s = block_scalar(y, mode)
        if not math.isfinite(s):
            return math.nan, f"{diagnose(tree, block, ops, mode)} {where(b, i)}"
        total += s
    return total / len(net), None


def evaluate_reference(
    program: Any,
    blocks: Sequence[Sequence[Mapping[str, torch.Tensor]]],
    *,
    to_scalar: str | None = None,
    ops: Mapping[str, Op] | None = None,
    return_reason: bool = False,
) -> np.ndarray | tuple[np.ndarray, str | None]:
    """Scores (n,) of one program: network by network, block by block, op by op.

    ``blocks[i]`` holds network ``i``'s blocks in execution order, each a mapping from
    terminal name to tensor (``Chunk.network_blocks(i)``). No vmap, no cache: this is the
    definition the fast evaluator is tested against. With ``return_reason`` the first
    failure reason (or ``None``) is returned too; networks are named by position.
    """
    ops = OPS if ops is None else ops
    tree, mode = tree_and_mode(program, to_scalar)
    node_key(tree, ops=ops)  # validates ops and arities
    needed = terminal_names(tree)
    out = np.full(len(blocks), np.nan)
    reason: str | None = None
    with torch.inference_mode():
        for i, net in enumerate(blocks):
            if len(net) == 0:
                reason = reason or f"network {i} has no blocks"
                continue
            score, why = _network_score(tree, mode, net, i, needed, ops)
            if why is None:
                out[i] = score
            else:
                reason = reason or why
    return (out, reason) if return_reason else out
