"""What an aging-evolution search found, judged against the benchmark table, and how it is written.

The chosen cell is the best-scored cell the search saw; the table gives its true
accuracy, its rank among *all* the table's cells (1 = best) and the table's optimum.
A search is judged by the final *test* accuracy NAS papers report, not by the
validation label fitness tasks default to.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eznas_store.errors import InvalidArchError
from eznas_store.outputs import ensure_dir, json_safe, package_versions, write_atomic
from eznas_store.archsearch.aging import AgingEvolution, Evaluation
from eznas_store.archsearch.config import ArchSearchConfig
from eznas_store.sources import DEFAULT_ACCURACY_COLUMNS, BenchmarkTable, default_accuracy_column

__all__ = [
    "HISTORY_FILE",
    "RESULT_FILE",
    "RunCost",
    "SearchResult",
    "format_result",
    "judge",
    "judged_accuracy_column",
    "rank_in_table",
    "write_result",
]

RESULT_FILE = "search.json"
HISTORY_FILE = "history.csv"


def rank_in_table(accuracies: np.ndarray, value: float) -> tuple[int | None, float | None]:
    """Rank (1 = best; ties share the best rank) and percentile of ``value`` among ``accuracies``.

    The percentile is the percentage of the table's cells at most as accurate as
    ``value`` (the best cell is at 100). NaN accuracies in the table are left out;
    a NaN ``value`` has no rank.
    """
    acc = np.asarray(accuracies, dtype=np.float64)
    acc = acc[np.isfinite(acc)]
    if not math.isfinite(value) or acc.size == 0:
        return None, None
    rank = 1 + int(np.count_nonzero(acc > value))
    percentile = 100.0 * float(np.count_nonzero(acc <= value)) / acc.size
    return rank, percentile


@dataclass
class SearchResult:
    """What a search found, how good it truly is, and what it cost."""

    config: ArchSearchConfig
    fitness: str  # the proxy or program searched with
    kind: str  # "proxy", "statistics" or "proxies"
    cell: str | None  # best-scored cell (None if every score failed)
    score: float
    accuracy: float  # of ``cell`` in the table (NaN if the table lacks it)
    rank: int | None  # among all the table's cells, 1 = best
    percentile: float | None
    accuracy_column: str
    table_cells: int
    optimum_accuracy: float
    optimum_cell: str
    best_visited_accuracy: float  # most accurate cell the search scored (what a perfect proxy would pick)
    best_visited_cell: str | None
    evaluations: int
    reference_evaluations: int
    cycles: int
    cache_hits: int
    wall_seconds: float
    setup_seconds: float  # data, table, reference sample
    evaluation_seconds: float  # inside the scorer, search cells only
    stop_reason: str
    batch_size: int
    device: str
    history: list[Evaluation] = field(repr=False, default_factory=list)
    history_accuracy: list[float] = field(repr=False, default_factory=list)

    @property
    def cells_per_second(self) -> float:
        return self.evaluations / self.evaluation_seconds if self.evaluation_seconds > 0 else math.nan

    def to_json(self) -> dict[str, Any]:
        """The result as plain JSON values (NaN → null); the history is written separately."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("history", "history_accuracy"):
                continue
            v = getattr(self, f.name)
            out[f.name] = dataclasses.asdict(v) if f.name == "config" else v
        out["cells_per_second"] = self.cells_per_second
        return json_safe(out)


def write_result(result: SearchResult, out: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``search.json`` (result + config + versions) and ``history.csv`` (every scored cell) in ``out``."""
    d = Path(out)
    ensure_dir(d)
    doc = result.to_json() | {"versions": package_versions()}
    res_path, hist_path = d / RESULT_FILE, d / HISTORY_FILE
    write_atomic(res_path, json.dumps(doc, indent=2, allow_nan=False) + "\n")
    with open(hist_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["step", "cell", "score", "seconds", "accuracy", "reason"])
        for ev, acc in zip(result.history, result.history_accuracy):
            w.writerow([ev.step, ev.cell, repr(ev.score), f"{ev.seconds:.3f}",
                        "" if not math.isfinite(acc) else repr(acc), ev.reason or ""])
    return res_path, hist_path


def format_result(result: SearchResult) -> str:
    """One paragraph: what was chosen, how good it truly is, and what it cost."""
    r = result
    budget = []
    if r.config.budget is not None:
        budget.append(f"{r.config.budget:g} s")
    if r.config.max_evaluations is not None:
        budget.append(f"{r.config.max_evaluations} cells")
    head = (f"Aging evolution on {r.config.space} with {r.kind} {r.fitness!r} (population {r.config.population}, "
            f"sample {r.config.sample}, seed {r.config.seed}, budget {' / '.join(budget)}) scored "
            f"{r.evaluations} distinct cells in {r.wall_seconds:.1f} s "
            f"({r.cells_per_second:.2f} cells/s, {r.cycles} cycles, {r.cache_hits} cache hits")
    if r.reference_evaluations:
        head += f", plus a reference sample of {r.reference_evaluations} cells"
    head += f"; stopped: {r.stop_reason})."
    if r.cell is None:
        return head + " Every score failed, so no cell was chosen."
    body = f" It chose {r.cell} (score {r.score:.6g})"
    if r.rank is None:
        body += ", which is not in the benchmark table, so its accuracy is unknown."
    else:
        body += (f": {r.accuracy_column} {r.accuracy:.2f}, rank {r.rank} of {r.table_cells} "
                 f"(percentile {r.percentile:.2f}); the table's optimum is {r.optimum_accuracy:.2f}.")
    if math.isfinite(r.best_visited_accuracy):
        body += f" The most accurate cell it scored reached {r.best_visited_accuracy:.2f}."
    return head + body


def _table_rows(archs: tuple[str, ...], canonical: Callable[[str], str]) -> dict[str, int]:
    """Row of each table cell under its canonical string (the search's spelling)."""
    rows: dict[str, int] = {}
    for i, a in enumerate(archs):
        try:
            rows.setdefault(canonical(a), i)
        except InvalidArchError:
            continue  # not a cell of this space: it cannot be chosen, but still counts in the ranks
    return rows


def judged_accuracy_column(table: BenchmarkTable, dataset: str) -> str:
    """A search is judged by the final *test* accuracy NAS papers report (NB201 CIFAR-10
    optimum 94.37), not by the validation label fitness tasks default to."""
    key = str(dataset).strip().lower()
    for name in DEFAULT_ACCURACY_COLUMNS.get(key, ()):
        if name.endswith("_test") and name in table.columns:
            return name
    return default_accuracy_column(table, dataset)


@dataclass(frozen=True)
class RunCost:
    """What a run spent, as :func:`eznas_store.archsearch.run.run_search` measured it."""

    wall_seconds: float
    setup_seconds: float
    stop_reason: str
    batch_size: int
    device: str
    reference_evaluations: int


def judge(cfg: ArchSearchConfig, evo: AgingEvolution, table: BenchmarkTable, acc_col: str, *,
          canonical: Callable[[str], str], fitness: str, kind: str, cost: RunCost) -> SearchResult:
    """The search's outcome against the table: chosen cell, its accuracy and rank, the optimum."""
    acc = np.asarray(table.column(acc_col), dtype=np.float64)
    rows = _table_rows(table.archs, canonical)
    hist_acc = [float(acc[rows[ev.cell]]) if ev.cell in rows else math.nan for ev in evo.history]
    best = evo.best
    accuracy = float(acc[rows[best.cell]]) if best is not None and best.cell in rows else math.nan
    rank, percentile = rank_in_table(acc, accuracy)
    finite = np.isfinite(acc)
    opt = int(np.flatnonzero(finite)[np.argmax(acc[finite])]) if finite.any() else 0
    visited = [(a, ev.cell) for a, ev in zip(hist_acc, evo.history) if math.isfinite(a)]
    bv_acc, bv_cell = max(visited, key=lambda t: t[0]) if visited else (math.nan, None)
    return SearchResult(
        config=cfg, fitness=fitness, kind=kind,
        cell=best.cell if best else None, score=best.score if best else math.nan,
        accuracy=accuracy, rank=rank, percentile=percentile, accuracy_column=acc_col,
        table_cells=int(finite.sum()), optimum_accuracy=float(acc[opt]) if finite.any() else math.nan,
        optimum_cell=table.archs[opt] if len(table) else "",
        best_visited_accuracy=bv_acc, best_visited_cell=bv_cell,
        evaluations=evo.evaluations, reference_evaluations=cost.reference_evaluations,
        cycles=evo.cycles, cache_hits=evo.cache_hits, wall_seconds=cost.wall_seconds,
        setup_seconds=cost.setup_seconds, evaluation_seconds=evo.eval_seconds,
        stop_reason=cost.stop_reason, batch_size=cost.batch_size, device=cost.device,
        history=list(evo.history), history_accuracy=hist_acc,
    )
