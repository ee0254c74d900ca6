"""Program trees as the evaluators see them: canonical subtree keys, terminals, mode.

Subtrees shared by several programs are computed once; the canonical key says when two
subtrees are the same computation (the arguments of ``sum`` and ``product`` are put in
order). Building a key also validates the tree against the op table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eznas_store.errors import ConfigError, ProgramError, UnknownNameError
from eznas_store.evaluate.table_ops import COMMUTATIVE, is_table_op
from eznas_store.programs import OPS, Op
from eznas_store.programs import SequentialProgram

__all__ = ["TO_SCALARS", "is_apply", "node_key", "terminal_names", "tree_and_mode"]

TO_SCALARS: tuple[str, ...] = ("mean", "l2")


def is_apply(node: Any) -> bool:
    """An operation node (it has arguments), not a terminal."""
    return hasattr(node, "args")


def tree_and_mode(program: Any, to_scalar: str | None) -> tuple[Any, str]:
    """(tree, to_scalar) of a ``Program`` (a bare tree node is taken with ``"mean"``).

    A :class:`~eznas_store.programs.sequential.SequentialProgram` is the tree it computes
    (:meth:`~eznas_store.programs.sequential.SequentialProgram.to_tree`, the tree evolve scores
    it by); one without a tree (its output never written, ...) is a ``ProgramError``.
    """
    if isinstance(program, SequentialProgram):
        tree, own = program.to_tree(), program.to_scalar
    elif hasattr(program, "tree"):
        tree, own = program.tree, getattr(program, "to_scalar", "mean")
    else:
        tree, own = program, "mean"
    if to_scalar is not None:
        if to_scalar not in TO_SCALARS:
            raise ConfigError(f"to_scalar must be one of {TO_SCALARS}, got {to_scalar!r}")
        return tree, to_scalar
    if own not in TO_SCALARS:
        raise ProgramError(f"program to_scalar must be one of {TO_SCALARS}, got {own!r}")
    return tree, own


def _check_node(node: Any, ops: Mapping[str, Op]) -> None:
    if not is_apply(node):
        if not isinstance(getattr(node, "name", None), str):
            raise ProgramError(f"not a program node: {node!r}")
        return
    op = ops.get(node.op)
    if op is None:
        raise UnknownNameError(f"unknown operation {node.op!r} in a program; known: {sorted(ops)}")
    if len(node.args) != op.arity:
        raise ProgramError(f"operation {node.op!r} takes {op.arity} argument(s), got {len(node.args)}")


def node_key(node: Any, *, ops: Mapping[str, Op] | None = None,
             _memo: dict[int, str] | None = None) -> str:
    """Canonical key of a subtree: ``name`` or ``op(key, ...)``.

    The two arguments of ``sum`` and ``product`` are put in sorted order, so
    ``sum(a, b)`` and ``sum(b, a)`` share one computation. Iterative: deep trees are fine.
    """
    ops = OPS if ops is None else ops
    memo = {} if _memo is None else _memo
    stack = [node]
    while stack:
        n = stack[-1]
        if id(n) in memo:
            stack.pop()
            continue
        _check_node(n, ops)
        if not is_apply(n):
            memo[id(n)] = n.name
            stack.pop()
            continue
        todo = [a for a in n.args if id(a) not in memo]
        if todo:
            stack.extend(reversed(todo))
            continue
        stack.pop()
        keys = [memo[id(a)] for a in n.args]
        if n.op in COMMUTATIVE and len(keys) == 2 and is_table_op(ops[n.op]):
            keys.sort()
        memo[id(n)] = f"{n.op}({','.join(keys)})"
    return memo[id(node)]


def terminal_names(tree: Any) -> set[str]:
    """Names of the terminals a tree reads."""
    names: set[str] = set()
    stack = [tree]
    while stack:
        n = stack.pop()
        if is_apply(n):
            stack.extend(n.args)
        else:
            names.add(n.name)
    return names
