"""Fitness of individuals, each distinct program scored once per run.

GP re-creates identical trees often, so fitness is cached by the canonical key of what
an individual computes (``Program.key()``); the cache goes into every checkpoint, so a
resumed run does not rescore what it already knows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eznas_store.errors import ProgramError
from eznas_store.fitness.correlations import Fitness, selection_value


def invalid_fitness(reason: str, n_tasks: int) -> Fitness:
    """The fitness of a program that cannot be evaluated at all (NaN on every task)."""
    nan = float("nan")
    return Fitness(value=nan, taus=(nan,) * n_tasks, rhos=(nan,) * n_tasks, reason=reason, valid_fraction=0.0)


class FitnessCache:
    """Fitness of individuals through the population scorer, cached by program key."""

    def __init__(self, scorer, rep, n_tasks: int) -> None:
        self.scorer, self.rep, self.n_tasks = scorer, rep, n_tasks
        self.cache: dict[str, Fitness] = {}

    def __call__(self, individuals: Sequence[Any], desc: str, gen: int = 0) -> int:
        """Set ``record``, ``fitness`` and (if unset) ``generation`` of each; returns how many
        programs were scored (not found in the cache)."""
        keys, todo = [], {}
        for ind in individuals:
            try:
                p = self.rep.evaluable(self.rep.program(ind))
            except ProgramError as e:  # e.g. a sequential program reading an unwritten address
                key = f"invalid:{e}"
                self.cache.setdefault(key, invalid_fitness(str(e), self.n_tasks))
            else:
                key = p.key()
                if key not in self.cache:
                    todo.setdefault(key, p)
            keys.append(key)
        if todo:
            self.cache.update(zip(todo, self.scorer.fitness(list(todo.values()), desc)))
        for ind, key in zip(individuals, keys):
            rec = self.cache[key]
            ind.record = rec
            ind.fitness.values = (selection_value(rec),)
            if getattr(ind, "generation", None) is None:
                ind.generation = gen
        return len(todo)
