"""What an evolved program reads, and how a population of them gets its fitness.

Two scorers with one interface (``terminals``/``ops``/``terminal_set`` for the
representation, ``describe``, ``fitness``, ``peak_rss_mb``, ``finish``, ``close``), so the
loop does not care which: the 22 statistics of stores, scored chunk by chunk on Dask
workers; or the columns of network x proxy tables, scored in-process (Phan & Luong 2025).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from eznas_store.errors import ConfigError
from eznas_store.fitness.correlations import Fitness
from eznas_store.fitness.engine import Engine, load_task
from eznas_store.fitness.matrix import cross_problem_matrix, write_matrix
from eznas_store.fitness.problems import load_problems, split_problem
from eznas_store.fitness.proxy_table_scorer import ProxyTableScorer
from eznas_store.fitness.scores import summarise, write_scores_csv
from eznas_store.programs.named import NAMED_PROGRAMS
from eznas_store.programs.ops import OPS
from eznas_store.programs.proxy_ops import PROXY_OPS
from eznas_store.programs.tree import Program
from eznas_store.terminals import TERMINALS
from eznas_store.outputs import ensure_dir


class StatisticsPopulationScorer:
    """Programs over the 22 statistics of stores, scored chunk by chunk on Dask workers."""

    terminal_set = "statistics"
    terminals = TERMINALS
    ops = OPS

    def __init__(self, stores: Sequence[str], *, max_networks: int | None, workers: int,
                 scheduler: str | None, progress: bool, combine: str, abs_tau: bool, to_scalar: str,
                 accuracy_columns: Sequence[str] | None = None) -> None:
        self.combine, self.abs_tau, self.to_scalar = combine, abs_tau, to_scalar
        # one task per store and label column (None: the column chosen at ingest)
        self.tasks = [load_task(u, max_networks=max_networks, accuracy_column=c)
                      for u in stores for c in (accuracy_columns or (None,))]
        self.engine = Engine(workers=workers, scheduler=scheduler, progress=progress)

    def describe(self) -> list[dict]:
        """Tasks for run.json; the collection structure lets reports name the variant."""
        return [{"name": t.name, "n_networks": t.n, "url": t.url, "structure": t.structure, "label": t.label}
                for t in self.tasks]

    def fitness(self, programs: Sequence[Program], desc: str) -> list[Fitness]:
        fits, _ = self.engine.fitness(list(programs), self.tasks, combine=self.combine,
                                      abs_tau=self.abs_tau, to_scalar=self.to_scalar, desc=desc)
        return fits

    def peak_rss_mb(self) -> float:
        return self.engine.worker_peak_rss_mb  # measured by the engine after its last scoring call

    def finish(self, out: Path, programs: list[Program]) -> None:
        """Per-network scores of the saved programs and of EZNAS-A, one CSV each."""
        programs = programs + [dataclasses.replace(NAMED_PROGRAMS["eznas-a"], name="eznas-a")]
        res = self.engine.score(programs, self.tasks, desc="final scores")
        ensure_dir(out / "scores")
        for k, p in enumerate(programs):
            results = [summarise(p.name, t.name, res.scores[ti][k], t.accuracy, t.archs, t.networks,
                                 res.reasons[ti][k], label=t.label) for ti, t in enumerate(self.tasks)]
            write_scores_csv(out / "scores" / f"{p.name}.csv", results)

    def close(self) -> None:
        self.engine.close()


class ProxyTablePopulationScorer:
    """Programs over the columns of network x proxy tables (stores ingested with proxies,
    or NAS-Bench-Suite-Zero zc files): each training problem is split, seeded, into
    ``train_networks`` to evolve on and the rest to test on; problems not chosen for
    training (``problems``: all when empty) are tested on whole."""

    terminal_set = "proxies"
    ops = PROXY_OPS

    def __init__(self, sources: Sequence[str], *, problems: Sequence[str], train_networks: int, seed: int,
                 combine: str, abs_tau: bool) -> None:
        loaded = [p for src in sources for p in load_problems(src)]
        names = [p.name for p in loaded]
        if len(set(names)) != len(names):
            raise ConfigError(f"problem names repeat across sources: {', '.join(names)}")
        unknown = [n for n in problems if n not in names]
        if unknown:
            raise ConfigError(f"--problems {', '.join(unknown)}: not in the sources (they hold {', '.join(names)})")
        chosen = set(problems or names)
        self.train, self.test = [], []
        for p in loaded:
            if p.name in chosen:
                tr, te = split_problem(p, train_networks, seed)
                self.train.append(tr)
                self.test.append(te)
            else:
                self.test.append(p)
        self.scorer = ProxyTableScorer(self.train, combine=combine, abs_tau=abs_tau)
        self.terminals = tuple(self.scorer.terminals)
        if not self.terminals:
            raise ConfigError("the training problems share no proxy column")

    def describe(self) -> list[dict]:
        return ([{"name": p.name, "n_networks": len(p.archs), "role": "train", "source": p.source}
                 for p in self.train]
                + [{"name": p.name, "n_networks": len(p.archs), "role": "test", "source": p.source}
                   for p in self.test])

    def fitness(self, programs: Sequence[Program], desc: str) -> list[Fitness]:
        return self.scorer.fitness(list(programs), desc=desc)

    @staticmethod
    def peak_rss_mb() -> float:
        return 0.0

    def finish(self, out: Path, programs: list[Program]) -> None:
        """The cross-problem matrix (held-out networks and problems) beside the best single proxy."""
        write_matrix(cross_problem_matrix({p.name: p for p in programs}, self.test), out / "cross_problem")

    def close(self) -> None:
        pass
