"""``eznas-store search``: one aging-evolution run under a budget, from config to judged result.

The budget is a wall-clock duration (``budget="15m"``, counted from the call, data
loading and reference sample included; an evaluation that would not finish in time at
the mean cost so far is not started) and/or ``max_evaluations`` (distinct cells scored;
cache hits and reference cells do not count). A space that cannot be enumerated (DARTS)
is searched over the benchmark table's cells only, so the chosen cell always has a true
accuracy (:mod:`eznas_store.archsearch.table_space`). A converged population can only revisit
cells it has scored (free, but it would spin until the budget ends): after ``patience``
such cycles in a row (default 10,000, well under a second) the search stops early.

Example
-------
>>> cfg = ArchSearchConfig(proxy="synflow", benchmark="nb201_accuracies.csv",
...                    data_root="cifar10-images", budget="15m", out="runs/s0")  # doctest: +SKIP
>>> print(format_result(run_search(cfg)))  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from eznas_store.collect import deterministic, resolve_device
from eznas_store.errors import ConfigError
from eznas_store.archsearch.aging import AgingEvolution, Evaluation
from eznas_store.archsearch.config import DEFAULT_PROXY_BATCH, DEFAULT_STATISTICS_BATCH, ArchSearchConfig
from eznas_store.archsearch.result import RunCost, SearchResult, judge, judged_accuracy_column, write_result
from eznas_store.archsearch.table_space import table_space
from eznas_store.archsearch.cell_scorers import (CellScorer, CellScoringSetup, check_fitness, load_fitness,
                                            make_cell_scorer)
from eznas_store.sources import get_spec, sample_batch
from eznas_store.sources import get_space
from eznas_store.sources import SearchSpace
from eznas_store.sources import BenchmarkTable, read_benchmark
from eznas_store.outputs import ensure_dir

__all__ = ["run_search"]


@dataclass(frozen=True)
class _Prepared:
    """Everything a run needs before its first cell: table, batch and scorer."""

    space: SearchSpace
    kind: str
    batch_size: int
    table: BenchmarkTable
    acc_col: str
    device: torch.device
    scorer: CellScorer


def _prepare(cfg: ArchSearchConfig) -> _Prepared:
    """Read the table and the batch and build the scorer. Everything the options and the table
    can refute is checked before the batch is read: the fitness, every row a cell of the space,
    a judging column with an accuracy."""
    device = resolve_device(cfg.device)
    kind, fitness, ops = load_fitness(cfg.proxy)
    default = DEFAULT_STATISTICS_BATCH if kind == "statistics" else DEFAULT_PROXY_BATCH
    batch_size = cfg.batch_size or default
    table = read_benchmark(cfg.benchmark)
    space = table_space(get_space(cfg.space), table)  # DARTS: the table's cells only
    check_fitness(kind, fitness, ops, cfg, space)
    acc_col = cfg.accuracy_column or judged_accuracy_column(table, cfg.dataset)
    if not np.isfinite(table.column(acc_col)).any():  # an unknown column fails here too
        raise ConfigError(f"column {acc_col!r} of {cfg.benchmark} holds no finite accuracy, so no cell the "
                          "search chooses could be judged (give --accuracy-column)")
    if cfg.out:
        ensure_dir(cfg.out)  # a bad --out fails now, not after the budget is spent
    spec = get_spec(cfg.dataset)
    batch = sample_batch(cfg.dataset, cfg.data_root, batch_size=batch_size, seed=cfg.seed,
                         image_size=cfg.image_size or spec.image_size)
    setup = CellScoringSetup(images=batch.images, labels=batch.labels, num_classes=spec.num_classes,
                             C=cfg.C or space.skeleton["C"], N=cfg.N or space.skeleton["N"], device=device,
                             cfg=cfg, space=space)
    return _Prepared(space=space, kind=kind, batch_size=batch_size, table=table, acc_col=acc_col,
                     device=device, scorer=make_cell_scorer(kind, setup, fitness, ops))


def _progress_bar(cfg: ArchSearchConfig) -> Any:
    """Cells scored out of ``max_evaluations``, else seconds out of the time budget."""
    if cfg.max_evaluations is not None:
        return tqdm(total=cfg.max_evaluations, desc="search", unit="cell", disable=not cfg.progress)
    return tqdm(total=round(cfg.budget), desc="search", unit="s", disable=not cfg.progress,
                bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s {postfix}")


def _stop_reason(cfg: ArchSearchConfig, evo: AgingEvolution, elapsed: float) -> str | None:
    """Why the run must stop before the next cycle, or None to go on."""
    if cfg.max_evaluations is not None and evo.evaluations >= cfg.max_evaluations:
        return "evaluation budget spent"
    if cfg.budget is not None:
        mean = evo.eval_seconds / evo.evaluations if evo.evaluations else 0.0
        if elapsed + mean > cfg.budget:
            return "time budget spent"
    if evo.exhausted:
        return "every cell of the space scored"
    if cfg.patience and evo.stall >= cfg.patience:
        return f"converged: {cfg.patience} cycles in a row met no unseen cell"
    return None


def _evolve(cfg: ArchSearchConfig, evo: AgingEvolution, elapsed: Callable[[], float]) -> str:
    """Step until the budget is spent; returns why it stopped."""
    with _progress_bar(cfg) as bar:
        shown: Evaluation | None = None
        while True:
            stop = _stop_reason(cfg, evo, elapsed())
            if stop is not None:
                return stop
            before = evo.evaluations
            evo.step()
            if cfg.max_evaluations is not None:
                bar.update(evo.evaluations - before)
            else:
                bar.update(min(elapsed(), cfg.budget) - bar.n)
            if evo.best is not shown and evo.best is not None:
                shown = evo.best
                bar.set_postfix_str(f"best {shown.score:.5g} {shown.cell}", refresh=False)


def run_search(cfg: ArchSearchConfig) -> SearchResult:
    """Run one aging-evolution search, write it to ``cfg.out`` (if given) and return the result."""
    t0 = time.perf_counter()

    def elapsed() -> float:
        return time.perf_counter() - t0

    run = _prepare(cfg)
    rng = np.random.default_rng(cfg.seed)
    with deterministic(cfg.threads):
        run.scorer.prepare(rng)
        evo = AgingEvolution(run.scorer, rng=rng, population_size=cfg.population, sample_size=cfg.sample,
                             maximize=cfg.direction == "max", start=t0, space=run.space)
        setup_seconds = elapsed()
        stop_reason = _evolve(cfg, evo, elapsed)
    cost = RunCost(wall_seconds=elapsed(), setup_seconds=setup_seconds, stop_reason=stop_reason,
                   batch_size=run.batch_size, device=str(run.device),
                   reference_evaluations=run.scorer.reference_evaluations)
    if cfg.proxy_init is None and run.scorer.proxy_init is not None:  # the result says which init was used
        cfg = dataclasses.replace(cfg, proxy_init=run.scorer.proxy_init)
    result = judge(cfg, evo, run.table, run.acc_col, canonical=run.space.canonical,
                   fitness=run.scorer.name, kind=run.kind, cost=cost)
    if cfg.out:
        write_result(result, cfg.out)
    return result
