"""The network-level aggregate as part of a tree genome (``evolve --evolve-aggregate``).

A program's network score is an aggregate of its block scalars (``Program.aggregate``:
mean, sum or depth-weighted mean, :data:`~eznas_store.programs.tree.AGGREGATES`). With
this representation each individual carries its own aggregate: random programs draw one,
and every crossover or mutation child changes it with probability ``rate`` (to another
one, drawn from the run's ``random.Random``). Without it every program uses the mean,
as before.
"""

from __future__ import annotations

import random

from eznas_store.programs import AGGREGATES, Program
from eznas_store.evolution.representations import TreeIndividual, TreeRepresentation

#: chance that a varied child gets another aggregate
AGGREGATE_RATE = 0.1


class AggregateTreeRepresentation(TreeRepresentation):
    """Trees whose individuals also carry ``aggregate``, varied alongside the tree."""

    def __init__(self, *args, rate: float = AGGREGATE_RATE, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rate = rate

    def _vary(self, children, rng: random.Random) -> list:
        for c in children:
            if rng.random() < self.rate:
                c.aggregate = rng.choice([a for a in AGGREGATES if a != getattr(c, "aggregate", "mean")])
        return list(children)

    def new_individual(self, rng: random.Random) -> TreeIndividual:
        ind = super().new_individual(rng)
        ind.aggregate = rng.choice(AGGREGATES)
        return ind

    def mate(self, a: TreeIndividual, b: TreeIndividual, rng: random.Random) -> list[TreeIndividual]:
        return self._vary(super().mate(a, b, rng), rng)

    def mutate(self, a: TreeIndividual, rng: random.Random) -> list[TreeIndividual]:
        return self._vary(super().mutate(a, rng), rng)

    def program(self, ind: TreeIndividual) -> Program:
        p = super().program(ind)
        agg = getattr(ind, "aggregate", "mean")
        return p if agg == "mean" else Program(tree=p.tree, to_scalar=p.to_scalar, terminal_set=p.terminal_set,
                                                aggregate=agg)

    def individual(self, program: Program) -> TreeIndividual:
        ind = super().individual(program)
        ind.aggregate = program.aggregate
        return ind
