"""Label-free graph features of a cell, from its string alone (GRAF-style; no network built).

GRAF (Kadlecová et al., ICML 2024, "Surprisingly Strong Performance Prediction with Neural
Graph Features") showed that simple counts on the cell graph -- operations, paths, degrees
-- predict accuracy about as well as the zero-cost proxies do, and add to them in a forest.
This is a small set of those features, chosen because each names a property proxies
measure only indirectly (capacity: conv counts; trainability: skip paths, depth; a dead
cell: reachability), every one is an integer computed in microseconds, and each is defined
the same way for NB201 and DARTS cells:

==========================  ===============================================================
``graph_op_<op>``           edges carrying ``<op>``, every op of the space (``none`` too);
                            they sum to the number of edges
``graph_paths``             input→output paths (edges with ``none`` removed)
``graph_conv_paths``        of those, paths made only of conv ops
``graph_path_conv_min``     fewest conv ops on an input→output path (0 if none reaches)
``graph_path_conv_max``     most conv ops on an input→output path (0 if none reaches)
``graph_depth``             edges on the longest input→output path (0 if none reaches)
``graph_reachable``         1 if some input→output path exists, else 0
``graph_input_degree``      non-``none`` edges leaving the input node(s)
``graph_output_degree``     non-``none`` edges entering the output node (DARTS: the
                            concatenated states that an input reaches)
==========================  ===============================================================

Graphs. NB201: nodes 0..3, node 0 the input and 3 the output, one op per edge ``j → i``
(``j < i``); conv ops ``nor_conv_1x1``, ``nor_conv_3x3``. DARTS: per cell the inputs 0 and 1
(the cells two back and one back), intermediate nodes 2.., each with its pairs' edges (a
node may read one input twice: two edges, two paths), and the output, the concatenation of
the ``concat`` states (those links carry no op and add no length); conv ops ``sep_conv_*``,
``dil_conv_*``. A DARTS genotype gives the normal cell's features, and, when the reduce cell
differs, the reduce cell's with the prefix ``graph_reduce_`` (:func:`graph_columns` keeps
the columns of a table uniform). Paths are counted with multiplicity on the DAG by dynamic
programming, so the cost is linear in the edges.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eznas_store.errors import ConfigError, InvalidArchError
from eznas_store.sources.spaces import darts_genotype, nb201

__all__ = ["GRAPH_SPACES", "graph_columns", "graph_features", "graph_feature_names"]

#: the spaces whose cells have graph features
GRAPH_SPACES: tuple[str, ...] = ("nb201", "darts")
_NB201_CONV = frozenset(nb201.CONV_OPS)
_DARTS_CONV = frozenset(op for op in darts_genotype.PRIMITIVES if "conv" in op)
_REDUCE = "graph_reduce_"

#: one edge: (from node, to node, op)
Edge = tuple[int, int, str]


def _walk(edges: Sequence[Edge], n_nodes: int, inputs: Sequence[int], outputs: Sequence[int],
          conv: frozenset[str]) -> dict[str, int]:
    """Path features of a DAG whose nodes are numbered in topological order; ``outputs`` feed
    one output node over links without an op (NB201: the output node itself)."""
    live = [(j, i, op) for j, i, op in edges if op != "none"]
    count = [0] * n_nodes
    conv_only = [0] * n_nodes
    lo: list[float] = [np.inf] * n_nodes
    hi: list[float] = [-np.inf] * n_nodes
    depth: list[float] = [-np.inf] * n_nodes
    for s in inputs:
        count[s], conv_only[s], lo[s], hi[s], depth[s] = 1, 1, 0, 0, 0
    for j, i, op in sorted(live, key=lambda e: e[1]):  # by target: every edge j → i has j < i
        if not count[j]:
            continue
        c = int(op in conv)
        count[i] += count[j]
        conv_only[i] += conv_only[j] if c else 0
        lo[i], hi[i] = min(lo[i], lo[j] + c), max(hi[i], hi[j] + c)
        depth[i] = max(depth[i], depth[j] + 1)
    reach = [o for o in outputs if count[o]]
    paths = sum(count[o] for o in outputs)
    return {
        "graph_paths": paths,
        "graph_conv_paths": sum(conv_only[o] for o in outputs),
        "graph_path_conv_min": int(min(lo[o] for o in reach)) if reach else 0,
        "graph_path_conv_max": int(max(hi[o] for o in reach)) if reach else 0,
        "graph_depth": int(max(depth[o] for o in reach)) if reach else 0,
        "graph_reachable": int(paths > 0),
        "graph_input_degree": sum(1 for j, _, _ in live if j in inputs),
        # not a feature: the concatenated states an input reaches (DARTS's output degree)
        "reached_outputs": len(reach),
    }


def _nb201(arch: str) -> dict[str, float]:
    text = arch.strip()
    cell = nb201.parse_cell(nb201.nb201_key_to_cell(text) if text.startswith("(") else text)
    edges = [(j, i, op) for (i, j), op in zip(nb201.EDGES, cell.ops)]
    out: dict[str, float] = {f"graph_op_{op}": float(sum(o == op for o in cell.ops)) for op in nb201.OPS}
    walk = _walk(edges, 4, (0,), (3,), _NB201_CONV)
    walk.pop("reached_outputs")
    walk["graph_output_degree"] = sum(1 for j, i, op in edges if i == 3 and op != "none")
    return out | {k: float(v) for k, v in walk.items()}


def _darts_cell(pairs: Sequence[tuple[str, int]], concat: Sequence[int]) -> dict[str, float]:
    edges = [(j, e // 2 + 2, op) for e, (op, j) in enumerate(pairs)]
    n_nodes = len(pairs) // 2 + 2
    out: dict[str, float] = {f"graph_op_{op}": float(sum(o == op for o, _ in pairs))
                             for op in darts_genotype.PRIMITIVES}
    walk = _walk(edges, n_nodes, (0, 1), tuple(concat), _DARTS_CONV)
    walk["graph_output_degree"] = walk.pop("reached_outputs")
    return out | {k: float(v) for k, v in walk.items()}


def _darts(arch: str) -> dict[str, float]:
    text = arch.strip()
    g = darts_genotype.parse_genotype(darts_genotype.from_naslib_key(text) if text.startswith("[") else text)
    out = _darts_cell(g.normal, g.normal_concat)
    if (g.reduce, g.reduce_concat) != (g.normal, g.normal_concat):
        out |= {_REDUCE + k.removeprefix("graph_"): v for k, v in _darts_cell(g.reduce, g.reduce_concat).items()}
    return out


def graph_features(space: str, arch: str) -> dict[str, float]:
    """The graph features (module docstring) of one architecture string of ``space``:
    an NB201 cell string (or NASLib's op-index key) or a DARTS genotype (or NB301 key).
    Deterministic; raises InvalidArchError for a malformed string, ConfigError for a space
    without graph features."""
    if not isinstance(arch, str):
        raise InvalidArchError(f"an architecture must be text, got {type(arch).__name__}")
    if space == "nb201":
        return _nb201(arch)
    if space == "darts":
        return _darts(arch)
    raise ConfigError(f"graph features are defined for the spaces {', '.join(GRAPH_SPACES)}, not {space!r}")


def graph_feature_names(space: str, *, reduce: bool = False) -> tuple[str, ...]:
    """The feature names of ``space`` in a fixed order (DARTS with ``reduce``: the reduce
    cell's too), as :func:`graph_columns` gives them."""
    probe = {"nb201": "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
             "darts": darts_genotype.random_cell(np.random.default_rng(0))}
    if space not in probe:
        graph_features(space, "")  # the error naming the known spaces
    names = list(graph_features(space, probe[space]))
    if space == "darts" and reduce:
        names += [_REDUCE + k.removeprefix("graph_") for k in names]
    return tuple(names)


def graph_columns(space: str, archs: Sequence[str]) -> dict[str, np.ndarray]:
    """The graph features of many architectures as float64 columns, one entry per arch.

    DARTS: when any genotype's reduce cell differs from its normal cell, every row gets the
    ``graph_reduce_`` columns (a genotype with equal cells repeats its normal values), so
    the columns are the same for every row."""
    rows = [graph_features(space, a) for a in archs]
    reduce = space == "darts" and any(k.startswith(_REDUCE) for r in rows for k in r)
    names = graph_feature_names(space, reduce=reduce)
    cols = {k: np.empty(len(rows)) for k in names}
    for n, r in enumerate(rows):
        for k in names:
            cols[k][n] = r[k] if k in r else r["graph_" + k.removeprefix(_REDUCE)]
    return cols
