"""Aging evolution (Real, Aggarwal, Huang & Le, AAAI 2019) over the cells of a search space.

Regularised ("aging") evolution, the algorithm alone: the fitness is any function
``cell -> (score, reason)`` (:mod:`eznas_store.archsearch.cell_scorers` provides the
training-free ones) and the space (:func:`eznas_store.sources.spaces.get_space`) draws
random cells and mutates them, so the loop knows nothing of NB201::

    population <- P uniformly random cells (scored)
    repeat until the budget is spent:
        parent <- best of S cells drawn without replacement from the population
        child  <- parent mutated by the space (NB201: one of its 6 edges changed to one
                  of the 4 other ops)
        score child (free if seen before); append it; remove the oldest member

Higher is better (``maximize=False`` flips it); a NaN score (proxy failed) ranks below
everything. :func:`eznas_store.archsearch.run.run_search` runs it under a budget.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from eznas_store.errors import ConfigError
from eznas_store.archsearch.config import DEFAULT_POPULATION, DEFAULT_SAMPLE
from eznas_store.sources import get_space
from eznas_store.sources import SearchSpace

__all__ = ["DEFAULT_SPACE", "AgingEvolution", "Evaluation", "Member", "ScoreFn"]

#: the space an :class:`AgingEvolution` walks unless told otherwise
DEFAULT_SPACE = "nb201"


@dataclass(frozen=True)
class Member:
    """A population member: a cell and its (cached) score."""

    cell: str
    score: float


@dataclass(frozen=True)
class Evaluation:
    """One distinct cell scored: when (seconds since the run started) and with what result."""

    step: int
    cell: str
    score: float
    seconds: float
    reason: str | None = None


ScoreFn = Callable[[str], tuple[float, str | None]]


class AgingEvolution:
    """Regularised evolution with a score cache; one :meth:`step` is one cycle.

    ``score_fn(cell) -> (score, reason)`` is called once per distinct cell; ``rng`` is
    the run's only source of randomness; ``space`` (a name or a registered space) draws
    random cells and mutates them. ``population`` holds the living members, oldest
    first; ``history`` every distinct cell scored, in order.
    """

    def __init__(self, score_fn: ScoreFn, *, rng: np.random.Generator, population_size: int = DEFAULT_POPULATION,
                 sample_size: int = DEFAULT_SAMPLE, maximize: bool = True,
                 clock: Callable[[], float] | None = None, start: float | None = None,
                 space: str | SearchSpace = DEFAULT_SPACE) -> None:
        if population_size < 2 or not 1 <= sample_size <= population_size:
            raise ConfigError(f"need population >= 2 and 1 <= sample <= population, got "
                              f"{population_size} and {sample_size}")
        self.space = get_space(space) if isinstance(space, str) else space
        if not self.space.searchable:
            raise ConfigError(f"space {self.space.name!r} has no enumeration and mutation to evolve over")
        self.score_fn = score_fn
        self.rng = rng
        self.population_size = population_size
        self.sample_size = sample_size
        self.maximize = maximize
        self.clock = clock or time.perf_counter
        self._t0 = self.clock() if start is None else start
        self.population: deque[Member] = deque()
        self.cache: dict[str, tuple[float, str | None]] = {}
        self.history: list[Evaluation] = []
        self.cycles = 0
        self.cache_hits = 0
        #: cycles since the last unseen cell
        self.stall = 0
        self.best: Evaluation | None = None
        self.eval_seconds = 0.0

    # ---------------------------------------------------------------- ordering
    def key(self, score: float) -> float:
        """Sort key: larger is better; NaN is worst."""
        if math.isnan(score):
            return -math.inf
        return score if self.maximize else -score

    @property
    def evaluations(self) -> int:
        return len(self.history)

    @property
    def exhausted(self) -> bool:
        return len(self.cache) >= self.space.n_cells

    # ---------------------------------------------------------------- one cycle
    def score(self, cell: str) -> float:
        """The cell's score, computed at most once per run."""
        hit = self.cache.get(cell)
        if hit is not None:
            self.cache_hits += 1
            return hit[0]
        t = self.clock()
        value, reason = self.score_fn(cell)
        now = self.clock()
        self.eval_seconds += now - t
        value = float(value)
        self.cache[cell] = (value, reason)
        ev = Evaluation(step=len(self.history), cell=cell, score=value, seconds=now - self._t0, reason=reason)
        self.history.append(ev)
        if math.isfinite(value) and (self.best is None or self.key(value) > self.key(self.best.score)):
            self.best = ev
        return value

    def propose(self) -> str:
        """The next cell: random while the population fills, else a mutated tournament winner."""
        if len(self.population) < self.population_size:
            return self.space.random_cell(self.rng)
        members = list(self.population)
        picks = self.rng.choice(len(members), size=self.sample_size, replace=False)
        parent = max((members[int(i)] for i in picks), key=lambda m: self.key(m.score))
        return self.space.mutate(parent.cell, self.rng)

    def step(self) -> Member:
        """One cycle: propose, score (cached), append; the oldest dies once the population is full."""
        cell = self.propose()
        before = len(self.history)
        member = Member(cell, self.score(cell))
        self.stall = 0 if len(self.history) > before else self.stall + 1
        self.population.append(member)
        if len(self.population) > self.population_size:
            self.population.popleft()
        self.cycles += 1
        return member
