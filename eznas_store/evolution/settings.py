"""The GP settings every evolution starts from, in one place: EZNAS appendix 1.7.

Population 50, mu 25 and lambda 50 (population // 2 and population unless given), crossover
0.4 and mutation 0.4 (DEAP ``varOr``), tournament 4, tree depth 2..10, 15 generations.
``evolve``'s and ``transfer``'s configs are :class:`GPSettings` (they inherit these fields)
and the CLI's flags take their defaults from :data:`PAPER_GP`, so changing one default
changes it everywhere; this module imports
nothing heavy, so the CLI can read it without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GPSettings", "PAPER_GP"]


@dataclass(frozen=True, kw_only=True)
class GPSettings:
    """The (mu + lambda) GP settings of one evolution."""

    population: int = 50
    #: parents kept / children made per generation; None: population // 2 and population
    mu: int | None = None
    lambda_: int | None = None
    cxpb: float = 0.4
    mutpb: float = 0.4
    tournament: int = 4
    min_depth: int = 2
    max_depth: int = 10
    generations: int = 15


#: the seed paper's settings, the default of every evolution
PAPER_GP = GPSettings()
