"""What one aging-evolution search is asked to do: :class:`ArchSearchConfig`, checked on construction.

Defaults and why: ``population=64, sample=16`` (Real et al. used P=100, S=25 for 20k
models; a 15-minute CPU search scores about a thousand NB201 cells, so a smaller P
leaves most of the budget to evolution, and S = P/4 keeps their selection pressure);
proxies and proxy programs at ``batch_size=64`` (NASLib's, hence Suite-Zero's, batch),
statistics programs at 16 (the EZNAS release's batch for its published numbers).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path


from eznas_store.collect import OPT_IN_PROXY_NAMES, PROXY_NAMES
from eznas_store.errors import ConfigError
from eznas_store.config import MAX_THREADS, check_seed, check_sizes, is_int
from eznas_store.programs import NAMED_PROGRAMS
from eznas_store.sources import DATASETS
from eznas_store.sources import SPACES
from eznas_store.terminals import DEFAULT_PERTURB_SCALE

__all__ = [
    "AZ_NAS_FITNESS",
    "DEFAULT_PATIENCE",
    "DEFAULT_POPULATION",
    "DEFAULT_PROXY_BATCH",
    "DEFAULT_REFERENCE_SIZE",
    "DEFAULT_SAMPLE",
    "DEFAULT_STATISTICS_BATCH",
    "ArchSearchConfig",
    "parse_duration",
    "searchable_spaces",
]

DEFAULT_POPULATION = 64
DEFAULT_SAMPLE = 16
#: ``--proxy`` name of the AZ-NAS aggregate (its four components ranked against a reference sample)
AZ_NAS_FITNESS = "az_nas"
#: batch of hand-crafted proxies and proxy programs (NASLib / Suite-Zero)
DEFAULT_PROXY_BATCH = 64
#: batch of statistics programs (the EZNAS release's published numbers)
DEFAULT_STATISTICS_BATCH = 16
DEFAULT_REFERENCE_SIZE = 64
#: cycles in a row without an unseen cell after which a search counts as converged
DEFAULT_PATIENCE = 10_000
#: most torch threads a search may ask for (as ``proxy-table``; torch crashes on absurd counts)

_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(d|h|min|m|sec|s)?", re.IGNORECASE)


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


def searchable_spaces() -> list[str]:
    """Registered spaces aging evolution can walk: enumerable with mutation (NB201), or with
    random cells, mutation and a distance, walked over the benchmark table's cells (DARTS)."""
    return [name for name, space in SPACES.items() if space.searchable_over_a_table]


@dataclass(frozen=True, kw_only=True)
class ArchSearchConfig:
    """One search, validated on construction and written into the result.

    ``proxy`` is a hand-crafted proxy name, ``az_nas`` (the AZ-NAS aggregate), a registered
    program name (``eznas-a``) or a program JSON file. ``budget`` (seconds; text such as ``"15m"`` is converted) and
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
    #: init of the networks NASLib's 13 proxies are computed on: "eznas" (as ingest stores them),
    #: "default" (PyTorch's, as NASLib and Suite-Zero), or None: a proxy program's own
    #: ``meta["proxy_init"]`` (the init of the values it was evolved on), else "eznas"
    proxy_init: str | None = None
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
        self._check_inputs()
        if self.budget is not None:
            object.__setattr__(self, "budget", parse_duration(self.budget))
        self._check_budget_and_population()
        self._check_run_settings()
        _check_proxy_name(self.proxy)

    def _check_inputs(self) -> None:
        """Space, proxy, benchmark table and dataset name."""
        searchable = searchable_spaces()
        if self.space not in searchable:
            whole = [n for n in searchable if SPACES[n].searchable]
            tables = [n for n in searchable if n not in whole]
            also = f" and {', '.join(tables)} (over the benchmark table's cells)" if tables else ""
            raise ConfigError(
                f"search supports --space {', '.join(whole)} only (every cell){also}, not {self.space!r}: "
                "the NDS records available here hold no architectures the network builder could mutate"
            )
        if not isinstance(self.proxy, str) or not self.proxy.strip():
            raise ConfigError("--proxy must name a proxy (e.g. synflow), a program (eznas-a) or a program file")
        if not isinstance(self.benchmark, (str, os.PathLike)) or not str(self.benchmark).strip():
            raise ConfigError("--benchmark must name a benchmark table (e.g. nb201_accuracies.csv)")
        if str(self.dataset).strip().lower() not in DATASETS:
            raise ConfigError(f"unknown --dataset {self.dataset!r}; known datasets: {', '.join(DATASETS)}")

    def _check_budget_and_population(self) -> None:
        if self.max_evaluations is not None and (
                not is_int(self.max_evaluations) or self.max_evaluations < 1):
            raise ConfigError(f"--max-evaluations must be a positive integer, got {self.max_evaluations!r}")
        if self.budget is None and self.max_evaluations is None:
            raise ConfigError("a search needs a budget: give --budget (e.g. 15m) and/or --max-evaluations")
        if not is_int(self.population) or self.population < 2:
            raise ConfigError(f"--population must be an integer >= 2, got {self.population!r}")
        if not is_int(self.sample) or not 1 <= self.sample <= self.population:
            raise ConfigError(
                f"--sample must be an integer between 1 and --population ({self.population}), got {self.sample!r}")
        check_seed(self.seed)
        if self.batch_size is not None and (not is_int(self.batch_size) or self.batch_size < 1):
            raise ConfigError(f"--batch-size must be a positive integer, got {self.batch_size!r}")
        if not is_int(self.reference_size) or self.reference_size < 2:
            raise ConfigError(f"--reference-size must be an integer >= 2, got {self.reference_size!r}")
        if not is_int(self.patience) or self.patience < 0:
            raise ConfigError(f"--patience must be an integer >= 0 (0: never stop early), got {self.patience!r}")

    def _check_run_settings(self) -> None:
        """Direction, device, threads and how the networks are built and scored."""
        if self.direction not in ("max", "min"):
            raise ConfigError(f"--direction must be 'max' or 'min', got {self.direction!r}")
        if self.device not in ("auto", "cpu") and not str(self.device).startswith("cuda"):
            raise ConfigError(f"--device must be auto, cpu or cuda[:k], got {self.device!r}")
        if not is_int(self.threads) or not 1 <= self.threads <= MAX_THREADS:
            raise ConfigError(f"--threads must be an integer from 1 to {MAX_THREADS}, got {self.threads!r}")
        if self.structure not in ("rcb", "cbr"):
            raise ConfigError(f"--structure must be 'rcb' or 'cbr', got {self.structure!r}")
        if not (isinstance(self.perturb_scale, (int, float)) and math.isfinite(self.perturb_scale)
                and self.perturb_scale >= 0):
            raise ConfigError(f"--perturb-scale must be a finite number >= 0, got {self.perturb_scale!r}")
        if self.proxy_init not in (None, "eznas", "default"):
            raise ConfigError(f"--proxy-init must be 'eznas' or 'default', got {self.proxy_init!r}")
        if self.to_scalar not in (None, "mean", "l2"):
            raise ConfigError(f"--to-scalar must be 'mean' or 'l2', got {self.to_scalar!r}")
        check_sizes(C=self.C, N=self.N, image_size=self.image_size, batch_size=self.batch_size)


def _check_proxy_name(name: str) -> None:
    if name in PROXY_NAMES or name in OPT_IN_PROXY_NAMES or name in NAMED_PROGRAMS or name == AZ_NAS_FITNESS:
        return
    try:
        is_file = Path(name).is_file()
    except OSError:
        is_file = False
    if not is_file:
        raise ConfigError(
            f"--proxy {name!r} is neither a hand-crafted proxy ({', '.join(PROXY_NAMES + OPT_IN_PROXY_NAMES)}), "
            f"the AZ-NAS aggregate ({AZ_NAS_FITNESS}), "
            f"a registered program ({', '.join(sorted(NAMED_PROGRAMS))}) nor a program JSON file"
        )
