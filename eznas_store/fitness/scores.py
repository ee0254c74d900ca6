"""Per-network scores of one program on one task, summarised by tau/rho and written as CSV.

What ``score`` prints and what a run directory's ``scores/*.csv`` hold, whichever way the
scores were computed (from a store by the Engine, or storeless). Every result names its
program and its label (the accuracy column its tau/rho are against): in the printed line,
in each CSV row and in the ``--json`` form (``result_json``; numbers unrounded, NaN null).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from typing import Any
from dataclasses import dataclass

import numpy as np

from eznas_store.fitness.correlations import kendall_tau, spearman_rho
from eznas_store.outputs import ensure_dir, write_atomic


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
    #: the accuracy column the scores are correlated with ("" where unknown)
    label: str = ""

    def line(self) -> str:
        against = f" against {self.label}" if self.label else ""
        return (f"{self.program} on {self.task}{against}: Kendall tau {self.tau:.4f}, "
                f"Spearman rho {self.rho:.4f} "
                f"({self.n_valid}/{self.n} networks valid)" + (f"; {self.reason}" if self.reason else ""))


def summarise(program_name: str, task_name: str, scores: np.ndarray, accuracy: np.ndarray,
              archs: Sequence[str], networks: np.ndarray, reason: str | None = None, *,
              label: str = "") -> ScoreResult:
    """τ and ρ over the networks where the program is valid (NaN if fewer than 2)."""
    ok = np.isfinite(scores)
    tau = kendall_tau(scores[ok], accuracy[ok]) if ok.sum() >= 2 else float("nan")
    rho = spearman_rho(scores[ok], accuracy[ok]) if ok.sum() >= 2 else float("nan")
    return ScoreResult(program_name, task_name, tau, rho, int(len(scores)), int(ok.sum()), scores,
                       accuracy, tuple(archs), networks, reason, label)


def write_scores_csv(path: str | os.PathLike, results: Sequence[ScoreResult]) -> None:
    """``program,task,label,network,arch,accuracy,score`` rows (the run-directory and
    ``score --out`` format): rows of several programs or labels stay apart."""
    ensure_dir(os.path.dirname(os.path.abspath(path)))
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["program", "task", "label", "network", "arch", "accuracy", "score"])
    for r in results:
        for n, a, acc, s in zip(r.networks, r.archs, r.accuracy, r.scores):
            w.writerow([r.program, r.task, r.label, int(n), a, repr(float(acc)),
                        "" if not np.isfinite(s) else repr(float(s))])
    write_atomic(path, buf.getvalue())


def json_ready(value: Any) -> Any:
    """``value`` as plain JSON values: numpy scalars and arrays unpacked, NaN/Inf as None."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_ready(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def json_text(value: Any) -> str:
    """``json_ready(value)`` as strict JSON text (what ``--json`` prints)."""
    return json.dumps(json_ready(value), indent=2, allow_nan=False)


def result_json(r: ScoreResult) -> dict[str, Any]:
    """A result's summary for ``--json``: tau/rho unrounded, NaN as null (per-network rows: ``--out``)."""
    return json_ready({"program": r.program, "task": r.task, "label": r.label, "kendall_tau": r.tau,
                       "spearman_rho": r.rho, "n": r.n, "n_valid": r.n_valid, "reason": r.reason})
