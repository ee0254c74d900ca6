"""Fitness of a program: rank correlation between its network scores and the accuracies.

EZNAS (docs/design.md §3) scores a program by the Kendall tau-b between the scores it gives a
task's networks and their accuracies; over several tasks it takes the minimum, and it
used |tau|. Spearman rho is always reported alongside.

Nothing is ignored: a single NaN score (the program failed on that network) or constant
scores make the program invalid for the task, and its fitness is NaN with a reason.
NaN-plus-reason is what is stored and reported; ``selection_value`` maps it to ``-inf``
only inside selection, where DEAP needs a number that orders.

Example
-------
>>> import numpy as np
>>> acc = np.array([70.0, 80.0, 90.0, 60.0])
>>> f = combine_tasks([np.array([1.0, 2.0, 3.0, 0.5])], [acc])
>>> f.value, f.rhos, f.reason
(1.0, (1.0,), None)
>>> bad = combine_tasks([np.array([1.0, np.nan, 3.0, 0.5])], [acc])
>>> bad.value, bad.reason, selection_value(bad)
(nan, 'task 0: invalid for 1 of 4 networks', -inf)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from eznas_store.errors import BenchmarkFormatError, ConfigError

__all__ = [
    "COMBINES",
    "FITNESSES",
    "Fitness",
    "combine_tasks",
    "kendall_tau",
    "population_fitness",
    "selection_value",
    "spearman_rho",
    "weighted_tau",
]

COMBINES: tuple[str, ...] = ("min", "mean")
#: what a task's fitness measures: Kendall tau over all networks (EZNAS, the default), or
#: a weighted tau whose weights favour the top of the score and accuracy rankings (:func:`weighted_tau`)
FITNESSES: tuple[str, ...] = ("tau", "weighted_tau")


@dataclass(frozen=True)
class Fitness:
    """The fitness of one program over one or several tasks.

    ``value`` is the combined (min or mean over tasks, of tau or |tau|) Kendall tau (or,
    with ``fitness="weighted_tau"``, weighted tau), NaN when the program is invalid on any
    task; ``taus``/``rhos`` are the signed per-task
    Kendall tau-b / Spearman rho (NaN where invalid); ``reason`` says why the value is
    NaN (``None`` when valid); ``valid_fraction`` is the fraction of all networks, over
    all tasks, that got a finite score.
    """

    value: float
    taus: tuple[float, ...]
    rhos: tuple[float, ...]
    reason: str | None
    valid_fraction: float

    @property
    def valid(self) -> bool:
        return not math.isnan(self.value)


def selection_value(f: Fitness) -> float:
    """``f.value``, or ``-inf`` when invalid: only for ordering inside selection."""
    return -math.inf if math.isnan(f.value) else float(f.value)


# ----------------------------------------------------------------------------- one vector
def _vectors(scores: np.ndarray, accuracies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    a = _accuracies(accuracies)
    if s.shape != a.shape:
        raise ValueError(f"scores have shape {s.shape} but accuracies have shape {a.shape}")
    return s, a


def _accuracies(accuracies: np.ndarray) -> np.ndarray:
    a = np.asarray(accuracies, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"accuracies must be one-dimensional, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        bad = np.flatnonzero(~np.isfinite(a))
        raise BenchmarkFormatError(
            f"accuracies are not finite at {len(bad)} position(s), first {bad[:5].tolist()}: "
            "drop those networks from the task"
        )
    return a


def _usable(s: np.ndarray) -> bool:
    return s.size >= 2 and bool(np.all(np.isfinite(s))) and bool(np.ptp(s) > 0)


def kendall_tau(scores: np.ndarray, accuracies: np.ndarray) -> float:
    """Kendall tau-b (``scipy.stats.kendalltau``); NaN if any score is NaN/Inf or all are equal."""
    s, a = _vectors(scores, accuracies)
    if not _usable(s) or np.ptp(a) == 0:
        return math.nan
    return float(stats.kendalltau(s, a).statistic)


def spearman_rho(scores: np.ndarray, accuracies: np.ndarray) -> float:
    """Spearman rho (``scipy.stats.spearmanr``); NaN if any score is NaN/Inf or all are equal."""
    s, a = _vectors(scores, accuracies)
    if not _usable(s) or np.ptp(a) == 0:
        return math.nan
    return float(stats.spearmanr(s, a).statistic)


def weighted_tau(scores: np.ndarray, accuracies: np.ndarray) -> float:
    """Weighted Kendall tau (Vigna 2015), hyperbolic weights, symmetric: the top of both rankings counts most.

    ``scipy.stats.weightedtau(scores, accuracies, rank=True)``: a pair of networks is weighted by
    1 / (r + 1) of its members' ranks (additive), once with the ranks by decreasing score and
    once by decreasing accuracy, and the two taus are averaged. A swap among the top networks
    costs far more than one among the bad ones, which is what a search needs: it keeps only
    the best cell it meets, while a plain tau over all cells says little about the top 1 %.

    Why both rankings: weights ranked by the accuracy alone do not punish a formula that puts
    poor networks on top of its own ranking (a pair with a poor network weighs little), and
    such formulas won: on 998 Suite-Zero NB201-CIFAR-10 cells, 2 of 5 seeded runs evolved
    formulas whose top-scored held-out cell had 90.6 % (the search would pick it); with the
    symmetric weights no seed of 10 did (docs/results.md, issue 13). Unlike a top-k precision it has no
    k to choose and still sees every pair. NaN if any score is NaN/Inf or all are equal.
    """
    s, a = _vectors(scores, accuracies)
    if not _usable(s) or np.ptp(a) == 0:
        return math.nan
    return float(stats.weightedtau(s, a, rank=True).statistic)


# ----------------------------------------------------------------------------- populations
def _spearman_rows(scores: np.ndarray, accuracies: np.ndarray) -> np.ndarray:
    """Spearman rho of every row of ``scores`` (P, n) with ``accuracies`` (n,), vectorised."""
    rs = stats.rankdata(scores, axis=1)
    ra = stats.rankdata(accuracies)
    rs = rs - rs.mean(axis=1, keepdims=True)
    ra = ra - ra.mean()
    num = rs @ ra
    den = np.sqrt((rs * rs).sum(axis=1) * (ra @ ra))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = num / den
    return np.clip(rho, -1.0, 1.0)


def _task_stats(
    scores: np.ndarray, accuracies: np.ndarray, reasons: Sequence[str | None] | None, task: int,
    fitness: str = "tau",
) -> tuple[np.ndarray, np.ndarray, list[str | None], np.ndarray, np.ndarray]:
    """Per program: tau, rho, reason (None where valid), the number of finite scores and the
    value ``fitness`` measures (tau itself, or weighted tau)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        s = s[None, :]
    a = _accuracies(accuracies)
    if s.ndim != 2 or s.shape[1] != a.shape[0]:
        raise ValueError(
            f"task {task}: scores have shape {s.shape}, expected (programs, {a.shape[0]})"
        )
    p, n = s.shape
    if reasons is not None and len(reasons) != p:
        raise ValueError(f"task {task}: {len(reasons)} reasons for {p} programs")
    finite = np.isfinite(s)
    n_finite = finite.sum(axis=1)
    all_finite = n_finite == n
    constant = np.zeros(p, dtype=bool)
    if n >= 2:
        constant[all_finite] = np.ptp(s[all_finite], axis=1) == 0
    ok = all_finite & ~constant & (n >= 2 and bool(np.ptp(a) > 0))
    taus = np.full(p, np.nan)
    rhos = np.full(p, np.nan)
    values = taus if fitness == "tau" else np.full(p, np.nan)
    if ok.any():
        rhos[ok] = _spearman_rows(s[ok], a)
        for i in np.flatnonzero(ok):
            taus[i] = stats.kendalltau(s[i], a).statistic
            if fitness == "weighted_tau":
                values[i] = weighted_tau(s[i], a)
    why: list[str | None] = []
    for i in range(p):
        if ok[i]:
            why.append(None)
        elif not all_finite[i]:
            first = reasons[i] if reasons is not None else None
            msg = f"task {task}: invalid for {n - n_finite[i]} of {n} networks"
            why.append(f"{msg} ({first})" if first else msg)
        elif n < 2:
            why.append(f"task {task}: {n} network(s), need at least 2 for a rank correlation")
        elif constant[i]:
            why.append(f"task {task}: constant scores ({float(s[i, 0])!r}) on all {n} networks")
        else:
            why.append(f"task {task}: all accuracies are equal")
    return taus, rhos, why, n_finite, values


def population_fitness(
    scores: np.ndarray | Sequence[np.ndarray],
    accuracies: np.ndarray | Sequence[np.ndarray],
    *,
    combine: str = "min",
    abs_tau: bool = False,
    reasons: Sequence[str | None] | Sequence[Sequence[str | None]] | None = None,
    fitness: str = "tau",
) -> list[Fitness]:
    """Fitness of every program of a population.

    Parameters
    ----------
    scores
        One task: an array (P, n) of network scores (NaN where the program is invalid
        for a network, as ``evaluate.ChunkScores.scores``). Several tasks: a sequence of
        such arrays, one per task (``n`` may differ between tasks).
    accuracies
        (n,) for one task, or a sequence of them aligned with ``scores``.
    combine, abs_tau
        As in ``combine_tasks``.
    fitness
        ``"tau"`` (Kendall tau-b, EZNAS) or ``"weighted_tau"`` (:func:`weighted_tau`, the
        top of the rankings weighs most): what ``Fitness.value`` combines over
        tasks. ``Fitness.taus``/``rhos`` stay the plain Kendall tau / Spearman rho.
    reasons
        Optional per-program failure reasons from the evaluator (one list per task for
        several tasks); they are quoted in ``Fitness.reason``.
    """
    if combine not in COMBINES:
        raise ConfigError(f"combine must be one of {COMBINES}, got {combine!r}")
    if fitness not in FITNESSES:
        raise ConfigError(f"fitness must be one of {FITNESSES}, got {fitness!r}")
    task_scores, task_acc, task_reasons = _per_task(scores, accuracies, reasons)
    per_task = [
        _task_stats(s, a, r, t, fitness)
        for t, (s, a, r) in enumerate(zip(task_scores, task_acc, task_reasons))
    ]
    p = len(per_task[0][0])
    if any(len(t[0]) != p for t in per_task):
        raise ValueError(f"tasks have different numbers of programs: {[len(t[0]) for t in per_task]}")
    n_total = sum(np.asarray(s).shape[-1] for s in task_scores)
    return _combine_stats(per_task, n_total, combine=combine, abs_tau=abs_tau)


def _per_task(scores, accuracies, reasons) -> tuple[list, list, list]:
    """Scores, accuracies and reasons as one list entry per task (one task: a bare array)."""
    if isinstance(scores, np.ndarray):
        if not isinstance(accuracies, np.ndarray):
            accuracies = np.asarray(accuracies, dtype=np.float64)
        task_scores, task_acc, task_reasons = [scores], [accuracies], [reasons]
    else:
        task_scores = list(scores)
        task_acc = list(accuracies)
        task_reasons = list(reasons) if reasons is not None else [None] * len(task_scores)
    if not task_scores:
        raise ValueError("no tasks given")
    if len(task_acc) != len(task_scores) or len(task_reasons) != len(task_scores):
        raise ValueError(
            f"{len(task_scores)} score arrays, {len(task_acc)} accuracy arrays and "
            f"{len(task_reasons)} reason lists: they must match one per task"
        )
    return task_scores, task_acc, task_reasons


def _combine_stats(per_task: list, n_total: int, *, combine: str, abs_tau: bool) -> list[Fitness]:
    """One ``Fitness`` per program from the per-task ``_task_stats``, combined over tasks."""
    taus = np.stack([t[0] for t in per_task], axis=1)  # (P, T)
    rhos = np.stack([t[1] for t in per_task], axis=1)
    n_finite = np.sum([t[3] for t in per_task], axis=0)
    measured = np.stack([t[4] for t in per_task], axis=1)
    vals = np.abs(measured) if abs_tau else measured
    with np.errstate(invalid="ignore"):
        combined = vals.min(axis=1) if combine == "min" else vals.mean(axis=1)
    out = []
    for i in range(len(taus)):
        value = float(combined[i])
        why = [t[2][i] for t in per_task if t[2][i] is not None]
        out.append(Fitness(
            value=value,
            taus=tuple(float(x) for x in taus[i]),
            rhos=tuple(float(x) for x in rhos[i]),
            reason="; ".join(why) if math.isnan(value) else None,
            valid_fraction=float(n_finite[i] / n_total) if n_total else 0.0,
        ))
    return out


def combine_tasks(
    per_task_scores: Sequence[np.ndarray],
    per_task_acc: Sequence[np.ndarray],
    *,
    combine: str = "min",
    abs_tau: bool = False,
    reasons: Sequence[str | None] | None = None,
) -> Fitness:
    """Fitness of one program from its scores on each task.

    Parameters
    ----------
    per_task_scores
        One (n_t,) score vector per task (NaN where the program failed on a network).
    per_task_acc
        The matching (n_t,) accuracy vectors.
    combine
        ``"min"`` (EZNAS: the worst task decides) or ``"mean"`` over tasks.
    abs_tau
        Combine |tau| instead of tau (EZNAS did), so a proxy that ranks backwards counts.
    reasons
        Optional evaluator failure reason per task, quoted in ``Fitness.reason``.
    """
    if len(per_task_scores) != len(per_task_acc):
        raise ValueError(
            f"{len(per_task_scores)} score vectors for {len(per_task_acc)} accuracy vectors"
        )
    rs = [[r] for r in reasons] if reasons is not None else None
    return population_fitness(
        [np.asarray(s, dtype=np.float64).reshape(1, -1) for s in per_task_scores],
        list(per_task_acc), combine=combine, abs_tau=abs_tau, reasons=rs,
    )[0]
