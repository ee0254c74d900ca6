"""Fitness of proxy programs on fixed network x proxy problems (the training tasks of a GP run).

Proxy programs (:mod:`eznas_store.programs.proxy_ops`) are formulas over a problem's proxy
columns (Phan & Luong 2025); their fitness is the Kendall tau of their scores against the
accuracies, exactly as :mod:`eznas_store.fitness.correlations` defines it.

Example
-------
>>> from eznas_store.programs.tree import Program, parse_formula
>>> from eznas_store.programs.proxy_ops import PROXY_OPS
>>> train, test = split_problem(problems[0], 100, seed=0)                         # doctest: +SKIP
>>> prog = Program(parse_formula("add(rank(jacov), rank(synflow))", ops=PROXY_OPS,
...                              terminals=None), terminal_set="proxies")
>>> ProxyTableScorer([train]).fitness([prog])[0].value                             # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from eznas_store.errors import ConfigError
from eznas_store.evaluate import evaluate_columns
from eznas_store.fitness.correlations import COMBINES, FITNESSES, Fitness, population_fitness
from eznas_store.fitness.problems import ProxyProblem
from eznas_store.programs import PROXY_OPS
from eznas_store.programs import rank_against
from eznas_store.programs import Program

__all__ = ["ProxyTableScorer"]


class ProxyTableScorer:
    """Fitness of proxy programs on fixed problems (the training tasks of a GP run).

    Holds the problems' columns as tensors once; scores each distinct program (by
    ``Program.key()``) once per call. Fitness is :func:`population_fitness`: Kendall tau
    (or with ``fitness="weighted_tau"`` the top-weighted tau) per problem, combined by
    ``combine`` ("min"/"mean") of it or ``abs_tau`` its absolute value; a program that is
    NaN on any network of a problem is invalid there.

    ``rank_terminals``: every column is replaced by its within-problem rank in [0, 1] (the
    proxy op ``rank``) before programs see it, so a formula's constants and operations act on
    a scale that carries to other cells, datasets and spaces; off by default.
    """

    def __init__(self, problems: Sequence[ProxyProblem], *, combine: str = "min",
                 abs_tau: bool = False, fitness: str = "tau", rank_terminals: bool = False) -> None:
        if combine not in COMBINES:
            raise ConfigError(f"combine must be one of {COMBINES}, got {combine!r}")
        if fitness not in FITNESSES:
            raise ConfigError(f"fitness must be one of {FITNESSES}, got {fitness!r}")
        self.fitness_kind = fitness
        self.problems = tuple(problems)
        if not self.problems:
            raise ConfigError("ProxyTableScorer needs at least one problem")
        self.combine, self.abs_tau = combine, bool(abs_tau)
        shared = set.intersection(*(set(p.columns) for p in self.problems))
        self.terminals: list[str] = sorted(shared)
        self.rank_terminals = bool(rank_terminals)
        self._columns = [_ranked(p.column_tensors()) if self.rank_terminals else p.column_tensors()
                         for p in self.problems]

    def _evaluate(self, programs: Sequence[Program]) -> tuple[list[np.ndarray], list[list[str | None]]]:
        """(P, n) scores and P reasons per problem."""
        keys = [p.key() for p in programs]
        unique = dict(zip(keys, programs))
        scores, reasons = [], []
        for cols, prob in zip(self._columns, self.problems):
            done = {k: evaluate_columns(p, cols, ops=PROXY_OPS) for k, p in unique.items()}
            scores.append(np.stack([done[k][0] for k in keys]) if keys else np.empty((0, len(prob))))
            reasons.append([done[k][1] for k in keys])
        return scores, reasons

    def scores(self, programs: Sequence[Program]) -> list[list[np.ndarray]]:
        """Per problem, per program: the (n,) network scores (NaN where invalid)."""
        s, _ = self._evaluate(programs)
        return [list(rows) for rows in s]

    def fitness(self, programs: Sequence[Program], desc: str = "") -> list[Fitness]:
        """Fitness of every program (``desc`` is accepted for the scorer interface; no bar: it is fast).

        Kendall tau, weighted tau and Spearman rho depend only on the order of the scores, so programs
        whose finite, non-constant scores order every problem's networks the same way
        (``x``, ``rank(x)``, ``sqrt_abs(x)`` for positive ``x``, ...) are given one
        :func:`population_fitness` computation -- a functional-equivalence cache in the
        spirit of AutoML-Zero; the scipy tau is most of the cost.
        """
        if not programs:
            return []
        s, r = self._evaluate(programs)
        slot: dict[Any, int] = {}
        which = [slot.setdefault(_order_key(s, r, i), len(slot)) for i in range(len(programs))]
        reps: list[int] = []  # the first program of each slot; slots are numbered in order
        for i, k in enumerate(which):
            if k == len(reps):
                reps.append(i)
        fits = population_fitness([x[reps] for x in s], [p.accuracy for p in self.problems],
                                  combine=self.combine, abs_tau=self.abs_tau,
                                  reasons=[[rr[i] for i in reps] for rr in r], fitness=self.fitness_kind)
        return [fits[k] for k in which]


def _ranked(columns: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each column as its within-problem average rank scaled to [0, 1] (NaN stays NaN)."""
    return {k: rank_against(v, v) for k, v in columns.items()}


def _order_key(scores: list[np.ndarray], reasons: list[list[str | None]], i: int) -> Any:
    """What tau/rho of program ``i`` depend on: its dense ranks on every problem.

    Programs with a NaN or constant scores are keyed by position (their reasons differ).
    """
    parts = []
    for t, x in enumerate(scores):
        row = x[i]
        if reasons[t][i] is not None or not np.isfinite(row).all():
            return ("own", i)
        order = np.argsort(row, kind="stable")
        steps = np.diff(row[order]) != 0
        if not steps.any():
            return ("own", i)
        dense = np.empty(len(row), dtype=np.int32)
        dense[order] = np.concatenate(([0], np.cumsum(steps)))
        parts.append(dense.tobytes())
    return tuple(parts)


