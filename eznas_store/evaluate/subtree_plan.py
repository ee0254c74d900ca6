"""The plan of a population: its distinct subtrees, once each, and how to slice a group.

Subtrees shared by several programs (same canonical key) become one ``PlanNode``; the
plan orders them children first, knows which programs each root scores, and which
nodes need only their argument's shape. Per ``BlockGroup`` the plan gives every node's
output shape (``PopulationPlan.shapes``) and, from those, slices small enough for the
memory bound (``slice_step``, ``slices``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from eznas_store.evaluate.keys import is_apply, node_key, tree_and_mode
from eznas_store.evaluate.shapes import ShapeAnswer, ShapeCache, TensorSpec
from eznas_store.evaluate.table_ops import RAISE_ON_VALUES, SHAPE_ONLY, is_table_op
from eznas_store.programs import Op

__all__ = ["PlanNode", "PopulationPlan", "ShapeInfo", "build_plan", "slice_step", "slices"]

#: per node key: (per-block output spec or None, shape failure message or None)
ShapeInfo = dict[str, ShapeAnswer]


@dataclass
class PlanNode:
    """One distinct subtree of the population."""

    key: str
    op: Op | None  # None for a terminal
    name: str  # terminal name, or op name
    children: tuple[str, ...]
    #: the node's value needs only the shape of its argument (which never raises)
    shape_only: bool = False


@dataclass
class PopulationPlan:
    """The distinct subtrees of a population and the programs their roots score."""

    nodes: dict[str, PlanNode]
    #: unique node keys, children before parents
    order: list[str]
    #: root key -> [(program index, to_scalar)], in order of first appearance
    roots: dict[str, list[tuple[int, str]]]
    trees: list[Any]
    terminals: set[str]

    def shapes(self, specs: Mapping[str, TensorSpec], cache: ShapeCache) -> ShapeInfo:
        """Per node on one group: (output spec or None, shape failure message or None)."""
        info: ShapeInfo = {}
        for k in self.order:
            node = self.nodes[k]
            if node.op is None:
                info[k] = (specs[node.name], None)
                continue
            kids = [info[c] for c in node.children]
            failed = next((f for _, f in kids if f is not None), None)
            if failed is not None:
                info[k] = (None, failed)
            elif any(s is None for s, _ in kids):
                info[k] = (None, None)
            else:
                spec, fail = cache.infer(node.op, tuple(s for s, _ in kids))
                info[k] = (spec, None if fail is None else f"{node.name} raised {fail}")
        return info

    def shape_only_specs(self, info: ShapeInfo) -> dict[str, TensorSpec]:
        """Shape-only nodes whose argument's spec is known: their subtrees need no run."""
        return {k: info[n.children[0]][0] for k, n in self.nodes.items()
                if n.shape_only and info[n.children[0]][0] is not None}

    def reachable(self, roots: list[str], fixed: Mapping[str, TensorSpec]) -> set[str]:
        """Nodes the roots need (not below a shape-only node)."""
        seen: set[str] = set()
        stack = list(roots)
        while stack:
            k = stack.pop()
            if k not in seen:
                seen.add(k)
                if k not in fixed:
                    stack.extend(self.nodes[k].children)
        return seen


def _register(tree: Any, memo: Mapping[int, str], ops: Mapping[str, Op],
              nodes: dict[str, PlanNode], order: list[str], raise_free: dict[str, bool]) -> None:
    """Add the nodes of ``tree`` not seen before, in post-order (children first)."""
    stack: list[tuple[Any, bool]] = [(tree, False)]
    while stack:
        n, expanded = stack.pop()
        k = memo[id(n)]
        if k in nodes:
            continue
        if not is_apply(n):
            nodes[k] = PlanNode(k, None, n.name, ())
            raise_free[k] = True
            order.append(k)
        elif expanded:
            op = ops[n.op]
            kids = tuple(memo[id(a)] for a in n.args)
            table = is_table_op(op)
            nodes[k] = PlanNode(k, op, n.op, kids, shape_only=(
                table and n.op in SHAPE_ONLY and all(raise_free[c] for c in kids)))
            raise_free[k] = (table and n.op not in RAISE_ON_VALUES
                             and all(raise_free[c] for c in kids))
            order.append(k)
        else:
            stack.append((n, True))
            stack.extend((a, False) for a in reversed(n.args))


def build_plan(programs: Sequence[Any], to_scalar: str | None,
               ops: Mapping[str, Op]) -> PopulationPlan:
    """Validate the programs and merge their trees into distinct subtrees."""
    nodes: dict[str, PlanNode] = {}
    order: list[str] = []
    raise_free: dict[str, bool] = {}  # the subtree cannot raise for any values
    roots: dict[str, list[tuple[int, str]]] = {}
    trees = []
    memo: dict[int, str] = {}
    for p, program in enumerate(programs):
        tree, mode = tree_and_mode(program, to_scalar)
        trees.append(tree)
        root = node_key(tree, ops=ops, _memo=memo)
        _register(tree, memo, ops, nodes, order, raise_free)
        roots.setdefault(root, []).append((p, mode))
    terminals = {n.name for n in nodes.values() if n.op is None}
    return PopulationPlan(nodes, order, roots, trees, terminals)


def slice_step(plan: PopulationPlan, info: ShapeInfo, roots: list[str],
               fixed: Mapping[str, TensorSpec], max_group: int, max_bytes: int) -> int:
    """Blocks per slice: at most ``max_group``, and the largest intermediate of a slice
    under ``max_bytes`` (one block at least)."""
    per_member = max((math.prod(info[k][0][0]) * info[k][0][1].itemsize
                      for k in plan.reachable(roots, fixed)
                      if info[k][0] is not None), default=1)
    return max(1, min(max_group, max_bytes // max(per_member, 1)))


def slices(size: int, max_group: int) -> list[tuple[int, int]]:
    """Split ``range(size)`` into near-equal contiguous slices of at most ``max_group``."""
    parts = max(1, math.ceil(size / max_group))
    bounds = np.linspace(0, size, parts + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
