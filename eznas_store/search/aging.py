"""``eznas-store search``: aging evolution over NB201 cells, guided by a zero-cost proxy.

Regularised ("aging") evolution (Real, Aggarwal, Huang & Le, AAAI 2019) whose fitness is
a training-free score computed on the fly for every cell it has not seen yet -- no store:

* a hand-crafted proxy by name (``"synflow"``, ``"jacov"``, ``"nwot"``, any of
  :data:`eznas_store.collect.proxies.PROXY_NAMES`): :func:`~eznas_store.collect.proxies.compute_all`
  with ``names=[proxy]`` on the run's batch;
* a statistics program (``terminal_set="statistics"``: the registered ``"eznas-a"`` or a
  program JSON file): the cell's 22 EZNAS terminals are collected exactly as ``ingest``
  and ``score --no-store`` collect them (:func:`eznas_store.collect.statistics.collect`), turned
  into a one-network chunk and scored with
  :func:`eznas_store.evaluate.population.evaluate_population`;
* a proxy program (``terminal_set="proxies"``: a formula over proxy values, JSON file):
  only the proxies the formula reads are computed, and the cell is scored with
  ``evaluate_columns(program, {its values}, ops=PROXY_OPS, reference=...)``. Ops such as
  ``rank`` compare a value with a *reference sample*: the proxy values of
  ``reference_size`` uniformly random cells, computed once at the start (their cost is
  part of the wall time and of the time budget) and cached, so a reference cell the
  search visits later costs nothing.

The search (``AgingEvolution``)::

    population <- P uniformly random cells (scored)
    repeat until the budget is spent:
        parent <- best of S cells drawn without replacement from the population
        child  <- parent with one of its 6 edges changed to one of the 4 other ops
        score child (free if seen before); append it; remove the oldest member

Defaults and why: ``population=64, sample=16`` (Real et al. used P=100, S=25 for 20k
models; a 15-minute CPU search scores about a thousand NB201 cells, so a smaller P
leaves most of the budget to evolution, and S = P/4 keeps their selection pressure);
proxies and proxy programs at ``batch_size=64`` (NASLib's, hence Suite-Zero's, batch),
statistics programs at 16 (the EZNAS release's batch for its published numbers). Every
cell is initialised with seed ``network_seed(seed, index of the cell in all_cells())``,
so a cell's score does not depend on when the search meets it. Higher is better
(``direction="min"`` flips it); a NaN score (proxy failed) ranks below everything.

A converged population can only revisit cells it has scored (free, but it would spin
until the budget ends): after ``patience`` such cycles in a row (default 10,000, well
under a second) the search stops early. The budget is a wall-clock duration (``budget="15m"``, counted from the call, data
loading and reference sample included; an evaluation that would not finish in time at
the mean cost so far is not started) and/or ``max_evaluations`` (distinct cells scored;
cache hits and reference cells do not count). The chosen cell is the best-scored cell
the search saw; the benchmark table gives its true accuracy, its rank among *all* the
table's cells (1 = best) and the table's optimum. Only the NB201 space is searchable:
NDS records here hold no architecture the builder could mutate.

Example
-------
>>> cfg = SearchConfig(proxy="synflow", benchmark="nb201_accuracies.csv",
...                    data_root="cifar10-images", budget="15m", out="runs/s0")  # doctest: +SKIP
>>> print(format_result(run_search(cfg)))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eznas_store.collect.statistics import DEFAULT_PERTURB_SCALE
from eznas_store.errors import ConfigError, ProgramError
from eznas_store.outputs import json_safe, write_atomic
from eznas_store.sources.spaces.nb201 import EDGES, N_CELLS, OPS, format_cell, parse_cell

__all__ = [
    "DEFAULT_POPULATION",
    "DEFAULT_SAMPLE",
    "AgingEvolution",
    "Evaluation",
    "Member",
    "SearchConfig",
    "SearchResult",
    "cell_from_index",
    "cell_index",
    "format_result",
    "mutate",
    "parse_duration",
    "random_cell",
    "rank_in_table",
    "run_search",
    "write_result",
]

DEFAULT_POPULATION = 64
DEFAULT_SAMPLE = 16
#: batch of hand-crafted proxies and proxy programs (NASLib / Suite-Zero)
DEFAULT_PROXY_BATCH = 64
#: batch of statistics programs (the EZNAS release's published numbers)
DEFAULT_STATISTICS_BATCH = 16
DEFAULT_REFERENCE_SIZE = 64
#: cycles in a row without an unseen cell after which a search counts as converged
DEFAULT_PATIENCE = 10_000
SPACES: tuple[str, ...] = ("nb201",)
RESULT_FILE = "search.json"
HISTORY_FILE = "history.csv"

_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(d|h|min|m|sec|s)?", re.IGNORECASE)


# ============================================================================ config
def parse_duration(text: str | float) -> float:
    """``"15m"`` → 900.0; also ``"90s"``, ``"1h"``, ``"1h30m"``, ``"2.5m"``, ``"120"`` (seconds)."""
    if isinstance(text, bool):
        raise ConfigError(f"--budget must be a duration such as 15m, 90s or 1h, got {text!r}")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        s = str(text).strip().replace(" ", "")
        pos, seconds = 0, 0.0
        while pos < len(s):
            m = _DURATION_PART.match(s, pos)
            if m is None:
                raise ConfigError(f"--budget must be a duration such as 15m, 90s, 1h or 1h30m, got {text!r}")
            seconds += float(m.group(1)) * _UNITS[(m.group(2) or "").lower()]
            pos = m.end()
        if not s:
            raise ConfigError("--budget is empty; give a duration such as 15m, 90s or 1h")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"--budget must be a positive duration, got {text!r}")
    return seconds


@dataclass(frozen=True, kw_only=True)
class SearchConfig:
    """One search, validated on construction and written into the result.

    ``proxy`` is a hand-crafted proxy name, a registered program name (``eznas-a``) or a
    program JSON file. ``budget`` (seconds; text such as ``"15m"`` is converted) and
    ``max_evaluations`` bound the search; at least one is needed. ``batch_size=None``
    picks 64 for proxies and proxy programs, 16 for statistics programs.
    """

    proxy: str
    benchmark: str
    dataset: str = "cifar10"
    data_root: str | None = None
    accuracy_column: str | None = None
    space: str = "nb201"
    budget: float | None = None
    max_evaluations: int | None = None
    population: int = DEFAULT_POPULATION
    sample: int = DEFAULT_SAMPLE
    seed: int = 0
    batch_size: int | None = None
    reference_size: int = DEFAULT_REFERENCE_SIZE
    #: stop after this many cycles in a row met only cells already scored (0: never)
    patience: int = DEFAULT_PATIENCE
    direction: str = "max"
    device: str = "auto"
    threads: int = 1
    structure: str = "rcb"
    perturb_scale: float = DEFAULT_PERTURB_SCALE
    to_scalar: str | None = None
    image_size: int | None = None  # only for datasets whose size is free (digits)
    C: int | None = None
    N: int | None = None
    out: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        from eznas_store.sources.datasets import DATASETS

        if self.space not in SPACES:
            raise ConfigError(
                f"search supports --space nb201 only, not {self.space!r}: the NDS records available "
                "here hold no architectures the network builder could mutate"
            )
        if not isinstance(self.proxy, str) or not self.proxy.strip():
            raise ConfigError("--proxy must name a proxy (e.g. synflow), a program (eznas-a) or a program file")
        if not isinstance(self.benchmark, (str, os.PathLike)) or not str(self.benchmark).strip():
            raise ConfigError("--benchmark must name a benchmark table (e.g. nb201_accuracies.csv)")
        if str(self.dataset).strip().lower() not in DATASETS:
            raise ConfigError(f"unknown --dataset {self.dataset!r}; known datasets: {', '.join(DATASETS)}")
        if self.budget is not None:
            object.__setattr__(self, "budget", parse_duration(self.budget))
        if self.max_evaluations is not None and (
                not _is_int(self.max_evaluations) or self.max_evaluations < 1):
            raise ConfigError(f"--max-evaluations must be a positive integer, got {self.max_evaluations!r}")
        if self.budget is None and self.max_evaluations is None:
            raise ConfigError("a search needs a budget: give --budget (e.g. 15m) and/or --max-evaluations")
        if not _is_int(self.population) or self.population < 2:
            raise ConfigError(f"--population must be an integer >= 2, got {self.population!r}")
        if not _is_int(self.sample) or not 1 <= self.sample <= self.population:
            raise ConfigError(
                f"--sample must be an integer between 1 and --population ({self.population}), got {self.sample!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ConfigError(f"--seed must be a non-negative integer, got {self.seed!r}")
        if self.batch_size is not None and (not _is_int(self.batch_size) or self.batch_size < 1):
            raise ConfigError(f"--batch-size must be a positive integer, got {self.batch_size!r}")
        if not _is_int(self.reference_size) or self.reference_size < 2:
            raise ConfigError(f"--reference-size must be an integer >= 2, got {self.reference_size!r}")
        if not _is_int(self.patience) or self.patience < 0:
            raise ConfigError(f"--patience must be an integer >= 0 (0: never stop early), got {self.patience!r}")
        if self.direction not in ("max", "min"):
            raise ConfigError(f"--direction must be 'max' or 'min', got {self.direction!r}")
        if self.device not in ("auto", "cpu") and not str(self.device).startswith("cuda"):
            raise ConfigError(f"--device must be auto, cpu or cuda[:k], got {self.device!r}")
        if not _is_int(self.threads) or self.threads < 1:
            raise ConfigError(f"--threads must be a positive integer, got {self.threads!r}")
        if self.structure not in ("rcb", "cbr"):
            raise ConfigError(f"--structure must be 'rcb' or 'cbr', got {self.structure!r}")
        if not (isinstance(self.perturb_scale, (int, float)) and math.isfinite(self.perturb_scale)
                and self.perturb_scale >= 0):
            raise ConfigError(f"--perturb-scale must be a finite number >= 0, got {self.perturb_scale!r}")
        if self.to_scalar not in (None, "mean", "l2"):
            raise ConfigError(f"--to-scalar must be 'mean' or 'l2', got {self.to_scalar!r}")
        for name in ("image_size", "C", "N"):
            v = getattr(self, name)
            if v is not None and (not _is_int(v) or v < 1):
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        _check_proxy_name(self.proxy)


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_proxy_name(name: str) -> None:
    from eznas_store.programs.tree import NAMED_PROGRAMS
    from eznas_store.collect.proxies import PROXY_NAMES

    if name in PROXY_NAMES or name in NAMED_PROGRAMS:
        return
    try:
        is_file = Path(name).is_file()
    except OSError:
        is_file = False
    if not is_file:
        raise ConfigError(
            f"--proxy {name!r} is neither a hand-crafted proxy ({', '.join(PROXY_NAMES)}), "
            f"a registered program ({', '.join(sorted(NAMED_PROGRAMS))}) nor a program JSON file"
        )


# ============================================================================ the search
def cell_index(cell: str) -> int:
    """Position of a cell in :func:`~eznas_store.sources.spaces.nb201.all_cells` (0..15624)."""
    index = 0
    for op in parse_cell(cell).ops:
        index = index * len(OPS) + OPS.index(op)
    return index


def cell_from_index(index: int) -> str:
    """The cell at ``index`` of :func:`~eznas_store.sources.spaces.nb201.all_cells`."""
    if not 0 <= index < N_CELLS:
        raise ConfigError(f"an NB201 cell index is in 0..{N_CELLS - 1}, got {index}")
    ops = []
    for _ in EDGES:
        index, k = divmod(index, len(OPS))
        ops.append(OPS[k])
    return format_cell(ops[::-1])


def random_cell(rng: np.random.Generator) -> str:
    """A uniformly random NB201 cell string."""
    return format_cell([OPS[int(i)] for i in rng.integers(0, len(OPS), size=len(EDGES))])


def mutate(cell: str, rng: np.random.Generator) -> str:
    """Change one of the six edges (uniform) to one of the four other ops (uniform)."""
    ops = list(parse_cell(cell).ops)
    edge = int(rng.integers(len(ops)))
    others = [op for op in OPS if op != ops[edge]]
    ops[edge] = others[int(rng.integers(len(others)))]
    return format_cell(ops)


@dataclass(frozen=True)
class Member:
    """A population member: a cell and its (cached) score."""

    cell: str
    score: float


@dataclass(frozen=True)
class Evaluation:
    """One distinct cell scored: when (seconds since the run started) and with what result."""

    step: int
    cell: str
    score: float
    seconds: float
    reason: str | None = None


ScoreFn = Callable[[str], tuple[float, str | None]]


class AgingEvolution:
    """Regularised evolution with a score cache; one :meth:`step` is one cycle.

    ``score_fn(cell) -> (score, reason)`` is called once per distinct cell; ``rng`` is
    the run's only source of randomness. ``population`` holds the living members, oldest
    first; ``history`` every distinct cell scored, in order.
    """

    def __init__(self, score_fn: ScoreFn, *, rng: np.random.Generator, population_size: int = DEFAULT_POPULATION,
                 sample_size: int = DEFAULT_SAMPLE, maximize: bool = True,
                 clock: Callable[[], float] | None = None, start: float | None = None) -> None:
        if population_size < 2 or not 1 <= sample_size <= population_size:
            raise ConfigError(f"need population >= 2 and 1 <= sample <= population, got "
                              f"{population_size} and {sample_size}")
        self.score_fn = score_fn
        self.rng = rng
        self.population_size = population_size
        self.sample_size = sample_size
        self.maximize = maximize
        self.clock = clock or time.perf_counter
        self._t0 = self.clock() if start is None else start
        self.population: deque[Member] = deque()
        self.cache: dict[str, tuple[float, str | None]] = {}
        self.history: list[Evaluation] = []
        self.cycles = 0
        self.cache_hits = 0
        #: cycles since the last unseen cell
        self.stall = 0
        self.best: Evaluation | None = None
        self.eval_seconds = 0.0

    # ---------------------------------------------------------------- ordering
    def key(self, score: float) -> float:
        """Sort key: larger is better; NaN is worst."""
        if math.isnan(score):
            return -math.inf
        return score if self.maximize else -score

    @property
    def evaluations(self) -> int:
        return len(self.history)

    @property
    def exhausted(self) -> bool:
        return len(self.cache) >= N_CELLS

    # ---------------------------------------------------------------- one cycle
    def score(self, cell: str) -> float:
        """The cell's score, computed at most once per run."""
        hit = self.cache.get(cell)
        if hit is not None:
            self.cache_hits += 1
            return hit[0]
        t = self.clock()
        value, reason = self.score_fn(cell)
        now = self.clock()
        self.eval_seconds += now - t
        value = float(value)
        self.cache[cell] = (value, reason)
        ev = Evaluation(step=len(self.history), cell=cell, score=value, seconds=now - self._t0, reason=reason)
        self.history.append(ev)
        if math.isfinite(value) and (self.best is None or self.key(value) > self.key(self.best.score)):
            self.best = ev
        return value

    def propose(self) -> str:
        """The next cell: random while the population fills, else a mutated tournament winner."""
        if len(self.population) < self.population_size:
            return random_cell(self.rng)
        members = list(self.population)
        picks = self.rng.choice(len(members), size=self.sample_size, replace=False)
        parent = max((members[int(i)] for i in picks), key=lambda m: self.key(m.score))
        return mutate(parent.cell, self.rng)

    def step(self) -> Member:
        """One cycle: propose, score (cached), append; the oldest dies once the population is full."""
        cell = self.propose()
        before = len(self.history)
        member = Member(cell, self.score(cell))
        self.stall = 0 if len(self.history) > before else self.stall + 1
        self.population.append(member)
        if len(self.population) > self.population_size:
            self.population.popleft()
        self.cycles += 1
        return member


# ============================================================================ scorers
class _Scorer:
    """Turns a cell into ``(score, reason)``; ``kind`` names which of the three fitnesses."""

    kind = ""
    batch_size = DEFAULT_PROXY_BATCH
    name = ""
    reference_evaluations = 0
    reference_seconds = 0.0

    def prepare(self, rng: np.random.Generator) -> None:
        """Work before the search (the reference sample of proxy programs)."""

    def __call__(self, cell: str) -> tuple[float, str | None]:
        raise NotImplementedError


@dataclass
class _Setup:
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    C: int
    N: int
    device: torch.device
    cfg: SearchConfig


class _ProxyScorer(_Scorer):
    kind = "proxy"

    def __init__(self, setup: _Setup, name: str) -> None:
        self.setup, self.name = setup, name

    def __call__(self, cell: str) -> tuple[float, str | None]:
        return _proxy_values(self.setup, cell, (self.name,))[self.name]


def _proxy_values(setup: _Setup, cell: str, names: tuple[str, ...]) -> dict[str, tuple[float, str | None]]:
    from eznas_store.collect.statistics import network_seed
    from eznas_store.collect.proxies import compute_all, nb201_factory

    factory = nb201_factory(cell, num_classes=setup.num_classes, C=setup.C, N=setup.N)
    return compute_all(factory, setup.images, setup.labels, seed=network_seed(setup.cfg.seed, cell_index(cell)),
                       names=names, device=setup.device)


class _StatisticsScorer(_Scorer):
    kind = "statistics"

    def __init__(self, setup: _Setup, program: Any) -> None:
        from eznas_store.collect.statistics import CollectConfig

        self.setup, self.program = setup, program
        self.name = program.name or program.formula()
        self.batch_size = int(setup.images.shape[0])
        self.collect_config = CollectConfig(batch_size=self.batch_size, structure=setup.cfg.structure,
                                            perturb_scale=setup.cfg.perturb_scale, seed=setup.cfg.seed,
                                            threads=setup.cfg.threads)

    def __call__(self, cell: str) -> tuple[float, str | None]:
        from eznas_store.collect.statistics import collect, network_seed
        from eznas_store.fitness.engine import score_collected
        from eznas_store.sources.spaces import get_space

        s = self.setup
        model = get_space(s.cfg.space).build(cell, num_classes=s.num_classes, C=s.C, N=s.N,
                                             structure=s.cfg.structure)
        stats = collect(model, s.images, config=self.collect_config,
                        init_seed=network_seed(s.cfg.seed, cell_index(cell)), device=s.device)
        if not stats.blocks:  # e.g. a cell without convs at N=0: no block, no score
            return math.nan, f"{cell} has no {s.cfg.structure} blocks"
        res = score_collected(stats.blocks, [self.program], structure=s.cfg.structure, to_scalar=s.cfg.to_scalar)
        value = float(res.scores[0, 0])
        return value, (None if math.isfinite(value) else (res.reasons[0] or "score is not finite"))


class _ProxyProgramScorer(_Scorer):
    kind = "proxies"

    def __init__(self, setup: _Setup, program: Any, ops: Mapping[str, Any]) -> None:
        from eznas_store.collect.proxies import PROXY_NAMES

        self.setup, self.program, self.ops = setup, program, ops
        self.name = program.name or program.formula()
        self.names = tuple(sorted(program.tree.terminal_names()))
        unknown = [n for n in self.names if n not in PROXY_NAMES]
        if unknown:
            raise ConfigError(f"proxy program {self.name!r} reads {unknown}, which are not proxies "
                              f"(known: {', '.join(PROXY_NAMES)})")
        self.values: dict[str, dict[str, tuple[float, str | None]]] = {}
        self.reference: dict[str, np.ndarray] | None = None
        self.reference_cells: list[str] = []

    def _values(self, cell: str) -> dict[str, tuple[float, str | None]]:
        got = self.values.get(cell)
        if got is None:
            got = self.values[cell] = _proxy_values(self.setup, cell, self.names)
        return got

    def prepare(self, rng: np.random.Generator) -> None:
        from eznas_store.programs.tree import Apply

        if not any(isinstance(node, Apply) and hasattr(self.ops.get(node.op), "bind_reference")
                   for node in self.program.tree.iter_nodes()):
            return  # no op compares with a reference sample (no rank): spend nothing on one
        t0 = time.perf_counter()
        n = self.setup.cfg.reference_size
        picks = rng.choice(N_CELLS, size=n, replace=False)
        self.reference_cells = [cell_from_index(int(i)) for i in np.sort(picks)]
        rows = [self._values(c) for c in self.reference_cells]
        self.reference = {k: np.array([r[k][0] for r in rows], dtype=np.float64) for k in self.names}
        self.reference_evaluations = n
        self.reference_seconds = time.perf_counter() - t0

    def __call__(self, cell: str) -> tuple[float, str | None]:
        from eznas_store.evaluate.population import evaluate_columns

        vals = self._values(cell)
        columns = {k: np.array([vals[k][0]], dtype=np.float64) for k in self.names}
        scores, reason = evaluate_columns(self.program, columns, ops=self.ops, reference=self.reference)
        value = float(np.asarray(scores, dtype=np.float64).reshape(-1)[0])
        if not math.isfinite(value):
            failed = [vals[k][1] for k in self.names if vals[k][1]]
            return math.nan, reason or (failed[0] if failed else "score is not finite")
        return value, None


def _load_fitness(name: str) -> tuple[str, Any, Mapping[str, Any] | None]:
    """``("proxy", name, None)``, ``("statistics", program, None)`` or ``("proxies", program, PROXY_OPS)``."""
    from eznas_store.programs.tree import NAMED_PROGRAMS, load_program
    from eznas_store.collect.proxies import PROXY_NAMES

    if name in PROXY_NAMES:
        return "proxy", name, None
    if name in NAMED_PROGRAMS:
        program = NAMED_PROGRAMS[name]
    else:
        try:
            doc = json.loads(Path(name).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ProgramError(f"{name}: not a readable program JSON file ({e})") from None
        if isinstance(doc, dict) and doc.get("terminal_set") == "proxies":
            from eznas_store.programs.proxy_ops import PROXY_OPS

            return "proxies", load_program(name, ops=PROXY_OPS), PROXY_OPS
        program = load_program(name)
    if program.terminal_set == "proxies":
        from eznas_store.programs.proxy_ops import PROXY_OPS

        return "proxies", program, PROXY_OPS
    return "statistics", program, None


# ============================================================================ ranking
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


# ============================================================================ the run
@dataclass
class SearchResult:
    """What a search found, how good it truly is, and what it cost."""

    config: SearchConfig
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
    from eznas_store.store.zarr_store import package_versions

    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
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
    from eznas_store.errors import InvalidArchError

    rows: dict[str, int] = {}
    for i, a in enumerate(archs):
        try:
            rows.setdefault(canonical(a), i)
        except InvalidArchError:
            continue  # not a cell of this space: it cannot be chosen, but still counts in the ranks
    return rows


def _resolve_fitness(cfg: SearchConfig) -> tuple[str, Any, Mapping[str, Any] | None, int]:
    kind, obj, ops = _load_fitness(cfg.proxy)
    default = DEFAULT_STATISTICS_BATCH if kind == "statistics" else DEFAULT_PROXY_BATCH
    return kind, obj, ops, cfg.batch_size or default


def _test_column(table: Any, dataset: str) -> str:
    """A search is judged by the final *test* accuracy NAS papers report (NB201 CIFAR-10
    optimum 94.37), not by the validation label fitness tasks default to."""
    from eznas_store.sources import tables as benchmarks

    key = str(dataset).strip().lower()
    for name in benchmarks.DEFAULT_ACCURACY_COLUMNS.get(key, ()):
        if name.endswith("_test") and name in table.columns:
            return name
    return benchmarks.default_accuracy_column(table, dataset)


def run_search(cfg: SearchConfig) -> SearchResult:
    """Run one aging-evolution search, write it to ``cfg.out`` (if given) and return the result."""
    from eznas_store.sources import datasets, tables as benchmarks
    from eznas_store.collect.statistics import deterministic, resolve_device
    from eznas_store.sources.spaces import get_space

    t0 = time.perf_counter()

    def elapsed() -> float:
        return time.perf_counter() - t0

    device = resolve_device(cfg.device)
    space = get_space(cfg.space)
    kind, fitness, ops, batch_size = _resolve_fitness(cfg)
    table = benchmarks.read_benchmark(cfg.benchmark)
    acc_col = cfg.accuracy_column or _test_column(table, cfg.dataset)
    acc = np.asarray(table.column(acc_col), dtype=np.float64)
    spec = datasets.get_spec(cfg.dataset)
    batch = datasets.sample_batch(cfg.dataset, cfg.data_root, batch_size=batch_size, seed=cfg.seed,
                                  image_size=cfg.image_size or spec.image_size)
    setup = _Setup(images=batch.images, labels=batch.labels, num_classes=spec.num_classes,
                   C=cfg.C or space.skeleton["C"], N=cfg.N or space.skeleton["N"], device=device, cfg=cfg)
    scorer: _Scorer
    if kind == "proxy":
        scorer = _ProxyScorer(setup, fitness)
    elif kind == "statistics":
        scorer = _StatisticsScorer(setup, fitness)
    else:
        scorer = _ProxyProgramScorer(setup, fitness, ops)
    rng = np.random.default_rng(cfg.seed)
    budget = cfg.budget

    from tqdm.auto import tqdm

    with deterministic(cfg.threads), contextlib.ExitStack() as stack:
        scorer.prepare(rng)
        evo = AgingEvolution(scorer, rng=rng, population_size=cfg.population, sample_size=cfg.sample,
                             maximize=cfg.direction == "max", start=t0)
        setup_seconds = elapsed()
        if cfg.max_evaluations is not None:
            bar = stack.enter_context(tqdm(total=cfg.max_evaluations, desc="search", unit="cell",
                                           disable=not cfg.progress))
        else:
            bar = stack.enter_context(tqdm(total=round(budget), desc="search", unit="s",
                                           disable=not cfg.progress,
                                           bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s {postfix}"))
        shown: Evaluation | None = None
        stop_reason = ""
        while True:
            if cfg.max_evaluations is not None and evo.evaluations >= cfg.max_evaluations:
                stop_reason = "evaluation budget spent"
                break
            if budget is not None:
                mean = evo.eval_seconds / evo.evaluations if evo.evaluations else 0.0
                if elapsed() + mean > budget:
                    stop_reason = "time budget spent"
                    break
            if evo.exhausted:
                stop_reason = "every cell of the space scored"
                break
            if cfg.patience and evo.stall >= cfg.patience:
                stop_reason = f"converged: {cfg.patience} cycles in a row met no unseen cell"
                break
            before = evo.evaluations
            evo.step()
            if cfg.max_evaluations is not None:
                bar.update(evo.evaluations - before)
            else:
                bar.update(min(elapsed(), budget) - bar.n)
            if evo.best is not shown and evo.best is not None:
                shown = evo.best
                bar.set_postfix_str(f"best {shown.score:.5g} {shown.cell}", refresh=False)
    wall = elapsed()

    rows = _table_rows(table.archs, space.canonical)
    hist_acc = [float(acc[rows[ev.cell]]) if ev.cell in rows else math.nan for ev in evo.history]
    best = evo.best
    accuracy = float(acc[rows[best.cell]]) if best is not None and best.cell in rows else math.nan
    rank, percentile = rank_in_table(acc, accuracy)
    finite = np.isfinite(acc)
    opt = int(np.flatnonzero(finite)[np.argmax(acc[finite])]) if finite.any() else 0
    visited = [(a, ev.cell) for a, ev in zip(hist_acc, evo.history) if math.isfinite(a)]
    bv_acc, bv_cell = max(visited, key=lambda t: t[0]) if visited else (math.nan, None)
    result = SearchResult(
        config=cfg, fitness=scorer.name, kind=kind,
        cell=best.cell if best else None, score=best.score if best else math.nan,
        accuracy=accuracy, rank=rank, percentile=percentile, accuracy_column=acc_col,
        table_cells=int(finite.sum()), optimum_accuracy=float(acc[opt]) if finite.any() else math.nan,
        optimum_cell=table.archs[opt] if len(table) else "",
        best_visited_accuracy=bv_acc, best_visited_cell=bv_cell,
        evaluations=evo.evaluations, reference_evaluations=scorer.reference_evaluations,
        cycles=evo.cycles, cache_hits=evo.cache_hits, wall_seconds=wall, setup_seconds=setup_seconds,
        evaluation_seconds=evo.eval_seconds, stop_reason=stop_reason, batch_size=batch_size,
        device=str(device), history=list(evo.history), history_accuracy=hist_acc,
    )
    if cfg.out:
        write_result(result, cfg.out)
    return result
