"""DEAP's GP operators, drawing from the run's own ``random.Random`` instead of the global one.

DEAP's ``gp.genHalfAndHalf``/``genFull``/``genGrow``, ``gp.cxOnePoint``, ``gp.mutUniform``,
``gp.staticLimit``, ``tools.selTournament`` and ``algorithms.varOr`` all call the
``random`` module. These are the same algorithms (DEAP 1.4), making the same draws in
the same order from the ``rng`` they are given: a seed gives the programs DEAP gave,
a run's random state can be checkpointed on its own, and the caller's global
``random`` state is never touched. Trees are DEAP ``PrimitiveTree``s over an untyped
``PrimitiveSet`` (every node returns ``object``).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any, TypeVar

from deap import gp

Ind = TypeVar("Ind")
#: when to stop growing a branch and place a terminal: (tree height, node depth) -> bool
StopRule = Callable[[int, int], bool]


def _generate(pset: gp.PrimitiveSet, min_: int, max_: int, rng: random.Random, stop: StopRule,
              type_: type | None = None) -> list:
    """Nodes of a random tree, depth first (``gp.generate``); height drawn in ``[min_, max_]``."""
    type_ = pset.ret if type_ is None else type_
    expr: list = []
    height = rng.randint(min_, max_)
    stack = [(0, type_)]
    while stack:
        depth, type_ = stack.pop()
        if stop(height, depth):
            expr.append(rng.choice(pset.terminals[type_]))
        else:
            prim = rng.choice(pset.primitives[type_])
            expr.append(prim)
            stack.extend((depth + 1, arg) for arg in reversed(prim.args))
    return expr


def gen_full(pset: gp.PrimitiveSet, min_: int, max_: int, rng: random.Random,
             type_: type | None = None) -> list:
    """Every leaf at the drawn height (``gp.genFull``)."""
    return _generate(pset, min_, max_, rng, lambda height, depth: depth == height, type_)


def gen_grow(pset: gp.PrimitiveSet, min_: int, max_: int, rng: random.Random,
             type_: type | None = None) -> list:
    """Leaves at the drawn height or, past ``min_``, by chance (``gp.genGrow``)."""
    def stop(height: int, depth: int) -> bool:
        return depth == height or (depth >= min_ and rng.random() < pset.terminalRatio)

    return _generate(pset, min_, max_, rng, stop, type_)


def gen_half_and_half(pset: gp.PrimitiveSet, min_: int, max_: int, rng: random.Random) -> list:
    """Grow or full, with equal chance (``gp.genHalfAndHalf``)."""
    method = rng.choice((gen_grow, gen_full))
    return method(pset, min_, max_, rng)


def cx_one_point(a: gp.PrimitiveTree, b: gp.PrimitiveTree, rng: random.Random
                 ) -> tuple[gp.PrimitiveTree, gp.PrimitiveTree]:
    """Swap a random non-root subtree of ``a`` with one of ``b``, in place (``gp.cxOnePoint``)."""
    if len(a) < 2 or len(b) < 2:
        return a, b
    rng.choice([object])  # DEAP draws the node type even when there is one: kept for its seeds
    i = rng.choice(range(1, len(a)))
    j = rng.choice(range(1, len(b)))
    sa, sb = a.searchSubtree(i), b.searchSubtree(j)
    a[sa], b[sb] = b[sb], a[sa]
    return a, b


def mut_uniform(ind: gp.PrimitiveTree, pset: gp.PrimitiveSet, rng: random.Random, *,
                min_: int = 0, max_: int = 2) -> tuple[gp.PrimitiveTree]:
    """Replace a random subtree by a full tree of height ``min_..max_`` (``gp.mutUniform``)."""
    index = rng.randrange(len(ind))
    where = ind.searchSubtree(index)
    ind[where] = gen_full(pset, min_, max_, rng, type_=ind[index].ret)
    return (ind,)


def limit_height(children: Sequence[Ind], parents: Sequence[Ind], max_height: int,
                 rng: random.Random) -> list[Ind]:
    """Children over ``max_height`` replaced by one of ``parents`` (copies taken before the
    variation), drawn at random (``gp.staticLimit`` on ``height``)."""
    out = list(children)
    for k, child in enumerate(out):
        if child.height > max_height:
            out[k] = rng.choice(parents)
    return out


def sel_tournament(individuals: Sequence[Ind], k: int, tournsize: int, rng: random.Random) -> list[Ind]:
    """``k`` times the fittest of ``tournsize`` drawn with replacement (``tools.selTournament``)."""
    fitness = attrgetter("fitness")
    return [max([rng.choice(individuals) for _ in range(tournsize)], key=fitness) for _ in range(k)]


def var_or(population: Sequence[Any], mate: Callable, mutate: Callable, lambda_: int, cxpb: float,
           mutpb: float, rng: random.Random) -> list:
    """``lambda_`` children, each by crossover, mutation or reproduction (``algorithms.varOr``).

    ``mate(a, b, rng)`` and ``mutate(a, rng)`` change copies; a changed child's fitness
    is deleted. A reproduced child is the parent itself, not a copy, as in DEAP 1.4.
    """
    offspring = []
    for _ in range(lambda_):
        choice = rng.random()
        if choice < cxpb:
            a, b = [copy.deepcopy(i) for i in rng.sample(population, 2)]
            a, _ = mate(a, b, rng)
            del a.fitness.values
            offspring.append(a)
        elif choice < cxpb + mutpb:
            (a,) = mutate(copy.deepcopy(rng.choice(population)), rng)
            del a.fitness.values
            offspring.append(a)
        else:
            offspring.append(rng.choice(population))
    return offspring
