"""Round-off check: is a program's ranking a property of the networks, or of float32 round-off?

Some programs amplify the smallest change of their inputs: the log-determinant of a
near-singular correlation matrix, a determinant, a sigmoid of a logdet of -100. Their
score of a network is then set by float32 round-off as much as by the network, and any
second copy of the statistics reorders it: a lossy store, but also a lossless ingest on
other hardware (another convolution algorithm, another summation order). No codec can keep
such a program's tau, and a researcher should know before trusting its ranking.

The check scores each program twice: on the store as it is and with every stored value
nudged by one float32 ulp (up or down at random, seeded; zeros stay zero, as a ReLU's
zeros are exact), and measures the largest per-network score change in units of the
spread (standard deviation) of the program's scores over the networks. Ranking depends on
differences between networks, so this is the scale that matters; a program is
*round-off-determined* when that shift exceeds ``ROUNDOFF_LIMIT``. The nudge is the same
on any store, lossless or lossy: ill-conditioning belongs to the program and the networks,
not to the codec. On 200 NB201 networks at batch 1, of 28 programs tested the one flagged
moved by 0.29 of its spread, the next by 2e-4 of it (docs/results.md "Round-off check").

In-process and chunk by chunk, like a one-shot ``score``: memory is one chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from eznas_store.evaluate import read_chunk
from eznas_store.evaluate import evaluate_population
from eznas_store.fitness.engine import Engine, Task, load_task, task_scores
from eznas_store.fitness.scores import ScoreResult, json_ready, summarise
from eznas_store.programs import Program
from eznas_store.store import open_store

#: largest per-network score change, in standard deviations of the scores over networks,
#: that a one-ulp nudge of the statistics may cause before a program is round-off-determined
ROUNDOFF_LIMIT = 0.01


@dataclass(frozen=True)
class Roundoff:
    """One program's round-off check on one store."""

    program: str
    #: largest |score change| over the networks, in standard deviations of the scores
    shift: float
    #: Kendall tau with the nudged statistics minus tau on the store as it is
    dtau: float

    @property
    def determined(self) -> bool:
        """True when the program's ranking is set by round-off (``shift > ROUNDOFF_LIMIT``)."""
        return not self.shift <= ROUNDOFF_LIMIT

    def line(self) -> str:
        verdict = ("ROUND-OFF-DETERMINED: its ranking is not a property of the networks alone"
                   if self.determined else "stable")
        return (f"round-off {self.program}: one float32 ulp on every statistic moves a score by {self.shift:.2g} "
                f"of the scores' spread and tau by {self.dtau:+.4f}: {verdict}")

    def json(self) -> dict:
        """Plain JSON (an infinite shift, where validity itself changed, as null)."""
        return json_ready({"shift": self.shift, "dtau": self.dtau,
                           "round_off_determined": self.determined})


def nudge_ulp(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``values`` (float32) each moved to a float32 neighbour, toward or away from zero at
    random: one unit in the last place. Zeros and non-finite values stay as they are, and
    the largest finite magnitude only moves toward zero, so no value changes sign or class."""
    x = np.ascontiguousarray(values, dtype=np.float32)
    bits = x.view(np.uint32)
    mag = bits & np.uint32(0x7FFFFFFF)
    movable = (mag != 0) & (mag < np.uint32(0x7F800000))
    up = rng.random(x.shape) < 0.5
    up = np.where(mag == np.uint32(0x7F7FFFFF), False, up)  # the largest finite: only down
    down_ok = mag > np.uint32(1)  # the smallest subnormal would become zero: only up
    step = np.where(up | ~down_ok, np.uint32(1), np.uint32(0xFFFFFFFF))  # +1 / -1 on the magnitude
    return np.where(movable, bits + step, bits).view(np.float32)


def nudged_scores(task: Task, programs: Sequence[Program], seed: int = 0,
                  to_scalar: str | None = None) -> np.ndarray:
    """(programs, networks) scores of the task's networks with every stored value nudged by
    one ulp (``nudge_ulp``; each chunk's draws seeded by ``seed`` and its first network)."""
    store = open_store(task.url)
    parts = []
    for lo, hi in task.chunks:
        rng = np.random.default_rng([seed, lo])
        chunk = read_chunk(store, lo, hi, transform=lambda _name, rows: nudge_ulp(rows, rng))
        parts.append(evaluate_population(programs, chunk, to_scalar=to_scalar))
    return task_scores(task, parts)[0]


def shift_in_spread(scores: np.ndarray, nudged: np.ndarray) -> float:
    """Largest |nudged - scores| over the networks valid in both, in standard deviations of
    ``scores``; inf when validity itself changes or the scores are constant but move, 0 when
    nothing moves."""
    a, b = np.asarray(scores, dtype=np.float64), np.asarray(nudged, dtype=np.float64)
    if not np.array_equal(np.isfinite(a), np.isfinite(b)):
        return float("inf")
    ok = np.isfinite(a)
    change = np.abs(b[ok] - a[ok]).max(initial=0.0)
    spread = a[ok].std() if ok.sum() > 1 else 0.0
    if change == 0:
        return 0.0
    return float(change / spread) if spread > 0 else float("inf")


def roundoff_check(url: str, programs: Sequence[Program], results: Sequence[ScoreResult] | None = None, *,
                   accuracy_column: str | None = None, seed: int = 0, to_scalar: str | None = None,
                   max_networks: int | None = None) -> list[Roundoff]:
    """Round-off check of ``programs`` on a store: one scoring with the statistics nudged,
    compared with ``results`` (``score_store`` of the same store, label and order; scored
    here when not given)."""
    task = load_task(url, accuracy_column=accuracy_column, max_networks=max_networks)
    if results is None:
        with Engine(workers=0) as engine:
            base = engine.score(programs, [task], to_scalar=to_scalar).scores[0]
        results = [summarise(p.name or p.formula(), task.name, row, task.accuracy, task.archs, task.networks,
                             label=task.label) for p, row in zip(programs, base)]
    nudged = nudged_scores(task, programs, seed, to_scalar)
    out = []
    for r, row in zip(results, nudged):
        again = summarise(r.program, r.task, row, task.accuracy, task.archs, task.networks, label=r.label)
        dtau = again.tau - r.tau if np.isfinite(again.tau) and np.isfinite(r.tau) else float("nan")
        out.append(Roundoff(r.program, shift_in_spread(r.scores, row), float(dtau)))
    return out
