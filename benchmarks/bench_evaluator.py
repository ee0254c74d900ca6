"""Time the population evaluator against the reference evaluator, side by side.

Builds a synthetic chunk (NB201-like block shapes, random values) and a population of
random DEAP-like trees (half "full", half "grow", depth 2..10, like DEAP's
``genHalfAndHalf``), scores the population with ``evaluate_population`` and with
``evaluate_reference`` (one program, one block at a time), checks that they agree, and
prints both wall times and the speed-up. ``--kind offspring`` scores instead a
population after a few rounds of DEAP ``varOr`` variation, which shares subtrees as the
populations of generations 1..15 of a run do.

Both evaluators run single-threaded by default (``--threads``): the comparison is of
evaluation strategies, and on a shared machine OpenMP threads distort timings badly.

Usage::

    python benchmarks/bench_evaluator.py --networks 8 --population 50 --seed 0
    python benchmarks/bench_evaluator.py --kind offspring --generations 5
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eznas_store.evaluate.population import evaluate_population  # noqa: E402
from eznas_store.evaluate.reference import evaluate_reference  # noqa: E402
from eznas_store.programs.ops import OPS  # noqa: E402
from eznas_store.programs.tree import Apply, Program, Terminal  # noqa: E402
from eznas_store.evaluate.synthetic import synthetic_chunk  # noqa: E402
from eznas_store.terminals import TERMINALS  # noqa: E402


def random_tree(rng: random.Random, height: int, *, full: bool, depth: int = 0):
    """A DEAP-style random tree: ``full`` puts every leaf at ``height``; grow stops early."""
    n_ops, n_terms = len(OPS), len(TERMINALS)
    leaf = depth == height or (
        not full and depth >= 1 and rng.random() < n_terms / (n_terms + n_ops)
    )
    if leaf:
        return Terminal(rng.choice(TERMINALS))
    op = rng.choice(list(OPS.values()))
    return Apply(op.name, tuple(random_tree(rng, height, full=full, depth=depth + 1)
                                for _ in range(op.arity)))


def random_population(n: int, *, seed: int, min_depth: int = 2, max_depth: int = 10,
                      max_nodes: int = 200) -> list[Program]:
    """``n`` programs, half full and half grow, depth in [min_depth, max_depth]."""
    rng = random.Random(seed)
    out: list[Program] = []
    while len(out) < n:
        tree = random_tree(rng, rng.randint(min_depth, max_depth), full=len(out) % 2 == 0)
        if _size(tree) <= max_nodes:  # DEAP runs cap tree size too (bloat control)
            out.append(Program(tree, to_scalar="mean"))
    return out


def _nodes(tree, path=()):
    """(path, node) of every node, pre-order; a path is the argument indices from the root."""
    yield path, tree
    for i, a in enumerate(getattr(tree, "args", ())):
        yield from _nodes(a, path + (i,))


def _replace(tree, path, new):
    if not path:
        return new
    args = list(tree.args)
    args[path[0]] = _replace(args[path[0]], path[1:], new)
    return Apply(tree.op, tuple(args))


def _depth(tree) -> int:
    return max((len(p) for p, _ in _nodes(tree)), default=0)


def offspring_population(n: int, *, seed: int, generations: int = 5, mu: int | None = None,
                         cxpb: float = 0.4, mutpb: float = 0.4, max_depth: int = 10,
                         max_nodes: int = 200) -> list[Program]:
    """A population after ``generations`` rounds of DEAP's ``varOr`` (EZNAS settings).

    Starts from ``random_population``; each round keeps ``mu`` parents (random here,
    where a run would select by fitness) and makes ``n`` offspring: one-point subtree
    crossover (probability ``cxpb``), uniform subtree mutation with a new full tree of
    depth 0..2 (``mutpb``), otherwise a copy. Children deeper than ``max_depth`` or
    larger than ``max_nodes`` are replaced by their parent (DEAP's static limit).
    Offspring share subtrees with their parents and each other, as in a real run.
    """
    rng = random.Random(seed + 1)
    mu = n // 2 if mu is None else mu
    pop = [p.tree for p in random_population(n, seed=seed, max_nodes=max_nodes)]
    for _ in range(generations):
        parents = rng.sample(pop, mu)
        children = []
        for _ in range(n):
            r = rng.random()
            a = rng.choice(parents)
            if r < cxpb:
                b = rng.choice(parents)
                pa, _ = rng.choice(list(_nodes(a))[1:] or [((), a)])
                _, sub = rng.choice(list(_nodes(b))[1:] or [((), b)])
                child = _replace(a, pa, sub)
            elif r < cxpb + mutpb:
                pa, _ = rng.choice(list(_nodes(a)))
                child = _replace(a, pa, random_tree(rng, rng.randint(0, 2), full=True))
            else:
                child = a
            ok = _depth(child) <= max_depth and _size(child) <= max_nodes
            children.append(child if ok else a)
        pop = children
    return [Program(t, to_scalar="mean") for t in pop]


def _size(tree) -> int:
    stack, n = [tree], 0
    while stack:
        t = stack.pop()
        n += 1
        stack.extend(getattr(t, "args", ()))
    return n


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", type=int, default=8)
    ap.add_argument("--population", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--max-group", type=int, default=64)
    ap.add_argument("--max-nodes", type=int, default=200)
    ap.add_argument("--kind", choices=("random", "offspring"), default="random",
                    help="random trees (generation 0) or varOr offspring (later generations)")
    ap.add_argument("--generations", type=int, default=5, help="varOr rounds for --kind offspring")
    ap.add_argument("--channels", type=int, nargs=3, default=(16, 32, 64))
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    chunk = synthetic_chunk(args.networks, batch=args.batch, seed=args.seed,
                            channels=tuple(args.channels), image_size=args.image_size)
    if args.kind == "random":
        pop = random_population(args.population, seed=args.seed, max_nodes=args.max_nodes)
    else:
        pop = offspring_population(args.population, seed=args.seed, generations=args.generations,
                                   max_nodes=args.max_nodes)
    sizes = [_size(p.tree) for p in pop]
    print(f"chunk: {chunk.n_networks} networks, {int(chunk.n_blocks.sum())} blocks in "
          f"{len(chunk.groups)} shape groups (sizes {[g.size for g in chunk.groups]}), "
          f"batch {args.batch}; torch threads {torch.get_num_threads()}")
    print(f"population ({args.kind}): {len(pop)} programs, {len({p.tree.key() for p in pop})} "
          f"distinct, {sum(sizes)} nodes (min {min(sizes)}, median {int(np.median(sizes))}, "
          f"max {max(sizes)})")

    evaluate_population(pop[:2], chunk, max_group=args.max_group)  # warm-up (vmap, kernels)

    t0 = time.perf_counter()
    fast = evaluate_population(pop, chunk, max_group=args.max_group)
    t_fast = time.perf_counter() - t0

    blocks = [chunk.network_blocks(i) for i in range(chunk.n_networks)]
    t0 = time.perf_counter()
    ref = np.stack([evaluate_reference(p, blocks) for p in pop])
    t_ref = time.perf_counter() - t0

    same_nan = np.array_equal(np.isnan(ref), np.isnan(fast.scores))
    both = ~np.isnan(ref) & ~np.isnan(fast.scores)
    rel = np.abs(ref[both] - fast.scores[both]) / np.maximum(np.abs(ref[both]), 1e-30)
    valid = int((~np.isnan(fast.scores).any(axis=1)).sum())
    print(f"valid programs: {valid}/{len(pop)}; NaN pattern equal: {same_nan}; "
          f"max relative difference {rel.max() if rel.size else 0.0:.2e}")
    print(f"evaluator stats: {fast.stats}")
    print(f"reference evaluator : {t_ref:8.3f} s")
    print(f"population evaluator: {t_fast:8.3f} s")
    print(f"speed-up            : {t_ref / t_fast:8.1f} x")


if __name__ == "__main__":
    main()
