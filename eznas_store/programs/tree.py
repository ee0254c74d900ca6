"""Programs as data: expression trees over per-block terminals, validated on every way in.

A program is never code. It is a tree of :class:`Terminal` leaves and :class:`Apply`
nodes naming operations of an op table (:data:`eznas_store.programs.ops.OPS` by
default); the evaluator interprets it. It can be written three ways, all lossless:

* readable text, ``frobenius(sigmoid(logdet_lastdims(sign(inpactgrad_D))))``, read back
  by :func:`eznas_store.programs.formula.parse_formula` (no ``eval``);
* a flat prefix list of names, ``["frobenius", "sigmoid", ..., "inpactgrad_D"]``, the
  shape of DEAP's ``PrimitiveTree`` (:meth:`Node.to_prefix` /
  :func:`eznas_store.programs.formula.from_prefix`);
* JSON (``schemas/program.schema.json``), via :mod:`eznas_store.programs.codec`.

Every way in validates: unknown operation or terminal names, wrong arity, depth above
:data:`MAX_DEPTH`, more than :data:`MAX_NODES` nodes end in one
:class:`~eznas_store.errors.ProgramError` line that names the problem and where it is.
This module holds the nodes, :class:`Program` and those checks (:func:`validate_tree`,
:func:`terminal_problem`, :func:`op_problem`) that the other ways in share.

Example
-------
>>> t = Apply("frobenius", (Terminal("act_D"),))
>>> t.formula(), t.depth(), Program(t).key()
('frobenius(act_D)', 1, 'statistics/mean:frobenius(act_D)')
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from eznas_store.errors import ProgramError
from eznas_store.terminals import TERMINALS
from eznas_store.programs.identifiers import check_labels, check_name, is_name, short
from eznas_store.programs.ops import OPS, Op

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "TERMINAL_SETS",
    "AGGREGATES",
    "TO_SCALAR",
    "Apply",
    "Node",
    "Program",
    "Terminal",
    "name_hint",
    "op_problem",
    "terminal_problem",
    "terminals_for",
    "validate_tree",
]

#: deepest tree accepted (a terminal has depth 0, as DEAP's ``PrimitiveTree.height``)
MAX_DEPTH = 64
#: most nodes accepted in one tree
MAX_NODES = 10_000

TO_SCALAR: tuple[str, ...] = ("mean", "l2")
#: how a network's score comes from its block scalars: their mean (EZNAS), their sum, or
#: the depth-weighted mean (block b of n weighted (b+1)/n, weights normalised to sum 1)
AGGREGATES: tuple[str, ...] = ("mean", "sum", "depth")
TERMINAL_SETS: tuple[str, ...] = ("statistics", "proxies")
_STATISTICS = frozenset(TERMINALS)


# --------------------------------------------------------------------------- nodes


class Node:
    """Base of tree nodes: immutable, hashable, compared by their canonical key.

    Key, depth and size are computed once at construction (children first), so hashing
    a node and caching shared subtrees across a population are O(1) per lookup.
    """

    __slots__ = ()

    def key(self) -> str:
        """Canonical text, e.g. ``sum(act_D,wt)``: equal keys mean equal trees."""
        return self._key  # type: ignore[attr-defined]

    def depth(self) -> int:
        """Edges on the longest root-to-leaf path (a terminal has depth 0)."""
        return self._depth  # type: ignore[attr-defined]

    def size(self) -> int:
        """Number of nodes."""
        return self._size  # type: ignore[attr-defined]

    def formula(self) -> str:
        """Readable text, e.g. ``sum(act_D, wt)``; :func:`parse_formula` reads it back."""
        # names hold no ',' so the canonical key only needs spacing
        return self._key.replace(",", ", ")  # type: ignore[attr-defined]

    def iter_nodes(self) -> Iterator[Node]:
        """Nodes in prefix (pre-)order, without recursion."""
        stack: list[Node] = [self]
        while stack:
            node = stack.pop()
            yield node
            if isinstance(node, Apply):
                stack.extend(reversed(node.args))

    def to_prefix(self) -> list[str]:
        """Flat prefix list of names (DEAP's ``PrimitiveTree`` order)."""
        return [n.name if isinstance(n, Terminal) else n.op  # type: ignore[attr-defined]
                for n in self.iter_nodes()]

    def terminal_names(self) -> frozenset[str]:
        """Terminals the tree reads, so that an evaluator loads only those."""
        return frozenset(n.name for n in self.iter_nodes() if isinstance(n, Terminal))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Node):
            return NotImplemented
        return self is other or self._key == other._key  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._key)  # type: ignore[attr-defined]

    def __str__(self) -> str:
        return self.formula()


@dataclass(frozen=True, eq=False)
class Terminal(Node):
    """A leaf naming a per-block statistic (``act_D``) or a proxy value (``synflow``)."""

    name: str

    def __post_init__(self) -> None:
        check_name(self.name, "terminal")
        object.__setattr__(self, "_key", self.name)
        object.__setattr__(self, "_depth", 0)
        object.__setattr__(self, "_size", 1)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Terminal, (self.name,))


@dataclass(frozen=True, eq=False)
class Apply(Node):
    """An operation applied to argument subtrees; ``args`` is always a tuple."""

    op: str
    args: tuple[Node, ...]

    def __post_init__(self) -> None:
        check_name(self.op, "operation")
        args = tuple(self.args)
        if not args:
            raise ProgramError(f"operation {self.op!r} needs at least one argument")
        for a in args:
            if not isinstance(a, Node):
                raise TypeError(f"arguments of {self.op!r} must be Nodes, got {type(a).__name__}")
        object.__setattr__(self, "args", args)
        inner = ",".join(a._key for a in args)  # type: ignore[attr-defined]
        object.__setattr__(self, "_key", f"{self.op}({inner})")
        object.__setattr__(self, "_depth", 1 + max(a._depth for a in args))  # type: ignore[attr-defined]
        object.__setattr__(self, "_size", 1 + sum(a._size for a in args))  # type: ignore[attr-defined]

    def __reduce__(self) -> tuple[Any, ...]:
        return (Apply, (self.op, self.args))


# --------------------------------------------------------------------------- validation


def terminals_for(terminal_set: str) -> frozenset[str] | None:
    """The allowed terminal names of a terminal set; ``None`` means any proxy identifier."""
    if terminal_set == "statistics":
        return _STATISTICS
    if terminal_set == "proxies":
        return None
    raise ProgramError(
        f"unknown terminal set {short(terminal_set)}: use one of {', '.join(TERMINAL_SETS)}"
    )


def name_hint(name: str, known: Collection[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or ``""``."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def terminal_problem(
    name: str, terminals: Collection[str] | None, ops: Mapping[str, Op]
) -> str | None:
    """Why ``name`` is not an allowed terminal, or None when it is."""
    if terminals is not None:
        if name in terminals:
            return None
        if name in ops:
            return f"operation {name!r} is used without arguments"
        return f"unknown terminal {short(name)}{name_hint(name, terminals)}"
    if not is_name(name):
        return f"invalid proxy terminal name {short(name)}"
    if name in ops:
        return f"proxy terminal {name!r} clashes with the operation of that name"
    return None


def op_problem(name: str, n_args: int, ops: Mapping[str, Op]) -> str | None:
    """Why ``name`` applied to ``n_args`` arguments is not an allowed operation, or None."""
    op = ops.get(name)
    if op is None:
        return f"unknown operation {short(name)}{name_hint(name, ops)}"
    if op.arity != n_args:
        return f"operation {name!r} takes {op.arity} argument(s), got {n_args}"
    return None


def validate_tree(
    node: Node,
    *,
    ops: Mapping[str, Op] = OPS,
    terminals: Collection[str] | None = TERMINALS,
    path: str = "$.tree",
) -> None:
    """Raise :class:`ProgramError` unless ``node`` is a valid tree over ``ops``/``terminals``.

    ``terminals=None`` accepts any proxy identifier (terminal set "proxies"). The
    message names the first problem in prefix order and its JSON path under ``path``.
    """
    if not isinstance(node, Node):
        raise ProgramError(f"{path}: expected a tree node, got {type(node).__name__}")
    if node.depth() > MAX_DEPTH:
        raise ProgramError(f"{path}: tree depth {node.depth()} exceeds the limit of {MAX_DEPTH}")
    if node.size() > MAX_NODES:
        raise ProgramError(f"{path}: tree has {node.size()} nodes, more than the limit of {MAX_NODES}")
    stack: list[tuple[Node, str]] = [(node, path)]
    while stack:
        n, p = stack.pop()
        if isinstance(n, Terminal):
            problem = terminal_problem(n.name, terminals, ops)
        elif isinstance(n, Apply):
            problem = op_problem(n.op, len(n.args), ops)
            stack.extend((a, f"{p}.args[{i}]") for i, a in reversed(list(enumerate(n.args))))
        else:
            problem = f"expected a tree node, got {type(n).__name__}"
        if problem:
            raise ProgramError(f"{p}: {problem}")


# --------------------------------------------------------------------------- programs


@dataclass(frozen=True)
class Program:
    """A per-block program and how its output becomes a block score.

    ``to_scalar`` is "mean" (mean of all entries, the EZNAS default) or "l2" (their L2
    norm, the alternative of the paper's Fig. 3). ``terminal_set`` says what the leaves
    name: "statistics" (the 22 EZNAS terminals) or "proxies" (hand-crafted proxy
    values). ``name`` and ``meta`` (plain JSON values: fitness, provenance, ...) are
    labels: equality and hashing ignore them, so a cache keyed by programs is keyed by
    what they compute.
    """

    tree: Node
    to_scalar: str = "mean"
    terminal_set: str = "statistics"
    name: str | None = field(default=None, compare=False)
    meta: dict[str, Any] = field(default_factory=dict, compare=False)
    aggregate: str = "mean"

    def __post_init__(self) -> None:
        if not isinstance(self.tree, Node):
            raise TypeError(f"Program.tree must be a Node, got {type(self.tree).__name__}")
        if self.to_scalar not in TO_SCALAR:
            raise ProgramError(
                f"unknown to_scalar {short(self.to_scalar)}: use one of {', '.join(TO_SCALAR)}"
            )
        if self.aggregate not in AGGREGATES:
            raise ProgramError(
                f"unknown aggregate {short(self.aggregate)}: use one of {', '.join(AGGREGATES)}"
            )
        terminals_for(self.terminal_set)
        check_labels(self)

    def key(self) -> str:
        """Canonical identity text, e.g. ``statistics/mean:frobenius(act_D)`` (an aggregate
        other than the mean is named after the reduction: ``statistics/mean+sum:...``)."""
        agg = "" if self.aggregate == "mean" else f"+{self.aggregate}"
        return f"{self.terminal_set}/{self.to_scalar}{agg}:{self.tree.key()}"

    def formula(self) -> str:
        return self.tree.formula()

    def validate(self, *, ops: Mapping[str, Op] = OPS) -> None:
        """Raise :class:`ProgramError` unless every name is known to ``ops``/the terminal set."""
        validate_tree(self.tree, ops=ops, terminals=terminals_for(self.terminal_set))

    def with_meta(self, **values: Any) -> Program:
        """A copy with ``values`` merged into ``meta`` (e.g. a fitness after evaluation)."""
        return replace(self, meta={**self.meta, **values})
