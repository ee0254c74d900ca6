"""Score a population of programs on a chunk of networks (docs/design.md §3, §5).

A program is evaluated per block: the tree's output for the block (any shape) is reduced
to a scalar (``"mean"`` of all elements, or their ``"l2"`` norm), and a network's score
is the program's ``aggregate`` of those scalars over all its blocks: their mean (the
default), their sum, or the depth-weighted mean (``"depth"``: block ``b`` of ``n``
weighted ``(b+1)/n``, normalised, i.e. ``2(b+1)/(n(n+1))``). If an operation raises for a block, or
the block's scalar is NaN/Inf, the program is invalid for that network: its score is NaN
and the first such failure is reported as a one-line reason. Non-finite values *inside*
a tree are allowed (EZNAS-A relies on ``sigmoid(-inf) = 0``); only the block's scalar
decides (see ``interpret.block_scalar`` for the precision of the reduction).

``evaluate_population`` computes exactly what ``reference.evaluate_reference`` defines,
for the whole population on a ``Chunk`` at once:

1. *Shapes first* (``plan``, ``shapes``). Every distinct subtree's per-block output
   shape is found for every ``BlockGroup`` without touching data. A failure that depends
   on shapes alone makes the program invalid for every network with a block in that
   group, and nothing of it runs there. Shapes also size the slices (``max_bytes``).
2. *One call per group slice* (``runner``). An op runs once on the stacked blocks of a
   group slice (at most ``max_group`` blocks), directly or through vmap, retried member
   by member if that raises.
3. *Shared subtrees once* (``keys``, ``runner``), depth first, with reference counts.
4. *No work that cannot change a score.* Groups run smallest first; a slice is skipped
   for a program already invalid on all its networks. ``numel``, ``ones_like`` and
   ``zeros_like`` over a subtree that cannot raise need only its shape.
5. *Nothing twice across calls* (``subtree_cache``, ``runner.SubtreeCache``): small,
   clean per-block subtree outputs on a keyed chunk are kept for later populations, and
   terminals are derived only when a slice reads them (``LazyTerminals.spec`` gives their
   shapes without data).

Programs are data: the trees are interpreted with an explicit stack over the op table,
never ``eval``-ed.

Example
-------
>>> from eznas_store.programs.tree import Apply, Program, Terminal
>>> from eznas_store.evaluate.reference import evaluate_reference
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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from eznas_store.errors import ConfigError, CorruptChunkError, UnknownNameError
from eznas_store.evaluate.chunk import BlockGroup, Chunk
from eznas_store.evaluate.interpret import diagnose, where
from eznas_store.evaluate.keys import terminal_names
from eznas_store.evaluate.subtree_plan import PopulationPlan, ShapeInfo, build_plan, slice_step, slices
from eznas_store.evaluate.runner import SliceRunner, SliceValue, SubtreeCache
from eznas_store.evaluate.shapes import ShapeCache
from eznas_store.programs import OPS, Op

__all__ = ["ChunkScores", "evaluate_population", "merge_chunk_scores"]


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


def _slice_reason(value: SliceValue, bad: np.ndarray, tree: Any, mode: str,
                  terms: Mapping[str, torch.Tensor], group: BlockGroup, lo: int, chunk: Chunk,
                  ops: Mapping[str, Op]) -> str:
    """One-line reason for the first invalid member of a slice."""
    if value.err is not None:
        m, msg = value.err
    else:  # a non-finite scalar: find where the first non-finite value came from
        m = int(np.flatnonzero(bad)[0])
        block = {t: terms[t][m] for t in terminal_names(tree)}
        msg = diagnose(tree, block, ops, mode)
    network = chunk.network_ids[int(group.network[lo + m])]
    return f"{msg} {where(int(group.block[lo + m]), network)}"


def _spec(terminals: Mapping[str, torch.Tensor], name: str, memo: ShapeCache) -> tuple:
    """(per-member shape, dtype) of a group's terminal, without deriving it where the
    mapping can say (``LazyTerminals.spec``, remembered in the shape cache)."""
    spec = getattr(terminals, "spec", None)
    if spec is not None:
        return spec(name, memo)
    t = terminals[name]
    return tuple(t.shape[1:]), t.dtype


class _SliceTerminals(Mapping[str, torch.Tensor]):
    """Members ``lo:hi`` of a group's terminals, taken (and derived) only when read: a
    slice whose subtrees the cache holds may not need them at all."""

    def __init__(self, full: Mapping[str, torch.Tensor], names: set[str], lo: int, hi: int) -> None:
        self._full, self._names, self._lo, self._hi = full, names, lo, hi
        self._taken: dict[str, torch.Tensor] = {}

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._names:
            raise KeyError(name)
        t = self._taken.get(name)
        if t is None:
            t = self._taken[name] = self._full[name][self._lo:self._hi]
        return t

    def __iter__(self):
        return iter(sorted(self._names))

    def __len__(self) -> int:
        return len(self._names)


class _PopulationRun:
    """One ``evaluate_population`` call: the plan, the runner and the running tallies."""

    def __init__(self, plan: PopulationPlan, chunk: Chunk, ops: Mapping[str, Op],
                 shape_cache: ShapeCache, aggregates: list[str] | None = None,
                 subtree_cache: SubtreeCache | None = None) -> None:
        self.plan, self.chunk, self.ops = plan, chunk, ops
        self.runner = SliceRunner(plan, shape_cache, subtree_cache if chunk.key is not None else None)
        n, n_prog = chunk.n_networks, len(plan.trees)
        self.sums = np.zeros((n_prog, n))
        self.invalid = np.zeros((n_prog, n), dtype=bool)
        self.counts = np.zeros(n, dtype=np.int64)
        self.reasons: list[str | None] = [None] * n_prog
        #: per program: "mean", "sum" or "depth" (bare trees: "mean")
        self.aggregates = aggregates or ["mean"] * n_prog
        self.root_rows = {r: np.array([p for p, _ in c], dtype=np.int64)
                          for r, c in plan.roots.items()}

    # -- pass 1: shapes only; a shape failure invalidates every network of the group --
    def shape_pass(self, group: BlockGroup) -> ShapeInfo:
        """Count the group's blocks and settle the programs that fail on its shapes."""
        plan, chunk = self.plan, self.chunk
        missing = plan.terminals - set(group.terminals)
        if missing:
            raise UnknownNameError(
                f"terminal(s) {sorted(missing)} are not in the chunk; it has "
                f"{sorted(group.terminals)}"
            )
        net_all = group.network.numpy()
        self.counts += np.bincount(net_all, minlength=chunk.n_networks)
        specs = {t: _spec(group.terminals, t, self.runner.shape_cache) for t in plan.terminals}
        info = plan.shapes(specs, self.runner.shape_cache)
        for root in plan.roots:
            fail = info[root][1]
            if fail is None:
                continue
            rows = self.root_rows[root]
            self.invalid[np.ix_(rows, np.unique(net_all))] = True
            for p in rows:
                if self.reasons[p] is None and group.size:
                    self.reasons[p] = (f"{fail} {where(int(group.block[0]), chunk.network_ids[net_all[0]])}")
        return info

    def check_counts(self) -> None:
        """The groups must hold ``chunk.n_blocks`` blocks of every network."""
        chunk, counts = self.chunk, self.counts
        if (counts != chunk.n_blocks).any():
            wrong = np.flatnonzero(counts != chunk.n_blocks)
            raise CorruptChunkError(
                f"chunk groups hold {counts[wrong].tolist()} blocks for networks "
                f"{chunk.network_ids[wrong].tolist()} but n_blocks says "
                f"{chunk.n_blocks[wrong].tolist()}"
            )

    # -- pass 2: the numbers ---------------------------------------------------------
    def run_group(self, group: BlockGroup, info: ShapeInfo, max_group: int, max_bytes: int,
                  index: int = 0) -> None:
        """Every live root on the group (the chunk's ``index``-th), slice by slice; skip what
        cannot change a score."""
        plan = self.plan
        net_all = group.network.numpy()
        candidates = [r for r in plan.roots if info[r][1] is None]
        if not candidates or group.size == 0:
            return
        fixed = plan.shape_only_specs(info)
        step = slice_step(plan, info, candidates, fixed, max_group, max_bytes)
        for lo, hi in slices(group.size, step):
            net = net_all[lo:hi]
            alive = ~self.invalid[:, np.unique(net)].all(axis=1)
            live = [r for r in candidates if alive[self.root_rows[r]].any()]
            if not live:
                continue
            terms = _SliceTerminals(group.terminals, plan.terminals, lo, hi)
            self.runner.at = ((self.chunk.key, index), lo, hi, group.size)
            for root, value in self.runner.run_slice(terms, hi - lo, live, fixed):
                self.tally_root(root, value, net, terms, group, lo)

    def tally_root(self, root: str, value: SliceValue, net: np.ndarray,
                   terms: Mapping[str, torch.Tensor], group: BlockGroup, lo: int) -> None:
        """Add a root's slice scalars to the programs it scores (one reduction per mode)."""
        g, n = len(net), self.chunk.n_networks
        per_mode: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for p, mode in self.plan.roots[root]:
            if mode not in per_mode:
                per_mode[mode] = self.runner.scalars(value, mode, g)
            s, bad = per_mode[mode]
            w = np.where(bad, 0.0, s)
            if self.aggregates[p] == "depth":  # block b weighted b + 1 (normalised in result)
                w = w * (group.block[lo:lo + g].numpy().astype(np.float64) + 1.0)
            self.sums[p] += np.bincount(net, weights=w, minlength=n)
            if bad.any():
                self.invalid[p, net[bad]] = True
                if self.reasons[p] is None:
                    self.reasons[p] = _slice_reason(value, bad, self.plan.trees[p], mode, terms,
                                                    group, lo, self.chunk, self.ops)

    def result(self) -> ChunkScores:
        """Aggregate block scalar per network (mean, sum or depth-weighted mean); NaN where
        invalid or without blocks."""
        chunk, counts, reasons = self.chunk, self.counts, self.reasons
        with np.errstate(invalid="ignore", divide="ignore"):
            scores = self.sums / counts
            for p, agg in enumerate(self.aggregates):
                if agg == "sum":
                    scores[p] = self.sums[p]
                elif agg == "depth":
                    scores[p] = self.sums[p] / (counts * (counts + 1) / 2.0)
        scores[self.invalid | (counts == 0)[None, :]] = np.nan
        for i in np.flatnonzero(counts == 0):
            for p in range(len(reasons)):
                reasons[p] = reasons[p] or f"network {chunk.network_ids[i]} has no blocks"
        return ChunkScores(network_ids=np.asarray(chunk.network_ids), scores=scores,
                           reasons=reasons, stats=dict(self.runner.stats))


def evaluate_population(
    programs: Sequence[Any],
    chunk: Chunk,
    *,
    to_scalar: str | None = None,
    max_group: int = 64,
    max_bytes: int = 1 << 28,
    ops: Mapping[str, Op] | None = None,
    shape_cache: ShapeCache | None = None,
    subtree_cache: SubtreeCache | None = None) -> ChunkScores:
    """Score every program on every network of ``chunk``.

    Parameters
    ----------
    programs
        ``Program`` objects (``.tree``, ``.to_scalar``, ``.aggregate``); bare tree nodes
        are scored with ``"mean"`` (both).
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
        The op table (default ``programs.ops.OPS``).
    shape_cache
        Inferred op shapes to reuse; pass the same one to every generation of a search
        (the same shape combinations recur). Default: a fresh one for this call.
    subtree_cache
        Small subtree outputs reused across calls on keyed chunks (default op table only);
        a hit is the value the subtree computes, so scores do not change. Default: none.

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
    plan, aggregates = build_plan(programs, to_scalar, ops), [getattr(p, "aggregate", "mean") for p in programs]
    shapes = ShapeCache() if shape_cache is None else shape_cache
    run = _PopulationRun(plan, chunk, ops, shapes, aggregates, subtree_cache if ops is OPS else None)
    with torch.inference_mode():
        infos = [run.shape_pass(group) for group in chunk.groups]
        run.check_counts()
        # smallest groups first, so failures there skip work later
        for gi in sorted(range(len(chunk.groups)), key=lambda i: chunk.groups[i].size):
            run.run_group(chunk.groups[gi], infos[gi], max_group, max_bytes, gi)
    return run.result()
