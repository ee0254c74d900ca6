"""``eznas-store evolve``: DEAP (μ+λ) genetic programming of proxy programs over stores.

Defaults are the EZNAS appendix 1.7: population 50, μ 25, λ 50, crossover 0.4, mutation
0.4 (DEAP ``varOr``), tournament 4, tree depth 2..10, 15 generations. Fitness is Kendall
τ on each task (a store), combined by min (or mean), optionally |τ|.

Design choices, with the reasons:

* DEAP classes (``Fitness``, ``Individual``) are defined once here, not through
  ``creator`` (which writes classes into module globals and breaks unpickling on
  workers); workers never see them anyway — they get program JSON.
* Programs are evaluated by the interpreter in ``evaluate.py``; DEAP's ``gp.compile``
  (``eval``) is never called. Primitive callables in the set are placeholders.
* DEAP's operators draw from the global ``random`` module. The run owns one
  ``random.Random`` state that is swapped in around every DEAP call and saved in each
  checkpoint, so a resumed run continues the same random stream and ends with the same
  programs, and the caller's global state is left as it was.
* A checkpoint (JSON, written atomically) after every generation holds the population,
  its fitnesses, the hall of fame, the log and the random state; ``--resume`` continues.
* Fitness of a program is cached by its canonical key: GP re-creates identical trees often.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import math
import os
import random
import resource
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from deap import base, gp, tools

from .errors import ConfigError
from .fitness import Fitness, selection_value
from .gp.primitives import OPS
from .gp.program import NAMED_PROGRAMS, Program, from_prefix, program_from_json, program_to_json, save_program
from .score import Engine, Task, load_task, summarise, write_scores_csv
from .store import package_versions
from .terminals import TERMINALS

CHECKPOINT = "checkpoint.json"


@dataclass(frozen=True, kw_only=True)
class EvolveConfig:
    """One evolution run; written into ``run.json`` and the checkpoint."""

    stores: tuple[str, ...]
    out: str
    population: int = 50
    mu: int = 25
    lambda_: int = 50
    cxpb: float = 0.4
    mutpb: float = 0.4
    tournament: int = 4
    min_depth: int = 2
    max_depth: int = 10
    generations: int = 15
    seed: int = 0
    combine: str = "min"
    abs_tau: bool = False
    to_scalar: str = "mean"
    workers: int = 2
    scheduler: str | None = None
    max_networks: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.stores:
            raise ConfigError("evolve needs at least one store")
        checks = [
            (self.population >= 2, f"--population must be >= 2, got {self.population}"),
            (1 <= self.mu, f"--mu must be >= 1, got {self.mu}"),
            (self.lambda_ >= 1, f"--lambda must be >= 1, got {self.lambda_}"),
            (0 <= self.cxpb and 0 <= self.mutpb and self.cxpb + self.mutpb <= 1,
             "--cxpb and --mutpb must be >= 0 and sum to at most 1 (DEAP varOr)"),
            (self.tournament >= 1, "--tournament must be >= 1"),
            (1 <= self.min_depth <= self.max_depth <= 17, "need 1 <= --min-depth <= --max-depth <= 17"),
            (self.generations >= 0, "--generations must be >= 0"),
            (self.combine in ("min", "mean"), "--combine must be min or mean"),
            (self.to_scalar in ("mean", "l2"), "--to-scalar must be mean or l2"),
            (self.workers >= 0, "--workers must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)


# ----------------------------------------------------------------------------- DEAP setup
class FitnessMax(base.Fitness):
    weights = (1.0,)


class Individual(gp.PrimitiveTree):
    """A DEAP tree with a fitness and the full ``Fitness`` record (taus, reason) beside it."""

    def __init__(self, content) -> None:
        super().__init__(content)
        self.fitness = FitnessMax()
        self.record: Fitness | None = None
        self.generation: int | None = None  # when this tree was first evaluated


def _placeholder(*args):  # pragma: no cover - never called: programs are interpreted
    raise RuntimeError("DEAP primitives are placeholders; evaluation goes through evaluate.py")


def primitive_set(terminals: Sequence[str] = TERMINALS) -> gp.PrimitiveSet:
    """The untyped primitive set: every op of the table and the 22 statistics."""
    pset = gp.PrimitiveSet("eznas", 0)
    for op in OPS.values():
        pset.addPrimitive(_placeholder, op.arity, name=op.name)
    for t in terminals:
        pset.addTerminal(t, name=t)
    return pset


def to_program(ind: gp.PrimitiveTree, to_scalar: str) -> Program:
    return Program(tree=from_prefix([node.name for node in ind]), to_scalar=to_scalar)


def from_program(program: Program, pset: gp.PrimitiveSet) -> Individual:
    nodes = []
    for name in program.tree.to_prefix():
        if name in pset.mapping:
            nodes.append(pset.mapping[name])
        else:
            nodes.append(next(t for t in pset.terminals[object] if t.name == name))
    return Individual(nodes)


def make_toolbox(cfg: EvolveConfig, pset: gp.PrimitiveSet) -> base.Toolbox:
    tb = base.Toolbox()
    tb.register("expr", gp.genHalfAndHalf, pset=pset, min_=cfg.min_depth, max_=cfg.max_depth)
    tb.register("individual", tools.initIterate, Individual, tb.expr)
    tb.register("population", tools.initRepeat, list, tb.individual)
    tb.register("select", tools.selTournament, tournsize=cfg.tournament)
    tb.register("mate", gp.cxOnePoint)
    tb.register("expr_mut", gp.genFull, min_=0, max_=2)
    tb.register("mutate", gp.mutUniform, expr=tb.expr_mut, pset=pset)
    limit = gp.staticLimit(key=lambda ind: ind.height, max_value=cfg.max_depth)
    tb.decorate("mate", limit)
    tb.decorate("mutate", limit)
    return tb


@contextlib.contextmanager
def _own_random(state: list) -> Iterator[None]:
    """Swap the run's random state into the global ``random`` (DEAP uses it), then back."""
    saved = random.getstate()
    random.setstate(_state_from_json(state[0]))
    try:
        yield
    finally:
        state[0] = _state_to_json(random.getstate())
        random.setstate(saved)


def _state_to_json(s) -> list:
    return [s[0], list(s[1]), s[2]]


def _state_from_json(s) -> tuple:
    return (s[0], tuple(s[1]), s[2])


# ----------------------------------------------------------------------------- the run
def _fitness_json(f: Fitness | None) -> dict | None:
    if f is None:
        return None
    nan = lambda x: None if x is None or (isinstance(x, float) and math.isnan(x)) else x  # noqa: E731
    return {"value": nan(f.value), "taus": [nan(x) for x in f.taus], "rhos": [nan(x) for x in f.rhos],
            "reason": f.reason, "valid_fraction": f.valid_fraction}


def _fitness_from_json(d: dict | None) -> Fitness | None:
    if d is None:
        return None
    f = lambda x: float("nan") if x is None else float(x)  # noqa: E731
    return Fitness(value=f(d["value"]), taus=tuple(f(x) for x in d["taus"]), rhos=tuple(f(x) for x in d["rhos"]),
                   reason=d.get("reason"), valid_fraction=float(d.get("valid_fraction", 0.0)))


def _atomic_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, allow_nan=False))
    os.replace(tmp, path)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class EvolveResult:
    out: Path
    best_final: Program
    best_ever: list[Program]
    generations: int
    seconds: float


class _Evaluator:
    """Fitness of individuals through the engine, with a cache by canonical program key."""

    def __init__(self, cfg: EvolveConfig, engine: Engine, tasks: Sequence[Task]) -> None:
        self.cfg, self.engine, self.tasks = cfg, engine, tasks
        self.cache: dict[str, Fitness] = {}

    def __call__(self, individuals: Sequence[Individual], desc: str, gen: int = 0) -> int:
        progs = [to_program(ind, self.cfg.to_scalar) for ind in individuals]
        todo: dict[str, Program] = {}
        for p in progs:
            if p.key() not in self.cache:
                todo.setdefault(p.key(), p)
        if todo:
            fits, _ = self.engine.fitness(list(todo.values()), self.tasks, combine=self.cfg.combine,
                                          abs_tau=self.cfg.abs_tau, to_scalar=self.cfg.to_scalar, desc=desc)
            self.cache.update(zip(todo, fits))
        for ind, p in zip(individuals, progs):
            rec = self.cache[p.key()]
            ind.record = rec
            ind.fitness.values = (selection_value(rec),)
            if getattr(ind, "generation", None) is None:
                ind.generation = gen
        return len(todo)


def run_evolve(cfg: EvolveConfig, *, resume: bool = False) -> EvolveResult:
    """Evolve, checkpointing every generation; with ``resume`` continue from the checkpoint."""
    out = Path(cfg.out)
    ckpt_path = out / CHECKPOINT
    if resume and not ckpt_path.exists():
        raise ConfigError(f"--resume: no checkpoint in {out} (start the run without --resume)")
    if not resume and ckpt_path.exists():
        raise ConfigError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "programs").mkdir(exist_ok=True)
    tasks = [load_task(u, max_networks=cfg.max_networks) for u in cfg.stores]
    pset = primitive_set()
    tb = make_toolbox(cfg, pset)
    t_start = time.perf_counter()
    run_meta = {
        "config": dataclasses.asdict(cfg), "stores": list(cfg.stores),
        "tasks": [{"name": t.name, "n_networks": t.n, "url": t.url} for t in tasks],
        "versions": package_versions(),
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(), "finished": None, "seconds": None,
    }
    log_path = out / "generations.jsonl"

    def individuals_from(entries) -> list[Individual]:
        pop = []
        for e in entries:
            ind = from_program(program_from_json(e["program"]), pset)
            ind.record = _fitness_from_json(e["fitness"])
            ind.generation = e.get("generation")
            if ind.record is not None:
                ind.fitness.values = (selection_value(ind.record),)
            pop.append(ind)
        return pop

    with Engine(workers=cfg.workers, scheduler=cfg.scheduler, progress=cfg.progress) as engine:
        evaluate = _Evaluator(cfg, engine, tasks)
        if resume:
            ck = json.loads(ckpt_path.read_text())
            if ck["config"] != json.loads(json.dumps(dataclasses.asdict(cfg))) and not _compatible(ck["config"], cfg):
                raise ConfigError(f"{out}: the checkpoint was made with other options; resume with the same ones")
            rng_state = [ck["random_state"]]
            population = individuals_from(ck["population"])
            hof_entries = individuals_from(ck["hall_of_fame"])
            start_gen = ck["generation"] + 1
            evaluate.cache.update({k: _fitness_from_json(v) for k, v in ck.get("cache", {}).items()})
            run_meta["started"] = ck.get("started", run_meta["started"])
            # drop log lines of generations the checkpoint does not hold (killed mid-write)
            if log_path.exists():
                keep = [ln for ln in log_path.read_text().splitlines() if _log_gen(ln) <= ck["generation"]]
                log_path.write_text("".join(ln + "\n" for ln in keep))
        else:
            r = random.Random(cfg.seed)
            rng_state = [_state_to_json(r.getstate())]
            with _own_random(rng_state):
                population = tb.population(n=cfg.population)
            hof_entries = []
            start_gen = 0
            log_path.write_text("")
        _atomic_json(out / "run.json", run_meta)
        hof = tools.HallOfFame(2, similar=lambda a, b: str(a) == str(b))
        if hof_entries:
            hof.update(hof_entries)

        from tqdm.auto import tqdm

        with tqdm(total=cfg.generations + 1, initial=start_gen, desc="evolve", unit="gen",
                  disable=not cfg.progress) as bar:
            for gen in range(start_gen, cfg.generations + 1):
                t0 = time.perf_counter()
                if gen == 0:
                    evaluated = evaluate(population, desc="gen 0", gen=0)
                    hof.update(population)
                else:
                    with _own_random(rng_state):
                        offspring = _var_or(population, tb, cfg.lambda_, cfg.cxpb, cfg.mutpb)
                    for i in offspring:
                        if not i.fitness.valid:
                            i.generation = None
                    evaluated = evaluate([i for i in offspring if not i.fitness.valid], desc=f"gen {gen}", gen=gen)
                    hof.update(offspring)
                    with _own_random(rng_state):
                        population = tb.select(population + offspring, cfg.mu)
                    population = [tb.clone(i) for i in population]
                _log_generation(log_path, gen, population, evaluated, time.perf_counter() - t0, engine)
                _checkpoint(ckpt_path, cfg, gen, population, hof, rng_state, evaluate.cache, run_meta)
                best = max(population, key=lambda i: i.fitness.values[0])
                bar.set_postfix(best=f"{_fmt(best.record.value)}")
                bar.update(1)

        best_final = max(population, key=lambda i: i.fitness.values[0])
        saved = _save_results(out, cfg, tasks, engine, best_final, list(hof))
    run_meta["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat()
    run_meta["seconds"] = (run_meta.get("seconds") or 0) + time.perf_counter() - t_start
    _atomic_json(out / "run.json", run_meta)
    return EvolveResult(out=out, best_final=saved[0], best_ever=saved[1:], generations=cfg.generations,
                        seconds=time.perf_counter() - t_start)


def _log_gen(line: str) -> float:
    """Generation of a log line; a half-written line (killed mid-write) counts as newest."""
    try:
        return json.loads(line)["gen"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def _compatible(old: dict, cfg: EvolveConfig) -> bool:
    """Options that may change on resume: where the work runs, and progress output."""
    new = json.loads(json.dumps(dataclasses.asdict(cfg)))
    free = {"workers", "scheduler", "progress", "generations"}
    return all(old.get(k) == v for k, v in new.items() if k not in free)


def _fmt(x: float | None) -> str:
    return "nan" if x is None or not math.isfinite(x) else f"{x:.4f}"


def _var_or(population, tb, lambda_, cxpb, mutpb):
    """DEAP's ``varOr`` (appendix 1.7), with the record reset on changed children."""
    from deap import algorithms

    offspring = algorithms.varOr(population, tb, lambda_, cxpb, mutpb)
    for ind in offspring:
        if not ind.fitness.valid:
            ind.record = None
    return offspring


def _log_generation(path: Path, gen: int, population, evaluated: int, seconds: float, engine: Engine) -> None:
    values = np.array([i.record.value if i.record else np.nan for i in population], dtype=float)
    finite = values[np.isfinite(values)]
    best = max(population, key=lambda i: i.fitness.values[0])
    worker_peak = engine.worker_peak_rss_mb  # measured by the engine after its last scoring call
    rec = {
        "gen": gen,
        "best": float(finite.max()) if finite.size else None,
        "median": float(np.median(finite)) if finite.size else None,
        "valid_fraction": float(finite.size / len(values)),
        "evaluated": int(evaluated),
        "seconds": round(seconds, 3),
        "peak_rss_mb": round(max(_peak_rss_mb(), worker_peak), 1),
        "driver_peak_rss_mb": round(_peak_rss_mb(), 1),
        "worker_peak_rss_mb": round(worker_peak, 1),
        "best_formula": to_program(best, "mean").formula(),
    }
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")


def _checkpoint(path: Path, cfg, gen, population, hof, rng_state, cache, run_meta) -> None:
    def entries(inds):
        return [{"program": program_to_json(to_program(i, cfg.to_scalar)), "fitness": _fitness_json(i.record),
                 "generation": getattr(i, "generation", None)} for i in inds]

    _atomic_json(path, {
        "config": json.loads(json.dumps(dataclasses.asdict(cfg))),
        "generation": gen,
        "population": entries(population),
        "hall_of_fame": entries(hof),
        "random_state": rng_state[0],
        "cache": {k: _fitness_json(v) for k, v in cache.items()},
        "started": run_meta["started"],
    })


def _save_results(out: Path, cfg: EvolveConfig, tasks, engine: Engine, best_final, hof) -> list[Program]:
    """Program JSON for the final best and the two best ever; per-network scores of each + EZNAS-A."""
    saved = []
    roles = [("best_final", best_final)] + [(f"best_ever_{k + 1}", ind) for k, ind in enumerate(hof)]
    for role, ind in roles:
        p = to_program(ind, cfg.to_scalar)
        rec = ind.record
        p = dataclasses.replace(p, name=role, meta={
            "role": role, "fitness": _fitness_json(rec)["value"] if rec else None,
            "taus": _fitness_json(rec)["taus"] if rec else [], "rhos": _fitness_json(rec)["rhos"] if rec else [],
            "reason": rec.reason if rec else None, "tasks": [t.name for t in tasks],
            "seed": cfg.seed, "generations": cfg.generations, "generation": getattr(ind, "generation", None),
        })
        save_program(p, out / "programs" / f"{role}.json")
        saved.append(p)
    reference = NAMED_PROGRAMS["eznas-a"]
    programs = saved + [dataclasses.replace(reference, name="eznas-a")]
    res = engine.score(programs, tasks, desc="final scores")
    (out / "scores").mkdir(exist_ok=True)
    for k, p in enumerate(programs):
        results = [summarise(p.name, t.name, res.scores[ti][k], t.accuracy, t.archs, t.networks,
                             res.reasons[ti][k]) for ti, t in enumerate(tasks)]
        write_scores_csv(out / "scores" / f"{p.name}.csv", results)
    return saved
