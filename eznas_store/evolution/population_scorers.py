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

import numpy as np

from eznas_store.errors import ConfigError
from eznas_store.evaluate import Chunk, decoded_bytes, read_chunk
from eznas_store.evaluate import evaluate_population
from eznas_store.fitness import Fitness, population_fitness
from eznas_store.fitness import Engine, Task, load_task
from eznas_store.fitness import default_cache_budget
from eznas_store.fitness import cross_problem_matrix, write_matrix
from eznas_store.fitness import load_problems, split_problem
from eznas_store.fitness import ProxyTableScorer
from eznas_store.fitness import summarise, write_scores_csv
from eznas_store.programs import NAMED_PROGRAMS
from eznas_store.programs import OPS
from eznas_store.programs import PROXY_OPS
from eznas_store.programs import Program
from eznas_store.terminals import TERMINALS
from eznas_store.outputs import ensure_dir
from eznas_store.evolution.split import parse_split, race_parts, split_task

#: networks of the equivalence cache's probe (consecutive, in one chunk of the first task)
PROBE_NETWORKS = 8


class StatisticsPopulationScorer:
    """Programs over the 22 statistics of stores, scored chunk by chunk on Dask workers."""

    terminal_set = "statistics"
    terminals = TERMINALS
    ops = OPS

    def __init__(self, stores: Sequence[str], *, max_networks: int | None, workers: int,
                 scheduler: str | None, progress: bool, combine: str, abs_tau: bool, to_scalar: str,
                 accuracy_columns: Sequence[str] | None = None, split: str | None = None, seed: int = 0,
                 test_stores: Sequence[str] = (), racing: float = 0.0,
                 cache_mb: tuple[float | None, float | None] | None = None) -> None:
        self.combine, self.abs_tau, self.to_scalar = combine, abs_tau, to_scalar
        columns = accuracy_columns or (None,)
        # one task per store and label column (None: the column chosen at ingest)
        self.tasks = [load_task(u, max_networks=max_networks, accuracy_column=c) for u in stores for c in columns]
        #: fitness reads ``train``; the hall of fame ``validation``; final programs ``test``
        self.train, self.validation, self.test = list(self.tasks), [], []
        if split:
            parts = parse_split(split)
            cut = [split_task(t, parts, seed, i) for i, t in enumerate(self.tasks)]
            self.train = [tr for tr, _, _ in cut]
            self.validation = [va for _, va, _ in cut if va is not None]
            self.test = [te for _, _, te in cut if te is not None]
        self.test_store_tasks = [load_task(u, accuracy_column=c) for u in test_stores for c in columns]
        self.test += self.test_store_tasks
        self.roles = bool(split or test_stores)
        #: racing: per train task (first chunks, the rest or None)
        self.race = [race_parts(t, racing, seed, i) for i, t in enumerate(self.train)] if racing > 0 else []
        self._probe: tuple[Chunk, np.ndarray] | None = None
        #: the cache bounds chosen and why (run.json ``caches``); None: caches off
        self.cache_budget = None if cache_mb is None else self._cache_budget(cache_mb, workers)
        caches = {} if self.cache_budget is None else {"chunk_cache_mb": self.cache_budget["chunk_mb"],
                                                       "subtree_cache_mb": self.cache_budget["subtree_mb"]}
        self.engine = Engine(workers=workers, scheduler=scheduler, progress=progress, **caches)

    def _cache_budget(self, cache_mb: tuple[float | None, float | None], workers: int) -> dict:
        """Bounds of the chunk and subtree caches (None: sized to the chunks this run scores
        and to the machine, shared by the processes that score)."""
        ranges: dict[str, set[tuple[int, int]]] = {}
        for t in self.tasks + self.test_store_tasks:
            ranges.setdefault(t.url, set()).update(t.chunks)
        urls = list(ranges)
        return default_cache_budget(urls, cache_mb[0], cache_mb[1], chunks=[sorted(ranges[u]) for u in urls],
                                    processes=max(workers, 1))

    def describe(self) -> list[dict]:
        """Tasks for run.json; the collection structure lets reports name the variant. With a
        split or test stores each says its role (train, validation, test)."""
        def entry(t, role=None) -> dict:
            d = {"name": t.name, "n_networks": t.n, "url": t.url, "structure": t.structure, "label": t.label}
            return {**d, "role": role} if role else d

        if not self.roles:
            return [entry(t) for t in self.tasks]
        return ([entry(t, "train") for t in self.train] + [entry(t, "validation") for t in self.validation]
                + [entry(t, "test") for t in self.test])

    def fitness(self, programs: Sequence[Program], desc: str) -> list[Fitness]:
        """Fitness on the train tasks (all usable networks without a split)."""
        return self.fitness_on(programs, self.train, desc)

    def fitness_on(self, programs: Sequence[Program], tasks: Sequence[Task], desc: str) -> list[Fitness]:
        fits, _ = self.engine.fitness(list(programs), list(tasks), combine=self.combine,
                                      abs_tau=self.abs_tau, to_scalar=self.to_scalar, desc=desc)
        return fits

    def probe_scores(self, programs: Sequence[Program]) -> np.ndarray:
        """Scores (P, n) of the programs on a small fixed probe: up to :data:`PROBE_NETWORKS`
        train networks of the first task, from one range of one chunk read once and kept
        (in-process). A program invalid on the probe is invalid on the train networks."""
        if self._probe is None:
            task, train = self.tasks[0], self.train[0]
            first = int(train.networks[0])
            hi = next(h for lo, h in task.chunks if lo <= first < h)
            usable, wanted = set(task.networks.tolist()), set(train.networks.tolist())
            last, taken = first, []
            while last < hi and last in usable and len(taken) < PROBE_NETWORKS:
                if last in wanted:
                    taken.append(last - first)
                last += 1
            store = self.engine.caches.stores.get(task.url)
            chunk = read_chunk(store, first, last)
            chunk.key = ("probe", task.url, first, last)
            # held for the run: it comes out of the chunk cache's bound
            self.engine.caches.chunks.pin(chunk, decoded_bytes(store, first, last, derived=False))
            self._probe = (chunk, np.array(taken))
        chunk, columns = self._probe
        res = evaluate_population(list(programs), chunk, to_scalar=self.to_scalar,
                                  shape_cache=self.engine.caches.shapes,
                                  subtree_cache=self.engine.caches.subtrees)
        chunk.forget_derived()  # held as read, like the chunk cache's chunks
        return res.scores[:, columns]

    def race_fitness(self, programs: Sequence[Program], cutoff: float, desc: str
                     ) -> tuple[list[Fitness], list[bool]]:
        """Fitness by racing: every program on the first chunks of each train task; those whose
        partial fitness reaches ``cutoff`` also on the rest (their full train fitness); the
        others keep the partial fitness and are marked raced out (True)."""
        programs = list(programs)
        if not self.race or all(rest is None for _, rest in self.race):
            return self.fitness(programs, desc), [False] * len(programs)
        first = [f for f, _ in self.race]
        part = self.engine.score(programs, first, to_scalar=self.to_scalar, desc=f"{desc} (race)")
        fits = population_fitness(part.scores, [t.accuracy for t in first], combine=self.combine,
                                  abs_tau=self.abs_tau, reasons=part.reasons)
        go = [i for i, f in enumerate(fits) if f.valid and f.value >= cutoff]
        raced = [True] * len(programs)
        if go:
            rest_at = [k for k, (_, r) in enumerate(self.race) if r is not None]
            rest = self.engine.score([programs[i] for i in go], [self.race[k][1] for k in rest_at],
                                     to_scalar=self.to_scalar, desc=desc)
            scores, accs, reasons = [], [], []
            for k, (f, r) in enumerate(self.race):
                s, acc, why = part.scores[k][go], f.accuracy, [part.reasons[k][i] for i in go]
                if r is not None:
                    j = rest_at.index(k)
                    s, acc = np.concatenate([s, rest.scores[j]], axis=1), np.concatenate([acc, r.accuracy])
                    why = [a or b for a, b in zip(why, rest.reasons[j])]
                scores.append(s)
                accs.append(acc)
                reasons.append(why)
            full = population_fitness(scores, accs, combine=self.combine, abs_tau=self.abs_tau, reasons=reasons)
            for i, f in zip(go, full):
                fits[i], raced[i] = f, False
        return fits, raced

    def peak_rss_mb(self) -> float:
        return self.engine.worker_peak_rss_mb  # measured by the engine after its last scoring call

    def finish(self, out: Path, programs: list[Program]) -> None:
        """Per-network scores of the saved programs and of EZNAS-A, one CSV each (every usable
        network of each store, and of each test store)."""
        programs = programs + [dataclasses.replace(NAMED_PROGRAMS["eznas-a"], name="eznas-a")]
        tasks = self.tasks + self.test_store_tasks
        res = self.engine.score(programs, tasks, desc="final scores")
        self.engine.caches.empty()  # the run's last scoring: the round-off check after it reads its own chunks
        ensure_dir(out / "scores")
        for k, p in enumerate(programs):
            results = [summarise(p.name, t.name, res.scores[ti][k], t.accuracy, t.archs, t.networks,
                                 res.reasons[ti][k], label=t.label) for ti, t in enumerate(tasks)]
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
                 combine: str, abs_tau: bool, fitness: str = "tau", graph_features: bool = False) -> None:
        loaded = [p for src in sources for p in load_problems(src, graph_features=graph_features)]
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
        self.scorer = ProxyTableScorer(self.train, combine=combine, abs_tau=abs_tau, fitness=fitness)
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
