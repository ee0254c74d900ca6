"""Score a population of programs on a chunk of networks (DESIGN §3, §5).

A program is evaluated per block: the tree's output for the block (any shape) is reduced
to a scalar (``"mean"`` of all elements, or their ``"l2"`` norm), and a network's score
is the mean of those scalars over all its blocks. If an operation raises for a block, or
the block's scalar is NaN/Inf, the program is invalid for that network: its score is NaN
and the first such failure is reported as a one-line reason. Non-finite values *inside*
a tree are allowed (EZNAS-A relies on ``sigmoid(-inf) = 0``); only the block's scalar
decides (see ``_to_scalar`` for the precision of the reduction).

Two evaluators compute exactly this:

``evaluate_reference``
    one program, one block at a time, op by op: obviously right, slow. It stops at a
    network's first failing block.
``evaluate_population``
    the whole population on a ``Chunk`` at once:

    1. *Shapes first.* Every distinct subtree's per-block output shape is found for
       every ``BlockGroup`` without touching data (pure-Python rules for the table ops,
       meta tensors otherwise). A failure that depends on shapes alone (confirmed by one
       real call on random inputs) makes the program invalid for every network with a
       block in that group, and nothing of it runs there. Shapes also size the slices
       (``max_bytes``).
    2. *One call per group slice.* An op runs once on the stacked blocks of a group
       slice (at most ``max_group`` blocks): directly for the table ops known to act
       elementwise or on the last two dims, else through ``torch.func.vmap(op.fn)``. If
       that raises, the op is retried member by member, so only the members that really
       fail are invalid (their slots then hold a good member's value).
    3. *Shared subtrees once.* Subtrees shared by several programs (canonical key; the
       arguments of ``sum`` and ``product`` are ordered) are computed once per slice,
       depth first, with reference counts: a tensor is freed as soon as its last
       consumer has run, so memory holds a few live subtrees, not all of them.
    4. *No work that cannot change a score.* Groups run smallest first; a slice is
       skipped for a program already invalid on all its networks. ``numel``,
       ``ones_like`` and ``zeros_like`` over a subtree that cannot raise need only its
       shape: the subtree is not evaluated.

    Programs are data: the trees are interpreted with an explicit stack over the op
    table, never ``eval``-ed.

Example
-------
>>> from eznas_store.programs.tree import Apply, Program, Terminal
>>> from eznas_store.evaluate.synthetic import synthetic_chunk
>>> chunk = synthetic_chunk(3, channels=(2, 4, 8), image_size=8, cells_per_stage=1)
>>> prog = Program(Apply("frobenius", (Terminal("act_D"),)))
>>> res = evaluate_population([prog], chunk)
>>> res.scores.shape
(1, 3)
>>> ref = evaluate_reference(prog, [chunk.network_blocks(i) for i in range(3)])
>>> bool(np.allclose(res.scores[0], ref))
True
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from eznas_store.evaluate.chunk import BlockGroup, Chunk
from eznas_store.errors import ConfigError, CorruptChunkError, ProgramError, UnknownNameError
from eznas_store.programs.ops import OPS, Op

__all__ = [
    "TO_SCALARS",
    "ChunkScores",
    "evaluate_population",
    "evaluate_reference",
    "merge_chunk_scores",
    "node_key",
]

TO_SCALARS: tuple[str, ...] = ("mean", "l2")

#: table ops whose result does not depend on the order of their two arguments, bit for
#: bit and in dtype (``equal``/``hamming`` take the first argument's dtype: not these)
_COMMUTATIVE: frozenset[str] = frozenset({"sum", "product"})

# vmap warns once per op without a batching rule; the result is still right
warnings.filterwarnings(
    "ignore", message="There is a performance drop because we have not yet implemented",
    category=UserWarning,
)


@dataclass
class ChunkScores:
    """Scores of a population on the networks of one chunk.

    ``scores[p, i]`` is program ``p``'s score of network ``network_ids[i]``, NaN where
    the program is invalid for it; ``reasons[p]`` is the first failure seen for program
    ``p`` (``None`` if it is valid everywhere). ``stats`` holds evaluator counters
    (unique nodes, vmap calls, per-member fallbacks, peak live tensors/bytes).
    """

    network_ids: np.ndarray
    scores: np.ndarray
    reasons: list[str | None]
    stats: dict[str, int] = field(default_factory=dict)


def merge_chunk_scores(parts: Sequence[ChunkScores]) -> ChunkScores:
    """Concatenate the scores of the same population on several chunks (network axis)."""
    if not parts:
        raise ValueError("no chunk scores to merge")
    n_prog = {p.scores.shape[0] for p in parts}
    if len(n_prog) != 1:
        raise ValueError(f"chunk scores are for different population sizes: {sorted(n_prog)}")
    reasons: list[str | None] = []
    for i in range(parts[0].scores.shape[0]):
        reasons.append(next((p.reasons[i] for p in parts if p.reasons[i] is not None), None))
    stats: dict[str, int] = {}
    for p in parts:
        for k, v in p.stats.items():
            stats[k] = max(stats.get(k, 0), v) if k.startswith("peak") else stats.get(k, 0) + v
    return ChunkScores(
        network_ids=np.concatenate([p.network_ids for p in parts]),
        scores=np.concatenate([p.scores for p in parts], axis=1),
        reasons=reasons,
        stats=stats,
    )


# ----------------------------------------------------------------------------- trees
def _is_apply(node: Any) -> bool:
    return hasattr(node, "args")


def _tree_and_mode(program: Any, to_scalar: str | None) -> tuple[Any, str]:
    """(tree, to_scalar) of a ``Program`` (a bare tree node is taken with ``"mean"``)."""
    if hasattr(program, "tree"):
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
    if not _is_apply(node):
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
        if not _is_apply(n):
            memo[id(n)] = n.name
            stack.pop()
            continue
        todo = [a for a in n.args if id(a) not in memo]
        if todo:
            stack.extend(reversed(todo))
            continue
        stack.pop()
        keys = [memo[id(a)] for a in n.args]
        if n.op in _COMMUTATIVE and len(keys) == 2 and _table_op(ops[n.op]):
            keys.sort()
        memo[id(n)] = f"{n.op}({','.join(keys)})"
    return memo[id(node)]


def _terminal_names(tree: Any) -> set[str]:
    names: set[str] = set()
    stack = [tree]
    while stack:
        n = stack.pop()
        if _is_apply(n):
            stack.extend(n.args)
        else:
            names.add(n.name)
    return names


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _where(block: int, network: Any) -> str:
    return f"at block {block} of network {network}"


# ----------------------------------------------------------------------------- reference
def _reduce(x: torch.Tensor, mode: str, dim: int | None) -> torch.Tensor:
    if mode == "mean":
        return x.mean() if dim is None else x.mean(dim=dim)
    return torch.linalg.vector_norm(x) if dim is None else torch.linalg.vector_norm(x, dim=dim)


def _to_scalar(y: torch.Tensor, mode: str) -> float:
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
    s = float(_reduce(y, mode, None))
    if not math.isfinite(s) and y.dtype != torch.float64:
        s = float(_reduce(y.to(torch.float64), mode, None))
    return s


class _OpFailure(Exception):
    def __init__(self, op: str, exc: BaseException) -> None:
        super().__init__(f"{op} raised {_first_line(exc)}")


def _eval_tree(node: Any, block: Mapping[str, torch.Tensor], ops: Mapping[str, Op],
               trace: list[tuple[Any, torch.Tensor]] | None = None) -> torch.Tensor:
    """Plain recursive interpretation of ``node`` on one block's terminals."""
    if not _is_apply(node):
        out = block[node.name]
    else:
        args = [_eval_tree(a, block, ops, trace) for a in node.args]
        try:
            out = ops[node.op].fn(*args)
        except Exception as exc:
            raise _OpFailure(node.op, exc) from exc
        if not isinstance(out, torch.Tensor):
            out = torch.as_tensor(out)
    if trace is not None:
        trace.append((node, out))
    return out


def _diagnose(tree: Any, block: Mapping[str, torch.Tensor], ops: Mapping[str, Op],
              mode: str) -> str:
    """Where a block's non-finite scalar comes from: ``"op: NaN"`` (or ``"mean: Inf"``)."""
    trace: list[tuple[Any, torch.Tensor]] = []
    try:
        _eval_tree(tree, block, ops, trace)
    except _OpFailure as exc:  # not expected: the op succeeded before
        return str(exc)
    outs = {id(n): y for n, y in trace}

    def bad(y: torch.Tensor) -> str | None:
        if y.is_floating_point() or y.is_complex():
            if torch.isnan(y).any():
                return "NaN"
            if torch.isinf(y).any():
                return "Inf"
        return None

    node = tree
    kind = bad(outs[id(node)])
    if kind is None:
        s = _to_scalar(outs[id(tree)], mode)
        return f"{mode}: {'NaN' if math.isnan(s) else 'Inf'}"
    return _first_bad(node, kind, outs, bad)


def _first_bad(node: Any, kind: str | None, outs: Mapping[int, torch.Tensor],
               bad: Callable[[torch.Tensor], str | None]) -> str:
    """Descend from a bad node to the deepest bad argument: the op where it went wrong."""
    while _is_apply(node):
        child = next((a for a in node.args if bad(outs[id(a)]) is not None), None)
        if child is None:
            break
        node, kind = child, bad(outs[id(child)])
    label = node.op if _is_apply(node) else f"terminal {node.name}"
    return f"{label}: {kind}"


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
    tree, mode = _tree_and_mode(program, to_scalar)
    node_key(tree, ops=ops)  # validates ops and arities
    needed = _terminal_names(tree)
    out = np.full(len(blocks), np.nan)
    reason: str | None = None
    with torch.inference_mode():
        for i, net in enumerate(blocks):
            if len(net) == 0:
                reason = reason or f"network {i} has no blocks"
                continue
            total = 0.0
            for b, block in enumerate(net):
                missing = needed - set(block)
                if missing:
                    raise UnknownNameError(
                        f"terminal(s) {sorted(missing)} are not in block {b} of network {i}"
                    )
                try:
                    y = _eval_tree(tree, block, ops)
                except _OpFailure as exc:
                    reason = reason or f"{exc} {_where(b, i)}"
                    break
                s = _to_scalar(y, mode)
                if not math.isfinite(s):
                    reason = reason or f"{_diagnose(tree, block, ops, mode)} {_where(b, i)}"
                    break
                total += s
            else:
                out[i] = total / len(net)
    return (out, reason) if return_reason else out


# ----------------------------------------------------------------------------- shapes
#: a tensor's per-block shape and dtype
Spec = tuple[tuple[int, ...], torch.dtype]

#: (op name, fn, arg specs) -> output spec (None if unknown) and shape failure message.
#: Shared by all calls: the same shape combinations recur generation after generation.
_SHAPE_MEMO: dict[tuple, tuple[Spec | None, str | None]] = {}
_SHAPE_MEMO_MAX = 100_000

_UNARY_SAME = frozenset({
    "log", "abslog", "abs", "power", "exp", "normalize", "relu", "sign", "heaviside",
    "invert", "softmax", "sigmoid", "ones_like", "zeros_like", "gt0", "lt0",
})
_UNARY_SCALAR = frozenset({"frobenius", "normalized_sum", "l1_norm", "logdet", "eig_ratio"})
_BINARY_BROADCAST = frozenset({"sum", "difference", "product", "less", "greater", "equal"})


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x != y and x != 1 and y != 1:
            return None
        out.append(y if x == 1 else x)
    return tuple(reversed(out))


def _rows_shape(s: tuple[int, ...]) -> tuple[int, int]:
    return (1, 1) if not s else (s[0], math.prod(s[1:]))


def _matmul_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    a = a or (1,)  # the table's matmul promotes a 0-d operand to a 1-element vector
    b = b or (1,)
    if len(a) == 1 and len(b) == 1:
        return () if a == b else None
    a2 = (1,) + a if len(a) == 1 else a
    b2 = b + (1,) if len(b) == 1 else b
    if a2[-1] != b2[-2]:
        return None
    batch = _broadcast(a2[:-2], b2[:-2])
    if batch is None:
        return None
    out = batch + ((a2[-2],) if len(a) > 1 else ()) + ((b2[-1],) if len(b) > 1 else ())
    return out


def _rule(name: str, specs: tuple[Spec, ...]) -> Spec | str | None:
    """Shape rule of a table op: the output spec, a failure message, or None (unknown).

    Pure Python, so the shape pass costs microseconds; ``tests/test_evaluate.py`` checks
    every rule against the real op on many shapes. Unusual inputs (mixed or non-float
    dtypes, empty dimensions) are left to the generic path.
    """
    dtypes = {dt for _, dt in specs}
    shapes = [sh for sh, _ in specs]
    if len(dtypes) != 1 or any(0 in sh for sh in shapes):
        return None
    (dtype,) = dtypes
    if not dtype.is_floating_point:
        return None
    s = shapes[0]
    if name in _UNARY_SAME:
        return (s, dtype)
    if name in _UNARY_SCALAR:
        return ((), dtype)
    if name == "numel":
        return ((1,), dtype)
    if name in ("det", "logdet_lastdims"):
        if len(s) < 2 or s[-1] != s[-2]:
            return f"needs square matrices in the last two dims, got shape {s}"
        return (s[:-2], dtype)
    if name == "symeig_ratio":
        if len(s) < 2:
            return f"needs at least 2 dims, got shape {s}"
        b = _broadcast(s, s[:-2] + (s[-1], s[-2]))
        if b is None:
            return f"A + A^T is undefined for shape {s}"
        return (b[:-2], dtype)
    t = shapes[1] if len(shapes) > 1 else ()
    if name in _BINARY_BROADCAST:
        b = _broadcast(s, t)
        return f"shapes {s} and {t} do not broadcast" if b is None else (b, dtype)
    if name == "matmul":
        m = _matmul_shape(s, t)
        return f"shapes {s} and {t} cannot be multiplied" if m is None else (m, dtype)
    if name == "hamming":
        na, nb = math.prod(s), math.prod(t)
        ok = na == nb or na == 1 or nb == 1
        return ((), dtype) if ok else f"{na} and {nb} elements do not broadcast"
    if name in ("kl_div", "cosine"):
        ra, rb = _rows_shape(s), _rows_shape(t)
        ok = _broadcast(ra, rb) is not None
        return ((), dtype) if ok else f"rows {ra} and {rb} do not broadcast"
    return None


def _probe(spec: Spec, gen: torch.Generator) -> torch.Tensor:
    shape, dtype = spec
    if dtype.is_floating_point:
        return torch.randn(shape, generator=gen, dtype=dtype)
    return torch.zeros(shape, dtype=dtype)


def _infer(op: Op, specs: tuple[Spec, ...]) -> tuple[Spec | None, str | None]:
    """Output spec of ``op`` on blocks of these shapes, or the message of a failure that
    depends on the shapes alone; ``(None, None)`` when unknown (then the evaluator finds
    out member by member).

    Table ops use ``_rule``; other ops run on meta tensors (no data). A failure (of the
    rule, or of the meta call for a reason other than missing data) is confirmed by
    calling the op on random inputs of these shapes, and the real message is kept; if
    that call succeeds, its output spec is used. An op that raises depending on values
    is never declared a shape failure: its meta call fails naming meta tensors (or is
    not implemented), and the table's only such op (``symeig_ratio`` on NaN) has a rule.
    """
    key = (op.name, op.fn, specs)
    hit = _SHAPE_MEMO.get(key)
    if hit is not None:
        return hit
    result: tuple[Spec | None, str | None] = (None, None)
    rule = _rule(op.name, specs) if _table_op(op) else None
    confirm = isinstance(rule, str)
    if isinstance(rule, tuple):
        result = (rule, None)
    elif rule is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = op.fn(*[torch.empty(sh, dtype=dt, device="meta") for sh, dt in specs])
            if isinstance(out, torch.Tensor) and out.device.type == "meta":
                result = ((tuple(out.shape), out.dtype), None)
        except NotImplementedError:
            pass
        except Exception as exc:  # noqa: BLE001
            confirm = "meta" not in str(exc).lower()
    if confirm:
        gen = torch.Generator().manual_seed(0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = op.fn(*[_probe(sp, gen) for sp in specs])
            if isinstance(out, torch.Tensor):
                result = ((tuple(out.shape), out.dtype), None)
        except Exception as exc:  # noqa: BLE001
            result = (None, _first_line(exc))
    if len(_SHAPE_MEMO) >= _SHAPE_MEMO_MAX:
        _SHAPE_MEMO.clear()
    _SHAPE_MEMO[key] = result
    return result


# ----------------------------------------------------------------------------- batching
#: ops of ``primitives.OPS`` whose function is already correct on stacked blocks (it
#: acts elementwise, or on the last two dims), so the evaluator calls it directly on the
#: (G, ...) tensors instead of through vmap (which costs ~35 us a call, more for eigvalsh)
_ELEMENTWISE_1 = frozenset({
    "log", "abslog", "abs", "power", "exp", "relu", "sign", "heaviside", "invert",
    "sigmoid", "ones_like", "zeros_like", "gt0", "lt0",
})
_ELEMENTWISE_2 = frozenset({"sum", "difference", "product", "less", "greater", "equal"})
_LASTDIMS_1 = frozenset({"det", "logdet_lastdims", "symeig_ratio"})
#: ops of ``primitives.OPS`` whose output depends on the argument's shape and dtype only
_SHAPE_ONLY = frozenset({"numel", "ones_like", "zeros_like"})
#: ops of ``primitives.OPS`` that can raise for some values of well-shaped arguments
#: (eigvalsh on NaN). Any other table op raises for shapes only, which the shape pass
#: settles; so a shape-only op over a subtree free of these needs no values at all.
_RAISE_ON_VALUES = frozenset({"symeig_ratio"})


def _table_op(op: Op) -> bool:
    """Is ``op`` the function of ``primitives.OPS`` of that name (so the sets above hold)?"""
    table_op = OPS.get(op.name)
    return table_op is not None and table_op.fn is op.fn


def _pad(t: torch.Tensor, nd: int) -> torch.Tensor:
    """(G, *s) -> (G, 1, ..., 1, *s) with ``nd`` per-block dims: per-block broadcasting."""
    k = nd - (t.dim() - 1)
    return t if k <= 0 else t[(slice(None),) + (None,) * k]


def _direct(op: Op, datas: list[torch.Tensor], g: int) -> torch.Tensor | None:
    """``op`` on stacked blocks without vmap, where that is known to be exact; else None."""
    name = op.name
    if not _table_op(op):
        return None
    if name in _ELEMENTWISE_1:
        return op.fn(datas[0])
    if name in _ELEMENTWISE_2:
        a, b = datas
        nd = max(a.dim(), b.dim()) - 1
        return op.fn(_pad(a, nd), _pad(b, nd))
    if name in _LASTDIMS_1:
        return op.fn(datas[0]) if datas[0].dim() >= 3 else None
    if name == "matmul":
        a, b = datas
        if a.dim() < 3 or b.dim() < 3:
            return None
        nd = max(a.dim(), b.dim()) - 1
        return torch.matmul(_pad(a, nd), _pad(b, nd))
    if name in ("frobenius", "normalized_sum", "l1_norm", "normalize"):
        x = datas[0]
        flat = x.reshape(g, -1)
        n = flat.shape[1]
        if name == "frobenius":
            return torch.linalg.vector_norm(flat, dim=1)
        if name == "normalized_sum":
            return flat.sum(dim=1) / n
        if name == "l1_norm":
            return torch.abs(flat).sum(dim=1) / n
        view = (g,) + (1,) * (x.dim() - 1)
        centred = x - (flat.sum(dim=1) / n).reshape(view)
        c = centred.reshape(g, -1)
        std = torch.sqrt((c * c).sum(dim=1) / (n - 1)).reshape(view)
        out = centred / std
        return torch.where(torch.isnan(out), torch.zeros_like(out), out)
    return None


# ----------------------------------------------------------------------------- population
@dataclass
class _Node:
    key: str
    op: Op | None  # None for a terminal
    name: str  # terminal name, or op name
    children: tuple[str, ...]
    #: the node's value needs only the shape of its argument (which never raises)
    shape_only: bool = False


@dataclass
class _Plan:
    nodes: dict[str, _Node]
    #: unique node keys, children before parents
    order: list[str]
    #: root key -> [(program index, to_scalar)], in order of first appearance
    roots: dict[str, list[tuple[int, str]]]
    trees: list[Any]
    terminals: set[str]


def _plan(programs: Sequence[Any], to_scalar: str | None, ops: Mapping[str, Op]) -> _Plan:
    nodes: dict[str, _Node] = {}
    order: list[str] = []
    raise_free: dict[str, bool] = {}  # the subtree cannot raise for any values
    roots: dict[str, list[tuple[int, str]]] = {}
    trees = []
    memo: dict[int, str] = {}
    for p, program in enumerate(programs):
        tree, mode = _tree_and_mode(program, to_scalar)
        trees.append(tree)
        root = node_key(tree, ops=ops, _memo=memo)
        # post-order over the nodes not seen before: children get registered first
        stack: list[tuple[Any, bool]] = [(tree, False)]
        while stack:
            n, expanded = stack.pop()
            k = memo[id(n)]
            if k in nodes:
                continue
            if not _is_apply(n):
                nodes[k] = _Node(k, None, n.name, ())
                raise_free[k] = True
                order.append(k)
            elif expanded:
                op = ops[n.op]
                kids = tuple(memo[id(a)] for a in n.args)
                table = _table_op(op)
                nodes[k] = _Node(k, op, n.op, kids, shape_only=(
                    table and n.op in _SHAPE_ONLY and all(raise_free[c] for c in kids)))
                raise_free[k] = (table and n.op not in _RAISE_ON_VALUES
                                 and all(raise_free[c] for c in kids))
                order.append(k)
            else:
                stack.append((n, True))
                stack.extend((a, False) for a in reversed(n.args))
        roots.setdefault(root, []).append((p, mode))
    terminals = {n.name for n in nodes.values() if n.op is None}
    return _Plan(nodes, order, roots, trees, terminals)


class _Value:
    """A node's output on the G members of a group slice.

    ``data`` is a stacked tensor (G, ...), a list of per-member tensors when their
    shapes differ, or ``None`` when every member failed. ``bad`` (G,) marks members for
    which the node raised (``None``: none did); their slots hold a copy of a good
    member's output so that later batched calls see only values some good member has.
    ``err`` is (member, message) of the first failure.
    """

    __slots__ = ("bad", "data", "err", "nbytes")

    def __init__(self, data: torch.Tensor | list[torch.Tensor | None] | None,
                 bad: np.ndarray | None, err: tuple[int, str] | None, owned: bool) -> None:
        self.data = data
        self.bad = bad
        self.err = err
        self.nbytes = 0
        if owned and isinstance(data, torch.Tensor):
            self.nbytes = data.numel() * data.element_size()
        elif owned and isinstance(data, list):
            self.nbytes = sum(t.numel() * t.element_size() for t in data if t is not None)


_ShapeInfo = dict[str, tuple[Spec | None, str | None]]


class _Evaluator:
    def __init__(self, plan: _Plan) -> None:
        self.plan = plan
        self.vmapped: dict[str, Any] = {}
        #: (op, arg specs) where vmap raised but every member succeeded alone
        self.no_vmap: set[tuple] = set()
        self.stats = {
            "unique_nodes": sum(1 for n in plan.nodes.values() if n.op is not None),
            "node_evaluations": 0, "direct_calls": 0, "vmap_calls": 0, "member_loops": 0,
            "shape_failures": 0, "shape_only": 0, "peak_live_values": 0, "peak_live_bytes": 0,
        }
        self.live_values = 0
        self.live_bytes = 0
        self.shape_only_cache: dict[tuple, torch.Tensor] = {}

    # -- shapes of every node on one group ------------------------------------------
    def shapes(self, specs: Mapping[str, Spec]) -> _ShapeInfo:
        """Per node: (per-block output spec or None, shape failure message or None)."""
        info: _ShapeInfo = {}
        nodes = self.plan.nodes
        for k in self.plan.order:
            node = nodes[k]
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
                spec, fail = _infer(node.op, tuple(s for s, _ in kids))
                info[k] = (spec, None if fail is None else f"{node.name} raised {fail}")
        return info

    # -- one op on a slice ----------------------------------------------------------
    def apply(self, op: Op, args: list[_Value], g: int) -> _Value:
        self.stats["node_evaluations"] += 1
        bad: np.ndarray | None = None
        err: tuple[int, str] | None = None
        for a in args:
            if a.bad is not None:
                bad = a.bad.copy() if bad is None else bad | a.bad
            if err is None and a.err is not None:
                err = a.err
        if bad is not None and bad.all():
            return _Value(None, bad, err, owned=False)

        stacked = all(isinstance(a.data, torch.Tensor) for a in args)
        sig = None
        if stacked:
            datas = [a.data for a in args]
            sig = (op.name, op.fn, tuple((tuple(d.shape[1:]), d.dtype) for d in datas))
            out = None
            try:
                out = _direct(op, datas, g)
                if out is not None:
                    self.stats["direct_calls"] += 1
                elif op.vmappable and sig not in self.no_vmap:
                    fn = self.vmapped.get(op.name)
                    if fn is None:
                        fn = self.vmapped[op.name] = torch.func.vmap(op.fn)
                    self.stats["vmap_calls"] += 1
                    out = fn(*datas)
            except Exception:  # noqa: BLE001 - retried member by member below
                out = None
            if isinstance(out, torch.Tensor) and out.dim() > 0 and out.shape[0] == g:
                return _Value(out, bad, err, owned=True)

        # member by member: only the members that really fail are invalid
        self.stats["member_loops"] += 1
        bad = np.zeros(g, dtype=bool) if bad is None else bad
        results: list[torch.Tensor | None] = [None] * g
        n_ok = n_failed = 0
        for m in range(g):
            if bad[m]:
                continue
            try:
                r = op.fn(*[a.data[m] for a in args])
                if not isinstance(r, torch.Tensor):
                    r = torch.as_tensor(r)
            except Exception as exc:  # noqa: BLE001
                msg = _first_line(exc)
                bad[m] = True
                n_failed += 1
                if err is None:
                    err = (m, f"{op.name} raised {msg}")
                if n_ok == 0 and sig is not None and _infer(op, sig[2])[1] is not None:
                    self.stats["shape_failures"] += 1  # fails for every member alike
                    return _Value(None, np.ones(g, dtype=bool), err, owned=False)
                continue
            results[m] = r
            n_ok += 1
        if n_ok == 0:
            return _Value(None, bad, err, owned=False)
        if sig is not None and n_failed == 0 and op.vmappable:
            self.no_vmap.add(sig)  # the batched call itself was the problem
        first = next(r for r in results if r is not None)
        if all(r is None or (r.shape == first.shape and r.dtype == first.dtype) for r in results):
            data: torch.Tensor | list = torch.stack([first if r is None else r for r in results])
        else:
            data = results
        return _Value(data, bad if bad.any() else None, err, owned=True)

    # -- scalars of a root ----------------------------------------------------------
    @staticmethod
    def scalars(v: _Value, mode: str, g: int) -> tuple[np.ndarray, np.ndarray]:
        """(G,) float64 scalars and (G,) bool "invalid" (raised or non-finite)."""
        if v.data is None:
            return np.full(g, np.nan), np.ones(g, dtype=bool)
        if isinstance(v.data, torch.Tensor):
            x = v.data.reshape(g, -1)
            if x.dtype not in (torch.float32, torch.float64):
                x = x.to(torch.float32)
            if x.shape[1] == 0:
                s = np.full(g, np.nan)
            else:  # as _to_scalar: float32, redone in float64 where that overflows
                s = _reduce(x, mode, 1).to(torch.float64).numpy()
                redo = np.flatnonzero(~np.isfinite(s))
                if redo.size and x.dtype != torch.float64:
                    rows = x[torch.from_numpy(redo)].to(torch.float64)
                    s[redo] = _reduce(rows, mode, 1).numpy()
        else:
            s = np.array([np.nan if y is None else _to_scalar(y, mode) for y in v.data])
        bad = ~np.isfinite(s)
        if v.bad is not None:
            bad |= v.bad
        return s, bad

    # -- a whole slice ----------------------------------------------------------------
    def from_shape(self, op: Op, spec: Spec, g: int) -> _Value:
        """A shape-only op's value: computed once on zeros of the argument's shape."""
        self.stats["shape_only"] += 1
        key = (op.name, spec)
        one = self.shape_only_cache.get(key)
        if one is None:
            one = self.shape_only_cache[key] = op.fn(torch.zeros(spec[0], dtype=spec[1]))
        return _Value(one.expand(g, *one.shape), None, None, owned=False)

    def run_slice(self, terms: Mapping[str, torch.Tensor], g: int, roots: list[str],
                  fixed: Mapping[str, Spec]):
        """Yield (root key, value) for each of ``roots``, depth first, freeing as it goes.

        ``fixed`` maps the shape-only nodes to their argument's spec: their subtrees are
        not evaluated.
        """
        nodes = self.plan.nodes
        remaining: dict[str, int] = {}
        stack = list(roots)
        while stack:  # reference counts of the nodes these roots need
            k = stack.pop()
            if k in remaining:
                remaining[k] += 1
                continue
            remaining[k] = 1
            if k not in fixed:
                stack.extend(nodes[k].children)
        values: dict[str, _Value] = {}

        def release(k: str) -> None:
            remaining[k] -= 1
            if remaining[k] == 0:
                v = values.pop(k)
                if v.nbytes:
                    self.live_values -= 1
                    self.live_bytes -= v.nbytes

        for root in roots:
            stack = [root]
            while stack:
                k = stack[-1]
                if k in values:
                    stack.pop()
                    continue
                node = nodes[k]
                if node.op is None:
                    values[k] = _Value(terms[node.name], None, None, owned=False)
                    stack.pop()
                    continue
                if k in fixed:
                    values[k] = self.from_shape(node.op, fixed[k], g)
                    stack.pop()
                    continue
                todo = [c for c in node.children if c not in values]
                if todo:
                    stack.extend(reversed(todo))
                    continue
                stack.pop()
                v = self.apply(node.op, [values[c] for c in node.children], g)
                values[k] = v
                if v.nbytes:
                    self.live_values += 1
                    self.live_bytes += v.nbytes
                    st = self.stats
                    st["peak_live_values"] = max(st["peak_live_values"], self.live_values)
                    st["peak_live_bytes"] = max(st["peak_live_bytes"], self.live_bytes)
                for c in node.children:
                    release(c)
            yield root, values[root]
            release(root)
        assert not values, "reference counts out of balance"


def _reason(value: _Value, bad: np.ndarray, tree: Any, mode: str,
            terms: Mapping[str, torch.Tensor], group: BlockGroup, lo: int, chunk: Chunk,
            ops: Mapping[str, Op]) -> str:
    """One-line reason for the first invalid member of a slice."""
    if value.err is not None:
        m, msg = value.err
    else:  # a non-finite scalar: find where the first non-finite value came from
        m = int(np.flatnonzero(bad)[0])
        block = {t: terms[t][m] for t in _terminal_names(tree)}
        msg = _diagnose(tree, block, ops, mode)
    network = chunk.network_ids[int(group.network[lo + m])]
    return f"{msg} {_where(int(group.block[lo + m]), network)}"


def _reachable(plan: _Plan, roots: list[str], fixed: Mapping[str, Spec]) -> set[str]:
    """Nodes the roots need (not below a shape-only node)."""
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        k = stack.pop()
        if k not in seen:
            seen.add(k)
            if k not in fixed:
                stack.extend(plan.nodes[k].children)
    return seen


def _slices(size: int, max_group: int) -> list[tuple[int, int]]:
    """Split ``range(size)`` into near-equal contiguous slices of at most ``max_group``."""
    parts = max(1, math.ceil(size / max_group))
    bounds = np.linspace(0, size, parts + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def evaluate_population(
    programs: Sequence[Any],
    chunk: Chunk,
    *,
    to_scalar: str | None = None,
    max_group: int = 64,
    max_bytes: int = 1 << 28,
    ops: Mapping[str, Op] | None = None,
) -> ChunkScores:
    """Score every program on every network of ``chunk``.

    Parameters
    ----------
    programs
        ``Program`` objects (``.tree``, ``.to_scalar``); bare tree nodes are scored with
        ``"mean"``.
    chunk
        The networks' blocks, grouped by shape.
    to_scalar
        ``"mean"`` or ``"l2"`` for every program; default: each program's own.
    max_group
        Most blocks stacked into one call; bounds memory per call.
    max_bytes
        Slices are also made small enough that the largest intermediate tensor of a
        slice (known from the shapes before anything runs) stays under this many bytes
        (one block per slice at least).
    ops
        The op table (default ``primitives.OPS``).

    Returns
    -------
    ChunkScores
        ``scores`` (P, n) float64 with NaN where a program is invalid for a network.

    Work for a network a program is already invalid on is skipped: a shape failure
    found before anything runs, or a failure in an earlier group (groups are visited
    smallest first). Never raises because of numbers (an op raising, NaN, Inf); raises
    ``ProgramError`` / ``UnknownNameError`` for malformed programs and
    ``CorruptChunkError`` if the groups do not hold ``chunk.n_blocks`` blocks per network.
    """
    if max_group < 1:
        raise ConfigError(f"max_group must be at least 1, got {max_group}")
    ops = OPS if ops is None else ops
    plan = _plan(programs, to_scalar, ops)
    n = chunk.n_networks
    n_prog = len(plan.trees)
    sums = np.zeros((n_prog, n))
    invalid = np.zeros((n_prog, n), dtype=bool)
    counts = np.zeros(n, dtype=np.int64)
    reasons: list[str | None] = [None] * n_prog
    ev = _Evaluator(plan)
    root_rows = {r: np.array([p for p, _ in c], dtype=np.int64) for r, c in plan.roots.items()}

    with torch.inference_mode():
        # pass 1: shapes only; a shape failure invalidates every network of the group
        infos: list[_ShapeInfo] = []
        for group in chunk.groups:
            missing = plan.terminals - set(group.terminals)
            if missing:
                raise UnknownNameError(
                    f"terminal(s) {sorted(missing)} are not in the chunk; it has "
                    f"{sorted(group.terminals)}"
                )
            net_all = group.network.numpy()
            counts += np.bincount(net_all, minlength=n)
            specs = {t: (tuple(group.terminals[t].shape[1:]), group.terminals[t].dtype)
                     for t in plan.terminals}
            info = ev.shapes(specs)
            infos.append(info)
            for root, consumers in plan.roots.items():
                fail = info[root][1]
                if fail is None:
                    continue
                rows = root_rows[root]
                invalid[np.ix_(rows, np.unique(net_all))] = True
                for p in rows:
                    if reasons[p] is None and group.size:
                        reasons[p] = (f"{fail} {_where(int(group.block[0]), chunk.network_ids[net_all[0]])}")

        if (counts != chunk.n_blocks).any():
            wrong = np.flatnonzero(counts != chunk.n_blocks)
            raise CorruptChunkError(
                f"chunk groups hold {counts[wrong].tolist()} blocks for networks "
                f"{chunk.network_ids[wrong].tolist()} but n_blocks says "
                f"{chunk.n_blocks[wrong].tolist()}"
            )

        # pass 2: the numbers, smallest groups first so failures there skip work later
        for gi in sorted(range(len(chunk.groups)), key=lambda i: chunk.groups[i].size):
            group, info = chunk.groups[gi], infos[gi]
            net_all = group.network.numpy()
            candidates = [r for r in plan.roots if info[r][1] is None]
            if not candidates or group.size == 0:
                continue
            fixed = {k: info[n.children[0]][0] for k, n in plan.nodes.items()
                     if n.shape_only and info[n.children[0]][0] is not None}
            per_member = max((math.prod(info[k][0][0]) * info[k][0][1].itemsize
                              for k in _reachable(plan, candidates, fixed)
                              if info[k][0] is not None), default=1)
            step = max(1, min(max_group, max_bytes // max(per_member, 1)))
            full = {t: group.terminals[t] for t in plan.terminals}
            for lo, hi in _slices(group.size, step):
                g = hi - lo
                net = net_all[lo:hi]
                alive = ~invalid[:, np.unique(net)].all(axis=1)
                live = [r for r in candidates if alive[root_rows[r]].any()]
                if not live:
                    continue
                terms = {t: x[lo:hi] for t, x in full.items()}
                for root, value in ev.run_slice(terms, g, live, fixed):
                    per_mode: dict[str, tuple[np.ndarray, np.ndarray]] = {}
                    for p, mode in plan.roots[root]:
                        if mode not in per_mode:
                            per_mode[mode] = ev.scalars(value, mode, g)
                        s, bad = per_mode[mode]
                        sums[p] += np.bincount(net, weights=np.where(bad, 0.0, s), minlength=n)
                        if bad.any():
                            invalid[p, net[bad]] = True
                            if reasons[p] is None:
                                reasons[p] = _reason(value, bad, plan.trees[p], mode, terms,
                                                     group, lo, chunk, ops)

    with np.errstate(invalid="ignore", divide="ignore"):
        scores = sums / counts
    scores[invalid | (counts == 0)[None, :]] = np.nan
    for i in np.flatnonzero(counts == 0):
        for p in range(n_prog):
            reasons[p] = reasons[p] or f"network {chunk.network_ids[i]} has no blocks"
    return ChunkScores(network_ids=np.asarray(chunk.network_ids), scores=scores,
                       reasons=reasons, stats=dict(ev.stats))


# ----------------------------------------------------------------------------- columns
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

    return f"{_first_bad(tree, bad(outs[id(tree)]), outs, bad)} at network {network}"


def evaluate_columns(
    program_or_tree: Any,
    columns: Mapping[str, np.ndarray | torch.Tensor],
    *,
    ops: Mapping[str, Op],
    reference: Mapping[str, np.ndarray | torch.Tensor] | None = None,
) -> tuple[np.ndarray, str | None]:
    """Scores of a proxy program over whole columns (one value per network) and why any is NaN.

    The tree is interpreted by the same ``_eval_tree`` as statistics programs, but its
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
    needed = _terminal_names(tree)
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
            y = _eval_tree(tree, cols, ops, trace)
    except _OpFailure as exc:
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


__all__.append("evaluate_columns")
