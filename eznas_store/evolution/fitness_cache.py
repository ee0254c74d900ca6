"""Fitness of individuals, each distinct program scored once per run.

GP re-creates identical trees often, so fitness is cached by the canonical key of what
an individual computes (``Program.key()``); the cache goes into every checkpoint, so a
resumed run does not rescore what it already knows.

Two opt-in ways to score fewer programs fully (``--over statistics`` only):

* *Functional equivalence* (AutoML-Zero's FEC): a new program is first run on a small
  fixed probe of networks; a program whose rounded probe outputs (:func:`probe_hash`)
  match an already-scored one's takes that fitness without being scored (``abs(abs(x))``
  and ``abs(x)`` are scored once). The probe map goes into the checkpoint.
* *Racing*: children are scored on a chunk-aligned part of the train networks first;
  only those whose partial fitness reaches ``threshold - margin`` (threshold: the
  μ-th best fitness of the parents) are scored on the rest. The others keep the partial
  fitness, marked raced out: they never enter the hall of fame.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from eznas_store.errors import ProgramError
from eznas_store.fitness import Fitness, selection_value

#: a child is scored in full when its partial tau is at least the threshold minus this
RACING_MARGIN = 0.15


def invalid_fitness(reason: str, n_tasks: int) -> Fitness:
    """The fitness of a program that cannot be evaluated at all (NaN on every task)."""
    nan = float("nan")
    return Fitness(value=nan, taus=(nan,) * n_tasks, rhos=(nan,) * n_tasks, reason=reason, valid_fraction=0.0)


def probe_hash(scores: np.ndarray) -> str:
    """Identity of a program's outputs on the probe networks: each score to 7 significant
    digits (relative, so large and small scores round alike), NaN/Inf as such."""
    text = ",".join(f"{float(v):.6e}" if math.isfinite(v) else str(float(v)) for v in np.ravel(scores))
    return hashlib.sha1(text.encode()).hexdigest()


class FitnessCache:
    """Fitness of individuals through the population scorer, cached by program key."""

    def __init__(self, scorer, rep, n_tasks: int, *, equivalence: bool = False, racing: float = 0.0,
                 margin: float = RACING_MARGIN) -> None:
        self.scorer, self.rep, self.n_tasks = scorer, rep, n_tasks
        self.equivalence, self.racing, self.margin = equivalence, racing, margin
        self.cache: dict[str, Fitness] = {}
        #: keys of programs whose fitness is a raced-out partial one
        self.raced: set[str] = set()
        #: probe hash -> key of the program scored for it
        self.probes: dict[str, str] = {}
        #: this session's counts: equivalence hits, programs raced out
        self.hits = 0
        self.raced_out = 0

    def key(self, ind: Any) -> str:
        try:
            return self.rep.evaluable(self.rep.program(ind)).key()
        except ProgramError as e:
            return f"invalid:{e}"

    def is_raced(self, ind: Any) -> bool:
        """Whether the individual's fitness is a raced-out partial one (never hall of fame)."""
        return bool(self.raced) and self.key(ind) in self.raced

    def __call__(self, individuals: Sequence[Any], desc: str, gen: int = 0,
                 threshold: float = -math.inf) -> int:
        """Set ``record``, ``fitness`` and (if unset) ``generation`` of each; returns how many
        programs were scored (not found in the cache nor, with the equivalence cache, on the
        probe). With racing, ``threshold`` is the fitness a child must come near."""
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
        aliases = self._equivalent(todo) if (todo and self.equivalence) else {}
        if todo:
            self._score(todo, desc, threshold)
        for key, rep_key in aliases.items():
            self._alias(key, rep_key)
        for ind, key in zip(individuals, keys):
            rec = self.cache[key]
            ind.record = rec
            ind.fitness.values = (selection_value(rec),)
            if getattr(ind, "generation", None) is None:
                ind.generation = gen
        return len(todo)

    def _alias(self, key: str, rep_key: str) -> None:
        self.cache[key] = self.cache[rep_key]
        if rep_key in self.raced:
            self.raced.add(key)
        self.hits += 1

    def _equivalent(self, todo: dict) -> dict[str, str]:
        """Take out of ``todo`` the programs whose probe outputs match a known program's;
        returns {key: key of that program} for those scored in this same call."""
        hashes = [probe_hash(row) for row in self.scorer.probe_scores(list(todo.values()))]
        pending: dict[str, str] = {}
        for key, h in zip(list(todo), hashes):
            rep_key = self.probes.get(h)
            if rep_key is None:
                self.probes[h] = key
            elif rep_key in self.cache:
                del todo[key]
                self._alias(key, rep_key)
            else:  # same outputs as a program of this very call: scored once, shared after
                del todo[key]
                pending[key] = rep_key
        return pending

    def _score(self, todo: dict, desc: str, threshold: float) -> None:
        programs = list(todo.values())
        if self.racing <= 0 or not math.isfinite(threshold):
            self.cache.update(zip(todo, self.scorer.fitness(programs, desc)))
            return
        fits, raced = self.scorer.race_fitness(programs, threshold - self.margin, desc)
        for key, f, out in zip(todo, fits, raced):
            if out:
                why = f"raced out on part of the train networks{f' ({f.reason})' if f.reason else ''}"
                f = dataclasses.replace(f, reason=why)
                self.raced.add(key)
                self.raced_out += 1
            self.cache[key] = f
