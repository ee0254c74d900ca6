"""``eznas-store evolve``: (μ+λ) genetic programming of proxy programs, with checkpoint and resume.

Defaults are the EZNAS appendix 1.7: population 50, μ 25, λ 50, crossover 0.4, mutation
0.4 (DEAP ``varOr``), tournament 4, tree depth 2..10, 15 generations. Fitness is Kendall
τ on each task (a store, or with ``accuracy_columns`` a store × label column), combined
by min (or mean), optionally |τ|.

Design choices, with the reasons:

* The run owns one ``random.Random``, seeded from ``seed``, that every random choice
  draws from (:mod:`.gp_operators` are DEAP's operators taking it), and saves its state
  in each checkpoint: a resumed run continues the same random stream and ends with the
  same programs, and the global ``random`` state is never touched.
* A checkpoint (:mod:`.checkpoint`) after every generation; ``--resume`` continues.
* Fitness of a program is cached by its canonical key (:mod:`.fitness_cache`).
* Two things vary independently of the loop: what a program reads (``over``: the 22
  statistics of a store, scored on Dask workers; or the columns of a network x proxy
  table, scored in-process, Phan & Luong 2025; :mod:`.population_scorers`) and how it is
  represented (``representation``: a DEAP expression tree, or the AutoML-Zero
  instruction list of the EZNAS appendix 1.2; :mod:`.representations`). Both sit
  behind small objects, so checkpointing, selection and logging are one code path.
* Opt-in, statistics programs only (all off by default, so a seeded default run gives
  the programs it always gave): held-out selection (``split``: fitness on train
  networks, the hall of fame by validation tau, final programs scored on test networks
  and ``test_stores``; :mod:`.split`, :mod:`.generalise`); the functional-equivalence
  cache and racing (:mod:`.fitness_cache`); ``seed_programs`` in the first population;
  the network aggregate evolved with the tree (``evolve_aggregate``,
  :mod:`.aggregate_variation`).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

from deap import tools
from tqdm.auto import tqdm

from eznas_store.config import MAX_WORKERS, check_seed, is_int
from eznas_store.errors import ConfigError, ProgramError
from eznas_store.fitness import FITNESSES
from eznas_store.outputs import ensure_dir, exclusive, package_versions
from eznas_store.programs import load_program, save_program
from eznas_store.programs import OP_SETS, op_set
from eznas_store.programs import Program
from eznas_store.evolution.settings import GPSettings
from eznas_store.evolution.aggregate_variation import AggregateTreeRepresentation
from eznas_store.evolution.checkpoint import (
    Checkpoint,
    config_json,
    fitness_to_json,
    log_generation,
    normalised,
    read_checkpoint,
    resume_point,
    trim_log,
    write_checkpoint,
    write_json,
)
from eznas_store.evolution.fitness_cache import FitnessCache
from eznas_store.evolution.generalise import (
    ValidationHallOfFame,
    check_test_stores,
    final_scores,
    roundoff_of_saved,
)
from eznas_store.evolution.gp_operators import sel_tournament, var_or
from eznas_store.evolution.population_scorers import ProxyTablePopulationScorer, StatisticsPopulationScorer
from eznas_store.evolution.representations import SequentialRepresentation, TreeRepresentation
from eznas_store.evolution.split import parse_split

CHECKPOINT = "checkpoint.json"
LOG = "generations.jsonl"
OVER: tuple[str, ...] = ("statistics", "proxies")
REPRESENTATIONS: tuple[str, ...] = ("tree", "sequential")


#: bounds checked before any work starts (a typo of a few digits must not run for days)
MAX_POPULATION = 100_000
MAX_GENERATIONS = 100_000


@dataclass(frozen=True, kw_only=True)
class EvolveConfig(GPSettings):
    """One evolution run; written into ``run.json`` and the checkpoint. The GP settings
    (population, mu, lambda, cxpb, mutpb, tournament, depths, generations) are
    :class:`~eznas_store.evolution.settings.GPSettings`'s."""

    stores: tuple[str, ...]
    out: str
    seed: int = 0
    combine: str = "min"
    abs_tau: bool = False
    #: what each task's fitness measures: "tau" (Kendall tau, EZNAS) or, with --over proxies,
    #: "weighted_tau" (hyperbolic weights: the top of the score and accuracy rankings counts most)
    fitness: str = "tau"
    to_scalar: str = "mean"
    workers: int = 0
    scheduler: str | None = None
    max_networks: int | None = None
    progress: bool = True
    over: str = "statistics"
    representation: str = "tree"
    problems: tuple[str, ...] = ()
    train_networks: int = 100
    #: --over proxies: the cells' graph features (``graph_*``, from each network's cell string)
    #: are terminals beside the proxies (``fitness.load_problems(graph_features=True)``)
    graph_features: bool = False
    min_length: int = 2
    max_length: int = 32
    #: label columns of the stores (None: each store's column chosen at ingest); each store x
    #: each column is one task, and fitness combines them all (``combine``)
    accuracy_columns: tuple[str, ...] | None = None
    #: "TRAIN/VAL/TEST" networks of each store (counts, fractions, one "rest"); None: all train
    split: str | None = None
    #: stores whose networks are all test networks (the final programs are scored on them)
    test_stores: tuple[str, ...] = ()
    #: skip full scoring of programs whose outputs on a small probe match a scored one's
    equivalence_cache: bool = False
    #: fraction of the train networks children are raced on first (0: no racing)
    racing: float = 0.0
    #: byte bounds (MB) of the evaluation caches per scoring process: decoded chunks as read,
    #: and small per-block subtree outputs (0: off); None sizes them to the stores and the
    #: machine (fitness.default_cache_budget; run.json "caches" says what was chosen);
    #: scores do not depend on them
    chunk_cache_mb: float | None = None
    subtree_cache_mb: float | None = None
    #: programs (registered names or files) put into the first population
    seed_programs: tuple[str, ...] = ()
    #: the network aggregate (mean, sum, depth-weighted mean) is part of the genome
    evolve_aggregate: bool = False
    #: ops trees are drawn from: "paper" (Table 1 + the released logdet) or "extended" (+ the
    #: channel statistics and spectra of ``programs.ops_extension``)
    op_set: str = "paper"

    def __post_init__(self) -> None:
        if self.mu is None:
            object.__setattr__(self, "mu", max(1, int(self.population) // 2))
        if self.lambda_ is None:
            object.__setattr__(self, "lambda_", int(self.population))
        if not self.stores:
            raise ConfigError("evolve needs at least one store" if self.over == "statistics"
                              else "evolve --over proxies needs at least one store or zc_*.json file")
        checks = [
            (2 <= self.population <= MAX_POPULATION,
             f"--population must be >= 2 (at most {MAX_POPULATION:,}), got {self.population}"),
            (1 <= self.mu <= self.population,
             f"--mu must be >= 1 and at most --population ({self.population}), got {self.mu}"),
            (1 <= self.lambda_ <= 10 * MAX_POPULATION, f"--lambda must be >= 1 (at most {10 * MAX_POPULATION:,}), got {self.lambda_}"),
            (0 <= self.cxpb and 0 <= self.mutpb and self.cxpb + self.mutpb <= 1,
             "--cxpb and --mutpb must be >= 0 and sum to at most 1 (DEAP varOr)"),
            (self.tournament >= 1, "--tournament must be >= 1"),
            (1 <= self.min_depth <= self.max_depth <= 17, "need 1 <= --min-depth <= --max-depth <= 17"),
            (0 <= self.generations <= MAX_GENERATIONS, f"--generations must be between 0 and {MAX_GENERATIONS:,}"),
            (self.combine in ("min", "mean"), "--combine must be min or mean"),
            (self.fitness in FITNESSES, f"--fitness must be one of {', '.join(FITNESSES)}, got {self.fitness!r}"),
            (self.fitness == "tau" or self.over == "proxies", "--fitness weighted_tau: with --over proxies only"),
            (self.to_scalar in ("mean", "l2"), "--to-scalar must be mean or l2"),
            (is_int(self.workers) and 0 <= self.workers <= MAX_WORKERS,
             f"--workers must be an integer from 0 (in-process) to {MAX_WORKERS}, got {self.workers!r}"),
            (self.max_networks is None or self.max_networks >= 2,
             f"--max-networks must be at least 2 (Kendall tau needs two), got {self.max_networks}"),
            (self.over in OVER, f"--over must be one of {', '.join(OVER)}, got {self.over!r}"),
            (self.representation in REPRESENTATIONS,
             f"--representation must be one of {', '.join(REPRESENTATIONS)}, got {self.representation!r}"),
            (not (self.over == "proxies" and self.representation == "sequential"),
             "--representation sequential addresses the 22 statistics; use it with --over statistics"),
            (self.train_networks >= 2, f"--train-networks must be >= 2, got {self.train_networks}"),
            (1 <= self.min_length <= self.max_length <= 1000,
             "need 1 <= --min-length <= --max-length <= 1000"),
            (not (self.accuracy_columns and self.over == "proxies"),
             "--accuracy-column picks a store's label for --over statistics; proxy problems carry their own"),
            (len(set(self.accuracy_columns or ())) == len(self.accuracy_columns or ()),
             "--accuracy-column names a column more than once"),
            (all(v is None or (isinstance(v, (int, float)) and 0 <= v < math.inf)
                 for v in (self.chunk_cache_mb, self.subtree_cache_mb)),
             "--chunk-cache-mb and --subtree-cache-mb must be finite numbers >= 0 (0: off; default: sized)"),
            *self._generalise_checks(),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        check_seed(self.seed)
        if self.split is not None:
            parse_split(self.split)
        paths = normalised({"stores": list(self.stores), "test_stores": list(self.test_stores)})
        out = os.path.abspath(self.out)
        inside = [u for u in paths["stores"] + paths["test_stores"]
                  if "://" not in u and (out == u or out.startswith(os.path.join(u, "")))]
        if inside:
            raise ConfigError(f"--out {self.out} is inside the store {inside[0]}: a run folder goes beside the stores")
        same = set(paths["stores"]) & set(paths["test_stores"])
        if same:
            raise ConfigError(f"--test-store {sorted(same)[0]} is also a train store: its tau would be the train "
                              "tau; give a store of other networks")

    def _generalise_checks(self) -> list[tuple[bool, str]]:
        stats_only = [name for name, on in (("--split", self.split is not None), ("--test-store", self.test_stores),
                                            ("--equivalence-cache", self.equivalence_cache),
                                            ("--racing", self.racing), ("--evolve-aggregate", self.evolve_aggregate))
                      if on]
        return [
            (not (stats_only and self.over != "statistics"), f"{', '.join(stats_only)}: with --over statistics only"),
            (not self.graph_features or self.over == "proxies",
             "--graph-features adds terminals to proxy formulas: use it with --over proxies"),
            (0 <= self.racing < 1, f"--racing must be a fraction in [0, 1) of the train networks, got {self.racing}"),
            (not (self.evolve_aggregate and self.representation != "tree"),
             "--evolve-aggregate evolves the aggregate of tree programs; use --representation tree"),
            (self.op_set in OP_SETS, f"--op-set must be one of {', '.join(OP_SETS)}, got {self.op_set!r}"),
            (self.op_set == "paper" or (self.over == "statistics" and self.representation == "tree"),
             "--op-set extended adds statistics ops to tree programs: use it with --over statistics "
             "--representation tree"),
            (len(self.seed_programs) <= self.population,
             f"--seed-programs names {len(self.seed_programs)} programs, more than --population {self.population}"),
        ]


@dataclass
class EvolveResult:
    out: Path
    best_final: Program
    best_ever: list[Program]
    generations: int
    seconds: float


def run_evolve(cfg: EvolveConfig, *, resume: bool = False) -> EvolveResult:
    """Evolve, checkpointing every generation; with ``resume`` continue from the checkpoint.

    One writer at a time: the run folder is written under
    :func:`~eznas_store.outputs.exclusive` (a second run on it is refused in one line naming
    the holder); everything the options and the checkpoint decide is checked before any
    store is scored."""
    out = Path(cfg.out)
    ensure_dir(out.parent, "folder of --out")
    with exclusive(out, "run"):
        ckpt_path = out / CHECKPOINT
        if resume and not ckpt_path.exists():
            raise ConfigError(f"--resume: no checkpoint in {out} (start the run without --resume)")
        if not resume and ckpt_path.exists():
            raise ConfigError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        saved = resume_point(ckpt_path, config_json(cfg), cfg.generations) if resume else None
        check_test_stores(cfg.stores, cfg.test_stores)
        scorer = _population_scorer(cfg)
        try:
            return _run(cfg, scorer, out, saved)
        finally:
            scorer.close()


def _population_scorer(cfg: EvolveConfig):
    if cfg.over == "statistics":
        return StatisticsPopulationScorer(
            cfg.stores, max_networks=cfg.max_networks, workers=cfg.workers, scheduler=cfg.scheduler,
            progress=cfg.progress, combine=cfg.combine, abs_tau=cfg.abs_tau, to_scalar=cfg.to_scalar,
            accuracy_columns=cfg.accuracy_columns, split=cfg.split, seed=cfg.seed, test_stores=cfg.test_stores,
            racing=cfg.racing, cache_mb=(cfg.chunk_cache_mb, cfg.subtree_cache_mb))
    return ProxyTablePopulationScorer(cfg.stores, problems=cfg.problems, train_networks=cfg.train_networks,
                                      seed=cfg.seed, combine=cfg.combine, abs_tau=cfg.abs_tau,
                                      fitness=cfg.fitness, graph_features=cfg.graph_features)


def _representation(cfg: EvolveConfig, scorer):
    if cfg.representation == "sequential":
        return SequentialRepresentation(min_length=cfg.min_length, max_length=cfg.max_length,
                                        to_scalar=cfg.to_scalar)
    kind = AggregateTreeRepresentation if cfg.evolve_aggregate else TreeRepresentation
    ops = op_set(cfg.op_set) if cfg.over == "statistics" else scorer.ops
    return kind(scorer.terminals, ops, scorer.terminal_set, min_depth=cfg.min_depth,
                max_depth=cfg.max_depth, to_scalar=cfg.to_scalar)


def _run(cfg: EvolveConfig, scorer, out: Path, saved: dict | None) -> EvolveResult:
    """The run: a new one, or (``saved``: its checkpoint document) a resumed one."""
    ensure_dir(out / "programs", "run folder")
    rep = _representation(cfg, scorer)
    t_start = time.perf_counter()
    described = scorer.describe()
    run_meta = {
        "config": dataclasses.asdict(cfg), "stores": list(cfg.stores), "tasks": described,
        "caches": getattr(scorer, "cache_budget", None), "versions": package_versions(),
        "started": _dt.datetime.now(_dt.UTC).isoformat(), "finished": None, "seconds": None,
    }
    n_fit = sum(1 for d in described if d.get("role", "train") == "train")
    state = _resumed(cfg, out, rep, scorer, saved) if saved is not None else _started(cfg, out, rep)
    if state.started is None:
        state.started = run_meta["started"]
    run_meta["started"] = state.started
    evaluate = _fitness_cache(cfg, scorer, rep, n_fit, state)
    write_json(out / "run.json", run_meta)
    population = _generations(cfg, state, evaluate, scorer, rep, out)
    finished = [i for i in population if not evaluate.is_raced(i)] or population
    best_final = max(finished, key=lambda i: i.fitness.values[0])
    saved, final = _save_results(out, cfg, scorer, rep, best_final, state, described, evaluate)
    if final is not None:
        run_meta["final"] = final
    run_meta["finished"] = _dt.datetime.now(_dt.UTC).isoformat()
    run_meta["seconds"] = (run_meta.get("seconds") or 0) + time.perf_counter() - t_start
    write_json(out / "run.json", run_meta)
    return EvolveResult(out=out, best_final=saved[0], best_ever=saved[1:], generations=cfg.generations,
                        seconds=time.perf_counter() - t_start)


def _fitness_cache(cfg: EvolveConfig, scorer, rep, n_fit: int, state: Checkpoint) -> FitnessCache:
    """The run's fitness cache, holding (and shared with the checkpoint) what ``state`` knew."""
    evaluate = FitnessCache(scorer, rep, n_fit, equivalence=cfg.equivalence_cache, racing=cfg.racing)
    evaluate.cache.update(state.cache)
    evaluate.raced.update(state.raced)
    evaluate.probes.update(state.probes)
    state.cache, state.raced, state.probes = evaluate.cache, evaluate.raced, evaluate.probes
    return evaluate


def _seed_individuals(cfg: EvolveConfig, rep) -> list:
    """``seed_programs`` (registered names or files) as individuals of the representation."""
    out = []
    for name in cfg.seed_programs:
        try:
            program = load_program(name, ops=rep.ops if hasattr(rep, "ops") else None)
        except ProgramError as e:
            hint = _seed_hint(cfg, name)
            if hint:
                raise ProgramError(f"--seed-programs {e}: {hint}") from None
            raise
        try:
            if hasattr(rep, "pset") != isinstance(program, Program):
                raise TypeError
            out.append(rep.individual(program))
        except (StopIteration, TypeError, AttributeError, KeyError):
            raise ConfigError(f"--seed-programs {name}: not a program of this run's representation "
                              f"({cfg.representation}) over its terminals ({cfg.over})") from None
    return out


def _seed_hint(cfg: EvolveConfig, name: str) -> str:
    """What would take a seed program this run refuses ("" if nothing would): a run over its
    own terminals, or (statistics trees) the extended op set."""
    try:
        program = load_program(name)  # the ops of its own terminal set, extension included
    except ProgramError:
        return ""
    if program.terminal_set != cfg.over:
        return (f"it is a program over {program.terminal_set}, this run (--over {cfg.over}) evolves programs "
                f"over {cfg.over}")
    if cfg.over == "statistics" and cfg.representation == "tree" and cfg.op_set == "paper":
        return "it needs --op-set extended"
    return ""


def _started(cfg: EvolveConfig, out: Path, rep) -> Checkpoint:
    """A new run: the random initial population (the first ones replaced by any seed
    programs), before generation 0 is evaluated."""
    rng = random.Random(cfg.seed)
    population = [rep.new_individual(rng) for _ in range(cfg.population)]
    seeds = _seed_individuals(cfg, rep)
    population[:len(seeds)] = seeds
    (out / LOG).write_text("")
    return Checkpoint(config=config_json(cfg), generation=-1, population=population, hall_of_fame=[],
                      rng=rng, cache={}, started=None)


def _resumed(cfg: EvolveConfig, out: Path, rep, scorer, saved: dict) -> Checkpoint:
    """A run continued from its checkpoint (``saved``, checked by :func:`resume_point`)."""
    ck = read_checkpoint(out / CHECKPOINT, rep, scorer.ops, config_json(cfg), doc=saved)
    trim_log(out / LOG, ck.generation)
    return ck


def _hall_of_fame(saved: list) -> tools.HallOfFame:
    """The two best programs ever (by formula), as saved in a checkpoint."""
    hof = tools.HallOfFame(2, similar=lambda a, b: str(a) == str(b))
    if saved:
        # HallOfFame.insert puts a tie before its equals: insert worst first to keep the saved order
        hof.update(list(reversed(saved)))
    return hof


def _generations(cfg: EvolveConfig, state: Checkpoint, evaluate: FitnessCache, scorer, rep, out: Path) -> list:
    """Generations after ``state.generation`` up to ``cfg.generations``, each logged and checkpointed."""
    if getattr(scorer, "validation", None):
        hof = ValidationHallOfFame(scorer, evaluate, state.hall_of_fame, state.validation)
    else:
        hof = _hall_of_fame(state.hall_of_fame)
    start = state.generation + 1
    with tqdm(total=cfg.generations + 1, initial=start, desc="evolve", unit="gen",
              disable=not cfg.progress) as bar:
        for gen in range(start, cfg.generations + 1):
            t0 = time.perf_counter()
            counts = (evaluate.hits, evaluate.raced_out)
            evaluated = _advance(cfg, state, hof, evaluate, rep, gen)
            extra = _generation_extra(cfg, hof, evaluate, counts)
            log_generation(out / LOG, gen, state.population, evaluated, time.perf_counter() - t0, scorer, rep,
                           extra)
            state.generation, state.hall_of_fame = gen, list(hof)
            write_checkpoint(out / CHECKPOINT, state, rep)
            best = max(state.population, key=lambda i: i.fitness.values[0])
            bar.set_postfix(best=f"{_fmt(best.record.value)}")
            bar.update(1)
    state.hall_of_fame = list(hof)
    return state.population


def _advance(cfg: EvolveConfig, state: Checkpoint, hof: tools.HallOfFame, evaluate: FitnessCache, rep,
             gen: int) -> int:
    """Generation ``gen``: 0 evaluates the initial population; later ones are one (μ+λ) step.
    Returns how many programs were scored."""
    if gen == 0:
        evaluated = evaluate(state.population, desc="gen 0", gen=0)
        hof.update([i for i in state.population if not evaluate.is_raced(i)])
        return evaluated
    threshold = -math.inf
    if cfg.racing > 0:  # children race against the mu-th best parent
        values = sorted((i.fitness.values[0] for i in state.population), reverse=True)
        threshold = values[min(cfg.mu, len(values)) - 1]
    offspring = var_or(state.population, rep.mate, rep.mutate, cfg.lambda_, cfg.cxpb, cfg.mutpb, state.rng)
    changed = [i for i in offspring if not i.fitness.valid]
    for i in changed:
        i.record, i.generation = None, None
    evaluated = evaluate(changed, desc=f"gen {gen}", gen=gen, threshold=threshold)
    hof.update([i for i in offspring if not evaluate.is_raced(i)])
    chosen = sel_tournament(state.population + offspring, cfg.mu, cfg.tournament, state.rng)
    state.population = [copy.deepcopy(i) for i in chosen]
    return evaluated


def _fmt(x: float | None) -> str:
    return "nan" if x is None or not math.isfinite(x) else f"{x:.4f}"


def _generation_extra(cfg: EvolveConfig, hof, evaluate: FitnessCache, counts: tuple[int, int]) -> dict:
    """Log fields of the opt-in features: validation tau, equivalence hits, raced-out children."""
    extra: dict = {}
    if isinstance(hof, ValidationHallOfFame):
        extra.update(val_best=hof.last_best, val_best_ever=hof.best)
    if cfg.equivalence_cache:
        extra["equivalence_hits"] = evaluate.hits - counts[0]
    if cfg.racing > 0:
        extra["raced_out"] = evaluate.raced_out - counts[1]
    return extra


def _save_results(out: Path, cfg: EvolveConfig, scorer, rep, best_final, state: Checkpoint, described,
                  evaluate: FitnessCache) -> tuple[list, dict | None]:
    """Program JSON for the final best and the two best ever; then the scorer's final scores.
    With a split or test stores also their train / validation / test tau (returned, and in
    each program's meta)."""
    saved, scorable = [], []
    roles = [("best_final", best_final)] + [(f"best_ever_{k + 1}", ind) for k, ind in enumerate(state.hall_of_fame)]
    train = [d["name"] for d in described if d.get("role", "train") == "train"]
    final = final_scores(scorer, evaluate, roles, state.validation) if getattr(scorer, "roles", False) else None
    for role, ind in roles:
        rec = fitness_to_json(ind.record)
        meta = {
            "role": role, "fitness": rec["value"] if rec else None,
            "taus": rec["taus"] if rec else [], "rhos": rec["rhos"] if rec else [],
            "reason": rec["reason"] if rec else None, "tasks": train, "over": cfg.over,
            "fitness_measure": cfg.fitness,
            "representation": cfg.representation, "op_set": cfg.op_set if cfg.over == "statistics" else None,
            "seed": cfg.seed, "generations": cfg.generations, "generation": getattr(ind, "generation", None),
        }
        if final is not None:
            meta.update(train_tau=final[role]["train"], validation_tau=final[role]["validation"],
                        test_tau=final[role]["test"], test_taus=final[role]["test_taus"])
        p = dataclasses.replace(rep.program(ind), name=role, meta=meta)
        save_program(p, out / "programs" / f"{role}.json")
        saved.append(p)
        try:
            scorable.append(dataclasses.replace(rep.evaluable(p), name=role))
        except ProgramError:
            pass  # an invalid program has no scores to write
    scorer.finish(out, scorable)
    checks = {}  # after saving: a check that cannot run loses nothing
    if cfg.over == "statistics":
        checks = roundoff_of_saved(cfg.stores[0], scorable, max_networks=cfg.max_networks,
                                   accuracy_column=cfg.accuracy_columns[0] if cfg.accuracy_columns else None)
    for p in saved:
        if p.name in checks:
            p.meta["roundoff"] = checks[p.name].json()
            save_program(p, out / "programs" / f"{p.name}.json")
    return saved, final

