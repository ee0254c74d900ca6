"""How an evolved program is represented: a DEAP expression tree, or an instruction list.

Both representations offer the same small interface to the loop (make a random
individual, mate, mutate, convert to and from programs, log statistics), so
checkpointing, selection and logging are one code path. All randomness comes from the
``rng`` passed in (the run's own ``random.Random``).

* Trees: the EZNAS paper's choice, varied by one-point crossover and uniform mutation,
  both limited to the maximum depth (DEAP's GP operators, :mod:`.gp_operators`). DEAP's
  ``Fitness`` class is defined here once, not through ``creator`` (which writes classes
  into module globals and breaks unpickling); workers never see individuals anyway, they
  get program JSON. Programs are interpreted by :mod:`eznas_store.evaluate`; DEAP's
  ``gp.compile`` is never called and the primitives' callables are placeholders.
* Instruction lists: AutoML-Zero programs (EZNAS appendix 1.2), varied by Mate and one of
  InsertOP, RemoveOP, MutateOP, MutateOPArg; evaluated as the tree they compute, so
  fitness, cache and scoring are shared with trees.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping, Sequence

import numpy as np
from deap import base, gp

from eznas_store.fitness import Fitness
from eznas_store.programs import sequential_variation
from eznas_store.programs import from_prefix
from eznas_store.programs import Op
from eznas_store.programs import SequentialProgram, code_stats
from eznas_store.programs import Program
from eznas_store.evolution.gp_operators import cx_one_point, gen_half_and_half, limit_height, mut_uniform
from eznas_store.terminals import TERMINALS


class FitnessMax(base.Fitness):
    weights = (1.0,)


class TreeIndividual(gp.PrimitiveTree):
    """A DEAP tree with a fitness and the full ``Fitness`` record (taus, reason) beside it."""

    def __init__(self, content) -> None:
        super().__init__(content)
        self.fitness = FitnessMax()
        self.record: Fitness | None = None
        self.generation: int | None = None  # when this tree was first evaluated


class SequentialIndividual(list):
    """A list of 4-integer instructions with the same fitness/record/generation slots."""

    def __init__(self, content=()) -> None:
        super().__init__(tuple(int(v) for v in ins) for ins in content)
        self.fitness = FitnessMax()
        self.record: Fitness | None = None
        self.generation: int | None = None


def _placeholder(*args):  # pragma: no cover - never called: programs are interpreted
    raise RuntimeError("DEAP primitives are placeholders; evaluation goes through eznas_store.evaluate")


def primitive_set(terminals: Sequence[str], ops: Mapping[str, Op]) -> gp.PrimitiveSet:
    """The untyped primitive set: every op of the table and the terminals."""
    pset = gp.PrimitiveSet("eznas", 0)
    for op in ops.values():
        pset.addPrimitive(_placeholder, op.arity, name=op.name)
    for t in terminals:
        pset.addTerminal(t, name=t)
    return pset


class TreeRepresentation:
    """Expression trees of depth ``min_depth..max_depth`` over ``terminals`` and ``ops``."""

    def __init__(self, terminals: Sequence[str], ops: Mapping[str, Op], terminal_set: str, *,
                 min_depth: int, max_depth: int, to_scalar: str) -> None:
        self.ops, self.terminal_set = ops, terminal_set
        self.min_depth, self.max_depth, self.to_scalar = min_depth, max_depth, to_scalar
        self.pset = primitive_set(terminals, ops)

    def new_individual(self, rng: random.Random) -> TreeIndividual:
        return TreeIndividual(gen_half_and_half(self.pset, self.min_depth, self.max_depth, rng))

    def mate(self, a: TreeIndividual, b: TreeIndividual, rng: random.Random) -> list[TreeIndividual]:
        parents = [copy.deepcopy(a), copy.deepcopy(b)]
        return limit_height(cx_one_point(a, b, rng), parents, self.max_depth, rng)

    def mutate(self, a: TreeIndividual, rng: random.Random) -> list[TreeIndividual]:
        parents = [copy.deepcopy(a)]
        return limit_height(mut_uniform(a, self.pset, rng, min_=0, max_=2), parents, self.max_depth, rng)

    def program(self, ind: gp.PrimitiveTree) -> Program:
        """What is saved: the tree program itself."""
        terminals = TERMINALS if self.terminal_set == "statistics" else None
        return Program(tree=from_prefix([node.name for node in ind], ops=self.ops, terminals=terminals),
                       to_scalar=self.to_scalar, terminal_set=self.terminal_set)

    def individual(self, program: Program) -> TreeIndividual:
        nodes = []
        for name in program.tree.to_prefix():
            if name in self.pset.mapping:
                nodes.append(self.pset.mapping[name])
            else:
                nodes.append(next(t for t in self.pset.terminals[object] if t.name == name))
        return TreeIndividual(nodes)

    @staticmethod
    def evaluable(program: Program) -> Program:
        return program

    @staticmethod
    def stats(population: Sequence[TreeIndividual]) -> dict:
        sizes = [len(i) for i in population]
        return {"mean_size": round(float(np.mean(sizes)), 2)} if sizes else {}


class SequentialRepresentation:
    """Instruction lists of ``min_length..max_length`` instructions over the 22 statistics."""

    def __init__(self, *, min_length: int, max_length: int, to_scalar: str) -> None:
        self.limits = {"min_len": min_length, "max_len": max_length}
        self.to_scalar = to_scalar

    def new_individual(self, rng: random.Random) -> SequentialIndividual:
        return SequentialIndividual(sequential_variation.random_program(rng, **self.limits).instructions)

    def mate(self, a: SequentialIndividual, b: SequentialIndividual, rng: random.Random):
        pa, pb = sequential_variation.mate(self.program(a), self.program(b), rng, **self.limits)
        a[:], b[:] = pa.instructions, pb.instructions
        return a, b

    def mutate(self, a: SequentialIndividual, rng: random.Random):
        a[:] = sequential_variation.mutate(self.program(a), rng, **self.limits).instructions
        return (a,)

    def program(self, ind: SequentialIndividual) -> SequentialProgram:
        """What is saved: the instruction list (dead code included, as evolved)."""
        return SequentialProgram(instructions=tuple(tuple(i) for i in ind), to_scalar=self.to_scalar)

    def individual(self, program: SequentialProgram) -> SequentialIndividual:
        return SequentialIndividual(program.instructions)

    @staticmethod
    def evaluable(program: SequentialProgram) -> Program:
        return program.to_program()

    def stats(self, population: Sequence[SequentialIndividual]) -> dict:
        return code_stats([self.program(i) for i in population], max_len=self.limits["max_len"])
