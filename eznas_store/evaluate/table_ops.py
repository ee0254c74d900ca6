"""What the evaluator knows about the ops of the table (``programs.ops.OPS``).

The fast paths (direct calls on stacked blocks, shape rules, skipped subtrees, shared
commutative subtrees) are exact only for the table's own functions. Every fact about
them is listed here, so that a change to the table is checked against one file.
"""

from __future__ import annotations

from eznas_store.programs import OPS, Op

__all__ = [
    "BINARY_BROADCAST",
    "COMMUTATIVE",
    "ELEMENTWISE_1",
    "ELEMENTWISE_2",
    "LASTDIMS_1",
    "RAISE_ON_VALUES",
    "SHAPE_ONLY",
    "UNARY_SAME",
    "UNARY_SCALAR",
    "is_table_op",
]

#: table ops whose result does not depend on the order of their two arguments, bit for
#: bit and in dtype (``equal``/``hamming`` take the first argument's dtype: not these)
COMMUTATIVE: frozenset[str] = frozenset({"sum", "product"})

#: shape rules: per-block output has the argument's shape / is a scalar / broadcasts
UNARY_SAME = frozenset({
    "log", "abslog", "abs", "power", "exp", "normalize", "relu", "sign", "heaviside",
    "invert", "softmax", "sigmoid", "ones_like", "zeros_like", "gt0", "lt0",
})
UNARY_SCALAR = frozenset({"frobenius", "normalized_sum", "l1_norm", "logdet", "eig_ratio", "eff_rank"})
BINARY_BROADCAST = frozenset({"sum", "difference", "product", "less", "greater", "equal"})

#: ops whose function is already correct on stacked blocks (it acts elementwise, or on
#: the last two dims), so the evaluator calls it directly on the (G, ...) tensors
#: instead of through vmap (which costs ~35 us a call, more for eigvalsh)
ELEMENTWISE_1 = frozenset({
    "log", "abslog", "abs", "power", "exp", "relu", "sign", "heaviside", "invert",
    "sigmoid", "ones_like", "zeros_like", "gt0", "lt0",
})
ELEMENTWISE_2 = frozenset({"sum", "difference", "product", "less", "greater", "equal"})
LASTDIMS_1 = frozenset({"det", "logdet_lastdims", "symeig_ratio"})

#: ops whose output depends on the argument's shape and dtype only
SHAPE_ONLY = frozenset({"numel", "ones_like", "zeros_like"})
#: ops that can raise for some values of well-shaped arguments (eigvalsh on NaN). Any
#: other table op raises for shapes only, which the shape pass settles; so a shape-only
#: op over a subtree free of these needs no values at all.
RAISE_ON_VALUES = frozenset({"symeig_ratio", "eig_min", "eig_max", "eig_entropy", "eff_rank"})


def is_table_op(op: Op) -> bool:
    """Is ``op`` the function of ``programs.ops.OPS`` of that name (so the sets above hold)?"""
    table_op = OPS.get(op.name)
    return table_op is not None and table_op.fn is op.fn
