"""Per-network scores of one program on one task, summarised by tau/rho and written as CSV.

What ``score`` prints and what a run directory's ``scores/*.csv`` hold, whichever way the
scores were computed (from a store by the Engine, or storeless).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from eznas_store.fitness.correlations import kendall_tau, spearman_rho
from eznas_store.outputs import write_atomic


@dataclass
class ScoreResult:
    program: str
    task: str
    tau: float
    rho: float
    n: int
    n_valid: int
    scores: np.ndarray
    accuracy: np.ndarray
    archs: tuple[str, ...]
    networks: np.ndarray
    reason: str | None

    def line(self) -> str:
        return (f"{self.program} on {self.task}: Kendall tau {self.tau:.4f}, Spearman rho {self.rho:.4f} "
                f"({self.n_valid}/{self.n} networks valid)" + (f"; {self.reason}" if self.reason else ""))


def summarise(program_name: str, task_name: str, scores: np.ndarray, accuracy: np.ndarray,
              archs: Sequence[str], networks: np.ndarray, reason: str | None = None) -> ScoreResult:
    """τ and ρ over the networks where the program is valid (NaN if fewer than 2)."""
    ok = np.isfinite(scores)
    tau = kendall_tau(scores[ok], accuracy[ok]) if ok.sum() >= 2 else float("nan")
    rho = spearman_rho(scores[ok], accuracy[ok]) if ok.sum() >= 2 else float("nan")
    return ScoreResult(program_name, task_name, tau, rho, int(len(scores)), int(ok.sum()), scores,
                       accuracy, tuple(archs), networks, reason)


def write_scores_csv(path: str | os.PathLike, results: Sequence[ScoreResult]) -> None:
    """``task,network,arch,accuracy,score`` rows (the run-directory and ``score --out`` format)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["task", "network", "arch", "accuracy", "score"])
    for r in results:
        for n, a, acc, s in zip(r.networks, r.archs, r.accuracy, r.scores):
            w.writerow([r.task, int(n), a, repr(float(acc)), "" if not np.isfinite(s) else repr(float(s))])
    write_atomic(path, buf.getvalue())
