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
* Two things vary independently of the loop: what a program reads (``over``: the 22
  statistics of a store, scored on Dask workers; or the columns of a network x proxy
  table, scored in-process, Phan & Luong 2025) and how it is represented
  (``representation``: a DEAP expression tree, or the AutoML-Zero instruction list of the
  EZNAS appendix 1.2, converted to a tree for evaluation). Both sit behind small
  objects (``_StatisticScorer``/``_ProxyScorer``, ``_TreeRep``/``_SequentialRep``), so
  checkpointing, selection and logging are one code path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import math
import random
import resource
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from deap import base, gp, tools

from eznas_store.errors import ConfigError, ProgramError
from eznas_store.fitness.correlations import Fitness, selection_value
from eznas_store.programs.ops import OPS, Op
from eznas_store.programs.tree import (
    NAMED_PROGRAMS,
    Program,
    from_prefix,
    program_from_json,
    program_to_json,
    save_program,
)
from eznas_store.outputs import json_safe, write_atomic
from eznas_store.fitness.engine import Engine, load_task, summarise, write_scores_csv
from eznas_store.store.zarr_store import package_versions
from eznas_store.terminals import TERMINALS

CHECKPOINT = "checkpoint.json"
OVER: tuple[str, ...] = ("statistics", "proxies")
REPRESENTATIONS: tuple[str, ...] = ("tree", "sequential")


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
    over: str = "statistics"
    representation: str = "tree"
    problems: tuple[str, ...] = ()
    train_networks: int = 100
    min_length: int = 2
    max_length: int = 32

    def __post_init__(self) -> None:
        if not self.stores:
            raise ConfigError("evolve needs at least one store" if self.over == "statistics"
                              else "evolve --over proxies needs at least one store or zc_*.json file")
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
            (self.over in OVER, f"--over must be one of {', '.join(OVER)}, got {self.over!r}"),
            (self.representation in REPRESENTATIONS,
             f"--representation must be one of {', '.join(REPRESENTATIONS)}, got {self.representation!r}"),
            (not (self.over == "proxies" and self.representation == "sequential"),
             "--representation sequential addresses the 22 statistics; use it with --over statistics"),
            (self.train_networks >= 2, f"--train-networks must be >= 2, got {self.train_networks}"),
            (1 <= self.min_length <= self.max_length <= 1000,
             "need 1 <= --min-length <= --max-length <= 1000"),
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


class SequentialIndividual(list):
    """A list of 4-integer instructions with the same fitness/record/generation slots."""

    def __init__(self, content=()) -> None:
        super().__init__(tuple(int(v) for v in ins) for ins in content)
        self.fitness = FitnessMax()
        self.record: Fitness | None = None
        self.generation: int | None = None


def _placeholder(*args):  # pragma: no cover - never called: programs are interpreted
    raise RuntimeError("DEAP primitives are placeholders; evaluation goes through evaluate.py")


def primitive_set(terminals: Sequence[str] = TERMINALS, ops: Mapping[str, Op] = OPS) -> gp.PrimitiveSet:
    """The untyped primitive set: every op of the table and the terminals."""
    pset = gp.PrimitiveSet("eznas", 0)
    for op in ops.values():
        pset.addPrimitive(_placeholder, op.arity, name=op.name)
    for t in terminals:
        pset.addTerminal(t, name=t)
    return pset


def to_program(ind: gp.PrimitiveTree, to_scalar: str, *, ops: Mapping[str, Op] = OPS,
               terminal_set: str = "statistics") -> Program:
    terminals = TERMINALS if terminal_set == "statistics" else None
    return Program(tree=from_prefix([node.name for node in ind], ops=ops, terminals=terminals),
                   to_scalar=to_scalar, terminal_set=terminal_set)


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


class _TreeRep:
    """Expression trees (the EZNAS paper's choice), varied by DEAP's GP operators."""

    def __init__(self, cfg: EvolveConfig, terminals: Sequence[str], ops: Mapping[str, Op], terminal_set: str):
        self.cfg, self.ops, self.terminal_set = cfg, ops, terminal_set
        self.pset = primitive_set(terminals, ops)
        self.toolbox = make_toolbox(cfg, self.pset)

    def program(self, ind) -> Program:
        """What is saved: the tree program itself."""
        return to_program(ind, self.cfg.to_scalar, ops=self.ops, terminal_set=self.terminal_set)

    def individual(self, program) -> Individual:
        return from_program(program, self.pset)

    @staticmethod
    def evaluable(program) -> Program:
        return program

    @staticmethod
    def stats(population) -> dict:
        sizes = [len(i) for i in population]
        return {"mean_size": round(float(np.mean(sizes)), 2)} if sizes else {}


class _SequentialRep:
    """AutoML-Zero instruction lists (EZNAS appendix 1.2): Mate + one of InsertOP,
    RemoveOP, MutateOP, MutateOPArg; evaluated as the tree they compute, so fitness,
    cache and scoring are shared with trees."""

    def __init__(self, cfg: EvolveConfig) -> None:
        from eznas_store.programs import sequential as seq

        self.cfg, self.seq = cfg, seq
        tb = base.Toolbox()
        tb.register("individual", lambda: SequentialIndividual(
            seq.random_program(random, min_len=cfg.min_length, max_len=cfg.max_length).instructions))
        tb.register("population", tools.initRepeat, list, tb.individual)
        tb.register("select", tools.selTournament, tournsize=cfg.tournament)
        tb.register("mate", self._mate)
        tb.register("mutate", self._mutate)
        self.toolbox = tb

    def program(self, ind):
        """What is saved: the instruction list (dead code included, as evolved)."""
        return self.seq.SequentialProgram(instructions=tuple(tuple(i) for i in ind), to_scalar=self.cfg.to_scalar)

    def individual(self, program) -> SequentialIndividual:
        return SequentialIndividual(program.instructions)

    @staticmethod
    def evaluable(program) -> Program:
        return program.to_program()

    def stats(self, population) -> dict:
        return self.seq.code_stats([self.program(i) for i in population], max_len=self.cfg.max_length)

    def _limits(self) -> dict:
        return {"min_len": self.cfg.min_length, "max_len": self.cfg.max_length}

    def _mate(self, a, b):
        pa, pb = self.seq.mate(self.program(a), self.program(b), random, **self._limits())
        a[:], b[:] = pa.instructions, pb.instructions
        return a, b

    def _mutate(self, a):
        a[:] = self.seq.mutate(self.program(a), random, **self._limits()).instructions
        return (a,)


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
    return json_safe({"value": f.value, "taus": f.taus, "rhos": f.rhos, "reason": f.reason,
                      "valid_fraction": f.valid_fraction})


def _fitness_from_json(d: dict | None) -> Fitness | None:
    if d is None:
        return None
    f = lambda x: float("nan") if x is None else float(x)
    return Fitness(value=f(d["value"]), taus=tuple(f(x) for x in d["taus"]), rhos=tuple(f(x) for x in d["rhos"]),
                   reason=d.get("reason"), valid_fraction=float(d.get("valid_fraction", 0.0)))


def _atomic_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=1, allow_nan=False))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class EvolveResult:
    out: Path
    best_final: Program
    best_ever: list[Program]
    generations: int
    seconds: float


class _StatisticScorer:
    """Programs over the 22 statistics of stores, scored chunk by chunk on Dask workers."""

    terminal_set = "statistics"
    terminals = TERMINALS
    ops = OPS

    def __init__(self, cfg: EvolveConfig) -> None:
        self.cfg = cfg
        self.tasks = [load_task(u, max_networks=cfg.max_networks) for u in cfg.stores]
        self.engine = Engine(workers=cfg.workers, scheduler=cfg.scheduler, progress=cfg.progress)

    def describe(self) -> list[dict]:
        """Tasks for run.json; the collection structure lets reports name the variant."""
        return [{"name": t.name, "n_networks": t.n, "url": t.url, "structure": t.structure} for t in self.tasks]

    def fitness(self, programs: Sequence[Program], desc: str) -> list[Fitness]:
        fits, _ = self.engine.fitness(list(programs), self.tasks, combine=self.cfg.combine,
                                      abs_tau=self.cfg.abs_tau, to_scalar=self.cfg.to_scalar, desc=desc)
        return fits

    def peak_rss_mb(self) -> float:
        return self.engine.worker_peak_rss_mb  # measured by the engine after its last scoring call

    def finish(self, out: Path, programs: list[Program]) -> None:
        """Per-network scores of the saved programs and of EZNAS-A, one CSV each."""
        programs = programs + [dataclasses.replace(NAMED_PROGRAMS["eznas-a"], name="eznas-a")]
        res = self.engine.score(programs, self.tasks, desc="final scores")
        (out / "scores").mkdir(exist_ok=True)
        for k, p in enumerate(programs):
            results = [summarise(p.name, t.name, res.scores[ti][k], t.accuracy, t.archs, t.networks,
                                 res.reasons[ti][k]) for ti, t in enumerate(self.tasks)]
            write_scores_csv(out / "scores" / f"{p.name}.csv", results)

    def close(self) -> None:
        self.engine.close()


class _ProxyScorer:
    """Programs over the columns of network x proxy tables (stores ingested with proxies,
    or NAS-Bench-Suite-Zero zc files): each training problem is split, seeded, into
    ``train_networks`` to evolve on and the rest to test on; problems not chosen for
    training are tested on whole."""

    terminal_set = "proxies"

    def __init__(self, cfg: EvolveConfig) -> None:
        from eznas_store.programs.proxy_ops import PROXY_OPS
        from eznas_store.fitness.problems import ProxyScorer, load_problems, split_problem

        self.cfg, self.ops = cfg, PROXY_OPS
        problems = [p for src in cfg.stores for p in load_problems(src)]
        names = [p.name for p in problems]
        if len(set(names)) != len(names):
            raise ConfigError(f"problem names repeat across sources: {', '.join(names)}")
        unknown = [n for n in cfg.problems if n not in names]
        if unknown:
            raise ConfigError(f"--problems {', '.join(unknown)}: not in the sources (they hold {', '.join(names)})")
        chosen = set(cfg.problems or names)
        self.train, self.test = [], []
        for p in problems:
            if p.name in chosen:
                tr, te = split_problem(p, cfg.train_networks, cfg.seed)
                self.train.append(tr)
                self.test.append(te)
            else:
                self.test.append(p)
        self.scorer = ProxyScorer(self.train, combine=cfg.combine, abs_tau=cfg.abs_tau)
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
        from eznas_store.fitness.problems import cross_problem_matrix, write_matrix

        write_matrix(cross_problem_matrix({p.name: p for p in programs}, self.test), out / "cross_problem")

    def close(self) -> None:
        pass


def _scorer(cfg: EvolveConfig):
    return _StatisticScorer(cfg) if cfg.over == "statistics" else _ProxyScorer(cfg)


def _representation(cfg: EvolveConfig, scorer):
    if cfg.representation == "sequential":
        return _SequentialRep(cfg)
    return _TreeRep(cfg, scorer.terminals, scorer.ops, scorer.terminal_set)


def _invalid(reason: str, n_tasks: int) -> Fitness:
    nan = float("nan")
    return Fitness(value=nan, taus=(nan,) * n_tasks, rhos=(nan,) * n_tasks, reason=reason, valid_fraction=0.0)


class _Evaluator:
    """Fitness of individuals through the scorer, cached by the canonical key of what they compute."""

    def __init__(self, scorer, rep, n_tasks: int) -> None:
        self.scorer, self.rep, self.n_tasks = scorer, rep, n_tasks
        self.cache: dict[str, Fitness] = {}

    def __call__(self, individuals: Sequence[Any], desc: str, gen: int = 0) -> int:
        keys, todo = [], {}
        for ind in individuals:
            try:
                p = self.rep.evaluable(self.rep.program(ind))
            except ProgramError as e:  # e.g. a sequential program reading an unwritten address
                key = f"invalid:{e}"
                self.cache.setdefault(key, _invalid(str(e), self.n_tasks))
            else:
                key = p.key()
                if key not in self.cache:
                    todo.setdefault(key, p)
            keys.append(key)
        if todo:
            self.cache.update(zip(todo, self.scorer.fitness(list(todo.values()), desc)))
        for ind, key in zip(individuals, keys):
            rec = self.cache[key]
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
    scorer = _scorer(cfg)
    try:
        return _run(cfg, scorer, out, ckpt_path, resume)
    finally:
        scorer.close()


def _run(cfg: EvolveConfig, scorer, out: Path, ckpt_path: Path, resume: bool) -> EvolveResult:
    out.mkdir(parents=True, exist_ok=True)
    (out / "programs").mkdir(exist_ok=True)
    rep = _representation(cfg, scorer)
    tb = rep.toolbox
    t_start = time.perf_counter()
    described = scorer.describe()
    run_meta = {
        "config": dataclasses.asdict(cfg), "stores": list(cfg.stores), "tasks": described,
        "versions": package_versions(),
        "started": _dt.datetime.now(_dt.UTC).isoformat(), "finished": None, "seconds": None,
    }
    log_path = out / "generations.jsonl"
    n_fit = sum(1 for d in described if d.get("role", "train") == "train")

    def individuals_from(entries) -> list:
        pop = []
        for e in entries:
            ind = rep.individual(program_from_json(e["program"], ops=scorer.ops))
            ind.record = _fitness_from_json(e["fitness"])
            ind.generation = e.get("generation")
            if ind.record is not None:
                ind.fitness.values = (selection_value(ind.record),)
            pop.append(ind)
        return pop

    evaluate = _Evaluator(scorer, rep, n_fit)
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
        # HallOfFame.insert puts a tie before its equals: insert worst first to keep the saved order
        hof.update(list(reversed(hof_entries)))

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
            _log_generation(log_path, gen, population, evaluated, time.perf_counter() - t0, scorer, rep)
            _checkpoint(ckpt_path, cfg, gen, population, hof, rng_state, evaluate.cache, run_meta, rep)
            best = max(population, key=lambda i: i.fitness.values[0])
            bar.set_postfix(best=f"{_fmt(best.record.value)}")
            bar.update(1)

    best_final = max(population, key=lambda i: i.fitness.values[0])
    saved = _save_results(out, cfg, scorer, rep, best_final, list(hof), described)
    run_meta["finished"] = _dt.datetime.now(_dt.UTC).isoformat()
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


def _log_generation(path: Path, gen: int, population, evaluated: int, seconds: float, scorer, rep) -> None:
    values = np.array([i.record.value if i.record else np.nan for i in population], dtype=float)
    finite = values[np.isfinite(values)]
    best = max(population, key=lambda i: i.fitness.values[0])
    worker_peak = scorer.peak_rss_mb()
    try:
        formula = rep.evaluable(rep.program(best)).formula()
    except ProgramError:
        formula = None
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
        "best_formula": formula,
        **rep.stats(population),
    }
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")


def _checkpoint(path: Path, cfg, gen, population, hof, rng_state, cache, run_meta, rep) -> None:
    def entries(inds):
        return [{"program": program_to_json(rep.program(i)), "fitness": _fitness_json(i.record),
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


def _save_results(out: Path, cfg: EvolveConfig, scorer, rep, best_final, hof, described) -> list:
    """Program JSON for the final best and the two best ever; then the scorer's final scores."""
    saved, scorable = [], []
    roles = [("best_final", best_final)] + [(f"best_ever_{k + 1}", ind) for k, ind in enumerate(hof)]
    train = [d["name"] for d in described if d.get("role", "train") == "train"]
    for role, ind in roles:
        rec = _fitness_json(ind.record)
        meta = {
            "role": role, "fitness": rec["value"] if rec else None,
            "taus": rec["taus"] if rec else [], "rhos": rec["rhos"] if rec else [],
            "reason": rec["reason"] if rec else None, "tasks": train, "over": cfg.over,
            "representation": cfg.representation,
            "seed": cfg.seed, "generations": cfg.generations, "generation": getattr(ind, "generation", None),
        }
        p = dataclasses.replace(rep.program(ind), name=role, meta=meta)
        save_program(p, out / "programs" / f"{role}.json")
        saved.append(p)
        try:
            scorable.append(dataclasses.replace(rep.evaluable(p), name=role))
        except ProgramError:
            pass  # an invalid program has no scores to write
    scorer.finish(out, scorable)
    return saved
