"""The fitness of one cell for aging evolution: a training-free score computed on the fly, no store.

Four kinds, picked by :func:`load_fitness` from ``ArchSearchConfig.proxy``:

* ``"proxy"`` -- a hand-crafted proxy by name (``"synflow"``, ``"jacov"``, ``"nwot"``, any
  of :data:`~eznas_store.collect.proxies.registry.PROXY_NAMES`): :class:`NamedProxyCellScorer`
  runs ``compute_all`` with ``names=[proxy]`` on the run's batch;
* ``"statistics"`` -- a statistics program (the registered ``"eznas-a"`` or a program
  JSON file): :class:`StatisticsCellScorer` collects the cell's 22 EZNAS terminals
  exactly as ``ingest`` and ``score --no-store`` collect them and scores the one network;
* ``"proxies"`` -- a proxy program (``terminal_set="proxies"``, a formula over proxy
  values): :class:`ProxyProgramCellScorer` computes only the proxies the formula reads.
  Ops such as ``rank`` compare a value with a *reference sample*: the proxy values of
  ``reference_size`` uniformly random cells, computed once before the search and
  cached, so a reference cell the search visits later costs nothing;
* ``"az_nas"`` -- the AZ-NAS aggregate: :class:`AzNasCellScorer` ranks the cell's four
  components against such a reference sample (the aggregate is defined over a population).

Every cell is initialised with seed ``network_seed(seed, index of the cell in the
space)``, so a cell's score does not depend on when the search meets it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eznas_store.collect import AZ_COMPONENTS, az_nas_against, floor_failed
from eznas_store.collect import network_factory
from eznas_store.collect import OPT_IN_PROXY_NAMES, PROXY_NAMES
from eznas_store.collect import compute_all
from eznas_store.collect import collect, network_seed
from eznas_store.errors import ConfigError, ProgramError
from eznas_store.evaluate import evaluate_columns
from eznas_store.fitness import require_statistics_programs
from eznas_store.storeless import score_collected
from eznas_store.programs import load_program, read_program_document
from eznas_store.programs import NAMED_PROGRAMS
from eznas_store.programs import PROXY_OPS
from eznas_store.programs import Apply
from eznas_store.archsearch.config import AZ_NAS_FITNESS, DEFAULT_PROXY_BATCH, ArchSearchConfig
from eznas_store.sources import GRAPH_SPACES, SearchSpace, graph_feature_names, graph_features
from eznas_store.terminals import CollectConfig

__all__ = [
    "AZ_NAS_FITNESS",
    "AzNasCellScorer",
    "CellScorer",
    "CellScoringSetup",
    "NamedProxyCellScorer",
    "ProxyProgramCellScorer",
    "StatisticsCellScorer",
    "check_fitness",
    "load_fitness",
    "make_cell_scorer",
]


@dataclass
class CellScoringSetup:
    """What every cell of one run is scored with: the batch, the skeleton, the device."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    C: int
    N: int
    device: torch.device
    cfg: ArchSearchConfig
    space: SearchSpace


class CellScorer:
    """Turns a cell into ``(score, reason)``; ``kind`` names which of the three fitnesses."""

    kind = ""
    batch_size = DEFAULT_PROXY_BATCH
    name = ""
    #: init NASLib's 13 proxies are computed on, where this scorer computes them (else None)
    proxy_init: str | None = None
    reference_evaluations = 0
    reference_seconds = 0.0

    def prepare(self, rng: np.random.Generator) -> None:
        """Work before the search (the reference sample of proxy programs)."""

    def __call__(self, cell: str) -> tuple[float, str | None]:
        raise NotImplementedError


def _cell_seed(setup: CellScoringSetup, cell: str) -> int:
    return network_seed(setup.cfg.seed, setup.space.index_of(cell))


def _proxy_values(setup: CellScoringSetup, cell: str, names: tuple[str, ...],
                  init: str = "eznas") -> dict[str, tuple[float, str | None]]:
    """The named proxies of ``cell`` (one network built per pass) and its graph features
    (``graph_*``: from the cell string, no network)."""
    graph = [n for n in names if n.startswith("graph_")]
    proxies = tuple(n for n in names if not n.startswith("graph_"))
    out: dict[str, tuple[float, str | None]] = {}
    if proxies:
        factory = network_factory(setup.space.name, cell, num_classes=setup.num_classes, C=setup.C, N=setup.N,
                                  init=init)
        out.update(compute_all(factory, setup.images, setup.labels, seed=_cell_seed(setup, cell),
                               names=proxies, device=setup.device))
    if graph:
        feats = graph_features(setup.space.name, cell)
        out.update({n: (float(feats[n]), None) if n in feats
                    else (math.nan, f"{n} is not a graph feature of --space {setup.space.name}") for n in graph})
    return out


def _known_terminals() -> tuple[str, ...]:
    """What a proxy program may read in ``search``: the proxies and every space's graph features."""
    graph = sorted({n for space in GRAPH_SPACES for n in graph_feature_names(space)})
    return PROXY_NAMES + OPT_IN_PROXY_NAMES + tuple(graph)


def _draw_reference(scorer: Any, rng: np.random.Generator, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The proxy values of ``reference_size`` uniformly random cells (``scorer._values`` caches
    them, so a reference cell the search meets later costs nothing); its cost is recorded."""
    t0 = time.perf_counter()
    space, n = scorer.setup.space, scorer.setup.cfg.reference_size
    picks = rng.choice(space.n_cells, size=n, replace=False)
    scorer.reference_cells = [space.cell_at(int(i)) for i in np.sort(picks)]
    rows = [scorer._values(c) for c in scorer.reference_cells]
    scorer.reference_evaluations = n
    scorer.reference_seconds = time.perf_counter() - t0
    return {k: np.array([r[k][0] for r in rows], dtype=np.float64) for k in names}


class NamedProxyCellScorer(CellScorer):
    """A hand-crafted proxy by name."""

    kind = "proxy"

    def __init__(self, setup: CellScoringSetup, name: str) -> None:
        self.setup, self.name = setup, name
        self.proxy_init = setup.cfg.proxy_init or "eznas"

    def __call__(self, cell: str) -> tuple[float, str | None]:
        return _proxy_values(self.setup, cell, (self.name,), self.proxy_init)[self.name]


class StatisticsCellScorer(CellScorer):
    """A statistics program over the cell's collected EZNAS terminals."""

    kind = "statistics"

    def __init__(self, setup: CellScoringSetup, program: Any) -> None:
        self.setup, self.program = setup, program
        self.name = program.name or program.formula()
        self.batch_size = int(setup.images.shape[0])
        self.collect_config = CollectConfig(batch_size=self.batch_size, structure=setup.cfg.structure,
                                            perturb_scale=setup.cfg.perturb_scale, seed=setup.cfg.seed,
                                            threads=setup.cfg.threads)

    def __call__(self, cell: str) -> tuple[float, str | None]:
        s = self.setup
        model = s.space.build(cell, num_classes=s.num_classes, C=s.C, N=s.N, structure=s.cfg.structure)
        stats = collect(model, s.images, config=self.collect_config,
                        init_seed=_cell_seed(s, cell), device=s.device)
        if not stats.blocks:  # e.g. a cell without convs at N=0: no block, no score
            return math.nan, f"{cell} has no {s.cfg.structure} blocks"
        res = score_collected(stats.blocks, [self.program], structure=s.cfg.structure, to_scalar=s.cfg.to_scalar)
        value = float(res.scores[0, 0])
        return value, (None if math.isfinite(value) else (res.reasons[0] or "score is not finite"))


def proxy_program_terminals(program: Any) -> tuple[str, ...]:
    """The proxies a proxy program reads, sorted; any other name is a one-line ``ConfigError``."""
    names = tuple(sorted(program.tree.terminal_names()))
    known = _known_terminals()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"proxy program {program.name or program.formula()!r} reads {unknown}, which are "
                          f"neither proxies nor graph features (known: {', '.join(known)})")
    return names


def proxy_program_init(program: Any, cfg: ArchSearchConfig) -> str:
    """The init a proxy program's values are computed on: ``cfg.proxy_init``, else the program's
    meta ``proxy_init`` (a formula combines values, so their scale must be the one it was evolved
    on), else "eznas"; anything else is a one-line ``ConfigError``."""
    init = cfg.proxy_init or str(program.meta.get("proxy_init", "eznas"))
    if init not in ("eznas", "default"):
        raise ConfigError(f"proxy program {program.name or program.formula()!r}: meta proxy_init must be "
                          f"'eznas' or 'default', got {init!r}")
    return init


def check_fitness(kind: str, fitness: Any, ops: Mapping[str, Any] | None, cfg: ArchSearchConfig,
                  space: SearchSpace) -> None:
    """What :func:`make_cell_scorer` and the scorer's ``prepare`` would refuse, checked before any
    data is read: a statistics program that cannot be scored (a proxy program, a sequential one
    without output), a proxy program reading names that are not proxies or asking for an unknown
    init, a reference sample larger than the space (or the table) it is drawn from."""
    if kind == "statistics":
        require_statistics_programs([fitness])
    elif kind == "proxies":
        proxy_program_terminals(fitness)
        proxy_program_init(fitness, cfg)
    needs_reference = kind == "az_nas" or (kind == "proxies" and _reads_reference(fitness, ops))
    if needs_reference and space.n_cells is not None and cfg.reference_size > space.n_cells:
        raise ConfigError(f"--reference-size {cfg.reference_size} is more than the {space.n_cells} --space "
                          f"{space.name} cells the search can draw from; give at most {space.n_cells}")


def _reads_reference(program: Any, ops: Mapping[str, Any] | None) -> bool:
    """Whether a proxy program has an op that compares with a reference sample (``rank``)."""
    ops = ops or {}
    return any(isinstance(node, Apply) and hasattr(ops.get(node.op), "bind_reference")
               for node in program.tree.iter_nodes())


class ProxyProgramCellScorer(CellScorer):
    """A proxy program over the proxies its formula reads (and, for ``rank``, a reference sample)."""

    kind = "proxies"

    def __init__(self, setup: CellScoringSetup, program: Any, ops: Mapping[str, Any]) -> None:
        self.setup, self.program, self.ops = setup, program, ops
        self.name = program.name or program.formula()
        self.names = proxy_program_terminals(program)
        self.values: dict[str, dict[str, tuple[float, str | None]]] = {}
        self.reference: dict[str, np.ndarray] | None = None
        self.reference_cells: list[str] = []
        self.proxy_init = proxy_program_init(program, setup.cfg)

    def _values(self, cell: str) -> dict[str, tuple[float, str | None]]:
        got = self.values.get(cell)
        if got is None:
            got = _proxy_values(self.setup, cell, self.names, self.proxy_init)
            floors = floor_failed({k: np.array([v]) for k, (v, _) in got.items()})
            got = self.values[cell] = {k: (float(floors[k][0]), r) for k, (_, r) in got.items()}
        return got

    def _needs_reference(self) -> bool:
        return _reads_reference(self.program, self.ops)

    def prepare(self, rng: np.random.Generator) -> None:
        if not self._needs_reference():
            return  # no op compares with a reference sample (no rank): spend nothing on one
        self.reference = _draw_reference(self, rng, self.names)

    def __call__(self, cell: str) -> tuple[float, str | None]:
        vals = self._values(cell)
        columns = {k: np.array([vals[k][0]], dtype=np.float64) for k in self.names}
        scores, reason = evaluate_columns(self.program, columns, ops=self.ops, reference=self.reference)
        value = float(np.asarray(scores, dtype=np.float64).reshape(-1)[0])
        if not math.isfinite(value):
            failed = [vals[k][1] for k in self.names if vals[k][1]]
            return math.nan, reason or (failed[0] if failed else "score is not finite")
        return value, None


class AzNasCellScorer(CellScorer):
    """The AZ-NAS aggregate, each cell ranked against a reference sample of cells.

    The reference's aggregate ranks a whole population (Σ_m ln(rank_m / N)); a search meets
    cells one at a time, so each cell's four components are ranked among those of
    ``reference_size`` uniformly random cells (computed before the search, cached) and its
    own (:func:`~eznas_store.collect.proxies.az_nas.az_nas_against`).
    """

    kind = "az_nas"
    name = AZ_NAS_FITNESS

    def __init__(self, setup: CellScoringSetup) -> None:
        self.setup = setup
        self.values: dict[str, dict[str, tuple[float, str | None]]] = {}
        self.reference: dict[str, np.ndarray] = {}
        self.reference_cells: list[str] = []

    def _values(self, cell: str) -> dict[str, tuple[float, str | None]]:
        got = self.values.get(cell)
        if got is None:
            got = self.values[cell] = _proxy_values(self.setup, cell, AZ_COMPONENTS)
        return got

    def prepare(self, rng: np.random.Generator) -> None:
        self.reference = _draw_reference(self, rng, AZ_COMPONENTS)

    def __call__(self, cell: str) -> tuple[float, str | None]:
        vals = self._values(cell)
        if not math.isfinite(vals["az_complexity"][0]):  # FLOPs: no failure to rank, a broken cell
            return math.nan, vals["az_complexity"][1] or "az_complexity is not finite"
        return az_nas_against({m: v for m, (v, _) in vals.items()}, self.reference), None


def load_fitness(name: str) -> tuple[str, Any, Mapping[str, Any] | None]:
    """``("proxy", name, None)``, ``("statistics", program, None)`` or ``("proxies", program, PROXY_OPS)``."""
    if name == AZ_NAS_FITNESS:
        return "az_nas", name, None
    if name in PROXY_NAMES or name in OPT_IN_PROXY_NAMES:
        return "proxy", name, None
    if name in NAMED_PROGRAMS:
        program = NAMED_PROGRAMS[name]
    else:
        if not Path(name).is_file():
            load_program(name)  # raises the one-line "neither a file nor a registered program"
        doc = read_program_document(name)
        if isinstance(doc, dict) and doc.get("terminal_set") == "proxies":
            return "proxies", load_program(name, ops=PROXY_OPS), PROXY_OPS
        program = load_program(name, require_output=True)
    if program.terminal_set == "proxies":
        return "proxies", program, PROXY_OPS
    return "statistics", program, None


def make_cell_scorer(kind: str, setup: CellScoringSetup, fitness: Any,
                     ops: Mapping[str, Any] | None) -> CellScorer:
    """The scorer of ``kind`` as :func:`load_fitness` named it."""
    if kind == "az_nas":
        return AzNasCellScorer(setup)
    if kind == "proxy":
        return NamedProxyCellScorer(setup, fitness)
    if kind == "statistics":
        return StatisticsCellScorer(setup, fitness)
    return ProxyProgramCellScorer(setup, fitness, ops)
